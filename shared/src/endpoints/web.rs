//! `GET /` and `GET /app/` → the web page a person signs in with (README
//! "The web page"); `GET /app/{asset}` → its script, style sheet and icon.
//! No storage and no AWS call: the page talks to the API itself, on the same
//! origin.
//!
//! The files are plain HTML, CSS and JavaScript in `shared/web/`, edited as
//! such and embedded into this function's binary when it is compiled
//! (`include_str!`): one deploy ships the page and the API together, and no
//! bucket or CDN is needed. Every answer carries the page's security headers:
//! a Content-Security-Policy that allows only this origin's own script and
//! styles (no inline script, no other host), and no framing.
//!
//! The page refers to its files relatively (`app/app.js`), so it works under
//! an API Gateway stage prefix (`/prod/`) too. At `/app/` those relative
//! paths would point one level too deep; that copy of the page gets a
//! `<base href="../">`, which makes it resolve exactly as the page at `/`.

use aws_config::SdkConfig;
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use lambda_http::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

use super::Endpoint;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;

const PAGE: &str = include_str!("../../web/index.html");
const SCRIPT: &str = include_str!("../../web/app.js");
const STYLES: &str = include_str!("../../web/app.css");
const ICON: &str = include_str!("../../web/icon.svg");
/// The files under `/app/` (the OpenAPI document lists them too).
pub(crate) const ASSET_NAMES: [&str; 3] = ["app.js", "app.css", "icon.svg"];

/// Only this origin's own files: the script and styles served below (no
/// inline script or style attribute, no `eval`), the API on the same origin,
/// never inside a frame (clickjacking), no plugins, forms sent only by the
/// script (a form submitted without it would put a phone in the URL).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'self'; \
     form-action 'none'; frame-ancestors 'none'";

/// The page and its files change with each deploy and are tiny: a browser
/// keeps them but asks each time (`no-cache`), and gets a bodiless 304 while
/// the ETag still matches. So a deploy reaches every browser at once, and
/// a page never runs with the script of another version.
const CACHE_CONTROL: &str = "no-cache";

/// One file the function serves, with its strong ETag (a digest of the body).
struct File {
    body: String,
    content_type: &'static str,
    etag: HeaderValue,
}

impl File {
    fn new(body: String, content_type: &'static str) -> Self {
        let hash = digest::digest(&digest::SHA256, body.as_bytes());
        // 128 bits of the digest: enough to tell versions apart.
        let tag = format!("\"{}\"", URL_SAFE_NO_PAD.encode(&hash.as_ref()[..16]));
        File {
            body,
            content_type,
            etag: HeaderValue::from_str(&tag).expect("base64url is a valid header value"),
        }
    }

    fn response(&self, request: &Request) -> Response<Body> {
        let unchanged = request
            .headers()
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(|tag| tag.trim().trim_start_matches("W/"))
            .any(|tag| tag == "*" || tag.as_bytes() == self.etag.as_bytes());
        let mut response = if unchanged {
            let mut response = Response::new(Body::Empty);
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            let mut response = Response::new(Body::from(self.body.clone()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(self.content_type),
            );
            response
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static(CACHE_CONTROL),
        );
        response
    }
}

/// The headers every answer of this function carries.
fn secure(headers: &mut HeaderMap) {
    super::page_headers(headers, CONTENT_SECURITY_POLICY);
    // frame-ancestors 'none' for browsers that predate it.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // No other site's window keeps a handle on the page's.
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
}

pub struct Web {
    /// The page as served at `/` (and `/app`, where relative paths resolve alike).
    page: File,
    /// The page as served at `/app/`: with `<base href="../">`.
    page_in_app: File,
    /// `/app/<name>`: (name, file).
    assets: Vec<(&'static str, File)>,
}

impl Web {
    fn file(&self, path: &str) -> Option<&File> {
        // API Gateway passes `/app/x/` to the route `/app/{asset}`, and a
        // stage prefix (`/prod/app/x`) before it: only the last segments count.
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        let mut segments = trimmed.rsplit('/');
        let last = segments.next().unwrap_or("");
        match (segments.next(), last) {
            (Some("app"), name) => self
                .assets
                .iter()
                .find(|(asset, _)| *asset == name)
                .map(|(_, file)| file),
            (_, "app") if path.ends_with('/') => Some(&self.page_in_app),
            _ => Some(&self.page),
        }
    }
}

/// The page with `<base href="../">` first in its head.
fn page_in_app() -> String {
    let head = "<head>";
    let at = PAGE.find(head).expect("index.html has a <head>") + head.len();
    format!("{}\n<base href=\"../\">{}", &PAGE[..at], &PAGE[at..])
}

impl Endpoint for Web {
    const NAME: &str = "web";
    const METHOD: Method = Method::GET;
    const USES_AWS: bool = false;

    fn from_config(_config: &Config, _aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Web {
            page: File::new(PAGE.into(), "text/html; charset=utf-8"),
            page_in_app: File::new(page_in_app(), "text/html; charset=utf-8"),
            assets: ASSET_NAMES
                .into_iter()
                .zip([
                    File::new(SCRIPT.into(), "text/javascript; charset=utf-8"),
                    File::new(STYLES.into(), "text/css; charset=utf-8"),
                    File::new(ICON.into(), "image/svg+xml"),
                ])
                .collect(),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let mut response = match self.file(request.uri().path()) {
            Some(file) => file.response(&request),
            None => ApiError::NotFound.into_response(),
        };
        secure(response.headers_mut());
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::serve;

    fn web() -> Web {
        Web::from_config(
            &Config::from_lookup(|_| None),
            &SdkConfig::builder().build(),
        )
        .unwrap()
    }

    fn request(method: Method, path: &str) -> Request {
        let mut request = Request::new(Body::Empty);
        *request.method_mut() = method;
        *request.uri_mut() = format!("https://api.example.com{path}").parse().unwrap();
        request
    }

    async fn get(web: &Web, path: &str) -> Response<Body> {
        serve(web, request(Method::GET, path)).await
    }

    fn text(response: &Response<Body>) -> &str {
        std::str::from_utf8(response.body().as_ref()).unwrap()
    }

    fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn the_page_is_served_at_the_root_and_under_app() {
        let web = web();
        for path in ["/", "/app", "/app/", "/prod/", "/prod/app/"] {
            let response = get(&web, path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(
                header(&response, "content-type"),
                "text/html; charset=utf-8",
                "{path}"
            );
            assert!(text(&response).contains("<script src=\"app/app.js\" defer>"));
        }
        // Relative paths under /app/ resolve as at the root: one level up.
        let base = "<base href=\"../\">";
        assert!(text(&get(&web, "/app/").await).contains(base));
        assert!(text(&get(&web, "/prod/app/").await).contains(base));
        for path in ["/", "/app", "/prod/"] {
            assert!(!text(&get(&web, path).await).contains(base), "{path}");
        }
    }

    #[tokio::test]
    async fn its_files_are_served_with_their_content_types() {
        let web = web();
        for (path, content_type, start) in [
            ("/app/app.js", "text/javascript; charset=utf-8", SCRIPT),
            ("/app/app.css", "text/css; charset=utf-8", STYLES),
            ("/app/icon.svg", "image/svg+xml", ICON),
            ("/app/app.js/", "text/javascript; charset=utf-8", SCRIPT),
            ("/prod/app/app.css", "text/css; charset=utf-8", STYLES),
        ] {
            let response = get(&web, path).await;
            assert_eq!(response.status(), 200, "{path}");
            assert_eq!(header(&response, "content-type"), content_type, "{path}");
            assert_eq!(text(&response), start, "{path}");
        }
    }

    #[tokio::test]
    async fn other_files_are_a_json_404_and_other_methods_a_405() {
        let web = web();
        for path in ["/app/missing.js", "/app/index.html", "/app/.."] {
            let response = get(&web, path).await;
            assert_eq!(response.status(), 404, "{path}");
            assert_eq!(header(&response, "content-type"), "application/json");
            // The security headers are on refusals too.
            assert_eq!(
                header(&response, "content-security-policy"),
                CONTENT_SECURITY_POLICY
            );
        }
        for method in [Method::POST, Method::PUT, Method::DELETE, Method::HEAD] {
            let response = serve(&web, request(method.clone(), "/")).await;
            assert_eq!(response.status(), 405, "{method}");
            assert_eq!(header(&response, "allow"), "GET");
        }
    }

    #[tokio::test]
    async fn every_answer_has_the_security_headers() {
        let web = web();
        for path in ["/", "/app/", "/app/app.js", "/app/app.css", "/app/icon.svg"] {
            let response = get(&web, path).await;
            let csp = header(&response, "content-security-policy");
            let directive = |name: &str| {
                csp.split(';')
                    .map(str::trim)
                    .find(|d| d.split_whitespace().next() == Some(name))
                    .unwrap_or_else(|| panic!("{path}: no {name} in {csp}"))
                    .to_string()
            };
            assert_eq!(directive("default-src"), "default-src 'none'");
            // Scripts from this origin's files only: no inline script, no eval.
            assert_eq!(directive("script-src"), "script-src 'self'");
            assert!(!csp.contains("unsafe"), "{path}: {csp}");
            assert_eq!(directive("frame-ancestors"), "frame-ancestors 'none'");
            assert_eq!(directive("connect-src"), "connect-src 'self'");
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");
            assert_eq!(header(&response, "referrer-policy"), "no-referrer");
            assert_eq!(header(&response, "x-frame-options"), "DENY");
        }
    }

    #[tokio::test]
    async fn the_page_has_no_inline_script_or_style_and_names_no_other_host() {
        // What the policy would block: the page must not need it.
        let lower = PAGE.to_ascii_lowercase();
        let scripts: Vec<&str> = lower.split("<script").skip(1).collect();
        assert!(!scripts.is_empty());
        for script in scripts {
            let tag = &script[..script.find('>').unwrap()];
            assert!(tag.contains(" src="), "an inline <script>: {tag}");
            assert!(script[tag.len() + 1..].starts_with("</script>"));
        }
        assert!(!lower.contains("<style"), "an inline <style>");
        assert!(!lower.contains(" style="), "a style attribute");
        for (at, _) in lower.match_indices(" on") {
            let name: String = lower[at + 3..]
                .chars()
                .take_while(char::is_ascii_alphabetic)
                .collect();
            let after = lower[at + 3 + name.len()..].trim_start();
            assert!(
                name.is_empty() || !after.starts_with('='),
                "an inline event handler: on{name}="
            );
        }
        for file in [PAGE, SCRIPT, STYLES] {
            assert!(!file.contains("http://") && !file.contains("https://"));
            assert!(!file.contains("//cdn") && !file.contains("@import"));
        }
        assert!(!SCRIPT.contains("eval(") && !SCRIPT.contains("new Function"));
    }

    #[tokio::test]
    async fn files_are_revalidated_and_answered_304_while_unchanged() {
        let web = web();
        for path in ["/", "/app/", "/app/app.js", "/app/app.css", "/app/icon.svg"] {
            let response = get(&web, path).await;
            assert_eq!(header(&response, "cache-control"), "no-cache", "{path}");
            let etag = header(&response, "etag").to_string();
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");

            let mut again = request(Method::GET, path);
            again
                .headers_mut()
                .insert(header::IF_NONE_MATCH, etag.parse().unwrap());
            let response = serve(&web, again).await;
            assert_eq!(response.status(), 304, "{path}");
            assert!(response.body().is_empty());
            assert_eq!(header(&response, "etag"), etag);
            assert_eq!(header(&response, "x-content-type-options"), "nosniff");

            let mut stale = request(Method::GET, path);
            stale
                .headers_mut()
                .insert(header::IF_NONE_MATCH, "\"old\"".parse().unwrap());
            assert_eq!(serve(&web, stale).await.status(), 200, "{path}");
        }
        // The two copies of the page, and the files, are told apart.
        let etag = |path: &'static str| {
            let web = &web;
            async move { header(&get(web, path).await, "etag").to_string() }
        };
        let tags = [
            etag("/").await,
            etag("/app/").await,
            etag("/app/app.js").await,
            etag("/app/app.css").await,
        ];
        let distinct: std::collections::BTreeSet<&String> = tags.iter().collect();
        assert_eq!(distinct.len(), tags.len());
    }
}

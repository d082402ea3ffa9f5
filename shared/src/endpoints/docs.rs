//! `GET /openapi.json` → the API's OpenAPI document (`openapi.json`, as
//! [`super::openapi`] generates it);
//! `GET /docs/` → Swagger UI on it, `GET /redoc/` → ReDoc, `GET /swagger/`
//! → moved to `../docs/` (seed-000's address). Public, no storage, no AWS.
//!
//! Every file the pages load is served here (`/docs/<file>`, compiled into
//! the binary: shared/assets/docs/ and Swagger UI's own files from
//! build.rs): no CDN, no web fonts, no inline script, so the pages work
//! offline and behind a proxy, and their Content-Security-Policy allows
//! scripts, styles and requests from this origin only. Every URL in them is
//! relative, so they work under an API Gateway stage prefix (`/prod/docs/`);
//! that is also why `/docs` (no slash) redirects to `docs/`, where those
//! URLs resolve.

use aws_config::SdkConfig;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

use super::Endpoint;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;

/// The pages may run scripts and read styles, images and data from here
/// only. Styles also inline: both UIs set `style` attributes and ReDoc
/// writes its styles into `<style>` elements at run time. ReDoc's search
/// runs in a worker it builds from a `blob:` URL of its own code.
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self'; \
     connect-src 'self'; worker-src blob:; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The pages and their files change only with a deployment.
const PAGE_CACHE: &str = "public, max-age=300";
const ASSET_CACHE: &str = "public, max-age=3600";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The files under `/docs/`: (name, content type, contents).
const ASSETS: [(&str, &str, &str); 8] = [
    (
        "swagger-ui-bundle.js",
        JS,
        include_str!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js")),
    ),
    (
        "swagger-ui.css",
        CSS,
        include_str!(concat!(env!("OUT_DIR"), "/swagger-ui.css")),
    ),
    (
        "swagger-init.js",
        JS,
        include_str!("../../assets/docs/swagger-init.js"),
    ),
    (
        "swagger-ui-LICENSE",
        TEXT,
        include_str!(concat!(env!("OUT_DIR"), "/swagger-ui-LICENSE")),
    ),
    (
        "redoc.standalone.js",
        JS,
        include_str!("../../assets/docs/redoc.standalone.js"),
    ),
    (
        "redoc-init.js",
        JS,
        include_str!("../../assets/docs/redoc-init.js"),
    ),
    (
        "redoc-LICENSE",
        TEXT,
        include_str!("../../assets/docs/redoc-LICENSE"),
    ),
    (
        "redoc.standalone.js.LICENSE.txt",
        TEXT,
        include_str!("../../assets/docs/redoc.standalone.js.LICENSE.txt"),
    ),
];

/// The names of [`ASSETS`], for the OpenAPI document.
pub(crate) const ASSET_NAMES: [&str; ASSETS.len()] = {
    let mut names = [""; ASSETS.len()];
    let mut i = 0;
    while i < ASSETS.len() {
        names[i] = ASSETS[i].0;
        i += 1;
    }
    names
};

const SWAGGER_PAGE: &str = include_str!("../../assets/docs/docs.html");
const REDOC_PAGE: &str = include_str!("../../assets/docs/redoc.html");

/// The OpenAPI document, compiled in: the committed `openapi.json`, which
/// shared/tests/openapi.rs keeps equal to what [`super::openapi`] generates.
/// Serving it as is, rather than generating it at every cold start, took
/// the function's init from 2.8× the empty function's to that of the
/// others that make no AWS call (docs/performance.md).
const SPEC: &str = include_str!("../../../openapi.json");

pub struct Docs;

/// What a path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Page<'a> {
    Spec,
    Swagger,
    Redoc,
    Asset(&'a str),
    /// A relative `Location`, resolved against the request's own URL.
    MovedTo(&'static str),
}

/// The page a path names, by its last segments only: behind a stage prefix
/// the path is `/<stage>/docs/`.
fn page(path: &str) -> Option<Page<'_>> {
    let (rest, last) = path.rsplit_once('/')?;
    let parent = rest.rsplit('/').next().unwrap_or("");
    Some(match (parent, last) {
        (_, "openapi.json") | ("openapi.json", "") => Page::Spec,
        ("docs", "") => Page::Swagger,
        ("docs", asset) => Page::Asset(asset),
        (_, "docs") => Page::MovedTo("docs/"),
        ("redoc", "") => Page::Redoc,
        (_, "redoc") => Page::MovedTo("redoc/"),
        ("swagger", "") => Page::MovedTo("../docs/"),
        (_, "swagger") => Page::MovedTo("docs/"),
        _ => return None,
    })
}

fn answer(content_type: &str, cache: &'static str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("a valid content type"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn html(page: &'static str) -> Response<Body> {
    let mut response = answer("text/html; charset=utf-8", PAGE_CACHE, page.into());
    super::page_headers(response.headers_mut(), PAGE_CSP);
    response
}

impl Endpoint for Docs {
    const NAME: &str = "docs";
    const METHOD: Method = Method::GET;
    const USES_AWS: bool = false;

    fn from_config(_config: &Config, _aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Docs)
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let response = match page(request.uri().path()).ok_or(ApiError::NotFound)? {
            Page::Spec => answer("application/json", PAGE_CACHE, SPEC.into()),
            Page::Swagger => html(SWAGGER_PAGE),
            Page::Redoc => html(REDOC_PAGE),
            Page::Asset(name) => {
                let (_, content_type, contents) = ASSETS
                    .iter()
                    .find(|(asset, _, _)| *asset == name)
                    .ok_or(ApiError::NotFound)?;
                answer(content_type, ASSET_CACHE, (*contents).into())
            }
            Page::MovedTo(location) => {
                let mut response = Response::new(Body::Empty);
                *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
                let headers = response.headers_mut();
                headers.insert(header::LOCATION, HeaderValue::from_static(location));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(PAGE_CACHE));
                response
            }
        };
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_found_by_their_last_segments_under_any_prefix() {
        let cases = [
            ("/openapi.json", Page::Spec),
            ("/openapi.json/", Page::Spec),
            ("/docs/", Page::Swagger),
            ("/docs", Page::MovedTo("docs/")),
            ("/docs/redoc-init.js", Page::Asset("redoc-init.js")),
            ("/redoc/", Page::Redoc),
            ("/redoc", Page::MovedTo("redoc/")),
            ("/swagger/", Page::MovedTo("../docs/")),
            ("/swagger", Page::MovedTo("docs/")),
        ];
        for prefix in ["", "/prod", "/a/b"] {
            for (path, expected) in &cases {
                let full = format!("{prefix}{path}");
                assert_eq!(page(&full).as_ref(), Some(expected), "{full}");
            }
        }
        assert_eq!(page("/"), None);
        assert_eq!(page("/elsewhere"), None);
    }

    /// Every file a page names is served under `/docs/`.
    #[test]
    fn the_pages_name_only_files_served_here() {
        for (page, base) in [(SWAGGER_PAGE, ""), (REDOC_PAGE, "../docs/")] {
            for reference in page
                .split(['"', '\''])
                .filter(|part| part.ends_with(".js") || part.ends_with(".css"))
            {
                let name = reference
                    .strip_prefix(base)
                    .unwrap_or_else(|| panic!("{reference} is not under {base:?}"));
                assert!(ASSET_NAMES.contains(&name), "{reference} is not served");
            }
        }
    }
}

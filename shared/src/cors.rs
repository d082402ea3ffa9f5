//! Browser access from other origins (CORS), the same rules as the HTTP API's
//! `CorsConfiguration` in template.yaml (one parameter, `CorsOrigins`, feeds
//! both).
//!
//! Routes are `ANY`, so API Gateway passes a browser's preflight `OPTIONS`
//! to the function instead of answering it; the function answers 204 here.
//! Behind API Gateway with CORS configured, the gateway replaces these
//! headers with its own (the same values); in `make dev` there is no gateway,
//! so these headers are the ones a browser sees.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};

/// What the template's `CorsConfiguration` allows besides the origins.
const ALLOW_HEADERS: &str = "authorization, content-type";
const EXPOSE_HEADERS: &str = "retry-after";
const MAX_AGE_SECONDS: &str = "600";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cors {
    /// Exact origins (`https://app.example.com`); empty: no browser on another origin is allowed.
    allowed_origins: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an origin (scheme://host[:port], nothing after it)")]
pub struct BadOrigin(pub String);

impl Cors {
    /// A comma-separated list of origins, as `CorsOrigins` in the template.
    pub fn parse(list: &str) -> Result<Self, BadOrigin> {
        let mut allowed_origins = Vec::new();
        for origin in list.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            let (scheme, rest) = origin
                .split_once("://")
                .ok_or_else(|| BadOrigin(origin.into()))?;
            // The template's CorsOrigins pattern: scheme://host[:port].
            let (host, port) = rest.split_once(':').unwrap_or((rest, "1"));
            let valid = matches!(scheme, "http" | "https")
                && !host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
                && (1..=5).contains(&port.len())
                && port.chars().all(|c| c.is_ascii_digit());
            if !valid {
                return Err(BadOrigin(origin.into()));
            }
            allowed_origins.push(origin.to_ascii_lowercase());
        }
        Ok(Cors { allowed_origins })
    }

    /// The request's `Origin`, if it is one of the allowed origins.
    fn allowed<'h>(&self, origin: Option<&'h HeaderValue>) -> Option<&'h HeaderValue> {
        let origin = origin?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.allowed_origins.contains(&text).then_some(origin)
    }

    /// The answer to `OPTIONS` from `origin` (the request's `Origin` header):
    /// which methods the route takes and, for an allowed origin, the
    /// preflight's permission.
    /// `methods`: what the path serves besides OPTIONS, e.g. "GET, PATCH".
    pub fn preflight(&self, origin: Option<&HeaderValue>, methods: &str) -> Response<Body> {
        let mut response = Response::new(Body::Empty);
        *response.status_mut() = StatusCode::NO_CONTENT;
        let methods = HeaderValue::from_str(&format!("{methods}, OPTIONS"))
            .expect("method names are valid headers");
        let headers = response.headers_mut();
        headers.insert(header::ALLOW, methods.clone());
        if self.allowed(origin).is_some() {
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, methods);
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                HeaderValue::from_static(ALLOW_HEADERS),
            );
            headers.insert(
                header::ACCESS_CONTROL_MAX_AGE,
                HeaderValue::from_static(MAX_AGE_SECONDS),
            );
        }
        self.decorate(origin, response)
    }

    /// Every response: an allowed `origin` may read it.
    pub fn decorate(
        &self,
        origin: Option<&HeaderValue>,
        mut response: Response<Body>,
    ) -> Response<Body> {
        if self.allowed_origins.is_empty() {
            return response;
        }
        let headers = response.headers_mut();
        // The answer depends on Origin whenever CORS is on, allowed or not.
        headers.insert(header::VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = self.allowed(origin) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSE_HEADERS),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(origin: &str) -> Option<HeaderValue> {
        Some(origin.parse().unwrap())
    }

    #[test]
    fn origins_are_checked_at_start() {
        let cors = Cors::parse(" https://app.example.com,http://127.0.0.1:5173 ").unwrap();
        assert_eq!(cors.allowed_origins.len(), 2);
        assert_eq!(Cors::parse("").unwrap(), Cors::default());
        for bad in [
            "app.example.com",
            "https://app.example.com/",
            "https://a.example.com https://b.example.com",
            "ftp://x",
            "*",
            "https://",
            "https://host:",
            "https://host:80:80",
        ] {
            assert_eq!(
                Cors::parse(bad),
                Err(BadOrigin(bad.split(',').next().unwrap().trim().into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_preflight_from_an_allowed_origin_is_granted() {
        let cors = Cors::parse("https://app.example.com").unwrap();
        let r = cors.preflight(from("https://APP.example.com").as_ref(), "POST");
        assert_eq!(r.status(), 204);
        let h = r.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://APP.example.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "POST, OPTIONS");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_HEADERS], ALLOW_HEADERS);
        assert_eq!(h[header::ALLOW], "POST, OPTIONS");
        assert_eq!(h[header::VARY], "origin");
    }

    #[test]
    fn other_origins_get_no_permission() {
        let cors = Cors::parse("https://app.example.com").unwrap();
        let r = cors.preflight(from("https://evil.example.com").as_ref(), "GET");
        assert_eq!(r.status(), 204);
        assert_eq!(r.headers()[header::ALLOW], "GET, OPTIONS");
        assert!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
                .is_none()
        );
        assert!(
            r.headers()
                .get(header::ACCESS_CONTROL_ALLOW_METHODS)
                .is_none()
        );
        let off = Cors::default().decorate(
            from("https://app.example.com").as_ref(),
            Response::new(Body::Empty),
        );
        assert!(off.headers().is_empty(), "CORS off adds nothing");
    }

    #[test]
    fn responses_to_an_allowed_origin_expose_retry_after() {
        let cors = Cors::parse("https://app.example.com").unwrap();
        let r = cors.decorate(
            from("https://app.example.com").as_ref(),
            Response::new(Body::Empty),
        );
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "retry-after"
        );
        assert_eq!(
            r.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example.com"
        );
    }
}

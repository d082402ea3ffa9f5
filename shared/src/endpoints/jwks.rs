//! `GET /.well-known/jwks.json` → the public keys tokens are signed with
//! (RFC 7517), and `GET /.well-known/openid-configuration` → the minimal
//! discovery document pointing at them. Public, cacheable, no storage: what
//! another service (or API Gateway's JWT authorizer) needs to verify tokens.
//!
//! Deployed, this function has a URL of its own (a Lambda function URL) and
//! the tokens' issuer is `https://<host of that URL>`: API Gateway's JWT
//! authorizer reads `<issuer>/.well-known/openid-configuration`, then the
//! `jwks_uri` it names, both answered here. The function cannot be told its
//! own URL (the URL is created after the function: a cycle), so without
//! `TOKEN_ISSUER` it takes the issuer from the request, `https://` + the host
//! the client reached (`requestContext.domainName`), with the keys beside it.
//! With `TOKEN_ISSUER` set (local runs), that is the issuer, and the keys'
//! URL is the one this request reached.

use aws_config::SdkConfig;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

use super::Endpoint;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};

/// Verifiers may cache the keys this long. A new signing key is published
/// (as the next key, README "Rotating the signing key") well before it signs,
/// so a cached copy never lacks a key in use.
pub const JWKS_MAX_AGE_SECONDS: u64 = 300;

/// Where the keys are, under the issuer (or the API).
pub const KEYS_PATH: &str = "/.well-known/jwks.json";
/// Where OpenID Connect Discovery looks for the document, under the issuer.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

pub struct Jwks {
    /// The JWK Set, built once per cold start.
    keys: serde_json::Value,
    /// `TOKEN_ISSUER`; None: each request's own host (see the module).
    issuer: Option<String>,
}

impl Jwks {
    fn discovery(&self, request: &Request) -> Result<serde_json::Value, ApiError> {
        let (issuer, jwks_uri) = match &self.issuer {
            Some(issuer) => (issuer.clone(), format!("{}{KEYS_PATH}", base_url(request))),
            None => {
                let issuer = issuer_of_host(domain_name(request))?;
                let jwks_uri = format!("{issuer}{KEYS_PATH}");
                (issuer, jwks_uri)
            }
        };
        Ok(serde_json::json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
            "claims_supported": ["sub", "iss", "aud", "iat", "exp", "jti", "token_type"],
        }))
    }
}

/// This request's URL up to `/.well-known/`, as the client reached it: host,
/// stage prefix behind API Gateway, and scheme from X-Forwarded-Proto, which
/// API Gateway always sets (https); without it the request came straight
/// over plain HTTP (cargo lambda watch).
fn base_url(request: &Request) -> String {
    let uri = request.uri();
    let scheme = request
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| matches!(*p, "http" | "https"))
        .unwrap_or("http");
    let host = uri.authority().map_or("", |a| a.as_str());
    let prefix = uri
        .path()
        .split_once("/.well-known/")
        .map_or("", |(p, _)| p);
    format!("{scheme}://{host}{prefix}")
}

/// The host API Gateway or Lambda says the client reached.
fn domain_name(request: &Request) -> Option<&str> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context.domain_name.as_deref(),
        _ => None,
    }
}

/// `https://<host>`, no final slash: the issuer a request to this function's
/// own URL names. Refused (400) when the request names no plain DNS host.
fn issuer_of_host(host: Option<&str>) -> Result<String, ApiError> {
    match host {
        Some(host) if is_dns_host(host) => Ok(format!("https://{}", host.to_ascii_lowercase())),
        _ => Err(ApiError::InvalidRequest(
            "no TOKEN_ISSUER is configured and the request names no host to take it from \
             (requestContext.domainName)"
                .into(),
        )),
    }
}

/// Letters, digits and hyphens in dot-separated labels of 1-63 characters
/// (no port, path, user or trailing dot), at most 253 in all.
fn is_dns_host(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl Endpoint for Jwks {
    const NAME: &str = "jwks";
    const METHOD: Method = Method::GET;
    const USES_AWS: bool = false;

    fn from_config(config: &Config, _aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Jwks {
            keys: config.token_keys()?.jwks(),
            issuer: config.token_issuer(),
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        // Behind API Gateway only the routes reach this function; at its own
        // URL every path does.
        let path = request.uri().path().trim_end_matches('/');
        let mut response = if path.ends_with(DISCOVERY_PATH) {
            json_response(StatusCode::OK, &self.discovery(&request)?)
        } else if path.ends_with(KEYS_PATH) {
            json_response(StatusCode::OK, &self.keys)
        } else {
            return Err(ApiError::NotFound);
        };
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_SECONDS}"))
                .expect("a valid header value"),
        );
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoints::serve;
    use lambda_http::request::LambdaRequest;
    use serde_json::{Value, json};

    const URL_HOST: &str = "abcdefghij0123456789klmnop.lambda-url.eu-central-1.on.aws";

    fn jwks(issuer: Option<&str>) -> Jwks {
        let (_, public) = crate::token::generate_key_pair();
        let vars = [("TOKEN_PUBLIC_KEY", public)]
            .into_iter()
            .chain(issuer.map(|i| ("TOKEN_ISSUER", i.to_string())))
            .collect::<std::collections::HashMap<_, _>>();
        let config = Config::from_lookup(move |name| vars.get(name).cloned());
        Jwks::from_config(&config, &SdkConfig::builder().build()).unwrap()
    }

    /// A GET as a Lambda function URL delivers it (payload 2.0,
    /// routeKey `$default`), read as the runtime reads it. Only
    /// `requestContext.domainName` varies: the runtime itself builds the
    /// request's URL from the Host header, which must be a valid one.
    fn request(path: &str, domain_name: Option<&str>) -> Request {
        let mut event = json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": path,
            "rawQueryString": "",
            "headers": {"host": URL_HOST, "x-forwarded-proto": "https"},
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abcdefghij0123456789klmnop",
                "domainPrefix": "abcdefghij0123456789klmnop",
                "http": {"method": "GET", "path": path, "protocol": "HTTP/1.1",
                         "sourceIp": "203.0.113.10", "userAgent": "test"},
                "requestId": "r",
                "routeKey": "$default",
                "stage": "$default",
                "time": "22/Nov/2026:01:00:00 +0000",
                "timeEpoch": 1795309200000u64
            },
            "isBase64Encoded": false
        });
        if let Some(domain) = domain_name {
            event["requestContext"]["domainName"] = domain.into();
        }
        let event: LambdaRequest = serde_json::from_value(event).unwrap();
        Request::from(event)
    }

    async fn get(jwks: &Jwks, request: Request) -> (u16, Value) {
        let response = serve(jwks, request).await;
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_slice(response.body().as_ref()).unwrap(),
        )
    }

    #[tokio::test]
    async fn without_an_issuer_the_function_url_host_is_the_issuer_and_holds_the_keys() {
        let jwks = jwks(None);
        let (status, document) = get(&jwks, request(DISCOVERY_PATH, Some(URL_HOST))).await;
        assert_eq!(status, 200, "{document}");
        let issuer = format!("https://{URL_HOST}");
        assert_eq!(document["issuer"], issuer);
        assert_eq!(
            document["jwks_uri"],
            format!("{issuer}/.well-known/jwks.json")
        );
        // What the authorizer fetches next: the jwks_uri's path at the same host.
        let (status, keys) = get(&jwks, request(KEYS_PATH, Some(URL_HOST))).await;
        assert_eq!((status, &keys), (200, &jwks.keys));
        // Host names are case-insensitive; the issuer is written in lower case.
        let upper = URL_HOST.to_ascii_uppercase();
        let (_, document) = get(&jwks, request(DISCOVERY_PATH, Some(&upper))).await;
        assert_eq!(document["issuer"], issuer);
    }

    #[tokio::test]
    async fn a_configured_issuer_wins_over_the_host() {
        let jwks = jwks(Some("http://127.0.0.1:9000"));
        let (status, document) = get(&jwks, request(DISCOVERY_PATH, Some(URL_HOST))).await;
        assert_eq!(status, 200);
        assert_eq!(document["issuer"], "http://127.0.0.1:9000");
        // The keys' URL is still the one this request reached.
        assert_eq!(
            document["jwks_uri"],
            format!("https://{URL_HOST}/.well-known/jwks.json")
        );
        // Without any host at all it still answers.
        let (status, _) = get(&jwks, request(DISCOVERY_PATH, None)).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn without_an_issuer_a_missing_or_odd_host_is_a_json_400_not_a_guess() {
        let jwks = jwks(None);
        let long = format!("{}.on.aws", "a".repeat(250));
        let label = format!("{}.on.aws", "a".repeat(64));
        for domain in [
            None,
            Some(""),
            Some("evil.example/path"),
            Some("user@host.example"),
            Some("host.example:443"),
            Some("host..example"),
            Some("host.example."),
            Some(".host.example"),
            Some("-host.example"),
            Some("host-.example"),
            Some("hôst.example"),
            Some("host example"),
            Some(&long),
            Some(&label),
        ] {
            let (status, body) = get(&jwks, request(DISCOVERY_PATH, domain)).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (400, Some("invalid_request")),
                "{domain:?}: {body}"
            );
        }
        // The keys do not depend on the issuer: served whatever the host.
        let (status, _) = get(&jwks, request(KEYS_PATH, None)).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn other_paths_at_the_function_url_are_a_json_404() {
        let jwks = jwks(None);
        for path in ["/", "/keys", "/.well-known/", "/.well-known/jwks.json.bak"] {
            let (status, body) = get(&jwks, request(path, Some(URL_HOST))).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (404, Some("not_found")),
                "{path}"
            );
        }
        for path in [
            "/.well-known/jwks.json/",
            "/.well-known/openid-configuration/",
        ] {
            assert_eq!(
                get(&jwks, request(path, Some(URL_HOST))).await.0,
                200,
                "{path}"
            );
        }
    }
}

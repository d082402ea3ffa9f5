//! `GET /.well-known/jwks.json` → the public keys tokens are signed with
//! (RFC 7517), and `GET /.well-known/openid-configuration` → the minimal
//! discovery document pointing at them. Public, cacheable, no storage: what
//! another service (or API Gateway's JWT authorizer) needs to verify tokens.

use aws_config::SdkConfig;
use lambda_http::http::{HeaderValue, Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

use super::Endpoint;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};

/// Verifiers may cache the keys this long. A new signing key is published
/// (as the next key, README "Rotating the signing key") well before it signs,
/// so a cached copy never lacks a key in use.
pub const JWKS_MAX_AGE_SECONDS: u64 = 300;

pub struct Jwks {
    /// The JWK Set, built once per cold start.
    keys: serde_json::Value,
    issuer: String,
}

impl Jwks {
    fn discovery(&self, request: &Request) -> serde_json::Value {
        // The keys' URL beside this document's, as the client reached it:
        // host, stage prefix behind API Gateway, and scheme from
        // X-Forwarded-Proto, which API Gateway always sets (https); without
        // it the request came straight over plain HTTP (cargo lambda watch).
        let uri = request.uri();
        let scheme = request
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|p| matches!(*p, "http" | "https"))
            .unwrap_or("http");
        let host = uri.authority().map_or("", |a| a.as_str());
        let path = uri.path();
        let prefix = path.split_once("/.well-known/").map_or("", |(p, _)| p);
        let base = format!("{scheme}://{host}{prefix}");
        serde_json::json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{base}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": ["RS256"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
            "claims_supported": ["sub", "iss", "aud", "iat", "exp", "jti", "token_type"],
        })
    }
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
        let path = request.uri().path().trim_end_matches('/');
        let mut response = if path.ends_with("/openid-configuration") {
            json_response(StatusCode::OK, &self.discovery(&request))
        } else {
            json_response(StatusCode::OK, &self.keys)
        };
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&format!("public, max-age={JWKS_MAX_AGE_SECONDS}"))
                .expect("a valid header value"),
        );
        Ok(response)
    }
}

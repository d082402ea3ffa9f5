//! `DELETE /users/sessions/{id}/` (bearer access token) → 204: one of the
//! caller's own sessions is revoked.

use aws_config::SdkConfig;
use lambda_http::http::Method;
use lambda_http::{Body, Request, RequestExt, Response};

use super::{Endpoint, caller, no_content};
use crate::adapters::dynamo::SessionTable;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::http::now;
use crate::observe::{self, Fact};
use crate::session::SessionId;
use crate::store::{Revocation, SessionStore};
use crate::token::TokenVerifier;

/// The route's fixed part; the session id is the segment after it.
const PREFIX: &str = "/users/sessions/";

pub struct RevokeSession<S = SessionTable> {
    pub sessions: S,
    pub verifier: TokenVerifier,
}

/// The `{id}` of the route: API Gateway's `pathParameters.id`, or, where no
/// one filled that in (a local run), the segment after the route's fixed
/// part, with or without the final slash.
fn session_id(request: &Request) -> Option<SessionId> {
    if let Some(id) = request.path_parameters_ref().and_then(|p| p.first("id")) {
        return SessionId::parse(id.trim_end_matches('/'));
    }
    let rest = request.uri().path().strip_prefix(PREFIX)?;
    SessionId::parse(rest.strip_suffix('/').unwrap_or(rest))
}

impl<S: SessionStore> RevokeSession<S> {
    /// Someone else's session and one that does not exist are the same 404
    /// `session_not_found` (the write's condition is the caller's ownership),
    /// so ids cannot be probed; a malformed id too, without a storage request.
    /// Revoking one's own session twice is 204 both times (DELETE is idempotent).
    pub async fn revoke(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let caller = caller(&self.verifier, &request)?;
        let sid = session_id(&request).ok_or(ApiError::SessionNotFound)?;
        match self
            .sessions
            .revoke(&sid, Some(&caller.user), now())
            .await?
        {
            Revocation::Revoked { .. } => {
                observe::note(Fact::SessionRevoked);
                Ok(no_content())
            }
            Revocation::AlreadyRevoked => Ok(no_content()),
            Revocation::NotFound => Err(ApiError::SessionNotFound),
        }
    }
}

impl Endpoint for RevokeSession {
    const NAME: &str = "revoke-session";
    const METHOD: Method = Method::DELETE;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(RevokeSession {
            sessions: SessionTable::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.sessions_table()?,
            ),
            verifier: config.token_verifier()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.revoke(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn at(path: &str, parameter: Option<&str>) -> Request {
        let mut request = Request::new(Body::Empty);
        *request.uri_mut() = path.parse().unwrap();
        match parameter {
            Some(id) => {
                request.with_path_parameters(HashMap::from([("id".to_string(), id.to_string())]))
            }
            None => request,
        }
    }

    #[test]
    fn the_id_comes_from_api_gateway_or_the_path() {
        let sid = SessionId::generate();
        let id = sid.as_str();
        for request in [
            at(&format!("/users/sessions/{id}/"), None),
            at(&format!("/users/sessions/{id}"), None),
            // Behind a custom domain's base path, API Gateway's parameter counts.
            at(&format!("/v1/users/sessions/{id}/"), Some(id)),
        ] {
            assert_eq!(session_id(&request), Some(sid.clone()));
        }
        for request in [
            at("/users/sessions/", None),
            at(&format!("/users/sessions/{id}/extra"), None),
            at(&format!("/users/sessions/{id}/"), Some("nope")),
        ] {
            assert_eq!(session_id(&request), None);
        }
    }
}

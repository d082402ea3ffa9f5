//! `POST /users/auth/refresh/` `{"refresh"}` → `{"access", "refresh"}`:
//! rotates the session's refresh token in one conditional write.

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Endpoint;
use crate::adapters::dynamo::SessionTable;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::http::{json_body, now};
use crate::observe;
use crate::session::{FailedRotation, RefreshKey, Session, SessionPolicy, judge_failed_rotation};
use crate::store::{Rotation, SessionStore};
use crate::token::TokenSigner;

pub struct Refresh<S = SessionTable> {
    pub sessions: S,
    pub refresh_key: RefreshKey,
    pub signer: TokenSigner,
    pub policy: SessionPolicy,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct RefreshRequest {
    /// The session's current refresh token: send_code's, or the last refresh's.
    refresh: String,
}

/// What send_code and refresh answer: the seed's `access`, and the session's
/// current refresh token.
#[derive(Serialize, ToSchema)]
pub(crate) struct TokenPair {
    pub access: String,
    pub refresh: String,
}

impl TokenPair {
    /// A fresh access token of `session`, and the refresh token of its
    /// current generation.
    pub(crate) fn of(
        session: &Session,
        signer: &TokenSigner,
        key: &RefreshKey,
        now: u64,
    ) -> TokenPair {
        TokenPair {
            access: signer.issue_access(&session.user, &session.sid, now),
            refresh: key.token(&session.sid, session.generation),
        }
    }
}

impl<S: SessionStore> Refresh<S> {
    /// The request over any port: one conditional write when the token is
    /// the current one (or the previous one within the grace period), a
    /// second only to revoke a session whose old token came back.
    pub async fn refresh(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let body: RefreshRequest = json_body(&request)?;
        // Forged, truncated, malformed: refused here, before any request.
        let token = self.refresh_key.open(body.refresh.trim())?;
        let now = now();
        let idle_expires_at = now + self.policy.idle_seconds;
        let session = match self.sessions.rotate(&token, idle_expires_at, now).await? {
            Rotation::Rotated(session) => session,
            Rotation::Refused(found) => {
                if let Some(session) = &found {
                    observe::user(session.user);
                }
                match judge_failed_rotation(&token, found, &self.policy, now) {
                    FailedRotation::Grace(current) => current,
                    FailedRotation::Unknown => return Err(ApiError::RefreshTokenInvalid),
                    FailedRotation::Revoked => return Err(ApiError::SessionRevoked),
                    FailedRotation::Expired => return Err(ApiError::SessionExpired),
                    FailedRotation::Reused => {
                        // The token was rotated out, so two parties held it:
                        // no telling which is the owner. End the session for
                        // both; its owner signs in again. The request's
                        // record is the security event `refresh_reuse`.
                        self.sessions.revoke(&token.sid, None, now).await?;
                        return Err(ApiError::RefreshTokenReused);
                    }
                }
            }
        };
        observe::user(session.user);
        let pair = TokenPair::of(&session, &self.signer, &self.refresh_key, now);
        Ok(json_response(StatusCode::OK, &pair))
    }
}

impl Endpoint for Refresh {
    const NAME: &str = "refresh";
    const METHOD: Method = Method::POST;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Refresh {
            sessions: SessionTable::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.sessions_table()?,
            ),
            refresh_key: config.refresh_key()?,
            signer: config.token_signer()?,
            policy: config.session_policy()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.refresh(request).await
    }
}

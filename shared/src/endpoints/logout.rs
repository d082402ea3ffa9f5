//! `POST /users/auth/logout/` `{"refresh"}` → 204: the token's session is revoked.

use aws_config::SdkConfig;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::{Endpoint, no_content};
use crate::adapters::dynamo::SessionTable;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::http::{json_body, now};
use crate::observe::{self, Fact};
use crate::session::RefreshKey;
use crate::store::{Revocation, SessionStore};

pub struct Logout<S = SessionTable> {
    pub sessions: S,
    pub refresh_key: RefreshKey,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct LogoutRequest {
    /// Any refresh token the session was given.
    refresh: String,
}

impl<S: SessionStore> Logout<S> {
    /// Any token of the session whose MAC is ours ends it, whatever its
    /// generation: even a rotated-out one could end it anyway through reuse
    /// detection at refresh, so asking for the current one would protect
    /// nothing and would fail a client that lost a rotation's answer.
    ///
    /// A session that is already revoked, expired or gone answers 204 too,
    /// as RFC 7009 (OAuth token revocation, §2.2) has it and as Supabase's
    /// and Cognito's sign-out do: the client wanted the session over, and it
    /// is; a retry after a lost answer succeeds. A token that is not ours at
    /// all is 401 `refresh_token_invalid`, before any storage request.
    pub async fn logout(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let body: LogoutRequest = json_body(&request)?;
        let token = self.refresh_key.open(body.refresh.trim())?;
        // The session's owner is known only from storage's answer: the
        // refresh token names the session, not the user.
        if let Revocation::Revoked { user } = self.sessions.revoke(&token.sid, None, now()).await? {
            observe::user(user);
            observe::note(Fact::SessionRevoked);
        }
        Ok(no_content())
    }
}

impl Endpoint for Logout {
    const NAME: &str = "logout";
    const METHOD: Method = Method::POST;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Logout {
            sessions: SessionTable::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.sessions_table()?,
            ),
            refresh_key: config.refresh_key()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.logout(request).await
    }
}

//! `POST /users/auth/logout_all/` (bearer access token) → 204: every session
//! of the caller is revoked.

use aws_config::SdkConfig;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};

use super::{Endpoint, caller, no_content};
use crate::adapters::dynamo::SessionTable;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::http::now;
use crate::observe::{self, Fact};
use crate::store::{Revocation, SessionStore};
use crate::token::TokenVerifier;

pub struct LogoutAll<S = SessionTable> {
    pub sessions: S,
    pub verifier: TokenVerifier,
}

impl<S: SessionStore> LogoutAll<S> {
    /// One query of the user's index, then one conditional write per session
    /// (revoked ones are left as they are). The index is eventually
    /// consistent: a session started in the last second or so may be
    /// missing from it, and so survive; the caller's own access tokens live
    /// on until they expire (README "Sessions"). A storage failure half-way
    /// answers 503 with the sessions before it revoked: a retry revokes the rest.
    pub async fn logout_all(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let caller = caller(&self.verifier, &request)?;
        let now = now();
        for sid in self.sessions.session_ids_of(&caller.user).await? {
            let revoked = self.sessions.revoke(&sid, Some(&caller.user), now).await?;
            if let Revocation::Revoked { .. } = revoked {
                observe::note(Fact::SessionRevoked);
            }
        }
        Ok(no_content())
    }
}

impl Endpoint for LogoutAll {
    const NAME: &str = "logout-all";
    const METHOD: Method = Method::POST;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(LogoutAll {
            sessions: SessionTable::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.sessions_table()?,
            ),
            verifier: config.token_verifier()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.logout_all(request).await
    }
}

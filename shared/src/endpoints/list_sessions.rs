//! `GET /users/sessions/` (bearer access token) → the caller's live sessions,
//! newest first.

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Endpoint, caller};
use crate::adapters::dynamo::SessionTable;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::http::now;
use crate::store::SessionStore;
use crate::token::TokenVerifier;

pub struct ListSessions<S = SessionTable> {
    pub sessions: S,
    pub verifier: TokenVerifier,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionView {
    id: String,
    created_at: u64,
    last_used_at: u64,
    #[schema(required)]
    user_agent: Option<String>,
    #[schema(required)]
    ip: Option<String>,
    /// The session the caller's access token belongs to.
    current: bool,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SessionList {
    sessions: Vec<SessionView>,
}

impl<S: SessionStore> ListSessions<S> {
    pub async fn list(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let caller = caller(&self.verifier, &request)?;
        let now = now();
        let mut sessions = self.sessions.sessions_of(&caller.user).await?;
        // Revoked and expired ones stay stored until TTL removes them.
        sessions.retain(|s| s.is_live(now));
        sessions
            .sort_by(|a, b| (b.created_at, b.sid.as_str()).cmp(&(a.created_at, a.sid.as_str())));
        let sessions = sessions
            .into_iter()
            .map(|s| SessionView {
                current: caller.sid.as_ref() == Some(&s.sid),
                id: s.sid.as_str().to_string(),
                created_at: s.created_at,
                last_used_at: s.last_used_at,
                user_agent: s.user_agent,
                ip: s.ip,
            })
            .collect();
        Ok(json_response(StatusCode::OK, &SessionList { sessions }))
    }
}

impl Endpoint for ListSessions {
    const NAME: &str = "list-sessions";
    const METHOD: Method = Method::GET;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(ListSessions {
            sessions: SessionTable::new(
                aws_sdk_dynamodb::Client::new(aws),
                config.sessions_table()?,
            ),
            verifier: config.token_verifier()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.list(request).await
    }
}

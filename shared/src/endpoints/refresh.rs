//! `POST /users/auth/refresh/` `{"refresh"}` → `{"access"}`. Stateless: no storage.

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::Endpoint;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::http::{json_body, now};
use crate::token::{TokenKind, TokenSigner, TokenVerifier};

pub struct Refresh {
    pub signer: TokenSigner,
    pub verifier: TokenVerifier,
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh: String,
}

#[derive(Serialize)]
struct AccessToken {
    access: String,
}

impl Endpoint for Refresh {
    const NAME: &str = "refresh";
    const METHOD: Method = Method::POST;
    const USES_AWS: bool = false;

    fn from_config(config: &Config, _aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Refresh {
            signer: config.token_signer()?,
            verifier: config.token_verifier()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let body: RefreshRequest = json_body(&request)?;
        let phone = self
            .verifier
            .verify(body.refresh.trim(), TokenKind::Refresh)?;
        let access = self.signer.issue(&phone, TokenKind::Access, now());
        Ok(json_response(StatusCode::OK, &AccessToken { access }))
    }
}

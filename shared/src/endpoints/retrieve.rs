//! `GET /users/retrieve/` (bearer access token) → the caller's profile. Its
//! `referrals` are the first `PROFILE_REFERRALS_MAX` (oldest first; `GET
//! /users/referrals/` pages through all), `referrals_count` counts them all
//! (eventually consistent: seconds behind).

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::Endpoint;
use super::caller;
use crate::adapters::dynamo::UserTable;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::phone::Phone;
use crate::store::UserStore;
use crate::token::TokenVerifier;
use crate::user::UserId;

pub struct Retrieve<U = UserTable> {
    pub users: U,
    pub verifier: TokenVerifier,
    /// `PROFILE_REFERRALS_MAX`: the most referrals `referrals` lists.
    pub referrals_max: usize,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct Profile {
    /// The user's own id: the tokens' `sub` (seed-000 had none; added for
    /// clients that correlate the two).
    id: UserId,
    phone: Phone,
    invite_code: String,
    #[schema(required)]
    invited_by_phone: Option<Phone>,
    #[schema(required)]
    invite_code_referer: Option<String>,
    /// The first `PROFILE_REFERRALS_MAX` referrals' phones, oldest first.
    referrals: Vec<Phone>,
    /// All referrals, counted from the table's stream: seconds behind a
    /// new referral, so it may briefly disagree with `referrals`.
    referrals_count: u64,
}

impl<U: UserStore> Retrieve<U> {
    async fn profile(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let id = caller(&self.verifier, &request)?.user;
        // Independent reads, issued together.
        let (user, referrals) = tokio::join!(
            self.users.get(id),
            self.users.referrals_of(id, self.referrals_max)
        );
        let user = user?.ok_or(ApiError::UserNotFound)?;
        // The referrer's phone, read now rather than copied into the user's
        // item: once the referrer deletes their account it is gone (null).
        let (invited_by_phone, invite_code_referer) = match user.referrer {
            Some(referrer) => (
                self.users.get(referrer.id).await?.map(|r| r.phone),
                Some(referrer.invite_code.to_string()),
            ),
            None => (None, None),
        };
        let profile = Profile {
            id: user.id,
            phone: user.phone,
            invite_code: user.invite_code.to_string(),
            invited_by_phone,
            invite_code_referer,
            referrals: referrals?,
            referrals_count: user.referrals_count,
        };
        Ok(json_response(StatusCode::OK, &profile))
    }
}

impl Endpoint for Retrieve {
    const NAME: &str = "retrieve";
    const METHOD: Method = Method::GET;

    /// The user and their referrals, read together.
    fn dynamodb_requests_at_once(&self) -> usize {
        2
    }

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Retrieve {
            users: UserTable::new(aws_sdk_dynamodb::Client::new(aws), config.users_table()?),
            verifier: config.token_verifier()?,
            referrals_max: config.profile_referrals_max()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.profile(request).await
    }
}

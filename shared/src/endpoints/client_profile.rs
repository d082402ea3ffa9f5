//! `GET /api/clients/profile/` (seed-004, bearer access token) → `{"id",
//! "phone", "invitation_code", "someone_invitation_code",
//! "connections_invited_clients": [phones], "referrals_count"}`: the same
//! user as `/users/retrieve/`, in the seed's words, with the same first
//! `PROFILE_REFERRALS_MAX` referrals. PATCH on the same path is its own
//! function (update_client_profile.rs).

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::{Endpoint, caller};
use crate::adapters::dynamo::UserTable;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::phone::Phone;
use crate::store::{StoreError, User, UserStore};
use crate::token::TokenVerifier;
use crate::user::UserId;

pub struct ClientProfile<U = UserTable> {
    pub users: U,
    pub verifier: TokenVerifier,
    /// `PROFILE_REFERRALS_MAX`: the most referrals the profile lists.
    pub referrals_max: usize,
}

/// The seed's profile, what both GET and PATCH answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct ClientProfileBody {
    id: UserId,
    phone: Phone,
    invitation_code: String,
    /// The invite code this user entered; null until they do.
    #[schema(required)]
    someone_invitation_code: Option<String>,
    /// Phones of the first `PROFILE_REFERRALS_MAX` who entered this user's
    /// code, oldest first (the seed listed all; `GET /users/referrals/`
    /// pages through all).
    connections_invited_clients: Vec<Phone>,
    /// Everyone who entered it, counted from the table's stream: seconds
    /// behind a new referral (not in the seed).
    referrals_count: u64,
}

impl ClientProfileBody {
    pub(crate) fn answer(
        user: User,
        referrals: Result<Vec<Phone>, StoreError>,
    ) -> Result<Response<Body>, ApiError> {
        let body = ClientProfileBody {
            id: user.id,
            phone: user.phone,
            invitation_code: user.invite_code.to_string(),
            someone_invitation_code: user.referrer.map(|r| r.invite_code.to_string()),
            connections_invited_clients: referrals?,
            referrals_count: user.referrals_count,
        };
        Ok(json_response(StatusCode::OK, &body))
    }
}

impl<U: UserStore> ClientProfile<U> {
    pub async fn profile(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let id = caller(&self.verifier, &request)?.user;
        // Independent reads, issued together. Unlike /users/retrieve/ the
        // seed shows no referrer's phone: no third read.
        let (user, referrals) = tokio::join!(
            self.users.get(id),
            self.users.referrals_of(id, self.referrals_max)
        );
        ClientProfileBody::answer(user?.ok_or(ApiError::UserNotFound)?, referrals)
    }
}

impl Endpoint for ClientProfile {
    const NAME: &str = "client-profile";
    const METHOD: Method = Method::GET;
    const ALSO_AT_PATH: &'static [Method] = &[Method::PATCH];

    /// The user and their referrals, read together.
    fn dynamodb_requests_at_once(&self) -> usize {
        2
    }

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(ClientProfile {
            users: UserTable::new(aws_sdk_dynamodb::Client::new(aws), config.users_table()?),
            verifier: config.token_verifier()?,
            referrals_max: config.profile_referrals_max()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.profile(request).await
    }
}

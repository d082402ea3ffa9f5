//! `PATCH /api/clients/profile/` (seed-004, bearer access token)
//! `{"invitation_code"}` → the whole profile, with `someone_invitation_code`
//! set: set_referrer's rules (the code exists, is not the caller's own, the
//! caller has no referrer yet, no circle closes), set_referrer's code.

use aws_config::SdkConfig;
use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::client_profile::ClientProfileBody;
use super::set_referrer::SetReferrer;
use super::{Endpoint, caller};
use crate::adapters::dynamo::UserTable;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::http::json_body;
use crate::store::UserStore;

pub struct UpdateClientProfile<U = UserTable> {
    pub referring: SetReferrer<U>,
    /// `PROFILE_REFERRALS_MAX`: the most referrals the answer lists.
    pub referrals_max: usize,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct UpdateRequest {
    /// The seed's documentation says `invitation_code`; its code read
    /// `someone_invitation_code`. Either is accepted (not both). Another
    /// user's invite code: six letters and digits, case-sensitive.
    #[serde(alias = "someone_invitation_code")]
    invitation_code: String,
}

impl<U: UserStore> UpdateClientProfile<U> {
    pub async fn update(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let id = caller(&self.referring.verifier, &request)?.user;
        let body: UpdateRequest = json_body(&request)?;
        // The referrals do not depend on the referrer being set: read
        // together with the referral's own reads, and before its write, so
        // that a failed read (503) leaves the referrer unset.
        let (proposed, referrals) = tokio::join!(
            self.referring.proposed_referrer(id, &body.invitation_code),
            self.referring.users.referrals_of(id, self.referrals_max)
        );
        let (me, referrer) = proposed?;
        let referrals = referrals?;
        let (me, _) = self.referring.join_tree(me, referrer).await?;
        ClientProfileBody::answer(me, Ok(referrals))
    }
}

impl Endpoint for UpdateClientProfile {
    const NAME: &str = "update-client-profile";
    const METHOD: Method = Method::PATCH;
    const ALSO_AT_PATH: &'static [Method] = &[Method::GET];

    /// set-referrer's reads (the user and the invite code's owner), and the
    /// user's referrals alongside.
    fn dynamodb_requests_at_once(&self) -> usize {
        self.referring.dynamodb_requests_at_once() + 1
    }

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(UpdateClientProfile {
            referring: SetReferrer::from_config(config, aws)?,
            referrals_max: config.profile_referrals_max()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.update(request).await
    }
}

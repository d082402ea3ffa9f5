//! `POST /api/register/` (seed-004): step 1 `{"phone"}` sends a code and
//! answers `{"phone"}`; step 2 `{"phone", "sms_code"}` creates the user and
//! answers 201 `{"id", "user_id", "phone", "invitation_code",
//! "access_token", "refresh_token"}`. A phone that has an account is
//! refused (400 `phone_already_registered`) unless
//! `PREVENT_USER_EXISTENCE_ERRORS` (two_step.rs).

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Serialize;
use utoipa::ToSchema;

use super::Endpoint;
use super::two_step::{Purpose, Step, TwoStep};
use crate::adapters::dynamo::{OtpTable, SessionTable, UserTable};
use crate::adapters::sms::AnySms;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::phone::Phone;
use crate::sms::SmsSender;
use crate::store::{CounterStore, OtpStore, SessionStore, UserStore};
use crate::user::UserId;

pub struct Register<O = OtpTable, U = UserTable, S = SessionTable, M = AnySms, C = OtpTable>(
    pub TwoStep<O, U, S, M, C>,
);

#[derive(Serialize, ToSchema)]
pub(crate) struct Registered {
    id: UserId,
    /// The seed answers the id twice.
    user_id: UserId,
    phone: Phone,
    invitation_code: String,
    access_token: String,
    /// Not in the seed: the session's refresh token, for
    /// `POST /users/auth/refresh/` (seed-004 clients sign in again instead).
    refresh_token: String,
}

impl<O: OtpStore, U: UserStore, S: SessionStore, M: SmsSender, C: CounterStore>
    Register<O, U, S, M, C>
{
    pub async fn register(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let (phone, signed_in) = match self.0.step(Purpose::Register, request).await? {
            Step::CodeSent(answer) => return Ok(answer),
            Step::SignedIn(phone, signed_in) => (phone, signed_in),
        };
        let invitation_code = match signed_in.created {
            Some(user) => user.invite_code,
            // An account that existed (only when existence errors are
            // prevented): the code is read, not created.
            None => {
                self.0
                    .send_code
                    .users
                    .get(signed_in.user)
                    .await?
                    .ok_or(ApiError::UserNotFound)?
                    .invite_code
            }
        };
        let body = Registered {
            id: signed_in.user,
            user_id: signed_in.user,
            phone,
            invitation_code: invitation_code.to_string(),
            access_token: signed_in.tokens.access,
            refresh_token: signed_in.tokens.refresh,
        };
        Ok(json_response(StatusCode::CREATED, &body))
    }
}

impl Endpoint for Register {
    const NAME: &str = "register";
    const METHOD: Method = Method::POST;
    const READS_PHONES: bool = true;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Register(TwoStep::from_config(config, aws)?))
    }

    /// Step 1's: it sends the SMS.
    fn open_connections(&self, aws: &SdkConfig) -> impl Future<Output = ()> + Send {
        self.0.get_code.open_connections(aws)
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.register(request).await
    }
}

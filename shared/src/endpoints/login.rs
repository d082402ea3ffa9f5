//! `POST /api/login/` (seed-004): step 1 `{"phone"}` sends a code and
//! answers `{"phone"}`; step 2 `{"phone", "sms_code"}` answers `{"id",
//! "phone", "access_token", "refresh_token"}`. A phone without an account
//! is refused (400 `user_not_found`) unless `PREVENT_USER_EXISTENCE_ERRORS`
//! (two_step.rs).

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

pub struct Login<O = OtpTable, U = UserTable, S = SessionTable, M = AnySms, C = OtpTable>(
    pub TwoStep<O, U, S, M, C>,
);

#[derive(Serialize, ToSchema)]
pub(crate) struct LoggedIn {
    id: UserId,
    phone: Phone,
    access_token: String,
    /// Not in the seed, as in register.
    refresh_token: String,
}

impl<O: OtpStore, U: UserStore, S: SessionStore, M: SmsSender, C: CounterStore>
    Login<O, U, S, M, C>
{
    pub async fn login(&self, request: Request) -> Result<Response<Body>, ApiError> {
        match self.0.step(Purpose::Login, request).await? {
            Step::CodeSent(answer) => Ok(answer),
            Step::SignedIn(phone, signed_in) => Ok(json_response(
                StatusCode::OK,
                &LoggedIn {
                    id: signed_in.user,
                    phone,
                    access_token: signed_in.tokens.access,
                    refresh_token: signed_in.tokens.refresh,
                },
            )),
        }
    }
}

impl Endpoint for Login {
    const NAME: &str = "login";
    const METHOD: Method = Method::POST;
    const READS_PHONES: bool = true;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(Login(TwoStep::from_config(config, aws)?))
    }

    /// Step 1's: it sends the SMS.
    fn open_connections(&self, aws: &SdkConfig) -> impl Future<Output = ()> + Send {
        self.0.get_code.open_connections(aws)
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.login(request).await
    }
}

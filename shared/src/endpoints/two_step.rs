//! What seed-004's `POST /api/register/` and `POST /api/login/` share: one
//! route, two steps. A body without `sms_code` asks for a code (get_code's
//! work, same limits, same answer); a body with it signs in with the code
//! (send_code's work, same attempt limits, same session). Only the rule
//! about existing accounts (`TwoStep::account_for`, here) and the answer's
//! shape (register.rs, login.rs) differ between the two routes.

use aws_config::SdkConfig;
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use utoipa::ToSchema;

use super::get_code::GetCode;
use super::send_code::{KnownAccount, SendCode, SignedIn};
use crate::adapters::dynamo::{OtpTable, SessionTable, UserTable};
use crate::adapters::sms::AnySms;
use crate::config::{Config, ConfigError};
use crate::error::ApiError;
use crate::http::{client_info, json_body, source_ip};
use crate::observe;
use crate::phone::Phone;
use crate::sms::SmsSender;
use crate::store::{CounterStore, OtpStore, SessionStore, UserStore};

/// Which route: what it requires of the phone's account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// The phone must have no account yet.
    Register,
    /// The phone must have an account.
    Login,
}

pub struct TwoStep<O = OtpTable, U = UserTable, S = SessionTable, M = AnySms, C = OtpTable> {
    /// Step 1.
    pub get_code: GetCode<O, M, C>,
    /// Step 2.
    pub send_code: SendCode<O, U, S, C>,
    /// `PREVENT_USER_EXISTENCE_ERRORS`: true, neither step looks at whether
    /// the phone has an account (both routes sign in or sign up, like
    /// get_code and send_code); false, each step refuses a phone the route
    /// is not for, as the seed does, before any code is sent or counted.
    pub prevent_user_existence_errors: bool,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct StepRequest {
    /// As in get_code: international or national, digits, spaces and `+-().`.
    phone: String,
    /// The SMS code, in step 2 (also read as `password` or `code`, as
    /// send_code reads it); absent (or null) in step 1.
    // Without send_code's names, such a step 2 would read as a step 1: a
    // new SMS, and the code the person typed spent.
    #[serde(default, alias = "password", alias = "code")]
    sms_code: Option<String>,
    /// As in get_code: `ru` or `en`, the SMS's language.
    #[serde(default)]
    lang: Option<String>,
}

/// How a request ended.
pub(crate) enum Step {
    /// Step 1: get_code's answer.
    CodeSent(Response<Body>),
    /// Step 2.
    SignedIn(Phone, SignedIn),
}

impl<O: OtpStore, U: UserStore, S: SessionStore, M: SmsSender, C: CounterStore>
    TwoStep<O, U, S, M, C>
{
    pub(crate) async fn step(&self, purpose: Purpose, request: Request) -> Result<Step, ApiError> {
        let body: StepRequest = json_body(&request)?;
        let phone = Phone::parse(&body.phone, &self.send_code.phone_policy)?;
        observe::phone(&phone);
        let account = self.account_for(purpose, &phone).await?;
        match body.sms_code {
            None => {
                let sent = self
                    .get_code
                    .send_to(&phone, body.lang.as_deref(), source_ip(&request))
                    .await?;
                Ok(Step::CodeSent(self.get_code.answer(&phone, sent)))
            }
            Some(code) => {
                let signed_in = self
                    .send_code
                    .sign_in_with(
                        &phone,
                        &code,
                        source_ip(&request),
                        client_info(&request),
                        account,
                    )
                    .await?;
                Ok(Step::SignedIn(phone, signed_in))
            }
        }
    }

    /// The phone's account, if the route is for it; the seed's refusal if
    /// not. One consistent read, none when existence errors are prevented.
    async fn account_for(&self, purpose: Purpose, phone: &Phone) -> Result<KnownAccount, ApiError> {
        if self.prevent_user_existence_errors {
            return Ok(KnownAccount::Unknown);
        }
        match (purpose, self.send_code.users.id_of(phone).await?) {
            (Purpose::Register, None) => Ok(KnownAccount::Absent),
            (Purpose::Register, Some(_)) => Err(ApiError::PhoneAlreadyRegistered),
            (Purpose::Login, Some(id)) => Ok(KnownAccount::Of(id)),
            (Purpose::Login, None) => Err(ApiError::NoAccount),
        }
    }
}

impl TwoStep {
    pub(crate) fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        use super::Endpoint;
        Ok(TwoStep {
            get_code: GetCode::from_config(config, aws)?,
            send_code: SendCode::from_config(config, aws)?,
            prevent_user_existence_errors: config.prevent_user_existence_errors()?,
        })
    }
}

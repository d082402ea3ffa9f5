//! `POST /users/auth/get_code/` `{"phone"}` → sends a sign-in code by SMS.

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};

use super::Endpoint;
use crate::adapters::dynamo::OtpTable;
use crate::adapters::sms::AnySms;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::http::{json_body, now};
use crate::otp::{CodeHasher, OtpPolicy, PendingCode};
use crate::phone::{Phone, PhonePolicy};
use crate::sms::SmsSender;
use crate::sms_text::{Lang, SmsTexts};
use crate::store::OtpStore;

pub struct GetCode<O = OtpTable, S = AnySms> {
    pub otps: O,
    pub sms: S,
    pub hasher: CodeHasher,
    pub otp_policy: OtpPolicy,
    pub phone_policy: PhonePolicy,
    pub texts: SmsTexts,
}

#[derive(Deserialize)]
struct GetCodeRequest {
    phone: String,
    /// `ru` or `en`: the SMS's language, instead of the phone's region's.
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Serialize)]
struct GetCodeResponse {
    phone: String,
    /// Only with the local log-only SMS sender.
    #[serde(skip_serializing_if = "Option::is_none")]
    sms_code: Option<String>,
}

impl<O: OtpStore, S: SmsSender> GetCode<O, S> {
    /// The request over any ports: what `handle` runs in the function, and
    /// what tests run over in-memory or scripted ones.
    pub async fn send_code(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let body: GetCodeRequest = json_body(&request)?;
        let phone = Phone::parse(&body.phone, &self.phone_policy)?;
        let lang = match body.lang.as_deref() {
            Some(requested) => Lang::parse(requested).ok_or(ApiError::UnsupportedLang)?,
            None => Lang::for_region(phone.region()),
        };
        let now = now();
        let code = self.otp_policy.generate();
        let pending = PendingCode::new(
            phone.clone(),
            self.hasher.hash(&phone, &code),
            now,
            &self.otp_policy,
        );

        if let Some(refusal) = self.otps.issue(&pending, &self.otp_policy, now).await? {
            return Err(refusal.into());
        }

        if let Err(err) = self
            .sms
            .send(&phone, &self.texts.message(lang, &code))
            .await
        {
            tracing::error!(error = %err, "SMS send failed");
            // Take the code back: no cooldown, and an SMS never sent does not count.
            if let Err(err) = self.otps.withdraw(&phone, &pending.code_hash).await {
                tracing::error!(error = %err, "could not withdraw the unsent code");
            }
            return Err(ApiError::Unavailable);
        }

        let sms_code = self.sms.returns_code_in_response().then_some(code);
        Ok(json_response(
            StatusCode::OK,
            &GetCodeResponse {
                phone: phone.to_string(),
                sms_code,
            },
        ))
    }
}

impl Endpoint for GetCode {
    const NAME: &str = "get-code";
    const METHOD: Method = Method::POST;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(GetCode {
            otps: OtpTable::new(aws_sdk_dynamodb::Client::new(aws), config.otps_table()?),
            sms: AnySms::from_config(config, aws)?,
            hasher: CodeHasher::new(&config.otp_hmac_key()?),
            otp_policy: config.otp_policy()?,
            phone_policy: config.phone_policy()?,
            texts: config.sms_texts()?,
        })
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.send_code(request).await
    }
}

//! The three SMS senders, chosen by `SMS_PROVIDER`.

use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;

use super::{aws_error_kind, mask_digits};
use crate::config::{Config, ConfigError, SmsProvider};
use crate::phone::Phone;
use crate::sms::{SmsError, SmsSender};

/// Amazon SNS direct-to-phone transactional SMS.
pub struct SnsSms {
    client: aws_sdk_sns::Client,
    sender_id: Option<String>,
    max_price_usd: Option<String>,
}

impl SnsSms {
    pub fn new(
        client: aws_sdk_sns::Client,
        sender_id: Option<String>,
        max_price_usd: Option<String>,
    ) -> Self {
        SnsSms {
            client,
            sender_id,
            max_price_usd,
        }
    }

    fn number(value: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("Number")
            .string_value(value)
            .build()
            .expect("data type is set")
    }

    fn attribute(value: &str) -> MessageAttributeValue {
        MessageAttributeValue::builder()
            .data_type("String")
            .string_value(value)
            .build()
            .expect("data type is set")
    }
}

impl SmsSender for SnsSms {
    async fn send(&self, phone: &Phone, text: &str) -> Result<(), SmsError> {
        let mut request = self
            .client
            .publish()
            .phone_number(phone.as_str())
            .message(text)
            // Transactional: higher delivery priority, not subject to marketing opt-outs.
            .message_attributes("AWS.SNS.SMS.SMSType", Self::attribute("Transactional"));
        if let Some(sender_id) = &self.sender_id {
            request =
                request.message_attributes("AWS.SNS.SMS.SenderID", Self::attribute(sender_id));
        }
        if let Some(price) = &self.max_price_usd {
            // SNS does not send a message that would cost more than this.
            request = request.message_attributes("AWS.SNS.SMS.MaxPrice", Self::number(price));
        }
        request
            .send()
            .await
            .map(|_| ())
            .map_err(|e| SmsError(format!("SNS: {}", aws_error_kind(&e))))
    }
}

/// A reqwest error as its kind only (its text can carry the URL and body).
fn http_error_kind(err: &reqwest::Error) -> &'static str {
    if err.is_timeout() {
        "timeout"
    } else if err.is_connect() {
        "connection failed"
    } else if err.is_body() || err.is_decode() {
        "unreadable body"
    } else if err.is_status() {
        "error status"
    } else {
        "HTTP error"
    }
}

/// SMS Aero (https://smsaero.ru) HTTP API v2: `POST {base}/sms/send` with basic auth.
pub struct SmsAero {
    http: reqwest::Client,
    base_url: String,
    email: String,
    api_key: String,
    sign: String,
}

#[derive(serde::Serialize)]
struct SmsAeroRequest<'a> {
    number: &'a str,
    text: &'a str,
    sign: &'a str,
}

#[derive(serde::Deserialize)]
struct SmsAeroResponse {
    success: bool,
    message: Option<String>,
}

impl SmsAero {
    pub fn new(base_url: String, email: String, api_key: String, sign: String) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()
            .expect("TLS backend initialises");
        SmsAero {
            http,
            base_url: base_url.trim_end_matches('/').to_string(),
            email,
            api_key,
            sign,
        }
    }
}

impl SmsSender for SmsAero {
    async fn send(&self, phone: &Phone, text: &str) -> Result<(), SmsError> {
        let body = serde_json::to_vec(&SmsAeroRequest {
            // SMS Aero wants the digits only, without the leading `+`.
            number: phone.as_str().trim_start_matches('+'),
            text,
            sign: &self.sign,
        })
        .expect("request serializes");
        let response = self
            .http
            .post(format!("{}/sms/send", self.base_url))
            .basic_auth(&self.email, Some(&self.api_key))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SmsError(format!("SMS Aero request failed: {}", http_error_kind(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SmsError(format!("SMS Aero response: {}", http_error_kind(&e))))?;
        let parsed: Option<SmsAeroResponse> = serde_json::from_slice(&bytes).ok();
        match parsed {
            Some(SmsAeroResponse { success: true, .. }) if status.is_success() => Ok(()),
            // Its message can quote the number: digits are masked.
            Some(SmsAeroResponse { message, .. }) => Err(SmsError(format!(
                "SMS Aero refused ({status}): {}",
                mask_digits(&message.unwrap_or_default())
            ))),
            None => Err(SmsError(format!(
                "SMS Aero answered {status} with an unexpected body"
            ))),
        }
    }
}

/// Local runs only: logs the code instead of sending it.
#[cfg(feature = "dev-mode")]
pub struct LogSms;

#[cfg(feature = "dev-mode")]
impl SmsSender for LogSms {
    async fn send(&self, phone: &Phone, text: &str) -> Result<(), SmsError> {
        let segments = crate::sms_text::Segments::of(text).to_string();
        tracing::info!(%phone, text, %segments, "dev-mode SMS (not sent)");
        Ok(())
    }

    fn returns_code_in_response(&self) -> bool {
        true
    }
}

/// The configured sender.
pub enum AnySms {
    Sns(SnsSms),
    SmsAero(SmsAero),
    #[cfg(feature = "dev-mode")]
    Log(LogSms),
}

impl AnySms {
    pub fn from_config(config: &Config, aws: &aws_config::SdkConfig) -> Result<Self, ConfigError> {
        Ok(match config.sms_provider()? {
            SmsProvider::Sns => AnySms::Sns(SnsSms::new(
                aws_sdk_sns::Client::new(aws),
                config.sns_sender_id()?,
                config.sns_max_price_usd()?,
            )),
            SmsProvider::SmsAero => {
                let (email, api_key) = config.smsaero_credentials()?;
                AnySms::SmsAero(SmsAero::new(
                    config.smsaero_base_url(),
                    email,
                    api_key,
                    config.smsaero_sign(),
                ))
            }
            #[cfg(feature = "dev-mode")]
            SmsProvider::Log => AnySms::Log(LogSms),
        })
    }
}

impl SmsSender for AnySms {
    async fn send(&self, phone: &Phone, text: &str) -> Result<(), SmsError> {
        match self {
            AnySms::Sns(sender) => sender.send(phone, text).await,
            AnySms::SmsAero(sender) => sender.send(phone, text).await,
            #[cfg(feature = "dev-mode")]
            AnySms::Log(sender) => sender.send(phone, text).await,
        }
    }

    fn returns_code_in_response(&self) -> bool {
        match self {
            #[cfg(feature = "dev-mode")]
            AnySms::Log(sender) => sender.returns_code_in_response(),
            _ => false,
        }
    }
}

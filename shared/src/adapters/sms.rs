//! The three SMS senders, chosen by `SMS_PROVIDER`.

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use lambda_http::http::{HeaderValue, Request, StatusCode, header};

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

    /// Opens the connection to SNS during init, for the reason and in the
    /// way `dynamo::open_connections` opens DynamoDB's: the first code's SMS
    /// then does not pay the TLS handshake at 128 MB's share of a vCPU.
    ///
    /// The call: one `GetSMSAttributes` for one attribute, the account's
    /// default SMS type (nothing secret), SNS's read-only call that names no
    /// phone and no topic; template.yaml grants it to the functions that
    /// send codes. One attempt, never retried (SNS throttles this call per
    /// account, and a throttled answer has opened the connection too), the
    /// answer ignored.
    pub async fn open_connection(&self) {
        let _ = self
            .client
            .get_sms_attributes()
            .attributes("DefaultSMSType")
            .customize()
            .config_override(
                aws_sdk_sns::config::Builder::default()
                    .retry_config(aws_config::retry::RetryConfig::disabled()),
            )
            .send()
            .await;
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

/// SMS Aero (https://smsaero.ru) HTTP API v2: `POST {base}/sms/send` with basic auth.
///
/// Over the HTTP stack the AWS SDK already links (hyper, rustls on aws-lc),
/// not a second one (reqwest had its own TLS verifier and client).
pub struct SmsAero {
    // Boxed: hyper's client is a few hundred bytes, AnySms's SNS variant 56.
    http: Box<Client<HttpsConnector<HttpConnector>, Full<Bytes>>>,
    base_url: String,
    authorization: HeaderValue,
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

/// A whole request, answer read, may take this long.
const SMSAERO_TIMEOUT: Duration = Duration::from_secs(5);

impl SmsAero {
    /// Trusts the system's certificate store (SMS Aero is not an AWS
    /// endpoint), or `SSL_CERT_FILE`'s certificates when it is set; read
    /// here, at init, only in a function configured for SMS Aero.
    pub fn new(base_url: String, email: String, api_key: String, sign: String) -> Self {
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("aws-lc supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_secs(2)));
        tcp.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            // http:// only for a local stand-in (tests); the default is https.
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{email}:{api_key}"));
        let mut authorization = HeaderValue::from_str(&format!("Basic {credentials}"))
            .expect("base64 is a valid header value");
        authorization.set_sensitive(true);
        SmsAero {
            http: Box::new(Client::builder(TokioExecutor::new()).build(https)),
            base_url: base_url.trim_end_matches('/').to_string(),
            authorization,
            sign,
        }
    }

    /// Opens the connection to SMS Aero during init, for the reason
    /// `SnsSms::open_connection` opens SNS's: one `GET {base}/balance`, SMS
    /// Aero's read of the account's balance, the answer ignored. hyper keeps
    /// the connection for the first SMS.
    pub async fn open_connection(&self) {
        let request = Request::get(format!("{}/balance", self.base_url))
            .header(header::AUTHORIZATION, self.authorization.clone())
            .body(Full::default());
        let Ok(request) = request else {
            return; // An unusable base URL: the first SMS will say so.
        };
        let _ = self.exchange(request).await;
    }

    async fn post(&self, body: Vec<u8>) -> Result<(StatusCode, Bytes), &'static str> {
        let request = Request::post(format!("{}/sms/send", self.base_url))
            .header(header::AUTHORIZATION, self.authorization.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|_| "request could not be built")?;
        self.exchange(request).await
    }

    /// The answer's status and body, or what went wrong, by kind only (an
    /// error's text can carry the URL).
    async fn exchange(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<(StatusCode, Bytes), &'static str> {
        let exchange = async {
            let response = self.http.request(request).await.map_err(|e| {
                if e.is_connect() {
                    "connection failed"
                } else {
                    "HTTP error"
                }
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|_| "unreadable body")?;
            Ok((status, body.to_bytes()))
        };
        tokio::time::timeout(SMSAERO_TIMEOUT, exchange)
            .await
            .unwrap_or(Err("timeout"))
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
        let (status, bytes) = self
            .post(body)
            .await
            .map_err(|kind| SmsError(format!("SMS Aero request failed: {kind}")))?;
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

    /// The provider's connection, opened at init (the log sender has none).
    pub async fn open_connection(&self) {
        match self {
            AnySms::Sns(sender) => sender.open_connection().await,
            AnySms::SmsAero(sender) => sender.open_connection().await,
            #[cfg(feature = "dev-mode")]
            AnySms::Log(_) => {}
        }
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

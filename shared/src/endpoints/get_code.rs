//! `POST /users/auth/get_code/` `{"phone"}` → sends a sign-in code by SMS.

use aws_config::SdkConfig;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Endpoint;
use crate::adapters::dynamo::OtpTable;
use crate::adapters::sms::AnySms;
use crate::config::{Config, ConfigError};
use crate::error::{ApiError, json_response};
use crate::http::{json_body, now, source_ip};
use crate::limits::{Counter, LimitRefusal, SendLimits, Source, TestNumbers};
use crate::observe::{self, Fact};
use crate::otp::{CodeHasher, OtpPolicy, PendingCode};
use crate::phone::{Phone, PhonePolicy};
use crate::sms::SmsSender;
use crate::sms_text::{Lang, SmsTexts};
use crate::store::{CounterStore, OtpStore, StoreError};

pub struct GetCode<O = OtpTable, S = AnySms, C = OtpTable> {
    pub otps: O,
    pub sms: S,
    /// The budgets' counters (in the codes table, deployed).
    pub counters: C,
    pub hasher: CodeHasher,
    pub otp_policy: OtpPolicy,
    pub phone_policy: PhonePolicy,
    pub texts: SmsTexts,
    pub limits: SendLimits,
    pub test_numbers: TestNumbers,
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct GetCodeRequest {
    /// As the person typed it: international (`+79001234567`), or national
    /// in the default region, `PHONE_DEFAULT_REGION` (`8 900 123-45-67`).
    /// Digits, spaces and `+-().` only.
    phone: String,
    /// `ru` or `en`: the SMS's language, instead of the phone's region's.
    #[serde(default)]
    lang: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct GetCodeResponse {
    phone: String,
    /// Dev mode only: the code, with the local log-only SMS sender (`make
    /// dev`; cargo feature `dev-mode`, which no deployed build has).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sms_code: Option<String>,
    /// Dev mode only: the SMS exactly as it would have gone out (as `sms_code`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    sms_text: Option<String>,
}

/// A code sent (or stored for a test number).
pub(crate) struct SentCode {
    code: String,
    /// The SMS sent; None for a test number (no SMS).
    text: Option<String>,
}

/// What became of one counter's unit.
enum Take {
    Taken,
    Refused,
    Failed(StoreError),
}

impl<O: OtpStore, S: SmsSender, C: CounterStore> GetCode<O, S, C> {
    /// The request over any ports: what `handle` runs in the function, and
    /// what tests run over in-memory or scripted ones.
    ///
    /// Every limit is checked before the SMS is sent: the phone's own rules
    /// (lockout, cooldown, hourly cap) in the write that stores the code, and
    /// the budgets (source IP, country, service) each in its own atomic
    /// increment, all issued at once — one round trip. Whatever is refused,
    /// fails or is not sent is given back; a crash between taking and giving
    /// back leaves the units taken (an over-count, the safe direction).
    pub async fn get_code(&self, request: Request) -> Result<Response<Body>, ApiError> {
        let body: GetCodeRequest = json_body(&request)?;
        let phone = Phone::parse(&body.phone, &self.phone_policy)?;
        observe::phone(&phone);
        let sent = self
            .send_to(&phone, body.lang.as_deref(), source_ip(&request))
            .await?;
        Ok(self.answer(&phone, sent))
    }

    /// Stores a new code for `phone` and sends it (the SMS in `lang`, else
    /// the phone's region's language), under every limit; `source` is the
    /// client's address. What get_code does after reading its request, and
    /// step 1 of seed-004's register and login.
    pub(crate) async fn send_to(
        &self,
        phone: &Phone,
        lang: Option<&str>,
        source: Option<&str>,
    ) -> Result<SentCode, ApiError> {
        let lang = match lang {
            Some(requested) => Lang::parse(requested).ok_or(ApiError::UnsupportedLang)?,
            None => Lang::for_region(phone.region()),
        };
        let now = now();
        let test_code = self.test_numbers.code_for(phone, now);
        let code = match test_code {
            Some(fixed) => fixed.to_string(),
            None => self.otp_policy.generate(),
        };
        let pending = PendingCode::new(
            phone.clone(),
            self.hasher.hash(phone, &code),
            now,
            &self.otp_policy,
        );

        if test_code.is_some() {
            // A test number: its fixed code is stored and checked like any
            // other, but no SMS goes out and no SMS budget is touched.
            if let Some(refusal) = self.otps.issue(&pending, &self.otp_policy, now).await? {
                return Err(refusal.into());
            }
            tracing::info!("code stored for a test phone number; no SMS sent");
            return Ok(SentCode { code, text: None });
        }

        let source = Source::from_text(source);
        let counters = self.limits.counters(source, phone.region(), now);
        let (issued, source_taken, region_taken, service_taken) = tokio::join!(
            self.otps.issue(&pending, &self.otp_policy, now),
            self.take(Some(&counters.source)),
            self.take(counters.region.as_ref()),
            self.take(Some(&counters.service)),
        );
        let takes = [
            (Some(&counters.source), source_taken),
            (counters.region.as_ref(), region_taken),
            (Some(&counters.service), service_taken),
        ];

        let mut refused: Option<LimitRefusal> = None;
        let mut failed: Option<StoreError> = None;
        let mut taken: Vec<&Counter> = Vec::new();
        for (counter, take) in takes {
            let Some(counter) = counter else { continue };
            match take {
                Some(Take::Taken) => taken.push(counter),
                Some(Take::Refused) => {
                    // The most specific budget answers: the source's, the
                    // country's, then the service's.
                    refused.get_or_insert(counter.refusal(now));
                }
                Some(Take::Failed(err)) => failed = failed.or(Some(err)),
                None => {}
            }
        }
        // A failed write may have taken effect (its answer lost): withdrawing
        // it too is safe, as the withdrawal only removes this code's hash.
        let may_be_stored = matches!(issued, Ok(None) | Err(_));
        let outcome = match issued {
            Err(err) => Err(ApiError::from(err)),
            Ok(Some(refusal)) => Err(refusal.into()),
            Ok(None) => match (failed, refused) {
                (Some(err), _) => Err(ApiError::from(err)),
                (None, Some(refusal)) => Err(refusal.into()),
                (None, None) => Ok(()),
            },
        };
        if let Err(err) = outcome {
            self.give_back(phone, may_be_stored.then_some(&pending), &taken)
                .await;
            return Err(err);
        }

        let text = self.texts.message(lang, &code);
        if let Err(err) = self.sms.send(phone, &text).await {
            tracing::error!(error = %err, "SMS send failed");
            observe::note(Fact::SmsFailed);
            // Take the code back (no cooldown, the SMS does not count) and the budgets.
            self.give_back(phone, Some(&pending), &taken).await;
            return Err(ApiError::Unavailable);
        }
        observe::note(Fact::CodeSent);
        Ok(SentCode {
            code,
            text: Some(text),
        })
    }

    /// One unit of `counter`; None where there is no counter.
    async fn take(&self, counter: Option<&Counter>) -> Option<Take> {
        let counter = counter?;
        if counter.limit == 0 {
            return Some(Take::Refused);
        }
        Some(match self.counters.take(counter).await {
            Ok(true) => Take::Taken,
            Ok(false) => Take::Refused,
            Err(err) => Take::Failed(err),
        })
    }

    /// Withdraws the code, if it may have been stored, and gives back the units taken,
    /// all at once. A failure here is logged: what it leaves counted is a
    /// code nobody received (held for the cooldown) and units of a budget —
    /// too much counted, never too little.
    async fn give_back(&self, phone: &Phone, code: Option<&PendingCode>, taken: &[&Counter]) {
        let withdraw = async {
            if let Some(code) = code
                && let Err(err) = self.otps.withdraw(phone, &code.code_hash).await
            {
                tracing::error!(error = %err, "could not withdraw the unsent code");
            }
        };
        tokio::join!(
            withdraw,
            self.give_back_unit(taken.first().copied()),
            self.give_back_unit(taken.get(1).copied()),
            self.give_back_unit(taken.get(2).copied()),
        );
    }

    async fn give_back_unit(&self, counter: Option<&Counter>) {
        if let Some(counter) = counter
            && let Err(err) = self.counters.give_back(counter).await
        {
            tracing::error!(error = %err, "could not give a budget's unit back");
        }
    }

    /// get_code's answer (seed-004's step 1 too): the phone, and in dev
    /// mode the code and the SMS.
    pub(crate) fn answer(&self, phone: &Phone, sent: SentCode) -> Response<Body> {
        let dev = self.sms.returns_code_in_response();
        json_response(
            StatusCode::OK,
            &GetCodeResponse {
                phone: phone.to_string(),
                sms_code: dev.then_some(sent.code),
                sms_text: sent.text.filter(|_| dev),
            },
        )
    }
}

impl Endpoint for GetCode {
    const NAME: &str = "get-code";
    const METHOD: Method = Method::POST;
    const READS_PHONES: bool = true;

    fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        let dynamo = aws_sdk_dynamodb::Client::new(aws);
        let table = config.otps_table()?;
        let otp_policy = config.otp_policy()?;
        let phone_policy = config.phone_policy()?;
        let test_numbers = config.test_numbers(&phone_policy, &otp_policy)?;
        if !test_numbers.is_empty() {
            // The count only: the numbers and codes are credentials.
            tracing::info!(
                count = test_numbers.len(),
                last_day = %test_numbers.last_day(),
                expired = test_numbers.expired(now()),
                "test phone numbers configured (no SMS, no SMS budgets)"
            );
        }
        Ok(GetCode {
            otps: OtpTable::new(dynamo.clone(), table.clone()),
            sms: AnySms::from_config(config, aws)?,
            counters: OtpTable::new(dynamo, table),
            hasher: CodeHasher::new(&config.otp_hmac_key()?),
            texts: config.sms_texts()?,
            limits: config.send_limits(&phone_policy)?,
            test_numbers,
            otp_policy,
            phone_policy,
        })
    }

    /// The code, and the counters of the budgets it counts against.
    fn dynamodb_requests_at_once(&self) -> usize {
        1 + self.limits.budgets_per_code()
    }

    /// DynamoDB's and the SMS provider's, at once.
    async fn open_connections(&self, aws: &SdkConfig) {
        tokio::join!(
            crate::adapters::dynamo::open_connections(aws, self.dynamodb_requests_at_once()),
            self.sms.open_connection()
        );
    }

    async fn handle(&self, request: Request) -> Result<Response<Body>, ApiError> {
        self.get_code(request).await
    }
}

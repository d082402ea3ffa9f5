//! Sending the sign-in code. Implementations live in `adapters::sms`.

use std::future::Future;

use crate::phone::Phone;

#[derive(Debug, thiserror::Error)]
#[error("SMS not sent: {0}")]
pub struct SmsError(pub String);

pub trait SmsSender: Send + Sync {
    fn send(&self, phone: &Phone, text: &str) -> impl Future<Output = Result<(), SmsError>> + Send;

    /// True only for the local log-only sender: there is no phone to read the
    /// code from, so the API returns it (`sms_code`) instead.
    fn returns_code_in_response(&self) -> bool {
        false
    }
}

pub fn code_message(code: &str, ttl_seconds: u64) -> String {
    format!(
        "{code} is your sign-in code. It expires in {} min. Do not share it.",
        ttl_seconds.div_ceil(60)
    )
}

//! Sending the sign-in code. Implementations live in `adapters::sms`; the
//! text is written by `sms_text`.

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

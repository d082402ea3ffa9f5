//! Everything that talks to AWS or another outside service lives here.
//!
//! Errors from outside are logged, so they are reduced here to what an
//! operator needs and nothing a user sent: an AWS error is its kind and
//! error code (an SNS `InvalidParameter` message, or the raw body that
//! `DisplayErrorContext` prints, contains the phone number).

pub mod aws_http;
pub mod dynamo;
pub mod eventbridge;
pub mod sms;

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

/// What went wrong in an AWS SDK call, without its message or request data:
/// `service error ResourceNotFoundException`, `timeout`, `connection failed`, ...
pub(crate) fn aws_error_kind<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ServiceError(e) => {
            format!("service error {}", e.err().code().unwrap_or("(no code)"))
        }
        SdkError::TimeoutError(_) => "timeout".into(),
        SdkError::DispatchFailure(e) if e.is_timeout() => "connection timeout".into(),
        SdkError::DispatchFailure(e) if e.is_io() => "connection failed".into(),
        SdkError::DispatchFailure(_) => "request not sent".into(),
        SdkError::ResponseError(_) => "unreadable response".into(),
        SdkError::ConstructionFailure(_) => "request could not be built".into(),
        _ => "SDK error".into(),
    }
}

/// Free text from a provider, with every run of 4 or more digits masked: an
/// operator still reads "insufficient balance", never a number or a code.
pub(crate) fn mask_digits(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    let mut digits = String::new();
    for c in text.chars().chain(std::iter::once('\0')) {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        if digits.len() >= 4 {
            masked.push_str("####");
        } else {
            masked.push_str(&digits);
        }
        digits.clear();
        if c != '\0' {
            masked.push(c);
        }
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_runs_are_masked_but_short_numbers_kept() {
        assert_eq!(
            mask_digits("Number 79001234567 is invalid (code 42), +7 900 123-45-67, 1234"),
            "Number #### is invalid (code 42), +7 900 123-45-67, ####"
        );
        assert_eq!(mask_digits(""), "");
        assert_eq!(mask_digits("Недостаточно средств"), "Недостаточно средств");
    }
}

//! The one error type every endpoint returns, and its one mapping to HTTP.

use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::cursor::{InvalidCursor, InvalidLimit, MAX_PAGE_SIZE};
use crate::limits::{Budget, LimitRefusal};
use crate::otp::SendRefusal;
use crate::phone::PhoneError;
use crate::session::InvalidRefreshToken;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("request body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("method not allowed; use {allow}")]
    MethodNotAllowed { allow: String },
    #[error(transparent)]
    Phone(#[from] PhoneError),
    #[error("the code must be the {length}-digit code from the SMS")]
    MalformedCode { length: usize },
    #[error("an invite code is 6 letters or digits")]
    MalformedInviteCode,
    #[error("lang must be \"ru\" or \"en\"")]
    UnsupportedLang,
    #[error("a new code can be requested in {retry_after} s")]
    ResendTooSoon { retry_after: u64 },
    #[error("too many codes were sent to this phone; try again in {retry_after} s")]
    TooManyCodes { retry_after: u64 },
    #[error("too many wrong codes for this phone; sign-in is locked for {retry_after} s")]
    PhoneLocked { retry_after: u64 },
    #[error("too many codes were requested from your network; try again in {retry_after} s")]
    TooManyFromIp { retry_after: u64 },
    #[error("too many codes were checked from your network; try again in {retry_after} s")]
    TooManyChecksFromIp { retry_after: u64 },
    #[error("no more codes can be sent to this country today; try again in {retry_after} s")]
    RegionBudgetExhausted { retry_after: u64 },
    #[error("sign-in codes cannot be sent right now; try again in {retry_after} s")]
    SmsBudgetExhausted { retry_after: u64 },
    #[error("the code is wrong or was already used; request a new one")]
    CodeInvalid,
    #[error("the code has expired; request a new one")]
    CodeExpired,
    #[error("too many wrong attempts for this code; request a new one")]
    TooManyAttempts,
    #[error("an `Authorization: Bearer <access token>` header is required")]
    MissingToken,
    #[error(transparent)]
    Token(#[from] TokenError),
    // Also a genuine token whose session record is gone (TTL removed it after
    // it expired, or the account was deleted): the record was the only
    // witness of which of its sessions ended how.
    #[error(
        "the refresh token is not valid: malformed, not issued by this service, or its session \
         no longer exists; sign in again"
    )]
    RefreshTokenInvalid,
    #[error("this session was signed out; sign in again")]
    SessionRevoked,
    #[error("this session has expired; sign in again")]
    SessionExpired,
    #[error(
        "this refresh token was already used; the session is signed out for safety, sign in again"
    )]
    RefreshTokenReused,
    #[error("no such session")]
    SessionNotFound,
    /// A path no route of the function serves: only the jwks function's own
    /// URL (a Lambda function URL) passes every path to it.
    #[error("nothing is served at this path")]
    NotFound,
    #[error("user not found")]
    UserNotFound,
    /// seed-004's `POST /api/login/` for a phone nobody registered (unless
    /// `PREVENT_USER_EXISTENCE_ERRORS`).
    #[error("no account uses this phone number; register first")]
    NoAccount,
    /// seed-004's `POST /api/register/` for a phone that has an account
    /// (unless `PREVENT_USER_EXISTENCE_ERRORS`).
    #[error("an account already uses this phone number; log in instead")]
    PhoneAlreadyRegistered,
    #[error("invite code not found")]
    InviteCodeNotFound,
    #[error("You cannot enter your own invite code")]
    OwnInviteCode,
    #[error("You have already been referral of user with invite code {0}")]
    AlreadyReferred(String),
    #[error(
        "this invite code belongs to someone you referred, directly or through others; referrals cannot form a circle"
    )]
    ReferralCycle,
    #[error(
        "the referral chain above this invite code is longer than {max} users; it cannot be joined"
    )]
    ReferralChainTooDeep { max: usize },
    /// `GET /users/referrals/`'s `limit`.
    #[error("limit must be one whole number from 1 to {MAX_PAGE_SIZE}, given once")]
    InvalidLimit,
    /// `GET /users/referrals/`'s `cursor` is not a `next_cursor` this
    /// service gave the caller (changed, made up, or another user's).
    #[error(
        "the cursor is not a next_cursor of your own pages; start again from the first page, without one"
    )]
    InvalidCursor,
    #[error("a required service is unavailable; try again shortly")]
    Unavailable,
}

impl From<InvalidLimit> for ApiError {
    fn from(_: InvalidLimit) -> Self {
        ApiError::InvalidLimit
    }
}

impl From<InvalidCursor> for ApiError {
    fn from(_: InvalidCursor) -> Self {
        ApiError::InvalidCursor
    }
}

impl From<SendRefusal> for ApiError {
    /// `Retry-After` is at least 1 s: 0 would invite an immediate retry that is refused again.
    fn from(refusal: SendRefusal) -> Self {
        match refusal {
            SendRefusal::TooSoon { retry_after } => ApiError::ResendTooSoon {
                retry_after: retry_after.max(1),
            },
            SendRefusal::WindowFull { retry_after } => ApiError::TooManyCodes {
                retry_after: retry_after.max(1),
            },
            SendRefusal::Locked { retry_after } => ApiError::PhoneLocked {
                retry_after: retry_after.max(1),
            },
        }
    }
}

impl From<InvalidRefreshToken> for ApiError {
    fn from(_: InvalidRefreshToken) -> Self {
        ApiError::RefreshTokenInvalid
    }
}

impl From<LimitRefusal> for ApiError {
    fn from(refusal: LimitRefusal) -> Self {
        let retry_after = refusal.retry_after.max(1);
        match refusal.budget {
            Budget::SourceIp => ApiError::TooManyFromIp { retry_after },
            Budget::ChecksFromIp => ApiError::TooManyChecksFromIp { retry_after },
            Budget::Region => ApiError::RegionBudgetExhausted { retry_after },
            Budget::Service => ApiError::SmsBudgetExhausted { retry_after },
        }
    }
}

/// Every error's body. `detail` repeats `message` for seed-004's clients,
/// written for Django REST framework, which reads `detail`.
#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody<'a> {
    /// Stable and machine-readable: what clients switch on.
    code: &'a str,
    /// For people; may change.
    message: &'a str,
    /// `message` again, for clients written for Django REST framework.
    detail: &'a str,
}

impl ApiError {
    /// HTTP status and the stable machine-readable code clients can switch on.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            InvalidJson(_) => (StatusCode::BAD_REQUEST, "invalid_json"),
            InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
            PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Phone(PhoneError::Invalid) => (StatusCode::BAD_REQUEST, "invalid_phone"),
            Phone(PhoneError::RegionNotAllowed) => {
                (StatusCode::BAD_REQUEST, "phone_region_not_allowed")
            }
            Phone(PhoneError::TypeNotAllowed) => {
                (StatusCode::BAD_REQUEST, "phone_type_not_allowed")
            }
            MalformedCode { .. } => (StatusCode::BAD_REQUEST, "invalid_code_format"),
            UnsupportedLang => (StatusCode::BAD_REQUEST, "unsupported_lang"),
            MalformedInviteCode => (StatusCode::BAD_REQUEST, "invalid_invite_code_format"),
            ResendTooSoon { .. } => (StatusCode::TOO_MANY_REQUESTS, "resend_too_soon"),
            TooManyCodes { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_codes"),
            PhoneLocked { .. } => (StatusCode::TOO_MANY_REQUESTS, "phone_locked"),
            TooManyFromIp { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_requests_from_ip"),
            TooManyChecksFromIp { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_checks_from_ip")
            }
            RegionBudgetExhausted { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "region_budget_exhausted")
            }
            SmsBudgetExhausted { .. } => (StatusCode::SERVICE_UNAVAILABLE, "sms_budget_exhausted"),
            CodeInvalid => (StatusCode::BAD_REQUEST, "code_invalid"),
            CodeExpired => (StatusCode::BAD_REQUEST, "code_expired"),
            TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, "too_many_attempts"),
            MissingToken => (StatusCode::UNAUTHORIZED, "missing_token"),
            Token(TokenError::Expired) => (StatusCode::UNAUTHORIZED, "token_expired"),
            Token(TokenError::WrongKind(_)) => (StatusCode::UNAUTHORIZED, "wrong_token_type"),
            Token(TokenError::Invalid) => (StatusCode::UNAUTHORIZED, "invalid_token"),
            RefreshTokenInvalid => (StatusCode::UNAUTHORIZED, "refresh_token_invalid"),
            SessionRevoked => (StatusCode::UNAUTHORIZED, "session_revoked"),
            SessionExpired => (StatusCode::UNAUTHORIZED, "session_expired"),
            RefreshTokenReused => (StatusCode::UNAUTHORIZED, "refresh_token_reused"),
            SessionNotFound => (StatusCode::NOT_FOUND, "session_not_found"),
            NotFound => (StatusCode::NOT_FOUND, "not_found"),
            UserNotFound => (StatusCode::NOT_FOUND, "user_not_found"),
            // The seed's refusal: 400 with the same code as a vanished user's.
            NoAccount => (StatusCode::BAD_REQUEST, "user_not_found"),
            PhoneAlreadyRegistered => (StatusCode::BAD_REQUEST, "phone_already_registered"),
            InviteCodeNotFound => (StatusCode::NOT_FOUND, "invite_code_not_found"),
            OwnInviteCode => (StatusCode::BAD_REQUEST, "own_invite_code"),
            AlreadyReferred(_) => (StatusCode::CONFLICT, "already_referred"),
            ReferralCycle => (StatusCode::CONFLICT, "referral_cycle"),
            ReferralChainTooDeep { .. } => (StatusCode::CONFLICT, "referral_chain_too_deep"),
            InvalidLimit => (StatusCode::BAD_REQUEST, "invalid_limit"),
            InvalidCursor => (StatusCode::BAD_REQUEST, "invalid_cursor"),
            Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let (status, code) = self.status_and_code();
        let message = self.to_string();
        let mut response = json_response(
            status,
            &ErrorBody {
                code,
                message: &message,
                detail: &message,
            },
        );
        let headers = response.headers_mut();
        match self {
            ApiError::ResendTooSoon { retry_after }
            | ApiError::TooManyCodes { retry_after }
            | ApiError::PhoneLocked { retry_after }
            | ApiError::TooManyFromIp { retry_after }
            | ApiError::TooManyChecksFromIp { retry_after }
            | ApiError::RegionBudgetExhausted { retry_after }
            | ApiError::SmsBudgetExhausted { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            ApiError::MethodNotAllowed { allow } => {
                headers.insert(
                    header::ALLOW,
                    HeaderValue::from_str(&allow).expect("method names are valid headers"),
                );
            }
            ApiError::MissingToken | ApiError::Token(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

/// A JSON response. Every answer of this API is specific to its caller, so none may be cached.
pub fn json_response(status: StatusCode, body: &impl Serialize) -> Response<Body> {
    let json = serde_json::to_string(body).expect("response types always serialize");
    let mut response = Response::new(Body::from(json));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(r: &Response<Body>) -> serde_json::Value {
        serde_json::from_slice(r.body().as_ref()).unwrap()
    }

    #[test]
    fn errors_are_json_with_code_and_message() {
        let r = ApiError::AlreadyReferred("Ab12Cd".into()).into_response();
        assert_eq!(r.status(), 409);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(
            body(&r),
            serde_json::json!({
                "code": "already_referred",
                "message": "You have already been referral of user with invite code Ab12Cd",
                "detail": "You have already been referral of user with invite code Ab12Cd",
            })
        );
    }

    #[test]
    fn throttling_and_auth_errors_carry_their_headers() {
        let r = ApiError::ResendTooSoon { retry_after: 42 }.into_response();
        assert_eq!(
            (r.status().as_u16(), &r.headers()[header::RETRY_AFTER]),
            (429, &HeaderValue::from(42))
        );
        let r = ApiError::Token(TokenError::Expired).into_response();
        assert_eq!(r.status(), 401);
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer");
        assert_eq!(body(&r)["code"], "token_expired");
        let r = ApiError::MethodNotAllowed {
            allow: "POST".into(),
        }
        .into_response();
        assert_eq!(
            (r.status().as_u16(), &r.headers()[header::ALLOW]),
            (405, &HeaderValue::from_static("POST"))
        );
    }

    #[test]
    fn a_refused_send_says_when_to_come_back_never_now() {
        let retry = |refusal: SendRefusal| {
            let r = ApiError::from(refusal).into_response();
            (
                body(&r)["code"].clone(),
                r.headers()[header::RETRY_AFTER].clone(),
            )
        };
        assert_eq!(
            retry(SendRefusal::TooSoon { retry_after: 0 }),
            ("resend_too_soon".into(), HeaderValue::from(1))
        );
        assert_eq!(
            retry(SendRefusal::WindowFull { retry_after: 1800 }),
            ("too_many_codes".into(), HeaderValue::from(1800))
        );
        assert_eq!(
            retry(SendRefusal::Locked { retry_after: 0 }),
            ("phone_locked".into(), HeaderValue::from(1))
        );
    }

    #[test]
    fn a_spent_budget_says_which_and_when_it_is_full_again() {
        let answer = |budget: Budget, retry_after: u64| {
            let r = ApiError::from(LimitRefusal {
                budget,
                retry_after,
            })
            .into_response();
            (
                r.status().as_u16(),
                body(&r)["code"].clone(),
                r.headers()[header::RETRY_AFTER].clone(),
            )
        };
        assert_eq!(
            answer(Budget::SourceIp, 600),
            (
                429,
                "too_many_requests_from_ip".into(),
                HeaderValue::from(600)
            )
        );
        assert_eq!(
            answer(Budget::ChecksFromIp, 60),
            (429, "too_many_checks_from_ip".into(), HeaderValue::from(60))
        );
        assert_eq!(
            answer(Budget::Region, 0),
            (429, "region_budget_exhausted".into(), HeaderValue::from(1))
        );
        assert_eq!(
            answer(Budget::Service, 3600),
            (503, "sms_budget_exhausted".into(), HeaderValue::from(3600))
        );
    }

    #[test]
    fn service_failures_leak_nothing() {
        let r = ApiError::Unavailable.into_response();
        assert_eq!(r.status(), 503);
        assert_eq!(
            body(&r)["message"],
            "a required service is unavailable; try again shortly"
        );
    }
}

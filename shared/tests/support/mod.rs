//! Shared by the integration tests: the local peers started by `make test`
//! (DynamoDB Local, moto), configuration with per-run keys, unique test data,
//! and request helpers.
#![allow(dead_code)]

pub mod memory;
pub mod scripted;

use std::collections::HashMap;
use std::sync::OnceLock;

use aws_config::SdkConfig;
use lambda_http::aws_lambda_events::apigw::ApiGatewayV2httpRequestContext;
use lambda_http::http::{Method, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use phone_auth::config::Config;
use phone_auth::endpoints::{
    DeleteAccount, Endpoint, GetCode, ListSessions, Logout, LogoutAll, Refresh, RevokeSession,
    SendCode, SetReferrer, serve,
};
use phone_auth::error::ApiError;
use phone_auth::invite::InviteCode;
use phone_auth::limits::Counter;
use phone_auth::otp::CodeHasher;
use phone_auth::sms::SmsSender;
use phone_auth::store::{CounterStore, OtpStore, SessionStore, StoreError, UserStore};
use phone_auth::token::{TokenKind, TokenSigner};
use rand::RngExt;
use serde_json::Value;

/// A variable exported by scripts/test.sh.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: integration tests need the local peers that `make test` starts")
    })
}

/// One key pair, OTP HMAC key, refresh-token key and cursor key for the whole test binary.
fn secrets() -> &'static (String, String, String, String, String) {
    static SECRETS: OnceLock<(String, String, String, String, String)> = OnceLock::new();
    SECRETS.get_or_init(|| {
        let (private, public) = phone_auth::token::generate_key_pair();
        (
            private,
            public,
            format!("test-hmac-key-{:032x}", rand::rng().random::<u128>()),
            format!("test-refresh-key-{:032x}", rand::rng().random::<u128>()),
            format!("test-cursor-key-{:032x}", rand::rng().random::<u128>()),
        )
    })
}

/// Configuration as the functions would read it, from the process environment
/// (tables, endpoints), per-run secrets, and `overrides`.
pub fn config(overrides: &[(&str, &str)]) -> Config {
    let (private, public, hmac, refresh, cursor) = secrets().clone();
    let mut vars: HashMap<String, String> = std::env::vars().collect();
    vars.insert("TOKEN_PRIVATE_KEY".into(), private);
    vars.insert("TOKEN_PUBLIC_KEY".into(), public);
    vars.insert("OTP_HMAC_KEY".into(), hmac);
    vars.insert("REFRESH_TOKEN_KEY".into(), refresh);
    vars.insert("CURSOR_KEY".into(), cursor);
    vars.insert("SMS_PROVIDER".into(), "log".into());
    for (key, value) in overrides {
        vars.insert(key.to_string(), value.to_string());
    }
    Config::from_lookup(move |name| vars.get(name).cloned())
}

pub async fn aws() -> SdkConfig {
    env("AWS_ENDPOINT_URL_DYNAMODB");
    phone_auth::endpoints::aws_config(&phone_auth::config::Config::from_env())
        .expect("AWS_REGION is set")
}

pub async fn endpoint<E: Endpoint>(overrides: &[(&str, &str)]) -> E {
    E::from_config(&config(overrides), &aws().await).expect("test configuration is complete")
}

/// The code hasher of this binary's endpoints.
pub fn hasher() -> CodeHasher {
    CodeHasher::new(&config(&[]).otp_hmac_key().unwrap())
}

// The endpoints over any ports (in-memory, scripted, or the real tables),
// with this binary's keys and the default policies.

pub fn get_code_over<O: OtpStore, S: SmsSender, C: CounterStore>(
    otps: O,
    sms: S,
    counters: C,
) -> GetCode<O, S, C> {
    get_code_with(&[], otps, sms, counters)
}

/// get_code over any ports, with configuration `overrides`.
pub fn get_code_with<O: OtpStore, S: SmsSender, C: CounterStore>(
    overrides: &[(&str, &str)],
    otps: O,
    sms: S,
    counters: C,
) -> GetCode<O, S, C> {
    let config = config(overrides);
    let otp_policy = config.otp_policy().unwrap();
    let phone_policy = config.phone_policy().unwrap();
    GetCode {
        otps,
        sms,
        counters,
        hasher: hasher(),
        texts: config.sms_texts().unwrap(),
        limits: config.send_limits(&phone_policy).unwrap(),
        test_numbers: config.test_numbers(&phone_policy, &otp_policy).unwrap(),
        otp_policy,
        phone_policy,
    }
}

/// The real counters (DynamoDB Local), under keys of this test's own, so a
/// test can spend a small daily budget without touching the run's others.
#[derive(Clone)]
pub struct Namespaced<C> {
    pub counters: C,
    pub prefix: String,
}

impl<C> Namespaced<C> {
    pub fn new(counters: C) -> Self {
        Namespaced {
            counters,
            prefix: format!("test-{:016x}/", rand::rng().random::<u64>()),
        }
    }

    pub fn key(&self, counter: &Counter) -> Counter {
        Counter {
            key: format!("{}{}", self.prefix, counter.key),
            ..counter.clone()
        }
    }
}

impl<C: CounterStore> CounterStore for Namespaced<C> {
    async fn take(&self, counter: &Counter) -> Result<bool, StoreError> {
        self.counters.take(&self.key(counter)).await
    }

    async fn give_back(&self, counter: &Counter) -> Result<(), StoreError> {
        self.counters.give_back(&self.key(counter)).await
    }
}

/// send_code over in-memory sessions (what most tests of codes and users need).
pub fn send_code_over<O: OtpStore, U: UserStore>(
    otps: O,
    users: U,
) -> SendCode<O, U, memory::MemorySessions, memory::MemoryCounters> {
    send_code_with_sessions(otps, users, memory::MemorySessions::default())
}

pub fn send_code_with_sessions<O: OtpStore, U: UserStore, S: SessionStore>(
    otps: O,
    users: U,
    sessions: S,
) -> SendCode<O, U, S, memory::MemoryCounters> {
    let config = config(&[]);
    SendCode {
        otps,
        users,
        sessions,
        counters: memory::MemoryCounters::default(),
        check_limit: config.check_limit().unwrap(),
        invite_codes: InviteCode::generate,
        hasher: hasher(),
        signer: config.token_signer().unwrap(),
        refresh_key: config.refresh_key().unwrap(),
        session_policy: config.session_policy().unwrap(),
        otp_policy: config.otp_policy().unwrap(),
        phone_policy: config.phone_policy().unwrap(),
    }
}

pub fn refresh_over<S: SessionStore>(sessions: S) -> Refresh<S> {
    let config = config(&[]);
    Refresh {
        sessions,
        refresh_key: config.refresh_key().unwrap(),
        signer: config.token_signer().unwrap(),
        policy: config.session_policy().unwrap(),
    }
}

pub fn logout_over<S: SessionStore>(sessions: S) -> Logout<S> {
    Logout {
        sessions,
        refresh_key: config(&[]).refresh_key().unwrap(),
    }
}

pub fn logout_all_over<S: SessionStore>(sessions: S) -> LogoutAll<S> {
    LogoutAll {
        sessions,
        verifier: config(&[]).token_verifier().unwrap(),
    }
}

pub fn list_sessions_over<S: SessionStore>(sessions: S) -> ListSessions<S> {
    ListSessions {
        sessions,
        verifier: config(&[]).token_verifier().unwrap(),
    }
}

pub fn delete_account_over<U: UserStore, S: SessionStore, O: OtpStore>(
    users: U,
    sessions: S,
    otps: O,
) -> DeleteAccount<U, S, O> {
    DeleteAccount {
        users,
        sessions,
        otps,
        verifier: config(&[]).token_verifier().unwrap(),
    }
}

pub fn revoke_session_over<S: SessionStore>(sessions: S) -> RevokeSession<S> {
    RevokeSession {
        sessions,
        verifier: config(&[]).token_verifier().unwrap(),
    }
}

/// This binary's refresh-token key.
pub fn refresh_key() -> phone_auth::session::RefreshKey {
    config(&[]).refresh_key().unwrap()
}

/// An access token of `user`'s session `sid`.
pub fn session_access_token(
    user: phone_auth::user::UserId,
    sid: &phone_auth::session::SessionId,
) -> String {
    signer().issue_access(&user, sid, now())
}

pub fn set_referrer_over<U: UserStore>(users: U) -> SetReferrer<U> {
    let config = config(&[]);
    SetReferrer {
        users,
        verifier: config.token_verifier().unwrap(),
        max_chain_depth: config.referral_max_depth().unwrap(),
    }
}

pub async fn dynamo() -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(&aws().await)
}

pub fn signer() -> TokenSigner {
    config(&[]).token_signer().unwrap()
}

pub fn now() -> u64 {
    phone_auth::http::now()
}

/// A user with `phone`, a fresh id and invite code, no referrer, created now
/// (not stored).
pub fn a_user(phone: phone_auth::phone::Phone) -> phone_auth::store::User {
    phone_auth::store::User {
        id: phone_auth::user::UserId::generate(),
        phone,
        invite_code: InviteCode::generate(),
        referrer: None,
        created_at: now(),
        referrals_count: 0,
    }
}

/// A random valid Russian mobile number, so tests sharing the run's tables never
/// collide. Drawn again when it falls in one of the few unassigned `+79…`
/// ranges (e.g. +7 930 000…), which fail validation.
pub fn unique_phone() -> String {
    loop {
        let candidate = format!("+79{:09}", rand::rng().random_range(0..1_000_000_000u32));
        let any_region = phone_auth::phone::PhonePolicy {
            default_region: phone_auth::phone::Region::RU,
            allowed_regions: vec![],
        };
        if phone_auth::phone::Phone::parse(&candidate, &any_region).is_ok() {
            return candidate;
        }
    }
}

/// An access token of the user `id` (no session).
pub fn access_token(id: phone_auth::user::UserId) -> String {
    signer().issue(&id, TokenKind::Access, now())
}

/// A request as API Gateway hands it over, from a source address of its own
/// (10.x.x.x, random), so the per-IP budget of one test never meets another's.
pub fn request(method: Method, body: &str, bearer: Option<&str>) -> Request {
    let ip = rand::rng().random::<u32>() & 0x00ff_ffff | 0x0a00_0000;
    from_ip(
        request_without_ip(method, body, bearer),
        &std::net::Ipv4Addr::from(ip).to_string(),
    )
}

/// The request with API Gateway's `requestContext.http.sourceIp`.
pub fn from_ip(request: Request, ip: &str) -> Request {
    let mut context = ApiGatewayV2httpRequestContext::default();
    context.http.source_ip = Some(ip.to_string());
    request.with_request_context(RequestContext::ApiGatewayV2(context))
}

/// A request that did not come through API Gateway (a direct invoke).
pub fn request_without_ip(method: Method, body: &str, bearer: Option<&str>) -> Request {
    let mut request = Request::new(Body::from(body));
    *request.method_mut() = method;
    if let Some(token) = bearer {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
    }
    request
}

pub fn post(body: Value) -> Request {
    request(Method::POST, &body.to_string(), None)
}

/// Serves `request` and returns status and JSON body (every response of this API is JSON).
pub async fn call<E: Endpoint>(endpoint: &E, request: Request) -> (u16, Value) {
    status_and_json(serve(endpoint, request).await)
}

/// Status and JSON body of what an endpoint's request method returned, its
/// error answered as `serve` answers it (for endpoints over test ports, which
/// are called directly: only the deployed port types are an `Endpoint`).
pub fn answer(result: Result<Response<Body>, ApiError>) -> (u16, Value) {
    status_and_json(result.unwrap_or_else(ApiError::into_response))
}

/// A 204 has no body and no Content-Type: `Value::Null`.
fn status_and_json(response: Response<Body>) -> (u16, Value) {
    if response.status() == 204 {
        assert!(response.body().is_empty(), "a 204 with a body");
        assert!(!response.headers().contains_key(header::CONTENT_TYPE));
        return (204, Value::Null);
    }
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    let body = serde_json::from_slice(response.body().as_ref()).expect("JSON body");
    (response.status().as_u16(), body)
}

/// Asserts an error response by its status and machine-readable `code`.
#[track_caller]
pub fn assert_error((status, body): (u16, Value), expected_status: u16, code: &str) {
    assert_eq!(
        (status, body["code"].as_str()),
        (expected_status, Some(code)),
        "{body}"
    );
}

/// A phone as the API would accept it (tests cannot make an unvalidated one).
pub fn parse_phone(e164: &str) -> phone_auth::phone::Phone {
    let any_region = phone_auth::phone::PhonePolicy {
        default_region: phone_auth::phone::Region::RU,
        allowed_regions: vec![],
    };
    phone_auth::phone::Phone::parse(e164, &any_region)
        .unwrap_or_else(|e| panic!("test phone {e164}: {e}"))
}

/// send_code with a correct code while the users table is missing (a storage
/// failure half-way through a sign-in).
pub async fn send_code_while_users_are_down(phone: &str, code: &str) -> (u16, Value) {
    let users_down = phone_auth::endpoints::SendCode {
        users: phone_auth::adapters::dynamo::UserTable::new(dynamo().await, "no-such-users".into()),
        ..endpoint::<phone_auth::endpoints::SendCode>(&[]).await
    };
    let body = serde_json::json!({ "phone": phone, "password": code });
    call(&users_down, post(body)).await
}

/// A phone's item in the codes table as stored, for the attributes no port
/// method shows (send count, attempts, TTL).
pub async fn raw_otp_item(
    phone: &phone_auth::phone::Phone,
) -> HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    raw_codes_item(phone.as_str())
        .await
        .expect("the phone has an item")
}

/// The codes table's item under `key`, a phone or a budget's counter, read
/// consistently; None if there is none.
pub async fn raw_codes_item(
    key: &str,
) -> Option<HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    dynamo()
        .await
        .get_item()
        .table_name(env("OTPS_TABLE"))
        .key(
            "phone",
            aws_sdk_dynamodb::types::AttributeValue::S(key.into()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// Reads with `read` until `done` holds (at most 5 s), and returns the last
/// read. For what a global secondary index shows after a write: on AWS it is
/// eventually consistent (usually well under a second), so a test must wait
/// for it rather than depend on it. DynamoDB Local updates its indexes before
/// it answers the write, so here the first read holds.
pub async fn eventually<T, Fut>(mut read: impl FnMut() -> Fut, done: impl Fn(&T) -> bool) -> T
where
    Fut: std::future::Future<Output = T>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let value = read().await;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A user's item as stored, read consistently (attributes no domain type
/// shows: `referrals_count` as the stream's consumer wrote it, tombstones).
pub async fn raw_user(
    id: phone_auth::user::UserId,
) -> std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> {
    dynamo()
        .await
        .get_item()
        .table_name(env("USERS_TABLE"))
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("USER#{id}")),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .unwrap()
}

/// Everything the functions log through tracing in this test binary, as the
/// production subscriber formats it (`observe::log_lines`, JSON), down to
/// DEBUG for our code.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> CapturedLogs {
        self.clone()
    }
}

/// The test binary's tracing output, captured from the first call on.
pub fn captured_logs() -> &'static CapturedLogs {
    static LOGS: OnceLock<CapturedLogs> = OnceLock::new();
    LOGS.get_or_init(|| {
        use tracing_subscriber::util::SubscriberInitExt;
        let captured = CapturedLogs::default();
        // Production logs at INFO; our own code is captured down to DEBUG.
        let directives = Some("info,phone_auth=debug".to_string());
        phone_auth::observe::log_lines(None, directives, true, captured.clone()).init();
        captured
    })
}

/// Whether `secret` stands in `text` on its own, as scripts/check_logs.py
/// reads the servers' logs: not inside a longer word, number, id, date or
/// decimal. A four-digit code can be part of a timestamp, a latency or a
/// request id by chance; that is no leak.
pub fn stands_in(text: &str, secret: &str) -> bool {
    let part_of_a_longer_one = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    text.match_indices(secret).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + secret.len()..].chars().next();
        !before.is_some_and(part_of_a_longer_one) && !after.is_some_and(part_of_a_longer_one)
    })
}

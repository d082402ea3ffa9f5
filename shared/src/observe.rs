//! What the service reports of each request, for the people operating it:
//! one log record per request (function, route, status, latency, error
//! code), the security event it was if any (the audit trail), and its
//! metrics in CloudWatch's Embedded Metric Format (EMF).
//!
//! Deployed (Lambda's JSON log format, `AWS_LAMBDA_LOG_FORMAT=JSON`) the
//! three are **one JSON line**: CloudWatch Logs turns its `_aws` member
//! into metrics, with no API call and no latency, and Logs Insights
//! queries its other members (docs/operations.md). Locally (`make dev`) it
//! is one human-readable tracing line instead.
//!
//! Endpoints only say what happened ([`note`], [`phone`], [`user`]); which
//! outcome is which security event and which metric is decided here, once.
//! No phone number, code or token is ever part of a record: a phone is
//! logged as `phone_ref`, a keyed hash stable for the deployment.

use std::cell::RefCell;
use std::future::Future;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::hmac;
use serde_json::{Map, Value, json};
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::{
    Layer, Registry, fmt::MakeWriter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::limits::utc_timestamp;
use crate::phone::Phone;
use crate::user::UserId;

/// Something an endpoint did that operators count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// A sign-in SMS went out (not for a test number).
    CodeSent,
    /// The SMS provider refused or failed a send.
    SmsFailed,
    SignedIn,
    /// The sign-in created the account.
    SignedUp,
    ReferralSet,
    /// A session ended: sign-out, sign-out everywhere, or revoked by id.
    SessionRevoked,
    AccountDeleted,
}

/// What one request noted. Lives for the request only.
#[derive(Debug, Default)]
struct Notes {
    phone: Option<Phone>,
    user: Option<UserId>,
    facts: Vec<Fact>,
}

tokio::task_local! {
    static NOTES: RefCell<Notes>;
}

fn with_notes(f: impl FnOnce(&mut Notes)) {
    // Outside a request (a unit test calling a domain function directly)
    // there is nobody to tell: nothing to do.
    let _ = NOTES.try_with(|notes| f(&mut notes.borrow_mut()));
}

/// Notes `fact` for the current request's record.
pub fn note(fact: Fact) {
    with_notes(|notes| notes.facts.push(fact));
}

/// The phone the current request is about (logged as its `phone_ref`, and
/// its region as the `Region` dimension of `CodesSent`).
pub fn phone(phone: &Phone) {
    with_notes(|notes| notes.phone = Some(phone.clone()));
}

/// The user the current request is about.
pub fn user(id: UserId) {
    with_notes(|notes| notes.user = Some(id));
}

/// Runs `request` with a fresh set of notes, and returns them with its output.
async fn noting<T>(request: impl Future<Output = T>) -> (T, Notes) {
    NOTES
        .scope(RefCell::new(Notes::default()), async {
            let output = request.await;
            let notes = NOTES.with(|notes| std::mem::take(&mut *notes.borrow_mut()));
            (output, notes)
        })
        .await
}

/// The key of `phone_ref`: derived from the OTP HMAC key (a secret every
/// function that reads phones has), under its own label, so a `phone_ref`
/// is no code hash and no storage key. Stable for the deployment: the same
/// phone has the same `phone_ref` in every function, every day.
#[derive(Clone)]
pub struct PhoneRefKey(hmac::Key);

impl PhoneRefKey {
    pub fn derive(otp_hmac_key: &[u8]) -> Self {
        let parent = hmac::Key::new(hmac::HMAC_SHA256, otp_hmac_key);
        let derived = hmac::sign(&parent, b"phone-auth phone_ref v1");
        PhoneRefKey(hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()))
    }

    /// 16 hex digits (64 bits): enough to tell a deployment's phones apart,
    /// of no use without the key.
    pub fn phone_ref(&self, phone: &Phone) -> String {
        let tag = hmac::sign(&self.0, phone.as_str().as_bytes());
        tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The stable error codes that are security events, and the event.
fn refusal_event(error_code: &str) -> Option<SecurityEvent> {
    Some(match error_code {
        "code_invalid" => SecurityEvent::WrongCode,
        "too_many_attempts" => SecurityEvent::AttemptsExhausted,
        "phone_locked" => SecurityEvent::Lockout,
        "too_many_codes"
        | "too_many_requests_from_ip"
        | "too_many_checks_from_ip"
        | "region_budget_exhausted"
        | "sms_budget_exhausted" => SecurityEvent::BudgetRefused,
        "refresh_token_reused" => SecurityEvent::RefreshReuse,
        _ => return None,
    })
}

/// The audit trail's events (docs/operations.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    SignIn,
    WrongCode,
    AttemptsExhausted,
    Lockout,
    BudgetRefused,
    RefreshReuse,
    SessionRevoked,
    AccountDeleted,
}

impl SecurityEvent {
    pub const ALL: [SecurityEvent; 8] = [
        SecurityEvent::SignIn,
        SecurityEvent::WrongCode,
        SecurityEvent::AttemptsExhausted,
        SecurityEvent::Lockout,
        SecurityEvent::BudgetRefused,
        SecurityEvent::RefreshReuse,
        SecurityEvent::SessionRevoked,
        SecurityEvent::AccountDeleted,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityEvent::SignIn => "sign_in",
            SecurityEvent::WrongCode => "wrong_code",
            SecurityEvent::AttemptsExhausted => "attempts_exhausted",
            SecurityEvent::Lockout => "lockout",
            SecurityEvent::BudgetRefused => "budget_refused",
            SecurityEvent::RefreshReuse => "refresh_reuse",
            SecurityEvent::SessionRevoked => "session_revoked",
            SecurityEvent::AccountDeleted => "account_deleted",
        }
    }
}

/// The metrics, each a count of 1 per occurrence (EMF unit `Count`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Metric {
    CodesSent,
    SmsFailures,
    SignIns,
    SignUps,
    WrongCodes,
    AttemptsExhausted,
    Lockouts,
    BudgetRefusals,
    /// The service's daily SMS budget refused a code (also a budget refusal).
    SmsBudgetExhausted,
    /// A country's daily SMS budget refused a code (also a budget refusal;
    /// also by `Region`, the country).
    RegionBudgetExhausted,
    RefreshReuse,
    ReferralsSet,
    SessionsRevoked,
    AccountsDeleted,
    /// The first request of a process (dimension `Function`).
    ColdStarts,
}

impl Metric {
    pub const ALL: [Metric; 15] = [
        Metric::CodesSent,
        Metric::SmsFailures,
        Metric::SignIns,
        Metric::SignUps,
        Metric::WrongCodes,
        Metric::AttemptsExhausted,
        Metric::Lockouts,
        Metric::BudgetRefusals,
        Metric::SmsBudgetExhausted,
        Metric::RegionBudgetExhausted,
        Metric::RefreshReuse,
        Metric::ReferralsSet,
        Metric::SessionsRevoked,
        Metric::AccountsDeleted,
        Metric::ColdStarts,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::CodesSent => "CodesSent",
            Metric::SmsFailures => "SmsFailures",
            Metric::SignIns => "SignIns",
            Metric::SignUps => "SignUps",
            Metric::WrongCodes => "WrongCodes",
            Metric::AttemptsExhausted => "AttemptsExhausted",
            Metric::Lockouts => "Lockouts",
            Metric::BudgetRefusals => "BudgetRefusals",
            Metric::SmsBudgetExhausted => "SmsBudgetExhausted",
            Metric::RegionBudgetExhausted => "RegionBudgetExhausted",
            Metric::RefreshReuse => "RefreshReuse",
            Metric::ReferralsSet => "ReferralsSet",
            Metric::SessionsRevoked => "SessionsRevoked",
            Metric::AccountsDeleted => "AccountsDeleted",
            Metric::ColdStarts => "ColdStarts",
        }
    }

    /// The dimension sets it is published under: every metric service-wide
    /// (no dimension, what the alarms watch); codes sent and a country's
    /// spent budget also by the phone's country, cold starts only by function.
    pub fn dimension_sets(self) -> &'static [&'static [&'static str]] {
        match self {
            Metric::CodesSent | Metric::RegionBudgetExhausted => &[&[], &["Region"]],
            Metric::ColdStarts => &[&["Function"]],
            _ => &[&[]],
        }
    }
}

/// One request, as reported.
#[derive(Debug, Clone)]
pub struct Record {
    pub function: &'static str,
    /// API Gateway's route key (`ANY /users/auth/get_code`), or the method
    /// and path where there is none (a function URL, a local server).
    pub route: String,
    pub request_id: String,
    pub status: u16,
    pub latency: Duration,
    pub error_code: Option<&'static str>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
    pub cold_start: bool,
    pub phone_ref: Option<String>,
    /// Where a code went: the phone's country (ISO 3166 code).
    pub region: Option<String>,
    pub user: Option<UserId>,
    pub facts: Vec<Fact>,
}

impl Record {
    /// The security event this request was, if any.
    pub fn security_event(&self) -> Option<SecurityEvent> {
        let noted = |fact| self.facts.contains(&fact);
        if let Some(event) = self.error_code.and_then(refusal_event) {
            Some(event)
        } else if noted(Fact::AccountDeleted) {
            Some(SecurityEvent::AccountDeleted)
        } else if noted(Fact::SessionRevoked) {
            Some(SecurityEvent::SessionRevoked)
        } else if noted(Fact::SignedIn) {
            Some(SecurityEvent::SignIn)
        } else {
            None
        }
    }

    /// The metrics this request counts (each once).
    pub fn metrics(&self) -> Vec<Metric> {
        let mut metrics: Vec<Metric> = self
            .facts
            .iter()
            .map(|fact| match fact {
                Fact::CodeSent => Metric::CodesSent,
                Fact::SmsFailed => Metric::SmsFailures,
                Fact::SignedIn => Metric::SignIns,
                Fact::SignedUp => Metric::SignUps,
                Fact::ReferralSet => Metric::ReferralsSet,
                Fact::SessionRevoked => Metric::SessionsRevoked,
                Fact::AccountDeleted => Metric::AccountsDeleted,
            })
            .collect();
        metrics.extend(self.error_code.and_then(refusal_event).and_then(|event| {
            Some(match event {
                SecurityEvent::WrongCode => Metric::WrongCodes,
                SecurityEvent::AttemptsExhausted => Metric::AttemptsExhausted,
                SecurityEvent::Lockout => Metric::Lockouts,
                SecurityEvent::BudgetRefused => Metric::BudgetRefusals,
                SecurityEvent::RefreshReuse => Metric::RefreshReuse,
                _ => return None,
            })
        }));
        match self.error_code {
            Some("sms_budget_exhausted") => metrics.push(Metric::SmsBudgetExhausted),
            Some("region_budget_exhausted") => metrics.push(Metric::RegionBudgetExhausted),
            _ => {}
        }
        if self.cold_start {
            metrics.push(Metric::ColdStarts);
        }
        metrics.sort();
        metrics.dedup();
        metrics
    }

    /// The record as one JSON object: the request's fields, its security
    /// event, and (when it counts anything) the EMF metadata `_aws` with
    /// the metric values as members, under `namespace`.
    pub fn to_json(&self, namespace: &str, timestamp_ms: u64) -> Value {
        let level = if self.status >= 500 { "ERROR" } else { "INFO" };
        let mut record = Map::new();
        // Lambda reads `level` only from a line with an RFC 3339 `timestamp`;
        // without one it files the line as INFO.
        record.insert("timestamp".into(), json!(utc_timestamp(timestamp_ms)));
        record.insert("level".into(), json!(level));
        record.insert("message".into(), json!("request"));
        record.insert("function".into(), json!(self.function));
        record.insert("route".into(), json!(self.route));
        record.insert("requestId".into(), json!(self.request_id));
        record.insert("status".into(), json!(self.status));
        let latency_ms = (self.latency.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
        record.insert("latency_ms".into(), json!(latency_ms));
        record.insert("cold_start".into(), json!(self.cold_start));
        let metrics = self.metrics();
        // The phone's country where known; where a metric has it as a
        // dimension (codes sent, a country's spent budget), its member must
        // be there for the metric to count.
        let region = self.region.clone().or_else(|| {
            metrics
                .iter()
                .any(|m| m.dimension_sets().iter().any(|set| set.contains(&"Region")))
                .then(|| "unknown".to_string())
        });
        let optional = [
            ("error_code", self.error_code.map(str::to_string)),
            ("event", self.security_event().map(|e| e.name().to_string())),
            ("phone_ref", self.phone_ref.clone()),
            ("user_id", self.user.map(|u| u.get().to_string())),
            ("Region", region),
            ("source_ip", self.source_ip.clone()),
            ("user_agent", self.user_agent.clone()),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                record.insert(key.into(), json!(value));
            }
        }
        if !metrics.is_empty() {
            record.insert(
                "_aws".into(),
                emf_metadata(namespace, timestamp_ms, &metrics),
            );
            record.insert("Function".into(), json!(self.function));
            for metric in metrics {
                record.insert(metric.name().into(), json!(1));
            }
        }
        Value::Object(record)
    }
}

/// EMF's `_aws` member: one directive per distinct dimension set.
fn emf_metadata(namespace: &str, timestamp_ms: u64, metrics: &[Metric]) -> Value {
    let mut directives: Vec<(&[&str], Vec<Value>)> = Vec::new();
    for metric in metrics {
        for set in metric.dimension_sets() {
            let entry = json!({ "Name": metric.name(), "Unit": "Count" });
            match directives.iter_mut().find(|(s, _)| s == set) {
                Some((_, list)) => list.push(entry),
                None => directives.push((set, vec![entry])),
            }
        }
    }
    json!({
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": directives
            .into_iter()
            .map(|(set, metrics)| json!({
                "Namespace": namespace,
                "Dimensions": [set],
                "Metrics": metrics,
            }))
            .collect::<Vec<_>>(),
    })
}

/// Where records go.
#[derive(Clone)]
pub enum Output {
    /// Deployed: one JSON line each on standard output (Lambda's JSON log format).
    JsonLines,
    /// `make dev`: a human-readable tracing line.
    Text,
    /// Tests: the JSON lines, kept.
    Captured(Arc<std::sync::Mutex<Vec<Value>>>),
}

/// Reports the requests of one function: built once per cold start.
pub struct Reporter {
    pub function: &'static str,
    pub namespace: String,
    pub phone_refs: Option<PhoneRefKey>,
    pub output: Output,
    served_one: AtomicBool,
}

/// What is known of a request before it is handled.
pub struct Arrival {
    pub route: String,
    pub request_id: String,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

impl Reporter {
    pub fn new(
        function: &'static str,
        namespace: String,
        phone_refs: Option<PhoneRefKey>,
        output: Output,
    ) -> Self {
        Reporter {
            function,
            namespace,
            phone_refs,
            output,
            served_one: AtomicBool::new(false),
        }
    }

    /// Runs `request`, then reports it. `request` gives its status and error code.
    pub async fn observe<T>(
        &self,
        arrival: Arrival,
        request: impl Future<Output = (T, u16, Option<&'static str>)>,
    ) -> T {
        let started = std::time::Instant::now();
        let ((output, status, error_code), notes) = noting(request).await;
        let cold_start = !self.served_one.swap(true, Ordering::Relaxed);
        let record = Record {
            function: self.function,
            route: arrival.route,
            request_id: arrival.request_id,
            status,
            latency: started.elapsed(),
            error_code,
            source_ip: arrival.source_ip,
            user_agent: arrival.user_agent,
            cold_start,
            phone_ref: match (&self.phone_refs, &notes.phone) {
                (Some(key), Some(phone)) => Some(key.phone_ref(phone)),
                _ => None,
            },
            // Where a code went or was refused (SMS pumping by country);
            // the lookup re-reads phone metadata, so only for those.
            region: (notes.facts.contains(&Fact::CodeSent)
                || error_code.and_then(refusal_event) == Some(SecurityEvent::BudgetRefused))
            .then_some(notes.phone.as_ref())
            .flatten()
            .and_then(Phone::region)
            .map(|r| r.as_str().to_string()),
            user: notes.user,
            facts: notes.facts,
        };
        self.write(&record);
        output
    }

    fn write(&self, record: &Record) {
        let timestamp_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        match &self.output {
            Output::JsonLines => {
                let line = record.to_json(&self.namespace, timestamp_ms).to_string();
                // One write per line, so concurrent lines never interleave.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            Output::Captured(lines) => lines
                .lock()
                .expect("not poisoned")
                .push(record.to_json(&self.namespace, timestamp_ms)),
            Output::Text => tracing::info!(
                function = record.function,
                route = %record.route,
                status = record.status,
                latency_ms = record.latency.as_secs_f64() * 1000.0,
                error_code = record.error_code,
                event = record.security_event().map(SecurityEvent::name),
                phone_ref = record.phone_ref.as_deref(),
                metrics = ?record.metrics().iter().map(|m| m.name()).collect::<Vec<_>>(),
                "request"
            ),
        }
    }
}

// ---------------------------------------------------------------- log lines

/// The finest level a log line is ever written at, whatever is asked: at
/// TRACE the Lambda runtime logs each event whole and the AWS SDK each
/// request and its signing, which would put phones, codes and tokens in
/// the logs.
const FINEST_LEVEL: LevelFilter = LevelFilter::DEBUG;

/// The level when neither variable says otherwise, or what it says is not
/// a level.
const DEFAULT_LEVEL: LevelFilter = LevelFilter::INFO;

/// Sets up the functions' own log lines (`tracing`'s; each request's record
/// is [`Reporter`]'s). The level is `AWS_LAMBDA_LOG_LEVEL` (the template's
/// `ApplicationLogLevel`) when Lambda sets it, else `RUST_LOG`'s directives
/// (`make dev`), else [`DEFAULT_LEVEL`], never finer than [`FINEST_LEVEL`].
/// Deployed (`AWS_LAMBDA_LOG_FORMAT=JSON`) each line is JSON with an RFC
/// 3339 `timestamp`, without which Lambda ignores the line's `level` and
/// files it as INFO; locally, plain text.
pub fn init_logging() {
    let env = |name| std::env::var(name).ok();
    let json = env("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    log_lines(
        env("AWS_LAMBDA_LOG_LEVEL"),
        env("RUST_LOG"),
        json,
        std::io::stdout,
    )
    .init();
}

/// The subscriber [`init_logging`] installs, writing to `writer`: also
/// what tests capture the functions' log lines with. `lambda_level` is
/// `AWS_LAMBDA_LOG_LEVEL`'s value, `rust_log` `RUST_LOG`'s, `json` whether
/// the lines are JSON (deployed) or text (`make dev`).
pub fn log_lines<W>(
    lambda_level: Option<String>,
    rust_log: Option<String>,
    json: bool,
    writer: W,
) -> impl tracing::Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = match lambda_level {
        Some(level) => Targets::new().with_default(lambda_log_level(&level)),
        None => rust_log_targets(rust_log.as_deref().unwrap_or_default()),
    };
    let lines = tracing_subscriber::fmt::layer()
        .with_target(false)
        .with_writer(writer);
    let lines: Box<dyn Layer<Registry> + Send + Sync> = if json {
        Box::new(lines.json())
    } else {
        Box::new(lines.without_time())
    };
    tracing_subscriber::registry()
        .with(lines)
        .with(filter)
        .with(FINEST_LEVEL)
}

/// `AWS_LAMBDA_LOG_LEVEL`: one of Lambda's levels, which are tracing's and
/// FATAL (ERROR here); [`DEFAULT_LEVEL`] for anything else.
fn lambda_log_level(level: &str) -> LevelFilter {
    if level.eq_ignore_ascii_case("fatal") {
        return LevelFilter::ERROR;
    }
    level.parse().unwrap_or(DEFAULT_LEVEL)
}

/// `RUST_LOG`: a level and `target=level` directives, comma-separated
/// (`debug`, `info,phone_auth=debug`). Targets not named log at the bare
/// level if one is given, else at [`DEFAULT_LEVEL`]; a value that does not
/// parse logs everything at that level, and says so.
fn rust_log_targets(rust_log: &str) -> Targets {
    let everything_at_default = Targets::new().with_default(DEFAULT_LEVEL);
    let rust_log = rust_log.trim();
    if rust_log.is_empty() {
        return everything_at_default;
    }
    match rust_log.parse::<Targets>() {
        Ok(targets) if targets.default_level().is_some() => targets,
        Ok(targets) => targets.with_default(DEFAULT_LEVEL),
        Err(err) => {
            // Before any subscriber exists: standard error is all there is.
            eprintln!(
                "RUST_LOG={rust_log:?} is not `level,target=level,...` ({err}): logging at {DEFAULT_LEVEL}"
            );
            everything_at_default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The recipe in docs/operations.md, run with this key and phone, prints
    /// this `phone_ref`.
    #[test]
    fn phone_ref_is_the_documented_recipe() {
        let key = PhoneRefKey::derive(b"an OTP HMAC key of 32 characters");
        let phone = Phone::from_trusted("+79001234567".into());
        assert_eq!(key.phone_ref(&phone), "d037e623f35caf79");
    }

    #[test]
    fn a_records_timestamp_is_its_utc_time_in_rfc_3339() {
        assert_eq!(utc_timestamp(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(1_795_516_363_042), "2026-11-24T10:32:43.042Z");
    }
}

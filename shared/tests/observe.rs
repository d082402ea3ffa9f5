//! What operators see (issue 16), from the functions as deployed: each
//! endpoint behind `Function` (the cold start's wrapper) with the JSON
//! output Lambda's JSON log format selects, over DynamoDB Local and moto's
//! SNS (the deployed sender: no dev-mode sender that prints codes).
//!
//! One scenario walks every security event; then every record is checked
//! against the Embedded Metric Format specification, and every record and
//! every tracing line for the phones, codes and tokens the scenario used.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use phone_auth::config::Config;
use phone_auth::cors::Cors;
use phone_auth::endpoints::{
    DeleteAccount, Endpoint, Function, GetCode, Logout, Refresh, SendCode, SetReferrer, aws_config,
};
use phone_auth::observe::{Metric, Output, PhoneRefKey, Reporter, SecurityEvent};
use rand::RngExt;
use serde_json::{Value, json};
use support::{from_ip, request, unique_phone};

const NAMESPACE: &str = "PhoneAuthTest";

struct Stack {
    records: Arc<Mutex<Vec<Value>>>,
    get_code: Function<GetCode>,
    /// get-code with a budget of one code per source address.
    get_code_one_per_ip: Function<GetCode>,
    /// get-code whose SNS does not answer.
    get_code_sms_down: Function<GetCode>,
    /// get-code with the service's daily SMS budget spent (0).
    get_code_budget_spent: Function<GetCode>,
    /// get-code with Russia's daily SMS budget spent (0).
    get_code_region_spent: Function<GetCode>,
    send_code: Function<SendCode>,
    refresh: Function<Refresh>,
    logout: Function<Logout>,
    set_referrer: Function<SetReferrer>,
    delete_account: Function<DeleteAccount>,
    phone_refs: PhoneRefKey,
}

impl Stack {
    async fn new() -> Stack {
        let hmac = format!("observe-test-{:032x}", rand::rng().random::<u128>());
        let (private, public) = phone_auth::token::generate_key_pair();
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        for (key, value) in [
            ("TOKEN_PRIVATE_KEY", private),
            ("TOKEN_PUBLIC_KEY", public),
            ("OTP_HMAC_KEY", hmac.clone()),
            (
                "REFRESH_TOKEN_KEY",
                format!("observe-refresh-{:032x}", rand::rng().random::<u128>()),
            ),
            ("SMS_PROVIDER", "sns".into()),
            ("PHONE_DEFAULT_REGION", "RU".into()),
            // Small limits, so each refusal is one or two requests away.
            ("OTP_MAX_ATTEMPTS", "2".into()),
            ("OTP_MAX_FAILED_CHECKS", "3".into()),
            ("OTP_RESEND_COOLDOWN_SECONDS", "0".into()),
            ("OTP_MAX_SENDS_PER_WINDOW", "20".into()),
            ("OTP_MAX_SENDS_PER_IP", "1000".into()),
            ("REFRESH_REUSE_GRACE_SECONDS", "0".into()),
        ] {
            vars.insert(key.into(), value);
        }
        let config_with = |overrides: &[(&str, &str)]| {
            let mut vars = vars.clone();
            for (key, value) in overrides {
                vars.insert(key.to_string(), value.to_string());
            }
            Config::from_lookup(move |name| vars.get(name).cloned())
        };
        let config = config_with(&[]);
        // DynamoDB from its own variable; SNS on moto.
        let aws = aws_config(&Config::from_env())
            .expect("AWS_REGION is set")
            .into_builder()
            .endpoint_url(support::env("MOTO_ENDPOINT"))
            .build();
        let records = Arc::new(Mutex::new(Vec::new()));
        let phone_refs = PhoneRefKey::derive(hmac.as_bytes());
        fn function<E: Endpoint>(
            config: &Config,
            aws: &aws_config::SdkConfig,
            records: &Arc<Mutex<Vec<Value>>>,
            phone_refs: &PhoneRefKey,
        ) -> Function<E> {
            Function::new(
                E::from_config(config, aws).expect("test configuration is complete"),
                Cors::default(),
                Reporter::new(
                    E::NAME,
                    NAMESPACE.into(),
                    Some(phone_refs.clone()),
                    Output::Captured(records.clone()),
                ),
            )
        }
        Stack {
            get_code: function(&config, &aws, &records, &phone_refs),
            get_code_sms_down: function(
                &config,
                &aws.clone()
                    .into_builder()
                    .endpoint_url("http://127.0.0.1:9")
                    .build(),
                &records,
                &phone_refs,
            ),
            get_code_one_per_ip: function(
                &config_with(&[("OTP_MAX_SENDS_PER_IP", "1")]),
                &aws,
                &records,
                &phone_refs,
            ),
            get_code_budget_spent: function(
                &config_with(&[("SMS_DAILY_BUDGET", "0")]),
                &aws,
                &records,
                &phone_refs,
            ),
            get_code_region_spent: function(
                &config_with(&[("SMS_DAILY_BUDGET_BY_REGION", "RU=0")]),
                &aws,
                &records,
                &phone_refs,
            ),
            send_code: function(&config, &aws, &records, &phone_refs),
            refresh: function(&config, &aws, &records, &phone_refs),
            logout: function(&config, &aws, &records, &phone_refs),
            set_referrer: function(&config, &aws, &records, &phone_refs),
            delete_account: function(&config, &aws, &records, &phone_refs),
            records,
            phone_refs,
        }
    }

    fn last_record(&self) -> Value {
        self.records
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a record")
    }
}

async fn call<E: Endpoint>(function: &Function<E>, request: Request) -> (u16, Value) {
    answered(function.serve(request).await)
}

fn answered(response: Response<Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
    (status, body)
}

fn post(body: Value) -> Request {
    request(Method::POST, &body.to_string(), None)
}

/// The SMS moto accepted for `phone`; the last one's code.
async fn last_code(phone: &str) -> String {
    let url = format!("{}/moto-api/data.json", support::env("MOTO_ENDPOINT"));
    let state: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let message = state["sns"]["SMS"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|sms| sms["phone_number"] == phone)
        .and_then(|sms| sms["message"].as_str())
        .expect("an SMS to the phone")
        .to_string();
    message
        .split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 4)
        .expect("a 4-digit code in the SMS")
        .to_string()
}

/// A wrong code for `code`.
fn wrong(code: &str) -> String {
    format!("{:04}", (code.parse::<u32>().unwrap() + 1) % 10_000)
}

/// What the scenario leaves: the security events seen and the secrets used.
#[derive(Default)]
struct Seen {
    events: BTreeSet<String>,
    secrets: Vec<String>,
}

impl Seen {
    /// The record of the request just made: its event, and its status.
    fn check(&mut self, stack: &Stack, status: u16, event: Option<SecurityEvent>) -> Value {
        let record = stack.last_record();
        assert_eq!(record["status"], status, "{record}");
        assert_eq!(
            record["event"].as_str(),
            event.map(SecurityEvent::name),
            "{record}"
        );
        if let Some(event) = event {
            self.events.insert(event.name().to_string());
            // Every audit event says where the request came from.
            assert!(record["source_ip"].is_string(), "{record}");
        }
        record
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_security_event_is_recorded_with_its_metrics_and_no_secret() {
    let tracing = support::captured_logs();
    let stack = Stack::new().await;
    let mut seen = Seen::default();

    // Sign-up: a code sent (by region), a wrong code, then the right one.
    let phone = unique_phone();
    seen.secrets.push(phone.clone());
    let (status, _) = call(&stack.get_code, post(json!({ "phone": phone }))).await;
    let record = seen.check(&stack, status, None);
    assert_eq!(status, 200);
    assert_eq!(record["CodesSent"], 1);
    assert_eq!(record["Region"], "RU");
    assert_eq!(record["cold_start"], true);
    assert_eq!(record["ColdStarts"], 1);
    let phone_ref = stack.phone_refs.phone_ref(&support::parse_phone(&phone));
    assert_eq!(record["phone_ref"], phone_ref);
    let code = last_code(&phone).await;
    seen.secrets.push(code.clone());

    let body = json!({ "phone": phone, "password": wrong(&code) });
    let (status, _) = call(&stack.send_code, post(body)).await;
    let record = seen.check(&stack, 400, Some(SecurityEvent::WrongCode));
    assert_eq!((status, &record["WrongCodes"]), (400, &json!(1)));
    assert_eq!(record["phone_ref"], phone_ref);

    let body = json!({ "phone": phone, "password": code });
    let (status, tokens) = call(&stack.send_code, post(body)).await;
    let record = seen.check(&stack, 200, Some(SecurityEvent::SignIn));
    assert_eq!(status, 200);
    assert_eq!(
        (&record["SignIns"], &record["SignUps"]),
        (&json!(1), &json!(1))
    );
    let user_id = record["user_id"].clone();
    assert!(user_id.is_string(), "{record}");
    let (access, refresh) = (
        tokens["access"].as_str().unwrap().to_string(),
        tokens["refresh"].as_str().unwrap().to_string(),
    );
    seen.secrets.extend([access.clone(), refresh.clone()]);

    // Refresh-token reuse: rotated twice, the first token comes back (two
    // generations behind: no grace period covers it).
    let mut latest = refresh.clone();
    for _ in 0..2 {
        let (status, rotated) = call(&stack.refresh, post(json!({ "refresh": latest }))).await;
        seen.check(&stack, 200, None);
        assert_eq!(status, 200);
        seen.secrets
            .extend(["access", "refresh"].map(|k| rotated[k].as_str().unwrap().to_string()));
        latest = rotated["refresh"].as_str().unwrap().to_string();
    }
    call(&stack.refresh, post(json!({ "refresh": refresh }))).await;
    let record = seen.check(&stack, 401, Some(SecurityEvent::RefreshReuse));
    assert_eq!(record["RefreshReuse"], 1);
    // Whose session it was: the user to look after.
    assert_eq!(record["user_id"], user_id, "{record}");

    // A second user, signed in, refers to nobody yet: a referral, a sign-out, a deletion.
    let other = unique_phone();
    seen.secrets.push(other.clone());
    call(&stack.get_code, post(json!({ "phone": other }))).await;
    let other_code = last_code(&other).await;
    seen.secrets.push(other_code.clone());
    let (_, other_tokens) = call(
        &stack.send_code,
        post(json!({ "phone": other, "password": other_code })),
    )
    .await;
    let other_access = other_tokens["access"].as_str().unwrap().to_string();
    let other_refresh = other_tokens["refresh"].as_str().unwrap().to_string();
    seen.secrets
        .extend([other_access.clone(), other_refresh.clone()]);
    let me: u64 = stack.records.lock().unwrap()[2]["user_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let me = support::raw_user(phone_auth::user::UserId::new(me).unwrap()).await;
    let invite_code = me["invite_code"].as_s().unwrap().to_string();
    let (status, _) = call(
        &stack.set_referrer,
        request(
            Method::POST,
            &json!({ "invite_code": invite_code }).to_string(),
            Some(&other_access),
        ),
    )
    .await;
    let record = seen.check(&stack, 200, None);
    assert_eq!((status, &record["ReferralsSet"]), (200, &json!(1)));
    assert_eq!(record["cold_start"], true);
    let other = record["user_id"].clone();

    // Signing out names the session's user, although the refresh token
    // does not: storage's answer does.
    call(&stack.logout, post(json!({ "refresh": other_refresh }))).await;
    let record = seen.check(&stack, 204, Some(SecurityEvent::SessionRevoked));
    assert_eq!(record["SessionsRevoked"], 1);
    assert_eq!(
        (record["user_id"].is_string(), &record["user_id"]),
        (true, &other)
    );
    // Signing out an ended session again ends nothing: no event.
    call(&stack.logout, post(json!({ "refresh": other_refresh }))).await;
    seen.check(&stack, 204, None);

    call(
        &stack.delete_account,
        request(Method::DELETE, "", Some(&other_access)),
    )
    .await;
    let record = seen.check(&stack, 204, Some(SecurityEvent::AccountDeleted));
    assert_eq!(record["AccountsDeleted"], 1);

    // Wrong codes until the code is used up, then the phone locks.
    let target = unique_phone();
    seen.secrets.push(target.clone());
    let mut locked = false;
    for _ in 0..6 {
        let (status, _) = call(&stack.get_code, post(json!({ "phone": target }))).await;
        if status == 429 {
            seen.check(&stack, 429, Some(SecurityEvent::Lockout));
            locked = true;
            break;
        }
        let code = last_code(&target).await;
        seen.secrets.push(code.clone());
        loop {
            let body = json!({ "phone": target, "password": wrong(&code) });
            let (status, answer) = call(&stack.send_code, post(body)).await;
            let event = match answer["code"].as_str() {
                Some("code_invalid") => SecurityEvent::WrongCode,
                Some("too_many_attempts") => SecurityEvent::AttemptsExhausted,
                Some("phone_locked") => SecurityEvent::Lockout,
                other => panic!("unexpected answer {status} {other:?}"),
            };
            seen.check(&stack, status, Some(event));
            if event == SecurityEvent::Lockout {
                locked = true;
            }
            if event != SecurityEvent::WrongCode {
                break;
            }
        }
        if locked {
            break;
        }
    }
    assert!(locked, "the phone never locked");

    // A budget refusal: a second code from one source address, over its budget of one.
    let ip = format!("10.251.{}.{}", rand::random::<u8>(), rand::random::<u8>());
    for expected in [200, 429] {
        let phone = unique_phone();
        seen.secrets.push(phone.clone());
        let request = from_ip(post(json!({ "phone": phone })), &ip);
        let (status, _) = call(&stack.get_code_one_per_ip, request).await;
        assert_eq!(status, expected);
    }
    let record = seen.check(&stack, 429, Some(SecurityEvent::BudgetRefused));
    assert_eq!(
        (&record["BudgetRefusals"], &record["error_code"]),
        (&json!(1), &json!("too_many_requests_from_ip"))
    );

    // The service's daily budget spent: a budget refusal of its own metric
    // (SmsBudgetExhaustedAlarm reads it), with the phone's country.
    let phone = unique_phone();
    seen.secrets.push(phone.clone());
    let (status, _) = call(
        &stack.get_code_budget_spent,
        post(json!({ "phone": phone })),
    )
    .await;
    let record = seen.check(&stack, 503, Some(SecurityEvent::BudgetRefused));
    assert_eq!(
        (status, &record["error_code"], &record["Region"]),
        (503, &json!("sms_budget_exhausted"), &json!("RU"))
    );
    assert_eq!(
        (&record["SmsBudgetExhausted"], &record["BudgetRefusals"]),
        (&json!(1), &json!(1))
    );

    // A country's daily budget spent: a budget refusal of its own metric
    // (RegionBudgetExhaustedAlarm reads it), also by the phone's country.
    let phone = unique_phone();
    seen.secrets.push(phone.clone());
    let (status, _) = call(
        &stack.get_code_region_spent,
        post(json!({ "phone": phone })),
    )
    .await;
    let record = seen.check(&stack, 429, Some(SecurityEvent::BudgetRefused));
    assert_eq!(
        (status, &record["error_code"], &record["Region"]),
        (429, &json!("region_budget_exhausted"), &json!("RU"))
    );
    assert_eq!(
        (&record["RegionBudgetExhausted"], &record["BudgetRefusals"]),
        (&json!(1), &json!(1))
    );
    let by_region = record["_aws"]["CloudWatchMetrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|d| {
            d["Dimensions"] == json!([["Region"]])
                && d["Metrics"][0]["Name"] == "RegionBudgetExhausted"
        });
    assert!(by_region, "{record}");

    // The SMS provider fails: 503, and the failure counted.
    let phone = unique_phone();
    seen.secrets.push(phone.clone());
    let (status, _) = call(&stack.get_code_sms_down, post(json!({ "phone": phone }))).await;
    let record = seen.check(&stack, 503, None);
    assert_eq!((status, &record["SmsFailures"]), (503, &json!(1)));
    assert_eq!(record["level"], "ERROR");

    // Every record: a timestamp Lambda reads the level beside (RFC 3339,
    // UTC, milliseconds), EMF as specified, and nothing secret.
    let records = stack.records.lock().unwrap().clone();
    for record in &records {
        let timestamp = record["timestamp"].as_str().expect("a timestamp");
        assert!(
            timestamp.len() == 24
                && phone_auth::limits::parse_date(&timestamp[..10]).is_some()
                && timestamp[10..].starts_with('T')
                && timestamp.ends_with('Z'),
            "{record}"
        );
        check_emf(record);
    }
    let text = records
        .iter()
        .map(Value::to_string)
        .chain(std::iter::once(tracing.text()))
        .collect::<Vec<_>>()
        .join("\n");
    for secret in &seen.secrets {
        assert!(
            !support::stands_in(&text, secret),
            "{secret} is in the logs"
        );
        if let Some(digits) = secret.strip_prefix('+') {
            assert!(
                !support::stands_in(&text, digits),
                "{secret}'s digits are in the logs"
            );
        }
    }
    let every: BTreeSet<String> = SecurityEvent::ALL
        .iter()
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(seen.events, every);
    // And every metric.
    let counted: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| Metric::ALL.into_iter().filter(|m| r[m.name()].is_number()))
        .map(Metric::name)
        .collect();
    let expected: BTreeSet<&str> = Metric::ALL.into_iter().map(Metric::name).collect();
    assert_eq!(counted, expected);
}

/// A record against the Embedded Metric Format specification
/// (docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html).
fn check_emf(record: &Value) {
    let Some(aws) = record.get("_aws") else {
        return;
    };
    let timestamp = aws["Timestamp"]
        .as_u64()
        .expect("Timestamp: ms since the epoch");
    assert!(timestamp > 1_600_000_000_000, "{record}");
    let directives = aws["CloudWatchMetrics"]
        .as_array()
        .expect("CloudWatchMetrics");
    assert!(!directives.is_empty());
    for directive in directives {
        let namespace = directive["Namespace"].as_str().expect("Namespace");
        assert!(!namespace.is_empty() && namespace.len() <= 255);
        let sets = directive["Dimensions"].as_array().expect("Dimensions");
        for set in sets {
            let keys = set.as_array().expect("a dimension set is an array");
            assert!(keys.len() <= 30);
            for key in keys {
                let key = key.as_str().expect("a dimension key is a string");
                assert!(
                    record[key].is_string(),
                    "dimension {key} must be a string member: {record}"
                );
            }
        }
        let metrics = directive["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for metric in metrics {
            let name = metric["Name"].as_str().expect("Name");
            assert!(!name.is_empty() && name.len() <= 1024);
            assert_eq!(metric["Unit"], "Count");
            assert!(
                record[name].is_number(),
                "metric {name} must be a number member: {record}"
            );
        }
    }
}

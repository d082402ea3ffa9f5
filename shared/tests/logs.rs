//! No phone number or code reaches the logs, on any error path: every path
//! that logs is driven with a recognisable phone, against real peers that
//! answer the way real providers do when they quote the number back (an SNS
//! `InvalidParameter`, an SMS Aero refusal), and the captured log output is
//! searched for it. (The dev-mode log-only sender, which prints the SMS on
//! purpose, is not used here.)

mod support;

use lambda_http::http::Method;
use phone_auth::adapters::dynamo::OtpTable;
use phone_auth::adapters::sms::{AnySms, SmsAero, SnsSms};
use phone_auth::endpoints::{GetCode, Retrieve, SendCode, SetReferrer};
use phone_auth::otp::{CodeHasher, PendingCode};
use phone_auth::store::OtpStore;
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// An SNS error as AWS's query protocol sends it, quoting the number.
fn sns_refusing(phone: &str) -> ResponseTemplate {
    ResponseTemplate::new(400).set_body_string(format!(
        "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error>\
         <Type>Sender</Type><Code>InvalidParameter</Code><Message>Invalid parameter: \
         PhoneNumber Reason: {phone} is not valid to publish to</Message></Error>\
         <RequestId>5b7b1a52-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    ))
}

fn get_code_over_table(sms: AnySms, otps_table: &str, dynamo: aws_sdk_dynamodb::Client) -> GetCode {
    get_code_with(
        &[],
        OtpTable::new(dynamo.clone(), otps_table.into()),
        sms,
        OtpTable::new(dynamo, otps_table.into()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_paths_never_log_the_phone_or_the_code() {
    let logs = captured_logs();
    let phone = unique_phone();
    let digits = phone.trim_start_matches('+').to_string();
    let aws = aws().await;
    let dynamo = dynamo().await;

    // 1. SNS refuses, quoting the number.
    let sns = MockServer::start().await;
    Mock::given(any())
        .respond_with(sns_refusing(&phone))
        .mount(&sns)
        .await;
    let sns_client = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&aws)
            .endpoint_url(sns.uri())
            .build(),
    );
    let via_sns = get_code_over_table(
        AnySms::Sns(SnsSms::new(sns_client, None, None)),
        &env("OTPS_TABLE"),
        dynamo.clone(),
    );
    assert_error(
        call(&via_sns, post(json!({ "phone": phone }))).await,
        503,
        "service_unavailable",
    );

    // 2. SMS Aero refuses, quoting the number (digits only, as it takes them).
    let aero = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(400).set_body_json(json!({
            "success": false, "data": null,
            "message": format!("Номер {digits} не может получать SMS"),
        })))
        .mount(&aero)
        .await;
    let via_aero = get_code_over_table(
        AnySms::SmsAero(SmsAero::new(
            aero.uri(),
            "me@example.com".into(),
            "key".into(),
            "Sign".into(),
        )),
        &env("OTPS_TABLE"),
        dynamo.clone(),
    );
    assert_error(
        call(&via_aero, post(json!({ "phone": phone }))).await,
        503,
        "service_unavailable",
    );

    // 3. Storage refuses: a missing table on every endpoint, and an unreachable DynamoDB.
    let broken = [
        ("USERS_TABLE", "no-such-users"),
        ("OTPS_TABLE", "no-such-otps"),
    ];
    assert_error(
        call(
            &endpoint::<GetCode>(&broken).await,
            post(json!({ "phone": phone })),
        )
        .await,
        503,
        "service_unavailable",
    );
    assert_error(
        call(
            &endpoint::<SendCode>(&broken).await,
            post(json!({ "phone": phone, "password": "1234" })),
        )
        .await,
        503,
        "service_unavailable",
    );
    let access = access_token(phone_auth::user::UserId::generate());
    assert_error(
        call(
            &endpoint::<Retrieve>(&broken).await,
            request(Method::GET, "", Some(&access)),
        )
        .await,
        503,
        "service_unavailable",
    );
    assert_error(
        call(
            &endpoint::<SetReferrer>(&broken).await,
            request(Method::POST, "{\"invite_code\": \"abcdef\"}", Some(&access)),
        )
        .await,
        503,
        "service_unavailable",
    );
    let unreachable = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let no_dynamo = get_code_over_table(
        AnySms::Sns(SnsSms::new(aws_sdk_sns::Client::new(&aws), None, None)),
        "t",
        unreachable,
    );
    assert_error(
        call(&no_dynamo, post(json!({ "phone": phone }))).await,
        503,
        "service_unavailable",
    );

    // 4. The user write fails after a correct code (send_code's half-way
    // path). The code is stored as get-code would, without the dev-mode sender.
    let config = config(&[]);
    let (hasher, policy) = (
        CodeHasher::new(&config.otp_hmac_key().unwrap()),
        config.otp_policy().unwrap(),
    );
    let code = policy.generate();
    let parsed = parse_phone(&phone);
    let pending = PendingCode::new(parsed.clone(), hasher.hash(&parsed, &code), now(), &policy);
    let otps = OtpTable::new(dynamo.clone(), env("OTPS_TABLE"));
    assert_eq!(otps.issue(&pending, &policy, now()).await.unwrap(), None);
    assert_error(
        send_code_while_users_are_down(&phone, &code).await,
        503,
        "service_unavailable",
    );

    // 5. The phone is locked after two wrong codes (a limit of 2 here; the
    // right code's check of path 4 was given back): both endpoints refuse it.
    let lockout = [("OTP_MAX_FAILED_CHECKS", "2")];
    let wrong = if code == "0000" { "1111" } else { "0000" };
    let send_code = endpoint::<SendCode>(&lockout).await;
    for _ in 0..2 {
        assert_error(
            call(
                &send_code,
                post(json!({ "phone": phone, "password": wrong })),
            )
            .await,
            400,
            "code_invalid",
        );
    }
    assert_error(
        call(
            &send_code,
            post(json!({ "phone": phone, "password": code })),
        )
        .await,
        429,
        "phone_locked",
    );
    assert_error(
        call(
            &endpoint::<GetCode>(&lockout).await,
            post(json!({ "phone": phone })),
        )
        .await,
        429,
        "phone_locked",
    );

    let text = logs.text();
    // The paths above did log (this test would prove nothing otherwise)...
    for expected in [
        "SMS send failed",
        "InvalidParameter",
        "SMS Aero refused",
        "storage request failed",
        "ResourceNotFoundException",
        "connection failed",
    ] {
        assert!(
            text.contains(expected),
            "no {expected:?} in the logs:\n{text}"
        );
    }
    // ...and never the phone, in any spelling, nor the code (on its own,
    // not as part of a longer number, id or date).
    let national = &digits[1..];
    for secret in [phone.as_str(), digits.as_str(), national, code.as_str()] {
        assert!(
            !stands_in(&text, secret),
            "{secret} appears in the logs:\n{}",
            text.lines()
                .filter(|l| l.contains(secret))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

// ---------------------------------------------------------------- the log subscriber

/// The JSON lines `observe::log_lines` writes for one line at each level,
/// with these settings of `AWS_LAMBDA_LOG_LEVEL` and `RUST_LOG`.
fn written(lambda_level: Option<&str>, rust_log: Option<&str>) -> Vec<Value> {
    let lines = CapturedLogs::default();
    let subscriber = phone_auth::observe::log_lines(
        lambda_level.map(str::to_string),
        rust_log.map(str::to_string),
        true,
        lines.clone(),
    );
    tracing::subscriber::with_default(subscriber, || {
        tracing::error!("error line");
        tracing::warn!("warn line");
        tracing::info!("info line");
        tracing::debug!("debug line");
        tracing::trace!("trace line");
    });
    lines
        .text()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

fn levels(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|l| l["level"].as_str().unwrap()).collect()
}

/// Lambda reads a line's level only beside an RFC 3339 timestamp.
#[test]
fn deployed_lines_carry_an_rfc_3339_timestamp_beside_their_level() {
    let lines = written(Some("INFO"), None);
    assert_eq!(levels(&lines), ["ERROR", "WARN", "INFO"]);
    for line in &lines {
        let timestamp = line["timestamp"].as_str().unwrap();
        assert!(
            phone_auth::limits::parse_date(&timestamp[..10]).is_some()
                && timestamp[10..].starts_with('T')
                && timestamp.ends_with('Z'),
            "{line}"
        );
    }
}

/// At TRACE the runtime logs each event whole and the SDK each request.
#[test]
fn no_line_is_finer_than_debug_whatever_is_asked() {
    let down_to_debug = ["ERROR", "WARN", "INFO", "DEBUG"];
    assert_eq!(levels(&written(Some("TRACE"), None)), down_to_debug);
    assert_eq!(levels(&written(None, Some("trace"))), down_to_debug);
}

#[test]
fn lambdas_level_wins_over_rust_log_and_info_is_the_default() {
    assert_eq!(
        levels(&written(Some("WARN"), Some("debug"))),
        ["ERROR", "WARN"]
    );
    assert_eq!(levels(&written(None, Some("warn"))), ["ERROR", "WARN"]);
    assert_eq!(levels(&written(None, None)), ["ERROR", "WARN", "INFO"]);
}

/// `RUST_LOG` as `make dev` users write it: `target=level` directives beside
/// an optional level for the rest.
#[test]
fn rust_log_directives_name_targets_and_the_rest_log_at_info() {
    let everything = ["ERROR", "WARN", "INFO", "DEBUG"];
    // This test binary's events have the target `logs`.
    assert_eq!(levels(&written(None, Some("logs=debug"))), everything);
    assert_eq!(levels(&written(None, Some("warn,logs=debug"))), everything);
    assert_eq!(
        levels(&written(None, Some("debug,logs=warn"))),
        ["ERROR", "WARN"]
    );
    // Another target's directive leaves this one at the default.
    assert_eq!(
        levels(&written(None, Some("phone_auth=debug"))),
        ["ERROR", "WARN", "INFO"]
    );
    // What does not parse is not half-applied: INFO for everything.
    assert_eq!(
        levels(&written(None, Some("logs=debug=warn"))),
        ["ERROR", "WARN", "INFO"]
    );
}

/// Lambda's levels include FATAL, which tracing has not.
#[test]
fn lambdas_fatal_is_error_and_an_unknown_level_is_info() {
    assert_eq!(levels(&written(Some("FATAL"), None)), ["ERROR"]);
    assert_eq!(levels(&written(Some("debug"), None)).len(), 4);
    assert_eq!(
        levels(&written(Some("LOUD"), None)),
        ["ERROR", "WARN", "INFO"]
    );
}

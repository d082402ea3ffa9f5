//! Where the functions' AWS clients send their requests, for the endpoint
//! variables template.yaml declares (`AWS_ENDPOINT_URL_DYNAMODB`,
//! `AWS_ENDPOINT_URL_SNS`): deployed they hold "" and must leave the SDK on
//! its regional endpoints; `sam local` overrides them with DynamoDB Local
//! and moto.
//!
//! Each case runs the production loader (`endpoints::aws_config`, what a
//! cold start calls) and `Client::new`, as the adapters do, in a child
//! process whose environment is exactly the case's: the SDK reads the real
//! process environment, and nothing from the parent (`make test` exports a
//! local endpoint) or from ~/.aws may leak in. One request per client is
//! stopped by an interceptor just before it would be sent: its URI is the
//! endpoint the SDK resolved. No network I/O.

use std::process::Command;

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};

const CHILD: &str = "resolved_endpoints_in_this_process";
const REGION: &str = "eu-central-1";

/// Records the request's URI, then refuses to send it.
#[derive(Debug)]
struct StopBeforeSending;

impl Intercept for StopBeforeSending {
    fn name(&self) -> &'static str {
        "StopBeforeSending"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(format!("URI {}", context.request().uri()).into())
    }
}

/// `URI <uri>` if the request got as far as sending, else the SDK's error.
fn outcome<E: std::error::Error>(result: Result<impl std::fmt::Debug, E>) -> String {
    let error = result.expect_err("the interceptor stops every request");
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = cause.to_string();
        source = cause.source();
    }
    text
}

/// Run by `endpoints_for` in a child process: prints one line per client.
#[tokio::test]
#[ignore = "run by endpoints_for in a child process with a controlled environment"]
async fn resolved_endpoints_in_this_process() {
    let aws = phone_auth::endpoints::aws_config(&phone_auth::config::Config::from_env())
        .expect("AWS_REGION is set");
    let dynamodb = aws_sdk_dynamodb::Client::new(&aws)
        .get_item()
        .table_name("t")
        .key("pk", aws_sdk_dynamodb::types::AttributeValue::S("x".into()))
        .customize()
        .interceptor(StopBeforeSending)
        .send()
        .await;
    let sns = aws_sdk_sns::Client::new(&aws)
        .publish()
        .phone_number("+79990000000")
        .message("m")
        .customize()
        .interceptor(StopBeforeSending)
        .send()
        .await;
    println!("dynamodb={}", outcome(dynamodb));
    println!("sns={}", outcome(sns));
}

/// (DynamoDB, SNS) outcomes with exactly `vars` (plus a region and dummy
/// credentials) in the environment.
fn endpoints_for(vars: &[(&str, &str)]) -> (String, String) {
    let missing = std::env::temp_dir().join("phone-auth-no-such-aws-config");
    let output = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            CHILD,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env_clear()
        .env("AWS_REGION", REGION)
        .env("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", &missing)
        .env("AWS_SHARED_CREDENTIALS_FILE", &missing)
        .envs(vars.iter().copied())
        .output()
        .expect("the test binary runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let line = |client: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(&format!("{client}=")).map(|(_, value)| value))
            .unwrap_or_else(|| panic!("no {client}= line in:\n{stdout}"))
            .to_string()
    };
    (line("dynamodb"), line("sns"))
}

fn regional() -> (String, String) {
    (
        format!("URI https://dynamodb.{REGION}.amazonaws.com/"),
        format!("URI https://sns.{REGION}.amazonaws.com/"),
    )
}

#[test]
fn without_endpoint_variables_the_clients_use_the_regional_endpoints() {
    assert_eq!(endpoints_for(&[]), regional());
}

/// The SDK alone takes "" as the endpoint and panics ("URL was unset") at
/// the first request; `aws_config` leaves empty values out.
#[test]
fn empty_endpoint_variables_as_deployed_leave_the_regional_endpoints() {
    assert_eq!(
        endpoints_for(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", ""),
            ("AWS_ENDPOINT_URL_SNS", "")
        ]),
        regional()
    );
    // Blank counts as empty, and the SDK itself ignores an empty global
    // AWS_ENDPOINT_URL (it is validated as a URL and dropped with a warning).
    assert_eq!(
        endpoints_for(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", " "),
            ("AWS_ENDPOINT_URL_SNS", ""),
            ("AWS_ENDPOINT_URL", ""),
        ]),
        regional()
    );
}

#[test]
fn local_endpoint_variables_as_sam_local_sets_them_are_used() {
    assert_eq!(
        endpoints_for(&[
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://dynamodb:8000"),
            ("AWS_ENDPOINT_URL_SNS", "http://moto:5000"),
        ]),
        (
            "URI http://dynamodb:8000/".to_string(),
            "URI http://moto:5000/".to_string()
        )
    );
}

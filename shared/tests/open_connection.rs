//! The connections a cold start opens after it builds its clients
//! (`endpoints::start`, `Endpoint::open_connections`): DynamoDB's for every
//! function that calls AWS, the SMS provider's too (SNS or SMS Aero) for
//! those that send codes. The function's first request uses the same
//! connection; a peer that is down or silent costs init at most
//! `OPEN_CONNECTION_LIMIT`, never an error; one that throttles gets one
//! request, not the SDK's retries. Against DynamoDB Local and local HTTP
//! servers, through a loopback proxy that counts connections.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::retry::RetryConfig;

use lambda_http::http::Method;
use phone_auth::adapters::dynamo::open_connection;
use phone_auth::config::Config;
use phone_auth::endpoints::{
    Endpoint, GetCode, ListSessions, Login, OPEN_CONNECTION_LIMIT, Register, aws_config, start,
};
use phone_auth::user::UserId;
use tokio::net::{TcpListener, TcpStream};

/// Connections accepted, each piped to `upstream`.
async fn counting_proxy(upstream: SocketAddr) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut server = TcpStream::connect(upstream).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    (address, accepted)
}

/// The production SDK configuration, its DynamoDB endpoint at `endpoint`.
fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    sdk_config_with("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
}

/// The production SDK configuration, the endpoint variable `variable` set
/// to `endpoint`.
fn sdk_config_with(variable: &'static str, endpoint: &str) -> aws_config::SdkConfig {
    let endpoint = endpoint.to_string();
    let config = Config::from_lookup(move |name| {
        if name == variable {
            Some(endpoint.clone())
        } else {
            std::env::var(name).ok()
        }
    });
    aws_config(&config).expect("AWS_REGION is set")
}

/// `aws` with the SDK's first backoff a millisecond instead of random (up
/// to a second, which may outlast the bound), so that a retry would surely
/// be sent.
fn retrying_at_once(aws: aws_config::SdkConfig) -> aws_config::SdkConfig {
    aws.into_builder()
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
        .build()
}

fn dynamodb_local() -> SocketAddr {
    let url = support::env("AWS_ENDPOINT_URL_DYNAMODB");
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("DynamoDB Local on a loopback address")
}

/// DynamoDB Local (a JVM) answers its first requests slowly: warmed first,
/// so that it answers within the bound as DynamoDB does.
async fn warm_dynamodb_local() {
    let direct =
        aws_sdk_dynamodb::Client::new(&sdk_config(&format!("http://{}", dynamodb_local())));
    for _ in 0..3 {
        direct
            .list_tables()
            .send()
            .await
            .expect("DynamoDB Local answers");
    }
}

#[tokio::test]
async fn the_first_request_uses_the_connection_opened_at_init() {
    warm_dynamodb_local().await;
    let (proxy, accepted) = counting_proxy(dynamodb_local()).await;
    let aws = sdk_config(&format!("http://{proxy}"));

    open_connection(&aws).await;
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection opened");

    // A client built afterwards from the same configuration, as the
    // function's own are (they are built before; the pool is the same).
    let client = aws_sdk_dynamodb::Client::new(&aws);
    client
        .describe_table()
        .table_name(support::env("USERS_TABLE"))
        .send()
        .await
        .expect("DynamoDB Local answers");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the request went over the connection opened at init"
    );
}

/// The whole cold start (`endpoints::start`), which builds the function,
/// then opens the connection: the clients built before share it, and the
/// first request (list-sessions: one Query, for a user with none) goes
/// over it.
#[tokio::test]
async fn a_started_function_serves_its_first_request_over_the_opened_connection() {
    warm_dynamodb_local().await;
    let (proxy, accepted) = counting_proxy(dynamodb_local()).await;
    let proxy = format!("http://{proxy}");
    let config = support::config(&[("AWS_ENDPOINT_URL_DYNAMODB", &proxy)]);

    let function = start::<ListSessions>(&config)
        .await
        .expect("configuration is complete");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "opened during the cold start"
    );

    let token = support::access_token(UserId::generate());
    let response = function
        .serve(support::request(Method::GET, "", Some(&token)))
        .await;
    // DynamoDB was asked, and said there is none.
    assert_eq!(response.status(), 200);
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "the first request went over the connection opened at init"
    );
}

/// The functions that send codes (get-code, and seed-004's register and
/// login, whose first step is get-code's) open SNS's connection too, at the
/// same time as DynamoDB's, and their first request sends the SMS over it.
#[tokio::test]
async fn a_started_function_that_sends_codes_sends_its_first_sms_over_the_opened_connection() {
    first_sms_over_the_opened_connection::<GetCode>(&sns_stand_in().await, sns_settings).await;
    first_sms_over_the_opened_connection::<Register>(&sns_stand_in().await, sns_settings).await;
    first_sms_over_the_opened_connection::<Login>(&sns_stand_in().await, sns_settings).await;
}

/// The same with SMS Aero as the provider: its connection is opened by a
/// read of the balance.
#[tokio::test]
async fn a_started_get_code_sends_its_first_sms_aero_message_over_the_opened_connection() {
    let aero_settings = |url: &str| {
        vec![
            ("SMS_PROVIDER", "smsaero".to_string()),
            ("SMSAERO_BASE_URL", format!("{url}/v2")),
            ("SMSAERO_EMAIL", "ops@example.com".to_string()),
            ("SMSAERO_API_KEY", "aero-key".to_string()),
        ]
    };
    first_sms_over_the_opened_connection::<GetCode>(&sms_aero_stand_in().await, aero_settings)
        .await;
}

/// Starts `E` with DynamoDB Local and its SMS provider (`provider`, set up
/// by `settings` from the provider's URL) each behind a counting proxy:
/// the cold start opens one connection to each, and the first code's SMS
/// goes over the provider's. `provider`'s mocks expect the opening's call
/// and the SMS, once each.
async fn first_sms_over_the_opened_connection<E: Endpoint>(
    provider: &wiremock::MockServer,
    settings: impl FnOnce(&str) -> Vec<(&'static str, String)>,
) {
    warm_dynamodb_local().await;
    let (dynamodb, to_dynamodb) = counting_proxy(dynamodb_local()).await;
    let (provider_proxy, to_provider) = counting_proxy(*provider.address()).await;
    let mut vars = settings(&format!("http://{provider_proxy}"));
    vars.push(("AWS_ENDPOINT_URL_DYNAMODB", format!("http://{dynamodb}")));
    // login sends a code to a phone without an account too.
    vars.push(("PREVENT_USER_EXISTENCE_ERRORS", "true".to_string()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let config = support::config(&vars);

    let function = start::<E>(&config)
        .await
        .expect("configuration is complete");
    let opened = (
        to_dynamodb.load(Ordering::SeqCst),
        to_provider.load(Ordering::SeqCst),
    );
    assert_eq!(
        opened,
        (1, 1),
        "{}: DynamoDB's and the provider's opened",
        E::NAME
    );

    let phone = support::unique_phone();
    let response = function
        .serve(support::post(serde_json::json!({ "phone": phone })))
        .await;
    assert_eq!(response.status(), 200, "{}", E::NAME);
    assert_eq!(
        to_provider.load(Ordering::SeqCst),
        1,
        "{}: the SMS went over the connection opened at init",
        E::NAME
    );
    provider.verify().await;
}

fn sns_settings(url: &str) -> Vec<(&'static str, String)> {
    vec![
        ("SMS_PROVIDER", "sns".to_string()),
        ("AWS_ENDPOINT_URL_SNS", url.to_string()),
    ]
}

/// SNS answering the opening's `GetSMSAttributes` and one `Publish`, once
/// each. moto's server closes every connection after its answer, so an SNS
/// that keeps connections open, as SNS does, is played by a local HTTP
/// server answering the two query-protocol calls (moto's SNS is in
/// tests/sms.rs).
async fn sns_stand_in() -> wiremock::MockServer {
    use wiremock::matchers::body_string_contains;
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let sns = MockServer::start().await;
    for (action, result) in [
        (
            "GetSMSAttributes",
            "<GetSMSAttributesResult><attributes/></GetSMSAttributesResult>",
        ),
        (
            "Publish",
            "<PublishResult><MessageId>00000000-0000-4000-8000-000000000001</MessageId></PublishResult>",
        ),
    ] {
        let xml = format!(
            "<{action}Response xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">{result}\
             <ResponseMetadata><RequestId>00000000-0000-4000-9000-000000000001</RequestId></ResponseMetadata>\
             </{action}Response>"
        );
        Mock::given(body_string_contains(format!("Action={action}&")))
            .respond_with(ResponseTemplate::new(200).set_body_raw(xml, "text/xml"))
            .expect(1)
            .mount(&sns)
            .await;
    }
    sns
}

/// SMS Aero answering the opening's read of the balance (with the
/// account's credentials) and one SMS, once each.
async fn sms_aero_stand_in() -> wiremock::MockServer {
    use wiremock::matchers::{basic_auth, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};
    let aero = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v2/balance"))
        .and(basic_auth("ops@example.com", "aero-key"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({ "success": true, "data": { "balance": 100.0 }, "message": null }),
        ))
        .expect(1)
        .mount(&aero)
        .await;
    Mock::given(method("POST"))
        .and(path("/v2/sms/send"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({ "success": true, "data": { "id": 1 }, "message": null }),
        ))
        .expect(1)
        .mount(&aero)
        .await;
    aero
}

// Tokio's clock paused: it moves on only while every task waits, so the
// bound below is checked without depending on how busy the machine is.
#[tokio::test(start_paused = true)]
async fn a_silent_or_absent_dynamodb_only_delays_init_a_little() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let config =
        |address| support::config(&[("AWS_ENDPOINT_URL_DYNAMODB", &format!("http://{address}"))]);
    // The cold start completes, bounded by OPEN_CONNECTION_LIMIT: the SDK's
    // own attempt timeout is 2 s, so without the bound it would wait for it.
    let started = tokio::time::Instant::now();
    start::<ListSessions>(&config(address))
        .await
        .expect("configuration is complete");
    assert_eq!(started.elapsed(), OPEN_CONNECTION_LIMIT);

    // Nothing listening at all.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    start::<ListSessions>(&config(address))
        .await
        .expect("configuration is complete");
}

/// A DynamoDB that throttles every request (the answer a burst of cold
/// starts could get): `open_connection` sends it one request, where the
/// function's own clients would retry.
#[tokio::test]
async fn a_throttling_dynamodb_gets_one_request_per_cold_start() {
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
    let dynamodb = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(400).set_body_raw(
            r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}"#,
            "application/x-amz-json-1.0",
        ))
        .mount(&dynamodb)
        .await;
    let aws = retrying_at_once(sdk_config(&dynamodb.uri()));

    open_connection(&aws).await;
    let requests = dynamodb.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one request, no retry");

    // What the function's own clients do with the same answer.
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let _ = client.list_tables().send().await;
    let requests = dynamodb.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1 + 3, "the SDK's three attempts");
}

/// The same for SNS, which throttles `GetSMSAttributes` per account.
#[tokio::test]
async fn a_throttling_sns_gets_one_request_per_cold_start() {
    use phone_auth::adapters::sms::SnsSms;
    use wiremock::{Mock, MockServer, ResponseTemplate, matchers::any};
    let sns = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(400).set_body_raw(
            "<ErrorResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\"><Error>\
             <Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>\
             </Error><RequestId>00000000-0000-4000-9000-000000000001</RequestId></ErrorResponse>",
            "text/xml",
        ))
        .mount(&sns)
        .await;
    let aws = retrying_at_once(sdk_config_with("AWS_ENDPOINT_URL_SNS", &sns.uri()));
    let client = aws_sdk_sns::Client::new(&aws);

    SnsSms::new(client.clone(), None, None)
        .open_connection()
        .await;
    let requests = sns.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one request, no retry");

    // What the sender's own calls do with the same answer.
    let _ = client.get_sms_attributes().send().await;
    let requests = sns.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1 + 3, "the SDK's three attempts");
}

//! `adapters::dynamo::open_connection`, what a cold start runs after it
//! builds its clients (`endpoints::start`): it opens one connection to
//! DynamoDB, the function's first request uses that same connection, and a DynamoDB that is down or
//! silent costs init at most `OPEN_CONNECTION_LIMIT`, never an error, and
//! one that throttles gets one request, not the SDK's retries.
//! Against DynamoDB Local, through a loopback proxy that counts connections
//! and the requests on them.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::retry::RetryConfig;

use lambda_http::http::Method;
use phone_auth::adapters::dynamo::{OPEN_CONNECTION_LIMIT, open_connection};
use phone_auth::config::Config;
use phone_auth::endpoints::{ListSessions, aws_config, start};
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
    let endpoint = endpoint.to_string();
    let config = Config::from_lookup(move |name| match name {
        "AWS_ENDPOINT_URL_DYNAMODB" => Some(endpoint.clone()),
        _ => std::env::var(name).ok(),
    });
    aws_config(&config).expect("AWS_REGION is set")
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
/// then opens the connection: the clients built before share it, and the first request (list-sessions: one Query, for a user
/// with none) goes over it.
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
    // Returns (no error to handle), bounded by OPEN_CONNECTION_LIMIT: the
    // SDK's own attempt timeout is 2 s, so without the bound this would
    // wait for it.
    let started = tokio::time::Instant::now();
    open_connection(&sdk_config(&format!("http://{address}"))).await;
    assert_eq!(started.elapsed(), OPEN_CONNECTION_LIMIT);

    // Nothing listening at all.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = closed.local_addr().unwrap();
    drop(closed);
    open_connection(&sdk_config(&format!("http://{address}"))).await;
}

/// A DynamoDB that throttles every request (the answer a burst of cold
/// starts could get): `open_connection` sends it one request, where the
/// function's own clients would retry. The SDK's first backoff is random
/// (up to a second, so it may outlast the bound): here it is a millisecond,
/// so that a retry would surely be sent.
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
    let aws = sdk_config(&dynamodb.uri())
        .into_builder()
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(1)))
        .build();

    open_connection(&aws).await;
    let requests = dynamodb.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1, "one request, no retry");

    // What the function's own clients do with the same answer.
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let _ = client.list_tables().send().await;
    let requests = dynamodb.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1 + 3, "the SDK's three attempts");
}

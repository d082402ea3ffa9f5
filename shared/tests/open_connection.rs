//! The connections a cold start opens after it builds its clients
//! (`endpoints::start`, `Endpoint::open_connections`): DynamoDB's for every
//! function that calls AWS, as many as its first request sends requests at
//! once (`Endpoint::dynamodb_requests_at_once`), the SMS provider's too (SNS
//! or SMS Aero) for those that send codes. The function's first request
//! opens no connection and uses each of those; a peer that is down or
//! silent costs init at most `OPEN_CONNECTION_LIMIT`, never an error; one
//! that throttles gets one request per connection, not the SDK's retries.
//! Against DynamoDB Local and local HTTP servers, through a loopback proxy
//! that counts connections and what each carries.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use phone_auth::adapters::dynamo::{UserTable, open_connections};
use phone_auth::config::Config;
use phone_auth::endpoints::{
    ClientProfile, DeleteAccount, Endpoint, Function, GetCode, ListSessions, Login,
    OPEN_CONNECTION_LIMIT, Register, Retrieve, SetReferrer, UpdateClientProfile, aws_config, start,
};
use phone_auth::store::UserStore;
use phone_auth::user::UserId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The connections a counting proxy accepted, each with the bytes it has
/// carried towards the upstream so far.
#[derive(Clone, Default)]
struct Connections(Arc<Mutex<Vec<Arc<AtomicUsize>>>>);

impl Connections {
    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Bytes sent over each connection so far, in the order they were opened.
    fn sent(&self) -> Vec<usize> {
        let connections = self.0.lock().unwrap();
        connections
            .iter()
            .map(|c| c.load(Ordering::SeqCst))
            .collect()
    }
}

/// Connections accepted, each piped to `upstream`; what a client sends is
/// counted before it is passed on, so it is counted by the time it is
/// answered.
async fn counting_proxy(upstream: SocketAddr) -> (SocketAddr, Connections) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Connections::default();
    let connections = accepted.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let sent = Arc::new(AtomicUsize::new(0));
            connections.0.lock().unwrap().push(sent.clone());
            tokio::spawn(async move {
                let server = TcpStream::connect(upstream).await.unwrap();
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let upstream = async move {
                    let mut buffer = [0u8; 8192];
                    while let Ok(n @ 1..) = from_client.read(&mut buffer).await {
                        sent.fetch_add(n, Ordering::SeqCst);
                        if to_server.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                    let _ = to_server.shutdown().await;
                };
                let downstream = tokio::io::copy(&mut from_server, &mut to_client);
                let _ = tokio::join!(upstream, downstream);
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

/// `connections` has as many as `opened` (what each had carried then), and
/// each has carried more since: what was sent in between opened no
/// connection and went over every one opened before.
#[track_caller]
fn assert_used_each(connections: &Connections, opened: &[usize], what: &str) {
    let now = connections.sent();
    assert_eq!(now.len(), opened.len(), "{what}: opened no connection");
    for (i, (before, after)) in opened.iter().zip(&now).enumerate() {
        assert!(
            after > before,
            "{what}: nothing went over connection {} of the {} opened",
            i + 1,
            opened.len()
        );
    }
}

#[tokio::test]
async fn requests_sent_at_once_go_over_the_connections_opened_at_init() {
    warm_dynamodb_local().await;
    let (proxy, connections) = counting_proxy(dynamodb_local()).await;
    let aws = sdk_config(&format!("http://{proxy}"));

    open_connections(&aws, 3).await;
    assert_eq!(connections.count(), 3, "three connections opened");
    let opened = connections.sent();

    // A client built afterwards from the same configuration, as the
    // function's own are (they are built before; the pool is the same).
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let describe = || {
        client
            .describe_table()
            .table_name(support::env("USERS_TABLE"))
            .send()
    };
    let (a, b, c) = tokio::join!(describe(), describe(), describe());
    for answer in [a, b, c] {
        answer.expect("DynamoDB Local answers");
    }
    assert_used_each(&connections, &opened, "three requests at once");
}

/// `E` started as a cold start starts it (`endpoints::start`: built, then
/// its connections opened), with `vars` set and DynamoDB Local behind a
/// counting proxy: the cold start opened `opened` connections to DynamoDB.
async fn started<E: Endpoint>(vars: &[(&str, &str)], opened: usize) -> (Function<E>, Connections) {
    warm_dynamodb_local().await;
    let (proxy, connections) = counting_proxy(dynamodb_local()).await;
    let proxy = format!("http://{proxy}");
    let mut vars = vars.to_vec();
    vars.push(("AWS_ENDPOINT_URL_DYNAMODB", &proxy));
    let function = start::<E>(&support::config(&vars))
        .await
        .expect("configuration is complete");
    assert_eq!(
        connections.count(),
        opened,
        "{}: connections to DynamoDB opened during the cold start",
        E::NAME
    );
    (function, connections)
}

/// `function`'s first request, `request`: it opens no connection to
/// DynamoDB and sends something over each one the cold start opened.
async fn serve_first<E: Endpoint>(
    function: &Function<E>,
    connections: &Connections,
    request: Request,
) -> Response<Body> {
    let opened = connections.sent();
    let response = function.serve(request).await;
    assert_used_each(connections, &opened, E::NAME);
    response
}

/// [`started`], then [`serve_first`].
async fn first_request_over_the_opened_connections<E: Endpoint>(
    opened: usize,
    request: Request,
) -> Response<Body> {
    let (function, connections) = started::<E>(&[], opened).await;
    serve_first(&function, &connections, request).await
}

/// Each function whose first request reads two or three items at once
/// (`Endpoint::dynamodb_requests_at_once`), with a first request that
/// sends them all; list-sessions' sends one. For a user who does not
/// exist every read is still sent; deleting an account needs one.
#[tokio::test]
async fn a_started_function_serves_its_first_request_over_the_connections_it_opened() {
    let nobody = support::access_token(UserId::generate());
    let get = || support::request(Method::GET, "", Some(&nobody));

    // One Query, for a user with no session: DynamoDB was asked, and said
    // there is none.
    let response = first_request_over_the_opened_connections::<ListSessions>(1, get()).await;
    assert_eq!(response.status(), 200);
    // The user and their referrals.
    let response = first_request_over_the_opened_connections::<Retrieve>(2, get()).await;
    assert_eq!(response.status(), 404);
    let response = first_request_over_the_opened_connections::<ClientProfile>(2, get()).await;
    assert_eq!(response.status(), 404);
    // The user and the code's owner; seed-004's update reads the user's
    // referrals too.
    let body = r#"{"invite_code": "AB12cd"}"#;
    let response = first_request_over_the_opened_connections::<SetReferrer>(
        2,
        support::request(Method::POST, body, Some(&nobody)),
    )
    .await;
    assert_eq!(response.status(), 404);
    let body = r#"{"invitation_code": "AB12cd"}"#;
    let response = first_request_over_the_opened_connections::<UpdateClientProfile>(
        3,
        support::request(Method::PATCH, body, Some(&nobody)),
    )
    .await;
    assert_eq!(response.status(), 404);

    // Once the user is found: their pending code and their sessions.
    let user = support::a_user(support::parse_phone(&support::unique_phone()));
    UserTable::new(support::dynamo().await, support::env("USERS_TABLE"))
        .create(&user)
        .await
        .unwrap();
    let token = support::access_token(user.id);
    let response = first_request_over_the_opened_connections::<DeleteAccount>(
        2,
        support::request(Method::DELETE, "", Some(&token)),
    )
    .await;
    assert_eq!(response.status(), 204);
}

/// The functions that send codes (get-code, and seed-004's register and
/// login, whose first step is get-code's) open SNS's connection too, at the
/// same time as DynamoDB's, and their first request sends the SMS over it.
/// DynamoDB's: the code and the counters of its budgets, written at once
/// (the source's and the service's, and the country's where one is set).
#[tokio::test]
async fn a_started_function_that_sends_codes_sends_its_first_sms_over_the_opened_connection() {
    first_sms_over_the_opened_connection::<GetCode>(&sns_stand_in().await, sns_settings, 3).await;
    first_sms_over_the_opened_connection::<Register>(&sns_stand_in().await, sns_settings, 3).await;
    first_sms_over_the_opened_connection::<Login>(&sns_stand_in().await, sns_settings, 3).await;
    let with_region_budget = |url: &str| {
        let mut vars = sns_settings(url);
        vars.push(("SMS_DAILY_BUDGET_BY_REGION", "RU=1000000".to_string()));
        vars
    };
    first_sms_over_the_opened_connection::<GetCode>(&sns_stand_in().await, with_region_budget, 4)
        .await;
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
    first_sms_over_the_opened_connection::<GetCode>(&sms_aero_stand_in().await, aero_settings, 3)
        .await;
}

/// Starts `E` ([`started`]) with its SMS provider (`provider`, set up by
/// `settings` from the provider's URL) behind a counting proxy too: the cold
/// start opens `dynamodb_connections` to DynamoDB and one to the provider,
/// and the first code's SMS goes over that one. `provider`'s mocks expect
/// the opening's call and the SMS, once each.
async fn first_sms_over_the_opened_connection<E: Endpoint>(
    provider: &wiremock::MockServer,
    settings: impl FnOnce(&str) -> Vec<(&'static str, String)>,
    dynamodb_connections: usize,
) {
    let (provider_proxy, to_provider) = counting_proxy(*provider.address()).await;
    let mut vars = settings(&format!("http://{provider_proxy}"));
    // login sends a code to a phone without an account too.
    vars.push(("PREVENT_USER_EXISTENCE_ERRORS", "true".to_string()));
    let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let (function, to_dynamodb) = started::<E>(&vars, dynamodb_connections).await;
    assert_eq!(to_provider.count(), 1, "{}: the provider's opened", E::NAME);

    let phone = support::unique_phone();
    let request = support::post(serde_json::json!({ "phone": phone }));
    let response = serve_first(&function, &to_dynamodb, request).await;
    assert_eq!(response.status(), 200, "{}", E::NAME);
    assert_eq!(
        to_provider.count(),
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
/// starts could get): `open_connections` sends it one request per
/// connection, where the function's own clients would retry.
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

    open_connections(&aws, 2).await;
    let requests = dynamodb.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2, "one request per connection, no retry");

    // What the function's own clients do with the same answer.
    let client = aws_sdk_dynamodb::Client::new(&aws);
    let _ = client.list_tables().send().await;
    let requests = dynamodb.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2 + 3, "the SDK's three attempts");
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

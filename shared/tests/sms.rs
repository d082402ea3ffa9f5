//! The SMS senders against real protocol peers: moto's SNS server and a local
//! HTTP server standing in for SMS Aero.

mod support;

use phone_auth::adapters::sms::{AnySms, SmsAero, SnsSms};
use phone_auth::endpoints::{GetCode, SendCode};
use phone_auth::sms::SmsSender;
use serde_json::{Value, json};
use support::*;
use wiremock::matchers::{basic_auth, body_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

async fn sns_client() -> aws_sdk_sns::Client {
    let aws = aws().await;
    aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&aws)
            .endpoint_url(env("MOTO_ENDPOINT"))
            .build(),
    )
}

/// The SMS moto accepted for `phone`, read back from its state API.
async fn sms_sent_to(phone: &str) -> Vec<String> {
    let url = format!("{}/moto-api/data.json", env("MOTO_ENDPOINT"));
    let state: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    state["sns"]["SMS"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|sms| sms["phone_number"] == phone)
        .map(|sms| sms["message"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn sns_publishes_the_message_to_the_phone() {
    let phone = unique_phone();
    let sender = SnsSms::new(sns_client().await, Some("PhoneAuth".into()), None);
    sender
        .send(&support::parse_phone(&phone), "1234 is your sign-in code")
        .await
        .unwrap();
    assert_eq!(
        sms_sent_to(&phone).await,
        vec!["1234 is your sign-in code".to_string()]
    );
}

#[tokio::test]
async fn sign_in_through_sns_with_the_code_from_the_sms() {
    let get_code = GetCode {
        sms: AnySms::Sns(SnsSms::new(sns_client().await, None, None)),
        ..endpoint::<GetCode>(&[]).await
    };
    let phone = unique_phone();
    let (status, body) = call(&get_code, post(json!({ "phone": phone }))).await;
    // A real sender never reveals the code in the response.
    assert_eq!((status, body), (200, json!({ "phone": phone })));

    let messages = sms_sent_to(&phone).await;
    assert_eq!(messages.len(), 1);
    // The first run of digits: the code (a +7 phone gets the Russian text).
    let code: String = messages[0]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    assert!(messages[0].starts_with("Код входа"), "{}", messages[0]);
    assert_eq!(code.len(), 4, "{}", messages[0]);
    let (status, tokens) = call(
        &endpoint::<SendCode>(&[]).await,
        post(json!({ "phone": phone, "password": code })),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens["access"].is_string() && tokens["refresh"].is_string());
}

#[tokio::test]
async fn sns_failures_are_errors() {
    let aws = aws().await;
    let unreachable = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&aws)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let result = SnsSms::new(unreachable, None, None)
        .send(&support::parse_phone(&unique_phone()), "x")
        .await;
    assert!(result.is_err());
}

fn aero(server: &MockServer) -> SmsAero {
    SmsAero::new(
        format!("{}/v2", server.uri()),
        "owner@example.com".into(),
        "secret-key".into(),
        "PhoneAuth".into(),
    )
}

#[tokio::test]
async fn sms_aero_gets_an_authenticated_request_with_digits_only() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v2/sms/send"))
        .and(basic_auth("owner@example.com", "secret-key"))
        .and(header("content-type", "application/json"))
        .and(body_json(
            json!({ "number": "79001234567", "text": "1234 is your code", "sign": "PhoneAuth" }),
        ))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "success": true, "data": { "id": 1 }, "message": null })),
        )
        .expect(1)
        .mount(&server)
        .await;
    aero(&server)
        .send(&support::parse_phone("+79001234567"), "1234 is your code")
        .await
        .unwrap();
    server.verify().await;
}

#[tokio::test]
async fn sms_aero_refusals_are_errors() {
    let phone = support::parse_phone("+79001234567");
    for response in [
        ResponseTemplate::new(401)
            .set_body_json(json!({ "success": false, "message": "Unauthorized" })),
        ResponseTemplate::new(200)
            .set_body_json(json!({ "success": false, "message": "Insufficient funds" })),
        ResponseTemplate::new(200).set_body_string("<html>gateway</html>"),
        ResponseTemplate::new(502),
    ] {
        let server = MockServer::start().await;
        Mock::given(method("POST"))
            .respond_with(response)
            .mount(&server)
            .await;
        assert!(aero(&server).send(&phone, "x").await.is_err());
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
    }
}

/// An unreachable SMS Aero is an error naming what failed, never the number.
#[tokio::test]
async fn sms_aero_out_of_reach_is_a_connection_error() {
    let aero = SmsAero::new(
        "http://127.0.0.1:9/v2".into(),
        "owner@example.com".into(),
        "secret-key".into(),
        "PhoneAuth".into(),
    );
    let err = aero
        .send(&support::parse_phone("+79001234567"), "x")
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "SMS not sent: SMS Aero request failed: connection failed"
    );
}

#[tokio::test]
async fn the_provider_is_chosen_by_configuration() {
    let aws = aws().await;
    let smsaero = [
        ("SMS_PROVIDER", "smsaero"),
        ("SMSAERO_EMAIL", "a@b.c"),
        ("SMSAERO_API_KEY", "k"),
    ];
    assert!(matches!(
        AnySms::from_config(&config(&smsaero), &aws),
        Ok(AnySms::SmsAero(_))
    ));
    assert!(matches!(
        AnySms::from_config(&config(&[("SMS_PROVIDER", "sns")]), &aws),
        Ok(AnySms::Sns(_))
    ));
    // SMS Aero without credentials is a configuration error at init, not at the first SMS.
    assert!(AnySms::from_config(&config(&[("SMS_PROVIDER", "smsaero")]), &aws).is_err());
}

/// The text follows the phone's country unless the request names a language.
#[tokio::test]
async fn the_message_is_russian_for_russian_speaking_countries_and_english_elsewhere() {
    use support::memory::{MemoryCounters, MemoryOtps, MemorySms};
    let sms = MemorySms::default();
    let endpoint = get_code_over(
        MemoryOtps::default(),
        sms.clone(),
        MemoryCounters::default(),
    );
    let send = |body: Value| {
        let endpoint = &endpoint;
        async move { answer(endpoint.get_code(post(body)).await) }
    };
    let cases: [(Value, &str); 5] = [
        (json!({ "phone": "+79001234567" }), "Код входа: "),
        (json!({ "phone": "+77011234567" }), "Код входа: "), // KZ
        (json!({ "phone": "+447400123456" }), "is your sign-in code"),
        (
            json!({ "phone": "+79001234568", "lang": "en" }),
            "is your sign-in code",
        ),
        (
            json!({ "phone": "+447400123457", "lang": "RU" }),
            "Код входа: ",
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(send(body.clone()).await.0, 200, "{body}");
        let (_, text) = sms.sent().pop().unwrap();
        assert!(text.contains(expected), "{body}: {text}");
    }
    assert_error(
        send(json!({ "phone": "+79001234569", "lang": "de" })).await,
        400,
        "unsupported_lang",
    );
    assert_eq!(sms.sent().len(), 5, "nothing sent for a refused language");
}

/// What SNS receives: the transactional type, the sender ID and the price
/// cap as message attributes (read from the raw Publish request; moto does
/// not keep attributes).
#[tokio::test]
async fn sns_gets_the_transactional_type_sender_id_and_price_cap() {
    let peer = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string(
            "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\
             <PublishResult><MessageId>m-1</MessageId></PublishResult>\
             <ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></PublishResponse>",
        ))
        .mount(&peer)
        .await;
    let aws = aws().await;
    let client = aws_sdk_sns::Client::from_conf(
        aws_sdk_sns::config::Builder::from(&aws)
            .endpoint_url(peer.uri())
            .build(),
    );
    let sender = SnsSms::new(client, Some("PhoneAuth".into()), Some("0.05".into()));
    sender
        .send(&parse_phone(&unique_phone()), "1234 is your sign-in code")
        .await
        .unwrap();
    let requests = peer.received_requests().await.unwrap();
    let form: Vec<(String, String)> = form_urlencoded::parse(&requests[0].body)
        .into_owned()
        .collect();
    let attribute = |name: &str| {
        let key = form
            .iter()
            .find(|(_, v)| v == name)
            .map(|(k, _)| k.trim_end_matches(".Name").to_string())
            .unwrap_or_else(|| panic!("{name} not sent: {form:?}"));
        let field = |f: &str| {
            form.iter()
                .find(|(k, _)| *k == format!("{key}.Value.{f}"))
                .map(|(_, v)| v.clone())
        };
        (field("DataType"), field("StringValue"))
    };
    let s = |v: &str| Some(v.to_string());
    assert_eq!(
        attribute("AWS.SNS.SMS.SMSType"),
        (s("String"), s("Transactional"))
    );
    assert_eq!(
        attribute("AWS.SNS.SMS.SenderID"),
        (s("String"), s("PhoneAuth"))
    );
    assert_eq!(attribute("AWS.SNS.SMS.MaxPrice"), (s("Number"), s("0.05")));
}

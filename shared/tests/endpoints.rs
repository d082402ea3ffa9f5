//! Each endpoint's HTTP behaviour against DynamoDB Local: the seed-000
//! contract, every refusal as a 4xx JSON error, storage failures as 503.

mod support;

use lambda_http::http::Method;
use lambda_http::{Body, Request, Response};
use phone_auth::adapters::dynamo::{OtpTable, UserTable};
use phone_auth::adapters::sms::{AnySms, SmsAero};
use phone_auth::endpoints::serve;
use phone_auth::endpoints::{GetCode, Refresh, Retrieve, SendCode, SetReferrer};
use phone_auth::error::ApiError;
use phone_auth::invite::InviteCode;
use phone_auth::limits::Source;
use phone_auth::otp::{CodeHasher, PendingCode};
use phone_auth::store::{OtpStore, UserStore};
use phone_auth::token::TokenKind;
use phone_auth::user::UserId;
use serde_json::{Value, json};
use support::memory::MemorySms;
use support::scripted::{Script, Scripted};
use support::*;

async fn get_code(phone: &str) -> (u16, Value) {
    call(
        &endpoint::<GetCode>(&[]).await,
        post(json!({ "phone": phone })),
    )
    .await
}

async fn send_code(phone: &str, code: &str) -> (u16, Value) {
    call(
        &endpoint::<SendCode>(&[]).await,
        post(json!({ "phone": phone, "password": code })),
    )
    .await
}

/// Signs a new user in through the two endpoints; returns (phone, access, refresh).
async fn sign_up() -> (String, String, String) {
    let phone = unique_phone();
    let (status, body) = get_code(&phone).await;
    assert_eq!(status, 200, "{body}");
    let (status, tokens) = send_code(&phone, body["sms_code"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{tokens}");
    (
        phone,
        tokens["access"].as_str().unwrap().into(),
        tokens["refresh"].as_str().unwrap().into(),
    )
}

async fn profile(access: &str) -> (u16, Value) {
    call(
        &endpoint::<Retrieve>(&[]).await,
        request(Method::GET, "", Some(access)),
    )
    .await
}

async fn set_referrer(access: &str, code: &str) -> (u16, Value) {
    let body = json!({ "invite_code": code }).to_string();
    call(
        &endpoint::<SetReferrer>(&[]).await,
        request(Method::POST, &body, Some(access)),
    )
    .await
}

fn invite_code(profile: &Value) -> String {
    profile["invite_code"].as_str().unwrap().to_string()
}

// ------------------------------------------------------------------ get_code

#[tokio::test]
async fn get_code_answers_with_the_normalized_phone() {
    let phone = unique_phone();
    let spelled = format!(
        "8 ({}) {}-{}-{}",
        &phone[2..5],
        &phone[5..8],
        &phone[8..10],
        &phone[10..]
    );
    let (status, body) = get_code(&spelled).await;
    assert_eq!(status, 200);
    assert_eq!(body["phone"], phone.as_str());
    assert!(
        body["sms_code"]
            .as_str()
            .unwrap()
            .chars()
            .all(|c| c.is_ascii_digit())
    );
}

#[tokio::test]
async fn the_code_is_stored_only_as_a_keyed_hash() {
    let phone = unique_phone();
    let (_, body) = get_code(&phone).await;
    let code = body["sms_code"].as_str().unwrap();
    let item = dynamo()
        .await
        .get_item()
        .table_name(env("OTPS_TABLE"))
        .key(
            "phone",
            aws_sdk_dynamodb::types::AttributeValue::S(phone.clone()),
        )
        .send()
        .await
        .unwrap()
        .item
        .unwrap();
    for (name, value) in &item {
        assert!(
            !format!("{value:?}").contains(&format!("\"{code}\"")),
            "{name} holds the code in clear"
        );
    }
    assert_eq!(
        item["code_hash"].as_s().unwrap().len(),
        44,
        "base64 of a 32-byte HMAC-SHA256"
    );
    let number = |name: &str| item[name].as_n().unwrap().parse::<u64>().unwrap();
    assert!((now() + 295..=now() + 300).contains(&number("code_expires_at")));
    // The TTL attribute outlives the code: it keeps the phone's send window
    // (an hour) and its lockout window (a day).
    assert!((now() + 86_395..=now() + 86_400).contains(&number("expires_at")));
}

#[tokio::test]
async fn a_second_code_within_a_minute_is_throttled_with_retry_after() {
    let phone = unique_phone();
    assert_eq!(get_code(&phone).await.0, 200);
    let response = phone_auth::endpoints::serve(
        &endpoint::<GetCode>(&[]).await,
        post(json!({ "phone": phone })),
    )
    .await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((55..=60).contains(&retry_after), "{retry_after}");
}

#[tokio::test]
async fn a_phone_gets_a_limited_number_of_codes_per_window() {
    let limits = [
        ("OTP_RESEND_COOLDOWN_SECONDS", "0"),
        ("OTP_MAX_SENDS_PER_WINDOW", "2"),
    ];
    let get_code = endpoint::<GetCode>(&limits).await;
    let phone = unique_phone();
    for _ in 0..2 {
        assert_eq!(
            call(&get_code, post(json!({ "phone": phone }))).await.0,
            200
        );
    }
    let response = phone_auth::endpoints::serve(&get_code, post(json!({ "phone": phone }))).await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3595..=3600).contains(&retry_after), "{retry_after}");
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(body["code"], "too_many_codes");
}

#[tokio::test]
async fn a_failed_sms_does_not_start_the_cooldown() {
    let sms_provider = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(wiremock::ResponseTemplate::new(500))
        .mount(&sms_provider)
        .await;
    let failing = GetCode {
        sms: AnySms::SmsAero(SmsAero::new(
            sms_provider.uri(),
            "me@example.com".into(),
            "key".into(),
            "Sign".into(),
        )),
        ..endpoint::<GetCode>(&[]).await
    };
    let phone = unique_phone();
    assert_error(
        call(&failing, post(json!({ "phone": phone }))).await,
        503,
        "service_unavailable",
    );
    assert_eq!(sms_provider.received_requests().await.unwrap().len(), 1);
    // Nothing pending, nothing throttled: the user can ask again at once.
    assert_eq!(send_code(&phone, "1234").await.1["code"], "code_invalid");
    assert_eq!(get_code(&phone).await.0, 200);
}

#[tokio::test]
async fn bad_input_gets_a_json_4xx_naming_the_problem() {
    let get_code = endpoint::<GetCode>(&[]).await;
    let cases: Vec<(lambda_http::Request, u16, &str)> = vec![
        (
            request(Method::POST, "{\"phone\": ", None),
            400,
            "invalid_json",
        ),
        (request(Method::POST, "", None), 400, "invalid_json"),
        (request(Method::POST, "[]", None), 400, "invalid_request"),
        (post(json!({})), 400, "invalid_request"),
        (
            post(json!({ "phone": 79001234567u64 })),
            400,
            "invalid_request",
        ),
        (post(json!({ "phone": null })), 400, "invalid_request"),
        (
            post(json!({ "phone": "not a phone" })),
            400,
            "invalid_phone",
        ),
        (post(json!({ "phone": "+7900" })), 400, "invalid_phone"),
        (
            post(json!({ "phone": "x".repeat(5000) })),
            413,
            "payload_too_large",
        ),
        (request(Method::GET, "", None), 405, "method_not_allowed"),
        (
            request(Method::PUT, "{\"phone\": \"+79001234567\"}", None),
            405,
            "method_not_allowed",
        ),
    ];
    for (request, status, code) in cases {
        let (got_status, body) = call(&get_code, request).await;
        assert_eq!(
            (got_status, body["code"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
    }
    let restricted = endpoint::<GetCode>(&[("PHONE_ALLOWED_REGIONS", "RU,KZ")]).await;
    assert_error(
        call(&restricted, post(json!({ "phone": "+447911123456" }))).await,
        400,
        "phone_region_not_allowed",
    );
}

// ------------------------------------------------------------------ send_code

#[tokio::test]
async fn first_sign_in_creates_the_user_and_later_ones_find_it() {
    let (phone, access, _) = sign_up().await;
    let (status, first) = profile(&access).await;
    assert_eq!(status, 200);
    assert_eq!(first["phone"], phone.as_str());
    let code = invite_code(&first);
    assert!(
        code.len() == 6 && code.chars().all(|c| c.is_ascii_alphanumeric()),
        "{code}"
    );

    // The same person, typed another way, after the cooldown: the same user.
    let otps = OtpTable::new(dynamo().await, env("OTPS_TABLE"));
    let config = config(&[]);
    let hasher = CodeHasher::new(&config.otp_hmac_key().unwrap());
    let p = support::parse_phone(&phone);
    let pending = PendingCode::new(
        p.clone(),
        hasher.hash(&p, "4321"),
        now(),
        &config.otp_policy().unwrap(),
    );
    assert_eq!(
        otps.issue(&pending, &config.otp_policy().unwrap(), now())
            .await
            .unwrap(),
        None
    );
    let (status, tokens) = send_code(&phone[1..], "4321").await;
    assert_eq!(status, 200, "{tokens}");
    let (_, again) = profile(tokens["access"].as_str().unwrap()).await;
    assert_eq!(again, first);
}

#[tokio::test]
async fn a_code_is_single_use() {
    let phone = unique_phone();
    let code = get_code(&phone).await.1["sms_code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(send_code(&phone, &code).await.0, 200);
    assert_eq!(
        send_code(&phone, &code).await,
        (
            400,
            json!({"code": "code_invalid", "message": "the code is wrong or was already used; request a new one", "detail": "the code is wrong or was already used; request a new one"})
        )
    );
}

#[tokio::test]
async fn three_wrong_codes_burn_the_code() {
    let phone = unique_phone();
    let code = get_code(&phone).await.1["sms_code"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = if code == "0000" { "1111" } else { "0000" };
    for _ in 0..3 {
        assert_eq!(send_code(&phone, wrong).await.1["code"], "code_invalid");
    }
    assert_error(send_code(&phone, &code).await, 429, "too_many_attempts");
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let phone = unique_phone();
    let p = support::parse_phone(&phone);
    let config = config(&[]);
    let hasher = CodeHasher::new(&config.otp_hmac_key().unwrap());
    let stale = PendingCode::new(
        p.clone(),
        hasher.hash(&p, "1234"),
        now() - 301,
        &config.otp_policy().unwrap(),
    );
    OtpTable::new(dynamo().await, env("OTPS_TABLE"))
        .issue(&stale, &config.otp_policy().unwrap(), now() - 301)
        .await
        .unwrap();
    assert_eq!(send_code(&phone, "1234").await.1["code"], "code_expired");
}

/// Invite codes drawn in order under a prefix of this test binary's own
/// (`numbered_invite_code`, one test uses it): which codes were drawn is
/// known, so their claims can be looked up.
static NUMBERED_PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
static NUMBERED_DRAWS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn numbered(n: usize) -> InviteCode {
    let prefix = NUMBERED_PREFIX.get_or_init(|| InviteCode::generate().as_str()[..3].to_string());
    InviteCode::parse(&format!("{prefix}{n:03}")).expect("3 + 3 characters")
}

fn numbered_invite_code() -> InviteCode {
    numbered(NUMBERED_DRAWS.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
}

fn numbered_invite_codes_drawn() -> Vec<InviteCode> {
    (0..NUMBERED_DRAWS.load(std::sync::atomic::Ordering::SeqCst))
        .map(numbered)
        .collect()
}

/// The user-already-exists path for real: two sign-ins of one phone with
/// its code, both finding no user, create it at the same time (each waits at
/// `create` until the other got there). DynamoDB's conditional transaction
/// lets one write; the other finds the user on its next look, writes no
/// invite-code claim, and — the code being single use — gets code_invalid.
#[tokio::test]
async fn two_sign_ins_that_both_create_the_user_make_one() {
    let phone = unique_phone();
    let code = get_code(&phone).await.1["sms_code"]
        .as_str()
        .unwrap()
        .to_string();
    let script = Script::default();
    // Neither creates the user before both looked for it and found none.
    script.meet("create", &[1, 2]);
    let users = UserTable::new(dynamo().await, env("USERS_TABLE"));
    let endpoint = SendCode {
        invite_codes: numbered_invite_code,
        ..send_code_over(
            OtpTable::new(dynamo().await, env("OTPS_TABLE")),
            Scripted::new(users.clone(), &script),
        )
    };

    let body = json!({ "phone": phone, "password": code });
    let (first, second) = tokio::join!(
        endpoint.sign_in(post(body.clone())),
        endpoint.sign_in(post(body)),
    );
    let mut answers = [answer(first), answer(second)]
        .map(|(status, body)| (status, body["code"].as_str().map(str::to_string)));
    answers.sort();
    assert_eq!(answers, [(200, None), (400, Some("code_invalid".into()))]);
    assert!(script.calls("create") >= 2, "both tried to create the user");
    let id = users.id_of(&parse_phone(&phone)).await.unwrap().unwrap();
    let user = users.get(id).await.unwrap().unwrap();
    // Of every code the two drew, only the user's was claimed: the losing
    // transaction wrote nothing.
    let drawn = numbered_invite_codes_drawn();
    assert!(drawn.len() >= 2, "both drew a code: {drawn:?}");
    let mut claimed = Vec::new();
    for code in drawn {
        if let Some(owner) = users.owner_of(&code).await.unwrap() {
            claimed.push((code, owner));
        }
    }
    assert_eq!(claimed, vec![(user.invite_code.clone(), id)]);
}

#[tokio::test]
async fn malformed_codes_cost_no_attempt() {
    let phone = unique_phone();
    let code = get_code(&phone).await.1["sms_code"]
        .as_str()
        .unwrap()
        .to_string();
    for bad in ["", "12", "12345", "abcd"] {
        assert_eq!(
            send_code(&phone, bad).await.1["code"],
            "invalid_code_format",
            "{bad:?}"
        );
    }
    let send = endpoint::<SendCode>(&[]).await;
    assert_error(
        call(&send, post(json!({ "phone": phone }))).await,
        400,
        "invalid_request",
    );
    assert_error(
        call(&send, post(json!({ "phone": phone, "password": 1234 }))).await,
        400,
        "invalid_request",
    );
    // seed-004 clients send `sms_code`; still the first real attempt.
    let (status, _) = call(&send, post(json!({ "phone": phone, "sms_code": code }))).await;
    assert_eq!(status, 200);
}

// ------------------------------------------------------------------ tokens

#[tokio::test]
async fn refresh_rotates_the_pair_and_takes_only_refresh_tokens() {
    let (phone, access, refresh) = sign_up().await;
    let endpoint = endpoint::<Refresh>(&[]).await;
    let (status, body) = call(&endpoint, post(json!({ "refresh": refresh }))).await;
    assert_eq!(status, 200, "{body}");
    let new_access = body["access"].as_str().unwrap();
    assert_eq!(profile(new_access).await.1["phone"], phone.as_str());
    let new_refresh = body["refresh"].as_str().unwrap();
    assert_ne!(new_refresh, refresh);
    assert!(
        !new_refresh.contains(&phone[1..]),
        "no phone in {new_refresh}"
    );

    // The token rule: an access token is never a refresh token, nor is a
    // refresh JWT of the kind minted before sessions (still alive in old
    // clients), nor anything else that is not ours.
    let legacy = signer().issue(&UserId::generate(), TokenKind::Refresh, now());
    for wrong in [access.as_str(), legacy.as_str(), "x.y.z", ""] {
        assert_error(
            call(&endpoint, post(json!({ "refresh": wrong }))).await,
            401,
            "refresh_token_invalid",
        );
    }
}

#[tokio::test]
async fn the_profile_needs_a_genuine_access_token() {
    let (_, access, refresh) = sign_up().await;
    let retrieve = endpoint::<Retrieve>(&[]).await;
    assert_error(
        call(&retrieve, request(Method::GET, "", None)).await,
        401,
        "missing_token",
    );
    // The opaque refresh token is no JWT at all; a refresh JWT of the kind
    // minted before sessions is one, of the wrong type.
    assert_eq!(profile(&refresh).await.1["code"], "invalid_token");
    let legacy = signer().issue(&UserId::generate(), TokenKind::Refresh, now());
    assert_eq!(profile(&legacy).await.1["code"], "wrong_token_type");
    let mut tampered = access.clone();
    tampered.replace_range(tampered.len() - 4.., "AAAA");
    assert_eq!(profile(&tampered).await.1["code"], "invalid_token");
    let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", access.split('.').nth(1).unwrap());
    assert_eq!(profile(&unsigned).await.1["code"], "invalid_token");
    assert_error(
        call(&retrieve, request(Method::POST, "", Some(&access))).await,
        405,
        "method_not_allowed",
    );
}

// ------------------------------------------------------------------ referrals

#[tokio::test]
async fn the_profile_shows_referrer_and_referrals() {
    let (inviter_phone, inviter, _) = sign_up().await;
    let inviter_code = invite_code(&profile(&inviter).await.1);
    let (first_phone, first, _) = sign_up().await;
    let (second_phone, second, _) = sign_up().await;

    let expected = format!("You have become referral of user with invite code {inviter_code}");
    assert_eq!(
        set_referrer(&first, &inviter_code).await,
        (200, json!({ "message": expected }))
    );
    assert_eq!(
        set_referrer(&second, &format!(" {inviter_code} ")).await.0,
        200
    );

    let (_, me) = profile(&first).await;
    assert_eq!(me["invited_by_phone"], inviter_phone.as_str());
    assert_eq!(me["invite_code_referer"], inviter_code.as_str());
    assert_eq!(me["referrals"], json!([]));
    // The referral list is read from a GSI: wait until both show.
    let (_, top) = eventually(
        || profile(&inviter),
        |(_, top)| top["referrals"].as_array().is_some_and(|r| r.len() == 2),
    )
    .await;
    // Ordered by the second they joined; both may share one here, so compare as a set.
    let mut referrals: Vec<String> = serde_json::from_value(top["referrals"].clone()).unwrap();
    referrals.sort();
    let mut expected = vec![first_phone, second_phone];
    expected.sort();
    assert_eq!(referrals, expected);
    assert_eq!(top["invited_by_phone"], Value::Null);
    assert_eq!(top["invite_code_referer"], Value::Null);
}

#[tokio::test]
async fn a_referrer_is_entered_once() {
    let (_, a, _) = sign_up().await;
    let (_, b, _) = sign_up().await;
    let (_, c, _) = sign_up().await;
    let (a_code, b_code) = (
        invite_code(&profile(&a).await.1),
        invite_code(&profile(&b).await.1),
    );
    assert_eq!(set_referrer(&c, &a_code).await.0, 200);
    let message = format!("You have already been referral of user with invite code {a_code}");
    assert_eq!(
        set_referrer(&c, &b_code).await,
        (
            409,
            json!({ "code": "already_referred", "message": message, "detail": message })
        )
    );
    assert_eq!(set_referrer(&c, &a_code).await.0, 409);
}

#[tokio::test]
async fn own_unknown_and_malformed_codes_are_refused() {
    let (_, a, _) = sign_up().await;
    let own = invite_code(&profile(&a).await.1);
    assert_eq!(
        set_referrer(&a, &own).await,
        (
            400,
            json!({ "code": "own_invite_code", "message": "You cannot enter your own invite code", "detail": "You cannot enter your own invite code" })
        )
    );
    assert_error(
        set_referrer(&a, "000000").await,
        404,
        "invite_code_not_found",
    );
    for bad in ["", "abc", "abcdefg", "ab cd!"] {
        assert_eq!(
            set_referrer(&a, bad).await.1["code"],
            "invalid_invite_code_format",
            "{bad:?}"
        );
    }
    let endpoint = endpoint::<SetReferrer>(&[]).await;
    assert_error(
        call(
            &endpoint,
            request(Method::POST, "{\"invite_code\": 5}", Some(&a)),
        )
        .await,
        400,
        "invalid_request",
    );
    let (status, _) = call(
        &endpoint,
        request(Method::POST, "{\"invite_code\": \"000000\"}", None),
    )
    .await;
    assert_eq!(status, 401);
    // None of that set anything.
    assert_eq!(profile(&a).await.1["invited_by_phone"], Value::Null);
}

#[tokio::test]
async fn referrals_never_form_a_circle() {
    let (_, a, _) = sign_up().await;
    let (_, b, _) = sign_up().await;
    let (_, c, _) = sign_up().await;
    let code = |token: &str| {
        let token = token.to_string();
        async move { invite_code(&profile(&token).await.1) }
    };
    let (a_code, b_code, c_code) = (code(&a).await, code(&b).await, code(&c).await);
    // B → A (B entered A's code), then A → B would close A → B → A.
    assert_eq!(set_referrer(&b, &a_code).await.0, 200);
    assert_error(set_referrer(&a, &b_code).await, 409, "referral_cycle");
    // C → B → A, then A → C would close a circle of three.
    assert_eq!(set_referrer(&c, &b_code).await.0, 200);
    assert_eq!(set_referrer(&a, &c_code).await.1["code"], "referral_cycle");
    assert_eq!(profile(&a).await.1["invited_by_phone"], Value::Null);
}

#[tokio::test]
async fn chains_deeper_than_the_limit_cannot_be_joined() {
    let mut users = Vec::new();
    for _ in 0..4 {
        let (_, access, _) = sign_up().await;
        let code = invite_code(&profile(&access).await.1);
        users.push((access, code));
    }
    let [(_, a_code), (b, b_code), (c, c_code), (d, _)] = &users[..] else {
        unreachable!()
    };
    assert_eq!(set_referrer(b, a_code).await.0, 200);
    assert_eq!(set_referrer(c, b_code).await.0, 200);
    // D joining C walks C, B, A: three users, one more than allowed here.
    let shallow = endpoint::<SetReferrer>(&[("REFERRAL_MAX_DEPTH", "2")]).await;
    let body = json!({ "invite_code": c_code }).to_string();
    let refused = call(&shallow, request(Method::POST, &body, Some(d))).await;
    assert_error(refused.clone(), 409, "referral_chain_too_deep");
    assert!(
        refused.1["message"]
            .as_str()
            .unwrap()
            .contains("longer than 2")
    );
    // With the default limit the same join works.
    assert_eq!(set_referrer(d, c_code).await.0, 200);
}

#[tokio::test]
async fn a_token_for_a_user_that_does_not_exist_gets_404() {
    let ghost = access_token(UserId::generate());
    assert_eq!(profile(&ghost).await.1["code"], "user_not_found");
    let (_, a, _) = sign_up().await;
    let code = invite_code(&profile(&a).await.1);
    assert_eq!(
        set_referrer(&ghost, &code).await.1["code"],
        "user_not_found"
    );
}

// ------------------------------------------------------------------ failures

#[tokio::test]
async fn storage_failures_are_503_without_details() {
    let broken = [
        ("USERS_TABLE", "no-such-users"),
        ("OTPS_TABLE", "no-such-otps"),
    ];
    let (_, access, _) = sign_up().await;
    let responses = [
        call(
            &endpoint::<GetCode>(&broken).await,
            post(json!({ "phone": unique_phone() })),
        )
        .await,
        call(
            &endpoint::<SendCode>(&broken).await,
            post(json!({ "phone": unique_phone(), "password": "1234" })),
        )
        .await,
        call(
            &endpoint::<Retrieve>(&broken).await,
            request(Method::GET, "", Some(&access)),
        )
        .await,
        call(
            &endpoint::<SetReferrer>(&broken).await,
            request(Method::POST, "{\"invite_code\": \"abcdef\"}", Some(&access)),
        )
        .await,
    ];
    for (status, body) in responses {
        assert_eq!(status, 503, "{body}");
        assert_eq!(
            body,
            json!({ "code": "service_unavailable", "message": "a required service is unavailable; try again shortly", "detail": "a required service is unavailable; try again shortly" })
        );
    }
}

/// Three invite codes, each handed out twice in a row, then again from the
/// start: every second draw collides with a code already claimed, so only the
/// conditional write on the `INVITE#<code>` claim keeps codes unique.
fn pooled_invite_code() -> InviteCode {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicUsize, Ordering};
    static POOL: OnceLock<[InviteCode; 3]> = OnceLock::new();
    static DRAWS: AtomicUsize = AtomicUsize::new(0);
    let pool = POOL.get_or_init(|| [(); 3].map(|_| InviteCode::generate()));
    pool[(DRAWS.fetch_add(1, Ordering::SeqCst) / 2) % 3].clone()
}

#[tokio::test]
async fn colliding_invite_codes_are_redrawn_and_never_shared() {
    let send_code = SendCode {
        invite_codes: pooled_invite_code,
        ..endpoint::<SendCode>(&[]).await
    };
    let mut codes = Vec::new();
    for _ in 0..3 {
        let phone = unique_phone();
        let (status, body) = get_code(&phone).await;
        assert_eq!(status, 200, "{body}");
        let code = body["sms_code"].as_str().unwrap();
        let (status, tokens) = call(
            &send_code,
            post(json!({ "phone": phone, "password": code })),
        )
        .await;
        assert_eq!(status, 200, "{tokens}");
        codes.push(invite_code(
            &profile(tokens["access"].as_str().unwrap()).await.1,
        ));
    }
    codes.sort();
    codes.dedup();
    assert_eq!(
        codes.len(),
        3,
        "three users, three distinct codes: {codes:?}"
    );
    // A fourth user finds only taken codes: refused after a bounded number of draws.
    let phone = unique_phone();
    let code = get_code(&phone).await.1["sms_code"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        call(
            &send_code,
            post(json!({ "phone": phone, "password": code })),
        )
        .await,
        503,
        "service_unavailable",
    );
}

/// A 503 while creating the user leaves nothing half-done: the code was not
/// used, so the same code signs in once storage works again.
#[tokio::test]
async fn a_failed_user_write_keeps_the_code_for_a_retry() {
    let phone = unique_phone();
    let (status, body) = get_code(&phone).await;
    assert_eq!(status, 200, "{body}");
    let code = body["sms_code"].as_str().unwrap();
    assert_error(
        send_code_while_users_are_down(&phone, code).await,
        503,
        "service_unavailable",
    );
    let (status, tokens) = send_code(&phone, code).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(
        send_code(&phone, code).await.1["code"],
        "code_invalid",
        "used now"
    );
}

#[tokio::test]
async fn unreachable_storage_is_503_too() {
    // A closed port: every DynamoDB call fails to connect.
    let unreachable = [("OTPS_TABLE", "t")];
    let config = config(&unreachable);
    let aws = phone_auth::endpoints::aws_config(&phone_auth::config::Config::from_env())
        .expect("AWS_REGION is set")
        .into_builder()
        .build();
    let dynamo = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&aws)
            .endpoint_url("http://127.0.0.1:9")
            .build(),
    );
    let get_code = GetCode {
        otps: OtpTable::new(dynamo.clone(), "t".into()),
        counters: OtpTable::new(dynamo, "t".into()),
        sms: AnySms::from_config(&config, &aws).unwrap(),
        ..endpoint::<GetCode>(&unreachable).await
    };
    assert_error(
        call(&get_code, post(json!({ "phone": unique_phone() }))).await,
        503,
        "service_unavailable",
    );
}

// ------------------------------------------------------------------ abuse and SMS spend

/// get_code over the real codes table (counters under this test's own keys)
/// with a recording SMS sender, and configuration `overrides`.
async fn guarded_get_code(
    overrides: &[(&str, &str)],
) -> (
    GetCode<OtpTable, MemorySms, Namespaced<OtpTable>>,
    MemorySms,
) {
    let sms = MemorySms::default();
    let otps = OtpTable::new(dynamo().await, env("OTPS_TABLE"));
    let endpoint = get_code_with(overrides, otps.clone(), sms.clone(), Namespaced::new(otps));
    (endpoint, sms)
}

/// Status, `code`, and Retry-After of an answer.
fn refusal(response: Response<Body>) -> (u16, String, Option<u64>) {
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    (
        status,
        body["code"].as_str().unwrap_or("").to_string(),
        retry_after,
    )
}

fn get_code_from(ip: &str, phone: &str) -> Request {
    from_ip(post(json!({ "phone": phone })), ip)
}

/// Units taken from a budget's counter, as stored; None if never touched.
async fn taken(key: &str) -> Option<u64> {
    let item = dynamo()
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
        .item?;
    Some(item["taken"].as_n().unwrap().parse().unwrap())
}

fn until_next(seconds: u64) -> u64 {
    seconds - now() % seconds
}

#[tokio::test]
async fn too_many_codes_from_one_address_are_refused_until_the_hour_ends() {
    let (get_code, sms) = guarded_get_code(&[("OTP_MAX_SENDS_PER_IP", "2")]).await;
    let ip = format!("203.0.113.{}", rand::random::<u8>());
    for _ in 0..2 {
        let (status, body) = answer(get_code.get_code(get_code_from(&ip, &unique_phone())).await);
        assert_eq!(status, 200, "{body}");
    }
    let phone = unique_phone();
    let refused = refusal(
        get_code
            .get_code(get_code_from(&ip, &phone))
            .await
            .unwrap_or_else(ApiError::into_response),
    );
    let hour_left = until_next(3600);
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (429, "too_many_requests_from_ip")
    );
    let retry = refused.2.unwrap();
    assert!(
        (hour_left.saturating_sub(5)..=hour_left + 5).contains(&retry),
        "{retry}"
    );
    assert_eq!(sms.sent().len(), 2, "no SMS for the refused code");
    // The refused code was withdrawn: from another address the phone gets one at once.
    let (status, body) = answer(
        get_code
            .get_code(get_code_from("198.51.100.1", &phone))
            .await,
    );
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn an_ipv6_client_is_counted_by_its_64() {
    let (get_code, _) = guarded_get_code(&[("OTP_MAX_SENDS_PER_IP", "1")]).await;
    let net = format!(
        "2001:db8:{:x}:{:x}",
        rand::random::<u16>(),
        rand::random::<u16>()
    );
    let first = format!("{net}::1");
    let same_64 = format!("{net}:ffff:1:2:3");
    assert_eq!(
        answer(
            get_code
                .get_code(get_code_from(&first, &unique_phone()))
                .await
        )
        .0,
        200
    );
    assert_error(
        answer(
            get_code
                .get_code(get_code_from(&same_64, &unique_phone()))
                .await,
        ),
        429,
        "too_many_requests_from_ip",
    );
    let other_64 = format!("2001:db8:{:x}:1::1", rand::random::<u16>());
    assert_eq!(
        answer(
            get_code
                .get_code(get_code_from(&other_64, &unique_phone()))
                .await
        )
        .0,
        200
    );
}

/// OTP_MAX_CHECKS_PER_IP=3: one address checks three codes an hour, whatever
/// the phones; the fourth check is refused before it touches the phone's
/// code (no attempt counted), even with the right code, which then still
/// signs in from elsewhere.
#[tokio::test]
async fn one_address_checks_at_most_its_hourly_codes_across_phones() {
    let send_code = endpoint::<SendCode>(&[("OTP_MAX_CHECKS_PER_IP", "3")]).await;
    let ip = format!("198.18.{}.{}", rand::random::<u8>(), rand::random::<u8>());
    let check = |phone: &str, code: &str, ip: &str| {
        from_ip(post(json!({ "phone": phone, "password": code })), ip)
    };
    let mut codes = Vec::new();
    for _ in 0..4 {
        let phone = unique_phone();
        let (status, body) = get_code(&phone).await;
        assert_eq!(status, 200, "{body}");
        codes.push((phone, body["sms_code"].as_str().unwrap().to_string()));
    }
    for (phone, code) in &codes[..3] {
        let wrong = if code == "0000" { "1111" } else { "0000" };
        let (status, body) = call(&send_code, check(phone, wrong, &ip)).await;
        assert_eq!((status, body["code"].as_str()), (400, Some("code_invalid")));
    }
    let (phone, code) = &codes[3];
    let attempts = async || {
        raw_otp_item(&parse_phone(phone))
            .await
            .get("attempts")
            .cloned()
    };
    let attempts_before = attempts().await;
    let refused = refusal(serve(&send_code, check(phone, code, &ip)).await);
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (429, "too_many_checks_from_ip")
    );
    let hour_left = until_next(3600);
    let retry = refused.2.unwrap();
    assert!(
        (hour_left.saturating_sub(5)..=hour_left + 5).contains(&retry),
        "{retry}"
    );
    assert_eq!(
        attempts().await,
        attempts_before,
        "the refused check counted no attempt"
    );
    let (status, tokens) = call(&send_code, check(phone, code, "198.51.100.7")).await;
    assert_eq!(status, 200, "{tokens}");
}

/// A request without a source address (a direct invoke, never API Gateway)
/// is counted in one shared budget.
#[tokio::test]
async fn requests_without_a_source_address_share_one_budget() {
    let (get_code, _) = guarded_get_code(&[("OTP_MAX_SENDS_PER_IP", "1")]).await;
    let direct = |phone: String| {
        request_without_ip(Method::POST, &json!({ "phone": phone }).to_string(), None)
    };
    assert_eq!(
        answer(get_code.get_code(direct(unique_phone())).await).0,
        200
    );
    assert_error(
        answer(get_code.get_code(direct(unique_phone())).await),
        429,
        "too_many_requests_from_ip",
    );
}

/// A random Kazakh mobile number (+7 701 …).
fn kazakh_phone() -> String {
    format!("+7701{:07}", rand::random::<u32>() % 10_000_000)
}

#[tokio::test]
async fn a_countrys_daily_budget_refuses_that_country_only() {
    let (get_code, sms) = guarded_get_code(&[("SMS_DAILY_BUDGET_BY_REGION", "KZ=1,RU=100")]).await;
    assert_eq!(
        answer(
            get_code
                .get_code(post(json!({ "phone": kazakh_phone() })))
                .await
        )
        .0,
        200
    );
    let refused = refusal(
        get_code
            .get_code(post(json!({ "phone": kazakh_phone() })))
            .await
            .unwrap_or_else(ApiError::into_response),
    );
    let day_left = until_next(86_400);
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (429, "region_budget_exhausted")
    );
    let retry = refused.2.unwrap();
    assert!(
        (day_left.saturating_sub(5)..=day_left + 5).contains(&retry),
        "{retry}"
    );
    assert_eq!(
        answer(
            get_code
                .get_code(post(json!({ "phone": unique_phone() })))
                .await
        )
        .0,
        200
    );
    assert_eq!(sms.sent().len(), 2);
}

#[tokio::test]
async fn the_services_daily_budget_stops_every_sms_with_503() {
    let (get_code, sms) = guarded_get_code(&[("SMS_DAILY_BUDGET", "1")]).await;
    assert_eq!(
        answer(
            get_code
                .get_code(post(json!({ "phone": unique_phone() })))
                .await
        )
        .0,
        200
    );
    let refused = refusal(
        get_code
            .get_code(post(json!({ "phone": unique_phone() })))
            .await
            .unwrap_or_else(ApiError::into_response),
    );
    let day_left = until_next(86_400);
    assert_eq!(
        (refused.0, refused.1.as_str()),
        (503, "sms_budget_exhausted")
    );
    assert!((day_left.saturating_sub(5)..=day_left + 5).contains(&refused.2.unwrap()));
    assert_eq!(sms.sent().len(), 1);
    // 0 is the kill switch: not even the first SMS.
    let (stopped, sms) = guarded_get_code(&[("SMS_DAILY_BUDGET", "0")]).await;
    assert_error(
        answer(
            stopped
                .get_code(post(json!({ "phone": unique_phone() })))
                .await,
        ),
        503,
        "sms_budget_exhausted",
    );
    assert!(sms.sent().is_empty());
}

/// Wrong codes lock the phone: both endpoints answer 429 phone_locked with
/// Retry-After (the end of the UTC day), and no SMS goes to it.
#[tokio::test]
async fn failed_checks_lock_sign_in_for_the_phone() {
    let lockout = [("OTP_MAX_FAILED_CHECKS", "2")];
    let (get_code, sms) = guarded_get_code(&lockout).await;
    let send_code = endpoint::<SendCode>(&lockout).await;
    let phone = unique_phone();
    let code = answer(get_code.get_code(post(json!({ "phone": phone }))).await).1["sms_code"]
        .as_str()
        .map(str::to_string);
    // MemorySms keeps the code in the text, the response has none.
    assert_eq!(code, None);
    let code: String = sms.sent()[0]
        .1
        .chars()
        .filter(char::is_ascii_digit)
        .take(4)
        .collect();
    let wrong = if code == "0000" { "1111" } else { "0000" };
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
    let day_left = until_next(86_400);
    let check = |response: Response<Body>| {
        let (status, code, retry) = refusal(response);
        assert_eq!((status, code.as_str()), (429, "phone_locked"));
        let retry = retry.unwrap();
        assert!(
            (day_left.saturating_sub(5)..=day_left + 5).contains(&retry),
            "{retry}"
        );
    };
    // The right code is refused too: it would be a guess compared while locked.
    check(
        serve(
            &send_code,
            post(json!({ "phone": phone, "password": code })),
        )
        .await,
    );
    check(
        get_code
            .get_code(post(json!({ "phone": phone })))
            .await
            .unwrap_or_else(ApiError::into_response),
    );
    assert_eq!(sms.sent().len(), 1, "no SMS to a locked phone");
    // Another phone is not affected.
    assert_eq!(
        answer(
            get_code
                .get_code(post(json!({ "phone": unique_phone() })))
                .await
        )
        .0,
        200
    );
}

/// A test number: its fixed code, no SMS, no budget (the service's is 0
/// here, and still it gets its code), and a normal sign-in with it.
#[tokio::test]
async fn a_test_number_signs_in_with_its_fixed_code_and_no_sms() {
    let phone = unique_phone();
    let numbers = format!("{phone}:4321");
    let config = [
        ("TEST_PHONE_NUMBERS", numbers.as_str()),
        ("TEST_PHONE_NUMBERS_EXPIRE", "2099-12-31"),
        ("SMS_DAILY_BUDGET", "0"),
        ("OTP_MAX_SENDS_PER_IP", "1"),
    ];
    let (get_code, sms) = guarded_get_code(&config).await;
    let ip = "192.0.2.77";
    let (status, body) = answer(get_code.get_code(get_code_from(ip, &phone[1..])).await);
    assert_eq!(
        (status, body["phone"].as_str()),
        (200, Some(phone.as_str())),
        "{body}"
    );
    assert!(sms.sent().is_empty());
    let counted = get_code.counters.key(
        &get_code
            .limits
            .counters(Source::from_text(Some(ip)), None, now())
            .source,
    );
    assert_eq!(
        taken(&counted.key).await,
        None,
        "its address's budget untouched"
    );
    let (status, tokens) = call(
        &endpoint::<SendCode>(&[]).await,
        post(json!({ "phone": phone, "password": "4321" })),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    // The per-phone rules still hold: a code was just sent... and used, so
    // the next one goes at once; a pending one holds the next for the cooldown.
    assert_eq!(
        answer(get_code.get_code(post(json!({ "phone": phone }))).await).0,
        200
    );
    assert_error(
        answer(get_code.get_code(post(json!({ "phone": phone }))).await),
        429,
        "resend_too_soon",
    );
}

/// After its last day a test number is an ordinary one: an SMS with a random
/// code, counted in the budgets.
#[tokio::test]
async fn an_expired_test_number_is_an_ordinary_phone() {
    let phone = unique_phone();
    let numbers = format!("{phone}:4321");
    let (get_code, sms) = guarded_get_code(&[
        ("TEST_PHONE_NUMBERS", numbers.as_str()),
        ("TEST_PHONE_NUMBERS_EXPIRE", "2020-01-01"),
    ])
    .await;
    assert_eq!(
        answer(get_code.get_code(post(json!({ "phone": phone }))).await).0,
        200
    );
    assert_eq!(sms.sent().len(), 1);
    let service = get_code.counters.key(
        &get_code
            .limits
            .counters(Source::Unknown, None, now())
            .service,
    );
    assert_eq!(
        taken(&service.key).await,
        Some(1),
        "the service's budget counted it"
    );
}

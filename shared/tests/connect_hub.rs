//! seed-004's routes (`/api/register/`, `/api/login/`, `/api/clients/profile/`)
//! as its clients use them, against DynamoDB Local: every row of the
//! contract, every refusal, the same users and rules as `/users/...`, and the
//! switch that hides whether a phone has an account. The last tests run over
//! in-memory ports to show what a refused step 1 does not do (no SMS, no code).

mod support;

use std::collections::HashSet;

use lambda_http::http::{Method, header};
use phone_auth::adapters::dynamo::UserTable;
use phone_auth::endpoints::{
    ClientProfile, GetCode, Login, Register, Retrieve, SendCode, TwoStep, UpdateClientProfile,
    serve,
};
use phone_auth::limits::CheckLimit;
use phone_auth::store::UserStore;
use phone_auth::token::TokenKind;
use phone_auth::user::UserId;
use serde_json::{Value, json};
use support::memory::{MemoryCounters, MemoryOtps, MemorySessions, MemorySms, MemoryUsers};
use support::scripted::{Script, Scripted, Step};
use support::*;

const HIDE_ACCOUNTS: [(&str, &str); 1] = [("PREVENT_USER_EXISTENCE_ERRORS", "true")];

async fn register(body: Value) -> (u16, Value) {
    call(&endpoint::<Register>(&[]).await, post(body)).await
}

async fn login(body: Value) -> (u16, Value) {
    call(&endpoint::<Login>(&[]).await, post(body)).await
}

async fn profile(access: &str) -> (u16, Value) {
    call(
        &endpoint::<ClientProfile>(&[]).await,
        request(Method::GET, "", Some(access)),
    )
    .await
}

async fn patch_profile(access: &str, body: Value) -> (u16, Value) {
    call(
        &endpoint::<UpdateClientProfile>(&[]).await,
        request(Method::PATCH, &body.to_string(), Some(access)),
    )
    .await
}

/// Both steps of register for a new phone: (phone, step 2's answer).
async fn registered() -> (String, Value) {
    let phone = unique_phone();
    let (status, sent) = register(json!({ "phone": phone })).await;
    assert_eq!(status, 200, "{sent}");
    let code = sent["sms_code"].as_str().expect("dev mode shows the code");
    let (status, user) = register(json!({ "phone": phone, "sms_code": code })).await;
    assert_eq!(status, 201, "{user}");
    (phone, user)
}

fn keys(body: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

fn access(body: &Value) -> String {
    body["access_token"].as_str().unwrap().to_string()
}

/// The user the access token names.
fn subject(access: &str) -> u64 {
    let verified = config(&[])
        .token_verifier()
        .unwrap()
        .verify(access, TokenKind::Access)
        .expect("a valid access token");
    verified.user.get()
}

#[tokio::test]
async fn register_sends_a_code_then_creates_the_user_with_201() {
    let phone = unique_phone();
    let (status, sent) = register(json!({ "phone": phone })).await;
    assert_eq!(status, 200, "{sent}");
    // Step 1 answers like get_code: the phone, and the code in dev mode only.
    assert_eq!(sent["phone"], phone);
    assert!(sent["sms_code"].as_str().is_some_and(|c| c.len() == 4));
    let code = sent["sms_code"].as_str().unwrap();

    let (status, user) = register(json!({ "phone": phone, "sms_code": code })).await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(
        keys(&user),
        [
            "access_token",
            "id",
            "invitation_code",
            "phone",
            "refresh_token",
            "user_id"
        ]
    );
    let id = user["id"].as_u64().expect("id is a JSON number");
    assert_eq!(user["user_id"], user["id"]);
    assert!(UserId::new(id).is_some());
    assert_eq!(user["phone"], phone);
    assert_eq!(user["invitation_code"].as_str().unwrap().len(), 6);
    assert_eq!(subject(&access(&user)), id);

    // The code is used up: the same step 2 again is refused.
    assert_error(
        register(json!({ "phone": phone, "sms_code": code })).await,
        400,
        "phone_already_registered",
    );

    let (status, me) = profile(&access(&user)).await;
    assert_eq!(
        (status, keys(&me)),
        (
            200,
            vec![
                "connections_invited_clients",
                "id",
                "invitation_code",
                "phone",
                "referrals_count",
                "someone_invitation_code"
            ]
        )
    );
    assert_eq!(
        me,
        json!({
            "id": id,
            "phone": phone,
            "invitation_code": user["invitation_code"],
            "someone_invitation_code": null,
            "connections_invited_clients": [],
            "referrals_count": 0,
        })
    );
}

#[tokio::test]
async fn login_answers_the_seeds_fields_for_the_same_user() {
    let (phone, user) = registered().await;
    let (status, sent) = login(json!({ "phone": phone })).await;
    assert_eq!(status, 200, "{sent}");
    assert_eq!(sent["phone"], phone);
    let code = sent["sms_code"].as_str().unwrap();
    let (status, logged_in) = login(json!({ "phone": phone, "sms_code": code })).await;
    assert_eq!(status, 200, "{logged_in}");
    assert_eq!(
        keys(&logged_in),
        ["access_token", "id", "phone", "refresh_token"]
    );
    assert_eq!(logged_in["id"], user["id"]);
    assert_eq!(logged_in["phone"], phone);
    assert_eq!(subject(&access(&logged_in)), user["id"].as_u64().unwrap());
}

#[tokio::test]
async fn register_refuses_a_phone_with_an_account_at_either_step_before_counting_its_code() {
    // An account made through the other family.
    let phone = unique_phone();
    let (_, sent) = call(
        &endpoint::<GetCode>(&[]).await,
        post(json!({ "phone": phone })),
    )
    .await;
    let (status, _) = call(
        &endpoint::<SendCode>(&[]).await,
        post(json!({ "phone": phone, "password": sent["sms_code"] })),
    )
    .await;
    assert_eq!(status, 200);

    let (status, body) = register(json!({ "phone": phone })).await;
    assert_eq!(
        body,
        json!({
            "code": "phone_already_registered",
            "message": "an account already uses this phone number; log in instead",
            "detail": "an account already uses this phone number; log in instead",
        })
    );
    assert_eq!(status, 400);

    // A code from login's step 1, sent to register's step 2: refused, and
    // neither used nor counted, so login takes it.
    let (_, sent) = login(json!({ "phone": phone })).await;
    let code = sent["sms_code"].as_str().unwrap();
    for _ in 0..5 {
        assert_error(
            register(json!({ "phone": phone, "sms_code": code })).await,
            400,
            "phone_already_registered",
        );
    }
    let (status, body) = login(json!({ "phone": phone, "sms_code": code })).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn login_refuses_a_phone_without_an_account_at_either_step() {
    let phone = unique_phone();
    let (status, body) = login(json!({ "phone": phone })).await;
    assert_eq!(
        (status, &body["code"], &body["detail"]),
        (
            400,
            &json!("user_not_found"),
            &json!("no account uses this phone number; register first")
        )
    );
    // A code from register's step 1 does not log an unknown phone in (nor
    // create it), and stays usable for register.
    let (_, sent) = register(json!({ "phone": phone })).await;
    let code = sent["sms_code"].as_str().unwrap();
    assert_error(
        login(json!({ "phone": phone, "sms_code": code })).await,
        400,
        "user_not_found",
    );
    let (status, body) = register(json!({ "phone": phone, "sms_code": code })).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn both_steps_follow_the_same_code_rules_as_get_code_and_send_code() {
    let (phone, _) = registered().await;
    let (status, _) = login(json!({ "phone": phone })).await;
    assert_eq!(status, 200);
    // The resend cooldown is get_code's, whichever route asks.
    assert_error(
        login(json!({ "phone": phone })).await,
        429,
        "resend_too_soon",
    );
    let (status, _) = call(
        &endpoint::<GetCode>(&[]).await,
        post(json!({ "phone": phone })),
    )
    .await;
    assert_eq!(status, 429);
    // Three wrong codes, then the code is spent (send_code's attempt limit).
    assert_error(
        login(json!({ "phone": phone, "sms_code": "12" })).await,
        400,
        "invalid_code_format",
    );
    for _ in 0..3 {
        let (status, body) = login(json!({ "phone": phone, "sms_code": "0000" })).await;
        // One in 10,000 runs the real code is 0000: then it signs in.
        assert!(status == 400 || status == 200, "{body}");
    }
    assert_error(
        login(json!({ "phone": phone, "sms_code": "0000" })).await,
        429,
        "too_many_attempts",
    );
    // Bad bodies are 400s, never 5xx.
    assert_error(
        login(json!({ "sms_code": "1234" })).await,
        400,
        "invalid_request",
    );
    assert_error(
        login(json!({ "phone": "not a phone" })).await,
        400,
        "invalid_phone",
    );
    assert_error(
        login(json!({ "phone": phone, "sms_code": 1234 })).await,
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn tokens_of_either_family_work_on_both_familys_protected_routes() {
    let (_, user) = registered().await;
    let (status, me) = call(
        &endpoint::<Retrieve>(&[]).await,
        request(Method::GET, "", Some(&access(&user))),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["id"], user["id"]);
    assert_eq!(me["invite_code"], user["invitation_code"]);

    let phone = unique_phone();
    let (_, sent) = call(
        &endpoint::<GetCode>(&[]).await,
        post(json!({ "phone": phone })),
    )
    .await;
    let (_, tokens) = call(
        &endpoint::<SendCode>(&[]).await,
        post(json!({ "phone": phone, "password": sent["sms_code"] })),
    )
    .await;
    let (status, me) = profile(tokens["access"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["phone"], phone);
}

#[tokio::test]
async fn patch_sets_the_referrer_once_and_answers_the_whole_profile() {
    let (referrer_phone, referrer) = registered().await;
    let (phone, user) = registered().await;
    let code = referrer["invitation_code"].clone();

    let (status, me) = patch_profile(&access(&user), json!({ "invitation_code": code })).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({
            "id": user["id"],
            "phone": phone,
            "invitation_code": user["invitation_code"],
            "someone_invitation_code": code,
            "connections_invited_clients": [],
            "referrals_count": 0,
        })
    );
    assert_eq!(profile(&access(&user)).await, (200, me));
    let (_, theirs) = profile(&access(&referrer)).await;
    assert_eq!(theirs["phone"], referrer_phone);
    assert_eq!(theirs["connections_invited_clients"], json!([phone]));

    // Once only, with the detail DRF clients read.
    let (status, body) = patch_profile(&access(&user), json!({ "invitation_code": code })).await;
    let message = format!(
        "You have already been referral of user with invite code {}",
        code.as_str().unwrap()
    );
    assert_eq!(
        (status, body),
        (
            409,
            json!({ "code": "already_referred", "message": message, "detail": message })
        )
    );
}

#[tokio::test]
async fn step_2_takes_send_codes_names_for_the_code_too() {
    let phone = unique_phone();
    let (status, sent) = register(json!({ "phone": phone })).await;
    assert_eq!(status, 200, "{sent}");
    let (status, user) = register(json!({ "phone": phone, "password": sent["sms_code"] })).await;
    assert_eq!(status, 201, "{user}");

    let (status, sent) = login(json!({ "phone": phone })).await;
    assert_eq!(status, 200, "{sent}");
    let (status, logged_in) = login(json!({ "phone": phone, "code": sent["sms_code"] })).await;
    assert_eq!(status, 200, "{logged_in}");
    assert_eq!(logged_in["id"], user["id"]);
}

#[tokio::test]
async fn patch_takes_the_seeds_other_field_name_too() {
    let (_, referrer) = registered().await;
    let (_, user) = registered().await;
    let (status, me) = patch_profile(
        &access(&user),
        json!({ "someone_invitation_code": referrer["invitation_code"] }),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["someone_invitation_code"], referrer["invitation_code"]);
}

#[tokio::test]
async fn every_patch_refusal_is_a_4xx_with_code_message_and_detail() {
    let (_, a) = registered().await;
    let (_, b) = registered().await;
    // b entered a's code: a entering b's would close a circle.
    let (status, _) = patch_profile(
        &access(&b),
        json!({ "invitation_code": a["invitation_code"] }),
    )
    .await;
    assert_eq!(status, 200);
    let cases = [
        (
            json!({ "invitation_code": a["invitation_code"] }),
            400,
            "own_invite_code",
        ),
        (
            json!({ "invitation_code": "Zz9Zz9" }),
            404,
            "invite_code_not_found",
        ),
        (
            json!({ "invitation_code": b["invitation_code"] }),
            409,
            "referral_cycle",
        ),
        (
            json!({ "invitation_code": "abc" }),
            400,
            "invalid_invite_code_format",
        ),
        (json!({}), 400, "invalid_request"),
        (json!({ "invitation_code": 123456 }), 400, "invalid_request"),
        (
            json!({ "invitation_code": "Zz9Zz9", "someone_invitation_code": "Zz9Zz9" }),
            400,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let answer = patch_profile(&access(&a), body.clone()).await;
        assert_eq!(answer.0, status, "{body}: {}", answer.1);
        assert_eq!(answer.1["code"], code, "{body}");
        assert!(answer.1["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert_eq!(answer.1["detail"], answer.1["message"], "{body}");
    }
    assert_error(
        call(
            &endpoint::<UpdateClientProfile>(&[]).await,
            request(Method::PATCH, "{}", None),
        )
        .await,
        401,
        "missing_token",
    );
    // Nothing was set by any refusal.
    assert_eq!(
        profile(&access(&a)).await.1["someone_invitation_code"],
        Value::Null
    );
}

#[tokio::test]
async fn a_wrong_method_names_both_methods_of_the_profile_path() {
    let (_, user) = registered().await;
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let response = serve(
            &endpoint::<ClientProfile>(&[]).await,
            request(method.clone(), "", Some(&access(&user))),
        )
        .await;
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()[header::ALLOW], "GET, PATCH");
    }
    let response = serve(
        &endpoint::<Register>(&[]).await,
        request(Method::GET, "", None),
    )
    .await;
    assert_eq!(
        (
            response.status().as_u16(),
            &response.headers()[header::ALLOW]
        ),
        (405, &"POST".parse().unwrap())
    );
}

/// With `PREVENT_USER_EXISTENCE_ERRORS=true` neither route tells whether a
/// phone has an account: both answer step 1 alike and sign in or sign up.
#[tokio::test]
async fn with_existence_errors_prevented_both_routes_sign_in_or_sign_up() {
    let register = endpoint::<Register>(&HIDE_ACCOUNTS).await;
    let login = endpoint::<Login>(&HIDE_ACCOUNTS).await;

    // Login creates an unknown phone's account...
    let phone = unique_phone();
    let (status, sent) = call(&login, post(json!({ "phone": phone }))).await;
    assert_eq!(
        (status, keys(&sent)),
        (200, vec!["phone", "sms_code", "sms_text"])
    );
    let (status, created) = call(
        &login,
        post(json!({ "phone": phone, "sms_code": sent["sms_code"] })),
    )
    .await;
    assert_eq!(status, 200, "{created}");

    // ...and register signs a known one in, with its own id and code.
    let (status, sent) = call(&register, post(json!({ "phone": phone }))).await;
    assert_eq!(
        (status, keys(&sent)),
        (200, vec!["phone", "sms_code", "sms_text"])
    );
    let (status, again) = call(
        &register,
        post(json!({ "phone": phone, "sms_code": sent["sms_code"] })),
    )
    .await;
    assert_eq!(status, 201, "{again}");
    assert_eq!(again["id"], created["id"]);
    let (_, me) = profile(&access(&again)).await;
    assert_eq!(again["invitation_code"], me["invitation_code"]);
}

/// 100 sign-ups at once: 100 users, 100 different ids, each the id its
/// token names. Ids are random and claimed by a conditional write in the
/// transaction that creates the user (user.rs): no counter, no read before
/// the write, so nothing to race on. DynamoDB Local on a busy 2-core machine
/// may answer some of 100 parallel transactions after the SDK's timeout:
/// those get a clean 503 and are retried (up to 3 times), as a client would, with the
/// same code (a 503 leaves no half-written user; one whose user was written
/// before the 503 finds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_parallel_registrations_get_a_hundred_different_ids() {
    let register = std::sync::Arc::new(endpoint::<Register>(&[]).await);
    // The codes first, one after another (the parallel part is the sign-up).
    let mut codes = Vec::new();
    for _ in 0..100 {
        let phone = unique_phone();
        let (status, sent) = call(&*register, post(json!({ "phone": phone }))).await;
        assert_eq!(status, 200, "{sent}");
        codes.push((phone, sent["sms_code"].clone()));
    }
    let step_2 = |register: std::sync::Arc<Register>, phone: String, code: Value| async move {
        call(
            &*register,
            post(json!({ "phone": phone, "sms_code": code })),
        )
        .await
    };
    let mut set = tokio::task::JoinSet::new();
    for (phone, code) in codes {
        let register = register.clone();
        set.spawn(async move {
            let first = step_2(register.clone(), phone.clone(), code.clone()).await;
            (phone, code, first)
        });
    }
    let mut retried = 0;
    let users = UserTable::new(dynamo().await, env("USERS_TABLE"));
    let mut ids = HashSet::new();
    for (phone, code, (status, mut user)) in set.join_all().await {
        let mut status = status;
        for _ in 0..3 {
            if status != 503 {
                break;
            }
            retried += 1;
            (status, user) = step_2(register.clone(), phone.clone(), code.clone()).await;
        }
        assert!(
            status == 201 || user["code"] == "phone_already_registered",
            "{status} {user}"
        );
        let stored = users
            .id_of(&parse_phone(&phone))
            .await
            .unwrap()
            .expect("a user");
        if let Some(answered) = user["id"].as_u64() {
            assert_eq!(answered, stored.get());
            assert_eq!(subject(&access(&user)), answered);
        }
        ids.insert(stored.get());
    }
    assert_eq!(ids.len(), 100, "{retried} retried after a 503");
    eprintln!("100 parallel registrations: 100 ids, {retried} retried after a 503");
}

// ------------------------------------------------------------------ in memory

type MemoryTwoStep = TwoStep<MemoryOtps, MemoryUsers, MemorySessions, MemorySms, MemoryCounters>;

fn two_step(users: &MemoryUsers, otps: &MemoryOtps, sms: &MemorySms, hide: bool) -> MemoryTwoStep {
    TwoStep {
        get_code: get_code_over(otps.clone(), sms.clone(), MemoryCounters::default()),
        send_code: send_code_with_sessions(otps.clone(), users.clone(), MemorySessions::default()),
        prevent_user_existence_errors: hide,
    }
}

#[tokio::test]
async fn a_refused_step_1_sends_no_sms_and_stores_no_code() {
    let (users, otps, sms) = (
        MemoryUsers::default(),
        MemoryOtps::default(),
        MemorySms::default(),
    );
    let known = users.seed("Known1");
    let known_phone = known.phone.to_string();
    let unknown_phone = unique_phone();

    let register = Register(two_step(&users, &otps, &sms, false));
    let login = Login(two_step(&users, &otps, &sms, false));
    assert_error(
        answer(
            register
                .register(post(json!({ "phone": known_phone })))
                .await,
        ),
        400,
        "phone_already_registered",
    );
    assert_error(
        answer(login.login(post(json!({ "phone": unknown_phone }))).await),
        400,
        "user_not_found",
    );
    assert!(sms.sent().is_empty(), "{:?}", sms.sent());
    assert!(otps.record(&known.phone).is_none());
    assert!(otps.record(&parse_phone(&unknown_phone)).is_none());

    // The same requests with existence errors prevented: each sends its SMS.
    let register = Register(two_step(&users, &otps, &sms, true));
    let login = Login(two_step(&users, &otps, &sms, true));
    let (status, _) = answer(
        register
            .register(post(json!({ "phone": known_phone })))
            .await,
    );
    assert_eq!(status, 200);
    let (status, _) = answer(login.login(post(json!({ "phone": unknown_phone }))).await);
    assert_eq!(status, 200);
    let to: Vec<String> = sms
        .sent()
        .iter()
        .map(|(phone, _)| phone.to_string())
        .collect();
    assert_eq!(to, [known_phone, unknown_phone]);
}

#[tokio::test]
async fn step_2_counts_against_the_addresss_hourly_checks() {
    let (users, otps, sms) = (
        MemoryUsers::default(),
        MemoryOtps::default(),
        MemorySms::default(),
    );
    let mut route = two_step(&users, &otps, &sms, false);
    route.send_code.check_limit = CheckLimit {
        max_per_source_per_hour: 1,
    };
    let register = Register(route);
    let from = |ip: &str, body: Value| register.register(from_ip(post(body), ip));
    let phones = [unique_phone(), unique_phone()];
    for phone in &phones {
        let (status, body) = answer(from("198.18.0.1", json!({ "phone": phone })).await);
        assert_eq!(status, 200, "{body}");
    }
    // A wrong code for each: its SMS's code with the first digit changed.
    let wrong: Vec<Value> = sms
        .sent()
        .iter()
        .map(|(_, text)| {
            let code: String = text.chars().filter(char::is_ascii_digit).take(4).collect();
            let first = (code.as_bytes()[0] - b'0' + 1) % 10;
            json!(format!("{first}{}", &code[1..]))
        })
        .collect();
    let check = |ip, at: usize| from(ip, json!({ "phone": phones[at], "sms_code": wrong[at] }));
    assert_error(answer(check("198.18.0.1", 0).await), 400, "code_invalid");
    assert_error(
        answer(check("198.18.0.1", 1).await),
        429,
        "too_many_checks_from_ip",
    );
    // Another address has its own count.
    assert_error(answer(check("198.18.0.2", 1).await), 400, "code_invalid");
}

/// The profile's referrals cannot be read: 503, and the referrer is not set,
/// so the same PATCH succeeds once storage works again (it used to be
/// written alongside the failed read, and the retry got 409).
#[tokio::test]
async fn a_patch_whose_referrals_read_fails_sets_nothing() {
    let (users, script): (MemoryUsers, Script) = Default::default();
    let referrer = users.seed("REFER1");
    let me = users.seed("MEME01");
    script.at("referrals_of", 1, Step::Fail);
    let endpoint = UpdateClientProfile {
        referring: set_referrer_over(Scripted::new(users.clone(), &script)),
        referrals_max: 10,
    };
    let token = access_token(me.id);
    let patch = || {
        let body = json!({ "invitation_code": "REFER1" }).to_string();
        request(Method::PATCH, &body, Some(&token))
    };

    assert_error(
        answer(endpoint.update(patch()).await),
        503,
        "service_unavailable",
    );
    assert_eq!(users.user(&me.phone).unwrap().referrer, None);
    assert_eq!(script.calls("set_referrer"), 0);

    let (status, profile) = answer(endpoint.update(patch()).await);
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["someone_invitation_code"], "REFER1");
    assert_eq!(
        users.user(&me.phone).unwrap().referrer.map(|r| r.id),
        Some(referrer.id)
    );
}

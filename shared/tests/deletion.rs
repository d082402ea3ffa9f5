//! Account deletion (`DELETE /users/me/`): what is erased, what is kept,
//! and that a failure at any step leaves a state the same request finishes.
//! Over DynamoDB Local through the endpoints, and over in-memory ports for
//! the failure paths.

mod support;

use lambda_http::http::Method;
use phone_auth::endpoints::{
    DeleteAccount, GetCode, ListSessions, Refresh, Retrieve, SendCode, SetReferrer,
};
use phone_auth::otp::{OtpPolicy, PendingCode};
use phone_auth::store::{OtpStore, SessionStore, UserStore};
use phone_auth::user::UserId;
use serde_json::{Value, json};
use support::memory::{MemoryOtps, MemorySessions, MemoryUsers};
use support::scripted::{Script, Scripted, Step};
use support::*;

/// A signed-in user, as a client holds them.
struct Client {
    phone: String,
    access: String,
    refresh: String,
}

async fn sign_in(phone: &str) -> Client {
    let (status, sent) = call(
        &endpoint::<GetCode>(&[]).await,
        post(json!({ "phone": phone })),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    let (status, tokens) = call(
        &endpoint::<SendCode>(&[]).await,
        post(json!({ "phone": phone, "password": sent["sms_code"] })),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    Client {
        phone: phone.to_string(),
        access: tokens["access"].as_str().unwrap().into(),
        refresh: tokens["refresh"].as_str().unwrap().into(),
    }
}

async fn profile(client: &Client) -> (u16, Value) {
    call(
        &endpoint::<Retrieve>(&[]).await,
        request(Method::GET, "", Some(&client.access)),
    )
    .await
}

async fn enter_code(client: &Client, code: &Value) -> (u16, Value) {
    let body = json!({ "invite_code": code }).to_string();
    call(
        &endpoint::<SetReferrer>(&[]).await,
        request(Method::POST, &body, Some(&client.access)),
    )
    .await
}

async fn delete(client: &Client) -> (u16, Value) {
    call(
        &endpoint::<DeleteAccount>(&[]).await,
        request(Method::DELETE, "", Some(&client.access)),
    )
    .await
}

/// The whole story over DynamoDB Local: the referral link survives as a
/// tombstone, the code is retired, the phone signs up anew as somebody else.
#[tokio::test]
async fn a_deleted_account_is_erased_its_code_retired_and_its_phone_free() {
    let gone = sign_in(&unique_phone()).await;
    let referred = sign_in(&unique_phone()).await;
    let gone_profile = profile(&gone).await.1;
    let gone_code = gone_profile["invite_code"].clone();
    assert_eq!(enter_code(&referred, &gone_code).await.0, 200);
    // A second session, and a code sent to the phone, not used yet.
    let second = sign_in(&gone.phone).await;
    let (status, sent) = call(
        &endpoint::<GetCode>(&[]).await,
        post(json!({ "phone": gone.phone })),
    )
    .await;
    assert_eq!(status, 200, "{sent}");

    assert_eq!(delete(&gone).await, (204, Value::Null));

    // Every session is gone: refresh tokens name nothing, the list is empty.
    for client in [&gone, &second] {
        assert_error(
            call(
                &endpoint::<Refresh>(&[]).await,
                post(json!({ "refresh": client.refresh })),
            )
            .await,
            401,
            "refresh_token_invalid",
        );
    }
    let (status, list) = call(
        &endpoint::<ListSessions>(&[]).await,
        request(Method::GET, "", Some(&gone.access)),
    )
    .await;
    assert_eq!((status, list), (200, json!({ "sessions": [] })));
    // The pending code is erased: it signs nobody in.
    let (status, body) = call(
        &endpoint::<SendCode>(&[]).await,
        post(json!({ "phone": gone.phone, "password": sent["sms_code"] })),
    )
    .await;
    assert_eq!((status, body["code"].clone()), (400, json!("code_invalid")));
    // The access token, still unexpired, finds nobody.
    assert_error(profile(&gone).await, 404, "user_not_found");
    // A retry answers the same.
    assert_eq!(delete(&gone).await, (204, Value::Null));

    // The referral keeps its link to the tombstone: the code it entered,
    // no phone.
    let (status, theirs) = profile(&referred).await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(theirs["invited_by_phone"], Value::Null);
    assert_eq!(theirs["invite_code_referer"], gone_code);
    // The code is retired: unknown to anyone entering it.
    let newcomer = sign_in(&unique_phone()).await;
    assert_error(
        enter_code(&newcomer, &gone_code).await,
        404,
        "invite_code_not_found",
    );

    // The phone signs up again, as a new user with a new code and no referrer.
    let again = sign_in(&gone.phone).await;
    let (status, fresh) = profile(&again).await;
    assert_eq!(status, 200, "{fresh}");
    assert_ne!(fresh["id"], gone_profile["id"]);
    assert_ne!(fresh["invite_code"], gone_code);
    assert_eq!(fresh["invite_code_referer"], Value::Null);
    assert_eq!(fresh["referrals"], json!([]));
    // The old token still names the old user only.
    assert_error(profile(&gone).await, 404, "user_not_found");
}

/// The no-circle rule holds through a tombstone: A's referrer is C, B's is
/// A; A is deleted; C entering B's code would close C → B → (A) → C.
#[tokio::test]
async fn a_circle_through_a_deleted_user_is_still_refused() {
    let (a, b, c) = (
        sign_in(&unique_phone()).await,
        sign_in(&unique_phone()).await,
        sign_in(&unique_phone()).await,
    );
    let code = |client| async move { profile(client).await.1["invite_code"].clone() };
    assert_eq!(enter_code(&a, &code(&c).await).await.0, 200);
    assert_eq!(enter_code(&b, &code(&a).await).await.0, 200);
    let b_code = code(&b).await;
    assert_eq!(delete(&a).await.0, 204);
    assert_error(enter_code(&c, &b_code).await, 409, "referral_cycle");
}

#[tokio::test]
async fn deleting_needs_a_genuine_access_token() {
    let client = sign_in(&unique_phone()).await;
    let endpoint = endpoint::<DeleteAccount>(&[]).await;
    assert_error(
        call(&endpoint, request(Method::DELETE, "", None)).await,
        401,
        "missing_token",
    );
    assert_error(
        call(
            &endpoint,
            request(Method::DELETE, "", Some(&client.refresh)),
        )
        .await,
        401,
        "invalid_token",
    );
    assert_error(
        call(&endpoint, request(Method::POST, "", Some(&client.access))).await,
        405,
        "method_not_allowed",
    );
    // None of these deleted anything.
    assert_eq!(profile(&client).await.0, 200);
    // Nor does deleting somebody who never existed (204: nothing to do).
    let nobody = access_token(UserId::generate());
    assert_eq!(
        call(&endpoint, request(Method::DELETE, "", Some(&nobody))).await,
        (204, Value::Null)
    );
}

// ------------------------------------------------------------------ failures, over in-memory ports

/// A user with a pending code and two sessions, in memory.
async fn world() -> (
    MemoryUsers,
    MemorySessions,
    MemoryOtps,
    phone_auth::store::User,
) {
    let (users, sessions, otps): (MemoryUsers, MemorySessions, MemoryOtps) = Default::default();
    let user = users.seed(&phone_auth::invite::InviteCode::generate().to_string());
    let policy = OtpPolicy::default();
    let pending = PendingCode::new(user.phone.clone(), b"hash".to_vec(), now(), &policy);
    assert_eq!(otps.issue(&pending, &policy, now()).await.unwrap(), None);
    for _ in 0..2 {
        let session = phone_auth::session::SessionPolicy::default().start(
            user.id,
            phone_auth::session::ClientInfo::default(),
            now(),
        );
        assert!(sessions.create(&session).await.unwrap());
    }
    (users, sessions, otps, user)
}

/// Whichever storage request fails, the answer is 503 and the same request
/// again (same access token) finishes the deletion; nothing is half-done in
/// a way that loses the user's ability to retry.
#[tokio::test]
async fn a_failure_at_any_step_is_a_503_and_a_retry_finishes_it() {
    for failing in ["get", "erase_code", "session_ids_of", "erase", "delete"] {
        let (users, sessions, otps, user) = world().await;
        let script = Script::default();
        script.at(failing, 1, Step::Fail);
        let endpoint = delete_account_over(
            Scripted::new(users.clone(), &script),
            Scripted::new(sessions.clone(), &script),
            Scripted::new(otps.clone(), &script),
        );
        let access = access_token(user.id);
        let call = || endpoint.delete_account(request(Method::DELETE, "", Some(&access)));
        assert_error(answer(call().await), 503, "service_unavailable");
        assert!(
            users.user(&user.phone).is_some(),
            "{failing}: the user stays until the last write"
        );
        assert_eq!(answer(call().await).0, 204, "{failing}");
        assert_eq!(users.user(&user.phone), None, "{failing}");
        assert_eq!(users.id_of(&user.phone).await.unwrap(), None, "{failing}");
        assert!(sessions.all().is_empty(), "{failing}");
        assert_eq!(otps.record(&user.phone).unwrap().pending, None, "{failing}");
        assert_eq!(
            users.owner_of(&user.invite_code).await.unwrap(),
            None,
            "{failing}"
        );
    }
}

/// Only the caller's own account: another user's sessions, code and
/// profile are untouched.
#[tokio::test]
async fn deleting_touches_nobody_else() {
    let (users, sessions, otps, user) = world().await;
    let other = users.seed(&phone_auth::invite::InviteCode::generate().to_string());
    let theirs = phone_auth::session::SessionPolicy::default().start(
        other.id,
        phone_auth::session::ClientInfo::default(),
        now(),
    );
    sessions.create(&theirs).await.unwrap();
    let policy = OtpPolicy::default();
    let pending = PendingCode::new(other.phone.clone(), b"theirs".to_vec(), now(), &policy);
    otps.issue(&pending, &policy, now()).await.unwrap();

    let endpoint = delete_account_over(users.clone(), sessions.clone(), otps.clone());
    let access = access_token(user.id);
    let response = endpoint
        .delete_account(request(Method::DELETE, "", Some(&access)))
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(users.user(&other.phone), Some(other.clone()));
    assert_eq!(sessions.all(), vec![theirs]);
    assert!(otps.record(&other.phone).unwrap().pending.is_some());
}

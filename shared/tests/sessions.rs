//! Sessions: the DynamoDB adapter against DynamoDB Local (rotation, reuse,
//! grace, expiry, revocation, listing; times are explicit `now` values,
//! nothing sleeps), the session endpoints over it, and over in-memory and
//! scripted ports for the paths real storage cannot be made to take
//! (failures half-way, requests meeting at one write, a store that must not
//! be asked at all).

mod support;

use std::sync::Arc;

use lambda_http::http::Method;
use phone_auth::adapters::dynamo::SessionTable;
use phone_auth::session::{
    ClientInfo, FailedRotation, RefreshToken, Session, SessionId, SessionPolicy,
    judge_failed_rotation,
};
use phone_auth::store::{OtpStore, Revocation, Rotation, SessionStore, StoreError};
use phone_auth::token::TokenKind;
use phone_auth::user::UserId;
use serde_json::{Value, json};
use support::memory::{MemoryOtps, MemorySessions, MemoryUsers};
use support::scripted::{Script, Scripted, Step};
use support::*;

async fn table() -> SessionTable {
    SessionTable::new(dynamo().await, env("SESSIONS_TABLE"))
}

fn user() -> UserId {
    UserId::generate()
}

fn policy() -> SessionPolicy {
    SessionPolicy::default()
}

/// A new session of `user` started at `at`, stored.
async fn started<S: SessionStore>(store: &S, user: &UserId, at: u64) -> Session {
    let session = policy().start(
        *user,
        ClientInfo::new(Some("test-agent/1.0"), Some("198.51.100.23")),
        at,
    );
    assert!(store.create(&session).await.unwrap());
    session
}

fn token(session: &Session, generation: u64) -> RefreshToken {
    RefreshToken {
        sid: session.sid.clone(),
        generation,
    }
}

async fn rotate<S: SessionStore>(
    store: &S,
    session: &Session,
    generation: u64,
    now: u64,
) -> Rotation {
    store
        .rotate(
            &token(session, generation),
            now + policy().idle_seconds,
            now,
        )
        .await
        .unwrap()
}

fn rotated(rotation: Rotation) -> Session {
    match rotation {
        Rotation::Rotated(session) => session,
        other => panic!("not rotated: {other:?}"),
    }
}

fn refused(rotation: Rotation) -> Option<Session> {
    match rotation {
        Rotation::Refused(found) => found,
        other => panic!("not refused: {other:?}"),
    }
}

/// The stored session (its generation and revocation), read back by listing its user's.
async fn stored(store: &SessionTable, session: &Session) -> Session {
    store
        .sessions_of(&session.user)
        .await
        .unwrap()
        .into_iter()
        .find(|s| s.sid == session.sid)
        .expect("the session is stored")
}

// ------------------------------------------------------------------ storage

#[tokio::test]
async fn a_rotation_moves_the_generation_and_the_idle_expiry() {
    let store = table().await;
    let t = now();
    let session = started(&store, &user(), t).await;
    assert_eq!(stored(&store, &session).await, session);

    let next = rotated(rotate(&store, &session, 1, t + 5).await);
    assert_eq!(
        (next.generation, next.rotated_at, next.last_used_at),
        (2, t + 5, t + 5)
    );
    assert_eq!(next.idle_expires_at, t + 5 + policy().idle_seconds);
    assert_eq!((next.created_at, next.expires_at), (t, session.expires_at));
    assert_eq!(stored(&store, &session).await, next);
    // The same generation again is refused: the write found generation 2.
    let found = refused(rotate(&store, &session, 1, t + 6).await).unwrap();
    assert_eq!(found.generation, 2);
}

#[tokio::test]
async fn the_previous_token_gets_grace_for_ten_seconds_then_counts_as_reuse() {
    let store = table().await;
    let t = now();
    let session = started(&store, &user(), t).await;
    rotated(rotate(&store, &session, 1, t + 100).await);
    let presented = token(&session, 1);
    // Exactly at the end of the grace period, and one second after it.
    let found = refused(rotate(&store, &session, 1, t + 110).await);
    assert!(matches!(
        judge_failed_rotation(&presented, found, &policy(), t + 110),
        FailedRotation::Grace(current) if current.generation == 2
    ));
    let found = refused(rotate(&store, &session, 1, t + 111).await);
    assert_eq!(
        judge_failed_rotation(&presented, found, &policy(), t + 111),
        FailedRotation::Reused
    );
    // Two generations back is reuse at once.
    rotated(rotate(&store, &session, 2, t + 112).await);
    let found = refused(rotate(&store, &session, 1, t + 112).await);
    assert_eq!(
        judge_failed_rotation(&presented, found, &policy(), t + 112),
        FailedRotation::Reused
    );
    // Nothing was written by the refused ones.
    assert_eq!(stored(&store, &session).await.generation, 3);
}

#[tokio::test]
async fn a_session_idles_out_and_ends_at_its_absolute_expiry() {
    let store = table().await;
    let t = now();
    let session = started(&store, &user(), t).await;
    let idle_end = session.idle_expires_at;
    let found = refused(rotate(&store, &session, 1, idle_end).await);
    assert_eq!(
        judge_failed_rotation(&token(&session, 1), found, &policy(), idle_end),
        FailedRotation::Expired
    );
    // Used just in time every time, it still ends at its absolute expiry.
    let mut generation = 1;
    let mut at = t;
    while at + policy().idle_seconds - 1 < session.expires_at {
        at += policy().idle_seconds - 1;
        let next = rotated(rotate(&store, &session, generation, at).await);
        generation = next.generation;
    }
    let end = session.expires_at;
    let found = refused(rotate(&store, &session, generation, end).await);
    assert_eq!(
        judge_failed_rotation(&token(&session, generation), found, &policy(), end),
        FailedRotation::Expired
    );
}

#[tokio::test]
async fn revocation_is_once_and_only_by_the_owner_when_one_is_named() {
    let store = table().await;
    let t = now();
    let owner = user();
    let session = started(&store, &owner, t).await;
    let stranger = user();
    assert_eq!(
        store
            .revoke(&session.sid, Some(&stranger), t)
            .await
            .unwrap(),
        Revocation::NotFound
    );
    assert_eq!(
        store
            .revoke(&SessionId::generate(), Some(&owner), t)
            .await
            .unwrap(),
        Revocation::NotFound
    );
    assert_eq!(
        store.revoke(&SessionId::generate(), None, t).await.unwrap(),
        Revocation::NotFound
    );
    assert_eq!(stored(&store, &session).await.revoked_at, None);
    assert_eq!(
        store
            .revoke(&session.sid, Some(&owner), t + 1)
            .await
            .unwrap(),
        Revocation::Revoked { user: owner }
    );
    assert_eq!(
        store.revoke(&session.sid, None, t + 2).await.unwrap(),
        Revocation::AlreadyRevoked
    );
    assert_eq!(stored(&store, &session).await.revoked_at, Some(t + 1));
    // Its current token no longer rotates.
    let found = refused(rotate(&store, &session, 1, t + 3).await);
    assert_eq!(
        judge_failed_rotation(&token(&session, 1), found, &policy(), t + 3),
        FailedRotation::Revoked
    );
}

#[tokio::test]
async fn a_create_resent_after_a_lost_answer_is_its_own_not_a_collision() {
    let store = table().await;
    let t = now();
    let session = started(&store, &user(), t).await;
    // The same write again (the SDK resending it) is recognised as done.
    assert!(store.create(&session).await.unwrap());
    // Another session under the same id is refused, and nothing is overwritten.
    let other = Session {
        user: user(),
        ..session.clone()
    };
    assert!(!store.create(&other).await.unwrap());
    assert_eq!(stored(&store, &session).await, session);
}

#[tokio::test]
async fn a_users_sessions_are_found_through_the_index() {
    let store = table().await;
    let t = now();
    let owner = user();
    let mut sids = Vec::new();
    for i in 0..3 {
        sids.push(started(&store, &owner, t + i).await.sid);
    }
    started(&store, &user(), t).await;
    let listed = eventually(
        || store.session_ids_of(&owner),
        |ids| ids.as_ref().is_ok_and(|ids| ids.len() == 3),
    )
    .await
    .unwrap();
    let mut listed_sorted = listed.clone();
    listed_sorted.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    sids.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    assert_eq!(listed_sorted, sids);
    assert_eq!(store.sessions_of(&owner).await.unwrap().len(), 3);
    assert!(store.sessions_of(&user()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_user_with_more_sessions_than_one_batch_read_gets_them_all() {
    let store = table().await;
    let t = now();
    let owner = user();
    for i in 0..105 {
        started(&store, &owner, t + i).await;
    }
    let all = eventually(
        || store.sessions_of(&owner),
        |s| s.as_ref().is_ok_and(|s| s.len() == 105),
    )
    .await
    .unwrap();
    assert_eq!(all.len(), 105);
}

#[tokio::test]
async fn storage_failures_are_errors_not_answers() {
    let missing = SessionTable::new(dynamo().await, "no-such-sessions".into());
    let session = policy().start(user(), ClientInfo::default(), now());
    assert!(missing.create(&session).await.is_err());
    assert!(rotate_err(&missing, &session).await.is_err());
    assert!(missing.revoke(&session.sid, None, now()).await.is_err());
    assert!(missing.sessions_of(&session.user).await.is_err());
}

async fn rotate_err(store: &SessionTable, session: &Session) -> Result<Rotation, StoreError> {
    store.rotate(&token(session, 1), now(), now()).await
}

// ------------------------------------------------------------------ endpoints over DynamoDB Local

/// A session of a new user, as sign-in and two refreshes an hour ago left it:
/// generation 3, rotated long before any grace period.
async fn refreshed_an_hour_ago(store: &SessionTable) -> (UserId, Session) {
    let owner = user();
    let session = two_refreshes_ago(owner, now());
    assert!(store.create(&session).await.unwrap());
    (owner, session)
}

/// `user`'s session at `t`: started two hours before, refreshed twice, the
/// last time an hour ago (generation 3, long past any grace period).
fn two_refreshes_ago(user: UserId, t: u64) -> Session {
    Session {
        generation: 3,
        rotated_at: t - 3600,
        last_used_at: t - 3600,
        ..policy().start(user, ClientInfo::default(), t - 7200)
    }
}

fn refresh_body(session: &Session, generation: u64) -> Value {
    json!({ "refresh": refresh_key().token(&session.sid, generation) })
}

#[tokio::test]
async fn an_old_token_revokes_the_whole_session_and_the_current_one_stops_too() {
    let store = table().await;
    let (_, session) = refreshed_an_hour_ago(&store).await;
    let refresh = refresh_over(table().await);
    assert_error(
        answer(refresh.refresh(post(refresh_body(&session, 2))).await),
        401,
        "refresh_token_reused",
    );
    assert!(stored(&store, &session).await.revoked_at.is_some());
    assert_error(
        answer(refresh.refresh(post(refresh_body(&session, 3))).await),
        401,
        "session_revoked",
    );
    // Presented again, the old token says the session is revoked (no second revocation).
    assert_error(
        answer(refresh.refresh(post(refresh_body(&session, 2))).await),
        401,
        "session_revoked",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_refreshes_with_one_token_rotate_once_and_revoke_nothing() {
    let store = table().await;
    let (owner, session) = refreshed_an_hour_ago(&store).await;
    let refresh = Arc::new(refresh_over(table().await));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let refresh = refresh.clone();
        let body = refresh_body(&session, 3);
        tasks.spawn(async move { answer(refresh.refresh(post(body)).await) });
    }
    let answers = tasks.join_all().await;
    let next = refresh_key().token(&session.sid, 4);
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(body["refresh"], next.as_str(), "everyone gets generation 4");
    }
    let now_stored = stored(&store, &session).await;
    assert_eq!(
        (now_stored.generation, now_stored.revoked_at),
        (4, None),
        "one rotation, no revocation"
    );
    // Each answer's access token is the user's, for this session.
    let verifier = config(&[]).token_verifier().unwrap();
    let claims = verifier
        .verify(answers[0].1["access"].as_str().unwrap(), TokenKind::Access)
        .unwrap()
        .claims;
    assert_eq!(
        (claims.sub.as_str(), claims.sid.as_deref()),
        (owner.to_string().as_str(), Some(session.sid.as_str()))
    );
}

#[tokio::test]
async fn logout_ends_the_session_and_says_204_again_for_a_gone_one() {
    let store = table().await;
    let (_, session) = refreshed_an_hour_ago(&store).await;
    let logout = logout_over(table().await);
    for generation in [2, 3] {
        // Any token of the session ends it; once ended, 204 again.
        let response = logout
            .logout(post(refresh_body(&session, generation)))
            .await;
        assert_eq!(response.unwrap().status(), 204);
        assert!(stored(&store, &session).await.revoked_at.is_some());
    }
    let unknown = policy().start(user(), ClientInfo::default(), now());
    let response = logout.logout(post(refresh_body(&unknown, 1))).await;
    assert_eq!(response.unwrap().status(), 204);
    assert_error(
        answer(
            refresh_over(table().await)
                .refresh(post(refresh_body(&session, 3)))
                .await,
        ),
        401,
        "session_revoked",
    );
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_caller_only() {
    let store = table().await;
    let owner = user();
    let t = now();
    let mine = [
        started(&store, &owner, t - 20).await,
        started(&store, &owner, t - 10).await,
        started(&store, &owner, t).await,
    ];
    let (_, other) = refreshed_an_hour_ago(&store).await;
    eventually(
        || store.session_ids_of(&owner),
        |ids| ids.as_ref().is_ok_and(|ids| ids.len() == 3),
    )
    .await
    .unwrap();
    let access = session_access_token(owner, &mine[2].sid);
    let response = logout_all_over(table().await)
        .logout_all(request(Method::POST, "", Some(&access)))
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for session in &mine {
        assert!(stored(&store, session).await.revoked_at.is_some());
    }
    assert_eq!(stored(&store, &other).await.revoked_at, None);
}

#[tokio::test]
async fn the_list_shows_live_sessions_newest_first_and_marks_the_callers() {
    let store = table().await;
    let owner = user();
    let t = now();
    let oldest = started(&store, &owner, t - 300).await;
    let revoked = started(&store, &owner, t - 200).await;
    let current = started(&store, &owner, t - 100).await;
    let expired = Session {
        idle_expires_at: t - 1,
        ..policy().start(owner, ClientInfo::default(), t - 50)
    };
    assert!(store.create(&expired).await.unwrap());
    store.revoke(&revoked.sid, None, t).await.unwrap();
    started(&store, &user(), t).await;

    let list = list_sessions_over(table().await);
    let access = session_access_token(owner, &current.sid);
    let (status, body) = eventually(
        || async { answer(list.list(request(Method::GET, "", Some(&access))).await) },
        |(_, body)| body["sessions"].as_array().is_some_and(|s| s.len() == 2),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"sessions": [
            {"id": current.sid.as_str(), "created_at": t - 100, "last_used_at": t - 100,
             "user_agent": "test-agent/1.0", "ip": "198.51.100.0", "current": true},
            {"id": oldest.sid.as_str(), "created_at": t - 300, "last_used_at": t - 300,
             "user_agent": "test-agent/1.0", "ip": "198.51.100.0", "current": false},
        ]})
    );
    assert_error(
        answer(list.list(request(Method::GET, "", None)).await),
        401,
        "missing_token",
    );
}

fn delete(sid: &str, access: &str) -> lambda_http::Request {
    let mut request = request(Method::DELETE, "", Some(access));
    *request.uri_mut() = format!("/users/sessions/{sid}/").parse().unwrap();
    request
}

#[tokio::test]
async fn a_session_is_revoked_only_by_its_owner_and_others_get_404() {
    let store = table().await;
    let (owner_id, mine) = refreshed_an_hour_ago(&store).await;
    let (stranger_id, theirs) = refreshed_an_hour_ago(&store).await;
    let revoke = revoke_session_over(table().await);
    let stranger = session_access_token(stranger_id, &theirs.sid);
    assert_error(
        answer(revoke.revoke(delete(mine.sid.as_str(), &stranger)).await),
        404,
        "session_not_found",
    );
    assert_eq!(stored(&store, &mine).await.revoked_at, None);
    let owner = session_access_token(owner_id, &mine.sid);
    let unknown = SessionId::generate();
    for bad in ["nope", "", "../sessions", unknown.as_str()] {
        assert_error(
            answer(revoke.revoke(delete(bad, &owner)).await),
            404,
            "session_not_found",
        );
    }
    for _ in 0..2 {
        let response = revoke
            .revoke(delete(mine.sid.as_str(), &owner))
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    assert!(stored(&store, &mine).await.revoked_at.is_some());
    assert_eq!(stored(&store, &theirs).await.revoked_at, None);
}

// ------------------------------------------------------------------ over in-memory and scripted ports

/// A store that must not be asked: the test fails if it is.
struct Untouchable;

impl SessionStore for Untouchable {
    async fn create(&self, _: &Session) -> Result<bool, StoreError> {
        panic!("storage was asked to create a session")
    }
    async fn rotate(&self, _: &RefreshToken, _: u64, _: u64) -> Result<Rotation, StoreError> {
        panic!("storage was asked to rotate")
    }
    async fn revoke(
        &self,
        _: &SessionId,
        _: Option<&UserId>,
        _: u64,
    ) -> Result<Revocation, StoreError> {
        panic!("storage was asked to revoke")
    }
    async fn sessions_of(&self, _: &UserId) -> Result<Vec<Session>, StoreError> {
        panic!("storage was asked for sessions")
    }
    async fn session_ids_of(&self, _: &UserId) -> Result<Vec<SessionId>, StoreError> {
        panic!("storage was asked for session ids")
    }
    async fn erase(&self, _: &SessionId) -> Result<(), StoreError> {
        panic!("storage was asked to erase a session")
    }
}

#[tokio::test]
async fn bad_refresh_tokens_are_refused_before_any_storage_request() {
    let owner = user();
    let session = policy().start(owner, ClientInfo::default(), now());
    let good = refresh_key().token(&session.sid, 1);
    let other_key = phone_auth::session::RefreshKey::new(b"some other key, thirty-two bytes+");
    let access = session_access_token(owner, &session.sid);
    let legacy = signer().issue(&owner, TokenKind::Refresh, now());
    let bad = [
        good[..good.len() - 1].to_string(),
        format!("{good}.1"),
        good.replacen(".1.", ".2.", 1),
        other_key.token(&session.sid, 1),
        access,
        legacy,
        "x".into(),
    ];
    let refresh = refresh_over(Untouchable);
    let logout = logout_over(Untouchable);
    for token in &bad {
        let body = json!({ "refresh": token });
        assert_error(
            answer(refresh.refresh(post(body.clone())).await),
            401,
            "refresh_token_invalid",
        );
        assert_error(
            answer(logout.logout(post(body)).await),
            401,
            "refresh_token_invalid",
        );
    }
    assert_error(
        answer(refresh.refresh(post(json!({ "refresh": 5 }))).await),
        400,
        "invalid_request",
    );
}

#[tokio::test]
async fn twenty_refreshes_meeting_at_the_write_rotate_once_in_memory() {
    let sessions = MemorySessions::default();
    let session = two_refreshes_ago(user(), now());
    sessions.create(&session).await.unwrap();
    let script = Script::default();
    let all: Vec<usize> = (1..=20).collect();
    script.meet("rotate", &all);
    let refresh = Arc::new(refresh_over(Scripted::new(sessions.clone(), &script)));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let refresh = refresh.clone();
        let body = refresh_body(&session, 3);
        tasks.spawn(async move { answer(refresh.refresh(post(body)).await) });
    }
    for (status, body) in tasks.join_all().await {
        assert_eq!(status, 200, "{body}");
    }
    let after = sessions.get(&session.sid).unwrap();
    assert_eq!((after.generation, after.revoked_at), (4, None));
    assert_eq!(script.calls("revoke"), 0);
}

#[tokio::test]
async fn a_storage_failure_at_any_step_is_a_503_and_leaves_the_session_as_it_was() {
    let sessions = MemorySessions::default();
    let t = now();
    let session = two_refreshes_ago(user(), t);
    sessions.create(&session).await.unwrap();

    // The rotation itself fails: nothing changed, the same token works after.
    let script = Script::default();
    script.at("rotate", 1, Step::Fail);
    let refresh = refresh_over(Scripted::new(sessions.clone(), &script));
    assert_error(
        answer(refresh.refresh(post(refresh_body(&session, 3))).await),
        503,
        "service_unavailable",
    );
    assert_eq!(sessions.get(&session.sid).unwrap(), session);

    // Reuse detected, but the revocation fails: 503, the session unrevoked,
    // and the old token still revokes it on the next try.
    let script = Script::default();
    script.at("revoke", 1, Step::Fail);
    let refresh = refresh_over(Scripted::new(sessions.clone(), &script));
    assert_error(
        answer(refresh.refresh(post(refresh_body(&session, 1))).await),
        503,
        "service_unavailable",
    );
    assert_eq!(sessions.get(&session.sid).unwrap(), session);
    assert_error(
        answer(refresh.refresh(post(refresh_body(&session, 1))).await),
        401,
        "refresh_token_reused",
    );

    // Listing, logout and revoking one fail as 503 too.
    let owner = user();
    let mine = started(&sessions, &owner, t).await;
    let access = session_access_token(owner, &mine.sid);
    let script = Script::default();
    script
        .at("sessions_of", 1, Step::Fail)
        .at("revoke", 1, Step::Fail)
        .at("revoke", 2, Step::Fail);
    let port = || Scripted::new(sessions.clone(), &script);
    assert_error(
        answer(
            list_sessions_over(port())
                .list(request(Method::GET, "", Some(&access)))
                .await,
        ),
        503,
        "service_unavailable",
    );
    assert_error(
        answer(
            logout_over(port())
                .logout(post(refresh_body(&mine, 1)))
                .await,
        ),
        503,
        "service_unavailable",
    );
    assert_error(
        answer(
            revoke_session_over(port())
                .revoke(delete(mine.sid.as_str(), &access))
                .await,
        ),
        503,
        "service_unavailable",
    );
    assert_eq!(sessions.get(&mine.sid).unwrap().revoked_at, None);
}

#[tokio::test]
async fn logout_all_failing_half_way_is_a_503_and_a_retry_finishes_it() {
    let sessions = MemorySessions::default();
    let owner = user();
    let t = now();
    for i in 0..3 {
        started(&sessions, &owner, t + i).await;
    }
    let access = session_access_token(owner, &SessionId::generate());
    let script = Script::default();
    script.at("revoke", 2, Step::Fail);
    let logout_all = logout_all_over(Scripted::new(sessions.clone(), &script));
    let call = || logout_all.logout_all(request(Method::POST, "", Some(&access)));
    assert_error(answer(call().await), 503, "service_unavailable");
    let revoked = |all: Vec<Session>| all.iter().filter(|s| s.revoked_at.is_some()).count();
    assert_eq!(revoked(sessions.all()), 1);
    assert_eq!(call().await.unwrap().status(), 204);
    assert_eq!(revoked(sessions.all()), 3);
}

#[tokio::test]
async fn sign_in_starts_one_session_and_a_failed_session_write_is_a_503_with_none() {
    let otps = MemoryOtps::default();
    let users = MemoryUsers::default();
    let sessions = MemorySessions::default();
    let phone = unique_phone();
    let parsed = parse_phone(&phone);
    // `code` sent to the phone a moment ago, stored as get_code stores it.
    let code_sent = |code: &'static str| {
        let otps = otps.clone();
        let parsed = parsed.clone();
        async move {
            let policy = phone_auth::otp::OtpPolicy::default();
            let hash = hasher().hash(&parsed, code);
            let pending = phone_auth::otp::PendingCode::new(parsed, hash, now(), &policy);
            assert_eq!(otps.issue(&pending, &policy, now()).await.unwrap(), None);
        }
    };

    // The session write fails: 503, no session (the code is spent).
    code_sent("1234").await;
    let script = Script::default();
    script.at("create_session", 1, Step::Fail);
    let failing = send_code_with_sessions(
        otps.clone(),
        users.clone(),
        Scripted::new(sessions.clone(), &script),
    );
    let sign_in = json!({ "phone": phone, "password": "1234" });
    assert_error(
        answer(failing.sign_in(post(sign_in)).await),
        503,
        "service_unavailable",
    );
    assert!(sessions.all().is_empty());

    // A new code signs in: one session, generation 1, its tokens in the answer.
    code_sent("5678").await;
    let working = send_code_with_sessions(otps, users.clone(), sessions.clone());
    let mut request = from_ip(
        post(json!({ "phone": phone, "password": "5678" })),
        "2001:db8:abcd:1::5",
    );
    request
        .headers_mut()
        .insert("user-agent", "PhoneApp/2.1 (iOS 18)".parse().unwrap());
    let (status, tokens) = answer(working.sign_in(request).await);
    assert_eq!(status, 200, "{tokens}");
    let all = sessions.all();
    assert_eq!(all.len(), 1);
    let session = &all[0];
    assert_eq!(session.generation, 1);
    assert_eq!(Some(session.user), users.user(&parsed).map(|u| u.id));
    assert_eq!(session.user_agent.as_deref(), Some("PhoneApp/2.1 (iOS 18)"));
    assert_eq!(session.ip.as_deref(), Some("2001:db8:abcd::"));
    assert_eq!(
        tokens["refresh"],
        refresh_key().token(&session.sid, 1).as_str()
    );
}

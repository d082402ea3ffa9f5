//! The DynamoDB adapter against DynamoDB Local: conditional writes,
//! transactions and indexes behave as the endpoints rely on.

mod support;

use std::sync::Arc;

use phone_auth::adapters::dynamo::{OtpTable, UserTable};
use phone_auth::invite::InviteCode;
use phone_auth::otp::{OtpPolicy, PendingCode};
use phone_auth::phone::Phone;
use phone_auth::store::{Attempt, NewUser, OtpStore, Referrer, ReferrerWrite, User, UserStore};
use support::{dynamo, env, now, unique_phone};

async fn otps() -> OtpTable {
    OtpTable::new(dynamo().await, env("OTPS_TABLE"))
}

async fn users() -> UserTable {
    UserTable::new(dynamo().await, env("USERS_TABLE"))
}

fn phone() -> Phone {
    Phone::from_trusted(unique_phone())
}

fn pending(phone: &Phone, hash: &[u8], created_at: u64) -> PendingCode {
    PendingCode::new(
        phone.clone(),
        hash.to_vec(),
        created_at,
        &OtpPolicy::default(),
    )
}

async fn new_user(users: &UserTable) -> User {
    let user = User {
        phone: phone(),
        invite_code: InviteCode::generate(),
        referrer: None,
        created_at: now(),
    };
    assert_eq!(
        users.create(&user).await.unwrap(),
        NewUser::Created(user.clone())
    );
    user
}

#[tokio::test]
async fn a_recent_code_blocks_a_new_one_until_the_cooldown_passes() {
    let (otps, policy) = (otps().await, OtpPolicy::default());
    let p = phone();
    let t = now();
    let issue = |hash: &'static [u8], at: u64| {
        let otps = otps.clone();
        let (p, policy) = (p.clone(), policy.clone());
        async move {
            otps.issue(&pending(&p, hash, at), &policy, at)
                .await
                .unwrap()
        }
    };
    assert_eq!(issue(b"first", t).await, None);
    let blocked = issue(b"second", t + 10).await.unwrap();
    assert_eq!(
        (
            blocked.code_hash.as_slice(),
            blocked.resend_wait(t + 10, &policy)
        ),
        (&b"first"[..], 50)
    );
    // 60 s later the old code is replaced, in the same send window.
    assert_eq!(issue(b"third", t + 60).await, None);
    assert!(!otps.delete_if_current(&p, b"first").await.unwrap());
    assert!(otps.delete_if_current(&p, b"third").await.unwrap());
}

#[tokio::test]
async fn a_phone_gets_at_most_five_codes_a_window() {
    let (otps, policy) = (otps().await, OtpPolicy::default());
    let p = phone();
    let t = now();
    for minute in 0..5 {
        let at = t + 60 * minute;
        assert_eq!(
            otps.issue(&pending(&p, b"code", at), &policy, at)
                .await
                .unwrap(),
            None,
            "code {minute}"
        );
    }
    let at = t + 300;
    let blocked = otps
        .issue(&pending(&p, b"sixth", at), &policy, at)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blocked.sends, 5);
    assert!(blocked.window_is_full(at, &policy));
    assert_eq!(blocked.resend_wait(at, &policy), 3300);
    // An hour after the window opened, a new one opens.
    let at = t + 3600;
    assert_eq!(
        otps.issue(&pending(&p, b"next", at), &policy, at)
            .await
            .unwrap(),
        None
    );
    let item = otps.count_attempt(&p, 3, at).await.unwrap();
    assert!(matches!(item, Attempt::Counted(code) if code.sends == 1 && code.window_start == at));
}

#[tokio::test]
async fn parallel_requests_for_one_phone_issue_one_code() {
    let (otps, policy) = (Arc::new(otps().await), OtpPolicy::default());
    let p = phone();
    let t = now();
    otps.issue(&pending(&p, b"first", t - 120), &policy, t - 120)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10u8 {
        let (otps, p, policy) = (otps.clone(), p.clone(), policy.clone());
        tasks.spawn(async move { otps.issue(&pending(&p, &[n], t), &policy, t).await.unwrap() });
    }
    let issued = tasks
        .join_all()
        .await
        .iter()
        .filter(|blocked| blocked.is_none())
        .count();
    assert_eq!(issued, 1);
}

#[tokio::test]
async fn attempts_are_counted_up_to_the_limit_then_refused() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    assert_eq!(otps.count_attempt(&p, 3, t).await.unwrap(), Attempt::NoCode);
    otps.issue(&pending(&p, b"hash", t), &OtpPolicy::default(), t)
        .await
        .unwrap();
    for expected in 1..=3 {
        match otps.count_attempt(&p, 3, t).await.unwrap() {
            Attempt::Counted(code) => assert_eq!(code.attempts, expected),
            other => panic!("attempt {expected}: {other:?}"),
        }
    }
    assert_eq!(
        otps.count_attempt(&p, 3, t).await.unwrap(),
        Attempt::Exhausted
    );
}

#[tokio::test]
async fn expired_codes_are_refused_even_before_ttl_deletes_them() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    otps.issue(
        &pending(&p, b"hash", t - 1000),
        &OtpPolicy::default(),
        t - 1000,
    )
    .await
    .unwrap();
    assert_eq!(
        otps.count_attempt(&p, 3, t).await.unwrap(),
        Attempt::Expired
    );
}

#[tokio::test]
async fn parallel_attempts_never_exceed_the_limit() {
    let otps = Arc::new(otps().await);
    let p = phone();
    let t = now();
    otps.issue(&pending(&p, b"hash", t), &OtpPolicy::default(), t)
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (otps, p) = (otps.clone(), p.clone());
        tasks.spawn(async move { otps.count_attempt(&p, 3, t).await.unwrap() });
    }
    let outcomes = tasks.join_all().await;
    let counted = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Counted(_)))
        .count();
    let refused = outcomes
        .iter()
        .filter(|o| **o == Attempt::Exhausted)
        .count();
    assert_eq!((counted, refused), (3, 17));
}

#[tokio::test]
async fn a_code_is_consumed_once() {
    let otps = otps().await;
    let p = phone();
    otps.issue(&pending(&p, b"hash", now()), &OtpPolicy::default(), now())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        otps.delete_if_current(&p, b"hash"),
        otps.delete_if_current(&p, b"hash")
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|deleted| **deleted)
            .count(),
        1
    );
    assert_eq!(
        otps.count_attempt(&p, 3, now()).await.unwrap(),
        Attempt::NoCode
    );
}

#[tokio::test]
async fn users_are_unique_by_phone_and_by_invite_code() {
    let users = users().await;
    let user = new_user(&users).await;
    assert_eq!(users.get(&user.phone).await.unwrap(), Some(user.clone()));
    assert_eq!(
        users.owner_of(&user.invite_code).await.unwrap(),
        Some(user.phone.clone())
    );

    let same_phone = User {
        invite_code: InviteCode::generate(),
        ..user.clone()
    };
    assert_eq!(
        users.create(&same_phone).await.unwrap(),
        NewUser::PhoneTaken
    );
    let same_code = User {
        phone: phone(),
        ..user.clone()
    };
    assert_eq!(
        users.create(&same_code).await.unwrap(),
        NewUser::InviteCodeTaken
    );
    // Neither refused write left anything behind.
    assert_eq!(users.get(&same_code.phone).await.unwrap(), None);
    assert_eq!(users.owner_of(&same_phone.invite_code).await.unwrap(), None);
    assert_eq!(users.get(&user.phone).await.unwrap(), Some(user));
}

#[tokio::test]
async fn unknown_things_are_absent() {
    let users = users().await;
    assert_eq!(users.get(&phone()).await.unwrap(), None);
    assert_eq!(users.owner_of(&InviteCode::generate()).await.unwrap(), None);
    assert_eq!(users.referrer_of(&phone()).await.unwrap(), None);
    assert!(users.referrals_of(&phone()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_referrer_is_set_once_and_listed_in_order() {
    let users = users().await;
    let (top, first, second) = (
        new_user(&users).await,
        new_user(&users).await,
        new_user(&users).await,
    );
    let referrer = Referrer {
        phone: top.phone.clone(),
        invite_code: top.invite_code.clone(),
    };

    assert_eq!(
        users
            .set_referrer(&first.phone, &referrer, &top.phone, 100)
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
    assert_eq!(
        users
            .set_referrer(&second.phone, &referrer, &top.phone, 200)
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
    assert_eq!(
        users
            .set_referrer(&first.phone, &referrer, &top.phone, 300)
            .await
            .unwrap(),
        ReferrerWrite::AlreadySet(top.invite_code.clone())
    );
    assert_eq!(
        users.referrer_of(&first.phone).await.unwrap(),
        Some(top.phone.clone())
    );
    assert_eq!(
        users.get(&first.phone).await.unwrap().unwrap().referrer,
        Some(referrer)
    );
    assert_eq!(
        users.referrals_of(&top.phone).await.unwrap(),
        vec![first.phone, second.phone]
    );
}

#[tokio::test]
async fn the_write_is_refused_when_the_chain_top_moved() {
    let users = users().await;
    let (a, b, c) = (
        new_user(&users).await,
        new_user(&users).await,
        new_user(&users).await,
    );
    let to = |u: &User| Referrer {
        phone: u.phone.clone(),
        invite_code: u.invite_code.clone(),
    };
    // b joins a's chain; a is its top.
    assert_eq!(
        users
            .set_referrer(&b.phone, &to(&a), &a.phone, now())
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
    // c believed b was the top (stale walk): refused, nothing written.
    assert_eq!(
        users
            .set_referrer(&c.phone, &to(&b), &b.phone, now())
            .await
            .unwrap(),
        ReferrerWrite::ChainMoved
    );
    assert_eq!(users.referrer_of(&c.phone).await.unwrap(), None);
    assert_eq!(
        users
            .set_referrer(&c.phone, &to(&b), &a.phone, now())
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
}

#[tokio::test]
async fn storage_failures_are_errors_not_answers() {
    let missing = OtpTable::new(dynamo().await, "no-such-table".into());
    assert!(missing.count_attempt(&phone(), 3, now()).await.is_err());
    let missing = UserTable::new(dynamo().await, "no-such-table".into());
    assert!(missing.get(&phone()).await.is_err());
}

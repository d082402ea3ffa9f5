//! The DynamoDB adapter against DynamoDB Local: conditional writes,
//! transactions and indexes behave as the endpoints rely on.

mod support;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use aws_sdk_dynamodb::config::interceptors::BeforeSerializationInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept};
use aws_sdk_dynamodb::operation::update_item::UpdateItemInput;
use aws_sdk_dynamodb::types::AttributeValue;
use phone_auth::adapters::dynamo::{OtpTable, UserTable};
use phone_auth::invite::InviteCode;
use phone_auth::limits::{Counter, SendLimits, Source};
use phone_auth::otp::{Attempt, OtpPolicy, PendingCode, SendRefusal};
use phone_auth::phone::{Phone, Region};
use phone_auth::store::{
    CounterStore, NewUser, OtpStore, Referrer, ReferrerWrite, User, UserStore,
};
use phone_auth::user::UserId;
use support::{Namespaced, a_user, dynamo, env, now, unique_phone};
use tokio::sync::Barrier;

async fn otps() -> OtpTable {
    OtpTable::new(dynamo().await, env("OTPS_TABLE"))
}

async fn users() -> UserTable {
    UserTable::new(dynamo().await, env("USERS_TABLE"))
}

fn phone() -> Phone {
    support::parse_phone(&unique_phone())
}

fn pending(phone: &Phone, hash: &[u8], created_at: u64) -> PendingCode {
    PendingCode::new(
        phone.clone(),
        hash.to_vec(),
        created_at,
        &OtpPolicy::default(),
    )
}

fn referrer(user: &User) -> Referrer {
    Referrer {
        id: user.id,
        invite_code: user.invite_code.clone(),
    }
}

async fn new_user(users: &UserTable) -> User {
    let user = a_user(phone());
    assert_eq!(
        users.create(&user).await.unwrap(),
        NewUser::Created(user.clone())
    );
    user
}

/// `issue` as get-code calls it: None when the code was stored.
async fn issue(otps: &OtpTable, p: &Phone, hash: &[u8], at: u64) -> Option<SendRefusal> {
    issue_under(&OtpPolicy::default(), otps, p, hash, at).await
}

async fn issue_under(
    policy: &OtpPolicy,
    otps: &OtpTable,
    p: &Phone,
    hash: &[u8],
    at: u64,
) -> Option<SendRefusal> {
    otps.issue(&pending(p, hash, at), policy, at).await.unwrap()
}

fn number(item: &HashMap<String, AttributeValue>, name: &str) -> u64 {
    item[name].as_n().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_recent_code_blocks_a_new_one_until_the_cooldown_passes() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    assert_eq!(issue(&otps, &p, b"first", t).await, None);
    assert_eq!(
        issue(&otps, &p, b"second", t + 10).await,
        Some(SendRefusal::TooSoon { retry_after: 50 })
    );
    // 60 s later the old code is replaced, in the same send window.
    assert_eq!(issue(&otps, &p, b"third", t + 60).await, None);
    assert!(
        !otps
            .consume(&p, b"first", &OtpPolicy::default(), now())
            .await
            .unwrap()
    );
    assert!(
        otps.consume(&p, b"third", &OtpPolicy::default(), now())
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn a_phone_gets_at_most_five_codes_a_window() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    for minute in 0..5 {
        let at = t + 60 * minute;
        assert_eq!(issue(&otps, &p, b"code", at).await, None, "code {minute}");
    }
    assert_eq!(
        issue(&otps, &p, b"sixth", t + 300).await,
        Some(SendRefusal::WindowFull { retry_after: 3300 })
    );
    // An hour after the window opened, a new one opens.
    assert_eq!(issue(&otps, &p, b"next", t + 3600).await, None);
    let item = support::raw_otp_item(&p).await;
    assert_eq!(
        (number(&item, "sends"), number(&item, "window_start")),
        (1, t + 3600)
    );
}

/// The hole that let one number loop get_code → send_code for unlimited SMS:
/// using a code must not reset the window.
#[tokio::test]
async fn used_codes_still_count_and_the_next_code_needs_no_cooldown() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    for n in 0..5u8 {
        // Each code is used right away; the next may be sent at once.
        assert_eq!(
            issue(&otps, &p, &[n], t + u64::from(n)).await,
            None,
            "code {n}"
        );
        assert!(
            otps.consume(&p, &[n], &OtpPolicy::default(), now())
                .await
                .unwrap()
        );
    }
    assert_eq!(
        issue(&otps, &p, b"sixth", t + 5).await,
        Some(SendRefusal::WindowFull { retry_after: 3595 })
    );
}

#[tokio::test]
async fn a_withdrawn_code_is_not_counted_and_leaves_no_cooldown() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    for n in 0..4u8 {
        assert_eq!(issue(&otps, &p, &[n], t + 60 * u64::from(n)).await, None);
    }
    // The fifth SMS fails and its code is taken back: the send is given back.
    assert_eq!(issue(&otps, &p, b"failed", t + 240).await, None);
    assert!(otps.withdraw(&p, b"failed").await.unwrap());
    assert!(!otps.withdraw(&p, b"failed").await.unwrap(), "only once");
    assert_eq!(number(&support::raw_otp_item(&p).await, "sends"), 4);
    // At once (no cooldown), and it is the fifth of the window.
    assert_eq!(issue(&otps, &p, b"fifth", t + 241).await, None);
    assert_eq!(
        issue(&otps, &p, b"sixth", t + 400).await,
        Some(SendRefusal::WindowFull { retry_after: 3200 })
    );
    assert!(matches!(
        otps.count_attempt(&p, &OtpPolicy::default(), t + 241).await.unwrap(),
        Attempt::Counted(code) if code.code_hash == b"fifth"
    ));
}

#[tokio::test]
async fn a_new_window_still_waits_for_the_cooldown() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    assert_eq!(issue(&otps, &p, b"first", t).await, None);
    // Second 3599 of the window, then the window's end one second later.
    assert_eq!(issue(&otps, &p, b"late", t + 3599).await, None);
    assert_eq!(
        issue(&otps, &p, b"too soon", t + 3600).await,
        Some(SendRefusal::TooSoon { retry_after: 59 })
    );
    assert_eq!(issue(&otps, &p, b"new window", t + 3659).await, None);
    assert_eq!(
        number(&support::raw_otp_item(&p).await, "window_start"),
        t + 3659
    );
}

#[tokio::test]
async fn every_send_moves_the_ttl_past_the_code_and_the_window() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    assert_eq!(issue(&otps, &p, b"first", t).await, None);
    // A code sent late in the window outlives the window's end.
    assert_eq!(issue(&otps, &p, b"late", t + 3500).await, None);
    let item = support::raw_otp_item(&p).await;
    let ttl = number(&item, "expires_at");
    assert!(ttl >= number(&item, "code_expires_at"), "{item:?}");
    assert!(ttl >= number(&item, "window_start") + 3600, "{item:?}");
}

#[tokio::test]
async fn parallel_requests_for_one_phone_issue_one_code() {
    let otps = Arc::new(otps().await);
    let p = phone();
    let t = now();
    assert_eq!(issue(&otps, &p, b"first", t - 120).await, None);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..10u8 {
        let (otps, p) = (otps.clone(), p.clone());
        tasks.spawn(async move { issue(&otps, &p, &[n], t).await });
    }
    let issued = tasks
        .join_all()
        .await
        .iter()
        .filter(|refusal| refusal.is_none())
        .count();
    assert_eq!(issued, 1);
    assert_eq!(number(&support::raw_otp_item(&p).await, "sends"), 2);
}

type Write = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Another request's write, made right before this client sends its second
/// UpdateItem. For `OtpTable::issue` within a send window that is between
/// its two requests: after the first update, whose refusal reported the
/// item, before the second, conditioned on the rule. Only an SDK interceptor
/// reaches in there; it is synchronous, so it waits for the write in place
/// (which needs the multi-threaded runtime).
#[derive(Clone)]
struct BetweenReadAndWrite(Arc<Mutex<(usize, Option<Write>)>>);

impl BetweenReadAndWrite {
    fn new(write: impl Future<Output = ()> + Send + 'static) -> Self {
        BetweenReadAndWrite(Arc::new(Mutex::new((0, Some(Box::pin(write))))))
    }

    fn ran(&self) -> bool {
        self.0.lock().unwrap().1.is_none()
    }

    /// The codes table through a client with this interceptor.
    async fn otps(&self) -> OtpTable {
        let config = aws_sdk_dynamodb::config::Builder::from(&support::aws().await)
            .interceptor(self.clone())
            .build();
        OtpTable::new(
            aws_sdk_dynamodb::Client::from_conf(config),
            env("OTPS_TABLE"),
        )
    }
}

impl std::fmt::Debug for BetweenReadAndWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BetweenReadAndWrite")
    }
}

impl Intercept for BetweenReadAndWrite {
    fn name(&self) -> &'static str {
        "BetweenReadAndWrite"
    }

    fn read_before_execution(
        &self,
        context: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if context.input().downcast_ref::<UpdateItemInput>().is_some() {
            let write = {
                let mut state = self.0.lock().unwrap();
                state.0 += 1;
                if state.0 == 2 { state.1.take() } else { None }
            };
            if let Some(write) = write {
                tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(write));
            }
        }
        Ok(())
    }
}

/// The item expires (TTL) between issue's read and its write: the update
/// finds nothing, and the next round opens a new window with this code.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_opens_a_new_window_when_the_item_vanishes_before_its_update() {
    let p = phone();
    let t = now();
    assert_eq!(issue(&otps().await, &p, b"first", t - 120).await, None);
    let key = AttributeValue::S(p.as_str().into());
    let expire = BetweenReadAndWrite::new(async move {
        let deleted = dynamo()
            .await
            .delete_item()
            .table_name(env("OTPS_TABLE"))
            .key("phone", key)
            .send()
            .await;
        deleted.unwrap();
    });
    let otps = expire.otps().await;

    assert_eq!(issue(&otps, &p, b"second", t).await, None);
    assert!(expire.ran());
    let item = support::raw_otp_item(&p).await;
    assert_eq!(
        (number(&item, "sends"), number(&item, "window_start")),
        (1, t)
    );
    assert!(
        otps.consume(&p, b"second", &OtpPolicy::default(), now())
            .await
            .unwrap(),
        "the code stored"
    );
}

/// Another request sends a code between issue's read and its write: the
/// update's condition is the rule itself (cooldown), not "unchanged since
/// read", so this code is refused and the other one stands.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_is_refused_when_another_code_goes_out_before_its_update() {
    let p = phone();
    let t = now();
    assert_eq!(issue(&otps().await, &p, b"first", t - 120).await, None);
    let other = p.clone();
    let another_request = BetweenReadAndWrite::new(async move {
        assert_eq!(issue(&otps().await, &other, b"other", t).await, None);
    });
    let otps = another_request.otps().await;

    assert_eq!(
        issue(&otps, &p, b"mine", t).await,
        Some(SendRefusal::TooSoon { retry_after: 60 })
    );
    assert!(another_request.ran());
    assert_eq!(number(&support::raw_otp_item(&p).await, "sends"), 2);
    assert!(
        !otps
            .consume(&p, b"mine", &OtpPolicy::default(), now())
            .await
            .unwrap()
    );
    assert!(
        otps.consume(&p, b"other", &OtpPolicy::default(), now())
            .await
            .unwrap()
    );
}

/// Another request sends the window's last code between issue's read and its
/// write. With no cooldown in the way, only the update's own condition on
/// the window's count refuses this code: a sixth code in the window is
/// never written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue_is_refused_when_another_code_fills_the_window_before_its_update() {
    let policy = OtpPolicy {
        resend_cooldown_seconds: 0,
        ..OtpPolicy::default()
    };
    let p = phone();
    let t = now();
    for k in 0..4 {
        let at = t - 300 + 60 * k;
        assert_eq!(
            issue_under(&policy, &otps().await, &p, b"early", at).await,
            None
        );
    }
    let (other, other_policy) = (p.clone(), policy.clone());
    let another_request = BetweenReadAndWrite::new(async move {
        let fifth = issue_under(&other_policy, &otps().await, &other, b"fifth", t).await;
        assert_eq!(fifth, None);
    });
    let otps = another_request.otps().await;

    assert_eq!(
        issue_under(&policy, &otps, &p, b"sixth", t).await,
        Some(SendRefusal::WindowFull { retry_after: 3300 })
    );
    assert!(another_request.ran());
    assert_eq!(number(&support::raw_otp_item(&p).await, "sends"), 5);
    assert!(otps.consume(&p, b"fifth", &policy, now()).await.unwrap());
}

#[tokio::test]
async fn attempts_are_counted_up_to_the_limit_then_refused() {
    let otps = otps().await;
    let p = phone();
    let t = now();
    assert_eq!(
        otps.count_attempt(&p, &OtpPolicy::default(), t)
            .await
            .unwrap(),
        Attempt::NoCode
    );
    otps.issue(&pending(&p, b"hash", t), &OtpPolicy::default(), t)
        .await
        .unwrap();
    for expected in 1..=3 {
        match otps
            .count_attempt(&p, &OtpPolicy::default(), t)
            .await
            .unwrap()
        {
            Attempt::Counted(code) => assert_eq!(code.attempts, expected),
            other => panic!("attempt {expected}: {other:?}"),
        }
    }
    assert_eq!(
        otps.count_attempt(&p, &OtpPolicy::default(), t)
            .await
            .unwrap(),
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
        otps.count_attempt(&p, &OtpPolicy::default(), t)
            .await
            .unwrap(),
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
        tasks.spawn(async move {
            otps.count_attempt(&p, &OtpPolicy::default(), t)
                .await
                .unwrap()
        });
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
    let policy = OtpPolicy::default();
    let (a, b) = tokio::join!(
        otps.consume(&p, b"hash", &policy, now()),
        otps.consume(&p, b"hash", &policy, now())
    );
    assert_eq!(
        [a.unwrap(), b.unwrap()]
            .iter()
            .filter(|deleted| **deleted)
            .count(),
        1
    );
    assert_eq!(
        otps.count_attempt(&p, &OtpPolicy::default(), now())
            .await
            .unwrap(),
        Attempt::NoCode
    );
}

#[tokio::test]
async fn users_are_unique_by_phone_by_id_and_by_invite_code() {
    let users = users().await;
    let user = new_user(&users).await;
    assert_eq!(users.get(user.id).await.unwrap(), Some(user.clone()));
    assert_eq!(users.id_of(&user.phone).await.unwrap(), Some(user.id));
    assert_eq!(
        users.owner_of(&user.invite_code).await.unwrap(),
        Some(user.id)
    );

    let same_phone = a_user(user.phone.clone());
    assert_eq!(
        users.create(&same_phone).await.unwrap(),
        NewUser::PhoneTaken
    );
    let same_id = User {
        id: user.id,
        ..a_user(phone())
    };
    assert_eq!(users.create(&same_id).await.unwrap(), NewUser::IdTaken);
    let same_code = User {
        invite_code: user.invite_code.clone(),
        ..a_user(phone())
    };
    assert_eq!(
        users.create(&same_code).await.unwrap(),
        NewUser::InviteCodeTaken
    );
    // No refused write left anything behind.
    for refused in [&same_phone, &same_id, &same_code] {
        let phone_owner = (refused.phone == user.phone).then_some(user.id);
        assert_eq!(users.id_of(&refused.phone).await.unwrap(), phone_owner);
        if refused.id != user.id {
            assert_eq!(users.get(refused.id).await.unwrap(), None);
        }
        if refused.invite_code != user.invite_code {
            assert_eq!(users.owner_of(&refused.invite_code).await.unwrap(), None);
        }
    }
    assert_eq!(users.get(user.id).await.unwrap(), Some(user));
}

/// Two sign-ups of one phone write at the same moment (each with its own
/// id and invite code): one creates the user, the other is told the phone
/// is taken, and neither its id nor its code was claimed — the transaction
/// wrote none of its items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_creates_of_one_phone_make_one_user_and_claim_one_code() {
    let users = users().await;
    for _ in 0..10 {
        let p = phone();
        let attempts = [(); 2].map(|_| a_user(p.clone()));
        let both_ready = Arc::new(Barrier::new(2));
        let tasks = attempts.clone().map(|user| {
            let (users, both_ready) = (users.clone(), both_ready.clone());
            tokio::spawn(async move {
                both_ready.wait().await;
                users.create(&user).await.unwrap()
            })
        });
        let [first, second] = tasks;
        let outcomes = [first.await.unwrap(), second.await.unwrap()];
        let winner = match outcomes {
            [NewUser::Created(user), NewUser::PhoneTaken]
            | [NewUser::PhoneTaken, NewUser::Created(user)] => user,
            other => panic!("expected one Created and one PhoneTaken: {other:?}"),
        };
        let loser = attempts.iter().find(|a| **a != winner).unwrap();
        assert_eq!(users.id_of(&p).await.unwrap(), Some(winner.id));
        assert_eq!(users.get(winner.id).await.unwrap(), Some(winner.clone()));
        assert_eq!(
            users.owner_of(&winner.invite_code).await.unwrap(),
            Some(winner.id)
        );
        assert_eq!(users.get(loser.id).await.unwrap(), None);
        assert_eq!(users.owner_of(&loser.invite_code).await.unwrap(), None);
    }
}

/// Real DynamoDB cancels one of two transactions writing the same item at the
/// same moment with TransactionConflict; DynamoDB Local never does (it runs
/// them one after the other), so a stand-in server gives that answer here.
async fn users_answering_transaction_conflict() -> (wiremock::MockServer, UserTable) {
    use wiremock::matchers::header;
    let server = wiremock::MockServer::start().await;
    let conflict = serde_json::json!({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": "Transaction cancelled, please refer cancellation reasons for specific reasons [TransactionConflict, None, None]",
        "CancellationReasons": [
            { "Code": "TransactionConflict", "Message": "Transaction is ongoing for the item" },
            { "Code": "None" },
            { "Code": "None" }
        ]
    });
    wiremock::Mock::given(header(
        "x-amz-target",
        "DynamoDB_20120810.TransactWriteItems",
    ))
    .respond_with(
        wiremock::ResponseTemplate::new(400)
            .insert_header("content-type", "application/x-amz-json-1.0")
            .set_body_json(conflict),
    )
    .mount(&server)
    .await;
    let config = aws_sdk_dynamodb::config::Builder::from(&support::aws().await)
        .endpoint_url(server.uri())
        .build();
    let users = UserTable::new(aws_sdk_dynamodb::Client::from_conf(config), "users".into());
    (server, users)
}

/// A conflict is an answer, not an outage: on create it means a parallel
/// sign-in of the phone is writing (send_code looks for the user again), on
/// set_referrer a parallel write in the chain (set_referrer walks again). A
/// deletion that conflicts is an outage (503: the client deletes again).
#[tokio::test]
async fn a_transaction_conflict_is_a_parallel_write_not_an_outage() {
    let (_server, users) = users_answering_transaction_conflict().await;
    let (me, other) = (a_user(phone()), a_user(phone()));
    assert_eq!(users.create(&me).await.unwrap(), NewUser::PhoneTaken);
    assert_eq!(
        users
            .set_referrer(me.id, &referrer(&other), other.id, now())
            .await
            .unwrap(),
        ReferrerWrite::ChainMoved
    );
    assert!(users.delete(&me, now()).await.is_err());
}

#[tokio::test]
async fn unknown_things_are_absent() {
    let users = users().await;
    assert_eq!(users.id_of(&phone()).await.unwrap(), None);
    assert_eq!(users.get(UserId::generate()).await.unwrap(), None);
    assert_eq!(users.owner_of(&InviteCode::generate()).await.unwrap(), None);
    assert_eq!(users.referrer_of(UserId::generate()).await.unwrap(), None);
    assert!(
        users
            .referrals_of(UserId::generate(), 100)
            .await
            .unwrap()
            .is_empty()
    );
}

/// The owner of a code comes from its claim item, read consistently, not from
/// an index that real DynamoDB updates only eventually (DynamoDB Local
/// updates GSIs at once, so this writes a claim no index could know of).
#[tokio::test]
async fn a_codes_owner_is_read_from_its_claim() {
    let users = users().await;
    let (owner, code) = (UserId::generate(), InviteCode::generate());
    dynamo()
        .await
        .put_item()
        .table_name(env("USERS_TABLE"))
        .item("pk", AttributeValue::S(format!("INVITE#{code}")))
        .item("owner_id", AttributeValue::N(owner.to_string()))
        .send()
        .await
        .unwrap();
    assert_eq!(users.owner_of(&code).await.unwrap(), Some(owner));
}

#[tokio::test]
async fn a_referrer_is_set_once_and_listed_in_order() {
    let users = users().await;
    let (top, first, second) = (
        new_user(&users).await,
        new_user(&users).await,
        new_user(&users).await,
    );
    let to_top = referrer(&top);

    assert_eq!(
        users
            .set_referrer(first.id, &to_top, top.id, 100)
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
    assert_eq!(
        users
            .set_referrer(second.id, &to_top, top.id, 200)
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
    assert_eq!(
        users
            .set_referrer(first.id, &to_top, top.id, 300)
            .await
            .unwrap(),
        ReferrerWrite::AlreadySet(top.invite_code.clone())
    );
    assert_eq!(users.referrer_of(first.id).await.unwrap(), Some(top.id));
    assert_eq!(
        users.get(first.id).await.unwrap().unwrap().referrer,
        Some(to_top)
    );
    let expected = vec![first.phone, second.phone];
    // A GSI: eventually consistent on AWS.
    let listed = support::eventually(
        || async { users.referrals_of(top.id, 100).await.unwrap() },
        |listed| listed == &expected,
    )
    .await;
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn the_write_is_refused_when_the_chain_top_moved() {
    let users = users().await;
    let (a, b, c) = (
        new_user(&users).await,
        new_user(&users).await,
        new_user(&users).await,
    );
    // b joins a's chain; a is its top.
    assert_eq!(
        users
            .set_referrer(b.id, &referrer(&a), a.id, now())
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
    // c believed b was the top (stale walk): refused, nothing written.
    assert_eq!(
        users
            .set_referrer(c.id, &referrer(&b), b.id, now())
            .await
            .unwrap(),
        ReferrerWrite::ChainMoved
    );
    assert_eq!(users.referrer_of(c.id).await.unwrap(), None);
    assert_eq!(
        users
            .set_referrer(c.id, &referrer(&b), a.id, now())
            .await
            .unwrap(),
        ReferrerWrite::Set
    );
}

// ---------------------------------------------------------------- account deletion

/// Deleting a user erases their phone (free to sign up again, as somebody
/// new), retires their invite code for good, and leaves a tombstone that
/// keeps their link: their referrals keep `invite_code_referer`, and the
/// chain through them still counts for the no-circle rule.
#[tokio::test]
async fn a_deleted_user_leaves_a_tombstone_that_keeps_links_and_retires_the_code() {
    let users = users().await;
    let (top, gone, below) = (
        new_user(&users).await,
        new_user(&users).await,
        new_user(&users).await,
    );
    // top <- gone <- below: top is the chain's top both times.
    for (user, to) in [(&gone, &top), (&below, &gone)] {
        assert_eq!(
            users
                .set_referrer(user.id, &referrer(to), top.id, now())
                .await
                .unwrap(),
            ReferrerWrite::Set
        );
    }
    assert!(users.delete(&gone, now()).await.unwrap());
    // Once only: a second deletion (a retry) finds it done.
    assert!(!users.delete(&gone, now()).await.unwrap());

    assert_eq!(users.get(gone.id).await.unwrap(), None);
    assert_eq!(users.id_of(&gone.phone).await.unwrap(), None);
    assert_eq!(users.owner_of(&gone.invite_code).await.unwrap(), None);
    // The tombstone still links up and is still linked to.
    assert_eq!(users.referrer_of(gone.id).await.unwrap(), Some(top.id));
    assert_eq!(users.referrer_of(below.id).await.unwrap(), Some(gone.id));
    assert_eq!(
        users.get(below.id).await.unwrap().unwrap().referrer,
        Some(referrer(&gone))
    );
    // Gone from their referrer's list; their referral still listed under
    // the tombstone (which no profile shows).
    let listed = support::eventually(
        || async { users.referrals_of(top.id, 100).await.unwrap() },
        |listed| listed.is_empty(),
    )
    .await;
    assert_eq!(listed, Vec::<Phone>::new());
    assert_eq!(
        users.referrals_of(gone.id, 100).await.unwrap(),
        vec![below.phone.clone()]
    );
    // A tombstone cannot gain a referrer.
    let to_below = referrer(&below);
    let tombstone_joins = users.set_referrer(gone.id, &to_below, below.id, now());
    assert!(tombstone_joins.await.is_err());

    // The retired code is never issued again; the phone signs up anew.
    let reuse_code = User {
        invite_code: gone.invite_code.clone(),
        ..a_user(phone())
    };
    assert_eq!(
        users.create(&reuse_code).await.unwrap(),
        NewUser::InviteCodeTaken
    );
    let again = a_user(gone.phone.clone());
    assert_eq!(
        users.create(&again).await.unwrap(),
        NewUser::Created(again.clone())
    );
    assert_eq!(users.id_of(&gone.phone).await.unwrap(), Some(again.id));
    assert_ne!(again.id, gone.id);
    // Deleting the old user again touches nothing of the new one.
    assert!(!users.delete(&gone, now()).await.unwrap());
    assert_eq!(users.id_of(&gone.phone).await.unwrap(), Some(again.id));
}

#[tokio::test]
async fn erasing_a_pending_code_keeps_the_phones_limits() {
    let otps = otps().await;
    let p = phone();
    let policy = OtpPolicy::default();
    let hash = b"hash-of-a-code".to_vec();
    assert_eq!(
        otps.issue(&pending(&p, &hash, now()), &policy, now())
            .await
            .unwrap(),
        None
    );
    otps.erase_code(&p).await.unwrap();
    assert_eq!(
        otps.count_attempt(&p, &policy, now()).await.unwrap(),
        Attempt::NoCode
    );
    // The send stays counted: the cooldown is over (no code pending) but
    // the window still holds one send.
    let item = dynamo()
        .await
        .get_item()
        .table_name(env("OTPS_TABLE"))
        .key("phone", AttributeValue::S(p.as_str().into()))
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
        .expect("the phone's item stays");
    assert_eq!(item["sends"], AttributeValue::N("1".into()));
    assert!(!item.contains_key("code_hash"));
    // A phone without an item gets none.
    let unknown = phone();
    otps.erase_code(&unknown).await.unwrap();
    let none = dynamo()
        .await
        .get_item()
        .table_name(env("OTPS_TABLE"))
        .key("phone", AttributeValue::S(unknown.as_str().into()))
        .send()
        .await
        .unwrap();
    assert!(none.item.is_none());
}

#[tokio::test]
async fn storage_failures_are_errors_not_answers() {
    let missing = OtpTable::new(dynamo().await, "no-such-table".into());
    assert!(
        missing
            .count_attempt(&phone(), &OtpPolicy::default(), now())
            .await
            .is_err()
    );
    let missing = UserTable::new(dynamo().await, "no-such-table".into());
    assert!(missing.id_of(&phone()).await.is_err());
    assert!(missing.get(UserId::generate()).await.is_err());
}

// ---------------------------------------------------------------- failed-check lockout

/// A policy with room for many attempts per code, so only the lockout limits.
fn lockout_policy(max_failed_checks: u32) -> OtpPolicy {
    OtpPolicy {
        max_attempts: 10,
        max_failed_checks,
        ..OtpPolicy::default()
    }
}

async fn count(otps: &OtpTable, p: &Phone, policy: &OtpPolicy, at: u64) -> Attempt {
    otps.count_attempt(p, policy, at).await.unwrap()
}

/// Every check counts as failed until it signs in, across codes: the limit −
/// 1'th leaves the phone open, the limit'th locks it for checks and for new
/// codes until the lockout window (a UTC day) ends.
#[tokio::test]
async fn failed_checks_lock_the_phone_at_the_limit_across_codes() {
    let otps = otps().await;
    let policy = lockout_policy(4);
    let p = phone();
    let t = now();
    let day_end = policy.lockout_window(t).end;
    otps.issue(&pending(&p, b"first", t - 120), &policy, t - 120)
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(matches!(
            count(&otps, &p, &policy, t).await,
            Attempt::Counted(_)
        ));
    }
    // Three failed: a new code may still go, and be checked once more.
    assert_eq!(
        otps.issue(&pending(&p, b"second", t), &policy, t)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        count(&otps, &p, &policy, t).await,
        Attempt::Counted(code) if code.code_hash == b"second"
    ));
    let locked = Attempt::Locked {
        retry_after: day_end - t,
    };
    assert_eq!(count(&otps, &p, &policy, t).await, locked);
    assert_eq!(
        otps.issue(&pending(&p, b"third", t + 60), &policy, t + 60)
            .await
            .unwrap(),
        Some(SendRefusal::Locked {
            retry_after: day_end - t - 60
        })
    );
    // The right code is refused as well, and nothing was counted for it.
    assert!(!otps.consume(&p, b"third", &policy, t).await.unwrap());
    let item = support::raw_otp_item(&p).await;
    let failed = format!("failed_checks_{}", policy.lockout_window(t).index);
    assert_eq!((number(&item, &failed), number(&item, "attempts")), (4, 1));
    assert!(
        number(&item, "expires_at") >= day_end,
        "kept past the lockout"
    );
}

/// A locked phone whose send window is over gets no new window: the request
/// that would open one is refused as locked and leaves the item as it was
/// (so the lockout and the old window's count are kept).
#[tokio::test]
async fn a_locked_phone_gets_no_new_send_window() {
    let otps = otps().await;
    let policy = lockout_policy(2);
    let p = phone();
    // The last seconds of the current lockout window, two hours after the
    // window's first code: all within one window (one UTC day).
    let t = policy.lockout_window(now()).end - 10;
    let first = t - 7200;
    assert_eq!(
        otps.issue(&pending(&p, b"first", first), &policy, first)
            .await
            .unwrap(),
        None
    );
    for _ in 0..2 {
        count(&otps, &p, &policy, first + 10).await;
    }
    assert_eq!(
        otps.issue(&pending(&p, b"second", t), &policy, t)
            .await
            .unwrap(),
        Some(SendRefusal::Locked { retry_after: 10 })
    );
    let item = support::raw_otp_item(&p).await;
    assert_eq!(
        (number(&item, "window_start"), number(&item, "sends")),
        (first, 1),
        "the old window is kept"
    );
    assert!(!otps.consume(&p, b"second", &policy, t).await.unwrap());
}

/// A right code's check whose sign-in failed afterwards (storage) is given
/// back: its attempt and its failed check, once. Not a second time (the SDK
/// resending the request after a lost answer), and not once another check
/// was counted since (that one may be a wrong guess).
#[tokio::test]
async fn a_right_codes_check_is_given_back_once_and_only_if_nothing_was_counted_since() {
    let otps = otps().await;
    let policy = lockout_policy(10);
    let p = phone();
    let t = now();
    let failed = format!("failed_checks_{}", policy.lockout_window(t).index);
    let counts =
        |item: HashMap<String, AttributeValue>| (number(&item, "attempts"), number(&item, &failed));
    assert_eq!(issue_under(&policy, &otps, &p, b"code", t).await, None);
    let Attempt::Counted(counted) = count(&otps, &p, &policy, t).await else {
        panic!("not counted")
    };
    assert!(otps.give_back_attempt(&counted, &policy, t).await.unwrap());
    assert_eq!(counts(support::raw_otp_item(&p).await), (0, 0));
    assert!(!otps.give_back_attempt(&counted, &policy, t).await.unwrap());
    assert_eq!(counts(support::raw_otp_item(&p).await), (0, 0), "resent");

    let Attempt::Counted(mine) = count(&otps, &p, &policy, t).await else {
        panic!("not counted")
    };
    count(&otps, &p, &policy, t).await;
    assert!(!otps.give_back_attempt(&mine, &policy, t).await.unwrap());
    assert_eq!(counts(support::raw_otp_item(&p).await), (2, 2));
    assert!(otps.consume(&p, b"code", &policy, t).await.unwrap());
}

/// A check that signs in is taken back out of the failed ones: a user who
/// signs in every day never comes near the lockout.
#[tokio::test]
async fn a_check_that_signs_in_is_not_a_failed_one() {
    let otps = otps().await;
    let policy = lockout_policy(2);
    let p = phone();
    let t = now();
    for n in 0..5u8 {
        let at = t + u64::from(n);
        otps.issue(&pending(&p, &[n], at), &policy, at)
            .await
            .unwrap();
        assert!(matches!(
            count(&otps, &p, &policy, at).await,
            Attempt::Counted(_)
        ));
        assert!(otps.consume(&p, &[n], &policy, at).await.unwrap());
    }
    let item = support::raw_otp_item(&p).await;
    let failed = format!("failed_checks_{}", policy.lockout_window(t).index);
    assert_eq!(number(&item, &failed), 0);
}

/// The lockout ends with its window: the first check of the next one is
/// counted in a fresh count, and the previous window's count is removed.
#[tokio::test]
async fn a_new_lockout_window_unlocks_the_phone() {
    let otps = otps().await;
    let policy = lockout_policy(2);
    let p = phone();
    let last_second = policy.lockout_window(now()).end - 1;
    otps.issue(
        &pending(&p, b"code", last_second - 10),
        &policy,
        last_second - 10,
    )
    .await
    .unwrap();
    for _ in 0..2 {
        count(&otps, &p, &policy, last_second).await;
    }
    assert_eq!(
        count(&otps, &p, &policy, last_second).await,
        Attempt::Locked { retry_after: 1 }
    );
    let next = last_second + 1;
    assert!(matches!(
        count(&otps, &p, &policy, next).await,
        Attempt::Counted(_)
    ));
    let item = support::raw_otp_item(&p).await;
    let window = |at: u64| format!("failed_checks_{}", policy.lockout_window(at).index);
    assert_eq!(number(&item, &window(next)), 1);
    assert!(!item.contains_key(&window(last_second)), "{item:?}");
}

/// Twenty parallel guesses with two failed checks left: exactly two are
/// counted (and may be compared), eighteen are refused as locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_checks_never_exceed_the_failed_check_limit() {
    let otps = Arc::new(otps().await);
    let policy = Arc::new(lockout_policy(4));
    let p = phone();
    let t = now();
    otps.issue(&pending(&p, b"hash", t), &policy, t)
        .await
        .unwrap();
    for _ in 0..2 {
        count(&otps, &p, &policy, t).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let (otps, p, policy) = (otps.clone(), p.clone(), policy.clone());
        tasks.spawn(async move { otps.count_attempt(&p, &policy, t).await.unwrap() });
    }
    let outcomes = tasks.join_all().await;
    let counted = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Counted(_)))
        .count();
    let locked = outcomes
        .iter()
        .filter(|o| matches!(o, Attempt::Locked { .. }))
        .count();
    assert_eq!((counted, locked), (2, 18));
}

// ---------------------------------------------------------------- budgets

/// Small budgets, so each counter's edge is a few requests away.
fn small_limits(limit: u64) -> SendLimits {
    SendLimits {
        max_per_source_per_hour: limit,
        daily_budget: limit,
        region_daily_budgets: vec![(Region::KZ, limit)],
    }
}

/// The three counters of one request at `at`, from a source of their own,
/// under keys of this test's own (the service's day is shared by every test).
fn counters_at(namespace: &Namespaced<OtpTable>, limit: u64, at: u64) -> Vec<Counter> {
    let source = Source::from_text(Some(&format!(
        "2001:db8:{:x}:{:x}::1",
        rand::random::<u16>(),
        rand::random::<u16>()
    )));
    small_limits(limit)
        .counters(source, Some(Region::KZ), at)
        .all()
        .map(|c| namespace.key(c))
        .collect()
}

async fn namespace() -> Namespaced<OtpTable> {
    Namespaced::new(otps().await)
}

/// Each counter takes limit − 1 units, then the limit'th, then refuses; a
/// unit given back can be taken again; the count never goes below zero; the
/// item expires (TTL) when its window ends.
#[tokio::test]
async fn every_budget_counts_to_its_limit_then_refuses() {
    let ns = namespace().await;
    let t = now();
    for counter in counters_at(&ns, 3, t) {
        let what = &counter.key;
        for n in 1..3 {
            assert!(ns.counters.take(&counter).await.unwrap(), "{what}: {n}");
        }
        assert!(
            ns.counters.take(&counter).await.unwrap(),
            "{what}: the limit"
        );
        assert!(
            !ns.counters.take(&counter).await.unwrap(),
            "{what}: past it"
        );
        let item = raw_counter(&counter.key).await;
        assert_eq!(number(&item, "taken"), 3, "{what}");
        assert_eq!(number(&item, "expires_at"), counter.window_end, "{what}");

        ns.counters.give_back(&counter).await.unwrap();
        assert!(
            ns.counters.take(&counter).await.unwrap(),
            "{what}: given back"
        );
        for _ in 0..5 {
            ns.counters.give_back(&counter).await.unwrap();
        }
        assert_eq!(number(&raw_counter(&counter.key).await, "taken"), 0);
        // Nothing to give back on a counter never taken: no item appears.
        let never = Counter {
            key: format!("{}-never", counter.key),
            ..counter.clone()
        };
        ns.counters.give_back(&never).await.unwrap();
        assert!(
            support::raw_codes_item(&never.key).await.is_none(),
            "{what}"
        );
    }
}

/// A spent budget is full again in its next window: the next clock hour for
/// the source, the next UTC day for the country and the service.
#[tokio::test]
async fn every_budget_is_full_again_in_its_next_window() {
    let ns = namespace().await;
    let t = now();
    let limits = small_limits(1);
    let source = Source::from_text(Some("198.51.100.7"));
    let at = |at: u64| -> Vec<Counter> {
        limits
            .counters(source, Some(Region::KZ), at)
            .all()
            .map(|c| ns.key(c))
            .collect()
    };
    let day_end = (t / 86_400 + 1) * 86_400;
    // The last second of the day is the last second of an hour too.
    let last = at(day_end - 1);
    let next = at(day_end);
    for (spent, fresh) in last.iter().zip(&next) {
        assert!(ns.counters.take(spent).await.unwrap());
        assert!(!ns.counters.take(spent).await.unwrap(), "{}", spent.key);
        assert_ne!(spent.key, fresh.key);
        assert!(ns.counters.take(fresh).await.unwrap(), "{}", fresh.key);
    }
    // Within the day the source's next hour is a new window; the day's are not.
    let hour_end = (t / 3600 + 1) * 3600;
    if hour_end < day_end {
        let (this_hour, next_hour) = (at(hour_end - 1), at(hour_end));
        assert_ne!(this_hour[0].key, next_hour[0].key);
        assert_eq!(this_hour[2].key, next_hour[2].key);
    }
}

/// Concurrent takes at the limit: of 20 at once on a budget of 5, exactly 5
/// succeed, for every counter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_takes_let_exactly_the_limit_through() {
    let ns = Arc::new(namespace().await);
    for counter in counters_at(&ns, 5, now()) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (ns, counter) = (ns.clone(), counter.clone());
            tasks.spawn(async move { ns.counters.take(&counter).await.unwrap() });
        }
        let taken = tasks.join_all().await.into_iter().filter(|t| *t).count();
        assert_eq!(taken, 5, "{}", counter.key);
        assert_eq!(number(&raw_counter(&counter.key).await, "taken"), 5);
    }
}

async fn raw_counter(key: &str) -> HashMap<String, AttributeValue> {
    support::raw_codes_item(key)
        .await
        .expect("the counter has an item")
}

#[tokio::test]
async fn counter_failures_are_errors_not_answers() {
    let missing = OtpTable::new(dynamo().await, "no-such-table".into());
    let counter = small_limits(1)
        .counters(Source::Unknown, None, now())
        .service;
    assert!(missing.take(&counter).await.is_err());
    assert!(missing.give_back(&counter).await.is_err());
}

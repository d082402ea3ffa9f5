//! Writes whose answer is lost on the way back. DynamoDB Local applies the
//! write, then the connection drops before the SDK reads the answer; the SDK
//! sends the identical request again (as it does on AWS after a reset
//! connection or an attempt timeout). Each port method must still report what
//! its first sending did, not the refusal its own earlier success causes.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::config::retry::RetryConfig;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use phone_auth::adapters::dynamo::{OtpTable, UserTable};
use phone_auth::limits::{Budget, Counter};
use phone_auth::otp::{Attempt, OtpPolicy, PendingCode};
use phone_auth::phone::Phone;
use phone_auth::store::{CounterStore, NewUser, OtpStore, Referrer, ReferrerWrite, UserStore};
use phone_auth::user::UserId;
use support::{env, now, unique_phone};

/// The SDK's own HTTP client, except that the answers of the next requests
/// for one DynamoDB operation are dropped after DynamoDB Local applied them.
#[derive(Clone, Debug)]
struct LosingAnswers {
    inner: SharedHttpClient,
    /// (operation, answers to let through first, answers still to lose),
    /// e.g. ("UpdateItem", 0, 1).
    plan: Arc<Mutex<(String, u32, u32)>>,
    /// Requests for the operation that reached DynamoDB Local.
    sent: Arc<Mutex<u32>>,
}

impl LosingAnswers {
    fn new() -> Self {
        LosingAnswers {
            inner: aws_smithy_http_client::Builder::new()
                .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
                .build_https(),
            plan: Arc::new(Mutex::new((String::new(), 0, 0))),
            sent: Arc::new(Mutex::new(0)),
        }
    }

    /// Lets `skip` answers of `operation` through, then loses the next one;
    /// counts from here.
    fn lose_after(&self, operation: &str, skip: u32) {
        *self.plan.lock().unwrap() = (operation.to_string(), skip, 1);
        *self.sent.lock().unwrap() = 0;
    }

    fn sent(&self) -> u32 {
        *self.sent.lock().unwrap()
    }

    fn lost_all_planned(&self) -> bool {
        self.plan.lock().unwrap().2 == 0
    }
}

#[derive(Debug)]
struct LosingConnector {
    inner: SharedHttpConnector,
    client: LosingAnswers,
}

impl HttpConnector for LosingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let operation = request
            .headers()
            .get("x-amz-target")
            .and_then(|target| target.rsplit_once('.'))
            .map(|(_, operation)| operation.to_string())
            .unwrap_or_default();
        let client = self.client.clone();
        let answer = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let response = answer.await?;
            let mut plan = client.plan.lock().unwrap();
            if plan.0 == operation {
                *client.sent.lock().unwrap() += 1;
                if plan.1 > 0 {
                    plan.1 -= 1;
                } else if plan.2 > 0 {
                    plan.2 -= 1;
                    return Err(ConnectorError::io("connection reset (test)".into()));
                }
            }
            Ok(response)
        })
    }
}

impl HttpClient for LosingAnswers {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(LosingConnector {
            inner: self.inner.http_connector(settings, components),
            client: self.clone(),
        })
    }
}

/// A DynamoDB client as the functions build it, over the losing HTTP client.
/// The SDK's standard retries, with a short backoff to keep the test quick.
async fn losing_client(http: &LosingAnswers) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::config::Builder::from(&support::aws().await)
        .http_client(http.clone())
        .retry_config(RetryConfig::standard().with_initial_backoff(Duration::from_millis(10)))
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

struct Tables {
    http: LosingAnswers,
    otps: OtpTable,
    users: UserTable,
}

async fn tables() -> Tables {
    let http = LosingAnswers::new();
    let client = losing_client(&http).await;
    Tables {
        otps: OtpTable::new(client.clone(), env("OTPS_TABLE")),
        users: UserTable::new(client, env("USERS_TABLE")),
        http,
    }
}

impl Tables {
    /// A code for `p`, issued with nothing lost.
    async fn code_sent(&self, p: &Phone, hash: &[u8], at: u64) {
        let refusal = self
            .otps
            .issue(&pending(p, hash, at), &OtpPolicy::default(), at)
            .await
            .unwrap();
        assert_eq!(refusal, None);
    }

    /// Runs `write` with the answer of its first `operation` request lost,
    /// and checks the SDK did send that request again.
    async fn losing_one<T>(&self, operation: &str, write: impl Future<Output = T>) -> T {
        self.losing_after(operation, 0, write).await
    }

    /// The same for the answer of the write's `skip + 1`th `operation` request.
    async fn losing_after<T>(
        &self,
        operation: &str,
        skip: u32,
        write: impl Future<Output = T>,
    ) -> T {
        self.http.lose_after(operation, skip);
        let result = write.await;
        assert!(self.http.lost_all_planned(), "no {operation} was sent");
        assert_eq!(
            self.http.sent(),
            skip + 2,
            "the SDK sent the {operation} again"
        );
        result
    }
}

fn phone() -> Phone {
    support::parse_phone(&unique_phone())
}

fn pending(phone: &Phone, hash: &[u8], at: u64) -> PendingCode {
    PendingCode::new(phone.clone(), hash.to_vec(), at, &OtpPolicy::default())
}

/// The phone's failed checks in the current lockout window, as stored.
async fn failed_checks(p: &Phone, at: u64) -> i64 {
    let item = support::raw_otp_item(p).await;
    let attribute = format!(
        "failed_checks_{}",
        OtpPolicy::default().lockout_window(at).index
    );
    item.get(&attribute)
        .map_or(0, |v| v.as_n().unwrap().parse().unwrap())
}

/// The phone's send count and pending attempts, as stored.
async fn stored(p: &Phone) -> (u64, Option<u64>) {
    let item = support::raw_otp_item(p).await;
    let number = |name: &str| item.get(name).map(|v| v.as_n().unwrap().parse().unwrap());
    (number("sends").unwrap(), number("attempts"))
}

#[tokio::test]
async fn a_new_windows_code_is_reported_issued_and_counted_once() {
    let t = tables().await;
    let (p, at) = (phone(), now());
    let refusal = t
        .losing_one(
            "UpdateItem",
            t.otps
                .issue(&pending(&p, b"first", at), &OtpPolicy::default(), at),
        )
        .await
        .unwrap();
    assert_eq!(refusal, None, "its own earlier write is not a cooldown");
    assert_eq!(stored(&p).await, (1, Some(0)));
}

#[tokio::test]
async fn another_code_in_the_window_is_reported_issued_and_counted_once() {
    let t = tables().await;
    let (p, at) = (phone(), now());
    let policy = OtpPolicy::default();
    assert_eq!(
        t.otps
            .issue(&pending(&p, b"first", at), &policy, at)
            .await
            .unwrap(),
        None
    );
    assert!(
        t.otps
            .consume(&p, b"first", &OtpPolicy::default(), now())
            .await
            .unwrap()
    );
    // The first UpdateItem finds the window open (refused, answered); the
    // second, which sends the code in it, loses its answer.
    let refusal = t
        .losing_after(
            "UpdateItem",
            1,
            t.otps
                .issue(&pending(&p, b"second", at + 1), &policy, at + 1),
        )
        .await
        .unwrap();
    assert_eq!(refusal, None, "its own earlier write is not a cooldown");
    assert_eq!(stored(&p).await, (2, Some(0)));
}

#[tokio::test]
async fn an_attempt_is_counted_once() {
    let t = tables().await;
    let (p, at) = (phone(), now());
    t.code_sent(&p, b"code", at).await;
    let attempt = t
        .losing_one(
            "UpdateItem",
            t.otps.count_attempt(&p, &OtpPolicy::default(), at),
        )
        .await
        .unwrap();
    assert!(matches!(attempt, Attempt::Counted(_)), "{attempt:?}");
    assert_eq!(stored(&p).await, (1, Some(1)));
    assert_eq!(
        failed_checks(&p, at).await,
        1,
        "and one failed check, not two"
    );
}

/// A right code's check given back after a storage failure: its answer is
/// lost and the SDK resends it; the resent request finds the count moved
/// and changes nothing, so the check is given back once.
#[tokio::test]
async fn a_right_codes_check_is_given_back_once() {
    let t = tables().await;
    let (p, at) = (phone(), now());
    let policy = OtpPolicy::default();
    t.code_sent(&p, b"code", at).await;
    let Attempt::Counted(counted) = t.otps.count_attempt(&p, &policy, at).await.unwrap() else {
        panic!("not counted")
    };
    t.losing_one(
        "UpdateItem",
        t.otps.give_back_attempt(&counted, &policy, at),
    )
    .await
    .unwrap();
    assert_eq!(stored(&p).await, (1, Some(0)));
    assert_eq!(failed_checks(&p, at).await, 0, "given back once, not twice");
}

/// A budget's unit given back (an SMS not sent) while another request holds
/// one too: the give-back's answer is lost. It is not sent again, since a
/// resent one would give back the other request's unit as well; the error
/// leaves the count where DynamoDB put it.
#[tokio::test]
async fn a_budget_unit_is_never_given_back_twice() {
    let t = tables().await;
    let counter = Counter {
        budget: Budget::Service,
        key: format!("SMS#lost-answers-{}", unique_phone()),
        limit: 10,
        window_end: now() + 3600,
    };
    for _ in 0..2 {
        assert!(t.otps.take(&counter).await.unwrap());
    }
    t.http.lose_after("UpdateItem", 0);
    assert!(
        t.otps.give_back(&counter).await.is_err(),
        "the answer was lost"
    );
    assert!(t.http.lost_all_planned());
    assert_eq!(t.http.sent(), 1, "sent once, not again");
    let item = support::raw_codes_item(&counter.key).await.unwrap();
    assert_eq!(
        item["taken"].as_n().unwrap(),
        "1",
        "one unit given back, not two"
    );
}

#[tokio::test]
async fn a_used_code_is_reported_used_by_this_request() {
    let t = tables().await;
    let (p, at) = (phone(), now());
    t.otps
        .issue(&pending(&p, b"code", at), &OtpPolicy::default(), at)
        .await
        .unwrap();
    t.otps
        .count_attempt(&p, &OtpPolicy::default(), at)
        .await
        .unwrap();
    let used = t
        .losing_one(
            "UpdateItem",
            t.otps.consume(&p, b"code", &OtpPolicy::default(), at),
        )
        .await
        .unwrap();
    assert!(
        used,
        "single use, and this request was the one that used it"
    );
    assert_eq!(stored(&p).await, (1, None));
    assert_eq!(failed_checks(&p, at).await, 0, "its check taken back once");
}

#[tokio::test]
async fn a_withdrawn_code_gives_its_send_back_once() {
    let t = tables().await;
    let (p, at) = (phone(), now());
    let policy = OtpPolicy::default();
    t.otps
        .issue(&pending(&p, b"first", at), &policy, at)
        .await
        .unwrap();
    assert!(
        t.otps
            .consume(&p, b"first", &OtpPolicy::default(), now())
            .await
            .unwrap()
    );
    t.otps
        .issue(&pending(&p, b"unsent", at), &policy, at)
        .await
        .unwrap();
    let withdrawn = t
        .losing_one("UpdateItem", t.otps.withdraw(&p, b"unsent"))
        .await
        .unwrap();
    assert!(withdrawn);
    assert_eq!(stored(&p).await, (1, None), "one send given back, not two");
}

#[tokio::test]
async fn a_new_user_is_reported_created() {
    let t = tables().await;
    let user = support::a_user(phone());
    let created = t
        .losing_one("TransactWriteItems", t.users.create(&user))
        .await
        .unwrap();
    // The SDK sends the transaction's idempotency token again, so DynamoDB
    // answers the resend with the first sending's success.
    assert_eq!(created, NewUser::Created(user.clone()));
    assert_eq!(t.users.id_of(&user.phone).await.unwrap(), Some(user.id));
    assert_eq!(t.users.get(user.id).await.unwrap(), Some(user.clone()));
    assert_eq!(
        t.users.owner_of(&user.invite_code).await.unwrap(),
        Some(user.id)
    );
}

#[tokio::test]
async fn a_deleted_user_is_reported_deleted() {
    let t = tables().await;
    let user = support::a_user(phone());
    t.users.create(&user).await.unwrap();
    let deleted = t
        .losing_one("TransactWriteItems", t.users.delete(&user, now()))
        .await
        .unwrap();
    assert!(deleted, "the resend answers the first sending's success");
    assert_eq!(t.users.get(user.id).await.unwrap(), None);
    assert_eq!(t.users.id_of(&user.phone).await.unwrap(), None);
    assert_eq!(t.users.owner_of(&user.invite_code).await.unwrap(), None);
}

#[tokio::test]
async fn a_referrer_is_reported_set() {
    let t = tables().await;
    let mut made = Vec::new();
    for _ in 0..2 {
        let user = support::a_user(phone());
        t.users.create(&user).await.unwrap();
        made.push(user);
    }
    let (referrer, joiner) = (&made[0], &made[1]);
    let to = Referrer {
        id: referrer.id,
        invite_code: referrer.invite_code.clone(),
    };
    let write = t
        .losing_one(
            "TransactWriteItems",
            t.users.set_referrer(joiner.id, &to, referrer.id, now()),
        )
        .await
        .unwrap();
    assert_eq!(write, ReferrerWrite::Set, "not AlreadySet by itself");
    let expected = vec![joiner.phone.clone()];
    // A GSI: eventually consistent on AWS.
    let listed = support::eventually(
        || async { t.users.referrals_of(referrer.id, 100).await.unwrap() },
        |listed| listed == &expected,
    )
    .await;
    assert_eq!(listed, expected, "listed once");
}

// ------------------------------------------------------------------ sessions

mod sessions {
    use phone_auth::adapters::dynamo::SessionTable;
    use phone_auth::session::{ClientInfo, Session, SessionPolicy};
    use phone_auth::store::{Revocation, SessionStore};
    use serde_json::json;

    use super::*;

    async fn sessions() -> (LosingAnswers, SessionTable) {
        let http = LosingAnswers::new();
        let client = losing_client(&http).await;
        (http, SessionTable::new(client, env("SESSIONS_TABLE")))
    }

    fn session(at: u64) -> Session {
        let user = UserId::generate();
        SessionPolicy::default().start(user, ClientInfo::default(), at)
    }

    async fn losing_one<T>(
        http: &LosingAnswers,
        operation: &str,
        write: impl Future<Output = T>,
    ) -> T {
        http.lose_after(operation, 0);
        let result = write.await;
        assert!(http.lost_all_planned(), "no {operation} was sent");
        assert_eq!(http.sent(), 2, "the SDK sent the {operation} again");
        result
    }

    #[tokio::test]
    async fn a_session_whose_put_was_resent_is_created_once() {
        let (http, table) = sessions().await;
        let s = session(now());
        assert!(
            losing_one(&http, "PutItem", table.create(&s))
                .await
                .unwrap()
        );
        assert_eq!(table.sessions_of(&s.user).await.unwrap(), vec![s]);
    }

    /// The rotation's answer is lost; the resent request finds the session
    /// one generation on, rotated this very second: the grace period's case,
    /// so the client gets the pair its first request made, and nothing is
    /// revoked.
    #[tokio::test]
    async fn a_refresh_whose_rotation_was_resent_gets_the_new_pair() {
        let (http, table) = sessions().await;
        let s = session(now() - 3600);
        table.create(&s).await.unwrap();
        let refresh = support::refresh_over(table.clone());
        let token = support::refresh_key().token(&s.sid, 1);
        let (status, body) = losing_one(&http, "UpdateItem", async {
            support::answer(
                refresh
                    .refresh(support::post(json!({ "refresh": token })))
                    .await,
            )
        })
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["refresh"],
            support::refresh_key().token(&s.sid, 2).as_str()
        );
        let stored = table.sessions_of(&s.user).await.unwrap().remove(0);
        assert_eq!((stored.generation, stored.revoked_at), (2, None));
    }

    #[tokio::test]
    async fn a_revocation_that_was_resent_reports_the_session_revoked() {
        let (http, table) = sessions().await;
        let s = session(now());
        table.create(&s).await.unwrap();
        let revoked = losing_one(
            &http,
            "UpdateItem",
            table.revoke(&s.sid, Some(&s.user), now()),
        )
        .await;
        // Its own first sending revoked it: not NotFound (which would be a 404).
        assert_eq!(revoked.unwrap(), Revocation::AlreadyRevoked);
    }
}

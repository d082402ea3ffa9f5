//! `Scripted` wraps any port (the in-memory ones of `super::memory`, or the
//! real DynamoDB tables) and, at a chosen call, first runs a [`Step`]: a
//! failure, or something that happens right before the call goes ahead —
//! another request's write, or a wait for parallel calls to meet
//! ([`Script::meet`]). Nothing here sleeps.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use phone_auth::cursor::Position;
use phone_auth::invite::InviteCode;
use phone_auth::limits::Counter;
use phone_auth::otp::{Attempt, OtpPolicy, PendingCode, SendRefusal};
use phone_auth::phone::Phone;
use phone_auth::session::{RefreshToken, Session, SessionId};
use phone_auth::sms::{SmsError, SmsSender};
use phone_auth::store::{
    CounterStore, NewUser, Order, OtpStore, Referral, Referrer, ReferrerWrite, Revocation,
    Rotation, SessionStore, StoreError, User, UserStore,
};
use phone_auth::user::UserId;
use tokio::sync::Barrier;

/// What happens at a scripted call, before the call itself.
pub enum Step {
    /// The call fails without reaching the port: storage or the SMS
    /// provider is down.
    Fail,
    /// This runs to completion first, then the call goes ahead.
    Run(Pin<Box<dyn Future<Output = ()> + Send>>),
    /// The call reaches the port and takes effect, but its answer is lost:
    /// the caller gets an error (a timeout after the write, an SMS handed
    /// over whose answer never came).
    LoseAnswer,
}

impl Step {
    pub fn run(first: impl Future<Output = ()> + Send + 'static) -> Step {
        Step::Run(Box::pin(first))
    }
}

/// The port methods a step can be attached to, by name.
const CALLS: &[&str] = &[
    "issue",
    "count_attempt",
    "consume",
    "give_back_attempt",
    "withdraw",
    "erase_code",
    "take",
    "give_back",
    "id_of",
    "get",
    "create",
    "owner_of",
    "referrer_of",
    "referrals_page",
    "referrals_of",
    "set_referrer",
    "delete",
    "send",
    "create_session",
    "rotate",
    "revoke",
    "sessions_of",
    "session_ids_of",
    "erase",
];

/// The steps of one test, shared by all its scripted ports; counts every call.
#[derive(Clone, Default)]
pub struct Script(Arc<Mutex<ScriptState>>);

#[derive(Default)]
struct ScriptState {
    steps: HashMap<(&'static str, usize), Step>,
    calls: HashMap<&'static str, usize>,
}

impl Script {
    /// Before the `nth` call (counting from 1) of the port method `call`, `step` happens.
    pub fn at(&self, call: &'static str, nth: usize, step: Step) -> &Self {
        assert!(CALLS.contains(&call), "no port method is called {call:?}");
        self.0.lock().unwrap().steps.insert((call, nth), step);
        self
    }

    /// The `nths` calls of `call` each wait there until all of them arrived,
    /// then go on together: parallel requests that all passed the step
    /// before. If one never arrives (the code under test went another way),
    /// the test fails after 10 s instead of hanging.
    pub fn meet(&self, call: &'static str, nths: &[usize]) -> &Self {
        let all_arrived = Arc::new(Barrier::new(nths.len()));
        for &nth in nths {
            let all_arrived = all_arrived.clone();
            self.at(
                call,
                nth,
                Step::run(async move {
                    tokio::time::timeout(Duration::from_secs(10), all_arrived.wait())
                        .await
                        .unwrap_or_else(|_| panic!("{call} {nth} waited in vain for the others"));
                }),
            );
        }
        self
    }

    /// How many times `call` was made through scripted ports.
    pub fn calls(&self, call: &str) -> usize {
        self.0.lock().unwrap().calls.get(call).copied().unwrap_or(0)
    }

    /// Counts the call and runs its step, if it has one; then the call goes
    /// ahead, and what becomes of its answer is the one returned.
    async fn enter<E: ScriptedFailure>(&self, call: &'static str) -> Result<Answer, E> {
        let step = {
            let mut state = self.0.lock().unwrap();
            let count = state.calls.entry(call).or_default();
            *count += 1;
            let nth = *count;
            state.steps.remove(&(call, nth))
        };
        let lost = match step {
            None => false,
            Some(Step::Fail) => return Err(E::scripted(format!("scripted failure of {call}"))),
            Some(Step::Run(first)) => {
                first.await;
                false
            }
            Some(Step::LoseAnswer) => true,
        };
        Ok(Answer { call, lost })
    }
}

/// The error a scripted failure or a lost answer is reported as.
trait ScriptedFailure {
    fn scripted(reason: String) -> Self;
}

impl ScriptedFailure for StoreError {
    fn scripted(reason: String) -> Self {
        StoreError(reason)
    }
}

impl ScriptedFailure for SmsError {
    fn scripted(reason: String) -> Self {
        SmsError(reason)
    }
}

/// What becomes of a call's answer.
#[must_use]
struct Answer {
    call: &'static str,
    lost: bool,
}

impl Answer {
    fn of<T, E: ScriptedFailure>(self, answer: Result<T, E>) -> Result<T, E> {
        if self.lost {
            return Err(E::scripted(format!(
                "answer of {} lost (scripted)",
                self.call
            )));
        }
        answer
    }
}

/// A step that never ran means the test did not exercise what it claims to.
impl Drop for ScriptState {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let missed: Vec<_> = self.steps.keys().collect();
            assert!(
                missed.is_empty(),
                "scripted steps never reached: {missed:?}"
            );
        }
    }
}

/// A port whose calls go through a [`Script`] first.
pub struct Scripted<P> {
    port: P,
    script: Script,
}

impl<P> Scripted<P> {
    pub fn new(port: P, script: &Script) -> Self {
        Scripted {
            port,
            script: script.clone(),
        }
    }
}

impl<P: OtpStore> OtpStore for Scripted<P> {
    async fn issue(
        &self,
        code: &PendingCode,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Option<SendRefusal>, StoreError> {
        let answer = self.script.enter("issue").await?;
        answer.of(self.port.issue(code, policy, now).await)
    }

    async fn count_attempt(
        &self,
        phone: &Phone,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Attempt, StoreError> {
        let answer = self.script.enter("count_attempt").await?;
        answer.of(self.port.count_attempt(phone, policy, now).await)
    }

    async fn consume(
        &self,
        phone: &Phone,
        code_hash: &[u8],
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> Result<bool, StoreError> {
        let answer = self.script.enter("consume").await?;
        answer.of(self
            .port
            .consume(phone, code_hash, policy, checked_at)
            .await)
    }

    async fn give_back_attempt(
        &self,
        counted: &PendingCode,
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> Result<bool, StoreError> {
        let answer = self.script.enter("give_back_attempt").await?;
        answer.of(self
            .port
            .give_back_attempt(counted, policy, checked_at)
            .await)
    }

    async fn withdraw(&self, phone: &Phone, code_hash: &[u8]) -> Result<bool, StoreError> {
        let answer = self.script.enter("withdraw").await?;
        answer.of(self.port.withdraw(phone, code_hash).await)
    }

    async fn erase_code(&self, phone: &Phone) -> Result<(), StoreError> {
        let answer = self.script.enter("erase_code").await?;
        answer.of(self.port.erase_code(phone).await)
    }
}

impl<P: CounterStore> CounterStore for Scripted<P> {
    async fn take(&self, counter: &Counter) -> Result<bool, StoreError> {
        let answer = self.script.enter("take").await?;
        answer.of(self.port.take(counter).await)
    }

    async fn give_back(&self, counter: &Counter) -> Result<(), StoreError> {
        let answer = self.script.enter("give_back").await?;
        answer.of(self.port.give_back(counter).await)
    }
}

impl<P: UserStore> UserStore for Scripted<P> {
    async fn id_of(&self, phone: &Phone) -> Result<Option<UserId>, StoreError> {
        let answer = self.script.enter("id_of").await?;
        answer.of(self.port.id_of(phone).await)
    }

    async fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        let answer = self.script.enter("get").await?;
        answer.of(self.port.get(id).await)
    }

    async fn create(&self, user: &User) -> Result<NewUser, StoreError> {
        let answer = self.script.enter("create").await?;
        answer.of(self.port.create(user).await)
    }

    async fn owner_of(&self, code: &InviteCode) -> Result<Option<UserId>, StoreError> {
        let answer = self.script.enter("owner_of").await?;
        answer.of(self.port.owner_of(code).await)
    }

    async fn referrer_of(&self, id: UserId) -> Result<Option<UserId>, StoreError> {
        let answer = self.script.enter("referrer_of").await?;
        answer.of(self.port.referrer_of(id).await)
    }

    async fn referrals_page(
        &self,
        referrer: UserId,
        order: Order,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError> {
        let answer = self.script.enter("referrals_page").await?;
        answer.of(self
            .port
            .referrals_page(referrer, order, after, limit)
            .await)
    }

    async fn referrals_of(&self, id: UserId, max: usize) -> Result<Vec<Phone>, StoreError> {
        let answer = self.script.enter("referrals_of").await?;
        answer.of(self.port.referrals_of(id, max).await)
    }

    async fn set_referrer(
        &self,
        id: UserId,
        referrer: &Referrer,
        chain_top: UserId,
        now: u64,
    ) -> Result<ReferrerWrite, StoreError> {
        let answer = self.script.enter("set_referrer").await?;
        answer.of(self.port.set_referrer(id, referrer, chain_top, now).await)
    }

    async fn delete(&self, user: &User, now: u64) -> Result<bool, StoreError> {
        let answer = self.script.enter("delete").await?;
        answer.of(self.port.delete(user, now).await)
    }
}

impl<P: SmsSender> SmsSender for Scripted<P> {
    async fn send(&self, phone: &Phone, text: &str) -> Result<(), SmsError> {
        let answer = self.script.enter("send").await?;
        answer.of(self.port.send(phone, text).await)
    }
}

impl<P: SessionStore> SessionStore for Scripted<P> {
    async fn create(&self, session: &Session) -> Result<bool, StoreError> {
        let answer = self.script.enter("create_session").await?;
        answer.of(self.port.create(session).await)
    }

    async fn rotate(
        &self,
        token: &RefreshToken,
        idle_expires_at: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let answer = self.script.enter("rotate").await?;
        answer.of(self.port.rotate(token, idle_expires_at, now).await)
    }

    async fn revoke(
        &self,
        sid: &SessionId,
        owner: Option<&UserId>,
        now: u64,
    ) -> Result<Revocation, StoreError> {
        let answer = self.script.enter("revoke").await?;
        answer.of(self.port.revoke(sid, owner, now).await)
    }

    async fn sessions_of(&self, user: &UserId) -> Result<Vec<Session>, StoreError> {
        let answer = self.script.enter("sessions_of").await?;
        answer.of(self.port.sessions_of(user).await)
    }

    async fn session_ids_of(&self, user: &UserId) -> Result<Vec<SessionId>, StoreError> {
        let answer = self.script.enter("session_ids_of").await?;
        answer.of(self.port.session_ids_of(user).await)
    }

    async fn erase(&self, sid: &SessionId) -> Result<(), StoreError> {
        let answer = self.script.enter("erase").await?;
        answer.of(self.port.erase(sid).await)
    }
}

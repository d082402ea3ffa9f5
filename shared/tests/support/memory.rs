//! In-memory ports for deterministic race tests: `MemoryOtps` and
//! `MemoryUsers` hold the rules of the DynamoDB adapter in plain Rust — each
//! method is one atomic step under a lock, as each DynamoDB request (or
//! transaction) is one atomic write whose condition is the rule — and
//! `MemorySms` records what was sent. Failures and interleavings come from
//! wrapping them in `super::scripted::Scripted`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use phone_auth::cursor::Position;
use phone_auth::invite::InviteCode;
use phone_auth::limits::Counter;
use phone_auth::otp::{Attempt, OtpPolicy, PendingCode, SendRefusal, SendWindow};
use phone_auth::phone::Phone;
use phone_auth::session::{RefreshToken, Session, SessionId};
use phone_auth::sms::{SmsError, SmsSender};
use phone_auth::store::{
    CounterStore, NewUser, Order, OtpStore, Referral, Referrer, ReferrerWrite, Revocation,
    Rotation, SessionStore, StoreError, User, UserStore,
};
use phone_auth::user::UserId;

// ---------------------------------------------------------------- one-time codes

/// A phone's item in the codes table: its send window and its pending code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpRecord {
    pub window_start: u64,
    /// SMS counted in the window (a withdrawn one is given back).
    pub sends: u32,
    /// When the last code was sent; kept after the code is used.
    pub last_sent_at: u64,
    pub pending: Option<PendingCode>,
    /// Checks that did not sign in, by lockout window (counted when the
    /// check is, taken back when it signs in: the adapter's rule).
    pub failed_checks: HashMap<u64, i64>,
}

impl OtpRecord {
    fn window(&self, now: u64, policy: &OtpPolicy) -> SendWindow {
        SendWindow {
            window_start: self.window_start,
            sends: self.sends,
            pending_since: self.pending.as_ref().map(|_| self.last_sent_at),
            failed_checks: self.failed_in(now, policy),
        }
    }

    pub fn failed_in(&self, now: u64, policy: &OtpPolicy) -> u32 {
        let window = policy.lockout_window(now).index;
        self.failed_checks
            .get(&window)
            .copied()
            .unwrap_or(0)
            .clamp(0, i64::from(u32::MAX)) as u32
    }
}

#[derive(Clone, Default)]
pub struct MemoryOtps(Arc<Mutex<HashMap<Phone, OtpRecord>>>);

impl MemoryOtps {
    pub fn record(&self, phone: &Phone) -> Option<OtpRecord> {
        self.0.lock().unwrap().get(phone).cloned()
    }

    /// Removes the pending code if it is still `code_hash`: `consume` (which
    /// takes its check back from lockout window `refund`) and `withdraw`.
    fn end_code(
        &self,
        phone: &Phone,
        code_hash: &[u8],
        give_send_back: bool,
        refund: Option<u64>,
    ) -> bool {
        let mut records = self.0.lock().unwrap();
        let Some(record) = records.get_mut(phone) else {
            return false;
        };
        if record.pending.as_ref().map(|p| p.code_hash.as_slice()) != Some(code_hash) {
            return false;
        }
        record.pending = None;
        if give_send_back {
            record.sends -= 1;
        }
        if let Some(window) = refund {
            *record.failed_checks.entry(window).or_default() -= 1;
        }
        true
    }
}

impl OtpStore for MemoryOtps {
    async fn issue(
        &self,
        code: &PendingCode,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Option<SendRefusal>, StoreError> {
        let mut records = self.0.lock().unwrap();
        let current = records.get(&code.phone).map(|r| r.window(now, policy));
        if let Some(refusal) = current.and_then(|w| w.refusal(now, policy)) {
            return Ok(Some(refusal));
        }
        let (window_start, sends) = match current {
            Some(w) if !w.is_over(now, policy) => (w.window_start, w.sends + 1),
            _ => (now, 1),
        };
        let pending = PendingCode {
            attempts: 0,
            ..code.clone()
        };
        let failed_checks = records
            .remove(&code.phone)
            .map(|r| r.failed_checks)
            .unwrap_or_default();
        records.insert(
            code.phone.clone(),
            OtpRecord {
                window_start,
                sends,
                last_sent_at: now,
                pending: Some(pending),
                failed_checks,
            },
        );
        Ok(None)
    }

    async fn count_attempt(
        &self,
        phone: &Phone,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Attempt, StoreError> {
        let mut records = self.0.lock().unwrap();
        let Some(record) = records.get_mut(phone) else {
            return Ok(Attempt::NoCode);
        };
        // The adapter's condition: a code, unexpired, with an attempt left,
        // on a phone that is not locked. Why it failed is the policy's call.
        let failed = record.failed_in(now, policy);
        let countable = policy.locked_for(failed, now).is_none()
            && record.pending.as_ref().is_some_and(|pending| {
                !pending.is_expired(now) && pending.attempts < policy.max_attempts
            });
        let Some(pending) = record.pending.as_mut().filter(|_| countable) else {
            return Ok(policy.refused_check(failed, record.pending.as_ref(), now));
        };
        pending.attempts += 1;
        let counted = pending.clone();
        let window = policy.lockout_window(now).index;
        *record.failed_checks.entry(window).or_default() += 1;
        Ok(Attempt::Counted(counted))
    }

    async fn consume(
        &self,
        phone: &Phone,
        code_hash: &[u8],
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> Result<bool, StoreError> {
        let refund = policy.lockout_window(checked_at).index;
        Ok(self.end_code(phone, code_hash, false, Some(refund)))
    }

    async fn give_back_attempt(
        &self,
        counted: &PendingCode,
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> Result<bool, StoreError> {
        let mut records = self.0.lock().unwrap();
        let Some(record) = records.get_mut(&counted.phone) else {
            return Ok(false);
        };
        let Some(pending) = record.pending.as_mut() else {
            return Ok(false);
        };
        if pending.code_hash != counted.code_hash || pending.attempts != counted.attempts {
            return Ok(false);
        }
        pending.attempts -= 1;
        let window = policy.lockout_window(checked_at).index;
        *record.failed_checks.entry(window).or_default() -= 1;
        Ok(true)
    }

    async fn withdraw(&self, phone: &Phone, code_hash: &[u8]) -> Result<bool, StoreError> {
        Ok(self.end_code(phone, code_hash, true, None))
    }

    async fn erase_code(&self, phone: &Phone) -> Result<(), StoreError> {
        if let Some(record) = self.0.lock().unwrap().get_mut(phone) {
            record.pending = None;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- budgets

/// The budgets' counters by key: each take and give-back one atomic step
/// under the lock, with the adapter's conditions.
#[derive(Clone, Default)]
pub struct MemoryCounters(Arc<Mutex<HashMap<String, u64>>>);

impl MemoryCounters {
    pub fn taken(&self, counter: &Counter) -> u64 {
        self.0
            .lock()
            .unwrap()
            .get(&counter.key)
            .copied()
            .unwrap_or(0)
    }

    /// Every key with units taken (none after a request that gave all back).
    pub fn all_taken(&self) -> HashMap<String, u64> {
        let mut all = self.0.lock().unwrap().clone();
        all.retain(|_, taken| *taken > 0);
        all
    }
}

impl CounterStore for MemoryCounters {
    async fn take(&self, counter: &Counter) -> Result<bool, StoreError> {
        let mut counts = self.0.lock().unwrap();
        let taken = counts.entry(counter.key.clone()).or_default();
        if *taken >= counter.limit {
            return Ok(false);
        }
        *taken += 1;
        Ok(true)
    }

    async fn give_back(&self, counter: &Counter) -> Result<(), StoreError> {
        let mut counts = self.0.lock().unwrap();
        if let Some(taken) = counts.get_mut(&counter.key) {
            *taken = taken.saturating_sub(1);
        }
        Ok(())
    }
}

// ---------------------------------------------------------------- users

#[derive(Default)]
struct Users {
    /// The `USER#<id>` items; a tombstone is the user with `deleted_at`.
    by_id: HashMap<UserId, (User, Option<u64>)>,
    /// The `PHONE#<phone>` claims: one user per phone.
    phones: HashMap<Phone, UserId>,
    /// The `INVITE#<code>` claims, and whether the code is retired.
    claims: HashMap<InviteCode, (UserId, bool)>,
    /// Users with a referrer and when they got it (the referrer index).
    referred: Vec<(UserId, u64)>,
}

impl Users {
    fn live(&self, id: UserId) -> Option<&User> {
        match self.by_id.get(&id) {
            Some((user, None)) => Some(user),
            _ => None,
        }
    }
}

#[derive(Clone, Default)]
pub struct MemoryUsers(Arc<Mutex<Users>>);

impl MemoryUsers {
    /// A user with a new phone and id, as if signed up earlier, with invite
    /// code `code` (6 letters or digits).
    pub fn seed(&self, code: &str) -> User {
        let user = User {
            id: UserId::generate(),
            phone: super::parse_phone(&super::unique_phone()),
            invite_code: InviteCode::parse(code).expect("a well-formed invite code"),
            referrer: None,
            created_at: 0,
            referrals_count: 0,
        };
        let mut users = self.0.lock().unwrap();
        assert!(
            users
                .claims
                .insert(user.invite_code.clone(), (user.id, false))
                .is_none()
        );
        assert!(users.phones.insert(user.phone.clone(), user.id).is_none());
        users.by_id.insert(user.id, (user.clone(), None));
        user
    }

    /// The user who owns `phone` now.
    pub fn user(&self, phone: &Phone) -> Option<User> {
        let users = self.0.lock().unwrap();
        users
            .phones
            .get(phone)
            .and_then(|id| users.live(*id))
            .cloned()
    }

    /// Every invite code claimed for `phone`'s user: theirs, and any other
    /// would be an orphan claim left by a failed sign-up.
    pub fn codes_claimed_by(&self, phone: &Phone) -> Vec<InviteCode> {
        let users = self.0.lock().unwrap();
        let Some(id) = users.phones.get(phone) else {
            return vec![];
        };
        let mut codes: Vec<InviteCode> = users
            .claims
            .iter()
            .filter(|(_, (owner, _))| owner == id)
            .map(|(code, _)| code.clone())
            .collect();
        codes.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        codes
    }
}

impl UserStore for MemoryUsers {
    async fn id_of(&self, phone: &Phone) -> Result<Option<UserId>, StoreError> {
        Ok(self.0.lock().unwrap().phones.get(phone).copied())
    }

    async fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        Ok(self.0.lock().unwrap().live(id).cloned())
    }

    /// The user and the claims of its phone and code, each on condition
    /// that it does not exist, all or none (one transaction).
    async fn create(&self, user: &User) -> Result<NewUser, StoreError> {
        let mut users = self.0.lock().unwrap();
        if users.phones.contains_key(&user.phone) {
            return Ok(NewUser::PhoneTaken);
        }
        if users.by_id.contains_key(&user.id) {
            return Ok(NewUser::IdTaken);
        }
        if users.claims.contains_key(&user.invite_code) {
            return Ok(NewUser::InviteCodeTaken);
        }
        users
            .claims
            .insert(user.invite_code.clone(), (user.id, false));
        users.phones.insert(user.phone.clone(), user.id);
        users.by_id.insert(user.id, (user.clone(), None));
        Ok(NewUser::Created(user.clone()))
    }

    async fn owner_of(&self, code: &InviteCode) -> Result<Option<UserId>, StoreError> {
        Ok(match self.0.lock().unwrap().claims.get(code) {
            Some((owner, false)) => Some(*owner),
            _ => None,
        })
    }

    /// Tombstones keep their link.
    async fn referrer_of(&self, id: UserId) -> Result<Option<UserId>, StoreError> {
        let users = self.0.lock().unwrap();
        Ok(users
            .by_id
            .get(&id)
            .and_then(|(user, _)| user.referrer.as_ref())
            .map(|referrer| referrer.id))
    }

    /// The index's order: by when they joined, then by id; a page starts
    /// strictly after `after`, whether or not that referral is still there.
    async fn referrals_page(
        &self,
        referrer: UserId,
        order: Order,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError> {
        let users = self.0.lock().unwrap();
        let mut found: Vec<Referral> = users
            .referred
            .iter()
            .filter_map(|(id, at)| users.live(*id).map(|user| (user, *at)))
            .filter(|(user, _)| user.referrer.as_ref().is_some_and(|r| r.id == referrer))
            .map(|(user, referred_at)| Referral {
                id: user.id,
                phone: user.phone.clone(),
                referred_at,
            })
            .collect();
        let key = |p: Position| (p.referred_at, p.id);
        found.sort_by_key(|r| key(r.position()));
        if order == Order::NewestFirst {
            found.reverse();
        }
        if let Some(after) = after {
            found.retain(|r| match order {
                Order::OldestFirst => key(r.position()) > key(*after),
                Order::NewestFirst => key(r.position()) < key(*after),
            });
        }
        found.truncate(limit);
        Ok(found)
    }

    /// "My referrer is X" on condition that I have none (and am not
    /// deleted), and that the chain's top still has none (the adapter's
    /// transaction: an update and a condition check).
    async fn set_referrer(
        &self,
        id: UserId,
        referrer: &Referrer,
        chain_top: UserId,
        now: u64,
    ) -> Result<ReferrerWrite, StoreError> {
        let mut users = self.0.lock().unwrap();
        let Some(me) = users.live(id) else {
            return Err(StoreError("user deleted while setting the referrer".into()));
        };
        if let Some(existing) = &me.referrer {
            return Ok(ReferrerWrite::AlreadySet(existing.invite_code.clone()));
        }
        let top_moved = users
            .by_id
            .get(&chain_top)
            .is_none_or(|(top, _)| top.referrer.is_some());
        if top_moved {
            return Ok(ReferrerWrite::ChainMoved);
        }
        users.by_id.get_mut(&id).unwrap().0.referrer = Some(referrer.clone());
        users.referred.push((id, now));
        Ok(ReferrerWrite::Set)
    }

    async fn delete(&self, user: &User, now: u64) -> Result<bool, StoreError> {
        let mut users = self.0.lock().unwrap();
        if users.live(user.id).is_none() {
            return Ok(false);
        }
        users.by_id.get_mut(&user.id).unwrap().1 = Some(now);
        users.phones.remove(&user.phone);
        if let Some(claim) = users.claims.get_mut(&user.invite_code) {
            claim.1 = true;
        }
        Ok(true)
    }
}

// ---------------------------------------------------------------- sessions

/// Sessions by id, each write one atomic step under the lock with the
/// adapter's conditions (the DynamoDB requests of `SessionTable`).
#[derive(Clone, Default)]
pub struct MemorySessions(Arc<Mutex<HashMap<SessionId, Session>>>);

impl MemorySessions {
    pub fn get(&self, sid: &SessionId) -> Option<Session> {
        self.0.lock().unwrap().get(sid).cloned()
    }

    pub fn all(&self) -> Vec<Session> {
        self.0.lock().unwrap().values().cloned().collect()
    }
}

impl SessionStore for MemorySessions {
    async fn create(&self, session: &Session) -> Result<bool, StoreError> {
        let mut sessions = self.0.lock().unwrap();
        if sessions.contains_key(&session.sid) {
            return Ok(false);
        }
        sessions.insert(session.sid.clone(), session.clone());
        Ok(true)
    }

    async fn rotate(
        &self,
        token: &RefreshToken,
        idle_expires_at: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let mut sessions = self.0.lock().unwrap();
        let Some(session) = sessions.get_mut(&token.sid) else {
            return Ok(Rotation::Refused(None));
        };
        if session.generation != token.generation || !session.is_live(now) {
            return Ok(Rotation::Refused(Some(session.clone())));
        }
        session.generation += 1;
        session.rotated_at = now;
        session.last_used_at = now;
        session.idle_expires_at = idle_expires_at;
        Ok(Rotation::Rotated(session.clone()))
    }

    async fn revoke(
        &self,
        sid: &SessionId,
        owner: Option<&UserId>,
        now: u64,
    ) -> Result<Revocation, StoreError> {
        let mut sessions = self.0.lock().unwrap();
        match sessions.get_mut(sid) {
            // The condition DynamoDB's write carries: it exists, is the
            // owner's, and is not revoked yet.
            Some(session)
                if owner.is_none_or(|owner| *owner == session.user)
                    && session.revoked_at.is_none() =>
            {
                session.revoked_at = Some(now);
                Ok(Revocation::Revoked { user: session.user })
            }
            found => Ok(Revocation::refused(found.as_deref(), owner)),
        }
    }

    async fn sessions_of(&self, user: &UserId) -> Result<Vec<Session>, StoreError> {
        let sessions = self.0.lock().unwrap();
        Ok(sessions
            .values()
            .filter(|s| s.user == *user)
            .cloned()
            .collect())
    }

    async fn session_ids_of(&self, user: &UserId) -> Result<Vec<SessionId>, StoreError> {
        Ok(self
            .sessions_of(user)
            .await?
            .into_iter()
            .map(|s| s.sid)
            .collect())
    }

    async fn erase(&self, sid: &SessionId) -> Result<(), StoreError> {
        self.0.lock().unwrap().remove(sid);
        Ok(())
    }
}

// ---------------------------------------------------------------- SMS

/// Delivers every SMS into a list (failures come from `Scripted`).
#[derive(Clone, Default)]
pub struct MemorySms(Arc<Mutex<Vec<(Phone, String)>>>);

impl MemorySms {
    pub fn sent(&self) -> Vec<(Phone, String)> {
        self.0.lock().unwrap().clone()
    }
}

impl SmsSender for MemorySms {
    async fn send(&self, phone: &Phone, text: &str) -> Result<(), SmsError> {
        self.0
            .lock()
            .unwrap()
            .push((phone.clone(), text.to_string()));
        Ok(())
    }
}

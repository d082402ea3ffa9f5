//! What the endpoints need from storage, in domain terms. The DynamoDB adapter
//! (`adapters::dynamo`) is the implementation; nothing here knows about AWS.

use std::future::Future;

use crate::cursor::Position;
use crate::invite::InviteCode;
use crate::limits::Counter;
use crate::otp::{Attempt, OtpPolicy, PendingCode, SendRefusal};
use crate::phone::Phone;
use crate::session::{RefreshToken, Session, SessionId};
use crate::user::UserId;
use crate::user_events::CountChange;

/// Storage could not answer (network, throttling, service error). Maps to 503.
#[derive(Debug, thiserror::Error)]
#[error("storage unavailable: {0}")]
pub struct StoreError(pub String);

/// A user as signed up. A deleted user is no `User`: storage keeps only a
/// tombstone (their id, retired invite code and referrer link), which
/// [`UserStore::get`] does not return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub phone: Phone,
    pub invite_code: InviteCode,
    pub referrer: Option<Referrer>,
    pub created_at: u64,
    /// How many users entered this user's invite code, as the consumer of
    /// the table's stream counts them. Eventually consistent (it follows a
    /// referral by seconds), and never written by a request: a popular
    /// referrer's item must not become a hot key. 0 until the first; a new
    /// `User` has 0, and creating one never writes it.
    pub referrals_count: u64,
}

/// One of a user's referrals, as the referrer index lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referral {
    pub id: UserId,
    pub phone: Phone,
    /// When they entered the referrer's invite code (unix seconds).
    pub referred_at: u64,
}

impl Referral {
    /// Where a page that ends with this referral ends.
    pub fn position(&self) -> Position {
        Position {
            referred_at: self.referred_at,
            id: self.id,
        }
    }
}

/// In which order referrals are read: by when they entered the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    OldestFirst,
    NewestFirst,
}

/// Who referred a user, fixed once set (and kept when either is deleted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Referrer {
    pub id: UserId,
    pub invite_code: InviteCode,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewUser {
    Created(User),
    /// The phone is someone's already (a parallel sign-in created them first).
    PhoneTaken,
    /// The generated id is already someone's (or a tombstone's); draw another.
    IdTaken,
    /// The generated invite code is already someone's, or retired; draw another.
    InviteCodeTaken,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferrerWrite {
    Set,
    /// The user already has a referrer (with this invite code).
    AlreadySet(InviteCode),
    /// The top of the chain gained a referrer meanwhile: walk it again.
    ChainMoved,
}

/// One item per phone holds its pending code (minutes) and its send window
/// (an hour): using or withdrawing the code never resets the window.
/// Every write is one conditional request that encodes the rule it enforces,
/// so parallel requests cannot get past it, and a write the SDK retried after
/// a lost response is recognised as the caller's own.
pub trait OtpStore: Send + Sync {
    /// Stores `code` as the phone's pending code and counts it in the phone's
    /// send window, if [`SendWindow::refusal`](crate::otp::SendWindow::refusal)
    /// allows a code now; otherwise returns that refusal. One request when
    /// the phone opens a new window (the common case), two within a window.
    fn issue(
        &self,
        code: &PendingCode,
        policy: &OtpPolicy,
        now: u64,
    ) -> impl Future<Output = Result<Option<SendRefusal>, StoreError>> + Send;

    /// Counts one check atomically, refusing it once `max_attempts` were
    /// made or while the phone is locked, before anyone compares the code:
    /// parallel guesses cannot exceed either limit. The check is counted as
    /// failed in the phone's lockout window too, in the same write, until
    /// [`consume`](Self::consume) takes it back: a check that signs in does
    /// not count (nor a right one that storage failed to finish:
    /// [`give_back_attempt`](Self::give_back_attempt)).
    fn count_attempt(
        &self,
        phone: &Phone,
        policy: &OtpPolicy,
        now: u64,
    ) -> impl Future<Output = Result<Attempt, StoreError>> + Send;

    /// Uses up the pending code if it is still the one with `code_hash`
    /// (single use), and takes its check out of the failed checks of the
    /// lockout window of `checked_at` (the `now` it was counted with); its
    /// send stays counted. False if it was already used or replaced.
    fn consume(
        &self,
        phone: &Phone,
        code_hash: &[u8],
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives back a check of the right code that could not finish: storage
    /// failed after the comparison (creating the user, or using the code).
    /// Its attempt, and its failed check in the lockout window of
    /// `checked_at`, are taken back, so that a person retrying the right code
    /// through an outage neither spends the code nor locks the phone. Only if
    /// the code is still `counted` and nothing was counted since (its
    /// `attempts` are still `counted.attempts`): otherwise, and when the SDK
    /// resends this request after a lost answer, nothing changes and the
    /// answer is false (an over-count, the safe direction).
    fn give_back_attempt(
        &self,
        counted: &PendingCode,
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes back a code whose SMS could not be sent: no longer pending (no
    /// cooldown), and its send no longer counted. False if it was not pending.
    fn withdraw(
        &self,
        phone: &Phone,
        code_hash: &[u8],
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Erases the phone's pending code, if any (its account is being
    /// deleted). Its send window and lockout counts stay until they expire:
    /// deleting an account must not reset the limits on its phone.
    fn erase_code(&self, phone: &Phone) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// The budgets' counters ([`crate::limits`]), each one atomic conditional
/// increment: parallel requests at the limit cannot all pass.
pub trait CounterStore: Send + Sync {
    /// Takes one unit if the counter's window has fewer than `limit` taken;
    /// false if it is spent. (A limit of 0 never reaches storage.)
    fn take(&self, counter: &Counter) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Gives back one unit taken for an SMS that was not sent; nothing if the
    /// count is already 0 or gone (its window is over). Sent at most once:
    /// a give-back resent after its answer was lost would give back another
    /// request's unit too, so an error may leave the unit taken (too much
    /// counted, never too little).
    fn give_back(&self, counter: &Counter) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Users, their phones and their invite codes. Each phone and each invite
/// code has one owner, each enforced by a conditional write in the
/// transaction that creates the user; a deleted user leaves a tombstone that
/// keeps their id, their invite code (retired: never issued again, never
/// found) and their referrer link (the no-circle rule walks through it), but
/// is no longer among their referrer's referrals.
pub trait UserStore: Send + Sync {
    /// The id of the user who owns `phone`, read consistently.
    fn id_of(
        &self,
        phone: &Phone,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// The user, read consistently; None if there is none or it was deleted.
    fn get(&self, id: UserId) -> impl Future<Output = Result<Option<User>, StoreError>> + Send;

    /// Creates the user, claims its phone and its invite code, in one atomic write.
    fn create(&self, user: &User) -> impl Future<Output = Result<NewUser, StoreError>> + Send;

    /// The owner of an invite code in use; None if unknown or retired.
    fn owner_of(
        &self,
        code: &InviteCode,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// One link of the referrer chain, read consistently; through tombstones too.
    fn referrer_of(
        &self,
        id: UserId,
    ) -> impl Future<Output = Result<Option<UserId>, StoreError>> + Send;

    /// At most `limit` of the users (not deleted) who entered `referrer`'s
    /// invite code, in `order`, starting right after `after` (from the
    /// start without). Read from an index, which is eventually consistent: a
    /// referral of a moment ago may be missing. Reads `limit` index items
    /// (more only while it meets tombstones, which deletion takes out of the
    /// index: only accounts deleted before it did are still there), whatever
    /// the number of referrals.
    fn referrals_page(
        &self,
        referrer: UserId,
        order: Order,
        after: Option<&Position>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Referral>, StoreError>> + Send;

    /// Phones of the first `max` users (not deleted) who entered `id`'s
    /// invite code, oldest first: what a profile lists.
    fn referrals_of(
        &self,
        id: UserId,
        max: usize,
    ) -> impl Future<Output = Result<Vec<Phone>, StoreError>> + Send {
        async move {
            let page = self
                .referrals_page(id, Order::OldestFirst, None, max)
                .await?;
            Ok(page.into_iter().map(|r| r.phone).collect())
        }
    }

    /// Sets `id`'s referrer if it has none (and is not deleted), on
    /// condition that `chain_top` still has no referrer of its own.
    fn set_referrer(
        &self,
        id: UserId,
        referrer: &Referrer,
        chain_top: UserId,
        now: u64,
    ) -> impl Future<Output = Result<ReferrerWrite, StoreError>> + Send;

    /// Turns the user into a tombstone at `now`, in one atomic write: their
    /// phone is erased and free to sign up again (as somebody new), their
    /// invite code retired, and they leave their referrer's referrals.
    /// False if they were already deleted (or never existed): a retried
    /// deletion finds its work done.
    fn delete(
        &self,
        user: &User,
        now: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// The referrers' `referrals_count`, kept from the users table's stream by
/// the publish-events function: never written in the request path, so a
/// popular referrer's item is not written by every sign-up they bring.
pub trait ReferralCounts: Send + Sync {
    /// Applies the change once: applied again (its stream record was
    /// delivered again), it changes nothing.
    fn apply(&self, change: &CountChange) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// How the one conditional write of a refresh ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotation {
    /// The session moved to the next generation; here as written.
    Rotated(Session),
    /// The condition failed: the session as it was then (None: no such
    /// item), for [`judge_failed_rotation`](crate::session::judge_failed_rotation).
    Refused(Option<Session>),
}

/// How a revocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// This request revoked it: a session of `user`'s.
    Revoked { user: UserId },
    /// It was revoked before (by another request, or an earlier try of this one).
    AlreadyRevoked,
    /// No such session, or not the given owner's.
    NotFound,
}

impl Revocation {
    /// What a revocation that storage refused means, from the session as it
    /// was (`None`: there is none): someone else's session is `NotFound`,
    /// like a missing one, so that ids cannot be probed.
    pub fn refused(found: Option<&Session>, owner: Option<&UserId>) -> Revocation {
        match found {
            Some(session)
                if owner.is_none_or(|owner| *owner == session.user)
                    && session.revoked_at.is_some() =>
            {
                Revocation::AlreadyRevoked
            }
            _ => Revocation::NotFound,
        }
    }
}

/// Sessions (crate::session): one item per session. Each write is one
/// conditional request, so parallel refreshes and revocations cannot both
/// pass a rule.
pub trait SessionStore: Send + Sync {
    /// Stores a new session; false if its id is taken (128 random bits:
    /// never, but the write refuses to overwrite rather than trust that).
    fn create(&self, session: &Session) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Moves the session from `token.generation` to the next one, on
    /// condition that it is at that generation, not revoked and not expired
    /// at `now`; the use moves its idle expiry to `idle_expires_at` (the
    /// session still ends at its absolute expiry if that comes first:
    /// [`Session::is_expired`]). Refused: the session as the write found it,
    /// from the same request (no read before it, none after).
    fn rotate(
        &self,
        token: &RefreshToken,
        idle_expires_at: u64,
        now: u64,
    ) -> impl Future<Output = Result<Rotation, StoreError>> + Send;

    /// Marks the session revoked at `now` unless it already is; with
    /// `owner`, only if it belongs to them (anyone else's is `NotFound`).
    fn revoke(
        &self,
        sid: &SessionId,
        owner: Option<&UserId>,
        now: u64,
    ) -> impl Future<Output = Result<Revocation, StoreError>> + Send;

    /// Every session of `user` still stored (revoked and expired ones too,
    /// until TTL removes them), in no particular order. Found through an
    /// index, which is eventually consistent: a session created a moment ago
    /// may be missing; what is listed is read consistently.
    fn sessions_of(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<Session>, StoreError>> + Send;

    /// The ids of `user`'s sessions, from the index alone (for revoking them all).
    fn session_ids_of(
        &self,
        user: &UserId,
    ) -> impl Future<Output = Result<Vec<SessionId>, StoreError>> + Send;

    /// Deletes the session's record, whatever its state (its account is
    /// being deleted: the user agent and address go with it). Nothing if
    /// it is gone already.
    fn erase(&self, sid: &SessionId) -> impl Future<Output = Result<(), StoreError>> + Send;
}

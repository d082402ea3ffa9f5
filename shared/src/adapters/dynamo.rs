//! DynamoDB storage. Table layout (created from template.yaml):
//!
//! * Users table, key `pk`, three kinds of item:
//!   - a user: `pk` = `USER#<id>`, `id`, `phone`, `invite_code`,
//!     `referrer_id`, `referrer_code`, `referred_at`, `created_at`, and
//!     `referrals_count` (absent: 0), which only the publish-events function
//!     writes from the table's stream, never a request; on a referral,
//!     `counted` while it is in its referrer's count.
//!     Deleted, it stays as a tombstone: `phone` and `referred_at` removed
//!     (which takes it out of `referrer-index`), `deleted_at` set, the rest
//!     kept (its code stays retired, `referrer_id` keeps the no-circle rule).
//!     Tombstones of accounts deleted before `referred_at` was removed
//!     still have it, and are left out of the index's answers by their
//!     missing `phone`.
//!   - a phone's claim: `pk` = `PHONE#<E.164>`, `user_id`: one user per
//!     phone; deleted with the user, so the phone can sign up again.
//!   - an invite code's claim: `pk` = `INVITE#<code>`, `owner_id`, and
//!     `retired_at` once its owner is deleted (never removed: a retired code
//!     is never issued again). Codes are unique through it (a GSI cannot
//!     enforce that), and it resolves a code with a consistent read.
//!
//!   All three are written in one transaction at sign-up, each on condition
//!   that it does not exist.
//!   - GSI `referrer-index` (`referrer_id`, `referred_at`, with `phone`): a
//!     user's live referrals in the order they joined, read a page at a time
//!     (`Limit`, `ExclusiveStartKey` = the last one's `referred_at` and `pk`).
//! * Otps table, key `phone`, two kinds of item:
//!   - a phone's (key: E.164): its send window (`window_start`, `sends`,
//!     `created_at` of the last send) and, while one is pending, its code
//!     (`code_hash`, `attempts`, `code_expires_at` — checked in code, TTL
//!     deletes late); `failed_checks_<n>`: checks that did not sign in during
//!     lockout window `n`. Using or withdrawing a code removes only the code's
//!     attributes; `expires_at`, the TTL attribute, is the send window or the
//!     lockout window after the last write, whichever is longer.
//!     `issued_by`, `attempt_by`, `ended_by`: the nonce of the request that
//!     last wrote, so a write the SDK resent after losing its answer is
//!     recognised (tests/lost_answers.rs).
//!   - a budget's counter (key `IP#<source>#<hour>`, `REGION#<cc>#<day>`,
//!     `SMS#<day>`, `CHECK#<source>#<hour>`; never a phone, which starts
//!     with `+`): `taken`, and `expires_at` at the end of its window.
//! * Sessions table, key `sid`: `user` (the user's id), `gen`, `created_at`, `last_used_at`,
//!   `rotated_at`, `user_agent`, `ip`, `idle_expires_at`, `expires_at` (the
//!   TTL attribute: the absolute expiry), `revoked_at` once revoked.
//!   - GSI `user-index` (`user`, `created_at`), keys only: a user's sessions.
//!     A refresh updates no key attribute of the index, so it costs the index
//!     nothing; the list reads the sessions themselves (consistently) by id.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::CancellationReason;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put, ReturnValue,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use super::aws_error_kind;
use crate::cursor::Position;
use crate::invite::InviteCode;
use crate::limits::Counter;
use crate::otp::{Attempt, LockoutWindow, OtpPolicy, PendingCode, SendRefusal, SendWindow};
use crate::phone::Phone;
use crate::session::{RefreshToken, Session, SessionId};
use crate::store::{
    CounterStore, NewUser, Order, OtpStore, Referral, ReferralCounts, Referrer, ReferrerWrite,
    Revocation, Rotation, SessionStore, StoreError, User, UserStore,
};
use crate::user::UserId;
use crate::user_events::{CountChange, UserChange, UserImage};
use aws_lambda_events::event::dynamodb::EventRecord as StreamRecord;

pub const REFERRER_INDEX: &str = "referrer-index";
pub const USER_INDEX: &str = "user-index";

type Item = HashMap<String, AttributeValue>;

fn unavailable<E: ProvideErrorMetadata, R>(err: SdkError<E, R>) -> StoreError {
    StoreError(aws_error_kind(&err))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn decode<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, StoreError> {
    // serde's message can quote the offending value (a phone): not logged.
    serde_dynamo::from_item(item).map_err(|_| StoreError("unexpected item shape".into()))
}

fn encode(value: &impl Serialize) -> Item {
    serde_dynamo::to_item(value).expect("item types always serialize")
}

/// The string attribute `wanted` of every item of `index` whose number key
/// `key` is `id`, through every page (items without it are left out).
async fn query_by_user(
    client: &Client,
    table: &str,
    index: &str,
    key: &str,
    id: UserId,
    wanted: &str,
) -> Result<Vec<String>, StoreError> {
    let mut pages = client
        .query()
        .table_name(table)
        .index_name(index)
        .key_condition_expression("#key = :id")
        .expression_attribute_names("#key", key)
        .expression_attribute_values(":id", n(id))
        .into_paginator()
        .items()
        .send();
    let mut found = Vec::new();
    while let Some(item) = pages.next().await {
        let item = item.map_err(unavailable)?;
        if let Some(Ok(value)) = item.get(wanted).map(|v| v.as_s()) {
            found.push(value.clone());
        }
    }
    Ok(found)
}

/// How a conditional `UpdateItem` ended: true if it wrote, false if its
/// condition refused it; any other failure is an error.
fn written<T, R>(result: Result<T, SdkError<UpdateItemError, R>>) -> Result<bool, StoreError> {
    Ok(update_outcome(result)?.is_ok())
}

/// How a conditional `UpdateItem` ended: its output if it wrote, or the item
/// its condition refused (with `ReturnValuesOnConditionCheckFailure::AllOld`;
/// None where there was no item); any other failure is an error.
fn update_outcome<T, R>(
    result: Result<T, SdkError<UpdateItemError, R>>,
) -> Result<Result<T, Option<Item>>, StoreError> {
    match result {
        Ok(output) => Ok(Ok(output)),
        Err(err) => match err.as_service_error() {
            Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                Ok(Err(failed.item().cloned()))
            }
            _ => Err(unavailable(err)),
        },
    }
}

// ---------------------------------------------------------------- one-time codes

/// A phone's item: the send window, the pending code while there is one, and
/// the failed checks of recent lockout windows (`failed_checks_<window>`, one
/// attribute per window, read separately: see [`failed_attribute`]).
#[derive(Deserialize)]
struct OtpItem {
    phone: String,
    window_start: u64,
    sends: u32,
    /// When the last code was sent (kept after it is used: it is history).
    created_at: u64,
    #[serde(default)]
    code_hash: Option<String>,
    #[serde(default)]
    attempts: Option<u32>,
    #[serde(default)]
    code_expires_at: Option<u64>,
    /// The requests that last issued a code and counted an attempt (and
    /// `ended_by`, read by `end_code`: the one that used or withdrew it), so a
    /// request the SDK sent twice (its first answer lost) recognises its own
    /// write instead of reporting a refusal.
    #[serde(default)]
    issued_by: Option<String>,
    #[serde(default)]
    attempt_by: Option<String>,
    /// Failed checks in the lockout window the item was read for.
    #[serde(skip)]
    failed_checks: u32,
}

impl OtpItem {
    fn window(&self) -> SendWindow {
        SendWindow {
            window_start: self.window_start,
            sends: self.sends,
            pending_since: self.code_hash.as_ref().map(|_| self.created_at),
            failed_checks: self.failed_checks,
        }
    }

    fn pending(self) -> Result<Option<PendingCode>, StoreError> {
        let (Some(hash), Some(attempts), Some(expires_at)) =
            (self.code_hash, self.attempts, self.code_expires_at)
        else {
            return Ok(None);
        };
        Ok(Some(PendingCode {
            phone: Phone::from_trusted(self.phone),
            code_hash: BASE64
                .decode(hash)
                .map_err(|_| StoreError("stored code_hash is not base64".into()))?,
            attempts,
            created_at: self.created_at,
            expires_at,
        }))
    }
}

/// The attribute counting a phone's failed checks in one lockout window.
/// One attribute per window, so counting is a single `ADD` whatever the
/// window before (a rollover needs no reset, hence no second request); each
/// check removes the previous window's attribute, and the item's TTL the rest.
fn failed_attribute(window: LockoutWindow) -> String {
    format!("failed_checks_{}", window.index)
}

/// The item as stored, with the failed checks of `window`.
fn otp_item(item: Option<&Item>, window: LockoutWindow) -> Result<Option<OtpItem>, StoreError> {
    let Some(item) = item.filter(|i| !i.is_empty()) else {
        return Ok(None);
    };
    let mut decoded = decode::<OtpItem>(item.clone())?;
    decoded.failed_checks = match item.get(&failed_attribute(window)) {
        None => 0,
        Some(value) => value
            .as_n()
            .ok()
            .and_then(|n| n.parse::<i64>().ok())
            .ok_or_else(|| StoreError("stored failed checks are not a number".into()))?
            .clamp(0, i64::from(u32::MAX)) as u32,
    };
    Ok(Some(decoded))
}

/// A fresh random id for one logical write (the SDK resends the same request on retry).
fn request_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// How one attempt at writing a new code ended.
enum IssueStep {
    Issued,
    /// The item as it was when the condition failed (None: no item).
    Refused(Option<OtpItem>),
}

impl IssueStep {
    /// A refusal caused by this request's own write, whose answer was lost
    /// and which the SDK sent again, is the success it reports.
    fn of_request(self, nonce: &str) -> Self {
        match self {
            IssueStep::Refused(Some(item)) if item.issued_by.as_deref() == Some(nonce) => {
                IssueStep::Issued
            }
            step => step,
        }
    }
}

/// The condition every new code needs: the phone is not locked.
const NOT_LOCKED: &str = "(attribute_not_exists(#failed) OR #failed < :max_failed)";

/// The two ways a new code is written.
#[derive(Clone, Copy, Debug)]
enum CodeWrite {
    /// The first code of a new window: written if the phone has no window
    /// yet, or its window is over and no code is pending from within the
    /// cooldown; never to a locked phone. An update, not a put, so the
    /// failed checks of the lockout window survive a new send window.
    OpenWindow,
    /// Another code in the open window: written if the window has room, no
    /// code is pending from within the cooldown and the phone is not locked.
    /// The condition is the rule itself, not "unchanged since read", so
    /// racing requests need no retry.
    SendAgain,
}

impl CodeWrite {
    fn update(self) -> &'static str {
        match self {
            CodeWrite::OpenWindow => {
                "SET window_start = :now, sends = :one, created_at = :now, code_hash = :hash, \
                 attempts = :zero, code_expires_at = :code_expires, issued_by = :nonce, \
                 expires_at = :ttl REMOVE attempt_by, ended_by"
            }
            CodeWrite::SendAgain => {
                "SET code_hash = :hash, attempts = :zero, created_at = :now, \
                 code_expires_at = :code_expires, sends = sends + :one, expires_at = :ttl, \
                 issued_by = :nonce REMOVE attempt_by"
            }
        }
    }

    fn condition(self) -> String {
        match self {
            CodeWrite::OpenWindow => format!(
                "(attribute_not_exists(window_start) OR (window_start <= :window_edge \
                 AND (attribute_not_exists(code_hash) OR created_at <= :cooldown_edge))) \
                 AND {NOT_LOCKED}"
            ),
            CodeWrite::SendAgain => format!(
                "window_start > :window_edge AND sends < :max \
                 AND (attribute_not_exists(code_hash) OR created_at <= :cooldown_edge) \
                 AND {NOT_LOCKED}"
            ),
        }
    }
}

#[derive(Clone, Debug)]
pub struct OtpTable {
    client: Client,
    table: String,
}

impl OtpTable {
    pub fn new(client: Client, table: String) -> Self {
        OtpTable { client, table }
    }

    /// Writes `code` as the phone's pending code, if `write`'s condition
    /// holds. Both writes reset the code's attempts and end any check in
    /// flight (`attempt_by`); `issued_by` lets a resent request recognise its
    /// own write.
    async fn write_code(
        &self,
        write: CodeWrite,
        code: &PendingCode,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<IssueStep, StoreError> {
        let nonce = request_nonce();
        let lockout = policy.lockout_window(now);
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(code.phone.as_str()))
            .update_expression(write.update())
            .condition_expression(write.condition())
            .expression_attribute_names("#failed", failed_attribute(lockout))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":hash", s(&BASE64.encode(&code.code_hash)))
            .expression_attribute_values(":code_expires", n(code.expires_at))
            .expression_attribute_values(":nonce", s(&nonce))
            .expression_attribute_values(":ttl", n(now + policy.item_lifetime()))
            .expression_attribute_values(
                ":window_edge",
                n(now.saturating_sub(policy.send_window_seconds)),
            )
            .expression_attribute_values(
                ":cooldown_edge",
                n(now.saturating_sub(policy.resend_cooldown_seconds)),
            )
            .expression_attribute_values(":max_failed", n(policy.max_failed_checks))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let CodeWrite::SendAgain = write {
            // DynamoDB refuses a value no expression uses, so only here.
            request = request.expression_attribute_values(":max", n(policy.max_sends_per_window));
        }
        match update_outcome(request.send().await)? {
            Ok(_) => Ok(IssueStep::Issued),
            Err(old) => Ok(IssueStep::Refused(otp_item(old.as_ref(), lockout)?).of_request(&nonce)),
        }
    }

    /// Removes the pending code if it is still `code_hash` — and, for a code
    /// whose SMS was never sent, gives its send back; for a code used to sign
    /// in, takes its check out of the failed ones (`refund`). True if this
    /// request removed it, also when the SDK had to resend the request after
    /// a lost response.
    async fn end_code(
        &self,
        phone: &Phone,
        code_hash: &[u8],
        end: CodeEnd,
    ) -> Result<bool, StoreError> {
        let nonce = request_nonce();
        let mut update = String::from(
            "REMOVE code_hash, attempts, code_expires_at, attempt_by SET ended_by = :nonce",
        );
        match end {
            CodeEnd::Withdrawn => update.push_str(", sends = sends - :one"),
            CodeEnd::Used { .. } => update.push_str(" ADD #failed :minus_one"),
        }
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression(update)
            .condition_expression("code_hash = :hash")
            .expression_attribute_values(":hash", s(&BASE64.encode(code_hash)))
            .expression_attribute_values(":nonce", s(&nonce))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        request = match end {
            CodeEnd::Withdrawn => request.expression_attribute_values(":one", n(1)),
            CodeEnd::Used { refund } => request
                .expression_attribute_names("#failed", failed_attribute(refund))
                .expression_attribute_values(":minus_one", n(-1)),
        };
        match update_outcome(request.send().await)? {
            Ok(_) => Ok(true),
            Err(old) => {
                let ended_by = old
                    .as_ref()
                    .and_then(|item| item.get("ended_by"))
                    .and_then(|v| v.as_s().ok());
                Ok(ended_by == Some(&nonce))
            }
        }
    }
}

/// Why a pending code ends.
#[derive(Clone, Copy)]
enum CodeEnd {
    /// Its SMS was not sent: the send is given back.
    Withdrawn,
    /// Someone signed in with it: its check, counted as failed in the
    /// lockout window `refund`, is taken back.
    Used { refund: LockoutWindow },
}

/// Requests one `issue` may make when other requests keep changing the item.
const ISSUE_ROUNDS: usize = 3;

impl OtpStore for OtpTable {
    async fn issue(
        &self,
        code: &PendingCode,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Option<SendRefusal>, StoreError> {
        for _ in 0..ISSUE_ROUNDS {
            let current = match self
                .write_code(CodeWrite::OpenWindow, code, policy, now)
                .await?
            {
                IssueStep::Issued => return Ok(None),
                IssueStep::Refused(Some(current)) => current,
                // Deleted between the condition and its report: open it again.
                IssueStep::Refused(None) => continue,
            };
            let window = current.window();
            if let Some(refusal) = window.refusal(now, policy) {
                return Ok(Some(refusal));
            }
            if window.is_over(now, policy) {
                continue; // changed meanwhile; the next round reads it anew
            }
            match self
                .write_code(CodeWrite::SendAgain, code, policy, now)
                .await?
            {
                IssueStep::Issued => return Ok(None),
                IssueStep::Refused(Some(current)) => {
                    if let Some(refusal) = current.window().refusal(now, policy) {
                        return Ok(Some(refusal));
                    }
                }
                // The item vanished (TTL) between the two requests: a new window.
                IssueStep::Refused(None) => {}
            }
        }
        Err(StoreError(format!(
            "the phone's code item kept changing for {ISSUE_ROUNDS} rounds"
        )))
    }

    async fn count_attempt(
        &self,
        phone: &Phone,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Attempt, StoreError> {
        let nonce = request_nonce();
        let lockout = policy.lockout_window(now);
        let previous = LockoutWindow {
            index: lockout.index.saturating_sub(1),
            end: lockout.end - policy.lockout_window_seconds,
        };
        let mut update = String::from(
            "SET attempts = attempts + :one, attempt_by = :nonce, expires_at = :ttl \
             ADD #failed :one",
        );
        let mut request = self.client.update_item();
        if previous.index != lockout.index {
            update.push_str(" REMOVE #previous");
            request = request.expression_attribute_names("#previous", failed_attribute(previous));
        }
        let result = request
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression(update)
            .condition_expression(format!(
                "attribute_exists(code_hash) AND attempts < :max AND code_expires_at > :now \
                 AND (attribute_not_exists(attempt_by) OR attempt_by <> :nonce) AND {NOT_LOCKED}"
            ))
            .expression_attribute_names("#failed", failed_attribute(lockout))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(policy.max_attempts))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":nonce", s(&nonce))
            .expression_attribute_values(":ttl", n(now + policy.item_lifetime()))
            .expression_attribute_values(":max_failed", n(policy.max_failed_checks))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let (item, own_retry) = match update_outcome(result)? {
            Ok(output) => (otp_item(output.attributes.as_ref(), lockout)?, true),
            Err(old) => {
                let old = otp_item(old.as_ref(), lockout)?;
                let ours = old
                    .as_ref()
                    .is_some_and(|o| o.attempt_by.as_deref() == Some(nonce.as_str()));
                (old, ours)
            }
        };
        let Some(item) = item else {
            return Ok(Attempt::NoCode);
        };
        let failed_checks = item.failed_checks;
        Ok(match (item.pending()?, own_retry) {
            // Counted: by this request, or by its first sending whose answer was lost.
            (Some(pending), true) => Attempt::Counted(pending),
            (pending, _) => policy.refused_check(failed_checks, pending.as_ref(), now),
        })
    }

    async fn consume(
        &self,
        phone: &Phone,
        code_hash: &[u8],
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> Result<bool, StoreError> {
        let refund = policy.lockout_window(checked_at);
        self.end_code(phone, code_hash, CodeEnd::Used { refund })
            .await
    }

    async fn give_back_attempt(
        &self,
        counted: &PendingCode,
        policy: &OtpPolicy,
        checked_at: u64,
    ) -> Result<bool, StoreError> {
        let refund = policy.lockout_window(checked_at);
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(counted.phone.as_str()))
            .update_expression("SET attempts = attempts - :one ADD #failed :minus_one")
            .condition_expression("code_hash = :hash AND attempts = :counted")
            .expression_attribute_names("#failed", failed_attribute(refund))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":minus_one", n(-1))
            .expression_attribute_values(":hash", s(&BASE64.encode(&counted.code_hash)))
            .expression_attribute_values(":counted", n(counted.attempts))
            .send()
            .await;
        written(result)
    }

    async fn withdraw(&self, phone: &Phone, code_hash: &[u8]) -> Result<bool, StoreError> {
        self.end_code(phone, code_hash, CodeEnd::Withdrawn).await
    }

    /// Removes the code's attributes whatever they hold; the condition only
    /// keeps an update from creating an item for a phone that has none.
    async fn erase_code(&self, phone: &Phone) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression("REMOVE code_hash, attempts, code_expires_at, attempt_by")
            .condition_expression("attribute_exists(phone)")
            .send()
            .await;
        written(result).map(|_| ())
    }
}

// ---------------------------------------------------------------- budgets

/// The budgets' counters live in the codes table too, under keys that can
/// never be phones (`IP#…`, `CHECK#…`, `REGION#…`, `SMS#…`): attribute
/// `taken`, and the table's TTL attribute at the end of the counter's window.
impl CounterStore for OtpTable {
    async fn take(&self, counter: &Counter) -> Result<bool, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(&counter.key))
            .update_expression("ADD taken :one SET expires_at = :ttl")
            .condition_expression("attribute_not_exists(taken) OR taken < :limit")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(counter.window_end))
            .expression_attribute_values(":limit", n(counter.limit))
            .send()
            .await;
        written(result)
    }

    async fn give_back(&self, counter: &Counter) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(&counter.key))
            .update_expression("ADD taken :minus_one")
            .condition_expression("taken > :zero")
            .expression_attribute_values(":minus_one", n(-1))
            .expression_attribute_values(":zero", n(0))
            .customize()
            .config_override(sent_once())
            .send()
            .await;
        // Refused: nothing taken (any more); its window is over and TTL removed it.
        written(result).map(|_| ())
    }
}

// ---------------------------------------------------------------- users

/// A user's item, `USER#<id>`; a tombstone once deleted (no `phone`,
/// `deleted_at` set, the rest kept).
#[derive(Serialize, Deserialize)]
struct UserItem {
    pk: String,
    id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    phone: Option<String>,
    invite_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referrer_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referrer_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referred_at: Option<u64>,
    created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deleted_at: Option<u64>,
    /// Written only by the stream consumer's `ADD`, so never serialized
    /// here unless set (see `From<&User>`). Signed: a count below zero (a
    /// decrement that overtook its increment) reads as 0 rather than making
    /// the item unreadable.
    #[serde(default, skip_serializing_if = "is_zero")]
    referrals_count: i64,
}

fn is_zero(count: &i64) -> bool {
    *count == 0
}

/// The prefix of a user's item key, `USER#<id>`: it tells a user's item
/// from the phone and invite-code claims in the users table (and its stream).
const USER_PREFIX: &str = "USER#";

fn user_pk(id: UserId) -> String {
    format!("{USER_PREFIX}{id}")
}

fn user_key(id: UserId) -> AttributeValue {
    s(&user_pk(id))
}

fn phone_key(phone: &Phone) -> AttributeValue {
    s(&format!("PHONE#{}", phone.as_str()))
}

fn invite_key(code: &InviteCode) -> AttributeValue {
    s(&format!("INVITE#{code}"))
}

fn user_id(value: u64) -> Result<UserId, StoreError> {
    UserId::new(value).ok_or_else(|| StoreError("stored user id is out of range".into()))
}

/// A number attribute holding a user id (`user_id`, `owner_id`, `referrer_id`).
fn user_id_attribute(item: &Item, name: &str) -> Result<Option<UserId>, StoreError> {
    item.get(name)
        .map(|value| {
            value
                .as_n()
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| StoreError(format!("stored {name} is not a number")))
                .and_then(user_id)
        })
        .transpose()
}

impl From<&User> for UserItem {
    fn from(user: &User) -> Self {
        UserItem {
            pk: user_pk(user.id),
            id: user.id.get(),
            phone: Some(user.phone.as_str().to_string()),
            invite_code: user.invite_code.as_str().to_string(),
            referrer_id: user.referrer.as_ref().map(|r| r.id.get()),
            referrer_code: user.referrer.as_ref().map(|r| r.invite_code.to_string()),
            referred_at: None,
            created_at: user.created_at,
            deleted_at: None,
            // Never written from a `User`: the count belongs to the stream
            // consumer. Left out of the item (0 is not serialized), so no
            // write built from a `User` could reset a count it did not read
            // (creation is a conditional put of a new item, which has none).
            referrals_count: 0,
        }
    }
}

/// One item of `referrer-index`: the referral's key, when they joined, and
/// their phone (none: an old tombstone, see the table layout).
#[derive(Deserialize)]
struct IndexedReferral {
    pk: String,
    referred_at: u64,
    #[serde(default)]
    phone: Option<String>,
}

impl IndexedReferral {
    fn into_referral(self) -> Result<Option<Referral>, StoreError> {
        let Some(phone) = self.phone else {
            return Ok(None);
        };
        let id = self
            .pk
            .strip_prefix(USER_PREFIX)
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| StoreError("an indexed referral is not a user's item".into()))
            .and_then(user_id)?;
        Ok(Some(Referral {
            id,
            phone: Phone::from_trusted(phone),
            referred_at: self.referred_at,
        }))
    }
}

fn invite_code(value: String) -> Result<InviteCode, StoreError> {
    InviteCode::parse(&value).ok_or_else(|| StoreError("stored invite code is malformed".into()))
}

impl UserItem {
    fn referrer(&self) -> Result<Option<Referrer>, StoreError> {
        match (self.referrer_id, &self.referrer_code) {
            (Some(id), Some(code)) => Ok(Some(Referrer {
                id: user_id(id)?,
                invite_code: invite_code(code.clone())?,
            })),
            _ => Ok(None),
        }
    }

    /// The user, unless this is a tombstone.
    fn into_user(self) -> Result<Option<User>, StoreError> {
        let referrer = self.referrer()?;
        let Some(phone) = self.phone.filter(|_| self.deleted_at.is_none()) else {
            return Ok(None);
        };
        Ok(Some(User {
            id: user_id(self.id)?,
            phone: Phone::from_trusted(phone),
            invite_code: invite_code(self.invite_code)?,
            referrer,
            created_at: self.created_at,
            referrals_count: u64::try_from(self.referrals_count).unwrap_or(0),
        }))
    }

    /// The item as a change shows it, tombstone or not; its phone left out.
    fn into_image(self) -> Result<UserImage, StoreError> {
        Ok(UserImage {
            id: user_id(self.id)?,
            referrer: self.referrer()?,
            invite_code: invite_code(self.invite_code)?,
            created_at: self.created_at,
            referred_at: self.referred_at,
            deleted_at: self.deleted_at,
        })
    }
}

// ---------------------------------------------------------------- the users table's stream

/// The change a record of the users table's stream carries: None for an
/// item that is not a user's (a phone's or an invite code's claim), an error
/// for one this code cannot read.
pub fn user_change(record: &StreamRecord) -> Result<Option<UserChange>, StoreError> {
    let is_user = matches!(
        record.change.keys.get("pk"),
        Some(serde_dynamo::AttributeValue::S(pk)) if pk.starts_with(USER_PREFIX)
    );
    if !is_user {
        return Ok(None);
    }
    let image = |item: &serde_dynamo::Item| -> Result<Option<UserImage>, StoreError> {
        if item.is_empty() {
            return Ok(None);
        }
        // serde's message can quote the offending value (a phone): not logged.
        let item: UserItem = serde_dynamo::from_item(item.clone())
            .map_err(|_| StoreError("unexpected item shape in the stream".into()))?;
        item.into_image().map(Some)
    };
    Ok(Some(UserChange {
        id: record.event_id.clone(),
        before: image(&record.change.old_image)?,
        after: image(&record.change.new_image)?,
    }))
}

/// A referral's item says whether it is in its referrer's count (`counted`),
/// and the count moves in the same transaction as that mark: a change
/// applied twice finds the mark as it left it, and changes nothing.
impl ReferralCounts for UserTable {
    async fn apply(&self, change: &CountChange) -> Result<(), StoreError> {
        let (referrer, referral, mark, condition, delta) = match *change {
            CountChange::Add { referrer, referral } => (
                referrer,
                referral,
                "SET counted = :yes",
                "attribute_not_exists(counted) AND referrer_id = :rid",
                1,
            ),
            CountChange::Remove { referrer, referral } => (
                referrer,
                referral,
                "REMOVE counted",
                "attribute_exists(counted) AND referrer_id = :rid",
                -1,
            ),
        };
        let mut mark = Update::builder()
            .table_name(&self.table)
            .key("pk", user_key(referral))
            .update_expression(mark)
            .condition_expression(condition)
            .expression_attribute_values(":rid", n(referrer));
        if delta > 0 {
            mark = mark.expression_attribute_values(":yes", AttributeValue::Bool(true));
        }
        // The referrer's item always exists (a deleted user's is a
        // tombstone); the condition keeps ADD from creating a stray one.
        let count = Update::builder()
            .table_name(&self.table)
            .key("pk", user_key(referrer))
            .update_expression("ADD referrals_count :delta")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":delta", n(delta));
        let result = self
            .client
            .transact_write_items()
            .transact_items(
                TransactWriteItem::builder()
                    .update(mark.build().expect("table, key and expressions are set"))
                    .build(),
            )
            .transact_items(
                TransactWriteItem::builder()
                    .update(count.build().expect("table, key and expressions are set"))
                    .build(),
            )
            .send()
            .await;
        let Err(err) = result else {
            return Ok(());
        };
        match cancellation_reasons(&err) {
            // Applied before (a redelivered change).
            Some(reasons) if failed_condition(reasons, 0).is_some() => Ok(()),
            Some(reasons) if failed_condition(reasons, 1).is_some() => {
                tracing::warn!("a referral's referrer has no item; its count was not changed");
                Ok(())
            }
            // A conflict with a parallel write (set_referrer's check on the
            // referrer, say) or an outage: the batch is delivered again.
            _ => Err(unavailable(err)),
        }
    }
}

/// Why each item of a cancelled transaction failed; None for any other error.
fn cancellation_reasons<R>(
    err: &SdkError<TransactWriteItemsError, R>,
) -> Option<&[CancellationReason]> {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(e)) => {
            Some(e.cancellation_reasons())
        }
        _ => None,
    }
}

/// Whether item `index` of a cancelled transaction failed its condition, and the item's old value.
fn failed_condition(reasons: &[CancellationReason], index: usize) -> Option<Option<&Item>> {
    reasons
        .get(index)
        .filter(|r| r.code() == Some("ConditionalCheckFailed"))
        .map(|r| r.item())
}

#[derive(Clone, Debug)]
pub struct UserTable {
    client: Client,
    table: String,
}

impl UserTable {
    pub fn new(client: Client, table: String) -> Self {
        UserTable { client, table }
    }

    /// The item at `key`, read consistently: only the attributes named in
    /// `projection`, or all of them when it is empty.
    async fn read(
        &self,
        key: AttributeValue,
        projection: &[&str],
    ) -> Result<Option<Item>, StoreError> {
        let mut request = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", key)
            .consistent_read(true);
        if !projection.is_empty() {
            let names: Vec<String> = (0..projection.len()).map(|i| format!("#a{i}")).collect();
            request = request.projection_expression(names.join(", "));
            for (alias, name) in names.iter().zip(projection) {
                request = request.expression_attribute_names(alias, *name);
            }
        }
        let output = request.send().await.map_err(unavailable)?;
        Ok(output.item.filter(|item| !item.is_empty()))
    }

    /// The user id in the number attribute `name` of the item at `key`.
    async fn user_id_at(
        &self,
        key: AttributeValue,
        name: &str,
    ) -> Result<Option<UserId>, StoreError> {
        match self.read(key, &[name]).await? {
            Some(item) => user_id_attribute(&item, name),
            None => Ok(None),
        }
    }

    fn put_new(&self, item: Item) -> TransactWriteItem {
        TransactWriteItem::builder()
            .put(
                Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression("attribute_not_exists(pk)")
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()
                    .expect("table, item and condition are set"),
            )
            .build()
    }
}

impl UserStore for UserTable {
    async fn id_of(&self, phone: &Phone) -> Result<Option<UserId>, StoreError> {
        self.user_id_at(phone_key(phone), "user_id").await
    }

    async fn get(&self, id: UserId) -> Result<Option<User>, StoreError> {
        match self.read(user_key(id), &[]).await? {
            Some(item) => decode::<UserItem>(item)?.into_user(),
            None => Ok(None),
        }
    }

    /// Three items, each on condition that it does not exist: the user, its
    /// phone's claim (`PHONE#…`, `user_id`) and its invite code's (`INVITE#…`,
    /// `owner_id`). All or none.
    async fn create(&self, user: &User) -> Result<NewUser, StoreError> {
        let phone_claim = HashMap::from([
            ("pk".to_string(), phone_key(&user.phone)),
            ("user_id".to_string(), n(user.id)),
        ]);
        let invite_claim = HashMap::from([
            ("pk".to_string(), invite_key(&user.invite_code)),
            ("owner_id".to_string(), n(user.id)),
        ]);
        let result = self
            .client
            .transact_write_items()
            .transact_items(self.put_new(encode(&UserItem::from(user))))
            .transact_items(self.put_new(phone_claim))
            .transact_items(self.put_new(invite_claim))
            .send()
            .await;
        let Err(err) = result else {
            return Ok(NewUser::Created(user.clone()));
        };
        let Some(reasons) = cancellation_reasons(&err) else {
            return Err(unavailable(err));
        };
        // The phone first: a phone already claimed by this very user is a
        // try of this request whose answer was lost (the SDK sent it again),
        // and any claim on it means the caller must look the phone up again.
        if failed_condition(reasons, 1).is_some() {
            return Ok(NewUser::PhoneTaken);
        }
        if failed_condition(reasons, 0).is_some() {
            return Ok(NewUser::IdTaken);
        }
        if failed_condition(reasons, 2).is_some() {
            return Ok(NewUser::InviteCodeTaken);
        }
        // A transaction conflict: a parallel sign-in of the same phone is writing.
        Ok(NewUser::PhoneTaken)
    }

    /// The claim item, read consistently: a code shown to its owner a moment
    /// ago is found (a GSI is only eventually consistent), in one GetItem.
    async fn owner_of(&self, code: &InviteCode) -> Result<Option<UserId>, StoreError> {
        match self
            .read(invite_key(code), &["owner_id", "retired_at"])
            .await?
        {
            Some(item) if !item.contains_key("retired_at") => user_id_attribute(&item, "owner_id"),
            _ => Ok(None),
        }
    }

    async fn referrer_of(&self, id: UserId) -> Result<Option<UserId>, StoreError> {
        self.user_id_at(user_key(id), "referrer_id").await
    }

    /// Through `referrer-index`, which carries each referral's phone: one
    /// Query with `Limit` (the index holds live referrals only), another
    /// from where it stopped only while an old tombstone (no `phone`) took
    /// a place in the page.
    async fn referrals_page(
        &self,
        referrer: UserId,
        order: Order,
        after: Option<&Position>,
        limit: usize,
    ) -> Result<Vec<Referral>, StoreError> {
        let mut found = Vec::new();
        // The index's keys and the table's: where the previous page ended.
        let mut start: Option<Item> = after.map(|position| {
            HashMap::from([
                ("referrer_id".to_string(), n(referrer)),
                ("referred_at".to_string(), n(position.referred_at)),
                ("pk".to_string(), user_key(position.id)),
            ])
        });
        while found.len() < limit {
            let wanted = i32::try_from(limit - found.len()).unwrap_or(i32::MAX);
            let output = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(REFERRER_INDEX)
                .key_condition_expression("referrer_id = :id")
                .expression_attribute_values(":id", n(referrer))
                .scan_index_forward(order == Order::OldestFirst)
                .limit(wanted)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items.unwrap_or_default() {
                if let Some(referral) = decode::<IndexedReferral>(item)?.into_referral()? {
                    found.push(referral);
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        Ok(found)
    }

    async fn set_referrer(
        &self,
        id: UserId,
        referrer: &Referrer,
        chain_top: UserId,
        now: u64,
    ) -> Result<ReferrerWrite, StoreError> {
        // `phone` exists only while the user is not deleted.
        let set_mine = Update::builder()
            .table_name(&self.table)
            .key("pk", user_key(id))
            .update_expression("SET referrer_id = :rid, referrer_code = :rc, referred_at = :now")
            .condition_expression("attribute_exists(phone) AND attribute_not_exists(referrer_id)")
            .expression_attribute_values(":rid", n(referrer.id))
            .expression_attribute_values(":rc", s(referrer.invite_code.as_str()))
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("table, key and expressions are set");
        let top_unchanged = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", user_key(chain_top))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(referrer_id)")
            .build()
            .expect("table, key and condition are set");
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(set_mine).build())
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(top_unchanged)
                    .build(),
            )
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(ReferrerWrite::Set),
            Err(err) => err,
        };
        let Some(reasons) = cancellation_reasons(&err) else {
            return Err(unavailable(err));
        };
        if let Some(old) = failed_condition(reasons, 0) {
            let deleted = StoreError("user deleted while setting the referrer".into());
            if old.is_some_and(|item| !item.contains_key("phone")) {
                return Err(deleted);
            }
            let existing = match old
                .and_then(|item| item.get("referrer_code"))
                .and_then(|v| v.as_s().ok())
            {
                Some(code) => invite_code(code.clone())?,
                // Not every DynamoDB implementation returns the old item; read it.
                None => match self.get(id).await?.and_then(|u| u.referrer) {
                    Some(r) => r.invite_code,
                    None => {
                        return Err(StoreError("user deleted while setting the referrer".into()));
                    }
                },
            };
            return Ok(ReferrerWrite::AlreadySet(existing));
        }
        // The top's condition failed or a parallel transaction touched the same items.
        Ok(ReferrerWrite::ChainMoved)
    }

    /// One transaction: the user's item loses its phone and becomes a
    /// tombstone; the phone's claim is deleted (the phone may sign up again);
    /// the invite code's claim is marked retired, so that the code is
    /// neither found nor ever issued again.
    async fn delete(&self, user: &User, now: u64) -> Result<bool, StoreError> {
        let tombstone = Update::builder()
            .table_name(&self.table)
            .key("pk", user_key(user.id))
            // Without `referred_at` the tombstone leaves `referrer-index`:
            // the index holds live referrals only, so a page's `Limit` is
            // exact. `referrer_id` and `referrer_code` stay (the no-circle
            // rule walks `referrer_id`; the code stays on record).
            .update_expression("REMOVE phone, referred_at SET deleted_at = :now")
            .condition_expression("attribute_exists(phone)")
            .expression_attribute_values(":now", n(now))
            .build()
            .expect("table, key and expressions are set");
        let free_phone = Delete::builder()
            .table_name(&self.table)
            .key("pk", phone_key(&user.phone))
            .condition_expression("user_id = :id")
            .expression_attribute_values(":id", n(user.id))
            .build()
            .expect("table, key and condition are set");
        let retire_code = Update::builder()
            .table_name(&self.table)
            .key("pk", invite_key(&user.invite_code))
            .update_expression("SET retired_at = :now")
            .condition_expression("owner_id = :id")
            .expression_attribute_values(":id", n(user.id))
            .expression_attribute_values(":now", n(now))
            .build()
            .expect("table, key and expressions are set");
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(tombstone).build())
            .transact_items(TransactWriteItem::builder().delete(free_phone).build())
            .transact_items(TransactWriteItem::builder().update(retire_code).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match cancellation_reasons(&err) {
                // Deleted already: by a parallel request, or by an earlier try
                // of this one whose answer was lost.
                Some(reasons) if failed_condition(reasons, 0).is_some() => Ok(false),
                _ => Err(unavailable(err)),
            },
        }
    }
}

// ---------------------------------------------------------------- sessions

#[derive(Serialize, Deserialize)]
struct SessionItem {
    sid: String,
    user: u64,
    #[serde(rename = "gen")]
    generation: u64,
    created_at: u64,
    last_used_at: u64,
    rotated_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user_agent: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ip: Option<String>,
    idle_expires_at: u64,
    expires_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked_at: Option<u64>,
}

impl From<&Session> for SessionItem {
    fn from(session: &Session) -> Self {
        SessionItem {
            sid: session.sid.as_str().to_string(),
            user: session.user.get(),
            generation: session.generation,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            rotated_at: session.rotated_at,
            user_agent: session.user_agent.clone(),
            ip: session.ip.clone(),
            idle_expires_at: session.idle_expires_at,
            expires_at: session.expires_at,
            revoked_at: session.revoked_at,
        }
    }
}

impl TryFrom<SessionItem> for Session {
    type Error = StoreError;
    fn try_from(item: SessionItem) -> Result<Self, StoreError> {
        Ok(Session {
            sid: SessionId::from_stored(item.sid),
            user: user_id(item.user)?,
            generation: item.generation,
            created_at: item.created_at,
            last_used_at: item.last_used_at,
            rotated_at: item.rotated_at,
            user_agent: item.user_agent,
            ip: item.ip,
            idle_expires_at: item.idle_expires_at,
            expires_at: item.expires_at,
            revoked_at: item.revoked_at,
        })
    }
}

fn session_item(item: Option<&Item>) -> Result<Option<Session>, StoreError> {
    item.filter(|i| !i.is_empty())
        .map(|i| decode::<SessionItem>(i.clone())?.try_into())
        .transpose()
}

/// BatchGetItem takes at most 100 keys.
const BATCH_GET_MAX: usize = 100;

#[derive(Clone, Debug)]
pub struct SessionTable {
    client: Client,
    table: String,
}

impl SessionTable {
    pub fn new(client: Client, table: String) -> Self {
        SessionTable { client, table }
    }
}

impl SessionStore for SessionTable {
    async fn create(&self, session: &Session) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&SessionItem::from(session))))
            .condition_expression("attribute_not_exists(sid)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err) => match err.as_service_error() {
                // 128 random bits never collide: an item there with this
                // user and time is this request's own, written by a try
                // whose answer was lost.
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(session_item(failed.item())?.is_some_and(|old| {
                        old.user == session.user && old.created_at == session.created_at
                    }))
                }
                _ => Err(unavailable(err)),
            },
        }
    }

    async fn rotate(
        &self,
        token: &RefreshToken,
        idle_expires_at: u64,
        now: u64,
    ) -> Result<Rotation, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("sid", s(token.sid.as_str()))
            .update_expression(
                "SET #gen = #gen + :one, rotated_at = :now, last_used_at = :now, \
                 idle_expires_at = :idle",
            )
            .condition_expression(
                "#gen = :gen AND attribute_not_exists(revoked_at) \
                 AND idle_expires_at > :now AND expires_at > :now",
            )
            .expression_attribute_names("#gen", "gen")
            .expression_attribute_values(":gen", n(token.generation))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":idle", n(idle_expires_at))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match update_outcome(result)? {
            Ok(output) => match session_item(output.attributes())? {
                Some(rotated) => Ok(Rotation::Rotated(rotated)),
                None => Err(StoreError("the rotation returned no item".into())),
            },
            Err(old) => Ok(Rotation::Refused(session_item(old.as_ref())?)),
        }
    }

    async fn revoke(
        &self,
        sid: &SessionId,
        owner: Option<&UserId>,
        now: u64,
    ) -> Result<Revocation, StoreError> {
        let mut condition =
            String::from("attribute_exists(sid) AND attribute_not_exists(revoked_at)");
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("sid", s(sid.as_str()))
            .update_expression("SET revoked_at = :now")
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        if let Some(owner) = owner {
            condition.push_str(" AND #user = :user");
            request = request
                .expression_attribute_names("#user", "user")
                .expression_attribute_values(":user", n(owner));
        }
        match update_outcome(request.condition_expression(condition).send().await)? {
            Ok(output) => match session_item(output.attributes())? {
                Some(revoked) => Ok(Revocation::Revoked { user: revoked.user }),
                None => Err(StoreError("the revocation returned no item".into())),
            },
            Err(old) => Ok(Revocation::refused(
                session_item(old.as_ref())?.as_ref(),
                owner,
            )),
        }
    }

    async fn session_ids_of(&self, user: &UserId) -> Result<Vec<SessionId>, StoreError> {
        let ids =
            query_by_user(&self.client, &self.table, USER_INDEX, "user", *user, "sid").await?;
        Ok(ids.into_iter().map(SessionId::from_stored).collect())
    }

    async fn sessions_of(&self, user: &UserId) -> Result<Vec<Session>, StoreError> {
        let ids = self.session_ids_of(user).await?;
        let mut sessions = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BATCH_GET_MAX) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|sid| HashMap::from([("sid".to_string(), s(sid.as_str()))]))
                .collect();
            // DynamoDB may leave keys unprocessed under load; ask again for
            // those, a few times, then give up (503) rather than list a part.
            for attempt in 0.. {
                if keys.is_empty() {
                    break;
                }
                if attempt == 5 {
                    return Err(StoreError(
                        "sessions left unprocessed by BatchGetItem".into(),
                    ));
                }
                if attempt > 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
                }
                let request = KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .expect("keys are set");
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable)?;
                if let Some(mut found) = output.responses {
                    for item in found.remove(&self.table).unwrap_or_default() {
                        sessions.push(decode::<SessionItem>(item)?.try_into()?);
                    }
                }
                if let Some(left) = output
                    .unprocessed_keys
                    .and_then(|mut left| left.remove(&self.table))
                {
                    keys = left.keys;
                }
            }
        }
        Ok(sessions)
    }

    async fn erase(&self, sid: &SessionId) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("sid", s(sid.as_str()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Opens `count` connections to DynamoDB during init, so that the
/// function's first request finds open as many as it sends requests at
/// once ([`Endpoint::dynamodb_requests_at_once`](crate::endpoints::Endpoint)).
///
/// Why: connecting costs a TLS handshake, which is CPU work. Lambda runs
/// init at full speed, but a 128 MB function gets about a fourteenth of a
/// vCPU while it handles a request: measured publicly, a first request of
/// 912 ms, 745 ms of it the handshake, became 21 ms once the connection was
/// opened at init (docs/performance.md).
///
/// How: `count` `DescribeEndpoints` at once (DynamoDB's answer is its own
/// regional address: nothing of the account's, no table), through a client
/// made from `aws`, whose HTTP client all of the function's clients share:
/// a request finds no idle connection while the others are in flight, so
/// each opens its own, and they stay in that pool for the first real
/// request.
/// template.yaml grants `dynamodb:DescribeEndpoints` to each function that
/// calls DynamoDB. (DynamoDB Local does not know the operation; its 400
/// leaves the connection open just as well.)
///
/// Failure-tolerant: the answer is ignored; if it fails, init goes on and
/// the first request connects as it would have anyway (`endpoints::start`
/// bounds how long init waits). One attempt, never retried: any answer, a
/// throttling error included, means the connection is open, and a burst of
/// cold starts that DynamoDB throttles should neither wait out the SDK's
/// backoff nor send it more of the same calls.
pub async fn open_connections(aws: &aws_config::SdkConfig, count: usize) {
    let client = Client::new(aws);
    let mut openings = tokio::task::JoinSet::new();
    for _ in 0..count {
        let client = client.clone();
        openings.spawn(async move {
            let _ = client
                .describe_endpoints()
                .customize()
                .config_override(sent_once())
                .send()
                .await;
        });
    }
    openings.join_all().await;
}

/// A request's settings for one attempt, never retried: for a write that
/// must not be applied twice and carries nothing to recognise its own
/// earlier try (a budget's give-back), and for the opening at init.
fn sent_once() -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::default()
        .retry_config(aws_config::retry::RetryConfig::disabled())
}

//! DynamoDB storage. Table layout (created from template.yaml):
//!
//! * Users table, key `pk`:
//!   - a user: `pk` = phone (E.164, always starts with `+`), `invite_code`,
//!     `referrer_phone`, `referrer_code`, `referred_at`, `created_at`;
//!   - an invite-code claim: `pk` = `INVITE#<code>`, `owner_phone`. Written in
//!     the same transaction as the user, it makes codes unique (a GSI cannot).
//!   - GSI `invite_code-index` (`invite_code`): code → user, for set_referrer.
//!   - GSI `referrer-index` (`referrer_phone`, `referred_at`): a user's referrals.
//! * Otps table, key `phone`: the pending code (`code_hash`, `attempts`,
//!   `created_at`, `code_expires_at` — checked in code, TTL deletes late) and
//!   the phone's send window (`window_start`, `sends`); `expires_at`, the TTL
//!   attribute, is the end of that window.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::CancellationReason;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValue, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::invite::InviteCode;
use crate::otp::{OtpPolicy, PendingCode};
use crate::phone::Phone;
use crate::store::{
    Attempt, NewUser, OtpStore, Referrer, ReferrerWrite, StoreError, User, UserStore,
};

pub const INVITE_CODE_INDEX: &str = "invite_code-index";
pub const REFERRER_INDEX: &str = "referrer-index";

type Item = HashMap<String, AttributeValue>;

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    err: SdkError<E, R>,
) -> StoreError {
    StoreError(DisplayErrorContext(&err).to_string())
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn decode<T: for<'de> Deserialize<'de>>(item: Item) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError(format!("unexpected item shape: {e}")))
}

fn encode(value: &impl Serialize) -> Item {
    serde_dynamo::to_item(value).expect("item types always serialize")
}

// ---------------------------------------------------------------- one-time codes

#[derive(Serialize, Deserialize)]
struct OtpItem {
    phone: String,
    code_hash: String,
    attempts: u32,
    created_at: u64,
    code_expires_at: u64,
    window_start: u64,
    sends: u32,
    /// The table's TTL attribute: the end of the send window, which outlasts the code.
    expires_at: u64,
}

impl OtpItem {
    fn new(code: &PendingCode, policy: &OtpPolicy) -> Self {
        OtpItem {
            phone: code.phone.as_str().to_string(),
            code_hash: BASE64.encode(&code.code_hash),
            attempts: code.attempts,
            created_at: code.created_at,
            code_expires_at: code.expires_at,
            window_start: code.window_start,
            sends: code.sends,
            expires_at: code.window_end(policy).max(code.expires_at),
        }
    }
}

impl TryFrom<OtpItem> for PendingCode {
    type Error = StoreError;
    fn try_from(item: OtpItem) -> Result<Self, StoreError> {
        Ok(PendingCode {
            phone: Phone::from_trusted(item.phone),
            code_hash: BASE64
                .decode(item.code_hash)
                .map_err(|e| StoreError(format!("bad code_hash: {e}")))?,
            attempts: item.attempts,
            created_at: item.created_at,
            expires_at: item.code_expires_at,
            window_start: item.window_start,
            sends: item.sends,
        })
    }
}

fn pending_code(item: Item) -> Result<PendingCode, StoreError> {
    decode::<OtpItem>(item)?.try_into()
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

    /// The first code of a fresh send window: written unless the phone's window is still open.
    async fn put_if_window_over(
        &self,
        code: &PendingCode,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Option<PendingCode>, StoreError> {
        let window_edge = now.saturating_sub(policy.send_window_seconds);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(encode(&OtpItem::new(code, policy))))
            .condition_expression("attribute_not_exists(phone) OR window_start <= :edge")
            .expression_attribute_values(":edge", n(window_edge))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => Ok(Some(
                    pending_code(failed.item().cloned().unwrap_or_default())?,
                )),
                _ => Err(unavailable(err)),
            },
        }
    }

    /// Another code in an open window, replacing `current`, on condition that
    /// nobody issued one since we read it.
    async fn replace(
        &self,
        current: &PendingCode,
        code: &PendingCode,
    ) -> Result<Option<PendingCode>, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(code.phone.as_str()))
            .update_expression(
                "SET code_hash = :hash, attempts = :zero, created_at = :now, \
                 code_expires_at = :expires, sends = sends + :one",
            )
            .condition_expression("window_start = :window AND sends = :sends")
            .expression_attribute_values(":hash", s(&BASE64.encode(&code.code_hash)))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(code.created_at))
            .expression_attribute_values(":expires", n(code.expires_at))
            .expression_attribute_values(":window", n(current.window_start))
            .expression_attribute_values(":sends", n(current.sends))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        Some(item) => Ok(Some(pending_code(item.clone())?)),
                        // Consumed meanwhile: the phone is free again; the caller may simply ask anew.
                        None => Ok(Some(current.clone())),
                    }
                }
                _ => Err(unavailable(err)),
            },
        }
    }
}

impl OtpStore for OtpTable {
    async fn issue(
        &self,
        code: &PendingCode,
        policy: &OtpPolicy,
        now: u64,
    ) -> Result<Option<PendingCode>, StoreError> {
        let Some(current) = self.put_if_window_over(code, policy, now).await? else {
            return Ok(None);
        };
        if current.resend_wait(now, policy) > 0 {
            return Ok(Some(current));
        }
        self.replace(&current, code).await
    }

    async fn count_attempt(
        &self,
        phone: &Phone,
        max_attempts: u32,
        now: u64,
    ) -> Result<Attempt, StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .update_expression("SET attempts = attempts + :one")
            .condition_expression(
                "attribute_exists(phone) AND attempts < :max AND code_expires_at > :now",
            )
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":max", n(max_attempts))
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(Attempt::Counted(pending_code(
                output.attributes.unwrap_or_default(),
            )?)),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        None => Ok(Attempt::NoCode),
                        Some(item) => {
                            let old = pending_code(item.clone())?;
                            Ok(if old.is_expired(now) {
                                Attempt::Expired
                            } else {
                                Attempt::Exhausted
                            })
                        }
                    }
                }
                _ => Err(unavailable(err)),
            },
        }
    }

    async fn delete_if_current(&self, phone: &Phone, code_hash: &[u8]) -> Result<bool, StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("phone", s(phone.as_str()))
            .condition_expression("code_hash = :hash")
            .expression_attribute_values(":hash", s(&BASE64.encode(code_hash)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(unavailable(err)),
        }
    }
}

// ---------------------------------------------------------------- users

#[derive(Serialize, Deserialize)]
struct UserItem {
    pk: String,
    invite_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referrer_phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referrer_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    referred_at: Option<u64>,
    created_at: u64,
}

impl From<&User> for UserItem {
    fn from(user: &User) -> Self {
        UserItem {
            pk: user.phone.as_str().to_string(),
            invite_code: user.invite_code.as_str().to_string(),
            referrer_phone: user.referrer.as_ref().map(|r| r.phone.as_str().to_string()),
            referrer_code: user
                .referrer
                .as_ref()
                .map(|r| r.invite_code.as_str().to_string()),
            referred_at: None,
            created_at: user.created_at,
        }
    }
}

fn invite_code(value: String) -> Result<InviteCode, StoreError> {
    InviteCode::parse(&value).ok_or_else(|| StoreError("stored invite code is malformed".into()))
}

impl TryFrom<UserItem> for User {
    type Error = StoreError;
    fn try_from(item: UserItem) -> Result<Self, StoreError> {
        let referrer = match (item.referrer_phone, item.referrer_code) {
            (Some(phone), Some(code)) => Some(Referrer {
                phone: Phone::from_trusted(phone),
                invite_code: invite_code(code)?,
            }),
            _ => None,
        };
        Ok(User {
            phone: Phone::from_trusted(item.pk),
            invite_code: invite_code(item.invite_code)?,
            referrer,
            created_at: item.created_at,
        })
    }
}

#[derive(Serialize)]
struct InviteClaimItem<'a> {
    pk: String,
    owner_phone: &'a str,
}

fn claim_key(code: &InviteCode) -> String {
    format!("INVITE#{code}")
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
}

impl UserStore for UserTable {
    async fn get(&self, phone: &Phone) -> Result<Option<User>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(phone.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .item
            .map(|item| decode::<UserItem>(item)?.try_into())
            .transpose()
    }

    async fn create(&self, user: &User) -> Result<NewUser, StoreError> {
        let put = |item: Item| {
            TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(&self.table)
                        .set_item(Some(item))
                        .condition_expression("attribute_not_exists(pk)")
                        .build()
                        .expect("table, item and condition are set"),
                )
                .build()
        };
        let claim = InviteClaimItem {
            pk: claim_key(&user.invite_code),
            owner_phone: user.phone.as_str(),
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(put(encode(&UserItem::from(user))))
            .transact_items(put(encode(&claim)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(NewUser::Created(user.clone())),
            Err(err) => {
                match cancellation_reasons(&err) {
                    Some(r) if failed_condition(r, 0).is_some() => Ok(NewUser::PhoneTaken),
                    Some(r) if failed_condition(r, 1).is_some() => Ok(NewUser::InviteCodeTaken),
                    // A transaction conflict: a parallel sign-in of the same phone is writing.
                    Some(_) => Ok(NewUser::PhoneTaken),
                    None => Err(unavailable(err)),
                }
            }
        }
    }

    async fn owner_of(&self, code: &InviteCode) -> Result<Option<Phone>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(INVITE_CODE_INDEX)
            .key_condition_expression("invite_code = :code")
            .expression_attribute_values(":code", s(code.as_str()))
            .limit(1)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .items()
            .first()
            .and_then(|item| item.get("pk"))
            .and_then(|pk| pk.as_s().ok())
            .map(|pk| Phone::from_trusted(pk.clone())))
    }

    async fn referrer_of(&self, phone: &Phone) -> Result<Option<Phone>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(phone.as_str()))
            .projection_expression("referrer_phone")
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output
            .item
            .and_then(|mut item| item.remove("referrer_phone"))
            .and_then(|value| value.as_s().ok().cloned())
            .map(Phone::from_trusted))
    }

    async fn referrals_of(&self, phone: &Phone) -> Result<Vec<Phone>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(REFERRER_INDEX)
            .key_condition_expression("referrer_phone = :phone")
            .expression_attribute_values(":phone", s(phone.as_str()))
            .into_paginator()
            .items()
            .send();
        let mut phones = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(unavailable)?;
            if let Some(Ok(pk)) = item.get("pk").map(|v| v.as_s()) {
                phones.push(Phone::from_trusted(pk.clone()));
            }
        }
        Ok(phones)
    }

    async fn set_referrer(
        &self,
        phone: &Phone,
        referrer: &Referrer,
        chain_top: &Phone,
        now: u64,
    ) -> Result<ReferrerWrite, StoreError> {
        let set_mine = Update::builder()
            .table_name(&self.table)
            .key("pk", s(phone.as_str()))
            .update_expression("SET referrer_phone = :rp, referrer_code = :rc, referred_at = :now")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(referrer_phone)")
            .expression_attribute_values(":rp", s(referrer.phone.as_str()))
            .expression_attribute_values(":rc", s(referrer.invite_code.as_str()))
            .expression_attribute_values(":now", n(now))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .expect("table, key and expressions are set");
        let top_unchanged = ConditionCheck::builder()
            .table_name(&self.table)
            .key("pk", s(chain_top.as_str()))
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(referrer_phone)")
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
            let existing = match old
                .and_then(|item| item.get("referrer_code"))
                .and_then(|v| v.as_s().ok())
            {
                Some(code) => invite_code(code.clone())?,
                // Not every DynamoDB implementation returns the old item; read it.
                None => match self.get(phone).await?.and_then(|u| u.referrer) {
                    Some(r) => r.invite_code,
                    None => {
                        return Err(StoreError(
                            "user vanished while setting the referrer".into(),
                        ));
                    }
                },
            };
            return Ok(ReferrerWrite::AlreadySet(existing));
        }
        // The top's condition failed or a parallel transaction touched the same items.
        Ok(ReferrerWrite::ChainMoved)
    }
}

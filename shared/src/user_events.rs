//! Domain events for other services (billing credits, bonuses, analytics),
//! and the referral counts kept from the same changes. Plain Rust: the
//! stream that delivers the changes, the bus and the table are adapters.
//!
//! The users table's stream is the source of truth: a change to a user's
//! item reaches the `publish-events` function only once it committed, at
//! least once, and in order per user. So an event is published if and only
//! if its write committed, never from the request path, and a redelivered
//! change publishes its event again **with the same id**: consumers dedupe
//! by `event_id`.
//!
//! Events carry ids, never phone numbers, so that consumers need no PII
//! clearance. Their schemas are `docs/events/*.json` (version
//! [`SCHEMA_VERSION`]; tests/user_events.rs checks what is published
//! against them).

use std::future::Future;

use serde::Serialize;

use crate::invite::InviteCode;
use crate::store::Referrer;
use crate::user::UserId;

/// The version of the events' `detail` schemas. A field added keeps it; a
/// field removed, renamed or changed in meaning makes the next one.
pub const SCHEMA_VERSION: u32 = 1;

/// The events' `source` on the bus: what consumers' rules match.
pub const SOURCE: &str = "phone-auth";

/// A user's item as one side of a stored change shows it (a tombstone too:
/// deleted users keep their id, code and referrer link).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserImage {
    pub id: UserId,
    pub invite_code: InviteCode,
    pub referrer: Option<Referrer>,
    pub created_at: u64,
    pub referred_at: Option<u64>,
    pub deleted_at: Option<u64>,
}

/// One committed change of a user's item: before and after (None: no item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserChange {
    /// The change's id in the stream: unique per change, the same each time
    /// it is delivered. The event it causes has this id.
    pub id: String,
    pub before: Option<UserImage>,
    pub after: Option<UserImage>,
}

/// What happened, in the terms consumers see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum UserEvent {
    /// A user signed up.
    UserCreated {
        user_id: UserId,
        invite_code: InviteCode,
    },
    /// `referral_id` entered `referrer_id`'s invite code (depth 1 only: the
    /// referrer's own referrer gets no event).
    ReferralCreated {
        referrer_id: UserId,
        referral_id: UserId,
        invite_code: InviteCode,
    },
    /// A user deleted their account.
    UserDeleted { user_id: UserId },
}

impl UserEvent {
    /// The event's type: EventBridge's `detail-type`.
    pub fn kind(&self) -> &'static str {
        match self {
            UserEvent::UserCreated { .. } => "user.created",
            UserEvent::ReferralCreated { .. } => "referral.created",
            UserEvent::UserDeleted { .. } => "user.deleted",
        }
    }
}

/// An event as published: its `detail` is this, serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Published {
    pub schema_version: u32,
    /// The id of the change that caused it ([`UserChange::id`]).
    pub event_id: String,
    /// When the change was made (Unix seconds), not when it was published.
    pub occurred_at: u64,
    #[serde(flatten)]
    pub event: UserEvent,
}

impl Published {
    pub fn detail(&self) -> String {
        serde_json::to_string(self).expect("events always serialize")
    }
}

/// A change to a referrer's `referrals_count`: the count is of live
/// referrals, so a referral counts from its referrer being set until its
/// account is deleted. Storage applies each one once, however often the
/// change that asks for it is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CountChange {
    Add { referrer: UserId, referral: UserId },
    Remove { referrer: UserId, referral: UserId },
}

/// What one change means: at most one event, at most one count change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub event: Option<Published>,
    pub count: Option<CountChange>,
}

impl UserChange {
    /// The rules. Every other change of a user's item (a count updated, a
    /// referral marked as counted) means nothing to anyone outside.
    pub fn outcome(&self) -> Outcome {
        let publish = |occurred_at: u64, event: UserEvent| {
            Some(Published {
                schema_version: SCHEMA_VERSION,
                event_id: self.id.clone(),
                occurred_at,
                event,
            })
        };
        match (&self.before, &self.after) {
            // Sign-up writes the user without a referrer.
            (None, Some(user)) if user.deleted_at.is_none() => Outcome {
                event: publish(
                    user.created_at,
                    UserEvent::UserCreated {
                        user_id: user.id,
                        invite_code: user.invite_code.clone(),
                    },
                ),
                count: None,
            },
            (Some(before), Some(after)) if before.referrer.is_none() => match &after.referrer {
                Some(referrer) => Outcome {
                    event: publish(
                        after.referred_at.unwrap_or(after.created_at),
                        UserEvent::ReferralCreated {
                            referrer_id: referrer.id,
                            referral_id: after.id,
                            invite_code: referrer.invite_code.clone(),
                        },
                    ),
                    count: Some(CountChange::Add {
                        referrer: referrer.id,
                        referral: after.id,
                    }),
                },
                None => UserChange::deletion(before, after, publish),
            },
            (Some(before), Some(after)) => UserChange::deletion(before, after, publish),
            _ => Outcome::default(),
        }
    }

    fn deletion(
        before: &UserImage,
        after: &UserImage,
        publish: impl Fn(u64, UserEvent) -> Option<Published>,
    ) -> Outcome {
        match (before.deleted_at, after.deleted_at) {
            (None, Some(deleted_at)) => Outcome {
                event: publish(deleted_at, UserEvent::UserDeleted { user_id: after.id }),
                count: after.referrer.as_ref().map(|referrer| CountChange::Remove {
                    referrer: referrer.id,
                    referral: after.id,
                }),
            },
            _ => Outcome::default(),
        }
    }
}

/// Where events go (EventBridge: adapters::eventbridge).
pub trait EventBus: Send + Sync {
    /// Publishes the events, in order; says for each whether the bus took
    /// it. One not taken is published again later, with the same id.
    fn publish(&self, events: &[Published]) -> impl Future<Output = Vec<bool>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn user(n: u64) -> UserImage {
        UserImage {
            id: id(n),
            invite_code: InviteCode::parse(&format!("CODE{n:02}")).unwrap(),
            referrer: None,
            created_at: 1_000,
            referred_at: None,
            deleted_at: None,
        }
    }

    fn referred(n: u64, by: u64) -> UserImage {
        UserImage {
            referrer: Some(Referrer {
                id: id(by),
                invite_code: user(by).invite_code,
            }),
            referred_at: Some(2_000),
            ..user(n)
        }
    }

    fn deleted(image: UserImage) -> UserImage {
        UserImage {
            deleted_at: Some(3_000),
            ..image
        }
    }

    fn change(before: Option<UserImage>, after: Option<UserImage>) -> UserChange {
        UserChange {
            id: "change-1".into(),
            before,
            after,
        }
    }

    fn detail(outcome: &Outcome) -> serde_json::Value {
        serde_json::from_str(&outcome.event.as_ref().unwrap().detail()).unwrap()
    }

    #[test]
    fn a_new_user_is_user_created_with_its_id_and_code_and_no_count() {
        let outcome = change(None, Some(user(1))).outcome();
        assert_eq!(outcome.event.as_ref().unwrap().event.kind(), "user.created");
        assert_eq!(
            detail(&outcome),
            serde_json::json!({
                "schema_version": 1,
                "event_id": "change-1",
                "occurred_at": 1000,
                "user_id": 1,
                "invite_code": "CODE01",
            })
        );
        assert_eq!(outcome.count, None);
    }

    #[test]
    fn a_referrer_set_is_referral_created_and_adds_to_the_referrers_count() {
        let outcome = change(Some(user(2)), Some(referred(2, 1))).outcome();
        assert_eq!(
            detail(&outcome),
            serde_json::json!({
                "schema_version": 1,
                "event_id": "change-1",
                "occurred_at": 2000,
                "referrer_id": 1,
                "referral_id": 2,
                "invite_code": "CODE01",
            })
        );
        assert_eq!(
            outcome.count,
            Some(CountChange::Add {
                referrer: id(1),
                referral: id(2)
            })
        );
    }

    #[test]
    fn a_deletion_is_user_deleted_and_takes_a_referral_out_of_the_count() {
        let outcome = change(Some(referred(2, 1)), Some(deleted(referred(2, 1)))).outcome();
        assert_eq!(
            detail(&outcome),
            serde_json::json!({
                "schema_version": 1,
                "event_id": "change-1",
                "occurred_at": 3000,
                "user_id": 2,
            })
        );
        assert_eq!(
            outcome.count,
            Some(CountChange::Remove {
                referrer: id(1),
                referral: id(2)
            })
        );
        // Without a referrer, no count changes.
        let outcome = change(Some(user(3)), Some(deleted(user(3)))).outcome();
        assert_eq!(outcome.event.unwrap().event.kind(), "user.deleted");
        assert_eq!(outcome.count, None);
    }

    #[test]
    fn other_changes_mean_nothing() {
        for (before, after) in [
            // A count updated, a referral marked as counted: the same user.
            (Some(referred(2, 1)), Some(referred(2, 1))),
            (Some(user(1)), Some(user(1))),
            // A tombstone touched again (its referral count, for one).
            (Some(deleted(user(1))), Some(deleted(user(1)))),
            // Items are never removed; if one were, nobody signed up or out.
            (Some(user(1)), None),
            (None, None),
        ] {
            assert_eq!(change(before, after).outcome(), Outcome::default());
        }
    }
}

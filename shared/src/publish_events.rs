//! The `publish-events` function: the users table's DynamoDB stream →
//! domain events on EventBridge ([`crate::user_events`]) and the referrers'
//! `referrals_count`. Not behind API Gateway: Lambda's event source mapping
//! polls the stream and hands it batches of records (template.yaml,
//! `PublishEventsFunction`).
//!
//! A batch is handled in order. Its events go out first (ten per request),
//! then the count changes of the records whose events went out. The first
//! record not fully handled is reported back (`ReportBatchItemFailures`):
//! Lambda delivers the batch again from that record, so nothing after it
//! overtakes it and nothing before it is redone. What was published after
//! it is published again, with the same ids (consumers dedupe); the count
//! changes apply once however often they are delivered. After the mapping's
//! retries, the failed range goes to the dead-letter queue (docs/events.md).

use std::convert::Infallible;

use aws_config::SdkConfig;
use aws_lambda_events::event::dynamodb::Event as StreamBatch;
use aws_lambda_events::event::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::{LambdaEvent, service_fn};

use crate::adapters::dynamo::{UserTable, user_change};
use crate::adapters::eventbridge::EventBridgeBus;
use crate::config::{Config, ConfigError};
use crate::endpoints::function_aws_config;
use crate::store::{ReferralCounts, StoreError};
use crate::user_events::{EventBus, Outcome, UserChange};

/// The function's name: its binary, and its AWS requests' app name.
pub const NAME: &str = "publish-events";

pub struct PublishEvents<B = EventBridgeBus, C = UserTable> {
    pub bus: B,
    pub counts: C,
}

/// One record of a batch: where it is in the stream (what Lambda retries
/// from) and the change it carries (None: not a user's item).
pub struct Delivered {
    pub sequence: String,
    pub change: Result<Option<UserChange>, StoreError>,
}

impl PublishEvents {
    /// What a cold start builds, from configuration alone.
    pub fn build(config: &Config) -> Result<Self, ConfigError> {
        PublishEvents::from_config(config, &function_aws_config(config, NAME)?)
    }

    /// Builds the clients; no I/O.
    pub fn from_config(config: &Config, aws: &SdkConfig) -> Result<Self, ConfigError> {
        Ok(PublishEvents {
            bus: EventBridgeBus::new(
                aws_sdk_eventbridge::Client::new(aws),
                config.event_bus_name()?,
            ),
            counts: UserTable::new(aws_sdk_dynamodb::Client::new(aws), config.users_table()?),
        })
    }
}

impl<B: EventBus, C: ReferralCounts> PublishEvents<B, C> {
    /// The Lambda invocation: the batch's records, and the first one not
    /// handled as the batch's one failure (none: all handled).
    pub async fn handle(&self, batch: StreamBatch) -> DynamoDbEventResponse {
        let delivered = batch
            .records
            .iter()
            .map(|record| Delivered {
                sequence: record.change.sequence_number.clone().unwrap_or_default(),
                change: user_change(record),
            })
            .collect();
        let mut response = DynamoDbEventResponse::default();
        if let Some(sequence) = self.handle_batch(delivered).await {
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = Some(sequence);
            response.batch_item_failures.push(failure);
        }
        response
    }

    /// Handles the records in order; returns the sequence number of the
    /// first one not fully handled.
    pub async fn handle_batch(&self, batch: Vec<Delivered>) -> Option<String> {
        // A record this code cannot read is not skipped: it stops the batch
        // there, and after the retries its range goes to the dead-letter queue.
        let readable = batch
            .iter()
            .position(|d| {
                d.change
                    .as_ref()
                    .inspect_err(|err| tracing::error!(error = %err, "unreadable stream record"))
                    .is_err()
            })
            .unwrap_or(batch.len());
        let outcomes: Vec<Outcome> = batch[..readable]
            .iter()
            .map(|d| match &d.change {
                Ok(Some(change)) => change.outcome(),
                _ => Outcome::default(),
            })
            .collect();

        let events: Vec<_> = outcomes.iter().filter_map(|o| o.event.clone()).collect();
        let taken = if events.is_empty() {
            Vec::new()
        } else {
            self.bus.publish(&events).await
        };
        let mut taken = taken.into_iter();
        let published = outcomes
            .iter()
            .position(|o| o.event.is_some() && !taken.next().unwrap_or(false))
            .unwrap_or(readable);

        for (i, outcome) in outcomes[..published].iter().enumerate() {
            if let Some(change) = &outcome.count
                && let Err(err) = self.counts.apply(change).await
            {
                tracing::error!(error = %err, "referral count not updated");
                return Some(batch[i].sequence.clone());
            }
        }
        tracing::info!(records = batch.len(), events = events.len(), "stream batch");
        batch.get(published).map(|d| d.sequence.clone())
    }
}

/// The whole `main` of the function: build once, then handle batches.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::observe::init_logging();
    let function = PublishEvents::build(&Config::from_env())
        .inspect_err(|err| tracing::error!(error = %err, "configuration error"))?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<StreamBatch>| async move {
            Ok::<_, Infallible>(function.handle(event.payload).await)
        },
    ))
    .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::invite::InviteCode;
    use crate::store::Referrer;
    use crate::user::UserId;
    use crate::user_events::{CountChange, Published, UserImage};

    /// A bus that takes every event except those whose id it was told to refuse.
    #[derive(Default)]
    struct Bus {
        refuse: Vec<String>,
        published: Mutex<Vec<String>>,
    }

    impl EventBus for Bus {
        async fn publish(&self, events: &[Published]) -> Vec<bool> {
            let mut published = self.published.lock().unwrap();
            events
                .iter()
                .map(|event| {
                    let taken = !self.refuse.contains(&event.event_id);
                    if taken {
                        published.push(event.event_id.clone());
                    }
                    taken
                })
                .collect()
        }
    }

    /// Counts that fail for the referrals they were told to fail for.
    #[derive(Default)]
    struct Counts {
        fail_for: Vec<u64>,
        applied: Mutex<Vec<CountChange>>,
    }

    impl ReferralCounts for Counts {
        async fn apply(&self, change: &CountChange) -> Result<(), StoreError> {
            let (CountChange::Add { referral, .. } | CountChange::Remove { referral, .. }) = change;
            if self.fail_for.contains(&referral.get()) {
                return Err(StoreError("throttled".into()));
            }
            self.applied.lock().unwrap().push(*change);
            Ok(())
        }
    }

    fn image(id: u64, referrer: Option<u64>) -> UserImage {
        UserImage {
            id: UserId::new(id).unwrap(),
            invite_code: InviteCode::parse("ABC123").unwrap(),
            referrer: referrer.map(|r| Referrer {
                id: UserId::new(r).unwrap(),
                invite_code: InviteCode::parse("ABC123").unwrap(),
            }),
            created_at: 1,
            referred_at: referrer.map(|_| 2),
            deleted_at: None,
        }
    }

    /// Record `seq`: user `id` signs up (no referrer) or enters `referrer`'s code.
    fn record(seq: &str, id: u64, referrer: Option<u64>) -> Delivered {
        let (before, after) = match referrer {
            None => (None, image(id, None)),
            Some(_) => (Some(image(id, None)), image(id, referrer)),
        };
        Delivered {
            sequence: seq.into(),
            change: Ok(Some(UserChange {
                id: format!("event-{seq}"),
                before,
                after: Some(after),
            })),
        }
    }

    fn not_a_user(seq: &str) -> Delivered {
        Delivered {
            sequence: seq.into(),
            change: Ok(None),
        }
    }

    fn batch() -> Vec<Delivered> {
        vec![
            record("1", 10, None),
            not_a_user("2"),
            record("3", 11, Some(10)),
            record("4", 12, Some(10)),
            record("5", 13, None),
        ]
    }

    fn added(referrals: &[u64]) -> Vec<CountChange> {
        referrals
            .iter()
            .map(|&r| CountChange::Add {
                referrer: UserId::new(10).unwrap(),
                referral: UserId::new(r).unwrap(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_batch_handled_whole_reports_no_failure() {
        let function = PublishEvents {
            bus: Bus::default(),
            counts: Counts::default(),
        };
        assert_eq!(function.handle_batch(batch()).await, None);
        assert_eq!(
            *function.bus.published.lock().unwrap(),
            ["event-1", "event-3", "event-4", "event-5"]
        );
        assert_eq!(*function.counts.applied.lock().unwrap(), added(&[11, 12]));
    }

    #[tokio::test]
    async fn an_event_the_bus_refused_is_where_the_batch_starts_again() {
        let function = PublishEvents {
            bus: Bus {
                refuse: vec!["event-4".into()],
                ..Bus::default()
            },
            counts: Counts::default(),
        };
        assert_eq!(function.handle_batch(batch()).await, Some("4".into()));
        // Only the records before it had their counts changed: the retry
        // from record 4 changes its count, and 5's, once.
        assert_eq!(*function.counts.applied.lock().unwrap(), added(&[11]));
    }

    #[tokio::test]
    async fn a_count_not_changed_is_where_the_batch_starts_again() {
        let function = PublishEvents {
            bus: Bus::default(),
            counts: Counts {
                fail_for: vec![11],
                ..Counts::default()
            },
        };
        assert_eq!(function.handle_batch(batch()).await, Some("3".into()));
        assert_eq!(*function.counts.applied.lock().unwrap(), added(&[]));
    }

    #[tokio::test]
    async fn an_unreadable_record_stops_the_batch_before_it() {
        let function = PublishEvents {
            bus: Bus::default(),
            counts: Counts::default(),
        };
        let mut batch = batch();
        batch[2].change = Err(StoreError("unexpected item shape in the stream".into()));
        assert_eq!(function.handle_batch(batch).await, Some("3".into()));
        assert_eq!(*function.bus.published.lock().unwrap(), ["event-1"]);
        assert_eq!(*function.counts.applied.lock().unwrap(), added(&[]));
    }

    #[tokio::test]
    async fn the_failure_is_reported_to_lambda_by_its_sequence_number() {
        let function = PublishEvents {
            bus: Bus {
                refuse: vec!["c5f0a3d1e2b44f6f9a7b8c9d0e1f2a3b".into()],
                ..Bus::default()
            },
            counts: Counts::default(),
        };
        // The sample `sam local invoke` uses: two sign-ups and a referrer set.
        let batch: StreamBatch =
            serde_json::from_str(include_str!("../../events/publish-events/sign-up.json")).unwrap();
        let response = serde_json::to_value(function.handle(batch).await).unwrap();
        assert_eq!(function.counts.applied.lock().unwrap().len(), 0);
        assert_eq!(
            response,
            serde_json::json!({"batchItemFailures": [{"itemIdentifier": "100000000000000000001"}]})
        );
    }
}

//! Domain events out to Amazon EventBridge: `PutEvents`, ten entries per
//! request (its limit), each with the event's type as `detail-type`, its
//! `detail`, and the change's time as the envelope's `time`.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use super::aws_error_kind;
use crate::user_events::{EventBus, Published, SOURCE};

/// PutEvents takes at most this many entries.
const ENTRIES_PER_REQUEST: usize = 10;

pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus: String) -> Self {
        EventBridgeBus { client, bus }
    }

    fn entry(&self, event: &Published) -> PutEventsRequestEntry {
        PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(event.event.kind())
            .detail(event.detail())
            .time(DateTime::from_secs(event.occurred_at as i64))
            .build()
    }
}

impl EventBus for EventBridgeBus {
    /// Request by request, in order; after a request that failed as a
    /// whole, the rest is not sent (it will be, with the batch, again).
    async fn publish(&self, events: &[Published]) -> Vec<bool> {
        let mut taken = Vec::with_capacity(events.len());
        for chunk in events.chunks(ENTRIES_PER_REQUEST) {
            let entries = chunk.iter().map(|event| self.entry(event)).collect();
            match self
                .client
                .put_events()
                .set_entries(Some(entries))
                .send()
                .await
            {
                Ok(output) => {
                    // One result per entry, in order; a failed one has an error code.
                    let results = output.entries();
                    for (i, event) in chunk.iter().enumerate() {
                        let error = results.get(i).map(|r| r.error_code());
                        let ok = matches!(error, Some(None));
                        if !ok {
                            tracing::warn!(
                                event_id = %event.event_id,
                                error = error.flatten().unwrap_or("no result"),
                                "EventBridge did not take an event"
                            );
                        }
                        taken.push(ok);
                    }
                }
                Err(err) => {
                    tracing::error!(error = %aws_error_kind(&err), "PutEvents failed");
                    taken.resize(events.len(), false);
                    break;
                }
            }
        }
        taken
    }
}

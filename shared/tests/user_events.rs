//! publish-events end to end on real peers: users written to DynamoDB Local
//! (the same store calls the endpoints make), its stream read as Lambda's
//! poller reads it, the batches handed to the function, the events put on
//! moto's EventBridge and delivered by a rule to an SQS queue, which the
//! test reads. Each published `detail` is checked against its schema in
//! docs/events/. Needs DynamoDB Local and moto (make test starts both).

mod support;

use std::collections::{BTreeMap, HashSet};

use aws_lambda_events::event::dynamodb::{Event as StreamBatch, EventRecord};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use phone_auth::adapters::dynamo::UserTable;
use phone_auth::adapters::eventbridge::EventBridgeBus;
use phone_auth::publish_events::PublishEvents;
use phone_auth::store::{NewUser, Referrer, ReferrerWrite, User, UserStore};
use serde_json::{Value, json};
use support::{a_user, env, now, parse_phone, raw_user, unique_phone};

struct Pipeline {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    function: PublishEvents,
    users: UserTable,
    /// Stream records already handed to the function.
    seen: HashSet<String>,
}

impl Pipeline {
    /// A bus of its own on moto, whose rule sends every phone-auth event to a queue of its own.
    async fn new() -> Pipeline {
        let aws = support::aws().await;
        let moto = |builder: aws_config::SdkConfig| {
            builder
                .into_builder()
                .endpoint_url(env("MOTO_ENDPOINT"))
                .build()
        };
        let table = env("USERS_TABLE");
        let dynamo = aws_sdk_dynamodb::Client::new(&aws);
        let stream_arn = dynamo
            .describe_table()
            .table_name(&table)
            .send()
            .await
            .unwrap()
            .table
            .and_then(|t| t.latest_stream_arn)
            .expect("the users table has a stream (template.yaml, scripts/create_tables.py)");
        let streams = aws_sdk_dynamodbstreams::Client::from_conf(
            aws_sdk_dynamodbstreams::config::Builder::from(&aws)
                .endpoint_url(env("AWS_ENDPOINT_URL_DYNAMODB"))
                .build(),
        );

        let name = format!("events-{}", rand::random::<u32>());
        let events = aws_sdk_eventbridge::Client::new(&moto(aws.clone()));
        events.create_event_bus().name(&name).send().await.unwrap();
        let sqs = aws_sdk_sqs::Client::new(&moto(aws.clone()));
        let queue_url = sqs
            .create_queue()
            .queue_name(&name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let queue_arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
            .clone();
        events
            .put_rule()
            .name("all")
            .event_bus_name(&name)
            .event_pattern(r#"{"source": ["phone-auth"]}"#)
            .send()
            .await
            .unwrap();
        events
            .put_targets()
            .rule("all")
            .event_bus_name(&name)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(queue_arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();

        Pipeline {
            users: UserTable::new(dynamo.clone(), table.clone()),
            function: PublishEvents {
                bus: EventBridgeBus::new(events, name),
                counts: UserTable::new(dynamo, table),
            },
            streams,
            stream_arn,
            sqs,
            queue_url,
            seen: HashSet::new(),
        }
    }

    /// The stream's records of these users' items not handed over yet, in
    /// stream order, as Lambda's event carries them. (The run's other tests
    /// share the table: their records are left out.)
    async fn new_records(&mut self, users: &[&User]) -> Vec<EventRecord> {
        let keys: HashSet<String> = users.iter().map(|u| format!("USER#{}", u.id)).collect();
        let shards = self
            .streams
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .unwrap()
            .stream_description
            .unwrap()
            .shards
            .unwrap_or_default();
        let mut records = Vec::new();
        for shard in shards {
            let mut iterator = self
                .streams
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(shard.shard_id.unwrap())
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .unwrap()
                .shard_iterator;
            while let Some(current) = iterator {
                let page = self
                    .streams
                    .get_records()
                    .shard_iterator(current)
                    .send()
                    .await
                    .unwrap();
                let got = page.records.unwrap_or_default();
                if got.is_empty() {
                    break;
                }
                records.extend(got);
                iterator = page.next_shard_iterator;
            }
        }
        records
            .into_iter()
            .filter(|record| {
                let change = record.dynamodb.as_ref().unwrap();
                let key = change.keys.as_ref().unwrap()["pk"].as_s().unwrap();
                keys.contains(key) && self.seen.insert(record.event_id.clone().unwrap())
            })
            .map(lambda_record)
            .collect()
    }

    async fn handle(&self, records: Vec<EventRecord>) -> Value {
        let mut batch = StreamBatch::default();
        batch.records = records;
        serde_json::to_value(self.function.handle(batch).await).unwrap()
    }

    /// Every event the queue received so far: (detail-type, detail).
    async fn delivered(&self) -> Vec<(String, Value)> {
        let mut events = Vec::new();
        loop {
            let messages = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(10)
                .send()
                .await
                .unwrap()
                .messages
                .unwrap_or_default();
            if messages.is_empty() {
                return events;
            }
            for message in messages {
                let event: Value = serde_json::from_str(message.body().unwrap()).unwrap();
                assert_eq!(event["source"], "phone-auth");
                events.push((
                    event["detail-type"].as_str().unwrap().to_string(),
                    event["detail"].clone(),
                ));
                self.sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle.unwrap())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }

    async fn referrals_count(&self, user: &User) -> Option<String> {
        raw_user(user.id)
            .await
            .get("referrals_count")
            .map(|n| n.as_n().unwrap().clone())
    }

    async fn sign_up(&self) -> User {
        let user = a_user(parse_phone(&unique_phone()));
        assert_eq!(
            self.users.create(&user).await.unwrap(),
            NewUser::Created(user.clone())
        );
        user
    }
}

/// A record of the streams API, as the record of Lambda's DynamoDB event.
fn lambda_record(record: aws_sdk_dynamodbstreams::types::Record) -> EventRecord {
    let change = record.dynamodb.unwrap();
    let item = |item: Option<std::collections::HashMap<_, _>>| {
        serde_json::to_value(serde_dynamo::Item::from(item.unwrap_or_default())).unwrap()
    };
    serde_json::from_value(json!({
        "eventID": record.event_id,
        "eventName": record.event_name.unwrap().as_str(),
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": change.approximate_creation_date_time.map(|t| t.secs()),
            "Keys": item(change.keys),
            "NewImage": item(change.new_image),
            "OldImage": item(change.old_image),
            "SequenceNumber": change.sequence_number,
            "SizeBytes": change.size_bytes,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }))
    .unwrap()
}

/// The schemas of docs/events/, by event type.
fn schemas() -> BTreeMap<String, jsonschema::Validator> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/events");
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let kind = name.strip_suffix(".v1.json").expect("<type>.v1.json");
            let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            for example in schema["examples"].as_array().unwrap() {
                assert!(
                    jsonschema::is_valid(&schema, example),
                    "{name}: its example"
                );
            }
            (
                kind.to_string(),
                jsonschema::validator_for(&schema).unwrap(),
            )
        })
        .collect()
}

fn id(user: &User) -> u64 {
    user.id.get()
}

#[tokio::test]
async fn sign_up_referral_and_deletion_are_published_once_each_in_order_and_counted() {
    let schemas = schemas();
    let mut pipeline = Pipeline::new().await;
    let referrer = pipeline.sign_up().await;
    let referral = pipeline.sign_up().await;
    let code = referrer.invite_code.clone();
    let by_referrer = Referrer {
        id: referrer.id,
        invite_code: code.clone(),
    };
    assert_eq!(
        pipeline
            .users
            .set_referrer(referral.id, &by_referrer, referrer.id, now())
            .await
            .unwrap(),
        ReferrerWrite::Set
    );

    let records = pipeline.new_records(&[&referrer, &referral]).await;
    assert_eq!(records.len(), 3, "two sign-ups and a referrer set");
    assert_eq!(
        pipeline.handle(records.clone()).await,
        json!({"batchItemFailures": []})
    );
    let events = pipeline.delivered().await;
    let kinds: Vec<(&str, u64)> = events
        .iter()
        .map(|(kind, detail)| {
            let subject = detail.get("referral_id").or(detail.get("user_id")).unwrap();
            (kind.as_str(), subject.as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("user.created", id(&referrer)),
            ("user.created", id(&referral)),
            ("referral.created", id(&referral)),
        ]
    );
    let (_, referral_created) = &events[2];
    assert_eq!(referral_created["referrer_id"], id(&referrer));
    assert_eq!(referral_created["invite_code"], code.as_str());
    for (kind, detail) in &events {
        let errors: Vec<String> = schemas[kind]
            .iter_errors(detail)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{kind} {detail}: {errors:?}");
        assert!(
            !detail.to_string().contains(referral.phone.as_str())
                && !detail.to_string().contains(referrer.phone.as_str()),
            "no phone in events: {detail}"
        );
    }
    assert_eq!(
        pipeline.referrals_count(&referrer).await.as_deref(),
        Some("1")
    );

    // The same batch delivered again (Lambda retried it): the same events,
    // with the same ids, and the count unchanged.
    let first_ids: Vec<Value> = events.iter().map(|(_, d)| d["event_id"].clone()).collect();
    assert_eq!(
        pipeline.handle(records).await,
        json!({"batchItemFailures": []})
    );
    let again: Vec<Value> = pipeline
        .delivered()
        .await
        .iter()
        .map(|(_, d)| d["event_id"].clone())
        .collect();
    assert_eq!(again, first_ids);
    assert_eq!(
        pipeline.referrals_count(&referrer).await.as_deref(),
        Some("1")
    );
    // The changes the count made (the referrer's count, the referral's
    // mark) are in the stream too, and mean nothing.
    let bookkeeping = pipeline.new_records(&[&referrer, &referral]).await;
    assert_eq!(bookkeeping.len(), 2);
    pipeline.handle(bookkeeping).await;
    assert_eq!(pipeline.delivered().await, []);

    // The referral deletes their account: user.deleted, out of the count.
    assert!(pipeline.users.delete(&referral, now()).await.unwrap());
    let records = pipeline.new_records(&[&referrer, &referral]).await;
    assert_eq!(
        pipeline.handle(records).await,
        json!({"batchItemFailures": []})
    );
    let events = pipeline.delivered().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0, "user.deleted");
    assert_eq!(events[0].1["user_id"], id(&referral));
    assert!(schemas["user.deleted"].is_valid(&events[0].1));
    assert_eq!(
        pipeline.referrals_count(&referrer).await.as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn a_bus_that_refuses_reports_the_first_record_and_counts_nothing() {
    let mut pipeline = Pipeline::new().await;
    // A bus that does not exist: every PutEvents entry fails.
    let events = aws_sdk_eventbridge::Client::new(
        &support::aws()
            .await
            .into_builder()
            .endpoint_url(env("MOTO_ENDPOINT"))
            .build(),
    );
    pipeline.function.bus = EventBridgeBus::new(events, "no-such-bus".into());
    let referrer = pipeline.sign_up().await;
    let referral = pipeline.sign_up().await;
    let by_referrer = Referrer {
        id: referrer.id,
        invite_code: referrer.invite_code.clone(),
    };
    pipeline
        .users
        .set_referrer(referral.id, &by_referrer, referrer.id, now())
        .await
        .unwrap();
    let records = pipeline.new_records(&[&referrer, &referral]).await;
    let first = records[0].change.sequence_number.clone().unwrap();
    assert_eq!(
        pipeline.handle(records).await,
        json!({"batchItemFailures": [{"itemIdentifier": first}]})
    );
    assert_eq!(pipeline.referrals_count(&referrer).await, None);
}

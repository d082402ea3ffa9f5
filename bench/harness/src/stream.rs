//! The stream consumer, publish-events (issue 15): its cold start beside the
//! baseline's, and its throughput over the users table's own stream.
//!
//! By the time this phase runs, the other phases have signed up thousands
//! of users, set their referrers and deleted accounts: the stream in
//! DynamoDB Local holds a real mix of every kind of change. It is read whole
//! (as Lambda's poller would from `TRIM_HORIZON`), kept to users' items (the
//! template's `FilterCriteria`) and handed to one warm process in batches of
//! the template's `BatchSize`, with DynamoDB behind the counting recorder and
//! EventBridge a stub that takes everything. Replaying the referral changes
//! counts them (or finds them counted) exactly as Lambda's delivery would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::recorder::{DynamoProxy, Tally};
use crate::report::{ColdSample, Warm};
use crate::runtime::Function;
use crate::stubs::{EventBridgeStub, RawDynamo};
use crate::{BASELINE, Res, Settings, events};

pub const NAME: &str = "publish-events";
/// The event source mapping's `BatchSize` in template.yaml.
const BATCH_SIZE: usize = 100;

/// What replaying the stream took.
pub struct Throughput {
    /// Records in the stream, and those the filter keeps (users' items).
    pub records: usize,
    pub user_records: usize,
    pub batches: usize,
    pub events_published: u64,
    pub put_events_requests: u64,
    /// Every invocation's duration, added: the function's busy time.
    pub busy: Duration,
    /// From the first batch handed over to the last answer.
    pub wall: Duration,
    pub dynamodb: Tally,
}

impl Throughput {
    pub fn to_json(&self) -> Value {
        let per_second = |n: f64, d: Duration| (n / d.as_secs_f64() * 10.0).round() / 10.0;
        let events = self.events_published as f64;
        json!({
            "records": self.records,
            "user_records": self.user_records,
            "batches": self.batches,
            "batch_size": BATCH_SIZE,
            "events_published": self.events_published,
            "put_events_requests": self.put_events_requests,
            "busy_s": (self.busy.as_secs_f64() * 1000.0).round() / 1000.0,
            "wall_s": (self.wall.as_secs_f64() * 1000.0).round() / 1000.0,
            "events_per_second": per_second(events, self.busy),
            "records_per_second": per_second(self.user_records as f64, self.busy),
            "dynamodb": self.dynamodb.to_json(),
            "dynamodb_requests_per_event": if events > 0.0 {
                (f64::from(self.dynamodb.requests) / events * 1000.0).round() / 1000.0
            } else {
                f64::NAN
            },
        })
    }
}

/// The users table's stream, whole and in order, as Lambda's DynamoDB event
/// spells its records (GetRecords' records plus `eventSourceARN`).
async fn read_stream(dynamodb: SocketAddr, table: &str) -> Res<Vec<Value>> {
    let mut ddb = RawDynamo::connect(dynamodb).await?;
    let send = |body: Value| serde_json::to_vec(&body).expect("JSON");
    let described = ddb
        .send(
            "DynamoDB_20120810.DescribeTable",
            &send(json!({ "TableName": table })),
        )
        .await?;
    let arn = described["Table"]["LatestStreamArn"]
        .as_str()
        .ok_or_else(|| format!("{table} has no stream (scripts/create_tables.py enables it)"))?
        .to_string();
    // Shards in the order DescribeStream lists them: parents before children.
    let mut shards = Vec::new();
    let mut start: Option<String> = None;
    loop {
        let mut request = json!({ "StreamArn": arn });
        if let Some(start) = &start {
            request["ExclusiveStartShardId"] = json!(start);
        }
        let page = ddb
            .send("DynamoDBStreams_20120810.DescribeStream", &send(request))
            .await?;
        let description = &page["StreamDescription"];
        for shard in description["Shards"].as_array().into_iter().flatten() {
            shards.push(shard["ShardId"].as_str().unwrap_or_default().to_string());
        }
        match description["LastEvaluatedShardId"].as_str() {
            Some(last) => start = Some(last.to_string()),
            None => break,
        }
    }
    let mut records = Vec::new();
    for shard in shards {
        let iterator = ddb
            .send(
                "DynamoDBStreams_20120810.GetShardIterator",
                &send(json!({
                    "StreamArn": arn,
                    "ShardId": shard,
                    "ShardIteratorType": "TRIM_HORIZON",
                })),
            )
            .await?;
        let mut iterator = iterator["ShardIterator"].as_str().map(str::to_string);
        // An open shard hands out a next iterator forever: an empty page is its end for now.
        while let Some(current) = iterator {
            let page = ddb
                .send(
                    "DynamoDBStreams_20120810.GetRecords",
                    &send(json!({ "ShardIterator": current, "Limit": 1000 })),
                )
                .await?;
            let got = page["Records"].as_array().cloned().unwrap_or_default();
            if got.is_empty() {
                break;
            }
            records.extend(got.into_iter().map(|mut record| {
                record["eventSourceARN"] = json!(arn);
                record
            }));
            iterator = page["NextShardIterator"].as_str().map(str::to_string);
        }
    }
    Ok(records)
}

/// The template's filter: `{"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "USER#"}]}}}}`.
fn is_user(record: &Value) -> bool {
    record["dynamodb"]["Keys"]["pk"]["S"]
        .as_str()
        .is_some_and(|pk| pk.starts_with("USER#"))
}

fn batch_event(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({ "Records": records })).expect("JSON")
}

/// One invocation, which must report every record handled.
async fn call_batch(function: &mut Function, event: Vec<u8>) -> Res<Duration> {
    let outcome = function.invoke(event).await?;
    let answer: Value = serde_json::from_slice(&outcome.body).unwrap_or_default();
    let failures = answer["batchItemFailures"].as_array().map(Vec::len);
    if outcome.error || failures != Some(0) {
        return Err(format!(
            "{NAME} did not handle a whole batch: {}",
            String::from_utf8_lossy(&outcome.body)
        )
        .into());
    }
    Ok(outcome.duration)
}

pub struct StreamResults {
    /// This function's cold starts, and the baseline's beside them.
    pub cold: Vec<ColdSample>,
    pub baseline_cold: Vec<ColdSample>,
    pub warm: Warm,
    pub throughput: Throughput,
}

pub async fn stream_phase(settings: &Settings, env: &[(String, String)]) -> Res<StreamResults> {
    let table = std::env::var("USERS_TABLE")?;
    let records: Vec<Value> = read_stream(settings.dynamodb, &table).await?;
    let user_records: Vec<Value> = records.iter().filter(|r| is_user(r)).cloned().collect();
    let batches: Vec<Vec<u8>> = user_records.chunks(BATCH_SIZE).map(batch_event).collect();
    let first = batches
        .first()
        .cloned()
        .ok_or("the users table's stream has no user records")?;
    eprintln!(
        "bench: stream consumer, {} records ({} users' items, {} batches)",
        records.len(),
        user_records.len(),
        batches.len()
    );
    let bus = EventBridgeStub::start().await?;
    let with = |dynamodb: &str| {
        let mut env = env.to_vec();
        env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_DYNAMODB");
        env.push(("AWS_ENDPOINT_URL_DYNAMODB".into(), dynamodb.to_string()));
        env.push(("AWS_ENDPOINT_URL_EVENTBRIDGE".into(), bus.endpoint()));
        env.push(("EVENT_BUS_NAME".into(), "bench-events".into()));
        env
    };

    // Cold starts, alternating with the baseline as the other functions'
    // do, each handling the stream's first batch (its referral changes are
    // counted by the first and found counted by the others).
    let direct = with(&format!("http://{}", settings.dynamodb));
    let (mut cold, mut baseline_cold) = (Vec::new(), Vec::new());
    for round in 0..settings.cold_runs {
        eprint!(
            "\rbench: {NAME} cold starts, round {}/{}",
            round + 1,
            settings.cold_runs
        );
        baseline_cold
            .push(crate::cold_start(settings, &direct, BASELINE, events::baseline(), None).await?);
        cold.push(
            crate::cold_start_with(
                settings,
                &direct,
                NAME,
                async |function: &mut Function| call_batch(function, first.clone()).await,
                None,
            )
            .await?,
        );
    }
    eprintln!();

    // The whole stream through one warm process, DynamoDB counted.
    let proxy = DynamoProxy::counting(settings.dynamodb).await?;
    let mut function = Function::spawn(
        NAME,
        &settings.binary(NAME),
        &with(&proxy.endpoint()),
        &settings.log(&format!("{NAME}-warm")),
    )
    .await?;
    function.ready().await?;
    proxy.take();
    bus.take();
    let mut durations = Vec::with_capacity(batches.len());
    let started = Instant::now();
    let cpu_before = function.cpu_time()?;
    for event in batches {
        durations.push(call_batch(&mut function, event).await?);
    }
    let wall = started.elapsed();
    let (put_events_requests, events_published) = bus.take();
    let throughput = Throughput {
        records: records.len(),
        user_records: user_records.len(),
        batches: durations.len(),
        events_published,
        put_events_requests,
        busy: durations.iter().sum(),
        wall,
        dynamodb: proxy.take(),
    };
    let cpu = function.cpu_time()? - cpu_before;
    let peak_rss_kb = function.peak_rss_kb()?;
    function.stop().await;
    Ok(StreamResults {
        cold,
        baseline_cold,
        warm: Warm {
            durations,
            cpu,
            peak_rss_kb,
        },
        throughput,
    })
}

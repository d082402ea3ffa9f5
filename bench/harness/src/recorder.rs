//! The DynamoDB recorder: an HTTP proxy in front of DynamoDB Local that notes,
//! for every request, the function that sent it (`app/<name>` in the SDK's
//! user agent), its operation, and the IAM permissions it needs (action, and
//! table or index). Responses pass unchanged.
//!
//! `make bench` runs it in process to count requests and capacity per flow
//! ([`DynamoProxy::take`]). `make test` runs it as `bench record` in front of
//! the functions during the end-to-end tests, writing each distinct
//! (function, action, resource) once to a file, which shared/tests/routes.rs
//! then compares with what template.yaml grants each function.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use crate::Res;
use crate::http1::{Message, read_message, write_message};

/// DynamoDB work seen by the proxy since the last `take`.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub requests: u32,
    pub operations: BTreeMap<String, u32>,
    /// Capacity units as DynamoDB Local reports them (`ReturnConsumedCapacity=INDEXES`,
    /// transactional items already doubled, index writes included).
    pub read_units: f64,
    pub write_units: f64,
    /// Writes refused by their condition: DynamoDB bills them (1 WCU per KB) but reports nothing.
    pub failed_conditions: u32,
    /// Most requests in flight at once: 2 means two were issued concurrently.
    pub max_in_flight: u32,
}

impl Tally {
    /// Two tallies taken one after the other, as one: a flow counted in parts.
    pub fn plus(mut self, other: &Tally) -> Tally {
        self.requests += other.requests;
        for (operation, n) in &other.operations {
            *self.operations.entry(operation.clone()).or_default() += n;
        }
        self.read_units += other.read_units;
        self.write_units += other.write_units;
        self.failed_conditions += other.failed_conditions;
        // The parts ran one after the other, never together.
        self.max_in_flight = self.max_in_flight.max(other.max_in_flight);
        self
    }

    pub fn to_json(&self) -> Value {
        json!({
            "requests": self.requests,
            "operations": self.operations,
            "read_units": self.read_units,
            "write_units": self.write_units,
            "failed_conditions": self.failed_conditions,
            "max_in_flight": self.max_in_flight,
        })
    }
}

/// One IAM authorization a request needs: `dynamodb:<Action>` on a table
/// (its name) or an index (`<table>/index/<index>`).
pub type Permission = (String, String);

/// The function that sent a request: `app/<name>` in the AWS SDK's
/// `x-amz-user-agent` header (the Rust SDK leaves it out of `user-agent`),
/// as `phone_auth::endpoints::run` sets it.
pub fn caller(request: &Message) -> Option<String> {
    request
        .header("x-amz-user-agent")?
        .split_whitespace()
        .find_map(|part| part.strip_prefix("app/"))
        .map(str::to_string)
}

/// The DynamoDB operation of a request: `X-Amz-Target: DynamoDB_20120810.GetItem` → `GetItem`.
pub fn operation(request: &Message) -> Option<String> {
    request
        .header("x-amz-target")
        .and_then(|t| t.rsplit_once('.'))
        .map(|(_, op)| op.to_string())
}

/// `TableName` may be a name or a table ARN (`arn:...:table/<name>`).
fn table_name(value: &Value) -> String {
    let name = value.as_str().unwrap_or("*");
    name.rsplit_once(":table/")
        .map_or(name, |(_, table)| table)
        .to_string()
}

/// The IAM permissions a request needs (Service Authorization Reference,
/// "Actions, resources, and condition keys for Amazon DynamoDB"). Most
/// operations are their own action on `TableName`, or on the index named by
/// `IndexName`. There is no action for a transaction: each of its items needs
/// the action of the single-item operation it stands for (ConditionCheck →
/// ConditionCheckItem, Put → PutItem, Update → UpdateItem, Delete →
/// DeleteItem, Get → GetItem) on its table. A batch needs its own action on
/// every table it names.
pub fn permissions(operation: &str, body: &Value) -> BTreeSet<Permission> {
    let action = |name: &str| format!("dynamodb:{name}");
    let mut needs = BTreeSet::new();
    match operation {
        "TransactWriteItems" | "TransactGetItems" => {
            let items = body["TransactItems"].as_array().into_iter().flatten();
            for (kind, item) in items.filter_map(Value::as_object).flatten() {
                let name = match kind.as_str() {
                    "ConditionCheck" => "ConditionCheckItem",
                    "Put" => "PutItem",
                    "Update" => "UpdateItem",
                    "Delete" => "DeleteItem",
                    "Get" => "GetItem",
                    // Unknown to this proxy: kept as is, so a comparison names it.
                    other => other,
                };
                needs.insert((action(name), table_name(&item["TableName"])));
            }
        }
        "BatchGetItem" | "BatchWriteItem" => {
            let tables = body["RequestItems"].as_object().into_iter().flatten();
            for (table, _) in tables {
                needs.insert((action(operation), table_name(&json!(table))));
            }
        }
        _ => {
            let table = table_name(&body["TableName"]);
            let resource = match body["IndexName"].as_str() {
                Some(index) => format!("{table}/index/{index}"),
                None => table,
            };
            needs.insert((action(operation), resource));
        }
    }
    needs
}

/// Each distinct (function, action, resource) seen, appended to a file as
/// one JSON line when first seen: `{"function": "get-code" | null, "action", "resource"}`.
struct Record {
    file: File,
    seen: BTreeSet<(Option<String>, Permission)>,
}

impl Record {
    fn note(&mut self, caller: &Option<String>, needs: BTreeSet<Permission>) -> Res<()> {
        for permission in needs {
            let key = (caller.clone(), permission);
            if self.seen.contains(&key) {
                continue;
            }
            let (function, (action, resource)) = &key;
            let line = json!({ "function": function, "action": action, "resource": resource });
            writeln!(self.file, "{line}")?;
            self.file.flush()?;
            self.seen.insert(key);
        }
        Ok(())
    }
}

#[derive(Default)]
struct Counter {
    tally: Mutex<Tally>,
    in_flight: AtomicU32,
    record: Option<Mutex<Record>>,
    /// Adds `ReturnConsumedCapacity=INDEXES` to every request, for the capacity figures.
    ask_capacity: bool,
}

/// The recording proxy in front of DynamoDB Local.
pub struct DynamoProxy {
    pub address: SocketAddr,
    counter: Arc<Counter>,
}

fn is_read(operation: &str) -> bool {
    matches!(
        operation,
        "GetItem" | "BatchGetItem" | "Query" | "Scan" | "TransactGetItems"
    )
}

fn capacity_units(body: &Value) -> f64 {
    match body.get("ConsumedCapacity") {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|c| c["CapacityUnits"].as_f64())
            .sum(),
        Some(c) => c["CapacityUnits"].as_f64().unwrap_or(0.0),
        None => 0.0,
    }
}

impl DynamoProxy {
    /// For `make bench`: on a free loopback port, asking DynamoDB Local for
    /// the consumed capacity of every request.
    pub async fn counting(upstream: SocketAddr) -> Res<DynamoProxy> {
        let counter = Counter {
            ask_capacity: true,
            ..Counter::default()
        };
        Self::start("127.0.0.1:0".parse()?, upstream, counter).await
    }

    /// For `make test`: requests pass unchanged, and every permission they
    /// need is written to `path` (emptied first).
    pub async fn recording(
        listen: SocketAddr,
        upstream: SocketAddr,
        path: &Path,
    ) -> Res<DynamoProxy> {
        let record = Record {
            file: File::create(path).map_err(|e| format!("{}: {e}", path.display()))?,
            seen: BTreeSet::new(),
        };
        let counter = Counter {
            record: Some(Mutex::new(record)),
            ..Counter::default()
        };
        Self::start(listen, upstream, counter).await
    }

    async fn start(listen: SocketAddr, upstream: SocketAddr, counter: Counter) -> Res<DynamoProxy> {
        let listener = TcpListener::bind(listen).await?;
        let proxy = DynamoProxy {
            address: listener.local_addr()?,
            counter: Arc::new(counter),
        };
        let counter = proxy.counter.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    if let Err(err) = proxy_connection(stream, upstream, counter).await {
                        eprintln!("DynamoDB proxy: a connection failed: {err}");
                    }
                });
            }
        });
        Ok(proxy)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// What was counted since the last call.
    pub fn take(&self) -> Tally {
        std::mem::take(&mut *self.counter.tally.lock().expect("not poisoned"))
    }
}

/// One request to DynamoDB Local over the kept connection, or a new one.
/// DynamoDB Local closes a kept connection once it has been idle a while;
/// a request that finds it closed (nothing answered) is sent again once on
/// a fresh connection, as HTTP clients do, instead of failing the caller's
/// request (which surfaced as a 503 under load in `make test`).
async fn exchange(
    kept: &mut Option<BufReader<TcpStream>>,
    upstream: SocketAddr,
    start: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Res<Message> {
    if let Some(conn) = kept.as_mut() {
        let answered = match write_message(conn.get_mut(), start, headers, body).await {
            Ok(()) => read_message(conn).await,
            Err(err) => Err(err),
        };
        if let Ok(Some(response)) = answered {
            return Ok(response);
        }
        // Closed before answering: once more, on a new connection.
        *kept = None;
    }
    let stream = TcpStream::connect(upstream).await?;
    stream.set_nodelay(true)?;
    let conn = kept.insert(BufReader::new(stream));
    write_message(conn.get_mut(), start, headers, body).await?;
    read_message(conn)
        .await?
        .ok_or_else(|| "DynamoDB Local closed a new connection without answering".into())
}

async fn proxy_connection(
    stream: TcpStream,
    upstream: SocketAddr,
    counter: Arc<Counter>,
) -> Res<()> {
    stream.set_nodelay(true)?;
    let mut downstream = BufReader::new(stream);
    let mut upstream_conn: Option<BufReader<TcpStream>> = None;
    while let Some(request) = read_message(&mut downstream).await? {
        let operation = operation(&request);
        let parsed: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if let (Some(record), Some(operation)) = (&counter.record, &operation) {
            record
                .lock()
                .expect("not poisoned")
                .note(&caller(&request), permissions(operation, &parsed))?;
        }
        let operation = operation.unwrap_or_else(|| "?".into());
        let mut body = request.body.clone();
        if let (true, Value::Object(mut fields)) = (counter.ask_capacity, parsed) {
            fields
                .entry("ReturnConsumedCapacity")
                .or_insert_with(|| json!("INDEXES"));
            body = serde_json::to_vec(&fields)?;
        }
        let headers: Vec<(&str, &str)> = request
            .headers
            .iter()
            .filter(|(n, _)| n != "content-length" && n != "transfer-encoding")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();

        let now_in_flight = counter.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        {
            let mut tally = counter.tally.lock().expect("not poisoned");
            tally.requests += 1;
            *tally.operations.entry(operation.clone()).or_default() += 1;
            tally.max_in_flight = tally.max_in_flight.max(now_in_flight);
        }
        let response = exchange(
            &mut upstream_conn,
            upstream,
            &request.start,
            &headers,
            &body,
        )
        .await;
        counter.in_flight.fetch_sub(1, Ordering::SeqCst);
        let response = response?;

        let parsed: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        {
            let mut tally = counter.tally.lock().expect("not poisoned");
            let units = capacity_units(&parsed);
            if is_read(&operation) {
                tally.read_units += units;
            } else {
                tally.write_units += units;
            }
            let error_type = parsed["__type"].as_str().unwrap_or("");
            if error_type.ends_with("ConditionalCheckFailedException")
                || error_type.ends_with("TransactionCanceledException")
            {
                tally.failed_conditions += 1;
            }
        }
        let headers: Vec<(&str, &str)> = response
            .headers
            .iter()
            .filter(|(n, _)| n != "content-length" && n != "transfer-encoding")
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        write_message(
            downstream.get_mut(),
            &response.start,
            &headers,
            &response.body,
        )
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(operation: &str, body: Value) -> Vec<(String, String)> {
        permissions(operation, &body).into_iter().collect()
    }

    fn pair(action: &str, resource: &str) -> (String, String) {
        (action.to_string(), resource.to_string())
    }

    #[test]
    fn single_item_operations_need_their_own_action_on_the_table() {
        assert_eq!(
            needs("UpdateItem", json!({"TableName": "t-Otps", "Key": {}})),
            [pair("dynamodb:UpdateItem", "t-Otps")]
        );
        assert_eq!(
            needs(
                "GetItem",
                json!({"TableName": "arn:aws:dynamodb:us-east-1:123456789012:table/t-Users"})
            ),
            [pair("dynamodb:GetItem", "t-Users")]
        );
    }

    #[test]
    fn a_query_on_an_index_needs_the_index() {
        assert_eq!(
            needs(
                "Query",
                json!({"TableName": "t-Users", "IndexName": "referrer-index"})
            ),
            [pair("dynamodb:Query", "t-Users/index/referrer-index")]
        );
        assert_eq!(
            needs("Query", json!({"TableName": "t-Users"})),
            [pair("dynamodb:Query", "t-Users")]
        );
    }

    #[test]
    fn a_transaction_needs_the_action_of_each_item() {
        let body = json!({"TransactItems": [
            {"Update": {"TableName": "t-Users", "Key": {}}},
            {"ConditionCheck": {"TableName": "t-Users", "Key": {}}},
            {"Put": {"TableName": "t-Other", "Item": {}}},
            {"Delete": {"TableName": "t-Other", "Key": {}}},
        ]});
        assert_eq!(
            needs("TransactWriteItems", body),
            [
                pair("dynamodb:ConditionCheckItem", "t-Users"),
                pair("dynamodb:DeleteItem", "t-Other"),
                pair("dynamodb:PutItem", "t-Other"),
                pair("dynamodb:UpdateItem", "t-Users"),
            ]
        );
        let body = json!({"TransactItems": [{"Get": {"TableName": "t-Users", "Key": {}}}]});
        assert_eq!(
            needs("TransactGetItems", body),
            [pair("dynamodb:GetItem", "t-Users")]
        );
    }

    #[test]
    fn a_batch_needs_its_action_on_every_table() {
        let body = json!({"RequestItems": {"t-Users": {"Keys": []}, "t-Otps": {"Keys": []}}});
        assert_eq!(
            needs("BatchGetItem", body),
            [
                pair("dynamodb:BatchGetItem", "t-Otps"),
                pair("dynamodb:BatchGetItem", "t-Users"),
            ]
        );
    }

    #[test]
    fn the_caller_is_the_sdk_app_name() {
        let request = |headers: &[(&str, &str)]| Message {
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            ..Message::default()
        };
        // As aws-sdk-dynamodb sends them.
        let sdk = request(&[
            (
                "user-agent",
                "aws-sdk-rust/1.3.11 os/linux lang/rust/1.95.0",
            ),
            (
                "x-amz-user-agent",
                "aws-sdk-rust/1.3.11 ua/2.1 api/dynamodb/1.104.0 os/linux lang/rust/1.95.0 \
                 m/E,N,P,g md/http#hyper-1.x app/get-code",
            ),
        ]);
        assert_eq!(caller(&sdk).as_deref(), Some("get-code"));
        let unnamed = request(&[(
            "x-amz-user-agent",
            "aws-sdk-rust/1.3.11 ua/2.1 api/dynamodb/1.104.0 os/linux lang/rust/1.95.0",
        )]);
        assert_eq!(caller(&unnamed), None);
        assert_eq!(caller(&request(&[("user-agent", "curl/8")])), None);
    }

    #[test]
    fn sums_single_and_transactional_capacity() {
        assert_eq!(
            capacity_units(&json!({"ConsumedCapacity": {"CapacityUnits": 1.5}})),
            1.5
        );
        let transaction =
            json!({"ConsumedCapacity": [{"CapacityUnits": 4.0}, {"CapacityUnits": 2.0}]});
        assert_eq!(capacity_units(&transaction), 6.0);
        assert_eq!(capacity_units(&json!({})), 0.0);
    }
}

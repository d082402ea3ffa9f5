//! Loopback peers of the functions: an SNS `Publish` stub that keeps the codes
//! it was asked to send, an EventBridge `PutEvents` stub that counts what it
//! takes, and a raw DynamoDB client (the round-trip baseline, the stream reader).
//! (The counting proxy in front of DynamoDB Local is the recorder, recorder.rs.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use crate::Res;
use crate::http1::{Message, read_message, write_message, write_response};

/// Answers every request on `listener`'s connections (kept alive) with
/// status 200 and what `respond` gives: its content type and body.
fn serve(
    listener: TcpListener,
    respond: impl Fn(Message) -> (&'static str, Vec<u8>) + Send + Sync + 'static,
) {
    let respond = Arc::new(respond);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let respond = respond.clone();
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut conn = BufReader::new(stream);
                while let Ok(Some(request)) = read_message(&mut conn).await {
                    let (content_type, body) = respond(request);
                    let headers = [("content-type", content_type)];
                    if write_response(conn.get_mut(), 200, &headers, &body)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
}

// ------------------------------------------------------------------ SNS

/// Answers SNS `Publish` (query protocol) and remembers the last code sent to each phone.
#[derive(Clone)]
pub struct SnsStub {
    pub address: SocketAddr,
    codes: Arc<Mutex<HashMap<String, String>>>,
}

fn url_decode(input: &str) -> String {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn form(body: &[u8]) -> HashMap<String, String> {
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (url_decode(k), url_decode(v)))
        .collect()
}

impl SnsStub {
    /// On loopback `port` (0: any free one).
    pub async fn start(port: u16) -> Res<SnsStub> {
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let stub = SnsStub {
            address: listener.local_addr()?,
            codes: Arc::default(),
        };
        let codes = stub.codes.clone();
        let published = AtomicU64::new(0);
        serve(listener, move |request| {
            let n = published.fetch_add(1, Ordering::Relaxed) + 1;
            let params = form(&request.body);
            let phone = params.get("PhoneNumber").cloned().unwrap_or_default();
            let message = params.get("Message").cloned().unwrap_or_default();
            // The first run of 4+ digits, in any language's text
            // ("Код входа: 4821." as much as "4821 is your ...").
            let code = message
                .split(|c: char| !c.is_ascii_digit())
                .find(|run| run.len() >= 4);
            if let Some(code) = code {
                codes
                    .lock()
                    .expect("not poisoned")
                    .insert(phone, code.to_string());
            }
            let xml = format!(
                "<PublishResponse xmlns=\"http://sns.amazonaws.com/doc/2010-03-31/\">\
                 <PublishResult><MessageId>00000000-0000-4000-8000-{n:012x}</MessageId></PublishResult>\
                 <ResponseMetadata><RequestId>00000000-0000-4000-9000-{n:012x}</RequestId></ResponseMetadata>\
                 </PublishResponse>"
            );
            ("text/xml", xml.into_bytes())
        });
        Ok(stub)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The last code sent to `phone` (E.164).
    pub fn code_for(&self, phone: &str) -> Option<String> {
        self.codes.lock().expect("not poisoned").get(phone).cloned()
    }
}

// ------------------------------------------------------------------ EventBridge

/// Answers EventBridge `PutEvents` (JSON 1.1 protocol), taking every entry.
#[derive(Clone)]
pub struct EventBridgeStub {
    pub address: SocketAddr,
    requests: Arc<AtomicU64>,
    entries: Arc<AtomicU64>,
}

impl EventBridgeStub {
    pub async fn start() -> Res<EventBridgeStub> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let stub = EventBridgeStub {
            address: listener.local_addr()?,
            requests: Arc::default(),
            entries: Arc::default(),
        };
        let (requests, entries) = (stub.requests.clone(), stub.entries.clone());
        serve(listener, move |request| {
            let n = requests.fetch_add(1, Ordering::Relaxed);
            let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
            let taken = body["Entries"].as_array().map_or(0, Vec::len);
            entries.fetch_add(taken as u64, Ordering::Relaxed);
            let results: Vec<Value> = (0..taken)
                .map(|i| json!({ "EventId": format!("00000000-0000-4000-8000-{n:08x}{i:04x}") }))
                .collect();
            let answer = json!({ "FailedEntryCount": 0, "Entries": results });
            (
                "application/x-amz-json-1.1",
                answer.to_string().into_bytes(),
            )
        });
        Ok(stub)
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `PutEvents` requests and entries taken since the last call.
    pub fn take(&self) -> (u64, u64) {
        (
            self.requests.swap(0, Ordering::Relaxed),
            self.entries.swap(0, Ordering::Relaxed),
        )
    }
}

// ------------------------------------------------------------------ DynamoDB

/// DynamoDB's JSON API on one kept-alive connection, without any SDK
/// (DynamoDB Local takes any signature).
pub struct RawDynamo {
    conn: BufReader<TcpStream>,
    host: String,
}

impl RawDynamo {
    pub async fn connect(endpoint: SocketAddr) -> Res<RawDynamo> {
        let stream = TcpStream::connect(endpoint).await?;
        stream.set_nodelay(true)?;
        Ok(RawDynamo {
            conn: BufReader::new(stream),
            host: endpoint.to_string(),
        })
    }

    /// One request (`target`: `DynamoDB_20120810.GetItem`, `DynamoDBStreams_20120810.GetRecords`, ...).
    pub async fn send(&mut self, target: &str, body: &[u8]) -> Res<Value> {
        let headers = [
            ("host", self.host.as_str()),
            ("content-type", "application/x-amz-json-1.0"),
            ("x-amz-target", target),
            ("x-amz-date", "20260101T000000Z"),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
                 SignedHeaders=host;x-amz-date;x-amz-target, Signature=0",
            ),
        ];
        write_message(self.conn.get_mut(), "POST / HTTP/1.1", &headers, body).await?;
        let response = read_message(&mut self.conn)
            .await?
            .ok_or("DynamoDB Local closed the connection")?;
        if response.status() != 200 {
            return Err(format!(
                "{target} answered {}: {}",
                response.status(),
                String::from_utf8_lossy(&response.body)
            )
            .into());
        }
        Ok(serde_json::from_slice(&response.body)?)
    }
}

/// `n` strongly consistent GetItem calls on one kept-alive connection, each timed:
/// the DynamoDB Local round trip without any SDK, to set the functions' latency against.
pub async fn get_item_round_trips(
    endpoint: SocketAddr,
    table: &str,
    key: &Value,
    n: usize,
) -> Res<Vec<Duration>> {
    let mut dynamo = RawDynamo::connect(endpoint).await?;
    let body = serde_json::to_vec(&json!({
        "TableName": table,
        "Key": key,
        "ConsistentRead": true,
    }))?;
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        dynamo.send("DynamoDB_20120810.GetItem", &body).await?;
        times.push(start.elapsed());
    }
    Ok(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_sns_form_bodies() {
        let params =
            form(b"Action=Publish&Message=1234+is+your%2C+code&PhoneNumber=%2B79001234567");
        assert_eq!(params["Message"], "1234 is your, code");
        assert_eq!(params["PhoneNumber"], "+79001234567");
        assert_eq!(url_decode("100%"), "100%");
    }
}

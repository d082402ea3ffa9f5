//! Loopback peers of the functions: an SNS `Publish` stub that keeps the codes
//! it was asked to send, and a raw DynamoDB client for the round-trip baseline.
//! (The counting proxy in front of DynamoDB Local is the recorder, recorder.rs.)

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::{TcpListener, TcpStream};

use crate::Res;
use crate::http1::{read_message, write_message, write_response};

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
    pub async fn start() -> Res<SnsStub> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let stub = SnsStub {
            address: listener.local_addr()?,
            codes: Arc::default(),
        };
        let codes = stub.codes.clone();
        tokio::spawn(async move {
            let mut published = 0u64;
            while let Ok((stream, _)) = listener.accept().await {
                let codes = codes.clone();
                published += 1;
                let base = published << 20;
                tokio::spawn(async move {
                    let _ = stream.set_nodelay(true);
                    let mut conn = BufReader::new(stream);
                    let mut n = base;
                    while let Ok(Some(request)) = read_message(&mut conn).await {
                        n += 1;
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
                        let headers = [("content-type", "text/xml")];
                        if write_response(conn.get_mut(), 200, &headers, xml.as_bytes())
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                });
            }
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

// ------------------------------------------------------------------ DynamoDB

/// `n` strongly consistent GetItem calls on one kept-alive connection, each timed:
/// the DynamoDB Local round trip without any SDK, to set the functions' latency against.
pub async fn get_item_round_trips(
    endpoint: SocketAddr,
    table: &str,
    key: &Value,
    n: usize,
) -> Res<Vec<Duration>> {
    let stream = TcpStream::connect(endpoint).await?;
    stream.set_nodelay(true)?;
    let mut conn = BufReader::new(stream);
    let body = serde_json::to_vec(&json!({
        "TableName": table,
        "Key": key,
        "ConsistentRead": true,
    }))?;
    let host = endpoint.to_string();
    let headers = [
        ("host", host.as_str()),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-target", "DynamoDB_20120810.GetItem"),
        ("x-amz-date", "20260101T000000Z"),
        (
            "authorization",
            "AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/dynamodb/aws4_request, \
             SignedHeaders=host;x-amz-date;x-amz-target, Signature=0",
        ),
    ];
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        write_message(conn.get_mut(), "POST / HTTP/1.1", &headers, &body).await?;
        let response = read_message(&mut conn)
            .await?
            .ok_or("DynamoDB Local closed the connection")?;
        times.push(start.elapsed());
        if response.status() != 200 {
            return Err(format!(
                "GetItem answered {}: {}",
                response.status(),
                String::from_utf8_lossy(&response.body)
            )
            .into());
        }
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

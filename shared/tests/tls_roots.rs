//! Which certificate authorities the functions' AWS clients trust: Amazon
//! Trust Services' roots, or exactly the certificates `SSL_CERT_FILE` names
//! (adapters::aws_http). A real TLS server on loopback (rustls, a test CA's
//! certificate for 127.0.0.1) answers DynamoDB's GetItem; the clients are
//! what a cold start builds (`endpoints::aws_config`).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_sdk_dynamodb::types::AttributeValue;
use phone_auth::config::Config;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/tls")
        .join(name)
}

/// A TLS server on loopback answering every request with an empty DynamoDB
/// response; its URL and how many requests it answered.
async fn dynamodb_over_tls() -> (String, Arc<AtomicUsize>) {
    let certs = CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let answered = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&answered);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let counter = Arc::clone(&counter);
            tokio::spawn(async move {
                // A refused handshake ends here: the client did not trust us.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = tls.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let body = "{}";
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/x-amz-json-1.0\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (url, answered)
}

/// A GetItem from a client built as a cold start builds it, with `vars`.
async fn get_item(vars: &[(&str, &str)]) -> Result<(), String> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let config = Config::from_lookup(move |name| {
        vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    });
    let aws = phone_auth::endpoints::aws_config(&config)
        .map_err(|e| e.to_string())?
        .into_builder()
        // Credentials of its own, so the test does not depend on the process environment.
        .credentials_provider(aws_sdk_dynamodb::config::SharedCredentialsProvider::new(
            aws_sdk_dynamodb::config::Credentials::new("AKIDTEST", "secret", None, None, "test"),
        ))
        .build();
    aws_sdk_dynamodb::Client::new(&aws)
        .get_item()
        .table_name("t")
        .key("pk", AttributeValue::S("x".into()))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| format!("{}", aws_sdk_dynamodb::error::DisplayErrorContext(e)))
}

#[tokio::test]
async fn the_aws_clients_trust_amazons_roots_or_exactly_ssl_cert_file() {
    let (url, answered) = dynamodb_over_tls().await;
    let ca = fixture("ca.pem").display().to_string();
    let base = [
        ("AWS_REGION", "us-east-1"),
        ("AWS_ENDPOINT_URL_DYNAMODB", url.as_str()),
    ];

    // Amazon's roots: a server certified by another CA is refused.
    let refused = get_item(&base).await.expect_err("an unknown CA is refused");
    assert!(refused.contains("UnknownIssuer"), "{refused}");
    assert_eq!(answered.load(Ordering::SeqCst), 0);

    // SSL_CERT_FILE: its certificates instead.
    let with_ca = [base[0], base[1], ("SSL_CERT_FILE", ca.as_str())];
    get_item(&with_ca).await.expect("the test CA is trusted");
    assert_eq!(answered.load(Ordering::SeqCst), 1);

    // Instead of, not beside, Amazon's: a file with another CA refuses this one.
    let amazon_only = fixture("../../../src/adapters/amazon-trust-services.pem")
        .display()
        .to_string();
    let other = [base[0], base[1], ("SSL_CERT_FILE", amazon_only.as_str())];
    assert!(get_item(&other).await.is_err());

    // A file that is not there, or holds no certificate, stops the start.
    for bad in ["/no/such/file.pem", env!("CARGO_MANIFEST_DIR")] {
        let err = get_item(&[base[0], base[1], ("SSL_CERT_FILE", bad)])
            .await
            .expect_err("refused at start");
        assert!(err.contains("SSL_CERT_FILE"), "{err}");
    }
    let not_pem = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let err = get_item(&[base[0], base[1], ("SSL_CERT_FILE", not_pem)])
        .await
        .expect_err("refused at start");
    assert!(
        err.contains("SSL_CERT_FILE") && err.contains("no PEM certificate"),
        "{err}"
    );
}

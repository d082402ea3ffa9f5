//! The HTTPS client of the functions' AWS clients (DynamoDB, SNS): the SDK's
//! own (hyper, rustls on aws-lc), trusting Amazon Trust Services' roots.
//!
//! The SDK's default client trusts the system's certificate store, which it
//! reads and parses when a client is built, at every cold start: the CA
//! bundle and every file of the certificate directory, about 4 ms of CPU on
//! the `make bench` machine, most of the init of a function that calls
//! DynamoDB. AWS service endpoints are certified by Amazon Trust Services
//! (AWS: "Many AWS services, such as Amazon EC2 and Amazon DynamoDB, already
//! migrated their CAs", https://repost.aws/knowledge-center/s3-cloudfront-certificate-migration),
//! so its five roots, compiled in, are all these clients need, and trusting
//! no other CA is the narrower trust. `SSL_CERT_FILE` replaces them with the
//! certificates of a file (a local TLS proxy, a partition such as aws-cn whose
//! endpoints another CA certifies: point it at the system bundle).

use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Builder, ConnectorBuilder};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Amazon Root CA 1–4 and Starfield Services Root CA G2, with where they
/// come from and their fingerprints (checked by a test below).
const AMAZON_TRUST_SERVICES: &str = include_str!("amazon-trust-services.pem");

/// The root certificates an HTTPS client trusts, as PEM, each one known to
/// be usable as a trust anchor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedRoots {
    pem: Vec<u8>,
    count: usize,
}

impl TrustedRoots {
    /// Amazon Trust Services' roots: what AWS service endpoints chain to.
    /// Not parsed here: a test checks them once and for all.
    pub fn amazon() -> Self {
        TrustedRoots {
            pem: AMAZON_TRUST_SERVICES.as_bytes().to_vec(),
            count: 5,
        }
    }

    /// The certificates of a PEM file. Refused unless it holds at least one
    /// and every one can be a trust anchor: the SDK would panic on an
    /// unusable one when the first client is built.
    pub fn from_pem(pem: Vec<u8>) -> Result<Self, String> {
        let mut anchors = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| format!("unreadable PEM: {e}"))?;
            anchors
                .add(cert)
                .map_err(|e| format!("a certificate that cannot be a root: {e}"))?;
        }
        if anchors.is_empty() {
            return Err("no PEM certificate in it".into());
        }
        Ok(TrustedRoots {
            pem,
            count: anchors.len(),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// The SDK's default HTTPS client (aws-smithy-runtime's
/// `default_https_client`: rustls on aws-lc, the connector settings and sleep
/// of the client using it, proxies from the environment), trusting `roots`
/// instead of the system's certificate store.
pub fn https_client(roots: &TrustedRoots) -> SharedHttpClient {
    let trust = TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(roots.pem.clone());
    let context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .expect("a TLS context needs nothing that can fail");
    let client = Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = ConnectorBuilder::default()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    });
    SharedHttpClient::new(NoWarmUp(client))
}

/// The SDK's client, less its warm-up: when an SDK client is built, the
/// SDK's HTTPS client builds a connector and throws it away
/// (`validate_base_client_config`), only so that the system certificate
/// store is loaded then rather than at the first request. These roots are
/// compiled in or already read, so that would only build and drop a TLS
/// configuration per AWS client at every cold start; the first request
/// builds (and keeps) its connector as it always did.
#[derive(Debug)]
struct NoWarmUp(SharedHttpClient);

impl HttpClient for NoWarmUp {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compiled-in roots are the five of Amazon Trust Services, byte for
    /// byte: each certificate's SHA-256 is the one the file's header lists
    /// (and https://www.amazontrust.com/repository/ publishes).
    #[test]
    fn the_amazon_roots_are_the_published_ones() {
        let listed: Vec<String> = AMAZON_TRUST_SERVICES
            .lines()
            .filter_map(|l| l.strip_prefix("#   "))
            .map(|l| l.rsplit(": ").next().unwrap().to_string())
            .collect();
        let computed: Vec<String> =
            CertificateDer::pem_slice_iter(AMAZON_TRUST_SERVICES.as_bytes())
                .map(|cert| {
                    let digest =
                        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &cert.unwrap());
                    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
                })
                .collect();
        assert_eq!(computed, listed);
        assert_eq!(
            listed,
            [
                "8ecde6884f3d87b1125ba31ac3fcb13d7016de7f57cc904fe1cb97c6ae98196e",
                "1ba5b2aa8c65401a82960118f80bec4f62304d83cec4713a19c39c011ea46db4",
                "18ce6cfe7bf14e60b2e347b8dfe868cb31d02ebb3ada271569f50343b46db3a4",
                "e35d28419ed02025cfa69038cd623962458da5c695fbdea3c22b0bfb25897092",
                "568d6905a2c88708a4b3025190edcfedb1974a606a13c6e5290fcb2ae63edab5",
            ]
        );
        let parsed = TrustedRoots::from_pem(AMAZON_TRUST_SERVICES.as_bytes().to_vec()).unwrap();
        assert_eq!(parsed, TrustedRoots::amazon());
    }

    #[test]
    fn a_roots_file_must_hold_usable_certificates() {
        assert!(TrustedRoots::from_pem(Vec::new()).is_err());
        assert!(TrustedRoots::from_pem(b"not a certificate".to_vec()).is_err());
        let broken = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(TrustedRoots::from_pem(broken.as_bytes().to_vec()).is_err());
    }
}

//! Access and refresh tokens: Ed25519-signed JWTs (`alg: EdDSA`).
//!
//! Asymmetric signing lets any other service verify a token with the public key
//! alone; only the functions that mint tokens ever see the private key. The
//! header's `kid` is the key's RFC 7638 JWK thumbprint, so keys can be rotated.

use aws_lc_rs::digest;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::phone::Phone;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's phone in E.164 form: the user's identity in this service.
    pub sub: String,
    pub token_type: TokenKind,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0} is not a PEM-encoded Ed25519 {1} key")]
    Malformed(&'static str, &'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is expired")]
    Expired,
    #[error("token is not a {0:?} token")]
    WrongKind(TokenKind),
    #[error("token is malformed, tampered with or signed by another key")]
    Invalid,
}

/// Issuer, audience and lifetimes shared by signer and verifier.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_seconds: u64,
    pub refresh_ttl_seconds: u64,
}

pub struct TokenSigner {
    key: EncodingKey,
    header: Header,
    settings: TokenSettings,
}

impl TokenSigner {
    pub fn from_pem(private_pem: &str, settings: TokenSettings) -> Result<Self, KeyError> {
        let malformed = KeyError::Malformed("TOKEN_PRIVATE_KEY", "private (PKCS#8)");
        let der = pem::parse(private_pem).map_err(|_| malformed.clone())?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der.contents())
            .map_err(|_| malformed.clone())?;
        let key = EncodingKey::from_ed_der(der.contents());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(thumbprint(pair.public_key().as_ref()));
        Ok(TokenSigner {
            key,
            header,
            settings,
        })
    }

    pub fn issue(&self, phone: &Phone, kind: TokenKind, now: u64) -> String {
        let ttl = match kind {
            TokenKind::Access => self.settings.access_ttl_seconds,
            TokenKind::Refresh => self.settings.refresh_ttl_seconds,
        };
        let claims = Claims {
            sub: phone.as_str().to_string(),
            token_type: kind,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat: now,
            exp: now + ttl,
            jti: format!("{:032x}", rand::rng().random::<u128>()),
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .expect("an Ed25519 key that parsed at init always signs")
    }
}

pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    pub fn from_pem(public_pem: &str, settings: &TokenSettings) -> Result<Self, KeyError> {
        let malformed = KeyError::Malformed("TOKEN_PUBLIC_KEY", "public (SPKI)");
        let der = pem::parse(public_pem).map_err(|_| malformed.clone())?;
        let raw = ed25519_public_from_spki(der.contents()).ok_or(malformed)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = 0;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Ok(TokenVerifier {
            key: DecodingKey::from_ed_der(raw),
            validation,
        })
    }

    /// The phone the token was issued to, if the token is genuine, unexpired and of `kind`.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Phone, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        if data.claims.token_type != kind {
            return Err(TokenError::WrongKind(kind));
        }
        Ok(Phone::from_trusted(data.claims.sub))
    }
}

/// A fresh Ed25519 key pair as (private PKCS#8 PEM, public SPKI PEM), for tests
/// and local runs. Production keys come from the secret store.
pub fn generate_key_pair() -> (String, String) {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).expect("system randomness");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("just generated");
    let mut spki = SPKI_ED25519_PREFIX.to_vec();
    spki.extend_from_slice(pair.public_key().as_ref());
    (
        pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec())),
        pem::encode(&pem::Pem::new("PUBLIC KEY", spki)),
    )
}

/// DER prefix of an SPKI structure holding an Ed25519 key (RFC 8410); the raw
/// 32-byte key follows it.
const SPKI_ED25519_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

fn ed25519_public_from_spki(der: &[u8]) -> Option<&[u8]> {
    der.strip_prefix(&SPKI_ED25519_PREFIX[..])
        .filter(|raw| raw.len() == 32)
}

/// RFC 7638 thumbprint of the public key's JWK, base64url without padding.
fn thumbprint(public_key: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let jwk = format!(
        r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
        b64.encode(public_key)
    );
    b64.encode(digest::digest(&digest::SHA256, jwk.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "phone-auth".into(),
            audience: "phone-auth".into(),
            access_ttl_seconds: 900,
            refresh_ttl_seconds: 30 * 24 * 3600,
        }
    }

    fn pair() -> (TokenSigner, TokenVerifier) {
        let (private, public) = generate_key_pair();
        (
            TokenSigner::from_pem(&private, settings()).unwrap(),
            TokenVerifier::from_pem(&public, &settings()).unwrap(),
        )
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn phone() -> Phone {
        Phone::from_trusted("+79001234567".into())
    }

    fn b64() -> base64::engine::GeneralPurpose {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
    }

    #[test]
    fn access_and_refresh_round_trip_with_their_lifetimes() {
        let (signer, verifier) = pair();
        let t = now();
        let access = signer.issue(&phone(), TokenKind::Access, t);
        let refresh = signer.issue(&phone(), TokenKind::Refresh, t);
        assert_eq!(verifier.verify(&access, TokenKind::Access), Ok(phone()));
        assert_eq!(verifier.verify(&refresh, TokenKind::Refresh), Ok(phone()));

        let claims: Claims =
            serde_json::from_slice(&b64().decode(access.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.token_type, TokenKind::Access);
        let header: serde_json::Value =
            serde_json::from_slice(&b64().decode(access.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn each_kind_is_refused_where_the_other_is_expected() {
        let (signer, verifier) = pair();
        let access = signer.issue(&phone(), TokenKind::Access, now());
        let refresh = signer.issue(&phone(), TokenKind::Refresh, now());
        assert_eq!(
            verifier.verify(&access, TokenKind::Refresh),
            Err(TokenError::WrongKind(TokenKind::Refresh))
        );
        assert_eq!(
            verifier.verify(&refresh, TokenKind::Access),
            Err(TokenError::WrongKind(TokenKind::Access))
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (signer, verifier) = pair();
        let old = signer.issue(&phone(), TokenKind::Access, now() - 901);
        assert_eq!(
            verifier.verify(&old, TokenKind::Access),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_refused() {
        let (signer, verifier) = pair();
        let (other_signer, _) = pair();
        let token = signer.issue(&phone(), TokenKind::Access, now());
        let parts: Vec<&str> = token.split('.').collect();

        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64().decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "+79990000000".into();
        let forged_payload = b64().encode(serde_json::to_vec(&claims).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verifier.verify(&tampered, TokenKind::Access),
            Err(TokenError::Invalid)
        );

        let none_header = b64().encode(br#"{"alg":"none","typ":"JWT"}"#);
        for unsigned in [
            format!("{none_header}.{forged_payload}."),
            format!("{none_header}.{}.", parts[1]),
        ] {
            assert_eq!(
                verifier.verify(&unsigned, TokenKind::Access),
                Err(TokenError::Invalid)
            );
        }

        let foreign = other_signer.issue(&phone(), TokenKind::Access, now());
        assert_eq!(
            verifier.verify(&foreign, TokenKind::Access),
            Err(TokenError::Invalid)
        );
        for junk in ["", "abc", "a.b.c", &"x".repeat(5000)] {
            assert_eq!(
                verifier.verify(junk, TokenKind::Access),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn other_issuers_and_audiences_are_refused() {
        let (private, public) = generate_key_pair();
        let verifier = TokenVerifier::from_pem(&public, &settings()).unwrap();
        for other in [
            TokenSettings {
                issuer: "someone-else".into(),
                ..settings()
            },
            TokenSettings {
                audience: "another-app".into(),
                ..settings()
            },
        ] {
            let signer = TokenSigner::from_pem(&private, other).unwrap();
            let token = signer.issue(&phone(), TokenKind::Access, now());
            assert_eq!(
                verifier.verify(&token, TokenKind::Access),
                Err(TokenError::Invalid)
            );
        }
    }

    #[test]
    fn malformed_keys_are_reported() {
        let (private, public) = generate_key_pair();
        assert!(TokenSigner::from_pem("not a key", settings()).is_err());
        assert!(TokenSigner::from_pem(&public, settings()).is_err());
        assert!(TokenVerifier::from_pem(&private, &settings()).is_err());
        assert!(TokenVerifier::from_pem("", &settings()).is_err());
    }
}

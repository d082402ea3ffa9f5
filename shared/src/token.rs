//! Access tokens: RS256-signed JWTs (RSA 2048+, PKCS#1 v1.5, SHA-256).
//! (Refresh tokens are opaque and live in `session`.)
//!
//! Asymmetric signing lets any other service verify a token with the public
//! key alone; only the functions that mint tokens ever see the private key.
//! RS256 because it is the one algorithm every JWT library and API Gateway's
//! native JWT authorizer accept (that authorizer takes RSA keys only). The
//! header's `kid` is the key's RFC 7638 JWK thumbprint: verifiers pick the key
//! by it, so a new signing key can be introduced while tokens signed by the
//! previous ones still verify (`TokenKeys`, served as the JWKS).

use std::collections::BTreeMap;

use aws_lc_rs::digest;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeySize, PublicKey};
use aws_lc_rs::signature::{KeyPair, RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngExt;
use serde::{Deserialize, Serialize};

use crate::session::SessionId;
use crate::user::UserId;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Shorter RSA keys are refused at start (NIST SP 800-57: 2048 bits through 2030).
const MIN_RSA_BITS: usize = 2048;

/// The `token_type` claim. This service mints only access JWTs now;
/// refresh JWTs minted before sessions existed stay alive up to 30 days
/// after that deploy, and this claim is what keeps one of them from ever
/// passing as an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

impl TokenKind {
    /// For messages: "an access token", "a refresh token".
    fn with_article(self) -> &'static str {
        match self {
            TokenKind::Access => "an access token",
            TokenKind::Refresh => "a refresh token",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id ([`UserId`], decimal): never the phone, which is
    /// personal data and may change hands.
    pub sub: String,
    pub token_type: TokenKind,
    pub iss: String,
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
    /// The session the token was issued for (`session::SessionId`): lets
    /// the session list mark the caller's own. Stateless: no verifier looks
    /// the session up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("{0} is not a PEM-encoded RSA {1} key")]
    Malformed(&'static str, &'static str),
    #[error("{0} holds a {1}-bit RSA key; at least {MIN_RSA_BITS} bits are required")]
    TooShort(&'static str, usize),
    #[error("{0} lists the key {1} twice")]
    Duplicate(&'static str, String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is expired")]
    Expired,
    #[error("token is not {}", .0.with_article())]
    WrongKind(TokenKind),
    #[error("token is malformed, tampered with or signed by another key")]
    Invalid,
}

/// Issuer, audience and lifetime shared by signer and verifier.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_seconds: u64,
}

/// Signs tokens with the current private key, parsed once at cold start.
///
/// The JWS is assembled here rather than by `jsonwebtoken::encode`, which
/// parses (and validates) the RSA private key again for every token: a few
/// hundred microseconds of CPU per sign-in on a full core, many times that on
/// a 128 MB function's share. The header never changes, so it is encoded once.
pub struct TokenSigner {
    key: RsaKeyPair,
    /// `base64url({"alg":"RS256","typ":"JWT","kid":...})`.
    header: String,
    settings: TokenSettings,
}

impl TokenSigner {
    pub fn from_pem(private_pem: &str, settings: TokenSettings) -> Result<Self, KeyError> {
        const NAME: &str = "TOKEN_PRIVATE_KEY";
        let malformed = KeyError::Malformed(NAME, "private (PKCS#8)");
        let der = pem::parse(private_pem).map_err(|_| malformed.clone())?;
        if der.tag() != "PRIVATE KEY" {
            return Err(malformed);
        }
        let key = RsaKeyPair::from_pkcs8(der.contents()).map_err(|_| malformed)?;
        let bits = key.public_modulus_len() * 8;
        if bits < MIN_RSA_BITS {
            return Err(KeyError::TooShort(NAME, bits));
        }
        let kid = Jwk::of(key.public_key()).kid;
        let header = serde_json::json!({ "alg": "RS256", "typ": "JWT", "kid": kid });
        Ok(TokenSigner {
            key,
            header: B64.encode(header.to_string()),
            settings,
        })
    }

    /// The access token of `user`'s session `sid`.
    pub fn issue_access(&self, user: &UserId, sid: &SessionId, now: u64) -> String {
        self.sign(&user.to_string(), TokenKind::Access, Some(sid), now)
    }

    /// A token of `kind` without a session, valid for the access lifetime:
    /// for tests of the token rules (a refresh JWT as old clients hold).
    pub fn issue(&self, user: &UserId, kind: TokenKind, now: u64) -> String {
        self.sign(&user.to_string(), kind, None, now)
    }

    fn sign(&self, sub: &str, kind: TokenKind, sid: Option<&SessionId>, now: u64) -> String {
        let claims = Claims {
            sub: sub.to_string(),
            token_type: kind,
            iss: self.settings.issuer.clone(),
            aud: self.settings.audience.clone(),
            iat: now,
            exp: now + self.settings.access_ttl_seconds,
            jti: format!("{:032x}", rand::rng().random::<u128>()),
            sid: sid.map(|sid| sid.as_str().to_string()),
        };
        let payload = serde_json::to_vec(&claims).expect("claims serialize");
        let signing_input = format!("{}.{}", self.header, B64.encode(payload));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut signature,
            )
            .expect("an RSA key that parsed at init always signs");
        format!("{signing_input}.{}", B64.encode(signature))
    }
}

/// One public key as a JSON Web Key (RFC 7517/7518), with its RFC 7638 thumbprint as `kid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Jwk {
    pub kty: &'static str,
    #[serde(rename = "use")]
    pub use_: &'static str,
    pub alg: &'static str,
    pub kid: String,
    pub n: String,
    pub e: String,
}

impl Jwk {
    fn of(key: &PublicKey) -> Jwk {
        let n = B64.encode(key.modulus().big_endian_without_leading_zero());
        let e = B64.encode(key.exponent().big_endian_without_leading_zero());
        // RFC 7638: the required members only, in lexicographic order, no whitespace.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        Jwk {
            kty: "RSA",
            use_: "sig",
            alg: "RS256",
            kid: B64.encode(digest::digest(&digest::SHA256, canonical.as_bytes())),
            n,
            e,
        }
    }
}

/// The public keys tokens may be signed with: the current one and any
/// previous ones still inside their tokens' lifetime. Verifiers accept each;
/// `GET /.well-known/jwks.json` lists them.
#[derive(Clone)]
pub struct TokenKeys {
    /// By `kid`, each with its JWK.
    keys: BTreeMap<String, (Jwk, DecodingKey)>,
    /// The current key's `kid`, listed first.
    current: String,
}

impl TokenKeys {
    /// `current_pem`: one SPKI PEM public key (`TOKEN_PUBLIC_KEY`);
    /// `previous_pems`: zero or more, concatenated (`TOKEN_PREVIOUS_PUBLIC_KEYS`).
    pub fn from_pem(current_pem: &str, previous_pems: Option<&str>) -> Result<Self, KeyError> {
        let current = public_key("TOKEN_PUBLIC_KEY", current_pem)?;
        let mut keys = BTreeMap::new();
        let current_kid = current.0.kid.clone();
        keys.insert(current_kid.clone(), current);
        if let Some(previous) = previous_pems {
            const NAME: &str = "TOKEN_PREVIOUS_PUBLIC_KEYS";
            let malformed = || KeyError::Malformed(NAME, "public (SPKI)");
            let blocks = pem::parse_many(previous).map_err(|_| malformed())?;
            // parse_many skips text that is no PEM block: a value with none is a mistake.
            if blocks.is_empty() && !previous.trim().is_empty() {
                return Err(malformed());
            }
            for block in blocks {
                let key = public_key_der(NAME, &block)?;
                let kid = key.0.kid.clone();
                if keys.insert(kid.clone(), key).is_some() {
                    return Err(KeyError::Duplicate(NAME, kid));
                }
            }
        }
        Ok(TokenKeys {
            keys,
            current: current_kid,
        })
    }

    /// The JWK Set document (RFC 7517 §5), the current key first.
    pub fn jwks(&self) -> serde_json::Value {
        let current = &self.keys[&self.current].0;
        let others = self
            .keys
            .iter()
            .filter(|(kid, _)| **kid != self.current)
            .map(|(_, (jwk, _))| jwk);
        serde_json::json!({ "keys": std::iter::once(current).chain(others).collect::<Vec<_>>() })
    }

    fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid).map(|(_, key)| key)
    }
}

fn public_key(name: &'static str, text: &str) -> Result<(Jwk, DecodingKey), KeyError> {
    let block = pem::parse(text).map_err(|_| KeyError::Malformed(name, "public (SPKI)"))?;
    public_key_der(name, &block)
}

fn public_key_der(name: &'static str, block: &pem::Pem) -> Result<(Jwk, DecodingKey), KeyError> {
    let malformed = KeyError::Malformed(name, "public (SPKI)");
    if block.tag() != "PUBLIC KEY" {
        return Err(malformed);
    }
    let key = PublicKey::from_der(block.contents()).map_err(|_| malformed)?;
    let bits = key.modulus_len() * 8;
    if bits < MIN_RSA_BITS {
        return Err(KeyError::TooShort(name, bits));
    }
    let decoding = DecodingKey::from_rsa_raw_components(
        key.modulus().big_endian_without_leading_zero(),
        key.exponent().big_endian_without_leading_zero(),
    );
    Ok((Jwk::of(&key), decoding))
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub user: UserId,
    pub claims: Claims,
}

pub struct TokenVerifier {
    keys: TokenKeys,
    validation: Validation,
}

impl TokenVerifier {
    pub fn new(keys: TokenKeys, settings: &TokenSettings) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        TokenVerifier { keys, validation }
    }

    /// The user a genuine, unexpired token of `kind` was issued to, and its
    /// claims. A genuine token whose `sub` names no user id (one minted
    /// before users had ids, when `sub` was the phone) is invalid.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Verified, TokenError> {
        let claims = self.claims(token, kind)?;
        let user = UserId::from_subject(&claims.sub).ok_or(TokenError::Invalid)?;
        Ok(Verified { user, claims })
    }

    fn claims(&self, token: &str, kind: TokenKind) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.get(kid))
            .ok_or(TokenError::Invalid)?;
        let data =
            jsonwebtoken::decode::<Claims>(token, key, &self.validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            })?;
        if data.claims.token_type != kind {
            return Err(TokenError::WrongKind(kind));
        }
        Ok(data.claims)
    }
}

/// A fresh RSA 2048 key pair as (private PKCS#8 PEM, public SPKI PEM), for
/// tests and local runs. Production keys come from the secret store.
pub fn generate_key_pair() -> (String, String) {
    let pair = RsaKeyPair::generate(KeySize::Rsa2048).expect("system randomness");
    let private = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("encodes");
    let public = pair.public_key().as_der().expect("encodes");
    (
        pem::encode(&pem::Pem::new("PRIVATE KEY", private.as_ref().to_vec())),
        pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_ref().to_vec())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> TokenSettings {
        TokenSettings {
            issuer: "phone-auth".into(),
            audience: "phone-auth".into(),
            access_ttl_seconds: 900,
        }
    }

    fn verifier(current: &str, previous: Option<&str>) -> TokenVerifier {
        TokenVerifier::new(TokenKeys::from_pem(current, previous).unwrap(), &settings())
    }

    fn pair() -> (TokenSigner, TokenVerifier) {
        let (private, public) = generate_key_pair();
        (
            TokenSigner::from_pem(&private, settings()).unwrap(),
            verifier(&public, None),
        )
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn user() -> UserId {
        UserId::new(79001234567).unwrap()
    }

    fn b64() -> base64::engine::GeneralPurpose {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
    }

    #[test]
    fn access_and_refresh_round_trip_with_their_lifetimes() {
        let (signer, verifier) = pair();
        let t = now();
        let access = signer.issue(&user(), TokenKind::Access, t);
        let refresh = signer.issue(&user(), TokenKind::Refresh, t);
        assert_eq!(
            verifier.verify(&access, TokenKind::Access).map(|v| v.user),
            Ok(user())
        );
        assert_eq!(
            verifier
                .verify(&refresh, TokenKind::Refresh)
                .map(|v| v.user),
            Ok(user())
        );

        let claims: Claims =
            serde_json::from_slice(&b64().decode(access.split('.').nth(1).unwrap()).unwrap())
                .unwrap();
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.token_type, TokenKind::Access);
        assert_eq!(claims.sid, None);
        let sid = SessionId::generate();
        let user = user();
        let with_session = signer.issue_access(&user, &sid, t);
        let claims = verifier
            .verify(&with_session, TokenKind::Access)
            .unwrap()
            .claims;
        assert_eq!(
            (claims.sid.as_deref(), claims.exp - claims.iat),
            (Some(sid.as_str()), 900)
        );
        assert_eq!(claims.sub, "79001234567");
        let header: serde_json::Value =
            serde_json::from_slice(&b64().decode(access.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"].as_str().unwrap().len(), 43);
    }

    #[test]
    fn each_kind_is_refused_where_the_other_is_expected() {
        let (signer, verifier) = pair();
        let access = signer.issue(&user(), TokenKind::Access, now());
        let refresh = signer.issue(&user(), TokenKind::Refresh, now());
        assert_eq!(
            verifier.verify(&access, TokenKind::Refresh).map(|v| v.user),
            Err(TokenError::WrongKind(TokenKind::Refresh))
        );
        assert_eq!(
            verifier.verify(&refresh, TokenKind::Access).map(|v| v.user),
            Err(TokenError::WrongKind(TokenKind::Access))
        );
        // What a client reads in the error's `message`.
        assert_eq!(
            TokenError::WrongKind(TokenKind::Access).to_string(),
            "token is not an access token"
        );
        assert_eq!(
            TokenError::WrongKind(TokenKind::Refresh).to_string(),
            "token is not a refresh token"
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let (signer, verifier) = pair();
        let old = signer.issue(&user(), TokenKind::Access, now() - 901);
        assert_eq!(
            verifier.verify(&old, TokenKind::Access).map(|v| v.user),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn a_genuine_token_whose_subject_is_no_user_id_names_nobody() {
        // Before users had ids, `sub` was the phone: such a token, however
        // genuine and unexpired, is refused rather than read as somebody.
        let (signer, verifier) = pair();
        for sub in ["+79001234567", "0", "9007199254740992", ""] {
            let token = signer.sign(sub, TokenKind::Access, None, now());
            assert!(verifier.claims(&token, TokenKind::Access).is_ok());
            assert_eq!(
                verifier.verify(&token, TokenKind::Access).map(|v| v.user),
                Err(TokenError::Invalid),
                "{sub:?}"
            );
        }
    }

    #[test]
    fn tampered_foreign_and_unsigned_tokens_are_refused() {
        let (signer, verifier) = pair();
        let (other_signer, _) = pair();
        let token = signer.issue(&user(), TokenKind::Access, now());
        let parts: Vec<&str> = token.split('.').collect();

        let mut claims: serde_json::Value =
            serde_json::from_slice(&b64().decode(parts[1]).unwrap()).unwrap();
        claims["sub"] = "42".into();
        let forged_payload = b64().encode(serde_json::to_vec(&claims).unwrap());
        let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert_eq!(
            verifier
                .verify(&tampered, TokenKind::Access)
                .map(|v| v.user),
            Err(TokenError::Invalid)
        );

        let none_header = b64().encode(br#"{"alg":"none","typ":"JWT"}"#);
        for unsigned in [
            format!("{none_header}.{forged_payload}."),
            format!("{none_header}.{}.", parts[1]),
        ] {
            assert_eq!(
                verifier
                    .verify(&unsigned, TokenKind::Access)
                    .map(|v| v.user),
                Err(TokenError::Invalid)
            );
        }

        let foreign = other_signer.issue(&user(), TokenKind::Access, now());
        assert_eq!(
            verifier.verify(&foreign, TokenKind::Access).map(|v| v.user),
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
        let verifier = verifier(&public, None);
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
            let token = signer.issue(&user(), TokenKind::Access, now());
            assert_eq!(
                verifier.verify(&token, TokenKind::Access).map(|v| v.user),
                Err(TokenError::Invalid)
            );
        }
    }

    /// `aud` is required and must be ours, as API Gateway's JWT authorizer
    /// requires it in front of the bearer routes: a token signed with our key
    /// but naming no audience, or another one, is refused.
    #[test]
    fn a_token_without_our_audience_is_refused() {
        let (private, public) = generate_key_pair();
        let verifier = verifier(&public, None);
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::RS256);
        header.kid = TokenKeys::from_pem(&public, None).ok().map(|k| k.current);
        let t = now();
        let token = |aud: Option<serde_json::Value>| {
            let mut claims = serde_json::json!({
                "sub": user().to_string(), "token_type": "access", "iss": "phone-auth",
                "iat": t, "exp": t + 900, "jti": "0",
            });
            if let Some(aud) = aud {
                claims["aud"] = aud;
            }
            jsonwebtoken::encode(&header, &claims, &key).unwrap()
        };
        // The same token with our audience verifies: only `aud` differs below.
        assert_eq!(
            verifier
                .verify(&token(Some("phone-auth".into())), TokenKind::Access)
                .map(|v| v.user),
            Ok(user())
        );
        for aud in [
            None,
            Some(serde_json::Value::Null),
            Some("".into()),
            Some("phone-auth-prod".into()),
            Some(serde_json::json!(["another-app"])),
        ] {
            assert_eq!(
                verifier
                    .verify(&token(aud.clone()), TokenKind::Access)
                    .map(|v| v.user),
                Err(TokenError::Invalid),
                "aud {aud:?}"
            );
        }
    }

    #[test]
    fn malformed_keys_are_reported() {
        let (private, public) = generate_key_pair();
        assert!(TokenSigner::from_pem("not a key", settings()).is_err());
        assert!(TokenSigner::from_pem(&public, settings()).is_err());
        assert!(TokenKeys::from_pem(&private, None).is_err());
        assert!(TokenKeys::from_pem("", None).is_err());
        assert!(TokenKeys::from_pem(&public, Some("junk")).is_err());
        // Public keys are no secret: a 1024-bit one, refused as too short.
        assert_eq!(
            TokenKeys::from_pem(SHORT_PUBLIC_KEY, None).err(),
            Some(KeyError::TooShort("TOKEN_PUBLIC_KEY", 1024))
        );
        assert_eq!(
            TokenKeys::from_pem(&public, Some(SHORT_PUBLIC_KEY)).err(),
            Some(KeyError::TooShort("TOKEN_PREVIOUS_PUBLIC_KEYS", 1024))
        );
        assert!(matches!(
            TokenKeys::from_pem(&public, Some(&public)),
            Err(KeyError::Duplicate(..))
        ));
    }

    const SHORT_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQDMXJAtHQsnJrE7qTcypFF7xu0F
i8UpBDZOHgAyDScDhbcp0uMFjmQCp2IZoBUt1vpGsFehCE2VIObU+R8cU38SUhUF
afnXVSdJ3I4v8kD6hxrDxevBr2iPlBADCDb9KafvelEozBz3wL1wKybT73zrrMkE
BrBixpf4U4I+vAyq4QIDAQAB
-----END PUBLIC KEY-----
";

    /// Rotation: tokens of a previous key verify while it is listed, and
    /// stop once it is dropped; a kid nobody lists is refused.
    #[test]
    fn tokens_of_previous_keys_verify_while_their_key_is_listed() {
        let (old_private, old_public) = generate_key_pair();
        let (new_private, new_public) = generate_key_pair();
        let old = TokenSigner::from_pem(&old_private, settings()).unwrap();
        let new = TokenSigner::from_pem(&new_private, settings()).unwrap();
        let old_token = old.issue(&user(), TokenKind::Access, now());
        let new_token = new.issue(&user(), TokenKind::Access, now());

        let during = verifier(&new_public, Some(&old_public));
        assert_eq!(
            during.verify(&old_token, TokenKind::Access).map(|v| v.user),
            Ok(user())
        );
        assert_eq!(
            during.verify(&new_token, TokenKind::Access).map(|v| v.user),
            Ok(user())
        );
        let after = verifier(&new_public, None);
        assert_eq!(
            after.verify(&old_token, TokenKind::Access).map(|v| v.user),
            Err(TokenError::Invalid)
        );

        // The same signature under a header naming no key, or an unknown one.
        let parts: Vec<&str> = old_token.split('.').collect();
        for header in [
            serde_json::json!({"alg": "RS256", "typ": "JWT"}),
            serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "nobody"}),
        ] {
            let token = format!(
                "{}.{}.{}",
                b64().encode(header.to_string()),
                parts[1],
                parts[2]
            );
            assert_eq!(
                during.verify(&token, TokenKind::Access).map(|v| v.user),
                Err(TokenError::Invalid)
            );
        }
    }

    /// The JWKS lists every key, the current one first, each with the
    /// thumbprint an independent implementation (jsonwebtoken's) computes.
    #[test]
    fn the_jwks_lists_the_current_key_first_with_rfc7638_kids() {
        let (current_private, current) = generate_key_pair();
        let (_, previous) = generate_key_pair();
        let keys = TokenKeys::from_pem(&current, Some(&previous)).unwrap();
        let jwks = keys.jwks();
        let listed: Vec<jsonwebtoken::jwk::Jwk> =
            serde_json::from_value(jwks["keys"].clone()).unwrap();
        assert_eq!(listed.len(), 2);
        for jwk in &listed {
            assert_eq!(
                jwk.common.key_id.as_deref(),
                Some(
                    &*jwk
                        .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
                        .unwrap()
                )
            );
        }
        let token = TokenSigner::from_pem(&current_private, settings())
            .unwrap()
            .issue(&user(), TokenKind::Access, now());
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.kid, listed[0].common.key_id);
        // A verifier built from the JWKS alone accepts the token.
        let key = DecodingKey::from_jwk(&listed[0]).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["phone-auth"]);
        assert!(jsonwebtoken::decode::<Claims>(&token, &key, &validation).is_ok());
    }
}

//! Sessions and their opaque refresh tokens. Plain Rust, no AWS types.
//!
//! A successful sign-in starts a session: a server-side record (the
//! `SessionStore`) with a random id, its user and a generation. The refresh
//! token names the session and its generation and carries an HMAC under a
//! server key: `<sid>.<gen>.<mac>`, mac = base64url(HMAC-SHA256(key,
//! "refresh|<sid>|<gen>")). It holds nothing about the user (no phone), is
//! checked before any storage request (a forged or malformed one costs
//! nothing), and is a function of (sid, gen) alone: the token of a
//! generation can be given again without being stored, which is what lets a
//! client that lost the answer to its refresh get the same pair again
//! ([`judge_failed_rotation`]).

use std::net::{IpAddr, Ipv6Addr};

use aws_lc_rs::hmac;
use base64::Engine;

use crate::user::UserId;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Bytes of randomness in a session id: 128 bits, unguessable.
const SID_BYTES: usize = 16;
/// Its base64url length (no padding).
const SID_CHARS: usize = 22;
/// Longest refresh token: sid, the longest u64, a 43-character MAC, two dots.
const MAX_TOKEN_CHARS: usize = SID_CHARS + 20 + 43 + 2;
/// The user agent kept with a session, in characters: enough to tell devices
/// apart in the session list, bounded so that a client cannot grow items.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// A session's id: 128 random bits, base64url without padding (22 characters).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionId(String);

impl SessionId {
    pub fn generate() -> Self {
        let bytes: [u8; SID_BYTES] = rand::random();
        SessionId(B64.encode(bytes))
    }

    /// Only the canonical spelling of 16 bytes: anything else (another
    /// length, padding, characters outside base64url, non-zero trailing
    /// bits) names no session and is refused without a storage request.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() != SID_CHARS {
            return None;
        }
        let bytes = B64.decode(text).ok()?;
        (bytes.len() == SID_BYTES && B64.encode(&bytes) == text).then(|| SessionId(text.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Storage gives back what it was given.
    pub fn from_stored(value: String) -> Self {
        SessionId(value)
    }
}

/// What a refresh token says, once its MAC checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub sid: SessionId,
    pub generation: u64,
}

/// The token is malformed, truncated, or its MAC is not ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the refresh token is malformed or was not issued by this service")]
pub struct InvalidRefreshToken;

/// Mints and checks refresh tokens. The key (`REFRESH_TOKEN_KEY`) is parsed
/// once per cold start; changing it invalidates every refresh token (every
/// session must sign in again), nothing else.
pub struct RefreshKey {
    key: hmac::Key,
}

impl RefreshKey {
    pub fn new(secret: &[u8]) -> Self {
        RefreshKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// The message the MAC covers. The prefix keeps a MAC made with this key
    /// for any other purpose from ever passing as a refresh token's.
    fn message(sid: &SessionId, generation: u64) -> String {
        format!("refresh|{}|{generation}", sid.as_str())
    }

    pub fn token(&self, sid: &SessionId, generation: u64) -> String {
        let mac = hmac::sign(&self.key, Self::message(sid, generation).as_bytes());
        format!("{}.{generation}.{}", sid.as_str(), B64.encode(mac.as_ref()))
    }

    /// The session and generation a token names, if it is well formed and
    /// its MAC is ours (compared in constant time). No storage involved.
    pub fn open(&self, token: &str) -> Result<RefreshToken, InvalidRefreshToken> {
        if token.len() > MAX_TOKEN_CHARS {
            return Err(InvalidRefreshToken);
        }
        let mut parts = token.split('.');
        let (Some(sid), Some(generation), Some(mac), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(InvalidRefreshToken);
        };
        let sid = SessionId::parse(sid).ok_or(InvalidRefreshToken)?;
        // Digits only, no sign, no leading zero: one spelling per generation.
        let canonical = !generation.is_empty()
            && generation.bytes().all(|b| b.is_ascii_digit())
            && !generation.starts_with('0');
        let generation: u64 = canonical
            .then(|| generation.parse().ok())
            .flatten()
            .ok_or(InvalidRefreshToken)?;
        let mac = B64.decode(mac).map_err(|_| InvalidRefreshToken)?;
        hmac::verify(&self.key, Self::message(&sid, generation).as_bytes(), &mac)
            .map_err(|_| InvalidRefreshToken)?;
        Ok(RefreshToken { sid, generation })
    }
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub sid: SessionId,
    pub user: UserId,
    /// The generation of the one refresh token that may rotate it; starts at 1.
    pub generation: u64,
    pub created_at: u64,
    pub last_used_at: u64,
    /// When `generation` was reached (the grace period counts from it).
    pub rotated_at: u64,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// Last use + the idle lifetime.
    pub idle_expires_at: u64,
    /// Creation + the absolute lifetime; also the table's TTL attribute.
    pub expires_at: u64,
    pub revoked_at: Option<u64>,
}

impl Session {
    /// Past either expiry (each checked in code: DynamoDB's TTL deletes late).
    pub fn is_expired(&self, now: u64) -> bool {
        self.idle_expires_at <= now || self.expires_at <= now
    }

    /// Neither revoked nor expired: its current refresh token works.
    pub fn is_live(&self, now: u64) -> bool {
        self.revoked_at.is_none() && !self.is_expired(now)
    }
}

/// Lifetimes of sessions (README "Configuration").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPolicy {
    /// A session unused this long ends (`SESSION_IDLE_DAYS`, 30).
    pub idle_seconds: u64,
    /// A session ends this long after sign-in, however used (`SESSION_MAX_DAYS`, 90).
    pub max_seconds: u64,
    /// How long after a rotation the previous token still gets the current
    /// pair instead of counting as reuse (`REFRESH_REUSE_GRACE_SECONDS`, 10).
    pub reuse_grace_seconds: u64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_seconds: 30 * 86_400,
            max_seconds: 90 * 86_400,
            reuse_grace_seconds: 10,
        }
    }
}

impl SessionPolicy {
    /// A new session of `user`, at generation 1.
    pub fn start(&self, user: UserId, client: ClientInfo, now: u64) -> Session {
        let expires_at = now + self.max_seconds;
        Session {
            sid: SessionId::generate(),
            user,
            generation: 1,
            created_at: now,
            last_used_at: now,
            rotated_at: now,
            user_agent: client.user_agent,
            ip: client.ip,
            idle_expires_at: self.idle_expiry(now, expires_at),
            expires_at,
            revoked_at: None,
        }
    }

    /// The idle expiry after a use at `now`, never past the absolute one.
    pub fn idle_expiry(&self, now: u64, expires_at: u64) -> u64 {
        (now + self.idle_seconds).min(expires_at)
    }
}

/// What the rotation write found when its condition failed, decided here
/// rather than in the adapter: the rules of reuse are the domain's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailedRotation {
    /// No such session (never existed, or TTL removed it): the token is worthless.
    Unknown,
    Revoked,
    Expired,
    /// The presented token is the one just rotated out, within the grace
    /// period: a retry after a lost answer. The client gets the current pair
    /// again (this session, at its current generation); nothing is written.
    Grace(Session),
    /// An older token, or the previous one after the grace period: someone
    /// kept a token they should have dropped. The whole session is revoked.
    Reused,
}

/// Why rotating `presented` was refused, from the session as the refused
/// write saw it (`current`; None if there was no item) at `now`.
pub fn judge_failed_rotation(
    presented: &RefreshToken,
    current: Option<Session>,
    policy: &SessionPolicy,
    now: u64,
) -> FailedRotation {
    let Some(current) = current else {
        return FailedRotation::Unknown;
    };
    if current.revoked_at.is_some() {
        return FailedRotation::Revoked;
    }
    if current.is_expired(now) {
        return FailedRotation::Expired;
    }
    if current.generation <= presented.generation {
        // Not rotated past the presented token, yet live: the condition
        // cannot have failed on it. A token from a later generation than the
        // session's cannot have been issued either. Neither rotates anything.
        return FailedRotation::Unknown;
    }
    let previous = current.generation == presented.generation + 1;
    if previous && now.saturating_sub(current.rotated_at) <= policy.reuse_grace_seconds {
        FailedRotation::Grace(current)
    } else {
        FailedRotation::Reused
    }
}

/// What a session keeps about the client that signed in: enough for its
/// owner to recognise the device in the session list, no more.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub user_agent: Option<String>,
    pub ip: Option<String>,
}

impl ClientInfo {
    /// The User-Agent cut to [`MAX_USER_AGENT_CHARS`] characters (control
    /// characters dropped), and the source address truncated
    /// ([`truncate_ip`]).
    pub fn new(user_agent: Option<&str>, source_ip: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT_CHARS)
                    .collect::<String>()
            })
            .map(|ua| ua.trim().to_string())
            .filter(|ua| !ua.is_empty());
        let ip = source_ip
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok())
            .map(truncate_ip);
        ClientInfo { user_agent, ip }
    }
}

/// The network a session was started from, not the address: an IPv4 address
/// with its last octet 0 (its /24), an IPv6 one cut to its /48 — the block
/// one site (a home, an office) is usually given, where its /64 would be one
/// household's own network and so as identifying as a whole IPv4 address.
/// Enough to tell "at home" from "another country" in the session list,
/// without keeping personal data the list does not need.
pub fn truncate_ip(ip: IpAddr) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{a}.{b}.{c}.0")
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            Ipv6Addr::new(s[0], s[1], s[2], 0, 0, 0, 0, 0).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RefreshKey {
        RefreshKey::new(b"a refresh key of at least thirty-two bytes")
    }

    #[test]
    fn a_token_round_trips_and_names_no_user() {
        let sid = SessionId::generate();
        let token = key().token(&sid, 7);
        assert_eq!(
            key().open(&token),
            Ok(RefreshToken {
                sid: sid.clone(),
                generation: 7
            })
        );
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!((parts[0], parts[1]), (sid.as_str(), "7"));
        assert_eq!(parts[2].len(), 43, "a base64url SHA-256 MAC");
        // Deterministic: the same generation always gets the same token.
        assert_eq!(key().token(&sid, 7), token);
        assert_ne!(key().token(&sid, 8), token);
        assert_eq!(
            key().open(&key().token(&sid, u64::MAX)).unwrap().generation,
            u64::MAX
        );
    }

    #[test]
    fn malformed_truncated_and_forged_tokens_are_refused() {
        let sid = SessionId::generate();
        let token = key().token(&sid, 3);
        let (head, mac) = token.rsplit_once('.').unwrap();
        let mut flipped = B64.decode(mac).unwrap();
        flipped[5] ^= 1;
        let other_key = RefreshKey::new(b"another key, also thirty-two bytes long").token(&sid, 3);
        let bad = [
            String::new(),
            ".".into(),
            "..".into(),
            token[..token.len() - 1].to_string(),
            token[..token.len() / 2].to_string(),
            format!("{token}."),
            format!("{token}.x"),
            format!(".{token}"),
            format!("{head}."),
            format!("{head}.{}", B64.encode(&flipped)),
            format!("{head}.{mac}="),
            // A character outside base64url (always: replacing letters
            // the MAC may not contain would leave it valid).
            format!("{head}.*{}", &mac[1..]),
            format!("{head}.{}", &mac[..42]),
            other_key,
            // The generation: not a number, signed, padded, overflowing.
            format!("{}.x.{mac}", sid.as_str()),
            format!("{}.+3.{mac}", sid.as_str()),
            format!("{}.-3.{mac}", sid.as_str()),
            format!("{}.03.{mac}", sid.as_str()),
            format!("{}. 3.{mac}", sid.as_str()),
            format!("{}.18446744073709551616.{mac}", sid.as_str()),
            // Another generation under this MAC.
            format!("{}.4.{mac}", sid.as_str()),
            // The session id: too short, too long, not base64url.
            format!("{}.3.{mac}", &sid.as_str()[1..]),
            format!("{}A.3.{mac}", sid.as_str()),
            format!("{}+.3.{mac}", &sid.as_str()[1..]),
            "x".repeat(200),
        ];
        for token in bad {
            assert_eq!(key().open(&token), Err(InvalidRefreshToken), "{token:?}");
        }
    }

    #[test]
    fn session_ids_are_canonical_128_bit_base64url() {
        let sid = SessionId::generate();
        assert_eq!(sid.as_str().len(), 22);
        assert_eq!(SessionId::parse(sid.as_str()), Some(sid.clone()));
        assert_ne!(SessionId::generate(), sid);
        // The 22nd character carries 4 bits of the id and 2 of padding:
        // only the spelling with zero padding bits is the id's.
        assert!(SessionId::parse(&"A".repeat(22)).is_some());
        assert_eq!(SessionId::parse(&format!("{}B", "A".repeat(21))), None);
        for bad in [
            "",
            "abc",
            "../../etc/passwd",
            &"A".repeat(23),
            &"*".repeat(22),
        ] {
            assert_eq!(SessionId::parse(bad), None, "{bad:?}");
        }
    }

    fn session(generation: u64, rotated_at: u64) -> Session {
        Session {
            sid: SessionId::generate(),
            user: UserId::new(79001234567).unwrap(),
            generation,
            created_at: 1_000,
            last_used_at: rotated_at,
            rotated_at,
            user_agent: None,
            ip: None,
            idle_expires_at: 50_000,
            expires_at: 90_000,
            revoked_at: None,
        }
    }

    #[test]
    fn a_refused_rotation_is_judged_by_what_the_write_found() {
        let policy = SessionPolicy::default();
        let presented = |generation| RefreshToken {
            sid: SessionId::generate(),
            generation,
        };
        let judge = |token: u64, current: Option<Session>, now: u64| {
            judge_failed_rotation(&presented(token), current, &policy, now)
        };
        let revoked = Session {
            revoked_at: Some(2_000),
            ..session(5, 2_000)
        };
        let rotated = session(5, 2_000);
        // (presented generation, the session as found, now) → the answer.
        assert_eq!(judge(4, None, 2_000), FailedRotation::Unknown);
        assert_eq!(
            judge(4, Some(revoked.clone()), 2_001),
            FailedRotation::Revoked
        );
        assert_eq!(judge(5, Some(revoked), 2_001), FailedRotation::Revoked);
        assert_eq!(
            judge(4, Some(session(5, 2_000)), 50_000),
            FailedRotation::Expired,
            "idle expiry"
        );
        let long_lived = Session {
            idle_expires_at: 100_000,
            ..session(5, 2_000)
        };
        assert_eq!(
            judge(4, Some(long_lived), 90_000),
            FailedRotation::Expired,
            "absolute expiry"
        );
        // The previous token, at the rotation and at the grace period's edges.
        for now in [2_000, 2_010] {
            assert_eq!(
                judge(4, Some(rotated.clone()), now),
                FailedRotation::Grace(rotated.clone()),
                "{now}"
            );
        }
        assert_eq!(
            judge(4, Some(rotated.clone()), 2_011),
            FailedRotation::Reused
        );
        // Any older token, even at once.
        assert_eq!(
            judge(3, Some(rotated.clone()), 2_000),
            FailedRotation::Reused
        );
        assert_eq!(
            judge(1, Some(rotated.clone()), 2_001),
            FailedRotation::Reused
        );
        // The current generation or a later one cannot fail on the generation.
        assert_eq!(
            judge(5, Some(rotated.clone()), 2_001),
            FailedRotation::Unknown
        );
        assert_eq!(judge(6, Some(rotated), 2_001), FailedRotation::Unknown);
        // A grace period of 0: only the same second.
        let strict = SessionPolicy {
            reuse_grace_seconds: 0,
            ..SessionPolicy::default()
        };
        let rotated = session(5, 2_000);
        assert_eq!(
            judge_failed_rotation(&presented(4), Some(rotated.clone()), &strict, 2_000),
            FailedRotation::Grace(rotated.clone())
        );
        assert_eq!(
            judge_failed_rotation(&presented(4), Some(rotated), &strict, 2_001),
            FailedRotation::Reused
        );
    }

    #[test]
    fn a_session_idles_out_but_never_outlives_its_absolute_expiry() {
        let policy = SessionPolicy::default();
        let s = policy.start(UserId::new(7).unwrap(), ClientInfo::default(), 1_000);
        assert_eq!(s.generation, 1);
        assert_eq!(s.expires_at, 1_000 + 90 * 86_400);
        assert_eq!(s.idle_expires_at, 1_000 + 30 * 86_400);
        assert!(s.is_live(s.idle_expires_at - 1));
        assert!(!s.is_live(s.idle_expires_at));
        assert_eq!(
            policy.idle_expiry(s.expires_at - 5, s.expires_at),
            s.expires_at
        );
    }

    #[test]
    fn client_info_is_truncated() {
        let long = "Mozilla/5.0 ".repeat(40);
        let info = ClientInfo::new(Some(&format!("{long}\u{7}")), Some("203.0.113.77"));
        assert_eq!(info.user_agent.unwrap().chars().count(), 256);
        assert_eq!(info.ip.as_deref(), Some("203.0.113.0"));
        let info = ClientInfo::new(Some("  "), Some("2001:db8:abcd:12:1::7"));
        assert_eq!(
            (info.user_agent, info.ip.as_deref()),
            (None, Some("2001:db8:abcd::"))
        );
        assert_eq!(
            ClientInfo::new(None, Some("::ffff:198.51.100.9"))
                .ip
                .as_deref(),
            Some("198.51.100.0")
        );
        assert_eq!(ClientInfo::new(None, Some("not an ip")).ip, None);
        let cyrillic = "ж".repeat(300);
        assert_eq!(
            ClientInfo::new(Some(&cyrillic), None)
                .user_agent
                .unwrap()
                .chars()
                .count(),
            256
        );
    }
}

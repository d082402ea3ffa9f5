//! One-time sign-in codes: generated from a CSPRNG, stored only as an HMAC,
//! checked in constant time.

use aws_lc_rs::hmac;
use rand::RngExt;

use crate::phone::Phone;

/// Length, lifetime and limits of sign-in codes (all configurable).
#[derive(Debug, Clone)]
pub struct OtpPolicy {
    pub length: usize,
    pub ttl_seconds: u64,
    pub max_attempts: u32,
    pub resend_cooldown_seconds: u64,
    /// At most `max_sends_per_window` codes per phone per `send_window_seconds`.
    /// With 4 digits and 3 checks a code, the cooldown alone would allow
    /// 4,320 guesses a day at one phone (a 35% chance to get in); 5 codes an
    /// hour bring that to 360 (3.5%), and cap the SMS bill of an abuser.
    pub max_sends_per_window: u32,
    pub send_window_seconds: u64,
    /// At most this many checks that did not sign in, per phone per lockout
    /// window, across codes; then the phone is locked until the window ends.
    pub max_failed_checks: u32,
    /// Lockout windows are consecutive periods of this length counted from
    /// the Unix epoch (with the default, UTC days).
    pub lockout_window_seconds: u64,
}

impl Default for OtpPolicy {
    fn default() -> Self {
        OtpPolicy {
            length: 4,
            ttl_seconds: 300,
            max_attempts: 3,
            resend_cooldown_seconds: 60,
            max_sends_per_window: 5,
            send_window_seconds: 3600,
            max_failed_checks: 10,
            lockout_window_seconds: 86_400,
        }
    }
}

/// The lockout window a moment falls in: its number since the epoch and its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutWindow {
    pub index: u64,
    pub end: u64,
}

impl OtpPolicy {
    pub fn generate(&self) -> String {
        let mut rng = rand::rng();
        (0..self.length)
            .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
            .collect()
    }

    /// Whether `input` has the shape of a code; anything else is refused before
    /// it can spend one of the attempts.
    pub fn is_well_formed(&self, input: &str) -> bool {
        input.len() == self.length && input.bytes().all(|b| b.is_ascii_digit())
    }

    pub fn lockout_window(&self, now: u64) -> LockoutWindow {
        let index = now / self.lockout_window_seconds;
        LockoutWindow {
            index,
            end: (index + 1) * self.lockout_window_seconds,
        }
    }

    /// Whether `failed_checks` (checks that did not sign in, in the current
    /// lockout window) lock the phone, and for how long (at least 1 s).
    pub fn locked_for(&self, failed_checks: u32, now: u64) -> Option<u64> {
        (failed_checks >= self.max_failed_checks)
            .then(|| (self.lockout_window(now).end - now).max(1))
    }

    /// Why a check was not counted, from what the write that refused it
    /// found: the phone's `failed_checks` in the current lockout window and
    /// its pending code, if any. A locked phone is locked whatever its code;
    /// a code that is there and unexpired had no attempt left.
    pub fn refused_check(
        &self,
        failed_checks: u32,
        pending: Option<&PendingCode>,
        now: u64,
    ) -> Attempt {
        if let Some(retry_after) = self.locked_for(failed_checks, now) {
            return Attempt::Locked { retry_after };
        }
        match pending {
            None => Attempt::NoCode,
            Some(code) if code.is_expired(now) => Attempt::Expired,
            Some(_) => Attempt::Exhausted,
        }
    }

    /// How long storage keeps a phone's item after each write: past its send
    /// window and past its lockout window.
    pub fn item_lifetime(&self) -> u64 {
        self.send_window_seconds.max(self.lockout_window_seconds)
    }
}

/// Result of counting one check against a pending code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The attempt was counted; the code may now be compared.
    Counted(PendingCode),
    /// No code is pending for this phone (never sent, or already used).
    NoCode,
    Expired,
    /// The attempt limit was reached before this attempt.
    Exhausted,
    /// The phone had `max_failed_checks` checks that did not sign in in this
    /// lockout window; it stays locked for `retry_after` seconds.
    Locked {
        retry_after: u64,
    },
}

/// A code waiting to be checked, as stored. It lives minutes; the phone's
/// send window ([`SendWindow`]) lives an hour and outlasts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingCode {
    pub phone: Phone,
    pub code_hash: Vec<u8>,
    pub attempts: u32,
    pub created_at: u64,
    pub expires_at: u64,
}

impl PendingCode {
    pub fn new(phone: Phone, code_hash: Vec<u8>, now: u64, policy: &OtpPolicy) -> Self {
        PendingCode {
            phone,
            code_hash,
            attempts: 0,
            created_at: now,
            expires_at: now + policy.ttl_seconds,
        }
    }

    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

/// A phone's code state: the SMS sent to it in its current send window (a
/// used code still counts; a withdrawn one, whose SMS never went out, is
/// given back), its pending code's age and its failed checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow {
    pub window_start: u64,
    pub sends: u32,
    /// When the phone's pending code was sent; None once it was used or withdrawn.
    pub pending_since: Option<u64>,
    /// Checks in the current lockout window that did not sign in.
    pub failed_checks: u32,
}

/// Why no code may be sent now, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendRefusal {
    /// A code sent less than the cooldown ago is still pending.
    TooSoon { retry_after: u64 },
    /// The window's codes are used up.
    WindowFull { retry_after: u64 },
    /// Too many wrong codes in the lockout window: no code until it ends.
    Locked { retry_after: u64 },
}

impl SendWindow {
    pub fn window_end(&self, policy: &OtpPolicy) -> u64 {
        self.window_start + policy.send_window_seconds
    }

    pub fn is_over(&self, now: u64, policy: &OtpPolicy) -> bool {
        now >= self.window_end(policy)
    }

    /// The rule for sending another code: the phone not locked, room in the
    /// window (or a new window), and no code pending from less than the cooldown ago — also
    /// across a window's end. After a successful sign-in nothing is pending,
    /// so the next code may go at once.
    pub fn refusal(&self, now: u64, policy: &OtpPolicy) -> Option<SendRefusal> {
        if let Some(retry_after) = policy.locked_for(self.failed_checks, now) {
            return Some(SendRefusal::Locked { retry_after });
        }
        if !self.is_over(now, policy) && self.sends >= policy.max_sends_per_window {
            return Some(SendRefusal::WindowFull {
                retry_after: self.window_end(policy) - now,
            });
        }
        let cooldown_end = self.pending_since? + policy.resend_cooldown_seconds;
        (cooldown_end > now).then(|| SendRefusal::TooSoon {
            retry_after: cooldown_end - now,
        })
    }
}

/// Keyed hash of (phone, code). Binding the phone in means a leaked table row
/// cannot be replayed for another number, and without the key 10^4 codes
/// cannot be brute-forced offline.
#[derive(Clone)]
pub struct CodeHasher {
    key: hmac::Key,
}

impl CodeHasher {
    pub fn new(secret: &[u8]) -> Self {
        CodeHasher {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    pub fn hash(&self, phone: &Phone, code: &str) -> Vec<u8> {
        hmac::sign(&self.key, &Self::message(phone, code))
            .as_ref()
            .to_vec()
    }

    /// Constant-time comparison (aws-lc's HMAC verify).
    pub fn matches(&self, phone: &Phone, code: &str, stored_hash: &[u8]) -> bool {
        hmac::verify(&self.key, &Self::message(phone, code), stored_hash).is_ok()
    }

    fn message(phone: &Phone, code: &str) -> Vec<u8> {
        let mut message = Vec::with_capacity(phone.as_str().len() + 1 + code.len());
        message.extend_from_slice(phone.as_str().as_bytes());
        message.push(b':');
        message.extend_from_slice(code.as_bytes());
        message
    }
}

impl std::fmt::Debug for CodeHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeHasher(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn phone(s: &str) -> Phone {
        Phone::from_trusted(s.to_string())
    }

    #[test]
    fn generated_codes_have_the_configured_length_and_vary() {
        let policy = OtpPolicy::default();
        let codes: HashSet<String> = (0..200).map(|_| policy.generate()).collect();
        assert!(codes.iter().all(|c| policy.is_well_formed(c)));
        // 200 draws from 10^4 values: a constant or badly seeded generator would repeat a lot.
        assert!(codes.len() > 180, "only {} distinct codes", codes.len());
        let six = OtpPolicy {
            length: 6,
            ..OtpPolicy::default()
        };
        assert_eq!(six.generate().len(), 6);
    }

    #[test]
    fn every_digit_appears() {
        let policy = OtpPolicy::default();
        let digits: HashSet<char> = (0..200)
            .flat_map(|_| policy.generate().chars().collect::<Vec<_>>())
            .collect();
        assert_eq!(digits.len(), 10);
    }

    #[test]
    fn malformed_codes_are_spotted() {
        let policy = OtpPolicy::default();
        for bad in ["", "123", "12345", "12a4", " 1234", "１２３４"] {
            assert!(!policy.is_well_formed(bad), "{bad:?}");
        }
        assert!(policy.is_well_formed("0042"));
    }

    #[test]
    fn hash_is_keyed_and_bound_to_the_phone() {
        let hasher = CodeHasher::new(b"k1-0123456789abcdef0123456789abcdef");
        let other_key = CodeHasher::new(b"k2-0123456789abcdef0123456789abcdef");
        let p = phone("+79001234567");
        let stored = hasher.hash(&p, "1234");
        assert_ne!(stored, b"1234".to_vec());
        assert!(hasher.matches(&p, "1234", &stored));
        assert!(!hasher.matches(&p, "1235", &stored));
        assert!(!hasher.matches(&phone("+79001234568"), "1234", &stored));
        assert!(!other_key.matches(&p, "1234", &stored));
    }

    #[test]
    fn codes_expire() {
        let policy = OtpPolicy::default();
        let pending = PendingCode::new(phone("+79001234567"), vec![1], 1_000, &policy);
        assert!(!pending.is_expired(1_299));
        assert!(pending.is_expired(1_300));
    }

    fn window(sends: u32, pending_since: Option<u64>) -> SendWindow {
        SendWindow {
            window_start: 1_000,
            sends,
            pending_since,
            failed_checks: 0,
        }
    }

    #[test]
    fn a_pending_code_holds_the_next_one_for_the_cooldown() {
        let policy = OtpPolicy::default();
        let w = window(1, Some(1_000));
        assert_eq!(
            w.refusal(1_045, &policy),
            Some(SendRefusal::TooSoon { retry_after: 15 })
        );
        assert_eq!(w.refusal(1_060, &policy), None);
        // Used or withdrawn: nothing pending, no cooldown.
        assert_eq!(window(1, None).refusal(1_001, &policy), None);
    }

    #[test]
    fn the_cooldown_holds_across_the_end_of_a_window() {
        let policy = OtpPolicy::default();
        let w = window(2, Some(4_599));
        assert!(w.is_over(4_600, &policy));
        assert_eq!(
            w.refusal(4_600, &policy),
            Some(SendRefusal::TooSoon { retry_after: 59 })
        );
        assert_eq!(w.refusal(4_659, &policy), None);
    }

    #[test]
    fn a_full_window_waits_for_its_end_even_with_nothing_pending() {
        let policy = OtpPolicy::default();
        let w = window(5, None);
        assert_eq!(
            w.refusal(1_600, &policy),
            Some(SendRefusal::WindowFull { retry_after: 3_000 })
        );
        assert_eq!(w.refusal(4_600, &policy), None);
        assert_eq!(window(4, None).refusal(1_600, &policy), None);
    }

    #[test]
    fn a_locked_phone_gets_no_code_until_its_lockout_window_ends() {
        let policy = OtpPolicy::default();
        // 2026-11-22 22:00 UTC; the window is the UTC day.
        let now = 1_795_305_600 + 22 * 3600;
        let locked = SendWindow {
            failed_checks: 10,
            ..window(0, None)
        };
        assert_eq!(
            locked.refusal(now, &policy),
            Some(SendRefusal::Locked { retry_after: 7200 })
        );
        let nine = SendWindow {
            failed_checks: 9,
            ..window(0, None)
        };
        assert_eq!(nine.refusal(now, &policy), None);
        assert_eq!(
            policy.lockout_window(now),
            LockoutWindow {
                index: now / 86_400,
                end: 1_795_305_600 + 86_400
            }
        );
        assert_eq!(policy.locked_for(10, 1_795_305_600 + 86_399), Some(1));
        assert_eq!(policy.item_lifetime(), 86_400);
    }

    #[test]
    fn a_refused_check_is_locked_first_then_no_code_then_expired_then_exhausted() {
        let policy = OtpPolicy::default();
        let now = 1_795_305_600 + 22 * 3600;
        let code = |expires_at| PendingCode {
            phone: Phone::from_trusted("+79001234567".into()),
            code_hash: vec![1],
            attempts: 3,
            created_at: now - 60,
            expires_at,
        };
        let (live, expired) = (code(now + 1), code(now));
        assert_eq!(
            policy.refused_check(10, Some(&live), now),
            Attempt::Locked { retry_after: 7200 }
        );
        assert_eq!(
            policy.refused_check(10, None, now),
            Attempt::Locked { retry_after: 7200 }
        );
        assert_eq!(policy.refused_check(9, None, now), Attempt::NoCode);
        assert_eq!(
            policy.refused_check(9, Some(&expired), now),
            Attempt::Expired
        );
        assert_eq!(
            policy.refused_check(0, Some(&live), now),
            Attempt::Exhausted
        );
    }
}

//! A user's identity. Plain Rust, no AWS types.
//!
//! A user is not their phone: carriers recycle numbers, and a deleted
//! user's phone may sign up again as somebody new. Each user gets an id of
//! their own at sign-up; the tokens' `sub` is that id, and storage maps the
//! phone to it (one owner per phone, enforced by a conditional write).
//!
//! The id is a **random integer** from 1 to 2^53 − 1:
//! * an integer, because seed-004's clients read `"id": 1`, and a JSON
//!   number up to 2^53 − 1 is exact in every client (JavaScript's
//!   `Number.MAX_SAFE_INTEGER`);
//! * random rather than counted, so that it gives away neither how many
//!   users there are nor who signed up when (sequential ids do), nothing
//!   needs one counter item that every sign-up writes (a hot key), and it
//!   cannot be guessed from a neighbour's. A collision is refused by the same
//!   conditional write that makes ids unique and is drawn again: with ten
//!   million users, one sign-up in a billion draws twice.

use std::fmt;

use serde::Serialize;

/// A user's id (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct UserId(u64);

impl UserId {
    /// The largest id: 2^53 − 1, exact as a JSON number in every client.
    pub const MAX: u64 = (1 << 53) - 1;

    /// A fresh random id, uniformly from 1 to [`UserId::MAX`].
    pub fn generate() -> Self {
        UserId(rand::random_range(1..=Self::MAX))
    }

    /// An id in range; None otherwise.
    pub fn new(value: u64) -> Option<Self> {
        (1..=Self::MAX).contains(&value).then_some(UserId(value))
    }

    /// The id a token's `sub` names: only its canonical decimal spelling
    /// (no sign, no leading zero, in range). A token minted before users
    /// had ids (`sub` was the phone) names no user.
    pub fn from_subject(sub: &str) -> Option<Self> {
        if sub.is_empty() || sub.starts_with('0') || !sub.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        sub.parse().ok().and_then(Self::new)
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_are_in_range_and_differ() {
        let ids: std::collections::HashSet<UserId> =
            (0..1000).map(|_| UserId::generate()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids.iter().all(|id| (1..=UserId::MAX).contains(&id.get())));
        // Uniform over 2^53: the largest of 1000 draws is far above 2^32.
        assert!(ids.iter().any(|id| id.get() > 1 << 40));
    }

    #[test]
    fn a_subject_round_trips_through_its_decimal_spelling() {
        for id in [
            UserId::new(1).unwrap(),
            UserId::new(UserId::MAX).unwrap(),
            UserId::generate(),
        ] {
            assert_eq!(UserId::from_subject(&id.to_string()), Some(id));
        }
    }

    #[test]
    fn only_canonical_subjects_in_range_name_a_user() {
        for sub in [
            "",
            "0",
            "007",
            "+7",
            "-5",
            " 5",
            "5 ",
            "5.0",
            "1e3",
            "+79001234567",
            "9007199254740992", // 2^53
            "18446744073709551616",
        ] {
            assert_eq!(UserId::from_subject(sub), None, "{sub:?}");
        }
        assert_eq!(UserId::new(0), None);
        assert_eq!(UserId::new(UserId::MAX + 1), None);
    }

    #[test]
    fn it_serializes_as_a_json_number() {
        let id = UserId::new(42).unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
    }
}

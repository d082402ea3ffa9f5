//! Pages of a user's referrals (`GET /users/referrals/`): how many a page may
//! hold, and the cursor that continues where a page ended. Plain Rust, no AWS
//! types.
//!
//! A cursor is opaque to clients and tamper-evident: base64url (no padding)
//! of the [`Position`] of the page's last referral (when they entered the
//! code, and their id: the referrer index's sort key and the item's key, which
//! is exactly where the next page starts), followed by an HMAC-SHA256 tag,
//! keyed by `CURSOR_KEY`, over that position *and the caller's id*. A cursor
//! that was changed, made up, or taken from another user's pages does not
//! verify (400 `invalid_cursor`), so no read ever starts from a position this
//! service did not hand to this very caller. The position is signed, not
//! hidden: it names one of the caller's own referrals and when they joined,
//! which grants nothing.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::user::UserId;

/// A page holds this many referrals unless the request says `limit`.
pub const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest `limit`: a page is one index Query of at most this many
/// items plus one (a few kB), whatever the number of referrals.
pub const MAX_PAGE_SIZE: usize = 100;

/// How many referrals a page holds: 1 to [`MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageSize(usize);

/// `limit` is not one whole number from 1 to [`MAX_PAGE_SIZE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("limit must be one whole number from 1 to {MAX_PAGE_SIZE}")]
pub struct InvalidLimit;

impl PageSize {
    /// From every value the query string gives `limit` (none: the default).
    /// Digits only: no sign, no spaces, no decimals; given once.
    pub fn from_query(values: &[&str]) -> Result<Self, InvalidLimit> {
        let Some(text) = one_value(values).map_err(|_| InvalidLimit)? else {
            return Ok(PageSize(DEFAULT_PAGE_SIZE));
        };
        // At most 3 digits: "100" is the longest valid one, and nothing
        // longer is parsed (no overflow to think about).
        if text.is_empty() || text.len() > 3 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidLimit);
        }
        let size: usize = text.parse().map_err(|_| InvalidLimit)?;
        if !(1..=MAX_PAGE_SIZE).contains(&size) {
            return Err(InvalidLimit);
        }
        Ok(PageSize(size))
    }

    pub fn get(self) -> usize {
        self.0
    }

    /// How many to read for a page: one more than it holds, so that whether
    /// another page follows is known without a second request (and no
    /// cursor is handed out that leads to an empty page).
    pub fn to_read(self) -> usize {
        self.0 + 1
    }

    /// The page out of what was read for it (at most [`to_read`](Self::to_read)
    /// items, in page order): its items, and whether more follow.
    pub fn split<T>(self, mut read: Vec<T>) -> (Vec<T>, bool) {
        let more = read.len() > self.0;
        read.truncate(self.0);
        (read, more)
    }
}

/// Where a page ended: the last referral it listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// When the referral entered the code (unix seconds): the index's sort key.
    pub referred_at: u64,
    /// The referral's id: tells apart referrals that joined in the same second.
    pub id: UserId,
}

/// The cursor is malformed, was changed, or was not issued to this caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this service gave you")]
pub struct InvalidCursor;

/// The position's bytes: `referred_at` and the id, 8 bytes each, big-endian.
const POSITION_BYTES: usize = 16;
/// HMAC-SHA256's whole tag.
const TAG_BYTES: usize = 32;
/// base64url without padding of position and tag (48 bytes).
const CURSOR_CHARS: usize = (POSITION_BYTES + TAG_BYTES) * 4 / 3;

/// Seals and opens cursors. The key (`CURSOR_KEY`) is parsed once per cold
/// start; changing it only makes the cursors already handed out invalid
/// (clients start again from the first page).
pub struct CursorKey {
    key: hmac::Key,
}

impl CursorKey {
    pub fn new(secret: &[u8]) -> Self {
        CursorKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// What the tag covers: a prefix (no MAC made with this key for another
    /// purpose passes as a cursor's), the caller, and the position.
    fn message(caller: UserId, position: &[u8; POSITION_BYTES]) -> Vec<u8> {
        let mut message = format!("referrals-cursor|{caller}|").into_bytes();
        message.extend_from_slice(position);
        message
    }

    fn position_bytes(position: &Position) -> [u8; POSITION_BYTES] {
        let mut bytes = [0; POSITION_BYTES];
        bytes[..8].copy_from_slice(&position.referred_at.to_be_bytes());
        bytes[8..].copy_from_slice(&position.id.get().to_be_bytes());
        bytes
    }

    /// The cursor that continues `caller`'s pages after `position`.
    pub fn seal(&self, caller: UserId, position: &Position) -> String {
        let bytes = Self::position_bytes(position);
        let tag = hmac::sign(&self.key, &Self::message(caller, &bytes));
        let mut sealed = bytes.to_vec();
        sealed.extend_from_slice(tag.as_ref());
        B64.encode(sealed)
    }

    /// The position a cursor names, if it is well formed and was sealed for
    /// `caller` with this key (the tag compared in constant time).
    pub fn open(&self, caller: UserId, cursor: &str) -> Result<Position, InvalidCursor> {
        if cursor.len() != CURSOR_CHARS {
            return Err(InvalidCursor);
        }
        // The engine refuses padding and non-canonical trailing bits: one
        // spelling per cursor.
        let sealed = B64.decode(cursor).map_err(|_| InvalidCursor)?;
        let (bytes, tag) = sealed
            .split_at_checked(POSITION_BYTES)
            .ok_or(InvalidCursor)?;
        let bytes: [u8; POSITION_BYTES] = bytes.try_into().map_err(|_| InvalidCursor)?;
        hmac::verify(&self.key, &Self::message(caller, &bytes), tag).map_err(|_| InvalidCursor)?;
        let number = |range: std::ops::Range<usize>| {
            u64::from_be_bytes(bytes[range].try_into().expect("8 bytes"))
        };
        Ok(Position {
            referred_at: number(0..8),
            id: UserId::new(number(8..16)).ok_or(InvalidCursor)?,
        })
    }

    /// From every value the query string gives `cursor`: None (the first
    /// page) when there is none; refused when empty or given twice.
    pub fn from_query(
        &self,
        caller: UserId,
        values: &[&str],
    ) -> Result<Option<Position>, InvalidCursor> {
        match one_value(values).map_err(|_| InvalidCursor)? {
            None => Ok(None),
            Some(cursor) => self.open(caller, cursor).map(Some),
        }
    }
}

/// A query parameter given more than once.
struct Repeated;

/// The one value of a query parameter, None when absent. Given twice, it is
/// refused rather than one of them picked: a client sending two means
/// something this service cannot know.
fn one_value<'a>(values: &[&'a str]) -> Result<Option<&'a str>, Repeated> {
    match values {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(Repeated),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CursorKey {
        CursorKey::new(b"a cursor key of at least thirty-two bytes")
    }

    fn user(id: u64) -> UserId {
        UserId::new(id).unwrap()
    }

    fn position() -> Position {
        Position {
            referred_at: 1_790_000_000,
            id: user(UserId::MAX),
        }
    }

    #[test]
    fn the_limit_is_one_whole_number_from_1_to_100_defaulting_to_50() {
        let size = |values: &[&str]| PageSize::from_query(values).map(PageSize::get);
        assert_eq!(size(&[]), Ok(50));
        assert_eq!(size(&["1"]), Ok(1));
        assert_eq!(size(&["100"]), Ok(100));
        assert_eq!(size(&["007"]), Ok(7));
        for bad in [
            &["0"][..],
            &["101"],
            &["-1"],
            &["+5"],
            &["abc"],
            &[""],
            &[" 5"],
            &["5.0"],
            &["1000"],
            &["99999999999999999999999"],
            &["5", "5"],
            &["5", "6"],
        ] {
            assert_eq!(size(bad), Err(InvalidLimit), "{bad:?}");
        }
    }

    #[test]
    fn a_page_reads_one_more_than_it_holds_to_know_whether_more_follow() {
        let size = PageSize::from_query(&["3"]).unwrap();
        assert_eq!(size.to_read(), 4);
        assert_eq!(size.split(vec![1, 2]), (vec![1, 2], false));
        assert_eq!(size.split(vec![1, 2, 3]), (vec![1, 2, 3], false));
        assert_eq!(size.split(vec![1, 2, 3, 4]), (vec![1, 2, 3], true));
        assert_eq!(size.split(Vec::<u8>::new()), (vec![], false));
    }

    #[test]
    fn a_cursor_opens_for_its_caller_only() {
        let (key, me, other) = (key(), user(42), user(43));
        let cursor = key.seal(me, &position());
        assert_eq!(cursor.len(), CURSOR_CHARS);
        assert!(
            cursor
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "URL-safe as it is: {cursor}"
        );
        assert_eq!(key.open(me, &cursor), Ok(position()));
        assert_eq!(key.from_query(me, &[&cursor]), Ok(Some(position())));
        assert_eq!(key.from_query(me, &[]), Ok(None));
        assert_eq!(key.open(other, &cursor), Err(InvalidCursor));
        let other_key = CursorKey::new(b"another cursor key, thirty-two bytes long");
        assert_eq!(other_key.open(me, &cursor), Err(InvalidCursor));
    }

    #[test]
    fn a_changed_or_made_up_cursor_is_refused() {
        let (key, me) = (key(), user(42));
        let cursor = key.seal(me, &position());
        let mut sealed = B64.decode(&cursor).unwrap();
        // Every byte, position and tag alike, flipped one at a time.
        for i in 0..sealed.len() {
            sealed[i] ^= 0x01;
            assert_eq!(
                key.open(me, &B64.encode(&sealed)),
                Err(InvalidCursor),
                "byte {i}"
            );
            sealed[i] ^= 0x01;
        }
        // A position of one's choosing with the tag of another.
        let forged = Position {
            referred_at: 0,
            ..position()
        };
        let mut bytes = CursorKey::position_bytes(&forged).to_vec();
        bytes.extend_from_slice(&sealed[POSITION_BYTES..]);
        assert_eq!(key.open(me, &B64.encode(&bytes)), Err(InvalidCursor));
        for bad in [
            "",
            "x",
            "garbage",
            &cursor[1..],
            &format!("{cursor}A"),
            &format!("{cursor}="),
            &cursor.replace('-', "+").replace('_', "/"),
            &"A".repeat(CURSOR_CHARS),
        ] {
            if bad != cursor {
                assert_eq!(key.open(me, bad), Err(InvalidCursor), "{bad:?}");
            }
        }
        assert_eq!(key.from_query(me, &[""]), Err(InvalidCursor));
        assert_eq!(
            key.from_query(me, &[&cursor, &cursor]),
            Err(InvalidCursor),
            "given twice"
        );
    }

    #[test]
    fn an_id_out_of_range_never_opens_even_with_a_valid_tag() {
        let key = key();
        let me = user(42);
        let mut bytes = [0u8; POSITION_BYTES];
        bytes[8..].copy_from_slice(&0u64.to_be_bytes());
        let tag = hmac::sign(&key.key, &CursorKey::message(me, &bytes));
        let mut sealed = bytes.to_vec();
        sealed.extend_from_slice(tag.as_ref());
        assert_eq!(key.open(me, &B64.encode(sealed)), Err(InvalidCursor));
    }
}

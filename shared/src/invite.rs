//! Invite codes: six random letters and digits, unique per user.

use std::fmt;

use rand::RngExt;

pub const INVITE_CODE_LENGTH: usize = 6;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// Only [`InviteCode::generate`] and [`InviteCode::parse`] make one; nothing
/// deserializes into it.
///
/// ```compile_fail
/// let c: phone_auth::invite::InviteCode = serde_json::from_str("\"x\"").unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct InviteCode(String);

impl InviteCode {
    /// A fresh random code (62^6 ≈ 5.7·10^10 values); uniqueness is enforced by storage.
    pub fn generate() -> Self {
        let mut rng = rand::rng();
        InviteCode(
            (0..INVITE_CODE_LENGTH)
                .map(|_| char::from(ALPHABET[rng.random_range(0..ALPHABET.len())]))
                .collect(),
        )
    }

    /// Accepts exactly six ASCII letters or digits (surrounding spaces are ignored).
    /// Codes are case-sensitive, as they are shown.
    pub fn parse(input: &str) -> Option<Self> {
        let code = input.trim();
        (code.len() == INVITE_CODE_LENGTH && code.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| InviteCode(code.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InviteCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn generated_codes_are_six_alphanumerics_and_distinct() {
        let codes: HashSet<InviteCode> = (0..1000).map(|_| InviteCode::generate()).collect();
        assert_eq!(codes.len(), 1000);
        for code in &codes {
            assert_eq!(InviteCode::parse(code.as_str()).as_ref(), Some(code));
        }
        let chars: HashSet<char> = codes
            .iter()
            .flat_map(|c| c.as_str().chars().collect::<Vec<_>>())
            .collect();
        assert!(chars.iter().any(char::is_ascii_lowercase));
        assert!(chars.iter().any(char::is_ascii_uppercase));
        assert!(chars.iter().any(char::is_ascii_digit));
    }

    #[test]
    fn parse_accepts_only_the_code_shape() {
        assert_eq!(InviteCode::parse(" 7hjCdO ").unwrap().as_str(), "7hjCdO");
        for bad in ["", "7hjCd", "7hjCdO1", "7hj-dO", "7hjCdÖ", "ABC DE"] {
            assert!(InviteCode::parse(bad).is_none(), "{bad:?}");
        }
    }
}

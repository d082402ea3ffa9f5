//! Phone numbers: every spelling a person types becomes one canonical E.164 string,
//! so "8 (900) 123-45-67", "79001234567" and "+7 900 123 45 67" are the same user.

use std::fmt;
use std::str::FromStr;

use phonenumber::{Mode, country};

/// A country or territory with a numbering plan of its own, by its ISO 3166-1
/// alpha-2 code (`RU`, `KZ`, `GB`; `GG` is Guernsey inside the UK's +44).
/// The one region type of the domain: budgets, SMS languages and the
/// allowed-countries list use it, whichever library validates numbers.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Region([u8; 2]);

impl Region {
    pub const RU: Region = Region(*b"RU");
    pub const BY: Region = Region(*b"BY");
    pub const KZ: Region = Region(*b"KZ");
    pub const KG: Region = Region(*b"KG");

    /// Two capital letters naming a region that has a numbering plan; None
    /// for anything else (`ru`, `XX`, `RUS`).
    pub fn parse(code: &str) -> Option<Region> {
        let letters: [u8; 2] = code.as_bytes().try_into().ok()?;
        if !letters.iter().all(u8::is_ascii_uppercase) {
            return None;
        }
        country::Id::from_str(code).ok()?;
        Some(Region(letters))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("two ASCII capitals")
    }

    fn id(self) -> country::Id {
        country::Id::from_str(self.as_str()).expect("checked by Region::parse")
    }

    fn from_id(id: country::Id) -> Option<Region> {
        Region::parse(id.as_ref())
    }
}

impl AsRef<str> for Region {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How numbers typed without a leading `+` are read, and which countries may sign in.
#[derive(Debug, Clone)]
pub struct PhonePolicy {
    /// Region used for numbers typed without a country code (e.g. `RU` reads
    /// `8 900 123-45-67` and `79001234567` as `+79001234567`).
    pub default_region: Region,
    /// Empty means every country. Limiting it is the usual defence against SMS pumping.
    pub allowed_regions: Vec<Region>,
}

impl PhonePolicy {
    /// Loads libphonenumber's metadata now instead of on the first request:
    /// about 80 ms of CPU, which a 128 MB function has in full only during init.
    pub fn warm_up(&self) {
        let _ = Phone::parse("+79001234567", self);
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("phone must be a valid phone number, e.g. +79001234567")]
    Invalid,
    #[error("only mobile numbers can receive the sign-in SMS")]
    TypeNotAllowed,
    #[error("phone numbers from this country are not accepted")]
    RegionNotAllowed,
}

/// A validated phone number in E.164 form (`+79001234567`). The only ways to
/// get one are [`Phone::parse`] and, inside this crate, values this service
/// validated before it stored or signed them; nothing deserializes into it.
///
/// ```compile_fail
/// let p = phone_auth::phone::Phone::from_trusted("not a phone".into());
/// ```
/// ```compile_fail
/// let p: phone_auth::phone::Phone = serde_json::from_str("\"not a phone\"").unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    pub fn parse(input: &str, policy: &PhonePolicy) -> Result<Self, PhoneError> {
        let trimmed = input.trim();
        // Digits and the usual separators only: libphonenumber would otherwise
        // read letters as keypad digits ("1-800-FLOWERS").
        let allowed = |c: char| c.is_ascii_digit() || " +-().".contains(c);
        if trimmed.is_empty() || trimmed.len() > 32 || !trimmed.chars().all(allowed) {
            return Err(PhoneError::Invalid);
        }
        let number = phonenumber::parse(Some(policy.default_region.id()), trimmed)
            .map_err(|_| PhoneError::Invalid)?;
        if !phonenumber::is_valid(&number) {
            return Err(PhoneError::Invalid);
        }
        // Only numbers that can receive an SMS. Premium-rate, shared-cost and
        // non-geographic ranges are where SMS-pumping fraud sends its traffic;
        // landlines, pagers and VoIP numbers would just burn a paid SMS.
        // Where a plan cannot tell mobile from fixed (e.g. the US), it says so.
        use phonenumber::Type;
        match number.number_type(&phonenumber::metadata::DATABASE) {
            Type::Mobile | Type::FixedLineOrMobile => {}
            _ => return Err(PhoneError::TypeNotAllowed),
        }
        if !policy.allowed_regions.is_empty() {
            let region = number
                .country()
                .id()
                .and_then(Region::from_id)
                .ok_or(PhoneError::RegionNotAllowed)?;
            if !policy.allowed_regions.contains(&region) {
                return Err(PhoneError::RegionNotAllowed);
            }
        }
        Ok(Phone(number.format().mode(Mode::E164).to_string()))
    }

    /// Wraps a value that was validated before it was stored or signed.
    pub(crate) fn from_trusted(e164: String) -> Self {
        Phone(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country the number belongs to (`+7 701…` is KZ, `+7 900…` RU),
    /// for the SMS's language and the per-country SMS budget. Reads libphonenumber's metadata again:
    /// microseconds, once per get_code.
    pub fn region(&self) -> Option<Region> {
        Region::from_id(phonenumber::parse(None, &self.0).ok()?.country().id()?)
    }
}

impl fmt::Display for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ru() -> PhonePolicy {
        PhonePolicy {
            default_region: Region::RU,
            allowed_regions: vec![],
        }
    }

    #[test]
    fn human_spellings_of_one_number_are_one_phone() {
        for input in [
            "79001234567",
            "+79001234567",
            "89001234567",
            "+7 (900) 123-45-67",
            "8 900 123 45 67",
            " +7-900-123-45-67 ",
        ] {
            assert_eq!(
                Phone::parse(input, &ru()).unwrap().as_str(),
                "+79001234567",
                "{input}"
            );
        }
    }

    #[test]
    fn foreign_numbers_keep_their_country() {
        let phone = Phone::parse("+44 7911 123456", &ru()).unwrap();
        assert_eq!(phone.as_str(), "+447911123456");
    }

    #[test]
    fn garbage_and_impossible_numbers_are_rejected() {
        for input in [
            "",
            "   ",
            "abc",
            "123",
            "+7900",
            "+790012345678901",
            "7900123456a",
            "+7900CALLNOW",
            "+7 900 123 45 67 ext 1",
            &"9".repeat(40),
        ] {
            assert_eq!(
                Phone::parse(input, &ru()),
                Err(PhoneError::Invalid),
                "{input:?}"
            );
        }
    }

    /// libphonenumber's own example number of every type in every region:
    /// only mobile (and "fixed line or mobile") examples may get a code.
    #[test]
    fn only_numbers_that_receive_sms_may_sign_in() {
        use phonenumber::Type;
        let kinds = [
            Type::FixedLine,
            Type::Mobile,
            Type::TollFree,
            Type::PremiumRate,
            Type::SharedCost,
            Type::PersonalNumber,
            Type::Voip,
            Type::Pager,
            Type::Uan,
            Type::Voicemail,
        ];
        let (mut accepted, mut refused) = (0, 0);
        for region in phonenumber::metadata::DATABASE.iter() {
            for kind in kinds {
                let Some(example) = region.descriptors().get(kind).and_then(|d| d.example()) else {
                    continue;
                };
                let input = format!("+{}{example}", region.country_code());
                let Ok(number) = phonenumber::parse(None, &input) else {
                    continue;
                };
                let actual = number.number_type(&phonenumber::metadata::DATABASE);
                match Phone::parse(&input, &ru()) {
                    Ok(_) => {
                        assert!(
                            matches!(actual, Type::Mobile | Type::FixedLineOrMobile),
                            "{} {kind:?} example {input} is {actual:?}, accepted",
                            region.id()
                        );
                        accepted += 1;
                    }
                    Err(PhoneError::TypeNotAllowed) => refused += 1,
                    Err(PhoneError::Invalid) => {}
                    Err(other) => panic!("{input}: {other:?}"),
                }
            }
        }
        assert!(
            accepted > 200 && refused > 400,
            "{accepted} accepted, {refused} refused"
        );
        assert!(Phone::parse("+79001234567", &ru()).is_ok());
        assert_eq!(
            Phone::parse("8 495 123-45-67", &ru()),
            Err(PhoneError::TypeNotAllowed),
            "Moscow landline"
        );
    }

    #[test]
    fn a_phone_knows_its_country_even_within_a_shared_calling_code() {
        let region = |input: &str| Phone::parse(input, &ru()).unwrap().region();
        let code = |input: &str| region(input).map(|r| r.to_string());
        assert_eq!(region("+79001234567"), Some(Region::RU));
        assert_eq!(region("+77011234567"), Some(Region::KZ));
        assert_eq!(code("+447400123456").as_deref(), Some("GB"));
        // 07911 is a Guernsey range within the UK plan.
        assert_eq!(code("+447911123456").as_deref(), Some("GG"));
    }

    #[test]
    fn a_region_is_two_capitals_with_a_numbering_plan() {
        for code in ["RU", "KZ", "GB", "GG", "US"] {
            assert_eq!(
                Region::parse(code).map(|r| r.to_string()),
                Some(code.into())
            );
        }
        for bad in ["", "R", "ru", "Ru", "RUS", "XX", "001", "R1", " RU"] {
            assert_eq!(Region::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn allowed_regions_limit_who_can_sign_in() {
        let policy = PhonePolicy {
            allowed_regions: vec![Region::RU],
            ..ru()
        };
        assert!(Phone::parse("+79001234567", &policy).is_ok());
        assert_eq!(
            Phone::parse("+447911123456", &policy),
            Err(PhoneError::RegionNotAllowed)
        );
    }
}

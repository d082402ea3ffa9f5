//! Phone numbers: every spelling a person types becomes one canonical E.164 string,
//! so "8 (900) 123-45-67", "79001234567" and "+7 900 123 45 67" are the same user.

mod plan;

use std::fmt;

use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, PhoneNumberType};

use plan::Plans;

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
        if !letters.iter().all(u8::is_ascii_uppercase) || !plan::has_plan(code) {
            return None;
        }
        Some(Region(letters))
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("two ASCII capitals")
    }

    /// The same region as rlibphonenumber names it.
    fn plan(self) -> rlibphonenumber::Region {
        rlibphonenumber::Region::from_code(self.as_str()).expect("two capitals")
    }

    /// A region rlibphonenumber found a number in; None for the
    /// non-geographic services (`001`: +800, +882, ...).
    fn from_plan(region: rlibphonenumber::Region) -> Option<Region> {
        let code = region.as_region_str();
        let letters: [u8; 2] = code.as_bytes().try_into().ok()?;
        letters
            .iter()
            .all(u8::is_ascii_uppercase)
            .then_some(Region(letters))
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
    /// Builds, during init (when a 128 MB function has a full CPU), the
    /// numbering plans of the default and allowed regions' calling codes (see
    /// `phone::plan`), and compiles the default region's patterns by reading
    /// its example mobile number as typed at home and from abroad. About half
    /// a millisecond; numbers from elsewhere load every plan when one comes.
    pub fn warm_up(&self) {
        let mut regions = vec![self.default_region];
        regions.extend(&self.allowed_regions);
        let plans = plan::prepare(&regions);
        let example = plans.util.get_example_number_for_type_and_region(
            self.default_region.plan(),
            PhoneNumberType::Mobile,
        );
        if let Ok(example) = example {
            for format in [PhoneNumberFormat::National, PhoneNumberFormat::E164] {
                let _ = Phone::parse(&plans.util.format(&example, format), self);
            }
        }
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
        let (plans, number) =
            plan::read(trimmed, Some(policy.default_region)).ok_or(PhoneError::Invalid)?;
        Phone::judge(plans, &number, policy)
    }

    /// The rules for a number libphonenumber could read: it must be valid
    /// (its country's real ranges, not only its length), able to receive an
    /// SMS, and from an allowed country.
    fn judge(
        plans: &Plans,
        number: &PhoneNumber,
        policy: &PhonePolicy,
    ) -> Result<Self, PhoneError> {
        let util = &plans.util;
        if !util.is_valid_number(number) {
            return Err(PhoneError::Invalid);
        }
        // Only numbers that can receive an SMS. Premium-rate, shared-cost and
        // non-geographic ranges are where SMS-pumping fraud sends its traffic;
        // landlines, pagers and VoIP numbers would just burn a paid SMS.
        // Where a plan cannot tell mobile from fixed (e.g. the US), it says so.
        match util.get_number_type(number) {
            PhoneNumberType::Mobile | PhoneNumberType::FixedLineOrMobile => {}
            _ => return Err(PhoneError::TypeNotAllowed),
        }
        if !policy.allowed_regions.is_empty() {
            let region = util
                .get_region_for_number(number)
                .and_then(Region::from_plan)
                .ok_or(PhoneError::RegionNotAllowed)?;
            if !policy.allowed_regions.contains(&region) {
                return Err(PhoneError::RegionNotAllowed);
            }
        }
        Ok(Phone(
            util.format(number, PhoneNumberFormat::E164).into_owned(),
        ))
    }

    /// Wraps a value that was validated before it was stored or signed.
    pub(crate) fn from_trusted(e164: String) -> Self {
        Phone(e164)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The country the number belongs to (`+7 701…` is KZ, `+7 900…` RU),
    /// for the SMS's language and the per-country SMS budget. Reads the
    /// number again: microseconds, a few times per get_code.
    pub fn region(&self) -> Option<Region> {
        let (plans, number) = plan::read(&self.0, None)?;
        plans
            .util
            .get_region_for_number(&number)
            .and_then(Region::from_plan)
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
        let all = Plans::all();
        let (mut accepted, mut refused) = (0, 0);
        for example in samples::examples(&all.util) {
            let input = all.util.format(&example.number, PhoneNumberFormat::E164);
            let actual = all.util.get_number_type(&example.number);
            match Phone::parse(&input, &ru()) {
                Ok(_) => {
                    assert!(
                        matches!(
                            actual,
                            PhoneNumberType::Mobile | PhoneNumberType::FixedLineOrMobile
                        ),
                        "{} {:?} example {input} is {actual:?}, accepted",
                        example.region,
                        example.kind
                    );
                    accepted += 1;
                }
                Err(PhoneError::TypeNotAllowed) => refused += 1,
                Err(PhoneError::Invalid) => {}
                Err(other) => panic!("{input}: {other:?}"),
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

    /// What libphonenumber says of a number it read.
    fn verdict(
        plans: &Plans,
        number: &PhoneNumber,
    ) -> (bool, PhoneNumberType, Option<String>, String) {
        let util = &plans.util;
        (
            util.is_valid_number(number),
            util.get_number_type(number),
            util.get_region_for_number(number).map(|r| r.to_string()),
            util.format(number, PhoneNumberFormat::E164).into_owned(),
        )
    }

    /// The near plans of a cold start (a few calling codes) and the plans of
    /// every territory read every example number, every mutation of it and
    /// every spelling of it alike: the same number, validity, type, region.
    #[test]
    fn near_plans_answer_as_all_plans_do() {
        let all = Plans::all();
        let inputs = samples::inputs(&all.util);
        let region = |code: &str| Region::parse(code).unwrap();
        let sets: Vec<Vec<Region>> = [
            &["RU"][..],
            &["RU", "KZ", "BY", "KG", "UZ"],
            &["US"],
            &["GB"],
            &["IT", "SM", "VA"],
            &["DE", "AT", "CH"],
            &["IN"],
            &["BR", "AR"],
        ]
        .iter()
        .map(|codes| codes.iter().map(|c| region(c)).collect())
        .collect();
        // What every territory's plans say of an input, computed once.
        let mut expected = std::collections::HashMap::new();
        let mut near_read = 0;
        for set in &sets {
            let near = Plans::for_regions(set);
            for (i, (input, default)) in inputs.iter().enumerate() {
                // `read` gives the near plans' reading if they have one, and
                // otherwise every territory's (by construction): only the
                // first case can differ.
                if let Some(number) = near.parse(input, *default) {
                    near_read += 1;
                    let expected = expected
                        .entry(i)
                        .or_insert_with(|| all.parse(input, *default).map(|n| verdict(&all, &n)));
                    assert_eq!(
                        Some(verdict(&near, &number)),
                        *expected,
                        "{input:?} from {default:?} with near plans {set:?}"
                    );
                }
            }
        }
        // The near plans did read numbers themselves (not only pass them on).
        assert!(near_read > 1000, "{near_read}");
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

    /// libphonenumber's example numbers and inputs made from them.
    mod samples {
        use rlibphonenumber::{PhoneNumber, PhoneNumberFormat, PhoneNumberType, PhoneNumberUtil};

        use super::Region;

        pub struct Example {
            pub region: String,
            pub kind: PhoneNumberType,
            pub number: PhoneNumber,
        }

        pub const KINDS: [PhoneNumberType; 11] = [
            PhoneNumberType::FixedLine,
            PhoneNumberType::Mobile,
            PhoneNumberType::FixedLineOrMobile,
            PhoneNumberType::TollFree,
            PhoneNumberType::PremiumRate,
            PhoneNumberType::SharedCost,
            PhoneNumberType::VoIP,
            PhoneNumberType::PersonalNumber,
            PhoneNumberType::Pager,
            PhoneNumberType::UAN,
            PhoneNumberType::VoiceMail,
        ];

        /// The example number of every type in every territory, and of
        /// every non-geographic service (+800, +882, ...).
        pub fn examples(util: &PhoneNumberUtil) -> Vec<Example> {
            let mut regions: Vec<_> = util.get_supported_regions().collect();
            regions.sort();
            let mut examples = Vec::new();
            for region in regions {
                for kind in KINDS {
                    if let Ok(number) = util.get_example_number_for_type_and_region(region, kind) {
                        examples.push(Example {
                            region: region.to_string(),
                            kind,
                            number,
                        });
                    }
                }
            }
            let mut codes: Vec<_> = util.get_supported_global_network_calling_codes().collect();
            codes.sort();
            for code in codes {
                if let Ok(number) = util.get_example_number_for_non_geo_entity(code) {
                    examples.push(Example {
                        region: format!("001 (+{code})"),
                        kind: PhoneNumberType::Unknown,
                        number,
                    });
                }
            }
            examples
        }

        /// Every example spelled as people type it (E.164, international
        /// and national format, digits only), and mutated: a digit more or
        /// less, the last digit changed, each digit in first place; each
        /// with the region a number typed without `+` is read in.
        pub fn inputs(util: &PhoneNumberUtil) -> Vec<(String, Option<Region>)> {
            let mut inputs = Vec::new();
            for example in examples(util) {
                let home = Region::parse(&example.region);
                let e164 = util
                    .format(&example.number, PhoneNumberFormat::E164)
                    .into_owned();
                let code = format!("+{}", example.number.country_code);
                let nsn = e164[code.len()..].to_string();
                inputs.push((e164.clone(), None));
                inputs.push((
                    util.format(&example.number, PhoneNumberFormat::International)
                        .into_owned(),
                    None,
                ));
                inputs.push((e164[1..].to_string(), home.or(Some(Region::RU))));
                if home.is_some() {
                    inputs.push((
                        util.format(&example.number, PhoneNumberFormat::National)
                            .into_owned(),
                        home,
                    ));
                }
                let mut variants = vec![
                    format!("{code}{}", &nsn[..nsn.len() - 1]),
                    format!("{code}{nsn}0"),
                    format!("{code}{nsn}9"),
                ];
                let last = nsn.as_bytes()[nsn.len() - 1] - b'0';
                variants.push(format!(
                    "{code}{}{}",
                    &nsn[..nsn.len() - 1],
                    (last + 1) % 10
                ));
                for first in 0..10 {
                    variants.push(format!("{code}{first}{}", &nsn[1..]));
                }
                inputs.extend(variants.into_iter().map(|v| (v, None)));
            }
            inputs
        }
    }
}

//! The phone library change (issue 9): `phonenumber` 0.3 (libphonenumber
//! metadata 9.0.33) was replaced by `rlibphonenumber` (metadata 9.0.42,
//! regex-lite). Both read a large generated set of inputs — every
//! territory's example number of every type in both libraries, each spelled
//! as people type it and mutated — under `Phone::parse`'s rules, and:
//!
//! * `Phone::parse` (our copy of the metadata, near plans then all plans)
//!   answers exactly as rlibphonenumber over its own built-in metadata: not
//!   one disagreement;
//! * against the old library, every disagreement is listed below with its
//!   reason (a libphonenumber metadata change between 9.0.33 and 9.0.42, as
//!   far as the two libraries' metadata shows it), so a new one fails the test.
//!
//! `cargo test --test phone_libraries -- --nocapture` prints the tally.

use std::collections::BTreeMap;

use phone_auth::phone::{Phone, PhoneError, PhonePolicy, Region};
use rlibphonenumber::{PhoneNumberFormat, PhoneNumberType, PhoneNumberUtil};

/// What `Phone::parse` makes of an input: the E.164 phone, or why not.
type Outcome = Result<String, &'static str>;

fn outcome(result: Result<Phone, PhoneError>) -> Outcome {
    match result {
        Ok(phone) => Ok(phone.to_string()),
        Err(PhoneError::Invalid) => Err("invalid"),
        Err(PhoneError::TypeNotAllowed) => Err("not mobile"),
        Err(PhoneError::RegionNotAllowed) => Err("region not allowed"),
    }
}

/// `Phone::parse`'s character check, shared by every engine below.
fn plausible(input: &str) -> Option<&str> {
    let trimmed = input.trim();
    let allowed = |c: char| c.is_ascii_digit() || " +-().".contains(c);
    (!trimmed.is_empty() && trimmed.len() <= 32 && trimmed.chars().all(allowed)).then_some(trimmed)
}

/// `Phone::parse` as it was, over `phonenumber` 0.3.
fn old(input: &str, default: &str, allowed: &[&str]) -> Outcome {
    use phonenumber::{Mode, Type, country};
    let trimmed = plausible(input).ok_or("invalid")?;
    let default: country::Id = default.parse().expect("a region");
    let number = phonenumber::parse(Some(default), trimmed).map_err(|_| "invalid")?;
    if !phonenumber::is_valid(&number) {
        return Err("invalid");
    }
    match number.number_type(&phonenumber::metadata::DATABASE) {
        Type::Mobile | Type::FixedLineOrMobile => {}
        _ => return Err("not mobile"),
    }
    if !allowed.is_empty() {
        let region = number.country().id().ok_or("region not allowed")?;
        if !allowed.contains(&region.as_ref()) {
            return Err("region not allowed");
        }
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

/// The same rules over rlibphonenumber with its own built-in metadata.
fn builtin(util: &PhoneNumberUtil, input: &str, default: &str, allowed: &[&str]) -> Outcome {
    let trimmed = plausible(input).ok_or("invalid")?;
    let default = rlibphonenumber::Region::from_code(default).expect("a region");
    let number = util.parse(trimmed, Some(default)).map_err(|_| "invalid")?;
    if !util.is_valid_number(&number) {
        return Err("invalid");
    }
    match util.get_number_type(&number) {
        PhoneNumberType::Mobile | PhoneNumberType::FixedLineOrMobile => {}
        _ => return Err("not mobile"),
    }
    if !allowed.is_empty() {
        let region = util
            .get_region_for_number(&number)
            .ok_or("region not allowed")?;
        if !allowed.contains(&&*region.as_region_str()) {
            return Err("region not allowed");
        }
    }
    Ok(util.format(&number, PhoneNumberFormat::E164).into_owned())
}

fn ours(input: &str, default: &str, allowed: &[&str]) -> Outcome {
    let region = |code: &str| Region::parse(code).expect("a region with a plan");
    let policy = PhonePolicy {
        default_region: region(default),
        allowed_regions: allowed.iter().map(|c| region(c)).collect(),
    };
    outcome(Phone::parse(input, &policy))
}

/// One input, the region it is read in, and where it comes from.
struct Case {
    input: String,
    default: &'static str,
    origin: String,
}

/// Every number type the old library has an example for.
const OLD_KINDS: [phonenumber::Type; 10] = {
    use phonenumber::Type;
    [
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
    ]
};

/// Every example number of both libraries, as (territory, type, E.164).
fn examples(util: &PhoneNumberUtil) -> Vec<(String, String, String)> {
    let mut examples = Vec::new();
    // The old library's own examples.
    for metadata in phonenumber::metadata::DATABASE.iter() {
        for kind in OLD_KINDS {
            if let Some(example) = metadata.descriptors().get(kind).and_then(|d| d.example()) {
                let e164 = format!("+{}{example}", metadata.country_code());
                examples.push((metadata.id().to_string(), format!("{kind:?}"), e164));
            }
        }
    }
    // rlibphonenumber's.
    let mut regions: Vec<_> = util.get_supported_regions().collect();
    regions.sort();
    for region in regions {
        for kind in [
            PhoneNumberType::FixedLine,
            PhoneNumberType::Mobile,
            PhoneNumberType::TollFree,
            PhoneNumberType::PremiumRate,
            PhoneNumberType::SharedCost,
            PhoneNumberType::PersonalNumber,
            PhoneNumberType::VoIP,
            PhoneNumberType::Pager,
            PhoneNumberType::UAN,
            PhoneNumberType::VoiceMail,
        ] {
            if let Ok(number) = util.get_example_number_for_type_and_region(region, kind) {
                let e164 = util.format(&number, PhoneNumberFormat::E164).into_owned();
                examples.push((region.to_string(), format!("{kind:?}"), e164));
            }
        }
    }
    let mut codes: Vec<_> = util.get_supported_global_network_calling_codes().collect();
    codes.sort();
    for code in codes {
        if let Ok(number) = util.get_example_number_for_non_geo_entity(code) {
            let e164 = util.format(&number, PhoneNumberFormat::E164).into_owned();
            examples.push(("001".into(), "non-geographic".into(), e164));
        }
    }
    examples.sort();
    examples.dedup();
    examples
}

/// Each example spelled four ways (E.164, international format, digits
/// only, national format read in its own territory) and mutated: a digit
/// less, one more, the last one changed, every digit in first place, the
/// first two swapped, a zero after the calling code.
fn cases(util: &PhoneNumberUtil) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut push = |input: String, default: &'static str, origin: &str| {
        cases.push(Case {
            input,
            default,
            origin: origin.to_string(),
        })
    };
    for (territory, kind, e164) in examples(util) {
        let origin = format!("{territory} {kind} {e164}");
        // The territory as a static string, for reading national formats.
        let home: &'static str = Region::parse(&territory)
            .map(|r| &*Box::leak(r.to_string().into_boxed_str()))
            .unwrap_or("RU");
        push(e164.clone(), "RU", &origin);
        push(e164[1..].to_string(), home, &origin);
        if let Ok(number) = util.parse(&e164, None) {
            for format in [
                PhoneNumberFormat::International,
                PhoneNumberFormat::National,
            ] {
                push(util.format(&number, format).into_owned(), home, &origin);
            }
            let code = format!("+{}", number.country_code);
            let nsn = &e164[code.len()..];
            if nsn.len() >= 2 {
                let last = nsn.as_bytes()[nsn.len() - 1] - b'0';
                let body = &nsn[..nsn.len() - 1];
                push(format!("{code}{body}"), "RU", &origin);
                push(format!("{code}{nsn}0"), "RU", &origin);
                push(format!("{code}{nsn}7"), "RU", &origin);
                push(format!("{code}{body}{}", (last + 3) % 10), "RU", &origin);
                push(format!("{code}0{nsn}"), "RU", &origin);
                let b = nsn.as_bytes();
                let swapped = format!("{}{}{}", b[1] as char, b[0] as char, &nsn[2..]);
                push(format!("{code}{swapped}"), "RU", &origin);
                for first in 0..10 {
                    push(format!("{code}{first}{}", &nsn[1..]), "RU", &origin);
                }
            }
        }
    }
    cases
}

/// The patterns of every territory of each calling code, as the old
/// library's metadata (9.0.33) has them.
fn old_rules() -> BTreeMap<u16, Vec<String>> {
    let mut rules: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for metadata in phonenumber::metadata::DATABASE.iter() {
        let d = metadata.descriptors();
        let mut territory = vec![
            metadata.id().to_string(),
            metadata.national_prefix().unwrap_or_default().to_string(),
            metadata
                .national_prefix_for_parsing()
                .map(|r| r.as_str().to_string())
                .filter(|p| Some(p.as_str()) != metadata.national_prefix())
                .unwrap_or_default(),
            d.general().national_number().as_str().to_string(),
        ];
        for kind in OLD_KINDS {
            territory.push(
                d.get(kind)
                    .map(|d| d.national_number().as_str().to_string())
                    .unwrap_or_default(),
            );
        }
        rules
            .entry(metadata.country_code())
            .or_default()
            .push(normalise(&territory));
    }
    rules.values_mut().for_each(|v| v.sort());
    rules
}

/// The same from the new library's metadata (9.0.42), read from our copy.
#[allow(deprecated)] // the raw patterns, which rlibphonenumber's own wrapper moves out
fn new_rules() -> BTreeMap<u16, Vec<String>> {
    use prost::Message;
    let bytes = include_bytes!("../phone-metadata/PhoneNumberMetadata.bin");
    let collection = rlibphonenumber::PhoneMetadataCollection::decode(&bytes[..]).unwrap();
    let mut rules: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for m in collection.metadata {
        let pattern = |d: &Option<rlibphonenumber::PhoneNumberDesc>| {
            d.as_ref()
                .and_then(|d| d.national_number_pattern.clone())
                .unwrap_or_default()
        };
        // rlibphonenumber stores patterns anchored (`^(?:…)$`), and a
        // prefix for parsing even where it is the national prefix.
        let pattern = |d: &Option<rlibphonenumber::PhoneNumberDesc>| {
            let p = pattern(d);
            match p.strip_prefix("^(?:").and_then(|p| p.strip_suffix(")$")) {
                Some(inner) => inner.to_string(),
                None => p,
            }
        };
        let national_prefix = m.national_prefix.clone().unwrap_or_default();
        let for_parsing = m.national_prefix_for_parsing.clone().unwrap_or_default();
        let for_parsing = for_parsing
            .strip_prefix("^(?:")
            .and_then(|p| p.strip_suffix(")$"))
            .unwrap_or(&for_parsing)
            .to_string();
        let territory = vec![
            m.id.clone(),
            national_prefix.clone(),
            if for_parsing == national_prefix {
                String::new()
            } else {
                for_parsing
            },
            pattern(&m.general_desc),
            pattern(&m.fixed_line),
            pattern(&m.mobile),
            pattern(&m.toll_free),
            pattern(&m.premium_rate),
            pattern(&m.shared_cost),
            pattern(&m.personal_number),
            pattern(&m.voip),
            pattern(&m.pager),
            pattern(&m.uan),
            pattern(&m.voicemail),
        ];
        rules
            .entry(m.country_code.unwrap_or_default() as u16)
            .or_default()
            .push(normalise(&territory));
    }
    rules.values_mut().for_each(|v| v.sort());
    rules
}

fn normalise(fields: &[String]) -> String {
    fields
        .iter()
        .map(|f| f.split_whitespace().collect::<String>())
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Why the two libraries disagree on `input`, if the reason is a known one.
/// `origin` is the example it was made from (`"<territory> <type> <E.164>"`).
fn reason(
    util: &PhoneNumberUtil,
    input: &str,
    default: &str,
    old_outcome: &Outcome,
    new: &Outcome,
    origin: &str,
    changed_codes: &[u16],
) -> Option<&'static str> {
    // The old library stripped the default region's national prefix (RU's
    // `8`) from numbers that carry their own calling code: its answer for
    // such a number depends on the region it is read in. `+66 81 234 5678`
    // (a Thai mobile) was refused, `+27 86 012 3456` became `+27 60 123 456`.
    if input.starts_with('+') && old(input, "IT", &[]) != *old_outcome {
        return Some(
            "old library: the default region's national prefix (RU's 8) stripped from numbers with their own calling code",
        );
    }
    let example = origin.rsplit(' ').next().unwrap_or_default();
    let code = util.parse(example, None).ok()?.country_code;
    let digits: String = input.chars().filter(char::is_ascii_digit).collect();
    let home = rlibphonenumber::Region::from_code(default).ok()?;
    if let Ok(number) = util.parse(input, Some(home)) {
        let e164 = util.format(&number, PhoneNumberFormat::E164).into_owned();
        // `4915123456789` typed in Germany: libphonenumber takes the digits
        // for a national number when they are one (here a landline), as the
        // new library does; the old one took 49 for the calling code.
        let home_code = util.get_country_code_for_region(home);
        if !input.starts_with('+')
            && home_code.is_some_and(|c| digits.starts_with(&c.to_string()))
            && e164 != format!("+{digits}")
        {
            return Some(
                "new library: a number typed with its calling code but no + read as a national number where it is one, as libphonenumber does",
            );
        }
        // `+44 (0)7400 123456`: libphonenumber applies the territory's
        // national prefix rules to the digits after the calling code too
        // (drops the `0`; Norfolk Island's `10660` becomes `3 10660`); the
        // old library did not.
        if input.starts_with('+') && e164 != format!("+{digits}") {
            return Some(
                "new library: the national prefix rules applied after the calling code (+44 (0)7400…), as libphonenumber does",
            );
        }
        // The same number typed without `+` in its own country (`8 801 123
        // 4567` in Belarus): the old library's answer differs from the one it
        // gives for the number with `+`, the new one's does not.
        if !input.starts_with('+')
            && *new == ours(&e164, "RU", &[])
            && *old_outcome != old(&e164, "IT", &[])
        {
            return Some(
                "old library: a national number's prefix stripped twice (8 801… in Belarus)",
            );
        }
        // Côte d'Ivoire, Benin, Congo, Gabon, ... number with a leading 0
        // (`+225 01 23 45 67 89`): the old library lost it when typing them.
        if number.italian_leading_zero == Some(true) {
            return Some(
                "old library: national numbers with a leading zero mistyped (valid, but of no type)",
            );
        }
    }
    // The old library matched a pattern against the start of the number
    // only, so a valid number with digits added stayed valid.
    let old_valid = old_outcome.is_ok() || *old_outcome == Err("not mobile");
    let prefix_valid = (1..digits.len().saturating_sub(code.to_string().len() + 1)).any(|cut| {
        digits.len() > cut
            && util
                .parse(format!("+{}", &digits[..digits.len() - cut]), None)
                .is_ok_and(|n| util.is_valid_number(&n))
    });
    if input.starts_with('+') && old_valid && *new == Err("invalid") && prefix_valid {
        return Some(
            "old library: a valid number followed by more digits accepted (patterns matched at the start only)",
        );
    }
    // libphonenumber's metadata for the calling code changed between
    // 9.0.33 and 9.0.42 (new ranges, renumbered countries).
    if changed_codes.contains(&(code as u16)) {
        return Some("metadata: the calling code's rules changed between 9.0.33 and 9.0.42");
    }
    None
}

#[test]
fn the_new_phone_library_agrees_with_the_old_except_for_metadata_updates() {
    let util = PhoneNumberUtil::new().expect("rlibphonenumber's built-in metadata");
    let cases = cases(&util);
    let allowed = ["RU", "KZ", "BY", "GB", "US"];
    let mut checked = 0;
    let mut disagreements: BTreeMap<(String, &str, Outcome, Outcome), String> = BTreeMap::new();
    for case in &cases {
        for allowed in [&[][..], &allowed[..]] {
            checked += 1;
            let new = ours(&case.input, case.default, allowed);
            assert_eq!(
                new,
                builtin(&util, &case.input, case.default, allowed),
                "{:?} read in {} (from {}), allowed {allowed:?}: our copy of the metadata differs from rlibphonenumber's own",
                case.input,
                case.default,
                case.origin
            );
            let old = old(&case.input, case.default, allowed);
            if old != new && allowed.is_empty() {
                disagreements
                    .entry((case.input.clone(), case.default, old, new))
                    .or_insert_with(|| case.origin.clone());
            }
        }
    }
    let (old_rules, new_rules) = (old_rules(), new_rules());
    let codes: std::collections::BTreeSet<u16> =
        old_rules.keys().chain(new_rules.keys()).copied().collect();
    let changed_codes: Vec<u16> = codes
        .into_iter()
        .filter(|code| old_rules.get(code) != new_rules.get(code))
        .collect();
    // Per reason: disagreements, accepted by one library only, accepted by
    // both as different phones.
    let mut tally: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut unexplained = Vec::new();
    for ((input, default, old, new), origin) in &disagreements {
        let reason = reason(&util, input, default, old, new, origin, &changed_codes);
        let entry = tally.entry(reason.unwrap_or("UNEXPLAINED")).or_default();
        entry.0 += 1;
        entry.1 += usize::from(old.is_ok() != new.is_ok());
        entry.2 += usize::from(old.is_ok() && new.is_ok());
        if reason.is_none() {
            unexplained.push(format!(
                "{input:?} in {default}: old {old:?}, new {new:?} (from {origin})"
            ));
        }
    }
    println!(
        "{} inputs from {} example numbers, {checked} checks (without and with allowed regions), rlibphonenumber's own metadata and ours agreeing on all; {} disagreements with phonenumber 0.3 ({} of {} calling codes have other rules in 9.0.42):",
        cases.len(),
        examples(&util).len(),
        disagreements.len(),
        changed_codes.len(),
        old_rules.len().max(new_rules.len()),
    );
    for (reason, (count, one, both)) in &tally {
        println!(
            "  {count} ({one} accepted by one library only, {both} by both as different phones): {reason}"
        );
    }
    assert!(
        unexplained.is_empty(),
        "{} disagreements without a reason:\n{}",
        unexplained.len(),
        unexplained.join("\n")
    );
    assert!(cases.len() > 20_000, "{} inputs", cases.len());
}

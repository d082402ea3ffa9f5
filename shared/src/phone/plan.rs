//! libphonenumber's numbering plans, read with rlibphonenumber, loaded by
//! calling code.
//!
//! Building rlibphonenumber's `PhoneNumberUtil` over every territory decodes
//! and prepares all of their rules (about 3 ms of CPU on the `make bench`
//! machine), which is most of a cold start. A deployment serves a handful of
//! countries, so a cold start builds [`Plans`] for the calling codes of the
//! default region and the allowed regions only (`NEAR`: every territory that
//! shares one of those codes, e.g. RU and KZ for +7), and the first number from
//! anywhere else builds the plans of every territory (`ALL`) once.
//!
//! Both give the same answer for a number the near plans can read: to parse
//! a number libphonenumber needs the default region's rules and those of the
//! territories of the number's calling code, and nothing else; calling codes
//! are prefix-free, so the near plans either find the number's calling code
//! among theirs or fail (`InvalidCountryCode`), and then `ALL` reads it.
//! `phone::tests::near_plans_answer_as_all_plans_do` checks this on every
//! example number of every territory and their mutations.

use std::sync::{LazyLock, OnceLock};

use prost::Message;
use rlibphonenumber::{PhoneMetadata, PhoneMetadataCollection, PhoneNumber, PhoneNumberUtil};

use super::Region;

/// libphonenumber's metadata exactly as rlibphonenumber builds it in
/// (`phone-metadata/README.md`: where it comes from, how to update it). A
/// copy, because the crate does not expose its own bytes, and the point is to
/// decode only some of them.
static METADATA: &[u8] = include_bytes!("../../phone-metadata/PhoneNumberMetadata.bin");

// INDEX: each territory's id (`RU`, or `001` for a non-geographic service
// such as +800), calling code and bytes in METADATA, found by build.rs, so
// that a cold start neither walks nor touches the territories it does not use.
include!(concat!(env!("OUT_DIR"), "/phone_index.rs"));

/// Whether libphonenumber has a numbering plan for the region `code` (`RU`).
pub(super) fn has_plan(code: &str) -> bool {
    INDEX.iter().any(|(id, ..)| *id == code)
}

/// A `PhoneNumberUtil` over some territories.
pub(super) struct Plans {
    pub(super) util: PhoneNumberUtil,
}

impl Plans {
    /// Every territory sharing a calling code with one of `regions`.
    pub(super) fn for_regions(regions: &[Region]) -> Plans {
        let codes: Vec<i32> = INDEX
            .iter()
            .filter(|(id, ..)| regions.iter().any(|r| r.as_str() == *id))
            .map(|(_, code, ..)| *code)
            .collect();
        Plans::of(|code| codes.contains(&code))
    }

    /// Every territory.
    pub(super) fn all() -> Plans {
        Plans::of(|_| true)
    }

    fn of(include: impl Fn(i32) -> bool) -> Plans {
        let metadata = INDEX
            .iter()
            .filter(|(_, code, ..)| include(*code))
            .map(|(_, _, start, end)| {
                PhoneMetadata::decode(&METADATA[*start..*end])
                    .expect("the built-in phone metadata decodes")
            })
            .collect();
        let util = PhoneNumberUtil::new_for_metadata(PhoneMetadataCollection { metadata })
            .expect("the built-in phone metadata names valid regions");
        Plans { util }
    }

    /// Reads `input` as libphonenumber does, `default` being the region of a
    /// number typed without its calling code.
    pub(super) fn parse(&self, input: &str, default: Option<Region>) -> Option<PhoneNumber> {
        self.util.parse(input, default.map(Region::plan)).ok()
    }
}

/// The plans a cold start prepared ([`prepare`]), if it did.
static NEAR: OnceLock<Plans> = OnceLock::new();
/// Every territory's plans, built the first time a number needs them.
static ALL: LazyLock<Plans> = LazyLock::new(Plans::all);

/// Builds the near plans of this process for `regions` (the first call
/// decides; any set gives the same answers, only sooner or later).
pub(super) fn prepare(regions: &[Region]) -> &'static Plans {
    NEAR.get_or_init(|| Plans::for_regions(regions))
}

/// `input` read with the near plans if they can, else with every territory's.
pub(super) fn read(input: &str, default: Option<Region>) -> Option<(&'static Plans, PhoneNumber)> {
    read_with(NEAR.get(), || &*ALL, input, default)
}

pub(super) fn read_with<'a>(
    near: Option<&'a Plans>,
    all: impl FnOnce() -> &'a Plans,
    input: &str,
    default: Option<Region>,
) -> Option<(&'a Plans, PhoneNumber)> {
    if let Some(near) = near
        && let Some(number) = near.parse(input, default)
    {
        return Some((near, number));
    }
    let all = all();
    all.parse(input, default).map(|number| (all, number))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// build.rs's index covers the whole file, and each range decodes to the
    /// territory it names.
    #[test]
    fn the_build_time_index_matches_the_metadata() {
        let whole = PhoneMetadataCollection::decode(METADATA).unwrap();
        assert_eq!(INDEX.len(), whole.metadata.len());
        assert!(INDEX.len() > 240, "{}", INDEX.len());
        for ((id, code, start, end), territory) in INDEX.iter().zip(&whole.metadata) {
            let decoded = PhoneMetadata::decode(&METADATA[*start..*end]).unwrap();
            assert_eq!(&decoded, territory);
            assert_eq!(
                (*id, Some(*code)),
                (decoded.id.as_str(), decoded.country_code)
            );
        }
        assert!(has_plan("RU") && has_plan("GG") && !has_plan("XX") && !has_plan("001x"));
    }
}

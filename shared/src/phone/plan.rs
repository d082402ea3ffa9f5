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

use bytes::Bytes;
use prost::Message;
use rlibphonenumber::{PhoneMetadataCollection, PhoneNumber, PhoneNumberUtil};

use super::Region;

/// libphonenumber's metadata exactly as rlibphonenumber builds it in
/// (`phone-metadata/README.md`: where it comes from, how to update it). A
/// copy, because the crate does not expose its own bytes, and the point is to
/// decode only some of them.
static METADATA: &[u8] = include_bytes!("../../phone-metadata/PhoneNumberMetadata.bin");

/// `PhoneMetadataCollection` with each territory's rules left encoded.
#[derive(Clone, PartialEq, Message)]
struct EncodedCollection {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    metadata: Vec<Bytes>,
}

/// The two fields of a territory's `PhoneMetadata` needed to pick it.
#[derive(Clone, PartialEq, Message)]
struct Head {
    #[prost(string, required, tag = "9")]
    id: String,
    #[prost(int32, optional, tag = "10")]
    country_code: Option<i32>,
}

/// One territory of the metadata: `RU`, or `001` for a non-geographic
/// service such as +800; its calling code; its rules, still encoded.
struct Territory {
    id: String,
    calling_code: i32,
    rules: Bytes,
}

/// Every territory, in the metadata's order. Reading the index costs tens of
/// microseconds: the rules themselves are skipped, not copied.
static TERRITORIES: LazyLock<Vec<Territory>> = LazyLock::new(|| {
    let collection = EncodedCollection::decode(Bytes::from_static(METADATA))
        .expect("the built-in phone metadata decodes");
    collection
        .metadata
        .into_iter()
        .map(|rules| {
            let head = Head::decode(rules.clone()).expect("the built-in phone metadata decodes");
            Territory {
                id: head.id,
                calling_code: head.country_code.unwrap_or_default(),
                rules,
            }
        })
        .collect()
});

/// Whether libphonenumber has a numbering plan for the region `code` (`RU`).
pub(super) fn has_plan(code: &str) -> bool {
    TERRITORIES.iter().any(|t| t.id == code)
}

/// A `PhoneNumberUtil` over some territories.
pub(super) struct Plans {
    pub(super) util: PhoneNumberUtil,
}

impl Plans {
    /// Every territory sharing a calling code with one of `regions`.
    pub(super) fn for_regions(regions: &[Region]) -> Plans {
        let codes: Vec<i32> = TERRITORIES
            .iter()
            .filter(|t| regions.iter().any(|r| r.as_str() == t.id))
            .map(|t| t.calling_code)
            .collect();
        Plans::of(|t| codes.contains(&t.calling_code))
    }

    /// Every territory.
    pub(super) fn all() -> Plans {
        Plans::of(|_| true)
    }

    fn of(include: impl Fn(&Territory) -> bool) -> Plans {
        let metadata = TERRITORIES
            .iter()
            .filter(|t| include(t))
            .map(|t| {
                rlibphonenumber::PhoneMetadata::decode(t.rules.clone())
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

//! Abuse and SMS-spend protection: the budgets every SMS must fit before it is
//! sent (per source IP an hour, per country and for the whole service a UTC
//! day), the budget of code checks per source IP (an hour), and the test
//! phone numbers that never send one. Plain Rust: the counters are kept
//! through the [`CounterStore`](crate::store::CounterStore) port, one atomic
//! conditional increment each.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::phone::{Phone, Region};

pub const HOUR: u64 = 3600;
pub const DAY: u64 = 86_400;

/// The budget a counter draws from; it decides the answer once it is spent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// `OTP_MAX_SENDS_PER_IP` codes per clock hour from one source address.
    SourceIp,
    /// `SMS_DAILY_BUDGET_BY_REGION`: SMS per UTC day to one country.
    Region,
    /// `SMS_DAILY_BUDGET`: SMS per UTC day for the whole service.
    Service,
    /// `OTP_MAX_CHECKS_PER_IP` code checks per clock hour from one source
    /// address (not an SMS budget: [`CheckLimit`]).
    ChecksFromIp,
}

/// One unit of one budget: for an SMS budget, taken before the SMS is sent
/// and given back if it is not sent; for the checks per address
/// ([`Budget::ChecksFromIp`]), taken before a code is checked and kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub budget: Budget,
    /// Where storage keeps the count: the budget, its subject and its window,
    /// e.g. `IP#203.0.113.7#2026-11-22T13`, `REGION#KZ#2026-11-22`,
    /// `SMS#2026-11-22`, `CHECK#203.0.113.7#2026-11-22T13`. Never a phone
    /// number (those start with `+`), so the counts can share the codes table.
    pub key: String,
    /// How many units the window has; 0 refuses every request.
    pub limit: u64,
    /// When the window ends (Unix seconds): a spent budget waits until then,
    /// and storage may forget the count after it.
    pub window_end: u64,
}

impl Counter {
    pub fn retry_after(&self, now: u64) -> u64 {
        self.window_end.saturating_sub(now).max(1)
    }

    /// The answer when this counter is spent at `now`.
    pub fn refusal(&self, now: u64) -> LimitRefusal {
        LimitRefusal {
            budget: self.budget,
            retry_after: self.retry_after(now),
        }
    }
}

/// A budget that is spent, and when it is full again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitRefusal {
    pub budget: Budget,
    pub retry_after: u64,
}

/// Where a request came from, as the per-IP budget counts it. API Gateway
/// gives the client's address (`requestContext.http.sourceIp`); an IPv6
/// client is counted by its /64, the block one subscriber usually gets, so
/// walking through the addresses of a single network buys nothing. A request
/// without one never came through API Gateway (a direct invoke by someone
/// with IAM rights to the function); all such requests share one budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Ip(IpAddr),
    Unknown,
}

impl Source {
    pub fn from_text(text: Option<&str>) -> Self {
        text.and_then(|t| t.trim().parse::<IpAddr>().ok())
            .map_or(Source::Unknown, Source::Ip)
    }

    /// The part of the key naming the source: `203.0.113.7`,
    /// `2001:db8:1:2::/64`, or `unknown`.
    pub fn key(&self) -> String {
        match self {
            Source::Ip(ip) => match ip.to_canonical() {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => {
                    let s = v6.segments();
                    let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                    format!("{net}/64")
                }
            },
            Source::Unknown => "unknown".into(),
        }
    }
}

/// The three budgets (all configurable, README "Configuration").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendLimits {
    /// Codes per clock hour from one source (IPv4 address or IPv6 /64).
    pub max_per_source_per_hour: u64,
    /// SMS per UTC day for the whole service; 0 stops every SMS (a kill switch).
    pub daily_budget: u64,
    /// SMS per UTC day per country; countries not listed have no budget of
    /// their own (only the service's).
    pub region_daily_budgets: Vec<(Region, u64)>,
}

pub const DEFAULT_MAX_SENDS_PER_IP: u64 = 50;
pub const DEFAULT_SMS_DAILY_BUDGET: u64 = 10_000;

impl Default for SendLimits {
    fn default() -> Self {
        SendLimits {
            max_per_source_per_hour: DEFAULT_MAX_SENDS_PER_IP,
            daily_budget: DEFAULT_SMS_DAILY_BUDGET,
            region_daily_budgets: Vec::new(),
        }
    }
}

/// The counters one SMS must fit: the source's hour, the country's day (if
/// it has a budget), the service's day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counters {
    pub source: Counter,
    pub region: Option<Counter>,
    pub service: Counter,
}

impl Counters {
    pub fn all(&self) -> impl Iterator<Item = &Counter> {
        [
            Some(&self.source),
            self.region.as_ref(),
            Some(&self.service),
        ]
        .into_iter()
        .flatten()
    }
}

impl SendLimits {
    pub fn region_budget(&self, region: Region) -> Option<u64> {
        self.region_daily_budgets
            .iter()
            .find(|(id, _)| *id == region)
            .map(|(_, budget)| *budget)
    }

    /// The most budgets one code counts against ([`Self::counters`]): the
    /// source's and the service's, and its country's where any is set.
    pub fn budgets_per_code(&self) -> usize {
        2 + usize::from(!self.region_daily_budgets.is_empty())
    }

    pub fn counters(&self, source: Source, region: Option<Region>, now: u64) -> Counters {
        let day_end = (now / DAY + 1) * DAY;
        let day = utc_date(now / DAY);
        Counters {
            source: hourly_counter(
                Budget::SourceIp,
                "IP",
                source,
                self.max_per_source_per_hour,
                now,
            ),
            region: region.and_then(|id| {
                self.region_budget(id).map(|limit| Counter {
                    budget: Budget::Region,
                    key: format!("REGION#{}#{day}", id.as_ref()),
                    limit,
                    window_end: day_end,
                })
            }),
            service: Counter {
                budget: Budget::Service,
                key: format!("SMS#{day}"),
                limit: self.daily_budget,
                window_end: day_end,
            },
        }
    }
}

/// One source's count in the clock hour of `now`: `<prefix>#<source>#<date>T<hour>`.
fn hourly_counter(budget: Budget, prefix: &str, source: Source, limit: u64, now: u64) -> Counter {
    let hour = (now % DAY) / HOUR;
    Counter {
        budget,
        key: format!(
            "{prefix}#{}#{}T{hour:02}",
            source.key(),
            utc_date(now / DAY)
        ),
        limit,
        window_end: (now / HOUR + 1) * HOUR,
    }
}

/// How many codes one source may check in a clock hour, whichever phones
/// they are for. A phone's own limits (attempts per code, failed checks per
/// day) stop guesses at one phone's code; they cannot stop one network from
/// guessing at many phones' pending codes, three tries each, and taking over
/// about three accounts in ten thousand codes so tried. Every check counts,
/// right or wrong: a network checks about one code per code it was sent, so
/// the default is twice the codes a source may request
/// ([`DEFAULT_MAX_SENDS_PER_IP`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckLimit {
    pub max_per_source_per_hour: u64,
}

pub const DEFAULT_MAX_CHECKS_PER_IP: u64 = 2 * DEFAULT_MAX_SENDS_PER_IP;

impl Default for CheckLimit {
    fn default() -> Self {
        CheckLimit {
            max_per_source_per_hour: DEFAULT_MAX_CHECKS_PER_IP,
        }
    }
}

impl CheckLimit {
    pub fn counter(&self, source: Source, now: u64) -> Counter {
        hourly_counter(
            Budget::ChecksFromIp,
            "CHECK",
            source,
            self.max_per_source_per_hour,
            now,
        )
    }
}

// ---------------------------------------------------------------- test numbers

/// Phones with a fixed code, for app-store review and automated tests in
/// production (`TEST_PHONE_NUMBERS`): no SMS is sent to them and they count
/// against no SMS budget; their codes are checked like any other (attempts,
/// lockout, cooldown, the phone's hourly cap, the checks per address). After
/// the last day (`TEST_PHONE_NUMBERS_EXPIRE`, UTC) they are ordinary numbers
/// again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestNumbers {
    codes: HashMap<Phone, String>,
    /// First second after the last day (Unix seconds).
    ends_at: u64,
}

impl TestNumbers {
    /// `last_day`: days since 1970-01-01 of the last day they work.
    pub fn new(codes: HashMap<Phone, String>, last_day: u64) -> Self {
        TestNumbers {
            codes,
            ends_at: (last_day + 1) * DAY,
        }
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }

    pub fn expired(&self, now: u64) -> bool {
        now >= self.ends_at
    }

    /// The fixed code of a test number, while they work.
    pub fn code_for(&self, phone: &Phone, now: u64) -> Option<&str> {
        if self.expired(now) {
            return None;
        }
        self.codes.get(phone).map(String::as_str)
    }

    /// The last day they work, as `YYYY-MM-DD` (for the start-up log).
    pub fn last_day(&self) -> String {
        utc_date((self.ends_at / DAY).saturating_sub(1))
    }
}

// ---------------------------------------------------------------- UTC dates

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`); None for a date that does not exist or precedes 1970.
pub fn days_from_date(year: u64, month: u64, day: u64) -> Option<u64> {
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400)) => {
            29
        }
        2 => 28,
        _ => return None,
    };
    if year < 1970 || day == 0 || day > days_in_month {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y % 400;
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).checked_sub(719_468)
}

/// `YYYY-MM-DD` → days since 1970-01-01, strictly (four-digit year, two-digit
/// month and day, a real date).
pub fn parse_date(text: &str) -> Option<u64> {
    let bytes = text.as_bytes();
    if bytes.len() != 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let number = |range: std::ops::Range<usize>| -> Option<u64> {
        let part = &text[range];
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())
            .flatten()
    };
    days_from_date(number(0..4)?, number(5..7)?, number(8..10)?)
}

/// Milliseconds since the Unix epoch → RFC 3339 in UTC with milliseconds,
/// `2026-11-22T13:05:09.042Z`.
pub fn utc_timestamp(millis: u64) -> String {
    let seconds = millis / 1000;
    format!(
        "{}T{:02}:{:02}:{:02}.{:03}Z",
        utc_date(seconds / DAY),
        seconds % DAY / HOUR,
        seconds % HOUR / 60,
        seconds % 60,
        millis % 1000
    )
}

/// Days since 1970-01-01 → `YYYY-MM-DD` (H. Hinnant's `civil_from_days`).
pub fn utc_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip_and_bad_ones_are_refused() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2000-02-29"), Some(11_016));
        assert_eq!(utc_date(11_016), "2000-02-29");
        // 2026-11-22 00:00 UTC is 1795305600.
        assert_eq!(parse_date("2026-11-22"), Some(1_795_305_600 / DAY));
        for days in (0..200_000).step_by(97) {
            assert_eq!(parse_date(&utc_date(days)), Some(days), "{days}");
        }
        for bad in [
            "",
            "2026-1-22",
            "2026/11/22",
            "2026-11-31",
            "2026-02-29",
            "1900-02-29",
            "2026-13-01",
            "2026-00-10",
            "1969-12-31",
            "+026-11-22",
            "2026-11-2x",
            " 2026-11-22",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ipv4_is_counted_per_address_and_ipv6_per_64() {
        let key = |text: &str| Source::from_text(Some(text)).key();
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
        assert_ne!(key("2001:db8:1:3::1"), key("2001:db8:1:2::1"));
        // An IPv4 client seen through an IPv6 socket is still that address.
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(Source::from_text(None), Source::Unknown);
        assert_eq!(Source::from_text(Some("not an address")).key(), "unknown");
    }

    #[test]
    fn counters_are_keyed_by_source_hour_and_utc_day() {
        let limits = SendLimits {
            region_daily_budgets: vec![(Region::KZ, 2000)],
            ..SendLimits::default()
        };
        // 2026-11-22 23:59:59 UTC
        let now = 1_795_305_600 + DAY - 1;
        let source = Source::from_text(Some("203.0.113.7"));
        let c = limits.counters(source, Some(Region::KZ), now);
        assert_eq!(c.source.key, "IP#203.0.113.7#2026-11-22T23");
        assert_eq!((c.source.limit, c.source.window_end), (50, now + 1));
        let region = c.region.clone().unwrap();
        assert_eq!(region.key, "REGION#KZ#2026-11-22");
        assert_eq!((region.limit, region.window_end), (2000, now + 1));
        assert_eq!(c.service.key, "SMS#2026-11-22");
        assert_eq!((c.service.limit, c.service.window_end), (10_000, now + 1));
        assert_eq!(c.all().count(), 3);
        // A second later every window is a new one.
        let next = limits.counters(source, Some(Region::KZ), now + 1);
        assert_eq!(next.source.key, "IP#203.0.113.7#2026-11-23T00");
        assert_eq!(next.service.key, "SMS#2026-11-23");
        assert_eq!(next.source.window_end, now + 1 + HOUR);
        // A country without a budget of its own has no region counter.
        let ru = limits.counters(source, Some(Region::RU), now);
        assert_eq!(ru.region, None);
        assert_eq!(ru.all().count(), 2);
        assert_eq!(c.source.retry_after(now), 1);
        assert_eq!(c.source.retry_after(now + 5), 1, "never 0");
    }

    #[test]
    fn code_checks_are_counted_per_source_and_hour_apart_from_sends() {
        let now = 1_795_305_600 + DAY - 1;
        let source = Source::from_text(Some("2001:db8:1:2:aaaa::1"));
        let checks = CheckLimit::default().counter(source, now);
        assert_eq!(checks.budget, Budget::ChecksFromIp);
        assert_eq!(checks.key, "CHECK#2001:db8:1:2::/64#2026-11-22T23");
        assert_eq!((checks.limit, checks.window_end), (100, now + 1));
        let sends = SendLimits::default().counters(source, None, now).source;
        assert_ne!(checks.key, sends.key, "two budgets, two counts");
        assert_eq!(
            CheckLimit::default().counter(source, now + 1).key,
            "CHECK#2001:db8:1:2::/64#2026-11-23T00"
        );
    }
}

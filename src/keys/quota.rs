//! Quotas: how many units a key or an account may spend in a calendar
//! period, and the period arithmetic (UTC days, weeks starting on Monday,
//! months starting on the 1st; `total` never resets, for prepaid credits).
//!
//! Pure values and arithmetic on unix milliseconds: the clock is always
//! passed in, so every boundary (month ends, leap years, week starts) is
//! tested without waiting for it. Nothing here counts or stores spending.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use time::{Date, Duration, Month, OffsetDateTime, Time};

/// The largest quota a key, plan or adjustment may name.
pub const MAX_QUOTA: u64 = 1_000_000_000_000;

/// The calendar period a quota counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    /// Never resets: prepaid credits.
    Total,
}

/// `limit` units per `period`, as keys and plans carry it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({ "limit": 10000, "period": "month" }))]
pub struct QuotaSpec {
    #[schema(minimum = 1, maximum = 1_000_000_000_000_u64)]
    pub limit: u64,
    pub period: Period,
}

/// The period a moment falls in: `[start_ms, end_ms)`, `end_ms` `None` for
/// `total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start_ms: i64,
    pub end_ms: Option<i64>,
}

impl Period {
    pub const ALL: [Period; 4] = [Period::Day, Period::Week, Period::Month, Period::Total];

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    pub fn parse(text: &str) -> Option<Period> {
        Period::ALL.into_iter().find(|p| p.as_str() == text)
    }

    /// The period `now_ms` falls in.
    pub fn window(self, now_ms: i64) -> Window {
        if (0..FAST_UNTIL_MS).contains(&now_ms) {
            return self.window_by_days(now_ms);
        }
        self.window_by_calendar(now_ms)
    }

    /// `window` in integer arithmetic on days since the epoch: what every
    /// request with a quota asks for (up to six times), at a fraction of
    /// the calendar's cost. For `0 <= now_ms < FAST_UNTIL_MS` only, where
    /// every period has an end.
    fn window_by_days(self, now_ms: i64) -> Window {
        let days = now_ms / DAY_MS;
        let (start, length) = match self {
            Period::Total => return Window { start_ms: 0, end_ms: None },
            Period::Day => (days, 1),
            // 1970-01-01 was a Thursday: three days after a Monday.
            Period::Week => (days - (days + 3) % 7, 7),
            Period::Month => {
                let (into, length) = month_of(days);
                (days - into, length)
            }
        };
        Window { start_ms: start * DAY_MS, end_ms: Some((start + length) * DAY_MS) }
    }

    /// `window` through the `time` crate's calendar: any instant it can
    /// represent (years -9999 to 9999), and the reference for
    /// `window_by_days`.
    fn window_by_calendar(self, now_ms: i64) -> Window {
        let Some(now) = utc(now_ms) else {
            return Window { start_ms: 0, end_ms: None };
        };
        let today = now.date();
        let (start, end) = match self {
            Period::Total => return Window { start_ms: 0, end_ms: None },
            Period::Day => (today, today.next_day()),
            Period::Week => {
                let monday = today - Duration::days(i64::from(today.weekday().number_days_from_monday()));
                (monday, monday.checked_add(Duration::days(7)))
            }
            Period::Month => {
                let first = today.replace_day(1).unwrap_or(today);
                let next = match first.month() {
                    Month::December => Date::from_calendar_date(first.year() + 1, Month::January, 1).ok(),
                    m => Date::from_calendar_date(first.year(), m.next(), 1).ok(),
                };
                (first, next)
            }
        };
        Window { start_ms: midnight_ms(start), end_ms: end.map(midnight_ms) }
    }

    /// The period's nominal length in seconds, for `RateLimit-Policy`'s `w`
    /// (a month is the length of the month `now_ms` falls in). `None` for
    /// `total`.
    pub fn seconds(self, now_ms: i64) -> Option<u64> {
        let w = self.window(now_ms);
        w.end_ms.map(|end| ((end - w.start_ms) / 1000) as u64)
    }
}

impl Window {
    /// Whole seconds from `now_ms` until the period ends (rounded up, at
    /// least 1), `None` for `total`.
    pub fn seconds_left(&self, now_ms: i64) -> Option<u64> {
        self.end_ms.map(|end| ((end - now_ms).max(1) as u64).div_ceil(1000))
    }
}

impl QuotaSpec {
    /// Checks the bounds an API caller or config may give.
    pub fn validate(&self) -> Result<(), String> {
        if self.limit == 0 || self.limit > MAX_QUOTA {
            return Err(format!("limit must be between 1 and {MAX_QUOTA}"));
        }
        Ok(())
    }
}

/// A `QuotaSpec` in 8 bytes (`None` costs nothing more), as each key of the
/// snapshot carries it: the limit (at most `MAX_QUOTA` < 2^40) shifted past
/// two bits of period. Keeps a million keys' snapshot from growing by 16 MB
/// for a field most keys leave unset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackedQuota(std::num::NonZeroU64);

impl PackedQuota {
    /// `None` for a limit of 0 or one too large to pack (never valid).
    pub fn new(spec: QuotaSpec) -> Option<PackedQuota> {
        if spec.limit == 0 || spec.limit > u64::MAX >> 2 {
            return None;
        }
        let period = match spec.period {
            Period::Day => 0,
            Period::Week => 1,
            Period::Month => 2,
            Period::Total => 3,
        };
        std::num::NonZeroU64::new(spec.limit << 2 | period).map(PackedQuota)
    }

    pub fn spec(self) -> QuotaSpec {
        let v = self.0.get();
        QuotaSpec { limit: v >> 2, period: Period::ALL[(v & 3) as usize] }
    }
}

const DAY_MS: i64 = 86_400_000;

/// 3000-01-01T00:00:00Z: instants from the epoch up to this one take
/// `Period::window_by_days`.
const FAST_UNTIL_MS: i64 = 32_503_680_000_000;

/// (year, month 1–12, day 1–31) of a day counted from 1970-01-01, in the
/// proleptic Gregorian calendar; for `days >= 0`. Howard Hinnant's
/// `civil_from_days` (eras of 400 years, years starting in March).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The last day `month_of` worked out, shared by every thread: `days + 1`
/// (0: none yet) above 16 bits, the days into its month above 8, the
/// month's length below. A request with quotas asks for its periods up to
/// six times, and the day changes once a day.
static LAST_MONTH: AtomicU64 = AtomicU64::new(0);

/// (days into its month, days in its month) of a day counted from
/// 1970-01-01, `days >= 0`.
fn month_of(days: i64) -> (i64, i64) {
    let tag = (days as u64 + 1) << 16;
    let last = LAST_MONTH.load(Ordering::Relaxed);
    if last >> 16 == tag >> 16 {
        return (((last >> 8) & 0xff) as i64, (last & 0xff) as i64);
    }
    let (year, month, day) = civil_from_days(days);
    let (into, length) = (day - 1, days_in_month(year, month));
    LAST_MONTH.store(tag | (into as u64) << 8 | length as u64, Ordering::Relaxed);
    (into, length)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn utc(ms: i64) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()
}

fn midnight_ms(date: Date) -> i64 {
    let t = date.with_time(Time::MIDNIGHT).assume_utc();
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{parse_rfc3339, rfc3339};

    fn at(text: &str) -> i64 {
        parse_rfc3339(text).expect("a valid time")
    }

    fn window(period: Period, now: &str) -> (String, Option<String>) {
        let w = period.window(at(now));
        (rfc3339(w.start_ms), w.end_ms.map(rfc3339))
    }

    #[test]
    fn the_arithmetic_windows_agree_with_the_calendar() {
        use rand::{Rng, SeedableRng};
        let check = |ms: i64| {
            for period in Period::ALL {
                assert_eq!(period.window_by_days(ms), period.window_by_calendar(ms), "{period:?} at {ms}");
            }
        };
        // Every day's first and last millisecond, and its middle, from the
        // epoch to 2200; then random instants up to the end of the range.
        for day in 0..(230 * 366) {
            let start = day * DAY_MS;
            for ms in [start, start + DAY_MS / 2, start + DAY_MS - 1] {
                check(ms);
            }
        }
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for _ in 0..200_000 {
            check(rng.gen_range(0..FAST_UNTIL_MS));
        }
        check(FAST_UNTIL_MS - 1);
        // Outside the range: the calendar answers, as before.
        assert_eq!(Period::Day.window(-1), Period::Day.window_by_calendar(-1));
        assert_eq!(Period::Month.window(FAST_UNTIL_MS), Period::Month.window_by_calendar(FAST_UNTIL_MS));
        assert_eq!(Period::Month.window(i64::MAX), Window { start_ms: 0, end_ms: None });
    }

    #[test]
    fn a_day_runs_from_midnight_to_midnight_utc() {
        let (start, end) = window(Period::Day, "2026-12-03T23:59:59.999Z");
        assert_eq!(start, "2026-12-03T00:00:00Z");
        assert_eq!(end.as_deref(), Some("2026-12-04T00:00:00Z"));
        // Another offset names the same instant: UTC decides the day.
        let (start, _) = window(Period::Day, "2026-12-04T00:30:00+01:00");
        assert_eq!(start, "2026-12-03T00:00:00Z");
    }

    #[test]
    fn a_week_starts_on_monday() {
        // 2026-12-03 is a Thursday; 2026-11-30 the Monday before.
        let (start, end) = window(Period::Week, "2026-12-03T12:00:00Z");
        assert_eq!(start, "2026-11-30T00:00:00Z");
        assert_eq!(end.as_deref(), Some("2026-12-07T00:00:00Z"));
        // Monday midnight is the first instant of its own week.
        assert_eq!(window(Period::Week, "2026-12-07T00:00:00Z").0, "2026-12-07T00:00:00Z");
        // Sunday's last millisecond still belongs to the week before.
        assert_eq!(window(Period::Week, "2026-12-06T23:59:59.999Z").0, "2026-11-30T00:00:00Z");
        // A week across a year's end.
        let (start, end) = window(Period::Week, "2027-01-01T08:00:00Z");
        assert_eq!(start, "2026-12-28T00:00:00Z");
        assert_eq!(end.as_deref(), Some("2027-01-04T00:00:00Z"));
    }

    #[test]
    fn months_end_where_the_calendar_says() {
        let (start, end) = window(Period::Month, "2026-01-31T23:00:00Z");
        assert_eq!(start, "2026-01-01T00:00:00Z");
        assert_eq!(end.as_deref(), Some("2026-02-01T00:00:00Z"));
        let (start, end) = window(Period::Month, "2026-12-31T23:59:59Z");
        assert_eq!(start, "2026-12-01T00:00:00Z");
        assert_eq!(end.as_deref(), Some("2027-01-01T00:00:00Z"));
        assert_eq!(Period::Month.seconds(at("2026-04-10T00:00:00Z")), Some(30 * 86_400));
        assert_eq!(Period::Month.seconds(at("2026-12-10T00:00:00Z")), Some(31 * 86_400));
    }

    #[test]
    fn february_knows_leap_years() {
        assert_eq!(Period::Month.seconds(at("2028-02-29T12:00:00Z")), Some(29 * 86_400));
        assert_eq!(Period::Month.seconds(at("2027-02-28T12:00:00Z")), Some(28 * 86_400));
        // 2100 is not a leap year, 2000 was.
        assert_eq!(Period::Month.seconds(at("2100-02-10T00:00:00Z")), Some(28 * 86_400));
        assert_eq!(Period::Month.seconds(at("2000-02-10T00:00:00Z")), Some(29 * 86_400));
        let (_, end) = window(Period::Month, "2028-02-29T23:59:59Z");
        assert_eq!(end.as_deref(), Some("2028-03-01T00:00:00Z"));
    }

    #[test]
    fn total_never_resets() {
        let w = Period::Total.window(at("2026-12-03T12:00:00Z"));
        assert_eq!(w, Window { start_ms: 0, end_ms: None });
        assert_eq!(w.seconds_left(at("2026-12-03T12:00:00Z")), None);
        assert_eq!(Period::Total.seconds(0), None);
    }

    #[test]
    fn seconds_left_round_up_and_never_reach_zero() {
        let now = at("2026-12-03T23:59:59.001Z");
        assert_eq!(Period::Day.window(now).seconds_left(now), Some(1));
        let now = at("2026-12-03T23:59:58.500Z");
        assert_eq!(Period::Day.window(now).seconds_left(now), Some(2));
        let now = at("2026-12-03T00:00:00Z");
        assert_eq!(Period::Day.window(now).seconds_left(now), Some(86_400));
    }

    #[test]
    fn periods_parse_and_serialize_by_name() {
        for p in Period::ALL {
            assert_eq!(Period::parse(p.as_str()), Some(p));
            assert_eq!(serde_json::to_string(&p).expect("serializes"), format!("\"{}\"", p.as_str()));
        }
        assert_eq!(Period::parse("year"), None);
        let spec: QuotaSpec = serde_json::from_str(r#"{"limit":10,"period":"week"}"#).expect("parses");
        assert_eq!(spec, QuotaSpec { limit: 10, period: Period::Week });
        assert!(serde_json::from_str::<QuotaSpec>(r#"{"limit":10,"period":"week","x":1}"#).is_err());
        assert!(QuotaSpec { limit: 0, period: Period::Day }.validate().is_err());
        assert!(QuotaSpec { limit: MAX_QUOTA + 1, period: Period::Day }.validate().is_err());
        assert!(QuotaSpec { limit: 1, period: Period::Total }.validate().is_ok());
    }

    #[test]
    fn a_packed_quota_unpacks_to_itself() {
        for period in Period::ALL {
            for limit in [1, 7, MAX_QUOTA] {
                let spec = QuotaSpec { limit, period };
                assert_eq!(PackedQuota::new(spec).map(PackedQuota::spec), Some(spec));
            }
        }
        assert_eq!(PackedQuota::new(QuotaSpec { limit: 0, period: Period::Day }), None);
        assert_eq!(std::mem::size_of::<Option<PackedQuota>>(), 8);
    }
}

//! Time zones for calendar buckets (`tz=`): IANA names from the tz database compiled into the
//! collector, local midnights and month starts as instants, and the rule that keeps answers
//! exact: the rollups are kept per UTC hour (and per UTC day), so a local day, month or hour of
//! day is a union of rollup buckets only when the zone's offset is a whole number of hours, and
//! a local day or month only of *hourly* buckets unless the offset is zero.

use std::str::FromStr;

use chrono::{
    DateTime, Datelike, Days, Months, NaiveDate, NaiveDateTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc, Weekday,
};
use chrono_tz::Tz;

/// A time zone named by the tz database (`Europe/Berlin`, `America/New_York`, `UTC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Zone(Tz);

impl Default for Zone {
    fn default() -> Self {
        Zone::UTC
    }
}

/// Why a range cannot be bucketed exactly in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inexact {
    /// At this instant the zone's offset from UTC is not a whole number of hours.
    PartHourOffset(DateTime<Utc>, i32),
}

impl Zone {
    pub const UTC: Zone = Zone(Tz::UTC);

    /// An IANA zone name; `None` for anything else (PostgreSQL-style `UTC+3` or abbreviations
    /// like `EST` that name no region are refused even where the database knows them).
    pub fn parse(name: &str) -> Option<Zone> {
        if name.is_empty() || name.len() > 64 {
            return None;
        }
        let tz = Tz::from_str(name).ok()?;
        // Area/location names (`Europe/Berlin`, `Etc/UTC`) and `UTC`; not the bare
        // abbreviations the database keeps for compatibility (`EST`, `EST5EDT`, `CET`, ...).
        (name.contains('/') || name == "UTC").then_some(Zone(tz))
    }

    /// The zone's name.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The offset from UTC at `t`, in seconds.
    pub fn offset_secs(self, t: DateTime<Utc>) -> i32 {
        self.0
            .offset_from_utc_datetime(&t.naive_utc())
            .fix()
            .local_minus_utc()
    }

    /// Whether the offset is zero at every hour of `[from, to)` and at its transitions.
    pub fn is_utc_over(self, from: DateTime<Utc>, to: DateTime<Utc>) -> bool {
        self == Zone::UTC || self.offsets(from, to).all(|(_, o)| o == 0)
    }

    /// `Ok` when every offset over `[from, to)` is a whole number of hours.
    pub fn whole_hours_over(self, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<(), Inexact> {
        match self.offsets(from, to).find(|(_, o)| o % 3600 != 0) {
            None => Ok(()),
            Some((t, o)) => Err(Inexact::PartHourOffset(t, o)),
        }
    }

    /// The offset at the start of every UTC hour of `[from, to)` (an offset changes only at a
    /// transition, and transitions of the tz database fall on whole minutes; checking each hour
    /// start and the hour before the end finds every offset a rollup bucket could meet).
    fn offsets(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, i32)> {
        let start = from
            .with_minute(0)
            .and_then(|t| t.with_second(0))
            .and_then(|t| t.with_nanosecond(0))
            .unwrap_or(from);
        let mut t = Some(start);
        std::iter::from_fn(move || {
            let now = t.filter(|x| *x < to)?;
            t = now.checked_add_signed(TimeDelta::hours(1));
            Some((now, self.offset_secs(now)))
        })
    }

    /// The local date at `t`.
    pub fn date(self, t: DateTime<Utc>) -> NaiveDate {
        t.with_timezone(&self.0).date_naive()
    }

    /// The local hour of day and weekday at `t`.
    pub fn hour_and_weekday(self, t: DateTime<Utc>) -> (u32, Weekday) {
        let l = t.with_timezone(&self.0);
        (l.hour(), l.weekday())
    }

    /// The instant the local day `d` starts: its midnight, or the first moment after a gap that
    /// skips midnight (a daylight-saving change at 00:00).
    pub fn day_start(self, d: NaiveDate) -> DateTime<Utc> {
        let midnight: NaiveDateTime = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        for minutes in (0..=24 * 60).step_by(15) {
            let local = midnight + TimeDelta::minutes(minutes);
            if let Some(t) = self.0.from_local_datetime(&local).earliest() {
                return t.with_timezone(&Utc);
            }
        }
        midnight.and_utc()
    }

    /// The start of the local day holding `t`.
    pub fn start_of_day(self, t: DateTime<Utc>) -> DateTime<Utc> {
        self.day_start(self.date(t))
    }

    /// The start of the local day after the one holding `t`.
    pub fn next_day(self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.date(t)
            .checked_add_days(Days::new(1))
            .map(|d| self.day_start(d))
    }

    /// The start of the local calendar month holding `t`.
    pub fn start_of_month(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let d = self.date(t);
        self.day_start(NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d))
    }

    /// The start of the local calendar month after the one holding `t`.
    pub fn next_month(self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let d = self.date(t);
        NaiveDate::from_ymd_opt(d.year(), d.month(), 1)
            .and_then(|f| f.checked_add_months(Months::new(1)))
            .map(|d| self.day_start(d))
    }

    /// The local calendar month holding `t`: its start and the next one's.
    pub fn month(self, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
        let start = self.start_of_month(t);
        (start, self.next_month(t).unwrap_or(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    #[test]
    fn names() {
        for ok in [
            "UTC",
            "Etc/UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Etc/GMT+3",
            "America/Argentina/Buenos_Aires",
        ] {
            assert!(Zone::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "utc+3",
            "UTC+3",
            "EST",
            "EST5EDT",
            "CET",
            "Mars/Olympus",
            "europe/berlin",
            "+02:00",
            "Etc/GMT+14x",
        ] {
            assert!(Zone::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn days_across_daylight_saving() {
        let ny = Zone::parse("America/New_York").expect("zone");
        // 2026-03-08: clocks go 02:00 → 03:00, a 23-hour day.
        let d = ny.start_of_day(at("2026-03-08T12:00:00Z"));
        assert_eq!(d, at("2026-03-08T05:00:00Z"));
        let n = ny.next_day(d).expect("next");
        assert_eq!(n, at("2026-03-09T04:00:00Z"));
        assert_eq!((n - d).num_hours(), 23);
        // 2026-11-01: 25 hours.
        let d = ny.start_of_day(at("2026-11-01T12:00:00Z"));
        assert_eq!((ny.next_day(d).expect("next") - d).num_hours(), 25);
        // Months: local first of the month.
        let (a, b) = ny.month(at("2026-12-01T03:00:00Z"));
        assert_eq!(a, at("2026-11-01T04:00:00Z"));
        assert_eq!(b, at("2026-12-01T05:00:00Z"));
        assert_eq!(
            ny.hour_and_weekday(at("2026-12-01T03:00:00Z")),
            (22, Weekday::Mon)
        );
    }

    #[test]
    fn midnight_in_a_gap() {
        // Santiago moved clocks from 00:00 to 01:00 on 2026-09-06.
        let cl = Zone::parse("America/Santiago").expect("zone");
        let d = cl.day_start(NaiveDate::from_ymd_opt(2026, 9, 6).expect("date"));
        assert_eq!(d.with_timezone(&cl.0).hour(), 1);
    }

    #[test]
    fn exactness() {
        let (from, to) = (at("2026-01-01T00:00:00Z"), at("2026-12-31T00:00:00Z"));
        assert!(Zone::UTC.is_utc_over(from, to));
        let london = Zone::parse("Europe/London").expect("zone");
        assert!(london.is_utc_over(at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z")));
        assert!(!london.is_utc_over(from, to));
        assert!(london.whole_hours_over(from, to).is_ok());
        let kolkata = Zone::parse("Asia/Kolkata").expect("zone");
        assert_eq!(
            kolkata.whole_hours_over(from, to),
            Err(Inexact::PartHourOffset(from, 19_800))
        );
        // Lord Howe: +10:30 in winter, +11 in summer.
        let lh = Zone::parse("Australia/Lord_Howe").expect("zone");
        assert!(lh
            .whole_hours_over(at("2026-01-10T00:00:00Z"), at("2026-01-11T00:00:00Z"))
            .is_ok());
        assert!(lh.whole_hours_over(from, to).is_err());
    }
}

//! Calendar and money helpers shared by billing and the read API: local days and calendar
//! months in an IANA time zone (a billing period, a budget month, a series bucket), their
//! `YYYY-MM` names, exact day counts, cents.
//!
//! Zone rules come from the IANA database compiled into the collector (`chrono-tz`), so bucket
//! boundaries are computed here, not by the database's `AT TIME ZONE` (which would also accept
//! POSIX strings such as `UTC+3`, whose sign is the reverse of ISO 8601).

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use rust_decimal::{Decimal, RoundingStrategy};

/// The zone named `name`: an exact IANA name (`Europe/Berlin`, `America/New_York`, `UTC`,
/// `Etc/GMT+3`); `None` for anything else, POSIX strings such as `UTC+3` or `EST5` included.
pub fn zone(name: &str) -> Option<Tz> {
    name.parse::<Tz>().ok()
}

/// The first instant of local date `d` in `tz`: local midnight, or when midnight does not exist
/// (a clock change at 00:00), the end of the gap; the earlier one when midnight occurs twice.
pub fn day_start(tz: Tz, d: NaiveDate) -> DateTime<Utc> {
    let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
    if let Some(t) = tz.from_local_datetime(&midnight).earliest() {
        return t.with_timezone(&Utc);
    }
    // In a gap: the first local minute of the day that exists (gaps are at most a few hours).
    (1..=24 * 60)
        .find_map(|m| {
            tz.from_local_datetime(&(midnight + TimeDelta::minutes(m)))
                .earliest()
        })
        .map_or_else(|| midnight.and_utc(), |t| t.with_timezone(&Utc))
}

/// The local date of `t` in `tz`.
pub fn local_date(tz: Tz, t: DateTime<Utc>) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

/// The calendar month of `tz` holding `t`: its first instant and the next month's.
pub fn month_in(tz: Tz, t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let d = local_date(tz, t);
    let first = NaiveDate::from_ymd_opt(d.year(), d.month(), 1).unwrap_or(d);
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    (day_start(tz, first), day_start(tz, next))
}

/// `from`, then the first instant of each later calendar month of `tz` before `to`: where
/// `[from, to)` is cut into its months.
pub fn month_starts(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = vec![from];
    let mut last = from;
    loop {
        let next = month_in(tz, last).1;
        if next >= to || next <= last {
            return out;
        }
        out.push(next);
        last = next;
    }
}

/// The UTC calendar month holding `t`: its start and the next one's.
pub fn month(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    month_in(Tz::UTC, t)
}

/// `YYYY-MM` of the month holding `t`.
pub fn month_name(t: &impl Datelike) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

/// Days between two instants, exact to the second (at least one second).
pub fn days(from: DateTime<Utc>, to: DateTime<Utc>) -> Decimal {
    Decimal::from((to - from).num_seconds().max(1)) / Decimal::from(86_400)
}

/// USD rounded to the cent, half away from zero.
pub fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
        .normalize()
}

/// `part / whole × 100` to two places (half away from zero); `None` when `whole` is zero.
pub fn percent(part: Decimal, whole: Decimal) -> Option<Decimal> {
    (!whole.is_zero()).then(|| cents(part * Decimal::ONE_HUNDRED / whole))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_days_and_cents() {
        let t = Utc
            .with_ymd_and_hms(2026, 12, 16, 12, 0, 0)
            .single()
            .expect("t");
        let (a, b) = month(t);
        assert_eq!(a.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert_eq!(b.to_rfc3339(), "2027-01-01T00:00:00+00:00");
        assert_eq!(month_name(&a), "2026-12");
        assert_eq!(month_name(&a.naive_utc()), "2026-12");
        assert_eq!(days(a, b), Decimal::from(31));
        assert_eq!(days(a, a), Decimal::ONE / Decimal::from(86_400));
        assert_eq!(cents(Decimal::new(12345, 3)), Decimal::new(1235, 2));
        assert_eq!(cents(Decimal::new(-12345, 3)), Decimal::new(-1235, 2));
        assert_eq!(cents(Decimal::new(1500, 3)).to_string(), "1.5");
        assert_eq!(
            percent(Decimal::ONE, Decimal::from(3)),
            Some(Decimal::new(3333, 2))
        );
        assert_eq!(
            percent(Decimal::from(2), Decimal::ONE),
            Some(Decimal::from(200))
        );
        assert_eq!(percent(Decimal::ONE, Decimal::ZERO), None);
    }

    #[test]
    fn zones_days_and_months() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/New_York",
            "Asia/Kolkata",
            "Etc/GMT+3",
        ] {
            assert!(zone(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "UTC+3",
            "EST5",
            "europe/berlin",
            "Mars/Olympus",
            "+05:30",
            " UTC",
        ] {
            assert!(zone(bad).is_none(), "{bad:?}");
        }
        let ny = zone("America/New_York").expect("ny");
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("date");
        let at = |s: &str| {
            DateTime::parse_from_rfc3339(s)
                .expect("t")
                .with_timezone(&Utc)
        };
        // 2026-11-01 has 25 hours in New York; 2026-03-08 has 23.
        assert_eq!(day_start(ny, d(2026, 11, 1)), at("2026-11-01T04:00:00Z"));
        assert_eq!(day_start(ny, d(2026, 11, 2)), at("2026-11-02T05:00:00Z"));
        assert_eq!(
            day_start(ny, d(2026, 3, 9)) - day_start(ny, d(2026, 3, 8)),
            TimeDelta::hours(23)
        );
        assert_eq!(
            month_in(ny, at("2026-12-01T03:00:00Z")),
            (at("2026-11-01T04:00:00Z"), at("2026-12-01T05:00:00Z"))
        );
        // Midnight that does not exist (Havana springs forward at 00:00): the day starts at 01:00.
        let havana = zone("America/Havana").expect("havana");
        assert_eq!(day_start(havana, d(2026, 3, 8)), at("2026-03-08T05:00:00Z"));
        let kolkata = zone("Asia/Kolkata").expect("kolkata");
        assert_eq!(
            day_start(kolkata, d(2026, 12, 1)),
            at("2026-11-30T18:30:00Z")
        );
    }
}

//! Calendar and money helpers shared by billing and the read API: the UTC calendar month holding
//! an instant (a billing period, a budget month), its `YYYY-MM` name, exact day counts, cents.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeZone, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

/// The UTC calendar month holding `t`: its start and the next one's.
pub fn month(t: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let first = NaiveDate::from_ymd_opt(t.year(), t.month(), 1).unwrap_or_default();
    let next = first.checked_add_months(Months::new(1)).unwrap_or(first);
    let at = |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).unwrap_or_default());
    (at(first), at(next))
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
}

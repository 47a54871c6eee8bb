//! `--since` / `--until` values: RFC 3339, a date, or an age such as `7d`.

use chrono::{DateTime, Duration, NaiveDate, Utc};

use super::AuditError;

/// Parses `2026-11-01T12:00:00Z`, `2026-11-01` (midnight UTC) or an age before `now`
/// (`90m`, `24h`, `7d`, `2w`).
pub fn parse_instant(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, AuditError> {
    let invalid = || AuditError::InvalidTime(text.to_owned());
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(d) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc())
            .ok_or_else(invalid);
    }
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (digits, unit) = text.split_at(unit_at);
    let n: i64 = digits.parse().map_err(|_| invalid())?;
    let age = match unit {
        "s" => Duration::try_seconds(n),
        "m" => Duration::try_minutes(n),
        "h" => Duration::try_hours(n),
        "d" => Duration::try_days(n),
        "w" => Duration::try_weeks(n),
        _ => None,
    }
    .ok_or_else(invalid)?;
    now.checked_sub_signed(age).ok_or_else(invalid)
}

/// A timestamp as printed in tables: RFC 3339, UTC, whole seconds.
pub fn format_instant(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn accepts_rfc3339_dates_and_ages() {
        let now = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        assert_eq!(
            parse_instant("2026-11-01T10:00:00+02:00", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 8, 0, 0).unwrap()
        );
        assert_eq!(
            parse_instant("2026-11-01", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
        );
        assert_eq!(
            parse_instant("7d", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 15, 12, 0, 0).unwrap()
        );
        assert_eq!(
            parse_instant("90m", now).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 22, 10, 30, 0).unwrap()
        );
        for bad in ["", "d", "7y", "yesterday", "2026-13-01"] {
            assert!(parse_instant(bad, now).is_err(), "{bad}");
        }
    }
}

//! Crash times as people read them.

use core::fmt;

/// Seconds since the epoch (VMCOREINFO's `CRASHTIME`, the header's `crash_time`) as
/// `YYYY-MM-DD HH:MM:SS UTC`; any `i64`, however absurd, prints.
pub struct UtcTime(pub i64);

impl fmt::Display for UtcTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.0.div_euclid(86_400);
        let secs = self.0.rem_euclid(86_400);
        // Howard Hinnant's civil_from_days, in i128 so that no i64 input overflows.
        let z = i128::from(days) + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i128::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::UtcTime;

    #[test]
    fn utc_time() {
        assert_eq!(UtcTime(0).to_string(), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            UtcTime(1_700_000_000).to_string(),
            "2023-11-14 22:13:20 UTC"
        );
        assert_eq!(UtcTime(-1).to_string(), "1969-12-31 23:59:59 UTC");
        assert_eq!(UtcTime(951_782_400).to_string(), "2000-02-29 00:00:00 UTC");
        // Absurd values from old memory still print.
        assert!(!UtcTime(i64::MIN).to_string().is_empty());
        assert!(!UtcTime(i64::MAX).to_string().is_empty());
    }
}

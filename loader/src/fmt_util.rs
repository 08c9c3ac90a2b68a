//! Small formatting helpers for human-readable output.

/// "N bytes (X.Y MiB)".
pub fn size(bytes: u64) -> String {
    // Only for display: precision loss above 2^53 bytes is irrelevant.
    let mib = bytes as f64 / f64::from(1u32 << 20);
    format!("{bytes} bytes ({mib:.1} MiB)")
}

/// Lower-case hex of a byte string (a SHA-256): the one definition every crate
/// shares. Device ids use [`minicap_dumpheader::DeviceIdHex`] (built on it).
pub use minicap_physmem::Hex;

/// A CRASHTIME value as "YYYY-MM-DD HH:MM:SS UTC (secs)", or "unknown" for 0.
pub fn crash_time(secs: i64) -> String {
    if secs == 0 {
        return "unknown".to_owned();
    }
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC ({secs})",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's algorithm).
/// Wide arithmetic keeps it overflow-free for every `i64` seconds value.
fn civil_from_days(days: i64) -> (i128, i128, i128) {
    let z = i128::from(days) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(crash_time(0), "unknown");
        assert_eq!(crash_time(1), "1970-01-01 00:00:01 UTC (1)");
        assert_eq!(
            crash_time(1_700_000_000),
            "2023-11-14 22:13:20 UTC (1700000000)"
        );
        assert_eq!(
            crash_time(951_782_400),
            "2000-02-29 00:00:00 UTC (951782400)"
        );
        assert_eq!(crash_time(-1), "1969-12-31 23:59:59 UTC (-1)");
        // Extremes must not panic.
        let _ = crash_time(i64::MAX);
        let _ = crash_time(i64::MIN);
    }

    #[test]
    fn sizes() {
        assert_eq!(size(3 << 20), "3145728 bytes (3.0 MiB)");
        assert_eq!(Hex(&[0, 0xab]).to_string(), "00ab");
    }
}

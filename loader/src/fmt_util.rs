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
    format!("{} ({secs})", minicap_dumpheader::UtcTime(secs))
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

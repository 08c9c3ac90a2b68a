//! The upper bound on the whole capture (`minicap.timeout=`), on top of the per-operation
//! deadlines of the drivers.
//!
//! Every device command already has a deadline, so no single wait hangs; but a device that
//! answers each command just in time, or a run of retries, can still stretch a capture for
//! hours while the server stays down. The bound is measured from minicap's entry on the
//! clock the writer's [`WriterEnv::now_us`](crate::writer::WriterEnv::now_us) reads, and
//! checked where the writers loop: between the pieces of the whole ELF vmcore, between the
//! file writes of the staged formats and of the serial stream, and once before the first
//! write. When it has passed, no new write starts; what the device confirmed is kept and
//! recorded in the header, and the run takes its after-dump action.

use crate::Failure;

/// The bound on the whole capture: `seconds` after minicap's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeLimit {
    /// Seconds from entry.
    pub seconds: u64,
}

impl TimeLimit {
    /// The bound, in microseconds since entry.
    pub fn limit_us(self) -> u64 {
        self.seconds.saturating_mul(1_000_000)
    }

    /// `Ok` while `now_us` (microseconds since entry) is within the bound; else the
    /// failure that says so. `writing`: whether the dump area may already hold part of the
    /// dump (it decides what the failure says was left on the device).
    pub fn check(self, now_us: u64, writing: bool) -> Result<(), Failure> {
        if now_us < self.limit_us() {
            return Ok(());
        }
        Err(Failure::TimedOut {
            elapsed_us: now_us,
            limit_s: self.seconds,
            writing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceEffect;
    use minicap_dumpheader::FailureCode;

    #[test]
    fn within_and_past_the_bound() {
        let limit = TimeLimit { seconds: 2 };
        assert!(limit.check(0, true).is_ok());
        assert!(limit.check(1_999_999, true).is_ok());
        let failure = limit.check(2_000_000, true).unwrap_err();
        assert_eq!(failure.code(), FailureCode::Timeout);
        assert_eq!(failure.effect(), Some(DeviceEffect::PartialDump));
        assert_eq!(
            failure.to_string(),
            "the capture ran past its time limit: 2.000 s since minicap started, limit 2 s \
             (minicap.timeout=); no further write was started, what the device confirmed is kept"
        );
        let before = limit.check(2_500_000, false).unwrap_err();
        assert_eq!(before.effect(), Some(DeviceEffect::NothingWritten));
        assert!(
            before.to_string().ends_with("; nothing was written"),
            "{before}"
        );
    }

    #[test]
    fn an_absurd_bound_saturates() {
        let limit = TimeLimit { seconds: u64::MAX };
        assert_eq!(limit.limit_us(), u64::MAX);
        assert!(limit.check(u64::MAX - 1, true).is_ok());
    }
}

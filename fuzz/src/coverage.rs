//! Coverage feedback on the stable toolchain, from LLVM's source-coverage counters.
//!
//! Built with `-C instrument-coverage --cfg fuzz_coverage` (as `cargo xtask fuzz` does), every
//! instrumented function increments 64-bit counters in the `__llvm_prf_cnts` section; the
//! linker brackets that section with `__start___llvm_prf_cnts` and `__stop___llvm_prf_cnts`.
//! The engine zeroes the counters before a run and reads them after it, AFL-style: each
//! counter's hit count is put in a bucket (1, 2, 3, 4-7, 8-15, 16-31, 32-127, 128+) and an
//! input that reaches a counter in a bucket not seen before is kept. Without the cfg the
//! module is inert and the engine relies on outcome signatures alone.

/// Buckets seen per counter, one bit each.
#[derive(Debug, Default)]
pub struct Coverage {
    seen: Vec<u8>,
}

impl Coverage {
    /// Whether this build has counters to read.
    pub fn available() -> bool {
        !counters::get().is_empty()
    }

    /// Zeroes the counters (before a run).
    pub fn reset(&self) {
        counters::reset();
    }

    /// Records the counters of the run that just ended; true if it reached a counter, or a
    /// counter's bucket, that no run before did.
    pub fn update(&mut self) -> bool {
        let counts = counters::get();
        if self.seen.len() != counts.len() {
            self.seen.resize(counts.len(), 0);
        }
        let mut new = false;
        for (seen, &count) in self.seen.iter_mut().zip(counts) {
            if count != 0 {
                let bit = bucket(count);
                if *seen & bit == 0 {
                    *seen |= bit;
                    new = true;
                }
            }
        }
        new
    }

    /// Counters ever reached, and counters in the build.
    pub fn reached(&self) -> (usize, usize) {
        let reached = self.seen.iter().filter(|&&b| b != 0).count();
        (reached, counters::get().len())
    }
}

/// AFL's hit-count classes as one bit each.
fn bucket(count: u64) -> u8 {
    match count {
        0 => 0,
        1 => 1,
        2 => 2,
        3 => 4,
        4..=7 => 8,
        8..=15 => 16,
        16..=31 => 32,
        32..=127 => 64,
        _ => 128,
    }
}

#[cfg(fuzz_coverage)]
mod counters {
    extern "C" {
        static __start___llvm_prf_cnts: u64;
        static __stop___llvm_prf_cnts: u64;
    }

    fn bounds() -> (*const u64, usize) {
        let start = &raw const __start___llvm_prf_cnts;
        let stop = &raw const __stop___llvm_prf_cnts;
        // SAFETY: both symbols bracket the one counter section the linker laid out, so they
        // are in the same object and `stop` is not below `start`.
        let len = unsafe { stop.offset_from(start) };
        (start, usize::try_from(len).unwrap_or(0))
    }

    /// The counters, as of now.
    pub fn get() -> &'static [u64] {
        let (start, len) = bounds();
        // SAFETY: the section holds `len` aligned u64 counters for the program's lifetime.
        // The instrumented code increments them only on this (the fuzzing) thread, never while
        // this slice is read; the watchdog thread reads no counters.
        unsafe { std::slice::from_raw_parts(start, len) }
    }

    /// Zeroes every counter.
    pub fn reset() {
        let (start, len) = bounds();
        // SAFETY: as in `get`: `len` counters are writable data of this program, and nothing
        // holds a slice of them across this call (`update` ends before the next run starts).
        unsafe { std::ptr::write_bytes(start.cast_mut(), 0, len) };
    }
}

#[cfg(not(fuzz_coverage))]
mod counters {
    pub fn get() -> &'static [u64] {
        &[]
    }

    pub fn reset() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_distinct_bits_and_monotonic() {
        let classes: Vec<u8> = [1, 2, 3, 4, 8, 16, 32, 128].map(bucket).to_vec();
        assert_eq!(classes, [1, 2, 4, 8, 16, 32, 64, 128]);
        assert_eq!(bucket(7), 8);
        assert_eq!(bucket(u64::MAX), 128);
        assert_eq!(bucket(0), 0);
    }
}

//! One fuzz target per parser of crashed-kernel or user input. Each takes the fuzzer's bytes,
//! drives the parser the way its caller does, and returns a signature of the outcome (see
//! [`crate::engine`]). A target must not panic itself: any panic is the parser's.

mod bootparams;
mod bzimage;
mod cmdline;
mod dumpheader;
mod elfcore;
pub(crate) mod printk;
mod serialstream;
mod vmcoreinfo;

use std::hash::{DefaultHasher, Hash, Hasher};

/// A named entry point with its mutation hints.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name on the command line and under `fuzz/corpus/` and `fuzz/crashes/`.
    pub name: &'static str,
    /// What it feeds.
    pub about: &'static str,
    /// Runs the parser on one input and returns the outcome's signature.
    pub run: fn(&[u8]) -> u64,
    /// Magic values and keys the mutator may insert.
    pub dictionary: &'static [&'static [u8]],
    /// Longest input worth generating.
    pub max_len: usize,
}

/// Every target, in the order `cargo xtask fuzz` runs them.
pub const ALL: &[Target] = &[
    bootparams::TARGET,
    cmdline::TARGET,
    elfcore::TARGET,
    vmcoreinfo::TARGET,
    dumpheader::TARGET,
    serialstream::TARGET,
    printk::TARGET,
    bzimage::TARGET,
];

/// The target called `name`.
pub fn by_name(name: &str) -> Option<&'static Target> {
    ALL.iter().find(|t| t.name == name)
}

/// Hashes what a target observed into its signature.
pub(crate) fn signature(parts: impl Hash) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}

/// Counts up to a small bucket (0, 1, 2, 3-4, 5-8, ...), so that signatures tell "more
/// records" apart without every count being new.
pub(crate) fn bucket(n: usize) -> u32 {
    usize::BITS - n.leading_zeros()
}

/// [`bucket`] of a 64-bit count.
pub(crate) fn bucket_u64(n: u64) -> u32 {
    u64::BITS - n.leading_zeros()
}

/// The bytes of `input` at `addr..addr + buf.len()` as physical memory starting at 0, for the
/// closure-based readers (`setup_data`).
pub(crate) fn read_at(input: &[u8], addr: u64, buf: &mut [u8]) -> Result<(), ()> {
    let start = usize::try_from(addr).map_err(|_| ())?;
    let end = start.checked_add(buf.len()).ok_or(())?;
    buf.copy_from_slice(input.get(start..end).ok_or(())?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// The committed seeds run cleanly and reach different outcomes, i.e. they are not all
    /// rejected at the first check (which would make the corpus worthless).
    #[test]
    fn every_target_has_seeds_with_distinct_outcomes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for target in ALL {
            let seeds = crate::engine::read_corpus(&root.join(target.name)).unwrap();
            assert!(seeds.len() >= 2, "{}: {} seeds", target.name, seeds.len());
            let signatures: std::collections::HashSet<u64> =
                seeds.iter().map(|s| (target.run)(s)).collect();
            assert!(
                signatures.len() >= 2,
                "{}: every seed has the same outcome",
                target.name
            );
        }
    }

    #[test]
    fn names_are_unique_and_found() {
        let names: std::collections::HashSet<&str> = ALL.iter().map(|t| t.name).collect();
        assert_eq!(names.len(), ALL.len());
        assert!(ALL
            .iter()
            .all(|t| by_name(t.name).unwrap().about == t.about));
        assert!(by_name("nonesuch").is_none());
    }
}

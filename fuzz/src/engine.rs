//! The fuzz loop: seeds from `fuzz/corpus/<target>/`, mutated at random; every run under
//! `catch_unwind`, the time limit and the heap limit ([`crate::limits`]); a panicking input
//! saved to `fuzz/crashes/<target>/` and reported once per panic location.
//!
//! An input joins the in-memory corpus, to be mutated further, if it reached new code
//! ([`crate::coverage`], in a build with coverage counters) or if the parser concluded
//! something new: each target returns a signature of its outcome (which error, how many
//! records), the only guidance in a build without counters.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fs;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::coverage::Coverage;
use crate::limits::{self, CURRENT};
use crate::mutate::mutate;
use crate::rng::Rng;
use crate::targets::Target;

/// Most inputs kept in memory per target.
const MAX_CORPUS: usize = 4096;

/// How one target is fuzzed.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Wall time for the target.
    pub duration: Duration,
    /// PRNG seed.
    pub seed: u64,
    /// `fuzz/corpus` (one directory per target).
    pub corpus_root: PathBuf,
    /// `fuzz/crashes` (one directory per target).
    pub crash_root: PathBuf,
    /// Heap bytes one run may allocate.
    pub heap_limit: usize,
}

/// What a target's run found.
#[derive(Debug, Default)]
pub struct Report {
    /// Inputs run.
    pub runs: u64,
    /// Seeds read from the corpus directory.
    pub seeds: usize,
    /// Distinct signatures seen.
    pub signatures: usize,
    /// Coverage counters reached and in the build (0 and 0 without counters).
    pub counters: (usize, usize),
    /// Inputs in memory at the end.
    pub corpus: usize,
    /// One line per distinct panic location: message and saved input.
    pub failures: Vec<String>,
}

/// Runs `target` for `settings.duration`.
pub fn fuzz(target: &Target, settings: &Settings) -> io::Result<Report> {
    let crash_dir = settings.crash_root.join(target.name);
    let mut corpus = read_corpus(&settings.corpus_root.join(target.name))?;
    let mut report = Report {
        seeds: corpus.len(),
        ..Report::default()
    };
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let mut seen_signatures = HashSet::new();
    let mut seen_panics: HashMap<String, PathBuf> = HashMap::new();
    let mut rng = Rng::new(settings.seed);
    let started = Instant::now();

    let mut coverage = Coverage::default();
    // An input's outcome: its signature and whether it reached new code; None if it failed.
    let mut check = |input: &[u8], report: &mut Report| -> Option<(u64, bool)> {
        report.runs += 1;
        coverage.reset();
        let result = run_one(target, &crash_dir, input, settings.heap_limit);
        let new_code = coverage.update();
        report.counters = coverage.reached();
        match result {
            Ok(signature) => Some((signature, new_code)),
            Err(message) => {
                if let Entry::Vacant(slot) = seen_panics.entry(message) {
                    let saved = save_failure(&crash_dir, "panic", input)
                        .unwrap_or_else(|e| PathBuf::from(format!("(not saved: {e})")));
                    report
                        .failures
                        .push(format!("{}\n    input: {}", slot.key(), saved.display()));
                    slot.insert(saved);
                }
                None
            }
        }
    };

    for seed in &corpus {
        if let Some((signature, _)) = check(seed, &mut report) {
            seen_signatures.insert(signature);
        }
    }
    while started.elapsed() < settings.duration {
        // Check the clock every few hundred runs only: Instant::now is not free.
        for _ in 0..256 {
            let parent = &corpus[rng.below(corpus.len())];
            let mut child = parent.clone();
            mutate(
                &mut rng,
                &mut child,
                &corpus,
                target.dictionary,
                target.max_len,
            );
            if let Some((signature, new_code)) = check(&child, &mut report) {
                let new_outcome = seen_signatures.insert(signature);
                // Outcomes can be many (every combination of warnings): they may fill only
                // half the corpus, so that inputs reaching new code always find room.
                let room = if new_code { MAX_CORPUS } else { MAX_CORPUS / 2 };
                if (new_code || new_outcome) && corpus.len() < room {
                    corpus.push(child);
                }
            }
        }
    }
    report.signatures = seen_signatures.len();
    report.corpus = corpus.len();
    Ok(report)
}

/// Runs `target` once on `input`: its signature, or the panic's message and location.
pub fn run_one(
    target: &Target,
    crash_dir: &Path,
    input: &[u8],
    heap_limit: usize,
) -> Result<u64, String> {
    {
        let mut current = CURRENT.lock().unwrap_or_else(|e| e.into_inner());
        current.target = target.name;
        if current.crash_dir.as_deref() != Some(crash_dir) {
            current.crash_dir = Some(crash_dir.to_path_buf());
        }
        current.input.clear();
        current.input.extend_from_slice(input);
    }
    limits::arm(heap_limit);
    let result = panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    limits::disarm();
    result.map_err(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-string panic payload)".into());
        let location = LAST_PANIC_LOCATION.with(|l| l.take()).unwrap_or_default();
        format!("panicked at {location}: {message}")
    })
}

thread_local! {
    static LAST_PANIC_LOCATION: std::cell::RefCell<Option<String>> =
        const { std::cell::RefCell::new(None) };
}

/// Replaces the default panic message (one per failing input would flood the terminal) with
/// a hook that only remembers where the panic happened.
pub fn quiet_panics() {
    panic::set_hook(Box::new(|info| {
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        LAST_PANIC_LOCATION.with(|l| *l.borrow_mut() = Some(location));
    }));
}

/// Writes `input` to `dir/<kind>-<hash>` and returns that path.
pub fn save_failure(dir: &Path, kind: &str, input: &[u8]) -> io::Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let mut h = DefaultHasher::new();
    input.hash(&mut h);
    let path = dir.join(format!("{kind}-{:016x}", h.finish()));
    fs::write(&path, input)?;
    Ok(path)
}

/// Every regular file of `dir`, in name order (missing directory: no seeds).
pub fn read_corpus(dir: &Path) -> io::Result<Vec<Vec<u8>>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<io::Result<_>>()?;
    paths.retain(|p| p.is_file());
    paths.sort();
    paths.iter().map(fs::read).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics_on_zz(input: &[u8]) -> u64 {
        assert!(!input.windows(2).any(|w| w == b"zz"), "found zz");
        input.len() as u64 % 3
    }

    /// The engine finds a planted bug, saves the input once per panic location, and grows
    /// its corpus from new outcomes.
    #[test]
    fn finds_a_planted_panic_and_saves_the_input() {
        let dir = std::env::temp_dir().join(format!("minicap-fuzz-test-{}", std::process::id()));
        let corpus_root = dir.join("corpus");
        fs::create_dir_all(corpus_root.join("planted")).unwrap();
        fs::write(corpus_root.join("planted").join("seed"), b"abcdefgz").unwrap();
        let target = Target {
            name: "planted",
            about: "test",
            run: panics_on_zz,
            dictionary: &[b"z"],
            max_len: 64,
        };
        let settings = Settings {
            duration: Duration::from_millis(500),
            seed: 3,
            corpus_root,
            crash_root: dir.join("crashes"),
            heap_limit: 1 << 20,
        };
        quiet_panics();
        let report = fuzz(&target, &settings).unwrap();
        let _ = panic::take_hook();
        assert_eq!(report.seeds, 1);
        assert!(report.runs > 100);
        assert_eq!(report.failures.len(), 1, "{:?}", report.failures);
        assert!(report.failures[0].contains("found zz"));
        let saved = read_corpus(&dir.join("crashes").join("planted")).unwrap();
        assert!(!saved.is_empty());
        assert!(saved.iter().all(|s| s.windows(2).any(|w| w == b"zz")));
        assert!(report.signatures >= 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}

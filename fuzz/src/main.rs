//! `minicap-fuzz [--seconds N] [--seed S] [TARGET...]`: fuzz each target (all by default) for
//! N seconds; `minicap-fuzz replay TARGET FILE...`: run saved inputs once, panics shown;
//! `minicap-fuzz list`; `minicap-fuzz make-seeds`: regenerate the generated seeds. Exit status 1 if an input failed, 3 if one hung or allocated
//! without bound (it is saved first), 2 on a usage error.
//!
//! Build it with `--profile fuzz` (as `cargo xtask fuzz` does): the workspace's other
//! profiles abort on panic, and `catch_unwind` needs unwinding.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minicap_fuzz::engine::{self, Settings};
use minicap_fuzz::limits::{self, LimitedAlloc};
use minicap_fuzz::targets::{self, Target};

#[global_allocator]
static ALLOC: LimitedAlloc = LimitedAlloc;

/// Longest one input may run.
const TIME_LIMIT: Duration = Duration::from_secs(2);
/// Heap one input may allocate. The parsers' own bounds are 1 MiB of program headers and
/// 16 MiB of notes; anything near this is unbounded.
const HEAP_LIMIT: usize = 256 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("minicap-fuzz: {message}\n\n{}", usage());
            ExitCode::from(2)
        }
    }
}

fn usage() -> String {
    let mut s = String::from(
        "usage: minicap-fuzz [--seconds N] [--seed S] [TARGET...]\n       minicap-fuzz replay TARGET FILE...\n       minicap-fuzz list\n\ntargets:\n",
    );
    for t in targets::ALL {
        s.push_str(&format!("  {:13} {}\n", t.name, t.about));
    }
    s
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    if cfg!(panic = "abort") {
        return Err("built with panic=abort: build with `--profile fuzz`".into());
    }
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    match args.first().map(String::as_str) {
        Some("list") => {
            print!("{}", usage());
            Ok(ExitCode::SUCCESS)
        }
        Some("replay") => replay(&fuzz_dir, &args[1..]),
        Some("make-seeds") => {
            minicap_fuzz::seeds::make_seeds(&fuzz_dir.join("corpus")).map_err(|e| e.to_string())?;
            Ok(ExitCode::SUCCESS)
        }
        _ => fuzz(&fuzz_dir, args),
    }
}

fn target(name: &str) -> Result<&'static Target, String> {
    targets::by_name(name).ok_or_else(|| format!("no target {name:?}"))
}

fn fuzz(fuzz_dir: &std::path::Path, args: &[String]) -> Result<ExitCode, String> {
    let mut seconds = 10u64;
    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut chosen = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut number = |what: &str| -> Result<u64, String> {
            it.next()
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| format!("{what} needs a number"))
        };
        match arg.as_str() {
            "--seconds" => seconds = number("--seconds")?,
            "--seed" => seed = number("--seed")?,
            name => chosen.push(target(name)?),
        }
    }
    if chosen.is_empty() {
        chosen = targets::ALL.iter().collect();
    }
    engine::quiet_panics();
    limits::start_watchdog(TIME_LIMIT);
    let mut failed = false;
    for t in chosen {
        let settings = Settings {
            duration: Duration::from_secs(seconds),
            seed,
            corpus_root: fuzz_dir.join("corpus"),
            crash_root: fuzz_dir.join("crashes"),
            heap_limit: HEAP_LIMIT,
        };
        let report = engine::fuzz(t, &settings).map_err(|e| format!("{}: {e}", t.name))?;
        let (reached, counters) = report.counters;
        let coverage = if counters == 0 {
            "no coverage counters".to_string()
        } else {
            format!("{reached} of {counters} counters reached")
        };
        println!(
            "fuzz {:13} seed {seed}: {} runs in {seconds} s ({}/s), {} seeds, corpus {}, {} outcomes, {coverage}, {} failures",
            t.name,
            report.runs,
            report.runs / seconds.max(1),
            report.seeds,
            report.corpus,
            report.signatures,
            report.failures.len()
        );
        for f in &report.failures {
            println!("  FAILED: {f}");
        }
        failed |= !report.failures.is_empty();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn replay(fuzz_dir: &std::path::Path, args: &[String]) -> Result<ExitCode, String> {
    let (name, files) = args.split_first().ok_or("replay needs a target")?;
    let t = target(name)?;
    limits::start_watchdog(TIME_LIMIT);
    let mut failed = false;
    for file in files {
        let input = std::fs::read(file).map_err(|e| format!("{file}: {e}"))?;
        // The default panic hook stays: replay is for reading the message and backtrace.
        match engine::run_one(
            t,
            &fuzz_dir.join("crashes").join(t.name),
            &input,
            HEAP_LIMIT,
        ) {
            Ok(signature) => println!("{file}: ok (outcome {signature:016x})"),
            Err(message) => {
                println!("{file}: FAILED: {message}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

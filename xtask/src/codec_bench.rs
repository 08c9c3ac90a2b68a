//! `cargo xtask codec-bench [--mib N] [--passes P]`: the measurement behind the default of
//! `minicap.compress=` (README), reproducible.
//!
//! Builds `bench/codec` in release mode and runs it on the real vmcore left by an end-to-end
//! run (`$MINICAP_REAL_VMCORE_DIR`, default `/tmp/kdump-real`): natively over every RAM page
//! (the ratios and the native speed), then, when `qemu-x86_64` (Debian package qemu-user) is
//! on the PATH, under `qemu-x86_64 -cpu max` and `-cpu qemu64` over an evenly strided sample
//! of `N` MiB (default 256): user-mode TCG translates the same instructions the capture kernel
//! runs under `qemu-system-x86_64` without KVM. Prints a Markdown table.
//!
//! Under `-cpu max` glibc picks AVX2 versions of `memset`/`memcpy`, which TCG runs several
//! times slower than plain code; zlib (which clears about 100 KiB of tables per page) drops
//! from about 20 to 4 MiB/s with them. The capture kernel has no glibc (its `memset` is
//! compiler_builtins'), so one more `-cpu max` run turns those versions off through
//! `GLIBC_TUNABLES`: that column is the closest to the capture kernel under TCG.

use std::process::Command;

use crate::checksum_bench::{cpu_model, find_in_path, qemu_version};
use crate::{cargo, root, run};

/// glibc's CPU features that select its AVX/ERMS string functions, turned off.
const PLAIN_STRING_FUNCTIONS: &str = "glibc.cpu.hwcaps=-AVX2,-AVX,-ERMS,-AVX512F,-EVEX";

/// One method's line of the benchmark's output.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    name: String,
    /// Over the non-zero pages; `None` for "none" (nothing to time).
    mib_per_s: Option<f64>,
    ratio_all: f64,
    ratio_nonzero: f64,
    shrunk_percent: f64,
}

pub fn codec_bench(args: &[String]) -> Result<(), String> {
    let (mut tcg_mib, mut passes) = ("256".to_owned(), "1".to_owned());
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match (arg.as_str(), it.next()) {
            ("--mib", Some(v)) if v.parse::<usize>().is_ok() => tcg_mib.clone_from(v),
            ("--passes", Some(v)) if v.parse::<u32>().is_ok_and(|p| p > 0) => passes.clone_from(v),
            _ => return Err("usage: cargo xtask codec-bench [--mib N] [--passes P]".into()),
        }
    }
    run(cargo().args(["build", "--release", "-p", "minicap-codec-bench"]))?;
    let bench = root().join("target/release/codec-bench");
    let native = measure(Command::new(&bench).args(["--mib", "0", "--passes", &passes]))?;
    let mut columns = vec![("native, all pages".to_owned(), native.clone())];
    match find_in_path("qemu-x86_64") {
        Some(qemu) => {
            for (cpu, tunables, what) in [
                ("max", None, ""),
                ("max", Some(PLAIN_STRING_FUNCTIONS), ", no AVX memset"),
                ("qemu64", None, ""),
            ] {
                let mut cmd = Command::new(&qemu);
                cmd.args(["-cpu", cpu])
                    .arg(&bench)
                    .args(["--mib", &tcg_mib, "--passes", &passes]);
                if let Some(t) = tunables {
                    cmd.env("GLIBC_TUNABLES", t);
                }
                columns.push((
                    format!("TCG `-cpu {cpu}`{what}, {tcg_mib} MiB"),
                    measure(&mut cmd)?,
                ));
            }
        }
        None => eprintln!(
            "xtask: qemu-x86_64 not found (Debian package qemu-user): native figures only"
        ),
    }
    println!("CPU: {}", cpu_model().unwrap_or_else(|| "unknown".into()));
    if let Some(version) = qemu_version() {
        println!("QEMU: {version}");
    }
    println!();
    print!("{}", markdown_table(&native, &columns));
    Ok(())
}

fn measure(cmd: &mut Command) -> Result<Vec<Row>, String> {
    eprintln!("+ {cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{cmd:?} failed with {}", out.status));
    }
    parse_rows(&String::from_utf8_lossy(&out.stdout))
}

/// The benchmark's output: `NAME<TAB>MiB/s or n/a<TAB>ratio all<TAB>ratio non-zero<TAB>% shrunk`.
fn parse_rows(text: &str) -> Result<Vec<Row>, String> {
    text.lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            let [name, speed, all, nonzero, shrunk] = fields[..] else {
                return Err(format!("unexpected benchmark output line {line:?}"));
            };
            let number = |v: &str| {
                v.parse::<f64>()
                    .map_err(|e| format!("bad number {v:?} in {line:?}: {e}"))
            };
            Ok(Row {
                name: name.to_owned(),
                mib_per_s: match speed {
                    "n/a" => None,
                    v => Some(number(v)?),
                },
                ratio_all: number(all)?,
                ratio_nonzero: number(nonzero)?,
                shrunk_percent: number(shrunk)?,
            })
        })
        .collect()
}

/// One row per method: the ratios of the native run over every page, then one speed
/// column per run.
fn markdown_table(ratios: &[Row], speeds: &[(String, Vec<Row>)]) -> String {
    let mut out = String::from(
        "| method (4 KiB pages) | ratio, all pages | ratio, non-zero pages | non-zero pages that shrink |",
    );
    for (title, _) in speeds {
        out += &format!(" {title} MiB/s |");
    }
    out += "\n|---|---:|---:|---:|";
    out += &"---:|".repeat(speeds.len());
    out += "\n";
    for row in ratios {
        out += &format!(
            "| {} | {:.2} | {:.2} | {:.0} % |",
            row.name, row.ratio_all, row.ratio_nonzero, row.shrunk_percent
        );
        for (_, rows) in speeds {
            let cell = match rows.iter().find(|r| r.name == row.name) {
                Some(Row {
                    mib_per_s: Some(rate),
                    ..
                }) => format!("{rate:.0}"),
                Some(_) => "n/a".into(),
                None => "-".into(),
            };
            out += &format!(" {cell} |");
        }
        out += "\n";
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_benchmark_output() {
        let rows =
            parse_rows("none\tn/a\t1.000\t1.000\t0.0\nlzo\t492.2\t8.252\t1.647\t59.6\n").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].mib_per_s, None);
        assert_eq!(
            rows[1],
            Row {
                name: "lzo".into(),
                mib_per_s: Some(492.2),
                ratio_all: 8.252,
                ratio_nonzero: 1.647,
                shrunk_percent: 59.6
            }
        );
        assert!(parse_rows("lzo\t1\t2\t3").is_err());
        assert!(parse_rows("lzo\tfast\t1\t1\t1").is_err());
    }

    #[test]
    fn table_has_the_native_ratios_and_a_speed_column_per_run() {
        let row = |name: &str, speed| Row {
            name: name.into(),
            mib_per_s: speed,
            ratio_all: 8.0,
            ratio_nonzero: 1.5,
            shrunk_percent: 60.0,
        };
        let native = vec![row("none", None), row("lzo", Some(500.4))];
        let tcg = vec![row("lzo", Some(40.0))];
        assert_eq!(
            markdown_table(&native, &[("native".into(), native.clone()), ("TCG".into(), tcg)]),
            "| method (4 KiB pages) | ratio, all pages | ratio, non-zero pages | non-zero pages that shrink | native MiB/s | TCG MiB/s |\n\
             |---|---:|---:|---:|---:|---:|\n\
             | none | 8.00 | 1.50 | 60 % | n/a | - |\n\
             | lzo | 8.00 | 1.50 | 60 % | 500 | 40 |\n"
        );
    }
}

//! `cargo xtask checksum-bench [--mib N] [--passes P]`: the measurement behind the choice of
//! XXH64 per chunk (README, "Integrity check"), reproducible.
//!
//! Builds `bench/checksum` in release mode and runs it natively and, when `qemu-x86_64`
//! (Debian package qemu-user, not installed by `qemu/install-deps.sh`) is on the PATH, under
//! `qemu-x86_64 -cpu max` and `-cpu qemu64`: user-mode TCG translates the same instructions
//! the capture kernel runs under `qemu-system-x86_64` without KVM. Prints a Markdown table
//! of MiB/s per algorithm.

use std::path::PathBuf;
use std::process::Command;

use crate::{cargo, root, run};

/// Where and how the benchmark ran: a column of the table.
struct Column {
    title: String,
    /// `name -> MiB/s`, `None` where the CPU lacks the instruction.
    results: Vec<(String, Option<f64>)>,
}

pub fn checksum_bench(args: &[String]) -> Result<(), String> {
    run(cargo().args(["build", "--release", "-p", "minicap-checksum-bench"]))?;
    let bench = root().join("target/release/checksum-bench");
    let mut columns = vec![Column {
        title: "native".into(),
        results: measure(Command::new(&bench).args(args))?,
    }];
    match find_in_path("qemu-x86_64") {
        Some(qemu) => {
            for cpu in ["max", "qemu64"] {
                let mut cmd = Command::new(&qemu);
                cmd.args(["-cpu", cpu]).arg(&bench).args(args);
                columns.push(Column {
                    title: format!("TCG `-cpu {cpu}`"),
                    results: measure(&mut cmd)?,
                });
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
    print!("{}", markdown_table(&columns));
    Ok(())
}

fn measure(cmd: &mut Command) -> Result<Vec<(String, Option<f64>)>, String> {
    eprintln!("+ {cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse_results(&String::from_utf8_lossy(&out.stdout))
}

/// The benchmark's output: `NAME<TAB>MiB/s` or `NAME<TAB>n/a` per line.
fn parse_results(text: &str) -> Result<Vec<(String, Option<f64>)>, String> {
    text.lines()
        .map(|line| {
            let (name, value) = line
                .split_once('\t')
                .ok_or_else(|| format!("unexpected benchmark output line {line:?}"))?;
            let rate = match value {
                "n/a" => None,
                v => Some(
                    v.parse::<f64>()
                        .map_err(|e| format!("bad rate in {line:?}: {e}"))?,
                ),
            };
            Ok((name.to_owned(), rate))
        })
        .collect()
}

/// One row per algorithm (in the first column's order), one column per run, in MiB/s.
fn markdown_table(columns: &[Column]) -> String {
    let mut out = String::from("| algorithm (1 MiB chunks) |");
    for c in columns {
        out += &format!(" {} MiB/s |", c.title);
    }
    out += "\n|---|";
    out += &"---:|".repeat(columns.len());
    out += "\n";
    let Some(first) = columns.first() else {
        return out;
    };
    for (name, _) in &first.results {
        out += &format!("| {name} |");
        for c in columns {
            let cell = match c.results.iter().find(|(n, _)| n == name) {
                Some((_, Some(rate))) => format!("{rate:.0}"),
                Some((_, None)) => "n/a".into(),
                None => "-".into(),
            };
            out += &format!(" {cell} |");
        }
        out += "\n";
    }
    out
}

pub(crate) fn find_in_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

pub(crate) fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
}

pub(crate) fn qemu_version() -> Option<String> {
    let out = Command::new(find_in_path("qemu-x86_64")?)
        .arg("--version")
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_benchmark_output() {
        let r = parse_results("sha256\t1939\ncrc32c-sse4.2\tn/a\n").unwrap();
        assert_eq!(
            r,
            vec![
                ("sha256".into(), Some(1939.0)),
                ("crc32c-sse4.2".into(), None)
            ]
        );
        assert!(parse_results("garbage").is_err());
        assert!(parse_results("x\tfast").is_err());
    }

    #[test]
    fn table_has_a_row_per_algorithm_and_a_column_per_run() {
        let columns = [
            Column {
                title: "native".into(),
                results: vec![("a".into(), Some(10.4)), ("b".into(), None)],
            },
            Column {
                title: "TCG".into(),
                results: vec![("b".into(), Some(3.0))],
            },
        ];
        assert_eq!(
            markdown_table(&columns),
            "| algorithm (1 MiB chunks) | native MiB/s | TCG MiB/s |\n\
             |---|---:|---:|\n\
             | a | 10 | - |\n\
             | b | n/a | 3 |\n"
        );
    }
}

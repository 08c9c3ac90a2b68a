//! Developer commands for minicap: `cargo xtask build | demo | test | lint | fuzz | bench | matrix |
//! checksum-bench | codec-bench`.
//!
//! * `build`: build the capture kernel and write `target/minicap.elf`,
//!   checking that it is what loaders expect (static PIE, ET_DYN, no
//!   interpreter, one loadable segment, only R_X86_64_RELATIVE relocations),
//!   the same image as `target/minicap.bzImage` (Linux boot protocol + PE/COFF, for
//!   `kexec_file_load` and `sbsign`; `bzimage.rs`),
//!   and the purgatory `minicap load` places before it, `target/purgatory.elf`
//!   (the same checks: the loader applies those relocations), and the host tool
//!   `target/release/minicap` as a static binary (glibc's `libc.a`, `+crt-static`), so that it
//!   runs in an initramfs with no shared libraries (`static_tool.rs`);
//! * `demo`: build, then crash a Linux VM in QEMU and capture it (verbose);
//! * `test`: everything CI runs: fmt, clippy, host unit tests, a short fuzz run
//!   of every parser target, then the QEMU end-to-end scenarios against a real
//!   Linux kernel;
//! * `lint`: fmt and clippy only;
//! * `fuzz [--seconds N] [--seed S] [TARGET...]`: the parser fuzzer (`fuzz/`),
//!   N seconds per target (default 10), every target unless some are named;
//! * `bench`: build, then benchmark minicap against stock kdump in QEMU
//!   (`qemu/benchmark.py`; on demand, not part of `test`);
//! * `matrix`: build, then the crash matrix in QEMU (`qemu/matrix.py`: crash types x contexts x
//!   machine variants, each a verified capture; `--fast` is the subset `test` runs, `--full`
//!   every variant);
//! * `checksum-bench`: checksum throughput natively and under QEMU TCG
//!   (`checksum_bench.rs`);
//! * `codec-bench`: page compression ratio and speed on the real vmcore, natively and under
//!   QEMU TCG (`codec_bench.rs`).

mod bzimage;
mod checksum_bench;
mod codec_bench;
mod static_tool;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use minicap_elfcore::{
    dynamic_entries, relas, FileHeader, Phdr, DT_REL, DT_RELA, DT_RELASZ, DT_RELR, EM_X86_64,
    ET_DYN, PHDR_LEN, PT_DYNAMIC, PT_INTERP, PT_LOAD, R_X86_64_RELATIVE,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build().map(|_| ()),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("lint") => lint(),
        Some("fuzz") => fuzz(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("matrix") => matrix(&args[1..]),
        Some("checksum-bench") => checksum_bench::checksum_bench(&args[1..]),
        Some("codec-bench") => codec_bench::codec_bench(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  build   build target/minicap.elf and target/minicap.bzImage\n  demo    crash a Linux VM in QEMU and capture it with minicap\n  test    fmt, clippy, unit tests and the QEMU end-to-end tests\n  lint    fmt and clippy\n  fuzz [--seconds N] [--seed S] [TARGET...]\n          fuzz the parsers, N seconds per target (`cargo xtask fuzz list` names them)\n  bench   minicap against stock kdump in QEMU (options: cargo xtask bench --help)\n  matrix  the crash matrix in QEMU: crash types x contexts [--fast | --full] (options: --help)\n  checksum-bench [--mib N] [--passes P]\n          checksum throughput natively and under qemu-x86_64\n  codec-bench [--mib N] [--passes P]\n          page compression ratio and speed on the real vmcore, natively and under qemu-x86_64"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(cmd: &mut Command) -> Result<(), String> {
    eprintln!("+ {cmd:?}");
    let status = cmd
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{cmd:?} failed with {status}"))
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// Build the kernel and the host tools; returns the path of minicap.elf.
fn build() -> Result<PathBuf, String> {
    run(cargo().args([
        "build",
        "--release",
        "-p",
        "minicap-kernel",
        "-p",
        "minicap-pattern",
        "-p",
        "minicap-purgatory",
    ]))?;
    let target = root().join("target");
    let built = target.join("release/minicap-purgatory");
    let purgatory = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    check_image(&purgatory).map_err(|e| format!("purgatory: {e}"))?;
    let out = target.join("purgatory.elf");
    std::fs::write(&out, &purgatory).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("built {} ({} bytes)", out.display(), purgatory.len());
    let built = target.join("release/minicap-kernel");
    let image = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    check_image(&image)?;
    let out = target.join("minicap.elf");
    std::fs::write(&out, &image).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("built {} ({} bytes)", out.display(), image.len());
    bzimage::write(&image, &target.join("minicap.bzImage"))?;
    static_tool::build()?;
    Ok(out)
}

/// The properties kexec-tools relies on for an ELF loaded with --args-linux.
fn check_image(elf: &[u8]) -> Result<(), String> {
    let header = FileHeader::read(elf)
        .filter(FileHeader::is_elf64_le)
        .ok_or("not an ELF64 little-endian file")?;
    if header.e_type != ET_DYN {
        return Err("not ET_DYN: the image must be a static PIE".into());
    }
    if header.e_machine != EM_X86_64 {
        return Err("not x86_64".into());
    }
    if usize::from(header.e_phentsize) < PHDR_LEN {
        return Err(format!("e_phentsize {} too small", header.e_phentsize));
    }
    let index = |v: u64| usize::try_from(v).map_err(|e| e.to_string());
    let mut loads = 0;
    let mut dynamic = None;
    for i in 0..u64::from(header.e_phnum) {
        let at = header
            .program_header_offset(i)
            .ok_or("program header table offset overflows")?;
        let ph = elf
            .get(index(at)?..)
            .and_then(Phdr::read)
            .ok_or("program header table outside the file")?;
        match ph.p_type {
            PT_LOAD => loads += 1,
            PT_DYNAMIC => dynamic = Some((ph.p_offset, ph.p_filesz)),
            PT_INTERP => return Err("has PT_INTERP: must not need a dynamic loader".into()),
            _ => {}
        }
    }
    if loads != 1 {
        return Err(format!("{loads} PT_LOAD segments, expected exactly 1"));
    }
    let (dyn_off, dyn_size) = dynamic.ok_or("no PT_DYNAMIC: cannot self-relocate")?;
    let (mut rela, mut relasz) = (None, 0u64);
    let dynamic = dyn_off
        .checked_add(dyn_size)
        .and_then(|end| elf.get(index(dyn_off).ok()?..index(end).ok()?))
        .ok_or("PT_DYNAMIC outside the file")?;
    for entry in dynamic_entries(dynamic) {
        match entry.tag {
            DT_RELA => rela = Some(entry.value),
            DT_RELASZ => relasz = entry.value,
            // Relocation tables entry.S does not apply.
            DT_REL | DT_RELR => {
                return Err(
                    "has DT_REL or DT_RELR relocations: entry.S applies only DT_RELA".into(),
                )
            }
            _ => {}
        }
    }
    if let Some(rela) = rela {
        // The image is linked at 0 with a single segment at file offset 0x1000.
        let file_off = index(rela)? + 0x1000;
        let table = file_off
            .checked_add(index(relasz)?)
            .and_then(|end| elf.get(file_off..end))
            .ok_or("relocation table outside the file")?;
        for r in relas(table) {
            let kind = r.kind();
            if kind != R_X86_64_RELATIVE {
                return Err(format!(
                    "relocation type {kind} at {:#x}: only R_X86_64_RELATIVE is applied at entry",
                    r.offset
                ));
            }
        }
    }
    Ok(())
}

fn e2e_args(image: &Path) -> Vec<String> {
    let target = root().join("target/release");
    vec![
        "--minicap".into(),
        image.display().to_string(),
        "--tool".into(),
        target.join("minicap").display().to_string(),
        "--pattern".into(),
        target.join("minicap-pattern").display().to_string(),
    ]
}

fn demo(extra: &[String]) -> Result<(), String> {
    let image = build()?;
    let mut cmd = Command::new("python3");
    cmd.arg("qemu/e2e.py")
        .args(e2e_args(&image))
        .arg("--verbose")
        .args(extra);
    run(&mut cmd)
}

fn lint() -> Result<(), String> {
    run(cargo().args(["fmt", "--all", "--", "--check"]))?;
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

fn test(extra: &[String]) -> Result<(), String> {
    lint()?;
    run(cargo().args(["test", "--workspace"]))?;
    fuzz(&["--seconds".into(), CI_FUZZ_SECONDS_PER_TARGET.to_string()])?;
    run(Command::new("python3").arg("qemu/test_e2e.py"))?;
    run(Command::new("python3").arg("qemu/test_bench.py"))?;
    run(Command::new("python3").arg("qemu/test_matrix.py"))?;
    let image = build()?;
    let mut cmd = Command::new("bash");
    cmd.arg("qemu/run-all.sh")
        .args(e2e_args(&image))
        .args(extra);
    run(&mut cmd)?;
    // The crash matrix's fast subset (4 crashes: a panic from process context, a NULL
    // dereference in a timer softirq, a hard hang with interrupts off ended by an NMI, and a
    // NULL dereference on two CPUs at once) on the base machine and in x2APIC mode (which
    // takes a QEMU from the release's backports when the system's TCG lacks x2APIC).
    run(Command::new("python3")
        .args([
            "qemu/matrix.py",
            "--fast",
            "--variant",
            "2cpu",
            "--variant",
            "x2apic",
        ])
        .args(e2e_args(&image)))
}

/// The crash matrix; `extra` goes to qemu/matrix.py as it is (`--help` lists the options).
fn matrix(extra: &[String]) -> Result<(), String> {
    if extra
        .iter()
        .any(|a| a == "-h" || a == "--help" || a == "--list")
    {
        return run(Command::new("python3").arg("qemu/matrix.py").args(extra));
    }
    let image = build()?;
    let mut cmd = Command::new("python3");
    cmd.arg("qemu/matrix.py").args(extra).args(e2e_args(&image));
    run(&mut cmd)
}

/// Seconds `test` fuzzes each parser: eight targets make about a minute of CI time.
const CI_FUZZ_SECONDS_PER_TARGET: u64 = 8;

/// The parser fuzzer, built with the `fuzz` profile (unwinding, overflow checks, debug
/// assertions) and LLVM's coverage counters, which guide it (`fuzz/src/coverage.rs`); in a
/// target directory of its own, since the flags apply to every crate. `args` go to it as they
/// are. A failing input is saved under `fuzz/crashes/`.
fn fuzz(args: &[String]) -> Result<(), String> {
    let mut cmd = cargo();
    cmd.args([
        "run",
        "--quiet",
        "-p",
        "minicap-fuzz",
        "--profile",
        "fuzz",
        "--",
    ])
    .args(args)
    .env("RUSTFLAGS", "-C instrument-coverage --cfg fuzz_coverage")
    .env("CARGO_TARGET_DIR", root().join("target/fuzz-coverage"))
    // The counters are read in process; no profile file is wanted at exit.
    .env("LLVM_PROFILE_FILE", "/dev/null");
    run(&mut cmd)
}

/// The side-by-side benchmark against kdump; `extra` goes to
/// qemu/benchmark.py as it is (`--help` lists the options).
fn bench(extra: &[String]) -> Result<(), String> {
    if extra
        .iter()
        .any(|a| a == "-h" || a == "--help" || a == "--list-modes")
    {
        return run(Command::new("python3").arg("qemu/benchmark.py").args(extra));
    }
    let image = build()?;
    // The report names the command as it was typed, not the paths added here.
    let typed = std::iter::once("cargo xtask bench".to_string())
        .chain(extra.iter().map(|a| shell_word(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new("python3");
    cmd.arg("qemu/benchmark.py")
        .args(e2e_args(&image))
        .args(extra)
        .env("MINICAP_BENCH_COMMAND", typed);
    run(&mut cmd)
}

/// `word` quoted for a POSIX shell where it needs it.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal static-PIE-shaped image: ELF header, `types` program headers (the PT_DYNAMIC
    /// one points at `dynamic`), the dynamic section, and a RELA table at file offset 0x1000
    /// holding one relocation of each of `rela_kinds`.
    fn image(e_type: u16, types: &[u32], dynamic: &[(u64, u64)], rela_kinds: &[u64]) -> Vec<u8> {
        let mut elf = vec![0u8; 0x1000];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[6] = 1;
        elf[16..18].copy_from_slice(&e_type.to_le_bytes());
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        let phnum = u16::try_from(types.len()).unwrap();
        elf[56..58].copy_from_slice(&phnum.to_le_bytes());
        let dyn_off = 0x800u64;
        let dyn_len = u64::try_from(dynamic.len() * 16).unwrap();
        for (i, &t) in types.iter().enumerate() {
            let p = 64 + 56 * i;
            elf[p..p + 4].copy_from_slice(&t.to_le_bytes());
            if t == PT_DYNAMIC {
                elf[p + 8..p + 16].copy_from_slice(&dyn_off.to_le_bytes());
                elf[p + 32..p + 40].copy_from_slice(&dyn_len.to_le_bytes());
            }
        }
        for (i, (tag, value)) in dynamic.iter().enumerate() {
            let d = 0x800 + 16 * i;
            elf[d..d + 8].copy_from_slice(&tag.to_le_bytes());
            elf[d + 8..d + 16].copy_from_slice(&value.to_le_bytes());
        }
        for (i, kind) in rela_kinds.iter().enumerate() {
            let mut r = [0u8; 24];
            r[..8].copy_from_slice(&(0x10 * u64::try_from(i).unwrap()).to_le_bytes());
            r[8..16].copy_from_slice(&kind.to_le_bytes());
            elf.extend_from_slice(&r);
        }
        elf
    }

    #[test]
    fn shell_words_are_quoted_only_where_needed() {
        assert_eq!(shell_word("--sizes"), "--sizes");
        assert_eq!(shell_word("1024,2048"), "1024,2048");
        assert_eq!(
            shell_word("minicap.verify=none x"),
            "'minicap.verify=none x'"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn accepts_a_static_pie_and_rejects_each_violation() {
        let relasz = |n: u64| (DT_RELASZ, 24 * n);
        let good = image(
            ET_DYN,
            &[PT_LOAD, PT_DYNAMIC],
            &[(DT_RELA, 0), relasz(2)],
            &[8, 8],
        );
        assert_eq!(check_image(&good), Ok(()));
        let err = |elf: &[u8]| check_image(elf).unwrap_err();
        assert!(err(&good[..63]).contains("not an ELF64"));
        assert!(err(&image(2, &[PT_LOAD, PT_DYNAMIC], &[], &[])).contains("ET_DYN"));
        assert!(
            err(&image(ET_DYN, &[PT_LOAD, PT_LOAD, PT_DYNAMIC], &[], &[])).contains("2 PT_LOAD")
        );
        assert!(err(&image(ET_DYN, &[PT_LOAD], &[], &[])).contains("no PT_DYNAMIC"));
        assert!(
            err(&image(ET_DYN, &[PT_LOAD, PT_DYNAMIC, PT_INTERP], &[], &[])).contains("PT_INTERP")
        );
        assert!(
            err(&image(ET_DYN, &[PT_LOAD, PT_DYNAMIC], &[(DT_RELR, 0)], &[])).contains("DT_RELR")
        );
        assert!(
            err(&image(ET_DYN, &[PT_LOAD, PT_DYNAMIC], &[(DT_REL, 0)], &[])).contains("DT_REL")
        );
        let bad_kind = image(
            ET_DYN,
            &[PT_LOAD, PT_DYNAMIC],
            &[(DT_RELA, 0), relasz(2)],
            &[8, 1],
        );
        assert!(err(&bad_kind).contains("relocation type 1 at 0x10"));
        let beyond = image(
            ET_DYN,
            &[PT_LOAD, PT_DYNAMIC],
            &[(DT_RELA, 0), relasz(3)],
            &[8, 8],
        );
        assert!(err(&beyond).contains("outside the file"));
        let mut machine = good.clone();
        machine[18] = 3;
        assert!(err(&machine).contains("x86_64"));
        let mut table_beyond = good;
        table_beyond[32..40].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert!(err(&table_beyond).contains("outside the file"));
    }
}

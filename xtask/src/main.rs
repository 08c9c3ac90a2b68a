//! Developer commands for minicap: `cargo xtask build | demo | test | lint`.
//!
//! * `build`: build the capture kernel and write `target/minicap.elf`,
//!   checking that it is what loaders expect (static PIE, ET_DYN, no
//!   interpreter, one loadable segment, only R_X86_64_RELATIVE relocations);
//! * `demo`: build, then crash a Linux VM in QEMU and capture it (verbose);
//! * `test`: everything CI runs: fmt, clippy, host unit tests, then the QEMU
//!   end-to-end scenarios against a real Linux kernel;
//! * `lint`: fmt and clippy only.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => build().map(|_| ()),
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("lint") => lint(),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n  build   build target/minicap.elf\n  demo    crash a Linux VM in QEMU and capture it with minicap\n  test    fmt, clippy, unit tests and the QEMU end-to-end tests\n  lint    fmt and clippy"
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
        "minicap",
        "-p",
        "minicap-pattern",
    ]))?;
    let target = root().join("target");
    let built = target.join("release/minicap-kernel");
    let image = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    check_image(&image)?;
    let out = target.join("minicap.elf");
    std::fs::write(&out, &image).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("built {} ({} bytes)", out.display(), image.len());
    Ok(out)
}

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes([b[o], b[o + 1]])
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"))
}

/// The properties kexec-tools relies on for an ELF loaded with --args-linux.
fn check_image(elf: &[u8]) -> Result<(), String> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return Err("not an ELF64 little-endian file".into());
    }
    if u16_at(elf, 16) != 3 {
        return Err("not ET_DYN: the image must be a static PIE".into());
    }
    if u16_at(elf, 18) != 62 {
        return Err("not x86_64".into());
    }
    let phoff = usize::try_from(u64_at(elf, 32)).map_err(|e| e.to_string())?;
    let phnum = usize::from(u16_at(elf, 56));
    let mut loads = 0;
    let mut dynamic = None;
    for i in 0..phnum {
        let ph = &elf[phoff + i * 56..phoff + (i + 1) * 56];
        match u32_at(ph, 0) {
            1 => loads += 1,
            2 => dynamic = Some((u64_at(ph, 8), u64_at(ph, 32))),
            3 => return Err("has PT_INTERP: must not need a dynamic loader".into()),
            _ => {}
        }
    }
    if loads != 1 {
        return Err(format!("{loads} PT_LOAD segments, expected exactly 1"));
    }
    let (dyn_off, dyn_size) = dynamic.ok_or("no PT_DYNAMIC: cannot self-relocate")?;
    let (mut rela, mut relasz) = (None, 0u64);
    let index = |v: u64| usize::try_from(v).map_err(|e| e.to_string());
    let dynamic = elf
        .get(index(dyn_off)?..index(dyn_off + dyn_size)?)
        .ok_or("PT_DYNAMIC outside the file")?;
    for entry in dynamic.chunks_exact(16) {
        match u64_at(entry, 0) {
            7 => rela = Some(u64_at(entry, 8)),
            8 => relasz = u64_at(entry, 8),
            // DT_REL, DT_RELR: relocation tables entry.S does not apply.
            17 | 36 => {
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
        let table = elf
            .get(file_off..file_off + index(relasz)?)
            .ok_or("relocation table outside the file")?;
        for r in table.chunks_exact(24) {
            let kind = u64_at(r, 8) & 0xffff_ffff;
            if kind != 8 {
                return Err(format!(
                    "relocation type {kind} at {:#x}: only R_X86_64_RELATIVE is applied at entry",
                    u64_at(r, 0)
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
    run(Command::new("python3").arg("qemu/test_e2e.py"))?;
    let image = build()?;
    let mut cmd = Command::new("bash");
    cmd.arg("qemu/run-all.sh")
        .args(e2e_args(&image))
        .args(extra);
    run(&mut cmd)
}

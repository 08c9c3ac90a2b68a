//! The host tool `target/release/minicap` as a static binary.
//!
//! `minicap load` must run where kexec-tools is absent: a bare busybox initramfs, an embedded
//! root file system, a rescue shell. A binary linked statically against glibc (`libc.a`, from
//! Debian's libc6-dev, which the Rust toolchain already needs) has no loader and no shared
//! libraries to carry along. The tool needs nothing glibc can only do dynamically: no user or
//! host name lookups through NSS (`minicap receive tcp:HOST:PORT` resolves through
//! `getaddrinfo`, which in a static binary still works for numeric addresses and /etc/hosts).
//!
//! `-C target-feature=+crt-static` goes through `RUSTFLAGS` with an explicit `--target`, so
//! that it applies to the tool and its crates only, not to build scripts and proc macros
//! (clap's derive), which are loaded by cargo and rustc and cannot be static. The result
//! (`target/x86_64-unknown-linux-gnu/release/minicap`) replaces `target/release/minicap`, the
//! path the QEMU harness, the benchmark and the README use.

use minicap_elfcore::{FileHeader, Phdr, PT_INTERP};

use crate::{cargo, root, run};

/// The one target whose std is installed: the host's.
const HOST_TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the static tool and puts it at `target/release/minicap`.
pub fn build() -> Result<(), String> {
    run(cargo()
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args([
            "build",
            "--release",
            "-p",
            "minicap",
            "--target",
            HOST_TARGET,
        ]))?;
    let target = root().join("target");
    let built = target.join(HOST_TARGET).join("release/minicap");
    let tool = std::fs::read(&built).map_err(|e| format!("{}: {e}", built.display()))?;
    if needs_interpreter(&tool)? {
        return Err(format!(
            "{} is dynamically linked despite +crt-static (is libc.a installed? \
             apt-get install libc6-dev)",
            built.display()
        ));
    }
    let out = target.join("release/minicap");
    // Cargo hard-links target/release/minicap to its own copy in deps/: writing through the
    // link would change that copy behind cargo's back.
    match std::fs::remove_file(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(format!("{}: {e}", out.display()))
        }
        _ => {}
    }
    std::fs::copy(&built, &out).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!("built {} (static, {} bytes)", out.display(), tool.len());
    Ok(())
}

/// Whether the ELF file asks for a dynamic loader (has `PT_INTERP`): a static-pie does not.
fn needs_interpreter(elf: &[u8]) -> Result<bool, String> {
    let header = FileHeader::read(elf)
        .filter(FileHeader::is_elf64_le)
        .ok_or("the tool is not an ELF64 little-endian file")?;
    for i in 0..u64::from(header.e_phnum) {
        let ph = header
            .program_header_offset(i)
            .and_then(|at| elf.get(usize::try_from(at).ok()?..))
            .and_then(Phdr::read)
            .ok_or("the tool's program header table is outside the file")?;
        if ph.p_type == PT_INTERP {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_a_static_binary_from_a_dynamic_one() {
        // This test binary is dynamically linked (cargo test does not get +crt-static).
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(needs_interpreter(&me).unwrap());
        assert!(needs_interpreter(b"not an elf").is_err());
    }
}

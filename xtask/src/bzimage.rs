//! `target/minicap.bzImage`: the capture kernel in the Linux boot-protocol + PE/COFF format
//! (`formats/bzimage`), built from the same linked ELF as `target/minicap.elf`, for
//! `kexec_file_load(2)` (`kexec -s -p`) and signing with `sbsign`.

use std::path::Path;

use minicap_bzimage::layout::ENTRY64_OFFSET;
use minicap_bzimage::{build, BzImage, ImageSource, PeImage};
use minicap_elfcore::{FileHeader, Phdr, PT_LOAD};

/// Writes `out` from the linked kernel `elf` (already checked by `check_image`: one PT_LOAD,
/// linked at 0) and checks the result the way the kexec loaders and the signature verifier will.
pub fn write(elf: &[u8], out: &Path) -> Result<(), String> {
    let (payload, memsz) = flat_image(elf)?;
    let version = format!("minicap {}", env!("CARGO_PKG_VERSION"));
    let image = build(&ImageSource {
        payload,
        memsz,
        version: &version,
    })
    .map_err(|e| format!("bzImage: {e}"))?;
    let parsed = BzImage::parse(&image).map_err(|e| format!("bzImage does not parse back: {e}"))?;
    if parsed.payload.get(..payload.len()) != Some(payload) {
        return Err("bzImage payload differs from the ELF's PT_LOAD".into());
    }
    PeImage::parse(&image).map_err(|e| format!("bzImage PE/COFF view: {e}"))?;
    std::fs::write(out, &image).map_err(|e| format!("{}: {e}", out.display()))?;
    eprintln!(
        "built {} ({} bytes, init_size {:#x})",
        out.display(),
        image.len(),
        parsed.init_size
    );
    Ok(())
}

/// The one PT_LOAD's file bytes and memsz; its entry must be the bzImage 64-bit entry.
fn flat_image(elf: &[u8]) -> Result<(&[u8], u64), String> {
    let header = FileHeader::read(elf).ok_or("not an ELF file")?;
    if header.e_entry != ENTRY64_OFFSET as u64 {
        return Err(format!(
            "e_entry {:#x}: the linker script must put _start at {ENTRY64_OFFSET:#x}, the bzImage 64-bit entry",
            header.e_entry
        ));
    }
    for i in 0..u64::from(header.e_phnum) {
        let ph = header
            .program_header_offset(i)
            .and_then(|at| elf.get(usize::try_from(at).ok()?..))
            .and_then(Phdr::read)
            .ok_or("program header outside the file")?;
        if ph.p_type != PT_LOAD {
            continue;
        }
        if ph.p_vaddr != 0 {
            return Err(format!("PT_LOAD at {:#x}, not linked at 0", ph.p_vaddr));
        }
        let start = usize::try_from(ph.p_offset).map_err(|e| e.to_string())?;
        let len = usize::try_from(ph.p_filesz).map_err(|e| e.to_string())?;
        let bytes = start
            .checked_add(len)
            .and_then(|end| elf.get(start..end))
            .ok_or("PT_LOAD outside the file")?;
        return Ok((bytes, ph.p_memsz));
    }
    Err("no PT_LOAD".into())
}

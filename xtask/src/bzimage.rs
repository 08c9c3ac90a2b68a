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

#[cfg(test)]
mod tests {
    use super::*;
    use minicap_bzimage::layout::{KERNEL_INFO_MAGIC, KERNEL_INFO_OFFSET};
    use minicap_elfcore::PHDR_LEN;

    const FILESZ: usize = 0x2345;
    const MEMSZ: u64 = 0x9000;

    /// An ELF with one PT_LOAD at file offset 0x1000, linked at `vaddr`, entry `entry`, whose
    /// bytes carry minicap's head (kernel_info at 0x10).
    fn elf(entry: u64, vaddr: u64) -> Vec<u8> {
        let mut elf = vec![0u8; 0x1000];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4..7].copy_from_slice(&[2, 1, 1]);
        elf[16..18].copy_from_slice(&3u16.to_le_bytes()); // ET_DYN
        elf[18..20].copy_from_slice(&62u16.to_le_bytes());
        elf[24..32].copy_from_slice(&entry.to_le_bytes());
        elf[32..40].copy_from_slice(&64u64.to_le_bytes());
        elf[54..56].copy_from_slice(&56u16.to_le_bytes());
        elf[56..58].copy_from_slice(&1u16.to_le_bytes());
        let mut ph = Vec::new();
        Phdr {
            p_type: PT_LOAD,
            p_flags: 7,
            p_offset: 0x1000,
            p_vaddr: vaddr,
            p_paddr: vaddr,
            p_filesz: FILESZ as u64,
            p_memsz: MEMSZ,
            p_align: 0x1000,
        }
        .encode(&mut ph);
        elf[64..64 + PHDR_LEN].copy_from_slice(&ph);
        let mut payload: Vec<u8> = (0..FILESZ)
            .map(|i| u8::try_from(i % 251).unwrap())
            .collect();
        payload[KERNEL_INFO_OFFSET..KERNEL_INFO_OFFSET + 4].copy_from_slice(&KERNEL_INFO_MAGIC);
        elf.extend_from_slice(&payload);
        elf
    }

    #[test]
    fn the_bzimage_payload_is_the_pt_load_and_its_size_the_memsz() {
        let elf = elf(0x200, 0);
        let out = std::env::temp_dir().join(format!("xtask-bzimage-{}", std::process::id()));
        write(&elf, &out).unwrap();
        let image = std::fs::read(&out).unwrap();
        let _ = std::fs::remove_file(&out);
        let bz = BzImage::parse(&image).unwrap();
        assert_eq!(&bz.payload[..FILESZ], &elf[0x1000..]);
        // memsz 0x9000 is less than the payload padded to 0x2400 plus 64 KiB for a signature.
        assert_eq!(bz.load_size(), 0x13000);
    }

    #[test]
    fn an_elf_whose_entry_is_not_at_0x200_is_refused() {
        let err = flat_image(&elf(0, 0)).unwrap_err();
        assert!(err.contains("e_entry 0x0"), "{err}");
        let err = flat_image(&elf(0x200, 0x10_0000)).unwrap_err();
        assert!(err.contains("not linked at 0"), "{err}");
    }
}

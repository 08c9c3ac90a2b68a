//! The capture kernel image to place: `minicap.elf`, a static PIE (ET_DYN) linked at 0 that
//! relocates itself, loaded the way kexec-tools' ELF loader does (`--args-linux`): every
//! PT_LOAD at `base + p_paddr`, the entry at `base + e_entry`.
//!
//! PT_LOADs whose pages touch are merged into one piece, so that no two `kexec_load` segments
//! share a page; each piece holds its file bytes and zeros up to whole pages (`p_memsz`
//! beyond `p_filesz` is `.bss`).

use std::fmt;

use minicap_bzimage::BzImage;
use minicap_elfcore::{ET_DYN, PT_LOAD};
use minicap_physmem::{page_ceil, page_floor, PAGE_SIZE};

use super::elf_file::{program_headers, ElfFileError};

/// A run of whole pages of the image, at its link address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePiece {
    /// Page-aligned link address (offset from the load base).
    pub link_addr: u64,
    /// The bytes, a whole number of pages.
    pub bytes: Vec<u8>,
}

/// A parsed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// Entry point, as an offset from the load base.
    pub entry: u64,
    /// Alignment the load base needs: the largest `p_align`, at least a page.
    pub align: u64,
    /// The pieces, in address order, not sharing pages.
    pub pieces: Vec<ImagePiece>,
}

/// Why an image cannot be placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// Not a valid x86_64 ELF file.
    Elf(ElfFileError),
    /// Not ET_DYN: a fixed-address kernel cannot be placed in the crash region.
    NotRelocatable(u16),
    /// No PT_LOAD.
    NoLoads,
    /// A PT_LOAD is inconsistent (`p_filesz > p_memsz`, bytes past the file's end, address
    /// overflow, or `p_align` not a power of two).
    BadLoad {
        /// Index of the program header.
        index: usize,
    },
    /// `e_entry` is outside every PT_LOAD.
    EntryOutside(u64),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Elf(ref e) => write!(f, "{e}"),
            Self::NotRelocatable(t) => write!(
                f,
                "ELF type {t}, not ET_DYN: the image must be a relocatable static PIE \
                 (build it with `cargo xtask build`)"
            ),
            Self::NoLoads => write!(f, "no PT_LOAD segment"),
            Self::BadLoad { index } => write!(f, "program header {index} is inconsistent"),
            Self::EntryOutside(e) => write!(f, "the entry point {e:#x} is outside every PT_LOAD"),
        }
    }
}

impl std::error::Error for ImageError {}

impl Image {
    /// Parses the whole file `bytes`.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let (header, phdrs) = program_headers(bytes).map_err(ImageError::Elf)?;
        if header.e_type != ET_DYN {
            return Err(ImageError::NotRelocatable(header.e_type));
        }
        let mut loads = Vec::new();
        let mut align = PAGE_SIZE;
        for (index, ph) in phdrs.iter().enumerate() {
            if ph.p_type != PT_LOAD || ph.p_memsz == 0 {
                continue;
            }
            let bad = ImageError::BadLoad { index };
            let file_end = ph.p_offset.checked_add(ph.p_filesz);
            let data = file_end
                .filter(|_| ph.p_filesz <= ph.p_memsz)
                .and_then(|end| {
                    bytes.get(usize::try_from(ph.p_offset).ok()?..usize::try_from(end).ok()?)
                })
                .ok_or(bad.clone())?;
            let end = ph
                .p_paddr
                .checked_add(ph.p_memsz)
                .and_then(page_ceil)
                .ok_or(bad.clone())?;
            if ph.p_align > 1 && !ph.p_align.is_power_of_two() {
                return Err(bad);
            }
            align = align.max(ph.p_align);
            loads.push((ph.p_paddr, end, data));
        }
        if loads.is_empty() {
            return Err(ImageError::NoLoads);
        }
        loads.sort_by_key(|&(start, _, _)| start);
        let entry = header.e_entry;
        if !loads
            .iter()
            .any(|&(start, end, _)| start <= entry && entry < end)
        {
            return Err(ImageError::EntryOutside(entry));
        }
        Ok(Self {
            entry,
            align,
            pieces: merge_into_pieces(&loads),
        })
    }

    /// The payload of a bzImage as `kexec_load` places it: one piece at link address 0 (the
    /// payload is minicap's flat image, the PT_LOAD of minicap.elf linked at 0), zero-filled
    /// to `PAGE_ALIGN(init_size)` (the .bss, and a signature appended after the file bytes
    /// lands there: minicap zeroes its .bss before use), entered at payload + 0x200 with
    /// `%rsi` = `boot_params`. This is what kexec-tools' bzImage64 loader does with the file.
    pub fn from_bzimage(bz: &BzImage<'_>) -> Self {
        let mut bytes = bz.payload.to_vec();
        // `BzImage::parse` checked that the payload fits in `load_size`.
        bytes.resize(usize::try_from(bz.load_size()).unwrap_or(bytes.len()), 0);
        Self {
            entry: bz.entry_offset(),
            align: u64::from(bz.kernel_alignment).max(PAGE_SIZE),
            pieces: vec![ImagePiece {
                link_addr: 0,
                bytes,
            }],
        }
    }

    /// Bytes from the first piece's start to the last piece's end.
    pub fn span(&self) -> u64 {
        match (self.pieces.first(), self.pieces.last()) {
            (Some(first), Some(last)) => last.link_addr + len(&last.bytes) - first.link_addr,
            _ => 0,
        }
    }

    /// The first piece's link address (0 for minicap).
    pub fn first_link_addr(&self) -> u64 {
        self.pieces.first().map_or(0, |p| p.link_addr)
    }
}

fn len(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

/// `loads` sorted by start: (start, page-rounded end, file bytes). Loads whose page ranges
/// touch or overlap go into one piece; file bytes are copied to their place in it.
fn merge_into_pieces(loads: &[(u64, u64, &[u8])]) -> Vec<ImagePiece> {
    let mut spans: Vec<(u64, u64)> = Vec::new();
    for &(start, end, _) in loads {
        let start = page_floor(start);
        match spans.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => spans.push((start, end)),
        }
    }
    spans
        .into_iter()
        .map(|(start, end)| {
            let mut bytes = vec![0u8; usize::try_from(end - start).unwrap_or(0)];
            for &(at, _, data) in loads.iter().filter(|l| l.0 >= start && l.0 < end) {
                let offset = usize::try_from(at - start).unwrap_or(0);
                bytes[offset..offset + data.len()].copy_from_slice(data);
            }
            ImagePiece {
                link_addr: start,
                bytes,
            }
        })
        .collect()
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use minicap_elfcore::{Phdr, PF_R, PF_W, PF_X};

    /// A small ET_DYN image: `loads` are (p_paddr, data, p_memsz), file data laid out after
    /// the headers.
    pub fn image_with(entry: u64, loads: &[(u64, &[u8], u64)]) -> Vec<u8> {
        let header_len = 64 + 56 * loads.len();
        let mut out = vec![0u8; 64];
        out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        out[16..18].copy_from_slice(&ET_DYN.to_le_bytes());
        out[18..20].copy_from_slice(&62u16.to_le_bytes());
        out[24..32].copy_from_slice(&entry.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&u16::try_from(loads.len()).unwrap().to_le_bytes());
        let mut offset = header_len as u64;
        for &(paddr, data, memsz) in loads {
            Phdr {
                p_type: PT_LOAD,
                p_flags: PF_R | PF_W | PF_X,
                p_offset: offset,
                p_vaddr: paddr,
                p_paddr: paddr,
                p_filesz: data.len() as u64,
                p_memsz: memsz,
                p_align: 0x1000,
            }
            .encode(&mut out);
            offset += data.len() as u64;
        }
        for &(_, data, _) in loads {
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn one_load_with_bss() {
        let image = Image::parse(&image_with(0x10, &[(0, b"code", 0x2345)])).unwrap();
        assert_eq!(image.entry, 0x10);
        assert_eq!(image.align, 0x1000);
        assert_eq!(image.pieces.len(), 1);
        assert_eq!(image.pieces[0].bytes.len(), 0x3000);
        assert_eq!(&image.pieces[0].bytes[..5], b"code\0");
        assert_eq!(image.span(), 0x3000);
    }

    #[test]
    fn loads_sharing_a_page_merge_and_distant_ones_do_not() {
        let image = Image::parse(&image_with(
            0,
            &[
                (0, b"text", 0x1800),
                (0x1900, b"data", 0x100),
                (0x10000, b"far", 0x10),
            ],
        ))
        .unwrap();
        assert_eq!(image.pieces.len(), 2);
        assert_eq!(image.pieces[0].link_addr, 0);
        assert_eq!(image.pieces[0].bytes.len(), 0x2000);
        assert_eq!(&image.pieces[0].bytes[0x1900..0x1904], b"data");
        assert_eq!(image.pieces[1].link_addr, 0x10000);
        assert_eq!(image.span(), 0x11000);
    }

    #[test]
    fn refusals() {
        let mut exec = image_with(0, &[(0, b"x", 1)]);
        exec[16] = 2;
        assert_eq!(Image::parse(&exec), Err(ImageError::NotRelocatable(2)));
        assert!(Image::parse(&exec)
            .unwrap_err()
            .to_string()
            .contains("cargo xtask build"));
        assert_eq!(Image::parse(&image_with(0, &[])), Err(ImageError::NoLoads));
        assert_eq!(
            Image::parse(&image_with(0x5000, &[(0, b"x", 0x10)])),
            Err(ImageError::EntryOutside(0x5000))
        );
        let mut past_end = image_with(0, &[(0, b"xy", 0x10)]);
        past_end.pop();
        assert_eq!(
            Image::parse(&past_end),
            Err(ImageError::BadLoad { index: 0 })
        );
        assert_eq!(
            Image::parse(&image_with(0, &[(0, b"xyz", 2)])),
            Err(ImageError::BadLoad { index: 0 })
        );
        assert_eq!(
            Image::parse(b"\x7fELF"),
            Err(ImageError::Elf(ElfFileError::NotElf64))
        );
    }

    /// The image `cargo xtask build` produced in this worktree, when there is one.
    #[test]
    fn the_built_minicap_elf() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/minicap.elf");
        let Ok(bytes) = std::fs::read(path) else {
            eprintln!("skipped: no {path}");
            return;
        };
        let image = Image::parse(&bytes).unwrap();
        assert_eq!(image.first_link_addr(), 0);
        assert!(
            image.span() > 64 << 10 && image.span() < 16 << 20,
            "{}",
            image.span()
        );
        assert_eq!(image.span() % PAGE_SIZE, 0);
    }
}

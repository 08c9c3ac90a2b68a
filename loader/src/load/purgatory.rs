//! The purgatory segment: minicap's purgatory image (`target/purgatory.elf`, built by
//! `cargo xtask build`) relocated to the address the plan reserved and patched with the
//! digest of every other segment, as kexec-tools' `elf_rel_load()` relocates its purgatory
//! and `elf_rel_set_symbol()` patches `sha256_regions`/`sha256_digest`.
//!
//! The image is a static PIE linked at 0 with one PT_LOAD whose first bytes are the parameter
//! block (`minicap_purgatory::params`); its `R_X86_64_RELATIVE` relocations are applied here,
//! for the chosen address, so the purgatory runs without relocating itself. Its own segment
//! is not in the digest table (kexec-tools' purgatory does not check itself either).

use std::fmt;

use minicap_elfcore::{dynamic_entries, relas, DT_RELA, DT_RELASZ, PT_DYNAMIC, R_X86_64_RELATIVE};
use minicap_purgatory::params::{has_params_block, Params, ParamsError};
use minicap_purgatory::{DigestTable, Region, TableError};

use super::elf_file::program_headers;
use super::image::{Image, ImageError};
use super::plan::{LoadPlan, Segment, SegmentKind};

/// A parsed purgatory image, not yet placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purgatory {
    /// The single piece, linked at 0, a whole number of pages (`.bss` and stack included).
    bytes: Vec<u8>,
    /// Entry point offset.
    entry: u64,
    /// `R_X86_64_RELATIVE` relocations: (offset, addend).
    relocations: Vec<(usize, i64)>,
}

/// Why a purgatory image cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurgatoryError {
    /// Not a loadable relocatable ELF.
    Image(ImageError),
    /// Not one piece linked at 0.
    NotOnePiece,
    /// No `MCPURGP1` block at offset 0: not minicap's purgatory.
    NoParamsBlock,
    /// The dynamic section or a relocation lies outside the loaded bytes, or is not
    /// `R_X86_64_RELATIVE`.
    BadRelocation(String),
    /// Bigger than the slot the plan reserved.
    TooBig {
        /// Its size.
        size: u64,
        /// The slot.
        slot: u64,
    },
    /// `--corrupt-digest` names no segment.
    NoSuchSegment(usize),
    /// The table or block cannot be built.
    Table(TableError),
    /// The block cannot be written.
    Params(ParamsError),
}

impl fmt::Display for PurgatoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Image(e) => write!(f, "{e}"),
            Self::NotOnePiece => f.write_str("not one PT_LOAD linked at 0"),
            Self::NoParamsBlock => f.write_str(
                "no MCPURGP1 parameter block at offset 0: not minicap's purgatory \
                 (build it with `cargo xtask build`)",
            ),
            Self::BadRelocation(why) => write!(f, "relocations: {why}"),
            Self::TooBig { size, slot } => write!(
                f,
                "{size} bytes, more than the {slot} bytes the plan reserves for it"
            ),
            Self::NoSuchSegment(n) => write!(f, "--corrupt-digest {n}: no such segment"),
            Self::Table(e) => write!(f, "{e}"),
            Self::Params(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for PurgatoryError {}

impl Purgatory {
    /// Parses the whole file.
    pub fn parse(file: &[u8]) -> Result<Self, PurgatoryError> {
        let image = Image::parse(file).map_err(PurgatoryError::Image)?;
        let [piece] = image.pieces.as_slice() else {
            return Err(PurgatoryError::NotOnePiece);
        };
        if piece.link_addr != 0 {
            return Err(PurgatoryError::NotOnePiece);
        }
        if !has_params_block(&piece.bytes) {
            return Err(PurgatoryError::NoParamsBlock);
        }
        let (_, phdrs) =
            program_headers(file).map_err(|e| PurgatoryError::Image(ImageError::Elf(e)))?;
        let relocations = match phdrs.iter().find(|p| p.p_type == PT_DYNAMIC) {
            None => Vec::new(),
            Some(dynamic) => relative_relocations(&piece.bytes, dynamic.p_vaddr, dynamic.p_memsz)?,
        };
        Ok(Self {
            bytes: piece.bytes.clone(),
            entry: image.entry,
            relocations,
        })
    }

    /// Bytes it takes in memory.
    pub fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The purgatory segment for `plan`, placed at the start of its slot, with the digest of
    /// every other segment (with the digest of segment `corrupt` altered: fault injection,
    /// so that the refusal can be tested). Returns the segment and the `kexec_load` entry.
    pub fn place(
        &self,
        plan: &LoadPlan,
        corrupt: Option<usize>,
    ) -> Result<(Segment, u64), PurgatoryError> {
        let slot = &plan.purgatory_slot;
        if self.size() > slot.end - slot.start {
            return Err(PurgatoryError::TooBig {
                size: self.size(),
                slot: slot.end - slot.start,
            });
        }
        let addr = slot.start;
        let mut regions: Vec<Region> = plan
            .segments
            .iter()
            .map(|s| Region {
                addr: s.addr,
                len: s.len(),
                sha256: s.digest(),
            })
            .collect();
        if let Some(n) = corrupt {
            let region = regions.get_mut(n).ok_or(PurgatoryError::NoSuchSegment(n))?;
            region.sha256[0] ^= 0xff;
        }
        let boot_params = plan
            .segments
            .iter()
            .find(|s| s.kind == SegmentKind::BootParams)
            .map_or(0, |s| s.addr);
        let params = Params {
            minicap_entry: plan.entry,
            boot_params,
            table: DigestTable::new(&regions).map_err(PurgatoryError::Table)?,
        };
        let mut bytes = self.bytes.clone();
        for &(offset, addend) in &self.relocations {
            let value = addr.wrapping_add_signed(addend);
            bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
        }
        params
            .encode_into(&mut bytes)
            .map_err(PurgatoryError::Params)?;
        Ok((
            Segment {
                kind: SegmentKind::Purgatory,
                addr,
                bytes,
            },
            addr + self.entry,
        ))
    }
}

/// The `R_X86_64_RELATIVE` relocations of the dynamic section at `vaddr` (`len` bytes),
/// checked to lie inside `bytes` (the image linked at 0).
fn relative_relocations(
    bytes: &[u8],
    vaddr: u64,
    len: u64,
) -> Result<Vec<(usize, i64)>, PurgatoryError> {
    let bad = |why: String| PurgatoryError::BadRelocation(why);
    let slice = |at: u64, len: u64| {
        let start = usize::try_from(at).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        bytes.get(start..end)
    };
    let dynamic = slice(vaddr, len).ok_or_else(|| bad("dynamic section outside".into()))?;
    let (mut table, mut table_len) = (None, 0);
    for entry in dynamic_entries(dynamic) {
        match entry.tag {
            0 => break,
            DT_RELA => table = Some(entry.value),
            DT_RELASZ => table_len = entry.value,
            _ => {}
        }
    }
    let Some(table) = table else {
        return Ok(Vec::new());
    };
    let table = slice(table, table_len).ok_or_else(|| bad("table outside".into()))?;
    relas(table)
        .map(|r| {
            if r.kind() != R_X86_64_RELATIVE {
                return Err(bad(format!("type {} at {:#x}", r.kind(), r.offset)));
            }
            usize::try_from(r.offset)
                .ok()
                .filter(|&o| o.checked_add(8).is_some_and(|end| end <= bytes.len()))
                .map(|o| (o, r.addend))
                .ok_or_else(|| bad(format!("offset {:#x} outside", r.offset)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::image::tests::image_with;
    use minicap_purgatory::params::{unpatched_block, PARAMS_LEN};
    use minicap_purgatory::region_of;

    /// A purgatory-like image: the parameter block at 0, a dynamic section at 0x400 naming a
    /// relocation table at 0x440 with `relocs` (offset, type, addend), entry 0x300.
    pub fn purgatory_file(relocs: &[(u64, u32, i64)]) -> Vec<u8> {
        let mut body = vec![0u8; 0x800];
        body[..PARAMS_LEN].copy_from_slice(&unpatched_block());
        let mut dynamic = Vec::new();
        for (tag, value) in [
            (DT_RELA, 0x440),
            (DT_RELASZ, 24 * relocs.len() as u64),
            (0, 0),
        ] {
            dynamic.extend_from_slice(&tag.to_le_bytes());
            dynamic.extend_from_slice(&u64::to_le_bytes(value));
        }
        body[0x400..0x400 + dynamic.len()].copy_from_slice(&dynamic);
        for (i, &(offset, kind, addend)) in relocs.iter().enumerate() {
            let at = 0x440 + 24 * i;
            body[at..at + 8].copy_from_slice(&offset.to_le_bytes());
            body[at + 8..at + 16].copy_from_slice(&u64::from(kind).to_le_bytes());
            body[at + 16..at + 24].copy_from_slice(&addend.to_le_bytes());
        }
        let mut file = image_with(0x300, &[(0, &body, 0x3000)]);
        // A PT_DYNAMIC header: rewrite the file with two program headers.
        add_dynamic_header(&mut file, 0x400, 48);
        file
    }

    /// Appends a PT_DYNAMIC program header after the existing one (image_with leaves the
    /// file data after the headers, so the data is moved down by one header).
    fn add_dynamic_header(file: &mut Vec<u8>, vaddr: u64, len: u64) {
        let phnum = u16::from_le_bytes([file[56], file[57]]);
        let at = 64 + 56 * usize::from(phnum);
        let mut ph = Vec::new();
        minicap_elfcore::Phdr {
            p_type: PT_DYNAMIC,
            p_flags: 6,
            p_offset: 0,
            p_vaddr: vaddr,
            p_paddr: vaddr,
            p_filesz: len,
            p_memsz: len,
            p_align: 8,
        }
        .encode(&mut ph);
        file.splice(at..at, ph);
        file[56..58].copy_from_slice(&(phnum + 1).to_le_bytes());
        // Every PT_LOAD's data moved by 56 bytes.
        for i in 0..usize::from(phnum) {
            let off = 64 + 56 * i + 8;
            let old = u64::from_le_bytes(file[off..off + 8].try_into().unwrap());
            file[off..off + 8].copy_from_slice(&(old + 56).to_le_bytes());
        }
    }

    fn plan_with_segments() -> LoadPlan {
        let seg = |kind, addr, fill: u8| Segment {
            kind,
            addr,
            bytes: vec![fill; 0x1000],
        };
        LoadPlan {
            region: 0x3d00_0000..0x3f00_0000,
            entry: 0x3d00_0040,
            segments: vec![
                seg(SegmentKind::Image, 0x3d00_0000, 1),
                seg(SegmentKind::BootParams, 0x3d01_0000, 2),
                seg(SegmentKind::CoreHeaders, 0x3eff_f000, 3),
            ],
            purgatory_slot: 0x3d00_1000..0x3d01_0000,
            cmdline: String::new(),
            e820: Vec::new(),
            heap: 0..0,
        }
    }

    #[test]
    fn placed_relocated_and_patched() {
        let file = purgatory_file(&[(0x700, R_X86_64_RELATIVE, 0x123)]);
        let purgatory = Purgatory::parse(&file).unwrap();
        assert_eq!(purgatory.size(), 0x3000);
        let plan = plan_with_segments();
        let (segment, entry) = purgatory.place(&plan, None).unwrap();
        assert_eq!(
            (segment.kind, segment.addr, entry),
            (SegmentKind::Purgatory, 0x3d00_1000, 0x3d00_1300)
        );
        assert_eq!(
            &segment.bytes[0x700..0x708],
            &(0x3d00_1123u64).to_le_bytes()
        );
        let params = Params::decode(&segment.bytes).unwrap();
        assert_eq!(params.minicap_entry, 0x3d00_0040);
        assert_eq!(params.boot_params, 0x3d01_0000);
        let expected: Vec<_> = plan
            .segments
            .iter()
            .map(|s| region_of(s.addr, &s.bytes))
            .collect();
        assert_eq!(params.table.regions(), expected.as_slice());
        // The purgatory's own check passes on the planned memory.
        let memory = |addr: u64, buf: &mut [u8]| {
            plan.segments.iter().any(|s| {
                let Some(off) = addr
                    .checked_sub(s.addr)
                    .and_then(|o| usize::try_from(o).ok())
                else {
                    return false;
                };
                s.bytes
                    .get(off..off + buf.len())
                    .map(|b| buf.copy_from_slice(b))
                    .is_some()
            })
        };
        assert_eq!(params.table.check(memory), Ok(()));
    }

    #[test]
    fn a_corrupted_digest_names_its_segment() {
        let purgatory = Purgatory::parse(&purgatory_file(&[])).unwrap();
        let plan = plan_with_segments();
        let (segment, _) = purgatory.place(&plan, Some(1)).unwrap();
        let params = Params::decode(&segment.bytes).unwrap();
        let memory = |addr: u64, buf: &mut [u8]| {
            let s = plan
                .segments
                .iter()
                .find(|s| s.addr <= addr && addr < s.range().end);
            s.map(|s| {
                let off = usize::try_from(addr - s.addr).unwrap();
                buf.copy_from_slice(&s.bytes[off..off + buf.len()]);
            })
            .is_some()
        };
        let e = params.table.check(memory).unwrap_err();
        assert!(e.to_string().starts_with("segment 1 at 0x3d010000"), "{e}");
        assert_eq!(
            purgatory.place(&plan, Some(3)).unwrap_err(),
            PurgatoryError::NoSuchSegment(3)
        );
    }

    #[test]
    fn bad_images_are_refused() {
        let plan = plan_with_segments();
        let mut small = plan.clone();
        small.purgatory_slot = 0x3d00_1000..0x3d00_3000;
        let purgatory = Purgatory::parse(&purgatory_file(&[])).unwrap();
        assert_eq!(
            purgatory.place(&small, None).unwrap_err(),
            PurgatoryError::TooBig {
                size: 0x3000,
                slot: 0x2000
            }
        );
        let e = Purgatory::parse(&purgatory_file(&[(0x700, 1, 0)])).unwrap_err();
        assert!(e.to_string().contains("type 1 at 0x700"), "{e}");
        let e = Purgatory::parse(&purgatory_file(&[(0x2ffc, R_X86_64_RELATIVE, 0)])).unwrap_err();
        assert!(e.to_string().contains("outside"), "{e}");
        let mut file = purgatory_file(&[]);
        let at = file.windows(8).position(|w| w == b"MCPURGP1").unwrap();
        file[at] = b'X';
        assert_eq!(
            Purgatory::parse(&file).unwrap_err(),
            PurgatoryError::NoParamsBlock
        );
        let minicap_like = image_with(0, &[(0, &[0x90; 0x100], 0x1000)]);
        assert_eq!(
            Purgatory::parse(&minicap_like).unwrap_err(),
            PurgatoryError::NoParamsBlock
        );
    }
}

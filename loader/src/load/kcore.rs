//! The kernel's virtual layout, from the program headers of `/proc/kcore` and `_stext` in
//! `/proc/kallsyms`, as kexec-tools `get_kernel_vaddr_and_size()` finds it:
//!
//! * the direct map's base (`PAGE_OFFSET`, randomized by KASLR): the lowest PT_LOAD `p_vaddr`
//!   rounded down to 1 GiB;
//! * the kernel-text mapping: the PT_LOAD holding `_stext` (or, when kallsyms hides addresses,
//!   the one inside `__START_KERNEL_map` .. +1 GiB), its start rounded down to 1 MiB and its
//!   size up to a page.

use std::fmt;

use minicap_elfcore::{Phdr, PT_LOAD};
use minicap_physmem::page_ceil;

use super::elf_file::{program_headers, ElfFileError};

/// x86_64 `__START_KERNEL_map`: where the kernel text mapping starts without KASLR.
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// The kernel text mapping's extent: Linux `KERNEL_IMAGE_SIZE` with KASLR (1 GiB). kexec-tools'
/// `X86_64_KERNEL_TEXT_SIZE` is still 512 MiB, which misses a kernel randomized above it, so
/// kexec-tools depends on `_stext` there.
pub const KERNEL_TEXT_SPAN: u64 = 1 << 30;
const TEXT_VADDR_ALIGN: u64 = 1 << 20;
const PAGE_OFFSET_ALIGN: u64 = 1 << 30;

/// What the core headers need from the kernel's virtual layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelLayout {
    /// The direct map's base.
    pub page_offset: u64,
    /// Start of the kernel-text PT_LOAD (1 MiB aligned).
    pub text_vaddr: u64,
    /// Its size (page aligned).
    pub text_size: u64,
}

/// Why the layout could not be found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KcoreError {
    /// The headers are not a valid ELF file.
    Elf(ElfFileError),
    /// No PT_LOAD at all.
    NoLoads,
    /// No PT_LOAD holds the kernel text.
    NoTextMapping,
}

impl fmt::Display for KcoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf(e) => write!(f, "/proc/kcore: {e}"),
            Self::NoLoads => write!(f, "/proc/kcore has no PT_LOAD"),
            Self::NoTextMapping => write!(
                f,
                "/proc/kcore has no PT_LOAD for the kernel text (neither around _stext nor \
                 above {START_KERNEL_MAP:#x})"
            ),
        }
    }
}

impl std::error::Error for KcoreError {}

/// The layout from the start of `/proc/kcore` (its ELF header and program header table) and
/// the address of `_stext` when known.
pub fn kernel_layout(kcore_headers: &[u8], stext: Option<u64>) -> Result<KernelLayout, KcoreError> {
    let (_, phdrs) = program_headers(kcore_headers).map_err(KcoreError::Elf)?;
    let loads: Vec<&Phdr> = phdrs.iter().filter(|p| p.p_type == PT_LOAD).collect();
    let page_offset = loads
        .iter()
        .map(|p| p.p_vaddr & !(PAGE_OFFSET_ALIGN - 1))
        .min()
        .ok_or(KcoreError::NoLoads)?;
    let end = |p: &Phdr| p.p_vaddr.saturating_add(p.p_memsz);
    let around_stext = stext.and_then(|s| loads.iter().find(|p| p.p_vaddr <= s && s < end(p)));
    let in_text_map = || {
        loads.iter().find(|p| {
            p.p_vaddr >= START_KERNEL_MAP && end(p) <= START_KERNEL_MAP + KERNEL_TEXT_SPAN
        })
    };
    let text = around_stext
        .or_else(in_text_map)
        .ok_or(KcoreError::NoTextMapping)?;
    let text_vaddr = text.p_vaddr & !(TEXT_VADDR_ALIGN - 1);
    let text_size = page_ceil(end(text) - text_vaddr).unwrap_or(end(text) - text_vaddr);
    Ok(KernelLayout {
        page_offset,
        text_vaddr,
        text_size,
    })
}

/// `_stext` from the text of `/proc/kallsyms` (`ADDRESS TYPE NAME [module]` lines); `None` if
/// absent or hidden (shown as 0 under `kptr_restrict`).
pub fn stext_from_kallsyms(text: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let addr = fields.next()?;
        let _kind = fields.next()?;
        (fields.next()? == "_stext")
            .then(|| u64::from_str_radix(addr, 16).ok())
            .flatten()
            .filter(|&a| a != 0)
    })
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use minicap_elfcore::{PF_R, PF_W, PF_X, PT_NOTE};

    /// The start of a `/proc/kcore` for a guest whose kernel text mapping starts at
    /// `text_vaddr` (`text_size` bytes) and whose direct map starts at `page_offset`: a
    /// PT_NOTE, the kernel text, the direct map of low RAM, vmalloc, vmemmap.
    pub fn kcore_for(page_offset: u64, text_vaddr: u64, text_size: u64) -> Vec<u8> {
        kcore_with(&[
            (PT_NOTE, 0, 0x1000),
            (PT_LOAD, text_vaddr, text_size),
            (PT_LOAD, page_offset + 0x1000, 0x9_ec00),
            (PT_LOAD, page_offset + 0x10_0000, 0x3fed_a000),
            // vmalloc and vmemmap lie above the direct map in both paging modes.
            (PT_LOAD, page_offset + 0x4000_0000_0000, 0x1000_0000),
            (PT_LOAD, page_offset + 0x5e00_0000_0000, 0x100_0000),
        ])
    }

    /// The 1 GiB guest's boot recorded in `iomem-guest-1g.txt`, with the kernel text and
    /// direct map kexec-tools found there (its kernel-text PT_LOAD: 0xffffffffafc00000,
    /// 0x2830000 bytes; RAM at 0xff4a7686c0000000 + paddr).
    pub fn guest_kcore_headers() -> Vec<u8> {
        kcore_for(0xff4a_7686_c000_0000, 0xffff_ffff_afc0_0000, 0x283_0000)
    }

    pub fn kcore_with(phdrs: &[(u32, u64, u64)]) -> Vec<u8> {
        let mut out = vec![0u8; 64];
        out[..8].copy_from_slice(b"\x7fELF\x02\x01\x01\x00");
        out[16..18].copy_from_slice(&4u16.to_le_bytes());
        out[18..20].copy_from_slice(&62u16.to_le_bytes());
        out[32..40].copy_from_slice(&64u64.to_le_bytes());
        out[54..56].copy_from_slice(&56u16.to_le_bytes());
        out[56..58].copy_from_slice(&u16::try_from(phdrs.len()).unwrap().to_le_bytes());
        for &(p_type, vaddr, size) in phdrs {
            Phdr {
                p_type,
                p_flags: PF_R | PF_W | PF_X,
                p_offset: 0,
                p_vaddr: vaddr,
                p_paddr: 0,
                p_filesz: size,
                p_memsz: size,
                p_align: 0x1000,
            }
            .encode(&mut out);
        }
        out
    }

    #[test]
    fn guest_layout() {
        let layout = kernel_layout(&guest_kcore_headers(), Some(0xffff_ffff_b000_0000)).unwrap();
        assert_eq!(
            layout,
            KernelLayout {
                page_offset: 0xff4a_7686_c000_0000,
                text_vaddr: 0xffff_ffff_afc0_0000,
                text_size: 0x283_0000,
            }
        );
        // Without _stext the fixed text window finds the same mapping.
        assert_eq!(kernel_layout(&guest_kcore_headers(), None), Ok(layout));
    }

    #[test]
    fn text_start_rounds_to_1_mib_and_size_to_a_page() {
        let kcore = kcore_with(&[
            (PT_LOAD, 0xffff_8880_0000_0000, 0x1000),
            (PT_LOAD, 0xffff_ffff_8108_0000, 0x10_0001),
        ]);
        let layout = kernel_layout(&kcore, Some(0xffff_ffff_8108_0000)).unwrap();
        assert_eq!(layout.page_offset, 0xffff_8880_0000_0000);
        assert_eq!(layout.text_vaddr, 0xffff_ffff_8100_0000);
        assert_eq!(layout.text_size, 0x18_1000);
    }

    #[test]
    fn failures() {
        assert_eq!(
            kernel_layout(b"not elf", None),
            Err(KcoreError::Elf(ElfFileError::NotElf64))
        );
        assert_eq!(
            kernel_layout(&kcore_with(&[]), None),
            Err(KcoreError::NoLoads)
        );
        let no_text = kcore_with(&[(PT_LOAD, 0xffff_8880_0000_0000, 0x1000)]);
        assert_eq!(
            kernel_layout(&no_text, None),
            Err(KcoreError::NoTextMapping)
        );
        let mut truncated = guest_kcore_headers();
        truncated.truncate(64 + 56);
        assert!(matches!(
            kernel_layout(&truncated, None),
            Err(KcoreError::Elf(ElfFileError::TableOutside { .. }))
        ));
    }

    #[test]
    fn kallsyms() {
        let text = "ffffffff9c800000 T _text\nffffffff9d000000 T _stext\n";
        assert_eq!(stext_from_kallsyms(text), Some(0xffff_ffff_9d00_0000));
        assert_eq!(stext_from_kallsyms("0000000000000000 T _stext\n"), None);
        assert_eq!(stext_from_kallsyms("ffffffff9c800000 T _text\n"), None);
    }
}

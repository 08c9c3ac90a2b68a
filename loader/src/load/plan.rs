//! Where everything goes in the crash region, as `kexec_load(2)` segments, and the SHA-256 of
//! each segment that the purgatory will check before it jumps to minicap.
//!
//! Layout (addresses grow to the right; every piece page-aligned):
//!
//! ```text
//! | image (at a base aligned to its p_align) | purgatory slot | boot_params | cmdline | free ... | core headers |
//! ^ crash region start                                                                      crash region end ^
//! ```
//!
//! * The image at the lowest aligned address, as kexec-tools places an ELF image.
//! * The purgatory slot right after it ([`PURGATORY_RESERVE`] bytes; the purgatory segment
//!   is placed there once the digests of the others are known, `super::purgatory`).
//! * `boot_params` and, in the next page, the command line (kexec-tools' order).
//! * The ELF core headers at the top, as kexec-tools places them, so that the free memory
//!   between is one range: minicap gives its largest free range to its heap.
//!
//! The e820 map minicap receives: the crash region minus the core headers as RAM (kexec-tools
//! `load_crashdump_segments()` also removes them), and the firmware ranges of `/proc/iomem`
//! as they are. minicap itself keeps its image, `boot_params` and command line out of its
//! free memory.
//!
//! The syscall's rules, checked by [`check_kexec_rules`]: page-aligned addresses and sizes,
//! segments inside the crash region, no overlap, at most [`KEXEC_SEGMENT_MAX`] segments.
//!
//! Before a plan is accepted, minicap's own memory planning (`minicap_capture::memory`:
//! `usable_ram`, `exclude`, `choose_heap`) runs on it, so that "fits" means what the capture
//! kernel will find at the crash, not an estimate of it.

use std::fmt;
use std::ops::Range;

use minicap_bootinfo::{E820Entry, E820Kind};
use minicap_capture::memory::{choose_heap, exclude, usable_ram, MIN_HEAP};
use minicap_capture::Failure;
use minicap_physmem::{page_ceil, PAGE_SIZE};
use sha2::{Digest, Sha256};

use super::bootparams::{boot_params_page, command_line_bytes, BootParamsBuildError};
use super::image::Image;

/// The most segments one `kexec_load` call takes (Linux `KEXEC_SEGMENT_MAX`).
pub const KEXEC_SEGMENT_MAX: usize = 16;
/// Memory kept for the purgatory (its code, the digest list and its stack; about 44 KiB
/// built, checked against the file when it is placed).
pub const PURGATORY_RESERVE: u64 = 64 << 10;
/// `boot_params` plus the command line page.
const BOOT_PARAMS_BYTES: u64 = 2 * PAGE_SIZE;

/// What a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentKind {
    /// A piece of minicap's image.
    Image,
    /// `boot_params` and the command line.
    BootParams,
    /// The ELF core headers.
    CoreHeaders,
    /// The purgatory, placed in the plan's purgatory slot.
    Purgatory,
}

impl fmt::Display for SegmentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Image => "minicap image",
            Self::BootParams => "boot_params + command line",
            Self::CoreHeaders => "ELF core headers",
            Self::Purgatory => "purgatory",
        })
    }
}

/// One `struct kexec_segment`: `bytes.len()` is both `bufsz` and `memsz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// What it holds.
    pub kind: SegmentKind,
    /// Physical address (`mem`).
    pub addr: u64,
    /// The contents, a whole number of pages.
    pub bytes: Vec<u8>,
}

impl Segment {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        u64::try_from(self.bytes.len()).unwrap_or(u64::MAX)
    }

    /// Physical range.
    pub fn range(&self) -> Range<u64> {
        self.addr..self.addr.saturating_add(self.len())
    }

    /// The SHA-256 the purgatory compares.
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(&self.bytes).into()
    }
}

/// What the plan is made from.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    /// The crash region the image is loaded into.
    pub region: Range<u64>,
    /// minicap's image.
    pub image: &'a Image,
    /// The ELF core headers (`build_core_headers`).
    pub core_headers: &'a [u8],
    /// The user's options for minicap (`minicap.device=...` and others).
    pub append: &'a str,
    /// `/proc/iomem` ranges passed on to the e820 map.
    pub firmware: &'a [(Range<u64>, E820Kind)],
    /// The ACPI RSDP for `boot_params`, 0 when unknown.
    pub acpi_rsdp: u64,
}

/// A complete load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    /// The crash region.
    pub region: Range<u64>,
    /// Where minicap's entry point is.
    pub entry: u64,
    /// The segments, in address order.
    pub segments: Vec<Segment>,
    /// Memory kept for the purgatory (not loaded yet).
    pub purgatory_slot: Range<u64>,
    /// The command line minicap receives.
    pub cmdline: String,
    /// Its memory map.
    pub e820: Vec<E820Entry>,
    /// The range minicap's memory planning will give its heap.
    pub heap: Range<u64>,
}

/// Why no plan fits.
#[derive(Debug, Clone)]
pub enum PlanError {
    /// The crash region is smaller than what must go in it.
    RegionTooSmall {
        /// Its size.
        region: u64,
        /// What is needed.
        needed: u64,
    },
    /// More segments than `kexec_load` takes.
    TooManySegments(usize),
    /// A segment breaks a `kexec_load` rule (a bug in the plan, reported instead of loaded).
    BrokenRule(String),
    /// `boot_params` cannot hold the map or the command line.
    BootParams(BootParamsBuildError),
    /// minicap's own memory planning refuses the result.
    Capture(Box<Failure>),
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RegionTooSmall { region, needed } => write!(
                f,
                "the crash region holds {region} bytes but minicap needs {needed}: add {} \
                 bytes ({} KiB) to crashkernel= (try `minicap recommend`)",
                needed - region,
                (needed - region).div_ceil(1024)
            ),
            Self::TooManySegments(n) => write!(
                f,
                "{n} segments (the purgatory's included), but kexec_load takes at most \
                 {KEXEC_SEGMENT_MAX}: the image has too many separate PT_LOADs"
            ),
            Self::BrokenRule(rule) => write!(f, "internal error, not loaded: {rule}"),
            Self::BootParams(e) => write!(f, "{e}"),
            Self::Capture(e) => write!(f, "minicap would refuse this load: {e}"),
        }
    }
}

impl std::error::Error for PlanError {}

/// Bytes the crash region must hold for `image` and `core_headers_len` bytes of headers: the
/// segments, the purgatory slot, the worst-case alignment gap before the image, and minicap's
/// smallest heap ([`MIN_HEAP`]).
pub fn region_bytes_needed(image: &Image, core_headers_len: u64) -> u64 {
    let alignment_gap = image.align.saturating_sub(PAGE_SIZE);
    [
        image.span(),
        alignment_gap,
        PURGATORY_RESERVE,
        BOOT_PARAMS_BYTES,
        page_ceil(core_headers_len).unwrap_or(u64::MAX),
        MIN_HEAP,
    ]
    .into_iter()
    .fold(0, u64::saturating_add)
}

/// Places everything in `input.region`.
pub fn plan_load(input: &PlanInput<'_>) -> Result<LoadPlan, PlanError> {
    let region = input.region.clone();
    let region_len = region.end.saturating_sub(region.start);
    let headers_len = page_ceil(len(input.core_headers)).unwrap_or(u64::MAX);
    let needed = region_bytes_needed(input.image, len(input.core_headers));
    if needed > region_len {
        return Err(PlanError::RegionTooSmall {
            region: region_len,
            needed,
        });
    }
    let segment_count = input.image.pieces.len() + 3;
    if segment_count > KEXEC_SEGMENT_MAX {
        return Err(PlanError::TooManySegments(segment_count));
    }

    let too_small = PlanError::RegionTooSmall {
        region: region_len,
        needed,
    };
    let first_piece_at = region
        .start
        .checked_next_multiple_of(input.image.align)
        .ok_or(too_small)?;
    // Wrapping: an image linked high still lands at `first_piece_at` (pieces keep their
    // distances); only minicap's entry offset matters.
    let base = first_piece_at.wrapping_sub(input.image.first_link_addr());
    let mut segments: Vec<Segment> = input
        .image
        .pieces
        .iter()
        .map(|piece| Segment {
            kind: SegmentKind::Image,
            addr: base.wrapping_add(piece.link_addr),
            bytes: piece.bytes.clone(),
        })
        .collect();
    let image_end = segments.last().map_or(base, |s| s.range().end);
    let purgatory_slot = image_end..image_end + PURGATORY_RESERVE;
    let boot_params_addr = purgatory_slot.end;
    let cmdline_addr = boot_params_addr + PAGE_SIZE;
    let headers_addr = region.end - headers_len;

    let cmdline = command_line(input.append, headers_addr);
    let mut cmdline_page = command_line_bytes(&cmdline).map_err(PlanError::BootParams)?;
    // At most COMMAND_LINE_SIZE (2048) bytes: the page holds them.
    cmdline_page.resize(usize::try_from(PAGE_SIZE).unwrap_or(4096), 0);
    let e820 = e820_map(&region, headers_addr..region.end, input.firmware);
    let mut boot =
        boot_params_page(&e820, cmdline_addr, input.acpi_rsdp).map_err(PlanError::BootParams)?;
    boot.extend_from_slice(&cmdline_page);
    segments.push(Segment {
        kind: SegmentKind::BootParams,
        addr: boot_params_addr,
        bytes: boot,
    });
    let mut headers = input.core_headers.to_vec();
    headers.resize(usize::try_from(headers_len).unwrap_or(headers.len()), 0);
    segments.push(Segment {
        kind: SegmentKind::CoreHeaders,
        addr: headers_addr,
        bytes: headers,
    });
    check_kexec_rules(&segments, Some(&purgatory_slot), &region)?;

    let heap = capture_kernel_heap(&e820, &segments).map_err(PlanError::Capture)?;
    Ok(LoadPlan {
        region,
        entry: base.wrapping_add(input.image.entry),
        segments,
        purgatory_slot,
        cmdline,
        e820,
        heap,
    })
}

/// The user's options, then `elfcorehdr=` in KiB as kexec-tools writes it
/// (`cmdline_add_elfcorehdr()`).
fn command_line(append: &str, headers_addr: u64) -> String {
    let append = append.trim();
    let elfcorehdr = format!("elfcorehdr={}K", headers_addr >> 10);
    if append.is_empty() {
        elfcorehdr
    } else {
        format!("{append} {elfcorehdr}")
    }
}

/// RAM: the region minus the core headers; then the firmware ranges; sorted by address.
fn e820_map(
    region: &Range<u64>,
    headers: Range<u64>,
    firmware: &[(Range<u64>, E820Kind)],
) -> Vec<E820Entry> {
    let entry = |range: Range<u64>, kind| E820Entry {
        addr: range.start,
        size: range.end - range.start,
        kind,
    };
    let mut map: Vec<E820Entry> = Vec::new();
    if headers.start > region.start {
        map.push(entry(region.start..headers.start, E820Kind::Ram));
    }
    map.extend(firmware.iter().map(|(r, kind)| entry(r.clone(), *kind)));
    map.sort_by_key(|e| (e.addr, e.size));
    map
}

/// What minicap will give its heap, computed by minicap's own code from what it will receive.
fn capture_kernel_heap(
    e820: &[E820Entry],
    segments: &[Segment],
) -> Result<Range<u64>, Box<Failure>> {
    let mut free = usable_ram(e820.iter().copied())?;
    for segment in segments {
        exclude(&mut free, segment.range())?;
    }
    Ok(choose_heap(&free)?)
}

/// The `kexec_load` rules for crash segments (Linux `sanity_check_segment_list()`), plus the
/// purgatory slot counted as the segment it will be.
pub fn check_kexec_rules(
    segments: &[Segment],
    purgatory_slot: Option<&Range<u64>>,
    region: &Range<u64>,
) -> Result<(), PlanError> {
    let count = segments.len() + usize::from(purgatory_slot.is_some());
    if count > KEXEC_SEGMENT_MAX {
        return Err(PlanError::TooManySegments(count));
    }
    let mut ranges: Vec<(String, Range<u64>)> = segments
        .iter()
        .map(|s| (s.kind.to_string(), s.range()))
        .chain(purgatory_slot.map(|r| ("purgatory".to_owned(), r.clone())))
        .collect();
    for (name, r) in &ranges {
        if r.start % PAGE_SIZE != 0 || r.end % PAGE_SIZE != 0 || r.is_empty() {
            return Err(PlanError::BrokenRule(format!(
                "{name} at {:#x}-{:#x} is not whole pages",
                r.start, r.end
            )));
        }
        if r.start < region.start || r.end > region.end {
            return Err(PlanError::BrokenRule(format!(
                "{name} at {:#x}-{:#x} is outside the crash region",
                r.start, r.end
            )));
        }
    }
    ranges.sort_by_key(|(_, r)| r.start);
    for pair in ranges.windows(2) {
        if pair[0].1.end > pair[1].1.start {
            return Err(PlanError::BrokenRule(format!(
                "{} and {} overlap",
                pair[0].0, pair[1].0
            )));
        }
    }
    Ok(())
}

fn len(bytes: &[u8]) -> u64 {
    u64::try_from(bytes.len()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::image::tests::image_with;
    use minicap_bootinfo::cmdline::elfcorehdr;
    use minicap_bootinfo::BootParams;

    const REGION: Range<u64> = 0x3d00_0000..0x3f00_0000;

    fn minicap_like() -> Image {
        Image::parse(&image_with(0, &[(0, &[0x90; 0x6_8348], 0x9_9990)])).unwrap()
    }

    fn input<'a>(image: &'a Image, headers: &'a [u8], region: Range<u64>) -> PlanInput<'a> {
        PlanInput {
            region,
            image,
            core_headers: headers,
            append: "minicap.device=0123456789abcdef0123456789abcdef",
            firmware: &[
                (0..0x1000, E820Kind::Reserved),
                (0x3ffd_a000..0x4000_0000, E820Kind::Reserved),
            ],
            acpi_rsdp: 0,
        }
    }

    #[test]
    fn layout_in_the_guest_region() {
        let image = minicap_like();
        let headers = vec![0xabu8; 1024];
        let plan = plan_load(&input(&image, &headers, REGION)).unwrap();
        let kinds: Vec<_> = plan
            .segments
            .iter()
            .map(|s| (s.kind, s.addr, s.len()))
            .collect();
        assert_eq!(
            kinds,
            vec![
                (SegmentKind::Image, 0x3d00_0000, 0x9_a000),
                (SegmentKind::BootParams, 0x3d0a_a000, 0x2000),
                (SegmentKind::CoreHeaders, 0x3eff_f000, 0x1000),
            ]
        );
        assert_eq!(plan.entry, 0x3d00_0000);
        assert_eq!(plan.purgatory_slot, 0x3d09_a000..0x3d0a_a000);
        assert_eq!(
            plan.cmdline,
            "minicap.device=0123456789abcdef0123456789abcdef elfcorehdr=1032188K"
        );
        // The capture kernel's parsers read back what the loader wrote.
        let boot = &plan.segments[1].bytes;
        let params = BootParams::parse(boot).unwrap();
        assert_eq!(params.cmd_line_addr(), 0x3d0a_b000);
        let text = &boot[0x1000..];
        let text =
            std::str::from_utf8(&text[..text.iter().position(|&b| b == 0).unwrap()]).unwrap();
        assert_eq!(text, plan.cmdline);
        assert_eq!(elfcorehdr(text).unwrap().unwrap().addr, 0x3eff_f000);
        let e820: Vec<_> = params.e820_entries().collect();
        assert_eq!(e820, plan.e820);
        assert!(e820.contains(&E820Entry {
            addr: 0x3d00_0000,
            size: 0x01ff_f000,
            kind: E820Kind::Ram
        }));
        // minicap's heap: everything between the command line and the core headers.
        assert_eq!(plan.heap, 0x3d0a_c000..0x3eff_f000);
        // Digests are of the exact segment bytes.
        let seg = &plan.segments[2];
        assert_eq!(seg.digest(), <[u8; 32]>::from(Sha256::digest(&seg.bytes)));
        assert_ne!(plan.segments[0].digest(), plan.segments[1].digest());
    }

    #[test]
    fn region_too_small_says_by_how_much() {
        let image = minicap_like();
        let headers = vec![0u8; 1024];
        let needed = region_bytes_needed(&image, 1024);
        assert_eq!(
            needed,
            0x9_a000 + PURGATORY_RESERVE + 0x2000 + 0x1000 + MIN_HEAP
        );
        let small = REGION.start..REGION.start + needed - 0x1000;
        let e = plan_load(&input(&image, &headers, small)).unwrap_err();
        assert!(
            matches!(e, PlanError::RegionTooSmall { region, needed: n } if region == needed - 0x1000 && n == needed),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .contains("add 4096 bytes (4 KiB) to crashkernel="),
            "{e}"
        );
        let exact = REGION.start..REGION.start + needed;
        let plan = plan_load(&input(&image, &headers, exact)).unwrap();
        assert_eq!(plan.heap.end - plan.heap.start, MIN_HEAP);
    }

    #[test]
    fn sixteen_segments_at_most() {
        // 13 separate image pieces + purgatory + boot_params + headers = 16: accepted.
        let far = |i: u64| (i * 0x10_0000, &b"x"[..], 0x10);
        let loads: Vec<_> = (0..13).map(far).collect();
        let image = Image::parse(&image_with(0, &loads)).unwrap();
        let headers = vec![0u8; 1024];
        let plan = plan_load(&input(&image, &headers, REGION)).unwrap();
        assert_eq!(plan.segments.len() + 1, KEXEC_SEGMENT_MAX);
        // One more piece: 17.
        let loads: Vec<_> = (0..14).map(far).collect();
        let image = Image::parse(&image_with(0, &loads)).unwrap();
        let e = plan_load(&input(&image, &headers, REGION)).unwrap_err();
        assert!(matches!(e, PlanError::TooManySegments(17)), "{e:?}");
        assert!(e.to_string().contains("at most 16"));
    }

    #[test]
    fn the_image_base_respects_its_alignment() {
        let mut bytes = image_with(0x40, &[(0, &[1; 0x100], 0x1000)]);
        // p_align of the single PT_LOAD (header 0, field at 48): 2 MiB.
        bytes[64 + 48..64 + 56].copy_from_slice(&(2u64 << 20).to_le_bytes());
        let image = Image::parse(&bytes).unwrap();
        let region = 0x3d01_0000..0x3f00_0000;
        let plan = plan_load(&input(&image, &[0; 1024], region)).unwrap();
        assert_eq!(plan.segments[0].addr, 0x3d20_0000);
        assert_eq!(plan.entry, 0x3d20_0040);
    }

    #[test]
    fn absurd_alignment_is_too_small_not_a_panic() {
        let mut bytes = image_with(0, &[(0, &[1; 0x100], 0x1000)]);
        bytes[64 + 48..64 + 56].copy_from_slice(&(1u64 << 63).to_le_bytes());
        let image = Image::parse(&bytes).unwrap();
        let e = plan_load(&input(&image, &[0; 1024], REGION)).unwrap_err();
        assert!(matches!(e, PlanError::RegionTooSmall { .. }), "{e:?}");
    }

    #[test]
    fn kexec_rules() {
        let seg = |addr, len: usize| Segment {
            kind: SegmentKind::Image,
            addr,
            bytes: vec![0; len],
        };
        let region = 0x10_0000..0x20_0000;
        assert!(check_kexec_rules(&[seg(0x10_0000, 0x1000)], None, &region).is_ok());
        for (segments, what) in [
            (vec![seg(0x10_0800, 0x1000)], "not whole pages"),
            (vec![seg(0x10_0000, 0x800)], "not whole pages"),
            (vec![seg(0x10_0000, 0)], "not whole pages"),
            (vec![seg(0xf_f000, 0x2000)], "outside the crash region"),
            (vec![seg(0x1f_f000, 0x2000)], "outside the crash region"),
            (
                vec![seg(0x10_0000, 0x2000), seg(0x10_1000, 0x1000)],
                "overlap",
            ),
        ] {
            let e = check_kexec_rules(&segments, None, &region).unwrap_err();
            assert!(e.to_string().contains(what), "{e}");
        }
        let slot = 0x10_0000..0x10_8000;
        let e = check_kexec_rules(&[seg(0x10_7000, 0x1000)], Some(&slot), &region).unwrap_err();
        assert!(e.to_string().contains("purgatory"), "{e}");
        let many: Vec<_> = (0..16)
            .map(|i| seg(0x10_0000 + i * 0x1000, 0x1000))
            .collect();
        assert!(check_kexec_rules(&many, None, &region).is_ok());
        assert!(matches!(
            check_kexec_rules(&many, Some(&(0x1f_0000..0x1f_1000)), &region),
            Err(PlanError::TooManySegments(17))
        ));
    }

    #[test]
    fn an_oversized_command_line_is_refused() {
        let image = minicap_like();
        let long = "minicap.x=".to_owned() + &"y".repeat(2100);
        let mut inp = input(&image, &[0; 1024], REGION);
        inp.append = &long;
        assert!(matches!(
            plan_load(&inp),
            Err(PlanError::BootParams(
                BootParamsBuildError::CommandLineTooLong(_)
            ))
        ));
    }
}

//! `/proc/iomem`: the running kernel's physical address map, as kexec-tools reads it for a crash
//! kernel (`get_crash_memory_ranges()`, `is_crashkernel_mem_reserved()`, `get_kernel_paddr()`
//! in `kexec/arch/i386/crashdump-x86.c`).
//!
//! Format: one resource per line, `START-END : NAME`, both addresses hexadecimal without `0x`
//! and END inclusive, children indented by two spaces per level. Read without
//! `CAP_SYS_ADMIN`, every address shows as 0.
//!
//! What is taken from it, matching names at any depth like kexec-tools:
//! * RAM to dump: every resource whose name contains `System RAM` (top-level RAM, and `System
//!   RAM (kmem)` / `System RAM (virtio_mem)` below other resources), minus every `Crash kernel`
//!   region and the `GART` aperture;
//! * the crash regions: `Crash kernel` (the last one is where the capture kernel is loaded; an
//!   optional second, low one exists with `crashkernel=...,high`);
//! * `Kernel code`: the physical start of the kernel-text PT_LOAD;
//! * the ranges passed on to the capture kernel's e820 map as they are: `ACPI Tables`, `ACPI
//!   Non-volatile Storage`, `reserved`/`Reserved`, `Persistent Memory`, `Persistent Memory
//!   (legacy)`.

use std::fmt;
use std::ops::Range;

use minicap_bootinfo::E820Kind;

/// One line of `/proc/iomem`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Half-open physical range (the file's END is inclusive).
    pub range: Range<u64>,
    /// The resource's name, e.g. `System RAM`.
    pub name: String,
    /// Nesting level: 0 for top-level lines.
    pub depth: usize,
}

/// Why `/proc/iomem` could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IomemError {
    /// A line is not `START-END : NAME`.
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The line.
        text: String,
    },
    /// END is below START, or END is the last address (the half-open end would overflow).
    BadRange {
        /// 1-based line number.
        line: usize,
    },
    /// Every address is 0: the file was read without the privilege to see addresses.
    AddressesHidden,
}

impl fmt::Display for IomemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { line, text } => write!(
                f,
                "/proc/iomem line {line} is not \"START-END : NAME\": {text:?}"
            ),
            Self::BadRange { line } => {
                write!(f, "/proc/iomem line {line}: the end is below the start")
            }
            Self::AddressesHidden => write!(
                f,
                "/proc/iomem shows every address as 0: run minicap as root (CAP_SYS_ADMIN)"
            ),
        }
    }
}

impl std::error::Error for IomemError {}

/// The parsed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iomem {
    resources: Vec<Resource>,
}

impl Iomem {
    /// Parses the text of `/proc/iomem`. Blank lines are skipped.
    pub fn parse(text: &str) -> Result<Self, IomemError> {
        let mut resources = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            if raw.trim().is_empty() {
                continue;
            }
            resources.push(parse_line(raw, index + 1)?);
        }
        let hidden = !resources.is_empty()
            && resources
                .iter()
                .all(|r| r.range.start == 0 && r.range.end == 1);
        if hidden {
            return Err(IomemError::AddressesHidden);
        }
        Ok(Self { resources })
    }

    fn named<'a>(
        &'a self,
        matches: impl Fn(&str) -> bool + 'a,
    ) -> impl Iterator<Item = Range<u64>> + 'a {
        self.resources
            .iter()
            .filter(move |r| matches(&r.name))
            .map(|r| r.range.clone())
    }

    /// The `Crash kernel` regions, in address order.
    pub fn crash_regions(&self) -> Vec<Range<u64>> {
        sorted(self.named(|n| n == "Crash kernel").collect())
    }

    /// Where the capture kernel goes: the last (highest) crash region, as kexec-tools
    /// `get_crash_kernel_load_range()` (the kernel refuses to load into the low one).
    pub fn load_region(&self) -> Option<Range<u64>> {
        self.crash_regions().pop()
    }

    /// Physical range of `Kernel code`.
    pub fn kernel_code(&self) -> Option<Range<u64>> {
        self.named(|n| n == "Kernel code").next()
    }

    /// The RAM the dump describes: `System RAM` minus the crash regions and the GART
    /// aperture, sorted and merged.
    pub fn dump_ram(&self) -> Vec<Range<u64>> {
        let ram = merge(self.named(|n| n.contains("System RAM")).collect());
        let holes: Vec<_> = self.named(|n| n == "Crash kernel" || n == "GART").collect();
        subtract(&ram, &holes)
    }

    /// The ranges kexec-tools passes to the crash kernel's e820 map unchanged, sorted.
    pub fn firmware_ranges(&self) -> Vec<(Range<u64>, E820Kind)> {
        let mut out: Vec<_> = self
            .resources
            .iter()
            .filter_map(|r| Some((r.range.clone(), firmware_kind(&r.name)?)))
            .collect();
        out.sort_by_key(|(r, _)| (r.start, r.end));
        out
    }
}

/// The e820 type kexec-tools gives a resource of this name, if it passes it on.
fn firmware_kind(name: &str) -> Option<E820Kind> {
    match name {
        "ACPI Tables" => Some(E820Kind::Acpi),
        "ACPI Non-volatile Storage" => Some(E820Kind::Nvs),
        "reserved" | "Reserved" => Some(E820Kind::Reserved),
        "Persistent Memory (legacy)" => Some(E820Kind::Pram),
        "Persistent Memory" => Some(E820Kind::Pmem),
        _ => None,
    }
}

fn parse_line(raw: &str, line: usize) -> Result<Resource, IomemError> {
    let malformed = || IomemError::Malformed {
        line,
        text: raw.to_owned(),
    };
    let indent = raw.len() - raw.trim_start_matches(' ').len();
    let (span, name) = raw.trim_start().split_once(" : ").ok_or_else(malformed)?;
    let (start, end) = span.split_once('-').ok_or_else(malformed)?;
    let hex = |s: &str| u64::from_str_radix(s, 16).map_err(|_| malformed());
    let (start, end) = (hex(start)?, hex(end)?);
    let end = end
        .checked_add(1)
        .filter(|&end| end > start)
        .ok_or(IomemError::BadRange { line })?;
    Ok(Resource {
        range: start..end,
        name: name.trim_end().to_owned(),
        depth: indent / 2,
    })
}

fn sorted(mut ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    ranges.sort_by_key(|r| (r.start, r.end));
    ranges
}

/// Sorts and merges overlapping or adjacent ranges.
pub fn merge(ranges: Vec<Range<u64>>) -> Vec<Range<u64>> {
    let mut out: Vec<Range<u64>> = Vec::new();
    for r in sorted(ranges) {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// `ranges` (sorted, disjoint) minus every range of `holes`: kexec-tools `exclude_region()`,
/// which splits a RAM range around a crash region in its middle.
pub fn subtract(ranges: &[Range<u64>], holes: &[Range<u64>]) -> Vec<Range<u64>> {
    let holes = merge(holes.to_vec());
    let mut out = Vec::new();
    for range in ranges {
        let mut at = range.start;
        for hole in holes
            .iter()
            .filter(|h| h.start < range.end && h.end > range.start)
        {
            if hole.start > at {
                out.push(at..hole.start);
            }
            at = at.max(hole.end);
        }
        if at < range.end {
            out.push(at..range.end);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 2-CPU, 1 GiB QEMU guest of the end-to-end tests (Debian 6.1, q35, `crashkernel=32M`),
    /// as its init printed `/proc/iomem` (scenario `capture-modern`).
    pub const GUEST_1G: &str = include_str!("../../tests/data/iomem-guest-1g.txt");
    /// The 3 GiB guest (`-cpu qemu64`, `crashkernel=4M`), RAM above 4 GiB (scenario
    /// `capture-qemu64-4M-3G`).
    pub const GUEST_3G: &str = include_str!("../../tests/data/iomem-guest-3g.txt");
    /// A large server: RAM above 4 GiB in several ranges, reserved holes, ACPI, NVS, PMEM, a
    /// GART aperture, a low and a high crash region, the high one in the middle of a RAM range.
    pub const SERVER: &str = include_str!("../../tests/data/iomem-server.txt");

    #[test]
    fn guest_sample() {
        let iomem = Iomem::parse(GUEST_1G).unwrap();
        assert_eq!(iomem.crash_regions(), vec![0x3d00_0000..0x3f00_0000]);
        assert_eq!(iomem.load_region(), Some(0x3d00_0000..0x3f00_0000));
        assert_eq!(iomem.kernel_code(), Some(0x36c0_0000..0x37a0_1ef2));
        assert_eq!(
            iomem.dump_ram(),
            vec![
                0x1000..0x9_fc00,
                0x10_0000..0x3d00_0000,
                0x3f00_0000..0x3ffd_a000
            ]
        );
        let kinds: Vec<_> = iomem
            .firmware_ranges()
            .into_iter()
            .map(|(_, k)| k)
            .collect();
        assert!(kinds.iter().all(|&k| k == E820Kind::Reserved), "{kinds:?}");
        assert_eq!(iomem.firmware_ranges()[0].0, 0..0x1000);
    }

    #[test]
    fn guest_3g_sample() {
        let iomem = Iomem::parse(GUEST_3G).unwrap();
        assert_eq!(iomem.load_region(), Some(0x7f00_0000..0x7f40_0000));
        assert_eq!(
            iomem.dump_ram(),
            vec![
                0x1000..0x9_fc00,
                0x10_0000..0x7f00_0000,
                0x7f40_0000..0x7ffd_a000,
                0x1_0000_0000..0x1_4000_0000
            ]
        );
    }

    /// The vmcore kexec-tools' headers produced on the same guest in another boot (when an
    /// end-to-end run left it): its RAM PT_LOADs are exactly the sample's RAM minus the crash
    /// region. (KASLR moved the kernel text between the two boots.)
    #[test]
    fn guest_sample_matches_the_real_vmcore() {
        let Some(vmcore) = minicap_realvmcore::RealVmcore::open_if_present() else {
            eprintln!("skipped: no real vmcore");
            return;
        };
        let iomem = Iomem::parse(GUEST_1G).unwrap();
        let (text, ram): (Vec<_>, Vec<_>) = vmcore
            .segments()
            .into_iter()
            .partition(|s| s.vaddr >= 0xffff_ffff_8000_0000);
        let ram: Vec<_> = ram.iter().map(|s| s.paddr..s.paddr + s.memsz).collect();
        assert_eq!(ram, iomem.dump_ram());
        assert_eq!(text.len(), 1);
    }

    #[test]
    fn server_sample() {
        let iomem = Iomem::parse(SERVER).unwrap();
        assert_eq!(
            iomem.crash_regions(),
            vec![0x7000_0000..0x7800_0000, 0x8_4000_0000..0x8_5000_0000]
        );
        assert_eq!(iomem.load_region(), Some(0x8_4000_0000..0x8_5000_0000));
        assert_eq!(
            iomem.dump_ram(),
            vec![
                0x1000..0x9_f000,
                0x10_0000..0x7000_0000,
                0x7800_0000..0x8000_0000,
                0x8800_0000..0xb7e4_e000,
                0xb7f0_0000..0xbae0_0000,
                0x1_0000_0000..0x8_4000_0000,
                0x8_5000_0000..0x10_4000_0000,
                0x10_8000_0000..0x10_c000_0000,
                0x20_0000_0000..0x20_4000_0000,
            ]
        );
        let firmware = iomem.firmware_ranges();
        assert!(firmware.contains(&(0xb7e4_e000..0xb7f0_0000, E820Kind::Acpi)));
        assert!(firmware.contains(&(0xbae0_0000..0xbb00_0000, E820Kind::Nvs)));
        assert!(firmware.contains(&(0x18_0000_0000..0x1c_0000_0000, E820Kind::Pmem)));
        assert!(firmware.contains(&(0xfed0_0000..0xfed0_1000, E820Kind::Reserved)));
        assert!(firmware.windows(2).all(|w| w[0].0.start <= w[1].0.start));
    }

    #[test]
    fn hidden_addresses_are_an_error_with_the_fix() {
        let text = "00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n";
        let e = Iomem::parse(text).unwrap_err();
        assert_eq!(e, IomemError::AddressesHidden);
        assert!(e.to_string().contains("run minicap as root"));
    }

    #[test]
    fn malformed_lines() {
        for (text, line) in [
            ("0-fff : ok\nzz-fff : System RAM\n", 2),
            ("1000-fff\n", 1),
            ("1000 : System RAM\n", 1),
        ] {
            match Iomem::parse(text).unwrap_err() {
                IomemError::Malformed { line: l, .. } => assert_eq!(l, line, "{text:?}"),
                e => panic!("{text:?}: {e}"),
            }
        }
        assert_eq!(
            Iomem::parse("2000-fff : System RAM\n"),
            Err(IomemError::BadRange { line: 1 })
        );
        assert_eq!(
            Iomem::parse("0-ffffffffffffffff : PCI mem\n"),
            Err(IomemError::BadRange { line: 1 })
        );
    }

    #[test]
    fn no_crash_region() {
        let iomem = Iomem::parse("00001000-0009fbff : System RAM\n").unwrap();
        assert_eq!(iomem.load_region(), None);
        assert_eq!(iomem.dump_ram(), vec![0x1000..0x9_fc00]);
    }

    #[test]
    #[allow(clippy::single_range_in_vec_init)] // lists of holes that happen to hold one
    fn subtract_splits_and_trims() {
        let ram = [0..100, 200..300];
        assert_eq!(subtract(&ram, &[50..60]), vec![0..50, 60..100, 200..300]);
        assert_eq!(subtract(&ram, &[90..210]), vec![0..90, 210..300]);
        assert_eq!(subtract(&ram, &[0..300]), Vec::<Range<u64>>::new());
        assert_eq!(merge(vec![5..10, 0..5, 8..12]), vec![0..12]);
    }
}

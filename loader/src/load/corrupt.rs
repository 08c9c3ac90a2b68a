//! Test only: damaging what `minicap load` hands the capture kernel, so that the end-to-end
//! tests can show what the capture does with bad input from a real crashed kernel.
//!
//! `minicap load --test-corrupt-core-headers=KIND[,KIND...]` damages the ELF core headers
//! after they are built, and `--test-omit-elfcorehdr` leaves `elfcorehdr=` off minicap's
//! command line. Both options are hidden from the help text. The damage is done to the
//! planned segments before the purgatory's SHA-256 digests are computed, so the purgatory
//! accepts the segments and the damage reaches the capture kernel exactly as made here.
//!
//! One well-defined defect per KIND ([`CoreHeaderDefect`]), each meant to meet one check of
//! the capture kernel's parser (`minicap_elfcore::parse_core_headers`, the memory planning
//! of `minicap_capture::memory`):
//!
//! | KIND | the damage | what the capture must do |
//! |---|---|---|
//! | `bad-magic` | `e_ident[1..4]` = `BAD` | refuse: `bad-core-headers`, bad magic |
//! | `absurd-phnum` | `e_phnum` = 65534 | refuse: `bad-core-headers`, the table exceeds 1 MiB |
//! | `overlapping-loads` | the last RAM PT_LOAD moved inside the largest other one | refuse: `bad-core-headers`, naming both PT_LOADs and their ranges |
//! | `load-outside-ram` | one more PT_LOAD, over the IO-APIC page `0xfec00000` | dump, with zeros for that page, and name the range |
//! | `note-past-segment` | the first PT_NOTE's `p_memsz` cut to 64 bytes | dump without that note (as `/proc/vmcore`), naming it |

use std::fmt;

use clap::ValueEnum;
use minicap_elfcore::{Phdr, EHDR_LEN, KERNEL_TEXT_MAP, PT_LOAD, PT_NOTE};
use minicap_physmem::{page_floor, PAGE_SIZE};

use super::plan::{LoadPlan, SegmentKind};

/// One way of damaging the ELF core headers (`--test-corrupt-core-headers=KIND`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoreHeaderDefect {
    /// The ELF magic reads `\x7fBAD`.
    BadMagic,
    /// `e_phnum` is 65534: the table would be 3.5 MiB.
    AbsurdPhnum,
    /// The last RAM PT_LOAD describes part of the largest other RAM PT_LOAD.
    OverlappingLoads,
    /// An extra PT_LOAD over the first IO-APIC's registers.
    LoadOutsideRam,
    /// The first PT_NOTE (CPU 0's 368-byte `crash_notes` buffer) is 64 bytes long: the
    /// NT_PRSTATUS note CPU 0 saves there at the crash (356 bytes) runs past it.
    NotePastSegment,
}

/// What `minicap load` was asked to damage, for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestDamage {
    /// Defects made in the ELF core headers, in this order.
    pub core_headers: Vec<CoreHeaderDefect>,
    /// Leave `elfcorehdr=` off minicap's command line.
    pub omit_elfcorehdr: bool,
}

/// `e_phnum` of [`CoreHeaderDefect::AbsurdPhnum`]: below `PN_XNUM`, far above what fits in
/// the capture kernel's 1 MiB header limit.
pub const ABSURD_PHNUM: u16 = 0xfffe;
/// `p_memsz` of the PT_NOTE cut by [`CoreHeaderDefect::NotePastSegment`]: shorter than any
/// `NT_PRSTATUS` note (12 + 8 + 336 bytes).
pub const CUT_NOTE_SIZE: u64 = 64;
/// The page [`CoreHeaderDefect::LoadOutsideRam`] describes: the first IO-APIC's registers
/// on every x86 machine, never RAM.
pub const IOAPIC_PAGE: u64 = 0xfec0_0000;

/// Why the damage asked for cannot be made on these headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageError {
    /// The plan has no segment of this kind.
    NoSegment(SegmentKind),
    /// The headers lack what the defect changes (e.g. a second RAM PT_LOAD).
    Missing {
        /// The defect.
        defect: CoreHeaderDefect,
        /// What is missing.
        what: &'static str,
    },
    /// No room for one more program header in the headers' segment.
    NoRoom,
    /// The command line carries no `elfcorehdr=`.
    NoElfcorehdr,
}

impl fmt::Display for DamageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSegment(kind) => write!(f, "the plan has no {kind} segment"),
            Self::Missing { defect, what } => {
                write!(f, "{}: the headers have no {what}", defect_name(*defect))
            }
            Self::NoRoom => f.write_str(
                "load-outside-ram: no room for one more program header in the headers' segment",
            ),
            Self::NoElfcorehdr => f.write_str("the command line has no elfcorehdr= to omit"),
        }
    }
}

impl std::error::Error for DamageError {}

/// The KIND as written on the command line.
fn defect_name(defect: CoreHeaderDefect) -> String {
    defect
        .to_possible_value()
        .map_or_else(|| format!("{defect:?}"), |v| v.get_name().to_owned())
}

/// Applies `damage` to the planned segments; returns one line per damage made, saying
/// exactly what was changed.
pub fn apply(plan: &mut LoadPlan, damage: &TestDamage) -> Result<Vec<String>, DamageError> {
    let mut done = Vec::new();
    if !damage.core_headers.is_empty() {
        let headers = segment_bytes(plan, SegmentKind::CoreHeaders)?;
        for &defect in &damage.core_headers {
            let what = damage_core_headers(headers, defect)?;
            done.push(format!(
                "test only: ELF core headers damaged ({}): {what}",
                defect_name(defect)
            ));
        }
    }
    if damage.omit_elfcorehdr {
        let boot = segment_bytes(plan, SegmentKind::BootParams)?;
        // The command line is the page after boot_params (plan_load), NUL-terminated.
        let line = boot
            .get_mut(usize::try_from(PAGE_SIZE).unwrap_or(4096)..)
            .ok_or(DamageError::NoElfcorehdr)?;
        let word = blank_elfcorehdr(line)?;
        plan.cmdline = plan.cmdline.replace(&word, "").trim_end().to_owned();
        done.push(format!("test only: {word} left off minicap's command line"));
    }
    Ok(done)
}

fn segment_bytes(plan: &mut LoadPlan, kind: SegmentKind) -> Result<&mut Vec<u8>, DamageError> {
    plan.segments
        .iter_mut()
        .find(|s| s.kind == kind)
        .map(|s| &mut s.bytes)
        .ok_or(DamageError::NoSegment(kind))
}

/// Overwrites the `elfcorehdr=...` word of the NUL-terminated command line in `line` with
/// spaces (the segment keeps its size); returns the word.
fn blank_elfcorehdr(line: &mut [u8]) -> Result<String, DamageError> {
    let len = line.iter().position(|&b| b == 0).unwrap_or(line.len());
    let text = &line[..len];
    let start = text
        .windows(b"elfcorehdr=".len())
        .position(|w| w == b"elfcorehdr=")
        .filter(|&at| at == 0 || text[at - 1] == b' ')
        .ok_or(DamageError::NoElfcorehdr)?;
    let end = text[start..]
        .iter()
        .position(|&b| b == b' ')
        .map_or(len, |n| start + n);
    let word = String::from_utf8_lossy(&line[start..end]).into_owned();
    line[start..end].fill(b' ');
    Ok(word)
}

/// The program headers of `headers`: (index, header) for each entry of the table.
fn program_headers(headers: &[u8]) -> Vec<(usize, Phdr)> {
    let count = usize::from(phnum(headers));
    headers
        .get(EHDR_LEN..)
        .unwrap_or(&[])
        .chunks_exact(56)
        .take(count)
        .filter_map(Phdr::read)
        .enumerate()
        .collect()
}

fn phnum(headers: &[u8]) -> u16 {
    u16::from_le_bytes([headers[56], headers[57]])
}

fn set_phnum(headers: &mut [u8], n: u16) {
    headers[56..58].copy_from_slice(&n.to_le_bytes());
}

fn write_phdr(headers: &mut [u8], index: usize, ph: &Phdr) {
    let mut bytes = Vec::with_capacity(56);
    ph.encode(&mut bytes);
    let at = EHDR_LEN + index * 56;
    headers[at..at + 56].copy_from_slice(&bytes);
}

/// RAM PT_LOADs: not the kernel-text one.
fn ram_loads(headers: &[u8]) -> Vec<(usize, Phdr)> {
    program_headers(headers)
        .into_iter()
        .filter(|(_, ph)| ph.p_type == PT_LOAD && ph.p_vaddr < KERNEL_TEXT_MAP)
        .collect()
}

/// Makes `defect` in `headers` (the headers' segment, ELF header first); returns what was
/// changed.
fn damage_core_headers(
    headers: &mut [u8],
    defect: CoreHeaderDefect,
) -> Result<String, DamageError> {
    let missing = |what| DamageError::Missing { defect, what };
    match defect {
        CoreHeaderDefect::BadMagic => {
            headers[1..4].copy_from_slice(b"BAD");
            Ok("e_ident[0..4] = 7f 42 41 44".to_owned())
        }
        CoreHeaderDefect::AbsurdPhnum => {
            let was = phnum(headers);
            set_phnum(headers, ABSURD_PHNUM);
            Ok(format!("e_phnum {was} -> {ABSURD_PHNUM}"))
        }
        CoreHeaderDefect::OverlappingLoads => {
            let ram = ram_loads(headers);
            let &(last, moved) = ram.last().ok_or(missing("RAM PT_LOAD"))?;
            let &(host, inside) = ram
                .iter()
                .filter(|(i, _)| *i != last)
                .max_by_key(|(_, ph)| ph.p_memsz)
                .ok_or(missing("second RAM PT_LOAD"))?;
            // Half-way into the host, page aligned, ending no later than the host does: the
            // moved PT_LOAD stays in RAM the capture may read, so only the overlap is wrong.
            let start = inside.p_paddr + page_floor(inside.p_memsz / 2);
            let size = moved.p_memsz.min(inside.p_paddr + inside.p_memsz - start);
            let page_offset = moved.p_vaddr.wrapping_sub(moved.p_paddr);
            let ph = Phdr {
                p_offset: start,
                p_paddr: start,
                p_vaddr: page_offset.wrapping_add(start),
                p_filesz: size,
                p_memsz: size,
                ..moved
            };
            write_phdr(headers, last, &ph);
            Ok(format!(
                "PT_LOAD #{last} {:#x}-{:#x} -> {start:#x}-{:#x}, inside PT_LOAD #{host} {:#x}-{:#x}",
                moved.p_paddr,
                moved.p_paddr + moved.p_memsz,
                start + size,
                inside.p_paddr,
                inside.p_paddr + inside.p_memsz
            ))
        }
        CoreHeaderDefect::LoadOutsideRam => {
            let count = phnum(headers);
            let &(_, template) = ram_loads(headers).first().ok_or(missing("RAM PT_LOAD"))?;
            let at = EHDR_LEN + usize::from(count) * 56;
            if at + 56 > headers.len() {
                return Err(DamageError::NoRoom);
            }
            let page_offset = template.p_vaddr.wrapping_sub(template.p_paddr);
            let ph = Phdr {
                p_offset: IOAPIC_PAGE,
                p_paddr: IOAPIC_PAGE,
                p_vaddr: page_offset.wrapping_add(IOAPIC_PAGE),
                p_filesz: PAGE_SIZE,
                p_memsz: PAGE_SIZE,
                ..template
            };
            write_phdr(headers, usize::from(count), &ph);
            set_phnum(headers, count + 1);
            Ok(format!(
                "PT_LOAD #{count} {IOAPIC_PAGE:#x}-{:#x} added (the IO-APIC's registers)",
                IOAPIC_PAGE + PAGE_SIZE
            ))
        }
        CoreHeaderDefect::NotePastSegment => {
            let (index, note) = program_headers(headers)
                .into_iter()
                .find(|(_, ph)| ph.p_type == PT_NOTE)
                .ok_or(missing("PT_NOTE"))?;
            let ph = Phdr {
                p_filesz: CUT_NOTE_SIZE,
                p_memsz: CUT_NOTE_SIZE,
                ..note
            };
            write_phdr(headers, index, &ph);
            Ok(format!(
                "PT_NOTE #{index} at {:#x}: p_memsz {:#x} -> {CUT_NOTE_SIZE:#x}",
                note.p_offset, note.p_memsz
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::image::{tests::image_with, Image};
    use crate::load::plan_for;
    use crate::load::system::read_crash_system;
    use crate::load::testfs::TestRoot;
    use minicap_elfcore::{parse_core_headers, CoreWarning, ElfCoreError, NT_PRSTATUS};
    use minicap_physmem::{MultiMem, SliceMem};

    /// An `NT_PRSTATUS` note as a CPU saves it at the crash, in a 368-byte buffer.
    fn prstatus_buffer() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&5u32.to_le_bytes());
        b.extend_from_slice(&336u32.to_le_bytes());
        b.extend_from_slice(&NT_PRSTATUS.to_le_bytes());
        b.extend_from_slice(b"CORE\0\0\0\0");
        b.resize(12 + 8 + 336, 0x11);
        b.resize(368, 0);
        b
    }

    /// The recorded 3 GiB guest's plan, damaged; then the capture's parser over the
    /// headers and the CPUs' note buffers as they are after a crash.
    fn damaged(damage: &TestDamage) -> (LoadPlan, Vec<String>, Result<CoreWarnings, ElfCoreError>) {
        let root = TestRoot::guest_3g();
        let system = read_crash_system(&root.files()).unwrap();
        let image = Image::parse(&image_with(0, &[(0, &[0x90; 0x1000], 0x9_9990)])).unwrap();
        let (mut plan, _) = plan_for(&system, &image, "minicap.after=reboot").unwrap();
        let done = apply(&mut plan, damage).unwrap();
        let headers = plan
            .segments
            .iter()
            .find(|s| s.kind == SegmentKind::CoreHeaders)
            .unwrap();
        let note = prstatus_buffer();
        let mut regions = vec![SliceMem::new(headers.addr, &headers.bytes)];
        regions.extend(
            system
                .cpu_notes
                .iter()
                .map(|n| SliceMem::new(n.buffer.addr, &note)),
        );
        let parsed =
            parse_core_headers(&MultiMem::new(&regions), headers.addr).map(|core| CoreWarnings {
                warnings: core.warnings,
                loads: core.loads.iter().map(|l| (l.paddr, l.memsz)).collect(),
                cpus: core.cpus.len(),
            });
        (plan, done, parsed)
    }

    /// What a successful parse kept.
    #[derive(Debug)]
    struct CoreWarnings {
        warnings: Vec<CoreWarning>,
        loads: Vec<(u64, u64)>,
        cpus: usize,
    }

    fn headers(defect: CoreHeaderDefect) -> (Vec<String>, Result<CoreWarnings, ElfCoreError>) {
        let (_, done, parsed) = damaged(&TestDamage {
            core_headers: vec![defect],
            omit_elfcorehdr: false,
        });
        (done, parsed)
    }

    #[test]
    fn undamaged_headers_parse_with_every_cpu() {
        let (plan, done, parsed) = damaged(&TestDamage::default());
        assert!(done.is_empty());
        let core = parsed.unwrap();
        assert_eq!(core.cpus, 2);
        assert_eq!(core.loads.len(), 5);
        assert!(plan.cmdline.contains("elfcorehdr="));
    }

    #[test]
    fn bad_magic_is_refused() {
        let (done, parsed) = headers(CoreHeaderDefect::BadMagic);
        assert_eq!(
            done,
            ["test only: ELF core headers damaged (bad-magic): e_ident[0..4] = 7f 42 41 44"]
        );
        assert_eq!(
            parsed.unwrap_err(),
            ElfCoreError::BadMagic([0x7f, b'B', b'A', b'D'])
        );
    }

    #[test]
    fn absurd_phnum_is_refused() {
        let (done, parsed) = headers(CoreHeaderDefect::AbsurdPhnum);
        assert!(done[0].ends_with("e_phnum 8 -> 65534"), "{done:?}");
        assert_eq!(
            parsed.unwrap_err(),
            ElfCoreError::HeadersTooLarge {
                phoff: 64,
                phnum: ABSURD_PHNUM
            }
        );
    }

    #[test]
    fn overlapping_loads_are_refused_naming_both() {
        // The 3 GiB guest: CPU notes #0 #1, VMCOREINFO #2, kernel text #3, RAM #4..#7;
        // the largest RAM range is #5 (0x100000-0x7f000000), the last #7 (4 GiB up).
        let (done, parsed) = headers(CoreHeaderDefect::OverlappingLoads);
        assert_eq!(
            done,
            [
                "test only: ELF core headers damaged (overlapping-loads): PT_LOAD #7 \
              0x100000000-0x140000000 -> 0x3f880000-0x7f000000, inside PT_LOAD #5 \
              0x100000-0x7f000000"
            ]
        );
        assert_eq!(
            parsed.unwrap_err(),
            ElfCoreError::OverlappingLoads {
                first: 5,
                first_range: (0x10_0000, 0x7f00_0000),
                second: 7,
                second_range: (0x3f88_0000, 0x7f00_0000),
            }
        );
    }

    #[test]
    fn a_load_outside_ram_is_parsed_for_the_capture_to_skip() {
        let (done, parsed) = headers(CoreHeaderDefect::LoadOutsideRam);
        assert!(
            done[0].ends_with("PT_LOAD #8 0xfec00000-0xfec01000 added (the IO-APIC's registers)"),
            "{done:?}"
        );
        let core = parsed.unwrap();
        assert_eq!(core.loads.last(), Some(&(IOAPIC_PAGE, PAGE_SIZE)));
        assert_eq!(core.loads.len(), 6);
        assert_eq!(core.cpus, 2);
    }

    #[test]
    fn the_capture_skips_the_load_outside_ram_and_reads_the_rest() {
        let (plan, _, _) = damaged(&TestDamage {
            core_headers: vec![CoreHeaderDefect::LoadOutsideRam],
            omit_elfcorehdr: false,
        });
        let headers = plan
            .segments
            .iter()
            .find(|s| s.kind == SegmentKind::CoreHeaders)
            .unwrap();
        let mem = SliceMem::new(headers.addr, &headers.bytes);
        let core = parse_core_headers(&mem, headers.addr).unwrap();
        // The memory map minicap load hands the capture kernel decides what is read.
        let skipped = minicap_capture::memory::outside_ram(
            headers.addr,
            plan.e820.iter().copied(),
            &core.loads,
        )
        .unwrap();
        let ranges: Vec<_> = skipped.iter().map(|r| (r.start, r.end)).collect();
        assert_eq!(ranges, [(IOAPIC_PAGE, IOAPIC_PAGE + PAGE_SIZE)]);
    }

    #[test]
    fn a_note_past_its_segment_is_dropped_and_named() {
        let (done, parsed) = headers(CoreHeaderDefect::NotePastSegment);
        assert!(done[0].contains("PT_NOTE #0 at 0x"), "{done:?}");
        assert!(done[0].ends_with("p_memsz 0x170 -> 0x40"), "{done:?}");
        let core = parsed.unwrap();
        assert_eq!(core.cpus, 1);
        assert_eq!(
            core.warnings[0],
            CoreWarning::NoteExceedsSegment {
                phdr: 0,
                offset: 0,
                namesz: 5,
                descsz: 336
            }
        );
        assert_eq!(
            core.warnings[0].to_string(),
            "PT_NOTE #0: note at offset 0x0 (n_namesz 0x5, n_descsz 0x150) exceeds p_memsz, dropped"
        );
    }

    #[test]
    fn defects_combine_in_order() {
        let (_, done, parsed) = damaged(&TestDamage {
            core_headers: vec![
                CoreHeaderDefect::LoadOutsideRam,
                CoreHeaderDefect::NotePastSegment,
            ],
            omit_elfcorehdr: false,
        });
        assert_eq!(done.len(), 2);
        let core = parsed.unwrap();
        assert_eq!((core.loads.len(), core.cpus), (6, 1));
    }

    #[test]
    fn elfcorehdr_is_blanked_from_the_command_line_page() {
        let (plan, done, parsed) = damaged(&TestDamage {
            core_headers: Vec::new(),
            omit_elfcorehdr: true,
        });
        // The headers themselves are intact: only the capture kernel's way to them is gone.
        assert!(parsed.is_ok());
        assert_eq!(plan.cmdline, "minicap.after=reboot");
        assert!(done[0].starts_with("test only: elfcorehdr="), "{done:?}");
        let boot = plan
            .segments
            .iter()
            .find(|s| s.kind == SegmentKind::BootParams)
            .unwrap();
        let line = &boot.bytes[4096..];
        let text = &line[..line.iter().position(|&b| b == 0).unwrap()];
        let text = std::str::from_utf8(text).unwrap();
        assert_eq!(text.trim_end(), "minicap.after=reboot");
        assert_eq!(
            minicap_bootinfo::cmdline::elfcorehdr(text).unwrap(),
            None,
            "{text:?}"
        );
    }

    #[test]
    fn blanking_needs_a_whole_word() {
        let mut line = *b"xelfcorehdr=5 a\0";
        assert_eq!(blank_elfcorehdr(&mut line), Err(DamageError::NoElfcorehdr));
        let mut line = *b"a elfcorehdr=12K\0\0";
        assert_eq!(blank_elfcorehdr(&mut line).unwrap(), "elfcorehdr=12K");
        assert_eq!(&line, b"a               \0\0");
    }

    #[test]
    fn missing_parts_are_typed_errors() {
        let mut only_header = vec![0u8; 64];
        only_header[..4].copy_from_slice(b"\x7fELF");
        assert_eq!(
            damage_core_headers(&mut only_header, CoreHeaderDefect::OverlappingLoads),
            Err(DamageError::Missing {
                defect: CoreHeaderDefect::OverlappingLoads,
                what: "RAM PT_LOAD"
            })
        );
        assert_eq!(
            damage_core_headers(&mut only_header, CoreHeaderDefect::NotePastSegment)
                .unwrap_err()
                .to_string(),
            "note-past-segment: the headers have no PT_NOTE"
        );
    }
}

//! The filtered ELF vmcore: the PT_LOADs cut as makedumpfile cuts them (fake memory, and
//! the real vmcore against `makedumpfile -E -d 31` itself), the extended numbering, and the
//! device path against the fake device.

#![allow(clippy::single_range_in_vec_init)] // one RAM range is the common case here

use super::*;
use crate::failure::DeviceName;
use crate::kdump_plan::{dump_ram, plan_filter};
use crate::memory::SkippedRanges;
use crate::profile::Profile;
use crate::writer::fakes::{phys, Device, Env, OldRam, VecSink, OLD_BASE, OLD_PAGES, TRIAGE_TEXT};
use crate::writer::{write_filtered_elf_dump, FilteredElfDump, KeepAll};
use minicap_dumpheader::{DumpHeader, DumpState, Verification, DUMP_OFFSET};
use minicap_elfcore::{section_header_info, FileHeader, PHDR_LEN};
use minicap_realvmcore::{expected_dmesg, tool_present, RealVmcore};
use sha2::{Digest, Sha256};
use std::process::Command;

const FIRST: u64 = OLD_BASE / 4096;
const NOTES: &[u8] = b"fake notes: CORE and VMCOREINFO would be here; OSRELEASE=6.1.0-test\n";

/// Leaves out every frame of its ranges.
struct DropRanges(Vec<Range<u64>>);

impl FrameFilter for DropRanges {
    fn exclude(&mut self, pfns: Range<u64>, exclude: &mut dyn FnMut(Range<u64>)) {
        for r in &self.0 {
            let r = r.start.max(pfns.start)..r.end.min(pfns.end);
            if r.start < r.end {
                exclude(r);
            }
        }
    }
}

fn core_of(loads: Vec<LoadSegment>) -> CoreHeaders {
    CoreHeaders {
        header_size: 64,
        e_ident: [0; 16],
        e_entry: 0,
        e_flags: 0,
        loads,
        notes: NOTES.to_vec(),
        cpus: Vec::new(),
        vmcoreinfo: Some(12..NOTES.len()),
        warnings: Vec::new(),
    }
}

fn load(paddr: u64, memsz: u64, vaddr: u64) -> LoadSegment {
    LoadSegment {
        paddr,
        vaddr,
        memsz,
        source: paddr,
        flags: 7,
    }
}

/// The file for `core` at `level` with `filter`, in memory; its stats.
fn build<M: PhysMem + ?Sized, F: FrameFilter>(
    mem: &M,
    core: &CoreHeaders,
    ram: &[Range<u64>],
    level: u8,
    filter: F,
    cycle_frames: u64,
) -> (Vec<u8>, ElfStats) {
    let mut elf = FilteredElf {
        core,
        ram,
        old: OldMemory::new(mem, &core.loads, None),
        filter,
        dump_level: level,
        options: ElfFilterOptions { cycle_frames },
    };
    let layout = elf.count().unwrap();
    let mut sink = VecSink(Vec::new());
    let progress = Cell::new(0);
    let stats = elf.write(&mut sink, &layout, &progress).unwrap();
    assert_eq!(sink.0.len() as u64, layout.file_len);
    assert_eq!(progress.get(), elf.frames_to_walk());
    (sink.0, stats)
}

/// The PT_NOTE and PT_LOAD program headers of an ELF file (extended numbering read).
fn phdrs(file: &[u8]) -> Vec<Phdr> {
    let eh = FileHeader::read(file).unwrap();
    let count = if eh.e_phnum == PN_XNUM {
        let at = usize::try_from(eh.e_shoff).unwrap();
        u64::from(section_header_info(&file[at..at + 64]).unwrap())
    } else {
        u64::from(eh.e_phnum)
    };
    (0..count)
        .map(|i| {
            let at = usize::try_from(eh.program_header_offset(i).unwrap()).unwrap();
            Phdr::read(&file[at..at + PHDR_LEN]).unwrap()
        })
        .collect()
}

fn loads_of(file: &[u8]) -> Vec<Phdr> {
    phdrs(file)
        .into_iter()
        .filter(|p| p.p_type == PT_LOAD)
        .collect()
}

/// Old memory's page `pfn` (the fakes' pattern: every third page zero).
fn old_page(pfn: u64) -> Vec<u8> {
    phys().borrow().read(pfn * 4096, 4096)
}

#[test]
fn long_excluded_runs_cut_the_load_short_ones_stay_as_zeros() {
    let phys = phys();
    let mem = OldRam(phys.clone());
    let vaddr = 0xffff_8880_0000_0000 + OLD_BASE;
    let core = core_of(vec![load(OLD_BASE, OLD_PAGES * 4096, vaddr)]);
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    // Frames 50..310 left out (a long run), 320..329 (a short one), and the last 256.
    let dropped = vec![
        FIRST + 50..FIRST + 310,
        FIRST + 320..FIRST + 329,
        FIRST + OLD_PAGES - 256..FIRST + OLD_PAGES,
    ];
    for cycle in [8, 64, 1 << 17] {
        // Level 16 (no zero-page bit): the zero pages stay.
        let (file, stats) = build(&mem, &core, &ram, 16, DropRanges(dropped.clone()), cycle);
        let loads = loads_of(&file);
        let page = 4096;
        let want = [
            // Up to the long run, which it includes in memsz only.
            (OLD_BASE, vaddr, 310 * page, 50 * page),
            // From frame 310 to the end, the short run inside, the last 256 in memsz only.
            (
                OLD_BASE + 310 * page,
                vaddr + 310 * page,
                290 * page,
                34 * page,
            ),
        ];
        let got: Vec<_> = loads
            .iter()
            .map(|p| (p.p_paddr, p.p_vaddr, p.p_memsz, p.p_filesz))
            .collect();
        assert_eq!(got, want, "cycle {cycle}");
        assert_eq!(stats.gap_pages, 9);
        assert_eq!(stats.filtered_pages, 260 + 9 + 256);
        assert_eq!(stats.dumped_pages, 50 + 34 - 9);
        // Contents: dumped frames as in memory, the short run zeros.
        for p in &loads {
            for i in 0..p.p_filesz / page {
                let pfn = p.p_paddr / page + i;
                let at = usize::try_from(p.p_offset + i * page).unwrap();
                let got = &file[at..at + 4096];
                let dropped = (FIRST + 320..FIRST + 329).contains(&pfn);
                if dropped {
                    assert!(got.iter().all(|&b| b == 0), "frame {pfn:#x}");
                } else {
                    assert!(got == old_page(pfn).as_slice(), "frame {pfn:#x}");
                }
            }
        }
        let notes = phdrs(&file)[0];
        assert_eq!(notes.p_type, PT_NOTE);
        let at = usize::try_from(notes.p_offset).unwrap();
        assert_eq!(&file[at..at + NOTES.len()], NOTES);
    }
}

#[test]
fn zero_pages_leave_at_bit_1_and_a_partial_head_and_tail_are_kept_as_makedumpfile_does() {
    let phys = phys();
    let mem = OldRam(phys.clone());
    // Starts 0x800 into frame 0, ends 0xc00 into frame 598.
    let start = OLD_BASE + 0x800;
    let len = 598 * 4096 + 0x400;
    let core = core_of(vec![load(start, len, 0xffff_8880_0000_0000 + start)]);
    let ram = [start..start + len];
    let (file, stats) = build(&mem, &core, &ram, 1, KeepAll, 1 << 17);
    let loads = loads_of(&file);
    // Every third page is zero: single excluded frames, kept inside (as zeros anyway).
    assert_eq!(loads.len(), 1);
    let p = loads[0];
    assert_eq!((p.p_paddr, p.p_memsz), (start, len));
    // The partial last frame is not a whole RAM frame and frame 597 is zero: memsz only.
    assert_eq!(p.p_filesz, len - 0xc00 - 4096);
    assert_eq!(p.p_offset % 4096, 0x800);
    let at = usize::try_from(p.p_offset).unwrap();
    assert_eq!(
        &file[at..at + 0x800],
        &old_page(FIRST)[0x800..],
        "the partial head"
    );
    assert!(stats.zero_pages > 150);
    // With every third frame zero, a cycle of 8 frames changes nothing.
    let (again, _) = build(&mem, &core, &ram, 1, KeepAll, 8);
    assert!(again == file);
}

#[test]
fn more_than_65534_loads_use_extended_numbering() {
    let phys = phys();
    let mem = OldRam(phys.clone());
    // 70000 one-page PT_LOADs, all on zero pages: each a PT_LOAD without file bytes.
    let loads: Vec<_> = (0..70_000u64)
        .map(|i| {
            let paddr = OLD_BASE + (i % 200) * 3 * 4096;
            load(paddr, 4096, 0xffff_8880_0000_0000 + paddr)
        })
        .collect();
    let core = core_of(loads);
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let (file, stats) = build(&mem, &core, &ram, 1, KeepAll, 64);
    let eh = FileHeader::read(&file).unwrap();
    assert_eq!(eh.e_phnum, PN_XNUM);
    assert_eq!((eh.e_shnum, eh.e_shentsize), (1, 64));
    assert_eq!(eh.e_shoff, 64 + 70_001 * 56);
    let all = phdrs(&file);
    assert_eq!(all.len(), 70_001);
    assert!(all[1..]
        .iter()
        .all(|p| p.p_type == PT_LOAD && p.p_filesz == 0 && p.p_offset == 0 && p.p_memsz == 4096));
    assert_eq!(stats.zero_pages, 70_000);
    assert_eq!(stats.dumped_pages, 0);
    // readelf reads the count from section header 0.
    let dir = std::env::temp_dir().join(format!("minicap-xnum-{}", std::process::id()));
    std::fs::write(&dir, &file).unwrap();
    if let Ok(out) = Command::new("readelf").arg("-h").arg(&dir).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("70001"), "{text}");
    }
    let _ = std::fs::remove_file(&dir);
}

/// Runs the device path; returns the device, the log and the summary.
fn on_device(
    verify: Verification,
    setup: impl FnOnce(&mut Device),
) -> (
    Device,
    Env,
    Result<crate::writer::FilteredElfSummary, crate::Failure>,
) {
    let phys = phys();
    let mem = OldRam(phys.clone());
    let core = core_of(vec![load(
        OLD_BASE,
        OLD_PAGES * 4096,
        0xffff_8880_0000_0000 + OLD_BASE,
    )]);
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let mut device = Device::new(&phys, 4);
    setup(&mut device);
    let mut env = Env::new(&phys);
    let triage = env.triage();
    let mut header = DumpHeader::new_empty([7; 16], device.capacity, "minicap test");
    header.format = minicap_dumpheader::DumpFormat::ElfVmcore;
    header.dump_offset = DUMP_OFFSET;
    header.dump_length = OLD_PAGES * 4096 + (1 << 20);
    let name = DeviceName::display("fake disk");
    let dump = FilteredElfDump {
        elf: FilteredElf {
            core: &core,
            ram: &ram,
            old: OldMemory::new(&mem, &core.loads, None),
            filter: DropRanges(vec![FIRST + 100..FIRST + 400]),
            dump_level: 31,
            options: ElfFilterOptions { cycle_frames: 64 },
        },
        device_name: &name,
        verify,
    };
    let mut profile = Profile::new(0);
    let result = write_filtered_elf_dump(
        &mut device,
        &mut env,
        &mut header,
        Some(&triage),
        dump,
        &mut profile,
    );
    (device, env, result)
}

#[test]
fn the_device_holds_the_file_and_a_header_that_says_so() {
    let phys = phys();
    let mem = OldRam(phys.clone());
    let core = core_of(vec![load(
        OLD_BASE,
        OLD_PAGES * 4096,
        0xffff_8880_0000_0000 + OLD_BASE,
    )]);
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let (expected, expected_stats) = build(
        &mem,
        &core,
        &ram,
        31,
        DropRanges(vec![FIRST + 100..FIRST + 400]),
        64,
    );
    for verify in [
        Verification::Sha256,
        Verification::Xxh64Chunks,
        Verification::None,
    ] {
        let (device, env, result) = on_device(verify, |_| {});
        let summary = result.unwrap_or_else(|f| panic!("{f}\n{}", env.log));
        assert_eq!(summary.stats, expected_stats);
        let h = device.header();
        assert_eq!(h.state, DumpState::Complete);
        assert_eq!(h.dump_length, expected.len() as u64);
        assert_eq!(h.written, h.dump_length);
        assert!(device.dump(h.dump_length) == expected.as_slice());
        assert_eq!(h.pages_ram, OLD_PAGES);
        assert_eq!(h.pages_dumped, expected_stats.dumped_pages);
        assert_eq!(h.triage_length as usize, TRIAGE_TEXT.len());
        if verify == Verification::Sha256 {
            let sha: [u8; 32] = Sha256::digest(&expected).into();
            assert_eq!(h.sha256, sha);
        }
        assert!(env.log.contains("filtered ELF vmcore of"), "{}", env.log);
        assert!(env.log.contains("% of memory:"), "{}", env.log);
    }
}

#[test]
fn a_device_too_small_fails_before_the_pages_and_keeps_the_triage_text() {
    let (device, _env, result) = on_device(Verification::None, |d| {
        d.capacity = DUMP_OFFSET + (256 << 10);
    });
    let failure = result.unwrap_err();
    assert!(
        matches!(failure, crate::Failure::DumpDeviceFull { .. }),
        "{failure}"
    );
    let h = device.header();
    assert_eq!(h.state, DumpState::Failed);
    assert_eq!(h.triage_length as usize, TRIAGE_TEXT.len());
    assert_eq!(h.written, 0);
}

/// The real vmcore at level 31: the PT_LOADs are makedumpfile's, page for page; the pages
/// hold what makedumpfile's hold, or zeros where a short run of excluded frames stays; and
/// makedumpfile reads the log out of it.
#[test]
fn the_real_vmcore_at_level_31_is_cut_as_makedumpfile_cuts_it_if_present() {
    let Some(real) = RealVmcore::open_if_present() else {
        return;
    };
    if !tool_present("makedumpfile") {
        return;
    }
    let core = CoreHeaders {
        vmcoreinfo: Some(real.vmcoreinfo_range()),
        ..core_of(real.segments())
    };
    let core = CoreHeaders {
        notes: real.notes.clone(),
        ..core
    };
    let ram = dump_ram(&core, &SkippedRanges::new());
    let plan = plan_filter(&real, &core, &ram, 31);
    assert_eq!(plan.level.applied, 31, "{}", plan.level.note.as_str());
    let mut elf = FilteredElf {
        core: &core,
        ram: &ram,
        old: plan.old,
        filter: plan.filter,
        dump_level: 31,
        options: ElfFilterOptions::default(),
    };
    let layout = elf.count().unwrap();
    let mut sink = VecSink(Vec::new());
    let stats = elf.write(&mut sink, &layout, &Cell::new(0)).unwrap();
    let ours = sink.0;

    let dir = std::env::temp_dir().join(format!("minicap-elf31-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let reference = dir.join("makedumpfile-E-d31");
    let _ = std::fs::remove_file(&reference);
    let status = Command::new("makedumpfile")
        .args(["-E", "-d", "31"])
        .arg(minicap_realvmcore::dir().join("vmcore"))
        .arg(&reference)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    let theirs = std::fs::read(&reference).unwrap();

    let mine = loads_of(&ours);
    let their_loads = loads_of(&theirs);
    let key = |p: &Phdr| (p.p_paddr, p.p_vaddr, p.p_memsz, p.p_filesz, p.p_flags);
    assert_eq!(
        mine.iter().map(key).collect::<Vec<_>>(),
        their_loads.iter().map(key).collect::<Vec<_>>()
    );
    let mut zeroed = 0u64;
    for (m, t) in mine.iter().zip(&their_loads) {
        let mut done = 0;
        while done < m.p_filesz {
            let n = (m.p_filesz - done).min(4096) as usize;
            let a = usize::try_from(m.p_offset + done).unwrap();
            let b = usize::try_from(t.p_offset + done).unwrap();
            let (ours, theirs) = (&ours[a..a + n], &theirs[b..b + n]);
            if ours != theirs {
                assert!(
                    ours.iter().all(|&x| x == 0),
                    "page {:#x} differs",
                    m.p_paddr + done
                );
                zeroed += 1;
            }
            done += n as u64;
        }
    }
    // The excluded frames inside PT_LOADs are zeros here, their contents in makedumpfile's.
    assert!(zeroed <= stats.gap_pages, "{zeroed} > {}", stats.gap_pages);
    eprintln!(
        "filtered ELF of the real vmcore: {} bytes (makedumpfile -E -d 31: {}), {} PT_LOADs, {} pages dumped, {} zeros in place of excluded frames ({zeroed} of them not zero in makedumpfile's)",
        ours.len(),
        theirs.len(),
        mine.len(),
        stats.dumped_pages,
        stats.gap_pages
    );

    let path = dir.join("minicap-elf31");
    std::fs::write(&path, &ours).unwrap();
    if let Some(expected) = expected_dmesg() {
        let out = dir.join("dmesg");
        let _ = std::fs::remove_file(&out);
        let run = Command::new("makedumpfile")
            .arg("--dump-dmesg")
            .arg(&path)
            .arg(&out)
            .output()
            .unwrap();
        assert!(run.status.success(), "{run:?}");
        assert!(std::fs::read(&out).unwrap() == expected, "the log differs");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

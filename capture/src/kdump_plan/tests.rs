//! The plan on a core without VMCOREINFO (filtering off, said why) and on the real
//! vmcore of a crashed 6.1 kernel (every bit applies; two passes of the filter agree).

#![allow(clippy::single_range_in_vec_init)] // one RAM range is the common case here

use super::*;
use minicap_elfcore::LoadSegment;
use minicap_realvmcore::RealVmcore;

fn core(loads: Vec<LoadSegment>, notes: Vec<u8>, vmcoreinfo: Option<Range<usize>>) -> CoreHeaders {
    CoreHeaders {
        header_size: 64,
        e_ident: [0; 16],
        e_entry: 0,
        e_flags: 0,
        loads,
        notes,
        cpus: Vec::new(),
        vmcoreinfo,
        warnings: Vec::new(),
    }
}

fn load(paddr: u64, memsz: u64, source: u64) -> LoadSegment {
    LoadSegment {
        paddr,
        vaddr: 0xffff_8880_0000_0000 + paddr,
        memsz,
        source,
        flags: 7,
    }
}

struct NoMemory;

impl PhysMem for NoMemory {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), minicap_physmem::PhysMemError> {
        Err(minicap_physmem::PhysMemError {
            addr: paddr,
            len: buf.len() as u64,
        })
    }
}

#[test]
fn ram_is_the_loads_without_the_skipped_ranges_merged() {
    let mut skipped = SkippedRanges::new();
    skipped.insert(0x3000..0x5000).unwrap();
    // The backup copy: paddr 0..0x2000 read from 0x90_0000; skipped by source address.
    skipped.insert(0x90_1000..0x90_2000).unwrap();
    let c = core(
        vec![
            load(0x1_0000, 0x1_0000, 0x1_0000),
            load(0x2000, 0x8000, 0x2000),
            load(0, 0x2000, 0x90_0000),
            // The kernel text, inside the first load.
            load(0x1_4000, 0x1000, 0x1_4000),
        ],
        Vec::new(),
        None,
    );
    assert_eq!(
        dump_ram(&c, &skipped),
        vec![
            0..0x1000,
            0x2000..0x3000,
            0x5000..0xa000,
            0x1_0000..0x2_0000
        ]
    );
}

#[test]
fn without_vmcoreinfo_only_zero_pages_are_left_out_and_the_note_says_why() {
    let c = core(
        vec![load(0x10_0000, 0x10_0000, 0x10_0000)],
        Vec::new(),
        None,
    );
    let ram = [0x10_0000..0x20_0000];
    let plan = plan_kdump(&NoMemory, &c, &ram, 31);
    assert_eq!(plan.level.requested, 31);
    assert_eq!(plan.level.applied, 1);
    assert!(!plan.level.note.as_str().is_empty());
    assert!(matches!(plan.filter, PlannedFilter::None));
    assert_eq!(plan.info.dump_level, 1);
    // No utsname to read: "Linux" and the machine.
    assert_eq!(&plan.info.utsname.0[0][..6], b"Linux\0");
    let plan = plan_kdump(&NoMemory, &c, &ram, 0);
    assert_eq!((plan.level.applied, plan.level.note.as_str()), (0, ""));
}

#[test]
fn the_real_vmcore_gets_every_bit_and_two_passes_agree_if_present() {
    let Some(real) = RealVmcore::open_if_present() else {
        return;
    };
    let c = core(
        real.segments(),
        real.notes.clone(),
        Some(real.vmcoreinfo_range()),
    );
    let ram = dump_ram(&c, &SkippedRanges::new());
    let mut plan = plan_kdump(&real, &c, &ram, 31);
    assert_eq!(
        (plan.level.applied, plan.level.note.as_str()),
        (31, ""),
        "{}",
        plan.level.note.as_str()
    );
    assert_eq!(&plan.info.utsname.0[2][..20], b"6.1.0-57-cloud-amd64");
    let max_pfn = ram.iter().map(|r| r.end / 4096).max().unwrap();
    let count = |filter: &mut PlannedFilter<'_, RealVmcore>| {
        let mut excluded = 0;
        for start in (0..max_pfn).step_by(1 << 15) {
            filter.exclude(start..(start + (1 << 15)).min(max_pfn), &mut |r| {
                excluded += r.end - r.start;
            });
        }
        excluded
    };
    let first = count(&mut plan.filter);
    plan.filter.restart();
    let second = count(&mut plan.filter);
    assert_eq!(first, second);
    // Most of a freshly booted guest is free or user memory.
    assert!(first > max_pfn / 2, "{first} of {max_pfn}");
}

//! End-to-end: a kexec-tools-like elfcorehdr in fake memory, parsed, then planned as
//! /proc/vmcore would present it.

mod common;

use common::*;
use minicap_elfcore::{
    parse_core_headers, plan_vmcore, CoreHeaders, CoreWarning, LoadSegment, PhysMem, VmcoreLayout,
};

const HDR: u64 = 0x3f00_0000;
const CPU0: u64 = 0x0234_5e00;
const CPU1: u64 = 0x0234_6e00;
const CPU2: u64 = 0x0234_7e00;
const VMCI: u64 = 0x0312_4000;
const BACKUP: u64 = 0x3e00_0000;
const TEXT_VADDR: u64 = 0xffff_ffff_8100_0000;
const PAGE_OFFSET: u64 = 0xffff_8880_0000_0000;
const TEXT: &[u8] = b"OSRELEASE=6.1.0\nPAGESIZE=4096\nCRASHTIME=123\n";

fn scenario_phdrs() -> Vec<Ph> {
    vec![
        Ph::note(CPU0, 368),
        Ph::note(CPU1, 368),
        Ph::note(CPU2, 368),
        Ph::note(VMCI, 4132),
        // Kernel text, duplicating part of the RAM PT_LOAD below.
        Ph::load(0x0100_0000, TEXT_VADDR, 0x0200_0000, 0x0100_0000),
        // Backup region: low RAM 0x1000-0x9ffff, data copied into the crash region.
        Ph::load(0x1000, PAGE_OFFSET + 0x1000, 0x9f000, BACKUP),
        // RAM with an aligned start and an unaligned end (0x100000-0x3dffefff... ends mid page).
        Ph::load(
            0x0010_0000,
            PAGE_OFFSET + 0x0010_0000,
            0x3def_f800,
            0x0010_0000,
        ),
        // RAM with unaligned start and end.
        Ph::load(
            0x4000_0c00,
            PAGE_OFFSET + 0x4000_0c00,
            0x1_2345,
            0x4000_0c00,
        ),
        // High RAM.
        Ph::load(
            0x1_0000_0000,
            PAGE_OFFSET + 0x1_0000_0000,
            0x4000_0000,
            0x1_0000_0000,
        ),
    ]
}

fn scenario_mem(phdrs: &[Ph]) -> Fake {
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(phdrs))
        .put(
            CPU0,
            cpu_buf(1234, 0xffff_ffff_8123_4567, 0xffff_c900_0012_3f58, 1),
        )
        .put(CPU1, vec![0u8; 368])
        .put(
            CPU2,
            cpu_buf(0, 0xffff_ffff_81ab_cdef, 0xffff_ffff_8260_3e88, 2),
        )
        .put(VMCI, vmcoreinfo_buf(TEXT));
    m
}

fn scenario() -> (Fake, CoreHeaders) {
    let m = scenario_mem(&scenario_phdrs());
    let h = parse_core_headers(&m, HDR).unwrap();
    (m, h)
}

#[test]
fn parses_kexec_tools_layout() {
    let (_, h) = scenario();
    assert_eq!(h.header_size, 64 + 9 * 56);
    assert_eq!(&h.e_ident[..8], &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);

    // Merged notes: CPU0's note, CPU2's note, VMCOREINFO; no terminators, nothing from CPU1.
    let mut expected = prstatus_note(1234, 0xffff_ffff_8123_4567, 0xffff_c900_0012_3f58, 1);
    expected.extend(prstatus_note(
        0,
        0xffff_ffff_81ab_cdef,
        0xffff_ffff_8260_3e88,
        2,
    ));
    expected.extend(vmcoreinfo_note(TEXT));
    assert_eq!(h.notes, expected);
    assert_eq!(
        h.notes.len(),
        356 + 356 + 12 + 12 + TEXT.len().div_ceil(4) * 4
    );

    assert_eq!(h.cpus.len(), 2);
    assert_eq!(h.cpus[0].pid, 1234);
    assert_eq!(h.cpus[0].rip(), 0xffff_ffff_8123_4567);
    assert_eq!(h.cpus[0].rsp(), 0xffff_c900_0012_3f58);
    assert_eq!(h.cpus[0].reg("r15"), Some(0x100));
    assert_eq!(h.cpus[0].reg("gs"), Some(0x100 + 26));
    assert_eq!(h.cpus[1].pid, 0);
    assert_eq!(h.cpus[1].rip(), 0xffff_ffff_81ab_cdef);
    assert_eq!(h.cpus[1].rsp(), 0xffff_ffff_8260_3e88);

    let vr = h.vmcoreinfo.clone().unwrap();
    assert_eq!(vr.start, 356 + 356 + 12 + 12);
    assert_eq!(vr.len(), TEXT.len());
    assert_eq!(h.vmcoreinfo_text(), Some(TEXT));
    assert_eq!(h.vmcoreinfo_value("OSRELEASE"), Some("6.1.0"));
    assert_eq!(h.vmcoreinfo_value("PAGESIZE"), Some("4096"));
    assert_eq!(h.vmcoreinfo_value("CRASHTIME"), Some("123"));
    assert_eq!(h.vmcoreinfo_value("PAGE"), None);
    assert_eq!(h.vmcoreinfo_value("SYMBOL(init_uts_ns)"), None);

    assert_eq!(
        h.loads,
        vec![
            LoadSegment {
                paddr: 0x0100_0000,
                vaddr: TEXT_VADDR,
                memsz: 0x0200_0000,
                source: 0x0100_0000,
                flags: RWX
            },
            LoadSegment {
                paddr: 0x1000,
                vaddr: PAGE_OFFSET + 0x1000,
                memsz: 0x9f000,
                source: BACKUP,
                flags: RWX
            },
            LoadSegment {
                paddr: 0x0010_0000,
                vaddr: PAGE_OFFSET + 0x0010_0000,
                memsz: 0x3def_f800,
                source: 0x0010_0000,
                flags: RWX
            },
            LoadSegment {
                paddr: 0x4000_0c00,
                vaddr: PAGE_OFFSET + 0x4000_0c00,
                memsz: 0x1_2345,
                source: 0x4000_0c00,
                flags: RWX
            },
            LoadSegment {
                paddr: 0x1_0000_0000,
                vaddr: PAGE_OFFSET + 0x1_0000_0000,
                memsz: 0x4000_0000,
                source: 0x1_0000_0000,
                flags: RWX
            },
        ]
    );
    assert_eq!(
        h.total_load_bytes(),
        0x0200_0000 + 0x9f000 + 0x3def_f800 + 0x1_2345 + 0x4000_0000
    );
    // Only CPU1's empty buffer is worth a warning.
    assert_eq!(
        h.warnings,
        vec![CoreWarning::EmptyNoteSegment {
            phdr: 1,
            addr: CPU1,
            memsz: 368
        }]
    );
}

/// Reads the output Ehdr + phdrs back field by field.
fn check_header(h: &CoreHeaders, l: &VmcoreLayout) {
    let b = &l.header;
    assert_eq!(b.len() % 4096, 0);
    assert_eq!(
        &b[..16],
        &[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    );
    assert_eq!(get16(b, 16), 4, "e_type");
    assert_eq!(get16(b, 18), 62, "e_machine");
    assert_eq!(get32(b, 20), 1, "e_version");
    assert_eq!(get64(b, 24), 0, "e_entry");
    assert_eq!(get64(b, 32), 64, "e_phoff");
    assert_eq!(get64(b, 40), 0, "e_shoff");
    assert_eq!(get32(b, 48), 0, "e_flags");
    assert_eq!(get16(b, 52), 64, "e_ehsize");
    assert_eq!(get16(b, 54), 56, "e_phentsize");
    let phnum = usize::from(get16(b, 56));
    assert_eq!(phnum, 1 + h.loads.len(), "e_phnum");
    assert_eq!(&b[58..64], &[0; 6], "e_shentsize, e_shnum, e_shstrndx");
    let hdr_end = 64 + phnum * 56;
    assert_eq!(b.len(), hdr_end.div_ceil(4096) * 4096);
    assert!(b[hdr_end..].iter().all(|&x| x == 0), "header padding");

    // Merged PT_NOTE.
    let p = &b[64..120];
    assert_eq!(get32(p, 0), 4, "PT_NOTE");
    assert_eq!(get32(p, 4), 0, "p_flags");
    assert_eq!(get64(p, 8), b.len() as u64, "p_offset");
    assert_eq!(get64(p, 16), 0, "p_vaddr");
    assert_eq!(get64(p, 24), 0, "p_paddr");
    assert_eq!(get64(p, 32), h.notes.len() as u64, "p_filesz");
    assert_eq!(get64(p, 40), h.notes.len() as u64, "p_memsz");
    assert_eq!(get64(p, 48), 4, "p_align");
    assert_eq!(l.notes_offset, b.len() as u64);
    assert_eq!(
        l.notes_len_padded,
        (h.notes.len() as u64).div_ceil(4096) * 4096
    );

    // PT_LOADs.
    let mut off = l.notes_offset + l.notes_len_padded;
    assert_eq!(l.chunks.len(), h.loads.len());
    for (i, (ld, c)) in h.loads.iter().zip(&l.chunks).enumerate() {
        let p = &b[64 + 56 * (i + 1)..64 + 56 * (i + 2)];
        let start = ld.source / 4096 * 4096;
        let end = (ld.source + ld.memsz).div_ceil(4096) * 4096;
        assert_eq!(c.file_offset, off, "chunk {i} offset");
        assert_eq!(c.source, start, "chunk {i} source");
        assert_eq!(c.len, end - start, "chunk {i} len");
        assert_eq!(c.len % 4096, 0);
        assert_eq!(get32(p, 0), 1, "PT_LOAD {i}");
        assert_eq!(get32(p, 4), ld.flags, "p_flags {i}");
        assert_eq!(get64(p, 8), off + ld.source % 4096, "p_offset {i}");
        assert_eq!(get64(p, 16), ld.vaddr, "p_vaddr {i}");
        assert_eq!(get64(p, 24), ld.paddr, "p_paddr {i}");
        assert_eq!(get64(p, 32), ld.memsz, "p_filesz {i}");
        assert_eq!(get64(p, 40), ld.memsz, "p_memsz {i}");
        assert_eq!(get64(p, 48), 0, "p_align {i}");
        off += c.len;
    }
    assert_eq!(l.total_len, off);
}

#[test]
fn plans_like_proc_vmcore() {
    let (_, h) = scenario();
    let l = plan_vmcore(&h).unwrap();
    check_header(&h, &l);

    // 1 + 5 phdrs: 64 + 6*56 = 400 -> one page. Notes < 4 KiB -> one page.
    assert_eq!(l.header.len(), 4096);
    assert_eq!(l.notes_offset, 4096);
    assert_eq!(l.notes_len_padded, 4096);
    let base = 8192;
    let expect = [
        (base, 0x0100_0000, 0x0200_0000),
        (base + 0x0200_0000, BACKUP, 0x9f000),
        (base + 0x0209_f000, 0x0010_0000, 0x3df0_0000),
        (base + 0x3ff9_f000, 0x4000_0000, 0x1_3000),
        (base + 0x3ffb_2000, 0x1_0000_0000, 0x4000_0000),
    ];
    for (c, &(fo, src, len)) in l.chunks.iter().zip(&expect) {
        assert_eq!((c.file_offset, c.source, c.len), (fo, src, len));
    }
    assert_eq!(l.total_len, base + 0x7ffb_2000);
    // The unaligned segment's data starts 0xc00 into its first page.
    assert_eq!(
        get64(&l.header, 64 + 56 * 4 + 8),
        base + 0x3ff9_f000 + 0xc00
    );
}

fn us(x: u64) -> usize {
    usize::try_from(x).unwrap()
}

/// The planned file, materialized from the fake memory.
fn materialize(m: &Fake, h: &CoreHeaders, l: &VmcoreLayout) -> Vec<u8> {
    let mut f = l.header.clone();
    assert_eq!(f.len() as u64, l.notes_offset);
    f.extend(&h.notes);
    f.resize(f.len() + (us(l.notes_len_padded) - h.notes.len()), 0);
    for c in &l.chunks {
        assert_eq!(f.len() as u64, c.file_offset);
        let mut buf = vec![0u8; us(c.len)];
        m.read(c.source, &mut buf).unwrap();
        f.extend(buf);
    }
    assert_eq!(f.len() as u64, l.total_len);
    f
}

/// The output file is itself a valid "elfcorehdr" if read as memory at address 0: parsing it
/// again must give the same notes, CPUs, VMCOREINFO and loads (with file offsets as sources).
fn reparse_and_compare(m: &Fake, h: &CoreHeaders, l: &VmcoreLayout) {
    let file = materialize(m, h, l);
    let fm = minicap_physmem::SliceMem::new(0, &file);
    let r = parse_core_headers(&fm, 0).unwrap();
    assert_eq!(r.notes, h.notes);
    assert_eq!(r.cpus, h.cpus);
    assert_eq!(r.vmcoreinfo, h.vmcoreinfo);
    assert_eq!(r.loads.len(), h.loads.len());
    for (i, (a, b)) in r.loads.iter().zip(&h.loads).enumerate() {
        assert_eq!(
            (a.paddr, a.vaddr, a.memsz, a.flags),
            (b.paddr, b.vaddr, b.memsz, b.flags)
        );
        // p_offset points at the right byte: the file holds the segment's data there.
        let s = us(a.source);
        let n = us(b.memsz);
        let mut want = vec![0u8; n];
        m.read(b.source, &mut want).unwrap();
        assert_eq!(&file[s..s + n], &want[..], "PT_LOAD {i} data");
        assert_eq!(a.source % 4096, b.source % 4096);
    }
}

#[test]
fn small_scenario_round_trips_through_the_file() {
    // Same shape as the kexec-tools layout, with small RAM segments so the file can be built.
    let phdrs = vec![
        Ph::note(CPU0, 368),
        Ph::note(CPU1, 368),
        Ph::note(CPU2, 368),
        Ph::note(VMCI, 4132),
        Ph::load(0x0100_0000, TEXT_VADDR, 0x3000, 0x0100_0000),
        Ph::load(0x1000, PAGE_OFFSET + 0x1000, 0x9f000, BACKUP),
        Ph::load(0x0100_0000, PAGE_OFFSET + 0x0100_0000, 0x5800, 0x0100_0000),
        Ph::load(0x4000_0c00, PAGE_OFFSET + 0x4000_0c00, 0x2345, 0x4000_0c00),
    ];
    let mut m = scenario_mem(&phdrs);
    m.ram_limit = 0x1_0000_0000;
    let h = parse_core_headers(&m, HDR).unwrap();
    let l = plan_vmcore(&h).unwrap();
    check_header(&h, &l);
    reparse_and_compare(&m, &h, &l);
    // The backup segment is read from the copy, not from low memory.
    let file = materialize(&m, &h, &l);
    let off = us(l.chunks[1].file_offset);
    assert_eq!(file[off], pattern(BACKUP));
    assert_ne!(
        (0..64).map(|i| pattern(BACKUP + i)).collect::<Vec<_>>(),
        (0..64).map(|i| pattern(0x1000 + i)).collect::<Vec<_>>()
    );
}

#[test]
fn random_layouts_point_every_load_at_its_data() {
    // Deterministic "random" layouts: a fixed seed.
    let mut rng = fastrand::Rng::with_seed(0x1234_5678_9abc_def1);
    for round in 0..60 {
        let mut phdrs = Vec::new();
        let mut m = Fake::with_ram(1 << 36);
        // 0-3 CPUs, some offline, VMCOREINFO sometimes, at random places in the list.
        let ncpu = rng.u64(..4);
        for c in 0..ncpu {
            let addr = 0x7000_0000 + c * 0x1000 + rng.u64(..8) * 8;
            if rng.u64(..3) == 0 {
                m.put(addr, vec![0u8; 368]);
            } else {
                let (pid, rip, rsp) = (
                    u32::try_from(rng.u64(..1000)).unwrap(),
                    rng.u64(..),
                    rng.u64(..),
                );
                m.put(addr, cpu_buf(pid, rip, rsp, c));
            }
            phdrs.push(Ph::note(addr, 368));
        }
        if rng.u64(..4) != 0 {
            let text = format!("OSRELEASE=6.{round}.0\nPAGESIZE=4096\n");
            m.put(0x7100_0000, vmcoreinfo_buf(text.as_bytes()));
            phdrs.push(Ph::note(0x7100_0000, 4132));
        }
        let nload = 1 + rng.u64(..6);
        for slot in 0..nload {
            // Each PT_LOAD in its own 256 MiB slot: no two describe the same memory.
            let slot_base = slot << 28;
            let paddr = slot_base + rng.u64(..1 << 20);
            let source = if rng.u64(..3) == 0 {
                rng.u64(..1 << 32)
            } else {
                paddr
            };
            let memsz = 1 + rng.u64(..3 * 4096 + 100);
            let p = Ph::load(paddr, PAGE_OFFSET.wrapping_add(paddr), memsz, source);
            let at = us(rng.u64(..phdrs.len() as u64 + 1));
            phdrs.insert(at, p);
        }
        m.put(HDR, elfcorehdr(&phdrs));
        let h = parse_core_headers(&m, HDR).unwrap();
        assert_eq!(h.loads.len() as u64, nload);
        let l = plan_vmcore(&h).unwrap();
        check_header(&h, &l);
        reparse_and_compare(&m, &h, &l);
    }
}

#[test]
fn many_cpus_spill_the_header_past_one_page() {
    // 100 loads -> 64 + 101*56 = 5720 bytes of header -> two pages; 20 CPUs -> 7120 bytes of notes.
    let mut phdrs = Vec::new();
    let mut m = Fake::with_ram(1 << 36);
    for c in 0..20u64 {
        m.put(0x7000_0000 + c * 0x200, cpu_buf(1, 2, 3, c));
        phdrs.push(Ph::note(0x7000_0000 + c * 0x200, 368));
    }
    for i in 0..100u64 {
        phdrs.push(Ph::load(i * 0x10000 + 8, 0, 0x100, i * 0x10000 + 8));
    }
    m.put(HDR, elfcorehdr(&phdrs));
    let h = parse_core_headers(&m, HDR).unwrap();
    assert_eq!(h.cpus.len(), 20);
    assert_eq!(h.warnings, vec![CoreWarning::NoVmcoreinfo]);
    let l = plan_vmcore(&h).unwrap();
    assert_eq!(l.header.len(), 8192);
    assert_eq!(l.notes_len_padded, 8192);
    assert_eq!(l.chunks[0].file_offset, 16384);
    assert!(l.chunks.iter().all(|c| c.len == 4096));
    check_header(&h, &l);
    reparse_and_compare(&m, &h, &l);
}

#[test]
fn load_ranges_without_a_heap() {
    let m = scenario_mem(&scenario_phdrs());
    let mut ranges = Vec::new();
    let size = minicap_elfcore::for_each_load_range(&m, HDR, |r| ranges.push(r)).unwrap();
    assert_eq!(size, 64 + 9 * 56);
    // p_paddr and p_offset ranges of every PT_LOAD, in header order: the
    // backup region's copy is among them, so the capture kernel keeps its
    // heap off it.
    assert_eq!(
        ranges,
        vec![
            0x0100_0000..0x0300_0000,
            0x0100_0000..0x0300_0000,
            0x1000..0xa0000,
            BACKUP..BACKUP + 0x9f000,
            0x0010_0000..0x3e00_0000 - 0x800,
            0x0010_0000..0x3e00_0000 - 0x800,
            0x4000_0c00..0x4001_2f45,
            0x4000_0c00..0x4001_2f45,
            0x1_0000_0000..0x1_4000_0000,
            0x1_0000_0000..0x1_4000_0000,
        ]
    );
    // The same validation as the full parse.
    let mut bad = Fake::strict();
    bad.put(HDR, vec![0u8; 64]);
    assert!(minicap_elfcore::for_each_load_range(&bad, HDR, |_| {}).is_err());
}

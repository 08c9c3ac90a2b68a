//! One test per rejected input, plus the non-fatal warnings.

mod common;

use common::*;
use minicap_elfcore::{
    parse_core_headers, plan_vmcore, CoreHeaders, CoreWarning, ElfCoreError, LoadSegment,
    PhysMemError, PrStatus, MAX_NOTE_BYTES_READ, MAX_TOTAL_NOTES_SIZE,
};

const HDR: u64 = 0x3f00_0000;
const NOTE: u64 = 0x0200_0000;

fn one_load() -> Ph {
    Ph::load(0x10_0000, 0xffff_8880_0010_0000, 0x10_0000, 0x10_0000)
}

fn good_phdrs() -> Vec<Ph> {
    vec![Ph::note(NOTE, 368), one_load()]
}

fn mem_with(hdr: Vec<u8>) -> Fake {
    let mut m = Fake::strict();
    m.put(HDR, hdr).put(NOTE, cpu_buf(1, 2, 3, 4));
    m
}

/// Parses the good header after `patch` was applied to its bytes.
fn parse_patched(patch: impl FnOnce(&mut Vec<u8>)) -> Result<CoreHeaders, ElfCoreError> {
    let mut hdr = elfcorehdr(&good_phdrs());
    patch(&mut hdr);
    parse_core_headers(&mem_with(hdr), HDR)
}

fn parse_phdrs(phdrs: &[Ph]) -> Result<CoreHeaders, ElfCoreError> {
    parse_core_headers(&mem_with(elfcorehdr(phdrs)), HDR)
}

#[test]
fn baseline_is_accepted() {
    let h = parse_patched(|_| {}).unwrap();
    assert_eq!(h.cpus.len(), 1);
    assert_eq!(h.warnings, vec![CoreWarning::NoVmcoreinfo]);
}

#[test]
fn headers_outside_ram() {
    let m = mem_with(elfcorehdr(&good_phdrs()));
    assert_eq!(
        parse_core_headers(&m, 0x1234_0000),
        Err(ElfCoreError::Read(PhysMemError {
            addr: 0x1234_0000,
            len: 64
        }))
    );
    // The Ehdr is readable but the program header table runs off the end of memory.
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&good_phdrs())[..100].to_vec());
    assert_eq!(
        parse_core_headers(&m, HDR),
        Err(ElfCoreError::Read(PhysMemError {
            addr: HDR + 64,
            len: 112
        }))
    );
}

#[test]
fn bad_magic() {
    assert_eq!(
        parse_patched(|h| h[1] = b'X'),
        Err(ElfCoreError::BadMagic([0x7f, b'X', b'L', b'F']))
    );
}

#[test]
fn not_elfclass64() {
    assert_eq!(parse_patched(|h| h[4] = 1), Err(ElfCoreError::NotElf64(1)));
}

#[test]
fn not_little_endian() {
    assert_eq!(
        parse_patched(|h| h[5] = 2),
        Err(ElfCoreError::NotLittleEndian(2))
    );
}

#[test]
fn bad_ident_version() {
    assert_eq!(
        parse_patched(|h| h[6] = 0),
        Err(ElfCoreError::BadIdentVersion(0))
    );
}

#[test]
fn bad_e_version() {
    assert_eq!(
        parse_patched(|h| set32(h, 20, 2)),
        Err(ElfCoreError::BadVersion(2))
    );
}

#[test]
fn not_et_core() {
    assert_eq!(
        parse_patched(|h| set16(h, 16, 2)),
        Err(ElfCoreError::NotCore(2))
    );
}

#[test]
fn not_x86_64() {
    assert_eq!(
        parse_patched(|h| set16(h, 18, 183)),
        Err(ElfCoreError::BadMachine(183))
    );
}

#[test]
fn bad_ehsize() {
    assert_eq!(
        parse_patched(|h| set16(h, 52, 52)),
        Err(ElfCoreError::BadEhsize(52))
    );
}

#[test]
fn bad_phentsize() {
    assert_eq!(
        parse_patched(|h| set16(h, 54, 32)),
        Err(ElfCoreError::BadPhentsize(32))
    );
}

#[test]
fn zero_phnum() {
    assert_eq!(
        parse_patched(|h| set16(h, 56, 0)),
        Err(ElfCoreError::NoProgramHeaders)
    );
}

#[test]
fn pn_xnum() {
    assert_eq!(
        parse_patched(|h| set16(h, 56, 0xffff)),
        Err(ElfCoreError::ExtendedPhnum)
    );
}

#[test]
fn header_larger_than_1mib() {
    // 64 + 18724 * 56 > 1 MiB.
    assert_eq!(
        parse_patched(|h| set16(h, 56, 18724)),
        Err(ElfCoreError::HeadersTooLarge {
            phoff: 64,
            phnum: 18724
        })
    );
    // A far e_phoff, and one that overflows u64.
    assert_eq!(
        parse_patched(|h| set64(h, 32, 1 << 20)),
        Err(ElfCoreError::HeadersTooLarge {
            phoff: 1 << 20,
            phnum: 2
        })
    );
    assert_eq!(
        parse_patched(|h| set64(h, 32, u64::MAX - 8)),
        Err(ElfCoreError::HeadersTooLarge {
            phoff: u64::MAX - 8,
            phnum: 2
        })
    );
}

#[test]
fn e_phoff_other_than_64_is_followed() {
    let phdrs = good_phdrs();
    let mut hdr = ehdr(2);
    set64(&mut hdr, 32, 200);
    hdr.resize(200, 0xee);
    for p in &phdrs {
        hdr.extend(p.bytes());
    }
    let h = parse_core_headers(&mem_with(hdr), HDR).unwrap();
    assert_eq!(h.header_size, 200 + 2 * 56);
    assert_eq!(h.loads.len(), 1);
    assert_eq!(h.cpus.len(), 1);
}

#[test]
fn header_address_wraps() {
    let mut hdr = ehdr(1);
    set64(&mut hdr, 32, 0x100);
    let addr = u64::MAX - 63;
    let mut m = Fake::strict();
    m.put(addr, hdr);
    assert_eq!(
        parse_core_headers(&m, addr),
        Err(ElfCoreError::HeaderAddressOverflow { addr, phoff: 0x100 })
    );
}

#[test]
fn load_paddr_overflow() {
    let mut l = one_load();
    l.paddr = u64::MAX - 0xfff;
    l.memsz = 0x2000;
    l.filesz = 0x2000;
    assert_eq!(
        parse_phdrs(&[Ph::note(NOTE, 368), l]),
        Err(ElfCoreError::LoadPaddrOverflow {
            phdr: 1,
            paddr: u64::MAX - 0xfff,
            memsz: 0x2000
        })
    );
}

#[test]
fn load_source_overflow() {
    // source + memsz fits, but rounding the end up to a page does not.
    let mut l = one_load();
    l.offset = u64::MAX - 0x800;
    l.memsz = 0x100;
    l.filesz = 0x100;
    assert_eq!(
        parse_phdrs(&[l, Ph::note(NOTE, 368)]),
        Err(ElfCoreError::LoadSourceOverflow {
            phdr: 0,
            source: u64::MAX - 0x800,
            memsz: 0x100
        })
    );
    l.offset = u64::MAX - 0x800;
    l.memsz = 0x1000;
    assert!(matches!(
        parse_phdrs(&[l]),
        Err(ElfCoreError::LoadSourceOverflow { .. })
    ));
}

#[test]
fn no_pt_load() {
    assert_eq!(
        parse_phdrs(&[Ph::note(NOTE, 368)]),
        Err(ElfCoreError::NoLoadSegments)
    );
    // Only an empty PT_LOAD (and a PT_NULL) do not count either.
    let mut l = one_load();
    l.memsz = 0;
    l.filesz = 0;
    let mut null = one_load();
    null.p_type = 0;
    assert_eq!(
        parse_phdrs(&[Ph::note(NOTE, 368), null, l]),
        Err(ElfCoreError::NoLoadSegments)
    );
}

#[test]
fn note_segment_larger_than_1mib() {
    assert_eq!(
        parse_phdrs(&[Ph::note(NOTE, (1 << 20) + 1), one_load()]),
        Err(ElfCoreError::NoteSegmentTooLarge {
            phdr: 0,
            memsz: (1 << 20) + 1
        })
    );
}

#[test]
fn note_address_overflow() {
    assert_eq!(
        parse_phdrs(&[one_load(), Ph::note(u64::MAX - 100, 368)]),
        Err(ElfCoreError::NoteAddressOverflow {
            phdr: 1,
            addr: u64::MAX - 100,
            memsz: 368
        })
    );
}

#[test]
fn merged_notes_over_the_total_limit() {
    // One 1 MiB buffer full of notes, referenced by 17 PT_NOTEs: 17 MiB > 16 MiB.
    let mut buf = Vec::new();
    while buf.len() < 1 << 20 {
        buf.extend(note(b"X\0", 9, &[7u8; 1012])); // 1028 bytes
    }
    buf.truncate(1 << 20);
    let real = (1usize << 20) / 1028 * 1028;
    let mut phdrs = vec![one_load()];
    phdrs.extend((0..17).map(|_| Ph::note(NOTE, 1 << 20)));
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&phdrs)).put(NOTE, buf);
    let r = parse_core_headers(&m, HDR);
    let total = 17 * real as u64;
    assert!(total > MAX_TOTAL_NOTES_SIZE && 16 * (real as u64) <= MAX_TOTAL_NOTES_SIZE);
    assert_eq!(r, Err(ElfCoreError::NotesTooLarge { phdr: 17, total }));
}

#[test]
fn note_segments_read_are_bounded_even_when_empty() {
    // Zeroed buffers add nothing to the merged notes; without a bound on what is read,
    // thousands of them would have the capture read gigabytes (found while fuzzing).
    let mut phdrs = vec![one_load()];
    phdrs.extend((0..40).map(|_| Ph::note(NOTE, 1 << 20)));
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&phdrs)).put(NOTE, vec![0u8; 1 << 20]);
    assert_eq!(MAX_NOTE_BYTES_READ, 32 << 20);
    assert_eq!(
        parse_core_headers(&m, HDR),
        Err(ElfCoreError::NoteSegmentsTooLarge {
            phdr: 33,
            total: 33 << 20
        })
    );
}

#[test]
fn empty_and_zeroed_note_buffers_only_warn() {
    let mut m = Fake::strict();
    let phdrs = [
        Ph::note(NOTE, 0),
        Ph::note(NOTE + 0x1000, 368),
        Ph::note(NOTE + 0x2000, 368),
        one_load(),
    ];
    m.put(HDR, elfcorehdr(&phdrs))
        .put(NOTE + 0x1000, vec![0; 368])
        .put(NOTE + 0x2000, cpu_buf(7, 8, 9, 10));
    let h = parse_core_headers(&m, HDR).unwrap();
    assert_eq!(h.cpus.len(), 1);
    assert_eq!(h.notes, prstatus_note(7, 8, 9, 10));
    assert_eq!(
        h.warnings,
        vec![
            CoreWarning::EmptyNoteSegment {
                phdr: 0,
                addr: NOTE,
                memsz: 0
            },
            CoreWarning::EmptyNoteSegment {
                phdr: 1,
                addr: NOTE + 0x1000,
                memsz: 368
            },
            CoreWarning::NoVmcoreinfo,
        ]
    );
    // All CPUs offline: still a dump, with warnings.
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&[Ph::note(NOTE, 368), one_load()]))
        .put(NOTE, vec![0; 368]);
    let h = parse_core_headers(&m, HDR).unwrap();
    assert!(h.notes.is_empty());
    assert_eq!(h.warnings.len(), 3);
    assert_eq!(
        h.warnings[1..],
        [CoreWarning::NoVmcoreinfo, CoreWarning::NoPrStatus]
    );
    let l = plan_vmcore(&h).unwrap();
    assert_eq!(l.notes_len_padded, 0);
    assert_eq!(l.chunks[0].file_offset, 4096);
}

#[test]
fn note_exceeding_its_buffer_is_dropped() {
    // A PRSTATUS note, then a note whose descsz runs past p_memsz: the first is kept.
    let mut buf = prstatus_note(5, 6, 7, 8);
    let mut bad = note(b"VMCOREINFO\0", 0, b"OSRELEASE=1\n");
    set32(&mut bad, 4, 5000);
    buf.extend(&bad);
    buf.extend([0u8; 12]);
    let size = buf.len() as u64;
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&[Ph::note(NOTE, size), one_load()]))
        .put(NOTE, buf);
    let h = parse_core_headers(&m, HDR).unwrap();
    assert_eq!(h.notes, prstatus_note(5, 6, 7, 8));
    assert_eq!(h.cpus.len(), 1);
    assert_eq!(h.vmcoreinfo, None);
    assert_eq!(
        h.warnings,
        vec![
            CoreWarning::NoteExceedsSegment {
                phdr: 0,
                offset: 356,
                namesz: 11,
                descsz: 5000
            },
            CoreWarning::NoVmcoreinfo
        ]
    );
    // n_namesz / n_descsz near u32::MAX: no overflow, no read past the buffer.
    let mut buf = vec![0u8; 368];
    set32(&mut buf, 0, u32::MAX);
    set32(&mut buf, 4, u32::MAX);
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&[Ph::note(NOTE, 368), one_load()]))
        .put(NOTE, buf);
    let h = parse_core_headers(&m, HDR).unwrap();
    assert!(h.notes.is_empty());
    assert_eq!(
        h.warnings[0],
        CoreWarning::NoteExceedsSegment {
            phdr: 0,
            offset: 0,
            namesz: u32::MAX,
            descsz: u32::MAX
        }
    );
}

#[test]
fn note_walk_stays_inside_p_memsz() {
    // The buffer in memory continues with another valid note, but p_memsz stops before it.
    let mut buf = prstatus_note(1, 2, 3, 4);
    buf.extend(prstatus_note(9, 9, 9, 9));
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&[Ph::note(NOTE, 356 + 8), one_load()]))
        .put(NOTE, buf);
    let h = parse_core_headers(&m, HDR).unwrap();
    assert_eq!(h.cpus.len(), 1);
    assert_eq!(h.notes.len(), 356);
    assert!(matches!(
        h.warnings[0],
        CoreWarning::NoteExceedsSegment { offset: 356, .. }
    ));
}

#[test]
fn unreadable_note_buffer_only_warns() {
    let mut m = Fake::strict();
    m.put(
        HDR,
        elfcorehdr(&[Ph::note(0x7777_0000, 368), Ph::note(NOTE, 368), one_load()]),
    )
    .put(NOTE, cpu_buf(1, 2, 3, 4));
    let h = parse_core_headers(&m, HDR).unwrap();
    assert_eq!(h.cpus.len(), 1);
    assert_eq!(
        h.warnings[0],
        CoreWarning::NoteSegmentUnreadable {
            phdr: 0,
            error: PhysMemError {
                addr: 0x7777_0000,
                len: 368
            }
        }
    );
}

#[test]
fn short_prstatus_and_duplicate_vmcoreinfo() {
    let mut buf = note(b"CORE\0", 1, &[0u8; 200]);
    buf.extend(vmcoreinfo_note(b"A=1\n"));
    buf.extend(vmcoreinfo_note(b"A=2\n"));
    // Notes of other owners/types pass through untouched.
    buf.extend(note(b"CORE\0", 2, &[1u8; 512]));
    buf.extend(note(b"LINUX\0", 1, &[2u8; 16]));
    let real = buf.clone();
    buf.extend([0u8; 12]);
    let size = buf.len() as u64;
    let mut m = Fake::strict();
    m.put(
        HDR,
        elfcorehdr(&[
            one_load(),
            Ph::note(NOTE, size),
            Ph::note(NOTE + 0x10000, 4132),
        ]),
    )
    .put(NOTE, buf)
    .put(NOTE + 0x10000, vmcoreinfo_buf(b"A=3\n"));
    let h = parse_core_headers(&m, HDR).unwrap();
    let mut all = real;
    all.extend(vmcoreinfo_note(b"A=3\n"));
    assert_eq!(h.notes, all);
    assert_eq!(h.vmcoreinfo_value("A"), Some("1"));
    assert!(h.cpus.is_empty());
    assert_eq!(
        h.warnings,
        vec![
            CoreWarning::ShortPrStatus {
                phdr: 1,
                descsz: 200
            },
            CoreWarning::DuplicateVmcoreinfo { phdr: 1 },
            CoreWarning::DuplicateVmcoreinfo { phdr: 2 },
            CoreWarning::NoPrStatus,
        ]
    );
}

#[test]
fn overlapping_ram_loads_are_refused_kernel_text_is_not() {
    // The kernel-text PT_LOAD over the RAM one is what both builders emit.
    let text = Ph::load(0x10_0000, 0xffff_ffff_8100_0000, 0x1000, 0x10_0000);
    assert!(parse_phdrs(&[Ph::note(NOTE, 368), text, one_load()]).is_ok());
    // A second RAM PT_LOAD inside the first: the index of each in the program header table.
    let inside = Ph::load(0x18_0000, 0xffff_8880_0018_0000, 0x1000, 0x18_0000);
    assert_eq!(
        parse_phdrs(&[Ph::note(NOTE, 368), text, one_load(), inside]),
        Err(ElfCoreError::OverlappingLoads {
            first: 2,
            first_range: (0x10_0000, 0x20_0000),
            second: 3,
            second_range: (0x18_0000, 0x18_1000),
        })
    );
}

#[test]
fn odd_loads_only_warn() {
    let mut empty = one_load();
    empty.memsz = 0;
    let mut mismatch = one_load();
    mismatch.filesz = 0x1000;
    let mut other = one_load();
    other.p_type = 6; // PT_PHDR: ignored
    let h = parse_phdrs(&[Ph::note(NOTE, 368), empty, other, mismatch]).unwrap();
    assert_eq!(h.loads.len(), 1);
    assert_eq!(
        h.warnings,
        vec![
            CoreWarning::EmptyLoadSegment { phdr: 1 },
            CoreWarning::LoadFileSizeMismatch {
                phdr: 3,
                filesz: 0x1000,
                memsz: 0x10_0000
            },
            CoreWarning::NoVmcoreinfo,
        ]
    );
}

#[test]
fn vmcoreinfo_lookup_edge_cases() {
    let text =
        b"OSRELEASE=6.1.0\nSYMBOL(init_uts_ns)=ffffffff82a12345\nEMPTY=\nOSREL=x\nBAD=\xff\nLAST=9";
    let mut m = Fake::strict();
    m.put(HDR, elfcorehdr(&[Ph::note(NOTE, 4132), one_load()]))
        .put(NOTE, vmcoreinfo_buf(text));
    let h = parse_core_headers(&m, HDR).unwrap();
    assert_eq!(h.vmcoreinfo_text(), Some(&text[..]));
    assert_eq!(h.vmcoreinfo_value("OSRELEASE"), Some("6.1.0"));
    assert_eq!(h.vmcoreinfo_value("OSREL"), Some("x"));
    assert_eq!(
        h.vmcoreinfo_value("SYMBOL(init_uts_ns)"),
        Some("ffffffff82a12345")
    );
    assert_eq!(h.vmcoreinfo_value("EMPTY"), Some(""));
    assert_eq!(h.vmcoreinfo_value("BAD"), None);
    assert_eq!(h.vmcoreinfo_value("LAST"), Some("9"));
    assert_eq!(h.vmcoreinfo_value("6.1.0"), None);
    assert_eq!(h.warnings, vec![CoreWarning::NoPrStatus]);
}

fn headers_with(loads: Vec<LoadSegment>) -> CoreHeaders {
    CoreHeaders {
        header_size: 64,
        e_ident: [0; 16],
        e_entry: 0,
        e_flags: 0,
        loads,
        notes: Vec::new(),
        cpus: Vec::<PrStatus>::new(),
        vmcoreinfo: None,
        warnings: Vec::new(),
    }
}

fn seg(source: u64, memsz: u64) -> LoadSegment {
    LoadSegment {
        paddr: source,
        vaddr: 0,
        memsz,
        source,
        flags: 7,
    }
}

#[test]
fn plan_rejects_impossible_headers() {
    assert_eq!(
        plan_vmcore(&headers_with(Vec::new())),
        Err(ElfCoreError::NoLoadSegments)
    );
    // 65533 loads + 1 note = 65534 phdrs: fine. One more would be PN_XNUM.
    let l = plan_vmcore(&headers_with(vec![seg(0, 1); 65533])).unwrap();
    assert_eq!(get16(&l.header, 56), 65534);
    assert_eq!(
        plan_vmcore(&headers_with(vec![seg(0, 1); 65534])),
        Err(ElfCoreError::TooManyLoads(65534))
    );
    assert_eq!(
        plan_vmcore(&headers_with(vec![seg(0, 1); 70000])),
        Err(ElfCoreError::TooManyLoads(70000))
    );
    assert_eq!(
        plan_vmcore(&headers_with(vec![seg(0, 1), seg(u64::MAX - 10, 5)])),
        Err(ElfCoreError::InvalidLoad {
            load: 1,
            source: u64::MAX - 10,
            memsz: 5
        })
    );
    assert_eq!(
        plan_vmcore(&headers_with(vec![seg(0, 1 << 63), seg(0, 1 << 63)])),
        Err(ElfCoreError::LayoutOverflow)
    );
}

#[test]
fn plan_copies_ident_extras_but_fixes_the_rest() {
    let mut h = headers_with(vec![seg(0x1234, 0x10)]);
    h.e_ident = [0; 16];
    h.e_ident[7] = 3; // EI_OSABI
    h.e_entry = 0xdead;
    h.e_flags = 5;
    let l = plan_vmcore(&h).unwrap();
    assert_eq!(&l.header[..8], &[0x7f, b'E', b'L', b'F', 2, 1, 1, 3]);
    assert_eq!(get64(&l.header, 24), 0xdead);
    assert_eq!(get32(&l.header, 48), 5);
    assert_eq!(l.chunks[0].source, 0x1000);
    assert_eq!(l.chunks[0].len, 0x1000);
    assert_eq!(get64(&l.header, 120 + 8), 4096 + 0x234);
}

#[test]
fn error_and_warning_messages_name_the_value() {
    let cases: Vec<(String, &str)> = vec![
        (
            ElfCoreError::Read(PhysMemError {
                addr: 0x1000,
                len: 64,
            })
            .to_string(),
            "0x1000-0x1040",
        ),
        (
            ElfCoreError::BadMagic(*b"MZ\0\0").to_string(),
            "4d 5a 00 00",
        ),
        (ElfCoreError::NotElf64(1).to_string(), "EI_CLASS is 1"),
        (ElfCoreError::NotLittleEndian(2).to_string(), "EI_DATA is 2"),
        (
            ElfCoreError::BadIdentVersion(0).to_string(),
            "EI_VERSION is 0",
        ),
        (ElfCoreError::BadVersion(9).to_string(), "e_version is 9"),
        (ElfCoreError::NotCore(2).to_string(), "e_type is 2"),
        (ElfCoreError::BadMachine(3).to_string(), "e_machine is 3"),
        (ElfCoreError::BadEhsize(52).to_string(), "e_ehsize is 52"),
        (
            ElfCoreError::BadPhentsize(32).to_string(),
            "e_phentsize is 32",
        ),
        (ElfCoreError::NoProgramHeaders.to_string(), "e_phnum is 0"),
        (ElfCoreError::ExtendedPhnum.to_string(), "0xffff"),
        (
            ElfCoreError::HeadersTooLarge {
                phoff: 64,
                phnum: 20000,
            }
            .to_string(),
            "e_phnum 20000",
        ),
        (
            ElfCoreError::LoadPaddrOverflow {
                phdr: 3,
                paddr: 0xfff0,
                memsz: 0x10,
            }
            .to_string(),
            "PT_LOAD #3: p_paddr 0xfff0",
        ),
        (
            ElfCoreError::NoteSegmentTooLarge {
                phdr: 2,
                memsz: 0x200000,
            }
            .to_string(),
            "p_memsz 0x200000",
        ),
        (ElfCoreError::TooManyLoads(70000).to_string(), "70000"),
        (
            CoreWarning::EmptyNoteSegment {
                phdr: 1,
                addr: 0xabc000,
                memsz: 368,
            }
            .to_string(),
            "PT_NOTE #1 at 0xabc000",
        ),
        (
            CoreWarning::NoteExceedsSegment {
                phdr: 0,
                offset: 356,
                namesz: 11,
                descsz: 5000,
            }
            .to_string(),
            "n_descsz 0x1388",
        ),
    ];
    for (msg, needle) in cases {
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
    }
    let e: &dyn std::error::Error = &ElfCoreError::Read(PhysMemError { addr: 0, len: 1 });
    assert!(e.source().is_some());
}

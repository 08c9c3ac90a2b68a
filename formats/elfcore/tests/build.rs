//! The headers `build_core_headers` makes are read back by `parse_core_headers`, the capture
//! kernel's parser: a loader and the capture kernel agree on every field.

// Lists of RAM ranges that happen to hold one, and a reversed range on purpose.
#![allow(clippy::single_range_in_vec_init, clippy::reversed_empty_ranges)]

mod common;

use common::{cpu_buf, get16, get64, vmcoreinfo_buf, Fake, RWX};
use minicap_elfcore::{
    build_core_headers, max_program_headers, parse_core_headers, BuildError, CoreHeaderSpec,
    KernelText, LoadSegment, NoteBuffer, CORE_HEADER_ALIGN, PT_LOAD, PT_NOTE,
};

const HEADERS_AT: u64 = 0x3eff_f000;
const PAGE_OFFSET: u64 = 0xff13_16ea_c000_0000;

/// The real 2-CPU, 1 GiB guest: RAM minus the crash region at 976 MiB, 32 MiB.
fn guest_ram() -> Vec<core::ops::Range<u64>> {
    vec![
        0x1000..0xa_0000 - 0x400,
        0x10_0000..0x3d00_0000,
        0x3f00_0000..0x3ffd_a000,
    ]
}

#[test]
fn round_trip_through_the_capture_kernel_parser() {
    let notes = [
        NoteBuffer {
            addr: 0x3fc1_a000,
            size: 368,
        },
        NoteBuffer {
            addr: 0x3fc3_a000,
            size: 368,
        },
    ];
    let vmcoreinfo = NoteBuffer {
        addr: 0x1_00c6_6000,
        size: 4132,
    };
    let text = KernelText {
        paddr: 0x15e0_0000,
        vaddr: 0xffff_ffff_9c80_0000,
        size: 0x283_0000,
    };
    let ram = guest_ram();
    let spec = CoreHeaderSpec {
        cpu_notes: &notes,
        vmcoreinfo: Some(vmcoreinfo),
        kernel_text: Some(text),
        ram: &ram,
        page_offset: PAGE_OFFSET,
    };
    let bytes = build_core_headers(&spec).unwrap();
    let phnum = 2 + 1 + 1 + 3;
    assert_eq!(get16(&bytes, 56), phnum);
    assert_eq!(bytes.len() as u64 % CORE_HEADER_ALIGN, 0);
    assert_eq!(bytes.len() as u64, (64 + 56 * 7u64).div_ceil(1024) * 1024);
    assert!(bytes[64 + 56 * 7..].iter().all(|&b| b == 0));

    let mut mem = Fake::strict();
    mem.put(HEADERS_AT, bytes.clone())
        .put(notes[0].addr, cpu_buf(1, 0xffff_ffff_8100_0010, 0x1000, 1))
        .put(notes[1].addr, cpu_buf(2, 0xffff_ffff_8100_0020, 0x2000, 2))
        .put(
            vmcoreinfo.addr,
            vmcoreinfo_buf(b"OSRELEASE=6.1.0-57-cloud-amd64\nPAGESIZE=4096\n"),
        );
    let parsed = parse_core_headers(&mem, HEADERS_AT).unwrap();
    assert_eq!(parsed.header_size, 64 + 56 * 7);
    assert!(parsed.warnings.is_empty(), "{:?}", parsed.warnings);
    assert_eq!(parsed.cpus.len(), 2);
    assert_eq!(parsed.cpus[1].rip(), 0xffff_ffff_8100_0020);
    assert_eq!(
        parsed.vmcoreinfo_value("OSRELEASE"),
        Some("6.1.0-57-cloud-amd64")
    );
    let mut expected = vec![LoadSegment {
        paddr: text.paddr,
        vaddr: text.vaddr,
        memsz: text.size,
        source: text.paddr,
        flags: RWX,
    }];
    expected.extend(ram.iter().map(|r| LoadSegment {
        paddr: r.start,
        vaddr: PAGE_OFFSET + r.start,
        memsz: r.end - r.start,
        source: r.start,
        flags: RWX,
    }));
    assert_eq!(parsed.loads, expected);
}

#[test]
fn program_headers_in_kexec_tools_order_and_fields() {
    let notes = [NoteBuffer {
        addr: 0x1000_0000,
        size: 0x1000,
    }];
    let ram = [0x10_0000..0x20_0000];
    let bytes = build_core_headers(&CoreHeaderSpec {
        cpu_notes: &notes,
        vmcoreinfo: Some(NoteBuffer {
            addr: 0x2000_0000,
            size: 4132,
        }),
        kernel_text: None,
        ram: &ram,
        page_offset: PAGE_OFFSET,
    })
    .unwrap();
    // e_ident: class 2, data 1, version 1, OS ABI 0; e_type 4, e_machine 62, e_phoff 64.
    assert_eq!(&bytes[..8], b"\x7fELF\x02\x01\x01\x00");
    assert_eq!(get16(&bytes, 16), 4);
    assert_eq!(get16(&bytes, 18), 62);
    assert_eq!(get64(&bytes, 32), 64);
    assert_eq!(get64(&bytes, 40), 0, "no section headers");
    let ph = |i: usize| &bytes[64 + 56 * i..64 + 56 * (i + 1)];
    // PT_NOTE: flags 0, offset = paddr, vaddr 0, filesz = memsz, align 0.
    assert_eq!(u32::from_le_bytes(ph(0)[..4].try_into().unwrap()), PT_NOTE);
    assert_eq!(get64(ph(0), 8), 0x1000_0000);
    assert_eq!(get64(ph(0), 16), 0);
    assert_eq!(get64(ph(0), 24), 0x1000_0000);
    assert_eq!(get64(ph(0), 32), 0x1000);
    assert_eq!(get64(ph(0), 40), 0x1000);
    assert_eq!(u32::from_le_bytes(ph(1)[..4].try_into().unwrap()), PT_NOTE);
    assert_eq!(u32::from_le_bytes(ph(2)[..4].try_into().unwrap()), PT_LOAD);
    assert_eq!(get64(ph(2), 16), PAGE_OFFSET + 0x10_0000);
    assert_eq!(get64(ph(2), 48), 0, "p_align 0 as kexec-tools");
}

#[test]
fn bad_specs_are_refused() {
    let spec = |ram: &'static [core::ops::Range<u64>], notes: &'static [NoteBuffer]| {
        build_core_headers(&CoreHeaderSpec {
            cpu_notes: notes,
            vmcoreinfo: None,
            kernel_text: None,
            ram,
            page_offset: 0,
        })
    };
    assert_eq!(spec(&[], &[]), Err(BuildError::NoRam));
    assert_eq!(
        spec(&[0x2000..0x1000], &[]),
        Err(BuildError::EmptyRange(0x2000..0x1000))
    );
    assert_eq!(
        spec(&[0..0x1000], &[NoteBuffer { addr: 5, size: 0 }]),
        Err(BuildError::EmptySegment { addr: 5 })
    );
    assert_eq!(
        spec(
            &[0..0x1000],
            &[NoteBuffer {
                addr: u64::MAX,
                size: 2
            }]
        ),
        Err(BuildError::AddressOverflow {
            addr: u64::MAX,
            size: 2
        })
    );
    let many: Vec<_> = (0..max_program_headers() as u64 + 1)
        .map(|i| i * 0x2000..i * 0x2000 + 0x1000)
        .collect();
    let err = build_core_headers(&CoreHeaderSpec {
        cpu_notes: &[],
        vmcoreinfo: None,
        kernel_text: None,
        ram: &many,
        page_offset: 0,
    })
    .unwrap_err();
    assert_eq!(err, BuildError::TooManyProgramHeaders(many.len()));
    assert!(err.to_string().contains("do not fit"));
}

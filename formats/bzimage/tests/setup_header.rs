//! The bzImage's setup header: built, parsed back, and refused the way the loaders refuse.

mod common;

use minicap_bzimage::layout::*;
use minicap_bzimage::{build, BuildError, BzImage, ImageSource, ParseError};

const LEN: usize = 0x7f170; // not a multiple of the file alignment, like the real image
const MEMSZ: u64 = 0xb0988;

fn put16(image: &mut [u8], at: usize, v: u16) {
    image[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(image: &mut [u8], at: usize, v: u32) {
    image[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn round_trip_keeps_the_payload_and_declares_every_field() {
    let payload = common::payload(LEN, 7);
    let image = common::image(LEN, MEMSZ);
    let bz = BzImage::parse(&image).unwrap();

    // bzImage64_load(): the payload starts after (setup_sects + 1) sectors.
    assert_eq!(bz.setup_sects, 1);
    assert_eq!(&bz.payload[..LEN], &payload[..]);
    assert!(
        bz.payload[LEN..].iter().all(|&b| b == 0),
        "file-alignment padding is zero"
    );
    assert_eq!(bz.payload.len() % FILE_ALIGNMENT as usize, 0);
    assert_eq!(image.len(), SETUP_SIZE + bz.payload.len());

    assert_eq!(bz.version, 0x020f);
    assert_eq!(bz.loadflags, LOADED_HIGH);
    assert_eq!(bz.xloadflags, 0x23, "KERNEL_64 | ABOVE_4G | 5LEVEL");
    assert!(bz.handles_5level_paging());
    assert_eq!(bz.kernel_alignment, 0x1000);
    assert_eq!(bz.min_alignment, 12);
    assert_eq!(1u32 << bz.min_alignment, bz.kernel_alignment);
    assert_eq!(bz.relocatable_kernel, 1);
    assert_eq!(bz.cmdline_size, 2048);
    assert_eq!(bz.pref_address, 0x10_0000);
    assert_eq!(bz.handover_offset, 0, "no EFI handover entry");
    assert_eq!(bz.entry_offset(), 0x200);
    // kernel_info_offset points at the "LToP" the payload head carries.
    let info = bz.kernel_info_offset as usize;
    assert_eq!(&bz.payload[info..info + 4], b"LToP");

    // init_size: the memsz rounded to a page (the payload plus 64 KiB fits below it here).
    assert_eq!(bz.init_size, 0xb1000);
    assert_eq!(bz.load_size(), 0xb1000);
    assert!(bz.load_size() >= (bz.payload.len() + SIGNATURE_ROOM) as u64);

    // The header the loaders copy: 0x1f1..0x26c, Linux's 123-byte `struct setup_header`.
    // bzImage64_load() memcpy()s `0x202 + byte 0x201 - 0x1f1` bytes into that field: a longer
    // header trips the kernel's field-spanning-write WARNING on every kexec_file_load.
    assert_eq!(bz.setup_header.len(), 123);
    assert_eq!(image[0x201], 0x6a, "the jump's displacement is Linux's own");
    assert_eq!(&bz.setup_header[0x202 - 0x1f1..0x206 - 0x1f1], b"HdrS");
    assert_eq!(image[0x200], 0xeb, "a short jump at 0x200");
    assert_eq!(
        &image[0x26c..0x270],
        &HALT_FOREVER,
        "the jump lands on a halt"
    );

    // syssize: the payload in 16-byte paragraphs; payload_offset/length: nothing compressed.
    let u32_at = |at: usize| u32::from_le_bytes(image[at..at + 4].try_into().unwrap());
    assert_eq!(u32_at(OFF_SYSSIZE) as usize * 16, bz.payload.len());
    assert_eq!(u32_at(OFF_PAYLOAD_OFFSET), 0);
    assert_eq!(u32_at(OFF_PAYLOAD_LENGTH), 0);
    assert_eq!(u32_at(OFF_CODE32_START), 0x10_0000);
}

#[test]
fn the_version_string_is_where_kernel_version_points() {
    let image = common::image(LEN, MEMSZ);
    let at = usize::from(u16::from_le_bytes([image[0x20e], image[0x20f]])) + 0x200;
    let end = at + image[at..].iter().position(|&b| b == 0).unwrap();
    assert_eq!(&image[at..end], common::VERSION.as_bytes());
    assert!(end < SETUP_SIZE);
}

#[test]
fn init_size_leaves_room_for_an_appended_signature() {
    // A .bss too small to hold a signature: init_size grows to the padded payload + 64 KiB.
    let image = common::image(LEN, LEN as u64 + 0x100);
    let bz = BzImage::parse(&image).unwrap();
    let padded = LEN.div_ceil(0x200) * 0x200;
    assert_eq!(
        bz.init_size as usize,
        (padded + SIGNATURE_ROOM).div_ceil(4096) * 4096
    );
}

#[test]
fn the_payload_may_carry_a_signature_up_to_init_size() {
    let mut image = common::image(LEN, MEMSZ);
    let bz = BzImage::parse(&image).unwrap();
    let load_size = usize::try_from(bz.load_size()).unwrap();
    let room = load_size - bz.payload.len();
    image.resize(image.len() + room, 0x30);
    assert!(
        BzImage::parse(&image).is_ok(),
        "exactly PAGE_ALIGN(init_size) loads"
    );
    image.push(0);
    assert_eq!(
        BzImage::parse(&image),
        Err(ParseError::PayloadExceedsInitSize {
            len: load_size + 1,
            init_size: 0xb1000
        })
    );
}

/// Every check of bzImage64_probe() (Linux and kexec-tools), in their order.
#[test]
fn the_probe_checks_refuse_what_the_loaders_refuse() {
    let good = common::image(LEN, MEMSZ);
    let broken = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut image = good.clone();
        edit(&mut image);
        BzImage::parse(&image).unwrap_err()
    };
    assert_eq!(
        BzImage::parse(&good[..1023]),
        Err(ParseError::TooShort { len: 1023 })
    );
    assert_eq!(broken(&|i| i[0x202] = b'h'), ParseError::NoHdrS);
    assert_eq!(
        broken(&|i| put16(i, 0x1fe, 0x55aa)),
        ParseError::NoBootFlag { found: 0x55aa }
    );
    assert_eq!(
        broken(&|i| put16(i, 0x206, 0x020b)),
        ParseError::ProtocolTooOld { version: 0x020b }
    );
    assert!(BzImage::parse(&{
        let mut i = good.clone();
        put16(&mut i, 0x206, 0x020c);
        i
    })
    .is_ok());
    assert_eq!(broken(&|i| i[0x211] = 0x80), ParseError::NotLoadedHigh);
    assert_eq!(
        broken(&|i| put16(i, 0x236, 0x22)),
        ParseError::NotKernel64 { xloadflags: 0x22 }
    );
    assert_eq!(
        broken(&|i| put16(i, 0x236, 0x21)),
        ParseError::NotKernel64 { xloadflags: 0x21 }
    );
}

#[test]
fn the_load_checks_refuse_what_the_loaders_cannot_place() {
    let good = common::image(LEN, MEMSZ);
    let broken = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut image = good.clone();
        edit(&mut image);
        BzImage::parse(&image).unwrap_err()
    };
    let len = good.len();
    assert_eq!(
        broken(&|i| {
            i[0x1f1] = 0xff;
            i.truncate(0x1000);
        }),
        ParseError::Truncated {
            len: 0x1000,
            setup_len: 0x100 * 512
        }
    );
    assert_eq!(
        broken(&|i| i[0x201] = 0x90),
        ParseError::HeaderTooLong { len: 0x292 - 0x1f1 }
    );
    assert_eq!(
        broken(&|i| put32(i, 0x230, 0x3000)),
        ParseError::BadAlignment { alignment: 0x3000 }
    );
    assert_eq!(
        broken(&|i| put32(i, 0x230, 0)),
        ParseError::BadAlignment { alignment: 0 }
    );
    assert_eq!(
        broken(&|i| put32(i, 0x260, 0x1000)),
        ParseError::PayloadExceedsInitSize {
            len: len - 0x400,
            init_size: 0x1000
        }
    );
    assert_eq!(
        BzImage::parse(&good[..0x400 + 0x200]),
        Err(ParseError::NoEntry64 { len: 0x200 })
    );
}

#[test]
fn setup_sects_zero_means_four() {
    let mut image = common::image(LEN, MEMSZ);
    image[0x1f1] = 0;
    let bz = BzImage::parse(&image).unwrap();
    assert_eq!(bz.setup_sects, 4);
    assert_eq!(bz.payload.len(), image.len() - 5 * 512);
}

#[test]
fn kernel_info_offset_is_ignored_below_protocol_2_15() {
    let mut image = common::image(LEN, MEMSZ);
    put16(&mut image, 0x206, 0x020e);
    assert_eq!(BzImage::parse(&image).unwrap().kernel_info_offset, 0);
}

#[test]
fn garbage_is_refused_without_panicking() {
    let mut rng = fastrand::Rng::with_seed(12);
    let good = common::image(LEN, MEMSZ);
    for round in 0..2000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..rng.usize(..4096)).map(|_| rng.u8(..)).collect()
        } else {
            // A valid header with a few bytes of it flipped, cut anywhere.
            let mut b = good[..rng.usize(..0x2000)].to_vec();
            for _ in 0..4 {
                if !b.is_empty() {
                    let at = rng.usize(0x1f0.min(b.len() - 1)..b.len().min(0x270));
                    b[at] ^= rng.u8(1..);
                }
            }
            b
        };
        let _ = BzImage::parse(&bytes);
        let _ = minicap_bzimage::PeImage::parse(&bytes);
    }
}

#[test]
fn build_refuses_a_payload_that_is_not_minicaps() {
    let payload = common::payload(LEN, 7);
    let source = |payload: &[u8], memsz: u64, version: &'static str| {
        build(&ImageSource {
            payload,
            memsz,
            version,
        })
    };
    assert_eq!(
        source(&payload[..0x200], MEMSZ, "v").unwrap_err(),
        BuildError::PayloadTooShort { len: 0x200 }
    );
    let mut no_info = payload.clone();
    no_info[0x10] = 0;
    assert_eq!(
        source(&no_info, MEMSZ, "v").unwrap_err(),
        BuildError::NoKernelInfo
    );
    assert_eq!(
        source(&payload, 0x1000, "v").unwrap_err(),
        BuildError::MemszBelowPayload {
            memsz: 0x1000,
            len: LEN
        }
    );
    assert_eq!(
        source(&payload, 1 << 32, "v").unwrap_err(),
        BuildError::TooLarge { bytes: 1 << 32 }
    );
    assert_eq!(
        source(&payload, MEMSZ, "a\0b").unwrap_err(),
        BuildError::BadVersion
    );
    let long = "v".repeat(MAX_VERSION_LEN + 1);
    assert_eq!(
        build(&ImageSource {
            payload: &payload,
            memsz: MEMSZ,
            version: &long
        })
        .unwrap_err(),
        BuildError::BadVersion
    );
}

#[test]
fn errors_render_as_sentences() {
    let e = ParseError::NotKernel64 { xloadflags: 1 };
    assert!(e.to_string().contains("XLF_CAN_BE_LOADED_ABOVE_4G"));
    assert!(BuildError::NoKernelInfo.to_string().contains("LToP"));
}

//! The PE/COFF view: what sbsign and the kernel's verifier (verify_pefile.c) read, and the
//! refusals of `PeImage::parse` for layouts they would hash wrongly or reject.

mod common;

use minicap_bzimage::layout::*;
use minicap_bzimage::{BzImage, PeError, PeImage};

const LEN: usize = 0x7f170;
const MEMSZ: u64 = 0xb0988;

fn put32(image: &mut [u8], at: usize, v: u32) {
    image[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

#[test]
fn the_image_is_a_pe32_plus_efi_application_whose_sections_tile_the_file() {
    let image = common::image(LEN, MEMSZ);
    let pe = PeImage::parse(&image).unwrap();
    assert_eq!(pe.machine, 0x8664);
    assert_eq!(pe.subsystem, 10);
    assert_eq!((pe.section_alignment, pe.file_alignment), (0x1000, 0x200));
    assert_eq!(pe.size_of_headers, 0x200);
    assert_eq!(pe.cert_table, (0, 0), "unsigned: sbsign fills the entry");
    assert_eq!(
        pe.signed_end as usize,
        image.len(),
        "every byte is in the digest"
    );

    let sections = pe.sections();
    assert_eq!(sections.len(), 2);
    let (setup, text) = (sections[0], sections[1]);
    assert_eq!(&setup.name, b".setup\0\0");
    assert_eq!((setup.raw_offset, setup.raw_size), (0x200, 0x200));
    assert_eq!(&text.name, b".text\0\0\0");
    assert_eq!(text.raw_offset as usize, SETUP_SIZE);
    assert_eq!(text.raw_size as usize, image.len() - SETUP_SIZE);
    assert_eq!(
        text.virtual_size as u64, MEMSZ,
        "in memory .text is the whole runtime image"
    );
    for s in sections {
        assert_eq!(s.virtual_address % pe.section_alignment, 0);
        assert_eq!(s.raw_offset % pe.file_alignment, 0);
        assert_eq!(s.raw_size % pe.file_alignment, 0);
        assert!(s.virtual_address >= pe.size_of_headers);
    }
    assert_eq!(
        pe.size_of_image,
        (text.virtual_address + text.virtual_size).div_ceil(0x1000) * 0x1000
    );

    // The PE entry point is the EFI_UNSUPPORTED stub inside .setup.
    let entry_in_file = (pe.entry_point - setup.virtual_address + setup.raw_offset) as usize;
    assert!(pe.entry_point >= setup.virtual_address);
    assert!(pe.entry_point < setup.virtual_address + setup.virtual_size);
    assert_eq!(
        &image[entry_in_file..entry_in_file + EFI_UNSUPPORTED_STUB.len()],
        &EFI_UNSUPPORTED_STUB
    );

    // The setup header's fields before 0x200 are inside the signed headers; the PE headers end
    // before it starts.
    assert!(pe.cert_entry_offset + 8 <= OFF_SETUP_SECTS);
    assert!(pe.checksum_offset + 4 <= OFF_SETUP_SECTS);
}

/// What sbsign produces: the image padded to 8 bytes, a WIN_CERTIFICATE table appended, the
/// certificate directory entry pointing at it. Both views still parse, and the bzImage loaders
/// load the signature as part of the payload, inside init_size.
#[test]
fn an_appended_certificate_table_keeps_both_views_valid() {
    let mut image = common::image(LEN, MEMSZ);
    let pe = PeImage::parse(&image).unwrap();
    let offset = u32::try_from(image.len()).unwrap(); // already 8-byte aligned (file alignment)
    let table = 0x5a8u32;
    image.resize(image.len() + table as usize, 0x30);
    put32(&mut image, pe.cert_entry_offset, offset);
    put32(&mut image, pe.cert_entry_offset + 4, table);
    let signed = PeImage::parse(&image).unwrap();
    assert_eq!(signed.cert_table, (offset, table));
    assert_eq!(signed.signed_end, offset);
    let bz = BzImage::parse(&image).unwrap();
    assert_eq!(bz.payload.len(), image.len() - SETUP_SIZE);
}

#[test]
fn certificate_tables_the_verifier_would_misread_are_refused() {
    let good = common::image(LEN, MEMSZ);
    let pe = PeImage::parse(&good).unwrap();
    let with_table = |offset: u32, size: u32, extra: usize| {
        let mut image = good.clone();
        image.resize(image.len() + extra, 0);
        put32(&mut image, pe.cert_entry_offset, offset);
        put32(&mut image, pe.cert_entry_offset + 4, size);
        PeImage::parse(&image).unwrap_err()
    };
    let end = u32::try_from(good.len()).unwrap();
    // Not at the end of the file.
    assert_eq!(
        with_table(end, 0x100, 0x200),
        PeError::BadCertificateTable {
            offset: end,
            size: 0x100
        }
    );
    // Misaligned.
    assert_eq!(
        with_table(end + 4, 0x100, 0x104),
        PeError::BadCertificateTable {
            offset: end + 4,
            size: 0x100
        }
    );
    // Overlapping the payload.
    assert_eq!(
        with_table(end - 0x100, 0x200, 0x100),
        PeError::BadCertificateTable {
            offset: end - 0x100,
            size: 0x200
        }
    );
}

/// The structural checks of pefile_parse_binary(), each on its own.
#[test]
fn broken_headers_are_refused_with_the_reason() {
    let good = common::image(LEN, MEMSZ);
    let broken = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut image = good.clone();
        edit(&mut image);
        PeImage::parse(&image).unwrap_err()
    };
    let opt = PE_OFFSET + PE_HEADER_SIZE;
    let table = opt + PE32PLUS_FIXED_SIZE + DATA_DIRECTORIES * DATA_DIRECTORY_SIZE;
    assert_eq!(broken(&|i| i[0] = b'Z'), PeError::NoMz);
    assert_eq!(PeImage::parse(b"M"), Err(PeError::NoMz));
    assert_eq!(
        broken(&|i| put32(i, OFF_E_LFANEW, 0x20)),
        PeError::BadPeOffset { offset: 0x20 }
    );
    assert_eq!(
        broken(&|i| put32(i, OFF_E_LFANEW, u32::MAX)),
        PeError::BadPeOffset { offset: u32::MAX }
    );
    assert_eq!(broken(&|i| i[PE_OFFSET + 2] = 1), PeError::NoPeSignature);
    assert_eq!(
        broken(&|i| i[opt + 1] = 0x01),
        PeError::NotPe32Plus,
        "PE32 magic"
    );
    assert_eq!(
        broken(&|i| put32(i, opt + 60, 0x80)),
        PeError::BadHeaderSize { size: 0x80 }
    );
    let len = u32::try_from(good.len()).unwrap();
    assert_eq!(
        broken(&|i| put32(i, opt + 60, len)),
        PeError::BadHeaderSize { size: len }
    );
    assert_eq!(
        broken(&|i| put32(i, opt + 108, 4)),
        PeError::TablesOutsideHeaders,
        "no certificate directory"
    );
    assert_eq!(
        broken(&|i| put32(i, opt + 108, 0x1000)),
        PeError::TablesOutsideHeaders
    );
    assert_eq!(
        broken(&|i| i[PE_OFFSET + 6] = 9),
        PeError::TablesOutsideHeaders,
        "9 section headers do not fit before SizeOfHeaders"
    );
    // .text starting one sector late leaves a gap the digest would skip.
    assert_eq!(
        broken(&|i| put32(i, table + SECTION_HEADER_SIZE + 20, 0x600)),
        PeError::SectionGap {
            index: 1,
            offset: 0x600,
            expected: 0x400
        }
    );
    assert_eq!(
        broken(&|i| put32(i, table + SECTION_HEADER_SIZE + 16, len)),
        PeError::SectionOutsideFile { index: 1 }
    );
}

/// Unsigned, the digest covers every byte but the checksum and the certificate entry, in file
/// order: nothing of the setup header or the payload escapes the signature.
#[test]
fn the_digest_covers_everything_but_the_checksum_and_certificate_entry() {
    let image = common::image(LEN, MEMSZ);
    let pe = PeImage::parse(&image).unwrap();
    let ranges: Vec<_> = pe.digest_ranges(image.len()).collect();
    let mut expected_start = 0;
    let mut gaps = Vec::new();
    for r in &ranges {
        if r.start != expected_start {
            gaps.push(expected_start..r.start);
        }
        expected_start = r.end;
    }
    assert_eq!(expected_start, image.len());
    assert_eq!(
        gaps,
        [
            pe.checksum_offset..pe.checksum_offset + 4,
            pe.cert_entry_offset..pe.cert_entry_offset + 8
        ]
    );
}

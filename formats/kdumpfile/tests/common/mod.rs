//! An independent reader of kdump-compressed files, written from the format description
//! (raw offsets; crash's `pfn_to_pos()` rule: descriptor i belongs to the i-th set bit of
//! the 2nd bitmap), sharing no code with the encoder. zlib pages are inflated with
//! miniz_oxide's inflate side (the encoder only uses its deflate side), LZO pages with the
//! `lzokay` crate's decoder (the encoder is minicap's own).

// Test files: every cast here is lossless on the host.
#![allow(clippy::cast_possible_truncation, dead_code)]

use std::collections::BTreeMap;

pub fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
pub fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// One LZO1X-compressed page, which must fill exactly one block.
pub fn lzo_decompress(stored: &[u8]) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    let n = lzokay::decompress::decompress(stored, &mut page).unwrap();
    assert_eq!(n, page.len(), "an LZO page decompresses to one block");
    page
}

/// What the independent reader found.
pub struct Read {
    pub status: u32,
    pub dump_level: i32,
    pub pages: BTreeMap<u64, Vec<u8>>,
    pub ram: Vec<u64>,
    pub vmcoreinfo: Vec<u8>,
    pub notes: Vec<u8>,
    pub flags_seen: Vec<u32>,
}

pub fn read(file: &[u8]) -> Read {
    assert_eq!(&file[0..8], b"KDUMP   ");
    assert_eq!(le32(file, 8), 6, "header_version");
    assert!(
        file[12 + 4 * 65..].starts_with(b"x86_64\0"),
        "utsname.machine"
    );
    let status = le32(file, 0x1a8);
    let block = le32(file, 0x1ac) as usize;
    assert_eq!(block, 4096);
    let sub_hdr_size = le32(file, 0x1b0) as usize;
    let bitmap_blocks = le32(file, 0x1b4) as usize;
    let max_mapnr32 = le32(file, 0x1b8) as u64;
    assert!(le32(file, 0x1cc) > 0, "nr_cpus");
    let sub = &file[block..];
    let dump_level = le32(sub, 8) as i32;
    let (off_vi, size_vi) = (le64(sub, 32) as usize, le64(sub, 40) as usize);
    let (off_note, size_note) = (le64(sub, 48) as usize, le64(sub, 56) as usize);
    let max_mapnr = le64(sub, 96);
    assert_eq!(max_mapnr, max_mapnr32);
    assert_eq!(off_note, block + 104);
    // crash: the bitmaps are "partial" (two halves) when bitmap_blocks covers two bitmaps.
    let one = (max_mapnr as usize).div_ceil(8).div_ceil(block) * block;
    assert_eq!(bitmap_blocks * block, 2 * one);
    let bm1 = &file[block * (1 + sub_hdr_size)..][..one];
    let bm2 = &file[block * (1 + sub_hdr_size) + one..][..one];
    let data_offset = block * (1 + sub_hdr_size + bitmap_blocks);
    let is_on = |bm: &[u8], pfn: u64| bm[(pfn / 8) as usize] & (1 << (pfn % 8)) != 0;
    let mut pages = BTreeMap::new();
    let mut ram = Vec::new();
    let mut flags_seen = Vec::new();
    let mut pos = 0usize;
    for pfn in 0..max_mapnr {
        if is_on(bm1, pfn) {
            ram.push(pfn);
        }
        if !is_on(bm2, pfn) {
            continue;
        }
        assert!(is_on(bm1, pfn), "dumped but not RAM: {pfn:#x}");
        let d = data_offset + 24 * pos;
        pos += 1;
        let (offset, size, flags) = (
            le64(file, d) as usize,
            le32(file, d + 8) as usize,
            le32(file, d + 12),
        );
        assert!(size <= block && offset >= data_offset + 24 * pos);
        let stored = &file[offset..offset + size];
        let page = match flags {
            0 => {
                assert_eq!(size, block);
                stored.to_vec()
            }
            1 => miniz_oxide::inflate::decompress_to_vec_zlib(stored).unwrap(),
            2 => lzo_decompress(stored),
            f => panic!("flags {f}"),
        };
        assert_eq!(page.len(), block);
        flags_seen.push(flags);
        pages.insert(pfn, page);
    }
    Read {
        status,
        dump_level,
        pages,
        ram,
        vmcoreinfo: file[off_vi..off_vi + size_vi].to_vec(),
        notes: file[off_note..off_note + size_note].to_vec(),
        flags_seen,
    }
}

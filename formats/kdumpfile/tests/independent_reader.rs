//! Writes kdump-compressed files from synthetic memory and reads them back with the
//! independent reader of `common/`.

// Test sizes are a few MiB: every cast here is lossless.
#![allow(clippy::cast_possible_truncation)]

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::ops::Range;

use common::{le32, read};
use minicap_kdumpfile::{
    write_kdump, CycleBitmap, DumpInfo, KdumpError, Lzo, NoCompression, PageCompressor, PageSource,
    Sink, Utsname, WriterOptions, Zlib,
};

/// A file in memory.
#[derive(Default)]
struct FileSink {
    bytes: Vec<u8>,
    writes: Vec<(u64, usize)>,
}

impl Sink for FileSink {
    type Error = Infallible;
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Infallible> {
        self.writes.push((offset, bytes.len()));
        let end = offset as usize + bytes.len();
        if self.bytes.len() < end {
            self.bytes.resize(end, 0);
        }
        self.bytes[offset as usize..end].copy_from_slice(bytes);
        Ok(())
    }
}

/// Synthetic RAM: pfn -> page contents, plus unreadable frames and filtered frames.
struct Memory {
    pages: BTreeMap<u64, Vec<u8>>,
    unreadable: Vec<u64>,
    filtered: Vec<Range<u64>>,
}

impl PageSource for Memory {
    type Error = ();
    fn read_page(&mut self, pfn: u64, page: &mut [u8; 4096]) -> Result<(), ()> {
        if self.unreadable.contains(&pfn) {
            return Err(());
        }
        match self.pages.get(&pfn) {
            Some(p) => page.copy_from_slice(p),
            None => page.fill(0),
        }
        Ok(())
    }
    fn filter(&mut self, dumpable: &mut CycleBitmap<'_>) {
        for r in &self.filtered {
            dumpable.clear_range(r.clone());
        }
    }
}

fn rng(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

/// RAM at [1 MiB, 5 MiB) and [8 MiB, 9.5 MiB) + a partial page (left out), overlapping
/// ranges; zero, patterned and random pages.
fn memory() -> (Memory, Vec<Range<u64>>) {
    let ram: Vec<Range<u64>> = vec![
        0x10_0000..0x50_0000,
        0x80_0000..0x98_0800,
        0x20_0000..0x21_0000,
    ];
    let mut pages = BTreeMap::new();
    let mut seed = 42;
    for r in &ram {
        for pfn in r.start / 4096..r.end.div_ceil(4096) {
            let kind = rng(&mut seed) % 4;
            let page: Vec<u8> = match kind {
                0 => continue, // zero page
                1 => (0..4096).map(|i| (i as u64 * pfn) as u8).collect(),
                2 => (0..4096).map(|_| rng(&mut seed) as u8).collect(),
                _ => {
                    let mut p = vec![0u8; 4096];
                    p[(pfn % 4096) as usize] = 0xa5;
                    p
                }
            };
            pages.insert(pfn, page);
        }
    }
    let unreadable = vec![0x100, 0x4ff];
    let filtered = vec![0x300..0x310, 0x970..0x980];
    (
        Memory {
            pages,
            unreadable,
            filtered,
        },
        ram,
    )
}

const NOTES: &[u8] = b"CORE-NOTES-PLACEHOLDER....VMCOREINFO-TEXT:OSRELEASE=6.1.0\nPAGESIZE=4096\n";

fn info(ram: &[Range<u64>], dump_level: i32) -> DumpInfo<'_> {
    DumpInfo {
        utsname: Utsname::new(["Linux", "host", "6.1.0", "#1 SMP", "x86_64", "(none)"]),
        time: (1_796_195_042, 0),
        nr_cpus: 2,
        phys_base: 0x1234_0000,
        dump_level,
        notes: NOTES,
        vmcoreinfo: Some(26..NOTES.len()),
        ram,
    }
}

fn check<C: PageCompressor>(mut compressor: C, dump_level: i32, cycle: usize) {
    let (mut mem, ram) = memory();
    let expected_pages = mem.pages.clone();
    let mut sink = FileSink::default();
    let stats = write_kdump(
        &mut sink,
        &mut mem,
        &mut compressor,
        &info(&ram, dump_level),
        WriterOptions {
            cycle_bitmap_bytes: cycle,
        },
    )
    .unwrap();
    // Every write is whole blocks at block offsets; block 0 is written first and last.
    assert!(sink
        .writes
        .iter()
        .all(|&(o, l)| o % 4096 == 0 && l % 4096 == 0 && l > 0));
    assert_eq!(sink.writes.first().unwrap().0, 0);
    assert_eq!(sink.writes.last().unwrap().0, 0);
    assert_eq!(stats.file_len, sink.bytes.len() as u64);

    let r = read(&sink.bytes);
    assert_eq!(le32(&sink.bytes, 0x1cc), 2, "nr_cpus");
    assert_eq!(
        r.status,
        compressor.flag(),
        "complete, with the compression flag"
    );
    assert_eq!(r.dump_level, dump_level);
    assert_eq!(r.notes, NOTES);
    assert_eq!(r.vmcoreinfo, &NOTES[26..]);
    // The RAM bitmap: every whole frame of every range (a partial last page is left out).
    let mut ram_pfns: Vec<u64> = ram
        .iter()
        .flat_map(|r| r.start / 4096..r.end / 4096)
        .collect();
    ram_pfns.sort_unstable();
    ram_pfns.dedup();
    assert_eq!(r.ram, ram_pfns);
    assert_eq!(stats.ram_pages, ram_pfns.len() as u64);
    // Every dumped page has exactly the source bytes; left out: filtered and unreadable.
    let mut dumped = 0;
    for pfn in &ram_pfns {
        let filtered = (0x300..0x310).contains(pfn) || (0x970..0x980).contains(pfn);
        let unreadable = *pfn == 0x100 || *pfn == 0x4ff;
        match r.pages.get(pfn) {
            Some(page) => {
                assert!(!filtered && !unreadable, "{pfn:#x}");
                let want = expected_pages.get(pfn).cloned().unwrap_or(vec![0; 4096]);
                assert_eq!(page, &want, "page {pfn:#x}");
                dumped += 1;
            }
            None => assert!(filtered || unreadable, "missing {pfn:#x}"),
        }
    }
    assert_eq!(stats.dumped_pages, dumped);
    assert_eq!(stats.unreadable_pages, 2);
    assert_eq!(stats.filtered_pages, 32);
    assert_eq!(
        stats.zero_pages + stats.compressed_pages + stats.raw_pages,
        stats.dumped_pages
    );
    if dump_level & 1 != 0 {
        assert!(stats.zero_pages > 100);
    } else {
        assert_eq!(stats.zero_pages, 0);
    }
    if compressor.flag() != 0 {
        assert!(stats.compressed_pages > 100 && stats.raw_pages > 100);
        assert!(r.flags_seen.contains(&compressor.flag()) && r.flags_seen.contains(&0));
    } else {
        assert!(r.flags_seen.iter().all(|&f| f == 0));
    }
}

#[test]
fn raw_pages_read_back() {
    check(NoCompression, 0, 4096);
}

#[test]
fn zlib_with_zero_pages_read_back() {
    check(Zlib::new(), 1, 4096);
}

#[test]
fn lzo_read_back_with_and_without_zero_pages() {
    check(Lzo::new(), 1, 4096);
    check(Lzo::new(), 0, 8192);
}

#[test]
fn a_compressor_chosen_at_run_time_is_one_too() {
    let chosen: Box<dyn PageCompressor> = Box::new(Lzo::new());
    check(chosen, 1, 4096);
}

#[test]
fn cycle_size_does_not_change_the_file() {
    let mut files = Vec::new();
    for cycle in [4096, 8192, 64 * 1024] {
        let (mut mem, ram) = memory();
        let mut sink = FileSink::default();
        write_kdump(
            &mut sink,
            &mut mem,
            &mut Zlib::new(),
            &info(&ram, 1),
            WriterOptions {
                cycle_bitmap_bytes: cycle,
            },
        )
        .unwrap();
        files.push(sink.bytes);
    }
    assert_eq!(files[0], files[1]);
    assert_eq!(files[0], files[2]);
}

#[test]
fn interrupted_dump_is_marked_incomplete_and_options_are_checked() {
    struct Failing(FileSink, usize);
    impl Sink for Failing {
        type Error = &'static str;
        fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), &'static str> {
            if self.0.writes.len() == self.1 {
                return Err("device error");
            }
            let _ = self.0.write(offset, bytes);
            Ok(())
        }
    }
    let (mut mem, ram) = memory();
    let mut sink = Failing(FileSink::default(), 20);
    let err = write_kdump(
        &mut sink,
        &mut mem,
        &mut Zlib::new(),
        &info(&ram, 1),
        WriterOptions::default(),
    );
    assert_eq!(err.unwrap_err(), KdumpError::Sink("device error"));
    assert_eq!(le32(&sink.0.bytes, 0x1a8), 1 | 8, "zlib | incomplete");

    let mut sink = FileSink::default();
    for bad in [0, 1000] {
        assert!(matches!(
            write_kdump(
                &mut sink,
                &mut mem,
                &mut Zlib::new(),
                &info(&ram, 1),
                WriterOptions {
                    cycle_bitmap_bytes: bad
                }
            ),
            Err(KdumpError::BadOptions)
        ));
    }
    let mut bad = info(&ram, 1);
    bad.vmcoreinfo = Some(10..NOTES.len() + 1);
    assert!(matches!(
        write_kdump(
            &mut sink,
            &mut mem,
            &mut Zlib::new(),
            &bad,
            WriterOptions::default()
        ),
        Err(KdumpError::BadVmcoreinfoRange)
    ));
}

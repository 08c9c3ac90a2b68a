//! A real Linux 6.1 vmcore converted to kdump-compressed by this crate and read back by the
//! real makedumpfile, **only if they are present** (an end-to-end run leaves them behind):
//! `$MINICAP_REAL_VMCORE_DIR` (default `/tmp/kdump-real`) holding `vmcore` (ELF) and
//! `dmesg.txt` (`makedumpfile --dump-dmesg` of it), and `makedumpfile` on the PATH. Skipped
//! otherwise; `independent_reader.rs` always runs.
//!
//! The file is written at dump level 17 (zero pages shared, free pages left out by
//! `minicap-pagefilter`), zlib compressed. Checks: (1) both bitmaps equal those of
//! `makedumpfile -c -d 17` on the same vmcore; (2) `makedumpfile --dump-dmesg` on our file
//! prints exactly `dmesg.txt` (it finds VMCOREINFO through the sub header and reads the log
//! pages through bitmaps, descriptors and zlib); (3) `makedumpfile -d 17` re-filters our file
//! (reading every page we stored) into a raw kdump file, whose every page the independent
//! reader compares with the ELF vmcore; (4) if `crash` is installed, its header reader
//! (`crash -d 1 --osrelease`, which parses the header, sub header, VMCOREINFO, notes and
//! bitmap geometry without needing vmlinux) reports the same fields for our file as for
//! makedumpfile's.

#![allow(clippy::cast_possible_truncation)]

mod common;

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

use minicap_elfcore::{FileHeader, LoadSegment, Phdr, PHDR_LEN, PT_LOAD, PT_NOTE};
use minicap_kdumpfile::{
    write_kdump, CycleBitmap, DumpInfo, PageSource, Sink, Utsname, WriterOptions, Zlib,
};
use minicap_pagefilter::{FreePageFilter, PageLayout};
use minicap_physmem::{PhysMem, PhysMemError};
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

struct ElfVmcore {
    file: File,
    loads: Vec<Phdr>,
}

impl ElfVmcore {
    /// Copies the bytes of `paddr..paddr+buf.len()` that the PT_LOADs hold (the rest is
    /// zero); returns whether one PT_LOAD held them all.
    fn read_lenient(&self, paddr: u64, buf: &mut [u8]) -> bool {
        buf.fill(0);
        let end = paddr + buf.len() as u64;
        for p in &self.loads {
            let (s, e) = (paddr.max(p.p_paddr), end.min(p.p_paddr + p.p_filesz));
            if s < e {
                let dst = &mut buf[(s - paddr) as usize..(e - paddr) as usize];
                self.file
                    .read_exact_at(dst, p.p_offset + (s - p.p_paddr))
                    .unwrap();
            }
        }
        self.loads
            .iter()
            .any(|p| p.p_paddr <= paddr && end <= p.p_paddr + p.p_filesz)
    }
}

impl PhysMem for ElfVmcore {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        if self.read_lenient(paddr, buf) {
            Ok(())
        } else {
            Err(PhysMemError::new(paddr, buf.len()))
        }
    }
}

/// What the capture kernel will do: pages from old memory, free pages filtered out.
struct FilteredPages<'a> {
    vmcore: &'a ElfVmcore,
    filter: FreePageFilter<'a, ElfVmcore>,
}

impl PageSource for FilteredPages<'_> {
    type Error = ();
    fn read_page(&mut self, pfn: u64, page: &mut [u8; 4096]) -> Result<(), ()> {
        self.vmcore.read_lenient(pfn * 4096, page);
        Ok(())
    }
    fn filter(&mut self, dumpable: &mut CycleBitmap<'_>) {
        let pfns = dumpable.pfns();
        self.filter.exclude(pfns, |r| dumpable.clear_range(r));
    }
}

struct FileSink(File);

impl Sink for FileSink {
    type Error = std::io::Error;
    fn write(&mut self, offset: u64, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all_at(bytes, offset)
    }
}

/// (notes, VMCOREINFO range in them, number of NT_PRSTATUS notes).
fn notes_of(notes: &[u8]) -> (Option<Range<usize>>, i32) {
    let (mut at, mut vmcoreinfo, mut cpus) = (0usize, None, 0);
    let pad = |n: usize| n.div_ceil(4) * 4;
    while at + 12 <= notes.len() {
        let word = |i: usize| u32::from_le_bytes(notes[at + i..at + i + 4].try_into().unwrap());
        let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
        let name = &notes[at + 12..at + 12 + namesz];
        let desc = at + 12 + pad(namesz);
        if name == b"VMCOREINFO\0" {
            vmcoreinfo = Some(desc..desc + descsz);
        } else if name == b"CORE\0" && kind == 1 {
            cpus += 1;
        }
        at = desc + pad(descsz);
    }
    (vmcoreinfo, cpus)
}

/// The header fields crash's diskdump reader reports for `file` (host pointers and the
/// timestamp left out), or None if crash is not installed.
fn crash_header_view(file: &std::path::Path) -> Option<Vec<String>> {
    let out = Command::new("crash")
        .args(["-d", "1", "--osrelease"])
        .arg(file)
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    const FIELDS: &[&str] = &[
        "signature:",
        "header_version:",
        "sysname:",
        "nodename:",
        "release:",
        "version:",
        "machine:",
        "domainname:",
        "status:",
        "block_size:",
        "sub_hdr_size:",
        "bitmap_blocks:",
        "max_mapnr:",
        "nr_cpus:",
        "phys_base:",
        "dump_level:",
        "split:",
        "offset_vmcoreinfo:",
        "size_vmcoreinfo:",
        "offset_note:",
        "size_note:",
        "num_prstatus_notes:",
        "NOTE offsets:",
        "offset_eraseinfo:",
        "size_eraseinfo:",
        "max_mapnr_64:",
        "data_offset:",
        "bitmap_len:",
        "RIP:",
        "RSP:",
    ];
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    Some(
        text.lines()
            .map(str::trim)
            .filter(|l| {
                FIELDS
                    .iter()
                    .any(|f| l.starts_with(f) || l.contains(&format!(" {f}")))
            })
            .map(String::from)
            .collect(),
    )
}

/// Whether our file's 2nd bitmap keeps `pfn`.
fn is_on2(file: &[u8], pfn: u64) -> bool {
    let block = common::le32(file, 0x1ac) as usize;
    let half = block * common::le32(file, 0x1b4) as usize / 2;
    let bm2 = block * (1 + common::le32(file, 0x1b0) as usize) + half;
    file[bm2 + (pfn / 8) as usize] & (1 << (pfn % 8)) != 0
}

#[test]
fn real_vmcore_to_kdump_read_by_makedumpfile_if_present() {
    let dir = PathBuf::from(
        std::env::var("MINICAP_REAL_VMCORE_DIR").unwrap_or_else(|_| "/tmp/kdump-real".into()),
    );
    let (Ok(file), Ok(expected_dmesg)) = (
        File::open(dir.join("vmcore")),
        std::fs::read(dir.join("dmesg.txt")),
    ) else {
        eprintln!("skipped: no {}/vmcore and dmesg.txt", dir.display());
        return;
    };
    if Command::new("makedumpfile").arg("-v").output().is_err() {
        eprintln!("skipped: no makedumpfile");
        return;
    }
    let mut ehdr = [0u8; 64];
    file.read_exact_at(&mut ehdr, 0).unwrap();
    let eh = FileHeader::decode(&ehdr);
    let phdrs: Vec<Phdr> = (0..u64::from(eh.e_phnum))
        .map(|i| {
            let mut raw = [0u8; PHDR_LEN];
            file.read_exact_at(&mut raw, eh.program_header_offset(i).unwrap())
                .unwrap();
            Phdr::decode(&raw)
        })
        .collect();
    let note = phdrs.iter().find(|p| p.p_type == PT_NOTE).unwrap();
    let mut notes = vec![0u8; note.p_filesz as usize];
    file.read_exact_at(&mut notes, note.p_offset).unwrap();
    let (vmcoreinfo, nr_cpus) = notes_of(&notes);
    let loads: Vec<Phdr> = phdrs.into_iter().filter(|p| p.p_type == PT_LOAD).collect();
    let ram: Vec<Range<u64>> = loads
        .iter()
        .map(|p| p.p_paddr..p.p_paddr + p.p_memsz)
        .collect();
    let segments: Vec<LoadSegment> = loads
        .iter()
        .map(|p| LoadSegment {
            paddr: p.p_paddr,
            vaddr: p.p_vaddr,
            memsz: p.p_filesz,
            source: p.p_paddr,
            flags: p.p_flags,
        })
        .collect();
    let vmcore = ElfVmcore { file, loads };
    let text = &notes[vmcoreinfo.clone().unwrap()];
    let vi = VmcoreInfo::new(text);
    // The header's utsname: init_uts_ns.name in old memory, as makedumpfile takes it.
    let old = OldMemory::new(&vmcore, &segments, vi.phys_base());
    let mut uts = [0u8; 390];
    let name_at = vi.utsname_address().unwrap();
    old.read(name_at, &mut uts).unwrap();
    let utsname = Utsname::from_bytes(&uts);
    assert!(utsname.0[4].starts_with(b"x86_64"));

    let out_dir = std::env::temp_dir().join(format!("minicap-kdump-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let ours = out_dir.join("minicap.kdump");
    let mut sink = FileSink(File::create(&ours).unwrap());
    let info = DumpInfo {
        utsname,
        time: (vi.value("CRASHTIME").unwrap().parse().unwrap(), 0),
        nr_cpus,
        phys_base: vi.phys_base().unwrap(),
        dump_level: 17,
        notes: &notes,
        vmcoreinfo,
        ram: &ram,
    };
    let max_mapnr = ram.iter().map(|r| r.end.div_ceil(4096)).max().unwrap();
    let old = old.with_page_tables(PageTables::from_vmcoreinfo(&vi).unwrap());
    let filter = FreePageFilter::new(
        old,
        PageLayout::from_vmcoreinfo(&vi).unwrap(),
        &ram,
        17,
        max_mapnr,
    )
    .unwrap();
    let mut pages = FilteredPages {
        vmcore: &vmcore,
        filter,
    };
    let stats = write_kdump(
        &mut sink,
        &mut pages,
        &mut Zlib::new(),
        &info,
        WriterOptions::default(),
    )
    .unwrap();
    eprintln!("{stats:?} {:?}", pages.filter.stats());
    assert!(stats.filtered_pages > 100_000 && stats.zero_pages > 100);
    drop(sink);

    // (1) The same bitmaps as makedumpfile's own -d 17 file.
    let reference = out_dir.join("reference.kdump");
    let run = Command::new("makedumpfile")
        .args(["-c", "-d", "17"])
        .arg(dir.join("vmcore"))
        .arg(&reference)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let bitmaps = |file: &[u8]| {
        let block = common::le32(file, 0x1ac) as usize;
        let start = block * (1 + common::le32(file, 0x1b0) as usize);
        file[start..start + block * common::le32(file, 0x1b4) as usize].to_vec()
    };
    let ours_bytes = std::fs::read(&ours).unwrap();
    assert!(
        bitmaps(&ours_bytes) == bitmaps(&std::fs::read(&reference).unwrap()),
        "bitmaps differ from makedumpfile's"
    );

    // (4) crash's view of both headers.
    match crash_header_view(&ours) {
        Some(view) => {
            let theirs = crash_header_view(&reference).unwrap();
            assert!(
                view.iter()
                    .any(|l| l.starts_with("signature: \"KDUMP   \"")),
                "{view:?}"
            );
            assert!(
                view.iter().any(|l| l.starts_with("dump_level: 17")),
                "{view:?}"
            );
            assert_eq!(view, theirs);
        }
        None => eprintln!("crash not installed: its header check skipped"),
    }

    // (2) The log, through makedumpfile's reader of our format.
    let dmesg = out_dir.join("dmesg.txt");
    let run = Command::new("makedumpfile")
        .arg("--dump-dmesg")
        .arg(&ours)
        .arg(&dmesg)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        std::fs::read(&dmesg).unwrap() == expected_dmesg,
        "dmesg differs"
    );

    // (3) Every page, re-filtered by makedumpfile into a raw kdump file.
    let refiltered = out_dir.join("refiltered.kdump");
    let run = Command::new("makedumpfile")
        .args(["-d", "17"])
        .arg(&ours)
        .arg(&refiltered)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let r = common::read(&std::fs::read(&refiltered).unwrap());
    assert_eq!(r.dump_level, 17);
    assert!(
        r.flags_seen.iter().all(|&f| f == 0),
        "makedumpfile wrote raw pages"
    );
    let mut page = vec![0u8; 4096];
    let mut nonzero = 0u64;
    for pfn in 0..stats.layout.unwrap().max_mapnr {
        vmcore.read_lenient(pfn * 4096, &mut page);
        match r.pages.get(&pfn) {
            Some(p) => {
                assert_eq!(p, &page, "page {pfn:#x}");
                nonzero += u64::from(p.iter().any(|&b| b != 0));
            }
            None => assert!(
                page.iter().all(|&b| b == 0) || !r.ram.contains(&pfn) || !is_on2(&ours_bytes, pfn),
                "page {pfn:#x} lost"
            ),
        }
    }
    assert_eq!(nonzero, stats.compressed_pages + stats.raw_pages);
    std::fs::remove_dir_all(&out_dir).unwrap();
}

//! A real Linux 6.1 vmcore converted to kdump-compressed by this crate and read back by the
//! real makedumpfile, **only if they are present** (an end-to-end run leaves them behind):
//! `$MINICAP_REAL_VMCORE_DIR` (default `/tmp/kdump-real`) holding `vmcore` (ELF) and
//! `dmesg.txt` (`makedumpfile --dump-dmesg` of it), and `makedumpfile` on the PATH. Skipped
//! otherwise; `independent_reader.rs` always runs.
//!
//! The file is written at dump level 17 (zero pages shared, free pages left out by
//! `minicap-pagefilter`), zlib compressed, then again LZO compressed and uncompressed
//! (checks 2 and 3 for each). Checks: (1) both bitmaps equal those of
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
use std::os::unix::fs::FileExt;
use std::process::Command;

use std::path::Path;

use minicap_kdumpfile::{
    write_kdump, CycleBitmap, DumpInfo, Lzo, NoCompression, PageCompressor, PageSource, Sink,
    Utsname, WriteStats, WriterOptions, Zlib, DUMP_DH_COMPRESSED_LZO,
};
use minicap_pagefilter::{applicable_level, PageFilter};
use minicap_realvmcore::{expected_dmesg, tool_present, RealVmcore};
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

/// What the capture kernel will do: pages from old memory, free pages filtered out.
struct FilteredPages<'a> {
    vmcore: &'a RealVmcore,
    filter: PageFilter<'a, RealVmcore>,
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

/// Writes `vmcore` to `path` as the capture kernel would, at dump level 17, through
/// `compressor`.
fn write_ours<C: PageCompressor>(
    vmcore: &RealVmcore,
    compressor: &mut C,
    path: &Path,
) -> WriteStats {
    let notes = vmcore.notes.clone();
    let vmcoreinfo = Some(vmcore.vmcoreinfo_range());
    let nr_cpus = i32::try_from(vmcore.cpu_count()).unwrap();
    let ram = vmcore.ram();
    let segments = vmcore.segments();
    let vi = VmcoreInfo::new(vmcore.vmcoreinfo());
    // The header's utsname: init_uts_ns.name in old memory, as makedumpfile takes it.
    let old = OldMemory::new(vmcore, &segments, vi.phys_base());
    let mut uts = [0u8; 390];
    let name_at = vi.utsname_address().unwrap();
    old.read(name_at, &mut uts).unwrap();
    let utsname = Utsname::from_bytes(&uts);
    assert!(utsname.0[4].starts_with(b"x86_64"));

    let mut sink = FileSink(File::create(path).unwrap());
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
    let decision = applicable_level(17, &vi, &ram);
    assert_eq!((decision.level, decision.lowered), (17, None));
    let filter = PageFilter::new(old, decision.layout.unwrap(), &ram, max_mapnr, 17).unwrap();
    let mut pages = FilteredPages { vmcore, filter };
    let stats = write_kdump(
        &mut sink,
        &mut pages,
        compressor,
        &info,
        WriterOptions::default(),
    )
    .unwrap();
    eprintln!("{stats:?} {:?}", pages.filter.stats());
    assert!(stats.filtered_pages > 100_000 && stats.zero_pages > 100);
    stats
}

/// Checks (2) and (3): makedumpfile prints the log from our file `ours` and reads every
/// page of it.
fn read_back_by_makedumpfile(
    vmcore: &RealVmcore,
    expected_dmesg: &[u8],
    ours: &Path,
    stats: &WriteStats,
    out_dir: &Path,
) {
    let ours_bytes = std::fs::read(ours).unwrap();
    // (2) The log, through makedumpfile's reader of our format.
    let dmesg = out_dir.join("dmesg.txt");
    let run = Command::new("makedumpfile")
        .arg("--dump-dmesg")
        .arg(ours)
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
        .arg(ours)
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
    std::fs::remove_file(&refiltered).unwrap();
    std::fs::remove_file(&dmesg).unwrap();
}

/// A fresh directory for one test's files.
fn out_dir(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("minicap-kdump-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn real_vmcore_to_kdump_read_by_makedumpfile_if_present() {
    let (Some(vmcore), Some(expected_dmesg)) = (RealVmcore::open_if_present(), expected_dmesg())
    else {
        return;
    };
    if !tool_present("makedumpfile") {
        return;
    }
    let vmcore_path = minicap_realvmcore::dir().join("vmcore");
    let out_dir = out_dir("zlib");
    let ours = out_dir.join("minicap.kdump");
    let stats = write_ours(&vmcore, &mut Zlib::new(), &ours);

    // (1) The same bitmaps as makedumpfile's own -d 17 file.
    let reference = out_dir.join("reference.kdump");
    let run = Command::new("makedumpfile")
        .args(["-c", "-d", "17"])
        .arg(&vmcore_path)
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
    drop(ours_bytes);

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

    read_back_by_makedumpfile(&vmcore, &expected_dmesg, &ours, &stats, &out_dir);
    std::fs::remove_dir_all(&out_dir).unwrap();
}

/// The other two methods of `minicap.compress=`: LZO (makedumpfile `-l`) and none. Debian's
/// makedumpfile reads LZO (its `-v` says "lzo enabled"), so both must come back whole.
#[test]
fn real_vmcore_lzo_and_uncompressed_read_by_makedumpfile_if_present() {
    let (Some(vmcore), Some(expected_dmesg)) = (RealVmcore::open_if_present(), expected_dmesg())
    else {
        return;
    };
    if !tool_present("makedumpfile") {
        return;
    }
    let out_dir = out_dir("lzo-none");
    let ours = out_dir.join("minicap.kdump");

    let stats = write_ours(&vmcore, &mut Lzo::new(), &ours);
    let mut header = [0u8; 0x1b0];
    File::open(&ours)
        .unwrap()
        .read_exact_at(&mut header, 0)
        .unwrap();
    assert_eq!(
        common::le32(&header, 0x1a8),
        DUMP_DH_COMPRESSED_LZO,
        "status"
    );
    // Most non-zero pages of a real kernel shrink under LZO.
    assert!(stats.compressed_pages > stats.raw_pages, "{stats:?}");
    read_back_by_makedumpfile(&vmcore, &expected_dmesg, &ours, &stats, &out_dir);

    let stats = write_ours(&vmcore, &mut NoCompression, &ours);
    assert_eq!(stats.compressed_pages, 0);
    read_back_by_makedumpfile(&vmcore, &expected_dmesg, &ours, &stats, &out_dir);
    std::fs::remove_dir_all(&out_dir).unwrap();
}

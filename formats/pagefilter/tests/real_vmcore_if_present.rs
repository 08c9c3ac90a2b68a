//! The filter on a real Linux 6.1 vmcore against `makedumpfile -d 16` on the same file,
//! **only if present**: `$MINICAP_REAL_VMCORE_DIR` (default `/tmp/kdump-real`) holding
//! `vmcore` (ELF), and `makedumpfile` on the PATH. makedumpfile writes an uncompressed
//! kdump file whose 2nd bitmap says which RAM frames it kept; the frames this filter
//! excludes must be exactly the RAM frames makedumpfile left out. Skipped otherwise;
//! `synthetic.rs` always runs.

#![allow(clippy::cast_possible_truncation)]

use std::process::Command;

use minicap_pagefilter::{FreePageFilter, PageLayout};
use minicap_realvmcore::{tool_present, RealVmcore};
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

#[test]
fn real_vmcore_free_pages_match_makedumpfile_if_present() {
    let Some(vmcore) = RealVmcore::open_if_present() else {
        return;
    };
    if !tool_present("makedumpfile") {
        return;
    }
    let path = minicap_realvmcore::dir().join("vmcore");
    let ram = vmcore.ram();
    let segments = vmcore.segments();
    let vi = VmcoreInfo::new(vmcore.vmcoreinfo());
    let old = OldMemory::new(&vmcore, &segments, vi.phys_base())
        .with_page_tables(PageTables::from_vmcoreinfo(&vi).unwrap());
    let layout = PageLayout::from_vmcoreinfo(&vi).unwrap();
    let max_mapnr = ram.iter().map(|r| r.end.div_ceil(4096)).max().unwrap();
    let mut filter = FreePageFilter::new(old, layout, &ram, 16, max_mapnr).unwrap();
    let mut excluded = vec![false; max_mapnr as usize];
    // Cycles of 32768 frames, as the writer would call it.
    for start in (0..max_mapnr).step_by(32768) {
        let end = (start + 32768).min(max_mapnr);
        filter.exclude(start..end, |r| {
            assert!(start <= r.start && r.end <= end && r.start < r.end);
            for pfn in r {
                excluded[pfn as usize] = true;
            }
        });
    }
    let stats = filter.stats();
    eprintln!("{stats:?}");
    assert!(stats.free_pages > 1000, "{stats:?}");

    let out = std::env::temp_dir().join(format!("minicap-pagefilter-{}.kdump", std::process::id()));
    let run = Command::new("makedumpfile")
        .args(["-d", "16"])
        .arg(&path)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let kdump = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let le32 = |at: usize| u32::from_le_bytes(kdump[at..at + 4].try_into().unwrap()) as usize;
    let (block, sub_blocks, bitmap_blocks) = (le32(0x1ac), le32(0x1b0), le32(0x1b4));
    let half = bitmap_blocks * block / 2;
    let bm1 = &kdump[block * (1 + sub_blocks)..][..half];
    let bm2 = &kdump[block * (1 + sub_blocks) + half..][..half];
    let on = |bm: &[u8], pfn: u64| bm[(pfn / 8) as usize] & (1 << (pfn % 8)) != 0;
    let mut mismatches = Vec::new();
    let mut theirs = 0;
    for pfn in 0..max_mapnr {
        if !on(bm1, pfn) {
            continue;
        }
        let dropped = !on(bm2, pfn);
        theirs += u64::from(dropped);
        if dropped != excluded[pfn as usize] {
            mismatches.push(pfn);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first {:#x?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(8)]
    );
    assert_eq!(
        theirs,
        stats.free_pages + stats.offline_pages + stats.hwpoison_pages
    );
    eprintln!("{theirs} frames excluded, as makedumpfile -d 16");
}

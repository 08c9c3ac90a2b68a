//! The filter on a real Linux 6.1 vmcore against `makedumpfile -d N` on the same file, for
//! every filter bit alone and all together, **only if present**: `$MINICAP_REAL_VMCORE_DIR`
//! (default `/tmp/kdump-real`) holding `vmcore` (ELF), and `makedumpfile` on the PATH.
//! makedumpfile writes an uncompressed kdump file whose 1st bitmap says which frames are
//! RAM and 2nd which of them it kept; the frames this filter leaves out must be exactly the
//! RAM frames makedumpfile left out, and its per-kind counts those of makedumpfile's report
//! (`--message-level 16`). Levels without bit 1: zero pages are the writer's. Skipped
//! otherwise; `synthetic.rs` always runs.

#![allow(clippy::cast_possible_truncation)]

use std::ops::Range;
use std::process::Command;

use minicap_pagefilter::{applicable_level, FilterStats, PageFilter};
use minicap_realvmcore::{tool_present, RealVmcore};
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

/// What makedumpfile left out: the RAM frames its 2nd bitmap clears, and its report.
struct Theirs {
    excluded: Vec<bool>,
    stats: FilterStats,
}

fn makedumpfile(vmcore: &std::path::Path, level: u8, max_mapnr: u64) -> Theirs {
    let out = std::env::temp_dir().join(format!(
        "minicap-pagefilter-{}-{level}.kdump",
        std::process::id()
    ));
    let run = Command::new("makedumpfile")
        .args(["--message-level", "16", "-d", &level.to_string()])
        .arg(vmcore)
        .arg(&out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{report}{}",
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
    let excluded = (0..max_mapnr)
        .map(|pfn| on(bm1, pfn) && !on(bm2, pfn))
        .collect();
    let count = |label: &str| {
        let line = report
            .lines()
            .find(|l| l.trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} in {report}"));
        let hex = line.rsplit("0x").next().unwrap().trim();
        u64::from_str_radix(hex, 16).unwrap()
    };
    Theirs {
        excluded,
        stats: FilterStats {
            cache_pages: count("Non-private cache pages"),
            cache_private_pages: count("Private cache pages"),
            user_pages: count("User process data pages"),
            free_pages: count("Free pages"),
            hwpoison_pages: count("Hwpoison pages"),
            offline_pages: count("Offline pages"),
            ..FilterStats::default()
        },
    }
}

#[test]
fn real_vmcore_matches_makedumpfile_at_each_level_if_present() {
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
    let max_mapnr = ram.iter().map(|r| r.end.div_ceil(4096)).max().unwrap();
    let is_ram = |pfn: u64| ram.iter().any(|r: &Range<u64>| r.contains(&(pfn * 4096)));

    for level in [2u8, 4, 8, 16, 30] {
        let decision = applicable_level(level, &vi, &ram);
        assert_eq!(decision.level, level, "{:?}", decision.lowered);
        assert_eq!(decision.lowered, None);
        let old = OldMemory::new(&vmcore, &segments, vi.phys_base())
            .with_page_tables(PageTables::from_vmcoreinfo(&vi).unwrap());
        let mut filter =
            PageFilter::new(old, decision.layout.unwrap(), &ram, max_mapnr, level).unwrap();
        let mut ours = vec![false; max_mapnr as usize];
        // Cycles of 32768 frames, as the writer calls it.
        for start in (0..max_mapnr).step_by(32768) {
            let end = (start + 32768).min(max_mapnr);
            filter.exclude(start..end, |r| {
                assert!(start <= r.start && r.end <= end && r.start < r.end);
                for pfn in r {
                    ours[pfn as usize] = true;
                }
            });
        }
        let stats = filter.stats();
        assert_eq!(stats.unreadable_pages, 0, "{stats:?}");

        let theirs = makedumpfile(&path, level, max_mapnr);
        // Frames outside RAM may be inside an excluded range: only RAM frames count.
        let mismatches: Vec<u64> = (0..max_mapnr)
            .filter(|&pfn| is_ram(pfn) && ours[pfn as usize] != theirs.excluded[pfn as usize])
            .collect();
        assert!(
            mismatches.is_empty(),
            "level {level}: {} mismatches, first {:#x?}",
            mismatches.len(),
            &mismatches[..mismatches.len().min(8)]
        );
        assert_eq!(
            FilterStats {
                bad_orders: 0,
                unreadable_pages: 0,
                ..stats
            },
            theirs.stats,
            "level {level}"
        );
        eprintln!("level {level}: {stats:?}, as makedumpfile");
    }
}

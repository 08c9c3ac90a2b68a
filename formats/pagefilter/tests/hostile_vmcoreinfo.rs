//! [`applicable_level`] on VMCOREINFO that lacks keys or holds nonsense: each check drops
//! exactly the bits that need the value, says why, and never panics.

mod common;

use common::Machine;
use minicap_pagefilter::{applicable_level, Key, LevelDecision, Problem};
use minicap_vmcoreinfo::VmcoreInfo;

/// The decision at `level` with line `from` of the fake machine's VMCOREINFO replaced by `to`.
fn decide(from: &str, to: &str, level: u8) -> LevelDecision {
    let mut m = Machine::new();
    m.edit(from, to);
    applicable_level(level, &VmcoreInfo::new(m.vmcoreinfo.as_bytes()), &m.ram)
}

/// Asserts the level `from` -> `to` leaves of 31, and the reason's problem.
#[track_caller]
fn lowers(from: &str, to: &str, level: u8, problem: Problem) {
    let d = decide(from, to, 31);
    assert_eq!(d.level, level, "{from} -> {to}: {:?}", d.lowered);
    let reason = d.lowered.expect("a reason");
    assert_eq!(reason.problem, problem, "{from} -> {to}");
    assert_eq!((reason.requested, reason.level), (31, level));
}

fn nonsense(key: &'static str, value: i64) -> Problem {
    Problem::Nonsense {
        key: Key(key),
        value,
    }
}

#[test]
fn the_fake_6_1_vmcoreinfo_allows_every_level() {
    for level in 0..32 {
        let d = decide("OSRELEASE", "OSRELEASE", level);
        assert_eq!((d.level, d.lowered, d.ignored), (level, None, None));
        let layout = d.layout.unwrap();
        assert_eq!(layout.supported_bits(), 30);
        assert!(layout.compound.unwrap().hugetlb.is_some());
    }
}

#[test]
fn what_every_bit_reads_turns_filtering_off() {
    let sym = format!("SYMBOL(mem_section)={:x}", common::DIRECT + common::ROOTS);
    let off = |from: &str, to: &str, problem| {
        lowers(from, to, 1, problem);
        assert_eq!(decide(from, to, 31).layout, None);
    };
    off(
        &(sym.clone() + "\n"),
        "",
        Problem::Missing(Key("SYMBOL(mem_section)")),
    );
    off(
        &sym,
        "SYMBOL(mem_section)=5000",
        Problem::NotKernelAddress {
            key: Key("SYMBOL(mem_section)"),
            address: 0x5000,
        },
    );
    off(
        &sym,
        "SYMBOL(mem_section)=ffff888000005004",
        nonsense("SYMBOL(mem_section)", 0xffff_8880_0000_5004_u64 as i64),
    );
    off("SIZE(page)=64", "SIZE(page)=0", nonsense("SIZE(page)", 0));
    off(
        "SIZE(page)=64",
        "SIZE(page)=4096",
        nonsense("SIZE(page)", 4096),
    );
    off("SIZE(page)=64", "SIZE(page)=60", nonsense("SIZE(page)", 60));
    off(
        "SIZE(page)=64",
        "SIZE(page)=sixty-four",
        Problem::Malformed(Key("SIZE(page)")),
    );
    off(
        "OFFSET(page.flags)=0",
        "OFFSET(page.flags)=60",
        nonsense("OFFSET(page.flags)", 60),
    );
    off(
        "OFFSET(page._mapcount)=48",
        "OFFSET(page._mapcount)=62",
        nonsense("OFFSET(page._mapcount)", 62),
    );
    off(
        "OFFSET(page.compound_head)=8\n",
        "",
        Problem::Missing(Key("OFFSET(page.compound_head)")),
    );
    off(
        "OFFSET(page.compound_head)=8",
        "OFFSET(page.compound_head)=0",
        Problem::Overlap(Key("OFFSET(page.flags)"), Key("OFFSET(page.compound_head)")),
    );
    off(
        "SIZE(mem_section)=16",
        "SIZE(mem_section)=8192",
        nonsense("SIZE(mem_section)", 8192),
    );
    off(
        "OFFSET(mem_section.section_mem_map)=0",
        "OFFSET(mem_section.section_mem_map)=16",
        nonsense("OFFSET(mem_section.section_mem_map)", 16),
    );
    off(
        "NUMBER(SECTION_SIZE_BITS)=22",
        "NUMBER(SECTION_SIZE_BITS)=60",
        nonsense("NUMBER(SECTION_SIZE_BITS)", 60),
    );
    off(
        "NUMBER(MAX_PHYSMEM_BITS)=30",
        "NUMBER(MAX_PHYSMEM_BITS)=64",
        nonsense("NUMBER(MAX_PHYSMEM_BITS)", 64),
    );
    off(
        "NUMBER(MAX_PHYSMEM_BITS)=30",
        "NUMBER(MAX_PHYSMEM_BITS)=23",
        Problem::RamBeyondPhysmemBits {
            ram_end: 0x100_0000,
            bits: 23,
        },
    );
    off(
        "LENGTH(mem_section)=1",
        "LENGTH(mem_section)=4",
        Problem::NotSparsememExtreme {
            length: 4,
            expected: 1,
        },
    );
}

#[test]
fn free_page_inputs_drop_bit_16() {
    let buddy = "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-129";
    lowers(
        &(buddy.to_owned() + "\n"),
        "",
        15,
        Problem::Missing(Key("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)")),
    );
    // -1 is every ordinary page's _mapcount: all of memory would be "free".
    lowers(
        buddy,
        "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-1",
        15,
        nonsense("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", -1),
    );
    lowers(
        buddy,
        "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=1099511627776",
        15,
        nonsense("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", 1 << 40),
    );
    // 6.10+ prints the marker unsigned: fine.
    let d = decide(buddy, "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=4026531840", 31);
    assert_eq!((d.level, d.lowered), (31, None));
    assert_eq!(d.layout.unwrap().free.unwrap().buddy, 0xf000_0000);
    lowers(
        buddy,
        "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)=-257",
        15,
        Problem::SameValue(
            Key("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"),
            Key("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)"),
        ),
    );
    let len = "LENGTH(zone.free_area)=11";
    lowers(
        len,
        "LENGTH(zone.free_area)=12",
        15,
        nonsense("LENGTH(zone.free_area)", 12),
    );
    lowers(
        len,
        "LENGTH(zone.free_area)=0",
        15,
        nonsense("LENGTH(zone.free_area)", 0),
    );
    lowers(
        &(len.to_owned() + "\n"),
        "",
        15,
        Problem::Missing(Key("LENGTH(zone.free_area)")),
    );
    lowers(
        "OFFSET(page.private)=40",
        "OFFSET(page.private)=44",
        15,
        nonsense("OFFSET(page.private)", 44),
    );
    // Overlapping what every bit reads: which one is wrong is unknown, filtering goes.
    lowers(
        "OFFSET(page.private)=40",
        "OFFSET(page.private)=48",
        1,
        Problem::Overlap(Key("OFFSET(page._mapcount)"), Key("OFFSET(page.private)")),
    );
    lowers(
        "NUMBER(PG_slab)=9",
        "NUMBER(PG_slab)=9\nNUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)=7",
        15,
        nonsense("NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)", 7),
    );
}

#[test]
fn cache_inputs_drop_bits_2_and_4() {
    for key in ["PG_lru", "PG_private", "PG_swapcache", "PG_swapbacked"] {
        let m = Machine::new();
        let line = m
            .vmcoreinfo
            .lines()
            .find(|l| l.starts_with(&format!("NUMBER({key})=")))
            .unwrap()
            .to_owned();
        let full: &'static str = Box::leak(format!("NUMBER({key})").into_boxed_str());
        lowers(&(line.clone() + "\n"), "", 25, Problem::Missing(Key(full)));
        lowers(&line, &format!("NUMBER({key})=64"), 25, nonsense(full, 64));
    }
    // Not asked for: nothing to say.
    let d = decide("NUMBER(PG_lru)=4\n", "", 17);
    assert_eq!((d.level, d.lowered, d.ignored), (17, None, None));
}

#[test]
fn mapping_drops_bits_2_4_and_8() {
    lowers(
        "OFFSET(page.mapping)=24\n",
        "",
        17,
        Problem::Missing(Key("OFFSET(page.mapping)")),
    );
    lowers(
        "OFFSET(page.mapping)=24",
        "OFFSET(page.mapping)=64",
        17,
        nonsense("OFFSET(page.mapping)", 64),
    );
    // That overlap costs bit 16 too, and the reason names every dropped bit.
    let d = decide("OFFSET(page.mapping)=24", "OFFSET(page.mapping)=40", 31);
    assert_eq!(d.level, 1);
    assert_eq!(
        d.lowered.unwrap().to_string(),
        "OFFSET(page.private) overlaps OFFSET(page.mapping): page filtering off, dump level 1"
    );
}

#[test]
fn slab_markers_are_needed_by_every_bit() {
    let d = decide("NUMBER(PG_slab)=9\n", "", 31);
    assert_eq!(d.level, 1);
    assert_eq!(
        d.lowered.unwrap().problem,
        Problem::Missing(Key("NUMBER(PG_slab)"))
    );
    // The filter still runs for poisoned pages.
    assert!(d.layout.unwrap().hwpoison.is_some());
    // 6.10+: the page type instead of the flag.
    let d = decide(
        "NUMBER(PG_slab)=9",
        "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)=-1025",
        31,
    );
    assert_eq!((d.level, d.lowered), (31, None));
    // A flag number shared with another: which one is wrong is unknown, both go.
    lowers(
        "NUMBER(PG_lru)=4",
        "NUMBER(PG_lru)=9",
        1,
        Problem::SameBit(Key("NUMBER(PG_slab)"), Key("NUMBER(PG_lru)")),
    );
}

#[test]
fn compound_inputs_drop_whole_compound_bits() {
    lowers(
        "NUMBER(PG_head_mask)=65536",
        "NUMBER(PG_head_mask)=65537",
        17,
        nonsense("NUMBER(PG_head_mask)", 65537),
    );
    lowers(
        "NUMBER(PG_head_mask)=65536",
        "NUMBER(PG_head_mask)=16",
        17,
        Problem::SameBit(Key("NUMBER(PG_lru)"), Key("NUMBER(PG_head_mask)")),
    );
    lowers(
        "OFFSET(page.compound_order)=17",
        "OFFSET(page.compound_order)=64",
        17,
        nonsense("OFFSET(page.compound_order)", 64),
    );
    lowers(
        "OFFSET(page.compound_order)=17",
        "OFFSET(folio._folio_order)=20",
        17,
        nonsense("OFFSET(folio._folio_order)", 20),
    );
    // Absent: compound pages count as one frame, which is safe.
    let d = decide("NUMBER(PG_head_mask)=65536\n", "", 31);
    assert_eq!((d.level, d.lowered), (31, None));
    assert_eq!(d.layout.unwrap().compound, None);
}

#[test]
fn hugetlb_markers_drop_bit_8() {
    lowers(
        "NUMBER(HUGETLB_PAGE_DTOR)=2",
        "NUMBER(HUGETLB_PAGE_DTOR)=300",
        23,
        nonsense("NUMBER(HUGETLB_PAGE_DTOR)", 300),
    );
    lowers(
        "NUMBER(HUGETLB_PAGE_DTOR)=2",
        "NUMBER(PG_hugetlb)=99",
        23,
        nonsense("NUMBER(PG_hugetlb)", 99),
    );
    // Equal to the buddy marker: which one is wrong is unknown, bits 8 and 16 go.
    lowers(
        "NUMBER(HUGETLB_PAGE_DTOR)=2",
        "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)=-129",
        7,
        Problem::SameValue(
            Key("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)"),
            Key("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)"),
        ),
    );
}

#[test]
fn nonsense_always_on_markers_are_ignored_not_used() {
    let d = decide("NUMBER(PG_hwpoison)=22", "NUMBER(PG_hwpoison)=70", 31);
    assert_eq!((d.level, d.lowered), (31, None));
    assert_eq!(d.ignored, Some(nonsense("NUMBER(PG_hwpoison)", 70)));
    assert_eq!(d.layout.unwrap().hwpoison, None);
    let d = decide(
        "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-257",
        "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)=-1",
        31,
    );
    assert_eq!((d.level, d.lowered), (31, None));
    assert_eq!(
        d.ignored,
        Some(nonsense("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)", -1))
    );
    assert_eq!(d.layout.unwrap().offline, None);
    // At level 1 a broken base costs no bit, but poisoned pages stay in: say so.
    let d = decide("SIZE(page)=64", "SIZE(page)=7", 1);
    assert_eq!((d.level, d.lowered, d.layout), (1, None, None));
    assert_eq!(d.ignored, Some(nonsense("SIZE(page)", 7)));
}

#[test]
fn reasons_read_well() {
    let d = decide("NUMBER(PG_lru)=4\n", "", 31);
    assert_eq!(
        d.lowered.unwrap().to_string(),
        "NUMBER(PG_lru) missing: no page cache, private cache filtering, dump level 25"
    );
    let sym = format!("SYMBOL(mem_section)={:x}\n", common::DIRECT + common::ROOTS);
    assert_eq!(
        decide(&sym, "", 17).lowered.unwrap().to_string(),
        "SYMBOL(mem_section) missing: page filtering off, dump level 1"
    );
    let d = decide("OSRELEASE", "OSRELEASE", 200);
    assert_eq!(d.level, 8);
    assert_eq!(
        d.lowered.unwrap().to_string(),
        "dump level 200 has bits above 31, dump level 8"
    );
}

/// Random edits of numbers never panic and never raise the level.
#[test]
fn random_values_never_panic() {
    let mut rng = fastrand::Rng::with_seed(11);
    let base = Machine::new();
    let lines: Vec<&str> = base.vmcoreinfo.lines().collect();
    for _ in 0..3000 {
        let mut text = String::new();
        for line in &lines {
            let (key, _) = line.split_once('=').unwrap();
            match rng.u8(0..12) {
                0 => {}
                1 => text += &format!("{key}={}\n", rng.i64(..)),
                2 => text += &format!("{key}={}\n", rng.i64(-300..300)),
                _ => text += &format!("{line}\n"),
            }
        }
        let level = rng.u8(..);
        let d = applicable_level(level, &VmcoreInfo::new(text.as_bytes()), &base.ram);
        assert!(d.level <= level & 31);
        assert_eq!(d.level < level & 31 || level > 31, d.lowered.is_some());
        if let Some(layout) = d.layout {
            assert_eq!(d.level & !layout.supported_bits() & 30, 0);
        } else {
            assert_eq!(d.level & 30, 0);
        }
    }
}

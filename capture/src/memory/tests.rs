use super::*;
use minicap_elfcore::{PF_R, PF_W, PF_X};

fn e(addr: u64, end: u64, kind: u32) -> E820Entry {
    E820Entry {
        addr,
        size: end - addr,
        kind: E820Kind::from_raw(kind),
    }
}

/// The map kexec-tools 2.0.x handed minicap in a real QEMU run (q35, 1 GiB,
/// crashkernel=32M), printed by the kernel: old RAM is not listed.
fn qemu_map() -> Vec<E820Entry> {
    vec![
        e(0x0, 0x1000, 2),
        e(0x1000, 0x9fc00, 1),
        e(0x9fc00, 0xa0000, 2),
        e(0xf0000, 0x100000, 2),
        e(0x3d00_0000, 0x3ef5_d000, 1),
        e(0x3eff_fc00, 0x3f00_0000, 1),
        e(0x3ffd_a000, 0x4000_0000, 2),
        e(0xb000_0000, 0xc000_0000, 2),
        e(0xfed1_c000, 0xfed2_0000, 2),
        e(0xfffc_0000, 0x1_0000_0000, 2),
        e(0xfd_0000_0000, 0x100_0000_0000, 2),
    ]
}

fn load(paddr: u64, end: u64, source: u64) -> LoadSegment {
    LoadSegment {
        paddr,
        vaddr: 0xffff_8880_0000_0000u64.wrapping_add(paddr),
        memsz: end - paddr,
        source,
        flags: PF_R | PF_W | PF_X,
    }
}

/// The PT_LOADs of that run: System RAM minus the crash region; low memory
/// read from kexec-tools' backup copy in the crash region.
fn qemu_loads() -> Vec<LoadSegment> {
    vec![
        load(0x1000, 0x9fc00, 0x3ef6_0000),
        load(0x10_0000, 0x3d00_0000, 0x10_0000),
        load(0x3f00_0000, 0x3ffd_a000, 0x3f00_0000),
    ]
}

fn ranges<const N: usize>(s: &RangeSet<N>) -> Vec<(u64, u64)> {
    s.iter().map(|r| (r.start, r.end)).collect()
}

#[test]
fn usable_ram_is_the_crash_region_above_1_mib() {
    let free = usable_ram(qemu_map().into_iter()).unwrap();
    // 0x3efffc00-0x3f000000 holds no whole page.
    assert_eq!(ranges(&free), [(0x3d00_0000, 0x3ef5_d000)]);
}

#[test]
fn a_fragmented_map_is_reported_as_such() {
    // 600 disjoint 4 KiB RAM pieces: more than the set tracks.
    let map: Vec<E820Entry> = (0..600u64)
        .map(|i| {
            e(
                0x1000_0000 + i * 0x2000,
                0x1000_0000 + i * 0x2000 + 0x1000,
                1,
            )
        })
        .collect();
    let err = usable_ram(map.into_iter()).unwrap_err();
    assert_eq!(err.code(), minicap_dumpheader::FailureCode::BadMemoryMap);
    assert_eq!(
        err.to_string(),
        "memory map too fragmented: range set full (512 disjoint ranges); nothing was written"
    );
}

#[test]
fn heap_is_the_largest_range_left_after_the_exclusions() {
    let mut free = usable_ram(qemu_map().into_iter()).unwrap();
    // The image in the middle of the crash region, a partial page of
    // boot_params rounded out.
    exclude(&mut free, 0x3d80_0000..0x3d85_a000).unwrap();
    exclude(&mut free, 0x3d00_0010..0x3d00_0020).unwrap();
    assert_eq!(
        ranges(&free),
        [(0x3d00_1000, 0x3d80_0000), (0x3d85_a000, 0x3ef5_d000)]
    );
    assert_eq!(choose_heap(&free).unwrap(), 0x3d85_a000..0x3ef5_d000);
}

#[test]
fn too_little_memory_gives_the_exact_message() {
    let map = [e(0x3d00_0000, 0x3d10_0000, 1)];
    let mut free = usable_ram(map.into_iter()).unwrap();
    exclude(&mut free, 0x3d00_0000..0x3d01_0000).unwrap();
    let err = choose_heap(&free).unwrap_err();
    assert_eq!(
        err.code(),
        minicap_dumpheader::FailureCode::CrashMemoryTooSmall
    );
    assert_eq!(
        err.to_string(),
        "not enough usable crash-kernel memory: largest free range is 983040 bytes, need 1048576 (raise crashkernel=); nothing was written"
    );
    let err = choose_heap(&FreeMemory::new()).unwrap_err();
    assert!(err.to_string().contains("largest free range is 0 bytes"));
}

#[test]
fn excluding_up_to_the_top_of_memory_does_not_wrap() {
    let mut free = usable_ram(qemu_map().into_iter()).unwrap();
    exclude(&mut free, 0x3e00_0000..u64::MAX).unwrap();
    assert_eq!(ranges(&free), [(0x3d00_0000, 0x3e00_0000)]);
}

#[test]
fn an_absurd_elfcorehdr_size_is_a_bad_elfcorehdr() {
    assert_eq!(
        elfcorehdr_range(0x3ef5_d000, Some(0x1000), 0x1c8).unwrap(),
        0x3ef5_d000..0x3ef5_e000
    );
    assert_eq!(
        elfcorehdr_range(0x3ef5_d000, None, 0x1c8).unwrap(),
        0x3ef5_d000..0x3ef5_d1c8
    );
    for size in [
        u64::MAX,
        u64::MAX - 0x3ef5_d000,
        u64::MAX - 0x3ef5_d000 - 10,
    ] {
        let err = elfcorehdr_range(0x3ef5_d000, Some(size), 0x1c8).unwrap_err();
        assert_eq!(err.code(), minicap_dumpheader::FailureCode::BadElfcorehdr);
        assert!(err.to_string().starts_with("invalid elfcorehdr="), "{err}");
    }
}

#[test]
fn a_load_over_minicap_is_rejected() {
    let image = 0x3d80_0000..0x3d85_a000;
    check_not_minicap(0x3ef5_d000, 0x10_0000..0x3d00_0000, image.clone()).unwrap();
    check_not_minicap(0x3ef5_d000, 0x3d7f_f000..0x3d80_0000, image.clone()).unwrap();
    let err = check_not_minicap(0x3ef5_d000, 0x3d85_9000..0x3d90_0000, image).unwrap_err();
    assert_eq!(err.code(), minicap_dumpheader::FailureCode::BadCoreHeaders);
    assert_eq!(
        err.to_string(),
        "ELF core headers at elfcorehdr=0x3ef5d000 are unusable: PT_LOAD 0x3d859000-0x3d900000 overlaps minicap's own image (code, stacks, console log) at 0x3d800000-0x3d85a000; nothing was written"
    );
}

#[test]
fn a_load_beyond_the_paging_limit_is_not_mappable() {
    assert_eq!(address_limit(4), 1 << 47);
    assert_eq!(address_limit(5), 1 << 56);
    check_mappable(&qemu_loads(), address_limit(4)).unwrap();
    let far = [load(1 << 50, (1 << 50) + 0x1000, 1 << 50)];
    let err = check_mappable(&far, address_limit(4)).unwrap_err();
    assert_eq!(
        err.code(),
        minicap_dumpheader::FailureCode::MemoryNotMappable
    );
    assert_eq!(
        err.to_string(),
        "memory 0x4000000000000-0x4000000001000 that the dump must read lies beyond 0x800000000000, the most this CPU's paging mode can map; nothing was written"
    );
    check_mappable(&far, address_limit(5)).unwrap();
}

#[test]
fn real_ram_is_never_skipped() {
    let skipped = outside_ram(0, qemu_map().into_iter(), &qemu_loads()).unwrap();
    assert!(skipped.is_empty(), "{:?}", ranges(&skipped));
    // The same with 3 GiB, 1 GiB of it above 4 GiB (not listed either).
    let mut loads = qemu_loads();
    loads.push(load(0x1_0000_0000, 0x1_4000_0000, 0x1_0000_0000));
    let skipped = outside_ram(0, qemu_map().into_iter(), &loads).unwrap();
    assert!(skipped.is_empty());
}

#[test]
fn loads_over_device_registers_or_reserved_ranges_are_skipped() {
    let mut loads = qemu_loads();
    // A corrupted header: the IO-APIC, and MMCONFIG (reserved in the map).
    loads.push(load(0xfec0_0000, 0xfec0_0400, 0xfec0_0000));
    loads.push(load(0xb000_0000, 0xb000_2000, 0xb000_0000));
    // RAM that runs into the reserved range after it: only that part.
    loads.push(load(0x3ffd_0000, 0x3ffe_0800, 0x3ffd_0000));
    let skipped = outside_ram(0, qemu_map().into_iter(), &loads).unwrap();
    assert_eq!(
        ranges(&skipped),
        [
            (0x3ffd_a000, 0x3ffe_1000),
            (0xb000_0000, 0xb000_2000),
            (0xfec0_0000, 0xfec0_1000)
        ]
    );
    assert_eq!(skipped_totals(&skipped), (3, 0x7000 + 0x2000 + 0x1000));
}

#[test]
fn the_fixed_mmio_window_counts_only_where_the_map_says_nothing_else() {
    // A (strange) map that calls part of the window RAM: that part is read.
    let map = [e(0xfec0_0000, 0xfec1_0000, 1)];
    let loads = [load(0xfec0_0000, 0xfec2_0000, 0xfec0_0000)];
    let skipped = outside_ram(0, map.into_iter(), &loads).unwrap();
    assert_eq!(ranges(&skipped), [(0xfec1_0000, 0xfec2_0000)]);
}

#[test]
fn too_many_skipped_ranges_are_bad_core_headers() {
    let loads: Vec<LoadSegment> = (0..(SKIP_CAPACITY as u64 + 1))
        .map(|i| {
            let a = 0xfec0_0000 + i * 0x2000;
            load(a, a + 0x1000, a)
        })
        .collect();
    let err = outside_ram(0x1000, core::iter::empty(), &loads).unwrap_err();
    assert_eq!(err.code(), minicap_dumpheader::FailureCode::BadCoreHeaders);
}

#[test]
fn write_back_covers_memory_loads_and_reserved_but_not_skipped_ranges() {
    let mut loads = qemu_loads();
    loads.push(load(0xfec0_0000, 0xfec0_0400, 0xfec0_0000));
    let skipped = outside_ram(0, qemu_map().into_iter(), &loads).unwrap();
    let heap = 0x3d85_a000..0x3ef5_d000;
    let (cached, top) = write_back_ranges(
        qemu_map().into_iter(),
        &loads,
        &skipped,
        [0x3ef5_d000..0x3ef5_d1c8, heap],
        address_limit(4),
    )
    .unwrap();
    assert!(cached.contains_range(0x1000..0xa_0000));
    assert!(cached.contains_range(0x10_0000..0x3ef5_e000));
    assert!(cached.contains_range(0x3ef6_0000..0x3ffd_a000));
    assert!(!cached.contains(0xa_0000));
    assert!(!cached.contains(0xfec0_0000));
    assert!(!cached.contains(0xb000_0000));
    assert!(!cached.contains(0x0));
    assert_eq!(top, 0x3ffd_a000);
}

#[test]
fn loads_over_registers_named_by_acpi_are_skipped_too() {
    let mut loads = qemu_loads();
    // An AMD IOMMU in PCI space, below the fixed window, not in the map.
    loads.push(load(0xfd00_0000, 0xfd10_0000, 0xfd00_0000));
    let mut skipped = outside_ram(0, qemu_map().into_iter(), &loads).unwrap();
    assert!(skipped.is_empty());
    let registers = [0xfd08_0000..0xfd08_4000, 0xfec0_0000..0xfec0_1000];
    skip_device_registers(0, &mut skipped, &loads, registers.into_iter()).unwrap();
    assert_eq!(ranges(&skipped), [(0xfd08_0000, 0xfd08_4000)]);
    // Real RAM is untouched by registers elsewhere.
    assert!(!skipped.contains(0x10_0000));
}

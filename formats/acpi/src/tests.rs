//! ACPI tables built byte by byte in fake physical memory.

use super::*;
use minicap_physmem::SliceMem;

/// Fake memory: the BIOS area 0xe0000..0x100000, where every test places
/// its tables.
const BASE: u64 = 0xe0000;
const SIZE: usize = 0x20000;

struct Tables {
    bytes: Vec<u8>,
}

impl Tables {
    fn new() -> Self {
        Self {
            bytes: vec![0; SIZE],
        }
    }

    fn put(&mut self, addr: u64, data: &[u8]) {
        let at = usize::try_from(addr - BASE).unwrap();
        self.bytes[at..at + data.len()].copy_from_slice(data);
    }

    fn mem(&self) -> SliceMem<'_> {
        SliceMem::new(BASE, &self.bytes)
    }
}

fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = sum.wrapping_neg();
}

/// A system description table: 36-byte header, then `body`.
fn sdt(signature: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(signature);
    t.extend_from_slice(&u32::try_from(36 + body.len()).unwrap().to_le_bytes());
    t.push(2); // revision
    t.push(0); // checksum, fixed below
    t.extend_from_slice(b"MINICP");
    t.extend_from_slice(b"TESTTABL");
    t.extend_from_slice(&[0; 12]);
    t.extend_from_slice(body);
    fix_checksum(&mut t, 9);
    t
}

fn rsdp_v2(xsdt: u64) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"MINICP");
    r.push(2);
    r.extend_from_slice(&0u32.to_le_bytes()); // RSDT
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt.to_le_bytes());
    r.extend_from_slice(&[0; 4]);
    fix_checksum(&mut r[..20], 8);
    fix_checksum(&mut r, 32);
    r
}

fn rsdp_v1(rsdt: u32) -> Vec<u8> {
    let mut r = Vec::new();
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(b"MINICP");
    r.push(0);
    r.extend_from_slice(&rsdt.to_le_bytes());
    fix_checksum(&mut r, 8);
    r
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"XSDT", &body)
}

fn madt(io_apics: &[u32]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes()); // local APIC address
    body.extend_from_slice(&1u32.to_le_bytes()); // flags
    body.extend_from_slice(&[0, 8, 0, 0, 1, 0, 0, 0]); // processor local APIC
    for (id, &base) in io_apics.iter().enumerate() {
        body.extend_from_slice(&[1, 12, u8::try_from(id).unwrap(), 0]);
        body.extend_from_slice(&base.to_le_bytes());
        body.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    }
    sdt(b"APIC", &body)
}

/// A FADT of the ACPI 2.0+ size with PM1a/PM1b control blocks and the DSDT
/// at `dsdt` (in the 64-bit X_DSDT field).
fn fadt(pm1a: u32, pm1b: u32, dsdt: u64) -> Vec<u8> {
    let mut body = vec![0u8; 244 - 36];
    let mut put = |offset: usize, bytes: &[u8]| {
        body[offset - 36..offset - 36 + bytes.len()].copy_from_slice(bytes);
    };
    put(64, &pm1a.to_le_bytes());
    put(68, &pm1b.to_le_bytes());
    put(140, &dsdt.to_le_bytes());
    sdt(b"FACP", &body)
}

/// A DSDT whose AML holds `Name (_S5, Package () { a, b, 0, 0 })`.
fn dsdt_with_s5(a: u8, b: u8) -> Vec<u8> {
    let mut aml = vec![0x10, 0x05, b'\\', b'_', b'S', b'B', b'_']; // some scope noise
    aml.extend_from_slice(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x08, 0x04]);
    aml.extend_from_slice(&[0x0a, a, 0x0a, b, 0x00, 0x00]);
    sdt(b"DSDT", &aml)
}

fn dmar(units: &[(u64, u8, u16)]) -> Vec<u8> {
    let mut body = vec![39u8, 0x01]; // host address width, flags
    body.extend_from_slice(&[0; 10]);
    for &(base, flags, segment) in units {
        body.extend_from_slice(&0u16.to_le_bytes()); // DRHD
        body.extend_from_slice(&16u16.to_le_bytes());
        body.extend_from_slice(&[flags, 0]);
        body.extend_from_slice(&segment.to_le_bytes());
        body.extend_from_slice(&base.to_le_bytes());
    }
    sdt(b"DMAR", &body)
}

fn ivrs(bases: &[u64]) -> Vec<u8> {
    let blocks: Vec<_> = bases.iter().map(|&b| ivhd(0x11, b, 0, &[])).collect();
    ivrs_of(&blocks)
}

/// A full set: RSDP at 0xf0000 (found by the BIOS-area scan), XSDT, MADT,
/// FADT + DSDT, DMAR, IVRS.
fn full_machine() -> Tables {
    let mut t = Tables::new();
    t.put(0xf0000, &rsdp_v2(0xe1000));
    t.put(0xe1000, &xsdt(&[0xe2000, 0xe3000, 0xe5000, 0xe6000]));
    t.put(0xe2000, &madt(&[0xfec0_0000, 0xfec0_1000]));
    t.put(0xe3000, &fadt(0x604, 0, 0xe4000));
    t.put(0xe4000, &dsdt_with_s5(5, 5));
    t.put(0xe5000, &dmar(&[(0xfed9_0000, 0, 0), (0xfed9_1000, 1, 0)]));
    t.put(0xe6000, &ivrs(&[0xfeb8_0000, 0xfeb8_0000]));
    t
}

#[test]
fn finds_every_table_through_the_bios_area() {
    let t = full_machine();
    let info = discover(&t.mem(), 0).expect("RSDP found by the scan");
    assert_eq!(
        &info.io_apics[..info.io_apic_count],
        &[0xfec0_0000, 0xfec0_1000]
    );
    assert_eq!(info.io_apics_dropped, 0);
    assert_eq!(info.pm1a_control, Some(0x604));
    assert_eq!(info.pm1b_control, None);
    assert_eq!(info.s5_sleep_types, Some((5, 5)));
    assert!(info.dmar_present);
    assert_eq!(info.drhd_count, 2);
    assert_eq!(info.drhd[0].base, 0xfed9_0000);
    assert_eq!(info.drhd[1].flags, Drhd::INCLUDE_PCI_ALL);
    assert_eq!(info.drhd[1].register_bytes(), 0x1000);
    // The same unit listed twice by two IVHD blocks is recorded once.
    assert_eq!(&info.amd_iommus[..info.amd_iommu_count], &[0xfeb8_0000]);
}

#[test]
fn the_loaders_hint_wins_and_a_bad_hint_falls_back_to_the_scan() {
    let mut t = full_machine();
    // A second RSDP at the hint (not 16-byte aligned, so the BIOS-area
    // scan cannot find it), pointing at an XSDT with only a MADT.
    t.put(0xe8008, &rsdp_v2(0xe9000));
    t.put(0xe9000, &xsdt(&[0xea000]));
    t.put(0xea000, &madt(&[0xfec2_0000]));
    let info = discover(&t.mem(), 0xe8008).unwrap();
    assert_eq!(&info.io_apics[..info.io_apic_count], &[0xfec2_0000]);
    // A hint at garbage: the scan finds the real one.
    let info = discover(&t.mem(), 0xe8100).unwrap();
    assert_eq!(info.io_apic_count, 2);
}

#[test]
fn rsdt_of_acpi_1() {
    let mut t = Tables::new();
    t.put(0xf0000, &rsdp_v1(0xe1000));
    let body: Vec<u8> = [0xe2000u32].iter().flat_map(|e| e.to_le_bytes()).collect();
    t.put(0xe1000, &sdt(b"RSDT", &body));
    t.put(0xe2000, &madt(&[0xfec0_0000]));
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.io_apic_count, 1);
}

#[test]
fn no_rsdp_or_a_bad_rsdp_checksum_means_no_acpi() {
    let t = Tables::new();
    assert!(discover(&t.mem(), 0).is_none());
    let mut t = full_machine();
    let mut rsdp = rsdp_v2(0xe1000);
    rsdp[8] ^= 1;
    t.put(0xf0000, &rsdp);
    assert!(discover(&t.mem(), 0).is_none());
}

#[test]
fn a_table_with_a_bad_checksum_is_ignored() {
    let mut t = full_machine();
    let mut bad = madt(&[0xfec0_0000]);
    bad[40] ^= 0xff;
    t.put(0xe2000, &bad);
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.io_apic_count, 0);
    // The other tables still count.
    assert_eq!(info.pm1a_control, Some(0x604));
    assert_eq!(info.drhd_count, 2);
}

#[test]
fn a_table_longer_than_memory_is_ignored() {
    let mut t = full_machine();
    // A MADT at the very end of the fake memory claiming 4 KiB.
    let mut m = madt(&[0xfec0_0000]);
    m[4..8].copy_from_slice(&4096u32.to_le_bytes());
    let at = BASE + u64::try_from(SIZE).unwrap() - u64::try_from(m.len()).unwrap();
    t.put(at, &m);
    t.put(0xe1000, &xsdt(&[at, 0xe3000]));
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.io_apic_count, 0);
    assert_eq!(info.pm1a_control, Some(0x604));
}

#[test]
fn a_truncated_madt_entry_stops_the_walk() {
    let mut t = full_machine();
    let mut body = Vec::new();
    body.extend_from_slice(&0xfee0_0000u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&[1, 12, 0, 0]);
    body.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    // An IO-APIC entry whose length runs past the table's end.
    body.extend_from_slice(&[1, 12, 1, 0, 0, 0x10, 0xc0]);
    t.put(0xe2000, &sdt(b"APIC", &body));
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(&info.io_apics[..info.io_apic_count], &[0xfec0_0000]);
    // An entry of length 0 must not loop forever.
    let mut body = vec![0u8; 8];
    body.extend_from_slice(&[1, 0, 0, 0]);
    t.put(0xe2000, &sdt(b"APIC", &body));
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.io_apic_count, 0);
}

#[test]
fn more_io_apics_than_recorded_are_counted() {
    let mut t = full_machine();
    let bases: Vec<u32> = (0..34).map(|i| 0xfec0_0000 + i * 0x1000).collect();
    t.put(0xe2000, &madt(&bases));
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.io_apic_count, 32);
    assert_eq!(info.io_apics_dropped, 2);
}

#[test]
fn missing_s5_leaves_no_sleep_types() {
    let mut t = full_machine();
    t.put(
        0xe4000,
        &sdt(b"DSDT", &[0x10, 0x05, b'\\', b'_', b'S', b'B', b'_']),
    );
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.pm1a_control, Some(0x604));
    assert_eq!(info.s5_sleep_types, None);
    // `_S5_` that is not followed by a package is not taken either.
    t.put(
        0xe4000,
        &sdt(b"DSDT", &[0x08, b'_', b'S', b'5', b'_', 0x0a, 0x05]),
    );
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.s5_sleep_types, None);
}

#[test]
fn s5_with_zero_and_one_ops_and_beyond_the_first_window() {
    let mut t = full_machine();
    // 5000 bytes of AML noise, then the package: found in the second window.
    let mut aml = vec![0xa3u8; 5000];
    aml.extend_from_slice(&[0x08, b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x01, 0x00]);
    t.put(0xe8000, &sdt(b"DSDT", &aml));
    t.put(0xe3000, &fadt(0x604, 0x608, 0xe8000));
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.s5_sleep_types, Some((1, 0)));
    assert_eq!(info.pm1b_control, Some(0x608));
}

#[test]
fn a_bad_dsdt_checksum_hides_s5() {
    let mut t = full_machine();
    let mut d = dsdt_with_s5(7, 7);
    d[36] ^= 1;
    t.put(0xe4000, &d);
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.s5_sleep_types, None);
}

#[test]
fn dmar_units_without_a_usable_base_are_ignored() {
    let mut t = full_machine();
    t.put(
        0xe5000,
        &dmar(&[(0, 0, 0), (0xfed9_0800, 0, 0), (0xfed9_2000, 1, 1)]),
    );
    let info = discover(&t.mem(), 0).unwrap();
    assert!(info.dmar_present);
    assert_eq!(info.drhd_count, 1);
    assert_eq!(info.drhd[0].base, 0xfed9_2000);
    assert_eq!(info.drhd[0].segment, 1);
}

#[test]
fn a_table_at_the_top_of_the_address_space_is_not_followed() {
    let mut t = full_machine();
    t.put(0xe1000, &xsdt(&[u64::MAX - 8, 0xe3000]));
    let info = discover(&t.mem(), 0).unwrap();
    assert_eq!(info.pm1a_control, Some(0x604));
}

/// An IVHD block of `kind` (0x10: 24-byte header, else 40) for the unit at
/// `base` of `segment`, with `entries` appended.
fn ivhd(kind: u8, base: u64, segment: u16, entries: &[u8]) -> Vec<u8> {
    let header = if kind == 0x10 { 24 } else { 40 };
    let mut block = vec![0u8; header];
    block[0] = kind;
    block[1] = 0x20; // coherent
    block[4..6].copy_from_slice(&0x0002u16.to_le_bytes()); // 00:00.2
    block[8..16].copy_from_slice(&base.to_le_bytes());
    block[16..18].copy_from_slice(&segment.to_le_bytes());
    if header == 40 {
        block[24..32].copy_from_slice(&0x0000_0040_u64.to_le_bytes()); // EFR: IASup
    }
    block.extend_from_slice(entries);
    let len = u16::try_from(block.len()).expect("short block");
    block[2..4].copy_from_slice(&len.to_le_bytes());
    block
}

fn ivrs_of(blocks: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![0u8; 12];
    for b in blocks {
        body.extend_from_slice(b);
    }
    sdt(b"IVRS", &body)
}

fn entry4(kind: u8, device_id: u16, setting: u8) -> [u8; 4] {
    let d = device_id.to_le_bytes();
    [kind, d[0], d[1], setting]
}

fn entry8(kind: u8, device_id: u16, other: u16) -> [u8; 8] {
    let d = device_id.to_le_bytes();
    let o = other.to_le_bytes();
    [kind, d[0], d[1], 0, 0, o[0], o[1], 0]
}

fn with_ivrs(ivrs: Vec<u8>) -> AcpiInfo {
    let mut t = Tables::new();
    t.put(0xf0000, &rsdp_v2(0xe1000));
    t.put(0xe1000, &xsdt(&[0xe6000]));
    t.put(0xe6000, &ivrs);
    discover(&t.mem(), 0).expect("RSDP")
}

#[test]
fn ivhd_aliases_single_and_ranges_across_every_entry_size() {
    let mut entries = Vec::new();
    entries.extend_from_slice(&entry4(0x01, 0, 0)); // ALL
    entries.extend_from_slice(&entry4(0x02, 0x0010, 0)); // SELECT 00:02.0
    entries.extend_from_slice(&entry8(0x42, 0x0300, 0x0200)); // 03:00.0 as 02:00.0
    entries.extend_from_slice(&entry8(0x43, 0x0400, 0x0310)); // range start, alias 03:02.0
    entries.extend_from_slice(&entry8(0x48, 0x00a0, 0x00a0)); // SPECIAL (IOAPIC), inside the range
    entries.extend_from_slice(&entry4(0x04, 0x04ff, 0)); // range end
                                                         // An ACPI-HID entry: 22 bytes plus a 3-byte UID.
    let mut hid = vec![0xf0u8, 0xa0, 0x00];
    hid.resize(21, 0);
    hid.extend_from_slice(&[3, b'a', b'b', b'c']);
    entries.extend_from_slice(&hid);
    entries.extend_from_slice(&entry8(0x42, 0x0500, 0x0508));
    let info = with_ivrs(ivrs_of(&[ivhd(0x40, 0xfd20_0000, 0, &entries)]));
    assert_eq!(info.amd_iommu_count, 1);
    let unit = &info.amd_vi_units[0];
    assert_eq!(
        (unit.base, unit.segment, unit.device_id, unit.block_type),
        (0xfd20_0000, 0, 2, 0x40)
    );
    assert_eq!(unit.efr_image, 0x40);
    assert!(!unit.entries_stopped);
    assert_eq!(
        &unit.aliases[..unit.alias_count],
        &[
            DeviceAlias {
                first: 0x0300,
                last: 0x0300,
                alias: 0x0200
            },
            DeviceAlias {
                first: 0x0400,
                last: 0x04ff,
                alias: 0x0310
            },
            DeviceAlias {
                first: 0x0500,
                last: 0x0500,
                alias: 0x0508
            },
        ]
    );
    assert_eq!(unit.alias_of(0x0300), Some(0x0200));
    assert_eq!(unit.alias_of(0x0480), Some(0x0310));
    assert_eq!(unit.alias_of(0x0500), Some(0x0508));
    assert_eq!(unit.alias_of(0x0010), None);
    assert_eq!(unit.alias_of(0x0301), None);
}

#[test]
fn the_highest_ivhd_type_of_a_unit_wins_whatever_the_order() {
    let old = ivhd(0x10, 0xfd20_0000, 0, &entry8(0x42, 0x0300, 0x0200));
    let new = ivhd(0x11, 0xfd20_0000, 0, &entry8(0x42, 0x0300, 0x0208));
    let other = ivhd(0x10, 0xfd30_0000, 1, &[]);
    for blocks in [
        [old.clone(), new.clone(), other.clone()],
        [new.clone(), old.clone(), other.clone()],
    ] {
        let info = with_ivrs(ivrs_of(&blocks));
        assert_eq!(
            &info.amd_iommus[..info.amd_iommu_count],
            &[0xfd20_0000, 0xfd30_0000]
        );
        let unit = &info.amd_vi_units[0];
        assert_eq!(unit.block_type, 0x11);
        assert_eq!(unit.alias_of(0x0300), Some(0x0208));
        assert_eq!(info.amd_vi_units[1].segment, 1);
        assert_eq!(info.amd_vi_units[1].efr_image, 0);
    }
}

#[test]
fn an_unsizable_or_truncated_entry_stops_the_entries() {
    // Type 0x85 has no defined size: the alias after it is not read.
    let mut entries = entry4(0x02, 0x10, 0).to_vec();
    entries.extend_from_slice(&[0x85, 0, 0, 0]);
    entries.extend_from_slice(&entry8(0x42, 0x0300, 0x0200));
    let info = with_ivrs(ivrs_of(&[ivhd(0x11, 0xfd20_0000, 0, &entries)]));
    let unit = &info.amd_vi_units[0];
    assert!(unit.entries_stopped);
    assert_eq!(unit.alias_count, 0);

    // An 8-byte entry cut by the block's end.
    let entries = entry8(0x42, 0x0300, 0x0200);
    let info = with_ivrs(ivrs_of(&[ivhd(0x11, 0xfd20_0000, 0, &entries[..4])]));
    assert!(info.amd_vi_units[0].entries_stopped);
    assert_eq!(info.amd_vi_units[0].alias_count, 0);
}

#[test]
fn an_alias_range_without_its_end_is_not_recorded() {
    let mut entries = entry8(0x43, 0x0400, 0x0310).to_vec();
    entries.extend_from_slice(&entry4(0x03, 0x0500, 0)); // another range start
    entries.extend_from_slice(&entry4(0x04, 0x05ff, 0));
    let info = with_ivrs(ivrs_of(&[ivhd(0x40, 0xfd20_0000, 0, &entries)]));
    assert_eq!(info.amd_vi_units[0].alias_count, 0);
    assert_eq!(info.amd_vi_units[0].alias_of(0x0400), None);
}

#[test]
fn more_alias_entries_than_recorded_are_counted_and_ivmd_blocks_skipped() {
    let mut entries = Vec::new();
    for i in 0..u16::try_from(MAX_IVRS_ALIASES + 3).expect("small") {
        entries.extend_from_slice(&entry8(0x42, 0x1000 + i, 0x0900));
    }
    let mut ivmd = vec![0x20u8, 0, 32, 0];
    ivmd.resize(32, 0);
    let info = with_ivrs(ivrs_of(&[ivmd, ivhd(0x11, 0xfd20_0000, 0, &entries)]));
    assert_eq!(info.amd_iommu_count, 1);
    let unit = &info.amd_vi_units[0];
    assert_eq!(unit.alias_count, MAX_IVRS_ALIASES);
    assert_eq!(unit.aliases_dropped, 3);
}

#[test]
fn an_ivhd_block_without_a_page_aligned_base_is_ignored() {
    let info = with_ivrs(ivrs_of(&[
        ivhd(0x11, 0xfd20_0800, 0, &[]),
        ivhd(0x11, 0, 0, &[]),
    ]));
    assert_eq!(info.amd_iommu_count, 0);
}

/// A DRHD at `base` of segment 0 with `flags` and these scope entries.
fn drhd_with_scopes(base: u64, flags: u8, scopes: &[Vec<u8>]) -> Vec<u8> {
    let mut s = vec![0u8, 0, 0, 0, flags, 0, 0, 0];
    s.extend_from_slice(&base.to_le_bytes());
    for scope in scopes {
        s.extend_from_slice(scope);
    }
    let len = u16::try_from(s.len()).expect("short");
    s[2..4].copy_from_slice(&len.to_le_bytes());
    s
}

fn scope(kind: u8, start_bus: u8, path: &[(u8, u8)]) -> Vec<u8> {
    let mut e = vec![
        kind,
        u8::try_from(6 + 2 * path.len()).expect("short"),
        0,
        0,
        0,
        start_bus,
    ];
    for &(d, f) in path {
        e.extend_from_slice(&[d, f]);
    }
    e
}

fn dmar_of(structures: &[Vec<u8>]) -> AcpiInfo {
    let mut body = vec![39u8, 0x01];
    body.extend_from_slice(&[0; 10]);
    for s in structures {
        body.extend_from_slice(s);
    }
    let mut t = Tables::new();
    t.put(0xf0000, &rsdp_v2(0xe1000));
    t.put(0xe1000, &xsdt(&[0xe5000]));
    t.put(0xe5000, &sdt(b"DMAR", &body));
    discover(&t.mem(), 0).expect("RSDP")
}

#[test]
fn drhd_scopes_keep_pci_endpoints_and_hierarchies_with_their_paths() {
    let gpu = drhd_with_scopes(
        0xfed9_0000,
        0,
        &[
            scope(1, 0, &[(2, 0)]),            // endpoint 00:02.0
            scope(3, 0xf0, &[(0x1f, 0)]),      // IO-APIC: not PCI, skipped
            scope(2, 0, &[(0x1c, 0), (0, 0)]), // the bridge below 00:1c.0's bus
        ],
    );
    let rest = drhd_with_scopes(
        0xfed9_1000,
        Drhd::INCLUDE_PCI_ALL,
        &[scope(3, 0xf0, &[(0x1f, 0)])],
    );
    let info = dmar_of(&[gpu, rest]);
    assert_eq!(info.drhd_count, 2);
    let scopes = info.drhd[0].scopes;
    assert_eq!(scopes.dropped, 0);
    assert_eq!(scopes.all().len(), 2);
    assert_eq!(
        (
            scopes.all()[0].sub_hierarchy,
            scopes.all()[0].start_bus,
            scopes.all()[0].path()
        ),
        (false, 0, &[(2, 0)][..])
    );
    assert_eq!(
        (scopes.all()[1].sub_hierarchy, scopes.all()[1].path()),
        (true, &[(0x1c, 0), (0, 0)][..])
    );
    assert!(info.drhd[1].scopes.all().is_empty());
    assert_eq!(info.drhd[1].flags, Drhd::INCLUDE_PCI_ALL);
}

#[test]
fn bad_drhd_scopes_are_counted_not_guessed() {
    let too_deep: Vec<(u8, u8)> = (0..=u8::try_from(MAX_SCOPE_PATH).expect("small"))
        .map(|d| (d, 0))
        .collect();
    let mut cut = scope(1, 0, &[(3, 0)]);
    cut[1] = 40; // longer than the structure
    let unit = drhd_with_scopes(
        0xfed9_0000,
        0,
        &[
            scope(1, 0, &[]),
            scope(1, 0, &too_deep),
            scope(1, 0, &[(4, 0)]),
            cut,
        ],
    );
    let info = dmar_of(&[unit]);
    let scopes = info.drhd[0].scopes;
    assert_eq!(scopes.all().len(), 1);
    assert_eq!(scopes.all()[0].path(), &[(4, 0)]);
    assert_eq!(scopes.dropped, 3);
}

#[test]
fn the_unit_whose_scope_names_a_device_serves_it_else_the_segments_include_all_unit() {
    let gpu = drhd_with_scopes(0xfed9_0000, 0, &[scope(1, 0, &[(2, 0)])]);
    let bridge = drhd_with_scopes(0xfed9_2000, 0, &[scope(2, 0, &[(0x1c, 0)])]);
    let rest = drhd_with_scopes(0xfed9_1000, Drhd::INCLUDE_PCI_ALL, &[]);
    let mut other_segment = drhd_with_scopes(0xfed9_3000, Drhd::INCLUDE_PCI_ALL, &[]);
    other_segment[6] = 1;
    let info = dmar_of(&[gpu, bridge, rest, other_segment]);
    let units = &info.drhd[..info.drhd_count];
    assert_eq!(units[3].segment, 1);
    // `names` stands for the bridge walk: the device's own path, or a bridge above it.
    let serving = |segment, names: &[(u8, u8)]| {
        unit_serving(units, segment, |s| {
            names.contains(&s.path()[s.path_len - 1])
        })
    };
    assert_eq!(serving(0, &[(2, 0)]), Some(0), "the GPU's unit");
    assert_eq!(
        serving(0, &[(0, 0), (0x1c, 0)]),
        Some(1),
        "below the listed bridge"
    );
    assert_eq!(
        serving(0, &[(3, 0)]),
        Some(2),
        "everything else of segment 0"
    );
    assert_eq!(
        serving(1, &[(2, 0)]),
        Some(3),
        "segment 1's own include-all unit"
    );
    assert_eq!(serving(2, &[(2, 0)]), None, "no unit for segment 2");
    let without_include_all = &units[..2];
    assert_eq!(unit_serving(without_include_all, 0, |_| false), None);
}

#[test]
fn ivhd_device_entries_tell_which_device_ids_a_unit_serves() {
    let mut entries = Vec::new();
    entries.extend_from_slice(&entry4(0x02, 0x0010, 0)); // 00:02.0
    entries.extend_from_slice(&entry4(0x03, 0x0100, 0)); // 01:00.0 ..
    entries.extend_from_slice(&entry4(0x04, 0x01ff, 0)); // .. 01:1f.7
    entries.extend_from_slice(&entry8(0x42, 0x0300, 0x0200)); // 03:00.0 (aliased)
    entries.extend_from_slice(&entry8(0x46, 0x0400, 0)); // extended select 04:00.0
    entries.extend_from_slice(&entry8(0x47, 0x0500, 0)); // extended range 05:00.0 ..
    entries.extend_from_slice(&entry4(0x04, 0x0507, 0)); // .. 05:00.7
    let info = with_ivrs(ivrs_of(&[ivhd(0x11, 0xfd20_0000, 0, &entries)]));
    let unit = &info.amd_vi_units[0];
    assert!(!unit.serves_all);
    for id in [
        0x0010, 0x0100, 0x0180, 0x01ff, 0x0300, 0x0400, 0x0500, 0x0507,
    ] {
        assert!(unit.may_serve(id), "{id:#06x}");
    }
    for id in [0x0011, 0x0200, 0x0301, 0x0508, 0x00ff] {
        assert!(!unit.may_serve(id), "{id:#06x}");
    }
    // An ALL entry serves everything.
    let info = with_ivrs(ivrs_of(&[ivhd(0x10, 0xfd20_0000, 0, &entry4(0x01, 0, 0))]));
    assert!(info.amd_vi_units[0].serves_all && info.amd_vi_units[0].may_serve(0xbeef));
    // Entries not all read: every device ID may be served.
    let mut stopped = entry4(0x02, 0x0010, 0).to_vec();
    stopped.extend_from_slice(&[0x85, 0, 0, 0]);
    let info = with_ivrs(ivrs_of(&[ivhd(0x11, 0xfd20_0000, 0, &stopped)]));
    assert!(info.amd_vi_units[0].may_serve(0x0900));
}

/// An MCFG allocation structure: base, segment, start bus, end bus.
fn allocation(base: u64, segment: u16, start_bus: u8, end_bus: u8) -> Vec<u8> {
    let mut a = base.to_le_bytes().to_vec();
    a.extend_from_slice(&segment.to_le_bytes());
    a.extend_from_slice(&[start_bus, end_bus, 0, 0, 0, 0]);
    a
}

fn mcfg_table(allocations: &[Vec<u8>]) -> Vec<u8> {
    let mut body = vec![0u8; 8]; // reserved
    for a in allocations {
        body.extend_from_slice(a);
    }
    sdt(b"MCFG", &body)
}

fn with_mcfg(table: &[u8]) -> AcpiInfo {
    let mut t = full_machine();
    t.put(0xe1000, &xsdt(&[0xe2000, 0xe7000]));
    t.put(0xe7000, table);
    discover(&t.mem(), 0).unwrap()
}

#[test]
fn mcfg_gives_each_segments_ecam_window() {
    let info = with_mcfg(&mcfg_table(&[
        allocation(0xb000_0000, 0, 0, 0xff),
        allocation(0x40_0000_0000, 1, 0x80, 0x83),
    ]));
    assert_eq!(info.io_apic_count, 2, "the other tables are still read");
    let mcfg = info.mcfg.expect("an MCFG");
    assert_eq!(
        mcfg.all(),
        &[
            EcamAllocation {
                base: 0xb000_0000,
                segment: 0,
                start_bus: 0,
                end_bus: 0xff
            },
            EcamAllocation {
                base: 0x40_0000_0000,
                segment: 1,
                start_bus: 0x80,
                end_bus: 0x83
            },
        ]
    );
    assert_eq!((mcfg.refused, mcfg.dropped, mcfg.first_error), (0, 0, None));
    // The base is bus 0's: the window of a range starting at bus 0x80
    // starts 128 MiB above it, 1 MiB per bus.
    let second = mcfg.all()[1];
    assert_eq!(second.window_start(), 0x40_0000_0000 + (0x80 << 20));
    assert_eq!(second.window_bytes(), 4 << 20);
    assert_eq!(mcfg.all()[0].window_bytes(), 256 << 20);
}

#[test]
fn no_mcfg_table_means_no_ecam_windows() {
    let info = discover(&full_machine().mem(), 0).unwrap();
    assert!(info.mcfg.is_none());
}

#[test]
fn an_mcfg_of_a_strange_length_is_refused_whole() {
    // 44 + 16 + 4 bytes: the last allocation is cut.
    let mut body = vec![0u8; 8];
    body.extend_from_slice(&allocation(0xb000_0000, 0, 0, 0xff));
    body.extend_from_slice(&[0; 4]);
    let info = with_mcfg(&sdt(b"MCFG", &body));
    let mcfg = info.mcfg.expect("an MCFG");
    assert!(mcfg.all().is_empty());
    assert_eq!(mcfg.first_error, Some(McfgError::StrangeLength(64)));
    // Shorter than its own header.
    let info = with_mcfg(&sdt(b"MCFG", &[0; 4]));
    assert_eq!(
        info.mcfg.expect("an MCFG").first_error,
        Some(McfgError::StrangeLength(40))
    );
    // Empty: a header and no allocation is not strange, just nothing.
    let info = with_mcfg(&mcfg_table(&[]));
    let empty = info.mcfg.expect("an MCFG");
    assert!(empty.all().is_empty() && empty.first_error.is_none());
}

#[test]
fn unusable_mcfg_allocations_are_refused_one_by_one() {
    let info = with_mcfg(&mcfg_table(&[
        allocation(0xb000_0000, 2, 0x10, 0x0f), // reversed
        allocation(0, 3, 0, 0xff),              // no base
        allocation(0xb008_0000, 4, 0, 0),       // not 1 MiB aligned
        allocation(!0xf_ffff, 5, 0, 0xff),      // past the top
        allocation(0xc000_0000, 6, 0, 0),       // fine
    ]));
    let mcfg = info.mcfg.expect("an MCFG");
    assert_eq!(mcfg.all().len(), 1);
    assert_eq!(mcfg.all()[0].segment, 6);
    assert_eq!(mcfg.refused, 4);
    assert_eq!(
        mcfg.first_error,
        Some(McfgError::ReversedBuses {
            segment: 2,
            start_bus: 0x10,
            end_bus: 0x0f
        })
    );
    assert_eq!(
        McfgError::BadBase {
            segment: 4,
            base: 0xb008_0000
        }
        .to_string(),
        "MCFG allocation of segment 0004: base 0xb0080000 is not a 1 MiB aligned window in the address space; ignored"
    );
}

#[test]
fn mcfg_allocations_beyond_what_is_recorded_or_read_are_counted() {
    let many: Vec<_> = (0..70u16)
        .map(|s| allocation(0x80_0000_0000 + (u64::from(s) << 28), s, 0, 0xff))
        .collect();
    let info = with_mcfg(&mcfg_table(&many));
    let mcfg = info.mcfg.expect("an MCFG");
    assert_eq!(mcfg.all().len(), MAX_MCFG_ALLOCATIONS);
    // 64 read, 16 kept, 48 beyond the record and 6 beyond what is read.
    assert_eq!(mcfg.dropped, 70 - MAX_MCFG_ALLOCATIONS);
    assert_eq!(mcfg.refused, 0);
}

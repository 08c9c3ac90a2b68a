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
    let mut body = vec![0u8; 12];
    for &base in bases {
        let mut ivhd = vec![0x11, 0, 24, 0];
        ivhd.extend_from_slice(&[0; 4]);
        ivhd.extend_from_slice(&base.to_le_bytes());
        ivhd.extend_from_slice(&[0; 8]);
        body.extend_from_slice(&ivhd);
    }
    sdt(b"IVRS", &body)
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

//! Just enough ACPI for a capture kernel: where the IO-APICs are (MADT), how
//! to power off (FADT PM1 control blocks + the DSDT's \_S5 package) and the
//! FADT reset register. Tables are read through `PhysMem`, never trusted:
//! every table's checksum and length is checked.

use minicap_physmem::PhysMem;

/// What minicap learned from the ACPI tables.
#[derive(Default, Debug)]
pub struct AcpiInfo {
    /// IO-APIC register bases from the MADT.
    pub io_apics: [u64; 8],
    /// How many entries of `io_apics` are valid.
    pub io_apic_count: usize,
    /// PM1a control block I/O port.
    pub pm1a_control: Option<u16>,
    /// PM1b control block I/O port.
    pub pm1b_control: Option<u16>,
    /// SLP_TYPa/SLP_TYPb for S5 (soft off), from \_S5.
    pub s5_sleep_types: Option<(u16, u16)>,
}

const MAX_TABLE: u32 = 4 << 20;

fn read_bytes<M: PhysMem + ?Sized, const N: usize>(mem: &M, addr: u64) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    mem.read(addr, &mut buf).ok()?;
    Some(buf)
}

fn u32_at(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

fn u64_at(bytes: &[u8], offset: usize) -> Option<u64> {
    Some(u64::from_le_bytes(
        bytes.get(offset..offset + 8)?.try_into().ok()?,
    ))
}

fn checksum_ok<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32) -> bool {
    let mut sum = 0u8;
    let mut buf = [0u8; 256];
    let mut done = 0u64;
    while done < u64::from(len) {
        let take = (u64::from(len) - done).min(256) as usize;
        if mem.read(addr + done, &mut buf[..take]).is_err() {
            return false;
        }
        sum = buf[..take].iter().fold(sum, |s, &b| s.wrapping_add(b));
        done += take as u64;
    }
    sum == 0
}

/// A validated system description table: (address, length).
fn table<M: PhysMem + ?Sized>(mem: &M, addr: u64) -> Option<([u8; 4], u64, u32)> {
    let header: [u8; 36] = read_bytes(mem, addr)?;
    let signature = [header[0], header[1], header[2], header[3]];
    let length = u32_at(&header, 4)?;
    if !(36..=MAX_TABLE).contains(&length) || !checksum_ok(mem, addr, length) {
        return None;
    }
    Some((signature, addr, length))
}

/// Find the RSDP: the address the loader passed, else the BIOS areas.
fn find_rsdp<M: PhysMem + ?Sized>(mem: &M, hint: u64) -> Option<[u8; 36]> {
    let valid = |addr: u64| -> Option<[u8; 36]> {
        let bytes: [u8; 36] = read_bytes(mem, addr)?;
        if &bytes[..8] != b"RSD PTR " {
            return None;
        }
        let sum = bytes[..20].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        (sum == 0).then_some(bytes)
    };
    if hint != 0 {
        if let Some(r) = valid(hint) {
            return Some(r);
        }
    }
    (0xe0000..0x100000u64).step_by(16).find_map(valid)
}

/// Walk RSDP → XSDT/RSDT → FADT, MADT, DSDT.
pub fn discover<M: PhysMem + ?Sized>(mem: &M, rsdp_hint: u64) -> Option<AcpiInfo> {
    let rsdp = find_rsdp(mem, rsdp_hint)?;
    let revision = rsdp[15];
    let xsdt = if revision >= 2 { u64_at(&rsdp, 24)? } else { 0 };
    let (root, entry_size) = if xsdt != 0 {
        (xsdt, 8u64)
    } else {
        (u64::from(u32_at(&rsdp, 16)?), 4u64)
    };
    let (_, root, root_len) = table(mem, root)?;
    let mut info = AcpiInfo::default();
    let entries = (u64::from(root_len) - 36) / entry_size;
    for i in 0..entries.min(256) {
        let at = root + 36 + i * entry_size;
        let addr = if entry_size == 8 {
            u64::from_le_bytes(read_bytes(mem, at)?)
        } else {
            u64::from(u32::from_le_bytes(read_bytes(mem, at)?))
        };
        let Some((signature, addr, len)) = table(mem, addr) else {
            continue;
        };
        match &signature {
            b"APIC" => read_madt(mem, addr, len, &mut info),
            b"FACP" => read_fadt(mem, addr, len, &mut info),
            _ => {}
        }
    }
    Some(info)
}

fn read_madt<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32, info: &mut AcpiInfo) {
    let end = addr + u64::from(len);
    let mut at = addr + 44;
    while at + 2 <= end {
        let Some(head) = read_bytes::<M, 2>(mem, at) else {
            return;
        };
        let (kind, entry_len) = (head[0], u64::from(head[1]));
        if entry_len < 2 || at + entry_len > end {
            return;
        }
        if kind == 1 && entry_len >= 12 {
            if let Some(entry) = read_bytes::<M, 12>(mem, at) {
                if let Some(base) = u32_at(&entry, 4) {
                    if info.io_apic_count < info.io_apics.len() {
                        info.io_apics[info.io_apic_count] = u64::from(base);
                        info.io_apic_count += 1;
                    }
                }
            }
        }
        at += entry_len;
    }
}

fn read_fadt<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32, info: &mut AcpiInfo) {
    let Some(fadt) = read_bytes::<M, 244>(mem, addr).or_else(|| {
        let mut short = [0u8; 244];
        mem.read(addr, &mut short[..len.min(244) as usize]).ok()?;
        Some(short)
    }) else {
        return;
    };
    let len = len as usize;
    let port = |offset: usize| -> Option<u16> {
        if offset + 4 > len {
            return None;
        }
        let value = u32_at(&fadt, offset)?;
        u16::try_from(value).ok().filter(|&p| p != 0)
    };
    info.pm1a_control = port(64);
    info.pm1b_control = port(68);
    let mut dsdt = if len >= 148 {
        u64_at(&fadt, 140).unwrap_or(0)
    } else {
        0
    };
    if dsdt == 0 {
        dsdt = u64::from(u32_at(&fadt, 40).unwrap_or(0));
    }
    if let Some((_, dsdt, dsdt_len)) = table(mem, dsdt) {
        info.s5_sleep_types = find_s5(mem, dsdt, dsdt_len);
    }
}

/// Find `_S5_` followed by a Package whose first two elements are the
/// SLP_TYP values (the AML pattern every firmware emits for \_S5).
fn find_s5<M: PhysMem + ?Sized>(mem: &M, dsdt: u64, len: u32) -> Option<(u16, u16)> {
    let mut window = [0u8; 4096 + 32];
    let mut offset = 36u64;
    let end = u64::from(len);
    while offset < end {
        let take = usize::try_from((end - offset).min(window.len() as u64)).unwrap_or(0);
        mem.read(dsdt + offset, &mut window[..take]).ok()?;
        let bytes = &window[..take];
        for i in 0..take.saturating_sub(4) {
            if &bytes[i..i + 4] != b"_S5_" {
                continue;
            }
            if let Some(types) = parse_s5_package(&bytes[i + 4..]) {
                return Some(types);
            }
        }
        if take < window.len() {
            break;
        }
        offset += 4096; // windows overlap by 32 bytes
    }
    None
}

fn parse_s5_package(bytes: &[u8]) -> Option<(u16, u16)> {
    let mut i = 0;
    if *bytes.first()? != 0x12 {
        return None; // PackageOp
    }
    i += 1;
    let pkg_len_bytes = usize::from(bytes.get(i)? >> 6) + 1;
    i += pkg_len_bytes + 1; // PkgLength, NumElements
    let mut value = || -> Option<u16> {
        let op = *bytes.get(i)?;
        let v = match op {
            0x00 => 0, // ZeroOp
            0x01 => 1, // OneOp
            0x0a => {
                i += 1;
                u16::from(*bytes.get(i)?) // BytePrefix
            }
            _ => return None,
        };
        i += 1;
        Some(v)
    };
    let a = value()?;
    let b = value().unwrap_or(0);
    Some((a, b))
}

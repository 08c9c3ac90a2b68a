//! Just enough ACPI for a capture kernel: where the IO-APICs are (MADT), how
//! to power off (FADT PM1 control blocks + the DSDT's \_S5 package), and
//! the IOMMUs (DMAR remapping units, IVRS units), the PCI segments' ECAM
//! windows (MCFG).
//! Tables are read through `PhysMem`, never trusted: every table's checksum
//! and length is checked. Pure logic, host tested against tables built in
//! fake physical memory.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use minicap_physmem::{le_u16 as u16_at, le_u32 as u32_at, le_u64 as u64_at, PhysMem};

/// What minicap learned from the ACPI tables.
#[derive(Default, Debug)]
pub struct AcpiInfo {
    /// IO-APIC register bases from the MADT (a two-socket server has a
    /// dozen or more).
    pub io_apics: [u64; 32],
    /// IO-APICs listed beyond the capacity of `io_apics` (left unmasked).
    pub io_apics_dropped: usize,
    /// How many entries of `io_apics` are valid.
    pub io_apic_count: usize,
    /// PM1a control block I/O port.
    pub pm1a_control: Option<u16>,
    /// PM1b control block I/O port.
    pub pm1b_control: Option<u16>,
    /// SLP_TYPa/SLP_TYPb for S5 (soft off), from \_S5.
    pub s5_sleep_types: Option<(u16, u16)>,
    /// Whether a valid DMAR table (Intel VT-d) was found.
    pub dmar_present: bool,
    /// VT-d remapping hardware units (DMAR DRHD structures).
    pub drhd: [Drhd; MAX_DRHD],
    /// How many entries of `drhd` are valid.
    pub drhd_count: usize,
    /// DRHD structures beyond `MAX_DRHD` (not recorded).
    pub drhd_dropped: usize,
    /// AMD-Vi IOMMU register bases (IVRS IVHD blocks, deduplicated); the
    /// unit at the same index of `amd_vi_units` describes each.
    pub amd_iommus: [u64; MAX_AMD_IOMMUS],
    /// What the IVRS says about each unit of `amd_iommus`.
    pub amd_vi_units: [AmdViUnit; MAX_AMD_IOMMUS],
    /// How many entries of `amd_iommus` (and `amd_vi_units`) are valid.
    pub amd_iommu_count: usize,
    /// IVHD blocks of units beyond `MAX_AMD_IOMMUS` (not recorded).
    pub amd_iommus_dropped: usize,
    /// The ECAM windows of the PCI segment groups (MCFG), if the table is
    /// there.
    pub mcfg: Option<Mcfg>,
}

/// Most DRHD units recorded (large servers have one per root complex).
pub const MAX_DRHD: usize = 16;
/// Most AMD-Vi units recorded.
pub const MAX_AMD_IOMMUS: usize = 16;

/// One VT-d DMA-remapping hardware unit (DMAR structure type 0).
#[derive(Default, Debug, Clone, Copy)]
pub struct Drhd {
    /// Physical address of its register set.
    pub base: u64,
    /// PCI segment it serves.
    pub segment: u16,
    /// Bit 0 INCLUDE_PCI_ALL: every device of the segment not listed under
    /// another unit.
    pub flags: u8,
    /// Size of the register set: 2^size 4 KiB pages (0 on pre-3.0 tables).
    pub size_log2_pages: u8,
    /// Its PCI device scope entries (the devices it serves unless
    /// INCLUDE_PCI_ALL).
    pub scopes: Scopes,
}

impl Drhd {
    /// DRHD flag: the unit covers all PCI devices of its segment not
    /// claimed by another unit.
    pub const INCLUDE_PCI_ALL: u8 = 1 << 0;

    /// Bytes of its register set.
    pub fn register_bytes(&self) -> u64 {
        0x1000u64 << self.size_log2_pages.min(8)
    }
}

mod dmar_scope;
mod ivrs;
mod mcfg;
pub use dmar_scope::{unit_serving, DeviceScope, Scopes, MAX_SCOPES, MAX_SCOPE_PATH};
pub use ivrs::{AmdViUnit, DeviceAlias, MAX_IVRS_ALIASES, MAX_IVRS_RANGES};
pub use mcfg::{
    EcamAllocation, Mcfg, McfgError, ECAM_BUS_BYTES, MAX_MCFG_ALLOCATIONS, MAX_MCFG_BYTES,
};

const MAX_TABLE: u32 = 4 << 20;
/// Most bytes of one DRHD structure read (its scope entries beyond are
/// counted as dropped).
const MAX_DRHD_BYTES: usize = 1024;

fn read_bytes<M: PhysMem + ?Sized, const N: usize>(mem: &M, addr: u64) -> Option<[u8; N]> {
    let mut buf = [0u8; N];
    mem.read(addr, &mut buf).ok()?;
    Some(buf)
}

fn checksum_ok<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32) -> bool {
    let mut sum = 0u8;
    let mut buf = [0u8; 256];
    let mut done = 0u64;
    while done < u64::from(len) {
        let take = usize::try_from((u64::from(len) - done).min(256)).unwrap_or(256);
        let Some(at) = addr.checked_add(done) else {
            return false;
        };
        if mem.read(at, &mut buf[..take]).is_err() {
            return false;
        }
        sum = buf[..take].iter().fold(sum, |s, &b| s.wrapping_add(b));
        done += 256;
    }
    sum == 0
}

/// A validated system description table: (signature, address, length).
/// The whole table lies below 2^64 (so `addr + length` never wraps).
fn table<M: PhysMem + ?Sized>(mem: &M, addr: u64) -> Option<([u8; 4], u64, u32)> {
    let header: [u8; 36] = read_bytes(mem, addr)?;
    let signature = [header[0], header[1], header[2], header[3]];
    let length = u32_at(&header, 4)?;
    if !(36..=MAX_TABLE).contains(&length)
        || addr.checked_add(u64::from(length)).is_none()
        || !checksum_ok(mem, addr, length)
    {
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
            b"DMAR" => read_dmar(mem, addr, len, &mut info),
            b"IVRS" => read_ivrs(mem, addr, len, &mut info),
            b"MCFG" => read_mcfg(mem, addr, len, &mut info),
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
                    } else {
                        info.io_apics_dropped += 1;
                    }
                }
            }
        }
        at += entry_len;
    }
}

/// DMAR: a 48-byte header (the ACPI header, host address width, flags,
/// reserved), then remapping structures (type u16, length u16). Type 0 is a
/// DRHD: flags u8 at +4, size u8 at +5, segment u16 at +6, register base
/// u64 at +8, device scopes from +16 (see `dmar_scope`).
fn read_dmar<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32, info: &mut AcpiInfo) {
    info.dmar_present = true;
    let end = addr + u64::from(len);
    let mut at = addr + 48;
    let mut structure = [0u8; MAX_DRHD_BYTES];
    while at + 4 <= end {
        let Some(head) = read_bytes::<M, 4>(mem, at) else {
            return;
        };
        let kind = u16::from_le_bytes([head[0], head[1]]);
        let entry_len = u64::from(u16::from_le_bytes([head[2], head[3]]));
        if entry_len < 4 || at + entry_len > end {
            return;
        }
        // Longer structures are read up to the buffer: the scope entries
        // cut there are counted as dropped.
        let take = usize::try_from(entry_len).map_or(structure.len(), |l| l.min(structure.len()));
        if kind == 0 && take >= 16 && mem.read(at, &mut structure[..take]).is_ok() {
            let entry = &structure[..take];
            let mut scopes = Scopes::parse(&entry[16..]);
            if take < usize::try_from(entry_len).unwrap_or(usize::MAX) {
                scopes.dropped += 1;
            }
            let unit = Drhd {
                flags: entry[4],
                size_log2_pages: entry[5] & 0x0f,
                segment: u16_at(entry, 6).unwrap_or(0),
                base: u64_at(entry, 8).unwrap_or(0),
                scopes,
            };
            if unit.base == 0 || unit.base & 0xfff != 0 {
                // Not a usable register base; ignored.
            } else if info.drhd_count < MAX_DRHD {
                info.drhd[info.drhd_count] = unit;
                info.drhd_count += 1;
            } else {
                info.drhd_dropped += 1;
            }
        }
        at += entry_len;
    }
}

/// IVRS: a 48-byte header (the ACPI header, IVinfo, reserved), then IVHD
/// and IVMD blocks (type u8, flags u8, length u16); see `ivrs` for the IVHD
/// blocks. Several blocks of different types may describe one unit (an old
/// OS reads type 0x10, a newer one 0x11 or 0x40); like Linux
/// (`get_highest_supported_ivhd_type()`), the highest type is the one used.
fn read_ivrs<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32, info: &mut AcpiInfo) {
    let end = addr + u64::from(len);
    let mut at = addr + 48;
    let mut block = [0u8; ivrs::MAX_IVHD_BYTES];
    while at + 4 <= end {
        let Some(head) = read_bytes::<M, 4>(mem, at) else {
            return;
        };
        let entry_len = u64::from(u16::from_le_bytes([head[2], head[3]]));
        if entry_len < 4 || at + entry_len > end {
            return;
        }
        // Longer blocks are read up to the buffer: their device entries
        // beyond it are reported as not read (`AmdViUnit::entries_stopped`).
        let take = usize::try_from(entry_len).map_or(block.len(), |l| l.min(block.len()));
        if mem.read(at, &mut block[..take]).is_ok() {
            if let Some(unit) = AmdViUnit::parse(&block[..take], entry_len) {
                record_amd_vi_unit(info, unit);
            }
        }
        at += entry_len;
    }
}

fn record_amd_vi_unit(info: &mut AcpiInfo, unit: AmdViUnit) {
    let count = info.amd_iommu_count;
    if let Some(i) = info.amd_iommus[..count]
        .iter()
        .position(|&b| b == unit.base)
    {
        if unit.block_type > info.amd_vi_units[i].block_type {
            info.amd_vi_units[i] = unit;
        }
    } else if count < MAX_AMD_IOMMUS {
        info.amd_iommus[count] = unit.base;
        info.amd_vi_units[count] = unit;
        info.amd_iommu_count += 1;
    } else {
        info.amd_iommus_dropped += 1;
    }
}

/// MCFG: see `mcfg`. At most `MAX_MCFG_BYTES` of it are read.
fn read_mcfg<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32, info: &mut AcpiInfo) {
    let mut bytes = [0u8; MAX_MCFG_BYTES];
    let take = usize::try_from(len).map_or(bytes.len(), |l| l.min(bytes.len()));
    if mem.read(addr, &mut bytes[..take]).is_err() {
        return;
    }
    info.mcfg
        .get_or_insert_with(Mcfg::default)
        .add_table(&bytes[..take], len);
}

fn read_fadt<M: PhysMem + ?Sized>(mem: &M, addr: u64, len: u32, info: &mut AcpiInfo) {
    let Some(fadt) = read_bytes::<M, 244>(mem, addr).or_else(|| {
        let mut short = [0u8; 244];
        let short_len = usize::try_from(len.min(244)).unwrap_or(244);
        mem.read(addr, &mut short[..short_len]).ok()?;
        Some(short)
    }) else {
        return;
    };
    let len = usize::try_from(len).unwrap_or(0);
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

#[cfg(test)]
mod tests;

//! IVRS IVHD blocks: one AMD-Vi IOMMU and the devices it serves (AMD I/O
//! Virtualization Technology (IOMMU) Specification, 48882, section 5.2;
//! Linux `drivers/iommu/amd/init.c`, `init_iommu_from_acpi()`).
//!
//! An IVHD block: type u8 (0x10, 0x11 or 0x40), flags u8, length u16, the
//! IOMMU's own device ID u16 at +4, capability offset u16 at +6, register
//! base u64 at +8, PCI segment group u16 at +16, IOMMU info u16 at +18; type
//! 0x10 has a feature word at +20 and its device entries start at +24;
//! types 0x11 and 0x40 have attributes at +20, the EFR register image u64
//! at +24 and their device entries start at +40.
//!
//! Device entries are sized by their type (Linux `ivhd_entry_length()`):
//! types below 0x80 are 4 << (type >> 6) bytes; the ACPI-HID entry (0xF0)
//! is 22 bytes plus its UID length (byte 21); any other type cannot be
//! sized, so the rest of the block is not read. Device IDs are 16-bit
//! segment-local requester IDs (bus << 8 | device << 3 | function).
//!
//! minicap reads two things from the entries (Linux `IVHD_DEV_*`):
//! - which device IDs the unit serves: `0x01` all of them; `0x02`, `0x42`,
//!   `0x46` one (at +1); `0x03`, `0x43`, `0x47` start a range that the next
//!   `0x04` entry ends (the range's last device ID at +1);
//! - the aliases: the requester ID a device's DMA carries when it is not
//!   its own (a device behind a bridge that takes ownership of its
//!   requests). `0x42` names one device and its alias (alias u16 at +5);
//!   `0x43` starts a range with one alias (at +5).

use minicap_physmem::{le_u16 as u16_at, le_u64 as u64_at};

/// Most bytes of one IVHD block that are read (its device entries beyond
/// are reported as not read).
pub const MAX_IVHD_BYTES: usize = 4096;
/// Most alias entries recorded per unit.
pub const MAX_IVRS_ALIASES: usize = 32;
/// Most device ID ranges recorded per unit.
pub const MAX_IVRS_RANGES: usize = 32;

const IVHD_TYPE_10: u8 = 0x10;
const IVHD_TYPE_11: u8 = 0x11;
const IVHD_TYPE_40: u8 = 0x40;
const ENTRY_ALL: u8 = 0x01;
const ENTRY_SELECT: u8 = 0x02;
const ENTRY_RANGE_START: u8 = 0x03;
const ENTRY_RANGE_END: u8 = 0x04;
const ENTRY_EXT_SELECT: u8 = 0x46;
const ENTRY_EXT_RANGE: u8 = 0x47;
const ENTRY_ALIAS_SELECT: u8 = 0x42;
const ENTRY_ALIAS_RANGE: u8 = 0x43;
const ENTRY_ACPI_HID: u8 = 0xf0;

/// Device IDs `first..=last` reach memory with requester ID `alias`.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceAlias {
    /// First device ID of the range.
    pub first: u16,
    /// Last device ID of the range (inclusive).
    pub last: u16,
    /// The requester ID their DMA carries.
    pub alias: u16,
}

impl DeviceAlias {
    /// Whether `device_id` is one of the aliased devices.
    pub fn covers(&self, device_id: u16) -> bool {
        (self.first..=self.last).contains(&device_id)
    }
}

/// One AMD-Vi IOMMU as its IVHD block describes it.
#[derive(Default, Debug, Clone, Copy)]
pub struct AmdViUnit {
    /// Physical address of its register set.
    pub base: u64,
    /// PCI segment group of the devices it serves.
    pub segment: u16,
    /// The IOMMU's own device ID.
    pub device_id: u16,
    /// The IVHD type the rest was read from (0x10, 0x11 or 0x40).
    pub block_type: u8,
    /// IVHD flags (bit 5: its table walks are coherent).
    pub flags: u8,
    /// The EFR register image (types 0x11 and 0x40; 0 for type 0x10).
    pub efr_image: u64,
    /// Alias entries, the first `alias_count` valid.
    pub aliases: [DeviceAlias; MAX_IVRS_ALIASES],
    /// How many entries of `aliases` are valid.
    pub alias_count: usize,
    /// Alias entries beyond `MAX_IVRS_ALIASES` (not recorded).
    pub aliases_dropped: usize,
    /// An `0x01` entry: the unit serves every device ID of its segment.
    pub serves_all: bool,
    /// Device ID ranges (first, last) the unit serves, the first
    /// `range_count` valid.
    pub ranges: [(u16, u16); MAX_IVRS_RANGES],
    /// How many entries of `ranges` are valid.
    pub range_count: usize,
    /// Ranges beyond `MAX_IVRS_RANGES` (not recorded).
    pub ranges_dropped: usize,
    /// The device entries were not all read: an entry of a type that cannot
    /// be sized, an entry crossing the block's end, or a block longer than
    /// [`MAX_IVHD_BYTES`]. Aliases listed after that point are unknown.
    pub entries_stopped: bool,
}

impl AmdViUnit {
    /// The alias of `device_id` the IVRS names, if any.
    pub fn alias_of(&self, device_id: u16) -> Option<u16> {
        self.aliases[..self.alias_count]
            .iter()
            .find(|a| a.covers(device_id))
            .map(|a| a.alias)
    }

    /// Whether the unit serves `device_id`, or cannot tell (its entries
    /// were not all read or recorded): then it is assumed to.
    pub fn may_serve(&self, device_id: u16) -> bool {
        self.serves_all
            || self.entries_stopped
            || self.ranges_dropped > 0
            || self.ranges[..self.range_count]
                .iter()
                .any(|&(first, last)| (first..=last).contains(&device_id))
    }

    /// Parse an IVHD block: `block` holds its first bytes, `full_len` is
    /// the length its header gives. None if it is not an IVHD block (an
    /// IVMD block) or has no usable register base.
    pub fn parse(block: &[u8], full_len: u64) -> Option<Self> {
        let block_type = *block.first()?;
        let entries_at = match block_type {
            IVHD_TYPE_10 => 24,
            IVHD_TYPE_11 | IVHD_TYPE_40 => 40,
            _ => return None,
        };
        if block.len() < entries_at {
            return None;
        }
        let base = u64_at(block, 8)?;
        if base == 0 || base & 0xfff != 0 {
            return None;
        }
        let mut unit = Self {
            base,
            segment: u16_at(block, 16)?,
            device_id: u16_at(block, 4)?,
            block_type,
            flags: block[1],
            efr_image: if entries_at == 40 {
                u64_at(block, 24)?
            } else {
                0
            },
            ..Self::default()
        };
        unit.entries_stopped = u64::try_from(block.len()).map_or(true, |l| l < full_len);
        unit.read_entries(&block[entries_at..]);
        Some(unit)
    }

    fn read_entries(&mut self, entries: &[u8]) {
        // The first device ID of an open range, and its alias (0x43).
        let mut open_range: Option<(u16, Option<u16>)> = None;
        let mut at = 0;
        while at < entries.len() {
            let kind = entries[at];
            let len = match kind {
                0..=0x7f => 4usize << (kind >> 6),
                ENTRY_ACPI_HID => match entries.get(at + 21) {
                    Some(&uid_len) => 22 + usize::from(uid_len),
                    None => 0,
                },
                _ => 0,
            };
            let Some(entry) = entries.get(at..at + len).filter(|_| len > 0) else {
                self.entries_stopped = true;
                return;
            };
            let device_id = u16_at(entry, 1).unwrap_or(0);
            match kind {
                ENTRY_ALL => self.serves_all = true,
                ENTRY_SELECT | ENTRY_EXT_SELECT => self.add_range(device_id, device_id),
                ENTRY_ALIAS_SELECT => {
                    let alias = u16_at(entry, 5).unwrap_or(0);
                    self.add_range(device_id, device_id);
                    self.add_alias(device_id, device_id, alias);
                }
                // A range start closes a range that was never ended.
                ENTRY_RANGE_START | ENTRY_EXT_RANGE => open_range = Some((device_id, None)),
                ENTRY_ALIAS_RANGE => {
                    open_range = Some((device_id, Some(u16_at(entry, 5).unwrap_or(0))));
                }
                ENTRY_RANGE_END => {
                    if let Some((first, alias)) = open_range.take() {
                        if first <= device_id {
                            self.add_range(first, device_id);
                            if let Some(alias) = alias {
                                self.add_alias(first, device_id, alias);
                            }
                        }
                    }
                }
                _ => {}
            }
            at += len;
        }
    }

    fn add_range(&mut self, first: u16, last: u16) {
        if self.range_count < MAX_IVRS_RANGES {
            self.ranges[self.range_count] = (first, last);
            self.range_count += 1;
        } else {
            self.ranges_dropped += 1;
        }
    }

    fn add_alias(&mut self, first: u16, last: u16, alias: u16) {
        if self.alias_count < MAX_IVRS_ALIASES {
            self.aliases[self.alias_count] = DeviceAlias { first, last, alias };
            self.alias_count += 1;
        } else {
            self.aliases_dropped += 1;
        }
    }
}

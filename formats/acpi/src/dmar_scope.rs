//! DRHD device scopes: which devices a VT-d unit serves (Intel VT-d
//! specification, section 8.3.1; Linux `dmar_parse_dev_scope()` and
//! `dmar_find_matched_drhd_unit()`).
//!
//! A device scope entry: type u8 (1 PCI endpoint, 2 PCI sub-hierarchy, 3
//! IO-APIC, 4 HPET, 5 ACPI namespace device), length u8, reserved u16,
//! enumeration ID u8, start bus u8, then (device u8, function u8) pairs:
//! the path from the start bus through bridges to the device. The last
//! pair names the device (a bridge, for a sub-hierarchy, whose whole
//! hierarchy below belongs to the unit); each earlier pair names a bridge
//! whose secondary bus the next pair is on.

/// Most scope entries recorded per unit.
pub const MAX_SCOPES: usize = 16;
/// Most path elements of one scope entry recorded (deeper ones are
/// counted as dropped).
pub const MAX_SCOPE_PATH: usize = 6;

/// A PCI device scope entry.
#[derive(Default, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceScope {
    /// The device itself (an endpoint) or everything below a bridge.
    pub sub_hierarchy: bool,
    /// The bus the path starts on.
    pub start_bus: u8,
    /// (device, function) pairs, the first `path_len` valid.
    pub path: [(u8, u8); MAX_SCOPE_PATH],
    /// How many of `path` are valid (at least 1).
    pub path_len: usize,
}

impl DeviceScope {
    /// The path from the start bus.
    pub fn path(&self) -> &[(u8, u8)] {
        &self.path[..self.path_len]
    }
}

/// The PCI scope entries of a DRHD (non-PCI ones, IO-APIC, HPET and ACPI
/// devices, are skipped: they do not bus-master through minicap).
#[derive(Default, Debug, Clone, Copy)]
pub struct Scopes {
    entries: [DeviceScope; MAX_SCOPES],
    count: usize,
    /// PCI scope entries not recorded (beyond [`MAX_SCOPES`], paths longer
    /// than [`MAX_SCOPE_PATH`], or cut by the structure's end).
    pub dropped: usize,
}

impl Scopes {
    /// The recorded entries.
    pub fn all(&self) -> &[DeviceScope] {
        &self.entries[..self.count]
    }

    /// Parse the device scope entries that follow a DRHD's 16-byte header.
    pub fn parse(bytes: &[u8]) -> Self {
        let mut scopes = Self::default();
        let mut at = 0;
        while at + 2 <= bytes.len() {
            let kind = bytes[at];
            let len = usize::from(bytes[at + 1]);
            let is_pci = matches!(kind, 1 | 2);
            if len < 6 || at + len > bytes.len() {
                // A malformed entry ends the list.
                scopes.dropped += usize::from(is_pci);
                return scopes;
            }
            if is_pci {
                scopes.add(kind == 2, &bytes[at..at + len]);
            }
            at += len;
        }
        scopes
    }

    fn add(&mut self, sub_hierarchy: bool, entry: &[u8]) {
        let pairs = &entry[6..];
        let path_len = pairs.len() / 2;
        if !pairs.len().is_multiple_of(2)
            || path_len == 0
            || path_len > MAX_SCOPE_PATH
            || self.count == MAX_SCOPES
        {
            self.dropped += 1;
            return;
        }
        let mut scope = DeviceScope {
            sub_hierarchy,
            start_bus: entry[5],
            path_len,
            ..DeviceScope::default()
        };
        for (i, pair) in pairs.chunks_exact(2).enumerate() {
            scope.path[i] = (pair[0], pair[1]);
        }
        self.entries[self.count] = scope;
        self.count += 1;
    }
}

/// Which of `units` serves a PCI function of `segment` (Linux
/// `dmar_find_matched_drhd_unit()`): the first unit of the segment with a
/// scope entry that `names_it` says is the function or a bridge above it,
/// else the segment's INCLUDE_PCI_ALL unit (the specification puts it
/// last). Its index in `units`; None if no unit serves the function (its
/// DMA is not remapped).
pub fn unit_serving(
    units: &[crate::Drhd],
    segment: u16,
    names_it: impl Fn(&DeviceScope) -> bool,
) -> Option<usize> {
    let include_all = |u: &crate::Drhd| u.flags & crate::Drhd::INCLUDE_PCI_ALL != 0;
    units
        .iter()
        .position(|u| {
            u.segment == segment && !include_all(u) && u.scopes.all().iter().any(&names_it)
        })
        .or_else(|| {
            units
                .iter()
                .position(|u| u.segment == segment && include_all(u))
        })
}

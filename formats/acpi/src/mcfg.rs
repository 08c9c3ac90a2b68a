//! MCFG: where the enhanced (memory-mapped, "ECAM") PCI configuration space
//! of each PCI segment group lies (PCI Firmware specification 3.x, "MCFG
//! table"; read by Linux `acpi_parse_mcfg()` in
//! `arch/x86/pci/mmconfig-shared.c`).
//!
//! Layout: the 36-byte ACPI header, 8 reserved bytes, then allocation
//! structures of 16 bytes each: the ECAM base address u64 at +0, the
//! segment group u16 at +8, the start bus u8 at +10, the end bus u8 at +11,
//! 4 reserved bytes. The base address is that of bus 0 of the segment even
//! when the allocation starts at a later bus (Linux `pci_mmconfig_alloc()`
//! adds `start_bus << 20`): bus `b`, device `d`, function `f` has its 4 KiB
//! of configuration space at `base + (b << 20 | d << 15 | f << 12)`.
//!
//! Like Linux, a table whose allocations do not fill it exactly (a length
//! that is not 44 + 16·n) is refused whole: its entries cannot be trusted
//! to be where they seem. An allocation whose bus range is reversed or
//! whose window is not 1 MiB aligned, or would pass the top of the address
//! space, is refused on its own (Linux `acpi_mcfg_check_entry()` and
//! `pci_mmconfig_add()` refuse such entries too).

use core::fmt;
use minicap_physmem::{le_u16, le_u64};

/// Most MCFG allocations recorded (one per segment and bus range; large
/// servers have a handful).
pub const MAX_MCFG_ALLOCATIONS: usize = 16;
/// Bytes before the first allocation: the ACPI header and 8 reserved.
pub const MCFG_HEADER_BYTES: usize = 44;
/// Bytes of one allocation structure.
pub const MCFG_ALLOCATION_BYTES: usize = 16;
/// Most bytes of an MCFG table read (64 allocations).
pub const MAX_MCFG_BYTES: usize = MCFG_HEADER_BYTES + 64 * MCFG_ALLOCATION_BYTES;
/// Configuration space of one bus in the ECAM window (32 devices × 8
/// functions × 4 KiB).
pub const ECAM_BUS_BYTES: u64 = 1 << 20;

/// One ECAM window: the configuration space of buses `start_bus..=end_bus`
/// of PCI segment group `segment`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EcamAllocation {
    /// Address of bus 0's configuration space (not of `start_bus`'s).
    pub base: u64,
    /// PCI segment group number.
    pub segment: u16,
    /// First bus decoded.
    pub start_bus: u8,
    /// Last bus decoded.
    pub end_bus: u8,
}

impl EcamAllocation {
    /// Physical address of `start_bus`'s configuration space: where the
    /// window really starts.
    pub fn window_start(&self) -> u64 {
        self.base + (u64::from(self.start_bus) << 20)
    }

    /// Bytes of the window (1 MiB per bus).
    pub fn window_bytes(&self) -> u64 {
        (u64::from(self.end_bus) - u64::from(self.start_bus) + 1) * ECAM_BUS_BYTES
    }
}

/// Why an MCFG table or one of its allocations was not used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum McfgError {
    /// The table length is not 44 + 16·n bytes (or below 44): refused whole.
    StrangeLength(u32),
    /// An allocation ends before it starts.
    ReversedBuses {
        /// Its segment.
        segment: u16,
        /// Start bus.
        start_bus: u8,
        /// End bus.
        end_bus: u8,
    },
    /// An allocation's base is 0 or not 1 MiB aligned, or its window passes
    /// the top of the address space.
    BadBase {
        /// Its segment.
        segment: u16,
        /// The base address as read.
        base: u64,
    },
}

impl fmt::Display for McfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::StrangeLength(len) => write!(
                f,
                "MCFG of {len} bytes is not a header and whole 16-byte allocations; ignored"
            ),
            Self::ReversedBuses {
                segment,
                start_bus,
                end_bus,
            } => write!(
                f,
                "MCFG allocation of segment {segment:04x}: bus range {start_bus:02x}-{end_bus:02x} is reversed; ignored"
            ),
            Self::BadBase { segment, base } => write!(
                f,
                "MCFG allocation of segment {segment:04x}: base {base:#x} is not a 1 MiB aligned window in the address space; ignored"
            ),
        }
    }
}

/// The usable allocations of an MCFG table, and what was refused.
#[derive(Clone, Copy, Debug, Default)]
pub struct Mcfg {
    allocations: [EcamAllocation; MAX_MCFG_ALLOCATIONS],
    count: usize,
    /// Usable allocations beyond [`MAX_MCFG_ALLOCATIONS`] (not recorded).
    pub dropped: usize,
    /// The first refusal (of the table or of an allocation), if any.
    pub first_error: Option<McfgError>,
    /// How many allocations (or whole tables) were refused.
    pub refused: usize,
}

impl Mcfg {
    /// Parse an MCFG table of `length` bytes (its header's length, already
    /// checksummed) of which `read` holds the first ones (at most
    /// [`MAX_MCFG_BYTES`] are read: allocations beyond are counted as
    /// dropped).
    pub fn parse(read: &[u8], length: u32) -> Self {
        let mut mcfg = Self::default();
        mcfg.add_table(read, length);
        mcfg
    }

    /// Add the allocations of one more MCFG table (a machine has one; a
    /// second is read the same way). `read` and `length` as for
    /// [`Self::parse`].
    pub fn add_table(&mut self, read: &[u8], length: u32) {
        let whole = usize::try_from(length).unwrap_or(usize::MAX);
        let strange = whole < MCFG_HEADER_BYTES
            || !(whole - MCFG_HEADER_BYTES).is_multiple_of(MCFG_ALLOCATION_BYTES)
            || read.len() > whole;
        if strange {
            self.refuse(McfgError::StrangeLength(length));
            return;
        }
        let body = read.get(MCFG_HEADER_BYTES..).unwrap_or(&[]);
        let unread = (whole - MCFG_HEADER_BYTES) / MCFG_ALLOCATION_BYTES
            - body.len() / MCFG_ALLOCATION_BYTES;
        self.dropped += unread;
        for entry in body.chunks_exact(MCFG_ALLOCATION_BYTES) {
            match allocation(entry) {
                Ok(a) if self.count < MAX_MCFG_ALLOCATIONS => {
                    self.allocations[self.count] = a;
                    self.count += 1;
                }
                Ok(_) => self.dropped += 1,
                Err(e) => self.refuse(e),
            }
        }
    }

    fn refuse(&mut self, error: McfgError) {
        self.first_error.get_or_insert(error);
        self.refused += 1;
    }

    /// The usable allocations, in table order.
    pub fn all(&self) -> &[EcamAllocation] {
        &self.allocations[..self.count]
    }
}

fn allocation(entry: &[u8]) -> Result<EcamAllocation, McfgError> {
    let base = le_u64(entry, 0).unwrap_or(0);
    let segment = le_u16(entry, 8).unwrap_or(0);
    let (start_bus, end_bus) = (entry[10], entry[11]);
    if start_bus > end_bus {
        return Err(McfgError::ReversedBuses {
            segment,
            start_bus,
            end_bus,
        });
    }
    let a = EcamAllocation {
        base,
        segment,
        start_bus,
        end_bus,
    };
    // The window of the last bus must end inside the address space.
    let fits = base
        .checked_add((u64::from(end_bus) + 1) * ECAM_BUS_BYTES)
        .is_some();
    if base == 0 || !base.is_multiple_of(ECAM_BUS_BYTES) || !fits {
        return Err(McfgError::BadBase { segment, base });
    }
    Ok(a)
}

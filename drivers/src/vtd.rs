//! Intel VT-d translation tables for the capture (VT-d specification,
//! chapter 9): a legacy-mode root table, one context table per bus that has
//! an allowed device, and for units without pass-through an identity map
//! in second-level tables. Pure logic over [`Dma`] pages, so it is tested
//! on the host; the kernel programs the unit's registers.
//!
//! Only the allowed devices get a context entry; every other device's entry
//! is not present, so the unit blocks its DMA.

use crate::access::Dma;
use crate::pci::PciAddress;
use crate::Platform;
use core::fmt;

/// Domain id of minicap's one domain (0 is reserved when CAP.CM is set).
pub const DOMAIN_ID: u64 = 1;
/// Upper bound on identity second-level table pages per unit (4 KiB each).
pub const MAX_IDENTITY_TABLE_PAGES: u64 = 2048;

const PAGE_BYTES: usize = 4096;
const ENTRIES: u64 = 512;
const PRESENT: u64 = 1 << 0;
/// Context entry translation type 10b: pass-through.
pub const TT_PASS_THROUGH: u64 = 2 << 2;
/// Context entry translation type 00b: second-level tables, untranslated
/// requests only.
pub const TT_SECOND_LEVEL: u64 = 0;
/// Second-level entry bits.
pub const SL_READ: u64 = 1 << 0;
/// Second-level entry: writes allowed.
pub const SL_WRITE: u64 = 1 << 1;
/// Second-level entry: a large page (levels 2 and 3).
pub const SL_PAGE_SIZE: u64 = 1 << 7;

/// What the unit can do, from its CAP and ECAP registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// CAP.SAGAW: bit n set: the 30 + 9n bit, (n + 2)-level format.
    pub sagaw: u8,
    /// CAP.MGAW + 1: the widest guest address the unit translates.
    pub mgaw_bits: u32,
    /// CAP.SLLPS: bit 0 2 MiB, bit 1 1 GiB second-level pages.
    pub large_pages: u8,
    /// ECAP.PT: pass-through context entries.
    pub pass_through: bool,
    /// ECAP.C: its table walks snoop the CPU caches.
    pub coherent: bool,
}

impl Capabilities {
    /// Decode the CAP and ECAP registers.
    pub fn from_registers(cap: u64, ecap: u64) -> Self {
        Self {
            sagaw: ((cap >> 8) & 0x1f) as u8,
            mgaw_bits: ((cap >> 16) & 0x3f) as u32 + 1,
            large_pages: ((cap >> 34) & 0xf) as u8,
            pass_through: ecap & (1 << 6) != 0,
            coherent: ecap & 1 != 0,
        }
    }
}

/// How a unit's allowed devices reach memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Context entries of type pass-through, with this address width.
    PassThrough {
        /// Context entry AW field.
        aw: u64,
    },
    /// Second-level identity tables covering [0, top).
    Identity {
        /// Context entry AW field.
        aw: u64,
        /// Table levels (AW + 2).
        levels: u32,
        /// Level of the leaf entries: 1 4 KiB, 2 2 MiB, 3 1 GiB.
        leaf: u32,
        /// End of the identity map (a multiple of the leaf page size).
        top: u64,
    },
}

/// Why minicap cannot give a unit its own tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TableError {
    /// CAP.SAGAW is empty.
    NoAddressWidth,
    /// No pass-through and no supported width reaches the top of the dump.
    NoWidthCoversDump,
    /// No pass-through and the dump lies above CAP.MGAW.
    DumpAboveWidth,
    /// No pass-through and the identity map would need more table pages
    /// than [`MAX_IDENTITY_TABLE_PAGES`].
    TooManyTablePages,
    /// The platform had no DMA memory for a table page.
    OutOfMemory,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::NoAddressWidth => "CAP.SAGAW lists no address width",
            Self::NoWidthCoversDump => {
                "no pass-through (ECAP.PT) and no address width covers the dump"
            }
            Self::DumpAboveWidth => {
                "no pass-through (ECAP.PT) and the dump lies above the unit's address width"
            }
            Self::TooManyTablePages => {
                "no pass-through (ECAP.PT) and an identity map of the dump needs too many table pages"
            }
            Self::OutOfMemory => "out of memory for IOMMU tables",
        })
    }
}

/// Bytes one entry of a level-`level` table maps (level 1: 4 KiB).
pub fn span(level: u32) -> u64 {
    1u64 << (12 + 9 * (level - 1))
}

/// Pass-through if the unit has it, else identity second-level tables
/// covering [0, `top`) with the largest pages the unit supports.
pub fn choose_mode(caps: &Capabilities, top: u64) -> Result<Mode, TableError> {
    let sagaw = caps.sagaw;
    if sagaw == 0 {
        return Err(TableError::NoAddressWidth);
    }
    if caps.pass_through {
        // Pass-through context entries carry the largest supported AGAW.
        let aw = u64::from(7 - sagaw.leading_zeros().min(7));
        return Ok(Mode::PassThrough { aw });
    }
    // The smallest supported width n (30 + 9n bits, n + 2 levels) that
    // covers everything the device must reach.
    let aw = (0..5u32)
        .filter(|n| sagaw & (1 << n) != 0)
        .find(|n| 30 + 9 * n >= 64 || top <= 1u64 << (30 + 9 * n))
        .ok_or(TableError::NoWidthCoversDump)?;
    if top > 1u64 << caps.mgaw_bits.min(63) {
        return Err(TableError::DumpAboveWidth);
    }
    let levels = aw + 2;
    let leaf = if caps.large_pages & 2 != 0 && levels >= 3 {
        3 // 1 GiB
    } else if caps.large_pages & 1 != 0 {
        2 // 2 MiB
    } else {
        1 // 4 KiB
    };
    let leaf_tables = top.div_ceil(span(leaf) * ENTRIES);
    if leaf_tables > MAX_IDENTITY_TABLE_PAGES {
        return Err(TableError::TooManyTablePages);
    }
    Ok(Mode::Identity {
        aw: u64::from(aw),
        levels,
        leaf,
        top: top.div_ceil(span(leaf)) * span(leaf),
    })
}

/// A 4 KiB table page the unit reads by DMA.
struct TablePage<P: Platform + ?Sized> {
    page: Dma<P>,
}

impl<P: Platform + ?Sized> TablePage<P> {
    fn new(p: &P, pages: &mut u64) -> Result<Self, TableError> {
        let page = Dma::alloc(p, PAGE_BYTES, PAGE_BYTES).ok_or(TableError::OutOfMemory)?;
        *pages += 1;
        Ok(Self { page })
    }

    fn address(&self) -> u64 {
        self.page.device_address()
    }

    /// Entry `index` of a root or context table (256 entries of 128 bits):
    /// the high half first, so the present bit goes in last.
    fn set_entry128(&self, p: &P, index: u8, low: u64, high: u64) {
        let at = u64::from(index) * 16;
        self.page.write_at(p, at + 8, high);
        self.page.write_at(p, at, low);
    }

    /// Entry `index` (< 512) of a second-level table.
    fn set_entry64(&self, p: &P, index: u64, value: u64) {
        debug_assert!(index < ENTRIES);
        self.page.write_at(p, (index % ENTRIES) * 8, value);
    }

    /// Make the page visible to a unit that does not snoop the caches.
    fn publish(&self, p: &P, caps: &Capabilities) {
        if !caps.coherent {
            self.page.flush(p);
        }
    }
}

/// Tables built for one unit.
pub struct Tables<P: Platform + ?Sized> {
    root: Dma<P>,
    /// Table pages used (root, context and second-level tables).
    pub pages: u64,
}

impl<P: Platform + ?Sized> Tables<P> {
    /// The root table, for the unit's RTADDR register.
    pub fn root(&self) -> &Dma<P> {
        &self.root
    }
}

/// Build the root table of a unit of PCI `segment`, a context table for
/// each bus with an allowed device and (identity mode) the second-level
/// tables. Only `allowed` devices of `segment` get a (present) context
/// entry: a unit's tables are indexed by bus and devfn alone, so an entry
/// for a function of another segment would let through the function with
/// the same numbers on this unit's segment instead.
pub fn build_tables<P: Platform + ?Sized>(
    p: &P,
    caps: &Capabilities,
    mode: Mode,
    segment: u16,
    allowed: &[PciAddress],
) -> Result<Tables<P>, TableError> {
    let mut pages = 0;
    let root = TablePage::new(p, &mut pages)?;
    let (translation, aw) = match mode {
        Mode::PassThrough { aw } => (TT_PASS_THROUGH, aw),
        Mode::Identity {
            aw,
            levels,
            leaf,
            top,
        } => {
            let tables = TablePage::new(p, &mut pages)?;
            identity_table(p, caps, &tables, levels, leaf, 0, top, &mut pages)?;
            (tables.address() | TT_SECOND_LEVEL, aw)
        }
    };
    let context_low = translation | PRESENT;
    let context_high = aw | (DOMAIN_ID << 8);
    let on_segment = |f: &&PciAddress| f.segment == segment;
    for (i, first) in allowed.iter().enumerate().filter(|(_, f)| on_segment(f)) {
        // One context table per bus, made at the bus's first device.
        let same_bus = |f: &&PciAddress| on_segment(f) && f.bus == first.bus;
        if allowed[..i].iter().any(|f| same_bus(&f)) {
            continue;
        }
        let context = TablePage::new(p, &mut pages)?;
        for f in allowed[i..].iter().filter(same_bus) {
            let devfn = (f.device & 0x1f) << 3 | (f.function & 7);
            context.set_entry128(p, devfn, context_low, context_high);
        }
        context.publish(p, caps);
        root.set_entry128(p, first.bus, context.address() | PRESENT, 0);
    }
    root.publish(p, caps);
    Ok(Tables {
        root: root.page,
        pages,
    })
}

/// Fill the level-`level` table, which maps [base, base + 512 ×
/// span(level)), with an identity map of [base, top) in `leaf`-level pages.
#[allow(clippy::too_many_arguments)]
fn identity_table<P: Platform + ?Sized>(
    p: &P,
    caps: &Capabilities,
    table: &TablePage<P>,
    level: u32,
    leaf: u32,
    base: u64,
    top: u64,
    pages: &mut u64,
) -> Result<(), TableError> {
    for index in 0..ENTRIES {
        let addr = base + index * span(level);
        if addr >= top {
            break;
        }
        let entry = if level == leaf {
            addr | SL_READ | SL_WRITE | if level > 1 { SL_PAGE_SIZE } else { 0 }
        } else {
            let next = TablePage::new(p, pages)?;
            identity_table(p, caps, &next, level - 1, leaf, addr, top, pages)?;
            next.address() | SL_READ | SL_WRITE
        };
        table.set_entry64(p, index, entry);
    }
    table.publish(p, caps);
    Ok(())
}

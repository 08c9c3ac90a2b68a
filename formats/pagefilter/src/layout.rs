//! What the filter needs from VMCOREINFO.

use core::fmt;

use minicap_vmcoreinfo::{VirtReadError, VmcoreInfo};

use crate::BATCH_BYTES;

/// Why the filter cannot run (the dump then keeps every page).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterError {
    /// A VMCOREINFO key is missing or malformed.
    MissingKey(&'static str),
    /// A size or offset from VMCOREINFO makes no sense.
    BadLayout(&'static str),
    /// Not SPARSEMEM_EXTREME (`LENGTH(mem_section)` does not match), which x86_64 always is.
    NotSparsememExtreme,
    /// Neither reading of `SYMBOL(mem_section)` gives valid `struct page` arrays.
    NoMemMap,
    /// Old memory could not be read while locating the arrays.
    Unreadable(VirtReadError),
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingKey(k) => write!(f, "VMCOREINFO lacks {k}"),
            Self::BadLayout(what) => write!(f, "VMCOREINFO layout makes no sense: {what}"),
            Self::NotSparsememExtreme => write!(f, "memory model is not SPARSEMEM_EXTREME"),
            Self::NoMemMap => write!(f, "mem_section does not lead to struct page arrays"),
            Self::Unreadable(e) => write!(f, "cannot read mem_section: {e}"),
        }
    }
}

impl core::error::Error for FilterError {}

/// Where a compound page's order is, in the `struct page` after its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderSource {
    /// The low byte of the next page's flags (`folio._flags_1`, 6.6+).
    FlagsLowByte,
    /// The byte at this offset in the next `struct page`.
    Byte(u64),
    /// Unknown: compound pages count as one frame.
    Unknown,
}

/// Sizes, offsets and values from VMCOREINFO, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageLayout {
    /// `SIZE(page)`.
    pub page_size: u64,
    /// `OFFSET(page.flags)`.
    pub flags: u64,
    /// `OFFSET(page._mapcount)` (the `page_type` word).
    pub mapcount: u64,
    /// `OFFSET(page.private)`.
    pub private: u64,
    /// `OFFSET(page.compound_head)`, if exported.
    pub compound_head: Option<u64>,
    /// Low 32 bits of `NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)`.
    pub buddy: u32,
    /// `NUMBER(PG_slab)` (gone in 6.10).
    pub pg_slab: Option<u32>,
    /// Low 32 bits of `NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)` (6.10+).
    pub slab: Option<u32>,
    /// Low 32 bits of `NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)`.
    pub offline: Option<u32>,
    /// Low 32 bits of `NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)`.
    pub unaccepted: Option<u32>,
    /// `NUMBER(PG_hwpoison)`.
    pub pg_hwpoison: Option<u32>,
    /// `NUMBER(PG_head_mask)`.
    pub head_mask: Option<u64>,
    /// Where a compound head's order is.
    pub order: OrderSource,
    /// `LENGTH(zone.free_area)`: buddy orders are below it.
    pub free_area_len: Option<u64>,
    /// `SYMBOL(mem_section)`.
    pub mem_section: u64,
    /// `LENGTH(mem_section)`: number of root pointers.
    pub roots: u64,
    /// `SIZE(mem_section)`.
    pub section_struct_size: u64,
    /// `OFFSET(mem_section.section_mem_map)`.
    pub section_mem_map: u64,
    /// `NUMBER(SECTION_SIZE_BITS)`.
    pub section_size_bits: u32,
}

fn low32(n: i64) -> u32 {
    // The kernel's int values: makedumpfile compares (int)NUMBER(...) with the u32 word.
    (n as u64 & 0xffff_ffff) as u32
}

impl PageLayout {
    /// Reads and checks the keys (see the crate docs).
    pub fn from_vmcoreinfo(v: &VmcoreInfo<'_>) -> Result<Self, FilterError> {
        let off = |k: &'static str| v.offset(k).ok_or(FilterError::MissingKey(k));
        let num = |k: &'static str| v.number(k).ok_or(FilterError::MissingKey(k));
        let small = |n: i64| u32::try_from(n).ok().filter(|&b| b < 64);
        let page_size = v
            .size("page")
            .ok_or(FilterError::MissingKey("SIZE(page)"))?;
        if page_size == 0 || page_size > (BATCH_BYTES / 4) as u64 {
            return Err(FilterError::BadLayout("SIZE(page)"));
        }
        let field = |k: &'static str, width: u64| -> Result<u64, FilterError> {
            let o = off(k)?;
            (o.checked_add(width).is_some_and(|end| end <= page_size))
                .then_some(o)
                .ok_or(FilterError::BadLayout(k))
        };
        let optional_field = |k: &'static str, width: u64| match v.offset(k) {
            Some(_) => field(k, width).map(Some),
            None => Ok(None),
        };
        let order = if v.number("PAGE_HUGETLB_MAPCOUNT_VALUE").is_some()
            || v.number("PG_hugetlb").is_some()
        {
            OrderSource::FlagsLowByte
        } else if let Some(o) = v.offset("folio._folio_order") {
            match o.checked_sub(page_size).filter(|&o| o < page_size) {
                Some(o) => OrderSource::Byte(o),
                None => return Err(FilterError::BadLayout("folio._folio_order")),
            }
        } else if let Some(o) = optional_field("page.compound_order", 1)? {
            OrderSource::Byte(o)
        } else {
            OrderSource::Unknown
        };
        let section_struct_size = v
            .size("mem_section")
            .ok_or(FilterError::MissingKey("SIZE(mem_section)"))?;
        if section_struct_size == 0 || section_struct_size > 4096 {
            return Err(FilterError::BadLayout("SIZE(mem_section)"));
        }
        let section_mem_map = off("mem_section.section_mem_map")?;
        if section_mem_map
            .checked_add(8)
            .is_none_or(|end| end > section_struct_size)
        {
            return Err(FilterError::BadLayout("mem_section.section_mem_map"));
        }
        let section_size_bits = num("SECTION_SIZE_BITS")?;
        let physmem_bits = num("MAX_PHYSMEM_BITS")?;
        if !(13..=40).contains(&section_size_bits)
            || !(section_size_bits..=56).contains(&physmem_bits)
        {
            return Err(FilterError::BadLayout(
                "SECTION_SIZE_BITS / MAX_PHYSMEM_BITS",
            ));
        }
        // SPARSEMEM_EXTREME: one root per 4096 / SIZE(mem_section) sections
        // (makedumpfile is_sparsemem_extreme()).
        let sections = 1u64 << (physmem_bits - section_size_bits);
        let expected_roots = sections.div_ceil(4096 / section_struct_size);
        let roots = v.length("mem_section").unwrap_or(expected_roots);
        if roots != expected_roots {
            return Err(FilterError::NotSparsememExtreme);
        }
        Ok(Self {
            page_size,
            flags: field("page.flags", 8)?,
            mapcount: field("page._mapcount", 4)?,
            private: field("page.private", 8)?,
            compound_head: optional_field("page.compound_head", 8)?,
            buddy: low32(num("PAGE_BUDDY_MAPCOUNT_VALUE")?),
            pg_slab: v.number("PG_slab").and_then(small),
            slab: v.number("PAGE_SLAB_MAPCOUNT_VALUE").map(low32),
            offline: v.number("PAGE_OFFLINE_MAPCOUNT_VALUE").map(low32),
            unaccepted: v.number("PAGE_UNACCEPTED_MAPCOUNT_VALUE").map(low32),
            pg_hwpoison: v.number("PG_hwpoison").and_then(small),
            head_mask: v.number("PG_head_mask").map(|n| n as u64),
            order,
            free_area_len: v
                .length("zone.free_area")
                .filter(|&n| (1..=64).contains(&n)),
            mem_section: v
                .symbol("mem_section")
                .ok_or(FilterError::MissingKey("SYMBOL(mem_section)"))?,
            roots,
            section_struct_size,
            section_mem_map,
            section_size_bits: u32::try_from(section_size_bits).unwrap_or(27),
        })
    }

    /// Page frames per memory section.
    pub fn pages_per_section(&self) -> u64 {
        1 << (self.section_size_bits - 12)
    }

    /// Sections per root pointer.
    pub fn sections_per_root(&self) -> u64 {
        4096 / self.section_struct_size
    }
}

//! What one `struct page` says about its frame: makedumpfile
//! `__exclude_unnecessary_pages()`, branch for branch, in its order.

use crate::layout::{HugetlbMark, OrderSource, PageLayout};
use crate::{DL_EXCLUDE_CACHE, DL_EXCLUDE_CACHE_PRI, DL_EXCLUDE_FREE, DL_EXCLUDE_USER_DATA};

/// Why frames are left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Page cache, not private (bit 2 or 4).
    Cache,
    /// Page cache with private data (bit 4).
    CachePrivate,
    /// Anonymous or hugetlbfs (bit 8).
    User,
    /// Free: buddy or unaccepted (bit 16).
    Free,
    /// Hardware poisoned (always).
    HwPoison,
    /// Logically offline (always).
    Offline,
}

/// The decision for the frame whose `struct page` was looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Dump it.
    Keep,
    /// A buddy page whose order is not below `LENGTH(zone.free_area)`: dumped.
    BadOrder,
    /// Leave out `frames` frames from this one.
    Exclude {
        /// Number of frames (a power of two, the frame aligned to it).
        frames: u64,
        /// Why.
        kind: Kind,
    },
}

fn u64_at(page: &[u8], offset: u64) -> u64 {
    usize::try_from(offset)
        .ok()
        .and_then(|o| page.get(o..o.checked_add(8)?))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

fn u32_at(page: &[u8], offset: u64) -> u32 {
    usize::try_from(offset)
        .ok()
        .and_then(|o| page.get(o..o.checked_add(4)?))
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn byte_at(page: &[u8], offset: u64) -> u8 {
    usize::try_from(offset)
        .ok()
        .and_then(|o| page.get(o))
        .copied()
        .unwrap_or(0)
}

/// Decides for frame `pfn` from its `struct page` (`page`) and, when in the same batch,
/// the next one (`next`, where a compound head's order is). `level` holds only bits the
/// layout supports.
pub(crate) fn classify(
    l: &PageLayout,
    level: u8,
    page: &[u8],
    next: Option<&[u8]>,
    pfn: u64,
) -> Verdict {
    let flags = u64_at(page, l.flags);
    let mapcount = u32_at(page, l.mapcount);
    let mapping = l.mapping.map_or(0, |o| u64_at(page, o));
    let bit = |b: u32| flags & (1 << b) != 0;

    // Compound head: its order and whether it is hugetlbfs, from the next struct page.
    let mut order = 0;
    let mut hugetlb = false;
    if let (Some(c), Some(next)) = (l.compound, next) {
        if flags & c.head_mask != 0 {
            let next_flags = u64_at(next, l.flags);
            order = match c.order {
                Some(OrderSource::FlagsLowByte) => next_flags & 0xff,
                Some(OrderSource::Byte(o)) => u64::from(byte_at(next, o)),
                None => 0,
            };
            hugetlb = match c.hugetlb {
                Some(HugetlbMark::PageType(t)) => mapcount == t,
                Some(HugetlbMark::TailFlag(b)) => next_flags & (1 << b) != 0,
                Some(HugetlbMark::Destructor { offset, value }) => byte_at(next, offset) == value,
                None => false,
            };
            // makedumpfile: an order of 64 or more, or a head not aligned to it, is invalid.
            if order >= 64 || pfn & ((1 << order) - 1) != 0 {
                order = 0;
            }
        }
    }
    let whole = 1u64 << order;

    // A tail: its head decided (and excluded it with the head if it had to).
    if u64_at(page, l.compound_head) & 1 != 0 {
        return Verdict::Keep;
    }
    let is_slab = l
        .slab
        .is_some_and(|s| s.page_type == Some(mapcount) || s.pg_slab.is_some_and(bit));
    // isAnon(): PAGE_MAPPING_ANON and not slab (1.7.3+; a slab's `mapping` is its cache).
    let is_anon = mapping & 1 != 0 && !is_slab;
    let wants = |b: u8| level & b != 0;

    if let Some(free) = l.free.filter(|_| wants(DL_EXCLUDE_FREE)) {
        if mapcount == free.buddy && !is_slab {
            let private = u64_at(page, free.private);
            if private >= free.free_area_len {
                return Verdict::BadOrder;
            }
            return Verdict::Exclude {
                frames: 1 << private,
                kind: Kind::Free,
            };
        }
        // Unaccepted memory is queued only in blocks of the highest order.
        if free.unaccepted == Some(mapcount) {
            return Verdict::Exclude {
                frames: 1 << (free.free_area_len - 1),
                kind: Kind::Free,
            };
        }
    }
    if let Some(cache) = l.cache {
        // is_cache_page(): on the LRU, or in the swap cache (PG_swapcache counts only
        // with PG_swapbacked: without it the bit is PG_owner_priv_1, e.g. PG_checked).
        let is_cache = bit(cache.lru) || (bit(cache.swapbacked) && bit(cache.swapcache));
        let is_private = bit(cache.private);
        if wants(DL_EXCLUDE_CACHE) && is_cache && !is_private && !is_anon {
            return Verdict::Exclude {
                frames: whole,
                kind: Kind::Cache,
            };
        }
        if wants(DL_EXCLUDE_CACHE_PRI) && is_cache && !is_anon {
            let kind = if is_private {
                Kind::CachePrivate
            } else {
                Kind::Cache
            };
            return Verdict::Exclude {
                frames: whole,
                kind,
            };
        }
    }
    if wants(DL_EXCLUDE_USER_DATA) && l.mapping.is_some() && (is_anon || hugetlb) {
        return Verdict::Exclude {
            frames: whole,
            kind: Kind::User,
        };
    }
    if l.hwpoison.is_some_and(bit) {
        return Verdict::Exclude {
            frames: whole,
            kind: Kind::HwPoison,
        };
    }
    if l.offline == Some(mapcount) && l.slab.is_some() && !is_slab {
        return Verdict::Exclude {
            frames: whole,
            kind: Kind::Offline,
        };
    }
    Verdict::Keep
}

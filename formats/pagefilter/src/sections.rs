//! Finding a frame's `struct page` through SPARSEMEM_EXTREME's `mem_section`
//! (makedumpfile `get_mm_sparsemem()`, `get_mem_section()`, `sparse_decode_mem_map()`).

use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::{OldMemory, VirtReadError};

use crate::layout::SectionLayout;
use crate::reason::Problem;

/// Lowest kernel virtual address on x86_64 (below every `PAGE_OFFSET` and `vmemmap` base,
/// 4- or 5-level): a decoded `struct page` array must lie above it (makedumpfile
/// `is_kvaddr()`).
const KERNEL_SPACE: u64 = 0xff00_0000_0000_0000;
/// `SECTION_MAP_LAST_BIT` since 5.12: the low 5 bits of `section_mem_map` are flags.
const SECTION_MAP_MASK: u64 = !((1 << 5) - 1);
const SECTION_MARKED_PRESENT: u64 = 1;

/// The `struct page` arrays of the old kernel, one section looked up at a time.
pub(crate) struct MemMap<'a, M: ?Sized> {
    pub(crate) old: OldMemory<'a, M>,
    layout: SectionLayout,
    /// `SIZE(page)`.
    page_size: u64,
    /// Address of the root pointer array.
    roots: u64,
    /// The section last looked up and its `struct page` array (pfn 0 based).
    cached: Option<(u64, Option<u64>)>,
}

impl<'a, M: PhysMem + ?Sized> MemMap<'a, M> {
    /// Finds the root array: `SYMBOL(mem_section)` as the array itself (before 4.15), else
    /// as a pointer to it, whichever makes every present section among the first
    /// `sections` decode to a kernel address, with at least one present.
    pub(crate) fn locate(
        old: OldMemory<'a, M>,
        layout: SectionLayout,
        page_size: u64,
        sections: u64,
    ) -> Result<Self, Problem> {
        let mut map = Self {
            old,
            layout,
            page_size,
            roots: layout.mem_section,
            cached: None,
        };
        if map.valid(sections) {
            return Ok(map);
        }
        map.roots = map
            .old
            .read_u64(layout.mem_section)
            .map_err(Problem::MemSectionUnreadable)?;
        if map.valid(sections) {
            Ok(map)
        } else {
            Err(Problem::NoMemMap)
        }
    }

    /// Whether the reading in `self.roots` is the right one (makedumpfile
    /// `validate_mem_section()`).
    fn valid(&mut self, sections: u64) -> bool {
        let mut any = false;
        let per_root = self.layout.sections_per_root();
        for nr in 0..sections {
            // An unreadable root array rules this reading out; an unreadable section is
            // just a section without memory map.
            if nr % per_root == 0
                && self
                    .old
                    .read_u64(self.roots.wrapping_add(nr / per_root * 8))
                    .is_err()
            {
                return false;
            }
            let first_pfn = nr * self.layout.pages_per_section();
            match self.mem_map_of(nr) {
                // The section's first struct page (makedumpfile adds the pfn back).
                Ok(Some(map))
                    if map.wrapping_add(first_pfn.wrapping_mul(self.page_size)) < KERNEL_SPACE =>
                {
                    return false
                }
                Ok(Some(_)) => any = true,
                Ok(None) | Err(_) => {}
            }
        }
        self.cached = None;
        any
    }

    /// Section `nr`'s `struct page` array, indexed by absolute pfn (None: no memory map).
    fn mem_map_of(&self, nr: u64) -> Result<Option<u64>, VirtReadError> {
        let l = &self.layout;
        let root_index = nr / l.sections_per_root();
        if root_index >= l.roots {
            return Ok(None);
        }
        let root = self.old.read_u64(self.roots.wrapping_add(root_index * 8))?;
        if root == 0 {
            return Ok(None);
        }
        let ms = root.wrapping_add((nr % l.sections_per_root()) * l.struct_size);
        let map = self.old.read_u64(ms.wrapping_add(l.section_mem_map))?;
        if map & SECTION_MARKED_PRESENT == 0 {
            return Ok(None);
        }
        // The encoded value is the array minus the section's first pfn (in struct pages,
        // Linux sparse_encode_mem_map()), i.e. already indexed by absolute pfn.
        Ok(Some(map & SECTION_MAP_MASK))
    }

    /// The `struct page` array of the section holding `pfn` (None: none, or unreadable).
    pub(crate) fn array_for(&mut self, pfn: u64) -> Option<u64> {
        let nr = pfn / self.layout.pages_per_section();
        if let Some((cached, map)) = self.cached {
            if cached == nr {
                return map;
            }
        }
        let map = self.mem_map_of(nr).ok().flatten();
        self.cached = Some((nr, map));
        map
    }

    pub(crate) fn layout(&self) -> &SectionLayout {
        &self.layout
    }
}

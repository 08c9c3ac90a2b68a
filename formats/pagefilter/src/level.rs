//! The dump level that is safe to apply, decided from VMCOREINFO alone (see the crate docs,
//! "The safe-level rule").

use core::ops::Range;

use minicap_vmcoreinfo::VmcoreInfo;

use crate::layout::{
    CacheFlags, CompoundLayout, FreeLayout, HugetlbMark, OrderSource, PageLayout, SectionLayout,
    SlabMarks,
};
use crate::reason::{Key, LevelReason, Problem, FILTER_BITS};
use crate::{DL_EXCLUDE_CACHE, DL_EXCLUDE_CACHE_PRI, DL_EXCLUDE_FREE, DL_EXCLUDE_USER_DATA};

/// The outcome of [`applicable_level`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelDecision {
    /// The level to apply (and to write in the dump header).
    pub level: u8,
    /// Why `level` is below the requested one (None: it is not).
    pub lowered: Option<LevelReason>,
    /// A problem that cost no requested bit but switched something off (a nonsense
    /// `NUMBER(PG_hwpoison)` or `PAGE_OFFLINE_MAPCOUNT_VALUE`, or, at a level without
    /// filter bits, whatever stops poisoned pages from being left out): worth a console line.
    pub ignored: Option<Problem>,
    /// What [`crate::PageFilter`] needs; None when no `struct page` can be read safely.
    pub layout: Option<PageLayout>,
}

/// Checks, for the bits of `requested` (makedumpfile `-d`), every VMCOREINFO value they
/// need, and returns the highest level that is still safe with the layout to apply it.
/// `ram` are the physical byte ranges of the old kernel's RAM (the PT_LOADs).
///
/// Pure: reads nothing but `vmcoreinfo`. [`crate::PageFilter::new`] then checks, in old
/// memory, that `mem_section` leads to `struct page` arrays.
pub fn applicable_level(
    requested: u8,
    vmcoreinfo: &VmcoreInfo<'_>,
    ram: &[Range<u64>],
) -> LevelDecision {
    let mut check = Checker {
        v: vmcoreinfo,
        requested,
        dead: 0,
        lowered: None,
        ignored: None,
    };
    if requested > 31 {
        check.lowered = Some(Problem::UnknownLevelBits(requested));
    }
    let layout = check.layout(ram);
    let mut level = requested & 31 & !level_bits(check.dead);
    if layout.is_none() {
        level &= !FILTER_BITS;
    }
    LevelDecision {
        level,
        lowered: check.lowered.map(|problem| LevelReason {
            problem,
            requested,
            level,
        }),
        ignored: check.ignored,
        layout,
    }
}

// What a problem switches off: the level bits (same values), and these.
const HWPOISON: u16 = 0x20;
const OFFLINE: u16 = 0x40;
/// Compound pages' head mask and order (whole-compound exclusions of bits 2, 4, 8).
const COMPOUND: u16 = 0x80;
/// Everything: no `struct page` is read.
const BASE: u16 = 0x100;

const CACHE: u16 = (DL_EXCLUDE_CACHE | DL_EXCLUDE_CACHE_PRI) as u16;
const USER: u16 = DL_EXCLUDE_USER_DATA as u16;
const FREE: u16 = DL_EXCLUDE_FREE as u16;
/// Readers of `page.mapping` (`isAnon()`).
const MAPPING: u16 = CACHE | USER;
/// Readers of the slab markers (`isSlab()`, via `page_is_buddy()`, `isAnon()`, `isOffline()`).
const SLAB: u16 = CACHE | USER | FREE | OFFLINE;
const WHOLE_COMPOUND: u16 = COMPOUND | CACHE | USER;

/// The level bits lost with `dead`.
fn level_bits(dead: u16) -> u8 {
    if dead & BASE != 0 {
        FILTER_BITS
    } else {
        u8::try_from(dead & u16::from(FILTER_BITS)).unwrap_or(FILTER_BITS)
    }
}

/// Lowest x86_64 kernel address with 4-level and with 5-level paging.
const KERNEL_HALF_4L: u64 = 0xffff_8000_0000_0000;
const KERNEL_HALF_5L: u64 = 0xff00_0000_0000_0000;
/// `SIZE(page)` bounds: 64 on x86_64, up to ~96 with debug options.
const PAGE_STRUCT_SIZES: Range<i64> = 32..257;
/// `NUMBER(SECTION_SIZE_BITS)` bounds (x86_64: 27).
const SECTION_SIZE_BITS: Range<i64> = 15..35;
/// `NUMBER(MAX_PHYSMEM_BITS)` upper bound (x86_64: 46, or 52 with 5-level paging).
const MAX_PHYSMEM_BITS: i64 = 52;

struct Checker<'a, 'v> {
    v: &'a VmcoreInfo<'v>,
    requested: u8,
    /// What is switched off so far.
    dead: u16,
    lowered: Option<Problem>,
    ignored: Option<Problem>,
}

impl Checker<'_, '_> {
    /// Switches `users` off because of `problem`, and records the first problem that cost
    /// a requested bit (or, failing that, the first one that cost anything relevant).
    fn fail(&mut self, users: u16, problem: Problem) {
        let newly = users & !self.dead;
        self.dead |= users;
        let requested = u16::from(self.requested & FILTER_BITS);
        let relevant = requested | HWPOISON | OFFLINE | BASE | COMPOUND;
        if newly & relevant == 0 {
            return;
        }
        if u16::from(level_bits(newly)) & requested != 0 {
            self.lowered.get_or_insert(problem);
        } else {
            self.ignored.get_or_insert(problem);
        }
    }

    /// The value of `key` if present and parsable (a malformed one fails `users`).
    fn optional(&mut self, key: &'static str, users: u16) -> Option<i64> {
        let key = Key(key);
        if !key.present(self.v) {
            return None;
        }
        let value = key.read(self.v);
        if value.is_none() {
            self.fail(users, Problem::Malformed(key));
        }
        value
    }

    fn required(&mut self, key: &'static str, users: u16) -> Option<i64> {
        if !Key(key).present(self.v) {
            self.fail(users, Problem::Missing(Key(key)));
            return None;
        }
        self.optional(key, users)
    }

    /// `value` of `key` if `ok`, else a nonsense failure.
    fn sane(&mut self, key: &'static str, users: u16, value: i64, ok: bool) -> Option<i64> {
        if !ok {
            self.fail(
                users,
                Problem::Nonsense {
                    key: Key(key),
                    value,
                },
            );
            return None;
        }
        Some(value)
    }

    /// An offset of a `width`-byte field, aligned, inside a `size`-byte struct.
    fn field(&mut self, key: &'static str, users: u16, width: i64, size: i64) -> Option<u64> {
        let o = self.required(key, users)?;
        let ok = o >= 0 && o % width == 0 && o + width <= size;
        self.sane(key, users, o, ok).map(|o| o as u64)
    }

    /// A page flag number (a bit of the 64-bit `flags`).
    fn flag(&mut self, key: &'static str, users: u16, required: bool) -> Option<u32> {
        let n = if required {
            self.required(key, users)?
        } else {
            self.optional(key, users)?
        };
        self.sane(key, users, n, (0..64).contains(&n))
            .and_then(|n| u32::try_from(n).ok())
    }

    /// A page-type marker of `_mapcount`: an `int` below -1 (-1 is an ordinary page's
    /// `_mapcount`), printed as signed or as unsigned.
    fn page_type(&mut self, key: &'static str, users: u16, required: bool) -> Option<u32> {
        let n = if required {
            self.required(key, users)?
        } else {
            self.optional(key, users)?
        };
        let low = (n as u64 & 0xffff_ffff) as u32;
        let ok = (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&n) && (low as i32) < -1;
        self.sane(key, users, n, ok).map(|_| low)
    }

    fn layout(&mut self, ram: &[Range<u64>]) -> Option<PageLayout> {
        let size = self.required("SIZE(page)", BASE)?;
        let size = self.sane(
            "SIZE(page)",
            BASE,
            size,
            PAGE_STRUCT_SIZES.contains(&size) && size % 8 == 0,
        )?;
        let flags = self.field("OFFSET(page.flags)", BASE, 8, size)?;
        let compound_head = self.field("OFFSET(page.compound_head)", BASE, 8, size)?;
        let mapcount = self.field("OFFSET(page._mapcount)", BASE, 4, size)?;
        let sections = self.sections(ram)?;

        // Each bit's own inputs; missing ones switch off only their users.
        let private = self.field("OFFSET(page.private)", FREE, 8, size);
        let buddy = self.page_type("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", FREE, true);
        let unaccepted = self.page_type("NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)", FREE, false);
        let max_len = i64::from(sections.section_size_bits) - 11;
        let free_area_len = self.required("LENGTH(zone.free_area)", FREE).and_then(|n| {
            // MAX_ORDER - 1 + PAGE_SHIFT <= SECTION_SIZE_BITS: a free block is in a section.
            self.sane(
                "LENGTH(zone.free_area)",
                FREE,
                n,
                (1..=max_len).contains(&n),
            )
        });
        let mapping = self.field("OFFSET(page.mapping)", MAPPING, 8, size);
        let lru = self.flag("NUMBER(PG_lru)", CACHE, true);
        let private_flag = self.flag("NUMBER(PG_private)", CACHE, true);
        let swapcache = self.flag("NUMBER(PG_swapcache)", CACHE, true);
        let swapbacked = self.flag("NUMBER(PG_swapbacked)", CACHE, true);
        let pg_slab = self.flag("NUMBER(PG_slab)", SLAB, false);
        let slab_type = self.page_type("NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)", SLAB, false);
        if !Key("NUMBER(PG_slab)").present(self.v)
            && !Key("NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)").present(self.v)
        {
            self.fail(SLAB, Problem::Missing(Key("NUMBER(PG_slab)")));
        }
        let hwpoison = self.flag("NUMBER(PG_hwpoison)", HWPOISON, false);
        let offline = self.page_type("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)", OFFLINE, false);
        let compound = self.compound(size);

        // Fields must not overlap.
        let fields = [
            ("OFFSET(page.flags)", Some(flags), 8, BASE),
            ("OFFSET(page.compound_head)", Some(compound_head), 8, BASE),
            ("OFFSET(page._mapcount)", Some(mapcount), 4, BASE),
            ("OFFSET(page.private)", private, 8, FREE),
            ("OFFSET(page.mapping)", mapping, 8, MAPPING),
        ];
        let mut overlapping = [false; 5];
        for (i, &(a, at, aw, au)) in fields.iter().enumerate() {
            for (j, &(b, bt, bw, bu)) in fields.iter().enumerate().skip(i + 1) {
                if let (Some(at), Some(bt)) = (at, bt) {
                    if at < bt + bw && bt < at + aw {
                        self.fail(au | bu, Problem::Overlap(Key(a), Key(b)));
                        overlapping[i] = true;
                        overlapping[j] = true;
                    }
                }
            }
        }
        if overlapping[..3].contains(&true) {
            return None;
        }
        // Flags of a head page must be distinct bits.
        let head_bit = compound.map(|c| c.head_mask.trailing_zeros());
        let same_bit = self.distinct(
            &[
                ("NUMBER(PG_slab)", pg_slab, SLAB),
                ("NUMBER(PG_lru)", lru, CACHE),
                ("NUMBER(PG_private)", private_flag, CACHE),
                ("NUMBER(PG_swapcache)", swapcache, CACHE),
                ("NUMBER(PG_swapbacked)", swapbacked, CACHE),
                ("NUMBER(PG_hwpoison)", hwpoison, HWPOISON),
                ("NUMBER(PG_head_mask)", head_bit, WHOLE_COMPOUND),
            ],
            Problem::SameBit,
        );
        // Page types must be distinct values.
        let hugetlb_type = match compound.and_then(|c| c.hugetlb) {
            Some(HugetlbMark::PageType(t)) => Some(t),
            _ => None,
        };
        let same_type = self.distinct(
            &[
                ("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", buddy, FREE),
                ("NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)", slab_type, SLAB),
                ("NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)", offline, OFFLINE),
                ("NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)", unaccepted, FREE),
                ("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)", hugetlb_type, USER),
            ],
            Problem::SameValue,
        );

        // A part is kept when every value of it passed (present ones, for optional keys).
        let sound = |value_ok: bool, key: &'static str| value_ok || !Key(key).present(self.v);
        let slab_sound = (pg_slab.is_some() || slab_type.is_some())
            && sound(pg_slab.is_some(), "NUMBER(PG_slab)")
            && sound(slab_type.is_some(), "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)")
            && !same_bit[0]
            && !same_type[1];
        let free = match (private, buddy, free_area_len) {
            (Some(private), Some(buddy), Some(len))
                if !overlapping[3]
                    && !same_type[0]
                    && !same_type[3]
                    && sound(
                        unaccepted.is_some(),
                        "NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)",
                    ) =>
            {
                Some(FreeLayout {
                    private,
                    buddy,
                    unaccepted,
                    free_area_len: len.unsigned_abs(),
                })
            }
            _ => None,
        };
        let cache = match (lru, private_flag, swapcache, swapbacked) {
            (Some(lru), Some(private), Some(swapcache), Some(swapbacked))
                if !same_bit[1..5].contains(&true) =>
            {
                Some(CacheFlags {
                    lru,
                    private,
                    swapcache,
                    swapbacked,
                })
            }
            _ => None,
        };
        let compound = compound.filter(|_| !same_bit[6]).map(|c| CompoundLayout {
            hugetlb: c.hugetlb.filter(|_| !same_type[4]),
            ..c
        });
        Some(PageLayout {
            page_size: size.unsigned_abs(),
            flags,
            compound_head,
            mapcount,
            mapping: mapping.filter(|_| !overlapping[4]),
            slab: slab_sound.then_some(SlabMarks {
                pg_slab,
                page_type: slab_type,
            }),
            free,
            cache,
            compound,
            hwpoison: hwpoison.filter(|_| !same_bit[5]),
            offline: offline.filter(|_| !same_type[2]),
            sections,
        })
    }

    /// Fails both users of any two equal values; returns which values clash.
    fn distinct<T: PartialEq + Copy, const N: usize>(
        &mut self,
        values: &[(&'static str, Option<T>, u16); N],
        problem: fn(Key, Key) -> Problem,
    ) -> [bool; N] {
        let mut clash = [false; N];
        for (i, &(a, av, au)) in values.iter().enumerate() {
            for (j, &(b, bv, bu)) in values.iter().enumerate().skip(i + 1) {
                if av.is_some() && av == bv {
                    self.fail(au | bu, problem(Key(a), Key(b)));
                    clash[i] = true;
                    clash[j] = true;
                }
            }
        }
        clash
    }

    /// `mem_section` and the section geometry (makedumpfile `get_mm_sparsemem()`).
    fn sections(&mut self, ram: &[Range<u64>]) -> Option<SectionLayout> {
        const SYMBOL: &str = "SYMBOL(mem_section)";
        let symbol = self.required(SYMBOL, BASE)? as u64;
        let five_level = self.v.number("pgtable_l5_enabled").unwrap_or(0) != 0;
        let lowest = if five_level {
            KERNEL_HALF_5L
        } else {
            KERNEL_HALF_4L
        };
        if symbol < lowest {
            self.fail(
                BASE,
                Problem::NotKernelAddress {
                    key: Key(SYMBOL),
                    address: symbol,
                },
            );
            return None;
        }
        self.sane(SYMBOL, BASE, symbol as i64, symbol.is_multiple_of(8))?;
        let struct_size = self.required("SIZE(mem_section)", BASE)?;
        self.sane(
            "SIZE(mem_section)",
            BASE,
            struct_size,
            (8..=4096).contains(&struct_size) && struct_size % 8 == 0,
        )?;
        let section_mem_map =
            self.field("OFFSET(mem_section.section_mem_map)", BASE, 8, struct_size)?;
        let section_bits = self.required("NUMBER(SECTION_SIZE_BITS)", BASE)?;
        self.sane(
            "NUMBER(SECTION_SIZE_BITS)",
            BASE,
            section_bits,
            SECTION_SIZE_BITS.contains(&section_bits),
        )?;
        let physmem_bits = self.required("NUMBER(MAX_PHYSMEM_BITS)", BASE)?;
        self.sane(
            "NUMBER(MAX_PHYSMEM_BITS)",
            BASE,
            physmem_bits,
            (section_bits + 1..=MAX_PHYSMEM_BITS).contains(&physmem_bits),
        )?;
        let ram_end = ram.iter().map(|r| r.end).max().unwrap_or(0);
        if ram_end > 1 << physmem_bits {
            self.fail(
                BASE,
                Problem::RamBeyondPhysmemBits {
                    ram_end,
                    bits: u32::try_from(physmem_bits).unwrap_or(u32::MAX),
                },
            );
            return None;
        }
        // SPARSEMEM_EXTREME: one root per 4096 / SIZE(mem_section) sections
        // (makedumpfile is_sparsemem_extreme()).
        let sections = 1u64 << (physmem_bits - section_bits);
        let expected = sections.div_ceil(4096 / struct_size as u64);
        let roots = match self.optional("LENGTH(mem_section)", BASE) {
            Some(n) => n as u64,
            None if Key("LENGTH(mem_section)").present(self.v) => return None,
            None => expected,
        };
        if roots != expected {
            self.fail(
                BASE,
                Problem::NotSparsememExtreme {
                    length: roots,
                    expected,
                },
            );
            return None;
        }
        Some(SectionLayout {
            mem_section: symbol,
            roots,
            struct_size: struct_size as u64,
            section_mem_map,
            section_size_bits: u32::try_from(section_bits).ok()?,
        })
    }

    /// Compound pages: head mask, order and hugetlb marker, as makedumpfile
    /// `__exclude_unnecessary_pages()` and `init_compound_offset()` pick them.
    fn compound(&mut self, size: i64) -> Option<CompoundLayout> {
        const HEAD: &str = "NUMBER(PG_head_mask)";
        let mask = self.optional(HEAD, WHOLE_COMPOUND)?;
        let single_bit = mask > 0 && (mask as u64).is_power_of_two();
        let head_mask = self.sane(HEAD, WHOLE_COMPOUND, mask, single_bit)? as u64;
        // Chosen by which keys exist, as makedumpfile does; a nonsense marker leaves hugetlb
        // pages unrecognised (and bit 8 off), not the order elsewhere.
        let (order, hugetlb) = if Key("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)").present(self.v) {
            let t = self.page_type("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)", USER, false);
            (
                Some(OrderSource::FlagsLowByte),
                t.map(HugetlbMark::PageType),
            )
        } else if Key("NUMBER(PG_hugetlb)").present(self.v) {
            let bit = self.flag("NUMBER(PG_hugetlb)", USER, false);
            (
                Some(OrderSource::FlagsLowByte),
                bit.map(HugetlbMark::TailFlag),
            )
        } else {
            let order = self.next_page_byte(
                "OFFSET(folio._folio_order)",
                "OFFSET(page.compound_order)",
                WHOLE_COMPOUND,
                size,
            )?;
            let dtor = self
                .next_page_byte(
                    "OFFSET(folio._folio_dtor)",
                    "OFFSET(page.compound_dtor)",
                    USER,
                    size,
                )
                .flatten();
            let value = self
                .optional("NUMBER(HUGETLB_PAGE_DTOR)", USER)
                .and_then(|n| {
                    self.sane("NUMBER(HUGETLB_PAGE_DTOR)", USER, n, (1..256).contains(&n))
                });
            let hugetlb = match (dtor, value) {
                (Some(offset), Some(value)) => u8::try_from(value)
                    .ok()
                    .map(|value| HugetlbMark::Destructor { offset, value }),
                _ => None,
            };
            (order.map(OrderSource::Byte), hugetlb)
        };
        Some(CompoundLayout {
            head_mask,
            order,
            hugetlb,
        })
    }

    /// A byte offset in the `struct page` after a compound head, given as one from the head
    /// (`OFFSET(folio.x)`, 6.3+) or in a tail (`OFFSET(page.x)`). `Some(None)`: neither key;
    /// None: nonsense.
    fn next_page_byte(
        &mut self,
        folio: &'static str,
        page: &'static str,
        users: u16,
        size: i64,
    ) -> Option<Option<u64>> {
        if let Some(o) = self.optional(folio, users) {
            let ok = (size..2 * size).contains(&o);
            return self
                .sane(folio, users, o, ok)
                .map(|o| Some((o - size) as u64));
        }
        match self.optional(page, users) {
            Some(o) => self
                .sane(page, users, o, (0..size).contains(&o))
                .map(|o| Some(o as u64)),
            None => Some(None),
        }
    }
}

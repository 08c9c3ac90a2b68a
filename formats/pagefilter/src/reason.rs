//! Why a dump level was lowered: typed, printable on the console and worth a header note.

use core::fmt;

use minicap_vmcoreinfo::{VirtReadError, VmcoreInfo};

use crate::{DL_EXCLUDE_CACHE, DL_EXCLUDE_CACHE_PRI, DL_EXCLUDE_FREE, DL_EXCLUDE_USER_DATA};

/// A VMCOREINFO key, spelled as in the note (`"SIZE(page)"`, `"NUMBER(PG_lru)"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key(pub &'static str);

impl Key {
    /// Whether the line is there at all (maybe with a value that does not parse).
    pub(crate) fn present(self, v: &VmcoreInfo<'_>) -> bool {
        v.value(self.0).is_some()
    }

    /// The value as a signed number (a `SYMBOL` as its two's complement), None if absent
    /// or unparsable.
    pub(crate) fn read(self, v: &VmcoreInfo<'_>) -> Option<i64> {
        let (tag, rest) = self.0.split_once('(')?;
        let name = rest.strip_suffix(')')?;
        let unsigned = |n: Option<u64>| n.and_then(|n| i64::try_from(n).ok());
        match tag {
            "SIZE" => unsigned(v.size(name)),
            "OFFSET" => unsigned(v.offset(name)),
            "LENGTH" => unsigned(v.length(name)),
            "NUMBER" => v.number(name),
            // Addresses are printed in hex and live in the top half: keep the bits.
            "SYMBOL" => v.symbol(name).map(|a| a as i64),
            _ => None,
        }
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// What is wrong with VMCOREINFO, or with the memory it points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The key is absent.
    Missing(Key),
    /// The key is there but its value does not parse.
    Malformed(Key),
    /// The value is outside what any x86_64 Linux could have.
    Nonsense {
        /// The key.
        key: Key,
        /// Its value.
        value: i64,
    },
    /// The address is not in the kernel half of the address space.
    NotKernelAddress {
        /// The key.
        key: Key,
        /// Its value.
        address: u64,
    },
    /// Two `struct page` fields overlap.
    Overlap(Key, Key),
    /// Two flag numbers name the same bit.
    SameBit(Key, Key),
    /// Two page-type markers have the same value.
    SameValue(Key, Key),
    /// `LENGTH(mem_section)` is not SPARSEMEM_EXTREME's number of roots.
    NotSparsememExtreme {
        /// `LENGTH(mem_section)`.
        length: u64,
        /// What `MAX_PHYSMEM_BITS`, `SECTION_SIZE_BITS` and `SIZE(mem_section)` imply.
        expected: u64,
    },
    /// RAM reaches above `1 << NUMBER(MAX_PHYSMEM_BITS)`.
    RamBeyondPhysmemBits {
        /// End of the highest RAM range.
        ram_end: u64,
        /// `NUMBER(MAX_PHYSMEM_BITS)`.
        bits: u32,
    },
    /// The root array of `mem_section` cannot be read from old memory.
    MemSectionUnreadable(VirtReadError),
    /// Neither reading of `SYMBOL(mem_section)` leads to `struct page` arrays in kernel space.
    NoMemMap,
    /// The requested level has bits above 31.
    UnknownLevelBits(u8),
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing(k) => write!(f, "{k} missing"),
            Self::Malformed(k) => write!(f, "{k} malformed"),
            Self::Nonsense { key, value } => write!(f, "{key}={value} makes no sense"),
            Self::NotKernelAddress { key, address } => {
                write!(f, "{key}={address:x} is not a kernel address")
            }
            Self::Overlap(a, b) => write!(f, "{a} overlaps {b}"),
            Self::SameBit(a, b) => write!(f, "{a} and {b} name the same page flag"),
            Self::SameValue(a, b) => write!(f, "{a} and {b} are the same page type"),
            Self::NotSparsememExtreme { length, expected } => write!(
                f,
                "LENGTH(mem_section)={length}, not SPARSEMEM_EXTREME's {expected}"
            ),
            Self::RamBeyondPhysmemBits { ram_end, bits } => write!(
                f,
                "RAM ends at {ram_end:#x}, above NUMBER(MAX_PHYSMEM_BITS)={bits}"
            ),
            Self::MemSectionUnreadable(e) => write!(f, "cannot read mem_section: {e}"),
            Self::NoMemMap => f.write_str("SYMBOL(mem_section) leads to no struct page array"),
            Self::UnknownLevelBits(level) => write!(f, "dump level {level} has bits above 31"),
        }
    }
}

/// Why the applied dump level is below the requested one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelReason {
    /// The first problem found that cost a requested bit.
    pub problem: Problem,
    /// The level asked for.
    pub requested: u8,
    /// The level applied.
    pub level: u8,
}

impl fmt::Display for LevelReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.problem)?;
        let dropped = self.requested & !self.level & FILTER_BITS;
        if self.level & FILTER_BITS == 0 && dropped != 0 {
            f.write_str(": page filtering off")?;
        } else if dropped != 0 {
            f.write_str(": no")?;
            let mut first = true;
            for (bit, name) in BIT_NAMES {
                if dropped & bit != 0 {
                    f.write_str(if first { " " } else { ", " })?;
                    f.write_str(name)?;
                    first = false;
                }
            }
            f.write_str(" filtering")?;
        }
        write!(f, ", dump level {}", self.level)
    }
}

/// The level bits the filter decides (bit 1, zero pages, is the writer's).
pub(crate) const FILTER_BITS: u8 =
    DL_EXCLUDE_CACHE | DL_EXCLUDE_CACHE_PRI | DL_EXCLUDE_USER_DATA | DL_EXCLUDE_FREE;

const BIT_NAMES: [(u8, &str); 4] = [
    (DL_EXCLUDE_CACHE, "page cache"),
    (DL_EXCLUDE_CACHE_PRI, "private cache"),
    (DL_EXCLUDE_USER_DATA, "user page"),
    (DL_EXCLUDE_FREE, "free page"),
];

//! The check minicap's purgatory runs first after a panic: the SHA-256 of every segment the
//! loader placed in the crash region, compared with the digests the loader stored, so that a
//! capture kernel corrupted since it was loaded (a stray DMA, a bad write by the crashing
//! kernel) never runs and never writes.
//!
//! kexec-tools' purgatory hashes all its regions into one SHA-256 (`verify_sha256_digest()`,
//! `purgatory/purgatory.c`); this one keeps a digest per segment so that it can say which
//! segment failed.
//!
//! This library holds the part both sides share and the part that can be tested on the host:
//! the digest table's byte layout ([`DigestTable::encode`], [`DigestTable::decode`]), the
//! check ([`DigestTable::check`]) and the parameter block the loader patches ([`params`]).
//! The purgatory binary (`src/main.rs`: entry, stack, serial output, the jump to minicap with
//! the boot-protocol registers) is built from it by `cargo xtask build`.
//!
//! # Table layout (little-endian, [`TABLE_LEN`] bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `MCPURG01` |
//! | 8 | 4 | number of regions, at most [`MAX_REGIONS`] |
//! | 12 | 4 | 0 |
//! | 16 + 48 × i | 8 | region i: physical address |
//! | 24 + 48 × i | 8 | region i: length in bytes |
//! | 32 + 48 × i | 32 | region i: SHA-256 of its bytes |
//!
//! Unused region slots are zero.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

use sha2::{Digest, Sha256};

pub mod params;

/// The most regions checked: `kexec_load` takes at most 16 segments, the purgatory's own among
/// them.
pub const MAX_REGIONS: usize = 15;
/// `MCPURG01`.
pub const MAGIC: [u8; 8] = *b"MCPURG01";
const HEADER_LEN: usize = 16;
const REGION_LEN: usize = 48;
/// Bytes of an encoded table.
pub const TABLE_LEN: usize = HEADER_LEN + MAX_REGIONS * REGION_LEN;
/// Bytes hashed per read: the purgatory reads memory in pieces this big.
pub const READ_CHUNK: usize = 4096;

/// One region to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Region {
    /// Physical address.
    pub addr: u64,
    /// Length in bytes.
    pub len: u64,
    /// The SHA-256 its bytes must have.
    pub sha256: [u8; 32],
}

/// The regions and their digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestTable {
    count: usize,
    regions: [Region; MAX_REGIONS],
}

/// Why a table cannot be built or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableError {
    /// More than [`MAX_REGIONS`] regions.
    TooManyRegions(usize),
    /// Fewer than [`TABLE_LEN`] bytes.
    TooShort(usize),
    /// Not `MCPURG01`.
    BadMagic([u8; 8]),
    /// A count above [`MAX_REGIONS`].
    BadCount(u32),
    /// A region whose end does not fit in 64 bits.
    RegionOverflow {
        /// Its index.
        index: usize,
    },
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyRegions(n) => write!(f, "{n} regions, at most {MAX_REGIONS}"),
            Self::TooShort(n) => write!(f, "digest table of {n} bytes, {TABLE_LEN} needed"),
            Self::BadMagic(m) => write!(f, "digest table magic {m:02x?}, not MCPURG01"),
            Self::BadCount(n) => {
                write!(f, "digest table counts {n} regions, at most {MAX_REGIONS}")
            }
            Self::RegionOverflow { index } => write!(f, "region {index} ends beyond 2^64"),
        }
    }
}

/// A region whose bytes do not match, or cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckError {
    /// The SHA-256 differs.
    Mismatch {
        /// Index of the region.
        index: usize,
        /// The region.
        region: Region,
        /// What its bytes hash to now.
        found: [u8; 32],
    },
    /// The bytes could not be read.
    Unreadable {
        /// Index of the region.
        index: usize,
        /// The address that failed.
        addr: u64,
    },
}

impl fmt::Display for CheckError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Mismatch { index, region, .. } => write!(
                f,
                "segment {index} at {:#x}, {} bytes: SHA-256 mismatch, not starting the capture kernel",
                region.addr, region.len
            ),
            Self::Unreadable { index, addr } => {
                write!(f, "segment {index}: cannot read {addr:#x}, not starting the capture kernel")
            }
        }
    }
}

impl DigestTable {
    /// A table of `regions` (at most [`MAX_REGIONS`]).
    pub fn new(regions: &[Region]) -> Result<Self, TableError> {
        if regions.len() > MAX_REGIONS {
            return Err(TableError::TooManyRegions(regions.len()));
        }
        let mut table = Self {
            count: regions.len(),
            regions: [Region::default(); MAX_REGIONS],
        };
        for (index, (slot, region)) in table.regions.iter_mut().zip(regions).enumerate() {
            region
                .addr
                .checked_add(region.len)
                .ok_or(TableError::RegionOverflow { index })?;
            *slot = *region;
        }
        Ok(table)
    }

    /// The regions.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.count]
    }

    /// The [`TABLE_LEN`] bytes the loader stores.
    pub fn encode(&self) -> [u8; TABLE_LEN] {
        let mut out = [0u8; TABLE_LEN];
        out[..8].copy_from_slice(&MAGIC);
        // count <= MAX_REGIONS (15).
        out[8..12].copy_from_slice(&u32::try_from(self.count).unwrap_or(0).to_le_bytes());
        for (region, slot) in self
            .regions()
            .iter()
            .zip(out[HEADER_LEN..].chunks_exact_mut(REGION_LEN))
        {
            slot[..8].copy_from_slice(&region.addr.to_le_bytes());
            slot[8..16].copy_from_slice(&region.len.to_le_bytes());
            slot[16..].copy_from_slice(&region.sha256);
        }
        out
    }

    /// Reads a stored table; every field is checked, as the memory may have been damaged too.
    pub fn decode(bytes: &[u8]) -> Result<Self, TableError> {
        let bytes = bytes
            .get(..TABLE_LEN)
            .ok_or(TableError::TooShort(bytes.len()))?;
        let magic: [u8; 8] = field(bytes, 0);
        if magic != MAGIC {
            return Err(TableError::BadMagic(magic));
        }
        let raw_count = u32::from_le_bytes(field(bytes, 8));
        let count = usize::try_from(raw_count)
            .ok()
            .filter(|&n| n <= MAX_REGIONS)
            .ok_or(TableError::BadCount(raw_count))?;
        let mut regions = [Region::default(); MAX_REGIONS];
        for (region, slot) in regions
            .iter_mut()
            .zip(bytes[HEADER_LEN..].chunks_exact(REGION_LEN))
            .take(count)
        {
            *region = Region {
                addr: u64::from_le_bytes(field(slot, 0)),
                len: u64::from_le_bytes(field(slot, 8)),
                sha256: field(slot, 16),
            };
        }
        Self::new(&regions[..count])
    }

    /// Hashes every region through `read(addr, buf)` (which fills `buf` with the bytes at
    /// `addr`, or returns false) and compares; the first region that differs is the error.
    pub fn check(&self, mut read: impl FnMut(u64, &mut [u8]) -> bool) -> Result<(), CheckError> {
        let mut buf = [0u8; READ_CHUNK];
        for (index, region) in self.regions().iter().enumerate() {
            let mut hasher = Sha256::new();
            let mut addr = region.addr;
            let end = region.addr + region.len;
            while addr < end {
                let piece = usize::try_from(end - addr).map_or(READ_CHUNK, |n| n.min(READ_CHUNK));
                if !read(addr, &mut buf[..piece]) {
                    return Err(CheckError::Unreadable { index, addr });
                }
                hasher.update(&buf[..piece]);
                addr += piece as u64;
            }
            let found: [u8; 32] = hasher.finalize().into();
            if found != region.sha256 {
                return Err(CheckError::Mismatch {
                    index,
                    region: *region,
                    found,
                });
            }
        }
        Ok(())
    }
}

/// The region describing `bytes` loaded at `addr`: what the loader records per segment.
pub fn region_of(addr: u64, bytes: &[u8]) -> Region {
    Region {
        addr,
        len: bytes.len() as u64,
        sha256: Sha256::digest(bytes).into(),
    }
}

/// `N` bytes at `at` of a slice whose length the caller checked.
fn field<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    out.copy_from_slice(&bytes[at..at + N]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Memory: (base, bytes) pieces.
    fn reader(memory: &[(u64, Vec<u8>)]) -> impl FnMut(u64, &mut [u8]) -> bool + '_ {
        move |addr, buf| {
            memory.iter().any(|(base, bytes)| {
                let Some(offset) = addr.checked_sub(*base) else {
                    return false;
                };
                let Some(src) = usize::try_from(offset)
                    .ok()
                    .and_then(|o| bytes.get(o..o + buf.len()))
                else {
                    return false;
                };
                buf.copy_from_slice(src);
                true
            })
        }
    }

    fn memory() -> Vec<(u64, Vec<u8>)> {
        vec![
            (
                0x3d00_0000,
                (0..0x9_a000u32).map(|i| (i % 251) as u8).collect(),
            ),
            (0x3d0a_2000, vec![0x11; 0x2000]),
            (0x3eff_f000, vec![0x7f; 0x1000]),
        ]
    }

    fn table_of(memory: &[(u64, Vec<u8>)]) -> DigestTable {
        let regions: Vec<_> = memory.iter().map(|(a, b)| region_of(*a, b)).collect();
        DigestTable::new(&regions).unwrap()
    }

    #[test]
    fn intact_segments_pass() {
        let mem = memory();
        let table = table_of(&mem);
        assert_eq!(table.check(reader(&mem)), Ok(()));
    }

    #[test]
    fn one_flipped_bit_names_its_segment() {
        let mut mem = memory();
        let table = table_of(&mem);
        mem[1].1[0x1234] ^= 0x04;
        match table.check(reader(&mem)) {
            Err(
                e @ CheckError::Mismatch {
                    index: 1, region, ..
                },
            ) => {
                assert_eq!(region.addr, 0x3d0a_2000);
                assert!(
                    e.to_string()
                        .contains("segment 1 at 0x3d0a2000, 8192 bytes"),
                    "{e}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_wrong_stored_digest_is_caught() {
        let mem = memory();
        let mut regions: Vec<_> = table_of(&mem).regions().to_vec();
        regions[2].sha256[31] ^= 1;
        let table = DigestTable::new(&regions).unwrap();
        assert!(matches!(
            table.check(reader(&mem)),
            Err(CheckError::Mismatch { index: 2, .. })
        ));
    }

    #[test]
    fn unreadable_memory_is_an_error() {
        let mem = memory();
        let mut regions: Vec<_> = table_of(&mem).regions().to_vec();
        regions[0].len += 0x1000;
        let table = DigestTable::new(&regions).unwrap();
        assert_eq!(
            table.check(reader(&mem)),
            Err(CheckError::Unreadable {
                index: 0,
                addr: 0x3d09_a000
            })
        );
    }

    #[test]
    fn encoding_round_trips_and_damage_is_refused() {
        let table = table_of(&memory());
        let bytes = table.encode();
        assert_eq!(&bytes[..8], b"MCPURG01");
        assert_eq!(DigestTable::decode(&bytes), Ok(table));
        assert_eq!(
            DigestTable::decode(&bytes[..TABLE_LEN - 1]),
            Err(TableError::TooShort(TABLE_LEN - 1))
        );
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(matches!(
            DigestTable::decode(&bad),
            Err(TableError::BadMagic(_))
        ));
        let mut bad = bytes;
        bad[8] = 16;
        assert_eq!(DigestTable::decode(&bad), Err(TableError::BadCount(16)));
        let mut bad = bytes;
        bad[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert_eq!(
            DigestTable::decode(&bad),
            Err(TableError::RegionOverflow { index: 0 })
        );
        let too_many = [Region::default(); MAX_REGIONS + 1];
        assert_eq!(
            DigestTable::new(&too_many),
            Err(TableError::TooManyRegions(16))
        );
    }
}

//! Read access to the crashed kernel's physical memory.
//!
//! The capture kernel implements [`PhysMem`] over the identity-mapped RAM of the old kernel;
//! host tests implement it with byte buffers ([`SliceMem`], [`MultiMem`]). Parsers such as
//! `minicap-elfcore` only ever see this trait, so they never touch hardware and never need
//! `unsafe`.
//!
//! All address arithmetic is overflow checked: a range whose end does not fit in a `u64` is
//! simply "not readable".

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

mod units;
pub use units::{
    array_at, le_u16, le_u32, le_u64, page_ceil, page_floor, Hex, PAGE_BYTES, PAGE_SIZE,
};

/// A physical address range that could not be read.
///
/// It describes the whole range that was requested (`len` bytes starting at `addr`), not only
/// the first unreadable byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhysMemError {
    /// First physical address of the requested range.
    pub addr: u64,
    /// Length of the requested range in bytes.
    pub len: u64,
}

impl PhysMemError {
    /// Builds the error for a read of `len` bytes at `addr`.
    pub fn new(addr: u64, len: usize) -> Self {
        Self {
            addr,
            len: len_u64(len),
        }
    }

    /// The exclusive end of the range, saturated at `u64::MAX`.
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.len)
    }
}

impl fmt::Display for PhysMemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // End is exclusive; a range that would wrap is shown saturated at u64::MAX.
        write!(
            f,
            "physical range {:#x}-{:#x} is not readable memory",
            self.addr,
            self.end()
        )
    }
}

impl core::error::Error for PhysMemError {}

/// `usize` -> `u64` without a truncating cast (lossless on every supported target).
fn len_u64(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

/// Byte-addressed read access to physical memory.
pub trait PhysMem {
    /// Copies `buf.len()` bytes starting at physical address `paddr` into `buf`.
    ///
    /// Returns an error if any byte of the range is not readable (including a range whose end
    /// would overflow `u64`). On error the contents of `buf` are unspecified. A read of zero
    /// bytes always succeeds.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError>;

    /// Reads one byte at `paddr`.
    fn read_u8(&self, paddr: u64) -> Result<u8, PhysMemError> {
        let mut b = [0u8; 1];
        self.read(paddr, &mut b)?;
        Ok(b[0])
    }

    /// Reads a little-endian `u16` at `paddr` (no alignment required).
    fn read_u16(&self, paddr: u64) -> Result<u16, PhysMemError> {
        let mut b = [0u8; 2];
        self.read(paddr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    /// Reads a little-endian `u32` at `paddr` (no alignment required).
    fn read_u32(&self, paddr: u64) -> Result<u32, PhysMemError> {
        let mut b = [0u8; 4];
        self.read(paddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Reads a little-endian `u64` at `paddr` (no alignment required).
    fn read_u64(&self, paddr: u64) -> Result<u64, PhysMemError> {
        let mut b = [0u8; 8];
        self.read(paddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

impl<T: PhysMem + ?Sized> PhysMem for &T {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        (**self).read(paddr, buf)
    }
}

/// One contiguous region of fake physical memory: `data` is served at `[base, base + data.len())`.
///
/// Meant for host tests and tools; a read must lie entirely inside the region.
#[derive(Debug, Clone, Copy)]
pub struct SliceMem<'a> {
    /// Physical address of `data[0]`.
    pub base: u64,
    /// The region's contents.
    pub data: &'a [u8],
}

impl<'a> SliceMem<'a> {
    /// A region holding `data` at physical address `base`.
    pub fn new(base: u64, data: &'a [u8]) -> Self {
        Self { base, data }
    }

    /// Exclusive end address of the region, or `None` if it would overflow `u64`.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(len_u64(self.data.len()))
    }

    /// Whether the byte at `paddr` belongs to this region.
    pub fn contains(&self, paddr: u64) -> bool {
        self.offset_of(paddr).is_some()
    }

    /// Index into `data` of the byte at `paddr`, if it is inside the region.
    fn offset_of(&self, paddr: u64) -> Option<usize> {
        let off = usize::try_from(paddr.checked_sub(self.base)?).ok()?;
        (off < self.data.len()).then_some(off)
    }
}

impl PhysMem for SliceMem<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        if buf.is_empty() {
            return Ok(());
        }
        let err = PhysMemError::new(paddr, buf.len());
        let start = self.offset_of(paddr).ok_or(err)?;
        let end = start.checked_add(buf.len()).ok_or(err)?;
        let src = self.data.get(start..end).ok_or(err)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

/// Fake physical memory made of several [`SliceMem`] regions (holes in between are unreadable).
///
/// A read may span several regions only if they are exactly adjacent, so that every byte of
/// the range is served by some region. Where regions overlap, the first one listed wins.
#[derive(Debug, Clone, Copy)]
pub struct MultiMem<'a> {
    /// The regions, in lookup order.
    pub regions: &'a [SliceMem<'a>],
}

impl<'a> MultiMem<'a> {
    /// Memory made of `regions`.
    pub fn new(regions: &'a [SliceMem<'a>]) -> Self {
        Self { regions }
    }
}

impl PhysMem for MultiMem<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let err = PhysMemError::new(paddr, buf.len());
        // Reject ranges whose end wraps before copying anything.
        if !buf.is_empty() {
            paddr.checked_add(len_u64(buf.len()) - 1).ok_or(err)?;
        }
        let mut done = 0usize;
        while done < buf.len() {
            let cur = paddr.checked_add(len_u64(done)).ok_or(err)?;
            let (region, off) = self
                .regions
                .iter()
                .find_map(|r| r.offset_of(cur).map(|off| (r, off)))
                .ok_or(err)?;
            let n = (region.data.len() - off).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&region.data[off..off + n]);
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_mem_reads_inside() {
        let data: Vec<u8> = (0u8..32).collect();
        let m = SliceMem::new(0x1000, &data);
        let mut b = [0u8; 4];
        m.read(0x1000, &mut b).unwrap();
        assert_eq!(b, [0, 1, 2, 3]);
        m.read(0x101c, &mut b).unwrap();
        assert_eq!(b, [28, 29, 30, 31]);
        assert_eq!(m.read_u16(0x1001).unwrap(), 0x0201);
        assert_eq!(m.read_u32(0x1004).unwrap(), 0x0706_0504);
        assert_eq!(m.read_u64(0x1008).unwrap(), 0x0f0e_0d0c_0b0a_0908);
        assert_eq!(m.read_u8(0x101f).unwrap(), 31);
        assert_eq!(m.end(), Some(0x1020));
        assert!(m.contains(0x101f));
        assert!(!m.contains(0x1020));
        assert!(!m.contains(0xfff));
    }

    #[test]
    fn slice_mem_rejects_outside() {
        let data = [0u8; 16];
        let m = SliceMem::new(0x1000, &data);
        let mut b = [0u8; 4];
        assert_eq!(
            m.read(0xffe, &mut b),
            Err(PhysMemError {
                addr: 0xffe,
                len: 4
            })
        );
        assert_eq!(
            m.read(0x100d, &mut b),
            Err(PhysMemError {
                addr: 0x100d,
                len: 4
            })
        );
        assert!(m.read(0x2000, &mut b).is_err());
        assert!(m.read_u64(0x1009).is_err());
        // Empty reads always succeed, even outside.
        m.read(0x9999_9999, &mut []).unwrap();
    }

    #[test]
    fn slice_mem_near_top_of_address_space() {
        let data = [7u8; 16];
        let m = SliceMem::new(u64::MAX - 15, &data);
        assert_eq!(m.end(), None);
        assert_eq!(m.read_u8(u64::MAX).unwrap(), 7);
        assert_eq!(m.read_u64(u64::MAX - 7).unwrap(), 0x0707_0707_0707_0707);
        let mut b = [0u8; 2];
        assert!(m.read(u64::MAX, &mut b).is_err());
    }

    #[test]
    fn multi_mem_contiguous_and_holes() {
        let a: Vec<u8> = (0u8..16).collect();
        let b: Vec<u8> = (16u8..32).collect();
        let c = [0xaau8; 8];
        let regions = [
            SliceMem::new(0x1000, &a),
            SliceMem::new(0x1010, &b),
            SliceMem::new(0x3000, &c),
        ];
        let m = MultiMem::new(&regions);
        // Crosses the boundary of two adjacent regions.
        assert_eq!(
            m.read_u32(0x100e).unwrap(),
            u32::from_le_bytes([14, 15, 16, 17])
        );
        let mut all = [0u8; 32];
        m.read(0x1000, &mut all).unwrap();
        assert_eq!(all.to_vec(), (0u8..32).collect::<Vec<_>>());
        // Into a hole.
        let mut buf = [0u8; 4];
        assert_eq!(
            m.read(0x101e, &mut buf),
            Err(PhysMemError {
                addr: 0x101e,
                len: 4
            })
        );
        assert!(m.read(0x2000, &mut buf).is_err());
        assert_eq!(m.read_u64(0x3000).unwrap(), 0xaaaa_aaaa_aaaa_aaaa);
        assert!(m.read_u64(0x3001).is_err());
        // Wrapping range.
        assert!(m.read(u64::MAX, &mut buf).is_err());
    }

    #[test]
    fn multi_mem_overlap_first_wins() {
        let a = [1u8; 8];
        let b = [2u8; 16];
        let regions = [SliceMem::new(0x100, &a), SliceMem::new(0x100, &b)];
        let m = MultiMem::new(&regions);
        let mut buf = [0u8; 12];
        m.read(0x100, &mut buf).unwrap();
        assert_eq!(buf, [1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2]);
    }

    #[test]
    fn reads_through_references_and_dyn() {
        let data = [5u8; 8];
        let m = SliceMem::new(0, &data);
        let d: &dyn PhysMem = &m;
        assert_eq!(d.read_u16(2).unwrap(), 0x0505);
        let r = &d;
        assert_eq!(r.read_u8(7).unwrap(), 5);
    }

    #[test]
    fn error_display() {
        let e = PhysMemError {
            addr: 0x1000,
            len: 0x40,
        };
        assert_eq!(
            e.to_string(),
            "physical range 0x1000-0x1040 is not readable memory"
        );
        let e = PhysMemError {
            addr: u64::MAX,
            len: 2,
        };
        assert_eq!(e.end(), u64::MAX);
    }
}

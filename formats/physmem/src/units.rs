//! The few definitions every parser, the writer and the kernel share: the
//! page size, little-endian field readers and a hex formatter. One copy each,
//! so that no crate grows its own.

use core::fmt;

/// x86_64 page size in bytes (`PAGE_SIZE`): the unit of the vmcore layout,
/// of minicap's memory planning and of its DMA buffers.
pub const PAGE_SIZE: u64 = 4096;
/// [`PAGE_SIZE`] as a `usize`, for buffer lengths.
pub const PAGE_BYTES: usize = 4096;

/// Rounds `n` down to a page boundary.
pub const fn page_floor(n: u64) -> u64 {
    n & !(PAGE_SIZE - 1)
}

/// Rounds `n` up to a page boundary, or `None` when that does not fit in a
/// `u64` (a corrupt size near 2^64 must not wrap to a small one).
pub const fn page_ceil(n: u64) -> Option<u64> {
    match n.checked_add(PAGE_SIZE - 1) {
        Some(v) => Some(page_floor(v)),
        None => None,
    }
}

/// `N` bytes of `bytes` at `offset`, or `None` when they are not all there.
pub fn array_at<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset.checked_add(N)?)?.try_into().ok()
}

/// Little-endian `u16` at `offset` of `bytes`, if the bytes are there.
pub fn le_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    array_at(bytes, offset).map(u16::from_le_bytes)
}

/// Little-endian `u32` at `offset` of `bytes`, if the bytes are there.
pub fn le_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    array_at(bytes, offset).map(u32::from_le_bytes)
}

/// Little-endian `u64` at `offset` of `bytes`, if the bytes are there.
pub fn le_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    array_at(bytes, offset).map(u64::from_le_bytes)
}

/// Bytes shown as lowercase hex digits, two per byte, no separator
/// (`Hex(&[0xde, 0xad])` prints `dead`): SHA-256 sums, device ids.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages() {
        assert_eq!(page_floor(0x1fff), 0x1000);
        assert_eq!(page_ceil(0x1001), Some(0x2000));
        assert_eq!(page_ceil(0x2000), Some(0x2000));
        assert_eq!(page_ceil(u64::MAX - 10), None);
        assert_eq!(page_ceil(u64::MAX - 4095), Some(u64::MAX - 4095));
    }

    #[test]
    fn little_endian_fields() {
        let b = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(le_u16(&b, 0), Some(0x0201));
        assert_eq!(le_u32(&b, 1), Some(0x0504_0302));
        assert_eq!(le_u64(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(le_u64(&b, 2), None);
        assert_eq!(le_u16(&b, 8), None);
        assert_eq!(le_u16(&b, usize::MAX), None);
        assert_eq!(array_at::<3>(&b, 6), Some([7, 8, 9]));
    }

    #[test]
    fn hex() {
        assert_eq!(Hex(&[0x00, 0xab, 0x7f]).to_string(), "00ab7f");
        assert_eq!(Hex(&[]).to_string(), "");
    }
}

//! Little-endian field readers: the one definition every ELF decoder here (and the host tools
//! that read ELF files through this crate) uses.

/// The `N` bytes at `off`, or `None` if `b` ends before `off + N`.
pub fn array_at<const N: usize>(b: &[u8], off: usize) -> Option<[u8; N]> {
    b.get(off..off.checked_add(N)?)?.try_into().ok()
}

/// The `N` bytes at the constant offset `off` of the fixed-size record `b`, for decoders of
/// fixed layouts: their offsets lie inside the record by construction (their tests would see
/// the zeros a wrong one reads), so they need no error path.
pub(crate) fn field<const N: usize, const M: usize>(b: &[u8; M], off: usize) -> [u8; N] {
    array_at(b, off).unwrap_or([0; N])
}

/// The little-endian `u16` at `off`, or `None` if `b` is too short.
pub fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    array_at(b, off).map(u16::from_le_bytes)
}

/// The little-endian `u32` at `off`, or `None` if `b` is too short.
pub fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    array_at(b, off).map(u32::from_le_bytes)
}

/// The little-endian `u64` at `off`, or `None` if `b` is too short.
pub fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    array_at(b, off).map(u64::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_and_refuses_outside() {
        let b = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        assert_eq!(u16_at(&b, 0), Some(0x0201));
        assert_eq!(u32_at(&b, 1), Some(0x0504_0302));
        assert_eq!(u64_at(&b, 1), Some(0x0908_0706_0504_0302));
        assert_eq!(u64_at(&b, 2), None);
        assert_eq!(u16_at(&b, 8), None);
        assert_eq!(u16_at(&b, usize::MAX), None);
        assert_eq!(array_at::<0>(&b, 9), Some([]));
    }
}

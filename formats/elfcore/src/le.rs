//! Little-endian field readers. The one definition lives in `minicap_physmem` (the bottom
//! crate every parser depends on); this module names them the way the ELF decoders and the
//! host tools that read ELF files through this crate use them.

pub use minicap_physmem::{array_at, le_u16 as u16_at, le_u32 as u32_at, le_u64 as u64_at};

/// The `N` bytes at the constant offset `off` of the fixed-size record `b`, for decoders of
/// fixed layouts: their offsets lie inside the record by construction (their tests would see
/// the zeros a wrong one reads), so they need no error path.
pub(crate) fn field<const N: usize, const M: usize>(b: &[u8; M], off: usize) -> [u8; N] {
    array_at(b, off).unwrap_or([0; N])
}

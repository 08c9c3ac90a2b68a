//! Per-page compression (makedumpfile `write_kdump_pages_cyclic()`: each page alone, kept
//! only if it shrinks).
//!
//! | method | header / descriptor flag | state (allocated once) | makedumpfile |
//! |---|---|---|---|
//! | [`NoCompression`] | 0 | none | default |
//! | [`Zlib`] | `DUMP_DH_COMPRESSED_ZLIB` | about 310 KiB | `-c`: `compress2(..., Z_BEST_SPEED)` |
//! | [`Lzo`] | `DUMP_DH_COMPRESSED_LZO` | 8 KiB | `-l`: `lzo1x_1_compress()` |

mod lzo;

use alloc::boxed::Box;

use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush, TDEFLStatus,
};

use crate::header::{DUMP_DH_COMPRESSED_LZO, DUMP_DH_COMPRESSED_ZLIB};
use lzo::Lzo1xEncoder;

/// A page compressor. Each page is compressed on its own, since readers decompress pages
/// independently (crash `uncompress()`es exactly one block).
pub trait PageCompressor {
    /// The `DUMP_DH_COMPRESSED_*` flag of this method (0: none), for the header's `status`
    /// and the descriptors of compressed pages.
    fn flag(&self) -> u32;

    /// Compresses `page` into `out` and returns the compressed length, or `None` if the
    /// result would not be smaller than `page` (the page is then stored raw, as makedumpfile
    /// does).
    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize>;
}

/// A compressor chosen at run time (`minicap.compress=`): `Box<dyn PageCompressor>` is one
/// too, so [`crate::write_kdump`] takes it like a concrete one.
impl<C: PageCompressor + ?Sized> PageCompressor for Box<C> {
    fn flag(&self) -> u32 {
        (**self).flag()
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        (**self).compress(page, out)
    }
}

/// No compression: every page stored raw (descriptor flags 0).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCompression;

impl PageCompressor for NoCompression {
    fn flag(&self) -> u32 {
        0
    }

    fn compress(&mut self, _page: &[u8], _out: &mut [u8]) -> Option<usize> {
        None
    }
}

/// zlib (RFC 1950), level 1 like makedumpfile's `compress2(..., Z_BEST_SPEED)`, through
/// miniz_oxide in `no_std`. The compressor state (about 310 KiB: 32 KiB window, two 64 KiB
/// hash chains, 64 KiB of codes, an 83 KiB output buffer) is allocated once.
pub struct Zlib {
    state: Box<CompressorOxide>,
}

impl Zlib {
    /// zlib level 1 with a zlib header and a 32 KiB window.
    pub fn new() -> Self {
        let flags = create_comp_flags_from_zip_params(1, 15, 0);
        Self {
            state: Box::new(CompressorOxide::new(flags)),
        }
    }
}

impl Default for Zlib {
    fn default() -> Self {
        Self::new()
    }
}

impl PageCompressor for Zlib {
    fn flag(&self) -> u32 {
        DUMP_DH_COMPRESSED_ZLIB
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        self.state.reset();
        // Room for at most page.len() - 1 bytes: anything longer is not worth keeping.
        let limit = out.len().min(page.len().saturating_sub(1));
        let (status, consumed, written) =
            compress(&mut self.state, page, &mut out[..limit], TDEFLFlush::Finish);
        (status == TDEFLStatus::Done && consumed == page.len()).then_some(written)
    }
}

/// LZO1X, encoded like LZO's `lzo1x_1_compress()` (makedumpfile `-l`): a hash probe per
/// position and greedy matches, several times faster than zlib level 1 for a slightly
/// lower ratio. The stream is the one `lzo1x_decompress_safe()` reads (makedumpfile and
/// crash decompress each page with it); the encoder is this crate's own, in safe Rust, as
/// the no_std LZO crates are either GPL-licensed or slower than zlib. Its state, a table of
/// 4096 `u16` positions (8 KiB), is allocated once and cleared for each page so that a page
/// always compresses to the same bytes.
pub struct Lzo {
    encoder: Box<Lzo1xEncoder>,
}

impl Lzo {
    /// An LZO1X compressor with its table on the heap.
    pub fn new() -> Self {
        Self {
            encoder: Box::new(Lzo1xEncoder::new()),
        }
    }

    /// Bytes of state this compressor holds.
    pub const STATE_BYTES: usize = Lzo1xEncoder::STATE_BYTES;
}

impl Default for Lzo {
    fn default() -> Self {
        Self::new()
    }
}

impl PageCompressor for Lzo {
    fn flag(&self) -> u32 {
        DUMP_DH_COMPRESSED_LZO
    }

    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // As for zlib: a result of page.len() bytes or more is not worth keeping.
        let limit = out.len().min(page.len().saturating_sub(1));
        self.encoder.encode(page, &mut out[..limit])
    }
}

//! makedumpfile's flattened format (`makedumpfile -F`), for sinks that can only append
//! (a serial line, a pipe): every write becomes a record that says where its bytes go, and
//! `makedumpfile -R` (or crash, directly) rebuilds the seekable file.
//!
//! Layout (makedumpfile `write_start_flat_header()`, `write_buffer()`,
//! `write_end_flat_header()`): a 4096-byte header holding the signature `"makedumpfile"`
//! (NUL padded to 16 bytes), then big-endian `i64` type 1 and `i64` version 1, zeros to the
//! end; then any number of records `{ i64 offset; i64 size; size bytes }`, big-endian
//! numbers; then the end mark, offset and size both -1.

use crate::Sink;

/// Size of the flattened header.
pub const FLAT_HEADER_SIZE: usize = 4096;
const SIGNATURE: &[u8] = b"makedumpfile";
const TYPE_FLAT_HEADER: i64 = 1;
const VERSION_FLAT_HEADER: i64 = 1;
const END_FLAG: i64 = -1;

/// A sink that can only append.
pub trait Stream {
    /// The stream's error.
    type Error;
    /// Appends `bytes`.
    fn append(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// Turns a [`Stream`] into a [`Sink`] producing the flattened format.
pub struct Flattened<W> {
    stream: W,
}

impl<W: Stream> Flattened<W> {
    /// Writes the flattened header to `stream`.
    pub fn start(mut stream: W) -> Result<Self, W::Error> {
        let mut header = [0u8; FLAT_HEADER_SIZE];
        header[..SIGNATURE.len()].copy_from_slice(SIGNATURE);
        header[16..24].copy_from_slice(&TYPE_FLAT_HEADER.to_be_bytes());
        header[24..32].copy_from_slice(&VERSION_FLAT_HEADER.to_be_bytes());
        stream.append(&header)?;
        Ok(Self { stream })
    }

    /// Writes the end mark and gives the stream back.
    pub fn finish(mut self) -> Result<W, W::Error> {
        let mut end = [0u8; 16];
        end[..8].copy_from_slice(&END_FLAG.to_be_bytes());
        end[8..].copy_from_slice(&END_FLAG.to_be_bytes());
        self.stream.append(&end)?;
        Ok(self.stream)
    }
}

impl<W: Stream> Sink for Flattened<W> {
    type Error = W::Error;

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), W::Error> {
        // File offsets and block lengths are far below i64::MAX.
        let mut record = [0u8; 16];
        record[..8].copy_from_slice(&offset.to_be_bytes());
        record[8..].copy_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.stream.append(&record)?;
        self.stream.append(bytes)
    }
}

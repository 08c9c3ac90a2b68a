//! Where everything goes in the file (makedumpfile `write_kdump_header()` and
//! `prepare_bitmap2_buffer()`).

use crate::header::{PAGE_DESC_SIZE, SUB_HEADER_SIZE};
use crate::KdumpError;

/// Block size of the file: the page size, as makedumpfile writes it on x86_64.
pub const BLOCK_SIZE: u64 = 4096;

/// The file layout, fixed before any page is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Page frames covered by the bitmaps: the highest RAM end, in pages, rounded up.
    pub max_mapnr: u64,
    /// Blocks holding the sub header and the ELF notes.
    pub sub_hdr_blocks: u64,
    /// Bytes of one bitmap: `ceil(max_mapnr / 8)` rounded up to a block (crash wants each
    /// bitmap block aligned).
    pub bitmap_bytes: u64,
    /// Page descriptors reserved: at least the number of pages that will be dumped.
    pub desc_slots: u64,
}

impl Layout {
    /// The layout for `max_mapnr` page frames, `notes_len` bytes of ELF notes and
    /// `desc_slots` page descriptors.
    pub fn new<E>(max_mapnr: u64, notes_len: u64, desc_slots: u64) -> Result<Self, KdumpError<E>> {
        let sub = (SUB_HEADER_SIZE as u64)
            .checked_add(notes_len)
            .ok_or(KdumpError::TooLarge)?;
        let layout = Self {
            max_mapnr,
            sub_hdr_blocks: sub.div_ceil(BLOCK_SIZE),
            bitmap_bytes: max_mapnr.div_ceil(8).div_ceil(BLOCK_SIZE) * BLOCK_SIZE,
            desc_slots,
        };
        // Header fields are 32-bit; the end of the file must fit a u64 with room to spare.
        if u32::try_from(layout.sub_hdr_blocks).is_err()
            || u32::try_from(layout.bitmap_blocks()).is_err()
            || desc_slots > (1 << 50)
        {
            return Err(KdumpError::TooLarge);
        }
        Ok(layout)
    }

    /// File offset of `kdump_sub_header`.
    pub fn sub_header_offset(&self) -> u64 {
        BLOCK_SIZE
    }

    /// File offset of the ELF notes (right after the sub header).
    pub fn notes_offset(&self) -> u64 {
        BLOCK_SIZE + SUB_HEADER_SIZE as u64
    }

    /// `bitmap_blocks` of the header: both bitmaps, in blocks.
    pub fn bitmap_blocks(&self) -> u64 {
        2 * self.bitmap_bytes / BLOCK_SIZE
    }

    /// File offset of the first bitmap ("page is RAM").
    pub fn bitmap1_offset(&self) -> u64 {
        BLOCK_SIZE * (1 + self.sub_hdr_blocks)
    }

    /// File offset of the second bitmap ("page is dumped").
    pub fn bitmap2_offset(&self) -> u64 {
        self.bitmap1_offset() + self.bitmap_bytes
    }

    /// File offset of the page descriptor table (`data_offset` of the readers).
    pub fn desc_offset(&self) -> u64 {
        self.bitmap1_offset() + 2 * self.bitmap_bytes
    }

    /// File offset of page descriptor `index`.
    pub fn desc_at(&self, index: u64) -> u64 {
        self.desc_offset() + PAGE_DESC_SIZE as u64 * index
    }

    /// File offset where page data starts: after the descriptor slots, block aligned.
    pub fn page_data_offset(&self) -> u64 {
        self.desc_at(self.desc_slots).div_ceil(BLOCK_SIZE) * BLOCK_SIZE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_follow_makedumpfile() {
        // 1 GiB + a bit: 262400 frames -> 32800 bytes -> 9 blocks per bitmap.
        let l = Layout::new::<()>(262_400, 5000, 1000).unwrap();
        assert_eq!(l.sub_hdr_blocks, 2); // 104 + 5000 bytes
        assert_eq!(l.bitmap_bytes, 9 * 4096);
        assert_eq!(l.bitmap_blocks(), 18);
        assert_eq!(l.notes_offset(), 4200);
        assert_eq!(l.bitmap1_offset(), 3 * 4096);
        assert_eq!(l.bitmap2_offset(), 12 * 4096);
        assert_eq!(l.desc_offset(), 21 * 4096);
        assert_eq!(l.desc_at(2), 21 * 4096 + 48);
        assert_eq!(
            l.page_data_offset(),
            21 * 4096 + 24_000_usize.div_ceil(4096) as u64 * 4096
        );
        // No notes still takes one block for the sub header.
        assert_eq!(Layout::new::<()>(8, 0, 0).unwrap().sub_hdr_blocks, 1);
        assert!(matches!(
            Layout::new::<()>(u64::MAX, 0, 0),
            Err(KdumpError::TooLarge)
        ));
    }
}

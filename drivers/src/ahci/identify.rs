//! The IDENTIFY DEVICE data of an ATA disk (ATA8-ACS §7.16; the words as
//! Linux `include/linux/ata.h` reads them: `ata_id_has_lba48`,
//! `ata_id_n_sectors`, `ata_id_logical_sector_size`,
//! `ata_id_has_flush_ext`). It comes from the device, so every field used
//! is checked.

use core::fmt;

/// Words of IDENTIFY data.
pub const WORDS: usize = 256;

/// What minicap needs to know about a disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Logical sectors (LBA48 capacity, words 100-103).
    pub sectors: u64,
    /// Logical sector size in bytes.
    pub sector_size: u32,
    /// FLUSH CACHE EXT is supported (else FLUSH CACHE).
    pub flush_ext: bool,
    /// The volatile write cache is on (word 85 bit 5): without it a
    /// completed write is already durable, but minicap flushes anyway.
    pub write_cache: bool,
    /// Model number (words 27-46), ASCII, trailing spaces removed.
    model: [u8; 40],
    model_len: usize,
}

/// Why IDENTIFY data is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdentifyError {
    /// Word 255 carries the 0xA5 signature but the bytes do not sum to 0.
    BadChecksum,
    /// The disk does not do 48-bit addressing (words 83/86 bit 10).
    NoLba48,
    /// Capacity 0.
    Empty,
    /// A logical sector size that is not a power of two in 512..=4096.
    SectorSize(u32),
}

impl fmt::Display for IdentifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BadChecksum => write!(f, "IDENTIFY data fails its checksum"),
            Self::NoLba48 => write!(f, "disk lacks 48-bit addressing"),
            Self::Empty => write!(f, "disk reports no sectors"),
            Self::SectorSize(s) => write!(
                f,
                "logical sector size {s} is not supported (512 to {MAX_SECTOR})"
            ),
        }
    }
}

/// Largest logical sector size supported: minicap writes in 4 KiB units.
pub const MAX_SECTOR: u32 = 4096;

/// A command-set word is meaningful only if bits 15:14 are 01b.
fn valid(word: u16) -> bool {
    word & 0xc000 == 0x4000
}

impl Identity {
    /// Decode 512 bytes of IDENTIFY DEVICE data (little-endian words).
    pub fn parse(bytes: &[u8; WORDS * 2]) -> Result<Self, IdentifyError> {
        let word = |i: usize| u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]);
        // Word 255: 7:0 = 0xA5 says 15:8 is a checksum making all 512
        // bytes sum to 0 (mod 256).
        if word(255) & 0xff == 0xa5 && bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)) != 0 {
            return Err(IdentifyError::BadChecksum);
        }
        // LBA48: word 83 (command sets supported) bit 10, as Linux
        // `ata_id_has_lba48` reads it.
        let w83 = word(83);
        if !valid(w83) || w83 & (1 << 10) == 0 {
            return Err(IdentifyError::NoLba48);
        }
        let sectors = (0..4).fold(0u64, |acc, i| acc | u64::from(word(100 + i)) << (16 * i));
        if sectors == 0 {
            return Err(IdentifyError::Empty);
        }
        // Word 106: bit 12 = logical sectors longer than 256 words, whose
        // length (in words) is in 117-118.
        let w106 = word(106);
        let sector_size = if valid(w106) && w106 & (1 << 12) != 0 {
            (u32::from(word(117)) | u32::from(word(118)) << 16).saturating_mul(2)
        } else {
            512
        };
        if !sector_size.is_power_of_two() || !(512..=MAX_SECTOR).contains(&sector_size) {
            return Err(IdentifyError::SectorSize(sector_size));
        }
        let w85 = word(85);
        let w86 = word(86);
        let mut model = [0u8; 40];
        for i in 0..20 {
            // Each word holds two characters, the first in the high byte.
            let [low, high] = word(27 + i).to_le_bytes();
            model[2 * i] = printable(high);
            model[2 * i + 1] = printable(low);
        }
        let model_len = model.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
        Ok(Self {
            sectors,
            sector_size,
            // Word 86 bit 13: FLUSH CACHE EXT supported (and enabled).
            flush_ext: w83 & (1 << 13) != 0 || w86 & (1 << 13) != 0,
            write_cache: w85 & (1 << 5) != 0,
            model,
            model_len,
        })
    }

    /// An empty identity, until IDENTIFY DEVICE has answered.
    pub(super) const fn blank() -> Self {
        Self {
            sectors: 0,
            sector_size: 512,
            flush_ext: false,
            write_cache: false,
            model: [b' '; 40],
            model_len: 0,
        }
    }

    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.sectors.saturating_mul(u64::from(self.sector_size))
    }

    /// The model number as the disk reports it.
    pub fn model(&self) -> &str {
        // Only printable ASCII is kept, so this cannot fail.
        core::str::from_utf8(&self.model[..self.model_len]).unwrap_or("")
    }
}

/// `c` if it is printable ASCII, else '?'.
fn printable(c: u8) -> u8 {
    if c.is_ascii_graphic() || c == b' ' {
        c
    } else {
        b'?'
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(words: &[(usize, u16)]) -> [u8; 512] {
        let mut b = [0u8; 512];
        for &(i, w) in words {
            b[2 * i..2 * i + 2].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    const LBA48: (usize, u16) = (83, 0x4000 | 1 << 10 | 1 << 13);

    #[test]
    fn capacity_and_default_sector_size() {
        let b = data(&[
            LBA48,
            (100, 0x5678),
            (101, 0x1234),
            (102, 0x9),
            (85, 1 << 5),
        ]);
        let id = Identity::parse(&b).unwrap();
        assert_eq!(id.sectors, 0x9_1234_5678);
        assert_eq!(id.sector_size, 512);
        assert!(id.flush_ext && id.write_cache);
    }

    #[test]
    fn logical_sector_size_from_words_117_118() {
        let b = data(&[LBA48, (100, 8), (106, 0x5000), (117, 2048)]);
        assert_eq!(Identity::parse(&b).unwrap().sector_size, 4096);
        // Bit 12 without the 01b validity pattern: 512.
        let b = data(&[LBA48, (100, 8), (106, 0x1000), (117, 2048)]);
        assert_eq!(Identity::parse(&b).unwrap().sector_size, 512);
        let b = data(&[LBA48, (100, 8), (106, 0x5000), (117, 4096)]);
        assert_eq!(Identity::parse(&b), Err(IdentifyError::SectorSize(8192)));
    }

    #[test]
    fn refusals() {
        assert_eq!(
            Identity::parse(&data(&[(100, 8)])),
            Err(IdentifyError::NoLba48)
        );
        assert_eq!(Identity::parse(&data(&[LBA48])), Err(IdentifyError::Empty));
        let mut b = data(&[LBA48, (100, 8), (255, 0x00a5)]);
        assert_eq!(Identity::parse(&b), Err(IdentifyError::BadChecksum));
        let sum = b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        b[511] = 0u8.wrapping_sub(sum);
        assert!(Identity::parse(&b).is_ok());
    }

    #[test]
    fn model_is_byte_swapped_and_trimmed() {
        let mut words = vec![LBA48, (100, 8)];
        let name = b"QEMU HARDDISK                           ";
        for i in 0..20 {
            words.push((27 + i, u16::from_be_bytes([name[2 * i], name[2 * i + 1]])));
        }
        assert_eq!(
            Identity::parse(&data(&words)).unwrap().model(),
            "QEMU HARDDISK"
        );
    }
}

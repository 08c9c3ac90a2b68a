//! CRC-32 of IEEE 802.3 (reflected polynomial 0xEDB88320, initial value and final XOR all
//! ones): zlib's `crc32()`, so `python3 -c 'import zlib'` checks a frame by hand.

const POLY: u32 = 0xEDB8_8320;

/// One entry per byte value, built at compile time.
#[allow(clippy::cast_possible_truncation)] // i < 256
const TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// The CRC-32 of the concatenation of `parts`.
pub fn crc32(parts: &[&[u8]]) -> u32 {
    let mut crc = !0u32;
    for part in parts {
        for &b in *part {
            crc = TABLE[usize::from(crc.to_le_bytes()[0] ^ b)] ^ (crc >> 8);
        }
    }
    !crc
}

//! LZO1X encoding of one page, in the manner of LZO's `lzo1x_1_compress()` (the method of
//! makedumpfile `-l`): one hash probe per position, greedy matches, no search chains.
//!
//! # The LZO1X stream (what `lzo1x_decompress_safe()` accepts)
//!
//! A stream alternates literal runs and back-references ("matches"); it ends with the
//! three bytes `11 00 00`. The encoder emits only these instructions (`D` = distance - 1,
//! `L` = length):
//!
//! | instruction | bytes | when |
//! |---|---|---|
//! | first literal run | `17 + L` | `L` <= 238, at the very start |
//! | literal run | `L - 3` | 4 <= `L` <= 18 |
//! | long literal run | `00`, `00` × k, `r` with `L - 18 = 255·k + r`, `r` > 0 | `L` > 18 |
//! | short literal run | no byte: `L` goes in the low 2 bits of the byte two back | 1 <= `L` <= 3, after a match |
//! | M2 match | `(L-1)<<5 \| (D&7)<<2`, `D>>3` | 3 <= `L` <= 8, distance <= 2048 |
//! | M3 match | `0x20 \| (L-2)`, then `D<<2` little-endian in 2 bytes | `L` <= 33, distance <= 16384 |
//! | long M3 match | `0x20`, `00` × k, `r` with `L - 33 = 255·k + r`, then `D<<2` | `L` > 33 |
//!
//! A literal run is always followed by a match or the end, never by another run, so the
//! decoder's state after a run (which changes what bytes below 16 mean) never meets an
//! instruction this encoder does not emit. Matches are at least 4 bytes long and, within a
//! page, at most 4095 bytes back, so the M1 and M4 forms are never needed.

/// log2 of the hash table's entries: 4096 entries of `u16` (8 KiB) for 4 KiB pages.
const HASH_BITS: u32 = 12;
const HASH_ENTRIES: usize = 1 << HASH_BITS;

/// Shortest match looked for: the hash covers 4 bytes.
const MIN_MATCH: usize = 4;
/// The M2 form's limits.
const M2_MAX_LEN: usize = 8;
const M2_MAX_DISTANCE: usize = 0x800;
/// The M3 form's limits (the farthest this encoder refers back).
const M3_MAX_LEN: usize = 33;
const M3_MAX_DISTANCE: usize = 0x4000;
const M3_MARKER: u8 = 0x20;
/// The longest first literal run that fits the `17 + L` form.
const FIRST_RUN_MAX: usize = 238;
/// The end-of-stream instruction (an M4 match of distance 0).
const END_OF_STREAM: [u8; 3] = [0x11, 0x00, 0x00];

/// The longest input: hash table entries hold `position + 1` in a `u16`.
pub const MAX_INPUT: usize = u16::MAX as usize;

/// The encoder's only state: the last position seen for each hash of 4 bytes.
pub struct Lzo1xEncoder {
    /// `position + 1` of the last 4 bytes with this hash; 0 = none yet.
    last_seen: [u16; HASH_ENTRIES],
}

impl Lzo1xEncoder {
    /// An encoder with an empty table.
    pub const fn new() -> Self {
        Self {
            last_seen: [0; HASH_ENTRIES],
        }
    }

    /// Size of the state in bytes (for the memory budget).
    pub const STATE_BYTES: usize = HASH_ENTRIES * 2;

    /// Encodes `src` as one LZO1X stream into `out`; `None` if it does not fit `out` or
    /// `src` is longer than [`MAX_INPUT`]. The same input always gives the same output.
    pub fn encode(&mut self, src: &[u8], out: &mut [u8]) -> Option<usize> {
        if src.len() > MAX_INPUT {
            return None;
        }
        self.last_seen.fill(0);
        let mut w = Writer { out, len: 0 };
        let mut anchor = 0; // first byte not yet emitted
        let mut pos = 0;
        while pos + MIN_MATCH <= src.len() {
            let Some(candidate) = self.probe(src, pos) else {
                // Step faster through data that does not compress, as lzo1x_1 does: one
                // more byte skipped per 32 bytes of pending literals.
                pos += 1 + ((pos - anchor) >> 5);
                continue;
            };
            let (mut start, mut from) = (pos, candidate);
            // Grow the match backwards into the pending literals, then forwards.
            while start > anchor && from > 0 && src[start - 1] == src[from - 1] {
                start -= 1;
                from -= 1;
            }
            let mut end = pos + MIN_MATCH;
            while end < src.len() && src[end] == src[from + (end - start)] {
                end += 1;
            }
            w.literals(&src[anchor..start])?;
            w.matched(end - start, start - from)?;
            pos = end;
            anchor = end;
        }
        w.literals(&src[anchor..])?;
        w.bytes(&END_OF_STREAM)?;
        Some(w.len)
    }

    /// Records `pos` under the hash of its 4 bytes and returns the previous position with
    /// the same 4 bytes, if it is close enough to refer to.
    fn probe(&mut self, src: &[u8], pos: usize) -> Option<usize> {
        let word = |at: usize| u32::from_le_bytes([src[at], src[at + 1], src[at + 2], src[at + 3]]);
        let here = word(pos);
        // Multiplicative hash (Knuth): the top bits mix all four bytes.
        let slot = (here.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)) as usize;
        let previous = usize::from(self.last_seen[slot]);
        // pos < MAX_INPUT, checked by `encode`.
        self.last_seen[slot] = u16::try_from(pos + 1).unwrap_or(0);
        let candidate = previous.checked_sub(1)?;
        (pos - candidate <= M3_MAX_DISTANCE && word(candidate) == here).then_some(candidate)
    }
}

impl Default for Lzo1xEncoder {
    fn default() -> Self {
        Self::new()
    }
}

/// The output cursor: every write is bounded by `out`.
struct Writer<'a> {
    out: &'a mut [u8],
    len: usize,
}

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) -> Option<()> {
        let end = self.len.checked_add(bytes.len())?;
        self.out.get_mut(self.len..end)?.copy_from_slice(bytes);
        self.len = end;
        Some(())
    }

    fn byte(&mut self, byte: u8) -> Option<()> {
        self.bytes(&[byte])
    }

    /// `count` as `00` × k then `r` (`count = 255·k + r`, `r` > 0): the extension of a
    /// length field that was left 0.
    fn long_count(&mut self, mut count: usize) -> Option<()> {
        while count > 255 {
            self.byte(0)?;
            count -= 255;
        }
        self.byte(u8::try_from(count).ok()?)
    }

    /// A literal run (nothing if empty).
    fn literals(&mut self, run: &[u8]) -> Option<()> {
        let n = run.len();
        if n == 0 {
            return Some(());
        }
        if self.len == 0 && n <= FIRST_RUN_MAX {
            self.byte(u8::try_from(17 + n).ok()?)?;
        } else if n <= 3 {
            // After a match (a stream never starts with one): its byte two back has the
            // 2 low bits free for this count.
            let at = self.len.checked_sub(2)?;
            self.out[at] |= u8::try_from(n).ok()?;
        } else if n <= 18 {
            self.byte(u8::try_from(n - 3).ok()?)?;
        } else {
            self.byte(0)?;
            self.long_count(n - 18)?;
        }
        self.bytes(run)
    }

    /// A match of `len` (>= 4) bytes `distance` (1..=16384) back.
    fn matched(&mut self, len: usize, distance: usize) -> Option<()> {
        let d = distance - 1;
        if len <= M2_MAX_LEN && distance <= M2_MAX_DISTANCE {
            let first = u8::try_from((len - 1) << 5 | (d & 7) << 2).ok()?;
            return self.bytes(&[first, u8::try_from(d >> 3).ok()?]);
        }
        if len <= M3_MAX_LEN {
            self.byte(M3_MARKER | u8::try_from(len - 2).ok()?)?;
        } else {
            self.byte(M3_MARKER)?;
            self.long_count(len - M3_MAX_LEN)?;
        }
        let field = u16::try_from(d << 2).ok()?;
        self.bytes(&field.to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(src: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; src.len() + src.len() / 16 + 64];
        let n = Lzo1xEncoder::new().encode(src, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn empty_input_is_the_end_marker_alone() {
        assert_eq!(encode(&[]), END_OF_STREAM);
    }

    #[test]
    fn short_input_is_one_first_literal_run() {
        assert_eq!(encode(b"abc"), [20, b'a', b'b', b'c', 0x11, 0, 0]);
    }

    #[test]
    fn a_repeat_becomes_an_m2_match_with_trailing_literals_in_its_low_bits() {
        // "abcd" then "abcd" again (distance 4, length 4) then "xy".
        let out = encode(b"abcdabcdxy");
        // 17+4, literals, M2 (L-1=3, D=3) with 2 trailing literals, literals, end.
        assert_eq!(
            out,
            [
                21,
                b'a',
                b'b',
                b'c',
                b'd',
                3 << 5 | 3 << 2 | 2,
                0,
                b'x',
                b'y',
                0x11,
                0,
                0
            ]
        );
    }

    /// Bytes without a repeated 4-byte string (a 64-bit LCG's top byte).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                x.to_le_bytes()[7]
            })
            .collect()
    }

    #[test]
    fn a_long_repeat_after_a_long_first_run_becomes_a_long_m3_match() {
        let mut src = noise(300, 1);
        let repeated = src[..100].to_vec();
        src.extend_from_slice(&repeated);
        let out = encode(&src);
        // 300 literals > 238: 00, then 300 - 18 = 255 + 27 as 00 27, then the bytes.
        assert_eq!(out[..3], [0, 0, 27]);
        assert_eq!(out[3..303], src[..300]);
        // Length 100 > 33: 0x20, 100 - 33; then (300 - 1) << 2 little-endian; the end.
        assert_eq!(out[303..305], [0x20, 67]);
        assert_eq!(out[305..307], (299u16 << 2).to_le_bytes());
        assert_eq!(out[307..], END_OF_STREAM);
    }

    #[test]
    fn output_that_does_not_fit_is_refused() {
        let src = noise(4096, 2);
        let mut out = vec![0u8; 4095];
        assert_eq!(Lzo1xEncoder::new().encode(&src, &mut out), None);
        assert_eq!(
            Lzo1xEncoder::new().encode(&[0; MAX_INPUT + 1], &mut out),
            None
        );
    }

    #[test]
    fn same_input_same_output_whatever_came_before() {
        let mut enc = Lzo1xEncoder::new();
        let page: Vec<u8> = (0..4096u32).map(|i| (i % 97) as u8).collect();
        let mut a = vec![0u8; 8192];
        let mut b = vec![0u8; 8192];
        let n = enc.encode(&page, &mut a).unwrap();
        enc.encode(&[7; 4096], &mut b).unwrap();
        assert_eq!(enc.encode(&page, &mut b), Some(n));
        assert_eq!(a[..n], b[..n]);
    }
}

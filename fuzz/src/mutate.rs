//! Byte-level mutations of one input, in the spirit of AFL's havoc stage: bit flips, random
//! bytes, "interesting" integers written over fields, small arithmetic on fields, inserts,
//! deletes, copies within the input, splices from another corpus entry, and the target's
//! dictionary of magic values and keys.

use crate::rng::Rng;

/// Values that sit on the edges parsers get wrong: zero, one, sign and width boundaries, page
/// and header sizes.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    4,
    7,
    8,
    12,
    16,
    20,
    55,
    56,
    63,
    64,
    0x7f,
    0x80,
    0xff,
    0x100,
    511,
    512,
    4095,
    4096,
    4097,
    0x7fff,
    0x8000,
    0xffff,
    0x1_0000,
    0x10_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fff0,
    0xffff_ffff,
    0x1_0000_0000,
    0x7fff_ffff_ffff_ffff,
    0x8000_0000_0000_0000,
    0xffff_8880_0000_0000,
    0xffff_ffff_8000_0000,
    0xffff_ffff_ffff_f000,
    u64::MAX - 1,
    u64::MAX,
];

/// Applies one to eight stacked mutations to `data`, keeping it at most `max_len` bytes.
/// `others` supplies splice material; `dictionary` the target's tokens.
pub fn mutate(
    rng: &mut Rng,
    data: &mut Vec<u8>,
    others: &[Vec<u8>],
    dictionary: &[&[u8]],
    max_len: usize,
) {
    let rounds = 1 << rng.below(4);
    for _ in 0..rounds {
        mutate_once(rng, data, others, dictionary);
    }
    data.truncate(max_len);
}

fn mutate_once(rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>], dictionary: &[&[u8]]) {
    if data.is_empty() {
        let n = 1 + rng.below(16);
        data.extend((0..n).map(|_| random_byte(rng)));
        return;
    }
    let len = data.len();
    match rng.below(12) {
        0 => {
            let at = rng.below(len);
            data[at] ^= 1 << rng.below(8);
        }
        1 => {
            let at = rng.below(len);
            data[at] = random_byte(rng);
        }
        2 | 3 => {
            let value = INTERESTING[rng.below(INTERESTING.len())];
            write_int(rng, data, value);
        }
        4 => {
            let width = [1, 2, 4, 8][rng.below(4)];
            let at = rng.below(len);
            let mut field = [0u8; 8];
            let n = width.min(len - at);
            field[..n].copy_from_slice(&data[at..at + n]);
            let delta = 1 + rng.below(35) as u64;
            let value = if rng.one_in(2) {
                u64::from_le_bytes(field).wrapping_add(delta)
            } else {
                u64::from_le_bytes(field).wrapping_sub(delta)
            };
            data[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
        }
        5 => {
            let at = rng.below(len + 1);
            let most = if rng.one_in(8) { 512 } else { 16 };
            let n = 1 + rng.below(most);
            let fill: Vec<u8> = if rng.one_in(2) {
                vec![random_byte(rng); n]
            } else {
                (0..n).map(|_| random_byte(rng)).collect()
            };
            data.splice(at..at, fill);
        }
        6 => {
            let at = rng.below(len);
            let most = if rng.one_in(8) { 4096 } else { 16 };
            let n = 1 + rng.below((len - at).min(most));
            data.drain(at..at + n);
        }
        7 => {
            // Copy a range elsewhere in the input: repeats records and headers.
            let from = rng.below(len);
            let n = 1 + rng.below((len - from).min(256));
            let chunk = data[from..from + n].to_vec();
            let to = rng.below(len + 1);
            if rng.one_in(2) {
                data.splice(to..to, chunk);
            } else {
                let end = (to + n).min(len);
                data.splice(to..end, chunk);
            }
        }
        8 => splice(rng, data, others),
        9 | 10 if !dictionary.is_empty() => {
            let token = dictionary[rng.below(dictionary.len())];
            let at = rng.below(len + 1);
            if rng.one_in(2) {
                data.splice(at..at, token.iter().copied());
            } else {
                let end = (at + token.len()).min(len);
                data.splice(at..end, token.iter().copied());
            }
        }
        _ => {
            let keep = rng.below(len);
            data.truncate(keep.max(1));
        }
    }
}

fn random_byte(rng: &mut Rng) -> u8 {
    rng.next_u64().to_le_bytes()[0]
}

/// Writes `value` (or its negation, or its byte swap) as a 1-, 2-, 4- or 8-byte field.
fn write_int(rng: &mut Rng, data: &mut [u8], value: u64) {
    let width = [1, 2, 4, 8][rng.below(4)];
    let value = match rng.below(4) {
        0 => value.wrapping_neg(),
        1 => value.swap_bytes() >> (64 - 8 * width),
        _ => value,
    };
    let at = rng.below(data.len());
    let n = width.min(data.len() - at);
    data[at..at + n].copy_from_slice(&value.to_le_bytes()[..n]);
}

/// Joins a prefix of `data` to a suffix of another corpus entry, or drops a slice of one into
/// the middle.
fn splice(rng: &mut Rng, data: &mut Vec<u8>, others: &[Vec<u8>]) {
    let Some(other) = others.get(rng.below(others.len())) else {
        return;
    };
    if other.is_empty() {
        return;
    }
    let from = rng.below(other.len());
    if rng.one_in(2) {
        let cut = rng.below(data.len() + 1);
        data.truncate(cut);
        data.extend_from_slice(&other[from..]);
    } else {
        let n = 1 + rng.below((other.len() - from).min(512));
        let at = rng.below(data.len() + 1);
        data.splice(at..at, other[from..from + n].iter().copied());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_change_inputs_and_respect_the_length_bound() {
        let mut rng = Rng::new(1);
        let seed = b"minicap.target=serial elfcorehdr=0x1000".to_vec();
        let others = vec![vec![0xaa; 64]];
        let mut changed = 0;
        for _ in 0..2000 {
            let mut input = seed.clone();
            mutate(&mut rng, &mut input, &others, &[b"MAGIC"], 48);
            assert!(input.len() <= 48);
            changed += usize::from(input != seed);
        }
        // Nearly every mutation changes something; a few (truncate to the same length,
        // a write of the bytes already there) may not.
        assert!(changed > 1800, "only {changed} of 2000 inputs changed");
    }

    #[test]
    fn an_empty_input_grows() {
        let mut rng = Rng::new(2);
        let mut input = Vec::new();
        mutate(&mut rng, &mut input, &[], &[], 100);
        assert!(!input.is_empty());
    }
}

//! `checksum-bench [--mib N] [--passes P]`: how fast each checksum candidate hashes a buffer
//! in 1 MiB chunks, on this CPU or under `qemu-x86_64` (`cargo xtask checksum-bench` runs it
//! both ways and prints a table).
//!
//! Prints one line per algorithm, `NAME<TAB>MiB/s` (best of the passes) or `NAME<TAB>n/a` when
//! the CPU lacks what it needs, and nothing else on stdout.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use sha2::{Digest, Sha256};

const CHUNK: usize = 1 << 20;

/// One candidate: its name and a function of one chunk (its result is folded into a value
/// that is printed to stderr, so the work cannot be optimised away).
struct Candidate {
    name: &'static str,
    hash: Option<fn(&[u8]) -> u64>,
}

fn candidates() -> [Candidate; 6] {
    [
        Candidate {
            name: "sha256",
            hash: Some(|c| {
                let digest = Sha256::digest(c);
                u64::from_le_bytes(digest[..8].try_into().expect("32-byte digest"))
            }),
        },
        Candidate {
            name: "xxh64",
            hash: Some(|c| xxhash_rust::xxh64::xxh64(c, 0)),
        },
        Candidate {
            name: "xxh64-chunkhasher",
            hash: Some(chunk_hasher),
        },
        Candidate {
            name: "xxh3",
            hash: Some(xxhash_rust::xxh3::xxh3_64),
        },
        Candidate {
            name: "crc32",
            hash: Some(|c| u64::from(crc32fast::hash(c))),
        },
        Candidate {
            name: "crc32c-sse4.2",
            hash: sse42_crc32c(),
        },
    ]
}

/// The streaming hasher the capture kernel uses, fed in 64 KiB pieces as a writer would.
fn chunk_hasher(c: &[u8]) -> u64 {
    let len = u64::try_from(c.len()).expect("usize fits u64");
    let mut hasher = minicap_chunksum::ChunkHasher::new(len);
    let mut out = 0;
    for piece in c.chunks(64 << 10) {
        hasher
            .update(piece, |_, v| out ^= v)
            .expect("exactly the chunk's bytes");
    }
    out
}

/// CRC32C with the SSE4.2 `crc32` instruction (the `crc32c` crate, which
/// uses it when this CPU has it), measured only where the CPU has it so the
/// row means what it says.
fn sse42_crc32c() -> Option<fn(&[u8]) -> u64> {
    if !std::is_x86_feature_detected!("sse4.2") {
        return None;
    }
    Some(|c| u64::from(crc32c::crc32c(c)))
}

fn main() -> ExitCode {
    let mut mib = 64usize;
    let mut passes = 3u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (arg.as_str(), value) {
            ("--mib", Some(v)) if v > 0 => mib = v,
            ("--passes", Some(v)) if v > 0 => passes = u32::try_from(v).unwrap_or(u32::MAX),
            _ => {
                eprintln!("usage: checksum-bench [--mib N] [--passes P]");
                return ExitCode::from(2);
            }
        }
    }
    // Pseudo-random bytes (xorshift): no pattern a hash could take a shortcut on.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let data: Vec<u8> = (0..mib * CHUNK)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    for candidate in candidates() {
        let Some(hash) = candidate.hash else {
            println!("{}\tn/a", candidate.name);
            continue;
        };
        let mut best = f64::INFINITY;
        let mut fold = 0u64;
        for _ in 0..passes {
            let start = Instant::now();
            for chunk in black_box(&data).chunks(CHUNK) {
                fold ^= hash(chunk);
            }
            best = best.min(start.elapsed().as_secs_f64());
        }
        eprintln!("{} result {:016x}", candidate.name, black_box(fold));
        // Display only: the MiB count is small.
        let rate = mib as f64 / best;
        println!("{}\t{rate:.0}", candidate.name);
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_its_check_value() {
        let Some(crc) = sse42_crc32c() else {
            eprintln!("no SSE4.2 on this CPU: nothing to check");
            return;
        };
        // The CRC-32C check value (RFC 3720 / the catalogue of CRC algorithms).
        assert_eq!(crc(b"123456789"), 0xE306_9283);
        assert_eq!(crc(b""), 0);
    }

    #[test]
    fn chunk_hasher_candidate_is_xxh64_of_the_chunk() {
        let data: Vec<u8> = (0..300_000u32).map(|i| i.to_le_bytes()[1]).collect();
        assert_eq!(chunk_hasher(&data), xxhash_rust::xxh64::xxh64(&data, 0));
    }

    #[test]
    fn candidates_are_named_uniquely() {
        let names: Vec<&str> = candidates().iter().map(|c| c.name).collect();
        for (i, a) in names.iter().enumerate() {
            assert!(!names[i + 1..].contains(a), "{a}");
        }
    }
}

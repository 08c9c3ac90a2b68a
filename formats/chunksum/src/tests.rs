use super::*;

const MIB: u64 = 1 << 20;

/// Deterministic test data and split points: a seeded generator.
fn rng(seed: u64) -> fastrand::Rng {
    fastrand::Rng::with_seed(seed)
}

fn bytes(rng: &mut fastrand::Rng, len: usize) -> Vec<u8> {
    let mut out = vec![0; len];
    rng.fill(&mut out);
    out
}

/// The definition, literally: entry i hashes bytes [i*cs, min((i+1)*cs, len)).
fn reference(data: &[u8], chunk_size: usize) -> Vec<u64> {
    data.chunks(chunk_size).map(xxh64).collect()
}

/// Feeds `data` in pieces cut at `cuts` (sorted offsets), collecting the entries.
fn streamed(data: &[u8], chunk_size: u64, cuts: &[usize]) -> Vec<u64> {
    let len = u64::try_from(data.len()).unwrap();
    let mut h = ChunkHasher::with_chunk_size(len, chunk_size).unwrap();
    let mut out = Vec::new();
    let mut at = 0;
    for &cut in cuts.iter().chain([data.len()].iter()) {
        h.update(&data[at..cut], |i, v| {
            assert_eq!(i, u64::try_from(out.len()).unwrap(), "entries in order");
            out.push(v);
        })
        .unwrap();
        at = cut;
        assert_eq!(h.fed(), u64::try_from(at).unwrap());
        assert_eq!(h.finished(), u64::try_from(out.len()).unwrap());
    }
    assert!(h.is_done());
    out
}

#[test]
fn xxh64_is_xxh64() {
    // Reference values of XXH64 with seed 0 (xxhsum -H64).
    assert_eq!(xxh64(b""), 0xEF46_DB37_51D8_E999);
    assert_eq!(xxh64(b"abc"), 0x44BC_2CF5_AD77_0999);
}

#[test]
fn random_splits_match_the_definition() {
    let mut rng = rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..200 {
        let chunk_size = [1usize, 7, 64, 100, 4096, 5000][round % 6];
        let len = rng.usize(..30_000);
        let data = bytes(&mut rng, len);
        let mut cuts: Vec<usize> = (0..rng.usize(..40)).map(|_| rng.usize(..len + 1)).collect();
        cuts.sort_unstable();
        let cs = u64::try_from(chunk_size).unwrap();
        assert_eq!(
            streamed(&data, cs, &cuts),
            reference(&data, chunk_size),
            "round {round}: len {len}, chunk {chunk_size}, cuts {cuts:?}"
        );
    }
}

#[test]
fn real_chunk_size_with_odd_pieces() {
    // 3.5 MiB with 1 MiB chunks, fed in pieces of prime sizes: boundaries fall mid-piece.
    let mut rng = rng(42);
    let data = bytes(&mut rng, 7 * usize::try_from(MIB / 2).unwrap());
    let mut cuts = Vec::new();
    let mut at = 0;
    for step in [4093usize, 65_537, 1, 999_983, 8191].iter().cycle() {
        at += step;
        if at >= data.len() {
            break;
        }
        cuts.push(at);
    }
    let got = streamed(&data, MIB, &cuts);
    assert_eq!(got.len(), 4);
    assert_eq!(got, reference(&data, 1 << 20));
    // ChunkHasher::new picks the 1 MiB chunks of the format for this length.
    let h = ChunkHasher::new(u64::try_from(data.len()).unwrap());
    assert_eq!(h.chunk_size(), MIB);
}

#[test]
fn exact_multiple_of_chunks() {
    let data = bytes(&mut rng(7), 4 * 1000);
    for cuts in [vec![], vec![1000, 2000, 3000], vec![999, 1001, 3999]] {
        assert_eq!(
            streamed(&data, 1000, &cuts),
            reference(&data, 1000),
            "{cuts:?}"
        );
    }
    // Each entry is produced as soon as its chunk's last byte arrives.
    let mut h = ChunkHasher::with_chunk_size(4000, 1000).unwrap();
    let mut seen = Vec::new();
    h.update(&data[..999], |i, _| seen.push(i)).unwrap();
    assert!(seen.is_empty());
    h.update(&data[999..1000], |i, _| seen.push(i)).unwrap();
    assert_eq!(seen, [0]);
}

#[test]
fn last_partial_chunk() {
    let data = bytes(&mut rng(8), 2500);
    let got = streamed(&data, 1000, &[2499]);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2], xxh64(&data[2000..]));
    // The short last chunk is produced only with the dump's last byte.
    let mut h = ChunkHasher::with_chunk_size(2500, 1000).unwrap();
    let mut n = 0;
    h.update(&data[..2499], |_, _| n += 1).unwrap();
    assert_eq!((n, h.finished()), (2, 2));
    h.update(&data[2499..], |_, _| n += 1).unwrap();
    assert_eq!((n, h.finished()), (3, 3));
}

#[test]
fn empty_dump() {
    let mut h = ChunkHasher::new(0);
    assert!(h.is_done());
    let mut called = false;
    h.update(&[], |_, _| called = true).unwrap();
    assert!(!called);
    assert_eq!(h.finished(), 0);
    assert_eq!(
        h.update(&[1], |_, _| called = true),
        Err(FeedError::PastEnd {
            fed: 0,
            len: 1,
            dump_length: 0
        })
    );
    assert!(!called);
}

#[test]
fn past_the_end_consumes_nothing() {
    let data = bytes(&mut rng(9), 300);
    let mut h = ChunkHasher::with_chunk_size(250, 100).unwrap();
    h.update(&data[..200], |_, _| {}).unwrap();
    let e = h.update(&data[200..], |_, _| {}).unwrap_err();
    assert_eq!(
        e,
        FeedError::PastEnd {
            fed: 200,
            len: 100,
            dump_length: 250
        }
    );
    assert!(e.to_string().contains("250-byte dump"));
    assert_eq!(h.fed(), 200);
    let mut last = None;
    h.update(&data[200..250], |i, v| last = Some((i, v)))
        .unwrap();
    assert_eq!(last, Some((2, xxh64(&data[200..250]))));
}

#[test]
fn zero_chunk_size_is_refused() {
    assert!(ChunkHasher::with_chunk_size(10, 0).is_none());
}

#[test]
fn update_into_fills_the_table() {
    let data = bytes(&mut rng(10), 5 * 1000 + 1);
    let mut table = [0u64; 6];
    let mut h = ChunkHasher::with_chunk_size(5001, 1000).unwrap();
    for piece in data.chunks(777) {
        h.update_into(piece, &mut table).unwrap();
    }
    assert_eq!(table.to_vec(), reference(&data, 1000));

    // A table too short for what a piece would finish: refused before anything is consumed.
    let mut short = [0u64; 2];
    let mut h = ChunkHasher::with_chunk_size(5001, 1000).unwrap();
    h.update_into(&data[..2999], &mut short).unwrap();
    assert_eq!(
        h.update_into(&data[2999..3000], &mut short),
        Err(FeedError::TableTooShort { needed: 3, len: 2 })
    );
    assert_eq!(h.fed(), 2999);
    assert_eq!(short.to_vec(), reference(&data[..2000], 1000));
}

#[test]
fn table_checksum_is_xxh64_of_little_endian_entries() {
    let entries: Vec<u64> = (0..1000u64)
        .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .collect();
    for n in [0, 1, 63, 64, 65, 1000] {
        let bytes: Vec<u8> = entries[..n].iter().flat_map(|e| e.to_le_bytes()).collect();
        assert_eq!(table_xxh64(&entries[..n]), xxh64(&bytes), "{n} entries");
    }
}

#[test]
fn checkpoint_blocks() {
    assert_eq!(ENTRIES_PER_BLOCK, 512);
    assert_eq!(TABLE_BLOCKS, 224);
    assert_eq!(TABLE_BLOCKS * ENTRIES_PER_BLOCK, MAX_CHUNKS);
    // Nothing new.
    assert!(blocks_to_write(0, 0).is_empty());
    assert!(blocks_to_write(700, 700).is_empty());
    // First checkpoint.
    assert_eq!(blocks_to_write(0, 1), 0..1);
    assert_eq!(blocks_to_write(0, 512), 0..1);
    assert_eq!(blocks_to_write(0, 513), 0..2);
    // The block the last checkpoint left partly final is rewritten.
    assert_eq!(blocks_to_write(700, 1024), 1..2);
    assert_eq!(blocks_to_write(700, 1025), 1..3);
    assert_eq!(blocks_to_write(1024, 1025), 2..3);
    assert_eq!(blocks_to_write(0, MAX_CHUNKS), 0..TABLE_BLOCKS);
    assert_eq!(block_device_offset(0), CHUNK_TABLE_OFFSET);
    assert_eq!(block_device_offset(TABLE_BLOCKS), 1 << 20);
    // Every final entry is covered by the blocks written so far, over random checkpoints.
    let mut rng = rng(11);
    let mut on_device = 0;
    let mut covered_to = 0;
    while on_device < MAX_CHUNKS {
        let finished = (on_device + rng.u64(..) % 2000).min(MAX_CHUNKS);
        let blocks = blocks_to_write(on_device, finished);
        if !blocks.is_empty() {
            assert!(blocks.start * ENTRIES_PER_BLOCK <= on_device);
            assert!(blocks.start * ENTRIES_PER_BLOCK <= covered_to);
            covered_to = blocks.end * ENTRIES_PER_BLOCK;
        }
        assert!(covered_to >= finished);
        on_device = finished;
    }
}

#[test]
fn encoded_blocks_are_the_table_bytes() {
    let table: Vec<u64> = (1..=700u64).collect();
    let mut block = [0xffu8; 4096];
    encode_block(&table, 0, &mut block);
    assert_eq!(block[..8], 1u64.to_le_bytes());
    assert_eq!(block[4088..], 512u64.to_le_bytes());
    encode_block(&table, 1, &mut block);
    assert_eq!(block[..8], 513u64.to_le_bytes());
    assert_eq!(block[187 * 8..188 * 8], 700u64.to_le_bytes());
    assert!(
        block[188 * 8..].iter().all(|&b| b == 0),
        "zero past the table"
    );
    encode_block(&table, 5, &mut block);
    assert!(block.iter().all(|&b| b == 0));
    // Blocks laid end to end are the little-endian table.
    let mut all = Vec::new();
    for b in 0..2 {
        encode_block(&table, b, &mut block);
        all.extend_from_slice(&block);
    }
    let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_le_bytes()).collect();
    assert_eq!(all[..bytes.len()], bytes[..]);
}

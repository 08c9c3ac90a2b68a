//! [`Lzo`] pages decoded by an LZO1X decoder that shares no code with the encoder (the
//! `lzokay` crate's), over page shapes that reach every instruction form and every length
//! boundary (literal runs of 3/4, 18/19, 273/274 bytes; matches of 8/9 and 33/34 bytes,
//! 2048/2049 bytes back).

mod common;

use minicap_kdumpfile::{Lzo, PageCompressor, DUMP_DH_COMPRESSED_LZO};

/// Compresses `page` and, if it shrank, checks that it decodes back to `page`; returns the
/// compressed size.
fn round_trip(lzo: &mut Lzo, page: &[u8]) -> Option<usize> {
    let mut out = [0u8; 4096];
    let n = lzo.compress(page, &mut out)?;
    assert!(n < page.len());
    assert_eq!(common::lzo_decompress(&out[..n]), page);
    Some(n)
}

/// A page made of random pieces: fresh random bytes, copies of earlier bytes (near and
/// far, short and long) and runs of one byte.
fn mixed_page(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut page = Vec::with_capacity(4096);
    while page.len() < 4096 {
        let room = 4096 - page.len();
        let len = rng
            .choice([1, 2, 3, 4, 5, 8, 9, 17, 18, 19, 33, 34, 35, 273, 274, 300])
            .unwrap()
            .min(room);
        match rng.u8(0..3) {
            0 => page.extend((0..len).map(|_| rng.u8(..))),
            1 if !page.is_empty() => {
                let from = rng.usize(..page.len());
                for i in 0..len {
                    let b = page[from + i];
                    page.push(b);
                }
            }
            _ => {
                let b = rng.u8(..);
                page.extend(std::iter::repeat_n(b, len));
            }
        }
    }
    page
}

#[test]
fn flag_is_lzo() {
    assert_eq!(Lzo::new().flag(), DUMP_DH_COMPRESSED_LZO);
}

#[test]
fn mixed_pages_decode_to_themselves() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut lzo = Lzo::new();
    let mut shrank = 0;
    for _ in 0..2000 {
        let page = mixed_page(&mut rng);
        shrank += usize::from(round_trip(&mut lzo, &page).is_some());
    }
    assert!(shrank > 1500, "{shrank}");
}

#[test]
fn boundary_shapes_decode_to_themselves() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut lzo = Lzo::new();
    let noise = |rng: &mut fastrand::Rng, n: usize| (0..n).map(|_| rng.u8(..)).collect::<Vec<u8>>();
    // Noise, a run of zeros (a match), a literal run of `lits` bytes, then a copy of `len`
    // bytes from `back` bytes before, then noise: every (lits, len, back) that the forms
    // distinguish.
    for lits in [1, 3, 4, 18, 19, 237, 238, 239, 273, 274, 529, 530] {
        for len in [4, 8, 9, 33, 34, 288, 289, 543, 544] {
            for back in [1, 4, 2048, 2049, 2900] {
                let mut page = noise(&mut rng, 2900);
                page.extend([0; 60]);
                page.extend(noise(&mut rng, lits));
                for _ in 0..len {
                    page.push(page[page.len() - back]);
                }
                page.extend(noise(&mut rng, 4096usize.saturating_sub(page.len())));
                page.truncate(4096);
                round_trip(&mut lzo, &page);
            }
        }
    }
}

#[test]
fn uniform_and_random_pages() {
    let mut lzo = Lzo::new();
    for b in [0u8, 0xff, 0x5a] {
        let n = round_trip(&mut lzo, &[b; 4096]).unwrap();
        assert!(n < 64, "{n}");
    }
    // Random bytes do not shrink: stored raw.
    let mut rng = fastrand::Rng::with_seed(3);
    let page: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    assert_eq!(round_trip(&mut lzo, &page), None);
    // A page of kernel pointers (a slab of list heads) shrinks: their upper halves repeat.
    let page: Vec<u8> = (0..512u64)
        .flat_map(|i| (0xffff_8880_0123_0000 + i * 64).to_le_bytes())
        .collect();
    assert!(round_trip(&mut lzo, &page).is_some());
}

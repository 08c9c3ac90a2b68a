//! A bzImage handed to `minicap load --image` (or found next to the ELF): the loader parses it
//! with `BzImage::parse` (the checks of Linux's and kexec-tools' bzImage64 loaders) to take the
//! payload for its kexec_load fallback, and `PeImage::parse` reads its PE/COFF view. Both read
//! offsets and sizes from the file itself, so every range they hand out must lie inside it.

use minicap_bzimage::{BzImage, PeImage};

use super::{bucket, signature, Target};

pub const TARGET: Target = Target {
    name: "bzimage",
    about: "bzImage setup header and PE/COFF headers, as minicap load reads an image file",
    run,
    dictionary: &[
        b"HdrS",
        b"MZ",
        b"PE\0\0",
        b"LToP",
        &[0x55, 0xaa],
        &[0x0f, 0x02],
        &[0x0b, 0x02],
    ],
    max_len: 16 << 10,
};

fn run(input: &[u8]) -> u64 {
    let bz = BzImage::parse(input).map(|image| {
        // The payload and the copied header are sub-slices of the input by construction; what
        // the loader computes from them must not overflow.
        assert!(image.payload.len() <= input.len());
        assert!(image.setup_header.len() <= input.len());
        let load = image.load_size();
        assert!(
            load >= image.payload.len() as u64,
            "load size {load} below the payload's {} bytes",
            image.payload.len()
        );
        (
            bucket(image.payload.len()),
            image.entry_offset(),
            image.handles_5level_paging(),
        )
    });
    let pe = PeImage::parse(input).map(|pe| {
        let mut covered = 0usize;
        for range in pe.digest_ranges(input.len()) {
            assert!(
                range.start <= range.end && range.end <= input.len(),
                "digest range {range:?} outside a {}-byte file",
                input.len()
            );
            covered += range.len();
        }
        (pe.sections().len(), bucket(covered))
    });
    signature((
        bz.map_err(|e| core::mem::discriminant(&e)),
        pe.map_err(|e| core::mem::discriminant(&e)),
    ))
}

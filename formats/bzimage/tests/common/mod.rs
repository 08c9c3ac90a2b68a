//! A synthetic payload with minicap's head contract: a halt at 0, `kernel_info` at 0x10, the
//! 64-bit entry at 0x200, then seeded bytes.

use minicap_bzimage::layout::{ENTRY64_OFFSET, KERNEL_INFO_MAGIC, KERNEL_INFO_OFFSET};
use minicap_bzimage::{build, ImageSource};

pub const VERSION: &str = "minicap test";

pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut bytes: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    bytes[..4].copy_from_slice(&[0xfa, 0xf4, 0xeb, 0xfd]);
    bytes[KERNEL_INFO_OFFSET..KERNEL_INFO_OFFSET + 4].copy_from_slice(&KERNEL_INFO_MAGIC);
    bytes[ENTRY64_OFFSET] = 0xfa; // cli, like `_start`
    bytes
}

pub fn image(len: usize, memsz: u64) -> Vec<u8> {
    let payload = payload(len, 7);
    build(&ImageSource {
        payload: &payload,
        memsz,
        version: VERSION,
    })
    .expect("a well-formed payload builds")
}

//! What the block driver tests (virtio-blk, NVMe, AHCI) share: where test
//! buffers live, test data, byte comparisons that do not print megabytes,
//! and bringing a driver up with the fake's violations in the panic.

#![allow(dead_code)]

use crate::fake_machine::platform::{DeviceModel, Fake};
use std::fmt::{Debug, Display};

/// Test data buffers live here (the DMA allocator hands out memory at 16 MiB).
pub const BUF: u64 = 0x4000_0000;
/// A second buffer area, for reading back.
pub const BUF2: u64 = 0x6000_0000;
pub const KIB: u64 = 1 << 10;
pub const MIB: u64 = 1 << 20;

/// Deterministic, position-dependent bytes (xorshift64).
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[3]
        })
        .collect()
}

/// Compare without printing megabytes on failure.
#[track_caller]
pub fn assert_same(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: first difference at byte {i:#x}: got {:#04x}, want {:#04x}",
            got[i], want[i]
        );
    }
}

#[track_caller]
pub fn assert_filled(got: &[u8], value: u8, what: &str) {
    if let Some(i) = got.iter().position(|&b| b != value) {
        panic!("{what}: byte {i:#x} is {:#04x}, want {value:#04x}", got[i]);
    }
}

pub fn len_usize(len: u64) -> usize {
    usize::try_from(len).expect("test lengths fit")
}

/// The driver `what` brought up, or a panic with its error and what the
/// fake device objected to.
#[track_caller]
pub fn expect_up<T, E: Display + Debug, D: DeviceModel>(
    what: &str,
    m: &Fake<D>,
    result: Result<T, E>,
) -> T {
    match result {
        Ok(up) => up,
        Err(e) => panic!(
            "{what} failed: {e} ({e:?}); violations: {:?}",
            m.violations()
        ),
    }
}

/// The error a driver that must not come up gave.
#[track_caller]
pub fn expect_refused<T, E>(result: Result<T, E>) -> E {
    match result {
        Ok(_) => panic!("init unexpectedly succeeded"),
        Err(e) => e,
    }
}

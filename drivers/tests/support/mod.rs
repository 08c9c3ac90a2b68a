//! What the block driver tests (virtio-blk, NVMe, AHCI) share: where test
//! buffers live, test data, byte comparisons that do not print megabytes,
//! bringing a driver up with the fake's violations in the panic, and the
//! write-then-read-back round trip.

#![allow(dead_code)]

use crate::fake_machine::ahci::AhciMachine;
use crate::fake_machine::nvme::FakeNvme;
use crate::fake_machine::platform::{DeviceModel, Fake};
use crate::fake_machine::FakeMachine;
use minicap_drivers::BlockDevice;
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

/// The disk behind a fake device, as a round trip looks at it.
pub trait DiskImage {
    fn read(&self, offset: u64, len: usize) -> Vec<u8>;
    fn fill(&self, offset: u64, len: u64, value: u8);
}

impl DiskImage for FakeMachine {
    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        self.disk_read(offset, len)
    }

    fn fill(&self, offset: u64, len: u64, value: u8) {
        self.disk_fill(offset, len, value);
    }
}

impl DiskImage for FakeNvme {
    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        self.disk_read(offset, len)
    }

    fn fill(&self, offset: u64, len: u64, value: u8) {
        self.disk_fill(offset, len, value);
    }
}

/// The disk on one port of the fake AHCI HBA.
pub struct AhciPort<'m>(pub &'m AhciMachine, pub u8);

impl DiskImage for AhciPort<'_> {
    fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        self.0.disk_read(self.1, offset, len)
    }

    fn fill(&self, offset: u64, len: u64, value: u8) {
        self.0.disk_fill(self.1, offset, len, value);
    }
}

/// Write `len` bytes from `src` at `offset` of `dev` (whose disk is
/// `disk`), check they land there and only there, read them back into
/// `dst` and check they land there and only there.
#[track_caller]
pub fn check_roundtrip<D: DeviceModel>(
    m: &Fake<D>,
    disk: &impl DiskImage,
    dev: &mut impl BlockDevice,
    offset: u64,
    len: u64,
    src: u64,
    dst: u64,
) {
    let n = len_usize(len);
    let data = pattern(offset ^ len ^ src, n);
    m.mem_write(src, &data);
    let guard = 4096u64;
    let before = offset.min(guard);
    let after = (dev.capacity() - offset - len).min(guard);
    disk.fill(offset - before, before + len + after, 0x5a);
    dev.write(offset, src, len)
        .unwrap_or_else(|e| panic!("write {len} at {offset:#x}: {e}"));
    assert_same(&disk.read(offset, n), &data, "disk contents");
    assert_filled(
        &disk.read(offset - before, len_usize(before)),
        0x5a,
        "disk before the write",
    );
    assert_filled(
        &disk.read(offset + len, len_usize(after)),
        0x5a,
        "disk after the write",
    );

    m.mem_fill(dst.saturating_sub(64), len + 128, 0xee);
    dev.read(offset, dst, len)
        .unwrap_or_else(|e| panic!("read {len} at {offset:#x}: {e}"));
    assert_same(&m.mem_read(dst, n), &data, "read back");
    if dst >= 64 {
        assert_filled(&m.mem_read(dst - 64, 64), 0xee, "memory before the read");
    }
    assert_filled(&m.mem_read(dst + len, 64), 0xee, "memory after the read");
}

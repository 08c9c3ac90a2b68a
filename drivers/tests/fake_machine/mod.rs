//! A fake machine for host tests: the shared fake platform ([`platform`]:
//! sparse physical memory with a DMA bump allocator, a PCI configuration
//! space) around a virtio-blk PCI device model (modern capabilities in a
//! 64-bit memory BAR and/or the legacy I/O BAR 0) that processes split
//! virtqueue requests against a sparse in-memory disk. The NVMe ([`nvme`])
//! and AHCI ([`ahci`]) models sit in the same platform.
//!
//! The device model is strict: whatever the driver does that the virtio 1.2
//! spec (or plain PCI sense) forbids is recorded as a *violation*, and every
//! test ends with [`FakeMachine::assert_clean`].
//!
//! Requests may stay in flight: the device takes a chain from the available
//! ring when notified, and completes it then ([`Completion::AtSubmit`]), when
//! the driver next polls the used ring, in order or newest first, or when the
//! test says ([`FakeMachine::complete_held`]). While a request is in flight
//! its descriptors, header, status byte and indirect table belong to the
//! device: reusing or changing them is a violation.
#![allow(dead_code)]

pub mod ahci;
pub mod held;
pub mod nvme;
pub mod platform;

pub use held::Completion;
use held::{Held, Numbered};
use minicap_drivers::access::{DmaRegion, Region, Width};
use minicap_drivers::pci::PciAddress;
use platform::{Core, DeviceModel, Fake};
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;

pub const PAGE: u64 = 4096;
const PAGE_BYTES: usize = 4096;

/// Where the virtio-blk function sits.
pub const VIRTIO_FN: PciAddress = PciAddress::new(0, 3, 0);

/// BAR 4/5 (64-bit, prefetchable): the modern register window.
pub const MMIO_BASE: u64 = 0x80_0000_0000;
pub const MMIO_LEN: u64 = 0x4000;
pub const COMMON_OFF: u64 = 0x0000;
pub const COMMON_LEN: u32 = 0x38;
pub const ISR_OFF: u64 = 0x1000;
pub const DEVICE_OFF: u64 = 0x2000;
pub const DEVICE_LEN: u32 = 24;
pub const NOTIFY_OFF: u64 = 0x3000;
pub const NOTIFY_MULTIPLIER: u32 = 4;
/// queue_notify_off of queue 0 (deliberately not 0).
pub const QUEUE_NOTIFY_OFF: u16 = 5;
pub const NOTIFY_LEN: u32 = 5 * 4 + 2;
/// BAR 1 (32-bit memory): MSI-X table (not emulated).
pub const MSIX_BAR: u32 = 0xfebf_1000;
/// BAR 0 (I/O): the legacy register block.
pub const IO_BASE: u16 = 0xc040;
pub const IO_LEN: u16 = 0x40;

/// Capability offsets in the virtio function's config space.
pub const CAP_MSIX: u16 = 0x40;
pub const CAP_MSI: u16 = 0x50;
pub const CAP_COMMON: u16 = 0x64;
pub const CAP_ISR: u16 = 0x74;
pub const CAP_NOTIFY: u16 = 0x84;
pub const CAP_DEVICE: u16 = 0x98;

// Feature bits.
pub const F_SIZE_MAX: u64 = 1 << 1;
pub const F_SEG_MAX: u64 = 1 << 2;
pub const F_RO: u64 = 1 << 5;
pub const F_BLK_SIZE: u64 = 1 << 6;
pub const F_FLUSH: u64 = 1 << 9;
pub const F_INDIRECT_DESC: u64 = 1 << 28;
pub const F_EVENT_IDX: u64 = 1 << 29;
pub const F_VERSION_1: u64 = 1 << 32;
pub const F_ACCESS_PLATFORM: u64 = 1 << 33;

// Device status bits.
pub const S_ACKNOWLEDGE: u8 = 1;
pub const S_DRIVER: u8 = 2;
pub const S_DRIVER_OK: u8 = 4;
pub const S_FEATURES_OK: u8 = 8;
pub const S_NEEDS_RESET: u8 = 64;
pub const S_FAILED: u8 = 128;

// Request types and status values.
pub const T_IN: u32 = 0;
pub const T_OUT: u32 = 1;
pub const T_FLUSH: u32 = 4;
pub const BLK_OK: u8 = 0;
pub const BLK_IOERR: u8 = 1;
pub const BLK_UNSUPP: u8 = 2;

// PCI command bits.
pub const CMD_IO: u16 = 1 << 0;
pub const CMD_MEMORY: u16 = 1 << 1;
pub const CMD_BUS_MASTER: u16 = 1 << 2;
pub const CMD_INTX_DISABLE: u16 = 1 << 10;

const DESC_F_NEXT: u16 = 1;
const DESC_F_WRITE: u16 = 2;
const DESC_F_INDIRECT: u16 = 4;
const NO_VECTOR: u16 = 0xffff;

fn idx(v: u64) -> usize {
    usize::try_from(v).expect("index fits in usize")
}

/// Byte-addressed sparse storage (physical memory, the disk): unwritten bytes
/// read as zero.
#[derive(Default)]
pub struct Sparse {
    pages: BTreeMap<u64, Box<[u8; PAGE_BYTES]>>,
}

impl Sparse {
    pub fn read(&self, addr: u64, out: &mut [u8]) {
        let mut done = 0;
        while done < out.len() {
            let a = addr + done as u64;
            let off = idx(a % PAGE);
            let n = (PAGE_BYTES - off).min(out.len() - done);
            match self.pages.get(&(a / PAGE)) {
                Some(page) => out[done..done + n].copy_from_slice(&page[off..off + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
        }
    }

    pub fn write(&mut self, addr: u64, data: &[u8]) {
        let mut done = 0;
        while done < data.len() {
            let a = addr + done as u64;
            let off = idx(a % PAGE);
            let n = (PAGE_BYTES - off).min(data.len() - done);
            let page = self
                .pages
                .entry(a / PAGE)
                .or_insert_with(|| Box::new([0; PAGE_BYTES]));
            page[off..off + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }

    pub fn fill(&mut self, addr: u64, len: u64, value: u8) {
        let chunk = vec![value; PAGE_BYTES];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(PAGE);
            self.write(addr + done, &chunk[..idx(n)]);
            done += n;
        }
    }

    fn get(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.read(addr, &mut v);
        v
    }
}

/// 256 bytes of PCI configuration space with a per-bit write mask.
#[derive(Clone)]
pub struct ConfigSpace {
    bytes: [u8; 256],
    writable: [u8; 256],
}

impl ConfigSpace {
    /// A type-0 header with the given IDs; command register writable.
    pub fn new(vendor: u16, device: u16) -> Self {
        let mut c = Self {
            bytes: [0; 256],
            writable: [0; 256],
        };
        c.set16(0x00, vendor);
        c.set16(0x02, device);
        // Command: I/O, memory, bus master, parity, SERR, INTx disable.
        c.writable[0x04] = 0x47;
        c.writable[0x05] = 0x05;
        c
    }

    pub fn set8(&mut self, off: u16, v: u8) {
        self.bytes[usize::from(off)] = v;
    }

    pub fn set16(&mut self, off: u16, v: u16) {
        let o = usize::from(off);
        self.bytes[o..o + 2].copy_from_slice(&v.to_le_bytes());
    }

    pub fn set32(&mut self, off: u16, v: u32) {
        let o = usize::from(off);
        self.bytes[o..o + 4].copy_from_slice(&v.to_le_bytes());
    }

    pub fn get8(&self, off: u16) -> u8 {
        self.bytes[usize::from(off)]
    }

    pub fn get16(&self, off: u16) -> u16 {
        let o = usize::from(off);
        u16::from_le_bytes([self.bytes[o], self.bytes[o + 1]])
    }

    pub fn get32(&self, off: u16) -> u32 {
        let o = usize::from(off);
        u32::from_le_bytes([
            self.bytes[o],
            self.bytes[o + 1],
            self.bytes[o + 2],
            self.bytes[o + 3],
        ])
    }

    /// Make bits of byte `off` writable.
    pub fn set_writable(&mut self, off: u16, mask: u8) {
        self.writable[usize::from(off)] = mask;
    }

    /// Add a capability: sets the status bit and links `off` after the last
    /// capability in the list. `body` starts at the byte after the next
    /// pointer.
    pub fn add_capability(&mut self, off: u16, id: u8, body: &[u8]) {
        let status = self.get16(0x06);
        self.set16(0x06, status | (1 << 4));
        let mut link = 0x34;
        let mut guard = 0;
        while self.get8(link) != 0 && guard < 64 {
            link = u16::from(self.get8(link)) + 1;
            guard += 1;
        }
        self.set8(
            link,
            u8::try_from(off).expect("capability offset in 0..256"),
        );
        self.set8(off, id);
        self.set8(off + 1, 0);
        let o = usize::from(off) + 2;
        self.bytes[o..o + body.len()].copy_from_slice(body);
    }

    fn write32(&mut self, off: u16, value: u32) {
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            let o = usize::from(off) + i;
            let mask = self.writable[o];
            self.bytes[o] = (self.bytes[o] & !mask) | (b & mask);
        }
    }
}

/// Which interfaces the fake device exposes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Device 0x1042: virtio 1.x capabilities only.
    Modern,
    /// Device 0x1001: capabilities and the legacy I/O BAR 0.
    Transitional,
    /// Device 0x1001 with only the legacy I/O BAR 0 (a pre-1.0 device).
    Legacy,
}

/// How the machine is built.
#[derive(Clone, Debug)]
pub struct FakeConfig {
    pub mode: Mode,
    pub capacity_sectors: u64,
    /// Features the device offers.
    pub features: u64,
    /// Features without which FEATURES_OK is refused.
    pub required_features: u64,
    pub size_max: u32,
    pub seg_max: u32,
    /// Logical block size (config blk_size); like QEMU, requests not aligned
    /// to it fail with IOERR whether or not VIRTIO_BLK_F_BLK_SIZE was
    /// negotiated.
    pub blk_size: u32,
    /// Largest queue size (the legacy queue size, which the driver must use).
    pub queue_max: u16,
    /// Whether BAR 0 holds the legacy I/O block (Legacy/Transitional modes).
    pub io_bar: bool,
    pub initial_command: u16,
    pub msix_enabled: bool,
    pub msi_enabled: bool,
    /// Start of the DMA bump allocator.
    pub dma_base: u64,
    /// Bytes the DMA allocator can hand out.
    pub dma_limit: u64,
    pub map_mmio_ok: bool,
    /// The device is found running, as the crashed kernel left it: this
    /// status, and queue 0 enabled with rings at [`STALE_RINGS`].
    pub initial_status: u8,
    /// Length of the notification area its capability announces.
    pub notify_len: u32,
}

/// Where the "crashed kernel" left queue 0's rings.
pub const STALE_RINGS: u64 = 0x0dea_d000;

impl FakeConfig {
    pub fn modern() -> Self {
        Self {
            mode: Mode::Modern,
            capacity_sectors: 64 << 11, // 64 MiB
            features: F_SIZE_MAX
                | F_SEG_MAX
                | F_BLK_SIZE
                | F_FLUSH
                | F_INDIRECT_DESC
                | F_EVENT_IDX
                | F_VERSION_1,
            required_features: 0,
            size_max: 128 << 10,
            seg_max: 126,
            blk_size: 512,
            queue_max: 256,
            io_bar: false,
            initial_command: 0,
            msix_enabled: true,
            msi_enabled: true,
            dma_base: 0x0100_0000,
            dma_limit: 16 << 20,
            map_mmio_ok: true,
            initial_status: 0,
            notify_len: NOTIFY_LEN,
        }
    }

    pub fn transitional() -> Self {
        Self {
            mode: Mode::Transitional,
            io_bar: true,
            ..Self::modern()
        }
    }

    pub fn legacy() -> Self {
        Self {
            mode: Mode::Legacy,
            io_bar: true,
            features: Self::modern().features & 0xffff_ffff,
            ..Self::modern()
        }
    }

    pub fn for_mode(mode: Mode) -> Self {
        match mode {
            Mode::Modern => Self::modern(),
            Mode::Transitional => Self::transitional(),
            Mode::Legacy => Self::legacy(),
        }
    }

    fn has_caps(&self) -> bool {
        self.mode != Mode::Legacy
    }

    fn has_io(&self) -> bool {
        self.mode != Mode::Modern && self.io_bar
    }
}

/// Failure injection, changeable at any time.
#[derive(Default)]
pub struct Knobs {
    /// When requests complete.
    pub completion: Cell<Completion>,
    /// The request with this sequence number (0 for the first the device
    /// takes) is never completed.
    pub lose_request: Cell<Option<u64>>,
    /// The request with this sequence number fails with this status.
    pub fail_request: Cell<Option<(u64, u8)>>,
    /// Added to every id the device puts in the used ring (0: correct).
    pub used_id_offset: Cell<u16>,
    /// Notifications are ignored: requests never complete.
    pub never_complete: Cell<bool>,
    /// Complete this many more requests, then stall (never complete).
    pub stall_after: Cell<Option<u32>>,
    /// Complete requests with this status instead of doing them ...
    pub fail_status: Cell<Option<u8>>,
    /// ... after this many more requests have succeeded.
    pub fail_after: Cell<u32>,
    /// Complete requests without writing the status byte.
    pub skip_status_write: Cell<bool>,
    /// Set DEVICE_NEEDS_RESET when completing a request.
    pub needs_reset_on_complete: Cell<bool>,
    /// Writing 0 to the status register does not reset the device.
    pub reset_stuck: Cell<bool>,
    /// The capacity changes (to `flap_capacity`, and back, ...) on this many
    /// reads of its low half, bumping config_generation each time.
    pub config_flaps: Cell<u32>,
    pub flap_capacity: Cell<u64>,
}

/// One request the device processed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completed {
    /// Order in which the device took it from the available ring.
    pub seq: u64,
    pub kind: u32,
    pub sector: u64,
    /// Data buffers: (physical address, length).
    pub segments: Vec<(u64, u32)>,
    pub status: u8,
}

impl Completed {
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|&(_, l)| u64::from(l)).sum()
    }
}

/// Things that happened, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// PCI command register value after a config write to it.
    Command(u16),
    /// Value the driver wrote to the device status register.
    Status(u8),
    /// The device actually reset.
    Reset,
    /// A queue notification.
    Notify,
}

#[derive(Clone, Copy, Default)]
struct Queue {
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
    vector: u16,
    last_avail: u16,
    used_idx: u16,
}

struct Device {
    status: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    queue_select: u16,
    queue: Queue,
    msix_config: u16,
    generation: u8,
    capacity: u64,
    isr: u8,
}

impl Device {
    fn new(cfg: &FakeConfig) -> Self {
        Self {
            status: 0,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            queue_select: 0,
            queue: Queue {
                size: cfg.queue_max,
                vector: NO_VECTOR,
                ..Queue::default()
            },
            msix_config: NO_VECTOR,
            generation: 0,
            capacity: cfg.capacity_sectors,
            isr: 0,
        }
    }

    /// Device reset: everything but the configuration goes back to defaults.
    fn reset(&mut self, cfg: &FakeConfig) {
        let capacity = self.capacity;
        let generation = self.generation;
        *self = Self::new(cfg);
        self.capacity = capacity;
        self.generation = generation;
    }

    fn config_bytes(&self, cfg: &FakeConfig) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.capacity.to_le_bytes());
        b[8..12].copy_from_slice(&cfg.size_max.to_le_bytes());
        b[12..16].copy_from_slice(&cfg.seg_max.to_le_bytes());
        // geometry (16..20) stays 0; blk_size:
        b[20..24].copy_from_slice(&cfg.blk_size.to_le_bytes());
        b
    }
}

#[derive(Default)]
struct Log {
    events: Vec<Event>,
    requests: Vec<Completed>,
    notifies: u32,
    resets: u32,
    features_rejected: u32,
    port_accesses: u32,
    mmio_accesses: u32,
    flushes: u32,
    /// Requests taken with an indirect table.
    indirect_requests: u32,
}

/// A request the device took and has not completed.
#[derive(Clone, Debug)]
struct InFlight {
    seq: u64,
    head: u16,
    /// The chain as taken (None: malformed, completes with length 0).
    chain: Option<Chain>,
}

impl Numbered for InFlight {
    fn seq(&self) -> u64 {
        self.seq
    }
}

/// A parsed request chain.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Chain {
    /// Ring descriptors it occupies.
    ring: Vec<u16>,
    /// Indirect table (address, bytes), if any.
    table: Option<(u64, u64)>,
    /// Every descriptor, the indirect table's expanded.
    descs: Vec<Desc>,
    /// The request header's 16 bytes.
    header: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Desc {
    addr: u64,
    len: u32,
    flags: u16,
    next: u16,
}

/// The virtio-blk machine: the shared fake platform around [`VirtioBlk`].
pub type FakeMachine = Fake<VirtioBlk>;

/// The virtio-blk device model with its disk.
pub struct VirtioBlk {
    core: Core,
    cfg: FakeConfig,
    pub knobs: Knobs,
    disk: RefCell<Sparse>,
    dev: RefCell<Device>,
    log: RefCell<Log>,
    /// Requests taken and not completed, in the order taken.
    in_flight: Held<InFlight>,
}

fn key(f: PciAddress) -> (u16, u8, u8, u8) {
    (f.segment, f.bus, f.device, f.function)
}

impl FakeMachine {
    /// A machine with only the virtio-blk function described by `cfg`.
    pub fn new(cfg: FakeConfig) -> Self {
        let m = Self::bare(cfg.clone());
        m.add_function(VIRTIO_FN, virtio_config_space(&cfg));
        if cfg.initial_status != 0 {
            let mut dev = m.0.dev.borrow_mut();
            dev.status = cfg.initial_status;
            dev.driver_features = cfg.features & (F_VERSION_1 | F_FLUSH);
            dev.queue = Queue {
                size: cfg.queue_max.min(128),
                enabled: true,
                desc: STALE_RINGS,
                driver: STALE_RINGS + 0x800,
                device: STALE_RINGS + 0x1000,
                vector: 1,
                last_avail: 17,
                used_idx: 17,
            };
        }
        m
    }

    /// A machine with an empty PCI bus (add functions with `add_function`).
    pub fn bare(cfg: FakeConfig) -> Self {
        let knobs = Knobs::default();
        Fake(VirtioBlk {
            core: Core::new(cfg.dma_base, cfg.dma_limit, 1000),
            dev: RefCell::new(Device::new(&cfg)),
            cfg,
            knobs,
            disk: RefCell::default(),
            log: RefCell::default(),
            in_flight: Held::default(),
        })
    }
}

impl VirtioBlk {
    pub fn config(&self) -> &FakeConfig {
        &self.cfg
    }

    // ----- observations -----

    pub fn events(&self) -> Vec<Event> {
        self.log.borrow().events.clone()
    }

    pub fn requests(&self) -> Vec<Completed> {
        self.log.borrow().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.log.borrow().requests.len()
    }

    pub fn notifies(&self) -> u32 {
        self.log.borrow().notifies
    }

    pub fn resets(&self) -> u32 {
        self.log.borrow().resets
    }

    pub fn flushes(&self) -> u32 {
        self.log.borrow().flushes
    }

    /// Most requests the device held in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.in_flight.most()
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Requests the driver sent with an indirect table.
    pub fn indirect_requests(&self) -> u32 {
        self.log.borrow().indirect_requests
    }

    /// Complete the requests in flight at these positions (0: the oldest
    /// now in flight), in this order.
    pub fn complete_held(&self, positions: &[usize]) {
        for request in self.in_flight.take_positions(positions) {
            self.complete(&request);
        }
    }

    pub fn features_rejected(&self) -> u32 {
        self.log.borrow().features_rejected
    }

    pub fn port_accesses(&self) -> u32 {
        self.log.borrow().port_accesses
    }

    pub fn mmio_accesses(&self) -> u32 {
        self.log.borrow().mmio_accesses
    }

    /// Device status register.
    pub fn status(&self) -> u8 {
        self.dev.borrow().status
    }

    /// Features the driver wrote.
    pub fn driver_features(&self) -> u64 {
        self.dev.borrow().driver_features
    }

    pub fn queue_size(&self) -> u16 {
        self.dev.borrow().queue.size
    }

    pub fn queue_enabled(&self) -> bool {
        self.dev.borrow().queue.enabled
    }

    /// (descriptor table, available ring, used ring) of queue 0.
    pub fn queue_rings(&self) -> (u64, u64, u64) {
        let q = self.dev.borrow().queue;
        (q.desc, q.driver, q.device)
    }

    fn config_space(&self, f: PciAddress) -> ConfigSpace {
        self.core.pci.borrow()[&key(f)].clone()
    }

    pub fn command(&self) -> u16 {
        self.config_space(VIRTIO_FN).get16(0x04)
    }

    pub fn msix_enabled(&self) -> bool {
        self.config_space(VIRTIO_FN).get16(CAP_MSIX + 2) & (1 << 15) != 0
    }

    pub fn msix_control(&self) -> u16 {
        self.config_space(VIRTIO_FN).get16(CAP_MSIX + 2)
    }

    pub fn msi_enabled(&self) -> bool {
        self.config_space(VIRTIO_FN).get16(CAP_MSI + 2) & 1 != 0
    }

    // ----- memory and disk -----

    pub fn disk_write(&self, offset: u64, data: &[u8]) {
        self.disk.borrow_mut().write(offset, data);
    }

    pub fn disk_read(&self, offset: u64, len: usize) -> Vec<u8> {
        self.disk.borrow().get(offset, len)
    }

    pub fn disk_fill(&self, offset: u64, len: u64, value: u8) {
        self.disk.borrow_mut().fill(offset, len, value);
    }

    // ----- internals -----

    fn violation(&self, what: String) {
        self.core.violation(what);
    }

    fn event(&self, e: Event) {
        self.log.borrow_mut().events.push(e);
    }

    fn virtio_command(&self) -> u16 {
        self.core.command(VIRTIO_FN)
    }

    fn in_mmio(&self, addr: u64) -> bool {
        self.cfg.has_caps() && (MMIO_BASE..MMIO_BASE + MMIO_LEN).contains(&addr)
    }

    /// Common checks of an MMIO access; false: the access goes nowhere.
    fn mmio_access_ok(&self, off: u64, width: usize) -> bool {
        self.log.borrow_mut().mmio_accesses += 1;
        let addr = MMIO_BASE + off;
        let end = addr + width as u64;
        let mapped = self
            .core
            .mapped
            .borrow()
            .iter()
            .any(|&(a, l)| a <= addr && end <= a + l);
        if !mapped {
            self.violation(format!(
                "MMIO access at {addr:#x} outside any map_mmio range"
            ));
        }
        if self.virtio_command() & CMD_MEMORY == 0 {
            self.violation(format!(
                "MMIO access at {addr:#x} with memory decoding disabled"
            ));
            return false;
        }
        true
    }

    fn modern_read(&self, off: u64, width: usize) -> u64 {
        if !self.mmio_access_ok(off, width) {
            return u64::MAX >> (64 - 8 * width);
        }
        let w = width as u64;
        if (COMMON_OFF..COMMON_OFF + u64::from(COMMON_LEN)).contains(&off) {
            self.common_read(off - COMMON_OFF, width)
        } else if off == ISR_OFF && width == 1 {
            let mut dev = self.dev.borrow_mut();
            let isr = dev.isr;
            dev.isr = 0;
            u64::from(isr)
        } else if off >= DEVICE_OFF && off + w <= DEVICE_OFF + u64::from(DEVICE_LEN) {
            self.device_config_read(off - DEVICE_OFF, width)
        } else {
            self.violation(format!("MMIO read of {width} bytes at BAR offset {off:#x}"));
            0
        }
    }

    fn modern_write(&self, off: u64, width: usize, value: u64) {
        if !self.mmio_access_ok(off, width) {
            return;
        }
        let w = width as u64;
        if (COMMON_OFF..COMMON_OFF + u64::from(COMMON_LEN)).contains(&off) {
            self.common_write(off - COMMON_OFF, width, value);
        } else if off >= NOTIFY_OFF && off + w <= NOTIFY_OFF + u64::from(NOTIFY_LEN) {
            let expected = NOTIFY_OFF + u64::from(QUEUE_NOTIFY_OFF) * u64::from(NOTIFY_MULTIPLIER);
            if off != expected || width != 2 {
                self.violation(format!(
                    "notification of {width} bytes at BAR offset {off:#x}, expected 2 bytes at {expected:#x}"
                ));
                return;
            }
            self.notify(value);
        } else {
            self.violation(format!(
                "MMIO write of {width} bytes at BAR offset {off:#x}"
            ));
        }
    }

    fn common_read(&self, off: u64, width: usize) -> u64 {
        let dev = self.dev.borrow();
        let q = dev.queue;
        let selected = dev.queue_select == 0;
        let value = match (off, width) {
            (0x00, 4) => u64::from(dev.device_feature_select),
            (0x04, 4) => match dev.device_feature_select {
                0 => self.cfg.features & 0xffff_ffff,
                1 => self.cfg.features >> 32,
                _ => 0,
            },
            (0x08, 4) => u64::from(dev.driver_feature_select),
            (0x0c, 4) => match dev.driver_feature_select {
                0 => dev.driver_features & 0xffff_ffff,
                1 => dev.driver_features >> 32,
                _ => 0,
            },
            (0x10, 2) => u64::from(dev.msix_config),
            (0x12, 2) => 1,
            (0x14, 1) => u64::from(dev.status),
            (0x15, 1) => u64::from(dev.generation),
            (0x16, 2) => u64::from(dev.queue_select),
            (0x18, 2) if selected => u64::from(q.size),
            (0x1a, 2) if selected => u64::from(q.vector),
            (0x1c, 2) if selected => u64::from(q.enabled),
            (0x1e, 2) if selected => u64::from(QUEUE_NOTIFY_OFF),
            (0x20, 4) if selected => q.desc & 0xffff_ffff,
            (0x24, 4) if selected => q.desc >> 32,
            (0x28, 4) if selected => q.driver & 0xffff_ffff,
            (0x2c, 4) if selected => q.driver >> 32,
            (0x30, 4) if selected => q.device & 0xffff_ffff,
            (0x34, 4) if selected => q.device >> 32,
            (0x18..=0x37, _) if !selected => 0,
            _ => {
                drop(dev);
                self.violation(format!(
                    "common cfg read of {width} bytes at offset {off:#x}"
                ));
                return 0;
            }
        };
        value
    }

    fn common_write(&self, off: u64, width: usize, value: u64) {
        let mut dev = self.dev.borrow_mut();
        let mut problems = Vec::new();
        let queue_field = (0x18..0x38).contains(&off);
        if queue_field {
            if dev.queue_select != 0 {
                problems.push(format!(
                    "queue register {off:#x} written for missing queue {}",
                    dev.queue_select
                ));
            } else if dev.status & S_FEATURES_OK == 0 {
                problems.push(format!(
                    "queue register {off:#x} written before FEATURES_OK"
                ));
            } else if dev.queue.enabled {
                problems.push(format!(
                    "queue register {off:#x} written while the queue is enabled"
                ));
            }
        }
        let low = |v: u64| u32::try_from(v & 0xffff_ffff).unwrap_or(0);
        let set_low =
            |field: &mut u64, v: u64| *field = (*field & !0xffff_ffff) | (v & 0xffff_ffff);
        let set_high = |field: &mut u64, v: u64| *field = (*field & 0xffff_ffff) | (v << 32);
        match (off, width) {
            (0x00, 4) => dev.device_feature_select = low(value),
            (0x08, 4) => dev.driver_feature_select = low(value),
            (0x0c, 4) => {
                if dev.status & S_FEATURES_OK != 0 {
                    problems.push("driver features written after FEATURES_OK".into());
                }
                match dev.driver_feature_select {
                    0 => set_low(&mut dev.driver_features, value),
                    1 => set_high(&mut dev.driver_features, value),
                    s => {
                        if value != 0 {
                            problems.push(format!("driver feature word {s} set to {value:#x}"));
                        }
                    }
                }
            }
            (0x10, 2) => dev.msix_config = u16::try_from(value).unwrap_or(0),
            (0x14, 1) => {
                drop(dev);
                self.write_status(u8::try_from(value).unwrap_or(0), true);
                for p in problems {
                    self.violation(p);
                }
                return;
            }
            (0x16, 2) => dev.queue_select = u16::try_from(value).unwrap_or(0),
            (0x18, 2) if dev.queue_select == 0 => {
                let size = u16::try_from(value).unwrap_or(0);
                if size == 0 || size > self.cfg.queue_max || !size.is_power_of_two() {
                    problems.push(format!(
                        "queue size {size} (device maximum {})",
                        self.cfg.queue_max
                    ));
                }
                dev.queue.size = size;
            }
            (0x1a, 2) if dev.queue_select == 0 => {
                dev.queue.vector = u16::try_from(value).unwrap_or(0);
            }
            (0x1c, 2) if dev.queue_select == 0 => {
                if value != 1 {
                    problems.push(format!("queue_enable written with {value}"));
                } else {
                    let q = dev.queue;
                    if !q.desc.is_multiple_of(16)
                        || !q.driver.is_multiple_of(2)
                        || !q.device.is_multiple_of(4)
                    {
                        problems.push(format!(
                            "misaligned rings: desc {:#x} driver {:#x} device {:#x}",
                            q.desc, q.driver, q.device
                        ));
                    }
                    if q.desc == 0 || q.driver == 0 || q.device == 0 {
                        problems.push("queue enabled without ring addresses".into());
                    }
                    dev.queue.enabled = true;
                }
            }
            (0x20, 4) if dev.queue_select == 0 => set_low(&mut dev.queue.desc, value),
            (0x24, 4) if dev.queue_select == 0 => set_high(&mut dev.queue.desc, value),
            (0x28, 4) if dev.queue_select == 0 => set_low(&mut dev.queue.driver, value),
            (0x2c, 4) if dev.queue_select == 0 => set_high(&mut dev.queue.driver, value),
            (0x30, 4) if dev.queue_select == 0 => set_low(&mut dev.queue.device, value),
            (0x34, 4) if dev.queue_select == 0 => set_high(&mut dev.queue.device, value),
            (0x18..=0x37, _) if dev.queue_select != 0 => {}
            _ => problems.push(format!(
                "common cfg write of {width} bytes at offset {off:#x} ({value:#x})"
            )),
        }
        drop(dev);
        for p in problems {
            self.violation(p);
        }
    }

    fn device_config_read(&self, off: u64, width: usize) -> u64 {
        let bytes = self.dev.borrow().config_bytes(&self.cfg);
        let o = idx(off);
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(&bytes[o..o + width]);
        if off == 0 && self.knobs.config_flaps.get() > 0 {
            self.knobs
                .config_flaps
                .set(self.knobs.config_flaps.get() - 1);
            let mut dev = self.dev.borrow_mut();
            let other = self.knobs.flap_capacity.replace(dev.capacity);
            dev.capacity = other;
            dev.generation = dev.generation.wrapping_add(1);
        }
        u64::from_le_bytes(b)
    }

    fn write_status(&self, value: u8, modern: bool) {
        self.event(Event::Status(value));
        let mut dev = self.dev.borrow_mut();
        if value == 0 {
            if !self.knobs.reset_stuck.get() {
                dev.reset(&self.cfg);
                drop(dev);
                self.in_flight.clear();
                self.log.borrow_mut().resets += 1;
                self.event(Event::Reset);
            }
            return;
        }
        let old = dev.status;
        let mut problems = Vec::new();
        if old & !value != 0 {
            problems.push(format!(
                "driver cleared device status bits: {old:#x} -> {value:#x}"
            ));
        }
        let added = value & !old;
        let mut new = value;
        if added & S_DRIVER != 0 && value & S_ACKNOWLEDGE == 0 {
            problems.push("DRIVER set without ACKNOWLEDGE".into());
        }
        if added & S_FEATURES_OK != 0 {
            if !modern {
                problems.push("FEATURES_OK set through the legacy interface".into());
            } else {
                let drv = dev.driver_features;
                if drv & !self.cfg.features != 0 {
                    problems.push(format!(
                        "driver accepted features the device does not offer: {:#x}",
                        drv & !self.cfg.features
                    ));
                }
                let acceptable = drv & !self.cfg.features == 0
                    && drv & F_VERSION_1 != 0
                    && drv & self.cfg.required_features == self.cfg.required_features;
                if !acceptable {
                    new &= !S_FEATURES_OK;
                    self.log.borrow_mut().features_rejected += 1;
                }
            }
        }
        if added & S_DRIVER_OK != 0 {
            if modern && new & S_FEATURES_OK == 0 {
                problems.push("DRIVER_OK without FEATURES_OK".into());
            }
            if new & (S_ACKNOWLEDGE | S_DRIVER) != S_ACKNOWLEDGE | S_DRIVER {
                problems.push("DRIVER_OK without ACKNOWLEDGE|DRIVER".into());
            }
        }
        // Bits the device owns stay set (NEEDS_RESET).
        dev.status = new | (old & S_NEEDS_RESET);
        drop(dev);
        for p in problems {
            self.violation(p);
        }
    }

    // ----- legacy I/O -----

    fn io_offset(&self, port: u16, width: u16) -> Option<u16> {
        self.log.borrow_mut().port_accesses += 1;
        if !self.cfg.has_io() || port < IO_BASE || port + width > IO_BASE + IO_LEN {
            self.violation(format!("access to unclaimed port {port:#x}"));
            return None;
        }
        if self.virtio_command() & CMD_IO == 0 {
            self.violation(format!(
                "port {port:#x} accessed with I/O decoding disabled"
            ));
            return None;
        }
        if !port.is_multiple_of(width) {
            self.violation(format!("misaligned {width}-byte port access at {port:#x}"));
        }
        Some(port - IO_BASE)
    }

    /// Offset of the device-specific configuration in the legacy block.
    fn legacy_config_offset(&self) -> u16 {
        if self.msix_enabled() {
            24
        } else {
            20
        }
    }

    fn legacy_read(&self, port: u16, width: u16) -> u32 {
        let Some(off) = self.io_offset(port, width) else {
            return u32::MAX >> (32 - 8 * u32::from(width));
        };
        let cfg_off = self.legacy_config_offset();
        let mut dev = self.dev.borrow_mut();
        let selected = dev.queue_select == 0;
        let value = match (off, width) {
            (0, 4) => u32::try_from(self.cfg.features & 0xffff_ffff).unwrap_or(0),
            (4, 4) => u32::try_from(dev.driver_features & 0xffff_ffff).unwrap_or(0),
            (8, 4) if selected => u32::try_from(dev.queue.desc >> 12).unwrap_or(0),
            (8, 4) => 0,
            (12, 2) => {
                if selected {
                    u32::from(self.cfg.queue_max)
                } else {
                    0
                }
            }
            (14, 2) => u32::from(dev.queue_select),
            (18, 1) => u32::from(dev.status),
            (19, 1) => {
                let isr = dev.isr;
                dev.isr = 0;
                u32::from(isr)
            }
            (20, 2) if cfg_off == 24 => u32::from(dev.msix_config),
            (22, 2) if cfg_off == 24 => u32::from(dev.queue.vector),
            (o, w) if o >= cfg_off && o + w <= cfg_off + 24 => {
                drop(dev);
                let v = self.device_config_read(u64::from(o - cfg_off), usize::from(w));
                return u32::try_from(v).unwrap_or(0);
            }
            _ => {
                drop(dev);
                self.violation(format!("legacy read of {width} bytes at offset {off}"));
                return 0;
            }
        };
        value
    }

    fn legacy_write(&self, port: u16, width: u16, value: u32) {
        let Some(off) = self.io_offset(port, width) else {
            return;
        };
        let cfg_off = self.legacy_config_offset();
        let mut dev = self.dev.borrow_mut();
        let mut problems = Vec::new();
        match (off, width) {
            (4, 4) => {
                let v = u64::from(value);
                if v & !self.cfg.features != 0 {
                    problems.push(format!(
                        "driver accepted features the device does not offer: {:#x}",
                        v & !self.cfg.features
                    ));
                }
                if dev.status & S_DRIVER_OK != 0 {
                    problems.push("guest features written after DRIVER_OK".into());
                }
                dev.driver_features = v;
            }
            (8, 4) => {
                if dev.queue_select != 0 {
                    problems.push(format!(
                        "PFN written for missing queue {}",
                        dev.queue_select
                    ));
                } else if value == 0 {
                    dev.queue.enabled = false;
                } else {
                    if dev.status & S_DRIVER == 0 {
                        problems.push("queue PFN written before DRIVER".into());
                    }
                    let n = u64::from(self.cfg.queue_max);
                    let desc = u64::from(value) << 12;
                    let avail = desc + 16 * n;
                    let used = (avail + 6 + 2 * n).div_ceil(4096) * 4096;
                    dev.queue = Queue {
                        size: self.cfg.queue_max,
                        enabled: true,
                        desc,
                        driver: avail,
                        device: used,
                        ..dev.queue
                    };
                }
            }
            (14, 2) => dev.queue_select = u16::try_from(value).unwrap_or(0),
            (16, 2) => {
                drop(dev);
                self.notify(u64::from(value));
                return;
            }
            (18, 1) => {
                drop(dev);
                self.write_status(u8::try_from(value).unwrap_or(0), false);
                return;
            }
            (20, 2) if cfg_off == 24 => dev.msix_config = u16::try_from(value).unwrap_or(0),
            (22, 2) if cfg_off == 24 => dev.queue.vector = u16::try_from(value).unwrap_or(0),
            _ => problems.push(format!(
                "legacy write of {width} bytes at offset {off} ({value:#x})"
            )),
        }
        drop(dev);
        for p in problems {
            self.violation(p);
        }
    }

    // ----- the device at work -----

    fn notify(&self, queue: u64) {
        self.log.borrow_mut().notifies += 1;
        self.event(Event::Notify);
        if queue != 0 {
            self.violation(format!("notification for missing queue {queue}"));
            return;
        }
        let status = self.dev.borrow().status;
        if status & S_DRIVER_OK == 0 {
            self.violation(format!("notification with device status {status:#x}"));
            return;
        }
        if !self.dev.borrow().queue.enabled {
            self.violation("notification for a disabled queue".into());
            return;
        }
        if self.virtio_command() & CMD_BUS_MASTER == 0 {
            self.violation("notification while bus mastering is disabled".into());
            return;
        }
        if self.knobs.never_complete.get() {
            return;
        }
        self.process_queue();
    }

    /// Take every newly available chain; complete them now if so set.
    fn process_queue(&self) {
        let q = self.dev.borrow().queue;
        let avail_idx = self.ram_u16(q.driver + 2);
        let pending = avail_idx.wrapping_sub(q.last_avail);
        if pending > q.size {
            self.violation(format!(
                "available index {avail_idx} is {pending} entries ahead (queue size {})",
                q.size
            ));
            return;
        }
        let mut last_avail = q.last_avail;
        while last_avail != avail_idx {
            if let Some(budget) = self.knobs.stall_after.get() {
                if budget == 0 {
                    break;
                }
                self.knobs.stall_after.set(Some(budget - 1));
            }
            let slot = u64::from(last_avail % q.size);
            let head = self.ram_u16(q.driver + 4 + 2 * slot);
            let chain = self.take_chain(&q, head);
            let seq = self.in_flight.next_seq();
            self.in_flight.push(InFlight { seq, head, chain });
            last_avail = last_avail.wrapping_add(1);
        }
        self.dev.borrow_mut().queue.last_avail = last_avail;
        if self.knobs.completion.get() == Completion::AtSubmit {
            self.complete_ready(false);
        }
    }

    /// The driver reads the used index: complete what the policy says.
    fn used_ring_polled(&self) {
        if let Some(newest_first) = self.knobs.completion.get().on_poll() {
            self.complete_ready(newest_first);
        }
    }

    /// Complete every request in flight (but a lost one).
    fn complete_ready(&self, newest_first: bool) {
        let lost = self.knobs.lose_request.get();
        for request in self.in_flight.take_all_but(lost, newest_first) {
            self.complete(&request);
        }
    }

    /// Do a request and put it in the used ring.
    fn complete(&self, request: &InFlight) {
        let q = self.dev.borrow().queue;
        if !q.enabled {
            return;
        }
        let written = match &request.chain {
            None => 0,
            Some(chain) => {
                // The device may read the descriptors at any time until it
                // completes the request: they must not have changed.
                let again = self.take_chain_quietly(&q, request.head);
                if again.as_ref() != Some(chain) {
                    self.violation(format!(
                        "request {} (head {}) changed while in flight",
                        request.seq, request.head
                    ));
                }
                self.run_chain(request.seq, chain)
            }
        };
        let used_idx = q.used_idx;
        let used_slot = u64::from(used_idx % q.size);
        let id = request.head.wrapping_add(self.knobs.used_id_offset.get());
        self.core
            .ram_write(q.device + 4 + 8 * used_slot, 4, u64::from(id));
        self.core
            .ram_write(q.device + 8 + 8 * used_slot, 4, u64::from(written));
        let used_idx = used_idx.wrapping_add(1);
        self.core.ram_write(q.device + 2, 2, u64::from(used_idx));
        let mut dev = self.dev.borrow_mut();
        dev.queue.used_idx = used_idx;
        if self.knobs.needs_reset_on_complete.get() {
            dev.status |= S_NEEDS_RESET;
        }
    }

    fn ram_u16(&self, addr: u64) -> u16 {
        u16::try_from(self.core.ram_read(addr, 2)).unwrap_or(0)
    }

    fn ram_u32(&self, addr: u64) -> u32 {
        u32::try_from(self.core.ram_read(addr, 4)).unwrap_or(0)
    }

    fn read_desc(&self, base: u64) -> Desc {
        Desc {
            addr: self.core.ram_read(base, 8),
            len: self.ram_u32(base + 8),
            flags: self.ram_u16(base + 12),
            next: self.ram_u16(base + 14),
        }
    }

    /// Parse and check a newly available chain, and check that it shares
    /// nothing the driver owns with the requests in flight.
    fn take_chain(&self, q: &Queue, head: u16) -> Option<Chain> {
        let chain = self.parse_chain(q, head, true)?;
        let header_at = chain.descs[0].addr;
        let status_at = chain.descs[chain.descs.len() - 1].addr;
        for other in self.in_flight.borrow().iter() {
            let Some(o) = &other.chain else { continue };
            if let Some(d) = chain.ring.iter().find(|d| o.ring.contains(d)) {
                self.violation(format!(
                    "descriptor {d} reused while request {} is in flight",
                    other.seq
                ));
            }
            let overlaps = |a: (u64, u64), b: (u64, u64)| a.0 < b.0 + b.1 && b.0 < a.0 + a.1;
            let o_header = (o.descs[0].addr, 16);
            let o_status = (o.descs[o.descs.len() - 1].addr, 1);
            let mine = [(header_at, 16), (status_at, 1)]
                .into_iter()
                .chain(chain.table);
            let theirs = [o_header, o_status];
            for a in mine {
                for b in theirs.into_iter().chain(o.table) {
                    if overlaps(a, b) {
                        self.violation(format!(
                            "request memory {a:x?} overlaps request {}'s {b:x?}, in flight",
                            other.seq
                        ));
                    }
                }
            }
        }
        if chain.table.is_some() {
            self.log.borrow_mut().indirect_requests += 1;
        }
        Some(chain)
    }

    /// The chain at `head` again, without recording anything.
    fn take_chain_quietly(&self, q: &Queue, head: u16) -> Option<Chain> {
        self.parse_chain(q, head, false)
    }

    /// Walk the chain at `head` (through its indirect table, if any);
    /// with `strict`, record what the spec forbids.
    fn parse_chain(&self, q: &Queue, head: u16, strict: bool) -> Option<Chain> {
        let complain = |what: String| {
            if strict {
                self.violation(what);
            }
        };
        if head >= q.size {
            complain(format!("head descriptor {head} >= queue size {}", q.size));
            return None;
        }
        let negotiated = self.dev.borrow().driver_features;
        let first = self.read_desc(q.desc + 16 * u64::from(head));
        let (table_base, table_len, table) = if first.flags & DESC_F_INDIRECT != 0 {
            if negotiated & F_INDIRECT_DESC == 0 {
                complain("indirect descriptor without VIRTIO_F_INDIRECT_DESC".into());
                return None;
            }
            if first.flags & DESC_F_NEXT != 0 {
                complain("indirect descriptor with NEXT set".into());
                return None;
            }
            let entries = u64::from(first.len) / 16;
            if first.len == 0 || u64::from(first.len) % 16 != 0 || !first.addr.is_multiple_of(16) {
                complain(format!("indirect table {first:?}"));
                return None;
            }
            if entries > u64::from(q.size) {
                complain(format!(
                    "indirect table of {entries} entries, longer than the queue ({})",
                    q.size
                ));
            }
            (
                first.addr,
                entries,
                Some((first.addr, u64::from(first.len))),
            )
        } else {
            (q.desc, u64::from(q.size), None)
        };
        let mut ring = vec![head];
        let mut descs = Vec::new();
        let mut i = if table.is_some() { 0 } else { head };
        loop {
            if descs.len() as u64 >= table_len {
                complain("descriptor chain longer than its table (loop?)".into());
                return None;
            }
            let d = self.read_desc(table_base + 16 * u64::from(i));
            descs.push(d);
            if d.flags & DESC_F_INDIRECT != 0 {
                complain(if table.is_some() {
                    "indirect descriptor inside an indirect table".into()
                } else if negotiated & F_INDIRECT_DESC == 0 {
                    "indirect descriptor without VIRTIO_F_INDIRECT_DESC".into()
                } else {
                    "indirect descriptor inside a chain".into()
                });
                return None;
            }
            if d.flags & DESC_F_NEXT == 0 {
                break;
            }
            if u64::from(d.next) >= table_len {
                complain(format!("next descriptor {} >= table size", d.next));
                return None;
            }
            i = d.next;
            if table.is_none() {
                ring.push(i);
            }
        }
        if descs.len() < 2 {
            complain(format!("chain of {} descriptor(s)", descs.len()));
            return None;
        }
        let header = descs[0];
        let status_desc = descs[descs.len() - 1];
        if header.flags & DESC_F_WRITE != 0 || header.len < 16 {
            complain(format!("bad request header descriptor {header:?}"));
            return None;
        }
        if status_desc.flags & DESC_F_WRITE == 0 || status_desc.len < 1 {
            complain(format!("bad status descriptor {status_desc:?}"));
            return None;
        }
        let header_bytes = self.core.mem.borrow().get(header.addr, 16);
        Some(Chain {
            ring,
            table,
            descs,
            header: header_bytes,
        })
    }

    /// Execute a parsed request; returns the used length.
    fn run_chain(&self, seq: u64, chain: &Chain) -> u32 {
        let descs = &chain.descs;
        let header = descs[0];
        let status_desc = descs[descs.len() - 1];
        let kind = self.ram_u32(header.addr);
        let reserved = self.ram_u32(header.addr + 4);
        let sector = self.core.ram_read(header.addr + 8, 8);
        if reserved != 0 {
            self.violation(format!("request header reserved field {reserved:#x}"));
        }
        let data = &descs[1..descs.len() - 1];
        let status = match self.knobs.fail_request.get() {
            Some((n, status)) if n == seq => status,
            _ => self.execute(kind, sector, data),
        };
        self.log.borrow_mut().requests.push(Completed {
            seq,
            kind,
            sector,
            segments: data.iter().map(|d| (d.addr, d.len)).collect(),
            status,
        });
        if !self.knobs.skip_status_write.get() {
            self.core.ram_write(
                status_desc.addr + u64::from(status_desc.len) - 1,
                1,
                u64::from(status),
            );
        }
        let data_written: u32 = if kind == T_IN && status == BLK_OK {
            data.iter().map(|d| d.len).sum()
        } else {
            0
        };
        data_written + 1
    }

    fn injected_failure(&self) -> Option<u8> {
        let status = self.knobs.fail_status.get()?;
        let after = self.knobs.fail_after.get();
        if after > 0 {
            self.knobs.fail_after.set(after - 1);
            None
        } else {
            Some(status)
        }
    }

    fn execute(&self, kind: u32, sector: u64, data: &[Desc]) -> u8 {
        let negotiated = self.dev.borrow().driver_features;
        let capacity = self.dev.borrow().capacity;
        if negotiated & F_SEG_MAX != 0 && data.len() > idx(u64::from(self.cfg.seg_max)) {
            self.violation(format!(
                "{} data segments, seg_max {}",
                data.len(),
                self.cfg.seg_max
            ));
        }
        if negotiated & F_SIZE_MAX != 0 {
            for d in data.iter().filter(|d| d.len > self.cfg.size_max) {
                self.violation(format!(
                    "segment of {} bytes, size_max {}",
                    d.len, self.cfg.size_max
                ));
            }
        }
        match kind {
            T_IN | T_OUT => {
                if data.is_empty() {
                    self.violation("read/write request without data".into());
                }
                let device_writes = kind == T_IN;
                for d in data {
                    if (d.flags & DESC_F_WRITE != 0) != device_writes {
                        self.violation(format!(
                            "data descriptor direction wrong for type {kind}: {d:?}"
                        ));
                    }
                }
                if let Some(status) = self.injected_failure() {
                    return status;
                }
                let total: u64 = data.iter().map(|d| u64::from(d.len)).sum();
                let fits = sector
                    .checked_mul(512)
                    .and_then(|start| start.checked_add(total))
                    .is_some_and(|end| end <= capacity.saturating_mul(512));
                let block = u64::from(self.cfg.blk_size.max(512));
                let aligned = total.is_multiple_of(block) && (sector * 512).is_multiple_of(block);
                if !aligned || !fits {
                    return BLK_IOERR;
                }
                if kind == T_OUT && self.cfg.features & F_RO != 0 {
                    return BLK_IOERR;
                }
                let mut pos = sector * 512;
                for d in data {
                    let mut buf = vec![0u8; idx(u64::from(d.len))];
                    if kind == T_IN {
                        self.disk.borrow().read(pos, &mut buf);
                        self.core.mem.borrow_mut().write(d.addr, &buf);
                    } else {
                        self.core.mem.borrow().read(d.addr, &mut buf);
                        self.disk.borrow_mut().write(pos, &buf);
                    }
                    pos += u64::from(d.len);
                }
                BLK_OK
            }
            T_FLUSH => {
                if negotiated & F_FLUSH == 0 {
                    self.violation("FLUSH without VIRTIO_BLK_F_FLUSH".into());
                    return BLK_UNSUPP;
                }
                if !data.is_empty() {
                    self.violation("FLUSH with data buffers".into());
                }
                if sector != 0 {
                    self.violation(format!("FLUSH with sector {sector}"));
                }
                if let Some(status) = self.injected_failure() {
                    return status;
                }
                self.log.borrow_mut().flushes += 1;
                BLK_OK
            }
            other => {
                self.violation(format!("request type {other}"));
                BLK_UNSUPP
            }
        }
    }
}

/// The virtio-blk function's configuration space for `cfg`.
fn virtio_config_space(cfg: &FakeConfig) -> ConfigSpace {
    let device = if cfg.mode == Mode::Modern {
        0x1042
    } else {
        0x1001
    };
    let mut c = ConfigSpace::new(0x1af4, device);
    c.set16(0x04, cfg.initial_command);
    c.set8(0x08, u8::from(cfg.mode == Mode::Modern)); // revision
    c.set8(0x0b, 0x01); // mass storage
    c.set8(0x0e, 0x00); // single-function type-0 header
    if cfg.has_io() {
        c.set32(0x10, u32::from(IO_BASE) | 1);
    }
    c.set32(0x14, MSIX_BAR);
    if cfg.has_caps() {
        c.set32(
            0x20,
            u32::try_from(MMIO_BASE & 0xffff_ffff).unwrap_or(0) | 0xc,
        );
        c.set32(0x24, u32::try_from(MMIO_BASE >> 32).unwrap_or(0));
    }
    c.set16(0x2c, 0x1af4);
    c.set16(0x2e, 2);

    // MSI-X: 2 vectors, table and PBA in BAR 1.
    let msix_control: u16 = 1 | if cfg.msix_enabled { 1 << 15 } else { 0 };
    let mut msix = Vec::new();
    msix.extend_from_slice(&msix_control.to_le_bytes());
    msix.extend_from_slice(&1u32.to_le_bytes());
    msix.extend_from_slice(&0x801u32.to_le_bytes());
    c.add_capability(CAP_MSIX, 0x11, &msix);
    c.set_writable(CAP_MSIX + 3, 0xc0);

    // MSI, 64-bit capable.
    let msi_control: u16 = 0x80 | u16::from(cfg.msi_enabled);
    let mut msi = Vec::new();
    msi.extend_from_slice(&msi_control.to_le_bytes());
    msi.extend_from_slice(&[0u8; 10]);
    c.add_capability(CAP_MSI, 0x05, &msi);
    c.set_writable(CAP_MSI + 2, 0x71);
    for o in CAP_MSI + 4..CAP_MSI + 14 {
        c.set_writable(o, 0xff);
    }

    if cfg.has_caps() {
        let vendor_cap = |cfg_type: u8, offset: u64, length: u32, extra: Option<u32>| {
            let cap_len: u8 = if extra.is_some() { 20 } else { 16 };
            let mut b = vec![cap_len, cfg_type, 4, 0, 0, 0];
            b.extend_from_slice(&u32::try_from(offset).unwrap_or(0).to_le_bytes());
            b.extend_from_slice(&length.to_le_bytes());
            if let Some(x) = extra {
                b.extend_from_slice(&x.to_le_bytes());
            }
            b
        };
        c.add_capability(
            CAP_COMMON,
            0x09,
            &vendor_cap(1, COMMON_OFF, COMMON_LEN, None),
        );
        c.add_capability(CAP_ISR, 0x09, &vendor_cap(3, ISR_OFF, 1, None));
        c.add_capability(
            CAP_NOTIFY,
            0x09,
            &vendor_cap(2, NOTIFY_OFF, cfg.notify_len, Some(NOTIFY_MULTIPLIER)),
        );
        c.add_capability(
            CAP_DEVICE,
            0x09,
            &vendor_cap(4, DEVICE_OFF, DEVICE_LEN, None),
        );
    }
    c
}

/// A register window the fake machine handed out.
#[derive(Debug)]
pub struct FakeMmio {
    addr: u64,
    len: u64,
}

/// A port range the fake machine handed out.
#[derive(Debug)]
pub struct FakePorts {
    base: u16,
    len: u16,
}

/// A DMA allocation of the fake machine.
#[derive(Debug)]
pub struct FakeDma {
    addr: u64,
    len: u64,
}

impl Region for FakeMmio {
    fn len(&self) -> u64 {
        self.len
    }
}

impl Region for FakePorts {
    fn len(&self) -> u64 {
        u64::from(self.len)
    }
}

impl Region for FakeDma {
    fn len(&self) -> u64 {
        self.len
    }
}

impl DmaRegion for FakeDma {
    fn device_address(&self) -> u64 {
        self.addr
    }
}

fn mask(width: Width) -> u64 {
    u64::MAX >> (64 - 8 * width.bytes())
}

impl DeviceModel for VirtioBlk {
    fn core(&self) -> &Core {
        &self.core
    }

    fn accept_window(
        &self,
        function: PciAddress,
        _bar: u8,
        _offset: u64,
        addr: u64,
        len: u64,
    ) -> bool {
        if !self.cfg.map_mmio_ok {
            return false;
        }
        if function == VIRTIO_FN && (addr < MMIO_BASE || addr + len > MMIO_BASE + MMIO_LEN) {
            self.violation(format!(
                "register window {addr:#x}+{len:#x} outside the device's BAR"
            ));
        }
        true
    }

    fn register_read(&self, addr: u64, width: Width) -> u64 {
        self.core.check_alignment(addr, width.bytes());
        if !self.in_mmio(addr) {
            self.violation(format!("MMIO read at {addr:#x}, outside the device"));
            return mask(width);
        }
        self.modern_read(addr - MMIO_BASE, idx(width.bytes()))
    }

    fn register_write(&self, addr: u64, width: Width, value: u64) {
        if width == Width::U64 {
            self.violation(format!("64-bit write to MMIO at {addr:#x}"));
            return;
        }
        self.core.check_alignment(addr, width.bytes());
        if !self.in_mmio(addr) {
            self.violation(format!("MMIO write at {addr:#x}, outside the device"));
            return;
        }
        self.modern_write(addr - MMIO_BASE, idx(width.bytes()), value);
    }

    fn accept_ports(&self, _function: PciAddress, _bar: u8) -> bool {
        true
    }

    fn io_read(&self, port: u16, width: Width) -> u64 {
        let width = u16::try_from(width.bytes()).expect("at most 8");
        u64::from(self.legacy_read(port, width))
    }

    fn io_write(&self, port: u16, width: Width, value: u64) {
        let value = u32::try_from(value).expect("ports take at most 32 bits");
        self.legacy_write(
            port,
            u16::try_from(width.bytes()).expect("at most 8"),
            value,
        );
    }

    fn command_written(&self, function: PciAddress, _before: u16, after: u16) {
        if function == VIRTIO_FN {
            self.event(Event::Command(after));
        }
    }

    fn dma_reading(&self, addr: u64) {
        let q = self.dev.borrow().queue;
        if q.enabled && addr == q.device + 2 {
            self.used_ring_polled();
        }
    }
}

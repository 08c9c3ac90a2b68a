//! The fake `Platform` every device model shares: sparse physical memory
//! with a DMA bump allocator, a PCI configuration space per function, a
//! clock that advances on every read, the register windows handed out and
//! the log of *violations*. Its PCI configuration access reaches segment 0
//! (every bus) unless a test lists other segments ([`Fake::set_segments`]);
//! a configuration access outside them is a violation, so a scan that
//! strays from the listed segments and bus ranges is caught.
//!
//! A device model (virtio-blk, NVMe, AHCI) implements [`DeviceModel`]: it
//! owns a [`Core`] and answers only what is its own — its register
//! accesses, which windows it lets the driver map, what a PCI command
//! write or a DMA read sets off. [`Fake`] wraps a model into a `Platform`
//! and does the rest (bounds of every region access, config space, DMA,
//! the clock) the same way for all of them, so a new device adds only its
//! model.

use super::{idx, key, mask, ConfigSpace, FakeDma, FakeMmio, FakePorts, Sparse};
use minicap_drivers::access::{in_bounds, Width};
use minicap_drivers::pci::{self, Bar, PciAddress, PciSegments};
use minicap_drivers::Platform;
use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::ops::Deref;

/// What every fake machine has besides its device.
pub struct Core {
    pub(super) mem: RefCell<Sparse>,
    pub(super) pci: RefCell<BTreeMap<(u16, u8, u8, u8), ConfigSpace>>,
    /// The segments configuration access reaches.
    segments: Cell<PciSegments>,
    pub(super) clock: Cell<u64>,
    /// How far the clock moves on each `now_us`.
    clock_step_us: Cell<u64>,
    dma_next: Cell<u64>,
    dma_base: u64,
    dma_limit: u64,
    violations: RefCell<Vec<String>>,
    /// Register windows handed out, as (address, length).
    pub(super) mapped: RefCell<Vec<(u64, u64)>>,
    dma_flushes: RefCell<Vec<u64>>,
}

impl Core {
    /// An empty bus; DMA allocations come from `dma_base` for `dma_limit`
    /// bytes; each `now_us` moves the clock `clock_step_us` on.
    pub fn new(dma_base: u64, dma_limit: u64, clock_step_us: u64) -> Self {
        Self {
            mem: RefCell::default(),
            pci: RefCell::default(),
            segments: Cell::new(PciSegments::LEGACY),
            clock: Cell::new(0),
            clock_step_us: Cell::new(clock_step_us),
            dma_next: Cell::new(dma_base),
            dma_base,
            dma_limit,
            violations: RefCell::default(),
            mapped: RefCell::default(),
            dma_flushes: RefCell::default(),
        }
    }

    /// Whether configuration access reaches `f`; a violation if not.
    fn reaches(&self, f: PciAddress) -> bool {
        let reached = self.segments.get().all().iter().any(|s| s.holds(f));
        if !reached {
            self.violation(format!(
                "config access to {f}, outside the segments and buses the platform reaches"
            ));
        }
        reached
    }

    pub fn violation(&self, what: String) {
        self.violations.borrow_mut().push(what);
    }

    /// The PCI command register of `f` (0 if absent).
    pub fn command(&self, f: PciAddress) -> u16 {
        self.pci.borrow().get(&key(f)).map_or(0, |c| c.get16(0x04))
    }

    /// Whether [addr, addr + len) overlaps a window already handed out.
    pub fn overlaps_mapped(&self, addr: u64, len: u64) -> bool {
        self.mapped
            .borrow()
            .iter()
            .any(|&(a, l)| addr < a + l && a < addr + len)
    }

    pub fn ram_read(&self, addr: u64, width: usize) -> u64 {
        let mut b = [0u8; 8];
        self.mem.borrow().read(addr, &mut b[..width]);
        u64::from_le_bytes(b)
    }

    pub fn ram_write(&self, addr: u64, width: usize, value: u64) {
        self.mem
            .borrow_mut()
            .write(addr, &value.to_le_bytes()[..width]);
    }

    /// Bounds of a region access; false: recorded, the access goes nowhere.
    fn region_access_ok(&self, what: &str, len: u64, offset: u64, width: Width) -> bool {
        if in_bounds(len, offset, width) {
            return true;
        }
        self.violation(format!(
            "{what} access of {} bytes at offset {offset:#x} outside its region of {len:#x} bytes",
            width.bytes()
        ));
        false
    }

    pub fn check_alignment(&self, addr: u64, width: u64) {
        if !addr.is_multiple_of(width) {
            self.violation(format!("misaligned {width}-byte access at {addr:#x}"));
        }
    }
}

/// What a device model answers for itself; [`Fake`] does the rest.
pub trait DeviceModel {
    fn core(&self) -> &Core;

    /// May the driver map `len` bytes at `addr` (`offset` into `bar` of
    /// `function`, a memory BAR)? Recording violations is the model's.
    fn accept_window(
        &self,
        function: PciAddress,
        bar: u8,
        offset: u64,
        addr: u64,
        len: u64,
    ) -> bool;

    /// A register read at `addr`, inside a window the model accepted.
    fn register_read(&self, addr: u64, width: Width) -> u64;

    /// A register write at `addr`, inside a window the model accepted.
    fn register_write(&self, addr: u64, width: Width, value: u64);

    /// May the driver claim the I/O BAR `bar` of `function`? (No, unless
    /// the model has ports.)
    fn accept_ports(&self, function: PciAddress, bar: u8) -> bool {
        self.core()
            .violation(format!("claim_ports of {function} BAR {bar}: no I/O ports"));
        false
    }

    /// A port read at `port`, inside a range the model handed out.
    fn io_read(&self, port: u16, width: Width) -> u64 {
        let _ = port;
        self.core().violation("port read".into());
        mask(width)
    }

    /// A port write at `port`, inside a range the model handed out.
    fn io_write(&self, port: u16, width: Width, value: u64) {
        let _ = (port, width, value);
        self.core().violation("port write".into());
    }

    /// The command register of `function` went from `before` to `after`.
    fn command_written(&self, function: PciAddress, before: u16, after: u16) {
        let _ = (function, before, after);
    }

    /// The driver is about to read `addr` of its DMA memory (a poll the
    /// model may answer by completing requests first).
    fn dma_reading(&self, addr: u64) {
        let _ = addr;
    }
}

/// A fake machine: the shared platform around device model `D`.
pub struct Fake<D>(pub(super) D);

impl<D> Deref for Fake<D> {
    type Target = D;

    fn deref(&self) -> &D {
        &self.0
    }
}

impl<D: DeviceModel> Fake<D> {
    fn core(&self) -> &Core {
        self.0.core()
    }

    pub fn violations(&self) -> Vec<String> {
        self.core().violations.borrow().clone()
    }

    /// Panic if the driver did anything the device model objects to.
    #[track_caller]
    pub fn assert_clean(&self) {
        let v = self.violations();
        assert!(v.is_empty(), "protocol violations:\n  {}", v.join("\n  "));
    }

    /// Register windows handed out so far, as (address, length).
    pub fn mapped(&self) -> Vec<(u64, u64)> {
        self.core().mapped.borrow().clone()
    }

    /// DMA flushes (`Platform::dma_flush`) so far, by address.
    pub fn dma_flushes(&self) -> Vec<u64> {
        self.core().dma_flushes.borrow().clone()
    }

    pub fn now(&self) -> u64 {
        self.core().clock.get()
    }

    /// From now on each `now_us` moves the clock this far.
    pub fn set_clock_step_us(&self, us: u64) {
        self.core().clock_step_us.set(us);
    }

    /// Next address the DMA allocator would consider.
    pub fn dma_next(&self) -> u64 {
        self.core().dma_next.get()
    }

    /// The DMA memory handed out so far, as [start, end).
    pub fn dma_range(&self) -> (u64, u64) {
        (self.core().dma_base, self.dma_next())
    }

    /// From now on configuration access reaches these segments only.
    pub fn set_segments(&self, segments: PciSegments) {
        self.core().segments.set(segments);
    }

    pub fn add_function(&self, f: PciAddress, space: ConfigSpace) {
        self.core().pci.borrow_mut().insert(key(f), space);
    }

    pub fn config_space(&self, f: PciAddress) -> ConfigSpace {
        self.core().pci.borrow()[&key(f)].clone()
    }

    pub fn mem_write(&self, addr: u64, data: &[u8]) {
        self.core().mem.borrow_mut().write(addr, data);
    }

    pub fn mem_read(&self, addr: u64, len: usize) -> Vec<u8> {
        self.core().mem.borrow().get(addr, len)
    }

    pub fn mem_fill(&self, addr: u64, len: u64, value: u8) {
        self.core().mem.borrow_mut().fill(addr, len, value);
    }
}

impl<D: DeviceModel> Platform for Fake<D> {
    type Mmio = FakeMmio;
    type Ports = FakePorts;
    type Dma = FakeDma;

    fn map_registers(
        &self,
        function: PciAddress,
        bar: u8,
        offset: u64,
        len: u64,
    ) -> Option<FakeMmio> {
        let Bar::Memory(base) = pci::bar(self, function, bar) else {
            self.core().violation(format!(
                "map_registers of {function} BAR {bar}, not a memory BAR"
            ));
            return None;
        };
        let addr = base + offset;
        if !self.0.accept_window(function, bar, offset, addr, len) {
            return None;
        }
        self.core().mapped.borrow_mut().push((addr, len));
        Some(FakeMmio { addr, len })
    }

    fn mmio_read(&self, region: &FakeMmio, offset: u64, width: Width) -> u64 {
        if !self
            .core()
            .region_access_ok("MMIO", region.len, offset, width)
        {
            return mask(width);
        }
        self.0.register_read(region.addr + offset, width)
    }

    fn mmio_write(&self, region: &FakeMmio, offset: u64, width: Width, value: u64) {
        if !self
            .core()
            .region_access_ok("MMIO", region.len, offset, width)
        {
            return;
        }
        self.0.register_write(region.addr + offset, width, value);
    }

    fn claim_ports(&self, function: PciAddress, bar: u8, len: u16) -> Option<FakePorts> {
        if !self.0.accept_ports(function, bar) {
            return None;
        }
        let Bar::Io(base) = pci::bar(self, function, bar) else {
            self.core().violation(format!(
                "claim_ports of {function} BAR {bar}, not an I/O BAR"
            ));
            return None;
        };
        Some(FakePorts { base, len })
    }

    fn port_read(&self, ports: &FakePorts, offset: u64, width: Width) -> u64 {
        if !self
            .core()
            .region_access_ok("port", u64::from(ports.len), offset, width)
        {
            return mask(width);
        }
        let port = ports.base + u16::try_from(offset).expect("checked against the range");
        self.0.io_read(port, width)
    }

    fn port_write(&self, ports: &FakePorts, offset: u64, width: Width, value: u64) {
        if !self
            .core()
            .region_access_ok("port", u64::from(ports.len), offset, width)
        {
            return;
        }
        let port = ports.base + u16::try_from(offset).expect("checked against the range");
        self.0.io_write(port, width, value);
    }

    fn pci_segments(&self) -> PciSegments {
        self.core().segments.get()
    }

    fn pci_read32(&self, function: PciAddress, offset: u16) -> u32 {
        if !offset.is_multiple_of(4) {
            self.core()
                .violation(format!("unaligned config read at {offset:#x}"));
        }
        if !self.core().reaches(function) {
            return u32::MAX;
        }
        match self.core().pci.borrow().get(&key(function)) {
            None => u32::MAX,
            Some(_) if offset >= 256 => 0,
            Some(c) => c.get32(offset & !3),
        }
    }

    fn pci_write32(&self, function: PciAddress, offset: u16, value: u32) {
        let core = self.core();
        if !offset.is_multiple_of(4) {
            core.violation(format!("unaligned config write at {offset:#x}"));
        }
        if !core.reaches(function) {
            return;
        }
        let command = {
            let mut pci = core.pci.borrow_mut();
            let Some(c) = pci.get_mut(&key(function)) else {
                drop(pci);
                core.violation(format!("config write to absent function {function}"));
                return;
            };
            if offset >= 256 {
                return;
            }
            let before = c.get16(0x04);
            c.write32(offset & !3, value);
            (offset & !3 == 4).then(|| (before, c.get16(0x04)))
        };
        if let Some((before, after)) = command {
            self.0.command_written(function, before, after);
        }
    }

    fn dma_alloc(&self, size: usize, align: usize) -> Option<FakeDma> {
        let core = self.core();
        let align = (align as u64).max(1);
        let start = core.dma_next.get().div_ceil(align) * align;
        let end = start.checked_add(size as u64)?;
        if size == 0 || end > core.dma_base + core.dma_limit {
            return None;
        }
        core.dma_next.set(end);
        core.mem.borrow_mut().fill(start, size as u64, 0);
        Some(FakeDma {
            addr: start,
            len: size as u64,
        })
    }

    fn dma_read(&self, dma: &FakeDma, offset: u64, width: Width) -> u64 {
        if !self.core().region_access_ok("DMA", dma.len, offset, width) {
            return 0;
        }
        let addr = dma.addr + offset;
        self.core().check_alignment(addr, width.bytes());
        self.0.dma_reading(addr);
        self.core().ram_read(addr, idx(width.bytes()))
    }

    fn dma_write(&self, dma: &FakeDma, offset: u64, width: Width, value: u64) {
        if !self.core().region_access_ok("DMA", dma.len, offset, width) {
            return;
        }
        let addr = dma.addr + offset;
        self.core().check_alignment(addr, width.bytes());
        self.core().ram_write(addr, idx(width.bytes()), value);
    }

    fn dma_read_bytes(&self, dma: &FakeDma, offset: u64, out: &mut [u8]) {
        let fits = offset
            .checked_add(out.len() as u64)
            .is_some_and(|end| end <= dma.len);
        if !fits {
            self.core().violation(format!(
                "DMA read of {} bytes at offset {offset:#x} outside its region of {:#x} bytes",
                out.len(),
                dma.len
            ));
            return;
        }
        self.core().mem.borrow().read(dma.addr + offset, out);
    }

    fn dma_flush(&self, dma: &FakeDma) {
        self.core().dma_flushes.borrow_mut().push(dma.addr);
    }

    fn now_us(&self) -> u64 {
        let clock = &self.core().clock;
        let t = clock.get();
        clock.set(t + self.core().clock_step_us.get());
        t
    }
}

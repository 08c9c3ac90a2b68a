//! Fakes for the device-side writers' tests: old memory (every third page zero, the others
//! a pattern) and DMA buffers in one fake physical address space, an environment that
//! keeps the log, and a device that completes writes oldest first, refuses two
//! overlapping writes in flight (their order on a real device is undefined), and can fail
//! one write.

use crate::writer::{DmaBuffer, FrameFilter, Triage, WriterEnv};
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{DumpHeader, HEADER_LEN};
use minicap_kdumpfile::Sink;
use minicap_physmem::{PhysMem, PhysMemError};
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::ops::Range;
use std::rc::Rc;

pub const OLD_BASE: u64 = 0x10_0000;
pub const OLD_PAGES: u64 = 600;
pub const DMA_BASE: u64 = 0x4000_0000;
pub const DISK: u64 = 16 << 20;

/// Old memory (every third page zero, the others a pattern) and the DMA buffers.
pub struct Phys {
    pub old: Vec<u8>,
    pub buffers: BTreeMap<u64, Rc<RefCell<Vec<u8>>>>,
    pub next: u64,
}

pub type Shared = Rc<RefCell<Phys>>;

pub fn phys() -> Shared {
    let old = (0..OLD_PAGES * 4096)
        .map(|i| match (i / 4096) % 3 {
            0 => 0,
            // Compressible text-like bytes, and noise that is not.
            1 => b"minicap kdump test page "[usize::try_from(i % 24).unwrap()],
            _ => u8::try_from(((i * 2_654_435_761) >> 13) & 0xff).unwrap(),
        })
        .collect();
    Rc::new(RefCell::new(Phys {
        old,
        buffers: BTreeMap::new(),
        next: DMA_BASE,
    }))
}

impl Phys {
    pub fn read(&self, addr: u64, len: usize) -> Vec<u8> {
        if let Some(off) = addr.checked_sub(OLD_BASE) {
            let off = usize::try_from(off).unwrap();
            if off + len <= self.old.len() {
                return self.old[off..off + len].to_vec();
            }
        }
        let (&base, buf) = self.buffers.range(..=addr).next_back().unwrap();
        let off = usize::try_from(addr - base).unwrap();
        buf.borrow()[off..off + len].to_vec()
    }

    pub fn write(&self, addr: u64, bytes: &[u8]) {
        let (&base, buf) = self.buffers.range(..=addr).next_back().unwrap();
        let off = usize::try_from(addr - base).unwrap();
        buf.borrow_mut()[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

/// Old memory as the filter and the page reader see it.
pub struct OldRam(pub Shared);

impl PhysMem for OldRam {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let end = OLD_BASE + OLD_PAGES * 4096;
        if paddr < OLD_BASE || paddr + buf.len() as u64 > end {
            return Err(PhysMemError {
                addr: paddr,
                len: buf.len() as u64,
            });
        }
        buf.copy_from_slice(&self.0.borrow().read(paddr, buf.len()));
        Ok(())
    }
}

pub struct Buffer {
    pub addr: u64,
    pub bytes: Rc<RefCell<Vec<u8>>>,
}

impl DmaBuffer for Buffer {
    fn addr(&self) -> u64 {
        self.addr
    }
    fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.bytes.borrow_mut())
    }
}

pub struct Env {
    pub phys: Shared,
    pub log: String,
    pub clock: u64,
    /// The whole capture's bound on `clock`.
    pub time_limit: Option<crate::TimeLimit>,
}

/// The triage text the tests store first, and what the device must hold at the triage area.
pub const TRIAGE_TEXT: &[u8] = b"minicap triage\nKernel panic - not syncing: test\n";

impl Env {
    /// An environment over `phys` with a line of log already.
    pub fn new(phys: &Shared) -> Self {
        Self {
            phys: phys.clone(),
            log: String::from("minicap: starting\n"),
            clock: 0,
            time_limit: None,
        }
    }

    /// [`TRIAGE_TEXT`] in a DMA buffer.
    pub fn triage(&mut self) -> Triage<Buffer> {
        let mut buffer = self.dma_buffer(8192).unwrap();
        buffer.with_bytes_mut(|b| b[..TRIAGE_TEXT.len()].copy_from_slice(TRIAGE_TEXT));
        Triage {
            buffer,
            len: TRIAGE_TEXT.len(),
        }
    }
}

impl WriterEnv for Env {
    type Buffer = Buffer;
    fn dma_buffer(&mut self, len: usize) -> Option<Buffer> {
        let mut phys = self.phys.borrow_mut();
        let addr = phys.next;
        phys.next += (len as u64).next_multiple_of(4096);
        let bytes = Rc::new(RefCell::new(vec![0; len]));
        phys.buffers.insert(addr, bytes.clone());
        Some(Buffer { addr, bytes })
    }
    fn with_old_memory(&mut self, _: u64, _: u64, _: &mut dyn FnMut(&[u8])) -> bool {
        unreachable!("the kdump path reads old memory through PhysMem")
    }
    fn copy_log(&mut self, out: &mut [u8]) -> usize {
        let n = self.log.len().min(out.len());
        out[..n].copy_from_slice(&self.log.as_bytes()[self.log.len() - n..]);
        n
    }
    fn now_us(&mut self) -> u64 {
        self.clock += 10;
        self.clock
    }
    fn say(&mut self, line: core::fmt::Arguments<'_>) {
        self.log.push_str(&format!("minicap: {line}\n"));
    }
    fn time_limit(&self) -> Option<crate::TimeLimit> {
        self.time_limit
    }
}

#[derive(Debug)]
pub struct Failed(pub u64);

impl core::fmt::Display for Failed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "write at byte {:#x} failed", self.0)
    }
}

pub struct Device {
    pub phys: Shared,
    pub disk: Vec<u8>,
    pub depth: usize,
    pub max_transfer: u64,
    pub capacity: u64,
    pub outstanding: VecDeque<(u64, u64, u64)>,
    /// The first write covering this device byte fails.
    pub fail_at: Option<u64>,
    pub writes: usize,
    pub largest_write: u64,
    pub flushes: usize,
}

impl Device {
    pub fn new(phys: &Shared, depth: usize) -> Self {
        let mut disk = vec![0xee; usize::try_from(DISK).unwrap()];
        let prepared = DumpHeader::new_empty([7; 16], DISK, "minicap format");
        disk[..HEADER_LEN].copy_from_slice(&prepared.encode());
        Self {
            phys: phys.clone(),
            disk,
            depth,
            max_transfer: 128 << 10,
            capacity: DISK,
            outstanding: VecDeque::new(),
            fail_at: None,
            writes: 0,
            largest_write: 0,
            flushes: 0,
        }
    }

    pub fn header(&self) -> DumpHeader {
        DumpHeader::decode(&self.disk[..HEADER_LEN]).unwrap()
    }

    pub fn dump(&self, len: u64) -> &[u8] {
        let at = usize::try_from(self.header().dump_offset).unwrap();
        &self.disk[at..at + usize::try_from(len).unwrap()]
    }

    fn complete(&mut self, (offset, phys, len): (u64, u64, u64)) -> Result<(), Failed> {
        if self
            .fail_at
            .is_some_and(|b| (offset..offset + len).contains(&b))
        {
            self.fail_at = None;
            return Err(Failed(offset));
        }
        let bytes = self.phys.borrow().read(phys, usize::try_from(len).unwrap());
        let at = usize::try_from(offset).unwrap();
        self.disk[at..at + bytes.len()].copy_from_slice(&bytes);
        Ok(())
    }
}

impl BlockDevice for Device {
    type Error = Failed;
    fn capacity(&self) -> u64 {
        self.capacity
    }
    fn sector_size(&self) -> u32 {
        512
    }
    fn max_transfer(&self) -> u64 {
        self.max_transfer
    }
    fn max_in_flight(&self) -> usize {
        self.depth
    }
    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Failed> {
        assert!(self.outstanding.is_empty(), "read with writes in flight");
        let at = usize::try_from(offset).unwrap();
        let bytes = self.disk[at..at + usize::try_from(len).unwrap()].to_vec();
        self.phys.borrow().write(phys, &bytes);
        Ok(())
    }
    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Failed> {
        while !self.outstanding.is_empty() {
            self.wait()?;
        }
        self.start_write(offset, phys, len)?;
        self.wait()
    }
    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), Failed> {
        assert!(
            self.outstanding.len() < self.depth.max(1),
            "too many in flight"
        );
        assert!(len <= self.max_transfer, "write of {len} bytes");
        assert!(offset.is_multiple_of(512) && len.is_multiple_of(512) && len > 0);
        assert!(offset + len <= self.capacity, "write past the end");
        for &(o, _, l) in &self.outstanding {
            assert!(
                o + l <= offset || offset + len <= o,
                "overlapping writes in flight: {offset:#x}+{len:#x} and {o:#x}+{l:#x}"
            );
        }
        self.writes += 1;
        self.largest_write = self.largest_write.max(len);
        self.outstanding.push_back((offset, phys, len));
        Ok(())
    }
    fn wait(&mut self) -> Result<(), Failed> {
        match self.outstanding.pop_front() {
            Some(w) => self.complete(w),
            None => Ok(()),
        }
    }
    fn flush(&mut self) -> Result<(), Failed> {
        let mut first = Ok(());
        while !self.outstanding.is_empty() {
            let r = self.wait();
            if first.is_ok() {
                first = r;
            }
        }
        self.flushes += 1;
        first
    }
    fn describe(&self, out: &mut dyn core::fmt::Write) -> core::fmt::Result {
        out.write_str("fake disk")
    }
}

/// Every frame of `range` (absolute pfns) left out.
pub struct DropFrames(pub Range<u64>);

impl FrameFilter for DropFrames {
    fn exclude(&mut self, pfns: Range<u64>, exclude: &mut dyn FnMut(Range<u64>)) {
        let r = self.0.start.max(pfns.start)..self.0.end.min(pfns.end);
        if r.start < r.end {
            exclude(r);
        }
    }
}

/// The file `write_kdump` makes for an in-memory sink.
pub struct VecSink(pub Vec<u8>);

impl Sink for VecSink {
    type Error = ();
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), ()> {
        let at = usize::try_from(offset).unwrap();
        if self.0.len() < at + bytes.len() {
            self.0.resize(at + bytes.len(), 0);
        }
        self.0[at..at + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }
}

//! The kdump path against a fake device that completes writes oldest first, refuses two
//! overlapping writes in flight (their order on a real device is undefined), and can fail
//! one write: the device ends up holding exactly the file `write_kdump` produces for an
//! in-memory sink, behind the triage text, with a header that tells the truth.

#![allow(clippy::single_range_in_vec_init)] // one RAM range is the common case here

use super::*;
use crate::writer::{write_kdump_dump, Triage};
use minicap_dumpheader::{DumpFormat, FailureCode, HEADER_LEN, TRIAGE_OFFSET};
use minicap_elfcore::LoadSegment;
use minicap_kdumpfile::Utsname;
use minicap_physmem::PhysMemError;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

const OLD_BASE: u64 = 0x10_0000;
const OLD_PAGES: u64 = 600;
const DMA_BASE: u64 = 0x4000_0000;
const DISK: u64 = 16 << 20;

/// Old memory (every third page zero, the others a pattern) and the DMA buffers.
struct Phys {
    old: Vec<u8>,
    buffers: BTreeMap<u64, Rc<RefCell<Vec<u8>>>>,
    next: u64,
}

type Shared = Rc<RefCell<Phys>>;

fn phys() -> Shared {
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
    fn read(&self, addr: u64, len: usize) -> Vec<u8> {
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

    fn write(&self, addr: u64, bytes: &[u8]) {
        let (&base, buf) = self.buffers.range(..=addr).next_back().unwrap();
        let off = usize::try_from(addr - base).unwrap();
        buf.borrow_mut()[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

/// Old memory as the filter and the page reader see it.
struct OldRam(Shared);

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

struct Buffer {
    addr: u64,
    bytes: Rc<RefCell<Vec<u8>>>,
}

impl DmaBuffer for Buffer {
    fn addr(&self) -> u64 {
        self.addr
    }
    fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.bytes.borrow_mut())
    }
}

struct Env {
    phys: Shared,
    log: String,
    clock: u64,
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
}

#[derive(Debug)]
struct Failed(u64);

impl core::fmt::Display for Failed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "write at byte {:#x} failed", self.0)
    }
}

struct Device {
    phys: Shared,
    disk: Vec<u8>,
    depth: usize,
    max_transfer: u64,
    capacity: u64,
    outstanding: VecDeque<(u64, u64, u64)>,
    /// The first write covering this device byte fails.
    fail_at: Option<u64>,
    writes: usize,
    largest_write: u64,
    flushes: usize,
}

impl Device {
    fn new(phys: &Shared, depth: usize) -> Self {
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

    fn header(&self) -> DumpHeader {
        DumpHeader::decode(&self.disk[..HEADER_LEN]).unwrap()
    }

    fn dump(&self, len: u64) -> &[u8] {
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
struct DropFrames(Range<u64>);

impl FrameFilter for DropFrames {
    fn exclude(&mut self, pfns: Range<u64>, exclude: &mut dyn FnMut(Range<u64>)) {
        let r = self.0.start.max(pfns.start)..self.0.end.min(pfns.end);
        if r.start < r.end {
            exclude(r);
        }
    }
}

const NOTES: &[u8] = b"fake notes: CORE and VMCOREINFO would be here; OSRELEASE=6.1.0-test\n";

fn loads() -> Vec<LoadSegment> {
    vec![LoadSegment {
        paddr: OLD_BASE,
        vaddr: 0xffff_8880_0000_0000 + OLD_BASE,
        memsz: OLD_PAGES * 4096,
        source: OLD_BASE,
        flags: 7,
    }]
}

fn info(ram: &[Range<u64>]) -> DumpInfo<'_> {
    DumpInfo {
        utsname: Utsname::new(["Linux", "guest", "6.1.0-test", "#1", "x86_64", "(none)"]),
        time: (1_700_000_000, 0),
        nr_cpus: 2,
        phys_base: 0,
        dump_level: 1,
        notes: NOTES,
        vmcoreinfo: Some(12..NOTES.len()),
        ram,
    }
}

/// The file `write_kdump` makes for an in-memory sink.
struct VecSink(Vec<u8>);

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

fn expected_file<F: FrameFilter>(ram: &[Range<u64>], compress: Compress, filter: F) -> Vec<u8> {
    let phys = phys();
    let mem = OldRam(phys);
    let loads = loads();
    let pfn = Cell::new(0);
    let mut source = OldPages {
        old: OldMemory::new(&mem, &loads, None),
        filter,
        current_pfn: &pfn,
    };
    let mut sink = VecSink(Vec::new());
    let info = info(ram);
    let options = WriterOptions {
        cycle_bitmap_bytes: 4096,
    };
    let stats = match compress {
        Compress::Zlib => write_kdump(&mut sink, &mut source, &mut Zlib::new(), &info, options),
        Compress::Lzo => write_kdump(&mut sink, &mut source, &mut Lzo::new(), &info, options),
        Compress::None => write_kdump(&mut sink, &mut source, &mut NoCompression, &info, options),
    }
    .unwrap();
    assert_eq!(stats.file_len, sink.0.len() as u64);
    sink.0
}

struct Run {
    device: Device,
    env: Env,
    result: Result<KdumpSummary, Failure>,
}

fn run<F: FrameFilter>(
    depth: usize,
    compress: Compress,
    verify: Verification,
    filter: F,
    setup: impl FnOnce(&mut Device),
) -> Run {
    let phys = phys();
    let mem = OldRam(phys.clone());
    let loads = loads();
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let mut device = Device::new(&phys, depth);
    setup(&mut device);
    let mut env = Env {
        phys: phys.clone(),
        log: String::from("minicap: starting\n"),
        clock: 0,
    };
    let mut triage_buffer = env.dma_buffer(8192).unwrap();
    let text = b"minicap triage\nKernel panic - not syncing: test\n";
    triage_buffer.with_bytes_mut(|b| b[..text.len()].copy_from_slice(text));
    let triage = Triage {
        buffer: triage_buffer,
        len: text.len(),
    };
    let mut header = DumpHeader::new_empty([7; 16], device.capacity(), "minicap test");
    header.format = DumpFormat::KdumpCompressed;
    header.dump_offset = DUMP_OFFSET;
    header.dump_length = OLD_PAGES * 4096 * 2;
    let name = DeviceName::display("fake disk");
    let dump = KdumpDump {
        info: info(&ram),
        old: OldMemory::new(&mem, &loads, None),
        filter,
        compress,
        device_name: &name,
        verify,
        options: WriterOptions {
            cycle_bitmap_bytes: 4096,
        },
    };
    let mut profile = Profile::new(0);
    let result = write_kdump_dump(
        &mut device,
        &mut env,
        &mut header,
        Some(&triage),
        dump,
        &mut profile,
    );
    Run {
        device,
        env,
        result,
    }
}

#[test]
fn the_device_holds_the_file_behind_the_triage_text() {
    for depth in [1, 4] {
        for compress in [Compress::None, Compress::Zlib, Compress::Lzo] {
            for verify in [
                Verification::Xxh64Chunks,
                Verification::Sha256,
                Verification::None,
            ] {
                let r = run(depth, compress, verify, KeepAll, |_| {});
                let summary = r.result.unwrap_or_else(|f| panic!("{f}\n{}", r.env.log));
                let expected =
                    expected_file(&[OLD_BASE..OLD_BASE + OLD_PAGES * 4096], compress, KeepAll);
                let h = r.device.header();
                let what = format!("depth {depth}, {compress}, {verify:?}");
                assert_eq!(h.state, DumpState::Complete, "{what}");
                assert_eq!(h.format, DumpFormat::KdumpCompressed);
                assert_eq!(h.dump_length, expected.len() as u64, "{what}");
                assert_eq!(h.written, h.dump_length);
                assert_eq!(summary.stats.file_len, h.dump_length);
                assert!(
                    r.device.dump(h.dump_length) == expected.as_slice(),
                    "{what}"
                );
                assert_eq!(&r.device.dump(8)[..8], b"KDUMP   ");
                assert_eq!(h.pages_ram, OLD_PAGES);
                assert_eq!(h.pages_dumped, summary.stats.dumped_pages);
                // Zero pages share one stored page at level 1.
                assert_eq!(summary.stats.zero_pages, OLD_PAGES / 3);
                let triage = usize::try_from(TRIAGE_OFFSET).unwrap();
                assert_eq!(h.triage_length, 48);
                assert!(r.device.disk[triage..].starts_with(b"minicap triage\nKernel panic"));
                match verify {
                    Verification::Sha256 => {
                        let sha: [u8; 32] = Sha256::digest(&expected).into();
                        assert_eq!(h.sha256, sha, "{what}");
                    }
                    Verification::Xxh64Chunks => {
                        assert_ne!(h.chunk_size, 0);
                        assert!(matches!(summary.verified, Verified::Chunks { .. }));
                    }
                    Verification::None => assert_eq!(summary.verified, Verified::None),
                }
                if depth > 1 && compress == Compress::None {
                    // Runs are gathered: far fewer writes than 4 KiB blocks.
                    assert!(r.device.largest_write > 4096, "{what}");
                    assert!(
                        (r.device.writes as u64) < expected.len() as u64 / 4096 / 4,
                        "{what}: {} writes for {} blocks",
                        r.device.writes,
                        expected.len() / 4096
                    );
                }
                assert!(
                    r.env.log.contains("kdump-compressed file of"),
                    "{}",
                    r.env.log
                );
            }
        }
    }
}

#[test]
fn filtered_frames_leave_the_file() {
    let first = OLD_BASE / 4096;
    let dropped = first + 100..first + 400;
    let r = run(
        4,
        Compress::Zlib,
        Verification::Sha256,
        DropFrames(dropped.clone()),
        |_| {},
    );
    let summary = r.result.unwrap();
    assert_eq!(summary.stats.filtered_pages, 300);
    assert_eq!(summary.stats.dumped_pages, OLD_PAGES - 300);
    let expected = expected_file(
        &[OLD_BASE..OLD_BASE + OLD_PAGES * 4096],
        Compress::Zlib,
        DropFrames(dropped),
    );
    let h = r.device.header();
    let got = r.device.dump(h.dump_length);
    let first = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first.is_none(),
        "{} vs {} bytes, first difference at {first:?}",
        got.len(),
        expected.len()
    );
}

#[test]
fn a_full_device_keeps_the_triage_text_and_says_so() {
    let r = run(4, Compress::None, Verification::Xxh64Chunks, KeepAll, |d| {
        d.capacity = DUMP_OFFSET + (1 << 20)
    });
    let failure = r.result.unwrap_err();
    assert!(
        matches!(failure, Failure::DumpDeviceFull { .. }),
        "{failure}"
    );
    assert_eq!(failure.code(), FailureCode::DeviceTooSmall);
    let h = r.device.header();
    assert_eq!(h.state, DumpState::Failed);
    assert_eq!(h.failure_code, FailureCode::DeviceTooSmall);
    assert!(h.message_str().contains("is full"), "{}", h.message_str());
    assert_eq!(h.triage_length, 48);
    assert!(h.written <= 1 << 20);
}

#[test]
fn a_failed_write_is_reported_and_the_checkpoint_kept() {
    // Fails a write about three quarters into the file.
    let r = run(4, Compress::None, Verification::Xxh64Chunks, KeepAll, |d| {
        d.fail_at = Some(DUMP_OFFSET + (1200 << 10));
    });
    let failure = r.result.unwrap_err();
    assert_eq!(failure.code(), FailureCode::DeviceError);
    assert!(
        failure
            .to_string()
            .contains("writing the kdump file to byte"),
        "{failure}"
    );
    let h = r.device.header();
    assert_eq!(h.state, DumpState::Failed);
    assert!(
        h.written > 0,
        "no checkpoint before the failure:\n{}",
        r.env.log
    );
    assert!(h.written <= 1200 << 10);
    assert_eq!(h.triage_length, 48);
    assert!(r.env.log.contains("% of memory:"), "{}", r.env.log);
}

//! The writer against a fake block device that records every write and
//! flush, checks on every header write that the header claims nothing the
//! device has not confirmed, and can fail any one operation.

use super::*;
use crate::memory::SkippedRanges;
use crate::DeviceEffect;
use minicap_dumpheader::{DumpFormat, FailureCode};
use minicap_elfcore::{plan_vmcore, CoreHeaders, LoadSegment, PF_R, PF_W, PF_X};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;

const OLD_BASE: u64 = 0x10_0000;
const OLD_PAGES: u64 = 300;
const DMA_BASE: u64 = 0x4000_0000;
const DISK: usize = 8 << 20;

/// Fake physical memory: old memory (a pattern) and the DMA buffers.
struct Phys {
    old: Vec<u8>,
    buffers: BTreeMap<u64, Rc<RefCell<Vec<u8>>>>,
    next: u64,
}

impl Phys {
    fn new() -> Rc<RefCell<Self>> {
        let old = (0..OLD_PAGES * PAGE_SIZE)
            .map(|i| u8::try_from((i * 7 + i / 4096) % 251).unwrap())
            .collect();
        Rc::new(RefCell::new(Self {
            old,
            buffers: BTreeMap::new(),
            next: DMA_BASE,
        }))
    }

    fn read(&self, addr: u64, len: u64) -> Vec<u8> {
        let len = usize::try_from(len).unwrap();
        if let Some(off) = addr.checked_sub(OLD_BASE) {
            let off = usize::try_from(off).unwrap();
            if off + len <= self.old.len() {
                return self.old[off..off + len].to_vec();
            }
        }
        let (&base, buf) = self
            .buffers
            .range(..=addr)
            .next_back()
            .expect("DMA from nowhere");
        let off = usize::try_from(addr - base).unwrap();
        buf.borrow()[off..off + len].to_vec()
    }
}

struct FakeBuffer {
    addr: u64,
    bytes: Rc<RefCell<Vec<u8>>>,
}

impl DmaBuffer for FakeBuffer {
    fn addr(&self) -> u64 {
        self.addr
    }
    fn with_bytes_mut<R>(&mut self, f: impl FnOnce(&mut [u8]) -> R) -> R {
        f(&mut self.bytes.borrow_mut())
    }
}

struct FakeEnv {
    phys: Rc<RefCell<Phys>>,
    log: String,
    clock: u64,
    /// How many more DMA buffers may be allocated.
    buffers_left: usize,
    /// Old memory at or above this address is "not mapped".
    mapped_end: u64,
}

impl FakeEnv {
    fn new(phys: &Rc<RefCell<Phys>>) -> Self {
        Self {
            phys: phys.clone(),
            log: "minicap: starting\n".into(),
            clock: 0,
            buffers_left: usize::MAX,
            mapped_end: u64::MAX,
        }
    }
}

impl WriterEnv for FakeEnv {
    type Buffer = FakeBuffer;
    fn dma_buffer(&mut self, len: usize) -> Option<FakeBuffer> {
        self.buffers_left = self.buffers_left.checked_sub(1)?;
        let mut phys = self.phys.borrow_mut();
        let addr = phys.next;
        phys.next += u64::try_from(len).unwrap().next_multiple_of(PAGE_SIZE);
        let bytes = Rc::new(RefCell::new(vec![0; len]));
        phys.buffers.insert(addr, bytes.clone());
        Some(FakeBuffer { addr, bytes })
    }
    fn with_old_memory(&mut self, addr: u64, len: u64, f: &mut dyn FnMut(&[u8])) -> bool {
        if addr + len > self.mapped_end {
            return false;
        }
        f(&self.phys.borrow().read(addr, len));
        true
    }
    fn copy_log(&mut self, out: &mut [u8]) -> usize {
        let n = self.log.len().min(out.len());
        out[..n].copy_from_slice(&self.log.as_bytes()[self.log.len() - n..]);
        n
    }
    fn now_us(&mut self) -> u64 {
        self.clock += 100;
        self.clock
    }
    fn say(&mut self, line: fmt::Arguments<'_>) {
        self.log.push_str(&format!("minicap: {line}\n"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write { offset: u64, len: u64 },
    Flush,
}

struct FakeDevice {
    phys: Rc<RefCell<Phys>>,
    disk: Vec<u8>,
    block: u32,
    ops: Vec<Op>,
    fail_at: Option<usize>,
    /// End of the dump bytes written before the last flush.
    data_written_end: u64,
    data_flushed_end: u64,
    log_written: u64,
    log_flushed: u64,
}

#[derive(Debug)]
struct DeviceFailed(usize);

impl fmt::Display for DeviceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation {} failed with virtio status 1", self.0)
    }
}

impl FakeDevice {
    fn new(phys: &Rc<RefCell<Phys>>, block: u32) -> Self {
        let mut disk = vec![0xee; DISK];
        let prepared = DumpHeader::new_empty([7; 16], DISK as u64, "minicap format");
        disk[..HEADER_LEN].copy_from_slice(&prepared.encode());
        Self {
            phys: phys.clone(),
            disk,
            block,
            ops: Vec::new(),
            fail_at: None,
            data_written_end: DUMP_OFFSET,
            data_flushed_end: DUMP_OFFSET,
            log_written: 0,
            log_flushed: 0,
        }
    }

    fn header(&self) -> DumpHeader {
        DumpHeader::decode(&self.disk[..HEADER_LEN]).unwrap()
    }

    fn next_op(&mut self, op: Op) -> Result<(), DeviceFailed> {
        let index = self.ops.len();
        self.ops.push(op);
        if self.fail_at == Some(index) {
            return Err(DeviceFailed(index));
        }
        Ok(())
    }
}

impl BlockDevice for FakeDevice {
    type Error = DeviceFailed;
    fn capacity(&self) -> u64 {
        DISK as u64
    }
    fn sector_size(&self) -> u32 {
        self.block
    }
    fn max_transfer(&self) -> u64 {
        64 << 10
    }
    fn read(&mut self, _: u64, _: u64, _: u64) -> Result<(), DeviceFailed> {
        unreachable!("the writer never reads")
    }
    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DeviceFailed> {
        let block = u64::from(self.block);
        assert!(
            offset.is_multiple_of(block) && len.is_multiple_of(block) && len > 0,
            "write of {len} bytes at {offset:#x} is not aligned to {block}-byte blocks"
        );
        self.next_op(Op::Write { offset, len })?;
        let bytes = self.phys.borrow().read(phys, len);
        let at = usize::try_from(offset).unwrap();
        self.disk[at..at + bytes.len()].copy_from_slice(&bytes);
        if offset == 0 {
            // Every header the writer stores must be backed by flushed
            // data and a flushed log.
            let h = self.header();
            assert!(
                DUMP_OFFSET + h.written <= self.data_flushed_end,
                "header claims {} bytes, {} flushed",
                h.written,
                self.data_flushed_end - DUMP_OFFSET
            );
            assert!(u64::from(h.log_length) <= self.log_flushed);
        } else if offset == LOG_OFFSET {
            self.log_written = len;
        } else {
            assert!(offset >= DUMP_OFFSET);
            assert_eq!(offset, self.data_written_end, "dump written out of order");
            self.data_written_end = offset + len;
        }
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DeviceFailed> {
        self.next_op(Op::Flush)?;
        self.data_flushed_end = self.data_written_end;
        self.log_flushed = self.log_written;
        Ok(())
    }
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        out.write_str("fake")
    }
}

fn load(paddr: u64, pages: u64) -> LoadSegment {
    LoadSegment {
        paddr,
        vaddr: 0xffff_8880_0000_0000 | paddr,
        memsz: pages * PAGE_SIZE,
        source: paddr,
        flags: PF_R | PF_W | PF_X,
    }
}

fn core_headers() -> CoreHeaders {
    CoreHeaders {
        header_size: 64 + 3 * 56,
        e_ident: *b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0",
        e_entry: 0,
        e_flags: 0,
        loads: vec![load(OLD_BASE, 200), load(OLD_BASE + 220 * PAGE_SIZE, 80)],
        notes: b"\x05\0\0\0\x04\0\0\0\x01\0\0\0CORE\0\0\0\0abcd".to_vec(),
        cpus: Vec::new(),
        vmcoreinfo: None,
        warnings: Vec::new(),
    }
}

fn new_header(layout: &VmcoreLayout) -> DumpHeader {
    let mut h = DumpHeader::new_empty([7; 16], DISK as u64, "minicap test");
    h.format = DumpFormat::ElfVmcore;
    h.dump_offset = DUMP_OFFSET;
    h.dump_length = layout.total_len;
    h
}

/// The vmcore as it must appear on the device: computed from the layout
/// and old memory independently of the writer.
fn expected_vmcore(
    phys: &Phys,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
    skipped: &SkippedRanges,
) -> Vec<u8> {
    let mut v = layout.header.clone();
    v.extend_from_slice(&core.notes);
    v.resize(
        usize::try_from(layout.notes_offset + layout.notes_len_padded).unwrap(),
        0,
    );
    for c in &layout.chunks {
        for page in 0..c.len / PAGE_SIZE {
            let addr = c.source + page * PAGE_SIZE;
            if skipped.contains(addr) {
                v.extend_from_slice(&[0; PAGE_BYTES]);
            } else {
                v.extend_from_slice(&phys.read(addr, PAGE_SIZE));
            }
        }
    }
    assert_eq!(v.len() as u64, layout.total_len);
    v
}

struct Run {
    result: Result<[u8; 32], Failure>,
    device: FakeDevice,
    env: FakeEnv,
    header: DumpHeader,
    expected: Vec<u8>,
}

fn run(block: u32, fail_at: Option<usize>, skipped: &SkippedRanges) -> Run {
    let phys = Phys::new();
    let core = core_headers();
    let layout = plan_vmcore(&core).unwrap();
    let mut device = FakeDevice::new(&phys, block);
    device.fail_at = fail_at;
    let mut env = FakeEnv::new(&phys);
    let mut header = new_header(&layout);
    let name = DeviceName::display("fake 00:02.0");
    let dump = Dump {
        layout: &layout,
        notes: &core.notes,
        skipped,
        device_name: &name,
    };
    let result = write_dump(&mut device, &mut env, &mut header, &dump);
    let expected = expected_vmcore(&phys.borrow(), &core, &layout, skipped);
    Run {
        result,
        device,
        env,
        header,
        expected,
    }
}

fn dump_area(device: &FakeDevice, len: usize) -> &[u8] {
    let start = usize::try_from(DUMP_OFFSET).unwrap();
    &device.disk[start..start + len]
}

fn log_on_disk(device: &FakeDevice, header: &DumpHeader) -> String {
    let start = usize::try_from(LOG_OFFSET).unwrap();
    String::from_utf8(device.disk[start..start + header.log_length as usize].to_vec()).unwrap()
}

#[test]
fn a_clean_run_writes_everything_in_order() {
    let r = run(512, None, &SkippedRanges::new());
    let sha = r.result.unwrap();
    let total = r.expected.len();
    assert_eq!(dump_area(&r.device, total), &r.expected[..]);
    assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&r.expected)));

    let h = r.device.header();
    assert_eq!(h.state, DumpState::Complete);
    assert_eq!(h.written, total as u64);
    assert_eq!(h.sha256, sha);
    assert_eq!(h.failure_code, FailureCode::None);
    assert_eq!((h.skipped_ranges, h.skipped_bytes), (0, 0));
    assert_eq!(r.header.encode(), h.encode());

    let ops = &r.device.ops;
    // Log, flush, header "writing", flush; then the first dump byte.
    assert!(matches!(
        ops[0],
        Op::Write {
            offset: LOG_OFFSET,
            ..
        }
    ));
    assert_eq!(ops[1], Op::Flush);
    assert_eq!(
        ops[2],
        Op::Write {
            offset: 0,
            len: 4096
        }
    );
    assert_eq!(ops[3], Op::Flush);
    assert!(matches!(
        ops[4],
        Op::Write {
            offset: DUMP_OFFSET,
            ..
        }
    ));
    // The end: flush, log, flush, header "complete", flush.
    let n = ops.len();
    assert_eq!(ops[n - 5], Op::Flush);
    assert!(matches!(
        ops[n - 4],
        Op::Write {
            offset: LOG_OFFSET,
            ..
        }
    ));
    assert_eq!(ops[n - 3], Op::Flush);
    assert_eq!(
        ops[n - 2],
        Op::Write {
            offset: 0,
            len: 4096
        }
    );
    assert_eq!(ops[n - 1], Op::Flush);
    // A checkpoint every 10 %: nine header updates between the first and last.
    let headers = ops
        .iter()
        .filter(|o| matches!(o, Op::Write { offset: 0, .. }))
        .count();
    assert_eq!(headers, 1 + 9 + 1);
    let log = log_on_disk(&r.device, &h);
    assert!(log.contains(&format!("minicap: all {total} bytes written and flushed")));
    assert_eq!(log.matches(" MiB/s\n").count(), 9, "{log}");
}

#[test]
fn every_write_is_aligned_to_512_and_4096_byte_blocks() {
    // The fake device asserts the alignment of every write.
    for block in [512, 1024, 2048, 4096] {
        assert!(run(block, None, &SkippedRanges::new()).result.is_ok());
    }
}

#[test]
fn unsupported_block_sizes_write_nothing() {
    for block in [8192, 1000, 0, 256] {
        let r = run(block, None, &SkippedRanges::new());
        let f = r.result.unwrap_err();
        assert_eq!(f.code(), FailureCode::UnsupportedBlockSize);
        assert_eq!(
            f.to_string(),
            format!("dump device fake 00:02.0 has {block}-byte logical blocks: minicap writes power-of-two blocks of 512 to 4096 bytes; nothing was written")
        );
        assert!(r.device.ops.is_empty());
    }
}

#[test]
fn out_of_memory_for_a_buffer_writes_nothing() {
    for allowed in 0..3 {
        let phys = Phys::new();
        let core = core_headers();
        let layout = plan_vmcore(&core).unwrap();
        let mut device = FakeDevice::new(&phys, 512);
        let mut env = FakeEnv::new(&phys);
        env.buffers_left = allowed;
        let mut header = new_header(&layout);
        let name = DeviceName::display("fake");
        let dump = Dump {
            layout: &layout,
            notes: &core.notes,
            skipped: &SkippedRanges::new(),
            device_name: &name,
        };
        let f = write_dump(&mut device, &mut env, &mut header, &dump).unwrap_err();
        assert_eq!(f.code(), FailureCode::CrashMemoryTooSmall);
        assert!(f.to_string().ends_with("; nothing was written"));
        assert!(device.ops.is_empty());
    }
}

/// For each header write in a clean run: the op index of the flush that
/// confirmed what it claims, and the bytes it claims.
fn confirmations(ops: &[Op], headers: &[u64]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut claims = headers.iter();
    for (h, op) in ops.iter().enumerate() {
        if !matches!(op, Op::Write { offset: 0, .. }) {
            continue;
        }
        let written = *claims.next().unwrap();
        // Log write, flush, header: the flush before the log write confirmed it.
        let log = (0..h)
            .rev()
            .find(|&i| {
                matches!(
                    ops[i],
                    Op::Write {
                        offset: LOG_OFFSET,
                        ..
                    }
                )
            })
            .unwrap();
        out.push((log.saturating_sub(1), written));
    }
    out
}

#[test]
fn after_any_failed_write_or_flush_the_header_tells_the_truth() {
    // The clean run: the claims of every header it wrote, in order.
    let clean = run(4096, None, &SkippedRanges::new());
    let total = clean.expected.len() as u64;
    let ops = clean.device.ops.clone();
    // What each header of the clean run may claim: the dump bytes written
    // before the flush preceding it (the fake device checks that it claims
    // no more on every header write).
    let claims = {
        let mut c = Vec::new();
        let phys = Phys::new();
        let mut dev = FakeDevice::new(&phys, 4096);
        let core = core_headers();
        let layout = plan_vmcore(&core).unwrap();
        let mut env = FakeEnv::new(&phys);
        let mut header = new_header(&layout);
        let name = DeviceName::display("fake");
        let skipped = SkippedRanges::new();
        let dump = Dump {
            layout: &layout,
            notes: &core.notes,
            skipped: &skipped,
            device_name: &name,
        };
        write_dump(&mut dev, &mut env, &mut header, &dump).unwrap();
        let mut flushed = 0;
        let mut written_end = 0;
        for op in &dev.ops {
            match *op {
                Op::Write { offset: 0, .. } => c.push(flushed),
                Op::Write { offset, len } if offset >= DUMP_OFFSET => {
                    written_end = offset + len - DUMP_OFFSET
                }
                Op::Write { .. } => {}
                Op::Flush => flushed = written_end,
            }
        }
        c
    };
    assert_eq!(claims.first(), Some(&0));
    assert_eq!(claims.last(), Some(&total));
    let confirmed = confirmations(&ops, &claims);

    for (k, &failed_op) in ops.iter().enumerate() {
        let r = run(4096, Some(k), &SkippedRanges::new());
        let f = r.result.expect_err("every operation's failure is reported");
        assert_eq!(f.code(), FailureCode::DeviceError, "op {k}: {f}");
        let dump_ops = r
            .device
            .ops
            .iter()
            .any(|o| matches!(o, Op::Write { offset, .. } if *offset >= DUMP_OFFSET));
        if k < 4 {
            // The first log + header: nothing of the dump written, no
            // "failed" header over it.
            assert_eq!(f.effect(), Some(DeviceEffect::DumpAreaUntouched), "op {k}");
            assert!(f
                .to_string()
                .starts_with("cannot write the minicap header to fake 00:02.0: operation"));
            assert!(!dump_ops);
            assert_eq!(r.device.ops.len(), k + 1);
            continue;
        }
        let want_written = confirmed
            .iter()
            .filter(|(flush, _)| *flush < k)
            .map(|&(_, w)| w)
            .max()
            .unwrap_or(0);
        let h = r.device.header();
        assert_eq!(h.state, DumpState::Failed, "op {k}: {f}");
        assert_eq!(h.failure_code, FailureCode::DeviceError, "op {k}");
        assert_eq!(h.written, want_written, "op {k}: {f}");
        assert_eq!(h.message_str(), f.to_string());
        assert_eq!(h.dump_length, total);
        // The claimed bytes are really there.
        let n = usize::try_from(h.written).unwrap();
        assert_eq!(dump_area(&r.device, n), &clean.expected[..n], "op {k}");
        // And the stored log says what happened.
        let log = log_on_disk(&r.device, &h);
        assert!(
            log.contains(&format!(
                "capture failed after {want_written} of {total} bytes were confirmed on the device: {f}"
            )),
            "op {k}: {log}"
        );
        assert!(f.to_string().contains(&format!("operation {k} failed")));
        // The failure names the step.
        let text = f.to_string();
        match failed_op {
            Op::Write { offset, .. } if offset >= DUMP_OFFSET + 4096 => {
                assert!(text.starts_with("writing memory 0x"), "{text}")
            }
            Op::Write { offset, .. } if offset == DUMP_OFFSET => {
                assert!(text.starts_with("writing the vmcore at byte 0"), "{text}")
            }
            _ => assert!(
                text.starts_with("flush after")
                    || text.starts_with("updating the header after")
                    || text.starts_with("final flush")
                    || text.starts_with("writing the final header"),
                "op {k}: {text}"
            ),
        }
        assert_eq!(r.header.state, DumpState::Failed);
    }
    let _ = clean.env;
}

#[test]
fn skipped_ranges_become_zeros_and_are_recorded() {
    let mut skipped = SkippedRanges::new();
    // Two pages inside the first load, and the start of the second.
    skipped
        .insert(OLD_BASE + 10 * PAGE_SIZE..OLD_BASE + 12 * PAGE_SIZE)
        .unwrap();
    skipped
        .insert(OLD_BASE + 220 * PAGE_SIZE..OLD_BASE + 240 * PAGE_SIZE)
        .unwrap();
    let r = run(4096, None, &skipped);
    let sha = r.result.unwrap();
    assert_eq!(dump_area(&r.device, r.expected.len()), &r.expected[..]);
    assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&r.expected)));
    let h = r.device.header();
    assert_eq!(h.state, DumpState::Complete);
    assert_eq!((h.skipped_ranges, h.skipped_bytes), (2, 22 * PAGE_SIZE));
    // The zeros are really zeros on the device (the disk started as 0xee).
    let prefix = usize::try_from(r.expected.len() as u64 - 280 * PAGE_SIZE).unwrap();
    let at = prefix + 10 * PAGE_BYTES;
    assert!(dump_area(&r.device, at + 2 * PAGE_BYTES)[at..]
        .iter()
        .all(|&b| b == 0));
    let _ = r.env;
}

#[test]
fn unmapped_old_memory_is_recorded_as_not_mappable() {
    let phys = Phys::new();
    let core = core_headers();
    let layout = plan_vmcore(&core).unwrap();
    let mut device = FakeDevice::new(&phys, 4096);
    let mut env = FakeEnv::new(&phys);
    env.mapped_end = OLD_BASE + 150 * PAGE_SIZE;
    let mut header = new_header(&layout);
    let name = DeviceName::display("fake");
    let skipped = SkippedRanges::new();
    let dump = Dump {
        layout: &layout,
        notes: &core.notes,
        skipped: &skipped,
        device_name: &name,
    };
    let f = write_dump(&mut device, &mut env, &mut header, &dump).unwrap_err();
    assert_eq!(f.code(), FailureCode::MemoryNotMappable);
    assert!(f.to_string().starts_with("old memory at 0x"));
    let h = device.header();
    assert_eq!(h.state, DumpState::Failed);
    assert_eq!(h.failure_code, FailureCode::MemoryNotMappable);
    assert!(h.written > 0 && h.written < layout.total_len);
}

#[test]
fn rates() {
    assert_eq!(mib_per_s_x10(1 << 20, 1_000_000), 10);
    assert_eq!(mib_per_s_x10(1 << 20, 0), 0);
    assert_eq!(mib_per_s_x10(3 << 19, 1_000_000), 15);
}

#[test]
fn block_sizes() {
    assert!(block_size_supported(512));
    assert!(block_size_supported(4096));
    assert!(!block_size_supported(8192));
    assert!(!block_size_supported(4095));
    assert!(!block_size_supported(0));
}

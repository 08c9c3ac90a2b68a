//! The writer against a fake block device that records every write and
//! flush, keeps up to `depth` writes outstanding (completing them oldest
//! first when waited for), checks on every header write that the header
//! claims nothing the device has not made durable (dump bytes, log, chunk
//! table entries), and can fail any one operation.

use super::*;
use crate::memory::SkippedRanges;
use crate::profile::Profile;
use crate::DeviceEffect;
use minicap_chunksum::{
    finished_chunks, table_xxh64, xxh64, ChunkHasher, CHUNK_TABLE_OFFSET, MIN_CHUNK_SIZE,
};
use minicap_dumpheader::{DumpFormat, FailureCode};
use minicap_elfcore::{plan_vmcore, CoreHeaders, LoadSegment, PF_R, PF_W, PF_X};
use sha2::{Digest, Sha256};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;

const OLD_BASE: u64 = 0x10_0000;
const OLD_PAGES: u64 = 720;
const DMA_BASE: u64 = 0x4000_0000;
const DISK: usize = 8 << 20;
const SECTOR: usize = 512;
const MODES: [Verification; 3] = [
    Verification::Xxh64Chunks,
    Verification::Sha256,
    Verification::None,
];

/// Fake physical memory: old memory (a pattern) and the DMA buffers.
struct Phys {
    old: Vec<u8>,
    buffers: BTreeMap<u64, Rc<RefCell<Vec<u8>>>>,
    next: u64,
}

impl Phys {
    fn new() -> Rc<RefCell<Self>> {
        static PATTERN: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        let old = PATTERN
            .get_or_init(|| {
                (0..OLD_PAGES * PAGE_SIZE)
                    .map(|i| u8::try_from((i * 7 + i / 4096) % 251).unwrap())
                    .collect()
            })
            .clone();
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

/// A clock the device moves (100 µs per operation submitted), so that runs
/// with the same operations print the same times whatever the depth.
type Clock = Rc<Cell<u64>>;

struct FakeEnv {
    phys: Rc<RefCell<Phys>>,
    clock: Clock,
    log: String,
    /// How many more DMA buffers may be allocated.
    buffers_left: usize,
    /// Old memory at or above this address is "not mapped".
    mapped_end: u64,
    /// Bytes of old memory the CPU read.
    old_bytes_read: u64,
    /// The whole capture's bound on `clock`.
    time_limit: Option<TimeLimit>,
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
        self.old_bytes_read += len;
        f(&self.phys.borrow().read(addr, len));
        true
    }
    fn copy_log(&mut self, out: &mut [u8]) -> usize {
        let n = self.log.len().min(out.len());
        out[..n].copy_from_slice(&self.log.as_bytes()[self.log.len() - n..]);
        n
    }
    fn now_us(&mut self) -> u64 {
        self.clock.get()
    }
    fn say(&mut self, line: fmt::Arguments<'_>) {
        self.log.push_str(&format!("minicap: {line}\n"));
    }
    fn time_limit(&self) -> Option<TimeLimit> {
        self.time_limit
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Write { offset: u64, len: u64 },
    Flush,
}

/// A write submitted and not yet completed.
struct Outstanding {
    index: usize,
    offset: u64,
    phys: u64,
    len: u64,
}

struct FakeDevice {
    phys: Rc<RefCell<Phys>>,
    clock: Clock,
    disk: Vec<u8>,
    block: u32,
    depth: usize,
    /// Every operation, in the order submitted.
    ops: Vec<Op>,
    /// The operation that fails (a write: when it is waited for).
    fail_at: Option<usize>,
    outstanding: VecDeque<Outstanding>,
    most_outstanding: usize,
    /// The next dump byte a write must start at (the writer submits in order).
    next_dump_offset: u64,
    /// Per sector: written (completed), durable (completed before a flush).
    written: Vec<bool>,
    durable: Vec<bool>,
    log_written: u64,
    log_flushed: u64,
    /// Table blocks completed since the last flush, and the table as the
    /// last flush left it.
    table_pending: Vec<(u64, Vec<u8>)>,
    durable_table: Vec<u8>,
    /// What the table entries must be (the chunks of the expected vmcore).
    expected_chunks: Vec<u64>,
    headers_checked: usize,
    /// What each header written claimed (`written`), in order.
    claims: Vec<u64>,
}

#[derive(Debug)]
struct DeviceFailed(usize);

impl fmt::Display for DeviceFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "operation {} failed with virtio status 1", self.0)
    }
}

#[allow(clippy::cast_possible_truncation)] // 896 KiB
const TABLE_AREA: usize = minicap_dumpheader::CHUNK_TABLE_CAPACITY as usize;

impl FakeDevice {
    fn new(phys: &Rc<RefCell<Phys>>, clock: &Clock, block: u32, depth: usize) -> Self {
        let mut disk = vec![0xee; DISK];
        let prepared = DumpHeader::new_empty([7; 16], DISK as u64, "minicap format");
        disk[..HEADER_LEN].copy_from_slice(&prepared.encode());
        Self {
            phys: phys.clone(),
            clock: clock.clone(),
            disk,
            block,
            depth,
            ops: Vec::new(),
            fail_at: None,
            outstanding: VecDeque::new(),
            most_outstanding: 0,
            next_dump_offset: DUMP_OFFSET,
            written: vec![false; DISK / SECTOR],
            durable: vec![false; DISK / SECTOR],
            log_written: 0,
            log_flushed: 0,
            table_pending: Vec::new(),
            durable_table: vec![0xee; TABLE_AREA],
            expected_chunks: Vec::new(),
            headers_checked: 0,
            claims: Vec::new(),
        }
    }

    fn header(&self) -> DumpHeader {
        DumpHeader::decode(&self.disk[..HEADER_LEN]).unwrap()
    }

    /// Record an operation (the clock moves); returns its index.
    fn submit(&mut self, op: Op) -> usize {
        self.clock.set(self.clock.get() + 100);
        self.ops.push(op);
        self.ops.len() - 1
    }

    fn check_aligned(&self, offset: u64, len: u64) {
        let block = u64::from(self.block);
        assert!(
            offset.is_multiple_of(block) && len.is_multiple_of(block) && len > 0,
            "write of {len} bytes at {offset:#x} is not aligned to {block}-byte blocks"
        );
    }

    /// A write reaches the disk.
    fn complete(&mut self, offset: u64, phys: u64, len: u64) {
        let bytes = self.phys.borrow().read(phys, len);
        let at = usize::try_from(offset).unwrap();
        self.disk[at..at + bytes.len()].copy_from_slice(&bytes);
        for sector in at / SECTOR..(at + bytes.len()) / SECTOR {
            self.written[sector] = true;
        }
        if offset == 0 {
            self.check_header();
        } else if offset == LOG_OFFSET {
            self.log_written = len;
        } else if offset < DUMP_OFFSET {
            assert!(
                offset >= CHUNK_TABLE_OFFSET,
                "write into reserved bytes at {offset:#x}"
            );
            self.table_pending.push((offset, bytes));
        }
    }

    /// Every header the writer stores must be backed by durable dump bytes,
    /// log and table entries, the entries those of the expected vmcore.
    fn check_header(&mut self) {
        self.headers_checked += 1;
        let h = self.header();
        self.claims.push(h.written);
        let first = usize::try_from(DUMP_OFFSET).unwrap() / SECTOR;
        let claimed = usize::try_from(h.written).unwrap().div_ceil(SECTOR);
        assert!(
            self.durable[first..first + claimed].iter().all(|&d| d),
            "header claims {} bytes, not all of them flushed",
            h.written
        );
        assert!(u64::from(h.log_length) <= self.log_flushed);
        if h.verify == Verification::Xxh64Chunks {
            let k =
                usize::try_from(finished_chunks(h.written, h.dump_length, h.chunk_size)).unwrap();
            let entries = entries_of(&self.durable_table[..k * 8]);
            assert_eq!(
                entries,
                self.expected_chunks[..k],
                "table entries on the device"
            );
            assert_eq!(table_xxh64(&entries), h.table_xxh64, "table_xxh64");
        } else {
            assert_eq!((h.chunk_size, h.table_xxh64), (0, 0));
        }
    }

    fn finish_outstanding(&mut self) -> Result<(), DeviceFailed> {
        let mut first_error = Ok(());
        while !self.outstanding.is_empty() {
            let r = self.wait();
            if first_error.is_ok() {
                first_error = r;
            }
        }
        first_error
    }
}

fn entries_of(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|e| u64::from_le_bytes(e.try_into().unwrap()))
        .collect()
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
    fn max_in_flight(&self) -> usize {
        self.depth
    }
    fn read(&mut self, _: u64, _: u64, _: u64) -> Result<(), DeviceFailed> {
        unreachable!("the writer never reads")
    }
    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DeviceFailed> {
        self.finish_outstanding()?;
        self.check_aligned(offset, len);
        if offset >= DUMP_OFFSET {
            assert_eq!(self.depth, 0, "the dump goes through start_write");
            assert_eq!(offset, self.next_dump_offset, "dump written out of order");
            self.next_dump_offset = offset + len;
        }
        let index = self.submit(Op::Write { offset, len });
        if self.fail_at == Some(index) {
            return Err(DeviceFailed(index));
        }
        self.complete(offset, phys, len);
        Ok(())
    }
    fn start_write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DeviceFailed> {
        assert!(
            self.outstanding.len() < self.depth,
            "more than {} writes outstanding",
            self.depth
        );
        self.check_aligned(offset, len);
        assert!(len <= self.max_transfer());
        assert_eq!(offset, self.next_dump_offset, "dump submitted out of order");
        self.next_dump_offset = offset + len;
        let index = self.submit(Op::Write { offset, len });
        self.outstanding.push_back(Outstanding {
            index,
            offset,
            phys,
            len,
        });
        self.most_outstanding = self.most_outstanding.max(self.outstanding.len());
        Ok(())
    }
    fn wait(&mut self) -> Result<(), DeviceFailed> {
        let Some(w) = self.outstanding.pop_front() else {
            return Ok(());
        };
        if self.fail_at == Some(w.index) {
            return Err(DeviceFailed(w.index));
        }
        self.complete(w.offset, w.phys, w.len);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), DeviceFailed> {
        let finished = self.finish_outstanding();
        let index = self.submit(Op::Flush);
        finished?;
        if self.fail_at == Some(index) {
            return Err(DeviceFailed(index));
        }
        self.durable.clone_from(&self.written);
        self.log_flushed = self.log_written;
        for (offset, bytes) in std::mem::take(&mut self.table_pending) {
            let at = usize::try_from(offset - CHUNK_TABLE_OFFSET).unwrap();
            self.durable_table[at..at + bytes.len()].copy_from_slice(&bytes);
        }
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
        loads: vec![load(OLD_BASE, 400), load(OLD_BASE + 420 * PAGE_SIZE, 300)],
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

/// How a test run is set up.
#[derive(Clone)]
struct Setup {
    block: u32,
    depth: usize,
    verify: Verification,
    fail_at: Option<usize>,
    skipped: SkippedRanges,
    buffers_left: usize,
    mapped_end: u64,
    /// The bound on the whole capture, and the clock's start (so that the bound passes after
    /// a chosen number of device operations: each moves the clock by 100 us).
    time_limit: Option<TimeLimit>,
    clock_start: u64,
}

impl Setup {
    fn new(verify: Verification, depth: usize) -> Self {
        Self {
            block: 4096,
            depth,
            verify,
            fail_at: None,
            skipped: SkippedRanges::new(),
            buffers_left: usize::MAX,
            mapped_end: u64::MAX,
            time_limit: None,
            clock_start: 0,
        }
    }
}

/// A device with only the required methods: the trait's defaults (one
/// write at a time, `start_write` = `write`, `wait` = nothing) must do.
struct Blocking(FakeDevice);

impl BlockDevice for Blocking {
    type Error = DeviceFailed;
    fn capacity(&self) -> u64 {
        self.0.capacity()
    }
    fn sector_size(&self) -> u32 {
        self.0.sector_size()
    }
    fn max_transfer(&self) -> u64 {
        self.0.max_transfer()
    }
    fn read(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DeviceFailed> {
        self.0.read(offset, phys, len)
    }
    fn write(&mut self, offset: u64, phys: u64, len: u64) -> Result<(), DeviceFailed> {
        self.0.write(offset, phys, len)
    }
    fn flush(&mut self) -> Result<(), DeviceFailed> {
        self.0.flush()
    }
    fn describe(&self, out: &mut dyn fmt::Write) -> fmt::Result {
        self.0.describe(out)
    }
}

struct Run {
    result: Result<Verified, Failure>,
    device: FakeDevice,
    env: FakeEnv,
    header: DumpHeader,
    expected: Vec<u8>,
    profile: Profile,
}

fn run(setup: &Setup) -> Run {
    let phys = Phys::new();
    let clock = Clock::new(Cell::new(setup.clock_start));
    let core = core_headers();
    let layout = plan_vmcore(&core).unwrap();
    let expected = expected_vmcore(&phys.borrow(), &core, &layout, &setup.skipped);
    let mut device = FakeDevice::new(&phys, &clock, setup.block, setup.depth);
    device.fail_at = setup.fail_at;
    device.expected_chunks = expected
        .chunks(usize::try_from(MIN_CHUNK_SIZE).unwrap())
        .map(xxh64)
        .collect();
    let mut env = FakeEnv {
        phys: phys.clone(),
        clock: clock.clone(),
        log: "minicap: starting\n".into(),
        buffers_left: setup.buffers_left,
        mapped_end: setup.mapped_end,
        old_bytes_read: 0,
        time_limit: setup.time_limit,
    };
    let mut header = new_header(&layout);
    let name = DeviceName::display("fake 00:02.0");
    let dump = Dump {
        layout: &layout,
        notes: &core.notes,
        skipped: &setup.skipped,
        device_name: &name,
        verify: setup.verify,
    };
    let mut profile = Profile::new(0);
    let result = if setup.depth == 0 {
        let mut blocking = Blocking(device);
        let result = write_dump(
            &mut blocking,
            &mut env,
            &mut header,
            None,
            &dump,
            &mut profile,
        );
        device = blocking.0;
        result
    } else {
        write_dump(
            &mut device,
            &mut env,
            &mut header,
            None,
            &dump,
            &mut profile,
        )
    };
    Run {
        result,
        device,
        env,
        header,
        expected,
        profile,
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

fn table_writes(ops: &[Op]) -> usize {
    ops.iter()
        .filter(|op| matches!(op, Op::Write { offset, .. } if (CHUNK_TABLE_OFFSET..DUMP_OFFSET).contains(offset)))
        .count()
}

/// The check on the device matches the image, recomputed from the chunk
/// table's definition (and with the streaming hasher `minicap save` uses,
/// fed in odd pieces) or the SHA-256.
fn assert_verifiable(r: &Run) {
    let h = r.device.header();
    let image = dump_area(&r.device, usize::try_from(h.dump_length).unwrap());
    assert_eq!(image, &r.expected[..]);
    let verified = r.result.as_ref().unwrap();
    assert_eq!(h.verify, r.header.verify);
    match h.verify {
        Verification::Xxh64Chunks => {
            assert_eq!(h.chunk_size, MIN_CHUNK_SIZE);
            let chunks = r.expected.len().div_ceil(1 << 20);
            assert_eq!(
                chunks, 3,
                "the test dump spans three chunks, the last one short"
            );
            let start = usize::try_from(CHUNK_TABLE_OFFSET).unwrap();
            let block = &r.device.disk[start..start + 4096];
            let on_device = entries_of(&block[..chunks * 8]);
            let by_definition: Vec<u64> = image.chunks(1 << 20).map(xxh64).collect();
            assert_eq!(on_device, by_definition);
            // The rest of the table block is zeros.
            assert!(block[chunks * 8..].iter().all(|&b| b == 0));
            let mut streamed = vec![0; chunks];
            let mut hasher = ChunkHasher::with_chunk_size(h.dump_length, h.chunk_size).unwrap();
            for piece in image.chunks(12_345) {
                hasher.update_into(piece, &mut streamed).unwrap();
            }
            assert_eq!(streamed, on_device);
            assert_eq!(h.table_xxh64, table_xxh64(&on_device));
            assert_eq!(
                *verified,
                Verified::Chunks {
                    chunk_size: 1 << 20,
                    chunks: 3,
                    table_xxh64: h.table_xxh64
                }
            );
            assert_eq!(
                verified.to_string(),
                format!(
                    "xxh64 per 1 MiB chunk (3 chunks), table xxh64 {:016x}",
                    h.table_xxh64
                )
            );
            assert_eq!(h.sha256, [0; 32]);
        }
        Verification::Sha256 => {
            let sha: [u8; 32] = Sha256::digest(&r.expected).into();
            assert_eq!(h.sha256, sha);
            assert_eq!(*verified, Verified::Sha256(sha));
            assert!(verified.to_string().starts_with("sha256 "));
            assert_eq!(verified.to_string().len(), 7 + 64);
            assert_eq!((h.chunk_size, h.table_xxh64), (0, 0));
            assert_eq!(table_writes(&r.device.ops), 0);
        }
        Verification::None => {
            assert_eq!(*verified, Verified::None);
            assert_eq!(verified.to_string(), "not verified (minicap.verify=none)");
            assert_eq!((h.sha256, h.chunk_size, h.table_xxh64), ([0; 32], 0, 0));
            assert_eq!(table_writes(&r.device.ops), 0);
        }
    }
}

#[test]
fn each_check_matches_the_image_written() {
    for verify in MODES {
        for depth in [1, 4] {
            let r = run(&Setup::new(verify, depth));
            assert_verifiable(&r);
            let h = r.device.header();
            assert_eq!(h.state, DumpState::Complete);
            assert_eq!(h.written, r.expected.len() as u64);
            assert_eq!(r.header.encode(), h.encode());
            assert_eq!(r.device.most_outstanding, depth, "{verify} depth {depth}");
            // Nothing recorded: old memory is left to the device alone.
            let read = r.env.old_bytes_read;
            assert_eq!(read == 0, verify == Verification::None, "{verify}: {read}");
        }
    }
}

#[test]
fn a_clean_run_writes_everything_in_order() {
    let r = run(&Setup::new(Verification::Xxh64Chunks, 1));
    r.result.as_ref().unwrap();
    let total = r.expected.len();
    let h = r.device.header();
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
    // The end: flush, log, table, flush, header "complete", flush.
    let n = ops.len();
    assert_eq!(ops[n - 6], Op::Flush);
    assert!(matches!(
        ops[n - 5],
        Op::Write {
            offset: LOG_OFFSET,
            ..
        }
    ));
    assert_eq!(
        ops[n - 4],
        Op::Write {
            offset: CHUNK_TABLE_OFFSET,
            len: 4096
        }
    );
    assert_eq!(ops[n - 3], Op::Flush);
    assert_eq!(
        ops[n - 2],
        Op::Write {
            offset: 0,
            len: 4096
        }
    );
    assert_eq!(ops[n - 1], Op::Flush);
    // A checkpoint every 10 %: nine header updates between the first and
    // last, each checked by the device.
    let headers = ops
        .iter()
        .filter(|o| matches!(o, Op::Write { offset: 0, .. }))
        .count();
    assert_eq!(headers, 1 + 9 + 1);
    assert_eq!(r.device.headers_checked, headers);
    // The table block is written when it has new final entries: once per
    // finished chunk (two of them during the dump) and at the end.
    assert_eq!(table_writes(ops), 3);
    let log = log_on_disk(&r.device, &h);
    assert!(log.contains(&format!(
        "minicap: all {total} bytes written and flushed (up to 1 write(s) in flight)\n"
    )));
    assert!(
        log.contains("minicap: first dump write at +0 ms\n"),
        "{log}"
    );
    assert_eq!(log.matches(" MiB/s\n").count(), 9, "{log}");
    // The profile line is in the stored log, before the final header.
    let profile = log
        .lines()
        .find(|l| l.starts_with("minicap: profile: take-over "))
        .expect("profile line");
    assert!(
        profile.contains(", write ") && profile.contains("; total "),
        "{profile}"
    );
    assert_eq!(r.profile.current(), Phase::Final);
    assert!(log.ends_with(&format!("{profile}\n")), "{log}");
}

#[test]
fn depth_1_and_depth_4_write_identical_images() {
    for verify in MODES {
        let one = run(&Setup::new(verify, 1));
        let four = run(&Setup::new(verify, 4));
        assert_eq!(one.device.ops, four.device.ops, "{verify}");
        // The same bytes everywhere but in the log, which says how many
        // writes were in flight.
        let log = usize::try_from(LOG_OFFSET).unwrap()..usize::try_from(LOG_OFFSET * 2).unwrap();
        let mut disks = [one.device.disk.clone(), four.device.disk.clone()];
        for disk in &mut disks {
            disk[log.clone()].fill(0);
        }
        assert!(disks[0] == disks[1], "{verify}");
        let h = one.device.header();
        assert_eq!(
            log_on_disk(&one.device, &h),
            log_on_disk(&four.device, &h).replace("up to 4 write(s)", "up to 1 write(s)")
        );
        assert_eq!(one.result.unwrap(), four.result.unwrap());
    }
}

/// What a failed run left: the header (without its log length), the error,
/// the log without the profile line (its times count the extra writes a
/// deeper queue submitted) and the depth, the dump bytes and table entries
/// claimed.
fn failure_outcome(r: &Run) -> (String, Vec<u8>, String, Vec<u8>, Vec<u8>) {
    let mut h = r.device.header();
    let log: String = log_on_disk(&r.device, &h)
        .lines()
        .filter(|l| !l.starts_with("minicap: profile: "))
        .map(|l| format!("{}\n", l.replace("up to 4 write(s)", "up to 1 write(s)")))
        .collect();
    let n = usize::try_from(h.written).unwrap();
    let k = match h.verify {
        Verification::Xxh64Chunks => {
            usize::try_from(finished_chunks(h.written, h.dump_length, h.chunk_size)).unwrap()
        }
        _ => 0,
    };
    let start = usize::try_from(CHUNK_TABLE_OFFSET).unwrap();
    let table = r.device.disk[start..start + k * 8].to_vec();
    h.log_length = 0;
    (
        r.result.as_ref().unwrap_err().to_string(),
        h.encode().to_vec(),
        log,
        dump_area(&r.device, n).to_vec(),
        table,
    )
}

#[test]
fn after_any_failed_operation_the_header_tells_the_truth() {
    for verify in [Verification::Xxh64Chunks, Verification::Sha256] {
        let clean = run(&Setup::new(verify, 1));
        let total = clean.expected.len() as u64;
        let ops = clean.device.ops.clone();
        // What each header of the clean run claims, and the flush that
        // confirmed it (the one right before it).
        let mut confirmed = Vec::new();
        let mut claims = Vec::new();
        {
            let mut flushed = 0;
            let mut written_end = 0;
            for (i, op) in ops.iter().enumerate() {
                match *op {
                    Op::Write { offset: 0, .. } => {
                        assert_eq!(ops[i - 1], Op::Flush);
                        confirmed.push((i - 1, flushed));
                        claims.push(flushed);
                    }
                    Op::Write { offset, len } if offset >= DUMP_OFFSET => {
                        written_end = offset + len - DUMP_OFFSET
                    }
                    Op::Write { .. } => {}
                    Op::Flush => flushed = written_end,
                }
            }
        }
        assert_eq!(claims.first(), Some(&0));
        assert_eq!(claims.last(), Some(&total));

        let data_writes: Vec<usize> = (0..ops.len())
            .filter(|&k| matches!(ops[k], Op::Write { offset, .. } if offset >= DUMP_OFFSET))
            .collect();
        for (k, &failed_op) in ops.iter().enumerate() {
            // The SHA-256 is slow in a debug build: with it, the failures
            // of the records and of the first and last writes of the dump.
            let is_data = data_writes.contains(&k);
            if verify == Verification::Sha256
                && is_data
                && Some(&k) != data_writes.first()
                && Some(&k) != data_writes.last()
            {
                continue;
            }
            let mut outcomes = Vec::new();
            for depth in [1, 4] {
                let mut setup = Setup::new(verify, depth);
                setup.fail_at = Some(k);
                let r = run(&setup);
                let f = r
                    .result
                    .as_ref()
                    .expect_err("every operation's failure is reported");
                let what = format!("{verify} depth {depth} op {k}: {f}");
                assert_eq!(f.code(), FailureCode::DeviceError, "{what}");
                assert!(
                    f.to_string().contains(&format!("operation {k} failed")),
                    "{what}"
                );
                let dump_ops = r
                    .device
                    .ops
                    .iter()
                    .any(|o| matches!(o, Op::Write { offset, .. } if *offset >= DUMP_OFFSET));
                if k < 4 {
                    // The first log + header: nothing of the dump written, no
                    // "failed" header over it.
                    assert_eq!(f.effect(), Some(DeviceEffect::DumpAreaUntouched), "{what}");
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
                assert_eq!(h.state, DumpState::Failed, "{what}");
                assert_eq!(h.failure_code, FailureCode::DeviceError, "{what}");
                assert_eq!(h.written, want_written, "{what}");
                assert_eq!(h.message_str(), f.to_string());
                assert_eq!(h.dump_length, total);
                assert_eq!(h.verify, verify);
                // The claimed bytes are really there, and (checked by the
                // device on every header write) so are the table entries.
                let n = usize::try_from(h.written).unwrap();
                assert_eq!(dump_area(&r.device, n), &clean.expected[..n], "{what}");
                assert!(r.device.headers_checked >= 2, "{what}");
                // The stored log says what happened.
                let log = log_on_disk(&r.device, &h);
                assert!(
                    log.contains(&format!(
                        "capture failed after {want_written} of {total} bytes were confirmed on the device: {f}"
                    )),
                    "{what}: {log}"
                );
                assert!(log.contains("minicap: profile: "), "{what}");
                // The failure names the step.
                let text = f.to_string();
                match failed_op {
                    Op::Write { offset, .. } if offset >= DUMP_OFFSET + 8192 => {
                        assert!(text.starts_with("writing memory 0x"), "{what}")
                    }
                    Op::Write { offset, .. } if offset == DUMP_OFFSET => {
                        assert!(text.starts_with("writing the vmcore at byte 0"), "{what}")
                    }
                    Op::Flush
                        if ops.get(k + 1)
                            == Some(&Op::Write {
                                offset: 0,
                                len: 4096,
                            }) =>
                    {
                        assert!(
                            text.starts_with("flush after")
                                || text.starts_with("writing the final header"),
                            "{what}"
                        )
                    }
                    _ => assert!(
                        text.starts_with("updating the header after")
                            || text.starts_with("final flush")
                            || text.starts_with("writing the final header"),
                        "{what}"
                    ),
                }
                assert_eq!(r.header.state, DumpState::Failed);
                outcomes.push(failure_outcome(&r));
            }
            if let [one, four] = &outcomes[..] {
                assert_eq!(one.0, four.0, "{verify} op {k}: error");
                assert!(one.1 == four.1, "{verify} op {k}: header");
                assert_eq!(one.2, four.2, "{verify} op {k}: log");
                assert!(one.3 == four.3, "{verify} op {k}: dump");
                assert!(one.4 == four.4, "{verify} op {k}: table");
            }
        }
    }
}

#[test]
fn the_time_limit_stops_between_pieces_and_keeps_every_written_byte() {
    let limit = TimeLimit { seconds: 1 };
    let clean = run(&Setup::new(Verification::Xxh64Chunks, 4));
    let total = clean.expected.len() as u64;
    let clean_ops = clean.device.ops.len() as u64;
    let (mut partial, mut timed_out, mut finished) = (0, 0, 0);
    for verify in [Verification::Xxh64Chunks, Verification::Sha256] {
        for depth in [1, 4] {
            // The bound passes after `ops` device operations.
            for ops in (4..clean_ops).step_by(7) {
                let mut setup = Setup::new(verify, depth);
                setup.time_limit = Some(limit);
                setup.clock_start = limit.limit_us() - ops * 100;
                let r = run(&setup);
                let what = format!("{verify:?}, depth {depth}, limit after {ops} operations");
                let Err(failure) = r.result.as_ref() else {
                    // The bound passed after the last piece was submitted: the capture
                    // finishes (the final flush and header are not new dump data).
                    assert_verifiable(&r);
                    finished += 1;
                    continue;
                };
                assert_eq!(failure.code(), FailureCode::Timeout, "{what}: {failure}");
                assert_eq!(failure.effect(), Some(DeviceEffect::PartialDump));
                assert!(
                    failure.to_string().contains("limit 1 s (minicap.timeout=)"),
                    "{failure}"
                );
                // Every header the device got was checked against what it made durable;
                // the last one says failed, timeout, and claims every dump byte written.
                let h = r.device.header();
                assert_eq!(h.state, DumpState::Failed, "{what}");
                assert_eq!(h.failure_code, FailureCode::Timeout, "{what}");
                assert!(h.written < total, "{what}");
                let dump_writes_end = r
                    .device
                    .ops
                    .iter()
                    .filter_map(|op| match *op {
                        Op::Write { offset, len } if offset >= DUMP_OFFSET => {
                            Some(offset + len - DUMP_OFFSET)
                        }
                        _ => None,
                    })
                    .max()
                    .unwrap_or(0);
                assert_eq!(
                    h.written, dump_writes_end,
                    "{what}: the header claims exactly the dump bytes written"
                );
                let n = usize::try_from(h.written).unwrap();
                assert_eq!(dump_area(&r.device, n), &r.expected[..n], "{what}");
                assert!(
                    log_on_disk(&r.device, &h).contains("ran past its time limit"),
                    "{what}"
                );
                timed_out += 1;
                // Past the last checkpoint: more than any earlier header claimed.
                let claims = &r.device.claims;
                if claims[..claims.len() - 1].iter().all(|&c| c < h.written) {
                    partial += 1;
                }
            }
        }
    }
    assert!(timed_out > 20 && finished > 0, "{timed_out} {finished}");
    assert!(
        partial > 0,
        "no run kept more than its last checkpoint: the sweep does not test that"
    );
}

#[test]
fn no_time_limit_and_a_distant_one_change_nothing() {
    let clean = run(&Setup::new(Verification::Xxh64Chunks, 4));
    let mut setup = Setup::new(Verification::Xxh64Chunks, 4);
    setup.time_limit = Some(TimeLimit { seconds: 3600 });
    let bounded = run(&setup);
    assert_verifiable(&bounded);
    assert_eq!(bounded.device.ops, clean.device.ops);
    assert_eq!(bounded.device.disk, clean.device.disk);
}

#[test]
fn a_device_with_the_default_methods_gets_the_same_image() {
    for verify in MODES {
        // Depth 0: the fake behind `Blocking`, written with `write` only.
        let defaults = run(&Setup::new(verify, 0));
        assert_verifiable(&defaults);
        let one = run(&Setup::new(verify, 1));
        assert_eq!(defaults.device.ops, one.device.ops, "{verify}");
        assert!(defaults.device.disk == one.device.disk, "{verify}");
    }
    // And a failed write is reported by the write itself.
    let mut setup = Setup::new(Verification::Xxh64Chunks, 0);
    setup.fail_at = Some(30);
    let r = run(&setup);
    let f = r.result.as_ref().unwrap_err();
    assert!(f.to_string().contains("operation 30 failed"), "{f}");
    assert_eq!(r.device.header().state, DumpState::Failed);
}

#[test]
fn every_write_is_aligned_to_512_and_4096_byte_blocks() {
    // The fake device asserts the alignment of every write.
    for block in [512, 1024, 2048, 4096] {
        let mut setup = Setup::new(Verification::Xxh64Chunks, 4);
        setup.block = block;
        assert_verifiable(&run(&setup));
    }
}

#[test]
fn unsupported_block_sizes_write_nothing() {
    for block in [8192, 1000, 0, 256] {
        let mut setup = Setup::new(Verification::Xxh64Chunks, 1);
        setup.block = block;
        let r = run(&setup);
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
    // Chunks: header, log, table block, prefix; the others: no table block.
    for (verify, buffers) in [(Verification::Xxh64Chunks, 4), (Verification::Sha256, 3)] {
        for allowed in 0..buffers {
            let mut setup = Setup::new(verify, 1);
            setup.buffers_left = allowed;
            let r = run(&setup);
            let f = r.result.unwrap_err();
            assert_eq!(f.code(), FailureCode::CrashMemoryTooSmall);
            assert!(f.to_string().ends_with("; nothing was written"));
            assert!(r.device.ops.is_empty());
        }
        let mut setup = Setup::new(verify, 1);
        setup.buffers_left = buffers;
        assert_verifiable(&run(&setup));
    }
}

#[test]
fn skipped_ranges_become_zeros_and_are_recorded() {
    let mut skipped = SkippedRanges::new();
    // Two pages inside the first load, and the start of the second.
    skipped
        .insert(OLD_BASE + 10 * PAGE_SIZE..OLD_BASE + 12 * PAGE_SIZE)
        .unwrap();
    skipped
        .insert(OLD_BASE + 420 * PAGE_SIZE..OLD_BASE + 440 * PAGE_SIZE)
        .unwrap();
    for verify in MODES {
        for depth in [1, 4] {
            let mut setup = Setup::new(verify, depth);
            setup.skipped = skipped.clone();
            let r = run(&setup);
            assert_verifiable(&r);
            let h = r.device.header();
            assert_eq!(h.state, DumpState::Complete);
            assert_eq!((h.skipped_ranges, h.skipped_bytes), (2, 22 * PAGE_SIZE));
            // The zeros are really zeros on the device (the disk started as 0xee).
            let prefix = usize::try_from(r.expected.len() as u64 - 700 * PAGE_SIZE).unwrap();
            let at = prefix + 10 * PAGE_BYTES;
            assert!(dump_area(&r.device, at + 2 * PAGE_BYTES)[at..]
                .iter()
                .all(|&b| b == 0));
        }
    }
}

#[test]
fn unmapped_old_memory_is_recorded_as_not_mappable() {
    for verify in [Verification::Xxh64Chunks, Verification::Sha256] {
        for depth in [1, 4] {
            let mut setup = Setup::new(verify, depth);
            setup.mapped_end = OLD_BASE + 150 * PAGE_SIZE;
            let r = run(&setup);
            let f = r.result.unwrap_err();
            assert_eq!(f.code(), FailureCode::MemoryNotMappable);
            assert!(f.to_string().starts_with("old memory at 0x"));
            let h = r.device.header();
            assert_eq!(h.state, DumpState::Failed);
            assert_eq!(h.failure_code, FailureCode::MemoryNotMappable);
            assert!(h.written > 0 && h.written < h.dump_length);
        }
    }
}

#[test]
fn the_option_maps_to_the_header_field() {
    use minicap_bootinfo::cmdline::Verify;
    assert_eq!(verification(Verify::Chunks), Verification::Xxh64Chunks);
    assert_eq!(verification(Verify::Sha256), Verification::Sha256);
    assert_eq!(verification(Verify::None), Verification::None);
    assert_eq!(ChunkSize(1 << 20).to_string(), "1 MiB");
    assert_eq!(ChunkSize(16 << 20).to_string(), "16 MiB");
    assert_eq!(ChunkSize(2 << 30).to_string(), "2 GiB");
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

//! The pre-5.10 reader against a buffer filled by a model of the kernel's `log_store()`
//! (3.5 to 5.9): records overwritten from the front, end markers, damage.

// The fake buffer is 1 KiB: every cast here is lossless.
#![allow(clippy::cast_possible_truncation)]

use std::ops::ControlFlow;

use minicap_elfcore::LoadSegment;
use minicap_physmem::SliceMem;
use minicap_printk::{
    for_each_log_record, DmesgFormat, LogLayout, PrintkError, RecordDamage, WalkSummary,
};
use minicap_vmcoreinfo::{OldMemory, VmcoreInfo, KERNEL_IMAGE_BASE};

const HDR: usize = 16; // struct printk_log without caller_id
const SIZE: usize = 1024;
/// Physical layout: variables at 0x100.., the buffer at 0x1000.
const VARS: u64 = 0x100;
const BUF: u64 = 0x1000;

struct Log {
    buf: Vec<u8>,
    first: usize,
    next: usize,
    /// (index, text, ts) of the records a reader must find, oldest first.
    live: Vec<(usize, Vec<u8>, u64)>,
}

impl Log {
    fn new() -> Self {
        Self {
            buf: vec![0; SIZE],
            first: 0,
            next: 0,
            live: Vec::new(),
        }
    }

    fn len_at(&self, idx: usize) -> usize {
        u16::from_le_bytes([self.buf[idx + 8], self.buf[idx + 9]]) as usize
    }

    /// The kernel's `log_next()`.
    fn after(&self, idx: usize) -> usize {
        match self.len_at(idx) {
            0 => self.len_at(0),
            n => idx + n,
        }
    }

    fn has_space(&self, size: usize) -> bool {
        let free = if self.next > self.first || self.live.is_empty() {
            (SIZE - self.next).max(self.first)
        } else {
            self.first - self.next
        };
        free >= size + HDR
    }

    /// The kernel's `log_store()`, without dictionary.
    fn store(&mut self, text: &[u8], ts: u64) {
        let size = (HDR + text.len()).div_ceil(8) * 8;
        while !self.live.is_empty() && !self.has_space(size) {
            self.first = self.after(self.first);
            self.live.remove(0);
        }
        if self.next + size + HDR > SIZE {
            self.buf[self.next..self.next + HDR].fill(0);
            self.next = 0;
        }
        let at = self.next;
        self.buf[at..at + 8].copy_from_slice(&ts.to_le_bytes());
        self.buf[at + 8..at + 10].copy_from_slice(&(size as u16).to_le_bytes());
        self.buf[at + 10..at + 12].copy_from_slice(&(text.len() as u16).to_le_bytes());
        self.buf[at + HDR..at + HDR + text.len()].copy_from_slice(text);
        self.next += size;
        self.live.push((at, text.to_vec(), ts));
        if self.live.len() == 1 {
            self.first = at;
        }
    }

    fn expected(&self) -> String {
        self.live
            .iter()
            .map(|(_, t, ts)| {
                format!(
                    "[{:5}.{:06}] {}\n",
                    ts / 1_000_000_000,
                    ts % 1_000_000_000 / 1000,
                    String::from_utf8(t.clone()).unwrap()
                )
            })
            .collect()
    }

    /// Physical memory with the variables and the buffer; the VMCOREINFO of a 4.x kernel.
    fn read(&self, struct_name: &str) -> Result<(String, WalkSummary), PrintkError> {
        let mut mem = vec![0u8; 0x1000 + SIZE];
        let va = |pa: u64| KERNEL_IMAGE_BASE + pa;
        mem[0x100..0x108].copy_from_slice(&va(BUF).to_le_bytes());
        mem[0x108..0x10c].copy_from_slice(&(SIZE as u32).to_le_bytes());
        mem[0x110..0x114].copy_from_slice(&(self.first as u32).to_le_bytes());
        mem[0x118..0x11c].copy_from_slice(&(self.next as u32).to_le_bytes());
        mem[0x1000..].copy_from_slice(&self.buf);
        let text = format!(
            "OSRELEASE=4.19.0\nSYMBOL(log_buf)={:x}\nSYMBOL(log_buf_len)={:x}\n\
SYMBOL(log_first_idx)={:x}\nSYMBOL(clear_idx)=0\nSYMBOL(log_next_idx)={:x}\n\
SIZE({s})=16\nOFFSET({s}.ts_nsec)=0\nOFFSET({s}.len)=8\nOFFSET({s}.text_len)=10\n\
NUMBER(phys_base)=0\n",
            va(VARS),
            va(VARS + 8),
            va(VARS + 0x10),
            va(VARS + 0x18),
            s = struct_name,
        );
        let loads = [LoadSegment {
            paddr: 0,
            vaddr: 0xffff_8880_0000_0000,
            memsz: mem.len() as u64,
            source: 0,
            flags: 7,
        }];
        let phys = SliceMem::new(0, &mem);
        let vi = VmcoreInfo::new(text.as_bytes());
        let old = OldMemory::new(&phys, &loads, vi.phys_base());
        let layout = LogLayout::from_vmcoreinfo(&vi)?;
        assert!(matches!(layout, LogLayout::Legacy(_)));
        let mut out = String::new();
        let s = for_each_log_record(&old, &layout, |r| {
            DmesgFormat::default().write(r, &mut out).unwrap();
            ControlFlow::Continue(())
        })?;
        Ok((out, s))
    }
}

fn filled(n: usize) -> Log {
    let mut log = Log::new();
    for i in 0..n {
        let text = format!("line {i} {}", "y".repeat(i * 11 % 37));
        log.store(text.as_bytes(), i as u64 * 1_500_000_000 + 7_000);
    }
    log
}

#[test]
fn overwritten_buffer_yields_the_live_records() {
    for n in [0, 1, 5, 40, 200] {
        let log = filled(n);
        for name in ["printk_log", "log"] {
            let (out, s) = log.read(name).unwrap();
            assert_eq!(out, log.expected(), "n = {n}");
            assert_eq!((s.records, s.damaged), (log.live.len() as u64, 0));
        }
    }
    // The model did wrap: the oldest live record is behind the newest.
    let log = filled(200);
    assert!(log.first > log.next);
}

#[test]
fn damaged_lengths_stop_the_walk_with_what_came_before() {
    let mut log = filled(200);
    let victim = log.live[3].0;
    log.buf[victim + 8..victim + 10].copy_from_slice(&3u16.to_le_bytes());
    let (out, s) = log.read("printk_log").unwrap();
    log.live.truncate(3);
    assert_eq!(out, log.expected());
    assert_eq!(
        s.first_damage,
        Some(RecordDamage::BadRecord {
            index: victim as u64
        })
    );

    // A log_next_idx no record boundary reaches: the walk goes round and round the
    // buffer, and stops after as many records as it can hold.
    let mut log = filled(30);
    let end = log.next;
    log.buf[end..end + HDR].fill(0); // an end marker after the newest record
    log.next = log.first + 4;
    let (out, s) = log.read("printk_log").unwrap();
    assert_eq!(s.first_damage, Some(RecordDamage::Cycle));
    assert!(s.records <= (SIZE / HDR) as u64 + 2, "{s:?}");
    assert!(out.starts_with(&log.expected()));
}

#[test]
fn impossible_indices_are_fatal() {
    let mut log = filled(5);
    log.next = SIZE + 8;
    assert!(matches!(
        log.read("printk_log"),
        Err(PrintkError::BadLogBuffer { .. })
    ));
}

/// Random bytes anywhere in the buffer never panic and never loop.
#[test]
fn random_damage_never_panics() {
    let base = filled(200);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let mut log = Log {
            buf: base.buf.clone(),
            first: base.first,
            next: base.next,
            live: Vec::new(),
        };
        for _ in 0..1 + rand() % 6 {
            let at = (rand() % SIZE as u64) as usize;
            log.buf[at] = rand() as u8;
        }
        if let Ok((_, s)) = log.read("printk_log") {
            assert!(s.records <= (SIZE / HDR) as u64 + 2);
        }
    }
}

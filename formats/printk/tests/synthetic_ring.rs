//! The reader against synthetic rings built in fake physical memory by a small model of the
//! kernel's writer (`prb_reserve()`/`data_alloc()` in `kernel/printk/printk_ringbuffer.c`):
//! descriptors recycled, text wrapping, blocks moved to index 0, damage injected.

// The fake ring is a few KiB: every cast in this model is lossless.
#![allow(clippy::cast_possible_truncation)]

use std::ops::ControlFlow;

use minicap_elfcore::LoadSegment;
use minicap_physmem::{MultiMem, SliceMem};
use minicap_printk::{
    for_each_record, DmesgFormat, PrintkError, RecordDamage, RingLayout, DESC_ID_MASK,
};
use minicap_vmcoreinfo::{OldMemory, VirtReadError, VmcoreInfo, KERNEL_IMAGE_BASE};

const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
/// Physical base of the fake kernel image (holds `prb`, the ring struct, descs and infos).
const IMAGE_PHYS: u64 = 0x100_0000;
/// Physical base of the fake memblock area (holds the text ring).
const DATA_PHYS: u64 = 0x400_0000;
/// phys_base is negative, as under KASLR: image VA = KERNEL_IMAGE_BASE + IMAGE_PHYS - PHYS_BASE.
const PHYS_BASE: i64 = -0x20_0000;
const STATE_SHIFT: u32 = 62;
const RESERVED: u64 = 0;
const COMMITTED: u64 = 1;
const FINALIZED: u64 = 2;
const REUSABLE: u64 = 3;

/// Struct sizes/offsets the fake kernel uses; the reader sees them only through VMCOREINFO.
#[derive(Clone, Copy)]
struct Offsets {
    rb_size: u64,
    desc_ring: u64,
    data_ring: u64,
    dr_size: u64,
    count_bits: u64,
    descs: u64,
    infos: u64,
    head_id: u64,
    tail_id: u64,
    data_ring_size: u64,
    size_bits: u64,
    data: u64,
    head_lpos: u64,
    tail_lpos: u64,
    desc_size: u64,
    state_var: u64,
    text_blk: u64,
    info_size: u64,
    seq: u64,
    ts: u64,
    text_len: u64,
    caller: u64,
}

/// Linux 6.1 x86_64.
const LINUX_6_1: Offsets = Offsets {
    rb_size: 88,
    desc_ring: 0,
    data_ring: 48,
    dr_size: 48,
    count_bits: 0,
    descs: 8,
    infos: 16,
    head_id: 24,
    tail_id: 32,
    data_ring_size: 32,
    size_bits: 0,
    data: 8,
    head_lpos: 16,
    tail_lpos: 24,
    desc_size: 24,
    state_var: 0,
    text_blk: 8,
    info_size: 88,
    seq: 0,
    ts: 8,
    text_len: 16,
    caller: 20,
};

/// A made-up layout with every offset moved, to prove nothing is hard-coded.
const SHUFFLED: Offsets = Offsets {
    rb_size: 160,
    desc_ring: 64,
    data_ring: 8,
    dr_size: 64,
    count_bits: 60,
    descs: 16,
    infos: 40,
    head_id: 0,
    tail_id: 48,
    data_ring_size: 48,
    size_bits: 44,
    data: 32,
    head_lpos: 0,
    tail_lpos: 16,
    desc_size: 40,
    state_var: 32,
    text_blk: 0,
    info_size: 120,
    seq: 100,
    ts: 48,
    text_len: 2,
    caller: 112,
};

#[derive(Clone, Copy, Debug)]
struct Desc {
    state_var: u64,
    begin: u64,
    next: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Info {
    seq: u64,
    ts: u64,
    text_len: u16,
    caller: u32,
}

/// The model of the kernel's ring: what it writes, and what a reader must find.
struct Ring {
    off: Offsets,
    count: u64,
    size: u64,
    descs: Vec<Desc>,
    infos: Vec<Info>,
    data: Vec<u8>,
    head_id: u64,
    tail_id: u64,
    head_lpos: u64,
    tail_lpos: u64,
    next_seq: u64,
    texts: Vec<(u64, Vec<u8>, u64)>,
    wrapped_blocks: Vec<u64>,
}

impl Ring {
    /// An empty ring as `printk_ringbuffer` bootstraps it (`DEFINE_PRINTKRB`): the first ID is
    /// `DESC0_ID`, computed in 32-bit arithmetic, its descriptor reusable and data-less.
    fn new(off: Offsets, count_bits: u32, size_bits: u32) -> Self {
        let count = 1u64 << count_bits;
        let desc0 = u64::from(0u32.wrapping_sub(u32::try_from(count).unwrap() + 1));
        Self::with_first_id(off, count_bits, size_bits, desc0)
    }

    fn with_first_id(off: Offsets, count_bits: u32, size_bits: u32, first: u64) -> Self {
        let count = 1u64 << count_bits;
        let size = 1u64 << size_bits;
        let mut descs = vec![
            Desc {
                state_var: REUSABLE << STATE_SHIFT,
                begin: 1,
                next: 1
            };
            count as usize
        ];
        descs[(first % count) as usize].state_var = (REUSABLE << STATE_SHIFT) | first;
        let blk0 = size.wrapping_neg();
        Self {
            off,
            count,
            size,
            descs,
            infos: vec![Info::default(); count as usize],
            data: vec![0; size as usize],
            head_id: first,
            tail_id: first,
            head_lpos: blk0,
            tail_lpos: blk0,
            next_seq: 0,
            texts: Vec::new(),
            wrapped_blocks: Vec::new(),
        }
    }

    fn slot(&self, id: u64) -> usize {
        (id % self.count) as usize
    }

    /// Drops the oldest record (`desc_push_tail()` + `data_push_tail()`).
    fn push_tail(&mut self) {
        let slot = self.slot(self.tail_id);
        let d = self.descs[slot];
        self.descs[slot].state_var = (REUSABLE << STATE_SHIFT) | self.tail_id;
        if d.begin & 1 == 0 {
            self.tail_lpos = d.next;
        }
        self.texts.retain(|(id, _, _)| *id != self.tail_id);
        self.tail_id = (self.tail_id + 1) & DESC_ID_MASK;
    }

    /// Appends one finalized record.
    fn push(&mut self, text: &[u8], ts: u64) -> u64 {
        let id = (self.head_id + 1) & DESC_ID_MASK;
        if (id.wrapping_sub(self.tail_id) & DESC_ID_MASK) >= self.count {
            self.push_tail();
        }
        let blk = (8 + text.len() as u64).div_ceil(8) * 8;
        assert!(blk < self.size / 2, "record too large for the test ring");
        let begin = self.head_lpos;
        let index = begin % self.size;
        // get_next_lpos(): a block that would reach the end of the ring, even exactly, is
        // stored at index 0 of the next wrap.
        let wraps = index + blk >= self.size;
        let next = if wraps {
            begin.wrapping_sub(index).wrapping_add(self.size + blk)
        } else {
            begin.wrapping_add(blk)
        };
        while next.wrapping_sub(self.tail_lpos) > self.size {
            self.push_tail();
        }
        if wraps {
            // Only the ID at `begin`; the block itself at 0.
            self.data[index as usize..index as usize + 8].copy_from_slice(&id.to_le_bytes());
            self.wrapped_blocks.push(id);
        }
        let at = if wraps { 0 } else { index as usize };
        self.data[at..at + 8].copy_from_slice(&id.to_le_bytes());
        self.data[at + 8..at + 8 + text.len()].copy_from_slice(text);
        let slot = self.slot(id);
        self.descs[slot] = Desc {
            state_var: (FINALIZED << STATE_SHIFT) | id,
            begin,
            next,
        };
        self.infos[slot] = Info {
            seq: self.next_seq,
            ts,
            text_len: text.len() as u16,
            caller: 0x8000_0000 | (id as u32 & 1),
        };
        self.next_seq += 1;
        self.head_id = id;
        self.head_lpos = next;
        self.texts.push((id, text.to_vec(), ts));
        id
    }

    /// The lines a correct reader prints, oldest first.
    fn expected(&self) -> String {
        let mut s = String::new();
        for (_, text, ts) in &self.texts {
            s += &format!(
                "[{:5}.{:06}] {}\n",
                ts / 1_000_000_000,
                ts % 1_000_000_000 / 1000,
                String::from_utf8(text.clone()).unwrap()
            );
        }
        s
    }
}

/// The fake machine: image memory, data memory, PT_LOADs and VMCOREINFO.
struct Machine {
    image: Vec<u8>,
    memblock: Vec<u8>,
    loads: Vec<LoadSegment>,
    vmcoreinfo: String,
}

const PRB_VAR: u64 = 0x100;
const RB_STRUCT: u64 = 0x200;
const DESCS: u64 = 0x1000;

/// The kernel-image virtual address of `off` bytes into the fake image
/// (`pa = va - __START_KERNEL_map + phys_base`, solved for `va`).
fn image_va(off: u64) -> u64 {
    (KERNEL_IMAGE_BASE + IMAGE_PHYS + off).wrapping_sub(PHYS_BASE as u64)
}

impl Machine {
    fn new(r: &Ring) -> Self {
        let o = r.off;
        let infos_at = DESCS + r.count * o.desc_size;
        let image_len = (infos_at + r.count * o.info_size).div_ceil(4096) * 4096;
        let mut image = vec![0u8; image_len as usize];
        let put = |buf: &mut Vec<u8>, at: u64, bytes: &[u8]| {
            buf[at as usize..at as usize + bytes.len()].copy_from_slice(bytes)
        };
        put(&mut image, PRB_VAR, &image_va(RB_STRUCT).to_le_bytes());
        let dr = RB_STRUCT + o.desc_ring;
        let tr = RB_STRUCT + o.data_ring;
        put(
            &mut image,
            dr + o.count_bits,
            &(r.count.trailing_zeros()).to_le_bytes(),
        );
        put(&mut image, dr + o.descs, &image_va(DESCS).to_le_bytes());
        put(&mut image, dr + o.infos, &image_va(infos_at).to_le_bytes());
        put(&mut image, dr + o.head_id, &r.head_id.to_le_bytes());
        put(&mut image, dr + o.tail_id, &r.tail_id.to_le_bytes());
        put(
            &mut image,
            tr + o.size_bits,
            &(r.size.trailing_zeros()).to_le_bytes(),
        );
        put(
            &mut image,
            tr + o.data,
            &(DIRECT_MAP + DATA_PHYS).to_le_bytes(),
        );
        put(&mut image, tr + o.head_lpos, &r.head_lpos.to_le_bytes());
        put(&mut image, tr + o.tail_lpos, &r.tail_lpos.to_le_bytes());
        for (i, d) in r.descs.iter().enumerate() {
            let at = DESCS + i as u64 * o.desc_size;
            put(&mut image, at + o.state_var, &d.state_var.to_le_bytes());
            put(&mut image, at + o.text_blk, &d.begin.to_le_bytes());
            put(&mut image, at + o.text_blk + 8, &d.next.to_le_bytes());
        }
        for (i, inf) in r.infos.iter().enumerate() {
            let at = infos_at + i as u64 * o.info_size;
            put(&mut image, at + o.seq, &inf.seq.to_le_bytes());
            put(&mut image, at + o.ts, &inf.ts.to_le_bytes());
            put(&mut image, at + o.text_len, &inf.text_len.to_le_bytes());
            put(&mut image, at + o.caller, &inf.caller.to_le_bytes());
        }
        let vmcoreinfo = format!(
            "OSRELEASE=6.1.0-test\nPAGESIZE=4096\nSYMBOL(prb)={:x}\nSYMBOL(printk_rb_static)={:x}\n\
SIZE(printk_ringbuffer)={}\nOFFSET(printk_ringbuffer.desc_ring)={}\nOFFSET(printk_ringbuffer.text_data_ring)={}\n\
SIZE(prb_desc_ring)={}\nOFFSET(prb_desc_ring.count_bits)={}\nOFFSET(prb_desc_ring.descs)={}\n\
OFFSET(prb_desc_ring.infos)={}\nOFFSET(prb_desc_ring.head_id)={}\nOFFSET(prb_desc_ring.tail_id)={}\n\
SIZE(prb_desc)={}\nOFFSET(prb_desc.state_var)={}\nOFFSET(prb_desc.text_blk_lpos)={}\n\
SIZE(prb_data_blk_lpos)=16\nOFFSET(prb_data_blk_lpos.begin)=0\nOFFSET(prb_data_blk_lpos.next)=8\n\
SIZE(printk_info)={}\nOFFSET(printk_info.seq)={}\nOFFSET(printk_info.ts_nsec)={}\n\
OFFSET(printk_info.text_len)={}\nOFFSET(printk_info.caller_id)={}\n\
SIZE(prb_data_ring)={}\nOFFSET(prb_data_ring.size_bits)={}\nOFFSET(prb_data_ring.data)={}\n\
OFFSET(prb_data_ring.head_lpos)={}\nOFFSET(prb_data_ring.tail_lpos)={}\n\
SIZE(atomic_long_t)=8\nOFFSET(atomic_long_t.counter)=0\nNUMBER(phys_base)={}\nKERNELOFFSET=0\n",
            image_va(PRB_VAR),
            image_va(RB_STRUCT),
            o.rb_size,
            o.desc_ring,
            o.data_ring,
            o.dr_size,
            o.count_bits,
            o.descs,
            o.infos,
            o.head_id,
            o.tail_id,
            o.desc_size,
            o.state_var,
            o.text_blk,
            o.info_size,
            o.seq,
            o.ts,
            o.text_len,
            o.caller,
            o.data_ring_size,
            o.size_bits,
            o.data,
            o.head_lpos,
            o.tail_lpos,
            PHYS_BASE,
        );
        let loads = vec![
            LoadSegment {
                paddr: IMAGE_PHYS,
                vaddr: DIRECT_MAP + IMAGE_PHYS,
                memsz: image_len,
                source: IMAGE_PHYS,
                flags: 7,
            },
            LoadSegment {
                paddr: DATA_PHYS,
                vaddr: DIRECT_MAP + DATA_PHYS,
                memsz: r.size,
                source: DATA_PHYS,
                flags: 7,
            },
        ];
        Self {
            image,
            memblock: r.data.clone(),
            loads,
            vmcoreinfo,
        }
    }

    fn desc_at(&self, r: &Ring, id: u64) -> usize {
        (DESCS + (id % r.count) * r.off.desc_size) as usize
    }

    fn set_u64(&mut self, at: usize, v: u64) {
        self.image[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// Reads the log; returns the text and the summary.
    fn read(&self) -> Result<(String, minicap_printk::WalkSummary), PrintkError> {
        let regions = [
            SliceMem::new(IMAGE_PHYS, &self.image),
            SliceMem::new(DATA_PHYS, &self.memblock),
        ];
        let mem = MultiMem::new(&regions);
        let info = VmcoreInfo::new(self.vmcoreinfo.as_bytes());
        let old = OldMemory::new(&mem, &self.loads, info.phys_base());
        let layout = RingLayout::from_vmcoreinfo(&info)?;
        let mut out = String::new();
        let summary = for_each_record(&old, &layout, |rec| {
            DmesgFormat::default().write(rec, &mut out).unwrap();
            ControlFlow::Continue(())
        })?;
        Ok((out, summary))
    }
}

fn message(i: usize) -> Vec<u8> {
    // Varying lengths so that blocks land at every alignment relative to the ring end.
    let tail = "x".repeat(i * 7 % 53);
    format!("message {i} {tail}").into_bytes()
}

fn filled(off: Offsets, n: usize) -> Ring {
    // 16 descriptors and 1 KiB of text: both run out many times over.
    let mut r = Ring::new(off, 4, 10);
    for i in 0..n {
        r.push(&message(i), 1_000_000_000 * i as u64 + 123_456_789);
    }
    r
}

#[test]
fn empty_ring_yields_nothing() {
    let r = Ring::new(LINUX_6_1, 4, 10);
    let (out, s) = Machine::new(&r).read().unwrap();
    assert_eq!(out, "");
    assert_eq!((s.records, s.skipped, s.damaged), (0, 1, 0));
}

#[test]
fn wrapped_ring_yields_the_surviving_records_in_order() {
    for off in [LINUX_6_1, SHUFFLED] {
        let r = filled(off, 300);
        // The model really exercised recycling and blocks moved to index 0.
        assert!(r.texts.len() > 3 && r.texts.len() <= 16);
        assert!(r
            .texts
            .iter()
            .any(|(id, _, _)| r.wrapped_blocks.contains(id)));
        assert!(r.head_lpos > r.size * 10);
        let (out, s) = Machine::new(&r).read().unwrap();
        assert_eq!(out, r.expected());
        assert_eq!(s.records, r.texts.len() as u64);
        assert_eq!(s.damaged, 0);
        assert_eq!(s.first_damage, None);
        assert!(!s.stopped);
    }
}

#[test]
fn ids_wrapping_at_the_id_mask() {
    let mut r = Ring::with_first_id(LINUX_6_1, 4, 10, DESC_ID_MASK - 5);
    for i in 0..12 {
        r.push(&message(i), i as u64);
    }
    assert!(r.head_id < 10, "the IDs wrapped");
    let (out, s) = Machine::new(&r).read().unwrap();
    assert_eq!(out, r.expected());
    assert_eq!(s.damaged, 0);
}

#[test]
fn committed_newest_is_read_and_reserved_is_skipped() {
    let mut r = filled(LINUX_6_1, 40);
    let mut m = Machine::new(&r);
    let head = m.desc_at(&r, r.head_id);
    m.set_u64(head, (COMMITTED << STATE_SHIFT) | r.head_id);
    let (out, _) = m.read().unwrap();
    assert_eq!(out, r.expected());
    // A writer that crashed in prb_reserve(): the head is reserved, its text not usable.
    m.set_u64(head, (RESERVED << STATE_SHIFT) | r.head_id);
    let (out, s) = m.read().unwrap();
    r.texts.pop();
    assert_eq!(out, r.expected());
    assert_eq!(s.damaged, 0);
}

#[test]
fn slot_reused_by_another_id_is_skipped() {
    let mut r = filled(LINUX_6_1, 40);
    let victim = r.texts[3].0;
    let mut m = Machine::new(&r);
    let at = m.desc_at(&r, victim);
    // A newer record (victim + count) took the slot but did not finish.
    m.set_u64(
        at,
        (RESERVED << STATE_SHIFT) | ((victim + r.count) & DESC_ID_MASK),
    );
    let (out, s) = m.read().unwrap();
    r.texts.remove(3);
    assert_eq!(out, r.expected());
    assert_eq!(s.damaged, 0);
    // The same, finalized: still not the ID asked for.
    m.set_u64(
        at,
        (FINALIZED << STATE_SHIFT) | ((victim + r.count) & DESC_ID_MASK),
    );
    assert_eq!(m.read().unwrap().0, r.expected());
}

fn lpos(m: &Machine, at: usize) -> (u64, u64) {
    let word = |a: usize| u64::from_le_bytes(m.image[a..a + 8].try_into().unwrap());
    (word(at), word(at + 8))
}

#[test]
fn corrupt_descriptors_are_counted_and_skipped() {
    let r = filled(LINUX_6_1, 60);
    let ids: Vec<u64> = r.texts.iter().map(|t| t.0).collect();
    let blk = |m: &Machine, i: usize| m.desc_at(&r, ids[i]) + r.off.text_blk as usize;
    let check = |m: &Machine, victim: usize, damage: RecordDamage| {
        let (out, s) = m.read().unwrap();
        let mut want = Ring {
            texts: r.texts.clone(),
            ..filled(LINUX_6_1, 0)
        };
        want.texts.remove(victim);
        assert_eq!(out, want.expected());
        assert_eq!((s.damaged, s.first_damage), (1, Some(damage)));
    };

    // Misaligned end position.
    let mut m = Machine::new(&r);
    let at = blk(&m, 2);
    let (_, next) = lpos(&m, at);
    m.set_u64(at + 8, next.wrapping_add(3));
    check(&m, 2, RecordDamage::BadTextPosition { id: ids[2] });

    // Positions of another record's block: its leading ID gives it away.
    let mut m = Machine::new(&r);
    let (b, n) = lpos(&m, blk(&m, 3));
    let at = blk(&m, 2);
    m.set_u64(at, b);
    m.set_u64(at + 8, n);
    check(
        &m,
        2,
        RecordDamage::BlockIdMismatch {
            id: ids[2],
            found: ids[3],
        },
    );

    // An end exactly at a wrap boundary, which the kernel never writes: no room for the ID.
    let mut m = Machine::new(&r);
    let victim = (0..ids.len())
        .find(|&i| !lpos(&m, blk(&m, i)).0.is_multiple_of(r.size))
        .unwrap();
    let at = blk(&m, victim);
    let (begin, _) = lpos(&m, at);
    m.set_u64(
        at + 8,
        begin.wrapping_sub(begin % r.size).wrapping_add(r.size),
    );
    check(
        &m,
        victim,
        RecordDamage::BadTextPosition { id: ids[victim] },
    );

    // A text length larger than the block is cut to the block (makedumpfile does the same).
    let mut m = Machine::new(&r);
    let info =
        (DESCS + r.count * r.off.desc_size + (ids[1] % r.count) * r.off.info_size + r.off.text_len)
            as usize;
    m.image[info..info + 2].copy_from_slice(&u16::MAX.to_le_bytes());
    let (out, s) = m.read().unwrap();
    assert_eq!(s.damaged, 0);
    let line = out.lines().nth(1).unwrap();
    assert!(line.starts_with(&format!(
        "[{:5}.{:06}] {}",
        r.texts[1].2 / 1_000_000_000,
        r.texts[1].2 % 1_000_000_000 / 1000,
        String::from_utf8(r.texts[1].1.clone()).unwrap()
    )));
}

#[test]
fn inconsistent_head_and_tail_walk_at_most_one_ring() {
    let r = filled(LINUX_6_1, 60);
    let mut m = Machine::new(&r);
    // tail_id far behind head_id: makedumpfile would loop over ~2^40 IDs.
    let tail = (RB_STRUCT + r.off.desc_ring + r.off.tail_id) as usize;
    m.set_u64(tail, r.head_id.wrapping_sub(1 << 40) & DESC_ID_MASK);
    let (out, s) = m.read().unwrap();
    assert_eq!(out, r.expected());
    assert_eq!(s.records + s.skipped, r.count);
    assert_eq!(
        s.first_damage,
        Some(RecordDamage::InconsistentIds {
            tail_id: r.head_id.wrapping_sub(1 << 40) & DESC_ID_MASK,
            head_id: r.head_id
        })
    );
    // tail_id ahead of head_id.
    m.set_u64(tail, (r.head_id + 3) & DESC_ID_MASK);
    let (out, s) = m.read().unwrap();
    assert_eq!(out, r.expected());
    assert_eq!(s.damaged, 1);
}

#[test]
fn callback_can_stop_the_walk() {
    let r = filled(LINUX_6_1, 60);
    let m = Machine::new(&r);
    let regions = [
        SliceMem::new(IMAGE_PHYS, &m.image),
        SliceMem::new(DATA_PHYS, &m.memblock),
    ];
    let mem = MultiMem::new(&regions);
    let info = VmcoreInfo::new(m.vmcoreinfo.as_bytes());
    let old = OldMemory::new(&mem, &m.loads, info.phys_base());
    let layout = RingLayout::from_vmcoreinfo(&info).unwrap();
    let mut seen = Vec::new();
    let s = for_each_record(&old, &layout, |rec| {
        seen.push((rec.id, rec.seq, rec.caller_id));
        if seen.len() == 2 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert!(s.stopped);
    assert_eq!(s.records, 2);
    let first = r.texts[0].0;
    assert_eq!(seen[0].0, first);
    assert_eq!(seen[1].0, first + 1);
    assert_eq!(seen[1].1, seen[0].1 + 1);
    assert_eq!(seen[0].2, Some(0x8000_0000 | (first as u32 & 1)));
}

#[test]
fn fatal_errors() {
    let r = filled(LINUX_6_1, 20);
    let base = Machine::new(&r);
    // A missing key.
    let mut m = Machine::new(&r);
    m.vmcoreinfo = base.vmcoreinfo.replace("SYMBOL(prb)=", "SYMBOL(prb_)=");
    assert_eq!(m.read().unwrap_err(), PrintkError::MissingKey("prb"));
    // A field outside its struct.
    m.vmcoreinfo = base.vmcoreinfo.replace(
        "OFFSET(printk_info.ts_nsec)=8",
        "OFFSET(printk_info.ts_nsec)=84",
    );
    assert_eq!(
        m.read().unwrap_err(),
        PrintkError::BadLayout("printk_info.ts_nsec")
    );
    // An offset that would overflow.
    m.vmcoreinfo = base.vmcoreinfo.replace(
        "OFFSET(prb_desc_ring.head_id)=24",
        "OFFSET(prb_desc_ring.head_id)=18446744073709551615",
    );
    assert_eq!(
        m.read().unwrap_err(),
        PrintkError::BadLayout("prb_desc_ring.head_id")
    );
    // Ring sizes out of range.
    let mut m = Machine::new(&r);
    let cb = (RB_STRUCT + r.off.desc_ring + r.off.count_bits) as usize;
    m.image[cb..cb + 4].copy_from_slice(&60u32.to_le_bytes());
    assert_eq!(
        m.read().unwrap_err(),
        PrintkError::BadRingSize {
            count_bits: 60,
            size_bits: 10
        }
    );
    // The ring pointer outside every PT_LOAD.
    let mut m = Machine::new(&r);
    m.set_u64(PRB_VAR as usize, DIRECT_MAP + 0x9000_0000);
    assert!(matches!(
        m.read().unwrap_err(),
        PrintkError::Unreadable {
            what: "ring",
            error: VirtReadError::Unmapped { .. }
        }
    ));
    // The text ring pointer into a hole.
    let mut m = Machine::new(&r);
    let data = (RB_STRUCT + r.off.data_ring + r.off.data) as usize;
    m.set_u64(data, DIRECT_MAP + DATA_PHYS + 8);
    assert!(matches!(
        m.read().unwrap_err(),
        PrintkError::Unreadable {
            what: "text ring",
            ..
        }
    ));
}

/// Random damage anywhere in the ring never panics and never loops: every outcome is a
/// result, with at most `count` records.
#[test]
fn random_damage_never_panics() {
    let r = filled(LINUX_6_1, 80);
    let base = Machine::new(&r);
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for _ in 0..2000 {
        let mut m = Machine::new(&r);
        m.image.clone_from(&base.image);
        for _ in 0..1 + rand() % 8 {
            let target = rand();
            let byte = (rand() & 0xff) as u8;
            if target & 1 == 0 {
                let at = 0x200 + (rand() as usize) % (m.image.len() - 0x200);
                m.image[at] = byte;
            } else {
                let at = (rand() as usize) % m.memblock.len();
                m.memblock[at] = byte;
            }
        }
        if let Ok((_, s)) = m.read() {
            assert!(s.records + s.skipped + s.damaged <= r.count + 1);
        }
    }
}

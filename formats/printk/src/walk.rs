//! Walking the records from the oldest to the newest (makedumpfile `dump_lockless_dmesg()`).

use core::ops::ControlFlow;

use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::{OldMemory, VirtReadError};

use crate::{PrintkError, RecordDamage, RingLayout};

/// Bits 62 and 63 of `state_var` hold the state, the rest the record ID (`DESC_ID_MASK`).
pub const DESC_ID_MASK: u64 = !(3u64 << 62);
const DESC_FLAGS_SHIFT: u32 = 62;
const STATE_COMMITTED: u64 = 1;
const STATE_FINALIZED: u64 = 2;
/// The kernel's `LOG_BUF_LEN_MAX` is 2^31 bytes; the descriptor count is smaller still.
const MAX_RING_BITS: u32 = 31;
/// A text block starts with the record ID (`unsigned long`).
const BLOCK_ID_SIZE: u64 = 8;

/// Longest text passed to the callback; longer records are cut (the kernel's own limit,
/// `PRINTKRB_RECORD_MAX`, is 1024 bytes) and counted in [`WalkSummary::truncated`].
pub const MAX_TEXT: usize = 4096;

/// One complete record of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Descriptor ID.
    pub id: u64,
    /// `printk_info.seq`: the record's sequence number (gaps mean lost records).
    pub seq: u64,
    /// `printk_info.ts_nsec`: nanoseconds since boot (local clock).
    pub ts_nsec: u64,
    /// `printk_info.caller_id`, if VMCOREINFO exports its offset: bit 31 set means a CPU
    /// number in the low bits, clear means a task ID.
    pub caller_id: Option<u32>,
    /// The text, without a trailing newline; may contain `\n` and any byte.
    pub text: &'a [u8],
}

/// What a walk found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WalkSummary {
    /// Records passed to the callback.
    pub records: u64,
    /// Slots skipped without fault: reserved, reusable, reused by another ID, or data-less.
    pub skipped: u64,
    /// Records whose text was longer than [`MAX_TEXT`] and was cut.
    pub truncated: u64,
    /// Damaged records skipped, plus one if head and tail IDs were inconsistent.
    pub damaged: u64,
    /// The first damage found.
    pub first_damage: Option<RecordDamage>,
    /// Whether the callback stopped the walk.
    pub stopped: bool,
}

impl WalkSummary {
    pub(crate) fn damage(&mut self, d: RecordDamage) {
        self.damaged += 1;
        self.first_damage.get_or_insert(d);
    }
}

/// The ring's geometry, read and checked once.
struct Ring {
    descs: u64,
    infos: u64,
    data: u64,
    count: u64,
    size: u64,
}

/// Calls `visit` for every complete record from the oldest (`tail_id`) to the newest
/// (`head_id`, included), in bounded memory. See the crate docs for what is validated.
pub fn for_each_record<M: PhysMem + ?Sized>(
    mem: &OldMemory<'_, M>,
    layout: &RingLayout,
    mut visit: impl FnMut(&Record<'_>) -> ControlFlow<()>,
) -> Result<WalkSummary, PrintkError> {
    let unreadable = |what| move |error| PrintkError::Unreadable { what, error };
    let rb = mem
        .read_u64(layout.prb)
        .map_err(unreadable("ring pointer"))?;
    let at = |field: u64| rb.wrapping_add(field);
    let count_bits = mem
        .read_u32(at(layout.count_bits))
        .map_err(unreadable("ring"))?;
    let size_bits = mem
        .read_u32(at(layout.size_bits))
        .map_err(unreadable("ring"))?;
    if count_bits > MAX_RING_BITS || !(4..=MAX_RING_BITS).contains(&size_bits) {
        return Err(PrintkError::BadRingSize {
            count_bits,
            size_bits,
        });
    }
    let ring = Ring {
        descs: mem.read_u64(at(layout.descs)).map_err(unreadable("ring"))?,
        infos: mem.read_u64(at(layout.infos)).map_err(unreadable("ring"))?,
        data: mem.read_u64(at(layout.data)).map_err(unreadable("ring"))?,
        count: 1 << count_bits,
        size: 1 << size_bits,
    };
    let head_id = mem
        .read_u64(at(layout.head_id))
        .map_err(unreadable("ring"))?
        & DESC_ID_MASK;
    let tail_id = mem
        .read_u64(at(layout.tail_id))
        .map_err(unreadable("ring"))?
        & DESC_ID_MASK;
    // The three arrays must at least begin and end in readable memory: a wild pointer is
    // fatal rather than `count` damaged records.
    let mut byte = [0u8; 1];
    for (what, base, len) in [
        ("descriptors", ring.descs, ring.count * layout.desc_size),
        ("infos", ring.infos, ring.count * layout.info_size),
        ("text ring", ring.data, ring.size),
    ] {
        mem.read(base, &mut byte).map_err(unreadable(what))?;
        let last = base.checked_add(len - 1).ok_or(PrintkError::Unreadable {
            what,
            error: VirtReadError::Wraps { vaddr: base },
        })?;
        mem.read(last, &mut byte).map_err(unreadable(what))?;
    }

    let mut summary = WalkSummary::default();
    let mut first = tail_id;
    if head_id.wrapping_sub(tail_id) & DESC_ID_MASK >= ring.count {
        summary.damage(RecordDamage::InconsistentIds { tail_id, head_id });
        first = head_id.wrapping_sub(ring.count - 1) & DESC_ID_MASK;
    }
    let mut text = [0u8; MAX_TEXT];
    let mut id = first;
    loop {
        if let ControlFlow::Break(()) =
            visit_one(mem, layout, &ring, id, &mut text, &mut summary, &mut visit)
        {
            summary.stopped = true;
            break;
        }
        if id == head_id {
            break;
        }
        id = id.wrapping_add(1) & DESC_ID_MASK;
    }
    Ok(summary)
}

/// Reads record `id` and passes it to `visit` if it is complete (makedumpfile `dump_record()`).
fn visit_one<M: PhysMem + ?Sized>(
    mem: &OldMemory<'_, M>,
    layout: &RingLayout,
    ring: &Ring,
    id: u64,
    text: &mut [u8; MAX_TEXT],
    summary: &mut WalkSummary,
    visit: &mut impl FnMut(&Record<'_>) -> ControlFlow<()>,
) -> ControlFlow<()> {
    let slot = id % ring.count;
    let desc = ring.descs + slot * layout.desc_size;
    let Ok(state_var) = mem.read_u64(desc + layout.state_var) else {
        summary.damage(RecordDamage::UnreadableDescriptor { id });
        return ControlFlow::Continue(());
    };
    let state = state_var >> DESC_FLAGS_SHIFT;
    if state_var & DESC_ID_MASK != id || !(state == STATE_COMMITTED || state == STATE_FINALIZED) {
        summary.skipped += 1;
        return ControlFlow::Continue(());
    }
    let info = ring.infos + slot * layout.info_size;
    let fields = (|| -> Result<_, VirtReadError> {
        let begin = mem.read_u64(desc + layout.lpos_begin)?;
        let next = mem.read_u64(desc + layout.lpos_next)?;
        let seq = mem.read_u64(info + layout.seq)?;
        let ts_nsec = mem.read_u64(info + layout.ts_nsec)?;
        let mut len = [0u8; 2];
        mem.read(info + layout.text_len, &mut len)?;
        let caller_id = match layout.caller_id {
            Some(off) => Some(mem.read_u32(info + off)?),
            None => None,
        };
        Ok((
            begin,
            next,
            seq,
            ts_nsec,
            u16::from_le_bytes(len),
            caller_id,
        ))
    })();
    let Ok((begin, next, seq, ts_nsec, text_len, caller_id)) = fields else {
        summary.damage(RecordDamage::UnreadableDescriptor { id });
        return ControlFlow::Continue(());
    };
    let (mut begin, next) = (begin % ring.size, next % ring.size);
    if begin == next {
        // Data-less record (NO_LPOS / FAILED_LPOS): makedumpfile prints nothing for it.
        summary.skipped += 1;
        return ControlFlow::Continue(());
    }
    if begin > next {
        // The block did not fit before the end of the ring and was stored at index 0.
        begin = 0;
    }
    if begin % BLOCK_ID_SIZE != 0 || next % BLOCK_ID_SIZE != 0 || next - begin < BLOCK_ID_SIZE {
        summary.damage(RecordDamage::BadTextPosition { id });
        return ControlFlow::Continue(());
    }
    match mem.read_u64(ring.data + begin) {
        Ok(found) if found & DESC_ID_MASK == id => {}
        Ok(found) => {
            summary.damage(RecordDamage::BlockIdMismatch { id, found });
            return ControlFlow::Continue(());
        }
        Err(_) => {
            summary.damage(RecordDamage::UnreadableText { id });
            return ControlFlow::Continue(());
        }
    }
    let room = next - begin - BLOCK_ID_SIZE;
    let len = u64::from(text_len).min(room);
    let kept = usize::try_from(len).unwrap_or(MAX_TEXT).min(MAX_TEXT);
    if u64::try_from(kept).unwrap_or(u64::MAX) < len {
        summary.truncated += 1;
    }
    if mem
        .read(ring.data + begin + BLOCK_ID_SIZE, &mut text[..kept])
        .is_err()
    {
        summary.damage(RecordDamage::UnreadableText { id });
        return ControlFlow::Continue(());
    }
    summary.records += 1;
    visit(&Record {
        id,
        seq,
        ts_nsec,
        caller_id,
        text: &text[..kept],
    })
}

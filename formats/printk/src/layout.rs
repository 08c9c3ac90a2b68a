//! Where the ring's fields are, from VMCOREINFO (`log_buf_vmcoreinfo_setup()`).

use minicap_vmcoreinfo::VmcoreInfo;

use crate::PrintkError;

/// Largest struct size accepted from VMCOREINFO (real ones are under 100 bytes).
const MAX_STRUCT: u64 = 4096;

/// The lockless ring's symbol, struct sizes and field offsets, all from VMCOREINFO.
///
/// Atomic fields (`state_var`, `head_id`, `tail_id`) already include
/// `OFFSET(atomic_long_t.counter)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLayout {
    /// `SYMBOL(prb)`: address of the pointer to the active ring.
    pub prb: u64,
    /// `OFFSET(printk_ringbuffer.desc_ring) + OFFSET(prb_desc_ring.count_bits)`.
    pub count_bits: u64,
    /// `... + OFFSET(prb_desc_ring.descs)`.
    pub descs: u64,
    /// `... + OFFSET(prb_desc_ring.infos)`.
    pub infos: u64,
    /// `... + OFFSET(prb_desc_ring.head_id)` (+ atomic counter).
    pub head_id: u64,
    /// `... + OFFSET(prb_desc_ring.tail_id)` (+ atomic counter).
    pub tail_id: u64,
    /// `OFFSET(printk_ringbuffer.text_data_ring) + OFFSET(prb_data_ring.size_bits)`.
    pub size_bits: u64,
    /// `... + OFFSET(prb_data_ring.data)`.
    pub data: u64,
    /// `SIZE(prb_desc)`.
    pub desc_size: u64,
    /// `OFFSET(prb_desc.state_var)` (+ atomic counter).
    pub state_var: u64,
    /// `OFFSET(prb_desc.text_blk_lpos) + OFFSET(prb_data_blk_lpos.begin)`.
    pub lpos_begin: u64,
    /// `OFFSET(prb_desc.text_blk_lpos) + OFFSET(prb_data_blk_lpos.next)`.
    pub lpos_next: u64,
    /// `SIZE(printk_info)`.
    pub info_size: u64,
    /// `OFFSET(printk_info.seq)`.
    pub seq: u64,
    /// `OFFSET(printk_info.ts_nsec)`.
    pub ts_nsec: u64,
    /// `OFFSET(printk_info.text_len)`.
    pub text_len: u64,
    /// `OFFSET(printk_info.caller_id)`, if exported.
    pub caller_id: Option<u64>,
}

/// Offset of `key` (an `OFFSET()` name) plus `extra`, from `base`, checked to leave `width`
/// bytes inside a struct of `size` bytes.
fn field(
    v: &VmcoreInfo<'_>,
    base: u64,
    key: &'static str,
    extra: u64,
    width: u64,
    size: u64,
) -> Result<u64, PrintkError> {
    let at = v
        .offset(key)
        .ok_or(PrintkError::MissingKey(key))?
        .checked_add(extra)
        .and_then(|o| o.checked_add(base))
        .ok_or(PrintkError::BadLayout(key))?;
    match at.checked_add(width) {
        Some(end) if end <= size => Ok(at),
        _ => Err(PrintkError::BadLayout(key)),
    }
}

/// `SIZE(key)`, between 1 and [`MAX_STRUCT`].
fn size(v: &VmcoreInfo<'_>, key: &'static str) -> Result<u64, PrintkError> {
    let n = v.size(key).ok_or(PrintkError::MissingKey(key))?;
    if (1..=MAX_STRUCT).contains(&n) {
        Ok(n)
    } else {
        Err(PrintkError::BadLayout(key))
    }
}

impl RingLayout {
    /// Reads the layout from VMCOREINFO and checks that every field lies inside its struct
    /// (and each embedded struct inside its parent).
    pub fn from_vmcoreinfo(v: &VmcoreInfo<'_>) -> Result<Self, PrintkError> {
        let prb = v.symbol("prb").ok_or(PrintkError::MissingKey("prb"))?;
        let rb = size(v, "printk_ringbuffer")?;
        let desc_ring_size = size(v, "prb_desc_ring")?;
        let data_ring_size = size(v, "prb_data_ring")?;
        let lpos_size = size(v, "prb_data_blk_lpos")?;
        let desc = size(v, "prb_desc")?;
        let info = size(v, "printk_info")?;
        // Older kernels may lack the atomic_long_t keys; the counter is then at offset 0.
        let counter = v.offset("atomic_long_t.counter").unwrap_or(0);
        if counter > 8 {
            return Err(PrintkError::BadLayout("atomic_long_t.counter"));
        }

        let dr = field(v, 0, "printk_ringbuffer.desc_ring", 0, desc_ring_size, rb)?;
        let tr = field(
            v,
            0,
            "printk_ringbuffer.text_data_ring",
            0,
            data_ring_size,
            rb,
        )?;
        let end_dr = dr + desc_ring_size;
        let end_tr = tr + data_ring_size;
        let blk = field(v, 0, "prb_desc.text_blk_lpos", 0, lpos_size, desc)?;
        let end_blk = blk + lpos_size;
        Ok(Self {
            prb,
            count_bits: field(v, dr, "prb_desc_ring.count_bits", 0, 4, end_dr)?,
            descs: field(v, dr, "prb_desc_ring.descs", 0, 8, end_dr)?,
            infos: field(v, dr, "prb_desc_ring.infos", 0, 8, end_dr)?,
            head_id: field(v, dr, "prb_desc_ring.head_id", counter, 8, end_dr)?,
            tail_id: field(v, dr, "prb_desc_ring.tail_id", counter, 8, end_dr)?,
            size_bits: field(v, tr, "prb_data_ring.size_bits", 0, 4, end_tr)?,
            data: field(v, tr, "prb_data_ring.data", 0, 8, end_tr)?,
            desc_size: desc,
            state_var: field(v, 0, "prb_desc.state_var", counter, 8, desc)?,
            lpos_begin: field(v, blk, "prb_data_blk_lpos.begin", 0, 8, end_blk)?,
            lpos_next: field(v, blk, "prb_data_blk_lpos.next", 0, 8, end_blk)?,
            info_size: info,
            seq: field(v, 0, "printk_info.seq", 0, 8, info)?,
            ts_nsec: field(v, 0, "printk_info.ts_nsec", 0, 8, info)?,
            text_len: field(v, 0, "printk_info.text_len", 0, 2, info)?,
            caller_id: match v.offset("printk_info.caller_id") {
                Some(_) => Some(field(v, 0, "printk_info.caller_id", 0, 4, info)?),
                None => None,
            },
        })
    }
}

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

impl RingLayout {
    /// Reads the layout from VMCOREINFO and checks that every field lies inside its struct.
    pub fn from_vmcoreinfo(v: &VmcoreInfo<'_>) -> Result<Self, PrintkError> {
        let off = |k: &'static str| v.offset(k).ok_or(PrintkError::MissingKey(k));
        let size = |k: &'static str| v.size(k).ok_or(PrintkError::MissingKey(k));

        let prb = v.symbol("prb").ok_or(PrintkError::MissingKey("prb"))?;
        let rb_size = size("printk_ringbuffer")?;
        let desc_ring = off("printk_ringbuffer.desc_ring")?;
        let data_ring = off("printk_ringbuffer.text_data_ring")?;
        let desc_ring_size = size("prb_desc_ring")?;
        let data_ring_size = size("prb_data_ring")?;
        let lpos_size = size("prb_data_blk_lpos")?;
        // Older kernels may lack the atomic_long_t keys; the counter is then at offset 0.
        let counter = v.offset("atomic_long_t.counter").unwrap_or(0);
        let desc_size = size("prb_desc")?;
        let info_size = size("printk_info")?;

        let in_struct = |base: u64, field: u64, width: u64, size: u64, what: &'static str| {
            let end = base
                .checked_add(field)
                .and_then(|a| a.checked_add(width))
                .ok_or(PrintkError::BadLayout(what))?;
            if size > MAX_STRUCT || end > size {
                return Err(PrintkError::BadLayout(what));
            }
            Ok(base + field)
        };
        for (base, width, what) in [
            (desc_ring, desc_ring_size, "printk_ringbuffer.desc_ring"),
            (
                data_ring,
                data_ring_size,
                "printk_ringbuffer.text_data_ring",
            ),
        ] {
            in_struct(base, 0, width, rb_size, what)?;
        }
        let text_blk = off("prb_desc.text_blk_lpos")?;
        in_struct(text_blk, 0, lpos_size, desc_size, "prb_desc.text_blk_lpos")?;

        let layout = Self {
            prb,
            count_bits: in_struct(
                desc_ring,
                off("prb_desc_ring.count_bits")?,
                4,
                rb_size,
                "prb_desc_ring.count_bits",
            )?,
            descs: in_struct(
                desc_ring,
                off("prb_desc_ring.descs")?,
                8,
                rb_size,
                "prb_desc_ring.descs",
            )?,
            infos: in_struct(
                desc_ring,
                off("prb_desc_ring.infos")?,
                8,
                rb_size,
                "prb_desc_ring.infos",
            )?,
            head_id: in_struct(
                desc_ring,
                off("prb_desc_ring.head_id")? + counter,
                8,
                rb_size,
                "prb_desc_ring.head_id",
            )?,
            tail_id: in_struct(
                desc_ring,
                off("prb_desc_ring.tail_id")? + counter,
                8,
                rb_size,
                "prb_desc_ring.tail_id",
            )?,
            size_bits: in_struct(
                data_ring,
                off("prb_data_ring.size_bits")?,
                4,
                rb_size,
                "prb_data_ring.size_bits",
            )?,
            data: in_struct(
                data_ring,
                off("prb_data_ring.data")?,
                8,
                rb_size,
                "prb_data_ring.data",
            )?,
            desc_size,
            state_var: in_struct(
                0,
                off("prb_desc.state_var")? + counter,
                8,
                desc_size,
                "prb_desc.state_var",
            )?,
            lpos_begin: in_struct(
                text_blk,
                off("prb_data_blk_lpos.begin")?,
                8,
                desc_size,
                "prb_data_blk_lpos.begin",
            )?,
            lpos_next: in_struct(
                text_blk,
                off("prb_data_blk_lpos.next")?,
                8,
                desc_size,
                "prb_data_blk_lpos.next",
            )?,
            info_size,
            seq: in_struct(0, off("printk_info.seq")?, 8, info_size, "printk_info.seq")?,
            ts_nsec: in_struct(
                0,
                off("printk_info.ts_nsec")?,
                8,
                info_size,
                "printk_info.ts_nsec",
            )?,
            text_len: in_struct(
                0,
                off("printk_info.text_len")?,
                2,
                info_size,
                "printk_info.text_len",
            )?,
            caller_id: match v.offset("printk_info.caller_id") {
                Some(o) => Some(in_struct(0, o, 4, info_size, "printk_info.caller_id")?),
                None => None,
            },
        };
        if desc_size == 0 || info_size == 0 {
            return Err(PrintkError::BadLayout("zero-sized descriptor or info"));
        }
        Ok(layout)
    }
}

//! The log of kernels 3.5 to 5.9: variable-length records in one byte ring (makedumpfile
//! `dump_dmesg()`, `log_from_ptr()`, `log_next()`).
//!
//! `*SYMBOL(log_buf)` is the ring, `*SYMBOL(log_buf_len)` (a 32-bit int) its size; records
//! run from the byte index `*SYMBOL(log_first_idx)` to `*SYMBOL(log_next_idx)` (both 32-bit).
//! A record is a `struct printk_log` header (`SIZE(printk_log)` bytes; the struct was named
//! `log` before 3.11) with `ts_nsec`, `len` (of the whole record, 8-byte aligned) and
//! `text_len`, followed by the text. A record with `len == 0` marks the end of the used
//! part: the next record is at index 0. The kernel always leaves room for such a header
//! after a record, so a record ends at least `SIZE(printk_log)` bytes before the ring end.
//!
//! The walk ends after at most `log_buf_len / SIZE(printk_log) + 2` records, so a damaged
//! ring (a cycle, which makedumpfile detects with `dc_next()`) cannot loop; a record whose
//! length is impossible ends the walk with the records before it, as in makedumpfile.

use core::ops::ControlFlow;

use minicap_physmem::PhysMem;
use minicap_vmcoreinfo::{OldMemory, VmcoreInfo};

use crate::{PrintkError, Record, RecordDamage, WalkSummary, MAX_TEXT};

/// Largest `SIZE(printk_log)` accepted (real ones are 16 or 24 bytes).
const MAX_HEADER: usize = 64;

/// Symbols and the record header layout of the pre-5.10 log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyLayout {
    /// `SYMBOL(log_buf)`: the pointer to the ring.
    pub log_buf: u64,
    /// `SYMBOL(log_buf_len)`: its size (u32).
    pub log_buf_len: u64,
    /// `SYMBOL(log_first_idx)` (u32).
    pub first_idx: u64,
    /// `SYMBOL(log_next_idx)` (u32).
    pub next_idx: u64,
    /// `SIZE(printk_log)`.
    pub header_size: u64,
    /// `OFFSET(printk_log.ts_nsec)`.
    pub ts_nsec: u64,
    /// `OFFSET(printk_log.len)`.
    pub len: u64,
    /// `OFFSET(printk_log.text_len)`.
    pub text_len: u64,
    /// `OFFSET(printk_log.caller_id)`, if exported.
    pub caller_id: Option<u64>,
}

impl LegacyLayout {
    /// Reads the keys (struct `printk_log`, or `log` before 3.11) and checks the offsets.
    pub fn from_vmcoreinfo(v: &VmcoreInfo<'_>) -> Result<Self, PrintkError> {
        let sym = |k: &'static str| v.symbol(k).ok_or(PrintkError::MissingKey(k));
        let name = if v.size("printk_log").is_some() {
            "printk_log"
        } else {
            "log"
        };
        let header_size = v.size(name).ok_or(PrintkError::MissingKey("printk_log"))?;
        if !(1..=MAX_HEADER as u64).contains(&header_size) {
            return Err(PrintkError::BadLayout("printk_log"));
        }
        let field = |f: &'static str, key: &'static str, width: u64| -> Result<u64, PrintkError> {
            let mut full = [0u8; 32];
            let text = concat_into(&mut full, name, f);
            let o = v.offset(text).ok_or(PrintkError::MissingKey(key))?;
            match o.checked_add(width) {
                Some(end) if end <= header_size => Ok(o),
                _ => Err(PrintkError::BadLayout(key)),
            }
        };
        Ok(Self {
            log_buf: sym("log_buf")?,
            log_buf_len: sym("log_buf_len")?,
            first_idx: sym("log_first_idx")?,
            next_idx: sym("log_next_idx")?,
            header_size,
            ts_nsec: field("ts_nsec", "printk_log.ts_nsec", 8)?,
            len: field("len", "printk_log.len", 2)?,
            text_len: field("text_len", "printk_log.text_len", 2)?,
            caller_id: match field("caller_id", "printk_log.caller_id", 4) {
                Ok(o) => Some(o),
                Err(PrintkError::MissingKey(_)) => None,
                Err(e) => return Err(e),
            },
        })
    }
}

/// `"{name}.{field}"` in `buf` (both are short ASCII constants).
fn concat_into<'b>(buf: &'b mut [u8; 32], name: &str, field: &str) -> &'b str {
    let mut n = 0;
    for part in [name.as_bytes(), b".", field.as_bytes()] {
        buf[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    core::str::from_utf8(&buf[..n]).unwrap_or("")
}

/// Calls `visit` for every record from `log_first_idx` to `log_next_idx`, in bounded memory.
/// [`Record::id`] is the record's byte index in the ring and [`Record::seq`] counts from 0.
pub fn for_each_legacy_record<M: PhysMem + ?Sized>(
    mem: &OldMemory<'_, M>,
    layout: &LegacyLayout,
    mut visit: impl FnMut(&Record<'_>) -> ControlFlow<()>,
) -> Result<WalkSummary, PrintkError> {
    let unreadable = |what| move |error| PrintkError::Unreadable { what, error };
    let buf = mem
        .read_u64(layout.log_buf)
        .map_err(unreadable("log_buf"))?;
    let size = u64::from(
        mem.read_u32(layout.log_buf_len)
            .map_err(unreadable("log_buf_len"))?,
    );
    let first = u64::from(
        mem.read_u32(layout.first_idx)
            .map_err(unreadable("log_first_idx"))?,
    );
    let next = u64::from(
        mem.read_u32(layout.next_idx)
            .map_err(unreadable("log_next_idx"))?,
    );
    let hdr = layout.header_size;
    if !size.is_power_of_two()
        || size > 1 << 31
        || size < 2 * hdr
        || first >= size
        || next >= size
        || buf.checked_add(size).is_none()
    {
        return Err(PrintkError::BadLogBuffer { size, first, next });
    }
    let mut byte = [0u8; 1];
    mem.read(buf, &mut byte).map_err(unreadable("log_buf"))?;
    mem.read(buf + (size - 1), &mut byte)
        .map_err(unreadable("log_buf"))?;

    let mut summary = WalkSummary::default();
    let mut header = [0u8; MAX_HEADER];
    let header = &mut header[..usize::try_from(hdr).unwrap_or(MAX_HEADER)];
    let mut text = [0u8; MAX_TEXT];
    let u16_at = |h: &[u8], o: u64| {
        let o = usize::try_from(o).unwrap_or(0);
        u16::from_le_bytes([h[o], h[o + 1]])
    };
    let mut idx = first;
    let mut wrapped_here = false;
    let max_steps = size / hdr + 2;
    let mut steps = 0u64;
    while idx != next {
        steps += 1;
        if steps > max_steps {
            summary.damage(RecordDamage::Cycle);
            break;
        }
        if mem.read(buf + idx, header).is_err() {
            summary.damage(RecordDamage::UnreadableDescriptor { id: idx });
            break;
        }
        let len = u64::from(u16_at(header, layout.len));
        if len == 0 {
            // End marker: the record is at index 0. Twice in a row means no record at all.
            if wrapped_here || idx == 0 {
                summary.damage(RecordDamage::BadRecord { index: idx });
                break;
            }
            idx = 0;
            wrapped_here = true;
            continue;
        }
        wrapped_here = false;
        if len < hdr || idx + len + hdr > size {
            summary.damage(RecordDamage::BadRecord { index: idx });
            break;
        }
        let want = u64::from(u16_at(header, layout.text_len)).min(len - hdr);
        let kept = usize::try_from(want).unwrap_or(MAX_TEXT).min(MAX_TEXT);
        if (kept as u64) < want {
            summary.truncated += 1;
        }
        if mem.read(buf + idx + hdr, &mut text[..kept]).is_err() {
            summary.damage(RecordDamage::UnreadableText { id: idx });
            break;
        }
        let o = usize::try_from(layout.ts_nsec).unwrap_or(0);
        let ts_nsec = u64::from_le_bytes(header[o..o + 8].try_into().unwrap_or([0; 8]));
        let caller_id = layout.caller_id.map(|c| {
            let c = usize::try_from(c).unwrap_or(0);
            u32::from_le_bytes(header[c..c + 4].try_into().unwrap_or([0; 4]))
        });
        let rec = Record {
            id: idx,
            seq: summary.records,
            ts_nsec,
            caller_id,
            text: &text[..kept],
        };
        summary.records += 1;
        if visit(&rec).is_break() {
            summary.stopped = true;
            break;
        }
        idx += len;
    }
    Ok(summary)
}

//! The crashed kernel's log, read from its printk buffer in old memory (the lockless ring of
//! Linux ≥ 5.10; the record buffer of 3.5 to 5.9 too).
//!
//! Since 5.10 printk keeps its records in a lockless ring (`kernel/printk/printk_ringbuffer.[ch]`):
//!
//! * `*SYMBOL(prb)` points to the active `struct printk_ringbuffer` (the static one, or the
//!   one `setup_log_buf()` enlarged in memblock memory);
//! * its `desc_ring` has `1 << count_bits` descriptors (`descs[]`) and as many `printk_info`
//!   (`infos[]`), slot `id % count` for record `id`, plus `head_id` and `tail_id`;
//! * its `text_data_ring` has `1 << size_bits` bytes of text (`data`). A record's text block is
//!   `{unsigned long id; char text[]}`, 8-byte aligned, between the logical positions
//!   `text_blk_lpos.begin` and `.next`. A block that would cross the end of the ring is stored
//!   whole at index 0 (only its ID is left at `begin`), so `begin % size > next % size` means
//!   "the text is at 0";
//! * a descriptor's `state_var` holds the record ID in its low 62 bits and the state in the top
//!   two (0 reserved, 1 committed, 2 finalized, 3 reusable). Only committed and finalized
//!   records are complete; a state_var whose ID is not the one asked for belongs to another
//!   (newer or older) record that reused the slot.
//!
//! [`for_each_record`] walks the IDs from `tail_id` to `head_id`, head included, exactly like
//! makedumpfile's `dump_lockless_dmesg()`/`dump_record()` and crash's
//! `dump_lockless_record_log()`, and [`DmesgFormat`] prints each record as
//! `makedumpfile --dump-dmesg` does. Every structure offset and size comes from VMCOREINFO
//! (`log_buf_vmcoreinfo_setup()` in `kernel/printk/printk.c` exports them), never from a
//! compiled-in struct, because they change between kernel versions (`prb_desc_ring` grew
//! `last_finalized_id` after 5.10, for instance).
//!
//! Unlike the tools, which copy the three arrays whole, the walker reads one descriptor, one
//! info and one text block at a time, so it needs a fixed amount of memory
//! ([`MAX_TEXT`] bytes of stack for the text) whatever the ring size. It also trusts nothing in
//! old memory: sizes that make no sense are fatal ([`PrintkError`]); a descriptor whose text
//! block is misaligned, too short, unreadable or does not start with the descriptor's ID is
//! skipped and counted ([`WalkSummary::damaged`]); and a head/tail pair further apart than the
//! ring holds is counted too and the walk covers the last `count` IDs up to the head, so it
//! always ends after at most `count` records.
//!
//! Kernels 3.5 to 5.9 keep a different log (one byte ring of variable-length records);
//! [`for_each_legacy_record`] reads it (see its module), and [`LogLayout`] /
//! [`for_each_log_record`] pick the right reader from VMCOREINFO as makedumpfile does.
//!
//! Pure logic: no `unsafe`, no allocation, host tested with synthetic rings.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod format;
mod layout;
mod legacy;
mod log;
mod walk;

pub use error::{PrintkError, RecordDamage};
pub use format::DmesgFormat;
pub use layout::RingLayout;
pub use legacy::{for_each_legacy_record, LegacyLayout};
pub use log::{for_each_log_record, LogLayout};
pub use walk::{for_each_record, Record, WalkSummary, DESC_ID_MASK, MAX_TEXT};

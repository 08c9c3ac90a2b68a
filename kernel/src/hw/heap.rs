//! The kernel heap: one range of usable crash-region memory, chosen by the
//! memory plan (`minicap_capture::memory::{usable_ram, exclude,
//! choose_heap}`) so that it holds neither the image, boot_params, the
//! command line, the ELF core headers nor the page tables kexec left in use.
//!
//! This module is the allocator alone, below the page tables (which take
//! their frames from it); `heap_init` checks a range against the page
//! tables before it is handed over here.

use core::alloc::Layout;
use core::ops::Range;
use linked_list_allocator::LockedHeap;
use spin::Once;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The range handed to the allocator, once it is.
static RANGE: Once<Range<u64>> = Once::new();

/// The heap's range (None before `init_checked`).
pub fn range() -> Option<Range<u64>> {
    RANGE.get().cloned()
}

/// Zeroed, aligned memory that lives for the rest of the run; its address is
/// its physical address (identity map). Only the hardware layer hands such
/// memory out, wrapped in a type that bounds every access (`DmaBuffer`, a
/// page-table page).
pub(super) fn alloc_forever(size: usize, align: usize) -> Option<u64> {
    let layout = Layout::from_size_align(size, align).ok()?;
    if layout.size() == 0 {
        return None;
    }
    // SAFETY: the layout has a non-zero size; the memory is never freed.
    let ptr = unsafe { alloc::alloc::alloc_zeroed(layout) };
    if ptr.is_null() {
        None
    } else {
        Some(ptr as u64)
    }
}

/// A zeroed page for the page tables.
pub(super) fn page_table_frame() -> Option<u64> {
    alloc_forever(4096, 4096)
}

/// Hand `range` to the allocator, once.
///
/// # Safety
/// `range` is whole pages of RAM that the active page tables map
/// write-back, clear of the image and of every live page-table page, and
/// nothing else refers to it; `heap_init::init_checked` checks all of it.
pub(super) unsafe fn init(range: Range<u64>) {
    let mut first = false;
    RANGE.call_once(|| {
        first = true;
        range.clone()
    });
    assert!(first, "the heap is initialised once");
    let size = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
    // SAFETY: the caller's contract; `RANGE` makes this the only call.
    unsafe { HEAP.lock().init(range.start as *mut u8, size) };
}

//! The kernel heap: one range of usable crash-region memory, chosen by
//! `memory::plan` so that it holds neither the image, boot_params, the
//! command line, the ELF core headers nor the page tables kexec left in use.

use core::alloc::Layout;
use linked_list_allocator::LockedHeap;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// Hand [start, start+size) to the allocator.
///
/// # Safety
/// The range must be RAM that is mapped, unused by anything else for the
/// rest of the run, and not reachable through any other Rust reference.
pub unsafe fn init(start: u64, size: u64) {
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    // SAFETY: forwarded from the caller's contract.
    unsafe { HEAP.lock().init(start as *mut u8, size) };
}

/// Zeroed, aligned memory that lives for the rest of the run; its address is
/// its physical address (identity map).
pub fn alloc_forever(size: usize, align: usize) -> Option<u64> {
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
pub fn page_table_frame() -> Option<u64> {
    alloc_forever(4096, 4096)
}

/// Initialise the heap over a range that `memory::free_ranges` produced.
pub fn init_checked(range: core::ops::Range<u64>) {
    // SAFETY: `memory::free_ranges` only yields e820 RAM above 1 MiB minus
    // the image, boot_params, command line, ELF core headers and every live
    // page-table page; the inherited identity map covers the crash region,
    // and nothing else refers to this memory. Called once.
    unsafe { init(range.start, range.end - range.start) };
}

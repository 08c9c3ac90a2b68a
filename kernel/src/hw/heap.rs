//! The kernel heap: one range of usable crash-region memory, chosen by the
//! memory plan (`minicap_capture::memory::{usable_ram, exclude,
//! choose_heap}`) so that it holds neither the image, boot_params, the
//! command line, the ELF core headers nor the page tables kexec left in use.

use super::paging::{self, Caching};
use core::alloc::Layout;
use core::ops::Range;
use linked_list_allocator::LockedHeap;
use spin::Once;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

/// The range handed to the allocator, once it is.
static RANGE: Once<Range<u64>> = Once::new();

use minicap_physmem::PAGE_SIZE as PAGE;

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

/// Why `init_checked` refused a range.
fn refusal(range: &Range<u64>) -> Option<&'static str> {
    if range.start >= range.end
        || !range.start.is_multiple_of(PAGE)
        || !range.end.is_multiple_of(PAGE)
    {
        return Some("not whole pages");
    }
    let (image_start, image_end) = super::image_range();
    if range.start < image_end && image_start < range.end {
        return Some("it overlaps the image");
    }
    let mut page = range.start;
    while page < range.end {
        if paging::caching_of(page) != Some(Caching::WriteBack) {
            return Some("it is not mapped as RAM");
        }
        page += PAGE;
    }
    let mut live_table = false;
    paging::for_each_table_page(|table| live_table |= range.contains(&table));
    if live_table {
        return Some("it holds a page table in use");
    }
    None
}

/// Hand `range` to the allocator, once. The caller (`memory`) chose usable
/// e820 RAM above 1 MiB minus the image, boot_params, the command line and
/// the ELF core headers; what the hardware layer can check itself is
/// checked here, and a range that fails stops the run (internal error):
/// whole pages, mapped write-back (RAM), clear of the image and of every
/// page-table page in use.
pub fn init_checked(range: Range<u64>) {
    if let Some(why) = refusal(&range) {
        panic!(
            "heap range {:#x}-{:#x} refused: {why}",
            range.start, range.end
        );
    }
    let mut first = false;
    RANGE.call_once(|| {
        first = true;
        range.clone()
    });
    assert!(first, "the heap is initialised once");
    let size = usize::try_from(range.end - range.start).unwrap_or(usize::MAX);
    // SAFETY: the range is whole pages of memory mapped write-back (RAM),
    // clear of the image and of every live page-table page (checked above),
    // handed over once; `memory` chose it clear of everything else minicap
    // or the dump still reads, and nothing else refers to it.
    unsafe { HEAP.lock().init(range.start as *mut u8, size) };
}

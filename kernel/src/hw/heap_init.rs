//! Handing the heap its memory: the checks the hardware layer can make
//! itself (against the page tables, which take their frames from the heap,
//! so this lives above both) before `heap::init`.

use super::heap;
use super::paging::{self, Caching};
use core::ops::Range;
use minicap_physmem::PAGE_SIZE as PAGE;

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
    // SAFETY: the range is whole pages of memory mapped write-back (RAM),
    // clear of the image and of every live page-table page (checked above);
    // `memory` chose it clear of everything else minicap or the dump still
    // reads, and nothing else refers to it.
    unsafe { heap::init(range) };
}

//! Reading the crashed kernel's physical memory through the identity map.

use super::mmio::MmioRegion;
use super::paging::{self, Caching};
use super::{heap, image_range};
use core::ops::Range;
use minicap_physmem::{PhysMem, PhysMemError};

use minicap_physmem::PAGE_SIZE as PAGE;

/// Physical memory as seen through whichever page tables are active, read
/// by copying: a read of a range that is not mapped, or that touches a
/// device's claimed registers, fails instead of faulting or disturbing the
/// device.
pub struct IdentityMem;

fn range_mapped(addr: u64, len: u64) -> bool {
    let Some(end) = addr.checked_add(len) else {
        return false;
    };
    let mut page = addr & !(PAGE - 1);
    while page < end {
        if !paging::is_mapped(page) {
            return false;
        }
        page += PAGE;
    }
    true
}

impl PhysMem for IdentityMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let len = buf.len() as u64;
        if len == 0 {
            return Ok(());
        }
        if !range_mapped(paddr, len) || MmioRegion::any_overlaps(paddr, len) {
            return Err(PhysMemError { addr: paddr, len });
        }
        // SAFETY: every page of [paddr, paddr+len) is mapped at VA == PA (just
        // checked), and `buf` is a distinct, writable Rust buffer.
        unsafe {
            core::ptr::copy_nonoverlapping(paddr as *const u8, buf.as_mut_ptr(), buf.len());
        }
        Ok(())
    }
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// Run `f` on the bytes of old memory [addr, addr+len), or return None if
/// the range is not old memory: every page of it must be mapped write-back
/// (RAM, not device registers), and it must not touch minicap's own image
/// or heap (the only memory Rust writes).
pub fn with_slice<R>(addr: u64, len: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    let range = addr..addr.checked_add(len)?;
    let (image_start, image_end) = image_range();
    let own = [image_start..image_end, heap::range().unwrap_or(0..0)];
    if own.iter().any(|r| overlaps(r, &range)) || !paging::range_is(addr, len, Caching::WriteBack) {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    // SAFETY: the range is mapped write-back (checked above): RAM, no device
    // registers; it holds neither the image nor the heap (checked), so no
    // Rust object lives there and nothing in minicap writes it. It can still
    // change underneath: a device the crashed kernel left running may DMA
    // into it (without an IOMMU blocking it), or a CPU that ignored the
    // crash NMI may write it. The bytes are only read once, by the hash, so
    // such a change can only make the recorded SHA-256 differ from what the
    // dump device received; `minicap save` reports that, it cannot go
    // unnoticed.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    Some(f(bytes))
}

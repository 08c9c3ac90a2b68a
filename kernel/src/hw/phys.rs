//! Reading the crashed kernel's physical memory through the identity map.

use super::paging;
use minicap_physmem::{PhysMem, PhysMemError};

const PAGE: u64 = 4096;

/// Physical memory as seen through whichever page tables are active: a read
/// of a range that is not mapped fails instead of faulting.
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
        if !range_mapped(paddr, len) {
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

/// Run `f` on the bytes of physical memory [addr, addr+len), or return None
/// if any page of it is not mapped.
pub fn with_slice<R>(addr: u64, len: u64, f: impl FnOnce(&[u8]) -> R) -> Option<R> {
    if !range_mapped(addr, len) {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    // SAFETY: the range is mapped (checked above) and is the crashed kernel's
    // memory, which nothing in minicap writes and minicap's own allocations
    // never overlap (the heap excludes every PT_LOAD range). It can still
    // change underneath: a device the crashed kernel left running may DMA
    // into it (without an IOMMU blocking it), or a CPU that ignored the
    // crash NMI may write it. The bytes are only read once, by the hash, so
    // such a change can only make the recorded SHA-256 differ from what the
    // dump device received; `minicap save` reports that, it cannot go
    // unnoticed.
    let bytes = unsafe { core::slice::from_raw_parts(addr as *const u8, len) };
    Some(f(bytes))
}

//! The crashed kernel's VMCOREINFO text, and reading its kernel virtual addresses from old memory.
//!
//! Linux writes VMCOREINFO (the `VMCOREINFO` ELF note, see `crash_save_vmcoreinfo_init()` in
//! `kernel/vmcore_info.c`, `kernel/crash_core.c` before 6.9) as `KEY=VALUE\n` lines. The macros
//! of `include/linux/vmcore_info.h` fix the value formats, which [`VmcoreInfo`] follows:
//!
//! | line | value |
//! |---|---|
//! | `SYMBOL(name)=%lx` | runtime virtual address, hex without `0x` (KASLR already applied) |
//! | `SIZE(name)=%lu` | `sizeof`, decimal |
//! | `OFFSET(struct.field)=%lu` | `offsetof`, decimal |
//! | `LENGTH(name)=%lu` | number of array elements, decimal |
//! | `NUMBER(name)=%ld` | signed decimal (x86_64 `phys_base` is negative under some KASLR layouts) |
//! | `KERNELOFFSET=%lx` | `kaslr_offset()`: `_text - 0xffffffff81000000`, hex |
//! | `PAGESIZE=%ld`, `OSRELEASE=%s`, `CRASHTIME=%lld` | plain values |
//!
//! makedumpfile reads the same text with `read_vmcoreinfo_symbol()` & co.; the first line with a
//! key wins here as there.
//!
//! [`OldMemory`] translates the old kernel's virtual addresses to physical ones and reads them
//! through [`PhysMem`], the way makedumpfile's `vaddr_to_paddr_x86_64()` does without page
//! tables:
//!
//! * addresses of the kernel image (at or above `__START_KERNEL_map` = `0xffffffff80000000`:
//!   `SYMBOL()` values, static arrays such as `__log_buf`) map to
//!   `va - 0xffffffff80000000 + phys_base` (Linux `__phys_addr_symbol()`), with
//!   `NUMBER(phys_base)` taken as a wrapping signed value. `KERNELOFFSET` is not needed for this
//!   because `SYMBOL()` values already include it; it only relates `vmlinux` symbols;
//! * any other address (the direct map, where a ring enlarged at boot with `log_buf_len=` lives
//!   in memblock memory) is looked up in the PT_LOADs of the ELF core headers, which give each
//!   RAM range's direct-map `p_vaddr` next to its `p_paddr`.
//!
//! * with [`OldMemory::with_page_tables`], anything else (the `vmemmap` array of
//!   `struct page`) goes through the old kernel's own page tables ([`PageTables`]):
//!   `SYMBOL(init_top_pgt)` translated like any image address is the top table; 4 or 5
//!   levels by `NUMBER(pgtable_l5_enabled)`; 9 index bits per level from bit 48 (5-level) or
//!   39 down to 12; bit 0 present; bit 7 at the 1 GiB and 2 MiB levels ends the walk with a
//!   large page; entry bits 12..52 minus `NUMBER(sme_mask)` hold the next physical address.
//!   Every table is read from old memory like any other byte.
//!
//! Any way the physical address must then lie inside a PT_LOAD, and the bytes are read where
//! that PT_LOAD says they are now (`p_offset`, which differs from `p_paddr` for kexec-tools'
//! backup copy of low memory). Reads are split at 4 KiB page boundaries and each page is
//! translated on its own, because virtually contiguous memory need not be physically contiguous.
//!
//! Pure logic: no `unsafe`, no allocation, host tested.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod old_memory;
mod text;

pub use old_memory::{OldMemory, PageTables, VirtReadError, KERNEL_IMAGE_BASE};
pub use text::VmcoreInfo;

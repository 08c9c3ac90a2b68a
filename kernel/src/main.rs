//! minicap: a bare-metal crash-dump capture kernel for Linux x86_64.
//!
//! Loaded before a crash with `kexec -p minicap.elf --args-linux`, it runs
//! after the panic in place of a second Linux kernel: it takes the CPU over,
//! parses the ELF core headers the old kernel prepared, and writes an ELF
//! vmcore to a prepared dump device with polled drivers. See `capture` for
//! the state machine; `hw` holds every hardware access (and all `unsafe`).
#![no_std]
#![no_main]
#![deny(unsafe_code)]
// `Failure` carries its message inline (some failures happen before there is
// a heap); it is returned once per run, so its size does not matter.
#![allow(clippy::result_large_err)]

extern crate alloc;

mod capture;
mod console;
mod failure;
mod fault;
mod finish;
mod handoff;
mod hw;
mod iommu;
mod memory;
mod target;
mod writer;

/// Called by `_start` (boot/src/entry.S) once the stack, SSE, .bss and
/// relocations are in place.
// `#[no_mangle]` counts as unsafe code (two items could claim one symbol);
// this is the one symbol the entry assembly calls, defined nowhere else.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn minicap_main(boot_params: u64, load_base: u64) -> ! {
    minicap_boot::link_entry();
    minicap_freestanding::link_intrinsics();
    hw::set_exception_handler(fault::exception);
    capture::run(boot_params, load_base)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fault::panic(info)
}

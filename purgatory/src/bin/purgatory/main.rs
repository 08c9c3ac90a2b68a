//! minicap's purgatory: the first code Linux runs after a panic when minicap was loaded with
//! `minicap load` (kexec-tools' `purgatory()` plays this part for `kexec -p`).
//!
//! It reads the parameter block the loader patched (`minicap_purgatory::params`), hashes
//! every segment listed in its digest table with SHA-256 and compares
//! (`DigestTable::check`). On success it jumps to minicap's entry with `%rsi` =
//! `boot_params`; on any mismatch or unusable block it says why on COM1 and halts, so a
//! capture kernel damaged since it was loaded never runs and never writes.
//!
//! Its own segment is not in the table (as in kexec-tools, the purgatory does not check
//! itself: it patches its own GDT pointer and its stack is in it).
#![no_std]
#![no_main]
#![deny(unsafe_code)]

#[allow(unsafe_code)]
mod hw;

use core::fmt::{self, Write};

use minicap_purgatory::params::Params;

/// Called by `purgatory_start` (entry.S) once the stack, GDT, SSE and .bss are in place.
// `#[no_mangle]` counts as unsafe code (two items could claim one symbol); this is the one
// symbol the entry assembly calls.
#[allow(unsafe_code)]
#[no_mangle]
extern "C" fn purgatory_main() -> ! {
    minicap_freestanding::link_intrinsics();
    let block = hw::read_params();
    let params = match Params::decode(&block) {
        Ok(params) => params,
        Err(e) => refuse(format_args!("{e}")),
    };
    match params.table.check(hw::read_physical) {
        Ok(()) => {
            let _ = writeln!(
                Serial,
                "minicap purgatory: {} segments match their SHA-256, starting minicap\r",
                params.table.regions().len()
            );
            hw::start_minicap(params.minicap_entry, params.boot_params)
        }
        Err(e) => refuse(format_args!("{e}")),
    }
}

/// Says why on COM1, then halts for good.
fn refuse(why: fmt::Arguments<'_>) -> ! {
    let _ = write!(Serial, "\r\nminicap purgatory: {why}\r\n");
    hw::halt_forever()
}

/// COM1 as a `fmt::Write`.
struct Serial;

impl Write for Serial {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        hw::serial_write(s.as_bytes());
        Ok(())
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    refuse(format_args!("panic: {info}"))
}

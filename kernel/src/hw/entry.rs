//! The symbols the assembly calls into.

use super::cpu::ExceptionFrame;

/// Called by `_start` (boot/src/entry.S) once the stack, SSE, .bss and
/// relocations are in place.
#[no_mangle]
extern "C" fn minicap_main(boot_params: u64, load_base: u64) -> ! {
    minicap_boot::link_entry();
    crate::capture::run(boot_params, load_base)
}

/// Called by `isr_common` with a pointer to the saved registers.
#[no_mangle]
extern "C" fn minicap_exception(frame: *const ExceptionFrame) {
    // SAFETY: `isr_common` passes its own stack pointer, which points at a
    // complete `ExceptionFrame` for the duration of this call.
    let frame = unsafe { &*frame };
    crate::fault::exception(frame);
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    crate::fault::panic(info)
}

//! The one symbol the exception stubs call into. The hardware layer does
//! not know what the capture does with an exception: the top of the kernel
//! registers its handler at start-up (`set_exception_handler`), so every
//! call goes down the layers, never up.

use super::cpu::{self, ExceptionFrame};
use spin::Once;

static HANDLER: Once<fn(&ExceptionFrame)> = Once::new();

/// Register the function every CPU exception is handed to (once; later
/// calls keep the first handler).
pub fn set_exception_handler(handler: fn(&ExceptionFrame)) {
    HANDLER.call_once(|| handler);
}

/// Called by `isr_common` with a pointer to the saved registers.
#[no_mangle]
extern "C" fn minicap_exception(frame: *const ExceptionFrame) {
    // SAFETY: `isr_common` passes its own stack pointer, which points at a
    // complete `ExceptionFrame` for the duration of this call.
    let frame = unsafe { &*frame };
    match HANDLER.get() {
        Some(handler) => handler(frame),
        // An exception before anyone could report it: NMIs are harmless,
        // anything else cannot be survived or reported.
        None if frame.vector == 2 => {}
        None => cpu::triple_fault(),
    }
}

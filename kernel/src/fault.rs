//! What happens when something goes wrong inside minicap itself: a CPU
//! exception or a Rust panic. Both print everything known on the console and
//! then leave the machine the way the user asked (the dump header already
//! says "writing" with the bytes known to be on disk, so a partial dump is
//! still recoverable with `minicap save --partial`).

use crate::console::FixedString;
use crate::failure::{Failure, ResultLine};
use crate::hw::cpu::{self, ExceptionFrame};
use crate::hw::serial;
use crate::say;
use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use minicap_bootinfo::cmdline::AfterDump;

static NMI_COUNT: AtomicU32 = AtomicU32::new(0);
static FATAL_DEPTH: AtomicU32 = AtomicU32::new(0);
static AFTER: AtomicU8 = AtomicU8::new(0);

/// Remember what to do after the capture, for the fault paths too.
pub fn set_after(after: AfterDump) {
    AFTER.store(
        match after {
            AfterDump::Reboot => 0,
            AfterDump::Halt => 1,
            AfterDump::Poweroff => 2,
        },
        Ordering::Relaxed,
    );
}

/// The configured action.
pub fn after() -> AfterDump {
    match AFTER.load(Ordering::Relaxed) {
        1 => AfterDump::Halt,
        2 => AfterDump::Poweroff,
        _ => AfterDump::Reboot,
    }
}

/// NMIs seen so far (they are counted and otherwise ignored).
pub fn nmi_count() -> u32 {
    NMI_COUNT.load(Ordering::Relaxed)
}

const NAMES: [&str; 32] = [
    "divide error",
    "debug",
    "NMI",
    "breakpoint",
    "overflow",
    "bound range exceeded",
    "invalid opcode",
    "device not available",
    "double fault",
    "coprocessor segment overrun",
    "invalid TSS",
    "segment not present",
    "stack-segment fault",
    "general protection fault",
    "page fault",
    "reserved",
    "x87 floating-point error",
    "alignment check",
    "machine check",
    "SIMD floating-point error",
    "virtualization exception",
    "control protection",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "hypervisor injection",
    "VMM communication",
    "security exception",
    "reserved",
];

/// Called by the exception stubs with the saved state.
pub fn exception(frame: &ExceptionFrame) {
    if frame.vector == 2 {
        // NMIs are harmless here: other CPUs or a watchdog may still send
        // them. Count and return.
        NMI_COUNT.fetch_add(1, Ordering::Relaxed);
        return;
    }
    if FATAL_DEPTH.fetch_add(1, Ordering::SeqCst) > 0 {
        // A fault while reporting a fault: do nothing more that could fault.
        give_up();
    }
    serial::force_unlock();
    let name = usize::try_from(frame.vector)
        .ok()
        .and_then(|v| NAMES.get(v))
        .copied()
        .unwrap_or("unknown");
    say!(
        "CPU exception {} ({name}), error code {:#x}, RIP {:#018x}, CR2 {:#018x}",
        frame.vector,
        frame.error_code,
        frame.rip,
        cpu::cr2()
    );
    say!(
        "  RAX {:#018x} RBX {:#018x} RCX {:#018x} RDX {:#018x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx
    );
    say!(
        "  RSI {:#018x} RDI {:#018x} RBP {:#018x} RSP {:#018x}",
        frame.rsi,
        frame.rdi,
        frame.rbp,
        frame.rsp
    );
    say!(
        "  R8  {:#018x} R9  {:#018x} R10 {:#018x} R11 {:#018x}",
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11
    );
    say!(
        "  R12 {:#018x} R13 {:#018x} R14 {:#018x} R15 {:#018x}",
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    );
    say!(
        "  CS {:#x} SS {:#x} RFLAGS {:#x} CR3 {:#x} CR4 {:#x}",
        frame.cs,
        frame.ss,
        frame.rflags,
        cpu::cr3(),
        cpu::cr4()
    );
    // Only printed: the header on the device (if one was written) still
    // says "writing" with the bytes confirmed so far.
    say!(
        "{}",
        ResultLine(&Failure::CpuException {
            vector: frame.vector,
            name,
            rip: frame.rip,
        })
    );
    crate::finish::leave(after())
}

/// Leave without running any more code that could fault: an unattended
/// machine asked to reboot must not hang, so a triple fault resets it.
fn give_up() -> ! {
    match after() {
        AfterDump::Reboot => cpu::triple_fault(),
        AfterDump::Halt | AfterDump::Poweroff => cpu::halt_forever(),
    }
}

/// The Rust panic path.
pub fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    if FATAL_DEPTH.fetch_add(1, Ordering::SeqCst) > 0 {
        give_up();
    }
    serial::force_unlock();
    say!(
        "{}",
        ResultLine(&Failure::Internal(FixedString::display(info)))
    );
    crate::finish::leave(after())
}

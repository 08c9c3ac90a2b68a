//! Every hardware access of the purgatory, and all its `unsafe`: the parameter block the
//! loader patched, physical memory through the identity map, COM1, the halt, and the jump to
//! minicap.

use core::arch::asm;

use minicap_purgatory::params::{unpatched_block, PARAMS_LEN};

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

/// The parameter block, first in the image (`linker/purgatory.ld`); the loader overwrites it.
// SAFETY: `.params` is a section of our own linker script and nothing else is placed in it.
#[link_section = ".params"]
#[used]
static PARAMS: [u8; PARAMS_LEN] = unpatched_block();

/// The parameter block as the loader left it in memory.
pub fn read_params() -> [u8; PARAMS_LEN] {
    let mut out = [0u8; PARAMS_LEN];
    let base = core::ptr::addr_of!(PARAMS).cast::<u8>();
    for (i, byte) in out.iter_mut().enumerate() {
        // SAFETY: i < PARAMS_LEN, inside the static. Volatile: the compiler knows the
        // initial value and would fold the reads, but the loader changed the bytes.
        *byte = unsafe { base.add(i).read_volatile() };
    }
    out
}

/// Copies the bytes at physical address `addr` into `buf`; false for an address the
/// identity map cannot hold (0, or a range that wraps).
pub fn read_physical(addr: u64, buf: &mut [u8]) -> bool {
    let Some(end) = addr.checked_add(buf.len() as u64) else {
        return false;
    };
    // The kexec page tables map RAM (where the crash region is) 1:1; nothing above the
    // 47-bit canonical limit is RAM.
    if addr == 0 || end > 1 << 47 {
        return false;
    }
    // SAFETY: the range is inside the identity map of RAM (the loader placed every region in
    // the crash region), does not wrap, and does not overlap `buf` (on our stack).
    unsafe { core::ptr::copy_nonoverlapping(addr as *const u8, buf.as_mut_ptr(), buf.len()) };
    true
}

const COM1: u16 = 0x3f8;
const LINE_STATUS: u16 = COM1 + 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;
/// Line-status reads per byte before writing anyway: about 1 ms at the slowest port speed,
/// so an absent or stuck UART costs time, never a hang.
const TRANSMIT_POLLS: u32 = 100_000;

/// Writes `bytes` to COM1, which the crashed kernel set up as its console (or which stays as
/// the firmware left it: the text is lost then, the result is the same).
pub fn serial_write(bytes: &[u8]) {
    for &byte in bytes {
        for _ in 0..TRANSMIT_POLLS {
            if inb(LINE_STATUS) & TRANSMIT_EMPTY != 0 {
                break;
            }
        }
        outb(COM1, byte);
    }
}

fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: reading the 16550 line status register has no side effect.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack)) };
    value
}

fn outb(port: u16, value: u8) {
    // SAFETY: writing the 16550 transmit register only sends the byte.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack)) };
}

/// Stops this CPU for good: interrupts off, then `hlt` (an NMI may wake it: halt again).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli and hlt touch no memory.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Jumps to minicap's entry with the Linux 64-bit boot protocol's register: `%rsi` =
/// `boot_params`. minicap sets up its own stack, GDT and everything else (boot/src/entry.S).
pub fn start_minicap(entry: u64, boot_params: u64) -> ! {
    // SAFETY: the entry and boot_params were written by the loader and the segments they
    // point into passed their SHA-256 check; interrupts are off.
    unsafe {
        asm!(
            "xor ebp, ebp",
            "jmp {entry}",
            entry = in(reg) entry,
            in("rsi") boot_params,
            options(noreturn)
        )
    }
}

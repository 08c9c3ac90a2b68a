//! The legacy i8259 pair: remapped away from the exception vectors and fully
//! masked, so a stray legacy interrupt can never look like a CPU exception.

use super::port::{inb, outb};

const PIC1_COMMAND: u16 = 0x20;
const PIC1_DATA: u16 = 0x21;
const PIC2_COMMAND: u16 = 0xa0;
const PIC2_DATA: u16 = 0xa1;
/// Where the master's IRQs land after the remap (vectors 0x20..0x2f).
pub const PIC1_VECTOR: u8 = 0x20;
const PIC2_VECTOR: u8 = 0x28;

/// A harmless write to port 0x80 gives slow PICs time between ICWs.
fn io_wait() {
    outb(0x80, 0);
}

/// Re-initialise both controllers and mask every line.
pub fn remap_and_mask() {
    outb(PIC1_COMMAND, 0x11); // ICW1: init, ICW4 follows
    io_wait();
    outb(PIC2_COMMAND, 0x11);
    io_wait();
    outb(PIC1_DATA, PIC1_VECTOR); // ICW2: vector base
    io_wait();
    outb(PIC2_DATA, PIC2_VECTOR);
    io_wait();
    outb(PIC1_DATA, 0x04); // ICW3: slave on IRQ2
    io_wait();
    outb(PIC2_DATA, 0x02);
    io_wait();
    outb(PIC1_DATA, 0x01); // ICW4: 8086 mode
    io_wait();
    outb(PIC2_DATA, 0x01);
    io_wait();
    outb(PIC1_DATA, 0xff);
    outb(PIC2_DATA, 0xff);
}

/// The current masks (master, slave), for the report.
pub fn masks() -> (u8, u8) {
    (inb(PIC1_DATA), inb(PIC2_DATA))
}

//! The first instructions of minicap: the 64-bit entry point (`_start`).
//!
//! `entry.S` sets up a stack inside the image, enables SSE, zeroes `.bss`,
//! applies the image's own `R_X86_64_RELATIVE` relocations (kexec-tools places
//! an ET_DYN image anywhere but relocates nothing) and calls
//! `minicap_main(boot_params, load_base)`, which the kernel crate defines.
#![no_std]

core::arch::global_asm!(include_str!("entry.S"), options(att_syntax));

/// Link anchor: referencing it from the kernel keeps this crate (and thus
/// `_start`) in the link.
pub fn link_entry() {}

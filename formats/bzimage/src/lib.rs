//! `minicap.bzImage`: minicap in the Linux x86 boot-protocol format, which is also a PE/COFF
//! file, so that `kexec_file_load(2)` accepts it and `sbsign` can sign it.
//!
//! On Secure Boot machines the kernel runs in lockdown and refuses `kexec_load(2)`; the only way
//! to load a crash kernel is `kexec_file_load(2)`, whose x86_64 loader (Linux
//! `arch/x86/kernel/kexec-bzimage64.c`) takes only a 64-bit bzImage, and, when signatures are
//! enforced, only one with an Authenticode signature (`crypto/asymmetric_keys/verify_pefile.c`).
//! kexec-tools' `kexec -p` (`kexec/arch/x86_64/kexec-bzImage64.c`) loads the same file through
//! `kexec_load(2)`.
//!
//! # Layout
//!
//! ```text
//! file offset
//! 0x000  "MZ" DOS header; e_lfanew (0x3c) = 0x40
//! 0x040  "PE\0\0", COFF header (x86_64, 2 sections), PE32+ optional header
//!        (EFI application, 6 data directories, all empty: sbsign fills the certificate table)
//! 0x0f8  section table: .setup (file 0x200, 0x200 bytes, RVA 0x1000)
//!                       .text  (file 0x400, the payload, RVA 0x2000, virtual size = memsz)
//! 0x1f1  Linux setup header (boot protocol 2.15), inside the PE headers so the signature covers it:
//!        setup_sects 1, boot_flag 0xAA55, a short jump at 0x200 whose displacement (0x6a) makes
//!        the header 0x7b bytes long (to 0x26c, Linux's `struct setup_header`), "HdrS", loadflags LOADED_HIGH,
//!        kernel_alignment 4 KiB, relocatable_kernel 1, min_alignment 12,
//!        xloadflags XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_5LEVEL,
//!        cmdline_size 2048, pref_address 1 MiB, init_size (below), handover_offset 0 (no EFI
//!        handover), kernel_info_offset 0x10, no payload_offset/length (nothing is compressed)
//! 0x26c  cli; hlt; jmp back: where the jump at 0x200 goes (a real-mode boot). No real-mode entry.
//! 0x280  the PE entry point: return EFI_UNSUPPORTED. minicap is not an EFI application; firmware
//!        that starts the file gets an error back instead of running the payload without the
//!        boot_params and crash state it needs.
//! 0x2a0  version string (`kernel_version`)
//! 0x400  the payload: minicap's one PT_LOAD, linked at 0, padded to 0x200 bytes:
//!          +0x000  32-bit entry (code32_start): halt forever
//!          +0x010  kernel_info: "LToP", 16, 16, setup_type_max 1
//!          +0x200  the 64-bit entry (`_start`): %rsi = boot_params, as for minicap.elf
//! end    (after signing) the certificate table, 8-byte aligned
//! ```
//!
//! `init_size` is the payload's `memsz` (.bss included: boot stack and page tables) rounded to a
//! page, raised if needed so that the payload's file bytes plus 64 KiB for a signature fit: both
//! loaders copy everything after the setup area, signature included, into a segment of
//! `PAGE_ALIGN(init_size)` bytes. The payload zeroes its .bss before using it.
//!
//! [`build`] writes this layout; [`BzImage::parse`] checks a file the way both loaders' probe
//! and load functions do and returns what they take from it; [`PeImage::parse`] checks the PE
//! view with the rules of the kernel's signature verifier.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod builder;
mod bytes;
pub mod layout;
mod parse;
pub mod pe;

pub use builder::{build, BuildError, ImageSource};
pub use parse::{BzImage, ParseError, MIN_IMAGE_LEN};
pub use pe::{PeError, PeImage};

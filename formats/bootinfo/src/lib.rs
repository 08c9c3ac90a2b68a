//! What the capture kernel learns from the loader that started it.
//!
//! kexec-tools (`kexec -p ... --args-linux`) and the kernel's own kexec_file path both enter the
//! capture kernel with `%rsi` pointing at a Linux `boot_params` page (the "zero page"). This crate
//! parses that page ([`BootParams`]), the `setup_data` chain hanging off it ([`setup_data`]), and
//! the kernel command line ([`cmdline`]), and offers [`RangeSet`] to compute which memory the
//! capture kernel may use.
//!
//! It runs before the capture kernel has a heap, so it uses neither `alloc` nor `unsafe`: memory
//! outside the zero page is read through caller-supplied closures, and every table has a fixed
//! capacity.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cmdline;
mod params;
mod rangeset;
pub mod setup_data;

pub use params::{
    BootParams, BootParamsError, E820Entry, E820Kind, E820_ENTRY_SIZE, E820_MAX_ZEROPAGE_ENTRIES,
    ZERO_PAGE_SIZE,
};
pub use rangeset::{RangeSet, RangeSetError};
pub use setup_data::{
    walk_e820_ext, walk_setup_data, SetupDataCursor, SetupDataError, SetupDataNode,
};

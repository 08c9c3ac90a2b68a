//! The capture kernel's logic that needs no hardware, so that it runs under
//! `cargo test` on the host:
//!
//! * [`Failure`]: why a capture stopped, with its data, its stable
//!   [`FailureCode`](minicap_dumpheader::FailureCode) and the console text;
//! * [`memory`]: which memory minicap may use, which memory the dump may
//!   read, what its own page tables map write-back;
//! * [`writer`]: the order of every write and flush on the dump device and
//!   what the on-device header claims after each of them, the integrity
//!   check recorded with the dump;
//! * [`profile`]: where the time of a capture goes, phase by phase;
//! * [`triage`]: the text written before the memory image: the crashed
//!   kernel's release, every CPU's registers and its log.
//!
//! The kernel supplies the hardware through small traits and thin adapters.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
// `Failure` carries its data inline (some failures happen before there is a
// heap); it is returned once per run, so its size does not matter.
#![allow(clippy::result_large_err)]

extern crate alloc;

mod failure;
pub mod kdump_plan;
pub mod memory;
pub mod overwrite;
pub mod profile;
pub mod text;
pub mod time_limit;
pub mod triage;
pub mod writer;

pub use failure::{Detail, DeviceEffect, DeviceName, Failure, HeldDump, ResultLine, WriteStep};
pub use time_limit::TimeLimit;

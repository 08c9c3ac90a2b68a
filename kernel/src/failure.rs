//! Why a capture stopped: the typed [`Failure`] of `minicap-capture` (host
//! tested), re-exported for the kernel's phases.

pub use minicap_capture::{Detail, DeviceName, Failure, ResultLine};

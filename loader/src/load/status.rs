//! `minicap status`: whether a crash kernel is loaded, the crash region, and the last capture
//! recorded on the prepared dump device.

use std::path::Path;

use anyhow::Result;
use minicap_dumpheader::{DumpState, FailureCode};

use super::iomem::Iomem;
use super::sysfs::{CrashState, SystemFiles};
use super::system::read_state_and_iomem;
use crate::device::Device;
use crate::escape;
use crate::fmt_util::{crash_time, size};
use crate::info::describe_state;

fn print_kexec(state: &CrashState, iomem: &Iomem) {
    println!(
        "crash kernel: {}",
        if state.crash_loaded {
            // The kernel does not record which tool loaded it; minicap load cannot yet.
            "loaded (by another tool, e.g. kexec -p: minicap load does not load yet)"
        } else {
            "not loaded"
        }
    );
    match iomem.load_region() {
        Some(r) => println!(
            "crash region: {:#x}-{:#x}, {}",
            r.start,
            r.end - 1,
            size(r.end - r.start)
        ),
        None => println!("crash region: none (boot with crashkernel=; see minicap recommend)"),
    }
    if state.load_disabled == Some(true) {
        println!("kexec_load:   disabled until reboot (kexec_load_disabled is 1)");
    }
}

/// `minicap status [--device DEVICE]`.
pub fn status(files: &SystemFiles, device: Option<&Path>) -> Result<()> {
    // The device's record is worth showing even on a kernel that cannot load a crash kernel.
    match read_state_and_iomem(files) {
        Ok((state, iomem)) => print_kexec(&state, &iomem),
        Err(e) => println!("crash kernel: cannot tell: {e}"),
    }
    let Some(path) = device else {
        return Ok(());
    };
    let header = Device::open(path, false)?.header(path)?;
    println!("last capture: {}", describe_state(header.state));
    if header.state != DumpState::Empty {
        println!("  crash time: {}", crash_time(header.crash_time));
        println!(
            "  written:    {} of {}",
            size(header.written),
            size(header.dump_length)
        );
        if header.failure_code != FailureCode::None {
            println!("  failure:    {}", header.failure_code);
        }
        let message = escape::field(&header.message);
        if !message.is_empty() {
            println!("  message:    {message}");
        }
    }
    Ok(())
}

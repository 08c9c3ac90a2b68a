//! `minicap info`: the header of a dump device, as text or as JSON.

use std::path::Path;

use anyhow::{Context, Result};
use minicap_dumpheader::{DeviceIdHex, DumpHeader, DumpState, FailureCode, LAYOUT_VERSION};
use serde::Serialize;

use crate::device::Device;
use crate::escape;
use crate::fmt_util::{crash_time, size, Hex};

/// A dump state explained.
pub fn describe_state(state: DumpState) -> &'static str {
    match state {
        DumpState::Empty => "empty (prepared, no dump)",
        DumpState::Writing => "writing (a capture started but did not finish)",
        DumpState::Complete => "complete",
        DumpState::Failed => "failed (the capture gave up)",
    }
}

/// `minicap info [--json] DEVICE`.
pub fn info(path: &Path, json: bool) -> Result<()> {
    let dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    if json {
        let text = serde_json::to_string(&InfoJson::new(path, &h))
            .context("cannot encode the header as JSON")?;
        println!("{text}");
    } else {
        print_text(path, dev.size, &h);
    }
    if h.capacity != dev.size {
        eprintln!(
            "minicap: warning: the header was written for a device of {} bytes, this one has {}",
            h.capacity, dev.size
        );
    }
    Ok(())
}

fn print_text(path: &Path, device_size: u64, h: &DumpHeader) {
    let id = DeviceIdHex(&h.device_id);
    let or_dash = |field: &[u8]| {
        let text = escape::field(field);
        if text.is_empty() {
            "-".to_owned()
        } else {
            text
        }
    };
    println!("device:      {}, {}", path.display(), size(device_size));
    println!("layout:      minicap v{LAYOUT_VERSION}");
    println!("device id:   {id}");
    println!("cmdline:     minicap.device={id}");
    println!("state:       {}", describe_state(h.state));
    println!("format:      {}", h.format);
    println!("dump offset: {}", h.dump_offset);
    println!("dump length: {}", size(h.dump_length));
    println!("written:     {}", size(h.written));
    println!("capacity:    {}", size(h.capacity));
    println!("crash time:  {}", crash_time(h.crash_time));
    if h.state == DumpState::Complete {
        println!("sha256:      {}", Hex(&h.sha256));
    } else {
        println!("sha256:      -");
    }
    println!("writer:      {}", or_dash(&h.writer));
    println!("osrelease:   {}", or_dash(&h.osrelease));
    println!("message:     {}", or_dash(&h.message));
    if h.failure_code != FailureCode::None {
        println!("failure:     {}", h.failure_code);
    }
    if h.skipped_ranges != 0 || h.skipped_bytes != 0 {
        println!(
            "skipped:     {} PT_LOAD range(s), {}: not RAM in the memory map, zeros in the dump",
            h.skipped_ranges,
            size(h.skipped_bytes)
        );
    }
    if h.log_length > 0 {
        println!(
            "console log: {} bytes (minicap log {})",
            h.log_length,
            path.display()
        );
    } else {
        println!("console log: -");
    }
}

/// The object `minicap info --json` prints; field names and order are an interface (README).
#[derive(Debug, Serialize)]
struct InfoJson {
    device: String,
    device_id: String,
    state: &'static str,
    format: &'static str,
    dump_offset: u64,
    dump_length: u64,
    written: u64,
    capacity: u64,
    crash_time: i64,
    sha256: String,
    writer: String,
    osrelease: String,
    message: String,
    failure_code: &'static str,
    skipped_ranges: u32,
    skipped_bytes: u64,
    log_length: u32,
}

impl InfoJson {
    fn new(path: &Path, h: &DumpHeader) -> Self {
        Self {
            device: path.to_string_lossy().into_owned(),
            device_id: DeviceIdHex(&h.device_id).to_string(),
            state: h.state.as_str(),
            format: h.format.as_str(),
            dump_offset: h.dump_offset,
            dump_length: h.dump_length,
            written: h.written,
            capacity: h.capacity,
            crash_time: h.crash_time,
            sha256: Hex(&h.sha256).to_string(),
            writer: stored_text(&h.writer),
            osrelease: stored_text(&h.osrelease),
            message: stored_text(&h.message),
            failure_code: h.failure_code.as_str(),
            skipped_ranges: h.skipped_ranges,
            skipped_bytes: h.skipped_bytes,
            log_length: h.log_length,
        }
    }
}

/// A NUL-padded field as stored, up to its first NUL (JSON escaping makes control characters
/// harmless; bytes that are not UTF-8 become U+FFFD).
fn stored_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

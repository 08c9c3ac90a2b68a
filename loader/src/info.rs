//! `minicap info`: the header of a dump device, as text or as JSON.

use std::path::Path;

use anyhow::{Context, Result};
use minicap_dumpheader::{
    chunk_count, DeviceIdHex, DumpFormat, DumpHeader, DumpState, FailureCode, UtcTime,
    Verification, LAYOUT_VERSION,
};
use serde::Serialize;

use crate::device::Device;
use crate::escape;
use crate::fmt_util::{crash_time, size, Hex};
use crate::verify::{chunk_size_text, read_table, Table};

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
        print_text(path, &dev, &h);
    }
    if h.capacity != dev.size {
        eprintln!(
            "minicap: warning: the header was written for a device of {} bytes, this one has {}",
            h.capacity, dev.size
        );
    }
    Ok(())
}

fn print_text(path: &Path, dev: &Device, h: &DumpHeader) {
    let device_size = dev.size;
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
    if h.format == DumpFormat::KdumpCompressed {
        println!("compression: {}", h.compression);
    }
    if h.format == DumpFormat::KdumpCompressed || h.dump_level_requested != 0 {
        print_level(h);
    }
    println!("dump offset: {}", h.dump_offset);
    println!("dump length: {}", size(h.dump_length));
    println!("written:     {}", size(h.written));
    println!("capacity:    {}", size(h.capacity));
    println!("crash time:  {}", crash_time(h.crash_time));
    if h.state != DumpState::Empty {
        println!("saved:       {}", describe_saved(h));
    }
    print_verification(dev, h);
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
    if h.triage_length > 0 {
        println!(
            "triage:      {} bytes (log of the crashed kernel, registers; minicap dmesg {})",
            h.triage_length,
            path.display()
        );
    } else {
        println!("triage:      none");
    }
}

/// The kdump-compressed format's settings and statistics.
/// The dump level applied (and the one asked for, with the reason, when lower) and the
/// pages written: a kdump-compressed dump, or an ELF vmcore filtered by a dump level.
fn print_level(h: &DumpHeader) {
    if h.dump_level == h.dump_level_requested {
        println!("dump level:  {}", h.dump_level);
    } else {
        println!(
            "dump level:  {} ({} requested: {})",
            h.dump_level,
            h.dump_level_requested,
            escape::field(&h.level_note)
        );
    }
    println!(
        "pages:       {} of {} RAM pages dumped",
        h.pages_dumped, h.pages_ram
    );
}

/// The `verify:` line (and `sha256:` for a whole-dump SHA-256). For chunk checksums it also
/// checks the table against the header, which reads at most 896 KiB.
fn print_verification(dev: &Device, h: &DumpHeader) {
    if h.state == DumpState::Empty {
        println!("verify:      - (no dump)");
        return;
    }
    match h.verify {
        Verification::Sha256 => {
            println!("verify:      sha256 of the whole dump");
            if h.state == DumpState::Complete {
                println!("sha256:      {}", Hex(&h.sha256));
            } else {
                println!("sha256:      -");
            }
        }
        Verification::None => println!("verify:      none (captured with minicap.verify=none)"),
        Verification::Xxh64Chunks => {
            println!(
                "verify:      xxh64 per {} chunk, {} chunks",
                chunk_size_text(h.chunk_size),
                chunk_count(h.dump_length, h.chunk_size)
            );
            let table = match read_table(dev, h) {
                Ok(Table::Intact(entries)) => {
                    format!("{} entries for the bytes written, intact", entries.len())
                }
                Ok(Table::Damaged {
                    entries,
                    stored,
                    computed,
                }) => format!(
                    "DAMAGED ({entries} entries: header records xxh64 {stored:#018x}, table \
                     has {computed:#018x})"
                ),
                Err(e) => format!("unreadable ({e:#})"),
            };
            println!("chunk table: {table}");
        }
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
    verify: &'static str,
    chunk_size: u64,
    triage_length: u32,
    dump_level_requested: u8,
    dump_level: u8,
    level_note: String,
    compression: &'static str,
    pages_ram: u64,
    pages_dumped: u64,
    saved_time: i64,
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
            verify: h.verify.as_str(),
            chunk_size: h.chunk_size,
            triage_length: h.triage_length,
            dump_level_requested: h.dump_level_requested,
            dump_level: h.dump_level,
            level_note: stored_text(&h.level_note),
            compression: h.compression.as_str(),
            pages_ram: h.pages_ram,
            pages_dumped: h.pages_dumped,
            saved_time: h.saved_time,
        }
    }
}

/// Whether `minicap save` copied the dump off, and what that means for the next capture.
pub fn describe_saved(h: &DumpHeader) -> String {
    if h.is_saved() {
        format!(
            "yes, by minicap save at {}: the next crash may be captured over it",
            UtcTime(h.saved_time)
        )
    } else if h.holds_unsaved_dump() {
        "no: the capture kernel keeps this dump and writes nothing to the device until \
         `minicap save` copies it off (or minicap.overwrite=any)"
            .to_owned()
    } else {
        "no dump data to save: the next crash is captured over it".to_owned()
    }
}

/// A NUL-padded field as stored, up to its first NUL (JSON escaping makes control characters
/// harmless; bytes that are not UTF-8 become U+FFFD).
fn stored_text(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

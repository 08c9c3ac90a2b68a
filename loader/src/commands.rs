//! The subcommands.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use minicap_dumpheader::{
    DeviceIdHex, DumpHeader, DumpState, HeaderError, DUMP_OFFSET, HEADER_LEN, MIN_CAPACITY,
};
use sha2::{Digest, Sha256};

use crate::device::Device;
use crate::fmt_util::{crash_time, hex, size};
use crate::Failure;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `minicap format DEVICE [--id HEX32] [--force]`.
pub fn format(path: &Path, id: Option<[u8; 16]>, force: bool) -> Result<(), Failure> {
    let shown = path.display();
    if is_partition(path) {
        return Err(Failure::fail(format!(
            "{shown} is a partition: the capture kernel looks for its header at the start of \
             whole disks only, so it would never find this one. Use a whole disk for dumps."
        )));
    }
    let mut dev = Device::open(path, true)?;
    if dev.size < MIN_CAPACITY {
        return Err(Failure::fail(format!(
            "{shown} is too small: {}, a dump device needs at least {}",
            size(dev.size),
            size(MIN_CAPACITY)
        )));
    }
    let sector = dev
        .read_sector0()
        .map_err(|e| Failure::fail(format!("cannot read {shown}: {e}")))?;
    if let Some(what) = sector.as_ref().and_then(unsaved_dump) {
        if !force {
            return Err(Failure::fail(format!(
                "{shown} holds {what}, which may not have been saved.\n\
                 Save it first with `minicap save {shown} FILE`, or pass --force to overwrite it."
            )));
        }
        eprintln!("minicap: warning: --force: overwriting {what}");
    }
    let id = match id {
        Some(id) => id,
        None => random_id()?,
    };
    let header = DumpHeader::new_empty(id, dev.size, &format!("minicap-format {VERSION}"));
    let area_len = usize::try_from(DUMP_OFFSET).map_err(|e| Failure::fail(e.to_string()))?;
    let mut area = vec![0u8; area_len];
    area[..HEADER_LEN].copy_from_slice(&header.encode());
    let write_err = |e: std::io::Error| Failure::fail(format!("cannot write {shown}: {e}"));
    dev.file.seek(SeekFrom::Start(0)).map_err(write_err)?;
    dev.file.write_all(&area).map_err(write_err)?;
    // The header must be on the medium before anyone relies on the device being prepared.
    dev.file.sync_all().map_err(write_err)?;

    let hex_id = DeviceIdHex(&id);
    println!("formatted {shown} as a minicap dump device");
    println!("capacity:  {}", size(dev.size));
    println!("max dump:  {}", size(dev.size - DUMP_OFFSET));
    println!("device id: {hex_id}");
    println!("add this to the capture kernel command line:");
    println!("  minicap.device={hex_id}");
    Ok(())
}

/// Describes the dump in `sector` that formatting would destroy, or `None` if nothing of value
/// is there. A damaged or unknown minicap header counts as valuable: it may be a header torn
/// while a capture was updating it.
fn unsaved_dump(sector: &[u8; HEADER_LEN]) -> Option<String> {
    match DumpHeader::decode(sector) {
        Err(HeaderError::NotMinicap) => None,
        Err(e) => Some(format!("a damaged or unknown minicap header ({e})")),
        Ok(h) => match h.state {
            DumpState::Empty => None,
            DumpState::Failed if h.written == 0 => None,
            DumpState::Complete => Some(format!(
                "a complete dump ({}, osrelease {:?}, crashed {})",
                size(h.dump_length),
                h.osrelease_str(),
                crash_time(h.crash_time)
            )),
            DumpState::Writing => Some(format!(
                "an unfinished dump ({} of {} written)",
                h.written, h.dump_length
            )),
            DumpState::Failed => Some(format!(
                "a failed dump with {} bytes written ({:?})",
                h.written,
                h.message_str()
            )),
        },
    }
}

fn random_id() -> Result<[u8; 16], Failure> {
    let mut id = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .map_err(|e| Failure::fail(format!("cannot read /dev/urandom: {e}")))?;
    if id == [0; 16] {
        // Reserved as "no id"; 2^-128 odds mean the random source is broken.
        return Err(Failure::fail("/dev/urandom returned zeros"));
    }
    Ok(id)
}

/// `minicap save DEVICE OUT [--partial]`.
pub fn save(path: &Path, out_path: &Path, partial: bool) -> Result<(), Failure> {
    let shown = path.display();
    let out_shown = out_path.display();
    let mut dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    let len = match h.state {
        DumpState::Empty => {
            return Err(Failure::fail(format!("{shown}: no dump on this device")));
        }
        DumpState::Complete => h.dump_length,
        DumpState::Writing | DumpState::Failed => {
            println!("state:     {}", describe_state(h.state));
            println!("written:   {} of {} bytes", h.written, h.dump_length);
            if !h.message_str().is_empty() {
                println!("message:   {}", h.message_str());
            }
            if h.written == 0 {
                return Err(Failure::fail(format!(
                    "{shown}: the capture stopped before writing any dump data"
                )));
            }
            if !partial {
                return Err(Failure::fail(format!(
                    "{shown}: the dump is incomplete ({}); pass --partial to copy the {} bytes \
                     that were written",
                    h.state, h.written
                )));
            }
            h.written
        }
    };
    let end = h.dump_offset.saturating_add(len);
    if end > dev.size {
        return Err(Failure::fail(format!(
            "{shown} is {} bytes long but the dump ends at byte {end}; truncated image?",
            dev.size
        )));
    }
    refuse_same_file(&dev.file, out_path)?;
    let mut out = File::create(out_path)
        .map_err(|e| Failure::fail(format!("cannot create {out_shown}: {e}")))?;
    let mut hasher = Sha256::new();
    dev.copy_range(h.dump_offset, len, &mut out, |d| hasher.update(d))
        .map_err(|e| Failure::fail(format!("copying {shown} to {out_shown} failed: {e}")))?;
    out.sync_all()
        .map_err(|e| Failure::fail(format!("cannot write {out_shown}: {e}")))?;

    println!("saved {} to {out_shown}", size(len));
    println!("osrelease:  {}", h.osrelease_str());
    println!("crash time: {}", crash_time(h.crash_time));
    println!("format:     {}", h.format);
    if h.state != DumpState::Complete {
        eprintln!(
            "minicap: warning: partial dump: {} of {} bytes; the vmcore is truncated and cannot \
             be checksummed",
            h.written, h.dump_length
        );
        return Ok(());
    }
    let computed = hasher.finalize();
    if computed.as_slice() != h.sha256 {
        return Err(Failure::fail(format!(
            "checksum MISMATCH: the header records sha256 {} but the data has {}.\n\
             {out_shown} was kept. Either the device changed the data, or the crashed machine's \
             memory changed while it was captured (a device still writing into it), so the \
             device got other bytes than the ones hashed: inspect it before trusting it.",
            hex(&h.sha256),
            hex(&computed)
        )));
    }
    println!("checksum OK (sha256 {})", hex(&computed));
    Ok(())
}

/// Creating OUT truncates it: if OUT is the device itself (an image file), that would destroy
/// the dump being saved.
fn refuse_same_file(dev: &File, out_path: &Path) -> Result<(), Failure> {
    let (Ok(a), Ok(b)) = (dev.metadata(), std::fs::metadata(out_path)) else {
        return Ok(());
    };
    if a.dev() == b.dev() && a.ino() == b.ino() {
        return Err(Failure::fail(format!(
            "{} is the dump device itself",
            out_path.display()
        )));
    }
    Ok(())
}

fn describe_state(state: DumpState) -> &'static str {
    match state {
        DumpState::Empty => "empty (prepared, no dump)",
        DumpState::Writing => "writing (a capture started but did not finish)",
        DumpState::Complete => "complete",
        DumpState::Failed => "failed (the capture gave up)",
    }
}

/// `minicap info DEVICE`.
pub fn info(path: &Path) -> Result<(), Failure> {
    let mut dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    let id = DeviceIdHex(&h.device_id);
    let or_dash = |s: &str| {
        if s.is_empty() {
            "-".to_owned()
        } else {
            s.to_owned()
        }
    };
    println!("device:      {}, {}", path.display(), size(dev.size));
    println!(
        "layout:      minicap v{}",
        minicap_dumpheader::LAYOUT_VERSION
    );
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
        println!("sha256:      {}", hex(&h.sha256));
    } else {
        println!("sha256:      -");
    }
    println!("writer:      {}", or_dash(h.writer_str()));
    println!("osrelease:   {}", or_dash(h.osrelease_str()));
    println!("message:     {}", or_dash(h.message_str()));
    if h.log_length > 0 {
        println!(
            "console log: {} bytes (minicap log {})",
            h.log_length,
            path.display()
        );
    } else {
        println!("console log: -");
    }
    if h.capacity != dev.size {
        eprintln!(
            "minicap: warning: the header was written for a device of {} bytes, this one has {}",
            h.capacity, dev.size
        );
    }
    Ok(())
}

/// `minicap log DEVICE`.
pub fn log(path: &Path) -> Result<(), Failure> {
    let mut dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    if h.log_length == 0 {
        return Err(Failure::fail(format!(
            "{}: no console log stored (state: {})",
            path.display(),
            describe_state(h.state)
        )));
    }
    let mut text = Vec::new();
    dev.copy_range(
        minicap_dumpheader::LOG_OFFSET,
        u64::from(h.log_length),
        &mut text,
        |_| {},
    )
    .map_err(|e| Failure::fail(format!("cannot read the log on {}: {e}", path.display())))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&text)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::fail(format!("cannot write the log: {e}")))
}

/// Whether `path` is a block device that is a partition
/// (`/sys/class/block/NAME/partition` exists).
fn is_partition(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let is_block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
    let Ok(real) = std::fs::canonicalize(path) else {
        return false;
    };
    let Some(name) = real.file_name() else {
        return false;
    };
    is_block
        && Path::new("/sys/class/block")
            .join(name)
            .join("partition")
            .exists()
}

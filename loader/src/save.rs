//! `minicap save`: copying a dump off its device.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use minicap_dumpheader::{DumpState, DUMP_OFFSET, LAYOUT_VERSION};
use sha2::{Digest, Sha256};

use crate::device::Device;
use crate::escape;
use crate::fmt_util::{crash_time, size, Hex};
use crate::info::describe_state;

/// `minicap save DEVICE OUT [--partial]`.
pub fn save(path: &Path, out_path: &Path, partial: bool) -> Result<()> {
    let shown = path.display();
    let out_shown = out_path.display();
    let mut dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    // Layout 1 fixes the dump at DUMP_OFFSET. Another value passes the header's own checks but
    // means a writer that does not follow this layout: copying from there would save bytes
    // that are not the dump the checksum or the capture describe.
    ensure!(
        h.dump_offset == DUMP_OFFSET,
        "{shown}: the header places the dump at byte {}, but layout version {LAYOUT_VERSION} \
         always has it at byte {DUMP_OFFSET} (1 MiB): the header was not written by minicap \
         or is damaged; refusing to guess where the dump is",
        h.dump_offset
    );
    let len = match h.state {
        DumpState::Empty => bail!("{shown}: no dump on this device"),
        DumpState::Complete => h.dump_length,
        DumpState::Writing | DumpState::Failed => {
            println!("state:     {}", describe_state(h.state));
            println!("written:   {} of {} bytes", h.written, h.dump_length);
            let message = escape::field(&h.message);
            if !message.is_empty() {
                println!("message:   {message}");
            }
            ensure!(
                h.written != 0,
                "{shown}: the capture stopped before writing any dump data"
            );
            ensure!(
                partial,
                "{shown}: the dump is incomplete ({}); pass --partial to copy the {} bytes \
                 that were written",
                h.state,
                h.written
            );
            h.written
        }
    };
    let end = h.dump_offset.saturating_add(len);
    ensure!(
        end <= dev.size,
        "{shown} is {} bytes long but the dump ends at byte {end}; truncated image?",
        dev.size
    );
    refuse_same_file(&dev.file, out_path)?;
    let mut out = File::create(out_path).with_context(|| format!("cannot create {out_shown}"))?;
    let mut hasher = Sha256::new();
    dev.copy_range(h.dump_offset, len, &mut out, |d| hasher.update(d))
        .with_context(|| format!("copying {shown} to {out_shown} failed"))?;
    out.sync_all()
        .with_context(|| format!("cannot write {out_shown}"))?;

    println!("saved {} to {out_shown}", size(len));
    println!("osrelease:  {}", escape::field(&h.osrelease));
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
    ensure!(
        computed.as_slice() == h.sha256,
        "checksum MISMATCH: the header records sha256 {} but the data has {}.\n\
         {out_shown} was kept. Either the device changed the data, or the crashed machine's \
         memory changed while it was captured (a device still writing into it), so the \
         device got other bytes than the ones hashed: inspect it before trusting it.",
        Hex(&h.sha256),
        Hex(&computed)
    );
    println!("checksum OK (sha256 {})", Hex(&computed));
    Ok(())
}

/// Creating OUT truncates it: if OUT is the device itself (an image file), that would destroy
/// the dump being saved.
fn refuse_same_file(dev: &File, out_path: &Path) -> Result<()> {
    let (Ok(a), Ok(b)) = (dev.metadata(), std::fs::metadata(out_path)) else {
        return Ok(());
    };
    ensure!(
        a.dev() != b.dev() || a.ino() != b.ino(),
        "{} is the dump device itself",
        out_path.display()
    );
    Ok(())
}

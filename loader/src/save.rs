//! `minicap save`: copying a dump off its device, then marking it saved.
//!
//! Once the copy is written and its check passed (or, for a partial dump, once the part
//! that exists is copied), the header's `saved_time` is set: the capture kernel keeps a dump
//! that was never saved instead of writing the next crash over it, so marking it is what
//! frees the device for the next capture. Only that field changes; `minicap format` clears it.

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, ensure, Context, Result};
use minicap_dumpheader::{
    DumpHeader, DumpState, Verification, DUMP_OFFSET, KNOWN_DUMP_OFFSETS, LAYOUT_VERSION,
    LEGACY_DUMP_OFFSET,
};
use sha2::{Digest, Sha256};

use crate::device::Device;
use crate::escape;
use crate::fmt_util::{crash_time, size, Hex};
use crate::info::describe_state;
use crate::verify::{chunk_size_text, describe_damage, read_table, ChunkCheck, Table};

/// How the copied bytes are checked, from the header's `verify`.
enum Check {
    /// SHA-256 of the whole dump.
    Sha256(Sha256),
    /// XXH64 per chunk against the table.
    Chunks(ChunkCheck),
    /// The table itself does not match its checksum: nothing to check the data against.
    DamagedTable {
        entries: u64,
        stored: u64,
        computed: u64,
    },
    /// Captured with `minicap.verify=none`.
    None,
}

impl Check {
    /// Reads what the check needs before the copy (the chunk table).
    fn prepare(dev: &Device, h: &DumpHeader) -> Result<Self> {
        Ok(match h.verify {
            Verification::Sha256 => Self::Sha256(Sha256::new()),
            Verification::None => Self::None,
            Verification::Xxh64Chunks => match read_table(dev, h)? {
                Table::Intact(table) => Self::Chunks(ChunkCheck::new(h, table)?),
                Table::Damaged {
                    entries,
                    stored,
                    computed,
                } => {
                    eprintln!(
                        "minicap: warning: the chunk checksum table is damaged; the dump is \
                         copied without verification"
                    );
                    Self::DamagedTable {
                        entries,
                        stored,
                        computed,
                    }
                }
            },
        })
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(hasher) => hasher.update(data),
            Self::Chunks(check) => check.update(data),
            Self::DamagedTable { .. } | Self::None => {}
        }
    }

    /// Reports the outcome once every byte was copied: Ok if the data matched (or there was
    /// nothing to match), an error naming what did not.
    fn finish(self, h: &DumpHeader, out_shown: &str) -> Result<()> {
        let complete = h.state == DumpState::Complete;
        if !complete {
            let verifiable = matches!(self, Self::Chunks(_));
            eprintln!(
                "minicap: warning: partial dump: {} of {} bytes; the vmcore is truncated{}",
                h.written,
                h.dump_length,
                if verifiable {
                    ""
                } else {
                    " and cannot be checksummed"
                }
            );
        }
        match self {
            Self::Sha256(_) if !complete => Ok(()),
            Self::Sha256(hasher) => {
                let computed = hasher.finalize();
                ensure!(
                    computed.as_slice() == h.sha256,
                    "checksum MISMATCH: the header records sha256 {} but the data has {}.\n\
                     {out_shown} was kept. Either the device changed the data, or the crashed \
                     machine's memory changed while it was captured (a device still writing \
                     into it), so the device got other bytes than the ones hashed: inspect it \
                     before trusting it.",
                    Hex(&h.sha256),
                    Hex(&computed)
                );
                println!("checksum OK (sha256 {})", Hex(&computed));
                Ok(())
            }
            Self::None => {
                println!("not verified (captured with minicap.verify=none)");
                Ok(())
            }
            Self::DamagedTable {
                entries,
                stored,
                computed,
            } => bail!(
                "the chunk checksum table is DAMAGED: the header records xxh64 {stored:#018x} \
                 for its {entries} entries, the table on the device has {computed:#018x}.\n\
                 {out_shown} was saved but could not be verified: the dump data may be intact, \
                 but nothing on the device can vouch for it."
            ),
            Self::Chunks(check) => {
                let size_text = chunk_size_text(h.chunk_size);
                let checked = check.checked();
                let runs = check.damaged_runs();
                if !runs.is_empty() {
                    let mut chunks = 0;
                    for run in &runs {
                        println!("{}", describe_damage(run, h.chunk_size, h.dump_length));
                        chunks += run.end - run.start;
                    }
                    bail!(
                        "checksum MISMATCH: {chunks} of {checked} chunks ({size_text} each) \
                         differ from the checksums recorded during the capture (listed above \
                         as byte ranges of the dump).\n{out_shown} was kept. Either the device \
                         changed the data, or the crashed machine's memory changed while it \
                         was captured (a device still writing into it), so the device got \
                         other bytes than the ones hashed: inspect those ranges before \
                         trusting them."
                    );
                }
                let tail = check.unverified_tail();
                if checked == 0 {
                    println!("not verified: no {size_text} chunk of the partial dump was finished");
                } else if tail > 0 {
                    println!(
                        "checksum OK (xxh64 per {size_text} chunk, {checked} chunks; the last \
                         {tail} bytes, in an unfinished chunk, are not verified)"
                    );
                } else {
                    println!("checksum OK (xxh64 per {size_text} chunk, {checked} chunks)");
                }
                Ok(())
            }
        }
    }
}

/// `minicap save DEVICE OUT [--partial]`.
pub fn save(path: &Path, out_path: &Path, partial: bool) -> Result<()> {
    let shown = path.display();
    let out_shown = out_path.display();
    let mut dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    // Layout 1 puts the dump at DUMP_OFFSET (at LEGACY_DUMP_OFFSET before the triage area
    // existed). Another value passes the header's own checks but means a writer that does not
    // follow this layout: copying from there would save bytes that are not the dump the
    // checksum or the capture describe.
    ensure!(
        KNOWN_DUMP_OFFSETS.contains(&h.dump_offset),
        "{shown}: the header places the dump at byte {}, but layout version {LAYOUT_VERSION} \
         always has it at byte {DUMP_OFFSET} (2 MiB), or {LEGACY_DUMP_OFFSET} (1 MiB) on \
         devices written before the triage area: the header was not written by minicap or is \
         damaged; refusing to guess where the dump is",
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
    let mut check = Check::prepare(&dev, &h).with_context(|| shown.to_string())?;
    let mut out = File::create(out_path).with_context(|| format!("cannot create {out_shown}"))?;
    dev.copy_range(h.dump_offset, len, &mut out, |d| check.update(d))
        .with_context(|| format!("copying {shown} to {out_shown} failed"))?;
    out.sync_all()
        .with_context(|| format!("cannot write {out_shown}"))?;

    println!("saved {} to {out_shown}", size(len));
    println!("osrelease:  {}", escape::field(&h.osrelease));
    println!("crash time: {}", crash_time(h.crash_time));
    println!("format:     {}", h.format);
    check.finish(&h, &out_shown.to_string())?;
    if h.is_saved() {
        return Ok(());
    }
    drop(dev);
    match mark_saved(path, &h) {
        Ok(()) => println!("marked saved on {shown}: the next crash may be captured over it"),
        Err(e) => eprintln!(
            "minicap: warning: the dump could not be marked saved on {shown} ({e:#}): the \
             capture kernel keeps it and writes nothing there until it is marked (run \
             `minicap save` again with write access) or the device is formatted"
        ),
    }
    Ok(())
}

/// Sets the header's `saved_time` to now, if the header is still `seen` (nothing wrote the
/// device since it was read), and makes it durable.
fn mark_saved(path: &Path, seen: &DumpHeader) -> Result<()> {
    let dev = Device::open(path, true)?;
    let mut h = dev.header(path)?;
    ensure!(
        h == *seen,
        "the header changed while the dump was being copied"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the system clock is before 1970")?;
    // A clock at 0 would read as "not saved".
    h.saved_time = i64::try_from(now.as_secs()).unwrap_or(i64::MAX).max(1);
    dev.file
        .write_all_at(&h.encode(), 0)
        .context("cannot write the header")?;
    dev.file.sync_all().context("cannot flush the header")?;
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

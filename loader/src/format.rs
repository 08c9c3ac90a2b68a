//! `minicap format`: preparing a dump device.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};
use minicap_dumpheader::{
    DeviceIdHex, DumpHeader, DumpState, HeaderError, DUMP_OFFSET, HEADER_LEN, MIN_CAPACITY,
};

use crate::device::Device;
use crate::escape;
use crate::fmt_util::{crash_time, size};
use crate::signatures::{self, Signature, HEAD_LEN, TAIL_LEN};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `minicap format DEVICE [--id HEX32] [--force]`.
pub fn format(path: &Path, id: Option<[u8; 16]>, force: bool) -> Result<()> {
    let shown = path.display();
    if is_partition(path) {
        bail!(
            "{shown} is a partition: the capture kernel looks for its header at the start of \
             whole disks only, so it would never find this one. Use a whole disk for dumps."
        );
    }
    let mut dev = Device::open(path, true)?;
    ensure!(
        dev.size >= MIN_CAPACITY,
        "{shown} is too small: {}, a dump device needs at least {}",
        size(dev.size),
        size(MIN_CAPACITY)
    );
    let sector = dev
        .read_header_bytes()
        .with_context(|| format!("cannot read {shown}"))?;
    let is_minicap = sector
        .as_ref()
        .is_some_and(|s| !matches!(DumpHeader::decode(s), Err(HeaderError::NotMinicap)));
    if let Some(what) = sector.as_ref().and_then(unsaved_dump) {
        if !force {
            bail!(
                "{shown} holds {what}, which may not have been saved.\n\
                 Save it first with `minicap save {shown} FILE`, or pass --force to overwrite it."
            );
        }
        eprintln!("minicap: warning: --force: overwriting {what}");
    }
    // Someone may have put a file system or the like on the disk since (or instead of)
    // `minicap format`. Beyond the first 2 MiB a prepared device holds dump data, which may
    // contain anything: the signatures at the end of the disk count only without a header.
    let found =
        foreign_signatures(&dev, !is_minicap).with_context(|| format!("cannot read {shown}"))?;
    let mut wipe_tail = false;
    if !found.is_empty() {
        let what = list(&found);
        if !force {
            bail!(
                "{shown} carries {what}: formatting it would destroy {}.\n\
                 Check that it is the disk you mean (lsblk -f, blkid), then pass --force to \
                 overwrite it.",
                if found.len() == 1 { "it" } else { "them" }
            );
        }
        eprintln!("minicap: warning: --force: overwriting {what}");
        // Left in place, an md superblock at the end would still make the disk a RAID member
        // to mdadm (which would then claim it).
        wipe_tail = found.iter().any(Signature::lies_at_end);
    }
    let id = match id {
        Some(id) => id,
        None => random_id()?,
    };
    let header = DumpHeader::new_empty(id, dev.size, &format!("minicap-format {VERSION}"));
    let mut area = vec![0u8; usize::try_from(DUMP_OFFSET)?];
    area[..HEADER_LEN].copy_from_slice(&header.encode());
    let tail_start = dev.size.saturating_sub(TAIL_LEN as u64).max(DUMP_OFFSET);
    let write = |dev: &mut Device| -> std::io::Result<()> {
        dev.file.seek(SeekFrom::Start(0))?;
        dev.file.write_all(&area)?;
        if wipe_tail {
            let zeros = vec![0u8; usize::try_from(dev.size - tail_start).unwrap_or(0)];
            dev.file.write_all_at(&zeros, tail_start)?;
        }
        // The header must be on the medium before anyone relies on the device being prepared.
        dev.file.sync_all()
    };
    write(&mut dev).with_context(|| format!("cannot write {shown}"))?;

    let hex_id = DeviceIdHex(&id);
    println!("formatted {shown} as a minicap dump device");
    println!("capacity:  {}", size(dev.size));
    println!("max dump:  {}", size(dev.size - DUMP_OFFSET));
    println!("device id: {hex_id}");
    println!("add this to the capture kernel command line:");
    println!("  minicap.device={hex_id}");
    Ok(())
}

/// Partition tables, file systems, LVM, RAID and swap signatures on `dev`; those at the end of
/// the disk only if `with_tail`.
fn foreign_signatures(dev: &Device, with_tail: bool) -> std::io::Result<Vec<Signature>> {
    let head = dev.read_at(0, HEAD_LEN)?;
    let tail_len = if with_tail {
        dev.size.min(TAIL_LEN as u64)
    } else {
        0
    };
    let tail = dev.read_at(dev.size - tail_len, usize::try_from(tail_len).unwrap_or(0))?;
    Ok(signatures::detect(&head, &tail, dev.size))
}

/// "a, b and c".
fn list(found: &[Signature]) -> String {
    let names: Vec<String> = found.iter().map(ToString::to_string).collect();
    match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.concat(),
    }
}

/// Describes the dump in `sector` that formatting would destroy, or `None` if nothing of value
/// is there. A damaged or unknown minicap header counts as valuable: it may be a header torn
/// while a capture was updating it.
fn unsaved_dump(sector: &[u8; HEADER_LEN]) -> Option<String> {
    match DumpHeader::decode(sector) {
        Err(HeaderError::NotMinicap) => None,
        Err(e) => Some(format!("a damaged or unknown minicap header ({e})")),
        // `minicap save` copied it off and marked it.
        Ok(h) if h.is_saved() => None,
        Ok(h) => match h.state {
            DumpState::Empty => None,
            DumpState::Failed if h.written == 0 => None,
            DumpState::Complete => Some(format!(
                "a complete dump ({}, osrelease \"{}\", crashed {})",
                size(h.dump_length),
                escape::field(&h.osrelease),
                crash_time(h.crash_time)
            )),
            DumpState::Writing => Some(format!(
                "an unfinished dump ({} of {} written)",
                h.written, h.dump_length
            )),
            DumpState::Failed => Some(format!(
                "a failed dump with {} bytes written (\"{}\")",
                h.written,
                escape::field(&h.message)
            )),
        },
    }
}

fn random_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut id))
        .context("cannot read /dev/urandom")?;
    // Reserved as "no id"; 2^-128 odds mean the random source is broken.
    ensure!(id != [0; 16], "/dev/urandom returned zeros");
    Ok(id)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_english() {
        assert_eq!(list(&[Signature::Xfs]), "an XFS file system");
        assert_eq!(
            list(&[Signature::Mbr, Signature::Ext, Signature::Swap]),
            "an MBR partition table, an ext2/3/4 file system and a Linux swap area"
        );
    }

    #[test]
    fn unsaved_dump_text_is_escaped() {
        let mut h = DumpHeader::new_empty([1; 16], 4 << 20, "w");
        h.state = DumpState::Failed;
        h.written = 512;
        h.dump_length = 1024;
        h.set_message("\u{1b}[2Jgone");
        let what = unsaved_dump(&h.encode()).unwrap();
        assert!(what.contains("\\x1b[2Jgone"), "{what}");
        assert!(!what.contains('\u{1b}'));
    }
}

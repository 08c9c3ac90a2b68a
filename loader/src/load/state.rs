//! `/run/minicap/loaded`: the record `minicap load` leaves of what it loaded.
//!
//! The kernel says only whether a crash kernel is loaded (`/sys/kernel/kexec_crash_loaded`),
//! not which loader put it there nor with what. `minicap load` writes this file after
//! `kexec_load` succeeds and `minicap unload` removes it, so `minicap status` can tell "loaded
//! by minicap, with this image and these options" from "loaded by another loader" (kexec-tools'
//! `kexec -p`: loaded, no file) and from a stale file (not loaded: another tool unloaded it).
//! `/run` is a tmpfs: a reboot, which also empties the crash region, clears it.
//!
//! The file is one JSON object ([`LoadRecord`]); a file that does not parse is reported as
//! such, never trusted.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::route::Syscall;
use super::sysfs::SystemFiles;
use crate::fmt_util::Hex;

/// The record's path, relative to the root.
pub const LOAD_RECORD: &str = "run/minicap/loaded";

/// What one `minicap load` loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadRecord {
    /// The image file, as given.
    pub image: PathBuf,
    /// SHA-256 of the image file when it was loaded (lower-case hex).
    pub image_sha256: String,
    /// The system call that loaded it; records written before the field existed were all
    /// `kexec_load`'s.
    #[serde(default = "kexec_load")]
    pub syscall: Syscall,
    /// The image's kind as loaded: "ELF", "bzImage, signed" or "bzImage, unsigned" (empty in
    /// older records).
    #[serde(default)]
    pub image_kind: String,
    /// minicap's purgatory file (`None`: loaded by `kexec_file_load`, the kernel's purgatory).
    pub purgatory: Option<PathBuf>,
    /// The configuration file read, if any.
    pub config: Option<PathBuf>,
    /// The options given to minicap (`--append` or the configuration's).
    pub options: String,
    /// The crash region loaded into, `[start, end)`.
    pub region_start: u64,
    /// See `region_start`.
    pub region_end: u64,
    /// The load's time, seconds since the epoch (UTC).
    pub loaded_at: i64,
}

fn kexec_load() -> Syscall {
    Syscall::KexecLoad
}

impl LoadRecord {
    /// The crash region loaded into.
    pub fn region(&self) -> Range<u64> {
        self.region_start..self.region_end
    }
}

/// SHA-256 of a file's bytes, as stored in [`LoadRecord::image_sha256`].
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    Hex(&sha2::Sha256::digest(bytes)).to_string()
}

/// Writes `record` under `files`' root, creating `/run/minicap`.
pub fn write(files: &SystemFiles, record: &LoadRecord) -> Result<()> {
    let path = files.path(LOAD_RECORD);
    let write = || -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Written whole then renamed: a reader never sees half a record.
        let partial = path.with_extension("partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(record)?)?;
        std::fs::rename(&partial, &path)
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Removes the record; no record is not an error.
pub fn remove(files: &SystemFiles) -> Result<()> {
    let path = files.path(LOAD_RECORD);
    match std::fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The record, `Ok(None)` if there is none; an unreadable or malformed file is an error
/// naming it.
pub fn read(files: &SystemFiles) -> Result<Option<LoadRecord>> {
    let path = files.path(LOAD_RECORD);
    let bytes = match std::fs::read(&path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        other => other.with_context(|| format!("cannot read {}", path.display()))?,
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .with_context(|| format!("{} is not a record minicap load wrote", path.display()))
}

/// Whether the image file still has the digest recorded at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageCheck {
    /// Same bytes.
    Unchanged,
    /// Different bytes: the loaded image is not the file any more.
    Changed,
    /// The file cannot be read now.
    Unreadable(io::ErrorKind),
}

/// Compares the image file at `path` with `record`.
pub fn check_image(record: &LoadRecord, path: &Path) -> ImageCheck {
    match std::fs::read(path) {
        Ok(bytes) if sha256_hex(&bytes) == record.image_sha256 => ImageCheck::Unchanged,
        Ok(_) => ImageCheck::Changed,
        Err(e) => ImageCheck::Unreadable(e.kind()),
    }
}

#[cfg(test)]
pub mod tests {
    use super::super::testfs::TestRoot;
    use super::*;

    pub fn record() -> LoadRecord {
        LoadRecord {
            image: "/usr/lib/minicap/minicap.elf".into(),
            image_sha256: sha256_hex(b"image"),
            syscall: Syscall::KexecLoad,
            image_kind: "ELF".into(),
            purgatory: Some("/usr/lib/minicap/purgatory.elf".into()),
            config: Some("/etc/minicap.conf".into()),
            options: "minicap.format=kdump".into(),
            region_start: 0x2d00_0000,
            region_end: 0x2f00_0000,
            loaded_at: 1_700_000_000,
        }
    }

    #[test]
    fn written_read_and_removed() {
        let root = TestRoot::empty();
        assert_eq!(read(&root.files()).unwrap(), None);
        write(&root.files(), &record()).unwrap();
        assert_eq!(read(&root.files()).unwrap(), Some(record()));
        remove(&root.files()).unwrap();
        assert_eq!(read(&root.files()).unwrap(), None);
        // Removing twice is fine: unload after another tool's unload.
        remove(&root.files()).unwrap();
    }

    #[test]
    fn a_file_load_record_round_trips() {
        let root = TestRoot::empty();
        let file_load = LoadRecord {
            image: "/usr/lib/minicap/minicap.bzImage".into(),
            syscall: Syscall::KexecFileLoad,
            image_kind: "bzImage, signed".into(),
            purgatory: None,
            ..record()
        };
        write(&root.files(), &file_load).unwrap();
        let text = std::fs::read_to_string(root.files().path(LOAD_RECORD)).unwrap();
        assert!(text.contains("\"syscall\": \"kexec_file_load\""), "{text}");
        assert!(text.contains("\"purgatory\": null"), "{text}");
        assert_eq!(read(&root.files()).unwrap(), Some(file_load));
    }

    /// A record from before the syscall was kept (a tool upgraded since the load): that
    /// minicap only had kexec_load.
    #[test]
    fn an_older_record_was_kexec_load() {
        let root = TestRoot::empty();
        root.write(
            LOAD_RECORD,
            r#"{"image": "/usr/lib/minicap/minicap.elf", "image_sha256": "00",
                "purgatory": "/usr/lib/minicap/purgatory.elf", "config": null,
                "options": "", "region_start": 1, "region_end": 2, "loaded_at": 3}"#,
        );
        let r = read(&root.files()).unwrap().unwrap();
        assert_eq!(r.syscall, Syscall::KexecLoad);
        assert_eq!(r.purgatory, Some("/usr/lib/minicap/purgatory.elf".into()));
        assert_eq!(r.image_kind, "");
    }

    #[test]
    fn a_damaged_record_is_not_trusted() {
        let root = TestRoot::empty();
        root.write(LOAD_RECORD, "{\"image\": 3}");
        let e = format!("{:#}", read(&root.files()).unwrap_err());
        assert!(e.contains("is not a record minicap load wrote"), "{e}");
    }

    #[test]
    fn digest_of_the_image() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let root = TestRoot::empty();
        root.write("image", "image");
        let path = root.files().path("image");
        assert_eq!(check_image(&record(), &path), ImageCheck::Unchanged);
        root.write("image", "other");
        assert_eq!(check_image(&record(), &path), ImageCheck::Changed);
        root.remove("image");
        assert_eq!(
            check_image(&record(), &path),
            ImageCheck::Unreadable(io::ErrorKind::NotFound)
        );
    }
}

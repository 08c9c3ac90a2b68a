//! Before loading: is the dump device the capture kernel will look for on this machine?
//!
//! After the panic minicap writes only to a whole disk whose first block holds a header
//! written by `minicap format` (with the `minicap.device=` id, if one is given), and it
//! finds that out only then. A load that cannot succeed should fail now, while someone
//! can still fix it: so `load` reads the header of every whole disk in `/sys/block`
//! (through `/dev/<name>`) and refuses when disks could be read and none is the prepared
//! one. Disks it cannot read (no permission, no device node) are not proof of anything:
//! when no disk at all could be read it only warns.
//!
//! The prepared disk may still hold a dump nobody saved: the capture kernel keeps such a dump
//! and writes nothing there (unless `minicap.overwrite=any`), so `load` says so now.

use std::fmt;

#[cfg(test)]
use minicap_dumpheader::HEADER_LEN;
use minicap_dumpheader::{DeviceIdHex, DumpHeader, DumpState, UtcTime};

use super::sysfs::SystemFiles;
use crate::device::Device;

/// Block devices that are never a minicap dump disk: loop and RAM disks, device-mapper and
/// software RAID volumes, optical and floppy drives, network block devices.
const NOT_DUMP_DISKS: [&str; 8] = ["loop", "ram", "zram", "dm-", "md", "sr", "fd", "nbd"];

/// What the disks said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpDeviceCheck {
    /// The prepared disk (the first in `/sys/block` order).
    Found {
        disk: String,
        id: [u8; 16],
        /// The dump it holds that `minicap save` has not copied off, if any.
        unsaved: Option<UnsavedDump>,
    },
    /// Disks were read; none is prepared with the id asked for (or at all).
    Missing {
        wanted: Option<[u8; 16]>,
        read: Vec<String>,
        /// Prepared disks with another id.
        others: Vec<(String, [u8; 16])>,
    },
    /// No disk could be read: nothing can be said.
    Unknown { unreadable: Vec<String> },
}

/// A dump on the prepared disk that was never saved, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsavedDump {
    state: DumpState,
    crash_time: i64,
    osrelease: String,
    written: u64,
}

impl UnsavedDump {
    /// The unsaved dump `header` describes, if it holds one.
    fn of(header: &DumpHeader) -> Option<Self> {
        header.holds_unsaved_dump().then(|| Self {
            state: header.state,
            crash_time: header.crash_time,
            osrelease: crate::escape::field(&header.osrelease),
            written: header.written,
        })
    }
}

/// Reads the header of every whole disk under `files`' `sys/block` and `dev`.
pub fn check_dump_device(files: &SystemFiles, wanted: Option<[u8; 16]>) -> DumpDeviceCheck {
    let mut disks: Vec<String> = std::fs::read_dir(files.path("sys/block"))
        .map(|dir| {
            dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| !NOT_DUMP_DISKS.iter().any(|p| name.starts_with(p)))
                .collect()
        })
        .unwrap_or_default();
    disks.sort();
    let (mut read, mut unreadable, mut others) = (Vec::new(), Vec::new(), Vec::new());
    for disk in disks {
        let path = files.path(&format!("dev/{disk}"));
        let Ok(bytes) = Device::open(&path, false).and_then(|d| Ok(d.read_header_bytes()?)) else {
            unreadable.push(disk);
            continue;
        };
        if let Some(header) = bytes.and_then(|b| DumpHeader::decode(&b).ok()) {
            let id = header.device_id;
            if wanted.is_none_or(|w| w == id) {
                let unsaved = UnsavedDump::of(&header);
                return DumpDeviceCheck::Found { disk, id, unsaved };
            }
            others.push((disk.clone(), id));
        }
        read.push(disk);
    }
    if read.is_empty() {
        DumpDeviceCheck::Unknown { unreadable }
    } else {
        DumpDeviceCheck::Missing {
            wanted,
            read,
            others,
        }
    }
}

impl fmt::Display for DumpDeviceCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Found { disk, id, unsaved } => {
                write!(
                    f,
                    "dump device: /dev/{disk} (prepared, id {})",
                    DeviceIdHex(id)
                )?;
                if let Some(u) = unsaved {
                    write!(
                        f,
                        "; warning: it holds a {} dump ({} bytes) of kernel {}",
                        u.state,
                        u.written,
                        if u.osrelease.is_empty() {
                            "?"
                        } else {
                            &u.osrelease
                        }
                    )?;
                    if u.crash_time != 0 {
                        write!(f, " that crashed at {}", UtcTime(u.crash_time))?;
                    }
                    write!(
                        f,
                        " that was never saved: the capture kernel keeps it and will not \
                         capture the next crash there (unless minicap.overwrite=any); copy it \
                         off first with `minicap save /dev/{disk} FILE`"
                    )?;
                }
                Ok(())
            }
            Self::Missing {
                wanted,
                read,
                others,
            } => {
                match wanted {
                    Some(id) => write!(f, "no disk is prepared with id {}", DeviceIdHex(id))?,
                    None => write!(f, "no disk is prepared for dumps")?,
                }
                write!(f, " (read: {})", read.join(", "))?;
                for (disk, id) in others {
                    write!(f, "; /dev/{disk} is prepared with id {}", DeviceIdHex(id))?;
                }
                write!(
                    f,
                    ": the capture would find nowhere to write. Prepare one with `minicap \
                     format /dev/DISK` and use the id it prints (minicap.device=)"
                )
            }
            Self::Unknown { unreadable } if unreadable.is_empty() => {
                write!(f, "no disk in /sys/block to check for the dump device")
            }
            Self::Unknown { unreadable } => write!(
                f,
                "could not read any disk to check for the dump device ({})",
                unreadable.join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::testfs::TestRoot;

    const ID: [u8; 16] = [0x5a; 16];
    const OTHER: [u8; 16] = [0x33; 16];

    /// A whole disk `name` in `/sys/block` with a `/dev/<name>` holding its first 8 KiB,
    /// prepared with `id` (as a 64 MiB disk) or blank.
    fn disk(root: &TestRoot, name: &str, id: Option<[u8; 16]>) {
        root.write(&format!("sys/block/{name}/size"), "2048\n");
        let mut bytes = vec![0u8; 8 << 10];
        if let Some(id) = id {
            let header = DumpHeader::new_empty(id, 64 << 20, "test");
            bytes[..HEADER_LEN].copy_from_slice(&header.encode());
        }
        root.write_bytes(&format!("dev/{name}"), &bytes);
    }

    #[test]
    fn finds_the_disk_with_the_id() {
        let root = TestRoot::empty();
        disk(&root, "vda", None);
        disk(&root, "vdb", Some(OTHER));
        disk(&root, "vdc", Some(ID));
        assert_eq!(
            check_dump_device(&root.files(), Some(ID)),
            DumpDeviceCheck::Found {
                disk: "vdc".into(),
                id: ID,
                unsaved: None
            }
        );
        assert_eq!(
            check_dump_device(&root.files(), None),
            DumpDeviceCheck::Found {
                disk: "vdb".into(),
                id: OTHER,
                unsaved: None
            }
        );
    }

    /// Rewrites the header of `/dev/<name>` with `edit` applied.
    fn edit_header(root: &TestRoot, name: &str, edit: impl FnOnce(&mut DumpHeader)) {
        let path = root.files().path(&format!("dev/{name}"));
        let mut bytes = std::fs::read(&path).unwrap();
        let mut header = DumpHeader::decode(&bytes).unwrap();
        edit(&mut header);
        bytes[..HEADER_LEN].copy_from_slice(&header.encode());
        root.write_bytes(&format!("dev/{name}"), &bytes);
    }

    #[test]
    fn warns_of_an_unsaved_dump_on_the_disk() {
        let root = TestRoot::empty();
        disk(&root, "vda", Some(ID));
        edit_header(&root, "vda", |h| {
            h.state = DumpState::Complete;
            h.format = minicap_dumpheader::DumpFormat::ElfVmcore;
            h.dump_length = 8 << 20;
            h.written = 8 << 20;
            h.crash_time = 1_700_000_000;
            h.set_osrelease("6.1.0-57-cloud-amd64");
        });
        let check = check_dump_device(&root.files(), Some(ID));
        let text = check.to_string();
        assert!(
            matches!(
                &check,
                DumpDeviceCheck::Found {
                    unsaved: Some(_),
                    ..
                }
            ),
            "{text}"
        );
        assert!(
            text.contains("holds a complete dump (8388608 bytes) of kernel 6.1.0-57-cloud-amd64")
                && text.contains("2023-11-14 22:13:20 UTC")
                && text.contains("minicap save /dev/vda FILE"),
            "{text}"
        );
        // Once saved, nothing to say.
        edit_header(&root, "vda", |h| h.saved_time = 1_700_000_100);
        let check = check_dump_device(&root.files(), Some(ID));
        assert!(
            matches!(&check, DumpDeviceCheck::Found { unsaved: None, .. }),
            "{check}"
        );
        assert!(!check.to_string().contains("warning"));
    }

    #[test]
    fn names_what_it_read_and_the_other_ids() {
        let root = TestRoot::empty();
        disk(&root, "sda", None);
        disk(&root, "nvme0n1", Some(OTHER));
        disk(&root, "loop0", Some(ID)); // never a dump disk
        let check = check_dump_device(&root.files(), Some(ID));
        let text = check.to_string();
        assert!(matches!(check, DumpDeviceCheck::Missing { .. }), "{text}");
        assert!(text.contains("no disk is prepared with id 5a5a"), "{text}");
        assert!(text.contains("(read: nvme0n1, sda)"), "{text}");
        assert!(
            text.contains("/dev/nvme0n1 is prepared with id 3333"),
            "{text}"
        );
        assert!(text.contains("minicap format /dev/DISK"), "{text}");
    }

    #[test]
    fn unreadable_disks_prove_nothing() {
        let root = TestRoot::empty();
        root.write("sys/block/vda/size", "2048\n");
        assert_eq!(
            check_dump_device(&root.files(), Some(ID)),
            DumpDeviceCheck::Unknown {
                unreadable: vec!["vda".into()]
            }
        );
        let bare = TestRoot::empty();
        assert_eq!(
            check_dump_device(&bare.files(), None),
            DumpDeviceCheck::Unknown { unreadable: vec![] }
        );
    }
}

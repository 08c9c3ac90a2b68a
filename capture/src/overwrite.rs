//! Whether the capture may write over what the chosen target holds (`minicap.overwrite=`).
//!
//! A device's header says whether it holds a dump (a capture confirmed at least one byte of
//! it: complete, partial or failed part way) and whether `minicap save` copied that dump
//! off (`saved_time`). With `minicap.overwrite=saved`, the default, a dump nobody saved is
//! kept and nothing is written: in a crash loop the first crash is the most informative
//! one, and a later crash must not replace it before anyone saved it. A header that claims
//! no dump byte (a capture that failed before writing any) holds nothing to keep.

use crate::failure::{DeviceName, HeldDump};
use crate::text::FixedString;
use crate::Failure;
use minicap_bootinfo::cmdline::Overwrite;
use minicap_dumpheader::DumpHeader;

/// What the capture does with the target whose header is `header`.
#[derive(Debug, Clone, Copy)]
pub enum TargetUse {
    /// Nothing of value on it (empty, saved, or no dump byte): write.
    Write,
    /// It holds an unsaved dump, replaced because `minicap.overwrite=any` (to be said).
    Replace(HeldDump),
}

/// `Ok` with how to use the target `device` whose header is `header`, or
/// [`Failure::UnsavedDumpPresent`] when it holds a dump nobody saved and `overwrite` keeps it.
pub fn target_use(
    header: &DumpHeader,
    device: &DeviceName,
    overwrite: Overwrite,
) -> Result<TargetUse, Failure> {
    if !header.holds_unsaved_dump() {
        return Ok(TargetUse::Write);
    }
    let held = HeldDump {
        state: header.state,
        crash_time: header.crash_time,
        osrelease: FixedString::display(header.osrelease_str()),
        written: header.written,
        dump_length: header.dump_length,
    };
    match overwrite {
        Overwrite::Saved => Err(Failure::UnsavedDumpPresent {
            device: *device,
            held,
        }),
        Overwrite::Any => Ok(TargetUse::Replace(held)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceEffect;
    use minicap_dumpheader::{DumpFormat, DumpState, FailureCode};

    fn device() -> DeviceName {
        DeviceName::display("virtio-blk 00:02.0 (modern), 2048 MiB")
    }

    /// A header holding a complete 8 MiB dump of a 6.1 kernel, never saved.
    fn complete() -> DumpHeader {
        let mut h = DumpHeader::new_empty([7; 16], 64 << 20, "minicap 0.1.0");
        h.state = DumpState::Complete;
        h.format = DumpFormat::ElfVmcore;
        h.dump_length = 8 << 20;
        h.written = 8 << 20;
        h.crash_time = 1_700_000_000;
        h.set_osrelease("6.1.0-57-cloud-amd64");
        h
    }

    #[test]
    fn an_unsaved_dump_is_kept_and_named() {
        let failure = target_use(&complete(), &device(), Overwrite::Saved).unwrap_err();
        assert_eq!(failure.code(), FailureCode::UnsavedDumpPresent);
        assert_eq!(failure.effect(), Some(DeviceEffect::NothingWritten));
        assert_eq!(
            failure.to_string(),
            "dump device virtio-blk 00:02.0 (modern), 2048 MiB holds a complete dump of kernel \
             6.1.0-57-cloud-amd64 that crashed at 2023-11-14 22:13:20 UTC, 8388608 of 8388608 \
             bytes (8.0 MiB) on the device, not yet saved: it is kept; copy it off with `minicap \
             save DEVICE` (the next crash is then captured), or boot the capture kernel with \
             minicap.overwrite=any to replace it; nothing was written"
        );
    }

    #[test]
    fn a_partial_dump_counts_and_its_unknowns_are_said() {
        let mut h = complete();
        h.state = DumpState::Failed;
        h.written = 4 << 20;
        h.crash_time = 0;
        h.set_osrelease("");
        let failure = target_use(&h, &device(), Overwrite::Saved).unwrap_err();
        let text = failure.to_string();
        assert!(
            text.contains("holds a failed dump of an unknown kernel, 4194304 of 8388608 bytes"),
            "{text}"
        );
    }

    #[test]
    fn saved_empty_or_dataless_targets_are_written() {
        let mut saved = complete();
        saved.saved_time = 1_700_000_100;
        let empty = DumpHeader::new_empty([7; 16], 64 << 20, "minicap format");
        let mut dataless = complete();
        dataless.state = DumpState::Failed;
        dataless.written = 0;
        for h in [saved, empty, dataless] {
            for overwrite in [Overwrite::Saved, Overwrite::Any] {
                assert!(matches!(
                    target_use(&h, &device(), overwrite),
                    Ok(TargetUse::Write)
                ));
            }
        }
    }

    #[test]
    fn overwrite_any_replaces_an_unsaved_dump() {
        let Ok(TargetUse::Replace(held)) = target_use(&complete(), &device(), Overwrite::Any)
        else {
            panic!("not replaced");
        };
        assert_eq!(held.written, 8 << 20);
        assert!(held
            .to_string()
            .starts_with("a complete dump of kernel 6.1.0-57-cloud-amd64"));
    }
}

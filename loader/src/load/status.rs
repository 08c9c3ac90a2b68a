//! `minicap status`: whether a crash kernel is loaded and by whom (the kernel's
//! `kexec_crash_loaded` with minicap's load record, [`super::state`]), the crash region, and the
//! last capture recorded on the prepared dump device.

use std::path::Path;

use anyhow::Result;
use minicap_dumpheader::{DumpState, FailureCode};

use super::iomem::Iomem;
use super::state::{self, check_image, ImageCheck, LoadRecord, LOAD_RECORD};
use super::sysfs::{CrashState, SystemFiles};
use super::system::read_state_and_iomem;
use crate::device::Device;
use crate::escape;
use crate::fmt_util::{crash_time, size};
use crate::info::{describe_saved, describe_state};

/// Who loaded the crash kernel: the kernel's flag combined with minicap's load record.
#[derive(Debug)]
enum Loader {
    /// Loaded, and minicap load's record is there.
    Minicap(LoadRecord),
    /// Loaded, no record: kexec-tools or another loader.
    Other,
    /// Not loaded, no record.
    Nobody,
    /// Not loaded but a record: it outlived the load (another tool unloaded minicap).
    Stale(LoadRecord),
}

impl Loader {
    fn of(crash_loaded: bool, record: Option<LoadRecord>) -> Self {
        match (crash_loaded, record) {
            (true, Some(r)) => Self::Minicap(r),
            (true, None) => Self::Other,
            (false, None) => Self::Nobody,
            (false, Some(r)) => Self::Stale(r),
        }
    }
}

/// The report on the crash kernel: who loaded it, the crash region, what minicap loaded.
fn describe_kexec(state: &CrashState, iomem: &Iomem, record: Result<Option<LoadRecord>>) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let (record, record_problem) = match record {
        Ok(r) => (r, None),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let region = iomem.load_region();
    match Loader::of(state.crash_loaded, record) {
        Loader::Minicap(r) => {
            line(format!(
                "crash kernel: loaded by minicap load, {}",
                crash_time(r.loaded_at)
            ));
            describe_record(&mut line, &r);
            if region.as_ref() != Some(&r.region()) {
                line(format!(
                    "  warning:    loaded into {:#x}-{:#x}, not the crash region now: the \
                     record is from another boot?",
                    r.region_start,
                    r.region_end.saturating_sub(1)
                ));
            }
        }
        Loader::Other => line(format!(
            "crash kernel: loaded by another loader (e.g. kexec -p of kexec-tools): no {}",
            Path::new("/").join(LOAD_RECORD).display()
        )),
        Loader::Nobody => line("crash kernel: not loaded".to_owned()),
        Loader::Stale(r) => {
            line(format!(
                "crash kernel: not loaded; the record of minicap load ({}) is stale: another \
                 tool unloaded it (run minicap load again)",
                crash_time(r.loaded_at)
            ));
            describe_record(&mut line, &r);
        }
    }
    if let Some(problem) = record_problem {
        line(format!("  warning:    {problem}"));
    }
    match region {
        Some(r) => line(format!(
            "crash region: {:#x}-{:#x}, {}",
            r.start,
            r.end - 1,
            size(r.end - r.start)
        )),
        None => {
            line("crash region: none (boot with crashkernel=; see minicap recommend)".to_owned())
        }
    }
    if state.load_disabled == Some(true) {
        line("kexec_load:   disabled until reboot (kexec_load_disabled is 1)".to_owned());
    }
    out
}

/// What the record says minicap loaded.
fn describe_record(line: &mut impl FnMut(String), r: &LoadRecord) {
    let image = match check_image(r, &r.image) {
        ImageCheck::Unchanged => "unchanged since the load",
        ImageCheck::Changed => "CHANGED since the load: run minicap load again to load it",
        ImageCheck::Unreadable(_) => "unreadable now",
    };
    line(format!(
        "  image:      {} (sha256 {}; the file is {image})",
        r.image.display(),
        r.image_sha256
    ));
    let kind = if r.image_kind.is_empty() {
        String::new()
    } else {
        format!(", {}", r.image_kind)
    };
    line(format!("  syscall:    {}{kind}", r.syscall));
    line(match &r.purgatory {
        Some(p) => format!("  purgatory:  {}", p.display()),
        None => "  purgatory:  the kernel's (kexec_file_load)".to_owned(),
    });
    line(format!(
        "  options:    {}{}",
        if r.options.is_empty() {
            "(none)"
        } else {
            &r.options
        },
        r.config
            .as_ref()
            .map(|c| format!(" (configuration {})", c.display()))
            .unwrap_or_default()
    ));
}

/// `minicap status [--device DEVICE]`.
pub fn status(files: &SystemFiles, device: Option<&Path>) -> Result<()> {
    // The device's record is worth showing even on a kernel that cannot load a crash kernel.
    match read_state_and_iomem(files) {
        Ok((state, iomem)) => print!("{}", describe_kexec(&state, &iomem, state::read(files))),
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
        println!("  saved:      {}", describe_saved(&header));
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

#[cfg(test)]
mod tests {
    use super::super::route::Syscall;
    use super::super::state::tests::record;
    use super::super::sysfs::{read_crash_state, KEXEC_CRASH_LOADED};
    use super::super::system::read_state_and_iomem;
    use super::super::testfs::TestRoot;
    use super::*;

    /// The guest's status text with `loaded` and `record` written under its root.
    fn report(root: &TestRoot, loaded: bool, record: Option<&LoadRecord>) -> String {
        root.write(KEXEC_CRASH_LOADED, if loaded { "1\n" } else { "0\n" });
        match record {
            Some(r) => state::write(&root.files(), r).unwrap(),
            None => state::remove(&root.files()).unwrap(),
        }
        let (st, iomem) = read_state_and_iomem(&root.files()).unwrap();
        assert_eq!(
            read_crash_state(&root.files()).unwrap().crash_loaded,
            loaded
        );
        describe_kexec(&st, &iomem, state::read(&root.files()))
    }

    /// A record of a load into the guest's crash region of an image file under the root.
    fn guest_record(root: &TestRoot) -> LoadRecord {
        let (_, iomem) = read_state_and_iomem(&root.files()).unwrap();
        let region = iomem.load_region().unwrap();
        root.write("minicap.elf", "image");
        LoadRecord {
            image: root.files().path("minicap.elf"),
            region_start: region.start,
            region_end: region.end,
            ..record()
        }
    }

    #[test]
    fn loaded_with_a_record_is_minicap_with_what_it_loaded() {
        let root = TestRoot::guest_2cpu();
        let r = guest_record(&root);
        let text = report(&root, true, Some(&r));
        assert!(
            text.starts_with(
                "crash kernel: loaded by minicap load, 2023-11-14 22:13:20 UTC (1700000000)\n"
            ),
            "{text}"
        );
        assert!(text.contains("the file is unchanged since"), "{text}");
        assert!(
            text.contains("  options:    minicap.format=kdump (configuration /etc/minicap.conf)"),
            "{text}"
        );
        assert!(text.contains("\n  syscall:    kexec_load, ELF\n"), "{text}");
        assert!(!text.contains("warning"), "{text}");
        // The image replaced after the load: the loaded one is not the file any more.
        root.write("minicap.elf", "newer image");
        assert!(report(&root, true, Some(&r)).contains("CHANGED since"));
    }

    #[test]
    fn a_file_load_shows_the_syscall_and_no_purgatory() {
        let root = TestRoot::guest_2cpu();
        let r = LoadRecord {
            syscall: Syscall::KexecFileLoad,
            image_kind: "bzImage, signed".into(),
            purgatory: None,
            ..guest_record(&root)
        };
        let text = report(&root, true, Some(&r));
        assert!(
            text.contains(
                "\n  syscall:    kexec_file_load, bzImage, signed\n  purgatory:  the kernel's"
            ),
            "{text}"
        );
    }

    #[test]
    fn loaded_without_a_record_is_another_loader() {
        let root = TestRoot::guest_2cpu();
        let text = report(&root, true, None);
        assert!(
            text.starts_with("crash kernel: loaded by another loader (e.g. kexec -p"),
            "{text}"
        );
        assert!(text.contains("crash region: 0x"), "{text}");
    }

    #[test]
    fn a_record_without_a_load_is_stale() {
        let root = TestRoot::guest_2cpu();
        let r = guest_record(&root);
        let text = report(&root, false, Some(&r));
        assert!(
            text.starts_with("crash kernel: not loaded; the record"),
            "{text}"
        );
        assert!(text.contains("is stale"), "{text}");
        assert!(report(&root, false, None).starts_with("crash kernel: not loaded\n"));
    }

    #[test]
    fn a_record_of_another_region_or_damaged_is_flagged() {
        let root = TestRoot::guest_2cpu();
        let elsewhere = LoadRecord {
            region_start: 0x1000_0000,
            region_end: 0x1200_0000,
            ..guest_record(&root)
        };
        let text = report(&root, true, Some(&elsewhere));
        assert!(text.contains("not the crash region now"), "{text}");
        root.write(LOAD_RECORD, "not json");
        root.write(KEXEC_CRASH_LOADED, "1\n");
        let (st, iomem) = read_state_and_iomem(&root.files()).unwrap();
        let text = describe_kexec(&st, &iomem, state::read(&root.files()));
        assert!(
            text.starts_with("crash kernel: loaded by another loader"),
            "{text}"
        );
        assert!(
            text.contains("warning:    ") && text.contains("is not a record"),
            "{text}"
        );
    }
}

//! The command line: subcommands, their options and their help texts.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::load::corrupt::CoreHeaderDefect;
use crate::load::SyscallChoice;

/// Exit status of a command that ran but failed or refused (usage errors exit with 2, from
/// clap).
pub const EXIT_FAILURE: u8 = 1;

const AFTER_HELP: &str = "\
Typical use:
  minicap format DEVICE      once, then add the printed minicap.device=<id> to the capture
                             kernel command line (kexec -p ... --append)
  minicap info DEVICE        after a crash: what the capture kernel did
  minicap dmesg DEVICE       the crashed kernel's log and registers, saved before the dump
  minicap save DEVICE OUT    copy the dump off the device, checking its checksums
  minicap log DEVICE         what the capture kernel printed
  minicap receive SRC -o OUT rebuild a dump streamed on a serial line (minicap.target=serial)

Exit status: 0 success, 1 failure or refusal, 2 usage error.";

/// minicap - companion of the minicap crash-dump capture kernel.
///
/// Prepares a dump device for the capture kernel and reads back what it wrote. A dump device is
/// a whole disk (or an image file) carrying a minicap header in its first sector.
#[derive(Debug, Parser)]
#[command(name = "minicap", version, after_help = AFTER_HELP)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Prepare DEVICE to receive dumps.
    ///
    /// Writes a fresh header and zeroes the first 2 MiB of DEVICE (a whole disk, or an existing
    /// image file of at least 3 MiB), then prints the option to add to the capture kernel command
    /// line, minicap.device=<id>. Refuses a mounted disk, a partition, a disk carrying a partition
    /// table, file system, LVM, RAID or swap signature, and a dump that may not have been saved,
    /// unless --force.
    #[command(after_help = "Exit status: 0 formatted, 1 refused or failed, 2 usage error.")]
    Format {
        /// Block device or image file to prepare.
        device: PathBuf,
        /// Use this device id (32 hex digits) instead of a random one.
        #[arg(long, value_name = "HEX32", value_parser = parse_id)]
        id: Option<[u8; 16]>,
        /// Overwrite what DEVICE carries: a dump not saved yet, a partition table, a file
        /// system, an LVM, RAID or swap signature.
        #[arg(long)]
        force: bool,
    },
    /// Copy the dump on DEVICE to the file OUT and verify it.
    ///
    /// OUT is the dump as captured: an ELF vmcore, or a kdump-compressed file
    /// (minicap.format=kdump); crash and makedumpfile read both.
    ///
    /// The dump is checked against what the capture recorded: an XXH64 per chunk (damaged
    /// chunks are listed as byte ranges of the dump), or a SHA-256 of the whole dump
    /// (minicap.verify=sha256), or nothing (minicap.verify=none). The device is not modified.
    /// An incomplete dump (writing or failed) is copied only with --partial; then the chunks
    /// wholly written are verified.
    #[command(
        after_help = "Exit status: 0 saved (and the checksums matched), 1 nothing to save, \
                            refused, failed, checksum mismatch or damaged checksum table (OUT \
                            is kept), 2 usage error."
    )]
    Save {
        /// Dump device (block device or image file).
        device: PathBuf,
        /// File to write the vmcore to (created or overwritten).
        out: PathBuf,
        /// Also copy an incomplete (writing or failed) dump, as far as it was written.
        #[arg(long)]
        partial: bool,
    },
    /// Show the header of DEVICE.
    #[command(
        after_help = "Exit status: 0 the header was shown, 1 no valid minicap header or \
                            DEVICE unreadable, 2 usage error."
    )]
    Info {
        /// Dump device (block device or image file).
        device: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Print the capture kernel's console log stored on DEVICE.
    ///
    /// What the capture kernel printed on its console during the last capture, as far as it got.
    /// Control characters other than newline and tab are shown escaped (\x1b).
    #[command(
        after_help = "Exit status: 0 the log was printed, 1 no log stored, no valid \
                            minicap header or DEVICE unreadable, 2 usage error."
    )]
    Log {
        /// Dump device (block device or image file).
        device: PathBuf,
    },
    /// Print the triage text stored on DEVICE: the crashed kernel's log and registers.
    ///
    /// The capture kernel writes it before the dump, so it is there even when the dump failed
    /// or did not fit: the crashed kernel's release, crash time, every CPU's registers (the
    /// panic CPU first, when the log tells which) and its log as `makedumpfile --dump-dmesg`
    /// prints it. Control characters other than newline and tab are shown escaped (\x1b).
    #[command(
        after_help = "Exit status: 0 the text was printed, 1 no triage text stored, no valid \
                            minicap header or DEVICE unreadable, 2 usage error."
    )]
    Dmesg {
        /// Dump device (block device or image file).
        device: PathBuf,
    },

    // Crash-kernel loading (issue 10): `load`, `recommend`, `status`.
    /// Load minicap as the crash kernel, without kexec-tools.
    ///
    /// With a bzImage (minicap.bzImage, signed by sbsign or not) and --syscall auto, first
    /// kexec_file_load(2) (KEXEC_FILE_ON_CRASH): the kernel reads the file, checks its
    /// signature when it must (lockdown, Secure Boot), and builds the core headers and
    /// boot_params itself, with the options as the command line. When the kernel lacks that
    /// call or cannot take the image, and is not locked down, minicap falls back to
    /// kexec_load(2): it reads the crash region and RAM from /proc/iomem, each CPU's
    /// crash_notes and VMCOREINFO from /sys, the kernel text mapping from /proc/kcore; builds
    /// the ELF core headers as kexec-tools does, places the image (an ELF's PT_LOADs or the
    /// bzImage's payload), boot_params, command line and headers in the crash region,
    /// computes each segment's SHA-256, stores the digests in minicap's purgatory and loads
    /// everything with KEXEC_ON_CRASH. After a panic the purgatory checks every segment and
    /// starts minicap only if all match. A refused signature never falls back. --dry-run
    /// prints the plan.
    #[command(
        after_help = "Exit status: 0 loaded (or the dry run succeeded), 1 refused or failed, \
                      2 usage error."
    )]
    Load {
        /// The minicap image, an ELF or a bzImage, signed or not (`cargo xtask build` writes
        /// target/minicap.elf and target/minicap.bzImage); default: MINICAP_IMAGE of the
        /// configuration, else /usr/lib/minicap/minicap.bzImage if it exists, else
        /// /usr/lib/minicap/minicap.elf.
        #[arg(long, value_name = "PATH")]
        image: Option<PathBuf>,
        /// The purgatory for kexec_load (target/purgatory.elf); default: MINICAP_PURGATORY of
        /// the configuration, else purgatory.elf next to the image.
        #[arg(long, value_name = "PATH")]
        purgatory: Option<PathBuf>,
        /// Options for minicap, e.g. "minicap.device=<id> minicap.format=kdump"; replaces
        /// the options of the configuration file.
        #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
        append: Option<String>,
        /// The configuration file (KEY=value lines; see the shipped minicap.conf); default:
        /// /etc/minicap.conf if it exists.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The system call: auto (kexec_file_load with a bzImage, kexec_load when the kernel
        /// cannot take it or with an ELF), file (kexec_file_load only) or load (kexec_load
        /// only); default: MINICAP_SYSCALL of the configuration, else auto.
        #[arg(long, value_name = "SYSCALL", value_enum)]
        syscall: Option<SyscallChoice>,
        /// Print what would be loaded, load nothing.
        #[arg(long)]
        dry_run: bool,
        /// Test only: store a wrong SHA-256 for segment N (in address order, the purgatory's
        /// excluded), so that the purgatory refuses to start minicap.
        #[arg(long, value_name = "N", hide = true)]
        corrupt_digest: Option<usize>,
        /// Test only: damage the ELF core headers after building them, one defect per KIND
        /// (comma-separated for several): bad-magic, absurd-phnum, overlapping-loads,
        /// load-outside-ram, note-past-segment.
        #[arg(long, value_name = "KIND", value_delimiter = ',', hide = true)]
        test_corrupt_core_headers: Vec<CoreHeaderDefect>,
        /// Test only: leave elfcorehdr= off minicap's command line.
        #[arg(long, hide = true)]
        test_omit_elfcorehdr: bool,
        /// Read /proc and /sys under this directory instead of / (recorded systems, tests).
        #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Unload the crash kernel (whoever loaded it, with either system call).
    ///
    /// kexec_file_load with KEXEC_FILE_UNLOAD (which a locked-down kernel allows), or
    /// kexec_load with no segments on a kernel without kexec_file_load.
    ///
    /// Also removes /run/minicap/loaded, the record minicap load leaves for minicap status.
    #[command(
        after_help = "Exit status: 0 unloaded (or none was loaded), 1 refused, 2 usage error."
    )]
    Unload,
    /// Print the crashkernel= size minicap needs on this machine.
    ///
    /// Adds up the image, the purgatory slot, boot_params and the ELF core headers for this
    /// machine's CPUs and RAM, minicap's heap floor and the buffers it allocates for the
    /// chosen format and check (taken from --append), and compares with the reservation
    /// (/sys/kernel/kexec_crash_size). Every buffer is counted as if all were live at once.
    #[command(
        after_help = "Exit status: 0 printed, 1 failed (image or /proc/iomem unreadable), \
                      2 usage error."
    )]
    Recommend {
        /// The minicap image (ELF or bzImage); default: as for load.
        #[arg(long, value_name = "PATH")]
        image: Option<PathBuf>,
        /// The options minicap will be loaded with (format, verify, dump level); default: the
        /// configuration file's.
        #[arg(long, value_name = "OPTIONS", allow_hyphen_values = true)]
        append: Option<String>,
        /// The configuration file; default: /etc/minicap.conf if it exists.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Read /proc and /sys under this directory instead of / (recorded systems, tests).
        #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Show whether a crash kernel is loaded and by whom, the crash region, and the last capture.
    ///
    /// "Loaded by minicap" means the kernel reports a crash kernel and minicap load left its
    /// record (/run/minicap/loaded): the image (and whether the file changed since), the
    /// options and the time are shown. Loaded without a record: another loader (kexec -p).
    /// A record but nothing loaded: the record is stale (unloaded by another tool).
    /// With --device, the last capture recorded in the dump device's header: its state,
    /// crash time, how much was written, and the failure if any.
    #[command(after_help = "Exit status: 0 shown, 1 failed, 2 usage error.")]
    Status {
        /// The prepared dump device, to show the last capture.
        #[arg(long, value_name = "DEVICE")]
        device: Option<PathBuf>,
        /// Read /proc and /sys under this directory instead of / (recorded systems, tests).
        #[arg(long, value_name = "DIR", default_value = "/", hide = true)]
        root: PathBuf,
    },
    /// Rebuild a dump the capture kernel streamed on a serial line (minicap.target=serial).
    ///
    /// SOURCE is a file holding what the line carried, a serial device (set raw here; it
    /// stops after 25 s of silence), or tcp:HOST:PORT. The frames are checked (CRC, sequence
    /// numbers) and their data applied to VMCORE, which becomes the file `minicap save`
    /// would copy off a disk holding the same dump; the End frame's count and XXH64 of the
    /// data are verified. VMCORE.triage (the crashed kernel's log and registers), VMCORE.log
    /// (the capture kernel's log) and VMCORE.console (text between the frames) go beside it.
    #[command(
        after_help = "Exit status: 0 the dump is whole and verified, 1 a frame missing or \
                            damaged, no end frame, a failed capture or a checksum mismatch \
                            (what arrived is kept), 2 usage error."
    )]
    Receive {
        /// A file, a serial device, or tcp:HOST:PORT.
        source: String,
        /// File to write the vmcore to (created or overwritten).
        #[arg(short, long, value_name = "VMCORE")]
        out: PathBuf,
        /// Also write makedumpfile's flattened format to FLAT (`makedumpfile -R`).
        #[arg(long, value_name = "FLAT")]
        flattened: Option<PathBuf>,
    },
}

/// `--id`: exactly 32 hex digits, not all zero (reserved for "no id").
fn parse_id(text: &str) -> Result<[u8; 16], String> {
    let id = minicap_dumpheader::parse_device_id(text)
        .ok_or_else(|| "expected 32 hex digits".to_owned())?;
    if id == [0; 16] {
        return Err("the all-zero id is not allowed".to_owned());
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::error::ErrorKind;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("minicap").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_commands() {
        assert_eq!(
            parse(&["format", "/dev/vdb", "--force", "--id", &"ab".repeat(16)]).unwrap(),
            Command::Format {
                device: "/dev/vdb".into(),
                id: Some([0xab; 16]),
                force: true
            }
        );
        assert_eq!(
            parse(&["format", &format!("--id={}", "01".repeat(16)), "img"]).unwrap(),
            Command::Format {
                device: "img".into(),
                id: Some([1; 16]),
                force: false
            }
        );
        assert_eq!(
            parse(&["save", "--partial", "d", "o"]).unwrap(),
            Command::Save {
                device: "d".into(),
                out: "o".into(),
                partial: true
            }
        );
        assert_eq!(
            parse(&["info", "--", "--odd-name"]).unwrap(),
            Command::Info {
                device: "--odd-name".into(),
                json: false
            }
        );
        assert_eq!(
            parse(&["info", "--json", "d"]).unwrap(),
            Command::Info {
                device: "d".into(),
                json: true
            }
        );
        assert_eq!(
            parse(&["log", "d"]).unwrap(),
            Command::Log { device: "d".into() }
        );
        assert_eq!(
            parse(&["dmesg", "d"]).unwrap(),
            Command::Dmesg { device: "d".into() }
        );
    }

    #[test]
    fn parses_crash_load_commands() {
        assert_eq!(
            parse(&["load", "--dry-run", "--append", "minicap.device=ab -x"]).unwrap(),
            Command::Load {
                image: None,
                purgatory: None,
                append: Some("minicap.device=ab -x".into()),
                config: None,
                syscall: None,
                dry_run: true,
                corrupt_digest: None,
                test_corrupt_core_headers: Vec::new(),
                test_omit_elfcorehdr: false,
                root: "/".into(),
            }
        );
        assert_eq!(
            parse(&[
                "load",
                "--purgatory",
                "p.elf",
                "--corrupt-digest",
                "2",
                "--config",
                "c"
            ])
            .unwrap(),
            Command::Load {
                image: None,
                purgatory: Some("p.elf".into()),
                append: None,
                config: Some("c".into()),
                syscall: None,
                dry_run: false,
                corrupt_digest: Some(2),
                test_corrupt_core_headers: Vec::new(),
                test_omit_elfcorehdr: false,
                root: "/".into(),
            }
        );
        assert_eq!(
            parse(&[
                "load",
                "--test-corrupt-core-headers=load-outside-ram,note-past-segment",
                "--test-omit-elfcorehdr",
            ])
            .unwrap(),
            Command::Load {
                image: None,
                purgatory: None,
                append: None,
                config: None,
                syscall: None,
                dry_run: false,
                corrupt_digest: None,
                test_corrupt_core_headers: vec![
                    CoreHeaderDefect::LoadOutsideRam,
                    CoreHeaderDefect::NotePastSegment
                ],
                test_omit_elfcorehdr: true,
                root: "/".into(),
            }
        );
        for (word, choice) in [
            ("auto", SyscallChoice::Auto),
            ("file", SyscallChoice::File),
            ("load", SyscallChoice::Load),
        ] {
            let Command::Load { syscall, image, .. } =
                parse(&["load", "--syscall", word, "--image", "/minicap.bzImage"]).unwrap()
            else {
                panic!("not load")
            };
            assert_eq!(syscall, Some(choice), "{word}");
            assert_eq!(image, Some("/minicap.bzImage".into()));
        }
        assert_eq!(parse(&["unload"]).unwrap(), Command::Unload);
        assert_eq!(
            parse(&["recommend", "--image", "m.elf"]).unwrap(),
            Command::Recommend {
                image: Some("m.elf".into()),
                append: None,
                config: None,
                root: "/".into(),
            }
        );
        assert_eq!(
            parse(&["status", "--device", "d"]).unwrap(),
            Command::Status {
                device: Some("d".into()),
                root: "/".into(),
            }
        );
        for args in [
            &["load", "img"][..],
            &["status", "d"],
            &["recommend", "--dry-run"],
            &["unload", "--dry-run"],
            &["load", "--corrupt-digest", "x"],
            &["load", "--test-corrupt-core-headers=bad-magik"],
            &["load", "--syscall", "kexec"],
            &["load", "--syscall"],
        ] {
            assert_eq!(parse(args).unwrap_err().exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn help_and_version_are_not_errors_of_use() {
        for args in [
            &["--help"][..],
            &["-h"],
            &["help"],
            &["help", "format"],
            &["format", "--help"],
            &["save", "-h"],
        ] {
            assert_eq!(
                parse(args).unwrap_err().kind(),
                ErrorKind::DisplayHelp,
                "{args:?}"
            );
        }
        assert_eq!(
            parse(&["--version"]).unwrap_err().kind(),
            ErrorKind::DisplayVersion
        );
    }

    #[test]
    fn usage_errors() {
        for args in [
            &[][..],
            &["bogus"],
            &["format"],
            &["format", "a", "b"],
            &["format", "a", "--id"],
            &["format", "a", "--id", "xyz"],
            &["format", "a", "--id", &"0".repeat(32)],
            &["format", "a", "--partial"],
            &["save", "a"],
            &["save", "a", "b", "--force"],
            &["info"],
            &["info", "a", "--what"],
            &["log", "a", "--json"],
            &["dmesg"],
            &["dmesg", "a", "b"],
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
            assert!(e.use_stderr(), "{args:?}");
            assert!(
                !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion),
                "{args:?}"
            );
        }
    }
}

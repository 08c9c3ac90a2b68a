//! `minicap`: the Linux-side companion of the minicap capture kernel.
//!
//! `minicap format` prepares a dump device (the capture kernel writes only to a device carrying
//! its header), `minicap save` copies a dump off it after the reboot, `minicap info` shows the
//! header, `minicap log` prints the console log the capture kernel stored. The layout is
//! defined by the `minicap-dumpheader` crate.

mod commands;
mod device;
mod fmt_util;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "\
minicap - companion of the minicap crash-dump capture kernel

Usage:
  minicap format DEVICE [--id HEX32] [--force]
      Prepare DEVICE (a block device or an existing image file of at least 2 MiB)
      to receive dumps: write a fresh header and zero the first 1 MiB. Prints the
      option to add to the capture kernel command line, minicap.device=<id>.
        --id HEX32  use this id (32 hex digits) instead of a random one
        --force     overwrite a dump that may not have been saved yet

  minicap save DEVICE OUT [--partial]
      Copy the dump on DEVICE to the file OUT and verify its SHA-256.
      The device is not modified.
        --partial   also copy an incomplete (writing or failed) dump

  minicap info DEVICE
      Show the header of DEVICE.

  minicap log DEVICE
      Print the capture kernel's console log stored on DEVICE (what it printed
      on the serial console during the last capture, as far as it got).

  minicap help | --help | -h      show this text
  minicap --version               show the version

Exit status: 0 success, 1 failure or refusal, 2 usage error.
";

/// Short reminder printed after a usage error.
const SYNOPSIS: &str = "\
Usage: minicap format DEVICE [--id HEX32] [--force]
       minicap save DEVICE OUT [--partial]
       minicap info DEVICE
       minicap log DEVICE
Run `minicap --help` for details.
";

/// Why a command stopped; printed on stderr by `main`.
#[derive(Debug)]
pub struct Failure {
    /// Process exit status.
    code: u8,
    /// Text for stderr, without the program-name prefix.
    message: String,
}

impl Failure {
    /// The command ran but failed or refused (exit 1).
    pub fn fail(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    /// The command line was wrong (exit 2); the synopsis follows the message.
    fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: format!("{}\n{SYNOPSIS}", message.into()),
        }
    }
}

/// Parsed command line.
#[derive(Debug, PartialEq)]
enum Command {
    Help,
    Version,
    Format {
        device: PathBuf,
        id: Option<[u8; 16]>,
        force: bool,
    },
    Save {
        device: PathBuf,
        out: PathBuf,
        partial: bool,
    },
    Info {
        device: PathBuf,
    },
    Log {
        device: PathBuf,
    },
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    let result = parse_args(args).and_then(|cmd| match cmd {
        Command::Help => {
            print!("{USAGE}");
            Ok(())
        }
        Command::Version => {
            println!("minicap {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Command::Format { device, id, force } => commands::format(&device, id, force),
        Command::Save {
            device,
            out,
            partial,
        } => commands::save(&device, &out, partial),
        Command::Info { device } => commands::info(&device),
        Command::Log { device } => commands::log(&device),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("minicap: {}", f.message.trim_end());
            ExitCode::from(f.code)
        }
    }
}

/// Splits `args` (without the program name) into positionals and flags. Flags may come
/// anywhere after the subcommand; `--` makes everything after it positional, for paths that
/// start with `-`.
fn parse_args(args: Vec<OsString>) -> Result<Command, Failure> {
    let mut it = args.into_iter();
    let Some(sub) = it.next() else {
        return Err(Failure::usage("no command given"));
    };
    let sub = sub.to_string_lossy().into_owned();
    let mut positional: Vec<OsString> = Vec::new();
    let mut id_text: Option<String> = None;
    let mut force = false;
    let mut partial = false;
    let mut only_positional = false;
    while let Some(arg) = it.next() {
        let text = arg.to_string_lossy();
        if only_positional || !text.starts_with("--") {
            positional.push(arg);
            continue;
        }
        match &*text {
            "--" => only_positional = true,
            "--force" if sub == "format" => force = true,
            "--partial" if sub == "save" => partial = true,
            "--id" if sub == "format" => {
                let value = it
                    .next()
                    .ok_or_else(|| Failure::usage("--id needs a value (32 hex digits)"))?;
                id_text = Some(value.to_string_lossy().into_owned());
            }
            s if sub == "format" && s.starts_with("--id=") => {
                id_text = Some(s["--id=".len()..].to_owned());
            }
            s => return Err(Failure::usage(format!("unknown option {s} for `{sub}`"))),
        }
    }
    let want = |n: usize, what: &str| -> Result<(), Failure> {
        if positional.len() == n {
            Ok(())
        } else {
            Err(Failure::usage(format!(
                "`{sub}` takes {what}, got {} argument(s)",
                positional.len()
            )))
        }
    };
    let mut pos = positional.iter().map(PathBuf::from);
    let cmd = match sub.as_str() {
        "help" | "--help" | "-h" => Command::Help,
        "--version" | "-V" => Command::Version,
        "format" => {
            want(1, "DEVICE")?;
            let id = match id_text {
                None => None,
                Some(t) => Some(parse_id(&t)?),
            };
            Command::Format {
                device: pos.next().unwrap_or_default(),
                id,
                force,
            }
        }
        "save" => {
            want(2, "DEVICE and OUT")?;
            Command::Save {
                device: pos.next().unwrap_or_default(),
                out: pos.next().unwrap_or_default(),
                partial,
            }
        }
        "info" => {
            want(1, "DEVICE")?;
            Command::Info {
                device: pos.next().unwrap_or_default(),
            }
        }
        "log" => {
            want(1, "DEVICE")?;
            Command::Log {
                device: pos.next().unwrap_or_default(),
            }
        }
        other => return Err(Failure::usage(format!("unknown command `{other}`"))),
    };
    Ok(cmd)
}

fn parse_id(text: &str) -> Result<[u8; 16], Failure> {
    let id = minicap_dumpheader::parse_device_id(text)
        .ok_or_else(|| Failure::usage(format!("invalid --id {text:?}: expected 32 hex digits")))?;
    if id == [0; 16] {
        return Err(Failure::usage(
            "invalid --id: the all-zero id is not allowed",
        ));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, Failure> {
        parse_args(args.iter().map(OsString::from).collect())
    }

    #[test]
    fn parses_commands() {
        assert_eq!(parse(&["help"]).unwrap(), Command::Help);
        assert_eq!(parse(&["-h"]).unwrap(), Command::Help);
        assert_eq!(parse(&["--version"]).unwrap(), Command::Version);
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
                device: "--odd-name".into()
            }
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
        ] {
            let e = parse(args).unwrap_err();
            assert_eq!(e.code, 2, "{args:?}");
            assert!(e.message.contains("Usage:"), "{args:?}");
        }
    }
}

//! `minicap`: the Linux-side companion of the minicap capture kernel.
//!
//! `minicap format` prepares a dump device (the capture kernel writes only to a device carrying
//! its header), `minicap save` copies a dump off it after the reboot, `minicap info` shows the
//! header, `minicap log` prints the console log the capture kernel stored, `minicap dmesg` the
//! triage text (the crashed kernel's log and registers). The layout is defined by the
//! `minicap-dumpheader` crate.

mod cli;
mod config;
mod device;
mod dmesg;
mod escape;
mod fmt_util;
mod format;
mod info;
mod load;
mod log;
mod receive;
mod save;
mod signatures;
mod verify;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command, EXIT_FAILURE};
use crate::config::Config;
use crate::load::sysfs::SystemFiles;

fn main() -> ExitCode {
    // Usage errors exit with 2 and help and version with 0, from clap.
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Format { device, id, force } => format::format(&device, id, force),
        Command::Save {
            device,
            out,
            partial,
        } => save::save(&device, &out, partial),
        Command::Info { device, json } => info::info(&device, json),
        Command::Log { device } => log::log(&device),
        Command::Dmesg { device } => dmesg::dmesg(&device),
        // Crash-kernel loading (issue 10).
        Command::Load {
            image,
            purgatory,
            append,
            config,
            syscall,
            dry_run,
            corrupt_digest,
            test_corrupt_core_headers,
            test_omit_elfcorehdr,
            root,
        } => Config::read(config.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|file| {
                let chosen = file.resolve(image, purgatory, append, syscall);
                load::load(
                    &SystemFiles::under(root.clone()),
                    &load::LoadRequest {
                        image: &chosen.image,
                        purgatory: chosen.purgatory.as_deref(),
                        append: &chosen.options,
                        options_source: &chosen.options_source,
                        config: chosen.config.as_deref(),
                        syscall: chosen.syscall,
                        dry_run,
                        corrupt_digest,
                        test_damage: &load::corrupt::TestDamage {
                            core_headers: test_corrupt_core_headers,
                            omit_elfcorehdr: test_omit_elfcorehdr,
                        },
                        recorded: root != std::path::Path::new("/"),
                    },
                )
            }),
        Command::Unload => load::unload(&SystemFiles::under("/")),
        Command::Recommend {
            image,
            append,
            config,
            root,
        } => Config::read(config.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|file| {
                let chosen = file.resolve(image, None, append, None);
                load::recommend(&SystemFiles::under(root), &chosen.image, &chosen.options)
            }),
        Command::Status { device, root } => {
            load::status(&SystemFiles::under(root), device.as_deref())
        }
        Command::Receive {
            source,
            out,
            flattened,
        } => receive::receive(&source, &out, flattened.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the context chain: "cannot open X: No such file or directory".
            eprintln!("minicap: {}", format!("{e:#}").trim_end());
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

//! The kernel command line: `elfcorehdr=`, the `minicap.*` options and the parameter
//! splitter under both, as the capture kernel reads them from the zero page.

use minicap_bootinfo::cmdline::{self, elfcorehdr, memparse, MinicapOptions, Transport};

use super::{bucket, signature, Target};

pub const TARGET: Target = Target {
    name: "cmdline",
    about: "command line: parameter splitting, elfcorehdr=, memparse, minicap.* options",
    run,
    dictionary: &[
        b" ",
        b"\"",
        b"=",
        b" -- ",
        b"elfcorehdr=",
        b"0x",
        b"K@",
        b"M",
        b"G",
        b"minicap.target=",
        b"minicap.fallback=serial",
        b"minicap.serial=",
        b"minicap.format=kdump",
        b"minicap.after=",
        b"minicap.compress=",
        b"minicap.dump_level=",
        b"minicap.verify=",
        b"minicap.device=",
        b"serial",
        b"nvme",
        b"ahci",
        b"reboot",
        b"0123456789abcdef0123456789abcdef",
    ],
    max_len: 4096,
};

fn run(input: &[u8]) -> u64 {
    // Invalid UTF-8 is the zero page's problem (`from_bytes` rejects it); past that, keep the
    // input useful by replacing the bad bytes.
    let utf8 = cmdline::from_bytes(input).is_ok();
    let text = String::from_utf8_lossy(input);
    let mut params = 0usize;
    let mut parsed_sizes = 0usize;
    for p in cmdline::params(&text) {
        params += 1;
        if let Some(value) = p.value {
            parsed_sizes += usize::from(memparse(value).is_ok());
        }
    }
    let core = elfcorehdr(&text).map(|arg| arg.map(|a| a.size.is_some()));
    let mut warnings = 0usize;
    let options = MinicapOptions::parse(&text, |_| warnings += 1);
    let chosen = options.as_ref().ok().map(|o| {
        let t = o.transport();
        (
            t == Transport::Serial,
            o.format(t) as u8,
            o.dump_level(Transport::Disk),
        )
    });
    signature((
        utf8,
        bucket(params),
        bucket(parsed_sizes),
        core.map_err(|e| core::mem::discriminant(&e)),
        options.as_ref().map(|_| ()).map_err(|e| e.value.is_some()),
        chosen,
        bucket(warnings),
    ))
}

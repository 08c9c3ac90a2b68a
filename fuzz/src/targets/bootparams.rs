//! boot_params (the zero page) and the `setup_data` chain, as the capture kernel's hand-off
//! reads them: the input's first 4096 bytes are the zero page, and the whole input is
//! physical memory from address 0, where `setup_data` and the command line pointers lead.

use minicap_bootinfo::cmdline;
use minicap_bootinfo::{walk_e820_ext, walk_setup_data, BootParams, RangeSet};

use super::{bucket, read_at, signature, Target};

pub const TARGET: Target = Target {
    name: "bootparams",
    about: "boot_params zero page, e820 table, setup_data chain and SETUP_E820_EXT",
    run,
    dictionary: &[
        b"HdrS",
        &[1, 0, 0, 0],
        &[0x0f, 0x02],
        &[0x00, 0x10, 0, 0, 0, 0, 0, 0],
        &[20, 0, 0, 0],
    ],
    max_len: 16 << 10,
};

fn run(input: &[u8]) -> u64 {
    let params = match BootParams::parse(input) {
        Ok(p) => p,
        Err(e) => return signature(("parse", core::mem::discriminant(&e))),
    };
    let mut ram: RangeSet<256> = RangeSet::new();
    let mut insert_failures = 0usize;
    let mut e820 = 0usize;
    for entry in params.e820_entries() {
        e820 += 1;
        if let Some(end) = entry.end() {
            insert_failures += usize::from(ram.insert(entry.addr..end).is_err());
        }
    }
    let mut ext = 0usize;
    let ext_result = walk_e820_ext(
        params.setup_data(),
        |addr, buf| read_at(input, addr, buf),
        |entry| {
            ext += 1;
            if let Some(end) = entry.end() {
                let _ = ram.remove(entry.addr..end);
            }
        },
    );
    let mut nodes = 0usize;
    let walk_result = walk_setup_data(
        params.setup_data(),
        |addr, buf| read_at(input, addr, buf),
        |node| {
            nodes += 1;
            let _ = (node.data_addr(), node.is_indirect());
        },
    );
    // The command line, read where boot_params points, bounded by its size field.
    let size = usize::try_from(params.cmdline_size()).unwrap_or(usize::MAX);
    let cmdline_ok = usize::try_from(params.cmd_line_addr())
        .ok()
        .and_then(|at| input.get(at..))
        .map(|rest| &rest[..rest.len().min(size)])
        .map(|bytes| {
            let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
            cmdline::from_bytes(text).is_ok()
        });
    let _ = (
        params.protocol_version(),
        params.acpi_rsdp_addr(),
        ram.total(),
    );
    signature((
        bucket(e820),
        bucket(ext),
        bucket(nodes),
        insert_failures > 0,
        ext_result.map_err(|e| core::mem::discriminant(&e)),
        walk_result.map_err(|e| core::mem::discriminant(&e)),
        cmdline_ok,
    ))
}

//! The crashed kernel's ELF core headers (`elfcorehdr=`): the ELF header, program headers and
//! every PT_NOTE buffer, merged and walked as `/proc/vmcore` does, then the output layout.
//! The input is physical memory from address 0 and the headers start at 0, so a real vmcore
//! file's first bytes (whose PT_NOTE offsets are file offsets) are a valid input as they are.

use minicap_elfcore::{for_each_load_range, parse_core_headers, plan_vmcore};
use minicap_physmem::SliceMem;

use super::{bucket, signature, Target};

pub const TARGET: Target = Target {
    name: "elfcore",
    about: "ELF core headers, PT_NOTE buffers, notes, NT_PRSTATUS, VMCOREINFO note, layout",
    run,
    dictionary: &[
        b"\x7fELF\x02\x01\x01",
        b"CORE\0\0\0\0",
        b"VMCOREINFO\0\0",
        &[4, 0, 62, 0],
        &[1, 0, 0, 0, 7, 0, 0, 0],
        &[4, 0, 0, 0, 0, 0, 0, 0],
        &[0xff, 0xff],
        &[56, 0],
    ],
    max_len: 64 << 10,
};

fn run(input: &[u8]) -> u64 {
    let mem = SliceMem::new(0, input);
    let mut ranges = 0usize;
    let early = for_each_load_range(&mem, 0, |r| {
        ranges += 1;
        let _ = r.end - r.start;
    });
    let headers = match parse_core_headers(&mem, 0) {
        Ok(h) => h,
        Err(e) => {
            return signature((
                "error",
                core::mem::discriminant(&e),
                early.is_ok(),
                bucket(ranges),
            ))
        }
    };
    let vmcoreinfo = headers.vmcoreinfo_text().map(<[u8]>::len);
    let osrelease = headers.vmcoreinfo_value("OSRELEASE").is_some();
    let total = headers.total_load_bytes();
    let layout = plan_vmcore(&headers).map(|l| l.chunks.len());
    signature((
        bucket(headers.loads.len()),
        bucket(headers.cpus.len()),
        bucket(headers.notes.len()),
        vmcoreinfo.map(bucket),
        osrelease,
        headers
            .warnings
            .iter()
            .map(core::mem::discriminant)
            .collect::<Vec<_>>(),
        total == 0,
        layout.map(bucket).map_err(|e| core::mem::discriminant(&e)),
    ))
}

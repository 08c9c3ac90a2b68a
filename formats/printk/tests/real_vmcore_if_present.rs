//! The reader against a real Linux 6.1 vmcore and `makedumpfile --dump-dmesg` output of the
//! same file, **only if they are present** (an end-to-end run leaves them behind):
//! `$MINICAP_REAL_VMCORE_DIR` (default `/tmp/kdump-real`) holding `vmcore` (an ELF vmcore)
//! and `dmesg.txt` (makedumpfile's output for it). Skipped otherwise; the synthetic tests in
//! `synthetic_ring.rs` always run.

use std::ops::ControlFlow;

use minicap_printk::{for_each_log_record, DmesgFormat, LogLayout};
use minicap_realvmcore::{expected_dmesg, RealVmcore};
use minicap_vmcoreinfo::{OldMemory, VmcoreInfo};

#[test]
fn real_vmcore_log_matches_makedumpfile_if_present() {
    let (Some(vmcore), Some(expected)) = (RealVmcore::open_if_present(), expected_dmesg()) else {
        return;
    };
    let segments = vmcore.segments();
    let info = VmcoreInfo::new(vmcore.vmcoreinfo());
    let old = OldMemory::new(&vmcore, &segments, info.phys_base());
    let layout = LogLayout::from_vmcoreinfo(&info).unwrap();
    assert!(matches!(layout, LogLayout::Lockless(_)));
    let mut out = String::new();
    let summary = for_each_log_record(&old, &layout, |rec| {
        // makedumpfile 1.7.2 (the host's) prints no caller column.
        DmesgFormat::default().write(rec, &mut out).unwrap();
        ControlFlow::Continue(())
    })
    .unwrap();
    let expected = String::from_utf8(expected).unwrap();
    assert_eq!(summary.damaged, 0, "{summary:?}");
    assert!(summary.records > 100, "{summary:?}");
    for (n, (got, want)) in out.lines().zip(expected.lines()).enumerate() {
        assert_eq!(got, want, "line {}", n + 1);
    }
    assert_eq!(out.lines().count(), expected.lines().count());
    assert_eq!(out, expected);
    eprintln!(
        "{} records, identical to makedumpfile: {summary:?}",
        summary.records
    );
}

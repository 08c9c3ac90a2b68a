use super::*;
use crate::text::FixedString;

fn text(f: &Failure) -> String {
    f.to_string()
}

#[test]
fn every_failure_before_the_device_says_nothing_was_written() {
    let cases = [
        Failure::NoElfcorehdr,
        Failure::NoDevice {
            target: DumpTarget::Any,
        },
        Failure::AmbiguousDevice,
        Failure::OutOfMemoryForPageTables,
        Failure::iommu(0xfed9_0000, "the unit did not carry out a command"),
        Failure::CrashMemoryTooSmall {
            largest: 983_040,
            needed: 1 << 20,
        },
    ];
    for f in &cases {
        assert_eq!(f.effect(), Some(DeviceEffect::NothingWritten));
        assert!(text(f).ends_with("; nothing was written"), "{}", text(f));
    }
}

#[test]
fn corrupt_core_headers_name_the_defect() {
    let f = Failure::BadCoreHeaders {
        addr: 0x3eff_f000,
        error: ElfCoreError::OverlappingLoads {
            first: 5,
            first_range: (0x10_0000, 0x3cf0_0000),
            second: 7,
            second_range: (0x1e80_0000, 0x1f7d_a000),
        },
    };
    assert_eq!(f.code(), FailureCode::BadCoreHeaders);
    assert_eq!(
        ResultLine(&f).to_string(),
        "RESULT: failure [bad-core-headers]: ELF core headers at elfcorehdr=0x3efff000 are \
         unusable: ELF core headers: PT_LOAD #7 (0x1e800000-0x1f7da000) overlaps PT_LOAD #5 \
         (0x100000-0x3cf00000): the same memory described twice; nothing was written"
    );
    let f = Failure::NoElfcorehdr;
    assert_eq!(f.code(), FailureCode::NoElfcorehdr);
    assert!(
        text(&f).contains("not loaded as a crash kernel"),
        "{}",
        text(&f)
    );
}

#[test]
fn exact_texts_and_codes() {
    let f = Failure::CrashMemoryTooSmall {
        largest: 983_040,
        needed: 1_048_576,
    };
    assert_eq!(
        text(&f),
        "not enough usable crash-kernel memory: largest free range is 983040 bytes, need 1048576 (raise crashkernel=); nothing was written"
    );
    assert_eq!(f.code(), FailureCode::CrashMemoryTooSmall);

    let f = Failure::iommu(0xfed9_0000, "VT-d: timed out");
    assert_eq!(
        text(&f),
        "IOMMU: unit at 0xfed90000: VT-d: timed out; nothing was written"
    );
    assert_eq!(f.code(), FailureCode::Iommu);

    let f = Failure::DeviceTooSmall {
        device: DeviceName::display("virtio-blk 00:02.0 (modern), 4 MiB"),
        required: 1_082_843_136,
        capacity: 4 << 20,
    };
    assert_eq!(
        text(&f),
        "dump device virtio-blk 00:02.0 (modern), 4 MiB is too small: the dump needs 1082843136 bytes (1.0 GiB), the device has 4194304 bytes (4.0 MiB); nothing was written"
    );
    assert_eq!(f.code(), FailureCode::DeviceTooSmall);

    let f = Failure::DeviceIdMismatch { wanted: [0xab; 16] };
    assert_eq!(
        text(&f),
        "no disk has minicap device id abababababababababababababababab; nothing was written"
    );
    assert_eq!(f.code(), FailureCode::DeviceIdMismatch);

    let f = Failure::NoPreparedDevice { count: 2 };
    assert_eq!(f.code(), FailureCode::NoPreparedDevice);
    assert!(text(&f).starts_with("none of the 2 disk(s)"));

    let f = Failure::ElfcorehdrOutOfRange {
        addr: 0x3ef5_d000,
        size: u64::MAX - 10,
    };
    assert_eq!(f.code(), FailureCode::BadElfcorehdr);
    assert_eq!(
        text(&f),
        "invalid elfcorehdr=0xfffffffffffffff5@0x3ef5d000: the range does not fit the address space; nothing was written"
    );

    let f = Failure::UnsupportedBlockSize {
        device: DeviceName::display("virtio-blk 00:02.0 (modern)"),
        block_size: 8192,
    };
    assert_eq!(f.code(), FailureCode::UnsupportedBlockSize);
    assert!(text(&f).contains("8192-byte logical blocks"));
    assert!(text(&f).ends_with("; nothing was written"));
}

#[test]
fn the_first_header_write_leaves_the_dump_area_untouched() {
    let f = Failure::HeaderWrite {
        device: DeviceName::display("virtio-blk 00:02.0 (modern)"),
        error: Detail::display("write at byte 0x0 failed with virtio status 1"),
    };
    assert_eq!(f.code(), FailureCode::DeviceError);
    assert_eq!(f.effect(), Some(DeviceEffect::DumpAreaUntouched));
    assert_eq!(
        text(&f),
        "cannot write the minicap header to virtio-blk 00:02.0 (modern): write at byte 0x0 failed with virtio status 1; the dump area was not touched"
    );
}

#[test]
fn write_failures_name_the_step_and_claim_nothing_about_the_device() {
    let f = Failure::device(
        WriteStep::Memory {
            source: 0x1a00_0000,
            offset: 0x1a1f_f000,
        },
        "write at byte 0x1a1ff000 failed with virtio status 1",
    );
    assert_eq!(f.code(), FailureCode::DeviceError);
    assert_eq!(f.effect(), Some(DeviceEffect::PartialDump));
    assert_eq!(
        text(&f),
        "writing memory 0x1a000000 to byte 0x1a1ff000: write at byte 0x1a1ff000 failed with virtio status 1"
    );
    for (step, want) in [
        (
            WriteStep::VmcorePrefix { offset: 4096 },
            "writing the vmcore at byte 4096: e",
        ),
        (
            WriteStep::CheckpointFlush { percent: 30 },
            "flush after 30%: e",
        ),
        (
            WriteStep::CheckpointHeader { percent: 30 },
            "updating the header after 30%: e",
        ),
        (WriteStep::FinalFlush, "final flush: e"),
        (WriteStep::FinalHeader, "writing the final header: e"),
    ] {
        assert_eq!(text(&Failure::device(step, "e")), want);
    }
}

#[test]
fn result_line_carries_the_code() {
    let f = Failure::NoDevice {
        target: DumpTarget::Any,
    };
    assert_eq!(
        ResultLine(&f).to_string(),
        "RESULT: failure [no-device]: no virtio-blk, NVMe or AHCI disk on the PCI bus (minicap.target=any); nothing was written"
    );
    let f = Failure::NoDevice {
        target: DumpTarget::Nvme,
    };
    assert!(text(&f).starts_with("no NVMe disk on the PCI bus (minicap.target=nvme)"));
    let f = Failure::NoDevice {
        target: DumpTarget::Ahci,
    };
    assert!(text(&f).starts_with("no AHCI disk on the PCI bus (minicap.target=ahci)"));
    let f = Failure::CpuException {
        vector: 14,
        name: "page fault",
        rip: 0x3d00_1234,
    };
    assert_eq!(
        ResultLine(&f).to_string(),
        "RESULT: failure [cpu-exception]: CPU exception 14 (page fault) at RIP 0x3d001234; the capture stopped"
    );
    let f = Failure::Internal(FixedString::display("panicked at src/x.rs:1:1"));
    assert_eq!(f.code(), FailureCode::Internal);
    assert_eq!(f.effect(), None);
}

#[test]
fn a_long_driver_error_is_cut_not_lost() {
    let long = "x".repeat(400);
    let f = Failure::device(WriteStep::FinalFlush, &long);
    let t = text(&f);
    assert!(t.starts_with("final flush: xxx"));
    assert!(t.len() < 200);
}

//! The kdump path against the fake device of [`crate::writer::fakes`]: the device ends up holding exactly the file `write_kdump` produces for an
//! in-memory sink, behind the triage text, with a header that tells the truth.

#![allow(clippy::single_range_in_vec_init)] // one RAM range is the common case here

use super::*;
use crate::writer::fakes::{
    phys, Device, DropFrames, Env, OldRam, VecSink, OLD_BASE, OLD_PAGES, TRIAGE_TEXT,
};
use crate::writer::write_kdump_dump;
use crate::TimeLimit;
use minicap_dumpheader::{DumpFormat, DumpState, FailureCode, DUMP_OFFSET, TRIAGE_OFFSET};
use minicap_elfcore::LoadSegment;
use minicap_kdumpfile::Utsname;
use sha2::{Digest, Sha256};

const NOTES: &[u8] = b"fake notes: CORE and VMCOREINFO would be here; OSRELEASE=6.1.0-test\n";

fn loads() -> Vec<LoadSegment> {
    vec![LoadSegment {
        paddr: OLD_BASE,
        vaddr: 0xffff_8880_0000_0000 + OLD_BASE,
        memsz: OLD_PAGES * 4096,
        source: OLD_BASE,
        flags: 7,
    }]
}

fn info(ram: &[Range<u64>]) -> DumpInfo<'_> {
    DumpInfo {
        utsname: Utsname::new(["Linux", "guest", "6.1.0-test", "#1", "x86_64", "(none)"]),
        time: (1_700_000_000, 0),
        nr_cpus: 2,
        phys_base: 0,
        dump_level: 1,
        notes: NOTES,
        vmcoreinfo: Some(12..NOTES.len()),
        ram,
    }
}

fn expected_file<F: FrameFilter>(ram: &[Range<u64>], compress: Compress, filter: F) -> Vec<u8> {
    let phys = phys();
    let mem = OldRam(phys);
    let loads = loads();
    let pfn = Cell::new(0);
    let mut source = OldPages {
        old: OldMemory::new(&mem, &loads, None),
        filter,
        current_pfn: &pfn,
    };
    let mut sink = VecSink(Vec::new());
    let info = info(ram);
    let options = WriterOptions {
        cycle_bitmap_bytes: 4096,
    };
    let stats = match compress {
        Compress::Zlib => write_kdump(&mut sink, &mut source, &mut Zlib::new(), &info, options),
        Compress::Lzo => write_kdump(&mut sink, &mut source, &mut Lzo::new(), &info, options),
        Compress::None => write_kdump(&mut sink, &mut source, &mut NoCompression, &info, options),
    }
    .unwrap();
    assert_eq!(stats.file_len, sink.0.len() as u64);
    sink.0
}

struct Run {
    device: Device,
    env: Env,
    result: Result<KdumpSummary, Failure>,
}

fn run<F: FrameFilter>(
    depth: usize,
    compress: Compress,
    verify: Verification,
    filter: F,
    setup: impl FnOnce(&mut Device),
) -> Run {
    run_in(depth, compress, verify, filter, setup, |_| {})
}

/// [`run`], with `env_setup` applied to the environment first (its clock, its time limit).
fn run_in<F: FrameFilter>(
    depth: usize,
    compress: Compress,
    verify: Verification,
    filter: F,
    setup: impl FnOnce(&mut Device),
    env_setup: impl FnOnce(&mut Env),
) -> Run {
    let phys = phys();
    let mem = OldRam(phys.clone());
    let loads = loads();
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let mut device = Device::new(&phys, depth);
    setup(&mut device);
    let mut env = Env::new(&phys);
    env_setup(&mut env);
    let triage = env.triage();
    let mut header = DumpHeader::new_empty([7; 16], device.capacity(), "minicap test");
    header.format = DumpFormat::KdumpCompressed;
    header.dump_offset = DUMP_OFFSET;
    header.dump_length = OLD_PAGES * 4096 * 2;
    let name = DeviceName::display("fake disk");
    let dump = KdumpDump {
        info: info(&ram),
        old: OldMemory::new(&mem, &loads, None),
        filter,
        compress,
        device_name: &name,
        verify,
        options: WriterOptions {
            cycle_bitmap_bytes: 4096,
        },
    };
    let mut profile = Profile::new(0);
    let result = write_kdump_dump(
        &mut device,
        &mut env,
        &mut header,
        Some(&triage),
        dump,
        &mut profile,
    );
    Run {
        device,
        env,
        result,
    }
}

#[test]
fn the_device_holds_the_file_behind_the_triage_text() {
    for depth in [1, 4] {
        for compress in [Compress::None, Compress::Zlib, Compress::Lzo] {
            for verify in [
                Verification::Xxh64Chunks,
                Verification::Sha256,
                Verification::None,
            ] {
                let r = run(depth, compress, verify, KeepAll, |_| {});
                let summary = r.result.unwrap_or_else(|f| panic!("{f}\n{}", r.env.log));
                let expected =
                    expected_file(&[OLD_BASE..OLD_BASE + OLD_PAGES * 4096], compress, KeepAll);
                let h = r.device.header();
                let what = format!("depth {depth}, {compress}, {verify:?}");
                assert_eq!(h.state, DumpState::Complete, "{what}");
                assert_eq!(h.format, DumpFormat::KdumpCompressed);
                assert_eq!(h.dump_length, expected.len() as u64, "{what}");
                assert_eq!(h.written, h.dump_length);
                assert_eq!(summary.stats.file_len, h.dump_length);
                assert!(
                    r.device.dump(h.dump_length) == expected.as_slice(),
                    "{what}"
                );
                assert_eq!(&r.device.dump(8)[..8], b"KDUMP   ");
                assert_eq!(h.pages_ram, OLD_PAGES);
                assert_eq!(h.pages_dumped, summary.stats.dumped_pages);
                // Zero pages share one stored page at level 1.
                assert_eq!(summary.stats.zero_pages, OLD_PAGES / 3);
                let triage = usize::try_from(TRIAGE_OFFSET).unwrap();
                assert_eq!(h.triage_length as usize, TRIAGE_TEXT.len());
                assert!(r.device.disk[triage..].starts_with(TRIAGE_TEXT));
                match verify {
                    Verification::Sha256 => {
                        let sha: [u8; 32] = Sha256::digest(&expected).into();
                        assert_eq!(h.sha256, sha, "{what}");
                    }
                    Verification::Xxh64Chunks => {
                        assert_ne!(h.chunk_size, 0);
                        assert!(matches!(summary.verified, Verified::Chunks { .. }));
                    }
                    Verification::None => assert_eq!(summary.verified, Verified::None),
                }
                if depth > 1 && compress == Compress::None {
                    // Runs are gathered: far fewer writes than 4 KiB blocks.
                    assert!(r.device.largest_write > 4096, "{what}");
                    assert!(
                        (r.device.writes as u64) < expected.len() as u64 / 4096 / 4,
                        "{what}: {} writes for {} blocks",
                        r.device.writes,
                        expected.len() / 4096
                    );
                }
                assert!(
                    r.env.log.contains("kdump-compressed file of"),
                    "{}",
                    r.env.log
                );
            }
        }
    }
}

#[test]
fn filtered_frames_leave_the_file() {
    let first = OLD_BASE / 4096;
    let dropped = first + 100..first + 400;
    let r = run(
        4,
        Compress::Zlib,
        Verification::Sha256,
        DropFrames(dropped.clone()),
        |_| {},
    );
    let summary = r.result.unwrap();
    assert_eq!(summary.stats.filtered_pages, 300);
    assert_eq!(summary.stats.dumped_pages, OLD_PAGES - 300);
    let expected = expected_file(
        &[OLD_BASE..OLD_BASE + OLD_PAGES * 4096],
        Compress::Zlib,
        DropFrames(dropped),
    );
    let h = r.device.header();
    let got = r.device.dump(h.dump_length);
    let first = got.iter().zip(&expected).position(|(a, b)| a != b);
    assert!(
        got.len() == expected.len() && first.is_none(),
        "{} vs {} bytes, first difference at {first:?}",
        got.len(),
        expected.len()
    );
}

#[test]
fn a_full_device_keeps_the_triage_text_and_says_so() {
    let r = run(4, Compress::None, Verification::Xxh64Chunks, KeepAll, |d| {
        d.capacity = DUMP_OFFSET + (1 << 20)
    });
    let failure = r.result.unwrap_err();
    assert!(
        matches!(failure, Failure::DumpDeviceFull { .. }),
        "{failure}"
    );
    assert_eq!(failure.code(), FailureCode::DeviceTooSmall);
    let h = r.device.header();
    assert_eq!(h.state, DumpState::Failed);
    assert_eq!(h.failure_code, FailureCode::DeviceTooSmall);
    assert!(h.message_str().contains("is full"), "{}", h.message_str());
    assert_eq!(h.triage_length as usize, TRIAGE_TEXT.len());
    assert!(h.written <= 1 << 20);
}

#[test]
fn a_failed_write_is_reported_and_the_checkpoint_kept() {
    // Fails a write about three quarters into the file.
    let r = run(4, Compress::None, Verification::Xxh64Chunks, KeepAll, |d| {
        d.fail_at = Some(DUMP_OFFSET + (1200 << 10));
    });
    let failure = r.result.unwrap_err();
    assert_eq!(failure.code(), FailureCode::DeviceError);
    assert!(
        failure
            .to_string()
            .contains("writing the kdump file to byte"),
        "{failure}"
    );
    let h = r.device.header();
    assert_eq!(h.state, DumpState::Failed);
    assert!(
        h.written > 0,
        "no checkpoint before the failure:\n{}",
        r.env.log
    );
    assert!(h.written <= 1200 << 10);
    assert_eq!(h.triage_length as usize, TRIAGE_TEXT.len());
    assert!(r.env.log.contains("% of memory:"), "{}", r.env.log);
}

#[test]
fn the_time_limit_stops_the_file_and_keeps_what_was_written() {
    let clean = run(
        4,
        Compress::None,
        Verification::Xxh64Chunks,
        KeepAll,
        |_| {},
    );
    let file_len = clean.result.as_ref().unwrap().stats.file_len;
    // The fake clock moves 10 us per reading: the bound passes half way through the run.
    let limit = TimeLimit { seconds: 1 };
    let start = limit.limit_us() - clean.env.clock / 2;
    let r = run_in(
        4,
        Compress::None,
        Verification::Xxh64Chunks,
        KeepAll,
        |_| {},
        |env| {
            env.clock = start;
            env.time_limit = Some(limit);
        },
    );
    let failure = r.result.unwrap_err();
    assert_eq!(failure.code(), FailureCode::Timeout, "{failure}");
    let h = r.device.header();
    assert_eq!(h.state, DumpState::Failed);
    assert_eq!(h.failure_code, FailureCode::Timeout);
    assert!(
        h.message_str().contains("time limit"),
        "{}",
        h.message_str()
    );
    assert_eq!(h.triage_length as usize, TRIAGE_TEXT.len());
    assert!(
        h.written > 0 && h.written < file_len,
        "{} of {file_len}",
        h.written
    );
    // The page data written before the stop is the clean run's (the file's header blocks,
    // written last, are not final yet: compare from the first data page on).
    let data_start = 64 << 10;
    if h.written > data_start {
        let n = usize::try_from(h.written).unwrap();
        let d = usize::try_from(data_start).unwrap();
        let clean_file = clean.device.dump(file_len);
        assert_eq!(&r.device.dump(h.written)[d..n], &clean_file[d..n]);
    }
    assert!(
        r.env.log.contains("ran past its time limit"),
        "{}",
        r.env.log
    );
}

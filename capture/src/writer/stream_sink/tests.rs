//! The stream against a fake line that mixes console text in between frames: what a
//! receiver rebuilds from it is exactly the file the writers give an in-memory sink (the
//! disk path's file: see the kdump and filtered ELF tests), after the triage text and
//! before the log; a lost frame and a stalled line end in a typed failure.

#![allow(clippy::single_range_in_vec_init)] // one RAM range is the common case here

use super::*;
use crate::failure::DeviceName;
use crate::writer::elf_filtered::ElfFilterOptions;
use crate::writer::fakes::{
    phys, DropFrames, Env, OldRam, VecSink, OLD_BASE, OLD_PAGES, TRIAGE_TEXT,
};
use crate::writer::kdump::OldPages;
use crate::writer::KeepAll;
use core::ops::Range;
use minicap_bootinfo::cmdline::Compress;
use minicap_dumpheader::FailureCode;
use minicap_elfcore::{CoreHeaders, LoadSegment};
use minicap_kdumpfile::{write_kdump, Lzo};
use minicap_kdumpfile::{DumpInfo, Utsname, WriterOptions};
use minicap_serialstream::{scan, Data, Scan};
use minicap_vmcoreinfo::OldMemory;
use xxhash_rust::xxh64::xxh64;

const NOTES: &[u8] = b"fake notes: CORE and VMCOREINFO would be here; OSRELEASE=6.1.0-test\n";
const NOISE: &[u8] = b"minicap: a console line between frames\r\n";

#[derive(Debug)]
struct Stalled;

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the fake line stalled")
    }
}

/// A line that records what is sent, puts console text after every `noise_every`-th send,
/// and fails the sends `fail` selects (by index).
struct Line {
    wire: Vec<u8>,
    sends: usize,
    noise_every: usize,
    fail: fn(usize) -> bool,
}

impl Line {
    fn new(fail: fn(usize) -> bool) -> Self {
        Self {
            wire: NOISE.to_vec(),
            sends: 0,
            noise_every: 7,
            fail,
        }
    }
}

impl ByteOutput for Line {
    type Error = Stalled;
    fn send(&mut self, bytes: &[u8]) -> Result<(), Stalled> {
        let index = self.sends;
        self.sends += 1;
        if (self.fail)(index) {
            return Err(Stalled);
        }
        self.wire.extend_from_slice(bytes);
        if self.sends.is_multiple_of(self.noise_every) {
            self.wire.extend_from_slice(NOISE);
        }
        Ok(())
    }
}

/// What a receiver gets out of the wire.
#[derive(Default)]
struct Received {
    start: Option<Start>,
    triage: Vec<u8>,
    file: Vec<u8>,
    log: Vec<u8>,
    console: Vec<u8>,
    end: Option<(EndResult, u32, u64, u64, u64, String)>,
    missing: Vec<u32>,
    data_payloads: Vec<u8>,
    data_records: u64,
}

fn receive(wire: &[u8]) -> Received {
    let mut r = Received::default();
    let mut at = 0;
    let mut next_seq = 0;
    loop {
        match scan(&wire[at..], true) {
            Scan::Empty => break,
            Scan::NeedMore => unreachable!("at the end"),
            Scan::Damaged { damage, .. } => panic!("damaged frame: {}", damage.as_str()),
            Scan::Text { len } => {
                r.console.extend_from_slice(&wire[at..at + len]);
                at += len;
            }
            Scan::Frame { frame, len } => {
                r.missing.extend(next_seq..frame.seq);
                next_seq = frame.seq + 1;
                match frame.kind {
                    Kind::Start => r.start = Some(Start::decode(frame.payload).unwrap()),
                    Kind::Triage => r.triage.extend_from_slice(frame.payload),
                    Kind::Log => r.log.extend_from_slice(frame.payload),
                    Kind::Data => {
                        assert!(r.end.is_none() && r.log.is_empty(), "data after the log");
                        let data = Data::decode(frame.payload).unwrap();
                        let from = usize::try_from(data.offset).unwrap();
                        let to = from + data.bytes.len();
                        if r.file.len() < to {
                            r.file.resize(to, 0);
                        }
                        r.file[from..to].copy_from_slice(data.bytes);
                        r.data_payloads.extend_from_slice(frame.payload);
                        r.data_records += 1;
                    }
                    Kind::End => {
                        let e = End::decode(frame.payload).unwrap();
                        r.end = Some((
                            e.result,
                            e.failure_code,
                            e.file_size,
                            e.data_records,
                            e.data_xxh64,
                            e.message.to_string(),
                        ));
                    }
                }
                at += len;
            }
        }
    }
    r
}

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

const OPTIONS: WriterOptions = WriterOptions {
    cycle_bitmap_bytes: 4096,
};

/// The kdump-compressed file in memory, as the disk path's tests build it.
fn kdump_file<F: FrameFilter>(filter: F) -> Vec<u8> {
    let mem = OldRam(phys());
    let loads = loads();
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let pfn = Cell::new(0);
    let mut source = OldPages {
        old: OldMemory::new(&mem, &loads, None),
        filter,
        current_pfn: &pfn,
    };
    let mut sink = VecSink(Vec::new());
    write_kdump(
        &mut sink,
        &mut source,
        &mut Lzo::new(),
        &info(&ram),
        OPTIONS,
    )
    .unwrap();
    sink.0
}

/// Streams the kdump file on `line`.
fn stream<F: FrameFilter>(line: &mut Line, filter: F) -> (Result<StreamSummary, Failure>, Env) {
    let phys = phys();
    let mem = OldRam(phys.clone());
    let loads = loads();
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let mut env = Env::new(&phys);
    let mut triage = env.triage();
    let name = DeviceName::display("serial 0x2f8");
    let dump = KdumpDump {
        info: info(&ram),
        old: OldMemory::new(&mem, &loads, None),
        filter,
        compress: Compress::Lzo,
        device_name: &name,
        verify: minicap_dumpheader::Verification::None,
        options: OPTIONS,
    };
    let target = StreamTarget {
        name: &name,
        crash_time: 1_700_000_000,
    };
    let mut profile = Profile::new(0);
    let result = stream_kdump(
        line,
        &mut env,
        target,
        Some(&mut triage),
        dump,
        &mut profile,
    );
    (result, env)
}

#[test]
fn the_receiver_rebuilds_the_disk_paths_kdump_file() {
    let mut line = Line::new(|_| false);
    let (result, env) = stream(
        &mut line,
        DropFrames(OLD_BASE / 4096 + 10..OLD_BASE / 4096 + 90),
    );
    let summary = result.unwrap();
    let expected = kdump_file(DropFrames(OLD_BASE / 4096 + 10..OLD_BASE / 4096 + 90));
    let got = receive(&line.wire);
    assert_eq!(got.missing, Vec::<u32>::new());
    assert_eq!(
        got.start,
        Some(Start {
            format: StreamFormat::KdumpCompressed,
            page_size: 4096,
            crash_time: 1_700_000_000,
            planned_size: 0,
        })
    );
    assert_eq!(got.triage, TRIAGE_TEXT);
    assert!(got.file == expected, "the rebuilt file differs");
    let (result, code, size, records, hash, message) = got.end.unwrap();
    assert_eq!(
        (result, code, message.as_str()),
        (EndResult::Complete, 0, "")
    );
    assert_eq!(size, expected.len() as u64);
    assert_eq!(records, got.data_records);
    assert_eq!(hash, xxh64(&got.data_payloads, 0));
    assert_eq!(
        (summary.file_len, summary.data_records, summary.data_xxh64),
        (size, records, hash)
    );
    // Block 0 goes twice (first with its "incomplete" flag); nothing else is needed twice
    // but the bitmaps' blocks, so the stream stays close to the file's size.
    assert!(summary.wire_bytes < expected.len() as u64 * 11 / 10 + 64 * 1024);
    // The console text in between is kept aside, whole.
    assert!(!got.console.is_empty());
    assert!(got.console.chunks(NOISE.len()).all(|c| c == NOISE));
    // The log went at the end, with the lines said while streaming.
    let log = String::from_utf8(got.log).unwrap();
    assert!(log.contains("stream: start and 1 triage frame(s) sent on serial 0x2f8"));
    assert!(log.contains("% of memory: "), "{log}");
    assert!(log.contains("kdump-compressed file of"));
    assert_eq!(log, env.log[env.log.len() - log.len()..]);
}

#[test]
fn a_lost_frame_ends_the_stream_as_failed_and_the_receiver_sees_the_gap() {
    // Send 40 (a Data frame) is lost; the line works again for the log and the End.
    let mut line = Line::new(|i| i == 40);
    let (result, env) = stream(&mut line, KeepAll);
    let failure = result.unwrap_err();
    assert!(matches!(
        failure,
        Failure::DeviceError {
            step: WriteStep::KdumpFile { .. },
            ..
        }
    ));
    assert!(env.log.contains("the fake line stalled"), "{}", env.log);
    let got = receive(&line.wire);
    assert_eq!(got.missing, [40]);
    assert_eq!(got.triage, TRIAGE_TEXT);
    let (result, code, _, records, _, message) = got.end.unwrap();
    assert_eq!(result, EndResult::Failed);
    assert_eq!(code, FailureCode::DeviceError.to_raw());
    assert!(message.contains("the fake line stalled"), "{message}");
    // The End frame counts the lost frame: a receiver knows it did not get them all.
    assert_eq!(records, got.data_records + 1);
}

#[test]
fn a_stalled_line_is_a_typed_failure_before_any_data() {
    let mut line = Line::new(|_| true);
    let (result, _) = stream(&mut line, KeepAll);
    assert!(matches!(result, Err(Failure::TriageWrite { .. })));
    assert_eq!(line.wire, NOISE);
}

#[test]
fn the_filtered_elf_vmcore_streams_as_the_disk_path_writes_it() {
    let phys = phys();
    let mem = OldRam(phys.clone());
    let core = CoreHeaders {
        header_size: 64,
        e_ident: [0; 16],
        e_entry: 0,
        e_flags: 0,
        loads: loads(),
        notes: NOTES.to_vec(),
        cpus: Vec::new(),
        vmcoreinfo: Some(12..NOTES.len()),
        warnings: Vec::new(),
    };
    let ram = [OLD_BASE..OLD_BASE + OLD_PAGES * 4096];
    let elf = || FilteredElf {
        core: &core,
        ram: &ram,
        old: OldMemory::new(&mem, &core.loads, None),
        filter: DropFrames(OLD_BASE / 4096 + 300..OLD_BASE / 4096 + 400),
        dump_level: 1,
        options: ElfFilterOptions { cycle_frames: 128 },
    };
    let mut expected = elf();
    let layout = expected.count().unwrap();
    let mut file = VecSink(Vec::new());
    expected.write(&mut file, &layout, &Cell::new(0)).unwrap();

    let mut env = Env::new(&phys);
    let mut line = Line::new(|_| false);
    let name = DeviceName::display("serial 0x3f8");
    let target = StreamTarget {
        name: &name,
        crash_time: 0,
    };
    let mut profile = Profile::new(0);
    let summary =
        stream_filtered_elf(&mut line, &mut env, target, None, elf(), &mut profile).unwrap();
    let got = receive(&line.wire);
    assert_eq!(got.start.unwrap().format, StreamFormat::ElfVmcore);
    assert!(got.triage.is_empty());
    assert!(got.file == file.0, "the rebuilt file differs");
    assert_eq!(summary.file_len, layout.file_len);
    assert_eq!(got.end.unwrap().2, layout.file_len);
}

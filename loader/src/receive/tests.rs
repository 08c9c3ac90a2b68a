//! `minicap receive` on streams built with the encoder the capture kernel uses: a whole
//! stream between console text, then one with a damaged frame, a lost frame, no End, a
//! failed capture; and the flattened copy read back record by record.

use super::*;
use minicap_serialstream::{Encoder, StreamFormat, END_FIXED_LEN, END_MESSAGE_MAX};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory for one test.
fn scratch() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "minicap-receive-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The file the records build, and the stream carrying it: a file of 3 blocks written out
/// of order with block 0 rewritten last (as the kdump writer does), the triage text first
/// and the log last, console text in between.
struct Wire {
    bytes: Vec<u8>,
    file: Vec<u8>,
    /// Where each frame starts in `bytes`.
    frame_at: Vec<usize>,
}

fn wire(result: EndResult) -> Wire {
    let block = |b: u8| vec![b; 4096];
    let writes: Vec<(u64, Vec<u8>)> = vec![
        (0, block(1)),
        (8192, block(3)),
        (4096, block(2)),
        (12288, b"tail".to_vec()),
        (0, block(9)),
    ];
    let mut file = vec![0u8; 12288 + 4];
    for (offset, bytes) in &writes {
        let at = usize::try_from(*offset).unwrap();
        file[at..at + bytes.len()].copy_from_slice(bytes);
    }
    let mut enc = Encoder::new();
    let mut bytes = b"minicap: starting\r\n".to_vec();
    let mut frame_at = Vec::new();
    let mut push = |bytes: &mut Vec<u8>, frame: &[u8]| {
        frame_at.push(bytes.len());
        bytes.extend_from_slice(frame);
    };
    let start = Start {
        format: StreamFormat::KdumpCompressed,
        page_size: 4096,
        crash_time: 1_700_000_000,
        planned_size: 0,
    };
    push(
        &mut bytes,
        enc.frame(Kind::Start, &[&start.encode()]).unwrap(),
    );
    push(
        &mut bytes,
        enc.frame(Kind::Triage, &[b"Kernel panic - test\n"])
            .unwrap(),
    );
    for (i, (offset, data)) in writes.iter().enumerate() {
        push(
            &mut bytes,
            enc.frame(Kind::Data, &[&offset.to_le_bytes(), data])
                .unwrap(),
        );
        if i == 2 {
            bytes.extend_from_slice(b"minicap:  50% of memory\r\n");
        }
    }
    push(
        &mut bytes,
        enc.frame(Kind::Log, &[b"minicap: log line\n"]).unwrap(),
    );
    let end = End {
        result,
        failure_code: if result == EndResult::Failed { 14 } else { 0 },
        file_size: file.len() as u64,
        data_records: enc.data_records(),
        data_xxh64: enc.data_xxh64(),
        message: if result == EndResult::Failed {
            "the line stalled"
        } else {
            ""
        },
    };
    let mut end_bytes = [0u8; END_FIXED_LEN + END_MESSAGE_MAX];
    let n = end.encode(&mut end_bytes);
    push(
        &mut bytes,
        enc.frame(Kind::End, &[&end_bytes[..n]]).unwrap(),
    );
    bytes.extend_from_slice(b"minicap: RESULT: success\r\n");
    Wire {
        bytes,
        file,
        frame_at,
    }
}

/// The problems `bytes` have, read in one piece.
fn problems_of(bytes: &[u8]) -> Vec<String> {
    let mut r = Reassembly::new(File::create(scratch().join("v")).unwrap(), None);
    r.read_all(&mut &bytes[..]).unwrap();
    r.problems()
}

/// Runs `minicap receive` on `bytes` in a file: (result, vmcore path).
fn run(bytes: &[u8], flattened: bool) -> (Result<()>, PathBuf) {
    let dir = scratch();
    let source = dir.join("serial.out");
    std::fs::write(&source, bytes).unwrap();
    let out = dir.join("vmcore");
    let flat = dir.join("vmcore.flat");
    let result = receive(
        source.to_str().unwrap(),
        &out,
        flattened.then_some(flat.as_path()),
    );
    (result, out)
}

fn error_text(result: Result<()>) -> String {
    format!("{:#}", result.unwrap_err())
}

#[test]
fn a_whole_stream_between_console_text() {
    let w = wire(EndResult::Complete);
    let (result, out) = run(&w.bytes, true);
    result.unwrap();
    assert!(std::fs::read(&out).unwrap() == w.file, "the vmcore differs");
    assert_eq!(
        std::fs::read(beside(&out, ".triage")).unwrap(),
        b"Kernel panic - test\n"
    );
    assert_eq!(
        std::fs::read(beside(&out, ".log")).unwrap(),
        b"minicap: log line\n"
    );
    // Text after the End frame is not read: the kernel's last lines are on its console.
    assert_eq!(
        std::fs::read(beside(&out, ".console")).unwrap(),
        b"minicap: starting\r\nminicap:  50% of memory\r\n"
    );
    // The flattened copy: header, the records in stream order, the end mark.
    let flat = std::fs::read(beside(&out, ".flat")).unwrap();
    assert_eq!(&flat[..12], b"makedumpfile");
    assert_eq!(&flat[16..24], &1i64.to_be_bytes());
    assert_eq!(&flat[24..32], &1i64.to_be_bytes());
    let mut rebuilt = Vec::new();
    let mut at = 4096;
    loop {
        let offset = i64::from_be_bytes(flat[at..at + 8].try_into().unwrap());
        let size = i64::from_be_bytes(flat[at + 8..at + 16].try_into().unwrap());
        at += 16;
        if offset == -1 && size == -1 {
            break;
        }
        let (offset, size) = (
            usize::try_from(offset).unwrap(),
            usize::try_from(size).unwrap(),
        );
        if rebuilt.len() < offset + size {
            rebuilt.resize(offset + size, 0);
        }
        rebuilt[offset..offset + size].copy_from_slice(&flat[at..at + size]);
        at += size;
    }
    assert_eq!(at, flat.len());
    assert!(
        rebuilt == w.file,
        "the flattened records build another file"
    );
}

#[test]
fn a_stream_read_in_small_pieces() {
    // A serial line delivers a few bytes at a time: frames cut across reads.
    struct Trickle<'a>(&'a [u8]);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.0.len().min(buf.len()).min(7);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let w = wire(EndResult::Complete);
    let dir = scratch();
    let mut r = Reassembly::new(File::create(dir.join("v")).unwrap(), None);
    r.read_all(&mut Trickle(&w.bytes)).unwrap();
    assert!(r.problems().is_empty(), "{:?}", r.problems());
    assert_eq!(r.data_records, 5);
    assert_eq!(std::fs::read(dir.join("v")).unwrap(), w.file);
}

#[test]
fn a_damaged_frame_is_named_and_fails() {
    let w = wire(EndResult::Complete);
    let mut bytes = w.bytes.clone();
    // A bit flipped inside frame 3's data.
    bytes[w.frame_at[3] + 100] ^= 0x04;
    let (result, out) = run(&bytes, false);
    let text = error_text(result);
    assert!(text.contains("not whole"), "{text}");
    let dir = out.parent().unwrap();
    // Frames before and after it still arrive.
    assert_eq!(
        std::fs::read(beside(&out, ".log")).unwrap(),
        b"minicap: log line\n"
    );
    let mut r = Reassembly::new(File::create(dir.join("again")).unwrap(), None);
    r.read_all(&mut bytes.as_slice()).unwrap();
    let problems = r.problems();
    assert!(
        problems.contains(&"frame 3 missing".to_string()),
        "{problems:?}"
    );
    assert!(
        problems.contains(&format!(
            "damaged frame at byte {} of the stream (CRC mismatch, claims to be frame 3)",
            w.frame_at[3]
        )),
        "{problems:?}"
    );
    assert!(problems
        .iter()
        .any(|p| p.contains("data frames received, the end frame counts")));
    // The frame's remains are not console text.
    assert!(!r.console.windows(4).any(|w| w == [3; 4]));
    assert!(r.skipped_after_damage > 4000);
}

#[test]
fn a_lost_frame_and_a_missing_end() {
    let w = wire(EndResult::Complete);
    let mut lost = w.bytes[..w.frame_at[4]].to_vec();
    lost.extend_from_slice(&w.bytes[w.frame_at[5]..]);
    let text = error_text(run(&lost, false).0);
    assert!(text.contains("not whole"), "{text}");
    let problems = problems_of(&lost);
    assert!(
        problems.contains(&"frame 4 missing".to_string()),
        "{problems:?}"
    );

    let cut = &w.bytes[..w.frame_at[8]];
    let (result, out) = run(cut, false);
    assert!(result.is_err());
    assert_eq!(
        problems_of(cut),
        ["the stream ended without its end frame, after frame 7"]
    );
    // What arrived is kept.
    assert_eq!(
        std::fs::read(beside(&out, ".triage")).unwrap(),
        b"Kernel panic - test\n"
    );
}

#[test]
fn a_failed_capture_fails_with_its_message() {
    let w = wire(EndResult::Failed);
    let (result, out) = run(&w.bytes, false);
    assert!(result.is_err());
    assert_eq!(
        problems_of(&w.bytes),
        ["the capture FAILED (code 14): the line stalled"]
    );
    assert!(std::fs::read(&out).unwrap() == w.file);
}

//! The flattened form of a file, rebuilt by the real `makedumpfile -R` (skipped if
//! makedumpfile is not installed), must equal the file written directly; and a reader of
//! the records written here rebuilds it too (always runs).

#![allow(clippy::cast_possible_truncation)]

use std::convert::Infallible;
use std::io::Write;
use std::ops::Range;
use std::process::{Command, Stdio};

use minicap_kdumpfile::{
    write_kdump, DumpInfo, Flattened, PageSource, Sink, Stream, Utsname, WriterOptions, Zlib,
    FLAT_HEADER_SIZE,
};

struct Pattern;

impl PageSource for Pattern {
    type Error = ();
    fn read_page(&mut self, pfn: u64, page: &mut [u8; 4096]) -> Result<(), ()> {
        // Mostly zero pages (shared), so that the test is quick.
        match pfn % 64 {
            1 => page
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = (i as u64 ^ pfn) as u8),
            2 => page
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = ((i as u64 * 2_654_435_761) >> 7 ^ pfn) as u8),
            _ => page.fill(0),
        }
        Ok(())
    }
}

#[derive(Default)]
struct File(Vec<u8>);

impl Sink for File {
    type Error = Infallible;
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Infallible> {
        let end = offset as usize + bytes.len();
        if self.0.len() < end {
            self.0.resize(end, 0);
        }
        self.0[offset as usize..end].copy_from_slice(bytes);
        Ok(())
    }
}

#[derive(Default)]
struct Bytes(Vec<u8>);

impl Stream for Bytes {
    type Error = Infallible;
    fn append(&mut self, bytes: &[u8]) -> Result<(), Infallible> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

const NOTES: &[u8] = b"notes...VMCOREINFO-TEXT\n";

fn write<S: Sink>(sink: &mut S, ram: &[Range<u64>]) {
    let info = DumpInfo {
        utsname: Utsname::new(["Linux", "h", "6.1.0", "#1", "x86_64", ""]),
        time: (1, 0),
        nr_cpus: 1,
        phys_base: 0,
        dump_level: 1,
        notes: NOTES,
        vmcoreinfo: Some(8..NOTES.len()),
        ram,
    };
    let options = WriterOptions {
        cycle_bitmap_bytes: 4096,
    };
    assert!(write_kdump(sink, &mut Pattern, &mut Zlib::new(), &info, options).is_ok());
}

fn be64(b: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn flattened_rebuilds_the_file() {
    // 160 MiB of RAM in two ranges: several cycles of 128 MiB.
    let ram = [0x10_0000..0x800_0000, 0x900_0000..0xa10_0000];
    let mut direct = File::default();
    write(&mut direct, &ram);
    let mut flat = Flattened::start(Bytes::default()).unwrap();
    write(&mut flat, &ram);
    let flat = flat.finish().unwrap().0;

    // The records, read back here.
    assert_eq!(&flat[..13], b"makedumpfile\0");
    assert_eq!((be64(&flat, 16), be64(&flat, 24)), (1, 1));
    let mut rebuilt = File::default();
    let mut at = FLAT_HEADER_SIZE;
    loop {
        let (offset, size) = (be64(&flat, at), be64(&flat, at + 8));
        at += 16;
        if offset == -1 && size == -1 {
            break;
        }
        let _ = rebuilt.write(offset as u64, &flat[at..at + size as usize]);
        at += size as usize;
    }
    assert_eq!(at, flat.len());
    assert!(rebuilt.0 == direct.0);

    // The real tool.
    if Command::new("makedumpfile").arg("-v").output().is_err() {
        eprintln!("makedumpfile not installed: -R check skipped");
        return;
    }
    let out = std::env::temp_dir().join(format!("minicap-flat-{}.kdump", std::process::id()));
    let mut child = Command::new("makedumpfile")
        .arg("-R")
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&flat).unwrap();
    let status = child.wait_with_output().unwrap();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let from_tool = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert_eq!(from_tool.len(), direct.0.len());
    assert!(
        from_tool == direct.0,
        "makedumpfile -R rebuilt a different file"
    );
}

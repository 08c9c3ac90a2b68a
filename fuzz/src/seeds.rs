//! `minicap-fuzz make-seeds`: writes the seed corpus that is not typed by hand. Headers and
//! streams come from the crates' own encoders; ELF core headers, VMCOREINFO and the printk
//! ring come from the real vmcore of an end-to-end run (skipped, with a note, if absent).
//! The printk seed keeps only the bytes the walker read for the first records, so it stays
//! a few KiB.

use std::cell::RefCell;
use std::fs;
use std::io;
use std::ops::ControlFlow;
use std::path::Path;

use minicap_dumpheader::{DumpFormat, DumpHeader, DumpState};
use minicap_elfcore::LoadSegment;
use minicap_physmem::{PhysMem, PhysMemError};
use minicap_printk::{for_each_log_record, LogLayout};
use minicap_realvmcore::RealVmcore;
use minicap_serialstream::{Encoder, End, EndResult, Kind, Start, StreamFormat};
use minicap_vmcoreinfo::{OldMemory, VmcoreInfo};

use crate::targets::printk;

/// Records the printk seed keeps.
const PRINTK_RECORDS: usize = 6;

/// Writes every generated seed under `corpus` (`corpus/<target>/<name>`).
pub fn make_seeds(corpus: &Path) -> io::Result<()> {
    let write = |target: &str, name: &str, bytes: &[u8]| -> io::Result<()> {
        let dir = corpus.join(target);
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(name), bytes)?;
        println!("{target}/{name}: {} bytes", bytes.len());
        Ok(())
    };
    let empty = DumpHeader::new_empty([0x5a; 16], 1 << 30, "minicap format");
    write("dumpheader", "empty", &empty.encode())?;
    let mut complete = empty.clone();
    complete.state = DumpState::Complete;
    complete.format = DumpFormat::KdumpCompressed;
    complete.dump_length = 1 << 20;
    complete.written = 1 << 20;
    complete.set_osrelease("6.1.0-57-cloud-amd64");
    complete.set_message("Kernel panic - not syncing: sysrq triggered crash");
    complete.validate().map_err(io::Error::other)?;
    write("dumpheader", "complete", &complete.encode())?;

    let image = bzimage()?;
    write("bzimage", "built", &image)?;
    // Its headers alone: the payload the setup header promises is missing.
    write("bzimage", "headers-only", &image[..0x400])?;

    write("serialstream", "whole", &stream(false))?;
    write("serialstream", "damaged", &stream(true))?;

    let Some(real) = RealVmcore::open_if_present() else {
        println!("no real vmcore: elfcore, vmcoreinfo and printk seeds not written");
        return Ok(());
    };
    let vmcoreinfo = real.vmcoreinfo().to_vec();
    write("vmcoreinfo", "real-6.1", &vmcoreinfo)?;
    let short: Vec<u8> = vmcoreinfo
        .split_inclusive(|&b| b == b'\n')
        .take(12)
        .flatten()
        .copied()
        .collect();
    write("vmcoreinfo", "first-lines", &short)?;

    let head = real_file_head(&real)?;
    write("elfcore", "real-6.1", &head)?;
    write("elfcore", "headers-only", &head[..64 + 5 * 56])?;

    write("printk", "real-6.1", &printk_seed(&real, &vmcoreinfo)?)?;
    write("printk", "no-memory", &printk::join(&vmcoreinfo, &[]))?;
    Ok(())
}

/// A stream as the capture kernel sends it, console text around the frames.
fn stream(damaged: bool) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut out = b"minicap: capturing\r\n".to_vec();
    let mut frame = |kind: Kind, parts: &[&[u8]], out: &mut Vec<u8>| {
        out.extend_from_slice(enc.frame(kind, parts).expect("a small frame"));
    };
    let start = Start {
        format: StreamFormat::KdumpCompressed,
        page_size: 4096,
        crash_time: 1_764_000_000,
        planned_size: 8192,
    };
    frame(Kind::Start, &[&start.encode()], &mut out);
    frame(Kind::Triage, &[b"<0>Kernel panic\n"], &mut out);
    frame(Kind::Data, &[&0u64.to_le_bytes(), b"KDUMP   "], &mut out);
    out.extend_from_slice(b"console line\n");
    frame(Kind::Data, &[&4096u64.to_le_bytes(), &[0xab; 64]], &mut out);
    frame(Kind::Log, &[b"minicap: done\n"], &mut out);
    let end = End {
        result: EndResult::Complete,
        failure_code: 0,
        file_size: 8192,
        data_records: 2,
        data_xxh64: 0,
        message: "",
    };
    let mut buf =
        [0u8; minicap_serialstream::END_FIXED_LEN + minicap_serialstream::END_MESSAGE_MAX];
    let n = end.encode(&mut buf);
    frame(Kind::End, &[&buf[..n]], &mut out);
    if damaged {
        // A bit flipped in the second Data frame's payload, and the stream cut inside End.
        let at = out.len() / 2;
        out[at] ^= 0x10;
        out.truncate(out.len() - 10);
    }
    out
}

/// The vmcore file up to the end of its PT_NOTE: ELF header, program headers and notes.
fn real_file_head(real: &RealVmcore) -> io::Result<Vec<u8>> {
    let path = minicap_realvmcore::dir().join("vmcore");
    let file = fs::read(&path).map(|_| ()).err();
    if let Some(e) = file {
        return Err(e);
    }
    // The notes follow the headers; their end is where the first PT_LOAD's bytes begin at the
    // latest, and that is a page or two in.
    let first_load = real.loads.iter().map(|p| p.p_offset).min().unwrap_or(0);
    let mut head = vec![0u8; usize::try_from(first_load).map_err(io::Error::other)?];
    use std::os::unix::fs::FileExt;
    fs::File::open(&path)?.read_exact_at(&mut head, 0)?;
    Ok(head)
}

/// Physical memory of the real vmcore that remembers every range read.
struct Recording<'a> {
    real: &'a RealVmcore,
    reads: RefCell<Vec<(u64, usize)>>,
}

impl PhysMem for Recording<'_> {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        if !self.real.read_lenient(paddr, buf) {
            return Err(PhysMemError::new(paddr, buf.len()));
        }
        self.reads.borrow_mut().push((paddr, buf.len()));
        Ok(())
    }
}

/// The VMCOREINFO and the pages the walk read for the first records, as a printk input.
fn printk_seed(real: &RealVmcore, vmcoreinfo: &[u8]) -> io::Result<Vec<u8>> {
    let v = VmcoreInfo::new(vmcoreinfo);
    let layout = LogLayout::from_vmcoreinfo(&v).map_err(io::Error::other)?;
    let loads: Vec<LoadSegment> = real.segments();
    let mem = Recording {
        real,
        reads: RefCell::new(Vec::new()),
    };
    let old = OldMemory::new(&mem, &loads, v.phys_base());
    let mut seen = 0;
    for_each_log_record(&old, &layout, |_| {
        seen += 1;
        if seen < PRINTK_RECORDS {
            ControlFlow::Continue(())
        } else {
            ControlFlow::Break(())
        }
    })
    .map_err(io::Error::other)?;
    // Merge the reads into ranges, then give each its direct-map (or text) address.
    let mut reads = mem.reads.take();
    reads.sort_unstable();
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    for (addr, len) in reads {
        let end = addr + len as u64;
        match ranges.last_mut() {
            Some((_, last_end)) if addr <= *last_end => *last_end = (*last_end).max(end),
            _ => ranges.push((addr, end)),
        }
    }
    let mut regions = Vec::new();
    for (start, end) in ranges {
        let load = loads
            .iter()
            .find(|l| start >= l.paddr && end <= l.paddr + l.memsz)
            .ok_or_else(|| io::Error::other("a read outside one PT_LOAD"))?;
        let mut bytes = vec![0u8; usize::try_from(end - start).map_err(io::Error::other)?];
        real.read_lenient(start, &mut bytes);
        regions.push((start, load.vaddr + (start - load.paddr), bytes));
    }
    Ok(printk::join(vmcoreinfo, &regions))
}

/// A bzImage built the way `cargo xtask build` builds minicap's, around a small payload with
/// the head the builder requires (`kernel_info` at 0x10) and room for .bss.
fn bzimage() -> io::Result<Vec<u8>> {
    let mut payload = vec![0xccu8; 0x1000];
    payload[0x10..0x14].copy_from_slice(b"LToP");
    let source = minicap_bzimage::ImageSource {
        payload: &payload,
        memsz: 0x3000,
        version: "minicap fuzz seed",
    };
    minicap_bzimage::build(&source).map_err(io::Error::other)
}

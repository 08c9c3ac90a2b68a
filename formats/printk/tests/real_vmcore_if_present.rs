//! The reader against a real Linux 6.1 vmcore and `makedumpfile --dump-dmesg` output of the
//! same file, **only if they are present** (an end-to-end run leaves them behind):
//! `$MINICAP_REAL_VMCORE_DIR` (default `/tmp/kdump-real`) holding `vmcore` (an ELF vmcore)
//! and `dmesg.txt` (makedumpfile's output for it). Skipped otherwise; the synthetic tests in
//! `synthetic_ring.rs` always run.

use std::fs::File;
use std::ops::ControlFlow;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use minicap_elfcore::{FileHeader, LoadSegment, Phdr, PHDR_LEN, PT_LOAD, PT_NOTE};
use minicap_physmem::{PhysMem, PhysMemError};
use minicap_printk::{for_each_log_record, DmesgFormat, LogLayout};
use minicap_vmcoreinfo::{OldMemory, VmcoreInfo};

/// Physical memory served from an ELF vmcore file through its PT_LOADs.
struct ElfFileMem {
    file: File,
    loads: Vec<Phdr>,
}

impl PhysMem for ElfFileMem {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let err = PhysMemError::new(paddr, buf.len());
        let len = buf.len() as u64;
        let ph = self
            .loads
            .iter()
            .find(|p| paddr >= p.p_paddr && paddr + len <= p.p_paddr + p.p_filesz)
            .ok_or(err)?;
        self.file
            .read_exact_at(buf, ph.p_offset + (paddr - ph.p_paddr))
            .map_err(|_| err)
    }
}

fn note_desc(notes: &[u8], owner: &[u8]) -> Option<Vec<u8>> {
    let mut at = 0usize;
    let pad = |n: usize| n.div_ceil(4) * 4;
    while at + 12 <= notes.len() {
        let word =
            |i: usize| u32::from_le_bytes(notes[at + i..at + i + 4].try_into().unwrap()) as usize;
        let (namesz, descsz) = (word(0), word(4));
        if namesz == 0 {
            return None;
        }
        let name = &notes[at + 12..at + 12 + namesz];
        let desc_at = at + 12 + pad(namesz);
        if name.strip_suffix(b"\0") == Some(owner) {
            return Some(notes[desc_at..desc_at + descsz].to_vec());
        }
        at = desc_at + pad(descsz);
    }
    None
}

#[test]
fn real_vmcore_log_matches_makedumpfile_if_present() {
    let dir = PathBuf::from(
        std::env::var("MINICAP_REAL_VMCORE_DIR").unwrap_or_else(|_| "/tmp/kdump-real".into()),
    );
    let (Ok(file), Ok(expected)) = (
        File::open(dir.join("vmcore")),
        std::fs::read(dir.join("dmesg.txt")),
    ) else {
        eprintln!("skipped: no {}/vmcore and dmesg.txt", dir.display());
        return;
    };
    let mut ehdr = [0u8; 64];
    file.read_exact_at(&mut ehdr, 0).unwrap();
    let eh = FileHeader::decode(&ehdr);
    assert!(eh.is_elf64_le());
    let mut phdrs = Vec::new();
    for i in 0..u64::from(eh.e_phnum) {
        let mut raw = [0u8; PHDR_LEN];
        file.read_exact_at(&mut raw, eh.program_header_offset(i).unwrap())
            .unwrap();
        phdrs.push(Phdr::decode(&raw));
    }
    let note = phdrs.iter().find(|p| p.p_type == PT_NOTE).unwrap();
    let mut notes = vec![0u8; usize::try_from(note.p_filesz).unwrap()];
    file.read_exact_at(&mut notes, note.p_offset).unwrap();
    let vmcoreinfo = note_desc(&notes, b"VMCOREINFO").expect("VMCOREINFO note");
    let loads: Vec<Phdr> = phdrs.into_iter().filter(|p| p.p_type == PT_LOAD).collect();
    let segments: Vec<LoadSegment> = loads
        .iter()
        .map(|p| LoadSegment {
            paddr: p.p_paddr,
            vaddr: p.p_vaddr,
            memsz: p.p_filesz,
            source: p.p_paddr,
            flags: p.p_flags,
        })
        .collect();
    let mem = ElfFileMem { file, loads };
    let info = VmcoreInfo::new(&vmcoreinfo);
    let old = OldMemory::new(&mem, &segments, info.phys_base());
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

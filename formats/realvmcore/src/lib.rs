//! Test support shared by the format crates' `real_vmcore_if_present` tests: the ELF vmcore
//! an end-to-end run leaves behind (`$MINICAP_REAL_VMCORE_DIR`, default `/tmp/kdump-real`,
//! holding `vmcore` and, for the log tests, `dmesg.txt` from `makedumpfile --dump-dmesg`),
//! opened once and served as the crashed kernel's physical memory through its PT_LOADs.
//! Those tests compare minicap's readers and writers with the real makedumpfile and skip
//! (saying so) when the files or the tool are missing.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

use minicap_elfcore::{FileHeader, LoadSegment, Phdr, PHDR_LEN, PT_LOAD, PT_NOTE};
use minicap_physmem::{PhysMem, PhysMemError};

/// The directory the real files are looked for in.
pub fn dir() -> PathBuf {
    PathBuf::from(
        std::env::var("MINICAP_REAL_VMCORE_DIR").unwrap_or_else(|_| "/tmp/kdump-real".into()),
    )
}

/// Whether `tool` runs (e.g. `makedumpfile`); says "skipped" if not.
pub fn tool_present(tool: &str) -> bool {
    let ok = Command::new(tool).arg("-v").output().is_ok();
    if !ok {
        eprintln!("skipped: no {tool}");
    }
    ok
}

/// `makedumpfile --dump-dmesg` of the vmcore, if it was left beside it.
pub fn expected_dmesg() -> Option<Vec<u8>> {
    let path = dir().join("dmesg.txt");
    let text = std::fs::read(&path).ok();
    if text.is_none() {
        eprintln!("skipped: no {}", path.display());
    }
    text
}

/// One note of the merged note segment: its name (without NULs), type and descriptor range.
struct Note {
    name: Vec<u8>,
    ntype: u32,
    desc: Range<usize>,
}

fn notes(buf: &[u8]) -> Vec<Note> {
    let pad = |n: usize| n.div_ceil(4) * 4;
    let word = |at: usize| u32::from_le_bytes(buf[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    let mut at = 0usize;
    while at + 12 <= buf.len() {
        let (namesz, descsz) = (word(at) as usize, word(at + 4) as usize);
        if namesz == 0 {
            break;
        }
        let name = buf[at + 12..at + 12 + namesz]
            .iter()
            .copied()
            .take_while(|&b| b != 0)
            .collect();
        let desc = at + 12 + pad(namesz);
        out.push(Note {
            name,
            ntype: word(at + 8),
            desc: desc..desc + descsz,
        });
        at = desc + pad(descsz);
    }
    out
}

/// The real vmcore: its PT_LOADs and its (merged) note segment.
pub struct RealVmcore {
    file: File,
    /// The PT_LOAD program headers.
    pub loads: Vec<Phdr>,
    /// The bytes of the PT_NOTE segment.
    pub notes: Vec<u8>,
}

impl RealVmcore {
    /// Opens `dir()/vmcore`, or says "skipped" and returns None if it is not there.
    pub fn open_if_present() -> Option<Self> {
        let path = dir().join("vmcore");
        let Ok(file) = File::open(&path) else {
            eprintln!("skipped: no {}", path.display());
            return None;
        };
        let mut ehdr = [0u8; 64];
        file.read_exact_at(&mut ehdr, 0).unwrap();
        let eh = FileHeader::decode(&ehdr);
        assert!(
            eh.is_elf64_le(),
            "{} is not an ELF64 vmcore",
            path.display()
        );
        let phdrs: Vec<Phdr> = (0..u64::from(eh.e_phnum))
            .map(|i| {
                let mut raw = [0u8; PHDR_LEN];
                file.read_exact_at(&mut raw, eh.program_header_offset(i).unwrap())
                    .unwrap();
                Phdr::decode(&raw)
            })
            .collect();
        let note = phdrs.iter().find(|p| p.p_type == PT_NOTE).expect("PT_NOTE");
        let mut notes = vec![0u8; usize::try_from(note.p_filesz).unwrap()];
        file.read_exact_at(&mut notes, note.p_offset).unwrap();
        let loads = phdrs.into_iter().filter(|p| p.p_type == PT_LOAD).collect();
        Some(Self { file, loads, notes })
    }

    /// Where the VMCOREINFO text lies in [`RealVmcore::notes`].
    pub fn vmcoreinfo_range(&self) -> Range<usize> {
        notes(&self.notes)
            .into_iter()
            .find(|n| n.name == b"VMCOREINFO")
            .expect("a VMCOREINFO note")
            .desc
    }

    /// The VMCOREINFO text.
    pub fn vmcoreinfo(&self) -> &[u8] {
        &self.notes[self.vmcoreinfo_range()]
    }

    /// The number of CPUs that saved registers (`CORE`/NT_PRSTATUS notes), as makedumpfile
    /// counts them.
    pub fn cpu_count(&self) -> usize {
        notes(&self.notes)
            .iter()
            .filter(|n| n.name == b"CORE" && n.ntype == 1)
            .count()
    }

    /// The PT_LOADs as the capture kernel sees them (data where the file has it).
    pub fn segments(&self) -> Vec<LoadSegment> {
        self.loads
            .iter()
            .map(|p| LoadSegment {
                paddr: p.p_paddr,
                vaddr: p.p_vaddr,
                memsz: p.p_filesz,
                source: p.p_paddr,
                flags: p.p_flags,
            })
            .collect()
    }

    /// The physical ranges the PT_LOADs describe.
    pub fn ram(&self) -> Vec<Range<u64>> {
        self.loads
            .iter()
            .map(|p| p.p_paddr..p.p_paddr + p.p_memsz)
            .collect()
    }

    /// Copies the bytes of `paddr..paddr+buf.len()` that the PT_LOADs hold (the rest is
    /// zero); returns whether one PT_LOAD held them all.
    pub fn read_lenient(&self, paddr: u64, buf: &mut [u8]) -> bool {
        buf.fill(0);
        let end = paddr + buf.len() as u64;
        for p in &self.loads {
            let (s, e) = (paddr.max(p.p_paddr), end.min(p.p_paddr + p.p_filesz));
            if s < e {
                let dst = &mut buf
                    [usize::try_from(s - paddr).unwrap()..usize::try_from(e - paddr).unwrap()];
                self.file
                    .read_exact_at(dst, p.p_offset + (s - p.p_paddr))
                    .unwrap();
            }
        }
        self.loads
            .iter()
            .any(|p| p.p_paddr <= paddr && end <= p.p_paddr + p.p_filesz)
    }
}

impl PhysMem for RealVmcore {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        if self.read_lenient(paddr, buf) {
            Ok(())
        } else {
            Err(PhysMemError::new(paddr, buf.len()))
        }
    }
}

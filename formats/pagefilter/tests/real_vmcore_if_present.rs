//! The filter on a real Linux 6.1 vmcore against `makedumpfile -d 16` on the same file,
//! **only if present**: `$MINICAP_REAL_VMCORE_DIR` (default `/tmp/kdump-real`) holding
//! `vmcore` (ELF), and `makedumpfile` on the PATH. makedumpfile writes an uncompressed
//! kdump file whose 2nd bitmap says which RAM frames it kept; the frames this filter
//! excludes must be exactly the RAM frames makedumpfile left out. Skipped otherwise;
//! `synthetic.rs` always runs.

#![allow(clippy::cast_possible_truncation)]

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::Command;

use minicap_elfcore::{FileHeader, LoadSegment, Phdr, PHDR_LEN, PT_LOAD, PT_NOTE};
use minicap_pagefilter::{FreePageFilter, PageLayout};
use minicap_physmem::{PhysMem, PhysMemError};
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

struct ElfVmcore {
    file: File,
    loads: Vec<Phdr>,
}

impl PhysMem for ElfVmcore {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let end = paddr + buf.len() as u64;
        let p = self
            .loads
            .iter()
            .find(|p| p.p_paddr <= paddr && end <= p.p_paddr + p.p_filesz)
            .ok_or(PhysMemError::new(paddr, buf.len()))?;
        self.file
            .read_exact_at(buf, p.p_offset + (paddr - p.p_paddr))
            .map_err(|_| PhysMemError::new(paddr, buf.len()))
    }
}

fn vmcoreinfo(notes: &[u8]) -> Vec<u8> {
    let mut at = 0usize;
    let pad = |n: usize| n.div_ceil(4) * 4;
    loop {
        let word =
            |i: usize| u32::from_le_bytes(notes[at + i..at + i + 4].try_into().unwrap()) as usize;
        let (namesz, descsz) = (word(0), word(4));
        let desc = at + 12 + pad(namesz);
        if &notes[at + 12..at + 12 + namesz] == b"VMCOREINFO\0" {
            return notes[desc..desc + descsz].to_vec();
        }
        at = desc + pad(descsz);
    }
}

#[test]
fn real_vmcore_free_pages_match_makedumpfile_if_present() {
    let dir = PathBuf::from(
        std::env::var("MINICAP_REAL_VMCORE_DIR").unwrap_or_else(|_| "/tmp/kdump-real".into()),
    );
    let path = dir.join("vmcore");
    let Ok(file) = File::open(&path) else {
        eprintln!("skipped: no {}", path.display());
        return;
    };
    if Command::new("makedumpfile").arg("-v").output().is_err() {
        eprintln!("skipped: no makedumpfile");
        return;
    }
    let mut ehdr = [0u8; 64];
    file.read_exact_at(&mut ehdr, 0).unwrap();
    let eh = FileHeader::decode(&ehdr);
    let phdrs: Vec<Phdr> = (0..u64::from(eh.e_phnum))
        .map(|i| {
            let mut raw = [0u8; PHDR_LEN];
            file.read_exact_at(&mut raw, eh.program_header_offset(i).unwrap())
                .unwrap();
            Phdr::decode(&raw)
        })
        .collect();
    let note = phdrs.iter().find(|p| p.p_type == PT_NOTE).unwrap();
    let mut notes = vec![0u8; note.p_filesz as usize];
    file.read_exact_at(&mut notes, note.p_offset).unwrap();
    let text = vmcoreinfo(&notes);
    let loads: Vec<Phdr> = phdrs.into_iter().filter(|p| p.p_type == PT_LOAD).collect();
    let ram: Vec<Range<u64>> = loads
        .iter()
        .map(|p| p.p_paddr..p.p_paddr + p.p_memsz)
        .collect();
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
    let mem = ElfVmcore { file, loads };
    let vi = VmcoreInfo::new(&text);
    let old = OldMemory::new(&mem, &segments, vi.phys_base())
        .with_page_tables(PageTables::from_vmcoreinfo(&vi).unwrap());
    let layout = PageLayout::from_vmcoreinfo(&vi).unwrap();
    let max_mapnr = ram.iter().map(|r| r.end.div_ceil(4096)).max().unwrap();
    let mut filter = FreePageFilter::new(old, layout, &ram, 16, max_mapnr).unwrap();
    let mut excluded = vec![false; max_mapnr as usize];
    // Cycles of 32768 frames, as the writer would call it.
    for start in (0..max_mapnr).step_by(32768) {
        let end = (start + 32768).min(max_mapnr);
        filter.exclude(start..end, |r| {
            assert!(start <= r.start && r.end <= end && r.start < r.end);
            for pfn in r {
                excluded[pfn as usize] = true;
            }
        });
    }
    let stats = filter.stats();
    eprintln!("{stats:?}");
    assert!(stats.free_pages > 1000, "{stats:?}");

    let out = std::env::temp_dir().join(format!("minicap-pagefilter-{}.kdump", std::process::id()));
    let run = Command::new("makedumpfile")
        .args(["-d", "16"])
        .arg(&path)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let kdump = std::fs::read(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    let le32 = |at: usize| u32::from_le_bytes(kdump[at..at + 4].try_into().unwrap()) as usize;
    let (block, sub_blocks, bitmap_blocks) = (le32(0x1ac), le32(0x1b0), le32(0x1b4));
    let half = bitmap_blocks * block / 2;
    let bm1 = &kdump[block * (1 + sub_blocks)..][..half];
    let bm2 = &kdump[block * (1 + sub_blocks) + half..][..half];
    let on = |bm: &[u8], pfn: u64| bm[(pfn / 8) as usize] & (1 << (pfn % 8)) != 0;
    let mut mismatches = Vec::new();
    let mut theirs = 0;
    for pfn in 0..max_mapnr {
        if !on(bm1, pfn) {
            continue;
        }
        let dropped = !on(bm2, pfn);
        theirs += u64::from(dropped);
        if dropped != excluded[pfn as usize] {
            mismatches.push(pfn);
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches, first {:#x?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(8)]
    );
    assert_eq!(
        theirs,
        stats.free_pages + stats.offline_pages + stats.hwpoison_pages
    );
    eprintln!("{theirs} frames excluded, as makedumpfile -d 16");
}

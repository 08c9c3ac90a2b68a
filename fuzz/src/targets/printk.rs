//! The printk log walk over the crashed kernel's memory (the lockless ring of 5.10+ and the
//! older `log_buf`), with the layout read from VMCOREINFO, as `minicap`'s triage reads it.
//!
//! Input: `u16` length and that much VMCOREINFO text, then memory regions, each a `u64`
//! physical address, a `u64` virtual address, a `u16` length and the bytes. Every region is
//! also a PT_LOAD of the old kernel (physical = where it is read now), so the fuzzer mutates
//! the mapping as well as the contents.

use std::ops::ControlFlow;

use minicap_elfcore::LoadSegment;
use minicap_physmem::{MultiMem, SliceMem};
use minicap_printk::{for_each_log_record, DmesgFormat, LogLayout};
use minicap_vmcoreinfo::{OldMemory, PageTables, VmcoreInfo};

use super::{bucket_u64, signature, Target};

pub const TARGET: Target = Target {
    name: "printk",
    about: "printk ring / log_buf walk over old memory, layout from VMCOREINFO",
    run,
    dictionary: super::vmcoreinfo::DICTIONARY,
    max_len: 64 << 10,
};

/// Bytes of a region's header: physical address, virtual address, length.
pub const REGION_HEADER_LEN: usize = 18;

/// Most records a walk may visit before the target stops it (the rings the inputs describe
/// are small; the walker itself must end on its own, which the time limit checks).
const MAX_VISITS: usize = 100_000;

/// A region of an input: physical address, virtual address, bytes.
type Region<'a> = (u64, u64, &'a [u8]);

/// Splits an input into VMCOREINFO text and regions `(paddr, vaddr, bytes)`; a region cut
/// short by the input's end keeps what is there.
fn split(input: &[u8]) -> (&[u8], Vec<Region<'_>>) {
    let n = input
        .get(..2)
        .map_or(0, |b| usize::from(u16::from_le_bytes([b[0], b[1]])));
    let rest = input.get(2..).unwrap_or_default();
    let (text, mut rest) = rest.split_at(n.min(rest.len()));
    let mut regions = Vec::new();
    while rest.len() >= REGION_HEADER_LEN {
        let (header, tail) = rest.split_at(REGION_HEADER_LEN);
        let word = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let len = usize::from(u16::from_le_bytes([header[16], header[17]]));
        let (bytes, tail) = tail.split_at(len.min(tail.len()));
        regions.push((word(0), word(8), bytes));
        rest = tail;
    }
    (text, regions)
}

/// Builds an input from its parts (the inverse of [`split`]).
pub fn join(vmcoreinfo: &[u8], regions: &[(u64, u64, Vec<u8>)]) -> Vec<u8> {
    let n = u16::try_from(vmcoreinfo.len()).expect("VMCOREINFO under 64 KiB");
    let mut out = n.to_le_bytes().to_vec();
    out.extend_from_slice(vmcoreinfo);
    for (paddr, vaddr, bytes) in regions {
        out.extend_from_slice(&paddr.to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        let len = u16::try_from(bytes.len()).expect("region under 64 KiB");
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(bytes);
    }
    out
}

/// The regions as physical memory, and as the old kernel's PT_LOADs (read where they are).
fn memory<'a>(regions: &[Region<'a>]) -> (Vec<SliceMem<'a>>, Vec<LoadSegment>) {
    let slices = regions
        .iter()
        .map(|&(paddr, _, bytes)| SliceMem::new(paddr, bytes))
        .collect();
    let loads = regions
        .iter()
        .filter(|(_, _, bytes)| !bytes.is_empty())
        .map(|&(paddr, vaddr, bytes)| LoadSegment {
            paddr,
            vaddr,
            memsz: bytes.len() as u64,
            source: paddr,
            flags: 7,
        })
        .collect();
    (slices, loads)
}

fn run(input: &[u8]) -> u64 {
    let (text, regions) = split(input);
    let v = VmcoreInfo::new(text);
    let layout = match LogLayout::from_vmcoreinfo(&v) {
        Ok(l) => l,
        Err(e) => return signature(("layout", core::mem::discriminant(&e))),
    };
    let (slices, loads) = memory(&regions);
    let mem = MultiMem::new(&slices);
    let mut old = OldMemory::new(&mem, &loads, v.phys_base());
    if let Some(tables) = PageTables::from_vmcoreinfo(&v) {
        old = old.with_page_tables(tables);
    }
    let format = DmesgFormat { caller: true };
    let mut visits = 0usize;
    let mut text_out = String::new();
    let summary = for_each_log_record(&old, &layout, |record| {
        visits += 1;
        text_out.clear();
        let _ = format.write(record, &mut text_out);
        if visits >= MAX_VISITS {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert!(visits < MAX_VISITS, "the walk visited {visits} records");
    signature((
        matches!(layout, LogLayout::Lockless(_)),
        summary
            .map(|s| {
                (
                    bucket_u64(s.records),
                    bucket_u64(s.skipped),
                    bucket_u64(s.damaged),
                    s.first_damage.map(|d| core::mem::discriminant(&d)),
                )
            })
            .map_err(|e| core::mem::discriminant(&e)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first `n` records' texts of a seed.
    fn first_texts(seed: &[u8], n: usize) -> Vec<String> {
        let (text, regions) = split(seed);
        let v = VmcoreInfo::new(text);
        let layout = LogLayout::from_vmcoreinfo(&v).unwrap();
        let (slices, loads) = memory(&regions);
        let mem = MultiMem::new(&slices);
        let old = OldMemory::new(&mem, &loads, v.phys_base());
        let mut texts = Vec::new();
        for_each_log_record(&old, &layout, |r| {
            texts.push(String::from_utf8_lossy(r.text).into_owned());
            if texts.len() < n {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
        .unwrap();
        texts
    }

    /// The committed seeds hold rings that work, so that mutations start from records
    /// rather than from an early error: the real vmcore's first records, and the
    /// hand-made `log_buf` of a 3.x kernel whole.
    #[test]
    fn the_ring_seeds_walk_their_records() {
        let real = include_bytes!("../../corpus/printk/real-6.1");
        let texts = first_texts(real, 5);
        assert_eq!(texts.len(), 5);
        assert!(texts[0].starts_with("Linux version"), "{texts:?}");
        let legacy = include_bytes!("../../corpus/printk/legacy-3.10");
        assert_eq!(
            first_texts(legacy, 10),
            [
                "Linux version 3.10.0",
                "second record",
                "Kernel panic - not syncing"
            ]
        );
    }

    #[test]
    fn join_inverts_split() {
        let regions = vec![
            (0x1000, 0xffff_8880_0000_1000, vec![1, 2, 3]),
            (0, 0, vec![]),
        ];
        let input = join(b"A=1\n", &regions);
        let (text, back) = split(&input);
        assert_eq!(text, b"A=1\n");
        let back: Vec<_> = back.iter().map(|&(p, v, b)| (p, v, b.to_vec())).collect();
        assert_eq!(back, regions);
    }
}

//! `minicap recommend`: the `crashkernel=` size minicap needs on this machine.
//!
//! The budget is the crash region's fixed part as [`plan`](super::plan) lays it out (image,
//! purgatory slot, `boot_params`, core headers for this machine's CPUs and RAM ranges) plus
//! the capture kernel's heap: its floor ([`MIN_HEAP`], for the parsed headers, queues and page
//! tables) and the buffers it allocates, each taken from the crate that allocates it:
//!
//! * the device staging buffers (`minicap_capture::writer`, device sink);
//! * the triage text ([`TRIAGE_CAPACITY`]), the console log ([`LOG_BYTES`]) and the header
//!   block ([`HEADER_BLOCK`]);
//! * with `minicap.verify=chunks`, the XXH64 table: 8 bytes per chunk of a dump of this RAM
//!   ([`chunk_size_for`], [`chunk_count`]);
//! * for `minicap.format=kdump`, the two cycle bitmaps of the kdump writer
//!   ([`WriterOptions`]) and the LZO state ([`Lzo::STATE_BYTES`]); for a filtered ELF vmcore
//!   (`minicap.dump_level` above 0), the cycle bitmap of [`ElfFilterOptions`].
//!
//! Every buffer is counted as if all were live at once, so the result errs on the large side;
//! it is rounded up to whole MiB.

use std::fmt;
use std::path::Path;

use anyhow::{anyhow, Result};

use minicap_bootinfo::cmdline::{Compress, DumpFormat, MinicapOptions, Verify};
use minicap_capture::memory::MIN_HEAP;
use minicap_capture::writer::{ElfFilterOptions, HEADER_BLOCK, LOG_BYTES, STAGES, STAGE_BYTES};
use minicap_dumpheader::{chunk_count, chunk_size_for, CHUNK_ENTRY_LEN, TRIAGE_CAPACITY};
use minicap_kdumpfile::{Lzo, WriterOptions};
use minicap_physmem::page_ceil;

use super::image::Image;
use super::plan::region_bytes_needed;
use super::read_image;
use super::sysfs::{
    parse_cpu_list, parse_decimal, read_cpu_notes, SystemFiles, CPU_POSSIBLE, KEXEC_CRASH_SIZE,
};
use super::system::read_iomem;
use crate::fmt_util::size;

/// The device sink's staging buffers (the kdump-compressed and filtered ELF writers).
const DEVICE_STAGING_BYTES: u64 = (STAGES * STAGE_BYTES) as u64;

const MIB: u64 = 1 << 20;

/// One line of the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// What it is.
    pub what: &'static str,
    /// Bytes.
    pub bytes: u64,
}

/// The budget and its total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// Its lines.
    pub terms: Vec<Term>,
}

impl Budget {
    /// Sum of the lines.
    pub fn total(&self) -> u64 {
        self.terms.iter().map(|t| t.bytes).sum()
    }

    /// The total rounded up to MiB, as a `crashkernel=` size.
    pub fn crashkernel_mib(&self) -> u64 {
        self.total().div_ceil(MIB)
    }
}

/// What the budget depends on.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    /// Bytes of RAM the dump covers.
    pub ram_bytes: u64,
    /// RAM ranges (one PT_LOAD each).
    pub ram_ranges: usize,
    /// CPUs with a `crash_notes` buffer (one PT_NOTE each).
    pub cpus: usize,
}

/// The budget for `image` on `machine` with `options`.
pub fn budget(image: &Image, machine: &Machine, options: &MinicapOptions) -> Budget {
    // CPU notes, VMCOREINFO, kernel text, RAM ranges; 64-byte ELF header.
    let phnum = machine.cpus + 2 + machine.ram_ranges;
    let headers = 64 + 56 * u64::try_from(phnum).unwrap_or(u64::MAX / 64);
    // region_bytes_needed counts the image, purgatory, boot_params, headers and MIN_HEAP.
    let fixed = region_bytes_needed(image, headers) - MIN_HEAP;
    let mut terms = vec![
        Term {
            what: "image, purgatory slot, boot_params, core headers",
            bytes: fixed,
        },
        Term {
            what: "heap floor (parsed headers, queues, page tables)",
            bytes: MIN_HEAP,
        },
        Term {
            what: "device staging buffers",
            bytes: DEVICE_STAGING_BYTES,
        },
        Term {
            what: "triage text buffer",
            bytes: TRIAGE_CAPACITY,
        },
        Term {
            what: "console log and header block",
            bytes: to_u64(LOG_BYTES + HEADER_BLOCK),
        },
    ];
    if options.verify == Verify::Chunks {
        let chunks = chunk_count(machine.ram_bytes, chunk_size_for(machine.ram_bytes));
        terms.push(Term {
            what: "XXH64 chunk table",
            bytes: page_ceil(chunks * CHUNK_ENTRY_LEN).unwrap_or(u64::MAX),
        });
    }
    let transport = options.transport();
    match options.format(transport) {
        DumpFormat::Kdump => {
            terms.push(Term {
                what: "kdump cycle bitmaps",
                bytes: 2 * to_u64(WriterOptions::default().cycle_bitmap_bytes),
            });
            if options.compress == Compress::Lzo {
                terms.push(Term {
                    what: "LZO compressor state",
                    bytes: to_u64(Lzo::STATE_BYTES),
                });
            }
        }
        DumpFormat::Elf if options.dump_level(transport) != 0 => terms.push(Term {
            what: "filtered-ELF cycle bitmap",
            bytes: ElfFilterOptions::default().cycle_frames / 8,
        }),
        DumpFormat::Elf => {}
    }
    Budget { terms }
}

/// `minicap recommend [--image PATH] [--append OPTIONS]`.
pub fn recommend(files: &SystemFiles, image_path: &Path, append: &str) -> Result<()> {
    let options = MinicapOptions::parse(append, |_| {}).map_err(|e| anyhow!("--append: {e}"))?;
    let image = read_image(image_path)?.image;
    let iomem = read_iomem(files)?;
    // Sizing works on a kernel without kexec support too; the comparison then says so.
    let reserved = files.read_optional(KEXEC_CRASH_SIZE)?;
    let ram = iomem.dump_ram();
    let cpus = match read_cpu_notes(files) {
        Ok(notes) => notes.len(),
        // Without crash_notes (no reservation yet), count the possible CPUs.
        Err(_) => files.parse(CPU_POSSIBLE, parse_cpu_list)?.len(),
    };
    let machine = Machine {
        ram_bytes: ram.iter().map(|r| r.end - r.start).sum(),
        ram_ranges: ram.len(),
        cpus,
    };
    let budget = budget(&image, &machine, &options);
    println!(
        "minicap needs, for {} of RAM in {} range(s), {} CPU(s), format {}, verify {}:",
        size(machine.ram_bytes),
        machine.ram_ranges,
        machine.cpus,
        options.format(options.transport()),
        options.verify
    );
    print!("{budget}");
    let mib = budget.crashkernel_mib();
    println!("recommended:  crashkernel={mib}M");
    let reserved = match reserved {
        None => {
            println!("reserved now: this kernel cannot load a crash kernel (no /sys/kernel/kexec_crash_size)");
            return Ok(());
        }
        Some(text) => parse_decimal(&text).ok_or_else(|| {
            anyhow!(
                "{}: not a number: {text:?}",
                files.path(KEXEC_CRASH_SIZE).display()
            )
        })?,
    };
    if reserved == 0 {
        println!("reserved now: nothing (add crashkernel={mib}M to the kernel command line)");
    } else if reserved >= budget.total() {
        println!("reserved now: {}: enough", size(reserved));
    } else {
        println!(
            "reserved now: {}: {} short (raise crashkernel= to {mib}M)",
            size(reserved),
            size(budget.total() - reserved)
        );
    }
    Ok(())
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for term in &self.terms {
            writeln!(f, "  {:>9} KiB  {}", term.bytes.div_ceil(1024), term.what)?;
        }
        writeln!(f, "  {:>9} KiB  total", self.total().div_ceil(1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::image::tests::image_with;

    fn minicap_like() -> Image {
        Image::parse(&image_with(0, &[(0, &[0x90; 0x6_8348], 0x9_9990)])).unwrap()
    }

    fn options(cmdline: &str) -> MinicapOptions {
        MinicapOptions::parse(cmdline, |_| {}).unwrap()
    }

    const GUEST: Machine = Machine {
        ram_bytes: 0x3ee0_0000,
        ram_ranges: 3,
        cpus: 2,
    };

    #[test]
    fn elf_on_the_guest() {
        let b = budget(&minicap_like(), &GUEST, &options(""));
        let names: Vec<_> = b.terms.iter().map(|t| t.what).collect();
        assert_eq!(names.len(), 6, "{names:?}");
        // 1006 MiB in 1 MiB chunks: 1006 entries, one page of table.
        assert_eq!(b.terms[5].bytes, 0x2000);
        // Image, purgatory, boot_params and one page of headers.
        assert_eq!(b.terms[0].bytes, 0x9_a000 + (64 << 10) + 0x2000 + 0x1000);
        assert_eq!(b.crashkernel_mib(), b.total().div_ceil(MIB));
        assert!(
            (4..=6).contains(&b.crashkernel_mib()),
            "{}",
            b.crashkernel_mib()
        );
    }

    #[test]
    fn formats_add_their_buffers() {
        let image = minicap_like();
        let elf = budget(&image, &GUEST, &options("")).total();
        let kdump = budget(&image, &GUEST, &options("minicap.format=kdump"));
        assert!(kdump.terms.iter().any(|t| t.what == "kdump cycle bitmaps"));
        assert!(kdump.total() > elf);
        let filtered = budget(&image, &GUEST, &options("minicap.dump_level=31"));
        assert_eq!(filtered.total(), elf + (1 << 14));
        let unverified = budget(&image, &GUEST, &options("minicap.verify=none"));
        assert_eq!(unverified.total(), elf - 0x2000);
    }

    #[test]
    fn the_chunk_table_grows_with_ram_until_its_cap() {
        let image = minicap_like();
        let table = |ram_bytes| {
            let machine = Machine { ram_bytes, ..GUEST };
            budget(&image, &machine, &options(""))
                .terms
                .iter()
                .find(|t| t.what == "XXH64 chunk table")
                .unwrap()
                .bytes
        };
        assert!(table(64 << 30) > table(1 << 30));
        assert_eq!(table(1 << 40), table(1 << 41));
    }
}

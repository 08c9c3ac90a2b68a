//! `codec-bench [--mib N] [--passes P]`: how well and how fast each page compressor packs the
//! pages of the real vmcore (`$MINICAP_REAL_VMCORE_DIR/vmcore`, default `/tmp/kdump-real`),
//! one 4096-byte page at a time as the capture kernel does, on this CPU or under
//! `qemu-x86_64` (`cargo xtask codec-bench` runs it both ways and prints a table).
//!
//! The pages are `N` MiB of the vmcore's RAM frames (each once) taken at an even stride (all of them if
//! `N` is 0 or at least the RAM size), read into memory first so only compression is timed.
//! Speed is over the non-zero pages only: with dump level bit 1 (the default) pages of zeros
//! never reach the compressor. Ratios are raw bytes over stored bytes, a page that does not
//! shrink counting as stored raw, as the writer does.
//!
//! Prints one line per method on stdout and nothing else:
//! `NAME<TAB>MiB/s (n/a for none)<TAB>ratio of all pages<TAB>ratio of non-zero pages<TAB>% of non-zero pages that shrank`.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use minicap_kdumpfile::{Lzo, NoCompression, PageCompressor, Zlib, PAGE_SIZE};
use minicap_realvmcore::RealVmcore;

/// snappy (raw format, as makedumpfile `-p` stores a page): measured only.
struct Snappy(snap::raw::Encoder);

impl PageCompressor for Snappy {
    fn flag(&self) -> u32 {
        minicap_kdumpfile::DUMP_DH_COMPRESSED_SNAPPY
    }
    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        // snap wants room for its worst case; anything not smaller than the page is dropped.
        let mut room = [0u8; 2 * PAGE_SIZE];
        let n = self.0.compress(page, &mut room).ok()?;
        (n < page.len() && n <= out.len()).then(|| {
            out[..n].copy_from_slice(&room[..n]);
            n
        })
    }
}

/// zstd through ruzstd's encoder at its fastest level (about zstd -1), one frame per page as
/// makedumpfile `-z` stores it: measured only.
struct Zstd;

impl PageCompressor for Zstd {
    fn flag(&self) -> u32 {
        minicap_kdumpfile::DUMP_DH_COMPRESSED_ZSTD
    }
    fn compress(&mut self, page: &[u8], out: &mut [u8]) -> Option<usize> {
        let frame =
            ruzstd::encoding::compress_to_vec(page, ruzstd::encoding::CompressionLevel::Fastest);
        (frame.len() < page.len() && frame.len() <= out.len()).then(|| {
            out[..frame.len()].copy_from_slice(&frame);
            frame.len()
        })
    }
}

/// The methods, in table order: first those `minicap.compress=` offers.
fn methods() -> Vec<(&'static str, Box<dyn PageCompressor>)> {
    vec![
        ("none", Box::new(NoCompression)),
        ("zlib (level 1, miniz_oxide)", Box::new(Zlib::new())),
        ("lzo (LZO1X-1 style, minicap)", Box::new(Lzo::new())),
        (
            "snappy (snap, not offered)",
            Box::new(Snappy(snap::raw::Encoder::new())),
        ),
        ("zstd -1 (ruzstd, not offered)", Box::new(Zstd)),
    ]
}

/// `mib` MiB of the vmcore's RAM pages at an even stride (all if `mib` is 0).
fn sample_pages(vmcore: &RealVmcore, mib: usize) -> Vec<Vec<u8>> {
    let page = PAGE_SIZE as u64;
    // A set: the kernel image's PT_LOAD repeats frames of the direct map's.
    let pfns: Vec<u64> = vmcore
        .ram()
        .iter()
        .flat_map(|r| r.start.div_ceil(page)..r.end / page)
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect();
    let wanted = if mib == 0 {
        pfns.len()
    } else {
        (mib * (1 << 20) / PAGE_SIZE).min(pfns.len())
    };
    let stride = pfns.len() / wanted.max(1);
    pfns.iter()
        .step_by(stride.max(1))
        .take(wanted)
        .map(|&pfn| {
            let mut bytes = vec![0u8; PAGE_SIZE];
            vmcore.read_lenient(pfn * page, &mut bytes);
            bytes
        })
        .collect()
}

/// One method's figures.
struct Figures {
    mib_per_s: f64,
    ratio_all: f64,
    ratio_nonzero: f64,
    shrunk_percent: f64,
}

fn measure(c: &mut dyn PageCompressor, pages: &[Vec<u8>], passes: u32) -> Figures {
    let mut out = [0u8; PAGE_SIZE];
    let stored = |c: &mut dyn PageCompressor, p: &[u8], out: &mut [u8]| {
        c.compress(p, out)
            .filter(|&n| n < PAGE_SIZE)
            .unwrap_or(PAGE_SIZE)
    };
    let nonzero: Vec<&[u8]> = pages
        .iter()
        .map(Vec::as_slice)
        .filter(|p| p.iter().any(|&b| b != 0))
        .collect();
    let zero_pages = pages.len() - nonzero.len();
    let zero_stored = stored(c, &[0u8; PAGE_SIZE], &mut out);
    let mut best = f64::INFINITY;
    let mut nonzero_stored = 0usize;
    let mut shrunk = 0usize;
    for _ in 0..passes {
        (nonzero_stored, shrunk) = (0, 0);
        let start = Instant::now();
        for p in &nonzero {
            let n = stored(c, p, &mut out);
            nonzero_stored += n;
            shrunk += usize::from(n < PAGE_SIZE);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    // Display only: page counts are far below 2^52.
    let bytes = |pages: usize| (pages * PAGE_SIZE) as f64;
    Figures {
        mib_per_s: bytes(nonzero.len()) / f64::from(1 << 20) / best,
        ratio_all: bytes(pages.len()) / (nonzero_stored + zero_pages * zero_stored) as f64,
        ratio_nonzero: bytes(nonzero.len()) / nonzero_stored as f64,
        shrunk_percent: 100.0 * shrunk as f64 / nonzero.len().max(1) as f64,
    }
}

fn main() -> ExitCode {
    let mut mib = 256usize;
    let mut passes = 1u32;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<usize>().ok());
        match (arg.as_str(), value) {
            ("--mib", Some(v)) => mib = v,
            ("--passes", Some(v)) if v > 0 => passes = u32::try_from(v).unwrap_or(u32::MAX),
            _ => {
                eprintln!("usage: codec-bench [--mib N (0: all RAM)] [--passes P]");
                return ExitCode::from(2);
            }
        }
    }
    let Some(vmcore) = RealVmcore::open_if_present() else {
        eprintln!("codec-bench: needs the real vmcore (see minicap-realvmcore)");
        return ExitCode::FAILURE;
    };
    let pages = sample_pages(&vmcore, mib);
    let nonzero = pages.iter().filter(|p| p.iter().any(|&b| b != 0)).count();
    eprintln!(
        "{} pages ({} MiB), {nonzero} of them non-zero",
        pages.len(),
        (pages.len() * PAGE_SIZE) >> 20
    );
    for (name, mut c) in methods() {
        let f = measure(c.as_mut(), &pages, passes);
        // Storing raw takes no time to speak of: the writer's copy, not a compressor's work.
        let speed = if c.flag() == 0 {
            "n/a".to_owned()
        } else {
            format!("{:.1}", f.mib_per_s)
        };
        println!(
            "{name}\t{speed}\t{:.3}\t{:.3}\t{:.1}",
            f.ratio_all, f.ratio_nonzero, f.shrunk_percent
        );
    }
    ExitCode::SUCCESS
}

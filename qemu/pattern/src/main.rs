//! `minicap-pattern`: the memory pattern of the end-to-end test.
//!
//! * `minicap-pattern fill [--mib 64] [--seed HEX]` (in the guest, as root):
//!   fills a buffer with a seeded pattern, locks it, prints where each page
//!   lives physically and sleeps until the machine is crashed.
//! * `minicap-pattern verify VMCORE SERIAL_LOG` (on the host): checks that
//!   every page of that pattern is intact in the vmcore.

use std::alloc::{alloc_zeroed, Layout};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use minicap_pattern::{
    fill_page, format_log, parse_log, parse_seed, read_loads, runs_from_pfns, verify, PAGE_BYTES,
    PAGE_SIZE, WORDS_PER_PAGE,
};

extern "C" {
    /// glibc's `mlock(2)` wrapper (std links glibc anyway).
    fn mlock(addr: *const std::ffi::c_void, len: usize) -> std::ffi::c_int;
}

const USAGE: &str = "usage:\n  minicap-pattern fill [--mib N] [--seed HEX]\n  minicap-pattern verify VMCORE SERIAL_LOG [--max-bad N]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let res = match args.first().map(String::as_str) {
        Some("fill") => fill(&args[1..]),
        Some("verify") => verify_cmd(&args[1..]),
        _ => Err(USAGE.to_string()),
    };
    match res {
        Ok(code) => code,
        Err(e) => {
            eprintln!("minicap-pattern: {e}");
            ExitCode::from(2)
        }
    }
}

fn option_value<'a>(args: &'a [String], i: &mut usize, name: &str) -> Result<&'a str, String> {
    *i += 1;
    args.get(*i)
        .map(String::as_str)
        .ok_or_else(|| format!("{name} needs a value"))
}

fn fill(args: &[String]) -> Result<ExitCode, String> {
    let mut mib: u64 = 64;
    let mut seed: Option<u64> = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--mib" => {
                let v = option_value(args, &mut i, "--mib")?;
                mib = v.parse().map_err(|_| format!("bad --mib {v:?}"))?;
            }
            "--seed" => {
                let v = option_value(args, &mut i, "--seed")?;
                seed = Some(parse_seed(v).ok_or_else(|| format!("bad --seed {v:?}"))?);
            }
            a => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
        i += 1;
    }
    if mib == 0 {
        return Err("--mib must be at least 1".into());
    }
    let seed = seed.unwrap_or_else(|| {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        minicap_pattern::splitmix64(
            t.as_secs() ^ (u64::from(t.subsec_nanos()) << 32) ^ u64::from(std::process::id()),
        )
    });
    let bytes = mib * 1024 * 1024;
    let pages = bytes / PAGE_SIZE;
    let len = usize::try_from(bytes).map_err(|_| "--mib too large")?;
    // 2 MiB alignment lets transparent huge pages back the buffer from the
    // first fault on, so khugepaged never migrates it after we report PFNs.
    let layout = Layout::from_size_align(len, 2 << 20).map_err(|e| e.to_string())?;
    // SAFETY: the layout has a non-zero size.
    let ptr = unsafe { alloc_zeroed(layout) };
    if ptr.is_null() {
        return Err(format!("cannot allocate {mib} MiB"));
    }
    // SAFETY: `ptr` is a fresh, zeroed allocation of `len` bytes aligned to
    // 2 MiB (so to 8), never freed (the program sleeps until the crash), and
    // only accessed through this slice.
    let words: &mut [u64] = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u64>(), len / 8) };
    for (page, chunk) in words.chunks_exact_mut(WORDS_PER_PAGE).enumerate() {
        fill_page(seed, page as u64, chunk);
    }
    // SAFETY: mlock only reads the address range, which is our allocation.
    let rc = unsafe { mlock(ptr.cast(), len) };
    if rc != 0 {
        eprintln!(
            "minicap-pattern: warning: mlock failed: {}",
            io::Error::last_os_error()
        );
    }

    let pagemap =
        File::open("/proc/self/pagemap").map_err(|e| format!("/proc/self/pagemap: {e}"))?;
    let mut raw = vec![0u8; len / PAGE_BYTES * 8];
    let base = ptr as u64;
    pagemap
        .read_exact_at(&mut raw, base / PAGE_SIZE * 8)
        .map_err(|e| format!("reading /proc/self/pagemap: {e}"))?;
    let mut pfns = Vec::with_capacity(pages as usize);
    for (i, e) in raw.chunks_exact(8).enumerate() {
        let e = u64::from_le_bytes(e.try_into().expect("8 bytes"));
        let pfn = e & ((1 << 55) - 1);
        if e >> 63 == 0 {
            return Err(format!(
                "page {i} not present after fill and mlock (pagemap entry {e:#x})"
            ));
        }
        if pfn == 0 {
            return Err(
                "pagemap shows PFN 0: reading PFNs needs CAP_SYS_ADMIN (run as root)".into(),
            );
        }
        pfns.push(pfn);
    }
    let runs = runs_from_pfns(&pfns);
    let out = format_log(seed, &runs, pages);
    {
        let mut so = io::stdout().lock();
        so.write_all(out.as_bytes()).map_err(|e| e.to_string())?;
        so.flush().map_err(|e| e.to_string())?;
    }
    eprintln!(
        "minicap-pattern: {pages} pages in {} runs, sleeping",
        runs.len()
    );
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn verify_cmd(args: &[String]) -> Result<ExitCode, String> {
    let mut pos = Vec::new();
    let mut max_bad = 20usize;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--max-bad" => {
                let v = option_value(args, &mut i, "--max-bad")?;
                max_bad = v.parse().map_err(|_| format!("bad --max-bad {v:?}"))?;
            }
            a => pos.push(a),
        }
        i += 1;
    }
    let [vmcore, serial] = pos[..] else {
        return Err(USAGE.into());
    };
    let text = std::fs::read(serial).map_err(|e| format!("{serial}: {e}"))?;
    let text = String::from_utf8_lossy(&text);
    let log = match parse_log(&text) {
        Ok(l) => l,
        Err(e) => {
            println!("pattern: FAILED: {serial}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let f = File::open(vmcore).map_err(|e| format!("{vmcore}: {e}"))?;
    let loads = match read_loads(&f) {
        Ok(l) => l,
        Err(e) => {
            println!("pattern: FAILED: {vmcore}: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let r = verify(&f, &loads, &log, max_bad);
    println!(
        "pattern: seed {:016x}, {} pages in {} runs, {} PT_LOADs",
        log.seed,
        log.pages,
        log.runs.len(),
        loads.len()
    );
    println!("pattern: {}/{} pages intact", r.intact, r.pages);
    if r.intact == r.pages {
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "pattern: {} pages bad; first {}:",
        r.pages - r.intact,
        r.bad.len()
    );
    for b in &r.bad {
        println!(
            "pattern:   page {} pfn {:#x} (phys {:#x}): {}",
            b.page,
            b.pfn,
            b.pfn * PAGE_SIZE,
            b.problem
        );
    }
    Ok(ExitCode::FAILURE)
}

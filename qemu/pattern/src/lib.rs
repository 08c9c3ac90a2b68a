//! Shared pieces of `minicap-pattern`: the pattern generator, the parser of
//! the `PATTERN-*` lines the guest prints, the ELF64 `PT_LOAD` mapping of a
//! vmcore and the verification that ties them together.
//!
//! The guest side (`fill`) writes, for page `i` of its buffer and 64-bit word
//! `w` of that page, `splitmix64(seed ^ (i << 9) ^ w)`, then reports which
//! physical frame each page landed in.  The host side (`verify`) reads every
//! such frame out of the vmcore and checks the words.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

pub use minicap_elfcore::Phdr;
use minicap_elfcore::{
    section_header_info, FileHeader, EHDR_LEN, ELF_MAGIC, PHDR_LEN, PN_XNUM, PT_LOAD,
};

/// Page size of the guest (x86_64), in bytes.
pub const PAGE_BYTES: usize = 4096;
/// The same as a `u64`, for address arithmetic.
pub const PAGE_SIZE: u64 = PAGE_BYTES as u64;
/// 64-bit words per page.
pub const WORDS_PER_PAGE: usize = PAGE_BYTES / 8;

/// The splitmix64 finaliser (wrapping arithmetic).
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Expected value of word `w` of page `page` for `seed`.
pub fn pattern_word(seed: u64, page: u64, w: u64) -> u64 {
    splitmix64(seed ^ (page << 9) ^ w)
}

/// Fills `words` (one page, `WORDS_PER_PAGE` words) with the pattern of `page`.
pub fn fill_page(seed: u64, page: u64, words: &mut [u64]) {
    for (w, slot) in words.iter_mut().enumerate() {
        *slot = pattern_word(seed, page, w as u64);
    }
}

/// Little-endian bytes of the pattern of one page.
pub fn page_bytes(seed: u64, page: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(PAGE_BYTES);
    for w in 0..WORDS_PER_PAGE as u64 {
        out.extend_from_slice(&pattern_word(seed, page, w).to_le_bytes());
    }
    out
}

/// Pages `first_page .. first_page + count` of the buffer live in the
/// physically consecutive frames `first_pfn ..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub first_pfn: u64,
    pub first_page: u64,
    pub count: u64,
}

/// Compresses a per-page PFN list into runs of consecutive PFNs.
pub fn runs_from_pfns(pfns: &[u64]) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    for (i, &pfn) in pfns.iter().enumerate() {
        let i = i as u64;
        match runs.last_mut() {
            Some(r) if r.first_pfn + r.count == pfn && r.first_page + r.count == i => r.count += 1,
            _ => runs.push(Run {
                first_pfn: pfn,
                first_page: i,
                count: 1,
            }),
        }
    }
    runs
}

/// Everything the guest reported about its pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternLog {
    pub seed: u64,
    pub runs: Vec<Run>,
    pub pages: u64,
}

impl PatternLog {
    /// Iterator over `(page index, pfn)` of every page.
    pub fn pages(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.runs
            .iter()
            .flat_map(|r| (0..r.count).map(move |k| (r.first_page + k, r.first_pfn + k)))
    }
}

/// Formats the lines `fill` prints (without the trailing newline of the last).
pub fn format_log(seed: u64, runs: &[Run], pages: u64) -> String {
    let mut s = format!("PATTERN-SEED {seed:016x}\n");
    for r in runs {
        s.push_str(&format!(
            "PATTERN-RUN {:x} {} {}\n",
            r.first_pfn, r.first_page, r.count
        ));
    }
    s.push_str(&format!("PATTERN-READY {pages}\n"));
    s
}

fn parse_hex(s: &str) -> Option<u64> {
    let s = s.trim();
    let s = s
        .strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s);
    u64::from_str_radix(s, 16).ok()
}

/// Parses a seed given in hex (with or without `0x`).
pub fn parse_seed(s: &str) -> Option<u64> {
    parse_hex(s)
}

/// Returns the whitespace-separated fields following `tag` in `line`, if the
/// tag occurs (it may be preceded by other output on the same line, as can
/// happen on a shared serial console).
fn fields_after<'a>(line: &'a str, tag: &str) -> Option<Vec<&'a str>> {
    let pos = line.find(tag)?;
    Some(line[pos + tag.len()..].split_whitespace().collect())
}

/// Parses the `PATTERN-*` lines out of a serial log and checks that they
/// describe a complete, consistent buffer: exactly one seed, runs covering
/// page indices `0..pages` without gaps or overlaps, and a READY line.
pub fn parse_log(text: &str) -> Result<PatternLog, String> {
    let mut seed = None;
    let mut runs = Vec::new();
    let mut ready = None;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        let lineno = n + 1;
        if let Some(f) = fields_after(line, "PATTERN-SEED ") {
            if seed.is_some() {
                return Err(format!("line {lineno}: more than one PATTERN-SEED"));
            }
            let v = f.first().and_then(|s| parse_hex(s));
            seed = Some(v.ok_or_else(|| format!("line {lineno}: bad PATTERN-SEED: {line:?}"))?);
        } else if let Some(f) = fields_after(line, "PATTERN-RUN ") {
            let bad = || format!("line {lineno}: bad PATTERN-RUN: {line:?}");
            if seed.is_none() {
                return Err(format!("line {lineno}: PATTERN-RUN before PATTERN-SEED"));
            }
            if ready.is_some() {
                return Err(format!("line {lineno}: PATTERN-RUN after PATTERN-READY"));
            }
            if f.len() < 3 {
                return Err(bad());
            }
            let first_pfn = parse_hex(f[0]).ok_or_else(bad)?;
            let first_page = f[1].parse::<u64>().map_err(|_| bad())?;
            let count = f[2].parse::<u64>().map_err(|_| bad())?;
            if count == 0 {
                return Err(bad());
            }
            runs.push(Run {
                first_pfn,
                first_page,
                count,
            });
        } else if let Some(f) = fields_after(line, "PATTERN-READY ") {
            if ready.is_some() {
                return Err(format!("line {lineno}: more than one PATTERN-READY"));
            }
            let v = f.first().and_then(|s| s.parse::<u64>().ok());
            ready = Some(v.ok_or_else(|| format!("line {lineno}: bad PATTERN-READY: {line:?}"))?);
        }
    }
    let seed = seed.ok_or("no PATTERN-SEED line in the log")?;
    let pages = ready.ok_or("no PATTERN-READY line in the log (pattern not complete?)")?;
    let mut sorted = runs.clone();
    sorted.sort_by_key(|r| r.first_page);
    let mut next = 0u64;
    for r in &sorted {
        if r.first_page != next {
            return Err(format!(
                "PATTERN-RUN lines do not cover pages contiguously: expected a run at page {next}, found one at {} (lost or garbled line?)",
                r.first_page
            ));
        }
        next = r.first_page + r.count;
    }
    if next != pages {
        return Err(format!(
            "PATTERN-RUN lines cover {next} pages but PATTERN-READY says {pages}"
        ));
    }
    if pages == 0 {
        return Err("pattern has zero pages".into());
    }
    Ok(PatternLog { seed, runs, pages })
}

/// Where a physical page can be found in the core file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// The page's bytes are at this file offset.
    Offset(u64),
    /// The page lies in a `PT_LOAD`'s `p_memsz` but beyond `p_filesz`
    /// (excluded from the dump, reads as zero).
    Excluded,
    /// No `PT_LOAD` describes the page.
    Missing,
}

/// Anything that can be read at an offset (a file, or a byte slice in tests).
pub trait ReadAt {
    fn read_at_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for File {
    fn read_at_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.read_exact_at(buf, offset)
    }
}

impl ReadAt for [u8] {
    fn read_at_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let end = start
            .checked_add(buf.len())
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        let src = self.get(start..end).ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
}

impl ReadAt for Vec<u8> {
    fn read_at_exact(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.as_slice().read_at_exact(buf, offset)
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Reads the `PT_LOAD` headers of a little-endian ELF64 file (`PN_XNUM`
/// extended numbering included).
pub fn read_loads<R: ReadAt + ?Sized>(f: &R) -> io::Result<Vec<Phdr>> {
    let mut eh = [0u8; EHDR_LEN];
    f.read_at_exact(&mut eh, 0)?;
    let eh = FileHeader::decode(&eh);
    if eh.magic() != ELF_MAGIC {
        return Err(invalid("not an ELF file".into()));
    }
    if !eh.is_elf64_le() {
        return Err(invalid(format!(
            "not ELF64 little-endian (class {}, data {})",
            eh.class(),
            eh.data_encoding()
        )));
    }
    let phentsize = usize::from(eh.e_phentsize);
    if phentsize < PHDR_LEN {
        return Err(invalid(format!("e_phentsize {phentsize} too small")));
    }
    let mut phnum = u64::from(eh.e_phnum);
    if eh.e_phnum == PN_XNUM {
        // The real count is sh_info of section header 0.
        let mut sh = [0u8; 64];
        f.read_at_exact(&mut sh, eh.e_shoff)?;
        phnum = section_header_info(&sh).map_or(0, u64::from);
    }
    let mut loads = Vec::new();
    let mut raw = [0u8; PHDR_LEN];
    for i in 0..phnum {
        let at = eh
            .program_header_offset(i)
            .ok_or_else(|| invalid(format!("program header {i} offset overflows")))?;
        f.read_at_exact(&mut raw, at)?;
        let ph = Phdr::decode(&raw);
        if ph.p_type == PT_LOAD {
            loads.push(ph);
        }
    }
    Ok(loads)
}

/// Finds the file offset of the page at physical address `pa`.  A page must
/// lie entirely inside one `PT_LOAD`'s file data.  Segments that describe the
/// kernel text by virtual address carry the same bytes at the same physical
/// address, so any segment that contains the page will do.
pub fn lookup(loads: &[Phdr], pa: u64) -> Lookup {
    let mut excluded = false;
    for l in loads {
        if pa >= l.p_paddr && pa + PAGE_SIZE <= l.p_paddr.saturating_add(l.p_filesz) {
            return Lookup::Offset(l.p_offset + (pa - l.p_paddr));
        }
        if pa >= l.p_paddr && pa < l.p_paddr.saturating_add(l.p_memsz) {
            excluded = true;
        }
    }
    if excluded {
        Lookup::Excluded
    } else {
        Lookup::Missing
    }
}

/// What went wrong with one page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    Excluded,
    ReadError(String),
    AllZero,
    Mismatch {
        word: usize,
        expected: u64,
        found: u64,
        bad_words: usize,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => write!(f, "physical address in no PT_LOAD"),
            Problem::Excluded => write!(f, "in a PT_LOAD's p_memsz but not its p_filesz (excluded)"),
            Problem::ReadError(e) => write!(f, "read error: {e}"),
            Problem::AllZero => write!(f, "page reads as all zero"),
            Problem::Mismatch { word, expected, found, bad_words } => write!(
                f,
                "word {word}: expected {expected:016x}, found {found:016x} ({bad_words}/{WORDS_PER_PAGE} words differ)"
            ),
        }
    }
}

/// One bad page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadPage {
    pub page: u64,
    pub pfn: u64,
    pub problem: Problem,
}

/// Result of checking every pattern page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub pages: u64,
    pub intact: u64,
    /// The first bad pages (at most `max_bad`), in page order.
    pub bad: Vec<BadPage>,
}

/// Checks every page of `log` in the core file `f`.
pub fn verify<R: ReadAt + ?Sized>(
    f: &R,
    loads: &[Phdr],
    log: &PatternLog,
    max_bad: usize,
) -> Report {
    let mut intact = 0;
    let mut bad = Vec::new();
    let mut buf = vec![0u8; PAGE_BYTES];
    let note = |bad: &mut Vec<BadPage>, page, pfn, problem| {
        if bad.len() < max_bad {
            bad.push(BadPage { page, pfn, problem });
        }
    };
    for (page, pfn) in log.pages() {
        let pa = pfn * PAGE_SIZE;
        let off = match lookup(loads, pa) {
            Lookup::Offset(o) => o,
            Lookup::Excluded => {
                note(&mut bad, page, pfn, Problem::Excluded);
                continue;
            }
            Lookup::Missing => {
                note(&mut bad, page, pfn, Problem::Missing);
                continue;
            }
        };
        if let Err(e) = f.read_at_exact(&mut buf, off) {
            note(&mut bad, page, pfn, Problem::ReadError(e.to_string()));
            continue;
        }
        let mut first = None;
        let mut bad_words = 0;
        for (w, chunk) in buf.chunks_exact(8).enumerate() {
            let found = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            let expected = pattern_word(log.seed, page, w as u64);
            if found != expected {
                bad_words += 1;
                first.get_or_insert((w, expected, found));
            }
        }
        match first {
            None => intact += 1,
            Some(_) if buf.iter().all(|&b| b == 0) => note(&mut bad, page, pfn, Problem::AllZero),
            Some((word, expected, found)) => note(
                &mut bad,
                page,
                pfn,
                Problem::Mismatch {
                    word,
                    expected,
                    found,
                    bad_words,
                },
            ),
        }
    }
    Report {
        pages: log.pages,
        intact,
        bad,
    }
}

#[cfg(test)]
#[allow(clippy::cast_possible_truncation)] // test sizes are tiny
mod tests {
    use super::*;
    use minicap_elfcore::PT_NOTE;

    #[test]
    fn splitmix64_reference_values() {
        // Reference: the splitmix64 generator seeded with 0 yields these
        // as its first outputs (state advances by the golden gamma, which
        // is what the finaliser of x, x+gamma, ... reproduces).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(splitmix64(0x3C6E_F372_FE94_F82A), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn pattern_words_differ_between_pages_and_words() {
        let a = page_bytes(1, 0);
        let b = page_bytes(1, 1);
        let c = page_bytes(2, 0);
        assert_eq!(a.len(), PAGE_SIZE as usize);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(pattern_word(1, 3, 7), splitmix64(1 ^ (3 << 9) ^ 7));
        let mut words = vec![0u64; WORDS_PER_PAGE];
        fill_page(1, 1, &mut words);
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(bytes, b);
    }

    #[test]
    fn runs_compress_consecutive_pfns() {
        let pfns = [10, 11, 12, 50, 49, 48, 100, 101];
        let runs = runs_from_pfns(&pfns);
        assert_eq!(
            runs,
            vec![
                Run {
                    first_pfn: 10,
                    first_page: 0,
                    count: 3
                },
                Run {
                    first_pfn: 50,
                    first_page: 3,
                    count: 1
                },
                Run {
                    first_pfn: 49,
                    first_page: 4,
                    count: 1
                },
                Run {
                    first_pfn: 48,
                    first_page: 5,
                    count: 1
                },
                Run {
                    first_pfn: 100,
                    first_page: 6,
                    count: 2
                },
            ]
        );
        assert!(runs_from_pfns(&[]).is_empty());
    }

    #[test]
    fn log_round_trip_with_console_noise() {
        let runs = vec![
            Run {
                first_pfn: 0x1234,
                first_page: 0,
                count: 3,
            },
            Run {
                first_pfn: 0x10,
                first_page: 3,
                count: 2,
            },
        ];
        let text = format_log(0xdead_beef, &runs, 5);
        let noisy = format!(
            "[    1.0] booting\r\nIOMEM-BEGIN\r\n{}[    2.0] sysrq: Trigger a crash\r\n",
            text.replace('\n', "\r\n")
        );
        let log = parse_log(&noisy).unwrap();
        assert_eq!(
            log,
            PatternLog {
                seed: 0xdead_beef,
                runs,
                pages: 5
            }
        );
        let pages: Vec<_> = log.pages().collect();
        assert_eq!(
            pages,
            vec![(0, 0x1234), (1, 0x1235), (2, 0x1236), (3, 0x10), (4, 0x11)]
        );
        // A prefix from another writer on the same line is tolerated.
        let log2 = parse_log("PATTERN-SEED 0x1\nxxPATTERN-RUN 0x5 0 1\nPATTERN-READY 1\n").unwrap();
        assert_eq!(
            log2.runs,
            vec![Run {
                first_pfn: 5,
                first_page: 0,
                count: 1
            }]
        );
    }

    #[test]
    fn log_errors() {
        assert!(parse_log("").unwrap_err().contains("no PATTERN-SEED"));
        assert!(parse_log("PATTERN-SEED 1\nPATTERN-RUN 5 0 1\n")
            .unwrap_err()
            .contains("no PATTERN-READY"));
        // Lost line in the middle.
        let e =
            parse_log("PATTERN-SEED 1\nPATTERN-RUN 5 0 1\nPATTERN-RUN 9 2 1\nPATTERN-READY 3\n")
                .unwrap_err();
        assert!(e.contains("contiguously"), "{e}");
        // Lost line at the end.
        let e = parse_log("PATTERN-SEED 1\nPATTERN-RUN 5 0 1\nPATTERN-READY 3\n").unwrap_err();
        assert!(e.contains("cover 1 pages"), "{e}");
        assert!(
            parse_log("PATTERN-SEED 1\nPATTERN-RUN zz 0 1\nPATTERN-READY 1\n")
                .unwrap_err()
                .contains("bad")
        );
        assert!(parse_log("PATTERN-SEED 1\nPATTERN-SEED 2\n")
            .unwrap_err()
            .contains("more than one"));
        assert!(parse_log("PATTERN-RUN 1 0 1\n")
            .unwrap_err()
            .contains("before"));
    }

    /// Builds a little ELF64 core: header, phdrs, then segment data.
    fn synthetic_core(segs: &[(u32, u64, u64, Vec<u8>, u64)], pn_xnum: bool) -> Vec<u8> {
        // segs: (p_type, vaddr, paddr, data, extra memsz beyond data)
        let n = segs.len() as u64;
        let phoff = 64u64;
        let shoff = phoff + 56 * n;
        let data_start = if pn_xnum { shoff + 64 } else { shoff };
        let mut out = vec![0u8; data_start as usize];
        out[0..4].copy_from_slice(b"\x7fELF");
        out[4] = 2;
        out[5] = 1;
        out[6] = 1;
        out[0x10..0x12].copy_from_slice(&4u16.to_le_bytes()); // ET_CORE
        out[0x12..0x14].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
        out[0x20..0x28].copy_from_slice(&phoff.to_le_bytes());
        out[0x34..0x36].copy_from_slice(&64u16.to_le_bytes());
        out[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        if pn_xnum {
            out[0x28..0x30].copy_from_slice(&shoff.to_le_bytes());
            out[0x38..0x3a].copy_from_slice(&0xffffu16.to_le_bytes());
            out[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
            out[0x3c..0x3e].copy_from_slice(&1u16.to_le_bytes());
            let sh = shoff as usize;
            out[sh + 0x2c..sh + 0x30].copy_from_slice(&(n as u32).to_le_bytes());
        } else {
            out[0x38..0x3a].copy_from_slice(&(n as u16).to_le_bytes());
        }
        let mut off = data_start;
        for (i, (ty, vaddr, paddr, data, extra)) in segs.iter().enumerate() {
            let p = (phoff + 56 * i as u64) as usize;
            out[p..p + 4].copy_from_slice(&ty.to_le_bytes());
            out[p + 8..p + 16].copy_from_slice(&off.to_le_bytes());
            out[p + 16..p + 24].copy_from_slice(&vaddr.to_le_bytes());
            out[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
            out[p + 32..p + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            out[p + 40..p + 48].copy_from_slice(&(data.len() as u64 + extra).to_le_bytes());
            off += data.len() as u64;
        }
        for (_, _, _, data, _) in segs {
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn elf_loads_and_lookup() {
        let core = synthetic_core(
            &[
                (PT_NOTE, 0, 0, vec![0; 20], 0),
                (PT_LOAD, 0xffff_8880_0000_1000, 0x1000, vec![1; 0x2000], 0),
                (PT_LOAD, 0, 0x10_0000, vec![2; 0x1000], 0x3000),
            ],
            false,
        );
        let loads = read_loads(&core).unwrap();
        assert_eq!(loads.len(), 2);
        assert_eq!(loads[0].p_paddr, 0x1000);
        assert_eq!(loads[0].p_filesz, 0x2000);
        assert_eq!(loads[1].p_memsz, 0x4000);
        let base0 = loads[0].p_offset;
        assert_eq!(lookup(&loads, 0x1000), Lookup::Offset(base0));
        assert_eq!(lookup(&loads, 0x2000), Lookup::Offset(base0 + 0x1000));
        assert_eq!(lookup(&loads, 0x3000), Lookup::Missing);
        assert_eq!(lookup(&loads, 0x0), Lookup::Missing);
        assert_eq!(lookup(&loads, 0x10_0000), Lookup::Offset(loads[1].p_offset));
        assert_eq!(lookup(&loads, 0x10_1000), Lookup::Excluded);
        assert_eq!(lookup(&loads, 0x10_4000), Lookup::Missing);
        // Extended program header numbering.
        let core = synthetic_core(&[(PT_LOAD, 0, 0x5000, vec![3; 0x1000], 0)], true);
        let loads = read_loads(&core).unwrap();
        assert_eq!(loads.len(), 1);
        assert_eq!(loads[0].p_paddr, 0x5000);
        let mut b = [0u8; 4];
        core.read_at_exact(&mut b, loads[0].p_offset).unwrap();
        assert_eq!(b, [3; 4]);
        assert!(read_loads(
            &b"not an elf file at all, really, no: padding padding padding pad".to_vec()
        )
        .is_err());
    }

    #[test]
    fn verify_synthetic_core() {
        let seed = 0x5eed;
        // Page 0 at pfn 0x20, pages 1..3 at pfns 0x11..0x12, page 3 at pfn 0x40.
        let log = PatternLog {
            seed,
            runs: vec![
                Run {
                    first_pfn: 0x20,
                    first_page: 0,
                    count: 1,
                },
                Run {
                    first_pfn: 0x11,
                    first_page: 1,
                    count: 2,
                },
                Run {
                    first_pfn: 0x40,
                    first_page: 3,
                    count: 1,
                },
            ],
            pages: 4,
        };
        // RAM 0x10000..0x30000 as one PT_LOAD, with the pattern pages placed.
        let mut ram = vec![0xAAu8; 0x20000];
        let put = |ram: &mut Vec<u8>, pfn: u64, page: u64| {
            let o = (pfn * PAGE_SIZE - 0x10000) as usize;
            ram[o..o + PAGE_SIZE as usize].copy_from_slice(&page_bytes(seed, page));
        };
        put(&mut ram, 0x20, 0);
        put(&mut ram, 0x11, 1);
        put(&mut ram, 0x12, 2);
        let good_high = page_bytes(seed, 3);
        let core = synthetic_core(
            &[
                (PT_LOAD, 0, 0x10000, ram.clone(), 0),
                (PT_LOAD, 0, 0x40000, good_high.clone(), 0),
            ],
            false,
        );
        let loads = read_loads(&core).unwrap();
        let r = verify(&core, &loads, &log, 10);
        assert_eq!(
            r,
            Report {
                pages: 4,
                intact: 4,
                bad: vec![]
            }
        );

        // Corrupt one word of page 2, zero page 0, drop the segment of page 3.
        let o = (0x12 * PAGE_SIZE - 0x10000) as usize + 8 * 5;
        ram[o] ^= 1;
        let o0 = (0x20 * PAGE_SIZE - 0x10000) as usize;
        ram[o0..o0 + PAGE_SIZE as usize].fill(0);
        let core = synthetic_core(&[(PT_LOAD, 0, 0x10000, ram, 0)], false);
        let loads = read_loads(&core).unwrap();
        let r = verify(&core, &loads, &log, 10);
        assert_eq!(r.intact, 1);
        assert_eq!(r.bad.len(), 3);
        assert_eq!(
            r.bad[0],
            BadPage {
                page: 0,
                pfn: 0x20,
                problem: Problem::AllZero
            }
        );
        match &r.bad[1].problem {
            Problem::Mismatch {
                word, bad_words, ..
            } => {
                assert_eq!((*word, *bad_words), (5, 1));
                assert_eq!(r.bad[1].page, 2);
            }
            p => panic!("unexpected {p:?}"),
        }
        assert_eq!(
            r.bad[2],
            BadPage {
                page: 3,
                pfn: 0x40,
                problem: Problem::Missing
            }
        );
        // max_bad limits the list, not the count.
        let r = verify(&core, &loads, &log, 1);
        assert_eq!((r.intact, r.bad.len()), (1, 1));
    }
}

//! The triage text from a synthetic crashed kernel (a lockless printk ring laid out as Linux
//! 6.1 lays it out, described by VMCOREINFO only) and, if present, from a real 6.1 vmcore
//! compared with `makedumpfile --dump-dmesg`.

use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write as _;

use minicap_dumpheader::TRIAGE_CAPACITY;
use minicap_elfcore::{CoreHeaders, LoadSegment, PrStatus, REG_COUNT, REG_NAMES};
use minicap_physmem::{MultiMem, SliceMem};
use minicap_vmcoreinfo::KERNEL_IMAGE_BASE;

use super::*;

const DIRECT_MAP: u64 = 0xffff_8880_0000_0000;
/// The fake kernel image: `prb`, the ring struct, descriptors and infos.
const IMAGE_PHYS: u64 = 0x100_0000;
/// The fake text ring, in direct-mapped memory.
const DATA_PHYS: u64 = 0x400_0000;
const PRB_VAR: u64 = 0x100;
const RB_STRUCT: u64 = 0x200;
const DESCS: u64 = 0x1000;
/// Linux 6.1 x86_64 sizes and offsets (the reader sees them only through VMCOREINFO).
const DESC_SIZE: u64 = 24;
const INFO_SIZE: u64 = 88;
const FINALIZED: u64 = 2 << 62;

/// One record of the fake log: timestamp (ns), caller id, text.
struct Rec<'a>(u64, u32, &'a [u8]);

/// A crashed kernel: its memory and its core headers.
struct Crash {
    image: Vec<u8>,
    data: Vec<u8>,
    core: CoreHeaders,
}

fn put(buf: &mut [u8], at: u64, bytes: &[u8]) {
    let at = usize::try_from(at).unwrap();
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

fn image_va(off: u64) -> u64 {
    KERNEL_IMAGE_BASE + IMAGE_PHYS + off
}

impl Crash {
    /// A ring holding `records` (oldest first, IDs 0..n), the CPUs' notes and `extra`
    /// VMCOREINFO lines.
    fn new(records: &[Rec<'_>], cpus: Vec<PrStatus>, extra: &str) -> Self {
        let n = u64::try_from(records.len()).unwrap();
        let count = (n + 1).next_power_of_two().max(16);
        let blocks: u64 = records
            .iter()
            .map(|r| (8 + u64::try_from(r.2.len()).unwrap()).div_ceil(8) * 8)
            .sum();
        let size = (blocks + 8).next_power_of_two().max(64);
        let infos = DESCS + count * DESC_SIZE;
        let mut image =
            vec![0u8; usize::try_from((infos + count * INFO_SIZE).div_ceil(4096) * 4096).unwrap()];
        let mut data = vec![0u8; usize::try_from(size).unwrap()];
        put(&mut image, PRB_VAR, &image_va(RB_STRUCT).to_le_bytes());
        put(&mut image, RB_STRUCT, &count.trailing_zeros().to_le_bytes());
        put(&mut image, RB_STRUCT + 8, &image_va(DESCS).to_le_bytes());
        put(&mut image, RB_STRUCT + 16, &image_va(infos).to_le_bytes());
        put(
            &mut image,
            RB_STRUCT + 24,
            &n.saturating_sub(1).to_le_bytes(),
        );
        put(&mut image, RB_STRUCT + 32, &0u64.to_le_bytes());
        put(
            &mut image,
            RB_STRUCT + 48,
            &size.trailing_zeros().to_le_bytes(),
        );
        put(
            &mut image,
            RB_STRUCT + 56,
            &(DIRECT_MAP + DATA_PHYS).to_le_bytes(),
        );
        let mut lpos = 0u64;
        for (id, rec) in (0u64..).zip(records) {
            let len = u64::try_from(rec.2.len()).unwrap();
            let next = lpos + (8 + len).div_ceil(8) * 8;
            put(&mut data, lpos, &id.to_le_bytes());
            put(&mut data, lpos + 8, rec.2);
            let desc = DESCS + id * DESC_SIZE;
            put(&mut image, desc, &(FINALIZED | id).to_le_bytes());
            put(&mut image, desc + 8, &lpos.to_le_bytes());
            put(&mut image, desc + 16, &next.to_le_bytes());
            let info = infos + id * INFO_SIZE;
            put(&mut image, info, &id.to_le_bytes());
            put(&mut image, info + 8, &rec.0.to_le_bytes());
            put(
                &mut image,
                info + 16,
                &u16::try_from(len).unwrap().to_le_bytes(),
            );
            put(&mut image, info + 20, &rec.1.to_le_bytes());
            lpos = next;
        }
        let mut vmcoreinfo = String::new();
        write!(
            vmcoreinfo,
            "OSRELEASE=6.1.0-test-amd64\nPAGESIZE=4096\nCRASHTIME=1700000000\n\
SYMBOL(prb)={:x}\nSIZE(printk_ringbuffer)=88\nOFFSET(printk_ringbuffer.desc_ring)=0\n\
OFFSET(printk_ringbuffer.text_data_ring)=48\nSIZE(prb_desc_ring)=48\n\
OFFSET(prb_desc_ring.count_bits)=0\nOFFSET(prb_desc_ring.descs)=8\n\
OFFSET(prb_desc_ring.infos)=16\nOFFSET(prb_desc_ring.head_id)=24\n\
OFFSET(prb_desc_ring.tail_id)=32\nSIZE(prb_desc)=24\nOFFSET(prb_desc.state_var)=0\n\
OFFSET(prb_desc.text_blk_lpos)=8\nSIZE(prb_data_blk_lpos)=16\n\
OFFSET(prb_data_blk_lpos.begin)=0\nOFFSET(prb_data_blk_lpos.next)=8\n\
SIZE(printk_info)=88\nOFFSET(printk_info.seq)=0\nOFFSET(printk_info.ts_nsec)=8\n\
OFFSET(printk_info.text_len)=16\nOFFSET(printk_info.caller_id)=20\n\
SIZE(prb_data_ring)=32\nOFFSET(prb_data_ring.size_bits)=0\nOFFSET(prb_data_ring.data)=8\n\
SIZE(atomic_long_t)=8\nOFFSET(atomic_long_t.counter)=0\nNUMBER(phys_base)=0\n{extra}",
            image_va(PRB_VAR)
        )
        .unwrap();
        let notes = vmcoreinfo.into_bytes();
        let loads = vec![
            LoadSegment {
                paddr: IMAGE_PHYS,
                vaddr: DIRECT_MAP + IMAGE_PHYS,
                memsz: u64::try_from(image.len()).unwrap(),
                source: IMAGE_PHYS,
                flags: 7,
            },
            LoadSegment {
                paddr: DATA_PHYS,
                vaddr: DIRECT_MAP + DATA_PHYS,
                memsz: size,
                source: DATA_PHYS,
                flags: 7,
            },
        ];
        let core = CoreHeaders {
            header_size: 64,
            e_ident: [0; 16],
            e_entry: 0,
            e_flags: 0,
            loads,
            vmcoreinfo: Some(0..notes.len()),
            notes,
            cpus,
            warnings: Vec::new(),
        };
        Self { image, data, core }
    }

    /// Renders into a buffer of `capacity` bytes; returns the text and the summary.
    fn render(&self, capacity: usize) -> (String, TriageSummary) {
        let regions = [
            SliceMem::new(IMAGE_PHYS, &self.image),
            SliceMem::new(DATA_PHYS, &self.data),
        ];
        let mem = MultiMem::new(&regions);
        let mut out = vec![0u8; capacity];
        let summary = render_triage(&mem, &self.core, &mut out);
        out.truncate(summary.len);
        (String::from_utf8(out).unwrap(), summary)
    }
}

/// A CPU whose registers are all distinct: register `r` of CPU `c` is `c << 32 | 0x1000 + r`.
fn cpu(c: u64, pid: u32) -> PrStatus {
    let mut regs = [0u64; REG_COUNT];
    for (r, reg) in (0u64..).zip(regs.iter_mut()) {
        *reg = c << 32 | (0x1000 + r);
    }
    PrStatus { pid, regs }
}

/// What makedumpfile prints for a record without caller column.
fn dmesg_line(ts: u64, text: &str) -> String {
    alloc::format!(
        "[{:5}.{:06}] {text}\n",
        ts / 1_000_000_000,
        ts % 1_000_000_000 / 1000
    )
}

/// The log section of a triage text.
fn log_section(text: &str) -> &str {
    let at = text.find(LOG_MARKER).expect("log marker");
    &text[at + LOG_MARKER.len()..]
}

fn sysrq_crash() -> Crash {
    Crash::new(
        &[
            Rec(0, 0, b"Linux version 6.1.0-test"),
            Rec(1_500_000_000, 1, b"Run /sbin/init as init process"),
            Rec(9_000_001_000, 0x8000_0001, b"random: crng init done"),
            Rec(12_345_678_912, 812, b"sysrq: Trigger a crash"),
            Rec(
                12_345_700_000,
                812,
                b"Kernel panic - not syncing: sysrq triggered crash",
            ),
            Rec(
                12_345_800_000,
                812,
                b"CPU: 1 PID: 812 Comm: bash\nCall Trace:",
            ),
        ],
        vec![cpu(0, 0), cpu(1, 812)],
        "",
    )
}

#[test]
fn heading_registers_and_log() {
    let crash = sysrq_crash();
    let (text, summary) = crash.render(usize::try_from(TRIAGE_CAPACITY).unwrap());
    assert!(
        text.starts_with("minicap triage\nkernel release: 6.1.0-test-amd64\n"),
        "{text}"
    );
    assert!(text.contains("crash time:     2023-11-14 22:13:20 UTC (1700000000)\n"));
    assert!(text.contains("cpus:           2 saved their registers\n"));
    assert!(text.contains(
        "panic cpu:      cpu 1: it ran pid 812, which wrote the log's last \"Kernel panic - \
         not syncing\" record\n"
    ));
    assert_eq!(summary.panic_cpu, Some(1));
    assert_eq!(summary.log, Ok(()));
    assert_eq!(
        (summary.records, summary.damaged, summary.dropped_bytes),
        (6, 0, 0)
    );
    assert_eq!(summary.len, text.len());

    // The panic CPU first, then the others; every register with its value.
    let panic_at = text.find("--- cpu 1 (panic cpu), pid 812 ---\n").unwrap();
    let other_at = text.find("--- cpu 0, pid 0 ---\n").unwrap();
    assert!(panic_at < other_at);
    for (c, at) in [(1u64, panic_at), (0, other_at)] {
        let block = &text[at..];
        for (r, name) in (0u64..).zip(REG_NAMES) {
            let want = alloc::format!("{name:>9} {:016x}", c << 32 | (0x1000 + r));
            assert!(block.contains(&want), "cpu {c}: {want}");
        }
    }
    assert!(text.contains("      rip 0000000100001010"));

    let expected = [
        dmesg_line(0, "Linux version 6.1.0-test"),
        dmesg_line(1_500_000_000, "Run /sbin/init as init process"),
        dmesg_line(9_000_001_000, "random: crng init done"),
        dmesg_line(12_345_678_912, "sysrq: Trigger a crash"),
        dmesg_line(
            12_345_700_000,
            "Kernel panic - not syncing: sysrq triggered crash",
        ),
        // An embedded newline is indented under the text, as makedumpfile does.
        dmesg_line(
            12_345_800_000,
            "CPU: 1 PID: 812 Comm: bash\n               Call Trace:",
        ),
    ]
    .concat();
    assert_eq!(log_section(&text), expected);
    assert!(text.ends_with("Call Trace:\n"));
}

#[test]
fn a_log_too_long_keeps_its_newest_records() {
    let texts: Vec<String> = (0..400)
        .map(|i| alloc::format!("record {i:03} {}", "x".repeat(i % 37)))
        .collect();
    let records: Vec<Rec<'_>> = (0u64..)
        .zip(&texts)
        .map(|(i, t)| Rec(i * 1_000_000, 5, t.as_bytes()))
        .collect();
    let crash = Crash::new(&records, vec![cpu(0, 5)], "");
    let (full, all) = crash.render(1 << 20);
    assert_eq!((all.records, all.dropped_bytes), (400, 0));
    let full_log = log_section(&full);

    for capacity in [6000, 8192, 12_000] {
        let (text, summary) = crash.render(capacity);
        assert!(text.len() <= capacity);
        assert_eq!(summary.len, text.len());
        // Heading and registers intact.
        let head = &full[..full.find(LOG_MARKER).unwrap()];
        assert!(text.starts_with(head));
        let log = log_section(&text);
        let (notice, kept) = log.split_once('\n').unwrap();
        assert_eq!(
            notice,
            alloc::format!(
                "[minicap: the oldest {} bytes of the log did not fit and are left out]",
                summary.dropped_bytes
            )
        );
        // The newest records, whole, exactly as in the full log.
        assert!(full_log.ends_with(kept), "{capacity}");
        assert!(kept.starts_with('['));
        assert_eq!(
            u64::try_from(full_log.len() - kept.len()).unwrap(),
            summary.dropped_bytes
        );
        assert_eq!(
            summary.records,
            u64::try_from(kept.lines().count()).unwrap()
        );
        assert!(summary.records < 400 && summary.records > 10, "{summary:?}");
        // It uses the room it has: at most the notice's reserve plus one record is left.
        assert!(
            capacity - text.len() < DROPPED_LINE_MAX + 80,
            "{capacity}: {}",
            text.len()
        );
    }
}

#[test]
fn no_vmcoreinfo_means_no_log_but_registers() {
    let mut crash = sysrq_crash();
    crash.core.vmcoreinfo = None;
    let (text, summary) = crash.render(1 << 16);
    assert_eq!(summary.log, Err(TriageLogError::NoVmcoreinfo));
    assert_eq!((summary.records, summary.panic_cpu), (0, None));
    assert!(text.contains("kernel release: unknown\n"));
    assert!(text.contains("panic cpu:      not identified (no kernel log)\n"));
    assert!(text.contains("--- cpu 1, pid 812 ---"));
    assert_eq!(
        log_section(&text),
        "[minicap: no kernel log: the ELF core headers have no VMCOREINFO note]\n"
    );
}

#[test]
fn vmcoreinfo_without_the_ring_is_a_typed_error() {
    let mut crash = sysrq_crash();
    // Rename the ring's symbol: VMCOREINFO then describes neither kind of log.
    let text = String::from_utf8(crash.core.notes.clone()).unwrap();
    crash.core.notes = text.replace("SYMBOL(prb)", "SYMBOL(prx)").into_bytes();
    let (out, summary) = crash.render(1 << 16);
    assert!(
        matches!(
            summary.log,
            Err(TriageLogError::Printk(PrintkError::MissingKey(_)))
        ),
        "{summary:?}"
    );
    assert!(log_section(&out).starts_with("[minicap: no kernel log: VMCOREINFO lacks "));
    // Nonsense sizes from VMCOREINFO are refused too.
    let mut crash = sysrq_crash();
    let text = String::from_utf8(crash.core.notes.clone()).unwrap();
    crash.core.notes = text
        .replace("SIZE(prb_desc)=24", "SIZE(prb_desc)=999999")
        .into_bytes();
    let (_, summary) = crash.render(1 << 16);
    assert!(
        matches!(
            summary.log,
            Err(TriageLogError::Printk(PrintkError::BadLayout(_)))
        ),
        "{summary:?}"
    );
}

#[test]
fn panic_cpu_by_cpu_caller_and_not_found() {
    let crash = Crash::new(
        &[Rec(1, 0x8000_0002, b"BUG: unable to handle page fault")],
        vec![cpu(0, 0), cpu(1, 0), cpu(2, 0)],
        "",
    );
    let (text, summary) = crash.render(1 << 16);
    assert_eq!(summary.panic_cpu, Some(2));
    assert!(text.contains("--- cpu 2 (panic cpu), pid 0 ---"));

    let crash = Crash::new(&[Rec(1, 7, b"all is well")], vec![cpu(0, 7)], "");
    let (text, summary) = crash.render(1 << 16);
    assert_eq!(summary.panic_cpu, None);
    assert!(text.contains("panic cpu:      not identified (no log record says"));
    assert!(!text.contains("(panic cpu)"));

    let crash = Crash::new(&[Rec(1, 99, b"Oops: 0002")], vec![cpu(0, 7), cpu(1, 8)], "");
    let (text, summary) = crash.render(1 << 16);
    assert_eq!(summary.panic_cpu, None);
    assert!(text.contains("not identified: pid 99 wrote the log's last \"Oops\" record and 0 cpus"));
}

#[test]
fn registers_of_many_cpus_are_bounded() {
    let cpus: Vec<PrStatus> = (0..1000)
        .map(|c| cpu(c, 1000 + u32::try_from(c).unwrap()))
        .collect();
    let crash = Crash::new(&[Rec(1, 1999, b"Oops: 0000")], cpus, "");
    let (text, summary) = crash.render(64 << 10);
    assert_eq!(summary.panic_cpu, Some(999));
    let first = text.find("--- cpu ").unwrap();
    assert_eq!(&text[first..first + 32], "--- cpu 999 (panic cpu), pid 199");
    assert!(text.find(LOG_MARKER).unwrap() <= 32 << 10);
    assert!(text.contains("more cpus left out]"));
    assert!(log_section(&text).ends_with("Oops: 0000\n"));
}

#[test]
fn tiny_buffers_never_overflow() {
    let crash = sysrq_crash();
    for capacity in [0, 1, 10, 100, 500, 1000, 2000] {
        let (text, summary) = crash.render(capacity);
        assert_eq!(text.len(), summary.len);
        assert!(summary.len <= capacity);
    }
}

#[test]
fn last_lines_of_the_log() {
    let text = b"minicap triage\nrip 1\n--- kernel log ---\na\nb\nc\n";
    assert_eq!(last_lines(text, 2), b"b\nc\n");
    assert_eq!(last_lines(text, 3), b"a\nb\nc\n");
    assert_eq!(last_lines(text, 10), b"a\nb\nc\n");
    assert_eq!(last_lines(text, 0), b"");
    // Without a final newline, and without a marker (the whole text is the log).
    assert_eq!(last_lines(b"--- kernel log ---\na\nb", 1), b"b");
    assert_eq!(last_lines(b"x\ny\n", 1), b"y\n");
    assert_eq!(last_lines(b"", 3), b"");
    let crash = sysrq_crash();
    let (text, _) = crash.render(1 << 16);
    assert_eq!(
        last_lines(text.as_bytes(), 2),
        b"[   12.345800] CPU: 1 PID: 812 Comm: bash\n               Call Trace:\n"
    );
}

/// The real 6.1 vmcore, if an end-to-end run left it: the log section is makedumpfile's
/// output byte for byte, the registers are the notes', and the sysrq crash's CPU is found.
#[test]
fn real_vmcore_triage_if_present() {
    let (Some(vmcore), Some(expected)) = (
        minicap_realvmcore::RealVmcore::open_if_present(),
        minicap_realvmcore::expected_dmesg(),
    ) else {
        return;
    };
    let vmcoreinfo = vmcore.vmcoreinfo_range();
    let cpus = prstatus_notes(&vmcore.notes);
    assert_eq!(cpus.len(), vmcore.cpu_count());
    let core = CoreHeaders {
        header_size: 64,
        e_ident: [0; 16],
        e_entry: 0,
        e_flags: 0,
        loads: vmcore.segments(),
        notes: vmcore.notes.clone(),
        cpus: cpus.clone(),
        vmcoreinfo: Some(vmcoreinfo),
        warnings: Vec::new(),
    };
    let mut out = vec![0u8; usize::try_from(TRIAGE_CAPACITY).unwrap()];
    let summary = render_triage(&vmcore, &core, &mut out);
    out.truncate(summary.len);
    let text = String::from_utf8(out).unwrap();
    assert_eq!(summary.log, Ok(()));
    assert_eq!(summary.damaged, 0);
    assert_eq!(summary.dropped_bytes, 0, "the 6.1 log fits in 1 MiB");
    let expected = String::from_utf8(expected).unwrap();
    assert!(expected.contains("sysrq: Trigger a crash"));
    assert_eq!(log_section(&text), expected);
    assert_eq!(
        summary.records,
        u64::try_from(expected.lines().filter(|l| l.starts_with('[')).count()).unwrap()
    );

    let release = core.vmcoreinfo_value("OSRELEASE").unwrap();
    assert!(text.contains(&alloc::format!("kernel release: {release}\n")));
    for (i, c) in cpus.iter().enumerate() {
        let role = if Some(i) == summary.panic_cpu {
            " (panic cpu)"
        } else {
            ""
        };
        let title = alloc::format!("--- cpu {i}{role}, pid {} ---\n", c.pid);
        let at = text.find(&title).unwrap_or_else(|| panic!("{title}"));
        for (name, value) in c.named_regs() {
            assert!(text[at..].contains(&alloc::format!("{name:>9} {value:016x}")));
        }
    }
    let panic = summary.panic_cpu.expect("the panic cpu is found");
    assert_ne!(cpus[panic].pid, 0, "sysrq runs in the writing task");
    // The kernel's own dump_stack() line after the panic names the same CPU and task.
    let banner = alloc::format!("CPU: {panic} PID: {} ", cpus[panic].pid);
    assert!(expected.contains(&banner), "{banner}");
    eprintln!(
        "triage: {} bytes, {} records, panic cpu {panic} (pid {})",
        summary.len, summary.records, cpus[panic].pid
    );
    let console = core::str::from_utf8(last_lines(text.as_bytes(), 5)).unwrap();
    assert!(expected.ends_with(console));
    assert_eq!(console.lines().count(), 5);
}

/// The "CORE"/`NT_PRSTATUS` notes of a note segment, in order.
fn prstatus_notes(notes: &[u8]) -> Vec<PrStatus> {
    let word = |at: usize| u32::from_le_bytes(notes[at..at + 4].try_into().unwrap());
    let pad = |n: u32| usize::try_from(n.div_ceil(4) * 4).unwrap();
    let mut cpus = Vec::new();
    let mut at = 0;
    while at + 12 <= notes.len() && word(at) != 0 {
        let (namesz, descsz, ntype) = (word(at), word(at + 4), word(at + 8));
        let desc = at + 12 + pad(namesz);
        if &notes[at + 12..at + 16] == b"CORE" && ntype == 1 {
            cpus.push(
                PrStatus::decode(&notes[desc..desc + usize::try_from(descsz).unwrap()]).unwrap(),
            );
        }
        at = desc + pad(descsz);
    }
    cpus
}

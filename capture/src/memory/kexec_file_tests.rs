//! The hand-over of the kernel's own crash loader (`kexec -s -p`, kexec_file_load(2)), built
//! byte for byte the way Linux builds it, through the same parsers and memory plan the capture
//! kernel runs:
//!
//! * boot_params as `bzImage64_load()` and `setup_boot_parameters()` fill it
//!   (arch/x86/kernel/kexec-bzimage64.c): the image's setup header copied in, `type_of_loader`
//!   0xD0, `loadflags` 0, the command line right after the page with `"elfcorehdr=0x%lx "`
//!   prepended (`setup_cmdline()`), `setup_data` nodes for EFI, the RNG seed and IMA inside the
//!   same segment;
//! * the e820 map of `crash_setup_memmap_entries()` (arch/x86/kernel/crash.c): System RAM below
//!   1 MiB, then ACPI, NVS and reserved ranges, then the crash region minus the ELF core
//!   headers, unsorted, at most 128 entries, no SETUP_E820_EXT;
//! * core headers as `crash_prepare_elf64_headers()` writes them: a note per CPU, VMCOREINFO,
//!   the kernel text, one PT_LOAD per System RAM range minus [0, 1 MiB) and the crash region,
//!   every `p_offset` equal to `p_paddr` (no backup region).

use super::*;
use alloc::vec::Vec;
use minicap_bootinfo::cmdline;
use minicap_bootinfo::setup_data::{SETUP_EFI, SETUP_IMA, SETUP_RNG_SEED};
use minicap_bootinfo::{walk_e820_ext, BootParams, E820_MAX_ZEROPAGE_ENTRIES};
use minicap_elfcore::{
    build_core_headers, for_each_load_range, parse_core_headers, CoreHeaderSpec, KernelText,
    NoteBuffer,
};
use minicap_physmem::{MultiMem, PhysMem, SliceMem};

const CRASHK: Range<u64> = 0x3d00_0000..0x3f00_0000;
/// kexec_file loads the core headers first, bottom-up: at the crash region's start.
const ELFCOREHDR: u64 = CRASHK.start;
/// The boot_params segment (page, command line, EFI map, setup_data), placed top-down.
const BOOT_PARAMS: u64 = 0x3eff_c000;
const CPU_NOTES: [u64; 2] = [0x3fc1_5000, 0x3fc3_5000];
const VMCOREINFO: u64 = 0x0263_2000;
const USER_CMDLINE: &str = "console=ttyS0 minicap.target=virtio-blk";

fn e(addr: u64, end: u64, kind: u32) -> E820Entry {
    E820Entry {
        addr,
        size: end - addr,
        kind: E820Kind::from_raw(kind),
    }
}

/// `crash_setup_memmap_entries()` on a 1 GiB machine with `crashkernel=32M`: low RAM first,
/// then ACPI, NVS, the reserved ranges in /proc/iomem order, then the crash region minus the
/// core headers (which end 0x400 bytes into it: the piece after them is not page aligned).
fn kexec_file_map(headers_len: u64) -> Vec<E820Entry> {
    vec![
        e(0x1000, 0x9_fc00, 1),
        e(0x3ffd_0000, 0x3ffe_0000, 3),
        e(0x3ffe_0000, 0x3fff_0000, 4),
        e(0x0, 0x1000, 2),
        e(0x9_fc00, 0xa_0000, 2),
        e(0xf_0000, 0x10_0000, 2),
        e(0x3fff_0000, 0x4000_0000, 2),
        e(0xb000_0000, 0xc000_0000, 2),
        e(0xfed1_c000, 0xfed2_0000, 2),
        e(0xfffc_0000, 0x1_0000_0000, 2),
        e(ELFCOREHDR + headers_len, CRASHK.end, 1),
    ]
}

fn ranges<const N: usize>(s: &RangeSet<N>) -> Vec<(u64, u64)> {
    s.iter().map(|r| (r.start, r.end)).collect()
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A note with `name` (NUL included) and `desc`, then the empty note that ends the buffer.
fn note_buffer(name: &[u8], kind: u32, desc: &[u8], size: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
    b.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(name);
    b.resize(b.len().next_multiple_of(4), 0);
    b.extend_from_slice(desc);
    b.resize(b.len().next_multiple_of(4), 0);
    b.resize(size, 0);
    b
}

/// The boot_params segment: the zero page, the command line at +0x1000, then three setup_data
/// nodes (SETUP_EFI, SETUP_RNG_SEED, SETUP_IMA) none of which minicap reads.
fn boot_params_segment(e820: &[E820Entry], cmdline: &str) -> Vec<u8> {
    let mut seg = vec![0u8; 0x2000];
    // The setup header as bzImage64_load() copies it from minicap.bzImage (0x1f1..0x270), then
    // what it and setup_cmdline() change.
    seg[0x1f1] = 1;
    put(&mut seg, 0x1fe, &0xaa55u16.to_le_bytes());
    put(&mut seg, 0x200, &[0xeb, 0x6e]);
    put(&mut seg, 0x202, b"HdrS");
    put(&mut seg, 0x206, &0x020fu16.to_le_bytes());
    seg[0x210] = 0xd0; // type_of_loader: kexec
    seg[0x211] = 0; // loadflags cleared
    put(&mut seg, 0x230, &0x1000u32.to_le_bytes());
    put(&mut seg, 0x236, &0x23u16.to_le_bytes());
    put(&mut seg, 0x238, &2048u32.to_le_bytes());
    let cmdline_addr = BOOT_PARAMS + 0x1000;
    put(
        &mut seg,
        0x228,
        &u32::try_from(cmdline_addr).unwrap().to_le_bytes(),
    );
    put(&mut seg, 0x0c8, &0u32.to_le_bytes()); // ext_cmd_line_ptr: below 4 GiB
    put(&mut seg, 0x1000, cmdline.as_bytes());
    put(&mut seg, 0x070, &0xf_5b00u64.to_le_bytes()); // acpi_rsdp_addr

    seg[0x1e8] = u8::try_from(e820.len()).unwrap();
    for (i, entry) in e820.iter().enumerate() {
        let at = 0x2d0 + i * 20;
        put(&mut seg, at, &entry.addr.to_le_bytes());
        put(&mut seg, at + 8, &entry.size.to_le_bytes());
        put(&mut seg, at + 16, &entry.kind.raw().to_le_bytes());
    }

    // setup_data nodes after the command line, 16-byte aligned, linked through hdr.setup_data.
    let nodes = [(SETUP_EFI, 48usize), (SETUP_RNG_SEED, 32), (SETUP_IMA, 16)];
    let mut at = (0x1000 + cmdline.len() + 1).next_multiple_of(16);
    put(&mut seg, 0x250, &(BOOT_PARAMS + at as u64).to_le_bytes());
    for (i, (kind, len)) in nodes.iter().enumerate() {
        let next_at = (at + 16 + len).next_multiple_of(16);
        let next = if i + 1 < nodes.len() {
            BOOT_PARAMS + next_at as u64
        } else {
            0
        };
        put(&mut seg, at, &next.to_le_bytes());
        put(&mut seg, at + 8, &kind.to_le_bytes());
        put(
            &mut seg,
            at + 12,
            &u32::try_from(*len).unwrap().to_le_bytes(),
        );
        seg[at + 16..at + 16 + len].fill(0xa5);
        at = next_at;
    }
    seg
}

/// The core headers `crash_prepare_elf64_headers()` writes for that machine.
fn kexec_file_core_headers() -> Vec<u8> {
    build_core_headers(&CoreHeaderSpec {
        cpu_notes: &CPU_NOTES.map(|addr| NoteBuffer { addr, size: 368 }),
        vmcoreinfo: Some(NoteBuffer {
            addr: VMCOREINFO,
            size: 4132,
        }),
        kernel_text: Some(KernelText {
            paddr: 0x0100_0000,
            vaddr: 0xffff_ffff_8100_0000,
            size: 0x0200_0000,
        }),
        // System RAM [0x1000, 0x9fc00) and [1 MiB, 0x3ffd0000), minus [0, 1 MiB) and the
        // crash region.
        ram: &[0x10_0000..CRASHK.start, CRASHK.end..0x3ffd_0000],
        page_offset: 0xffff_8880_0000_0000,
    })
    .unwrap()
}

struct OldMachine {
    boot_params: Vec<u8>,
    headers: Vec<u8>,
    cpu_notes: Vec<Vec<u8>>,
    vmcoreinfo: Vec<u8>,
}

impl OldMachine {
    fn new(cmdline: &str) -> Self {
        let headers = kexec_file_core_headers();
        let headers_len = u64::try_from(headers.len()).unwrap();
        let prstatus = vec![0u8; 336];
        Self {
            boot_params: boot_params_segment(&kexec_file_map(headers_len), cmdline),
            headers,
            cpu_notes: CPU_NOTES
                .iter()
                .map(|_| note_buffer(b"CORE\0", 1, &prstatus, 368))
                .collect(),
            vmcoreinfo: note_buffer(
                b"VMCOREINFO\0",
                0,
                b"OSRELEASE=6.1.0-57-cloud-amd64\nPAGESIZE=4096\n",
                4132,
            ),
        }
    }

    fn with_memory<T>(&self, f: impl FnOnce(&MultiMem<'_>) -> T) -> T {
        let regions = [
            SliceMem::new(BOOT_PARAMS, &self.boot_params),
            SliceMem::new(ELFCOREHDR, &self.headers),
            SliceMem::new(CPU_NOTES[0], &self.cpu_notes[0]),
            SliceMem::new(CPU_NOTES[1], &self.cpu_notes[1]),
            SliceMem::new(VMCOREINFO, &self.vmcoreinfo),
        ];
        f(&MultiMem::new(&regions))
    }
}

/// `setup_cmdline()`: the kernel prepends `"elfcorehdr=0x%lx "` to the user's line.
fn kexec_file_cmdline() -> String {
    format!("elfcorehdr=0x{ELFCOREHDR:x} {USER_CMDLINE}")
}

#[test]
fn the_kexec_file_boot_params_parse_with_their_unsorted_map_and_unknown_setup_data() {
    let old = OldMachine::new(&kexec_file_cmdline());
    let headers_len = u64::try_from(old.headers.len()).unwrap();
    old.with_memory(|mem| {
        let mut page = [0u8; 4096];
        mem.read(BOOT_PARAMS, &mut page).unwrap();
        let params = BootParams::parse(&page).unwrap();
        assert_eq!(params.protocol_version(), 0x020f);
        assert_eq!(params.cmdline_size(), 2048);
        assert_eq!(params.acpi_rsdp_addr(), 0xf_5b00);
        // The map as the loader wrote it, order kept: minicap never assumes it sorted.
        let e820: Vec<E820Entry> = params.e820_entries().collect();
        assert_eq!(e820, kexec_file_map(headers_len));

        // EFI, RNG seed and IMA nodes are walked past; none adds memory.
        let mut extra = Vec::new();
        walk_e820_ext(
            params.setup_data(),
            |a, b| mem.read(a, b),
            |e| extra.push(e),
        )
        .unwrap();
        assert!(extra.is_empty());

        // The command line right after the page; the prepended elfcorehdr= is found and the
        // user's options are still there.
        assert_eq!(params.cmd_line_addr(), BOOT_PARAMS + 0x1000);
        let mut raw = [0u8; 2048];
        mem.read(params.cmd_line_addr(), &mut raw[..256]).unwrap();
        let line = cmdline::from_bytes(&raw).unwrap();
        assert!(line.starts_with("elfcorehdr=0x3d000000 console=ttyS0"));
        let arg = cmdline::elfcorehdr(line).unwrap().unwrap();
        assert_eq!((arg.addr, arg.size), (ELFCOREHDR, None));
        let options = cmdline::MinicapOptions::parse(line, |w| panic!("warning: {w}")).unwrap();
        assert_eq!(options.target, cmdline::DumpTarget::VirtioBlk);
    });
}

#[test]
fn the_kexec_file_core_headers_describe_ram_read_in_place() {
    let old = OldMachine::new(&kexec_file_cmdline());
    old.with_memory(|mem| {
        let core = parse_core_headers(mem, ELFCOREHDR).unwrap();
        assert_eq!(core.cpus.len(), 2);
        assert_eq!(
            core.vmcoreinfo_value("OSRELEASE"),
            Some("6.1.0-57-cloud-amd64")
        );
        assert!(core.warnings.is_empty(), "{:?}", core.warnings);
        // Kernel text, then the two RAM ranges; no backup copy: every PT_LOAD is read where
        // it was, and none lies in the low 1 MiB or the crash region.
        assert_eq!(core.loads.len(), 3);
        for load in &core.loads {
            assert_eq!(load.source, load.paddr);
            assert!(load.paddr >= ONE_MIB);
            let end = load.paddr + load.memsz;
            assert!(end <= CRASHK.start || load.paddr >= CRASHK.end);
        }
    });
}

/// The memory plan the capture kernel runs (kernel/src/capture.rs), on the kexec_file map.
#[test]
fn the_kexec_file_map_gives_the_crash_region_minus_the_handover_and_never_low_memory() {
    let old = OldMachine::new(&kexec_file_cmdline());
    let headers_len = u64::try_from(old.headers.len()).unwrap();
    let map = kexec_file_map(headers_len);
    old.with_memory(|mem| {
        // Low RAM is listed as RAM, but minicap does not use it: it is dumped from where it is.
        let mut free = usable_ram(map.iter().copied()).unwrap();
        assert_eq!(
            ranges(&free),
            [(page_ceil(ELFCOREHDR + headers_len).unwrap(), CRASHK.end)]
        );
        let mut loads = Vec::new();
        let header_size = for_each_load_range(mem, ELFCOREHDR, |r| {
            exclude(&mut free, r.clone()).unwrap();
            loads.push(r);
        })
        .unwrap();
        // Ehdr + 2 CPU notes + VMCOREINFO + text + 2 RAM; the buffer is rounded to 1 KiB.
        assert_eq!(header_size, 64 + 6 * 56);
        assert_eq!(headers_len, 1024);
        let image = 0x3ef0_0000..0x3efb_1000;
        for r in &loads {
            check_not_minicap(ELFCOREHDR, r.clone(), image.clone()).unwrap();
        }
        for r in [
            image,
            BOOT_PARAMS..BOOT_PARAMS + 0x1000,
            BOOT_PARAMS + 0x1000..BOOT_PARAMS + 0x1800,
            elfcorehdr_range(ELFCOREHDR, None, header_size).unwrap(),
        ] {
            exclude(&mut free, r).unwrap();
        }
        let heap = choose_heap(&free).unwrap();
        assert_eq!(heap, 0x3d00_1000..0x3ef0_0000);

        // No RAM PT_LOAD touches a reserved, ACPI or NVS range: nothing is skipped.
        let core = parse_core_headers(mem, ELFCOREHDR).unwrap();
        let skipped = outside_ram(ELFCOREHDR, map.iter().copied(), &core.loads).unwrap();
        assert_eq!(skipped.len(), 0);
    });
}

/// `add_e820_entry()` stops at E820_MAX_ENTRIES_ZEROPAGE: a machine with many reserved ranges
/// fills all 128 slots, still unsorted.
#[test]
fn a_full_128_entry_kexec_file_map_is_read_whole() {
    let mut map = kexec_file_map(0x400);
    let crash = map.pop().unwrap();
    // Reserved pages above 4 GiB, as many as fit, in descending order.
    let room = E820_MAX_ZEROPAGE_ENTRIES - map.len() - 1;
    for i in (0..room as u64).rev() {
        let at = 0x1_0000_0000 + i * 0x10_0000;
        map.push(e(at, at + 0x1000, 2));
    }
    map.push(crash);
    assert_eq!(map.len(), E820_MAX_ZEROPAGE_ENTRIES);
    let seg = boot_params_segment(&map, &kexec_file_cmdline());
    let params = BootParams::parse(&seg[..4096]).unwrap();
    let read: Vec<E820Entry> = params.e820_entries().collect();
    assert_eq!(read, map);
    let free = usable_ram(read.into_iter()).unwrap();
    assert_eq!(ranges(&free), [(0x3d00_1000, CRASHK.end)]);
}

//! The capture, as a straight sequence of phases:
//!
//! 1. **take over**: serial console, CPU tables, TSC;
//! 2. **parse**: boot_params, command line, `minicap.*` options, the ELF core
//!    headers at `elfcorehdr=`;
//! 3. **plan**: memory (heap, own page tables), interrupt controllers masked,
//!    the vmcore layout, the dump device (found, identified, big enough);
//! 4. **write**: the minicap header ("writing"), the vmcore straight from old
//!    memory by DMA, progress, the header ("complete", SHA-256);
//! 5. **finish**: reboot, halt or power off.
//!
//! Any failure ends the run with one `minicap: RESULT: failure: ...` line and
//! leaves anything already on the device intact and described by its header.

// Failures carry their message inline: some happen before there is a heap.
#![allow(clippy::result_large_err)]

use crate::console::{FixedString, Size};
use crate::hw::phys::{self, IdentityMem};
use crate::hw::platform::Machine;
use crate::hw::{apic, cpu, heap, paging, pic, serial, tsc};
use crate::{fault, finish, memory, say};
use alloc::vec::Vec;
use core::fmt::Write;
use core::ops::Range;
use minicap_bootinfo::cmdline::{self, DumpFormat, DumpTarget, MinicapOptions};
use minicap_bootinfo::{walk_e820_ext, BootParams, E820Entry, E820Kind, RangeSet};
use minicap_drivers::pci::{self, PciAddress};
use minicap_drivers::virtio::{is_virtio_blk, VirtioBlk};
use minicap_drivers::{BlockDevice, Platform};
use minicap_dumpheader::{self as dumpheader, DeviceIdHex, DumpHeader, DumpState, DUMP_OFFSET};
use minicap_elfcore::{parse_core_headers, plan_vmcore, CoreHeaders, VmcoreLayout};
use minicap_physmem::PhysMem;
use sha2::{Digest, Sha256};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const PAGE: u64 = 4096;
const PAGE_BYTES: usize = 4096;
const MAX_CMDLINE: usize = 4096;
const MAX_E820: usize = 1024;
const MAX_VIRTIO_DEVICES: usize = 16;
/// How often the header's `written` field is brought up to date (percent).
const CHECKPOINT_PERCENT: u64 = 10;

/// Why the capture stopped: one human-readable sentence.
pub struct Failure(FixedString<256>);

impl Failure {
    fn new(args: core::fmt::Arguments<'_>) -> Self {
        let mut text = FixedString::new();
        let _ = text.write_fmt(args);
        Failure(text)
    }

    fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

macro_rules! failure {
    ($($arg:tt)*) => { Failure::new(format_args!($($arg)*)) };
}

/// What a successful capture did.
struct Summary {
    bytes: u64,
    elapsed_us: u64,
    device: FixedString<96>,
    sha256: [u8; 32],
}

/// The whole run; never returns.
pub fn run(boot_params: u64, load_base: u64) -> ! {
    serial::init();
    say!("minicap {VERSION}: crash-dump capture kernel starting (image at {load_base:#x})");
    cpu::take_over();
    let clock = tsc::calibrate();
    say!(
        "CPU tables loaded; TSC {}.{:03} MHz ({})",
        clock.khz / 1000,
        clock.khz % 1000,
        if clock.measured {
            "calibrated against the PIT"
        } else {
            "PIT silent: assumed"
        }
    );
    match capture(boot_params) {
        Ok(s) => {
            let mib_s = mib_per_s(s.bytes, s.elapsed_us);
            say!(
                "RESULT: success: wrote {} bytes ({}) to {} in {}.{:03} s ({}.{} MiB/s), sha256 {}",
                s.bytes,
                Size(s.bytes),
                s.device.as_str(),
                s.elapsed_us / 1_000_000,
                (s.elapsed_us / 1000) % 1000,
                mib_s / 10,
                mib_s % 10,
                Hex(&s.sha256)
            );
        }
        Err(failure) => say!("RESULT: failure: {}", failure.as_str()),
    }
    if fault::nmi_count() > 0 {
        say!(
            "{} NMI(s) arrived during the capture and were ignored",
            fault::nmi_count()
        );
    }
    finish::leave(fault::after())
}

/// MiB/s × 10.
fn mib_per_s(bytes: u64, us: u64) -> u64 {
    if us == 0 {
        return 0;
    }
    u64::try_from(u128::from(bytes) * 10_000_000 / (u128::from(us) << 20)).unwrap_or(u64::MAX)
}

struct Hex<'a>(&'a [u8]);

impl core::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// The e820 map the loader passed: zero page plus SETUP_E820_EXT nodes.
struct E820Map {
    entries: [E820Entry; MAX_E820],
    len: usize,
}

impl E820Map {
    fn iter(&self) -> impl Iterator<Item = E820Entry> + '_ {
        self.entries[..self.len].iter().copied()
    }
}

static E820: spin::Mutex<E820Map> = spin::Mutex::new(E820Map {
    entries: [E820Entry {
        addr: 0,
        size: 0,
        kind: E820Kind::Reserved,
    }; MAX_E820],
    len: 0,
});

fn capture(boot_params: u64) -> Result<Summary, Failure> {
    // ---- parse: boot_params and the command line ----
    let mut zero_page = [0u8; 4096];
    IdentityMem.read(boot_params, &mut zero_page).map_err(|e| {
        failure!("boot_params at {boot_params:#x} (%rsi at entry) is not readable: {e}")
    })?;
    let params = BootParams::parse(&zero_page)
        .map_err(|e| failure!("invalid boot_params at {boot_params:#x}: {e}"))?;
    finish::RSDP_HINT.call_once(|| params.acpi_rsdp_addr());

    let mut e820 = E820.lock();
    for entry in params.e820_entries() {
        if e820.len < MAX_E820 {
            let n = e820.len;
            e820.entries[n] = entry;
            e820.len += 1;
        }
    }
    let ext = walk_e820_ext(
        params.setup_data(),
        |addr, buf| IdentityMem.read(addr, buf),
        |entry| {
            if e820.len < MAX_E820 {
                let n = e820.len;
                e820.entries[n] = entry;
                e820.len += 1;
            }
        },
    );
    if let Err(e) = ext {
        say!("warning: setup_data chain: {e}");
    }

    let cmdline_addr = params.cmd_line_addr();
    let cmdline_len = usize::try_from(params.cmdline_size())
        .unwrap_or(MAX_CMDLINE)
        .min(MAX_CMDLINE);
    let mut cmdline_buf = [0u8; MAX_CMDLINE];
    let cmdline_read = read_until_unmapped(cmdline_addr, &mut cmdline_buf[..cmdline_len]);
    let cmdline = match cmdline::from_bytes(&cmdline_buf[..cmdline_read]) {
        Ok(s) => s,
        Err(e) => {
            say!(
                "warning: command line is not UTF-8 after byte {}; using the part before",
                e.valid_up_to()
            );
            core::str::from_utf8(&cmdline_buf[..e.valid_up_to()]).unwrap_or("")
        }
    };
    say!("command line: {cmdline}");

    let options = MinicapOptions::parse(cmdline, |w| say!("warning: {w}"))
        .map_err(|e| failure!("bad minicap option: {e}"))?;
    fault::set_after(options.after);
    let DumpTarget::VirtioBlk = options.target;
    let DumpFormat::Elf = options.format;
    say!(
        "options: target={} format={} after={} device={}",
        options.target,
        options.format,
        options.after,
        match &options.device {
            Some(id) => DeviceIdOrAny(Some(*id)),
            None => DeviceIdOrAny(None),
        }
    );

    let header_arg = cmdline::elfcorehdr(cmdline)
        .map_err(|e| failure!("{e}"))?
        .ok_or_else(|| {
            failure!("no elfcorehdr= on the command line: load minicap with `kexec -p minicap.elf --args-linux` so that the ELF core headers are prepared; nothing was written")
        })?;
    let core_addr = header_arg.addr;
    let mut ehdr = [0u8; 64];
    IdentityMem.read(core_addr, &mut ehdr).map_err(|e| {
        failure!("elfcorehdr={core_addr:#x} lies outside memory ({e}); nothing was written")
    })?;
    let phnum = u64::from(u16::from_le_bytes([ehdr[56], ehdr[57]]));
    let core_len = (64 + phnum * 56)
        .max(header_arg.size.unwrap_or(0))
        .min(minicap_elfcore::MAX_HEADER_SIZE);

    // ---- plan: memory ----
    let (image_start, image_end) = crate::hw::image_range();
    let reserved: [Range<u64>; 4] = [
        image_start..image_end,
        boot_params..boot_params + PAGE,
        cmdline_addr..cmdline_addr + cmdline_len as u64,
        core_addr..core_addr + core_len,
    ];
    let free = memory::free_ranges(e820.iter(), &reserved).map_err(|e| failure!("{e}"))?;
    let heap_range = memory::init_heap(&free).map_err(|e| failure!("{e}"))?;
    say!(
        "memory: {} usable in the crash region; heap {:#x}-{:#x} ({})",
        Size(free.total()),
        heap_range.start,
        heap_range.end,
        Size(heap_range.end - heap_range.start)
    );

    // ---- parse: the ELF core headers ----
    let core = parse_core_headers(&IdentityMem, core_addr).map_err(|e| {
        failure!("ELF core headers at {core_addr:#x} are unusable: {e}; nothing was written")
    })?;
    for warning in &core.warnings {
        say!("warning: {warning}");
    }
    report_crash(&core);

    // ---- plan: own page tables over RAM, the dump's ranges and MMIO ----
    let mut cached = RangeSet::<512>::new();
    let mut top = 0u64;
    let mut cache = |r: Range<u64>| -> Result<(), Failure> {
        top = top.max(r.end);
        cached
            .insert((r.start & !(PAGE - 1))..r.end.div_ceil(PAGE) * PAGE)
            .map_err(|e| failure!("memory map too fragmented: {e}"))
    };
    for entry in e820.iter() {
        let ram_like = matches!(
            entry.kind,
            E820Kind::Ram | E820Kind::Acpi | E820Kind::Nvs | E820Kind::Pmem | E820Kind::Pram
        );
        if let (true, Some(end)) = (ram_like, entry.end()) {
            cache(entry.addr..end)?;
        }
    }
    for load in &core.loads {
        cache(load.paddr..load.paddr.saturating_add(load.memsz))?;
        cache(load.source..load.source.saturating_add(load.memsz))?;
    }
    for r in reserved.iter().chain(core::iter::once(&heap_range)) {
        cache(r.clone())?;
    }
    drop(e820);
    let (tables, depth, gbpages) = memory::build_identity_map(&cached, top)
        .map_err(|_| failure!("out of memory for page tables (raise crashkernel=)"))?;
    say!(
        "page tables: own identity map, {depth}-level, {} pages, up to {:#x}, {} pages",
        if gbpages { "1 GiB" } else { "2 MiB" },
        top.max(4 << 30),
        tables
    );

    // ---- plan: interrupt controllers into a known, silent state ----
    pic::remap_and_mask();
    let lapic = apic::mask_local_apic();
    let acpi = crate::acpi::discover(&IdentityMem, params.acpi_rsdp_addr());
    let mut ioapic_entries = 0;
    let io_apics = acpi
        .as_ref()
        .map_or(&[][..], |a| &a.io_apics[..a.io_apic_count]);
    for &base in io_apics {
        if paging::map_mmio(base, 0x20) {
            ioapic_entries += apic::mask_io_apic(base);
        }
    }
    let (pic1, pic2) = pic::masks();
    say!(
        "interrupts: 8259 remapped and masked ({pic1:#04x}/{pic2:#04x}); local APIC id {} {}{}, LVTs 0..={} masked; {} IO-APIC(s), {} entries masked",
        lapic.id,
        if !lapic.enabled { "disabled" } else if lapic.x2apic { "x2APIC" } else { "xAPIC" },
        if lapic.bsp { " (BSP)" } else { " (not the BSP: the crash happened on another CPU)" },
        lapic.max_lvt,
        io_apics.len(),
        ioapic_entries
    );

    // ---- plan: the vmcore and the device ----
    let layout = plan_vmcore(&core).map_err(|e| failure!("cannot lay out the vmcore: {e}"))?;
    say!(
        "dump: ELF vmcore of {} bytes ({}): {} PT_LOAD(s), {} bytes of notes",
        layout.total_len,
        Size(layout.total_len),
        layout.chunks.len(),
        core.notes.len()
    );
    let machine = Machine;
    let (mut device, found) = find_dump_device(&machine, options.device)?;
    let mut name = FixedString::<96>::new();
    let _ = device.describe(&mut name);
    let required = dumpheader::required_capacity(layout.total_len);
    if device.capacity() < required {
        return Err(failure!(
            "dump device {} is too small: the dump needs {} bytes ({}), the device has {} bytes ({}); nothing was written",
            name.as_str(),
            required,
            Size(required),
            device.capacity(),
            Size(device.capacity())
        ));
    }
    if found.state != DumpState::Empty {
        say!(
            "note: the device held a {} dump (crash time {}); it is replaced",
            found.state.as_str(),
            found.crash_time
        );
    }
    say!(
        "target: {} id {}",
        name.as_str(),
        DeviceIdHex(&found.device_id)
    );

    // ---- write ----
    let mut header = DumpHeader::new_empty(found.device_id, device.capacity(), "");
    header.set_writer(concat!("minicap ", env!("CARGO_PKG_VERSION")));
    header.state = DumpState::Writing;
    header.format = dumpheader::DumpFormat::ElfVmcore;
    header.dump_offset = DUMP_OFFSET;
    header.dump_length = layout.total_len;
    header.written = 0;
    header.crash_time = core
        .vmcoreinfo_value("CRASHTIME")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0);
    if let Some(release) = core.vmcoreinfo_value("OSRELEASE") {
        header.set_osrelease(release.trim());
    }
    let header_page = machine
        .dma_alloc(PAGE_BYTES, PAGE_BYTES)
        .ok_or_else(|| failure!("out of memory for the header buffer"))?;
    write_header(&mut device, header_page, &header).map_err(|e| {
        failure!(
            "cannot write the minicap header to {}: {e}; nothing was written",
            name.as_str()
        )
    })?;

    let started = tsc::now_us();
    match write_vmcore(&mut device, header_page, &mut header, &core, &layout) {
        Ok(sha256) => Ok(Summary {
            bytes: layout.total_len,
            elapsed_us: tsc::now_us().saturating_sub(started),
            device: name,
            sha256,
        }),
        Err(failure) => {
            // Record the failure and how much is known to be on the device.
            header.state = DumpState::Failed;
            header.set_message(failure.as_str());
            let _ = write_header(&mut device, header_page, &header).and_then(|()| device.flush());
            Err(failure)
        }
    }
}

struct DeviceIdOrAny(Option<[u8; 16]>);

impl core::fmt::Display for DeviceIdOrAny {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match &self.0 {
            Some(id) => write!(f, "{}", DeviceIdHex(id)),
            None => f.write_str("(any prepared device)"),
        }
    }
}

/// Read as much of `buf` as is mapped, page by page; returns the bytes read.
fn read_until_unmapped(addr: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let here = addr + done as u64;
        let to_page_end = usize::try_from(PAGE - here % PAGE).unwrap_or(4096);
        let take = to_page_end.min(buf.len() - done);
        if IdentityMem.read(here, &mut buf[done..done + take]).is_err() {
            break;
        }
        done += take;
    }
    done
}

/// Print what the headers say about the crash: CPUs, registers, kernel, RAM.
fn report_crash(core: &CoreHeaders) {
    let release = core.vmcoreinfo_value("OSRELEASE").unwrap_or("?");
    say!(
        "crashed kernel {release}: {} CPU(s) saved registers, {} RAM range(s), {} of memory",
        core.cpus.len(),
        core.loads.len(),
        Size(core.total_load_bytes())
    );
    for (i, cpu_state) in core.cpus.iter().enumerate() {
        say!(
            "  cpu {i}: pid {} RIP {:#018x} RSP {:#018x}",
            cpu_state.pid,
            cpu_state.rip(),
            cpu_state.rsp()
        );
    }
    for load in &core.loads {
        say!(
            "  PT_LOAD {:#014x}-{:#014x} ({}) vaddr {:#x}{}",
            load.paddr,
            load.paddr + load.memsz,
            Size(load.memsz),
            load.vaddr,
            if load.source != load.paddr {
                " (from the backup copy)"
            } else {
                ""
            }
        );
    }
}

/// Find the virtio-blk device prepared with `minicap format` (and with the
/// wanted id, if one was given). Every candidate is reset; none is written.
fn find_dump_device(
    machine: &Machine,
    wanted: Option<[u8; 16]>,
) -> Result<(VirtioBlk<'_, Machine>, DumpHeader), Failure> {
    let mut found = [PciAddress {
        bus: 0,
        device: 0,
        function: 0,
    }; MAX_VIRTIO_DEVICES];
    let mut count = 0;
    pci::enumerate(machine, |f| {
        if is_virtio_blk(f.vendor, f.device) && count < MAX_VIRTIO_DEVICES {
            found[count] = f.address;
            count += 1;
        }
    });
    if count == 0 {
        return Err(failure!(
            "no virtio-blk device on the PCI bus (minicap.target=virtio-blk); nothing was written"
        ));
    }
    let buffer = machine
        .dma_alloc(PAGE_BYTES, PAGE_BYTES)
        .ok_or_else(|| failure!("out of memory for a read buffer"))?;
    let mut chosen: Option<(VirtioBlk<'_, Machine>, DumpHeader)> = None;
    let mut prepared = 0;
    for &address in &found[..count] {
        let mut device = match VirtioBlk::new(machine, address) {
            Ok(d) => d,
            Err(e) => {
                say!("virtio-blk {address}: unusable: {e}");
                continue;
            }
        };
        let mut name = FixedString::<96>::new();
        let _ = device.describe(&mut name);
        if let Err(e) = device.read(0, buffer, 512) {
            say!("{}: cannot read its first sector: {e}", name.as_str());
            continue;
        }
        let mut sector = [0u8; 512];
        if IdentityMem.read(buffer, &mut sector).is_err() {
            continue;
        }
        let header = match DumpHeader::decode(&sector) {
            Ok(h) => h,
            Err(e) => {
                say!(
                    "{}: not a minicap dump device ({e}); left alone",
                    name.as_str()
                );
                continue;
            }
        };
        prepared += 1;
        if let Some(id) = wanted {
            if header.device_id != id {
                say!(
                    "{}: minicap device id {} is not the requested {}; left alone",
                    name.as_str(),
                    DeviceIdHex(&header.device_id),
                    DeviceIdHex(&id)
                );
                continue;
            }
        }
        if chosen.is_some() {
            return Err(failure!(
                "more than one prepared minicap device and no minicap.device=<id> to choose; nothing was written"
            ));
        }
        chosen = Some((device, header));
    }
    chosen.ok_or_else(|| match (prepared, wanted) {
        (0, _) => failure!(
            "none of the {count} virtio-blk device(s) is a prepared minicap dump device (run `minicap format DEVICE` first); nothing was written"
        ),
        (_, Some(id)) => failure!(
            "no virtio-blk device has minicap device id {}; nothing was written",
            DeviceIdHex(&id)
        ),
        _ => failure!("no usable dump device; nothing was written"),
    })
}

/// Write the 512-byte minicap header at the start of the device.
fn write_header<D: BlockDevice>(
    device: &mut D,
    page: u64,
    header: &DumpHeader,
) -> Result<(), D::Error> {
    phys::copy_into_dma(page, &header.encode());
    device.write(0, page, 512)
}

/// Write the vmcore after the header area: ELF headers, notes, then every
/// PT_LOAD straight from old memory. Returns its SHA-256.
fn write_vmcore<D: BlockDevice>(
    device: &mut D,
    header_page: u64,
    header: &mut DumpHeader,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
) -> Result<[u8; 32], Failure> {
    let total = layout.total_len;
    let mut hasher = Sha256::new();
    let mut progress = Progress::new(total);

    // The ELF header block and the notes, from the heap.
    let mut notes = Vec::new();
    notes
        .try_reserve_exact(usize::try_from(layout.notes_len_padded).unwrap_or(usize::MAX))
        .map_err(|_| failure!("out of memory for the notes"))?;
    notes.extend_from_slice(&core.notes);
    notes.resize(usize::try_from(layout.notes_len_padded).unwrap_or(0), 0);
    for (offset, bytes) in [(0, &layout.header[..]), (layout.notes_offset, &notes[..])] {
        if bytes.is_empty() {
            continue;
        }
        device
            .write(
                DUMP_OFFSET + offset,
                phys::address_of(bytes),
                bytes.len() as u64,
            )
            .map_err(|e| failure!("writing the vmcore at byte {offset}: {e}"))?;
        hasher.update(bytes);
        progress.advance(bytes.len() as u64);
    }

    // Memory, by DMA from where it is; hashed by the CPU from the same place.
    let step = device.max_transfer().max(PAGE) & !(PAGE - 1);
    for chunk in &layout.chunks {
        let mut done = 0;
        while done < chunk.len {
            let len = (chunk.len - done).min(step);
            let source = chunk.source + done;
            let offset = DUMP_OFFSET + chunk.file_offset + done;
            let t0 = tsc::now_us();
            device
                .write(offset, source, len)
                .map_err(|e| failure!("writing memory {source:#x} to byte {offset:#x}: {e}"))?;
            let t1 = tsc::now_us();
            phys::with_slice(source, len, |bytes| hasher.update(bytes))
                .ok_or_else(|| failure!("old memory at {source:#x} is not mapped"))?;
            progress.io_us += t1 - t0;
            progress.hash_us += tsc::now_us() - t1;
            done += len;
            if let Some(percent) = progress.advance(len) {
                device
                    .flush()
                    .map_err(|e| failure!("flush after {percent}%: {e}"))?;
                header.written = progress.done;
                write_header(device, header_page, header)
                    .map_err(|e| failure!("updating the header after {percent}%: {e}"))?;
            }
        }
    }

    device.flush().map_err(|e| failure!("final flush: {e}"))?;
    say!(
        "time spent: device writes {} ms, SHA-256 {} ms",
        progress.io_us / 1000,
        progress.hash_us / 1000
    );
    let digest: [u8; 32] = hasher.finalize().into();
    header.state = DumpState::Complete;
    header.written = total;
    header.sha256 = digest;
    write_header(device, header_page, header)
        .map_err(|e| failure!("writing the final header: {e}"))?;
    device
        .flush()
        .map_err(|e| failure!("flushing the final header: {e}"))?;
    let _ = heap::free_bytes();
    Ok(digest)
}

/// Progress reporting: a line every `CHECKPOINT_PERCENT` percent.
struct Progress {
    total: u64,
    done: u64,
    next_percent: u64,
    started_us: u64,
    /// Time spent waiting for the device.
    io_us: u64,
    /// Time spent hashing.
    hash_us: u64,
}

impl Progress {
    fn new(total: u64) -> Self {
        Self {
            total: total.max(1),
            done: 0,
            next_percent: CHECKPOINT_PERCENT,
            started_us: tsc::now_us(),
            io_us: 0,
            hash_us: 0,
        }
    }

    /// Count `bytes`; returns the percentage when a checkpoint is crossed.
    fn advance(&mut self, bytes: u64) -> Option<u64> {
        self.done += bytes;
        let percent =
            u64::try_from(u128::from(self.done) * 100 / u128::from(self.total)).unwrap_or(100);
        if percent < self.next_percent || percent >= 100 {
            return None;
        }
        while self.next_percent <= percent {
            self.next_percent += CHECKPOINT_PERCENT;
        }
        let elapsed = tsc::now_us().saturating_sub(self.started_us);
        let rate = mib_per_s(self.done, elapsed);
        say!(
            "{percent:3}% {} / {} MiB, {}.{} MiB/s",
            self.done >> 20,
            self.total >> 20,
            rate / 10,
            rate % 10
        );
        Some(percent)
    }
}

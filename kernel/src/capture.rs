//! The capture, as a straight sequence of phases:
//!
//! 1. **take over**: serial console, CPU tables, TSC;
//! 2. **parse**: boot_params, command line, `minicap.*` options, the ELF core
//!    headers at `elfcorehdr=`;
//! 3. **plan**: memory (heap, own page tables), interrupt controllers masked,
//!    the vmcore layout, the destination: the dump disk (found, identified, big
//!    enough) or, with `minicap.target=serial` (or `minicap.fallback=serial` when
//!    no disk is found), the serial line;
//!    A disk holding a dump `minicap save` has not copied off is not written
//!    (`minicap.overwrite=any` replaces it); the bound on the whole capture
//!    (`minicap.timeout=`) is fixed once the destination is known;
//! 4. **write**: on a disk, the minicap header ("writing"), the dump, progress,
//!    the header ("complete", with the chunk table or the SHA-256
//!    `minicap.verify=` asks for); on the serial line, the framed stream (start,
//!    triage text, the file, log, end: `minicap_capture::writer`'s stream sink);
//! 5. **finish**: reboot, halt or power off.
//!
//! The time of each phase is measured on the TSC ([`Profile`]) and printed
//! before the final header.
//!
//! Any failure ends the run with one `minicap: RESULT: failure [<code>]: ...`
//! line and leaves anything already on the device intact and described by
//! its header.

use crate::console::{FixedString, Size};
use crate::failure::{Detail, DeviceName, Failure, ResultLine};
use crate::handoff::Handoff;
use crate::hw::dma;
use crate::hw::phys::IdentityMem;
use crate::hw::platform::Machine;
use crate::hw::serial::{self, StreamLine};
use crate::hw::{apic, cpu, paging, pic, tsc};
use crate::memory::SkippedRanges;
use crate::target::Candidates;
use crate::writer::{
    mib_per_s_x10, stream_filtered_elf, stream_kdump, verification, write_dump, write_kdump_dump,
    Clock, Dump, KdumpDump, KernelEnv, SerialOutput, StreamTarget, Triage, Verified,
};
use crate::{fault, finish, memory, say, target};
use core::ops::Range;
use minicap_acpi::AcpiInfo;
use minicap_bootinfo::cmdline::{
    params, AfterDump, Compress, DumpFormat, Fallback, MinicapOptions, Overwrite, Transport,
};
use minicap_capture::kdump_plan::{self, FilterPlan, LevelChoice, PlannedFilter};
use minicap_capture::overwrite::{target_use, TargetUse};
use minicap_capture::profile::{Phase, Profile};
use minicap_capture::triage::{last_lines, render_triage};
use minicap_capture::writer::{
    write_filtered_elf_dump, ElfFilterOptions, FilteredElf, FilteredElfDump, WriterEnv as _,
};
use minicap_capture::TimeLimit;
use minicap_drivers::BlockDevice;
use minicap_dumpheader::{
    self as dumpheader, DeviceIdHex, DumpHeader, DumpState, Verification, DUMP_OFFSET,
    TRIAGE_CAPACITY,
};
use minicap_elfcore::{
    for_each_load_range, parse_core_headers, plan_vmcore, CoreHeaders, VmcoreLayout,
};
use minicap_kdumpfile::WriterOptions;
use minicap_physmem::PAGE_SIZE;

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Room a kdump-compressed dump needs at least: its headers, bitmaps and a few pages.
const KDUMP_LEAST_BYTES: u64 = 1 << 20;

/// What a successful capture did.
struct Summary {
    bytes: u64,
    elapsed_us: u64,
    device: DeviceName,
    /// What was recorded to check the dump.
    check: Check,
}

/// The check a capture recorded, as the result line names it.
type Check = FixedString<120>;

/// The whole run; never returns.
pub fn run(boot_params: u64, load_base: u64) -> ! {
    let entry_ticks = cpu::rdtsc();
    // The serial port needs only port I/O; the CPU tables come before the
    // first line, so that an NMI (a BMC or watchdog) or a fault while
    // printing is caught instead of resetting the machine.
    serial::init();
    cpu::take_over();
    crate::console::begin();
    say!("minicap {VERSION}: crash-dump capture kernel starting (image at {load_base:#x})");
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
    let clock = Clock::since_entry(entry_ticks, clock.khz);
    let mut profile = Profile::new(0);
    match capture(boot_params, clock, &mut profile) {
        Ok(s) => {
            let rate = mib_per_s_x10(s.bytes, s.elapsed_us);
            say!(
                "RESULT: success: wrote {} bytes ({}) to {} in {}.{:03} s ({}.{} MiB/s), {}",
                s.bytes,
                Size(s.bytes),
                s.device.as_str(),
                s.elapsed_us / 1_000_000,
                (s.elapsed_us / 1000) % 1000,
                rate / 10,
                rate % 10,
                s.check.as_str()
            );
        }
        Err(failure) => say!("{}", ResultLine(&failure)),
    }
    if fault::nmi_count() > 0 {
        say!(
            "{} NMI(s) arrived during the capture and were ignored",
            fault::nmi_count()
        );
    }
    finish::leave(fault::after())
}

fn capture(boot_params: u64, clock: Clock, profile: &mut Profile) -> Result<Summary, Failure> {
    let mut phase = |phase| profile.enter(phase, clock.now_us());
    // ---- parse: what the loader handed over ----
    phase(Phase::Parse);
    let handoff = Handoff::read(boot_params)?;
    finish::RSDP_HINT.call_once(|| handoff.acpi_rsdp);
    say!("command line: {}", handoff.cmdline());
    report_memory_map(&handoff);
    let options = handoff
        .options()
        .inspect_err(|_| fault::set_after(after_despite_bad_options(handoff.cmdline())))?;
    fault::set_after(options.after);
    report_options(&options);
    let core_arg = handoff.elfcorehdr()?;
    let core_addr = core_arg.addr;
    // An absurd SIZE is reported as such before any page arithmetic on it.
    memory::elfcorehdr_range(core_addr, core_arg.size, 0)?;

    // ---- plan: memory ----
    phase(Phase::Memory);
    // Usable RAM, minus every range the dump reads or describes (found
    // before there is a heap, so the heap can never land on dumped memory,
    // whatever the loader's map says), minus the hand-over data and the page
    // tables still in use. A PT_LOAD over minicap's own image is refused.
    let (image_start, image_end) = crate::hw::image_range();
    let image = image_start..image_end;
    let mut free = memory::usable_ram(handoff.e820())?;
    let mut excluded = Ok(());
    let header_size = for_each_load_range(&IdentityMem, core_addr, |r| {
        if excluded.is_ok() {
            excluded = memory::check_not_minicap(core_addr, r.clone(), image.clone())
                .and_then(|()| memory::exclude(&mut free, r));
        }
    })
    .map_err(|error| Failure::BadCoreHeaders {
        addr: core_addr,
        error,
    })?;
    excluded?;
    let (cmdline_addr, cmdline_len) = handoff.cmdline_range;
    let reserved: [Range<u64>; 4] = [
        image,
        boot_params..boot_params.saturating_add(PAGE_SIZE),
        cmdline_addr..cmdline_addr.saturating_add(cmdline_len),
        memory::elfcorehdr_range(core_addr, core_arg.size, header_size)?,
    ];
    for r in &reserved {
        memory::exclude(&mut free, r.clone())?;
    }
    memory::exclude_live_page_tables(&mut free)?;
    let heap = memory::init_heap(&free)?;
    say!(
        "memory: {} usable in the crash region; heap {:#x}-{:#x} ({})",
        Size(free.total()),
        heap.start,
        heap.end,
        Size(heap.end - heap.start)
    );

    // ---- parse: the ELF core headers ----
    phase(Phase::Parse);
    let core =
        parse_core_headers(&IdentityMem, core_addr).map_err(|error| Failure::BadCoreHeaders {
            addr: core_addr,
            error,
        })?;
    for warning in &core.warnings {
        say!("warning: {warning}");
    }
    report_crash(&core);
    let limit = memory::address_limit(paging::levels());
    memory::check_mappable(&core.loads, limit)?;
    let mut skipped = memory::outside_ram(core_addr, handoff.e820(), &core.loads)?;

    // ---- plan: own page tables, silent interrupt controllers, IOMMU ----
    phase(Phase::Memory);
    own_page_tables(&handoff, &core, &skipped, &reserved, &heap, limit)?;
    phase(Phase::Parse);
    let acpi = minicap_acpi::discover(&IdentityMem, handoff.acpi_rsdp);
    if let Some(acpi) = &acpi {
        memory::skip_device_registers(
            core_addr,
            &mut skipped,
            &core.loads,
            device_registers(acpi),
        )?;
    }
    report_skipped(&skipped);
    phase(Phase::Interrupts);
    silence_interrupts(acpi.as_ref());
    phase(Phase::Device);
    let machine = Machine;
    let transport = options.transport();
    let candidates = match transport {
        Transport::Disk => Candidates::scan(
            &machine,
            acpi.as_ref().and_then(|a| a.mcfg.as_ref()),
            options.target,
        ),
        Transport::Serial => Candidates::none(),
    };
    phase(Phase::Iommu);
    crate::iommu::take_over(acpi.as_ref(), &candidates, &core, &heap)
        .map_err(|e| Failure::iommu(e.base, e.error))?;
    drop(handoff);

    // ---- plan: the vmcore and the destination ----
    phase(Phase::Parse);
    let layout = plan_vmcore(&core).map_err(Failure::BadLayout)?;
    phase(Phase::Device);
    let destination = choose_destination(&machine, &candidates, &options, &core, &layout)?;

    // ---- write ----
    let time_limit = time_limit(&options, &destination, &core);
    if let Some(limit) = time_limit {
        // Planning may have used up the time already: then nothing is written.
        limit.check(clock.now_us(), false)?;
    }
    let mut env = KernelEnv { clock, time_limit };
    let started = tsc::now_us();
    let (device, bytes, check) = match destination {
        Destination::Disk(target) => write_to_disk(
            target, &mut env, &core, &layout, &skipped, &options, profile,
        )?,
        Destination::Serial(line) => {
            write_to_serial(line, &mut env, &core, &skipped, &options, profile)?
        }
    };
    Ok(Summary {
        bytes,
        elapsed_us: tsc::now_us().saturating_sub(started),
        device,
        check,
    })
}

/// The bound on the whole capture `minicap.timeout=` sets for `destination`, said on the
/// console.
fn time_limit(
    options: &MinicapOptions,
    destination: &Destination<'_>,
    core: &CoreHeaders,
) -> Option<TimeLimit> {
    let transport = match destination {
        Destination::Disk(_) => Transport::Disk,
        Destination::Serial(_) => Transport::Serial,
    };
    let ram = core.total_load_bytes();
    match options.timeout.seconds_for(transport, ram) {
        Some(seconds) => {
            say!(
                "time limit: the whole capture stops {seconds} s after minicap started (minicap.timeout={})",
                options.timeout
            );
            Some(TimeLimit { seconds })
        }
        None => {
            say!(
                "time limit: none (minicap.timeout={}); every device operation still has its deadline",
                options.timeout
            );
            None
        }
    }
}

/// Where the dump goes.
#[allow(clippy::large_enum_variant)] // one value, for the run
enum Destination<'m> {
    /// A prepared disk, found and checked.
    Disk(target::Target<'m>),
    /// The framed stream on a UART.
    Serial(StreamLine),
}

/// The prepared disk `options` select, big enough for the file; else, with
/// `minicap.fallback=serial`, the serial line. With `minicap.target=serial`, the serial line
/// and no disk.
fn choose_destination<'m>(
    machine: &'m Machine,
    candidates: &Candidates,
    options: &MinicapOptions,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
) -> Result<Destination<'m>, Failure> {
    if options.transport() == Transport::Serial {
        return open_serial(options).map(Destination::Serial);
    }
    match find_disk(machine, candidates, options, core, layout) {
        Ok(target) => Ok(Destination::Disk(target)),
        Err(failure) if options.fallback == Fallback::Serial => {
            say!("no disk to dump to: {failure}; minicap.fallback=serial: streaming on the serial line instead");
            open_serial(options).map(Destination::Serial)
        }
        Err(failure) => Err(failure),
    }
}

/// The UART at `minicap.serial=`, programmed and answering.
fn open_serial(options: &MinicapOptions) -> Result<StreamLine, Failure> {
    StreamLine::open(options.serial_port.base()).map_err(|e| {
        Failure::BadOption(Detail::display(format_args!(
            "minicap.serial={}: {e}",
            options.serial_port
        )))
    })
}

/// The prepared disk `options` select, checked to hold at least the least the format
/// needs.
fn find_disk<'m>(
    machine: &'m Machine,
    candidates: &Candidates,
    options: &MinicapOptions,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
) -> Result<target::Target<'m>, Failure> {
    // The ELF size is known now; a kdump-compressed file's only at its end (the device
    // must hold its headers, and tells when it is full).
    let least_dump = match options.format(Transport::Disk) {
        // A filtered ELF vmcore's size is known after its counting pass.
        DumpFormat::Elf if options.dump_level(Transport::Disk) != 0 => KDUMP_LEAST_BYTES,
        DumpFormat::Elf => {
            say!(
                "dump: ELF vmcore of {} bytes ({}): {} PT_LOAD(s), {} bytes of notes",
                layout.total_len,
                Size(layout.total_len),
                layout.chunks.len(),
                core.notes.len()
            );
            layout.total_len
        }
        DumpFormat::Kdump => KDUMP_LEAST_BYTES,
    };
    let target = target::find(machine, candidates, options.device)?;
    keep_unsaved_dump(&target, options.overwrite)?;
    let required = dumpheader::required_capacity(least_dump);
    if target.device.capacity() < required {
        return Err(Failure::DeviceTooSmall {
            device: target.name,
            required,
            capacity: target.device.capacity(),
        });
    }
    Ok(target)
}

/// Refuses a target that holds a dump `minicap save` has not copied off, unless
/// `minicap.overwrite=any` (`minicap_capture::overwrite`), which is said.
fn keep_unsaved_dump(target: &target::Target<'_>, overwrite: Overwrite) -> Result<(), Failure> {
    if let TargetUse::Replace(held) = target_use(&target.header, &target.name, overwrite)? {
        say!(
            "warning: {} holds {held}, never saved: replaced (minicap.overwrite=any)",
            target.name.as_str()
        );
    }
    Ok(())
}

/// VMCOREINFO's `CRASHTIME` (seconds since 1970), 0 if absent.
fn crash_time(core: &CoreHeaders) -> i64 {
    core.vmcoreinfo_value("CRASHTIME")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// The dump on a prepared disk, behind the minicap header: (device, bytes, check).
fn write_to_disk(
    mut target: target::Target<'_>,
    env: &mut KernelEnv,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
    skipped: &SkippedRanges,
    options: &MinicapOptions,
    profile: &mut Profile,
) -> Result<(DeviceName, u64, Check), Failure> {
    let transport = Transport::Disk;
    let device = &mut target.device;
    if target.header.state != DumpState::Empty && !target.header.holds_unsaved_dump() {
        say!(
            "note: the device held a {} dump (crash time {}, {}); it is replaced",
            target.header.state.as_str(),
            target.header.crash_time,
            if target.header.is_saved() {
                "saved by minicap save"
            } else {
                "no dump data"
            }
        );
    }
    say!(
        "target: {} id {}",
        target.name.as_str(),
        DeviceIdHex(&target.header.device_id)
    );
    let mut header = DumpHeader::new_empty(
        target.header.device_id,
        device.capacity(),
        concat!("minicap ", env!("CARGO_PKG_VERSION")),
    );
    header.dump_offset = DUMP_OFFSET;
    header.crash_time = crash_time(core);
    if let Some(release) = core.vmcoreinfo_value("OSRELEASE") {
        header.set_osrelease(release.trim());
    }
    let triage = triage_text(env, core);
    let out = Output {
        device,
        env,
        header: &mut header,
        triage: triage.as_ref(),
        name: &target.name,
        verify: verification(options.verify),
        profile,
    };
    let ram = kdump_plan::dump_ram(core, skipped);
    let (bytes, verified) = match options.format(transport) {
        DumpFormat::Elf => {
            out.header.format = dumpheader::DumpFormat::ElfVmcore;
            let requested = options.dump_level(transport);
            let plan = (requested != 0)
                .then(|| kdump_plan::plan_filter(&IdentityMem, core, &ram, requested));
            if let Some(level) = plan.as_ref().map(|p| p.level) {
                report_level(&level);
                set_level(out.header, &level);
            }
            match plan.filter(|p| p.level.applied != 0) {
                Some(plan) => write_filtered_elf(out, core, &ram, plan, layout.total_len)?,
                // Level 0, asked for or all that could be applied: the whole vmcore,
                // straight from old memory.
                None => write_whole_elf(out, core, layout, skipped)?,
            }
        }
        DumpFormat::Kdump => write_kdump(out, core, &ram, options)?,
    };
    Ok((target.name, bytes, Check::display(verified)))
}

/// The dump as a framed stream on the UART `line` (`minicap.target=serial`, or the
/// fallback): (line, bytes of the file, check).
fn write_to_serial(
    line: StreamLine,
    env: &mut KernelEnv,
    core: &CoreHeaders,
    skipped: &SkippedRanges,
    options: &MinicapOptions,
    profile: &mut Profile,
) -> Result<(DeviceName, u64, Check), Failure> {
    let transport = Transport::Serial;
    let mut name = DeviceName::new();
    let _ = core::fmt::Write::write_fmt(
        &mut name,
        format_args!(
            "serial {:#x}{}",
            line.base(),
            if line.shared_with_console() {
                " (the console's line)"
            } else {
                ""
            }
        ),
    );
    say!(
        "target: {}: framed stream at 115200 baud (at most {} bytes/s)",
        name.as_str(),
        serial::LINE_BYTES_PER_SECOND
    );
    let ram = kdump_plan::dump_ram(core, skipped);
    let refused = || {
        Failure::BadOption(Detail::display(
            "the whole ELF vmcore (dump level 0) goes to disks only; on serial use minicap.format=kdump or a dump level of 1 or more",
        ))
    };
    // Decided before the triage text is sent: a refusal sends nothing. `Some`: a filtered
    // ELF vmcore at this plan's level; `None`: kdump-compressed.
    let elf_plan = match options.format(transport) {
        DumpFormat::Elf => {
            let requested = options.dump_level(transport);
            if requested == 0 {
                return Err(refused());
            }
            let plan = kdump_plan::plan_filter(&IdentityMem, core, &ram, requested);
            report_level(&plan.level);
            if plan.level.applied == 0 {
                return Err(refused());
            }
            Some(plan)
        }
        DumpFormat::Kdump => None,
    };
    let mut triage = triage_text(env, core);
    let mut out = SerialOutput(line);
    let target = StreamTarget {
        name: &name,
        crash_time: u64::try_from(crash_time(core)).unwrap_or(0),
    };
    let summary = match elf_plan {
        Some(plan) => {
            say!(
                "dump: ELF vmcore filtered at dump level {} (as makedumpfile -E), streamed",
                plan.level.applied
            );
            let elf = FilteredElf {
                core,
                ram: &ram,
                old: plan.old,
                filter: plan.filter,
                dump_level: plan.level.applied,
                options: ElfFilterOptions::default(),
            };
            stream_filtered_elf(&mut out, env, target, triage.as_mut(), elf, profile)?
        }
        None => {
            let (dump, _) = kdump_dump(core, &ram, options, transport, &name);
            stream_kdump(&mut out, env, target, triage.as_mut(), dump, profile)?
        }
    };
    let SerialOutput(line) = out;
    let bytes_per_s = u128::from(line.sent()) * 1_000_000 / u128::from(summary.elapsed_us.max(1));
    say!(
        "stream: {} bytes on the line ({} data frames) in {}.{:03} s: {bytes_per_s} bytes/s (a real 115200-baud line carries at most {} bytes/s)",
        line.sent(),
        summary.data_records,
        summary.elapsed_us / 1_000_000,
        (summary.elapsed_us / 1000) % 1000,
        serial::LINE_BYTES_PER_SECOND
    );
    let check = Check::display(format_args!(
        "stream xxh64 {:016x} of {} data frames",
        summary.data_xxh64, summary.data_records
    ));
    Ok((name, summary.file_len, check))
}

/// What every format's writer gets: the chosen device, the environment, the new header
/// (format and level fields to fill), the triage text, the check to record, the profile.
struct Output<'a, D> {
    device: &'a mut D,
    env: &'a mut KernelEnv,
    header: &'a mut DumpHeader,
    triage: Option<&'a Triage<dma::DmaBuffer>>,
    name: &'a DeviceName,
    verify: Verification,
    profile: &'a mut Profile,
}

/// The whole ELF vmcore, straight from old memory by DMA: (bytes, check).
fn write_whole_elf<D: BlockDevice>(
    out: Output<'_, D>,
    core: &CoreHeaders,
    layout: &VmcoreLayout,
    skipped: &SkippedRanges,
) -> Result<(u64, Verified), Failure> {
    let required = dumpheader::required_capacity(layout.total_len);
    if out.device.capacity() < required {
        return Err(Failure::DeviceTooSmall {
            device: *out.name,
            required,
            capacity: out.device.capacity(),
        });
    }
    out.header.dump_length = layout.total_len;
    let dump = Dump {
        layout,
        notes: &core.notes,
        skipped,
        device_name: out.name,
        verify: out.verify,
    };
    let verified = write_dump(
        out.device,
        out.env,
        out.header,
        out.triage,
        &dump,
        out.profile,
    )?;
    Ok((layout.total_len, verified))
}

/// The ELF vmcore `makedumpfile -E` writes at the level of `plan`: (bytes, check).
/// `whole_len` (the unfiltered vmcore's length) bounds the file until it is counted.
fn write_filtered_elf<D: BlockDevice>(
    out: Output<'_, D>,
    core: &CoreHeaders,
    ram: &[Range<u64>],
    plan: FilterPlan<'_, IdentityMem>,
    whole_len: u64,
) -> Result<(u64, Verified), Failure> {
    let ram_bytes: u64 = ram.iter().map(|r| r.end - r.start).sum();
    say!(
        "dump: ELF vmcore filtered at dump level {} (as makedumpfile -E), {} RAM range(s), {} of RAM",
        plan.level.applied,
        ram.len(),
        Size(ram_bytes)
    );
    // A bound until the counting pass gives the length (the filtered file is never much
    // longer than the whole one).
    out.header.dump_length = whole_len.min(out.device.capacity().saturating_sub(DUMP_OFFSET));
    let dump = FilteredElfDump {
        elf: FilteredElf {
            core,
            ram,
            old: plan.old,
            filter: plan.filter,
            dump_level: plan.level.applied,
            options: ElfFilterOptions::default(),
        },
        device_name: out.name,
        verify: out.verify,
    };
    let summary = write_filtered_elf_dump(
        out.device,
        out.env,
        out.header,
        out.triage,
        dump,
        out.profile,
    )?;
    let bytes = summary.stats.layout.map_or(0, |l| l.file_len);
    Ok((bytes, summary.verified))
}

/// makedumpfile's kdump-compressed format at the level and with the codec asked for:
/// (bytes, check).
fn write_kdump<D: BlockDevice>(
    out: Output<'_, D>,
    core: &CoreHeaders,
    ram: &[Range<u64>],
    options: &MinicapOptions,
) -> Result<(u64, Verified), Failure> {
    let (mut dump, level) = kdump_dump(core, ram, options, Transport::Disk, out.name);
    dump.verify = out.verify;
    out.header.format = dumpheader::DumpFormat::KdumpCompressed;
    set_level(out.header, &level);
    out.header.compression = compression(options.compress);
    // A bound until the file's length is known: every page stored raw, plus its
    // descriptor and bitmap bits.
    let ram_bytes: u64 = ram.iter().map(|r| r.end - r.start).sum();
    let bound = ram_bytes
        .saturating_add(ram_bytes / 128)
        .saturating_add(1 << 20);
    out.header.dump_length = bound.min(out.device.capacity().saturating_sub(DUMP_OFFSET));
    let summary = write_kdump_dump(
        out.device,
        out.env,
        out.header,
        out.triage,
        dump,
        out.profile,
    )?;
    Ok((summary.stats.file_len, summary.verified))
}

/// The kdump-compressed file `options` ask for on `transport`, planned and said: what to
/// write to `name` (no check recorded yet), and the level applied.
fn kdump_dump<'a>(
    core: &'a CoreHeaders,
    ram: &'a [Range<u64>],
    options: &MinicapOptions,
    transport: Transport,
    name: &'a DeviceName,
) -> (
    KdumpDump<'a, IdentityMem, PlannedFilter<'a, IdentityMem>>,
    LevelChoice,
) {
    let plan = kdump_plan::plan_kdump(&IdentityMem, core, ram, options.dump_level(transport));
    report_level(&plan.level);
    let ram_bytes: u64 = ram.iter().map(|r| r.end - r.start).sum();
    say!(
        "dump: kdump-compressed, dump level {}, compression {}, {} RAM range(s), {} of RAM",
        plan.level.applied,
        options.compress,
        ram.len(),
        Size(ram_bytes)
    );
    let dump = KdumpDump {
        info: plan.info,
        old: plan.old,
        filter: plan.filter,
        compress: options.compress,
        device_name: name,
        verify: Verification::None,
        options: WriterOptions::default(),
    };
    (dump, plan.level)
}

/// Say why the dump level applied is lower than asked, or what VMCOREINFO value was
/// ignored.
fn report_level(level: &LevelChoice) {
    if !level.note.as_str().is_empty() {
        say!(
            "warning: dump level {} asked for, {} applied: {}",
            level.requested,
            level.applied,
            level.note.as_str()
        );
    }
    if !level.ignored.as_str().is_empty() {
        say!(
            "warning: VMCOREINFO: {} (not used; dump level unchanged)",
            level.ignored.as_str()
        );
    }
}

/// The header's dump level fields.
fn set_level(header: &mut DumpHeader, level: &LevelChoice) {
    header.dump_level_requested = level.requested;
    header.dump_level = level.applied;
    header.set_level_note(level.note.as_str());
}

/// The header's name for `minicap.compress=`.
fn compression(compress: Compress) -> dumpheader::Compression {
    match compress {
        Compress::Lzo => dumpheader::Compression::Lzo,
        Compress::Zlib => dumpheader::Compression::Zlib,
        Compress::None => dumpheader::Compression::None,
    }
}

/// Lines of the crashed kernel's log shown on the console.
const TRIAGE_CONSOLE_LINES: usize = 10;

/// The triage text (the crashed kernel's log, its CPUs' registers, its release), with the
/// log's last lines on the console; `None` (said) if there is no memory for it.
fn triage_text(env: &mut KernelEnv, core: &CoreHeaders) -> Option<Triage<dma::DmaBuffer>> {
    #[allow(clippy::cast_possible_truncation)] // 1 MiB
    let Some(mut buffer) = env.dma_buffer(TRIAGE_CAPACITY as usize) else {
        say!(
            "warning: no memory for the triage text: the crashed kernel's log is not written first"
        );
        return None;
    };
    let summary = buffer.with_bytes_mut(|b| render_triage(&IdentityMem, core, b));
    match &summary.log {
        Ok(()) => say!(
            "triage: {} bytes: the crashed kernel's log ({} records{}{}), registers of {} CPU(s){}",
            summary.len,
            summary.records,
            if summary.damaged > 0 { ", some damaged: " } else { "" },
            if summary.damaged > 0 { "see the text" } else { "" },
            core.cpus.len(),
            match summary.panic_cpu {
                Some(_) => ", the panic CPU marked",
                None => "",
            }
        ),
        Err(e) => say!("warning: the crashed kernel's log cannot be read ({e}): the triage text holds the registers only"),
    }
    if summary.dropped_bytes > 0 {
        say!(
            "triage: the log's oldest {} bytes did not fit and were left out",
            summary.dropped_bytes
        );
    }
    buffer.with_bytes_mut(|b| {
        let tail = last_lines(&b[..summary.len], TRIAGE_CONSOLE_LINES);
        for line in tail.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
            say!(
                "  | {}",
                core::str::from_utf8(line).unwrap_or("(not UTF-8)")
            );
        }
    });
    Some(Triage {
        buffer,
        len: summary.len,
    })
}

/// The loader's memory map, as minicap uses it (which ranges are RAM to
/// use, which ranges the dump must not read).
fn report_memory_map(handoff: &Handoff) {
    for entry in handoff.e820() {
        say!(
            "  e820 {:#014x}-{:#014x} type {}",
            entry.addr,
            entry.addr.saturating_add(entry.size),
            entry.kind.raw()
        );
    }
}

/// The device register windows the ACPI tables name: IO-APICs, VT-d units,
/// AMD-Vi units (512 KiB: the largest register window of the spec).
fn device_registers(acpi: &AcpiInfo) -> impl Iterator<Item = Range<u64>> + '_ {
    let io_apics = acpi.io_apics[..acpi.io_apic_count]
        .iter()
        .map(|&base| base..base.saturating_add(PAGE_SIZE));
    let vtd = acpi.drhd[..acpi.drhd_count]
        .iter()
        .map(|u| u.base..u.base.saturating_add(u.register_bytes()));
    let amd = acpi.amd_iommus[..acpi.amd_iommu_count]
        .iter()
        .map(|&base| base..base.saturating_add(512 << 10));
    io_apics.chain(vtd).chain(amd)
}

/// Say which PT_LOAD ranges are not read (zeros in the dump instead).
fn report_skipped(skipped: &SkippedRanges) {
    for r in skipped.iter() {
        say!(
            "warning: PT_LOAD range {:#x}-{:#x} ({}) is not memory in the memory map (device registers or firmware-reserved): not read, zeros in the dump",
            r.start,
            r.end,
            Size(r.end - r.start)
        );
    }
    if !skipped.is_empty() {
        say!(
            "warning: {} PT_LOAD range(s), {} bytes, skipped (recorded in the dump header)",
            skipped.len(),
            skipped.total()
        );
    }
}

/// The `minicap.after=` action when another `minicap.*` option is bad and the capture stops:
/// the action the user configured is still taken (the last valid `minicap.after=`, as when all
/// options parse), not the default. Each one is read by the options parser alone.
fn after_despite_bad_options(cmdline: &str) -> AfterDump {
    params(cmdline)
        .filter(|p| p.key == "minicap.after")
        .filter_map(|p| {
            // "minicap.after=poweroff" is 22 bytes; a longer value is invalid anyway.
            let alone = FixedString::<32>::display(p);
            MinicapOptions::parse(alone.as_str(), |_| {}).ok()
        })
        .last()
        .map_or(AfterDump::default(), |o| o.after)
}

fn report_options(options: &MinicapOptions) {
    let mut device = FixedString::<40>::new();
    let _ = match &options.device {
        Some(id) => core::fmt::Write::write_fmt(&mut device, format_args!("{}", DeviceIdHex(id))),
        None => core::fmt::Write::write_str(&mut device, "(any prepared device)"),
    };
    let transport = options.transport();
    say!(
        "options: target={} fallback={} serial={} format={} dump_level={} compress={} after={} verify={} timeout={} overwrite={} device={}",
        match transport {
            Transport::Disk => options.target.as_str(),
            Transport::Serial => "serial",
        },
        options.fallback,
        options.serial_port,
        options.format(transport),
        options.dump_level(transport),
        options.compress,
        options.after,
        options.verify,
        options.timeout,
        options.overwrite,
        device.as_str()
    );
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

/// Switch to minicap's own identity map: memory-kind e820 ranges, every
/// range the dump reads or describes (except skipped ones), the image, the
/// heap and the hand-over data write-back; everything else up to at least
/// 4 GiB uncached (MMIO).
fn own_page_tables(
    handoff: &Handoff,
    core: &CoreHeaders,
    skipped: &SkippedRanges,
    reserved: &[Range<u64>; 4],
    heap: &Range<u64>,
    limit: u64,
) -> Result<(), Failure> {
    let write_back = reserved
        .iter()
        .cloned()
        .chain(core::iter::once(heap.clone()));
    let (cached, top) =
        memory::write_back_ranges(handoff.e820(), &core.loads, skipped, write_back, limit)?;
    let (tables, depth, gbpages) = memory::build_identity_map(&cached, top)?;
    say!(
        "page tables: own identity map, {depth}-level, {} pages, up to {:#x}, {tables} table pages",
        if gbpages { "1 GiB" } else { "2 MiB" },
        top.max(4 << 30),
    );
    Ok(())
}

/// Put the interrupt controllers into a known, silent state: the 8259s
/// remapped and masked, the local APIC's LVTs masked, every IO-APIC entry
/// the ACPI MADT lists masked.
fn silence_interrupts(acpi: Option<&AcpiInfo>) {
    pic::remap_and_mask();
    let lapic = apic::mask_local_apic();
    let io_apics = acpi.map_or(&[][..], |a| &a.io_apics[..a.io_apic_count]);
    let mut entries = 0;
    for &base in io_apics {
        // The IO-APIC's registers are claimed (mapped uncached, never RAM)
        // by `mask_io_apic` itself.
        entries += apic::mask_io_apic(base);
    }
    if let Some(dropped) = acpi.map(|a| a.io_apics_dropped).filter(|&n| n > 0) {
        say!("warning: {dropped} more IO-APIC(s) listed in the MADT were not masked (table full)");
    }
    let (pic1, pic2) = pic::masks();
    say!(
        "interrupts: 8259 remapped and masked ({pic1:#04x}/{pic2:#04x}); local APIC id {} {}{}, LVTs 0..={} masked; {} IO-APIC(s), {entries} entries masked",
        lapic.id,
        if !lapic.enabled {
            "disabled"
        } else if lapic.x2apic {
            "x2APIC"
        } else {
            "xAPIC"
        },
        if lapic.bsp {
            " (BSP)"
        } else {
            " (not the BSP: the crash happened on another CPU)"
        },
        lapic.max_lvt,
        io_apics.len(),
    );
}

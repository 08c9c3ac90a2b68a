//! `minicap load`: load minicap as the crash kernel without kexec-tools (issues 10 and 12).
//!
//! The image is minicap.elf or minicap.bzImage, signed or not ([`image_file`]); the system
//! call is chosen by [`route`]: with a bzImage, `kexec_file_load(2)` first (the kernel reads
//! the file, checks its signature when it must, and builds the core headers, boot_params and
//! its purgatory), falling back to `kexec_load(2)` when the kernel lacks it or cannot take
//! the image and is not locked down; a refused signature never falls back.
//!
//! For `kexec_load`: reading the running system ([`system`]: `/proc/iomem`, the kexec and CPU sysfs files,
//! `/proc/kcore`), building the ELF core headers (`minicap_elfcore::build_core_headers`),
//! placing the segments with their SHA-256 digests ([`plan`]), printing all of it
//! (`--dry-run`), or placing minicap's purgatory with those digests ([`purgatory`]) and
//! calling `kexec_load(2)` with `KEXEC_ON_CRASH` ([`kexec`]). With a bzImage the fallback
//! loads the bzImage's payload (see [`image::Image::from_bzimage`] and [`load`] for why not
//! minicap.elf next to it). `minicap unload` unloads through either call.
//!
//! For the end-to-end tests only, two hidden options damage what the capture kernel receives,
//! after the headers are built and before the purgatory's digests are taken ([`corrupt`]):
//! `--test-corrupt-core-headers=KIND[,KIND...]` (`bad-magic`, `absurd-phnum`,
//! `overlapping-loads`, `load-outside-ram`, `note-past-segment`) and `--test-omit-elfcorehdr`.

mod bootparams;
pub mod corrupt;
mod dump_device;
mod elf_file;
mod image;
mod image_file;
pub mod iomem;
mod kcore;
mod kexec;
pub mod plan;
mod purgatory;
mod recommend;
mod route;
mod state;
mod status;
pub mod sysfs;
pub mod system;
#[cfg(test)]
mod testfs;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use minicap_bootinfo::cmdline::{elfcorehdr, Fallback, MinicapOptions};
use minicap_elfcore::{build_core_headers, CoreHeaderSpec, NoteBuffer};

use crate::fmt_util::{size, Hex};
use dump_device::{check_dump_device, DumpDeviceCheck};
use image::Image;
use image_file::{ImageFile, ImageKind};
use plan::{plan_load, LoadPlan, PlanInput};
use route::{after_file_refusal, AfterRefusal, Route, Syscall};
use sysfs::{read_lockdown, SystemFiles};
use system::{read_crash_region, read_crash_system, CrashSystem};

pub use route::SyscallChoice;

/// Where `minicap load` looks for the ELF image without `--image` and without
/// [`DEFAULT_BZIMAGE`].
pub const DEFAULT_IMAGE: &str = "/usr/lib/minicap/minicap.elf";
/// Where `minicap load` looks first for the image without `--image`: the bzImage loads
/// through either system call (and, signed, under Secure Boot).
pub const DEFAULT_BZIMAGE: &str = "/usr/lib/minicap/minicap.bzImage";

/// The default image: [`DEFAULT_BZIMAGE`] if `exists` says so, else [`DEFAULT_IMAGE`].
pub fn default_image(exists: impl Fn(&Path) -> bool) -> PathBuf {
    if exists(Path::new(DEFAULT_BZIMAGE)) {
        DEFAULT_BZIMAGE.into()
    } else {
        DEFAULT_IMAGE.into()
    }
}

/// The purgatory's file name, looked up next to the image without `--purgatory`.
pub const PURGATORY_FILE: &str = "purgatory.elf";

pub use recommend::recommend;
pub use status::status;

/// How `minicap load` was asked to load.
#[derive(Debug, Clone)]
pub struct LoadRequest<'a> {
    /// minicap's image.
    pub image: &'a Path,
    /// The purgatory image (`None`: [`PURGATORY_FILE`] next to the image).
    pub purgatory: Option<&'a Path>,
    /// Options for minicap.
    pub append: &'a str,
    /// Where `append` came from, for errors: `--append` or the configuration file.
    pub options_source: &'a str,
    /// The configuration file read, if any (kept in the load record).
    pub config: Option<&'a Path>,
    /// `--syscall`.
    pub syscall: SyscallChoice,
    /// Print, load nothing.
    pub dry_run: bool,
    /// Fault injection: store a wrong digest for this segment (the purgatory must refuse).
    pub corrupt_digest: Option<usize>,
    /// Fault injection: damage the core headers or the command line ([`corrupt`]).
    pub test_damage: &'a corrupt::TestDamage,
    /// `/proc` and `/sys` are a recorded system (`--root`), not this one: plan, never load.
    pub recorded: bool,
}

/// `minicap load [--image PATH] [--append OPTIONS] [--syscall S] [--dry-run]`, reading `/proc`
/// and `/sys` from `files`.
///
/// With a bzImage, the `kexec_load` fallback loads the bzImage's own payload (what kexec-tools'
/// bzImage64 loader does), not a minicap.elf next to it: the payload is the same flat image
/// (tested against the built pair), the file named is the one loaded and recorded (an ELF
/// beside it could be another build, or absent where only the bzImage was installed), and the
/// purgatory then checks exactly the bytes whose SHA-256 the load record keeps.
pub fn load(files: &SystemFiles, request: &LoadRequest<'_>) -> Result<()> {
    check_options(request.append).context(request.options_source.to_owned())?;
    let (image, image_file) = ImageFile::open(request.image)?;
    let lockdown = read_lockdown(files)?;
    let damage = request.test_damage;
    let test_only = request.corrupt_digest.is_some()
        || !damage.core_headers.is_empty()
        || damage.omit_elfcorehdr;
    let route = route::route(image.kind, request.syscall, lockdown.as_deref(), test_only);
    let dump_device = dump_device_line(files, request.append)?;
    if request.dry_run {
        return dry_run(files, request, &image, &route, dump_device.as_deref());
    }
    let route = route.map_err(anyhow::Error::msg)?;
    if request.recorded {
        bail!(
            "--root reads a recorded system: its plan cannot be loaded into this kernel \
             (use --dry-run)"
        );
    }
    if let Route::File { fallback } = route {
        let (_, _, region) = read_crash_region(files)?;
        match kexec::file_load_crash_kernel(&image_file, request.append) {
            Ok(()) => {
                println!(
                    "loaded minicap as the crash kernel with kexec_file_load: {} ({} bytes, {}), \
                     command line: {}",
                    request.image.display(),
                    image.len(),
                    image.kind.signature(),
                    shown(request.append)
                );
                println!("{}", options_line(request));
                record(
                    files,
                    request,
                    &image,
                    Syscall::KexecFileLoad,
                    None,
                    &region,
                );
                if let Some(line) = &dump_device {
                    println!("{line}");
                }
                return Ok(());
            }
            Err(errno) => match after_file_refusal(
                errno,
                fallback,
                lockdown.as_deref(),
                kexec::running_as_root(),
            ) {
                AfterRefusal::FallBack(warning) => println!("warning: {warning}"),
                AfterRefusal::Fail(message) => bail!("{message}"),
            },
        }
    }
    let system = read_crash_system(files)?;
    let (mut plan, _) = plan_for(&system, &image.image, request.append)?;
    for line in corrupt::apply(&mut plan, damage)? {
        println!("warning: {line}");
    }
    load_for_real(files, request, &image, &plan)?;
    if let Some(line) = &dump_device {
        println!("{line}");
    }
    Ok(())
}

/// `--dry-run`: the route, the file-load command line, and the `kexec_load` plan when that call
/// may be used.
fn dry_run(
    files: &SystemFiles,
    request: &LoadRequest<'_>,
    image: &ImageFile,
    route: &std::result::Result<Route, String>,
    dump_device: Option<&str>,
) -> Result<()> {
    // Whether the kexec_load plan is shown, and whether failing to make it fails the dry run
    // (kexec_load is the route) or is a warning (only the fallback's plan is missing).
    let (kexec_load_plan, plan_required) = match route {
        Ok(Route::File { fallback: false }) => (false, false),
        Ok(Route::File { fallback: true }) => (true, false),
        Ok(Route::Load) => (true, true),
        // Show what the refused call would have loaded.
        Err(_) => (image.kind == ImageKind::Elf, true),
    };
    let mut warnings = Vec::new();
    let planned = if kexec_load_plan {
        match dry_run_plan(files, request, image) {
            Ok((text, warning)) => {
                print!("{text}");
                warnings.extend(warning);
                true
            }
            Err(e) if !plan_required => {
                warnings.push(format!("the kexec_load fallback cannot be planned: {e:#}"));
                false
            }
            Err(e) => return Err(e),
        }
    } else {
        false
    };
    if !planned {
        let (state, _, region) = read_crash_region(files)?;
        println!(
            "crash region   {:#x}-{:#x}, {}; crash kernel loaded now: {}",
            region.start,
            region.end - 1,
            size(region.end - region.start),
            if state.crash_loaded { "yes" } else { "no" }
        );
        println!(
            "image          {}: {}, {} bytes",
            request.image.display(),
            image.kind,
            image.len()
        );
    }
    println!("{}", options_line(request));
    match route {
        Ok(route) => println!("{}", route_line(route, image.kind, request.syscall)),
        Err(e) => {
            println!(
                "syscall        none ({}): nothing can be loaded",
                request.syscall
            );
            warnings.push(e.clone());
        }
    }
    if let (Ok(Route::File { .. }) | Err(_), ImageKind::BzImage { .. }) = (route, image.kind) {
        println!(
            "file load      kexec_file_load(KEXEC_FILE_ON_CRASH | KEXEC_FILE_NO_INITRAMFS), \
             command line: {} (the kernel adds elfcorehdr=)",
            shown(request.append)
        );
    }
    for warning in warnings {
        println!("warning: {warning}");
    }
    if let Some(line) = dump_device {
        println!("{line}");
    }
    println!("dry run: nothing was loaded");
    Ok(())
}

/// The `kexec_load` plan as the dry run prints it, and a warning when the purgatory cannot
/// be placed (the plan is shown with its slot).
fn dry_run_plan(
    files: &SystemFiles,
    request: &LoadRequest<'_>,
    image: &ImageFile,
) -> Result<(String, Option<String>)> {
    let system = read_crash_system(files)?;
    let (mut plan, headers) = plan_for(&system, &image.image, request.append)?;
    let mut text = String::new();
    for line in corrupt::apply(&mut plan, request.test_damage)? {
        text.push_str(&format!("warning: {line}\n"));
    }
    let placed = place_purgatory(request, &plan).map(|(segment, entry, _)| (segment, entry));
    text.push_str(&describe(
        request.image,
        image,
        &system,
        &headers,
        &plan,
        &placed,
    ));
    Ok((text, placed.err().map(|e| format!("{e:#}"))))
}

/// Which call `minicap load` would make, and why.
fn route_line(route: &Route, kind: ImageKind, choice: SyscallChoice) -> String {
    match route {
        Route::File { fallback: true } => format!(
            "syscall        kexec_file_load first ({kind}; --syscall {choice}), then kexec_load \
             with the plan above if the kernel lacks it or cannot take the image"
        ),
        Route::File { fallback: false } => format!(
            "syscall        kexec_file_load only ({kind}; --syscall {choice}{})",
            if choice == SyscallChoice::Auto {
                "; locked down: kexec_load would be refused"
            } else {
                ""
            }
        ),
        Route::Load => format!(
            "syscall        kexec_load ({kind}; --syscall {choice}{})",
            match (choice, kind) {
                (SyscallChoice::Auto, ImageKind::Elf) => ": kexec_file_load takes only a bzImage",
                (SyscallChoice::Auto, _) => ": the test options need minicap's own plan",
                _ => "",
            }
        ),
    }
}

/// Leaves the load record; a failure is only a warning (the crash kernel is loaded either way:
/// without the record, status blames another loader).
fn record(
    files: &SystemFiles,
    request: &LoadRequest<'_>,
    image: &ImageFile,
    syscall: Syscall,
    purgatory: Option<PathBuf>,
    region: &std::ops::Range<u64>,
) {
    let record = state::LoadRecord {
        image: request.image.to_owned(),
        image_sha256: image.sha256.clone(),
        syscall,
        image_kind: image.kind.to_string(),
        purgatory,
        config: request.config.map(Path::to_owned),
        options: request.append.to_owned(),
        region_start: region.start,
        region_end: region.end,
        loaded_at: now(),
    };
    if let Err(e) = state::write(files, &record) {
        println!("warning: {e:#}: minicap status will not know minicap loaded it");
    }
}

/// What the disks say about the dump device the capture will look for: a line to print,
/// or an error when disks were read and none is prepared (the capture would have nowhere to
/// write). Nothing to check when the dump streams on a serial line; only a warning when a
/// serial fallback would take over.
fn dump_device_line(files: &SystemFiles, append: &str) -> Result<Option<String>> {
    let options = MinicapOptions::parse(append, |_| {}).map_err(|e| anyhow::anyhow!("{e}"))?;
    if options.serial_target {
        return Ok(None);
    }
    let check = check_dump_device(files, options.device);
    Ok(Some(match check {
        DumpDeviceCheck::Found { .. } => check.to_string(),
        DumpDeviceCheck::Missing { .. } if options.fallback == Fallback::Serial => {
            format!("warning: {check} (minicap.fallback=serial would stream the dump instead)")
        }
        DumpDeviceCheck::Missing { .. } => bail!("{check}"),
        DumpDeviceCheck::Unknown { .. } => format!("warning: {check}"),
    }))
}

/// Places the purgatory, calls `kexec_load` and leaves the load record.
fn load_for_real(
    files: &SystemFiles,
    request: &LoadRequest<'_>,
    image: &ImageFile,
    plan: &LoadPlan,
) -> Result<()> {
    let (segment, entry, purgatory_path) = place_purgatory(request, plan)?;
    let mut segments = plan.segments.clone();
    segments.push(segment);
    segments.sort_by_key(|s| s.addr);
    plan::check_kexec_rules(&segments, None, &plan.region)?;
    kexec::load_crash_kernel(entry, &segments)?;
    println!(
        "loaded minicap as the crash kernel: {} segments in {:#x}-{:#x}, purgatory entry \
         {entry:#x} (with kexec_load: {}, {})",
        segments.len(),
        plan.region.start,
        plan.region.end - 1,
        request.image.display(),
        image.kind
    );
    println!("{}", options_line(request));
    print!("{}", kexec::describe_segments(&segments));
    record(
        files,
        request,
        image,
        Syscall::KexecLoad,
        Some(purgatory_path),
        &plan.region,
    );
    if let Some(n) = request.corrupt_digest {
        println!("warning: segment {n}'s digest was stored wrong on purpose: the purgatory will refuse to start minicap");
    }
    Ok(())
}

/// The options as a command line to show: "(none)" when empty.
fn shown(options: &str) -> &str {
    if options.is_empty() {
        "(none)"
    } else {
        options
    }
}

/// The options for minicap and where they came from.
fn options_line(request: &LoadRequest<'_>) -> String {
    format!(
        "options        {} (from {})",
        shown(request.append),
        request.options_source
    )
}

/// Seconds since the epoch.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Reads the purgatory (`--purgatory`, or [`PURGATORY_FILE`] next to the image) and places
/// it in the plan's slot with the digests of the other segments: the segment, the
/// `kexec_load` entry and the file read.
fn place_purgatory(
    request: &LoadRequest<'_>,
    plan: &LoadPlan,
) -> Result<(plan::Segment, u64, PathBuf)> {
    let path = request.purgatory.map_or_else(
        || {
            request
                .image
                .parent()
                .unwrap_or(Path::new("."))
                .join(PURGATORY_FILE)
        },
        PathBuf::from,
    );
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "cannot read the purgatory {} (built by `cargo xtask build` as \
             target/purgatory.elf; give it with --purgatory)",
            path.display()
        )
    })?;
    let purgatory = purgatory::Purgatory::parse(&bytes)
        .with_context(|| format!("{} is not minicap's purgatory", path.display()))?;
    let (segment, entry) = purgatory
        .place(plan, request.corrupt_digest)
        .with_context(|| format!("cannot place the purgatory {}", path.display()))?;
    Ok((segment, entry, path))
}

/// `minicap unload`: unloads the crash kernel, whoever loaded it, and removes minicap's load
/// record.
pub fn unload(files: &SystemFiles) -> Result<()> {
    kexec::unload_crash_kernel()?;
    state::remove(files)?;
    println!("crash kernel unloaded");
    Ok(())
}

/// Reads and recognises the image file (ELF or bzImage).
pub fn read_image(path: &Path) -> Result<ImageFile> {
    ImageFile::read(path)
}

/// Options for minicap (`--append`, the configuration file): the `minicap.` options must be
/// valid for minicap, and `elfcorehdr=` is the loader's.
pub fn check_options(options: &str) -> Result<()> {
    let mut unknown = Vec::new();
    MinicapOptions::parse(options, |w| unknown.push(w.to_string()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(w) = unknown.first() {
        bail!("{w} (a typo? minicap would ignore it)");
    }
    if !matches!(elfcorehdr(options), Ok(None)) {
        bail!("must not contain elfcorehdr=: the loader sets it");
    }
    Ok(())
}

/// Core headers as kexec-tools builds them, and the segment plan.
pub fn plan_for(system: &CrashSystem, image: &Image, append: &str) -> Result<(LoadPlan, Vec<u8>)> {
    let notes: Vec<NoteBuffer> = system.cpu_notes.iter().map(|n| n.buffer).collect();
    let ram = system.iomem.dump_ram();
    let headers = build_core_headers(&CoreHeaderSpec {
        cpu_notes: &notes,
        vmcoreinfo: Some(system.vmcoreinfo),
        kernel_text: Some(system.kernel_text),
        ram: &ram,
        page_offset: system.page_offset,
    })
    .context("cannot build the ELF core headers")?;
    let firmware = system.iomem.firmware_ranges();
    let plan = plan_load(&PlanInput {
        region: system.region.clone(),
        image,
        core_headers: &headers,
        append,
        firmware: &firmware,
        acpi_rsdp: system.acpi_rsdp,
    })?;
    Ok((plan, headers))
}

/// The dry run's report.
fn describe(
    image_path: &Path,
    file: &ImageFile,
    system: &CrashSystem,
    headers: &[u8],
    plan: &LoadPlan,
    purgatory: &Result<(plan::Segment, u64)>,
) -> String {
    let image = &file.image;
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    let region = &plan.region;
    line(format!(
        "crash region   {:#x}-{:#x}, {}; crash kernel loaded now: {}",
        region.start,
        region.end - 1,
        size(region.end - region.start),
        if system.state.crash_loaded {
            "yes"
        } else {
            "no"
        }
    ));
    line(format!(
        "image          {}: {}, {} in {} piece(s), entry {:#x}",
        image_path.display(),
        file.kind,
        size(image.span()),
        image.pieces.len(),
        plan.entry
    ));
    let ram = system.iomem.dump_ram();
    let ram_bytes: u64 = ram.iter().map(|r| r.end - r.start).sum();
    let phnum = u16::from_le_bytes([headers[56], headers[57]]);
    line(format!(
        "core headers   {phnum} program headers ({} bytes): {} CPU note(s), VMCOREINFO at \
         {:#x}, kernel text {:#x} -> {:#x} ({}), {} RAM range(s), {}",
        64 + 56 * u64::from(phnum),
        system.cpu_notes.len(),
        system.vmcoreinfo.addr,
        system.kernel_text.vaddr,
        system.kernel_text.paddr,
        size(system.kernel_text.size),
        ram.len(),
        size(ram_bytes)
    ));
    for r in &ram {
        line(format!(
            "                 RAM {:#x}-{:#x}",
            r.start,
            r.end - 1
        ));
    }
    line(format!("command line   {}", plan.cmdline));
    line(format!(
        "memory map     {} e820 entries; minicap's heap {:#x}-{:#x}, {}",
        plan.e820.len(),
        plan.heap.start,
        plan.heap.end - 1,
        size(plan.heap.end - plan.heap.start)
    ));
    line("segments (kexec_load, KEXEC_ON_CRASH):".to_owned());
    let slot = &plan.purgatory_slot;
    let mut rows: Vec<(u64, String)> = plan
        .segments
        .iter()
        .map(|s| {
            (
                s.addr,
                format!(
                    "  {:#014x}-{:#014x} {:>8} KiB  {:<27} sha256 {}",
                    s.addr,
                    s.range().end - 1,
                    s.len() / 1024,
                    s.kind.to_string(),
                    Hex(&s.digest())
                ),
            )
        })
        .collect();
    // The purgatory's own segment is not in its digest table: no digest to show.
    let (start, end, note) = match purgatory {
        Ok((segment, entry)) => (
            segment.addr,
            segment.range().end,
            format!(
                "entry {entry:#x}; checks the other {} segments",
                plan.segments.len()
            ),
        ),
        Err(_) => (
            slot.start,
            slot.end,
            "(slot only: no purgatory file)".to_owned(),
        ),
    };
    rows.push((
        start,
        format!(
            "  {:#014x}-{:#014x} {:>8} KiB  {:<27} {note}",
            start,
            end - 1,
            (end - start) / 1024,
            "purgatory"
        ),
    ));
    rows.sort_by_key(|(addr, _)| *addr);
    for (_, row) in rows {
        line(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::check_options;

    /// The capture kernel only warns about an unknown `minicap.*` key (an older kernel must
    /// still dump under a newer configuration); the loader catches the typo before any crash.
    #[test]
    fn unknown_options_are_refused_before_the_crash() {
        let e =
            check_options("minicap.device=00112233445566778899aabbccddeeff minicap.colour=blue")
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "ignoring unknown option minicap.colour (a typo? minicap would ignore it)"
        );
        assert!(check_options("minicap.after=halt console=ttyS0").is_ok());
    }
}

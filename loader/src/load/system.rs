//! Everything a crash load needs from the running system, read in one place from `/proc` and
//! `/sys`, with one error type whose messages name the file and the fix.

use std::fmt;
use std::io::Read;
use std::ops::Range;

use minicap_bootinfo::BootParams;
use minicap_elfcore::{FileHeader, KernelText, NoteBuffer, EHDR_SIZE};

use super::elf_file::headers_len;
use super::iomem::{Iomem, IomemError};
use super::kcore::{kernel_layout, stext_from_kallsyms, KcoreError, KernelLayout};
use super::sysfs::{
    read_cpu_notes, read_crash_state, read_vmcoreinfo, CpuNotes, CrashState, SysfsError,
    SystemFiles,
};

const IOMEM: &str = "proc/iomem";
const KCORE: &str = "proc/kcore";
const KALLSYMS: &str = "proc/kallsyms";
const BOOT_PARAMS: &str = "sys/kernel/boot_params/data";
const EFI_SYSTAB: &str = "sys/firmware/efi/systab";
/// The most bytes of `/proc/kcore` headers read (65535 program headers would be 3.6 MiB).
const MAX_KCORE_HEADERS: u64 = 4 << 20;

/// The running kernel, as far as a crash load is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrashSystem {
    /// The kexec state.
    pub state: CrashState,
    /// `/proc/iomem`.
    pub iomem: Iomem,
    /// The crash region the capture kernel goes into.
    pub region: Range<u64>,
    /// Every CPU's note buffer.
    pub cpu_notes: Vec<CpuNotes>,
    /// The VMCOREINFO buffer.
    pub vmcoreinfo: NoteBuffer,
    /// The kernel-text PT_LOAD.
    pub kernel_text: KernelText,
    /// The direct map's base.
    pub page_offset: u64,
    /// The ACPI RSDP, 0 when the running kernel does not tell.
    pub acpi_rsdp: u64,
}

/// Why the system cannot take a crash load (or cannot be read).
#[derive(Debug)]
pub enum SystemError {
    /// A sysfs or procfs file.
    Sysfs(SysfsError),
    /// `/proc/iomem` is unusable.
    Iomem(IomemError),
    /// No `Crash kernel` region in `/proc/iomem` (or `kexec_crash_size` is 0).
    NoCrashRegion,
    /// `kexec_load_disabled` is set.
    LoadDisabled,
    /// `/proc/kcore` cannot be read.
    KcoreUnreadable(std::io::Error),
    /// `/proc/kcore` has no usable layout.
    Kcore(KcoreError),
    /// No `Kernel code` line in `/proc/iomem`.
    NoKernelCode,
}

impl fmt::Display for SystemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sysfs(e) => write!(f, "{e}"),
            Self::Iomem(e) => write!(f, "{e}"),
            Self::NoCrashRegion => write!(
                f,
                "no memory is reserved for a crash kernel (no \"Crash kernel\" in /proc/iomem): \
                 add crashkernel=SIZE to the kernel command line and reboot (`minicap \
                 recommend` prints SIZE)"
            ),
            Self::LoadDisabled => write!(
                f,
                "/proc/sys/kernel/kexec_load_disabled is 1: loading is refused until the next \
                 boot (something set it on purpose; load before it is set)"
            ),
            Self::KcoreUnreadable(e) => write!(
                f,
                "cannot read /proc/kcore ({e}): the kernel-text PT_LOAD needs it (run as root; \
                 the kernel needs CONFIG_PROC_KCORE)"
            ),
            Self::Kcore(e) => write!(f, "{e}"),
            Self::NoKernelCode => write!(
                f,
                "/proc/iomem has no \"Kernel code\" line: the kernel-text PT_LOAD cannot be \
                 placed"
            ),
        }
    }
}

impl std::error::Error for SystemError {}

impl From<SysfsError> for SystemError {
    fn from(e: SysfsError) -> Self {
        Self::Sysfs(e)
    }
}

/// `/proc/iomem`.
pub fn read_iomem(files: &SystemFiles) -> Result<Iomem, SystemError> {
    Iomem::parse(&files.read(IOMEM)?).map_err(SystemError::Iomem)
}

/// The kexec state and `/proc/iomem`.
pub fn read_state_and_iomem(files: &SystemFiles) -> Result<(CrashState, Iomem), SystemError> {
    Ok((read_crash_state(files)?, read_iomem(files)?))
}

/// What either system call needs checked first, in the order a user can fix things: kexec
/// support, the reservation, `kexec_load_disabled` (which stops `kexec_file_load` too). The
/// state, `/proc/iomem` and the crash region.
pub fn read_crash_region(
    files: &SystemFiles,
) -> Result<(CrashState, Iomem, Range<u64>), SystemError> {
    let (state, iomem) = read_state_and_iomem(files)?;
    let region = iomem
        .load_region()
        .filter(|_| state.crash_size > 0)
        .ok_or(SystemError::NoCrashRegion)?;
    if state.load_disabled == Some(true) {
        return Err(SystemError::LoadDisabled);
    }
    Ok((state, iomem, region))
}

/// Reads everything a `kexec_load` needs: [`read_crash_region`], then the crashed kernel's
/// description.
pub fn read_crash_system(files: &SystemFiles) -> Result<CrashSystem, SystemError> {
    let (state, iomem, region) = read_crash_region(files)?;
    let cpu_notes = read_cpu_notes(files)?;
    let vmcoreinfo = read_vmcoreinfo(files)?;
    let code = iomem.kernel_code().ok_or(SystemError::NoKernelCode)?;
    let layout = read_kernel_layout(files)?;
    Ok(CrashSystem {
        state,
        region,
        cpu_notes,
        vmcoreinfo,
        kernel_text: KernelText {
            paddr: code.start,
            vaddr: layout.text_vaddr,
            size: layout.text_size,
        },
        page_offset: layout.page_offset,
        acpi_rsdp: read_acpi_rsdp(files),
        iomem,
    })
}

fn read_kernel_layout(files: &SystemFiles) -> Result<KernelLayout, SystemError> {
    let headers = read_kcore_headers(files).map_err(SystemError::KcoreUnreadable)?;
    let stext = files
        .read_optional(KALLSYMS)
        .ok()
        .flatten()
        .and_then(|text| stext_from_kallsyms(&text));
    kernel_layout(&headers, stext).map_err(SystemError::Kcore)
}

/// The ELF header and program header table at the start of `/proc/kcore` (the file is as
/// large as the address space: only its head is read).
fn read_kcore_headers(files: &SystemFiles) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(files.path(KCORE))?;
    let mut head = Vec::new();
    file.take(EHDR_SIZE).read_to_end(&mut head)?;
    let total = FileHeader::read(&head)
        .and_then(|h| headers_len(&h))
        .unwrap_or(EHDR_SIZE)
        .clamp(EHDR_SIZE, MAX_KCORE_HEADERS);
    let mut all = Vec::new();
    std::fs::File::open(files.path(KCORE))?
        .take(total)
        .read_to_end(&mut all)?;
    Ok(all)
}

/// The ACPI RSDP the running kernel was given: `acpi_rsdp_addr` of its own `boot_params`,
/// else the EFI system table's `ACPI20=`/`ACPI=` (what kexec-tools `get_acpi_rsdp()` reads).
/// 0 otherwise: minicap then scans the BIOS area, as Linux does.
pub fn read_acpi_rsdp(files: &SystemFiles) -> u64 {
    let from_boot_params = std::fs::read(files.path(BOOT_PARAMS))
        .ok()
        .and_then(|page| BootParams::parse(&page).ok().map(|p| p.acpi_rsdp_addr()))
        .filter(|&a| a != 0);
    from_boot_params
        .or_else(|| {
            let systab = files.read_optional(EFI_SYSTAB).ok().flatten()?;
            rsdp_from_systab(&systab)
        })
        .unwrap_or(0)
}

/// `ACPI20=0x...` (preferred) or `ACPI=0x...` from `/sys/firmware/efi/systab`.
pub fn rsdp_from_systab(text: &str) -> Option<u64> {
    let value = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(super::sysfs::parse_hex)
    };
    value("ACPI20=").or_else(|| value("ACPI="))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::image::{tests::image_with, Image};
    use crate::load::kcore::tests::guest_kcore_headers;
    use crate::load::plan::SegmentKind;
    use crate::load::plan_for;
    use crate::load::testfs::TestRoot;
    use minicap_elfcore::parse_core_headers;
    use minicap_physmem::SliceMem;

    fn guest_with_kcore() -> TestRoot {
        let root = TestRoot::guest_2cpu();
        root.write_bytes(KCORE, &guest_kcore_headers());
        root.write(
            KALLSYMS,
            "ffffffffafc00000 T _text\nffffffffb0000000 T _stext\n",
        );
        root.write(
            EFI_SYSTAB,
            "SMBIOS3=0x3fb0f000\nACPI20=0x3fb7e014\nACPI=0x3fb7e000\n",
        );
        root
    }

    #[test]
    fn the_recorded_guest() {
        let root = guest_with_kcore();
        let system = read_crash_system(&root.files()).unwrap();
        assert_eq!(system.region, 0x3d00_0000..0x3f00_0000);
        assert_eq!(system.cpu_notes.len(), 2);
        assert_eq!(
            system.kernel_text,
            KernelText {
                paddr: 0x36c0_0000,
                vaddr: 0xffff_ffff_afc0_0000,
                size: 0x283_0000
            }
        );
        assert_eq!(system.page_offset, 0xff4a_7686_c000_0000);
        assert_eq!(system.acpi_rsdp, 0x3fb7_e014);
    }

    /// The PT_LOADs kexec-tools built on the same two guests, as minicap printed them at the
    /// crash (scenarios `capture-modern` and `capture-qemu64-4M-3G`): (paddr, vaddr, size).
    /// minicap load's headers, read back by the capture kernel's parser, describe the same
    /// memory at the same addresses. The one difference is deliberate: kexec-tools reads the
    /// first range from its backup copy, minicap load in place (`p_offset == p_paddr`).
    #[test]
    fn the_same_loads_as_kexec_tools_on_the_same_guests() {
        let kexec_tools_1g = [
            (0x36c0_0000, 0xffff_ffff_afc0_0000, 0x283_0000),
            (0x1000, 0xff4a_7686_c000_1000, 0x9_ec00),
            (0x10_0000, 0xff4a_7686_c010_0000, 0x3cf0_0000),
            (0x3f00_0000, 0xff4a_7686_ff00_0000, 0xfd_a000),
        ];
        let kexec_tools_3g = [
            (0x35a0_0000, 0xffff_ffff_97a0_0000, 0x283_0000),
            (0x1000, 0xffff_8c5f_8000_1000, 0x9_ec00),
            (0x10_0000, 0xffff_8c5f_8010_0000, 0x7ef0_0000),
            (0x7f40_0000, 0xffff_8c5f_ff40_0000, 0xbd_a000),
            (0x1_0000_0000, 0xffff_8c60_8000_0000, 0x4000_0000),
        ];
        let image = Image::parse(&image_with(0, &[(0, &[0x90; 0x1000], 0x9_9990)])).unwrap();
        for (root, expected) in [
            (guest_with_kcore(), &kexec_tools_1g[..]),
            (TestRoot::guest_3g(), &kexec_tools_3g[..]),
        ] {
            let system = read_crash_system(&root.files()).unwrap();
            let (plan, _) = plan_for(&system, &image, "").unwrap();
            let headers = plan
                .segments
                .iter()
                .find(|s| s.kind == SegmentKind::CoreHeaders)
                .unwrap();
            let mem = SliceMem::new(headers.addr, &headers.bytes);
            let core = parse_core_headers(&mem, headers.addr).unwrap();
            let loads: Vec<_> = core
                .loads
                .iter()
                .map(|l| (l.paddr, l.vaddr, l.memsz))
                .collect();
            assert_eq!(loads, expected);
            assert!(core.loads.iter().all(|l| l.source == l.paddr));
            // The note buffers are not in this memory: one warning per CPU and VMCOREINFO.
            assert_eq!(core.cpus.len(), 0);
        }
    }

    #[test]
    fn errors_in_the_order_a_user_fixes_them() {
        let root = guest_with_kcore();
        root.write("sys/kernel/kexec_crash_size", "0\n");
        let e = read_crash_system(&root.files()).unwrap_err();
        assert!(matches!(e, SystemError::NoCrashRegion));
        assert!(e.to_string().contains("add crashkernel=SIZE"), "{e}");

        let root = guest_with_kcore();
        root.write("proc/sys/kernel/kexec_load_disabled", "1\n");
        let e = read_crash_system(&root.files()).unwrap_err();
        assert!(matches!(e, SystemError::LoadDisabled), "{e}");

        let root = guest_with_kcore();
        root.remove(KCORE);
        let e = read_crash_system(&root.files()).unwrap_err();
        assert!(e.to_string().contains("CONFIG_PROC_KCORE"), "{e}");

        let root = guest_with_kcore();
        root.write(IOMEM, "00000000-00000000 : System RAM\n");
        let e = read_crash_system(&root.files()).unwrap_err();
        assert!(e.to_string().contains("run minicap as root"), "{e}");
    }

    #[test]
    fn rsdp_sources() {
        assert_eq!(rsdp_from_systab("ACPI=0xf5a40\n"), Some(0xf_5a40));
        assert_eq!(
            rsdp_from_systab("ACPI=0xf5a40\nACPI20=0xf5a60\n"),
            Some(0xf_5a60)
        );
        assert_eq!(rsdp_from_systab("SMBIOS=0x1\n"), None);
        let root = TestRoot::guest_2cpu();
        assert_eq!(read_acpi_rsdp(&root.files()), 0);
        let mut page = vec![0u8; 4096];
        page[0x202..0x206].copy_from_slice(b"HdrS");
        page[0x70..0x78].copy_from_slice(&0xf_5a40u64.to_le_bytes());
        root.write_bytes(BOOT_PARAMS, &page);
        assert_eq!(read_acpi_rsdp(&root.files()), 0xf_5a40);
    }
}

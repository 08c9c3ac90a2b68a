"""The scenarios, as data: which disks the guest gets, the QEMU and guest
options, what minicap must answer (success, or failure with a failure
code), and which checks apply. qemu/harness/runner.py runs one record; the
suite (`e2e.py --all`, `run-all.sh`) runs every record with `in_suite`, in
table order. Adding a run is adding a row; see qemu/README.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields, replace

from .console import FAILURE_CODES
from .kernel import CLOUD, FLAVOURS, GENERIC

# Disk contents.
FORMATTED = "formatted"  # a sparse image prepared with `minicap format`
RANDOM = "random"  # random bytes: not a minicap device
BLANK = "blank"  # a sparse image of zeros (the linux-kdump reference dd's its vmcore onto it)
UNSAVED = "unsaved"  # formatted, then a complete dump nobody saved (disks.make_unsaved_dump_disk)
SAVED = "saved"  # the same dump, marked saved as `minicap save` marks it
CONTENTS = (FORMATTED, RANDOM, BLANK, UNSAVED, SAVED)

# How a disk is attached.
VIRTIO = "virtio"  # a virtio-blk-pci function (--virtio mode, --blk-props)
NVME = "nvme"  # an NVMe controller with the disk as its namespace 1 (--nvme-props)
AHCI = "ahci"  # an ATA disk on a port of the q35 machine's own AHCI HBA (00:1f.2), ports 0, 1, ... in table order
BUSES = (VIRTIO, NVME, AHCI)


@dataclass(frozen=True)
class Disk:
    """One disk: a virtio-blk function, an NVMe controller or an AHCI port.
    The guest gets them in table order: virtio-blk and NVMe in PCI slots 1,
    2, ..., AHCI disks on ports 0, 1, ... of the HBA at 00:1f.2, which is
    the order minicap's PCI scan meets them (the HBA after every slot)."""

    image: str  # file name in the output directory
    label: str  # how the checks name it ("decoy disk", "dump disk A")
    content: str  # FORMATTED, RANDOM or BLANK
    size: str | None = None  # None: the scenario's dump-disk size (--disk-size, or Options.disk_size)
    guarded: bool = False  # nothing may change it: SHA-256 (and a digest per MiB) before and after the run
    target: bool = False  # the dump disk: minicap.device= names it; the dump is read back from it
    decoy: bool = False  # left out with --no-decoy
    fails_write: bool = False  # attached through QEMU's blkdebug, which fails one write (--fail-at-percent)
    bus: str = VIRTIO  # VIRTIO, NVME or AHCI
    # QEMU throttles this disk's writes to this many bytes per second (throttling.bps-write=):
    # a dump that takes at least a known time on any host (capture-timeout). None: no limit.
    write_bps: int | None = None


@dataclass(frozen=True)
class Options:
    """Defaults for the command-line options of the same names (a value given
    on the command line wins). None: the harness's default (DEFAULTS)."""

    virtio: str | None = None
    cpu: str | None = None
    memory: int | None = None
    crashkernel: str | None = None
    iommu: str | None = None
    guest_append: str | None = None
    blk_props: str | None = None
    nvme_props: str | None = None
    disk_size: str | None = None
    disk_slot: int | None = None


# The harness's defaults where neither the command line nor the scenario
# sets an option (disk_size None: 2G, or the RAM + 64 MiB rounded up to a
# GiB if larger).
DEFAULTS = Options(virtio="modern", cpu="max", memory=1024, crashkernel="32M", iommu="", guest_append="",
                   blk_props="", nvme_props="", disk_size=None, disk_slot=1)  # fmt: skip
VIRTIO_MODES = ("modern", "legacy", "transitional")

# Checks a row can ask for. Besides these, every run checks the kexec load,
# the crash, the RESULT (and the pattern if it plants one) and that QEMU
# exits; every `guarded` disk is checked untouched; --iommu implies the
# IOMMU takeover check and a logical_block_size= in the target disk's
# properties (--blk-props or --nvme-props) the block-size check.
LEFT_ALONE = "left-alone"  # one "not a minicap dump device ... left alone" line per RANDOM disk, or with
#                            device_option "other" the "device id X is not the requested Y; left alone" line
STORED_LOG = "stored-log"  # `minicap log`: the console log stored on the device, a copy of the serial lines
VMCORE = "vmcore"  # save the vmcore; makedumpfile, pattern, PT_LOADs vs /proc/iomem, notes (crash, gdb)
HEADER_COMPLETE = "header-complete"  # `minicap info --json`: complete, no failure code, the RESULT's sha256
DEVICE_ERROR = "device-error"  # the failed write, the failed header, save refuses, save --partial, partial dump
DATA_AREA_ZERO = "data-area-zero"  # every byte of the target after the first MiB still zero
KDUMP = "kdump"  # save the kdump-compressed dump; makedumpfile --dump-dmesg, its headers, the pattern in it
TRIAGE = "triage"  # `minicap dmesg`: the triage text, its log = makedumpfile's (when there is a dump)
ELF_FILTERED = "elf-filtered"  # save the filtered ELF vmcore; makedumpfile, notes, PT_LOADs, level, no pattern page
CANDIDATES = "candidates"  # the PCI scan's report: a "not a candidate (minicap.target=T); left alone" line per
#                            function of a kind T leaves out, and the candidates line naming the others
SERIAL_STREAM = "serial-stream"  # the dump streamed on COM2 (a file): `minicap receive` rebuilds it, makedumpfile -R
#                                  of its flattened copy is the same file; KDUMP and TRIAGE then check what it received
TIME_LIMIT = "time-limit"  # the RESULT's elapsed and limit, the failed header (code timeout, every written byte
#                            claimed), save refuses, save --partial, the partial dump (as DEVICE_ERROR's)
UNSAVED_KEPT = "unsaved-kept"  # the RESULT names the dump the target held (kernel, crash time) and `minicap save`
NO_KERNEL_WARNING = "no-kernel-warning"  # the first kernel printed no WARNING/BUG/cut-here block before the crash
CHECKS = (LEFT_ALONE, STORED_LOG, VMCORE, HEADER_COMPLETE, DEVICE_ERROR, DATA_AREA_ZERO, KDUMP, TRIAGE, ELF_FILTERED,
          CANDIDATES, SERIAL_STREAM, TIME_LIMIT, UNSAVED_KEPT, NO_KERNEL_WARNING)  # fmt: skip
# The UART the serial rows stream on: COM2, QEMU's second -serial.
SERIAL_STREAM_PORT = "0x2f8"

# Who loads minicap (Scenario.loader).
LOADER_KEXEC = "kexec"
LOADER_MINICAP = "minicap"
LOADERS = (LOADER_KEXEC, LOADER_MINICAP)

# The image the first kernel loads (Scenario.image): target/minicap.elf (--minicap) or
# target/minicap.bzImage (--bzimage), a Linux boot-protocol bzImage that is also a PE/COFF file.
IMAGE_ELF = "elf"
IMAGE_BZIMAGE = "bzimage"
IMAGES = (IMAGE_ELF, IMAGE_BZIMAGE)

# Who signs the bzImage on the host with sbsign before the run (Scenario.signed_by).
SIGN_THROWAWAY = "throwaway"  # a key and certificate made for the run (openssl req -x509), checked by sbverify
SIGN_SNAKEOIL = "snakeoil"  # Debian ovmf's PkKek-1-snakeoil key, in the db of OVMF_VARS_4M.snakeoil.fd
SIGNERS = (SIGN_THROWAWAY, SIGN_SNAKEOIL)

# `minicap load --syscall` (Scenario.minicap_syscall): auto (the tool's default), file or load.
MINICAP_SYSCALLS = ("auto", "file", "load")

# minicap.device= on the capture command line.
DEVICE_TARGET = "target"  # the target disk's id
DEVICE_OTHER = "other"  # a random id that no disk has
DEVICE_NONE = "none"  # no minicap.device=
DEVICE_OPTIONS = (DEVICE_TARGET, DEVICE_OTHER, DEVICE_NONE)

BAD_ELFCOREHDR = "elfcorehdr=12junk"

# capture-timeout's dump disk write limit: 256 MiB/s.
TIMEOUT_DISK_BPS = 256 << 20

# `minicap load --test-corrupt-core-headers=KIND`: the defects it makes in the ELF core headers
# (loader/src/load/corrupt.rs), after building them and before the purgatory's digests.
CORE_HEADER_DEFECTS = ("bad-magic", "absurd-phnum", "overlapping-loads", "load-outside-ram", "note-past-segment")
# What `load-outside-ram` adds: a PT_LOAD over the first IO-APIC's registers, one page.
OUTSIDE_RAM_PAGE = (0xFEC00000, 0xFEC01000)


@dataclass(frozen=True)
class Refusal:
    """A load the locked-down first kernel must refuse: `command` (with {append} for the capture
    command line, shell-quoted) must exit non-zero, print a line matching `output`, and leave no
    crash kernel loaded."""

    label: str  # a word or two, as in the REFUSAL-<label> console lines: no spaces
    command: str
    output: str  # a regular expression searched in the command's output
    kernel_says: str = ""  # a regular expression some kernel line printed during the command must match


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str  # one line, shown by --list
    disks: tuple[Disk, ...] = ()
    failure: str | None = None  # None: RESULT success; else the failure code RESULT must carry
    checks: frozenset[str] = frozenset()
    options: Options = field(default_factory=Options)
    device_option: str = DEVICE_TARGET
    capture_append: tuple[str, ...] = ()  # more options on minicap's command line
    pattern: bool = False  # plant the memory pattern before the crash
    capture_kernel: str = "minicap"  # "linux": the guest's own kernel copies /proc/vmcore (reference)
    in_suite: bool = True
    # The first kernel loads the target disk's driver and keeps writing to
    # it (initramfs.BUSY_WRITERS loops, inside the dump area) until the
    # crash, which comes with writes in flight (checked on the console).
    busy: bool = False
    guest_kernel: str = CLOUD  # GENERIC: the first kernel needs a driver the cloud flavour lacks (AHCI)
    # Who loads minicap in the first kernel: LOADER_KEXEC (`kexec -p --args-linux`, kexec-tools'
    # purgatory) or LOADER_MINICAP (`minicap load`, minicap's purgatory; the initramfs has no kexec).
    loader: str = "kexec"
    # LOADER_MINICAP only: `minicap load --corrupt-digest N` stores a wrong SHA-256 for segment
    # N; the purgatory must refuse on the console and minicap must never start.
    corrupt_digest: int | None = None
    # LOADER_MINICAP only: `minicap load --test-corrupt-core-headers=KIND,...` damages the ELF
    # core headers (CORE_HEADER_DEFECTS); `--test-omit-elfcorehdr` leaves elfcorehdr= off
    # minicap's command line.
    corrupt_core_headers: tuple[str, ...] = ()
    omit_elfcorehdr: bool = False
    # Regular expressions, each of which some line of minicap's console must match (searched
    # from the start of the line, "minicap: " included): what the console must say exactly.
    console_lines: tuple[str, ...] = ()
    # What the first kernel loads: IMAGE_ELF or IMAGE_BZIMAGE. With LOADER_KEXEC and a bzImage,
    # `kexec -p /minicap.bzImage` (kexec-tools' bzImage loader, kexec_load) or, with kexec_file,
    # `kexec -s -p` (kexec_file_load: the kernel parses the bzImage, checks its signature where it
    # must, and builds the core headers and its own purgatory). With LOADER_MINICAP,
    # `minicap load --image /minicap.bzImage` (or the signed copy).
    image: str = IMAGE_ELF
    kexec_file: bool = False
    # The bzImage is loaded as a copy signed with sbsign by SIGN_THROWAWAY or SIGN_SNAKEOIL, as
    # /minicap-signed.bzImage (the unsigned one stays in the initramfs as /minicap.bzImage).
    signed_by: str | None = None
    # Boot the first kernel through OVMF with Secure Boot on and the snakeoil keys enrolled, its
    # vmlinuz signed with the snakeoil key: the kernel locks itself down. Before the load, /init
    # reads the lockdown state and runs each of `refusals`, which must fail (secureboot.init_block);
    # the initramfs also holds /minicap-untrusted.bzImage, signed by a throwaway key.
    secure_boot: bool = False
    refusals: tuple[Refusal, ...] = ()
    # LOADER_MINICAP only: `minicap load --syscall VALUE` (None: no --syscall, the tool's default).
    minicap_syscall: str | None = None
    # LOADER_MINICAP only: `minicap load` runs under qemu/nofileload (a seccomp filter): its
    # kexec_file_load fails with ENOSYS as on a kernel without CONFIG_KEXEC_FILE, kexec_load works.
    no_kexec_file: bool = False
    # Regular expressions, each of which some line of the first kernel's console must contain
    # (searched anywhere in the line): what the loader must say.
    load_lines: tuple[str, ...] = ()


def decoy(bus: str = VIRTIO) -> Disk:
    return Disk("decoy.img", "decoy disk", RANDOM, size="64M", guarded=True, decoy=True, bus=bus)


def dump_disk(guarded: bool = False, fails_write: bool = False, bus: str = VIRTIO) -> Disk:
    return Disk("dump.img", "dump disk", FORMATTED, guarded=guarded, target=True, fails_write=fails_write, bus=bus)


CAPTURE_CHECKS = frozenset({LEFT_ALONE, STORED_LOG, VMCORE, HEADER_COMPLETE, TRIAGE})
KDUMP_CHECKS = frozenset({LEFT_ALONE, STORED_LOG, KDUMP, HEADER_COMPLETE, TRIAGE})
ELF_FILTERED_CHECKS = frozenset({LEFT_ALONE, STORED_LOG, ELF_FILTERED, HEADER_COMPLETE, TRIAGE})
# What minicap does without minicap.dump_level= / minicap.compress= for minicap.format=kdump.
KDUMP_DEFAULT_LEVEL = 31
KDUMP_DEFAULT_CODEC = "lzo"


def capture(name: str, about: str, capture_append: tuple[str, ...] = (), disks: tuple[Disk, ...] | None = None,
            guest_kernel: str = CLOUD, **options) -> Scenario:
    """A full capture: the decoy, then the dump disk (both virtio-blk unless
    `disks` says otherwise); success; every check of a good dump."""
    return Scenario(name, about, disks=disks or (decoy(), dump_disk()), checks=CAPTURE_CHECKS,
                    options=Options(**options), pattern=True, capture_append=capture_append,
                    guest_kernel=guest_kernel)  # fmt: skip


def kdump_capture(name: str, about: str, codec: str, level: int, disks: tuple[Disk, ...] | None = None,
                  **options) -> Scenario:
    """A full capture in the kdump-compressed format with `codec` at dump level `level`."""
    append = ("minicap.format=kdump", f"minicap.compress={codec}", f"minicap.dump_level={level}")
    return Scenario(name, about, disks=disks or (decoy(), dump_disk()), checks=KDUMP_CHECKS,
                    options=Options(**options), pattern=True, capture_append=append)  # fmt: skip


def elf_filtered_capture(name: str, about: str, level: int, **options) -> Scenario:
    """A full capture of an ELF vmcore filtered at dump level `level` (makedumpfile -E)."""
    append = ("minicap.format=elf", f"minicap.dump_level={level}")
    return Scenario(name, about, disks=(decoy(), dump_disk()), checks=ELF_FILTERED_CHECKS,
                    options=Options(**options), pattern=True, capture_append=append)  # fmt: skip


def dump_target(s: Scenario) -> str:
    """The kinds of disk a scenario lets minicap use (minicap.target=, any without it)."""
    target = "any"
    for a in s.capture_append:
        if a.startswith("minicap.target="):
            target = a.split("=", 1)[1]
    return target


# minicap's name for each kind of PCI function it considers, and the
# minicap.target= values that select it.
KIND_NAMES = {VIRTIO: "virtio-blk", NVME: "NVMe", AHCI: "AHCI"}
KIND_TARGETS = {VIRTIO: ("any", "virtio-blk"), NVME: ("any", "nvme"), AHCI: ("any", "ahci")}
Q35_AHCI_HBA = "00:1f.2"  # present in every run, with or without disks


def pci_functions(buses: list[str]) -> list[tuple[str, str]]:
    """The disk functions minicap's PCI scan meets, in its order, as (bus,
    address), for disks attached in the order of `buses` (qemu.qemu_command:
    the nth disk in slot n + 1 unless it is on the AHCI HBA, which comes
    last and is there with no disk too)."""
    slots = [(bus, f"00:{i + 1:02x}.0") for i, bus in enumerate(buses) if bus != AHCI]
    return slots + [(AHCI, Q35_AHCI_HBA)]


def dump_level(s: Scenario) -> int:
    """The dump level a scenario asks for with minicap.dump_level= (0 without it)."""
    level = 0
    for a in s.capture_append:
        if a.startswith("minicap.dump_level="):
            level = int(a.split("=", 1)[1])
    return level


def kdump_settings(s: Scenario) -> tuple[int, str]:
    """The dump level and codec a kdump scenario asks for (or minicap's defaults)."""
    level, codec = KDUMP_DEFAULT_LEVEL, KDUMP_DEFAULT_CODEC
    for a in s.capture_append:
        if a.startswith("minicap.dump_level="):
            level = int(a.split("=", 1)[1])
        elif a.startswith("minicap.compress="):
            codec = a.split("=", 1)[1]
    return level, codec


def time_limit(s: Scenario) -> int | None:
    """The seconds a scenario's minicap.timeout= gives (None without one, or auto/none)."""
    limit = None
    for a in s.capture_append:
        if a.startswith("minicap.timeout="):
            value = a.split("=", 1)[1]
            limit = int(value) if value.isdigit() else None
    return limit


def busy_capture(name: str, about: str, bus: str, **kw) -> Scenario:
    """A full capture onto a disk of `bus` that the crashed kernel was
    writing to at the moment of the crash; every check of a good dump."""
    return Scenario(name, about, disks=(decoy(), dump_disk(bus=bus)), checks=CAPTURE_CHECKS, pattern=True, busy=True,
                    guest_kernel=GENERIC if bus == AHCI else CLOUD, **kw)  # fmt: skip


def bad_input(name: str, about: str, code: str, disks: tuple[Disk, ...], **kw) -> Scenario:
    """minicap must refuse with `code` and write nothing to any disk."""
    return Scenario(name, about, disks=disks, failure=code, options=Options(disk_size=kw.pop("disk_size", "64M")),
                    **kw)  # fmt: skip


def corrupt(name: str, about: str, defects: tuple[str, ...], code: str, console_lines: tuple[str, ...],
            **kw) -> Scenario:
    """`minicap load --test-corrupt-core-headers=...`: minicap must refuse with `code`, say
    `console_lines`, and leave the guarded dump disk byte-identical."""
    return Scenario(name, about, disks=(dump_disk(guarded=True),), failure=code, loader=LOADER_MINICAP,
                    corrupt_core_headers=defects, console_lines=console_lines, options=Options(disk_size="64M"),
                    **kw)  # fmt: skip


def file_capture(name: str, about: str, **kw) -> Scenario:
    """A full capture of minicap loaded from its bzImage (Scenario.image), checked like
    capture-modern, and the first kernel printed no warning on the way (its kexec_file_load
    parses minicap's setup header: a header that overflows boot_params.hdr warns)."""
    return replace(capture(name, about), image=IMAGE_BZIMAGE, checks=CAPTURE_CHECKS | {NO_KERNEL_WARNING}, **kw)


# What the locked-down first kernel must refuse, and how the refusal reads. kexec-tools prints
# `kexec_load failed: <strerror>` / `kexec_file_load failed: <strerror>`. Measured on Debian's
# 6.1 cloud kernel under OVMF Secure Boot: kexec_load fails with EACCES, from IMA's Secure Boot
# policy before lockdown is asked ("ima: impossible to appraise a kernel image without a file
# descriptor; try using kexec_file_load syscall."; lockdown alone would say EPERM); kexec_file_load
# of the unsigned bzImage with ENODATA, from the PE signature check that Secure Boot makes
# mandatory ("kexec_file: Enforced kernel signature verification failed (-61)."), and of a copy
# signed by a key no keyring holds with ENOKEY (-126); other kernels may say EKEYREJECTED,
# EBADMSG or, lockdown deciding, EPERM. The errno seen is recorded in the run's JSON (`refusals`).
KEXEC_LOAD_REFUSED = r"kexec_load failed: (Permission denied|Operation not permitted)"
KEXEC_LOAD_KERNEL_REASON = (r"ima: impossible to appraise a kernel image without a file descriptor"
                            r"|Lockdown: .*kexec of unsigned images is restricted")  # fmt: skip
SIGNATURE_ERRNO_TEXTS = ("No data available", "Key was rejected by service", "Required key not available",
                         "Bad message", "Operation not permitted")  # fmt: skip
SIGNATURE_ERRNO_NAMES = ("ENODATA", "EKEYREJECTED", "ENOKEY", "EBADMSG", "EPERM")
KEXEC_FILE_REFUSED = "kexec_file_load failed: (" + "|".join(SIGNATURE_ERRNO_TEXTS) + ")"
KEXEC_FILE_KERNEL_REASON = (r"kexec_file: Enforced kernel signature verification failed \(-\d+\)"
                            r"|Lockdown: .*kexec of unsigned images is restricted")  # fmt: skip
KEXEC_REFUSALS = (
    Refusal("kexec-load-elf", "kexec -p /minicap.elf --args-linux --append={append}", KEXEC_LOAD_REFUSED,
            KEXEC_LOAD_KERNEL_REASON),
    Refusal("kexec-file-unsigned", "kexec -s -p /minicap.bzImage --append={append}", KEXEC_FILE_REFUSED,
            KEXEC_FILE_KERNEL_REASON),
    # Signed, by a key made for the run that no keyring holds: a signature alone is not enough.
    Refusal("kexec-file-untrusted", "kexec -s -p /minicap-untrusted.bzImage --append={append}", KEXEC_FILE_REFUSED,
            KEXEC_FILE_KERNEL_REASON),
)  # fmt: skip
# `minicap load` says why instead (the loader's README section "Loading under Secure Boot"): the
# ELF needs kexec_load, so use the signed bzImage; the unsigned bzImage is not trusted (no
# fallback to kexec_load), with the errno.
MINICAP_REFUSALS = (
    Refusal("minicap-load-elf", "minicap load --image /minicap.elf --append={append}",
            r"locked down \((integrity|confidentiality)\).* signed bzImage"),
    Refusal("minicap-load-unsigned", "minicap load --image /minicap.bzImage --append={append}",
            r"kexec_file_load: (" + "|".join(SIGNATURE_ERRNO_NAMES) + r") \([^)]*\): .*the kernel requires a "
            r"signed image it trusts", KEXEC_FILE_KERNEL_REASON),
    Refusal("minicap-load-untrusted", "minicap load --image /minicap-untrusted.bzImage --append={append}",
            r"kexec_file_load: (" + "|".join(SIGNATURE_ERRNO_NAMES) + r") \([^)]*\): .*the kernel requires a "
            r"signed image it trusts", KEXEC_FILE_KERNEL_REASON),
)  # fmt: skip


def file_loaded_line(path: str, signed: bool) -> str:
    """What `minicap load` prints after a kexec_file_load of `path` (a regular expression)."""
    return (rf"loaded minicap as the crash kernel with kexec_file_load: {re.escape(path)} \(\d+ bytes, "
            rf"{'signed' if signed else 'unsigned'}\), command line: minicap\.device=")  # fmt: skip


AHCI_PORTS = 6  # the q35 machine's ICH9 AHCI HBA: buses ide.0 to ide.5
IOMMU_GUEST = "intel_iommu=on iommu=nopt"  # the guest really translates, and the crash leaves it on
BLOCKS_4KN = "logical_block_size=4096,physical_block_size=4096"

SCENARIOS: tuple[Scenario, ...] = (
    capture("capture-modern", "full capture, virtio-blk modern only (disable-legacy=on)", virtio="modern"),
    capture("capture-legacy-4kn", "full capture, virtio-blk legacy only, 4 KiB logical blocks (4Kn)",
            virtio="legacy", blk_props=BLOCKS_4KN),
    # NVMe: the crashed kernel drove the controller (its driver is built in),
    # so minicap must disable it and bring it up with its own queues.
    capture("capture-nvme", "full capture onto an NVMe namespace; the virtio-blk decoy left alone",
            disks=(decoy(), dump_disk(bus=NVME))),
    # AHCI: an ATA disk on the q35 machine's own HBA, which the guest kernel
    # (built without an AHCI driver) leaves as the firmware set it up; minicap
    # resets the HBA and drives the port one command at a time.
    capture("capture-ahci", "full capture onto an ATA disk on the q35 AHCI HBA; the virtio-blk decoy left alone",
            disks=(decoy(), dump_disk(bus=AHCI))),
    # The other two integrity checks (the default, XXH64 per chunk, is in every
    # other capture): the header and `minicap save` must say what was recorded.
    capture("capture-verify-sha256", "full capture with minicap.verify=sha256: a SHA-256 of the whole dump",
            capture_append=("minicap.verify=sha256",)),
    capture("capture-verify-none", "full capture with minicap.verify=none: save says not verified",
            capture_append=("minicap.verify=none",)),
    # makedumpfile's format with both codecs Debian's makedumpfile reads, at
    # levels 1 (every pattern page read back intact) and 31 (the user pages,
    # the pattern among them, filtered out).
    kdump_capture("capture-kdump-zlib-1", "kdump-compressed, zlib, dump level 1: the pattern intact in it",
                  "zlib", 1),
    kdump_capture("capture-kdump-lzo-31", "kdump-compressed, LZO, dump level 31: user pages filtered out",
                  "lzo", 31),
    kdump_capture("capture-kdump-lzo-1", "kdump-compressed, LZO, dump level 1: the pattern intact (makedumpfile "
                  "decompresses)", "lzo", 1),
    kdump_capture("capture-kdump-zlib-31", "kdump-compressed, zlib, dump level 31", "zlib", 31),
    # Two NVMe controllers, 4 KiB logical blocks: the decoy namespace is read
    # and left alone. Pages stored raw (no codec to wait for, so the device
    # does the work) at level 1: every pattern page is checked in the file.
    kdump_capture("capture-nvme-4kn-kdump", "kdump-compressed, pages raw, level 1, onto a 4Kn NVMe namespace; "
                  "an NVMe decoy left alone", "none", 1, disks=(decoy(bus=NVME), dump_disk(bus=NVME)),
                  nvme_props=BLOCKS_4KN),
    # Two disks on one AHCI HBA: the decoy on port 0 is opened, read and left
    # alone; the dump goes to port 1. Level 31 keeps the dump, and the run, short.
    kdump_capture("capture-ahci-ports-kdump", "kdump-compressed, LZO, level 31, onto AHCI port 1; the decoy on "
                  "port 0 of the same HBA left alone", "lzo", 31, disks=(decoy(bus=AHCI), dump_disk(bus=AHCI))),
    # makedumpfile -E: the ELF vmcore without the pages the level leaves out.
    elf_filtered_capture("capture-elf-31", "ELF vmcore filtered at dump level 31 (as makedumpfile -E -d 31): "
                         "user pages out", 31),
    # No disk at all is looked at: the dump goes over the second UART, at serial's
    # defaults (kdump-compressed, LZO, level 31), and the random disk stays untouched.
    Scenario("capture-serial-kdump", "kdump-compressed (serial's default, LZO level 31) streamed on COM2; "
             "minicap receive rebuilds it, makedumpfile -R agrees; the decoy untouched", disks=(decoy(),),
             checks=frozenset({SERIAL_STREAM, KDUMP, TRIAGE}), device_option=DEVICE_NONE, pattern=True,
             capture_append=("minicap.target=serial", f"minicap.serial={SERIAL_STREAM_PORT}")),
    # The fallback: the only disk is not prepared, so with minicap.fallback=serial the
    # dump goes over COM2 instead of the capture failing with no-prepared-device.
    Scenario("serial-fallback", "no prepared disk, minicap.fallback=serial: the random disk is left alone and "
             "the dump streams on COM2", disks=(decoy(),), checks=frozenset({SERIAL_STREAM, KDUMP, TRIAGE, LEFT_ALONE}),
             device_option=DEVICE_NONE, pattern=True,
             capture_append=("minicap.fallback=serial", f"minicap.serial={SERIAL_STREAM_PORT}")),
    Scenario("no-disk", "no dump disk: minicap must report failure and reboot", failure="no-device",
             device_option=DEVICE_NONE),
    Scenario("small-disk", "4 MiB formatted disk: too small; its data area stays zero",
             disks=(dump_disk(),), failure="device-too-small", checks=frozenset({DATA_AREA_ZERO}),
             options=Options(disk_size="4M")),
    # 4-level paging and 2 MiB pages (qemu64 has neither LA57 nor 1 GiB
    # pages), in a small crash region, with 1 GiB of the RAM above 4 GiB (q35
    # keeps 2 GiB low when the guest has more than 2.75 GiB).
    capture("capture-qemu64-4M-3G", "full capture, 4-level paging, crashkernel=4M, RAM above 4 GiB",
            cpu="qemu64", crashkernel="4M", memory=3072),
    # The guest leaves Intel VT-d translating (as servers with intel_iommu=on
    # do): minicap must install its own tables, pass-through or identity.
    capture("capture-iommu", "full capture, guest left VT-d translating: pass-through tables",
            iommu="intel-iommu,intremap=off", guest_append=IOMMU_GUEST),
    capture("capture-iommu-identity", "full capture, guest left VT-d translating: identity map",
            iommu="intel-iommu,intremap=off,pt=off", guest_append=IOMMU_GUEST),
    # The NVMe controller's DMA goes through VT-d like any PCI function's:
    # minicap's tables must let the NVMe candidate through.
    capture("capture-nvme-iommu", "full capture onto NVMe, guest left VT-d translating: pass-through tables",
            disks=(decoy(), dump_disk(bus=NVME)), iommu="intel-iommu,intremap=off", guest_append=IOMMU_GUEST),
    # The guest leaves AMD-Vi translating: minicap must stop the unit, give it
    # its own device table (the disk candidates untranslated, every other
    # device blocked) and start it again. The cloud kernel lacks
    # CONFIG_AMD_IOMMU, so the guest needs the generic flavour; amd-iommu's
    # own PCI function takes the first free slot, so the disks start at 0x10.
    capture("capture-amd-iommu", "full capture, guest left AMD-Vi translating: own device table, disks untranslated",
            guest_kernel=GENERIC, iommu="amd-iommu", disk_slot=0x10, guest_append="iommu=nopt"),
    bad_input("unformatted-disk", "one disk of random data, never formatted: failure, disk unchanged",
              "no-prepared-device", (Disk("random.img", "random disk", RANDOM, guarded=True),),
              disk_size="16M", device_option=DEVICE_NONE, checks=frozenset({LEFT_ALONE})),
    bad_input("wrong-id", "minicap.device= names another id: failure, disk unchanged", "device-id-mismatch",
              (dump_disk(guarded=True),), device_option=DEVICE_OTHER, checks=frozenset({LEFT_ALONE})),
    # kexec adds the real elfcorehdr= after it; minicap must reject the
    # malformed one rather than use the last.
    bad_input("bad-elfcorehdr", f"{BAD_ELFCOREHDR} on the capture command line: failure, disk unchanged",
              "bad-elfcorehdr", (dump_disk(guarded=True),), capture_append=(BAD_ELFCOREHDR,)),
    # minicap.target= narrows the kinds of disk: a prepared disk of another
    # kind, even with the requested id, is not looked at.
    bad_input("other-target-kind", "minicap.target=nvme, the formatted disk is virtio-blk: failure, disk unchanged",
              "no-device", (dump_disk(guarded=True),), capture_append=("minicap.target=nvme",)),
    bad_input("ambiguous", "two formatted disks, no minicap.device=: failure, both unchanged", "ambiguous-device",
              (Disk("dump-a.img", "dump disk A", FORMATTED, guarded=True),
               Disk("dump-b.img", "dump disk B", FORMATTED, guarded=True)), device_option=DEVICE_NONE),
    # The device fails in the middle of the dump: reported, nothing written is lost.
    Scenario("device-error", "the dump disk fails one write at ~45 %: failure, header failed, save --partial",
             disks=(decoy(), dump_disk(fails_write=True)), failure="device-error",
             checks=frozenset({LEFT_ALONE, DEVICE_ERROR, STORED_LOG, TRIAGE}), pattern=True),
    # The whole capture has a bound (minicap.timeout=): 2 s from minicap's entry stops the 1 GiB
    # ELF dump (about 6 s under TCG, its first write at ~0.2 s) part way; what was written is kept.
    # The limit must fall well inside the dump on any host: unthrottled, an idle CI machine wrote
    # 97 % of the 1 GiB dump within a 1 s limit (and all of it within 2 s). QEMU throttles the
    # dump disk to 256 MiB/s, so the whole dump takes 4 s or more anywhere and a 2 s limit stops
    # it after at most ~0.5 GiB; the pattern (pfn 0x3800 up, 56-120 MiB) is inside the written
    # part down to ~70 MiB/s.
    Scenario("capture-timeout", "minicap.timeout=2, dump disk throttled to 256 MiB/s: the capture stops mid-dump, "
             "failure timeout, header failed with every written byte, save --partial",
             disks=(decoy(), replace(dump_disk(), write_bps=TIMEOUT_DISK_BPS)), failure="timeout",
             checks=frozenset({LEFT_ALONE, TIME_LIMIT, STORED_LOG, TRIAGE}), pattern=True,
             capture_append=("minicap.timeout=2",)),
    # The target holds a complete dump that `minicap save` never copied off (the first crash of a
    # crash loop): minicap keeps it, writes nothing, and says what it holds.
    Scenario("unsaved-dump", "the dump disk holds a complete dump never saved: kept byte for byte, failure "
             "unsaved-dump naming it", disks=(Disk("dump.img", "dump disk", UNSAVED, guarded=True, target=True),),
             failure="unsaved-dump", checks=frozenset({UNSAVED_KEPT})),
    # The counterpart: the same dump marked saved is captured over (on demand; the decision
    # itself is host tested in minicap-capture's overwrite module).
    replace(capture("saved-dump-replaced", "the dump disk holds a complete dump marked saved: a full capture "
                    "replaces it", disks=(decoy(), Disk("dump.img", "dump disk", SAVED, target=True))),
            in_suite=False),
    # The bad inputs again on NVMe and AHCI. In the suite, two runs fold the
    # unformatted and wrong-id cases of both kinds together: the failure is
    # the mismatch (a prepared disk was found, with another id), and each
    # disk's own "left alone" line is checked; no-ahci-disk is the HBA with
    # no disk while disks of the other kinds are there (other-target-kind is
    # the NVMe counterpart). The single-kind rows are on demand.
    bad_input("no-ahci-disk", "minicap.target=ahci, formatted NVMe and random virtio-blk disks, no disk on the HBA: "
              "failure, disks unchanged", "no-device",
              (Disk("random.img", "random disk", RANDOM, guarded=True), dump_disk(guarded=True, bus=NVME)),
              capture_append=("minicap.target=ahci",), checks=frozenset({CANDIDATES})),
    bad_input("nvme-unformatted-ahci-wrong-id", "random NVMe namespace, AHCI disk with another id: failure, "
              "both left alone and unchanged", "device-id-mismatch",
              (Disk("random.img", "random disk", RANDOM, guarded=True, bus=NVME), dump_disk(guarded=True, bus=AHCI)),
              device_option=DEVICE_OTHER, checks=frozenset({LEFT_ALONE})),
    bad_input("ahci-unformatted-nvme-wrong-id", "random AHCI disk, NVMe namespace with another id: failure, "
              "both left alone and unchanged", "device-id-mismatch",
              (Disk("random.img", "random disk", RANDOM, guarded=True, bus=AHCI), dump_disk(guarded=True, bus=NVME)),
              device_option=DEVICE_OTHER, checks=frozenset({LEFT_ALONE})),
    bad_input("no-nvme-disk", "minicap.target=nvme, formatted AHCI and random virtio-blk disks: failure, disks "
              "unchanged", "no-device",
              (Disk("random.img", "random disk", RANDOM, guarded=True), dump_disk(guarded=True, bus=AHCI)),
              capture_append=("minicap.target=nvme",), checks=frozenset({CANDIDATES}), in_suite=False),
    bad_input("nvme-unformatted", "one NVMe namespace of random data: failure, disk unchanged", "no-prepared-device",
              (Disk("random.img", "random disk", RANDOM, guarded=True, bus=NVME),), disk_size="16M",
              device_option=DEVICE_NONE, checks=frozenset({LEFT_ALONE}), in_suite=False),
    bad_input("ahci-unformatted", "one AHCI disk of random data: failure, disk unchanged", "no-prepared-device",
              (Disk("random.img", "random disk", RANDOM, guarded=True, bus=AHCI),), disk_size="16M",
              device_option=DEVICE_NONE, checks=frozenset({LEFT_ALONE}), in_suite=False),
    bad_input("nvme-wrong-id", "minicap.device= names another id, the disk is NVMe: failure, disk unchanged",
              "device-id-mismatch", (dump_disk(guarded=True, bus=NVME),), device_option=DEVICE_OTHER,
              checks=frozenset({LEFT_ALONE}), in_suite=False),
    bad_input("ahci-wrong-id", "minicap.device= names another id, the disk is AHCI: failure, disk unchanged",
              "device-id-mismatch", (dump_disk(guarded=True, bus=AHCI),), device_option=DEVICE_OTHER,
              checks=frozenset({LEFT_ALONE}), in_suite=False),
    # The crashed kernel was writing to the dump disk through its own driver
    # when it crashed: minicap must stop and reset the device, and nothing
    # the old requests do may spoil the dump. AHCI needs the generic kernel.
    busy_capture("busy-virtio", "full capture, virtio-blk dump disk the crashed kernel was writing to", VIRTIO),
    busy_capture("busy-nvme", "full capture, NVMe dump disk the crashed kernel was writing to", NVME,
                 in_suite=False),
    busy_capture("busy-ahci", "full capture, AHCI dump disk the crashed kernel (generic flavour) was writing to",
                 AHCI, in_suite=False),
    # `minicap load` instead of kexec-tools: the first kernel's initramfs has no kexec binary.
    # A full capture checked like capture-modern; then the purgatory's refusal of a segment
    # whose stored SHA-256 is wrong (segment 0: minicap's image): minicap never starts and the
    # dump disk stays byte-identical. The refusal row costs one boot and no capture.
    replace(capture("load-minicap", "full capture, loaded by `minicap load` (minicap's purgatory, no kexec-tools)"),
            loader=LOADER_MINICAP),
    Scenario("load-bad-digest", "`minicap load --corrupt-digest 0`: the purgatory refuses, minicap never starts, "
             "the dump disk is unchanged", disks=(dump_disk(guarded=True),), loader=LOADER_MINICAP,
             corrupt_digest=0),
    # minicap's bzImage (target/minicap.bzImage, also a PE/COFF file): loaded with kexec_file_load
    # (`kexec -s -p`; the kernel builds the core headers and its own purgatory) as a copy signed
    # with a key made for the run (sbverify --cert checks it on the host first), and with
    # kexec-tools' bzImage loader and kexec_load (`kexec -p`); then the same through OVMF with
    # Secure Boot on: the first kernel locks itself down and takes only the snakeoil-signed copy;
    # and `minicap load --image /minicap.bzImage` (kexec_file_load first). Every capture checked
    # like capture-modern, and no kernel warning on the way.
    file_capture("load-kexec-file-signed", "full capture, `kexec -s -p` (kexec_file_load) of the bzImage signed "
                 "with a throwaway key (sbverify checked)", kexec_file=True, signed_by=SIGN_THROWAWAY),
    file_capture("load-kexec-bzimage", "full capture, `kexec -p` of the bzImage (kexec-tools' bzImage loader, "
                 "kexec_load)"),
    file_capture("secure-boot-lockdown", "OVMF Secure Boot, snakeoil-signed vmlinuz, lockdown: kexec_load and the "
                 "unsigned bzImage refused, the snakeoil-signed bzImage loads (kexec -s -p); full capture",
                 kexec_file=True, signed_by=SIGN_SNAKEOIL, secure_boot=True, refusals=KEXEC_REFUSALS),
    file_capture("load-minicap-file", "full capture, `minicap load --image /minicap.bzImage`: kexec_file_load",
                 loader=LOADER_MINICAP, load_lines=(file_loaded_line("/minicap.bzImage", False),)),
    file_capture("load-kexec-file", "full capture, `kexec -s -p` (kexec_file_load) of the unsigned bzImage",
                 kexec_file=True, in_suite=False),
    file_capture("secure-boot-minicap-load", "OVMF Secure Boot, lockdown: `minicap load` refuses the ELF and the "
                 "unsigned bzImage, loads the snakeoil-signed one with kexec_file_load; full capture",
                 loader=LOADER_MINICAP, signed_by=SIGN_SNAKEOIL, secure_boot=True, refusals=MINICAP_REFUSALS,
                 load_lines=(file_loaded_line("/minicap-signed.bzImage", True),), in_suite=False),
    # A first kernel without kexec_file_load: lockdown, kexec_load_disabled and IMA appraisal
    # close both calls (or kexec_load first), so the one call is taken away with a seccomp filter
    # (qemu/nofileload): ENOSYS, as from a kernel built without CONFIG_KEXEC_FILE. `minicap load`
    # must say so and load the bzImage's payload with kexec_load and its own purgatory.
    file_capture("load-minicap-fallback", "full capture, `minicap load --image /minicap.bzImage` where "
                 "kexec_file_load fails with ENOSYS (seccomp): the fallback to kexec_load", loader=LOADER_MINICAP,
                 no_kexec_file=True,
                 load_lines=(r"nofileload: kexec_file_load now fails with ENOSYS; running minicap$",
                             r"warning: kexec_file_load: ENOSYS \(Function not implemented\); falling back to "
                             r"kexec_load$",
                             r"loaded minicap as the crash kernel: \d+ segments"), in_suite=False),
    Scenario("linux-kdump", "reference without minicap: the guest's own kernel dd's /proc/vmcore to the disk",
             disks=(Disk("dump.img", "dump disk", BLANK, target=True),), checks=frozenset({VMCORE}),
             options=Options(crashkernel="256M"), pattern=True, capture_kernel="linux", in_suite=False),
    # Bad input from a real crash: `minicap load` damages what the capture kernel receives
    # (its hidden test options; the purgatory's digests are taken after the damage, so it
    # arrives intact). What minicap cannot stand behind is refused before any disk is touched:
    # the guarded dump disk stays byte-identical, the console names the defect, QEMU exits by
    # minicap.after=reboot. What it can work around (a PT_LOAD over device registers: zeros;
    # a note longer than its PT_NOTE: dropped, as /proc/vmcore does) is worked around, named on
    # the console and in the stored log, and the skipped range counted in the header.
    corrupt("corrupt-overlapping-loads", "the last RAM PT_LOAD moved inside another: failure naming both PT_LOADs "
            "and their ranges, disk unchanged", ("overlapping-loads",), "bad-core-headers",
            (r"minicap: RESULT: failure \[bad-core-headers\]: ELF core headers at elfcorehdr=0x[0-9a-f]+ are "
             r"unusable: ELF core headers: PT_LOAD #\d+ \(0x[0-9a-f]+-0x[0-9a-f]+\) overlaps PT_LOAD #\d+ "
             r"\(0x[0-9a-f]+-0x[0-9a-f]+\): the same memory described twice; nothing was written$",)),
    Scenario("corrupt-outside-ram-note", "a PT_LOAD over the IO-APIC page and CPU 0's PT_NOTE cut to 64 bytes: "
             "the page skipped (zeros) and the note dropped, both named; the dump completes",
             disks=(dump_disk(),), checks=frozenset({HEADER_COMPLETE, STORED_LOG}), loader=LOADER_MINICAP,
             corrupt_core_headers=("load-outside-ram", "note-past-segment"),
             console_lines=(r"minicap: warning: PT_NOTE #0: note at offset 0x0 \(n_namesz 0x5, n_descsz 0x150\) "
                            r"exceeds p_memsz, dropped$",
                            r"minicap: warning: PT_LOAD range 0xfec00000-0xfec01000 \(4 KiB\) is not memory in "
                            r"the memory map .*: not read, zeros in the dump$",
                            r"minicap: warning: 1 PT_LOAD range\(s\), 4096 bytes, skipped \(recorded in the dump "
                            r"header\)$")),
    # kexec-tools passes any option: minicap warns about an unknown minicap.* key and goes on
    # (the dump matters more than strictness; `minicap load` and /etc/minicap.conf refuse
    # unknown keys up front), but refuses a known key with a bad value, and still takes the
    # minicap.after= action given (poweroff here, not the default reboot).
    bad_input("bad-options", "minicap.colour=blue (unknown: warned about), minicap.format=bogus and "
              "minicap.after=poweroff: failure bad-option naming the value, powered off, disk unchanged", "bad-option",
              (dump_disk(guarded=True),), capture_append=("minicap.colour=blue", "minicap.format=bogus",
                                                          "minicap.after=poweroff"),
              console_lines=(r"minicap: warning: ignoring unknown option minicap\.colour$",
                             r"minicap: RESULT: failure \[bad-option\]: bad minicap option: invalid value "
                             r"\"bogus\" for minicap\.format: accepted values: .*; nothing was written$",
                             r"minicap: powering off$")),
    corrupt("corrupt-bad-magic", "ELF magic 7f 42 41 44: failure naming it, disk unchanged", ("bad-magic",),
            "bad-core-headers", (r"minicap: RESULT: failure \[bad-core-headers\]: .*: ELF core headers: bad magic "
                                 r"7f 42 41 44 \(expected 7f 45 4c 46\); nothing was written$",), in_suite=False),
    corrupt("corrupt-absurd-phnum", "e_phnum 65534: failure naming the table size, disk unchanged", ("absurd-phnum",),
            "bad-core-headers", (r"minicap: RESULT: failure \[bad-core-headers\]: .*: ELF core headers: e_phoff "
                                 r"0x40 \+ e_phnum 65534 \* 56 exceeds the 0x100000-byte limit; nothing was "
                                 r"written$",), in_suite=False),
    Scenario("no-elfcorehdr", "`minicap load --test-omit-elfcorehdr`: failure no-elfcorehdr, disk unchanged",
             disks=(dump_disk(guarded=True),), failure="no-elfcorehdr", loader=LOADER_MINICAP, omit_elfcorehdr=True,
             options=Options(disk_size="64M"),
             console_lines=(r"minicap: RESULT: failure \[no-elfcorehdr\]: no elfcorehdr= on the command line: "
                            r"minicap was not loaded as a crash kernel.*; nothing was written$",), in_suite=False),
    Scenario("unknown-option", "minicap.colour=blue on the capture command line: warned about, the dump completes",
             disks=(dump_disk(),), checks=frozenset({HEADER_COMPLETE}), capture_append=("minicap.colour=blue",),
             console_lines=(r"minicap: warning: ignoring unknown option minicap\.colour$",), in_suite=False),
)  # fmt: skip

BY_NAME = {s.name: s for s in SCENARIOS}
SUITE = tuple(s.name for s in SCENARIOS if s.in_suite)
# Names the command line accepted before the table (`--scenario capture`).
ALIASES = {"capture": "capture-modern"}


def lookup(name: str) -> Scenario:
    return BY_NAME[ALIASES.get(name, name)]


def problems(s: Scenario) -> list[str]:
    """What is wrong with a row (empty if it is valid)."""
    out = []
    if not re.fullmatch(r"[A-Za-z0-9]+(-[A-Za-z0-9]+)*", s.name):
        out.append("name is not words joined by -")
    if s.failure is not None and s.failure not in FAILURE_CODES:
        out.append(f"unknown failure code {s.failure!r}")
    if unknown := set(s.checks) - set(CHECKS):
        out.append(f"unknown checks {sorted(unknown)}")
    if s.device_option not in DEVICE_OPTIONS:
        out.append(f"device_option {s.device_option!r}")
    if s.loader not in LOADERS:
        out.append(f"loader {s.loader!r}")
    if s.corrupt_digest is not None and s.loader != LOADER_MINICAP:
        out.append("corrupt_digest without loader minicap")
    if (s.corrupt_core_headers or s.omit_elfcorehdr) and s.loader != LOADER_MINICAP:
        out.append("corrupt_core_headers and omit_elfcorehdr need loader minicap")
    if unknown := [d for d in s.corrupt_core_headers if d not in CORE_HEADER_DEFECTS]:
        out.append(f"unknown core header defects {unknown}")
    for pattern in s.console_lines + s.load_lines + tuple(p for r in s.refusals for p in (r.output, r.kernel_says)):
        try:
            re.compile(pattern)
        except re.error as e:
            out.append(f"console line {pattern!r}: {e}")
    out += load_problems(s)
    if s.capture_kernel not in ("minicap", "linux"):
        out.append(f"capture_kernel {s.capture_kernel!r}")
    if s.options.virtio is not None and s.options.virtio not in VIRTIO_MODES:
        out.append(f"virtio {s.options.virtio!r}")
    if s.options.nvme_props and not any(d.bus == NVME for d in s.disks):
        out.append("nvme_props without an NVMe disk")
    if sum(d.bus == AHCI for d in s.disks) > AHCI_PORTS:
        out.append(f"more AHCI disks than the q35 HBA has ports ({AHCI_PORTS})")
    images = [d.image for d in s.disks]
    if len(set(images)) != len(images):
        out.append("two disks share an image name")
    if len({d.label for d in s.disks}) != len(s.disks):
        out.append("two disks share a label")
    for d in s.disks:
        if d.content not in CONTENTS:
            out.append(f"{d.image}: content {d.content!r}")
        if d.bus not in BUSES:
            out.append(f"{d.image}: bus {d.bus!r}")
        if d.fails_write and not d.target:
            out.append(f"{d.image}: only the target disk can fail a write")
        if d.decoy and d.content != RANDOM:
            out.append(f"{d.image}: a decoy is random data")
    targets = [d for d in s.disks if d.target]
    if len(targets) > 1:
        out.append("more than one target disk")
    target = targets[0] if targets else None
    linux = s.capture_kernel == "linux"
    # An UNSAVED disk is a formatted one (with a dump on it): it has an id too.
    if s.device_option in (DEVICE_TARGET, DEVICE_OTHER) and not linux and (
            target is None or target.content not in (FORMATTED, UNSAVED, SAVED)):  # fmt: skip
        out.append(f"device_option {s.device_option} needs a formatted target disk")
    if linux and (target is None or target.content != BLANK or s.failure is not None):
        out.append("the linux reference needs a blank target disk and expects success")
    if linux and set(s.checks) - {VMCORE}:
        out.append("the linux reference has only the vmcore checks")
    success_only = {VMCORE, HEADER_COMPLETE, KDUMP, ELF_FILTERED}
    if s.failure is not None and set(s.checks) & success_only:
        out.append(f"{sorted(set(s.checks) & success_only)} need a successful capture")
    streamed = SERIAL_STREAM in s.checks
    if set(s.checks) & {VMCORE, HEADER_COMPLETE, STORED_LOG, DEVICE_ERROR, DATA_AREA_ZERO, KDUMP, TRIAGE,
                        ELF_FILTERED} - ({KDUMP, TRIAGE} if streamed else set()) and \
            target is None:  # fmt: skip
        out.append("these checks read the target disk, and there is none")
    serial_asked = {"minicap.target=serial", "minicap.fallback=serial"} & set(s.capture_append)
    if streamed and (target is not None or KDUMP not in s.checks or s.failure is not None or not serial_asked
                     or f"minicap.serial={SERIAL_STREAM_PORT}" not in s.capture_append):  # fmt: skip
        out.append("serial-stream: a successful kdump capture with minicap.target=serial or minicap.fallback=serial, "
                   f"minicap.serial={SERIAL_STREAM_PORT} and no target disk")
    if set(s.checks) & {VMCORE, KDUMP, ELF_FILTERED} and not s.pattern:
        out.append("the vmcore checks verify the pattern: set pattern=True")
    if len(set(s.checks) & {VMCORE, KDUMP, ELF_FILTERED}) > 1:
        out.append("a dump is a whole ELF (vmcore), kdump-compressed (kdump) or a filtered ELF (elf-filtered)")
    if ELF_FILTERED in s.checks and dump_level(s) == 0:
        out.append("elf-filtered needs minicap.dump_level= above 0")
    if (DEVICE_ERROR in s.checks) != (s.failure == "device-error") or \
            (DEVICE_ERROR in s.checks) != any(d.fails_write for d in s.disks):  # fmt: skip
        out.append("device-error check, failure code and a disk that fails a write go together")
    if DEVICE_ERROR in s.checks and not s.pattern:
        out.append("the device-error checks look for the pattern in the partial dump: set pattern=True")
    if LEFT_ALONE in s.checks and s.device_option != DEVICE_OTHER and not any(d.content == RANDOM for d in s.disks):
        out.append("left-alone needs a random disk or device_option other")
    if dump_target(s) not in ("any", "virtio-blk", "nvme", "ahci", "serial"):
        out.append(f"minicap.target={dump_target(s)}")
    if s.guest_kernel not in FLAVOURS:
        out.append(f"guest_kernel {s.guest_kernel!r}")
    if s.busy and (target is None or linux or s.failure is not None):
        out.append("busy needs a target disk and a minicap capture that succeeds")
    if s.busy and target is not None and target.bus == AHCI and s.guest_kernel != GENERIC:
        out.append("busy on AHCI needs guest_kernel GENERIC (the cloud kernel has no AHCI driver)")
    if target is not None and target.guarded and (target.fails_write or set(s.checks) & success_only):
        out.append("a guarded target cannot be written to")
    return out


def loads_with_kexec_file(s: Scenario) -> bool:
    """Whether the first kernel loads minicap with kexec_file_load, which builds the ELF core
    headers itself (leaving out the first MiB, iomem.LOW_1M) and places its own purgatory:
    `kexec -s -p`, and `minicap load` of a bzImage unless told to use kexec_load (--syscall
    load), a test option needs it, or the call fails (no_kexec_file: the fallback)."""
    if s.image != IMAGE_BZIMAGE or s.capture_kernel != "minicap":
        return False
    if s.loader == LOADER_KEXEC:
        return s.kexec_file
    test_options = s.corrupt_digest is not None or bool(s.corrupt_core_headers) or s.omit_elfcorehdr
    return s.minicap_syscall != "load" and not test_options and not s.no_kexec_file


def load_problems(s: Scenario) -> list[str]:
    """What is wrong with the way a row loads minicap (image, signature, Secure Boot)."""
    out = []
    bzimage = s.image == IMAGE_BZIMAGE
    if s.image not in IMAGES:
        out.append(f"image {s.image!r}")
    if s.kexec_file and (not bzimage or s.loader != LOADER_KEXEC):
        out.append("kexec_file (kexec -s -p) loads a bzImage with kexec-tools")
    if s.signed_by is not None and (s.signed_by not in SIGNERS or not bzimage):
        out.append(f"signed_by {s.signed_by!r}: sbsign signs the bzImage, by one of {SIGNERS}")
    if s.secure_boot:
        if s.signed_by != SIGN_SNAKEOIL:
            out.append("under Secure Boot only the snakeoil key is trusted: signed_by snakeoil")
        if s.loader == LOADER_KEXEC and not s.kexec_file:
            out.append("lockdown refuses kexec_load: a Secure Boot row loads with kexec -s")
        if s.capture_kernel != "minicap":
            out.append("a Secure Boot row captures with minicap")
    if s.refusals and not s.secure_boot:
        out.append("refusals are what lockdown refuses: they need secure_boot")
    labels = [r.label for r in s.refusals]
    if len(set(labels)) != len(labels) or any(not re.fullmatch(r"[a-z0-9-]+", label) for label in labels):
        out.append("refusal labels are distinct lower-case words joined by -")
    for r in s.refusals:
        try:
            r.command.format(append="x")
        except (KeyError, IndexError, ValueError) as e:
            out.append(f"refusal {r.label}: command {r.command!r}: {e}")
        if r.command.split()[0] != ("minicap" if s.loader == LOADER_MINICAP else "kexec"):
            out.append(f"refusal {r.label}: the initramfs of loader {s.loader} has no {r.command.split()[0]}")
    if s.minicap_syscall is not None and (s.loader != LOADER_MINICAP or s.minicap_syscall not in MINICAP_SYSCALLS):
        out.append(f"minicap_syscall {s.minicap_syscall!r}: `minicap load --syscall` takes {MINICAP_SYSCALLS}")
    if s.no_kexec_file and (s.loader != LOADER_MINICAP or s.minicap_syscall == "file" or s.secure_boot):
        out.append("no_kexec_file: `minicap load` falling back to kexec_load (not --syscall file, not locked down)")
    if s.load_lines and s.capture_kernel != "minicap":
        out.append("load_lines are what minicap's loader says")
    return out


def option_names() -> list[str]:
    return [f.name for f in fields(Options)]

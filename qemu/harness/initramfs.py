"""The guest's initramfs (newc cpio + gzip, written directly): static
busybox, kexec, the capture kernel, the pattern program and the /init script
that loads the capture kernel, plants the pattern and crashes the guest."""

from __future__ import annotations

import gzip
import io
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from .common import QEMU_DIR, HarnessError, run
from .kernel import GuestKernel


class Cpio:
    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1
        self.names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        name = name.lstrip("/")
        if name in self.names:
            return
        self.names.add(name)
        nb = name.encode() + b"\0"
        fields = [self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nb), 0]
        self.ino += 1
        hdr = b"070701" + b"".join(b"%08X" % v for v in fields)
        self.buf.write(hdr + nb)
        self.buf.write(b"\0" * (-(len(hdr) + len(nb)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name: str) -> None:
        parts = name.strip("/").split("/")
        for i in range(1, len(parts) + 1):
            self._entry("/".join(parts[:i]), 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o755) -> None:
        self.dir(os.path.dirname(name.strip("/")) or ".")
        self._entry(name, 0o100000 | mode, data)

    def symlink(self, name: str, target: str) -> None:
        self.dir(os.path.dirname(name.strip("/")) or ".")
        self._entry(name, 0o120777, target.encode())

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def host_file(self, name: str, path: Path, mode: int = 0o755) -> None:
        self.file(name, Path(path).read_bytes(), mode)

    def executable_with_libs(self, name: str, path: Path) -> None:
        """A dynamically linked program plus everything `ldd` lists."""
        self.host_file(name, path)
        p = run(["ldd", path])
        if p.returncode != 0:
            if "not a dynamic executable" in p.stdout:
                return
            raise HarnessError(f"ldd {path} failed: {p.stdout}")
        for line in p.stdout.splitlines():
            m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
            if not m:
                if "not found" in line:
                    raise HarnessError(f"ldd {path}: {line.strip()}")
                continue
            lib = m.group(1)
            self.host_file(lib, Path(os.path.realpath(lib)))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return gzip.compress(self.buf.getvalue(), compresslevel=6, mtime=0)


def add_busybox(c: Cpio) -> None:
    bb = shutil.which("busybox") or "/bin/busybox"
    desc = run(["file", "-L", bb]).stdout if shutil.which("file") else "statically linked"
    if "statically linked" not in desc and "static-pie" not in desc:
        raise HarnessError(f"{bb} is not static (install busybox-static)")
    for d in ("bin", "sbin", "usr/bin", "usr/sbin", "proc", "sys", "dev", "tmp", "etc", "mnt"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3)
    c.host_file("bin/busybox", Path(bb))
    applets = run([bb, "--list-full"]).stdout.split()
    for a in applets:
        if os.path.basename(a) in ("kexec", "busybox"):
            continue
        c.symlink(a, "/bin/busybox")


def shell_quote(s: str) -> str:
    return shlex.quote(s)


INIT_HEAD = r"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
echo "E2E-INIT $(cat /proc/uptime)"
echo IOMEM-BEGIN
cat /proc/iomem
echo IOMEM-END
echo "CMDLINE: $(cat /proc/cmdline)"
echo "UNAME: $(uname -r)"
"""

INIT_PATTERN = r"""
echo "PATTERN-START $(cat /proc/uptime)"
( /pattern fill --mib {mib} --seed {seed}; echo "PATTERN-EXIT $?" ) | tee /tmp/pattern.out &
n=0
while ! grep -q -e PATTERN-READY -e PATTERN-EXIT /tmp/pattern.out 2>/dev/null; do
    n=$((n+1))
    if [ $n -gt 1200 ]; then echo "PATTERN-TIMEOUT"; break; fi
    sleep 0.1
done
grep -q PATTERN-READY /tmp/pattern.out || echo "PATTERN-FAILED"
"""

INIT_CRASH = r"""
echo "E2E-CRASHING $(cat /proc/uptime)"
echo c > /proc/sysrq-trigger
echo "E2E-STILL-ALIVE"
poweroff -f
"""


# The busy-device scenarios: the first kernel loads the dump disk's driver
# (modules in load order, copied to /modules), waits for the disk, and
# starts BUSY_WRITERS loops, each rewriting its own BUSY_SPAN_MIB MiB of
# random data with 1 MiB O_DIRECT writes (so each is a request to the
# device, not a page in the cache), at BUSY_FIRST_MIB, BUSY_FIRST_MIB +
# BUSY_SPACING_MIB, ...: inside the dump area, which starts at 2 MiB, and
# within the smallest dump disk of a capture. After BUSY_SETTLE_S seconds
# of writing, the crash comes as soon as /sys/block/<disk>/inflight shows
# a write the driver has issued and not seen complete; only shell builtins
# run between that reading and the sysrq, so the writes are still in
# flight (or just completed, unseen) when the crashed kernel stops.
BUSY_WRITERS = 4
BUSY_SPAN_MIB = 4
BUSY_FIRST_MIB = 64
BUSY_SPACING_MIB = 64
BUSY_SETTLE_S = 2
BUSY_WAIT_TRIES = 100000  # inflight readings before giving up (the crash then comes anyway, and the check fails)


@dataclass(frozen=True)
class BusyDisk:
    device: str  # the dump disk's name in the first kernel: vdb, nvme0n1, sda (guest_disk_name)
    modules: tuple[Path, ...]  # module files to insmod first, dependencies first (modules.load_order)


def guest_disk_name(bus: str, index: int) -> str:
    """Linux's name for the `index`th disk (from 0) of a kind, in the order
    the harness attaches them: virtio-blk vda, vdb, ... in PCI slot order;
    NVMe nvme0n1, nvme1n1, ... (namespace 1 of each controller); AHCI sda,
    sdb, ... in port order (the only SCSI disks of the guest)."""
    if not 0 <= index < 26:
        raise HarnessError(f"no single-letter disk name for disk {index}")
    letter = chr(ord("a") + index)
    names = {"virtio": f"vd{letter}", "nvme": f"nvme{index}n1", "ahci": f"sd{letter}"}
    if bus not in names:
        raise HarnessError(f"unknown bus {bus!r}")
    return names[bus]


def busy_block(busy: BusyDisk) -> str:
    """The /init lines that load the driver and start the writers (the comment above)."""
    seeks = " ".join(str(BUSY_FIRST_MIB + i * BUSY_SPACING_MIB) for i in range(BUSY_WRITERS))
    insmods = "".join(f'insmod /modules/{m.name} || {{ echo "BUSY-ABORT: insmod {m.name} failed"; poweroff -f; }}\n'
                      for m in busy.modules)  # fmt: skip
    dev = f"/dev/{busy.device}"
    return f"""
echo "BUSY-LOAD {' '.join(m.name for m in busy.modules) or '(built in)'}"
{insmods}n=0
while [ ! -b {dev} ] && [ $n -lt 300 ]; do n=$((n+1)); sleep 0.1; done
if [ ! -b {dev} ]; then echo "BUSY-ABORT: no {dev}; disks: $(ls /sys/block)"; poweroff -f; fi
dd if=/dev/urandom of=/tmp/busy.bin bs=1M count={BUSY_SPAN_MIB} 2>/dev/null
for seek in {seeks}; do
    ( while :; do dd if=/tmp/busy.bin of={dev} bs=1M seek=$seek oflag=direct 2>/dev/null; done ) &
done
echo "BUSY-WRITERS {BUSY_WRITERS} {dev} at MiB {seeks} $(cat /proc/uptime)"
sleep {BUSY_SETTLE_S}
"""


def busy_wait_inflight(busy: BusyDisk) -> str:
    """The lines of a busy run before its crash: wait until a write is in
    flight, reading /sys with builtins only, and say so through the kernel's
    log: printk reaches the console before the crash's own lines, whereas the
    tty's output is sent later and was seen cut in two by the panic's."""
    sysfs = f"/sys/block/{busy.device}"
    return f"""
echo "E2E-CRASHING $(cat /proc/uptime)"
n=0
while read r w < {sysfs}/inflight && [ "$w" -eq 0 ] && [ $n -lt {BUSY_WAIT_TRIES} ]; do n=$((n+1)); done
read rio rmerge rsect rticks wio wmerge wsect rest < {sysfs}/stat
echo "BUSY-INFLIGHT /dev/{busy.device} reads $r writes $w sectors-written $wsect" > /dev/kmsg
"""


def busy_crash(busy: BusyDisk) -> str:
    """The crash of a busy run: as INIT_CRASH, but only once a write is in flight."""
    return busy_wait_inflight(busy) + """echo c > /proc/sysrq-trigger
echo "E2E-STILL-ALIVE"
poweroff -f
"""


def kexec_block(kexec_cmd: str) -> str:
    return f"""
echo "KEXEC-CMD: {kexec_cmd}"
{kexec_cmd}
rc=$?
if [ $rc -eq 0 ]; then echo "KEXEC-LOADED"; else echo "KEXEC-FAILED $rc"; fi
echo "KEXEC-CRASH-LOADED $(cat /sys/kernel/kexec_crash_loaded)"
echo "KEXEC-CRASH-SIZE $(cat /sys/kernel/kexec_crash_size)"
if [ $rc -ne 0 ]; then echo "E2E-ABORT: kexec failed"; poweroff -f; fi
"""


KDUMP_INIT_HEAD = r"""#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
echo "KDUMP: capture kernel up $(cat /proc/uptime)"
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_blk; do
    insmod /modules/$m.ko || echo "KDUMP: insmod $m failed"
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do n=$((n+1)); sleep 0.1; done
if [ ! -b /dev/vda ]; then echo "KDUMP-RESULT: failure: no /dev/vda"; reboot -f; fi
size=$(stat -c %s /proc/vmcore)  # the size procfs reports; reading it through would take as long as the dump
"""

# How the kdump initramfs writes /proc/vmcore to the dump disk /dev/vda, by
# name: the linux-kdump reference copies it as it is (an ELF vmcore, like
# `cat`); the makedumpfile writers drop the pages `-d 31` excludes (zero,
# cache, user and free pages) and write the kdump-compressed format, LZO
# (`-l`) or zlib (`-c`), straight to the block device (`-f`: the device
# exists, overwrite it). Each is one shell command that fails with a
# non-zero status and leaves its messages on stderr.
KDUMP_WRITERS = {
    "dd": "dd if=/proc/vmcore of=/dev/vda bs=1M conv=fsync",
    "makedumpfile-l": "makedumpfile -f -l -d 31 /proc/vmcore /dev/vda",
    "makedumpfile-c": "makedumpfile -f -c -d 31 /proc/vmcore /dev/vda",
}
# The console markers the kdump initramfs prints: just before the writer
# starts, and (KDUMP-RESULT) once it has finished and everything is synced.
KDUMP_WRITE_START = "KDUMP-WRITE-START"


def kdump_init(writer: str) -> str:
    """The kdump initramfs's /init: load the virtio modules, wait for the
    dump disk, print KDUMP-WRITE-START, run the writer, sync, print
    `KDUMP-RESULT: success|failure ...` and reboot."""
    if writer not in KDUMP_WRITERS:
        raise HarnessError(f"unknown kdump writer {writer!r} (known: {', '.join(KDUMP_WRITERS)})")
    return KDUMP_INIT_HEAD + f"""echo "KDUMP: copying /proc/vmcore ($size bytes) with {writer} $(cat /proc/uptime)"
echo "{KDUMP_WRITE_START} $(cat /proc/uptime)"
if {KDUMP_WRITERS[writer]} 2>/tmp/writer.err && sync; then
    echo "KDUMP-RESULT: success $size bytes $(cat /proc/uptime)"
else
    echo "KDUMP-RESULT: failure: {writer}: $(tr '\\r' '\\n' < /tmp/writer.err | tail -n 5 | tr '\\n' ' ')"
fi
reboot -f
"""


KDUMP_MODULES = {
    "virtio": "drivers/virtio/virtio.ko",
    "virtio_ring": "drivers/virtio/virtio_ring.ko",
    "virtio_pci_modern_dev": "drivers/virtio/virtio_pci_modern_dev.ko",
    "virtio_pci_legacy_dev": "drivers/virtio/virtio_pci_legacy_dev.ko",
    "virtio_pci": "drivers/virtio/virtio_pci.ko",
    "virtio_blk": "drivers/block/virtio_blk.ko",
}


def build_kdump_initramfs(k: GuestKernel, writer: str = "dd") -> bytes:
    """The Linux capture kernel's initramfs: busybox, the virtio modules of
    the guest kernel, the host's makedumpfile and the shared libraries `ldd`
    lists (for the makedumpfile writers), and /init (kdump_init)."""
    init = kdump_init(writer)
    c = Cpio()
    add_busybox(c)
    for name, rel in KDUMP_MODULES.items():
        c.host_file(f"modules/{name}.ko", k.modules / rel, 0o644)
    if writer.startswith("makedumpfile"):
        mdf = shutil.which("makedumpfile")
        if not mdf:
            raise HarnessError("makedumpfile not found in PATH (install the makedumpfile package)")
        c.executable_with_libs("usr/sbin/makedumpfile", Path(mdf))
    c.file("init", init.encode())
    return c.finish()


@dataclass(frozen=True)
class CrashPoint:
    """A crash other than the sysrq: `files` (guest path -> host file, e.g. the
    crash-point module) go into the initramfs and `command` (shell lines)
    replaces INIT_CRASH. qemu/matrix/ builds these."""

    files: tuple[tuple[str, Path], ...]
    command: str  # in a busy run, what follows busy_wait_inflight (no E2E-/BUSY- line before the crash)


@dataclass(frozen=True)
class MinicapLoad:
    """`minicap load` in place of kexec: the host tool, the purgatory beside the
    image, and the test-only --corrupt-digest, --test-corrupt-core-headers and
    --test-omit-elfcorehdr. `cargo xtask build` makes the tool
    static (glibc's libc.a, +crt-static), so it goes in alone, as it would into a
    bare busybox initramfs; a dynamic build (plain `cargo build`) still works,
    carried with the libraries ldd lists."""

    tool: Path
    purgatory: Path
    corrupt_digest: int | None = None
    corrupt_core_headers: tuple[str, ...] = ()  # --test-corrupt-core-headers=KIND,...
    omit_elfcorehdr: bool = False  # --test-omit-elfcorehdr
    image: str = "/minicap.elf"  # --image: the ELF, or a bzImage that ImageLoad puts in
    syscall: str | None = None  # --syscall auto|file|load (None: not given)
    nofileload: Path | None = None  # qemu/nofileload built (build_nofileload): the load runs under it


PT_INTERP = 3


def needs_interpreter(path: Path) -> bool:
    """Whether the ELF64 file at `path` asks for a dynamic loader (PT_INTERP):
    a static-pie has none."""
    elf = Path(path).read_bytes()
    if elf[:6] != b"\x7fELF\x02\x01":
        raise HarnessError(f"{path}: not an ELF64 little-endian file")
    phoff = int.from_bytes(elf[32:40], "little")
    phentsize = int.from_bytes(elf[54:56], "little")
    phnum = int.from_bytes(elf[56:58], "little")
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 4 > len(elf):
            raise HarnessError(f"{path}: program header table outside the file")
        if int.from_bytes(elf[at:at + 4], "little") == PT_INTERP:
            return True
    return False


def minicap_load_block(c: Cpio, load: MinicapLoad, capture_append: str) -> str:
    """Adds the tool and the purgatory; returns the load command."""
    if needs_interpreter(load.tool):
        c.executable_with_libs("sbin/minicap", load.tool)
    else:
        c.host_file("sbin/minicap", load.tool)
    c.host_file("purgatory.elf", load.purgatory, 0o644)
    corrupt = "" if load.corrupt_digest is None else f" --corrupt-digest {load.corrupt_digest}"
    if load.corrupt_core_headers:
        corrupt += f" --test-corrupt-core-headers={','.join(load.corrupt_core_headers)}"
    if load.omit_elfcorehdr:
        corrupt += " --test-omit-elfcorehdr"
    syscall = "" if load.syscall is None else f" --syscall {load.syscall}"
    wrapper = ""
    if load.nofileload is not None:
        c.host_file("sbin/nofileload", load.nofileload)
        wrapper = "nofileload "
    return f"{wrapper}minicap load --image {load.image}{syscall}{corrupt} --append={shell_quote(capture_append)}"


NOFILELOAD_SOURCE = QEMU_DIR / "nofileload" / "nofileload.c"


def build_nofileload(out: Path) -> Path:
    """qemu/nofileload/nofileload.c compiled static (the initramfs has no C library) into `out`."""
    cc = shutil.which("gcc") or shutil.which("gcc-12")
    if cc is None:
        raise HarnessError("gcc not found: it builds qemu/nofileload for load-minicap-fallback (qemu/install-deps.sh)")
    binary = out / "nofileload"
    p = run([cc, "-static", "-O2", "-Wall", "-Wextra", "-Werror", "-o", binary, NOFILELOAD_SOURCE])
    if p.returncode != 0:
        raise HarnessError(f"building {NOFILELOAD_SOURCE} failed (a static glibc: libc6-dev):\n{p.stdout}")
    return binary


@dataclass(frozen=True)
class ImageLoad:
    """minicap's bzImage in the initramfs beside /minicap.elf: `files` (guest name -> host file:
    the bzImage as /minicap.bzImage, a signed copy as /minicap-signed.bzImage) and `loaded`, the
    one the first kernel loads; kexec-tools loads it with kexec_file_load when `kexec_file`."""

    files: tuple[tuple[str, Path], ...]
    loaded: str  # a guest path, /minicap.bzImage or /minicap-signed.bzImage
    kexec_file: bool = False


def kexec_command(image: str, capture_append: str, kexec_args: str = "", kexec_file: bool = False) -> str:
    """kexec-tools' crash load of `image` (a guest path). The ELF takes --kexec-args (by default
    --args-linux: minicap.elf is not a Linux vmlinux); a bzImage needs none: `kexec -p` loads it
    with kexec-tools' bzImage loader and kexec_load, `kexec -s -p` hands the file to the kernel
    (kexec_file_load), which parses it and checks its signature where it must."""
    if image.endswith(".elf"):
        if kexec_file:
            raise HarnessError("kexec_file_load takes a bzImage, not minicap.elf")
        return f"kexec -p {image} {kexec_args} --append={shell_quote(capture_append)}"
    return f"kexec {'-s ' if kexec_file else ''}-p {image} --append={shell_quote(capture_append)}"


def build_initramfs(k: GuestKernel, capture_append: str, *, minicap: Path | None, kexec_args: str = "",
                    pattern: Path | None = None, pattern_mib: int = 64, seed: int = 0,
                    kdump_writer: str = "dd", busy: BusyDisk | None = None,
                    minicap_load: MinicapLoad | None = None, crash_point: CrashPoint | None = None,
                    image_load: ImageLoad | None = None, before_load: str = "") -> bytes:
    """The crashing guest's initramfs. With `minicap` its init loads that
    capture kernel with `kexec -p <minicap> <kexec_args>`; without, the
    guest's own kernel with a kdump initramfs whose init writes the vmcore
    with `kdump_writer` (KDUMP_WRITERS; dd for the linux-kdump reference).
    With `pattern` it plants the memory pattern before crashing; with
    `busy` it then starts writing to that disk and crashes while writes are
    in flight (busy_block, busy_crash). With `minicap_load` the host tool
    loads minicap (`minicap load`) and the initramfs has no kexec binary.
    With `crash_point` its command crashes the guest instead of the sysrq
    (in a busy run, once a write is in flight). With `image_load` the bzImage
    (and its signed copy) go in too and the load takes the one it names.
    `before_load` (shell lines) runs just before the load: the Secure Boot
    runs' lockdown probe and refusals (secureboot.init_block)."""
    c = Cpio()
    add_busybox(c)
    if minicap_load is None:
        c.executable_with_libs("sbin/kexec", Path(shutil.which("kexec") or "/sbin/kexec"))
    init = INIT_HEAD
    if image_load is not None:
        if minicap is None:
            raise HarnessError("a bzImage load needs minicap")
        for name, path in image_load.files:
            c.host_file(name.lstrip("/"), path, 0o644)
    if minicap is not None and minicap_load is not None:
        c.host_file("minicap.elf", minicap, 0o644)
        kcmd = minicap_load_block(c, minicap_load, capture_append)
    elif minicap is None:
        c.host_file("capture/vmlinuz", k.vmlinuz, 0o644)
        c.file("capture/initrd.gz", build_kdump_initramfs(k, kdump_writer), 0o644)
        kcmd = (
            "kexec -p /capture/vmlinuz --initrd=/capture/initrd.gz "
            f"--append={shell_quote(capture_append)}"
        )
    else:
        c.host_file("minicap.elf", minicap, 0o644)
        if image_load is None:
            kcmd = kexec_command("/minicap.elf", capture_append, kexec_args)
        else:
            kcmd = kexec_command(image_load.loaded, capture_append, kexec_file=image_load.kexec_file)
    init += before_load
    init += kexec_block(kcmd)
    if minicap_load is not None:
        # What an operator would check: "loaded by minicap load", from the load record.
        init += "minicap status\n"
    if pattern is not None:
        c.executable_with_libs("pattern", pattern)
        init += INIT_PATTERN.format(mib=pattern_mib, seed=f"{seed:016x}")
    if crash_point is not None:
        for name, path in crash_point.files:
            c.host_file(name, path, 0o644)
    if busy is not None:
        for m in busy.modules:
            c.host_file(f"modules/{m.name}", m, 0o644)
        init += busy_block(busy)
        init += busy_crash(busy) if crash_point is None else busy_wait_inflight(busy) + crash_point.command
    elif crash_point is not None:
        init += crash_point.command
    else:
        init += INIT_CRASH
    c.file("init", init.encode())
    return c.finish()

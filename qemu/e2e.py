#!/usr/bin/env python3
"""End-to-end test of minicap: crash a real Linux kernel in QEMU, let the
minicap capture kernel write the dump, and check the dump with real tools.

Python 3.11 standard library only.  See qemu/README.md.

Scenarios:
  capture      (default) full capture; checks RESULT, `minicap save`,
               makedumpfile --dump-dmesg, the memory pattern, PT_LOADs
               against /proc/iomem, the notes, optionally `crash`.
  no-disk      no dump disk attached: minicap must fail cleanly and reboot.
  small-disk   a 4 MiB dump disk: minicap must refuse ("too small") and
               leave the disk's data area untouched.
  linux-kdump  reference run without minicap: the guest's own kernel is the
               capture kernel and copies /proc/vmcore to the disk.  Runs the
               same vmcore checks (validates the harness; baseline timing).

Device failure:
  device-error  the dump disk goes through QEMU's blkdebug driver, which
               fails one write part-way through the dump area (EIO, once):
               minicap must report the write error, record "failed", the
               message and the last checkpoint in the header, and reboot;
               `minicap save --partial` must then give back exactly the
               bytes the header vouches for (ELF headers, notes and the
               memory pattern in them intact); plain `save` must refuse.

Bad input (each: the expected RESULT failure, QEMU exits, and every disk
image's SHA-256 is the same after the run as before it):
  unformatted-disk  one disk of random data, never formatted.
  wrong-id          a formatted disk, minicap.device= names another id.
  bad-elfcorehdr    a formatted disk, elfcorehdr=12junk in the capture
                    command line (kexec appends the real one after it).
  ambiguous         two formatted disks and no minicap.device=.

The capture scenario also attaches a 64 MiB decoy disk of random data first
on the PCI bus and checks it is untouched (--no-decoy to leave it out).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import gzip
import hashlib
import io
import json
import os
import random
import re
import select
import shlex
import shutil
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CACHE = HERE / "cache"
KERNEL_META = "linux-image-cloud-amd64"

KERNEL_TEXT_START = 0xFFFFFFFF80000000
PT_LOAD = 1
PT_NOTE = 4
NT_PRSTATUS = 1
MIB = 1 << 20

CRASH_MARKERS = ("sysrq: Trigger a crash", "Kernel panic")
DECOY_BYTES = 64 * MIB
# Negative scenarios: nothing may be written to any attached disk.
BAD_INPUT_SCENARIOS = ("unformatted-disk", "wrong-id", "bad-elfcorehdr", "ambiguous")
SCENARIOS = ("capture", "no-disk", "small-disk", "linux-kdump", "device-error") + BAD_INPUT_SCENARIOS
BAD_ELFCOREHDR = "elfcorehdr=12junk"
RESULT_RE = re.compile(r"minicap: RESULT: (success|failure)(.*)")
# The writer's failure for a vmcore data write the device rejected
# (kernel/src/writer.rs around drivers/src/virtio/blk.rs's VirtioBlkError::Io).
WRITE_FAILURE_RE = re.compile(
    r"writing memory (0x[0-9a-f]+) to byte (0x[0-9a-f]+): write at byte (0x[0-9a-f]+) failed with virtio status (\d+)"
)
DUMP_OFFSET = MIB  # where the vmcore starts on a minicap device
DUMP_STATES = {0: "empty", 1: "writing", 2: "complete", 3: "failed"}
MAX_REQUEST_BYTES = 4 * MIB  # minicap's largest virtio-blk request (drivers/src/virtio/blk.rs)
CHECKPOINT_PERCENT = 10  # the header's `written` is brought up to date every 10 % (kernel/src/writer.rs)
PAGE_SIZE = 4096
KDUMP_RESULT_RE = re.compile(r"KDUMP-RESULT: (success|failure)(.*)")


class HarnessError(Exception):
    """A setup problem that prevents the scenario from running at all."""


def log(msg: str) -> None:
    print(f"e2e: {msg}", flush=True)


def check_stored_log(res, args, out, disk, serial_lines, want):
    """`minicap log DISK`: the console log minicap stored on the device must
    contain `want` and be a faithful copy of its serial output."""
    p = run([args.tool, "log", disk])
    (out / "stored.log").write_text(p.stdout)
    stored = [l.rstrip("\r") for l in p.stdout.splitlines() if l.strip()]
    serial = {l.rstrip("\r") for l in serial_lines if l.startswith("minicap: ")}
    missing = [w for w in want if not any(w in l for l in stored)]
    foreign = [l for l in stored if l not in serial]
    ok = p.returncode == 0 and stored and not missing and not foreign
    detail = f"exit {p.returncode}, {len(stored)} line(s)"
    if missing:
        detail += f", missing {missing}"
    if foreign:
        detail += f", not on the serial console: {foreign[:3]}"
    if ok:
        detail += ", all of them on the serial console too"
    res.add("minicap log (console log stored on the device)", ok, detail)


IOMMU_TAKEOVER = re.compile(
    r"minicap: IOMMU: VT-d unit \S+ .*translation was on.*own root table, "
    r"(pass-through|identity map of \[[^)]*\)) for (?!no device)[^;]+; all other DMA blocked; "
    r"translation on")


def check_iommu_takeover(res, serial_lines):
    """With --iommu: the guest left VT-d translating and minicap installed its
    own tables (only the virtio-blk devices let through)."""
    hits = [l.rstrip("\r") for l in serial_lines if IOMMU_TAKEOVER.search(l)]
    iommu = [l.rstrip("\r") for l in serial_lines if l.startswith("minicap: IOMMU")]
    res.add("IOMMU taken over (translation stays on)", bool(hits),
            (hits or iommu or ["no 'minicap: IOMMU' line"])[0])  # fmt: skip


def run(cmd, **kw) -> subprocess.CompletedProcess:
    """Runs a command, capturing text output."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], **kw)


# ---------------------------------------------------------------------------
# Guest kernel from the Debian archive
# ---------------------------------------------------------------------------


@contextlib.contextmanager
def cache_lock():
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resolve_kernel_version() -> str:
    """`apt-cache depends linux-image-cloud-amd64` names the current
    linux-image-<ver>; falls back to the newest version already cached."""
    try:
        p = run(["apt-cache", "depends", KERNEL_META])
        m = re.search(r"linux-image-(\d\S*-cloud-amd64)\b", p.stdout) if p.returncode == 0 else None
        if m:
            return m.group(1)
        why = p.stdout.strip()
    except FileNotFoundError as e:
        why = str(e)
    cached = sorted(
        (d.name for d in CACHE.glob("*-cloud-amd64") if (d / "boot").is_dir()),
        key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)],
    )
    if cached:
        log(f"apt-cache could not resolve {KERNEL_META} ({why!r}); using cached {cached[-1]}")
        return cached[-1]
    raise HarnessError(
        f"cannot resolve the guest kernel: `apt-cache depends {KERNEL_META}` gave {why!r}; "
        "run `apt-get update` or pass --kernel-version"
    )


def apt_download(pkg: str) -> Path:
    """`apt-get download pkg` into the cache; returns the .deb."""
    existing = sorted(CACHE.glob(f"{pkg}_*.deb"))
    if existing:
        return existing[-1]
    log(f"apt-get download {pkg}")
    p = run(["apt-get", "download", pkg], cwd=CACHE)
    debs = sorted(CACHE.glob(f"{pkg}_*.deb"))
    if p.returncode != 0 or not debs:
        raise HarnessError(
            f"`apt-get download {pkg}` failed (exit {p.returncode}):\n{p.stdout.strip()}\n"
            "(is the package index current? try `apt-get update`)"
        )
    return debs[-1]


@dataclass
class GuestKernel:
    version: str
    root: Path  # extracted package

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version / "kernel"


def ensure_kernel(version: str | None) -> GuestKernel:
    with cache_lock():
        ver = version or resolve_kernel_version()
        k = GuestKernel(ver, CACHE / ver)
        if not k.vmlinuz.is_file():
            deb = apt_download(f"linux-image-{ver}")
            tmp = CACHE / f".{ver}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            p = run(["dpkg-deb", "-x", deb, tmp])
            if p.returncode != 0:
                raise HarnessError(f"dpkg-deb -x {deb} failed:\n{p.stdout}")
            shutil.rmtree(k.root, ignore_errors=True)
            tmp.rename(k.root)
            deb.unlink()
        if not k.vmlinuz.is_file():
            raise HarnessError(f"{k.vmlinuz} missing after extracting the package")
        return k


def ensure_debug_vmlinux(k: GuestKernel) -> Path:
    """vmlinux with debug info from the -dbg package (about 280 MB download);
    only the vmlinux is kept."""
    out = k.root / f"vmlinux-{k.version}"
    with cache_lock():
        if out.is_file():
            return out
        deb = apt_download(f"linux-image-{k.version}-dbg")
        member = f"./usr/lib/debug/boot/vmlinux-{k.version}"
        log(f"extracting {member} from {deb.name}")
        tmp = k.root / ".dbg.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = run(["tar", "-x", "-C", tmp, member], stdin=fsys.stdout)
        fsys.stdout.close()
        rc = fsys.wait()
        src = tmp / member
        if rc != 0 or tar.returncode != 0 or not src.is_file():
            raise HarnessError(f"extracting {member} from {deb} failed:\n{tar.stdout}")
        src.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        deb.unlink()
        return out


# ---------------------------------------------------------------------------
# initramfs (newc cpio, gzip), written directly
# ---------------------------------------------------------------------------


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


KDUMP_INIT = r"""#!/bin/busybox sh
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
size=$(wc -c < /proc/vmcore)
echo "KDUMP: copying /proc/vmcore ($size bytes) $(cat /proc/uptime)"
if dd if=/proc/vmcore of=/dev/vda bs=1M conv=fsync 2>/tmp/dd.err; then
    echo "KDUMP-RESULT: success $size bytes $(cat /proc/uptime)"
else
    echo "KDUMP-RESULT: failure: dd: $(cat /tmp/dd.err)"
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


def build_kdump_initramfs(k: GuestKernel) -> bytes:
    c = Cpio()
    add_busybox(c)
    for name, rel in KDUMP_MODULES.items():
        c.host_file(f"modules/{name}.ko", k.modules / rel, 0o644)
    c.file("init", KDUMP_INIT.encode())
    return c.finish()


def build_initramfs(args, k: GuestKernel, append: str, seed: int, with_pattern: bool) -> bytes:
    c = Cpio()
    add_busybox(c)
    c.executable_with_libs("sbin/kexec", Path(shutil.which("kexec") or "/sbin/kexec"))
    init = INIT_HEAD
    if args.scenario == "linux-kdump":
        c.host_file("capture/vmlinuz", k.vmlinuz, 0o644)
        c.file("capture/initrd.gz", build_kdump_initramfs(k), 0o644)
        kcmd = (
            "kexec -p /capture/vmlinuz --initrd=/capture/initrd.gz "
            f"--append={shell_quote(append)}"
        )
    else:
        c.host_file("minicap.elf", Path(args.minicap), 0o644)
        kcmd = f"kexec -p /minicap.elf {args.kexec_args} --append={shell_quote(append)}"
    init += kexec_block(kcmd)
    if with_pattern:
        c.executable_with_libs("pattern", Path(args.pattern))
        init += INIT_PATTERN.format(mib=args.pattern_mib, seed=f"{seed:016x}")
    init += INIT_CRASH
    c.file("init", init.encode())
    return c.finish()


# ---------------------------------------------------------------------------
# Parsing helpers (also used by qemu/test_e2e.py)
# ---------------------------------------------------------------------------


@dataclass
class IomemEntry:
    start: int
    end: int  # inclusive
    name: str
    depth: int


def parse_iomem(lines) -> list[IomemEntry]:
    out = []
    for raw in lines:
        line = raw.rstrip("\r\n")
        m = re.match(r"^(\s*)([0-9a-fA-F]+)-([0-9a-fA-F]+) : (.*)$", line)
        if not m:
            continue
        out.append(IomemEntry(int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip(), len(m.group(1)) // 2))
    return out


def iomem_section(lines: list[str]) -> list[str]:
    """The lines between the (last) IOMEM-BEGIN and the next IOMEM-END."""
    begin = [i for i, l in enumerate(lines) if l.strip() == "IOMEM-BEGIN"]
    if not begin:
        return []
    rest = lines[begin[-1] + 1 :]
    for i, l in enumerate(rest):
        if l.strip() == "IOMEM-END":
            return rest[:i]
    return []


def merge_ranges(ranges) -> list[tuple[int, int]]:
    """Sorts half-open ranges and merges overlapping or adjacent ones."""
    out: list[list[int]] = []
    for s, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def subtract_ranges(ranges, holes) -> list[tuple[int, int]]:
    out = []
    holes = merge_ranges(holes)
    for s, e in merge_ranges(ranges):
        cur = s
        for hs, he in holes:
            if he <= cur or hs >= e:
                continue
            if hs > cur:
                out.append((cur, hs))
            cur = max(cur, he)
        if cur < e:
            out.append((cur, e))
    return out


def expected_dump_ranges(iomem: list[IomemEntry]) -> list[tuple[int, int]]:
    """Top-level System RAM minus the Crash kernel reservation(s), half-open."""
    ram = [(e.start, e.end + 1) for e in iomem if e.depth == 0 and e.name == "System RAM"]
    crash = [(e.start, e.end + 1) for e in iomem if e.name.startswith("Crash kernel")]
    return subtract_ranges(ram, crash)


def fmt_ranges(rs) -> str:
    return ", ".join(f"{s:#x}-{e - 1:#x}" for s, e in rs) or "(none)"


@dataclass
class Phdr:
    type: int
    flags: int
    offset: int
    vaddr: int
    paddr: int
    filesz: int
    memsz: int


def read_phdrs(f) -> list[Phdr]:
    f.seek(0)
    eh = f.read(64)
    if len(eh) < 64 or eh[:4] != b"\x7fELF":
        raise ValueError("not an ELF file")
    if eh[4] != 2 or eh[5] != 1:
        raise ValueError("not ELF64 little-endian")
    (phoff, shoff) = struct.unpack_from("<QQ", eh, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", eh, 0x36)
    if phnum == 0xFFFF:
        f.seek(shoff)
        sh = f.read(64)
        phnum = struct.unpack_from("<I", sh, 0x2C)[0]
    out = []
    for i in range(phnum):
        f.seek(phoff + i * phentsize)
        b = f.read(56)
        if len(b) < 56:
            raise ValueError(f"truncated program header {i}")
        out.append(Phdr(*struct.unpack("<IIQQQQQ", b[:48])))
    return out


@dataclass
class Note:
    name: str
    type: int
    desc: bytes


def parse_notes(data: bytes) -> tuple[list[Note], int]:
    """Parses ELF notes; returns them and the number of trailing bytes that
    were not notes (zero padding, or garbage)."""
    notes = []
    off = 0
    while off + 12 <= len(data):
        namesz, descsz, ntype = struct.unpack_from("<III", data, off)
        if namesz == 0 and descsz == 0 and ntype == 0:
            break
        name_off = off + 12
        desc_off = name_off + ((namesz + 3) & ~3)
        end = desc_off + ((descsz + 3) & ~3)
        if end > len(data):
            break
        name = data[name_off : name_off + namesz].rstrip(b"\0").decode(errors="replace")
        notes.append(Note(name, ntype, data[desc_off : desc_off + descsz]))
        off = end
    return notes, len(data) - off


def vmcore_end(f) -> int:
    """End of the last segment's file data (the size of an ELF vmcore)."""
    end = 0
    f.seek(0)
    eh = f.read(64)
    phoff = struct.unpack_from("<Q", eh, 0x20)[0]
    phentsize, phnum = struct.unpack_from("<HH", eh, 0x36)
    end = phoff + phentsize * phnum
    for p in read_phdrs(f):
        end = max(end, p.offset + p.filesz)
    return end


def fingerprint(path: Path, block: int = MIB) -> tuple[str, list[bytes]]:
    """SHA-256 of a file's whole content (holes of a sparse file read as
    zeros) and a digest of each `block` bytes, to tell where it changed."""
    whole = hashlib.sha256()
    blocks = []
    with open(path, "rb") as f:
        while b := f.read(block):
            whole.update(b)
            blocks.append(hashlib.blake2b(b, digest_size=16).digest())
    return whole.hexdigest(), blocks


def compare_fingerprints(before: tuple[str, list[bytes]], after: tuple[str, list[bytes]],
                         block: int = MIB) -> tuple[bool, str]:
    """(unchanged, description) for two `fingerprint`s of one file."""
    if before[0] == after[0]:
        return True, f"sha256 {before[0][:16]}... before and after ({len(before[1])} x {block // 1024} KiB)"
    nb, na = len(before[1]), len(after[1])
    changed = [i for i in range(min(nb, na)) if before[1][i] != after[1][i]]
    detail = f"sha256 changed: {before[0][:16]}... -> {after[0][:16]}..."
    if changed:
        detail += (f"; {len(changed)} of {nb} {block // 1024} KiB blocks differ, first at "
                   f"offset {changed[0] * block:#x}, last at {changed[-1] * block:#x}")  # fmt: skip
    if nb != na:
        detail += f"; length changed from {nb} to {na} blocks"
    return False, detail


def other_device_id(device_id: str, rng=random) -> str:
    """A random minicap device id (32 lower-case hex digits) that differs from
    `device_id`."""
    while True:
        cand = f"{rng.getrandbits(128):032x}"
        if cand != device_id.lower():
            return cand


def check_failure_reason(scenario: str, reason: str, wanted_id: str | None = None) -> tuple[bool, str]:
    """Whether the text after `RESULT: failure` gives the reason the scenario
    provokes; returns (ok, what was expected)."""
    low = reason.lower()
    if scenario == "no-disk":
        ok = bool(re.search(r"no\b.*(device|disk)|(device|disk).*(not found|missing|absent)", reason, re.I))
        return ok, "reason mentions a missing device"
    want = {
        "small-disk": "too small",
        "unformatted-disk": "is a prepared minicap dump device",
        "wrong-id": f"no virtio-blk device has minicap device id {(wanted_id or '').lower()}",
        "bad-elfcorehdr": "elfcorehdr",
        "ambiguous": "more than one prepared",
        "device-error": "failed with virtio status",
    }.get(scenario)
    if want is None:
        return False, f"scenario {scenario} expects no failure"
    return want in low, f"reason contains {want!r}"


def check_device_reports(scenario: str, lines: list[str], ndisks: int = 1,
                         disk_id: str | None = None, wanted_id: str | None = None) -> tuple[bool, str]:
    """The per-device lines minicap prints before its RESULT when it skips a
    disk (`...; left alone`): one "not a minicap dump device" per unformatted
    disk (unformatted-disk; capture and device-error with the decoy), or "minicap device id
    <disk_id> is not the requested <wanted_id>" (wrong-id)."""
    mc = []
    for l in lines:
        if RESULT_RE.search(l):
            break
        if l.startswith("minicap: ") and "left alone" in l:
            mc.append(l.strip())
    if scenario in ("unformatted-disk", "capture", "device-error"):
        hits = [l for l in mc if "not a minicap dump device" in l]
        ok = len(hits) == ndisks
        detail = f"{len(hits)} 'not a minicap dump device ... left alone' line(s), want {ndisks}"
    elif scenario == "wrong-id":
        want = f"minicap device id {(disk_id or '').lower()} is not the requested {(wanted_id or '').lower()}; left alone"
        hits = [l for l in mc if want in l.lower()]
        ok = len(hits) == 1
        detail = f"{len(hits)} line(s) with {want!r}, want 1"
    else:
        return True, "no per-device lines expected"
    return ok, detail + (f": {hits[0]}" if hits else (f"; lines seen: {mc}" if mc else "; no 'left alone' lines"))


# ---------------------------------------------------------------------------
# device-error: an injected write error, the header it leaves, the partial dump
# ---------------------------------------------------------------------------


def inject_offset(memory_mib: int, percent: float) -> int:
    """Byte offset on the dump disk where the write error is injected:
    `percent` of the guest's RAM past the start of the vmcore (which is about
    as long as the RAM), rounded down to a 4 KiB boundary."""
    if not 0 < percent < 100:
        raise HarnessError(f"--fail-at-percent {percent} must be between 0 and 100")
    return DUMP_OFFSET + (int(memory_mib * MIB * percent / 100) & ~(PAGE_SIZE - 1))


def blkdebug_config(sector: int, errno: int = 5) -> str:
    """A QEMU blkdebug rule file failing the first write that covers 512-byte
    `sector` with `errno` (5 = EIO), once: the `pwritev` event fires on every
    write to the blkdebug node, arms the rule, and the write is failed if its
    range contains the sector."""
    return (
        "[inject-error]\n"
        'event = "pwritev"\n'
        f'errno = "{errno}"\n'
        f'sector = "{sector}"\n'
        'once = "on"\n'
    )


@dataclass
class DiskHeader:
    state: str
    format: int
    dump_offset: int
    dump_length: int
    written: int
    capacity: int
    crash_time: int
    writer: str
    osrelease: str
    message: str


def parse_dump_header(b: bytes) -> DiskHeader:
    """The minicap header in the first sector of a dump device (README.md,
    "On-device layout"); ValueError if it is not one or its CRC is wrong."""
    if len(b) < 512:
        raise ValueError(f"{len(b)} bytes, a header has 512")
    if b[:8] != b"MINICAP\0":
        raise ValueError(f"bad magic {b[:8]!r}")
    version, hlen = struct.unpack_from("<II", b, 8)
    if (version, hlen) != (1, 512):
        raise ValueError(f"layout version {version}, header length {hlen}")
    stored = struct.unpack_from("<I", b, 508)[0]
    computed = zlib.crc32(b[:508])
    if stored != computed:
        raise ValueError(f"CRC {stored:#010x} stored, {computed:#010x} computed")
    state, fmt, off, length, written, cap, ctime = struct.unpack_from("<IIQQQQq", b, 32)
    text = lambda o, n: b[o : o + n].split(b"\0", 1)[0].decode(errors="replace")  # noqa: E731
    return DiskHeader(DUMP_STATES.get(state, f"unknown ({state})"), fmt, off, length, written, cap, ctime,
                      text(112, 32), text(144, 64), text(208, 256))  # fmt: skip


@dataclass
class WriteFailure:
    source: int  # physical address of the memory being written
    offset: int  # device byte offset of the writer's write (a run of requests)
    request: int  # device byte offset of the request the device failed
    status: int  # virtio status byte (1 = VIRTIO_BLK_S_IOERR)


def parse_write_failure(reason: str) -> WriteFailure | None:
    m = WRITE_FAILURE_RE.search(reason)
    if not m:
        return None
    return WriteFailure(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))


def check_write_failure(reason: str, injected: int) -> tuple[bool, str]:
    """The RESULT failure names a device write error (virtio status 1,
    VIRTIO_BLK_S_IOERR) of a request that contains the injected byte."""
    wf = parse_write_failure(reason)
    if wf is None:
        return False, f"no 'writing memory ... write at byte ... failed with virtio status N' in {reason!r}"
    ok = wf.status == 1 and wf.offset <= wf.request <= injected < wf.request + MAX_REQUEST_BYTES
    return ok, (f"request at byte {wf.request:#x} (write of {wf.source:#x} to {wf.offset:#x}) failed with "
                f"virtio status {wf.status}; injected error at byte {injected:#x}"
                + ("" if ok else f" (want status 1 and a request of at most {MAX_REQUEST_BYTES} bytes "
                                 "containing the injected byte)"))  # fmt: skip


def check_checkpoint(written: int, dump_length: int, failed_at: int) -> tuple[bool, str]:
    """`written` (header) against the last 10 % checkpoint before the failed
    write, which started `failed_at` bytes into the vmcore: the writer
    updates `written` after the first write that reaches each multiple of
    10 %, so `written` must be at that multiple (plus less than one request)
    and no later than the failure."""
    if dump_length <= 0:
        return False, f"dump_length {dump_length}"
    pct = written * 100 // dump_length
    want = failed_at * 100 // dump_length // CHECKPOINT_PERCENT * CHECKPOINT_PERCENT
    boundary = -(-want * dump_length // 100)  # first byte count at `want` percent
    ok = (
        0 < written < dump_length
        and written <= failed_at
        and pct == want
        and written - boundary < MAX_REQUEST_BYTES
    )
    detail = (f"written {written} of {dump_length} ({pct} %), write failed at {failed_at} "
              f"({failed_at * 100 // dump_length} %): last checkpoint before it is {want} %")  # fmt: skip
    if not ok:
        detail += f" (want 0 < written <= {failed_at}, in [{boundary}, {boundary + MAX_REQUEST_BYTES}))"
    return ok, detail


def same_bytes(a: Path, a_off: int, b: Path, b_off: int, length: int) -> tuple[bool, str]:
    """Whether `length` bytes of `a` at `a_off` equal those of `b` at `b_off`."""
    done = 0
    with open(a, "rb") as fa, open(b, "rb") as fb:
        fa.seek(a_off)
        fb.seek(b_off)
        while done < length:
            n = min(4 * MIB, length - done)
            x, y = fa.read(n), fb.read(n)
            if x != y:
                i = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]), min(len(x), len(y)))
                return False, f"first difference at byte {done + i:#x} of {length:#x}"
            done += n
    return True, f"{length} bytes identical"


M64 = (1 << 64) - 1


def splitmix64(x: int) -> int:
    """As qemu/pattern/src/lib.rs."""
    z = (x + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def pattern_page(seed: int, page: int) -> bytes:
    """The bytes `minicap-pattern fill` writes into page `page`."""
    base = (seed ^ (page << 9)) & M64
    return struct.pack("<512Q", *[splitmix64(base ^ w) for w in range(512)])


@dataclass
class PatternLog:
    seed: int
    runs: list[tuple[int, int, int]]  # (first pfn, first page, count)
    pages: int


def parse_pattern_log(lines) -> PatternLog:
    """The PATTERN-SEED/-RUN/-READY lines of the serial log (the format
    `minicap-pattern verify` reads); ValueError if incomplete."""
    seed, runs, ready = None, [], None
    for line in lines:
        if m := re.search(r"PATTERN-SEED ([0-9a-fA-F]+)", line):
            seed = int(m.group(1), 16)
        elif m := re.search(r"PATTERN-RUN ([0-9a-fA-F]+) (\d+) (\d+)", line):
            runs.append((int(m.group(1), 16), int(m.group(2)), int(m.group(3))))
        elif m := re.search(r"PATTERN-READY (\d+)", line):
            ready = int(m.group(1))
    if seed is None or ready is None:
        raise ValueError("no PATTERN-SEED or PATTERN-READY line")
    if sum(r[2] for r in runs) != ready:
        raise ValueError(f"PATTERN-RUN lines cover {sum(r[2] for r in runs)} pages, PATTERN-READY says {ready}")
    return PatternLog(seed, runs, ready)


def check_partial_pattern(f, saved: int, phdrs: list[Phdr], log: PatternLog) -> tuple[int, int, list[str]]:
    """Checks every pattern page that lies within the first `saved` bytes of
    the vmcore `f`; returns (intact pages, pages beyond `saved`, problems)."""
    loads = [p for p in phdrs if p.type == PT_LOAD]
    intact = beyond = 0
    problems: list[str] = []
    for pfn0, page0, count in log.runs:
        for k in range(count):
            pa = (pfn0 + k) * PAGE_SIZE
            off = next((p.offset + pa - p.paddr for p in loads
                        if p.paddr <= pa and pa + PAGE_SIZE <= p.paddr + p.filesz), None)  # fmt: skip
            if off is None:
                problems.append(f"page {page0 + k} (pfn {pfn0 + k:#x}) is in no PT_LOAD")
                continue
            if off + PAGE_SIZE > saved:
                beyond += 1
                continue
            f.seek(off)
            if f.read(PAGE_SIZE) == pattern_page(log.seed, page0 + k):
                intact += 1
            else:
                problems.append(f"page {page0 + k} (pfn {pfn0 + k:#x}, file offset {off:#x}) differs")
    return intact, beyond, problems


# ---------------------------------------------------------------------------
# QEMU run with a timestamped serial console
# ---------------------------------------------------------------------------


@dataclass
class SerialLine:
    t: float  # time.monotonic() when the line arrived
    text: str


@dataclass
class QemuRun:
    lines: list[SerialLine] = field(default_factory=list)
    t_start: float = 0.0
    t_exit: float | None = None
    returncode: int | None = None
    timed_out: bool = False
    killed_after_result: bool = False
    stderr: str = ""

    def first(self, pred) -> SerialLine | None:
        return next((l for l in self.lines if pred(l.text)), None)

    def texts(self) -> list[str]:
        return [l.text for l in self.lines]


def run_qemu(cmd: list[str], serial_log: Path, timeout: float, echo: bool, result_re, grace: float) -> QemuRun:
    r = QemuRun()
    log("qemu: " + " ".join(shlex.quote(c) for c in cmd))
    errf = open(serial_log.with_name("qemu.stderr"), "w+")
    r.t_start = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errf)
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    pending = b""
    deadline = r.t_start + timeout
    result_deadline = None
    with open(serial_log, "wb") as raw:

        def take(chunk: bytes, now: float) -> None:
            nonlocal pending, result_deadline
            raw.write(chunk)
            raw.flush()
            pending += chunk
            *done, pending = pending.split(b"\n")
            for b in done:
                text = b.decode(errors="replace").rstrip("\r")
                r.lines.append(SerialLine(now, text))
                if echo:
                    print(f"[{now - r.t_start:8.3f}] {text}", flush=True)
                if result_deadline is None and result_re.search(text):
                    result_deadline = now + grace

        while True:
            now = time.monotonic()
            limit = deadline if result_deadline is None else min(deadline, result_deadline)
            if now >= limit:
                if result_deadline is not None and now >= result_deadline:
                    r.killed_after_result = True
                else:
                    r.timed_out = True
                proc.kill()
                proc.wait()
                break
            ready, _, _ = select.select([fd], [], [], min(0.5, limit - now))
            if not ready:
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            now = time.monotonic()
            if not chunk:  # EOF: QEMU exited
                proc.wait()
                r.t_exit = now
                break
            take(chunk, now)
        if pending:
            take(b"\n", time.monotonic())
    r.returncode = proc.returncode
    errf.seek(0)
    r.stderr = errf.read()
    errf.close()
    return r


def qemu_command(args, k: GuestKernel, initrd: Path, disks: list[Path],
                 blkdebug: dict[Path, Path] | None = None) -> list[str]:
    """The QEMU command line; `disks` become virtio-blk devices in PCI slots
    1, 2, ... in that order (so minicap's PCI scan meets them in that order).
    A disk with an entry in `blkdebug` (image -> rule file) is attached
    through QEMU's blkdebug driver with those rules, and I/O errors are
    reported to the guest (werror=report, rerror=report)."""
    append = (
        f"console=ttyS0 crashkernel={args.crashkernel} panic=0 oops=panic loglevel=7 "
        f"printk.time=1 {args.guest_append}"
    ).strip()
    cmd = [
        args.qemu,
        "-machine", "q35,accel=tcg",
        "-cpu", args.cpu,
        "-m", str(args.memory),
        "-smp", str(args.smp),
        "-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none",
        "-serial", "stdio",
        "-net", "none",
        "-no-reboot",
        "-kernel", str(k.vmlinuz),
        "-initrd", str(initrd),
        "-append", append,
    ]  # fmt: skip
    virtio = {
        "modern": "disable-legacy=on,disable-modern=off",
        "legacy": "disable-legacy=off,disable-modern=on",
        "transitional": "disable-legacy=off,disable-modern=off",
    }[args.virtio]
    if args.blk_props:
        virtio += "," + args.blk_props
    if args.iommu:
        # The IOMMU comes before the disks; their DMA goes through it.
        cmd += ["-device", args.iommu]
        virtio += ",iommu_platform=on"
    for i, disk in enumerate(disks):
        rules = (blkdebug or {}).get(disk)
        drive = (f"driver=blkdebug,config={rules},image.driver=file,image.filename={disk},"
                 f"if=none,id=disk{i},werror=report,rerror=report" if rules
                 else f"file={disk},format=raw,if=none,id=disk{i}")  # fmt: skip
        cmd += [
            "-drive", drive,
            "-device", f"virtio-blk-pci,drive=disk{i},addr={i + 1:#x},{virtio}",
        ]  # fmt: skip
    if args.qemu_debug:
        cmd += ["-d", "guest_errors,cpu_reset,unimp", "-D", str(Path(args.out_dir) / "qemu-debug.log")]
    return cmd + args.qemu_extra


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


class Results:
    def __init__(self) -> None:
        self.checks: list[Check] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(ok), detail))
        tag = "PASS" if ok else "FAIL"
        first, *rest = (detail or "").splitlines() or [""]
        print(f"{tag}  {name}: {first}", flush=True)
        for l in rest:
            print(f"        {l}")
        return bool(ok)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)


def tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def check_layout(res: Results, vmcore: Path, serial: list[str]) -> None:
    iomem = parse_iomem(iomem_section(serial))
    if not iomem:
        res.add("PT_LOADs = System RAM - Crash kernel", False, "no IOMEM-BEGIN..IOMEM-END in the serial log")
        return
    expected = expected_dump_ranges(iomem)
    crash = [e for e in iomem if e.name.startswith("Crash kernel")]
    with open(vmcore, "rb") as f:
        ph = read_phdrs(f)
    loads = [p for p in ph if p.type == PT_LOAD]
    text = [p for p in loads if p.vaddr >= KERNEL_TEXT_START]
    ram = [p for p in loads if p.vaddr < KERNEL_TEXT_START]
    raw = sorted((p.paddr, p.paddr + p.memsz) for p in ram)
    actual = merge_ranges(raw)
    short = [p for p in ram if p.filesz != p.memsz]
    detail = (
        f"{len(ram)} RAM PT_LOADs (+{len(text)} kernel text), "
        f"crash kernel {fmt_ranges([(c.start, c.end + 1) for c in crash])}"
    )
    ok = actual == expected
    if not ok:
        detail += f"\nexpected: {fmt_ranges(expected)}\nactual:   {fmt_ranges(actual)}"
        missing = subtract_ranges(expected, actual)
        extra = subtract_ranges(actual, expected)
        detail += f"\nmissing from dump: {fmt_ranges(missing)}\nextra in dump:     {fmt_ranges(extra)}"
    elif len(raw) != len(actual):
        detail += f" (merged from {len(raw)} adjacent segments)"
    if short:
        detail += f"\nnote: {len(short)} PT_LOADs have p_filesz < p_memsz (excluded pages)"
    res.add("PT_LOADs = System RAM - Crash kernel", ok, detail)


def check_notes(res: Results, vmcore: Path, smp: int, version: str) -> None:
    with open(vmcore, "rb") as f:
        ph = read_phdrs(f)
        notes_ph = [p for p in ph if p.type == PT_NOTE]
        if len(notes_ph) != 1:
            res.add("notes", False, f"{len(notes_ph)} PT_NOTE segments, expected exactly 1")
            if not notes_ph:
                return
        data = b""
        for p in notes_ph:
            f.seek(p.offset)
            data += f.read(p.filesz)
    notes, leftover = parse_notes(data)
    prstatus = [n for n in notes if n.name == "CORE" and n.type == NT_PRSTATUS]
    vmci = [n for n in notes if n.name == "VMCOREINFO"]
    osrel = None
    if vmci:
        m = re.search(rb"^OSRELEASE=(.*)$", vmci[0].desc, re.M)
        osrel = m.group(1).decode(errors="replace") if m else None
    detail = (
        f"{len(prstatus)} CORE/NT_PRSTATUS (want {smp}), {len(vmci)} VMCOREINFO"
        f" (OSRELEASE={osrel}), {len(notes)} notes in all"
    )
    if leftover:
        detail += f", {leftover} bytes after the last note"
    pr_sizes = sorted({len(n.desc) for n in prstatus})
    if pr_sizes and pr_sizes != [336]:
        detail += f", PRSTATUS desc sizes {pr_sizes} (x86_64 expects 336)"
    ok = (
        len(notes_ph) == 1
        and len(prstatus) == smp
        and len(vmci) == 1
        and osrel == version
        and pr_sizes == [336]
    )
    res.add("notes: PRSTATUS per CPU + VMCOREINFO", ok, detail)


def check_vmcore_tools(res: Results, args, out: Path, vmcore: Path, k: GuestKernel, version: str) -> None:
    dmesg = out / "dmesg.txt"
    dmesg.unlink(missing_ok=True)
    p = run(["makedumpfile", "--dump-dmesg", vmcore, dmesg])
    (out / "makedumpfile.log").write_text(p.stdout)
    text = dmesg.read_text(errors="replace") if dmesg.exists() else ""
    want = ["sysrq: Trigger a crash", "Kernel panic - not syncing"]
    missing = [w for w in want if w not in text]
    res.add(
        "makedumpfile --dump-dmesg",
        p.returncode == 0 and not missing,
        f"exit {p.returncode}, {len(text.splitlines())} lines"
        + (f", missing {missing}" if missing else ", has the sysrq and panic lines")
        + ("" if p.returncode == 0 else "\n" + tail(p.stdout, 10)),
    )
    pv = run([args.pattern, "verify", vmcore, out / "serial.log"])
    (out / "pattern-verify.log").write_text(pv.stdout)
    summary = [l for l in pv.stdout.splitlines() if "pages intact" in l or "FAILED" in l]
    res.add(
        "pattern intact",
        pv.returncode == 0,
        (summary[-1] if summary else f"exit {pv.returncode}")
        + ("" if pv.returncode == 0 else "\n" + tail(pv.stdout, 12)),
    )
    check_layout(res, vmcore, [l for l in (out / "serial.log").read_text(errors="replace").splitlines()])
    check_notes(res, vmcore, args.smp, version)
    if args.with_crash:
        try:
            vmlinux = ensure_debug_vmlinux(k)
        except HarnessError as e:
            res.add("crash", False, str(e))
            return
        cmds = "sys\nbt\nlog | tail -5\nquit\n"
        try:
            p = run(["crash", "-s", vmlinux, vmcore], input=cmds, timeout=600)
        except subprocess.TimeoutExpired:
            res.add("crash sys/bt/log", False, "crash did not finish within 600 s")
            return
        (out / "crash.txt").write_text(p.stdout)
        print("----- crash output -----")
        print(p.stdout.rstrip())
        print("------------------------")
        panic = re.search(r"^\s*PANIC: (.*)$", p.stdout, re.M)
        frames = [l for l in p.stdout.splitlines() if re.match(r"^\s*#\d+ \[", l)]
        bt = sorted({fn for fn in ("sysrq_handle_crash", "__crash_kexec", "crash_kexec")
                     for l in frames if f" {fn} at " in l})  # fmt: skip
        res.add(
            "crash sys/bt/log",
            p.returncode == 0 and panic is not None and bool(bt),
            f"exit {p.returncode}, PANIC: {panic.group(1) if panic else 'missing'}, "
            f"{len(frames)} frames, with {bt or 'none of sysrq_handle_crash/crash_kexec'}",
        )
        check_gdb(res, out, vmlinux, vmcore)


def kernel_offset(vmcore: Path) -> int | None:
    """KERNELOFFSET (the KASLR shift of the kernel text) from the vmcore's
    VMCOREINFO note."""
    with open(vmcore, "rb") as f:
        data = b""
        for p in read_phdrs(f):
            if p.type == PT_NOTE:
                f.seek(p.offset)
                data += f.read(p.filesz)
    for n in parse_notes(data)[0]:
        if n.name == "VMCOREINFO":
            m = re.search(rb"^KERNELOFFSET=([0-9a-f]+)$", n.desc, re.M)
            if m:
                return int(m.group(1), 16)
    return None


def check_gdb(res: Results, out: Path, vmlinux: Path, vmcore: Path) -> None:
    """gdb opens the vmcore as an ELF core: kernel memory through the
    PT_LOADs (linux_banner), one thread per NT_PRSTATUS, the crashing CPU
    stopped in __crash_kexec."""
    offset = kernel_offset(vmcore)
    if offset is None:
        res.add("gdb", False, "no KERNELOFFSET in VMCOREINFO")
        return
    cmds = ["-batch", "-nx", "-ex", f"symbol-file -o {offset:#x} {vmlinux}", "-ex", f"core-file {vmcore}",
            "-ex", "p (char*)linux_banner", "-ex", "info threads", "-ex", "thread apply all bt 3"]  # fmt: skip
    try:
        p = run(["gdb", *cmds], timeout=600)
    except (subprocess.TimeoutExpired, FileNotFoundError) as e:
        res.add("gdb banner/threads/bt", False, str(e))
        return
    (out / "gdb.txt").write_text(p.stdout)
    banner = re.search(r'<linux_banner> "(Linux version [^"]{0,40})', p.stdout)
    threads = re.findall(r"^\*?\s+\d+\s+(?:process|LWP) ", p.stdout, re.M)
    crashing = "__crash_kexec" in p.stdout
    res.add("gdb banner/threads/bt", p.returncode == 0 and bool(banner) and len(threads) >= 1 and crashing,
            f"exit {p.returncode}, banner {banner.group(1) + '...' if banner else 'missing'}, "
            f"{len(threads)} thread(s), {'a thread in __crash_kexec' if crashing else 'no __crash_kexec frame'}")  # fmt: skip


def check_device_error(res: Results, args, out: Path, disk: Path, reason: str | None, injected: int,
                       serial: list[str], version: str, info: dict) -> None:
    """After a capture whose dump disk failed one write: the RESULT, the
    header, `minicap info`, `minicap save` with and without --partial, and
    the partial vmcore (its ELF headers, notes and pattern pages)."""
    reason = (reason or "").lstrip(": ").strip()
    ok, detail = check_write_failure(reason, injected)
    res.add("RESULT names the failed write", ok, detail)
    wf = parse_write_failure(reason)

    with open(disk, "rb") as f:
        raw = f.read(512)
    try:
        h = parse_dump_header(raw)
    except ValueError as e:
        res.add("header after the failure", False, f"no valid minicap header: {e}")
        return
    info["header"] = dict(h.__dict__)
    planned = next((int(m.group(1)) for l in serial
                    if (m := re.search(r"minicap: dump: ELF vmcore of (\d+) bytes", l))), None)  # fmt: skip
    bad = []
    if h.state != "failed":
        bad.append(f"state {h.state}, want failed")
    if h.message != reason:
        bad.append(f"message {h.message!r} is not the RESULT reason {reason!r}")
    if h.format != 1 or h.dump_offset != DUMP_OFFSET:
        bad.append(f"format {h.format}, dump offset {h.dump_offset:#x} (want 1, {DUMP_OFFSET:#x})")
    if planned is None or h.dump_length != planned:
        bad.append(f"dump_length {h.dump_length}, the console planned {planned}")
    if h.osrelease != version:
        bad.append(f"osrelease {h.osrelease!r}, want {version!r}")
    res.add("header: failed, with the message", not bad,
            f"state {h.state}, written {h.written} of {h.dump_length}, message {h.message!r}"
            + ("".join(f"\n{b}" for b in bad)))  # fmt: skip
    if wf is not None:
        ok, detail = check_checkpoint(h.written, h.dump_length, wf.offset - h.dump_offset)
    else:
        ok, detail = False, f"written {h.written} of {h.dump_length}; no failed write offset to compare with"
    res.add("header: written = last 10 % checkpoint", ok, detail)

    p = run([args.tool, "info", disk])
    (out / "info.log").write_text(p.stdout)
    want = ["state:       failed", f"written:     {h.written} bytes", f"message:     {h.message}"]
    missing = [w for w in want if w not in p.stdout]
    res.add("minicap info", p.returncode == 0 and not missing,
            f"exit {p.returncode}" + (f", missing {missing}\n{p.stdout.rstrip()}" if missing else
                                      ", shows state failed, written and the message"))  # fmt: skip

    partial = out / "partial.vmcore"
    partial.unlink(missing_ok=True)
    p = run([args.tool, "save", disk, partial])
    (out / "save.log").write_text(p.stdout)
    ok = p.returncode != 0 and not partial.exists() and "--partial" in p.stdout
    res.add("minicap save refuses it", ok, f"exit {p.returncode}, {partial.name} "
            f"{'created' if partial.exists() else 'not created'}: {tail(p.stdout, 1)}")  # fmt: skip
    partial.unlink(missing_ok=True)
    p = run([args.tool, "save", "--partial", disk, partial])
    (out / "save-partial.log").write_text(p.stdout)
    size = partial.stat().st_size if partial.exists() else None
    res.add("minicap save --partial", p.returncode == 0 and size == h.written,
            f"exit {p.returncode}, {size} bytes (header: written {h.written})"
            + ("" if p.returncode == 0 else "\n" + tail(p.stdout, 3)))  # fmt: skip
    if size is None:
        return
    info["vmcore_bytes"] = size
    ok, detail = (same_bytes(partial, 0, disk, h.dump_offset, h.written) if size == h.written
                  else (False, f"{partial.name} has {size} bytes, the header says {h.written}"))  # fmt: skip
    res.add("partial dump = the image's first `written` bytes", ok, detail)

    with open(partial, "rb") as f:
        try:
            ph = read_phdrs(f)
            f.seek(0)
            eh = f.read(64)
            phoff = struct.unpack_from("<Q", eh, 0x20)[0]
            phentsize, phnum = struct.unpack_from("<HH", eh, 0x36)
            full = vmcore_end(f)
        except (ValueError, struct.error) as e:
            res.add("partial ELF headers", False, str(e))
            return
    notes = [q for q in ph if q.type == PT_NOTE]
    loads = [q for q in ph if q.type == PT_LOAD]
    table_end = phoff + phentsize * phnum
    notes_end = max((q.offset + q.filesz for q in notes), default=0)
    ok = table_end <= min(PAGE_SIZE, size) and notes and notes_end <= size and loads and full == h.dump_length
    res.add("partial ELF headers", ok,
            f"{len(ph)} program headers end at {table_end:#x}, {len(notes)} PT_NOTE ending at {notes_end:#x}, "
            f"{len(loads)} PT_LOADs; the ELF describes {full} bytes (dump_length {h.dump_length}), "
            f"{size} saved")  # fmt: skip
    check_notes(res, partial, args.smp, version)

    try:
        log_ = parse_pattern_log(serial)
    except ValueError as e:
        res.add("pattern pages in the partial dump", False, str(e))
        return
    with open(partial, "rb") as f:
        intact, beyond, problems = check_partial_pattern(f, size, ph, log_)
    info["pattern_pages_in_partial"] = intact
    res.add("pattern pages in the partial dump", intact > 0 and not problems,
            f"{intact} pages intact, {beyond} lie beyond the saved part, {len(problems)} bad of {log_.pages}"
            + ("".join(f"\n{x}" for x in problems[:10]))
            + ("" if intact or problems
               else "\nno pattern page within the saved part (raise --fail-at-percent)"))  # fmt: skip


def sparse_copy(src: Path, dst: Path, length: int) -> None:
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = length
        while left > 0:
            b = fi.read(min(left, 4 * MIB))
            if not b:
                break
            if b.count(0) == len(b):
                fo.seek(len(b), os.SEEK_CUR)
            else:
                fo.write(b)
            left -= len(b)
        fo.truncate(length)


# ---------------------------------------------------------------------------
# Main flow
# ---------------------------------------------------------------------------


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minicap", default=str(REPO / "target/minicap.elf"), help="capture kernel ELF")
    ap.add_argument("--tool", default=str(REPO / "target/release/minicap"), help="host tool `minicap`")
    ap.add_argument("--pattern", default=str(REPO / "target/release/minicap-pattern"), help="minicap-pattern binary")
    ap.add_argument("--scenario", choices=SCENARIOS, default="capture")
    ap.add_argument("--virtio", choices=["modern", "legacy", "transitional"], default="modern")
    ap.add_argument("--cpu", default="max", help="QEMU -cpu (max sets LA57; qemu64 does not)")
    ap.add_argument("--crashkernel", default=None, help="crashkernel= size (default 32M; 256M for linux-kdump)")
    ap.add_argument("--memory", type=int, default=1024, help="guest RAM in MiB")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--disk-size", default=None,
                    help="dump disk size (default: 2G, or RAM + 64M rounded up to a GiB if larger; small-disk: 4M; "
                         "unformatted-disk: 16M; wrong-id, bad-elfcorehdr, ambiguous: 64M)")
    ap.add_argument("--no-decoy", action="store_true",
                    help="capture: do not attach the 64 MiB unformatted decoy disk ahead of the dump disk")
    ap.add_argument("--pattern-mib", type=int, default=64)
    ap.add_argument("--fail-at-percent", type=float, default=45.0,
                    help="device-error: inject the write error this far into the dump area, in percent of the "
                         "guest RAM (about the vmcore's size); default 45, between the 40 %% and 50 %% checkpoints")
    ap.add_argument("--kernel-version", default=None, help="e.g. 6.1.0-56-cloud-amd64 (default: resolve via apt)")
    ap.add_argument("--with-crash", action="store_true", help="also download the -dbg vmlinux and run crash")
    ap.add_argument("--keep", action="store_true", help="keep dump.img and vmcore even when everything passed")
    ap.add_argument("--out", default=None, help="output directory (default qemu/out/<scenario>[-<virtio>])")
    ap.add_argument("--json", default=None, help="write results as JSON to this file")
    ap.add_argument("--timeout", type=float, default=600.0, help="hard limit for the QEMU run, seconds")
    ap.add_argument("--exit-grace", type=float, default=60.0, help="seconds QEMU may take to exit after RESULT")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the serial console with timestamps")
    ap.add_argument("--demo", action="store_true", help="like --verbose")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--kexec-args", default="--args-linux", help="load mode passed to kexec -p for minicap")
    ap.add_argument("--blk-props", default="",
                    help="more virtio-blk-pci properties, e.g. logical_block_size=4096,physical_block_size=4096")
    ap.add_argument("--iommu", default="",
                    help="an IOMMU device, e.g. intel-iommu,intremap=off: added before the disks, "
                         "which get iommu_platform=on; give the guest intel_iommu=on iommu=nopt "
                         "with --guest-append so that it really translates")  # fmt: skip
    ap.add_argument("--append-extra", default="", help="more minicap options for the capture command line")
    ap.add_argument("--guest-append", default="", help="more options for the crashing kernel's command line")
    ap.add_argument("--qemu-debug", action="store_true",
                    help="QEMU -d guest_errors,cpu_reset,unimp -D <out>/qemu-debug.log (register dump at a triple fault)")
    ap.add_argument("--qemu-extra", default="", help="more QEMU arguments (shell-split)")
    ap.add_argument("--seed", default=None, help="pattern seed, hex (default random)")
    ap.add_argument("--recheck", action="store_true",
                    help="no QEMU run: redo the vmcore checks on <out>/vmcore and <out>/serial.log (from --keep)")
    a = ap.parse_args(argv)
    if a.crashkernel is None:
        a.crashkernel = "256M" if a.scenario == "linux-kdump" else "32M"
    if a.disk_size is None:
        if a.scenario == "small-disk":
            a.disk_size = "4M"
        elif a.scenario == "unformatted-disk":
            a.disk_size = "16M"
        elif a.scenario in BAD_INPUT_SCENARIOS:
            a.disk_size = "64M"
        else:
            gib = max(2, -(-(a.memory + 64) // 1024))
            a.disk_size = f"{gib}G"
    a.qemu_extra = shlex.split(a.qemu_extra)
    a.verbose = a.verbose or a.demo
    return a


def parse_size(s: str) -> int:
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", s.strip(), re.I)
    if not m:
        raise HarnessError(f"bad size {s!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]


def make_random_disk(path: Path, size: int) -> None:
    """A disk image of random bytes (not a minicap device)."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n


def make_disk(args, path: Path) -> tuple[str, str]:
    """Creates and formats the dump image; returns (device id, tool output)."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(parse_size(args.disk_size))
    if args.scenario == "linux-kdump":
        return "", ""
    p = run([args.tool, "format", path])
    if p.returncode != 0:
        raise HarnessError(f"`{args.tool} format {path}` failed (exit {p.returncode}):\n{p.stdout}")
    m = re.search(r"minicap\.device=([^\s\"'`,;]+)", p.stdout)
    if not m:
        raise HarnessError(f"`{args.tool} format` printed no minicap.device=...:\n{p.stdout}")
    return m.group(1), p.stdout


# The harness relies on QEMU behaviour checked with 7.2 (Debian 12): the
# q35 machine with `-nodefaults`, virtio-blk-pci's disable-legacy /
# disable-modern and block-size properties, intel-iommu's intremap= and pt=,
# and blkdebug rule files. Older QEMUs lack some of these; newer ones are
# expected to keep them (they are long-standing), so they run with a note.
QEMU_MIN = (7, 2)
QEMU_TESTED = (7, 2)


def parse_qemu_version(text: str) -> tuple[int, int, int] | None:
    """`QEMU emulator version 7.2.22 (Debian ...)` -> (7, 2, 22)."""
    m = re.search(r"QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?", text)
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def check_qemu_version(qemu: str) -> tuple[int, int, int]:
    """Refuse an unsupported QEMU with a message that says what to do."""
    try:
        p = subprocess.run([qemu, "--version"], capture_output=True, text=True, timeout=30)
    except OSError as e:
        raise HarnessError(f"cannot run {qemu}: {e} (install it with qemu/install-deps.sh)") from e
    ver = parse_qemu_version(p.stdout)
    if ver is None:
        raise HarnessError(f"cannot tell the version of {qemu}: `--version` printed {p.stdout.strip()!r}")
    if ver[:2] < QEMU_MIN:
        raise HarnessError(
            f"{qemu} is QEMU {'.'.join(map(str, ver))}; the harness needs QEMU "
            f"{'.'.join(map(str, QEMU_MIN))} or newer (intel-iommu and virtio-blk options, blkdebug rules); "
            "install Debian 12's qemu-system-x86 or newer (qemu/install-deps.sh)")
    if ver[:2] != QEMU_TESTED:
        log(f"note: QEMU {'.'.join(map(str, ver))} is newer than the tested "
            f"{'.'.join(map(str, QEMU_TESTED))}; a failure may come from QEMU, not minicap")
    return ver


def scenario(args) -> tuple[Results, dict]:
    res = Results()
    info: dict = {"scenario": args.scenario, "virtio": args.virtio, "cpu": args.cpu, "memory_mib": args.memory,
                  "smp": args.smp, "crashkernel": args.crashkernel}  # fmt: skip
    out = Path(args.out) if args.out else HERE / "out" / (
        args.scenario + (f"-{args.virtio}" if args.scenario in ("capture", "linux-kdump") else "")
    )
    out.mkdir(parents=True, exist_ok=True)
    info["out"] = str(out)
    args.out_dir = str(out)
    if not args.recheck:
        for name in ("serial.log", "vmcore", "dmesg.txt", "crash.txt", "pattern-verify.log", "qemu.stderr",
                     "partial.vmcore", "blkdebug.cfg", "info.log", "save.log", "save-partial.log"):
            (out / name).unlink(missing_ok=True)
    needs = {"capture": ["minicap", "tool", "pattern"], "device-error": ["minicap", "tool", "pattern"],
             "no-disk": ["minicap"], "unformatted-disk": ["minicap"],
             "linux-kdump": ["pattern"]}.get(args.scenario, ["minicap", "tool"])  # fmt: skip
    if args.recheck:
        needs = ["pattern"]
    for n in needs:
        p = Path(getattr(args, n))
        if not p.is_file():
            raise HarnessError(f"--{n} {p} does not exist (build it first)")
    for t in ("kexec", "busybox", args.qemu) + (("makedumpfile",) if args.scenario in ("capture", "linux-kdump") else ()):
        if not shutil.which(t):
            raise HarnessError(f"{t} not found in PATH")

    info["qemu_version"] = ".".join(map(str, check_qemu_version(args.qemu)))

    k = ensure_kernel(args.kernel_version)
    info["kernel"] = k.version
    log(f"guest kernel {k.version}")

    if args.recheck:
        vmcore = out / "vmcore"
        if not vmcore.is_file() or not (out / "serial.log").is_file():
            raise HarnessError(f"--recheck needs {vmcore} and {out / 'serial.log'} from a run with --keep")
        info["vmcore_bytes"] = vmcore.stat().st_size
        check_vmcore_tools(res, args, out, vmcore, k, k.version)
        return res, info

    # Disk images, attached in this order (PCI slots 1, 2, ...); `guarded` are
    # the ones minicap must not write to: their SHA-256 is compared after the run.
    disk = out / "dump.img"
    attached: list[Path] = []
    guarded: dict[str, Path] = {}
    device = ""
    disk_ids: dict[str, str] = {}
    for stale in ("dump.img", "dump-a.img", "dump-b.img", "random.img", "decoy.img", "format.log"):
        (out / stale).unlink(missing_ok=True)
    if args.scenario == "unformatted-disk":
        disk = out / "random.img"
        make_random_disk(disk, parse_size(args.disk_size))
        attached = [disk]
        guarded["random disk"] = disk
    elif args.scenario == "ambiguous":
        logs = []
        for tag in ("a", "b"):
            img = out / f"dump-{tag}.img"
            disk_ids[img.name], fmt = make_disk(args, img)
            logs.append(fmt)
            attached.append(img)
            guarded[f"dump disk {tag.upper()}"] = img
        (out / "format.log").write_text("\n".join(logs))
    elif args.scenario != "no-disk":
        device, fmt_out = make_disk(args, disk)
        disk_ids[disk.name] = device
        if fmt_out:
            (out / "format.log").write_text(fmt_out)
        attached = [disk]
        if args.scenario in BAD_INPUT_SCENARIOS:
            guarded["dump disk"] = disk
    decoy = args.scenario in ("capture", "device-error") and not args.no_decoy
    if decoy:
        img = out / "decoy.img"
        make_random_disk(img, DECOY_BYTES)
        attached.insert(0, img)
        guarded["decoy disk"] = img
    before = {name: fingerprint(img) for name, img in guarded.items()}
    info["disks"] = [{"image": img.name, "bytes": img.stat().st_size, "minicap_device": disk_ids.get(img.name)}
                     for img in attached]  # fmt: skip
    header_before = disk.read_bytes()[: MIB] if args.scenario == "small-disk" else b""
    # device-error: the dump disk fails one write part-way through the dump area.
    blkdebug: dict[Path, Path] = {}
    injected = 0
    if args.scenario == "device-error":
        injected = inject_offset(args.memory, args.fail_at_percent)
        cfg = out / "blkdebug.cfg"
        cfg.write_text(blkdebug_config(injected // 512))
        blkdebug[disk] = cfg
        info["inject_error_at_byte"] = injected
        log(f"blkdebug: EIO on the first write covering sector {injected // 512} (byte {injected:#x}, "
            f"{args.fail_at_percent:g} % of {args.memory} MiB into the dump area)")
    wanted_id = None
    if args.scenario == "linux-kdump":
        append = "console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=0 loglevel=7 printk.time=1"
        result_re = KDUMP_RESULT_RE
    else:
        opts = ["minicap.after=reboot"]
        if args.scenario == "wrong-id":
            wanted_id = other_device_id(device)
            opts.insert(0, f"minicap.device={wanted_id}")
        elif device:
            opts.insert(0, f"minicap.device={device}")
        if args.scenario == "bad-elfcorehdr":
            opts.append(BAD_ELFCOREHDR)
        append = " ".join(opts + [args.append_extra]).strip()
        result_re = RESULT_RE
    info["capture_append"] = append
    seed = int(args.seed, 16) if args.seed else random.getrandbits(64)
    with_pattern = args.scenario in ("capture", "linux-kdump", "device-error")
    initrd = out / "initramfs.cpio.gz"
    initrd.write_bytes(build_initramfs(args, k, append, seed, with_pattern))
    log(f"initramfs {initrd} ({initrd.stat().st_size // 1024} KiB), seed {seed:016x}")

    cmd = qemu_command(args, k, initrd, attached, blkdebug)
    info["qemu"] = cmd
    r = run_qemu(cmd, out / "serial.log", args.timeout, args.verbose, result_re, args.exit_grace)
    texts = r.texts()

    crash = r.first(lambda t: any(m in t for m in CRASH_MARKERS))
    result = r.first(lambda t: bool(result_re.search(t)))
    first_mc = r.first(lambda t: t.startswith("minicap: "))
    ready = r.first(lambda t: "PATTERN-READY" in t)
    times = {}
    if crash:
        times["boot_to_crash_s"] = crash.t - r.t_start
        if first_mc and first_mc.t >= crash.t:
            times["crash_to_first_minicap_line_s"] = first_mc.t - crash.t
        if result:
            times["crash_to_result_s"] = result.t - crash.t
        if r.t_exit is not None:
            times["crash_to_qemu_exit_s"] = r.t_exit - crash.t
    if ready:
        times["boot_to_pattern_ready_s"] = ready.t - r.t_start
    times["qemu_total_s"] = (r.t_exit or time.monotonic()) - r.t_start
    info["times"] = {k2: round(v, 3) for k2, v in times.items()}
    info["qemu_returncode"] = r.returncode

    if r.timed_out:
        res.add("QEMU run", False, f"timed out after {args.timeout:.0f} s; last 50 lines:\n" + "\n".join(texts[-50:]))
    kl = r.first(lambda t: t.startswith("KEXEC-LOADED") or t.startswith("KEXEC-FAILED"))
    res.add("kexec -p load", bool(kl and kl.text.startswith("KEXEC-LOADED")), kl.text if kl else "no KEXEC-* line")
    res.add("crash triggered", crash is not None, crash.text.strip() if crash else "no sysrq/panic line")
    if with_pattern:
        res.add("pattern ready in guest", ready is not None, ready.text.strip() if ready else "no PATTERN-READY")

    want = "success" if args.scenario in ("capture", "linux-kdump") else "failure"
    if result:
        m = result_re.search(result.text)
        verdict, rest = m.group(1), m.group(2).strip()
        info["result"] = result.text.strip()
        ok = verdict == want
        detail = result.text.strip()
        reason = rest
        if ok and want == "failure":
            ok, expected = check_failure_reason(args.scenario, rest, wanted_id)
            detail += "" if ok else f"  (expected: {expected})"
        res.add(f"RESULT {want}", ok, detail)
    else:
        reason = None
        res.add(f"RESULT {want}", False, "no RESULT line; last 50 lines:\n" + "\n".join(texts[-50:]))
    exited = r.t_exit is not None and not r.timed_out and not r.killed_after_result and r.returncode == 0
    res.add(
        "QEMU exited (reboot)",
        exited,
        f"exit status {r.returncode}" if exited else ("killed: no exit after RESULT" if r.killed_after_result else "killed")
        + (("\nqemu stderr: " + tail(r.stderr, 5)) if r.stderr.strip() else ""),
    )

    if args.scenario in ("unformatted-disk", "wrong-id") or decoy:
        ok, detail = check_device_reports(args.scenario, texts, 1, device, wanted_id)
        res.add("decoy disk seen and left alone" if decoy else "per-device report", ok, detail)
    for name, img in guarded.items():
        after = fingerprint(img)
        ok, detail = compare_fingerprints(before[name], after)
        for d in info["disks"]:
            if d["image"] == img.name:
                d["sha256_before"], d["sha256_after"] = before[name][0], after[0]
        res.add(f"{name} untouched", ok, f"{img.name}: {detail}")

    if args.scenario == "device-error" and result:
        check_device_error(res, args, out, disk, reason, injected, texts, k.version, info)
        check_stored_log(res, args, out, disk, (out / "serial.log").read_text(errors="replace").splitlines(),
                         ["capture kernel starting", "capture failed after"])
    block = re.search(r"logical_block_size=(\d+)", args.blk_props or "")
    if block and int(block.group(1)) != 512 and result:
        lines = (out / "serial.log").read_text(errors="replace").splitlines()
        want = f"{block.group(1)}-byte blocks"
        hit = next((l.rstrip("\r") for l in lines if l.startswith("minicap: target:")), "")
        res.add(f"dump device used with {want}", want in hit, hit or "no 'minicap: target:' line")
    if args.iommu and result:
        check_iommu_takeover(res, (out / "serial.log").read_text(errors="replace").splitlines())
    if args.scenario == "capture" and result:
        check_stored_log(res, args, out, disk, (out / "serial.log").read_text(errors="replace").splitlines(),
                         ["capture kernel starting", "target: ", "bytes written and flushed"])

    vmcore = out / "vmcore"
    if args.scenario == "capture" and result:
        p = run([args.tool, "save", disk, vmcore])
        (out / "save.log").write_text(p.stdout)
        res.add(f"minicap save", p.returncode == 0 and vmcore.is_file(), f"exit {p.returncode}: " + tail(p.stdout, 3 if p.returncode else 1))
    if args.scenario == "linux-kdump" and result:
        with open(disk, "rb") as f:
            try:
                n = vmcore_end(f)
            except (ValueError, struct.error) as e:
                n = 0
                res.add("vmcore on disk", False, str(e))
        if n:
            sparse_copy(disk, vmcore, n)
    if args.scenario in ("capture", "linux-kdump") and vmcore.is_file():
        info["vmcore_bytes"] = vmcore.stat().st_size
        check_vmcore_tools(res, args, out, vmcore, k, k.version)
    elif args.scenario in ("capture", "linux-kdump"):
        res.add("vmcore checks", False, "no vmcore to check")

    if args.scenario == "small-disk":
        data = disk.read_bytes()
        nonzero = [i for i in range(MIB, len(data), 4096) if any(data[i : i + 4096])]
        res.add("small disk: data area untouched", not nonzero,
                "all bytes after 1 MiB are zero" if not nonzero else f"{len(nonzero)} non-zero 4K blocks after 1 MiB, first at {nonzero[0]:#x}")  # fmt: skip
        diff = [i for i in range(min(len(header_before), MIB)) if header_before[i] != data[i]]
        info["small_disk_header_changed_bytes"] = len(diff)
        log(
            "header (first MiB): "
            + ("unchanged" if not diff else f"{len(diff)} bytes changed in {diff[0]:#x}..{diff[-1]:#x}")
        )

    if res.ok and not args.keep:
        for img in attached + [disk, out / "vmcore", out / "partial.vmcore"]:
            img.unlink(missing_ok=True)
    return res, info


def print_summary(res: Results, info: dict) -> None:
    t = info.get("times", {})
    print()
    print(f"=== minicap e2e: scenario {info['scenario']}, virtio {info['virtio']}, cpu {info['cpu']}, "
          f"{info['memory_mib']} MiB, {info['smp']} CPUs, crashkernel={info['crashkernel']}, kernel {info.get('kernel')}")  # fmt: skip
    w = max([len(c.name) for c in res.checks] + [10])
    for c in res.checks:
        print(f"  {'PASS' if c.ok else 'FAIL'}  {c.name:<{w}}  {(c.detail or '').splitlines()[0] if c.detail else ''}")
    labels = [
        ("boot_to_pattern_ready_s", "boot -> pattern ready"),
        ("boot_to_crash_s", "boot -> crash"),
        ("crash_to_first_minicap_line_s", "crash -> first minicap line"),
        ("crash_to_result_s", "crash -> dump complete (RESULT)"),
        ("crash_to_qemu_exit_s", "crash -> QEMU exit"),
        ("qemu_total_s", "QEMU total"),
    ]
    for key, label in labels:
        if key in t:
            print(f"  {label:<34} {t[key]:8.3f} s")
    if "vmcore_bytes" in info and "crash_to_result_s" in t:
        mb = info["vmcore_bytes"] / MIB
        print(f"  {'vmcore size':<34} {mb:8.1f} MiB ({mb / t['crash_to_result_s']:.1f} MiB/s from crash to RESULT)")
    print(f"  => {'ALL PASSED' if res.ok else 'FAILED'}   (output in {info.get('out')})")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        res, info = scenario(args)
    except HarnessError as e:
        print(f"e2e: ERROR: {e}", file=sys.stderr)
        if args.json:
            Path(args.json).write_text(json.dumps({"scenario": args.scenario, "ok": False, "error": str(e)}, indent=2))
        return 2
    print_summary(res, info)
    if args.json:
        info["ok"] = res.ok
        info["checks"] = [c.__dict__ for c in res.checks]
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0 if res.ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""QEMU: the version check, the command line, and a run with a timestamped
serial console and timeouts."""

from __future__ import annotations

import os
import re
import select
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from .common import HarnessError, log
from .kernel import GuestKernel


# The harness relies on QEMU behaviour checked with 7.2 (Debian 12): the
# q35 machine with `-nodefaults` (which keeps its ICH9 AHCI HBA at 00:1f.2,
# ports ide.0 to ide.5), virtio-blk-pci's disable-legacy / disable-modern and
# block-size properties, nvme's serial= and block-size properties,
# intel-iommu's intremap= and pt=, and blkdebug rule files. Older QEMUs lack
# some of these; newer ones are expected to keep them (they are
# long-standing), so they run with a note.
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
                 blkdebug: dict[Path, Path] | None = None, nvme: frozenset[Path] = frozenset(),
                 ahci: frozenset[Path] = frozenset(), vmlinuz: Path | None = None,
                 firmware: tuple[list[str], str] | None = None,
                 write_bps: dict[Path, int] | None = None) -> list[str]:
    """The QEMU command line; `disks` become devices in PCI slots 1, 2, ...
    in that order (so minicap's PCI scan meets them in that order): an NVMe
    controller with the disk as namespace 1 for those in `nvme`, an ATA disk
    on the next port of the q35 machine's AHCI HBA (00:1f.2, after every
    slot in the scan; QEMU adds it even with -nodefaults) for those in
    `ahci`, else a virtio-blk device. A disk with an entry in `blkdebug` (image -> rule
    file) is attached through QEMU's blkdebug driver with those rules,
    without request merging, and I/O errors are reported to the guest
    (werror=report, rerror=report). `vmlinuz` replaces the guest kernel's own
    (the signed copy of a Secure Boot run); `firmware` (secureboot.firmware_options:
    QEMU options and machine properties) boots through OVMF instead of SeaBIOS. A disk
    with an entry in `write_bps` has its writes throttled to that many bytes per second."""
    append = (
        f"console=ttyS0 crashkernel={args.crashkernel} panic=0 oops=panic loglevel=7 "
        f"printk.time=1 {args.guest_append}"
    ).strip()
    cmd = [
        args.qemu,
        "-machine", "q35,accel=tcg" + (f",{firmware[1]}" if firmware and firmware[1] else ""),
        "-cpu", args.cpu,
        "-m", str(args.memory),
        "-smp", str(args.smp),
        "-nodefaults", "-display", "none", "-vga", "none", "-monitor", "none",
        "-serial", "stdio",
        "-net", "none",
        "-no-reboot",
        "-kernel", str(vmlinuz or k.vmlinuz),
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
    ahci_port = 0
    for i, disk in enumerate(disks):
        rules = (blkdebug or {}).get(disk)
        drive = (f"driver=blkdebug,config={rules},image.driver=file,image.filename={disk},"
                 f"if=none,id=disk{i},werror=report,rerror=report" if rules
                 else f"file={disk},format=raw,if=none,id=disk{i}")  # fmt: skip
        if disk in (write_bps or {}):
            drive += f",throttling.bps-write={write_bps[disk]}"
        # QEMU merges adjacent requests in flight into one and fails every
        # one of them when the merged request fails: the error would be
        # reported for the oldest, which need not hold the injected byte.
        # Unmerged, the failed request is exactly the one blkdebug failed.
        merging = ",request-merging=off" if rules else ""
        if disk in nvme:
            # No iommu_platform= to set: an NVMe controller's DMA always goes
            # through the IOMMU. The serial is mandatory for QEMU's nvme.
            props = f",{args.nvme_props}" if args.nvme_props else ""
            device = f"nvme,serial=minicap{i},drive=disk{i},addr={args.disk_slot + i:#x}{props}"
        elif disk in ahci:
            # The HBA issues one command at a time: nothing to merge.
            device = f"ide-hd,drive=disk{i},bus=ide.{ahci_port}"
            ahci_port += 1
        else:
            device = f"virtio-blk-pci,drive=disk{i},addr={args.disk_slot + i:#x},{virtio}{merging}"
        cmd += ["-drive", drive, "-device", device]
    if firmware:
        cmd += firmware[0]
    if args.qemu_debug:
        cmd += ["-d", "guest_errors,cpu_reset,unimp", "-D", str(Path(args.out_dir) / "qemu-debug.log")]
    return cmd + args.qemu_extra


# ---------------------------------------------------------------------------

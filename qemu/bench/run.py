"""One measured capture: a fresh dump disk, the crashing guest's initramfs
(kexec -p of minicap or of the guest's own kernel with a kdump initramfs,
the 64 MiB pattern, sysrq-c), QEMU, the times from the console, then
whether the dump is readable (`makedumpfile --dump-dmesg` finds the crash).
Everything is the e2e harness's: disks, initramfs, QEMU command line and
runner; only the choice of capture kernel differs between the modes."""

from __future__ import annotations

import types
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.common import MIB, log, run, tail
from harness.disks import make_blank_disk, make_formatted_disk, sparse_copy
from harness.elf import PT_LOAD, read_phdrs
from harness.initramfs import build_initramfs, build_kdump_initramfs
from harness.kernel import GuestKernel
from harness.qemu import run_qemu, qemu_command
from harness.runner import KDUMP_APPEND as E2E_KDUMP_APPEND

from .dumpfile import dump_end
from .modes import AHCI, KDUMP, MINICAP, NVME, Mode
from .timing import RESULT_PATTERN, measure

# The Linux capture kernel's command line: the linux-kdump reference's, and
# panic=1 (the later panic= wins) so that a capture kernel that panics for
# want of memory reboots, and QEMU (-no-reboot) exits, instead of waiting
# for the timeout.
KDUMP_APPEND = f"{E2E_KDUMP_APPEND} panic=1"
DMESG_WANT = "sysrq: Trigger a crash"


@dataclass
class RunResult:
    mode: str
    memory_mib: int
    crashkernel: str
    index: int  # 0, 1, ... for the timed runs; -1 for a crashkernel search probe
    ok: bool  # the dump is complete and readable
    detail: str  # the result line, or what went wrong
    crash_to_first_write_s: float | None = None
    crash_to_complete_s: float | None = None
    dump_bytes: int | None = None
    boot_to_crash_s: float | None = None
    out: str = ""

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("crash_to_first_write_s", "crash_to_complete_s", "boot_to_crash_s"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        return d


def disk_size(memory_mib: int) -> int:
    """As the e2e harness: 2 GiB, or the RAM + 64 MiB rounded up to a GiB."""
    return max(2, -(-(memory_mib + 64) // 1024)) << 30


def default_timeout(memory_mib: int) -> float:
    """Generous for TCG on a shared machine: boot, pattern, and a dump of
    the whole RAM at 4 MiB/s."""
    return 180 + memory_mib / 4


def minicap_image_bytes(minicap: Path) -> int:
    """What minicap occupies in the crash region: its PT_LOAD's memsz."""
    with open(minicap, "rb") as f:
        return sum(p.memsz for p in read_phdrs(f) if p.type == PT_LOAD)


def crash_region_image_bytes(cfg, k: GuestKernel, mode: Mode) -> int:
    """The size of what kexec places in the crash region for this mode:
    minicap.elf's loaded size, or the capture vmlinuz plus its initramfs."""
    if mode.kind == MINICAP:
        return minicap_image_bytes(Path(cfg.minicap))
    return k.vmlinuz.stat().st_size + len(build_kdump_initramfs(k, mode.kdump_writer))


def qemu_options(cfg, memory_mib: int, crashkernel: str, out: Path) -> types.SimpleNamespace:
    """The options harness.qemu.qemu_command reads: the same for every mode."""
    return types.SimpleNamespace(qemu=cfg.qemu, cpu=cfg.cpu, memory=memory_mib, smp=cfg.smp, crashkernel=crashkernel,
                                 guest_append="", virtio=cfg.virtio, blk_props="", nvme_props="", iommu="", disk_slot=1, qemu_debug=False,
                                 out_dir=str(out), qemu_extra=[])  # fmt: skip


def mode_qemu_command(cfg, k: GuestKernel, mode: Mode, memory_mib: int, crashkernel: str, out: Path, initrd: Path,
                      disk: Path) -> list[str]:  # fmt: skip
    """The QEMU command of one run: the dump disk on the mode's bus."""
    on_bus = frozenset({disk})
    return qemu_command(qemu_options(cfg, memory_mib, crashkernel, out), k, initrd, [disk],
                        nvme=on_bus if mode.bus == NVME else frozenset(),
                        ahci=on_bus if mode.bus == AHCI else frozenset())  # fmt: skip


def readable(cfg, mode: Mode, disk: Path, out: Path) -> tuple[bool, str, int | None]:
    """Read the dump back from the disk as a user would (`minicap save`; the
    raw disk cut to the dump's own length for kdump), then `makedumpfile
    --dump-dmesg` on it: (ok, detail, the dump's size)."""
    dump = out / "vmcore"
    dump.unlink(missing_ok=True)
    if mode.kind == MINICAP:
        p = run([cfg.tool, "save", disk, dump])
        if p.returncode != 0 or not dump.is_file():
            return False, f"minicap save failed (exit {p.returncode}): {tail(p.stdout, 3)}", None
    else:
        try:
            with open(disk, "rb") as f:
                n = dump_end(f, mode.dump_format)
        except (ValueError, OSError) as e:
            return False, f"no {mode.dump_format} dump on the disk: {e}", None
        sparse_copy(disk, dump, n)
    size = dump.stat().st_size
    dmesg = out / "dmesg.txt"
    dmesg.unlink(missing_ok=True)
    p = run(["makedumpfile", "--dump-dmesg", dump, dmesg])
    (out / "makedumpfile.log").write_text(p.stdout)
    text = dmesg.read_text(errors="replace") if dmesg.is_file() else ""
    if p.returncode != 0 or DMESG_WANT not in text:
        return False, (f"makedumpfile --dump-dmesg exit {p.returncode}, {DMESG_WANT!r} "
                       f"{'found' if DMESG_WANT in text else 'missing'}: {tail(p.stdout, 3)}"), size  # fmt: skip
    return True, f"makedumpfile --dump-dmesg: {len(text.splitlines())} lines with the crash", size


def capture_run(cfg, k: GuestKernel, mode: Mode, memory_mib: int, crashkernel: str, index: int, out: Path,
                seed: int) -> RunResult:  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    for old in ("serial.log", "vmcore", "dmesg.txt", "makedumpfile.log", "qemu.stderr"):
        (out / old).unlink(missing_ok=True)
    disk = out / "dump.img"
    if mode.kind == MINICAP:
        device_id, _ = make_formatted_disk(cfg.tool, disk, disk_size(memory_mib))
        append = " ".join(o for o in (f"minicap.device={device_id}", "minicap.after=reboot", mode.minicap_append,
                                      cfg.minicap_append) if o)  # fmt: skip
    else:
        make_blank_disk(disk, disk_size(memory_mib))
        append = KDUMP_APPEND
    initrd = out / "initramfs.cpio.gz"
    initrd.write_bytes(build_initramfs(
        k, append, minicap=Path(cfg.minicap) if mode.kind == MINICAP else None, kexec_args=cfg.kexec_args,
        pattern=Path(cfg.pattern), pattern_mib=cfg.pattern_mib, seed=seed,
        kdump_writer=mode.kdump_writer or "dd"))  # fmt: skip
    cmd = mode_qemu_command(cfg, k, mode, memory_mib, crashkernel, out, initrd, disk)
    (out / "qemu-command.txt").write_text(" ".join(map(str, cmd)) + "\n")
    timeout = cfg.timeout or default_timeout(memory_mib)
    r = run_qemu(cmd, out / "serial.log", timeout, cfg.verbose, RESULT_PATTERN[mode.kind], 30.0)
    t = measure(r.lines, mode.kind)
    res = RunResult(mode.name, memory_mib, crashkernel, index, False, t.verdict, t.crash_to_first_write_s,
                    t.crash_to_complete_s, out=str(out))  # fmt: skip
    crash = r.first(lambda s: "sysrq: Trigger a crash" in s)
    res.boot_to_crash_s = crash.t - r.t_start if crash else None
    if not t.success:
        kexec = r.first(lambda s: s.startswith("KEXEC-FAILED") or s.startswith("E2E-ABORT"))
        # The crash's own panic comes first; a later one is the capture kernel's (e.g. out of memory).
        panics = [l.text.strip() for l in r.lines if "Kernel panic - not syncing" in l.text]
        res.detail = (f"{kexec.text.strip()}; " if kexec else "") + t.verdict + \
            (f"; the capture kernel: {panics[-1]}" if len(panics) > 1 else "") + \
            (f" (timed out after {timeout:.0f} s)" if r.timed_out else "")  # fmt: skip
    else:
        ok, detail, size = readable(cfg, mode, disk, out)
        res.ok, res.dump_bytes = ok, size
        res.detail = f"{t.verdict}; {detail}"
    if not cfg.keep:
        for f in (disk, out / "vmcore", initrd):
            f.unlink(missing_ok=True)
    size = f", {res.dump_bytes / MIB:.1f} MiB" if res.dump_bytes else ""
    took = f"{res.crash_to_complete_s:.1f} s" if res.crash_to_complete_s is not None else "-"
    log(f"bench: {mode.name} {memory_mib} MiB crashkernel={crashkernel}: {'ok' if res.ok else 'FAILED'}, "
        f"crash -> result line {took}{size}" + ("" if res.ok else f": {res.detail}"))  # fmt: skip
    return res

"""What the figures were measured on (CPUs, CPU model, QEMU version, date)
and the host's own write speed to the dump image's file system, the
physical reference for every capture speed."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from pathlib import Path

from harness.common import MIB, HarnessError, run


def cpu_model(cpuinfo: str) -> str:
    """The first `model name` of /proc/cpuinfo's text."""
    m = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return m.group(1).strip() if m else "unknown"


def machine_info(qemu: str) -> dict:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True).stdout.splitlines()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model(cpuinfo),
        "qemu": version[0] if version else "unknown",
        "kernel": os.uname().release,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def parse_dd_output(text: str) -> tuple[int, float]:
    """(bytes, seconds) from GNU dd's last line, `N bytes (...) copied, S s, R MB/s`."""
    m = re.search(r"^(\d+) bytes .*copied, ([0-9.,e+-]+) s\b", text, re.M)
    if not m:
        raise ValueError(f"no 'N bytes ... copied, S s' line in dd's output: {text.strip()!r}")
    return int(m.group(1)), float(m.group(2).replace(",", "."))


def host_write_speed(image: Path, mib: int) -> dict:
    """`dd if=/dev/zero of=<image> bs=1M count=<mib> conv=fsync oflag=direct`
    (the image is removed afterwards): bytes, seconds and MiB/s."""
    cmd = ["dd", "if=/dev/zero", f"of={image}", "bs=1M", f"count={mib}", "conv=fsync", "oflag=direct"]
    p = run(cmd, env={**os.environ, "LC_ALL": "C"})
    image.unlink(missing_ok=True)
    if p.returncode != 0:
        raise HarnessError(f"{' '.join(cmd)} failed (exit {p.returncode}): {p.stdout.strip()}")
    n, s = parse_dd_output(p.stdout)
    # The report names the file relative to the working directory (the
    # checkout) where it can, not by a path of this machine.
    rel = os.path.relpath(image)
    shown = [f"of={rel}" if c.startswith("of=") and not rel.startswith("..") else c for c in cmd]
    return {"command": " ".join(shown), "bytes": n, "seconds": s, "mib_per_s": n / MIB / s if s > 0 else None}

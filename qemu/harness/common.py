"""Shared helpers: paths, sizes, logging, running commands."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

QEMU_DIR = Path(__file__).resolve().parent.parent  # qemu/
REPO = QEMU_DIR.parent
MIB = 1 << 20
PAGE_SIZE = 4096


class HarnessError(Exception):
    """A setup problem that prevents the scenario from running at all."""


def log(msg: str) -> None:
    print(f"e2e: {msg}", flush=True)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    """Runs a command, capturing text output."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.STDOUT)
    kw.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], **kw)


def tail(text: str, n: int) -> str:
    return "\n".join(text.splitlines()[-n:])


def parse_size(s: str) -> int:
    m = re.fullmatch(r"(\d+)([KMGT]?)i?B?", s.strip(), re.I)
    if not m:
        raise HarnessError(f"bad size {s!r}")
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[m.group(2).upper()]

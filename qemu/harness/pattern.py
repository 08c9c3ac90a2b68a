"""The memory pattern `minicap-pattern fill` plants in the guest (the same
generator as qemu/pattern/src/lib.rs), read back from the serial log and
found in a (partial) vmcore."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from .common import PAGE_SIZE
from .elf import PT_LOAD, Phdr


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

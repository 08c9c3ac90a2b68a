"""/proc/iomem of the crashed kernel (printed by the guest's init) and the
physical ranges a dump of it must cover."""

from __future__ import annotations

import re
from dataclasses import dataclass


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


# The first MiB, which Linux's kexec_file_load leaves out of the core headers it builds
# (arch/x86/kernel/crash.c elf_header_exclude_ranges(): "Exclude the low 1M because it is
# always reserved"); kexec-tools and `minicap load` describe the RAM in it.
LOW_1M = (0, 1 << 20)


def expected_dump_ranges(iomem: list[IomemEntry], low_1m_excluded: bool = False) -> list[tuple[int, int]]:
    """Top-level System RAM minus the Crash kernel reservation(s), half-open; without the
    first MiB when the kernel built the core headers (kexec_file_load)."""
    ram = [(e.start, e.end + 1) for e in iomem if e.depth == 0 and e.name == "System RAM"]
    crash = [(e.start, e.end + 1) for e in iomem if e.name.startswith("Crash kernel")]
    return subtract_ranges(ram, crash + ([LOW_1M] if low_1m_excluded else []))


def fmt_ranges(rs) -> str:
    return ", ".join(f"{s:#x}-{e - 1:#x}" for s, e in rs) or "(none)"

"""ELF vmcore structure: program headers, notes, the file's extent."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

KERNEL_TEXT_START = 0xFFFFFFFF80000000
PT_LOAD = 1
PT_NOTE = 4
NT_PRSTATUS = 1


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

"""Disk images: formatted dump disks, random and blank ones, fingerprints
to prove a disk untouched, and QEMU blkdebug rules that fail a write."""

from __future__ import annotations

import hashlib
import os
import random
import re
import struct
import zlib
from pathlib import Path

from .common import MIB, PAGE_SIZE, HarnessError, run

DUMP_OFFSET = 2 * MIB  # where the dump starts on a minicap device (after the triage text)
DECOY_BYTES = 64 * MIB


def make_random_disk(path: Path, size: int) -> None:
    """A disk image of random bytes (not a minicap device)."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(left, 4 * MIB)
            f.write(os.urandom(n))
            left -= n


def make_blank_disk(path: Path, size: int) -> None:
    """A sparse disk image of zeros."""
    path.unlink(missing_ok=True)
    with open(path, "wb") as f:
        f.truncate(size)


def make_formatted_disk(tool: str, path: Path, size: int) -> tuple[str, str]:
    """A blank image prepared with `minicap format`; returns (device id, the
    tool's output)."""
    make_blank_disk(path, size)
    p = run([tool, "format", path])
    if p.returncode != 0:
        raise HarnessError(f"`{tool} format {path}` failed (exit {p.returncode}):\n{p.stdout}")
    m = re.search(r"minicap\.device=([^\s\"'`,;]+)", p.stdout)
    if not m:
        raise HarnessError(f"`{tool} format` printed no minicap.device=...:\n{p.stdout}")
    return m.group(1), p.stdout


# The "unsaved dump" a disk holds before the crash (make_unsaved_dump_disk): what its header
# says, so that the checks can find it in minicap's refusal.
UNSAVED_OSRELEASE = "6.1.0-first-crash-amd64"
UNSAVED_CRASH_TIME = 1_700_000_000  # 2023-11-14 22:13:20 UTC
UNSAVED_DUMP_BYTES = MIB


def make_unsaved_dump_disk(tool: str, path: Path, size: int, saved: bool = False) -> tuple[str, str]:
    """A disk prepared with `minicap format` that then holds a complete ELF dump nobody has
    saved (as an earlier crash would leave it): UNSAVED_DUMP_BYTES of data at DUMP_OFFSET and
    a header saying complete, not saved. The header's base fields are set at their offsets
    (formats/dumpheader: state 32, format 36, dump_length 48, written 56, crash_time 72,
    osrelease 144, verify 476) and its CRC-32 (bytes 0..508, at 508) recomputed; the
    extension, which holds saved_time (0: not saved), is the formatter's. With `saved`, the
    dump is marked as `minicap save` marks it: saved_time (byte 712) set, the extension's
    CRC-32 (bytes 512..1020, at 1020) recomputed. Returns (device id, the tool's output)."""
    device_id, text = make_formatted_disk(tool, path, size)
    with open(path, "r+b") as f:
        header = bytearray(f.read(1024))
        struct.pack_into("<II", header, 32, 2, 1)  # complete, elf-vmcore
        struct.pack_into("<QQ", header, 48, UNSAVED_DUMP_BYTES, UNSAVED_DUMP_BYTES)
        struct.pack_into("<q", header, 72, UNSAVED_CRASH_TIME)
        header[144:208] = UNSAVED_OSRELEASE.encode().ljust(64, b"\0")
        struct.pack_into("<I", header, 476, 1)  # verify none: the data is not what a capture wrote
        struct.pack_into("<I", header, 508, zlib.crc32(bytes(header[:508])))
        if saved:
            struct.pack_into("<q", header, 712, UNSAVED_CRASH_TIME + 3600)
            struct.pack_into("<I", header, 1020, zlib.crc32(bytes(header[512:1020])))
        f.seek(0)
        f.write(header)
        f.seek(DUMP_OFFSET)
        f.write(random.Random(UNSAVED_CRASH_TIME).randbytes(UNSAVED_DUMP_BYTES))
    p = run([tool, "info", path])
    want = "saved:       yes" if saved else "saved:       no"
    if p.returncode != 0 or "state:       complete" not in p.stdout or want not in p.stdout:
        raise HarnessError(f"the dump disk {path} does not read as complete with {want!r}:\n{p.stdout}")
    return device_id, text + p.stdout


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

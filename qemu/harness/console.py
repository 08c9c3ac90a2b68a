"""What the serial console says: minicap's RESULT line, the per-device
"left alone" reports, the failed write a device error names, the IOMMU
takeover line, and the guest's own markers."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import MIB

CRASH_MARKERS = ("sysrq: Trigger a crash", "Kernel panic")
# Any line starting like this is minicap's final verdict (also in a format
# parse_result_line rejects, so that a wrong format fails a check rather
# than looking like no RESULT at all).
RESULT_MARKER = "minicap: RESULT:"
RESULT_RE = re.compile(
    r"minicap: RESULT: (?:(?P<success>success): (?P<text>.*)"
    r"|(?P<failure>failure) \[(?P<code>[a-z0-9]+(?:-[a-z0-9]+)*)\]: (?P<message>.*))$"
)
# The linux-kdump reference's capture initramfs prints this instead.
KDUMP_RESULT_RE = re.compile(r"KDUMP-RESULT: (success|failure)(.*)")

# formats/dumpheader's FailureCode names (FailureCode::as_str), as printed
# in `RESULT: failure [<code>]` and stored in the dump header.
FAILURE_CODES = (
    "bad-boot-params", "bad-option", "no-elfcorehdr", "bad-elfcorehdr", "bad-core-headers", "bad-memory-map",
    "crash-memory-too-small", "memory-not-mappable", "bad-layout", "iommu", "no-device", "no-prepared-device",
    "device-id-mismatch", "ambiguous-device", "device-too-small", "unsupported-block-size", "device-error",
    "cpu-exception", "internal", "timeout", "unsaved-dump",
)  # fmt: skip


# A kernel warning or bug report in the log: WARN()'s "cut here" banner and its "WARNING: CPU: N
# PID: N at FILE" line, BUG() and oopses. The crash itself prints a backtrace, so only the lines
# before it count (kernel_warnings).
KERNEL_WARNING_RE = re.compile(r"-{12}\[ cut here \]-{12}|\bWARNING: CPU: \d+|\bBUG: |\bOops: |\bKernel BUG at ")


def kernel_warnings(lines: list[str], markers: tuple[str, ...] = CRASH_MARKERS) -> list[str]:
    """The lines before the first crash marker that report a kernel warning, each with the
    line after it (WARN()'s message follows its banner), stripped."""
    out = []
    for i, line in enumerate(lines):
        if any(m in line for m in markers):
            break
        if KERNEL_WARNING_RE.search(line):
            out.append(" / ".join(t.strip() for t in lines[i : i + 2]))
    return out


@dataclass(frozen=True)
class ResultLine:
    verdict: str  # "success" or "failure"
    code: str | None  # the failure code; None on success
    message: str  # the text after "success: " or "failure [<code>]: "


def parse_result_line(line: str) -> ResultLine | None:
    """`minicap: RESULT: success: <text>` or `minicap: RESULT: failure
    [<code>]: <message>` (anywhere in the line, trailing CR ignored); None
    if the line is neither."""
    m = RESULT_RE.search(line.rstrip("\r\n"))
    if not m:
        return None
    if m.group("success"):
        return ResultLine("success", None, m.group("text"))
    return ResultLine("failure", m.group("code"), m.group("message"))


def check_device_reports(lines: list[str], unformatted: int = 0,
                         mismatch: tuple[str, str] | None = None) -> tuple[bool, str]:
    """The per-device lines minicap prints before its RESULT when it skips a
    disk (`...; left alone`): exactly `unformatted` "not a minicap dump
    device" lines (one per disk of random data) and, with `mismatch` = (the
    disk's id, the requested id), exactly one "minicap device id <disk's> is
    not the requested <requested>"."""
    mc = []
    for l in lines:
        if l.startswith(RESULT_MARKER):
            break
        if l.startswith("minicap: ") and "left alone" in l:
            mc.append(l.strip())
    hits = [l for l in mc if "not a minicap dump device" in l]
    ok = len(hits) == unformatted
    details = [f"{len(hits)} 'not a minicap dump device ... left alone' line(s), want {unformatted}"]
    if mismatch is not None:
        disk_id, wanted_id = mismatch
        want = f"minicap device id {disk_id.lower()} is not the requested {wanted_id.lower()}; left alone"
        mismatched = [l for l in mc if want in l.lower()]
        ok = ok and len(mismatched) == 1
        # The mismatch is what the wrong-id runs are about: say it first.
        details.insert(0, f"{len(mismatched)} line(s) with {want!r}, want 1")
        hits = mismatched + hits
    detail = "; ".join(details)
    if hits:
        return ok, f"{detail}: " + " | ".join(hits)
    return ok, detail + (f"; lines seen: {mc}" if mc else "; no 'left alone' lines")


def check_candidates(lines: list[str], target: str, left_out: list[str], candidates: list[str]) -> tuple[bool, str]:
    """The PCI scan's report before the RESULT: exactly one "<function>: not
    a candidate (minicap.target=<target>); left alone" line for each of
    `left_out` ("NVMe 00:02.0", ...) and no other, and the line "dump disk
    candidates (minicap.target=<target>): <candidates, or none>"."""
    said, listed = [], None
    for l in lines:
        if l.startswith(RESULT_MARKER):
            break
        if m := re.match(rf"minicap: (.+): not a candidate \(minicap\.target={re.escape(target)}\); left alone$", l):
            said.append(m.group(1))
        elif l.startswith("minicap: dump disk candidates ("):
            listed = l.removeprefix("minicap: ").strip()
    want_listed = f"dump disk candidates (minicap.target={target}): {', '.join(candidates) or 'none'}"
    ok = sorted(said) == sorted(left_out) and len(said) == len(set(said)) and listed == want_listed
    detail = f"not candidates: {', '.join(said) or 'none'} (want {', '.join(left_out) or 'none'}); {listed!r}"
    return ok, detail + ("" if listed == want_listed else f" (want {want_listed!r})")


# The busy-device scenarios' console lines (initramfs.busy_block and
# busy_crash): the writers started, then, as the last thing before the
# crash, the disk's /sys/block/<disk>/inflight (reads and writes the driver
# has issued and not yet seen complete) and /sys/block/<disk>/stat's
# sectors written.
BUSY_WRITERS_RE = re.compile(r"^BUSY-WRITERS (\d+) (/dev/\S+)")
# BUSY-INFLIGHT goes through /dev/kmsg: printk's timestamp comes first.
BUSY_INFLIGHT_RE = re.compile(
    r"^(?:\[\s*\d+\.\d+\] )?BUSY-INFLIGHT (/dev/\S+) reads (\d+) writes (\d+) sectors-written (\d+)"
)


def check_busy_writes(lines: list[str], markers: tuple[str, ...] = CRASH_MARKERS) -> tuple[bool, str]:
    """The first kernel's writers were running, had written, and had writes
    in flight on the dump disk when it crashed: a BUSY-WRITERS line, then
    a BUSY-INFLIGHT line with writes > 0 and sectors written > 0, and the
    crash (a line with one of `markers`) right after it (no other line of
    the guest's init between)."""
    started = inflight = None
    for i, l in enumerate(lines):
        if started is None and (m := BUSY_WRITERS_RE.search(l)):
            started = m
        elif started is not None and (m := BUSY_INFLIGHT_RE.search(l)):
            inflight = (i, m)
            break
    if started is None:
        abort = next((l for l in lines if l.startswith("BUSY-ABORT")), None)
        return False, abort or "no BUSY-WRITERS line: the writers never started"
    if inflight is None:
        return False, f"{started.group(0)}, then no BUSY-INFLIGHT line"
    i, m = inflight
    disk, writes, sectors = m.group(1), int(m.group(3)), int(m.group(4))
    crash = next((j for j in range(i + 1, len(lines)) if any(c in lines[j] for c in markers)), None)
    between = [l for l in lines[i + 1 : crash] if l.startswith(("E2E-", "BUSY-", "PATTERN-"))] if crash else []
    ok = disk == started.group(2) and writes > 0 and sectors > 0 and crash is not None and not between
    detail = f"{started.group(1)} writers on {started.group(2)}; at the crash: {m.group(0)}"
    if crash is None:
        detail += "; no crash after it"
    elif between:
        detail += f"; init went on before the crash: {between[0]!r}"
    return ok, detail


# The writer's failure for a vmcore data write the device rejected
# (kernel/src/writer.rs around drivers/src/virtio/blk.rs's VirtioBlkError::Io).
WRITE_FAILURE_RE = re.compile(
    r"writing memory (0x[0-9a-f]+) to byte (0x[0-9a-f]+): write at byte (0x[0-9a-f]+) failed with virtio status (\d+)"
)
MAX_REQUEST_BYTES = 2 * MIB  # minicap's largest virtio-blk request (MAX_REQUEST_BYTES in drivers/src/virtio/blk.rs)


@dataclass
class WriteFailure:
    source: int  # physical address of the memory being written
    offset: int  # device byte offset of the writer's write (a run of requests)
    request: int  # device byte offset of the request the device failed
    status: int  # virtio status byte (1 = VIRTIO_BLK_S_IOERR)


def parse_write_failure(message: str) -> WriteFailure | None:
    m = WRITE_FAILURE_RE.search(message)
    if not m:
        return None
    return WriteFailure(int(m.group(1), 16), int(m.group(2), 16), int(m.group(3), 16), int(m.group(4)))


def check_write_failure(message: str, injected: int) -> tuple[bool, str]:
    """The RESULT failure names a device write error (virtio status 1,
    VIRTIO_BLK_S_IOERR) of a request that contains the injected byte."""
    wf = parse_write_failure(message)
    if wf is None:
        return False, f"no 'writing memory ... write at byte ... failed with virtio status N' in {message!r}"
    ok = wf.status == 1 and wf.offset <= wf.request <= injected < wf.request + MAX_REQUEST_BYTES
    return ok, (f"request at byte {wf.request:#x} (write of {wf.source:#x} to {wf.offset:#x}) failed with "
                f"virtio status {wf.status}; injected error at byte {injected:#x}"
                + ("" if ok else f" (want status 1 and a request of at most {MAX_REQUEST_BYTES} bytes "
                                 "containing the injected byte)"))  # fmt: skip


IOMMU_TAKEOVER = re.compile(
    r"minicap: IOMMU: VT-d unit \S+ .*translation was on.*own root table, "
    r"(pass-through|identity map of \[[^)]*\)) for (?!no device)[^;]+; all other DMA blocked; "
    r"translation on"
    # AMD-Vi: minicap's device table, the candidates untranslated, the rest blocked.
    r"|minicap: IOMMU: AMD-Vi unit \S+ .*translation was on.*own device table \(\d+ entries\), "
    r"untranslated DMA for (?!no device)[^;]+; all other DMA and every interrupt blocked;.*translation on$")


def planned_dump_length(lines: list[str]) -> int | None:
    """The vmcore size minicap announces before writing."""
    return next((int(m.group(1)) for l in lines
                 if (m := re.search(r"minicap: dump: ELF vmcore of (\d+) bytes", l))), None)  # fmt: skip


def success_sha256(text: str) -> str | None:
    """The `sha256 <hex>` the success line ends with."""
    m = re.search(r"\bsha256 ([0-9a-f]{64})\b", text)
    return m.group(1) if m else None

"""The checks of a run, each recorded as PASS/FAIL with detail: the vmcore
(layout against /proc/iomem, notes, makedumpfile, the pattern, crash, gdb),
the console log stored on the device, the IOMMU takeover, and what a device
error leaves behind (header, `minicap save [--partial]`, the partial dump)."""

from __future__ import annotations

import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .common import PAGE_SIZE, HarnessError, log, run, tail
from .console import (IOMMU_TAKEOVER, MAX_REQUEST_BYTES, check_write_failure, parse_write_failure,
                      planned_dump_length)
from .device_info import DeviceInfo, read_device_info
from .disks import DUMP_OFFSET, UNSAVED_DUMP_BYTES, UNSAVED_OSRELEASE, same_bytes
from .elf import KERNEL_TEXT_START, NT_PRSTATUS, PT_LOAD, PT_NOTE, kernel_offset, parse_notes, read_phdrs, vmcore_end
from .iomem import expected_dump_ranges, fmt_ranges, iomem_section, merge_ranges, parse_iomem, subtract_ranges
from .kernel import GuestKernel, ensure_debug_vmlinux
from .kdumpfile import CODECS, KdumpFile, KdumpFormatError
from .pattern import check_partial_pattern, parse_pattern_log, pattern_page

CHECKPOINT_PERCENT = 10  # the header's `written` is brought up to date every 10 % (kernel/src/writer.rs)


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


def check_layout(res: Results, vmcore: Path, serial: list[str], low_1m_excluded: bool = False) -> None:
    """The dump's RAM PT_LOADs are the crashed kernel's System RAM less the crash region (and less
    the first MiB when `low_1m_excluded`: kexec_file_load's core headers leave it out)."""
    name = "PT_LOADs = System RAM - Crash kernel" + (" - first MiB" if low_1m_excluded else "")
    iomem = parse_iomem(iomem_section(serial))
    if not iomem:
        res.add(name, False, "no IOMEM-BEGIN..IOMEM-END in the serial log")
        return
    expected = expected_dump_ranges(iomem, low_1m_excluded)
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
    res.add(name, ok, detail)


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


def check_vmcore_tools(res: Results, args, out: Path, vmcore: Path, k: GuestKernel, version: str,
                       low_1m_excluded: bool = False) -> None:
    run_dump_dmesg(res, out, vmcore, "ELF", getattr(args, "crash_lines", None))
    pv = run([args.pattern, "verify", vmcore, out / "serial.log"])
    (out / "pattern-verify.log").write_text(pv.stdout)
    summary = [l for l in pv.stdout.splitlines() if "pages intact" in l or "FAILED" in l]
    res.add(
        "pattern intact",
        pv.returncode == 0,
        (summary[-1] if summary else f"exit {pv.returncode}")
        + ("" if pv.returncode == 0 else "\n" + tail(pv.stdout, 12)),
    )
    check_layout(res, vmcore, [l for l in (out / "serial.log").read_text(errors="replace").splitlines()],
                 low_1m_excluded)
    check_notes(res, vmcore, args.smp, version)
    if args.with_crash:
        vmlinux = check_crash(res, out, vmcore, k)
        if vmlinux is not None:
            check_gdb(res, out, vmlinux, vmcore)


def check_crash(res: Results, out: Path, vmcore: Path, k: GuestKernel) -> Path | None:
    """`crash -s vmlinux vmcore` (the -dbg package's vmlinux) on an ELF or
    kdump-compressed dump: `sys` names the panic, `bt` goes through the sysrq
    crash handler, `log` reads. Returns the vmlinux, None if it could not be had."""
    try:
        vmlinux = ensure_debug_vmlinux(k)
    except HarnessError as e:
        res.add("crash", False, str(e))
        return None
    cmds = "sys\nbt\nlog | tail -5\nquit\n"
    try:
        p = run(["crash", "-s", vmlinux, vmcore], input=cmds, timeout=600)
    except subprocess.TimeoutExpired:
        res.add("crash sys/bt/log", False, "crash did not finish within 600 s")
        return vmlinux
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
    return vmlinux


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


def check_device_error(res: Results, args, out: Path, disk: Path, message: str, code: str | None,
                       header: DeviceInfo | None, injected: int, serial: list[str], version: str,
                       info: dict) -> None:
    """After a capture whose dump disk failed one write: the RESULT message
    and `code`, the `header` (`minicap info --json`, None if it could not be
    read), `minicap info`, `minicap save` with and without --partial, and
    the partial vmcore (its ELF headers, notes and pattern pages)."""
    ok, detail = check_write_failure(message, injected)
    res.add("RESULT names the failed write", ok, detail)
    wf = parse_write_failure(message)
    if header is None:
        return
    h = header
    planned = planned_dump_length(serial)
    bad = []
    if h.state != "failed":
        bad.append(f"state {h.state}, want failed")
    if h.failure_code != code:
        bad.append(f"failure_code {h.failure_code!r} is not the RESULT's {code!r}")
    if h.message != message:
        bad.append(f"message {h.message!r} is not the RESULT message {message!r}")
    if h.format != "elf-vmcore" or h.dump_offset != DUMP_OFFSET:
        bad.append(f"format {h.format}, dump offset {h.dump_offset:#x} (want elf-vmcore, {DUMP_OFFSET:#x})")
    if planned is None or h.dump_length != planned:
        bad.append(f"dump_length {h.dump_length}, the console planned {planned}")
    if h.osrelease != version:
        bad.append(f"osrelease {h.osrelease!r}, want {version!r}")
    res.add("header: failed, with the code and message", not bad,
            f"state {h.state}, failure_code {h.failure_code}, written {h.written} of {h.dump_length}, "
            f"message {h.message!r}" + ("".join(f"\n{b}" for b in bad)))  # fmt: skip
    if wf is not None:
        ok, detail = check_checkpoint(h.written, h.dump_length, wf.offset - h.dump_offset)
    else:
        ok, detail = False, f"written {h.written} of {h.dump_length}; no failed write offset to compare with"
    res.add("header: written = last 10 % checkpoint", ok, detail)
    check_partial_save(res, args, out, disk, h, serial, version, info)


def check_partial_save(res: Results, args, out: Path, disk: Path, h: DeviceInfo, serial: list[str], version: str,
                       info: dict) -> None:
    """A failed capture's partial dump, as its `header` describes it: `minicap info`, `minicap
    save` refusing without --partial, `minicap save --partial` (exactly `written` bytes, the
    image's), its ELF headers, notes and pattern pages."""
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


TIME_LIMIT_RE = re.compile(r"ran past its time limit: (\d+)\.(\d{3}) s since minicap started, limit (\d+) s "
                           r"\(minicap\.timeout=\); no further write was started, what the device confirmed is kept$")


def check_time_limit_message(message: str, limit: int | None) -> tuple[bool, str]:
    """The RESULT message of a capture stopped by minicap.timeout=: elapsed and limit, the
    elapsed time at least the limit."""
    m = TIME_LIMIT_RE.search(message)
    if m is None:
        return False, f"not the time-limit message: {message!r}"
    elapsed_ms = int(m.group(1)) * 1000 + int(m.group(2))
    said = int(m.group(3))
    ok = said == limit and elapsed_ms >= said * 1000
    return ok, f"elapsed {elapsed_ms / 1000:.3f} s, limit {said} s (asked for {limit} s)"


def check_time_limit(res: Results, args, out: Path, disk: Path, message: str, header: DeviceInfo | None,
                     serial: list[str], version: str, limit: int | None, info: dict) -> None:
    """After a capture stopped by its time limit: the RESULT's elapsed and limit, the
    header (failed, code timeout, the RESULT message, part of the dump written: every byte
    written, not only up to a checkpoint), then the partial dump as after a device error."""
    ok, detail = check_time_limit_message(message, limit)
    res.add("RESULT: elapsed and limit", ok, detail)
    if header is None:
        return
    h = header
    planned = planned_dump_length(serial)
    bad = []
    if (h.state, h.failure_code) != ("failed", "timeout"):
        bad.append(f"state {h.state}, failure_code {h.failure_code} (want failed, timeout)")
    if h.message != message:
        bad.append(f"message {h.message!r} is not the RESULT message {message!r}")
    if h.format != "elf-vmcore" or h.dump_offset != DUMP_OFFSET:
        bad.append(f"format {h.format}, dump offset {h.dump_offset:#x} (want elf-vmcore, {DUMP_OFFSET:#x})")
    if planned is None or h.dump_length != planned:
        bad.append(f"dump_length {h.dump_length}, the console planned {planned}")
    if not 0 < h.written < h.dump_length:
        bad.append(f"written {h.written} of {h.dump_length}: the limit did not stop the dump part way")
    if h.saved_time != 0:
        bad.append(f"saved_time {h.saved_time} before any save")
    info["written_at_the_limit"] = h.written
    res.add("header: failed, timeout, part of the dump", not bad,
            f"state {h.state}, failure_code {h.failure_code}, written {h.written} of {h.dump_length}"
            + "".join(f"\n{b}" for b in bad))  # fmt: skip
    check_partial_save(res, args, out, disk, h, serial, version, info)


def check_unsaved_kept(res: Results, message: str) -> None:
    """The RESULT of a capture onto a disk holding a dump never saved names that dump (from its
    header: kernel, crash time) and how to free the disk."""
    want = [f"holds a complete dump of kernel {UNSAVED_OSRELEASE} that crashed at 2023-11-14 22:13:20 UTC",
            f"{UNSAVED_DUMP_BYTES} of {UNSAVED_DUMP_BYTES} bytes", "not yet saved: it is kept",
            "minicap save DEVICE", "minicap.overwrite=any", "nothing was written"]  # fmt: skip
    missing = [w for w in want if w not in message]
    res.add("RESULT names the kept dump and the way out", not missing,
            message if not missing else f"missing {missing} in {message!r}")


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


def check_iommu_takeover(res, serial_lines):
    """With --iommu: the guest left VT-d translating and minicap installed its
    own tables (only the dump disk candidates, virtio-blk, NVMe, AHCI, let through)."""
    hits = [l.rstrip("\r") for l in serial_lines if IOMMU_TAKEOVER.search(l)]
    iommu = [l.rstrip("\r") for l in serial_lines if l.startswith("minicap: IOMMU")]
    res.add("IOMMU taken over (translation stays on)", bool(hits),
            (hits or iommu or ["no 'minicap: IOMMU' line"])[0])  # fmt: skip


def read_header(res: Results, args, disk: Path, info: dict) -> DeviceInfo | None:
    """The dump header through `minicap info --json`, kept in `info`; a
    failed check and None if the tool cannot give it."""
    try:
        h = read_device_info(args.tool, disk)
    except (ValueError, OSError) as e:
        res.add("header (minicap info --json)", False, str(e))
        return None
    info["header"] = dict(h.__dict__)
    return h


# The verification the RESULT success line names (`minicap.verify=`), as the header's `verify` field spells it.
VERIFIED = [
    ("sha256", re.compile(r"\bsha256 (?P<sha256>[0-9a-f]{64})\b")),
    ("xxh64-chunks", re.compile(r"\bxxh64 per (?P<size>\d+) (?P<unit>MiB|GiB) chunk \((?P<chunks>\d+) chunks\), "
                                r"table xxh64 [0-9a-f]{16}\b")),
    ("none", re.compile(r"\bnot verified\b")),
]  # fmt: skip


def verification_mismatch(h: DeviceInfo, result_text: str) -> str | None:
    """Why the verification the RESULT line names does not match the
    header's (`verify`, and the SHA-256 or the chunk size and count); None
    if it does."""
    named = [(verify, m) for verify, pattern in VERIFIED if (m := pattern.search(result_text))]
    if len(named) != 1:
        return f"the RESULT line names {len(named)} verifications (want one): {result_text[-120:]!r}"
    verify, m = named[0]
    if verify != h.verify:
        return f"the RESULT line names {verify}, the header's verify is {h.verify}"
    if verify == "sha256" and m["sha256"] != h.sha256:
        return f"sha256 {h.sha256}, the RESULT line printed {m['sha256']}"
    if verify == "xxh64-chunks":
        size = int(m["size"]) << (20 if m["unit"] == "MiB" else 30)
        chunks = -(-h.dump_length // size)
        if size != h.chunk_size or int(m["chunks"]) != chunks:
            return (f"the RESULT line names {m['chunks']} chunks of {size} bytes, the header {chunks} of "
                    f"{h.chunk_size}")  # fmt: skip
    return None


def check_complete_header(res: Results, h: DeviceInfo, result_text: str, vmcore_bytes: int | None,
                          version: str, dump_format: str = "elf-vmcore") -> None:
    """After a successful capture the header says complete, with no failure
    code, everything written, the guest's release and the verification the
    RESULT line printed (`verify`, and the SHA-256 or chunk size); the saved
    vmcore is `dump_length` bytes long."""
    bad = []
    if h.state != "complete" or h.failure_code != "none":
        bad.append(f"state {h.state}, failure_code {h.failure_code} (want complete, none)")
    if h.format != dump_format or h.dump_offset != DUMP_OFFSET:
        bad.append(f"format {h.format}, dump offset {h.dump_offset:#x} (want {dump_format}, {DUMP_OFFSET:#x})")
    if h.written != h.dump_length or (vmcore_bytes is not None and vmcore_bytes != h.dump_length):
        bad.append(f"written {h.written}, dump_length {h.dump_length}, saved vmcore {vmcore_bytes} bytes")
    if h.osrelease != version:
        bad.append(f"osrelease {h.osrelease!r}, want {version!r}")
    mismatch = verification_mismatch(h, result_text)
    if mismatch:
        bad.append(mismatch)
    res.add("header: complete", not bad,
            f"state {h.state}, {h.written} of {h.dump_length} bytes written, verify {h.verify}"
            + "".join(f"\n{b}" for b in bad))  # fmt: skip


# ---------------------------------------------------------------------------
# The kdump-compressed format and the triage text
# ---------------------------------------------------------------------------

DUMP_LEVEL_USER = 8  # makedumpfile -d bit: user (anonymous) pages, where the guest's pattern lives
TRIAGE_LOG_HEADING = "--- kernel log ---"
CRASH_LINES = ["sysrq: Trigger a crash", "Kernel panic - not syncing"]


def run_dump_dmesg(res: Results, out: Path, vmcore: Path, what: str, want: list[str] | None = None) -> str:
    """`makedumpfile --dump-dmesg` on `vmcore` (into out/dmesg.txt): the crashed kernel's
    log as the real tool reads it; the check that it has the sysrq and panic lines (or
    `want`, the lines of another crash: qemu/matrix/)."""
    dmesg = out / "dmesg.txt"
    dmesg.unlink(missing_ok=True)
    p = run(["makedumpfile", "--dump-dmesg", vmcore, dmesg])
    (out / "makedumpfile.log").write_text(p.stdout)
    text = dmesg.read_text(errors="replace") if dmesg.exists() else ""
    missing = [w for w in want or CRASH_LINES if w not in text]
    res.add(f"makedumpfile --dump-dmesg ({what})", p.returncode == 0 and not missing,
            f"exit {p.returncode}, {len(text.splitlines())} lines"
            + (f", missing {missing}" if missing else f", has {', '.join(want or CRASH_LINES)!r}")
            + ("" if p.returncode == 0 else "\n" + tail(p.stdout, 10)))  # fmt: skip
    return text


def check_kdump(res: Results, out: Path, vmcore: Path, serial: list[str], header: DeviceInfo | None,
                version: str, smp: int, level: int, codec: str) -> None:
    """A kdump-compressed dump saved by `minicap save`: makedumpfile reads its log; its
    headers (read by the harness's own reader, written from the format's description)
    name the guest's release, its CPUs, the dump level and codec asked for, and say it is
    complete; the guest's pattern pages are all there and intact (read back through
    zlib) unless user pages are filtered out, and then none of them is dumped."""
    run_dump_dmesg(res, out, vmcore, "kdump-compressed")
    try:
        f = open(vmcore, "rb")
    except OSError as e:
        res.add("kdump-compressed headers", False, str(e))
        return
    with f:
        try:
            k = KdumpFile(f)
        except (KdumpFormatError, struct.error) as e:
            res.add("kdump-compressed headers", False, str(e))
            return
        want_status = {v: c for c, v in CODECS.items()}.get(codec, 0)
        bad = []
        if k.header_version != 6:
            bad.append(f"header version {k.header_version}, want 6 (makedumpfile 1.7)")
        if k.release != version:
            bad.append(f"release {k.release!r}, want {version!r}")
        if k.nr_cpus != smp:
            bad.append(f"nr_cpus {k.nr_cpus}, want {smp}")
        if k.incomplete or k.status & ~0x8 != want_status:
            bad.append(f"status {k.status:#x}, want {want_status:#x} ({codec}) without the incomplete bit")
        if header is not None and (header.dump_level != k.dump_level or header.dump_level_requested != level
                                   or header.compression != codec or header.pages_dumped != k.dumped_pages()):
            bad.append(f"minicap header: dump level {header.dump_level} (asked {header.dump_level_requested}), "
                       f"compression {header.compression}, {header.pages_dumped} pages; file: dump level "
                       f"{k.dump_level}, {k.dumped_pages()} pages")  # fmt: skip
        if k.dump_level != level and not (header and header.level_note):
            bad.append(f"dump level {k.dump_level}, asked {level}, and the header gives no reason")
        res.add("kdump-compressed headers", not bad,
                f"version {k.header_version}, {k.release}, {k.nr_cpus} CPUs, dump level {k.dump_level}, "
                f"{k.dumped_pages()} of {sum(bin(b).count('1') for b in k.ram_bitmap)} RAM pages dumped, "
                f"status {k.status:#x}" + "".join(f"\n{b}" for b in bad))  # fmt: skip
        try:
            log_ = parse_pattern_log(serial)
        except ValueError as e:
            res.add("pattern pages in the kdump file", False, str(e))
            return
        pfns = [(pfn0 + i, page0 + i) for pfn0, page0, count in log_.runs for i in range(count)]
        dumped = [(pfn, page) for pfn, page in pfns if k.is_dumped(pfn)]
        if k.dump_level & DUMP_LEVEL_USER:
            res.add("pattern pages (user memory) filtered out", not dumped,
                    f"{len(dumped)} of {len(pfns)} pattern pages dumped at dump level {k.dump_level}")  # fmt: skip
            return
        if codec not in ("zlib", "none"):
            # Python's standard library has no LZO: makedumpfile itself decompresses,
            # re-filtering the file at its own level into an uncompressed kdump file.
            raw = out / "uncompressed.kdump"
            raw.unlink(missing_ok=True)
            p = run(["makedumpfile", "-d", str(k.dump_level), vmcore, raw])
            if p.returncode != 0 or not raw.is_file():
                res.add("pattern intact in the kdump file", False,
                        f"makedumpfile -d {k.dump_level} (to decompress {codec}) exit {p.returncode}: "
                        + tail(p.stdout, 5))  # fmt: skip
                return
            with open(raw, "rb") as rf:
                check_pattern_pages(res, KdumpFile(rf), pfns, log_.seed, f"{codec}, decompressed by makedumpfile")
            raw.unlink(missing_ok=True)
            return
        check_pattern_pages(res, k, pfns, log_.seed, codec)


def check_filtered_elf(res: Results, out: Path, vmcore: Path, serial: list[str], header: DeviceInfo | None,
                       version: str, smp: int, level: int) -> None:
    """A filtered ELF vmcore (minicap.format=elf with a dump level, as makedumpfile -E) saved
    by `minicap save`: makedumpfile reads its log; its notes are the CPUs' and VMCOREINFO;
    its PT_LOADs still span System RAM - Crash kernel with their p_memsz, the left-out pages
    beyond p_filesz; the header names the level and the page counts; and at a level with
    the user-page bit no pattern page is in the file."""
    run_dump_dmesg(res, out, vmcore, "filtered ELF")
    check_notes(res, vmcore, smp, version)
    check_layout(res, vmcore, serial)
    with open(vmcore, "rb") as f:
        try:
            loads = [p for p in read_phdrs(f) if p.type == PT_LOAD]
        except (ValueError, struct.error) as e:
            res.add("filtered ELF PT_LOADs", False, str(e))
            return
        file_pages = sum(-(-p.filesz // PAGE_SIZE) for p in loads)
        memory_pages = sum(p.memsz // PAGE_SIZE for p in loads)
        bad = []
        if header is None:
            bad.append("no header")
        else:
            if header.dump_level_requested != level or (header.dump_level != level and not header.level_note):
                bad.append(f"dump level {header.dump_level} (asked {header.dump_level_requested}, note "
                           f"{header.level_note!r}), want {level}")  # fmt: skip
            if not 0 < header.pages_dumped <= file_pages or header.pages_ram < header.pages_dumped:
                bad.append(f"header: {header.pages_dumped} of {header.pages_ram} RAM pages dumped, the file's "
                           f"PT_LOADs hold {file_pages} pages")  # fmt: skip
        if file_pages >= memory_pages:
            bad.append(f"nothing left out: {file_pages} pages in the file of {memory_pages}")
        res.add("filtered ELF: level and PT_LOADs", not bad,
                f"{len(loads)} PT_LOADs, {file_pages} of {memory_pages} pages in the file, dump level "
                f"{header.dump_level if header else '?'}, {header.pages_dumped if header else '?'} pages dumped"
                + "".join(f"\n{b}" for b in bad))  # fmt: skip
        try:
            log_ = parse_pattern_log(serial)
        except ValueError as e:
            res.add("pattern pages in the filtered ELF", False, str(e))
            return
        present = []
        for pfn0, page0, count in log_.runs:
            for i in range(count):
                addr = (pfn0 + i) * PAGE_SIZE
                for p in loads:
                    if p.paddr <= addr and addr + PAGE_SIZE <= p.paddr + p.filesz:
                        f.seek(p.offset + addr - p.paddr)
                        if f.read(PAGE_SIZE) == pattern_page(log_.seed, page0 + i):
                            present.append(pfn0 + i)
                        break
        pages = sum(count for _, _, count in log_.runs)
        if level & DUMP_LEVEL_USER:
            res.add("pattern pages (user memory) filtered out", not present,
                    f"{len(present)} of {pages} pattern pages in the file at dump level {level}"
                    + (f", first pfn {present[0]:#x}" if present else ""))  # fmt: skip
        else:
            res.add("pattern intact in the filtered ELF", len(present) == pages,
                    f"{len(present)} of {pages} pattern pages intact in the file")


def check_pattern_pages(res: Results, k, pfns: list[tuple[int, int]], seed: int, how: str) -> None:
    """Every pattern page (pfn, page number) is dumped in `k` and intact."""
    intact, problems = 0, []
    for pfn, page in pfns:
        try:
            data = k.page(pfn)
        except KdumpFormatError as e:
            problems.append(str(e))
            continue
        if data == pattern_page(seed, page):
            intact += 1
        else:
            problems.append(f"page {page} (pfn {pfn:#x}) " + ("not dumped" if data is None else "differs"))
    res.add("pattern intact in the kdump file", intact == len(pfns) and not problems,
            f"{intact} of {len(pfns)} pages intact ({how})" + "".join(f"\n{p}" for p in problems[:8]))  # fmt: skip


def check_triage(res: Results, args, out: Path, disk: Path, reference_dmesg: str | None,
                 want: list[str] | None = None) -> None:
    """`minicap dmesg`: the triage text written before the dump, with the crash in its
    log; its log equal, line for line, to what makedumpfile reads from the dump (when
    there is a dump to read)."""
    p = run([args.tool, "dmesg", disk])
    (out / "triage.txt").write_text(p.stdout)
    check_triage_text(res, "minicap dmesg", p.stdout, p.returncode, p.stdout + (p.stderr or ""), reference_dmesg,
                      want)


def check_triage_text(res: Results, source: str, text: str, returncode: int, output: str,
                      reference_dmesg: str | None, want: list[str] | None = None) -> None:
    """The triage text from `source` (exit status `returncode`, tool output `output`):
    the crash in its log (CRASH_LINES, or `want`), and its log equal to makedumpfile's
    (`reference_dmesg`)."""
    missing = [w for w in want or CRASH_LINES if w not in text]
    heading = TRIAGE_LOG_HEADING in text
    res.add(f"triage text ({source})", returncode == 0 and not missing and heading,
            f"exit {returncode}, {len(text.splitlines())} lines"
            + (f", missing {missing}" if missing else f", has {', '.join(want or CRASH_LINES)!r}")
            + ("" if heading else f", no '{TRIAGE_LOG_HEADING}' line")
            + ("" if returncode == 0 else "\n" + tail(output, 5)))  # fmt: skip
    if reference_dmesg is None or not heading:
        return
    log_lines = text.split(TRIAGE_LOG_HEADING, 1)[1].splitlines()
    log_lines = [l for l in log_lines if l.strip()]
    ref = [l for l in reference_dmesg.splitlines() if l.strip()]
    same = log_lines == ref
    first_diff = next((i for i, (a, b) in enumerate(zip(log_lines, ref)) if a != b), min(len(log_lines), len(ref)))
    res.add("triage log = makedumpfile --dump-dmesg", same,
            f"{len(log_lines)} lines, makedumpfile {len(ref)}" + ("" if same else
            f"; first difference at line {first_diff + 1}:\n  triage: {log_lines[first_diff:first_diff + 1]}"
            f"\n  makedumpfile: {ref[first_diff:first_diff + 1]}"))  # fmt: skip


STREAM_RATE_RE = re.compile(r"^minicap: stream: (\d+) bytes on the line \((\d+) data frames\) in ([\d.]+) s: "
                            r"(\d+) bytes/s")


def check_serial_stream(res: Results, args, out: Path, stream: Path, vmcore: Path, serial: list[str],
                        info: dict) -> bool:
    """`minicap receive` on what the guest's second UART carried (`stream`): the frames
    whole, the End frame's checks right, the vmcore written beside its triage text and
    log; then `makedumpfile -R` of the flattened copy must give the same bytes (the
    independent reading of the same records). The rate the kernel measured goes into
    `info`. True if there is a vmcore to check further."""
    flat = out / "vmcore.flat"
    rebuilt = out / "vmcore.rebuilt"
    for f in (vmcore, flat, rebuilt):
        f.unlink(missing_ok=True)
    p = run([args.tool, "receive", stream, "-o", vmcore, "--flattened", flat])
    (out / "receive.log").write_text(p.stdout)
    info["stream_bytes"] = stream.stat().st_size if stream.is_file() else 0
    res.add("minicap receive", p.returncode == 0 and vmcore.is_file(),
            f"exit {p.returncode}: " + tail(p.stdout, 8 if p.returncode else 2))  # fmt: skip
    rate = next((m for m in map(STREAM_RATE_RE.match, serial) if m), None)
    if rate:
        info["stream_line_bytes"], info["stream_seconds"] = int(rate.group(1)), float(rate.group(3))
        info["stream_bytes_per_s"] = int(rate.group(4))
        log(f"serial stream: {rate.group(1)} bytes in {rate.group(3)} s, {rate.group(4)} bytes/s")
    res.add("stream rate reported", rate is not None, rate.group(0) if rate else "no 'minicap: stream: ...' line")
    if not vmcore.is_file():
        return False
    with open(flat, "rb") as f:
        p = run(["makedumpfile", "-R", rebuilt], stdin=f)
    size = vmcore.stat().st_size
    if p.returncode != 0 or not rebuilt.is_file():
        same, detail = False, f"makedumpfile -R exit {p.returncode}\n" + tail(p.stdout, 5)
    elif rebuilt.stat().st_size != size:
        same, detail = False, f"{rebuilt.stat().st_size} bytes, the received vmcore {size}"
    else:
        same, detail = same_bytes(vmcore, 0, rebuilt, 0, size)
        detail = f"{size} bytes identical" if same else detail
    res.add("makedumpfile -R of the flattened stream = the received vmcore", same, detail)
    rebuilt.unlink(missing_ok=True)
    return True

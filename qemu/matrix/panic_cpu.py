"""Which CPU panicked, read two ways from one capture, which must agree:
from the dump's log as makedumpfile prints it (the first `CPU: <n> PID:`
line, dump_stack()'s or show_regs()'s header, after the last oops header
`[#1]` for an oops, after the last `Kernel panic - not syncing` for the
others: only the CPU that won die_lock or panic_cpu prints those, while
the crash's own message, `kernel BUG at` say, can come from both of two
CPUs crashing at once) and from minicap's triage text (its `panic cpu:` line, from the
log's last crash record matched against the CPUs' NT_PRSTATUS notes,
capture/src/triage/panic_cpu.rs). The log's CPU must also be one the
module crashed on, except for an NMI-ended hang: QEMU's `nmi` reaches
every CPU and whichever takes it first panics."""

from __future__ import annotations

import re
from pathlib import Path

from harness.checks import Results

from . import cells as cl

# dump_stack_print_info() / show_regs_print_info(): "CPU: 1 PID: 190 Comm: insmod Tainted: ..."
STACK_HEADER_RE = re.compile(r"\bCPU: (\d+) PID: (\d+) Comm: ")
# The triage text's heading line: "panic cpu:      cpu 1: it ran pid 190, which wrote ..."
TRIAGE_PANIC_CPU_RE = re.compile(r"^panic cpu:\s+(.*)$", re.M)
TRIAGE_CPU_RE = re.compile(r"^cpu (\d+)\b")


def log_panic_cpu(dmesg: str, anchor: str) -> int | None:
    """The CPU of the first stack header after the last line holding `anchor`
    (the oops header's count or the panic line), or None."""
    lines = dmesg.splitlines()
    last = max((i for i, l in enumerate(lines) if anchor in l), default=None)
    if last is None:
        return None
    for l in lines[last:]:
        if m := STACK_HEADER_RE.search(l):
            return int(m.group(1))
    return None


def triage_panic_cpu(triage: str) -> tuple[int | None, str]:
    """The CPU the triage text's `panic cpu:` line names (None if it names none) and the line."""
    m = TRIAGE_PANIC_CPU_RE.search(triage)
    if m is None:
        return None, "no 'panic cpu:' line"
    said = m.group(1).strip()
    cpu = TRIAGE_CPU_RE.match(said)
    return (int(cpu.group(1)) if cpu else None), said


def check_panic_cpu(res: Results, out: Path, cell: cl.Cell) -> dict:
    """Adds the check; returns what each source said (for the cell's record)."""
    dmesg = out / "dmesg.txt"
    triage = out / "triage.txt"
    if not dmesg.is_file() or not triage.is_file():
        res.add("triage names the panic CPU", False, f"no {dmesg.name} or {triage.name} to compare")
        return {}
    anchor = cl.OOPS_COUNT if cell.type.oops else cl.PANIC_LINE
    in_log = log_panic_cpu(dmesg.read_text(errors="replace"), anchor)
    by_triage, said = triage_panic_cpu(triage.read_text(errors="replace"))
    expected_cpu = cell.type.needs_nmi or in_log in cell.crash_cpus
    ok = in_log is not None and by_triage == in_log and expected_cpu
    detail = f"log: CPU {in_log}, triage: {said!r}"
    if in_log is not None and not expected_cpu:
        detail += f"; the module crashed CPU(s) {', '.join(map(str, cell.crash_cpus))}"
    res.add("triage names the panic CPU", ok, detail)
    return {"log": in_log, "triage": said}

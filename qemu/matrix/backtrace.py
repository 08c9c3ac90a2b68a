"""On demand (`--crash-bt`): `crash -s <vmlinux> <vmcore>` with the vmlinux
of Debian's `linux-image-<version>-dbg` (about 280 MB, fetched once with
`apt-get download` for the guest's own version and kept in qemu/cache,
harness.kernel.ensure_debug_vmlinux), and `bt` on the saved vmcore: the
panic task's backtrace must go through the module's function for the
cell's crash type (crashpoint.c: crash_null, crash_gpf, ... or crash_now
where the crash is inline in it), as a frame (`#5 [...] crash_null at
...`) or as the RIP of an exception frame (`[exception RIP:
crash_null+13]`). For two CPUs at once `bt -a` too: every CPU the module
crashed on must be in it, the loser stopped by the crash NMI wherever
Linux held it."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from harness.checks import Results
from harness.common import HarnessError, run
from harness.kernel import GuestKernel, ensure_debug_vmlinux

from . import cells as cl

CRASH_TIMEOUT_S = 600
# crash's task heading: `PID: 190    TASK: ff2757... CPU: 1    COMMAND: "insmod"`
TASK_RE = re.compile(r"^PID:\s*(\d+)\s+TASK:\s*\S+\s+CPU:\s*(\d+)\s+COMMAND:\s*\"([^\"]*)\"")
# A frame, `#5 [ff52...] crash_null at ffffffffc0a1b00d [crashpoint]`, or an exception frame's RIP.
FRAME_RE = re.compile(r"^\s*#\d+ \[[0-9a-f]+\] (\S+) at ")
EXCEPTION_RIP_RE = re.compile(r"\[exception RIP: ([A-Za-z0-9_.]+)")
# Between the two commands' outputs, so that `bt`'s and `bt -a`'s tasks are told apart.
SEPARATOR = "matrix-bt-a-follows"


@dataclass(frozen=True)
class TaskTrace:
    pid: int
    cpu: int
    command: str
    functions: tuple[str, ...]  # frames and exception RIPs, innermost first


def parse_backtraces(text: str) -> list[TaskTrace]:
    """Each task heading of crash's `bt` output with the functions below it."""
    out: list[TaskTrace] = []
    head = None
    functions: list[str] = []
    for line in text.splitlines():
        if m := TASK_RE.match(line.strip()):
            if head:
                out.append(TaskTrace(int(head.group(1)), int(head.group(2)), head.group(3), tuple(functions)))
            head, functions = m, []
        elif head and ((m := FRAME_RE.match(line)) or (m := EXCEPTION_RIP_RE.search(line))):
            functions.append(m.group(1))
    if head:
        out.append(TaskTrace(int(head.group(1)), int(head.group(2)), head.group(3), tuple(functions)))
    return out


def goes_through(t: TaskTrace, function: str) -> bool:
    """Whether `function` is in the trace, also as a part gcc split off (`crash_now.cold`)."""
    return any(f.split(".", 1)[0] == function for f in t.functions)


def backtrace_verdict(bt: str, bt_all: str | None, cell: cl.Cell) -> tuple[bool, str]:
    """Whether `bt` (the panic task) and, for twocpu, `bt -a` (every CPU the
    module crashed on) go through the cell's crash function."""
    want = cell.type.function
    panic = parse_backtraces(bt)
    if not panic:
        return False, "no task in crash's `bt` output"
    t = panic[0]
    ok = goes_through(t, want)
    detail = f"bt: pid {t.pid} on CPU {t.cpu} ({t.command}), {len(t.functions)} frames, " + (
        f"through {want}" if ok else f"no {want} in {', '.join(t.functions) or 'nothing'}")
    if bt_all is not None:
        by_cpu = {x.cpu: x for x in parse_backtraces(bt_all)}
        for cpu in cell.crash_cpus:
            x = by_cpu.get(cpu)
            through = x is not None and goes_through(x, want)
            ok = ok and through
            detail += f"; bt -a: CPU {cpu} " + (f"(pid {x.pid}, {x.command}) " if x else "missing ") + (
                f"through {want}" if through else f"not through {want}" if x else "")
    return ok, detail


def check_backtrace(res: Results, out: Path, vmcore: Path, k: GuestKernel, cell: cl.Cell) -> None:
    name = f"crash bt through {cell.type.function}"
    try:
        vmlinux = ensure_debug_vmlinux(k)
    except HarnessError as e:
        res.add(name, False, f"no -dbg vmlinux: {e}")
        return
    two = cell.context == cl.TWOCPU
    cmds = "bt\n" + (f"echo {SEPARATOR}\nbt -a\n" if two else "") + "quit\n"
    try:
        p = run(["crash", "-s", str(vmlinux), str(vmcore)], input=cmds, timeout=CRASH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        res.add(name, False, f"crash did not finish within {CRASH_TIMEOUT_S} s")
        return
    (out / "crash-bt.txt").write_text(p.stdout)
    bt, _, bt_all = p.stdout.partition(SEPARATOR)
    ok, detail = backtrace_verdict(bt, bt_all if two else None, cell)
    res.add(name, p.returncode == 0 and ok, f"exit {p.returncode}; {detail}")

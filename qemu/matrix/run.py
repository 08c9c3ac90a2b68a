"""Runs the matrix: each cell is a capture-modern run of the harness (decoy
disk, dump disk, memory pattern, every check of that scenario; busy-virtio
for the busy variant) whose crash is the crash-point module's instead of
the sysrq, on the cell's machine variant, plus the check that the triage
text names the CPU that panicked (panic_cpu.py) and, with --crash-bt,
`crash`'s backtrace (backtrace.py); then the table, O for a dump verified
by every check, X with the first failed check, - (with its reason) where
the crash cannot happen."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import traceback
from pathlib import Path

from harness import cli
from harness import scenarios as sc
from harness.common import QEMU_DIR, HarnessError
from harness.initramfs import CrashPoint
from harness.kernel import ensure_kernel
from harness.newer_qemu import qemu_with_tcg_x2apic
from harness.runner import run_scenario

from . import cells as cl
from .backtrace import check_backtrace
from .module import ensure_module
from .nmi import NmiButton, monitor_args
from .panic_cpu import check_panic_cpu

GUEST_MODULE = "/crashpoint.ko"
# How long a crashed-but-not-yet-panicked guest may take: the soft-lockup
# watchdog needs 10 s, the rest less than one.
SETTLE_S = 60
CELL_TIMEOUT_S = 240.0


def crash_command(cell: cl.Cell) -> str:
    """The first kernel's /init lines that crash it: insmod pinned to the cell's CPU
    (twocpu: naming the other CPU too). In a busy run the harness has printed
    E2E-CRASHING already and waited for a write in flight: insmod comes at once."""
    t, c, cpu = cell.type.name, cell.context, cell.variant.crash_cpu
    other = f" other_cpu={cl.TWOCPU_OTHER}" if c == cl.TWOCPU else ""
    cpus = " and ".join(map(str, cell.crash_cpus))
    start = "" if cell.variant.busy else f"""
echo "E2E-CRASHING $(cat /proc/uptime)"
echo "CRASHPOINT {t} {c} CPU {cpus}"
"""
    return start + f"""taskset -c {cpu} insmod {GUEST_MODULE} type={t} context={c}{other}
echo "CRASHPOINT-INSMOD-RETURNED $?"
sleep {SETTLE_S}
echo "E2E-STILL-ALIVE"
poweroff -f
"""


def cell_args(base: argparse.Namespace, cell: cl.Cell, module: Path, out: Path) -> tuple[argparse.Namespace, sc.Scenario]:
    v = cell.variant
    s0 = sc.lookup(v.scenario)
    append = " ".join(a for a in (s0.options.guest_append, v.guest_append, cell.type.guest_append) if a)
    opts = dataclasses.replace(s0.options, cpu=v.cpu or s0.options.cpu, memory=v.memory or s0.options.memory,
                               iommu=v.iommu or s0.options.iommu, guest_append=append or None)  # fmt: skip
    s = dataclasses.replace(s0, name=cell.name, about=f"crash matrix: {cell.name}", options=opts,
                            guest_kernel=v.kernel, in_suite=False)  # fmt: skip
    a = cli.resolve(base, s)
    a.smp = v.smp
    a.out = str(out)
    a.json = None
    a.crash_point = CrashPoint(((GUEST_MODULE, module),), crash_command(cell))
    a.crash_lines = cell.dmesg_lines()
    # The crash's time is the module's announcement, printed just before it: a hang's panic
    # comes seconds later, and one in NMI context never reaches the console.
    a.crash_markers = tuple(cell.announcements())
    if cell.type.needs_nmi:
        a.qemu_extra = list(a.qemu_extra) + monitor_args(out / "monitor.sock")
    return a, s


def check_minicap_console(res, serial_log: Path, v: cl.Variant) -> None:
    """The variant's line in minicap's console output (Variant.minicap_console), if it has one."""
    if not v.minicap_console:
        return
    text = serial_log.read_text(errors="replace") if serial_log.is_file() else ""
    m = re.search(v.minicap_console, text)
    res.add(f"minicap's console: /{v.minicap_console}/", m is not None,
            m.group(0) if m else f"no such line in {serial_log.name}")  # fmt: skip


def short_reason(failed) -> str:
    """The first failed check's name and the first line of its detail."""
    c = failed[0]
    first = (c.detail or "").splitlines()[0] if c.detail else ""
    return f"{c.name}: {first}"[:160]


def run_cell(base: argparse.Namespace, cell: cl.Cell, out_base: Path, crash_bt: bool = False) -> dict:
    out = out_base / cell.name
    out.mkdir(parents=True, exist_ok=True)
    (out / "serial.log").unlink(missing_ok=True)
    started = time.monotonic()
    record = {"cell": cell.name, "type": cell.type.name, "context": cell.context, "variant": cell.variant.name}
    try:
        k = ensure_kernel(base.kernel_version, cell.variant.kernel)
        module = ensure_module(k)
        a, s = cell_args(base, cell, module, out)
        if cell.variant.needs_tcg_x2apic:
            a.qemu = qemu_with_tcg_x2apic(a.qemu)
        keep = a.keep
        a.keep = a.keep or crash_bt  # crash reads the vmcore after the harness, which deletes it unless kept
        if cell.type.needs_nmi:
            marker = cell.announcements()[0].encode()
            with NmiButton(out / "serial.log", out / "monitor.sock", marker) as button:
                res, info = run_scenario(a, s)
            info["nmi_sent"] = button.sent is not None
            if button.error:
                res.add("NMI from the monitor", False, button.error)
        else:
            res, info = run_scenario(a, s)
        check_minicap_console(res, out / "serial.log", cell.variant)
        if (out / "triage.txt").is_file():
            record["panic_cpu"] = check_panic_cpu(res, out, cell)
        vmcore = out / "vmcore"
        if crash_bt:
            if vmcore.is_file():
                check_backtrace(res, out, vmcore, k, cell)
            else:
                res.add(f"crash bt through {cell.type.function}", False, "no vmcore")
            if res.ok and not keep:
                for d in info.get("disks", []):
                    (out / d["image"]).unlink(missing_ok=True)
                vmcore.unlink(missing_ok=True)
        failed = [c for c in res.checks if not c.ok]
        record.update(ok=res.ok, reason=short_reason(failed) if failed else "",
                      checks=[c.__dict__ for c in res.checks], times=info.get("times", {}),
                      kernel=info.get("kernel"))  # fmt: skip
    except HarnessError as e:
        record.update(ok=False, reason=f"could not run: {e}"[:300])
    except Exception as e:  # one broken cell must not hide the others
        traceback.print_exc()
        record.update(ok=False, reason=f"harness error: {e!r}"[:300])
    record["wall_s"] = round(time.monotonic() - started, 1)
    return record


def table(records: list[dict], variant: cl.Variant) -> list[str]:
    """One Markdown table per variant: crash types down, contexts across; X and -
    with numbered notes (the first failed check, the reason it cannot happen)."""
    by = {(r["type"], r["context"]): r for r in records if r["variant"] == variant.name}
    if not by:
        return []
    notes: list[str] = []
    reasons: list[str] = []  # why a crash cannot happen, one note for each reason
    lines = [f"**{variant.name}**: {variant.about}", "",
             "| crash type | " + " | ".join(cl.CONTEXTS.values()) + " |",
             "|---|" + "---|" * len(cl.CONTEXTS)]  # fmt: skip
    for t in cl.TYPES:
        row = []
        for c in cl.CONTEXTS:
            r = by.get((t.name, c))
            why = cl.impossible(t, c, variant)
            if why is not None:
                if why not in reasons:
                    reasons.append(why)
                row.append(f"-{reasons.index(why) + 1}")
            elif r is None:
                row.append(" ")
            elif r["ok"]:
                row.append("O")
            else:
                notes.append(f"{t.name}/{c}: {r['reason']}")
                row.append(f"X{len(notes)}")
        lines.append(f"| {t.label} | " + " | ".join(row) + " |")
    lines += [""] + [f"X{i + 1}: {n}" for i, n in enumerate(notes)]
    lines += [f"-{i + 1}: {n}" for i, n in enumerate(reasons)]
    return lines


# Options whose values are this machine's paths (xtask passes them): left out of the table's command.
PATH_OPTIONS = ("--minicap", "--tool", "--pattern", "--purgatory", "--out")


def shown_command(argv: list[str]) -> str:
    """The command as the table shows it: without the binaries' and output paths."""
    words, skip = [], False
    for w in argv:
        if skip:
            skip = False
        elif w in PATH_OPTIONS:
            skip = True
        elif not w.split("=", 1)[0] in PATH_OPTIONS:
            words.append(w)
    return " ".join(["python3 qemu/matrix.py"] + words)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description="The crash matrix: crash types x contexts x machine variants, each "
                                             "captured by minicap and verified (qemu/README.md). Any other option "
                                             "is qemu/e2e.py's (--minicap, --tool, --pattern, --kernel-version, "
                                             "--keep, -v, --timeout).")  # fmt: skip
    ap.add_argument("--full", action="store_true", help="every variant (default: the base variant, 2 CPUs)")
    ap.add_argument("--fast", action="store_true", help=f"only the fast subset {cl.FAST}")
    ap.add_argument("--variant", action="append", choices=list(cl.VARIANT_BY_NAME), help="these variants")
    ap.add_argument("--type", action="append", choices=list(cl.TYPE_BY_NAME), help="only these crash types")
    ap.add_argument("--context", action="append", choices=list(cl.CONTEXTS), help="only these contexts")
    ap.add_argument("--out", default=str(QEMU_DIR / "out" / "matrix"))
    ap.add_argument("--list", action="store_true", help="list the cells and exit")
    ap.add_argument("--crash-bt", action="store_true",
                    help="also `crash` with the -dbg vmlinux (about 280 MB once): bt (bt -a for twocpu) must "
                         "go through the crash type's function")  # fmt: skip
    a, rest = ap.parse_known_args(argv)
    # The harness's own options (--minicap, --tool, --pattern, --kernel-version, --keep, -v, ...) pass through.
    a.harness = cli.parse_args(rest + ["--timeout", str(CELL_TIMEOUT_S)] if "--timeout" not in rest else rest)
    return a


def main(argv=None) -> int:
    a = parse_args(argv)
    variants = [cl.VARIANT_BY_NAME[n] for n in a.variant] if a.variant else (cl.VARIANTS if a.full else (cl.BASE,))
    todo = cl.cells(variants, a.type, a.context, a.fast)
    if a.list:
        print("\n".join(c.name for c in todo))
        return 0
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    command = shown_command(argv if argv is not None else sys.argv[1:])
    records = []
    started = time.monotonic()
    for i, cell in enumerate(todo):
        print(f"===== matrix {i + 1}/{len(todo)}: {cell.name} =====", flush=True)
        r = run_cell(a.harness, cell, out, a.crash_bt)
        records.append(r)
        print(f"matrix: {cell.name}: {'O' if r['ok'] else 'X ' + r['reason']} ({r['wall_s']} s)", flush=True)
        (out / "matrix.json").write_text(json.dumps({"command": command, "records": records}, indent=2) + "\n")
    total = time.monotonic() - started
    md = [f"{time.strftime('%Y-%m-%d', time.gmtime())}, `{command.strip()}`: {len(records)} cells, "
          f"{sum(r['ok'] for r in records)} O, {sum(not r['ok'] for r in records)} X, {total / 60:.1f} min", ""]  # fmt: skip
    for v in variants:
        t = table(records, v)
        if t:
            md += t + [""]
    (out / "matrix.md").write_text("\n".join(md))
    print("\n===== crash matrix =====")
    print("\n".join(md))
    return 0 if all(r["ok"] for r in records) else 1

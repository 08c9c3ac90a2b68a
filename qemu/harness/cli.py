"""The command line: run one scenario by name (default capture-modern), or
the whole suite with --all; results as JSON, a summary table, timings."""

from __future__ import annotations

import argparse
import copy
import json
import shlex
import sys
import traceback
from pathlib import Path

from . import scenarios as sc
from .checks import Results
from .common import MIB, QEMU_DIR, REPO, HarnessError, parse_size
from .runner import run_scenario

DESCRIPTION = """\
End-to-end test of minicap: crash a real Linux kernel in QEMU, let the
minicap capture kernel write the dump, and check the dump with real tools.
Python 3.11 standard library only; see qemu/README.md.

Runs one scenario (--scenario NAME, default capture-modern) or every
scenario of the suite (--all), as listed in qemu/harness/scenarios.py
(--list shows them). The options below that a scenario also sets (--virtio,
--cpu, --memory, --crashkernel, --iommu, --guest-append, --blk-props,
--nvme-props, --disk-size, --disk-slot) override the scenario's value when given.
"""


def parse_args(argv=None) -> argparse.Namespace:
    """The options as given; those a scenario can set stay None unless given
    (resolve() fills them in)."""
    names = sorted(set(sc.BY_NAME) | set(sc.ALIASES))
    ap = argparse.ArgumentParser(description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minicap", default=str(REPO / "target/minicap.elf"), help="capture kernel ELF")
    ap.add_argument("--bzimage", default=str(REPO / "target/minicap.bzImage"),
                    help="capture kernel bzImage (the rows that load it: load-kexec-*, load-minicap-file, ...)")
    ap.add_argument("--tool", default=str(REPO / "target/release/minicap"), help="host tool `minicap`")
    ap.add_argument("--pattern", default=str(REPO / "target/release/minicap-pattern"), help="minicap-pattern binary")
    ap.add_argument("--purgatory", default=str(REPO / "target/purgatory.elf"),
                    help="minicap's purgatory (scenarios loaded with `minicap load`)")
    ap.add_argument("--scenario", choices=names, default="capture-modern", metavar="NAME",
                    help=f"the scenario to run (capture = capture-modern): {', '.join(names)}")
    ap.add_argument("--all", action="store_true",
                    help="run every suite scenario in order; --out is then the base directory (default qemu/out) "
                         "of <name>/, <name>.json and summary.json; exit 0 only if all passed")
    ap.add_argument("--list", action="store_true", help="list the scenarios and exit")
    ap.add_argument("--virtio", choices=sc.VIRTIO_MODES, default=None, help="default modern")
    ap.add_argument("--cpu", default=None, help="QEMU -cpu (default max, which sets LA57; qemu64 does not)")
    ap.add_argument("--crashkernel", default=None, help="crashkernel= size (default 32M; 256M for linux-kdump)")
    ap.add_argument("--memory", type=int, default=None, help="guest RAM in MiB (default 1024)")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--disk-size", default=None,
                    help="dump disk size (default: 2G, or RAM + 64M rounded up to a GiB if larger; small-disk: 4M; "
                         "unformatted-disk: 16M; wrong-id, bad-elfcorehdr, ambiguous: 64M)")
    ap.add_argument("--no-decoy", action="store_true",
                    help="leave out the 64 MiB unformatted decoy disk (capture and device-error scenarios)")
    ap.add_argument("--pattern-mib", type=int, default=64)
    ap.add_argument("--fail-at-percent", type=float, default=45.0,
                    help="device-error: inject the write error this far into the dump area, in percent of the "
                         "guest RAM (about the vmcore's size); default 45, between the 40 %% and 50 %% checkpoints")
    ap.add_argument("--kernel-version", default=None, help="e.g. 6.1.0-56-cloud-amd64 (default: resolve via apt)")
    ap.add_argument("--with-crash", action="store_true", help="also download the -dbg vmlinux and run crash")
    ap.add_argument("--keep", action="store_true", help="keep the disk images and vmcore even when everything passed")
    ap.add_argument("--out", default=None, help="output directory (default qemu/out/<scenario>)")
    ap.add_argument("--json", default=None, help="write results as JSON to this file")
    ap.add_argument("--timeout", type=float, default=600.0, help="hard limit for the QEMU run, seconds")
    ap.add_argument("--exit-grace", type=float, default=60.0, help="seconds QEMU may take to exit after RESULT")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the serial console with timestamps")
    ap.add_argument("--demo", action="store_true", help="like --verbose")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--kexec-args", default="--args-linux", help="load mode passed to kexec -p for minicap")
    ap.add_argument("--blk-props", default=None,
                    help="more virtio-blk-pci properties, e.g. logical_block_size=4096,physical_block_size=4096")
    ap.add_argument("--nvme-props", default=None,
                    help="more QEMU nvme properties for the scenario's NVMe disks, e.g. "
                         "logical_block_size=4096,physical_block_size=4096")  # fmt: skip
    ap.add_argument("--iommu", default=None,
                    help="an IOMMU device, e.g. intel-iommu,intremap=off: added before the disks, "
                         "virtio-blk ones get iommu_platform=on; give the guest intel_iommu=on iommu=nopt "
                         "with --guest-append so that it really translates")  # fmt: skip
    ap.add_argument("--append-extra", default="", help="more minicap options for the capture command line")
    ap.add_argument("--disk-slot", type=lambda v: int(v, 0), default=None,
                    help="PCI slot of the first virtio-blk or NVMe disk, the next ones following (default 1; "
                         "amd-iommu's own PCI function takes the first free slot, so its scenarios move the disks)")
    ap.add_argument("--guest-append", default=None, help="more options for the crashing kernel's command line")
    ap.add_argument("--qemu-debug", action="store_true",
                    help="QEMU -d guest_errors,cpu_reset,unimp -D <out>/qemu-debug.log (register dump at a triple fault)")
    ap.add_argument("--qemu-extra", default="", help="more QEMU arguments (shell-split)")
    ap.add_argument("--seed", default=None, help="pattern seed, hex (default random)")
    ap.add_argument("--recheck", action="store_true",
                    help="no QEMU run: redo the vmcore checks on <out>/vmcore and <out>/serial.log (from --keep)")
    a = ap.parse_args(argv)
    if a.all and a.recheck:
        ap.error("--recheck works on one scenario's kept output, not with --all")
    return a


def resolve(args: argparse.Namespace, s: sc.Scenario) -> argparse.Namespace:
    """A copy of `args` for running `s`: each scenario option not given on
    the command line takes the scenario's value, else the default."""
    r = copy.copy(args)
    r.scenario = s.name
    for name in sc.option_names():
        if getattr(r, name) is None:
            v = getattr(s.options, name)
            setattr(r, name, v if v is not None else getattr(sc.DEFAULTS, name))
    if r.disk_size is None:
        r.disk_size = f"{max(2, -(-(r.memory + 64) // 1024))}G"
    parse_size(r.disk_size)  # a bad size is an error before anything runs
    r.qemu_extra = shlex.split(r.qemu_extra) if isinstance(r.qemu_extra, str) else r.qemu_extra
    r.verbose = r.verbose or r.demo
    return r


def print_summary(res: Results, info: dict) -> None:
    t = info.get("times", {})
    print()
    print(f"=== minicap e2e: scenario {info['scenario']}, virtio {info['virtio']}, cpu {info['cpu']}, "
          f"{info['memory_mib']} MiB, {info['smp']} CPUs, crashkernel={info['crashkernel']}, kernel {info.get('kernel')}")  # fmt: skip
    w = max([len(c.name) for c in res.checks] + [10])
    for c in res.checks:
        print(f"  {'PASS' if c.ok else 'FAIL'}  {c.name:<{w}}  {(c.detail or '').splitlines()[0] if c.detail else ''}")
    labels = [
        ("boot_to_pattern_ready_s", "boot -> pattern ready"),
        ("boot_to_crash_s", "boot -> crash"),
        ("crash_to_first_minicap_line_s", "crash -> first minicap line"),
        ("crash_to_result_s", "crash -> dump complete (RESULT)"),
        ("crash_to_qemu_exit_s", "crash -> QEMU exit"),
        ("qemu_total_s", "QEMU total"),
    ]
    for key, label in labels:
        if key in t:
            print(f"  {label:<34} {t[key]:8.3f} s")
    if "vmcore_bytes" in info and "crash_to_result_s" in t:
        mb = info["vmcore_bytes"] / MIB
        print(f"  {'vmcore size':<34} {mb:8.1f} MiB ({mb / t['crash_to_result_s']:.1f} MiB/s from crash to RESULT)")
    print(f"  => {'ALL PASSED' if res.ok else 'FAILED'}   (output in {info.get('out')})")


def run_one(args: argparse.Namespace, name: str) -> int:
    """Runs scenario `name`; exit status 0 all checks passed, 1 a check
    failed, 2 it could not run."""
    s = sc.lookup(name)
    try:
        r = resolve(args, s)
        res, info = run_scenario(r, s)
    except HarnessError as e:
        print(f"e2e: ERROR: {e}", file=sys.stderr)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps({"scenario": s.name, "ok": False, "error": str(e)}, indent=2))
        return 2
    print_summary(res, info)
    if args.json:
        info["ok"] = res.ok
        info["checks"] = [c.__dict__ for c in res.checks]
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")
    return 0 if res.ok else 1


def timing_table(runs: dict) -> list[str]:
    """One line per run: boot -> crash, crash -> RESULT, crash -> exit."""
    lines = []
    for name, r in runs.items():
        t = r.get("times", {})

        def f(k):
            return f"{t[k]:7.3f} s" if k in t else "      -  "

        lines.append(f"  {name:<17} boot->crash {f('boot_to_crash_s')}  crash->RESULT {f('crash_to_result_s')}"
                     f"  crash->exit {f('crash_to_qemu_exit_s')}")  # fmt: skip
    return lines


def run_suite(args: argparse.Namespace) -> int:
    """Every suite scenario in table order, each into <out>/<name>/ and
    <out>/<name>.json; then summary.json, a timing table, one PASS/FAIL line
    per run and, last, `e2e: N passed, M failed`. 0 only if all passed."""
    for n in ("minicap", "tool", "pattern"):
        if not Path(getattr(args, n)).is_file():
            print(f"run-all: {getattr(args, n)} does not exist; build first:\n"
                  "  cargo xtask build && cargo build --release -p minicap -p minicap-pattern", file=sys.stderr)
            return 2
    base = Path(args.out) if args.out else QEMU_DIR / "out"
    base.mkdir(parents=True, exist_ok=True)
    codes = {}
    for name in sc.SUITE:
        print(f"===== {name} =====", flush=True)
        one = copy.copy(args)
        one.out, one.json = str(base / name), str(base / f"{name}.json")
        Path(one.json).unlink(missing_ok=True)
        try:
            codes[name] = run_one(one, name)
        except Exception:  # one broken run must not hide the others' results
            traceback.print_exc()
            codes[name] = 2
    runs = {}
    for name in sc.SUITE:
        p = base / f"{name}.json"
        runs[name] = json.loads(p.read_text()) if p.exists() else {"ok": False, "error": "no result file"}
    (base / "summary.json").write_text(json.dumps(runs, indent=2) + "\n")
    print("\n===== timings =====")
    print("\n".join(timing_table(runs)))
    print("\n===== summary =====")
    for name, rc in codes.items():
        print(f"  PASS  {name}" if rc == 0 else f"  FAIL  {name} (exit {rc})")
    failed = [n for n, rc in codes.items() if rc != 0]
    if failed:
        print(f"run-all: FAILED: {' '.join(failed)}")
    print(f"e2e: {len(codes) - len(failed)} passed, {len(failed)} failed", flush=True)
    return 1 if failed else 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.list:
        width = max(len(s.name) for s in sc.SCENARIOS)
        for s in sc.SCENARIOS:
            print(f"{s.name:<{width}} {'suite' if s.in_suite else '     '}  {s.about}")
        return 0
    if args.all:
        return run_suite(args)
    return run_one(args, args.scenario)


if __name__ == "__main__":
    sys.exit(main())

"""`cargo xtask bench` (python3 qemu/benchmark.py): the timed runs of every
mode at every RAM size, the smallest working crashkernel=, the image sizes
and the host's raw write speed; prints the Markdown report and writes it
with the JSON record to qemu/out/bench/."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import shlex
import shutil
import sys
import traceback
from pathlib import Path

from harness.common import QEMU_DIR, REPO, HarnessError, log, parse_size
from harness.kernel import ensure_kernel
from harness.qemu import check_qemu_version

from . import modes as md
from .machine import host_write_speed, machine_info
from .report import markdown
from .run import capture_run, crash_region_image_bytes
from .stats import smallest_working

DESCRIPTION = """\
Benchmark minicap against stock kdump on the same first kernel (the Debian
cloud kernel of the e2e harness), the same QEMU command line and the same
crash (64 MiB of planted pattern, sysrq-c). kdump: the same kernel as
capture kernel, a busybox initramfs that loads the virtio modules and
writes /proc/vmcore to the dump disk with dd, makedumpfile -l -d 31 or
makedumpfile -c -d 31. minicap: each variant in its table. Not part of
`cargo xtask test`. See README.md, "Benchmark against kdump".
"""


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"want comma-separated MiB, e.g. 512,2048: {text!r}") from None


def name_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="cargo xtask bench", description=DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--sizes", type=int_list, default=[1024, 2048, 4096], help="guest RAM of the timed runs, MiB")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per mode and RAM size (0: none)")
    ap.add_argument("--modes", type=name_list, default=None,
                    help=f"comma-separated modes (default all: {', '.join(m.name for m in md.MODES)})")
    ap.add_argument("--minicap-append", default="", help="more minicap.* options for every minicap variant")
    ap.add_argument("--minicap-variant", action="append", default=[], metavar="NAME=OPTIONS",
                    help="one more minicap variant with these options (repeatable)")
    ap.add_argument("--crashkernel", default="256M",
                    help="crashkernel= of every timed run, the same for all modes (default 256M, enough for kdump)")
    ap.add_argument("--no-crashkernel-search", action="store_true", help="skip the search for the smallest crashkernel=")
    ap.add_argument("--search-sizes", type=int_list, default=[512, 2048, 8192], help="guest RAM of the search, MiB")
    ap.add_argument("--search-modes", type=name_list, default=None,
                    help="modes to search (default: those of --modes among kdump-mdf-c and the minicap variants, "
                         "else all of --modes)")
    ap.add_argument("--no-host-write", action="store_true", help="skip the host's dd write-speed reference")
    ap.add_argument("--host-write-mib", type=int, default=1024, help="MiB the host's dd writes (default 1024)")
    ap.add_argument("--out", default=str(QEMU_DIR / "out" / "bench"), help="output directory")
    ap.add_argument("--keep", action="store_true", help="keep every run's disk image and vmcore")
    ap.add_argument("--timeout", type=float, default=None, help="per QEMU run, seconds (default 180 + RAM MiB / 4)")
    ap.add_argument("--smp", type=int, default=2)
    ap.add_argument("--cpu", default="max")
    ap.add_argument("--virtio", choices=("modern", "legacy", "transitional"), default="modern")
    ap.add_argument("--pattern-mib", type=int, default=64)
    ap.add_argument("--seed", default=None, help="pattern seed, hex (default random per run)")
    ap.add_argument("--kernel-version", default=None, help="guest kernel, e.g. 6.1.0-57-cloud-amd64")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--kexec-args", default="--args-linux", help="load mode passed to kexec -p for minicap")
    ap.add_argument("--minicap", default=str(REPO / "target/minicap.elf"))
    ap.add_argument("--tool", default=str(REPO / "target/release/minicap"))
    ap.add_argument("--pattern", default=str(REPO / "target/release/minicap-pattern"))
    ap.add_argument("--list-modes", action="store_true", help="list the modes and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="echo the serial consoles with timestamps")
    a = ap.parse_args(argv)
    if a.runs < 0:
        ap.error("--runs must be 0 (only the crashkernel= search) or more")
    parse_size(a.crashkernel)
    return a


def mode_table(args) -> tuple[md.Mode, ...]:
    """The built-in modes plus the --minicap-variant ones."""
    extra = tuple(md.parse_variant(v) for v in args.minicap_variant)
    clash = {m.name for m in extra} & {m.name for m in md.MODES}
    if clash:
        raise ValueError(f"--minicap-variant names {sorted(clash)} are built-in modes")
    return md.MODES + extra


def command_line(argv: list[str]) -> str:
    """The command as typed: `cargo xtask bench ...` (xtask passes it in
    MINICAP_BENCH_COMMAND, without the binary paths it adds), else this
    script's own command line."""
    return os.environ.get("MINICAP_BENCH_COMMAND") or "python3 qemu/benchmark.py" + "".join(
        f" {shlex.quote(a)}" for a in argv)


def run_seed(args) -> int:
    return int(args.seed, 16) if args.seed else random.getrandbits(64)


def run_dir(out: Path, m: md.Mode, memory_mib: int, index: int) -> Path:
    return out / f"{m.name}-{memory_mib}M-run{index + 1}"


def write_report(out: Path, rep: dict) -> str:
    text = markdown(rep)
    (out / "bench.md").write_text(text)
    (out / "bench.json").write_text(json.dumps(rep, indent=2, default=lambda o: dataclasses.asdict(o)) + "\n")
    return text


def benchmark(args, argv: list[str]) -> int:
    table = mode_table(args)
    selected = md.select(args.modes, table)
    searched = md.select(args.search_modes, table) if args.search_modes else md.default_search(selected)
    needed = ["pattern"] + (["minicap", "tool"] if any(m.kind == md.MINICAP for m in selected + searched) else [])
    for n in needed:
        if not Path(getattr(args, n)).is_file():
            raise HarnessError(f"--{n} {getattr(args, n)} does not exist (build first: cargo xtask build)")
    for t in ("kexec", "busybox", "makedumpfile", "dd", args.qemu):
        if not shutil.which(t):
            raise HarnessError(f"{t} not found in PATH (qemu/install-deps.sh installs what the harness needs)")
    check_qemu_version(args.qemu)
    k = ensure_kernel(args.kernel_version)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rep: dict = {
        "command": command_line(argv),
        "machine": machine_info(args.qemu),
        "setup": {"kernel": k.version, "cpu": args.cpu, "smp": args.smp, "virtio": args.virtio,
                  "crashkernel": args.crashkernel, "pattern_mib": args.pattern_mib, "sizes": args.sizes,
                  "runs": args.runs, "minicap_append": args.minicap_append},  # fmt: skip
        "modes": [],
        "host_write": None,
        "runs": [],
        "search": [],
    }
    for m in dict.fromkeys(selected + searched):
        rep["modes"].append({**dataclasses.asdict(m), "image_bytes": crash_region_image_bytes(args, k, m)})
    if not args.no_host_write:
        # Onto the file the first run's dump disk will be (created afresh by that run).
        first = run_dir(out, selected[0], args.sizes[0], 0) if args.runs and args.sizes else out
        first.mkdir(parents=True, exist_ok=True)
        rep["host_write"] = host_write_speed(first / "dump.img", args.host_write_mib)
        log(f"bench: host raw write {rep['host_write']['mib_per_s']:.0f} MiB/s ({rep['host_write']['command']})")

    # Timed runs: modes interleaved within each round, so that a slow
    # stretch of a shared machine hits all of them alike.
    for mem in args.sizes:
        for i in range(args.runs):
            for m in selected:
                r = capture_run(args, k, m, mem, args.crashkernel, i, run_dir(out, m, mem, i), run_seed(args))
                rep["runs"].append(r.as_dict())
                write_report(out, rep)

    if not args.no_crashkernel_search:
        for mem in args.search_sizes:
            for m in searched:
                candidates = md.search_candidates(m.kind, mem)

                def works(mib: int, m=m, mem=mem) -> bool:
                    r = capture_run(args, k, m, mem, f"{mib}M", -1, out / f"search-{m.name}-{mem}M-{mib}M",
                                    run_seed(args))  # fmt: skip
                    rep.setdefault("search_runs", []).append(r.as_dict())
                    return r.ok

                found = smallest_working(candidates, works)
                rep["search"].append({"memory_mib": mem, "mode": m.name, "smallest_mib": found.smallest,
                                      "probes": found.probes,
                                      "range": [candidates[0], candidates[-1]] if candidates else None})  # fmt: skip
                write_report(out, rep)

    text = write_report(out, rep)
    print()
    print(text)
    log(f"bench: wrote {out / 'bench.md'} and {out / 'bench.json'}")
    bad = [r for r in rep["runs"] if not r["ok"]]
    return 1 if bad else 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    try:
        table = mode_table(args)
        if args.list_modes:
            for m in table:
                print(f"{m.name:<16} {m.about}")
            return 0
        md.select(args.modes, table)
        return benchmark(args, argv)
    except (HarnessError, ValueError) as e:
        print(f"bench: ERROR: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:
        traceback.print_exc()
        return 2

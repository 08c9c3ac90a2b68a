"""The benchmark's report: the runs summed up per RAM size and mode, the
ratios minicap / kdump, as JSON (the whole record) and as Markdown tables."""

from __future__ import annotations

from collections import defaultdict

from .modes import KDUMP, MINICAP
from .stats import Stats, ratio, summarize

MIB = 1 << 20


def summarize_runs(runs: list[dict]) -> dict[tuple[int, str], dict]:
    """Per (RAM MiB, mode) over the timed runs (index >= 0) that worked:
    Stats of crash -> complete and crash -> first write, the median dump
    size, and how many runs worked of how many."""
    groups: dict[tuple[int, str], list[dict]] = defaultdict(list)
    for r in runs:
        if r["index"] >= 0:
            groups[(r["memory_mib"], r["mode"])].append(r)
    out = {}
    for key, rs in groups.items():
        good = [r for r in rs if r["ok"]]
        sizes = summarize([r["dump_bytes"] for r in good if r["dump_bytes"] is not None])
        out[key] = {
            "runs": len(rs),
            "ok": len(good),
            "complete": summarize([r["crash_to_complete_s"] for r in good]),
            "first_write": summarize([r["crash_to_first_write_s"] for r in good
                                      if r["crash_to_first_write_s"] is not None]),  # fmt: skip
            "dump_bytes": sizes.median if sizes else None,
        }
    return out


def pairs(modes: list[dict]) -> list[tuple[str, str]]:
    """(minicap variant, kdump mode) for every pair among the modes."""
    return [(m["name"], k["name"]) for m in modes if m["kind"] == MINICAP for k in modes if k["kind"] == KDUMP]


def fmt_s(s: Stats | None) -> str:
    if s is None:
        return "–"
    if s.n == 1:
        return f"{s.median:.2f} s"
    return f"{s.median:.2f} s ({s.min:.2f} – {s.max:.2f})"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "–"
    if n >= 10 * MIB:
        return f"{n / MIB:.1f} MiB"
    return f"{n / 1024:.0f} KiB"


def fmt_ratio(x: float | None) -> str:
    """Two decimals; three significant digits below 0.1 (0.025, 0.00123)."""
    if x is None:
        return "–"
    return f"{x:.2f}" if x >= 0.1 else f"{x:.3g}"


def table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def markdown(rep: dict) -> str:
    """The whole report as Markdown: the setup, the timed runs, the ratios,
    the smallest crashkernel= and the image sizes."""
    m, s = rep["machine"], rep["setup"]
    modes = rep["modes"]
    lines = [
        "# minicap against kdump",
        "",
        f"Measured {m['date']} on {m['nproc']} CPU(s), {m['cpu_model']}, {m['qemu']} (TCG), host kernel "
        f"{m['kernel']}. Guest: Debian `{s['kernel']}`, q35, `-cpu {s['cpu']}`, `-smp {s['smp']}`, virtio-blk "
        f"{s['virtio']}, {s['pattern_mib']} MiB of planted pattern, crash by `echo c > /proc/sysrq-trigger`; "
        f"every timed run with `crashkernel={s['crashkernel']}`. Times on the host from the serial console, "
        "from the `sysrq: Trigger a crash` line.",
        "",
        f"Command: `{rep['command']}`",
        "",
        "| mode | what |",
        "|---|---|",
    ]
    lines += [f"| {x['name']} | {x['about']} |" for x in modes]
    hw = rep.get("host_write")
    if hw:
        lines += ["", f"Host raw write speed to the dump image's file: **{hw['mib_per_s']:.0f} MiB/s** "
                      f"(`{hw['command']}`: {hw['bytes'] / MIB:.0f} MiB in {hw['seconds']:.2f} s)."]  # fmt: skip

    summary = summarize_runs(rep["runs"])
    sizes = sorted({k[0] for k in summary})
    if summary:
        lines += ["", "## Crash → dump complete", "",
                  "Median (min – max) over the runs that worked. *first write*: to the line before the first "
                  "byte goes to the disk (minicap's `target:` line; the kdump initramfs's marker before "
                  "dd/makedumpfile starts). *complete*: to minicap's `RESULT:` line, or the kdump marker "
                  "printed after `sync`.", ""]  # fmt: skip
        rows = []
        for mem in sizes:
            for x in modes:
                e = summary.get((mem, x["name"]))
                if e is None:
                    continue
                c = e["complete"]
                speed = (f"{e['dump_bytes'] / MIB / c.median:.1f}" if c and e["dump_bytes"] and c.median > 0
                         else "–")  # fmt: skip
                rows.append([f"{mem} MiB", x["name"], f"{e['ok']}/{e['runs']}", fmt_s(c), fmt_s(e["first_write"]),
                             fmt_bytes(e["dump_bytes"]), speed])  # fmt: skip
        lines += table(["RAM", "mode", "ok", "crash → complete", "crash → first write", "dump size",
                        "dump MiB/s"], rows)  # fmt: skip
        rows = []
        for mem in sizes:
            for mc, kd in pairs(modes):
                a, b = summary.get((mem, mc)), summary.get((mem, kd))
                if not a or not b:
                    continue
                t = ratio(a["complete"].median if a["complete"] else None,
                          b["complete"].median if b["complete"] else None)  # fmt: skip
                rows.append([f"{mem} MiB", mc, kd, fmt_ratio(t), fmt_ratio(ratio(a["dump_bytes"], b["dump_bytes"]))])
        if rows:
            lines += ["", "### minicap / kdump", "",
                      "Below 1: minicap is faster (time) or writes less (size).", ""]  # fmt: skip
            lines += table(["RAM", "minicap", "kdump", "crash → complete", "dump size"], rows)

    search = rep.get("search") or []
    if search:
        lines += ["", "## Smallest working `crashkernel=`", "",
                  "A probe works when the dump completes and `makedumpfile --dump-dmesg` reads it. The "
                  "largest size first, halved while it fails (too large to reserve), then a binary search "
                  "below the largest that worked (kdump in 4 MiB steps, minicap in 1 MiB steps), assuming "
                  "that more memory never hurts there.", ""]  # fmt: skip
        rows = []
        for e in search:
            found = f"{e['smallest_mib']}M" if e["smallest_mib"] is not None else f"none up to {e['range'][1]}M"
            probes = ", ".join(f"{mib}M {'ok' if ok else 'fail'}" for mib, ok in e["probes"])
            rows.append([f"{e['memory_mib']} MiB", e["mode"], found, probes])
        lines += table(["RAM", "mode", "smallest", "probes"], rows)
        by = {(e["memory_mib"], e["mode"]): e["smallest_mib"] for e in search}
        rows = [[f"{mem} MiB", mc, kd, fmt_ratio(ratio(by[(mem, mc)], by[(mem, kd)]))]
                for mem in sorted({e["memory_mib"] for e in search}) for mc, kd in pairs(modes)
                if (mem, mc) in by and (mem, kd) in by]  # fmt: skip
        if rows:
            lines += ["", "minicap / kdump:", ""] + table(["RAM", "minicap", "kdump", "crashkernel= ratio"], rows)

    images = {x["name"]: x.get("image_bytes") for x in modes}
    if any(v is not None for v in images.values()):
        lines += ["", "## Image placed in the crash region", "",
                  "minicap: `minicap.elf`'s PT_LOAD memsz; kdump: the capture `vmlinuz` plus its initramfs "
                  "(busybox, the virtio modules, makedumpfile and its libraries where used).", ""]  # fmt: skip
        rows = [[x["name"], fmt_bytes(images[x["name"]])] for x in modes]
        lines += table(["mode", "image"], rows)
        rows = [[mc, kd, fmt_ratio(ratio(images[mc], images[kd]))] for mc, kd in pairs(modes)]
        if rows:
            lines += ["", "minicap / kdump:", ""] + table(["minicap", "kdump", "image ratio"], rows)
    failed = [r for r in rep["runs"] if not r["ok"] and r["index"] >= 0]
    if failed:
        lines += ["", "## Runs that did not work", ""]
        lines += [f"- {r['mode']} {r['memory_mib']} MiB run {r['index'] + 1}: {r['detail']}" for r in failed]
    return "\n".join(lines) + "\n"

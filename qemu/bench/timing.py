"""Times read from the serial console (host timestamps of each line): the
crash (`sysrq: Trigger a crash`), the line just before the first byte of
the dump is written, and the line that says the dump is complete."""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.console import CRASH_MARKERS, KDUMP_RESULT_RE, RESULT_MARKER, parse_result_line
from harness.initramfs import KDUMP_WRITE_START

from .modes import KDUMP, MINICAP

# The line each capture kernel prints just before its first write to the
# dump disk: minicap names its target and then writes the header and the
# vmcore (kernel/src/capture.rs); the kdump initramfs prints its marker
# right before it starts dd or makedumpfile.
FIRST_WRITE_MARKER = {MINICAP: "minicap: target: ", KDUMP: KDUMP_WRITE_START}
# The line that says the dump is complete: minicap's RESULT, printed after
# its final flush; the kdump initramfs's KDUMP-RESULT, printed after `sync`.
RESULT_PATTERN = {MINICAP: re.compile(re.escape(RESULT_MARKER)), KDUMP: KDUMP_RESULT_RE}


@dataclass(frozen=True)
class Timing:
    success: bool  # the capture kernel said the dump is complete
    verdict: str  # its result line, or why there is none
    crash_to_first_write_s: float | None = None
    crash_to_complete_s: float | None = None


def is_success(kind: str, line: str) -> bool:
    if kind == MINICAP:
        parsed = parse_result_line(line)
        return parsed is not None and parsed.verdict == "success"
    m = KDUMP_RESULT_RE.search(line)
    return bool(m) and m.group(1) == "success"


def measure(lines, kind: str) -> Timing:
    """`lines`: the console as (t, text) records in order (qemu.SerialLine).
    The times are from the first crash line; a marker before the crash does
    not count."""
    at = next((i for i, l in enumerate(lines) if any(m in l.text for m in CRASH_MARKERS)), None)
    if at is None:
        return Timing(False, "no crash line (sysrq: Trigger a crash)")
    crash, after = lines[at], lines[at:]
    first = next((l for l in after if FIRST_WRITE_MARKER[kind] in l.text), None)
    result = next((l for l in after if RESULT_PATTERN[kind].search(l.text)), None)
    if result is None:
        return Timing(False, "no result line after the crash",
                      first.t - crash.t if first else None)  # fmt: skip
    ok = is_success(kind, result.text)
    return Timing(ok, result.text.strip(), first.t - crash.t if first and first.t <= result.t else None,
                  result.t - crash.t)  # fmt: skip

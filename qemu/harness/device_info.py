"""The dump header of a minicap device, as `minicap info --json DEVICE`
reports it (the host tool decodes and CRC-checks the header; the harness
only reads the JSON)."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass, fields
from pathlib import Path

STATES = ("empty", "writing", "complete", "failed")
FORMATS = ("none", "elf-vmcore", "kdump-compressed")
COMPRESSIONS = ("none", "zlib", "lzo")
VERIFICATIONS = ("sha256", "none", "xxh64-chunks")


@dataclass(frozen=True)
class DeviceInfo:
    device: str
    device_id: str
    state: str
    format: str
    dump_offset: int
    dump_length: int
    written: int
    capacity: int
    crash_time: int
    sha256: str
    writer: str
    osrelease: str
    message: str
    failure_code: str
    skipped_ranges: int
    skipped_bytes: int
    log_length: int
    verify: str
    chunk_size: int
    triage_length: int
    dump_level_requested: int
    dump_level: int
    level_note: str
    compression: str
    pages_ram: int
    pages_dumped: int
    saved_time: int


def parse_device_info(text: str) -> DeviceInfo:
    """One JSON object with exactly the fields of DeviceInfo, each of its
    type; ValueError naming what is wrong otherwise."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"not JSON: {e}") from e
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object: {text[:80]!r}")
    want = {f.name: f.type for f in fields(DeviceInfo)}
    missing = sorted(set(want) - set(obj))
    extra = sorted(set(obj) - set(want))
    if missing or extra:
        raise ValueError(f"fields missing: {missing}, unknown: {extra}")
    for name, typ in want.items():
        v = obj[name]
        ok = isinstance(v, str) if typ == "str" else (isinstance(v, int) and not isinstance(v, bool))
        if not ok:
            raise ValueError(f"{name} is {v!r}, want {typ}")
    info = DeviceInfo(**obj)
    if not re.fullmatch(r"[0-9a-f]{32}", info.device_id):
        raise ValueError(f"device_id {info.device_id!r} is not 32 hex digits")
    if not re.fullmatch(r"[0-9a-f]{64}", info.sha256):
        raise ValueError(f"sha256 {info.sha256!r} is not 64 hex digits")
    if info.state not in STATES:
        raise ValueError(f"state {info.state!r} is not one of {STATES}")
    if info.format not in FORMATS:
        raise ValueError(f"format {info.format!r} is not one of {FORMATS}")
    if info.compression not in COMPRESSIONS:
        raise ValueError(f"compression {info.compression!r} is not one of {COMPRESSIONS}")
    if info.verify not in VERIFICATIONS:
        raise ValueError(f"verify {info.verify!r} is not one of {VERIFICATIONS}")
    return info


def read_device_info(tool: str | Path, device: Path) -> DeviceInfo:
    """Runs `minicap info --json DEVICE`; ValueError if it fails or prints
    something else than the schema."""
    p = subprocess.run([str(tool), "info", "--json", str(device)], capture_output=True, text=True)
    if p.returncode != 0:
        raise ValueError(f"`minicap info --json` exit {p.returncode}: {p.stderr.strip() or p.stdout.strip()}")
    return parse_device_info(p.stdout)

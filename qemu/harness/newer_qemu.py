"""A QEMU whose TCG emulates x2APIC, for the crash matrix's x2apic variant.

QEMU's TCG emulates x2APIC from 9.0 on; Debian 12's qemu-system-x86 is
7.2, which drops the `x2apic` CPU flag with a warning, so the guest never
enters x2APIC mode. Where the system's QEMU lacks it, the harness takes
qemu-system-x86 from the release's backports suite (`<codename>-backports`,
10.0 on 2026-12-03): `apt-get download` through a private package index
in the cache (the system's apt sources and state are left alone; apt
resolves what the machine lacks against its dpkg status), unpacked with
`dpkg-deb -x` into qemu/cache/qemu-<version>/ (never installed). A wrapper
script runs it with its own firmware (`-L`) and module directory. Every
other scenario keeps the system's QEMU."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from .common import HarnessError, log, run, tail
from .kernel import CACHE, cache_lock

MIRROR = os.environ.get("MINICAP_DEBIAN_MIRROR", "http://deb.debian.org/debian")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
# What QEMU prints when TCG cannot give the guest the flag (target/i386/cpu.c).
NO_TCG_X2APIC = "TCG doesn't support requested feature: CPUID.01H:ECX.x2apic"
APT_DIR = CACHE / "apt-backports"
WRAPPER = "qemu-system-x86_64"


def tcg_has_x2apic(qemu: str) -> tuple[bool, str]:
    """Starts `qemu` stopped (-S) with `-cpu max,+x2apic` under TCG and quits through the
    monitor: (True, "") when the flag is kept, else (False, why)."""
    cmd = [qemu, "-machine", "q35", "-accel", "tcg", "-cpu", "max,+x2apic", "-smp", "2",
           "-display", "none", "-nodefaults", "-S", "-monitor", "stdio"]  # fmt: skip
    try:
        p = run(cmd, input="quit\n", timeout=60)
    except OSError as e:
        return False, f"cannot run {qemu}: {e}"
    except subprocess.TimeoutExpired:
        return False, f"{qemu} did not quit within 60 s"
    if NO_TCG_X2APIC in p.stdout:
        return False, f"{qemu}: {NO_TCG_X2APIC}"
    if p.returncode != 0:
        return False, f"{qemu} -cpu max,+x2apic failed (exit {p.returncode}): {tail(p.stdout, 3)}"
    return True, ""


def codename() -> str:
    text = Path("/etc/os-release").read_text()
    m = re.search(r"(?m)^VERSION_CODENAME=\"?([a-z]+)\"?$", text)
    if not m:
        raise HarnessError("cannot tell the Debian release (/etc/os-release has no VERSION_CODENAME)")
    return m.group(1)


def apt_options() -> list[str]:
    """apt reads this private index and the system's dpkg status (to know what is installed)."""
    return ["-o", f"Dir::Etc::SourceList={APT_DIR / 'sources.list'}", "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={APT_DIR / 'lists'}", "-o", f"Dir::Cache={APT_DIR / 'cache'}",
            "-o", "Dir::State::Status=/var/lib/dpkg/status", "-o", "Debug::NoLocking=1"]  # fmt: skip


def apt(tool: str, *args: str) -> str:
    p = run([tool, *apt_options(), *args])
    if p.returncode != 0:
        raise HarnessError(f"`{tool} {' '.join(args)}` (private index {APT_DIR}) failed "
                           f"(exit {p.returncode}):\n{tail(p.stdout, 8)}")  # fmt: skip
    return p.stdout


def update_index(release: str) -> None:
    for d in ("lists/partial", "cache/archives/partial"):
        (APT_DIR / d).mkdir(parents=True, exist_ok=True)
    (APT_DIR / "sources.list").write_text("".join(
        f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n" for suite in (f"{release}-backports", release)))
    log(f"apt-get update of a private index ({release}-backports and {release}) in {APT_DIR}")
    apt("apt-get", "update")


def download(release: str) -> Path:
    """The newest qemu-system-x86 of the backports suite and whatever it needs that the machine
    lacks, as apt resolves it against the system's dpkg status: `apt-get install --download-only`
    into the private cache (nothing is installed). Returns the directory of the .debs."""
    debs = APT_DIR / "cache" / "archives"
    for old in debs.glob("*.deb"):
        old.unlink()
    log(f"apt-get install --download-only -t {release}-backports qemu-system-x86 (private index)")
    apt("apt-get", "install", "--download-only", "-y", "--no-install-recommends", "-t", f"{release}-backports",
        "qemu-system-x86")  # fmt: skip
    if not any(debs.glob("qemu-system-x86_*.deb")):
        raise HarnessError(f"apt fetched no qemu-system-x86 from {release}-backports ({MIRROR})")
    return debs


def deb_version(deb: Path) -> str:
    p = run(["dpkg-deb", "-f", deb, "Version"])
    if p.returncode != 0:
        raise HarnessError(f"dpkg-deb -f {deb.name} Version failed:\n{tail(p.stdout, 3)}")
    return p.stdout.strip()


def wrapper_text(root: Path, libraries: bool) -> str:
    lib = f'export LD_LIBRARY_PATH="{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu"\n' if libraries else ""
    return ("#!/bin/sh\n# QEMU unpacked by qemu/harness/newer_qemu.py (not installed): its own firmware and modules.\n"
            f'export QEMU_MODULE_DIR="{root}/usr/lib/x86_64-linux-gnu/qemu"\n{lib}'
            f'exec "{root}/usr/bin/qemu-system-x86_64" -L "{root}/usr/share/qemu" -L "{root}/usr/share/seabios" "$@"\n')


def unpack(debs: Path, dest: Path) -> None:
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "root").mkdir(parents=True)
    for deb in sorted(debs.glob("*.deb")):
        p = run(["dpkg-deb", "-x", deb, tmp / "root"])
        if p.returncode != 0:
            raise HarnessError(f"dpkg-deb -x {deb.name} failed:\n{tail(p.stdout, 5)}")
    root = dest / "root"  # the wrapper names the final place
    script = tmp / WRAPPER
    libraries = any(d.is_dir() and any(d.glob("*.so*")) for d in (tmp / "root" / "usr" / "lib" / "x86_64-linux-gnu",
                                                                     tmp / "root" / "lib" / "x86_64-linux-gnu"))
    script.write_text(wrapper_text(root, libraries))
    script.chmod(0o755)
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)


def missing_libraries(qemu: Path) -> list[str]:
    """`ldd` through the wrapper's library path: the ones not found."""
    text = qemu.read_text()
    m = re.search(r'LD_LIBRARY_PATH="([^"]+)"', text)
    env = dict(os.environ, LD_LIBRARY_PATH=m.group(1)) if m else None
    p = run(["ldd", qemu.parent / "root" / "usr" / "bin" / "qemu-system-x86_64"], env=env)
    return [line.split()[0] for line in p.stdout.splitlines() if "not found" in line]


def cached() -> list[Path]:
    return sorted(CACHE.glob(f"qemu-*/{WRAPPER}"), key=lambda p: p.stat().st_mtime, reverse=True)


@functools.lru_cache(maxsize=None)
def qemu_with_tcg_x2apic(system_qemu: str) -> str:
    """`system_qemu` if its TCG has x2APIC, else a newer QEMU from the cache or from
    backports (fetched once). Raises HarnessError saying what failed."""
    ok, why = tcg_has_x2apic(system_qemu)
    if ok:
        return system_qemu
    with cache_lock():
        for q in cached():
            if tcg_has_x2apic(str(q))[0]:
                log(f"{why}; using the QEMU unpacked in {q.parent}")
                return str(q)
        release = codename()
        update_index(release)
        debs = download(release)
        version = deb_version(next(debs.glob("qemu-system-x86_*.deb")))
        dest = CACHE / f"qemu-{version.split(':')[-1]}"
        unpack(debs, dest)
        packages = sorted(d.name.split("_")[0] for d in debs.glob("*.deb"))
        q = dest / WRAPPER
        lost = missing_libraries(q)
        if lost:
            raise HarnessError(f"the unpacked QEMU in {dest} lacks libraries: {', '.join(lost)}")
        ok2, why2 = tcg_has_x2apic(str(q))
        if not ok2:
            raise HarnessError(f"the backports QEMU {version} has no TCG x2APIC either: {why2}")
        shutil.rmtree(APT_DIR, ignore_errors=True)  # the index and the .debs are only needed to fetch
        log(f"{why}; using qemu-system-x86 {version} from {release}-backports, unpacked in {dest} "
            f"({', '.join(packages)}; not installed)")
        return str(q)

"""A QEMU whose TCG emulates x2APIC, for the crash matrix's x2apic variant.

QEMU's TCG emulates x2APIC from 9.0 on; Debian 12's qemu-system-x86 is
7.2, which drops the `x2apic` CPU flag with a warning, so the guest never
enters x2APIC mode. Where the system's QEMU lacks it, the harness takes
qemu-system-x86 from the release's backports suite (`<codename>-backports`,
10.0 on 2026-12-03): `apt-get download` through a private package index
in the cache (the system's apt sources and state are left alone), unpacked
with `dpkg-deb -x` into qemu/cache/qemu-<version>/ (never installed),
together with any library it needs that the machine lacks. A wrapper
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
PACKAGES = ("qemu-system-x86", "qemu-system-common", "qemu-system-data")
# What QEMU prints when TCG cannot give the guest the flag (target/i386/cpu.c).
NO_TCG_X2APIC = "TCG doesn't support requested feature: CPUID.01H:ECX.x2apic"
APT_DIR = CACHE / "apt-backports"
WRAPPER = "qemu-system-x86_64"
# Unmet dependencies are fetched too, and theirs: a bound so a broken index cannot loop.
MAX_DEPENDENCY_ROUNDS = 5


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


def apt(tool: str, *args: str, cwd: Path | None = None):
    p = run([tool, *apt_options(), *args], cwd=cwd)
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


def newer(a: str, op: str, b: str) -> bool:
    return run(["dpkg", "--compare-versions", a, op, b]).returncode == 0


def installed_version(pkg: str) -> str | None:
    p = run(["dpkg-query", "-W", "-f", "${Status}\t${Version}", pkg])
    status, _, version = p.stdout.partition("\t")
    return version if p.returncode == 0 and status.endswith(" installed") else None


def available(pkg: str) -> list[str]:
    """Versions in the private index, newest first (`apt-cache madison`)."""
    p = run(["apt-cache", *apt_options(), "madison", pkg])
    versions = [line.split("|")[1].strip() for line in p.stdout.splitlines() if line.count("|") >= 2]
    return sorted(set(versions), key=functools.cmp_to_key(lambda a, b: 1 if newer(a, "gt", b) else -1), reverse=True)


def parse_depends(field: str) -> list[tuple[str, str | None, str | None]]:
    """`libc6 (>= 2.34), seabios (>> 1.16.3-1~), a | b` -> [(name, op, version)]:
    the first alternative of each, without the architecture qualifier."""
    out = []
    for dep in filter(None, (d.strip() for d in field.split(","))):
        first = dep.split("|")[0].strip()
        m = re.fullmatch(r"([a-z0-9.+-]+)(?::\S+)?\s*(?:\(\s*([<>=]+)\s*([^)\s]+)\s*\))?", first)
        if m:
            out.append((m.group(1), m.group(2), m.group(3)))
    return out


def depends_of(pkg: str, version: str) -> list[tuple[str, str | None, str | None]]:
    text = apt("apt-cache", "show", f"{pkg}={version}")
    first = text.split("\n\n")[0]
    fields = [m.group(1) for m in re.finditer(r"(?m)^(?:Pre-)?Depends: (.*)$", first)]
    return [d for f in fields for d in parse_depends(f)]


def satisfies(version: str | None, op: str | None, want: str | None) -> bool:
    if version is None:
        return False
    if op is None:
        return True
    return newer(version, {">>": "gt", "<<": "lt", ">=": "ge", "<=": "le", "=": "eq"}[op], want)


def plan(release: str) -> dict[str, str]:
    """package -> version to unpack: the newest qemu-system-x86 of the backports suite,
    its QEMU siblings at the same version, and every dependency the machine does not
    already satisfy (at the newest version that does)."""
    versions = available("qemu-system-x86")
    if not versions:
        raise HarnessError(f"qemu-system-x86 is not in {release}-backports or {release} ({MIRROR})")
    chosen = {pkg: versions[0] for pkg in PACKAGES}
    todo = list(PACKAGES)
    for _ in range(MAX_DEPENDENCY_ROUNDS):
        nxt = []
        for pkg in todo:
            for name, op, want in depends_of(pkg, chosen[pkg]):
                if name in chosen or satisfies(installed_version(name), op, want):
                    continue
                fits = [v for v in available(name) if satisfies(v, op, want)]
                if not fits:
                    raise HarnessError(f"{pkg} {chosen[pkg]} needs {name} ({op} {want}), which neither the "
                                       f"machine nor {release}[-backports] has")  # fmt: skip
                chosen[name] = fits[0]
                nxt.append(name)
        if not nxt:
            return chosen
        todo = nxt
    raise HarnessError(f"the dependencies of qemu-system-x86 {versions[0]} did not settle in "
                       f"{MAX_DEPENDENCY_ROUNDS} rounds: {sorted(chosen)}")  # fmt: skip


def wrapper_text(root: Path, libraries: bool) -> str:
    lib = f'export LD_LIBRARY_PATH="{root}/usr/lib/x86_64-linux-gnu:{root}/lib/x86_64-linux-gnu"\n' if libraries else ""
    return ("#!/bin/sh\n# QEMU unpacked by qemu/harness/newer_qemu.py (not installed): its own firmware and modules.\n"
            f'export QEMU_MODULE_DIR="{root}/usr/lib/x86_64-linux-gnu/qemu"\n{lib}'
            f'exec "{root}/usr/bin/qemu-system-x86_64" -L "{root}/usr/share/qemu" -L "{root}/usr/share/seabios" "$@"\n')


def unpack(chosen: dict[str, str], dest: Path) -> None:
    debs = APT_DIR / "debs"
    shutil.rmtree(debs, ignore_errors=True)
    debs.mkdir(parents=True)
    log("apt-get download " + " ".join(f"{p}={v}" for p, v in sorted(chosen.items())))
    apt("apt-get", "download", *(f"{p}={v}" for p, v in sorted(chosen.items())), cwd=debs)
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
    shutil.rmtree(debs, ignore_errors=True)


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
        chosen = plan(release)
        dest = CACHE / f"qemu-{chosen['qemu-system-x86'].split(':')[-1]}"
        unpack(chosen, dest)
        q = dest / WRAPPER
        lost = missing_libraries(q)
        if lost:
            raise HarnessError(f"the unpacked QEMU in {dest} lacks libraries: {', '.join(lost)}")
        ok2, why2 = tcg_has_x2apic(str(q))
        if not ok2:
            raise HarnessError(f"the backports QEMU {chosen['qemu-system-x86']} has no TCG x2APIC either: {why2}")
        shutil.rmtree(APT_DIR, ignore_errors=True)  # the index is only needed to fetch
        log(f"{why}; using qemu-system-x86 {chosen['qemu-system-x86']} from {release}-backports, "
            f"unpacked in {dest} ({len(chosen)} packages, not installed)")
        return str(q)

"""The crash-point module, built with kbuild against the guest kernel's own
Debian headers: `linux-headers-<version>` and the packages it depends on
that make it usable (`linux-headers-<abi>-common`, the top-level kernel
Makefile and headers, and `linux-kbuild-<major.minor>`, the scripts and
objtool), found with `apt-cache depends`, fetched with `apt-get download`
and unpacked with `dpkg-deb -x` into qemu/cache/headers-<version>/ (never
installed). The flavour's Makefile includes the common one by its absolute
/usr/src path, which is rewritten to a path relative to the Makefile itself
(the cache is shared by every worktree: an absolute path there would name
the worktree that unpacked it). The built module is cached in
qemu/cache/crashpoint/<version>-<digest of the sources>/."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path

from harness.common import QEMU_DIR, HarnessError, log, run
from harness.kernel import CACHE, GuestKernel, apt_download, cache_lock

SOURCE_DIR = QEMU_DIR / "crashpoint"
SOURCES = ("crashpoint.c", "Kbuild")
MODULE_NAME = "crashpoint.ko"


def header_packages(version: str) -> list[str]:
    """`linux-headers-<version>` and its Depends on other headers and on kbuild
    (the compiler package it also depends on is a host requirement: gcc-12 for
    Debian 12's kernels, installed by qemu/install-deps.sh)."""
    top = f"linux-headers-{version}"
    p = run(["apt-cache", "depends", top])
    deps = re.findall(r"^\s*Depends:\s*(linux-(?:headers|kbuild)-\S+)", p.stdout, re.M) if p.returncode == 0 else []
    if not deps:
        raise HarnessError(f"`apt-cache depends {top}` names no headers or kbuild package "
                           f"(exit {p.returncode}): {p.stdout.strip()[:300]!r}; run `apt-get update`")  # fmt: skip
    return [top] + deps


# `include /usr/src/linux-headers-<abi>-common/Makefile`, or that path under any
# directory (an earlier unpacked copy's absolute rewrite).
COMMON_INCLUDE_RE = re.compile(r"^include \S*?/usr/src/(linux-headers-[^/\s]+)/Makefile$", re.M)
# make's directory of the Makefile being read (the flavour's, with `make -C <tree>`).
THIS_MAKEFILE_DIR = "$(dir $(lastword $(MAKEFILE_LIST)))"


def relative_common_include(makefile_text: str) -> str:
    """The flavour Makefile with its include of the common headers' Makefile made
    relative to its own directory (the two are siblings under usr/src)."""
    return COMMON_INCLUDE_RE.sub(lambda m: f"include {THIS_MAKEFILE_DIR}../{m.group(1)}/Makefile", makefile_text)


def ensure_headers(version: str) -> Path:
    """The unpacked headers tree for `version` (the directory to `make -C`)."""
    root = CACHE / f"headers-{version}"
    tree = root / "usr" / "src" / f"linux-headers-{version}"
    if (tree / ".config").is_file():
        makefile = tree / "Makefile"
        text = makefile.read_text()
        if relative_common_include(text) != text:  # unpacked by an older version of this code
            makefile.write_text(relative_common_include(text))
        return tree
    tmp = CACHE / f".headers-{version}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    for pkg in header_packages(version):
        deb = apt_download(pkg)
        p = run(["dpkg-deb", "-x", deb, tmp])
        if p.returncode != 0:
            raise HarnessError(f"dpkg-deb -x {deb} failed:\n{p.stdout}")
        deb.unlink()
    makefile = tmp / "usr" / "src" / f"linux-headers-{version}" / "Makefile"
    if not makefile.is_file():
        raise HarnessError(f"{makefile} missing after unpacking the headers")
    makefile.write_text(relative_common_include(makefile.read_text()))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    return tree


def sources_digest() -> str:
    h = hashlib.sha256()
    for name in SOURCES:
        h.update(name.encode() + b"\0" + (SOURCE_DIR / name).read_bytes())
    return h.hexdigest()[:12]


def ensure_module(k: GuestKernel) -> Path:
    """crashpoint.ko for kernel `k`, from the cache or built now."""
    with cache_lock():
        out = CACHE / "crashpoint" / f"{k.version}-{sources_digest()}" / MODULE_NAME
        if out.is_file():
            return out
        tree = ensure_headers(k.version)
        with tempfile.TemporaryDirectory(prefix="crashpoint-") as build:
            for name in SOURCES:
                shutil.copy(SOURCE_DIR / name, build)
            log(f"building {MODULE_NAME} against {tree}")
            p = run(["make", "-C", tree, f"M={build}", "modules"])
            built = Path(build) / MODULE_NAME
            if p.returncode != 0 or not built.is_file():
                raise HarnessError(f"building {MODULE_NAME} failed (exit {p.returncode}):\n{p.stdout[-3000:]}")
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(built, out)
        return out

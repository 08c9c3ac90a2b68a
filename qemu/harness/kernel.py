"""The guest kernel: the current Debian cloud kernel package, fetched with
`apt-get download` into qemu/cache/ and unpacked with `dpkg-deb -x` (never
installed); the cache is locked so that parallel runs share it. A scenario
whose first kernel must drive an AHCI disk uses the generic flavour of the
same version (`linux-image-<ver>-amd64`): the cloud flavour is built
without an AHCI driver (CONFIG_SATA_AHCI is not set)."""

from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .common import QEMU_DIR, HarnessError, log, run

CACHE = QEMU_DIR / "cache"
KERNEL_META = "linux-image-cloud-amd64"
CLOUD = "cloud"  # linux-image-<ver>-cloud-amd64: virtio and NVMe, no AHCI
GENERIC = "generic"  # linux-image-<ver>-amd64: every driver, AHCI and NVMe as modules
FLAVOURS = (CLOUD, GENERIC)


def flavour_version(version: str, flavour: str) -> str:
    """The release of `flavour` built from the same sources as `version`
    (either flavour's): 6.1.0-57-cloud-amd64 -> 6.1.0-57-amd64 for GENERIC."""
    base = re.fullmatch(r"(.+?)-(?:cloud-)?amd64", version)
    if not base or flavour not in FLAVOURS:
        raise HarnessError(f"cannot tell the {flavour} flavour of kernel {version!r} (want <ver>[-cloud]-amd64)")
    return f"{base.group(1)}-cloud-amd64" if flavour == CLOUD else f"{base.group(1)}-amd64"


@contextlib.contextmanager
def cache_lock():
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def resolve_kernel_version() -> str:
    """`apt-cache depends linux-image-cloud-amd64` names the current
    linux-image-<ver>; falls back to the newest version already cached."""
    try:
        p = run(["apt-cache", "depends", KERNEL_META])
        m = re.search(r"linux-image-(\d\S*-cloud-amd64)\b", p.stdout) if p.returncode == 0 else None
        if m:
            return m.group(1)
        why = p.stdout.strip()
    except FileNotFoundError as e:
        why = str(e)
    cached = sorted(
        (d.name for d in CACHE.glob("*-cloud-amd64") if (d / "boot").is_dir()),
        key=lambda v: [int(x) if x.isdigit() else x for x in re.split(r"[.-]", v)],
    )
    if cached:
        log(f"apt-cache could not resolve {KERNEL_META} ({why!r}); using cached {cached[-1]}")
        return cached[-1]
    raise HarnessError(
        f"cannot resolve the guest kernel: `apt-cache depends {KERNEL_META}` gave {why!r}; "
        "run `apt-get update` or pass --kernel-version"
    )


def apt_download(pkg: str) -> Path:
    """`apt-get download pkg` into the cache; returns the .deb."""
    existing = sorted(CACHE.glob(f"{pkg}_*.deb"))
    if existing:
        return existing[-1]
    log(f"apt-get download {pkg}")
    p = run(["apt-get", "download", pkg], cwd=CACHE)
    debs = sorted(CACHE.glob(f"{pkg}_*.deb"))
    if p.returncode != 0 or not debs:
        raise HarnessError(
            f"`apt-get download {pkg}` failed (exit {p.returncode}):\n{p.stdout.strip()}\n"
            "(is the package index current? try `apt-get update`)"
        )
    return debs[-1]


@dataclass
class GuestKernel:
    version: str
    root: Path  # extracted package

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.version}"

    @property
    def modules(self) -> Path:
        return self.root / "lib" / "modules" / self.version / "kernel"


def ensure_kernel(version: str | None, flavour: str = CLOUD) -> GuestKernel:
    """The guest kernel of `flavour`, `version` (or the current cloud
    kernel's) translated to that flavour, unpacked in the cache."""
    with cache_lock():
        ver = version or resolve_kernel_version()
        if flavour != CLOUD:
            ver = flavour_version(ver, flavour)
        k = GuestKernel(ver, CACHE / ver)
        if not k.vmlinuz.is_file():
            deb = apt_download(f"linux-image-{ver}")
            tmp = CACHE / f".{ver}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            p = run(["dpkg-deb", "-x", deb, tmp])
            if p.returncode != 0:
                raise HarnessError(f"dpkg-deb -x {deb} failed:\n{p.stdout}")
            shutil.rmtree(k.root, ignore_errors=True)
            tmp.rename(k.root)
            deb.unlink()
        if not k.vmlinuz.is_file():
            raise HarnessError(f"{k.vmlinuz} missing after extracting the package")
        return k


def ensure_debug_vmlinux(k: GuestKernel) -> Path:
    """vmlinux with debug info from the -dbg package (about 280 MB download);
    only the vmlinux is kept."""
    out = k.root / f"vmlinux-{k.version}"
    with cache_lock():
        if out.is_file():
            return out
        deb = apt_download(f"linux-image-{k.version}-dbg")
        member = f"./usr/lib/debug/boot/vmlinux-{k.version}"
        log(f"extracting {member} from {deb.name}")
        tmp = k.root / ".dbg.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = run(["tar", "-x", "-C", tmp, member], stdin=fsys.stdout)
        fsys.stdout.close()
        rc = fsys.wait()
        src = tmp / member
        if rc != 0 or tar.returncode != 0 or not src.is_file():
            raise HarnessError(f"extracting {member} from {deb} failed:\n{tar.stdout}")
        src.rename(out)
        shutil.rmtree(tmp, ignore_errors=True)
        deb.unlink()
        return out


# ---------------------------------------------------------------------------

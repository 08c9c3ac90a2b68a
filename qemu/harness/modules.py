"""The guest kernel's loadable modules, for the drivers the first kernel
needs before it can drive a disk itself (the busy-device scenarios).

The kernel package carries no modules.dep (depmod writes it when the
package is installed, and it is only unpacked here), so a module's
dependencies are read where depmod reads them: the `depends=` string in
the module's `.modinfo` ELF section (NUL-separated `key=value` strings).
A module named in the package's modules.builtin is part of the kernel
image and needs no loading."""

from __future__ import annotations

import struct
from pathlib import Path

from .common import HarnessError
from .kernel import GuestKernel

SHT_NOBITS = 8


def module_name(path_or_name: str) -> str:
    """`kernel/drivers/ata/libahci.ko` or `scsi-mod` -> `libahci`, `scsi_mod`
    (the kernel treats - and _ in module names alike)."""
    name = Path(path_or_name).name
    for suffix in (".xz", ".zst", ".gz", ".ko"):
        name = name.removesuffix(suffix)
    return name.replace("-", "_")


def elf_section(data: bytes, wanted: str) -> bytes | None:
    """The contents of the section named `wanted` in an ELF64
    little-endian relocatable object, or None if it has none."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not an ELF64 little-endian object")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shentsize < 64 or shoff + shnum * shentsize > len(data) or shstrndx >= shnum:
        raise ValueError("section headers outside the file")

    def header(i: int) -> tuple[int, int, int, int]:
        name, kind, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, kind, offset, size

    _, _, names_off, names_size = header(shstrndx)
    names = data[names_off : names_off + names_size]
    for i in range(shnum):
        name, kind, offset, size = header(i)
        end = names.find(b"\0", name) if name < len(names) else -1
        if end < 0:
            raise ValueError(f"section {i}'s name lies outside the section name table")
        if names[name:end].decode(errors="replace") == wanted and kind != SHT_NOBITS:
            if offset + size > len(data):
                raise ValueError(f"section {wanted} outside the file")
            return data[offset : offset + size]
    return None


def depends(data: bytes) -> list[str]:
    """The modules a module's `.modinfo` says it depends on."""
    info = elf_section(data, ".modinfo") or b""
    for entry in info.split(b"\0"):
        if entry.startswith(b"depends="):
            return [module_name(d) for d in entry[len(b"depends=") :].decode().split(",") if d]
    return []


def builtin(k: GuestKernel) -> set[str]:
    listing = k.modules.parent / "modules.builtin"
    return {module_name(l) for l in listing.read_text().split()} if listing.is_file() else set()


def load_order(k: GuestKernel, wanted: tuple[str, ...]) -> list[Path]:
    """The module files to insmod, dependencies first, for the modules
    `wanted` and everything they depend on; built-in ones are left out.
    Raises HarnessError if one is neither built in nor a module of `k`."""
    files = {module_name(p.name): p for p in k.modules.rglob("*.ko*")}
    inside = builtin(k)
    order: list[Path] = []
    placed: set[str] = set()

    def place(name: str, chain: tuple[str, ...]) -> None:
        if name in placed or name in inside:
            return
        if name in chain:
            raise HarnessError(f"module dependency cycle: {' -> '.join(chain + (name,))}")
        path = files.get(name)
        if path is None:
            raise HarnessError(f"kernel {k.version} has no module {name} and does not have it built in")
        if path.suffix != ".ko":
            raise HarnessError(f"{path} is compressed; busybox insmod needs a plain .ko")
        try:
            needs = depends(path.read_bytes())
        except (ValueError, struct.error) as e:
            raise HarnessError(f"{path}: {e}") from e
        for dep in needs:
            place(dep, chain + (name,))
        placed.add(name)
        order.append(path)

    for name in wanted:
        place(module_name(name), ())
    return order

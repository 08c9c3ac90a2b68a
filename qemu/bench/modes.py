"""The capture modes the benchmark compares, as data: stock kdump (the
guest's own kernel as capture kernel, with one of the kdump initramfs's
writers) and minicap's variants. A new minicap option to compare is a row
in MINICAP_VARIANTS (or `--minicap-variant NAME=OPTIONS` for a one-off)."""

from __future__ import annotations

from dataclasses import dataclass

KDUMP = "kdump"
MINICAP = "minicap"
# Dump formats on the disk, as the benchmark reads them back.
ELF = "elf"  # an ELF vmcore (/proc/vmcore as it is)
KDUMP_COMPRESSED = "kdump-compressed"  # makedumpfile's format
# The dump disk's bus (as in harness.scenarios).
VIRTIO, NVME, AHCI = "virtio", "nvme", "ahci"


@dataclass(frozen=True)
class Mode:
    name: str  # the name for --modes and in the tables
    about: str  # one line, for --list-modes and the report
    kind: str  # KDUMP or MINICAP
    dump_format: str  # ELF or KDUMP_COMPRESSED
    kdump_writer: str | None = None  # KDUMP: the kdump initramfs's writer (harness.initramfs.KDUMP_WRITERS)
    minicap_append: str = ""  # MINICAP: this variant's minicap.* options
    # Searched for the smallest crashkernel= unless --search-modes says otherwise.
    search_by_default: bool = True
    # The dump disk: virtio-blk, an NVMe controller, or an ATA disk on q35's AHCI HBA.
    bus: str = VIRTIO


# The smallest working crashkernel= is searched in these steps and bounds
# (MiB): kdump needs a Linux kernel and its userspace in the region, minicap
# its image and a heap. The upper bound is clipped to half the guest RAM.
SEARCH_STEP_MIB = {KDUMP: 4, MINICAP: 1}
SEARCH_RANGE_MIB = {KDUMP: (4, 512), MINICAP: (1, 64)}

# The crashkernel= search of kdump runs by default only for makedumpfile -c
# -d 31, what Debian's kdump-tools runs: each probe at 8 GiB of RAM takes
# minutes under TCG.
KDUMP_MODES: tuple[Mode, ...] = (
    Mode("kdump-dd", "kdump, /proc/vmcore copied as it is (dd bs=1M conv=fsync, like cat)", KDUMP, ELF,
         kdump_writer="dd", search_by_default=False),
    Mode("kdump-mdf-l", "kdump, makedumpfile -l -d 31 (LZO, pages filtered) to the raw disk", KDUMP,
         KDUMP_COMPRESSED, kdump_writer="makedumpfile-l", search_by_default=False),
    Mode("kdump-mdf-c", "kdump, makedumpfile -c -d 31 (zlib, pages filtered) to the raw disk", KDUMP,
         KDUMP_COMPRESSED, kdump_writer="makedumpfile-c"),
)  # fmt: skip

# minicap's output modes: the ELF vmcore with each `minicap.verify=` check, and
# the kdump-compressed format per codec and level. `--minicap-append` adds
# options to every row.
MINICAP_VARIANTS: tuple[Mode, ...] = (
    Mode("minicap-elf", "minicap, ELF vmcore (all RAM), default check: XXH64 per chunk", MINICAP, ELF,
         minicap_append="minicap.format=elf"),
    # The check's cost (issue 7's goal: the default within 10 % of no check);
    # not searched by default (the check does not change the memory needed).
    Mode("minicap-elf-sha256", "minicap, ELF vmcore, SHA-256 of the whole dump", MINICAP, ELF,
         minicap_append="minicap.format=elf minicap.verify=sha256", search_by_default=False),
    Mode("minicap-elf-noverify", "minicap, ELF vmcore, no check", MINICAP, ELF,
         minicap_append="minicap.format=elf minicap.verify=none", search_by_default=False),
    # makedumpfile's format, written inside minicap: the same levels and codecs as the
    # kdump rows (-d 31 with -l and -c), and level 1 (zero pages only) for scale.
    # The same ELF vmcore through the other disk drivers (README "Transports"); the
    # memory needed does not depend on the disk, so not searched by default.
    Mode("minicap-elf-nvme", "minicap, ELF vmcore onto an NVMe namespace", MINICAP, ELF,
         minicap_append="minicap.format=elf", search_by_default=False, bus=NVME),
    Mode("minicap-elf-ahci", "minicap, ELF vmcore onto an ATA disk on the AHCI HBA", MINICAP, ELF,
         minicap_append="minicap.format=elf", search_by_default=False, bus=AHCI),
    Mode("minicap-kdump-lzo-31", "minicap, kdump-compressed, LZO, dump level 31", MINICAP, KDUMP_COMPRESSED,
         minicap_append="minicap.format=kdump minicap.compress=lzo minicap.dump_level=31"),
    Mode("minicap-kdump-zlib-31", "minicap, kdump-compressed, zlib, dump level 31", MINICAP, KDUMP_COMPRESSED,
         minicap_append="minicap.format=kdump minicap.compress=zlib minicap.dump_level=31", search_by_default=False),
    Mode("minicap-kdump-lzo-1", "minicap, kdump-compressed, LZO, dump level 1", MINICAP, KDUMP_COMPRESSED,
         minicap_append="minicap.format=kdump minicap.compress=lzo minicap.dump_level=1", search_by_default=False),
    Mode("minicap-kdump-zlib-1", "minicap, kdump-compressed, zlib, dump level 1", MINICAP, KDUMP_COMPRESSED,
         minicap_append="minicap.format=kdump minicap.compress=zlib minicap.dump_level=1", search_by_default=False),
)  # fmt: skip

MODES: tuple[Mode, ...] = KDUMP_MODES + MINICAP_VARIANTS


def parse_variant(spec: str) -> Mode:
    """`NAME=OPTIONS` (from --minicap-variant): one more minicap row."""
    name, sep, opts = spec.partition("=")
    name = name.strip()
    if not sep or not name or not all(c.isalnum() or c in "-_." for c in name):
        raise ValueError(f"--minicap-variant {spec!r}: want NAME=OPTIONS, e.g. minicap-sha=minicap.verify=sha256")
    if not name.startswith("minicap"):
        name = f"minicap-{name}"
    return Mode(name, f"minicap, {opts.strip() or 'default options'}", MINICAP, ELF, minicap_append=opts.strip())


def select(names: list[str] | None, table: tuple[Mode, ...]) -> list[Mode]:
    """The rows named (in the order given), or all of them; an unknown name
    is an error naming the known ones."""
    if not names:
        return list(table)
    by_name = {m.name: m for m in table}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown mode(s) {', '.join(unknown)}; known: {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def default_search(selected: list[Mode]) -> list[Mode]:
    """The modes searched without --search-modes: the selected ones marked
    search_by_default, or all selected if none is."""
    return [m for m in selected if m.search_by_default] or list(selected)


def search_candidates(kind: str, memory_mib: int) -> list[int]:
    """The crashkernel= sizes (MiB) the search may try at this RAM size."""
    step = SEARCH_STEP_MIB[kind]
    lo, hi = SEARCH_RANGE_MIB[kind]
    hi = min(hi, memory_mib // 2) // step * step
    lo = -(-lo // step) * step
    return list(range(lo, hi + 1, step))

"""Where a dump ends on the raw disk the capture kernel wrote it to, for the
two formats the benchmark meets: an ELF vmcore (the end of its last
segment) and makedumpfile's kdump-compressed format (the end of its last
page's data), read from the format's own headers."""

from __future__ import annotations

import struct

from harness.elf import vmcore_end

from .modes import ELF, KDUMP_COMPRESSED

KDUMP_SIGNATURE = b"KDUMP   "
# struct disk_dump_header (makedumpfile's diskdump_mod.h) on x86_64: the
# signature, header_version, struct new_utsname (6 x 65 bytes), struct
# timeval (8-aligned, at 408), then status, block_size, sub_hdr_size,
# bitmap_blocks, max_mapnr, ... (32-bit each, from 424).
HEADER_FIELDS_AT = 424
# struct kdump_sub_header, one block after the start: phys_base,
# dump_level, split, start_pfn, end_pfn, offset_vmcoreinfo,
# size_vmcoreinfo, offset_note, size_note, offset_eraseinfo, size_eraseinfo.
SUB_HEADER_ERASEINFO_AT = 64
PAGE_DESC = struct.Struct("<qIIQ")  # page_desc_t: offset, size, flags, page_flags


def kdump_compressed_end(f) -> int:
    """The size of a kdump-compressed dump at the start of `f`: its data
    ends with the last dumpable page's data (or the erase information, if
    any). The page descriptors follow the header, sub-header and the two
    bitmaps; there is one per bit set in the second (dumpable-page) bitmap."""
    f.seek(0)
    head = f.read(HEADER_FIELDS_AT + 20)
    if len(head) < HEADER_FIELDS_AT + 20 or head[:8] != KDUMP_SIGNATURE:
        raise ValueError("not a kdump-compressed dump (no 'KDUMP   ' signature)")
    _status, block, sub_blocks, bitmap_blocks, _max_mapnr = struct.unpack_from("<IiiII", head, HEADER_FIELDS_AT)
    if block <= 0 or block & (block - 1) or sub_blocks < 0 or bitmap_blocks % 2:
        raise ValueError(f"implausible header: block size {block}, {sub_blocks} sub-header and "
                         f"{bitmap_blocks} bitmap blocks")  # fmt: skip
    f.seek(block + SUB_HEADER_ERASEINFO_AT)
    erase_off, erase_size = struct.unpack("<qQ", f.read(16))
    bitmap_at = (1 + sub_blocks) * block
    half = bitmap_blocks // 2 * block
    f.seek(bitmap_at + half)
    dumpable = f.read(half)
    if len(dumpable) < half:
        raise ValueError("the dump ends inside its bitmaps")
    pages = int.from_bytes(dumpable, "little").bit_count()
    descs_at = bitmap_at + 2 * half
    end = descs_at + pages * PAGE_DESC.size
    f.seek(descs_at)
    table = f.read(pages * PAGE_DESC.size)
    if len(table) < pages * PAGE_DESC.size:
        raise ValueError("the dump ends inside its page descriptors")
    for offset, size, _flags, _page_flags in PAGE_DESC.iter_unpack(table):
        if offset < descs_at or size > block:
            raise ValueError(f"implausible page descriptor: offset {offset}, size {size}")
        end = max(end, offset + size)
    if erase_size:
        end = max(end, erase_off + erase_size)
    return end


def dump_end(f, fmt: str) -> int:
    """The dump's size in bytes, from its own headers."""
    if fmt == ELF:
        return vmcore_end(f)
    if fmt == KDUMP_COMPRESSED:
        return kdump_compressed_end(f)
    raise ValueError(f"unknown dump format {fmt!r}")

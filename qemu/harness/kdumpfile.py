"""A reader of makedumpfile's kdump-compressed format, written from the format's
description (makedumpfile's diskdump_mod.h, crash's diskdump.c), independently of
minicap's writer: the harness uses it to find the guest's pattern pages in a
compressed dump. makedumpfile itself (`--dump-dmesg`) is the real tool that must
read the same file.

Layout (block size = page size): block 0 `disk_dump_header`, block 1..
`kdump_sub_header` and the notes (`sub_hdr_size` blocks), then the two bitmaps
(`bitmap_blocks` in all, half each), then one 24-byte `page_desc` per set bit of
the second bitmap, in frame order; each names its page's data (offset, size,
flags: compression)."""

from __future__ import annotations

import struct
import zlib

SIGNATURE = b"KDUMP   "
# page_desc.flags / disk_dump_header.status
COMPRESSED_ZLIB = 0x1
COMPRESSED_LZO = 0x2
COMPRESSED_SNAPPY = 0x4
COMPRESSED_INCOMPLETE = 0x8
COMPRESSED_ZSTD = 0x20
CODECS = {COMPRESSED_ZLIB: "zlib", COMPRESSED_LZO: "lzo", COMPRESSED_SNAPPY: "snappy", COMPRESSED_ZSTD: "zstd"}
DESC_SIZE = 24


class KdumpFormatError(ValueError):
    pass


class KdumpFile:
    def __init__(self, f):
        self.f = f
        head = self._read(0, 464)
        if head[:8] != SIGNATURE:
            raise KdumpFormatError(f"signature {head[:8]!r}, want {SIGNATURE!r}")
        (self.header_version,) = struct.unpack_from("<i", head, 8)
        self.release = head[12 + 2 * 65 : 12 + 3 * 65].split(b"\0")[0].decode(errors="replace")
        (self.status, self.block_size, self.sub_hdr_size, self.bitmap_blocks, max_mapnr) = struct.unpack_from(
            "<IiiII", head, 424)  # fmt: skip
        (self.nr_cpus,) = struct.unpack_from("<i", head, 460)
        if self.block_size != 4096 or self.sub_hdr_size < 1 or self.bitmap_blocks % 2:
            raise KdumpFormatError(f"block size {self.block_size}, sub_hdr_size {self.sub_hdr_size}, "
                                   f"bitmap_blocks {self.bitmap_blocks}")  # fmt: skip
        sub = self._read(self.block_size, 104)
        (self.dump_level,) = struct.unpack_from("<i", sub, 8)
        self.max_mapnr = struct.unpack_from("<Q", sub, 96)[0] if self.header_version >= 6 else max_mapnr
        half = self.bitmap_blocks // 2 * self.block_size
        first = self.block_size * (1 + self.sub_hdr_size)
        self.ram_bitmap = self._read(first, half)
        self.dump_bitmap = self._read(first + half, half)
        self.desc_offset = first + 2 * half
        # Descriptors before each bitmap byte (crash's pfn_to_pos()).
        self._before = [0] * (len(self.dump_bitmap) + 1)
        for i, b in enumerate(self.dump_bitmap):
            self._before[i + 1] = self._before[i] + bin(b).count("1")

    def _read(self, offset: int, size: int) -> bytes:
        self.f.seek(offset)
        data = self.f.read(size)
        if len(data) != size:
            raise KdumpFormatError(f"file ends before byte {offset + size:#x}")
        return data

    @property
    def incomplete(self) -> bool:
        return bool(self.status & COMPRESSED_INCOMPLETE)

    def is_ram(self, pfn: int) -> bool:
        return pfn < 8 * len(self.ram_bitmap) and bool(self.ram_bitmap[pfn // 8] >> (pfn % 8) & 1)

    def is_dumped(self, pfn: int) -> bool:
        return pfn < 8 * len(self.dump_bitmap) and bool(self.dump_bitmap[pfn // 8] >> (pfn % 8) & 1)

    def dumped_pages(self) -> int:
        return self._before[-1]

    def desc(self, pfn: int) -> tuple[int, int, int]:
        """(offset, size, flags) of a dumped frame's data."""
        index = self._before[pfn // 8] + bin(self.dump_bitmap[pfn // 8] & ((1 << (pfn % 8)) - 1)).count("1")
        offset, size, flags = struct.unpack_from("<QII", self._read(self.desc_offset + DESC_SIZE * index, 16))
        return offset, size, flags

    def page(self, pfn: int) -> bytes | None:
        """The frame's bytes; None if it was not dumped. KdumpFormatError for a codec
        Python's standard library lacks (lzo, snappy, zstd) or a damaged page."""
        if not self.is_dumped(pfn):
            return None
        offset, size, flags = self.desc(pfn)
        if not 0 < size <= self.block_size:
            raise KdumpFormatError(f"pfn {pfn:#x}: page size {size}")
        data = self._read(offset, size)
        if flags & COMPRESSED_ZLIB:
            try:
                data = zlib.decompress(data)
            except zlib.error as e:
                raise KdumpFormatError(f"pfn {pfn:#x}: {e}") from e
        elif flags:
            raise KdumpFormatError(f"pfn {pfn:#x}: {CODECS.get(flags, hex(flags))} pages are not read here")
        if len(data) != self.block_size:
            raise KdumpFormatError(f"pfn {pfn:#x}: {len(data)} bytes after decompression")
        return data

//! The fixed structures of a kdump-compressed file (makedumpfile `diskdump_mod.h`), encoded
//! little-endian for x86_64.

/// `disk_dump_header.signature` of makedumpfile's format ("KDUMP" and three spaces).
pub const KDUMP_SIGNATURE: [u8; 8] = *b"KDUMP   ";
/// The `header_version` current makedumpfile writes (6: `max_mapnr_64` and 64-bit split pfns).
pub const HEADER_VERSION: i32 = 6;
/// `sizeof(struct disk_dump_header)` on x86_64.
pub const DISK_DUMP_HEADER_SIZE: usize = 464;
/// `sizeof(struct kdump_sub_header)` on x86_64.
pub const SUB_HEADER_SIZE: usize = 104;
/// `sizeof(page_desc_t)`.
pub const PAGE_DESC_SIZE: usize = 24;
/// Length of each `new_utsname` string, NUL included.
pub const UTS_LEN: usize = 65;

/// `status`/`page_desc_t.flags`: the page is zlib compressed (RFC 1950 stream).
pub const DUMP_DH_COMPRESSED_ZLIB: u32 = 0x1;
/// LZO1X-1 compressed.
pub const DUMP_DH_COMPRESSED_LZO: u32 = 0x2;
/// Raw snappy compressed.
pub const DUMP_DH_COMPRESSED_SNAPPY: u32 = 0x4;
/// `status`: the dump was not finished.
pub const DUMP_DH_COMPRESSED_INCOMPLETE: u32 = 0x8;
/// zstd compressed (one frame per page).
pub const DUMP_DH_COMPRESSED_ZSTD: u32 = 0x20;

/// `struct new_utsname` of the crashed kernel (`init_uts_ns.name`): sysname, nodename,
/// release, version, machine, domainname.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utsname(pub [[u8; UTS_LEN]; 6]);

impl Utsname {
    /// Builds the fields from strings (each cut to 64 bytes, NUL padded).
    pub fn new(fields: [&str; 6]) -> Self {
        let mut out = [[0u8; UTS_LEN]; 6];
        for (dst, src) in out.iter_mut().zip(fields) {
            let n = src.len().min(UTS_LEN - 1);
            dst[..n].copy_from_slice(&src.as_bytes()[..n]);
        }
        Self(out)
    }

    /// The raw 390 bytes as the kernel lays them out (for [`Utsname::from_bytes`]).
    pub fn from_bytes(raw: &[u8; 6 * UTS_LEN]) -> Self {
        let mut out = [[0u8; UTS_LEN]; 6];
        for (dst, src) in out.iter_mut().zip(raw.chunks_exact(UTS_LEN)) {
            dst.copy_from_slice(src);
        }
        Self(out)
    }
}

/// `struct disk_dump_header` (block 0 of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskDumpHeader {
    /// The old kernel's utsname; crash requires `machine` to start with "x86_64".
    pub utsname: Utsname,
    /// `timestamp.tv_sec` (makedumpfile: the dump time).
    pub time_sec: i64,
    /// `timestamp.tv_usec`.
    pub time_usec: i64,
    /// Compression flag of the pages plus `DUMP_DH_COMPRESSED_INCOMPLETE`.
    pub status: u32,
    /// Page size (4096).
    pub block_size: u32,
    /// Blocks of the sub header plus notes.
    pub sub_hdr_size: u32,
    /// Blocks of both bitmaps.
    pub bitmap_blocks: u32,
    /// Number of page frames covered, capped at `u32::MAX` (the sub header has the full value).
    pub max_mapnr: u32,
    /// Number of CPUs (`NT_PRSTATUS` notes).
    pub nr_cpus: i32,
}

impl DiskDumpHeader {
    /// The 464 bytes (`total_ram_blocks`, `device_blocks`, `written_blocks` and
    /// `current_cpu` are written as 0, like makedumpfile does).
    pub fn encode(&self) -> [u8; DISK_DUMP_HEADER_SIZE] {
        let mut b = [0u8; DISK_DUMP_HEADER_SIZE];
        b[0..8].copy_from_slice(&KDUMP_SIGNATURE);
        b[8..12].copy_from_slice(&HEADER_VERSION.to_le_bytes());
        for (i, field) in self.utsname.0.iter().enumerate() {
            let at = 12 + i * UTS_LEN;
            b[at..at + UTS_LEN].copy_from_slice(field);
        }
        // 12 + 390 = 402, padded to 408 for the 8-byte aligned timeval.
        b[408..416].copy_from_slice(&self.time_sec.to_le_bytes());
        b[416..424].copy_from_slice(&self.time_usec.to_le_bytes());
        b[424..428].copy_from_slice(&self.status.to_le_bytes());
        b[428..432].copy_from_slice(&self.block_size.to_le_bytes());
        b[432..436].copy_from_slice(&self.sub_hdr_size.to_le_bytes());
        b[436..440].copy_from_slice(&self.bitmap_blocks.to_le_bytes());
        b[440..444].copy_from_slice(&self.max_mapnr.to_le_bytes());
        // 444..460: total_ram_blocks, device_blocks, written_blocks, current_cpu = 0.
        b[460..464].copy_from_slice(&self.nr_cpus.to_le_bytes());
        b
    }
}

/// `struct kdump_sub_header` (at offset `block_size`), version 6 fields; split fields are 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubHeader {
    /// `NUMBER(phys_base)` of the old kernel.
    pub phys_base: u64,
    /// The makedumpfile `-d` mask the dump was filtered with.
    pub dump_level: i32,
    /// File offset of the VMCOREINFO text (the note's descriptor), 0 if none.
    pub offset_vmcoreinfo: u64,
    /// Its length.
    pub size_vmcoreinfo: u64,
    /// File offset of the ELF notes (`block_size + 104`).
    pub offset_note: u64,
    /// Their length.
    pub size_note: u64,
    /// The full page frame count.
    pub max_mapnr_64: u64,
}

impl SubHeader {
    /// The 104 bytes.
    pub fn encode(&self) -> [u8; SUB_HEADER_SIZE] {
        let mut b = [0u8; SUB_HEADER_SIZE];
        b[0..8].copy_from_slice(&self.phys_base.to_le_bytes());
        b[8..12].copy_from_slice(&self.dump_level.to_le_bytes());
        // 12 split, 16 start_pfn, 24 end_pfn: 0.
        b[32..40].copy_from_slice(&self.offset_vmcoreinfo.to_le_bytes());
        b[40..48].copy_from_slice(&self.size_vmcoreinfo.to_le_bytes());
        b[48..56].copy_from_slice(&self.offset_note.to_le_bytes());
        b[56..64].copy_from_slice(&self.size_note.to_le_bytes());
        // 64 offset_eraseinfo, 72 size_eraseinfo, 80 start_pfn_64, 88 end_pfn_64: 0.
        b[96..104].copy_from_slice(&self.max_mapnr_64.to_le_bytes());
        b
    }
}

/// `page_desc_t`: where one dumped page's bytes are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PageDesc {
    /// Absolute file offset of the page data.
    pub offset: u64,
    /// Bytes stored (at most the block size).
    pub size: u32,
    /// 0 for raw, else the `DUMP_DH_COMPRESSED_*` flag of the compressor.
    pub flags: u32,
}

impl PageDesc {
    /// The 24 bytes (`page_flags` is 0, unused by the readers).
    pub fn encode(&self) -> [u8; PAGE_DESC_SIZE] {
        let mut b = [0u8; PAGE_DESC_SIZE];
        b[0..8].copy_from_slice(&self.offset.to_le_bytes());
        b[8..12].copy_from_slice(&self.size.to_le_bytes());
        b[12..16].copy_from_slice(&self.flags.to_le_bytes());
        b
    }
}

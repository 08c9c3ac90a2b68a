//! The on-device layout of a minicap dump device.
//!
//! A disk or partition is prepared on Linux by `minicap format`, which writes a header into its
//! first sectors. The capture kernel writes only to a device whose header decodes as a valid
//! header carrying the id given on its command line: that is how it never overwrites the
//! wrong disk. After the crash `minicap save` reads the dump back.
//!
//! Layout (all little-endian):
//!
//! | bytes | content |
//! |---|---|
//! | 0..512 | the base [`DumpHeader`], CRC at byte 508 |
//! | 512..1024 | the header extension, its own magic ([`EXTENSION_MAGIC`]) and CRC at byte 1020 |
//! | 1024..[`LOG_OFFSET`] | reserved, zero |
//! | [`LOG_OFFSET`] (64 KiB)..+[`LOG_CAPACITY`] | the capture kernel's console log, `log_length` bytes of text |
//! | [`CHUNK_TABLE_OFFSET`] (128 KiB)..1 MiB | the chunk checksum table when `verify` is [`Verification::Xxh64Chunks`], else reserved, zero |
//! | [`TRIAGE_OFFSET`] (1 MiB)..+[`TRIAGE_CAPACITY`] | the triage text, `triage_length` bytes: the crashed kernel's release, registers and log |
//! | [`DUMP_OFFSET`] (2 MiB).. | the dump, contiguous, `dump_length` bytes |
//!
//! so `dd if=DEV bs=1M skip=2` truncated to `dump_length` is the dump. The header's
//! `dump_offset` is authoritative: devices written before the triage area existed hold their
//! dump at 1 MiB, and readers accept both ([`KNOWN_DUMP_OFFSETS`]).
//!
//! # Header and extension
//!
//! [`HEADER_LEN`] is 1024 bytes. Bytes 0..512 are the base header exactly as the first writers
//! laid it out (its stored header length stays 512 and its CRC covers bytes 0..508), so an
//! older reader still decodes them. Bytes 512..1024 are the extension, written in the sector
//! that older writers left zero:
//!
//! | bytes | field |
//! |---|---|
//! | 512..520 | [`EXTENSION_MAGIC`] |
//! | 520..524 | `triage_length` (u32) |
//! | 524..528 | `compression` (u32, [`Compression`]) |
//! | 528 | `dump_level_requested` (u8) |
//! | 529 | `dump_level` (u8, the level applied) |
//! | 530..536 | reserved, zero |
//! | 536..544 | `pages_ram` (u64) |
//! | 544..552 | `pages_dumped` (u64) |
//! | 552..712 | `level_note`, NUL-padded text |
//! | 712..720 | `saved_time` (i64, seconds since 1970; 0: not saved) |
//! | 720..1020 | reserved, zero |
//! | 1020..1024 | CRC-32 of bytes 512..1020 |
//!
//! An extension of all zeros (an older writer) decodes as "no triage, dump level 0 of 0, no
//! compression, not saved"; any other extension must carry the magic and a matching CRC.
//!
//! # Saved or not
//!
//! `minicap save` sets `saved_time` once it has copied the dump off the device and its check
//! passed; `minicap format` writes a fresh header, which clears it; a capture writes a new
//! header with it clear. The capture kernel keeps a dump that holds data
//! ([`DumpHeader::holds_unsaved_dump`]) instead of writing over it, unless told to: the first
//! crash of a crash loop is the most informative one, and must not be replaced by the next
//! before anyone saved it. Older readers ignore the field (it was reserved), older writers
//! leave it zero: "not saved", the safe reading.
//!
//! # Integrity check
//!
//! The header's `verify` field (byte 476) says how the dump data can be checked:
//!
//! * [`Verification::Sha256`] (0, what every header written before the field existed means):
//!   `sha256` holds the SHA-256 of the whole dump, valid when the dump is complete.
//! * [`Verification::None`] (1): nothing to check against (`minicap.verify=none`).
//! * [`Verification::Xxh64Chunks`] (2): the dump is cut into chunks of `chunk_size` bytes (a
//!   power of two of at least [`MIN_CHUNK_SIZE`], see [`chunk_size_for`]), and the table at
//!   [`CHUNK_TABLE_OFFSET`] holds one little-endian `u64` per chunk: entry `i` is the XXH64
//!   (seed 0) of dump bytes `[i * chunk_size, min((i + 1) * chunk_size, dump_length))`. At
//!   most [`MAX_CHUNKS`] entries fit before the dump. `table_xxh64` (byte 496) is the XXH64
//!   (seed 0) of the little-endian entries of the chunks that lie wholly within `written`
//!   ([`finished_chunks`]; all of them when the dump is complete), so that a damaged table is
//!   told apart from damaged data. The decoder cannot check the table (it sees only the
//!   header); `minicap save` does.
//!
//! XXH64 per chunk detects accidental damage (device, transfer, memory that changed under the
//! DMA) and says which chunks are affected; it is not a cryptographic hash and does not
//! detect deliberate tampering.
//!
//! The crate is `no_std` without `alloc`: the capture kernel uses it before it has a heap.

#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use core::fmt;

mod time;

pub use time::UtcTime;

/// Size of the encoded header: the 512-byte base header and its 512-byte extension.
pub const HEADER_LEN: usize = 1024;

/// Size of the base header, the part older readers know (the stored header length).
const BASE_LEN: usize = 512;

/// First bytes of a (non-zero) header extension, at byte 512.
pub const EXTENSION_MAGIC: [u8; 8] = *b"MCEXT\0\0\0";

/// First bytes of every header.
pub const MAGIC: [u8; 8] = *b"MINICAP\0";

/// The layout described here. A reader refuses other versions rather than guess.
pub const LAYOUT_VERSION: u32 = 1;

/// Where the triage text starts: 1 MiB, right after the chunk table's room.
pub const TRIAGE_OFFSET: u64 = 1 << 20;

/// Room for the triage text: 1 MiB.
pub const TRIAGE_CAPACITY: u64 = 1 << 20;

/// Where the dump starts: 2 MiB, after the triage area, aligned for 512-byte and 4 KiB
/// sectors alike.
pub const DUMP_OFFSET: u64 = TRIAGE_OFFSET + TRIAGE_CAPACITY;

/// Where writers before the triage area put the dump (1 MiB); readers still accept it.
pub const LEGACY_DUMP_OFFSET: u64 = 1 << 20;

/// The dump offsets a minicap writer ever used: [`DUMP_OFFSET`] and [`LEGACY_DUMP_OFFSET`].
pub const KNOWN_DUMP_OFFSETS: [u64; 2] = [DUMP_OFFSET, LEGACY_DUMP_OFFSET];

/// Smallest device `minicap format` accepts: the 2 MiB header, log, table and triage area
/// plus at least 1 MiB of dump space.
pub const MIN_CAPACITY: u64 = DUMP_OFFSET + (1 << 20);

/// Where the capture kernel stores its console log: a device without a serial
/// console still tells what happened (`minicap log DEVICE`).
pub const LOG_OFFSET: u64 = 64 << 10;

/// Room for the console log.
pub const LOG_CAPACITY: u64 = 64 << 10;

/// Length of the device id.
pub const DEVICE_ID_LEN: usize = 16;

/// Where the chunk checksum table starts (after the console log).
pub const CHUNK_TABLE_OFFSET: u64 = 128 << 10;

/// Room for the chunk checksum table: everything up to the triage area (896 KiB).
pub const CHUNK_TABLE_CAPACITY: u64 = TRIAGE_OFFSET - CHUNK_TABLE_OFFSET;

/// Bytes per table entry (one little-endian `u64`).
pub const CHUNK_ENTRY_LEN: u64 = 8;

/// Most chunks a dump can have: 114688 table entries.
pub const MAX_CHUNKS: u64 = CHUNK_TABLE_CAPACITY / CHUNK_ENTRY_LEN;

/// Smallest chunk size: 1 MiB.
pub const MIN_CHUNK_SIZE: u64 = 1 << 20;

const OFF_MAGIC: usize = 0;
const OFF_VERSION: usize = 8;
const OFF_HEADER_LEN: usize = 12;
const OFF_DEVICE_ID: usize = 16;
const OFF_STATE: usize = 32;
const OFF_FORMAT: usize = 36;
const OFF_DUMP_OFFSET: usize = 40;
const OFF_DUMP_LENGTH: usize = 48;
const OFF_WRITTEN: usize = 56;
const OFF_CAPACITY: usize = 64;
const OFF_CRASH_TIME: usize = 72;
const OFF_SHA256: usize = 80;
const OFF_WRITER: usize = 112;
const OFF_OSRELEASE: usize = 144;
const OFF_MESSAGE: usize = 208;
const OFF_LOG_LENGTH: usize = 464;
const OFF_FAILURE_CODE: usize = 468;
const OFF_SKIPPED_RANGES: usize = 472;
const OFF_VERIFY: usize = 476;
const OFF_SKIPPED_BYTES: usize = 480;
const OFF_CHUNK_SIZE: usize = 488;
const OFF_TABLE_XXH64: usize = 496;
const OFF_CRC: usize = 508;
const OFF_EXT_MAGIC: usize = 512;
const OFF_TRIAGE_LENGTH: usize = 520;
const OFF_COMPRESSION: usize = 524;
const OFF_LEVEL_REQUESTED: usize = 528;
const OFF_LEVEL: usize = 529;
const OFF_PAGES_RAM: usize = 536;
const OFF_PAGES_DUMPED: usize = 544;
const OFF_LEVEL_NOTE: usize = 552;
const OFF_SAVED_TIME: usize = 712;
const OFF_EXT_CRC: usize = 1020;

/// Length of [`DumpHeader::level_note`].
pub const LEVEL_NOTE_LEN: usize = 160;

/// Highest makedumpfile dump level (`-d 31`: every page class excluded).
pub const MAX_DUMP_LEVEL: u8 = 31;

/// Where a dump stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpState {
    /// 0: prepared by `minicap format`, holds no dump.
    Empty,
    /// 1: a capture started; the dump is incomplete (the kernel died or is still writing).
    Writing,
    /// 2: the whole dump is on the device and its checksum (see `verify`) is final.
    Complete,
    /// 3: the capture gave up; `message` says why, `written` how far it got.
    Failed,
}

impl DumpState {
    /// The value stored on the device.
    pub const fn to_raw(self) -> u32 {
        match self {
            Self::Empty => 0,
            Self::Writing => 1,
            Self::Complete => 2,
            Self::Failed => 3,
        }
    }

    /// Decodes a stored value; `None` if unknown.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Empty),
            1 => Some(Self::Writing),
            2 => Some(Self::Complete),
            3 => Some(Self::Failed),
            _ => None,
        }
    }

    /// Lower-case name for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Writing => "writing",
            Self::Complete => "complete",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for DumpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Encoding of the dump data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// 0: no dump data (an empty device).
    None,
    /// 1: an ELF vmcore laid out as /proc/vmcore presents it.
    ElfVmcore,
    /// 2: makedumpfile's kdump-compressed format (`makedumpfile -c/-l`, what `crash` and
    /// `makedumpfile --dump-dmesg` read), see `dump_level` and `compression`.
    KdumpCompressed,
}

impl DumpFormat {
    /// The value stored on the device.
    pub const fn to_raw(self) -> u32 {
        match self {
            Self::None => 0,
            Self::ElfVmcore => 1,
            Self::KdumpCompressed => 2,
        }
    }

    /// Decodes a stored value; `None` if unknown.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::None),
            1 => Some(Self::ElfVmcore),
            2 => Some(Self::KdumpCompressed),
            _ => None,
        }
    }

    /// Lower-case name for messages.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ElfVmcore => "elf-vmcore",
            Self::KdumpCompressed => "kdump-compressed",
        }
    }
}

impl fmt::Display for DumpFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the pages of a kdump-compressed dump are compressed (`minicap.compress=`), stored in
/// the header extension. [`Compression::None`] for an ELF dump and in every header written
/// before the extension existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// 0: pages stored as they are.
    #[default]
    None,
    /// 1: zlib (makedumpfile `-c`, `DUMP_DH_COMPRESSED_ZLIB`).
    Zlib,
    /// 2: LZO1X (makedumpfile `-l`, `DUMP_DH_COMPRESSED_LZO`).
    Lzo,
}

impl Compression {
    /// The value stored on the device.
    pub const fn to_raw(self) -> u32 {
        match self {
            Self::None => 0,
            Self::Zlib => 1,
            Self::Lzo => 2,
        }
    }

    /// Decodes a stored value; `None` if unknown.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::None),
            1 => Some(Self::Zlib),
            2 => Some(Self::Lzo),
            _ => None,
        }
    }

    /// Stable lower-case name (`minicap.compress=`, `minicap info`, its JSON).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Zlib => "zlib",
            Self::Lzo => "lzo",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the dump data can be checked (the header's `verify` field); see the crate docs.
///
/// Stored as a `u32` at byte 476, which layout 1 first left reserved (zero): older headers read
/// as [`Verification::Sha256`], which is what they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verification {
    /// 0: SHA-256 of the whole dump in `sha256`.
    #[default]
    Sha256,
    /// 1: no checksum (captured with `minicap.verify=none`).
    None,
    /// 2: XXH64 per `chunk_size` chunk in the table at [`CHUNK_TABLE_OFFSET`].
    Xxh64Chunks,
}

impl Verification {
    /// The value stored on the device.
    pub const fn to_raw(self) -> u32 {
        match self {
            Self::Sha256 => 0,
            Self::None => 1,
            Self::Xxh64Chunks => 2,
        }
    }

    /// Decodes a stored value; `None` if unknown.
    pub const fn from_raw(raw: u32) -> Option<Self> {
        match raw {
            0 => Some(Self::Sha256),
            1 => Some(Self::None),
            2 => Some(Self::Xxh64Chunks),
            _ => None,
        }
    }

    /// Stable lower-case name (`minicap info`, its JSON).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sha256 => "sha256",
            Self::None => "none",
            Self::Xxh64Chunks => "xxh64-chunks",
        }
    }
}

impl fmt::Display for Verification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The chunk size a writer uses for a dump of `dump_length` bytes: the smallest power of two
/// of at least [`MIN_CHUNK_SIZE`] that keeps the number of chunks within [`MAX_CHUNKS`]
/// (1 MiB up to 112 GiB, 16 MiB for 1 TiB).
pub const fn chunk_size_for(dump_length: u64) -> u64 {
    let mut size = MIN_CHUNK_SIZE;
    // Terminates: at 2^63 every u64 length needs at most 2 chunks.
    while chunk_count(dump_length, size) > MAX_CHUNKS {
        size <<= 1;
    }
    size
}

/// Number of chunks (table entries) of a dump of `dump_length` bytes: the last one may be
/// short. `chunk_size` must not be zero.
pub const fn chunk_count(dump_length: u64, chunk_size: u64) -> u64 {
    dump_length.div_ceil(chunk_size)
}

/// Number of chunks that lie wholly within the first `written` bytes of a dump of
/// `dump_length` bytes: the entries a table can hold final values for, and the ones
/// `table_xxh64` covers. The short last chunk counts once `written` reaches `dump_length`.
/// `chunk_size` must not be zero.
pub const fn finished_chunks(written: u64, dump_length: u64, chunk_size: u64) -> u64 {
    if written >= dump_length {
        chunk_count(dump_length, chunk_size)
    } else {
        written / chunk_size
    }
}

/// Why a capture stopped, as a stable code: the console's `RESULT: failure [code]` line and
/// the header carry it next to the sentence, so tools and tests match codes, not prose.
///
/// Stored as a `u32` at byte 468, which layout 1 first left reserved (zero): older headers read
/// as [`FailureCode::None`]. Numbers are never reused; new reasons get new numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureCode {
    /// 0: no failure recorded.
    None,
    /// The boot_params page the loader passed is unreadable or invalid.
    BadBootParams,
    /// A `minicap.*` option has an invalid value.
    BadOption,
    /// No `elfcorehdr=` on the command line (not loaded as a crash kernel).
    NoElfcorehdr,
    /// The `elfcorehdr=` argument itself is malformed.
    BadElfcorehdr,
    /// The ELF core headers it points at are unusable (magic, counts, ranges, notes).
    BadCoreHeaders,
    /// The memory map (e820) is unusable: empty, absurd or too fragmented.
    BadMemoryMap,
    /// The crash region is too small for minicap's heap, page tables or buffers.
    CrashMemoryTooSmall,
    /// Memory the dump must read lies beyond what minicap can map.
    MemoryNotMappable,
    /// The vmcore cannot be laid out (sizes overflow).
    BadLayout,
    /// An IOMMU could not be taken over safely.
    Iommu,
    /// No device of the requested kind was found.
    NoDevice,
    /// Devices were found but none is prepared by `minicap format`.
    NoPreparedDevice,
    /// No prepared device carries the `minicap.device=` id.
    DeviceIdMismatch,
    /// Several prepared devices and no `minicap.device=` to choose.
    AmbiguousDevice,
    /// The chosen device is smaller than the dump.
    DeviceTooSmall,
    /// The device's logical block size is one minicap cannot write.
    UnsupportedBlockSize,
    /// The device failed or timed out during the capture (write, flush, header update).
    DeviceError,
    /// A CPU exception stopped the capture.
    CpuException,
    /// minicap itself panicked (a bug).
    Internal,
    /// The whole capture ran past its time limit (`minicap.timeout=`): writing stopped, what
    /// was written is kept.
    Timeout,
    /// The device holds a dump nobody has saved yet: it is kept, nothing was written
    /// (`minicap.overwrite=any` replaces it).
    UnsavedDumpPresent,
}

impl FailureCode {
    const ALL: [FailureCode; 22] = [
        Self::None,
        Self::BadBootParams,
        Self::BadOption,
        Self::NoElfcorehdr,
        Self::BadElfcorehdr,
        Self::BadCoreHeaders,
        Self::BadMemoryMap,
        Self::CrashMemoryTooSmall,
        Self::MemoryNotMappable,
        Self::BadLayout,
        Self::Iommu,
        Self::NoDevice,
        Self::NoPreparedDevice,
        Self::DeviceIdMismatch,
        Self::AmbiguousDevice,
        Self::DeviceTooSmall,
        Self::UnsupportedBlockSize,
        Self::DeviceError,
        Self::CpuException,
        Self::Internal,
        Self::Timeout,
        Self::UnsavedDumpPresent,
    ];

    /// The value stored on the device.
    pub const fn to_raw(self) -> u32 {
        match self {
            Self::None => 0,
            Self::BadBootParams => 1,
            Self::BadOption => 2,
            Self::NoElfcorehdr => 3,
            Self::BadElfcorehdr => 4,
            Self::BadCoreHeaders => 5,
            Self::BadMemoryMap => 6,
            Self::CrashMemoryTooSmall => 7,
            Self::MemoryNotMappable => 8,
            Self::BadLayout => 9,
            Self::Iommu => 10,
            Self::NoDevice => 11,
            Self::NoPreparedDevice => 12,
            Self::DeviceIdMismatch => 13,
            Self::AmbiguousDevice => 14,
            Self::DeviceTooSmall => 15,
            Self::UnsupportedBlockSize => 16,
            Self::DeviceError => 17,
            Self::CpuException => 18,
            Self::Internal => 19,
            Self::Timeout => 20,
            Self::UnsavedDumpPresent => 21,
        }
    }

    /// Decodes a stored value; `None` if unknown (a newer writer).
    pub fn from_raw(raw: u32) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.to_raw() == raw)
    }

    /// The stable short name printed in `RESULT: failure [name]` and by `minicap info`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::BadBootParams => "bad-boot-params",
            Self::BadOption => "bad-option",
            Self::NoElfcorehdr => "no-elfcorehdr",
            Self::BadElfcorehdr => "bad-elfcorehdr",
            Self::BadCoreHeaders => "bad-core-headers",
            Self::BadMemoryMap => "bad-memory-map",
            Self::CrashMemoryTooSmall => "crash-memory-too-small",
            Self::MemoryNotMappable => "memory-not-mappable",
            Self::BadLayout => "bad-layout",
            Self::Iommu => "iommu",
            Self::NoDevice => "no-device",
            Self::NoPreparedDevice => "no-prepared-device",
            Self::DeviceIdMismatch => "device-id-mismatch",
            Self::AmbiguousDevice => "ambiguous-device",
            Self::DeviceTooSmall => "device-too-small",
            Self::UnsupportedBlockSize => "unsupported-block-size",
            Self::DeviceError => "device-error",
            Self::CpuException => "cpu-exception",
            Self::Internal => "internal",
            Self::Timeout => "timeout",
            Self::UnsavedDumpPresent => "unsaved-dump",
        }
    }

    /// Every code, for tools that list them.
    pub const fn all() -> &'static [FailureCode] {
        &Self::ALL
    }
}

impl fmt::Display for FailureCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a sector does not hold a usable header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// Fewer than [`HEADER_LEN`] bytes were given.
    TooShort {
        /// Bytes available.
        len: usize,
    },
    /// The magic is missing: this device was not prepared by `minicap format`.
    NotMinicap,
    /// A layout version this code does not know.
    UnsupportedVersion {
        /// The stored version.
        version: u32,
    },
    /// The stored (base) header length is not 512.
    BadHeaderLen {
        /// The stored length.
        header_len: u32,
    },
    /// The CRC does not match: the sector is damaged or half written.
    BadCrc {
        /// CRC stored at byte 508.
        stored: u32,
        /// CRC computed over bytes 0..508.
        computed: u32,
    },
    /// Unknown `state` value.
    UnknownState {
        /// The stored value.
        raw: u32,
    },
    /// Unknown `format` value.
    UnknownFormat {
        /// The stored value.
        raw: u32,
    },
    /// Unknown `failure_code` value.
    UnknownFailureCode {
        /// The stored value.
        raw: u32,
    },
    /// Unknown `verify` value.
    UnknownVerification {
        /// The stored value.
        raw: u32,
    },
    /// The extension (bytes 512..1024) is not all zero and does not start with
    /// [`EXTENSION_MAGIC`].
    BadExtensionMagic,
    /// The extension's CRC does not match: the sector is damaged or half written.
    BadExtensionCrc {
        /// CRC stored at byte 1020.
        stored: u32,
        /// CRC computed over bytes 512..1020.
        computed: u32,
    },
    /// Unknown `compression` value.
    UnknownCompression {
        /// The stored value.
        raw: u32,
    },
    /// The numbers contradict each other; the text says how.
    Inconsistent(&'static str),
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => {
                write!(f, "header too short: {len} bytes, need {HEADER_LEN}")
            }
            Self::NotMinicap => f.write_str("not a minicap dump device (no MINICAP signature)"),
            Self::UnsupportedVersion { version } => write!(
                f,
                "unsupported minicap layout version {version} (this build knows {LAYOUT_VERSION})"
            ),
            Self::BadHeaderLen { header_len } => {
                write!(f, "bad header length {header_len} (expected {BASE_LEN})")
            }
            Self::BadCrc { stored, computed } => write!(
                f,
                "header checksum mismatch (stored {stored:#010x}, computed {computed:#010x})"
            ),
            Self::UnknownState { raw } => write!(f, "unknown dump state {raw}"),
            Self::UnknownFormat { raw } => write!(f, "unknown dump format {raw}"),
            Self::UnknownFailureCode { raw } => write!(f, "unknown failure code {raw}"),
            Self::UnknownVerification { raw } => write!(f, "unknown verification method {raw}"),
            Self::BadExtensionMagic => {
                f.write_str("header extension (bytes 512..1024) is neither zero nor minicap's")
            }
            Self::BadExtensionCrc { stored, computed } => write!(
                f,
                "header extension checksum mismatch (stored {stored:#010x}, computed \
                 {computed:#010x})"
            ),
            Self::UnknownCompression { raw } => write!(f, "unknown compression {raw}"),
            Self::Inconsistent(why) => write!(f, "inconsistent header: {why}"),
        }
    }
}

impl core::error::Error for HeaderError {}

/// The decoded first sector of a dump device.
///
/// The constant fields (magic, layout version, header length, CRC) are not stored: `encode`
/// writes them and `decode` checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpHeader {
    /// Random id chosen by `minicap format`; the capture kernel writes only to the device whose
    /// id matches `minicap.device=`.
    pub device_id: [u8; DEVICE_ID_LEN],
    /// Where the dump stands.
    pub state: DumpState,
    /// How the dump data is encoded.
    pub format: DumpFormat,
    /// Byte offset of the dump on the device: [`DUMP_OFFSET`], or [`LEGACY_DUMP_OFFSET`] on
    /// devices written before the triage area existed.
    pub dump_offset: u64,
    /// Planned total size of the dump in bytes.
    pub dump_length: u64,
    /// Bytes of the dump known to be on the device; equals `dump_length` when complete.
    pub written: u64,
    /// Device size in bytes as seen by whoever wrote the header.
    pub capacity: u64,
    /// CRASHTIME from VMCOREINFO (seconds since the epoch), 0 if unknown.
    pub crash_time: i64,
    /// SHA-256 of the `dump_length` bytes at `dump_offset`; meaningful only when complete and
    /// `verify` is [`Verification::Sha256`].
    pub sha256: [u8; 32],
    /// NUL-padded ASCII name and version of the writer, e.g. "minicap 0.1.0".
    pub writer: [u8; 32],
    /// NUL-padded OSRELEASE of the crashed kernel.
    pub osrelease: [u8; 64],
    /// NUL-padded ASCII failure reason, empty otherwise.
    pub message: [u8; 256],
    /// Bytes of console log text at [`LOG_OFFSET`] (0: none). Stored in bytes
    /// that layout 1 first left reserved (zero), so older headers read as "no log".
    pub log_length: u32,
    /// Why the capture failed ([`FailureCode::None`] unless `state` is failed).
    pub failure_code: FailureCode,
    /// PT_LOAD ranges of the core headers that minicap did not dump because the memory map
    /// does not call them RAM (their bytes read as zero in the dump).
    pub skipped_ranges: u32,
    /// Bytes in those skipped ranges.
    pub skipped_bytes: u64,
    /// How the dump data can be checked.
    pub verify: Verification,
    /// Bytes per chunk of the checksum table when `verify` is [`Verification::Xxh64Chunks`]
    /// (see [`chunk_size_for`]), else 0.
    pub chunk_size: u64,
    /// XXH64 (seed 0) of the little-endian table entries of the [`finished_chunks`] of
    /// `written`, when `verify` is [`Verification::Xxh64Chunks`], else 0.
    pub table_xxh64: u64,
    /// Bytes of triage text at [`TRIAGE_OFFSET`] (0: none). Written and flushed before the
    /// dump, so it survives a device that fails or fills up later.
    pub triage_length: u32,
    /// The makedumpfile dump level asked for (`minicap.dump_level=`, 0..=31; 0 for a whole
    /// ELF vmcore).
    pub dump_level_requested: u8,
    /// The dump level applied: the requested one, or a lower one that is safe (see
    /// `level_note`).
    pub dump_level: u8,
    /// How the pages of a kdump-compressed dump are compressed.
    pub compression: Compression,
    /// NUL-padded ASCII: why `dump_level` is lower than `dump_level_requested`, empty
    /// otherwise.
    pub level_note: [u8; LEVEL_NOTE_LEN],
    /// Pages of RAM the crashed kernel had (kdump-compressed or filtered ELF; 0 for a whole
    /// ELF vmcore).
    pub pages_ram: u64,
    /// Pages written to the dump with their contents (kdump-compressed, or filtered ELF
    /// where a frame in both the direct-map and the kernel-text PT_LOAD counts twice; 0 for
    /// a whole ELF vmcore).
    pub pages_dumped: u64,
    /// When `minicap save` copied the dump off the device (seconds since 1970), 0 if it has
    /// not: see [`DumpHeader::holds_unsaved_dump`].
    pub saved_time: i64,
}

impl DumpHeader {
    /// The header `minicap format` writes: no dump yet, the dump area at [`DUMP_OFFSET`].
    pub fn new_empty(device_id: [u8; DEVICE_ID_LEN], capacity: u64, writer: &str) -> Self {
        let mut h = Self {
            device_id,
            state: DumpState::Empty,
            format: DumpFormat::None,
            dump_offset: DUMP_OFFSET,
            dump_length: 0,
            written: 0,
            capacity,
            crash_time: 0,
            sha256: [0; 32],
            writer: [0; 32],
            osrelease: [0; 64],
            message: [0; 256],
            log_length: 0,
            failure_code: FailureCode::None,
            skipped_ranges: 0,
            skipped_bytes: 0,
            verify: Verification::Sha256,
            chunk_size: 0,
            table_xxh64: 0,
            triage_length: 0,
            dump_level_requested: 0,
            dump_level: 0,
            compression: Compression::None,
            level_note: [0; LEVEL_NOTE_LEN],
            pages_ram: 0,
            pages_dumped: 0,
            saved_time: 0,
        };
        set_text(&mut h.writer, writer);
        h
    }

    /// Encodes the header and its extension, reserved bytes zero and both CRCs filled in. It
    /// does not validate: call [`DumpHeader::validate`] first if the values come from
    /// elsewhere.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, OFF_MAGIC, &MAGIC);
        put(&mut b, OFF_VERSION, &LAYOUT_VERSION.to_le_bytes());
        // The base header's length, which older readers check (BASE_LEN; the literal avoids
        // a cast).
        put(&mut b, OFF_HEADER_LEN, &512u32.to_le_bytes());
        put(&mut b, OFF_DEVICE_ID, &self.device_id);
        put(&mut b, OFF_STATE, &self.state.to_raw().to_le_bytes());
        put(&mut b, OFF_FORMAT, &self.format.to_raw().to_le_bytes());
        put(&mut b, OFF_DUMP_OFFSET, &self.dump_offset.to_le_bytes());
        put(&mut b, OFF_DUMP_LENGTH, &self.dump_length.to_le_bytes());
        put(&mut b, OFF_WRITTEN, &self.written.to_le_bytes());
        put(&mut b, OFF_CAPACITY, &self.capacity.to_le_bytes());
        put(&mut b, OFF_CRASH_TIME, &self.crash_time.to_le_bytes());
        put(&mut b, OFF_SHA256, &self.sha256);
        put(&mut b, OFF_WRITER, &self.writer);
        put(&mut b, OFF_OSRELEASE, &self.osrelease);
        put(&mut b, OFF_MESSAGE, &self.message);
        put(&mut b, OFF_LOG_LENGTH, &self.log_length.to_le_bytes());
        put(
            &mut b,
            OFF_FAILURE_CODE,
            &self.failure_code.to_raw().to_le_bytes(),
        );
        put(
            &mut b,
            OFF_SKIPPED_RANGES,
            &self.skipped_ranges.to_le_bytes(),
        );
        put(&mut b, OFF_VERIFY, &self.verify.to_raw().to_le_bytes());
        put(&mut b, OFF_SKIPPED_BYTES, &self.skipped_bytes.to_le_bytes());
        put(&mut b, OFF_CHUNK_SIZE, &self.chunk_size.to_le_bytes());
        put(&mut b, OFF_TABLE_XXH64, &self.table_xxh64.to_le_bytes());
        let crc = crc32(&b[..OFF_CRC]);
        put(&mut b, OFF_CRC, &crc.to_le_bytes());

        put(&mut b, OFF_EXT_MAGIC, &EXTENSION_MAGIC);
        put(&mut b, OFF_TRIAGE_LENGTH, &self.triage_length.to_le_bytes());
        put(
            &mut b,
            OFF_COMPRESSION,
            &self.compression.to_raw().to_le_bytes(),
        );
        put(&mut b, OFF_LEVEL_REQUESTED, &[self.dump_level_requested]);
        put(&mut b, OFF_LEVEL, &[self.dump_level]);
        put(&mut b, OFF_PAGES_RAM, &self.pages_ram.to_le_bytes());
        put(&mut b, OFF_PAGES_DUMPED, &self.pages_dumped.to_le_bytes());
        put(&mut b, OFF_LEVEL_NOTE, &self.level_note);
        put(&mut b, OFF_SAVED_TIME, &self.saved_time.to_le_bytes());
        let crc = crc32(&b[BASE_LEN..OFF_EXT_CRC]);
        put(&mut b, OFF_EXT_CRC, &crc.to_le_bytes());
        b
    }

    /// Decodes and validates the first [`HEADER_LEN`] bytes of `bytes`.
    ///
    /// Checks, in order: length, magic ([`HeaderError::NotMinicap`]), layout version and base
    /// header length (before the CRC, because another version may place the CRC elsewhere),
    /// CRC, state, format, failure code and verification values, the extension (all zero, or
    /// its magic, CRC and compression value), then [`DumpHeader::validate`]. Reserved bytes are
    /// not checked.
    pub fn decode(bytes: &[u8]) -> Result<Self, HeaderError> {
        let b: &[u8; HEADER_LEN] = bytes
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(HeaderError::TooShort { len: bytes.len() })?;
        if get::<8>(b, OFF_MAGIC) != MAGIC {
            return Err(HeaderError::NotMinicap);
        }
        let version = u32_at(b, OFF_VERSION);
        if version != LAYOUT_VERSION {
            return Err(HeaderError::UnsupportedVersion { version });
        }
        let header_len = u32_at(b, OFF_HEADER_LEN);
        if usize::try_from(header_len) != Ok(BASE_LEN) {
            return Err(HeaderError::BadHeaderLen { header_len });
        }
        let stored = u32_at(b, OFF_CRC);
        let computed = crc32(&b[..OFF_CRC]);
        if stored != computed {
            return Err(HeaderError::BadCrc { stored, computed });
        }
        let raw_state = u32_at(b, OFF_STATE);
        let state =
            DumpState::from_raw(raw_state).ok_or(HeaderError::UnknownState { raw: raw_state })?;
        let raw_format = u32_at(b, OFF_FORMAT);
        let format = DumpFormat::from_raw(raw_format)
            .ok_or(HeaderError::UnknownFormat { raw: raw_format })?;
        let raw_code = u32_at(b, OFF_FAILURE_CODE);
        let failure_code = FailureCode::from_raw(raw_code)
            .ok_or(HeaderError::UnknownFailureCode { raw: raw_code })?;
        let raw_verify = u32_at(b, OFF_VERIFY);
        let verify = Verification::from_raw(raw_verify)
            .ok_or(HeaderError::UnknownVerification { raw: raw_verify })?;
        let ext = Extension::decode(b)?;
        let h = Self {
            device_id: get(b, OFF_DEVICE_ID),
            state,
            format,
            dump_offset: u64_at(b, OFF_DUMP_OFFSET),
            dump_length: u64_at(b, OFF_DUMP_LENGTH),
            written: u64_at(b, OFF_WRITTEN),
            capacity: u64_at(b, OFF_CAPACITY),
            crash_time: i64::from_le_bytes(get(b, OFF_CRASH_TIME)),
            sha256: get(b, OFF_SHA256),
            writer: get(b, OFF_WRITER),
            osrelease: get(b, OFF_OSRELEASE),
            message: get(b, OFF_MESSAGE),
            log_length: u32_at(b, OFF_LOG_LENGTH),
            failure_code,
            skipped_ranges: u32_at(b, OFF_SKIPPED_RANGES),
            skipped_bytes: u64_at(b, OFF_SKIPPED_BYTES),
            verify,
            chunk_size: u64_at(b, OFF_CHUNK_SIZE),
            table_xxh64: u64_at(b, OFF_TABLE_XXH64),
            triage_length: ext.triage_length,
            dump_level_requested: ext.dump_level_requested,
            dump_level: ext.dump_level,
            compression: ext.compression,
            level_note: ext.level_note,
            pages_ram: ext.pages_ram,
            pages_dumped: ext.pages_dumped,
            saved_time: ext.saved_time,
        };
        h.validate()?;
        Ok(h)
    }

    /// Checks that the numbers agree with each other:
    ///
    /// * `dump_offset` is at least [`HEADER_LEN`] and a multiple of 512 (sector aligned);
    /// * the triage text fits its area, and a header that has one places the dump after it;
    /// * dump levels are at most [`MAX_DUMP_LEVEL`];
    /// * `written <= dump_length`;
    /// * the written part, `dump_offset + written`, fits in 64 bits and in `capacity` (the
    ///   planned `dump_length` may exceed it: a capture that found the device too small records
    ///   the planned size and fails);
    /// * a complete dump has `written == dump_length` and a format;
    /// * with [`Verification::Xxh64Chunks`], `chunk_size` is a power of two of at least
    ///   [`MIN_CHUNK_SIZE`] and the dump has at most [`MAX_CHUNKS`] chunks of it; otherwise
    ///   `chunk_size` and `table_xxh64` are 0.
    ///
    /// Whether `table_xxh64` matches the table on the device is for the reader of the table
    /// to check (`minicap save`).
    pub fn validate(&self) -> Result<(), HeaderError> {
        if usize::try_from(self.dump_offset).is_ok_and(|o| o < HEADER_LEN)
            || self.dump_offset & 511 != 0
        {
            return Err(HeaderError::Inconsistent(
                "dump offset inside the header or not sector aligned",
            ));
        }
        if u64::from(self.triage_length) > TRIAGE_CAPACITY {
            return Err(HeaderError::Inconsistent(
                "triage text longer than its area",
            ));
        }
        if self.triage_length > 0 && self.dump_offset < TRIAGE_OFFSET + TRIAGE_CAPACITY {
            return Err(HeaderError::Inconsistent(
                "triage text recorded but the dump overlaps its area",
            ));
        }
        if self.dump_level_requested > MAX_DUMP_LEVEL || self.dump_level > MAX_DUMP_LEVEL {
            return Err(HeaderError::Inconsistent("dump level above 31"));
        }
        if self.written > self.dump_length {
            return Err(HeaderError::Inconsistent(
                "more bytes written than the dump length",
            ));
        }
        match self.dump_offset.checked_add(self.written) {
            Some(end) if end <= self.capacity => {}
            _ => {
                return Err(HeaderError::Inconsistent(
                    "written part of the dump extends past the device capacity",
                ))
            }
        }
        if u64::from(self.log_length) > LOG_CAPACITY {
            return Err(HeaderError::Inconsistent(
                "console log longer than its area",
            ));
        }
        if self.state == DumpState::Complete {
            if self.written != self.dump_length {
                return Err(HeaderError::Inconsistent(
                    "complete dump with written != dump length",
                ));
            }
            if self.format == DumpFormat::None {
                return Err(HeaderError::Inconsistent("complete dump without a format"));
            }
        }
        if self.verify == Verification::Xxh64Chunks {
            if self.chunk_size < MIN_CHUNK_SIZE || !self.chunk_size.is_power_of_two() {
                return Err(HeaderError::Inconsistent(
                    "chunk size not a power of two of at least 1 MiB",
                ));
            }
            if chunk_count(self.dump_length, self.chunk_size) > MAX_CHUNKS {
                return Err(HeaderError::Inconsistent(
                    "more chunks than the checksum table holds",
                ));
            }
        } else if self.chunk_size != 0 || self.table_xxh64 != 0 {
            return Err(HeaderError::Inconsistent(
                "chunk size or table checksum set without chunk checksums",
            ));
        }
        Ok(())
    }

    /// Sets `verify` and the `chunk_size` that goes with it for the current `dump_length`
    /// ([`chunk_size_for`] for chunk checksums, else 0). `table_xxh64` is reset to 0: the
    /// writer sets it at each checkpoint.
    pub fn set_verification(&mut self, verify: Verification) {
        self.verify = verify;
        self.chunk_size = match verify {
            Verification::Xxh64Chunks => chunk_size_for(self.dump_length),
            Verification::Sha256 | Verification::None => 0,
        };
        self.table_xxh64 = 0;
    }

    /// Sets [`DumpHeader::writer`]; see [`set_text`].
    pub fn set_writer(&mut self, text: &str) {
        set_text(&mut self.writer, text);
    }

    /// Sets [`DumpHeader::osrelease`]; see [`set_text`].
    pub fn set_osrelease(&mut self, text: &str) {
        set_text(&mut self.osrelease, text);
    }

    /// Sets [`DumpHeader::message`]; see [`set_text`].
    pub fn set_message(&mut self, text: &str) {
        set_text(&mut self.message, text);
    }

    /// [`DumpHeader::writer`] as text; see [`text`].
    pub fn writer_str(&self) -> &str {
        text(&self.writer)
    }

    /// [`DumpHeader::osrelease`] as text; see [`text`].
    pub fn osrelease_str(&self) -> &str {
        text(&self.osrelease)
    }

    /// [`DumpHeader::message`] as text; see [`text`].
    pub fn message_str(&self) -> &str {
        text(&self.message)
    }

    /// Sets [`DumpHeader::level_note`]; see [`set_text`].
    pub fn set_level_note(&mut self, note: &str) {
        set_text(&mut self.level_note, note);
    }

    /// [`DumpHeader::level_note`] as text; see [`text`].
    pub fn level_note(&self) -> &str {
        text(&self.level_note)
    }

    /// Whether the device holds dump data (a capture confirmed at least one byte of it:
    /// complete, partial or failed part way) that `minicap save` has not copied off yet.
    /// A capture that failed before its first confirmed byte left no dump (its triage text
    /// alone is not one): nothing to keep.
    pub fn holds_unsaved_dump(&self) -> bool {
        self.state != DumpState::Empty && self.written > 0 && self.saved_time == 0
    }

    /// Whether `minicap save` copied this header's dump off the device.
    pub fn is_saved(&self) -> bool {
        self.saved_time != 0
    }
}

/// The fields of the header extension (bytes 512..1024), decoded.
struct Extension {
    triage_length: u32,
    dump_level_requested: u8,
    dump_level: u8,
    compression: Compression,
    level_note: [u8; LEVEL_NOTE_LEN],
    pages_ram: u64,
    pages_dumped: u64,
    saved_time: i64,
}

impl Extension {
    /// Decodes the extension of an encoded header: all zero (an older writer) is the
    /// defaults, anything else must carry the magic and its CRC.
    fn decode(b: &[u8; HEADER_LEN]) -> Result<Self, HeaderError> {
        if b[BASE_LEN..].iter().all(|&x| x == 0) {
            return Ok(Self {
                triage_length: 0,
                dump_level_requested: 0,
                dump_level: 0,
                compression: Compression::None,
                level_note: [0; LEVEL_NOTE_LEN],
                pages_ram: 0,
                pages_dumped: 0,
                saved_time: 0,
            });
        }
        if get::<8>(b, OFF_EXT_MAGIC) != EXTENSION_MAGIC {
            return Err(HeaderError::BadExtensionMagic);
        }
        let stored = u32_at(b, OFF_EXT_CRC);
        let computed = crc32(&b[BASE_LEN..OFF_EXT_CRC]);
        if stored != computed {
            return Err(HeaderError::BadExtensionCrc { stored, computed });
        }
        let raw = u32_at(b, OFF_COMPRESSION);
        let [dump_level_requested] = get(b, OFF_LEVEL_REQUESTED);
        let [dump_level] = get(b, OFF_LEVEL);
        Ok(Self {
            triage_length: u32_at(b, OFF_TRIAGE_LENGTH),
            dump_level_requested,
            dump_level,
            compression: Compression::from_raw(raw)
                .ok_or(HeaderError::UnknownCompression { raw })?,
            level_note: get(b, OFF_LEVEL_NOTE),
            pages_ram: u64_at(b, OFF_PAGES_RAM),
            pages_dumped: u64_at(b, OFF_PAGES_DUMPED),
            saved_time: i64::from_le_bytes(get(b, OFF_SAVED_TIME)),
        })
    }
}

/// Stores `text` in a fixed NUL-padded field.
///
/// Text longer than the field is cut at the last char boundary that fits, so the field stays
/// valid UTF-8; a message is better shortened than lost. A text exactly as long as the field
/// fills it without a terminating NUL (readers stop at the field's end). Text after an embedded
/// NUL would be invisible to readers.
pub fn set_text<const N: usize>(field: &mut [u8; N], text: &str) {
    let mut len = text.len().min(N);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    field.fill(0);
    field[..len].copy_from_slice(&text.as_bytes()[..len]);
}

/// Reads a NUL-padded field: the bytes before the first NUL. If they are not valid UTF-8 (a
/// foreign or damaged header), the longest valid prefix is returned rather than nothing.
pub fn text(field: &[u8]) -> &str {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    match core::str::from_utf8(&field[..end]) {
        Ok(s) => s,
        Err(e) => core::str::from_utf8(&field[..e.valid_up_to()]).unwrap_or(""),
    }
}

/// Device size needed for a dump of `dump_length` bytes at [`DUMP_OFFSET`]: the offset plus the length,
/// rounded up to 4096 so that the last write can be a whole 4 KiB sector. Saturates at
/// `u64::MAX` (no device is that large, so the comparison with its size still fails).
pub fn required_capacity(dump_length: u64) -> u64 {
    DUMP_OFFSET
        .checked_add(dump_length)
        .and_then(|n| n.checked_next_multiple_of(minicap_physmem::PAGE_SIZE))
        .unwrap_or(u64::MAX)
}

/// Formats a device id as the 32 lower-case hex digits `minicap.device=` expects.
#[derive(Debug, Clone, Copy)]
pub struct DeviceIdHex<'a>(pub &'a [u8; DEVICE_ID_LEN]);

impl fmt::Display for DeviceIdHex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&minicap_physmem::Hex(self.0), f)
    }
}

/// Parses exactly 32 hex digits (either case) into a device id; `None` otherwise.
pub fn parse_device_id(s: &str) -> Option<[u8; DEVICE_ID_LEN]> {
    let bytes = s.as_bytes();
    if bytes.len() != 2 * DEVICE_ID_LEN {
        return None;
    }
    let mut id = [0u8; DEVICE_ID_LEN];
    for (out, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *out = u8::try_from(hi << 4 | lo).ok()?;
    }
    Some(id)
}

/// CRC-32/IEEE lookup table (reflected polynomial 0xEDB88320), built at compile time.
const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut n = 0u32;
    while n < 256 {
        let mut c = n;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[n as usize] = c;
        n += 1;
    }
    table
}

/// CRC-32/IEEE (as zlib, gzip and Ethernet compute it) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[usize::from(c.to_le_bytes()[0] ^ b)] ^ (c >> 8)
    })
}

fn put(buf: &mut [u8; HEADER_LEN], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

/// A field of the fixed-size header buffer: never missing.
fn get<const N: usize>(buf: &[u8; HEADER_LEN], off: usize) -> [u8; N] {
    minicap_physmem::array_at(buf, off).unwrap_or([0; N])
}

fn u32_at(buf: &[u8; HEADER_LEN], off: usize) -> u32 {
    u32::from_le_bytes(get(buf, off))
}

fn u64_at(buf: &[u8; HEADER_LEN], off: usize) -> u64 {
    u64::from_le_bytes(get(buf, off))
}

#[cfg(test)]
mod tests;

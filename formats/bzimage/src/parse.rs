//! Reading a bzImage back the way the Linux x86_64 bzImage64 loaders do: the checks of Linux
//! `bzImage64_probe()` (arch/x86/kernel/kexec-bzimage64.c) and kexec-tools' `bzImage64_probe()`
//! (kexec/arch/x86_64/kexec-bzImage64.c), then what their `*_load()` functions take from the
//! file: the setup area length, the setup header bytes copied into `boot_params`, the payload and
//! the memory reserved for it.

use core::fmt;

use crate::builder::align_up;
use crate::bytes::{get, get_u16, get_u32, get_u64};
use crate::layout::*;

/// The smallest file both loaders look at: two sectors.
pub const MIN_IMAGE_LEN: usize = 2 * SECTOR_SIZE;

/// Why a file is not a bzImage a 64-bit kexec loader would load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Shorter than two sectors.
    TooShort {
        /// File length.
        len: usize,
    },
    /// No "HdrS" at 0x202.
    NoHdrS,
    /// `boot_flag` is not 0xAA55.
    NoBootFlag {
        /// The value found.
        found: u16,
    },
    /// Boot protocol older than 2.12.
    ProtocolTooOld {
        /// The version found.
        version: u16,
    },
    /// `loadflags` lacks LOADED_HIGH: a zImage.
    NotLoadedHigh,
    /// `xloadflags` lacks XLF_KERNEL_64 or XLF_CAN_BE_LOADED_ABOVE_4G.
    NotKernel64 {
        /// The flags found.
        xloadflags: u16,
    },
    /// The file ends inside the setup area `setup_sects` declares.
    Truncated {
        /// File length.
        len: usize,
        /// Setup area length, `(setup_sects + 1) * 512`.
        setup_len: usize,
    },
    /// The header length the jump at 0x200 declares runs past `boot_params.hdr`.
    HeaderTooLong {
        /// Bytes the loaders would copy.
        len: usize,
    },
    /// The payload does not reach its 64-bit entry at 0x200.
    NoEntry64 {
        /// Payload length.
        len: usize,
    },
    /// The payload is longer than `PAGE_ALIGN(init_size)`: the kernel refuses a segment whose
    /// buffer exceeds its memory.
    PayloadExceedsInitSize {
        /// Payload length (everything after the setup area, any signature included).
        len: usize,
        /// `init_size`.
        init_size: u32,
    },
    /// `kernel_alignment` is not a power of two.
    BadAlignment {
        /// The value found.
        alignment: u32,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "{len} bytes: too short to be a bzImage (at least {MIN_IMAGE_LEN})"
            ),
            Self::NoHdrS => write!(f, "no \"HdrS\" at 0x202: not a bzImage"),
            Self::NoBootFlag { found } => {
                write!(f, "boot_flag is {found:#06x}, not 0xaa55: no x86 boot sector")
            }
            Self::ProtocolTooOld { version } => write!(
                f,
                "boot protocol {version:#06x}: a 64-bit kexec load needs at least 2.12"
            ),
            Self::NotLoadedHigh => write!(f, "loadflags lacks LOADED_HIGH: a zImage, not a bzImage"),
            Self::NotKernel64 { xloadflags } => write!(
                f,
                "xloadflags {xloadflags:#x} lacks XLF_KERNEL_64 or XLF_CAN_BE_LOADED_ABOVE_4G: not a bzImage64"
            ),
            Self::Truncated { len, setup_len } => write!(
                f,
                "{len} bytes: shorter than the {setup_len}-byte setup area it declares"
            ),
            Self::HeaderTooLong { len } => write!(
                f,
                "the jump at 0x200 declares a {len}-byte setup header, longer than boot_params.hdr"
            ),
            Self::NoEntry64 { len } => write!(
                f,
                "the {len}-byte payload ends before its 64-bit entry at {ENTRY64_OFFSET:#x}"
            ),
            Self::PayloadExceedsInitSize { len, init_size } => write!(
                f,
                "the payload ({len:#x} bytes) is larger than init_size {init_size:#x}"
            ),
            Self::BadAlignment { alignment } => {
                write!(f, "kernel_alignment {alignment:#x} is not a power of two")
            }
        }
    }
}

impl core::error::Error for ParseError {}

/// A bzImage64 as the loaders see it. (`Debug` shows the slices' lengths, not their bytes.)
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BzImage<'a> {
    /// The setup header bytes the loaders copy into `boot_params` at 0x1f1
    /// (`0x202 + byte[0x201] - 0x1f1` of them).
    pub setup_header: &'a [u8],
    /// Everything after the setup area: what the loaders place at the load address (an appended
    /// signature included, as the loaders do).
    pub payload: &'a [u8],
    /// `setup_sects`, 0 read as 4.
    pub setup_sects: u8,
    /// Boot protocol version.
    pub version: u16,
    /// `loadflags`.
    pub loadflags: u8,
    /// `xloadflags`.
    pub xloadflags: u16,
    /// `kernel_alignment`.
    pub kernel_alignment: u32,
    /// `relocatable_kernel`.
    pub relocatable_kernel: u8,
    /// `min_alignment`.
    pub min_alignment: u8,
    /// `cmdline_size`.
    pub cmdline_size: u32,
    /// `pref_address`.
    pub pref_address: u64,
    /// `init_size`.
    pub init_size: u32,
    /// `handover_offset`.
    pub handover_offset: u32,
    /// `kernel_info_offset` (0 below protocol 2.15).
    pub kernel_info_offset: u32,
}

impl fmt::Debug for BzImage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BzImage")
            .field("setup_header_len", &self.setup_header.len())
            .field("payload_len", &self.payload.len())
            .field("setup_sects", &self.setup_sects)
            .field("version", &format_args!("{:#06x}", self.version))
            .field("xloadflags", &format_args!("{:#x}", self.xloadflags))
            .field(
                "kernel_alignment",
                &format_args!("{:#x}", self.kernel_alignment),
            )
            .field("init_size", &format_args!("{:#x}", self.init_size))
            .finish_non_exhaustive()
    }
}

impl<'a> BzImage<'a> {
    /// Validates `file` as a 64-bit relocatable bzImage, in the order of the loaders' probes.
    pub fn parse(file: &'a [u8]) -> Result<Self, ParseError> {
        if file.len() < MIN_IMAGE_LEN {
            return Err(ParseError::TooShort { len: file.len() });
        }
        // The file is at least 1024 bytes, so every header field below is present.
        let u8_at = |at: usize| file[at];
        let u16_at = |at: usize| get_u16(file, at).unwrap_or(0);
        let u32_at = |at: usize| get_u32(file, at).unwrap_or(0);
        if get::<4>(file, OFF_HEADER_MAGIC) != Some(HEADER_MAGIC) {
            return Err(ParseError::NoHdrS);
        }
        let boot_flag = u16_at(OFF_BOOT_FLAG);
        if boot_flag != BOOT_FLAG {
            return Err(ParseError::NoBootFlag { found: boot_flag });
        }
        let version = u16_at(OFF_VERSION);
        if version < MIN_PROTOCOL_VERSION {
            return Err(ParseError::ProtocolTooOld { version });
        }
        let loadflags = u8_at(OFF_LOADFLAGS);
        if loadflags & LOADED_HIGH == 0 {
            return Err(ParseError::NotLoadedHigh);
        }
        let xloadflags = u16_at(OFF_XLOADFLAGS);
        let needed = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G;
        if xloadflags & needed != needed {
            return Err(ParseError::NotKernel64 { xloadflags });
        }

        let setup_sects = match u8_at(OFF_SETUP_SECTS) {
            0 => LEGACY_SETUP_SECTS,
            n => n,
        };
        let setup_len = (usize::from(setup_sects) + 1) * SECTOR_SIZE;
        let payload = file.get(setup_len..).ok_or(ParseError::Truncated {
            len: file.len(),
            setup_len,
        })?;
        let header_end = OFF_JUMP + 2 + usize::from(u8_at(OFF_JUMP + 1));
        if header_end > SETUP_HEADER_LIMIT {
            return Err(ParseError::HeaderTooLong {
                len: header_end - OFF_SETUP_SECTS,
            });
        }
        let setup_header = &file[OFF_SETUP_SECTS..header_end];
        if payload.len() <= ENTRY64_OFFSET {
            return Err(ParseError::NoEntry64 { len: payload.len() });
        }
        let init_size = u32_at(OFF_INIT_SIZE);
        let reserved = align_up(u64::from(init_size), PAGE_SIZE).unwrap_or(u64::MAX);
        if payload.len() as u64 > reserved {
            return Err(ParseError::PayloadExceedsInitSize {
                len: payload.len(),
                init_size,
            });
        }
        let kernel_alignment = u32_at(OFF_KERNEL_ALIGNMENT);
        if !kernel_alignment.is_power_of_two() {
            return Err(ParseError::BadAlignment {
                alignment: kernel_alignment,
            });
        }
        let kernel_info_offset = if version >= KERNEL_INFO_PROTOCOL_VERSION {
            u32_at(OFF_KERNEL_INFO_OFFSET)
        } else {
            0
        };
        Ok(Self {
            setup_header,
            payload,
            setup_sects,
            version,
            loadflags,
            xloadflags,
            kernel_alignment,
            relocatable_kernel: u8_at(OFF_RELOCATABLE_KERNEL),
            min_alignment: u8_at(OFF_MIN_ALIGNMENT),
            cmdline_size: u32_at(OFF_CMDLINE_SIZE),
            pref_address: get_u64(file, OFF_PREF_ADDRESS).unwrap_or(0),
            init_size,
            handover_offset: u32_at(OFF_HANDOVER_OFFSET),
            kernel_info_offset,
        })
    }

    /// Memory the loaders reserve at the load address: `PAGE_ALIGN(init_size)`.
    pub fn load_size(&self) -> u64 {
        align_up(u64::from(self.init_size), PAGE_SIZE).unwrap_or(u64::MAX)
    }

    /// Offset of the 64-bit entry from the load address.
    pub fn entry_offset(&self) -> u64 {
        ENTRY64_OFFSET as u64
    }

    /// Whether the image may be entered with 5-level paging on (the in-kernel loader refuses it
    /// otherwise when the running kernel uses 5-level paging).
    pub fn handles_5level_paging(&self) -> bool {
        self.xloadflags & XLF_5LEVEL != 0
    }
}

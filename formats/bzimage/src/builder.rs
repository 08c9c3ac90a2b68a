//! Building `minicap.bzImage` from minicap's flat image (the PT_LOAD's file bytes) and its
//! memory size.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::bytes::{put_u16, put_u32, put_u64};
use crate::layout::*;

/// What the image is built from.
#[derive(Debug, Clone, Copy)]
pub struct ImageSource<'a> {
    /// The payload: minicap's one PT_LOAD as it is in the file (linked at 0, head first).
    pub payload: &'a [u8],
    /// The PT_LOAD's `p_memsz`: the file bytes plus .bss (boot stack, page tables).
    pub memsz: u64,
    /// Version string for the setup header's `kernel_version` (printed by `file`).
    pub version: &'a str,
}

/// Why an image could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildError {
    /// The payload ends before its 64-bit entry at 0x200: it is not minicap's image.
    PayloadTooShort {
        /// Payload length.
        len: usize,
    },
    /// No `kernel_info` ("LToP") at payload offset 0x10: the head in `boot/src/entry.S` and this
    /// builder disagree.
    NoKernelInfo,
    /// `memsz` is smaller than the payload's file bytes.
    MemszBelowPayload {
        /// The memsz given.
        memsz: u64,
        /// The payload length.
        len: usize,
    },
    /// `init_size` (a u32) cannot describe an image this large.
    TooLarge {
        /// Bytes the payload needs in memory.
        bytes: u64,
    },
    /// The version string is longer than the setup area holds or contains a NUL.
    BadVersion,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PayloadTooShort { len } => write!(
                f,
                "payload is {len} bytes: it must reach past its 64-bit entry at {ENTRY64_OFFSET:#x}"
            ),
            Self::NoKernelInfo => write!(
                f,
                "no kernel_info (\"LToP\") at payload offset {KERNEL_INFO_OFFSET:#x}: the image head is not minicap's"
            ),
            Self::MemszBelowPayload { memsz, len } => write!(
                f,
                "memsz {memsz:#x} is smaller than the payload's {len:#x} file bytes"
            ),
            Self::TooLarge { bytes } => write!(
                f,
                "the payload needs {bytes:#x} bytes in memory, more than init_size (u32) can say"
            ),
            Self::BadVersion => write!(
                f,
                "version string longer than {MAX_VERSION_LEN} bytes or containing a NUL"
            ),
        }
    }
}

impl core::error::Error for BuildError {}

/// Builds the image: the setup area (MZ and PE headers, setup header, halt stubs, version
/// string), then the payload padded to the PE file alignment.
///
/// `init_size` is the memory the loaders reserve for the payload: its `memsz`, or more when the
/// file bytes plus [`SIGNATURE_ROOM`] for an appended signature would not fit in that.
pub fn build(source: &ImageSource<'_>) -> Result<Vec<u8>, BuildError> {
    let payload = source.payload;
    if payload.len() <= ENTRY64_OFFSET {
        return Err(BuildError::PayloadTooShort { len: payload.len() });
    }
    if payload.get(KERNEL_INFO_OFFSET..KERNEL_INFO_OFFSET + 4) != Some(&KERNEL_INFO_MAGIC[..]) {
        return Err(BuildError::NoKernelInfo);
    }
    let version = source.version.as_bytes();
    if version.len() > MAX_VERSION_LEN || version.contains(&0) {
        return Err(BuildError::BadVersion);
    }
    let len = payload.len();
    let too_large = |bytes: u64| BuildError::TooLarge { bytes };
    let file_len = align_up(len as u64, u64::from(FILE_ALIGNMENT)).ok_or(too_large(u64::MAX))?;
    if source.memsz < len as u64 {
        return Err(BuildError::MemszBelowPayload {
            memsz: source.memsz,
            len,
        });
    }
    let with_signature = file_len + SIGNATURE_ROOM as u64;
    let needed = source.memsz.max(with_signature);
    let init_size = align_up(needed, PAGE_SIZE)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(too_large(needed))?;
    let text_raw = u32::try_from(file_len).map_err(|_| too_large(file_len))?;
    // In memory (as a PE image) .text is the runtime image, .bss included.
    let text_virtual =
        u32::try_from(source.memsz.max(file_len)).map_err(|_| too_large(source.memsz))?;
    let size_of_image = u64::from(TEXT_SECTION_RVA) + u64::from(text_virtual);
    let size_of_image = align_up(size_of_image, u64::from(SECTION_ALIGNMENT))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(too_large(size_of_image))?;

    let mut image = vec![0u8; SETUP_SIZE + text_raw as usize];
    write_pe_headers(&mut image, text_raw, text_virtual, size_of_image);
    write_setup_header(&mut image, text_raw, init_size);
    image[OFF_REAL_MODE_STOP..OFF_REAL_MODE_STOP + HALT_FOREVER.len()]
        .copy_from_slice(&HALT_FOREVER);
    image[OFF_EFI_STUB..OFF_EFI_STUB + EFI_UNSUPPORTED_STUB.len()]
        .copy_from_slice(&EFI_UNSUPPORTED_STUB);
    image[OFF_VERSION_STRING..OFF_VERSION_STRING + version.len()].copy_from_slice(version);
    image[SETUP_SIZE..SETUP_SIZE + len].copy_from_slice(payload);
    Ok(image)
}

fn write_setup_header(image: &mut [u8], text_raw: u32, init_size: u32) {
    image[OFF_SETUP_SECTS] = SETUP_SECTS;
    put_u32(image, OFF_SYSSIZE, text_raw.div_ceil(16));
    put_u16(image, OFF_BOOT_FLAG, BOOT_FLAG);
    // A short jump over the header to the real-mode halt; its displacement doubles as the
    // header's length for the loaders that copy it.
    image[OFF_JUMP] = 0xeb;
    image[OFF_JUMP + 1] = field::JUMP_DISPLACEMENT;
    image[OFF_HEADER_MAGIC..OFF_HEADER_MAGIC + 4].copy_from_slice(&HEADER_MAGIC);
    put_u16(image, OFF_VERSION, PROTOCOL_VERSION);
    put_u16(image, OFF_KERNEL_VERSION, field::KERNEL_VERSION);
    image[OFF_LOADFLAGS] = LOADED_HIGH;
    put_u32(image, OFF_CODE32_START, CODE32_START);
    // minicap reads no initrd: no address is acceptable for one.
    put_u32(image, OFF_INITRD_ADDR_MAX, 0);
    put_u32(image, OFF_KERNEL_ALIGNMENT, KERNEL_ALIGNMENT);
    image[OFF_RELOCATABLE_KERNEL] = 1;
    image[OFF_MIN_ALIGNMENT] = MIN_ALIGNMENT;
    put_u16(image, OFF_XLOADFLAGS, XLOADFLAGS);
    put_u32(image, OFF_CMDLINE_SIZE, CMDLINE_SIZE);
    // The payload is not compressed: no payload_offset/length.
    put_u64(image, OFF_PREF_ADDRESS, PREF_ADDRESS);
    put_u32(image, OFF_INIT_SIZE, init_size);
    // No EFI handover entry.
    put_u32(image, OFF_HANDOVER_OFFSET, 0);
    put_u32(image, OFF_KERNEL_INFO_OFFSET, field::KERNEL_INFO_OFFSET);
}

fn write_pe_headers(image: &mut [u8], text_raw: u32, text_virtual: u32, size_of_image: u32) {
    image[..2].copy_from_slice(&MZ_MAGIC);
    put_u32(image, OFF_E_LFANEW, field::PE_OFFSET);
    image[PE_OFFSET..PE_OFFSET + 4].copy_from_slice(&PE_MAGIC);
    let coff = PE_OFFSET + 4;
    put_u16(image, coff, IMAGE_FILE_MACHINE_AMD64);
    put_u16(image, coff + 2, 2); // NumberOfSections
                                 // TimeDateStamp 0 (reproducible builds), no COFF symbol table.
    let optional_size = usize::from(field::OPTIONAL_HEADER_SIZE);
    put_u16(image, coff + 16, field::OPTIONAL_HEADER_SIZE);
    put_u16(image, coff + 18, COFF_CHARACTERISTICS);

    let opt = PE_OFFSET + PE_HEADER_SIZE;
    put_u16(image, opt, PE32PLUS_MAGIC);
    put_u32(image, opt + 4, field::SECTOR + text_raw); // SizeOfCode
    let entry = SETUP_SECTION_RVA + field::EFI_STUB_IN_SETUP;
    put_u32(image, opt + 16, entry); // AddressOfEntryPoint
    put_u32(image, opt + 20, SETUP_SECTION_RVA); // BaseOfCode
                                                 // ImageBase 0: the file is never meant to be placed by a PE loader for real.
    put_u32(image, opt + 32, SECTION_ALIGNMENT);
    put_u32(image, opt + 36, FILE_ALIGNMENT);
    put_u32(image, opt + 56, size_of_image);
    put_u32(image, opt + 60, field::SIZE_OF_HEADERS);
    // CheckSum 0: sbsign computes it when it signs.
    put_u16(image, opt + 68, IMAGE_SUBSYSTEM_EFI_APPLICATION);
    put_u32(image, opt + 108, field::DATA_DIRECTORIES);
    // Every data directory is empty: no imports, no relocations, and no certificate table until
    // sbsign appends one.

    let mut section = opt + optional_size;
    for (name, virtual_size, rva, raw_size, raw_offset, flags) in [
        (
            *b".setup\0\0",
            field::SECTOR,
            SETUP_SECTION_RVA,
            field::SECTOR,
            field::SECTOR,
            SCN_CODE_RX,
        ),
        (
            *b".text\0\0\0",
            text_virtual,
            TEXT_SECTION_RVA,
            text_raw,
            field::SETUP_SIZE,
            SCN_CODE_RWX,
        ),
    ] {
        image[section..section + 8].copy_from_slice(&name);
        put_u32(image, section + 8, virtual_size);
        put_u32(image, section + 12, rva);
        put_u32(image, section + 16, raw_size);
        put_u32(image, section + 20, raw_offset);
        put_u32(image, section + 36, flags);
        section += SECTION_HEADER_SIZE;
    }
}

/// Layout constants in the width of the fields they are written to. Each is checked at compile
/// time to fit, so none of the casts truncates.
#[allow(clippy::cast_possible_truncation)]
mod field {
    use crate::layout::*;

    macro_rules! narrow {
        ($name:ident: $ty:ty = $value:expr) => {
            pub const $name: $ty = {
                assert!($value <= <$ty>::MAX as usize);
                $value as $ty
            };
        };
    }

    narrow!(JUMP_DISPLACEMENT: u8 = SETUP_HEADER_END - (OFF_JUMP + 2));
    narrow!(KERNEL_VERSION: u16 = OFF_VERSION_STRING - SECTOR_SIZE);
    narrow!(KERNEL_INFO_OFFSET: u32 = crate::layout::KERNEL_INFO_OFFSET);
    narrow!(PE_OFFSET: u32 = crate::layout::PE_OFFSET);
    narrow!(OPTIONAL_HEADER_SIZE: u16 = PE32PLUS_FIXED_SIZE + crate::layout::DATA_DIRECTORIES * DATA_DIRECTORY_SIZE);
    narrow!(SECTOR: u32 = SECTOR_SIZE);
    narrow!(EFI_STUB_IN_SETUP: u32 = OFF_EFI_STUB - SECTOR_SIZE);
    narrow!(SIZE_OF_HEADERS: u32 = crate::layout::SIZE_OF_HEADERS);
    narrow!(DATA_DIRECTORIES: u32 = crate::layout::DATA_DIRECTORIES);
    narrow!(SETUP_SIZE: u32 = crate::layout::SETUP_SIZE);
}

/// `value` rounded up to a multiple of the power of two `align`; `None` on overflow.
pub(crate) fn align_up(value: u64, align: u64) -> Option<u64> {
    Some(value.checked_add(align - 1)? & !(align - 1))
}

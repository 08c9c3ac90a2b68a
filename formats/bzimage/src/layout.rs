//! Where everything sits in `minicap.bzImage`: setup header offsets and values, the PE/COFF
//! header offsets, and the contract with the payload's head (`boot/src/entry.S`).
//!
//! Setup header offsets are those of `struct setup_header` inside `struct boot_params`
//! (Linux `arch/x86/include/uapi/asm/bootparam.h`); a bzImage file starts with the same bytes a
//! zero page does, so the offsets are file offsets too.

/// One "sector" of the boot protocol: the setup area is counted in 512-byte units.
pub const SECTOR_SIZE: usize = 512;

/// `setup_sects` this builder writes: one sector after the boot sector, so the setup area
/// (`kern16_size` in bzImage64_load(), `(setup_sects + 1) * 512`) is 0x400 bytes and holds the
/// MZ/PE headers, the setup header, two halt stubs and the version string.
pub const SETUP_SECTS: u8 = 1;
/// Size of the setup area, and so the file offset of the payload.
pub const SETUP_SIZE: usize = (SETUP_SECTS as usize + 1) * SECTOR_SIZE;
/// What loaders assume when `setup_sects` is 0 (a pre-1998 convention both loaders keep).
pub const LEGACY_SETUP_SECTS: u8 = 4;

// --- struct setup_header (file offsets) -------------------------------------------------------

/// u8 `setup_sects`.
pub const OFF_SETUP_SECTS: usize = 0x1f1;
/// u32 `syssize`: payload size in 16-byte paragraphs.
pub const OFF_SYSSIZE: usize = 0x1f4;
/// u16 `boot_flag`, 0xAA55.
pub const OFF_BOOT_FLAG: usize = 0x1fe;
/// The 2-byte short jump at 0x200 (`EB xx`); its displacement byte at 0x201 also says how long
/// the header is: loaders copy `0x202 + byte[0x201] - 0x1f1` bytes of it into `boot_params`.
pub const OFF_JUMP: usize = 0x200;
/// "HdrS".
pub const OFF_HEADER_MAGIC: usize = 0x202;
/// u16 boot protocol `version`.
pub const OFF_VERSION: usize = 0x206;
/// u16 `kernel_version`: offset of a NUL-terminated version string, minus 0x200.
pub const OFF_KERNEL_VERSION: usize = 0x20e;
/// u8 `loadflags`.
pub const OFF_LOADFLAGS: usize = 0x211;
/// u32 `code32_start`: where a 32-bit boot-protocol loader jumps.
pub const OFF_CODE32_START: usize = 0x214;
/// u32 `initrd_addr_max`.
pub const OFF_INITRD_ADDR_MAX: usize = 0x22c;
/// u32 `kernel_alignment`.
pub const OFF_KERNEL_ALIGNMENT: usize = 0x230;
/// u8 `relocatable_kernel`.
pub const OFF_RELOCATABLE_KERNEL: usize = 0x234;
/// u8 `min_alignment`, a power-of-two exponent.
pub const OFF_MIN_ALIGNMENT: usize = 0x235;
/// u16 `xloadflags`.
pub const OFF_XLOADFLAGS: usize = 0x236;
/// u32 `cmdline_size`.
pub const OFF_CMDLINE_SIZE: usize = 0x238;
/// u32 `payload_offset` (of a compressed payload; minicap has none).
pub const OFF_PAYLOAD_OFFSET: usize = 0x248;
/// u32 `payload_length`.
pub const OFF_PAYLOAD_LENGTH: usize = 0x24c;
/// u64 `pref_address`.
pub const OFF_PREF_ADDRESS: usize = 0x258;
/// u32 `init_size`.
pub const OFF_INIT_SIZE: usize = 0x260;
/// u32 `handover_offset` (EFI handover entry; 0: none).
pub const OFF_HANDOVER_OFFSET: usize = 0x264;
/// u32 `kernel_info_offset` (protocol 2.15), relative to the payload start.
pub const OFF_KERNEL_INFO_OFFSET: usize = 0x268;
/// End of the setup header as this builder declares it: just after `kernel_info_offset`, where
/// Linux's own header ends (its byte 0x201 is 0x6a). The in-kernel bzImage64 loader copies
/// `0x202 + byte 0x201 - 0x1f1` bytes into `boot_params.hdr`, a 123-byte field: one byte more
/// and every kexec_file_load of the image warns "memcpy: detected field-spanning write".
pub const SETUP_HEADER_END: usize = 0x26c;
/// Largest header loaders could be told to copy: `boot_params.hdr` ends at 0x290, where
/// `edd_mbr_sig_buffer` starts.
pub const SETUP_HEADER_LIMIT: usize = 0x290;

/// `boot_flag` value.
pub const BOOT_FLAG: u16 = 0xAA55;
/// Setup header magic.
pub const HEADER_MAGIC: [u8; 4] = *b"HdrS";
/// Protocol version written: 2.15, the layout with `kernel_info_offset`.
pub const PROTOCOL_VERSION: u16 = 0x020f;
/// Oldest protocol both bzImage64 loaders accept (2.12: `xloadflags`).
pub const MIN_PROTOCOL_VERSION: u16 = 0x020c;
/// First protocol with `kernel_info_offset`.
pub const KERNEL_INFO_PROTOCOL_VERSION: u16 = 0x020f;

/// `loadflags` bit 0: the protected-mode code is loaded at 0x100000 or above (a bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// `xloadflags` bit 0: the payload has the 64-bit entry at offset 0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// `xloadflags` bit 1: the kernel, boot_params and command line may lie above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// `xloadflags` bit 5: the kernel may be entered with 5-level paging on (CR4.LA57). minicap's
/// page-table code follows CR4.LA57, so it sets it; bzImage64_probe() refuses images without it
/// when the running kernel uses 5-level paging.
pub const XLF_5LEVEL: u16 = 1 << 5;
/// The `xloadflags` minicap declares. No EFI handover flags: minicap has no EFI entry.
pub const XLOADFLAGS: u16 = XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_5LEVEL;

/// `kernel_alignment`: 4 KiB. minicap relocates itself and needs only page alignment (its .bss
/// holds page tables). Both loaders use this value as the placement alignment of the payload
/// (kexec_file: `kbuf.buf_align`, raised to at least a page by kexec_add_buffer(); kexec-tools:
/// add_buffer()'s `align`), so anything larger only wastes the small crash region: with the
/// 2 MiB a Linux kernel asks for, up to 2 MiB of a 64-128 MiB reservation could go unused.
pub const KERNEL_ALIGNMENT: u32 = 0x1000;
/// `min_alignment`: log2 of [`KERNEL_ALIGNMENT`]; minicap runs at any page-aligned address.
pub const MIN_ALIGNMENT: u8 = 12;
/// `cmdline_size`: the longest command line minicap reads, Linux's x86 COMMAND_LINE_SIZE. The
/// in-kernel loader needs the user's line plus 30 bytes (`elfcorehdr=0x... `) to fit.
pub const CMDLINE_SIZE: u32 = 2048;
/// `pref_address`: 1 MiB, the lowest address either loader places a bzImage payload at
/// (`MIN_KERNEL_LOAD_ADDR`). minicap has no preference of its own.
pub const PREF_ADDRESS: u64 = 0x10_0000;
/// `code32_start`: the protocol's default (payload loaded at 1 MiB); the 32-bit entry at
/// payload offset 0 only halts.
pub const CODE32_START: u32 = 0x10_0000;

/// Offset of the 64-bit entry in the payload (both bzImage64 loaders jump to load + 0x200).
pub const ENTRY64_OFFSET: usize = 0x200;
/// Offset of `kernel_info` in the payload: part of the head `boot/src/entry.S` emits.
pub const KERNEL_INFO_OFFSET: usize = 0x10;
/// `kernel_info.header`.
pub const KERNEL_INFO_MAGIC: [u8; 4] = *b"LToP";

/// Room the loaders need above the payload's file bytes for a signature appended by `sbsign`
/// or `pesign`: both loaders copy the whole file after the setup area (signature included) into
/// a segment of `PAGE_ALIGN(init_size)` bytes, and the kernel refuses a segment whose buffer is
/// longer than its memory. A PKCS#7 signature with one certificate is 1-3 KiB.
pub const SIGNATURE_ROOM: usize = 64 * 1024;

/// Page size the loaders round `init_size` up to.
pub const PAGE_SIZE: u64 = 4096;

// --- the setup area's own code and data ---------------------------------------------------------

/// Where the short jump at 0x200 lands (a real-mode boot would start here): `cli; hlt; jmp $-3`,
/// the same bytes in 16-, 32- and 64-bit mode. minicap has no real-mode entry.
pub const OFF_REAL_MODE_STOP: usize = SETUP_HEADER_END;
/// `cli; hlt; jmp back to hlt`.
pub const HALT_FOREVER: [u8; 4] = [0xfa, 0xf4, 0xeb, 0xfd];
/// The PE entry point (AddressOfEntryPoint): what UEFI firmware would call if someone booted
/// the file as an EFI application. minicap cannot run as one, so it returns EFI_UNSUPPORTED.
pub const OFF_EFI_STUB: usize = 0x280;
/// `movabs $0x8000000000000003, %rax; ret`: return EFI_UNSUPPORTED (high bit | 3) to firmware.
pub const EFI_UNSUPPORTED_STUB: [u8; 11] = [
    0x48, 0xb8, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x80, 0xc3,
];
/// The version string `kernel_version` points at (`file` prints it).
pub const OFF_VERSION_STRING: usize = 0x2a0;
/// Longest version string, NUL excluded.
pub const MAX_VERSION_LEN: usize = 64;

// --- PE/COFF ------------------------------------------------------------------------------------

/// "MZ".
pub const MZ_MAGIC: [u8; 2] = *b"MZ";
/// u32 `e_lfanew`: file offset of the PE signature.
pub const OFF_E_LFANEW: usize = 0x3c;
/// Size of the DOS header (`struct mz_hdr`); the PE header follows it.
pub const MZ_HEADER_SIZE: usize = 0x40;
/// Where this builder puts "PE\0\0".
pub const PE_OFFSET: usize = MZ_HEADER_SIZE;
/// "PE\0\0".
pub const PE_MAGIC: [u8; 4] = *b"PE\0\0";
/// Size of the signature plus the COFF file header.
pub const PE_HEADER_SIZE: usize = 24;
/// COFF `Machine`: x86_64.
pub const IMAGE_FILE_MACHINE_AMD64: u16 = 0x8664;
/// COFF characteristics: an executable image with no line numbers or debug information, valid at
/// any address (no IMAGE_FILE_RELOCS_STRIPPED: the only code firmware could run, the
/// EFI_UNSUPPORTED stub, is position independent).
pub const COFF_CHARACTERISTICS: u16 = 0x0002 | 0x0004 | 0x0020 | 0x0200;
/// Optional header magic of PE32+.
pub const PE32PLUS_MAGIC: u16 = 0x020b;
/// Size of the PE32+ optional header before its data directories.
pub const PE32PLUS_FIXED_SIZE: usize = 112;
/// Data directories written: through the base relocation table (index 5), so the certificate
/// table (index 4) exists for `sbsign` to fill.
pub const DATA_DIRECTORIES: usize = 6;
/// Index of the certificate (security) directory.
pub const CERT_TABLE_DIRECTORY: usize = 4;
/// Size of one data directory entry.
pub const DATA_DIRECTORY_SIZE: usize = 8;
/// Size of one section header.
pub const SECTION_HEADER_SIZE: usize = 40;
/// Subsystem: EFI application.
pub const IMAGE_SUBSYSTEM_EFI_APPLICATION: u16 = 10;
/// Section alignment in memory: a page.
pub const SECTION_ALIGNMENT: u32 = 0x1000;
/// Section alignment in the file: a sector, as for every EFI-stub kernel.
pub const FILE_ALIGNMENT: u32 = 0x200;
/// `SizeOfHeaders`: the MZ and PE headers and the section table, in the first file-aligned
/// block. The setup header (0x1f1..0x200 of it) is inside, so the signature covers it.
pub const SIZE_OF_HEADERS: usize = 0x200;
/// Section characteristics: code, readable, executable.
pub const SCN_CODE_RX: u32 = 0x0000_0020 | 0x2000_0000 | 0x4000_0000;
/// Section characteristics: code, readable, writable, executable (minicap's one RWX segment).
pub const SCN_CODE_RWX: u32 = SCN_CODE_RX | 0x8000_0000;
/// RVA of `.setup` (file 0x200..0x400: the rest of the setup header and the stubs).
pub const SETUP_SECTION_RVA: u32 = 0x1000;
/// RVA of `.text` (the payload: minicap's flat image).
pub const TEXT_SECTION_RVA: u32 = 0x2000;

//! The `boot_params` page and command line handed to minicap in `%rsi`, written the way
//! `minicap-bootinfo` reads them (Linux `arch/x86/include/uapi/asm/bootparam.h`; kexec-tools
//! `setup_linux_system_parameters()` for a crash kernel).
//!
//! Fields written (everything else 0):
//!
//! | offset | field | value |
//! |---|---|---|
//! | 0x070 | `acpi_rsdp_addr` | the running kernel's RSDP, 0 to let minicap scan for it |
//! | 0x0c8 | `ext_cmd_line_ptr` | command line address bits 32..63 |
//! | 0x1e8 | `e820_entries` | at most 128 |
//! | 0x202 | `header` | `"HdrS"` |
//! | 0x206 | `version` | 0x020c, so that `ext_cmd_line_ptr` counts (a crash region may be above 4 GiB) |
//! | 0x210 | `type_of_loader` | 0xff, "undefined" |
//! | 0x228 | `cmd_line_ptr` | command line address bits 0..31 |
//! | 0x238 | `cmdline_size` | 2048 (`COMMAND_LINE_SIZE`) |
//! | 0x2d0 | `e820_table` | `{ u64 addr; u64 size; u32 type; }` packed |

use std::fmt;

use minicap_bootinfo::{E820Entry, E820_ENTRY_SIZE, E820_MAX_ZEROPAGE_ENTRIES, ZERO_PAGE_SIZE};

const OFF_ACPI_RSDP_ADDR: usize = 0x070;
const OFF_EXT_CMD_LINE_PTR: usize = 0x0c8;
const OFF_E820_ENTRIES: usize = 0x1e8;
const OFF_HDRS: usize = 0x202;
const OFF_VERSION: usize = 0x206;
const OFF_TYPE_OF_LOADER: usize = 0x210;
const OFF_CMD_LINE_PTR: usize = 0x228;
const OFF_CMDLINE_SIZE: usize = 0x238;
const OFF_E820_TABLE: usize = 0x2d0;

const PROTOCOL_VERSION: u16 = 0x020c;
const LOADER_UNDEFINED: u8 = 0xff;

/// Command line buffer size, the terminating NUL included (x86 `COMMAND_LINE_SIZE`).
pub const COMMAND_LINE_SIZE: usize = 2048;

/// Why the page cannot be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootParamsBuildError {
    /// More e820 entries than the page holds (`SETUP_E820_EXT` is not written yet).
    TooManyE820Entries(usize),
    /// The command line with its NUL exceeds [`COMMAND_LINE_SIZE`].
    CommandLineTooLong(usize),
    /// The command line contains a NUL byte.
    NulInCommandLine,
}

impl fmt::Display for BootParamsBuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooManyE820Entries(n) => write!(
                f,
                "the capture kernel's memory map has {n} entries, more than the \
                 {E820_MAX_ZEROPAGE_ENTRIES} boot_params holds"
            ),
            Self::CommandLineTooLong(n) => write!(
                f,
                "the command line is {n} bytes; at most {} fit (shorten --append)",
                COMMAND_LINE_SIZE - 1
            ),
            Self::NulInCommandLine => write!(f, "the command line contains a NUL byte"),
        }
    }
}

impl std::error::Error for BootParamsBuildError {}

/// The command line as stored: the text and a NUL.
pub fn command_line_bytes(cmdline: &str) -> Result<Vec<u8>, BootParamsBuildError> {
    if cmdline.contains('\0') {
        return Err(BootParamsBuildError::NulInCommandLine);
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    if bytes.len() > COMMAND_LINE_SIZE {
        return Err(BootParamsBuildError::CommandLineTooLong(bytes.len() - 1));
    }
    Ok(bytes)
}

/// The 4096-byte zero page.
pub fn boot_params_page(
    e820: &[E820Entry],
    cmdline_addr: u64,
    acpi_rsdp: u64,
) -> Result<Vec<u8>, BootParamsBuildError> {
    let count = u8::try_from(e820.len())
        .ok()
        .filter(|&n| usize::from(n) <= E820_MAX_ZEROPAGE_ENTRIES)
        .ok_or(BootParamsBuildError::TooManyE820Entries(e820.len()))?;
    let mut page = vec![0u8; ZERO_PAGE_SIZE];
    let mut put = |offset: usize, bytes: &[u8]| {
        page[offset..offset + bytes.len()].copy_from_slice(bytes);
    };
    put(OFF_ACPI_RSDP_ADDR, &acpi_rsdp.to_le_bytes());
    put(OFF_EXT_CMD_LINE_PTR, &high_half(cmdline_addr).to_le_bytes());
    put(OFF_E820_ENTRIES, &[count]);
    put(OFF_HDRS, b"HdrS");
    put(OFF_VERSION, &PROTOCOL_VERSION.to_le_bytes());
    put(OFF_TYPE_OF_LOADER, &[LOADER_UNDEFINED]);
    put(OFF_CMD_LINE_PTR, &low_half(cmdline_addr).to_le_bytes());
    let size = u32::try_from(COMMAND_LINE_SIZE).unwrap_or(u32::MAX);
    put(OFF_CMDLINE_SIZE, &size.to_le_bytes());
    for (i, entry) in e820.iter().enumerate() {
        let at = OFF_E820_TABLE + i * E820_ENTRY_SIZE;
        put(at, &entry.addr.to_le_bytes());
        put(at + 8, &entry.size.to_le_bytes());
        put(at + 16, &entry.kind.raw().to_le_bytes());
    }
    Ok(page)
}

fn low_half(x: u64) -> u32 {
    u32::try_from(x & u64::from(u32::MAX)).unwrap_or(0)
}

fn high_half(x: u64) -> u32 {
    u32::try_from(x >> 32).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minicap_bootinfo::{BootParams, E820Kind};

    #[test]
    fn read_back_by_the_capture_kernel_parser() {
        let e820 = [
            E820Entry {
                addr: 0x8_4000_0000,
                size: 0x1000_0000 - 0x1000,
                kind: E820Kind::Ram,
            },
            E820Entry {
                addr: 0xbae0_0000,
                size: 0x20_0000,
                kind: E820Kind::Nvs,
            },
        ];
        let page = boot_params_page(&e820, 0x8_4010_1000, 0xf_5a40).unwrap();
        let params = BootParams::parse(&page).unwrap();
        assert_eq!(params.cmd_line_addr(), 0x8_4010_1000);
        assert_eq!(params.cmdline_size(), 2048);
        assert_eq!(params.acpi_rsdp_addr(), 0xf_5a40);
        assert_eq!(params.setup_data(), 0);
        assert_eq!(params.e820_entries().collect::<Vec<_>>(), e820);
    }

    #[test]
    fn limits() {
        let entry = E820Entry {
            addr: 0,
            size: 0x1000,
            kind: E820Kind::Reserved,
        };
        assert!(boot_params_page(&[entry; 128], 0, 0).is_ok());
        assert_eq!(
            boot_params_page(&[entry; 129], 0, 0),
            Err(BootParamsBuildError::TooManyE820Entries(129))
        );
        assert_eq!(command_line_bytes("a b").unwrap(), b"a b\0");
        assert_eq!(command_line_bytes(&"x".repeat(2047)).unwrap().len(), 2048);
        let e = command_line_bytes(&"x".repeat(2048)).unwrap_err();
        assert_eq!(e, BootParamsBuildError::CommandLineTooLong(2048));
        assert!(e.to_string().contains("shorten --append"));
        assert_eq!(
            command_line_bytes("a\0b"),
            Err(BootParamsBuildError::NulInCommandLine)
        );
    }
}

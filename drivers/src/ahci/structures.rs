//! The in-memory structures a port shares with the HBA (AHCI 1.3.1 §4.2)
//! and the command FIS inside them (SATA 3.x §10.3.4), laid out in one
//! DMA page per port:
//!
//! | offset | what | alignment the HBA needs |
//! |---|---|---|
//! | 0x000 | command list: 32 command headers of 32 bytes | 1 KiB |
//! | 0x400 | received-FIS area (256 bytes) | 256 B |
//! | 0x500 | the command table of slot 0: FIS, ATAPI CDB, PRDT | 128 B |
//! | 0x800 | the IDENTIFY DEVICE buffer (512 bytes) | 2 B |
//!
//! minicap issues one command at a time (see the module doc of `disk`),
//! so only slot 0 has a table.

use crate::access::Field;
use crate::field;

/// Bytes of the per-port DMA page.
pub const PORT_PAGE_BYTES: usize = 4096;
/// Where the command list starts in the page.
pub const COMMAND_LIST_AT: u64 = 0x000;
/// Where the received-FIS area starts.
pub const RECEIVED_FIS_AT: u64 = 0x400;
/// Where slot 0's command table starts.
pub const COMMAND_TABLE_AT: u64 = 0x500;
/// Where the IDENTIFY data lands.
pub const IDENTIFY_AT: u64 = 0x800;
/// Bytes of IDENTIFY DEVICE data.
pub const IDENTIFY_BYTES: u64 = 512;
/// PRDT entries that fit between the table's header and the IDENTIFY buffer.
pub const PRDT_ENTRIES: u64 = (IDENTIFY_AT - COMMAND_TABLE_AT - PRDT_AT) / PRD_BYTES;
const _: () = assert!(COMMAND_TABLE_AT.is_multiple_of(128) && RECEIVED_FIS_AT.is_multiple_of(256));
const _: () = assert!(IDENTIFY_AT + IDENTIFY_BYTES <= PORT_PAGE_BYTES as u64);

/// A command header (AHCI §4.2.2).
#[repr(C)]
pub struct CommandHeader {
    /// CFL 4:0 (FIS length in dwords), A 5, W 6 (host to device), P 7,
    /// R 8, B 9, C 10, PMP 15:12, PRDTL 31:16.
    flags: u32,
    /// PRD byte count: bytes moved so far (the HBA writes it).
    prdbc: u32,
    /// Command table base (128 B aligned), low and high halves.
    ctba: u32,
    ctbau: u32,
    reserved: [u32; 4],
}
const _: () = assert!(core::mem::size_of::<CommandHeader>() == 32);

pub const HEADER_FLAGS: Field<CommandHeader, u32> = field!(CommandHeader, flags);
pub const HEADER_PRDBC: Field<CommandHeader, u32> = field!(CommandHeader, prdbc);
pub const HEADER_CTBA: Field<CommandHeader, u32> = field!(CommandHeader, ctba);
pub const HEADER_CTBAU: Field<CommandHeader, u32> = field!(CommandHeader, ctbau);

/// Command header flag: the FIS goes host to device with data written to
/// the device.
pub const HEADER_WRITE: u32 = 1 << 6;
/// Command FIS length in dwords: a register H2D FIS is 5.
pub const HEADER_CFL_H2D: u32 = 5;
/// PRDTL sits in bits 31:16.
pub const HEADER_PRDTL_SHIFT: u32 = 16;

/// A command table's fixed part (AHCI §4.2.3); the PRDT follows at 0x80.
#[repr(C)]
pub struct CommandTable {
    cfis: RegisterH2d,
    cfis_rest: [u8; 44],
    acmd: [u8; 16],
    reserved: [u8; 48],
}
const _: () = assert!(core::mem::size_of::<CommandTable>() == 0x80);
/// Where the PRDT starts in a command table.
pub const PRDT_AT: u64 = 0x80;
pub const TABLE_CFIS: Field<CommandTable, RegisterH2d> = field!(CommandTable, cfis);

/// A physical region descriptor (AHCI §4.2.3.3).
#[repr(C)]
pub struct Prd {
    /// Data base address: bit 0 must be 0 (word aligned).
    dba: u32,
    dbau: u32,
    reserved: u32,
    /// DBC 21:0 = byte count − 1 (so bit 0 is 1: an even count), I 31.
    dbc: u32,
}
/// Bytes per PRD.
pub const PRD_BYTES: u64 = core::mem::size_of::<Prd>() as u64;
const _: () = assert!(PRD_BYTES == 16);
pub const PRD_DBA: Field<Prd, u32> = field!(Prd, dba);
pub const PRD_DBAU: Field<Prd, u32> = field!(Prd, dbau);
pub const PRD_RESERVED: Field<Prd, u32> = field!(Prd, reserved);
pub const PRD_DBC: Field<Prd, u32> = field!(Prd, dbc);
/// Largest byte count of one PRD: DBC has 22 bits.
pub const PRD_MAX_BYTES: u64 = 4 << 20;

/// A Register host-to-device FIS (SATA 3.x §10.3.4), as five dwords.
#[repr(C)]
pub struct RegisterH2d {
    /// FIS type 0x27 7:0, PM port 11:8, C 15 (a command, not a control
    /// update), command 23:16, feature 7:0 in 31:24.
    dw0: u32,
    /// LBA 23:0, device 31:24.
    dw1: u32,
    /// LBA 47:24 in 23:0, feature 15:8 in 31:24.
    dw2: u32,
    /// Count 15:0, ICC 23:16, control 31:24.
    dw3: u32,
    /// Auxiliary.
    dw4: u32,
}
const _: () = assert!(core::mem::size_of::<RegisterH2d>() == 20);
pub const FIS_DW0: Field<RegisterH2d, u32> = field!(RegisterH2d, dw0);
pub const FIS_DW1: Field<RegisterH2d, u32> = field!(RegisterH2d, dw1);
pub const FIS_DW2: Field<RegisterH2d, u32> = field!(RegisterH2d, dw2);
pub const FIS_DW3: Field<RegisterH2d, u32> = field!(RegisterH2d, dw3);
pub const FIS_DW4: Field<RegisterH2d, u32> = field!(RegisterH2d, dw4);

/// FIS type of a Register host-to-device FIS.
const FIS_TYPE_H2D: u32 = 0x27;
/// The C bit: the FIS carries a new command.
const FIS_COMMAND: u32 = 1 << 15;
/// Device register: bit 6 selects LBA addressing.
const DEVICE_LBA: u32 = 1 << 6;

/// A command as the five dwords of its FIS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct H2dFis {
    pub dwords: [u32; 5],
}

impl H2dFis {
    /// An ATA command with a 48-bit LBA and a 16-bit count (0 = 65536
    /// sectors for READ/WRITE DMA EXT).
    pub fn new(command: u8, lba: u64, count: u16) -> Self {
        let lba_low = u32::try_from(lba & 0xff_ffff).unwrap_or(0);
        let lba_high = u32::try_from((lba >> 24) & 0xff_ffff).unwrap_or(0);
        Self {
            dwords: [
                FIS_TYPE_H2D | FIS_COMMAND | u32::from(command) << 16,
                lba_low | DEVICE_LBA << 24,
                lba_high,
                u32::from(count),
                0,
            ],
        }
    }
}

/// ATA commands minicap sends (ATA8-ACS).
pub mod ata {
    /// READ DMA EXT: 48-bit LBA, DMA in.
    pub const READ_DMA_EXT: u8 = 0x25;
    /// WRITE DMA EXT: 48-bit LBA, DMA out.
    pub const WRITE_DMA_EXT: u8 = 0x35;
    /// FLUSH CACHE: the 28-bit form, for disks without the EXT one.
    pub const FLUSH_CACHE: u8 = 0xe7;
    /// FLUSH CACHE EXT.
    pub const FLUSH_CACHE_EXT: u8 = 0xea;
    /// IDENTIFY DEVICE: 512 bytes, PIO in.
    pub const IDENTIFY_DEVICE: u8 = 0xec;
}

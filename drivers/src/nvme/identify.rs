//! The IDENTIFY data structures minicap reads (NVMe 1.4 §5.15.2): the
//! controller (CNS 01h), a namespace (CNS 00h) and the active namespace
//! list (CNS 02h), each 4096 bytes the controller writes into a DMA page.
//! Only the fields used are named; the rest is padding. Every value is the
//! controller's word and is checked before use.

use super::queue::Command;
use crate::access::{Dma, Field};
use crate::{field, Platform};
use core::mem::size_of;

/// Admin opcode of IDENTIFY (§5.15).
pub(crate) const OPCODE: u8 = 0x06;
/// CNS values (CDW10 7:0).
const CNS_NAMESPACE: u32 = 0x00;
const CNS_CONTROLLER: u32 = 0x01;
const CNS_ACTIVE_NAMESPACES: u32 = 0x02;
/// Bytes of every IDENTIFY data structure.
pub(crate) const DATA_BYTES: usize = 4096;

/// Identify Controller data structure, the fields used.
#[repr(C)]
struct IdentifyController {
    vid: u16,                 // 0x000 PCI vendor ID
    ssvid: u16,               // 0x002
    serial: [u8; 20],         // 0x004 SN
    model: [u8; 40],          // 0x018 MN (ASCII, space padded)
    firmware: [u8; 8],        // 0x040 FR
    rab: u8,                  // 0x048
    ieee: [u8; 3],            // 0x049
    cmic: u8,                 // 0x04c
    mdts: u8,                 // 0x04d maximum data transfer size, 2^n min pages (0: none)
    cntlid: u16,              // 0x04e
    ver: u32,                 // 0x050
    reserved_84: [u8; 428],   // 0x054
    sqes: u8,                 // 0x200 submission entry size: required 3:0, maximum 7:4 (log2)
    cqes: u8,                 // 0x201 completion entry size, the same
    maxcmd: u16,              // 0x202
    nn: u32,                  // 0x204 number of namespaces (highest NSID)
    oncs: u16,                // 0x208
    fuses: u16,               // 0x20a
    fna: u8,                  // 0x20c
    vwc: u8,                  // 0x20d volatile write cache: bit 0 present
    rest: [u8; 4096 - 0x20e], // 0x20e
}
const _: () = assert!(size_of::<IdentifyController>() == DATA_BYTES);

/// Identify Namespace data structure, the fields used.
#[repr(C)]
struct IdentifyNamespace {
    nsze: u64,              // 0x000 namespace size in logical blocks
    ncap: u64,              // 0x008
    nuse: u64,              // 0x010
    nsfeat: u8,             // 0x018
    nlbaf: u8,              // 0x019 number of LBA formats, 0's based
    flbas: u8,              // 0x01a formatted LBA size: index 3:0 (and 6:5), bit 4 extended
    mc: u8,                 // 0x01b
    dpc: u8,                // 0x01c
    dps: u8,                // 0x01d
    reserved_30: [u8; 98],  // 0x01e
    lbaf: [u32; 64],        // 0x080 LBA formats: MS 15:0, LBADS 23:16, RP 25:24
    rest: [u8; 4096 - 384], // 0x180
}
const _: () = assert!(size_of::<IdentifyNamespace>() == DATA_BYTES);

const CONTROLLER_MODEL: Field<IdentifyController, [u8; 40]> = field!(IdentifyController, model);
const CONTROLLER_MDTS: Field<IdentifyController, u8> = field!(IdentifyController, mdts);
const CONTROLLER_SQES: Field<IdentifyController, u8> = field!(IdentifyController, sqes);
const CONTROLLER_CQES: Field<IdentifyController, u8> = field!(IdentifyController, cqes);
const CONTROLLER_NN: Field<IdentifyController, u32> = field!(IdentifyController, nn);
const CONTROLLER_VWC: Field<IdentifyController, u8> = field!(IdentifyController, vwc);
const NAMESPACE_NSZE: Field<IdentifyNamespace, u64> = field!(IdentifyNamespace, nsze);
const NAMESPACE_NLBAF: Field<IdentifyNamespace, u8> = field!(IdentifyNamespace, nlbaf);
const NAMESPACE_FLBAS: Field<IdentifyNamespace, u8> = field!(IdentifyNamespace, flbas);
const NAMESPACE_LBAF: Field<IdentifyNamespace, [u32; 64]> = field!(IdentifyNamespace, lbaf);

/// Bytes of the model number kept for messages.
pub(crate) const MODEL_BYTES: usize = 40;
/// LBA formats of NVMe 1.4 (FLBAS 3:0); NVMe 2.0 adds FLBAS 6:5 as the
/// upper bits of the index when there are more than 16.
const FORMATS_BEFORE_2_0: u8 = 16;

/// The command that fills `page` with the controller's data.
pub(crate) fn controller_command(page: u64) -> Command {
    Command {
        opcode: OPCODE,
        prp1: page,
        cdw10: CNS_CONTROLLER,
        ..Command::default()
    }
}

/// The command that fills `page` with namespace `nsid`'s data.
pub(crate) fn namespace_command(page: u64, nsid: u32) -> Command {
    Command {
        opcode: OPCODE,
        nsid,
        prp1: page,
        cdw10: CNS_NAMESPACE,
        ..Command::default()
    }
}

/// The command that fills `page` with the active NSIDs above 0.
pub(crate) fn active_namespaces_command(page: u64) -> Command {
    Command {
        opcode: OPCODE,
        prp1: page,
        cdw10: CNS_ACTIVE_NAMESPACES,
        ..Command::default()
    }
}

/// What the driver uses of the controller data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ControllerData {
    /// MDTS: the largest transfer is 2^mdts minimum pages (0: no limit).
    pub mdts: u8,
    /// NN: the highest namespace identifier.
    pub namespaces: u32,
    /// A volatile write cache is present: FLUSH makes writes durable.
    pub volatile_cache: bool,
    /// SQES and CQES (required size 3:0, maximum 7:4, log2 bytes).
    pub sq_entry_sizes: u8,
    pub cq_entry_sizes: u8,
    /// MN as the controller wrote it.
    pub model: [u8; MODEL_BYTES],
}

/// Read the controller data from the first bytes of `page`.
pub(crate) fn controller_data<P: Platform + ?Sized>(p: &P, page: &Dma<P>) -> ControllerData {
    let mut model = [0u8; MODEL_BYTES];
    page.read_bytes(p, CONTROLLER_MODEL.offset(), &mut model);
    ControllerData {
        mdts: page.read(p, 0, CONTROLLER_MDTS),
        namespaces: page.read(p, 0, CONTROLLER_NN),
        volatile_cache: page.read(p, 0, CONTROLLER_VWC) & 1 != 0,
        sq_entry_sizes: page.read(p, 0, CONTROLLER_SQES),
        cq_entry_sizes: page.read(p, 0, CONTROLLER_CQES),
        model,
    }
}

/// Whether an entry size of 2^`log2` bytes lies in a SQES/CQES range.
pub(crate) fn entry_size_allowed(sizes: u8, log2: u8) -> bool {
    (sizes & 0xf) <= log2 && log2 <= sizes >> 4
}

/// The first NSID of an active namespace list (u32 NSIDs, ascending, a 0
/// ends it); None if the list is empty.
pub(crate) fn first_active<P: Platform + ?Sized>(p: &P, page: &Dma<P>) -> Option<u32> {
    let first: u32 = page.read_at(p, 0);
    (first != 0).then_some(first)
}

/// One entry of the namespace's LBA format list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LbaFormat {
    /// LBADS: the block is 2^data_shift bytes.
    pub data_shift: u8,
    /// MS: metadata bytes per block.
    pub metadata_bytes: u16,
}

/// What the driver uses of the namespace data.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NamespaceData {
    /// NSZE: size in logical blocks (0: the NSID is not active).
    pub blocks: u64,
    /// The format in use (FLBAS), None if FLBAS names a format beyond NLBAF.
    pub format: Option<LbaFormat>,
    /// FLBAS bit 4: metadata travels at the end of each block (extended
    /// LBA) rather than in a separate buffer.
    pub metadata_interleaved: bool,
}

/// Read the namespace data from `page`.
pub(crate) fn namespace_data<P: Platform + ?Sized>(p: &P, page: &Dma<P>) -> NamespaceData {
    let formats = u16::from(page.read(p, 0, NAMESPACE_NLBAF)) + 1;
    let flbas = page.read(p, 0, NAMESPACE_FLBAS);
    let mut index = flbas & 0xf;
    if formats > u16::from(FORMATS_BEFORE_2_0) {
        index |= (flbas >> 5 & 3) << 4;
    }
    let format = (u16::from(index) < formats).then(|| {
        let raw: u32 = page.read_at(p, NAMESPACE_LBAF.offset() + 4 * u64::from(index));
        let [ms_low, ms_high, lbads, _rp] = raw.to_le_bytes();
        LbaFormat {
            data_shift: lbads,
            metadata_bytes: u16::from_le_bytes([ms_low, ms_high]),
        }
    });
    NamespaceData {
        blocks: page.read(p, 0, NAMESPACE_NSZE),
        format,
        metadata_interleaved: flbas & (1 << 4) != 0,
    }
}

//! The HBA's memory registers (AHCI 1.3.1 §3): the generic host control
//! block at the start of ABAR (PCI BAR 5) and one 128-byte block per port
//! from 0x100. Each is mapped as its own region, so a port's disk can keep
//! its registers after the HBA's takeover code is done with the rest.

use crate::access::Field;
use crate::field;

/// The PCI BAR holding the AHCI registers ("ABAR").
pub const ABAR: u8 = 5;
/// Where port 0's registers start in ABAR.
pub const PORTS_AT: u64 = 0x100;
/// Bytes of registers per port.
pub const PORT_STRIDE: u64 = 0x80;

/// Generic host control (AHCI §3.1), as far as minicap uses it.
#[repr(C)]
pub struct HbaRegs {
    cap: u32,      // 0x00 HBA capabilities
    ghc: u32,      // 0x04 global HBA control
    is: u32,       // 0x08 interrupt status (per port)
    pi: u32,       // 0x0c ports implemented
    vs: u32,       // 0x10 version
    ccc: [u32; 2], // 0x14 command completion coalescing (two registers)
    em: [u32; 2],  // 0x1c enclosure management (two registers)
    cap2: u32,     // 0x24 extended capabilities
    bohc: u32,     // 0x28 BIOS/OS handoff control and status
}
const _: () = assert!(core::mem::size_of::<HbaRegs>() == 0x2c);

pub const CAP: Field<HbaRegs, u32> = field!(HbaRegs, cap);
pub const GHC: Field<HbaRegs, u32> = field!(HbaRegs, ghc);
pub const PI: Field<HbaRegs, u32> = field!(HbaRegs, pi);
pub const VS: Field<HbaRegs, u32> = field!(HbaRegs, vs);
pub const CAP2: Field<HbaRegs, u32> = field!(HbaRegs, cap2);
pub const BOHC: Field<HbaRegs, u32> = field!(HbaRegs, bohc);

/// CAP bits.
pub mod cap {
    /// Supports 64-bit addressing (the upper address registers exist).
    pub const S64A: u32 = 1 << 31;
    /// Supports staggered spin-up (ports stay quiet until PxCMD.SUD).
    pub const SSS: u32 = 1 << 27;
    /// Supports command list override (PxCMD.CLO).
    pub const SCLO: u32 = 1 << 24;
    /// Number of command slots − 1 (bits 12:8).
    pub fn command_slots(cap: u32) -> u32 {
        ((cap >> 8) & 0x1f) + 1
    }
    /// Number of ports − 1 (bits 4:0).
    pub fn ports(cap: u32) -> u32 {
        (cap & 0x1f) + 1
    }
}

/// GHC bits.
pub mod ghc {
    /// HBA reset: set to reset, the HBA clears it when done.
    pub const HR: u32 = 1 << 0;
    /// AHCI enable: the HBA speaks AHCI, not legacy IDE.
    pub const AE: u32 = 1 << 31;
}

/// CAP2 bits.
pub mod cap2 {
    /// BIOS/OS handoff supported (BOHC exists).
    pub const BOH: u32 = 1 << 0;
}

/// BOHC bits (AHCI §3.1.11, §10.6).
pub mod bohc {
    /// BIOS owned semaphore.
    pub const BOS: u32 = 1 << 0;
    /// OS owned semaphore.
    pub const OOS: u32 = 1 << 1;
    /// OS ownership change (write 1 to clear).
    pub const OOC: u32 = 1 << 3;
    /// BIOS busy: the BIOS is finishing commands before it lets go.
    pub const BB: u32 = 1 << 4;
}

/// One port's registers (AHCI §3.3).
#[repr(C)]
pub struct PortRegs {
    clb: u32,        // 0x00 command list base (1 KiB aligned)
    clbu: u32,       // 0x04 its upper 32 bits
    fb: u32,         // 0x08 FIS receive area base (256 B aligned)
    fbu: u32,        // 0x0c its upper 32 bits
    is: u32,         // 0x10 interrupt status (write 1 to clear)
    ie: u32,         // 0x14 interrupt enable
    cmd: u32,        // 0x18 command and status
    reserved: u32,   // 0x1c
    tfd: u32,        // 0x20 task file data: status 7:0, error 15:8
    sig: u32,        // 0x24 device signature
    ssts: u32,       // 0x28 SStatus (SCR0)
    sctl: u32,       // 0x2c SControl (SCR2)
    serr: u32,       // 0x30 SError (SCR1, write 1 to clear)
    sact: u32,       // 0x34 SActive (NCQ tags)
    ci: u32,         // 0x38 command issue (a bit per slot)
    sntf: u32,       // 0x3c SNotification
    fbs: u32,        // 0x40 FIS-based switching control
    rest: [u32; 15], // 0x44 reserved and vendor specific
}
const _: () = assert!(core::mem::size_of::<PortRegs>() as u64 == PORT_STRIDE);

pub const PX_CLB: Field<PortRegs, u32> = field!(PortRegs, clb);
pub const PX_CLBU: Field<PortRegs, u32> = field!(PortRegs, clbu);
pub const PX_FB: Field<PortRegs, u32> = field!(PortRegs, fb);
pub const PX_FBU: Field<PortRegs, u32> = field!(PortRegs, fbu);
pub const PX_IS: Field<PortRegs, u32> = field!(PortRegs, is);
pub const PX_IE: Field<PortRegs, u32> = field!(PortRegs, ie);
pub const PX_CMD: Field<PortRegs, u32> = field!(PortRegs, cmd);
pub const PX_TFD: Field<PortRegs, u32> = field!(PortRegs, tfd);
pub const PX_SIG: Field<PortRegs, u32> = field!(PortRegs, sig);
pub const PX_SSTS: Field<PortRegs, u32> = field!(PortRegs, ssts);
pub const PX_SCTL: Field<PortRegs, u32> = field!(PortRegs, sctl);
pub const PX_SERR: Field<PortRegs, u32> = field!(PortRegs, serr);
pub const PX_CI: Field<PortRegs, u32> = field!(PortRegs, ci);

/// PxIS bits that end a command with an error (AHCI §3.3.5, §6.2.2).
pub mod is {
    /// Task file error: the device reported ERR or DF.
    pub const TFES: u32 = 1 << 30;
    /// Host bus fatal error (a DMA access failed).
    pub const HBFS: u32 = 1 << 29;
    /// Host bus data error.
    pub const HBDS: u32 = 1 << 28;
    /// Interface fatal error (the link or a FIS was bad).
    pub const IFS: u32 = 1 << 27;
    /// Every bit that fails a command.
    pub const FAILED: u32 = TFES | HBFS | HBDS | IFS;
}

/// PxCMD bits.
pub mod cmd {
    /// Start: process the command list.
    pub const ST: u32 = 1 << 0;
    /// Spin-up device (staggered spin-up HBAs).
    pub const SUD: u32 = 1 << 1;
    /// Power on device (cold presence detection HBAs).
    pub const POD: u32 = 1 << 2;
    /// Command list override: clears BSY/DRQ so a new command can go.
    pub const CLO: u32 = 1 << 3;
    /// FIS receive enable.
    pub const FRE: u32 = 1 << 4;
    /// FIS receive running.
    pub const FR: u32 = 1 << 14;
    /// Command list running.
    pub const CR: u32 = 1 << 15;
    /// Interface communication control: 1 = active (bits 31:28).
    pub const ICC_ACTIVE: u32 = 1 << 28;
    /// Its mask.
    pub const ICC_MASK: u32 = 0xf << 28;
}

/// PxTFD status bits (the ATA status register).
pub mod tfd {
    /// Busy.
    pub const BSY: u32 = 1 << 7;
    /// Device fault.
    pub const DF: u32 = 1 << 5;
    /// Data request.
    pub const DRQ: u32 = 1 << 3;
    /// Error (the error register says which).
    pub const ERR: u32 = 1 << 0;
    /// The status byte.
    pub fn status(tfd: u32) -> u8 {
        tfd.to_le_bytes()[0]
    }
    /// The error byte.
    pub fn error(tfd: u32) -> u8 {
        tfd.to_le_bytes()[1]
    }
}

/// PxSSTS / PxSCTL device detection (bits 3:0).
pub mod det {
    /// Its mask.
    pub const MASK: u32 = 0xf;
    /// PxSSTS: a device is present but the PHY is not talking to it.
    pub const PRESENT_NO_PHY: u32 = 1;
    /// PxSSTS: a device is present and the link is up.
    pub const PRESENT: u32 = 3;
    /// PxSSTS: the PHY is offline (disabled): waiting will not bring it up.
    pub const OFFLINE: u32 = 4;
    /// PxSCTL: perform interface initialisation (COMRESET while set).
    pub const COMRESET: u32 = 1;
    /// PxSCTL bits 11:8 = 3: no transitions to partial or slumber power
    /// states (Linux `ahci_do_hardreset` writes 0x301 / 0x300 likewise).
    pub const NO_POWER_STATES: u32 = 3 << 8;
}

/// PxSIG of an ATA disk (AHCI §3.3.9, the signature of its first D2H FIS).
pub const SIGNATURE_ATA: u32 = 0x0000_0101;

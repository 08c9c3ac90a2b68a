//! The status field of a completion queue entry (NVMe 1.4 §4.6.1): what a
//! failed command reports, kept whole for the message.

use core::fmt;

/// A completion's status field without its phase tag (CQE DW3 bits 31:17,
/// shifted down by one): SC 7:0, SCT 10:8, CRD 12:11, M 13, DNR 14.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletionStatus(u16);

/// Status code types (§4.6.1.1).
const GENERIC: u8 = 0;
const COMMAND_SPECIFIC: u8 = 1;
const MEDIA: u8 = 2;
const PATH: u8 = 3;
const VENDOR: u8 = 7;

impl CompletionStatus {
    /// From the CQE's 16-bit status half (bit 0 is the phase tag).
    pub fn from_status_half(half: u16) -> Self {
        Self(half >> 1)
    }

    /// From a status code type and a status code (for tests and callers
    /// that compare).
    pub fn new(code_type: u8, code: u8) -> Self {
        Self(u16::from(code_type & 7) << 8 | u16::from(code))
    }

    /// SC: the status code.
    pub fn code(self) -> u8 {
        self.0.to_le_bytes()[0]
    }

    /// SCT: the status code type.
    pub fn code_type(self) -> u8 {
        self.0.to_le_bytes()[1] & 7
    }

    /// DNR: the controller says retrying would fail again.
    pub fn do_not_retry(self) -> bool {
        self.0 & (1 << 14) != 0
    }

    /// Success: SCT 0 and SC 0 (CRD, M and DNR say nothing then).
    pub fn is_success(self) -> bool {
        self.code_type() == GENERIC && self.code() == 0
    }

    fn type_name(self) -> &'static str {
        match self.code_type() {
            GENERIC => "generic",
            COMMAND_SPECIFIC => "command specific",
            MEDIA => "media and data integrity",
            PATH => "path related",
            VENDOR => "vendor specific",
            _ => "reserved",
        }
    }

    /// The codes a capture is likely to meet (§4.6.1.2).
    fn code_name(self) -> Option<&'static str> {
        Some(match (self.code_type(), self.code()) {
            (GENERIC, 0x01) => "invalid command opcode",
            (GENERIC, 0x02) => "invalid field in command",
            (GENERIC, 0x03) => "command ID conflict",
            (GENERIC, 0x04) => "data transfer error",
            (GENERIC, 0x05) => "aborted due to power loss notification",
            (GENERIC, 0x06) => "internal error",
            (GENERIC, 0x07) => "abort requested",
            (GENERIC, 0x08) => "aborted due to SQ deletion",
            (GENERIC, 0x0b) => "invalid namespace or format",
            (GENERIC, 0x0c) => "command sequence error",
            (GENERIC, 0x13) => "PRP offset invalid",
            (GENERIC, 0x80) => "LBA out of range",
            (GENERIC, 0x81) => "capacity exceeded",
            (GENERIC, 0x82) => "namespace not ready",
            (COMMAND_SPECIFIC, 0x00) => "completion queue invalid",
            (COMMAND_SPECIFIC, 0x01) => "invalid queue identifier",
            (COMMAND_SPECIFIC, 0x02) => "invalid queue size",
            (COMMAND_SPECIFIC, 0x80) => "conflicting attributes",
            (COMMAND_SPECIFIC, 0x82) => "write to a read-only range",
            (MEDIA, 0x80) => "write fault",
            (MEDIA, 0x81) => "unrecovered read error",
            (MEDIA, 0x86) => "access denied",
            _ => return None,
        })
    }
}

impl fmt::Display for CompletionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "status code type {} ({}), status code {:#04x}",
            self.code_type(),
            self.type_name(),
            self.code()
        )?;
        if let Some(name) = self.code_name() {
            write!(f, " ({name})")?;
        }
        if self.do_not_retry() {
            f.write_str(", do not retry")?;
        }
        Ok(())
    }
}

//! The `boot_params` zero page (docs/boot-params.md).

use core::fmt;

/// Size of `struct boot_params`: the loader hands over one 4 KiB page.
pub const ZERO_PAGE_SIZE: usize = 4096;

/// Capacity of the zero page's own e820 table; longer maps continue in `SETUP_E820_EXT` nodes.
pub const E820_MAX_ZEROPAGE_ENTRIES: usize = 128;

/// Size of one packed `struct boot_e820_entry { u64 addr; u64 size; u32 type; }`.
pub const E820_ENTRY_SIZE: usize = 20;

const OFF_ACPI_RSDP_ADDR: usize = 0x070;
const OFF_EXT_CMD_LINE_PTR: usize = 0x0c8;
const OFF_E820_ENTRIES: usize = 0x1e8;
const OFF_HDRS: usize = 0x202;
const OFF_VERSION: usize = 0x206;
const OFF_CMD_LINE_PTR: usize = 0x228;
const OFF_CMDLINE_SIZE: usize = 0x238;
const OFF_SETUP_DATA: usize = 0x250;
const OFF_E820_TABLE: usize = 0x2d0;

/// "HdrS": present in every setup header since boot protocol 2.00.
const HDRS_MAGIC: [u8; 4] = *b"HdrS";

/// First protocol with the `cmdline_size` field.
const VERSION_CMDLINE_SIZE: u16 = 0x0206;
/// First protocol with `ext_cmd_line_ptr` (command line above 4 GiB).
const VERSION_EXT_CMD_LINE_PTR: u16 = 0x020c;

/// Command line limit before protocol 2.06: 255 characters plus the NUL.
const LEGACY_CMDLINE_SIZE: u32 = 256;
/// Used when a 2.06+ header leaves `cmdline_size` at 0: the size of the command-line buffer that
/// kexec-tools places after the zero page (COMMAND_LINE_SIZE, KT x86-linux.h).
const DEFAULT_CMDLINE_SIZE: u32 = 2048;

/// Why a zero page was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootParamsError {
    /// The slice is shorter than a whole zero page.
    TooShort {
        /// Length of the slice that was given.
        len: usize,
    },
    /// No "HdrS" at 0x202: `%rsi` does not point at a Linux zero page.
    NoHdrS {
        /// The four bytes found at 0x202 instead.
        found: [u8; 4],
    },
    /// `e820_entries` exceeds the 128 slots of the table: the page is corrupt, and trusting the
    /// count would read the fields behind the table as memory ranges.
    TooManyE820Entries {
        /// The count found at 0x1e8.
        count: u8,
    },
}

impl fmt::Display for BootParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { len } => write!(
                f,
                "boot_params too short: {len} bytes, need {ZERO_PAGE_SIZE}"
            ),
            Self::NoHdrS { found } => write!(
                f,
                "boot_params has no \"HdrS\" signature at 0x202 (found {found:02x?})"
            ),
            Self::TooManyE820Entries { count } => write!(
                f,
                "boot_params claims {count} e820 entries, the table holds {E820_MAX_ZEROPAGE_ENTRIES}"
            ),
        }
    }
}

impl core::error::Error for BootParamsError {}

/// Type of an e820 memory range (`E820_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum E820Kind {
    /// 1: usable RAM. For a crash kernel: the memory it may use.
    Ram,
    /// 2: reserved.
    Reserved,
    /// 3: ACPI tables (reclaimable after parsing).
    Acpi,
    /// 4: ACPI non-volatile storage.
    Nvs,
    /// 5: unusable (bad memory).
    Unusable,
    /// 7: persistent memory.
    Pmem,
    /// 12: legacy persistent RAM (`E820_TYPE_PRAM`).
    Pram,
    /// Any other value, kept so that callers can report it.
    Other(u32),
}

impl E820Kind {
    /// Maps the raw type; values without a variant become [`E820Kind::Other`].
    pub const fn from_raw(raw: u32) -> Self {
        match raw {
            1 => Self::Ram,
            2 => Self::Reserved,
            3 => Self::Acpi,
            4 => Self::Nvs,
            5 => Self::Unusable,
            7 => Self::Pmem,
            12 => Self::Pram,
            other => Self::Other(other),
        }
    }

    /// The raw `E820_TYPE_*` value.
    pub const fn raw(self) -> u32 {
        match self {
            Self::Ram => 1,
            Self::Reserved => 2,
            Self::Acpi => 3,
            Self::Nvs => 4,
            Self::Unusable => 5,
            Self::Pmem => 7,
            Self::Pram => 12,
            Self::Other(other) => other,
        }
    }
}

/// One e820 range as the loader described it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    /// Physical start address.
    pub addr: u64,
    /// Length in bytes.
    pub size: u64,
    /// What the range is.
    pub kind: E820Kind,
}

impl E820Entry {
    /// Decodes one packed 20-byte `boot_e820_entry`.
    pub fn from_bytes(raw: &[u8; E820_ENTRY_SIZE]) -> Self {
        Self {
            addr: u64::from_le_bytes(array_at(raw, 0)),
            size: u64::from_le_bytes(array_at(raw, 8)),
            kind: E820Kind::from_raw(u32::from_le_bytes(array_at(raw, 16))),
        }
    }

    /// Exclusive end address, or `None` if `addr + size` does not fit in 64 bits (a corrupt
    /// entry: callers should skip it rather than wrap around to low memory).
    pub fn end(&self) -> Option<u64> {
        self.addr.checked_add(self.size)
    }
}

/// A validated view of the 4096-byte zero page.
#[derive(Debug, Clone, Copy)]
pub struct BootParams<'a> {
    page: &'a [u8; ZERO_PAGE_SIZE],
}

impl<'a> BootParams<'a> {
    /// Checks the page and wraps it. Only the first 4096 bytes are used.
    ///
    /// Rejects a short slice, a page without "HdrS" and an e820 count above 128, so that every
    /// accessor afterwards is infallible.
    pub fn parse(page: &'a [u8]) -> Result<Self, BootParamsError> {
        let page: &[u8; ZERO_PAGE_SIZE] = page
            .get(..ZERO_PAGE_SIZE)
            .and_then(|p| p.try_into().ok())
            .ok_or(BootParamsError::TooShort { len: page.len() })?;
        let found: [u8; 4] = array_at(page, OFF_HDRS);
        if found != HDRS_MAGIC {
            return Err(BootParamsError::NoHdrS { found });
        }
        let count = page[OFF_E820_ENTRIES];
        if usize::from(count) > E820_MAX_ZEROPAGE_ENTRIES {
            return Err(BootParamsError::TooManyE820Entries { count });
        }
        Ok(Self { page })
    }

    /// The whole zero page, for fields this type has no accessor for.
    pub fn raw(&self) -> &'a [u8; ZERO_PAGE_SIZE] {
        self.page
    }

    /// Boot protocol version (`hdr.version`, 0x206), e.g. 0x020f. kexec-tools' ELF
    /// `--args-linux` path writes 0x0206.
    pub fn protocol_version(&self) -> u16 {
        u16::from_le_bytes(array_at(self.page, OFF_VERSION))
    }

    /// Physical address of the NUL-terminated command line, 0 if there is none.
    ///
    /// `ext_cmd_line_ptr` supplies bits 32..63 only from protocol 2.12 on: older headers may
    /// hold garbage there, as the kernel itself assumes.
    pub fn cmd_line_addr(&self) -> u64 {
        let low = u64::from(u32::from_le_bytes(array_at(self.page, OFF_CMD_LINE_PTR)));
        let high = if self.protocol_version() >= VERSION_EXT_CMD_LINE_PTR {
            u64::from(u32::from_le_bytes(array_at(
                self.page,
                OFF_EXT_CMD_LINE_PTR,
            )))
        } else {
            0
        };
        low | (high << 32)
    }

    /// How many bytes of command line to read at most; the text still ends at its first NUL.
    ///
    /// From protocol 2.06 this is `hdr.cmdline_size` (0x238). Before 2.06 the field does not
    /// exist and the limit was 255 characters, so 256 is returned. A 2.06+ header with 0 there
    /// was filled by a loader that did not care; 2048 is returned, the size of the buffer
    /// kexec-tools reserves for the command line.
    pub fn cmdline_size(&self) -> u32 {
        if self.protocol_version() < VERSION_CMDLINE_SIZE {
            return LEGACY_CMDLINE_SIZE;
        }
        match u32::from_le_bytes(array_at(self.page, OFF_CMDLINE_SIZE)) {
            0 => DEFAULT_CMDLINE_SIZE,
            size => size,
        }
    }

    /// Physical address of the ACPI RSDP (0x070), 0 if the loader did not provide one.
    pub fn acpi_rsdp_addr(&self) -> u64 {
        u64::from_le_bytes(array_at(self.page, OFF_ACPI_RSDP_ADDR))
    }

    /// Physical address of the first `setup_data` node (0x250), 0 for an empty chain. Walk it
    /// with [`crate::walk_setup_data`].
    pub fn setup_data(&self) -> u64 {
        u64::from_le_bytes(array_at(self.page, OFF_SETUP_DATA))
    }

    /// Number of valid entries in the zero-page e820 table (at most 128, checked by `parse`).
    pub fn e820_count(&self) -> usize {
        usize::from(self.page[OFF_E820_ENTRIES])
    }

    /// The zero-page e820 entries in table order. They are **not** necessarily sorted: the
    /// kernel's kexec_file path emits them unsorted. Further entries may follow in
    /// `SETUP_E820_EXT` nodes ([`crate::walk_e820_ext`]).
    pub fn e820_entries(&self) -> impl Iterator<Item = E820Entry> + 'a {
        let table = &self.page[OFF_E820_TABLE..];
        table
            .chunks_exact(E820_ENTRY_SIZE)
            .take(self.e820_count())
            .map(|chunk| E820Entry::from_bytes(&array_at(chunk, 0)))
    }
}

/// Copies `N` bytes at `off`; only called with offsets inside fixed-size buffers.
/// `N` bytes at `off` of a buffer whose size the caller fixed (the zero page,
/// an e820 entry): never missing.
fn array_at<const N: usize>(bytes: &[u8], off: usize) -> [u8; N] {
    minicap_physmem::array_at(bytes, off).unwrap_or([0; N])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> Vec<u8> {
        let mut p = vec![0u8; ZERO_PAGE_SIZE];
        p[OFF_HDRS..OFF_HDRS + 4].copy_from_slice(b"HdrS");
        p
    }

    fn put(p: &mut [u8], off: usize, bytes: &[u8]) {
        p[off..off + bytes.len()].copy_from_slice(bytes);
    }

    fn put_e820(p: &mut [u8], idx: usize, addr: u64, size: u64, kind: u32) {
        let off = OFF_E820_TABLE + idx * E820_ENTRY_SIZE;
        put(p, off, &addr.to_le_bytes());
        put(p, off + 8, &size.to_le_bytes());
        put(p, off + 16, &kind.to_le_bytes());
    }

    #[test]
    fn rejects_short_page() {
        let p = page();
        assert_eq!(
            BootParams::parse(&p[..4095]).unwrap_err(),
            BootParamsError::TooShort { len: 4095 }
        );
        assert_eq!(
            BootParams::parse(&[]).unwrap_err(),
            BootParamsError::TooShort { len: 0 }
        );
    }

    #[test]
    fn longer_slice_is_accepted() {
        let mut p = page();
        p.extend_from_slice(&[0xff; 100]);
        assert!(BootParams::parse(&p).is_ok());
    }

    #[test]
    fn rejects_missing_hdrs() {
        let mut p = page();
        put(&mut p, OFF_HDRS, b"HdrX");
        let err = BootParams::parse(&p).unwrap_err();
        assert_eq!(err, BootParamsError::NoHdrS { found: *b"HdrX" });
        assert!(err.to_string().contains("HdrS"));
    }

    #[test]
    fn rejects_too_many_e820_entries() {
        let mut p = page();
        p[OFF_E820_ENTRIES] = 128;
        assert!(BootParams::parse(&p).is_ok());
        p[OFF_E820_ENTRIES] = 129;
        assert_eq!(
            BootParams::parse(&p).unwrap_err(),
            BootParamsError::TooManyE820Entries { count: 129 }
        );
    }

    #[test]
    fn reads_fields() {
        let mut p = page();
        put(&mut p, OFF_VERSION, &0x020fu16.to_le_bytes());
        put(&mut p, OFF_ACPI_RSDP_ADDR, &0x000f_5a30u64.to_le_bytes());
        put(&mut p, OFF_SETUP_DATA, &0x1234_5000u64.to_le_bytes());
        put(&mut p, OFF_CMD_LINE_PTR, &0x9000_1000u32.to_le_bytes());
        put(&mut p, OFF_EXT_CMD_LINE_PTR, &0x2u32.to_le_bytes());
        put(&mut p, OFF_CMDLINE_SIZE, &4095u32.to_le_bytes());
        let bp = BootParams::parse(&p).unwrap();
        assert_eq!(bp.protocol_version(), 0x020f);
        assert_eq!(bp.acpi_rsdp_addr(), 0xf5a30);
        assert_eq!(bp.setup_data(), 0x1234_5000);
        assert_eq!(bp.cmd_line_addr(), 0x2_9000_1000);
        assert_eq!(bp.cmdline_size(), 4095);
        assert_eq!(bp.raw().len(), ZERO_PAGE_SIZE);
    }

    #[test]
    fn ext_cmd_line_ptr_ignored_before_2_12() {
        let mut p = page();
        put(&mut p, OFF_VERSION, &0x0206u16.to_le_bytes());
        put(&mut p, OFF_CMD_LINE_PTR, &0x7f00_1000u32.to_le_bytes());
        put(&mut p, OFF_EXT_CMD_LINE_PTR, &0xdeadu32.to_le_bytes());
        let bp = BootParams::parse(&p).unwrap();
        assert_eq!(bp.cmd_line_addr(), 0x7f00_1000);
        put(&mut p, OFF_VERSION, &0x020cu16.to_le_bytes());
        let bp = BootParams::parse(&p).unwrap();
        assert_eq!(bp.cmd_line_addr(), 0xdead_7f00_1000);
    }

    #[test]
    fn cmdline_size_defaults() {
        let mut p = page();
        put(&mut p, OFF_VERSION, &0x0205u16.to_le_bytes());
        put(&mut p, OFF_CMDLINE_SIZE, &9999u32.to_le_bytes());
        assert_eq!(BootParams::parse(&p).unwrap().cmdline_size(), 256);
        put(&mut p, OFF_VERSION, &0x0206u16.to_le_bytes());
        assert_eq!(BootParams::parse(&p).unwrap().cmdline_size(), 9999);
        put(&mut p, OFF_CMDLINE_SIZE, &0u32.to_le_bytes());
        assert_eq!(BootParams::parse(&p).unwrap().cmdline_size(), 2048);
    }

    #[test]
    fn e820_table() {
        let mut p = page();
        put_e820(&mut p, 0, 0, 0x9fc00, 1);
        put_e820(&mut p, 1, 0xf0000, 0x10000, 2);
        put_e820(&mut p, 2, 0x7000_0000, 0x1000_0000, 1);
        put_e820(&mut p, 3, 0xfed0_0000, 0x1000, 99);
        put_e820(&mut p, 4, 0x1111, 0x2222, 1); // beyond the count: must not appear
        p[OFF_E820_ENTRIES] = 4;
        let bp = BootParams::parse(&p).unwrap();
        assert_eq!(bp.e820_count(), 4);
        let entries: Vec<_> = bp.e820_entries().collect();
        assert_eq!(
            entries,
            vec![
                E820Entry {
                    addr: 0,
                    size: 0x9fc00,
                    kind: E820Kind::Ram
                },
                E820Entry {
                    addr: 0xf0000,
                    size: 0x10000,
                    kind: E820Kind::Reserved
                },
                E820Entry {
                    addr: 0x7000_0000,
                    size: 0x1000_0000,
                    kind: E820Kind::Ram
                },
                E820Entry {
                    addr: 0xfed0_0000,
                    size: 0x1000,
                    kind: E820Kind::Other(99)
                },
            ]
        );
        assert_eq!(entries[2].end(), Some(0x8000_0000));
    }

    #[test]
    fn e820_full_table() {
        let mut p = page();
        for i in 0..128 {
            put_e820(&mut p, i, i as u64 * 0x1000, 0x1000, 1);
        }
        p[OFF_E820_ENTRIES] = 128;
        let bp = BootParams::parse(&p).unwrap();
        let entries: Vec<_> = bp.e820_entries().collect();
        assert_eq!(entries.len(), 128);
        assert_eq!(entries[127].addr, 127 * 0x1000);
    }

    #[test]
    fn e820_kind_round_trip() {
        for raw in [1, 2, 3, 4, 5, 6, 7, 8, 12, 13, 0xffff_ffff] {
            assert_eq!(E820Kind::from_raw(raw).raw(), raw);
        }
        assert_eq!(E820Kind::from_raw(7), E820Kind::Pmem);
        assert_eq!(E820Kind::from_raw(12), E820Kind::Pram);
        assert_eq!(E820Kind::from_raw(3), E820Kind::Acpi);
        assert_eq!(E820Kind::from_raw(4), E820Kind::Nvs);
        assert_eq!(E820Kind::from_raw(5), E820Kind::Unusable);
    }

    #[test]
    fn e820_end_overflow() {
        let e = E820Entry {
            addr: u64::MAX - 10,
            size: 100,
            kind: E820Kind::Ram,
        };
        assert_eq!(e.end(), None);
    }
}

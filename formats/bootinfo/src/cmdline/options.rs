//! `minicap.*` options: how the user steers the capture kernel from the command line.

use core::fmt;

use super::params;

/// Prefix of every minicap option; other parameters belong to Linux and are ignored.
pub const OPTION_PREFIX: &str = "minicap.";

/// Which kinds of disk may hold the dump (`minicap.target=`). Whatever the kind, only a
/// disk prepared with `minicap format` (and carrying the `minicap.device=` id, if given) is
/// ever written; the kind only narrows the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DumpTarget {
    /// Every kind of disk minicap has a driver for (`any`).
    #[default]
    Any,
    /// virtio-blk disks only (`virtio-blk`).
    VirtioBlk,
    /// NVMe namespaces only (`nvme`).
    Nvme,
    /// ATA disks on AHCI ports only (`ahci`).
    Ahci,
}

/// Where the dump goes: a disk (`minicap.target=` one of the [`DumpTarget`] kinds), or the
/// framed stream on a serial port (`minicap.target=serial`, or `minicap.fallback=serial`
/// when no disk is found).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// A prepared disk.
    #[default]
    Disk,
    /// The 16550 UART at `minicap.serial=`.
    Serial,
}

/// What to do when no disk target is found (`minicap.fallback=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fallback {
    /// Fail (`none`): a dump goes over serial only if asked for.
    #[default]
    None,
    /// Stream the dump on the serial port instead (`serial`).
    Serial,
}

/// The I/O port base of the 16550 UART the serial stream uses (`minicap.serial=`): one of the
/// four standard PC COM ports, so that a typo cannot make minicap write to another device's
/// ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SerialPortBase(u16);

impl SerialPortBase {
    /// COM1, Linux's ttyS0: the default, which is also the console.
    pub const COM1: Self = Self(0x3f8);
    /// The four standard COM ports' bases, COM1 to COM4.
    pub const STANDARD: [u16; 4] = [0x3f8, 0x2f8, 0x3e8, 0x2e8];

    /// The port base.
    pub fn base(self) -> u16 {
        self.0
    }

    fn parse(s: &str) -> Option<Self> {
        let hex = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
        let base = u16::from_str_radix(hex, 16).ok()?;
        Self::STANDARD.contains(&base).then_some(Self(base))
    }
}

impl Default for SerialPortBase {
    fn default() -> Self {
        Self::COM1
    }
}

impl fmt::Display for SerialPortBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

/// How the dump is encoded (`minicap.format=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DumpFormat {
    /// An ELF vmcore as /proc/vmcore would present it (`elf`).
    #[default]
    Elf,
    /// makedumpfile's kdump-compressed format, filtered and compressed page by page
    /// (`kdump`).
    Kdump,
}

/// How the pages of a kdump-compressed dump are compressed (`minicap.compress=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compress {
    /// LZO1X-1 (`lzo`), as `makedumpfile -l`: the fastest codec Debian's makedumpfile and
    /// crash read.
    #[default]
    Lzo,
    /// zlib level 1 (`zlib`), as `makedumpfile -c`: smaller, slower.
    Zlib,
    /// Every page stored as it is (`none`).
    None,
}

/// What to do once the dump is written or has failed (`minicap.after=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AfterDump {
    /// Reset the machine so that it boots normally again (`reboot`).
    #[default]
    Reboot,
    /// Stop the CPU and leave the machine on, e.g. to read the console (`halt`).
    Halt,
    /// Switch the machine off (`poweroff`).
    Poweroff,
}

/// How the dump is made checkable (`minicap.verify=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verify {
    /// XXH64 of every chunk in a table before the dump (`chunks`): fast enough to keep up
    /// with the device, and `minicap save` names the damaged ranges.
    #[default]
    Chunks,
    /// SHA-256 of the whole dump (`sha256`): cryptographic, but one CPU hashing may be slower
    /// than the device writing.
    Sha256,
    /// No checksum (`none`).
    None,
}

/// Which dumps already on the target a capture may write over (`minicap.overwrite=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overwrite {
    /// Only a dump `minicap save` has copied off (`saved`); an unsaved one is kept and
    /// nothing is written: the first crash of a crash loop is the one to keep.
    #[default]
    Saved,
    /// Any dump, saved or not (`any`).
    Any,
}

/// The upper bound on the whole capture, from minicap's entry (`minicap.timeout=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timeout {
    /// A generous bound from the size of the dump on a disk (`auto`): see
    /// [`Timeout::AUTO_BASE_SECONDS`] and [`Timeout::AUTO_MIB_PER_SECOND`]. None on the serial
    /// line, whose speed (about 11 KiB/s) makes any bound from the size either too tight or
    /// useless, and whose receiver watches the stream as it comes.
    #[default]
    Auto,
    /// No bound (`none`): only the per-operation deadlines.
    None,
    /// This many seconds (`1` to [`Timeout::MAX_SECONDS`]).
    Seconds(u32),
}

impl Timeout {
    /// Most seconds `minicap.timeout=` accepts: 30 days.
    pub const MAX_SECONDS: u32 = 30 * 24 * 3600;
    /// The `auto` bound's fixed part: ten minutes for everything but the writing (device
    /// discovery and resets, planning, the final checks).
    pub const AUTO_BASE_SECONDS: u64 = 600;
    /// The `auto` bound's rate: the dump's RAM written at 4 MiB/s. Every disk minicap drives
    /// writes far faster, so a healthy capture never meets the bound; a capture that stalls
    /// does, instead of keeping a server down for good.
    pub const AUTO_MIB_PER_SECOND: u64 = 4;

    /// The bound in seconds for a dump of `ram_bytes` of memory on `transport`; `None` for no
    /// bound.
    pub fn seconds_for(self, transport: Transport, ram_bytes: u64) -> Option<u64> {
        match self {
            Self::Auto if transport == Transport::Serial => None,
            Self::Auto => Some(
                Self::AUTO_BASE_SECONDS
                    .saturating_add((ram_bytes >> 20) / Self::AUTO_MIB_PER_SECOND),
            ),
            Self::None => None,
            Self::Seconds(s) => Some(u64::from(s)),
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "auto" => Some(Self::Auto),
            "none" => Some(Self::None),
            // Digits only: no sign, no unit, no leading zero tricks beyond what u32 parses.
            _ if s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=Self::MAX_SECONDS).contains(n))
                .map(Self::Seconds),
            _ => None,
        }
    }
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::None => f.write_str("none"),
            Self::Seconds(s) => write!(f, "{s}"),
        }
    }
}

/// A value <-> variant table; the single source for parsing, naming and the error message.
trait Named: Sized + Copy + PartialEq + 'static {
    const NAMES: &'static [(&'static str, Self)];
    const ACCEPTED: &'static str;

    fn parse(s: &str) -> Option<Self> {
        Self::NAMES.iter().find(|(n, _)| *n == s).map(|&(_, v)| v)
    }

    fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, v)| *v == self)
            .map_or("?", |(n, _)| n)
    }
}

impl Named for DumpTarget {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("any", Self::Any),
        ("virtio-blk", Self::VirtioBlk),
        ("nvme", Self::Nvme),
        ("ahci", Self::Ahci),
    ];
    const ACCEPTED: &'static str = "any, virtio-blk, nvme, ahci";
}

impl Named for Fallback {
    const NAMES: &'static [(&'static str, Self)] =
        &[("none", Self::None), ("serial", Self::Serial)];
    const ACCEPTED: &'static str = "none, serial";
}

impl Named for DumpFormat {
    const NAMES: &'static [(&'static str, Self)] = &[("elf", Self::Elf), ("kdump", Self::Kdump)];
    const ACCEPTED: &'static str = "elf, kdump";
}

impl Named for Compress {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("lzo", Self::Lzo),
        ("zlib", Self::Zlib),
        ("none", Self::None),
    ];
    const ACCEPTED: &'static str = "lzo, zlib, none";
}

impl Named for AfterDump {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("reboot", Self::Reboot),
        ("halt", Self::Halt),
        ("poweroff", Self::Poweroff),
    ];
    const ACCEPTED: &'static str = "reboot, halt, poweroff";
}

impl Named for Overwrite {
    const NAMES: &'static [(&'static str, Self)] = &[("saved", Self::Saved), ("any", Self::Any)];
    const ACCEPTED: &'static str = "saved, any";
}

impl Named for Verify {
    const NAMES: &'static [(&'static str, Self)] = &[
        ("chunks", Self::Chunks),
        ("sha256", Self::Sha256),
        ("none", Self::None),
    ];
    const ACCEPTED: &'static str = "chunks, sha256, none";
}

macro_rules! impl_as_str_display {
    ($($t:ty),*) => {$(
        impl $t {
            /// The spelling used on the command line.
            pub fn as_str(self) -> &'static str {
                self.name()
            }
        }

        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

impl_as_str_display!(DumpTarget, Fallback, DumpFormat, Compress, AfterDump, Verify, Overwrite);

/// What `minicap.target=` accepts: the disk kinds, and the serial stream.
const TARGET_ACCEPTED: &str = "any, virtio-blk, nvme, ahci, serial";
const SERIAL_ACCEPTED: &str = "0x3f8, 0x2f8, 0x3e8 or 0x2e8 (COM1 to COM4)";
const TIMEOUT_ACCEPTED: &str = "auto, none, or whole seconds from 1 to 2592000 (30 days)";

/// Something on the command line that was ignored but may be a typo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warning<'a> {
    /// A `minicap.*` parameter this version does not know.
    UnknownKey {
        /// The full key, prefix included.
        key: &'a str,
        /// Its value, if any.
        value: Option<&'a str>,
    },
}

impl fmt::Display for Warning<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKey { key, value: _ } => {
                write!(f, "ignoring unknown option {key}")
            }
        }
    }
}

/// A known `minicap.*` option with a value it does not accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptionError<'a> {
    /// The full key, prefix included.
    pub key: &'a str,
    /// The rejected value, `None` if the key had no `=value`.
    pub value: Option<&'a str>,
    /// Human-readable list of what is accepted.
    pub accepted: &'static str,
}

impl fmt::Display for OptionError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value {
            Some(v) => write!(
                f,
                "invalid value {v:?} for {}: accepted values: {}",
                self.key, self.accepted
            ),
            None => write!(
                f,
                "{} needs a value: accepted values: {}",
                self.key, self.accepted
            ),
        }
    }
}

impl core::error::Error for OptionError<'_> {}

/// The capture kernel's settings from `minicap.*` parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinicapOptions {
    /// `minicap.target=`, default `any`: the kinds of disk searched (`any` with `serial`).
    pub target: DumpTarget,
    /// `minicap.target=serial` (the last `minicap.target=` wins).
    pub serial_target: bool,
    /// `minicap.fallback=`, default `none`.
    pub fallback: Fallback,
    /// `minicap.serial=`, default COM1 (0x3f8).
    pub serial_port: SerialPortBase,
    /// `minicap.format=`; `None`: the transport's default ([`MinicapOptions::format`]).
    pub format: Option<DumpFormat>,
    /// `minicap.compress=`, default `lzo` (kdump format only).
    pub compress: Compress,
    /// `minicap.dump_level=0..31`, makedumpfile's `-d` bits (1 zero pages, 2 page cache,
    /// 4 private cache, 8 user pages, 16 free pages); `None`: the format's default
    /// ([`MinicapOptions::dump_level`]).
    pub dump_level: Option<u8>,
    /// `minicap.after=`, default `reboot`.
    pub after: AfterDump,
    /// `minicap.verify=`, default `chunks`.
    pub verify: Verify,
    /// `minicap.device=<32 hex digits>`: the id `minicap format` wrote into the dump device's
    /// header. The kernel writes only to a device whose header carries this id.
    pub device: Option<[u8; 16]>,
    /// `minicap.timeout=`, default `auto`: the bound on the whole capture.
    pub timeout: Timeout,
    /// `minicap.overwrite=`, default `saved`: whether an unsaved dump on the target is kept.
    pub overwrite: Overwrite,
}

const DEVICE_ACCEPTED: &str = "32 hex digits (the id printed by `minicap format`)";
const DUMP_LEVEL_ACCEPTED: &str = "0 to 31 (makedumpfile -d bits)";

/// Highest `minicap.dump_level=`: all five makedumpfile bits.
pub const MAX_DUMP_LEVEL: u8 = 31;

impl MinicapOptions {
    /// Where the dump goes first: the serial stream if `minicap.target=serial`, else a disk
    /// (and the serial stream after it only with `minicap.fallback=serial`).
    pub fn transport(&self) -> Transport {
        if self.serial_target {
            Transport::Serial
        } else {
            Transport::Disk
        }
    }

    /// The format to write on `transport`: the one asked for, else ELF on a disk (the file
    /// /proc/vmcore gives) and kdump-compressed on a serial line, where every byte saved
    /// counts (a 115200-baud line carries about 11 KiB/s).
    pub fn format(&self, transport: Transport) -> DumpFormat {
        self.format.unwrap_or(match transport {
            Transport::Disk => DumpFormat::Elf,
            Transport::Serial => DumpFormat::Kdump,
        })
    }

    /// The dump level to apply on `transport`: the one asked for, else 31 for the kdump
    /// format (what kdump users run: `makedumpfile -d 31`) and 0 for ELF (the whole vmcore).
    pub fn dump_level(&self, transport: Transport) -> u8 {
        self.dump_level.unwrap_or(match self.format(transport) {
            DumpFormat::Kdump => MAX_DUMP_LEVEL,
            DumpFormat::Elf => 0,
        })
    }

    /// Reads the `minicap.*` parameters of `cmdline` (those before `--`, split as Linux does).
    ///
    /// Other parameters are ignored. An unknown `minicap.*` key is reported through `warn` and
    /// skipped, so an option added later does not stop an older kernel from dumping. A known key
    /// with a bad or missing value is an error even if a later occurrence is valid: the user
    /// asked for something specific and should not get a silent default. Otherwise the last
    /// occurrence wins, as with Linux parameters.
    pub fn parse<'a>(
        cmdline: &'a str,
        mut warn: impl FnMut(Warning<'a>),
    ) -> Result<Self, OptionError<'a>> {
        let mut opts = Self::default();
        for p in params(cmdline) {
            let Some(name) = p.key.strip_prefix(OPTION_PREFIX) else {
                continue;
            };
            match name {
                "target" if p.value == Some("serial") => {
                    opts.serial_target = true;
                    opts.target = DumpTarget::Any;
                }
                "target" => {
                    opts.target = value_of(p.key, p.value, TARGET_ACCEPTED, DumpTarget::parse)?;
                    opts.serial_target = false;
                }
                "fallback" => opts.fallback = named(p.key, p.value)?,
                "serial" => {
                    opts.serial_port =
                        value_of(p.key, p.value, SERIAL_ACCEPTED, SerialPortBase::parse)?;
                }
                "format" => opts.format = Some(named(p.key, p.value)?),
                "after" => opts.after = named(p.key, p.value)?,
                "compress" => opts.compress = named(p.key, p.value)?,
                "dump_level" => {
                    let level = p
                        .value
                        .and_then(|v| v.parse::<u8>().ok())
                        .filter(|&l| l <= MAX_DUMP_LEVEL)
                        .ok_or(OptionError {
                            key: p.key,
                            value: p.value,
                            accepted: DUMP_LEVEL_ACCEPTED,
                        })?;
                    opts.dump_level = Some(level);
                }
                "verify" => opts.verify = named(p.key, p.value)?,
                "overwrite" => opts.overwrite = named(p.key, p.value)?,
                "timeout" => {
                    opts.timeout = value_of(p.key, p.value, TIMEOUT_ACCEPTED, Timeout::parse)?;
                }
                "device" => {
                    let id = p.value.and_then(parse_hex16).ok_or(OptionError {
                        key: p.key,
                        value: p.value,
                        accepted: DEVICE_ACCEPTED,
                    })?;
                    opts.device = Some(id);
                }
                _ => warn(Warning::UnknownKey {
                    key: p.key,
                    value: p.value,
                }),
            }
        }
        Ok(opts)
    }
}

fn named<'a, T: Named>(key: &'a str, value: Option<&'a str>) -> Result<T, OptionError<'a>> {
    value_of(key, value, T::ACCEPTED, T::parse)
}

fn value_of<'a, T>(
    key: &'a str,
    value: Option<&'a str>,
    accepted: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<T, OptionError<'a>> {
    value.and_then(parse).ok_or(OptionError {
        key,
        value,
        accepted,
    })
}

/// Exactly 32 hex digits (either case) to 16 bytes, most significant first.
fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    let bytes = s.as_bytes();
    if bytes.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        *o = u8::try_from(hi << 4 | lo).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cl: &str) -> (Result<MinicapOptions, OptionError<'_>>, Vec<Warning<'_>>) {
        let mut warnings = Vec::new();
        let r = MinicapOptions::parse(cl, |w| warnings.push(w));
        (r, warnings)
    }

    const ID: &str = "00112233445566778899aabbccddeeff";
    const ID_BYTES: [u8; 16] = [
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff,
    ];

    #[test]
    fn defaults() {
        let (r, w) = parse("root=/dev/sda irqpoll elfcorehdr=0x1000");
        assert_eq!(r.unwrap(), MinicapOptions::default());
        assert!(w.is_empty());
        let d = MinicapOptions::default();
        assert_eq!(d.target, DumpTarget::Any);
        assert_eq!(d.format(Transport::Disk), DumpFormat::Elf);
        assert_eq!(d.transport(), Transport::Disk);
        assert_eq!(d.fallback, Fallback::None);
        assert_eq!(d.serial_port.base(), 0x3f8);
        assert_eq!(d.after, AfterDump::Reboot);
        assert_eq!(d.verify, Verify::Chunks);
        assert_eq!(d.device, None);
        assert_eq!(d.timeout, Timeout::Auto);
        assert_eq!(d.overwrite, Overwrite::Saved);
    }

    #[test]
    fn timeout_values() {
        for (text, want) in [
            ("auto", Timeout::Auto),
            ("none", Timeout::None),
            ("1", Timeout::Seconds(1)),
            ("90", Timeout::Seconds(90)),
            ("2592000", Timeout::Seconds(2_592_000)),
        ] {
            let o = parse(&format!("minicap.timeout={text}")).0.unwrap();
            assert_eq!(o.timeout, want, "{text}");
            assert_eq!(want.to_string(), text);
        }
        for bad in [
            "0",
            "-5",
            "+5",
            "2592001",
            "4294967296",
            "10s",
            "1.5",
            "",
            "AUTO",
        ] {
            let cl = format!("minicap.timeout={bad}");
            let e = parse(&cl).0.unwrap_err();
            assert_eq!(e.key, "minicap.timeout", "{bad}");
            assert_eq!(e.accepted, TIMEOUT_ACCEPTED, "{bad}");
        }
        assert!(parse("minicap.timeout").0.is_err());
        assert_eq!(
            parse("minicap.timeout=5 minicap.timeout=none")
                .0
                .unwrap()
                .timeout,
            Timeout::None
        );
    }

    #[test]
    fn timeout_bounds() {
        // auto: ten minutes plus the RAM at 4 MiB/s.
        let disk = Transport::Disk;
        assert_eq!(Timeout::Auto.seconds_for(disk, 0), Some(600));
        assert_eq!(Timeout::Auto.seconds_for(disk, 1 << 30), Some(600 + 256));
        assert_eq!(
            Timeout::Auto.seconds_for(disk, 64 << 30),
            Some(600 + 16_384)
        );
        assert_eq!(
            Timeout::Auto.seconds_for(disk, u64::MAX),
            Some(600 + (u64::MAX >> 22))
        );
        assert_eq!(Timeout::None.seconds_for(disk, 1 << 30), None);
        assert_eq!(Timeout::Seconds(7).seconds_for(disk, 1 << 40), Some(7));
        // The serial line: no automatic bound; an explicit one still holds.
        assert_eq!(Timeout::Auto.seconds_for(Transport::Serial, 1 << 30), None);
        assert_eq!(
            Timeout::Seconds(7).seconds_for(Transport::Serial, 1 << 30),
            Some(7)
        );
    }

    #[test]
    fn overwrite_values() {
        assert_eq!(
            parse("minicap.overwrite=any").0.unwrap().overwrite,
            Overwrite::Any
        );
        assert_eq!(
            parse("minicap.overwrite=any minicap.overwrite=saved")
                .0
                .unwrap()
                .overwrite,
            Overwrite::Saved
        );
        assert_eq!(Overwrite::Any.to_string(), "any");
        for bad in ["unsaved", "yes", "", "ANY"] {
            let cl = format!("minicap.overwrite={bad}");
            let e = parse(&cl).0.unwrap_err();
            assert_eq!(e.key, "minicap.overwrite");
            assert_eq!(e.accepted, "saved, any");
        }
    }

    #[test]
    fn all_options() {
        let cl = format!(
            "irqpoll minicap.target=virtio-blk minicap.format=elf minicap.after=poweroff \
             minicap.verify=sha256 minicap.device={ID}"
        );
        let (r, w) = parse(&cl);
        assert_eq!(
            r.unwrap(),
            MinicapOptions {
                target: DumpTarget::VirtioBlk,
                serial_target: false,
                fallback: Fallback::None,
                serial_port: SerialPortBase::COM1,
                format: Some(DumpFormat::Elf),
                compress: Compress::Lzo,
                dump_level: None,
                after: AfterDump::Poweroff,
                verify: Verify::Sha256,
                device: Some(ID_BYTES),
                timeout: Timeout::Auto,
                overwrite: Overwrite::Saved,
            }
        );
        assert!(w.is_empty());
    }

    #[test]
    fn every_target_kind() {
        for (value, want) in [
            ("any", DumpTarget::Any),
            ("virtio-blk", DumpTarget::VirtioBlk),
            ("nvme", DumpTarget::Nvme),
            ("ahci", DumpTarget::Ahci),
        ] {
            let o = parse(&format!("minicap.target={value}")).0.unwrap();
            assert_eq!(o.target, want, "{value}");
            assert_eq!(want.as_str(), value);
        }
        // The last occurrence wins, as for the other options.
        let o = parse("minicap.target=nvme minicap.target=any").0.unwrap();
        assert_eq!(o.target, DumpTarget::Any);
        assert!(parse("minicap.target=NVMe").0.is_err());
        assert!(parse("minicap.target=sata").0.is_err());
        assert!(parse("minicap.target=").0.is_err());
    }

    #[test]
    fn serial_target_fallback_and_port() {
        let o = parse("minicap.target=serial").0.unwrap();
        assert_eq!(o.transport(), Transport::Serial);
        // Serial's defaults: kdump-compressed at level 31; what is asked for still wins.
        assert_eq!(o.format(Transport::Serial), DumpFormat::Kdump);
        assert_eq!(o.dump_level(Transport::Serial), 31);
        assert_eq!(o.format(Transport::Disk), DumpFormat::Elf);
        let o = parse("minicap.target=serial minicap.format=elf minicap.dump_level=1")
            .0
            .unwrap();
        assert_eq!(o.format(Transport::Serial), DumpFormat::Elf);
        assert_eq!(o.dump_level(Transport::Serial), 1);
        // The last minicap.target= wins, serial or not.
        let o = parse("minicap.target=serial minicap.target=nvme")
            .0
            .unwrap();
        assert_eq!(
            (o.transport(), o.target),
            (Transport::Disk, DumpTarget::Nvme)
        );
        let o = parse("minicap.target=nvme minicap.target=serial")
            .0
            .unwrap();
        assert_eq!(
            (o.transport(), o.target),
            (Transport::Serial, DumpTarget::Any)
        );
        let e = parse("minicap.target=uart").0.unwrap_err();
        assert_eq!(e.accepted, TARGET_ACCEPTED);

        let o = parse("minicap.fallback=serial minicap.serial=0x2F8")
            .0
            .unwrap();
        assert_eq!(o.transport(), Transport::Disk);
        assert_eq!(o.fallback, Fallback::Serial);
        assert_eq!(o.serial_port.base(), 0x2f8);
        assert_eq!(o.serial_port.to_string(), "0x2f8");
        assert_eq!(
            parse("minicap.fallback=none").0.unwrap().fallback,
            Fallback::None
        );
        assert!(parse("minicap.fallback=disk").0.is_err());
        for bad in ["0x3f9", "3f8", "0x80", "ttyS0", ""] {
            let cl = format!("minicap.serial={bad}");
            let e = parse(&cl).0.unwrap_err();
            assert_eq!(e.accepted, SERIAL_ACCEPTED, "{bad}");
        }
        assert!(parse("minicap.serial").0.is_err());
    }

    #[test]
    fn kdump_format_compress_and_dump_level() {
        let o = parse("minicap.format=kdump minicap.compress=zlib minicap.dump_level=17")
            .0
            .unwrap();
        assert_eq!(o.format, Some(DumpFormat::Kdump));
        assert_eq!(o.compress, Compress::Zlib);
        assert_eq!(o.dump_level(Transport::Disk), 17);
        for (text, c) in [
            ("lzo", Compress::Lzo),
            ("zlib", Compress::Zlib),
            ("none", Compress::None),
        ] {
            let cl = format!("minicap.compress={text}");
            assert_eq!(parse(&cl).0.unwrap().compress, c, "{text}");
            assert_eq!(c.as_str(), text);
        }
        // The format's default level: everything makedumpfile can drop for kdump, nothing
        // for ELF.
        assert_eq!(
            parse("minicap.format=kdump")
                .0
                .unwrap()
                .dump_level(Transport::Disk),
            31
        );
        assert_eq!(
            parse("minicap.format=elf")
                .0
                .unwrap()
                .dump_level(Transport::Disk),
            0
        );
        assert_eq!(
            parse("minicap.dump_level=0")
                .0
                .unwrap()
                .dump_level(Transport::Disk),
            0
        );
        assert_eq!(
            parse("minicap.dump_level=31")
                .0
                .unwrap()
                .dump_level(Transport::Disk),
            31
        );
        for bad in ["32", "-1", "0x1f", "", "high"] {
            let cl = format!("minicap.dump_level={bad}");
            let e = parse(&cl).0.unwrap_err();
            assert_eq!(e.key, "minicap.dump_level");
            assert_eq!(e.accepted, DUMP_LEVEL_ACCEPTED, "{bad}");
        }
        assert!(parse("minicap.dump_level").0.is_err());
        let e = parse("minicap.compress=zstd").0.unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"zstd\" for minicap.compress: accepted values: lzo, zlib, none"
        );
    }

    #[test]
    fn after_values_and_last_wins() {
        assert_eq!(
            parse("minicap.after=halt").0.unwrap().after,
            AfterDump::Halt
        );
        assert_eq!(
            parse("minicap.after=halt minicap.after=reboot")
                .0
                .unwrap()
                .after,
            AfterDump::Reboot
        );
        assert_eq!(
            parse("\"minicap.after=poweroff\"").0.unwrap().after,
            AfterDump::Poweroff
        );
    }

    #[test]
    fn verify_values_and_last_wins() {
        for (text, v) in [
            ("chunks", Verify::Chunks),
            ("sha256", Verify::Sha256),
            ("none", Verify::None),
        ] {
            let cl = format!("minicap.verify={text}");
            assert_eq!(parse(&cl).0.unwrap().verify, v, "{text}");
            assert_eq!(v.as_str(), text);
            assert_eq!(v.to_string(), text);
        }
        assert_eq!(
            parse("minicap.verify=none minicap.verify=sha256")
                .0
                .unwrap()
                .verify,
            Verify::Sha256
        );
    }

    #[test]
    fn bad_verify_values() {
        for cl in [
            "minicap.verify=md5",
            "minicap.verify=",
            "minicap.verify=SHA256",
            "minicap.verify=xxh64",
            "minicap.verify",
        ] {
            let e = parse(cl).0.unwrap_err();
            assert_eq!(e.key, "minicap.verify", "{cl}");
            assert_eq!(e.accepted, "chunks, sha256, none", "{cl}");
        }
        let e = parse("minicap.verify=md5").0.unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"md5\" for minicap.verify: accepted values: chunks, sha256, none"
        );
        // An earlier bad value is not hidden by a later good one.
        assert!(parse("minicap.verify=md5 minicap.verify=none").0.is_err());
    }

    #[test]
    fn device_upper_case() {
        let cl = format!("minicap.device={}", ID.to_uppercase());
        assert_eq!(parse(&cl).0.unwrap().device, Some(ID_BYTES));
    }

    #[test]
    fn bad_device() {
        for v in [
            "",
            "0011",
            "00112233445566778899aabbccddeef",
            "00112233445566778899aabbccddeeff0",
            "00112233445566778899aabbccddeegg",
            "+0112233445566778899aabbccddeeff",
            "0011223344556677-899aabbccddeeff",
            "ü0112233445566778899aabbccddeef",
        ] {
            let cl = format!("minicap.device={v}");
            let (r, _) = parse(&cl);
            let e = r.unwrap_err();
            assert_eq!(e.key, "minicap.device");
            assert_eq!(e.value, Some(v));
            assert!(e.to_string().contains("32 hex digits"));
        }
        let e = parse("minicap.device").0.unwrap_err();
        assert_eq!(e.value, None);
        assert!(e.to_string().contains("needs a value"), "{e}");
    }

    #[test]
    fn bad_values_name_key_value_and_accepted() {
        let e = parse("minicap.after=explode").0.unwrap_err();
        assert_eq!(
            e,
            OptionError {
                key: "minicap.after",
                value: Some("explode"),
                accepted: "reboot, halt, poweroff"
            }
        );
        let s = e.to_string();
        assert!(
            s.contains("minicap.after") && s.contains("explode") && s.contains("poweroff"),
            "{s}"
        );
        let e = parse("minicap.target=scsi").0.unwrap_err();
        assert!(e.to_string().contains("any, virtio-blk, nvme, ahci"), "{e}");
        let e = parse("minicap.format=diskdump").0.unwrap_err();
        assert!(e.to_string().contains("elf, kdump"));
        // Case matters, like Linux parameter values generally.
        assert!(parse("minicap.after=Reboot").0.is_err());
        // An earlier bad value is not hidden by a later good one.
        assert!(parse("minicap.after=x minicap.after=halt").0.is_err());
        assert!(parse("minicap.format").0.is_err());
    }

    #[test]
    fn unknown_keys_warn() {
        let (r, w) = parse("minicap.colour=blue minicap. minicap.after=halt minicapx=1");
        assert_eq!(r.unwrap().after, AfterDump::Halt);
        assert_eq!(
            w,
            vec![
                Warning::UnknownKey {
                    key: "minicap.colour",
                    value: Some("blue")
                },
                Warning::UnknownKey {
                    key: "minicap.",
                    value: None
                },
            ]
        );
        assert_eq!(w[0].to_string(), "ignoring unknown option minicap.colour");
    }

    #[test]
    fn stops_at_double_dash() {
        let (r, w) = parse("minicap.after=halt -- minicap.after=bogus minicap.zzz");
        assert_eq!(r.unwrap().after, AfterDump::Halt);
        assert!(w.is_empty());
    }

    #[test]
    fn names() {
        assert_eq!(AfterDump::Poweroff.as_str(), "poweroff");
        assert_eq!(AfterDump::Halt.to_string(), "halt");
        assert_eq!(DumpTarget::VirtioBlk.to_string(), "virtio-blk");
        assert_eq!(DumpTarget::Nvme.to_string(), "nvme");
        assert_eq!(DumpTarget::Ahci.to_string(), "ahci");
        assert_eq!(DumpTarget::Any.to_string(), "any");
        assert_eq!(DumpFormat::Elf.to_string(), "elf");
    }
}

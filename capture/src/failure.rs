//! Why a capture stopped: one variant per reason, with its data. The console
//! text and the on-device message come from `Display`; the stable code from
//! [`Failure::code`]; whether the device was touched from
//! [`Failure::effect`], which also decides the "nothing was written" /
//! "the dump area was not touched" ending, so no call site types it.

use crate::text::{FixedString, Size};
use core::fmt;
use minicap_bootinfo::cmdline::DumpTarget;
use minicap_bootinfo::{BootParamsError, RangeSetError};
use minicap_dumpheader::{DeviceIdHex, DumpState, FailureCode, UtcTime};
use minicap_elfcore::ElfCoreError;
use minicap_physmem::PhysMemError;

/// A driver's or parser's error rendered into a bounded buffer (the errors
/// that borrow from the command line, or whose type the kernel does not
/// share with this crate).
pub type Detail = FixedString<160>;
/// A device's name as the driver describes it ("virtio-blk 00:04.0 (modern), 2048 MiB").
pub type DeviceName = FixedString<96>;

/// What a failure left on the dump device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEffect {
    /// No byte was written to any device.
    NothingWritten,
    /// At most the minicap header (and the log) was written; the dump area was not.
    DumpAreaUntouched,
    /// Part of the dump is on the device; the header says how much.
    PartialDump,
}

/// Which write or flush of the dump failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteStep {
    /// Writing the vmcore's ELF header or notes at byte `offset` of the vmcore.
    VmcorePrefix {
        /// Offset in the vmcore.
        offset: u64,
    },
    /// Writing old memory at `source` to byte `offset` of the device.
    Memory {
        /// Physical address read.
        source: u64,
        /// Device byte offset written.
        offset: u64,
    },
    /// The flush of a checkpoint.
    CheckpointFlush {
        /// Progress at the checkpoint.
        percent: u64,
    },
    /// The log and header update of a checkpoint.
    CheckpointHeader {
        /// Progress at the checkpoint.
        percent: u64,
    },
    /// Writing the kdump-compressed file at device byte `offset`.
    KdumpFile {
        /// Device byte offset written.
        offset: u64,
    },
    /// Reading the finished file back at device byte `offset` for its checksums.
    ReadBack {
        /// Device byte offset read.
        offset: u64,
    },
    /// The flush after the last byte.
    FinalFlush,
    /// The log and the "complete" header.
    FinalHeader,
}

impl fmt::Display for WriteStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::VmcorePrefix { offset } => write!(f, "writing the vmcore at byte {offset}"),
            Self::Memory { source, offset } => {
                write!(f, "writing memory {source:#x} to byte {offset:#x}")
            }
            Self::CheckpointFlush { percent } => write!(f, "flush after {percent}%"),
            Self::CheckpointHeader { percent } => {
                write!(f, "updating the header after {percent}%")
            }
            Self::KdumpFile { offset } => {
                write!(f, "writing the kdump file to byte {offset:#x}")
            }
            Self::ReadBack { offset } => write!(
                f,
                "reading the dump back at byte {offset:#x} for its checksums"
            ),
            Self::FinalFlush => f.write_str("final flush"),
            Self::FinalHeader => f.write_str("writing the final header"),
        }
    }
}

/// Why the capture stopped.
#[derive(Debug, Clone, Copy)]
pub enum Failure {
    /// boot_params (the loader's %rsi) cannot be read.
    BootParamsUnreadable {
        /// Its address.
        addr: u64,
        /// The failed read.
        error: PhysMemError,
    },
    /// boot_params is not a valid zero page.
    BadBootParams {
        /// Its address.
        addr: u64,
        /// What is wrong.
        error: BootParamsError,
    },
    /// A `minicap.*` option has an invalid value.
    BadOption(Detail),
    /// No `elfcorehdr=`: not loaded as a crash kernel.
    NoElfcorehdr,
    /// `elfcorehdr=` is malformed.
    BadElfcorehdr(Detail),
    /// `elfcorehdr=SIZE@ADDR` describes a range that does not fit the
    /// address space.
    ElfcorehdrOutOfRange {
        /// ADDR.
        addr: u64,
        /// SIZE.
        size: u64,
    },
    /// The ELF core headers are unusable.
    BadCoreHeaders {
        /// `elfcorehdr=` address.
        addr: u64,
        /// What is wrong.
        error: ElfCoreError,
    },
    /// A PT_LOAD covers minicap's own image (code, stacks, console log):
    /// dumping it would read memory minicap is changing.
    LoadOverlapsMinicap {
        /// `elfcorehdr=` address.
        addr: u64,
        /// The PT_LOAD range.
        load: (u64, u64),
        /// minicap's image.
        image: (u64, u64),
    },
    /// More PT_LOAD ranges outside RAM than minicap tracks.
    TooManySkippedRanges {
        /// `elfcorehdr=` address.
        addr: u64,
        /// The range set's complaint.
        error: RangeSetError,
    },
    /// The memory map cannot be tracked (too many fragments).
    MemoryMapTooFragmented(RangeSetError),
    /// Not enough free memory for the heap.
    CrashMemoryTooSmall {
        /// Largest free range.
        largest: u64,
        /// What was needed.
        needed: u64,
    },
    /// No memory left for minicap's page tables.
    OutOfMemoryForPageTables,
    /// The heap cannot hold a buffer minicap needs.
    OutOfMemory {
        /// What it was for ("the header buffer").
        what: &'static str,
    },
    /// A range the dump reads lies beyond what an identity map can reach.
    MemoryNotMappable {
        /// The range.
        range: (u64, u64),
        /// The first address the paging mode cannot map.
        limit: u64,
    },
    /// Old memory was not mapped when the writer read it.
    OldMemoryUnmapped {
        /// Physical address.
        source: u64,
    },
    /// The vmcore cannot be laid out.
    BadLayout(ElfCoreError),
    /// An IOMMU unit could not be taken over.
    Iommu {
        /// The unit's register base.
        unit: u64,
        /// The unit's error, rendered.
        detail: Detail,
    },
    /// No disk of the kinds `minicap.target=` selects.
    NoDevice {
        /// `minicap.target=`.
        target: DumpTarget,
    },
    /// Disks found, none prepared by `minicap format`.
    NoPreparedDevice {
        /// How many devices were looked at.
        count: usize,
    },
    /// No prepared device carries the requested id.
    DeviceIdMismatch {
        /// The requested id.
        wanted: [u8; 16],
    },
    /// Several prepared devices and no id to choose.
    AmbiguousDevice,
    /// The device is smaller than the dump.
    DeviceTooSmall {
        /// The device.
        device: DeviceName,
        /// Bytes needed.
        required: u64,
        /// Bytes it has.
        capacity: u64,
    },
    /// The device's logical block size cannot be written by minicap.
    UnsupportedBlockSize {
        /// The device.
        device: DeviceName,
        /// Its logical block size.
        block_size: u32,
    },
    /// The triage text (the crashed kernel's log) could not be written.
    TriageWrite {
        /// The device.
        device: DeviceName,
        /// The driver's error.
        error: Detail,
    },
    /// The kdump-compressed file outgrew the device (its size is known only at the end).
    DumpDeviceFull {
        /// The device.
        device: DeviceName,
        /// Bytes of the device for the dump.
        capacity: u64,
    },
    /// The first header write ("writing") failed.
    HeaderWrite {
        /// The device.
        device: DeviceName,
        /// The driver's error.
        error: Detail,
    },
    /// A write or flush of the dump failed.
    DeviceError {
        /// Which one.
        step: WriteStep,
        /// The driver's error.
        error: Detail,
    },
    /// A CPU exception inside minicap.
    CpuException {
        /// Vector.
        vector: u64,
        /// Its name.
        name: &'static str,
        /// Where.
        rip: u64,
    },
    /// A panic inside minicap (a bug).
    Internal(FixedString<240>),
    /// The whole capture ran past `minicap.timeout=`.
    TimedOut {
        /// Microseconds since minicap's entry when it was noticed.
        elapsed_us: u64,
        /// The bound, in seconds since entry.
        limit_s: u64,
        /// Whether writing had begun (part of the dump may be on the device).
        writing: bool,
    },
    /// The target holds a dump `minicap save` has not copied off; it is kept.
    UnsavedDumpPresent {
        /// The device.
        device: DeviceName,
        /// What its header says about the dump held.
        held: HeldDump,
    },
}

/// What a device's header says about the dump it holds (for the console and the message).
#[derive(Debug, Clone, Copy)]
pub struct HeldDump {
    /// Its state.
    pub state: DumpState,
    /// The crashed kernel's CRASHTIME (seconds since 1970), 0 if unknown.
    pub crash_time: i64,
    /// The crashed kernel's release.
    pub osrelease: FixedString<64>,
    /// Bytes of it on the device.
    pub written: u64,
    /// Its planned length.
    pub dump_length: u64,
}

impl fmt::Display for HeldDump {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a {} dump of ", self.state)?;
        if self.osrelease.as_str().is_empty() {
            f.write_str("an unknown kernel")?;
        } else {
            write!(f, "kernel {}", self.osrelease.as_str())?;
        }
        if self.crash_time != 0 {
            write!(f, " that crashed at {}", UtcTime(self.crash_time))?;
        }
        write!(
            f,
            ", {} of {} bytes ({}) on the device",
            self.written,
            self.dump_length,
            Size(self.written)
        )
    }
}

impl Failure {
    /// An IOMMU failure of the unit at `unit`, its error rendered.
    pub fn iommu(unit: u64, error: impl fmt::Display) -> Self {
        Self::Iommu {
            unit,
            detail: Detail::display(error),
        }
    }

    /// A device error at `step`, the driver's error rendered.
    pub fn device(step: WriteStep, error: impl fmt::Display) -> Self {
        Self::DeviceError {
            step,
            error: Detail::display(error),
        }
    }

    /// The stable code recorded in the dump header.
    pub fn code(&self) -> FailureCode {
        match self {
            Self::BootParamsUnreadable { .. } | Self::BadBootParams { .. } => {
                FailureCode::BadBootParams
            }
            Self::BadOption(_) => FailureCode::BadOption,
            Self::NoElfcorehdr => FailureCode::NoElfcorehdr,
            Self::BadElfcorehdr(_) | Self::ElfcorehdrOutOfRange { .. } => {
                FailureCode::BadElfcorehdr
            }
            Self::BadCoreHeaders { .. }
            | Self::LoadOverlapsMinicap { .. }
            | Self::TooManySkippedRanges { .. } => FailureCode::BadCoreHeaders,
            Self::MemoryMapTooFragmented(_) => FailureCode::BadMemoryMap,
            Self::CrashMemoryTooSmall { .. }
            | Self::OutOfMemoryForPageTables
            | Self::OutOfMemory { .. } => FailureCode::CrashMemoryTooSmall,
            Self::MemoryNotMappable { .. } | Self::OldMemoryUnmapped { .. } => {
                FailureCode::MemoryNotMappable
            }
            Self::BadLayout(_) => FailureCode::BadLayout,
            Self::Iommu { .. } => FailureCode::Iommu,
            Self::NoDevice { .. } => FailureCode::NoDevice,
            Self::NoPreparedDevice { .. } => FailureCode::NoPreparedDevice,
            Self::DeviceIdMismatch { .. } => FailureCode::DeviceIdMismatch,
            Self::AmbiguousDevice => FailureCode::AmbiguousDevice,
            Self::DeviceTooSmall { .. } => FailureCode::DeviceTooSmall,
            Self::UnsupportedBlockSize { .. } => FailureCode::UnsupportedBlockSize,
            Self::TriageWrite { .. } | Self::HeaderWrite { .. } | Self::DeviceError { .. } => {
                FailureCode::DeviceError
            }
            Self::DumpDeviceFull { .. } => FailureCode::DeviceTooSmall,
            Self::CpuException { .. } => FailureCode::CpuException,
            Self::Internal(_) => FailureCode::Internal,
            Self::TimedOut { .. } => FailureCode::Timeout,
            Self::UnsavedDumpPresent { .. } => FailureCode::UnsavedDumpPresent,
        }
    }

    /// What this failure left on the dump device. Only the writer's
    /// failures touch it; a CPU exception or a panic can strike at any time,
    /// so it claims nothing.
    pub fn effect(&self) -> Option<DeviceEffect> {
        match self {
            Self::TriageWrite { .. } | Self::HeaderWrite { .. } => {
                Some(DeviceEffect::DumpAreaUntouched)
            }
            Self::DeviceError { .. }
            | Self::OldMemoryUnmapped { .. }
            | Self::DumpDeviceFull { .. } => Some(DeviceEffect::PartialDump),
            Self::TimedOut { writing: true, .. } => Some(DeviceEffect::PartialDump),
            Self::CpuException { .. } | Self::Internal(_) => None,
            _ => Some(DeviceEffect::NothingWritten),
        }
    }

    /// The reason without the ending about the device.
    fn reason(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BootParamsUnreadable { addr, error } => {
                write!(f, "boot_params at {addr:#x} (%rsi at entry) is not readable: {error}")
            }
            Self::BadBootParams { addr, error } => {
                write!(f, "invalid boot_params at {addr:#x}: {error}")
            }
            Self::BadOption(detail) => write!(f, "bad minicap option: {detail}"),
            Self::NoElfcorehdr => f.write_str(
                "no elfcorehdr= on the command line: minicap was not loaded as a crash kernel, so there are no ELF core headers to dump from (load it with `minicap load`, or `kexec -p minicap.elf --args-linux`)",
            ),
            Self::BadElfcorehdr(detail) => write!(f, "{detail}"),
            Self::ElfcorehdrOutOfRange { addr, size } => write!(
                f,
                "invalid elfcorehdr={size:#x}@{addr:#x}: the range does not fit the address space"
            ),
            Self::BadCoreHeaders { addr, error } => {
                write!(f, "ELF core headers at elfcorehdr={addr:#x} are unusable: {error}")
            }
            Self::LoadOverlapsMinicap { addr, load, image } => write!(
                f,
                "ELF core headers at elfcorehdr={addr:#x} are unusable: PT_LOAD {:#x}-{:#x} overlaps minicap's own image (code, stacks, console log) at {:#x}-{:#x}",
                load.0, load.1, image.0, image.1
            ),
            Self::TooManySkippedRanges { addr, error } => write!(
                f,
                "ELF core headers at elfcorehdr={addr:#x} are unusable: too many PT_LOAD ranges outside RAM: {error}"
            ),
            Self::MemoryMapTooFragmented(e) => write!(f, "memory map too fragmented: {e}"),
            Self::CrashMemoryTooSmall { largest, needed } => write!(
                f,
                "not enough usable crash-kernel memory: largest free range is {largest} bytes, need {needed} (raise crashkernel=)"
            ),
            Self::OutOfMemoryForPageTables => {
                f.write_str("out of memory for page tables (raise crashkernel=)")
            }
            Self::OutOfMemory { what } => write!(f, "out of memory for {what}"),
            Self::MemoryNotMappable { range, limit } => write!(
                f,
                "memory {:#x}-{:#x} that the dump must read lies beyond {limit:#x}, the most this CPU's paging mode can map",
                range.0, range.1
            ),
            Self::OldMemoryUnmapped { source } => {
                write!(f, "old memory at {source:#x} is not mapped")
            }
            Self::BadLayout(e) => write!(f, "cannot lay out the vmcore: {e}"),
            Self::Iommu { unit, detail } => write!(f, "IOMMU: unit at {unit:#x}: {detail}"),
            Self::NoDevice { target } => write!(
                f,
                "no {} disk on the PCI bus (minicap.target={target})",
                match target {
                    DumpTarget::Any => "virtio-blk, NVMe or AHCI",
                    DumpTarget::VirtioBlk => "virtio-blk",
                    DumpTarget::Nvme => "NVMe",
                    DumpTarget::Ahci => "AHCI",
                }
            ),
            Self::NoPreparedDevice { count } => write!(
                f,
                "none of the {count} disk(s) is a prepared minicap dump device (run `minicap format DEVICE` first)"
            ),
            Self::DeviceIdMismatch { wanted } => write!(
                f,
                "no disk has minicap device id {}",
                DeviceIdHex(wanted)
            ),
            Self::AmbiguousDevice => f.write_str(
                "more than one prepared minicap device and no minicap.device=<id> to choose",
            ),
            Self::DeviceTooSmall {
                device,
                required,
                capacity,
            } => write!(
                f,
                "dump device {device} is too small: the dump needs {required} bytes ({}), the device has {capacity} bytes ({})",
                Size(*required),
                Size(*capacity)
            ),
            Self::UnsupportedBlockSize { device, block_size } => write!(
                f,
                "dump device {device} has {block_size}-byte logical blocks: minicap writes power-of-two blocks of 512 to 4096 bytes"
            ),
            Self::TriageWrite { device, error } => write!(
                f,
                "cannot write the triage text (the crashed kernel's log) to {device}: {error}"
            ),
            Self::DumpDeviceFull { device, capacity } => write!(
                f,
                "dump device {device} is full: the kdump-compressed file needs more than its {capacity} bytes ({}) after the header area; what was written up to the last checkpoint is kept (raise minicap.dump_level= or use a larger device)",
                Size(*capacity)
            ),
            Self::HeaderWrite { device, error } => {
                write!(f, "cannot write the minicap header to {device}: {error}")
            }
            Self::DeviceError { step, error } => write!(f, "{step}: {error}"),
            Self::CpuException { vector, name, rip } => write!(
                f,
                "CPU exception {vector} ({name}) at RIP {rip:#x}; the capture stopped"
            ),
            Self::Internal(detail) => write!(f, "internal error: {detail}"),
            Self::TimedOut {
                elapsed_us,
                limit_s,
                writing,
            } => {
                write!(
                    f,
                    "the capture ran past its time limit: {}.{:03} s since minicap started, limit {limit_s} s (minicap.timeout=)",
                    elapsed_us / 1_000_000,
                    (elapsed_us / 1000) % 1000
                )?;
                if *writing {
                    f.write_str("; no further write was started, what the device confirmed is kept")?;
                }
                Ok(())
            }
            Self::UnsavedDumpPresent { device, held } => write!(
                f,
                "dump device {device} holds {held}, not yet saved: it is kept; copy it off with `minicap save DEVICE` (the next crash is then captured), or boot the capture kernel with minicap.overwrite=any to replace it"
            ),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.reason(f)?;
        match self.effect() {
            Some(DeviceEffect::NothingWritten) => f.write_str("; nothing was written"),
            Some(DeviceEffect::DumpAreaUntouched) => f.write_str("; the dump area was not touched"),
            Some(DeviceEffect::PartialDump) | None => Ok(()),
        }
    }
}

/// The console's last line for a failure: `RESULT: failure [<code>]: <message>`
/// (after the console's "minicap: " prefix).
pub struct ResultLine<'a>(pub &'a Failure);

impl fmt::Display for ResultLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RESULT: failure [{}]: {}", self.0.code(), self.0)
    }
}

#[cfg(test)]
mod tests;

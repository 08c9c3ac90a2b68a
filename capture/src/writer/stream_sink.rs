//! The dump as a framed stream on a line that can only append (`minicap.target=serial`):
//! the same file writers as on a disk, through a [`Sink`] that turns each `write(offset,
//! bytes)` into Data frames of the `minicap-serialstream` format (makedumpfile's flattened
//! records, each with a sequence number and a CRC). `minicap receive` applies them in order
//! and gets byte for byte the file a disk would hold.
//!
//! The order keeps a cut stream useful, as the disk path's order keeps a header true:
//!
//! 1. Start (format, page size, crash time), then the triage text in Triage frames, before
//!    any dump data: the crashed kernel's log arrives first;
//! 2. the file, in the order the writer produces it (a kdump-compressed file's block 0 is
//!    sent again at the end without its "incomplete" flag, as on a disk); every 10 % of the
//!    progress a console line with the rate;
//! 3. the console log in Log frames, then End: complete, or failed with the failure's code
//!    and message, with the file's length and the count and XXH64 of the Data payloads.
//!
//! There is no read-back and no chunk table (`minicap.verify=` is for disks): the line
//! cannot be read back, and the CRC of each frame plus the End frame's XXH64 let the
//! receiver check everything it got. A failed send (a stalled UART) still tries the Log
//! and End frames, since only the line's own [`ByteOutput`] knows whether it recovered.
//!
//! The writer touches no hardware: the line is a [`ByteOutput`] (the kernel's UART; a
//! vector in the tests).

use super::device_sink::FileProgress;
use super::kdump::{kdump_progress, write_kdump_pages, FrameFilter, KdumpDump, PageTally};
use super::{elf_failure, Triage, WriterEnv, LOG_BYTES};
use crate::failure::{DeviceName, WriteStep};
use crate::profile::{Phase, Profile};
use crate::text::FixedString;
use crate::writer::elf_filtered::FilteredElf;
use crate::writer::DmaBuffer;
use crate::Failure;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::cell::Cell;
use core::fmt;
use minicap_kdumpfile::{Sink, PAGE_SIZE};
use minicap_physmem::PhysMem;
use minicap_serialstream::{
    Encoder, End, EndResult, Kind, Start, StreamFormat, END_FIXED_LEN, END_MESSAGE_MAX, MAX_PAYLOAD,
};

/// Most file bytes in one Data frame: a 4 KiB block (the payload adds its offset).
const DATA_BYTES: usize = MAX_PAYLOAD - 8;

/// A line that bytes are sent on, in order.
pub trait ByteOutput {
    /// Why bytes could not be sent (a stalled UART).
    type Error: fmt::Display;
    /// Sends `bytes` whole, with no other output in between (the console may share the line
    /// between frames, never inside one).
    fn send(&mut self, bytes: &[u8]) -> Result<(), Self::Error>;
}

/// Where the stream goes and what its Start frame says besides the format.
#[derive(Clone, Copy)]
pub struct StreamTarget<'a> {
    /// The line, for messages ("serial 0x3f8").
    pub name: &'a DeviceName,
    /// VMCOREINFO `CRASHTIME` (0 unknown).
    pub crash_time: u64,
}

/// What a stream capture sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    /// Length of the file.
    pub file_len: u64,
    /// Pages of the dumped kernel's RAM.
    pub ram_pages: u64,
    /// Pages in the file.
    pub dumped_pages: u64,
    /// Data frames sent.
    pub data_records: u64,
    /// XXH64 of their payloads.
    pub data_xxh64: u64,
    /// Bytes sent on the line, frames only (console lines between them not counted).
    pub wire_bytes: u64,
    /// Microseconds from the Start frame to the End frame.
    pub elapsed_us: u64,
}

/// The line as a file writer's [`Sink`].
struct StreamSink<'a, O, E> {
    out: &'a mut O,
    env: &'a mut E,
    progress: FileProgress<'a>,
    encoder: Box<Encoder>,
    /// The console log, copied at the end (taken first: no allocation after the start).
    log: Vec<u8>,
    /// End of the furthest byte sent.
    file_len: u64,
    wire_bytes: u64,
    started_us: u64,
    next_percent: u64,
}

impl<O: ByteOutput, E: WriterEnv> Sink for StreamSink<'_, O, E> {
    type Error = Failure;

    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), Failure> {
        super::within_time_limit(self.env)?;
        self.report_progress_if_due();
        let mut at = offset;
        for piece in bytes.chunks(DATA_BYTES) {
            self.send(Kind::Data, &[&at.to_le_bytes(), piece])
                .map_err(|e| Failure::device((self.progress.step)(at), e))?;
            at += piece.len() as u64;
        }
        self.file_len = self.file_len.max(at);
        Ok(())
    }
}

/// Why a frame was not sent.
enum SendError<L> {
    Frame(minicap_serialstream::FrameError),
    Line(L),
}

impl<L: fmt::Display> fmt::Display for SendError<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Frame(e) => e.fmt(f),
            Self::Line(e) => e.fmt(f),
        }
    }
}

impl<'a, O: ByteOutput, E: WriterEnv> StreamSink<'a, O, E> {
    /// Takes the buffers, then sends the Start frame and the triage text.
    fn start(
        out: &'a mut O,
        env: &'a mut E,
        target: StreamTarget<'a>,
        format: StreamFormat,
        triage: Option<&mut Triage<E::Buffer>>,
        progress: FileProgress<'a>,
        profile: &mut Profile,
    ) -> Result<Self, Failure> {
        let mut log = Vec::new();
        log.try_reserve_exact(LOG_BYTES)
            .map_err(|_| Failure::OutOfMemory {
                what: "the log buffer",
            })?;
        log.resize(LOG_BYTES, 0);
        profile.enter(Phase::Write, env.now_us());
        let started_us = env.now_us();
        let mut sink = Self {
            out,
            env,
            progress,
            encoder: Box::new(Encoder::new()),
            log,
            file_len: 0,
            wire_bytes: 0,
            started_us,
            next_percent: super::CHECKPOINT_PERCENT,
        };
        let start = Start {
            format,
            page_size: u32::try_from(PAGE_SIZE).unwrap_or(0),
            crash_time: target.crash_time,
            planned_size: 0,
        };
        let triage_failed = |e: SendError<O::Error>| Failure::TriageWrite {
            device: *target.name,
            error: FixedString::display(e),
        };
        sink.send(Kind::Start, &[&start.encode()])
            .map_err(triage_failed)?;
        if let Some(triage) = triage {
            let len = triage.len;
            triage
                .buffer
                .with_bytes_mut(|text| {
                    text[..len.min(text.len())]
                        .chunks(MAX_PAYLOAD)
                        .try_for_each(|piece| sink.send(Kind::Triage, &[piece]))
                })
                .map_err(triage_failed)?;
        }
        sink.env.say(format_args!(
            "stream: start and {} triage frame(s) sent on {}",
            sink.encoder.frames() - 1,
            target.name.as_str()
        ));
        Ok(sink)
    }

    /// Builds and sends one frame.
    fn send(&mut self, kind: Kind, parts: &[&[u8]]) -> Result<(), SendError<O::Error>> {
        let frame = self.encoder.frame(kind, parts).map_err(SendError::Frame)?;
        self.wire_bytes += frame.len() as u64;
        self.out.send(frame).map_err(SendError::Line)
    }

    /// Every 10 % of the progress: one console line (between frames) with the rate.
    fn report_progress_if_due(&mut self) {
        let percent = u64::try_from(
            u128::from(self.progress.done.get()) * 100 / u128::from(self.progress.total.max(1)),
        )
        .unwrap_or(100);
        if percent < self.next_percent || percent >= 100 {
            return;
        }
        while self.next_percent <= percent {
            self.next_percent += super::CHECKPOINT_PERCENT;
        }
        let us = self.env.now_us().saturating_sub(self.started_us).max(1);
        let kib_per_s = u128::from(self.wire_bytes) * 1_000_000 / 1024 / u128::from(us);
        self.env.say(format_args!(
            "{percent:3}% of memory: {} KiB of {} sent, {kib_per_s} KiB/s on the line",
            self.file_len >> 10,
            self.progress.what,
        ));
    }

    /// The log and the End frame: `outcome` is the file's length and pages, or the
    /// failure (returned as it is, said first so that the log holds it).
    fn finish(
        mut self,
        outcome: Result<(u64, u64, u64), Failure>,
        profile: &mut Profile,
    ) -> Result<StreamSummary, Failure> {
        if profile.current() == Phase::Write {
            profile.enter(Phase::Final, self.env.now_us());
        }
        let elapsed_us = self.env.now_us().saturating_sub(self.started_us);
        let mut message = FixedString::<END_MESSAGE_MAX>::new();
        let (result, failure_code) = match &outcome {
            Ok(_) => (EndResult::Complete, 0),
            Err(failure) => {
                self.env.say(format_args!(
                    "capture failed after {} bytes of the file were sent: {failure}",
                    self.file_len
                ));
                message = FixedString::display(failure);
                (EndResult::Failed, failure.code().to_raw())
            }
        };
        let now = self.env.now_us();
        self.env.say(format_args!("{}", profile.line(now)));
        let file_size = match outcome {
            Ok((file_len, _, _)) => file_len,
            Err(_) => self.file_len,
        };
        let end = End {
            result,
            failure_code,
            file_size,
            data_records: self.encoder.data_records(),
            data_xxh64: self.encoder.data_xxh64(),
            message: message.as_str(),
        };
        let mut end_bytes = [0u8; END_FIXED_LEN + END_MESSAGE_MAX];
        let end_len = end.encode(&mut end_bytes);
        let log_len = self.env.copy_log(&mut self.log);
        let mut log = core::mem::take(&mut self.log);
        let sent = log[..log_len]
            .chunks(MAX_PAYLOAD)
            .try_for_each(|piece| self.send(Kind::Log, &[piece]))
            .and_then(|()| self.send(Kind::End, &[&end_bytes[..end_len]]));
        log.clear();
        let (file_len, ram_pages, dumped_pages) = outcome?;
        sent.map_err(|e| Failure::device(WriteStep::FinalHeader, e))?;
        Ok(StreamSummary {
            file_len,
            ram_pages,
            dumped_pages,
            data_records: end.data_records,
            data_xxh64: end.data_xxh64,
            wire_bytes: self.wire_bytes,
            elapsed_us,
        })
    }
}

/// Streams the kdump-compressed file of `dump` on `out` (see the module docs); the
/// `device_name` and `verify` of `dump` are not used (the stream's own checks stand in).
pub fn stream_kdump<O, E, M, F>(
    out: &mut O,
    env: &mut E,
    target: StreamTarget<'_>,
    triage: Option<&mut Triage<E::Buffer>>,
    dump: KdumpDump<'_, M, F>,
    profile: &mut Profile,
) -> Result<StreamSummary, Failure>
where
    O: ByteOutput,
    E: WriterEnv,
    M: PhysMem + ?Sized,
    F: FrameFilter,
{
    let current_pfn = Cell::new(0);
    let progress = kdump_progress(&dump.info, &current_pfn);
    let mut sink = StreamSink::start(
        out,
        env,
        target,
        StreamFormat::KdumpCompressed,
        triage,
        progress,
        profile,
    )?;
    let outcome = write_kdump_pages(&mut sink, dump, &current_pfn).map(|stats| {
        sink.env.say(format_args!(
            "kdump-compressed file of {} bytes sent: {}",
            stats.file_len,
            PageTally(&stats)
        ));
        (stats.file_len, stats.ram_pages, stats.dumped_pages)
    });
    sink.finish(outcome, profile)
}

/// Streams the filtered ELF vmcore of `elf` on `out` (see the module docs): its counting
/// pass, then the file.
pub fn stream_filtered_elf<O, E, M, F>(
    out: &mut O,
    env: &mut E,
    target: StreamTarget<'_>,
    triage: Option<&mut Triage<E::Buffer>>,
    mut elf: FilteredElf<'_, M, F>,
    profile: &mut Profile,
) -> Result<StreamSummary, Failure>
where
    O: ByteOutput,
    E: WriterEnv,
    M: PhysMem + ?Sized,
    F: FrameFilter,
{
    let frames = Cell::new(0);
    let progress = FileProgress {
        done: &frames,
        total: elf.frames_to_walk(),
        what: "ELF vmcore",
        step: |offset| WriteStep::VmcorePrefix { offset },
    };
    let mut sink = StreamSink::start(
        out,
        env,
        target,
        StreamFormat::ElfVmcore,
        triage,
        progress,
        profile,
    )?;
    let outcome = elf
        .count()
        .map_err(|e| elf_failure(e, |never| match never {}))
        .and_then(|layout| {
            sink.env.say(format_args!(
                "filtered ELF vmcore: {} PT_LOAD(s), {} pages of data, {} bytes",
                layout.counts.loads, layout.counts.data_pages, layout.file_len
            ));
            let stats = elf
                .write(&mut sink, &layout, &frames)
                .map_err(|e| elf_failure(e, |failure| failure))?;
            Ok((layout.file_len, stats.ram_pages, stats.dumped_pages))
        });
    sink.finish(outcome, profile)
}

#[cfg(test)]
mod tests;

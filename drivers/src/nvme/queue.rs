//! One submission/completion queue pair, driven by polling (NVMe 1.4 §4.1,
//! §4.2, §4.6; SeaBIOS `nvme_get_next_sqe()` / `nvme_commit_sqe()` /
//! `nvme_poll_cq()`).
//!
//! The submission queue is a ring of 64-byte entries: the driver writes an
//! entry at its tail and rings the tail doorbell. The completion queue is a
//! ring of 16-byte entries the controller fills; an entry is new when its
//! phase tag equals the phase the driver expects, which starts at 1 over
//! the zeroed queue and flips at each wrap. Each completion reports how
//! far the controller has consumed the submission queue (SQHD): the
//! submission queue is full when one more entry would reach that head.
//! Both rings live in one page-aligned DMA allocation each (physically
//! contiguous, PC = 1).

use super::registers::{Doorbells, PAGE_SIZE};
use super::status::CompletionStatus;
use crate::access::{Dma, Field};
use crate::{field, Platform};
use core::mem::size_of;
use core::sync::atomic::{fence, Ordering};

/// A submission queue entry (§4.2).
#[repr(C)]
struct SubmissionEntry {
    command: u32,  // 0x00 CDW0: OPC 7:0, FUSE 9:8, PSDT 15:14 (0 = PRPs), CID 31:16
    nsid: u32,     // 0x04 namespace
    cdw2: u32,     // 0x08
    cdw3: u32,     // 0x0c
    metadata: u64, // 0x10 MPTR
    prp1: u64,     // 0x18 data pointer, PRP entry 1
    prp2: u64,     // 0x20 PRP entry 2 or PRP list
    cdw10: u32,    // 0x28
    cdw11: u32,    // 0x2c
    cdw12: u32,    // 0x30
    cdw13: u32,    // 0x34
    cdw14: u32,    // 0x38
    cdw15: u32,    // 0x3c
}
const _: () = assert!(size_of::<SubmissionEntry>() == 64);

/// A completion queue entry (§4.6).
#[repr(C)]
struct CompletionEntry {
    result: u32,     // 0x00 DW0, command specific
    reserved: u32,   // 0x04
    sq_head: u16,    // 0x08 SQHD
    sq_id: u16,      // 0x0a SQID
    command_id: u16, // 0x0c CID
    status: u16,     // 0x0e P 0, status 15:1
}
const _: () = assert!(size_of::<CompletionEntry>() == 16);

const SQE_COMMAND: Field<SubmissionEntry, u32> = field!(SubmissionEntry, command);
const SQE_NSID: Field<SubmissionEntry, u32> = field!(SubmissionEntry, nsid);
const SQE_CDW2: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw2);
const SQE_CDW3: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw3);
const SQE_METADATA: Field<SubmissionEntry, u64> = field!(SubmissionEntry, metadata);
const SQE_PRP1: Field<SubmissionEntry, u64> = field!(SubmissionEntry, prp1);
const SQE_PRP2: Field<SubmissionEntry, u64> = field!(SubmissionEntry, prp2);
const SQE_CDW10: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw10);
const SQE_CDW11: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw11);
const SQE_CDW12: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw12);
const SQE_CDW13: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw13);
const SQE_CDW14: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw14);
const SQE_CDW15: Field<SubmissionEntry, u32> = field!(SubmissionEntry, cdw15);
const CQE_RESULT: Field<CompletionEntry, u32> = field!(CompletionEntry, result);
const CQE_SQ_HEAD: Field<CompletionEntry, u16> = field!(CompletionEntry, sq_head);
const CQE_COMMAND_ID: Field<CompletionEntry, u16> = field!(CompletionEntry, command_id);
const CQE_STATUS: Field<CompletionEntry, u16> = field!(CompletionEntry, status);

const SQE_BYTES: u64 = size_of::<SubmissionEntry>() as u64;
const CQE_BYTES: u64 = size_of::<CompletionEntry>() as u64;
const PHASE_TAG: u16 = 1;

/// A command as the driver builds it (the fields minicap uses; the others
/// are zero: no fused operation, PRPs, no metadata pointer).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Command {
    pub opcode: u8,
    pub nsid: u32,
    pub prp1: u64,
    pub prp2: u64,
    pub cdw10: u32,
    pub cdw11: u32,
    pub cdw12: u32,
}

/// A completion taken from the completion queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Completion {
    pub command_id: u16,
    pub status: CompletionStatus,
    /// DW0 (e.g. Set Features' granted queue counts).
    pub result: u32,
}

/// The controller reported a submission queue head outside the queue.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BadHead(pub u16);

/// One queue pair: submission queue `id` and completion queue `id`.
pub(crate) struct QueuePair<P: Platform + ?Sized> {
    id: u16,
    entries: u16,
    submissions: Dma<P>,
    completions: Dma<P>,
    /// Where the next command goes.
    sq_tail: u16,
    /// The submission queue head the controller last reported.
    sq_head: u16,
    /// Where the next completion will appear.
    cq_head: u16,
    /// The phase tag a new completion carries.
    phase: u16,
}

impl<P: Platform + ?Sized> QueuePair<P> {
    /// Allocate the two rings, `entries` (at least 2) each, zeroed.
    pub fn new(p: &P, id: u16, entries: u16) -> Option<Self> {
        let page = PAGE_SIZE;
        let sq_bytes = usize::from(entries) * size_of::<SubmissionEntry>();
        let cq_bytes = usize::from(entries) * size_of::<CompletionEntry>();
        Some(Self {
            id,
            entries,
            submissions: Dma::alloc(p, sq_bytes.next_multiple_of(page), page)?,
            completions: Dma::alloc(p, cq_bytes.next_multiple_of(page), page)?,
            sq_tail: 0,
            sq_head: 0,
            cq_head: 0,
            phase: PHASE_TAG,
        })
    }

    /// The queue identifier (0: the admin pair).
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Entries in each ring.
    pub fn entries(&self) -> u16 {
        self.entries
    }

    /// The submission ring's base (for AQA/ASQ or Create I/O SQ).
    pub fn submission_address(&self) -> u64 {
        self.submissions.device_address()
    }

    /// The completion ring's base (for ACQ or Create I/O CQ).
    pub fn completion_address(&self) -> u64 {
        self.completions.device_address()
    }

    /// Whether one more command would overrun the entries the controller
    /// has not consumed yet.
    pub fn is_full(&self) -> bool {
        (self.sq_tail + 1) % self.entries == self.sq_head
    }

    /// Write `command` with identifier `command_id` at the tail and ring
    /// the doorbell. The caller checked [`QueuePair::is_full`].
    pub fn submit(&mut self, p: &P, doorbells: &Doorbells<P>, command_id: u16, command: &Command) {
        let sq = &self.submissions;
        let at = u64::from(self.sq_tail) * SQE_BYTES;
        sq.write(
            p,
            at,
            SQE_COMMAND,
            u32::from(command_id) << 16 | u32::from(command.opcode),
        );
        sq.write(p, at, SQE_NSID, command.nsid);
        sq.write(p, at, SQE_CDW2, 0);
        sq.write(p, at, SQE_CDW3, 0);
        sq.write(p, at, SQE_METADATA, 0);
        sq.write(p, at, SQE_PRP1, command.prp1);
        sq.write(p, at, SQE_PRP2, command.prp2);
        sq.write(p, at, SQE_CDW10, command.cdw10);
        sq.write(p, at, SQE_CDW11, command.cdw11);
        sq.write(p, at, SQE_CDW12, command.cdw12);
        sq.write(p, at, SQE_CDW13, 0);
        sq.write(p, at, SQE_CDW14, 0);
        sq.write(p, at, SQE_CDW15, 0);
        self.sq_tail = (self.sq_tail + 1) % self.entries;
        // The entry must be in memory before the controller hears of it.
        fence(Ordering::SeqCst);
        doorbells.submission_tail(p, self.id, self.sq_tail);
    }

    /// The next completion, if the controller has posted one: consume it
    /// and tell the controller (completion head doorbell).
    pub fn next_completion(
        &mut self,
        p: &P,
        doorbells: &Doorbells<P>,
    ) -> Result<Option<Completion>, BadHead> {
        let cq = &self.completions;
        let at = u64::from(self.cq_head) * CQE_BYTES;
        let status = cq.read(p, at, CQE_STATUS);
        if status & PHASE_TAG != self.phase {
            return Ok(None);
        }
        // The rest of the entry is read after the phase tag that publishes it.
        fence(Ordering::SeqCst);
        let completion = Completion {
            command_id: cq.read(p, at, CQE_COMMAND_ID),
            status: CompletionStatus::from_status_half(status),
            result: cq.read(p, at, CQE_RESULT),
        };
        let sq_head = cq.read(p, at, CQE_SQ_HEAD);
        self.cq_head += 1;
        if self.cq_head == self.entries {
            self.cq_head = 0;
            self.phase ^= PHASE_TAG;
        }
        doorbells.completion_head(p, self.id, self.cq_head);
        if sq_head >= self.entries {
            return Err(BadHead(sq_head));
        }
        self.sq_head = sq_head;
        Ok(Some(completion))
    }
}

//! `minicap receive`: turning the framed stream the capture kernel sent on a serial line
//! (`minicap.target=serial`; the format is `minicap-serialstream`'s) back into the dump.
//!
//! The source is read to its End frame (or its end): every frame found by its magic, its
//! CRC checked, its sequence number compared with the one expected; the text between
//! frames is the console's, kept aside. Data records are applied in order to VMCORE (a
//! later one for the same bytes wins, as in `makedumpfile -R`), which then gets the End
//! frame's length: the file `minicap save` gives from a disk holding the same dump. With
//! `--flattened`, the same records also go to makedumpfile's flattened format
//! (`makedumpfile -R OUT < FLAT` rebuilds VMCORE: an independent check).
//!
//! Beside VMCORE: `VMCORE.triage` (the crashed kernel's log and registers, sent first),
//! `VMCORE.log` (the capture kernel's console log, sent last) and, if any, `VMCORE.console`
//! (the text between the frames).
//!
//! It fails, keeping what it wrote, when a frame is missing or damaged, the End frame
//! never came or says the capture failed, or its count or XXH64 of the Data payloads does
//! not match what arrived.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::ops::Range;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use minicap_kdumpfile::{Flattened, Sink, Stream};
use minicap_serialstream::{
    scan, Damage, Data, End, EndResult, Frame, Kind, Scan, Start, MAX_FRAME,
};
use xxhash_rust::xxh64::Xxh64;

use crate::fmt_util::crash_time;

/// How long a serial line or socket may stay silent before the stream is taken as ended.
const IDLE_SECONDS: u64 = 30;

/// Where the stream comes from.
enum Source {
    File(File),
    Tcp(TcpStream),
}

impl Source {
    /// `tcp:HOST:PORT`, or a path (a serial device is put in raw mode with a read timeout).
    fn open(spec: &str) -> Result<Self> {
        if let Some(address) = spec.strip_prefix("tcp:") {
            let stream = TcpStream::connect(address)
                .with_context(|| format!("cannot connect to {address}"))?;
            stream.set_read_timeout(Some(Duration::from_secs(IDLE_SECONDS)))?;
            return Ok(Self::Tcp(stream));
        }
        let file = File::open(spec).with_context(|| format!("cannot open {spec}"))?;
        if file.metadata()?.file_type().is_char_device() {
            // Raw bytes, no echo, and read() returning 0 after IDLE_SECONDS of silence
            // (VTIME counts tenths of a second, at most 255).
            let status = Command::new("stty")
                .args(["-F", spec, "raw", "-echo", "min", "0", "time", "255"])
                .status()
                .context("cannot run stty to set the serial line raw")?;
            if !status.success() {
                bail!("stty could not set {spec} raw ({status})");
            }
        }
        Ok(Self::File(file))
    }
}

impl Read for Source {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Self::File(f) => f.read(buf),
            Self::Tcp(s) => match s.read(buf) {
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(0),
                other => other,
            },
        }
    }
}

/// The flattened copy, an append-only [`Stream`].
struct FlatFile(BufWriter<File>);

impl Stream for FlatFile {
    type Error = std::io::Error;
    fn append(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.0.write_all(bytes)
    }
}

/// The End frame, owned.
struct Ended {
    result: EndResult,
    failure_code: u32,
    file_size: u64,
    data_records: u64,
    data_xxh64: u64,
    message: String,
}

/// A magic that did not start a good frame.
struct Damaged {
    at: u64,
    damage: Damage,
    claimed_seq: Option<u32>,
}

/// Everything the stream said, and the file being rebuilt.
struct Reassembly {
    vmcore: File,
    flat: Option<Flattened<FlatFile>>,
    start: Option<Start>,
    triage: Vec<u8>,
    log: Vec<u8>,
    console: Vec<u8>,
    next_seq: u32,
    missing: Vec<Range<u32>>,
    damaged: Vec<Damaged>,
    /// Frames whose sequence number was already seen (a repeat, or a damaged number).
    out_of_order: Vec<u32>,
    /// Bytes after a damaged frame, up to the next good one: its remains, not console text.
    skipped_after_damage: u64,
    in_damage: bool,
    data_records: u64,
    data_hash: Xxh64,
    file_end: u64,
    end: Option<Ended>,
}

impl Reassembly {
    /// Nothing received yet; the records go to `vmcore` (and `flat`).
    fn new(vmcore: File, flat: Option<Flattened<FlatFile>>) -> Self {
        Self {
            vmcore,
            flat,
            start: None,
            triage: Vec::new(),
            log: Vec::new(),
            console: Vec::new(),
            next_seq: 0,
            missing: Vec::new(),
            damaged: Vec::new(),
            out_of_order: Vec::new(),
            skipped_after_damage: 0,
            in_damage: false,
            data_records: 0,
            data_hash: Xxh64::new(0),
            file_end: 0,
            end: None,
        }
    }

    /// Handles one good frame.
    fn frame(&mut self, frame: Frame<'_>) -> Result<()> {
        self.in_damage = false;
        if frame.seq < self.next_seq {
            self.out_of_order.push(frame.seq);
            return Ok(());
        }
        if frame.seq > self.next_seq {
            self.missing.push(self.next_seq..frame.seq);
        }
        self.next_seq = frame.seq.saturating_add(1);
        match frame.kind {
            Kind::Start => {
                self.start = Some(Start::decode(frame.payload).context("the start frame")?);
            }
            Kind::Triage => self.triage.extend_from_slice(frame.payload),
            Kind::Log => self.log.extend_from_slice(frame.payload),
            Kind::Data => {
                let data = Data::decode(frame.payload).context("a data frame")?;
                self.vmcore
                    .write_all_at(data.bytes, data.offset)
                    .context("cannot write the vmcore")?;
                if let Some(flat) = &mut self.flat {
                    flat.write(data.offset, data.bytes)
                        .context("cannot write the flattened file")?;
                }
                self.data_records += 1;
                self.data_hash.update(frame.payload);
                self.file_end = self.file_end.max(data.offset + data.bytes.len() as u64);
            }
            Kind::End => {
                let end = End::decode(frame.payload).context("the end frame")?;
                self.end = Some(Ended {
                    result: end.result,
                    failure_code: end.failure_code,
                    file_size: end.file_size,
                    data_records: end.data_records,
                    data_xxh64: end.data_xxh64,
                    message: end.message.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Reads `source` to its End frame or its end.
    fn read_all(&mut self, source: &mut impl Read) -> Result<u64> {
        let mut pending: Vec<u8> = Vec::with_capacity(4 * MAX_FRAME);
        let mut consumed: u64 = 0;
        let mut chunk = vec![0u8; 64 << 10];
        let mut at_end = false;
        while self.end.is_none() {
            if !at_end {
                let n = source.read(&mut chunk).context("cannot read the stream")?;
                at_end = n == 0;
                pending.extend_from_slice(&chunk[..n]);
            }
            let mut used = 0;
            loop {
                let len = match scan(&pending[used..], at_end) {
                    Scan::Empty | Scan::NeedMore => break,
                    Scan::Text { len } => {
                        if self.in_damage {
                            self.skipped_after_damage += len as u64;
                        } else {
                            self.console.extend_from_slice(&pending[used..used + len]);
                        }
                        len
                    }
                    Scan::Damaged {
                        damage,
                        claimed_seq,
                        len,
                    } => {
                        self.damaged.push(Damaged {
                            at: consumed + used as u64,
                            damage,
                            claimed_seq,
                        });
                        self.in_damage = true;
                        len
                    }
                    Scan::Frame { frame, len } => {
                        self.frame(frame)?;
                        len
                    }
                };
                used += len;
                if self.end.is_some() {
                    break;
                }
            }
            pending.drain(..used);
            consumed += used as u64;
            if at_end && (pending.is_empty() || self.end.is_some()) {
                break;
            }
        }
        Ok(consumed)
    }

    /// Everything that makes the file untrustworthy, one line each.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.start.is_none() {
            problems.push("no start frame".to_string());
        }
        for run in &self.missing {
            problems.push(if run.end - run.start == 1 {
                format!("frame {} missing", run.start)
            } else {
                format!("frames {} to {} missing", run.start, run.end - 1)
            });
        }
        for d in &self.damaged {
            problems.push(format!(
                "damaged frame at byte {} of the stream ({}{})",
                d.at,
                d.damage.as_str(),
                d.claimed_seq
                    .map(|s| format!(", claims to be frame {s}"))
                    .unwrap_or_default()
            ));
        }
        for seq in &self.out_of_order {
            problems.push(format!(
                "frame {seq} arrived again or out of order (ignored)"
            ));
        }
        match &self.end {
            None => problems.push(format!(
                "the stream ended without its end frame, after frame {}",
                i64::from(self.next_seq) - 1
            )),
            Some(end) => {
                if end.result == EndResult::Failed {
                    problems.push(format!(
                        "the capture FAILED (code {}): {}",
                        end.failure_code, end.message
                    ));
                }
                if end.data_records != self.data_records {
                    problems.push(format!(
                        "{} data frames received, the end frame counts {}",
                        self.data_records, end.data_records
                    ));
                }
                let computed = self.data_hash.digest();
                if end.data_xxh64 != computed {
                    problems.push(format!(
                        "checksum MISMATCH: the end frame records xxh64 {:016x} of the data, \
                         the frames received give {computed:016x}",
                        end.data_xxh64
                    ));
                }
                if self.file_end > end.file_size {
                    problems.push(format!(
                        "data up to byte {} but the end frame gives a file of {} bytes",
                        self.file_end, end.file_size
                    ));
                }
            }
        }
        problems
    }
}

/// `path` with `suffix` added to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// `minicap receive SOURCE -o OUT [--flattened FLAT]`.
pub fn receive(source: &str, out: &Path, flattened: Option<&Path>) -> Result<()> {
    let mut input = Source::open(source)?;
    let vmcore = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(out)
        .with_context(|| format!("cannot create {}", out.display()))?;
    let flat = match flattened {
        Some(path) => {
            let file =
                File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            Some(
                Flattened::start(FlatFile(BufWriter::new(file)))
                    .context("cannot write the flattened header")?,
            )
        }
        None => None,
    };
    let mut r = Reassembly::new(vmcore, flat);
    let consumed = r.read_all(&mut input)?;
    let file_size = r.end.as_ref().map_or(r.file_end, |e| e.file_size);
    r.vmcore
        .set_len(file_size)
        .context("cannot set the vmcore's length")?;
    if let Some(flat) = r.flat.take() {
        let FlatFile(mut writer) = flat.finish().context("cannot end the flattened file")?;
        writer.flush().context("cannot write the flattened file")?;
    }
    for (suffix, text) in [
        (".triage", &r.triage),
        (".log", &r.log),
        (".console", &r.console),
    ] {
        if suffix == ".console" && text.is_empty() {
            continue;
        }
        let path = beside(out, suffix);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }

    if let Some(start) = &r.start {
        println!(
            "stream: {} of page size {}, crash time {}",
            start.format.as_str(),
            start.page_size,
            crash_time(i64::try_from(start.crash_time).unwrap_or(0))
        );
    }
    println!(
        "received {consumed} bytes: {} frames, {} data records, a file of {file_size} bytes; \
         triage text {} bytes, log {} bytes, console text {} bytes{}",
        r.next_seq,
        r.data_records,
        r.triage.len(),
        r.log.len(),
        r.console.len(),
        if r.skipped_after_damage > 0 {
            format!(
                ", {} bytes of damaged frames skipped",
                r.skipped_after_damage
            )
        } else {
            String::new()
        }
    );
    let problems = r.problems();
    if problems.is_empty() {
        println!(
            "checksum OK (xxh64 {:016x} of {} data records)",
            r.data_hash.digest(),
            r.data_records
        );
        println!("saved {}", out.display());
        return Ok(());
    }
    for p in &problems {
        println!("problem: {p}");
    }
    bail!(
        "the stream is not whole ({} problem(s)); {} and the texts beside it were kept, as far \
         as they arrived",
        problems.len(),
        out.display()
    )
}

#[cfg(test)]
mod tests;

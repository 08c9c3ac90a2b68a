//! The serial stream scanner as `minicap receive` drives it: scan, consume the length it
//! returns, decode the payload of each whole frame, repeat. The same bytes are fed twice,
//! whole and in chunks of a size the input picks, and both must give the same frames and
//! damage: the scanner keeps no state, so where the reads happened to end must not matter.

use minicap_serialstream::{scan, Data, End, Kind, Scan, Start, MAGIC};

use super::{bucket, signature, Target};

pub const TARGET: Target = Target {
    name: "serialstream",
    about: "serial stream frames: scan() whole and chunked, Start/Data/End payloads",
    run,
    dictionary: &[&MAGIC, &[1, 0], &[1], &[2], &[3], &[4], &[5], b"\n"],
    max_len: 32 << 10,
};

/// What one step of the scan saw; console text is merged so that chunking does not show.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Event {
    Text(usize),
    Frame(u8, u32, usize, bool),
    Damaged(u8, Option<u32>, usize),
}

fn run(input: &[u8]) -> u64 {
    let chunk = 1 + usize::from(input.first().copied().unwrap_or(0)) * 37;
    let whole = events(input, input.len().max(1));
    let chunked = events(input, chunk);
    assert_eq!(
        whole, chunked,
        "scanning in chunks of {chunk} bytes gives other frames than scanning at once"
    );
    // Which kinds of frame and damage were seen, not how many or in which order: enough to
    // keep inputs that reach a new payload decoder or damage path.
    let kinds: std::collections::BTreeSet<(u8, bool)> = whole
        .iter()
        .filter_map(|e| match e {
            Event::Frame(kind, _, _, decoded) => Some((*kind, *decoded)),
            Event::Damaged(damage, _, _) => Some((100 + damage, false)),
            Event::Text(_) => None,
        })
        .collect();
    signature((kinds, bucket(whole.len())))
}

/// Feeds `input` `chunk` bytes at a time, as `minicap receive` reads a device.
fn events(input: &[u8], chunk: usize) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut fed = 0;
    loop {
        let at_end = fed == input.len();
        if !at_end {
            let n = chunk.min(input.len() - fed);
            pending.extend_from_slice(&input[fed..fed + n]);
            fed += n;
        }
        let at_end = fed == input.len();
        let mut used = 0;
        loop {
            let rest = &pending[used..];
            let (event, len) = match scan(rest, at_end) {
                Scan::Empty | Scan::NeedMore => break,
                Scan::Text { len } => (Event::Text(len), len),
                Scan::Damaged {
                    damage,
                    claimed_seq,
                    len,
                } => (Event::Damaged(damage as u8, claimed_seq, len), len),
                Scan::Frame { frame, len } => {
                    let decoded = match frame.kind {
                        Kind::Start => Start::decode(frame.payload).is_ok(),
                        Kind::Data => Data::decode(frame.payload).is_ok(),
                        Kind::End => End::decode(frame.payload).is_ok(),
                        Kind::Triage | Kind::Log => true,
                    };
                    (
                        Event::Frame(frame.kind.code(), frame.seq, frame.payload.len(), decoded),
                        len,
                    )
                }
            };
            assert!(
                len > 0 && len <= rest.len(),
                "scan returned {len} bytes to consume of {}",
                rest.len()
            );
            match (out.last_mut(), &event) {
                (Some(Event::Text(before)), Event::Text(n)) => *before += n,
                _ => out.push(event),
            }
            used += len;
        }
        pending.drain(..used);
        if at_end {
            assert!(
                pending.is_empty(),
                "{} bytes left unscanned at the end",
                pending.len()
            );
            return out;
        }
    }
}

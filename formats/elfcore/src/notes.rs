//! Walking one note buffer the way `fs/proc/vmcore.c` does (`update_note_header_size_elf64()`).

use alloc::vec::Vec;
use core::ops::Range;

use crate::{to_u64, NHDR_SIZE};

/// One note found in a buffer. Ranges index the buffer that was walked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    /// `n_type`.
    pub ntype: u32,
    /// The `n_namesz` name bytes (including the NUL the producer counted).
    pub name: Range<usize>,
    /// The `n_descsz` descriptor bytes.
    pub desc: Range<usize>,
}

impl Note {
    /// The name without trailing NULs.
    pub fn name<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let mut name = &buf[self.name.clone()];
        while let [rest @ .., 0] = name {
            name = rest;
        }
        name
    }
}

/// A note that did not fit in the buffer and was dropped, with everything after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Overflow {
    pub offset: u64,
    pub namesz: u32,
    pub descsz: u32,
}

/// Result of walking one buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Walk {
    /// The notes, back to back from offset 0.
    pub notes: Vec<Note>,
    /// Bytes they occupy: `buf[..real_len]` are the real notes (headers, padded names and descs).
    pub real_len: usize,
    /// Set if the walk stopped at a note exceeding the buffer rather than at a terminator.
    pub overflow: Option<Overflow>,
}

fn align4(n: u32) -> u64 {
    (u64::from(n) + 3) & !3
}

use minicap_physmem::le_u32;

/// Walks `buf` note by note while `n_namesz != 0`. Each note takes
/// `12 + align4(n_namesz) + align4(n_descsz)` bytes. A note that would end past the buffer stops
/// the walk (it is reported in [`Walk::overflow`]). Reads never go past `buf`: if fewer than 4
/// bytes remain, the walk ends as if a terminator had been found (vmcore.c would read past the
/// buffer there).
pub(crate) fn walk(buf: &[u8]) -> Walk {
    let len = to_u64(buf.len());
    let mut notes = Vec::new();
    let mut off = 0usize;
    let mut overflow = None;
    // `off` never exceeds buf.len(), so the reads below are bounded by the buffer.
    while let Some(namesz) = le_u32(buf, off).filter(|&n| n != 0) {
        // Unreadable (truncated) fields read as 0; such a note cannot fit anyway (size >= 12).
        let descsz = le_u32(buf, off + 4).unwrap_or(0);
        let ntype = le_u32(buf, off + 8).unwrap_or(0);
        // At most 12 + 2 * (2^32 + 3): cannot overflow u64.
        let size = NHDR_SIZE + align4(namesz) + align4(descsz);
        let start = to_u64(off);
        if start + size > len {
            overflow = Some(Overflow {
                offset: start,
                namesz,
                descsz,
            });
            break;
        }
        // Everything below is within buf.len(), which fits in usize.
        let Some(note) = note_ranges(off, namesz, descsz, size) else {
            break;
        };
        notes.push(Note {
            ntype,
            name: note.0,
            desc: note.1,
        });
        off = note.2;
    }
    Walk {
        notes,
        real_len: off,
        overflow,
    }
}

/// Name range, desc range and next offset of a note at `off`, already known to fit in the buffer.
fn note_ranges(
    off: usize,
    namesz: u32,
    descsz: u32,
    size: u64,
) -> Option<(Range<usize>, Range<usize>, usize)> {
    let name_start = off.checked_add(12)?;
    let name_end = name_start.checked_add(usize::try_from(namesz).ok()?)?;
    let desc_start = name_start.checked_add(usize::try_from(align4(namesz)).ok()?)?;
    let desc_end = desc_start.checked_add(usize::try_from(descsz).ok()?)?;
    let next = off.checked_add(usize::try_from(size).ok()?)?;
    Some((name_start..name_end, desc_start..desc_end, next))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(name: &[u8], ntype: u32, desc: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&u32::try_from(name.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&u32::try_from(desc.len()).unwrap().to_le_bytes());
        v.extend_from_slice(&ntype.to_le_bytes());
        v.extend_from_slice(name);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v.extend_from_slice(desc);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    #[test]
    fn two_notes_then_terminator() {
        let mut buf = note(b"CORE\0", 1, &[1, 2, 3]);
        let first = buf.len();
        buf.extend(note(b"AB\0", 7, &[9; 8]));
        let real = buf.len();
        buf.extend([0u8; 12]);
        buf.extend([0xffu8; 20]); // garbage after the terminator is ignored
        let w = walk(&buf);
        assert_eq!(w.real_len, real);
        assert_eq!(w.overflow, None);
        assert_eq!(w.notes.len(), 2);
        assert_eq!(w.notes[0].ntype, 1);
        assert_eq!(w.notes[0].name(&buf), b"CORE");
        assert_eq!(&buf[w.notes[0].desc.clone()], &[1, 2, 3]);
        assert_eq!(w.notes[1].name.start, first + 12);
        assert_eq!(w.notes[1].name(&buf), b"AB");
        assert_eq!(&buf[w.notes[1].desc.clone()], &[9; 8]);
    }

    #[test]
    fn empty_and_tiny_buffers() {
        for len in 0..16 {
            let w = walk(&vec![0u8; len]);
            assert_eq!(w.real_len, 0);
            assert!(w.notes.is_empty());
            assert_eq!(w.overflow, None);
        }
        // A non-zero n_namesz with a truncated header: dropped, never read past the buffer.
        for len in 4..12 {
            let mut buf = vec![0u8; len];
            buf[0] = 1;
            let w = walk(&buf);
            assert_eq!(w.real_len, 0);
            assert_eq!(w.overflow.map(|o| o.namesz), Some(1));
        }
    }

    #[test]
    fn exact_fit_without_terminator() {
        let buf = note(b"X\0", 3, &[5; 4]);
        let w = walk(&buf);
        assert_eq!(w.real_len, buf.len());
        assert_eq!(w.notes.len(), 1);
        assert_eq!(w.overflow, None);
    }

    #[test]
    fn huge_sizes_are_dropped() {
        let mut buf = note(b"OK\0", 0, &[1; 4]);
        let ok = buf.len();
        buf.extend(u32::MAX.to_le_bytes());
        buf.extend(u32::MAX.to_le_bytes());
        buf.extend(1u32.to_le_bytes());
        buf.extend([0u8; 64]);
        let w = walk(&buf);
        assert_eq!(w.real_len, ok);
        assert_eq!(w.notes.len(), 1);
        assert_eq!(
            w.overflow,
            Some(Overflow {
                offset: ok as u64,
                namesz: u32::MAX,
                descsz: u32::MAX
            })
        );
    }
}

//! The `setup_data` chain (docs/boot-params.md, "setup_data").
//!
//! `boot_params.hdr.setup_data` points at a singly linked list of
//! `struct setup_data { u64 next; u32 type; u32 len; u8 data[len]; }` in physical memory. The
//! nodes live outside the zero page, so this module reads them through a caller-supplied
//! `read(paddr, buf)` closure: the kernel maps physical memory its own way, and the tests use a
//! plain buffer.

use core::fmt;

use crate::params::{E820Entry, E820_ENTRY_SIZE};

/// `SETUP_NONE`.
pub const SETUP_NONE: u32 = 0;
/// `SETUP_E820_EXT`: data holds further e820 entries (kexec-tools, more than 128 ranges).
pub const SETUP_E820_EXT: u32 = 1;
/// `SETUP_DTB`: a flattened device tree.
pub const SETUP_DTB: u32 = 2;
/// `SETUP_PCI`: PCI option ROM images.
pub const SETUP_PCI: u32 = 3;
/// `SETUP_EFI`: `struct efi_setup_data`.
pub const SETUP_EFI: u32 = 4;
/// `SETUP_APPLE_PROPERTIES`.
pub const SETUP_APPLE_PROPERTIES: u32 = 5;
/// `SETUP_JAILHOUSE`.
pub const SETUP_JAILHOUSE: u32 = 6;
/// `SETUP_CC_BLOB`: confidential-computing blob.
pub const SETUP_CC_BLOB: u32 = 7;
/// `SETUP_IMA`: IMA measurement log.
pub const SETUP_IMA: u32 = 8;
/// `SETUP_RNG_SEED`: random seed (kexec-tools passes 32 bytes).
pub const SETUP_RNG_SEED: u32 = 9;
/// `SETUP_KEXEC_KHO`: kexec handover data.
pub const SETUP_KEXEC_KHO: u32 = 10;
/// `SETUP_INDIRECT` flag: the data is a `struct setup_indirect` pointing elsewhere.
pub const SETUP_INDIRECT: u32 = 1 << 31;

/// Size of the `next`, `type`, `len` header in front of each node's data.
pub const SETUP_DATA_HEADER_SIZE: u64 = 16;

/// Most nodes [`walk_setup_data`] follows. Loaders emit a handful (kexec-tools: RNG seed, EFI,
/// E820_EXT, DTB), so a longer chain is taken to be a cycle or garbage.
pub const MAX_SETUP_DATA_NODES: usize = 64;

/// Most extra e820 entries [`walk_e820_ext`] reads in total. kexec-tools passes at most 1024
/// ranges (128 of them in the zero page); the bound keeps a corrupt `len` from making the kernel
/// read gigabytes of memory.
pub const MAX_E820_EXT_ENTRIES: usize = 4096;

/// One node of the chain; the data itself is left in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupDataNode {
    /// Physical address of the node header.
    pub addr: u64,
    /// Physical address of the next node, 0 at the end.
    pub next: u64,
    /// Raw `SETUP_*` type, possibly with [`SETUP_INDIRECT`] set.
    pub kind: u32,
    /// Number of data bytes after the 16-byte header.
    pub len: u32,
}

impl SetupDataNode {
    /// Physical address of the first data byte. Cannot overflow: the walker rejects nodes whose
    /// data would run past the end of the address space.
    pub fn data_addr(&self) -> u64 {
        self.addr + SETUP_DATA_HEADER_SIZE
    }

    /// Whether the data is a `struct setup_indirect` rather than the payload itself.
    pub fn is_indirect(&self) -> bool {
        self.kind & SETUP_INDIRECT != 0
    }
}

/// Why walking the chain stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetupDataError<E> {
    /// The `read` closure failed.
    Read {
        /// Physical address that was being read.
        addr: u64,
        /// The closure's error.
        error: E,
    },
    /// More than [`MAX_SETUP_DATA_NODES`] nodes: the chain loops or is garbage.
    TooManyNodes {
        /// The limit that was hit.
        limit: usize,
    },
    /// A node whose header or data would run past the end of the 64-bit address space.
    BadNode {
        /// Physical address of the node.
        addr: u64,
    },
    /// The `SETUP_E820_EXT` nodes hold more than [`MAX_E820_EXT_ENTRIES`] entries together.
    TooManyE820Entries {
        /// The limit that was hit.
        limit: usize,
    },
}

impl<E: fmt::Display> fmt::Display for SetupDataError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { addr, error } => {
                write!(f, "cannot read setup_data at {addr:#x}: {error}")
            }
            Self::TooManyNodes { limit } => {
                write!(f, "setup_data chain longer than {limit} nodes (a loop?)")
            }
            Self::BadNode { addr } => {
                write!(
                    f,
                    "setup_data node at {addr:#x} runs past the address space"
                )
            }
            Self::TooManyE820Entries { limit } => {
                write!(f, "SETUP_E820_EXT holds more than {limit} entries")
            }
        }
    }
}

impl<E: fmt::Debug + fmt::Display> core::error::Error for SetupDataError<E> {}

/// Cursor over the chain. Unlike [`walk_setup_data`] it lends `read` back to the caller between
/// nodes, which lets the caller read a node's data (as [`walk_e820_ext`] does).
#[derive(Debug, Clone)]
pub struct SetupDataCursor {
    next: u64,
    visited: usize,
}

impl SetupDataCursor {
    /// Starts at `head`, the value of `boot_params.hdr.setup_data` (0: empty chain).
    pub fn new(head: u64) -> Self {
        Self {
            next: head,
            visited: 0,
        }
    }

    /// Reads the next node header, or returns `Ok(None)` at the end of the chain.
    ///
    /// After an error the cursor stays where it was, so repeating the call repeats the error.
    pub fn next_node<E>(
        &mut self,
        read: &mut impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    ) -> Result<Option<SetupDataNode>, SetupDataError<E>> {
        let addr = self.next;
        if addr == 0 {
            return Ok(None);
        }
        if self.visited >= MAX_SETUP_DATA_NODES {
            return Err(SetupDataError::TooManyNodes {
                limit: MAX_SETUP_DATA_NODES,
            });
        }
        let mut header = [0u8; 16];
        read(addr, &mut header).map_err(|error| SetupDataError::Read { addr, error })?;
        let [n0, n1, n2, n3, n4, n5, n6, n7, t0, t1, t2, t3, l0, l1, l2, l3] = header;
        let node = SetupDataNode {
            addr,
            next: u64::from_le_bytes([n0, n1, n2, n3, n4, n5, n6, n7]),
            kind: u32::from_le_bytes([t0, t1, t2, t3]),
            len: u32::from_le_bytes([l0, l1, l2, l3]),
        };
        let data_end = addr
            .checked_add(SETUP_DATA_HEADER_SIZE)
            .and_then(|a| a.checked_add(u64::from(node.len)));
        if data_end.is_none() {
            return Err(SetupDataError::BadNode { addr });
        }
        self.visited += 1;
        self.next = node.next;
        Ok(Some(node))
    }
}

/// Calls `visit` for every node of the chain starting at `head` (0: empty chain), in order.
///
/// Stops with an error on a failed read, a node running past the address space, or after
/// [`MAX_SETUP_DATA_NODES`] nodes, which is how a loop (a node pointing back into the chain)
/// ends. Nodes visited before the error have been passed to `visit`.
pub fn walk_setup_data<E>(
    head: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    mut visit: impl FnMut(SetupDataNode),
) -> Result<(), SetupDataError<E>> {
    let mut cursor = SetupDataCursor::new(head);
    while let Some(node) = cursor.next_node(&mut read)? {
        visit(node);
    }
    Ok(())
}

/// Calls `visit` for every e820 entry held in the `SETUP_E820_EXT` nodes of the chain at
/// `head`, in chain order; these continue the zero-page table when a loader has more than 128
/// ranges.
///
/// Like Linux, a node holds `len / 20` entries and ignores a remainder. Only direct nodes
/// (type exactly 1) count, as in Linux. The walk stops with an error under the same conditions
/// as [`walk_setup_data`], or after [`MAX_E820_EXT_ENTRIES`] entries.
pub fn walk_e820_ext<E>(
    head: u64,
    mut read: impl FnMut(u64, &mut [u8]) -> Result<(), E>,
    mut visit: impl FnMut(E820Entry),
) -> Result<(), SetupDataError<E>> {
    let mut cursor = SetupDataCursor::new(head);
    let mut total = 0usize;
    while let Some(node) = cursor.next_node(&mut read)? {
        if node.kind != SETUP_E820_EXT {
            continue;
        }
        let count = node.len / 20;
        let mut addr = node.data_addr();
        for _ in 0..count {
            if total >= MAX_E820_EXT_ENTRIES {
                return Err(SetupDataError::TooManyE820Entries {
                    limit: MAX_E820_EXT_ENTRIES,
                });
            }
            let mut raw = [0u8; E820_ENTRY_SIZE];
            read(addr, &mut raw).map_err(|error| SetupDataError::Read { addr, error })?;
            visit(E820Entry::from_bytes(&raw));
            total += 1;
            // Stays within the node's data, whose end next_node checked against overflow.
            addr += 20;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::E820Kind;

    /// Fake physical memory: a buffer starting at `base`.
    struct Mem {
        base: u64,
        bytes: Vec<u8>,
    }

    #[derive(Debug, PartialEq)]
    struct OutOfRange(u64);

    impl std::fmt::Display for OutOfRange {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{:#x} not in test memory", self.0)
        }
    }

    impl Mem {
        fn new(base: u64, len: usize) -> Self {
            Self {
                base,
                bytes: vec![0; len],
            }
        }

        fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> Result<(), OutOfRange> + '_ {
            move |paddr, buf| {
                let off = paddr
                    .checked_sub(self.base)
                    .and_then(|o| usize::try_from(o).ok())
                    .ok_or(OutOfRange(paddr))?;
                let src = self
                    .bytes
                    .get(off..off + buf.len())
                    .ok_or(OutOfRange(paddr))?;
                buf.copy_from_slice(src);
                Ok(())
            }
        }

        fn node(&mut self, addr: u64, next: u64, kind: u32, data: &[u8]) {
            let off = usize::try_from(addr - self.base).unwrap();
            self.bytes[off..off + 8].copy_from_slice(&next.to_le_bytes());
            self.bytes[off + 8..off + 12].copy_from_slice(&kind.to_le_bytes());
            let len = u32::try_from(data.len()).unwrap();
            self.bytes[off + 12..off + 16].copy_from_slice(&len.to_le_bytes());
            self.bytes[off + 16..off + 16 + data.len()].copy_from_slice(data);
        }
    }

    fn e820_bytes(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut out = Vec::new();
        for &(a, s, t) in entries {
            out.extend_from_slice(&a.to_le_bytes());
            out.extend_from_slice(&s.to_le_bytes());
            out.extend_from_slice(&t.to_le_bytes());
        }
        out
    }

    fn collect(
        mem: &Mem,
        head: u64,
    ) -> (Vec<SetupDataNode>, Result<(), SetupDataError<OutOfRange>>) {
        let mut nodes = Vec::new();
        let r = walk_setup_data(head, mem.reader(), |n| nodes.push(n));
        (nodes, r)
    }

    #[test]
    fn empty_chain() {
        let mem = Mem::new(0x1000, 0x100);
        let (nodes, r) = collect(&mem, 0);
        assert!(nodes.is_empty());
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn walks_chain_in_order() {
        let mut mem = Mem::new(0x10_0000, 0x3000);
        mem.node(0x10_0000, 0x10_2000, SETUP_RNG_SEED, &[7; 32]);
        mem.node(0x10_2000, 0x10_1000, SETUP_EFI, &[1; 48]);
        mem.node(0x10_1000, 0, SETUP_DTB | SETUP_INDIRECT, &[0; 24]);
        let (nodes, r) = collect(&mem, 0x10_0000);
        assert_eq!(r, Ok(()));
        assert_eq!(
            nodes,
            vec![
                SetupDataNode {
                    addr: 0x10_0000,
                    next: 0x10_2000,
                    kind: SETUP_RNG_SEED,
                    len: 32
                },
                SetupDataNode {
                    addr: 0x10_2000,
                    next: 0x10_1000,
                    kind: SETUP_EFI,
                    len: 48
                },
                SetupDataNode {
                    addr: 0x10_1000,
                    next: 0,
                    kind: SETUP_DTB | SETUP_INDIRECT,
                    len: 24
                },
            ]
        );
        assert_eq!(nodes[0].data_addr(), 0x10_0010);
        assert!(!nodes[0].is_indirect());
        assert!(nodes[2].is_indirect());
    }

    #[test]
    fn dangling_pointer_is_read_error() {
        let mut mem = Mem::new(0x1000, 0x1000);
        mem.node(0x1000, 0xdead_0000, SETUP_RNG_SEED, &[0; 8]);
        let (nodes, r) = collect(&mem, 0x1000);
        assert_eq!(nodes.len(), 1);
        assert_eq!(
            r,
            Err(SetupDataError::Read {
                addr: 0xdead_0000,
                error: OutOfRange(0xdead_0000)
            })
        );
    }

    #[test]
    fn self_loop_is_bounded() {
        let mut mem = Mem::new(0x1000, 0x1000);
        mem.node(0x1000, 0x1000, SETUP_RNG_SEED, &[]);
        let (nodes, r) = collect(&mem, 0x1000);
        assert_eq!(nodes.len(), MAX_SETUP_DATA_NODES);
        assert_eq!(
            r,
            Err(SetupDataError::TooManyNodes {
                limit: MAX_SETUP_DATA_NODES
            })
        );
    }

    #[test]
    fn two_node_loop_is_bounded() {
        let mut mem = Mem::new(0x1000, 0x1000);
        mem.node(0x1000, 0x1100, SETUP_RNG_SEED, &[]);
        mem.node(0x1100, 0x1000, SETUP_RNG_SEED, &[]);
        let (nodes, r) = collect(&mem, 0x1000);
        assert_eq!(nodes.len(), MAX_SETUP_DATA_NODES);
        assert!(matches!(r, Err(SetupDataError::TooManyNodes { .. })));
        assert!(r.unwrap_err().to_string().contains("loop"));
    }

    #[test]
    fn node_past_address_space() {
        let top = u64::MAX - 0xfff;
        let mut mem = Mem::new(top, 0x1000);
        // 16-byte header fits, but len 0xffff_ffff runs past u64::MAX.
        let off = 0x100usize;
        mem.bytes[off + 12..off + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        let (nodes, r) = collect(&mem, top + 0x100);
        assert!(nodes.is_empty());
        assert_eq!(r, Err(SetupDataError::BadNode { addr: top + 0x100 }));
    }

    #[test]
    fn e820_ext_entries() {
        let mut mem = Mem::new(0x8000, 0x2000);
        let first = e820_bytes(&[(0x1_0000_0000, 0x1000, 1), (0x1_0000_2000, 0x1000, 2)]);
        let mut second = e820_bytes(&[(0x2_0000_0000, 0x4000, 12)]);
        second.extend_from_slice(&[0xaa; 7]); // remainder < 20 bytes is ignored
        mem.node(0x8000, 0x8400, SETUP_E820_EXT, &first);
        mem.node(0x8400, 0x8800, SETUP_RNG_SEED, &[0; 32]);
        mem.node(0x8800, 0, SETUP_E820_EXT, &second);
        let mut got = Vec::new();
        let r = walk_e820_ext(0x8000, mem.reader(), |e| got.push(e));
        assert_eq!(r, Ok(()));
        assert_eq!(
            got,
            vec![
                E820Entry {
                    addr: 0x1_0000_0000,
                    size: 0x1000,
                    kind: E820Kind::Ram
                },
                E820Entry {
                    addr: 0x1_0000_2000,
                    size: 0x1000,
                    kind: E820Kind::Reserved
                },
                E820Entry {
                    addr: 0x2_0000_0000,
                    size: 0x4000,
                    kind: E820Kind::Pram
                },
            ]
        );
    }

    #[test]
    fn e820_ext_ignores_indirect_and_other_types() {
        let mut mem = Mem::new(0x8000, 0x1000);
        let data = e820_bytes(&[(0x1000, 0x1000, 1)]);
        mem.node(0x8000, 0x8100, SETUP_E820_EXT | SETUP_INDIRECT, &data);
        mem.node(0x8100, 0, SETUP_DTB, &data);
        let mut got = Vec::new();
        assert_eq!(walk_e820_ext(0x8000, mem.reader(), |e| got.push(e)), Ok(()));
        assert!(got.is_empty());
    }

    #[test]
    fn e820_ext_data_read_error() {
        let mut mem = Mem::new(0x8000, 0x30);
        // Header says 2 entries (40 bytes) but memory ends after the first one.
        mem.node(
            0x8000,
            0,
            SETUP_E820_EXT,
            &e820_bytes(&[(0x1000, 0x1000, 1)]),
        );
        mem.bytes[12..16].copy_from_slice(&40u32.to_le_bytes());
        let mut got = Vec::new();
        let r = walk_e820_ext(0x8000, mem.reader(), |e| got.push(e));
        assert_eq!(got.len(), 1);
        assert_eq!(
            r,
            Err(SetupDataError::Read {
                addr: 0x8024,
                error: OutOfRange(0x8024)
            })
        );
    }

    #[test]
    fn e820_ext_entry_limit() {
        let mut mem = Mem::new(0x8000, 0x100);
        mem.node(0x8000, 0, SETUP_E820_EXT, &[]);
        // Claims ~200 million entries; reads past the buffer return zeroed records.
        mem.bytes[12..16].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut real = mem.reader();
        let permissive = |addr: u64, buf: &mut [u8]| {
            if addr == 0x8000 {
                real(addr, buf)
            } else {
                buf.fill(0);
                Ok(())
            }
        };
        let mut n = 0usize;
        let r = walk_e820_ext(0x8000, permissive, |_| n += 1);
        assert_eq!(
            r,
            Err(SetupDataError::TooManyE820Entries {
                limit: MAX_E820_EXT_ENTRIES
            })
        );
        assert_eq!(n, MAX_E820_EXT_ENTRIES);
    }

    #[test]
    fn cursor_lends_reader_back() {
        let mut mem = Mem::new(0x1000, 0x1000);
        mem.node(0x1000, 0x1800, SETUP_RNG_SEED, &[0x5a; 32]);
        mem.node(0x1800, 0, SETUP_NONE, &[]);
        let mut read = mem.reader();
        let mut cursor = SetupDataCursor::new(0x1000);
        let node = cursor.next_node(&mut read).unwrap().unwrap();
        let mut seed = [0u8; 32];
        read(node.data_addr(), &mut seed).unwrap();
        assert_eq!(seed, [0x5a; 32]);
        assert_eq!(cursor.next_node(&mut read).unwrap().unwrap().addr, 0x1800);
        assert_eq!(cursor.next_node(&mut read).unwrap(), None);
        assert_eq!(cursor.next_node(&mut read).unwrap(), None);
    }
}

//! Recognising what a disk already carries, so that `minicap format` does not silently destroy
//! a partition table, a file system, an LVM physical volume, a RAID member or a swap area.
//!
//! The checks read fixed places, like blkid does for these formats: the start of the disk
//! ([`HEAD_LEN`] bytes) and its end ([`TAIL_LEN`] bytes), where md RAID 0.90 and 1.0 keep their
//! superblock. Each check asks for more than a two-byte magic where the format offers it, so
//! that random data is not mistaken for a signature.

use std::fmt;

use minicap_elfcore::le::{u16_at, u32_at};

/// Bytes at the start of the disk the checks read (btrfs's superblock ends below 68 KiB, swap
/// signatures for pages up to 64 KiB end at 64 KiB).
pub const HEAD_LEN: usize = 128 << 10;
/// Bytes at the end of the disk the checks read (md 0.90 sits in the last 64-128 KiB).
pub const TAIL_LEN: usize = 128 << 10;

/// Something found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A DOS/MBR partition table with at least one partition.
    Mbr,
    /// A GPT header, for the given logical sector size.
    Gpt {
        /// 512 or 4096.
        sector_size: u32,
    },
    /// An ext2, ext3 or ext4 file system.
    Ext,
    /// An XFS file system.
    Xfs,
    /// A btrfs file system.
    Btrfs,
    /// An LVM2 physical volume.
    Lvm2,
    /// A Linux swap area.
    Swap,
    /// An md RAID member.
    MdRaid {
        /// Superblock version: "0.90", "1.0", "1.1" or "1.2".
        version: &'static str,
    },
}

impl Signature {
    /// Whether it lives at the end of the disk (md 0.90 and 1.0), beyond the 1 MiB that
    /// formatting zeroes anyway.
    pub fn lies_at_end(&self) -> bool {
        matches!(
            self,
            Self::MdRaid {
                version: "0.90" | "1.0"
            }
        )
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Mbr => f.write_str("an MBR partition table"),
            Self::Gpt { sector_size } => {
                write!(f, "a GPT partition table ({sector_size}-byte sectors)")
            }
            Self::Ext => f.write_str("an ext2/3/4 file system"),
            Self::Xfs => f.write_str("an XFS file system"),
            Self::Btrfs => f.write_str("a btrfs file system"),
            Self::Lvm2 => f.write_str("an LVM2 physical volume"),
            Self::Swap => f.write_str("a Linux swap area"),
            Self::MdRaid { version } => write!(f, "an md RAID {version} superblock"),
        }
    }
}

/// `bytes` are present at `offset` of `region`.
fn has(region: &[u8], offset: usize, bytes: &[u8]) -> bool {
    region.get(offset..offset + bytes.len()) == Some(bytes)
}

/// Magic of every md superblock (both formats), little-endian on x86.
const MD_MAGIC: u32 = 0xa92b_4efc;

/// An md superblock of `major` version (0 or 1) at `offset` of `region`.
fn md_superblock(region: &[u8], offset: usize, major: u32) -> bool {
    u32_at(region, offset) == Some(MD_MAGIC) && u32_at(region, offset + 4) == Some(major)
}

/// An MBR: the 0x55AA boot signature and a partition entry that describes a partition (boot
/// flag 0x00 or 0x80, a type, a length). A boot sector with garbage entries does not count.
fn mbr(head: &[u8]) -> bool {
    if !has(head, 510, &[0x55, 0xaa]) {
        return false;
    }
    (0..4).any(|i| {
        let e = 446 + 16 * i;
        let flag_ok = matches!(head.get(e), Some(0x00 | 0x80));
        let kind = head.get(e + 4).copied().unwrap_or(0);
        let sectors = u32_at(head, e + 12).unwrap_or(0);
        flag_ok && kind != 0 && sectors != 0
    })
}

/// What the disk carries, given its first bytes `head` (up to [`HEAD_LEN`]), its last bytes
/// `tail` (up to [`TAIL_LEN`], ending at the end of the disk) and its size in bytes.
pub fn detect(head: &[u8], tail: &[u8], size: u64) -> Vec<Signature> {
    let mut found = Vec::new();
    if mbr(head) {
        found.push(Signature::Mbr);
    }
    for sector_size in [512u32, 4096] {
        if has(head, sector_size as usize, b"EFI PART") {
            found.push(Signature::Gpt { sector_size });
        }
    }
    // ext superblock at 1024: magic at +56, s_log_block_size (1 KiB << n, n <= 6) at +24.
    if u16_at(head, 1080) == Some(0xef53) && u32_at(head, 1048).is_some_and(|n| n <= 6) {
        found.push(Signature::Ext);
    }
    if has(head, 0, b"XFSB") {
        found.push(Signature::Xfs);
    }
    // btrfs superblock at 64 KiB, magic at +64.
    if has(head, 65_600, b"_BHRfS_M") {
        found.push(Signature::Btrfs);
    }
    // The LVM2 label is in one of the first four sectors, its type at +24.
    if (0..4).any(|s| has(head, s * 512, b"LABELONE") && has(head, s * 512 + 24, b"LVM2 001")) {
        found.push(Signature::Lvm2);
    }
    // The swap signature ends the first page; pages of 4 to 64 KiB.
    if [4096usize, 8192, 16_384, 65_536]
        .iter()
        .any(|&page| has(head, page - 10, b"SWAPSPACE2") || has(head, page - 10, b"SWAP-SPACE"))
    {
        found.push(Signature::Swap);
    }
    if md_superblock(head, 4096, 1) {
        found.push(Signature::MdRaid { version: "1.2" });
    }
    if md_superblock(head, 0, 1) {
        found.push(Signature::MdRaid { version: "1.1" });
    }
    let in_tail = |offset: u64| {
        let tail_start = size.checked_sub(tail.len() as u64)?;
        usize::try_from(offset.checked_sub(tail_start)?).ok()
    };
    // 0.90: in the last whole 64 KiB block before the last 64 KiB boundary.
    if let Some(at) = (size & !0xffff).checked_sub(0x1_0000).and_then(in_tail) {
        if md_superblock(tail, at, 0) {
            found.push(Signature::MdRaid { version: "0.90" });
        }
    }
    // 1.0: 8 KiB before the end, rounded down to 4 KiB.
    if let Some(at) = size.checked_sub(8192).map(|o| o & !0xfff).and_then(in_tail) {
        if md_superblock(tail, at, 1) {
            found.push(Signature::MdRaid { version: "1.0" });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: u64 = 4 << 20;

    fn blank() -> (Vec<u8>, Vec<u8>) {
        (vec![0; HEAD_LEN], vec![0; TAIL_LEN])
    }

    fn put(region: &mut [u8], at: usize, bytes: &[u8]) {
        region[at..at + bytes.len()].copy_from_slice(bytes);
    }

    #[test]
    fn zeros_and_noise_carry_nothing() {
        let (head, tail) = blank();
        assert_eq!(detect(&head, &tail, SIZE), vec![]);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut noise = || {
            (0..HEAD_LEN)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x.to_le_bytes()[0]
                })
                .collect::<Vec<u8>>()
        };
        let (head, tail) = (noise(), noise());
        assert_eq!(detect(&head, &tail, SIZE), vec![]);
        // Too short a disk or region is no reason to panic.
        assert_eq!(detect(&[], &[], 0), vec![]);
        assert_eq!(detect(&head[..100], &tail[..100], 100), vec![]);
    }

    #[test]
    fn mbr_needs_a_partition() {
        let (mut head, tail) = blank();
        put(&mut head, 510, &[0x55, 0xaa]);
        assert_eq!(detect(&head, &tail, SIZE), vec![], "boot signature alone");
        let entry = 446 + 16;
        head[entry + 4] = 0x83;
        assert_eq!(detect(&head, &tail, SIZE), vec![], "no length");
        put(&mut head, entry + 12, &2048u32.to_le_bytes());
        assert_eq!(detect(&head, &tail, SIZE), vec![Signature::Mbr]);
        head[entry] = 0x12;
        assert_eq!(detect(&head, &tail, SIZE), vec![], "bad boot flag");
    }

    #[test]
    fn each_signature_is_found_and_named() {
        type Plant = Box<dyn Fn(&mut Vec<u8>, &mut Vec<u8>)>;
        let cases: Vec<(Plant, Signature, &str)> = vec![
            (
                Box::new(|h, _| put(h, 512, b"EFI PART")),
                Signature::Gpt { sector_size: 512 },
                "GPT",
            ),
            (
                Box::new(|h, _| put(h, 4096, b"EFI PART")),
                Signature::Gpt { sector_size: 4096 },
                "4096-byte",
            ),
            (
                Box::new(|h, _| put(h, 1080, &[0x53, 0xef])),
                Signature::Ext,
                "ext2/3/4",
            ),
            (Box::new(|h, _| put(h, 0, b"XFSB")), Signature::Xfs, "XFS"),
            (
                Box::new(|h, _| put(h, 65_600, b"_BHRfS_M")),
                Signature::Btrfs,
                "btrfs",
            ),
            (
                Box::new(|h, _| {
                    put(h, 512, b"LABELONE");
                    put(h, 536, b"LVM2 001");
                }),
                Signature::Lvm2,
                "LVM2",
            ),
            (
                Box::new(|h, _| put(h, 4086, b"SWAPSPACE2")),
                Signature::Swap,
                "swap",
            ),
            (
                Box::new(|h, _| put(h, 65_526, b"SWAP-SPACE")),
                Signature::Swap,
                "swap",
            ),
            (
                Box::new(|h, _| put(h, 4096, &[0xfc, 0x4e, 0x2b, 0xa9, 1, 0, 0, 0])),
                Signature::MdRaid { version: "1.2" },
                "RAID 1.2",
            ),
            (
                Box::new(|h, _| put(h, 0, &[0xfc, 0x4e, 0x2b, 0xa9, 1, 0, 0, 0])),
                Signature::MdRaid { version: "1.1" },
                "RAID 1.1",
            ),
            (
                // 4 MiB disk: 0.90 at 4 MiB - 64 KiB, i.e. 64 KiB into the 128 KiB tail.
                Box::new(|_, t| put(t, 0x1_0000, &[0xfc, 0x4e, 0x2b, 0xa9, 0, 0, 0, 0])),
                Signature::MdRaid { version: "0.90" },
                "RAID 0.90",
            ),
            (
                // 1.0 at 4 MiB - 8 KiB.
                Box::new(|_, t| put(t, TAIL_LEN - 8192, &[0xfc, 0x4e, 0x2b, 0xa9, 1, 0, 0, 0])),
                Signature::MdRaid { version: "1.0" },
                "RAID 1.0",
            ),
        ];
        for (plant, want, name) in cases {
            let (mut head, mut tail) = blank();
            plant(&mut head, &mut tail);
            let found = detect(&head, &tail, SIZE);
            assert_eq!(found, vec![want.clone()], "{want:?}");
            assert_eq!(
                want.lies_at_end(),
                name == "RAID 0.90" || name == "RAID 1.0"
            );
            assert!(want.to_string().contains(name), "{want}");
        }
    }

    #[test]
    fn half_signatures_are_not_enough() {
        let (mut head, tail) = blank();
        put(&mut head, 512, b"LABELONE");
        put(&mut head, 4096, &[0xfc, 0x4e, 0x2b, 0xa9, 7, 0, 0, 0]);
        put(&mut head, 1080, &[0x53, 0xef]);
        put(&mut head, 1048, &99u32.to_le_bytes());
        assert_eq!(detect(&head, &tail, SIZE), vec![]);
    }

    #[test]
    fn md_at_the_end_of_odd_sizes() {
        // A size that is not a multiple of 64 KiB: 0.90 sits below the last 64 KiB boundary.
        let size = SIZE + 5000;
        let (head, mut tail) = blank();
        let tail_start = size - TAIL_LEN as u64;
        let at = usize::try_from(((size & !0xffff) - 0x1_0000) - tail_start).unwrap();
        put(&mut tail, at, &[0xfc, 0x4e, 0x2b, 0xa9, 0, 0, 0, 0]);
        assert_eq!(
            detect(&head, &tail, size),
            vec![Signature::MdRaid { version: "0.90" }]
        );
    }
}

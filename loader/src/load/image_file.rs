//! The file `--image` names, recognised by its content: minicap.elf (ELF magic) or
//! minicap.bzImage (the Linux boot-protocol image `cargo xtask build` also writes, signed by
//! `sbsign` or not; checked with `minicap-bzimage`'s parser, the rules of the kernel's
//! bzImage64 loader).
//!
//! Either kind gives the [`Image`] `kexec_load` places (an ELF's PT_LOADs, a bzImage's payload:
//! the same flat image, entered at +0x200); only a bzImage can go through `kexec_file_load`,
//! whose x86_64 loader takes nothing else.

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{bail, Context, Result};
use minicap_bzimage::{BzImage, PeImage};

use super::image::Image;
use super::state::sha256_hex;

/// What kind of file the image is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// minicap.elf: `kexec_load` only.
    Elf,
    /// minicap.bzImage: `kexec_file_load` or `kexec_load`.
    BzImage {
        /// The PE certificate table is non-empty (an Authenticode signature, e.g. sbsign's).
        signed: bool,
    },
}

impl ImageKind {
    /// "signed" or "unsigned" for a bzImage; "ELF" for an ELF.
    pub fn signature(self) -> &'static str {
        match self {
            Self::Elf => "ELF",
            Self::BzImage { signed: true } => "signed",
            Self::BzImage { signed: false } => "unsigned",
        }
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Elf => f.write_str("ELF"),
            Self::BzImage { signed } => write!(
                f,
                "bzImage, {}",
                if *signed { "signed" } else { "unsigned" }
            ),
        }
    }
}

/// The image file, read whole.
#[derive(Debug, Clone)]
pub struct ImageFile {
    /// The file's bytes (what `kexec_file_load` reads through its descriptor).
    pub bytes: Vec<u8>,
    /// Its kind.
    pub kind: ImageKind,
    /// What `kexec_load` places.
    pub image: Image,
    /// SHA-256 of the file (for the load record).
    pub sha256: String,
}

const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

impl ImageFile {
    /// Reads and recognises the file at `path`.
    pub fn read(path: &Path) -> Result<Self> {
        Self::open(path).map(|(image, _)| image)
    }

    /// Opens, reads and recognises the file at `path`, and keeps it open: `kexec_file_load`
    /// then reads the very file whose bytes were recognised and hashed here, even if the path
    /// is replaced meanwhile.
    pub fn open(path: &Path) -> Result<(Self, File)> {
        let context = || {
            format!(
                "cannot read the minicap image {} (give it with --image)",
                path.display()
            )
        };
        let mut file = File::open(path).with_context(context)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).with_context(context)?;
        Ok((Self::parse(path, bytes)?, file))
    }

    /// Recognises `bytes`, the content of `path` (named in errors).
    pub fn parse(path: &Path, bytes: Vec<u8>) -> Result<Self> {
        let (kind, image) = if bytes.starts_with(ELF_MAGIC) {
            let image = Image::parse(&bytes)
                .with_context(|| format!("{} is not a minicap image", path.display()))?;
            (ImageKind::Elf, image)
        } else {
            let bz = match BzImage::parse(&bytes) {
                Ok(bz) => bz,
                Err(e) => bail!(
                    "{} is not a minicap image: not an ELF file (no \\x7fELF magic) and not a \
                     bzImage ({e}); give minicap.elf or minicap.bzImage (`cargo xtask build` \
                     writes both in target/)",
                    path.display()
                ),
            };
            // A bzImage without a valid PE view cannot carry a signature the kernel accepts.
            let signed = PeImage::parse(&bytes).is_ok_and(|pe| pe.cert_table.1 != 0);
            (ImageKind::BzImage { signed }, Image::from_bzimage(&bz))
        };
        let sha256 = sha256_hex(&bytes);
        Ok(Self {
            bytes,
            kind,
            image,
            sha256,
        })
    }

    /// The file's size in bytes.
    pub fn len(&self) -> u64 {
        u64::try_from(self.bytes.len()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::super::image::tests::image_with;
    use super::*;
    use minicap_bzimage::layout::{KERNEL_INFO_MAGIC, KERNEL_INFO_OFFSET};
    use minicap_bzimage::{build, ImageSource};
    use std::process::Command;

    /// A flat image with minicap's head: `kernel_info` at 0x10, the entry at 0x200.
    fn payload() -> Vec<u8> {
        let mut bytes: Vec<u8> = (0..0x1800u32)
            .map(|i| (i * 7 + 3).to_le_bytes()[0])
            .collect();
        bytes[KERNEL_INFO_OFFSET..KERNEL_INFO_OFFSET + 4].copy_from_slice(&KERNEL_INFO_MAGIC);
        bytes
    }

    const MEMSZ: u64 = 0x2_3456;

    fn bzimage() -> Vec<u8> {
        build(&ImageSource {
            payload: &payload(),
            memsz: MEMSZ,
            version: "minicap test",
        })
        .unwrap()
    }

    #[test]
    fn an_elf_is_an_elf() {
        let file = ImageFile::parse(
            Path::new("m.elf"),
            image_with(0x200, &[(0, &payload(), MEMSZ)]),
        )
        .unwrap();
        assert_eq!(file.kind, ImageKind::Elf);
        assert_eq!(file.image.entry, 0x200);
    }

    /// The same flat image as ELF and as bzImage places the same bytes at the same offsets,
    /// entered at the same point: the kexec_load fallback loads exactly minicap.elf.
    #[test]
    fn an_unsigned_bzimage_places_what_the_elf_places() {
        let file = ImageFile::parse(Path::new("m.bzImage"), bzimage()).unwrap();
        assert_eq!(file.kind, ImageKind::BzImage { signed: false });
        assert_eq!(file.kind.to_string(), "bzImage, unsigned");
        let elf = Image::parse(&image_with(0x200, &[(0, &payload(), MEMSZ)])).unwrap();
        assert_eq!(file.image, elf);
        assert_eq!(file.len(), 0x400 + 0x1800);
    }

    #[test]
    fn neither_is_refused_naming_the_file_and_what_it_is_not() {
        let mut text = b"#!/bin/sh\n".to_vec();
        text.resize(4096, b' ');
        let e = format!(
            "{:#}",
            ImageFile::parse(Path::new("/x/vmlinux.txt"), text).unwrap_err()
        );
        assert!(
            e.starts_with("/x/vmlinux.txt is not a minicap image"),
            "{e}"
        );
        assert!(e.contains("not an ELF file") && e.contains("not a bzImage (no \"HdrS\""));
        // A damaged ELF is reported as an ELF.
        let e = format!(
            "{:#}",
            ImageFile::parse(Path::new("m.elf"), b"\x7fELF".to_vec()).unwrap_err()
        );
        assert!(e.starts_with("m.elf is not a minicap image: "), "{e}");
        assert!(!e.contains("bzImage"), "{e}");
    }

    /// A certificate table as sbsign leaves it: the entry in the PE data directory, the
    /// table 8-byte aligned at the end of the file.
    #[test]
    fn a_certificate_table_makes_it_signed() {
        let mut image = bzimage();
        let pe = PeImage::parse(&image).unwrap();
        let at = u32::try_from(image.len()).unwrap();
        let table = [0x5au8; 0x308];
        image.extend_from_slice(&table);
        let entry = pe.cert_entry_offset;
        image[entry..entry + 4].copy_from_slice(&at.to_le_bytes());
        image[entry + 4..entry + 8].copy_from_slice(&0x308u32.to_le_bytes());
        let file = ImageFile::parse(Path::new("signed.bzImage"), image).unwrap();
        assert_eq!(file.kind, ImageKind::BzImage { signed: true });
        assert_eq!(file.kind.signature(), "signed");
        // The signature is loaded after the payload's file bytes, inside init_size.
        assert_eq!(&file.image.pieces[0].bytes[0x1800..0x1808], &[0x5a; 8]);
    }

    /// sbsign's own output, when sbsign and openssl are installed.
    #[test]
    fn an_sbsign_signed_copy_is_signed() {
        let have = |tool: &str| Command::new(tool).arg("--help").output().is_ok();
        if !(have("sbsign") && have("openssl")) {
            eprintln!("skipped: sbsign or openssl not installed (apt-get install sbsigntool)");
            return;
        }
        let dir = std::env::temp_dir().join(format!("minicap-load-sbsign-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = |name: &str| dir.join(name);
        std::fs::write(path("minicap.bzImage"), bzimage()).unwrap();
        let ok = |cmd: &mut Command| {
            let out = cmd.output().unwrap();
            assert!(out.status.success(), "{cmd:?}: {out:?}");
        };
        ok(Command::new("openssl")
            .args(["req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes"])
            .args(["-subj", "/CN=minicap load test/", "-days", "1", "-keyout"])
            .arg(path("k.key"))
            .arg("-out")
            .arg(path("k.crt")));
        ok(Command::new("sbsign")
            .arg("--key")
            .arg(path("k.key"))
            .arg("--cert")
            .arg(path("k.crt"))
            .arg("--output")
            .arg(path("signed.bzImage"))
            .arg(path("minicap.bzImage")));
        let signed = ImageFile::read(&path("signed.bzImage")).unwrap();
        let unsigned = ImageFile::read(&path("minicap.bzImage")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(signed.kind, ImageKind::BzImage { signed: true });
        assert_eq!(unsigned.kind, ImageKind::BzImage { signed: false });
        assert!(signed.len() > unsigned.len());
        assert_eq!(
            signed.image.pieces[0].bytes[..0x1800],
            unsigned.image.pieces[0].bytes[..0x1800]
        );
    }

    /// The files `cargo xtask build` produced in this worktree, when there are: the bzImage's
    /// payload is minicap.elf's image.
    #[test]
    fn the_built_bzimage_places_the_built_elf() {
        let target = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/");
        let (Ok(elf), Ok(bz)) = (
            std::fs::read(format!("{target}minicap.elf")),
            std::fs::read(format!("{target}minicap.bzImage")),
        ) else {
            eprintln!("skipped: no {target}minicap.elf and minicap.bzImage");
            return;
        };
        let elf = ImageFile::parse(Path::new("minicap.elf"), elf).unwrap();
        let bz = ImageFile::parse(Path::new("minicap.bzImage"), bz).unwrap();
        assert_eq!(elf.kind, ImageKind::Elf);
        assert!(matches!(bz.kind, ImageKind::BzImage { .. }));
        assert_eq!(bz.image.entry, elf.image.entry);
        let (e, b) = (&elf.image.pieces[0].bytes, &bz.image.pieces[0].bytes);
        assert!(b.len() >= e.len(), "{} < {}", b.len(), e.len());
        // The ELF's file bytes; beyond them both are zeros (or a signature in the bzImage).
        let file_bytes = e.iter().rposition(|&x| x != 0).unwrap() + 1;
        assert_eq!(b[..file_bytes], e[..file_bytes]);
    }
}

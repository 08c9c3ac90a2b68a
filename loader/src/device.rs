//! Access to a dump device: a block device or an image file.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use minicap_dumpheader::{DumpHeader, HeaderError, HEADER_LEN};

/// `O_EXCL` on x86_64 Linux (asm-generic/fcntl.h), spelled out to avoid a libc dependency
/// for one constant.
const O_EXCL: i32 = 0o200;

/// An open dump device and its size.
pub struct Device {
    pub file: File,
    pub size: u64,
}

impl Device {
    /// Opens `path` for reading, or for reading and writing. Never creates it: `format` on a
    /// mistyped path must not leave a stray file behind.
    ///
    /// A block device opened for writing is opened with `O_EXCL`, which Linux refuses with
    /// EBUSY while the device is mounted or otherwise claimed: formatting a disk in use would
    /// destroy its file system.
    pub fn open(path: &Path, write: bool) -> Result<Self> {
        let shown = path.display();
        let mut options = OpenOptions::new();
        options.read(true).write(write);
        let is_block = std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device());
        if write && is_block {
            options.custom_flags(O_EXCL);
        }
        let file = options.open(path).map_err(|e| {
            let hint = match e.kind() {
                io::ErrorKind::NotFound if write => {
                    " (to use an image file, create it first, e.g. `truncate -s 4G FILE`)"
                }
                io::ErrorKind::ResourceBusy => " (the device is mounted or in use)",
                _ => "",
            };
            anyhow!("cannot open {shown}: {e}{hint}")
        })?;
        let meta = file
            .metadata()
            .with_context(|| format!("cannot stat {shown}"))?;
        if meta.is_dir() {
            bail!("{shown} is a directory");
        }
        let mut dev = Self { file, size: 0 };
        dev.size = if meta.is_file() {
            meta.len()
        } else {
            // A block device reports size 0 in its metadata; its end offset is its size.
            dev.size_by_seek()
                .with_context(|| format!("cannot size {shown}"))?
        };
        Ok(dev)
    }

    fn size_by_seek(&mut self) -> io::Result<u64> {
        let end = self.file.seek(SeekFrom::End(0))?;
        self.file.seek(SeekFrom::Start(0))?;
        Ok(end)
    }

    /// Reads up to `len` bytes at `offset`; fewer only where the device ends.
    pub fn read_at(&self, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let at = offset + u64::try_from(got).map_err(io::Error::other)?;
            match self.file.read_at(&mut buf[got..], at) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(got);
        Ok(buf)
    }

    /// Reads the header's bytes (the base header and its extension); `None` if the device
    /// is shorter than that.
    pub fn read_header_bytes(&self) -> io::Result<Option<[u8; HEADER_LEN]>> {
        Ok(self.read_at(0, HEADER_LEN)?.try_into().ok())
    }

    /// Reads and decodes the header.
    pub fn header(&self, path: &Path) -> Result<DumpHeader> {
        let shown = path.display();
        let bytes = self
            .read_header_bytes()
            .with_context(|| format!("cannot read {shown}"))?
            .ok_or_else(|| anyhow!("{shown}: {}", HeaderError::NotMinicap))?;
        DumpHeader::decode(&bytes).map_err(|e| anyhow!("{shown}: {e}"))
    }

    /// Copies `len` bytes starting at `offset` to `out`, feeding every byte to `on_data` too.
    pub fn copy_range(
        &mut self,
        offset: u64,
        len: u64,
        out: &mut impl Write,
        mut on_data: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        self.file.seek(SeekFrom::Start(offset))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = len;
        while left > 0 {
            let chunk = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
            let n = self.file.read(&mut buf[..chunk])?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("device ended {left} bytes before the end of the dump"),
                ));
            }
            on_data(&buf[..n]);
            out.write_all(&buf[..n])?;
            left -= u64::try_from(n).map_err(io::Error::other)?;
        }
        Ok(())
    }
}

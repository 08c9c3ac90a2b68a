//! The parameter block at offset 0 of the purgatory image: what the loader writes into the
//! purgatory before `kexec_load`, and what the purgatory reads after the panic. It plays the
//! part of kexec-tools' purgatory globals (`entry64_regs`, `sha256_regions`,
//! `sha256_digest`), which kexec-tools patches by symbol name; minicap's loader finds the
//! block by its place and magic instead, so it needs no symbol table.
//!
//! # Layout (little-endian, [`PARAMS_LEN`] bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `MCPURGP1` |
//! | 8 | 8 | physical address of minicap's entry point (0 in the built file) |
//! | 16 | 8 | physical address of `boot_params` (passed in `%rsi`) |
//! | 24 | 8 | 0 |
//! | 32 | [`TABLE_LEN`] | the digest table ([`DigestTable`]) |
//!
//! The built file carries the magic and zeros: an unpatched purgatory (entry 0, no table
//! magic) refuses to jump anywhere.

use core::fmt;

use crate::{DigestTable, TableError, TABLE_LEN};

/// `MCPURGP1`.
pub const PARAMS_MAGIC: [u8; 8] = *b"MCPURGP1";
const TABLE_AT: usize = 32;
/// Bytes of the parameter block.
pub const PARAMS_LEN: usize = TABLE_AT + TABLE_LEN;

/// What the purgatory needs to check the segments and start minicap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Where to jump once every segment matches.
    pub minicap_entry: u64,
    /// The `boot_params` page minicap receives in `%rsi`.
    pub boot_params: u64,
    /// The segments and their digests.
    pub table: DigestTable,
}

/// Why a parameter block cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamsError {
    /// Fewer than [`PARAMS_LEN`] bytes.
    TooShort(usize),
    /// Not `MCPURGP1`: not a minicap purgatory, or damaged.
    BadMagic([u8; 8]),
    /// The entry or `boot_params` address is 0: the loader did not patch the block.
    NotPatched,
    /// The digest table is unusable.
    Table(TableError),
}

impl fmt::Display for ParamsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::TooShort(n) => write!(f, "parameter block of {n} bytes, {PARAMS_LEN} needed"),
            Self::BadMagic(m) => write!(f, "parameter block magic {m:02x?}, not MCPURGP1"),
            Self::NotPatched => f.write_str("the loader did not fill in the entry point"),
            Self::Table(e) => write!(f, "{e}"),
        }
    }
}

impl Params {
    /// Writes the block into `out` (the first [`PARAMS_LEN`] bytes of the purgatory image).
    pub fn encode_into(&self, out: &mut [u8]) -> Result<(), ParamsError> {
        let len = out.len();
        let out = out
            .get_mut(..PARAMS_LEN)
            .ok_or(ParamsError::TooShort(len))?;
        out.fill(0);
        out[..8].copy_from_slice(&PARAMS_MAGIC);
        out[8..16].copy_from_slice(&self.minicap_entry.to_le_bytes());
        out[16..24].copy_from_slice(&self.boot_params.to_le_bytes());
        out[TABLE_AT..].copy_from_slice(&self.table.encode());
        Ok(())
    }

    /// Reads a block; every field is checked, as memory may have been damaged.
    pub fn decode(bytes: &[u8]) -> Result<Self, ParamsError> {
        let bytes = bytes
            .get(..PARAMS_LEN)
            .ok_or(ParamsError::TooShort(bytes.len()))?;
        let magic: [u8; 8] = crate::field(bytes, 0);
        if magic != PARAMS_MAGIC {
            return Err(ParamsError::BadMagic(magic));
        }
        let minicap_entry = u64::from_le_bytes(crate::field(bytes, 8));
        let boot_params = u64::from_le_bytes(crate::field(bytes, 16));
        if minicap_entry == 0 || boot_params == 0 {
            return Err(ParamsError::NotPatched);
        }
        let table = DigestTable::decode(&bytes[TABLE_AT..]).map_err(ParamsError::Table)?;
        Ok(Self {
            minicap_entry,
            boot_params,
            table,
        })
    }
}

/// The block as built into the purgatory: the magic, then zeros until the loader patches it.
pub const fn unpatched_block() -> [u8; PARAMS_LEN] {
    let mut block = [0u8; PARAMS_LEN];
    let mut i = 0;
    while i < PARAMS_MAGIC.len() {
        block[i] = PARAMS_MAGIC[i];
        i += 1;
    }
    block
}

/// Whether `image` (the purgatory's first loaded bytes) starts with an unpatched or patched
/// parameter block: what the loader checks before patching.
pub fn has_params_block(image: &[u8]) -> bool {
    image.len() >= PARAMS_LEN && image[..8] == PARAMS_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region_of;

    fn params() -> Params {
        let table = DigestTable::new(&[
            region_of(0x3d00_0000, &[1; 64]),
            region_of(0x3d0a_2000, &[2; 64]),
        ])
        .unwrap();
        Params {
            minicap_entry: 0x3d00_0000,
            boot_params: 0x3d0a_2000,
            table,
        }
    }

    #[test]
    fn round_trip_at_the_start_of_an_image() {
        let mut image = vec![0xcc; PARAMS_LEN + 100];
        image[..8].copy_from_slice(&PARAMS_MAGIC);
        assert!(has_params_block(&image));
        params().encode_into(&mut image).unwrap();
        assert_eq!(Params::decode(&image), Ok(params()));
        // The code after the block is untouched.
        assert!(image[PARAMS_LEN..].iter().all(|&b| b == 0xcc));
    }

    #[test]
    fn an_unpatched_block_is_refused() {
        let mut image = unpatched_block().to_vec();
        assert!(has_params_block(&image));
        assert_eq!(Params::decode(&image), Err(ParamsError::NotPatched));
        image[8] = 1;
        image[16] = 1;
        assert!(matches!(
            Params::decode(&image),
            Err(ParamsError::Table(TableError::BadMagic(_)))
        ));
    }

    #[test]
    fn damage_is_refused() {
        let mut image = vec![0u8; PARAMS_LEN];
        params().encode_into(&mut image).unwrap();
        assert_eq!(
            Params::decode(&image[..PARAMS_LEN - 1]),
            Err(ParamsError::TooShort(PARAMS_LEN - 1))
        );
        image[0] = b'X';
        assert!(!has_params_block(&image));
        assert!(matches!(
            Params::decode(&image),
            Err(ParamsError::BadMagic(_))
        ));
        assert_eq!(
            params().encode_into(&mut [0u8; 10]),
            Err(ParamsError::TooShort(10))
        );
    }
}

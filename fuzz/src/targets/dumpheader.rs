//! The on-device header as the host tool reads it (`minicap info`/`save`/`format` call
//! `DumpHeader::decode` on the device's first sector). Random bytes rarely pass the CRCs, so
//! every input is also decoded with both CRCs made right, which sends it on to the field
//! checks behind them.

use minicap_dumpheader::{
    crc32, required_capacity, DumpHeader, EXTENSION_MAGIC, HEADER_LEN, MAGIC,
};

use super::{signature, Target};

/// Where the base header's CRC is stored; it covers the bytes before it.
const BASE_CRC_OFFSET: usize = 508;
/// The base header's length: the extension starts here.
const BASE_LEN: usize = 512;
/// Where the extension's CRC is stored; it covers the extension before it.
const EXT_CRC_OFFSET: usize = 1020;

pub const TARGET: Target = Target {
    name: "dumpheader",
    about: "on-device dump header and its extension, as DumpHeader::decode reads them",
    run,
    dictionary: &[&MAGIC, &EXTENSION_MAGIC, &[1, 0, 0, 0], &[0, 2, 0, 0]],
    max_len: 2 * HEADER_LEN,
};

fn run(input: &[u8]) -> u64 {
    let as_is = decode_and_use(input);
    let fixed = (input.len() >= HEADER_LEN).then(|| {
        let mut b = input[..HEADER_LEN].to_vec();
        let crc = crc32(&b[..BASE_CRC_OFFSET]);
        b[BASE_CRC_OFFSET..BASE_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        let crc = crc32(&b[BASE_LEN..EXT_CRC_OFFSET]);
        b[EXT_CRC_OFFSET..EXT_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
        decode_and_use(&b)
    });
    signature((as_is, fixed))
}

/// Decodes, then uses the header as `minicap info` does; a header that decodes must encode
/// back to bytes that decode to the same header.
fn decode_and_use(
    bytes: &[u8],
) -> Result<u8, core::mem::Discriminant<minicap_dumpheader::HeaderError>> {
    let h = DumpHeader::decode(bytes).map_err(|e| core::mem::discriminant(&e))?;
    let again = DumpHeader::decode(&h.encode());
    assert_eq!(
        again.as_ref(),
        Ok(&h),
        "a decoded header does not survive encode/decode"
    );
    let _ = (
        h.writer_str(),
        h.osrelease_str(),
        h.message_str(),
        h.level_note(),
        required_capacity(h.dump_length),
    );
    Ok(h.state as u8)
}

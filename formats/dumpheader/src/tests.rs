use super::*;

const ID: [u8; 16] = [
    0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb,
];

fn complete() -> DumpHeader {
    let mut h = DumpHeader::new_empty(ID, 64 << 20, "minicap 0.1.0");
    h.state = DumpState::Complete;
    h.format = DumpFormat::ElfVmcore;
    h.dump_length = 10 << 20;
    h.written = 10 << 20;
    h.crash_time = 1_700_000_000;
    h.sha256 = [0x5a; 32];
    h.set_osrelease("6.8.0-31-generic");
    h
}

/// Re-seals a hand-edited sector with a correct CRC.
fn reseal(b: &mut [u8; HEADER_LEN]) {
    let crc = crc32(&b[..OFF_CRC]);
    b[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn crc_vectors() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32(b""), 0);
    assert_eq!(crc32(b"a"), 0xE8B7_BE43);
    assert_eq!(
        crc32(b"The quick brown fox jumps over the lazy dog"),
        0x414F_A339
    );
}

#[test]
fn layout_of_encoded_header() {
    let h = complete();
    let b = h.encode();
    assert_eq!(&b[0..8], b"MINICAP\0");
    assert_eq!(b[8..12], 1u32.to_le_bytes());
    assert_eq!(b[12..16], 512u32.to_le_bytes());
    assert_eq!(b[16..32], ID);
    assert_eq!(b[32..36], 2u32.to_le_bytes());
    assert_eq!(b[36..40], 1u32.to_le_bytes());
    assert_eq!(b[40..48], (2u64 << 20).to_le_bytes());
    assert_eq!(b[48..56], (10u64 << 20).to_le_bytes());
    assert_eq!(b[56..64], (10u64 << 20).to_le_bytes());
    assert_eq!(b[64..72], (64u64 << 20).to_le_bytes());
    assert_eq!(b[72..80], 1_700_000_000i64.to_le_bytes());
    assert_eq!(b[80..112], [0x5a; 32]);
    assert_eq!(&b[112..125], b"minicap 0.1.0");
    assert!(b[125..144].iter().all(|&x| x == 0));
    assert_eq!(&b[144..160], b"6.8.0-31-generic");
    assert!(b[160..464].iter().all(|&x| x == 0));
    assert_eq!(b[464..468], 0u32.to_le_bytes(), "no console log");
    assert!(b[468..508].iter().all(|&x| x == 0));
    assert_eq!(b[508..512], crc32(&b[..508]).to_le_bytes());
    assert_eq!(b.len(), 1024);
    assert_eq!(&b[512..520], b"MCEXT\0\0\0");
    assert!(b[520..1020].iter().all(|&x| x == 0), "extension defaults");
    assert_eq!(b[1020..1024], crc32(&b[512..1020]).to_le_bytes());
}

#[test]
fn round_trip() {
    let mut h = complete();
    h.set_message("all good");
    let b = h.encode();
    assert_eq!(DumpHeader::decode(&b), Ok(h.clone()));
    // Extra bytes after the sector are ignored.
    let mut long = b.to_vec();
    long.extend_from_slice(&[0xff; 100]);
    assert_eq!(DumpHeader::decode(&long), Ok(h));
}

#[test]
fn round_trip_every_state() {
    let empty = DumpHeader::new_empty(ID, MIN_CAPACITY, "minicap-format 0.1.0");
    assert_eq!(DumpHeader::decode(&empty.encode()).as_ref(), Ok(&empty));
    let mut writing = complete();
    writing.state = DumpState::Writing;
    writing.written = 4096;
    assert_eq!(DumpHeader::decode(&writing.encode()).as_ref(), Ok(&writing));
    let mut failed = writing.clone();
    failed.state = DumpState::Failed;
    failed.crash_time = -5;
    failed.set_message("virtio-blk: device error");
    assert_eq!(DumpHeader::decode(&failed.encode()).as_ref(), Ok(&failed));
    assert_eq!(failed.message_str(), "virtio-blk: device error");
}

#[test]
fn new_empty_fields() {
    let h = DumpHeader::new_empty(ID, 3 << 20, "minicap-format 0.1.0");
    assert_eq!(h.state, DumpState::Empty);
    assert_eq!(h.format, DumpFormat::None);
    assert_eq!(h.dump_offset, DUMP_OFFSET);
    assert_eq!((h.dump_length, h.written, h.crash_time), (0, 0, 0));
    assert_eq!(h.writer_str(), "minicap-format 0.1.0");
    assert_eq!(h.osrelease_str(), "");
    assert_eq!(h.message_str(), "");
    assert_eq!(h.validate(), Ok(()));
}

#[test]
fn too_short() {
    let b = complete().encode();
    assert_eq!(
        DumpHeader::decode(&b[..1023]),
        Err(HeaderError::TooShort { len: 1023 })
    );
    assert_eq!(
        DumpHeader::decode(&[]),
        Err(HeaderError::TooShort { len: 0 })
    );
}

#[test]
fn not_minicap() {
    assert_eq!(
        DumpHeader::decode(&[0u8; HEADER_LEN]),
        Err(HeaderError::NotMinicap)
    );
    // A base header alone is too short now; the kernel and the loader read whole blocks.
    assert_eq!(
        DumpHeader::decode(&complete().encode()[..512]),
        Err(HeaderError::TooShort { len: 512 })
    );
    let mut b = complete().encode();
    b[7] = b'!';
    assert_eq!(DumpHeader::decode(&b), Err(HeaderError::NotMinicap));
}

#[test]
fn unsupported_version() {
    let mut b = complete().encode();
    b[8..12].copy_from_slice(&2u32.to_le_bytes());
    // No reseal: the version is checked before the CRC.
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::UnsupportedVersion { version: 2 })
    );
}

#[test]
fn bad_header_len() {
    let mut b = complete().encode();
    b[12..16].copy_from_slice(&4096u32.to_le_bytes());
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::BadHeaderLen { header_len: 4096 })
    );
}

#[test]
fn bad_crc() {
    let good = complete().encode();
    for pos in [16, 100, 300, 463, 470, 507, 508, 511] {
        let mut b = good;
        b[pos] ^= 0x01;
        assert!(
            matches!(DumpHeader::decode(&b), Err(HeaderError::BadCrc { .. })),
            "flip at {pos}"
        );
    }
    let mut b = good;
    b[200] = 1;
    let computed = crc32(&b[..508]);
    let stored = crc32(&good[..508]);
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::BadCrc { stored, computed })
    );
}

#[test]
fn reserved_bytes_are_not_checked() {
    let h = complete();
    let mut b = h.encode();
    b[504] = 0x77;
    b[507] = 0x01;
    reseal(&mut b);
    assert_eq!(DumpHeader::decode(&b), Ok(h));
}

#[test]
fn log_length_round_trips_and_is_bounded() {
    let mut h = complete();
    h.log_length = 1234;
    let b = h.encode();
    assert_eq!(b[464..468], 1234u32.to_le_bytes());
    assert_eq!(DumpHeader::decode(&b), Ok(h.clone()));
    h.log_length = u32::try_from(LOG_CAPACITY).unwrap();
    assert!(DumpHeader::decode(&h.encode()).is_ok());
    h.log_length += 1;
    assert_eq!(
        DumpHeader::decode(&h.encode()),
        Err(HeaderError::Inconsistent(
            "console log longer than its area"
        ))
    );
}

#[test]
fn failure_code_and_skips_round_trip() {
    let mut h = complete();
    h.state = DumpState::Failed;
    h.failure_code = FailureCode::DeviceError;
    h.skipped_ranges = 2;
    h.skipped_bytes = 3 << 20;
    let b = h.encode();
    assert_eq!(b[468..472], 17u32.to_le_bytes());
    assert_eq!(b[472..476], 2u32.to_le_bytes());
    assert_eq!(b[480..488], (3u64 << 20).to_le_bytes());
    assert_eq!(DumpHeader::decode(&b), Ok(h));
}

#[test]
fn unknown_failure_code_is_refused() {
    let mut b = complete().encode();
    b[468] = 200;
    reseal(&mut b);
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::UnknownFailureCode { raw: 200 })
    );
}

#[test]
fn failure_codes_are_unique_and_stable() {
    let all = FailureCode::all();
    for (i, a) in all.iter().enumerate() {
        assert_eq!(FailureCode::from_raw(a.to_raw()), Some(*a));
        for b in &all[i + 1..] {
            assert_ne!(a.to_raw(), b.to_raw());
            assert_ne!(a.as_str(), b.as_str());
        }
    }
    // Stored on devices: these numbers must never change.
    assert_eq!(FailureCode::None.to_raw(), 0);
    assert_eq!(FailureCode::DeviceTooSmall.to_raw(), 15);
    assert_eq!(FailureCode::Internal.to_raw(), 19);
    assert_eq!(FailureCode::Timeout.to_raw(), 20);
    assert_eq!(FailureCode::Timeout.as_str(), "timeout");
    assert_eq!(FailureCode::UnsavedDumpPresent.to_raw(), 21);
    assert_eq!(FailureCode::UnsavedDumpPresent.as_str(), "unsaved-dump");
    assert_eq!(FailureCode::from_raw(22), None);
}

// The log area sits inside the reserved first MiB, page aligned.
const _: () = assert!(LOG_OFFSET >= HEADER_LEN as u64);
const _: () = assert!(LOG_OFFSET + LOG_CAPACITY <= DUMP_OFFSET);
const _: () = assert!(LOG_OFFSET.is_multiple_of(4096));

#[test]
fn unknown_state_and_format() {
    let mut b = complete().encode();
    b[32..36].copy_from_slice(&4u32.to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::UnknownState { raw: 4 })
    );
    let mut b = complete().encode();
    b[36..40].copy_from_slice(&3u32.to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::UnknownFormat { raw: 3 })
    );
}

fn inconsistent(h: &DumpHeader) {
    assert!(
        matches!(h.validate(), Err(HeaderError::Inconsistent(_))),
        "{h:?}"
    );
    assert!(matches!(
        DumpHeader::decode(&h.encode()),
        Err(HeaderError::Inconsistent(_))
    ));
}

#[test]
fn inconsistent_offsets() {
    let mut h = complete();
    h.dump_offset = 0;
    inconsistent(&h);
    h.dump_offset = 256;
    inconsistent(&h);
    h.dump_offset = 512 + 1;
    inconsistent(&h);
    h.dump_offset = 512;
    inconsistent(&h);
    h.dump_offset = 1024;
    assert_eq!(h.validate(), Ok(()));
    h.dump_offset = LEGACY_DUMP_OFFSET;
    assert_eq!(h.validate(), Ok(()));

    let mut h = complete();
    h.state = DumpState::Writing;
    h.written = h.dump_length + 1;
    inconsistent(&h);

    let mut h = complete();
    h.capacity = DUMP_OFFSET + h.dump_length - 1;
    inconsistent(&h);

    let mut h = complete();
    h.dump_offset = !511u64;
    inconsistent(&h);
}

#[test]
fn failed_may_plan_more_than_capacity() {
    let mut h = complete();
    h.state = DumpState::Failed;
    h.dump_length = 1 << 40;
    h.written = 0;
    h.set_message("device too small");
    assert_eq!(h.validate(), Ok(()));
    // But a Complete dump must fit.
    h.state = DumpState::Complete;
    inconsistent(&h);
}

#[test]
fn complete_needs_all_data_and_format() {
    let mut h = complete();
    h.written -= 1;
    inconsistent(&h);
    let mut h = complete();
    h.format = DumpFormat::None;
    inconsistent(&h);
}

#[test]
fn error_messages() {
    assert!(HeaderError::NotMinicap
        .to_string()
        .contains("not a minicap"));
    assert!(HeaderError::BadCrc {
        stored: 1,
        computed: 2
    }
    .to_string()
    .contains("checksum"));
    assert!(HeaderError::Inconsistent("x y").to_string().contains("x y"));
}

#[test]
fn set_text_truncates_at_char_boundary() {
    let mut f = [0xffu8; 8];
    set_text(&mut f, "abc");
    assert_eq!(&f, b"abc\0\0\0\0\0");
    set_text(&mut f, "abcdefgh");
    assert_eq!(&f, b"abcdefgh");
    assert_eq!(text(&f), "abcdefgh");
    set_text(&mut f, "abcdefghij");
    assert_eq!(&f, b"abcdefgh");
    // "ü" is two bytes: 7 ASCII + ü would need 9, so ü is dropped entirely.
    set_text(&mut f, "abcdefgü");
    assert_eq!(&f, b"abcdefg\0");
    assert_eq!(text(&f), "abcdefg");
    set_text(&mut f, "");
    assert_eq!(f, [0; 8]);
    let mut h = complete();
    h.set_message(&"x".repeat(300));
    assert_eq!(h.message_str().len(), 256);
    h.set_writer("minicap 9.9.9");
    assert_eq!(h.writer_str(), "minicap 9.9.9");
}

#[test]
fn text_of_damaged_field() {
    assert_eq!(text(b"ok\xffrest"), "ok");
    assert_eq!(text(b"\xff"), "");
    assert_eq!(text(b"abc\0def"), "abc");
    assert_eq!(text(b""), "");
}

#[test]
fn required_capacity_rounds() {
    assert_eq!(required_capacity(0), DUMP_OFFSET);
    assert_eq!(required_capacity(1), DUMP_OFFSET + 4096);
    assert_eq!(required_capacity(4096), DUMP_OFFSET + 4096);
    assert_eq!(required_capacity(4097), DUMP_OFFSET + 8192);
    assert_eq!(required_capacity(u64::MAX), u64::MAX);
    assert_eq!(required_capacity(u64::MAX - DUMP_OFFSET), u64::MAX);
}

#[test]
fn device_id_hex() {
    let s = DeviceIdHex(&ID).to_string();
    assert_eq!(s, "deadbeef000102030405060708090a0b");
    assert_eq!(parse_device_id(&s), Some(ID));
    assert_eq!(parse_device_id(&s.to_uppercase()), Some(ID));
    assert_eq!(parse_device_id(&s[..31]), None);
    assert_eq!(parse_device_id(&format!("{s}0")), None);
    assert_eq!(parse_device_id("zz".repeat(16).as_str()), None);
    assert_eq!(parse_device_id("+f".repeat(16).as_str()), None);
}

#[test]
fn state_and_format_raw() {
    for s in [
        DumpState::Empty,
        DumpState::Writing,
        DumpState::Complete,
        DumpState::Failed,
    ] {
        assert_eq!(DumpState::from_raw(s.to_raw()), Some(s));
    }
    assert_eq!(DumpState::from_raw(4), None);
    for f in [
        DumpFormat::None,
        DumpFormat::ElfVmcore,
        DumpFormat::KdumpCompressed,
    ] {
        assert_eq!(DumpFormat::from_raw(f.to_raw()), Some(f));
    }
    assert_eq!(DumpFormat::from_raw(2), Some(DumpFormat::KdumpCompressed));
    assert_eq!(DumpFormat::from_raw(3), None);
    assert_eq!(DumpFormat::KdumpCompressed.to_string(), "kdump-compressed");
    assert_eq!(DumpState::Complete.to_string(), "complete");
    assert_eq!(DumpFormat::ElfVmcore.to_string(), "elf-vmcore");
}

const MIB: u64 = 1 << 20;

#[test]
fn chunk_table_sits_between_log_and_dump() {
    assert_eq!(CHUNK_TABLE_OFFSET, LOG_OFFSET + LOG_CAPACITY);
    assert_eq!(CHUNK_TABLE_OFFSET + CHUNK_TABLE_CAPACITY, TRIAGE_OFFSET);
    assert_eq!(CHUNK_TABLE_CAPACITY, 896 << 10);
    assert_eq!(MAX_CHUNKS, 114_688);
    assert!(CHUNK_TABLE_OFFSET.is_multiple_of(4096));
}

#[test]
fn chunk_size_is_the_smallest_that_fits_the_table() {
    assert_eq!(chunk_size_for(0), MIB);
    assert_eq!(chunk_size_for(1), MIB);
    assert_eq!(chunk_size_for(MAX_CHUNKS * MIB), MIB, "112 GiB");
    assert_eq!(chunk_size_for(MAX_CHUNKS * MIB + 1), 2 * MIB);
    assert_eq!(chunk_size_for(1 << 40), 16 * MIB, "1 TiB");
    assert_eq!(chunk_size_for(MAX_CHUNKS * 16 * MIB), 16 * MIB);
    assert_eq!(chunk_size_for(MAX_CHUNKS * 16 * MIB + 1), 32 * MIB);
    assert_eq!(chunk_size_for(u64::MAX), 1 << 48);
    // The definition, checked over a spread of lengths: a power of two >= 1 MiB whose chunks
    // fit, and half of it (if still >= 1 MiB) would not.
    let mut len = 1u64;
    while len < u64::MAX / 3 {
        let size = chunk_size_for(len);
        assert!(size.is_power_of_two() && size >= MIB, "{len}");
        assert!(chunk_count(len, size) <= MAX_CHUNKS, "{len}");
        assert!(
            size == MIB || chunk_count(len, size / 2) > MAX_CHUNKS,
            "{len}"
        );
        len = len * 3 + 7;
    }
}

#[test]
fn chunk_counts() {
    assert_eq!(chunk_count(0, MIB), 0);
    assert_eq!(chunk_count(1, MIB), 1);
    assert_eq!(chunk_count(MIB, MIB), 1);
    assert_eq!(chunk_count(MIB + 1, MIB), 2);
    assert_eq!(chunk_count(u64::MAX, 1 << 63), 2);
    // Finished chunks: whole chunks within `written`, the short last one only at the end.
    assert_eq!(finished_chunks(0, 0, MIB), 0);
    assert_eq!(finished_chunks(0, 5 * MIB, MIB), 0);
    assert_eq!(finished_chunks(MIB - 1, 5 * MIB, MIB), 0);
    assert_eq!(finished_chunks(MIB, 5 * MIB, MIB), 1);
    assert_eq!(finished_chunks(3 * MIB, 3 * MIB + 10, MIB), 3);
    assert_eq!(finished_chunks(3 * MIB + 9, 3 * MIB + 10, MIB), 3);
    assert_eq!(finished_chunks(3 * MIB + 10, 3 * MIB + 10, MIB), 4);
}

fn chunked() -> DumpHeader {
    let mut h = complete();
    h.set_verification(Verification::Xxh64Chunks);
    h.table_xxh64 = 0x0123_4567_89ab_cdef;
    h
}

#[test]
fn verification_round_trips_at_its_offsets() {
    let h = chunked();
    assert_eq!(h.chunk_size, MIB);
    let b = h.encode();
    assert_eq!(b[476..480], 2u32.to_le_bytes());
    assert_eq!(b[488..496], MIB.to_le_bytes());
    assert_eq!(b[496..504], 0x0123_4567_89ab_cdefu64.to_le_bytes());
    assert!(b[504..508].iter().all(|&x| x == 0));
    assert_eq!(DumpHeader::decode(&b), Ok(h));

    let mut none = complete();
    none.set_verification(Verification::None);
    let b = none.encode();
    assert_eq!(b[476..480], 1u32.to_le_bytes());
    assert_eq!(DumpHeader::decode(&b), Ok(none));
}

#[test]
fn old_headers_mean_sha256() {
    // Every header written before the field existed has zeros there.
    let h = DumpHeader::decode(&complete().encode()).unwrap();
    assert_eq!(h.verify, Verification::Sha256);
    assert_eq!((h.chunk_size, h.table_xxh64), (0, 0));
    assert_eq!(
        DumpHeader::new_empty(ID, MIN_CAPACITY, "x").verify,
        Verification::Sha256
    );
}

#[test]
fn unknown_verification_is_refused() {
    let mut b = complete().encode();
    b[476..480].copy_from_slice(&3u32.to_le_bytes());
    reseal(&mut b);
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::UnknownVerification { raw: 3 })
    );
    assert!(HeaderError::UnknownVerification { raw: 3 }
        .to_string()
        .contains("unknown verification method 3"));
}

#[test]
fn verification_names_and_values_are_stable() {
    for v in [
        Verification::Sha256,
        Verification::None,
        Verification::Xxh64Chunks,
    ] {
        assert_eq!(Verification::from_raw(v.to_raw()), Some(v));
    }
    assert_eq!(Verification::Sha256.to_raw(), 0);
    assert_eq!(Verification::None.to_raw(), 1);
    assert_eq!(Verification::Xxh64Chunks.to_raw(), 2);
    assert_eq!(Verification::from_raw(3), None);
    assert_eq!(Verification::Sha256.to_string(), "sha256");
    assert_eq!(Verification::None.to_string(), "none");
    assert_eq!(Verification::Xxh64Chunks.to_string(), "xxh64-chunks");
}

#[test]
fn chunk_fields_are_validated() {
    let mut h = chunked();
    for bad in [0, 4096, MIB - 1, MIB + 4096, 3 * MIB] {
        h.chunk_size = bad;
        inconsistent(&h);
    }
    // Too many chunks for the table.
    let mut h = chunked();
    h.state = DumpState::Failed;
    h.written = 0;
    h.dump_length = MAX_CHUNKS * MIB + 1;
    inconsistent(&h);
    h.chunk_size = 2 * MIB;
    assert_eq!(h.validate(), Ok(()));
    // A larger chunk size than needed is still a valid table.
    let mut h = chunked();
    h.chunk_size = 64 * MIB;
    assert_eq!(h.validate(), Ok(()));
    // Chunk fields without chunk checksums.
    for verify in [Verification::Sha256, Verification::None] {
        let mut h = chunked();
        h.verify = verify;
        inconsistent(&h);
        h.table_xxh64 = 0;
        inconsistent(&h);
        h.chunk_size = 0;
        assert_eq!(h.validate(), Ok(()));
        h.table_xxh64 = 1;
        inconsistent(&h);
    }
}

#[test]
fn set_verification_follows_the_dump_length() {
    let mut h = complete();
    h.dump_length = 1 << 40;
    h.set_verification(Verification::Xxh64Chunks);
    assert_eq!(h.chunk_size, 16 * MIB);
    h.table_xxh64 = 5;
    h.set_verification(Verification::Sha256);
    assert_eq!((h.chunk_size, h.table_xxh64), (0, 0));
}

// ---- The triage area and the header extension ----

#[test]
fn areas_follow_each_other() {
    assert_eq!(TRIAGE_OFFSET, MIB);
    assert_eq!(TRIAGE_CAPACITY, MIB);
    assert_eq!(DUMP_OFFSET, TRIAGE_OFFSET + TRIAGE_CAPACITY);
    assert_eq!(DUMP_OFFSET, 2 * MIB);
    assert_eq!(MIN_CAPACITY, 3 * MIB);
    assert_eq!(KNOWN_DUMP_OFFSETS, [2 * MIB, MIB]);
    assert_eq!(required_capacity(0), 2 * MIB);
    assert!(HEADER_LEN as u64 <= LOG_OFFSET);
}

/// A header with every extension field set.
fn kdump() -> DumpHeader {
    let mut h = complete();
    h.format = DumpFormat::KdumpCompressed;
    h.triage_length = 54_321;
    h.dump_level_requested = 31;
    h.dump_level = 1;
    h.compression = Compression::Lzo;
    h.set_level_note("free-page exclusion needs the buddy allocator's layout");
    h.pages_ram = 262_144;
    h.pages_dumped = 70_001;
    h
}

/// Re-seals a hand-edited extension with a correct CRC.
fn reseal_extension(b: &mut [u8; HEADER_LEN]) {
    let crc = crc32(&b[512..1020]);
    b[1020..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn extension_fields_at_their_offsets() {
    let h = kdump();
    let b = h.encode();
    assert_eq!(b[36..40], 2u32.to_le_bytes(), "format kdump-compressed");
    assert_eq!(&b[512..520], b"MCEXT\0\0\0");
    assert_eq!(b[520..524], 54_321u32.to_le_bytes());
    assert_eq!(b[524..528], 2u32.to_le_bytes(), "lzo");
    assert_eq!((b[528], b[529]), (31, 1));
    assert!(b[530..536].iter().all(|&x| x == 0));
    assert_eq!(b[536..544], 262_144u64.to_le_bytes());
    assert_eq!(b[544..552], 70_001u64.to_le_bytes());
    assert!(b[552..712].starts_with(b"free-page exclusion needs"));
    assert!(b[712..1020].iter().all(|&x| x == 0));
    assert_eq!(b[1020..1024], crc32(&b[512..1020]).to_le_bytes());
    // The base header is self-contained: its CRC ignores the extension.
    assert_eq!(b[508..512], crc32(&b[..508]).to_le_bytes());
    assert_eq!(b[12..16], 512u32.to_le_bytes());
}

#[test]
fn round_trip_every_extension_field() {
    let h = kdump();
    let back = DumpHeader::decode(&h.encode()).unwrap();
    assert_eq!(back, h);
    assert_eq!(back.triage_length, 54_321);
    assert_eq!((back.dump_level_requested, back.dump_level), (31, 1));
    assert_eq!(back.compression, Compression::Lzo);
    assert_eq!(
        back.level_note(),
        "free-page exclusion needs the buddy allocator's layout"
    );
    assert_eq!((back.pages_ram, back.pages_dumped), (262_144, 70_001));
    for c in [Compression::None, Compression::Zlib, Compression::Lzo] {
        let mut h = kdump();
        h.compression = c;
        assert_eq!(DumpHeader::decode(&h.encode()), Ok(h));
    }
    // Extra bytes after the header (the rest of a 4 KiB block) are ignored.
    let mut block = [0xa5u8; 4096];
    block[..HEADER_LEN].copy_from_slice(&h.encode());
    assert_eq!(DumpHeader::decode(&block), Ok(h));
}

#[test]
fn header_of_an_older_writer_decodes_with_defaults() {
    // What writers before the extension left on the device: the 512-byte base header (dump
    // at 1 MiB), zeros after it.
    let mut old = complete();
    old.dump_offset = LEGACY_DUMP_OFFSET;
    let mut block = [0u8; 4096];
    block[..512].copy_from_slice(&old.encode()[..512]);
    let h = DumpHeader::decode(&block).unwrap();
    assert_eq!(h, old);
    assert_eq!(h.dump_offset, MIB);
    assert_eq!(h.triage_length, 0);
    assert_eq!((h.dump_level_requested, h.dump_level), (0, 0));
    assert_eq!(h.compression, Compression::None);
    assert_eq!(h.level_note(), "");
    assert_eq!((h.pages_ram, h.pages_dumped), (0, 0));
}

#[test]
fn base_header_still_reads_as_the_first_layout() {
    // An older reader checks magic, version 1, length 512 and the CRC at 508 over 0..508: a
    // new header passes all four whatever the extension holds.
    let b = kdump().encode();
    assert_eq!(&b[..8], &MAGIC);
    assert_eq!(b[8..12], 1u32.to_le_bytes());
    assert_eq!(b[12..16], 512u32.to_le_bytes());
    assert_eq!(u32_at(&b, 508), crc32(&b[..508]));
}

#[test]
fn damaged_extension_is_refused() {
    let good = kdump().encode();
    for pos in [520, 528, 600, 711, 800, 1019, 1020, 1023] {
        let mut b = good;
        b[pos] ^= 0x10;
        assert!(
            matches!(
                DumpHeader::decode(&b),
                Err(HeaderError::BadExtensionCrc { .. })
            ),
            "flip at {pos}"
        );
    }
    let mut b = good;
    b[600] ^= 1;
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::BadExtensionCrc {
            stored: u32_at(&good, 1020),
            computed: crc32(&b[512..1020]),
        })
    );
    // Wrong magic, even with a matching CRC.
    let mut b = good;
    b[512] = b'X';
    reseal_extension(&mut b);
    assert_eq!(DumpHeader::decode(&b), Err(HeaderError::BadExtensionMagic));
    // A single stray byte in an otherwise zero extension is not "an older writer".
    let mut b = complete().encode();
    b[512..].fill(0);
    b[700] = 1;
    assert_eq!(DumpHeader::decode(&b), Err(HeaderError::BadExtensionMagic));
    assert!(HeaderError::BadExtensionMagic
        .to_string()
        .contains("extension"));
    assert!(HeaderError::BadExtensionCrc {
        stored: 1,
        computed: 2
    }
    .to_string()
    .contains("extension checksum"));
}

#[test]
fn unknown_compression_is_refused() {
    let mut b = kdump().encode();
    b[524..528].copy_from_slice(&3u32.to_le_bytes());
    reseal_extension(&mut b);
    assert_eq!(
        DumpHeader::decode(&b),
        Err(HeaderError::UnknownCompression { raw: 3 })
    );
    assert!(HeaderError::UnknownCompression { raw: 3 }
        .to_string()
        .contains("unknown compression 3"));
}

#[test]
fn compression_names_and_values_are_stable() {
    for c in [Compression::None, Compression::Zlib, Compression::Lzo] {
        assert_eq!(Compression::from_raw(c.to_raw()), Some(c));
    }
    assert_eq!(Compression::None.to_raw(), 0);
    assert_eq!(Compression::Zlib.to_raw(), 1);
    assert_eq!(Compression::Lzo.to_raw(), 2);
    assert_eq!(Compression::from_raw(3), None);
    assert_eq!(Compression::None.to_string(), "none");
    assert_eq!(Compression::Zlib.to_string(), "zlib");
    assert_eq!(Compression::Lzo.as_str(), "lzo");
    assert_eq!(Compression::default(), Compression::None);
    let h = DumpHeader::new_empty(ID, MIN_CAPACITY, "x");
    assert_eq!(h.compression, Compression::None);
    assert_eq!((h.triage_length, h.dump_level, h.pages_ram), (0, 0, 0));
}

#[test]
fn triage_length_is_bounded_and_needs_its_area() {
    let mut h = kdump();
    h.triage_length = u32::try_from(TRIAGE_CAPACITY).unwrap();
    assert_eq!(DumpHeader::decode(&h.encode()), Ok(h.clone()));
    h.triage_length += 1;
    inconsistent(&h);
    // The triage area lies where older writers put the dump: both cannot be there.
    let mut h = kdump();
    h.dump_offset = LEGACY_DUMP_OFFSET;
    inconsistent(&h);
    h.triage_length = 0;
    assert_eq!(h.validate(), Ok(()));
}

#[test]
fn dump_levels_are_bounded() {
    let mut h = kdump();
    h.dump_level_requested = 32;
    inconsistent(&h);
    let mut h = kdump();
    h.dump_level = 32;
    inconsistent(&h);
    let mut h = kdump();
    h.dump_level = 31;
    assert_eq!(h.validate(), Ok(()));
}

#[test]
fn level_note_is_text_of_160_bytes() {
    let mut h = complete();
    assert_eq!(h.level_note(), "");
    h.set_level_note(&"n".repeat(200));
    assert_eq!(h.level_note().len(), LEVEL_NOTE_LEN);
    h.set_level_note("short");
    assert_eq!(h.level_note(), "short");
    assert_eq!(&h.level_note[..6], b"short\0");
}

#[test]
fn saved_time_round_trips_at_its_offset() {
    let mut h = kdump();
    h.saved_time = 1_790_000_000;
    let b = h.encode();
    assert_eq!(b[712..720], 1_790_000_000i64.to_le_bytes());
    assert!(b[720..1020].iter().all(|&x| x == 0));
    let back = DumpHeader::decode(&b).unwrap();
    assert_eq!(back.saved_time, 1_790_000_000);
    assert!(back.is_saved());
    assert_eq!(back, h);
}

#[test]
fn headers_before_the_saved_field_read_as_not_saved() {
    // An older writer: extension all zero, or an extension whose reserved bytes are zero.
    let mut b = complete().encode();
    b[512..].fill(0);
    assert_eq!(DumpHeader::decode(&b).unwrap().saved_time, 0);
    let b = kdump().encode();
    let h = DumpHeader::decode(&b).unwrap();
    assert!(!h.is_saved());
    assert!(h.holds_unsaved_dump());
}

#[test]
fn which_headers_hold_an_unsaved_dump() {
    let mut h = complete();
    assert!(h.holds_unsaved_dump(), "complete, not saved");
    h.saved_time = 1;
    assert!(!h.holds_unsaved_dump(), "complete and saved");
    // A partial dump (the capture stopped part way) is a dump too.
    for state in [DumpState::Writing, DumpState::Failed] {
        let mut h = complete();
        h.state = state;
        h.written = 4 << 20;
        assert!(h.holds_unsaved_dump(), "{state}");
        // A capture that confirmed no byte of the dump left nothing to keep.
        h.written = 0;
        h.triage_length = 4096;
        assert!(!h.holds_unsaved_dump(), "{state} with nothing written");
    }
    let empty = DumpHeader::new_empty(ID, 64 << 20, "minicap-format 0.1.0");
    assert!(!empty.holds_unsaved_dump());
    assert!(
        !empty.is_saved(),
        "a freshly formatted header is not marked saved"
    );
}

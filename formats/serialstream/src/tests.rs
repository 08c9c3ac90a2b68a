use super::*;
use xxhash_rust::xxh64::xxh64;

/// Every event of `bytes`, the way a receiver walks them.
fn events(bytes: &[u8]) -> Vec<Scan<'_>> {
    let mut out = Vec::new();
    let mut at = 0;
    loop {
        let event = scan(&bytes[at..], true);
        match event {
            Scan::Empty => return out,
            Scan::NeedMore => panic!("NeedMore at the end"),
            Scan::Frame { len, .. } | Scan::Text { len } | Scan::Damaged { len, .. } => at += len,
        }
        out.push(event);
    }
}

fn frames<'a>(events: &[Scan<'a>]) -> Vec<Frame<'a>> {
    events
        .iter()
        .filter_map(|e| match e {
            Scan::Frame { frame, .. } => Some(*frame),
            _ => None,
        })
        .collect()
}

#[test]
fn crc_is_zlibs() {
    assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
    assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
}

#[test]
fn frame_layout() {
    let mut enc = Encoder::new();
    let first = enc.frame(Kind::Triage, &[b"ab", b"c"]).unwrap().to_vec();
    assert_eq!(&first[..4], b"MCSF");
    assert_eq!(first[4], 2);
    assert_eq!(first[5], 0);
    assert_eq!(&first[6..8], &3u16.to_le_bytes());
    assert_eq!(&first[8..12], &0u32.to_le_bytes());
    assert_eq!(&first[12..15], b"abc");
    assert_eq!(&first[15..], &crc32(&[&first[4..15]]).to_le_bytes());
    let second = enc.frame(Kind::Log, &[]).unwrap().to_vec();
    assert_eq!(&second[8..12], &1u32.to_le_bytes());
    assert_eq!(enc.frames(), 2);
}

#[test]
fn data_count_and_hash_cover_data_payloads_only() {
    let mut enc = Encoder::new();
    enc.frame(Kind::Triage, &[b"text"]).unwrap();
    enc.frame(Kind::Data, &[&7u64.to_le_bytes(), b"xyz"])
        .unwrap();
    enc.frame(Kind::Data, &[&0u64.to_le_bytes(), b"q"]).unwrap();
    let mut all = Vec::new();
    all.extend_from_slice(&7u64.to_le_bytes());
    all.extend_from_slice(b"xyz");
    all.extend_from_slice(&0u64.to_le_bytes());
    all.extend_from_slice(b"q");
    assert_eq!(enc.data_records(), 2);
    assert_eq!(enc.data_xxh64(), xxh64(&all, 0));
}

#[test]
fn payload_limit() {
    let mut enc = Encoder::new();
    let block = [0u8; 4096];
    assert!(enc.frame(Kind::Data, &[&[0; 8], &block]).is_ok());
    assert_eq!(
        enc.frame(Kind::Data, &[&[0; 9], &block]).unwrap_err(),
        FrameError::PayloadTooLong { len: 4105 }
    );
    // A refused frame uses no sequence number.
    assert_eq!(enc.frames(), 1);
}

#[test]
fn frames_between_console_text() {
    let mut enc = Encoder::new();
    let mut wire = b"minicap: starting\r\nMagic M and MCS are text\r\n".to_vec();
    wire.extend_from_slice(enc.frame(Kind::Triage, &[b"log"]).unwrap());
    wire.extend_from_slice(b"minicap: 10% of memory\r\n");
    wire.extend_from_slice(enc.frame(Kind::Data, &[&[1; 8], b"page"]).unwrap());
    wire.extend_from_slice(b"M");
    let events = events(&wire);
    let got = frames(&events);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0].kind, got[0].seq, got[0].payload),
        (Kind::Triage, 0, &b"log"[..])
    );
    assert_eq!((got[1].kind, got[1].seq), (Kind::Data, 1));
    let mut text = Vec::new();
    let mut at = 0;
    for e in &events {
        match e {
            Scan::Text { len } => text.extend_from_slice(&wire[at..at + len]),
            Scan::Damaged { .. } => panic!("no damage expected: {e:?}"),
            _ => {}
        }
        at += match e {
            Scan::Frame { len, .. } | Scan::Text { len } | Scan::Damaged { len, .. } => *len,
            _ => 0,
        };
    }
    assert_eq!(
        text,
        b"minicap: starting\r\nMagic M and MCS are text\r\nminicap: 10% of memory\r\nM"
    );
}

#[test]
fn a_corrupted_frame_is_named_and_the_next_one_found() {
    let mut enc = Encoder::new();
    let mut wire = enc.frame(Kind::Data, &[&[0; 8], b"one"]).unwrap().to_vec();
    let second_at = wire.len();
    wire.extend_from_slice(enc.frame(Kind::Data, &[&[0; 8], b"two"]).unwrap());
    wire.extend_from_slice(enc.frame(Kind::Data, &[&[0; 8], b"three"]).unwrap());
    wire[second_at + HEADER_LEN + 9] ^= 0x20;
    let events = events(&wire);
    assert!(events.contains(&Scan::Damaged {
        damage: Damage::BadCrc,
        claimed_seq: Some(1),
        len: 4
    }));
    let seqs: Vec<u32> = frames(&events).iter().map(|f| f.seq).collect();
    assert_eq!(seqs, [0, 2]);
}

#[test]
fn a_frame_cut_short() {
    let mut enc = Encoder::new();
    let wire = enc
        .frame(Kind::Log, &[b"the end of the log"])
        .unwrap()
        .to_vec();
    let cut = &wire[..wire.len() - 3];
    assert_eq!(scan(cut, false), Scan::NeedMore);
    assert_eq!(
        scan(cut, true),
        Scan::Damaged {
            damage: Damage::Truncated,
            claimed_seq: Some(0),
            len: 4
        }
    );
    assert_eq!(scan(&wire[..2], false), Scan::NeedMore);
    assert_eq!(scan(&wire[..2], true), Scan::Text { len: 2 });
}

#[test]
fn an_impossible_header() {
    let mut wire = b"MCSF".to_vec();
    wire.extend_from_slice(&[9, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(matches!(
        scan(&wire, true),
        Scan::Damaged {
            damage: Damage::BadHeader,
            len: 4,
            ..
        }
    ));
}

#[test]
fn start_and_end_round_trip() {
    let start = Start {
        format: StreamFormat::KdumpCompressed,
        page_size: 4096,
        crash_time: 1_700_000_000,
        planned_size: 0,
    };
    assert_eq!(Start::decode(&start.encode()), Ok(start));
    let mut bad = start.encode();
    bad[0] = 2;
    assert_eq!(Start::decode(&bad), Err(PayloadError::UnknownVersion(2)));
    let end = End {
        result: EndResult::Failed,
        failure_code: 17,
        file_size: 1 << 30,
        data_records: 1234,
        data_xxh64: 0xdead_beef,
        message: "the serial port stalled",
    };
    let mut buf = [0u8; END_FIXED_LEN + END_MESSAGE_MAX];
    let n = end.encode(&mut buf);
    assert_eq!(End::decode(&buf[..n]), Ok(end));
    let long = "é".repeat(200);
    let n = End {
        message: &long,
        ..end
    }
    .encode(&mut buf);
    let decoded = End::decode(&buf[..n]).unwrap();
    assert_eq!(decoded.message.len(), 256);
    assert!(End::decode(&buf[..20]).is_err());
    assert_eq!(
        Data::decode(&[5, 0, 0, 0, 0, 0, 0, 0, 1, 2]),
        Ok(Data {
            offset: 5,
            bytes: &[1, 2]
        })
    );
}

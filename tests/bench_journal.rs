//! Journal size budget (issue "Ship to ARM gateways"): the checkpoint journal of a 10,000-part
//! upload, encoded with the real encoder (`ossup::proto::checkpoint`), must stay under 1 MiB so
//! that it fits comfortably on a gateway's flash and replays in one small read.
//!
//! Run by `tests/bench/budgets.sh` as
//! `cargo test --test bench_journal -- --nocapture`, which prints the sizes; plain `cargo test`
//! checks the budget too (it takes milliseconds).

use ossup::proto::checkpoint::{encode_journal, encode_record, replay, Etag, Identity, Record};

/// Most parts a multipart upload may have (OSS and S3).
const MAX_PARTS: u32 = 10_000;
/// The budget for a whole 10,000-part journal.
const BUDGET: usize = 1 << 20;

/// A long but realistic identity: a 255-byte path, an HTTPS endpoint with a long host name and
/// port, a 63-character bucket, a 1023-byte key (the OSS maximum) and extreme file metadata.
fn worst_identity(part_size: u64) -> Identity {
    Identity {
        path: format!("/{}", "p".repeat(254)),
        endpoint: format!(
            "https://{}.example-region.aliyuncs.com:65535",
            "h".repeat(40)
        ),
        bucket: "b".repeat(63),
        key: "k".repeat(1023),
        scheme: 1,
        file_len: u64::from(MAX_PARTS) * part_size,
        mtime_ns: i128::from(i64::MAX) * 1_000_000_000,
        inode: u64::MAX,
        part_size,
    }
}

/// The largest `PartDone` a server that returns MD5 ETags can cause: quoted upper-case ETag,
/// a CRC-64 with all bits set (10-byte varint), a 5 GiB part length.
fn worst_md5_part(n: u32) -> Record {
    Record::PartDone {
        n,
        etag: Etag::from_text("\"0123456789ABCDEF0123456789ABCDEF\""),
        crc64: u64::MAX,
        len: 5 << 30,
    }
}

/// A `PartDone` whose ETag is not an MD5 (kept verbatim): a 64-hex-digit quoted string, as a
/// server that returns SHA-256 ETags would send.
fn text_etag_part(n: u32) -> Record {
    Record::PartDone {
        n,
        etag: Etag::from_text(&format!("\"{}\"", "a".repeat(64))),
        crc64: u64::MAX,
        len: 5 << 30,
    }
}

fn started() -> Record {
    // OSS upload ids are 32 hex digits; S3's can be far longer. 200 bytes covers both.
    Record::Started {
        upload_id: "U".repeat(200),
    }
}

fn framed_len(record: &Record) -> usize {
    let mut out = Vec::new();
    encode_record(record, &mut out);
    out.len()
}

/// Encodes a 10,000-part journal with `part` records, checks that it replays to exactly the
/// records written, and returns its size.
fn journal_size(part: fn(u32) -> Record) -> usize {
    let identity = worst_identity(5 << 30);
    let mut records = vec![Record::ClockOffset { secs: -86_400 }, started()];
    records.extend((1..=MAX_PARTS).map(part));
    records.push(Record::Completing);
    let bytes = encode_journal(&identity, &records);
    let replayed = replay(&bytes).expect("the encoded journal replays");
    assert_eq!(replayed.identity, identity);
    assert_eq!(replayed.records, records, "replay gives back every record");
    assert_eq!(
        replayed.valid_len,
        bytes.len(),
        "no byte is dropped as a torn tail"
    );
    bytes.len()
}

#[test]
fn ten_thousand_part_journal_fits_the_budget() {
    let header = encode_journal(&worst_identity(5 << 30), &[]).len();
    let md5_record = framed_len(&worst_md5_part(MAX_PARTS));
    let text_record = framed_len(&text_etag_part(MAX_PARTS));
    let md5_total = journal_size(worst_md5_part);
    let text_total = journal_size(text_etag_part);

    println!("journal header (worst-case identity, 1023-byte key): {header} bytes");
    println!("PartDone record, MD5 ETag (worst case): {md5_record} bytes");
    println!("PartDone record, 66-byte text ETag: {text_record} bytes");
    println!(
        "10,000-part journal, MD5 ETags: {md5_total} bytes ({:.1} KiB) {}",
        md5_total as f64 / 1024.0,
        if md5_total < BUDGET {
            "PASS (< 1 MiB)"
        } else {
            "MISS (>= 1 MiB)"
        }
    );
    println!(
        "10,000-part journal, 66-byte text ETags: {text_total} bytes ({:.1} KiB) {}",
        text_total as f64 / 1024.0,
        if text_total < BUDGET {
            "PASS (< 1 MiB)"
        } else {
            "MISS (>= 1 MiB)"
        }
    );

    // The module documentation promises at most 44 framed bytes per MD5 PartDone.
    assert!(
        md5_record <= 44,
        "MD5 PartDone record is {md5_record} bytes, documented <= 44"
    );
    assert!(
        md5_total < BUDGET,
        "10,000-part journal is {md5_total} bytes"
    );
    assert!(
        text_total < BUDGET,
        "10,000-part journal with text ETags is {text_total} bytes"
    );
    // Every part costs exactly one record: the total is the header, the fixed records and
    // 10,000 records of the measured size.
    let fixed = framed_len(&Record::ClockOffset { secs: -86_400 })
        + framed_len(&started())
        + framed_len(&Record::Completing);
    let mut expected = header + fixed;
    for n in 1..=MAX_PARTS {
        expected += framed_len(&worst_md5_part(n));
    }
    assert_eq!(md5_total, expected);
}

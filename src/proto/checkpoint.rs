//! The checkpoint journal format: a header naming what is being uploaded, then append-only,
//! individually framed records.
//!
//! Owns: encoding and replaying the format. Must not: open, fsync, truncate or rename files
//! (that is `io::journal`), or decide what a replay means for the upload (that is `upload`).
//!
//! **Never holds a secret.** No field of [`Identity`] or [`Record`] carries credentials: the
//! identity is endpoint, bucket, key, scheme and file metadata; records carry upload ids,
//! part numbers, ETags, CRCs, lengths and a clock offset. An upload id is not a credential
//! (every request that uses it is signed). The endpoint is stored as configured, so it must
//! not contain user-info (`user:password@`): configuration validation has to reject that.
//!
//! # Byte layout (format version 2; version 1 differs only in the version byte)
//!
//! All fixed-width integers are **little-endian**. "CRC-32" is CRC-32/ISO-HDLC (the zlib /
//! Ethernet CRC: reflected polynomial `0xEDB88320`, init and xorout `0xFFFFFFFF`) as computed
//! by [`crc32`]; `crc32(b"123456789") == 0xCBF43926`.
//!
//! A journal is one header followed by zero or more record frames, with nothing in between
//! and nothing after:
//!
//! ```text
//! journal = header frame*
//! ```
//!
//! ## Header
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 6 | magic [`MAGIC`], ASCII `OSSUPJ` = `4F 53 53 55 50 4A` |
//! | 6 | 1 | format version: [`VERSION`] = `02` written; `01` still read |
//! | 7 | 4 | `L`, u32: length of the identity payload, `1..=`[`MAX_PAYLOAD_LEN`] |
//! | 11 | `L` | the identity payload: `postcard(Identity)`, see below |
//! | 11 + `L` | 4 | u32: CRC-32 of bytes `0 .. 11 + L` (magic, version, `L` and payload) |
//!
//! The header is `15 + L` bytes. It is written once, atomically (temp file + rename, by
//! `io::journal`), so any damage to it is corruption, not a torn write.
//!
//! [`replay`] checks, in this order: at least 6 bytes and the magic (else
//! [`CheckpointError::NotAJournal`]); **then the version byte, before anything else**: a
//! version above [`VERSION`] gives [`CheckpointError::NewerVersion`] however the rest looks (a
//! newer format may lay out its header differently), and version 0 or a missing byte gives
//! `NotAJournal` (versions [`OLDEST_VERSION`]`..=`[`VERSION`] are read); then `L` in range, all `15 + L` bytes present, the CRC, and a payload that
//! decodes to exactly one canonical `Identity` (else `NotAJournal`).
//!
//! ## Record frame
//!
//! | offset | size | content |
//! |---|---|---|
//! | 0 | 4 | `N`, u32: length of the record payload, `1..=`[`MAX_PAYLOAD_LEN`] |
//! | 4 | `N` | the record payload: `postcard(Record)`, see below |
//! | 4 + `N` | 4 | u32: CRC-32 of bytes `0 .. 4 + N` of the frame (the length field and payload) |
//!
//! A frame is `8 + N` bytes. [`replay`] accepts frames one after another and stops at the
//! first frame that is incomplete (torn write), has `N` out of range, fails its CRC, or whose
//! payload does not decode to exactly one canonical `Record` (trailing bytes, non-minimal
//! varints or an `Etag::Md5` with unknown flag bits all count as corrupt). That frame and
//! everything after it are dropped: [`Replay::valid_len`] is the header length plus the
//! lengths of the accepted frames, and the caller truncates the file there before appending.
//! A bad tail is never an error. Covering the length field with the CRC means a damaged
//! length is caught, instead of shifting every later frame boundary.
//!
//! ## Payload encoding (postcard 1)
//!
//! Payloads use the [postcard](https://postcard.jamesmunns.com/wire-format) wire format:
//!
//! * `u8`: one raw byte.
//! * `u32`, `u64`: unsigned LEB128 varint (7 bits per byte, least significant group first,
//!   high bit set on every byte but the last): `300` is `AC 02`; at most 5 / 10 bytes.
//! * `i64`, `i128`: zigzag (`0, -1, 1, -2, ...` map to `0, 1, 2, 3, ...`), then a varint; at
//!   most 10 / 19 bytes.
//! * `String`: varint byte length, then that many UTF-8 bytes.
//! * `[u8; 16]`: 16 raw bytes, no length.
//! * struct, or struct-like enum variant: the fields in declaration order, nothing between.
//! * enum: varint variant index (0-based, declaration order), then the variant's fields.
//!
//! `Identity` (a struct): `path` String (the file's absolute path as ossup spelled it),
//! `endpoint` String, `bucket` String, `key` String, `scheme` u8,
//! `file_len` u64 varint, `mtime_ns` i128 zigzag varint, `inode` u64 varint, `part_size` u64
//! varint.
//!
//! `Record` (an enum):
//!
//! | index | variant | fields after the index byte |
//! |---|---|---|
//! | `00` | `Started` | `upload_id` String |
//! | `01` | `PartDone` | `n` u32 varint, `etag` Etag, `crc64` u64 varint, `len` u64 varint |
//! | `02` | `Completing` | none |
//! | `03` | `ClockOffset` | `secs` i64 zigzag varint |
//! | `04` | `AbortPending` | `upload_id` String |
//! | `05` | `Aborted` | `upload_id` String |
//! | `06` | `Initiating` | none (added with version 2; builds that wrote it under version 1 exist, so a v1 reader of this build accepts it too) |
//!
//! `Etag` (an enum): `00` `Md5` = 16 raw digest bytes then the `flags` byte (bit 0: the text
//! was upper-case hex; bit 1: it was in double quotes; other bits must be 0); `01` `Text` =
//! String. See [`Etag::from_text`].
//!
//! A `PartDone` with an MD5 ETag is at most `1 + 2 + 18 + 10 + 5 = 36` payload bytes for
//! `n <= 10_000` and `len <= 5 GiB`, so at most **44 bytes** framed.
//!
//! ## Example
//!
//! `PartDone { n: 3, etag: Md5 { bytes: 00 11 22 .. ff, flags: 3 }, crc64: 300, len: 102400 }`
//! is this 33-byte frame:
//!
//! ```text
//! 19 00 00 00                 N = 25
//! 01                          Record::PartDone
//! 03                          n = 3
//! 00                          Etag::Md5
//! 00 11 22 33 44 55 66 77
//! 88 99 aa bb cc dd ee ff     digest
//! 03                          flags: upper-case, quoted
//! ac 02                       crc64 = 300
//! 80 a0 06                    len = 102400
//! f4 b5 5a a6                 CRC-32 of the 29 bytes above = 0xA65AB5F4
//! ```
//!
//! and `Completing` is `01 00 00 00 02 81 bf 4c 15`.
//!
//! ## Compatibility
//!
//! A reader of version `V` reads journals of versions `1..=V` and refuses newer ones with
//! `NewerVersion`, so that an old binary never truncates a journal it does not understand.
//! Because an unknown record variant would look like a corrupt tail (and be cut off), **any**
//! change to the payload encoding, including a new `Record` or `Etag` variant or a new field,
//! requires a new [`VERSION`].

use serde::{Deserialize, Serialize};

/// Magic bytes at the start of every journal.
pub const MAGIC: [u8; 6] = *b"OSSUPJ";
/// The format version this build writes (and the newest it reads). Version 2 added
/// `Record::Initiating` (index 06).
pub const VERSION: u8 = 2;
/// The oldest format version this build still reads (version 1: the same layout without
/// `Initiating`; journals of builds that wrote `Initiating` under version 1 read the same).
pub const OLDEST_VERSION: u8 = 1;

/// What a journal is about: the destination and the exact local file and part size. A replay
/// whose identity differs from the current one must not be resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Absolute path of the local file (shown by `ossup status`; not a secret).
    pub path: String,
    /// Endpoint URL as configured (scheme and authority).
    pub endpoint: String,
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Signature scheme: 0 = OSS V4, 1 = S3 V4.
    pub scheme: u8,
    /// File length in bytes.
    pub file_len: u64,
    /// File modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// File inode number.
    pub inode: u64,
    /// Part size in bytes.
    pub part_size: u64,
}

/// An ETag stored compactly: 16 raw bytes when it is 32 hex digits (an MD5, the usual case),
/// remembering case and quotes so that the original text comes back exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Etag {
    /// 32 hex digits. `flags` bit 0: upper-case hex; bit 1: surrounded by double quotes.
    Md5 {
        /// The digest bytes.
        bytes: [u8; 16],
        /// Case and quote flags.
        flags: u8,
    },
    /// Anything else, verbatim.
    Text(String),
}

impl Etag {
    /// Stores `s` compactly: exactly 32 hex digits, all lower-case or all upper-case (digits
    /// alone count as lower-case), optionally inside one pair of double quotes, become
    /// [`Etag::Md5`]; anything else (including mixed-case hex) is kept as [`Etag::Text`].
    /// [`to_text`](Etag::to_text) gives `s` back exactly, for every string.
    pub fn from_text(s: &str) -> Etag {
        let (inner, quoted) = match s.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
            Some(inner) => (inner, true),
            None => (s, false),
        };
        let raw = inner.as_bytes();
        if raw.len() != 32 {
            return Etag::Text(s.to_owned());
        }
        let has_lower = raw.iter().any(|b| matches!(b, b'a'..=b'f'));
        let has_upper = raw.iter().any(|b| matches!(b, b'A'..=b'F'));
        if has_lower && has_upper {
            return Etag::Text(s.to_owned());
        }
        let mut bytes = [0u8; 16];
        for (out, pair) in bytes.iter_mut().zip(raw.chunks_exact(2)) {
            match (hex_value(pair[0]), hex_value(pair[1])) {
                (Some(hi), Some(lo)) => *out = (hi << 4) | lo,
                _ => return Etag::Text(s.to_owned()),
            }
        }
        let mut flags = 0;
        if has_upper {
            flags |= ETAG_UPPER;
        }
        if quoted {
            flags |= ETAG_QUOTED;
        }
        Etag::Md5 { bytes, flags }
    }

    /// The original text.
    pub fn to_text(&self) -> String {
        match self {
            Etag::Text(s) => s.clone(),
            Etag::Md5 { bytes, flags } => {
                let digits: &[u8; 16] = if flags & ETAG_UPPER != 0 {
                    b"0123456789ABCDEF"
                } else {
                    b"0123456789abcdef"
                };
                let quoted = flags & ETAG_QUOTED != 0;
                let mut out = String::with_capacity(34);
                if quoted {
                    out.push('"');
                }
                for b in bytes {
                    out.push(char::from(digits[usize::from(b >> 4)]));
                    out.push(char::from(digits[usize::from(b & 0x0f)]));
                }
                if quoted {
                    out.push('"');
                }
                out
            }
        }
    }
}

/// [`Etag::Md5`] flag: the digits were upper-case.
const ETAG_UPPER: u8 = 1;
/// [`Etag::Md5`] flag: the text was surrounded by double quotes.
const ETAG_QUOTED: u8 = 2;

/// The value of one ASCII hex digit.
fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// A multipart upload was initiated.
    Started {
        /// Upload id.
        upload_id: String,
    },
    /// The server acknowledged part `n`.
    PartDone {
        /// Part number.
        n: u32,
        /// ETag the server returned.
        etag: Etag,
        /// CRC-64 of the part's bytes.
        crc64: u64,
        /// Part length.
        len: u64,
    },
    /// CompleteMultipartUpload is about to be sent.
    Completing,
    /// Clock correction learned from the server, in seconds (server minus local).
    ClockOffset {
        /// Seconds to add to the local clock.
        secs: i64,
    },
    /// An upload that must be aborted (abandoned by an identity change).
    AbortPending {
        /// Upload id.
        upload_id: String,
    },
    /// A pending abort succeeded (or the upload was already gone).
    Aborted {
        /// Upload id.
        upload_id: String,
    },
    /// InitiateMultipartUpload is about to be sent (or was sent and its answer lost). Two of
    /// these, or one without a later `Started`, mean the server may hold an upload this journal
    /// never learned the id of: the next run sweeps ListMultipartUploads for the key.
    Initiating,
}

/// Why a journal cannot be used at all (a torn *tail* is not an error: see [`Replay::valid_len`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointError {
    /// Not an ossup journal (bad magic), or its header is corrupt or truncated.
    NotAJournal,
    /// Written by a newer format version.
    NewerVersion(u8),
}

/// The result of replaying a journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    /// The header's identity.
    pub identity: Identity,
    /// Every intact record, in order, up to the first torn or corrupt frame.
    pub records: Vec<Record>,
    /// Bytes of the journal that are intact (header plus `records`); the rest is to be cut off.
    pub valid_len: usize,
}

/// Largest identity or record payload (`L` or `N` in the layout): 64 KiB. Longer length
/// fields are treated as garbage, which keeps a damaged length from claiming the whole file.
/// Real payloads are far smaller (an object key is at most 1023 bytes, upload ids and ETags
/// come from bounded server responses).
pub const MAX_PAYLOAD_LEN: usize = 64 * 1024;

/// Size of a length field and of a CRC field.
const U32_LEN: usize = 4;

/// Lets postcard serialize straight onto the end of a caller's `Vec`.
struct Sink<'a>(&'a mut Vec<u8>);

impl Extend<u8> for Sink<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// Appends `[u32 len][postcard(value)]` to `out` and returns where the length field starts, or
/// leaves `out` unchanged and returns `None` if postcard fails (it cannot for these types).
fn push_len_prefixed<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Option<usize> {
    let start = out.len();
    out.extend_from_slice(&[0; U32_LEN]);
    if postcard::to_extend(value, Sink(out)).is_err() {
        out.truncate(start);
        return None;
    }
    let len = out.len() - start - U32_LEN;
    let Ok(len) = u32::try_from(len) else {
        out.truncate(start);
        return None;
    };
    out[start..start + U32_LEN].copy_from_slice(&len.to_le_bytes());
    Some(start)
}

/// Appends the CRC-32 of `out[from..]` to `out`.
fn push_crc(out: &mut Vec<u8>, from: usize) {
    let crc = crc32(&out[from..]);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Appends the encoded header for `identity` to `out`.
///
/// An identity whose payload exceeds [`MAX_PAYLOAD_LEN`] (impossible with a validated
/// configuration) is still written, but [`replay`] will report the journal as `NotAJournal`.
pub fn encode_header(identity: &Identity, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    if push_len_prefixed(identity, out).is_none() {
        out.truncate(start);
        return;
    }
    push_crc(out, start);
}

/// Appends one framed record to `out`.
///
/// A record whose payload exceeds [`MAX_PAYLOAD_LEN`] (only possible with an absurd upload
/// id or ETag) is still written, but [`replay`] stops there, as at a torn tail.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    if let Some(start) = push_len_prefixed(record, out) {
        push_crc(out, start);
    }
}

/// A whole journal: the header for `identity`, then every record in order. Used to rewrite a
/// journal atomically (write to a temporary file, fsync, rename).
pub fn encode_journal(identity: &Identity, records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_header(identity, &mut out);
    for record in records {
        encode_record(record, &mut out);
    }
    out
}

/// Reads a little-endian `u32` at `at`, if all four bytes are there.
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    let end = at.checked_add(U32_LEN)?;
    let field: [u8; U32_LEN] = bytes.get(at..end)?.try_into().ok()?;
    Some(u32::from_le_bytes(field))
}

/// Checks the length field and CRC of the `[u32 len][payload][u32 crc]` unit at `start` and
/// returns the payload and the offset just past the unit. `crc_from` is where the CRC's
/// coverage begins (`<= start`).
fn checked_unit(bytes: &[u8], crc_from: usize, start: usize) -> Option<(&[u8], usize)> {
    let len = usize::try_from(read_u32(bytes, start)?).ok()?;
    if len == 0 || len > MAX_PAYLOAD_LEN {
        return None;
    }
    let payload_start = start.checked_add(U32_LEN)?;
    let payload_end = payload_start.checked_add(len)?;
    let payload = bytes.get(payload_start..payload_end)?;
    let stored = read_u32(bytes, payload_end)?;
    if crc32(bytes.get(crc_from..payload_end)?) != stored {
        return None;
    }
    Some((payload, payload_end + U32_LEN))
}

/// Decodes `payload` as exactly one `T` in canonical form: no trailing bytes and no
/// alternative encodings (such as over-long varints), so each value has one byte string.
fn decode_canonical<T>(payload: &[u8]) -> Option<T>
where
    T: Serialize + serde::de::DeserializeOwned,
{
    let value: T = postcard::from_bytes(payload).ok()?;
    let mut again = Vec::with_capacity(payload.len());
    postcard::to_extend(&value, Sink(&mut again)).ok()?;
    (again == payload).then_some(value)
}

/// Whether a decoded record uses only defined values.
fn record_is_valid(record: &Record) -> bool {
    match record {
        Record::PartDone {
            etag: Etag::Md5 { flags, .. },
            ..
        } => flags & !(ETAG_UPPER | ETAG_QUOTED) == 0,
        _ => true,
    }
}

/// Parses the header; returns the identity and the header's length.
fn replay_header(bytes: &[u8]) -> Result<(Identity, usize), CheckpointError> {
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(CheckpointError::NotAJournal);
    }
    // The version byte comes before anything else: a newer format may lay out the rest of
    // its header differently.
    match bytes.get(MAGIC.len()) {
        Some(&v) if v > VERSION => return Err(CheckpointError::NewerVersion(v)),
        Some(&v) if v >= OLDEST_VERSION => {}
        _ => return Err(CheckpointError::NotAJournal),
    }
    let (payload, end) =
        checked_unit(bytes, 0, MAGIC.len() + 1).ok_or(CheckpointError::NotAJournal)?;
    let identity = decode_canonical(payload).ok_or(CheckpointError::NotAJournal)?;
    Ok((identity, end))
}

/// Replays a whole journal.
///
/// Errors only for the header ([`CheckpointError`]); record frames are accepted up to the
/// first torn or corrupt one, see the module documentation. Memory use is bounded by the
/// input: every accepted record came from at least 9 bytes of it.
pub fn replay(bytes: &[u8]) -> Result<Replay, CheckpointError> {
    let (identity, mut pos) = replay_header(bytes)?;
    let mut records = Vec::new();
    while let Some((payload, next)) = checked_unit(bytes, pos, pos) {
        match decode_canonical::<Record>(payload) {
            Some(record) if record_is_valid(&record) => records.push(record),
            _ => break,
        }
        pos = next;
    }
    Ok(Replay {
        identity,
        records,
        valid_len: pos,
    })
}

/// CRC-32/ISO-HDLC lookup table, built at compile time (1 KiB; one byte per step is plenty for
/// journal records, which are small).
const CRC32_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 == 1 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            bit += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// CRC-32/ISO-HDLC (zlib's CRC-32) of `data`.
pub fn crc32(data: &[u8]) -> u32 {
    crc32_update(0, data)
}

/// Continues the CRC-32/ISO-HDLC `crc` (0 for a fresh checksum) over `data`: gzip's trailer
/// checksum, fed in pieces.
pub fn crc32_update(crc: u32, data: &[u8]) -> u32 {
    let mut c = !crc;
    for &b in data {
        c = CRC32_TABLE[usize::from(c as u8 ^ b)] ^ (c >> 8);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identity() -> Identity {
        Identity {
            path: "/data/f".into(),
            endpoint: "https://oss-cn-hangzhou.aliyuncs.com".into(),
            bucket: "gateway-logs".into(),
            key: "site-7/2024/05/dump.tar".into(),
            scheme: 0,
            file_len: 123_456_789,
            mtime_ns: 1_715_000_000_123_456_789,
            inode: 4_242,
            part_size: 6 * 1024 * 1024,
        }
    }

    fn md5_etag(seed: u8, flags: u8) -> Etag {
        let mut bytes = [0u8; 16];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = seed.wrapping_mul(31).wrapping_add(i as u8);
        }
        Etag::Md5 { bytes, flags }
    }

    fn sample_records() -> Vec<Record> {
        vec![
            Record::Started {
                upload_id: "0004B9894A22E5B1888A1E29F823****".into(),
            },
            Record::ClockOffset { secs: -3_600 },
            Record::PartDone {
                n: 1,
                etag: md5_etag(1, 3),
                crc64: u64::MAX,
                len: 6 << 20,
            },
            Record::PartDone {
                n: 2,
                etag: Etag::Text("\"abc-2\"".into()),
                crc64: 0,
                len: 1,
            },
            Record::AbortPending {
                upload_id: "old".into(),
            },
            Record::Aborted {
                upload_id: "old".into(),
            },
            Record::Completing,
        ]
    }

    /// Offsets where each frame ends: `ends[k]` is the length of header + the first `k` frames.
    fn frame_ends(identity: &Identity, records: &[Record]) -> Vec<usize> {
        let mut out = Vec::new();
        encode_header(identity, &mut out);
        let mut ends = vec![out.len()];
        for r in records {
            encode_record(r, &mut out);
            ends.push(out.len());
        }
        ends
    }

    fn arb_etag() -> impl Strategy<Value = Etag> {
        prop_oneof![
            (any::<[u8; 16]>(), 0u8..4).prop_map(|(bytes, flags)| Etag::Md5 { bytes, flags }),
            ".{0,40}".prop_map(Etag::Text),
        ]
    }

    fn arb_record() -> impl Strategy<Value = Record> {
        prop_oneof![
            ".{0,48}".prop_map(|upload_id| Record::Started { upload_id }),
            (any::<u32>(), arb_etag(), any::<u64>(), any::<u64>()).prop_map(
                |(n, etag, crc64, len)| Record::PartDone {
                    n,
                    etag,
                    crc64,
                    len
                }
            ),
            Just(Record::Completing),
            any::<i64>().prop_map(|secs| Record::ClockOffset { secs }),
            ".{0,48}".prop_map(|upload_id| Record::AbortPending { upload_id }),
            ".{0,48}".prop_map(|upload_id| Record::Aborted { upload_id }),
            Just(Record::Initiating),
        ]
    }

    fn arb_identity() -> impl Strategy<Value = Identity> {
        (
            (".{0,40}", ".{0,20}", ".{0,60}", any::<u8>()),
            (any::<u64>(), any::<i128>(), any::<u64>(), any::<u64>()),
        )
            .prop_map(
                |((endpoint, bucket, key, scheme), (file_len, mtime_ns, inode, part_size))| {
                    Identity {
                        path: format!("/p/{bucket}"),
                        endpoint,
                        bucket,
                        key,
                        scheme,
                        file_len,
                        mtime_ns,
                        inode,
                        part_size,
                    }
                },
            )
    }

    fn assert_prefix(got: &[Record], written: &[Record]) {
        assert!(got.len() <= written.len(), "more records than written");
        assert_eq!(
            got,
            &written[..got.len()],
            "not a prefix of the written records"
        );
    }

    // ---- Etag ----

    #[test]
    fn etag_classification() {
        let lower = "0123456789abcdef0123456789abcdef";
        let upper = "0123456789ABCDEF0123456789ABCDEF";
        let digits = "01234567890123456789012345678901";
        let cases: &[(String, Option<u8>)] = &[
            (lower.into(), Some(0)),
            (upper.into(), Some(ETAG_UPPER)),
            (format!("\"{lower}\""), Some(ETAG_QUOTED)),
            (format!("\"{upper}\""), Some(ETAG_UPPER | ETAG_QUOTED)),
            (digits.into(), Some(0)),
            (format!("\"{digits}\""), Some(ETAG_QUOTED)),
            // mixed case
            ("0123456789abcdef0123456789ABCDEF".into(), None),
            ("\"0123456789Abcdef0123456789abcdef\"".into(), None),
            // wrong length, bad digits, unbalanced or extra quotes, whitespace
            (lower[..31].into(), None),
            (format!("{lower}0"), None),
            ("0123456789abcdef0123456789abcdeg".into(), None),
            (format!("\"{lower}"), None),
            (format!("{lower}\""), None),
            (format!("\"\"{lower}\"\""), None),
            (format!(" {lower}"), None),
            ("".into(), None),
            ("\"".into(), None),
            ("\"\"".into(), None),
            ("\"5d41402abc4b2a76b9719d911017c592-3\"".into(), None),
            // 32 bytes but not 32 ASCII characters
            ("é123456789abcdef0123456789abcde".into(), None),
        ];
        for (text, want_flags) in cases {
            let e = Etag::from_text(text);
            match (want_flags, &e) {
                (Some(f), Etag::Md5 { flags, .. }) => assert_eq!(flags, f, "{text}"),
                (None, Etag::Text(t)) => assert_eq!(t, text),
                _ => panic!("{text:?} classified as {e:?}"),
            }
            assert_eq!(&e.to_text(), text);
        }
        // The digest bytes are the hex value.
        assert_eq!(
            Etag::from_text("\"00112233445566778899AABBCCDDEEFF\""),
            Etag::Md5 {
                bytes: [
                    0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc,
                    0xdd, 0xee, 0xff
                ],
                flags: 3
            }
        );
    }

    proptest! {
        #[test]
        fn etag_round_trips_any_string(s in ".{0,40}") {
            prop_assert_eq!(Etag::from_text(&s).to_text(), s);
        }

        #[test]
        fn etag_round_trips_hex(
            digits in "[0-9a-fA-F]{32}",
            quoted in any::<bool>(),
        ) {
            let text = if quoted { format!("\"{digits}\"") } else { digits.clone() };
            let e = Etag::from_text(&text);
            prop_assert_eq!(e.to_text(), text.clone());
            let lower = digits.bytes().any(|b| b.is_ascii_lowercase());
            let upper = digits.bytes().any(|b| b.is_ascii_uppercase());
            match e {
                Etag::Md5 { flags, .. } => {
                    prop_assert!(!(lower && upper));
                    prop_assert_eq!(flags & ETAG_UPPER != 0, upper);
                    prop_assert_eq!(flags & ETAG_QUOTED != 0, quoted);
                }
                Etag::Text(t) => {
                    prop_assert!(lower && upper);
                    prop_assert_eq!(t, text);
                }
            }
        }

        #[test]
        fn etag_md5_round_trips(bytes in any::<[u8; 16]>(), flags in 0u8..4) {
            let e = Etag::Md5 { bytes, flags };
            prop_assert_eq!(Etag::from_text(&e.to_text()), e);
        }
    }

    // ---- encoding ----

    #[test]
    fn round_trip() {
        let id = identity();
        let records = sample_records();
        let bytes = encode_journal(&id, &records);
        let replay = replay(&bytes).unwrap();
        assert_eq!(replay.identity, id);
        assert_eq!(replay.records, records);
        assert_eq!(replay.valid_len, bytes.len());

        let empty = encode_journal(&id, &[]);
        let r = super::replay(&empty).unwrap();
        assert!(r.records.is_empty());
        assert_eq!(r.valid_len, empty.len());
        assert!(bytes.starts_with(&empty));
    }

    #[test]
    fn header_layout() {
        let id = identity();
        let mut h = Vec::new();
        encode_header(&id, &mut h);
        let payload = postcard::to_allocvec(&id).unwrap();
        assert_eq!(&h[..6], b"OSSUPJ");
        assert_eq!(h[6], 2);
        assert_eq!(&h[7..11], &(payload.len() as u32).to_le_bytes());
        assert_eq!(&h[11..11 + payload.len()], &payload[..]);
        let crc = crc32fast::hash(&h[..11 + payload.len()]);
        assert_eq!(&h[11 + payload.len()..], &crc.to_le_bytes());
        assert_eq!(h.len(), 15 + payload.len());
        // encode_header appends rather than overwrites.
        let mut prefixed = vec![9, 9];
        encode_header(&id, &mut prefixed);
        assert_eq!(&prefixed[2..], &h[..]);
    }

    #[test]
    fn documented_example_frames() {
        // Built by hand from the layout in the module documentation.
        let mut payload = vec![0x01, 0x03, 0x00];
        payload.extend((0..16u8).map(|i| i * 0x11));
        payload.extend([0x03, 0xac, 0x02, 0x80, 0xa0, 0x06]);
        let mut frame = (payload.len() as u32).to_le_bytes().to_vec();
        frame.extend(&payload);
        let crc = crc32fast::hash(&frame);
        frame.extend(crc.to_le_bytes());
        assert_eq!(frame.len(), 33);
        assert_eq!(crc, 0xA65A_B5F4);

        let record = Record::PartDone {
            n: 3,
            etag: Etag::from_text("\"00112233445566778899AABBCCDDEEFF\""),
            crc64: 300,
            len: 102_400,
        };
        let mut out = Vec::new();
        encode_record(&record, &mut out);
        assert_eq!(out, frame);

        let mut out = Vec::new();
        encode_record(&Record::Completing, &mut out);
        assert_eq!(out, [0x01, 0, 0, 0, 0x02, 0x81, 0xbf, 0x4c, 0x15]);
        assert_eq!(crc32fast::hash(&out[..5]).to_le_bytes(), out[5..]);
    }

    #[test]
    fn part_done_worst_case_fits_in_64_bytes() {
        let worst = Record::PartDone {
            n: 10_000,
            etag: Etag::Md5 {
                bytes: [0xff; 16],
                flags: 3,
            },
            crc64: u64::MAX,
            len: 5 * 1024 * 1024 * 1024,
        };
        let mut out = Vec::new();
        encode_record(&worst, &mut out);
        assert!(out.len() <= 64, "{} bytes", out.len());
        assert_eq!(out.len(), 44);
    }

    proptest! {
        #[test]
        fn part_done_always_fits_in_64_bytes(
            n in 1u32..=10_000,
            bytes in any::<[u8; 16]>(),
            flags in 0u8..4,
            crc64 in any::<u64>(),
            len in 0u64..=5 * 1024 * 1024 * 1024,
        ) {
            let mut out = Vec::new();
            encode_record(&Record::PartDone { n, etag: Etag::Md5 { bytes, flags }, crc64, len }, &mut out);
            prop_assert!(out.len() <= 64);
        }

        #[test]
        fn round_trips_random(id in arb_identity(), records in proptest::collection::vec(arb_record(), 0..12)) {
            let bytes = encode_journal(&id, &records);
            let r = replay(&bytes).unwrap();
            prop_assert_eq!(r.identity, id);
            prop_assert_eq!(r.records, records);
            prop_assert_eq!(r.valid_len, bytes.len());
        }

        /// `replay(encode(records)[..t])` is exactly the records whose frames fit in `t`.
        #[test]
        fn truncation_at_every_offset(
            id in arb_identity(),
            records in proptest::collection::vec(arb_record(), 0..10),
        ) {
            let bytes = encode_journal(&id, &records);
            let ends = frame_ends(&id, &records);
            prop_assert_eq!(*ends.last().unwrap(), bytes.len());
            for t in 0..=bytes.len() {
                let got = replay(&bytes[..t]);
                if t < ends[0] {
                    prop_assert_eq!(got, Err(CheckpointError::NotAJournal));
                    continue;
                }
                let got = got.unwrap();
                let k = ends.iter().rposition(|&e| e <= t).unwrap();
                prop_assert_eq!(&got.identity, &id);
                prop_assert_eq!(&got.records[..], &records[..k]);
                prop_assert_eq!(got.valid_len, ends[k]);
            }
        }
    }

    /// "Also fix" of issue 10: `Initiating` came with a format bump; journals of version 1
    /// (same layout, possibly holding `Initiating` from the build that added it unbumped) are
    /// still read.
    #[test]
    fn version_2_is_written_and_version_1_journals_are_still_read() {
        let id = identity();
        let records = vec![
            Record::Initiating,
            Record::Started {
                upload_id: "U".into(),
            },
        ];
        let bytes = encode_journal(&id, &records);
        assert_eq!(bytes[6], 2, "Initiating exists since format 2");
        // The same journal as the unbumped build wrote it: version byte 1, header CRC over it.
        let mut v1 = bytes.clone();
        v1[6] = 1;
        let hlen = 15 + u32::from_le_bytes(v1[7..11].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&v1[..hlen - 4]);
        v1[hlen - 4..hlen].copy_from_slice(&crc.to_le_bytes());
        let r = replay(&v1).expect("a version 1 journal is read");
        assert_eq!(r.identity, id);
        assert_eq!(r.records, records);
    }

    /// The documented identity layout starts with `path`: the doc matches the bytes.
    #[test]
    fn identity_payload_begins_with_the_path_as_documented() {
        let id = identity();
        let payload = postcard::to_allocvec(&id).unwrap();
        assert_eq!(payload[0] as usize, id.path.len());
        assert_eq!(&payload[1..1 + id.path.len()], id.path.as_bytes());
    }

    // ---- damage ----

    /// Every single bit flip anywhere: header damage is an error, record damage drops exactly
    /// the damaged frame and everything after it.
    #[test]
    fn every_single_bit_flip() {
        let id = identity();
        let records = sample_records();
        let bytes = encode_journal(&id, &records);
        let ends = frame_ends(&id, &records);
        for byte in 0..bytes.len() {
            for bit in 0..8 {
                let mut damaged = bytes.clone();
                damaged[byte] ^= 1 << bit;
                let got = replay(&damaged);
                if byte < ends[0] {
                    let want = if byte == 6 && damaged[6] > VERSION {
                        CheckpointError::NewerVersion(damaged[6])
                    } else {
                        CheckpointError::NotAJournal
                    };
                    assert_eq!(got, Err(want), "byte {byte} bit {bit}");
                } else {
                    let got = got.unwrap();
                    // The frame holding `byte` is frame k (0-based); frames 0..k survive.
                    let k = ends.iter().rposition(|&e| e <= byte).unwrap();
                    assert_eq!(got.identity, id);
                    assert_eq!(got.records, &records[..k], "byte {byte} bit {bit}");
                    assert_eq!(got.valid_len, ends[k]);
                }
            }
        }
    }

    proptest! {
        #[test]
        fn random_bit_flips_never_invent_records(
            id in arb_identity(),
            records in proptest::collection::vec(arb_record(), 0..10),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..8), 1..8),
        ) {
            let mut bytes = encode_journal(&id, &records);
            let ends = frame_ends(&id, &records);
            let mut first = usize::MAX;
            let original = bytes.clone();
            for (at, bit) in &flips {
                let i = at.index(bytes.len());
                bytes[i] ^= 1 << bit;
            }
            for (i, (a, b)) in original.iter().zip(&bytes).enumerate() {
                if a != b {
                    first = first.min(i);
                }
            }
            match replay(&bytes) {
                Ok(got) => {
                    // Flips that cancel out leave the journal intact.
                    prop_assert!(first >= ends[0], "header damage accepted");
                    prop_assert_eq!(&got.identity, &id);
                    assert_prefix(&got.records, &records);
                    prop_assert_eq!(got.valid_len, ends[got.records.len()]);
                    // Nothing at or after the first damaged frame is accepted.
                    let damaged_frame = ends.iter().rposition(|&e| e <= first).unwrap();
                    prop_assert!(got.records.len() <= damaged_frame);
                }
                Err(_) => prop_assert!(first < ends[0], "error without header damage"),
            }
        }

        #[test]
        fn random_bytes_are_not_a_journal(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            prop_assume!(!bytes.starts_with(&MAGIC));
            prop_assert_eq!(replay(&bytes), Err(CheckpointError::NotAJournal));
        }

        #[test]
        fn random_bytes_after_magic_are_not_a_journal(tail in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            bytes.extend(&tail);
            prop_assert_eq!(replay(&bytes), Err(CheckpointError::NotAJournal));
        }

        #[test]
        fn random_tail_after_header_never_panics(
            tail in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let id = identity();
            let mut bytes = encode_journal(&id, &[]);
            let header_len = bytes.len();
            bytes.extend(&tail);
            let got = replay(&bytes).unwrap();
            prop_assert_eq!(got.identity, id);
            prop_assert!(got.valid_len >= header_len && got.valid_len <= bytes.len());
        }

        #[test]
        fn newer_versions_are_reported_whatever_follows(
            version in (VERSION + 1)..=u8::MAX,
            tail in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut bytes = MAGIC.to_vec();
            bytes.push(version);
            bytes.extend(&tail);
            prop_assert_eq!(replay(&bytes), Err(CheckpointError::NewerVersion(version)));
        }
    }

    #[test]
    fn newer_version_of_a_real_header() {
        let mut bytes = encode_journal(&identity(), &sample_records());
        bytes[6] = VERSION + 1;
        assert_eq!(
            replay(&bytes),
            Err(CheckpointError::NewerVersion(VERSION + 1))
        );
        assert_eq!(
            replay(&bytes[..7]),
            Err(CheckpointError::NewerVersion(VERSION + 1))
        );
        bytes[6] = 0;
        assert_eq!(replay(&bytes), Err(CheckpointError::NotAJournal));
    }

    #[test]
    fn short_or_foreign_files_are_not_journals() {
        let good = encode_journal(&identity(), &[]);
        for t in 0..good.len() {
            assert_eq!(replay(&good[..t]), Err(CheckpointError::NotAJournal), "{t}");
        }
        assert_eq!(replay(b"OSSUPK\x01"), Err(CheckpointError::NotAJournal));
        assert_eq!(
            replay(b"{\"json\": true}"),
            Err(CheckpointError::NotAJournal)
        );
    }

    /// Builds a frame with a correct CRC around arbitrary payload bytes.
    fn frame_with(payload: &[u8], len_field: u32) -> Vec<u8> {
        let mut f = len_field.to_le_bytes().to_vec();
        f.extend(payload);
        let crc = crc32fast::hash(&f);
        f.extend(crc.to_le_bytes());
        f
    }

    #[test]
    fn crc_valid_but_bad_frames_stop_replay() {
        let id = identity();
        let good = encode_journal(&id, &[Record::Completing]);
        let good_len = good.len();
        let mut canonical = Vec::new();
        encode_record(&Record::ClockOffset { secs: 1 }, &mut canonical);
        let payload = &canonical[4..canonical.len() - 4];
        let mut non_minimal = payload.to_vec();
        // zigzag(1) = 2: `02` re-encoded as the over-long varint `82 00`.
        *non_minimal.last_mut().unwrap() = 0x82;
        non_minimal.push(0x00);
        let mut trailing = payload.to_vec();
        trailing.push(0);
        let mut bad_flags = vec![0x01, 0x01, 0x00];
        bad_flags.extend([0u8; 16]);
        bad_flags.extend([0x04, 0x00, 0x00]);
        let oversized = vec![0x00; MAX_PAYLOAD_LEN + 1];

        let bad_frames: Vec<Vec<u8>> = vec![
            frame_with(&non_minimal, non_minimal.len() as u32),
            frame_with(&trailing, trailing.len() as u32),
            frame_with(&bad_flags, bad_flags.len() as u32),
            frame_with(&[0x07], 1),             // unknown Record variant
            frame_with(&[0x00, 0x05, b'a'], 3), // string longer than the payload
            frame_with(&[0x00, 0x01, 0xff], 3), // invalid UTF-8
            frame_with(&[], 0),                 // empty payload
            frame_with(&oversized, oversized.len() as u32),
            frame_with(&[0x02], 0xffff_ffff), // length field far beyond the data
        ];
        for bad in bad_frames {
            let mut bytes = good.clone();
            bytes.extend(&bad);
            encode_record(&Record::Completing, &mut bytes);
            let got = replay(&bytes).unwrap();
            assert_eq!(
                got.records,
                vec![Record::Completing],
                "{:02x?}",
                &bad[..bad.len().min(16)]
            );
            assert_eq!(got.valid_len, good_len);
        }

        // The same payload with a good frame is accepted, so the checks above are what failed.
        let mut bytes = good.clone();
        bytes.extend(frame_with(payload, payload.len() as u32));
        assert_eq!(replay(&bytes).unwrap().records.len(), 2);
    }

    #[test]
    fn header_with_valid_crc_but_bad_identity_is_rejected() {
        let id = identity();
        let payload = postcard::to_allocvec(&id).unwrap();
        for bad in [
            {
                let mut p = payload.clone();
                p.push(0);
                p
            },
            payload[..payload.len() - 1].to_vec(),
            vec![],
            vec![0; MAX_PAYLOAD_LEN + 1],
        ] {
            let mut bytes = MAGIC.to_vec();
            bytes.push(VERSION);
            bytes.extend((bad.len() as u32).to_le_bytes());
            bytes.extend(&bad);
            let crc = crc32fast::hash(&bytes);
            bytes.extend(crc.to_le_bytes());
            assert_eq!(
                replay(&bytes),
                Err(CheckpointError::NotAJournal),
                "{}",
                bad.len()
            );
        }
    }

    /// What `io::journal` does on open: replay, cut at `valid_len`, append.
    #[test]
    fn truncate_then_append_continues_the_journal() {
        let id = identity();
        let records = sample_records();
        let mut bytes = encode_journal(&id, &records[..3]);
        let mut torn = Vec::new();
        encode_record(&records[3], &mut torn);
        bytes.extend(&torn[..torn.len() - 2]);
        let r = replay(&bytes).unwrap();
        assert_eq!(r.records, &records[..3]);
        bytes.truncate(r.valid_len);
        for rec in &records[3..] {
            encode_record(rec, &mut bytes);
        }
        assert_eq!(replay(&bytes).unwrap().records, records);
    }

    #[test]
    fn crc32_matches_crc32fast() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        let mut x: u32 = 0x1234_5678;
        let data: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for len in [1, 2, 3, 7, 8, 15, 16, 17, 100, 1000, 4096] {
            for start in [0, 1, 5] {
                let d = &data[start..len.max(start)];
                assert_eq!(crc32(d), crc32fast::hash(d), "len {len} start {start}");
            }
        }
    }
}

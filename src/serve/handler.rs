//! Request handling for `ossup serve`: routing, signature checks, fault injection and the
//! OSS operations themselves, one connection at a time (keep-alive loop).
//!
//! Owns: the mapping from HTTP requests to store operations and OSS-style answers (XML
//! bodies, error documents, `x-oss-*` headers). Must not: touch the disk except through
//! [`super::store::Store`], or parse HTTP framing itself (that is [`super::http`]).

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::sync::atomic::Ordering;

use base64::Engine as _;

use super::faults::{Eligible, FaultKind};
use super::http::{Body, Conn, Exchange, FramingError, HeadError, Response, Stream};
use super::store::{
    self, hex_upper, percent_decode, valid_bucket, Digests, Hasher, ObjectMeta, PartMeta,
};
use super::Shared;
use crate::proto::sign::{self, uri_encode, Scheme, VerifyError};
use crate::proto::{time, xml};

/// Unread body bytes a connection will discard to stay reusable after an early answer.
const DRAIN_LIMIT: u64 = 64 * 1024 * 1024;
/// Smallest size of every part but the last at Complete.
const MIN_PART: u64 = 100 * 1024;
/// Longest object key in bytes.
const MAX_KEY: usize = 1023;
/// Most parts of one upload.
const MAX_PARTS: u32 = 10_000;
/// Largest CompleteMultipartUpload body accepted.
const MAX_COMPLETE_BODY: usize = xml::MAX_XML;

/// What to do after handling a request.
enum Outcome {
    /// Answer with this response.
    Reply(Response),
    /// Close the connection without answering (injected faults, broken clients).
    Close,
}

/// Serves one connection until the client closes it, an error occurs or the server stops.
pub(crate) fn serve_connection(sh: &Shared, stream: Box<dyn Stream>) {
    let mut conn = Conn::new(stream);
    loop {
        if sh.stopping() {
            return;
        }
        let head = match conn.read_head() {
            Ok(Some(h)) => h,
            Ok(None) | Err(HeadError::Io) => return,
            Err(HeadError::Bad(msg)) => {
                let r = sh.error(&sh.request_id(), false, 400, "BadRequest", msg, &[]);
                let _ = super::http::write_response(
                    &mut conn,
                    sh.finish(r, &sh.request_id()),
                    false,
                    false,
                );
                return;
            }
            Err(HeadError::TooLarge) => {
                let r = sh.error(
                    &sh.request_id(),
                    false,
                    400,
                    "RequestHeaderTooLarge",
                    "request head too large",
                    &[],
                );
                let _ = super::http::write_response(
                    &mut conn,
                    sh.finish(r, &sh.request_id()),
                    false,
                    false,
                );
                return;
            }
        };
        sh.counters.requests.fetch_add(1, Ordering::Relaxed);
        let rid = sh.request_id();
        let head_req = head.method == "HEAD";
        let framing = match head.framing() {
            Ok(f) => f,
            Err(e) => {
                let r = match e {
                    FramingError::Bad => sh.error(
                        &rid,
                        head_req,
                        400,
                        "InvalidArgument",
                        "bad body framing",
                        &[],
                    ),
                    FramingError::Unsupported => sh.error(
                        &rid,
                        head_req,
                        501,
                        "NotImplemented",
                        "transfer coding not supported",
                        &[],
                    ),
                };
                let _ = super::http::write_response(&mut conn, sh.finish(r, &rid), false, head_req);
                return;
            }
        };
        let client_keep = head.keep_alive();
        let mut ex = Exchange::new(&mut conn, head, framing);
        let outcome = handle(sh, &mut ex, &rid);
        let keep_going = match outcome {
            Outcome::Close => false,
            Outcome::Reply(resp) => {
                let mut keep = client_keep && !sh.stopping();
                if !ex.body_done() {
                    // An unread body is drained after the answer (chunked ones too, up to the
                    // limit), unless it is known to be too large or the client waits for
                    // `100 Continue`: then the connection closes.
                    let left = ex.content_length().map(|n| n.saturating_sub(ex.received));
                    if ex.awaiting_continue() || left.is_some_and(|l| l > DRAIN_LIMIT) {
                        keep = false;
                    }
                }
                let resp = sh.finish(resp, &rid);
                if ex.respond(resp, keep).is_err() {
                    false
                } else {
                    keep && ex.drain(DRAIN_LIMIT)
                }
            }
        };
        sh.counters
            .bytes_received
            .fetch_add(ex.received, Ordering::Relaxed);
        if !keep_going {
            return;
        }
    }
}

/// The parsed request target.
struct Target {
    bucket: String,
    key: Option<String>,
    path: String,
    query: Vec<(String, String)>,
}

impl Target {
    fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, name: &str) -> bool {
        self.query.iter().any(|(k, _)| k == name)
    }

    fn url_keys(&self) -> bool {
        self.q("encoding-type") == Some("url")
    }
}

fn parse_target(target: &str) -> Option<Target> {
    let (raw_path, raw_query) = target.split_once('?').unwrap_or((target, ""));
    let rest = raw_path.strip_prefix('/')?;
    let mut query = Vec::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        query.push((percent_decode(k)?, percent_decode(v)?));
    }
    let (b, k) = rest.split_once('/').unwrap_or((rest, ""));
    let bucket = percent_decode(b)?;
    let key = if k.is_empty() {
        None
    } else {
        Some(percent_decode(k)?)
    };
    let path = percent_decode(raw_path)?;
    Some(Target {
        bucket,
        key,
        path,
        query,
    })
}

/// Handles one request whose head has been read.
fn handle(sh: &Shared, ex: &mut Exchange<'_>, rid: &str) -> Outcome {
    let head_req = ex.head.method == "HEAD";
    let method = ex.head.method.clone();
    let raw_path = ex.head.target.split('?').next().unwrap_or("");
    if raw_path == "/_ossup/stats" && (method == "GET" || head_req) {
        let body = sh.stats_json().into_bytes();
        return Outcome::Reply(
            Response::new(200)
                .header("Content-Type", "application/json")
                .body(Body::Bytes(body)),
        );
    }
    let Some(t) = parse_target(&ex.head.target) else {
        return Outcome::Reply(sh.error(
            rid,
            head_req,
            400,
            "InvalidURI",
            "could not parse the request URI",
            &[],
        ));
    };
    if let Err(resp) = authenticate(sh, ex, rid, &t) {
        return Outcome::Reply(*resp);
    }
    if t.bucket.is_empty() {
        return Outcome::Reply(sh.error(
            rid,
            head_req,
            501,
            "NotImplemented",
            "service-level requests are not supported",
            &[],
        ));
    }
    if !valid_bucket(&t.bucket) {
        return Outcome::Reply(sh.error(
            rid,
            head_req,
            400,
            "InvalidBucketName",
            "the bucket name is not valid",
            &[("BucketName", t.bucket.clone())],
        ));
    }
    if method == "PUT" && t.key.is_none() && t.query.is_empty() {
        return Outcome::Reply(match sh.store.create_bucket(&t.bucket) {
            Ok(()) => Response::new(200),
            Err(e) => sh.internal(rid, head_req, &e),
        });
    }
    if !sh.store.bucket_exists(&t.bucket) {
        return Outcome::Reply(sh.error(
            rid,
            head_req,
            404,
            "NoSuchBucket",
            "the specified bucket does not exist",
            &[("BucketName", t.bucket.clone())],
        ));
    }
    let Some(key) = t.key.clone() else {
        return Outcome::Reply(match method.as_str() {
            "GET" if t.has("uploads") => list_uploads(sh, rid, &t),
            "GET" => list_objects(sh, rid, &t),
            "HEAD" => Response::new(200),
            _ => sh.error(
                rid,
                head_req,
                501,
                "NotImplemented",
                "this bucket operation is not supported",
                &[],
            ),
        });
    };
    if key.len() > MAX_KEY || key.starts_with('/') || key.starts_with('\\') {
        return Outcome::Reply(sh.error(
            rid,
            head_req,
            400,
            "InvalidObjectName",
            "the object name is not valid",
            &[],
        ));
    }
    let op = match (method.as_str(), t.has("uploadId")) {
        ("PUT", true) if t.has("partNumber") => Op::UploadPart,
        ("PUT", false) if !t.has("partNumber") && !copy_or_subresource(ex, &t) => Op::PutObject,
        ("POST", false) if t.has("uploads") => Op::Initiate,
        ("POST", true) => Op::Complete,
        ("GET", true) => Op::ListParts,
        ("GET", false) => Op::Get,
        ("HEAD", false) => Op::Head,
        ("DELETE", true) => Op::Abort,
        ("DELETE", false) => Op::Delete,
        _ => {
            return Outcome::Reply(sh.error(
                rid,
                head_req,
                501,
                "NotImplemented",
                "this operation is not supported",
                &[],
            ));
        }
    };
    let eligible = match op {
        Op::UploadPart => Some(Eligible::UploadPart),
        Op::PutObject => Some(Eligible::PutObject),
        Op::Complete => Some(Eligible::Complete),
        Op::ListParts => Some(Eligible::ListParts),
        Op::Initiate => Some(Eligible::Initiate),
        _ => None,
    };
    let fault = eligible.and_then(|e| sh.faults.pick(e));
    if fault.is_some() {
        sh.counters.faults_injected.fetch_add(1, Ordering::Relaxed);
    }
    match fault {
        Some(FaultKind::Status503) => {
            return Outcome::Reply(sh.error(
                rid,
                head_req,
                503,
                "ServiceUnavailable",
                "Please reduce your request rate. (injected)",
                &[],
            ));
        }
        Some(FaultKind::ResetMidBody) => {
            let mut left = sh.faults.cfg().reset_after_bytes;
            let mut buf = vec![0u8; 16 * 1024];
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                match ex.read_body(&mut buf[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => left -= n as u64,
                }
            }
            return Outcome::Close;
        }
        _ => {}
    }
    let out = match op {
        Op::PutObject => put_object(sh, ex, rid, &t, &key),
        Op::UploadPart => upload_part(sh, ex, rid, &t, &key),
        Op::Initiate => initiate(sh, ex, rid, &t, &key),
        Op::Complete => complete(sh, ex, rid, &t, &key),
        Op::ListParts => Outcome::Reply(list_parts(sh, rid, &t, &key)),
        Op::Abort => Outcome::Reply(abort(sh, rid, &t, &key)),
        Op::Get | Op::Head => Outcome::Reply(get_object(sh, ex, rid, &t, &key)),
        Op::Delete => Outcome::Reply(match sh.store.delete_object(&t.bucket, &key) {
            Ok(()) => Response::new(204),
            Err(e) => sh.internal(rid, false, &e),
        }),
    };
    match (fault, out) {
        (Some(FaultKind::DropResponse | FaultKind::LoseComplete), _) => Outcome::Close,
        (Some(FaultKind::Stall), out) => {
            // Let the body arrive in full first, as a slow server would.
            if !ex.drain(DRAIN_LIMIT) {
                return Outcome::Close;
            }
            sh.sleep_ms(sh.faults.cfg().stall_ms);
            if sh.stopping() {
                return Outcome::Close;
            }
            out
        }
        (_, out) => out,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    PutObject,
    UploadPart,
    Initiate,
    Complete,
    ListParts,
    Abort,
    Get,
    Head,
    Delete,
}

/// PUT with a copy source or an unsupported sub-resource (`?acl`, `?tagging`, ...).
fn copy_or_subresource(ex: &Exchange<'_>, t: &Target) -> bool {
    ex.head.header("x-oss-copy-source").is_some()
        || ex.head.header("x-amz-copy-source").is_some()
        || t.query.iter().any(|(k, _)| {
            !k.starts_with("x-oss-") && !k.starts_with("x-amz-") && !k.starts_with("X-Amz-")
        })
}

fn authenticate(
    sh: &Shared,
    ex: &Exchange<'_>,
    rid: &str,
    t: &Target,
) -> Result<(), Box<Response>> {
    if sh.opts.credentials.is_none() && sh.keys.is_none() {
        return Ok(());
    }
    let head_req = ex.head.method == "HEAD";
    let deny = |code: &str, msg: &str, extra: &[(&str, String)]| {
        Box::new(sh.error(rid, head_req, 403, code, msg, extra))
    };
    let presigned = if t.has("x-oss-signature") {
        Some(Scheme::OssV4)
    } else if t.has("X-Amz-Signature") {
        Some(Scheme::S3V4)
    } else {
        None
    };
    let auth = ex.head.header("authorization").unwrap_or("");
    let scheme = if auth.is_empty() {
        match presigned {
            Some(s) => s,
            None if sh.opts.allow_anonymous => return Ok(()),
            None => {
                return Err(deny(
                    "AccessDenied",
                    "AccessDenied: anonymous access is forbidden",
                    &[],
                ))
            }
        }
    } else if auth.starts_with("OSS4-HMAC-SHA256") {
        Scheme::OssV4
    } else if auth.starts_with("AWS4-HMAC-SHA256") {
        Scheme::S3V4
    } else {
        return Err(deny(
            "AccessDenied",
            "unsupported Authorization scheme: use OSS4-HMAC-SHA256 or AWS4-HMAC-SHA256",
            &[],
        ));
    };
    let now = sh.now();
    let s3 = scheme == Scheme::S3V4;
    let listed;
    let creds = match (&sh.keys, &sh.opts.credentials) {
        (Some(keys), _) => {
            let ak = request_access_key(auth, t);
            let Some(key) = keys.lookup(&ak) else {
                return Err(deny(
                    "InvalidAccessKeyId",
                    "The OSS Access Key Id you provided does not exist in our records.",
                    &[("OSSAccessKeyId", ak)],
                ));
            };
            if key.expires.is_some_and(|e| now >= e) {
                return Err(Box::new(if s3 {
                    sh.error(
                        rid,
                        head_req,
                        400,
                        "ExpiredToken",
                        "The provided token has expired.",
                        &[],
                    )
                } else {
                    sh.error(
                        rid,
                        head_req,
                        403,
                        "SecurityTokenExpired",
                        "The security token you provided has expired.",
                        &[],
                    )
                }));
            }
            listed = key;
            &listed.credentials
        }
        (None, Some(c)) => c,
        (None, None) => return Ok(()),
    };
    let r = sign::verify(
        scheme,
        &ex.head.method,
        Some(t.bucket.as_str()).filter(|b| !b.is_empty()),
        t.key.as_deref(),
        &t.path,
        &t.query,
        &ex.head.headers,
        creds,
        &sh.opts.region,
        now,
    );
    match r {
        Ok(()) => Ok(()),
        Err(VerifyError::Malformed(what)) => Err(deny(
            "AccessDenied",
            &format!("malformed authorization: {what}"),
            &[],
        )),
        Err(VerifyError::UnknownAccessKey) if sh.keys.is_some() => Err(Box::new(if s3 {
            sh.error(
                rid,
                head_req,
                400,
                "InvalidToken",
                "The provided token is malformed or otherwise invalid.",
                &[],
            )
        } else {
            sh.error(
                rid,
                head_req,
                403,
                "InvalidSecurityToken",
                "The security token you provided is invalid.",
                &[],
            )
        })),
        Err(VerifyError::UnknownAccessKey) => Err(deny(
            "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
            &[("OSSAccessKeyId", auth_access_key(auth))],
        )),
        Err(VerifyError::Skewed { request_time }) => Err(deny(
            "RequestTimeTooSkewed",
            "The difference between the request time and the current time is too large.",
            &[
                ("RequestTime", iso_ms(request_time)),
                ("ServerTime", iso_ms(now)),
                ("MaxAllowedSkewMilliseconds", "900000".to_string()),
            ],
        )),
        Err(VerifyError::Mismatch { string_to_sign }) => Err(deny(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
            &[
                ("StringToSign", string_to_sign),
                ("OSSAccessKeyId", auth_access_key(auth)),
            ],
        )),
    }
}

/// The access key id a request is signed with: from the Authorization header, else from a
/// presigned URL's credential parameter; empty if none.
fn request_access_key(auth: &str, t: &Target) -> String {
    if !auth.is_empty() {
        return auth_access_key(auth);
    }
    t.q("x-oss-credential")
        .or_else(|| t.q("X-Amz-Credential"))
        .and_then(|c| c.split('/').next())
        .unwrap_or("")
        .to_string()
}

/// The access key id in an Authorization value (for error documents), or empty.
fn auth_access_key(auth: &str) -> String {
    auth.split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').next())
        .unwrap_or("")
        .to_string()
}

/// Unix seconds as `2026-11-25T02:11:13.000Z` (ISO-8601 extended, milliseconds).
pub(crate) fn iso_ms(unix: i64) -> String {
    let b = time::iso8601_basic(unix);
    let c: Vec<char> = b.chars().collect();
    if c.len() != 16 {
        return b;
    }
    let s = |r: std::ops::Range<usize>| c[r].iter().collect::<String>();
    format!(
        "{}-{}-{}T{}:{}:{}.000Z",
        s(0..4),
        s(4..6),
        s(6..8),
        s(9..11),
        s(11..13),
        s(13..15)
    )
}

/// Why a body could not be stored.
enum RecvError {
    /// The client broke off or sent a malformed body: close the connection.
    Client,
    /// Writing to disk failed.
    Disk(std::io::Error),
}

/// Streams the request body into `file`, hashing it on the way.
fn receive(ex: &mut Exchange<'_>, file: &mut File) -> Result<Digests, RecvError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut h = if expected_sha256(ex).is_some() {
        Hasher::with_sha256()
    } else {
        Hasher::new()
    };
    loop {
        let n = ex.read_body(&mut buf).map_err(|_| RecvError::Client)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(RecvError::Disk)?;
    }
    file.flush().map_err(RecvError::Disk)?;
    Ok(h.finish())
}

/// The hex SHA-256 an S3 client declared for the body (`x-amz-content-sha256`), if it is
/// one (and not `UNSIGNED-PAYLOAD` or a streaming marker).
fn expected_sha256(ex: &Exchange<'_>) -> Option<String> {
    let v = ex.head.header("x-amz-content-sha256")?.trim();
    (v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit())).then(|| v.to_ascii_uppercase())
}

/// Checks `Content-MD5` and an S3 payload hash against the received digests; the error
/// answer if one does not match.
fn body_checks(
    sh: &Shared,
    ex: &Exchange<'_>,
    rid: &str,
    d: &Digests,
) -> Result<(), Box<Response>> {
    let md5_ok = match ex.head.header("content-md5") {
        None => true,
        Some(v) => base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .is_ok_and(|b| b == d.md5),
    };
    if !md5_ok {
        return Err(Box::new(sh.error(
            rid,
            false,
            400,
            "InvalidDigest",
            "The Content-MD5 you specified is not valid.",
            &[],
        )));
    }
    if let (Some(want), Some(got)) = (expected_sha256(ex), d.sha256) {
        if want != hex_upper(&got) {
            return Err(Box::new(sh.error(
                rid,
                false,
                400,
                "XAmzContentSHA256Mismatch",
                "The provided 'x-amz-content-sha256' header does not match what was computed.",
                &[],
            )));
        }
    }
    Ok(())
}

fn forbid_overwrite(ex: &Exchange<'_>) -> bool {
    ex.head
        .header("x-oss-forbid-overwrite")
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

fn object_exists(sh: &Shared, bucket: &str, key: &str) -> bool {
    sh.store.object_path(bucket, key).is_file()
}

fn put_object(sh: &Shared, ex: &mut Exchange<'_>, rid: &str, t: &Target, key: &str) -> Outcome {
    if forbid_overwrite(ex) && object_exists(sh, &t.bucket, key) {
        return Outcome::Reply(sh.error(
            rid,
            false,
            409,
            "FileAlreadyExists",
            "The object you specified already exists and can not be overwritten.",
            &[],
        ));
    }
    let (tmp, mut file) = match sh.store.temp_file() {
        Ok(x) => x,
        Err(e) => return Outcome::Reply(sh.internal(rid, false, &e)),
    };
    let d = match receive(ex, &mut file) {
        Ok(d) => d,
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&tmp);
            return match e {
                RecvError::Client => Outcome::Close,
                RecvError::Disk(e) => Outcome::Reply(sh.internal(rid, false, &e)),
            };
        }
    };
    drop(file);
    if let Err(r) = body_checks(sh, ex, rid, &d) {
        let _ = fs::remove_file(&tmp);
        return Outcome::Reply(*r);
    }
    let meta = ObjectMeta {
        key: key.to_string(),
        size: d.size,
        etag: hex_upper(&d.md5),
        crc: d.crc,
        mtime: sh.now(),
        content_type: ex.head.header("content-type").map(str::to_string),
    };
    if let Err(e) = sh.store.commit_object(&t.bucket, &tmp, &meta) {
        let _ = fs::remove_file(&tmp);
        return Outcome::Reply(sh.internal(rid, false, &e));
    }
    sh.counters.puts.fetch_add(1, Ordering::Relaxed);
    Outcome::Reply(digest_headers(Response::new(200), &d))
}

fn digest_headers(r: Response, d: &Digests) -> Response {
    r.header("ETag", format!("\"{}\"", hex_upper(&d.md5)))
        .header(
            "Content-MD5",
            base64::engine::general_purpose::STANDARD.encode(d.md5),
        )
        .header("x-oss-hash-crc64ecma", d.crc.to_string())
}

/// Looks up upload `id` and checks it belongs to `bucket`/`key`; the NoSuchUpload answer
/// otherwise.
fn find_upload(
    sh: &Shared,
    rid: &str,
    t: &Target,
    key: &str,
    head_req: bool,
) -> Result<store::UploadInfo, Box<Response>> {
    let id = t.q("uploadId").unwrap_or("");
    match sh.store.upload(id) {
        Ok(Some(u)) if u.bucket == t.bucket && u.key == key => Ok(u),
        Ok(_) => Err(Box::new(sh.no_such_upload(rid, head_req, id))),
        Err(e) => Err(Box::new(sh.internal(rid, head_req, &e))),
    }
}

fn upload_part(sh: &Shared, ex: &mut Exchange<'_>, rid: &str, t: &Target, key: &str) -> Outcome {
    let n = match t.q("partNumber").and_then(|v| v.parse::<u32>().ok()) {
        Some(n) if (1..=MAX_PARTS).contains(&n) => n,
        _ => {
            return Outcome::Reply(sh.error(
                rid,
                false,
                400,
                "InvalidArgument",
                "Part number must be an integer between 1 and 10000, inclusive.",
                &[
                    ("ArgumentName", "partNumber".to_string()),
                    ("ArgumentValue", t.q("partNumber").unwrap_or("").to_string()),
                ],
            ));
        }
    };
    let up = match find_upload(sh, rid, t, key, false) {
        Ok(u) => u,
        Err(r) => return Outcome::Reply(*r),
    };
    let (path, mut file, name) = match sh.store.part_file(&up.id, n) {
        Ok(x) => x,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Outcome::Reply(sh.no_such_upload(rid, false, &up.id));
        }
        Err(e) => return Outcome::Reply(sh.internal(rid, false, &e)),
    };
    let d = match receive(ex, &mut file) {
        Ok(d) => d,
        Err(e) => {
            drop(file);
            let _ = fs::remove_file(&path);
            return match e {
                RecvError::Client => Outcome::Close,
                RecvError::Disk(e) => Outcome::Reply(sh.internal(rid, false, &e)),
            };
        }
    };
    drop(file);
    if let Err(r) = body_checks(sh, ex, rid, &d) {
        let _ = fs::remove_file(&path);
        return Outcome::Reply(*r);
    }
    let part = PartMeta {
        n,
        file: name,
        size: d.size,
        etag: hex_upper(&d.md5),
        crc: d.crc,
        mtime: sh.now(),
    };
    let lock = sh.store.upload_lock(&up.id);
    let committed = {
        let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
        sh.store.commit_part(&up.id, &part)
    };
    match committed {
        Ok(true) => {}
        Ok(false) => return Outcome::Reply(sh.no_such_upload(rid, false, &up.id)),
        Err(e) => {
            let _ = fs::remove_file(&path);
            return Outcome::Reply(sh.internal(rid, false, &e));
        }
    }
    sh.counters.parts_stored.fetch_add(1, Ordering::Relaxed);
    Outcome::Reply(digest_headers(Response::new(200), &d))
}

fn xml_doc(body: String) -> Response {
    let mut s = String::with_capacity(body.len() + 40);
    s.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    s.push_str(&body);
    Response::new(200)
        .header("Content-Type", "application/xml")
        .body(Body::Bytes(s.into_bytes()))
}

/// Appends `<name>escaped value</name>`.
fn el(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", xml::escape(value));
}

fn key_out(t: &Target, key: &str) -> String {
    if t.url_keys() {
        uri_encode(key, false)
    } else {
        key.to_string()
    }
}

fn initiate(sh: &Shared, ex: &mut Exchange<'_>, rid: &str, t: &Target, key: &str) -> Outcome {
    let ct = ex.head.header("content-type").map(str::to_string);
    let id = match sh.store.initiate(&t.bucket, key, sh.now(), ct.as_deref()) {
        Ok(id) => id,
        Err(e) => return Outcome::Reply(sh.internal(rid, false, &e)),
    };
    sh.counters.initiated.fetch_add(1, Ordering::Relaxed);
    sh.counters.open_uploads.fetch_add(1, Ordering::Relaxed);
    let mut b = String::from("<InitiateMultipartUploadResult>");
    el(&mut b, "Bucket", &t.bucket);
    el(&mut b, "Key", &key_out(t, key));
    el(&mut b, "UploadId", &id);
    if t.url_keys() {
        el(&mut b, "EncodingType", "url");
    }
    b.push_str("</InitiateMultipartUploadResult>");
    Outcome::Reply(xml_doc(b))
}

fn parse_u32_param(t: &Target, name: &str, default: u32) -> Result<u32, ()> {
    match t.q(name) {
        None | Some("") => Ok(default),
        Some(v) => v.trim().parse::<u32>().map_err(|_| ()),
    }
}

fn list_parts(sh: &Shared, rid: &str, t: &Target, key: &str) -> Response {
    let up = match find_upload(sh, rid, t, key, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let (Ok(max), Ok(marker)) = (
        parse_u32_param(t, "max-parts", 1000),
        parse_u32_param(t, "part-number-marker", 0),
    ) else {
        return sh.error(
            rid,
            false,
            400,
            "InvalidArgument",
            "max-parts and part-number-marker must be integers",
            &[],
        );
    };
    let max = max.clamp(1, 1000) as usize;
    let parts = match sh.store.parts(&up.id) {
        Ok(p) => p,
        Err(e) => return sh.internal(rid, false, &e),
    };
    let after: Vec<&PartMeta> = parts.iter().filter(|p| p.n > marker).collect();
    let truncated = after.len() > max;
    let page = &after[..after.len().min(max)];
    let next = page.last().map(|p| p.n).unwrap_or(marker);
    let mut b = String::from("<ListPartsResult>");
    el(&mut b, "Bucket", &t.bucket);
    el(&mut b, "Key", &key_out(t, key));
    el(&mut b, "UploadId", &up.id);
    el(&mut b, "StorageClass", "Standard");
    el(&mut b, "PartNumberMarker", &marker.to_string());
    el(&mut b, "NextPartNumberMarker", &next.to_string());
    el(&mut b, "MaxParts", &max.to_string());
    el(
        &mut b,
        "IsTruncated",
        if truncated { "true" } else { "false" },
    );
    if t.url_keys() {
        el(&mut b, "EncodingType", "url");
    }
    for p in page {
        b.push_str("<Part>");
        el(&mut b, "PartNumber", &p.n.to_string());
        el(&mut b, "LastModified", &iso_ms(p.mtime));
        el(&mut b, "ETag", &format!("\"{}\"", p.etag));
        el(&mut b, "HashCrc64ecma", &p.crc.to_string());
        el(&mut b, "Size", &p.size.to_string());
        b.push_str("</Part>");
    }
    b.push_str("</ListPartsResult>");
    xml_doc(b)
}

/// Reads a bounded body into memory; `None` if it is larger than `limit` or broken.
fn read_small_body(ex: &mut Exchange<'_>, limit: usize) -> Result<Vec<u8>, bool> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match ex.read_body(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() + n > limit {
                    return Err(true);
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(_) => return Err(false),
        }
    }
}

/// Text between `<tag>` and `</tag>` in `s` (first occurrence).
fn text_of<'a>(s: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let a = s.find(&open)? + open.len();
    let b = s[a..].find(&close)? + a;
    Some(&s[a..b])
}

/// Decodes the five predefined XML entities and numeric references.
fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let end = rest[i..].find(';')? + i;
        let ent = &rest[i + 1..end];
        let c = match ent {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let v = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()?
                } else {
                    ent.strip_prefix('#')?.parse().ok()?
                };
                char::from_u32(v)?
            }
        };
        out.push(c);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// The `(PartNumber, ETag)` list of a `<CompleteMultipartUpload>` body, in document order.
fn parse_complete_body(body: &[u8]) -> Option<Vec<(u32, String)>> {
    let s = std::str::from_utf8(body).ok()?;
    if !s.contains("<CompleteMultipartUpload") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find("<Part>") {
        let after = &rest[i + "<Part>".len()..];
        let end = after.find("</Part>")?;
        let inner = &after[..end];
        let n = text_of(inner, "PartNumber")?.trim().parse::<u32>().ok()?;
        let etag = unescape(text_of(inner, "ETag")?.trim())?;
        out.push((n, etag));
        if out.len() > MAX_PARTS as usize {
            return None;
        }
        rest = &after[end + "</Part>".len()..];
    }
    Some(out)
}

fn norm_etag(e: &str) -> String {
    e.trim().trim_matches('"').to_ascii_uppercase()
}

fn complete(sh: &Shared, ex: &mut Exchange<'_>, rid: &str, t: &Target, key: &str) -> Outcome {
    let up = match find_upload(sh, rid, t, key, false) {
        Ok(u) => u,
        Err(r) => return Outcome::Reply(*r),
    };
    let all = ex
        .head
        .header("x-oss-complete-all")
        .is_some_and(|v| v.eq_ignore_ascii_case("yes"));
    let body = match read_small_body(ex, MAX_COMPLETE_BODY) {
        Ok(b) => b,
        Err(true) => {
            return Outcome::Reply(sh.error(
                rid,
                false,
                400,
                "MalformedXML",
                "the XML body is too large",
                &[],
            ))
        }
        Err(false) => return Outcome::Close,
    };
    let mut h = Hasher::with_sha256();
    h.update(&body);
    if let Err(r) = body_checks(sh, ex, rid, &h.finish()) {
        return Outcome::Reply(*r);
    }
    let listed = if all {
        if !body.iter().all(u8::is_ascii_whitespace) {
            return Outcome::Reply(sh.error(
                rid,
                false,
                400,
                "InvalidArgument",
                "x-oss-complete-all: yes does not allow a body",
                &[],
            ));
        }
        None
    } else {
        match parse_complete_body(&body) {
            Some(l) if !l.is_empty() => Some(l),
            _ => {
                return Outcome::Reply(sh.error(rid, false, 400, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema.", &[]));
            }
        }
    };
    let lock = sh.store.upload_lock(&up.id);
    let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
    match sh.store.upload(&up.id) {
        Ok(Some(_)) => {}
        Ok(None) => return Outcome::Reply(sh.no_such_upload(rid, false, &up.id)),
        Err(e) => return Outcome::Reply(sh.internal(rid, false, &e)),
    }
    let stored = match sh.store.parts(&up.id) {
        Ok(p) => p,
        Err(e) => return Outcome::Reply(sh.internal(rid, false, &e)),
    };
    let chosen: Vec<PartMeta> = match listed {
        None => {
            if stored.is_empty() {
                return Outcome::Reply(sh.error(
                    rid,
                    false,
                    400,
                    "InvalidPart",
                    "the upload has no parts",
                    &[],
                ));
            }
            stored
        }
        Some(listed) => {
            if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
                return Outcome::Reply(sh.error(rid, false, 400, "InvalidPartOrder", "The list of parts was not in ascending order. Parts must be ordered by part number.", &[]));
            }
            let mut chosen = Vec::with_capacity(listed.len());
            for (n, etag) in &listed {
                match stored.iter().find(|p| p.n == *n) {
                    Some(p) if norm_etag(&p.etag) == norm_etag(etag) => chosen.push(p.clone()),
                    _ => {
                        return Outcome::Reply(sh.error(rid, false, 400, "InvalidPart", "One or more of the specified parts could not be found or the specified entity tag might not have matched the part's entity tag.", &[
                            ("PartNumber", n.to_string()),
                            ("ETag", etag.clone()),
                        ]));
                    }
                }
            }
            chosen
        }
    };
    if let Some(p) = chosen[..chosen.len() - 1]
        .iter()
        .find(|p| p.size < MIN_PART)
    {
        return Outcome::Reply(sh.error(
            rid,
            false,
            400,
            "EntityTooSmall",
            "Your proposed upload is smaller than the minimum allowed size.",
            &[
                ("PartNumber", p.n.to_string()),
                ("ProposedSize", p.size.to_string()),
                ("MinSizeAllowed", MIN_PART.to_string()),
            ],
        ));
    }
    if forbid_overwrite(ex) && object_exists(sh, &t.bucket, key) {
        return Outcome::Reply(sh.error(
            rid,
            false,
            409,
            "FileAlreadyExists",
            "The object you specified already exists and can not be overwritten.",
            &[],
        ));
    }
    let meta = match sh.store.assemble(
        &up.id,
        &t.bucket,
        key,
        &chosen,
        sh.now(),
        up.content_type.clone(),
    ) {
        Ok(m) => m,
        Err(e) => return Outcome::Reply(sh.internal(rid, false, &e)),
    };
    if let Err(e) = sh.store.remove_upload(&up.id) {
        return Outcome::Reply(sh.internal(rid, false, &e));
    }
    sh.counters.completed.fetch_add(1, Ordering::Relaxed);
    sh.counters.dec_open();
    let mut b = String::from("<CompleteMultipartUploadResult>");
    if t.url_keys() {
        el(&mut b, "EncodingType", "url");
    }
    el(
        &mut b,
        "Location",
        &format!("{}/{}/{}", sh.base_url, t.bucket, uri_encode(key, true)),
    );
    el(&mut b, "Bucket", &t.bucket);
    el(&mut b, "Key", &key_out(t, key));
    el(&mut b, "ETag", &format!("\"{}\"", meta.etag));
    b.push_str("</CompleteMultipartUploadResult>");
    Outcome::Reply(
        xml_doc(b)
            .header("ETag", format!("\"{}\"", meta.etag))
            .header("x-oss-hash-crc64ecma", meta.crc.to_string()),
    )
}

fn abort(sh: &Shared, rid: &str, t: &Target, key: &str) -> Response {
    let up = match find_upload(sh, rid, t, key, false) {
        Ok(u) => u,
        Err(r) => return *r,
    };
    let lock = sh.store.upload_lock(&up.id);
    let _g = lock.lock().unwrap_or_else(|e| e.into_inner());
    match sh.store.remove_upload(&up.id) {
        Ok(true) => {
            sh.counters.aborted.fetch_add(1, Ordering::Relaxed);
            sh.counters.dec_open();
            Response::new(204)
        }
        Ok(false) => sh.no_such_upload(rid, false, &up.id),
        Err(e) => sh.internal(rid, false, &e),
    }
}

fn list_uploads(sh: &Shared, rid: &str, t: &Target) -> Response {
    let prefix = t.q("prefix").unwrap_or("");
    let key_marker = t.q("key-marker").unwrap_or("");
    let id_marker = t.q("upload-id-marker").unwrap_or("");
    let Ok(max) = parse_u32_param(t, "max-uploads", 1000) else {
        return sh.error(
            rid,
            false,
            400,
            "InvalidArgument",
            "max-uploads must be an integer",
            &[],
        );
    };
    let max = max.clamp(1, 1000) as usize;
    let mut ups = match sh.store.uploads() {
        Ok(u) => u,
        Err(e) => return sh.internal(rid, false, &e),
    };
    ups.retain(|u| u.bucket == t.bucket && u.key.starts_with(prefix));
    ups.sort_by(|a, b| (&a.key, &a.id).cmp(&(&b.key, &b.id)));
    ups.retain(|u| {
        if key_marker.is_empty() {
            true
        } else if id_marker.is_empty() {
            u.key.as_str() > key_marker
        } else {
            (u.key.as_str(), u.id.as_str()) > (key_marker, id_marker)
        }
    });
    let truncated = ups.len() > max;
    ups.truncate(max);
    let mut b = String::from("<ListMultipartUploadsResult>");
    el(&mut b, "Bucket", &t.bucket);
    el(&mut b, "KeyMarker", &key_out(t, key_marker));
    el(&mut b, "UploadIdMarker", id_marker);
    el(
        &mut b,
        "NextKeyMarker",
        &ups.last().map(|u| key_out(t, &u.key)).unwrap_or_default(),
    );
    el(
        &mut b,
        "NextUploadIdMarker",
        ups.last().map(|u| u.id.as_str()).unwrap_or(""),
    );
    el(&mut b, "Delimiter", t.q("delimiter").unwrap_or(""));
    el(&mut b, "Prefix", &key_out(t, prefix));
    el(&mut b, "MaxUploads", &max.to_string());
    el(
        &mut b,
        "IsTruncated",
        if truncated { "true" } else { "false" },
    );
    if t.url_keys() {
        el(&mut b, "EncodingType", "url");
    }
    for u in &ups {
        b.push_str("<Upload>");
        el(&mut b, "Key", &key_out(t, &u.key));
        el(&mut b, "UploadId", &u.id);
        el(&mut b, "StorageClass", "Standard");
        el(&mut b, "Initiated", &iso_ms(u.initiated));
        b.push_str("</Upload>");
    }
    b.push_str("</ListMultipartUploadsResult>");
    xml_doc(b)
}

/// ListObjects (V1, and V2 with `list-type=2`): prefix, marker / start-after /
/// continuation-token, max-keys. Delimiters are not supported (every key is listed).
fn list_objects(sh: &Shared, rid: &str, t: &Target) -> Response {
    let v2 = t.q("list-type") == Some("2");
    let prefix = t.q("prefix").unwrap_or("");
    let marker = if v2 {
        t.q("continuation-token")
            .filter(|s| !s.is_empty())
            .or(t.q("start-after"))
            .unwrap_or("")
    } else {
        t.q("marker").unwrap_or("")
    };
    let Ok(max) = parse_u32_param(t, "max-keys", 100) else {
        return sh.error(
            rid,
            false,
            400,
            "InvalidArgument",
            "max-keys must be an integer",
            &[],
        );
    };
    let max = max.min(1000) as usize;
    let mut objs = match sh.store.list_objects(&t.bucket) {
        Ok(o) => o,
        Err(e) => return sh.internal(rid, false, &e),
    };
    objs.retain(|o| o.key.starts_with(prefix) && o.key.as_str() > marker);
    let truncated = objs.len() > max;
    objs.truncate(max);
    let mut b = String::from("<ListBucketResult>");
    el(&mut b, "Name", &t.bucket);
    el(&mut b, "Prefix", &key_out(t, prefix));
    el(&mut b, "MaxKeys", &max.to_string());
    el(
        &mut b,
        "IsTruncated",
        if truncated { "true" } else { "false" },
    );
    let next = objs.last().map(|o| o.key.clone()).unwrap_or_default();
    if v2 {
        el(&mut b, "KeyCount", &objs.len().to_string());
        if let Some(c) = t.q("continuation-token") {
            el(&mut b, "ContinuationToken", c);
        }
        if truncated {
            el(&mut b, "NextContinuationToken", &next);
        }
    } else {
        el(&mut b, "Marker", &key_out(t, marker));
        if truncated {
            el(&mut b, "NextMarker", &key_out(t, &next));
        }
    }
    if t.url_keys() {
        el(&mut b, "EncodingType", "url");
    }
    for o in &objs {
        b.push_str("<Contents>");
        el(&mut b, "Key", &key_out(t, &o.key));
        el(&mut b, "LastModified", &iso_ms(o.mtime));
        el(&mut b, "ETag", &format!("\"{}\"", o.etag));
        el(
            &mut b,
            "Type",
            if o.etag.contains('-') {
                "Multipart"
            } else {
                "Normal"
            },
        );
        el(&mut b, "Size", &o.size.to_string());
        el(&mut b, "StorageClass", "Standard");
        b.push_str("</Contents>");
    }
    b.push_str("</ListBucketResult>");
    xml_doc(b)
}

/// Parses a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range against `size`.
/// `Ok(None)`: no (usable) range, serve everything; `Err(())`: unsatisfiable.
fn parse_range(v: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let Ok(s) = a.parse::<u64>() else {
            return Ok(None);
        };
        let e = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= s => e.min(size.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        (s, e)
    };
    if size == 0 || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

fn get_object(sh: &Shared, ex: &Exchange<'_>, rid: &str, t: &Target, key: &str) -> Response {
    let head_req = ex.head.method == "HEAD";
    let (meta, mut f) = match sh.store.open_object(&t.bucket, key) {
        Ok(Some(x)) => x,
        Ok(None) => {
            return sh.error(
                rid,
                head_req,
                404,
                "NoSuchKey",
                "The specified key does not exist.",
                &[("Key", key.to_string())],
            );
        }
        Err(e) => return sh.internal(rid, head_req, &e),
    };
    let mut r = Response::new(200)
        .header(
            "Content-Type",
            meta.content_type
                .clone()
                .unwrap_or_else(|| "application/octet-stream".into()),
        )
        .header("ETag", format!("\"{}\"", meta.etag))
        .header("Last-Modified", time::rfc1123(meta.mtime))
        .header("Accept-Ranges", "bytes")
        .header(
            "x-oss-object-type",
            if meta.etag.contains('-') {
                "Multipart"
            } else {
                "Normal"
            },
        )
        .header("x-oss-hash-crc64ecma", meta.crc.to_string());
    let range = match ex.head.header("range").map(|v| parse_range(v, meta.size)) {
        None | Some(Ok(None)) => None,
        Some(Ok(Some(r))) => Some(r),
        Some(Err(())) => {
            return sh
                .error(
                    rid,
                    head_req,
                    416,
                    "InvalidRange",
                    "The requested range is not satisfiable",
                    &[],
                )
                .header("Content-Range", format!("bytes */{}", meta.size));
        }
    };
    let (start, len) = match range {
        Some((s, e)) => {
            r.status = 206;
            r = r.header("Content-Range", format!("bytes {s}-{e}/{}", meta.size));
            (s, e - s + 1)
        }
        None => (0, meta.size),
    };
    if head_req {
        return r.body(Body::LengthOnly(len));
    }
    if start > 0 && f.seek(SeekFrom::Start(start)).is_err() {
        return sh.error(rid, false, 500, "InternalError", "seek failed", &[]);
    }
    r.body(Body::File(f, len))
}

impl Shared {
    /// A new request id.
    pub(crate) fn request_id(&self) -> String {
        let n = self.req_seq.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:016X}{:08X}",
            super::faults::splitmix(self.req_seed ^ n),
            n as u32
        )
    }

    /// Adds the headers every response carries.
    pub(crate) fn finish(&self, r: Response, rid: &str) -> Response {
        r.header("Server", "ossup")
            .header("Date", time::rfc1123(self.now()))
            .header("x-oss-request-id", rid)
    }

    /// An OSS `<Error>` response. For HEAD the document goes base64-encoded into
    /// `x-oss-err` and the body is empty.
    pub(crate) fn error(
        &self,
        rid: &str,
        head_req: bool,
        status: u16,
        code: &str,
        message: &str,
        extra: &[(&str, String)],
    ) -> Response {
        let mut b = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\n");
        let mut line = |name: &str, v: &str| {
            b.push_str("  ");
            el(&mut b, name, v);
            b.push('\n');
        };
        line("Code", code);
        line("Message", message);
        line("RequestId", rid);
        line("HostId", &self.host_id);
        for (n, v) in extra {
            line(n, v);
        }
        b.push_str("</Error>\n");
        let r = Response::new(status).header("Content-Type", "application/xml");
        if head_req {
            r.header(
                "x-oss-err",
                base64::engine::general_purpose::STANDARD.encode(b.as_bytes()),
            )
        } else {
            r.body(Body::Bytes(b.into_bytes()))
        }
    }

    fn internal(&self, rid: &str, head_req: bool, e: &std::io::Error) -> Response {
        self.error(
            rid,
            head_req,
            500,
            "InternalError",
            &format!("ossup serve: {e}"),
            &[],
        )
    }

    fn no_such_upload(&self, rid: &str, head_req: bool, id: &str) -> Response {
        self.error(
            rid,
            head_req,
            404,
            "NoSuchUpload",
            "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
            &[("UploadId", id.to_string())],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_body_parsing() {
        let body = br#"<?xml version="1.0"?><CompleteMultipartUpload xmlns="x"><Part><PartNumber>1</PartNumber><ETag>&quot;AB&quot;</ETag></Part>
            <Part> <ETag>"cd"</ETag><PartNumber> 3 </PartNumber></Part></CompleteMultipartUpload>"#;
        assert_eq!(
            parse_complete_body(body),
            Some(vec![(1, "\"AB\"".into()), (3, "\"cd\"".into())])
        );
        assert_eq!(parse_complete_body(b"<Other/>"), None);
        assert_eq!(parse_complete_body(b"<CompleteMultipartUpload><Part><PartNumber>x</PartNumber><ETag>a</ETag></Part></CompleteMultipartUpload>"), None);
        assert_eq!(
            parse_complete_body(b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"),
            None
        );
        assert_eq!(
            unescape("a&amp;b&#65;&#x42;&lt;").as_deref(),
            Some("a&bAB<")
        );
        assert_eq!(unescape("a&bogus;"), None);
        assert_eq!(norm_etag("\"abC\""), "ABC");
    }

    #[test]
    fn targets() {
        let t = parse_target("/bkt/dir%2Ffile%20x?partNumber=3&uploadId=AB&uploads").unwrap();
        assert_eq!(t.bucket, "bkt");
        assert_eq!(t.key.as_deref(), Some("dir/file x"));
        assert_eq!(t.path, "/bkt/dir/file x");
        assert_eq!(t.q("partNumber"), Some("3"));
        assert!(t.has("uploads") && !t.has("x"));
        let t = parse_target("/bkt/").unwrap();
        assert_eq!((t.bucket.as_str(), t.key.is_none()), ("bkt", true));
        let t = parse_target("/bkt/a/b/").unwrap();
        assert_eq!(t.key.as_deref(), Some("a/b/"));
        assert!(parse_target("bkt/x").is_none());
        assert!(parse_target("/bkt/%zz").is_none());
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=95-200", 100), Ok(Some((95, 99))));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=5-1", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=0-1,3-4", 100), Ok(None));
    }
}

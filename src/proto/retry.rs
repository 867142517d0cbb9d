//! Failure classification and backoff.
//!
//! Owns: which failures are retried, which need a clock correction, which restart the upload
//! and which are fatal; and the capped exponential backoff schedule. Must not: sleep, read a
//! clock or generate randomness (jitter comes in as an argument), or match on error *message*
//! strings (only on the structured OSS/S3 error `Code`, which is part of the protocol).
//!
//! # Classification
//!
//! [`classify`] applies the first rule that matches:
//!
//! | failure | verdict |
//! |---|---|
//! | `Dns`, `Connect`, `Reset`, `TimedOut`, `Tls`, `Malformed`, `CrcMismatch` | `Retry` |
//! | `TlsCertificate` (the peer is not who it claims to be), `LocalRead`, `SourceChanged` | `Fatal` |
//! | code `RequestTimeTooSkewed` (OSS sends 403, S3 may send 400), any status | `FixClock` |
//! | code `NoSuchUpload` on `UploadPart`, `ListParts`, `Complete`, `Abort` | `UploadGone` |
//! | code `NoSuchUpload` on an operation without an upload id | `Fatal` |
//! | code `InvalidPart` / `InvalidPartOrder` on `Complete` | `Relist` |
//! | code `InvalidPart` / `InvalidPartOrder` on any other operation | `Fatal` |
//! | code `SlowDown`, `RequestTimeout`, `ServiceUnavailable`, `InternalError`, `InvalidDigest`, `BadDigest`, any status | `Retry` |
//! | a credentials code (`AccessDenied`, `SignatureDoesNotMatch`, `InvalidAccessKeyId`, `InvalidSecurityToken`, `SecurityTokenExpired`), any status | `Fatal` |
//! | a configuration code (`NoSuchBucket`, `InvalidBucketName`, `InvalidArgument`, `InvalidObjectName`, `KeyTooLong`, `EntityTooSmall`, `EntityTooLarge`, `MethodNotAllowed`, `PreconditionFailed`, `FileAlreadyExists`, `ObjectAlreadyExists`, `NoSuchKey`), any status | `Fatal` |
//! | status 5xx, 408, 429 (with any other code or none) | `Retry` |
//! | status 401 **without** a code | `Retry` |
//! | anything else (other 4xx, 401 with an unknown code, 3xx, nonsense statuses) | `Fatal` |
//!
//! An empty code (`Some("")`) counts as no code. Codes are compared exactly (they are
//! CamelCase identifiers in both OSS and S3).
//!
//! Decisions worth knowing:
//! * **401.** The OSS Go SDK v2 retries every 401. A 401 that names a credentials code is a
//!   wrong key or signature and retrying cannot help, so it is fatal. A bare 401 without a code
//!   is retried (a proxy or a momentary STS hiccup can produce one); the retry budget bounds it,
//!   and [`is_credentials_problem`] still reports it as a credentials problem when it is the
//!   final failure.
//! * **`InvalidDigest`** (OSS) and **`BadDigest`** (S3, MinIO, Ceph: Content-MD5 mismatch) mean the bytes were damaged in transit, the
//!   same situation as [`Failure::CrcMismatch`], so it is retried.
//! * **`HeadObject` 404.** `HeadObject` responses have no body; a 404 there means "no such
//!   object", which the upload state machine interprets *itself* (after a `NoSuchUpload` with a
//!   `Completing` record) before it ever calls `classify`. If it does reach `classify`, a 404
//!   (with or without `NoSuchKey`) is `Fatal` like any other 4xx.
//! * **`NoSuchUpload` on `Abort`** is `UploadGone`: for an abort, the state machine treats that
//!   as success.
//! * **`FixClock`** needs the server's `Date`; when the response had none, the state machine
//!   falls back to an ordinary retry. That is its decision, not this module's.
//!
//! # Backoff
//!
//! [`Backoff::delay_ms`] returns `bound/2 + jitter % (bound/2 + 1)` where
//! `bound = min(cap_ms, base_ms * 2^(attempt-1))` ([`Backoff::bound_ms`]), computed with
//! overflow-safe shifts, so any `attempt` up to `u32::MAX` gives a delay within the cap.

use crate::proto::Op;

/// What went wrong with one request, as the shell observed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Name resolution failed.
    Dns,
    /// TCP connect failed or timed out.
    Connect,
    /// The connection was reset or closed early.
    Reset,
    /// No progress within the idle timeout.
    TimedOut,
    /// TLS failed mid-stream (alert, bad record).
    Tls,
    /// TLS certificate verification failed: the peer is not who it claims to be.
    TlsCertificate,
    /// The server answered with an error status.
    Status {
        /// HTTP status.
        status: u16,
        /// OSS/S3 error code (`NoSuchUpload`, ...), when the body or `x-oss-err` had one.
        code: Option<String>,
    },
    /// The response was not valid HTTP or XML.
    Malformed,
    /// A 2xx answer that is well-formed XML but lacks what the protocol needs (the element
    /// named). Retried, but the same answer again and again means this server does not speak
    /// the protocol as ossup does: see [`MAX_UNUSABLE`].
    Unusable(&'static str),
    /// The server's CRC-64 for the bytes it stored differs from ours.
    CrcMismatch,
    /// Reading the local file failed.
    LocalRead,
    /// The local file changed (length, mtime or inode) while uploading.
    SourceChanged,
    /// The HTTP proxy could not be used (see [`ProxyFailure`]); the endpoint was not reached.
    Proxy(ProxyFailure),
    /// A refreshable credentials source (see `io::credentials`) gave credentials the server
    /// rejected with `code` (`SecurityTokenExpired`, ...), or has none usable now (`None`:
    /// the request was not sent). Retried with backoff: the queue is held until the source
    /// gives credentials that work, within the retry budget.
    AwaitingCredentials {
        /// The server's rejection code, if the request was sent.
        code: Option<String>,
    },
}

/// How the proxy in front of the endpoint failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFailure {
    /// The proxy's name does not resolve, or no address accepts a connection.
    Unreachable,
    /// The proxy answered `CONNECT` with 407 (or 401, as tinyproxy does): it wants other
    /// credentials (configuration).
    AuthRequired(u16),
    /// The proxy refused the tunnel with this status (403, 502, 503, ...).
    Refused(u16),
    /// The proxy's answer to `CONNECT` was not HTTP, or too long.
    Malformed,
}

/// The failure a 2xx body that could not be used stands for: a document that parses but lacks
/// what the protocol needs is [`Failure::Unusable`] (which stops a run when it repeats, see
/// [`MAX_UNUSABLE`]); anything else wrong with it is [`Failure::Malformed`] (retried).
pub fn body_failure(e: &crate::proto::xml::XmlError) -> Failure {
    match e {
        crate::proto::xml::XmlError::Missing(what) => Failure::Unusable(what),
        _ => Failure::Malformed,
    }
}

/// Well-formed but unusable answers ([`Failure::Unusable`]) of the same kind after which a
/// run stops with a configuration error instead of retrying for the whole budget.
pub const MAX_UNUSABLE: u32 = 3;

/// True if `failure` says the server does not implement the operation at all (HTTP 405 or
/// 501, or the codes `NotImplemented` / `MethodNotAllowed`), as opposed to refusing this
/// request. Such a server never will: ossup falls back (a fresh upload when ListParts is
/// missing; `abort --forget` for a record the server cannot abort).
pub fn is_unsupported(failure: &Failure) -> bool {
    match failure {
        Failure::Status { status, code } => {
            matches!(status, 405 | 501)
                || matches!(code_of(code), Some("NotImplemented" | "MethodNotAllowed"))
        }
        _ => false,
    }
}

/// What to do about a [`Failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Try the same request again after a backoff.
    Retry,
    /// Take the server's time, correct the clock offset, and retry at once.
    FixClock,
    /// The upload id is gone (`NoSuchUpload`): reconcile or start a fresh upload.
    UploadGone,
    /// The part list was rejected at Complete (`InvalidPart`, `InvalidPartOrder`): list again.
    Relist,
    /// Give up now: credentials, permissions, configuration or local data.
    Fatal,
}

/// Error codes that mean "the server is busy or had a transient problem": retried whatever
/// the HTTP status says (S3 can even send `InternalError` inside a 200 Complete response).
const RETRY_CODES: &[&str] = &[
    "SlowDown",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    // Content-MD5 mismatch: the bytes were damaged on the way, like `Failure::CrcMismatch`.
    "InvalidDigest",
    // S3, MinIO and Ceph name the same Content-MD5 mismatch `BadDigest` (400).
    "BadDigest",
];

/// Error codes that mean the credentials themselves are wrong, expired or not allowed.
const CREDENTIAL_CODES: &[&str] = &[
    "AccessDenied",
    "SignatureDoesNotMatch",
    "InvalidAccessKeyId",
    "InvalidSecurityToken",
    "SecurityTokenExpired",
    // S3's names for an expired or unknown session token (400).
    "ExpiredToken",
    "InvalidToken",
];

/// Error codes that no retry can fix (configuration, request or object state), fatal
/// whatever the HTTP status says.
const FATAL_CODES: &[&str] = &[
    "NoSuchBucket",
    "InvalidBucketName",
    "InvalidArgument",
    "InvalidObjectName",
    "KeyTooLong",
    "EntityTooSmall",
    "EntityTooLarge",
    "MethodNotAllowed",
    "PreconditionFailed",
    "FileAlreadyExists",
    "ObjectAlreadyExists",
    "NoSuchKey",
];

/// The error code of a `Status` failure, with an empty code treated as absent.
fn code_of(code: &Option<String>) -> Option<&str> {
    code.as_deref().filter(|c| !c.is_empty())
}

/// Whether `op` names an existing multipart upload by its upload id.
fn has_upload_id(op: Op) -> bool {
    matches!(
        op,
        Op::UploadPart | Op::ListParts | Op::Complete | Op::Abort
    )
}

/// Classifies `failure` of operation `op`. See the module documentation for the table.
pub fn classify(op: Op, failure: &Failure) -> Verdict {
    match failure {
        Failure::Dns
        | Failure::Connect
        | Failure::Reset
        | Failure::TimedOut
        | Failure::Tls
        | Failure::Malformed
        | Failure::Unusable(_)
        | Failure::CrcMismatch
        | Failure::AwaitingCredentials { .. } => Verdict::Retry,
        Failure::TlsCertificate | Failure::LocalRead | Failure::SourceChanged => Verdict::Fatal,
        Failure::Proxy(p) => match p {
            ProxyFailure::AuthRequired(_) => Verdict::Fatal,
            // A proxy that refuses the tunnel is retried: 403 and 5xx are how proxies say
            // "upstream unreachable" or "busy"; the retry budget bounds it.
            ProxyFailure::Unreachable | ProxyFailure::Refused(_) | ProxyFailure::Malformed => {
                Verdict::Retry
            }
        },
        Failure::Status { status, code } => classify_status(op, *status, code_of(code)),
    }
}

/// The `Failure::Status` part of [`classify`]: the error code first, then the status.
fn classify_status(op: Op, status: u16, code: Option<&str>) -> Verdict {
    if let Some(code) = code {
        match code {
            "RequestTimeTooSkewed" => return Verdict::FixClock,
            "NoSuchUpload" if has_upload_id(op) => return Verdict::UploadGone,
            "NoSuchUpload" => return Verdict::Fatal,
            "InvalidPart" | "InvalidPartOrder" if op == Op::Complete => return Verdict::Relist,
            "InvalidPart" | "InvalidPartOrder" => return Verdict::Fatal,
            _ => {}
        }
        if RETRY_CODES.contains(&code) {
            return Verdict::Retry;
        }
        if CREDENTIAL_CODES.contains(&code) || FATAL_CODES.contains(&code) {
            return Verdict::Fatal;
        }
    }
    match status {
        // "Not Implemented" does not change with time (s3rver answers ListParts and Abort
        // with it): the caller falls back where it can (see [`is_unsupported`]).
        501 => Verdict::Fatal,
        500..=599 | 408 | 429 => Verdict::Retry,
        401 if code.is_none() => Verdict::Retry,
        _ => Verdict::Fatal,
    }
}

/// Whether `failure` says the credentials are wrong, expired or lack permission: a
/// credential error code (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied`,
/// `InvalidSecurityToken`, `SecurityTokenExpired`) with any status, any 401 whose code is not
/// `RequestTimeTooSkewed`, or a 403 without a code. The CLI uses it to pick exit code 77
/// (`EX_NOPERM`); it is meant for the *final* failure, so a bare 401 counts even though
/// [`classify`] retries it first.
pub fn is_credentials_problem(failure: &Failure) -> bool {
    let Failure::Status { status, code } = failure else {
        return false;
    };
    match code_of(code) {
        Some(c) if CREDENTIAL_CODES.contains(&c) => true,
        Some("RequestTimeTooSkewed") => false,
        Some(_) => *status == 401,
        None => matches!(status, 401 | 403),
    }
}

/// The slowest link rate (bytes per second) ossup is built to finish on. Used only to bound
/// how long an answer may take to start (see [`response_wait_ms`]).
pub const FLOOR_RATE: u64 = 16 * 1024;
/// The most request bytes a path may accept (acknowledge) without having delivered them yet:
/// the kernel's send buffer, a carrier's TCP proxy, a modem's queue.
pub const MAX_PARKED: u64 = 4 << 20;

/// How long to wait for the first byte of a response after the last byte of a request body of
/// `body_len` bytes was handed to the kernel.
///
/// The idle timeout alone is wrong here: on a slow link the kernel (or a middlebox) accepts a
/// whole part at once, so the last write returns early and the server only sees the end of
/// the body after it drained through the link. Nothing on the client shows that draining as
/// progress, so the wait allows for it: `idle + min(body_len, MAX_PARKED) / FLOOR_RATE`.
pub fn response_wait_ms(idle_ms: u64, body_len: u64) -> u64 {
    let drain = body_len.min(MAX_PARKED).saturating_mul(1000) / FLOOR_RATE;
    idle_ms.saturating_add(drain)
}

/// The byte rate below which a response is abandoned: every response must arrive at least
/// this fast on average (over its whole head and its body), whatever `--idle-timeout` is,
/// so a server that trickles one byte per second cannot hold an exchange for hours.
pub const DEADLINE_RATE: u64 = FLOOR_RATE / 4;

/// Most interim (1xx) heads accepted before the final one in one exchange; more is malformed.
pub const MAX_INTERIM: u32 = 8;

/// The longest an exchange phase moving `bytes` may take, in milliseconds: the idle timeout
/// (the wait for its first byte) plus `bytes` at [`DEADLINE_RATE`].
pub fn transfer_deadline_ms(idle_ms: u64, bytes: u64) -> u64 {
    idle_ms.saturating_add(bytes.saturating_mul(1000) / DEADLINE_RATE)
}

/// Capped exponential backoff with caller-supplied jitter ("equal jitter": at least half of
/// the bound, so that a retry storm still spreads out but never fires at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay bound for the first retry, in milliseconds.
    pub base_ms: u64,
    /// Largest delay bound, in milliseconds.
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_ms: 500,
            cap_ms: 60_000,
        }
    }
}

impl Backoff {
    /// The delay bound for retry number `attempt` (1-based; 0 is treated as 1):
    /// `min(cap_ms, base_ms * 2^(attempt-1))`, computed without overflow for any `attempt`.
    /// Never decreases as `attempt` grows.
    pub fn bound_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1);
        let raw = if self.base_ms == 0 {
            0
        } else if shift < 64 && self.base_ms <= (u64::MAX >> shift) {
            self.base_ms << shift
        } else {
            u64::MAX
        };
        raw.min(self.cap_ms)
    }

    /// The delay before retry number `attempt` (1-based): a value in `[bound/2, bound]` where
    /// `bound = min(cap, base * 2^(attempt-1))`, chosen by `jitter` (any `u64`, e.g. random).
    ///
    /// Exactly `bound/2 + jitter % (bound/2 + 1)`, so `jitter == 0` gives the shortest delay.
    pub fn delay_ms(&self, attempt: u32, jitter: u64) -> u64 {
        let half = self.bound_ms(attempt) / 2;
        half + jitter % (half + 1)
    }
}

#[cfg(test)]
mod tests {
    /// Issue 10 item 10: S3's Content-MD5 mismatch is a damaged transfer, not a configuration
    /// error: the part is sent again (it was fatal, exit 78, which stopped watch).
    #[test]
    fn s3_bad_digest_is_a_transient_transfer_error() {
        use super::*;
        for op in [Op::UploadPart, Op::PutObject] {
            let f = Failure::Status {
                status: 400,
                code: Some("BadDigest".into()),
            };
            assert_eq!(classify(op, &f), Verdict::Retry);
            assert!(!is_credentials_problem(&f));
        }
    }

    #[test]
    fn response_wait_allows_a_parked_body_to_drain() {
        assert_eq!(response_wait_ms(5000, 0), 5000);
        // 100 KiB parked at 16 KiB/s drains in 6.25 s: a 20 KB/s link delivers it in time.
        assert_eq!(response_wait_ms(5000, 100 * 1024), 5000 + 6250);
        assert!(response_wait_ms(5000, 100 * 1024) > 100 * 1024 * 1000 / 20_000);
        // Capped: a huge part cannot make a dead connection linger for hours.
        assert_eq!(response_wait_ms(30_000, 5 << 30), 30_000 + 256_000);
        assert_eq!(response_wait_ms(u64::MAX, u64::MAX), u64::MAX);
    }

    use super::*;
    use proptest::prelude::*;

    const ALL_OPS: [Op; 8] = [
        Op::PutObject,
        Op::Initiate,
        Op::UploadPart,
        Op::ListParts,
        Op::Complete,
        Op::Abort,
        Op::HeadObject,
        Op::ListUploads,
    ];

    fn st(status: u16, code: Option<&str>) -> Failure {
        Failure::Status {
            status,
            code: code.map(str::to_owned),
        }
    }

    #[test]
    fn transport_failures() {
        let table = [
            (Failure::Dns, Verdict::Retry),
            (Failure::Connect, Verdict::Retry),
            (Failure::Reset, Verdict::Retry),
            (Failure::TimedOut, Verdict::Retry),
            (Failure::Tls, Verdict::Retry),
            (Failure::Malformed, Verdict::Retry),
            (Failure::CrcMismatch, Verdict::Retry),
            (Failure::TlsCertificate, Verdict::Fatal),
            (Failure::LocalRead, Verdict::Fatal),
            (Failure::SourceChanged, Verdict::Fatal),
            // Held for a refreshable credentials source: retried, never a credentials exit.
            (Failure::AwaitingCredentials { code: None }, Verdict::Retry),
            (
                Failure::AwaitingCredentials {
                    code: Some("SecurityTokenExpired".into()),
                },
                Verdict::Retry,
            ),
        ];
        for (failure, want) in table {
            for op in ALL_OPS {
                assert_eq!(classify(op, &failure), want, "{op} {failure:?}");
                assert!(!is_credentials_problem(&failure), "{failure:?}");
            }
        }
    }

    #[test]
    fn status_table() {
        use Verdict::*;
        // (op, status, code, verdict)
        let table: &[(Op, u16, Option<&str>, Verdict)] = &[
            // plain statuses
            (Op::UploadPart, 500, None, Retry),
            (Op::UploadPart, 502, None, Retry),
            (Op::UploadPart, 503, None, Retry),
            (Op::Complete, 599, None, Retry),
            (Op::UploadPart, 408, None, Retry),
            (Op::UploadPart, 429, None, Retry),
            (Op::Initiate, 401, None, Retry),
            (Op::Initiate, 401, Some(""), Retry),
            (Op::Initiate, 400, None, Fatal),
            (Op::Initiate, 403, None, Fatal),
            (Op::Initiate, 404, None, Fatal),
            (Op::Initiate, 409, None, Fatal),
            (Op::Initiate, 412, None, Fatal),
            (Op::Initiate, 499, None, Fatal),
            (Op::Initiate, 301, None, Fatal),
            (Op::Initiate, 200, None, Fatal),
            (Op::Initiate, 600, None, Fatal),
            (Op::Initiate, 0, None, Fatal),
            (Op::HeadObject, 404, None, Fatal),
            (Op::HeadObject, 404, Some("NoSuchKey"), Fatal),
            // clock skew
            (Op::UploadPart, 403, Some("RequestTimeTooSkewed"), FixClock),
            (Op::Initiate, 400, Some("RequestTimeTooSkewed"), FixClock),
            (Op::Complete, 401, Some("RequestTimeTooSkewed"), FixClock),
            // upload gone
            (Op::UploadPart, 404, Some("NoSuchUpload"), UploadGone),
            (Op::ListParts, 404, Some("NoSuchUpload"), UploadGone),
            (Op::Complete, 404, Some("NoSuchUpload"), UploadGone),
            (Op::Abort, 404, Some("NoSuchUpload"), UploadGone),
            (Op::Initiate, 404, Some("NoSuchUpload"), Fatal),
            (Op::PutObject, 404, Some("NoSuchUpload"), Fatal),
            (Op::HeadObject, 404, Some("NoSuchUpload"), Fatal),
            (Op::ListUploads, 404, Some("NoSuchUpload"), Fatal),
            // relist
            (Op::Complete, 400, Some("InvalidPart"), Relist),
            (Op::Complete, 400, Some("InvalidPartOrder"), Relist),
            (Op::UploadPart, 400, Some("InvalidPart"), Fatal),
            (Op::ListParts, 400, Some("InvalidPartOrder"), Fatal),
            // transient codes, whatever the status
            (Op::UploadPart, 503, Some("SlowDown"), Retry),
            (Op::UploadPart, 400, Some("RequestTimeout"), Retry),
            (Op::UploadPart, 503, Some("ServiceUnavailable"), Retry),
            (Op::Complete, 200, Some("InternalError"), Retry),
            (Op::UploadPart, 400, Some("InvalidDigest"), Retry),
            // credentials and configuration
            (Op::Initiate, 403, Some("AccessDenied"), Fatal),
            (Op::Initiate, 403, Some("SignatureDoesNotMatch"), Fatal),
            (Op::Initiate, 403, Some("InvalidAccessKeyId"), Fatal),
            (Op::Initiate, 401, Some("InvalidAccessKeyId"), Fatal),
            (Op::Initiate, 401, Some("SignatureDoesNotMatch"), Fatal),
            (Op::Initiate, 500, Some("AccessDenied"), Fatal),
            (Op::Initiate, 403, Some("SecurityTokenExpired"), Fatal),
            (Op::Initiate, 404, Some("NoSuchBucket"), Fatal),
            (Op::Initiate, 400, Some("InvalidBucketName"), Fatal),
            (Op::UploadPart, 400, Some("InvalidArgument"), Fatal),
            (Op::Complete, 400, Some("EntityTooSmall"), Fatal),
            (Op::PutObject, 400, Some("EntityTooLarge"), Fatal),
            (Op::Initiate, 400, Some("InvalidObjectName"), Fatal),
            (Op::Complete, 412, Some("PreconditionFailed"), Fatal),
            (Op::Complete, 409, Some("FileAlreadyExists"), Fatal),
            // unknown codes fall back to the status
            (Op::UploadPart, 500, Some("SomethingNew"), Retry),
            (Op::UploadPart, 429, Some("Throttled"), Retry),
            (Op::UploadPart, 400, Some("SomethingNew"), Fatal),
            (Op::UploadPart, 401, Some("SomethingNew"), Fatal),
            // codes are exact
            (Op::UploadPart, 400, Some("slowdown"), Fatal),
            (Op::UploadPart, 404, Some("nosuchupload"), Fatal),
        ];
        for &(op, status, code, want) in table {
            assert_eq!(
                classify(op, &st(status, code)),
                want,
                "{op} {status} {code:?}"
            );
        }
    }

    #[test]
    fn credentials_problems() {
        let yes = [
            st(403, Some("AccessDenied")),
            st(403, Some("SignatureDoesNotMatch")),
            st(403, Some("InvalidAccessKeyId")),
            st(400, Some("InvalidAccessKeyId")),
            st(403, Some("InvalidSecurityToken")),
            st(403, Some("SecurityTokenExpired")),
            st(401, None),
            st(401, Some("")),
            st(401, Some("Unauthorized")),
            st(403, None),
        ];
        let no = [
            st(403, Some("RequestTimeTooSkewed")),
            st(401, Some("RequestTimeTooSkewed")),
            st(404, Some("NoSuchBucket")),
            st(404, None),
            st(400, None),
            st(500, None),
            st(503, Some("SlowDown")),
            st(403, Some("QuotaExceeded")),
            Failure::TlsCertificate,
            Failure::Reset,
        ];
        for f in &yes {
            assert!(is_credentials_problem(f), "{f:?}");
        }
        for f in &no {
            assert!(!is_credentials_problem(f), "{f:?}");
        }
    }

    #[test]
    fn backoff_defaults_and_examples() {
        let b = Backoff::default();
        assert_eq!(b.bound_ms(0), 500);
        assert_eq!(b.bound_ms(1), 500);
        assert_eq!(b.bound_ms(2), 1_000);
        assert_eq!(b.bound_ms(3), 2_000);
        assert_eq!(b.bound_ms(7), 32_000);
        assert_eq!(b.bound_ms(8), 60_000);
        assert_eq!(b.delay_ms(1, 0), 250);
        assert_eq!(b.delay_ms(1, 250), 500);
        assert_eq!(b.delay_ms(1, 251), 250);
        assert_eq!(b.delay_ms(2, 1), 501);
    }

    #[test]
    fn backoff_bounds_are_monotone_and_capped_for_every_attempt_size() {
        for b in [
            Backoff::default(),
            Backoff {
                base_ms: 1,
                cap_ms: u64::MAX,
            },
            Backoff {
                base_ms: u64::MAX,
                cap_ms: u64::MAX,
            },
            Backoff {
                base_ms: 3,
                cap_ms: 1_000,
            },
            Backoff {
                base_ms: 5_000,
                cap_ms: 1_000,
            },
            Backoff {
                base_ms: 0,
                cap_ms: 1_000,
            },
            Backoff {
                base_ms: 7,
                cap_ms: 0,
            },
        ] {
            let mut attempts: Vec<u32> = (0..=200).collect();
            attempts.extend([1_000, 65_535, 1 << 20, u32::MAX / 2, u32::MAX - 1, u32::MAX]);
            let mut prev = 0;
            for a in attempts {
                let bound = b.bound_ms(a);
                assert!(bound >= prev, "{b:?} attempt {a}");
                assert!(bound <= b.cap_ms, "{b:?} attempt {a}");
                for jitter in [0, 1, u64::MAX, u64::MAX / 3, bound / 2, bound] {
                    let d = b.delay_ms(a, jitter);
                    assert!(
                        d >= bound / 2 && d <= bound,
                        "{b:?} attempt {a} jitter {jitter}"
                    );
                }
                prev = bound;
            }
            // Large attempts reach the cap (unless the base is zero).
            if b.base_ms > 0 {
                assert_eq!(b.bound_ms(u32::MAX), b.cap_ms);
                assert_eq!(b.bound_ms(65), b.cap_ms);
            } else {
                assert_eq!(b.bound_ms(u32::MAX), 0);
            }
        }
        // u64::MAX base with no cap: the first bound is the base, and doubling saturates.
        let b = Backoff {
            base_ms: u64::MAX,
            cap_ms: u64::MAX,
        };
        assert_eq!(b.bound_ms(1), u64::MAX);
        assert_eq!(b.bound_ms(2), u64::MAX);
        // A base that just fits after 63 doublings.
        let b = Backoff {
            base_ms: 1,
            cap_ms: u64::MAX,
        };
        assert_eq!(b.bound_ms(64), 1 << 63);
        assert_eq!(b.bound_ms(65), u64::MAX);
    }

    proptest! {
        #[test]
        fn backoff_properties(
            base in 0u64..=u64::MAX,
            cap in 0u64..=u64::MAX,
            attempt in 0u32..=u32::MAX,
            jitter in 0u64..=u64::MAX,
        ) {
            let b = Backoff { base_ms: base, cap_ms: cap };
            let bound = b.bound_ms(attempt);
            prop_assert!(bound <= cap);
            prop_assert!(b.bound_ms(attempt.saturating_add(1)) >= bound);
            // Compare with exact arithmetic in u128 where the shift is small.
            let shift = attempt.saturating_sub(1);
            if shift < 64 {
                let exact = (u128::from(base) << shift).min(u128::from(cap));
                prop_assert_eq!(u128::from(bound), exact.min(u128::from(u64::MAX)));
            } else if base > 0 {
                prop_assert_eq!(bound, cap);
            }
            let d = b.delay_ms(attempt, jitter);
            prop_assert!(d >= bound / 2 && d <= bound);
            prop_assert_eq!(d - bound / 2, jitter % (bound / 2 + 1));
        }

        #[test]
        fn classify_never_panics_and_unknown_codes_follow_status(
            op_i in 0usize..8,
            status in 0u16..=u16::MAX,
            code in proptest::option::of("[A-Za-z]{0,24}"),
        ) {
            let op = ALL_OPS[op_i];
            let f = Failure::Status { status, code: code.clone() };
            let v = classify(op, &f);
            let _ = is_credentials_problem(&f);
            let known = code.as_deref().is_some_and(|c| {
                RETRY_CODES.contains(&c)
                    || CREDENTIAL_CODES.contains(&c)
                    || FATAL_CODES.contains(&c)
                    || matches!(
                        c,
                        "RequestTimeTooSkewed" | "NoSuchUpload" | "InvalidPart" | "InvalidPartOrder"
                    )
            });
            if !known {
                let retry_status = (500..=599).contains(&status)
                    || status == 408
                    || status == 429
                    || (status == 401 && code.as_deref().unwrap_or("").is_empty());
                let want = if retry_status { Verdict::Retry } else { Verdict::Fatal };
                prop_assert_eq!(v, want);
            }
        }
    }

    /// Issue 11 item 11: "not implemented" is final, and is told apart from a refusal.
    #[test]
    fn not_implemented_is_final_and_recognised() {
        let st = |status, code: Option<&str>| Failure::Status {
            status,
            code: code.map(str::to_string),
        };
        assert_eq!(classify(Op::ListParts, &st(501, None)), Verdict::Fatal);
        assert_eq!(classify(Op::Abort, &st(405, None)), Verdict::Fatal);
        assert!(is_unsupported(&st(501, None)));
        assert!(is_unsupported(&st(405, Some("MethodNotAllowed"))));
        assert!(is_unsupported(&st(400, Some("NotImplemented"))));
        assert!(!is_unsupported(&st(403, Some("AccessDenied"))));
        assert!(!is_unsupported(&st(503, None)));
        assert!(!is_unsupported(&Failure::Malformed));
        assert_eq!(classify(Op::UploadPart, &st(503, None)), Verdict::Retry);
    }
}

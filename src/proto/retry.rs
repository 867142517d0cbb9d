//! Failure classification and backoff.
//!
//! Owns: which failures are retried, which need a clock correction, which restart the upload
//! and which are fatal; and the capped exponential backoff schedule. Must not: sleep, read a
//! clock or generate randomness (jitter comes in as an argument), or match on error strings.

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
    /// The server's CRC-64 for the bytes it stored differs from ours.
    CrcMismatch,
    /// Reading the local file failed.
    LocalRead,
    /// The local file changed (length, mtime or inode) while uploading.
    SourceChanged,
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

/// Classifies `failure` of operation `op`.
pub fn classify(op: Op, failure: &Failure) -> Verdict {
    let _ = (op, failure);
    todo!()
}

/// Capped exponential backoff with caller-supplied jitter ("full jitter").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay bound for the first retry, in milliseconds.
    pub base_ms: u64,
    /// Largest delay bound, in milliseconds.
    pub cap_ms: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base_ms: 500, cap_ms: 60_000 }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (1-based): a value in `[bound/2, bound]` where
    /// `bound = min(cap, base * 2^(attempt-1))`, chosen by `jitter` (any `u64`, e.g. random).
    pub fn delay_ms(&self, attempt: u32, jitter: u64) -> u64 {
        let _ = (attempt, jitter);
        todo!()
    }
}

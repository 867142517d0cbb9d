//! The library's error type.
//!
//! Owns: [`Error`], one line of `Display` per variant, and the mapping to sysexits exit codes.
//! Must not: decide retry policy (that is `proto::retry`), or print (the CLI does).

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::config::ConfigError;
use crate::proto::retry::{Failure, ProxyFailure};
use crate::proto::Op;

/// Exit codes (sysexits.h) that the CLI uses, so a supervisor can act on them.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// Command-line usage error.
    pub const USAGE: u8 = 64;
    /// The file changed, or the stored data does not match it.
    pub const DATAERR: u8 = 65;
    /// No such file (or not a readable regular file).
    pub const NOINPUT: u8 = 66;
    /// The checkpoint directory or journal cannot be written.
    pub const CANTCREAT: u8 = 73;
    /// Reading the local file failed.
    pub const IOERR: u8 = 74;
    /// Server or network unavailable after the retry budget, or the upload is locked by
    /// another process: state kept, run again to resume.
    pub const TEMPFAIL: u8 = 75;
    /// Credentials rejected.
    pub const NOPERM: u8 = 77;
    /// Configuration error.
    pub const CONFIG: u8 = 78;
}

/// An upload failure, with the context a person needs to act on it.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value cannot work.
    Config(ConfigError),
    /// The local file does not exist, is not a regular file, or cannot be opened.
    NoSuchFile {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Reading the local file failed during the upload.
    Read {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file changed (length, mtime or inode) during the upload; it was not completed.
    FileChanged {
        /// The path.
        path: PathBuf,
    },
    /// The server's CRC-64 of the stored data differs from the local bytes.
    DataMismatch {
        /// What failed.
        op: Op,
        /// Local CRC-64.
        local: u64,
        /// Server CRC-64.
        server: u64,
    },
    /// The checkpoint directory or journal cannot be used.
    Checkpoint {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The journal was written by a newer ossup.
    NewerJournal {
        /// The path.
        path: PathBuf,
        /// Its format version.
        version: u8,
    },
    /// Another process is uploading the same file to the same destination.
    Locked {
        /// The journal path.
        path: PathBuf,
        /// The holder's PID, if known.
        pid: Option<u32>,
    },
    /// The server refused the request, and retrying cannot help.
    Service {
        /// What failed.
        op: Op,
        /// HTTP status.
        status: u16,
        /// OSS/S3 error code.
        code: String,
        /// Error message from the server.
        message: String,
        /// Request id, for support.
        request_id: String,
    },
    /// The HTTP proxy answered `CONNECT` with 407: its credentials are missing or wrong.
    ProxyAuth {
        /// The proxy, as `host:port` (never its credentials).
        proxy: String,
        /// The proxy's status (407, or 401 from some proxies).
        status: u16,
    },
    /// The TLS peer could not be verified, or no TLS handshake with it is possible.
    Tls {
        /// What failed.
        op: Op,
        /// What is wrong (issuer, names, dates and the local clock, ...); may be empty.
        detail: String,
    },
    /// The server answered the same operation again and again with a well-formed document
    /// that lacks what the protocol needs: it does not speak OSS/S3 as ossup does (a wrong
    /// endpoint or scheme, a captive portal, a store without this operation). State is kept.
    Unusable {
        /// What failed.
        op: Op,
        /// The element the answers lacked (or had with an unusable value).
        what: &'static str,
        /// The last answer's request id, if it had one.
        request_id: String,
    },
    /// Retryable failures went on for longer than the retry budget. State is kept.
    GaveUp {
        /// What failed last.
        op: Op,
        /// The last failure.
        failure: Failure,
        /// Failed attempts in the last run of failures.
        attempts: u32,
        /// The last service error details (code, message, request id), if any.
        detail: Option<(String, String, String)>,
    },
}

impl Error {
    /// True if running again later can finish the upload (the journal is kept).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::GaveUp { .. } | Error::Locked { .. })
    }

    /// The sysexits code the CLI exits with.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_)
            | Error::NewerJournal { .. }
            | Error::Tls { .. }
            | Error::ProxyAuth { .. }
            | Error::Unusable { .. } => exit::CONFIG,
            Error::NoSuchFile { .. } => exit::NOINPUT,
            Error::Read { .. } => exit::IOERR,
            Error::FileChanged { .. } | Error::DataMismatch { .. } => exit::DATAERR,
            Error::Checkpoint { .. } => exit::CANTCREAT,
            Error::Locked { .. } | Error::GaveUp { .. } => exit::TEMPFAIL,
            Error::Service { status, code, .. } => {
                let failure = Failure::Status {
                    status: *status,
                    code: Some(code.clone()),
                };
                if crate::proto::retry::is_credentials_problem(&failure) {
                    exit::NOPERM
                } else {
                    exit::CONFIG
                }
            }
        }
    }

    /// What a person should do about it, in a few words.
    pub fn hint(&self) -> &'static str {
        match self {
            Error::Config(_) => "fix the option or board config",
            Error::NoSuchFile { .. } => "check the path",
            Error::Read { .. } => "check the file and the storage it is on",
            Error::FileChanged { .. } => "run again once the file is stable; a fresh upload starts",
            Error::DataMismatch { .. } => "run again; if it repeats, check memory and storage",
            Error::Checkpoint { .. } => {
                "use a checkpoint dir that this user owns and only it can write (--checkpoint-dir)"
            }
            Error::NewerJournal { .. } => {
                "use the newer ossup, or delete the checkpoint to start over"
            }
            Error::Locked { .. } => "wait for the other process, or use --wait",
            Error::Service {
                op: Op::Abort,
                status: 405 | 501,
                ..
            } => "this server cannot abort uploads: `ossup abort --forget` drops the local record",
            Error::Service { .. } if self.exit_code() == exit::NOPERM => {
                "check OSS_ACCESS_KEY_ID / OSS_ACCESS_KEY_SECRET, the region and the bucket policy"
            }
            Error::Service { .. } => "check the bucket, key, region and endpoint",
            Error::Tls { .. } => "check the endpoint name and --ca-file",
            Error::ProxyAuth { .. } => {
                "put the right user:password in the proxy URL (--proxy, board key proxy, HTTPS_PROXY)"
            }
            Error::Unusable { .. } => {
                "check --endpoint and --scheme (oss-v4 or s3-v4); progress is kept"
            }
            Error::GaveUp { .. } => "run again to resume; progress is kept",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(e) => write!(f, "configuration: {e}"),
            Error::NoSuchFile { path, source } => {
                write!(f, "cannot open {}: {source}", path.display())
            }
            Error::Read { path, source } => {
                write!(f, "reading {} failed: {source}", path.display())
            }
            Error::FileChanged { path } => {
                write!(
                    f,
                    "{} changed during the upload; it was not completed",
                    path.display()
                )
            }
            Error::DataMismatch { op, local, server } => write!(
                f,
                "{op}: the server's CRC-64 {server} differs from the local {local}"
            ),
            Error::Checkpoint { path, source } => {
                write!(f, "checkpoint {} unusable: {source}", path.display())
            }
            Error::NewerJournal { path, version } => write!(
                f,
                "checkpoint {} was written by a newer ossup (format {version})",
                path.display()
            ),
            Error::Locked {
                path,
                pid: Some(pid),
            } => write!(
                f,
                "another ossup (PID {pid}) is uploading this file to this destination ({})",
                path.display()
            ),
            Error::Locked { path, pid: None } => write!(
                f,
                "another ossup is uploading this file to this destination ({})",
                path.display()
            ),
            Error::Service {
                op,
                status,
                code,
                message,
                request_id,
            } => {
                write!(f, "{op} refused: HTTP {status} {code}")?;
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                if !request_id.is_empty() {
                    write!(f, " (request id {request_id})")?;
                }
                Ok(())
            }
            Error::ProxyAuth { proxy, status } => write!(
                f,
                "the proxy {proxy} refused to open a tunnel without valid credentials (HTTP {status})"
            ),
            Error::Tls { op, detail } if detail.is_empty() => write!(
                f,
                "{op}: the server's TLS certificate could not be verified"
            ),
            Error::Tls { op, detail } => write!(f, "{op}: {detail}"),
            Error::Unusable {
                op,
                what,
                request_id,
            } => {
                write!(
                    f,
                    "{op}: the server answered {} times with a document that has no usable {what}",
                    crate::proto::retry::MAX_UNUSABLE
                )?;
                if !request_id.is_empty() {
                    write!(f, " (request id {request_id})")?;
                }
                Ok(())
            }
            Error::GaveUp {
                op,
                failure,
                attempts,
                detail,
            } => {
                write!(
                    f,
                    "{op} failed {attempts} times in a row, last: {}",
                    describe_failure(failure)
                )?;
                if let Some((code, _msg, rid)) = detail {
                    if !code.is_empty() && !matches!(failure, Failure::Status { .. }) {
                        write!(f, " (earlier {code})")?;
                    }
                    if !rid.is_empty() {
                        write!(f, " (request id {rid})")?;
                    }
                }
                Ok(())
            }
        }
    }
}

/// One phrase for a failure.
pub fn describe_failure(f: &Failure) -> String {
    match f {
        Failure::Dns => "name resolution failed".into(),
        Failure::Connect => "cannot connect".into(),
        Failure::Reset => "connection reset or closed".into(),
        Failure::TimedOut => "no progress within the idle timeout".into(),
        Failure::Tls => "TLS error".into(),
        Failure::TlsCertificate => "TLS certificate not trusted".into(),
        Failure::Status {
            status,
            code: Some(c),
        } => format!("HTTP {status} {c}"),
        Failure::Status { status, code: None } => format!("HTTP {status}"),
        Failure::Malformed => "malformed response".into(),
        Failure::Unusable(what) => format!("an answer without a usable {what}"),
        Failure::CrcMismatch => "CRC-64 mismatch".into(),
        Failure::LocalRead => "local read error".into(),
        Failure::SourceChanged => "the file changed".into(),
        Failure::Proxy(ProxyFailure::Unreachable) => "cannot reach the proxy".into(),
        Failure::Proxy(ProxyFailure::AuthRequired(s)) => {
            format!("the proxy wants credentials (HTTP {s})")
        }
        Failure::Proxy(ProxyFailure::Refused(s)) => {
            format!("the proxy refused the tunnel (HTTP {s})")
        }
        Failure::Proxy(ProxyFailure::Malformed) => "the proxy's answer is not HTTP".into(),
        Failure::AwaitingCredentials { code: Some(c) } => {
            format!("credentials rejected ({c}), no fresh ones from the credentials source")
        }
        Failure::AwaitingCredentials { code: None } => {
            "no usable credentials from the credentials source".into()
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Config(e) => Some(e),
            Error::NoSuchFile { source, .. }
            | Error::Read { source, .. }
            | Error::Checkpoint { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Self {
        Error::Config(e)
    }
}

//! Credentials sources that refresh: the [`CredentialsProvider`] trait the upload consults
//! before signing each request, and [`FileSource`] (`--credentials-file`).
//!
//! Owns: reading and re-reading credential files, the "held" state (one log line when the
//! server starts rejecting what a source gave, one when credentials work again). Decisions
//! about documents, expiry and rejection codes are `proto::credentials`.
//!
//! **Secrets.** Nothing here logs or formats a secret or a token: errors and log lines name
//! the source (a path) and what is wrong, never a value.

use std::fmt;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::proto::credentials::{is_rejection, parse_document, Issued, MAX_DOCUMENT};
use crate::proto::retry::Failure;
use crate::proto::sign::Credentials;

/// Why a source has no credentials to give. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError(pub String);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SourceError {}

/// Where an upload gets its credentials from, asked before signing every request. An embedder
/// can implement it to plug in its own broker (MQTT, an HTTPS endpoint with a device
/// certificate, ...). Calls come from the upload's thread; keep them quick (cache, and fetch
/// in the background if fetching is slow).
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// The credentials to sign the next request with, or why there are none now (the
    /// request is then retried with backoff, within the retry budget).
    fn credentials(&self) -> Result<Credentials, SourceError>;

    /// The server rejected `used` with `code` (one of
    /// [`crate::proto::credentials::is_rejection`]'s codes): give different ones next time
    /// if possible.
    fn rejected(&self, used: &Credentials, code: &str);

    /// A request signed with `used` got an answer that was not a credentials rejection.
    fn accepted(&self, used: &Credentials);

    /// A short description of the source for logs and `status` (a path, "environment"),
    /// never a secret.
    fn describe(&self) -> String;

    /// Unix seconds when the current credentials expire, if known.
    fn expires(&self) -> Option<i64> {
        None
    }
}

/// What the driver should report to the upload state machine for a response (or a failure)
/// to a request signed with `used`: a credentials rejection becomes
/// [`Failure::AwaitingCredentials`] (retried, not fatal) after telling the provider.
pub fn after_failure(p: &dyn CredentialsProvider, used: &Credentials, f: Failure) -> Failure {
    match f {
        Failure::Status {
            code: Some(ref c), ..
        } if is_rejection(c) => {
            p.rejected(used, c);
            Failure::AwaitingCredentials {
                code: Some(c.clone()),
            }
        }
        other => other,
    }
}

/// How long credentials the server rejected are not offered again while the file still
/// holds them, so that parallel jobs do not all send doomed requests (afterwards they are
/// tried again, paced by the retry backoff: the rejection may have been the server's
/// mistake, e.g. a key not yet propagated).
const REJECTED_QUIET: Duration = Duration::from_secs(3);

/// What identifies one version of the file: a replaced or rewritten file changes one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(m: &fs::Metadata) -> Stamp {
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
        }
    }
}

#[derive(Debug)]
struct FileState {
    /// The version last read (successfully or not).
    stamp: Option<Stamp>,
    /// The last credentials read successfully.
    current: Issued,
    /// When the server last rejected `current` (cleared when the file changes).
    rejected_at: Option<Instant>,
    /// The server rejected credentials and none have worked since (logged once each way).
    held: bool,
    /// The problem with the file as it is now, already logged once.
    problem: Option<String>,
    /// The mode warning was logged.
    mode_warned: bool,
}

/// `--credentials-file PATH`: a JSON credential document (see
/// [`crate::proto::credentials::parse_document`]) that another process replaces at any time.
/// Before each request the file is `stat`ed; when its inode, size, mtime or ctime changed it
/// is read again, so new credentials are used from the next request on. A file that later
/// goes missing or cannot be parsed is logged once and the last good credentials stay in use.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    state: Mutex<FileState>,
}

/// Reads and parses the credential file at `path` (bounded), with its stamp.
fn read_file(path: &Path) -> Result<(Issued, Stamp, u32), String> {
    let f = fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let meta = f.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut buf = Vec::new();
    f.take(MAX_DOCUMENT as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read it: {e}"))?;
    let issued = parse_document(&buf).map_err(|e| e.to_string())?;
    Ok((issued, Stamp::of(&meta), meta.mode()))
}

/// Warns (once per source: `warned`) about a file other users can read.
fn warn_mode(path: &Path, mode: u32, warned: &mut bool) {
    if mode & 0o077 != 0 && !*warned {
        *warned = true;
        log::warn!(
            "credentials file {} can be read by other users (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        );
    }
}

impl FileSource {
    /// Reads `path` now. A missing, unreadable or unparseable file is an error naming the
    /// path and the reason (never the content): at start that is a configuration error.
    pub fn open(path: impl Into<PathBuf>) -> Result<FileSource, SourceError> {
        let path = path.into();
        let (current, stamp, mode) = read_file(&path)
            .map_err(|why| SourceError(format!("credentials file {}: {why}", path.display())))?;
        let mut mode_warned = false;
        warn_mode(&path, mode, &mut mode_warned);
        Ok(FileSource {
            path,
            state: Mutex::new(FileState {
                stamp: Some(stamp),
                current,
                rejected_at: None,
                held: false,
                problem: None,
                mode_warned,
            }),
        })
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials currently in use (as last read).
    pub fn current(&self) -> Issued {
        self.lock().current.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FileState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Re-reads the file if it changed since it was last read.
    fn refresh(&self, st: &mut FileState) {
        let stamp = fs::metadata(&self.path).map(|m| Stamp::of(&m));
        let changed = match &stamp {
            Ok(s) => st.stamp != Some(*s),
            Err(_) => st.stamp.is_some(),
        };
        if !changed {
            return;
        }
        match read_file(&self.path) {
            Ok((issued, stamp, mode)) => {
                if st.problem.take().is_some() {
                    log::info!("credentials file {} is usable again", self.path.display());
                }
                // A new file (the usual atomic replace) may have another mode.
                warn_mode(&self.path, mode, &mut st.mode_warned);
                if issued != st.current {
                    st.rejected_at = None;
                    log::debug!("credentials file {}: new credentials", self.path.display());
                }
                st.current = issued;
                st.stamp = Some(stamp);
            }
            Err(why) => {
                // Half-written by a non-atomic writer, or gone: keep the last good ones.
                st.stamp = stamp.ok();
                if st.problem.as_deref() != Some(why.as_str()) {
                    log::warn!(
                        "credentials file {}: {why}; using the last credentials read from it",
                        self.path.display()
                    );
                    st.problem = Some(why);
                }
            }
        }
    }
}

impl CredentialsProvider for FileSource {
    fn credentials(&self) -> Result<Credentials, SourceError> {
        let mut st = self.lock();
        self.refresh(&mut st);
        if st.rejected_at.is_some_and(|t| t.elapsed() < REJECTED_QUIET) {
            return Err(SourceError(format!(
                "the credentials in {} were rejected and it has not changed since",
                self.path.display()
            )));
        }
        Ok(st.current.credentials.clone())
    }

    fn rejected(&self, used: &Credentials, code: &str) {
        let mut st = self.lock();
        if st.current.credentials == *used {
            st.rejected_at = Some(Instant::now());
        }
        if !st.held {
            st.held = true;
            log::warn!(
                "the server rejected the credentials from {} ({}); holding uploads until fresh ones work",
                self.path.display(),
                code.escape_debug()
            );
        }
    }

    fn accepted(&self, _used: &Credentials) {
        let mut st = self.lock();
        if st.held {
            st.held = false;
            log::info!(
                "credentials from {} work again; uploads continue",
                self.path.display()
            );
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.path.display())
    }

    fn expires(&self) -> Option<i64> {
        self.lock().current.expires
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(id: &str) -> String {
        format!(
            r#"{{"AccessKeyId":"{id}","AccessKeySecret":"secret-{id}","SecurityToken":"tok-{id}","Expiration":"2030-01-01T00:00:00Z"}}"#
        )
    }

    /// Replaces `path` atomically, as a broker agent does.
    fn replace(path: &Path, text: &str) {
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, text).unwrap();
        fs::rename(&tmp, path).unwrap();
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ossup-creds-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn missing_or_bad_file_at_start_names_path_and_reason_only() {
        let d = tmpdir("start");
        let p = d.join("creds.json");
        let e = FileSource::open(&p).unwrap_err().to_string();
        assert!(e.contains("creds.json") && e.contains("cannot open"), "{e}");
        fs::write(
            &p,
            r#"{"AccessKeyId":"a","AccessKeySecret":"hunter2","Expiration":"soon"}"#,
        )
        .unwrap();
        let e = FileSource::open(&p).unwrap_err().to_string();
        assert!(e.contains("Expiration") && !e.contains("hunter2"), "{e}");
        fs::write(&p, "x".repeat(MAX_DOCUMENT + 10)).unwrap();
        let e = FileSource::open(&p).unwrap_err().to_string();
        assert!(e.contains("longer than"), "{e}");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn rotation_is_seen_from_the_next_request_and_bad_versions_keep_the_last_good() {
        let d = tmpdir("rotate");
        let p = d.join("creds.json");
        replace(&p, &doc("k1"));
        let s = FileSource::open(&p).unwrap();
        assert_eq!(s.credentials().unwrap().access_key_id, "k1");
        assert_eq!(
            s.expires(),
            crate::proto::credentials::parse_rfc3339("2030-01-01T00:00:00Z")
        );
        replace(&p, &doc("k2"));
        assert_eq!(s.credentials().unwrap().access_key_id, "k2");
        // Same size, rewritten in place: the ctime/mtime change is seen.
        fs::write(&p, doc("k3")).unwrap();
        assert_eq!(s.credentials().unwrap().access_key_id, "k3");
        // Garbage, then gone: the last good ones stay.
        replace(&p, "{\"AccessKeyId\":");
        assert_eq!(s.credentials().unwrap().access_key_id, "k3");
        fs::remove_file(&p).unwrap();
        assert_eq!(s.credentials().unwrap().access_key_id, "k3");
        replace(&p, &doc("k4"));
        assert_eq!(s.credentials().unwrap().access_key_id, "k4");
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn rejected_credentials_are_held_back_until_the_file_changes() {
        let d = tmpdir("reject");
        let p = d.join("creds.json");
        replace(&p, &doc("k1"));
        let s = FileSource::open(&p).unwrap();
        let used = s.credentials().unwrap();
        let f = after_failure(
            &s,
            &used,
            Failure::Status {
                status: 403,
                code: Some("SecurityTokenExpired".into()),
            },
        );
        assert_eq!(
            f,
            Failure::AwaitingCredentials {
                code: Some("SecurityTokenExpired".into())
            }
        );
        let e = s.credentials().unwrap_err().to_string();
        assert!(!e.contains("secret") && !e.contains("tok-"), "{e}");
        // Other failures pass through untouched.
        let other = Failure::Status {
            status: 403,
            code: Some("AccessDenied".into()),
        };
        assert_eq!(after_failure(&s, &used, other.clone()), other);
        replace(&p, &doc("k2"));
        let fresh = s.credentials().unwrap();
        assert_eq!(fresh.access_key_id, "k2");
        s.accepted(&fresh);
        // A rejection of credentials no longer current does not hold the new ones back.
        s.rejected(&used, "InvalidAccessKeyId");
        assert_eq!(s.credentials().unwrap().access_key_id, "k2");
        let _ = fs::remove_dir_all(&d);
    }
}

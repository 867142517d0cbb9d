//! The done-log: the durable record of spool files that were uploaded but may not have been
//! deleted or moved yet, and the small file helpers it and the watch loop share.
//!
//! Owns: the done-log's line format, reading, pruning, appending and compacting it, and the
//! key that authenticates its lines.
//! Must not: upload, delete or move spool files (the watch loop does, after [`DoneLog::record`]).
//!
//! **Integrity.** A done-log line is what allows a spool file to be deleted without uploading
//! it, so a forged line would destroy data. Every line therefore ends in a MAC: the first 16
//! bytes of HMAC-SHA256, keyed by a 32-byte secret `watch.key` (mode 0600, created once from
//! `/dev/urandom`) in the checkpoint directory, over a domain tag, the done-log's file name
//! and the rest of the line. A line without a valid MAC (forged, copied from another
//! done-log or another machine, damaged, or written by an older ossup) is ignored: its file is
//! uploaded again before it is deleted, which costs bytes but never data. A CRC would catch
//! damage but not forgery (anyone able to write the log can compute one); the MAC needs the
//! key, which only ossup's user can read. Together with the owner and mode checks of the
//! checkpoint directory and the log file, deleting a file requires proof written by this ossup.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use ossup::io::fsafe;

use super::scan::Ident;

/// Done-logs larger than this are only read this far (a pruned one holds a few lines).
pub(super) const MAX_DONE_LOG: u64 = 16 << 20;
/// The done-log is rewritten without obsolete lines once it has this many.
pub(super) const COMPACT_LINES: usize = 1024;

/// `path` with `suffix` appended to its file name.
pub(super) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

use ossup::io::fsafe::sync_parent;

/// Escapes the characters that would break a done-log line.
pub(super) fn escape(rel: &str) -> String {
    let mut s = String::with_capacity(rel.len());
    for c in rel.chars() {
        match c {
            '%' => s.push_str("%25"),
            '\t' => s.push_str("%09"),
            '\n' => s.push_str("%0A"),
            '\r' => s.push_str("%0D"),
            c => s.push(c),
        }
    }
    s
}

pub(super) fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let code = rest.get(i + 1..i + 3)?;
        out.push(match code {
            "25" => '%',
            "09" => '\t',
            "0A" => '\n',
            "0D" => '\r',
            _ => return None,
        });
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// Bytes of the done-log key.
const KEY_LEN: usize = 32;
/// Bytes of HMAC-SHA256 kept per line (hex-encoded, 32 characters).
const MAC_LEN: usize = 16;

/// The key that authenticates the lines of one done-log (see the module docs).
#[derive(Clone)]
pub(super) struct LineKey {
    key: [u8; KEY_LEN],
    /// The done-log's file name: a line is valid in this log only.
    log_name: String,
}

impl LineKey {
    /// A key for the done-log called `log_name`.
    pub(super) fn new(key: [u8; KEY_LEN], log_name: &str) -> LineKey {
        LineKey {
            key,
            log_name: log_name.to_string(),
        }
    }

    fn mac(&self, body: &str) -> Hmac<Sha256> {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        m.update(b"ossup done-log v1\0");
        m.update(self.log_name.as_bytes());
        m.update(b"\0");
        m.update(body.as_bytes());
        m
    }
}

/// Name of the key file in the checkpoint directory.
pub(super) const KEY_FILE: &str = "watch.key";

/// Reads the done-log key from `dir`, creating it (0600, from `/dev/urandom`) if missing.
/// A key file that is a link, not ours, readable by others or of the wrong size is refused.
pub(super) fn load_key(dir: &Path) -> io::Result<[u8; KEY_LEN]> {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let path = dir.join(KEY_FILE);
    let mut key = [0u8; KEY_LEN];
    match fsafe::create_new(&path, 0o600) {
        Ok(f) => {
            File::open("/dev/urandom")?.read_exact(&mut key)?;
            let r = f.write_all_at(&key, 0).and_then(|()| f.sync_all());
            if let Err(e) = r {
                let _ = fs::remove_file(&path);
                return Err(e);
            }
            sync_parent(&path)?;
            return Ok(key);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let f = fsafe::open_read(&path)?;
    fsafe::check_state_file(&f, &path)?;
    let m = f.metadata()?;
    if m.mode() & 0o077 != 0 || m.len() != KEY_LEN as u64 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing {}: a done-log key must be {KEY_LEN} bytes with mode 0600 \
                 (remove it to make a new one; files then recorded as uploaded are uploaded again)",
                path.display()
            ),
        ));
    }
    f.read_exact_at(&mut key, 0)?;
    Ok(key)
}

pub(super) fn format_line(rel: &str, id: Ident, key: &LineKey) -> String {
    let body = format!("{}\t{}\t{}\t{}", escape(rel), id.len, id.mtime_ns, id.ino);
    let tag = key.mac(&body).finalize().into_bytes();
    format!("{body}\t{}\n", ossup::proto::sign::hex(&tag[..MAC_LEN]))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The entry of one line (without its newline), if it is well formed and its MAC is valid.
pub(super) fn parse_line(line: &[u8], key: &LineKey) -> Option<(String, Ident)> {
    let line = std::str::from_utf8(line).ok()?;
    let (body, tag) = line.rsplit_once('\t')?;
    let tag = unhex(tag).filter(|t| t.len() == MAC_LEN)?;
    key.mac(body).verify_truncated_left(&tag).ok()?;
    let mut f = body.split('\t');
    let rel = unescape(f.next()?)?;
    let id = Ident {
        len: f.next()?.parse().ok()?,
        mtime_ns: f.next()?.parse().ok()?,
        ino: f.next()?.parse().ok()?,
    };
    if f.next().is_some() || rel.is_empty() {
        return None;
    }
    Some((rel, id))
}

/// Replaces the done-log at `path` with `entries` (temp file, fsync, rename, directory fsync)
/// and opens it for appending.
pub(super) fn write_entries(
    path: &Path,
    entries: &HashMap<String, Ident>,
    key: &LineKey,
) -> io::Result<File> {
    let mut text = String::new();
    for (rel, id) in entries {
        text.push_str(&format_line(rel, *id, key));
    }
    let tmp = with_suffix(path, ".tmp");
    // Exclusive create: a planted name (a link) is unlinked, never written through.
    let mut f = fsafe::create_replacing(&tmp, 0o600)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_parent(path)?;
    let f = fsafe::nofollow(OpenOptions::new().append(true)).open(path)?;
    fsafe::check_state_file(&f, path)?;
    Ok(f)
}

/// The durable record of files that were uploaded but may not have been deleted yet.
pub(super) struct DoneLog {
    pub(super) path: PathBuf,
    pub(super) file: File,
    pub(super) entries: HashMap<String, Ident>,
    /// Lines in the file (including obsolete ones).
    pub(super) lines: usize,
    key: LineKey,
}

impl DoneLog {
    /// Reads the done-log at `path`, keeps only lines whose MAC `key` proves, prunes entries
    /// whose file under `root` is gone or changed, rewrites it atomically (dropping a torn
    /// tail) and opens it for appending.
    pub(super) fn open(path: &Path, root: &Path, key: [u8; KEY_LEN]) -> io::Result<DoneLog> {
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let key = LineKey::new(key, &name);
        let mut entries = HashMap::new();
        match fsafe::open_read(path) {
            Ok(f) => {
                fsafe::check_state_file(&f, path)?;
                let mut bytes = Vec::new();
                f.take(MAX_DONE_LOG).read_to_end(&mut bytes)?;
                // Only whole lines count: a crash mid-append leaves a torn last line.
                let whole = bytes
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(&bytes[..0], |i| &bytes[..i]);
                let mut bad = 0usize;
                for line in whole.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    match parse_line(line, &key) {
                        Some((rel, id)) => {
                            entries.insert(rel, id);
                        }
                        None => bad += 1,
                    }
                }
                if bad > 0 {
                    log::warn!(
                        "{}: ignored {bad} line(s) that are damaged or fail the integrity check \
                         (forged, copied from elsewhere, or from an older ossup); their files are \
                         uploaded again before they are removed",
                        path.display()
                    );
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Keep an entry only while its file is still there, unchanged (or cannot be checked),
        // under its name or under the aside name of a retire a crash interrupted.
        entries.retain(|rel, id| {
            let path = root.join(rel.as_str());
            let keep = |p: &Path| match fs::metadata(p) {
                Ok(m) => Ident::of(&m) == *id,
                Err(e) => e.kind() != io::ErrorKind::NotFound,
            };
            keep(&path) || keep(&super::retire::aside_path(&path))
        });
        Ok(DoneLog {
            path: path.to_path_buf(),
            file: write_entries(path, &entries, &key)?,
            lines: entries.len(),
            entries,
            key,
        })
    }

    /// Rewrites the file with the current entries only.
    pub(super) fn rewrite(&mut self) -> io::Result<()> {
        self.file = write_entries(&self.path, &self.entries, &self.key)?;
        self.lines = self.entries.len();
        Ok(())
    }

    /// True if `rel` with identity `id` is recorded as uploaded.
    pub(super) fn matches(&self, rel: &str, id: Ident) -> bool {
        self.entries.get(rel) == Some(&id)
    }

    /// Records durably that `rel` with identity `id` is uploaded.
    pub(super) fn record(&mut self, rel: &str, id: Ident) -> io::Result<()> {
        self.file
            .write_all(format_line(rel, id, &self.key).as_bytes())?;
        self.file.sync_data()?;
        self.entries.insert(rel.to_string(), id);
        self.lines += 1;
        Ok(())
    }

    /// Drops the entry of `rel` (its file is gone), compacting the file now and then.
    pub(super) fn forget(&mut self, rel: &str) {
        self.entries.remove(rel);
        if self.lines >= COMPACT_LINES && self.lines > 2 * self.entries.len() {
            if let Err(e) = self.rewrite() {
                log::warn!("cannot compact {}: {e}", self.path.display());
            }
        }
    }
}

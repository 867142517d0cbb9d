//! The done-log: the durable record of spool files that were uploaded but may not have been
//! deleted or moved yet, and the small file helpers it and the watch loop share.
//!
//! Owns: the done-log's line format, reading, pruning, appending and compacting it.
//! Must not: upload, delete or move spool files (the watch loop does, after [`DoneLog::record`]).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

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

pub(super) fn format_line(rel: &str, id: Ident) -> String {
    format!("{}\t{}\t{}\t{}\n", escape(rel), id.len, id.mtime_ns, id.ino)
}

pub(super) fn parse_line(line: &[u8]) -> Option<(String, Ident)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut f = line.split('\t');
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
pub(super) fn write_entries(path: &Path, entries: &HashMap<String, Ident>) -> io::Result<File> {
    let mut text = String::new();
    for (rel, id) in entries {
        text.push_str(&format_line(rel, *id));
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
}

impl DoneLog {
    /// Reads the done-log at `path`, prunes entries whose file under `root` is gone or changed,
    /// rewrites it atomically (dropping a torn tail) and opens it for appending.
    pub(super) fn open(path: &Path, root: &Path) -> io::Result<DoneLog> {
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
                    match parse_line(line) {
                        Some((rel, id)) => {
                            entries.insert(rel, id);
                        }
                        None => bad += 1,
                    }
                }
                if bad > 0 {
                    log::warn!("{}: ignored {bad} unreadable line(s)", path.display());
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
            file: write_entries(path, &entries)?,
            lines: entries.len(),
            entries,
        })
    }

    /// Rewrites the file with the current entries only.
    pub(super) fn rewrite(&mut self) -> io::Result<()> {
        self.file = write_entries(&self.path, &self.entries)?;
        self.lines = self.entries.len();
        Ok(())
    }

    /// True if `rel` with identity `id` is recorded as uploaded.
    pub(super) fn matches(&self, rel: &str, id: Ident) -> bool {
        self.entries.get(rel) == Some(&id)
    }

    /// Records durably that `rel` with identity `id` is uploaded.
    pub(super) fn record(&mut self, rel: &str, id: Ident) -> io::Result<()> {
        self.file.write_all(format_line(rel, id).as_bytes())?;
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

//! Scanning the spool directory: which files are candidates, and what identifies a version.
//!
//! Owns: the walk over DIR (ignored names, symlink rules, depth limit) and [`Ident`].
//! Must not: decide when a file is settled or upload anything (the watch loop does).

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Directory levels below DIR that are scanned.
pub(super) const MAX_DEPTH: usize = 64;

/// What identifies one version of a file: if any of these changes, the content may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ident {
    pub(super) len: u64,
    pub(super) mtime_ns: i128,
    pub(super) ino: u64,
}

impl Ident {
    pub(super) fn of(m: &fs::Metadata) -> Ident {
        Ident {
            len: m.len(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ino: m.ino(),
        }
    }

    /// How long ago the file was last modified, by the wall clock (zero if in the future).
    pub(super) fn age(&self, wall_ns: i128) -> Duration {
        let ns = (wall_ns - self.mtime_ns).clamp(0, i128::from(u64::MAX));
        Duration::from_nanos(ns as u64)
    }
}

pub(super) fn wall_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// A file found by a scan.
pub(super) struct Found {
    pub(super) rel: String,
    pub(super) path: PathBuf,
    pub(super) id: Ident,
}

/// True for names the watch leaves alone.
pub(super) fn ignored(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b.starts_with(b".") || b.ends_with(b".tmp") || b.ends_with(b".part")
}

/// Lists the candidate files under `dir`. Entries it cannot use go to `bad` with a reason.
pub(super) fn walk(
    dir: &Path,
    rel_dir: &str,
    depth: usize,
    skip: &HashSet<(u64, u64)>,
    out: &mut Vec<Found>,
    bad: &mut Vec<(PathBuf, String)>,
) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if ignored(&name) {
            continue;
        }
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        // Links are followed to files only, so a link cannot make the scan loop.
        let meta = if ft.is_symlink() {
            fs::metadata(&path)
        } else {
            entry.metadata()
        };
        let Ok(meta) = meta else { continue };
        if meta.is_dir() && ft.is_symlink() {
            continue;
        }
        let Some(name) = name.to_str() else {
            bad.push((
                path,
                "the name is not valid UTF-8, so it cannot be an object key".into(),
            ));
            continue;
        };
        let rel = if rel_dir.is_empty() {
            name.to_string()
        } else {
            format!("{rel_dir}/{name}")
        };
        if meta.is_dir() {
            if skip.contains(&(meta.dev(), meta.ino())) {
                continue;
            }
            if depth >= MAX_DEPTH {
                bad.push((path, format!("more than {MAX_DEPTH} directory levels deep")));
                continue;
            }
            if let Err(e) = walk(&path, &rel, depth + 1, skip, out, bad) {
                bad.push((path, format!("cannot read the directory: {e}")));
            }
        } else {
            out.push(Found {
                rel,
                path,
                id: Ident::of(&meta),
            });
        }
    }
    Ok(())
}

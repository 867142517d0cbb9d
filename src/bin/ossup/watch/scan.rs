//! Scanning the spool directory: which files are candidates, and what identifies a version.
//!
//! Owns: the walk over DIR (ignored names, symlink rules, depth limit) and [`Ident`].
//!
//! **Symbolic links.** A link in the spool is followed to a file only if its target (fully
//! resolved) lies inside the spool and is owned by the owner of the link, unless
//! `--follow-symlinks` is given: otherwise a user who can write the spool could link a file
//! only root may read into it and have root's watch upload it (and delete the link). Links to
//! directories are never followed. The rule is checked when the spool is scanned and again
//! right before the upload; a link re-pointed in the microseconds between that check and the
//! open is the remaining window (the identity check after the upload then refuses to retire
//! it, but its bytes have been sent).
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

/// Why the symbolic link `link` must not be followed under the spool `root` (canonical), or
/// `None` if it may be (see the module docs). `follow_all` is `--follow-symlinks`.
pub(super) fn link_refusal(link: &Path, root: &Path, follow_all: bool) -> Option<String> {
    if follow_all {
        return None;
    }
    let hint = "(use --follow-symlinks to upload it anyway)";
    let lm = match fs::symlink_metadata(link) {
        Ok(m) if m.file_type().is_symlink() => m,
        _ => return None,
    };
    let target = match fs::canonicalize(link) {
        Ok(t) => t,
        Err(e) => {
            return Some(format!(
                "a symbolic link whose target cannot be resolved: {e}"
            ))
        }
    };
    if !target.starts_with(root) {
        return Some(format!(
            "a symbolic link to {}, outside the watched directory {hint}",
            target.display()
        ));
    }
    match fs::metadata(&target) {
        Ok(tm) if tm.uid() != lm.uid() => Some(format!(
            "a symbolic link owned by uid {} to a file owned by uid {} {hint}",
            lm.uid(),
            tm.uid()
        )),
        Ok(_) => None,
        Err(e) => Some(format!("a symbolic link whose target cannot be read: {e}")),
    }
}

/// Lists the candidate files under `dir` (`root` is the canonical spool, `follow_all`
/// `--follow-symlinks`). Entries it cannot use go to `bad` with a reason.
pub(super) fn walk(
    dir: &Path,
    rel_dir: &str,
    depth: usize,
    skip: &HashSet<(u64, u64)>,
    (root, follow_all): (&Path, bool),
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
        if ft.is_symlink() {
            if let Some(why) = link_refusal(&path, root, follow_all) {
                bad.push((path, why));
                continue;
            }
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
            if let Err(e) = walk(&path, &rel, depth + 1, skip, (root, follow_all), out, bad) {
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

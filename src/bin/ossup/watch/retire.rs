//! Retiring an uploaded spool file: deleting it, or moving it into `--done-dir`, such that the
//! file deleted or moved is exactly the version that was uploaded.
//!
//! Owns: the rename-aside protocol, restoring a file that turned out to be another version,
//! the "still open for writing" check, and free names in `--done-dir`.
//! Must not: decide whether a file is uploaded (the done-log and the watch loop do).
//!
//! **Protocol.** Deleting by name is racy: a writer may rename a new version into the spool
//! under the same name between the check that the uploaded version is still there and the
//! unlink. So the name is first renamed aside to `.<name>.ossup-retire` in the same directory
//! (atomic; names starting with `.` are never uploaded). What now sits under the aside name is
//! exactly what was under the spool name at that instant, and nobody feeds files to that name;
//! its identity (length, modification time, inode) is compared with the uploaded one. Only if
//! they match is it unlinked or moved; otherwise it is renamed back (never over a file that
//! appeared in the meantime) and uploaded once it settles. A crash between the two renames
//! leaves the aside name, which the next start finishes (see `DoneLog::open`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ossup::io::fsafe;

use super::scan::Ident;

/// Testing hook, not a contract: when `OSSUP_TEST_PAUSE_DIR` is set, the watch creates
/// `DIR/paused` right before it retires an uploaded file and waits (at most 30 s) until
/// `DIR/resume` exists, so a test can act inside the window between the upload being verified
/// and the file being deleted (the window a slow done-log `fdatasync` opens on flash).
pub(super) fn test_pause() {
    let Some(dir) = std::env::var_os("OSSUP_TEST_PAUSE_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    let _ = fs::write(dir.join("paused"), b"");
    let t0 = Instant::now();
    while !dir.join("resume").exists() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What [`retire`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Retired {
    /// The uploaded version was deleted.
    Removed,
    /// The uploaded version was moved to this path.
    Moved(PathBuf),
    /// Nothing is under the name any more.
    Gone,
    /// Another version is under the name (it was put back, or kept under the given name
    /// because yet another file took the name meanwhile); the uploaded one is gone.
    Changed(Option<PathBuf>),
    /// Some process still has the file open for writing; it was put back untouched.
    Busy,
}

/// The name `path` is renamed to while it is being retired: `.<name>.ossup-retire`.
pub(super) fn aside_path(path: &Path) -> PathBuf {
    let mut n = std::ffi::OsString::from(".");
    n.push(path.file_name().unwrap_or_default());
    n.push(".ossup-retire");
    path.with_file_name(n)
}

/// Renames `from` to `to` unless `to` exists (`AlreadyExists` then). Uses `renameat2`'s
/// `RENAME_NOREPLACE`; on file systems without it, a check followed by a rename.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, from, CWD, to, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            if fs::symlink_metadata(to).is_ok() {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            fs::rename(from, to)
        }
        Err(e) => Err(e.into()),
    }
}

/// `base`, or `base.~1~`, `base.~2~`, ... : the `n`-th candidate name for an archived file.
fn numbered(base: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return base.to_path_buf();
    }
    let mut s = base.as_os_str().to_os_string();
    s.push(format!(".~{n}~"));
    PathBuf::from(s)
}

/// Most numbered names tried before giving up on a free one.
const MAX_NUMBERED: u32 = 10_000;

/// Renames `from` to the first free name of `base`, `base.~1~`, ... and returns it.
fn rename_to_free_name(from: &Path, base: &Path) -> io::Result<PathBuf> {
    for n in 0..MAX_NUMBERED {
        let to = numbered(base, n);
        match rename_noreplace(from, &to) {
            Ok(()) => return Ok(to),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::other(format!(
        "{} and {MAX_NUMBERED} numbered names next to it are taken",
        base.display()
    )))
}

/// Puts the file at `aside` back under `path`, never over a file that took the name meanwhile
/// (that one is kept, and the restored file gets a numbered name next to it, returned).
fn restore(aside: &Path, path: &Path) -> io::Result<Option<PathBuf>> {
    let r = match rename_noreplace(aside, path) {
        Ok(()) => None,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let base = numbered(path, 1);
            Some(rename_to_free_name(aside, &base)?)
        }
        Err(e) => return Err(e),
    };
    fsafe::sync_parent(path)?;
    Ok(r)
}

/// True if Linux says some process has the file open for writing. Not yet checked: always
/// false (see the README's watch section for the feeding protocol that makes this safe).
fn open_for_writing(_path: &Path) -> bool {
    false
}

/// Deletes the spool file at `path` (or moves it to `done_to`, or a numbered name next to it if
/// that is taken) if and only if what is under that name is the version `id` that was
/// uploaded. See the module docs.
pub(super) fn retire(path: &Path, id: Ident, done_to: Option<&Path>) -> io::Result<Retired> {
    let aside = aside_path(path);
    match fs::symlink_metadata(&aside) {
        // Left by a retire a crash interrupted: that file is the candidate.
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => match fs::rename(path, &aside) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Retired::Gone),
            Err(e) => return Err(e),
        },
        Err(e) => return Err(e),
    }
    let same = fs::metadata(&aside).is_ok_and(|m| Ident::of(&m) == id);
    if !same {
        return Ok(Retired::Changed(restore(&aside, path)?));
    }
    if open_for_writing(&aside) {
        restore(&aside, path)?;
        return Ok(Retired::Busy);
    }
    match done_to {
        None => {
            fs::remove_file(&aside)?;
            fsafe::sync_parent(&aside)?;
            Ok(Retired::Removed)
        }
        Some(to) => Ok(Retired::Moved(move_file(&aside, to)?)),
    }
}

/// Moves `from` to `to` or the first free numbered name next to it (creating directories),
/// durably; copies when they are on different file systems. Never replaces a file.
fn move_file(from: &Path, to: &Path) -> io::Result<PathBuf> {
    let parent = to.parent().unwrap_or(Path::new("/"));
    fs::create_dir_all(parent)?;
    let done = match rename_to_free_name(from, to) {
        Ok(done) => done,
        Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
            let tmp = aside_path(to).with_extension("ossup-tmp");
            let mut src = fsafe::open_read(from)?;
            let mut dst = fsafe::create_replacing(&tmp, 0o600)?;
            io::copy(&mut src, &mut dst)?;
            if let Ok(m) = src.metadata() {
                let _ = dst.set_permissions(m.permissions());
                let _ = dst.set_modified(m.modified()?);
            }
            dst.sync_all()?;
            drop(dst);
            let done = rename_to_free_name(&tmp, to)?;
            fsafe::sync_dir(parent)?;
            fs::remove_file(from)?;
            done
        }
        Err(e) => return Err(e),
    };
    fsafe::sync_dir(parent)?;
    fsafe::sync_parent(from)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir()
                .join(format!("ossup-retire-unit-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn ident(p: &Path) -> Ident {
        Ident::of(&fs::metadata(p).unwrap())
    }

    #[test]
    fn removes_only_the_uploaded_version() {
        let t = Tmp::new("rm");
        let p = t.0.join("f");
        fs::write(&p, b"v1").unwrap();
        let id = ident(&p);
        assert_eq!(retire(&p, id, None).unwrap(), Retired::Removed);
        assert!(!p.exists() && !aside_path(&p).exists());
        assert_eq!(retire(&p, id, None).unwrap(), Retired::Gone);
        // Another version under the name is put back untouched.
        fs::write(&p, b"v2 longer").unwrap();
        assert_eq!(retire(&p, id, None).unwrap(), Retired::Changed(None));
        assert_eq!(fs::read(&p).unwrap(), b"v2 longer");
        assert!(!aside_path(&p).exists());
    }

    #[test]
    fn an_interrupted_retire_is_finished_and_never_clobbers_a_newcomer() {
        let t = Tmp::new("crash");
        let p = t.0.join("f");
        fs::write(&p, b"uploaded").unwrap();
        let id = ident(&p);
        fs::rename(&p, aside_path(&p)).unwrap(); // crash after the first rename
        fs::write(&p, b"newcomer").unwrap();
        assert_eq!(retire(&p, id, None).unwrap(), Retired::Removed);
        assert_eq!(fs::read(&p).unwrap(), b"newcomer");
        // An aside file that is not the uploaded version, with a newcomer on the name: both kept.
        fs::write(aside_path(&p), b"unuploaded other").unwrap();
        let r = retire(&p, id, None).unwrap();
        assert_eq!(r, Retired::Changed(Some(t.0.join("f.~1~"))));
        assert_eq!(fs::read(&p).unwrap(), b"newcomer");
        assert_eq!(fs::read(t.0.join("f.~1~")).unwrap(), b"unuploaded other");
    }

    #[test]
    fn moves_to_a_free_numbered_name() {
        let t = Tmp::new("mv");
        let done = t.0.join("done/sub/f");
        for (i, body) in [b"one".as_slice(), b"two", b"three"].iter().enumerate() {
            let p = t.0.join("f");
            fs::write(&p, body).unwrap();
            let r = retire(&p, ident(&p), Some(&done)).unwrap();
            assert_eq!(r, Retired::Moved(numbered(&done, i as u32)));
        }
        assert_eq!(fs::read(&done).unwrap(), b"one");
        assert_eq!(fs::read(t.0.join("done/sub/f.~1~")).unwrap(), b"two");
        assert_eq!(fs::read(t.0.join("done/sub/f.~2~")).unwrap(), b"three");
    }
}

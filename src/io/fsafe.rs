//! Opening files in state directories safely when other local users may be hostile.
//!
//! Owns: the few file-system primitives every writer of ossup's state (journals, their locks,
//! the probe, watch's done-log and spool-directory lock) must use: opening without following a
//! symbolic link (`O_NOFOLLOW`), creating exclusively (`O_EXCL`), checking that an opened state
//! file is a plain file of ours, fsyncing a directory, and checking that a state directory is
//! private (owned by the effective user, not writable by group or others).
//! Must not: know any file format or decide what a file means.
//!
//! Why: ossup often runs as root on gateways whose state directories may be shared. A user who
//! can write such a directory could plant `journal.lock -> /etc/shadow`, and a root process that
//! opens the name with `O_CREAT` and writes its PID would overwrite the target. With
//! `O_NOFOLLOW` the open fails (`ELOOP`) instead; with `O_EXCL` a name that already exists is
//! never reused; and [`check_state_file`] refuses a hard link (link count above one) or a file
//! owned by someone else. [`check_private_dir`] refuses the directory itself when others can
//! write it, so nothing can be planted in the first place; the per-file rules are the second
//! line of defence.
//!
//! Limits: only the last path component is protected from symlinks (a parent directory given by
//! the user may itself be a link, e.g. `/var/lib/ossup -> /data/ossup`, which is the user's
//! choice), and the parents of a state directory are not checked.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use rustix::fs::OFlags;

/// `O_NOFOLLOW` as the integer `OpenOptionsExt::custom_flags` takes.
fn nofollow_flag() -> i32 {
    OFlags::NOFOLLOW.bits() as i32
}

/// Adds `O_NOFOLLOW` to `opts`: opening a symbolic link then fails (`ELOOP`, reported by
/// [`is_symlink_error`]) instead of opening its target.
pub fn nofollow(opts: &mut OpenOptions) -> &mut OpenOptions {
    opts.custom_flags(nofollow_flag())
}

/// True if `e` is what opening a symbolic link with `O_NOFOLLOW` gives (`ELOOP`).
pub fn is_symlink_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
}

/// Opens an existing file read-only without following a symbolic link.
pub fn open_read(path: &Path) -> io::Result<File> {
    nofollow(OpenOptions::new().read(true)).open(path)
}

/// Opens an existing file for reading and writing without following a symbolic link.
pub fn open_rw(path: &Path) -> io::Result<File> {
    nofollow(OpenOptions::new().read(true).write(true)).open(path)
}

/// Creates `path` exclusively (`O_CREAT | O_EXCL`, which never follows a link) for reading and
/// writing with permission bits `mode` (before the umask). Fails with `AlreadyExists` if any
/// file, link or directory has that name.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    nofollow(
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(mode),
    )
    .open(path)
}

/// Like [`create_new`], but if the name is taken (e.g. a temp file a crash left behind), that
/// name is unlinked (which removes a link, never its target) and the create is tried once more.
pub fn create_replacing(path: &Path, mode: u32) -> io::Result<File> {
    match create_new(path, mode) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            std::fs::remove_file(path)?;
            create_new(path, mode)
        }
        other => other,
    }
}

/// Opens `path` for reading and writing, creating it with `mode` if missing, without following
/// a symbolic link and without truncating; then checks it with [`check_state_file`]. For files
/// that are meant to persist and be shared between runs (lock files).
pub fn open_or_create(path: &Path, mode: u32) -> io::Result<File> {
    let file = match create_new(path, mode) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => open_rw(path)?,
        Err(e) => return Err(e),
    };
    check_state_file(&file, path)?;
    Ok(file)
}

/// Largest configuration input ossup reads whole (a `--ca-file` bundle, a board file): 1 MiB.
/// A full system CA bundle is about 220 KB; anything larger is not what the user meant.
pub const CONFIG_FILE_MAX: u64 = 1 << 20;

/// What kind of file `t` is, in words, for refusing anything but a regular file.
fn kind_name(t: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Refuses metadata `m` unless it is a regular file of at most `cap` bytes.
fn check_small_regular(m: &std::fs::Metadata, cap: u64) -> io::Result<()> {
    if !m.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("not a regular file (it is {})", kind_name(&m.file_type())),
        ));
    }
    if m.len() > cap {
        return Err(too_big(cap));
    }
    Ok(())
}

fn too_big(cap: u64) -> io::Error {
    let limit = if cap.is_multiple_of(1 << 20) {
        format!("{} MiB", cap >> 20)
    } else {
        format!("{cap} bytes")
    };
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("larger than the {limit} limit"),
    )
}

/// Reads a whole configuration file that must be a regular file of at most `cap` bytes
/// (symbolic links are followed: a CA bundle is often one). A FIFO, socket, directory or
/// device is refused with the reason, without reading from it: the name is checked before
/// the open (so a device such as a watchdog is never opened), opened with `O_NONBLOCK` (so a
/// FIFO swapped in meanwhile cannot block the open), and the descriptor checked again; the
/// read stops after `cap + 1` bytes, so a file that grows meanwhile is refused too.
pub fn read_small_regular(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    use std::io::Read;
    check_small_regular(&std::fs::metadata(path)?, cap)?;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let m = file.metadata()?;
    check_small_regular(&m, cap)?;
    let mut buf = Vec::with_capacity(m.len() as usize);
    file.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(too_big(cap));
    }
    Ok(buf)
}

/// The effective user id of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Checks that an opened state file is a regular file owned by the effective user with a single
/// link: a hard link planted by another user (to a file of ours elsewhere) or a file someone
/// else created is refused with `PermissionDenied` and the reason.
pub fn check_state_file(file: &File, path: &Path) -> io::Result<()> {
    let m = file.metadata()?;
    let why = if !m.file_type().is_file() {
        Some("it is not a regular file".to_string())
    } else if m.uid() != euid() {
        Some(format!(
            "it is owned by uid {}, not by us ({})",
            m.uid(),
            euid()
        ))
    } else if m.nlink() != 1 {
        Some(format!(
            "it has {} hard links (someone may have linked another file here)",
            m.nlink()
        ))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to use {}: {why}", path.display()),
        )),
    }
}

/// Checks that `dir` is a directory owned by the effective user and not writable by group or
/// others, so that no other local user can plant, replace or remove files in it. The error
/// (`PermissionDenied`) says why and how to fix it. Follows a symbolic link to the directory
/// (the user named it).
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    let m = std::fs::metadata(dir)?;
    let mode = m.mode() & 0o7777;
    let why =
        if !m.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", dir.display()),
            ));
        } else if m.uid() != euid() {
            format!(
                "{} is owned by uid {}, not by this user (uid {}); another user could plant or \
             replace files in it (chown it, or use a directory of your own)",
                dir.display(),
                m.uid(),
                euid()
            )
        } else if mode & 0o022 != 0 {
            format!(
            "{} is writable by {} (mode {mode:04o}); another user could plant or replace files \
             in it (chmod 700 it)",
            dir.display(),
            if mode & 0o002 != 0 { "others" } else { "its group" }
        )
        } else {
            return Ok(());
        };
    Err(io::Error::new(io::ErrorKind::PermissionDenied, why))
}

/// Creates `dir` (and missing parents) with mode 0700 if it does not exist, then checks it with
/// [`check_private_dir`], fsyncs its parent when it was created (so the new directory survives
/// a power cut), and proves it is writable by creating and removing a probe file, so that a
/// read-only, foreign or shared directory is reported before any upload starts.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    // Directories this call creates (the leaf and any missing ancestors), deepest first: each
    // is durable only once its parent is fsync'd.
    let mut created = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
        created.push(p.to_path_buf());
        d = p.parent();
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    check_private_dir(dir)?;
    for p in &created {
        sync_parent(p)?;
    }
    let probe = dir.join(format!(".ossup-probe-{}", std::process::id()));
    let r = create_replacing(&probe, 0o600).and_then(|f| {
        use std::os::unix::fs::FileExt;
        f.write_all_at(b"x", 0)
    });
    let _ = std::fs::remove_file(&probe);
    r
}

/// Fsyncs directory `dir`, making a create, rename or unlink in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    OpenOptions::new()
        .read(true)
        .custom_flags(OFlags::DIRECTORY.bits() as i32)
        .open(dir)?
        .sync_all()
}

/// Fsyncs the directory containing `path` (`.` for a bare name).
pub fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => sync_dir(Path::new(".")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn small_regular_files_only() {
        let t = Tmp::new("small");
        let f = t.0.join("ca.pem");
        std::fs::write(&f, b"12345").unwrap();
        assert_eq!(read_small_regular(&f, 5).unwrap(), b"12345");
        let e = read_small_regular(&f, 4).unwrap_err();
        assert!(e.to_string().contains("4 bytes limit"), "{e}");
        let e = read_small_regular(Path::new("/dev/null"), 5).unwrap_err();
        assert!(e.to_string().contains("character device"), "{e}");
        let e = read_small_regular(&t.0, 5).unwrap_err();
        assert!(e.to_string().contains("directory"), "{e}");
        assert_eq!(
            read_small_regular(&t.0.join("missing"), 5)
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
    }

    struct Tmp(std::path::PathBuf);
    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p = std::env::temp_dir().join(format!("ossup-fsafe-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o700)).unwrap();
            Tmp(p)
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn symlinks_are_never_followed() {
        let t = Tmp::new("links");
        let victim = t.0.join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        let link = t.0.join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let e = open_rw(&link).unwrap_err();
        assert!(is_symlink_error(&e), "{e}");
        assert!(is_symlink_error(&open_read(&link).unwrap_err()));
        assert!(is_symlink_error(&open_or_create(&link, 0o600).unwrap_err()));
        assert_eq!(
            create_new(&link, 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        // create_replacing removes the link itself, not its target.
        let f = create_replacing(&link, 0o600).unwrap();
        drop(f);
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        // A dangling link (target not yet there) is not created through either.
        let dangling = t.0.join("dangling");
        std::os::unix::fs::symlink(t.0.join("new-target"), &dangling).unwrap();
        assert!(open_or_create(&dangling, 0o600).is_err());
        assert!(!t.0.join("new-target").exists());
    }

    #[test]
    fn hard_links_and_other_kinds_are_refused() {
        let t = Tmp::new("hard");
        let a = t.0.join("a");
        std::fs::write(&a, b"x").unwrap();
        let b = t.0.join("b");
        std::fs::hard_link(&a, &b).unwrap();
        let e = open_or_create(&b, 0o600).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("hard links"), "{e}");
        std::fs::remove_file(&a).unwrap();
        open_or_create(&b, 0o600).unwrap();
        std::fs::create_dir(t.0.join("d")).unwrap();
        assert!(open_or_create(&t.0.join("d"), 0o600).is_err());
    }

    #[test]
    fn private_dir_rules() {
        let t = Tmp::new("dir");
        check_private_dir(&t.0).unwrap();
        for (mode, word) in [(0o770, "group"), (0o777, "others"), (0o1777, "others")] {
            std::fs::set_permissions(&t.0, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = check_private_dir(&t.0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
            assert!(e.to_string().contains(word), "{mode:o}: {e}");
            assert!(ensure_private_dir(&t.0).is_err());
        }
        std::fs::set_permissions(&t.0, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&t.0).unwrap();
        let sub = t.0.join("x").join("y");
        ensure_private_dir(&sub).unwrap();
        let mode = std::fs::metadata(&sub).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert_eq!(std::fs::read_dir(&sub).unwrap().count(), 0);
        let f = t.0.join("file");
        std::fs::write(&f, b"x").unwrap();
        assert!(ensure_private_dir(&f).is_err());
        sync_dir(&t.0).unwrap();
        sync_parent(&f).unwrap();
    }
}

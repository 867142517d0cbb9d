//! One watcher per spool directory, whatever its destination.
//!
//! Owns: locking the spool directory itself (`flock(LOCK_EX | LOCK_NB)` on a descriptor of the
//! directory, held for the life of the watch and released by the kernel when the process ends)
//! and finding the holder's PID in `/proc/locks` for the error message.
//! Must not: write anything into the spool (a lock file there could be planted or removed by
//! whoever feeds the spool; a lock on the directory's inode cannot).

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Why the spool could not be locked.
pub(super) enum SpoolLockError {
    /// Another process holds it; its PID when `/proc/locks` names it.
    Held(Option<u32>),
    /// The directory could not be opened or locked.
    Io(io::Error),
}

/// Takes the lock on directory `dir`; keep the returned handle for as long as the watch runs.
pub(super) fn lock_spool(dir: &Path) -> Result<File, SpoolLockError> {
    let f = File::open(dir).map_err(SpoolLockError::Io)?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(TryLockError::WouldBlock) => {
            let pid = f.metadata().ok().and_then(|m| {
                let text = std::fs::read_to_string("/proc/locks").ok()?;
                holder_pid(&text, m.dev(), m.ino())
            });
            Err(SpoolLockError::Held(pid))
        }
        Err(TryLockError::Error(e)) => Err(SpoolLockError::Io(e)),
    }
}

/// The PID holding a `FLOCK` on the inode `ino` of device `dev`, from the text of
/// `/proc/locks` (lines like `3: FLOCK  ADVISORY  WRITE 4242 08:01:123456 0 EOF`, the device
/// as hexadecimal major:minor). Blocked waiters (`->` lines) are skipped.
pub(super) fn holder_pid(text: &str, dev: u64, ino: u64) -> Option<u32> {
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    text.lines().find_map(|line| {
        let mut f = line.split_whitespace();
        let _id = f.next()?;
        if f.next()? != "FLOCK" {
            return None;
        }
        let _advisory = f.next()?;
        let _kind = f.next()?;
        let pid: u32 = f.next()?.parse().ok()?;
        let mut id = f.next()?.split(':');
        let maj = u32::from_str_radix(id.next()?, 16).ok()?;
        let min = u32::from_str_radix(id.next()?, 16).ok()?;
        let i: u64 = id.next()?.parse().ok()?;
        (maj == major && min == minor && i == ino).then_some(pid)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holder_is_found_by_device_and_inode() {
        let dev = rustix::fs::makedev(8, 0x11);
        let text = "1: POSIX  ADVISORY  WRITE 10 08:11:77 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 20 08:12:77 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 30 08:11:78 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 40 08:11:77 0 EOF\n\
                    4: FLOCK  ADVISORY  WRITE 4242 08:11:77 0 EOF\n";
        assert_eq!(holder_pid(text, dev, 77), Some(4242));
        assert_eq!(holder_pid(text, dev, 79), None);
        assert_eq!(holder_pid("garbage\n\n", dev, 77), None);
    }

    #[test]
    fn a_second_lock_on_a_directory_is_refused_with_our_pid() {
        let d = std::env::temp_dir().join(format!("ossup-spool-lock-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let held = lock_spool(&d).ok().unwrap();
        match lock_spool(&d) {
            Err(SpoolLockError::Held(pid)) => assert_eq!(pid, Some(std::process::id())),
            _ => panic!("second lock taken"),
        }
        drop(held);
        assert!(lock_spool(&d).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }
}

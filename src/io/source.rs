//! The local file being uploaded.
//!
//! Owns: opening the file, capturing its identity (length, modification time, inode), positional
//! reads (`pread`, so the file offset is never shared state and a retried part restarts for
//! free), checksumming ranges through a caller buffer, and noticing that the file changed.
//! Must not: know about HTTP, parts or the journal, or seek the file.
//!
//! Reads are blocking `pread(2)` calls made directly on the async thread. On the local flash or
//! tmpfs of a gateway one 64 KiB read takes microseconds, and the measurements in
//! `build-and-size-notes.md` §6 show this is faster and cheaper than handing reads to a thread.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

/// An open, regular local file and the identity it had when opened.
#[derive(Debug)]
pub struct Source {
    file: File,
    path: PathBuf,
    len: u64,
    mtime_ns: i128,
    inode: u64,
    dev: u64,
}

/// Modification time of `m` in nanoseconds since the Unix epoch.
fn mtime_ns(m: &Metadata) -> i128 {
    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec())
}

/// Rejects anything that is not a regular file, with a message naming `path`.
fn require_regular(path: &Path, m: &Metadata) -> io::Result<()> {
    let ft = m.file_type();
    if ft.is_file() {
        return Ok(());
    }
    if ft.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::IsADirectory,
            format!("{} is a directory, not a file", path.display()),
        ));
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "{} is not a regular file (device, FIFO or socket)",
            path.display()
        ),
    ))
}

impl Source {
    /// Opens `path` for reading and captures its identity. Directories fail with
    /// [`io::ErrorKind::IsADirectory`]; FIFOs, sockets and devices with
    /// [`io::ErrorKind::InvalidInput`] (checked before opening, so a FIFO cannot block the
    /// open). Symbolic links are followed.
    pub fn open(path: &Path) -> io::Result<Source> {
        require_regular(path, &std::fs::metadata(path)?)?;
        let file = File::open(path)?;
        // The identity is taken from the open descriptor, which cannot be swapped under us.
        let m = file.metadata()?;
        require_regular(path, &m)?;
        Ok(Source {
            len: m.len(),
            mtime_ns: mtime_ns(&m),
            inode: m.ino(),
            dev: m.dev(),
            path: path.to_path_buf(),
            file,
        })
    }

    /// The path given to [`Source::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Length in bytes when opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True if the file was empty when opened.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Modification time when opened, nanoseconds since the Unix epoch.
    pub fn mtime_ns(&self) -> i128 {
        self.mtime_ns
    }

    /// Inode number when opened.
    pub fn inode(&self) -> u64 {
        self.inode
    }

    /// Reads from `offset` until `buf` is full or the file ends, retrying interrupted and short
    /// reads. Returns the bytes read; fewer than `buf.len()` only at end of file.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            let pos = offset.checked_add(done as u64).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "file offset overflows")
            })?;
            match self.file.read_at(&mut buf[done..], pos) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Fills `buf` from `offset`; a file that ends early gives [`io::ErrorKind::UnexpectedEof`]
    /// (the file was truncated since it was opened).
    pub fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let n = self.read_at(buf, offset)?;
        if n < buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ended at byte {} (was it truncated?)",
                    self.path.display(),
                    offset + n as u64
                ),
            ));
        }
        Ok(())
    }

    /// True if the file no longer has the identity captured at open: either the open file's
    /// length or modification time changed (it was written to), or the path now names a
    /// different file (replaced, e.g. by a rename) or none at all (deleted).
    pub fn changed(&self) -> io::Result<bool> {
        let fd = self.file.metadata()?;
        if fd.len() != self.len || mtime_ns(&fd) != self.mtime_ns {
            return Ok(true);
        }
        let at_path = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        Ok(at_path.ino() != self.inode
            || at_path.dev() != self.dev
            || at_path.len() != self.len
            || mtime_ns(&at_path) != self.mtime_ns)
    }

    /// CRC-64/XZ and MD5 of the bytes `offset..offset + len`, read through `buf` (any non-empty
    /// size; one read per `buf.len()` bytes). A file shorter than the range gives
    /// [`io::ErrorKind::UnexpectedEof`].
    pub fn digest(&self, offset: u64, len: u64, buf: &mut [u8]) -> io::Result<(u64, [u8; 16])> {
        let mut crc = crate::proto::crc64::Hasher::new();
        let mut md5 = Md5::new();
        self.for_each_chunk(offset, len, buf, |chunk| {
            crc.write(chunk);
            md5.update(chunk);
        })?;
        Ok((crc.sum(), md5.finalize().into()))
    }

    /// CRC-64/XZ of the bytes `offset..offset + len`, read through `buf` (re-checking a part
    /// an earlier run sent). A file shorter than the range gives [`io::ErrorKind::UnexpectedEof`].
    pub fn crc64_range(&self, offset: u64, len: u64, buf: &mut [u8]) -> io::Result<u64> {
        let mut crc = crate::proto::crc64::Hasher::new();
        self.for_each_chunk(offset, len, buf, |chunk| crc.write(chunk))?;
        Ok(crc.sum())
    }

    /// MD5 of the bytes `offset..offset + len`, read through `buf` (for `Content-MD5`).
    pub fn md5_range(&self, offset: u64, len: u64, buf: &mut [u8]) -> io::Result<[u8; 16]> {
        let mut md5 = Md5::new();
        self.for_each_chunk(offset, len, buf, |chunk| md5.update(chunk))?;
        Ok(md5.finalize().into())
    }

    /// Feeds `offset..offset + len` to `f` in chunks of at most `buf.len()` bytes.
    fn for_each_chunk(
        &self,
        offset: u64,
        len: u64,
        buf: &mut [u8],
        mut f: impl FnMut(&[u8]),
    ) -> io::Result<()> {
        if buf.is_empty() && len > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "empty read buffer",
            ));
        }
        let mut done = 0u64;
        while done < len {
            let n = usize::try_from(len - done)
                .unwrap_or(usize::MAX)
                .min(buf.len());
            let chunk = &mut buf[..n];
            self.read_exact_at(chunk, offset + done)?;
            f(chunk);
            done += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh, empty directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!("ossup-source-{}-{}", std::process::id(), n));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn identity_and_reads() {
        let d = TempDir::new();
        let p = d.0.join("f.bin");
        let data = pattern(100_000);
        std::fs::write(&p, &data).unwrap();
        let s = Source::open(&p).unwrap();
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(s.len(), 100_000);
        assert!(!s.is_empty());
        assert_eq!(s.inode(), m.ino());
        assert_eq!(s.mtime_ns(), mtime_ns(&m));
        assert!(s.mtime_ns() > 0);
        let mut buf = vec![0u8; 1000];
        s.read_exact_at(&mut buf, 5000).unwrap();
        assert_eq!(&buf[..], &data[5000..6000]);
        // Reading past the end is short, then empty.
        assert_eq!(s.read_at(&mut buf, 99_500).unwrap(), 500);
        assert_eq!(&buf[..500], &data[99_500..]);
        assert_eq!(s.read_at(&mut buf, 100_000).unwrap(), 0);
        let e = s.read_exact_at(&mut buf, 99_500).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        assert!(!s.changed().unwrap());
    }

    #[test]
    fn directory_and_missing_are_errors() {
        let d = TempDir::new();
        let e = Source::open(&d.0).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::IsADirectory);
        assert!(e.to_string().contains("directory"), "{e}");
        let e = Source::open(&d.0.join("nope")).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn digest_matches_whole_buffer_hashes() {
        let d = TempDir::new();
        let p = d.0.join("f.bin");
        let data = pattern(200_003);
        std::fs::write(&p, &data).unwrap();
        let s = Source::open(&p).unwrap();
        for &(off, len, bufsz) in &[
            (0u64, 200_003u64, 65_536usize),
            (1, 100_000, 7),
            (150_000, 50_003, 4096),
            (10, 0, 16),
        ] {
            let mut buf = vec![0u8; bufsz];
            let (crc, md5) = s.digest(off, len, &mut buf).unwrap();
            let range = &data[off as usize..(off + len) as usize];
            assert_eq!(crc, crate::proto::crc64::update(0, range));
            let want: [u8; 16] = Md5::digest(range).into();
            assert_eq!(md5, want);
            assert_eq!(s.md5_range(off, len, &mut buf).unwrap(), want);
            assert_eq!(s.crc64_range(off, len, &mut buf).unwrap(), crc);
        }
        // The known MD5 of the empty string guards against hashing the wrong thing.
        let mut buf = [0u8; 8];
        let (_, md5) = s.digest(0, 0, &mut buf).unwrap();
        assert_eq!(md5[..4], [0xd4, 0x1d, 0x8c, 0xd9]);
        // A range past the end of the file.
        let e = s.digest(200_000, 10, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }

    #[test]
    fn changed_after_append_touch_replace_delete() {
        let d = TempDir::new();
        let p = d.0.join("f.bin");
        std::fs::write(&p, b"hello").unwrap();

        // Append.
        let s = Source::open(&p).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .unwrap()
            .write_all(b"!")
            .unwrap();
        assert!(s.changed().unwrap());

        // Touch: same length, new mtime.
        let s = Source::open(&p).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        let later = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_007);
        f.set_modified(later).unwrap();
        assert!(s.changed().unwrap());

        // Replaced by a rename: the open file is untouched but the path names another inode.
        let s = Source::open(&p).unwrap();
        let q = d.0.join("g.bin");
        std::fs::write(&q, b"hello!").unwrap();
        let f = File::open(&q).unwrap();
        f.set_modified(later).unwrap();
        std::fs::rename(&q, &p).unwrap();
        assert!(s.changed().unwrap());

        // Deleted.
        let s = Source::open(&p).unwrap();
        assert!(!s.changed().unwrap());
        std::fs::remove_file(&p).unwrap();
        assert!(s.changed().unwrap());
    }
}

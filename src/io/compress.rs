//! Compressing a spool file into its staging file: gzip (RFC 1952) around a streaming deflate,
//! written as `NAME.part`, fsync'd, then renamed to `NAME` (feature `compress`).
//!
//! Owns: the staging directory's files (creating, reusing, deleting them) and the deflate
//! stream. Must not: decide names or states (`crate::proto::staging` does), upload, or touch
//! the original file other than reading it.
//!
//! Memory: one 64 KiB input and one 64 KiB output buffer, plus the encoder's state (its
//! 32 KiB window, hash chains and Huffman tables: about 300 KiB, allocated once per file).

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use miniz_oxide::deflate::core::{compress, CompressorOxide, TDEFLFlush, TDEFLStatus};
use miniz_oxide::deflate::CompressionLevel;
use miniz_oxide::DataFormat;

use crate::proto::checkpoint::crc32_update;
use crate::proto::staging::{self, State, Version, GZIP_HEADER};

/// Name of the staging directory inside the checkpoint directory.
pub const STAGING_DIR: &str = ".staging";

const BUF: usize = 64 << 10;

/// A staging file ready to upload.
#[derive(Debug, Clone)]
pub struct Staged {
    /// Its path.
    pub path: PathBuf,
    /// It already existed complete (an earlier run compressed it): not compressed again.
    pub reused: bool,
    /// Length of the original.
    pub original_len: u64,
    /// Length of the staging file.
    pub len: u64,
}

/// Why a file could not be staged.
#[derive(Debug)]
pub enum StageError {
    /// The original changed while it was compressed (the partial file was deleted).
    Changed,
    /// Reading the original or writing the staging directory failed.
    Io(io::Error),
}

impl From<io::Error> for StageError {
    fn from(e: io::Error) -> StageError {
        StageError::Io(e)
    }
}

impl std::fmt::Display for StageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StageError::Changed => f.write_str("the file changed while it was compressed"),
            StageError::Io(e) => write!(f, "{e}"),
        }
    }
}

/// The version of a file as its metadata tells it.
pub fn version_of(m: &fs::Metadata) -> Version {
    Version {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    }
}

/// Gives the staging file of `original` (spool path `rel`) in `dir`, compressing it unless a
/// complete one of this very version exists. Partial files of `rel` (a crash during an
/// earlier compression) and staging files of its older versions are deleted first.
pub fn stage(original: &Path, dir: &Path, rel: &str) -> Result<Staged, StageError> {
    crate::io::journal::ensure_dir(dir)?;
    let mut src = File::open(original)?;
    let v = version_of(&src.metadata()?);
    let name = staging::name(rel, v);
    let path = dir.join(&name);
    let mut reused = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(n) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        match staging::classify(&n, rel, v) {
            State::Complete => {
                // Only a regular file (never a link someone planted) is reused.
                let m = fs::symlink_metadata(entry.path())?;
                if m.file_type().is_file() {
                    reused = Some(m.len());
                } else {
                    fs::remove_file(entry.path())?;
                }
            }
            State::Partial | State::Stale => {
                log::debug!("removing staging file {n} of an earlier version or run");
                fs::remove_file(entry.path())?;
            }
            State::Unrelated => {}
        }
    }
    if let Some(len) = reused {
        return Ok(Staged {
            path,
            reused: true,
            original_len: v.len,
            len,
        });
    }
    let part = dir.join(staging::part_name(&name));
    // O_EXCL: never opens an existing file or follows a planted link.
    let mut out = crate::io::fsafe::create_new(&part, 0o600)?;
    let r = deflate_into(&mut src, &mut out, v.len);
    let r = r.and_then(|len| {
        out.sync_all()?;
        Ok(len)
    });
    let unchanged = || -> io::Result<bool> {
        Ok(version_of(&src.metadata()?) == v && version_of(&fs::metadata(original)?) == v)
    };
    match r {
        Ok(len) if unchanged().unwrap_or(false) => {
            drop(out);
            fs::rename(&part, &path)?;
            crate::io::fsafe::sync_dir(dir)?;
            Ok(Staged {
                path,
                reused: false,
                original_len: v.len,
                len,
            })
        }
        Ok(_) => {
            let _ = fs::remove_file(&part);
            Err(StageError::Changed)
        }
        Err(e) => {
            let _ = fs::remove_file(&part);
            if e.kind() == io::ErrorKind::UnexpectedEof || e.kind() == io::ErrorKind::InvalidData {
                Err(StageError::Changed)
            } else {
                Err(StageError::Io(e))
            }
        }
    }
}

/// Writes the gzip member of exactly `len` bytes of `src` to `out`; returns its length. A
/// source that ends early or goes on past `len` changed under us.
fn deflate_into(src: &mut File, out: &mut File, len: u64) -> io::Result<u64> {
    let mut enc = Box::new(CompressorOxide::with_format_and_level(
        DataFormat::Raw,
        CompressionLevel::DefaultLevel,
    ));
    let mut inb = vec![0u8; BUF];
    let mut outb = vec![0u8; BUF];
    out.write_all(&GZIP_HEADER)?;
    let mut written = GZIP_HEADER.len() as u64;
    let (mut crc, mut read) = (0u32, 0u64);
    loop {
        let n = src.read(&mut inb)?;
        if n == 0 {
            break;
        }
        read += n as u64;
        if read > len {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "file grew"));
        }
        crc = crc32_update(crc, &inb[..n]);
        let mut input = &inb[..n];
        while !input.is_empty() {
            let (st, used, made) = compress(&mut enc, input, &mut outb, TDEFLFlush::None);
            if !matches!(st, TDEFLStatus::Okay) {
                return Err(io::Error::other(format!("deflate failed: {st:?}")));
            }
            out.write_all(&outb[..made])?;
            written += made as u64;
            input = &input[used..];
        }
    }
    if read != len {
        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"));
    }
    loop {
        let (st, _, made) = compress(&mut enc, &[], &mut outb, TDEFLFlush::Finish);
        out.write_all(&outb[..made])?;
        written += made as u64;
        match st {
            TDEFLStatus::Done => break,
            TDEFLStatus::Okay => {}
            st => return Err(io::Error::other(format!("deflate failed: {st:?}"))),
        }
    }
    out.write_all(&staging::gzip_trailer(crc, read))?;
    Ok(written + 8)
}

/// Deletes every staging file (complete or partial, any version) of `rel` in `dir`.
pub fn remove(dir: &Path, rel: &str) -> io::Result<()> {
    let pre = format!("{}-", staging::prefix(rel));
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut any = false;
    for entry in entries {
        let entry = entry?;
        let n = entry.file_name();
        let Some(n) = n.to_str() else { continue };
        if n.starts_with(&pre) && staging::is_staging_name(n) {
            fs::remove_file(entry.path())?;
            any = true;
        }
    }
    if any {
        crate::io::fsafe::sync_dir(dir)?;
    }
    Ok(())
}

/// Deletes the staging files in `dir` whose path prefix ([`staging::prefix`]) is not in
/// `keep`; returns how many.
pub fn remove_orphans(dir: &Path, keep: &std::collections::HashSet<String>) -> io::Result<usize> {
    let mut n = 0;
    for (name, _, _) in list(dir)? {
        if !keep.contains(&name[..16]) {
            fs::remove_file(dir.join(&name))?;
            n += 1;
        }
    }
    if n > 0 {
        crate::io::fsafe::sync_dir(dir)?;
    }
    Ok(n)
}

/// The staging files in `dir` (name, bytes, complete or still `.part`), for `ossup status`.
pub fn list(dir: &Path) -> io::Result<Vec<(String, u64, bool)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let n = entry.file_name();
        let Some(n) = n.to_str() else { continue };
        if staging::is_staging_name(n) {
            let m = fs::symlink_metadata(entry.path())?;
            out.push((n.to_string(), m.len(), !n.ends_with(".part")));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::inflate::decompress_to_vec;

    struct TempDir(PathBuf);
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
    fn temp() -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let d = std::env::temp_dir().join(format!("ossup-compress-{}-{n}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }

    /// Decodes a gzip member (header of 10 bytes, no optional fields) and checks its trailer.
    fn gunzip(z: &[u8]) -> Vec<u8> {
        assert_eq!(z[..10], GZIP_HEADER);
        let body = &z[10..z.len() - 8];
        let out = decompress_to_vec(body).expect("valid deflate");
        let t = &z[z.len() - 8..];
        assert_eq!(
            u32::from_le_bytes(t[..4].try_into().unwrap()),
            crate::proto::checkpoint::crc32(&out)
        );
        assert_eq!(
            u32::from_le_bytes(t[4..].try_into().unwrap()),
            out.len() as u32
        );
        out
    }

    #[test]
    fn stages_reuses_and_restages_after_a_change() {
        let d = temp();
        let orig = d.0.join("app.log");
        let text: String = (0..20_000)
            .map(|i| {
                format!(
                    "{{\"t\":{i},\"level\":\"info\",\"msg\":\"reading sensor {}\"}}\n",
                    i % 7
                )
            })
            .collect();
        fs::write(&orig, &text).unwrap();
        let sdir = d.0.join("ckpt").join(STAGING_DIR);
        let s = stage(&orig, &sdir, "app.log").unwrap();
        assert!(!s.reused);
        let z = fs::read(&s.path).unwrap();
        assert_eq!(z.len() as u64, s.len);
        assert!(
            s.len * 5 < s.original_len,
            "ratio {} / {}",
            s.original_len,
            s.len
        );
        assert_eq!(gunzip(&z), text.as_bytes());
        // The same version again: reused, the bytes untouched.
        let again = stage(&orig, &sdir, "app.log").unwrap();
        assert!(again.reused);
        assert_eq!(again.path, s.path);
        // A leftover `.part` of another run and the old version go when the file changes.
        fs::write(
            sdir.join(staging::part_name(&staging::name(
                "app.log",
                Version {
                    dev: 0,
                    ino: 0,
                    len: 0,
                    mtime_ns: 0,
                },
            ))),
            b"torn",
        )
        .unwrap();
        fs::write(&orig, "new version\n").unwrap();
        let fresh = stage(&orig, &sdir, "app.log").unwrap();
        assert!(!fresh.reused);
        assert_ne!(fresh.path, s.path);
        assert_eq!(gunzip(&fs::read(&fresh.path).unwrap()), b"new version\n");
        let names: Vec<_> = list(&sdir).unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        // Another path's staging file is left alone; remove() drops only this path's.
        let other = d.0.join("b.log");
        fs::write(&other, "b").unwrap();
        stage(&other, &sdir, "b.log").unwrap();
        remove(&sdir, "app.log").unwrap();
        let names = list(&sdir).unwrap();
        assert_eq!(names.len(), 1);
        assert!(names[0].0.starts_with(&staging::prefix("b.log")));
    }

    #[test]
    fn empty_and_incompressible_files_round_trip() {
        let d = temp();
        let sdir = d.0.join(STAGING_DIR);
        for (i, data) in [
            Vec::new(),
            (0..300_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
                .collect(),
        ]
        .into_iter()
        .enumerate()
        {
            let f = d.0.join(format!("f{i}"));
            fs::write(&f, &data).unwrap();
            let s = stage(&f, &sdir, &format!("f{i}")).unwrap();
            assert_eq!(gunzip(&fs::read(&s.path).unwrap()), data);
        }
    }

    #[test]
    fn a_planted_link_is_not_reused_or_followed() {
        let d = temp();
        let sdir = d.0.join(STAGING_DIR);
        crate::io::journal::ensure_dir(&sdir).unwrap();
        let orig = d.0.join("a.log");
        fs::write(&orig, "hello\n").unwrap();
        let v = version_of(&fs::metadata(&orig).unwrap());
        let victim = d.0.join("victim");
        fs::write(&victim, "precious").unwrap();
        let name = staging::name("a.log", v);
        std::os::unix::fs::symlink(&victim, sdir.join(&name)).unwrap();
        std::os::unix::fs::symlink(&victim, sdir.join(staging::part_name(&name))).unwrap();
        let s = stage(&orig, &sdir, "a.log").unwrap();
        assert!(!s.reused);
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(gunzip(&fs::read(&s.path).unwrap()), b"hello\n");
    }
}

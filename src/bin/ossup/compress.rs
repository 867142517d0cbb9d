//! `--compress` for `upload` and `watch`: staging a file (gzip, in the checkpoint directory's
//! `.staging/`) and the destination and headers of its upload.
//!
//! Owns: turning a file and its destination into the staged file, the `.gz` key (or the same
//! key with `Content-Encoding: gzip`) and the object headers. Must not: upload or delete
//! anything (the caller does, in the order: verify the staged object, then remove the original,
//! then the staging file).

use std::path::{Path, PathBuf};

use ossup::error::exit;
use ossup::io::compress::{self, StageError};
use ossup::proto::staging::{self, Mode};
use ossup::{Config, Destination};

/// The compression mode the configuration asks for. `--content-encoding gzip` travels in
/// `cfg.object.content_encoding` from the command line; it is taken out here so that files
/// that are not compressed never carry the header.
pub fn take_mode(cfg: &mut Config) -> Mode {
    match cfg.object.content_encoding.take() {
        Some(_) => Mode::ContentEncoding,
        None => Mode::GzipObject,
    }
}

/// The name that identifies `file` among staging files for `ossup upload`: its canonical path.
pub fn upload_rel(file: &Path) -> String {
    std::fs::canonicalize(file)
        .unwrap_or_else(|_| file.to_path_buf())
        .to_string_lossy()
        .into_owned()
}

/// Why a file could not be prepared.
#[derive(Debug)]
pub struct PrepError {
    msg: String,
    code: u8,
}

impl PrepError {
    /// The exit code: 65 when the file changed while it was compressed, 74 for a read or
    /// write failure, 64 for a key that grows too long.
    pub fn exit_code(&self) -> u8 {
        self.code
    }
}

impl std::fmt::Display for PrepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// Stages `file` (spool path or canonical path `rel`) in `staging_dir` and returns what to
/// upload: the staging file, its destination and the configuration with its headers.
pub fn prepare(
    staging_dir: &Path,
    rel: &str,
    file: &Path,
    dest: Destination,
    cfg: &Config,
    mode: Mode,
) -> Result<(PathBuf, Destination, Config), PrepError> {
    let staged = compress::stage(file, staging_dir, rel).map_err(|e| PrepError {
        code: match &e {
            StageError::Changed => exit::DATAERR,
            StageError::Io(e) if e.kind() == std::io::ErrorKind::NotFound => exit::NOINPUT,
            StageError::Io(_) => exit::IOERR,
        },
        msg: e.to_string(),
    })?;
    if staged.reused {
        log::info!(
            "{rel}: using the file compressed by an earlier run ({} bytes)",
            staged.len
        );
    } else {
        // Integer percent: no float formatting in the board binary.
        let pct = staged.len.saturating_mul(100) / staged.original_len.max(1);
        log::info!(
            "compressed {rel}: {} -> {} bytes ({pct} %)",
            staged.original_len,
            staged.len
        );
    }
    let d = Destination {
        bucket: dest.bucket,
        key: staging::object_key(&dest.key, mode),
    };
    d.validate().map_err(|e| PrepError {
        msg: e.0,
        code: exit::USAGE,
    })?;
    let mut c = cfg.clone();
    match mode {
        Mode::GzipObject => c.object.content_type = Some("application/gzip".into()),
        Mode::ContentEncoding => c.object.content_encoding = Some("gzip".into()),
    }
    Ok((staged.path, d, c))
}

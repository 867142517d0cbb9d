//! Part geometry: how a file of a given length splits into multipart parts, within OSS limits.
//!
//! Owns: part count, part ranges, and the part-size limits. Must not: know about HTTP, the
//! journal, or which parts are done.

/// Smallest part OSS accepts (except the last part): 100 KiB.
pub const MIN_PART_SIZE: u64 = 100 * 1024;
/// Largest part: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Most parts in one upload.
pub const MAX_PARTS: u32 = 10_000;

/// Why a geometry is impossible.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GeometryError {
    /// The requested part size is outside `MIN_PART_SIZE..=MAX_PART_SIZE`.
    PartSizeOutOfRange(u64),
    /// The file needs more than 10,000 parts even at the largest part size (over 48.8 TiB).
    FileTooLarge(u64),
}

/// A file length and the part size used to split it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// File length in bytes.
    pub file_len: u64,
    /// Size of every part but the last.
    pub part_size: u64,
}

impl Geometry {
    /// The geometry for `file_len` with `requested` part size, grown (by doubling) until the
    /// file fits in [`MAX_PARTS`] parts.
    pub fn new(file_len: u64, requested: u64) -> Result<Self, GeometryError> {
        let _ = (file_len, requested);
        todo!()
    }

    /// Number of parts (0 for an empty file).
    pub fn count(&self) -> u32 {
        todo!()
    }

    /// `(offset, len)` of part `n` (1-based). Panics if `n` is 0 or above `count()`.
    pub fn part(&self, n: u32) -> (u64, u64) {
        let _ = n;
        todo!()
    }
}

//! Part geometry: how a file of a given length splits into multipart parts, within OSS limits.
//!
//! Owns: part count, part ranges, and the part-size limits. Must not: know about HTTP, the
//! journal, or which parts are done.
//!
//! Parts are numbered from 1. Part `n` starts at `(n - 1) * part_size`; every part but the last
//! is exactly `part_size` bytes, and the last one holds the remaining `1..=part_size` bytes.
//! An empty file has no parts at all (the caller uploads it with a single `PutObject`).
//!
//! The part size starts at the requested size and doubles (capped at [`MAX_PART_SIZE`]) until
//! the file fits in [`MAX_PARTS`] parts, as the OSS Python SDK does. Doubling, rather than
//! adding the base size as the Go SDK does, keeps the number of steps tiny and the chosen
//! size a "round" multiple of the configured one.

/// Smallest part OSS accepts (except the last part): 100 KiB.
pub const MIN_PART_SIZE: u64 = 100 * 1024;
/// Largest part: 5 GiB.
pub const MAX_PART_SIZE: u64 = 5 * 1024 * 1024 * 1024;
/// Smallest part S3 and the stores that follow it (AWS, MinIO, Ceph RGW) accept for every
/// part but the last: 5 MiB (5,242,880 bytes).
pub const S3_MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// The part size to use for `requested`: in s3-v4 mode (`s3`) a smaller one is raised to
/// [`S3_MIN_PART_SIZE`] unless `allow_small` says the store permits small parts.
pub fn effective_part_size(requested: u64, s3: bool, allow_small: bool) -> u64 {
    if s3 && !allow_small {
        requested.max(S3_MIN_PART_SIZE)
    } else {
        requested
    }
}

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
///
/// The fields are public so that a journal's identity can be turned back into a geometry;
/// a value built by hand with `part_size == 0` has no parts (it never panics).
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
    ///
    /// Errors: [`GeometryError::PartSizeOutOfRange`] if `requested` is outside
    /// `MIN_PART_SIZE..=MAX_PART_SIZE`; [`GeometryError::FileTooLarge`] if even
    /// [`MAX_PART_SIZE`] needs more than [`MAX_PARTS`] parts.
    pub fn new(file_len: u64, requested: u64) -> Result<Self, GeometryError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&requested) {
            return Err(GeometryError::PartSizeOutOfRange(requested));
        }
        let mut part_size = requested;
        // At most ~16 iterations: MAX_PART_SIZE / MIN_PART_SIZE < 2^16.
        while file_len.div_ceil(part_size) > u64::from(MAX_PARTS) {
            if part_size == MAX_PART_SIZE {
                return Err(GeometryError::FileTooLarge(file_len));
            }
            part_size = part_size.saturating_mul(2).min(MAX_PART_SIZE);
        }
        Ok(Geometry {
            file_len,
            part_size,
        })
    }

    /// Number of parts (0 for an empty file). At most [`MAX_PARTS`] for a geometry built by
    /// [`Geometry::new`]; a hand-built one saturates at `u32::MAX` (and has 0 parts if
    /// `part_size` is 0).
    pub fn count(&self) -> u32 {
        if self.part_size == 0 {
            return 0;
        }
        u32::try_from(self.file_len.div_ceil(self.part_size)).unwrap_or(u32::MAX)
    }

    /// `(offset, len)` of part `n` (1-based), or `None` if `n` is 0 or above
    /// [`count()`](Geometry::count). Never panics.
    pub fn try_part(&self, n: u32) -> Option<(u64, u64)> {
        if n == 0 || n > self.count() {
            return None;
        }
        let offset = u64::from(n - 1).checked_mul(self.part_size)?;
        let remaining = self.file_len.checked_sub(offset)?;
        Some((offset, remaining.min(self.part_size)))
    }

    /// `(offset, len)` of part `n` (1-based). Panics if `n` is 0 or above `count()`; use
    /// [`try_part`](Geometry::try_part) when `n` is not known to be in range.
    pub fn part(&self, n: u32) -> (u64, u64) {
        self.try_part(n).expect("part number out of range")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn g(file_len: u64, requested: u64) -> Geometry {
        Geometry::new(file_len, requested).unwrap()
    }

    #[test]
    fn empty_file_has_no_parts() {
        let geo = g(0, MIN_PART_SIZE);
        assert_eq!(geo.part_size, MIN_PART_SIZE);
        assert_eq!(geo.count(), 0);
        assert_eq!(geo.try_part(0), None);
        assert_eq!(geo.try_part(1), None);
    }

    #[test]
    fn one_byte() {
        let geo = g(1, MIN_PART_SIZE);
        assert_eq!(geo.count(), 1);
        assert_eq!(geo.part(1), (0, 1));
        assert_eq!(geo.try_part(2), None);
    }

    #[test]
    fn exactly_one_part_and_one_byte_over() {
        let p = 6 * 1024 * 1024;
        let geo = g(p, p);
        assert_eq!(geo.count(), 1);
        assert_eq!(geo.part(1), (0, p));

        let geo = g(p + 1, p);
        assert_eq!(geo.count(), 2);
        assert_eq!(geo.part(1), (0, p));
        assert_eq!(geo.part(2), (p, 1));
        assert_eq!(geo.try_part(3), None);
    }

    #[test]
    fn exactly_n_parts_and_n_plus_one_byte() {
        let p = MIN_PART_SIZE + 7;
        for n in [2u32, 3, 17, 9_999] {
            let len = u64::from(n) * p;
            let geo = g(len, p);
            assert_eq!(geo.part_size, p);
            assert_eq!(geo.count(), n);
            assert_eq!(geo.part(n), (u64::from(n - 1) * p, p));
            assert_eq!(geo.try_part(n + 1), None);

            let geo = g(len + 1, p);
            assert_eq!(geo.part_size, p);
            assert_eq!(geo.count(), n + 1);
            assert_eq!(geo.part(n), (u64::from(n - 1) * p, p));
            assert_eq!(geo.part(n + 1), (len, 1));
        }
    }

    #[test]
    fn ten_thousand_part_boundary_and_growth() {
        // Exactly MAX_PARTS parts: no growth.
        let len = MIN_PART_SIZE * u64::from(MAX_PARTS);
        let geo = g(len, MIN_PART_SIZE);
        assert_eq!(geo.part_size, MIN_PART_SIZE);
        assert_eq!(geo.count(), MAX_PARTS);
        assert_eq!(geo.part(MAX_PARTS), (len - MIN_PART_SIZE, MIN_PART_SIZE));
        assert_eq!(geo.try_part(MAX_PARTS + 1), None);

        // One byte more: the part size doubles once.
        let geo = g(len + 1, MIN_PART_SIZE);
        assert_eq!(geo.part_size, 2 * MIN_PART_SIZE);
        assert_eq!(geo.count(), 5_001);
        assert_eq!(geo.part(5_001), (len, 1));

        // Several doublings.
        let geo = g(len * 5, MIN_PART_SIZE);
        assert_eq!(geo.part_size, 8 * MIN_PART_SIZE);
        assert!(geo.count() <= MAX_PARTS);

        // Doubling is capped at MAX_PART_SIZE.
        let three_gib = 3 * 1024 * 1024 * 1024;
        let geo = g(three_gib * u64::from(MAX_PARTS) + 1, three_gib);
        assert_eq!(geo.part_size, MAX_PART_SIZE);
        assert!(geo.count() <= MAX_PARTS);

        // The largest file that fits, and one byte more.
        let max_len = MAX_PART_SIZE * u64::from(MAX_PARTS);
        let geo = g(max_len, MIN_PART_SIZE);
        assert_eq!(geo.part_size, MAX_PART_SIZE);
        assert_eq!(geo.count(), MAX_PARTS);
        assert_eq!(
            Geometry::new(max_len + 1, MIN_PART_SIZE),
            Err(GeometryError::FileTooLarge(max_len + 1))
        );
        assert_eq!(
            Geometry::new(u64::MAX, MAX_PART_SIZE),
            Err(GeometryError::FileTooLarge(u64::MAX))
        );
    }

    #[test]
    fn out_of_range_part_sizes() {
        for bad in [0, 1, MIN_PART_SIZE - 1, MAX_PART_SIZE + 1, u64::MAX] {
            assert_eq!(
                Geometry::new(1, bad),
                Err(GeometryError::PartSizeOutOfRange(bad))
            );
            assert_eq!(
                Geometry::new(0, bad),
                Err(GeometryError::PartSizeOutOfRange(bad))
            );
        }
        assert!(Geometry::new(1, MIN_PART_SIZE).is_ok());
        assert!(Geometry::new(1, MAX_PART_SIZE).is_ok());
    }

    #[test]
    fn hand_built_geometries_never_panic() {
        let zero = Geometry {
            file_len: 10,
            part_size: 0,
        };
        assert_eq!(zero.count(), 0);
        assert_eq!(zero.try_part(1), None);
        let huge = Geometry {
            file_len: u64::MAX,
            part_size: 1,
        };
        assert_eq!(huge.count(), u32::MAX);
        assert_eq!(huge.try_part(u32::MAX), Some((u64::from(u32::MAX) - 1, 1)));
    }

    #[test]
    #[should_panic]
    fn part_zero_panics() {
        let _ = g(1, MIN_PART_SIZE).part(0);
    }

    proptest! {
        #[test]
        fn parts_tile_the_file(
            file_len in prop_oneof![
                0u64..=4 * MIN_PART_SIZE,
                0u64..=MAX_PART_SIZE * u64::from(MAX_PARTS) + MAX_PART_SIZE,
            ],
            requested in MIN_PART_SIZE..=MAX_PART_SIZE,
        ) {
            let limit = MAX_PART_SIZE * u64::from(MAX_PARTS);
            let geo = match Geometry::new(file_len, requested) {
                Ok(geo) => geo,
                Err(e) => {
                    prop_assert!(file_len > limit);
                    prop_assert_eq!(e, GeometryError::FileTooLarge(file_len));
                    return Ok(());
                }
            };
            prop_assert!(file_len <= limit);
            prop_assert_eq!(geo.file_len, file_len);
            prop_assert!(geo.part_size >= requested && geo.part_size <= MAX_PART_SIZE);
            let count = geo.count();
            prop_assert!(count <= MAX_PARTS);
            prop_assert_eq!(count == 0, file_len == 0);

            // The part size is the first step of the doubling sequence that fits.
            if geo.part_size > requested {
                let mut prev = requested;
                while prev * 2 < geo.part_size {
                    prev *= 2;
                }
                prop_assert!(prev * 2 == geo.part_size || geo.part_size == MAX_PART_SIZE);
                prop_assert!(file_len.div_ceil(prev) > u64::from(MAX_PARTS));
            }

            let mut next = 0u64;
            for n in 1..=count {
                let (offset, len) = geo.part(n);
                prop_assert_eq!(offset, next);
                if n < count {
                    prop_assert_eq!(len, geo.part_size);
                } else {
                    prop_assert!(len >= 1 && len <= geo.part_size);
                }
                next = offset + len;
            }
            prop_assert_eq!(next, file_len);
            prop_assert_eq!(geo.try_part(count + 1), None);
            prop_assert_eq!(geo.try_part(0), None);
        }
    }

    #[test]
    fn s3_parts_are_at_least_five_mib_unless_allowed() {
        assert_eq!(effective_part_size(1 << 20, true, false), S3_MIN_PART_SIZE);
        assert_eq!(effective_part_size(1 << 20, true, true), 1 << 20);
        assert_eq!(effective_part_size(1 << 20, false, false), 1 << 20);
        assert_eq!(effective_part_size(8 << 20, true, false), 8 << 20);
    }
}

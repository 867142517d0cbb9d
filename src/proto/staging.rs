//! Compression staging: which spool files are compressed, what their staging files are called,
//! what state a staging file is in, the gzip framing around the deflate stream, and the key
//! and headers of the compressed object.
//!
//! Owns: glob matching of `--compress` patterns, staging-file names (they encode the version of
//! the original they were made from, so a changed original never reuses a stale staging file),
//! classifying the files of a staging directory, the gzip header and trailer (RFC 1952).
//! Must not: read or write files, or compress (the deflate stream runs in `crate::io`).
//!
//! **Naming.** The staging file of spool path `rel`, version `v` (device, inode, length,
//! modification time) is `<16 hex of SHA-256(rel)>-<16 hex of SHA-256(v)>.gz`; while it is
//! being written it is the same name plus `.part`. All versions of one path share the first
//! half, so the staging files of older versions are found (and removed) by that prefix.

use sha2::{Digest, Sha256};

/// How a compressed file is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The default: key `KEY.gz`, `Content-Type: application/gzip`. The object is exactly what
    /// its name says, so every client (a browser, `ossutil cp`, `aws s3 cp`, a lifecycle rule
    /// on `*.gz`) gets the compressed bytes under a name that says so.
    #[default]
    GzipObject,
    /// `--content-encoding gzip`: key unchanged, `Content-Encoding: gzip` and the original's
    /// content type; HTTP clients that honour the header see the original bytes.
    ContentEncoding,
}

/// The object key of a compressed `key` in `mode`.
pub fn object_key(key: &str, mode: Mode) -> String {
    match mode {
        Mode::GzipObject => format!("{key}.gz"),
        Mode::ContentEncoding => key.to_string(),
    }
}

/// The version of an original file that a staging file was made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Length in bytes.
    pub len: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
}

fn h16(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p);
    }
    crate::proto::sign::hex(&h.finalize()[..8])
}

/// The name prefix shared by the staging files of every version of `rel`.
pub fn prefix(rel: &str) -> String {
    h16(&[rel.as_bytes()])
}

/// The final name of the staging file of `rel` at version `v`.
pub fn name(rel: &str, v: Version) -> String {
    let ver = h16(&[
        &v.dev.to_le_bytes(),
        &v.ino.to_le_bytes(),
        &v.len.to_le_bytes(),
        &v.mtime_ns.to_le_bytes(),
    ]);
    format!("{}-{ver}.gz", prefix(rel))
}

/// The name a staging file has while it is written.
pub fn part_name(final_name: &str) -> String {
    format!("{final_name}.part")
}

/// What a file found in the staging directory is, relative to the wanted `name(rel, v)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// The complete staging file of the wanted version: upload it, do not recompress.
    Complete,
    /// A compression that was cut short (crash, power cut): delete it and compress again.
    Partial,
    /// A staging file of another version of the same path: the original changed; delete it.
    Stale,
    /// Belongs to another path (or is not a staging file): leave it alone.
    Unrelated,
}

/// Classifies `file_name` (a name in the staging directory) for `rel` at version `v`.
pub fn classify(file_name: &str, rel: &str, v: Version) -> State {
    let want = name(rel, v);
    if file_name == want {
        return State::Complete;
    }
    let pre = format!("{}-", prefix(rel));
    match file_name.strip_prefix(&pre) {
        Some(rest) if rest.len() == 16 + 3 || rest.len() == 16 + 8 => {
            if file_name.ends_with(".part") {
                State::Partial
            } else {
                State::Stale
            }
        }
        _ => State::Unrelated,
    }
}

/// True for a name this module could have made (a complete or partial staging file).
pub fn is_staging_name(file_name: &str) -> bool {
    let b = file_name.as_bytes();
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    (b.len() == 36 || b.len() == 41)
        && hex(&b[..16])
        && b[16] == b'-'
        && hex(&b[17..33])
        && &b[33..36] == b".gz"
        && (b.len() == 36 || &b[36..] == b".part")
}

/// The 10-byte gzip member header: deflate, no name, modification time 0 (so the same input
/// always gives the same bytes and the same CRC-64, which makes a re-staged file resumable),
/// OS Unix.
pub const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];

/// The 8-byte gzip trailer: CRC-32 of the uncompressed bytes and their length modulo 2^32.
pub fn gzip_trailer(crc32: u32, len: u64) -> [u8; 8] {
    let mut t = [0u8; 8];
    t[..4].copy_from_slice(&crc32.to_le_bytes());
    t[4..].copy_from_slice(&(len as u32).to_le_bytes());
    t
}

/// Longest glob pattern accepted (they come from the operator; this bounds the matcher).
pub const MAX_GLOB_LEN: usize = 256;

/// Matches a `--compress` (or any spool) glob against the relative path `rel`.
///
/// `*` matches any run of characters but `/`, `?` one character but `/`, `**` any run
/// including `/` (and `**/` also no directory at all), `[abc]`/`[a-z]`/`[!x]` one character
/// of a set. A pattern without `/` is matched against the file name alone (`*.log` matches
/// `a/b/c.log`), as in `.gitignore`; one with `/` against the whole relative path. Patterns
/// longer than [`MAX_GLOB_LEN`] match nothing. Time is O(pattern × path) (memoised).
pub fn glob_matches(pattern: &str, rel: &str) -> bool {
    if pattern.len() > MAX_GLOB_LEN {
        return false;
    }
    let subject = if pattern.contains('/') {
        rel
    } else {
        rel.rsplit('/').next().unwrap_or(rel)
    };
    let p: Vec<char> = pattern.chars().collect();
    let s: Vec<char> = subject.chars().collect();
    let mut memo = vec![None; (p.len() + 1) * (s.len() + 1)];
    Glob {
        p: &p,
        s: &s,
        memo: &mut memo,
    }
    .at(0, 0)
}

struct Glob<'a> {
    p: &'a [char],
    s: &'a [char],
    memo: &'a mut Vec<Option<bool>>,
}

impl Glob<'_> {
    fn at(&mut self, pi: usize, si: usize) -> bool {
        let slot = pi * (self.s.len() + 1) + si;
        if let Some(r) = self.memo[slot] {
            return r;
        }
        let r = self.step(pi, si);
        self.memo[slot] = Some(r);
        r
    }

    fn step(&mut self, pi: usize, si: usize) -> bool {
        let (p, s) = (self.p, self.s);
        let Some(&c) = p.get(pi) else {
            return si == s.len();
        };
        match c {
            '*' if p.get(pi + 1) == Some(&'*') => {
                let mut next = pi + 2;
                if p.get(next) == Some(&'/') {
                    // `**/x` also matches `x` at this level.
                    if self.at(next + 1, si) {
                        return true;
                    }
                    next += 1;
                    return (si..s.len())
                        .filter(|&k| s[k] == '/')
                        .any(|k| self.at(next, k + 1));
                }
                (si..=s.len()).any(|k| self.at(next, k))
            }
            '*' => {
                if self.at(pi + 1, si) {
                    return true;
                }
                si < s.len() && s[si] != '/' && self.at(pi, si + 1)
            }
            '?' => si < s.len() && s[si] != '/' && self.at(pi + 1, si + 1),
            '[' => match class(&p[pi + 1..]) {
                None => s.get(si) == Some(&'[') && self.at(pi + 1, si + 1),
                Some((set_len, neg)) => {
                    let Some(&ch) = s.get(si) else { return false };
                    let set = &p[pi + 1..pi + 1 + set_len];
                    let set = if neg { &set[1..] } else { set };
                    ch != '/' && in_set(set, ch) != neg && self.at(pi + 2 + set_len, si + 1)
                }
            },
            c => s.get(si) == Some(&c) && self.at(pi + 1, si + 1),
        }
    }
}

/// Length of the set after a `[` (up to the closing `]`, which may not be its first
/// character) and whether it is negated; `None` when there is no closing bracket.
fn class(after: &[char]) -> Option<(usize, bool)> {
    let neg = matches!(after.first(), Some('!') | Some('^'));
    let first = usize::from(neg) + 1;
    let close = after.iter().skip(first).position(|&c| c == ']')? + first;
    Some((close, neg))
}

fn in_set(set: &[char], c: char) -> bool {
    let mut i = 0;
    while i < set.len() {
        if i + 2 < set.len() && set[i + 1] == '-' {
            if set[i] <= c && c <= set[i + 2] {
                return true;
            }
            i += 3;
        } else {
            if set[i] == c {
                return true;
            }
            i += 1;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(ino: u64, len: u64) -> Version {
        Version {
            dev: 1,
            ino,
            len,
            mtime_ns: 1_700_000_000_000_000_000,
        }
    }

    #[test]
    fn globs() {
        let yes = [
            ("*.log", "app.log"),
            ("*.log", "a/b/app.log"),
            ("app-??.log", "app-01.log"),
            ("logs/*.log", "logs/x.log"),
            ("logs/**/*.log", "logs/x.log"),
            ("logs/**/*.log", "logs/a/b/x.log"),
            ("**", "a/b"),
            ("*.[jc]son", "x.json"),
            ("*.[a-c]", "x.b"),
            ("*.[!x]", "x.y"),
            ("*", "anything"),
            ("[", "["),
        ];
        for (p, s) in yes {
            assert!(glob_matches(p, s), "{p} should match {s}");
        }
        let no = [
            ("*.log", "app.log.1"),
            ("logs/*.log", "logs/a/x.log"),
            ("logs/*.log", "other/x.log"),
            ("app-??.log", "app-1.log"),
            ("*.[!x]", "x.x"),
            ("*.mp4", "clip.MP4"),
            ("a*b", "a/b"),
        ];
        for (p, s) in no {
            assert!(!glob_matches(p, s), "{p} should not match {s}");
        }
        // A pathological pattern is answered in polynomial time.
        let p = "*a".repeat(60) + "b";
        assert!(!glob_matches(&p, &"a".repeat(200)));
        assert!(glob_matches("**/x.log", "x.log"));
        assert!(glob_matches("a/**/x.log", "a/x.log"));
        assert!(!glob_matches("a/**/x.log", "ab/x.log"));
        assert!(!glob_matches(&"*".repeat(MAX_GLOB_LEN + 1), "a"));
    }

    #[test]
    fn names_follow_the_version() {
        let n = name("logs/app.log", v(5, 100));
        assert!(is_staging_name(&n), "{n}");
        assert!(is_staging_name(&part_name(&n)));
        assert_eq!(classify(&n, "logs/app.log", v(5, 100)), State::Complete);
        assert_eq!(
            classify(&part_name(&n), "logs/app.log", v(5, 100)),
            State::Partial
        );
        // The original grew: the old staging file is stale, and so is an old partial one.
        assert_eq!(classify(&n, "logs/app.log", v(5, 101)), State::Stale);
        assert_eq!(
            classify(&part_name(&n), "logs/app.log", v(5, 101)),
            State::Partial
        );
        // Another path's files are not touched.
        assert_eq!(classify(&n, "logs/other.log", v(5, 100)), State::Unrelated);
        assert_eq!(
            classify("notes.txt", "logs/app.log", v(5, 100)),
            State::Unrelated
        );
        assert!(!is_staging_name("notes.txt"));
        assert_ne!(name("a", v(1, 1)), name("a", v(2, 1)));
        assert_ne!(prefix("a"), prefix("b"));
    }

    #[test]
    fn keys_and_framing() {
        assert_eq!(
            object_key("cam/app.log", Mode::GzipObject),
            "cam/app.log.gz"
        );
        assert_eq!(
            object_key("cam/app.log", Mode::ContentEncoding),
            "cam/app.log"
        );
        assert_eq!(GZIP_HEADER[..3], [0x1f, 0x8b, 8]);
        assert_eq!(
            gzip_trailer(0xCBF4_3926, (1 << 32) + 9),
            [0x26, 0x39, 0xF4, 0xCB, 9, 0, 0, 0]
        );
    }
}

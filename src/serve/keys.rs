//! `ossup serve --keys-file PATH`: temporary keys, as an STS would hand them out, listed in a
//! file the server re-reads whenever it changes (checked on every request).
//!
//! One key per line, fields separated by white space, `#` starts a comment:
//!
//! ```text
//! # ACCESS_KEY_ID  SECRET  SECURITY_TOKEN|-  EXPIRATION|-
//! STS.k1  s1  tok1  2026-12-04T10:15:00Z
//! LTAIlongterm  s2  -  -
//! ```
//!
//! A request signed with a key not listed is answered `InvalidAccessKeyId`; with a listed
//! key whose expiration has passed (by the server's skewed clock), `SecurityTokenExpired`
//! (S3 signature: `ExpiredToken`, 400); with a listed key but another token,
//! `InvalidSecurityToken` (S3: `InvalidToken`, 400). An unreadable file lists no keys.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::proto::credentials::parse_rfc3339;
use crate::proto::sign::Credentials;

/// Largest keys file read.
const MAX_FILE: u64 = 1 << 20;

/// One listed key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    /// The key pair and token.
    pub(crate) credentials: Credentials,
    /// Unix seconds after which it is expired.
    pub(crate) expires: Option<i64>,
}

/// What identifies a version of the file: device, inode, mtime and ctime (ns), size.
type Stamp = (u64, u64, i64, i64, u64);

/// The keys file and what was last read from it.
#[derive(Debug)]
pub(crate) struct KeysFile {
    path: PathBuf,
    cache: Mutex<(Option<Stamp>, Vec<Key>)>,
}

/// Parses the file's text; lines that do not parse are skipped.
fn parse(text: &str) -> Vec<Key> {
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 2 || f.len() > 4 {
            continue;
        }
        let opt = |i: usize| f.get(i).copied().filter(|v| *v != "-");
        let expires = match opt(3) {
            Some(e) => match parse_rfc3339(e) {
                Some(t) => Some(t),
                None => continue,
            },
            None => None,
        };
        keys.push(Key {
            credentials: Credentials {
                access_key_id: f[0].to_string(),
                access_key_secret: f[1].to_string(),
                security_token: opt(2).map(str::to_string),
            },
            expires,
        });
    }
    keys
}

impl KeysFile {
    /// A keys file at `path` (read on first use).
    pub(crate) fn new(path: PathBuf) -> KeysFile {
        KeysFile {
            path,
            cache: Mutex::new((None, Vec::new())),
        }
    }

    /// The key listed under `access_key_id`, re-reading the file if it changed.
    pub(crate) fn lookup(&self, access_key_id: &str) -> Option<Key> {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = fs::metadata(&self.path).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                m.ctime() * 1_000_000_000 + m.ctime_nsec(),
                m.size(),
            )
        });
        if stamp != c.0 || stamp.is_none() {
            let mut text = String::new();
            let ok = fs::File::open(&self.path)
                .and_then(|f| f.take(MAX_FILE).read_to_string(&mut text))
                .is_ok();
            *c = (stamp, if ok { parse(&text) } else { Vec::new() });
        }
        c.1.iter()
            .find(|k| k.credentials.access_key_id == access_key_id)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lines_and_skips_bad_ones() {
        let k = parse(
            "# comment\n STS.a  sa  ta  2026-12-04T10:00:00Z # trailing\nLT sb - -\nbad\nx y z notatime\nc sc\n",
        );
        assert_eq!(k.len(), 3);
        assert_eq!(k[0].credentials.security_token.as_deref(), Some("ta"));
        assert_eq!(k[0].expires, parse_rfc3339("2026-12-04T10:00:00Z"));
        assert_eq!(
            (k[1].credentials.security_token.as_deref(), k[1].expires),
            (None, None)
        );
        assert_eq!(k[2].credentials.access_key_id, "c");
    }
}

//! The on-disk store of `ossup serve`: buckets, objects with sidecar metadata, and
//! multipart uploads that survive a restart. The layout is described in the module doc of
//! `crate::serve`.
//!
//! Owns: file names, metadata files, atomic commits (write a new file, rename it into place)
//! and the locks that keep an object's data and sidecar, or an upload's parts, consistent.
//! Must not: speak HTTP, check signatures or decide error codes.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use md5::{Digest, Md5};
use sha2::Sha256;

use super::faults::splitmix;
use crate::proto::crc64;
use crate::proto::sign::uri_encode;

/// Directory (under the store root) holding unfinished multipart uploads.
pub(crate) const UPLOADS_DIR: &str = ".ossup-uploads";
/// Directory (under the store root) for files being written; same file system as the rest.
pub(crate) const TMP_DIR: &str = ".ossup-tmp";
/// Suffix of an object's sidecar metadata file (`#` never occurs in an encoded key).
pub(crate) const META_SUFFIX: &str = "#meta";
/// Longest encoded key used verbatim as a file name; longer keys get a hashed name.
const MAX_NAME: usize = 200;

/// Metadata of a stored object (its sidecar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ObjectMeta {
    /// The object key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag without quotes (`HEX` for PutObject, `HEX-N` for multipart).
    pub etag: String,
    /// CRC-64/XZ of the bytes.
    pub crc: u64,
    /// Last modification, Unix seconds (server time).
    pub mtime: i64,
    /// Content-Type given at upload, if any.
    pub content_type: Option<String>,
}

/// Metadata of an unfinished multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UploadInfo {
    /// Upload id.
    pub id: String,
    /// Bucket.
    pub bucket: String,
    /// Object key.
    pub key: String,
    /// Initiation time, Unix seconds (server time).
    pub initiated: i64,
    /// Content-Type for the final object, if given at initiation.
    pub content_type: Option<String>,
}

/// One stored part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartMeta {
    /// Part number.
    pub n: u32,
    /// Name of the data file inside the upload directory.
    pub file: String,
    /// Size in bytes.
    pub size: u64,
    /// MD5, upper-case hex, no quotes.
    pub etag: String,
    /// CRC-64/XZ.
    pub crc: u64,
    /// Upload time, Unix seconds (server time).
    pub mtime: i64,
}

/// What streaming a body into a file produced.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Digests {
    /// Bytes written.
    pub size: u64,
    /// MD5.
    pub md5: [u8; 16],
    /// CRC-64/XZ.
    pub crc: u64,
    /// SHA-256, when asked for ([`Hasher::with_sha256`]).
    pub sha256: Option<[u8; 32]>,
}

/// Incremental MD5 + CRC-64 + length (+ optionally SHA-256) over a byte stream.
pub(crate) struct Hasher {
    md5: Md5,
    crc: crc64::Hasher,
    size: u64,
    sha: Option<Sha256>,
}

impl Hasher {
    /// A fresh hasher.
    pub(crate) fn new() -> Hasher {
        Hasher {
            md5: Md5::new(),
            crc: crc64::Hasher::new(),
            size: 0,
            sha: None,
        }
    }

    /// A fresh hasher that also computes SHA-256 (to check an S3 `x-amz-content-sha256`).
    pub(crate) fn with_sha256() -> Hasher {
        Hasher {
            sha: Some(Sha256::new()),
            ..Hasher::new()
        }
    }

    /// Feeds bytes.
    pub(crate) fn update(&mut self, b: &[u8]) {
        self.md5.update(b);
        self.crc.write(b);
        self.size += b.len() as u64;
        if let Some(s) = &mut self.sha {
            s.update(b);
        }
    }

    /// The digests so far.
    pub(crate) fn finish(self) -> Digests {
        Digests {
            size: self.size,
            md5: self.md5.finalize().into(),
            crc: self.crc.sum(),
            sha256: self.sha.map(|s| s.finalize().into()),
        }
    }
}

/// Upper-case hex.
pub(crate) fn hex_upper(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(HEX[(x >> 4) as usize] as char);
        s.push(HEX[(x & 15) as usize] as char);
    }
    s
}

/// Percent-decodes `s` (`+` stays `+`). `None` on a bad escape or non-UTF-8 result.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3)?;
            let hi = (h[0] as char).to_digit(16)?;
            let lo = (h[1] as char).to_digit(16)?;
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether `name` is an acceptable bucket name: 3..=63 of `a-z 0-9 -`, not starting or
/// ending with `-` (the OSS rule; it also keeps bucket names from escaping the root).
pub(crate) fn valid_bucket(name: &str) -> bool {
    let b = name.as_bytes();
    (3..=63).contains(&b.len())
        && b.iter()
            .all(|&c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Whether `id` can be an upload id (hex only, so it cannot escape the uploads directory).
pub(crate) fn valid_upload_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|c| c.is_ascii_hexdigit())
}

/// The file name (inside the bucket directory) that holds `key`:
/// `uri_encode(key, false)`, except `.`/`..` (dots escaped) and names longer than 200
/// bytes (`%L` + SHA-256 hex of the key; `%L` never occurs in an encoded key).
pub(crate) fn object_file_name(key: &str) -> String {
    let enc = uri_encode(key, false);
    if enc.bytes().all(|c| c == b'.') {
        return enc.replace('.', "%2E");
    }
    if enc.len() > MAX_NAME {
        return format!("%L{}", hex_upper(&Sha256::digest(key.as_bytes())));
    }
    enc
}

fn enc(v: &str) -> String {
    uri_encode(v, false)
}

/// Parses a `name value` line file into a map (values percent-decoded).
fn parse_meta(text: &str) -> HashMap<&str, String> {
    let mut m = HashMap::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(' ') {
            if let Some(v) = percent_decode(v) {
                m.insert(k, v);
            }
        }
    }
    m
}

fn read_small(path: &Path) -> io::Result<Option<String>> {
    match File::open(path) {
        Ok(f) => {
            let mut s = String::new();
            f.take(64 * 1024).read_to_string(&mut s)?;
            Ok(Some(s))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// The store rooted at one directory.
pub(crate) struct Store {
    root: PathBuf,
    counter: AtomicU64,
    seed: u64,
    /// Serialises object commits and reads of (data, sidecar) pairs; held only briefly.
    objects: Mutex<()>,
    /// One lock per upload id: part commits, Complete and Abort of one upload are serialised.
    uploads: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Store {
    /// Opens (creating as needed) the store at `root` and clears leftovers of a crash.
    pub(crate) fn open(root: &Path) -> io::Result<Store> {
        fs::create_dir_all(root)?;
        fs::create_dir_all(root.join(UPLOADS_DIR))?;
        let tmp = root.join(TMP_DIR);
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir_all(&tmp)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let seed =
            splitmix(nanos ^ ((std::process::id() as u64) << 32) ^ (root.as_os_str().len() as u64));
        let store = Store {
            root: root.to_path_buf(),
            counter: AtomicU64::new(0),
            seed,
            objects: Mutex::new(()),
            uploads: Mutex::new(HashMap::new()),
        };
        store.clean_orphan_parts();
        Ok(store)
    }

    /// A fresh random-looking hex string of 32 characters, unique within this process.
    pub(crate) fn unique(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let a = splitmix(self.seed ^ nanos.rotate_left(17) ^ n);
        let b = splitmix(self.seed.wrapping_add(n));
        format!("{a:016X}{b:016X}")
    }

    fn bucket_dir(&self, bucket: &str) -> PathBuf {
        self.root.join(bucket)
    }

    fn uploads_dir(&self) -> PathBuf {
        self.root.join(UPLOADS_DIR)
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    /// Creates bucket `name` (idempotent).
    pub(crate) fn create_bucket(&self, name: &str) -> io::Result<()> {
        fs::create_dir_all(self.bucket_dir(name))
    }

    /// Whether bucket `name` exists.
    pub(crate) fn bucket_exists(&self, name: &str) -> bool {
        valid_bucket(name) && self.bucket_dir(name).is_dir()
    }

    /// A new temporary file (in the store's temp directory).
    pub(crate) fn temp_file(&self) -> io::Result<(PathBuf, File)> {
        let p = self.root.join(TMP_DIR).join(self.unique());
        let f = File::create(&p)?;
        Ok((p, f))
    }

    /// Writes `content` to `path` atomically (temp file, then rename).
    fn write_atomic(&self, path: &Path, content: &[u8]) -> io::Result<()> {
        let (tmp, mut f) = self.temp_file()?;
        let r = f.write_all(content).and_then(|_| fs::rename(&tmp, path));
        if r.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        r
    }

    fn lock_objects(&self) -> MutexGuard<'_, ()> {
        self.objects.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where `key`'s bytes live.
    pub(crate) fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_dir(bucket).join(object_file_name(key))
    }

    fn sidecar_path(&self, bucket: &str, key: &str) -> PathBuf {
        self.bucket_dir(bucket)
            .join(format!("{}{META_SUFFIX}", object_file_name(key)))
    }

    /// Moves the finished temp file `tmp` into place as `meta.key` and writes its sidecar.
    pub(crate) fn commit_object(
        &self,
        bucket: &str,
        tmp: &Path,
        meta: &ObjectMeta,
    ) -> io::Result<()> {
        let mut text = format!(
            "key {}\nsize {}\netag {}\ncrc {}\nmtime {}\n",
            enc(&meta.key),
            meta.size,
            enc(&meta.etag),
            meta.crc,
            meta.mtime
        );
        if let Some(ct) = &meta.content_type {
            text.push_str(&format!("content-type {}\n", enc(ct)));
        }
        let _g = self.lock_objects();
        fs::rename(tmp, self.object_path(bucket, &meta.key))?;
        self.write_atomic(&self.sidecar_path(bucket, &meta.key), text.as_bytes())
    }

    /// Opens `key` and returns its metadata with the open file, or `None` if it does not
    /// exist. A missing or stale sidecar (crash between the two renames) is recomputed.
    pub(crate) fn open_object(
        &self,
        bucket: &str,
        key: &str,
    ) -> io::Result<Option<(ObjectMeta, File)>> {
        let (side, f) = {
            let _g = self.lock_objects();
            let f = match File::open(self.object_path(bucket, key)) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            (read_small(&self.sidecar_path(bucket, key))?, f)
        };
        let len = f.metadata()?.len();
        if !f.metadata()?.is_file() {
            return Ok(None);
        }
        let parsed = side.as_deref().map(parse_meta).and_then(|m| {
            Some(ObjectMeta {
                key: m.get("key")?.clone(),
                size: m.get("size")?.parse().ok()?,
                etag: m.get("etag")?.clone(),
                crc: m.get("crc")?.parse().ok()?,
                mtime: m.get("mtime")?.parse().ok()?,
                content_type: m.get("content-type").cloned(),
            })
        });
        match parsed {
            Some(m) if m.size == len && m.key == key => Ok(Some((m, f))),
            _ => {
                let mut h = Hasher::new();
                let mut r = f.try_clone()?;
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        break;
                    }
                    h.update(&buf[..n]);
                }
                let d = h.finish();
                let mtime = f
                    .metadata()?
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let f = File::open(self.object_path(bucket, key))?;
                let meta = ObjectMeta {
                    key: key.to_string(),
                    size: d.size,
                    etag: hex_upper(&d.md5),
                    crc: d.crc,
                    mtime,
                    content_type: None,
                };
                Ok(Some((meta, f)))
            }
        }
    }

    /// Deletes `key` (no error if it does not exist).
    pub(crate) fn delete_object(&self, bucket: &str, key: &str) -> io::Result<()> {
        let _g = self.lock_objects();
        for p in [
            self.object_path(bucket, key),
            self.sidecar_path(bucket, key),
        ] {
            match fs::remove_file(p) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    /// Metadata of every object in `bucket` (from the sidecars), sorted by key.
    pub(crate) fn list_objects(&self, bucket: &str) -> io::Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.bucket_dir(bucket))? {
            let e = e?;
            let name = e.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(META_SUFFIX) else {
                continue;
            };
            let Some(text) = read_small(&e.path())? else {
                continue;
            };
            let m = parse_meta(&text);
            let (Some(key), Some(size), Some(etag), Some(crc), Some(mtime)) = (
                m.get("key"),
                m.get("size"),
                m.get("etag"),
                m.get("crc"),
                m.get("mtime"),
            ) else {
                continue;
            };
            if object_file_name(key) != stem {
                continue;
            }
            out.push(ObjectMeta {
                key: key.clone(),
                size: size.parse().unwrap_or(0),
                etag: etag.clone(),
                crc: crc.parse().unwrap_or(0),
                mtime: mtime.parse().unwrap_or(0),
                content_type: m.get("content-type").cloned(),
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// The lock of upload `id` (created on first use).
    pub(crate) fn upload_lock(&self, id: &str) -> Arc<Mutex<()>> {
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    fn forget_lock(&self, id: &str) {
        let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(id);
    }

    /// Starts a multipart upload; returns its id.
    pub(crate) fn initiate(
        &self,
        bucket: &str,
        key: &str,
        now: i64,
        content_type: Option<&str>,
    ) -> io::Result<String> {
        loop {
            let id = self.unique();
            let dir = self.upload_dir(&id);
            match fs::create_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
            let mut text = format!(
                "bucket {}\nkey {}\ninitiated {now}\n",
                enc(bucket),
                enc(key)
            );
            if let Some(ct) = content_type {
                text.push_str(&format!("content-type {}\n", enc(ct)));
            }
            if let Err(e) = self.write_atomic(&dir.join("upload"), text.as_bytes()) {
                let _ = fs::remove_dir_all(&dir);
                return Err(e);
            }
            return Ok(id);
        }
    }

    /// The upload `id`, or `None` if there is no such upload.
    pub(crate) fn upload(&self, id: &str) -> io::Result<Option<UploadInfo>> {
        if !valid_upload_id(id) {
            return Ok(None);
        }
        let Some(text) = read_small(&self.upload_dir(id).join("upload"))? else {
            return Ok(None);
        };
        let m = parse_meta(&text);
        let (Some(bucket), Some(key), Some(initiated)) =
            (m.get("bucket"), m.get("key"), m.get("initiated"))
        else {
            return Ok(None);
        };
        Ok(Some(UploadInfo {
            id: id.to_string(),
            bucket: bucket.clone(),
            key: key.clone(),
            initiated: initiated.parse().unwrap_or(0),
            content_type: m.get("content-type").cloned(),
        }))
    }

    /// Every unfinished upload (unsorted).
    pub(crate) fn uploads(&self) -> io::Result<Vec<UploadInfo>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.uploads_dir())? {
            let e = e?;
            if let Some(id) = e.file_name().to_str() {
                if let Some(u) = self.upload(id)? {
                    out.push(u);
                }
            }
        }
        Ok(out)
    }

    /// A new data file for part `n` of upload `id`: (path, file, file name).
    pub(crate) fn part_file(&self, id: &str, n: u32) -> io::Result<(PathBuf, File, String)> {
        let name = format!("{n}-{}", self.unique());
        let p = self.upload_dir(id).join(&name);
        let f = File::create(&p)?;
        Ok((p, f, name))
    }

    /// Records `part` (whose data file is already written) as part `part.n` of `id`,
    /// replacing any earlier upload of that number. Returns false (and removes the data
    /// file) if the upload no longer exists. Call with the upload lock held.
    pub(crate) fn commit_part(&self, id: &str, part: &PartMeta) -> io::Result<bool> {
        let dir = self.upload_dir(id);
        if self.upload(id)?.is_none() {
            let _ = fs::remove_file(dir.join(&part.file));
            return Ok(false);
        }
        let old = self.part(id, part.n)?;
        let text = format!(
            "file {}\nsize {}\netag {}\ncrc {}\nmtime {}\n",
            enc(&part.file),
            part.size,
            enc(&part.etag),
            part.crc,
            part.mtime
        );
        self.write_atomic(&dir.join(format!("{}.meta", part.n)), text.as_bytes())?;
        if let Some(old) = old {
            if old.file != part.file {
                let _ = fs::remove_file(dir.join(old.file));
            }
        }
        Ok(true)
    }

    fn part(&self, id: &str, n: u32) -> io::Result<Option<PartMeta>> {
        let Some(text) = read_small(&self.upload_dir(id).join(format!("{n}.meta")))? else {
            return Ok(None);
        };
        let m = parse_meta(&text);
        let get = |k: &str| m.get(k).cloned();
        let (Some(file), Some(size), Some(etag), Some(crc), Some(mtime)) = (
            get("file"),
            get("size"),
            get("etag"),
            get("crc"),
            get("mtime"),
        ) else {
            return Ok(None);
        };
        if file.contains('/') || file.starts_with('.') {
            return Ok(None);
        }
        Ok(Some(PartMeta {
            n,
            file,
            size: size.parse().unwrap_or(0),
            etag,
            crc: crc.parse().unwrap_or(0),
            mtime: mtime.parse().unwrap_or(0),
        }))
    }

    /// The stored parts of `id`, ascending.
    pub(crate) fn parts(&self, id: &str) -> io::Result<Vec<PartMeta>> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(self.upload_dir(id)) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for e in rd {
            let e = e?;
            let name = e.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|s| s.strip_suffix(".meta"))
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(p) = self.part(id, n)? {
                out.push(p);
            }
        }
        out.sort_by_key(|p| p.n);
        Ok(out)
    }

    /// Concatenates `parts` of upload `id` into object `key` of `bucket` (atomically) and
    /// returns the new object's metadata. Call with the upload lock held.
    pub(crate) fn assemble(
        &self,
        id: &str,
        bucket: &str,
        key: &str,
        parts: &[PartMeta],
        now: i64,
        content_type: Option<String>,
    ) -> io::Result<ObjectMeta> {
        let (tmp, mut out) = self.temp_file()?;
        let r = (|| {
            let mut buf = vec![0u8; 256 * 1024];
            let mut crc = 0u64;
            let mut size = 0u64;
            let mut md5s = Vec::with_capacity(parts.len() * 16);
            for p in parts {
                let mut f = File::open(self.upload_dir(id).join(&p.file))?;
                let mut left = p.size;
                while left > 0 {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = f.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "part file shorter than recorded",
                        ));
                    }
                    out.write_all(&buf[..n])?;
                    left -= n as u64;
                }
                crc = crc64::combine(crc, p.crc, p.size);
                size += p.size;
                md5s.extend_from_slice(&hex_decode(&p.etag).unwrap_or_default());
            }
            out.flush()?;
            let etag = format!("{}-{}", hex_upper(&Md5::digest(&md5s)), parts.len());
            Ok(ObjectMeta {
                key: key.to_string(),
                size,
                etag,
                crc,
                mtime: now,
                content_type,
            })
        })();
        drop(out);
        match r {
            Ok(meta) => match self.commit_object(bucket, &tmp, &meta) {
                Ok(()) => Ok(meta),
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    Err(e)
                }
            },
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Removes upload `id` and its parts. Returns false if it did not exist. Call with the
    /// upload lock held.
    pub(crate) fn remove_upload(&self, id: &str) -> io::Result<bool> {
        if self.upload(id)?.is_none() {
            return Ok(false);
        }
        // Rename first so the upload disappears at once, then delete at leisure.
        let trash = self
            .root
            .join(TMP_DIR)
            .join(format!("gone-{}", self.unique()));
        fs::rename(self.upload_dir(id), &trash)?;
        let _ = fs::remove_dir_all(&trash);
        self.forget_lock(id);
        Ok(true)
    }

    /// Removes part data files that no part metadata names (left by a crash mid-upload).
    fn clean_orphan_parts(&self) {
        let Ok(rd) = fs::read_dir(self.uploads_dir()) else {
            return;
        };
        for e in rd.flatten() {
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if !valid_upload_id(&id) {
                continue;
            }
            let Ok(parts) = self.parts(&id) else { continue };
            let keep: std::collections::HashSet<String> =
                parts.into_iter().map(|p| p.file).collect();
            let Ok(files) = fs::read_dir(e.path()) else {
                continue;
            };
            for f in files.flatten() {
                let name = f.file_name();
                let Some(name) = name.to_str() else { continue };
                if name == "upload" || name.ends_with(".meta") || keep.contains(name) {
                    continue;
                }
                let _ = fs::remove_file(f.path());
            }
        }
    }
}

/// Decodes hex (either case). `None` if invalid.
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let b = s.as_bytes();
    (0..b.len())
        .step_by(2)
        .map(|i| Some(((b[i] as char).to_digit(16)? * 16 + (b[i + 1] as char).to_digit(16)?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("ossup-store-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    #[test]
    fn file_names_are_distinct_and_safe() {
        let keys = [
            "a",
            "a/b",
            "a%2Fb",
            ".",
            "..",
            "...",
            "%2E",
            "x#meta",
            "中文 key",
            &"k".repeat(1023),
        ];
        let names: Vec<String> = keys.iter().map(|k| object_file_name(k)).collect();
        for (i, n) in names.iter().enumerate() {
            assert!(
                !n.contains('/') && !n.contains('#') && n.len() <= 255,
                "{n}"
            );
            assert!(n.bytes().any(|c| c != b'.'), "{n}");
            for m in &names[i + 1..] {
                assert_ne!(n, m);
            }
        }
        assert_eq!(object_file_name("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn decode_and_names() {
        assert_eq!(percent_decode("a%2Fb+c%20").as_deref(), Some("a/b+c "));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%4"), None);
        assert_eq!(percent_decode("%FF"), None);
        assert!(valid_bucket("my-bucket1"));
        for b in [
            "ab",
            "-ab",
            "ab-",
            "Abc",
            "a.b",
            "..",
            "a_b",
            &"a".repeat(64),
        ] {
            assert!(!valid_bucket(b), "{b}");
        }
        assert!(valid_upload_id("0A9f"));
        assert!(!valid_upload_id("../x") && !valid_upload_id(""));
        assert_eq!(hex_decode("0aFF"), Some(vec![10, 255]));
        assert_eq!(hex_decode("0g"), None);
    }

    #[test]
    fn object_commit_read_delete_and_stale_sidecar() {
        let root = tmpdir("obj");
        let s = Store::open(&root).unwrap();
        s.create_bucket("bkt").unwrap();
        assert!(s.bucket_exists("bkt") && !s.bucket_exists("nope"));
        let (tmp, mut f) = s.temp_file().unwrap();
        f.write_all(b"hello").unwrap();
        drop(f);
        let mut h = Hasher::new();
        h.update(b"hello");
        let d = h.finish();
        let meta = ObjectMeta {
            key: "d/x".into(),
            size: 5,
            etag: hex_upper(&d.md5),
            crc: d.crc,
            mtime: 7,
            content_type: Some("text/plain".into()),
        };
        s.commit_object("bkt", &tmp, &meta).unwrap();
        assert_eq!(fs::read(root.join("bkt").join("d%2Fx")).unwrap(), b"hello");
        let (m, _) = s.open_object("bkt", "d/x").unwrap().unwrap();
        assert_eq!(m, meta);
        assert_eq!(s.list_objects("bkt").unwrap(), vec![meta.clone()]);
        // Overwrite the data behind the sidecar's back: the server recomputes.
        fs::write(root.join("bkt").join("d%2Fx"), b"hello!").unwrap();
        let (m, _) = s.open_object("bkt", "d/x").unwrap().unwrap();
        assert_eq!(m.size, 6);
        assert_eq!(m.crc, crc64::update(0, b"hello!"));
        s.delete_object("bkt", "d/x").unwrap();
        assert!(s.open_object("bkt", "d/x").unwrap().is_none());
        s.delete_object("bkt", "d/x").unwrap();
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn upload_parts_assemble_and_survive_reopen() {
        let root = tmpdir("up");
        let s = Store::open(&root).unwrap();
        s.create_bucket("bkt").unwrap();
        let id = s.initiate("bkt", "big", 100, None).unwrap();
        assert!(valid_upload_id(&id));
        let put = |n: u32, data: &[u8]| {
            let (_, mut f, name) = s.part_file(&id, n).unwrap();
            f.write_all(data).unwrap();
            let mut h = Hasher::new();
            h.update(data);
            let d = h.finish();
            let p = PartMeta {
                n,
                file: name,
                size: d.size,
                etag: hex_upper(&d.md5),
                crc: d.crc,
                mtime: 1,
            };
            assert!(s.commit_part(&id, &p).unwrap());
        };
        put(2, b"world");
        put(1, b"XXXX");
        put(1, b"hello ");
        // an orphan data file, as a crash would leave it
        let (orphan, _, _) = s.part_file(&id, 3).unwrap();
        drop(s);
        let s = Store::open(&root).unwrap();
        assert!(!orphan.exists());
        let parts = s.parts(&id).unwrap();
        assert_eq!(
            parts.iter().map(|p| (p.n, p.size)).collect::<Vec<_>>(),
            vec![(1, 6), (2, 5)]
        );
        assert_eq!(
            fs::read_dir(root.join(UPLOADS_DIR).join(&id))
                .unwrap()
                .count(),
            5
        );
        let m = s.assemble(&id, "bkt", "big", &parts, 200, None).unwrap();
        assert_eq!(m.crc, crc64::update(0, b"hello world"));
        assert!(m.etag.ends_with("-2"));
        assert_eq!(fs::read(root.join("bkt/big")).unwrap(), b"hello world");
        assert!(s.remove_upload(&id).unwrap());
        assert!(!s.remove_upload(&id).unwrap());
        assert!(s.upload(&id).unwrap().is_none());
        assert!(s.uploads().unwrap().is_empty());
        let _ = fs::remove_dir_all(&root);
    }
}

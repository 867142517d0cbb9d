//! Upload configuration: plain data with defaults and validation.
//!
//! Owns: [`Config`], [`Endpoint`] and [`Destination`], their parsing from strings and their
//! validation. Must not: read files, the environment or board configs (the CLI does that), or
//! hold runtime state.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::proto::geometry::{MAX_PART_SIZE, MIN_PART_SIZE};
use crate::proto::request::{check_header_value, ObjectHeaders};
use crate::proto::retry::Backoff;
use crate::proto::sign::{Credentials, Scheme};

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn err<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// A parsed endpoint URL: `http(s)://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https`.
    pub tls: bool,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// TCP port (default 443 / 80).
    pub port: u16,
    /// The authority as written (`host[:port]`, IPv6 in brackets): the `Host` header base.
    pub authority: String,
}

impl Endpoint {
    /// Parses `http://…` or `https://…`; a path other than `/`, user info, a query or a
    /// fragment is rejected (user info would put a password into the journal).
    pub fn parse(url: &str) -> Result<Endpoint, ConfigError> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return err(format!(
                "endpoint {url:?} must start with https:// or http://"
            ));
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
        {
            return err(format!(
                "endpoint {url:?} contains a control character or white space"
            ));
        }
        if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
            return err(format!(
                "endpoint {url:?} must be scheme://host[:port] with no path or user"
            ));
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let Some((h, after)) = v6.split_once(']') else {
                return err(format!("endpoint {url:?}: unclosed IPv6 bracket"));
            };
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p, url)?,
                None if after.is_empty() => default_port,
                None => return err(format!("endpoint {url:?}: junk after IPv6 address")),
            };
            (h.to_string(), port)
        } else if let Some((h, p)) = authority.rsplit_once(':') {
            (h.to_string(), parse_port(p, url)?)
        } else {
            (authority.to_string(), default_port)
        };
        if host.is_empty() {
            return err(format!("endpoint {url:?} has no host"));
        }
        Ok(Endpoint {
            tls,
            host,
            port,
            authority: authority.to_string(),
        })
    }

    /// The URL form, `https://authority`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.authority
        )
    }
}

fn parse_port(p: &str, url: &str) -> Result<u16, ConfigError> {
    match p.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => err(format!("endpoint {url:?}: bad port {p:?}")),
    }
}

/// Where an object goes: `oss://bucket/key` (or `s3://bucket/key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// Bucket name.
    pub bucket: String,
    /// Object key.
    pub key: String,
}

impl Destination {
    /// Parses the destination of `ossup upload FILE URL`: like [`Destination::parse`], but a
    /// URL ending in `/` (`oss://b/dir/`, or `oss://b/`) means "into this prefix", and the
    /// key is the prefix followed by `file_name` (as `aws s3 cp` and `ossutil cp` do).
    pub fn parse_for_file(url: &str, file_name: &str) -> Result<Destination, ConfigError> {
        let into_prefix = url.ends_with('/')
            && (url
                .strip_prefix("oss://")
                .or_else(|| url.strip_prefix("s3://")))
            .is_some_and(|r| !r.is_empty());
        if into_prefix {
            if file_name.is_empty() {
                return Err(ConfigError(format!(
                    "destination {url:?} is a prefix, and the file has no name to add to it"
                )));
            }
            // `oss://b/` has no prefix: the key is the file name alone.
            return Destination::parse(&format!("{url}{file_name}"));
        }
        Destination::parse(url)
    }

    /// Parses `oss://bucket/key` or `s3://bucket/key` and validates both parts.
    pub fn parse(url: &str) -> Result<Destination, ConfigError> {
        let Some(rest) = url
            .strip_prefix("oss://")
            .or_else(|| url.strip_prefix("s3://"))
        else {
            return err(format!(
                "destination {url:?} must look like oss://BUCKET/KEY"
            ));
        };
        let Some((bucket, key)) = rest.split_once('/') else {
            return err(format!(
                "destination {url:?} has no object key (oss://BUCKET/KEY)"
            ));
        };
        let d = Destination {
            bucket: bucket.to_string(),
            key: key.to_string(),
        };
        d.validate()?;
        Ok(d)
    }

    /// Checks the bucket naming rules (3–63 of `a-z 0-9 -`, not starting or ending with `-`)
    /// and the key rules (1–1023 bytes, not starting with `/` or `\`, no control characters).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let b = &self.bucket;
        let ok_chars = b
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-');
        if !(3..=63).contains(&b.len()) || !ok_chars || b.starts_with('-') || b.ends_with('-') {
            return err(format!(
                "invalid bucket name {b:?}: use 3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            ));
        }
        let k = &self.key;
        if k.is_empty() {
            return err("the object key is empty");
        }
        if k.len() > 1023 {
            return err(format!(
                "the object key is {} bytes; the limit is 1023",
                k.len()
            ));
        }
        if k.starts_with('/') || k.starts_with('\\') {
            return err("the object key must not start with '/' or '\\'");
        }
        if k.chars().any(|c| c.is_control()) {
            return err("the object key contains control characters");
        }
        Ok(())
    }
}

/// Timeouts. Idle timeouts bound each read or write, so a slow but alive link finishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP connect (per address) and, separately, the TLS handshake.
    pub connect: Duration,
    /// Longest time without progress on a connection.
    pub idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(30),
        }
    }
}

/// Everything an upload needs besides the file and the destination.
#[derive(Debug, Clone)]
pub struct Config {
    /// Endpoint.
    pub endpoint: Endpoint,
    /// Region id, e.g. `cn-hangzhou` (part of the V4 signing scope).
    pub region: String,
    /// Credentials (with [`Config::credentials_provider`] set: the first ones it gave, used
    /// only to check the configuration).
    pub credentials: Credentials,
    /// A refreshable source consulted before signing each request (`--credentials-file`, or
    /// an embedder's broker). Its rejected credentials hold the queue instead of failing the
    /// upload. `None`: [`Config::credentials`] are static.
    pub credentials_provider:
        Option<std::sync::Arc<dyn crate::io::credentials::CredentialsProvider>>,
    /// Signature scheme.
    pub scheme: Scheme,
    /// Force path-style addressing (automatic for IP and localhost endpoints).
    pub path_style: bool,
    /// Where journals live (persistent storage, not tmpfs).
    pub checkpoint_dir: PathBuf,
    /// Files of at least this size use multipart upload.
    pub multipart_threshold: u64,
    /// Requested part size (grown automatically to fit 10,000 parts; in s3-v4 mode raised to
    /// 5 MiB unless `allow_small_parts`).
    pub part_size: u64,
    /// s3-v4 only: the store accepts parts under 5 MiB (moto with `S3_UPLOAD_PART_MIN_SIZE`);
    /// keep a smaller `part_size` as given.
    pub allow_small_parts: bool,
    /// Parts in flight at once; each has its own connection and buffer.
    pub jobs: u32,
    /// Size of each job's streaming buffer.
    pub buffer_size: usize,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Extra CA certificates (PEM) trusted besides the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Object headers (content type, metadata, storage class, ACL).
    pub object: ObjectHeaders,
    /// Keep retrying for this long of continuous failure (`None`: forever).
    pub retry_for: Option<Duration>,
    /// Backoff between retries.
    pub backoff: Backoff,
    /// Bandwidth cap in bytes per second over all jobs (`None`: unlimited).
    pub limit_rate: Option<u64>,
    /// Send Content-MD5 with each part (`None`: on for S3, off for OSS, which checks CRC-64).
    pub content_md5: Option<bool>,
    /// Wait for another process's lock on the same upload instead of failing.
    pub wait_for_lock: bool,
    /// Which HTTP proxy to tunnel through: from the environment as curl reads it
    /// (`HTTPS_PROXY`, `http_proxy`, `ALL_PROXY`, `NO_PROXY`; the default), a given URL, or
    /// none. See [`crate::proto::proxy::choose`].
    pub proxy: crate::proto::proxy::ProxySetting,
}

impl Config {
    /// A configuration with ossup's defaults for `endpoint`, `region` and `credentials`:
    /// OSS V4, 8 MiB parts, 8 MiB threshold, one job, 64 KiB buffer, retry for 24 hours.
    pub fn new(
        endpoint: Endpoint,
        region: &str,
        credentials: Credentials,
        checkpoint_dir: PathBuf,
    ) -> Config {
        Config {
            endpoint,
            region: region.to_string(),
            credentials,
            credentials_provider: None,
            scheme: Scheme::OssV4,
            path_style: false,
            checkpoint_dir,
            multipart_threshold: 8 << 20,
            part_size: 8 << 20,
            allow_small_parts: false,
            jobs: 1,
            buffer_size: 64 << 10,
            timeouts: Timeouts::default(),
            ca_file: None,
            object: ObjectHeaders::default(),
            retry_for: Some(Duration::from_secs(24 * 3600)),
            backoff: Backoff::default(),
            limit_rate: None,
            content_md5: None,
            wait_for_lock: false,
            proxy: crate::proto::proxy::ProxySetting::FromEnv,
        }
    }

    /// Checks that the values can work together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.part_size) {
            return err(format!(
                "part size {} is outside 100 KiB..5 GiB (OSS limits)",
                self.part_size
            ));
        }
        if self.jobs == 0 || self.jobs > 64 {
            return err(format!("jobs must be 1..=64, not {}", self.jobs));
        }
        if !(4096..=(16 << 20)).contains(&self.buffer_size) {
            return err(format!(
                "buffer size {} is outside 4 KiB..16 MiB",
                self.buffer_size
            ));
        }
        let r = &self.region;
        if r.is_empty()
            || !r
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        {
            return err(format!(
                "invalid region {r:?} (expected something like cn-hangzhou)"
            ));
        }
        if self.credentials.access_key_id.is_empty()
            || self.credentials.access_key_secret.is_empty()
        {
            return err("missing credentials: set OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET");
        }
        // A value that cannot be sent as a header fails now, not as a retried "malformed"
        // request for the whole retry budget. The secret is never sent, only used as a key:
        // a control character in it (a pasted newline) is an error, the value is not shown.
        let creds = &self.credentials;
        if let Err(p) = check_header_value(&creds.access_key_id) {
            return err(format!("credentials: the access key id {p}"));
        }
        if creds.access_key_secret.chars().any(|c| c.is_control()) {
            return err("credentials: the access key secret contains a control character");
        }
        if let Some(Err(p)) = creds.security_token.as_deref().map(check_header_value) {
            return err(format!("credentials: the security token {p}"));
        }
        if let Err((field, p)) = self.object.check() {
            return err(format!("object header {field} {p}"));
        }
        if self.timeouts.connect.is_zero() || self.timeouts.idle.is_zero() {
            return err("timeouts must be positive");
        }
        if self.limit_rate == Some(0) {
            return err("the rate limit must be positive");
        }
        Ok(())
    }
}

/// Parses a size like `512KiB`, `8MiB`, `1GiB`, `100KB`, `1048576` (bytes).
pub fn parse_size(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ConfigError(format!("bad size {s:?} (e.g. 8MiB)")))?;
    let mul: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => {
            return err(format!(
                "bad size unit in {s:?} (use KiB, MiB, GiB, KB, MB, GB)"
            ))
        }
    };
    n.checked_mul(mul)
        .ok_or_else(|| ConfigError(format!("size {s:?} is too large")))
}

/// Parses a rate like `200KiB/s` or `1MB/s` into bytes per second.
pub fn parse_rate(s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    parse_size(t)
}

/// Parses a duration like `30s`, `5m`, `24h`, `2d`, `1500ms`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, ConfigError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ConfigError(format!("bad duration {s:?} (e.g. 30s, 24h)")))?;
    let ms = match unit {
        "ms" => Some(n),
        "" | "s" => n.checked_mul(1000),
        "m" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        "d" => n.checked_mul(86_400_000),
        _ => return err(format!("bad duration unit in {s:?} (use ms, s, m, h, d)")),
    };
    ms.map(Duration::from_millis)
        .ok_or_else(|| ConfigError(format!("duration {s:?} is too long")))
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_upload_destination_ending_in_a_slash_is_a_prefix() {
        let d = |u: &str| Destination::parse_for_file(u, "cam.log").map(|d| d.key);
        assert_eq!(d("oss://bkt/dir/").unwrap(), "dir/cam.log");
        assert_eq!(d("oss://bkt/").unwrap(), "cam.log");
        assert_eq!(d("s3://bkt/a/b/").unwrap(), "a/b/cam.log");
        assert_eq!(d("oss://bkt/key").unwrap(), "key");
        assert!(d("oss://bkt").is_err());
        assert!(Destination::parse_for_file("oss://bkt/dir/", "").is_err());
    }

    use super::*;

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("https://oss-cn-hangzhou.aliyuncs.com").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port),
            (true, "oss-cn-hangzhou.aliyuncs.com", 443)
        );
        let e = Endpoint::parse("http://127.0.0.1:9000/").unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.authority.as_str()),
            (false, "127.0.0.1", 9000, "127.0.0.1:9000")
        );
        let e = Endpoint::parse("http://[::1]:8080").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("::1", 8080));
        for bad in [
            "ftp://x",
            "http://",
            "http://u:p@h",
            "http://h/path",
            "http://h:0",
            "http://h:99999",
            "http://[::1",
            "http://h\r\nX-A: 1",
            "http://exa\tmple.com",
            "https://h\u{1}:443",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn destinations() {
        let d = Destination::parse("oss://my-bucket/a/b c+d%.txt").unwrap();
        assert_eq!(
            (d.bucket.as_str(), d.key.as_str()),
            ("my-bucket", "a/b c+d%.txt")
        );
        assert!(Destination::parse("s3://bkt/k").is_ok());
        let long = format!("oss://bkt/{}", "k".repeat(1024));
        for bad in [
            "bkt/k",
            "oss://bkt",
            "oss://bkt/",
            "oss://B_kt/k",
            "oss://-bk/k",
            "oss://ab/k",
            "oss://bkt//k",
            &long,
        ] {
            assert!(Destination::parse(bad).is_err(), "{bad}");
        }
        assert!(Destination::parse(&format!("oss://bkt/{}", "k".repeat(1023))).is_ok());
    }

    #[test]
    fn sizes_rates_durations() {
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("100KB").unwrap(), 100_000);
        assert_eq!(parse_size("42").unwrap(), 42);
        assert!(
            parse_size("8XB").is_err()
                && parse_size("").is_err()
                && parse_size("99999999999GiB").is_err()
        );
        assert_eq!(parse_rate("200KiB/s").unwrap(), 200 * 1024);
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86400));
        assert_eq!(
            parse_duration("1500ms").unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        assert!(parse_duration("1y").is_err());
    }

    #[test]
    fn validation() {
        let creds = Credentials {
            access_key_id: "a".into(),
            access_key_secret: "s".into(),
            security_token: None,
        };
        let mut c = Config::new(
            Endpoint::parse("http://127.0.0.1:1").unwrap(),
            "cn-hangzhou",
            creds,
            "/tmp".into(),
        );
        assert!(c.validate().is_ok());
        c.part_size = 1024;
        assert!(c.validate().is_err());
        c.part_size = 8 << 20;
        c.jobs = 0;
        assert!(c.validate().unwrap_err().0.contains("jobs"));
        c.jobs = 1;
        c.region = "CN Hangzhou".into();
        assert!(c.validate().is_err());
        c.region = "cn-hangzhou".into();
        c.credentials.access_key_secret = "s\n".into();
        let e = c.validate().unwrap_err().0;
        assert!(e.contains("credentials") && !e.contains("s\n"), "{e}");
        c.credentials.access_key_secret = "s".into();
        c.credentials.security_token = Some("t\r\nx".into());
        assert!(c.validate().unwrap_err().0.contains("security token"));
        c.credentials.security_token = None;
        c.object.meta = vec![("a".into(), "b\r\nc".into())];
        assert!(c.validate().unwrap_err().0.contains("meta a"));
        c.object.meta.clear();
        assert!(c.validate().is_ok());
        c.credentials.access_key_secret.clear();
        assert!(c.validate().unwrap_err().0.contains("credentials"));
    }
}

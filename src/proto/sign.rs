//! Request signing: OSS Signature V4 (`OSS4-HMAC-SHA256`) and AWS Signature V4 for S3.
//!
//! Owns: canonical request, string to sign, signing key, Authorization value, presigned query,
//! and server-side verification (used by `ossup serve`). Must not: read a clock (the caller
//! passes the already offset-corrected Unix time), or know about sockets or retries.

use std::fmt;

/// Which signature scheme a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Alibaba Cloud OSS Signature V4.
    OssV4,
    /// AWS Signature V4 (S3, MinIO, Garage, moto, ...).
    S3V4,
}

/// An access key pair and optional STS token. `Debug` never prints the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id (not secret; appears in the Authorization header).
    pub access_key_id: String,
    /// The access key secret. Never logged, never stored in a checkpoint.
    pub access_key_secret: String,
    /// STS security token, sent as `x-oss-security-token` / `x-amz-security-token`.
    pub security_token: Option<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The parts of an HTTP request that take part in a signature.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// Bucket (OSS puts it in the canonical URI even with virtual-hosted addressing).
    pub bucket: Option<&'a str>,
    /// Object key, unencoded; `None` for bucket-level requests.
    pub key: Option<&'a str>,
    /// Unencoded request path as sent (`/bucket/key` path-style, `/key` virtual-hosted);
    /// S3's canonical URI is this path, encoded once.
    pub path: &'a str,
    /// Raw (unencoded) query pairs; an empty value means a bare key.
    pub query: &'a [(String, String)],
    /// Headers the request carries before signing (any case).
    pub headers: &'a [(String, String)],
}

/// Everything besides the request that a signature depends on.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// Signature scheme.
    pub scheme: Scheme,
    /// Region id, e.g. `cn-hangzhou` (not `oss-cn-hangzhou`), or the CloudBox id.
    pub region: &'a str,
    /// Product/service: `oss`, `oss-cloudbox`, or `s3`.
    pub product: &'a str,
    /// Credentials.
    pub credentials: &'a Credentials,
    /// Signing time in Unix seconds, with any clock offset already applied.
    pub unix_time: i64,
    /// OSS `AdditionalHeaders` requested by the caller (normalised by the signer).
    pub additional_headers: &'a [&'a str],
    /// S3 payload hash (hex SHA-256); `None` means `UNSIGNED-PAYLOAD`. Ignored for OSS.
    pub payload_sha256: Option<&'a str>,
}

/// The result of signing in header mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Headers to append to the request, in order (date, content hash, token, Authorization).
    pub headers: Vec<(String, String)>,
    /// The canonical request (kept for debugging and tests).
    pub canonical_request: String,
    /// The string to sign (kept for debugging: servers echo it on SignatureDoesNotMatch).
    pub string_to_sign: String,
    /// Lower-case hex signature.
    pub signature: String,
}

/// Signs `req` in header mode.
pub fn sign_headers(req: &Request<'_>, ctx: &Context<'_>) -> Signed {
    let _ = (req, ctx);
    todo!()
}

/// Why a server rejected a request's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyError {
    /// No or unparseable Authorization header / date header.
    Malformed(&'static str),
    /// The access key id is not the one the server knows.
    UnknownAccessKey,
    /// The request time is more than 15 minutes from the server's time.
    Skewed {
        /// The request's signing time (Unix seconds).
        request_time: i64,
    },
    /// The signature does not match; carries the server-side string to sign.
    Mismatch {
        /// What the server computed as the string to sign.
        string_to_sign: String,
    },
}

/// Server side: checks the Authorization header of a received request (header mode) against
/// `credentials`, and its date against `server_unix` (15 minutes allowed either way). `path`,
/// `query` and `headers` are as received, with path and query already percent-decoded; path
/// style is assumed (`/bucket/key`), which is what loopback servers see.
#[allow(clippy::too_many_arguments)]
pub fn verify(
    scheme: Scheme,
    method: &str,
    bucket: Option<&str>,
    key: Option<&str>,
    path: &str,
    query: &[(String, String)],
    headers: &[(String, String)],
    credentials: &Credentials,
    region: &str,
    server_unix: i64,
) -> Result<(), VerifyError> {
    let _ = (scheme, method, bucket, key, path, query, headers, credentials, region, server_unix);
    todo!()
}

/// Percent-encodes `s` the way both V4 schemes do: RFC 3986 unreserved bytes stay, everything
/// else becomes `%XX` (upper-case hex); `/` stays only when `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/');
        if keep {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

//! OSS/S3 operations to HTTP/1.1 request heads.
//!
//! Owns: which method, path, query and headers each operation uses ([`describe`]), the
//! Complete body, and rendering a signed head into a caller buffer ([`render`]). Must not: read
//! the file body (the shell streams it after the head), sign (that is `sign`), or allocate per
//! body chunk.
//!
//! The flow is `describe` → `Head::sign_request` → `sign::sign_headers` → append the signed
//! headers to `Head::headers` → `render`. What [`describe`] puts in a head:
//!
//! | call | method | query (in this order) | headers after `Host` | body |
//! |---|---|---|---|---|
//! | PutObject | PUT | — | `Content-Length`, `Content-MD5`¹, object headers² | file `0..len` |
//! | Initiate | POST | `uploads` | `Content-Length: 0`, object headers² | empty |
//! | UploadPart | PUT | `partNumber`, `uploadId` | `Content-Length`, `Content-MD5`¹ | file range |
//! | ListParts | GET | `max-parts`, `part-number-marker`³, `uploadId` | — | empty |
//! | Complete | POST | `uploadId` | `Content-Length`, `Content-Type: application/xml`, `Content-MD5` | XML |
//! | Abort | DELETE | `uploadId` | — | empty |
//! | HeadObject | HEAD | — | — | empty |
//! | ListUploads | GET | `uploads`, `prefix`=key, `key-marker`³, `upload-id-marker`³ | — | empty |
//!
//! 1. Only when [`BodyDigests::md5`] is set. [`BodyDigests::sha256`] adds nothing here: for S3
//!    the signer sends `x-amz-content-sha256` from `sign::Context::payload_sha256`.
//! 2. `Content-Type`, `x-oss-meta-*`/`x-amz-meta-*` (names lower-cased), storage class, ACL;
//!    only the fields that are set.
//! 3. Only when non-zero / non-empty: the first page carries no marker, which every server
//!    reads as "from the start" (`part-number-marker=0` would be equivalent on OSS, but not
//!    every S3-compatible server documents 0 as valid).
//!
//! Header names are unique (case-insensitively): the first occurrence wins, so a metadata
//! entry repeated with different case is sent once. The path holds the key unencoded;
//! [`render`] percent-encodes path and query once, exactly as the V4 signers encode them.

use crate::proto::sign::{self, Scheme};

/// Where requests go: one object in one bucket at one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Signature scheme, which also picks `x-oss-*` or `x-amz-*` header names.
    pub scheme: Scheme,
    /// Endpoint authority as written in the URL, without the bucket: `oss-cn-hangzhou.aliyuncs.com`,
    /// `127.0.0.1:9000`. Includes a port only if the URL had one.
    pub endpoint_host: String,
    /// Path-style (`host/bucket/key`) instead of virtual-hosted (`bucket.host/key`).
    pub path_style: bool,
    /// Bucket name.
    pub bucket: String,
    /// Object key (unencoded UTF-8, 1..=1023 bytes).
    pub key: String,
}

impl Target {
    /// True when the endpoint host is an IP address or `localhost`, where virtual-hosted
    /// addressing cannot work and path style is used automatically.
    ///
    /// Accepts the authority with or without a port: `10.0.0.1`, `10.0.0.1:9000`, `[::1]`,
    /// `[::1]:9000`, a bare `::1`, and `localhost` (any case, optional trailing dot).
    pub fn host_needs_path_style(endpoint_host: &str) -> bool {
        let h = endpoint_host.trim();
        if h.starts_with('[') {
            // Only IP literals may be bracketed in a URL authority.
            return true;
        }
        if h.bytes().filter(|&b| b == b':').count() >= 2 {
            // An unbracketed IPv6 literal (not valid in a URL, but unambiguous).
            return true;
        }
        let host = match h.rsplit_once(':') {
            Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
            _ => h,
        };
        let host = host.strip_suffix('.').unwrap_or(host);
        host.eq_ignore_ascii_case("localhost") || is_ipv4(host)
    }

    /// The `Host` header value (`bucket.endpoint` or `endpoint`).
    pub fn host_header(&self) -> String {
        if self.path_style {
            self.endpoint_host.clone()
        } else {
            format!("{}.{}", self.bucket, self.endpoint_host)
        }
    }

    /// The request path of this target's object (`key` is `true`) or bucket: unencoded.
    fn path(&self, key: bool) -> String {
        match (self.path_style, key) {
            (true, true) => format!("/{}/{}", self.bucket, self.key),
            (true, false) => format!("/{}/", self.bucket),
            (false, true) => format!("/{}", self.key),
            (false, false) => "/".to_owned(),
        }
    }
}

/// Dotted-quad IPv4: four decimal fields of 1..=3 digits, each at most 255.
fn is_ipv4(s: &str) -> bool {
    let mut fields = 0;
    for field in s.split('.') {
        fields += 1;
        let ok = (1..=3).contains(&field.len())
            && field.bytes().all(|b| b.is_ascii_digit())
            && field.parse::<u16>().is_ok_and(|v| v <= 255);
        if !ok {
            return false;
        }
    }
    fields == 4
}

/// Object settings sent with PutObject and InitiateMultipartUpload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Content-Type` of the final object.
    pub content_type: Option<String>,
    /// `Content-Encoding` of the final object (`gzip` for `--compress --content-encoding gzip`).
    pub content_encoding: Option<String>,
    /// User metadata, sent as `x-oss-meta-<k>` / `x-amz-meta-<k>`.
    pub meta: Vec<(String, String)>,
    /// Storage class (`x-oss-storage-class` / `x-amz-storage-class`).
    pub storage_class: Option<String>,
    /// Canned ACL (`x-oss-object-acl` / `x-amz-acl`).
    pub acl: Option<String>,
}

/// Why a header value cannot be sent as given (see [`check_header_value`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueProblem {
    /// A control character other than tab inside (CR, LF, NUL, ESC, DEL...): it would split
    /// or corrupt the request, so [`render`] refuses the head.
    Control,
    /// Leading or trailing space or tab: HTTP strips it, so the server would see (and sign)
    /// a different value than the one given.
    EdgeWhitespace,
    /// A metadata key that is not letters, digits, `-` and `_` (it becomes a header name).
    BadName,
}

impl core::fmt::Display for ValueProblem {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ValueProblem::Control => {
                "contains a control character (CR, LF or another byte below 0x20, or DEL)"
            }
            ValueProblem::EdgeWhitespace => {
                "starts or ends with a space or tab (HTTP would strip it)"
            }
            ValueProblem::BadName => "is not a name of letters, digits, '-' and '_'",
        })
    }
}

/// Checks that `value` can be sent unchanged as an HTTP header value: no control character
/// but tab ([`ValueProblem::Control`]) and no space or tab at either end
/// ([`ValueProblem::EdgeWhitespace`]). Empty is fine. Bytes above 0x7F are passed (UTF-8
/// metadata); the caller decides whether the field allows them.
pub fn check_header_value(value: &str) -> Result<(), ValueProblem> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7F) {
        return Err(ValueProblem::Control);
    }
    let edge = |b: Option<&u8>| matches!(b, Some(b' ' | b'\t'));
    if edge(value.as_bytes().first()) || edge(value.as_bytes().last()) {
        return Err(ValueProblem::EdgeWhitespace);
    }
    Ok(())
}

impl ObjectHeaders {
    /// Checks every value with [`check_header_value`]; on the first bad one returns which
    /// field it is (`content-type`, `content-encoding`, `meta <key>`, `storage-class`, `acl`)
    /// and why. Metadata keys must be non-empty letters, digits, `-` and `_`.
    pub fn check(&self) -> Result<(), (String, ValueProblem)> {
        let one = |field: &str, v: &Option<String>| match v {
            Some(v) => check_header_value(v).map_err(|p| (field.to_string(), p)),
            None => Ok(()),
        };
        one("content-type", &self.content_type)?;
        one("content-encoding", &self.content_encoding)?;
        for (k, v) in &self.meta {
            let key_ok = !k.is_empty()
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !key_ok {
                return Err(("meta key".to_string(), ValueProblem::BadName));
            }
            check_header_value(v).map_err(|p| (format!("meta {k}"), p))?;
        }
        one("storage-class", &self.storage_class)?;
        one("acl", &self.acl)
    }
}

/// One operation, as the upload state machine asks for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Whole object in one request; the body is the file's bytes `0..len`.
    PutObject {
        /// Body length.
        len: u64,
    },
    /// `POST ?uploads`.
    Initiate,
    /// `PUT ?partNumber=n&uploadId=id`; the body is the file range of part `n`.
    UploadPart {
        /// Upload id.
        upload_id: String,
        /// Part number, 1-based.
        n: u32,
        /// File offset of the part.
        offset: u64,
        /// Part length.
        len: u64,
    },
    /// `GET ?uploadId=id&max-parts=..&part-number-marker=..`.
    ListParts {
        /// Upload id.
        upload_id: String,
        /// Parts after this number (0 for the first page).
        marker: u32,
        /// Page size, at most 1000.
        max_parts: u32,
    },
    /// `POST ?uploadId=id` with the part list as XML.
    Complete {
        /// Upload id.
        upload_id: String,
        /// `(part number, ETag)` in ascending part order.
        parts: Vec<(u32, String)>,
    },
    /// `DELETE ?uploadId=id`.
    Abort {
        /// Upload id.
        upload_id: String,
    },
    /// `HEAD` the object.
    HeadObject,
    /// `GET /?uploads&prefix=key` on the bucket: unfinished uploads for this key.
    ListUploads {
        /// `key-marker` for paging (empty on the first page).
        key_marker: String,
        /// `upload-id-marker` for paging (empty on the first page).
        upload_id_marker: String,
    },
}

impl Call {
    /// The operation this call performs.
    pub fn op(&self) -> crate::proto::Op {
        use crate::proto::Op;
        match self {
            Call::PutObject { .. } => Op::PutObject,
            Call::Initiate => Op::Initiate,
            Call::UploadPart { .. } => Op::UploadPart,
            Call::ListParts { .. } => Op::ListParts,
            Call::Complete { .. } => Op::Complete,
            Call::Abort { .. } => Op::Abort,
            Call::HeadObject => Op::HeadObject,
            Call::ListUploads { .. } => Op::ListUploads,
        }
    }
}

/// Per-request digests the shell computed from the local bytes before sending.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BodyDigests {
    /// MD5 of the body, sent as `Content-MD5` (base64).
    pub md5: Option<[u8; 16]>,
    /// SHA-256 of the body (S3 signed payload); `None` means `UNSIGNED-PAYLOAD`.
    pub sha256: Option<[u8; 32]>,
}

/// A request's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (`Content-Length: 0` where a body is allowed).
    Empty,
    /// A small body held in memory (the Complete XML).
    Bytes(Vec<u8>),
    /// A range of the local file, streamed by the shell.
    File {
        /// Offset in the file.
        offset: u64,
        /// Length.
        len: u64,
    },
}

/// An unsigned request: what [`describe`] produces and `sign` consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// Upper-case method.
    pub method: &'static str,
    /// Unencoded path including the leading `/` (`/bucket/key` path style, `/key` virtual-hosted).
    pub path: String,
    /// Raw query pairs in rendering order; an empty value renders as a bare key.
    pub query: Vec<(String, String)>,
    /// Headers in rendering order (includes `Host` and `Content-Length`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Head {
    /// The signing view of this head for `target`.
    ///
    /// The key is `None` for bucket-level requests (ListUploads), recognised by the path being
    /// the bucket root (`/` virtual-hosted, `/bucket/` path-style); the bucket is always set.
    pub fn sign_request<'a>(&'a self, target: &'a Target) -> sign::Request<'a> {
        let bucket_level = if target.path_style {
            self.path
                .strip_prefix('/')
                .and_then(|p| p.strip_suffix('/'))
                == Some(target.bucket.as_str())
        } else {
            self.path == "/"
        };
        sign::Request {
            method: self.method,
            bucket: Some(&target.bucket),
            key: if bucket_level {
                None
            } else {
                Some(&target.key)
            },
            path: &self.path,
            query: &self.query,
            headers: &self.headers,
        }
    }
}

/// Adds a header unless one with the same name (any case) is already there.
fn push_header(
    headers: &mut Vec<(String, String)>,
    name: impl Into<String>,
    value: impl Into<String>,
) {
    let name = name.into();
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&name)) {
        headers.push((name, value.into()));
    }
}

fn push_object_headers(
    headers: &mut Vec<(String, String)>,
    scheme: Scheme,
    object: &ObjectHeaders,
) {
    let (meta, storage_class, acl) = match scheme {
        Scheme::OssV4 => ("x-oss-meta-", "x-oss-storage-class", "x-oss-object-acl"),
        Scheme::S3V4 => ("x-amz-meta-", "x-amz-storage-class", "x-amz-acl"),
    };
    if let Some(ct) = &object.content_type {
        push_header(headers, "Content-Type", ct.as_str());
    }
    if let Some(ce) = &object.content_encoding {
        push_header(headers, "Content-Encoding", ce.as_str());
    }
    for (k, v) in &object.meta {
        push_header(
            headers,
            format!("{meta}{}", k.to_ascii_lowercase()),
            v.as_str(),
        );
    }
    if let Some(sc) = &object.storage_class {
        push_header(headers, storage_class, sc.as_str());
    }
    if let Some(a) = &object.acl {
        push_header(headers, acl, a.as_str());
    }
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn pair(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_owned(), v.into())
}

/// Builds the unsigned head of `call` for `target`.
///
/// See the module documentation for what each call produces. `object` is used by PutObject
/// and Initiate only; `digests.md5` by PutObject and UploadPart only.
pub fn describe(
    target: &Target,
    call: &Call,
    object: &ObjectHeaders,
    digests: &BodyDigests,
) -> Head {
    let (method, bucket_level): (&'static str, bool) = match call {
        Call::PutObject { .. } | Call::UploadPart { .. } => ("PUT", false),
        Call::Initiate | Call::Complete { .. } => ("POST", false),
        Call::ListParts { .. } => ("GET", false),
        Call::Abort { .. } => ("DELETE", false),
        Call::HeadObject => ("HEAD", false),
        Call::ListUploads { .. } => ("GET", true),
    };
    let mut query = Vec::new();
    let mut body = Body::Empty;
    match call {
        Call::PutObject { len } => {
            body = Body::File {
                offset: 0,
                len: *len,
            }
        }
        Call::Initiate => query.push(pair("uploads", "")),
        Call::UploadPart {
            upload_id,
            n,
            offset,
            len,
        } => {
            query.push(pair("partNumber", n.to_string()));
            query.push(pair("uploadId", upload_id.as_str()));
            body = Body::File {
                offset: *offset,
                len: *len,
            };
        }
        Call::ListParts {
            upload_id,
            marker,
            max_parts,
        } => {
            query.push(pair("max-parts", max_parts.to_string()));
            if *marker != 0 {
                query.push(pair("part-number-marker", marker.to_string()));
            }
            query.push(pair("uploadId", upload_id.as_str()));
        }
        Call::Complete { upload_id, parts } => {
            query.push(pair("uploadId", upload_id.as_str()));
            body = Body::Bytes(crate::proto::xml::complete_body(parts));
        }
        Call::Abort { upload_id } => query.push(pair("uploadId", upload_id.as_str())),
        Call::HeadObject => {}
        Call::ListUploads {
            key_marker,
            upload_id_marker,
        } => {
            query.push(pair("uploads", ""));
            query.push(pair("prefix", target.key.as_str()));
            if !key_marker.is_empty() {
                query.push(pair("key-marker", key_marker.as_str()));
            }
            if !upload_id_marker.is_empty() {
                query.push(pair("upload-id-marker", upload_id_marker.as_str()));
            }
        }
    }

    let mut headers = vec![pair("Host", target.host_header())];
    if matches!(method, "PUT" | "POST") {
        let len = match &body {
            Body::Empty => 0,
            Body::Bytes(b) => b.len() as u64,
            Body::File { len, .. } => *len,
        };
        push_header(&mut headers, "Content-Length", len.to_string());
    }
    match call {
        Call::PutObject { .. } | Call::UploadPart { .. } => {
            if let Some(md5) = &digests.md5 {
                push_header(&mut headers, "Content-MD5", base64(md5));
            }
        }
        Call::Complete { .. } => {
            push_header(&mut headers, "Content-Type", "application/xml");
            if let Body::Bytes(b) = &body {
                use md5::Digest as _;
                push_header(&mut headers, "Content-MD5", base64(&md5::Md5::digest(b)));
            }
        }
        _ => {}
    }
    if matches!(call, Call::PutObject { .. } | Call::Initiate) {
        push_object_headers(&mut headers, target.scheme, object);
    }

    Head {
        method,
        path: target.path(!bucket_level),
        query,
        headers,
        body,
    }
}

/// Why [`render`] could not write a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RenderError {
    /// The request head did not fit in the caller's buffer.
    Overflow,
    /// A header name is not an HTTP token, a header value contains a control character other
    /// than tab (CR, LF and NUL included), the method is not a token, or the path does not
    /// start with `/`. Nothing of such a head is sent, so request splitting is impossible.
    InvalidHeader,
}

impl core::fmt::Display for RenderError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            RenderError::Overflow => "request head does not fit in the output buffer",
            RenderError::InvalidHeader => "request head contains an invalid method, path or header",
        })
    }
}

impl std::error::Error for RenderError {}

/// Writes `head` (request line, headers, blank line) into `out`; returns the bytes written.
///
/// The request line is `METHOD <path>[?<query>] HTTP/1.1`: the path is percent-encoded with
/// `/` kept (as [`sign::uri_encode`]`(path, true)`), each query key and value percent-encoded
/// with `/` encoded too, a pair with an empty value written as the bare key, pairs in `Head`
/// order. Headers follow in `Head` order as `Name: value`. The whole head is validated before
/// anything is written ([`RenderError::InvalidHeader`]); if it does not fit,
/// [`RenderError::Overflow`] is returned and the contents of `out` are unspecified. Encoding
/// writes straight into `out`: no heap allocation.
pub fn render(head: &Head, out: &mut [u8]) -> Result<usize, RenderError> {
    validate(head)?;
    let mut w = Writer { out, pos: 0 };
    w.put(head.method.as_bytes())?;
    w.put(b" ")?;
    w.put_encoded(&head.path, true)?;
    for (i, (k, v)) in head.query.iter().enumerate() {
        w.put(if i == 0 { b"?" } else { b"&" })?;
        w.put_encoded(k, false)?;
        if !v.is_empty() {
            w.put(b"=")?;
            w.put_encoded(v, false)?;
        }
    }
    w.put(b" HTTP/1.1\r\n")?;
    for (name, value) in &head.headers {
        w.put(name.as_bytes())?;
        w.put(b": ")?;
        w.put(value.as_bytes())?;
        w.put(b"\r\n")?;
    }
    w.put(b"\r\n")?;
    Ok(w.pos)
}

fn validate(head: &Head) -> Result<(), RenderError> {
    let is_tchar = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    let is_token = |s: &str| !s.is_empty() && s.bytes().all(is_tchar);
    let is_value = |s: &str| s.bytes().all(|b| b == b'\t' || !(b < 0x20 || b == 0x7F));
    let ok = is_token(head.method)
        && head.path.starts_with('/')
        && head.headers.iter().all(|(n, v)| is_token(n) && is_value(v));
    if ok {
        Ok(())
    } else {
        Err(RenderError::InvalidHeader)
    }
}

/// A cursor over the caller's buffer.
struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<(), RenderError> {
        let end = self
            .pos
            .checked_add(bytes.len())
            .ok_or(RenderError::Overflow)?;
        let dst = self
            .out
            .get_mut(self.pos..end)
            .ok_or(RenderError::Overflow)?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }

    /// Percent-encodes exactly like [`sign::uri_encode`], writing in place.
    fn put_encoded(&mut self, s: &str, keep_slash: bool) -> Result<(), RenderError> {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        for &b in s.as_bytes() {
            let keep = b.is_ascii_alphanumeric()
                || matches!(b, b'-' | b'_' | b'.' | b'~')
                || (keep_slash && b == b'/');
            if keep {
                self.put(&[b])?;
            } else {
                self.put(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &str = "gw-01/2024/01/02/log file+1.bin";
    const ID: &str = "0004B9895DBBB6EC98E3600A1B2C3D4E";
    /// MD5 of the empty string.
    const EMPTY_MD5: [u8; 16] = [
        0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42,
        0x7e,
    ];

    fn target(scheme: Scheme, path_style: bool) -> Target {
        Target {
            scheme,
            endpoint_host: if path_style {
                "127.0.0.1:9000".into()
            } else {
                "oss-cn-hangzhou.aliyuncs.com".into()
            },
            path_style,
            bucket: "examplebucket".into(),
            key: KEY.into(),
        }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn all_calls() -> Vec<Call> {
        vec![
            Call::PutObject { len: 5 },
            Call::Initiate,
            Call::UploadPart {
                upload_id: ID.into(),
                n: 3,
                offset: 204800,
                len: 102400,
            },
            Call::ListParts {
                upload_id: ID.into(),
                marker: 0,
                max_parts: 1000,
            },
            Call::ListParts {
                upload_id: ID.into(),
                marker: 7,
                max_parts: 1,
            },
            Call::Complete {
                upload_id: ID.into(),
                parts: vec![(1, "\"A\"".into()), (2, "\"B\"".into())],
            },
            Call::Abort {
                upload_id: ID.into(),
            },
            Call::HeadObject,
            Call::ListUploads {
                key_marker: String::new(),
                upload_id_marker: String::new(),
            },
            Call::ListUploads {
                key_marker: "k m".into(),
                upload_id_marker: "u".into(),
            },
        ]
    }

    fn rendered(head: &Head) -> String {
        let mut buf = vec![0u8; 4096];
        let n = render(head, &mut buf).unwrap();
        String::from_utf8(buf[..n].to_vec()).unwrap()
    }

    fn object() -> ObjectHeaders {
        ObjectHeaders {
            content_type: Some("text/plain".into()),
            meta: vec![
                ("Device".into(), "gw-01".into()),
                ("DEVICE".into(), "dup".into()),
                ("site".into(), "north".into()),
            ],
            storage_class: Some("IA".into()),
            acl: Some("private".into()),
            ..Default::default()
        }
    }

    #[test]
    fn path_style_detection() {
        for host in [
            "127.0.0.1",
            "127.0.0.1:9000",
            "10.1.2.3:80",
            "[::1]",
            "[::1]:9000",
            "[fe80::1%25eth0]:9000",
            "::1",
            "localhost",
            "LocalHost:9000",
            "localhost.",
            "0.0.0.0",
        ] {
            assert!(Target::host_needs_path_style(host), "{host}");
        }
        for host in [
            "oss-cn-hangzhou.aliyuncs.com",
            "s3.amazonaws.com:443",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.4x",
            "01234.1.1.1",
            "localhost.example.com",
            "mylocalhost",
            "",
            "1..2.3",
        ] {
            assert!(!Target::host_needs_path_style(host), "{host}");
        }
    }

    #[test]
    fn host_header_by_style() {
        assert_eq!(
            target(Scheme::OssV4, false).host_header(),
            "examplebucket.oss-cn-hangzhou.aliyuncs.com"
        );
        assert_eq!(target(Scheme::S3V4, true).host_header(), "127.0.0.1:9000");
    }

    #[test]
    fn exact_upload_part_oss_virtual() {
        let t = target(Scheme::OssV4, false);
        let call = Call::UploadPart {
            upload_id: ID.into(),
            n: 3,
            offset: 204800,
            len: 102400,
        };
        let head = describe(
            &t,
            &call,
            &object(),
            &BodyDigests {
                md5: Some(EMPTY_MD5),
                sha256: Some([7; 32]),
            },
        );
        assert_eq!(head.method, "PUT");
        assert_eq!(head.path, format!("/{KEY}"));
        assert_eq!(
            head.body,
            Body::File {
                offset: 204800,
                len: 102400
            }
        );
        assert_eq!(
            rendered(&head),
            "PUT /gw-01/2024/01/02/log%20file%2B1.bin?partNumber=3&uploadId=0004B9895DBBB6EC98E3600A1B2C3D4E HTTP/1.1\r\n\
             Host: examplebucket.oss-cn-hangzhou.aliyuncs.com\r\n\
             Content-Length: 102400\r\n\
             Content-MD5: 1B2M2Y8AsgTpgAmY7PhCfg==\r\n\
             \r\n"
        );
    }

    #[test]
    fn content_encoding_goes_with_the_object_headers() {
        let object = ObjectHeaders {
            content_type: Some("text/plain".into()),
            content_encoding: Some("gzip".into()),
            ..Default::default()
        };
        for scheme in [Scheme::OssV4, Scheme::S3V4] {
            let t = target(scheme, false);
            for call in [Call::PutObject { len: 5 }, Call::Initiate] {
                let head = describe(&t, &call, &object, &BodyDigests::default());
                let ce: Vec<_> = head
                    .headers
                    .iter()
                    .filter(|(n, _)| n == "Content-Encoding")
                    .collect();
                assert_eq!(ce.len(), 1, "{scheme:?} {call:?}");
                assert_eq!(ce[0].1, "gzip");
            }
        }
    }

    #[test]
    fn exact_initiate_s3_path_style() {
        let t = target(Scheme::S3V4, true);
        let head = describe(&t, &Call::Initiate, &object(), &BodyDigests::default());
        assert_eq!(
            rendered(&head),
            "POST /examplebucket/gw-01/2024/01/02/log%20file%2B1.bin?uploads HTTP/1.1\r\n\
             Host: 127.0.0.1:9000\r\n\
             Content-Length: 0\r\n\
             Content-Type: text/plain\r\n\
             x-amz-meta-device: gw-01\r\n\
             x-amz-meta-site: north\r\n\
             x-amz-storage-class: IA\r\n\
             x-amz-acl: private\r\n\
             \r\n"
        );
        assert_eq!(head.body, Body::Empty);
    }

    #[test]
    fn exact_put_object_oss() {
        let t = target(Scheme::OssV4, false);
        let head = describe(
            &t,
            &Call::PutObject { len: 5 },
            &object(),
            &BodyDigests {
                md5: Some(EMPTY_MD5),
                sha256: None,
            },
        );
        assert_eq!(
            head.headers,
            h(&[
                ("Host", "examplebucket.oss-cn-hangzhou.aliyuncs.com"),
                ("Content-Length", "5"),
                ("Content-MD5", "1B2M2Y8AsgTpgAmY7PhCfg=="),
                ("Content-Type", "text/plain"),
                ("x-oss-meta-device", "gw-01"),
                ("x-oss-meta-site", "north"),
                ("x-oss-storage-class", "IA"),
                ("x-oss-object-acl", "private"),
            ])
        );
        assert_eq!(head.query, vec![]);
        assert_eq!(head.body, Body::File { offset: 0, len: 5 });
        // Without digests or object settings only the framing headers remain.
        let head = describe(
            &t,
            &Call::PutObject { len: 0 },
            &ObjectHeaders::default(),
            &BodyDigests::default(),
        );
        assert_eq!(
            head.headers,
            h(&[
                ("Host", "examplebucket.oss-cn-hangzhou.aliyuncs.com"),
                ("Content-Length", "0")
            ])
        );
    }

    #[test]
    fn exact_list_uploads_both_styles() {
        let call = Call::ListUploads {
            key_marker: "a b".into(),
            upload_id_marker: "U/1".into(),
        };
        let head = describe(
            &target(Scheme::OssV4, false),
            &call,
            &object(),
            &BodyDigests::default(),
        );
        assert_eq!(
            rendered(&head),
            "GET /?uploads&prefix=gw-01%2F2024%2F01%2F02%2Flog%20file%2B1.bin&key-marker=a%20b&upload-id-marker=U%2F1 HTTP/1.1\r\n\
             Host: examplebucket.oss-cn-hangzhou.aliyuncs.com\r\n\r\n"
        );
        let first = Call::ListUploads {
            key_marker: String::new(),
            upload_id_marker: String::new(),
        };
        let head = describe(
            &target(Scheme::S3V4, true),
            &first,
            &object(),
            &BodyDigests::default(),
        );
        assert_eq!(
            rendered(&head),
            "GET /examplebucket/?uploads&prefix=gw-01%2F2024%2F01%2F02%2Flog%20file%2B1.bin HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n\r\n"
        );
    }

    #[test]
    fn every_call_both_schemes_both_styles() {
        for scheme in [Scheme::OssV4, Scheme::S3V4] {
            for path_style in [false, true] {
                let t = target(scheme, path_style);
                for call in all_calls() {
                    let digests = BodyDigests {
                        md5: Some([1; 16]),
                        sha256: Some([2; 32]),
                    };
                    let head = describe(&t, &call, &object(), &digests);
                    let ctx = format!("{scheme:?} path_style={path_style} {call:?}");
                    let bucket_level = matches!(call, Call::ListUploads { .. });
                    let want_path = match (path_style, bucket_level) {
                        (true, false) => format!("/examplebucket/{KEY}"),
                        (true, true) => "/examplebucket/".to_owned(),
                        (false, false) => format!("/{KEY}"),
                        (false, true) => "/".to_owned(),
                    };
                    assert_eq!(head.path, want_path, "{ctx}");
                    let want_method = match call {
                        Call::PutObject { .. } | Call::UploadPart { .. } => "PUT",
                        Call::Initiate | Call::Complete { .. } => "POST",
                        Call::ListParts { .. } | Call::ListUploads { .. } => "GET",
                        Call::Abort { .. } => "DELETE",
                        Call::HeadObject => "HEAD",
                    };
                    assert_eq!(head.method, want_method, "{ctx}");
                    let want_query: Vec<(String, String)> = match &call {
                        Call::PutObject { .. } | Call::HeadObject => vec![],
                        Call::Initiate => h(&[("uploads", "")]),
                        Call::UploadPart { .. } => h(&[("partNumber", "3"), ("uploadId", ID)]),
                        Call::ListParts { marker: 0, .. } => {
                            h(&[("max-parts", "1000"), ("uploadId", ID)])
                        }
                        Call::ListParts { .. } => h(&[
                            ("max-parts", "1"),
                            ("part-number-marker", "7"),
                            ("uploadId", ID),
                        ]),
                        Call::Complete { .. } | Call::Abort { .. } => h(&[("uploadId", ID)]),
                        Call::ListUploads { key_marker, .. } if key_marker.is_empty() => {
                            h(&[("uploads", ""), ("prefix", KEY)])
                        }
                        Call::ListUploads { .. } => h(&[
                            ("uploads", ""),
                            ("prefix", KEY),
                            ("key-marker", "k m"),
                            ("upload-id-marker", "u"),
                        ]),
                    };
                    assert_eq!(head.query, want_query, "{ctx}");

                    // Host first, always.
                    assert_eq!(
                        head.headers[0],
                        ("Host".to_owned(), t.host_header()),
                        "{ctx}"
                    );
                    // No duplicate header names.
                    let mut names: Vec<String> = head
                        .headers
                        .iter()
                        .map(|(n, _)| n.to_ascii_lowercase())
                        .collect();
                    names.sort();
                    let before = names.len();
                    names.dedup();
                    assert_eq!(names.len(), before, "{ctx}");
                    // Content-Length exactly on PUT/POST, matching the body.
                    let cl = head
                        .headers
                        .iter()
                        .find(|(n, _)| n == "Content-Length")
                        .map(|(_, v)| v.clone());
                    let body_len = match &head.body {
                        Body::Empty => 0,
                        Body::Bytes(b) => b.len() as u64,
                        Body::File { len, .. } => *len,
                    };
                    if matches!(want_method, "PUT" | "POST") {
                        assert_eq!(cl, Some(body_len.to_string()), "{ctx}");
                    } else {
                        assert_eq!(cl, None, "{ctx}");
                        assert_eq!(head.body, Body::Empty, "{ctx}");
                    }
                    // Object headers only on PutObject and Initiate, with the scheme's names.
                    let prefix = if scheme == Scheme::OssV4 {
                        "x-oss-"
                    } else {
                        "x-amz-"
                    };
                    let other = if scheme == Scheme::OssV4 {
                        "x-amz-"
                    } else {
                        "x-oss-"
                    };
                    let has_object = head.headers.iter().any(|(n, _)| n.starts_with(prefix));
                    assert_eq!(
                        has_object,
                        matches!(call, Call::PutObject { .. } | Call::Initiate),
                        "{ctx}"
                    );
                    assert!(
                        !head.headers.iter().any(|(n, _)| n.starts_with(other)),
                        "{ctx}"
                    );
                    // Content-MD5 from the digests only where a file body is sent.
                    let md5 = head
                        .headers
                        .iter()
                        .find(|(n, _)| n == "Content-MD5")
                        .map(|(_, v)| v.as_str());
                    match &call {
                        Call::PutObject { .. } | Call::UploadPart { .. } => {
                            assert_eq!(md5, Some("AQEBAQEBAQEBAQEBAQEBAQ=="), "{ctx}")
                        }
                        Call::Complete { .. } => assert!(md5.is_some(), "{ctx}"),
                        _ => assert_eq!(md5, None, "{ctx}"),
                    }
                    // Nothing derived from sha256 here (the signer adds the payload header).
                    assert!(
                        !head.headers.iter().any(|(n, _)| n.contains("sha256")),
                        "{ctx}"
                    );
                    // And it renders, with the request line as the signer would encode it.
                    let text = rendered(&head);
                    let line = text.lines().next().unwrap().to_owned();
                    let after = line.strip_prefix(&format!(
                        "{want_method} {}",
                        sign::uri_encode(&want_path, true)
                    ));
                    let sep = if head.query.is_empty() { ' ' } else { '?' };
                    assert!(
                        after.is_some_and(|a| a.starts_with(sep) && a.ends_with(" HTTP/1.1")),
                        "{ctx}: {line}"
                    );
                    assert!(text.ends_with("\r\n\r\n"), "{ctx}");
                }
            }
        }
    }

    #[test]
    fn complete_body_and_md5() {
        use base64::Engine as _;
        use md5::Digest as _;
        let parts = vec![(1, "\"A\"".to_owned()), (3, "\"C\"".to_owned())];
        let head = describe(
            &target(Scheme::OssV4, false),
            &Call::Complete {
                upload_id: ID.into(),
                parts: parts.clone(),
            },
            &object(),
            &BodyDigests::default(),
        );
        let Body::Bytes(body) = &head.body else {
            panic!("complete has an in-memory body")
        };
        assert_eq!(body, &crate::proto::xml::complete_body(&parts));
        let md5 = base64::engine::general_purpose::STANDARD.encode(md5::Md5::digest(body));
        assert_eq!(
            head.headers,
            h(&[
                ("Host", "examplebucket.oss-cn-hangzhou.aliyuncs.com"),
                ("Content-Length", &body.len().to_string()),
                ("Content-Type", "application/xml"),
                ("Content-MD5", &md5),
            ])
        );
    }

    #[test]
    fn sign_request_view() {
        for path_style in [false, true] {
            let t = target(Scheme::OssV4, path_style);
            let head = describe(
                &t,
                &Call::Abort {
                    upload_id: ID.into(),
                },
                &object(),
                &BodyDigests::default(),
            );
            let r = head.sign_request(&t);
            assert_eq!(
                (r.method, r.bucket, r.key, r.path),
                (
                    "DELETE",
                    Some("examplebucket"),
                    Some(KEY),
                    head.path.as_str()
                )
            );
            assert_eq!(r.query, head.query.as_slice());
            assert_eq!(r.headers, head.headers.as_slice());
            let call = Call::ListUploads {
                key_marker: String::new(),
                upload_id_marker: String::new(),
            };
            let head = describe(&t, &call, &object(), &BodyDigests::default());
            let r = head.sign_request(&t);
            assert_eq!((r.bucket, r.key), (Some("examplebucket"), None));
        }
        // A key that looks like a bucket root is still a key.
        for (path_style, key) in [(false, "examplebucket/"), (true, "x/")] {
            let mut t = target(Scheme::S3V4, path_style);
            t.key = key.into();
            let head = describe(&t, &Call::HeadObject, &object(), &BodyDigests::default());
            assert_eq!(head.sign_request(&t).key, Some(key));
        }
    }

    #[test]
    fn awkward_keys_are_encoded_once() {
        let cases = [
            ("a b+c%d", "/a%20b%2Bc%25d"),
            (
                "目录/文件 ~(1)&=.txt",
                "/%E7%9B%AE%E5%BD%95/%E6%96%87%E4%BB%B6%20~%281%29%26%3D.txt",
            ),
            ("a//b/../c", "/a//b/../c"),
            ("/lead", "//lead"),
            ("q?x#y", "/q%3Fx%23y"),
        ];
        for (key, want) in cases {
            let mut t = target(Scheme::S3V4, false);
            t.key = key.into();
            let head = describe(
                &t,
                &Call::HeadObject,
                &ObjectHeaders::default(),
                &BodyDigests::default(),
            );
            assert_eq!(
                head.path,
                format!("/{key}"),
                "the head keeps the key unencoded"
            );
            let text = rendered(&head);
            assert_eq!(
                text.lines().next().unwrap(),
                format!("HEAD {want} HTTP/1.1")
            );
        }
    }

    #[test]
    fn overflow_at_every_short_length() {
        let t = target(Scheme::OssV4, true);
        for call in all_calls() {
            let head = describe(
                &t,
                &call,
                &object(),
                &BodyDigests {
                    md5: Some([9; 16]),
                    sha256: None,
                },
            );
            let need = rendered(&head).len();
            let mut buf = vec![0u8; need];
            assert_eq!(render(&head, &mut buf), Ok(need));
            for len in 0..need {
                assert_eq!(
                    render(&head, &mut buf[..len]),
                    Err(RenderError::Overflow),
                    "{call:?} len {len}"
                );
            }
            let mut big = vec![0u8; need + 10];
            assert_eq!(render(&head, &mut big), Ok(need));
        }
    }

    #[test]
    fn header_values_checked_before_sending() {
        assert_eq!(check_header_value(""), Ok(()));
        assert_eq!(check_header_value("text/plain; charset=utf-8"), Ok(()));
        assert_eq!(check_header_value("gate\t3 nörth"), Ok(()));
        for bad in [
            "a\r\nb",
            "a\n",
            "\r",
            "a\0b",
            "a\u{1b}[2J",
            "x\u{7f}",
            "\u{1}",
        ] {
            assert_eq!(
                check_header_value(bad),
                Err(ValueProblem::Control),
                "{bad:?}"
            );
        }
        for bad in [" a", "a ", "\ta", "a\t", " "] {
            assert_eq!(
                check_header_value(bad),
                Err(ValueProblem::EdgeWhitespace),
                "{bad:?}"
            );
        }
        // Whatever passes the check renders (render applies the stricter of the two).
        let mut o = ObjectHeaders {
            content_type: Some("text/plain".into()),
            meta: vec![("site".into(), "north".into())],
            storage_class: Some("IA".into()),
            acl: Some("private".into()),
            content_encoding: None,
        };
        assert_eq!(o.check(), Ok(()));
        o.acl = Some("private\r\nx-oss-meta-a: 1".into());
        assert_eq!(o.check(), Err(("acl".into(), ValueProblem::Control)));
        o.acl = None;
        o.meta.push(("gw".into(), "a\nb".into()));
        assert_eq!(o.check(), Err(("meta gw".into(), ValueProblem::Control)));
        o.meta = vec![("a b".into(), "v".into())];
        assert_eq!(o.check(), Err(("meta key".into(), ValueProblem::BadName)));
        o.meta.clear();
        o.storage_class = Some("IA ".into());
        assert_eq!(
            o.check(),
            Err(("storage-class".into(), ValueProblem::EdgeWhitespace))
        );
        o.storage_class = None;
        o.content_type = Some("text/\u{1}".into());
        assert_eq!(
            o.check(),
            Err(("content-type".into(), ValueProblem::Control))
        );
    }

    #[test]
    fn header_injection_rejected() {
        let t = target(Scheme::OssV4, false);
        let base = describe(
            &t,
            &Call::HeadObject,
            &ObjectHeaders::default(),
            &BodyDigests::default(),
        );
        let bad_headers = [
            ("X-A", "v\r\nX-Injected: 1"),
            ("X-A", "v\nx"),
            ("X-A", "v\rx"),
            ("X-A", "v\0x"),
            ("X-A", "v\x7Fx"),
            ("X-A\r\nX-B", "v"),
            ("X A", "v"),
            ("X-A:", "v"),
            ("", "v"),
            ("X-é", "v"),
        ];
        let mut buf = [0u8; 1024];
        for (n, v) in bad_headers {
            let mut head = base.clone();
            head.headers.push((n.into(), v.into()));
            assert_eq!(
                render(&head, &mut buf),
                Err(RenderError::InvalidHeader),
                "{n:?}: {v:?}"
            );
            // Also with a buffer too small: validation comes first.
            assert_eq!(
                render(&head, &mut buf[..3]),
                Err(RenderError::InvalidHeader)
            );
        }
        let mut head = base.clone();
        head.headers.push(("X-Tab".into(), "a\tb ü".into()));
        assert!(render(&head, &mut buf).is_ok());
        let mut head = base.clone();
        head.method = "GET /x HTTP/1.1\r\n";
        assert_eq!(render(&head, &mut buf), Err(RenderError::InvalidHeader));
        let mut head = base.clone();
        head.path = "relative".into();
        assert_eq!(render(&head, &mut buf), Err(RenderError::InvalidHeader));
        // Metadata from configuration goes through the same check.
        let object = ObjectHeaders {
            meta: vec![("k".into(), "v\r\nx-oss-acl: public".into())],
            ..Default::default()
        };
        let head = describe(&t, &Call::Initiate, &object, &BodyDigests::default());
        assert_eq!(render(&head, &mut buf), Err(RenderError::InvalidHeader));
        // CR/LF in the key or the query cannot split the request: they are percent-encoded.
        let mut t2 = t.clone();
        t2.key = "a\r\nb".into();
        let head = describe(
            &t2,
            &Call::Abort {
                upload_id: "x\r\ny".into(),
            },
            &ObjectHeaders::default(),
            &BodyDigests::default(),
        );
        assert_eq!(
            rendered(&head).lines().next().unwrap(),
            "DELETE /a%0D%0Ab?uploadId=x%0D%0Ay HTTP/1.1"
        );
    }

    proptest! {
        #[test]
        fn render_matches_uri_encode(
            path in "/\\PC{0,40}",
            query in proptest::collection::vec(("\\PC{1,10}", "\\PC{0,10}"), 0..4),
            value in "[ -~]{0,20}",
        ) {
            let head = Head {
                method: "GET",
                path: path.clone(),
                query: query.clone(),
                headers: vec![("Host".into(), "h".into()), ("X-V".into(), value.clone())],
                body: Body::Empty,
            };
            let mut want = format!("GET {}", sign::uri_encode(&path, true));
            for (i, (k, v)) in query.iter().enumerate() {
                want.push(if i == 0 { '?' } else { '&' });
                want.push_str(&sign::uri_encode(k, false));
                if !v.is_empty() {
                    want.push('=');
                    want.push_str(&sign::uri_encode(v, false));
                }
            }
            want.push_str(&format!(" HTTP/1.1\r\nHost: h\r\nX-V: {value}\r\n\r\n"));
            let mut buf = vec![0u8; want.len()];
            prop_assert_eq!(render(&head, &mut buf), Ok(want.len()));
            prop_assert_eq!(&buf[..], want.as_bytes());
            if !want.is_empty() {
                prop_assert_eq!(render(&head, &mut buf[..want.len() - 1]), Err(RenderError::Overflow));
            }
        }

        #[test]
        fn arbitrary_headers_never_panic_or_split(name in "\\PC{0,12}", value in "(\\PC|[\r\n\0]){0,24}") {
            let head = Head { method: "PUT", path: "/k".into(), query: vec![], headers: vec![(name, value)], body: Body::Empty };
            let mut buf = [0u8; 256];
            if let Ok(n) = render(&head, &mut buf) {
                // Exactly one blank line, at the end: nothing was smuggled in.
                let text = &buf[..n];
                prop_assert!(text.ends_with(b"\r\n\r\n"));
                prop_assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 3);
                prop_assert!(!text.contains(&0));
            }
        }
    }
}

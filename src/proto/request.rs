//! OSS/S3 operations to HTTP/1.1 request heads.
//!
//! Owns: which method, path, query and headers each operation uses ([`describe`]), the
//! Complete body, and rendering a signed head into a caller buffer ([`render`]). Must not: read
//! the file body (the shell streams it after the head), sign (that is `sign`), or allocate per
//! body chunk.

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
    pub fn host_needs_path_style(endpoint_host: &str) -> bool {
        let _ = endpoint_host;
        todo!()
    }

    /// The `Host` header value (`bucket.endpoint` or `endpoint`).
    pub fn host_header(&self) -> String {
        todo!()
    }
}

/// Object settings sent with PutObject and InitiateMultipartUpload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectHeaders {
    /// `Content-Type` of the final object.
    pub content_type: Option<String>,
    /// User metadata, sent as `x-oss-meta-<k>` / `x-amz-meta-<k>`.
    pub meta: Vec<(String, String)>,
    /// Storage class (`x-oss-storage-class` / `x-amz-storage-class`).
    pub storage_class: Option<String>,
    /// Canned ACL (`x-oss-object-acl` / `x-amz-acl`).
    pub acl: Option<String>,
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
    pub fn sign_request<'a>(&'a self, target: &'a Target) -> sign::Request<'a> {
        let _ = target;
        todo!()
    }
}

/// Builds the unsigned head of `call` for `target`.
pub fn describe(
    target: &Target,
    call: &Call,
    object: &ObjectHeaders,
    digests: &BodyDigests,
) -> Head {
    let _ = (target, call, object, digests);
    todo!()
}

/// The request head did not fit in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputOverflow;

/// Writes `head` (request line, headers, blank line) into `out`; returns the bytes written.
pub fn render(head: &Head, out: &mut [u8]) -> Result<usize, OutputOverflow> {
    let _ = (head, out);
    todo!()
}

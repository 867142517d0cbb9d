//! Request signing: OSS Signature V4 (`OSS4-HMAC-SHA256`) and AWS Signature V4 for S3.
//!
//! Owns: canonical request, string to sign, signing key, Authorization value, presigned query,
//! and server-side verification (used by `ossup serve`). Must not: read a clock (the caller
//! passes the already offset-corrected Unix time), or know about sockets or retries.
//!
//! Both schemes build the same six-line canonical request
//! (`METHOD \n URI \n QUERY \n HEADER-LINES \n NAMES \n PAYLOAD`) and differ in the details:
//!
//! | | OSS V4 | S3 SigV4 |
//! |---|---|---|
//! | canonical URI | `/bucket/key` (`/bucket/` for bucket-level) whatever the addressing | the request path |
//! | empty query value | bare `key` | `key=` |
//! | signed headers | `x-oss-*`, `content-type`, `content-md5`, plus `AdditionalHeaders` | every header but [`S3_UNSIGNED_HEADERS`] |
//! | header values | trimmed | trimmed, inner whitespace runs collapsed to one space |
//! | NAMES line | the AdditionalHeaders list (often empty) | the SignedHeaders list |
//! | Authorization | `OSS4-HMAC-SHA256 Credential=..[,AdditionalHeaders=..],Signature=..` | `AWS4-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..` |
//!
//! Both Authorization values are emitted with `,` separators and no spaces: the layout of the
//! OSS Go/Python-v2/C/C++/Java SDKs and of the AWS S3 API Reference examples, which the test
//! vectors assert byte for byte. Servers (and [`verify`]) also accept `, ` (botocore, oss2).
//!
//! Percent-encoding is [`uri_encode`]; query pairs are sorted after encoding, by encoded key
//! and then encoded value (byte order). Repeated headers are joined with `,` in request order.

use std::collections::BTreeSet;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::proto::time;

type HmacSha256 = Hmac<Sha256>;

/// The payload hash that stands for "body not signed" (the only value OSS V4 accepts).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

/// How far (seconds) a request's signing time may be from the server's clock, either way.
pub const MAX_SKEW_SECS: i64 = 15 * 60;

/// Headers an S3 SigV4 signer leaves out of the signature: botocore 1.44's
/// `SIGNED_HEADERS_BLACKLIST` (hop-by-hop and tracing headers that proxies may change), plus
/// `authorization` itself. Everything else the request carries is signed.
pub const S3_UNSIGNED_HEADERS: [&str; 15] = [
    "authorization",
    "baggage",
    "connection",
    "expect",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "traceparent",
    "tracestate",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "x-amzn-trace-id",
];

/// Which signature scheme a store speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Alibaba Cloud OSS Signature V4.
    OssV4,
    /// AWS Signature V4 (S3, MinIO, Garage, moto, ...).
    S3V4,
}

impl Scheme {
    /// The algorithm name: `OSS4-HMAC-SHA256` or `AWS4-HMAC-SHA256`.
    pub fn algorithm(self) -> &'static str {
        match self {
            Scheme::OssV4 => "OSS4-HMAC-SHA256",
            Scheme::S3V4 => "AWS4-HMAC-SHA256",
        }
    }

    /// The (lower-case) request timestamp header: `x-oss-date` or `x-amz-date`.
    pub fn date_header(self) -> &'static str {
        match self {
            Scheme::OssV4 => "x-oss-date",
            Scheme::S3V4 => "x-amz-date",
        }
    }

    /// The (lower-case) payload hash header: `x-oss-content-sha256` or `x-amz-content-sha256`.
    pub fn content_sha256_header(self) -> &'static str {
        match self {
            Scheme::OssV4 => "x-oss-content-sha256",
            Scheme::S3V4 => "x-amz-content-sha256",
        }
    }

    /// The (lower-case) STS token header: `x-oss-security-token` or `x-amz-security-token`.
    pub fn security_token_header(self) -> &'static str {
        match self {
            Scheme::OssV4 => "x-oss-security-token",
            Scheme::S3V4 => "x-amz-security-token",
        }
    }

    /// Prefix of the secret in the first HMAC key of the signing-key chain.
    fn key_prefix(self) -> &'static str {
        match self {
            Scheme::OssV4 => "aliyun_v4",
            Scheme::S3V4 => "AWS4",
        }
    }

    /// Last element of the credential scope.
    fn terminator(self) -> &'static str {
        match self {
            Scheme::OssV4 => "aliyun_v4_request",
            Scheme::S3V4 => "aws4_request",
        }
    }

    /// Query parameter names of the presigned (query) mode.
    fn query_names(self) -> QueryNames {
        match self {
            Scheme::OssV4 => QueryNames {
                algorithm: "x-oss-signature-version",
                credential: "x-oss-credential",
                date: "x-oss-date",
                expires: "x-oss-expires",
                names: "x-oss-additional-headers",
                token: "x-oss-security-token",
                signature: "x-oss-signature",
            },
            Scheme::S3V4 => QueryNames {
                algorithm: "X-Amz-Algorithm",
                credential: "X-Amz-Credential",
                date: "X-Amz-Date",
                expires: "X-Amz-Expires",
                names: "X-Amz-SignedHeaders",
                token: "X-Amz-Security-Token",
                signature: "X-Amz-Signature",
            },
        }
    }
}

/// Names of the query parameters a presigned URL carries.
struct QueryNames {
    algorithm: &'static str,
    credential: &'static str,
    date: &'static str,
    expires: &'static str,
    /// OSS `x-oss-additional-headers` (optional) / S3 `X-Amz-SignedHeaders` (required).
    names: &'static str,
    token: &'static str,
    signature: &'static str,
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
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
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

impl Signed {
    /// The `Authorization` value among [`Signed::headers`].
    pub fn authorization(&self) -> Option<&str> {
        header(&self.headers, "authorization")
    }
}

/// Signs `req` in header mode.
///
/// The signer adds, in this order:
/// * the date header (`x-oss-date` / `x-amz-date`) formatted from `ctx.unix_time`; one already
///   in `req.headers` is **superseded** (left out of the signature: the caller must not send it);
/// * the content hash header (`x-oss-content-sha256: UNSIGNED-PAYLOAD`;
///   `x-amz-content-sha256: <ctx.payload_sha256 or UNSIGNED-PAYLOAD>`) only if `req.headers`
///   lacks it; a present one is kept and its value is the canonical payload line;
/// * with an STS token, the token header (an existing one is superseded, like the date);
/// * `Authorization`.
///
/// OSS signs `x-oss-*`, `content-type`, `content-md5` and those of `ctx.additional_headers`
/// that the request carries with a non-empty value (lower-cased, de-duplicated, sorted; names
/// signed anyway are dropped). S3 signs every header except [`S3_UNSIGNED_HEADERS`], so `Host`
/// must be in `req.headers` (nothing is signed that the request does not carry).
pub fn sign_headers(req: &Request<'_>, ctx: &Context<'_>) -> Signed {
    let scheme = ctx.scheme;
    let timestamp = time::iso8601_basic(ctx.unix_time);
    let token = ctx.credentials.security_token.as_deref();

    let mut added: Vec<(String, String)> = Vec::with_capacity(4);
    added.push((scheme.date_header().to_string(), timestamp.clone()));
    let sha_name = scheme.content_sha256_header();
    if header(req.headers, sha_name).is_none() {
        let value = match scheme {
            Scheme::OssV4 => UNSIGNED_PAYLOAD,
            Scheme::S3V4 => ctx.payload_sha256.unwrap_or(UNSIGNED_PAYLOAD),
        };
        added.push((sha_name.to_string(), value.to_string()));
    }
    if let Some(t) = token {
        added.push((scheme.security_token_header().to_string(), t.to_string()));
    }

    // The header set being signed: the request's, minus what the signer supersedes, plus
    // what it adds.
    let superseded = |name: &str| {
        name.eq_ignore_ascii_case(scheme.date_header())
            || (token.is_some() && name.eq_ignore_ascii_case(scheme.security_token_header()))
    };
    let all: Vec<(&str, &str)> = req
        .headers
        .iter()
        .filter(|(n, _)| !superseded(n))
        .chain(added.iter())
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let payload = header_pairs(&all, sha_name)
        .map(trim_ows)
        .unwrap_or(UNSIGNED_PAYLOAD)
        .to_string();

    let query: Vec<(&str, &str)> = req
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let (lines, names) = match scheme {
        Scheme::OssV4 => {
            let additional = oss_additional(ctx.additional_headers, req.headers);
            (oss_signed_lines(&all, &additional), additional)
        }
        Scheme::S3V4 => {
            let lines = s3_signed_lines(&all);
            let names = lines.iter().map(|(n, _)| n.clone()).collect();
            (lines, names)
        }
    };
    let parts = Parts {
        scheme,
        method: req.method,
        uri: canonical_uri(scheme, req.bucket, req.key, req.path),
        query,
        lines,
        names: names.join(";"),
        payload: &payload,
    };
    let date = date_part(&timestamp);
    let scope = scope(scheme, date, ctx.region, ctx.product);
    let canonical_request = parts.canonical_request();
    let string_to_sign = string_to_sign(scheme, &timestamp, &scope, &canonical_request);
    let key = signing_key(
        scheme,
        &ctx.credentials.access_key_secret,
        date,
        ctx.region,
        ctx.product,
    );
    let signature = hmac_hex(&key, &string_to_sign);

    let ak = &ctx.credentials.access_key_id;
    let authorization = match scheme {
        Scheme::OssV4 if names.is_empty() => {
            format!(
                "{} Credential={ak}/{scope},Signature={signature}",
                scheme.algorithm()
            )
        }
        Scheme::OssV4 => format!(
            "{} Credential={ak}/{scope},AdditionalHeaders={},Signature={signature}",
            scheme.algorithm(),
            parts.names
        ),
        Scheme::S3V4 => format!(
            "{} Credential={ak}/{scope},SignedHeaders={},Signature={signature}",
            scheme.algorithm(),
            parts.names
        ),
    };
    let mut headers = added;
    headers.push(("Authorization".to_string(), authorization));
    Signed {
        headers,
        canonical_request,
        string_to_sign,
        signature,
    }
}

/// The result of signing in query (presigned URL) mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// Query pairs (raw, unencoded) to append to the request's own query, signature last.
    pub query: Vec<(String, String)>,
    /// The canonical request.
    pub canonical_request: String,
    /// The string to sign.
    pub string_to_sign: String,
    /// Lower-case hex signature (also the value of the last pair of `query`).
    pub signature: String,
}

/// Signs `req` in query mode (a presigned URL valid for `expires_secs` from `ctx.unix_time`).
///
/// No header is added; the request's headers are signed by the same rules as in header mode.
/// OSS adds `x-oss-signature-version`, `x-oss-credential`, `x-oss-date`, `x-oss-expires`,
/// `x-oss-additional-headers` (if any), `x-oss-security-token` (STS) and `x-oss-signature`.
/// S3 adds `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, `X-Amz-Expires`,
/// `X-Amz-SignedHeaders`, `X-Amz-Security-Token` (STS) and `X-Amz-Signature`. The payload line
/// is the request's content hash header if it has one, else `UNSIGNED-PAYLOAD`
/// (`ctx.payload_sha256` is not used). The caller appends `query` to the request's own pairs,
/// percent-encoding both with [`uri_encode`].
pub fn presign_query(req: &Request<'_>, ctx: &Context<'_>, expires_secs: u64) -> Presigned {
    let scheme = ctx.scheme;
    let qn = scheme.query_names();
    let timestamp = time::iso8601_basic(ctx.unix_time);
    let date = date_part(&timestamp);
    let scope = scope(scheme, date, ctx.region, ctx.product);
    let all: Vec<(&str, &str)> = req
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let (lines, names) = match scheme {
        Scheme::OssV4 => {
            let additional = oss_additional(ctx.additional_headers, req.headers);
            (oss_signed_lines(&all, &additional), additional.join(";"))
        }
        Scheme::S3V4 => {
            let lines = s3_signed_lines(&all);
            let names = lines
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(";");
            (lines, names)
        }
    };

    let mut added: Vec<(String, String)> = vec![
        (qn.algorithm.to_string(), scheme.algorithm().to_string()),
        (
            qn.credential.to_string(),
            format!("{}/{scope}", ctx.credentials.access_key_id),
        ),
        (qn.date.to_string(), timestamp.clone()),
        (qn.expires.to_string(), expires_secs.to_string()),
    ];
    if scheme == Scheme::S3V4 || !names.is_empty() {
        added.push((qn.names.to_string(), names.clone()));
    }
    if let Some(t) = &ctx.credentials.security_token {
        added.push((qn.token.to_string(), t.clone()));
    }

    let payload = header_pairs(&all, scheme.content_sha256_header())
        .map(trim_ows)
        .unwrap_or(UNSIGNED_PAYLOAD);
    let query = req
        .query
        .iter()
        .chain(added.iter())
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let parts = Parts {
        scheme,
        method: req.method,
        uri: canonical_uri(scheme, req.bucket, req.key, req.path),
        query,
        lines,
        names,
        payload,
    };
    let canonical_request = parts.canonical_request();
    let string_to_sign = string_to_sign(scheme, &timestamp, &scope, &canonical_request);
    let key = signing_key(
        scheme,
        &ctx.credentials.access_key_secret,
        date,
        ctx.region,
        ctx.product,
    );
    let signature = hmac_hex(&key, &string_to_sign);
    added.push((qn.signature.to_string(), signature.clone()));
    Presigned {
        query: added,
        canonical_request,
        string_to_sign,
        signature,
    }
}

/// The signing key: four chained HMAC-SHA256 steps over `date` (`YYYYMMDD`), `region`,
/// `product` and the scheme's terminator, starting from `"aliyun_v4" + secret` (OSS) or
/// `"AWS4" + secret` (S3).
pub fn signing_key(
    scheme: Scheme,
    secret: &str,
    date: &str,
    region: &str,
    product: &str,
) -> [u8; 32] {
    let mut first = Vec::with_capacity(scheme.key_prefix().len() + secret.len());
    first.extend_from_slice(scheme.key_prefix().as_bytes());
    first.extend_from_slice(secret.as_bytes());
    let k_date = hmac(&first, date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_product = hmac(&k_region, product.as_bytes());
    hmac(&k_product, scheme.terminator().as_bytes())
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
///
/// * The Authorization may use `,` or `, ` separators, in any field order (so oss2's
///   `Credential=.., Signature=.., AdditionalHeaders=..` is accepted).
/// * OSS signs `x-oss-*`, `content-type`, `content-md5` and the listed AdditionalHeaders
///   (the list is sorted before use, because oss2 sorts it by first letter only); S3 signs
///   exactly the SignedHeaders list, in the order given.
/// * S3 without `x-amz-date` falls back to `Date` (botocore does this when `Date` is set).
/// * The credential scope's date must be the date of the timestamp; its region must be
///   `region` unless `region` is empty (then any region is accepted); its product is taken
///   from the scope.
/// * When `credentials` carry an STS token, the request must carry the same token, else
///   [`VerifyError::UnknownAccessKey`].
/// * Without an Authorization header, a presigned query (`x-oss-signature` /
///   `X-Amz-Signature`) is checked instead: a date more than 15 minutes ahead is
///   [`VerifyError::Skewed`], an expired URL is [`VerifyError::Malformed`].
/// * The payload line is the content hash header's value (or `UNSIGNED-PAYLOAD`): the caller
///   must itself check the body against an S3 hex hash.
///
/// Signatures are compared in constant time.
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
    let all: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let qn = scheme.query_names();
    let claim = match header_pairs(&all, "authorization") {
        Some(auth) => parse_authorization(scheme, auth)?,
        None => parse_presigned(scheme, query)?,
    };
    let (ak, scope_date, scope_region, product) = parse_credential(scheme, claim.credential)?;

    if ak != credentials.access_key_id {
        return Err(VerifyError::UnknownAccessKey);
    }
    if let Some(expected) = &credentials.security_token {
        let sent = match claim.expires {
            None => header_pairs(&all, scheme.security_token_header()).map(trim_ows),
            Some(_) => query_value(query, qn.token),
        };
        if sent != Some(expected.as_str()) {
            return Err(VerifyError::UnknownAccessKey);
        }
    }

    // The timestamp that goes into the string to sign.
    let timestamp = match claim.expires {
        Some(_) => query_value(query, qn.date).map(str::to_string),
        None => match header_pairs(&all, scheme.date_header()) {
            Some(v) => Some(trim_ows(v).to_string()),
            None if scheme == Scheme::S3V4 => header_pairs(&all, "date")
                .and_then(time::parse_rfc1123)
                .map(time::iso8601_basic),
            None => None,
        },
    }
    .ok_or(VerifyError::Malformed("missing request date"))?;
    let request_time = time::parse_iso8601_basic(&timestamp)
        .ok_or(VerifyError::Malformed("malformed request date"))?;
    let ahead = i128::from(request_time) - i128::from(server_unix);
    match claim.expires {
        None if ahead.abs() > i128::from(MAX_SKEW_SECS) => {
            return Err(VerifyError::Skewed { request_time })
        }
        Some(_) if ahead > i128::from(MAX_SKEW_SECS) => {
            return Err(VerifyError::Skewed { request_time })
        }
        Some(expires)
            if i128::from(server_unix) > i128::from(request_time) + i128::from(expires) =>
        {
            return Err(VerifyError::Malformed("presigned request has expired"));
        }
        _ => {}
    }
    if scope_date != date_part(&timestamp) {
        return Err(VerifyError::Malformed(
            "credential scope date is not the request date",
        ));
    }
    if !region.is_empty() && scope_region != region {
        return Err(VerifyError::Malformed(
            "credential scope names another region",
        ));
    }

    let names: Vec<String> = match claim.names {
        None => Vec::new(),
        Some(list) => parse_names(list)?,
    };
    let (lines, names) = match scheme {
        Scheme::OssV4 => {
            let sorted: Vec<String> = names
                .into_iter()
                .collect::<BTreeSet<_>>()
                .into_iter()
                .collect();
            (oss_signed_lines(&all, &sorted), sorted)
        }
        Scheme::S3V4 => {
            let lines = names
                .iter()
                .map(|n| (n.clone(), s3_value(&all, n)))
                .collect();
            (lines, names)
        }
    };
    let payload = header_pairs(&all, scheme.content_sha256_header())
        .map(trim_ows)
        .unwrap_or(UNSIGNED_PAYLOAD);
    let query_pairs = query
        .iter()
        .filter(|(k, _)| claim.expires.is_none() || k != qn.signature)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let parts = Parts {
        scheme,
        method,
        uri: canonical_uri(scheme, bucket, key, path),
        query: query_pairs,
        lines,
        names: names.join(";"),
        payload,
    };
    let scope = scope(scheme, scope_date, scope_region, product);
    let canonical_request = parts.canonical_request();
    let string_to_sign = string_to_sign(scheme, &timestamp, &scope, &canonical_request);
    let key = signing_key(
        scheme,
        &credentials.access_key_secret,
        scope_date,
        scope_region,
        product,
    );
    let expected = hmac_hex(&key, &string_to_sign);
    if constant_time_eq(expected.as_bytes(), claim.signature.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch { string_to_sign })
    }
}

/// Percent-encodes `s` the way both V4 schemes do: RFC 3986 unreserved bytes stay, everything
/// else becomes `%XX` (upper-case hex); `/` stays only when `keep_slash`.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() + s.len() / 2);
    for &b in s.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (keep_slash && b == b'/');
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

// ---------------------------------------------------------------------------------------------
// Canonical request

/// The inputs of a canonical request, already selected for the scheme.
struct Parts<'a> {
    scheme: Scheme,
    method: &'a str,
    /// Already encoded.
    uri: String,
    /// Raw pairs, encoded and sorted when rendered.
    query: Vec<(&'a str, &'a str)>,
    /// Signed headers as `(lower-case name, canonical value)`, in output order.
    lines: Vec<(String, String)>,
    /// OSS AdditionalHeaders / S3 SignedHeaders line.
    names: String,
    payload: &'a str,
}

impl Parts<'_> {
    fn canonical_request(&self) -> String {
        let query = canonical_query(self.scheme, &self.query);
        let mut out = String::with_capacity(
            self.method.len()
                + self.uri.len()
                + query.len()
                + self.names.len()
                + self.payload.len()
                + 256,
        );
        out.push_str(self.method);
        out.push('\n');
        out.push_str(&self.uri);
        out.push('\n');
        out.push_str(&query);
        out.push('\n');
        for (name, value) in &self.lines {
            out.push_str(name);
            out.push(':');
            out.push_str(value);
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.names);
        out.push('\n');
        out.push_str(self.payload);
        out
    }
}

/// OSS: `/bucket/key`, `/bucket/` or `/`; S3: the path (empty means `/`). Encoded, `/` kept.
fn canonical_uri(scheme: Scheme, bucket: Option<&str>, key: Option<&str>, path: &str) -> String {
    match scheme {
        Scheme::OssV4 => match bucket {
            Some(b) => uri_encode(&format!("/{b}/{}", key.unwrap_or("")), true),
            None => "/".to_string(),
        },
        Scheme::S3V4 if path.is_empty() => "/".to_string(),
        Scheme::S3V4 => uri_encode(path, true),
    }
}

/// Encodes, sorts (by encoded key, then encoded value) and joins the query pairs.
fn canonical_query(scheme: Scheme, pairs: &[(&str, &str)]) -> String {
    let mut encoded: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    encoded.sort();
    let mut out = String::new();
    for (i, (k, v)) in encoded.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        out.push_str(k);
        if !v.is_empty() || scheme == Scheme::S3V4 {
            out.push('=');
            out.push_str(v);
        }
    }
    out
}

/// True for headers OSS always signs.
fn oss_default_signed(lower: &str) -> bool {
    lower.starts_with("x-oss-") || lower == "content-type" || lower == "content-md5"
}

/// Normalises the caller's AdditionalHeaders: lower-case, drop names OSS signs anyway, drop
/// names the request does not carry with a non-empty value or that could not appear in the
/// list (empty, or with separators), de-duplicate, sort.
fn oss_additional(requested: &[&str], headers: &[(String, String)]) -> Vec<String> {
    let mut set = BTreeSet::new();
    for name in requested {
        let lower = name.trim().to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(is_tchar) || oss_default_signed(&lower) {
            continue;
        }
        if headers
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case(&lower) && !trim_ows(v).is_empty())
        {
            set.insert(lower);
        }
    }
    set.into_iter().collect()
}

/// RFC 9110 token characters (header names).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// OSS header lines: default-signed headers plus `additional` (lower-case names), values
/// trimmed, sorted by name, repeats joined with `,`.
fn oss_signed_lines(all: &[(&str, &str)], additional: &[String]) -> Vec<(String, String)> {
    let picked = all.iter().filter_map(|(n, v)| {
        let lower = n.to_ascii_lowercase();
        (oss_default_signed(&lower) || additional.contains(&lower))
            .then(|| (lower, trim_ows(v).to_string()))
    });
    merge_sorted(picked.collect())
}

/// S3 header lines: every header but [`S3_UNSIGNED_HEADERS`], values trimmed and collapsed,
/// sorted by name, repeats joined with `,`.
fn s3_signed_lines(all: &[(&str, &str)]) -> Vec<(String, String)> {
    let picked = all.iter().filter_map(|(n, v)| {
        let lower = n.to_ascii_lowercase();
        (!S3_UNSIGNED_HEADERS.contains(&lower.as_str())).then(|| (lower, trim_all(v)))
    });
    merge_sorted(picked.collect())
}

/// The canonical S3 value of header `name` (all occurrences joined with `,`).
fn s3_value(all: &[(&str, &str)], name: &str) -> String {
    let values: Vec<String> = all
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| trim_all(v))
        .collect();
    values.join(",")
}

/// Stable sort by name, then joins repeated names' values with `,`.
fn merge_sorted(mut lines: Vec<(String, String)>) -> Vec<(String, String)> {
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out: Vec<(String, String)> = Vec::with_capacity(lines.len());
    for (name, value) in lines {
        match out.last_mut() {
            Some(last) if last.0 == name => {
                last.1.push(',');
                last.1.push_str(&value);
            }
            _ => out.push((name, value)),
        }
    }
    out
}

/// Trims HTTP optional whitespace (space, tab).
fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

/// SigV4 "Trimall": drop leading/trailing whitespace, collapse inner runs to one space.
fn trim_all(s: &str) -> String {
    let ws = |c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c');
    let mut out = String::with_capacity(s.len());
    for word in s.split(ws).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// First value of header `name` (case-insensitive) in owned pairs.
fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// First value of header `name` (case-insensitive) in borrowed pairs.
fn header_pairs<'h>(headers: &[(&'h str, &'h str)], name: &str) -> Option<&'h str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

/// First value of query parameter `name` (exact match).
fn query_value<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `YYYYMMDD` of an ISO-8601 basic timestamp (everything before the `T`).
fn date_part(timestamp: &str) -> &str {
    timestamp.split('T').next().unwrap_or(timestamp)
}

fn scope(scheme: Scheme, date: &str, region: &str, product: &str) -> String {
    format!("{date}/{region}/{product}/{}", scheme.terminator())
}

fn string_to_sign(scheme: Scheme, timestamp: &str, scope: &str, canonical_request: &str) -> String {
    let digest = Sha256::digest(canonical_request.as_bytes());
    format!(
        "{}\n{timestamp}\n{scope}\n{}",
        scheme.algorithm(),
        hex(&digest)
    )
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this never takes the `else` branch.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

fn hmac_hex(key: &[u8], msg: &str) -> String {
    hex(&hmac(key, msg.as_bytes()))
}

/// Lower-case hex of `bytes` (signatures, payload hashes, MD5 ETags, journal names).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

// ---------------------------------------------------------------------------------------------
// Parsing what a client sent

/// What a request claims: from the Authorization header or from a presigned query.
struct Claim<'a> {
    credential: &'a str,
    /// OSS AdditionalHeaders / S3 SignedHeaders, unparsed.
    names: Option<&'a str>,
    signature: &'a str,
    /// `Some(expires)` for a presigned query.
    expires: Option<u64>,
}

fn parse_authorization(scheme: Scheme, value: &str) -> Result<Claim<'_>, VerifyError> {
    let malformed = VerifyError::Malformed;
    let rest = trim_ows(value)
        .strip_prefix(scheme.algorithm())
        .ok_or(malformed(
            "Authorization does not use the expected algorithm",
        ))?;
    if !rest.starts_with([' ', '\t']) {
        return Err(malformed(
            "Authorization does not use the expected algorithm",
        ));
    }
    let names_field = match scheme {
        Scheme::OssV4 => "AdditionalHeaders",
        Scheme::S3V4 => "SignedHeaders",
    };
    let (mut credential, mut names, mut signature) = (None, None, None);
    for field in rest.split(',') {
        let (name, value) = trim_ows(field)
            .split_once('=')
            .ok_or(malformed("Authorization field without '='"))?;
        let slot = match name {
            "Credential" => &mut credential,
            "Signature" => &mut signature,
            n if n == names_field => &mut names,
            _ => return Err(malformed("unknown Authorization field")),
        };
        if slot.replace(value).is_some() {
            return Err(malformed("repeated Authorization field"));
        }
    }
    if scheme == Scheme::S3V4 && names.is_none() {
        return Err(malformed("Authorization lacks SignedHeaders"));
    }
    Ok(Claim {
        credential: credential.ok_or(malformed("Authorization lacks Credential"))?,
        names,
        signature: signature.ok_or(malformed("Authorization lacks Signature"))?,
        expires: None,
    })
}

fn parse_presigned(scheme: Scheme, query: &[(String, String)]) -> Result<Claim<'_>, VerifyError> {
    let malformed = VerifyError::Malformed;
    let qn = scheme.query_names();
    let signature =
        query_value(query, qn.signature).ok_or(malformed("missing Authorization header"))?;
    if query_value(query, qn.algorithm) != Some(scheme.algorithm()) {
        return Err(malformed(
            "presigned query does not use the expected algorithm",
        ));
    }
    let expires =
        query_value(query, qn.expires).ok_or(malformed("presigned query lacks its expiry"))?;
    if expires.is_empty() || expires.len() > 12 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed("malformed presigned expiry"));
    }
    let names = query_value(query, qn.names);
    if scheme == Scheme::S3V4 && names.is_none() {
        return Err(malformed("presigned query lacks X-Amz-SignedHeaders"));
    }
    Ok(Claim {
        credential: query_value(query, qn.credential)
            .ok_or(malformed("presigned query lacks its credential"))?,
        names,
        signature,
        expires: expires.parse().ok(),
    })
}

/// Splits `AK/date/region/product/terminator`.
fn parse_credential(
    scheme: Scheme,
    credential: &str,
) -> Result<(&str, &str, &str, &str), VerifyError> {
    let malformed = VerifyError::Malformed("malformed Credential");
    let mut it = credential.rsplitn(5, '/');
    let (Some(terminator), Some(product), Some(region), Some(date), Some(ak)) =
        (it.next(), it.next(), it.next(), it.next(), it.next())
    else {
        return Err(malformed);
    };
    if terminator != scheme.terminator()
        || [product, region, ak].iter().any(|s| s.is_empty())
        || date.len() != 8
        || !date.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(malformed);
    }
    Ok((ak, date, region, product))
}

/// Splits a `;`-separated header-name list; empty elements are malformed.
fn parse_names(list: &str) -> Result<Vec<String>, VerifyError> {
    list.split(';')
        .map(|n| {
            if n.is_empty() || !n.bytes().all(is_tchar) {
                Err(VerifyError::Malformed("malformed signed header list"))
            } else {
                Ok(n.to_ascii_lowercase())
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: i64 = 1_704_164_645; // 2024-01-02T03:04:05Z

    fn creds(token: Option<&str>) -> Credentials {
        Credentials {
            access_key_id: "LTAI5tExampleAccessKeyId".into(),
            access_key_secret: "ExampleAccessKeySecret0123456789".into(),
            security_token: token.map(String::from),
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A request as a loopback server would receive it: path style, decoded.
    #[derive(Clone, Debug)]
    struct Wire {
        method: String,
        bucket: String,
        key: String,
        query: Vec<(String, String)>,
        headers: Vec<(String, String)>,
    }

    impl Wire {
        fn new(method: &str, key: &str, query: &[(&str, &str)], headers: &[(&str, &str)]) -> Wire {
            Wire {
                method: method.into(),
                bucket: "examplebucket".into(),
                key: key.into(),
                query: pairs(query),
                headers: pairs(headers),
            }
        }

        fn path(&self) -> String {
            format!("/{}/{}", self.bucket, self.key)
        }

        fn key(&self) -> Option<&str> {
            (!self.key.is_empty()).then_some(self.key.as_str())
        }

        fn ctx<'a>(
            &self,
            scheme: Scheme,
            c: &'a Credentials,
            extra: &'a [&'a str],
            t: i64,
        ) -> Context<'a> {
            Context {
                scheme,
                region: "cn-hangzhou",
                product: if scheme == Scheme::OssV4 { "oss" } else { "s3" },
                credentials: c,
                unix_time: t,
                additional_headers: extra,
                payload_sha256: None,
            }
        }

        /// Signs in header mode and returns the request with the signer's headers added.
        fn signed(
            &self,
            scheme: Scheme,
            c: &Credentials,
            extra: &[&str],
            t: i64,
        ) -> (Wire, Signed) {
            let path = self.path();
            let req = Request {
                method: &self.method,
                bucket: Some(&self.bucket),
                key: self.key(),
                path: &path,
                query: &self.query,
                headers: &self.headers,
            };
            let signed = sign_headers(&req, &self.ctx(scheme, c, extra, t));
            let mut out = self.clone();
            out.headers.extend(signed.headers.iter().cloned());
            (out, signed)
        }

        /// Signs in query mode and returns the request with the signer's query pairs added.
        fn presigned(
            &self,
            scheme: Scheme,
            c: &Credentials,
            extra: &[&str],
            t: i64,
            expires: u64,
        ) -> Wire {
            let path = self.path();
            let req = Request {
                method: &self.method,
                bucket: Some(&self.bucket),
                key: self.key(),
                path: &path,
                query: &self.query,
                headers: &self.headers,
            };
            let p = presign_query(&req, &self.ctx(scheme, c, extra, t), expires);
            let mut out = self.clone();
            out.query.extend(p.query);
            out
        }

        fn verify(
            &self,
            scheme: Scheme,
            c: &Credentials,
            region: &str,
            now: i64,
        ) -> Result<(), VerifyError> {
            verify(
                scheme,
                &self.method,
                Some(&self.bucket),
                self.key(),
                &self.path(),
                &self.query,
                &self.headers,
                c,
                region,
                now,
            )
        }
    }

    fn sample() -> Wire {
        Wire::new(
            "PUT",
            "dir/\u{6587}\u{4ef6} a+b%20~!.bin",
            &[
                ("partNumber", "3"),
                ("uploadId", "0004B98/+="),
                ("empty", ""),
            ],
            &[
                ("Host", "examplebucket.oss-cn-hangzhou.aliyuncs.com"),
                ("Content-Type", "application/octet-stream"),
                ("Content-MD5", "nhB9nTcrtoJr2B01QqQZ1g=="),
                ("Content-Length", "102400"),
                ("X-Oss-Meta-Device", "gw 01"),
                ("User-Agent", "ossup/0.1"),
            ],
        )
    }

    const BOTH: [Scheme; 2] = [Scheme::OssV4, Scheme::S3V4];

    #[test]
    fn uri_encode_rules() {
        assert_eq!(
            uri_encode("a b+c*$!~-_./d", true),
            "a%20b%2Bc%2A%24%21~-_./d"
        );
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
        assert_eq!(uri_encode("\u{76ee}", true), "%E7%9B%AE");
    }

    #[test]
    fn canonical_query_empty_values_and_sorting() {
        let q = [("uploads", ""), ("+p", "v/1"), ("a", "")];
        assert_eq!(canonical_query(Scheme::OssV4, &q), "%2Bp=v%2F1&a&uploads");
        assert_eq!(canonical_query(Scheme::S3V4, &q), "%2Bp=v%2F1&a=&uploads=");
        assert_eq!(canonical_query(Scheme::S3V4, &[]), "");
        // Repeated keys sort by value.
        assert_eq!(
            canonical_query(Scheme::OssV4, &[("k", "b"), ("k", "a")]),
            "k=a&k=b"
        );
    }

    #[test]
    fn canonical_uri_forms() {
        assert_eq!(
            canonical_uri(Scheme::OssV4, Some("b"), Some("k 1"), "/ignored"),
            "/b/k%201"
        );
        assert_eq!(canonical_uri(Scheme::OssV4, Some("b"), None, "/"), "/b/");
        assert_eq!(canonical_uri(Scheme::OssV4, None, None, "/"), "/");
        assert_eq!(
            canonical_uri(Scheme::S3V4, Some("b"), Some("k"), "/k//x y"),
            "/k//x%20y"
        );
        assert_eq!(canonical_uri(Scheme::S3V4, None, None, ""), "/");
    }

    #[test]
    fn header_value_canonicalisation() {
        assert_eq!(trim_all("  a \t  b  c\t"), "a b c");
        assert_eq!(trim_all(""), "");
        assert_eq!(trim_ows(" \t a  b \t"), "a  b");
        let merged = merge_sorted(pairs(&[("b", "2"), ("a", "1"), ("b", "3")]));
        assert_eq!(merged, pairs(&[("a", "1"), ("b", "2,3")]));
    }

    #[test]
    fn signer_adds_headers_in_order() {
        let c = creds(Some("tok"));
        for scheme in BOTH {
            let (_, s) = sample().signed(scheme, &c, &[], T);
            let names: Vec<&str> = s.headers.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    scheme.date_header(),
                    scheme.content_sha256_header(),
                    scheme.security_token_header(),
                    "Authorization"
                ]
            );
            assert_eq!(s.headers[0].1, "20240102T030405Z");
            assert_eq!(s.headers[1].1, UNSIGNED_PAYLOAD);
            assert_eq!(s.headers[2].1, "tok");
            assert!(s
                .authorization()
                .is_some_and(|a| a.ends_with(&format!(",Signature={}", s.signature))));
            assert!(s.canonical_request.ends_with("\nUNSIGNED-PAYLOAD"));
        }
    }

    #[test]
    fn oss_signed_set_and_additional_headers() {
        let c = creds(None);
        let extra = [
            "Host",
            "user-agent",
            "X-Oss-Meta-Device",
            "content-type",
            "absent",
            "bad;name",
        ];
        let (_, s) = sample().signed(Scheme::OssV4, &c, &extra, T);
        let lines: Vec<&str> = s.canonical_request.split('\n').collect();
        assert_eq!(
            lines[1],
            "/examplebucket/dir/%E6%96%87%E4%BB%B6%20a%2Bb%2520~%21.bin"
        );
        assert_eq!(lines[2], "empty&partNumber=3&uploadId=0004B98%2F%2B%3D");
        assert_eq!(
            &lines[3..12],
            [
                "content-md5:nhB9nTcrtoJr2B01QqQZ1g==",
                "content-type:application/octet-stream",
                "host:examplebucket.oss-cn-hangzhou.aliyuncs.com",
                "user-agent:ossup/0.1",
                "x-oss-content-sha256:UNSIGNED-PAYLOAD",
                "x-oss-date:20240102T030405Z",
                "x-oss-meta-device:gw 01",
                "",
                "host;user-agent",
            ]
        );
        assert!(s
            .authorization()
            .is_some_and(|a| a.contains(",AdditionalHeaders=host;user-agent,Signature=")));
    }

    #[test]
    fn s3_signed_set() {
        let c = creds(Some("tok"));
        let mut w = sample();
        w.headers.push(("Expect".into(), "100-continue".into()));
        w.headers
            .push(("X-Amz-Meta-Spaces".into(), "  a   b \t c ".into()));
        let (_, s) = w.signed(Scheme::S3V4, &c, &[], T);
        let lines: Vec<&str> = s.canonical_request.split('\n').collect();
        assert_eq!(
            lines[1],
            "/examplebucket/dir/%E6%96%87%E4%BB%B6%20a%2Bb%2520~%21.bin"
        );
        assert_eq!(lines[2], "empty=&partNumber=3&uploadId=0004B98%2F%2B%3D");
        assert!(s.canonical_request.contains("\nx-amz-meta-spaces:a b c\n"));
        let names = "content-length;content-md5;content-type;host;x-amz-content-sha256;x-amz-date;\
                     x-amz-meta-spaces;x-amz-security-token;x-oss-meta-device";
        assert_eq!(lines[lines.len() - 2], names);
        assert!(s
            .authorization()
            .is_some_and(|a| a.contains(&format!(",SignedHeaders={names},Signature="))));
    }

    #[test]
    fn existing_date_is_superseded_and_content_hash_kept() {
        let c = creds(None);
        let mut w = sample();
        w.headers
            .push(("X-Amz-Date".into(), "19990101T000000Z".into()));
        w.headers
            .push(("x-amz-content-sha256".into(), "abc123".into()));
        let (_, s) = w.signed(Scheme::S3V4, &c, &[], T);
        assert!(s
            .canonical_request
            .contains("\nx-amz-date:20240102T030405Z\n"));
        assert!(!s.canonical_request.contains("1999"));
        assert!(s.canonical_request.ends_with("\nabc123"));
        assert!(!s.headers.iter().any(|(n, _)| n == "x-amz-content-sha256"));
    }

    #[test]
    fn s3_payload_hash_from_context() {
        let c = creds(None);
        let w = sample();
        let path = w.path();
        let req = Request {
            method: "PUT",
            bucket: None,
            key: None,
            path: &path,
            query: &w.query,
            headers: &w.headers,
        };
        let mut ctx = w.ctx(Scheme::S3V4, &c, &[], T);
        let hash = "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072";
        ctx.payload_sha256 = Some(hash);
        let s = sign_headers(&req, &ctx);
        assert!(s.canonical_request.ends_with(&format!("\n{hash}")));
        assert!(s
            .headers
            .contains(&("x-amz-content-sha256".to_string(), hash.to_string())));
        // OSS ignores it.
        ctx.scheme = Scheme::OssV4;
        assert!(sign_headers(&req, &ctx)
            .canonical_request
            .ends_with("\nUNSIGNED-PAYLOAD"));
    }

    #[test]
    fn round_trip_both_schemes_with_and_without_token() {
        for scheme in BOTH {
            for token in [None, Some("CAIS.sts/token+with=chars")] {
                let c = creds(token);
                let (w, _) = sample().signed(scheme, &c, &["host"], T);
                assert_eq!(
                    w.verify(scheme, &c, "cn-hangzhou", T + 5),
                    Ok(()),
                    "{scheme:?} {token:?}"
                );
                // An empty server region accepts the client's.
                assert_eq!(w.verify(scheme, &c, "", T), Ok(()));
            }
        }
    }

    #[test]
    fn round_trip_bucket_level() {
        let c = creds(None);
        let w = Wire::new(
            "GET",
            "",
            &[("uploads", ""), ("prefix", "gw-01/")],
            &[("Host", "h")],
        );
        for scheme in BOTH {
            let (signed, s) = w.signed(scheme, &c, &[], T);
            assert_eq!(signed.verify(scheme, &c, "cn-hangzhou", T), Ok(()));
            if scheme == Scheme::OssV4 {
                assert!(s.canonical_request.starts_with("GET\n/examplebucket/\n"));
            }
        }
    }

    /// Runs `tamper` on a signed request; the server must answer Mismatch with the string to
    /// sign that signing the tampered request would have produced.
    fn assert_tamper_mismatch(scheme: Scheme, tamper: impl Fn(&mut Wire)) {
        let c = creds(Some("tok"));
        let (mut w, s) = sample().signed(scheme, &c, &["host"], T);
        tamper(&mut w);
        let err = w.verify(scheme, &c, "cn-hangzhou", T).unwrap_err();
        let VerifyError::Mismatch { string_to_sign } = err else {
            panic!("{scheme:?}: {err:?}")
        };
        assert_ne!(string_to_sign, s.string_to_sign);
        // What the client would have signed for the tampered request.
        let mut unsigned = w.clone();
        unsigned
            .headers
            .retain(|(n, _)| !s.headers.iter().any(|(m, _)| m == n));
        let (_, resigned) = unsigned.signed(scheme, &c, &["host"], T);
        assert_eq!(string_to_sign, resigned.string_to_sign);
    }

    #[test]
    fn tampering_is_a_mismatch() {
        for scheme in BOTH {
            assert_tamper_mismatch(scheme, |w| w.key.push('x'));
            assert_tamper_mismatch(scheme, |w| w.bucket = "otherbucket".into());
            assert_tamper_mismatch(scheme, |w| w.method = "POST".into());
            assert_tamper_mismatch(scheme, |w| w.query[0].1 = "4".into());
            assert_tamper_mismatch(scheme, |w| w.query.push(("acl".into(), String::new())));
            assert_tamper_mismatch(scheme, |w| w.query.retain(|(k, _)| k != "empty"));
            assert_tamper_mismatch(scheme, |w| w.headers[1].1 = "text/html".into());
            assert_tamper_mismatch(scheme, |w| {
                w.headers[2].1 = "AAAAAAAAAAAAAAAAAAAAAA==".into()
            });
            assert_tamper_mismatch(scheme, |w| w.headers[4].1 = "gw 02".into());
            assert_tamper_mismatch(scheme, |w| w.headers[0].1 = "evil.example".into());
        }
        // OSS signs every x-oss-* header, so adding one breaks the signature; S3 signs only the
        // SignedHeaders list, so an added header is not covered (and not an error).
        assert_tamper_mismatch(Scheme::OssV4, |w| {
            w.headers.push(("X-Oss-Meta-New".into(), "1".into()))
        });
        let c = creds(None);
        let (mut w, _) = sample().signed(Scheme::S3V4, &c, &[], T);
        w.headers.push(("X-Amz-Meta-New".into(), "1".into()));
        assert_eq!(w.verify(Scheme::S3V4, &c, "cn-hangzhou", T), Ok(()));
        // S3 signs Content-Length too; OSS does not.
        assert_tamper_mismatch(Scheme::S3V4, |w| w.headers[3].1 = "1".into());
        let (mut w, _) = sample().signed(Scheme::OssV4, &c, &[], T);
        w.headers[3].1 = "1".into();
        w.headers[5].1 = "curl".into();
        assert_eq!(w.verify(Scheme::OssV4, &c, "cn-hangzhou", T), Ok(()));
    }

    #[test]
    fn tampered_signature_or_wrong_secret() {
        for scheme in BOTH {
            let c = creds(None);
            let (mut w, s) = sample().signed(scheme, &c, &[], T);
            let other = Credentials {
                access_key_secret: "another secret".into(),
                ..c.clone()
            };
            assert_eq!(
                w.verify(scheme, &other, "cn-hangzhou", T),
                Err(VerifyError::Mismatch {
                    string_to_sign: s.string_to_sign.clone()
                })
            );
            let auth = w
                .headers
                .iter_mut()
                .find(|(n, _)| n == "Authorization")
                .unwrap();
            auth.1 = auth.1.replace(&s.signature, &s.signature.to_uppercase());
            assert!(matches!(
                w.verify(scheme, &c, "cn-hangzhou", T),
                Err(VerifyError::Mismatch { .. })
            ));
        }
    }

    #[test]
    fn skew_is_fifteen_minutes_either_way() {
        let c = creds(None);
        for scheme in BOTH {
            let (w, _) = sample().signed(scheme, &c, &[], T);
            for now in [T - MAX_SKEW_SECS, T, T + MAX_SKEW_SECS] {
                assert_eq!(w.verify(scheme, &c, "cn-hangzhou", now), Ok(()));
            }
            for now in [
                T - MAX_SKEW_SECS - 1,
                T + MAX_SKEW_SECS + 1,
                i64::MIN,
                i64::MAX,
            ] {
                assert_eq!(
                    w.verify(scheme, &c, "cn-hangzhou", now),
                    Err(VerifyError::Skewed { request_time: T })
                );
            }
        }
    }

    #[test]
    fn wrong_access_key_or_token() {
        for scheme in BOTH {
            let c = creds(Some("tok"));
            let (w, _) = sample().signed(scheme, &c, &[], T);
            let other_ak = Credentials {
                access_key_id: "LTAIother".into(),
                ..c.clone()
            };
            assert_eq!(
                w.verify(scheme, &other_ak, "cn-hangzhou", T),
                Err(VerifyError::UnknownAccessKey)
            );
            let other_token = Credentials {
                security_token: Some("tok2".into()),
                ..c.clone()
            };
            assert_eq!(
                w.verify(scheme, &other_token, "cn-hangzhou", T),
                Err(VerifyError::UnknownAccessKey)
            );
            // The server expects a token the client did not send.
            let (no_token, _) = sample().signed(scheme, &creds(None), &[], T);
            assert_eq!(
                no_token.verify(scheme, &c, "cn-hangzhou", T),
                Err(VerifyError::UnknownAccessKey)
            );
        }
    }

    #[test]
    fn wrong_region_or_scope() {
        let c = creds(None);
        for scheme in BOTH {
            let (w, _) = sample().signed(scheme, &c, &[], T);
            assert!(matches!(
                w.verify(scheme, &c, "us-east-1", T),
                Err(VerifyError::Malformed(_))
            ));
            // Scheme confusion.
            let other = if scheme == Scheme::OssV4 {
                Scheme::S3V4
            } else {
                Scheme::OssV4
            };
            assert!(matches!(
                w.verify(other, &c, "cn-hangzhou", T),
                Err(VerifyError::Malformed(_))
            ));
        }
    }

    #[test]
    fn accepts_oss2_layout_and_spaced_separators() {
        let c = creds(None);
        let (mut w, s) = sample().signed(Scheme::OssV4, &c, &["user-agent", "host"], T);
        let scope = "20240102/cn-hangzhou/oss/aliyun_v4_request";
        // oss2: ", " separators, AdditionalHeaders last and sorted by first letter only.
        let oss2 = format!(
            "OSS4-HMAC-SHA256 Credential={}/{scope}, Signature={}, AdditionalHeaders=user-agent;host",
            c.access_key_id, s.signature
        );
        w.headers
            .iter_mut()
            .find(|(n, _)| n == "Authorization")
            .unwrap()
            .1 = oss2;
        assert_eq!(w.verify(Scheme::OssV4, &c, "cn-hangzhou", T), Ok(()));

        let (mut w, s) = sample().signed(Scheme::S3V4, &c, &[], T);
        let auth = w
            .headers
            .iter_mut()
            .find(|(n, _)| n == "Authorization")
            .unwrap();
        auth.1 = auth.1.replace(",", ", ");
        assert!(auth.1.contains(", SignedHeaders="));
        assert_eq!(w.verify(Scheme::S3V4, &c, "cn-hangzhou", T), Ok(()));
        assert!(s.signature.len() == 64);
    }

    #[test]
    fn s3_date_header_fallback() {
        // botocore with a Date header: it signs Date and sends no x-amz-date.
        let c = creds(None);
        let mut w = sample();
        w.headers.push(("Date".into(), time::rfc1123(T)));
        let (mut signed, _) = w.signed(Scheme::S3V4, &c, &[], T);
        assert_eq!(signed.verify(Scheme::S3V4, &c, "", T), Ok(()));
        // Drop x-amz-date: the Authorization then names a header the request lacks -> Mismatch,
        // but the date is still found.
        signed.headers.retain(|(n, _)| n != "x-amz-date");
        assert!(matches!(
            signed.verify(Scheme::S3V4, &c, "", T),
            Err(VerifyError::Mismatch { .. })
        ));
        signed.headers.retain(|(n, _)| n != "Date");
        assert_eq!(
            signed.verify(Scheme::S3V4, &c, "", T),
            Err(VerifyError::Malformed("missing request date"))
        );
    }

    #[test]
    fn presigned_round_trip_and_expiry() {
        for scheme in BOTH {
            for token in [None, Some("tok")] {
                let c = creds(token);
                let w = sample().presigned(scheme, &c, &["host"], T, 600);
                assert_eq!(
                    w.verify(scheme, &c, "cn-hangzhou", T + 600),
                    Ok(()),
                    "{scheme:?}"
                );
                assert_eq!(
                    w.verify(scheme, &c, "cn-hangzhou", T - MAX_SKEW_SECS),
                    Ok(())
                );
                assert_eq!(
                    w.verify(scheme, &c, "cn-hangzhou", T + 601),
                    Err(VerifyError::Malformed("presigned request has expired"))
                );
                assert_eq!(
                    w.verify(scheme, &c, "cn-hangzhou", T - MAX_SKEW_SECS - 1),
                    Err(VerifyError::Skewed { request_time: T })
                );
                let mut tampered = w.clone();
                tampered.key.push('x');
                assert!(matches!(
                    tampered.verify(scheme, &c, "cn-hangzhou", T),
                    Err(VerifyError::Mismatch { .. })
                ));
                let mut tampered = w.clone();
                tampered.headers[1].1 = "text/html".into();
                assert!(matches!(
                    tampered.verify(scheme, &c, "cn-hangzhou", T),
                    Err(VerifyError::Mismatch { .. })
                ));
            }
        }
    }

    #[test]
    fn presign_query_params() {
        let c = creds(Some("tok"));
        let w = sample();
        let path = w.path();
        let req = Request {
            method: "GET",
            bucket: Some("examplebucket"),
            key: Some(&w.key),
            path: &path,
            query: &w.query,
            headers: &w.headers,
        };
        let p = presign_query(
            &req,
            &w.ctx(Scheme::OssV4, &c, &["host", "x-oss-meta-device"], T),
            60,
        );
        let names: Vec<&str> = p.query.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "x-oss-signature-version",
                "x-oss-credential",
                "x-oss-date",
                "x-oss-expires",
                "x-oss-additional-headers",
                "x-oss-security-token",
                "x-oss-signature"
            ]
        );
        assert_eq!(
            p.query[1].1,
            "LTAI5tExampleAccessKeyId/20240102/cn-hangzhou/oss/aliyun_v4_request"
        );
        assert_eq!(p.query[4].1, "host");
        assert_eq!(p.query[6].1, p.signature);
        assert!(p.canonical_request.contains("&x-oss-security-token=tok&"));
        assert!(!p.canonical_request.contains("x-oss-date:"));

        let p = presign_query(&req, &w.ctx(Scheme::S3V4, &c, &[], T), 60);
        let names: Vec<&str> = p.query.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "X-Amz-Algorithm",
                "X-Amz-Credential",
                "X-Amz-Date",
                "X-Amz-Expires",
                "X-Amz-SignedHeaders",
                "X-Amz-Security-Token",
                "X-Amz-Signature"
            ]
        );
        assert_eq!(
            p.query[4].1,
            "content-length;content-md5;content-type;host;x-oss-meta-device"
        );
    }

    #[test]
    fn malformed_authorizations() {
        let c = creds(None);
        let (w, s) = sample().signed(Scheme::OssV4, &c, &[], T);
        let cred = format!(
            "{}/20240102/cn-hangzhou/oss/aliyun_v4_request",
            c.access_key_id
        );
        let sig = &s.signature;
        for bad in [
            String::new(),
            "OSS4-HMAC-SHA256".into(),
            "OSS4-HMAC-SHA256Credential=x".into(),
            format!("OSS ak:{sig}"),
            format!("OSS4-HMAC-SHA256 Credential={cred}"),
            format!("OSS4-HMAC-SHA256 Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={cred},Signature={sig},Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={cred},Foo=bar,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={cred},AdditionalHeaders=,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={cred},AdditionalHeaders=host;,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={cred},,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential=ak/2024010/cn-hangzhou/oss/aliyun_v4_request,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential=ak/20240102/cn-hangzhou/oss/aws4_request,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential=20240102/cn-hangzhou/oss/aliyun_v4_request,Signature={sig}"),
            format!("OSS4-HMAC-SHA256 Credential={}/20240101/cn-hangzhou/oss/aliyun_v4_request,Signature={sig}", c.access_key_id),
        ] {
            let mut bad_w = w.clone();
            bad_w.headers.iter_mut().find(|(n, _)| n == "Authorization").unwrap().1 = bad.clone();
            assert!(
                matches!(bad_w.verify(Scheme::OssV4, &c, "cn-hangzhou", T), Err(VerifyError::Malformed(_))),
                "{bad:?}"
            );
        }
        // No Authorization and no presigned query.
        let mut none = w.clone();
        none.headers.retain(|(n, _)| n != "Authorization");
        assert_eq!(
            none.verify(Scheme::OssV4, &c, "cn-hangzhou", T),
            Err(VerifyError::Malformed("missing Authorization header"))
        );
        // Garbage date.
        let mut bad_date = w.clone();
        bad_date
            .headers
            .iter_mut()
            .find(|(n, _)| n == "x-oss-date")
            .unwrap()
            .1 = "yesterday".into();
        assert_eq!(
            bad_date.verify(Scheme::OssV4, &c, "cn-hangzhou", T),
            Err(VerifyError::Malformed("malformed request date"))
        );
    }

    #[test]
    fn signing_key_chain() {
        // Independent check of the chain: HMAC(HMAC(HMAC(HMAC("AWS4"+k, date), region), svc), term).
        let mut k = b"AWS4secret".to_vec();
        for msg in ["20130524", "us-east-1", "s3", "aws4_request"] {
            let mut mac = HmacSha256::new_from_slice(&k).unwrap();
            mac.update(msg.as_bytes());
            k = mac.finalize().into_bytes().to_vec();
        }
        assert_eq!(
            signing_key(Scheme::S3V4, "secret", "20130524", "us-east-1", "s3").to_vec(),
            k
        );
        assert_ne!(
            signing_key(Scheme::OssV4, "secret", "20130524", "us-east-1", "s3"),
            signing_key(Scheme::S3V4, "secret", "20130524", "us-east-1", "s3")
        );
    }

    #[test]
    fn debug_redacts_secrets() {
        let dbg = format!("{:?}", creds(Some("the-token")));
        assert!(!dbg.contains("ExampleAccessKeySecret") && !dbg.contains("the-token"));
        assert!(dbg.contains("LTAI5tExampleAccessKeyId"));
    }

    fn arb_key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 +%/~!*()'$&=?#\\[\\]@,;:._-]{1,64}",
            "\\PC{1,32}",
            Just("a//b/".to_string()),
            Just("x".repeat(1023)),
        ]
    }

    fn arb_query() -> impl Strategy<Value = Vec<(String, String)>> {
        proptest::collection::vec(("[a-zA-Z+|%/ -]{1,8}", "\\PC{0,8}"), 0..4)
    }

    proptest! {
        #[test]
        fn sign_verify_round_trip(
            key in arb_key(),
            query in arb_query(),
            meta in "[ -~]{0,20}",
            token in proptest::option::of("[A-Za-z0-9+/=]{1,40}"),
            s3 in any::<bool>(),
            presigned in any::<bool>(),
        ) {
            let scheme = if s3 { Scheme::S3V4 } else { Scheme::OssV4 };
            let c = creds(token.as_deref());
            let mut w = Wire::new("PUT", &key, &[], &[("Host", "h"), ("x-oss-meta-m", &meta), ("x-amz-meta-m", &meta)]);
            w.query = query;
            let sent = if presigned { w.presigned(scheme, &c, &[], T, 60) } else { w.signed(scheme, &c, &[], T).0 };
            prop_assert_eq!(sent.verify(scheme, &c, "cn-hangzhou", T), Ok(()));
            let mut tampered = sent.clone();
            tampered.key.push('/');
            prop_assert!(
                matches!(tampered.verify(scheme, &c, "cn-hangzhou", T), Err(VerifyError::Mismatch { .. })),
                "tampered key accepted"
            );
        }

        #[test]
        fn garbage_authorization_never_panics(
            auth in "\\PC{0,120}",
            tail in "[A-Za-z0-9=,;/ _-]{0,120}",
            s3 in any::<bool>(),
            date in "\\PC{0,20}",
        ) {
            let scheme = if s3 { Scheme::S3V4 } else { Scheme::OssV4 };
            let c = creds(None);
            for value in [auth.clone(), format!("{} {tail}", scheme.algorithm()), format!("{} Credential={tail}", scheme.algorithm())] {
                let w = Wire::new("GET", "k", &[], &[("Authorization", &value), (scheme.date_header(), &date), ("Date", &date)]);
                let r = w.verify(scheme, &c, "cn-hangzhou", T);
                prop_assert!(r.is_err());
            }
        }

        #[test]
        fn garbage_presigned_query_never_panics(
            vals in proptest::collection::vec("\\PC{0,30}", 7),
            s3 in any::<bool>(),
        ) {
            let scheme = if s3 { Scheme::S3V4 } else { Scheme::OssV4 };
            let qn = scheme.query_names();
            let names = [qn.algorithm, qn.credential, qn.date, qn.expires, qn.names, qn.token, qn.signature];
            let query: Vec<(&str, &str)> = names.iter().copied().zip(vals.iter().map(String::as_str)).collect();
            let w = Wire::new("GET", "k", &query, &[]);
            prop_assert!(w.verify(scheme, &creds(None), "", T).is_err());
        }
    }
}

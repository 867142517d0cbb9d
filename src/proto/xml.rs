//! The few OSS/S3 XML documents ossup reads, and the one it writes.
//!
//! Owns: a small bounded XML reader (no DTDs, no entities beyond the five predefined and
//! numeric ones, namespaces ignored), extractors for each response document, the
//! `<CompleteMultipartUpload>` writer, and escaping. Must not: accept unbounded input (the
//! caller passes a bounded slice), or decide what a document means for the upload.
//!
//! The reader is a pull tokenizer over the whole (bounded) document. It is iterative: nesting
//! is tracked on an explicit stack capped at [`MAX_DEPTH`], so input cannot drive recursion.
//! Element names are matched on their local part (`s3:ETag` matches `ETag`); attributes,
//! including `xmlns`, are checked for syntax and otherwise ignored. Extractors match elements
//! by their full path from the root, so an `ETag` somewhere else in the tree is never taken
//! for the one they want.
//!
//! Text values: numbers, booleans, ETags, upload ids and error fields are trimmed of XML
//! whitespace; object keys (`ListMultipartUploads` `Key`) are kept exactly as sent.

/// Largest XML document accepted (a full 1000-part ListParts page is about 250 KiB).
pub const MAX_XML: usize = 1024 * 1024;

/// Deepest element nesting accepted; deeper documents are [`XmlError::Malformed`].
pub const MAX_DEPTH: usize = 32;

/// Why a document could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum XmlError {
    /// Not well-formed, or nested too deep.
    Malformed,
    /// Larger than [`MAX_XML`].
    TooLarge,
    /// A required element is missing or has an invalid value.
    Missing(&'static str),
}

/// One part as ListParts reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedPart {
    /// Part number.
    pub n: u32,
    /// ETag as listed (quotes kept).
    pub etag: String,
    /// Size in bytes.
    pub size: u64,
    /// `HashCrc64ecma`, when the server reports it.
    pub crc64: Option<u64>,
}

/// One ListParts page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartsPage {
    /// Parts on this page.
    pub parts: Vec<ListedPart>,
    /// `IsTruncated`.
    pub truncated: bool,
    /// `NextPartNumberMarker`, when present.
    pub next_marker: Option<u32>,
}

/// An `<Error>` document (or the decoded `x-oss-err` header).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceError {
    /// `Code`, e.g. `NoSuchUpload`.
    pub code: String,
    /// `Message`.
    pub message: String,
    /// `RequestId`.
    pub request_id: String,
    /// `ServerTime` (skew errors), as sent.
    pub server_time: Option<String>,
    /// `EC` (OSS error-center code).
    pub ec: Option<String>,
}

/// One unfinished upload from ListMultipartUploads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUpload {
    /// Object key.
    pub key: String,
    /// Upload id.
    pub upload_id: String,
    /// `Initiated`, in the server's clock (Unix seconds), when present and well-formed.
    pub initiated: Option<i64>,
}

/// One ListMultipartUploads page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadsPage {
    /// Uploads on this page.
    pub uploads: Vec<ListedUpload>,
    /// `IsTruncated`.
    pub truncated: bool,
    /// `NextKeyMarker`.
    pub next_key_marker: String,
    /// `NextUploadIdMarker`.
    pub next_upload_id_marker: String,
}

/// Highest part number OSS and S3 accept.
const MAX_PART_NUMBER: u32 = 10_000;

/// Longest ETag kept (OSS and S3 send 34 to ~70 bytes); a longer one is a malformed answer.
pub const MAX_ETAG: usize = 128;
/// Longest upload id kept (OSS sends 32 hex digits, S3 up to a few hundred bytes); a longer
/// one is a malformed answer, so it can never outgrow a journal record.
pub const MAX_UPLOAD_ID: usize = 1024;
/// Longest error `Code` kept; the rest is cut.
pub const MAX_CODE: usize = 64;
/// Longest error `Message` kept; the rest is cut.
pub const MAX_MESSAGE: usize = 512;
/// Longest request id kept (from a body or a header); the rest is cut.
pub const MAX_REQUEST_ID: usize = 128;
/// Most parts one ListParts page may list (servers cap `max-parts` at 1000); more is malformed.
pub const MAX_PAGE_PARTS: usize = 1000;
/// Most uploads kept from one ListMultipartUploads page; the rest of the page is skipped.
pub const MAX_PAGE_UPLOADS: usize = 1000;

/// True if `s` is a usable protocol token: non-empty, printable ASCII, at most `max` bytes.
pub fn token_ok(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && s.bytes().all(|b| (0x21..0x7f).contains(&b))
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `InitiateMultipartUploadResult` → `UploadId`.
pub fn parse_initiate(body: &[u8]) -> Result<String, XmlError> {
    let mut upload_id = None;
    let root = walk(body, |path, text| {
        if let ["InitiateMultipartUploadResult", "UploadId"] = path {
            upload_id = Some(text.trim().to_owned());
        }
        Ok(())
    })?;
    expect_root(root, "InitiateMultipartUploadResult")?;
    match upload_id {
        Some(id) if token_ok(&id, MAX_UPLOAD_ID) => Ok(id),
        Some(id) if !id.is_empty() => Err(XmlError::Malformed),
        _ => Err(XmlError::Missing("UploadId")),
    }
}

/// `ListPartsResult` → one page.
///
/// Every `Part` needs a `PartNumber` in `1..=10000`, a non-empty `ETag` and a `Size`;
/// `HashCrc64ecma` is optional (an empty element counts as absent) but must be a decimal
/// `u64` when present. `IsTruncated` is required (`true`/`false`). An absent or empty
/// `NextPartNumberMarker` gives `None`. The page is returned as listed: this function does not
/// sort, deduplicate or invent a marker for a truncated page without one.
pub fn parse_list_parts(body: &[u8]) -> Result<PartsPage, XmlError> {
    #[derive(Default)]
    struct Acc {
        n: Option<u32>,
        etag: Option<String>,
        size: Option<u64>,
        crc64: Option<u64>,
    }
    let mut parts = Vec::new();
    let mut cur = Acc::default();
    let mut truncated = None;
    let mut next_marker = None;
    let root = walk(body, |path, text| {
        match path {
            ["ListPartsResult", "IsTruncated"] => {
                truncated = Some(parse_bool(text).ok_or(XmlError::Missing("IsTruncated"))?)
            }
            ["ListPartsResult", "NextPartNumberMarker"] => {
                next_marker = match text.trim() {
                    "" => None,
                    t => Some(parse_u32(t).ok_or(XmlError::Missing("NextPartNumberMarker"))?),
                }
            }
            ["ListPartsResult", "Part", "PartNumber"] => {
                let n = parse_u32(text).filter(|n| (1..=MAX_PART_NUMBER).contains(n));
                cur.n = Some(n.ok_or(XmlError::Missing("PartNumber"))?);
            }
            ["ListPartsResult", "Part", "ETag"] => cur.etag = Some(text.trim().to_owned()),
            ["ListPartsResult", "Part", "Size"] => {
                cur.size = Some(parse_u64(text).ok_or(XmlError::Missing("Size"))?)
            }
            ["ListPartsResult", "Part", "HashCrc64ecma"] => {
                cur.crc64 = match text.trim() {
                    "" => None,
                    t => Some(parse_u64(t).ok_or(XmlError::Missing("HashCrc64ecma"))?),
                }
            }
            ["ListPartsResult", "Part"] => {
                let part = std::mem::take(&mut cur);
                if parts.len() >= MAX_PAGE_PARTS {
                    return Err(XmlError::Malformed);
                }
                let etag = part
                    .etag
                    .filter(|e| !e.is_empty())
                    .ok_or(XmlError::Missing("ETag"))?;
                if !token_ok(&etag, MAX_ETAG) {
                    return Err(XmlError::Malformed);
                }
                parts.push(ListedPart {
                    n: part.n.ok_or(XmlError::Missing("PartNumber"))?,
                    etag,
                    size: part.size.ok_or(XmlError::Missing("Size"))?,
                    crc64: part.crc64,
                });
            }
            _ => {}
        }
        Ok(())
    })?;
    expect_root(root, "ListPartsResult")?;
    Ok(PartsPage {
        parts,
        truncated: truncated.ok_or(XmlError::Missing("IsTruncated"))?,
        next_marker,
    })
}

/// `CompleteMultipartUploadResult` → `ETag`. S3 may answer 200 with an `<Error>` body for
/// Complete: that comes back as `Err(Ok(ServiceError))`; malformed input as `Err(Err(_))`.
pub fn parse_complete(body: &[u8]) -> Result<String, Result<ServiceError, XmlError>> {
    let mut etag = None;
    let mut error = ServiceError::default();
    let root = walk(body, |path, text| {
        match path {
            ["CompleteMultipartUploadResult", "ETag"] => etag = Some(text.trim().to_owned()),
            ["Error", field] => error_field(&mut error, field, text),
            _ => {}
        }
        Ok(())
    })
    .map_err(Err)?;
    match root {
        "CompleteMultipartUploadResult" => match etag {
            Some(e) if token_ok(&e, MAX_ETAG) => Ok(e),
            Some(e) if !e.is_empty() => Err(Err(XmlError::Malformed)),
            _ => Err(Err(XmlError::Missing("ETag"))),
        },
        "Error" => Err(Ok(error)),
        _ => Err(Err(XmlError::Missing("CompleteMultipartUploadResult"))),
    }
}

/// `ListMultipartUploadsResult` → one page.
///
/// Every `Upload` needs a `Key` (kept exactly, not trimmed) and a non-empty `UploadId`.
/// `IsTruncated` is required; absent markers are empty strings.
pub fn parse_list_uploads(body: &[u8]) -> Result<UploadsPage, XmlError> {
    let mut uploads = Vec::new();
    let mut key: Option<String> = None;
    let mut upload_id: Option<String> = None;
    let mut initiated: Option<i64> = None;
    let mut truncated = None;
    let mut next_key_marker = String::new();
    let mut next_upload_id_marker = String::new();
    let root = walk(body, |path, text| {
        match path {
            ["ListMultipartUploadsResult", "IsTruncated"] => {
                truncated = Some(parse_bool(text).ok_or(XmlError::Missing("IsTruncated"))?)
            }
            ["ListMultipartUploadsResult", "NextKeyMarker"] => next_key_marker = text.to_owned(),
            ["ListMultipartUploadsResult", "NextUploadIdMarker"] => {
                next_upload_id_marker = text.trim().to_owned()
            }
            ["ListMultipartUploadsResult", "Upload", "Key"] => key = Some(text.to_owned()),
            ["ListMultipartUploadsResult", "Upload", "UploadId"] => {
                upload_id = Some(text.trim().to_owned())
            }
            ["ListMultipartUploadsResult", "Upload", "Initiated"] => {
                initiated = crate::proto::time::parse_iso8601(text)
            }
            ["ListMultipartUploadsResult", "Upload"] => {
                let key = key.take().ok_or(XmlError::Missing("Key"))?;
                let upload_id = upload_id
                    .take()
                    .filter(|u| !u.is_empty())
                    .ok_or(XmlError::Missing("UploadId"))?;
                let initiated = initiated.take();
                // An id no Abort could carry, or a page longer than any server sends, is
                // skipped: the sweep only ever acts on what it can name.
                if token_ok(&upload_id, MAX_UPLOAD_ID)
                    && key.len() <= 1024
                    && uploads.len() < MAX_PAGE_UPLOADS
                {
                    uploads.push(ListedUpload {
                        key,
                        upload_id,
                        initiated,
                    });
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    expect_root(root, "ListMultipartUploadsResult")?;
    Ok(UploadsPage {
        uploads,
        truncated: truncated.ok_or(XmlError::Missing("IsTruncated"))?,
        next_key_marker,
        next_upload_id_marker,
    })
}

/// An `<Error>` body. `None` if the body is not an error document.
///
/// A well-formed document whose root is `Error` always gives `Some`; fields it lacks are
/// empty (`code`, `message`, `request_id`) or `None` (`server_time`, `ec`, also when empty).
pub fn parse_error(body: &[u8]) -> Option<ServiceError> {
    let mut error = ServiceError::default();
    let root = walk(body, |path, text| {
        if let ["Error", field] = path {
            error_field(&mut error, field, text);
        }
        Ok(())
    })
    .ok()?;
    (root == "Error").then_some(error)
}

/// The base64 `x-oss-err` header (an `<Error>` document). `None` if it does not decode.
pub fn parse_oss_err_header(value: &str) -> Option<ServiceError> {
    use base64::Engine as _;
    let value = value.trim();
    // Decoded size is 3/4 of the input; refuse anything that could exceed the XML bound.
    if value.len() / 4 * 3 > MAX_XML {
        return None;
    }
    let xml = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    parse_error(&xml)
}

/// Writes the `<CompleteMultipartUpload>` body for `parts` (ascending).
///
/// The ETags are written as given (quotes kept, escaped as `&quot;`); the order is the
/// caller's.
pub fn complete_body(parts: &[(u32, String)]) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(96 + parts.len() * 96);
    s.push_str(r#"<?xml version="1.0" encoding="UTF-8"?><CompleteMultipartUpload>"#);
    for (n, etag) in parts {
        // Writing to a String cannot fail.
        let _ = write!(
            s,
            "<Part><PartNumber>{n}</PartNumber><ETag>{}</ETag></Part>",
            escape(etag)
        );
    }
    s.push_str("</CompleteMultipartUpload>");
    s.into_bytes()
}

/// Escapes `&`, `<`, `>`, `"` and `'` for element text and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 4);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

// ------------------------------------------------------------------------------------------
// Extractor helpers

fn expect_root(root: &str, want: &'static str) -> Result<(), XmlError> {
    if root == want {
        Ok(())
    } else {
        Err(XmlError::Missing(want))
    }
}

fn error_field(error: &mut ServiceError, field: &str, text: &str) {
    use crate::proto::text::printable;
    let value = text.trim();
    match field {
        // Everything a server writes here may reach a terminal or a log: made printable.
        "Code" => error.code = printable(value, MAX_CODE),
        "Message" => error.message = printable(value, MAX_MESSAGE),
        "RequestId" => error.request_id = printable(value, MAX_REQUEST_ID),
        "ServerTime" => error.server_time = (!value.is_empty()).then(|| printable(value, 64)),
        "EC" => error.ec = (!value.is_empty()).then(|| printable(value, 64)),
        _ => {}
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// Decimal digits only (no sign, no spaces inside), overflow-checked.
fn parse_u64(text: &str) -> Option<u64> {
    let t = text.trim();
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

fn parse_u32(text: &str) -> Option<u32> {
    parse_u64(text).and_then(|v| u32::try_from(v).ok())
}

/// Reads the whole document, calling `on_end(path, text)` at every end tag, where `path` holds
/// the local names from the root down to the element that ends, and `text` is the decoded
/// character data directly inside it since its last child (for leaf elements: its text).
/// Returns the local name of the root element.
/// The result documents ossup reads, by their names in the OSS and S3 references.
const RESULT_ROOTS: [&str; 4] = [
    "InitiateMultipartUploadResult",
    "ListPartsResult",
    "CompleteMultipartUploadResult",
    "ListMultipartUploadsResult",
];

/// The reference name of a root element that real servers spell differently: `…Response`
/// and `…Output` for `…Result`, and S3's API name `CreateMultipartUpload…` for OSS's
/// `InitiateMultipartUpload…`. Other names are returned unchanged.
fn canonical_root(name: &str) -> &str {
    let name_stem = name
        .strip_suffix("Result")
        .or_else(|| name.strip_suffix("Response"))
        .or_else(|| name.strip_suffix("Output"));
    let Some(stem) = name_stem else {
        return name;
    };
    let stem = if stem == "CreateMultipartUpload" {
        "InitiateMultipartUpload"
    } else {
        stem
    };
    RESULT_ROOTS
        .iter()
        .find(|r| r.strip_suffix("Result") == Some(stem))
        .copied()
        .unwrap_or(name)
}

fn walk<'a>(
    body: &'a [u8],
    mut on_end: impl FnMut(&[&'a str], &str) -> Result<(), XmlError>,
) -> Result<&'a str, XmlError> {
    let mut reader = Reader::new(body)?;
    let mut path: Vec<&'a str> = Vec::with_capacity(8);
    let mut text = String::new();
    let mut root = None;
    while let Some(event) = reader.next()? {
        match event {
            Event::Start(name) => {
                // Real servers name the same document differently (moto answers ListParts
                // with `ListPartsResponse`): the root is read by what it holds.
                let name = if root.is_none() {
                    canonical_root(name)
                } else {
                    name
                };
                root.get_or_insert(name);
                path.push(name);
                text.clear();
            }
            Event::Text(raw) => decode_into(raw, Some(&mut text))?,
            Event::CData(raw) => text.push_str(raw),
            Event::End => {
                on_end(&path, &text)?;
                path.pop();
                text.clear();
            }
        }
    }
    root.ok_or(XmlError::Malformed)
}

// ------------------------------------------------------------------------------------------
// Tokenizer

/// One step of the pull reader.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event<'a> {
    /// A start tag (or the start of a self-closing tag); the local name.
    Start(&'a str),
    /// Raw character data, entities checked but not yet decoded (see [`decode_into`]).
    Text(&'a str),
    /// The contents of a CDATA section, verbatim.
    CData(&'a str),
    /// The end of the innermost open element.
    End,
}

/// Pull tokenizer over a bounded UTF-8 document.
struct Reader<'a> {
    src: &'a str,
    pos: usize,
    /// Qualified names of the open elements (at most [`MAX_DEPTH`]).
    stack: Vec<&'a str>,
    /// The last start tag was self-closing: the next event is its end.
    pending_end: bool,
    /// The root element has been closed; only misc (whitespace, comments, PIs) may follow.
    done: bool,
}

impl<'a> Reader<'a> {
    fn new(body: &'a [u8]) -> Result<Self, XmlError> {
        if body.len() > MAX_XML {
            return Err(XmlError::TooLarge);
        }
        let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
        let src = std::str::from_utf8(body).map_err(|_| XmlError::Malformed)?;
        Ok(Reader {
            src,
            pos: 0,
            stack: Vec::with_capacity(8),
            pending_end: false,
            done: false,
        })
    }

    fn rest(&self) -> &'a str {
        // `pos` only ever advances over ASCII delimiters or to the end of a found pattern, so
        // it always sits on a char boundary; `get` keeps this panic-free regardless.
        self.src.get(self.pos..).unwrap_or("")
    }

    /// Skips to just past the next `pat` (searching from `from` bytes into the rest).
    fn skip_past(&mut self, from: usize, pat: &str) -> Result<(), XmlError> {
        let rest = self.rest();
        let hay = rest.get(from..).ok_or(XmlError::Malformed)?;
        let i = hay.find(pat).ok_or(XmlError::Malformed)?;
        self.pos += from + i + pat.len();
        Ok(())
    }

    fn close_element(&mut self) -> Event<'a> {
        self.stack.pop();
        if self.stack.is_empty() {
            self.done = true;
        }
        Event::End
    }

    fn next(&mut self) -> Result<Option<Event<'a>>, XmlError> {
        if self.pending_end {
            self.pending_end = false;
            return Ok(Some(self.close_element()));
        }
        loop {
            let rest = self.rest();
            if rest.is_empty() {
                return if self.done {
                    Ok(None)
                } else {
                    Err(XmlError::Malformed)
                };
            }
            if !rest.starts_with('<') {
                let len = rest.find('<').unwrap_or(rest.len());
                let raw = &rest[..len];
                self.pos += len;
                if self.stack.is_empty() {
                    // Outside the root only whitespace may appear.
                    if raw.bytes().all(is_xml_space) {
                        continue;
                    }
                    return Err(XmlError::Malformed);
                }
                decode_into(raw, None)?;
                return Ok(Some(Event::Text(raw)));
            }
            if rest.starts_with("<?") {
                // XML declaration or processing instruction: skipped.
                self.skip_past(2, "?>")?;
                continue;
            }
            if rest.starts_with("<!--") {
                self.skip_past(4, "-->")?;
                continue;
            }
            if let Some(after) = rest.strip_prefix("<![CDATA[") {
                if self.stack.is_empty() {
                    return Err(XmlError::Malformed);
                }
                let end = after.find("]]>").ok_or(XmlError::Malformed)?;
                self.pos += 9 + end + 3;
                return Ok(Some(Event::CData(&after[..end])));
            }
            if rest.starts_with("<!") {
                // DOCTYPE, ENTITY and friends are refused outright.
                return Err(XmlError::Malformed);
            }
            if let Some(after) = rest.strip_prefix("</") {
                let name = take_name(after)?;
                let tail = after[name.len()..]
                    .trim_start_matches(|c: char| c.is_ascii() && is_xml_space(c as u8));
                if !tail.starts_with('>') {
                    return Err(XmlError::Malformed);
                }
                if self.stack.last() != Some(&name) {
                    return Err(XmlError::Malformed);
                }
                self.pos += rest.len() - tail.len() + 1;
                return Ok(Some(self.close_element()));
            }
            return self.start_tag(rest).map(Some);
        }
    }

    /// Parses `<name attr="v" ...>` or `<name .../>` at the start of `rest`.
    fn start_tag(&mut self, rest: &'a str) -> Result<Event<'a>, XmlError> {
        if self.done || self.stack.len() >= MAX_DEPTH {
            return Err(XmlError::Malformed);
        }
        let after = &rest[1..];
        let name = take_name(after)?;
        let local = local_name(name)?;
        let mut cur = &after[name.len()..];
        loop {
            let trimmed = cur.trim_start_matches(|c: char| c.is_ascii() && is_xml_space(c as u8));
            let had_space = trimmed.len() != cur.len();
            cur = trimmed;
            if let Some(t) = cur.strip_prefix("/>") {
                self.pending_end = true;
                cur = t;
                break;
            }
            if let Some(t) = cur.strip_prefix('>') {
                cur = t;
                break;
            }
            // An attribute: whitespace, name, `=`, quoted value. Values are ignored but must be
            // well-formed (no `<`, only known entities).
            if !had_space {
                return Err(XmlError::Malformed);
            }
            let attr = take_name(cur)?;
            cur = cur[attr.len()..]
                .trim_start_matches(|c: char| c.is_ascii() && is_xml_space(c as u8));
            cur = cur.strip_prefix('=').ok_or(XmlError::Malformed)?;
            cur = cur.trim_start_matches(|c: char| c.is_ascii() && is_xml_space(c as u8));
            let quote = match cur.as_bytes().first() {
                Some(&q @ (b'"' | b'\'')) => q as char,
                _ => return Err(XmlError::Malformed),
            };
            let body = &cur[1..];
            let end = body.find(quote).ok_or(XmlError::Malformed)?;
            let value = &body[..end];
            if value.contains('<') {
                return Err(XmlError::Malformed);
            }
            decode_into(value, None)?;
            cur = &body[end + 1..];
        }
        self.pos += rest.len() - cur.len();
        self.stack.push(name);
        Ok(Event::Start(local))
    }
}

fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The XML name at the start of `s` (ASCII name characters plus any non-ASCII character).
fn take_name(s: &str) -> Result<&str, XmlError> {
    let len = s
        .char_indices()
        .find(|&(_, c)| {
            !(c.is_ascii_alphanumeric() || matches!(c, '_' | ':' | '-' | '.') || !c.is_ascii())
        })
        .map_or(s.len(), |(i, _)| i);
    let name = &s[..len];
    match name.chars().next() {
        None => Err(XmlError::Malformed),
        Some(c) if c.is_ascii_digit() || c == '-' || c == '.' => Err(XmlError::Malformed),
        Some(_) => Ok(name),
    }
}

/// `prefix:local` → `local`; a name without a prefix is its own local name.
fn local_name(name: &str) -> Result<&str, XmlError> {
    let local = name.rsplit(':').next().unwrap_or(name);
    if local.is_empty() || name.starts_with(':') {
        Err(XmlError::Malformed)
    } else {
        Ok(local)
    }
}

/// Decodes entity and character references in `raw`, appending to `out` (or only checking,
/// with `None`). Unknown entities, bare `&` and references to characters XML forbids are
/// [`XmlError::Malformed`].
fn decode_into(raw: &str, mut out: Option<&mut String>) -> Result<(), XmlError> {
    let mut rest = raw;
    while let Some(amp) = rest.find('&') {
        if let Some(o) = out.as_deref_mut() {
            o.push_str(&rest[..amp]);
        }
        let after = &rest[amp + 1..];
        // The longest reference we accept is `#x10FFFF` (8 characters) before the `;`.
        let semi = after
            .bytes()
            .take(10)
            .position(|b| b == b';')
            .ok_or(XmlError::Malformed)?;
        let c = match &after[..semi] {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            r => char_ref(r).ok_or(XmlError::Malformed)?,
        };
        if let Some(o) = out.as_deref_mut() {
            o.push(c);
        }
        rest = &after[semi + 1..];
    }
    if let Some(o) = out {
        o.push_str(rest);
    }
    Ok(())
}

/// `#NN` or `#xHH` → the character, if XML allows it.
fn char_ref(r: &str) -> Option<char> {
    let (digits, radix) = match r.strip_prefix("#x") {
        Some(h) => (h, 16),
        None => (r.strip_prefix('#')?, 10),
    };
    if digits.is_empty() || digits.len() > 8 || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let v = u32::from_str_radix(digits, radix).ok()?;
    let allowed =
        matches!(v, 0x9 | 0xA | 0xD | 0x20..=0xD7FF | 0xE000..=0xFFFD | 0x1_0000..=0x10_FFFF);
    if allowed {
        char::from_u32(v)
    } else {
        None
    }
}

/// Used by tests to see the raw event stream.
#[cfg(test)]
fn events(body: &[u8]) -> Result<Vec<Event<'_>>, XmlError> {
    let mut r = Reader::new(body)?;
    let mut v = Vec::new();
    while let Some(e) = r.next()? {
        v.push(e);
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../../tests/data/xml/", $name)).as_slice()
        };
    }

    const FIXTURES: &[&[u8]] = &[
        fixture!("initiate_oss.xml"),
        fixture!("initiate_s3_ns.xml"),
        fixture!("list_parts_oss_truncated.xml"),
        fixture!("list_parts_oss_last.xml"),
        fixture!("list_parts_no_crc.xml"),
        fixture!("list_parts_s3_ns.xml"),
        fixture!("list_parts_empty.xml"),
        fixture!("error_request_time_too_skewed.xml"),
        fixture!("error_no_such_upload.xml"),
        fixture!("error_s3_signature.xml"),
        fixture!("complete_oss.xml"),
        fixture!("complete_s3_ns.xml"),
        fixture!("complete_200_error.xml"),
        fixture!("list_uploads_oss.xml"),
        fixture!("list_uploads_s3_ns.xml"),
        fixture!("list_uploads_empty.xml"),
    ];

    fn part(n: u32, etag: &str, size: u64, crc64: Option<u64>) -> ListedPart {
        ListedPart {
            n,
            etag: etag.to_owned(),
            size,
            crc64,
        }
    }

    #[test]
    fn initiate_fixtures() {
        assert_eq!(
            parse_initiate(fixture!("initiate_oss.xml")).unwrap(),
            "0004B9895DBBB6EC98E3600A1B2C3D4E"
        );
        assert_eq!(
            parse_initiate(fixture!("initiate_s3_ns.xml")).unwrap(),
            "2~abcDEF_ghi.jkl-mno"
        );
        assert_eq!(
            parse_initiate(fixture!("error_no_such_upload.xml")),
            Err(XmlError::Missing("InitiateMultipartUploadResult"))
        );
        assert_eq!(
            parse_initiate(b"<InitiateMultipartUploadResult><UploadId> </UploadId></InitiateMultipartUploadResult>"),
            Err(XmlError::Missing("UploadId"))
        );
        assert_eq!(
            parse_initiate(b"<InitiateMultipartUploadResult><Bucket>b</Bucket></InitiateMultipartUploadResult>"),
            Err(XmlError::Missing("UploadId"))
        );
        // An UploadId nested somewhere else is not the one we want.
        assert_eq!(
            parse_initiate(b"<InitiateMultipartUploadResult><X><UploadId>u</UploadId></X></InitiateMultipartUploadResult>"),
            Err(XmlError::Missing("UploadId"))
        );
    }

    #[test]
    fn list_parts_truncated_with_crc() {
        let page = parse_list_parts(fixture!("list_parts_oss_truncated.xml")).unwrap();
        assert!(page.truncated);
        assert_eq!(page.next_marker, Some(3));
        assert_eq!(
            page.parts,
            vec![
                part(
                    1,
                    "\"3349DC700140D7F86A0784842780A001\"",
                    6291456,
                    Some(11051210869376104954)
                ),
                part(
                    2,
                    "\"3349DC700140D7F86A0784842780A002\"",
                    6291456,
                    Some(2871702523553914738)
                ),
                part(3, "\"3349DC700140D7F86A0784842780A003\"", 6291456, Some(0)),
            ]
        );
    }

    #[test]
    fn list_parts_last_page_keeps_marker() {
        let page = parse_list_parts(fixture!("list_parts_oss_last.xml")).unwrap();
        assert!(!page.truncated);
        assert_eq!(page.next_marker, Some(5));
        assert_eq!(
            page.parts,
            vec![
                part(
                    4,
                    "\"3349DC700140D7F86A0784842780A004\"",
                    6291456,
                    Some(u64::MAX)
                ),
                part(5, "\"3349DC700140D7F86A0784842780A005\"", 1024, Some(12345)),
            ]
        );
    }

    #[test]
    fn list_parts_without_crc() {
        let page = parse_list_parts(fixture!("list_parts_no_crc.xml")).unwrap();
        assert!(!page.truncated);
        assert_eq!(page.next_marker, Some(2));
        assert_eq!(
            page.parts,
            vec![
                part(1, "\"3349DC700140D7F86A0784842780B001\"", 102400, None),
                part(2, "\"3349DC700140D7F86A0784842780B002\"", 500, None),
            ]
        );
    }

    #[test]
    fn list_parts_s3_namespace_and_entities() {
        let page = parse_list_parts(fixture!("list_parts_s3_ns.xml")).unwrap();
        assert!(page.truncated);
        assert_eq!(page.next_marker, Some(7));
        assert_eq!(
            page.parts,
            vec![
                part(2, "\"7778aef83f66abc1fa1e8477f296d394\"", 5242880, None),
                part(7, "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa7\"", 5242880, None),
            ]
        );
    }

    #[test]
    fn list_parts_empty_page() {
        let page = parse_list_parts(fixture!("list_parts_empty.xml")).unwrap();
        assert_eq!(
            page,
            PartsPage {
                parts: vec![],
                truncated: false,
                next_marker: None
            }
        );
    }

    #[test]
    fn list_parts_prefixed_names() {
        let doc = br#"<s3:ListPartsResult xmlns:s3="http://s3.amazonaws.com/doc/2006-03-01/">
            <s3:IsTruncated>TRUE</s3:IsTruncated><s3:NextPartNumberMarker> 9 </s3:NextPartNumberMarker>
            <s3:Part><s3:PartNumber>9</s3:PartNumber><s3:ETag>"e"</s3:ETag><s3:Size>1</s3:Size></s3:Part>
            </s3:ListPartsResult>"#;
        let page = parse_list_parts(doc).unwrap();
        assert_eq!(
            page,
            PartsPage {
                parts: vec![part(9, "\"e\"", 1, None)],
                truncated: true,
                next_marker: Some(9)
            }
        );
    }

    fn parts_doc(part: &str, truncated: &str) -> Vec<u8> {
        format!("<ListPartsResult><IsTruncated>{truncated}</IsTruncated><Part>{part}</Part></ListPartsResult>").into_bytes()
    }

    #[test]
    fn list_parts_invalid_values() {
        let ok = "<PartNumber>1</PartNumber><ETag>e</ETag><Size>5</Size>";
        assert!(parse_list_parts(&parts_doc(ok, "false")).is_ok());
        let cases: &[(&str, &str, &str)] = &[
            ("<PartNumber>0</PartNumber><ETag>e</ETag><Size>5</Size>", "false", "PartNumber"),
            ("<PartNumber>10001</PartNumber><ETag>e</ETag><Size>5</Size>", "false", "PartNumber"),
            ("<PartNumber>4294967297</PartNumber><ETag>e</ETag><Size>5</Size>", "false", "PartNumber"),
            ("<PartNumber>+1</PartNumber><ETag>e</ETag><Size>5</Size>", "false", "PartNumber"),
            ("<PartNumber>x</PartNumber><ETag>e</ETag><Size>5</Size>", "false", "PartNumber"),
            ("<ETag>e</ETag><Size>5</Size>", "false", "PartNumber"),
            ("<PartNumber>1</PartNumber><Size>5</Size>", "false", "ETag"),
            ("<PartNumber>1</PartNumber><ETag> </ETag><Size>5</Size>", "false", "ETag"),
            ("<PartNumber>1</PartNumber><ETag>e</ETag>", "false", "Size"),
            ("<PartNumber>1</PartNumber><ETag>e</ETag><Size>-5</Size>", "false", "Size"),
            ("<PartNumber>1</PartNumber><ETag>e</ETag><Size>18446744073709551616</Size>", "false", "Size"),
            ("<PartNumber>1</PartNumber><ETag>e</ETag><Size>5</Size><HashCrc64ecma>0x1</HashCrc64ecma>", "false", "HashCrc64ecma"),
            (ok, "yes", "IsTruncated"),
            (ok, "", "IsTruncated"),
        ];
        for (part, truncated, missing) in cases {
            assert_eq!(
                parse_list_parts(&parts_doc(part, truncated)),
                Err(XmlError::Missing(missing)),
                "{part} {truncated}"
            );
        }
        assert_eq!(
            parse_list_parts(b"<ListPartsResult><Part><PartNumber>1</PartNumber><ETag>e</ETag><Size>5</Size></Part></ListPartsResult>"),
            Err(XmlError::Missing("IsTruncated"))
        );
        assert_eq!(
            parse_list_parts(b"<ListPartsResult><IsTruncated>true</IsTruncated><NextPartNumberMarker>a</NextPartNumberMarker></ListPartsResult>"),
            Err(XmlError::Missing("NextPartNumberMarker"))
        );
        assert_eq!(
            parse_list_parts(fixture!("complete_oss.xml")),
            Err(XmlError::Missing("ListPartsResult"))
        );
        // Fields of one Part never leak into the next.
        let doc = b"<ListPartsResult><IsTruncated>false</IsTruncated>\
            <Part><PartNumber>1</PartNumber><ETag>a</ETag><Size>1</Size><HashCrc64ecma>7</HashCrc64ecma></Part>\
            <Part><PartNumber>2</PartNumber><ETag>b</ETag><Size>2</Size></Part></ListPartsResult>";
        assert_eq!(
            parse_list_parts(doc).unwrap().parts,
            vec![part(1, "a", 1, Some(7)), part(2, "b", 2, None)]
        );
        let doc = b"<ListPartsResult><IsTruncated>false</IsTruncated>\
            <Part><PartNumber>1</PartNumber><ETag>a</ETag><Size>1</Size></Part>\
            <Part><ETag>b</ETag><Size>2</Size></Part></ListPartsResult>";
        assert_eq!(parse_list_parts(doc), Err(XmlError::Missing("PartNumber")));
    }

    #[test]
    fn complete_fixtures() {
        assert_eq!(
            parse_complete(fixture!("complete_oss.xml")).unwrap(),
            "\"097DE458AD02B5F89F9D0530231876B9-5\""
        );
        assert_eq!(
            parse_complete(fixture!("complete_s3_ns.xml")).unwrap(),
            "\"3858f62230ac3c915f300c664312c11f-9\""
        );
        assert_eq!(
            parse_complete(fixture!("complete_200_error.xml")),
            Err(Ok(ServiceError {
                code: "InternalError".into(),
                message: "We encountered an internal error. Please try again.".into(),
                request_id: "656c76696e6727732072657175657374".into(),
                server_time: None,
                ec: None,
            }))
        );
        assert_eq!(parse_complete(b"<CompleteMultipartUploadResult><Bucket>b</Bucket></CompleteMultipartUploadResult>"), Err(Err(XmlError::Missing("ETag"))));
        assert_eq!(
            parse_complete(fixture!("initiate_oss.xml")),
            Err(Err(XmlError::Missing("CompleteMultipartUploadResult")))
        );
        assert_eq!(
            parse_complete(b"<CompleteMultipartUploadResult>"),
            Err(Err(XmlError::Malformed))
        );
        assert_eq!(parse_complete(b""), Err(Err(XmlError::Malformed)));
    }

    #[test]
    fn error_fixtures() {
        assert_eq!(
            parse_error(fixture!("error_request_time_too_skewed.xml")).unwrap(),
            ServiceError {
                code: "RequestTimeTooSkewed".into(),
                message:
                    "The difference between the request time and the current time is too large."
                        .into(),
                request_id: "65A3B2C1D0E9F8A7B6C5D4E3".into(),
                server_time: Some("2022-09-04T08:11:37.000Z".into()),
                ec: Some("0002-00000504".into()),
            }
        );
        let e = parse_error(fixture!("error_no_such_upload.xml")).unwrap();
        assert_eq!(e.code, "NoSuchUpload");
        assert_eq!(e.request_id, "65A3B2C1D0E9F8A7B6C5D4E4");
        assert_eq!(e.ec.as_deref(), Some("0042-00000002"));
        assert_eq!(e.server_time, None);
        assert!(e
            .message
            .starts_with("The specified upload does not exist."));
        let e = parse_error(fixture!("error_s3_signature.xml")).unwrap();
        assert_eq!(e.code, "SignatureDoesNotMatch");
        assert!(
            e.message.ends_with("Check your key & signing method."),
            "{}",
            e.message
        );
        assert_eq!(e.request_id, "4442587FB7D0A2F9");
        assert_eq!(parse_error(fixture!("complete_oss.xml")), None);
        assert_eq!(parse_error(b"<Error><Code>X</Code>"), None);
        assert_eq!(parse_error(b"not xml"), None);
        assert_eq!(parse_error(b"<Error/>"), Some(ServiceError::default()));
        // Only direct children of the root count.
        assert_eq!(
            parse_error(b"<Error><X><Code>C</Code></X><EC></EC></Error>"),
            Some(ServiceError::default())
        );
    }

    #[test]
    fn oss_err_header() {
        use base64::Engine as _;
        let doc = fixture!("error_no_such_upload.xml");
        let header = base64::engine::general_purpose::STANDARD.encode(doc);
        assert_eq!(
            parse_oss_err_header(&format!(" {header} ")),
            parse_error(doc)
        );
        assert_eq!(parse_oss_err_header(&header).unwrap().code, "NoSuchUpload");
        assert_eq!(parse_oss_err_header("%%%not base64"), None);
        assert_eq!(
            parse_oss_err_header(&base64::engine::general_purpose::STANDARD.encode(b"<Other/>")),
            None
        );
        assert_eq!(parse_oss_err_header(""), None);
    }

    #[test]
    fn list_uploads_fixtures() {
        let page = parse_list_uploads(fixture!("list_uploads_oss.xml")).unwrap();
        let key = "gw-01/2024/01/02/log file+1.bin";
        assert_eq!(
            page,
            UploadsPage {
                uploads: vec![
                    ListedUpload {
                        key: key.into(),
                        upload_id: "0004B999EF518A1FE585B0C9360DC4C8".into(),
                        initiated: crate::proto::time::parse_iso8601("2024-01-02T03:04:05Z"),
                    },
                    ListedUpload {
                        key: key.into(),
                        upload_id: "0004B99B8E707874FC2D692FA5D77D3F".into(),
                        initiated: Some(1_704_168_306),
                    },
                ],
                truncated: true,
                next_key_marker: key.into(),
                next_upload_id_marker: "0004B99B8E707874FC2D692FA5D77D3F".into(),
            }
        );
        let page = parse_list_uploads(fixture!("list_uploads_s3_ns.xml")).unwrap();
        assert_eq!(
            page,
            UploadsPage {
                uploads: vec![ListedUpload {
                    key: " lead space <key>".into(),
                    upload_id: "VXBsb2FkIElEIGZvciBlbHZpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA".into(),
                    initiated: Some(1_704_164_645),
                }],
                truncated: false,
                next_key_marker: String::new(),
                next_upload_id_marker: String::new(),
            }
        );
        let page = parse_list_uploads(fixture!("list_uploads_empty.xml")).unwrap();
        assert_eq!(page.uploads, vec![]);
        assert!(!page.truncated);
        assert_eq!(
            parse_list_uploads(b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><Key>k</Key></Upload></ListMultipartUploadsResult>"),
            Err(XmlError::Missing("UploadId"))
        );
        assert_eq!(
            parse_list_uploads(b"<ListMultipartUploadsResult><IsTruncated>false</IsTruncated><Upload><UploadId>u</UploadId></Upload></ListMultipartUploadsResult>"),
            Err(XmlError::Missing("Key"))
        );
        assert_eq!(
            parse_list_uploads(b"<ListMultipartUploadsResult/>"),
            Err(XmlError::Missing("IsTruncated"))
        );
        assert_eq!(
            parse_list_uploads(fixture!("list_parts_empty.xml")),
            Err(XmlError::Missing("ListMultipartUploadsResult"))
        );
    }

    fn parts_page(etag: &str, count: usize) -> Vec<u8> {
        let mut s = String::from("<ListPartsResult><IsTruncated>false</IsTruncated>");
        for i in 0..count {
            let n = i % 10 + 1;
            s.push_str(&format!(
                "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag><Size>5</Size></Part>"
            ));
        }
        s.push_str("</ListPartsResult>");
        s.into_bytes()
    }

    #[test]
    fn server_strings_are_bounded() {
        assert!(token_ok("\"0123abcd\"", MAX_ETAG));
        assert!(!token_ok("", MAX_ETAG));
        assert!(!token_ok("a b", MAX_ETAG));
        assert!(!token_ok("a\u{1b}[2J", MAX_ETAG));
        assert!(!token_ok(&"e".repeat(MAX_ETAG + 1), MAX_ETAG));
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("hello", 9), "hello");

        // Upload ids: a long one is malformed, never a value to journal.
        let long = format!(
            "<InitiateMultipartUploadResult><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
            "u".repeat(900 * 1024)
        );
        assert_eq!(parse_initiate(long.as_bytes()), Err(XmlError::Malformed));
        let ok = format!(
            "<InitiateMultipartUploadResult><UploadId>{}</UploadId></InitiateMultipartUploadResult>",
            "u".repeat(MAX_UPLOAD_ID)
        );
        assert_eq!(parse_initiate(ok.as_bytes()).unwrap().len(), MAX_UPLOAD_ID);

        // ETags in a listing and in Complete.
        let big = format!("\"{}\"", "e".repeat(16 * 1024));
        assert_eq!(
            parse_list_parts(&parts_page(&big, 1)),
            Err(XmlError::Malformed)
        );
        assert_eq!(
            parse_list_parts(&parts_page("\"e\"", 3))
                .unwrap()
                .parts
                .len(),
            3
        );
        let complete = format!(
            "<CompleteMultipartUploadResult><ETag>{big}</ETag></CompleteMultipartUploadResult>"
        );
        assert_eq!(
            parse_complete(complete.as_bytes()),
            Err(Err(XmlError::Malformed))
        );

        // Error fields are cut, not refused.
        let err = format!(
            "<Error><Code>{}</Code><Message>{}</Message><RequestId>{}</RequestId></Error>",
            "C".repeat(5000),
            "m".repeat(100_000),
            "r".repeat(5000)
        );
        let e = parse_error(err.as_bytes()).unwrap();
        assert_eq!(e.code.len(), MAX_CODE);
        assert_eq!(e.message.len(), MAX_MESSAGE);
        assert_eq!(e.request_id.len(), MAX_REQUEST_ID);
    }

    #[test]
    fn a_parts_page_longer_than_any_server_sends_is_malformed() {
        assert_eq!(
            parse_list_parts(&parts_page("\"e\"", MAX_PAGE_PARTS))
                .unwrap()
                .parts
                .len(),
            MAX_PAGE_PARTS
        );
        assert_eq!(
            parse_list_parts(&parts_page("\"e\"", MAX_PAGE_PARTS + 1)),
            Err(XmlError::Malformed)
        );
    }

    #[test]
    fn an_uploads_page_keeps_a_bounded_number_of_nameable_uploads() {
        let mut s = String::from(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
             <Upload><Key>k</Key><UploadId>bad id</UploadId></Upload>",
        );
        for i in 0..MAX_PAGE_UPLOADS + 50 {
            s.push_str(&format!(
                "<Upload><Key>k</Key><UploadId>u{i}</UploadId></Upload>"
            ));
        }
        s.push_str("</ListMultipartUploadsResult>");
        let page = parse_list_uploads(s.as_bytes()).unwrap();
        assert_eq!(page.uploads.len(), MAX_PAGE_UPLOADS);
        assert_eq!(page.uploads[0].upload_id, "u0");
    }

    #[test]
    fn escape_all_five() {
        assert_eq!(escape(r#"a&b<c>d"e'f"#), "a&amp;b&lt;c&gt;d&quot;e&apos;f");
        assert_eq!(escape("plain ü"), "plain ü");
        assert_eq!(escape(""), "");
    }

    #[test]
    fn complete_body_exact() {
        let body = complete_body(&[(1, "\"A1\"".into()), (5, "B&5".into())]);
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload>\
             <Part><PartNumber>1</PartNumber><ETag>&quot;A1&quot;</ETag></Part>\
             <Part><PartNumber>5</PartNumber><ETag>B&amp;5</ETag></Part>\
             </CompleteMultipartUpload>"
        );
        assert_eq!(
            complete_body(&[]),
            b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><CompleteMultipartUpload></CompleteMultipartUpload>".to_vec()
        );
    }

    /// Reads a `<CompleteMultipartUpload>` body back with the module's own reader.
    fn read_complete_body(body: &[u8]) -> Result<Vec<(u32, String)>, XmlError> {
        let mut parts = Vec::new();
        let (mut n, mut etag) = (None, None);
        let root = walk(body, |path, text| {
            match path {
                ["CompleteMultipartUpload", "Part", "PartNumber"] => n = parse_u32(text),
                ["CompleteMultipartUpload", "Part", "ETag"] => etag = Some(text.to_owned()),
                ["CompleteMultipartUpload", "Part"] => parts.push((
                    n.take().ok_or(XmlError::Missing("PartNumber"))?,
                    etag.take().ok_or(XmlError::Missing("ETag"))?,
                )),
                _ => {}
            }
            Ok(())
        })?;
        expect_root(root, "CompleteMultipartUpload")?;
        Ok(parts)
    }

    #[test]
    fn tokenizer_events() {
        let doc = b"<?xml version='1.0'?><!-- c --><a x='1' y = \"&lt;&#65;\"><b/>t&amp;<![CDATA[<&>]]><p:c>\xC3\xBC</p:c ></a>\n";
        assert_eq!(
            events(doc).unwrap(),
            vec![
                Event::Start("a"),
                Event::Start("b"),
                Event::End,
                Event::Text("t&amp;"),
                Event::CData("<&>"),
                Event::Start("c"),
                Event::Text("ü"),
                Event::End,
                Event::End,
            ]
        );
        let mut s = String::new();
        decode_into(
            "&lt;&gt;&amp;&quot;&apos;&#65;&#x42;&#x1F600;x",
            Some(&mut s),
        )
        .unwrap();
        assert_eq!(s, "<>&\"'AB\u{1F600}x");
        // A BOM is accepted.
        assert_eq!(
            events(b"\xEF\xBB\xBF<a/>").unwrap(),
            vec![Event::Start("a"), Event::End]
        );
    }

    fn nested(depth: usize) -> Vec<u8> {
        let mut v = Vec::new();
        for _ in 0..depth {
            v.extend_from_slice(b"<a>");
        }
        for _ in 0..depth {
            v.extend_from_slice(b"</a>");
        }
        v
    }

    #[test]
    fn malformed_inputs() {
        let bad: &[&[u8]] = &[
            b"",
            b"   ",
            b"<?xml version=\"1.0\"?>",
            b"<a>",
            b"<a></b>",
            b"<a><b></a></b>",
            b"</a>",
            b"<a/><b/>",
            b"text<a/>",
            b"<a/>text",
            b"<![CDATA[x]]><a/>",
            b"<!DOCTYPE a [<!ENTITY e \"x\">]><a>&e;</a>",
            b"<a>&e;</a>",
            b"<a>&amp</a>",
            b"<a>& b</a>",
            b"<a>&#0;</a>",
            b"<a>&#xD800;</a>",
            b"<a>&#x110000;</a>",
            b"<a>&#-1;</a>",
            b"<a>&#x;</a>",
            b"<a>&#12345678901;</a>",
            b"<a x=1></a>",
            b"<a x></a>",
            b"<a x=\"<\"></a>",
            b"<a x=\"&bogus;\"></a>",
            b"<a x=\"1\"y=\"2\"></a>",
            b"<a x=\"1></a>",
            b"<1a></1a>",
            b"<:a></:a>",
            b"<a:></a:>",
            b"< a></a>",
            b"<a><!-- unterminated </a>",
            b"<a><![CDATA[ unterminated </a>",
            b"<?pi unterminated <a/>",
            b"<a>\xFF</a>",
            b"<a",
            b"<a/",
            b"<a></a",
        ];
        for doc in bad {
            assert_eq!(
                events(doc),
                Err(XmlError::Malformed),
                "{:?}",
                String::from_utf8_lossy(doc)
            );
            assert_eq!(parse_initiate(doc), Err(XmlError::Malformed));
        }
    }

    #[test]
    fn depth_limit() {
        assert!(events(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(events(&nested(MAX_DEPTH + 1)), Err(XmlError::Malformed));
        // Far deeper than any stack would survive with a recursive reader.
        assert_eq!(events(&nested(100_000)), Err(XmlError::Malformed));
        assert_eq!(parse_list_parts(&nested(200)), Err(XmlError::Malformed));
    }

    #[test]
    fn size_limit() {
        let mut doc = b"<a>".to_vec();
        doc.resize(MAX_XML - 4, b' ');
        doc.extend_from_slice(b"</a>");
        assert_eq!(doc.len(), MAX_XML);
        assert!(events(&doc).is_ok());
        doc.insert(3, b' ');
        assert_eq!(events(&doc), Err(XmlError::TooLarge));
        assert_eq!(parse_list_uploads(&doc), Err(XmlError::TooLarge));
        assert_eq!(parse_error(&doc), None);
        assert_eq!(parse_complete(&doc), Err(Err(XmlError::TooLarge)));
    }

    #[test]
    fn every_fixture_is_well_formed() {
        for doc in FIXTURES {
            assert!(events(doc).is_ok(), "{}", String::from_utf8_lossy(doc));
        }
    }

    fn run_all(doc: &[u8]) {
        let _ = parse_initiate(doc);
        let _ = parse_list_parts(doc);
        let _ = parse_complete(doc);
        let _ = parse_list_uploads(doc);
        let _ = parse_error(doc);
        let _ = events(doc);
        if let Ok(s) = std::str::from_utf8(doc) {
            let _ = parse_oss_err_header(s);
        }
    }

    proptest! {
        #[test]
        fn complete_body_round_trips(parts in proptest::collection::vec((1u32..=10_000, "\\PC{0,40}"), 0..20)) {
            let body = complete_body(&parts);
            prop_assert_eq!(read_complete_body(&body).unwrap(), parts);
        }

        #[test]
        fn escape_round_trips(s in "\\PC{0,64}") {
            let mut out = String::new();
            decode_into(&escape(&s), Some(&mut out)).unwrap();
            prop_assert_eq!(out, s);
        }

        #[test]
        fn random_bytes_never_panic(doc in proptest::collection::vec(any::<u8>(), 0..512)) {
            run_all(&doc);
        }

        #[test]
        fn random_markup_never_panics(doc in "[<>/!?\\[\\]&;#x:a-c= \"'CDAT-]{0,200}") {
            run_all(doc.as_bytes());
        }

        #[test]
        fn mutated_fixtures_never_panic(
            which in 0..FIXTURES.len(),
            edits in proptest::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 1..8),
        ) {
            let mut doc = FIXTURES[which].to_vec();
            for (at, byte, kind) in edits {
                let i = at % (doc.len() + 1);
                match kind {
                    0 if i < doc.len() => doc[i] = byte,
                    1 if i < doc.len() => { doc.remove(i); }
                    _ => doc.insert(i, byte),
                }
            }
            run_all(&doc);
        }

        #[test]
        fn truncated_fixtures_are_errors(which in 0..FIXTURES.len(), cut in any::<usize>()) {
            let doc = FIXTURES[which];
            // Cut somewhere before the root's closing `>`.
            let end = doc.iter().rposition(|&b| b == b'>').unwrap();
            let at = cut % end;
            prop_assert_eq!(events(&doc[..at]), Err(XmlError::Malformed));
        }
    }

    /// Issue 11 item 10: moto 5.2.5 answers ListParts with `<ListPartsResponse>`; the
    /// document is read by its content. Unknown roots are still refused.
    #[test]
    fn result_documents_are_read_whatever_their_root_is_called() {
        let page = parse_list_parts(
            b"<ListPartsResponse xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
              <IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber>\
              <ETag>\"e1\"</ETag><Size>5</Size></Part></ListPartsResponse>",
        )
        .unwrap();
        assert_eq!(page.parts.len(), 1);
        assert_eq!(
            parse_initiate(
                b"<CreateMultipartUploadResult><UploadId>u-1</UploadId></CreateMultipartUploadResult>"
            ),
            Ok("u-1".to_string())
        );
        assert_eq!(
            parse_initiate(
                b"<InitiateMultipartUploadResponse><UploadId>u-2</UploadId></InitiateMultipartUploadResponse>"
            ),
            Ok("u-2".to_string())
        );
        assert_eq!(
            parse_complete(b"<CompleteMultipartUploadOutput><ETag>\"m\"</ETag></CompleteMultipartUploadOutput>"),
            Ok("\"m\"".to_string())
        );
        assert!(parse_list_uploads(
            b"<ListMultipartUploadsResponse><IsTruncated>false</IsTruncated></ListMultipartUploadsResponse>"
        )
        .is_ok());
        assert_eq!(
            parse_list_parts(b"<html><body>Sign in to the Wi-Fi</body></html>"),
            Err(XmlError::Missing("ListPartsResult"))
        );
        assert_eq!(
            parse_list_parts(
                b"<ListObjectsResult><IsTruncated>false</IsTruncated></ListObjectsResult>"
            ),
            Err(XmlError::Missing("ListPartsResult"))
        );
        assert_eq!(canonical_root("Error"), "Error");
        assert_eq!(canonical_root("Response"), "Response");
    }
}

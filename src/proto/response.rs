//! Incremental HTTP/1.1 response parsing: the head (via `httparse`) and body framing
//! (Content-Length, chunked, or until close), with hard bounds.
//!
//! Owns: turning bytes into a [`ResponseHead`] and decoded body bytes. Must not: own a socket
//! or buffer policy, or interpret OSS semantics (that is `xml` and `upload`).

/// Largest response head accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most headers accepted in one response.
pub const MAX_HEADERS: usize = 64;

/// Why bytes are not a valid, acceptable HTTP/1.1 response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// The head is not valid HTTP/1.x.
    BadHead,
    /// The head exceeds [`MAX_HEAD`] or [`MAX_HEADERS`].
    HeadTooLarge,
    /// Content-Length or chunk framing is invalid.
    BadFraming,
    /// The body exceeds the caller's limit.
    BodyTooLarge,
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD request, 1xx, 204, 304).
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the server closes the connection.
    Close,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// Headers with lower-cased names, values trimmed, in arrival order.
    pub headers: Vec<(String, String)>,
    /// Body framing.
    pub framing: Framing,
    /// False if the connection must be closed after this response.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// First value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// `ETag` as sent (quotes kept).
    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
    }

    /// `x-oss-request-id`, else `x-amz-request-id`.
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-oss-request-id").or_else(|| self.header("x-amz-request-id"))
    }

    /// `x-oss-hash-crc64ecma` as a number.
    pub fn crc64(&self) -> Option<u64> {
        self.header("x-oss-hash-crc64ecma").and_then(|v| v.parse().ok())
    }
}

/// Tries to parse a response head from the start of `buf`. `Ok(None)`: need more bytes.
/// `Ok(Some((n, head)))`: the head is the first `n` bytes. `head_request` marks a response to
/// HEAD, which has no body whatever its Content-Length says.
pub fn try_head(buf: &[u8], head_request: bool) -> Result<Option<(usize, ResponseHead)>, ParseError> {
    let _ = (buf, head_request);
    todo!()
}

/// Incremental body decoder for one response: feed it bytes as they arrive.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    _private: (),
}

impl BodyDecoder {
    /// A decoder for `framing` that refuses bodies longer than `limit` decoded bytes.
    pub fn new(framing: Framing, limit: usize) -> Self {
        let _ = (framing, limit);
        todo!()
    }

    /// Decodes from `input`, appending body bytes to `out`. Returns how many input bytes were
    /// consumed; bytes past the end of the body are left unconsumed.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        let _ = (input, out);
        todo!()
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        todo!()
    }

    /// Tells the decoder the peer closed the connection: completes a [`Framing::Close`] body,
    /// and is an error (truncated body) for any other unfinished body.
    pub fn eof(&mut self) -> Result<(), ParseError> {
        todo!()
    }
}

//! Incremental HTTP/1.1 response parsing: the head (via `httparse`) and body framing
//! (Content-Length, chunked, or until close), with hard bounds.
//!
//! Owns: turning bytes into a [`ResponseHead`] and decoded body bytes. Must not: own a socket
//! or buffer policy, or interpret OSS semantics (that is `xml` and `upload`).
//!
//! Use: call [`try_head`] on the bytes received so far until it returns a head, then hand the
//! bytes after the head, and everything received later, to a [`BodyDecoder`] made from the
//! head's [`Framing`]. Both give the same result however the bytes are split.
//!
//! Decisions worth knowing:
//! * A `1xx` head (e.g. `100 Continue`) is returned like any other, with [`Framing::None`]; the
//!   caller drops it and calls [`try_head`] again on the bytes after it.
//! * `Transfer-Encoding` wins over `Content-Length`. When both are present the head is
//!   accepted but `keep_alive` is false, so a confused connection is never reused.
//!   A `Transfer-Encoding` whose last coding is not `chunked` means the body runs to close.
//! * Header values that are not UTF-8 are converted lossily (invalid bytes become U+FFFD);
//!   none of the headers ossup reads can legitimately carry such bytes.
//! * A body cut short by the peer closing ([`BodyDecoder::eof`]) is [`ParseError::BadFraming`].
//! * Errors are sticky: after a [`BodyDecoder`] error, every later call returns it again.

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
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `ETag` as sent (quotes kept).
    ///
    /// Only a usable one: at most [`crate::proto::xml::MAX_ETAG`] bytes of printable ASCII
    /// ([`crate::proto::xml::token_ok`]); anything else is as good as none, so it can never be
    /// journaled or sent back in a Complete.
    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
            .filter(|e| crate::proto::xml::token_ok(e, crate::proto::xml::MAX_ETAG))
    }

    /// `x-oss-request-id`, else `x-amz-request-id`.
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-oss-request-id")
            .or_else(|| self.header("x-amz-request-id"))
    }

    /// [`ResponseHead::request_id`] cut to [`crate::proto::xml::MAX_REQUEST_ID`] and made safe
    /// to print ([`crate::proto::text::printable`]): the form every message and log uses.
    pub fn printable_request_id(&self) -> Option<String> {
        self.request_id()
            .map(|r| crate::proto::text::printable(r, crate::proto::xml::MAX_REQUEST_ID))
    }

    /// `x-oss-hash-crc64ecma` as a number.
    pub fn crc64(&self) -> Option<u64> {
        self.header("x-oss-hash-crc64ecma")
            .and_then(|v| v.parse().ok())
    }
}

/// Longest chunk-size line (size, extensions, CRLF) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Most trailer bytes (all trailer lines together) accepted after the last chunk.
const MAX_TRAILERS: usize = MAX_HEAD;

/// Tries to parse a response head from the start of `buf`. `Ok(None)`: need more bytes.
/// `Ok(Some((n, head)))`: the head is the first `n` bytes. `head_request` marks a response to
/// HEAD, which has no body whatever its Content-Length says.
///
/// Only the first [`MAX_HEAD`] bytes of `buf` are looked at: a head that is not complete
/// within them is [`ParseError::HeadTooLarge`], as is one with more than [`MAX_HEADERS`]
/// headers. A `Content-Length` that is not a decimal number, or several that disagree, is
/// [`ParseError::BadFraming`].
pub fn try_head(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<(usize, ResponseHead)>, ParseError> {
    let window = &buf[..buf.len().min(MAX_HEAD)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let n = match parsed.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(ParseError::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::HeadTooLarge),
        Err(_) => return Err(ParseError::BadHead),
    };
    let (Some(version), Some(status)) = (parsed.version, parsed.code) else {
        return Err(ParseError::BadHead);
    };
    if status < 100 {
        return Err(ParseError::BadHead);
    }
    let headers: Vec<(String, String)> = parsed
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value.trim_ascii()).into_owned(),
            )
        })
        .collect();

    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(n, _)| n == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    let has_te = values("transfer-encoding").next().is_some();
    let chunked = values("transfer-encoding")
        .next_back()
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let has_cl = headers.iter().any(|(n, _)| n == "content-length");
    let close_token = values("connection").any(|t| t.eq_ignore_ascii_case("close"));
    let keep_alive_token = values("connection").any(|t| t.eq_ignore_ascii_case("keep-alive"));

    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if no_body {
        Framing::None
    } else if chunked {
        Framing::Chunked
    } else if has_te {
        Framing::Close
    } else if has_cl {
        Framing::Length(content_length(&headers)?)
    } else {
        Framing::Close
    };
    let keep_alive = match version {
        1 => !close_token,
        _ => keep_alive_token && !close_token,
    } && framing != Framing::Close
        && !(has_te && has_cl);
    Ok(Some((
        n,
        ResponseHead {
            status,
            headers,
            framing,
            keep_alive,
        },
    )))
}

/// The one `Content-Length` all `content-length` headers (and comma-separated list items)
/// agree on.
fn content_length(headers: &[(String, String)]) -> Result<u64, ParseError> {
    let mut found = None;
    for (_, value) in headers.iter().filter(|(n, _)| n == "content-length") {
        for item in value.split(',') {
            let item = item.trim();
            if item.is_empty() || !item.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::BadFraming);
            }
            let len: u64 = item.parse().map_err(|_| ParseError::BadFraming)?;
            if found.is_some_and(|f| f != len) {
                return Err(ParseError::BadFraming);
            }
            found = Some(len);
        }
    }
    found.ok_or(ParseError::BadFraming)
}

/// Incremental body decoder for one response: feed it bytes as they arrive.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Most decoded bytes allowed.
    limit: u64,
    /// Decoded bytes produced so far.
    decoded: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Length { remaining: u64 },
    Close,
    Chunked(Chunk),
    Done,
    Failed(ParseError),
}

/// Where the chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In the chunk-size line, `line` bytes into it.
    Size {
        size: u64,
        digits: usize,
        line: usize,
        phase: SizePhase,
    },
    /// In chunk data.
    Data { remaining: u64 },
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// In the trailer section after the last chunk.
    Trailer { line: usize, total: usize, cr: bool },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SizePhase {
    /// Reading hex digits.
    Digits,
    /// After the digits, whitespace before `;` or CR.
    Space,
    /// In a chunk extension (ignored up to the CR).
    Ext,
    /// Saw CR; expecting LF.
    Lf,
}

const SIZE_START: Chunk = Chunk::Size {
    size: 0,
    digits: 0,
    line: 0,
    phase: SizePhase::Digits,
};

impl BodyDecoder {
    /// A decoder for `framing` that refuses bodies longer than `limit` decoded bytes.
    pub fn new(framing: Framing, limit: usize) -> Self {
        let limit = u64::try_from(limit).unwrap_or(u64::MAX);
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(n) if n > limit => State::Failed(ParseError::BodyTooLarge),
            Framing::Length(n) => State::Length { remaining: n },
            Framing::Chunked => State::Chunked(SIZE_START),
            Framing::Close => State::Close,
        };
        BodyDecoder {
            state,
            limit,
            decoded: 0,
        }
    }

    /// Decodes from `input`, appending body bytes to `out`. Returns how many input bytes were
    /// consumed; bytes past the end of the body are left unconsumed.
    ///
    /// Consumes everything it can: if the result is less than `input.len()`, the body is done.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        let result = self.feed_inner(input, out);
        if let Err(e) = &result {
            self.state = State::Failed(e.clone());
        }
        result
    }

    fn feed_inner(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        match &mut self.state {
            State::Failed(e) => Err(e.clone()),
            State::Done => Ok(0),
            State::Close => {
                let total = self.decoded.saturating_add(input.len() as u64);
                if total > self.limit {
                    return Err(ParseError::BodyTooLarge);
                }
                out.extend_from_slice(input);
                self.decoded = total;
                Ok(input.len())
            }
            State::Length { remaining } => {
                let take = clamp(*remaining, input.len());
                out.extend_from_slice(&input[..take]);
                *remaining -= take as u64;
                self.decoded += take as u64;
                if *remaining == 0 {
                    self.state = State::Done;
                }
                Ok(take)
            }
            State::Chunked(_) => self.feed_chunked(input, out),
        }
    }

    fn feed_chunked(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, ParseError> {
        let mut pos = 0;
        while pos < input.len() {
            let State::Chunked(chunk) = &self.state else {
                break;
            };
            let next = match *chunk {
                Chunk::Data { remaining } => {
                    let take = clamp(remaining, input.len() - pos);
                    out.extend_from_slice(&input[pos..pos + take]);
                    pos += take;
                    self.decoded += take as u64;
                    let remaining = remaining - take as u64;
                    State::Chunked(if remaining == 0 {
                        Chunk::DataCr
                    } else {
                        Chunk::Data { remaining }
                    })
                }
                other => {
                    let b = input[pos];
                    pos += 1;
                    match other {
                        Chunk::Size {
                            size,
                            digits,
                            line,
                            phase,
                        } => self.size_byte(b, size, digits, line, phase)?,
                        Chunk::DataCr if b == b'\r' => State::Chunked(Chunk::DataLf),
                        Chunk::DataLf if b == b'\n' => State::Chunked(SIZE_START),
                        Chunk::Trailer { line, total, cr } => trailer_byte(b, line, total, cr)?,
                        Chunk::DataCr | Chunk::DataLf | Chunk::Data { .. } => {
                            return Err(ParseError::BadFraming)
                        }
                    }
                }
            };
            self.state = next;
        }
        Ok(pos)
    }

    /// One byte of a chunk-size line.
    fn size_byte(
        &self,
        b: u8,
        size: u64,
        digits: usize,
        line: usize,
        phase: SizePhase,
    ) -> Result<State, ParseError> {
        let line = line + 1;
        if line > MAX_CHUNK_LINE {
            return Err(ParseError::BadFraming);
        }
        let at = |size, digits, phase| {
            Ok(State::Chunked(Chunk::Size {
                size,
                digits,
                line,
                phase,
            }))
        };
        match phase {
            SizePhase::Digits => match hex_value(b) {
                Some(d) => {
                    let size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(d))
                        .ok_or(ParseError::BadFraming)?;
                    at(size, digits + 1, SizePhase::Digits)
                }
                None if digits == 0 => Err(ParseError::BadFraming),
                None => match b {
                    b' ' | b'\t' => at(size, digits, SizePhase::Space),
                    b';' => at(size, digits, SizePhase::Ext),
                    b'\r' => at(size, digits, SizePhase::Lf),
                    _ => Err(ParseError::BadFraming),
                },
            },
            SizePhase::Space => match b {
                b' ' | b'\t' => at(size, digits, SizePhase::Space),
                b';' => at(size, digits, SizePhase::Ext),
                b'\r' => at(size, digits, SizePhase::Lf),
                _ => Err(ParseError::BadFraming),
            },
            SizePhase::Ext => match b {
                b'\r' => at(size, digits, SizePhase::Lf),
                b'\n' | 0 => Err(ParseError::BadFraming),
                _ => at(size, digits, SizePhase::Ext),
            },
            SizePhase::Lf if b == b'\n' => {
                if size == 0 {
                    Ok(State::Chunked(Chunk::Trailer {
                        line: 0,
                        total: 0,
                        cr: false,
                    }))
                } else if self.decoded.saturating_add(size) > self.limit {
                    Err(ParseError::BodyTooLarge)
                } else {
                    Ok(State::Chunked(Chunk::Data { remaining: size }))
                }
            }
            SizePhase::Lf => Err(ParseError::BadFraming),
        }
    }

    /// True once the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Tells the decoder the peer closed the connection: completes a [`Framing::Close`] body,
    /// and is an error (truncated body) for any other unfinished body.
    pub fn eof(&mut self) -> Result<(), ParseError> {
        match &self.state {
            State::Done => Ok(()),
            State::Close => {
                self.state = State::Done;
                Ok(())
            }
            State::Failed(e) => Err(e.clone()),
            State::Length { .. } | State::Chunked(_) => {
                self.state = State::Failed(ParseError::BadFraming);
                Err(ParseError::BadFraming)
            }
        }
    }
}

/// `min(remaining, available)` as a `usize`, without lossy casts.
fn clamp(remaining: u64, available: usize) -> usize {
    usize::try_from(remaining).map_or(available, |r| r.min(available))
}

fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// One byte of the trailer section: lines until an empty one, CRLF-terminated, bounded.
fn trailer_byte(b: u8, line: usize, total: usize, cr: bool) -> Result<State, ParseError> {
    if cr {
        return match b {
            b'\n' if line == 0 => Ok(State::Done),
            b'\n' => Ok(State::Chunked(Chunk::Trailer {
                line: 0,
                total,
                cr: false,
            })),
            _ => Err(ParseError::BadFraming),
        };
    }
    match b {
        b'\r' => Ok(State::Chunked(Chunk::Trailer {
            line,
            total,
            cr: true,
        })),
        b'\n' | 0 => Err(ParseError::BadFraming),
        _ if total + 1 > MAX_TRAILERS => Err(ParseError::BadFraming),
        _ => Ok(State::Chunked(Chunk::Trailer {
            line: line + 1,
            total: total + 1,
            cr: false,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(s: &str) -> Result<Option<(usize, ResponseHead)>, ParseError> {
        try_head(s.as_bytes(), false)
    }

    fn framing(s: &str) -> Result<Framing, ParseError> {
        head(s).map(|h| h.expect("complete head").1.framing)
    }

    fn keep_alive(s: &str) -> bool {
        head(s).unwrap().unwrap().1.keep_alive
    }

    /// Feeds `input` whole; returns (consumed, body, done).
    fn decode(
        framing: Framing,
        limit: usize,
        input: &[u8],
    ) -> Result<(usize, Vec<u8>, bool), ParseError> {
        let mut d = BodyDecoder::new(framing, limit);
        let mut out = Vec::new();
        let n = d.feed(input, &mut out)?;
        Ok((n, out, d.is_done()))
    }

    #[test]
    fn parses_head_fields() {
        let raw = "HTTP/1.1 200 OK\r\nETag: \"ABC\"\r\nX-Oss-Request-Id:  65A3  \r\nx-oss-hash-crc64ecma: 11051210869376104954\r\nContent-Length: 3\r\n\r\nabc";
        let (n, h) = head(raw).unwrap().unwrap();
        assert_eq!(n, raw.len() - 3);
        assert_eq!(h.status, 200);
        assert_eq!(h.framing, Framing::Length(3));
        assert!(h.keep_alive);
        assert_eq!(h.etag(), Some("\"ABC\""));
        assert_eq!(h.request_id(), Some("65A3"));
        assert_eq!(h.crc64(), Some(11051210869376104954));
        assert_eq!(
            h.headers[1],
            ("x-oss-request-id".to_owned(), "65A3".to_owned())
        );
        assert_eq!(h.header("content-length"), Some("3"));
        let h = head("HTTP/1.1 200 OK\r\nx-amz-request-id: R\r\n\r\n")
            .unwrap()
            .unwrap()
            .1;
        assert_eq!(h.request_id(), Some("R"));
        assert_eq!(h.crc64(), None);
    }

    #[test]
    fn non_utf8_values_are_lossy() {
        let h = try_head(
            b"HTTP/1.1 200 OK\r\nX-A: a\xFFb\r\nContent-Length: 0\r\n\r\n",
            false,
        )
        .unwrap()
        .unwrap()
        .1;
        assert_eq!(h.header("x-a"), Some("a\u{FFFD}b"));
    }

    #[test]
    fn incomplete_head_needs_more() {
        assert_eq!(head(""), Ok(None));
        assert_eq!(head("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"), Ok(None));
        assert_eq!(head("HTTP/1.1 2"), Ok(None));
    }

    #[test]
    fn framing_rules() {
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"),
            Ok(Framing::Length(10))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 10, 10\r\ncontent-length: 10\r\n\r\n"),
            Ok(Framing::Length(10))
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"
            ),
            Ok(Framing::Chunked)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"),
            Ok(Framing::Close)
        );
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::Chunked)
        );
        assert_eq!(framing("HTTP/1.1 200 OK\r\n\r\n"), Ok(Framing::Close));
        assert_eq!(
            framing("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"),
            Ok(Framing::None)
        );
        assert_eq!(
            framing("HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Ok(Framing::None)
        );
        assert_eq!(framing("HTTP/1.1 100 Continue\r\n\r\n"), Ok(Framing::None));
        let (_, h) = try_head(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(h.framing, Framing::None);
        assert!(h.keep_alive);
        // Broken Content-Length is ignored where there is no body anyway.
        assert_eq!(
            try_head(b"HTTP/1.1 404 NF\r\nContent-Length: x\r\n\r\n", true)
                .unwrap()
                .unwrap()
                .1
                .framing,
            Framing::None
        );
    }

    #[test]
    fn continue_then_final_head() {
        let raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let (n, h) = try_head(raw, false).unwrap().unwrap();
        assert_eq!((h.status, h.framing), (100, Framing::None));
        let (m, h) = try_head(&raw[n..], false).unwrap().unwrap();
        assert_eq!((h.status, h.framing), (200, Framing::Length(2)));
        assert_eq!(&raw[n + m..], b"ok");
    }

    #[test]
    fn keep_alive_rules() {
        assert!(keep_alive("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!keep_alive(
            "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep_alive(
            "HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep_alive("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(keep_alive(
            "HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!keep_alive("HTTP/1.1 200 OK\r\n\r\n"), "close framing");
        assert!(!keep_alive(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(keep_alive(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(keep_alive("HTTP/1.1 204 No Content\r\n\r\n"));
    }

    #[test]
    fn bad_heads() {
        for raw in [
            "HTTP/1.1 abc OK\r\n\r\n",
            "GARBAGE\r\n\r\n",
            "HTTP/2.0 200 OK\r\n\r\n",
            "HTTP/1.1 099 Low\r\n\r\n",
            "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n",
        ] {
            assert_eq!(head(raw), Err(ParseError::BadHead), "{raw:?}");
        }
    }

    #[test]
    fn bad_content_length() {
        for cl in [
            "abc",
            "-1",
            "+5",
            "5 5",
            "",
            "99999999999999999999999",
            "5, 6",
            "0x10",
        ] {
            let raw = format!("HTTP/1.1 200 OK\r\nContent-Length: {cl}\r\n\r\n");
            assert_eq!(framing(&raw), Err(ParseError::BadFraming), "{cl:?}");
        }
        assert_eq!(
            framing("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"),
            Err(ParseError::BadFraming)
        );
    }

    #[test]
    fn head_too_large() {
        let mut long = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        long.resize(MAX_HEAD - 1, b'a');
        assert_eq!(try_head(&long, false), Ok(None));
        long.push(b'a');
        assert_eq!(try_head(&long, false), Err(ParseError::HeadTooLarge));
        long.extend_from_slice(b"\r\n\r\n");
        assert_eq!(try_head(&long, false), Err(ParseError::HeadTooLarge));
        // A head ending exactly at MAX_HEAD is fine.
        let mut exact = b"HTTP/1.1 200 OK\r\nX-Big: ".to_vec();
        exact.resize(MAX_HEAD - 4, b'a');
        exact.extend_from_slice(b"\r\n\r\n");
        assert_eq!(try_head(&exact, false).unwrap().unwrap().0, MAX_HEAD);

        let mut many = String::from("HTTP/1.1 200 OK\r\n");
        for i in 0..MAX_HEADERS {
            many.push_str(&format!("X-{i}: v\r\n"));
        }
        assert!(head(&format!("{many}\r\n")).unwrap().is_some());
        many.push_str("X-Last: v\r\n\r\n");
        assert_eq!(head(&many), Err(ParseError::HeadTooLarge));
    }

    #[test]
    fn length_body() {
        assert_eq!(
            decode(Framing::Length(3), 10, b"abcdef"),
            Ok((3, b"abc".to_vec(), true))
        );
        assert_eq!(
            decode(Framing::Length(3), 10, b"ab"),
            Ok((2, b"ab".to_vec(), false))
        );
        assert_eq!(decode(Framing::Length(0), 0, b"x"), Ok((0, vec![], true)));
        assert_eq!(decode(Framing::None, 0, b"x"), Ok((0, vec![], true)));
        assert_eq!(
            decode(Framing::Length(11), 10, b""),
            Err(ParseError::BodyTooLarge)
        );
        assert_eq!(
            decode(Framing::Length(u64::MAX), usize::MAX, b"abc"),
            Ok((3, b"abc".to_vec(), false))
        );
        let mut d = BodyDecoder::new(Framing::Length(3), 10);
        d.feed(b"ab", &mut Vec::new()).unwrap();
        assert_eq!(d.eof(), Err(ParseError::BadFraming));
        assert_eq!(
            d.feed(b"c", &mut Vec::new()),
            Err(ParseError::BadFraming),
            "errors are sticky"
        );
        let mut d = BodyDecoder::new(Framing::Length(1), 10);
        d.feed(b"a", &mut Vec::new()).unwrap();
        assert_eq!(d.eof(), Ok(()));
    }

    #[test]
    fn close_body() {
        let mut d = BodyDecoder::new(Framing::Close, 5);
        let mut out = Vec::new();
        assert_eq!(d.feed(b"abc", &mut out), Ok(3));
        assert_eq!(d.feed(b"de", &mut out), Ok(2));
        assert!(!d.is_done());
        assert_eq!(d.eof(), Ok(()));
        assert!(d.is_done());
        assert_eq!(out, b"abcde");
        assert_eq!(
            decode(Framing::Close, 5, b"abcdef"),
            Err(ParseError::BodyTooLarge)
        );
    }

    #[test]
    fn chunked_body() {
        let raw = b"3\r\nabc\r\nA;name=value;x\r\n0123456789\r\n0\r\nX-Trailer: t\r\nX-Other: u\r\n\r\nNEXT";
        assert_eq!(
            decode(Framing::Chunked, 100, raw),
            Ok((raw.len() - 4, b"abc0123456789".to_vec(), true))
        );
        assert_eq!(
            decode(Framing::Chunked, 100, b"0\r\n\r\n"),
            Ok((5, vec![], true))
        );
        assert_eq!(
            decode(Framing::Chunked, 100, b"003 \t;ext\r\nabc\r\n0\r\n\r\n")
                .unwrap()
                .1,
            b"abc"
        );
        assert_eq!(
            decode(Framing::Chunked, 100, b"3\r\nabc\r\n0\r\n"),
            Ok((11, b"abc".to_vec(), false))
        );
        let mut d = BodyDecoder::new(Framing::Chunked, 100);
        d.feed(b"3\r\nab", &mut Vec::new()).unwrap();
        assert_eq!(d.eof(), Err(ParseError::BadFraming));
    }

    #[test]
    fn chunked_errors() {
        let bad: &[&[u8]] = &[
            b"\r\n",
            b"g\r\n",
            b";ext\r\n",
            b"3\nabc\r\n",
            b"3\r\nabcX\r\n",
            b"3\r\nabc\rX",
            b"3 x\r\n",
            b"3;a\nb\r\n",
            b"0\r\nX: y\n\r\n",
            b"0\r\nX: y\rz",
            b"0\r\n\rX",
            b"10000000000000000\r\n",
        ];
        for raw in bad {
            assert_eq!(
                decode(Framing::Chunked, 1 << 20, raw),
                Err(ParseError::BadFraming),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let long_ext = [b"1;".as_slice(), &vec![b'x'; MAX_CHUNK_LINE]].concat();
        assert_eq!(
            decode(Framing::Chunked, 100, &long_ext),
            Err(ParseError::BadFraming)
        );
        let long_zeros = vec![b'0'; MAX_CHUNK_LINE + 1];
        assert_eq!(
            decode(Framing::Chunked, 100, &long_zeros),
            Err(ParseError::BadFraming)
        );
        let long_trailer = [b"0\r\nX: ".as_slice(), &vec![b'y'; MAX_TRAILERS]].concat();
        assert_eq!(
            decode(Framing::Chunked, 100, &long_trailer),
            Err(ParseError::BadFraming)
        );
        // Largest representable size is accepted as a size (then refused by the limit).
        assert_eq!(
            decode(Framing::Chunked, 100, b"ffffffffffffffff\r\n"),
            Err(ParseError::BodyTooLarge)
        );
        assert_eq!(
            decode(Framing::Chunked, 5, b"3\r\nabc\r\n3\r\n"),
            Err(ParseError::BodyTooLarge)
        );
        assert_eq!(
            decode(Framing::Chunked, 6, b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
                .unwrap()
                .1,
            b"abcdef"
        );
    }

    /// A whole response, for the split property.
    #[derive(Debug, Clone)]
    struct Msg {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        framing: u8,
        /// Chunk boundaries (chunked framing).
        cuts: Vec<usize>,
        trailer: bool,
    }

    impl Msg {
        fn bytes(&self) -> Vec<u8> {
            let mut v = format!("HTTP/1.1 {} Whatever\r\n", self.status).into_bytes();
            for (k, val) in &self.headers {
                v.extend_from_slice(format!("{k}: {val}\r\n").as_bytes());
            }
            match self.framing {
                0 => v.extend_from_slice(
                    format!("Content-Length: {}\r\n\r\n", self.body.len()).as_bytes(),
                ),
                1 => v.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
                _ => v.extend_from_slice(b"Connection: close\r\n\r\n"),
            }
            if self.framing == 1 {
                let mut cuts: Vec<usize> = self
                    .cuts
                    .iter()
                    .map(|c| c % (self.body.len() + 1))
                    .collect();
                cuts.push(0);
                cuts.push(self.body.len());
                cuts.sort_unstable();
                cuts.dedup();
                for w in cuts.windows(2) {
                    let piece = &self.body[w[0]..w[1]];
                    v.extend_from_slice(format!("{:x};e=1\r\n", piece.len()).as_bytes());
                    v.extend_from_slice(piece);
                    v.extend_from_slice(b"\r\n");
                }
                v.extend_from_slice(if self.trailer {
                    b"0\r\nX-T: 1\r\n\r\n".as_slice()
                } else {
                    b"0\r\n\r\n"
                });
            } else {
                v.extend_from_slice(&self.body);
            }
            v
        }
    }

    fn msg() -> impl Strategy<Value = Msg> {
        (
            prop_oneof![Just(200u16), Just(206), Just(404), Just(503)],
            proptest::collection::vec(("[A-Za-z][A-Za-z0-9-]{0,12}", "[ -~]{0,30}"), 0..6),
            proptest::collection::vec(any::<u8>(), 0..400),
            0u8..3,
            proptest::collection::vec(any::<usize>(), 0..6),
            any::<bool>(),
        )
            .prop_map(|(status, headers, body, framing, cuts, trailer)| {
                // Avoid generated names colliding with the framing headers.
                let headers = headers
                    .into_iter()
                    .map(|(k, v)| (format!("X-{k}"), v))
                    .collect();
                Msg {
                    status,
                    headers,
                    body,
                    framing,
                    cuts,
                    trailer,
                }
            })
    }

    /// Parses `pieces` in order, as a connection would deliver them. Returns the head, the
    /// body, and how many bytes of the message were consumed in total.
    fn parse_pieces(
        pieces: &[&[u8]],
        close_at_end: bool,
    ) -> Result<(ResponseHead, Vec<u8>, usize), ParseError> {
        let mut buf = Vec::new();
        let mut got: Option<(ResponseHead, BodyDecoder)> = None;
        let mut body = Vec::new();
        let mut consumed = 0;
        for piece in pieces {
            let input: Vec<u8> = match &got {
                None => {
                    buf.extend_from_slice(piece);
                    let Some((n, h)) = try_head(&buf, false)? else {
                        continue;
                    };
                    consumed += n;
                    let rest = buf[n..].to_vec();
                    got = Some((h.clone(), BodyDecoder::new(h.framing, 1 << 20)));
                    rest
                }
                Some(_) => piece.to_vec(),
            };
            let (_, dec) = got.as_mut().unwrap();
            consumed += dec.feed(&input, &mut body)?;
        }
        let (h, mut dec) = got.ok_or(ParseError::BadHead)?;
        if close_at_end {
            dec.eof()?;
        }
        assert!(dec.is_done());
        Ok((h, body, consumed))
    }

    fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();
        cuts.windows(2).map(|w| &bytes[w[0]..w[1]]).collect()
    }

    proptest! {
        #[test]
        fn split_does_not_matter(m in msg(), cuts in proptest::collection::vec(any::<usize>(), 0..40), every_byte in any::<bool>()) {
            let mut bytes = m.bytes();
            let msg_len = bytes.len();
            let close = m.framing == 2;
            if !close {
                // Bytes of a pipelined next response must be left alone.
                bytes.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            }
            let whole = parse_pieces(&[&bytes], close).unwrap();
            let pieces: Vec<&[u8]> = if every_byte { bytes.chunks(1).collect() } else { split(&bytes, &cuts) };
            let pieced = parse_pieces(&pieces, close).unwrap();
            prop_assert_eq!(&whole.0, &pieced.0);
            prop_assert_eq!(&whole.1, &pieced.1);
            prop_assert_eq!(whole.2, pieced.2);
            prop_assert_eq!(whole.2, msg_len);
            prop_assert_eq!(&whole.1, &m.body);
            prop_assert_eq!(whole.0.status, m.status);
            prop_assert_eq!(whole.0.keep_alive, !close);
            let expected_framing = match m.framing { 0 => Framing::Length(m.body.len() as u64), 1 => Framing::Chunked, _ => Framing::Close };
            prop_assert_eq!(whole.0.framing, expected_framing);
            for (k, v) in &m.headers {
                let name = k.to_ascii_lowercase();
                prop_assert!(whole.0.headers.iter().any(|(n, val)| *n == name && val == v.trim()));
            }
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), head_request in any::<bool>()) {
            let _ = try_head(&bytes, head_request);
            let mut with_head = b"HTTP/1.1 200 OK\r\n".to_vec();
            with_head.extend_from_slice(&bytes);
            let _ = try_head(&with_head, head_request);
            for framing in [Framing::Chunked, Framing::Close, Framing::Length(300), Framing::None] {
                let mut d = BodyDecoder::new(framing, 256);
                let mut out = Vec::new();
                for piece in bytes.chunks(7) {
                    let _ = d.feed(piece, &mut out);
                }
                let _ = d.eof();
                prop_assert!(out.len() <= 256);
            }
        }

        #[test]
        fn random_chunk_syntax_never_panics(s in "[0-9a-fA-F;= \r\nxX]{0,200}", limit in 0usize..64) {
            let mut d = BodyDecoder::new(Framing::Chunked, limit);
            let mut out = Vec::new();
            let _ = d.feed(s.as_bytes(), &mut out);
            prop_assert!(out.len() <= limit);
        }
    }
}

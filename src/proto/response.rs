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
    pub fn etag(&self) -> Option<&str> {
        self.header("etag")
    }

    /// `x-oss-request-id`, else `x-amz-request-id`.
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-oss-request-id")
            .or_else(|| self.header("x-amz-request-id"))
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
        .last()
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

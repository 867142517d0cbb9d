//! The HTTP/1.1 server side of `ossup serve`: request heads (via `httparse`), request body
//! framing (Content-Length and chunked, streamed, never buffered whole), `100 Continue`, and
//! response writing.
//!
//! Owns: one connection's bytes. Must not: know about buckets, signatures or the store.

use std::fs::File;
use std::io::{self, Read, Write};

/// Largest request head accepted.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Most headers accepted in one request.
pub(crate) const MAX_HEADERS: usize = 64;
/// Connection read buffer (a head always fits; body bytes pass through it).
const BUF: usize = 64 * 1024;
/// Longest chunk-size or trailer line accepted in a chunked body.
const MAX_LINE: usize = 4096;
/// Most trailer bytes accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;

/// A byte stream a connection runs over (plain TCP or TLS).
pub(crate) trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// One client connection with its read buffer.
pub(crate) struct Conn {
    s: Box<dyn Stream>,
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

/// Why no request head could be read.
#[derive(Debug)]
pub(crate) enum HeadError {
    /// The connection failed or closed mid-head: close without answering.
    Io,
    /// The head is not valid HTTP/1.x: answer 400 and close.
    Bad(&'static str),
    /// The head is larger than [`MAX_HEAD`] or has more than [`MAX_HEADERS`] headers.
    TooLarge,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub(crate) struct ReqHead {
    /// Method as sent (upper-case in practice).
    pub method: String,
    /// Request target as sent (`/bucket/key?query`).
    pub target: String,
    /// HTTP/1.0 (keep-alive only when asked for).
    pub http10: bool,
    /// Headers, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
}

impl ReqHead {
    /// First value of header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client wants the connection kept open after this exchange.
    pub(crate) fn keep_alive(&self) -> bool {
        let conn = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |t: &str| conn.split(',').any(|x| x.trim() == t);
        if self.http10 {
            has("keep-alive")
        } else {
            !has("close")
        }
    }

    /// Whether the client sent `Expect: 100-continue`.
    pub(crate) fn expects_continue(&self) -> bool {
        self.header("expect")
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"))
    }

    /// The body framing the head announces.
    pub(crate) fn framing(&self) -> Result<Framing, FramingError> {
        let mut te = None;
        let mut cl: Option<u64> = None;
        for (n, v) in &self.headers {
            if n.eq_ignore_ascii_case("transfer-encoding") {
                if te.is_some() {
                    return Err(FramingError::Bad);
                }
                te = Some(v.trim().to_ascii_lowercase());
            } else if n.eq_ignore_ascii_case("content-length") {
                let v = v.trim();
                if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(FramingError::Bad);
                }
                let n: u64 = v.parse().map_err(|_| FramingError::Bad)?;
                if cl.is_some_and(|c| c != n) {
                    return Err(FramingError::Bad);
                }
                cl = Some(n);
            }
        }
        match (te, cl) {
            (Some(_), Some(_)) => Err(FramingError::Bad),
            (Some(t), None) if t == "chunked" => Ok(Framing::Chunked),
            (Some(_), None) => Err(FramingError::Unsupported),
            (None, Some(n)) => Ok(Framing::Length(n)),
            (None, None) => Ok(Framing::Length(0)),
        }
    }
}

/// How a request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// Why the framing headers are unacceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FramingError {
    /// Invalid or conflicting Content-Length / Transfer-Encoding: 400.
    Bad,
    /// A transfer coding other than chunked: 501.
    Unsupported,
}

impl Conn {
    /// Wraps a stream.
    pub(crate) fn new(s: Box<dyn Stream>) -> Conn {
        Conn {
            s,
            buf: vec![0; BUF],
            start: 0,
            end: 0,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes into the buffer; `Ok(0)` at end of stream.
    fn fill(&mut self) -> io::Result<usize> {
        if self.end == self.buf.len() {
            if self.start == 0 {
                return Err(io::Error::other("buffer full"));
            }
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.s.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads the next request head. `Ok(None)`: the client closed the connection cleanly
    /// between requests.
    pub(crate) fn read_head(&mut self) -> Result<Option<ReqHead>, HeadError> {
        loop {
            // Tolerate stray CRLFs between requests (RFC 9112 §2.2).
            let skip = self
                .buffered()
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            self.consume(skip);
            if !self.buffered().is_empty() {
                let mut hs = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut hs);
                let avail = self.buffered().len().min(MAX_HEAD);
                match req.parse(&self.buf[self.start..self.start + avail]) {
                    Ok(httparse::Status::Complete(n)) => {
                        let head = to_head(&req)?;
                        self.consume(n);
                        return Ok(Some(head));
                    }
                    Ok(httparse::Status::Partial) => {
                        if avail >= MAX_HEAD {
                            return Err(HeadError::TooLarge);
                        }
                    }
                    Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
                    Err(_) => return Err(HeadError::Bad("malformed request head")),
                }
            }
            let was_empty = self.buffered().is_empty();
            match self.fill() {
                Ok(0) if was_empty => return Ok(None),
                Ok(0) => return Err(HeadError::Io),
                Ok(_) => {}
                Err(_) => return Err(HeadError::Io),
            }
        }
    }

    /// Reads one CRLF- (or LF-) terminated line of at most [`MAX_LINE`] bytes, without the
    /// terminator.
    fn read_line(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(i) = self.buffered().iter().position(|&b| b == b'\n') {
                if i > MAX_LINE {
                    return Err(bad_data("line too long"));
                }
                let mut line = self.buffered()[..i].to_vec();
                self.consume(i + 1);
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buffered().len() > MAX_LINE {
                return Err(bad_data("line too long"));
            }
            if self.fill()? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Reads raw bytes (buffered first, then from the stream) into `out`; `Ok(0)` at EOF.
    fn read_raw(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if !self.buffered().is_empty() {
            let n = self.buffered().len().min(out.len());
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.consume(n);
            return Ok(n);
        }
        loop {
            match self.s.read(out) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => return r,
            }
        }
    }

    /// Writes all of `data` (not flushed).
    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        self.s.write_all(data)
    }

    /// Flushes the stream.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.s.flush()
    }
}

fn bad_data(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn to_head(req: &httparse::Request<'_, '_>) -> Result<ReqHead, HeadError> {
    let method = req.method.ok_or(HeadError::Bad("no method"))?.to_string();
    let target = req.path.ok_or(HeadError::Bad("no target"))?.to_string();
    let http10 = req.version == Some(0);
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let v = std::str::from_utf8(h.value)
            .map_err(|_| HeadError::Bad("header value is not UTF-8"))?;
        headers.push((h.name.to_string(), v.trim().to_string()));
    }
    Ok(ReqHead {
        method,
        target,
        http10,
        headers,
    })
}

/// Where a body read stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// Content-Length body with this many bytes left.
    Length(u64),
    /// Chunked: expecting a chunk-size line.
    ChunkSize,
    /// Chunked: inside a chunk with this many bytes left.
    ChunkData(u64),
    /// The whole body has been read.
    Done,
}

/// One request/response exchange on a connection: the head, and the body as a stream.
pub(crate) struct Exchange<'c> {
    conn: &'c mut Conn,
    /// The request head.
    pub head: ReqHead,
    state: BodyState,
    expect_continue: bool,
    continue_sent: bool,
    /// Body bytes read so far.
    pub received: u64,
}

impl<'c> Exchange<'c> {
    /// Starts an exchange for `head` whose body is framed by `framing`.
    pub(crate) fn new(conn: &'c mut Conn, head: ReqHead, framing: Framing) -> Exchange<'c> {
        let state = match framing {
            Framing::Length(0) => BodyState::Done,
            Framing::Length(n) => BodyState::Length(n),
            Framing::Chunked => BodyState::ChunkSize,
        };
        let expect_continue = head.expects_continue() && !head.http10;
        Exchange {
            conn,
            head,
            state,
            expect_continue,
            continue_sent: false,
            received: 0,
        }
    }

    /// The announced body length, if known (`None` for chunked).
    pub(crate) fn content_length(&self) -> Option<u64> {
        match self.state {
            BodyState::Length(n) => Some(n + self.received),
            BodyState::Done if self.received == 0 => Some(0),
            _ => None,
        }
    }

    /// True once the whole body has been read.
    pub(crate) fn body_done(&self) -> bool {
        self.state == BodyState::Done
    }

    /// True if the client waits for `100 Continue` that has not been sent yet (the body
    /// will not arrive unless we ask for it).
    pub(crate) fn awaiting_continue(&self) -> bool {
        self.expect_continue && !self.continue_sent && !self.body_done()
    }

    /// Reads decoded body bytes into `out`; `Ok(0)` at the end of the body. Sends
    /// `100 Continue` first if the client asked for it.
    pub(crate) fn read_body(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.body_done() || out.is_empty() {
            return Ok(0);
        }
        if self.expect_continue && !self.continue_sent {
            self.continue_sent = true;
            self.conn.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
            self.conn.flush()?;
        }
        loop {
            match self.state {
                BodyState::Done => return Ok(0),
                BodyState::Length(left) | BodyState::ChunkData(left) => {
                    let want = out.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.conn.read_raw(&mut out[..want])?;
                    if n == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    let left = left - n as u64;
                    self.state = match self.state {
                        BodyState::Length(_) if left == 0 => BodyState::Done,
                        BodyState::Length(_) => BodyState::Length(left),
                        _ if left == 0 => {
                            let crlf = self.conn.read_line()?;
                            if !crlf.is_empty() {
                                return Err(bad_data("chunk not followed by CRLF"));
                            }
                            BodyState::ChunkSize
                        }
                        _ => BodyState::ChunkData(left),
                    };
                    self.received += n as u64;
                    return Ok(n);
                }
                BodyState::ChunkSize => {
                    let line = self.conn.read_line()?;
                    let size = parse_chunk_size(&line)?;
                    if size == 0 {
                        let mut total = 0usize;
                        loop {
                            let t = self.conn.read_line()?;
                            if t.is_empty() {
                                break;
                            }
                            total += t.len();
                            if total > MAX_TRAILERS {
                                return Err(bad_data("trailers too large"));
                            }
                        }
                        self.state = BodyState::Done;
                        return Ok(0);
                    }
                    self.state = BodyState::ChunkData(size);
                }
            }
        }
    }

    /// Reads and discards at most `limit` more body bytes; true if the body is then complete.
    pub(crate) fn drain(&mut self, limit: u64) -> bool {
        if self.awaiting_continue() {
            return false;
        }
        let mut buf = vec![0u8; 16 * 1024];
        let mut n = 0u64;
        while !self.body_done() {
            if n >= limit {
                return false;
            }
            match self.read_body(&mut buf) {
                Ok(0) if self.body_done() => break,
                Ok(0) => return false,
                Ok(k) => n += k as u64,
                Err(_) => return false,
            }
        }
        true
    }

    /// Writes `resp`; `keep_alive` decides the `Connection` header.
    pub(crate) fn respond(&mut self, resp: Response, keep_alive: bool) -> io::Result<()> {
        write_response(self.conn, resp, keep_alive, self.head.method == "HEAD")
    }
}

fn parse_chunk_size(line: &[u8]) -> io::Result<u64> {
    let end = line.iter().position(|&b| b == b';').unwrap_or(line.len());
    let hex = trim_ascii(&line[..end]);
    if hex.is_empty() || hex.len() > 15 {
        return Err(bad_data("bad chunk size"));
    }
    let mut v = 0u64;
    for &b in hex {
        let d = (b as char)
            .to_digit(16)
            .ok_or_else(|| bad_data("bad chunk size"))?;
        v = (v << 4) | d as u64;
    }
    Ok(v)
}

fn trim_ascii(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// A response body.
pub(crate) enum Body {
    /// No body (and `Content-Length: 0`).
    Empty,
    /// These bytes.
    Bytes(Vec<u8>),
    /// `len` bytes read from `file` (already positioned).
    File(File, u64),
    /// `Content-Length` of this value but no body bytes (HEAD).
    LengthOnly(u64),
}

/// A response to write.
pub(crate) struct Response {
    /// Status code.
    pub status: u16,
    /// Headers besides Content-Length and Connection.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with no headers and no body.
    pub(crate) fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// Adds a header.
    pub(crate) fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body.
    pub(crate) fn body(mut self, body: Body) -> Response {
        self.body = body;
        self
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        206 => "Partial Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        411 => "Length Required",
        416 => "Range Not Satisfiable",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Writes `resp` to `conn`. `head_request` suppresses body bytes.
pub(crate) fn write_response(
    conn: &mut Conn,
    resp: Response,
    keep_alive: bool,
    head_request: bool,
) -> io::Result<()> {
    use std::fmt::Write as _;
    let mut head = String::with_capacity(512);
    let _ = write!(head, "HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (n, v) in &resp.headers {
        let _ = write!(head, "{n}: {v}\r\n");
    }
    let len = match &resp.body {
        Body::Empty => 0,
        Body::Bytes(b) => b.len() as u64,
        Body::File(_, n) | Body::LengthOnly(n) => *n,
    };
    let _ = write!(head, "Content-Length: {len}\r\n");
    head.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    match resp.body {
        Body::Bytes(b) if !head_request => {
            let mut all = head.into_bytes();
            all.extend_from_slice(&b);
            conn.write_all(&all)?;
        }
        Body::File(mut f, n) if !head_request => {
            conn.write_all(head.as_bytes())?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut left = n;
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let k = f.read(&mut buf[..want])?;
                if k == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "object file shrank",
                    ));
                }
                conn.write_all(&buf[..k])?;
                left -= k as u64;
            }
        }
        _ => conn.write_all(head.as_bytes())?,
    }
    conn.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A stream that reads from a script (in small pieces) and records writes.
    struct Script {
        input: Cursor<Vec<u8>>,
        piece: usize,
        out: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    }
    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.piece);
            self.input.read(&mut buf[..n])
        }
    }
    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.out.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn conn(input: &[u8], piece: usize) -> (Conn, std::sync::Arc<std::sync::Mutex<Vec<u8>>>) {
        let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let s = Script {
            input: Cursor::new(input.to_vec()),
            piece,
            out: out.clone(),
        };
        (Conn::new(Box::new(s)), out)
    }

    fn read_all(ex: &mut Exchange<'_>) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        let mut b = [0u8; 7];
        loop {
            let n = ex.read_body(&mut b)?;
            if n == 0 {
                return Ok(v);
            }
            v.extend_from_slice(&b[..n]);
        }
    }

    #[test]
    fn two_requests_with_length_and_chunked_bodies() {
        let input = b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloPOST /b/k?uploads HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\n";
        for piece in [1, 3, 1000] {
            let (mut c, _) = conn(input, piece);
            let h = c.read_head().unwrap().unwrap();
            assert_eq!((h.method.as_str(), h.target.as_str()), ("PUT", "/b/k"));
            let f = h.framing().unwrap();
            assert_eq!(f, Framing::Length(5));
            let mut ex = Exchange::new(&mut c, h, f);
            assert_eq!(read_all(&mut ex).unwrap(), b"hello");
            assert!(ex.body_done());
            let h = c.read_head().unwrap().unwrap();
            assert_eq!(h.target, "/b/k?uploads");
            let f = h.framing().unwrap();
            assert_eq!(f, Framing::Chunked);
            let mut ex = Exchange::new(&mut c, h, f);
            assert_eq!(read_all(&mut ex).unwrap(), b"abc0123456789abcdef");
            assert_eq!(ex.received, 19);
            assert!(c.read_head().unwrap().is_none());
        }
    }

    #[test]
    fn bad_framing_and_heads() {
        let (mut c, _) = conn(
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            100,
        );
        assert_eq!(
            c.read_head().unwrap().unwrap().framing(),
            Err(FramingError::Bad)
        );
        let (mut c, _) = conn(b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 100);
        assert_eq!(
            c.read_head().unwrap().unwrap().framing(),
            Err(FramingError::Bad)
        );
        let (mut c, _) = conn(b"GET / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 100);
        assert_eq!(
            c.read_head().unwrap().unwrap().framing(),
            Err(FramingError::Unsupported)
        );
        let (mut c, _) = conn(b"\x01\x02 garbage\r\n\r\n", 100);
        assert!(matches!(c.read_head(), Err(HeadError::Bad(_))));
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        let (mut c, _) = conn(&big, 4096);
        assert!(matches!(c.read_head(), Err(HeadError::TooLarge)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let (mut c, _) = conn(&many, 4096);
        assert!(matches!(c.read_head(), Err(HeadError::TooLarge)));
        let (mut c, _) = conn(b"GET / HT", 100);
        assert!(matches!(c.read_head(), Err(HeadError::Io)));
    }

    #[test]
    fn truncated_and_bad_chunks_fail() {
        for input in [
            &b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc"[..],
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            b"PUT / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab",
        ] {
            let (mut c, _) = conn(input, 2);
            let h = c.read_head().unwrap().unwrap();
            let f = h.framing().unwrap();
            let mut ex = Exchange::new(&mut c, h, f);
            assert!(read_all(&mut ex).is_err());
        }
    }

    #[test]
    fn expect_continue_is_sent_once_before_body() {
        let (mut c, out) = conn(
            b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
            100,
        );
        let h = c.read_head().unwrap().unwrap();
        let f = h.framing().unwrap();
        let mut ex = Exchange::new(&mut c, h, f);
        assert!(ex.awaiting_continue());
        assert!(!ex.drain(100));
        assert!(out.lock().unwrap().is_empty());
        assert_eq!(read_all(&mut ex).unwrap(), b"abc");
        assert_eq!(
            out.lock().unwrap().as_slice(),
            b"HTTP/1.1 100 Continue\r\n\r\n"
        );
        ex.respond(Response::new(200).body(Body::Bytes(b"ok".to_vec())), true)
            .unwrap();
        let o = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert!(
            o.ends_with("Content-Length: 2\r\nConnection: keep-alive\r\n\r\nok"),
            "{o}"
        );
    }

    #[test]
    fn keep_alive_rules() {
        let mk = |v: &str, h10| ReqHead {
            method: "GET".into(),
            target: "/".into(),
            http10: h10,
            headers: vec![("Connection".into(), v.into())],
        };
        assert!(mk("", false).keep_alive());
        assert!(!mk("Close", false).keep_alive());
        assert!(!mk("", true).keep_alive());
        assert!(mk("keep-alive", true).keep_alive());
    }
}

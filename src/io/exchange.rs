//! One request/response exchange on an open [`Conn`].
//!
//! Owns: writing a rendered request head, streaming the body (a file range read with `pread`
//! through the caller's buffer, checksummed with CRC-64 on the way and paced by the optional
//! rate limiter), then reading the response head and a bounded body with `proto::response`.
//! Must not: retry, touch the journal, sign or render, or allocate per body chunk. It returns a
//! [`Failure`] and the caller drops the connection; whether to reuse the connection after a
//! success is the caller's call too ([`Response::reusable`] says whether it can be).
//!
//! Buffer use: the caller renders the head into `buf[..head_len]`; once the head is written the
//! whole buffer is free and is reused for the body chunks and then for reading the response.
//! The only allocations are the response's header strings and its (bounded) body.
//!
//! Early answers: a server may reject a request (403, 400, ...) and close the connection while
//! the body is still being sent, which makes our write fail. In that case we still try, briefly,
//! to read the response the server sent, and report it if it is an error status (best effort:
//! after a TCP reset the kernel may already have discarded it, and then the write's failure is
//! reported). `Expect: 100-continue` is not used, so interim 1xx responses are skipped, at most
//! [`retry::MAX_INTERIM`] of them.
//!
//! Deadlines: besides the idle timeout on every read and write, each phase has a total
//! deadline derived from its size at [`retry::DEADLINE_RATE`] (see
//! [`retry::transfer_deadline_ms`]): the request (head and body; time spent waiting for the
//! rate limiter is not counted), the response head (the wait for the first byte plus
//! [`response::MAX_HEAD`] bytes), and the response body (its `Content-Length`, else the body
//! limit). A peer that trickles bytes slower than that gets [`Failure::TimedOut`].

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_io::Timer;

use super::conn::Conn;
use super::source::Source;
use crate::proto::rate::TokenBucket;
use crate::proto::response::{self, BodyDecoder, ParseError, ResponseHead};
use crate::proto::retry::{self, Failure};

/// The body of a request.
#[derive(Debug, Clone, Copy)]
pub enum BodySource<'a> {
    /// No body.
    None,
    /// A small in-memory body (the Complete XML).
    Bytes(&'a [u8]),
    /// `len` bytes of `source` starting at `offset`, streamed through the exchange buffer.
    File {
        /// The open file.
        source: &'a Source,
        /// First byte.
        offset: u64,
        /// Byte count.
        len: u64,
    },
}

/// A complete response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status and headers.
    pub head: ResponseHead,
    /// The decoded body (at most [`ExchangeOpts::max_body`] bytes).
    pub body: Vec<u8>,
}

impl Response {
    /// True if the connection may carry another request: the server allows keep-alive and the
    /// exchange ended cleanly on a message boundary (this module clears `head.keep_alive`
    /// otherwise).
    pub fn reusable(&self) -> bool {
        self.head.keep_alive
    }
}

/// Milliseconds on a monotonic clock (since the first call in this process). The default clock
/// for the rate limiter.
pub fn monotonic_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// How to run one exchange.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeOpts<'a> {
    /// Longest wait for any single read or write to make progress.
    pub idle: Duration,
    /// Largest response body accepted (responses are XML documents of a few KiB).
    pub max_body: usize,
    /// The request is a `HEAD`: the response has no body whatever its headers say.
    pub head_request: bool,
    /// Bandwidth cap shared by every connection on this thread, if any.
    pub limiter: Option<&'a RefCell<TokenBucket>>,
    /// Monotonic clock in milliseconds for the limiter (normally [`monotonic_ms`]).
    pub now_ms: fn() -> u64,
}

impl ExchangeOpts<'_> {
    /// Options with the given idle timeout, a 1 MiB body limit, no limiter and the monotonic
    /// clock.
    pub fn new(idle: Duration) -> ExchangeOpts<'static> {
        ExchangeOpts {
            idle,
            max_body: 1 << 20,
            head_request: false,
            limiter: None,
            now_ms: monotonic_ms,
        }
    }
}

/// A total deadline for one phase of an exchange; waits are cut to what is left of it.
struct Deadline {
    at: Instant,
}

impl Deadline {
    fn after(ms: u64) -> Deadline {
        let now = Instant::now();
        Deadline {
            at: now
                .checked_add(Duration::from_millis(ms))
                .unwrap_or(now + Duration::from_secs(86_400 * 365)),
        }
    }

    /// Moves the deadline later by `d` (time the exchange chose to wait, e.g. for pacing).
    fn extend(&mut self, d: Duration) {
        self.at = self.at.checked_add(d).unwrap_or(self.at);
    }

    /// `idle`, cut to the time left; [`Failure::TimedOut`] when none is.
    fn wait(&self, idle: Duration) -> Result<Duration, Failure> {
        let left = self.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            log::debug!("exchange deadline passed (peer slower than the minimum rate)");
            return Err(Failure::TimedOut);
        }
        Ok(idle.min(left))
    }
}

/// Maps a response parse error to a [`Failure`].
fn parse_failure(e: ParseError) -> Failure {
    log::debug!("bad response: {e:?}");
    Failure::Malformed
}

/// Sends the request whose head is `buf[..head_len]` with `body`, then reads the response.
/// Returns the response and the CRC-64 of the body bytes sent (0 for no body).
///
/// `progress(n)` is called after each chunk of a file body is written, with the chunk's size
/// (in-memory bodies are not reported). With a limiter, each chunk first reserves its bytes and
/// sleeps as long as the bucket says (an in-memory body is paced as one chunk).
///
/// Failures: the connection's own ([`Failure::Reset`], [`Failure::TimedOut`], TLS);
/// [`Failure::LocalRead`] if the file cannot be read or ends before the range does;
/// [`Failure::Reset`] if the server closes before a complete response head or body;
/// [`Failure::Malformed`] if the response is not acceptable HTTP or its body is over the limit.
/// A failed exchange leaves the connection in an unknown state: drop it.
pub async fn exchange(
    conn: &mut Conn,
    buf: &mut [u8],
    head_len: usize,
    body: BodySource<'_>,
    opts: &ExchangeOpts<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<(Response, u64), Failure> {
    if head_len > buf.len() || buf.is_empty() {
        return Err(Failure::Malformed);
    }
    let sent = send(conn, buf, head_len, body, opts, progress).await;
    match sent {
        Ok(crc) => {
            // The body may still be draining through buffers on a slow link: the first answer
            // byte gets the extra time the core allows for that.
            let ms = retry::response_wait_ms(opts.idle.as_millis() as u64, body_len(&body));
            let head_wait = Duration::from_millis(ms);
            Ok((read_response(conn, buf, opts, head_wait).await?, crc))
        }
        Err(f @ (Failure::Reset | Failure::Tls)) => {
            // The server may have answered early and closed; see the module docs.
            let quick = ExchangeOpts {
                idle: opts.idle.min(Duration::from_secs(2)),
                ..*opts
            };
            match read_response(conn, buf, &quick, quick.idle).await {
                Ok(mut r) if r.head.status >= 300 => {
                    log::debug!("server answered {} before the body was sent", r.head.status);
                    r.head.keep_alive = false;
                    Ok((r, 0))
                }
                _ => Err(f),
            }
        }
        Err(f) => Err(f),
    }
}

/// Bytes in a request body.
fn body_len(body: &BodySource<'_>) -> u64 {
    match body {
        BodySource::None => 0,
        BodySource::Bytes(b) => b.len() as u64,
        BodySource::File { len, .. } => *len,
    }
}

/// Writes the head and the body; returns the body's CRC-64.
async fn send(
    conn: &mut Conn,
    buf: &mut [u8],
    head_len: usize,
    body: BodySource<'_>,
    opts: &ExchangeOpts<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<u64, Failure> {
    let total = head_len as u64 + body_len(&body);
    let mut deadline = Deadline::after(retry::transfer_deadline_ms(
        opts.idle.as_millis() as u64,
        total,
    ));
    let idle = opts.idle;
    match body {
        BodySource::None => {
            conn.write_all(&buf[..head_len], deadline.wait(idle)?)
                .await?;
            conn.flush(deadline.wait(idle)?).await?;
            Ok(0)
        }
        BodySource::Bytes(bytes) => {
            // Head and a small body in one write when they fit: one TLS record, one segment.
            let crc = crate::proto::crc64::update(0, bytes);
            deadline.extend(pace(opts, bytes.len() as u64).await);
            if head_len + bytes.len() <= buf.len() {
                buf[head_len..head_len + bytes.len()].copy_from_slice(bytes);
                conn.write_all(&buf[..head_len + bytes.len()], deadline.wait(idle)?)
                    .await?;
            } else {
                conn.write_all(&buf[..head_len], deadline.wait(idle)?)
                    .await?;
                conn.write_all(bytes, deadline.wait(idle)?).await?;
            }
            conn.flush(deadline.wait(idle)?).await?;
            Ok(crc)
        }
        BodySource::File {
            source,
            offset,
            len,
        } => {
            conn.write_all(&buf[..head_len], deadline.wait(idle)?)
                .await?;
            let mut crc = crate::proto::crc64::Hasher::new();
            let mut done = 0u64;
            while done < len {
                let want = usize::try_from(len - done)
                    .unwrap_or(usize::MAX)
                    .min(buf.len());
                let pos = offset.checked_add(done).ok_or(Failure::LocalRead)?;
                let got = source.read_at(&mut buf[..want], pos).map_err(|e| {
                    log::debug!("reading {} at {pos}: {e}", source.path().display());
                    Failure::LocalRead
                })?;
                if got < want {
                    log::debug!(
                        "{} ended at {} (truncated?)",
                        source.path().display(),
                        pos + got as u64
                    );
                    return Err(Failure::LocalRead);
                }
                let chunk = &buf[..got];
                crc.write(chunk);
                deadline.extend(pace(opts, got as u64).await);
                conn.write_all(chunk, deadline.wait(idle)?).await?;
                done += got as u64;
                progress(got as u64);
            }
            conn.flush(deadline.wait(idle)?).await?;
            Ok(crc.sum())
        }
    }
}

/// Waits as long as the limiter asks before sending `n` bytes; returns how long that was.
async fn pace(opts: &ExchangeOpts<'_>, n: u64) -> Duration {
    if let Some(limiter) = opts.limiter {
        let wait = limiter.borrow_mut().take(n, (opts.now_ms)());
        if wait > 0 {
            let d = Duration::from_millis(wait);
            Timer::after(d).await;
            return d;
        }
    }
    Duration::ZERO
}

/// Reads one final (non-1xx) response into `buf` and a bounded body vector.
async fn read_response(
    conn: &mut Conn,
    buf: &mut [u8],
    opts: &ExchangeOpts<'_>,
    head_wait: Duration,
) -> Result<Response, Failure> {
    let idle = opts.idle;
    let head_deadline = Deadline::after(retry::transfer_deadline_ms(
        head_wait.as_millis() as u64,
        response::MAX_HEAD as u64,
    ));
    let mut interim = 0u32;
    let mut filled = 0usize;
    let (head_end, mut head) = loop {
        // Parse whatever is buffered first: a final head may follow a 1xx in the same read.
        if filled > 0 {
            match response::try_head(&buf[..filled], opts.head_request).map_err(parse_failure)? {
                Some((n, head)) if (100..200).contains(&head.status) => {
                    interim += 1;
                    if head.status == 101 || interim > retry::MAX_INTERIM {
                        log::debug!("interim response {} (#{interim}) refused", head.status);
                        return Err(Failure::Malformed);
                    }
                    buf.copy_within(n..filled, 0);
                    filled -= n;
                    continue;
                }
                Some((n, head)) => break (n, head),
                None => {}
            }
        }
        if filled == buf.len() {
            return Err(Failure::Malformed);
        }
        let wait = if filled == 0 { head_wait } else { idle };
        let n = conn
            .read(&mut buf[filled..], head_deadline.wait(wait)?)
            .await?;
        if n == 0 {
            return Err(Failure::Reset);
        }
        filled += n;
    };

    let expected = match head.framing {
        response::Framing::Length(n) => n.min(opts.max_body as u64),
        _ => opts.max_body as u64,
    };
    let body_deadline = Deadline::after(retry::transfer_deadline_ms(
        idle.as_millis() as u64,
        expected,
    ));
    let mut decoder = BodyDecoder::new(head.framing, opts.max_body);
    let mut body = Vec::new();
    let mut leftover = false;
    let used = decoder
        .feed(&buf[head_end..filled], &mut body)
        .map_err(parse_failure)?;
    if head_end + used < filled {
        leftover = true;
    }
    while !decoder.is_done() {
        let n = conn.read(buf, body_deadline.wait(idle)?).await?;
        if n == 0 {
            // Completes a close-delimited body; any other unfinished body was cut short.
            decoder.eof().map_err(|e| {
                log::debug!("connection closed inside the response body: {e:?}");
                Failure::Reset
            })?;
            head.keep_alive = false;
            break;
        }
        let used = decoder.feed(&buf[..n], &mut body).map_err(parse_failure)?;
        if used < n {
            leftover = true;
        }
    }
    if leftover {
        // Bytes after the response we never asked for: the connection is out of step.
        log::debug!("unexpected bytes after the response; not reusing the connection");
        head.keep_alive = false;
    }
    Ok(Response { head, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::conn::tests::spawn_server;
    use crate::io::conn::ConnectSpec;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let p =
                std::env::temp_dir().join(format!("ossup-exchange-{}-{}", std::process::id(), n));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const IDLE: Duration = Duration::from_secs(5);

    fn plain(port: u16) -> ConnectSpec {
        ConnectSpec {
            host: "127.0.0.1".into(),
            port,
            tls: None,
            connect_timeout: Duration::from_secs(5),
            proxy: None,
        }
    }

    /// Reads one request (head + Content-Length body) from `s`; returns (head text, body).
    fn read_request(s: &mut TcpStream) -> (String, Vec<u8>) {
        let mut data = Vec::new();
        let mut buf = [0u8; 8192];
        let head_end = loop {
            if let Some(p) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "client closed before the head ended");
            data.extend_from_slice(&buf[..n]);
        };
        let head = String::from_utf8(data[..head_end].to_vec()).unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().unwrap())
            })
            .unwrap_or(0);
        while data.len() < head_end + len {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "client closed inside the body");
            data.extend_from_slice(&buf[..n]);
        }
        (head, data[head_end..head_end + len].to_vec())
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 253) as u8 ^ (i >> 10) as u8).collect()
    }

    fn put_head(buf: &mut [u8], len: u64) -> usize {
        let h = format!("PUT /b/k HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len}\r\n\r\n");
        buf[..h.len()].copy_from_slice(h.as_bytes());
        h.len()
    }

    #[test]
    fn put_file_range_streams_exact_bytes_and_crc() {
        let d = TempDir::new();
        let p = d.0.join("f.bin");
        let data = pattern(1_000_003);
        std::fs::write(&p, &data).unwrap();
        let source = Source::open(&p).unwrap();
        let (offset, len) = (123_457u64, 700_001u64);
        let (tx, rx) = mpsc::channel();
        let (port, server) = spawn_server(1, move |mut s| {
            let (head, body) = read_request(&mut s);
            tx.send((head, body)).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nETag: \"abc\"\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        let mut buf = vec![0u8; 64 * 1024];
        let mut chunks = Vec::new();
        let (resp, crc) = smol::block_on(async {
            let mut c = Conn::connect(&plain(port)).await.unwrap();
            let hl = put_head(&mut buf, len);
            let body = BodySource::File {
                source: &source,
                offset,
                len,
            };
            exchange(
                &mut c,
                &mut buf,
                hl,
                body,
                &ExchangeOpts::new(IDLE),
                &mut |n| chunks.push(n),
            )
            .await
            .unwrap()
        });
        let (head, got) = rx.recv().unwrap();
        server.join().unwrap();
        assert!(head.starts_with("PUT /b/k HTTP/1.1\r\n"));
        let want = &data[offset as usize..(offset + len) as usize];
        assert!(got == want, "server received different bytes");
        assert_eq!(crc, crate::proto::crc64::update(0, want));
        assert_eq!(resp.head.status, 200);
        assert_eq!(resp.head.etag(), Some("\"abc\""));
        assert!(resp.body.is_empty());
        assert!(resp.reusable());
        assert_eq!(chunks.iter().sum::<u64>(), len);
        assert!(chunks.iter().all(|&n| n <= 64 * 1024));
        assert_eq!(chunks.len(), (len as usize).div_ceil(64 * 1024));
    }

    /// Sends a request with `body` to a server that answers with `reply` written in `pieces`
    /// (each flushed separately), and returns the exchange's result.
    fn run(
        reply: &'static [u8],
        piece: usize,
        head_request: bool,
    ) -> Result<(Response, u64), Failure> {
        let (port, server) = spawn_server(1, move |mut s| {
            let _ = read_request(&mut s);
            for part in reply.chunks(piece) {
                if s.write_all(part).is_err() {
                    return;
                }
                let _ = s.flush();
                if piece < reply.len() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let r = smol::block_on(async {
            let mut c = Conn::connect(&plain(port)).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let h = b"POST /b/k?uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
            buf[..h.len()].copy_from_slice(h);
            let opts = ExchangeOpts {
                head_request,
                max_body: 4096,
                ..ExchangeOpts::new(IDLE)
            };
            exchange(
                &mut c,
                &mut buf,
                h.len(),
                BodySource::Bytes(b"hello"),
                &opts,
                &mut |_| {},
            )
            .await
        });
        server.join().unwrap();
        r
    }

    const XML: &str = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><UploadId>u-1</UploadId></InitiateMultipartUploadResult>";

    #[test]
    fn content_length_response_and_body_crc() {
        static REPLY: &[u8] =
            b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\nx-oss-request-id: R1\r\n\r\nhello world";
        let (r, crc) = run(REPLY, REPLY.len(), false).unwrap();
        assert_eq!(r.head.status, 200);
        assert_eq!(r.body, b"hello world");
        assert_eq!(r.head.request_id(), Some("R1"));
        assert_eq!(crc, crate::proto::crc64::update(0, b"hello"));
        assert!(r.reusable());
    }

    /// Runs one exchange against a server that answers with `head` and then trickles `trickle`
    /// one byte every `every`; returns the result and how long the exchange took.
    fn run_trickle(
        head: &'static [u8],
        trickle: &'static [u8],
        every: Duration,
        idle: Duration,
    ) -> (Result<(Response, u64), Failure>, Duration) {
        let (port, server) = spawn_server(1, move |mut s| {
            let _ = read_request(&mut s);
            if s.write_all(head).is_err() {
                return;
            }
            for b in trickle.chunks(1) {
                std::thread::sleep(every);
                if s.write_all(b).and_then(|_| s.flush()).is_err() {
                    return;
                }
            }
        });
        let started = Instant::now();
        let r = smol::block_on(async {
            let mut c = Conn::connect(&plain(port)).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let h = b"POST /b/k?uploads HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n";
            buf[..h.len()].copy_from_slice(h);
            let opts = ExchangeOpts {
                max_body: 64 * 1024,
                ..ExchangeOpts::new(idle)
            };
            let body = BodySource::Bytes(b"hello");
            exchange(&mut c, &mut buf, h.len(), body, &opts, &mut |_| {}).await
        });
        let took = started.elapsed();
        server.join().unwrap();
        (r, took)
    }

    #[test]
    fn endless_interim_heads_are_malformed_not_a_spin() {
        let (port, server) = spawn_server(1, |mut s| {
            let _ = read_request(&mut s);
            for _ in 0..10_000 {
                if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                    return;
                }
            }
        });
        let r = smol::block_on(async {
            let mut c = Conn::connect(&plain(port)).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let h = b"GET /b/k HTTP/1.1\r\nHost: x\r\n\r\n";
            buf[..h.len()].copy_from_slice(h);
            let opts = ExchangeOpts::new(IDLE);
            exchange(
                &mut c,
                &mut buf,
                h.len(),
                BodySource::None,
                &opts,
                &mut |_| {},
            )
            .await
        });
        server.join().unwrap();
        assert_eq!(r.unwrap_err(), Failure::Malformed);
        // A few interim heads are still fine.
        static FEW: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(run(FEW, 7, false).unwrap().0.head.status, 200);
    }

    #[test]
    fn a_trickled_body_ends_at_its_deadline_though_never_idle() {
        // 4 KiB announced, one byte every 100 ms (never idle for 1 s): at the minimum rate
        // the body may take 1 s + 4 KiB / 4 KiB/s = 2 s.
        static TRICKLE: [u8; 120] = [b'a'; 120];
        let (r, took) = run_trickle(
            b"HTTP/1.1 200 OK\r\nContent-Length: 4096\r\n\r\n",
            &TRICKLE,
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        assert_eq!(r.unwrap_err(), Failure::TimedOut);
        assert!(took >= Duration::from_millis(1900), "{took:?}");
        assert!(took < Duration::from_secs(8), "{took:?}");
    }

    #[test]
    fn a_trickled_head_ends_at_its_deadline_though_never_idle() {
        // Head wait 1 s (+ drain of a 5-byte body) + 16 KiB / 4 KiB/s = about 5 s.
        static TRICKLE: [u8; 150] = [b'a'; 150];
        let (r, took) = run_trickle(
            b"HTTP/1.1 200 OK\r\nx-pad: ",
            &TRICKLE,
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        assert_eq!(r.unwrap_err(), Failure::TimedOut);
        assert!(took >= Duration::from_millis(4900), "{took:?}");
        assert!(took < Duration::from_secs(12), "{took:?}");
    }

    #[test]
    fn chunked_response_in_tiny_pieces_after_100_continue() {
        static REPLY: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
        for piece in [1, 3, REPLY.len()] {
            let (r, _) = run(REPLY, piece, false).unwrap();
            assert_eq!(r.head.status, 200, "piece {piece}");
            assert_eq!(r.body, b"hello world", "piece {piece}");
        }
    }

    #[test]
    fn xml_body_split_into_tiny_writes() {
        static REPLY: std::sync::LazyLock<Vec<u8>> = std::sync::LazyLock::new(|| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
                XML.len(),
                XML
            )
            .into_bytes()
        });
        let reply: &'static [u8] = &REPLY;
        let (r, _) = run(reply, 2, false).unwrap();
        assert_eq!(r.body, XML.as_bytes());
    }

    #[test]
    fn close_delimited_and_head_responses() {
        static CLOSE: &[u8] = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close";
        let (r, _) = run(CLOSE, 4, false).unwrap();
        assert_eq!(r.body, b"until close");
        assert!(!r.reusable());
        // A HEAD response's Content-Length describes the object, not a body that follows.
        static HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 12345\r\n\r\n";
        let (r, _) = run(HEAD, HEAD.len(), true).unwrap();
        assert!(r.body.is_empty());
        assert_eq!(r.head.header("content-length"), Some("12345"));
    }

    #[test]
    fn close_mid_head_or_body_is_reset() {
        static MID_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Le";
        assert_eq!(run(MID_HEAD, 5, false).unwrap_err(), Failure::Reset);
        static MID_BODY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort";
        assert_eq!(
            run(MID_BODY, MID_BODY.len(), false).unwrap_err(),
            Failure::Reset
        );
        static NOTHING: &[u8] = b"";
        assert_eq!(run(NOTHING, 1, false).unwrap_err(), Failure::Reset);
    }

    #[test]
    fn garbage_and_oversized_bodies_are_malformed() {
        static GARBAGE: &[u8] = b"SMTP ready\r\n\r\n";
        assert_eq!(
            run(GARBAGE, GARBAGE.len(), false).unwrap_err(),
            Failure::Malformed
        );
        static BIG: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n";
        // max_body is 4096 in `run`.
        assert_eq!(run(BIG, BIG.len(), false).unwrap_err(), Failure::Malformed);
    }

    #[test]
    fn trailing_bytes_make_the_connection_unreusable() {
        static EXTRA: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
        let (r, _) = run(EXTRA, EXTRA.len(), false).unwrap();
        assert_eq!(r.body, b"ok");
        assert!(!r.reusable());
    }

    #[test]
    fn truncated_file_is_local_read() {
        let d = TempDir::new();
        let p = d.0.join("f.bin");
        std::fs::write(&p, pattern(10_000)).unwrap();
        let source = Source::open(&p).unwrap();
        // Shrink it after opening.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(5_000)
            .unwrap();
        let (port, server) = spawn_server(1, |mut s| {
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        });
        let r = smol::block_on(async {
            let mut c = Conn::connect(&plain(port)).await.unwrap();
            let mut buf = vec![0u8; 4096];
            let hl = put_head(&mut buf, 10_000);
            let body = BodySource::File {
                source: &source,
                offset: 0,
                len: 10_000,
            };
            exchange(
                &mut c,
                &mut buf,
                hl,
                body,
                &ExchangeOpts::new(IDLE),
                &mut |_| {},
            )
            .await
        });
        assert_eq!(r.unwrap_err(), Failure::LocalRead);
        server.join().unwrap();
    }

    #[test]
    fn early_error_response_is_reported() {
        let d = TempDir::new();
        let p = d.0.join("f.bin");
        std::fs::write(&p, pattern(8 << 20)).unwrap();
        let source = Source::open(&p).unwrap();
        let (port, server) = spawn_server(1, |mut s| {
            // Read only the head, answer 403 and close with most of the body unread.
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(
                b"HTTP/1.1 403 Forbidden\r\nContent-Length: 7\r\nConnection: close\r\n\r\ndenied!",
            );
            let _ = s.flush();
            let _ = s.shutdown(std::net::Shutdown::Write);
            std::thread::sleep(Duration::from_millis(50));
        });
        let r = smol::block_on(async {
            let mut c = Conn::connect(&plain(port)).await.unwrap();
            let mut buf = vec![0u8; 64 * 1024];
            let hl = put_head(&mut buf, 8 << 20);
            let body = BodySource::File {
                source: &source,
                offset: 0,
                len: 8 << 20,
            };
            exchange(
                &mut c,
                &mut buf,
                hl,
                body,
                &ExchangeOpts::new(IDLE),
                &mut |_| {},
            )
            .await
        });
        server.join().unwrap();
        // Best effort: either we read the 403, or the reset destroyed it.
        match r {
            Ok((resp, _)) => {
                assert_eq!(resp.head.status, 403);
                assert_eq!(resp.body, b"denied!");
                assert!(!resp.reusable());
            }
            Err(f) => assert_eq!(f, Failure::Reset),
        }
    }

    #[test]
    fn limiter_paces_the_body() {
        let d = TempDir::new();
        let p = d.0.join("f.bin");
        let len = 300_000u64;
        std::fs::write(&p, pattern(len as usize)).unwrap();
        let source = Source::open(&p).unwrap();
        let (port, server) = spawn_server(1, |mut s| {
            let _ = read_request(&mut s);
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                .unwrap();
        });
        // 1 MB/s with a 100 kB burst: 300 kB needs at least ~200 ms.
        let bucket = RefCell::new(TokenBucket::new(1_000_000, 100_000));
        let t0 = Instant::now();
        smol::block_on(async {
            let mut c = Conn::connect(&plain(port)).await.unwrap();
            let mut buf = vec![0u8; 16 * 1024];
            let hl = put_head(&mut buf, len);
            let body = BodySource::File {
                source: &source,
                offset: 0,
                len,
            };
            let opts = ExchangeOpts {
                limiter: Some(&bucket),
                ..ExchangeOpts::new(IDLE)
            };
            exchange(&mut c, &mut buf, hl, body, &opts, &mut |_| {})
                .await
                .unwrap()
        });
        let took = t0.elapsed();
        server.join().unwrap();
        assert!(took >= Duration::from_millis(180), "{took:?}");
        assert!(took < Duration::from_secs(3), "{took:?}");
    }

    #[test]
    fn tls_exchange_roundtrip() {
        let pki = crate::io::conn::tests::test_pki();
        let config = pki.server_config.clone();
        let (port, server) = spawn_server(1, move |tcp| {
            let conn = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut got = Vec::new();
            let mut buf = [0u8; 16384];
            while !got.ends_with(b"\r\n\r\n") {
                let n = tls.read(&mut buf).unwrap();
                assert!(n > 0);
                got.extend_from_slice(&buf[..n]);
            }
            tls.write_all(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap();
            tls.flush().unwrap();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        });
        let cfg = crate::io::conn::tls_config(Some(pki.ca_pem.as_bytes())).unwrap();
        let r = smol::block_on(async {
            let mut spec = plain(port);
            spec.tls = Some(cfg);
            let mut c = Conn::connect(&spec).await.unwrap();
            let mut buf = vec![0u8; 1024];
            let h = b"DELETE /b/k?uploadId=1 HTTP/1.1\r\nHost: x\r\n\r\n";
            buf[..h.len()].copy_from_slice(h);
            exchange(
                &mut c,
                &mut buf,
                h.len(),
                BodySource::None,
                &ExchangeOpts::new(IDLE),
                &mut |_| {},
            )
            .await
        });
        server.join().unwrap();
        let (resp, crc) = r.unwrap();
        assert_eq!(resp.head.status, 204);
        assert_eq!(crc, 0);
    }
}

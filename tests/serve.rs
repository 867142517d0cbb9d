//! Integration tests of `ossup serve` over real sockets on 127.0.0.1, with a tiny blocking
//! HTTP/1.1 client written here (so that the server is not tested with its own parser).
#![cfg(feature = "serve")]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use md5::{Digest, Md5};

use ossup::proto::sign::{self, Context, Credentials, Request, Scheme};
use ossup::proto::{crc64, time, xml};
use ossup::serve::{FaultKind, Faults, Options, Server, Stats};

const BUCKET: &str = "bkt";

fn tmpdir(tag: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("ossup-serve-it-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    p
}

fn opts(dir: &Path) -> Options {
    let mut o = Options::new(dir);
    o.buckets = vec![BUCKET.to_string()];
    o
}

fn creds(ak: &str, sk: &str) -> Credentials {
    Credentials {
        access_key_id: ak.into(),
        access_key_secret: sk.into(),
        security_token: None,
    }
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Deterministic test bytes.
fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(2_654_435_761)
                .rotate_left(seed as u32 % 31) as u8
                ^ seed
        })
        .collect()
}

fn md5_hex(b: &[u8]) -> String {
    Md5::digest(b).iter().map(|x| format!("{x:02X}")).collect()
}

trait Rw: Read + Write + Send {}
impl<T: Read + Write + Send> Rw for T {}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, n: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    }
    fn crc(&self) -> Option<u64> {
        self.header("x-oss-hash-crc64ecma")
            .and_then(|v| v.parse().ok())
    }
    fn error(&self) -> xml::ServiceError {
        match self.header("x-oss-err") {
            Some(h) if self.body.is_empty() => {
                xml::parse_oss_err_header(h).expect("x-oss-err decodes")
            }
            _ => xml::parse_error(&self.body).unwrap_or_else(|| {
                panic!("not an error body: {}", String::from_utf8_lossy(&self.body))
            }),
        }
    }
    fn code(&self) -> String {
        self.error().code
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A blocking keep-alive client; reconnects when the server closed the connection.
struct Client {
    addr: SocketAddr,
    conn: Option<Box<dyn Rw>>,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
    creds: Option<Credentials>,
    skew: i64,
    connects: u32,
    /// Signature scheme; with S3 the payload hash is signed when `sign_payload`.
    scheme: Scheme,
    sign_payload: bool,
}

impl Client {
    fn new(addr: SocketAddr) -> Client {
        Client {
            addr,
            conn: None,
            tls: None,
            timeout: Duration::from_secs(20),
            creds: None,
            skew: 0,
            connects: 0,
            scheme: Scheme::OssV4,
            sign_payload: false,
        }
    }

    fn signed(addr: SocketAddr, c: Credentials) -> Client {
        let mut cl = Client::new(addr);
        cl.creds = Some(c);
        cl
    }

    fn connect(&mut self) -> io::Result<Box<dyn Rw>> {
        let s = TcpStream::connect(self.addr)?;
        s.set_read_timeout(Some(self.timeout))?;
        s.set_write_timeout(Some(self.timeout))?;
        self.connects += 1;
        Ok(match &self.tls {
            None => Box::new(s),
            Some(cfg) => {
                let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
                let c = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
                Box::new(rustls::StreamOwned::new(c, s))
            }
        })
    }

    /// Sends one request (signed if the client has credentials) and reads the response.
    fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Resp> {
        let mut hs: Vec<(String, String)> = headers
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        if let Some(c) = self.creds.clone() {
            self.sign(method, target, &mut hs, &c, body);
        }
        self.send_raw(method, target, &hs, body)
    }

    fn sign(
        &self,
        method: &str,
        target: &str,
        hs: &mut Vec<(String, String)>,
        c: &Credentials,
        body: &[u8],
    ) {
        if self.scheme == Scheme::S3V4 {
            hs.push(("Host".into(), self.addr.to_string()));
        }
        let sha: String = sha2::Sha256::digest(body)
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        let (path, q) = target.split_once('?').unwrap_or((target, ""));
        let path = percent_decode(path);
        let query: Vec<(String, String)> = q
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        let rest = &path[1..];
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let req = Request {
            method,
            bucket: Some(bucket).filter(|b| !b.is_empty()),
            key: Some(key).filter(|k| !k.is_empty()),
            path: &path,
            query: &query,
            headers: hs,
        };
        let ctx = Context {
            scheme: self.scheme,
            region: "cn-hangzhou",
            product: if self.scheme == Scheme::S3V4 {
                "s3"
            } else {
                "oss"
            },
            credentials: c,
            unix_time: now() + self.skew,
            additional_headers: &[],
            payload_sha256: Some(sha.as_str()).filter(|_| self.sign_payload),
        };
        let signed = sign::sign_headers(&req, &ctx);
        hs.extend(signed.headers);
    }

    fn send_raw(
        &mut self,
        method: &str,
        target: &str,
        hs: &[(String, String)],
        body: &[u8],
    ) -> io::Result<Resp> {
        let mut head = format!("{method} {target} HTTP/1.1\r\n");
        if !hs.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
            head.push_str(&format!("Host: {}\r\n", self.addr));
        }
        let chunked = hs
            .iter()
            .any(|(n, v)| n.eq_ignore_ascii_case("transfer-encoding") && v == "chunked");
        for (n, v) in hs {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        if !chunked {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut s = match self.conn.take() {
            Some(s) => s,
            None => self.connect()?,
        };
        let mut wire = head.into_bytes();
        if chunked {
            for c in body.chunks(7000) {
                wire.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
                wire.extend_from_slice(c);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        } else {
            wire.extend_from_slice(body);
        }
        s.write_all(&wire)?;
        s.flush()?;
        let (resp, keep) = read_response(&mut s, method == "HEAD")?;
        if keep {
            self.conn = Some(s);
        }
        Ok(resp)
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let v = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap(), 16).unwrap();
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Reads one response; `Err` (EOF / reset / timeout) if the server closed without answering.
fn read_response(s: &mut Box<dyn Rw>, head_req: bool) -> io::Result<(Resp, bool)> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut hs);
        if let httparse::Status::Complete(n) =
            r.parse(&buf).map_err(|e| io::Error::other(e.to_string()))?
        {
            let status = r.code.unwrap();
            let headers: Vec<(String, String)> = r
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).trim().to_string(),
                    )
                })
                .collect();
            if status == 100 {
                buf.drain(..n);
                continue;
            }
            let len: usize = headers
                .iter()
                .find(|(k, _)| k == "content-length")
                .map(|(_, v)| v.parse().unwrap())
                .expect("server always sends Content-Length");
            let keep = !headers
                .iter()
                .any(|(k, v)| k == "connection" && v.eq_ignore_ascii_case("close"));
            let len = if head_req { 0 } else { len };
            let mut body = buf[n..].to_vec();
            while body.len() < len {
                let k = s.read(&mut tmp)?;
                if k == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                body.extend_from_slice(&tmp[..k]);
            }
            assert_eq!(
                body.len(),
                len,
                "no pipelining here: nothing may follow the body"
            );
            return Ok((
                Resp {
                    status,
                    headers,
                    body,
                },
                keep,
            ));
        }
        let k = s.read(&mut tmp)?;
        if k == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&tmp[..k]);
        assert!(buf.len() < 64 * 1024, "response head too large");
    }
}

fn obj(key: &str) -> String {
    format!("/{BUCKET}/{}", sign::uri_encode(key, true))
}

fn initiate(c: &mut Client, key: &str) -> String {
    let r = c
        .send("POST", &format!("{}?uploads", obj(key)), &[], b"")
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    xml::parse_initiate(&r.body).unwrap()
}

fn upload_part(c: &mut Client, key: &str, id: &str, n: u32, body: &[u8]) -> Resp {
    c.send(
        "PUT",
        &format!("{}?partNumber={n}&uploadId={id}", obj(key)),
        &[],
        body,
    )
    .unwrap()
}

fn complete(c: &mut Client, key: &str, id: &str, parts: &[(u32, String)]) -> io::Result<Resp> {
    let body = xml::complete_body(parts);
    c.send(
        "POST",
        &format!("{}?uploadId={id}", obj(key)),
        &[("Content-Type", "application/xml")],
        &body,
    )
}

fn list_parts(c: &mut Client, key: &str, id: &str, extra: &str) -> Resp {
    c.send(
        "GET",
        &format!("{}?uploadId={id}{extra}", obj(key)),
        &[],
        b"",
    )
    .unwrap()
}

fn wait_for<F: FnMut() -> bool>(what: &str, mut f: F) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn put_get_head_delete_round_trip() {
    let dir = tmpdir("put");
    let srv = Server::start(opts(&dir)).unwrap();
    let mut c = Client::new(srv.addr());
    let key = "dir/a b+c~.txt";
    let body = data(300_000, 1);
    let r = c
        .send("PUT", &obj(key), &[("Content-Type", "text/plain")], &body)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("etag"),
        Some(format!("\"{}\"", md5_hex(&body)).as_str())
    );
    assert_eq!(r.crc(), Some(crc64::update(0, &body)));
    assert!(r.header("x-oss-request-id").is_some_and(|v| v.len() >= 16));
    assert!(r
        .header("date")
        .and_then(time::parse_rfc1123)
        .is_some_and(|d| (d - now()).abs() < 60));
    // The documented layout: DIR/<bucket>/<uri_encode(key, false)>.
    assert_eq!(
        std::fs::read(dir.join(BUCKET).join(sign::uri_encode(key, false))).unwrap(),
        body
    );

    let g = c.send("GET", &obj(key), &[], b"").unwrap();
    assert_eq!(g.status, 200);
    assert_eq!(g.body, body);
    assert_eq!(g.crc(), Some(crc64::update(0, &body)));
    assert_eq!(g.header("content-type"), Some("text/plain"));
    let h = c.send("HEAD", &obj(key), &[], b"").unwrap();
    assert_eq!((h.status, h.body.len()), (200, 0));
    assert_eq!(h.header("content-length"), Some("300000"));
    assert_eq!(h.header("etag"), r.header("etag"));
    let rg = c
        .send("GET", &obj(key), &[("Range", "bytes=10-19")], b"")
        .unwrap();
    assert_eq!(rg.status, 206);
    assert_eq!(rg.body, &body[10..20]);
    // Everything above ran on one kept-alive connection.
    assert_eq!(c.connects, 1);

    // Keys that would be dangerous as paths stay inside the bucket.
    for k in ["..", ".", "a/../../x"] {
        let r = c.send("PUT", &obj(k), &[], k.as_bytes()).unwrap();
        assert_eq!(r.status, 200, "{k}");
        assert_eq!(c.send("GET", &obj(k), &[], b"").unwrap().body, k.as_bytes());
    }
    assert!(!dir.join("x").exists());

    let d = c.send("DELETE", &obj(key), &[], b"").unwrap();
    assert_eq!(d.status, 204);
    let h = c.send("HEAD", &obj(key), &[], b"").unwrap();
    assert_eq!(h.status, 404);
    assert_eq!(h.code(), "NoSuchKey");
    let g = c.send("GET", &obj(key), &[], b"").unwrap();
    assert_eq!((g.status, g.code()), (404, "NoSuchKey".to_string()));
    assert_eq!(g.header("content-type"), Some("application/xml"));
    assert!(!g.error().request_id.is_empty());

    let nb = c.send("GET", "/nobucket/x", &[], b"").unwrap();
    assert_eq!((nb.status, nb.code()), (404, "NoSuchBucket".to_string()));
    let long = "k".repeat(1024);
    let r = c.send("PUT", &obj(&long), &[], b"x").unwrap();
    assert_eq!((r.status, r.code()), (400, "InvalidObjectName".to_string()));
    let ok = "k".repeat(1023);
    assert_eq!(c.send("PUT", &obj(&ok), &[], b"x").unwrap().status, 200);
    assert_eq!(c.send("GET", &obj(&ok), &[], b"").unwrap().body, b"x");

    // Content-MD5 is checked.
    let wrong = base64::engine::general_purpose::STANDARD.encode(Md5::digest(b"other"));
    let r = c
        .send("PUT", &obj("md5"), &[("Content-MD5", &wrong)], b"data")
        .unwrap();
    assert_eq!((r.status, r.code()), (400, "InvalidDigest".to_string()));
    let right = base64::engine::general_purpose::STANDARD.encode(Md5::digest(b"data"));
    assert_eq!(
        c.send("PUT", &obj("md5"), &[("Content-MD5", &right)], b"data")
            .unwrap()
            .status,
        200
    );

    // Chunked bodies and Expect: 100-continue.
    let r = c
        .send(
            "PUT",
            &obj("chunked"),
            &[("Transfer-Encoding", "chunked")],
            &body[..50_000],
        )
        .unwrap();
    assert_eq!(r.crc(), Some(crc64::update(0, &body[..50_000])));
    let r = c
        .send(
            "PUT",
            &obj("expect"),
            &[("Expect", "100-continue")],
            &body[..1000],
        )
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        c.send("GET", &obj("expect"), &[], b"").unwrap().body,
        &body[..1000]
    );
    let st = srv.stats();
    assert_eq!(st.puts, 8);
    assert!(st.bytes_received >= 300_000 + 50_000 + 1000);
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn multipart_upload_list_complete() {
    let dir = tmpdir("mp");
    let srv = Server::start(opts(&dir)).unwrap();
    let mut c = Client::new(srv.addr());
    let key = "big/object.bin";
    let id = initiate(&mut c, key);
    let p1 = data(102_400, 1);
    let p2_old = data(150_000, 9);
    let p2 = data(150_000, 2);
    let p3 = data(777, 3);
    let mut etags = Vec::new();
    for (n, b) in [(1, &p1), (2, &p2_old), (3, &p3), (2, &p2)] {
        let r = upload_part(&mut c, key, &id, n, b);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            r.header("etag"),
            Some(format!("\"{}\"", md5_hex(b)).as_str())
        );
        assert_eq!(r.crc(), Some(crc64::update(0, b)));
        etags.push((n, r.header("etag").unwrap().to_string()));
    }
    let page1 = xml::parse_list_parts(&list_parts(&mut c, key, &id, "&max-parts=2").body).unwrap();
    assert!(page1.truncated);
    assert_eq!(page1.next_marker, Some(2));
    assert_eq!(
        page1
            .parts
            .iter()
            .map(|p| (p.n, p.size))
            .collect::<Vec<_>>(),
        vec![(1, 102_400), (2, 150_000)]
    );
    assert_eq!(
        page1.parts[1].crc64,
        Some(crc64::update(0, &p2)),
        "re-upload overwrote part 2"
    );
    assert_eq!(page1.parts[1].etag, format!("\"{}\"", md5_hex(&p2)));
    let lp = list_parts(&mut c, key, &id, "&max-parts=2&part-number-marker=2");
    assert!(lp.text().contains("<LastModified>") && lp.text().contains("000Z</LastModified>"));
    let page2 = xml::parse_list_parts(&lp.body).unwrap();
    assert!(!page2.truncated);
    assert_eq!(page2.parts.iter().map(|p| p.n).collect::<Vec<_>>(), vec![3]);

    let ups = c
        .send("GET", &format!("/{BUCKET}/?uploads"), &[], b"")
        .unwrap();
    let ups = xml::parse_list_uploads(&ups.body).unwrap();
    assert_eq!(ups.uploads.len(), 1);
    assert_eq!(
        (&ups.uploads[0].key[..], &ups.uploads[0].upload_id),
        (key, &id)
    );
    assert!(ups.uploads[0].initiated.is_some(), "Initiated is listed");
    let none = c
        .send("GET", &format!("/{BUCKET}/?uploads&prefix=zzz"), &[], b"")
        .unwrap();
    assert!(xml::parse_list_uploads(&none.body)
        .unwrap()
        .uploads
        .is_empty());
    assert_eq!(srv.stats().open_uploads, 1);

    let parts = vec![
        (1, etags[0].1.clone()),
        (2, etags[3].1.clone()),
        (3, etags[2].1.clone()),
    ];
    let r = complete(&mut c, key, &id, &parts).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let whole = [p1.clone(), p2.clone(), p3.clone()].concat();
    assert_eq!(r.crc(), Some(crc64::update(0, &whole)));
    let etag = xml::parse_complete(&r.body).unwrap();
    assert!(etag.trim_matches('"').ends_with("-3"), "{etag}");
    let g = c.send("GET", &obj(key), &[], b"").unwrap();
    assert_eq!(g.body, whole);
    assert_eq!(g.crc(), Some(crc64::update(0, &whole)));
    let r = list_parts(&mut c, key, &id, "");
    assert_eq!((r.status, r.code()), (404, "NoSuchUpload".to_string()));
    assert!(r.text().contains(&format!("<UploadId>{id}</UploadId>")));
    assert!(!dir.join(".ossup-uploads").join(&id).exists());

    let st = srv.stats();
    assert_eq!(
        (st.initiated, st.completed, st.parts_stored, st.open_uploads),
        (1, 1, 4, 0)
    );
    // The stats endpoint answers the same numbers as JSON.
    let js = Client::new(srv.addr())
        .send("GET", "/_ossup/stats", &[], b"")
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&js.body).unwrap();
    let st = srv.stats();
    assert_eq!(v["completed"], 1);
    assert_eq!(v["parts_stored"], 4);
    assert_eq!(v["open_uploads"], 0);
    assert_eq!(v["initiated"], st.initiated);
    assert!(v["requests"].as_u64().unwrap() >= 12);
    assert!(v["bytes_received"].as_u64().unwrap() >= whole.len() as u64);
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn complete_rejects_bad_part_lists_and_unknown_uploads() {
    let dir = tmpdir("bad");
    let srv = Server::start(opts(&dir)).unwrap();
    let mut c = Client::new(srv.addr());
    let key = "k";
    let id = initiate(&mut c, key);
    let small = data(1000, 1);
    let big = data(102_400, 2);
    let e1 = upload_part(&mut c, key, &id, 1, &small)
        .header("etag")
        .unwrap()
        .to_string();
    let e2 = upload_part(&mut c, key, &id, 2, &big)
        .header("etag")
        .unwrap()
        .to_string();
    let e3 = upload_part(&mut c, key, &id, 3, &big)
        .header("etag")
        .unwrap()
        .to_string();

    let r = complete(&mut c, key, &id, &[(2, e2.clone()), (1, e1.clone())]).unwrap();
    assert_eq!((r.status, r.code()), (400, "InvalidPartOrder".to_string()));
    let r = complete(&mut c, key, &id, &[(2, e2.clone()), (2, e2.clone())]).unwrap();
    assert_eq!((r.status, r.code()), (400, "InvalidPartOrder".to_string()));
    let r = complete(&mut c, key, &id, &[(2, e1.clone())]).unwrap();
    assert_eq!((r.status, r.code()), (400, "InvalidPart".to_string()));
    let r = complete(&mut c, key, &id, &[(4, e2.clone())]).unwrap();
    assert_eq!((r.status, r.code()), (400, "InvalidPart".to_string()));
    let r = complete(&mut c, key, &id, &[(1, e1.clone()), (2, e2.clone())]).unwrap();
    assert_eq!((r.status, r.code()), (400, "EntityTooSmall".to_string()));
    let r = c
        .send(
            "POST",
            &format!("{}?uploadId={id}", obj(key)),
            &[],
            b"<nope/>",
        )
        .unwrap();
    assert_eq!((r.status, r.code()), (400, "MalformedXML".to_string()));
    let r = upload_part(&mut c, key, &id, 0, b"x");
    assert_eq!((r.status, r.code()), (400, "InvalidArgument".to_string()));
    let r = upload_part(&mut c, key, &id, 10_001, b"x");
    assert_eq!((r.status, r.code()), (400, "InvalidArgument".to_string()));
    // ETags compare without quotes and case.
    let lower = e3.trim_matches('"').to_ascii_lowercase();
    let r = complete(&mut c, key, &id, &[(2, e2.clone()), (3, lower)]).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        c.send("GET", &obj(key), &[], b"").unwrap().body,
        [big.clone(), big.clone()].concat()
    );

    for bogus in [id.as_str(), "0123456789ABCDEF", "../../etc"] {
        let q = sign::uri_encode(bogus, false);
        let r = upload_part(&mut c, key, &q, 1, b"x");
        assert_eq!(
            (r.status, r.code()),
            (404, "NoSuchUpload".to_string()),
            "{bogus}"
        );
        assert_eq!(list_parts(&mut c, key, &q, "").code(), "NoSuchUpload");
        assert_eq!(
            complete(&mut c, key, &q, &[(1, e1.clone())])
                .unwrap()
                .code(),
            "NoSuchUpload"
        );
        let r = c
            .send("DELETE", &format!("{}?uploadId={q}", obj(key)), &[], b"")
            .unwrap();
        assert_eq!((r.status, r.code()), (404, "NoSuchUpload".to_string()));
    }
    // An upload id used with another key is not found either.
    let id2 = initiate(&mut c, "other");
    assert_eq!(
        upload_part(&mut c, "k", &id2, 1, b"x").code(),
        "NoSuchUpload"
    );

    // Abort, and complete-all.
    let r = c
        .send(
            "DELETE",
            &format!("{}?uploadId={id2}", obj("other")),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 204);
    assert_eq!(list_parts(&mut c, "other", &id2, "").code(), "NoSuchUpload");
    let id3 = initiate(&mut c, "all");
    upload_part(&mut c, "all", &id3, 1, &big);
    upload_part(&mut c, "all", &id3, 5, &small);
    let r = c
        .send(
            "POST",
            &format!("{}?uploadId={id3}", obj("all")),
            &[("x-oss-complete-all", "yes")],
            b"",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.crc(),
        Some(crc64::update(0, &[big.clone(), small.clone()].concat()))
    );
    let st = srv.stats();
    assert_eq!(
        (st.initiated, st.completed, st.aborted, st.open_uploads),
        (3, 2, 1, 0)
    );
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn signed_server(dir: &Path, skew: i64, anon: bool) -> Server {
    let mut o = opts(dir);
    o.credentials = Some(creds("test-ak", "test-sk"));
    o.allow_anonymous = anon;
    o.skew_secs = skew;
    Server::start(o).unwrap()
}

#[test]
fn signatures_are_required_and_checked() {
    let dir = tmpdir("sig");
    let srv = signed_server(&dir, 0, false);
    let mut anon = Client::new(srv.addr());
    let r = anon.send("PUT", &obj("a"), &[], b"x").unwrap();
    assert_eq!((r.status, r.code()), (403, "AccessDenied".to_string()));
    let h = anon.send("HEAD", &obj("a"), &[], b"").unwrap();
    assert_eq!((h.status, h.code()), (403, "AccessDenied".to_string()));
    let r = anon
        .send("PUT", &obj("a"), &[("Authorization", "OSS ak:c2ln")], b"x")
        .unwrap();
    assert_eq!(r.status, 403);
    // Stats never need a signature.
    assert_eq!(
        anon.send("GET", "/_ossup/stats", &[], b"").unwrap().status,
        200
    );

    let mut good = Client::signed(srv.addr(), creds("test-ak", "test-sk"));
    let r = good
        .send(
            "PUT",
            &obj("dir/sig ned"),
            &[("Content-Type", "text/plain")],
            b"hello",
        )
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let id = initiate(&mut good, "mp key");
    assert_eq!(upload_part(&mut good, "mp key", &id, 1, b"p").status, 200);
    assert_eq!(
        list_parts(&mut good, "mp key", &id, "&max-parts=1&part-number-marker=").status,
        200
    );
    assert_eq!(
        good.send("GET", &format!("/{BUCKET}/?uploads&prefix=mp"), &[], b"")
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        good.send("GET", &obj("dir/sig ned"), &[], b"")
            .unwrap()
            .body,
        b"hello"
    );

    let mut wrong = Client::signed(srv.addr(), creds("test-ak", "other-sk"));
    let r = wrong.send("GET", &obj("dir/sig ned"), &[], b"").unwrap();
    assert_eq!(
        (r.status, r.code()),
        (403, "SignatureDoesNotMatch".to_string())
    );
    assert!(
        r.text().contains("<StringToSign>OSS4-HMAC-SHA256\n"),
        "{}",
        r.text()
    );
    let mut unknown = Client::signed(srv.addr(), creds("nobody", "test-sk"));
    let r = unknown.send("GET", &obj("dir/sig ned"), &[], b"").unwrap();
    assert_eq!(
        (r.status, r.code()),
        (403, "InvalidAccessKeyId".to_string())
    );
    // A signature over other bytes of the request (tampered header) is rejected.
    let mut hs = vec![("x-oss-meta-a".to_string(), "1".to_string())];
    good.sign(
        "GET",
        &obj("dir/sig ned"),
        &mut hs,
        &creds("test-ak", "test-sk"),
        b"",
    );
    hs[0].1 = "2".into();
    let r = good.send_raw("GET", &obj("dir/sig ned"), &hs, b"").unwrap();
    assert_eq!(r.code(), "SignatureDoesNotMatch");
    srv.stop();

    // allow_anonymous: no Authorization is fine, a wrong one is not.
    let srv = signed_server(&dir, 0, true);
    let mut anon = Client::new(srv.addr());
    assert_eq!(
        anon.send("GET", &obj("dir/sig ned"), &[], b"")
            .unwrap()
            .body,
        b"hello"
    );
    let mut wrong = Client::signed(srv.addr(), creds("test-ak", "other-sk"));
    assert_eq!(
        wrong
            .send("GET", &obj("dir/sig ned"), &[], b"")
            .unwrap()
            .code(),
        "SignatureDoesNotMatch"
    );
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn s3_sigv4_is_accepted_and_its_payload_hash_checked() {
    let dir = tmpdir("s3");
    let srv = signed_server(&dir, 0, false);
    let mut c = Client::signed(srv.addr(), creds("test-ak", "test-sk"));
    c.scheme = Scheme::S3V4;
    let body = data(200_000, 3);
    assert_eq!(
        c.send("PUT", &obj("s3/unsigned payload"), &[], &body)
            .unwrap()
            .status,
        200
    );
    c.sign_payload = true;
    let r = c
        .send("PUT", &obj("s3/signed payload"), &[], &body)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let id = initiate(&mut c, "s3/mp");
    assert_eq!(upload_part(&mut c, "s3/mp", &id, 1, &body).status, 200);
    let g = c.send("GET", &obj("s3/signed payload"), &[], b"").unwrap();
    assert_eq!(g.body, body);
    // A body that is not the one whose hash was signed is refused and not stored.
    let mut hs = Vec::new();
    c.sign(
        "PUT",
        &obj("s3/tampered"),
        &mut hs,
        &creds("test-ak", "test-sk"),
        b"original",
    );
    let r = c
        .send_raw("PUT", &obj("s3/tampered"), &hs, b"tampered")
        .unwrap();
    assert_eq!(
        (r.status, r.code()),
        (400, "XAmzContentSHA256Mismatch".to_string())
    );
    assert_eq!(
        c.send("HEAD", &obj("s3/tampered"), &[], b"")
            .unwrap()
            .status,
        404
    );
    let mut hs = Vec::new();
    c.sign(
        "PUT",
        &obj("s3/ok"),
        &mut hs,
        &creds("test-ak", "test-sk"),
        b"original",
    );
    assert_eq!(
        c.send_raw("PUT", &obj("s3/ok"), &hs, b"original")
            .unwrap()
            .status,
        200
    );
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn skewed_server_reports_its_time() {
    let dir = tmpdir("skew");
    let srv = signed_server(&dir, 3600, false);
    let mut c = Client::signed(srv.addr(), creds("test-ak", "test-sk"));
    let r = c.send("PUT", &obj("a"), &[], b"x").unwrap();
    assert_eq!(
        (r.status, r.code()),
        (403, "RequestTimeTooSkewed".to_string())
    );
    let e = r.error();
    let server_time = time::parse_iso8601(e.server_time.as_deref().unwrap()).unwrap();
    assert!((server_time - (now() + 3600)).abs() < 60, "{server_time}");
    assert!(e.server_time.unwrap().ends_with(".000Z"));
    assert!(r
        .text()
        .contains("<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>"));
    assert!(r.text().contains("<RequestTime>"));
    let date = time::parse_rfc1123(r.header("date").unwrap()).unwrap();
    assert!((date - (now() + 3600)).abs() < 60);
    // Correcting the clock by the Date header makes the next request pass.
    c.skew = date - now();
    assert_eq!(c.send("PUT", &obj("a"), &[], b"x").unwrap().status, 200);
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

fn fault_server(dir: &Path, kinds: Vec<FaultKind>) -> Server {
    let mut o = opts(dir);
    o.faults = Faults {
        rate: 1.0,
        seed: 42,
        kinds,
        stall_ms: 1500,
        reset_after_bytes: 1000,
    };
    Server::start(o).unwrap()
}

fn stats_over_http(addr: SocketAddr) -> serde_json::Value {
    serde_json::from_slice(
        &Client::new(addr)
            .send("GET", "/_ossup/stats", &[], b"")
            .unwrap()
            .body,
    )
    .unwrap()
}

#[test]
fn fault_503_stores_nothing() {
    let dir = tmpdir("f503");
    let srv = fault_server(&dir, vec![FaultKind::Status503]);
    let mut c = Client::new(srv.addr());
    let r = c.send("PUT", &obj("a"), &[], &data(5000, 1)).unwrap();
    assert_eq!(
        (r.status, r.code()),
        (503, "ServiceUnavailable".to_string())
    );
    let r = c
        .send("POST", &format!("{}?uploads", obj("a")), &[], b"")
        .unwrap();
    assert_eq!(r.status, 503);
    // Not eligible: GET.
    assert_eq!(
        c.send("GET", &obj("a"), &[], b"").unwrap().code(),
        "NoSuchKey"
    );
    // The body was drained, so the connection stayed usable.
    assert_eq!(c.connects, 1);
    let st: Stats = srv.stats();
    assert_eq!((st.puts, st.initiated, st.faults_injected), (0, 0, 2));
    assert_eq!(stats_over_http(srv.addr())["faults_injected"], 2);
    assert!(!dir.join(BUCKET).join("a").exists());
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fault_reset_mid_body_stores_nothing() {
    let dir = tmpdir("freset");
    let srv = fault_server(&dir, vec![FaultKind::ResetMidBody]);
    let mut c = Client::new(srv.addr());
    let id = initiate(&mut c, "a");
    let r = c.send(
        "PUT",
        &format!("{}?partNumber=1&uploadId={id}", obj("a")),
        &[],
        &data(300_000, 1),
    );
    assert!(r.is_err(), "expected a broken connection, got {r:?}");
    let r = c.send("PUT", &obj("a"), &[], &data(300_000, 1));
    assert!(r.is_err());
    let st = srv.stats();
    assert_eq!((st.parts_stored, st.puts, st.faults_injected), (0, 0, 2));
    assert!(st.bytes_received >= 2000 && st.bytes_received < 600_000);
    assert!(!dir.join(BUCKET).join("a").exists());
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fault_stall_delays_the_answer_and_stop_interrupts_it() {
    let dir = tmpdir("fstall");
    let srv = fault_server(&dir, vec![FaultKind::Stall]);
    let mut c = Client::new(srv.addr());
    c.timeout = Duration::from_millis(300);
    let t = Instant::now();
    let r = c.send("PUT", &obj("a"), &[], b"stalled");
    assert!(
        r.is_err(),
        "the client's idle timeout should fire first: {r:?}"
    );
    assert!(t.elapsed() < Duration::from_millis(1400));
    // The server carried the request out, it only answered late.
    wait_for("stalled put", || srv.stats().puts == 1);
    let mut c2 = Client::new(srv.addr());
    assert_eq!(
        c2.send("GET", &obj("a"), &[], b"").unwrap().body,
        b"stalled"
    );
    // A patient client gets the answer.
    c2.timeout = Duration::from_secs(20);
    let t = Instant::now();
    assert_eq!(c2.send("PUT", &obj("b"), &[], b"x").unwrap().status, 200);
    assert!(t.elapsed() >= Duration::from_millis(1400));
    srv.stop();

    // Stopping does not wait for a long stall.
    let mut o = opts(&dir);
    o.faults = Faults {
        rate: 1.0,
        seed: 1,
        kinds: vec![FaultKind::Stall],
        stall_ms: 600_000,
        reset_after_bytes: 0,
    };
    let srv = Server::start(o).unwrap();
    let addr = srv.addr();
    let th = std::thread::spawn(move || {
        let mut c = Client::new(addr);
        c.send("PUT", &obj("c"), &[], b"x")
    });
    wait_for("stall to begin", || srv.stats().puts == 1);
    let t = Instant::now();
    srv.stop();
    assert!(t.elapsed() < Duration::from_secs(5));
    assert!(th.join().unwrap().is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fault_drop_response_stores_then_closes() {
    let dir = tmpdir("fdrop");
    let srv = fault_server(&dir, vec![FaultKind::DropResponse]);
    let mut c = Client::new(srv.addr());
    let id = initiate(&mut c, "a");
    let part = data(200_000, 4);
    let r = c.send(
        "PUT",
        &format!("{}?partNumber=1&uploadId={id}", obj("a")),
        &[],
        &part,
    );
    assert!(r.is_err(), "{r:?}");
    assert_eq!(srv.stats().parts_stored, 1);
    assert!(dir.join(".ossup-uploads").join(&id).join("1.meta").exists());
    assert!(c.send("PUT", &obj("b"), &[], b"dropped").is_err());
    assert_eq!(
        std::fs::read(dir.join(BUCKET).join("b")).unwrap(),
        b"dropped"
    );
    srv.stop();

    // A server without faults on the same directory sees the stored part.
    let srv = Server::start(opts(&dir)).unwrap();
    let mut c = Client::new(srv.addr());
    let page = xml::parse_list_parts(&list_parts(&mut c, "a", &id, "").body).unwrap();
    assert_eq!(page.parts.len(), 1);
    assert_eq!(page.parts[0].crc64, Some(crc64::update(0, &part)));
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn fault_lose_complete_completes_then_closes() {
    let dir = tmpdir("flose");
    let srv = fault_server(&dir, vec![FaultKind::LoseComplete]);
    let mut c = Client::new(srv.addr());
    let id = initiate(&mut c, "a");
    let part = data(5000, 5);
    // Only Complete is eligible: the part upload is answered.
    let r = upload_part(&mut c, "a", &id, 1, &part);
    assert_eq!(r.status, 200);
    let etag = r.header("etag").unwrap().to_string();
    assert!(complete(&mut c, "a", &id, &[(1, etag.clone())]).is_err());
    let st = srv.stats();
    assert_eq!(
        (st.completed, st.faults_injected, st.open_uploads),
        (1, 1, 0)
    );
    // The retry finds the upload gone, and the object in place.
    let r = complete(&mut c, "a", &id, &[(1, etag)]);
    assert!(r.is_err(), "Complete is always faulted at rate 1: {r:?}");
    let h = c.send("HEAD", &obj("a"), &[], b"").unwrap();
    assert_eq!(h.status, 200);
    assert_eq!(h.crc(), Some(crc64::update(0, &part)));
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn concurrent_part_uploads() {
    let dir = tmpdir("conc");
    let srv = Server::start(opts(&dir)).unwrap();
    let addr = srv.addr();
    let mut c = Client::new(addr);
    let id = initiate(&mut c, "conc");
    let part = |n: u32| data(102_400 + n as usize, n as u8);
    // 4 threads upload parts 1..=12, every part twice (racing re-uploads of one number).
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let id = id.clone();
            std::thread::spawn(move || {
                let mut c = Client::new(addr);
                for i in 0..6u32 {
                    let n = (t * 6 + i) % 12 + 1;
                    let r = upload_part(&mut c, "conc", &id, n, &part(n));
                    assert_eq!(r.status, 200);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let page = xml::parse_list_parts(&list_parts(&mut c, "conc", &id, "").body).unwrap();
    assert_eq!(page.parts.len(), 12);
    // Overwritten parts left no data behind: 12 data files, 12 metadata files, `upload`.
    assert_eq!(
        std::fs::read_dir(dir.join(".ossup-uploads").join(&id))
            .unwrap()
            .count(),
        25
    );
    let list: Vec<(u32, String)> = page.parts.iter().map(|p| (p.n, p.etag.clone())).collect();
    let r = complete(&mut c, "conc", &id, &list).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let whole: Vec<u8> = (1..=12).flat_map(part).collect();
    assert_eq!(c.send("GET", &obj("conc"), &[], b"").unwrap().body, whole);
    assert_eq!(srv.stats().parts_stored, 24);
    assert!(!dir.join(".ossup-uploads").join(&id).exists());
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn restart_keeps_uploads() {
    let dir = tmpdir("restart");
    let srv = Server::start(opts(&dir)).unwrap();
    let mut c = Client::new(srv.addr());
    let id = initiate(&mut c, "r/k");
    let p1 = data(102_400, 6);
    let e1 = upload_part(&mut c, "r/k", &id, 1, &p1)
        .header("etag")
        .unwrap()
        .to_string();
    srv.stop();

    let srv = Server::start(opts(&dir)).unwrap();
    assert_eq!(srv.stats().open_uploads, 1);
    let mut c = Client::new(srv.addr());
    let page = xml::parse_list_parts(&list_parts(&mut c, "r/k", &id, "").body).unwrap();
    assert_eq!(
        page.parts
            .iter()
            .map(|p| (p.n, p.etag.clone()))
            .collect::<Vec<_>>(),
        vec![(1, e1.clone())]
    );
    let p2 = data(10, 7);
    let e2 = upload_part(&mut c, "r/k", &id, 2, &p2)
        .header("etag")
        .unwrap()
        .to_string();
    let r = complete(&mut c, "r/k", &id, &[(1, e1), (2, e2)]).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        c.send("GET", &obj("r/k"), &[], b"").unwrap().body,
        [p1, p2].concat()
    );
    assert_eq!(srv.stats().open_uploads, 0);
    srv.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_requests_get_400_and_stop_closes_idle_connections() {
    let dir = tmpdir("malformed");
    let srv = Server::start(opts(&dir)).unwrap();
    for raw in [
        &b"GARBAGE\x01\x02\r\n\r\n"[..],
        b"PUT /bkt/a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"PUT /bkt/a HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
        b"GET /bkt/%zz HTTP/1.1\r\nConnection: close\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(srv.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    }
    // A head that never ends is cut off.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut big = b"GET /bkt/a HTTP/1.1\r\n".to_vec();
    big.extend(std::iter::repeat_n(b'x', 20_000));
    let _ = s.write_all(&big);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    // (the server may reset the connection before the 400 arrives: unread bytes were pending)
    assert!(out.is_empty() || String::from_utf8_lossy(&out).starts_with("HTTP/1.1 400 "));
    // A client that disconnects mid-body leaves nothing behind and does not hurt the server.
    let mut s = TcpStream::connect(srv.addr()).unwrap();
    s.write_all(b"PUT /bkt/half HTTP/1.1\r\nContent-Length: 100000\r\n\r\nabc")
        .unwrap();
    drop(s);
    let mut c = Client::new(srv.addr());
    wait_for("half request to be read", || srv.stats().requests >= 4);
    wait_for("temp file removal", || {
        std::fs::read_dir(dir.join(".ossup-tmp")).unwrap().count() == 0
    });
    assert_eq!(c.send("GET", &obj("half"), &[], b"").unwrap().status, 404);
    // An idle keep-alive connection does not keep stop() waiting.
    assert_eq!(c.send("PUT", &obj("x"), &[], b"1").unwrap().status, 200);
    assert!(c.conn.is_some());
    let t = Instant::now();
    srv.stop();
    assert!(t.elapsed() < Duration::from_secs(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn tls_round_trip() {
    let dir = tmpdir("tls");
    std::fs::create_dir_all(&dir).unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = dir.join("cert.pem");
    let key_pem = dir.join("key.pem");
    std::fs::write(&cert_pem, ck.cert.pem()).unwrap();
    std::fs::write(&key_pem, ck.key_pair.serialize_pem()).unwrap();
    let mut o = opts(&dir.join("data"));
    o.tls = Some((cert_pem.clone(), key_pem.clone()));
    let srv = Server::start(o).unwrap();

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut c = Client::new(srv.addr());
    c.tls = Some(Arc::new(cfg));
    let body = data(200_000, 8);
    let r = c.send("PUT", &obj("tls"), &[], &body).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.crc(), Some(crc64::update(0, &body)));
    assert_eq!(c.send("GET", &obj("tls"), &[], b"").unwrap().body, body);
    assert_eq!(c.connects, 1);
    srv.stop();

    // Bad PEM files are an error at start, not at the first connection.
    let mut o = opts(&dir.join("data"));
    o.tls = Some((key_pem, cert_pem));
    assert!(Server::start(o).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn invalid_options_are_rejected() {
    let dir = tmpdir("opts");
    let mut o = opts(&dir);
    o.buckets = vec!["Bad_Name".into()];
    assert!(Server::start(o).is_err());
    let mut o = opts(&dir);
    o.faults.rate = 2.0;
    assert!(Server::start(o).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

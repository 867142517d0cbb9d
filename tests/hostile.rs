//! Issue 11, items 1-7: a hostile server on 127.0.0.1 must never hang ossup, spin it, or grow
//! its memory or its journal. Each test runs the real binary against a scripted server and
//! checks that the run ends in bounded time with a supervisor-actionable exit code, that the
//! journal stays small, and (where it matters) prints the run's peak RSS (`VmHWM`).
//!
//! The decisions are unit-tested too: `proto::xml` (caps on server strings, page sizes),
//! `proto::upload` (ListParts dedupe, sweep bound) and `io::exchange` (interim cap, deadlines).
//!
//! Exit codes: a malformed answer is retried until `--retry-for` (75); an answer that repeats
//! unchanged may also be judged unusable early (78). Both are bounded, both keep the journal.

#![cfg(feature = "serve")]

mod support;

use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;

/// A server that hands every connection (in its own thread) to `serve` with the request head
/// already read. `serve` writes whatever it likes, as slowly as it likes, and should stop
/// when the flag it gets is set (the test is over) or when a write fails. At most 64
/// connections, at most 90 s; stops on drop.
struct StreamServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: Arc<AtomicU32>,
    heads: Arc<Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl StreamServer {
    fn start<F>(serve: F) -> StreamServer
    where
        F: Fn(&str, &mut TcpStream, &AtomicBool) + Send + Sync + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns = Arc::new(AtomicU32::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let serve = Arc::new(serve);
        let (stop2, conns2, heads2) = (stop.clone(), conns.clone(), heads.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(90);
            let mut workers = Vec::new();
            while !stop2.load(Ordering::SeqCst)
                && Instant::now() < deadline
                && conns2.load(Ordering::SeqCst) < 64
            {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                conns2.fetch_add(1, Ordering::SeqCst);
                let (serve, stop3, heads3) = (serve.clone(), stop2.clone(), heads2.clone());
                workers.push(std::thread::spawn(move || {
                    let _ = s.set_nonblocking(false);
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                    // Keep-alive: serve requests on this connection until it ends.
                    for _ in 0..1000 {
                        let Some(head) = read_request(&mut s) else {
                            return;
                        };
                        heads3.lock().unwrap().push(head.clone());
                        serve(&head, &mut s, &stop3);
                        if stop3.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                }));
            }
            stop2.store(true, Ordering::SeqCst);
            for w in workers {
                let _ = w.join();
            }
        });
        StreamServer {
            addr,
            stop,
            conns,
            heads,
            handle: Some(handle),
        }
    }

    fn endpoint(&self) -> String {
        endpoint(self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

impl Drop for StreamServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Writes `bytes` one at a time, `every` apart, until done, a write fails or `stop` is set.
fn trickle(s: &mut TcpStream, bytes: &[u8], every: Duration, stop: &AtomicBool) {
    for b in bytes.chunks(1) {
        if stop.load(Ordering::SeqCst) || s.write_all(b).and_then(|_| s.flush()).is_err() {
            return;
        }
        std::thread::sleep(every);
    }
}

/// A minimal OSS for the fake servers: answers by request line. `part` answers UploadPart.
fn oss_reply(head: &str, upload_id: &str, part: &dyn Fn() -> Vec<u8>) -> Vec<u8> {
    let line = head.lines().next().unwrap_or("");
    let xml = |body: String| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
             x-oss-request-id: R1\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    if line.starts_with("POST") && line.contains("?uploads") {
        xml(format!(
            "<InitiateMultipartUploadResult><Bucket>bkt</Bucket><Key>k</Key>\
             <UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
        ))
    } else if line.starts_with("PUT") {
        part()
    } else if line.starts_with("GET") && line.contains("uploadId=") {
        xml("<ListPartsResult><IsTruncated>false</IsTruncated></ListPartsResult>".into())
    } else if line.starts_with("GET") && line.contains("uploads") {
        xml(
            "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
             </ListMultipartUploadsResult>"
                .into(),
        )
    } else if line.starts_with("POST") && line.contains("uploadId=") {
        xml("<CompleteMultipartUploadResult><ETag>\"M-1\"</ETag>\
             </CompleteMultipartUploadResult>"
            .into())
    } else if line.starts_with("DELETE") {
        b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec()
    } else if line.starts_with("HEAD") {
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
    } else {
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec()
    }
}

/// Runs `ossup upload` of `file` to `ep` with a short retry budget, polling its peak RSS.
/// Returns the output and the last `VmHWM` seen (KiB).
fn run_upload(ep: &str, file: &Path, ck: &Path, extra: &[&str], max: Duration) -> (Output, u64) {
    let child = upload(ep, file, "k", ck)
        .args(["--retry-for", "2s", "--idle-timeout", "2s"])
        .args(extra)
        .timeout(max)
        .spawn();
    let pid = child.id();
    let hwm = Arc::new(AtomicU32::new(0));
    let hwm2 = hwm.clone();
    let done = Arc::new(AtomicBool::new(false));
    let done2 = done.clone();
    let poll = std::thread::spawn(move || {
        let deadline = Instant::now() + max;
        while !done2.load(Ordering::SeqCst) && Instant::now() < deadline {
            if let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/status")) {
                if let Some(kb) = s
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u32>().ok())
                {
                    hwm2.fetch_max(kb, Ordering::SeqCst);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let out = finish(child, max, "upload against a hostile server");
    done.store(true, Ordering::SeqCst);
    let _ = poll.join();
    (out, u64::from(hwm.load(Ordering::SeqCst)))
}

fn journal_bytes(ck: &Path) -> u64 {
    journals(ck)
        .iter()
        .map(|p| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .sum()
}

fn assert_bounded_failure(out: &Output, took: Duration, limit: Duration) {
    assert!(
        matches!(out.code, 75 | 78),
        "exit {}; stderr:\n{}",
        out.code,
        out.stderr
    );
    out.single_error_line();
    assert!(took < limit, "took {took:?}");
}

/// Item 1: an endless stream of `100 Continue` heads ends the exchange (malformed) instead
/// of spinning for ever; the run ends with the retry budget.
#[test]
fn endless_100_continue_is_bounded() {
    let srv = StreamServer::start(|_, s, stop| {
        let t = Instant::now();
        while !stop.load(Ordering::SeqCst) && t.elapsed() < Duration::from_secs(60) {
            if s.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err() {
                return;
            }
        }
    });
    let tmp = TempDir::new("hostile-100");
    let file = tmp.join("f.bin");
    write_file(&file, 1000, 1);
    let t = Instant::now();
    let (out, hwm) = run_upload(
        &srv.endpoint(),
        &file,
        &tmp.join("ck"),
        &[],
        Duration::from_secs(40),
    );
    println!(
        "endless 100-continue: exit {} in {:?}, VmHWM {hwm} KiB",
        out.code,
        t.elapsed()
    );
    assert_bounded_failure(&out, t.elapsed(), Duration::from_secs(30));
    assert!(srv.conns.load(Ordering::SeqCst) >= 1);
    assert!(srv.heads().iter().all(|h| !h.is_empty()));
}

/// Item 2: a response head trickled at one byte per second is never idle for 2 s, yet the
/// exchange ends at its deadline, and the stall counts against `--retry-for`.
#[test]
fn a_head_trickled_at_one_byte_per_second_is_bounded() {
    let srv = StreamServer::start(|_, s, stop| {
        let mut head = b"HTTP/1.1 200 OK\r\nx-pad: ".to_vec();
        head.extend(std::iter::repeat_n(b'a', 200));
        trickle(s, &head, Duration::from_millis(1000), stop);
    });
    let tmp = TempDir::new("hostile-trickle-head");
    let file = tmp.join("f.bin");
    write_file(&file, 1000, 1);
    let t = Instant::now();
    let (out, _) = run_upload(
        &srv.endpoint(),
        &file,
        &tmp.join("ck"),
        &[],
        Duration::from_secs(60),
    );
    println!("trickled head: exit {} in {:?}", out.code, t.elapsed());
    assert_bounded_failure(&out, t.elapsed(), Duration::from_secs(40));
}

/// Item 2: the same for a body: 4 KiB announced, one byte per second.
#[test]
fn a_body_trickled_at_one_byte_per_second_is_bounded() {
    let srv = StreamServer::start(|_, s, stop| {
        if s.write_all(b"HTTP/1.1 200 OK\r\nETag: \"E\"\r\nContent-Length: 4096\r\n\r\n")
            .is_err()
        {
            return;
        }
        trickle(s, &[b'a'; 4096], Duration::from_millis(1000), stop);
    });
    let tmp = TempDir::new("hostile-trickle-body");
    let file = tmp.join("f.bin");
    write_file(&file, 1000, 1);
    let t = Instant::now();
    let (out, _) = run_upload(
        &srv.endpoint(),
        &file,
        &tmp.join("ck"),
        &[],
        Duration::from_secs(60),
    );
    println!("trickled body: exit {} in {:?}", out.code, t.elapsed());
    assert_bounded_failure(&out, t.elapsed(), Duration::from_secs(40));
}

/// Flags for a multipart upload of a small file (3 parts of 100 KiB).
const MULTIPART: &[&str] = &["--part-size", "100K", "--threshold", "100K"];

/// Item 3: 16 KB ETags on every part are malformed answers: never journaled (the journal
/// stays small however often it runs), memory stays flat.
#[test]
fn huge_etags_are_refused_and_never_journaled() {
    let big = format!("\"{}\"", "e".repeat(16 * 1024));
    let srv = FakeServer::start(move |head| {
        oss_reply(head, "U-1", &|| {
            format!("HTTP/1.1 200 OK\r\nETag: {big}\r\nContent-Length: 0\r\n\r\n").into_bytes()
        })
    });
    let tmp = TempDir::new("hostile-etag");
    let file = tmp.join("f.bin");
    write_file(&file, 300 << 10, 1);
    let ck = tmp.join("ck");
    let mut worst = 0;
    for run in 0..3 {
        let t = Instant::now();
        let (out, hwm) = run_upload(&srv.endpoint(), &file, &ck, MULTIPART, RUN_TIMEOUT);
        worst = worst.max(hwm);
        println!(
            "16 KB ETags, run {run}: exit {} in {:?}, VmHWM {hwm} KiB, journal {} B",
            out.code,
            t.elapsed(),
            journal_bytes(&ck)
        );
        assert_bounded_failure(&out, t.elapsed(), Duration::from_secs(30));
    }
    assert!(
        journal_bytes(&ck) < 4096,
        "journal {} B",
        journal_bytes(&ck)
    );
    assert!(worst < 64 * 1024, "peak RSS {worst} KiB");
    let completes = srv
        .heads()
        .iter()
        .filter(|h| h.starts_with("POST") && h.contains("uploadId="))
        .count();
    assert_eq!(completes, 0, "Complete sent with refused ETags");
}

/// Item 6: a 900 KB upload id is a malformed Initiate answer: never written to the journal
/// (where it would be dropped as a torn tail and start a new upload on every run).
#[test]
fn a_huge_upload_id_is_refused_and_never_journaled() {
    let id = "u".repeat(900 * 1024);
    let srv = FakeServer::start(move |head| {
        oss_reply(head, &id, &|| {
            b"HTTP/1.1 200 OK\r\nETag: \"E\"\r\nContent-Length: 0\r\n\r\n".to_vec()
        })
    });
    let tmp = TempDir::new("hostile-upload-id");
    let file = tmp.join("f.bin");
    write_file(&file, 300 << 10, 1);
    let ck = tmp.join("ck");
    let t = Instant::now();
    let (out, hwm) = run_upload(&srv.endpoint(), &file, &ck, MULTIPART, RUN_TIMEOUT);
    println!(
        "900 KB upload id: exit {} in {:?}, VmHWM {hwm} KiB, journal {} B",
        out.code,
        t.elapsed(),
        journal_bytes(&ck)
    );
    assert_bounded_failure(&out, t.elapsed(), Duration::from_secs(30));
    assert!(
        journal_bytes(&ck) < 4096,
        "journal {} B",
        journal_bytes(&ck)
    );
    let parts = srv.heads().iter().filter(|h| h.starts_with("PUT")).count();
    assert_eq!(parts, 0, "parts sent under a refused upload id");
}

/// Item 7: an UploadPart 200 without an ETag is malformed: the part is never recorded and
/// Complete is never sent with empty ETags.
#[test]
fn a_part_answer_without_etag_never_leads_to_complete() {
    let srv = FakeServer::start(|head| {
        oss_reply(head, "U-1", &|| {
            b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()
        })
    });
    let tmp = TempDir::new("hostile-no-etag");
    let file = tmp.join("f.bin");
    write_file(&file, 300 << 10, 1);
    let ck = tmp.join("ck");
    let t = Instant::now();
    let (out, _) = run_upload(&srv.endpoint(), &file, &ck, MULTIPART, RUN_TIMEOUT);
    println!("no ETag: exit {} in {:?}", out.code, t.elapsed());
    assert_bounded_failure(&out, t.elapsed(), Duration::from_secs(30));
    let heads = srv.heads();
    assert!(heads.iter().any(|h| h.starts_with("PUT")), "{heads:?}");
    assert!(
        !heads
            .iter()
            .any(|h| h.starts_with("POST") && h.contains("uploadId=")),
        "Complete was sent: {heads:?}"
    );
    // And a PutObject answered without an ETag is no success either.
    let small = tmp.join("small.bin");
    write_file(&small, 1000, 2);
    let (out, _) = run_upload(&srv.endpoint(), &small, &tmp.join("ck2"), &[], RUN_TIMEOUT);
    assert_ne!(out.code, 0, "PutObject without ETag counted as uploaded");
}

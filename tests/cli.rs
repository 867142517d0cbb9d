//! End-to-end tests of the `ossup` binary (and the library API) against `ossup serve` on
//! 127.0.0.1: part boundaries, awkward keys, resume after SIGKILL, progress, `status`,
//! `abort`, object headers and S3 SigV4.
#![cfg(feature = "serve")]

mod support;

use std::cell::{Cell, RefCell};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ossup::proto::checkpoint::Record;
use ossup::{Config, Destination, Endpoint};
use support::*;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// The `(N parts, M resumed` numbers of the final `uploaded ...` log line.
fn parts_and_resumed(stderr: &str) -> (u32, u32) {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("ossup: info: uploaded "))
        .unwrap_or_else(|| panic!("no 'uploaded' line in:\n{stderr}"));
    let inner = line.rsplit_once(" (").expect("( in the uploaded line").1;
    let mut nums = inner
        .split(", ")
        .map(|s| s.split(' ').next().unwrap_or("").parse::<u32>());
    let parts = nums.next().and_then(Result::ok).expect("parts count");
    let resumed = nums.next().and_then(Result::ok).expect("resumed count");
    (parts, resumed)
}

#[test]
fn sizes_around_part_boundaries() {
    let tmp = TempDir::new("cli-sizes");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let part = 256 * KIB;

    // (name, size, extra flags, expected parts: 0 = single PutObject)
    let cases: Vec<(&str, usize, Vec<String>, u32)> = vec![
        ("empty", 0, vec![], 0),
        ("one-byte", 1, vec![], 0),
        (
            "below-threshold",
            part - 1,
            vec!["--threshold".into(), "256KiB".into()],
            0,
        ),
        (
            "exactly-one-part",
            part,
            vec!["--threshold".into(), "256KiB".into()],
            1,
        ),
        (
            "one-byte-over",
            part + 1,
            vec!["--threshold".into(), "256KiB".into()],
            2,
        ),
        ("many-jobs1", 5 * MIB, vec!["--jobs".into(), "1".into()], 20),
        (
            "many-jobs4",
            5 * MIB + 7,
            vec!["--jobs".into(), "4".into()],
            21,
        ),
        (
            "min-part",
            1000 * KIB,
            [
                "--part-size",
                "100KiB",
                "--threshold",
                "100KiB",
                "--jobs",
                "3",
            ]
            .map(String::from)
            .to_vec(),
            10,
        ),
    ];
    for (i, (name, size, extra, want_parts)) in cases.iter().enumerate() {
        let file = tmp.join(name);
        let data = write_file(&file, *size, i as u64 + 1);
        let before = server.stats();
        let key = format!("sizes/{name}");
        let mut cmd =
            upload(&ep, &file, &key, &ck).args(["--part-size", "256KiB", "--threshold", "1MiB"]);
        cmd = cmd.args(extra); // later flags win
        let out = cmd.run();
        out.expect_code(0);
        assert!(out.error_lines().is_empty(), "{name}: {}", out.stderr);
        let (parts, resumed) = parts_and_resumed(&out.stderr);
        assert_eq!((parts, resumed), (*want_parts, 0), "{name}: {}", out.stderr);
        let after = server.stats();
        if *want_parts == 0 {
            assert_eq!(after.puts, before.puts + 1, "{name}: one PutObject");
            assert_eq!(after.initiated, before.initiated, "{name}: no multipart");
        } else {
            assert_eq!(
                after.initiated,
                before.initiated + 1,
                "{name}: one multipart upload"
            );
            assert_eq!(after.completed, before.completed + 1, "{name}");
            assert_eq!(
                after.parts_stored,
                before.parts_stored + u64::from(*want_parts),
                "{name}"
            );
            assert_eq!(after.puts, before.puts, "{name}: no PutObject");
        }
        assert!(
            after.bytes_received - before.bytes_received >= *size as u64,
            "{name}"
        );
        let got =
            read_object(&srv_dir, BUCKET, &key).unwrap_or_else(|| panic!("{name}: object missing"));
        assert_eq!(got.len(), data.len(), "{name}: length");
        assert!(got == data, "{name}: content differs");
        assert!(journals(&ck).is_empty(), "{name}: journal left behind");
    }
    assert_eq!(server.stats().open_uploads, 0);
    server.stop();
}

#[test]
fn awkward_keys_round_trip() {
    let tmp = TempDir::new("cli-keys");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let small = tmp.join("small");
    let small_data = write_file(&small, 3000, 7);
    let big = tmp.join("big");
    let big_data = write_file(&big, 300 * KIB, 8);
    // 1020 bytes, 1023 (the limit) with ".mp": the server stores both under hashed names.
    let long_key = format!("long/{}", "k".repeat(1015));
    assert_eq!(long_key.len() + 3, 1023);
    let keys = [
        "with space/and more spaces .txt",
        "plus+sign+key",
        "percent%20not-decoded%2F%",
        "non-ascii/中文/ключ/ü.bin",
        "double//slash///inside",
        "query?x=1&y=2#frag",
        // A key ending in `/` means "into this prefix" (issue 14 item 5): tested in
        // `tests/newcomer.rs`. A key with a slash inside stays as given:
        "trailing/x",
        "tilde~star*paren(1)'quote'",
        long_key.as_str(),
    ];
    for key in keys {
        for (file, data, multipart) in [(&small, &small_data, false), (&big, &big_data, true)] {
            let k = format!("{key}{}", if multipart { ".mp" } else { "" });
            let out = upload(&ep, file, &k, &ck)
                .args(["--part-size", "100KiB", "--threshold", "200KiB", "-q"])
                .run();
            out.expect_code(0);
            let got = read_object(&srv_dir, BUCKET, &k).unwrap_or_else(|| panic!("{k:?} missing"));
            assert!(&got == data, "{k:?}: content differs");
            let side = read_sidecar(&srv_dir, BUCKET, &k).expect("sidecar");
            let stored_key = side
                .lines()
                .find_map(|l| l.strip_prefix("key "))
                .map(percent_decode)
                .expect("key line in the sidecar");
            assert_eq!(stored_key, k, "the server saw a different key");
        }
    }
    let s = server.stats();
    assert_eq!(
        (s.puts, s.completed, s.open_uploads),
        (keys.len() as u64, keys.len() as u64, 0)
    );
    server.stop();
}

/// Decodes `%XX` escapes (the sidecar's value encoding).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        if let (b'%', Some(Ok(v))) = (b[i], hex.map(|h| u8::from_str_radix(h, 16))) {
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).expect("UTF-8")
}

/// Starts a rate-limited multipart upload of `file` and SIGKILLs it once the server stored
/// `min_parts` parts. Returns the parts stored at that point.
fn start_and_kill(
    ep: &str,
    file: &Path,
    key: &str,
    ck: &Path,
    server: &ossup::serve::Server,
    min_parts: u64,
) -> u64 {
    let before = server.stats().parts_stored;
    let mut child = upload(ep, file, key, ck)
        .args([
            "--part-size",
            "256KiB",
            "--threshold",
            "256KiB",
            "--limit-rate",
            "768KiB/s",
            "-q",
        ])
        .spawn();
    let reached = wait_until(Duration::from_secs(30), || {
        server.stats().parts_stored >= before + min_parts
    });
    child.kill().expect("SIGKILL ossup");
    let status = child.wait().expect("wait");
    assert!(
        reached,
        "the upload did not store {min_parts} parts in time"
    );
    assert_eq!(
        status.code(),
        None,
        "ossup finished before it could be killed"
    );
    server.stats().parts_stored - before
}

#[test]
fn resume_after_sigkill_and_status() {
    let tmp = TempDir::new("cli-resume");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let file = tmp.join("big.bin");
    let len = 3 * MIB;
    let data = write_file(&file, len, 42);
    let key = "resume/big.bin";

    let stored = start_and_kill(&ep, &file, key, &ck, &server, 3);
    assert!(stored < 12, "everything was sent before the kill");
    let j = journals(&ck);
    assert_eq!(j.len(), 1, "one journal after the kill: {j:?}");
    assert_eq!(server.stats().open_uploads, 1);

    // `ossup status` lists it as stopped, with the destination and part counts.
    let st = Ossup::new()
        .arg("status")
        .arg("--checkpoint-dir")
        .arg(&ck)
        .run();
    st.expect_code(0);
    let line = st
        .stdout
        .lines()
        .find(|l| l.contains("oss://bkt/resume/big.bin"))
        .unwrap_or_else(|| panic!("status does not list the upload:\n{}", st.stdout));
    assert!(line.contains("/12 parts"), "{line}");
    assert!(line.contains("stopped"), "{line}");
    assert!(line.contains(&*file.to_string_lossy()), "{line}");
    let done: u32 = line
        .split("  ")
        .find_map(|f| f.strip_suffix("/12 parts"))
        .and_then(|n| n.trim().parse().ok())
        .expect("done count");
    assert!((1..12).contains(&done), "{line}");

    // The second run resumes: no new Initiate, well under twice the bytes.
    let t = Instant::now();
    let out = upload(&ep, &file, key, &ck)
        .args(["--part-size", "256KiB", "--threshold", "256KiB"])
        .run();
    out.expect_code(0);
    let (parts, resumed) = parts_and_resumed(&out.stderr);
    assert_eq!(parts, 12);
    assert!(
        resumed >= done,
        "resumed {resumed} < {done} journaled parts: {}",
        out.stderr
    );
    let s = server.stats();
    assert_eq!(s.initiated, 1, "resume must not initiate again");
    assert_eq!(s.completed, 1);
    assert_eq!(s.open_uploads, 0);
    assert!(s.bytes_received < 2 * len as u64, "re-sent too much: {s:?}");
    assert!(s.parts_stored <= 12 + stored, "{s:?}");
    assert!(
        read_object(&srv_dir, BUCKET, key).expect("object") == data,
        "content differs"
    );
    assert!(journals(&ck).is_empty(), "journal left after success");
    assert!(t.elapsed() < Duration::from_secs(20));
    let st = Ossup::new()
        .arg("status")
        .arg("--checkpoint-dir")
        .arg(&ck)
        .run();
    st.expect_code(0);
    assert!(st.stdout.contains("no unfinished uploads"), "{}", st.stdout);
    server.stop();
}

#[test]
fn abort_an_unfinished_upload() {
    let tmp = TempDir::new("cli-abort");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let file = tmp.join("big.bin");
    write_file(&file, 3 * MIB, 43);
    let key = "abort/big.bin";
    start_and_kill(&ep, &file, key, &ck, &server, 2);
    assert_eq!(journals(&ck).len(), 1);
    assert_eq!(server.stats().open_uploads, 1);

    let out = Ossup::new()
        .creds(AK, SK)
        .arg("abort")
        .arg(&file)
        .arg(format!("oss://{BUCKET}/{key}"))
        .args(["--endpoint", &ep, "--region", REGION, "--checkpoint-dir"])
        .arg(&ck)
        .run();
    out.expect_code(0);
    assert!(out.stderr.contains("aborted 1 upload"), "{}", out.stderr);
    let s = server.stats();
    assert_eq!((s.aborted, s.open_uploads), (1, 0), "{s:?}");
    assert!(journals(&ck).is_empty(), "journal still there after abort");
    assert!(
        read_object(&srv_dir, BUCKET, key).is_none(),
        "an aborted upload left an object"
    );
    // The server's upload directory has no parts left.
    let left = std::fs::read_dir(srv_dir.join(".ossup-uploads"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(left, 0, "parts left on the server");

    // Aborting again finds nothing and still succeeds.
    let again = Ossup::new()
        .creds(AK, SK)
        .arg("abort")
        .arg(&file)
        .arg(format!("oss://{BUCKET}/{key}"))
        .args(["--endpoint", &ep, "--region", REGION, "--checkpoint-dir"])
        .arg(&ck)
        .run();
    again.expect_code(0);
    assert!(
        again.stderr.contains("no unfinished upload"),
        "{}",
        again.stderr
    );
    assert_eq!(server.stats().aborted, 1);
    server.stop();
}

fn library_config(ep: &str, ck: &Path) -> Config {
    let mut cfg = Config::new(
        Endpoint::parse(ep).unwrap(),
        REGION,
        credentials(),
        ck.to_path_buf(),
    );
    cfg.part_size = 256 << 10;
    cfg.multipart_threshold = 256 << 10;
    cfg
}

fn assert_monotonic(calls: &[(u64, u64)], total: u64) {
    assert!(!calls.is_empty(), "no progress reported");
    for w in calls.windows(2) {
        assert!(
            w[1].0 >= w[0].0,
            "progress went backwards: {:?} -> {:?}",
            w[0],
            w[1]
        );
    }
    assert!(
        calls.iter().all(|&(d, t)| t == total && d <= total),
        "{calls:?}"
    );
    assert_eq!(
        calls.last().unwrap().0,
        total,
        "progress did not end at the total"
    );
}

#[test]
fn library_progress_is_monotonic_including_resume() {
    let tmp = TempDir::new("cli-progress");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let file = tmp.join("f.bin");
    let len = 3 * MIB as u64;
    let data = write_file(&file, len as usize, 5);

    for jobs in [1u32, 4] {
        let mut cfg = library_config(&ep, &ck);
        cfg.jobs = jobs;
        let dest = Destination::parse(&format!("oss://{BUCKET}/progress/jobs{jobs}")).unwrap();
        let mut calls = Vec::new();
        let up = ossup::upload_file_blocking(&cfg, &file, &dest, &mut |d, t| calls.push((d, t)))
            .expect("upload");
        assert_eq!((up.parts, up.parts_resumed), (12, 0));
        assert_monotonic(&calls, len);
        assert!(read_object(&srv_dir, BUCKET, &dest.key).unwrap() == data);
    }

    // Empty file: one callback at (0, 0) at most, and never a bogus total.
    let empty = tmp.join("empty");
    std::fs::write(&empty, b"").unwrap();
    let dest = Destination::parse(&format!("oss://{BUCKET}/progress/empty")).unwrap();
    let mut calls = Vec::new();
    ossup::upload_file_blocking(&library_config(&ep, &ck), &empty, &dest, &mut |d, t| {
        calls.push((d, t))
    })
    .unwrap();
    assert!(calls.iter().all(|&c| c == (0, 0)), "{calls:?}");
    assert_eq!(
        read_object(&srv_dir, BUCKET, "progress/empty")
            .unwrap()
            .len(),
        0
    );

    // Interrupt an upload (drop the future) once 40% is on the wire, then resume: the
    // resumed run's first report is at least what the journal says was already uploaded.
    let dest = Destination::parse(&format!("oss://{BUCKET}/progress/resumed")).unwrap();
    let mut cfg = library_config(&ep, &ck);
    cfg.limit_rate = Some(2 << 20);
    let stop = Rc::new(Cell::new(false));
    let first_calls = RefCell::new(Vec::new());
    {
        let stop2 = stop.clone();
        let mut progress = |d: u64, t: u64| {
            first_calls.borrow_mut().push((d, t));
            if d >= len * 4 / 10 {
                stop2.set(true);
            }
        };
        let upload = async { Some(ossup::upload_file(&cfg, &file, &dest, &mut progress).await) };
        let stopper = async {
            for _ in 0..3000 {
                if stop.get() {
                    break;
                }
                async_io::Timer::after(Duration::from_millis(5)).await;
            }
            None
        };
        let r = async_io::block_on(futures_lite::future::or(upload, stopper));
        assert!(
            r.is_none(),
            "the upload finished before it could be interrupted"
        );
    }
    let first_calls = first_calls.into_inner();
    for w in first_calls.windows(2) {
        assert!(w[1].0 >= w[0].0, "first run went backwards: {w:?}");
    }
    let j = journals(&ck);
    assert_eq!(j.len(), 1, "{j:?}");
    let (_, replay) = ossup::io::journal::Journal::open(&j[0])
        .unwrap()
        .expect("journal");
    let replay = replay.expect("a readable journal");
    let mut done = std::collections::BTreeMap::new();
    for r in &replay.records {
        if let Record::PartDone { n, len, .. } = r {
            done.insert(*n, *len);
        }
    }
    let journaled: u64 = done.values().sum();
    assert!(
        journaled > 0 && journaled < len,
        "journaled {journaled} of {len}"
    );

    let mut calls = Vec::new();
    cfg.limit_rate = None;
    let up = ossup::upload_file_blocking(&cfg, &file, &dest, &mut |d, t| calls.push((d, t)))
        .expect("resume");
    assert!(
        up.parts_resumed as usize >= done.len(),
        "{up:?} vs {} journaled",
        done.len()
    );
    assert_monotonic(&calls, len);
    assert!(
        calls[0].0 >= journaled,
        "the resumed run started reporting at {} although {journaled} bytes were already uploaded",
        calls[0].0
    );
    // Every part here is 256 KiB, so the resumed amount is exactly parts_resumed parts (which
    // can exceed the journal: a part the server stored before the drop is found by ListParts).
    assert_eq!(
        calls[0].0,
        u64::from(up.parts_resumed) * (256 << 10),
        "the first report should be the resumed amount: {:?}",
        &calls[..calls.len().min(3)]
    );
    assert!(read_object(&srv_dir, BUCKET, &dest.key).unwrap() == data);
    let s = server.stats();
    assert_eq!(
        s.initiated, 3,
        "jobs1, jobs4 and one for the interrupted-and-resumed upload"
    );
    assert_eq!(s.open_uploads, 0);
    server.stop();
}

#[test]
fn content_type_reaches_the_server() {
    let tmp = TempDir::new("cli-ctype");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let small = tmp.join("small.txt");
    write_file(&small, 100, 1);
    let big = tmp.join("big.txt");
    write_file(&big, 300 * KIB, 2);
    let ct = "text/plain; charset=utf-8";
    for (file, key) in [(&small, "ct/small.txt"), (&big, "ct/big.txt")] {
        upload(&ep, file, key, &ck)
            .args([
                "--content-type",
                ct,
                "--meta",
                "color=blue",
                "--part-size",
                "100KiB",
                "--threshold",
                "200KiB",
                "-q",
            ])
            .run()
            .expect_code(0);
        // The sidecar keeps the content type. User metadata is not stored by `ossup serve`
        // (its sidecar has no field for it); `meta_reaches_the_wire` checks it on the wire.
        let side = read_sidecar(&srv_dir, BUCKET, key).expect("sidecar");
        let got = side
            .lines()
            .find_map(|l| l.strip_prefix("content-type "))
            .map(percent_decode);
        assert_eq!(got.as_deref(), Some(ct), "{key}: sidecar:\n{side}");
    }
    server.stop();
}

/// A one-connection fake server that records the request head and refuses it with 403.
#[test]
fn meta_reaches_the_wire() {
    let tmp = TempDir::new("cli-meta");
    let file = tmp.join("f.txt");
    write_file(&file, 10, 3);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recorder = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        // Read the 10-byte body too: closing with unread data resets the connection, which
        // the client may see before the answer (a flaky "cannot connect" under load).
        let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
        if let Some(end) = head_end {
            let mut have = buf.len() - end;
            while have < 10 {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => have += n,
                }
            }
        }
        let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                    <Message>recorded</Message><RequestId>REQ-META-1</RequestId></Error>";
        let _ = write!(
            s,
            "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\nx-oss-request-id: REQ-META-1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        String::from_utf8_lossy(&buf).into_owned()
    });
    let out = upload(&endpoint(addr), &file, "m/k", &tmp.join("ck"))
        .args([
            "--meta",
            "color=blue",
            "--meta",
            "Build-Id=42",
            "--content-type",
            "text/x-test",
            "--retry-for",
            "1s",
        ])
        .run();
    let head = recorder.join().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("put /bkt/m/k "), "{head}");
    assert!(head.contains("\r\nx-oss-meta-color: blue\r\n"), "{head}");
    assert!(head.contains("\r\nx-oss-meta-build-id: 42\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-type: text/x-test\r\n"), "{head}");
    out.expect_code(77);
    let line = out.single_error_line();
    assert!(
        line.contains("AccessDenied") && line.contains("REQ-META-1"),
        "{line}"
    );
}

#[test]
fn s3_v4_against_serve() {
    let tmp = TempDir::new("cli-s3");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let big = tmp.join("big");
    let big_data = write_file(&big, 700 * KIB, 11);
    let small = tmp.join("small");
    let small_data = write_file(&small, 5000, 12);

    // OSS_* credentials (the fallback for s3-v4), multipart with Content-MD5 (the s3 default).
    let out = upload(&ep, &big, "s3/big key+1", &ck)
        .args([
            "--signature",
            "s3-v4",
            "--allow-small-parts",
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "--jobs",
            "3",
        ])
        .run();
    out.expect_code(0);
    assert_eq!(parts_and_resumed(&out.stderr), (7, 0));
    assert!(read_object(&srv_dir, BUCKET, "s3/big key+1").unwrap() == big_data);

    // AWS_* credentials win for s3-v4; a single PutObject.
    let out = Ossup::new()
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SK)
        .env("OSS_ACCESS_KEY_ID", "wrong-id")
        .env("OSS_ACCESS_KEY_SECRET", "wrong-secret")
        .arg("upload")
        .arg(&small)
        .arg(format!("s3://{BUCKET}/s3/small"))
        .args([
            "--endpoint",
            &ep,
            "--region",
            REGION,
            "--signature",
            "s3-v4",
            "--checkpoint-dir",
        ])
        .arg(&ck)
        .run();
    out.expect_code(0);
    assert!(read_object(&srv_dir, BUCKET, "s3/small").unwrap() == small_data);

    // A wrong secret is refused with 77 and one line naming the code.
    let out = upload(&ep, &big, "s3/refused", &ck)
        .env("OSS_ACCESS_KEY_SECRET", "not-the-secret")
        .args([
            "--signature",
            "s3-v4",
            "--allow-small-parts",
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
        ])
        .run();
    out.expect_code(77);
    let line = out.single_error_line();
    assert!(line.contains("SignatureDoesNotMatch"), "{line}");
    let s = server.stats();
    assert_eq!((s.completed, s.puts, s.open_uploads), (1, 1, 0), "{s:?}");
    server.stop();
}

#[test]
fn serve_subprocess_round_trip() {
    let tmp = TempDir::new("cli-serveproc");
    let srv_dir = tmp.join("srv");
    let serve = ServeProcess::start(&srv_dir, &[]);
    let ck = tmp.join("ck");
    let file = tmp.join("f");
    let data = write_file(&file, 600 * KIB + 3, 21);
    let out = upload(&serve.endpoint(), &file, "proc/f", &ck)
        .args([
            "--part-size",
            "200KiB",
            "--threshold",
            "200KiB",
            "--jobs",
            "2",
        ])
        .run();
    out.expect_code(0);
    assert_eq!(parts_and_resumed(&out.stderr), (4, 0));
    let st = stats_json(serve.addr);
    assert_eq!(st["initiated"], 1, "{st}");
    assert_eq!(st["completed"], 1, "{st}");
    assert_eq!(st["parts_stored"], 4, "{st}");
    assert_eq!(st["open_uploads"], 0, "{st}");
    assert!(
        st["bytes_received"].as_u64().unwrap() >= data.len() as u64,
        "{st}"
    );
    assert!(read_object(&srv_dir, BUCKET, "proc/f").unwrap() == data);
    // The subprocess checks signatures too.
    let out = upload(&serve.endpoint(), &file, "proc/g", &ck)
        .env("OSS_ACCESS_KEY_ID", "someone-else")
        .run();
    out.expect_code(77);
    assert!(
        out.single_error_line().contains("InvalidAccessKeyId"),
        "{}",
        out.stderr
    );
}

//! Issue 11, item 10: servers that speak the protocol with other spellings, and servers that
//! do not speak it at all. A scripted server on 127.0.0.1 plays each.
//!
//! - A result document whose root is named differently (moto 5.2.5 answers ListParts with
//!   `<ListPartsResponse>`) is read by its content: a resumed upload finishes.
//! - A well-formed 200 that is not the document asked for (a captive portal's HTML page)
//!   stops the run after a few identical answers with 78 and the reason, instead of being
//!   retried for the whole `--retry-for` budget.

#![cfg(feature = "serve")]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

const MULTIPART: &[&str] = &["--part-size", "100K", "--threshold", "100K"];

fn xml(body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         x-oss-request-id: R-{}\r\n\r\n{body}",
        body.len(),
        body.len()
    )
    .into_bytes()
}

/// A first run stops after part 1 (the server fails the rest); the second run resumes, and
/// this server lists the parts in a `<ListPartsResponse>`: the upload must finish.
#[test]
fn a_list_parts_response_root_is_read_by_its_content() {
    let failing = Arc::new(AtomicBool::new(true));
    let failing2 = failing.clone();
    let srv = FakeServer::start(move |head| {
        let line = head.lines().next().unwrap_or("");
        if line.starts_with("POST") && line.contains("?uploads") {
            xml("<InitiateMultipartUploadResult><UploadId>U-1</UploadId>\
                 </InitiateMultipartUploadResult>")
        } else if line.starts_with("PUT") {
            if failing2.load(Ordering::SeqCst) && !line.contains("partNumber=1&") {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()
            } else {
                let n = line
                    .split("partNumber=")
                    .nth(1)
                    .and_then(|r| r.split(['&', ' ']).next())
                    .unwrap_or("0");
                format!("HTTP/1.1 200 OK\r\nETag: \"E{n}\"\r\nContent-Length: 0\r\n\r\n")
                    .into_bytes()
            }
        } else if line.starts_with("GET") && line.contains("uploadId=") {
            xml("<ListPartsResponse><IsTruncated>false</IsTruncated><Part><PartNumber>1</PartNumber>\
                 <ETag>\"E1\"</ETag><Size>102400</Size></Part></ListPartsResponse>")
        } else if line.starts_with("GET") && line.contains("uploads") {
            xml(
                "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
                 </ListMultipartUploadsResult>",
            )
        } else if line.starts_with("POST") && line.contains("uploadId=") {
            xml("<CompleteMultipartUploadResult><ETag>\"M-1\"</ETag>\
                 </CompleteMultipartUploadResult>")
        } else if line.starts_with("HEAD") {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
    });
    let tmp = TempDir::new("variants-listparts");
    let file = tmp.join("f.bin");
    write_file(&file, 300 << 10, 1);
    let ck = tmp.join("ck");
    let first = upload(&srv.endpoint(), &file, "k", &ck)
        .args(["--retry-for", "1s"])
        .args(MULTIPART)
        .timeout(Duration::from_secs(30))
        .run();
    first.expect_code(75);
    assert_eq!(journals(&ck).len(), 1, "the first run keeps its journal");
    failing.store(false, Ordering::SeqCst);
    let second = upload(&srv.endpoint(), &file, "k", &ck)
        .args(["--retry-for", "5s"])
        .args(MULTIPART)
        .timeout(Duration::from_secs(30))
        .run();
    println!("{}", second.stderr);
    second.expect_code(0);
    let heads = srv.heads();
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("GET") && h.contains("uploadId=U-1")),
        "the second run listed the parts"
    );
    let part1 = heads
        .iter()
        .filter(|h| h.starts_with("PUT") && h.contains("partNumber=1&"))
        .count();
    assert_eq!(part1, 1, "part 1 was resumed, not sent again");
}

/// A captive portal answers every request with its HTML login page (200, well-formed): the
/// run stops after a few of them with 78 and one line that says what was wrong, long before
/// the minute of retries it was allowed.
#[test]
fn a_captive_portal_page_stops_the_run_with_78() {
    let srv = FakeServer::start(|_| {
        let body = "<html><head><title>Hotel Wi-Fi</title></head><body>Sign in</body></html>";
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let tmp = TempDir::new("variants-portal");
    let file = tmp.join("f.bin");
    write_file(&file, 300 << 10, 1);
    let t = Instant::now();
    let out = upload(&srv.endpoint(), &file, "k", &tmp.join("ck"))
        .args(["--retry-for", "60s"])
        .args(MULTIPART)
        .timeout(Duration::from_secs(90))
        .run();
    println!("{} in {:?}", out.stderr, t.elapsed());
    out.expect_code(78);
    let line = out.single_error_line();
    assert!(line.contains("InitiateMultipartUploadResult"), "{line}");
    assert!(line.contains("--endpoint"), "{line}");
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

/// A store like s3rver: no ListParts (405), no AbortMultipartUpload (501). `failing` makes
/// every part but part 1 fail with 503; each Initiate hands out a new upload id.
fn no_list_no_abort(failing: Arc<AtomicBool>) -> FakeServer {
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    FakeServer::start(move |head| {
        let line = head.lines().next().unwrap_or("");
        let method_not_allowed = "<Error><Code>MethodNotAllowed</Code>\
            <Message>The specified method is not allowed against this resource.</Message></Error>";
        if line.starts_with("POST") && line.contains("?uploads") {
            let n = next.fetch_add(1, Ordering::SeqCst) + 1;
            xml(&format!(
                "<InitiateMultipartUploadResult><UploadId>U-{n}</UploadId>\
                 </InitiateMultipartUploadResult>"
            ))
        } else if line.starts_with("PUT") {
            if failing.load(Ordering::SeqCst) && !line.contains("partNumber=1&") {
                b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n".to_vec()
            } else {
                b"HTTP/1.1 200 OK\r\nETag: \"E\"\r\nContent-Length: 0\r\n\r\n".to_vec()
            }
        } else if line.starts_with("GET") && line.contains("uploadId=") {
            format!(
                "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\n\r\n{method_not_allowed}",
                method_not_allowed.len()
            )
            .into_bytes()
        } else if line.starts_with("DELETE") {
            b"HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else if line.starts_with("GET") && line.contains("uploads") {
            xml(
                "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated>\
                 </ListMultipartUploadsResult>",
            )
        } else if line.starts_with("POST") && line.contains("uploadId=") {
            xml("<CompleteMultipartUploadResult><ETag>\"M-1\"</ETag>\
                 </CompleteMultipartUploadResult>")
        } else if line.starts_with("HEAD") {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else {
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
    })
}

/// Item 11: a resumed upload to a server without ListParts starts over (and says so)
/// instead of exiting 78 on every run for ever; the old upload's abort, which this server
/// cannot do either, does not stop it.
#[test]
fn without_list_parts_a_resumed_upload_starts_over() {
    let failing = Arc::new(AtomicBool::new(true));
    let srv = no_list_no_abort(failing.clone());
    let tmp = TempDir::new("variants-nolist");
    let file = tmp.join("f.bin");
    write_file(&file, 300 << 10, 1);
    let ck = tmp.join("ck");
    let run = |retry: &str| {
        upload(&srv.endpoint(), &file, "k", &ck)
            .args(["--retry-for", retry])
            .args(MULTIPART)
            .timeout(Duration::from_secs(30))
            .run()
    };
    run("1s").expect_code(75);
    failing.store(false, Ordering::SeqCst);
    let second = run("5s");
    println!("{}", second.stderr);
    second.expect_code(0);
    assert!(
        second.stderr.contains("does not implement ListParts"),
        "{}",
        second.stderr
    );
    let heads = srv.heads();
    let initiates = heads
        .iter()
        .filter(|h| h.starts_with("POST") && h.contains("?uploads"))
        .count();
    assert_eq!(initiates, 2, "a fresh upload was started");
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("POST") && h.contains("uploadId=U-2")),
        "completed under the new upload id"
    );
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("DELETE") && h.contains("uploadId=U-1")),
        "the old upload was aborted (best effort)"
    );
}

/// Item 11: `ossup abort` against a server that cannot abort exits 78 and says what to do;
/// `ossup abort --forget` drops the local records, so that nothing is retried for ever.
#[test]
fn abort_forget_drops_a_record_the_server_cannot_act_on() {
    let failing = Arc::new(AtomicBool::new(true));
    let srv = no_list_no_abort(failing);
    let tmp = TempDir::new("variants-forget");
    let file = tmp.join("f.bin");
    write_file(&file, 300 << 10, 1);
    let ck = tmp.join("ck");
    upload(&srv.endpoint(), &file, "k", &ck)
        .args(["--retry-for", "1s"])
        .args(MULTIPART)
        .timeout(Duration::from_secs(30))
        .run()
        .expect_code(75);
    assert_eq!(journals(&ck).len(), 1);
    let abort = |forget: bool| {
        let mut o = Ossup::new()
            .creds(AK, SK)
            .arg("abort")
            .arg(&file)
            .arg(format!("oss://{BUCKET}/k"))
            .args(["--endpoint", &srv.endpoint(), "--region", REGION])
            .arg("--checkpoint-dir")
            .arg(&ck)
            .timeout(Duration::from_secs(30));
        if forget {
            o = o.arg("--forget");
        }
        o.run()
    };
    let plain = abort(false);
    plain.expect_code(78);
    let line = plain.single_error_line();
    assert!(line.contains("--forget"), "{line}");
    assert_eq!(journals(&ck).len(), 1, "a refused abort keeps the journal");
    let forgot = abort(true);
    println!("{}", forgot.stderr);
    forgot.expect_code(0);
    assert!(
        forgot.stderr.contains("forgot 1 upload(s)"),
        "{}",
        forgot.stderr
    );
    assert!(forgot.stderr.contains("U-1"), "{}", forgot.stderr);
    assert!(journals(&ck).is_empty(), "the journal is gone");
    let leftovers: Vec<_> = std::fs::read_dir(&ck)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".aborts"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Nothing left to do: a second forget is a no-op.
    abort(true).expect_code(0);
}

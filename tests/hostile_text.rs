//! Issue 11, item 9: text a server chose (error codes, messages, request ids) never reaches a
//! terminal or a log raw. A scripted server on 127.0.0.1 answers with ESC/CSI sequences, a C1
//! CSI, a bidi override and a newline that would forge a log line; every line ossup prints
//! (the final error and the debug log) must show them escaped.
//!
//! The escaping rule itself is unit-tested in `proto::text`.

#![cfg(feature = "serve")]

mod support;

use std::time::Duration;

use support::*;

const FORGED: &str = "ossup: info: uploaded /etc/shadow";

/// A reply's error document with hostile fields.
fn hostile_error(status: &str, request_id_header: &str) -> Vec<u8> {
    let body = format!(
        "<?xml version=\"1.0\"?><Error><Code>AccessDenied\x1b[2J</Code>\
         <Message>denied\x1b]0;owned\x07\n{FORGED}\r\u{202e}txt.exe</Message>\
         <RequestId>RID\x1b[31m</RequestId></Error>"
    );
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n",
        body.len()
    )
    .into_bytes();
    if !request_id_header.is_empty() {
        head.extend_from_slice(b"x-oss-request-id: ");
        head.extend_from_slice(request_id_header.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head.extend_from_slice(body.as_bytes());
    head
}

fn assert_clean(stderr: &str) {
    for (i, c) in stderr.chars().enumerate() {
        assert!(
            c == '\n' || !c.is_control(),
            "control character {c:?} at {i} reached stderr:\n{stderr:?}"
        );
        assert!(
            !matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'),
            "bidi override reached stderr:\n{stderr:?}"
        );
    }
    for line in stderr.lines() {
        assert!(!line.starts_with(FORGED), "forged log line: {line:?}");
    }
}

/// A fatal refusal (403) with hostile Code, Message and RequestId: the one error line shows
/// them escaped, and no forged line appears.
#[test]
fn a_refusal_with_terminal_sequences_is_printed_escaped() {
    let srv = FakeServer::start(|_| hostile_error("403 Forbidden", ""));
    let tmp = TempDir::new("hostile-text-403");
    let file = tmp.join("f.bin");
    write_file(&file, 1000, 1);
    let out = upload(&srv.endpoint(), &file, "k", &tmp.join("ck"))
        .args(["-vv", "--retry-for", "2s"])
        .timeout(Duration::from_secs(30))
        .run();
    println!("{}", out.stderr);
    assert_ne!(out.code, 0);
    assert_clean(&out.stderr);
    let line = out.single_error_line();
    assert!(line.contains("AccessDenied\\x1b[2J"), "{line}");
    assert!(
        line.contains("\\nossup: info: uploaded /etc/shadow\\r\\u{202e}"),
        "{line}"
    );
    assert!(line.contains("RID\\x1b[31m"), "{line}");
}

/// A retryable answer (503, repeated until the retry budget is spent) whose request id comes
/// in a header holding a C1 CSI (U+009B, which header syntax allows as obs-text): the give-up
/// line and every retry log line show it escaped.
#[test]
fn retried_answers_with_hostile_request_ids_are_logged_escaped() {
    let srv = FakeServer::start(|_| {
        let body = "<Error><Code>SlowDown\x1b[H</Code><Message>m\nossup: info: uploaded /etc/shadow</Message></Error>";
        format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: {}\r\n\
             x-oss-request-id: R\u{9b}2J\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    });
    let tmp = TempDir::new("hostile-text-503");
    let file = tmp.join("f.bin");
    write_file(&file, 1000, 1);
    let out = upload(&srv.endpoint(), &file, "k", &tmp.join("ck"))
        .args(["-vv", "--retry-for", "2s"])
        .timeout(Duration::from_secs(30))
        .run();
    println!("{}", out.stderr);
    out.expect_code(75);
    assert_clean(&out.stderr);
    assert!(out.stderr.contains("R\\u{9b}2J"), "{}", out.stderr);
}

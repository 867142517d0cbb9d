//! Issue 11, item 21: messages that named the wrong thing. A PutObject whose stored CRC-64
//! differs names PutObject (it said CompleteMultipartUpload); a credential that is not UTF-8
//! is named as such (it said "missing credentials"); `serve --help` states the default
//! listening address it really uses (it claimed port 9000 and bound a random one).

#![cfg(feature = "serve")]

mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::*;

#[test]
fn a_put_object_crc_mismatch_names_put_object() {
    let srv = FakeServer::start(|head| {
        if head.starts_with("PUT") {
            b"HTTP/1.1 200 OK\r\nETag: \"E\"\r\nx-oss-hash-crc64ecma: 12345\r\n\
              Content-Length: 0\r\n\r\n"
                .to_vec()
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
    });
    let tmp = TempDir::new("msg-put-crc");
    let file = tmp.join("f.bin");
    write_file(&file, 1000, 1);
    let out = upload(&srv.endpoint(), &file, "k", &tmp.join("ck"))
        .timeout(Duration::from_secs(30))
        .run();
    out.expect_code(65);
    let line = out.single_error_line();
    assert!(line.contains("PutObject"), "{line}");
    assert!(!line.contains("CompleteMultipartUpload"), "{line}");
}

#[test]
fn a_secret_that_is_not_utf8_is_named_not_missing() {
    use std::os::unix::ffi::OsStrExt;
    let tmp = TempDir::new("msg-utf8");
    let file = tmp.join("f.bin");
    write_file(&file, 10, 1);
    let mut cmd = upload("http://127.0.0.1:9", &file, "k", &tmp.join("ck")).into_command();
    cmd.env(
        "OSS_ACCESS_KEY_SECRET",
        std::ffi::OsStr::from_bytes(b"secr\xffet"),
    );
    let out = cmd.output().expect("run ossup");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("OSS_ACCESS_KEY_SECRET is not valid UTF-8"),
        "{stderr}"
    );
    assert!(!stderr.contains("missing credentials"), "{stderr}");
    assert!(
        !stderr.contains("secr"),
        "the value is never shown: {stderr}"
    );
}

#[test]
fn serve_help_states_the_default_it_uses() {
    let help = Ossup::new().arg("--help").run();
    let line = help
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("--listen"))
        .unwrap_or_else(|| panic!("no --listen in help:\n{}", help.stdout))
        .to_string();
    assert!(line.contains("127.0.0.1:0"), "{line}");
    assert!(!help.stdout.contains("9000"), "help still names port 9000");
    // And without --listen it does listen on 127.0.0.1, on some free port.
    let tmp = TempDir::new("msg-serve");
    let mut child = Ossup::new()
        .creds(AK, SK)
        .arg("serve")
        .arg(tmp.path())
        .into_command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut out = child.stdout.take().unwrap();
    let t = Instant::now();
    let mut text = String::new();
    let mut buf = [0u8; 256];
    while !text.contains('\n') && t.elapsed() < Duration::from_secs(20) {
        match out.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(text.contains("listening on http://127.0.0.1:"), "{text}");
    assert!(!text.contains("127.0.0.1:9000 "), "{text}");
}

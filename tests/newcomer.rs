//! Issue 14: defaults that surprised a newcomer. Item 7: S3's 5 MiB minimum part size.
//! In s3-v4 mode a smaller `--part-size` is raised to 5 MiB (with an info line) unless
//! `--allow-small-parts`; an `EntityTooSmall` at Complete is then a clear 78 that also aborts
//! the upload, so nothing is left open. A scripted server on 127.0.0.1 plays the store.

#![cfg(feature = "serve")]

mod support;

use std::time::Duration;

use support::*;

fn s3_store(complete: &'static str) -> FakeServer {
    FakeServer::start(move |head| {
        let line = head.lines().next().unwrap_or("");
        let xml = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        if line.starts_with("POST") && line.contains("?uploads") {
            xml("<InitiateMultipartUploadResult><UploadId>U-1</UploadId></InitiateMultipartUploadResult>")
        } else if line.starts_with("PUT") {
            b"HTTP/1.1 200 OK\r\nETag: \"E\"\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else if line.starts_with("POST") && line.contains("uploadId=") {
            if complete == "too-small" {
                let body = "<Error><Code>EntityTooSmall</Code><Message>Your proposed upload is \
                            smaller than the minimum allowed object size.</Message></Error>";
                format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes()
            } else {
                xml("<CompleteMultipartUploadResult><ETag>\"M\"</ETag></CompleteMultipartUploadResult>")
            }
        } else if line.starts_with("DELETE") {
            b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n".to_vec()
        } else if line.starts_with("GET") && line.contains("uploads") {
            xml("<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>")
        } else {
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec()
        }
    })
}

fn s3_upload(srv: &FakeServer, tmp: &TempDir, extra: &[&str]) -> Output {
    let file = tmp.join("f.bin");
    write_file(&file, 12 << 20, 3);
    upload(&srv.endpoint(), &file, "k", &tmp.join("ck"))
        .args(["--signature", "s3-v4", "--region", "us-east-1"])
        .args([
            "--part-size",
            "1MiB",
            "--threshold",
            "1MiB",
            "--retry-for",
            "5s",
        ])
        .args(extra)
        .timeout(Duration::from_secs(60))
        .run()
}

fn part_puts(srv: &FakeServer) -> usize {
    srv.heads()
        .iter()
        .filter(|h| h.starts_with("PUT") && h.contains("partNumber="))
        .count()
}

#[test]
fn s3_part_sizes_under_5_mib_are_raised_with_a_line_saying_so() {
    let srv = s3_store("ok");
    let tmp = TempDir::new("newcomer-s3-min");
    let out = s3_upload(&srv, &tmp, &[]);
    println!("{}", out.stderr);
    out.expect_code(0);
    assert!(out.stderr.contains("raised"), "{}", out.stderr);
    assert_eq!(part_puts(&srv), 3, "12 MiB in 5 MiB parts");
}

#[test]
fn entity_too_small_at_complete_is_78_and_aborts_the_upload() {
    let srv = s3_store("too-small");
    let tmp = TempDir::new("newcomer-too-small");
    let out = s3_upload(&srv, &tmp, &["--allow-small-parts"]);
    println!("{}", out.stderr);
    out.expect_code(78);
    let line = out.single_error_line();
    assert!(line.contains("EntityTooSmall"), "{line}");
    assert_eq!(part_puts(&srv), 12, "--allow-small-parts keeps 1 MiB parts");
    assert!(
        srv.heads()
            .iter()
            .any(|h| h.starts_with("DELETE") && h.contains("uploadId=U-1")),
        "the upload is aborted, not left open"
    );
}

/// Item 5: `ossup upload FILE oss://b/dir/` puts the file into the prefix (`dir/FILE`), as
/// `aws s3 cp` and `ossutil cp` do; it used to create an object named `dir/`.
#[test]
fn an_upload_to_a_destination_ending_in_a_slash_goes_into_that_prefix() {
    let tmp = TempDir::new("newcomer-into-prefix");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let file = tmp.join("cam.log");
    let data = write_file(&file, 5000, 9);
    let out = Ossup::new()
        .creds(AK, SK)
        .arg("upload")
        .arg(&file)
        .arg(format!("oss://{BUCKET}/dir/"))
        .args(["--endpoint", &endpoint(server.addr()), "--region", REGION])
        .arg("--checkpoint-dir")
        .arg(tmp.join("ck"))
        .run();
    out.expect_code(0);
    assert!(read_object(&srv_dir, BUCKET, "dir/cam.log").as_deref() == Some(&data[..]));
    assert!(read_object(&srv_dir, BUCKET, "dir/").is_none());
}

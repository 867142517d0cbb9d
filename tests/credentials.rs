//! Issue 12: credentials that refresh. `ossup serve` accepts only the temporary keys listed
//! in a keys file it re-reads (with expiry); `ossup upload --credentials-file` re-reads its
//! credential document before each request. Rotations and an expired token in the middle of a
//! multipart upload must not end it; a file that is missing or unparseable at start is 78;
//! static credentials that are rejected stay 77; a source that never recovers is 75 after
//! `--retry-for`. No secret or token ever reaches the output.

#![cfg(feature = "serve")]

mod support;

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use ossup::serve::Server;
use support::*;

const VALID: &str = "2099-01-01T00:00:00Z";
const EXPIRED: &str = "2020-01-01T00:00:00Z";

/// Replaces `path` atomically with `text` (as a broker agent does).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// The credential document for key `n` (Alibaba spelling; AWS spelling for odd `n`).
fn doc(n: u32, expiration: &str) -> String {
    if n.is_multiple_of(2) {
        format!(
            r#"{{"Code":"Success","AccessKeyId":"STS.k{n}","AccessKeySecret":"sec-{n}","SecurityToken":"tok-{n}","Expiration":"{expiration}"}}"#
        )
    } else {
        format!(
            r#"{{"Version":1,"AccessKeyId":"STS.k{n}","SecretAccessKey":"sec-{n}","SessionToken":"tok-{n}","Expiration":"{expiration}"}}"#
        )
    }
}

/// The server's keys-file line for key `n`.
fn key_line(n: u32, expiration: &str) -> String {
    format!("STS.k{n} sec-{n} tok-{n} {expiration}\n")
}

fn keys_server(dir: &Path, keys: &Path) -> Server {
    let mut o = server_options(dir);
    o.credentials = None;
    o.keys_file = Some(keys.to_path_buf());
    Server::start(o).expect("start server")
}

fn no_secrets(out: &str) {
    assert!(
        !out.contains("sec-") && !out.contains("tok-"),
        "a secret or token leaked:\n{out}"
    );
}

fn file_upload(endpoint: &str, file: &Path, key: &str, ck: &Path, creds: &Path) -> Ossup {
    Ossup::new()
        .arg("upload")
        .arg(file)
        .arg(format!("oss://{BUCKET}/{key}"))
        .args([
            "--endpoint",
            endpoint,
            "--region",
            REGION,
            "--checkpoint-dir",
        ])
        .arg(ck)
        .arg("--credentials-file")
        .arg(creds)
}

#[test]
fn multipart_upload_survives_rotations_and_an_expired_token() {
    let t = TempDir::new("creds-rotate");
    let (srv_dir, ck) = (t.join("srv"), t.join("ck"));
    let (keys, creds) = (t.join("keys"), t.join("creds.json"));
    replace(&keys, &key_line(1, VALID));
    replace(&creds, &doc(1, VALID));
    let server = keys_server(&srv_dir, &keys);
    let data = write_file(&t.join("f.bin"), 1200 << 10, 12);
    let child = file_upload(
        &endpoint(server.addr()),
        &t.join("f.bin"),
        "rot.bin",
        &ck,
        &creds,
    )
    .args(["--part-size", "100KiB", "--threshold", "100KiB"])
    .args(["--limit-rate", "300KiB/s"])
    .args(["--retry-for", "60s"])
    .spawn();
    let start = Instant::now();
    // Three rotations: the STS knows the new key (and revokes the old one) before the agent
    // writes it, so a request in flight with the old key is rejected and retried with the
    // new one.
    for n in 2..=4 {
        std::thread::sleep(Duration::from_millis(450));
        replace(&keys, &key_line(n, VALID));
        std::thread::sleep(Duration::from_millis(50));
        replace(&creds, &doc(n, VALID));
    }
    // Then the agent writes a token the server considers expired, and nothing fresh for a
    // while: the upload must wait, not exit.
    replace(&keys, &key_line(5, EXPIRED));
    replace(&creds, &doc(5, EXPIRED));
    let expired_at = start.elapsed();
    std::thread::sleep(Duration::from_millis(2000));
    let stats = server.stats();
    let parts_during_hold = stats.parts_stored;
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        server.stats().parts_stored,
        parts_during_hold,
        "no part can be stored with an expired token"
    );
    assert_eq!(
        server.stats().completed,
        0,
        "finished before the token expired"
    );
    replace(&keys, &key_line(6, VALID));
    replace(&creds, &doc(6, VALID));
    let out = finish(child, Duration::from_secs(60), "upload");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(expired_at < Duration::from_secs(3));
    assert_eq!(read_object(&srv_dir, BUCKET, "rot.bin").unwrap(), data);
    let s = server.stats();
    assert_eq!((s.initiated, s.completed), (1, 1), "one multipart upload");
    let holds = out.stderr.matches("holding uploads").count();
    let again = out.stderr.matches("work again").count();
    assert!(holds >= 1 && holds == again, "{}", out.stderr);
    assert!(
        out.stderr.matches("other users").count() <= 1,
        "{}",
        out.stderr
    );
    // The hold line names the first rejection of the episode: SecurityTokenExpired, or
    // InvalidAccessKeyId when a rotation's revoked key was still in flight just before.
    assert!(
        out.stderr.lines().any(|l| l.contains("holding uploads")
            && (l.contains("SecurityTokenExpired") || l.contains("InvalidAccessKeyId"))),
        "{}",
        out.stderr
    );
    no_secrets(&out.stderr);
    no_secrets(&out.stdout);
    assert!(journals(&ck).is_empty());
}

#[test]
fn a_source_that_never_recovers_is_75_after_the_retry_budget() {
    let t = TempDir::new("creds-giveup");
    let (srv_dir, ck) = (t.join("srv"), t.join("ck"));
    let (keys, creds) = (t.join("keys"), t.join("creds.json"));
    replace(&keys, &key_line(1, EXPIRED));
    replace(&creds, &doc(1, EXPIRED));
    let server = keys_server(&srv_dir, &keys);
    write_file(&t.join("f.bin"), 300 << 10, 3);
    let start = Instant::now();
    let out = file_upload(&endpoint(server.addr()), &t.join("f.bin"), "k", &ck, &creds)
        .args([
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "--retry-for",
            "2s",
        ])
        .timeout(Duration::from_secs(30))
        .run();
    assert_eq!(out.code, 75, "{}", out.stderr);
    assert!(start.elapsed() >= Duration::from_secs(2));
    assert!(
        out.stderr.contains("SecurityTokenExpired"),
        "{}",
        out.stderr
    );
    no_secrets(&out.stderr);
}

#[test]
fn static_credentials_that_are_rejected_stay_77() {
    let t = TempDir::new("creds-static");
    let (srv_dir, ck) = (t.join("srv"), t.join("ck"));
    let keys = t.join("keys");
    replace(&keys, &key_line(1, EXPIRED));
    let server = keys_server(&srv_dir, &keys);
    write_file(&t.join("f.bin"), 1000, 3);
    let e = endpoint(server.addr());
    for (id, code) in [
        ("STS.k1", "SecurityTokenExpired"),
        ("STS.nope", "InvalidAccessKeyId"),
    ] {
        let out = Ossup::new()
            .env("OSS_ACCESS_KEY_ID", id)
            .env("OSS_ACCESS_KEY_SECRET", "sec-1")
            .env("OSS_SESSION_TOKEN", "tok-1")
            .arg("upload")
            .arg(t.join("f.bin"))
            .arg(format!("oss://{BUCKET}/k"))
            .args(["--endpoint", &e, "--region", REGION, "--checkpoint-dir"])
            .arg(&ck)
            .run();
        assert_eq!(out.code, 77, "{}", out.stderr);
        assert!(out.stderr.contains(code), "{}", out.stderr);
        no_secrets(&out.stderr);
    }
}

#[test]
fn s3_signatures_get_s3_codes() {
    let t = TempDir::new("creds-s3");
    let (srv_dir, ck) = (t.join("srv"), t.join("ck"));
    let keys = t.join("keys");
    replace(&keys, &key_line(1, EXPIRED));
    let server = keys_server(&srv_dir, &keys);
    write_file(&t.join("f.bin"), 1000, 3);
    let e = endpoint(server.addr());
    for (token, code) in [("tok-1", "ExpiredToken"), ("other", "InvalidToken")] {
        if code == "InvalidToken" {
            replace(&keys, &key_line(1, VALID));
        }
        let out = Ossup::new()
            .env("AWS_ACCESS_KEY_ID", "STS.k1")
            .env("AWS_SECRET_ACCESS_KEY", "sec-1")
            .env("AWS_SESSION_TOKEN", token)
            .arg("upload")
            .arg(t.join("f.bin"))
            .arg(format!("oss://{BUCKET}/k"))
            .args(["--endpoint", &e, "--signature", "s3-v4", "--checkpoint-dir"])
            .arg(&ck)
            .run();
        assert_eq!(out.code, 77, "{}", out.stderr);
        assert!(out.stderr.contains(code), "{code}: {}", out.stderr);
    }
}

#[test]
fn missing_or_unparseable_file_at_start_is_78_naming_path_and_reason() {
    let t = TempDir::new("creds-start");
    write_file(&t.join("f.bin"), 1000, 3);
    let creds = t.join("creds.json");
    let run = || {
        file_upload(
            "http://127.0.0.1:9",
            &t.join("f.bin"),
            "k",
            &t.join("ck"),
            &creds,
        )
        .run()
    };
    let out = run();
    assert_eq!(out.code, 78, "{}", out.stderr);
    let line = out.single_error_line();
    assert!(
        line.contains("creds.json") && line.contains("cannot open"),
        "{line}"
    );
    fs::write(
        &creds,
        r#"{"AccessKeyId":"STS.k1","AccessKeySecret":"sec-1","SecurityToken":"tok-1","Expiration":"tomorrow"}"#,
    )
    .unwrap();
    let out = run();
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(
        out.single_error_line().contains("Expiration"),
        "{}",
        out.stderr
    );
    no_secrets(&out.stderr);
    fs::write(&creds, r#"{"Code":"Forbidden","Message":"no"}"#).unwrap();
    let out = run();
    assert_eq!(out.code, 78, "{}", out.stderr);
    assert!(
        out.single_error_line().contains("Forbidden"),
        "{}",
        out.stderr
    );
}

#[test]
fn board_key_credentials_file_and_mode_warning() {
    let t = TempDir::new("creds-board");
    let (srv_dir, ck) = (t.join("srv"), t.join("ck"));
    let (keys, creds) = (t.join("keys"), t.join("creds.json"));
    replace(&keys, &key_line(2, VALID));
    replace(&creds, &doc(2, VALID));
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&creds, fs::Permissions::from_mode(0o644)).unwrap();
    let board = t.join("b.toml");
    fs::write(
        &board,
        format!("credentials_file = \"{}\"\n", creds.display()),
    )
    .unwrap();
    let server = keys_server(&srv_dir, &keys);
    let data = write_file(&t.join("f.bin"), 5000, 4);
    let out = Ossup::new()
        .arg("upload")
        .arg(t.join("f.bin"))
        .arg(format!("oss://{BUCKET}/b"))
        .args(["--endpoint", &endpoint(server.addr()), "--region", REGION])
        .arg("--checkpoint-dir")
        .arg(&ck)
        .arg("--board")
        .arg(&board)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("other users"), "{}", out.stderr);
    assert_eq!(read_object(&srv_dir, BUCKET, "b").unwrap(), data);
}

#[test]
fn environment_precedence() {
    let t = TempDir::new("creds-env");
    let (srv_dir, ck) = (t.join("srv"), t.join("ck"));
    let keys = t.join("keys");
    replace(&keys, &key_line(1, VALID));
    let server = keys_server(&srv_dir, &keys);
    write_file(&t.join("f.bin"), 1000, 3);
    let e = endpoint(server.addr());
    let base = |o: Ossup, extra: &[&str]| {
        o.arg("upload")
            .arg(t.join("f.bin"))
            .arg(format!("oss://{BUCKET}/k"))
            .args(extra)
            .arg("--checkpoint-dir")
            .arg(&ck)
    };
    let good = |o: Ossup, pre: &str| {
        o.env(&format!("{pre}_ACCESS_KEY_ID"), "STS.k1")
            .env(&format!("{pre}_ACCESS_KEY_SECRET"), "sec-1")
            .env(&format!("{pre}_SECURITY_TOKEN"), "tok-1")
            .env(&format!("{pre}_SESSION_TOKEN"), "tok-1")
    };
    let oss_flags = ["--endpoint", e.as_str(), "--region", REGION];
    // The Alibaba Cloud names alone work.
    let out = base(good(Ossup::new(), "ALIBABA_CLOUD"), &oss_flags).run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    // OSS_* win over them (wrong OSS_* values are used, and rejected).
    let out = base(good(Ossup::new(), "ALIBABA_CLOUD"), &oss_flags)
        .env("OSS_ACCESS_KEY_ID", "STS.other")
        .env("OSS_ACCESS_KEY_SECRET", "sec-x")
        .run();
    assert_eq!(out.code, 77, "{}", out.stderr);
    assert!(out.stderr.contains("InvalidAccessKeyId"), "{}", out.stderr);
    // s3-v4: AWS_* names, with the region and endpoint from AWS_REGION / AWS_ENDPOINT_URL.
    let out = base(Ossup::new(), &["--signature", "s3-v4"])
        .env("AWS_ACCESS_KEY_ID", "STS.k1")
        .env("AWS_SECRET_ACCESS_KEY", "sec-1")
        .env("AWS_SESSION_TOKEN", "tok-1")
        .env("AWS_REGION", REGION)
        .env("AWS_ENDPOINT_URL", &e)
        .run();
    assert_eq!(out.code, 0, "{}", out.stderr);
    no_secrets(&out.stderr);
}

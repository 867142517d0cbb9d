//! HTTPS: `ossup upload` against `ossup serve` with a private CA. The upload works with
//! `--ca-file` naming that CA, and fails fast (exit 78, one line about the TLS certificate)
//! with the built-in roots only, with a different CA, or with an unusable CA file.
#![cfg(feature = "serve")]

mod support;

use std::path::{Path, PathBuf};

use ossup::serve::Server;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::*;

struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    (p.self_signed(&key).unwrap(), key)
}

/// A CA, a server certificate for 127.0.0.1 and localhost signed by it, and an unrelated CA,
/// as PEM files in `dir`.
fn pki(dir: &Path) -> Pki {
    let (ca, ca_key) = make_ca("ossup tls test CA");
    let (other, _) = make_ca("ossup tls test CA"); // same name, different key: must not pass
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap();
    let p = Pki {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&p.ca, ca.pem()).unwrap();
    std::fs::write(&p.other_ca, other.pem()).unwrap();
    std::fs::write(&p.cert, leaf.pem()).unwrap();
    std::fs::write(&p.key, leaf_key.serialize_pem()).unwrap();
    p
}

fn tls_server(srv_dir: &Path, p: &Pki) -> Server {
    let mut o = server_options(srv_dir);
    o.tls = Some((p.cert.clone(), p.key.clone()));
    Server::start(o).expect("start TLS server")
}

/// Asserts the run failed with 78 and one error line about the TLS certificate.
fn assert_tls_refused(out: &Output, what: &str) {
    out.expect_code(78);
    let line = out.single_error_line();
    assert!(
        line.contains("TLS") && line.contains("certificate"),
        "{what}: {line}"
    );
    assert!(
        line.contains("--ca-file"),
        "{what}: the hint should name --ca-file: {line}"
    );
}

#[test]
fn upload_over_tls_with_private_ca() {
    let tmp = TempDir::new("tls");
    let p = pki(tmp.path());
    let srv_dir = tmp.join("srv");
    let server = tls_server(&srv_dir, &p);
    let ep = format!("https://{}", server.addr());
    let ep_name = format!("https://localhost:{}", server.addr().port());
    let ck = tmp.join("ck");
    let small = tmp.join("small");
    let small_data = write_file(&small, 10_000, 1);
    let big = tmp.join("big");
    let big_data = write_file(&big, 450 * 1024, 2);

    // With the CA: single PUT (IP endpoint) and multipart over two connections (name endpoint).
    let out = upload(&ep, &small, "tls/small", &ck)
        .arg("--ca-file")
        .arg(&p.ca)
        .run();
    out.expect_code(0);
    assert!(read_object(&srv_dir, BUCKET, "tls/small").unwrap() == small_data);
    let out = upload(&ep_name, &big, "tls/big", &ck)
        .arg("--ca-file")
        .arg(&p.ca)
        .args([
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "--jobs",
            "2",
            "--path-style",
        ])
        .run();
    out.expect_code(0);
    assert!(read_object(&srv_dir, BUCKET, "tls/big").unwrap() == big_data);
    let ok_requests = server.stats().requests;

    // Built-in roots only: refused at the handshake, before any request; no retries.
    let t = std::time::Instant::now();
    let out = upload(&ep, &big, "tls/untrusted", &ck)
        .args(["--part-size", "100KiB", "--threshold", "100KiB"])
        .run();
    assert_tls_refused(&out, "webpki roots");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "a certificate failure must not be retried for long"
    );

    // A different CA (same subject name, different key): refused too.
    let out = upload(&ep, &small, "tls/other-ca", &ck)
        .arg("--ca-file")
        .arg(&p.other_ca)
        .run();
    assert_tls_refused(&out, "other CA");

    // The server's own leaf certificate given as the CA file pins it (issue 13): the
    // certificate is byte-identical to the one the user gave, valid for the name and date, and
    // the handshake proves the server holds its key. Checked last, since it makes requests.
    assert_eq!(
        server.stats().requests,
        ok_requests,
        "a request got through an untrusted handshake"
    );
    assert!(read_object(&srv_dir, BUCKET, "tls/untrusted").is_none());
    let out = upload(&ep, &small, "tls/leaf-pinned", &ck)
        .arg("--ca-file")
        .arg(&p.cert)
        .run();
    out.expect_code(0);
    assert!(read_object(&srv_dir, BUCKET, "tls/leaf-pinned").unwrap() == small_data);

    // Unusable CA files are configuration errors, reported before connecting.
    let out = upload(&ep, &small, "tls/missing-ca", &ck)
        .arg("--ca-file")
        .arg(tmp.join("nope.pem"))
        .run();
    out.expect_code(78);
    assert!(
        out.single_error_line().contains("nope.pem"),
        "{}",
        out.stderr
    );
    let junk = tmp.join("junk.pem");
    std::fs::write(
        &junk,
        b"-----BEGIN CERTIFICATE-----\nnot base64 at all!\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let out = upload(&ep, &small, "tls/junk-ca", &ck)
        .arg("--ca-file")
        .arg(&junk)
        .run();
    out.expect_code(78);
    out.single_error_line();
    server.stop();
}

#[test]
fn serve_subprocess_with_tls_flags() {
    let tmp = TempDir::new("tls-proc");
    let p = pki(tmp.path());
    let srv_dir = tmp.join("srv");
    let cert = p.cert.to_string_lossy().into_owned();
    let key = p.key.to_string_lossy().into_owned();
    let serve = ServeProcess::start(&srv_dir, &["--tls-cert", &cert, "--tls-key", &key]);
    assert_eq!(serve.scheme, "https", "serve should announce an https URL");
    let ck = tmp.join("ck");
    let file = tmp.join("f");
    let data = write_file(&file, 250 * 1024, 3);
    let out = upload(&serve.endpoint(), &file, "proc/tls", &ck)
        .arg("--ca-file")
        .arg(&p.ca)
        .args([
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "--signature",
            "s3-v4",
            "--allow-small-parts",
            "--region",
            REGION,
        ])
        .run();
    out.expect_code(0);
    assert!(read_object(&srv_dir, BUCKET, "proc/tls").unwrap() == data);
    let out = upload(&serve.endpoint(), &file, "proc/tls-untrusted", &ck).run();
    assert_tls_refused(&out, "serve subprocess, webpki roots");
}

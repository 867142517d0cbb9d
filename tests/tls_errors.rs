//! TLS failures name their cause in the one error line (issue 13): unknown issuer (with the
//! issuer's name), name mismatch (with the certificate's names), expired and not yet valid
//! (with the dates and the local clock, and the hint that the clock is probably wrong), a CA
//! certificate used as the server's (with the `--ca-file` pinning hint); and a self-signed
//! `CA:TRUE` certificate (what `openssl req -x509` makes) is accepted when pinned through
//! `--ca-file`, but only for its own names. Every refusal is exit 78, at once.
#![cfg(feature = "serve")]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ossup::serve::Server;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::*;

struct Made {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

/// A server certificate for `names` valid `from`..`to` (years), signed by a CA named
/// `ca_name` (or self-signed with CA:TRUE when `ca_name` is `None`), as PEM files in `dir`.
fn make(dir: &Path, tag: &str, names: &[&str], from: i32, to: i32, ca_name: Option<&str>) -> Made {
    std::fs::create_dir_all(dir).unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let leaf_key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(names).unwrap();
    leaf.not_before = rcgen::date_time_ymd(from, 1, 1);
    leaf.not_after = rcgen::date_time_ymd(to, 1, 1);
    leaf.distinguished_name
        .push(DnType::CommonName, "ossup test server");
    let (leaf_pem, ca_pem) = match ca_name {
        Some(n) => {
            let ca_key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            p.distinguished_name.push(DnType::CommonName, n);
            let ca = p.self_signed(&ca_key).unwrap();
            (
                leaf.signed_by(&leaf_key, &ca, &ca_key).unwrap().pem(),
                ca.pem(),
            )
        }
        None => {
            leaf.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let c = leaf.self_signed(&leaf_key).unwrap().pem();
            (c.clone(), c)
        }
    };
    let m = Made {
        cert: dir.join(format!("{tag}.pem")),
        key: dir.join(format!("{tag}.key")),
        ca: dir.join(format!("{tag}-ca.pem")),
    };
    std::fs::write(&m.cert, leaf_pem).unwrap();
    std::fs::write(&m.key, leaf_key.serialize_pem()).unwrap();
    std::fs::write(&m.ca, ca_pem).unwrap();
    m
}

fn server(dir: &Path, m: &Made) -> Server {
    let mut o = server_options(dir);
    o.tls = Some((m.cert.clone(), m.key.clone()));
    Server::start(o).expect("start TLS server")
}

/// Uploads a small file to `endpoint` with `--ca-file ca` (if given): (exit code, error line).
fn try_upload(tmp: &TempDir, endpoint: &str, key: &str, ca: Option<&Path>) -> (i32, String) {
    let file = tmp.join("f");
    if !file.exists() {
        write_file(&file, 5000, 1);
    }
    let mut cmd = upload(endpoint, &file, key, &tmp.join("ck")).timeout(Duration::from_secs(30));
    if let Some(ca) = ca {
        cmd = cmd.arg("--ca-file").arg(ca);
    }
    let t = Instant::now();
    let out = cmd.run();
    if out.code != 0 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "a TLS refusal must not be retried"
        );
        (out.code, out.single_error_line().to_string())
    } else {
        (0, String::new())
    }
}

#[test]
fn unknown_issuer_names_the_issuer() {
    let tmp = TempDir::new("tlse-issuer");
    let m = make(
        &tmp.join("pki"),
        "s",
        &["127.0.0.1"],
        2020,
        2090,
        Some("Plant 7 Private CA"),
    );
    let srv = server(&tmp.join("srv"), &m);
    let (code, line) = try_upload(&tmp, &format!("https://{}", srv.addr()), "a", None);
    assert_eq!(code, 78, "{line}");
    assert!(line.contains("unknown issuer"), "{line}");
    assert!(
        line.contains("Plant 7 Private CA"),
        "the issuer's name: {line}"
    );
    assert!(line.contains("--ca-file"), "{line}");
    // With that CA it works.
    assert_eq!(
        try_upload(&tmp, &format!("https://{}", srv.addr()), "b", Some(&m.ca)).0,
        0
    );
}

#[test]
fn name_mismatch_lists_the_certificate_names() {
    let tmp = TempDir::new("tlse-name");
    let m = make(
        &tmp.join("pki"),
        "s",
        &["oss.plant.example", "10.9.8.7"],
        2020,
        2090,
        Some("CA"),
    );
    let srv = server(&tmp.join("srv"), &m);
    let (code, line) = try_upload(&tmp, &format!("https://{}", srv.addr()), "a", Some(&m.ca));
    assert_eq!(code, 78, "{line}");
    assert!(line.contains("name mismatch"), "{line}");
    assert!(
        line.contains("oss.plant.example") && line.contains("10.9.8.7"),
        "the certificate's names: {line}"
    );
    assert!(line.contains("127.0.0.1"), "the name we wanted: {line}");
}

#[test]
fn expired_and_not_yet_valid_give_dates_and_suspect_the_clock() {
    let tmp = TempDir::new("tlse-dates");
    let old = make(
        &tmp.join("pki"),
        "old",
        &["127.0.0.1"],
        2010,
        2020,
        Some("CA"),
    );
    let srv = server(&tmp.join("srv1"), &old);
    let (code, line) = try_upload(&tmp, &format!("https://{}", srv.addr()), "a", Some(&old.ca));
    assert_eq!(code, 78, "{line}");
    assert!(line.contains("expired"), "{line}");
    assert!(line.contains("2020"), "the notAfter date: {line}");
    assert!(line.contains("local clock"), "{line}");

    // A certificate valid only from 2090: the local clock is before it by decades, which on
    // a board without an RTC means the clock is wrong.
    let future = make(
        &tmp.join("pki"),
        "future",
        &["127.0.0.1"],
        2090,
        2099,
        Some("CA"),
    );
    let srv = server(&tmp.join("srv2"), &future);
    let (code, line) = try_upload(
        &tmp,
        &format!("https://{}", srv.addr()),
        "b",
        Some(&future.ca),
    );
    assert_eq!(code, 78, "{line}");
    assert!(line.contains("not valid before"), "{line}");
    assert!(line.contains("2090"), "{line}");
    assert!(line.contains("clock is probably wrong"), "{line}");
}

#[test]
fn self_signed_ca_true_certificate_is_refused_with_a_hint_and_accepted_when_pinned() {
    let tmp = TempDir::new("tlse-pin");
    // `openssl req -x509` style: self-signed, CA:TRUE, used as the server's certificate.
    let m = make(
        &tmp.join("pki"),
        "self",
        &["127.0.0.1", "localhost"],
        2020,
        2090,
        None,
    );
    let srv = server(&tmp.join("srv"), &m);
    let ep = format!("https://{}", srv.addr());

    let (code, line) = try_upload(&tmp, &ep, "a", None);
    assert_eq!(code, 78, "{line}");
    assert!(
        line.contains("CA:TRUE") && line.contains("--ca-file") && line.contains("pin"),
        "not in --ca-file: the hint to pin it: {line}"
    );

    // Pinned: byte-identical to the one in --ca-file, valid for the name and date.
    assert_eq!(try_upload(&tmp, &ep, "b", Some(&m.cert)).0, 0);
    assert!(read_object(&tmp.join("srv"), BUCKET, "b").is_some());

    // Pinning does not relax the name: another name for the same server is refused.
    let other = make(&tmp.join("pki"), "self2", &["gw.example"], 2020, 2090, None);
    let srv2 = server(&tmp.join("srv2"), &other);
    let (code, line) = try_upload(
        &tmp,
        &format!("https://{}", srv2.addr()),
        "c",
        Some(&other.cert),
    );
    assert_eq!(code, 78, "{line}");
    assert!(line.contains("name mismatch"), "{line}");

    // Nor the dates.
    let stale = make(&tmp.join("pki"), "self3", &["127.0.0.1"], 2010, 2020, None);
    let srv3 = server(&tmp.join("srv3"), &stale);
    let (code, line) = try_upload(
        &tmp,
        &format!("https://{}", srv3.addr()),
        "d",
        Some(&stale.cert),
    );
    assert_eq!(code, 78, "{line}");
    assert!(line.contains("expired"), "{line}");

    // A different self-signed certificate in --ca-file pins nothing.
    let (code, line) = try_upload(&tmp, &ep, "e", Some(&other.cert));
    assert_eq!(code, 78, "{line}");
}

//! Uploads through a real HTTP proxy (tinyproxy from Debian, started here on loopback with a
//! generated config): CONNECT to plain and TLS endpoints, Basic authentication (407 is a
//! configuration error, exit 78, and the password never shows), `NO_PROXY`, a dead proxy
//! named as the proxy, and a multipart upload whose proxy is killed mid-part and that resumes
//! through a new one.
//!
//! tinyproxy is installed by `.ci/run`. Without it (a developer machine) these tests print why
//! and pass vacuously, except under `CI`, where its absence fails them.
#![cfg(feature = "serve")]

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::*;

/// A tinyproxy on 127.0.0.1, killed on drop.
struct Tinyproxy {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl Tinyproxy {
    /// Starts tinyproxy in the foreground with `auth` (`user`, `password`) required if given.
    /// `None` when tinyproxy is not installed (outside CI).
    fn start(dir: &Path, auth: Option<(&str, &str)>) -> Option<Tinyproxy> {
        let bin = ["/usr/bin/tinyproxy", "/usr/sbin/tinyproxy"]
            .into_iter()
            .find(|p| Path::new(p).exists());
        let Some(bin) = bin else {
            assert!(
                std::env::var_os("CI").is_none(),
                "tinyproxy is not installed (.ci/run installs it)"
            );
            eprintln!("tinyproxy not installed: skipping this proxy test (apt install tinyproxy)");
            return None;
        };
        std::fs::create_dir_all(dir).unwrap();
        // tinyproxy cannot report a port it chose: take a free one from the kernel and retry
        // on the rare collision.
        for _attempt in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let log = dir.join(format!("tinyproxy-{port}.log"));
            let conf = dir.join(format!("tinyproxy-{port}.conf"));
            let mut c = format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 30\nLogFile \"{}\"\nLogLevel Info\n\
                 MaxClients 20\nAllow 127.0.0.1\n",
                log.display()
            );
            if let Some((u, p)) = auth {
                c.push_str(&format!("BasicAuth {u} {p}\n"));
            }
            std::fs::write(&conf, c).unwrap();
            let child = Command::new(bin)
                .arg("-d")
                .arg("-c")
                .arg(&conf)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn tinyproxy");
            let mut t = Tinyproxy { child, port, log };
            let up = wait_until(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                    || t.child.try_wait().ok().flatten().is_some()
            });
            if up && t.child.try_wait().ok().flatten().is_none() {
                return Some(t);
            }
            let _ = t.child.kill();
        }
        panic!("tinyproxy did not start in 5 attempts");
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How many CONNECT tunnels the proxy's log shows.
    fn connects(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("CONNECT"))
            .count()
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Tinyproxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, as PEM files in `dir`:
/// (ca, cert, key).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "ossup proxy test CA");
    let ca = p.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca, &ca_key)
        .unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let (a, c, k) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&a, ca.pem()).unwrap();
    std::fs::write(&c, leaf.pem()).unwrap();
    std::fs::write(&k, leaf_key.serialize_pem()).unwrap();
    (a, c, k)
}

#[test]
fn upload_tunnels_through_tinyproxy_to_http_and_https_endpoints() {
    let tmp = TempDir::new("proxy-basic");
    let Some(proxy) = Tinyproxy::start(&tmp.join("proxy"), None) else {
        return;
    };
    // Plain endpoint, proxy from HTTP_PROXY... as curl: only lower-case http_proxy for http.
    let srv = tmp.join("srv");
    let serve = ServeProcess::start(&srv, &[]);
    let file = tmp.join("f");
    let data = write_file(&file, 300 * 1024, 1);
    let out = upload(&serve.endpoint(), &file, "p/plain", &tmp.join("ck"))
        .env("http_proxy", &proxy.url())
        .args([
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "--jobs",
            "2",
        ])
        .run();
    out.expect_code(0);
    assert_eq!(read_object(&srv, BUCKET, "p/plain").unwrap(), data);
    let plain_connects = proxy.connects();
    assert!(
        plain_connects >= 1,
        "the upload did not go through the proxy (its log shows no CONNECT)"
    );

    // TLS endpoint through the same proxy: TLS end to end, the name still verified.
    let (ca, cert, key) = pki(&tmp.join("pki"));
    let srv2 = tmp.join("srv2");
    let tls = ServeProcess::start(
        &srv2,
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    let out = upload(&tls.endpoint(), &file, "p/tls", &tmp.join("ck"))
        .env("HTTPS_PROXY", &proxy.url())
        .arg("--ca-file")
        .arg(&ca)
        .args(["--part-size", "100KiB", "--threshold", "100KiB"])
        .run();
    out.expect_code(0);
    assert_eq!(read_object(&srv2, BUCKET, "p/tls").unwrap(), data);
    assert!(
        proxy.connects() > plain_connects,
        "TLS upload bypassed the proxy"
    );

    // Through the proxy, verification is not relaxed: without the CA it is refused (78).
    let out = upload(&tls.endpoint(), &file, "p/tls-untrusted", &tmp.join("ck"))
        .env("HTTPS_PROXY", &proxy.url())
        .run();
    out.expect_code(78);
    assert!(out.single_error_line().contains("certificate"));

    // --no-proxy wins over the environment (a dead proxy here): direct, and it works.
    let out = upload(&serve.endpoint(), &file, "p/direct", &tmp.join("ck"))
        .env("http_proxy", "http://127.0.0.1:9")
        .arg("--no-proxy")
        .run();
    out.expect_code(0);
    // NO_PROXY excludes the endpoint's address.
    let out = upload(&serve.endpoint(), &file, "p/no-proxy-env", &tmp.join("ck"))
        .env("http_proxy", "http://127.0.0.1:9")
        .env("NO_PROXY", "localhost,127.0.0.0/8")
        .run();
    out.expect_code(0);
}

#[test]
fn proxy_authentication_407_is_a_config_error_and_the_password_never_shows() {
    let tmp = TempDir::new("proxy-auth");
    let password = "s3cr3t-proxy-pw";
    let Some(proxy) = Tinyproxy::start(&tmp.join("proxy"), Some(("gw", password))) else {
        return;
    };
    let srv = tmp.join("srv");
    let serve = ServeProcess::start(&srv, &[]);
    let file = tmp.join("f");
    let data = write_file(&file, 40 * 1024, 2);
    let ck = tmp.join("ck");

    // Without credentials: 407 → exit 78 at once (not a day of retries), one clear line.
    let started = Instant::now();
    let out = upload(&serve.endpoint(), &file, "a/none", &ck)
        .arg("--proxy")
        .arg(proxy.url())
        .timeout(Duration::from_secs(30))
        .run();
    out.expect_code(78);
    let line = out.single_error_line().to_string();
    assert!(
        line.contains("proxy") && line.contains("credentials"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(20));

    // Wrong password: the same, and the password is not in any output.
    let wrong = format!("http://gw:wrong-{password}@127.0.0.1:{}", proxy.port);
    let out = upload(&serve.endpoint(), &file, "a/wrong", &ck)
        .arg("--proxy")
        .arg(&wrong)
        .arg("-vv")
        .run();
    out.expect_code(78);
    assert!(!out.stderr.contains(password) && !out.stdout.contains(password));

    // Right credentials (percent-encoded in the URL): it works, and nothing shows them,
    // not even debug logs, `status` or the checkpoint files.
    let good = format!(
        "http://gw:{}@127.0.0.1:{}",
        password.replace('-', "%2D"),
        proxy.port
    );
    let out = upload(&serve.endpoint(), &file, "a/good", &ck)
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .arg("--proxy")
        .arg(&good)
        .arg("-vv")
        .run();
    out.expect_code(0);
    assert_eq!(read_object(&srv, BUCKET, "a/good").unwrap(), data);
    for text in [&out.stderr, &out.stdout] {
        assert!(!text.contains(password), "the proxy password was printed");
    }
    let status = Ossup::new()
        .arg("status")
        .arg("--checkpoint-dir")
        .arg(&ck)
        .run();
    assert!(!status.stdout.contains(password) && !status.stderr.contains(password));
    for f in walk(&ck) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes()),
            "the proxy password is in {}",
            f.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn a_dead_proxy_is_named_as_the_proxy_and_retried_within_the_budget() {
    let tmp = TempDir::new("proxy-dead");
    let srv = tmp.join("srv");
    let serve = ServeProcess::start(&srv, &[]);
    let file = tmp.join("f");
    write_file(&file, 10 * 1024, 3);
    // A port nothing listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = upload(&serve.endpoint(), &file, "d/x", &tmp.join("ck"))
        .arg("--proxy")
        .arg(format!("127.0.0.1:{port}"))
        .args(["--retry-for", "2s"])
        .run();
    out.expect_code(75);
    let line = out.single_error_line();
    assert!(
        line.contains("proxy"),
        "the error should name the proxy: {line}"
    );
    // A malformed proxy URL is refused at once as a usage error.
    let out = upload(&serve.endpoint(), &file, "d/y", &tmp.join("ck"))
        .arg("--proxy")
        .arg("socks5://127.0.0.1:1080")
        .run();
    out.expect_code(64);
}

#[test]
fn multipart_upload_resumes_through_a_new_proxy_after_the_proxy_dies_mid_part() {
    let tmp = TempDir::new("proxy-kill");
    let Some(mut proxy) = Tinyproxy::start(&tmp.join("proxy"), None) else {
        return;
    };
    let srv = tmp.join("srv");
    let serve = ServeProcess::start(&srv, &[]);
    let file = tmp.join("f");
    let data = write_file(&file, 4 << 20, 4);
    let ck = tmp.join("ck");
    let board = tmp.join("board.toml");
    // The proxy from a board file, as a fleet would ship it.
    std::fs::write(&board, format!("proxy = \"{}\"\n", proxy.url())).unwrap();
    let child = upload(&serve.endpoint(), &file, "k/big", &ck)
        .arg("--board")
        .arg(&board)
        .args([
            "--part-size",
            "256KiB",
            "--threshold",
            "256KiB",
            "--limit-rate",
            "1MiB/s",
            "--retry-for",
            "3s",
        ])
        .spawn();
    // Let some parts land, then kill the proxy under a part in flight.
    let got_some = wait_until(Duration::from_secs(20), || {
        stats_json(serve.addr)["parts_stored"].as_u64().unwrap_or(0) >= 2
    });
    assert!(got_some, "no part arrived through the proxy");
    proxy.kill();
    let out = finish(
        child,
        Duration::from_secs(60),
        "upload through a dying proxy",
    );
    assert_eq!(out.code, 75, "stderr: {}", out.stderr);
    assert!(out.single_error_line().contains("proxy"));
    let stored_before = stats_json(serve.addr)["parts_stored"].as_u64().unwrap();
    assert!(
        stored_before < 16,
        "the upload finished before the proxy died"
    );

    // A new proxy (another port): the board points there, and the upload resumes.
    let proxy2 = Tinyproxy::start(&tmp.join("proxy2"), None).unwrap();
    std::fs::write(&board, format!("proxy = \"{}\"\n", proxy2.url())).unwrap();
    let out = upload(&serve.endpoint(), &file, "k/big", &ck)
        .arg("--board")
        .arg(&board)
        .args(["--part-size", "256KiB", "--threshold", "256KiB"])
        .run();
    out.expect_code(0);
    assert!(
        out.stderr.contains("resumed"),
        "the second run should resume: {}",
        out.stderr
    );
    assert_eq!(read_object(&srv, BUCKET, "k/big").unwrap(), data);
    assert!(proxy2.connects() >= 1);
}

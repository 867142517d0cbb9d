//! Shared helpers for the integration tests: temporary directories, deterministic file
//! contents, an in-process `ossup::serve::Server` (or an `ossup serve` subprocess) with
//! credentials and a bucket, running the real `ossup` binary with a clean environment, and
//! reading objects back from the server's directory.
//!
//! Include it with `mod support;` from a test file. Every helper bounds its waiting by time.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ossup::serve::{Credentials, Options, Server};

/// Access key id the test servers accept.
pub const AK: &str = "LTAI-test-ak";
/// Secret the test servers accept.
pub const SK: &str = "test-secret-0123456789";
/// The bucket every test server creates.
pub const BUCKET: &str = "bkt";
/// The region every test server signs for (the `ossup serve` default).
pub const REGION: &str = "cn-hangzhou";
/// Longest any single `ossup` run may take before the test kills it and fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ossup")
}

// ---------------------------------------------------------------------------------------------
// Temporary directories and file contents

/// A directory under `std::env::temp_dir()`, removed (with everything in it) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// A fresh, empty directory whose name contains `tag`, the PID and a counter.
    pub fn new(tag: &str) -> TempDir {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("ossup-it-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `self.path().join(p)`.
    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `len` deterministic pseudo-random bytes for `seed` (xorshift64*), the same on every run.
pub fn content(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let v = x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&v[..take]);
    }
    out
}

/// Writes `content(len, seed)` to `path` and returns the bytes.
pub fn write_file(path: &Path, len: usize, seed: u64) -> Vec<u8> {
    let data = content(len, seed);
    std::fs::write(path, &data).expect("write test file");
    data
}

/// Polls `f` every 10 ms until it returns true or `timeout` passes; returns its last answer.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ---------------------------------------------------------------------------------------------
// Servers

/// The credentials the test servers check.
pub fn credentials() -> Credentials {
    Credentials {
        access_key_id: AK.into(),
        access_key_secret: SK.into(),
        security_token: None,
    }
}

/// Options for a server on `127.0.0.1:0` serving `dir`, with [`AK`]/[`SK`] and [`BUCKET`].
pub fn server_options(dir: &Path) -> Options {
    let mut o = Options::new(dir);
    o.credentials = Some(credentials());
    o.buckets = vec![BUCKET.to_string()];
    o
}

/// Starts an in-process server with [`server_options`].
pub fn start_server(dir: &Path) -> Server {
    Server::start(server_options(dir)).expect("start ossup serve in-process")
}

/// `http://ADDR` for a server address.
pub fn endpoint(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

/// The name `ossup serve` stores `key` under inside its bucket directory (see the layout in
/// `ossup::serve`): the percent-encoded key; dots-only names escaped; long names hashed.
pub fn object_file_name(key: &str) -> String {
    use sha2::{Digest, Sha256};
    let enc = ossup::proto::sign::uri_encode(key, false);
    if enc.bytes().all(|c| c == b'.') {
        return enc.replace('.', "%2E");
    }
    if enc.len() > 200 {
        let h: String = Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        return format!("%L{h}");
    }
    enc
}

/// Where `ossup serve` (serving `dir`) keeps object `bucket`/`key`.
pub fn object_path(dir: &Path, bucket: &str, key: &str) -> PathBuf {
    dir.join(bucket).join(object_file_name(key))
}

/// The stored bytes of `bucket`/`key` on a server serving `dir`, if the object exists.
pub fn read_object(dir: &Path, bucket: &str, key: &str) -> Option<Vec<u8>> {
    std::fs::read(object_path(dir, bucket, key)).ok()
}

/// The sidecar metadata (`name value` lines, values percent-encoded) of an object.
pub fn read_sidecar(dir: &Path, bucket: &str, key: &str) -> Option<String> {
    let mut p = object_path(dir, bucket, key).into_os_string();
    p.push("#meta");
    std::fs::read_to_string(p).ok()
}

/// A blocking HTTP/1.1 GET of `path` on `addr` (no signature): (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of head"))?;
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    Ok((status, buf[split + 4..].to_vec()))
}

/// `GET /_ossup/stats` of a running `ossup serve` as JSON.
pub fn stats_json(addr: SocketAddr) -> serde_json::Value {
    let (status, body) = http_get(addr, "/_ossup/stats").expect("GET /_ossup/stats");
    assert_eq!(status, 200, "stats: {}", String::from_utf8_lossy(&body));
    serde_json::from_slice(&body).expect("stats JSON")
}

/// An `ossup serve` subprocess, killed on drop.
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
}

impl ServeProcess {
    /// Starts `ossup serve DIR --listen 127.0.0.1:0 --bucket bkt EXTRA...` with [`AK`]/[`SK`]
    /// and waits (at most 20 s) for its `listening on` line.
    pub fn start(dir: &Path, extra: &[&str]) -> ServeProcess {
        let mut cmd = Ossup::new().creds(AK, SK).into_command();
        cmd.arg("serve")
            .arg(dir)
            .args(["--listen", "127.0.0.1:0", "--bucket", BUCKET])
            .args(extra);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().expect("spawn ossup serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("ossup serve printed nothing within 20 s");
            }
        };
        let rest = line
            .strip_prefix("ossup serve: listening on ")
            .unwrap_or_else(|| {
                let _ = child.kill();
                panic!("unexpected first line of ossup serve: {line:?}")
            });
        let (scheme, rest) = rest.split_once("://").expect("URL in the listening line");
        let addr: SocketAddr = rest
            .split_whitespace()
            .next()
            .and_then(|a| a.parse().ok())
            .expect("ADDR");
        let scheme = if scheme == "https" { "https" } else { "http" };
        ServeProcess {
            child,
            addr,
            scheme,
        }
    }

    /// `SCHEME://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", self.scheme, self.addr)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary

/// What a finished `ossup` run left behind.
#[derive(Debug)]
pub struct Output {
    /// The exit status.
    pub status: ExitStatus,
    /// Exit code, or -1 if killed by a signal.
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Output {
    /// The `ossup: error:` lines on stderr.
    pub fn error_lines(&self) -> Vec<&str> {
        self.stderr
            .lines()
            .filter(|l| l.starts_with("ossup: error:"))
            .collect()
    }

    /// Asserts that stderr has exactly one `ossup: error:` line, no panic, and returns it.
    pub fn single_error_line(&self) -> &str {
        assert!(
            !self.stderr.contains("panicked"),
            "panic in stderr:\n{}",
            self.stderr
        );
        let lines = self.error_lines();
        assert_eq!(
            lines.len(),
            1,
            "expected exactly one error line, stderr:\n{}",
            self.stderr
        );
        lines[0]
    }

    /// Panics with the whole output unless the exit code is `code`.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// A command line for the `ossup` binary with a clean environment: only `PATH`, `LANG=C`,
/// `HOME` (a nonexistent path under the temp dir) and what the test adds. Real credentials of
/// whoever runs the tests never leak in.
#[derive(Debug)]
pub struct Ossup {
    args: Vec<std::ffi::OsString>,
    env: Vec<(String, String)>,
    timeout: Duration,
}

impl Default for Ossup {
    fn default() -> Self {
        Self::new()
    }
}

impl Ossup {
    /// No arguments yet.
    pub fn new() -> Ossup {
        Ossup {
            args: Vec::new(),
            env: Vec::new(),
            timeout: RUN_TIMEOUT,
        }
    }

    /// Adds one argument.
    pub fn arg(mut self, a: impl AsRef<std::ffi::OsStr>) -> Ossup {
        self.args.push(a.as_ref().to_os_string());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(mut self, a: I) -> Ossup
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.args
            .extend(a.into_iter().map(|s| s.as_ref().to_os_string()));
        self
    }

    /// Sets an environment variable.
    pub fn env(mut self, k: &str, v: &str) -> Ossup {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Sets `OSS_ACCESS_KEY_ID` and `OSS_ACCESS_KEY_SECRET`.
    pub fn creds(self, ak: &str, sk: &str) -> Ossup {
        self.env("OSS_ACCESS_KEY_ID", ak)
            .env("OSS_ACCESS_KEY_SECRET", sk)
    }

    /// Kills the run (and fails the test) after `d` instead of [`RUN_TIMEOUT`].
    pub fn timeout(mut self, d: Duration) -> Ossup {
        self.timeout = d;
        self
    }

    /// The `std::process::Command`.
    pub fn into_command(self) -> Command {
        let mut c = Command::new(bin());
        c.env_clear();
        c.env(
            "PATH",
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
        );
        c.env("LANG", "C");
        c.env(
            "HOME",
            std::env::temp_dir().join("ossup-it-nonexistent-home"),
        );
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.args(&self.args);
        c
    }

    /// Starts it with stdout and stderr piped, stdin closed.
    pub fn spawn(self) -> Child {
        let mut c = self.into_command();
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c.spawn().expect("spawn ossup")
    }

    /// Runs it to the end (at most the timeout) and collects the output.
    pub fn run(self) -> Output {
        let timeout = self.timeout;
        let what = format!("{:?}", self.args);
        finish(self.spawn(), timeout, &what)
    }
}

/// Waits (at most `timeout`) for `child` started by [`Ossup::spawn`] and collects its output.
pub fn finish(mut child: Child, timeout: Duration, what: &str) -> Output {
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait for ossup") {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let e = t_err.join().unwrap_or_default();
            panic!(
                "ossup {what} did not finish within {timeout:?}; stderr:\n{}",
                String::from_utf8_lossy(&e)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    Output {
        status,
        code: status.code().unwrap_or(-1),
        stdout,
        stderr,
    }
}

/// `ossup upload FILE oss://BUCKET/KEY --endpoint E --region cn-hangzhou --checkpoint-dir CK`
/// with [`AK`]/[`SK`]; add more flags with [`Ossup::arg`].
pub fn upload(endpoint: &str, file: &Path, key: &str, checkpoint_dir: &Path) -> Ossup {
    Ossup::new()
        .creds(AK, SK)
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
        .arg(checkpoint_dir)
}

/// The `*.ossup` journal files in `dir`.
pub fn journals(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "ossup"))
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------------
// A scripted fake server

/// A TCP server on 127.0.0.1 that answers every request with whatever `respond` returns for
/// the request head, then closes the connection. It reads the request body first (per
/// `Content-Length`, at most 16 MiB) so that closing never resets unread data. Serves at most
/// 200 connections and for at most 120 s; stops on drop.
#[derive(Debug)]
pub struct FakeServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    heads: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl FakeServer {
    /// Starts it.
    pub fn start<F>(respond: F) -> FakeServer
    where
        F: Fn(&str) -> Vec<u8> + Send + 'static,
    {
        use std::sync::atomic::AtomicBool;
        use std::sync::{Arc, Mutex};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind fake server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (stop2, heads2) = (stop.clone(), heads.clone());
        let handle = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(120);
            let mut served = 0;
            while !stop2.load(Ordering::SeqCst) && Instant::now() < deadline && served < 200 {
                let mut s = match listener.accept() {
                    Ok((s, _)) => s,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                served += 1;
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
                let Some(head) = read_request(&mut s) else {
                    continue;
                };
                let reply = respond(&head);
                heads2.lock().unwrap_or_else(|e| e.into_inner()).push(head);
                let _ = s.write_all(&reply);
                let _ = s.flush();
                let _ = s.shutdown(std::net::Shutdown::Write);
                // Let the client read the reply before the socket goes away.
                let mut sink = [0u8; 1024];
                let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            }
        });
        FakeServer {
            addr,
            stop,
            heads,
            handle: Some(handle),
        }
    }

    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        endpoint(self.addr)
    }

    /// The request heads received so far.
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Reads one request head and its `Content-Length` body; `None` if the client went away.
/// Reads one request head (and skips its body, per `Content-Length`, at most 16 MiB).
pub fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if buf.len() > 64 * 1024 {
            return None;
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let want: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0)
        .min(16 << 20);
    let mut have = buf.len() - end;
    while have < want {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => have += n,
        }
    }
    Some(head)
}

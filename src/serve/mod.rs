//! `ossup serve`: a small OSS-compatible HTTP/1.1 server that keeps objects in a directory.
//!
//! It makes the quick start work without a cloud account, it is the server the integration
//! and torture tests start, and the official SDKs (e.g. oss2 with `ProviderAuthV4`) can upload
//! to it. It is test and quick-start infrastructure, not a storage product: path-style
//! addressing only (`/bucket/key`), one thread per connection, no versioning, no ACLs.
//!
//! Owns: sockets, threads, the clock and the files under the served directory. Must not: be
//! used by the uploader itself (the feature `serve` is left out of board builds).
//!
//! # Operations
//! PutObject, GetObject (with a single `Range`), HeadObject, DeleteObject,
//! InitiateMultipartUpload, UploadPart, ListParts, CompleteMultipartUpload (also
//! `x-oss-complete-all: yes`), AbortMultipartUpload, ListMultipartUploads, a minimal
//! ListObjects (V1/V2, no delimiter), PUT bucket and HEAD bucket. `GET /_ossup/stats` answers
//! the [`Stats`] as JSON and never needs a signature.
//!
//! # Authentication
//! With [`Options::credentials`] set, every request must carry an OSS V4
//! (`OSS4-HMAC-SHA256`) or S3 SigV4 (`AWS4-HMAC-SHA256`) Authorization header for those
//! credentials, checked against the server's (skewed) clock with 15 minutes of tolerance.
//! [`Options::allow_anonymous`] additionally admits requests without an Authorization header
//! (a present but wrong signature is still rejected). With [`Options::keys_file`] set, the
//! keys listed in that file are accepted instead, each until its expiration.
//!
//! # On-disk layout (under `DIR`)
//! ```text
//! DIR/<bucket>/                       a bucket (created by Options::buckets or PUT /bucket)
//! DIR/<bucket>/<name>                 an object's bytes; <name> = sign::uri_encode(key, false),
//!                                     i.e. flat, '/' encoded as %2F; keys made only of dots
//!                                     get '.' as %2E; names over 200 bytes become
//!                                     %L<SHA-256 of the key, upper-case hex>
//! DIR/<bucket>/<name>#meta            sidecar: key, size, etag, crc (CRC-64 decimal), mtime,
//!                                     content-type; `name value` lines, values percent-encoded
//! DIR/.ossup-uploads/<uploadId>/upload       bucket, key, initiated, content-type
//! DIR/.ossup-uploads/<uploadId>/<n>.meta     part n: file, size, etag, crc, mtime
//! DIR/.ossup-uploads/<uploadId>/<n>-<hex>    part n's bytes (the file <n>.meta names)
//! DIR/.ossup-tmp/                     files being written (emptied at start)
//! ```
//! Every file is written under a fresh name and renamed into place, so a killed server leaves
//! either the old or the new version. An object's data rename is its commit point: a missing
//! or stale sidecar (crash between the two renames) is recomputed from the data. A part's
//! `<n>.meta` is its commit point; part data files no meta names are removed at start.
//! Uploads therefore survive a restart. Files are not fsynced (power loss is out of scope).

mod faults;
mod handler;
mod http;
mod keys;
mod store;

pub use faults::{FaultKind, Faults};

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::proto::sign::Credentials;

/// Most connections served at once; further ones are closed at accept.
const MAX_CONNECTIONS: usize = 1024;
/// A connection idle (or a body stalled) this long is closed.
const IO_TIMEOUT: Duration = Duration::from_secs(300);

/// How to run the server.
#[derive(Debug, Clone)]
pub struct Options {
    /// The directory objects and uploads live in (created if missing). Run one server per
    /// directory at a time: a starting server empties `DIR/.ossup-tmp`.
    pub dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (see [`Server::addr`]).
    pub listen: SocketAddr,
    /// Credentials requests must be signed with; `None` admits everyone.
    pub credentials: Option<Credentials>,
    /// Accept only the temporary keys listed in this file, re-read when it changes (see
    /// the `keys` module for the format); takes the place of [`Options::credentials`].
    pub keys_file: Option<PathBuf>,
    /// With credentials set: also admit requests that carry no Authorization header.
    pub allow_anonymous: bool,
    /// Region the signature scope must name, e.g. `cn-hangzhou`; empty accepts any region
    /// (handy for S3 clients that insist on their own).
    pub region: String,
    /// Buckets to create at start (3..=63 of `a-z 0-9 -`).
    pub buckets: Vec<String>,
    /// Fault injection (none by default).
    pub faults: Faults,
    /// Seconds added to the system clock for the server's notion of now (Date headers,
    /// ServerTime, the 15-minute signature window).
    pub skew_secs: i64,
    /// Serve HTTPS with this certificate chain and private key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
}

impl Options {
    /// Options serving `dir` on `127.0.0.1:0` (a free port), region `cn-hangzhou`, no
    /// credentials, no buckets, no faults, no skew, no TLS.
    pub fn new(dir: impl Into<PathBuf>) -> Options {
        Options {
            dir: dir.into(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            credentials: None,
            keys_file: None,
            allow_anonymous: false,
            region: "cn-hangzhou".to_string(),
            buckets: Vec::new(),
            faults: Faults::default(),
            skew_secs: 0,
            tls: None,
        }
    }
}

/// Counters since the server started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Request body bytes received (including bodies that were discarded).
    pub bytes_received: u64,
    /// InitiateMultipartUpload calls that succeeded.
    pub initiated: u64,
    /// CompleteMultipartUpload calls that succeeded.
    pub completed: u64,
    /// AbortMultipartUpload calls that succeeded.
    pub aborted: u64,
    /// UploadPart calls that stored a part (re-uploads count again).
    pub parts_stored: u64,
    /// Multipart uploads currently open (including those found on disk at start).
    pub open_uploads: u64,
    /// PutObject calls that stored an object.
    pub puts: u64,
    /// Requests received (heads parsed).
    pub requests: u64,
    /// Faults injected.
    pub faults_injected: u64,
}

/// The live counters behind [`Stats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub bytes_received: AtomicU64,
    pub initiated: AtomicU64,
    pub completed: AtomicU64,
    pub aborted: AtomicU64,
    pub parts_stored: AtomicU64,
    pub open_uploads: AtomicI64,
    pub puts: AtomicU64,
    pub requests: AtomicU64,
    pub faults_injected: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Stats {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            bytes_received: g(&self.bytes_received),
            initiated: g(&self.initiated),
            completed: g(&self.completed),
            aborted: g(&self.aborted),
            parts_stored: g(&self.parts_stored),
            open_uploads: self.open_uploads.load(Ordering::Relaxed).max(0) as u64,
            puts: g(&self.puts),
            requests: g(&self.requests),
            faults_injected: g(&self.faults_injected),
        }
    }

    pub(crate) fn dec_open(&self) {
        self.open_uploads.fetch_sub(1, Ordering::Relaxed);
    }
}

/// State shared by the accept thread and all connection threads.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) keys: Option<keys::KeysFile>,
    pub(crate) store: store::Store,
    pub(crate) counters: Counters,
    pub(crate) faults: faults::Injector,
    pub(crate) req_seq: AtomicU64,
    pub(crate) req_seed: u64,
    pub(crate) host_id: String,
    pub(crate) base_url: String,
    stopping: AtomicBool,
    stop_lock: Mutex<()>,
    stop_cv: Condvar,
    conns: Mutex<HashMap<u64, TcpStream>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Shared {
    /// The server's now: system time plus the configured skew, Unix seconds.
    pub(crate) fn now(&self) -> i64 {
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        sys.saturating_add(self.opts.skew_secs)
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Sleeps `ms` milliseconds, or less if the server stops meanwhile.
    pub(crate) fn sleep_ms(&self, ms: u64) {
        let deadline = std::time::Instant::now() + Duration::from_millis(ms);
        let mut g = self.stop_lock.lock().unwrap_or_else(|e| e.into_inner());
        while !self.stopping() {
            let now = std::time::Instant::now();
            if now >= deadline {
                return;
            }
            g = match self.stop_cv.wait_timeout(g, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }

    pub(crate) fn stats_json(&self) -> String {
        let s = self.counters.snapshot();
        format!(
            "{{\"bytes_received\":{},\"initiated\":{},\"completed\":{},\"aborted\":{},\"parts_stored\":{},\"open_uploads\":{},\"puts\":{},\"requests\":{},\"faults_injected\":{}}}\n",
            s.bytes_received,
            s.initiated,
            s.completed,
            s.aborted,
            s.parts_stored,
            s.open_uploads,
            s.puts,
            s.requests,
            s.faults_injected
        )
    }
}

/// A running server. Stops (and joins all its threads) on [`Server::stop`] or drop.
pub struct Server {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(format!("{}: {e}", cert.display())))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("{}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(invalid(format!("{}: no certificate found", cert.display())));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| invalid(format!("{}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(format!("TLS: {e}")))?;
    Ok(Arc::new(cfg))
}

impl Server {
    /// Opens the store, creates the configured buckets, binds, and starts accepting
    /// connections on a background thread.
    pub fn start(opts: Options) -> io::Result<Server> {
        for b in &opts.buckets {
            if !store::valid_bucket(b) {
                return Err(invalid(format!(
                    "invalid bucket name {b:?}: use 3..=63 of a-z, 0-9 and '-'"
                )));
            }
        }
        if !(opts.faults.rate.is_nan() || (0.0..=1.0).contains(&opts.faults.rate)) {
            return Err(invalid(format!(
                "fault rate {} is not within 0..=1",
                opts.faults.rate
            )));
        }
        let tls = match &opts.tls {
            Some((c, k)) => Some(load_tls(c, k)?),
            None => None,
        };
        let store = store::Store::open(&opts.dir)?;
        for b in &opts.buckets {
            store.create_bucket(b)?;
        }
        let open = store.uploads()?.len() as i64;
        let listener = TcpListener::bind(opts.listen)?;
        let addr = listener.local_addr()?;
        let counters = Counters::default();
        counters.open_uploads.store(open, Ordering::Relaxed);
        let req_seed = faults::splitmix(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
                ^ (std::process::id() as u64) << 40,
        );
        let scheme = if tls.is_some() { "https" } else { "http" };
        let shared = Arc::new(Shared {
            faults: faults::Injector::new(opts.faults.clone()),
            keys: opts.keys_file.clone().map(keys::KeysFile::new),
            opts,
            store,
            counters,
            req_seq: AtomicU64::new(0),
            req_seed,
            host_id: addr.to_string(),
            base_url: format!("{scheme}://{addr}"),
            stopping: AtomicBool::new(false),
            stop_lock: Mutex::new(()),
            stop_cv: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            handles: Mutex::new(Vec::new()),
            tls,
        });
        let sh = shared.clone();
        let accept = std::thread::Builder::new()
            .name("ossup-serve-accept".into())
            .spawn(move || accept_loop(sh, listener))?;
        Ok(Server {
            addr,
            shared,
            accept: Some(accept),
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> Stats {
        self.shared.counters.snapshot()
    }

    /// Stops accepting, closes every connection and joins all threads.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        let sh = &self.shared;
        sh.stopping.store(true, Ordering::SeqCst);
        {
            let _g = sh.stop_lock.lock().unwrap_or_else(|e| e.into_inner());
            sh.stop_cv.notify_all();
        }
        // Unblock accept() with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(2));
        let _ = accept.join();
        for s in sh.conns.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let handles = std::mem::take(&mut *sh.handles.lock().unwrap_or_else(|e| e.into_inner()));
        for h in handles {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("addr", &self.addr).finish()
    }
}

fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    let mut next_id = 0u64;
    loop {
        let accepted = listener.accept();
        if sh.stopping() {
            return;
        }
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of file descriptors and the like: back off briefly.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        {
            let mut hs = sh.handles.lock().unwrap_or_else(|e| e.into_inner());
            hs.retain(|h| !h.is_finished());
        }
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        {
            let mut conns = sh.conns.lock().unwrap_or_else(|e| e.into_inner());
            if conns.len() >= MAX_CONNECTIONS {
                continue;
            }
            conns.insert(next_id, clone);
        }
        let id = next_id;
        next_id += 1;
        let sh2 = sh.clone();
        let spawned = std::thread::Builder::new()
            .name("ossup-serve-conn".into())
            .stack_size(512 * 1024)
            .spawn(move || {
                run_connection(&sh2, stream);
                sh2.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            });
        match spawned {
            Ok(h) => sh.handles.lock().unwrap_or_else(|e| e.into_inner()).push(h),
            Err(_) => {
                sh.conns
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
            }
        }
    }
}

fn run_connection(sh: &Shared, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    match &sh.tls {
        None => handler::serve_connection(sh, Box::new(stream)),
        Some(cfg) => {
            let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) else {
                return;
            };
            handler::serve_connection(sh, Box::new(rustls::StreamOwned::new(conn, stream)));
        }
    }
}

/// Runs the server until the process is killed (the `ossup serve` command). The first line
/// on stdout is `ossup serve: listening on http://ADDR (dir DIR)`.
pub fn run(opts: Options) -> io::Result<()> {
    let dir = opts.dir.clone();
    let server = Server::start(opts)?;
    let scheme = if server.shared.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "ossup serve: listening on {scheme}://{} (dir {})",
        server.addr(),
        dir.display()
    )?;
    out.flush()?;
    drop(out);
    loop {
        std::thread::park();
    }
}

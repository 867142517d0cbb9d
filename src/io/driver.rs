//! The loop that runs one upload: `poll_action` → perform → `handle`.
//!
//! Owns: the job slots (each a connection plus one reused buffer), carrying out each
//! [`Action`], turning HTTP responses into [`Event`]s, and progress reporting. Must not: decide
//! anything the state machine decides (what to send, when to retry, what is done), or keep its
//! own copy of upload progress beyond the bytes of parts currently on the wire.
//!
//! Cancel-safe: dropping the future at any `.await` loses at most the parts in flight; every
//! record that reached the journal was fsync'd first.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures_lite::future::{self, FutureExt};
use sha2::{Digest as _, Sha256};

use crate::config::{Config, Destination};
use crate::error::Error;
use crate::io::conn::{Conn, ConnectSpec};
use crate::io::exchange::{exchange, BodySource, ExchangeOpts, Response};
use crate::io::journal::{journal_path, Journal, Lock, LockError};
use crate::io::source::Source;
use crate::proto::checkpoint::{CheckpointError, Identity};
use crate::proto::geometry::Geometry;
use crate::proto::rate::TokenBucket;
use crate::proto::request::{self, Body, BodyDigests, Call, Target};
use crate::proto::retry::Failure;
use crate::proto::sign::{self, Scheme};
use crate::proto::upload::{Action, Event, GiveUp, HeadInfo, Params, Upload, Uploaded};
use crate::proto::{time, xml, Op};

/// Request heads are rendered into the job buffer; this much must always fit.
const MIN_BUFFER: usize = 4096;

/// What stays the same for every call of one upload.
struct Shared<'a> {
    cfg: &'a Config,
    target: Target,
    /// The file (absent for calls that need none, like `ossup abort`).
    source: Option<&'a Source>,
    total: u64,
    tls: Option<Arc<rustls::ClientConfig>>,
    /// The proxy to tunnel through, if any.
    proxy: Option<crate::io::conn::Proxy>,
    limiter: Option<RefCell<TokenBucket>>,
    md5_parts: bool,
    /// Bytes of acknowledged parts (set by the loop from the state machine).
    done: Cell<u64>,
    /// Bytes of each job's current part that are on the wire.
    inflight: RefCell<Vec<u64>>,
    /// Highest progress reported (`None` before the first report), so progress never goes
    /// backwards when a part restarts.
    reported: Cell<Option<u64>>,
    progress: RefCell<&'a mut dyn FnMut(u64, u64)>,
    /// The last service error seen.
    last_service: RefCell<Option<LastService>>,
    /// What was wrong with the last failed TLS handshake.
    last_tls: RefCell<Option<String>>,
    /// The request id of the last well-formed but unusable answer (printable, bounded).
    last_unusable: RefCell<Option<String>>,
}

impl Shared<'_> {
    fn report(&self) {
        let total = self.total;
        let now = (self.done.get() + self.inflight.borrow().iter().sum::<u64>()).min(total);
        if self.reported.get().is_none_or(|r| now > r) {
            self.reported.set(Some(now));
            (self.progress.borrow_mut())(now, total);
        }
    }
}

/// The last service error: (op, status, code, message, request id).
type LastService = (Op, u16, String, String, String);

/// One job slot: a connection that is kept alive between calls, and the job's buffer.
struct Job {
    slot: usize,
    conn: Option<Conn>,
    buf: Vec<u8>,
}

type Running<'a> = Pin<Box<dyn Future<Output = (Job, u64, Event)> + 'a>>;

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Builds the request target for `cfg` and `dest`.
pub fn target(cfg: &Config, dest: &Destination) -> Target {
    Target {
        scheme: cfg.scheme,
        endpoint_host: cfg.endpoint.authority.clone(),
        path_style: cfg.path_style || Target::host_needs_path_style(&cfg.endpoint.authority),
        bucket: dest.bucket.clone(),
        key: dest.key.clone(),
    }
}

/// The TLS configuration for `cfg` (`None` for `http://`).
pub fn tls_for(cfg: &Config) -> Result<Option<Arc<rustls::ClientConfig>>, Error> {
    if !cfg.endpoint.tls {
        return Ok(None);
    }
    client_tls(cfg).map(Some)
}

/// A TLS client configuration with the built-in roots and `cfg.ca_file`.
fn client_tls(cfg: &Config) -> Result<Arc<rustls::ClientConfig>, Error> {
    let pem = match &cfg.ca_file {
        Some(p) => Some(
            crate::io::fsafe::read_small_regular(p, crate::io::fsafe::CONFIG_FILE_MAX).map_err(
                |e| {
                    Error::Config(crate::config::ConfigError(format!(
                        "cannot read CA file {}: {e}",
                        p.display()
                    )))
                },
            )?,
        ),
        None => None,
    };
    crate::io::conn::tls_config(pem.as_deref())
        .map_err(|e| Error::Config(crate::config::ConfigError(format!("TLS setup: {e}"))))
}

/// The proxy for `cfg`'s endpoint (see [`crate::proto::proxy::choose`]; the environment is
/// read here, once per upload). A proxy URL that does not parse is a configuration error.
pub fn proxy_for(cfg: &Config) -> Result<Option<crate::io::conn::Proxy>, Error> {
    let env = |k: &str| std::env::var(k).ok();
    let url = crate::proto::proxy::choose(&cfg.proxy, cfg.endpoint.tls, &cfg.endpoint.host, &env)
        .map_err(|e| Error::Config(crate::config::ConfigError(format!("proxy: {e}"))))?;
    let Some(url) = url else {
        return Ok(None);
    };
    let tls = match url.scheme {
        crate::proto::proxy::ProxyScheme::Https => Some(client_tls(cfg)?),
        crate::proto::proxy::ProxyScheme::Http => None,
    };
    log::debug!("through proxy {}:{}", url.host, url.port);
    Ok(Some(crate::io::conn::Proxy { url, tls }))
}

/// Uploads `path` to `dest`. See [`crate::upload_file`].
pub async fn upload(
    cfg: &Config,
    path: &Path,
    dest: &Destination,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Uploaded, Error> {
    cfg.validate()?;
    dest.validate()?;
    let source = Source::open(path).map_err(|e| Error::NoSuchFile {
        path: path.to_path_buf(),
        source: e,
    })?;
    let abs = crate::io::journal::canonical_path(path);
    let multipart = source.len() >= cfg.multipart_threshold && !source.is_empty();
    let part_size = crate::proto::geometry::effective_part_size(
        cfg.part_size,
        cfg.scheme == Scheme::S3V4,
        cfg.allow_small_parts,
    );
    let geometry = Geometry::new(source.len(), part_size)
        .map_err(|e| Error::Config(crate::config::ConfigError(format!("part geometry: {e:?}"))))?;
    let identity = Identity {
        path: abs.to_string_lossy().into_owned(),
        endpoint: cfg.endpoint.url(),
        bucket: dest.bucket.clone(),
        key: dest.key.clone(),
        scheme: match cfg.scheme {
            Scheme::OssV4 => 0,
            Scheme::S3V4 => 1,
        },
        file_len: source.len(),
        mtime_ns: source.mtime_ns(),
        inode: source.inode(),
        part_size: geometry.part_size,
    };

    let (jpath, lock, mut journal, replay, waited, corrupt_set_aside) =
        open_checkpoint(cfg, &abs, dest).await?;
    let tls = tls_for(cfg)?;
    let proxy = proxy_for(cfg)?;
    // Aborts that earlier runs of this destination could not do (refused): retried here.
    let apath = crate::io::journal::aborts_path(
        &cfg.checkpoint_dir,
        &cfg.endpoint.url(),
        &dest.bucket,
        &dest.key,
    );
    let carried = crate::io::journal::read_aborts(&apath)
        .map(|(_, ids)| ids)
        .unwrap_or_default();
    let params = Params {
        identity: identity.clone(),
        geometry,
        multipart,
        max_in_flight: cfg.jobs,
        backoff: cfg.backoff,
        retry_for_ms: cfg
            .retry_for
            .filter(|d| !d.is_zero())
            .map(|d| d.as_millis() as u64),
        seed: (unix_now() as u64) ^ ((std::process::id() as u64) << 32),
        check_existing: waited,
        sweep_strays: corrupt_set_aside,
        carried_aborts: carried.clone(),
    };
    let mut up = Upload::new(params, replay);
    if up.clock_offset() != 0 {
        log::info!(
            "using the clock offset of {} s recorded in the checkpoint",
            up.clock_offset()
        );
    }
    let shared = Shared {
        cfg,
        target: target(cfg, dest),
        source: Some(&source),
        total: source.len(),
        tls,
        proxy,
        limiter: cfg
            .limit_rate
            .map(|r| RefCell::new(TokenBucket::new(r, (r / 4).max(cfg.buffer_size as u64)))),
        md5_parts: cfg.content_md5.unwrap_or(cfg.scheme == Scheme::S3V4),
        done: Cell::new(0),
        inflight: RefCell::new(vec![0; cfg.jobs as usize]),
        reported: Cell::new(None),
        progress: RefCell::new(progress),
        last_service: RefCell::new(None),
        last_tls: RefCell::new(None),
        last_unusable: RefCell::new(None),
    };
    let buffer_size = cfg.buffer_size.max(MIN_BUFFER);
    let mut free: Vec<Job> = (0..cfg.jobs as usize)
        .rev()
        .map(|slot| Job {
            slot,
            conn: None,
            buf: vec![0; buffer_size],
        })
        .collect();
    let mut running: Vec<Running<'_>> = Vec::new();
    let start = Instant::now();
    let now_ms = || start.elapsed().as_millis() as u64;
    let mut last_offset = up.clock_offset();
    let mut warned_listing = false;

    let outcome = loop {
        if !up.is_reconciling() {
            // Progress starts at what earlier runs uploaded, once reconciliation knows it.
            shared.done.set(up.bytes_done());
            shared.report();
        }
        if up.listing_unsupported() && !warned_listing {
            warned_listing = true;
            log::warn!(
                "this server does not implement ListParts: the parts earlier runs sent cannot be verified, so the upload starts over"
            );
        }
        if up.clock_offset() != last_offset {
            log::warn!(
                "clock corrected by {} s from the server's time",
                up.clock_offset()
            );
            last_offset = up.clock_offset();
        }
        match up.poll_action(now_ms()) {
            Action::Call { id, call } => {
                let Some(job) = free.pop() else {
                    // The machine never exceeds max_in_flight; treat a breach as a bug report.
                    unreachable!("state machine exceeded its in-flight limit")
                };
                let offset = up.clock_offset();
                running.push(Box::pin(perform(&shared, job, id, call, offset)));
            }
            Action::Persist(rec) => {
                let j = journal
                    .as_mut()
                    .expect("a journal exists whenever a record is persisted");
                j.append(&rec).map_err(|e| Error::Checkpoint {
                    path: jpath.clone(),
                    source: e,
                })?;
                up.handle(Event::Persisted, now_ms());
            }
            Action::ResetJournal(records) => {
                let j = Journal::create(&jpath, &identity, &records).map_err(|e| {
                    Error::Checkpoint {
                        path: jpath.clone(),
                        source: e,
                    }
                })?;
                journal = Some(j);
                up.handle(Event::Persisted, now_ms());
            }
            Action::DigestFile => {
                let buf = &mut free
                    .last_mut()
                    .expect("all jobs are free while probing")
                    .buf;
                let (crc64, _) = source
                    .digest(0, source.len(), buf)
                    .map_err(|e| read_error(&source, path, e))?;
                up.handle(Event::FileDigest { crc64 }, now_ms());
            }
            Action::Digest { n } => {
                let (off, len) = geometry.part(n);
                // No call is in flight while parts are verified, so a job's buffer is free.
                let buf = &mut free
                    .last_mut()
                    .expect("all jobs are free while verifying")
                    .buf;
                let (crc64, md5) = source
                    .digest(off, len, buf)
                    .map_err(|e| read_error(&source, path, e))?;
                up.handle(Event::Digest { n, crc64, md5 }, now_ms());
            }
            Action::Recheck { n } => {
                let (off, len) = geometry.part(n);
                let buf = &mut free
                    .last_mut()
                    .expect("all jobs are free while verifying")
                    .buf;
                let crc64 = source
                    .crc64_range(off, len, buf)
                    .map_err(|e| read_error(&source, path, e))?;
                up.handle(Event::Rechecked { n, crc64 }, now_ms());
            }
            Action::Sleep { until_ms } => {
                let deadline = start + std::time::Duration::from_millis(until_ms);
                let timer = async {
                    async_io::Timer::at(deadline).await;
                    None
                };
                if let Some((job, _, ev)) = next_done(&mut running).or(timer).await {
                    free.push(job);
                    up.handle(ev, now_ms());
                }
            }
            Action::Wait => {
                if running.is_empty() {
                    unreachable!("state machine waits with nothing outstanding");
                }
                if let Some((job, _, ev)) = next_done(&mut running).await {
                    free.push(job);
                    up.handle(ev, now_ms());
                }
            }
            Action::Done(r) => break r,
        }
    };
    drop(running);
    // The per-destination pending-abort record: what this run could not abort, plus what
    // another upload of the destination added meanwhile. Best effort: a failure to write it
    // is logged, the upload's own outcome stands.
    let unfinished = up.unfinished_aborts();
    if !unfinished.is_empty() || !carried.is_empty() {
        let (_, now) = crate::io::journal::read_aborts(&apath).unwrap_or_default();
        let mut ids = unfinished.clone();
        for id in now {
            if !carried.contains(&id) && !ids.contains(&id) {
                ids.push(id);
            }
        }
        let label = format!("oss://{}/{}", dest.bucket, dest.key);
        if let Err(e) = crate::io::journal::write_aborts(&apath, &label, &ids) {
            log::warn!("cannot update {}: {e}", apath.display());
        } else if !unfinished.is_empty() {
            log::warn!(
                "{} upload(s) of {} could not be aborted (kept in {}; retried by later runs; listed by ossup status)",
                unfinished.len(),
                label.escape_debug(),
                apath.display()
            );
        }
    }
    match outcome {
        Ok(u) => {
            if let Some(j) = journal {
                j.remove().map_err(|e| Error::Checkpoint {
                    path: jpath.clone(),
                    source: e,
                })?;
            }
            release(lock, &jpath);
            shared.done.set(source.len());
            shared.report();
            Ok(u)
        }
        Err(g) => {
            // A journal that names no upload, nothing to abort and no doubt about a stray
            // holds nothing worth keeping (e.g. credentials were refused at Initiate): don't
            // leave it for `ossup status`. Initiating doubts stay until a sweep has run.
            if let Some(j) = journal {
                if !up.journal_worth_keeping() {
                    let _ = j.remove();
                }
            }
            release(lock, &jpath);
            Err(give_up_error(g, &shared, path))
        }
    }
}

/// Waits for the first running call to finish and removes it.
async fn next_done<'a>(running: &mut Vec<Running<'a>>) -> Option<(Job, u64, Event)> {
    if running.is_empty() {
        return future::pending().await;
    }
    future::poll_fn(|cx| {
        for i in 0..running.len() {
            if let Poll::Ready(out) = running[i].as_mut().poll(cx) {
                drop(running.swap_remove(i));
                return Poll::Ready(Some(out));
            }
        }
        Poll::Pending
    })
    .await
}

/// Journal path, the lock, the journal and its replay (if any), whether the lock had to be
/// waited for, and whether the journal lost records (set aside as unreadable, or a tail cut).
type Checkpoint = (
    std::path::PathBuf,
    Lock,
    Option<Journal>,
    Option<crate::proto::checkpoint::Replay>,
    bool,
    bool,
);

/// Takes the lock and opens (or sets aside) the journal for this file and destination.
async fn open_checkpoint(
    cfg: &Config,
    abs: &Path,
    dest: &Destination,
) -> Result<Checkpoint, Error> {
    let dir = &cfg.checkpoint_dir;
    crate::io::journal::ensure_dir(dir).map_err(|e| Error::Checkpoint {
        path: dir.clone(),
        source: e,
    })?;
    let jpath = journal_path(dir, abs, &cfg.endpoint.url(), &dest.bucket, &dest.key);
    let mut waited = false;
    let lock = match Lock::acquire(&jpath, false) {
        Err(LockError::Held { .. }) if cfg.wait_for_lock => {
            log::info!("another ossup holds this upload; waiting for it");
            waited = true;
            Lock::acquire_async(&jpath).await
        }
        other => other,
    };
    let lock = lock.map_err(|e| match e {
        LockError::Held { pid } => Error::Locked {
            path: jpath.clone(),
            pid,
        },
        LockError::Io(e) => Error::Checkpoint {
            path: jpath.clone(),
            source: e,
        },
    })?;
    // Bytes before replay, to tell whether the replay had to drop a damaged or torn tail.
    let on_disk = std::fs::metadata(&jpath).map(|m| m.len()).unwrap_or(0);
    let opened = Journal::open(&jpath).map_err(|e| Error::Checkpoint {
        path: jpath.clone(),
        source: e,
    })?;
    let mut corrupt = false;
    let (journal, replay) = match opened {
        None => (None, None),
        Some((j, Ok(r))) => {
            corrupt = (r.valid_len as u64) < on_disk;
            (Some(j), Some(r))
        }
        Some((j, Err(CheckpointError::NewerVersion(v)))) => {
            // A flipped version byte reads the same as a journal of a newer ossup. Neither may
            // stop a gateway or need a person: keep it unchanged under a name a newer ossup can
            // still find (`NAME.ossup.v<N>`), and start this file over with a stray sweep.
            drop(j);
            let aside = set_aside_name(&jpath, v);
            log::warn!(
                "checkpoint {} has format {v}, which this ossup cannot read (damaged, or written by a newer ossup); kept as {} and starting over",
                jpath.display(),
                aside.display()
            );
            std::fs::rename(&jpath, &aside).map_err(|e| Error::Checkpoint {
                path: jpath.clone(),
                source: e,
            })?;
            corrupt = true;
            (None, None)
        }
        Some((j, Err(CheckpointError::NotAJournal))) => {
            // Unreadable header: nothing in it can be trusted (not even the upload id), so it
            // is kept aside for inspection and the upload starts fresh.
            drop(j);
            let aside = jpath.with_extension("corrupt");
            log::warn!(
                "checkpoint {} is corrupt; moved to {} and starting over",
                jpath.display(),
                aside.display()
            );
            std::fs::rename(&jpath, &aside).map_err(|e| Error::Checkpoint {
                path: jpath.clone(),
                source: e,
            })?;
            corrupt = true;
            (None, None)
        }
    };
    Ok((jpath, lock, journal, replay, waited, corrupt))
}

/// Where a journal this build cannot read is kept: `NAME.ossup.v<N>` (never overwriting an
/// earlier one: `.v<N>.1`, `.v<N>.2`, ... up to 100, then the last is replaced).
fn set_aside_name(jpath: &Path, version: u8) -> PathBuf {
    let base = format!("{}.v{version}", jpath.display());
    let mut p = PathBuf::from(&base);
    for i in 1..=100 {
        if std::fs::symlink_metadata(&p).is_err() {
            break;
        }
        p = PathBuf::from(format!("{base}.{i}"));
    }
    p
}

/// A failed local read: a file that shrank or was replaced meanwhile is a changed file (65),
/// anything else an IO error (74).
fn read_error(source: &Source, path: &Path, e: std::io::Error) -> Error {
    if source.changed().unwrap_or(false) {
        Error::FileChanged {
            path: path.to_path_buf(),
        }
    } else {
        Error::Read {
            path: path.to_path_buf(),
            source: e,
        }
    }
}

fn give_up_error(g: GiveUp, shared: &Shared<'_>, path: &Path) -> Error {
    let last = shared.last_service.borrow().clone();
    match g {
        GiveUp::DataMismatch { op, local, server } => Error::DataMismatch { op, local, server },
        GiveUp::Fatal {
            failure: Failure::SourceChanged,
            ..
        } => Error::FileChanged {
            path: path.to_path_buf(),
        },
        // A read that failed because the file shrank (or was replaced) is a changed file
        // (65), not an IO error (74).
        GiveUp::Fatal {
            failure: Failure::LocalRead,
            ..
        } if shared.source.is_some_and(|s| s.changed().unwrap_or(false)) => Error::FileChanged {
            path: path.to_path_buf(),
        },
        GiveUp::Fatal {
            op,
            failure: Failure::LocalRead,
        } => Error::Read {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("read failed during {op}")),
        },
        GiveUp::Fatal {
            op,
            failure: Failure::TlsCertificate,
        } => Error::Tls {
            op,
            detail: shared.last_tls.borrow().clone().unwrap_or_default(),
        },
        GiveUp::Fatal {
            failure: Failure::Proxy(crate::proto::retry::ProxyFailure::AuthRequired(status)),
            ..
        } => Error::ProxyAuth {
            status,
            proxy: shared
                .proxy
                .as_ref()
                .map(|p| format!("{}:{}", p.url.host, p.url.port))
                .unwrap_or_default(),
        },
        GiveUp::Fatal {
            op,
            failure: Failure::Status { status, code },
        } => {
            let (message, request_id) = match &last {
                Some((lop, lstatus, _, m, r)) if *lop == op && *lstatus == status => {
                    (m.clone(), r.clone())
                }
                _ => (String::new(), String::new()),
            };
            Error::Service {
                op,
                status,
                code: code.unwrap_or_default(),
                message,
                request_id,
            }
        }
        GiveUp::Fatal {
            op,
            failure: Failure::Unusable(what),
        } => Error::Unusable {
            op,
            what,
            request_id: shared.last_unusable.borrow().clone().unwrap_or_default(),
        },
        GiveUp::Fatal { op, failure } => Error::GaveUp {
            op,
            failure,
            attempts: 1,
            detail: None,
        },
        GiveUp::RetryBudget {
            op,
            failure,
            attempts,
        } => Error::GaveUp {
            op,
            failure,
            attempts,
            detail: last.map(|(_, _, c, m, r)| (c, m, r)),
        },
    }
}

/// Signs, sends and reads one call on `job`, returning the job and the event to report.
async fn perform(
    shared: &Shared<'_>,
    mut job: Job,
    id: u64,
    call: Call,
    clock_offset: i64,
) -> (Job, u64, Event) {
    let ev = match perform_inner(shared, &mut job, id, &call, clock_offset).await {
        Ok(ev) => ev,
        Err(failure) => {
            job.conn = None;
            Event::Failed {
                id,
                failure,
                server_time: None,
                local_time: unix_now(),
            }
        }
    };
    shared.inflight.borrow_mut()[job.slot] = 0;
    (job, id, ev)
}

async fn perform_inner(
    shared: &Shared<'_>,
    job: &mut Job,
    id: u64,
    call: &Call,
    clock_offset: i64,
) -> Result<Event, Failure> {
    let source = match (shared.source, call) {
        (Some(s), _) => s,
        (
            None,
            Call::Abort { .. }
            | Call::HeadObject
            | Call::ListParts { .. }
            | Call::ListUploads { .. },
        ) => {
            let digests = BodyDigests::default();
            return send_call(shared, job, id, call, clock_offset, digests, None).await;
        }
        (None, _) => return Err(Failure::LocalRead),
    };
    // Digests the signature or headers need, computed from the local bytes first.
    let mut digests = BodyDigests::default();
    if let Call::UploadPart { offset, len, .. } = call {
        if shared.md5_parts {
            let md5 = source
                .md5_range(*offset, *len, &mut job.buf)
                .map_err(|_| Failure::LocalRead)?;
            digests.md5 = Some(md5);
        }
    }
    if let Call::PutObject { len } = call {
        if shared.md5_parts {
            digests.md5 = Some(
                source
                    .md5_range(0, *len, &mut job.buf)
                    .map_err(|_| Failure::LocalRead)?,
            );
        }
    }
    if let Call::Complete { .. } = call {
        // Never complete an upload whose file changed underneath it: it would mix contents.
        if source.changed().map_err(|_| Failure::LocalRead)? {
            return Err(Failure::SourceChanged);
        }
    }
    let ev = send_call(shared, job, id, call, clock_offset, digests, Some(source)).await?;
    if let (Call::PutObject { .. }, Event::Put { .. }) = (call, &ev) {
        // The same check as before Complete: a file rewritten during the send was stored as
        // bytes of two versions, which must not count as uploaded.
        if source.changed().map_err(|_| Failure::LocalRead)? {
            return Err(Failure::SourceChanged);
        }
    }
    Ok(ev)
}

async fn send_call(
    shared: &Shared<'_>,
    job: &mut Job,
    id: u64,
    call: &Call,
    clock_offset: i64,
    digests: BodyDigests,
    source: Option<&Source>,
) -> Result<Event, Failure> {
    let cfg = shared.cfg;
    let mut head = request::describe(&shared.target, call, &cfg.object, &digests);
    let body_sha = match (&head.body, cfg.scheme) {
        (Body::Bytes(b), Scheme::S3V4) => Some(sign::hex(&Sha256::digest(b))),
        (Body::Empty, Scheme::S3V4) => Some(sign::hex(&Sha256::digest(b""))),
        _ => None,
    };
    let product = match cfg.scheme {
        Scheme::OssV4 => "oss",
        Scheme::S3V4 => "s3",
    };
    // A refreshable source is asked before every request (a cheap stat for a file).
    let provided = match &cfg.credentials_provider {
        Some(p) => Some(p.credentials().map_err(|e| {
            log::debug!("{}: not sent: {e}", describe_call(call));
            Failure::AwaitingCredentials { code: None }
        })?),
        None => None,
    };
    let credentials = provided.as_ref().unwrap_or(&cfg.credentials);
    let signed = {
        let req = head.sign_request(&shared.target);
        let ctx = sign::Context {
            scheme: cfg.scheme,
            region: &cfg.region,
            product,
            credentials,
            unix_time: unix_now() + clock_offset,
            additional_headers: &[],
            payload_sha256: body_sha.as_deref(),
        };
        sign::sign_headers(&req, &ctx)
    };
    head.headers.extend(signed.headers);
    let head_len = request::render(&head, &mut job.buf).map_err(|_| Failure::Malformed)?;

    if job.conn.is_none() {
        let spec = ConnectSpec {
            host: cfg.endpoint.host.clone(),
            port: cfg.endpoint.port,
            tls: shared.tls.clone(),
            connect_timeout: cfg.timeouts.connect,
            proxy: shared.proxy.clone(),
        };
        job.conn = Some(Conn::connect_explained(&spec).await.map_err(|e| {
            if e.detail.is_some() {
                *shared.last_tls.borrow_mut() = e.detail;
            }
            e.failure
        })?);
    }
    let conn = job.conn.as_mut().expect("connected above");
    let body = match &head.body {
        Body::Empty => BodySource::None,
        Body::Bytes(b) => BodySource::Bytes(b),
        Body::File { offset, len } => match source {
            Some(source) => BodySource::File {
                source,
                offset: *offset,
                len: *len,
            },
            None => return Err(Failure::LocalRead),
        },
    };
    let mut opts = ExchangeOpts::new(cfg.timeouts.idle);
    opts.head_request = matches!(call, Call::HeadObject);
    opts.limiter = shared.limiter.as_ref();
    let slot = job.slot;
    let counts = matches!(call, Call::UploadPart { .. } | Call::PutObject { .. });
    let mut on_progress = |n: u64| {
        if counts {
            shared.inflight.borrow_mut()[slot] += n;
            shared.report();
        }
    };
    let started = Instant::now();
    let result = exchange(conn, &mut job.buf, head_len, body, &opts, &mut on_progress).await;
    let (resp, local_crc) = match result {
        Ok(r) => r,
        Err(f) => {
            log::debug!(
                "{}: {} after {:?}",
                describe_call(call),
                crate::error::describe_failure(&f),
                started.elapsed()
            );
            return Err(f);
        }
    };
    log::debug!(
        "{}: HTTP {} in {:?}{}",
        describe_call(call),
        resp.head.status,
        started.elapsed(),
        resp.head
            .printable_request_id()
            .map(|r| format!(" (request id {r})"))
            .unwrap_or_default()
    );
    if !resp.reusable() {
        job.conn = None;
    }
    let ev = to_event(shared, id, call, resp, local_crc);
    Ok(match (&cfg.credentials_provider, provided) {
        (Some(p), Some(used)) => match ev {
            Event::Failed {
                id,
                failure,
                server_time,
                local_time,
            } => Event::Failed {
                id,
                failure: crate::io::credentials::after_failure(p.as_ref(), &used, failure),
                server_time,
                local_time,
            },
            ev => {
                p.accepted(&used);
                ev
            }
        },
        _ => ev,
    })
}

/// A short description of a call for debug logs (never includes credentials).
fn describe_call(call: &Call) -> String {
    match call {
        Call::UploadPart { n, len, .. } => format!("UploadPart {n} ({len} bytes)"),
        Call::ListParts { marker, .. } => format!("ListParts after {marker}"),
        Call::PutObject { len } => format!("PutObject ({len} bytes)"),
        Call::Complete { parts, .. } => format!("CompleteMultipartUpload ({} parts)", parts.len()),
        other => other.op().to_string(),
    }
}

/// Interprets a complete response to `call` as an event.
fn to_event(shared: &Shared<'_>, id: u64, call: &Call, resp: Response, local_crc: u64) -> Event {
    let h = &resp.head;
    let status = h.status;
    let malformed = || Event::Failed {
        id,
        failure: Failure::Malformed,
        server_time: None,
        local_time: unix_now(),
    };
    let bad_body = |e: xml::XmlError| {
        let failure = crate::proto::retry::body_failure(&e);
        if matches!(failure, Failure::Unusable(_)) {
            // Named in the error if the same kind of answer ends the run.
            *shared.last_unusable.borrow_mut() = h.printable_request_id();
        }
        Event::Failed {
            id,
            failure,
            server_time: None,
            local_time: unix_now(),
        }
    };
    if (200..300).contains(&status) {
        // A 2xx to a write must carry the ETag the protocol requires, within bounds; one
        // without it is malformed (never journaled, never sent back in a Complete).
        let etag = h.etag().map(str::to_string);
        if etag.is_none() && matches!(call, Call::PutObject { .. } | Call::UploadPart { .. }) {
            return malformed();
        }
        let etag = etag.unwrap_or_default();
        return match call {
            Call::PutObject { .. } => Event::Put {
                id,
                etag,
                local_crc,
                server_crc: h.crc64(),
            },
            Call::UploadPart { .. } => Event::PartSent {
                id,
                etag,
                local_crc,
                server_crc: h.crc64(),
            },
            Call::Initiate => match xml::parse_initiate(&resp.body) {
                Ok(upload_id) => Event::Initiated { id, upload_id },
                Err(e) => bad_body(e),
            },
            Call::ListParts { .. } => match xml::parse_list_parts(&resp.body) {
                Ok(page) => Event::Listed { id, page },
                Err(e) => bad_body(e),
            },
            Call::Complete { .. } => match xml::parse_complete(&resp.body) {
                Ok(etag) => Event::Completed {
                    id,
                    etag,
                    server_crc: h.crc64(),
                },
                Err(Ok(svc)) => service_failure(shared, id, call.op(), status, svc, h),
                Err(Err(e)) => bad_body(e),
            },
            Call::Abort { .. } => Event::Aborted { id },
            Call::HeadObject => Event::Head {
                id,
                found: Some(HeadInfo {
                    len: h
                        .header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    crc64: h.crc64(),
                    etag: h.etag().map(str::to_string),
                }),
            },
            Call::ListUploads { .. } => match xml::parse_list_uploads(&resp.body) {
                Ok(page) => Event::UploadsListed { id, page },
                Err(e) => bad_body(e),
            },
        };
    }
    if status == 404 && matches!(call, Call::HeadObject) {
        return Event::Head { id, found: None };
    }
    let svc = xml::parse_error(&resp.body)
        .or_else(|| h.header("x-oss-err").and_then(xml::parse_oss_err_header))
        .unwrap_or_default();
    service_failure(shared, id, call.op(), status, svc, h)
}

fn service_failure(
    shared: &Shared<'_>,
    id: u64,
    op: Op,
    status: u16,
    svc: xml::ServiceError,
    h: &crate::proto::response::ResponseHead,
) -> Event {
    let server_time = svc
        .server_time
        .as_deref()
        .and_then(time::parse_iso8601)
        .or_else(|| h.header("date").and_then(time::parse_rfc1123));
    let request_id = if svc.request_id.is_empty() {
        h.printable_request_id().unwrap_or_default()
    } else {
        svc.request_id.clone()
    };
    log::debug!(
        "{op}: HTTP {status} {} {} (request id {request_id})",
        svc.code,
        svc.message
    );
    let code = (!svc.code.is_empty()).then(|| svc.code.clone());
    *shared.last_service.borrow_mut() = Some((op, status, svc.code, svc.message, request_id));
    Event::Failed {
        id,
        failure: Failure::Status { status, code },
        server_time,
        local_time: unix_now(),
    }
}

/// Aborts the multipart uploads named in the checkpoint of `file` → `dest` and removes the
/// checkpoint. Returns the upload ids aborted (already-gone uploads count as aborted).
pub async fn abort(cfg: &Config, file: &Path, dest: &Destination) -> Result<Vec<String>, Error> {
    abort_inner(cfg, file, dest, false).await.map(|f| f.aborted)
}

/// What [`forget`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Upload ids the server aborted (or no longer knew).
    pub aborted: Vec<String>,
    /// Upload ids the server could not abort, dropped from the local records anyway: they may
    /// still hold storage on the server until a lifecycle rule or a person removes them.
    pub forgotten: Vec<String>,
}

/// `ossup abort --forget`: like [`abort`], but an abort the server cannot do (a store
/// without AbortMultipartUpload answers 405/501, or any other failure) does not stop it:
/// the journal of `file` → `dest` and the destination's pending-abort record are removed
/// whatever the server said, so that no later run retries what the server cannot act on.
pub async fn forget(cfg: &Config, file: &Path, dest: &Destination) -> Result<Forgotten, Error> {
    abort_inner(cfg, file, dest, true).await
}

async fn abort_inner(
    cfg: &Config,
    file: &Path,
    dest: &Destination,
    forget: bool,
) -> Result<Forgotten, Error> {
    use crate::proto::checkpoint::Record;
    cfg.validate()?;
    dest.validate()?;
    let abs = crate::io::journal::canonical_path(file);
    let (jpath, lock, journal, replay, _, _) = open_checkpoint(cfg, &abs, dest).await?;
    let mut ids: Vec<String> = Vec::new();
    if let Some(r) = &replay {
        for rec in &r.records {
            match rec {
                Record::Started { upload_id } | Record::AbortPending { upload_id }
                    if !ids.contains(upload_id) =>
                {
                    ids.push(upload_id.clone());
                }
                Record::Aborted { upload_id } => ids.retain(|i| i != upload_id),
                _ => {}
            }
        }
    }
    let mut noop = |_: u64, _: u64| {};
    let shared = Shared {
        cfg,
        target: target(cfg, dest),
        source: None,
        total: 0,
        tls: tls_for(cfg)?,
        proxy: proxy_for(cfg)?,
        limiter: None,
        md5_parts: false,
        done: Cell::new(0),
        inflight: RefCell::new(vec![0]),
        reported: Cell::new(None),
        progress: RefCell::new(&mut noop),
        last_service: RefCell::new(None),
        last_tls: RefCell::new(None),
        last_unusable: RefCell::new(None),
    };
    let offset = replay
        .as_ref()
        .and_then(|r| {
            r.records.iter().rev().find_map(|rec| match rec {
                Record::ClockOffset { secs } => Some(*secs),
                _ => None,
            })
        })
        .unwrap_or(0);
    let mut job = Job {
        slot: 0,
        conn: None,
        buf: vec![0; cfg.buffer_size.max(MIN_BUFFER)],
    };
    // An Initiate whose answer was lost may have left an upload no record names (the doubt
    // of `Record::Initiating`): abort also sweeps the key's uploads then (first page; best
    // effort: a refused or failed listing does not stop the abort of the known ids).
    let (initiating, started) = replay.as_ref().map_or((0, 0), |r| {
        r.records.iter().fold((0, 0), |(i, s), rec| match rec {
            Record::Initiating => (i + 1, s),
            Record::Started { .. } => (i, s + 1),
            _ => (i, s),
        })
    });
    if initiating > started {
        let call = Call::ListUploads {
            key_marker: String::new(),
            upload_id_marker: String::new(),
        };
        let (j, _, ev) = perform(&shared, job, 1, call, offset).await;
        job = j;
        if let Event::UploadsListed { page, .. } = ev {
            for u in page.uploads {
                if u.key == dest.key && !ids.contains(&u.upload_id) {
                    ids.push(u.upload_id);
                }
            }
        }
    }
    // The destination's record of aborts refused earlier: `--forget` clears it too.
    let apath = crate::io::journal::aborts_path(
        &cfg.checkpoint_dir,
        &cfg.endpoint.url(),
        &dest.bucket,
        &dest.key,
    );
    if forget {
        if let Ok((_, carried)) = crate::io::journal::read_aborts(&apath) {
            for id in carried {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    let mut done = Forgotten::default();
    for upload_id in &ids {
        let call = Call::Abort {
            upload_id: upload_id.clone(),
        };
        let (j, _, ev) = perform(&shared, job, 1, call, offset).await;
        job = j;
        match ev {
            Event::Aborted { .. } => done.aborted.push(upload_id.clone()),
            Event::Failed {
                failure: Failure::Status { status: 404, .. },
                ..
            } => done.aborted.push(upload_id.clone()),
            Event::Failed { failure, .. } if forget => {
                log::warn!(
                    "upload {upload_id} was not aborted ({}); forgetting it anyway",
                    crate::error::describe_failure(&failure)
                );
                done.forgotten.push(upload_id.clone());
            }
            Event::Failed { failure, .. } => {
                let g = match crate::proto::retry::classify(Op::Abort, &failure) {
                    crate::proto::retry::Verdict::Fatal => GiveUp::Fatal {
                        op: Op::Abort,
                        failure,
                    },
                    _ => GiveUp::RetryBudget {
                        op: Op::Abort,
                        failure,
                        attempts: 1,
                    },
                };
                return Err(give_up_error(g, &shared, file));
            }
            _ => done.aborted.push(upload_id.clone()),
        }
    }
    if let Some(j) = journal {
        j.remove().map_err(|e| Error::Checkpoint {
            path: jpath.clone(),
            source: e,
        })?;
    }
    if forget {
        crate::io::journal::write_aborts(&apath, "", &[]).map_err(|e| Error::Checkpoint {
            path: apath.clone(),
            source: e,
        })?;
    }
    release(lock, &jpath);
    Ok(done)
}

/// Releases the lock of `jpath`, removing its lock file when no journal is left there (the
/// upload is done or nothing was worth keeping), so that finished uploads leave no files
/// (issue 11 item 19). A kept journal keeps its lock file: it is still in use.
fn release(lock: Lock, jpath: &Path) {
    match std::fs::symlink_metadata(jpath) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => lock.remove(),
        _ => drop(lock),
    }
}

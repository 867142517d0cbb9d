//! `ossup watch <DIR> oss://<BUCKET>/<PREFIX>`: spool-directory mode for gateways.
//!
//! Owns: scanning the spool directory, deciding when a file is complete, the order of uploads,
//! per-file retry with backoff, the done-log, and deleting or moving uploaded files.
//! Must not: upload anything itself (every file goes through [`ossup::upload_file_blocking`],
//! with the library's journal, resume and lock), or touch the library's journals.
//!
//! **What is uploaded.** Every regular file under DIR, recursively, except names starting with
//! `.` and names ending in `.tmp` or `.part` (files and directories alike), and except the
//! `--done-dir` and the checkpoint directory if they lie inside DIR. Symbolic links to files are
//! followed (the link, not its target, is deleted or moved afterwards) when the target lies
//! inside DIR and belongs to the link's owner, or whatever it is with `--follow-symlinks`
//! (see `scan`); links to directories are not. A file's key is PREFIX followed by its path
//! relative to DIR with `/` separators; PREFIX always ends in `/` (`oss://b/in` and
//! `oss://b/in/` both give `in/a/b.csv`; `oss://b` or `oss://b/` no prefix). Files are uploaded one at a time, oldest modification
//! time first; a file that is not regular (FIFO, socket, device) or cannot be read fails like
//! any other file.
//!
//! **The settle rule.** A writer may still be appending to a file, so a file is only read once it
//! is complete, which is when either
//! - its modification time is already at least `--settle` old when the file is first seen (it
//!   was written elsewhere and renamed into DIR, the recommended way to feed a spool), or
//! - its length, modification time and inode have stayed the same across scans for `--settle`
//!   (default 10 s), measured on the monotonic clock so that a wall-clock jump cannot shorten it.
//!
//! This is a heuristic (a file system that stores local time, like FAT, can fool the first
//! rule), so it has two backstops. The library refuses to complete a multipart
//! upload whose file changed since it was opened (the failure is retried after the file settles
//! again); and after every upload the file is checked once more, and if it changed, it is neither
//! recorded nor deleted but uploaded again once it settles, so the object always ends with the
//! final content.
//!
//! **Crash safety.** Deleting a file is the one step that cannot be redone, so completion is made
//! durable first. After the library reports a verified upload (CRC-64 checked end to end, its
//! journal removed), a line `<path>\t<length>\t<mtime ns>\t<inode>\t<MAC>\n` is appended to
//! the *done-log* (the MAC proves this ossup wrote it, see `donelog`) and `fdatasync`'d, and
//! only then is the file deleted (or renamed into `--done-dir` under a free name, creating
//! directories, copying across file systems) and its directory fsync'd; see `retire` for how
//! the file deleted is proven to be the version uploaded.
//! The done-log lives in the checkpoint directory as `watch-<16 hex>.done`, the digits being
//! the start of a SHA-256 of the canonical DIR, endpoint, bucket and prefix. On start the
//! done-log is read (a torn last line is ignored), entries whose file is gone or has another
//! identity are pruned, and it is rewritten atomically; a file that still matches an entry is
//! not uploaded again, only deleted or moved. So a crash or power cut at any point
//! - before the done-log line is durable: the upload resumes from the library's journal, or, if
//!   the library had already finished, the file is uploaded once more (the object is rewritten
//!   with the same bytes; the window is the few milliseconds between the library removing its
//!   journal and the done-log `fdatasync`);
//! - after it: the file is never uploaded again, only deleted or moved on the next start.
//!
//! Stopping: SIGTERM and SIGINT keep their default action (the process ends at once). That is
//! safe because the library's journal and the done-log are consistent at every instant; the
//! next start resumes where this one stopped.
//!
//! **Failures.** A per-file failure (file changed, unreadable, not a regular file, server
//! unavailable after `--retry-for`: exit codes 65, 66, 74, 75) is logged as one line and that
//! file is tried again later, after 30 s, doubling to at most 1 h; the other files go on. A
//! file whose upload is locked by another ossup process is skipped and tried again at the next
//! scan. Failures that concern every file (checkpoint directory unusable, credentials rejected,
//! configuration: exit codes 73, 77, 78) stop the watch with that exit code. A second `ossup
//! watch` on the same DIR, whatever its destination, exits 75 naming the first one's PID (the
//! directory itself is locked, see `spool_lock`).
//!
//! `--once` processes the files present at the first scan, waiting for unsettled or locked ones
//! at most `--settle` plus `max(10 s, 2 × --poll)`, and exits 0 if all were uploaded, 75
//! otherwise (failed files are not retried within the run). `--wait` is ignored: locked files
//! are skipped and retried instead of blocking the loop.

mod donelog;
mod retire;
mod scan;
mod spool_lock;
mod target;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use ossup::error::exit;
use ossup::io::journal::{Lock, LockError};
use ossup::{Config, Error};
use sha2::{Digest, Sha256};

use crate::args::WatchArgs;
use crate::progress;
use donelog::DoneLog;
use retire::Retired;
use scan::{walk, wall_ns, Ident};
use target::Target;

/// `--settle` default.
const DEFAULT_SETTLE: Duration = Duration::from_secs(10);
/// `--poll` default.
const DEFAULT_POLL: Duration = Duration::from_secs(5);
/// Shortest `--poll` honoured (a smaller value would spin).
const MIN_POLL: Duration = Duration::from_millis(10);
/// First wait after a per-file failure; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(30);
/// Longest wait between attempts at one file.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// `--once` waits for unsettled or locked files at most `settle` plus this (or 2 × poll).
const ONCE_MARGIN: Duration = Duration::from_secs(10);

/// A failure that stops the whole watch.
struct Fatal {
    msg: String,
    hint: &'static str,
    code: u8,
}

impl Fatal {
    fn new(msg: impl Into<String>, hint: &'static str, code: u8) -> Fatal {
        Fatal {
            msg: msg.into(),
            hint,
            code,
        }
    }
}

/// Runs the watch loop; returns when `--once` is done or on a fatal error.
pub fn main(cfg: Config, dir: &Path, dest: &str, args: &WatchArgs, quiet: bool) -> ExitCode {
    match run(cfg, dir, dest, args, quiet) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            progress::clear_line();
            if f.hint.is_empty() {
                eprintln!("ossup: error: {}", f.msg);
            } else {
                eprintln!("ossup: error: {}; {}", f.msg, f.hint);
            }
            ExitCode::from(f.code)
        }
    }
}

/// Parses a `--settle`/`--poll` value: seconds (fractions allowed) or a duration like `500ms`.
fn parse_secs(flag: &str, value: Option<&str>, default: Duration) -> Result<Duration, Fatal> {
    let Some(v) = value else {
        return Ok(default);
    };
    let bad = || {
        Fatal::new(
            format!("{flag} {v:?}: expected seconds, e.g. 10 or 0.5"),
            "see ossup --help",
            exit::USAGE,
        )
    };
    match decimal_secs(v.trim()) {
        Some(Some(d)) => Ok(d),
        Some(None) => Err(bad()),
        None => ossup::config::parse_duration(v).map_err(|_| bad()),
    }
}

/// Decimal seconds `DIGITS[.DIGITS]` (`10`, `0.5`, `.5`, `5.`) without floats: `None` if `t`
/// is not of that form, `Some(None)` if it is but exceeds 1e9 s. Fraction digits past the
/// ninth (below a nanosecond) are dropped.
fn decimal_secs(t: &str) -> Option<Option<Duration>> {
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !digits(int) || !digits(frac) {
        return None;
    }
    let mut nanos = 0u32;
    for i in 0..9 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
        nanos = nanos * 10 + d;
    }
    let secs = if int.is_empty() {
        Some(0)
    } else {
        int.parse::<u64>().ok()
    };
    Some(
        secs.filter(|&s| s < 1_000_000_000 || (s == 1_000_000_000 && nanos == 0))
            .map(|s| Duration::new(s, nanos)),
    )
}

/// What the watch knows about one file.
struct Tracked {
    path: PathBuf,
    id: Ident,
    /// When this identity was first seen (monotonic).
    since: Instant,
    /// Its modification time was already `settle` old when first seen.
    old_at_sight: bool,
    /// The done-log says this version is uploaded: only delete or move it.
    uploaded: bool,
    /// Not tried before this (after a failure, or while locked elsewhere).
    retry_at: Option<Instant>,
    /// Wait after the next failure.
    backoff: Duration,
    /// `--once`: failed in this run, not tried again.
    failed: bool,
}

/// The watch loop's state.
struct Watcher {
    cfg: Config,
    root: PathBuf,
    target: Target,
    settle: Duration,
    poll: Duration,
    once: bool,
    done_dir: Option<PathBuf>,
    /// `--follow-symlinks`.
    follow_symlinks: bool,
    quiet: bool,
    skip: HashSet<(u64, u64)>,
    done: DoneLog,
    tracked: BTreeMap<String, Tracked>,
    /// `--once`: the files of the first scan.
    once_set: Option<HashSet<String>>,
    /// Paths already warned about (unusable names, unreadable directories).
    warned: HashSet<PathBuf>,
    /// `--once`: files that failed in this run.
    failures: usize,
    /// The last scan of DIR itself failed (logged once until it recovers).
    scan_failing: bool,
    /// `--compress` globs, the mode, and the staging directory (`<checkpoint dir>/.staging`).
    compress: Vec<String>,
    compress_mode: ossup::proto::staging::Mode,
    staging: PathBuf,
    /// Staging files of vanished originals were removed (once, after the first scan).
    staging_swept: bool,
}

fn show(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        // Tenths, rounded half to even as `{:.1}` does, in integers (no float formatting).
        let nanos = d.as_nanos();
        let (mut tenths, rest) = (nanos / 100_000_000, nanos % 100_000_000);
        if rest > 50_000_000 || (rest == 50_000_000 && tenths % 2 == 1) {
            tenths += 1;
        }
        format!("{}.{}s", tenths / 10, tenths % 10)
    }
}

fn run(
    mut cfg: Config,
    dir: &Path,
    dest: &str,
    args: &WatchArgs,
    quiet: bool,
) -> Result<u8, Fatal> {
    let usage = |m: String| Fatal::new(m, "see ossup --help", exit::USAGE);
    let settle = parse_secs("--settle", args.settle.as_deref(), DEFAULT_SETTLE)?;
    let poll = parse_secs("--poll", args.poll.as_deref(), DEFAULT_POLL)?.max(MIN_POLL);
    let target = Target::parse(dest).map_err(usage)?;
    let root = match fs::metadata(dir) {
        Ok(m) if m.is_dir() => fs::canonicalize(dir).map_err(|e| {
            Fatal::new(
                format!("cannot resolve {}: {e}", dir.display()),
                "",
                exit::NOINPUT,
            )
        })?,
        Ok(_) => {
            return Err(Fatal::new(
                format!("{} is not a directory", dir.display()),
                "check the path",
                exit::NOINPUT,
            ))
        }
        Err(e) => {
            return Err(Fatal::new(
                format!("cannot open {}: {e}", dir.display()),
                "check the path",
                exit::NOINPUT,
            ))
        }
    };
    // One watcher per spool, whatever its destination: two would delete files under each other.
    let _spool_lock = match spool_lock::lock_spool(&root) {
        Ok(l) => l,
        Err(spool_lock::SpoolLockError::Held(pid)) => {
            let who = pid.map(|p| format!(" (PID {p})")).unwrap_or_default();
            return Err(Fatal::new(
                format!("another ossup watch{who} is watching {}", root.display()),
                "one watcher per directory: stop it first",
                exit::TEMPFAIL,
            ));
        }
        Err(spool_lock::SpoolLockError::Io(e)) => {
            return Err(Fatal::new(
                format!("cannot lock {}: {e}", root.display()),
                "check the path",
                exit::NOINPUT,
            ))
        }
    };
    if cfg.wait_for_lock {
        log::info!(
            "--wait does not apply to watch: files locked by another ossup are retried later"
        );
        cfg.wait_for_lock = false;
    }
    let compress_mode = crate::compress::take_mode(&mut cfg);
    let ckpt = cfg.checkpoint_dir.clone();
    let ckpt_err = |e: io::Error| {
        Fatal::new(
            format!("checkpoint dir {} unusable: {e}", ckpt.display()),
            "use a checkpoint dir that this user owns and only it can write (--checkpoint-dir)",
            exit::CANTCREAT,
        )
    };
    ossup::io::journal::ensure_dir(&ckpt).map_err(ckpt_err)?;

    // One done-log (and one watcher) per directory and destination.
    let mut h = Sha256::new();
    h.update(root.as_os_str().as_bytes());
    for part in [cfg.endpoint.url().as_str(), &target.bucket, &target.prefix] {
        h.update([0u8]);
        h.update(part.as_bytes());
    }
    let hex = ossup::proto::sign::hex(&h.finalize()[..8]);
    let done_path = ckpt.join(format!("watch-{hex}.done"));
    let _lock = match Lock::acquire(&done_path, false) {
        Ok(l) => l,
        Err(LockError::Held { pid }) => {
            let who = pid.map(|p| format!(" (PID {p})")).unwrap_or_default();
            return Err(Fatal::new(
                format!(
                    "another ossup watch{who} is watching {} for this destination",
                    root.display()
                ),
                "stop it first",
                exit::TEMPFAIL,
            ));
        }
        Err(LockError::Io(e)) => return Err(ckpt_err(e)),
    };

    let mut skip = HashSet::new();
    if let Ok(m) = fs::metadata(&ckpt) {
        skip.insert((m.dev(), m.ino()));
    }
    let done_dir = match &args.done_dir {
        None => None,
        Some(d) => {
            fs::create_dir_all(d).map_err(|e| {
                Fatal::new(
                    format!("cannot create --done-dir {}: {e}", d.display()),
                    "check the path",
                    exit::CANTCREAT,
                )
            })?;
            let d = fs::canonicalize(d).map_err(|e| {
                Fatal::new(
                    format!("cannot resolve --done-dir {}: {e}", d.display()),
                    "check the path",
                    exit::CANTCREAT,
                )
            })?;
            if d == root {
                return Err(usage("--done-dir must not be the watched directory".into()));
            }
            if let Ok(m) = fs::metadata(&d) {
                skip.insert((m.dev(), m.ino()));
            }
            Some(d)
        }
    };
    let key = donelog::load_key(&ckpt).map_err(ckpt_err)?;
    let done = DoneLog::open(&done_path, &root, key).map_err(ckpt_err)?;
    if !done.entries.is_empty() {
        log::info!(
            "{} file(s) were uploaded before a restart; removing them without uploading again",
            done.entries.len()
        );
    }
    log::info!(
        "watching {} for oss://{}/{} (settle {}, poll {}, {}; done-log {})",
        root.display(),
        target.bucket,
        target.prefix,
        show(settle),
        show(poll),
        match &done_dir {
            Some(d) => format!("moving uploaded files to {}", d.display()),
            None => "deleting uploaded files".to_string(),
        },
        done_path.display()
    );
    let mut w = Watcher {
        cfg,
        root,
        target,
        settle,
        poll,
        once: args.once,
        done_dir,
        follow_symlinks: args.follow_symlinks,
        quiet,
        skip,
        done,
        tracked: BTreeMap::new(),
        once_set: None,
        warned: HashSet::new(),
        failures: 0,
        scan_failing: false,
        compress: args.compress.clone(),
        compress_mode,
        staging: ckpt.join(ossup::io::compress::STAGING_DIR),
        staging_swept: false,
    };
    w.finish_interrupted();
    w.run()
}

impl Watcher {
    /// Finishes retiring files that a crash left under their aside name (see `retire`).
    fn finish_interrupted(&mut self) {
        let rels: Vec<String> = self
            .done
            .entries
            .keys()
            .filter(|rel| {
                fs::symlink_metadata(retire::aside_path(&self.root.join(rel.as_str()))).is_ok()
            })
            .cloned()
            .collect();
        for rel in rels {
            self.finish(&rel);
        }
    }

    fn run(&mut self) -> Result<u8, Fatal> {
        let mut deadline = None;
        loop {
            if !self.scan() && self.once {
                return Ok(exit::TEMPFAIL);
            }
            let now = Instant::now();
            let deadline =
                *deadline.get_or_insert(now + self.settle + ONCE_MARGIN.max(self.poll * 2));
            let ready = self.ready(now);
            if !ready.is_empty() {
                for rel in ready {
                    self.process(&rel)?;
                }
                continue;
            }
            if self.once {
                let pending: Vec<&String> = self
                    .tracked
                    .iter()
                    .filter(|(_, t)| !t.failed)
                    .map(|(r, _)| r)
                    .collect();
                if pending.is_empty() {
                    return Ok(if self.failures == 0 {
                        exit::OK
                    } else {
                        exit::TEMPFAIL
                    });
                }
                if now >= deadline {
                    for rel in &pending {
                        log::error!("{rel}: still changing or locked by another process; not uploaded in this run");
                    }
                    return Ok(exit::TEMPFAIL);
                }
            }
            std::thread::sleep(self.sleep_for(now, self.once.then_some(deadline)));
        }
    }

    /// How long to sleep before the next scan: the poll interval, or less if a file will be
    /// due (settled, or its retry time reached) sooner.
    fn sleep_for(&self, now: Instant, deadline: Option<Instant>) -> Duration {
        let mut wake = now + self.poll;
        for t in self.tracked.values().filter(|t| !t.failed) {
            let settled = if t.uploaded || t.old_at_sight {
                now
            } else {
                t.since + self.settle
            };
            let due = t.retry_at.map_or(settled, |r| r.max(settled));
            if due > now {
                wake = wake.min(due);
            }
        }
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        wake.saturating_duration_since(now).max(MIN_POLL)
    }

    /// Scans DIR and updates what is known about each file; false if DIR cannot be read.
    fn scan(&mut self) -> bool {
        let mut found = Vec::new();
        let mut bad = Vec::new();
        let rules = (self.root.as_path(), self.follow_symlinks);
        match walk(&self.root, "", 0, &self.skip, rules, &mut found, &mut bad) {
            Ok(()) if self.scan_failing => {
                log::info!("{} is readable again", self.root.display());
                self.scan_failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !self.scan_failing {
                    log::error!(
                        "cannot read {}: {e}; trying again every {}",
                        self.root.display(),
                        show(self.poll)
                    );
                    self.scan_failing = true;
                }
                return false;
            }
        }
        let first = self.once && self.once_set.is_none();
        for (path, why) in bad {
            if self.warned.insert(path.clone()) {
                log::warn!("skipping {}: {why}", path.display());
                if first {
                    self.failures += 1;
                }
            }
        }
        if first {
            self.once_set = Some(found.iter().map(|f| f.rel.clone()).collect());
        }
        let now = Instant::now();
        let wall = wall_ns();
        let mut seen = HashSet::with_capacity(found.len());
        for f in found {
            if self.once_set.as_ref().is_some_and(|s| !s.contains(&f.rel)) {
                continue;
            }
            seen.insert(f.rel.clone());
            let uploaded = self.done.matches(&f.rel, f.id);
            match self.tracked.get_mut(&f.rel) {
                Some(t) if t.id == f.id && t.path == f.path => {}
                Some(t) => {
                    log::debug!("{}: changed; waiting for it to settle", f.rel);
                    t.path = f.path;
                    t.id = f.id;
                    t.since = now;
                    t.old_at_sight = false;
                    t.uploaded = uploaded;
                    t.retry_at = None;
                    t.backoff = FIRST_BACKOFF;
                }
                None => {
                    let old = f.id.age(wall) >= self.settle;
                    log::debug!(
                        "{}: new ({} bytes){}",
                        f.rel,
                        f.id.len,
                        if uploaded {
                            ", already uploaded"
                        } else if old {
                            ", complete"
                        } else {
                            ", waiting for it to settle"
                        }
                    );
                    self.tracked.insert(
                        f.rel,
                        Tracked {
                            path: f.path,
                            id: f.id,
                            since: now,
                            old_at_sight: old,
                            uploaded,
                            retry_at: None,
                            backoff: FIRST_BACKOFF,
                            failed: false,
                        },
                    );
                }
            }
        }
        self.sweep_staging(&seen);
        self.tracked.retain(|rel, _| seen.contains(rel));
        true
    }

    /// Files due for upload (or removal), oldest first.
    fn ready(&self, now: Instant) -> Vec<String> {
        let mut v: Vec<(i128, &String)> = self
            .tracked
            .iter()
            .filter(|(_, t)| {
                !t.failed
                    && t.retry_at.is_none_or(|r| now >= r)
                    && (t.uploaded || t.old_at_sight || now.duration_since(t.since) >= self.settle)
            })
            .map(|(rel, t)| (t.id.mtime_ns, rel))
            .collect();
        v.sort();
        v.into_iter().map(|(_, r)| r.clone()).collect()
    }

    /// Records a per-file failure: retried after a backoff, or (with `--once`) not at all.
    fn failed(&mut self, rel: &str, msg: &str) {
        let Some(t) = self.tracked.get_mut(rel) else {
            return;
        };
        if self.once {
            t.failed = true;
            self.failures += 1;
            log::error!("{msg}");
        } else {
            let wait = t.backoff;
            t.retry_at = Some(Instant::now() + wait);
            t.backoff = (wait * 2).min(MAX_BACKOFF);
            log::error!("{msg}; trying again in {}", show(wait));
        }
    }

    /// Uploads (or, if already uploaded, removes) one file.
    fn process(&mut self, rel: &str) -> Result<(), Fatal> {
        let Some(t) = self.tracked.get(rel) else {
            return Ok(());
        };
        let (path, id) = (t.path.clone(), t.id);
        // A link re-pointed since the scan is judged again (see `scan`).
        if let Some(why) = scan::link_refusal(&path, &self.root, self.follow_symlinks) {
            log::warn!("skipping {}: {why}", path.display());
            self.tracked.remove(rel);
            return Ok(());
        }
        // Never read a file that changed since the scan that found it complete.
        match fs::metadata(&path) {
            Ok(m) if Ident::of(&m) == id => {}
            Ok(m) => {
                self.changed(rel, Ident::of(&m));
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.tracked.remove(rel);
                return Ok(());
            }
            Err(e) => {
                self.failed(rel, &format!("cannot upload {rel}: {e}"));
                return Ok(());
            }
        }
        if self.tracked.get(rel).is_some_and(|t| t.uploaded) {
            self.finish(rel);
            return Ok(());
        }
        let dest = match self.target.dest(rel) {
            Ok(d) => d,
            Err(e) => {
                self.failed(rel, &format!("cannot upload {rel}: {e}"));
                return Ok(());
            }
        };
        let compressed;
        let (send_path, dest, cfg) = if self.compresses(rel) {
            match crate::compress::prepare(
                &self.staging,
                rel,
                &path,
                dest,
                &self.cfg,
                self.compress_mode,
            ) {
                Ok((p, d, c)) => {
                    compressed = c;
                    (p, d, &compressed)
                }
                Err(e) if e.exit_code() == exit::DATAERR => {
                    // Still being written: settle again, then compress the new version.
                    log::info!("{rel} changed while it was compressed; waiting for it to settle");
                    if let Some(t) = self.tracked.get_mut(rel) {
                        t.since = Instant::now();
                        t.old_at_sight = false;
                    }
                    return Ok(());
                }
                Err(e) => {
                    self.failed(rel, &format!("cannot compress {rel}: {e}"));
                    return Ok(());
                }
            }
        } else {
            (path.clone(), dest, &self.cfg)
        };
        let send_len = fs::metadata(&send_path).map(|m| m.len()).unwrap_or(id.len);
        log::info!(
            "uploading {rel} ({} bytes) to oss://{}/{}",
            send_len,
            dest.bucket,
            dest.key
        );
        // Progress lines only for multipart uploads; small files just get the log line.
        let mut bar = progress::Progress::new(self.quiet || send_len < cfg.multipart_threshold);
        let r = ossup::upload_file_blocking(cfg, &send_path, &dest, &mut |d, t| bar.update(d, t));
        bar.finish();
        match r {
            Ok(u) => {
                // The object holds the bytes read; is that still what the file holds?
                match fs::metadata(&path) {
                    Ok(m) if Ident::of(&m) == id => {}
                    Ok(m) => {
                        log::warn!("{rel} changed after it was uploaded; it will be uploaded again once it settles");
                        self.changed(rel, Ident::of(&m));
                        return Ok(());
                    }
                    Err(e) => {
                        log::warn!(
                            "{rel} was uploaded, then became unavailable ({e}); leaving it alone"
                        );
                        self.tracked.remove(rel);
                        return Ok(());
                    }
                }
                self.done.record(rel, id).map_err(|e| {
                    Fatal::new(
                        format!(
                            "cannot record the upload of {rel} in {}: {e}",
                            self.done.path.display()
                        ),
                        "use a checkpoint dir that this user owns and only it can write (--checkpoint-dir); the file is kept",
                        exit::CANTCREAT,
                    )
                })?;
                log::info!(
                    "uploaded {rel} to oss://{}/{} ({} parts, {} resumed, crc64 {})",
                    dest.bucket,
                    dest.key,
                    u.parts,
                    u.parts_resumed,
                    u.crc64
                );
                if let Some(t) = self.tracked.get_mut(rel) {
                    t.uploaded = true;
                }
                self.finish(rel);
                Ok(())
            }
            Err(Error::Locked { pid, .. }) => {
                let who = pid.map(|p| format!(" (PID {p})")).unwrap_or_default();
                log::info!("{rel}: another ossup{who} is uploading it; trying again later");
                if let Some(t) = self.tracked.get_mut(rel) {
                    t.retry_at = Some(Instant::now() + self.poll);
                }
                Ok(())
            }
            Err(e) if matches!(e.exit_code(), exit::CANTCREAT | exit::NOPERM | exit::CONFIG) => {
                Err(Fatal::new(format!("{rel}: {e}"), e.hint(), e.exit_code()))
            }
            Err(e) => {
                if let Err(gone) = fs::symlink_metadata(&path) {
                    if gone.kind() == io::ErrorKind::NotFound {
                        log::info!("{rel} disappeared before it was uploaded");
                        self.tracked.remove(rel);
                        return Ok(());
                    }
                }
                if matches!(e, Error::FileChanged { .. }) {
                    // It is being written again: wait for it to settle anew.
                    if let Some(t) = self.tracked.get_mut(rel) {
                        t.since = Instant::now();
                        t.old_at_sight = false;
                    }
                }
                self.failed(rel, &format!("upload of {rel} failed: {e}"));
                Ok(())
            }
        }
    }

    /// True if `rel` is compressed before upload (`--compress`).
    fn compresses(&self, rel: &str) -> bool {
        self.compress
            .iter()
            .any(|g| ossup::proto::staging::glob_matches(g, rel))
    }

    /// Removes the staging files of `rel` (its original is gone: uploaded, or deleted by
    /// someone else). Done after the original, so a crash in between leaves a staging file
    /// that the next start's sweep removes, never an original without its upload.
    fn drop_staging(&self, rel: &str) {
        if self.compresses(rel) {
            if let Err(e) = ossup::io::compress::remove(&self.staging, rel) {
                log::warn!("cannot remove the staging file of {rel}: {e}");
            }
        }
    }

    /// After the first scan: removes staging files whose original is no longer in the spool
    /// (deleted after its upload just before a crash, or by someone else).
    fn sweep_staging(&mut self, present: &HashSet<String>) {
        if self.staging_swept || self.compress.is_empty() {
            return;
        }
        self.staging_swept = true;
        let keep: HashSet<String> = present
            .iter()
            .filter(|r| self.compresses(r))
            .map(|r| ossup::proto::staging::prefix(r))
            .collect();
        match ossup::io::compress::remove_orphans(&self.staging, &keep) {
            Ok(0) => {}
            Ok(n) => log::info!("removed {n} staging file(s) whose original is gone"),
            Err(e) => log::warn!("cannot clean {}: {e}", self.staging.display()),
        }
    }

    /// `rel` has a new identity: it is a new version, to be settled and uploaded again.
    fn changed(&mut self, rel: &str, id: Ident) {
        let uploaded = self.done.matches(rel, id);
        if let Some(t) = self.tracked.get_mut(rel) {
            t.id = id;
            t.since = Instant::now();
            t.old_at_sight = false;
            t.uploaded = uploaded;
            t.retry_at = None;
        }
    }

    /// Deletes or moves an uploaded file (its done-log line is durable), if and only if what is
    /// under its name is still the version that was uploaded (see `retire`).
    fn finish(&mut self, rel: &str) {
        let (path, id) = match self.tracked.get(rel) {
            Some(t) => (t.path.clone(), t.id),
            None => match self.done.entries.get(rel) {
                // A retire that a crash interrupted (found by `DoneLog::open`).
                Some(id) => (self.root.join(rel), *id),
                None => return,
            },
        };
        retire::test_pause();
        let to = self.done_dir.as_ref().map(|d| d.join(rel));
        match retire::retire(&path, id, to.as_deref()) {
            Ok(Retired::Removed) => log::info!("removed {rel}"),
            Ok(Retired::Moved(to)) => log::info!("moved {rel} to {}", to.display()),
            Ok(Retired::Gone) => {}
            Ok(Retired::Changed(kept)) => {
                match kept {
                    None => log::warn!(
                        "{rel} was replaced by another version after its upload; it will be \
                         uploaded once it settles"
                    ),
                    Some(k) => log::warn!(
                        "{rel} was replaced twice after its upload; the unuploaded versions are \
                         kept as {rel} and {}",
                        k.display()
                    ),
                }
                // The next scan finds the new version as a new file.
                self.tracked.remove(rel);
                self.done.forget(rel);
                return;
            }
            Ok(Retired::Busy) => {
                log::info!("{rel} is uploaded but still open for writing; removing it later");
                if let Some(t) = self.tracked.get_mut(rel) {
                    t.retry_at = Some(Instant::now() + self.poll);
                }
                return;
            }
            Err(e) => {
                let what = if self.done_dir.is_some() {
                    "moved"
                } else {
                    "removed"
                };
                self.failed(
                    rel,
                    &format!("{rel} is uploaded but could not be {what}: {e}"),
                );
                return;
            }
        }
        // After the original: a crash in between leaves only a staging file, which the next
        // start's sweep removes.
        self.drop_staging(rel);
        self.tracked.remove(rel);
        self.done.forget(rel);
    }
}

#[cfg(test)]
mod tests {
    use super::donelog::*;
    use super::scan::*;
    use super::*;
    use std::ffi::OsStr;

    fn key() -> LineKey {
        LineKey::new([7; 32], "watch-0123456789abcdef.done")
    }

    #[test]
    fn done_log_lines_round_trip() {
        let id = Ident {
            len: 12,
            mtime_ns: 1_700_000_000_123_456_789,
            ino: 99,
        };
        let k = key();
        for rel in [
            "a.bin",
            "dir/sub/b c.csv",
            "odd\tname%\n\r.x",
            "%09",
            "100%",
        ] {
            let line = format_line(rel, id, &k);
            assert_eq!(line.matches('\n').count(), 1, "{line:?}");
            assert!(line.ends_with('\n'));
            assert_eq!(
                parse_line(line.trim_end_matches('\n').as_bytes(), &k),
                Some((rel.to_string(), id))
            );
        }
        for bad in [
            "",
            "a\t1\t2",
            "a\t1\t2\t3\t4",
            "a\tx\t2\t3",
            "a%zz\t1\t2\t3",
            "a%2\t1\t2\t3",
            "\t1\t2\t3",
        ] {
            // Malformed lines are refused even with a valid MAC over them.
            let body = bad.to_string();
            let signed = format_line("x", id, &k);
            let tag = signed.trim_end().rsplit_once('\t').unwrap().1;
            assert_eq!(parse_line(bad.as_bytes(), &k), None, "{bad:?}");
            assert_eq!(
                parse_line(format!("{body}\t{tag}").as_bytes(), &k),
                None,
                "{bad:?}"
            );
        }
    }

    /// Issue 11 item 17: a done-log line is only believed with a valid MAC of this log's key.
    #[test]
    fn done_log_lines_are_authenticated() {
        let id = Ident {
            len: 12,
            mtime_ns: 5,
            ino: 99,
        };
        let k = key();
        let line = format_line("a.bin", id, &k);
        let line = line.trim_end_matches('\n');
        // The unsigned format of older versions (and a forger without the key).
        assert_eq!(parse_line(b"a.bin\t12\t5\t99", &k), None);
        // Another key, or the same key for another done-log.
        assert_eq!(
            parse_line(
                line.as_bytes(),
                &LineKey::new([8; 32], "watch-0123456789abcdef.done")
            ),
            None
        );
        assert_eq!(
            parse_line(line.as_bytes(), &LineKey::new([7; 32], "watch-other.done")),
            None
        );
        // Any change of the entry breaks the MAC.
        for (from, to) in [
            ("a.bin", "b.bin"),
            ("\t12\t", "\t13\t"),
            ("\t99\t", "\t98\t"),
        ] {
            let forged = line.replacen(from, to, 1);
            assert_ne!(forged, line);
            assert_eq!(parse_line(forged.as_bytes(), &k), None, "{forged}");
        }
        // A truncated or damaged tag.
        assert_eq!(parse_line(&line.as_bytes()[..line.len() - 2], &k), None);
        let mut flipped = line.as_bytes().to_vec();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(parse_line(&flipped, &k), None);
    }

    #[test]
    fn targets() {
        let t = Target::parse("oss://bkt/in/").unwrap();
        assert_eq!((t.bucket.as_str(), t.prefix.as_str()), ("bkt", "in/"));
        assert_eq!(t.dest("a/b.csv").unwrap().key, "in/a/b.csv");
        let t = Target::parse("oss://bkt").unwrap();
        assert_eq!(t.prefix, "");
        assert_eq!(t.dest("x").unwrap().key, "x");
        assert_eq!(Target::parse("s3://bkt/").unwrap().prefix, "");
        // Issue 14 item 5: `oss://bkt/in` means the prefix `in/`, like `oss://bkt/in/`.
        assert_eq!(
            Target::parse("oss://bkt/in")
                .unwrap()
                .dest("cam.log")
                .unwrap()
                .key,
            "in/cam.log"
        );
        assert_eq!(
            Target::parse("oss://bkt/in").unwrap(),
            Target::parse("oss://bkt/in/").unwrap()
        );
        for bad in [
            "bkt/x",
            "oss://B_kt/",
            "oss://ab/",
            "oss://bkt//x",
            "http://bkt/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
        assert!(t.dest(&"k".repeat(1024)).is_err());
    }

    #[test]
    fn ignored_names() {
        for n in [".hidden", "x.tmp", "x.part", ".", "a.b.part"] {
            assert!(ignored(OsStr::new(n)), "{n}");
        }
        for n in ["x", "x.tmp.csv", "part", "tmp", "a.partial"] {
            assert!(!ignored(OsStr::new(n)), "{n}");
        }
    }

    #[test]
    fn seconds() {
        assert_eq!(
            parse_secs("--settle", None, DEFAULT_SETTLE).ok(),
            Some(DEFAULT_SETTLE)
        );
        assert_eq!(
            parse_secs("--settle", Some("0.5"), DEFAULT_SETTLE).ok(),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            parse_secs("--poll", Some("2"), DEFAULT_POLL).ok(),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            parse_secs("--poll", Some("250ms"), DEFAULT_POLL).ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_secs("--settle", Some(".25"), DEFAULT_SETTLE).ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_secs("--settle", Some("7."), DEFAULT_SETTLE).ok(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_secs("--settle", Some("1.0000000019"), DEFAULT_SETTLE).ok(),
            Some(Duration::new(1, 1))
        );
        assert_eq!(
            parse_secs("--settle", Some("1000000000"), DEFAULT_SETTLE).ok(),
            Some(Duration::from_secs(1_000_000_000))
        );
        for bad in [
            "-1",
            "x",
            "NaN",
            "inf",
            "1e99",
            "",
            ".",
            "1.2.3",
            "1000000000.5",
            "99999999999999999999",
        ] {
            assert!(
                parse_secs("--poll", Some(bad), DEFAULT_POLL).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn shown_durations() {
        assert_eq!(show(Duration::from_secs(10)), "10s");
        assert_eq!(show(Duration::from_millis(250)), "0.2s");
        assert_eq!(show(Duration::from_millis(750)), "0.8s");
        assert_eq!(show(Duration::from_millis(1999)), "2.0s");
        // Away from exact ties the float formatting this replaced gives the same text.
        for ms in (1..100_000u64).step_by(7).filter(|ms| ms % 100 != 50) {
            let d = Duration::from_millis(ms);
            let want = if ms % 1000 == 0 {
                format!("{}s", ms / 1000)
            } else {
                format!("{:.1}s", d.as_secs_f64())
            };
            assert_eq!(show(d), want, "{ms} ms");
        }
    }

    /// A fresh directory under the system temp dir, removed on drop.
    struct Tmp(PathBuf);

    impl Tmp {
        fn new(tag: &str) -> Tmp {
            let p =
                std::env::temp_dir().join(format!("ossup-watch-unit-{tag}-{}", std::process::id()));
            let _ = fs::remove_dir_all(&p);
            fs::create_dir_all(&p).unwrap();
            Tmp(p)
        }
    }

    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn done_log_prunes_on_open_and_compacts() {
        let t = Tmp::new("donelog");
        let root = t.0.join("spool");
        fs::create_dir_all(root.join("d")).unwrap();
        fs::write(root.join("d/kept.bin"), b"12345").unwrap();
        fs::write(root.join("other.bin"), b"xy").unwrap();
        let kept = Ident::of(&fs::metadata(root.join("d/kept.bin")).unwrap());
        let mut other = Ident::of(&fs::metadata(root.join("other.bin")).unwrap());
        other.len += 1; // the file was replaced since
        let gone = Ident {
            len: 1,
            mtime_ns: 2,
            ino: 3,
        };
        let log = t.0.join("w.done");
        let k = LineKey::new([3; 32], "w.done");
        let text = format_line("gone.bin", gone, &k)
            + &format_line("d/kept.bin", kept, &k)
            + &format_line("other.bin", other, &k);
        fs::write(&log, text + "torn\t1").unwrap();

        let mut d = DoneLog::open(&log, &root, [3; 32]).unwrap();
        assert!(d.matches("d/kept.bin", kept));
        assert!(!d.matches("other.bin", other) && !d.matches("gone.bin", gone));
        assert_eq!(d.entries.len(), 1);
        assert_eq!(
            fs::read_to_string(&log).unwrap(),
            format_line("d/kept.bin", kept, &k)
        );
        assert!(!with_suffix(&log, ".tmp").exists());

        // Appends are whole lines that a reopen reads back.
        let mut id = Ident {
            len: 7,
            mtime_ns: 8,
            ino: 9,
        };
        d.record("x.bin", id).unwrap();
        assert!(d.matches("x.bin", id));
        drop(d);
        fs::write(root.join("x.bin"), b"1234567").unwrap();
        id = Ident::of(&fs::metadata(root.join("x.bin")).unwrap());
        let mut d = DoneLog::open(&log, &root, [3; 32]).unwrap();
        assert!(
            !d.matches(
                "x.bin",
                Ident {
                    len: 7,
                    mtime_ns: 8,
                    ino: 9
                }
            ),
            "other identity kept"
        );
        d.record("x.bin", id).unwrap();
        d.forget("x.bin");
        assert!(!d.matches("x.bin", id));

        // Forgotten lines stay until the log is long enough to be worth compacting.
        for i in 0..COMPACT_LINES {
            let rel = format!("f{i}");
            d.record(&rel, gone).unwrap();
            d.forget(&rel);
        }
        let lines = fs::read_to_string(&log).unwrap().lines().count();
        assert!(lines < COMPACT_LINES, "not compacted: {lines} lines");
        assert!(d.matches("d/kept.bin", kept));
        // After compaction, appends go to the new file.
        d.record("late.bin", gone).unwrap();
        assert!(fs::read_to_string(&log).unwrap().contains("late.bin\t"));
    }

    #[test]
    fn age_is_never_negative() {
        let id = Ident {
            len: 0,
            mtime_ns: 5_000_000_000,
            ino: 1,
        };
        assert_eq!(id.age(7_000_000_000), Duration::from_secs(2));
        assert_eq!(id.age(1_000_000_000), Duration::ZERO);
    }
}

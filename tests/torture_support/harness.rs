//! Shared pieces of the torture tests: a seeded generator, scratch directories, an in-process
//! `ossup serve` with credentials and a bucket, the real `ossup` binary as a child process that
//! is always reaped, and views of the server's upload directory and of a journal.
//!
//! Owns: test infrastructure only. Must not: change library behaviour, touch anything outside
//! its scratch directories, or talk to any address but 127.0.0.1.

use std::collections::BTreeSet;
use std::fs::File;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ossup::proto::checkpoint::{self, Record};
use ossup::serve::{Faults, Options, Server, Stats};

/// Access key the server accepts and the client signs with.
pub const AK: &str = "LTAItorture";
/// Secret key for [`AK`].
pub const SK: &str = "torture-secret-key";
/// The bucket every test uploads to.
pub const BUCKET: &str = "torture";
/// Region in the signing scope.
pub const REGION: &str = "cn-hangzhou";
/// One mebibyte.
pub const MIB: u64 = 1 << 20;

/// Writes a line to the real stderr, past the test harness's output capture, so that the
/// figures show in CI logs without `--nocapture`.
macro_rules! report {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "torture: {}", format!($($t)*));
    }};
}
pub(crate) use report;

/// xorshift64*: a tiny seeded generator; the same seed gives the same sequence.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value; zero is remapped).
    pub fn new(seed: u64) -> Rng {
        let mut s = seed ^ 0x9E37_79B9_7F4A_7C15;
        s = (s ^ (s >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        s = (s ^ (s >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        s ^= s >> 31;
        Rng(if s == 0 { 0x2545_F491_4F6C_DD1D } else { s })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..=hi` (`lo` if `hi < lo`).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.next_u64() % (hi - lo + 1)
    }

    /// True with probability `num / den`.
    pub fn chance(&mut self, num: u64, den: u64) -> bool {
        self.next_u64() % den.max(1) < num
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The seed for a test: `default`, mixed with `OSSUP_TORTURE_SEED` when that is set (to try
/// other seeds; every report line prints the seed it used).
pub fn seed(default: u64) -> u64 {
    match std::env::var("OSSUP_TORTURE_SEED") {
        Ok(v) => default ^ v.trim().parse::<u64>().unwrap_or(0),
        Err(_) => default,
    }
}

static SCRATCH_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A directory under the system temp dir, removed (with everything in it) on drop.
#[derive(Debug)]
pub struct Scratch {
    /// The directory.
    pub path: PathBuf,
}

impl Scratch {
    /// A fresh, empty directory whose name contains `tag` and this process's id.
    pub fn new(tag: &str) -> Scratch {
        let n = SCRATCH_COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("ossup-torture-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create scratch dir");
        Scratch { path }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Writes `len` seeded random bytes to `path` and returns them.
pub fn make_file(path: &Path, len: u64, seed: u64) -> Vec<u8> {
    let mut data = vec![0u8; len as usize];
    Rng::new(seed).fill(&mut data);
    std::fs::write(path, &data).expect("write source file");
    data
}

/// An in-process `ossup serve` for [`BUCKET`], checking signatures made with [`AK`]/[`SK`].
pub struct Site {
    /// Everything of this test lives under here.
    pub root: Scratch,
    /// The server's directory.
    pub data_dir: PathBuf,
    /// The client's checkpoint directory.
    pub ckpt_dir: PathBuf,
    server: Option<Server>,
}

impl Site {
    /// Starts a server with these faults and clock skew.
    pub fn start(tag: &str, faults: Faults, skew_secs: i64) -> Site {
        let root = Scratch::new(tag);
        let data_dir = root.path.join("served");
        let ckpt_dir = root.path.join("ckpt");
        let mut o = Options::new(&data_dir);
        o.buckets = vec![BUCKET.to_string()];
        o.credentials = Some(ossup::serve::Credentials {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            security_token: None,
        });
        o.region = REGION.into();
        o.faults = faults;
        o.skew_secs = skew_secs;
        let server = Server::start(o).expect("start ossup serve");
        Site {
            root,
            data_dir,
            ckpt_dir,
            server: Some(server),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.server.as_ref().expect("server running").addr()
    }

    /// The server's counters.
    pub fn stats(&self) -> Stats {
        self.server.as_ref().expect("server running").stats()
    }

    /// Stops the server (also done on drop).
    pub fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }

    /// Waits until no counter has changed for `quiet` (at most `limit`), so that a killed
    /// client's half-sent requests are all accounted for.
    pub fn settle(&self, quiet: Duration, limit: Duration) -> Stats {
        let start = Instant::now();
        let mut last = self.stats();
        let mut since = Instant::now();
        while start.elapsed() < limit {
            std::thread::sleep(Duration::from_millis(2));
            let s = self.stats();
            if s != last {
                last = s;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                break;
            }
        }
        self.stats()
    }

    /// Where the server keeps object `key`.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.data_dir
            .join(BUCKET)
            .join(ossup::proto::sign::uri_encode(key, false))
    }

    /// Asserts that object `key` holds exactly `want`.
    pub fn assert_object(&self, key: &str, want: &[u8]) {
        let got = std::fs::read(self.object_path(key))
            .unwrap_or_else(|e| panic!("object {key} missing on the server: {e}"));
        assert_eq!(got.len(), want.len(), "object {key}: length differs");
        if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
            panic!("object {key}: first differing byte at offset {i}");
        }
    }

    /// Waits (at most `limit`) until the `open_uploads` counter agrees with the uploads on
    /// disk, and returns both. The server removes a completed upload's directory before it
    /// counts the upload closed, so the two can disagree for a moment after a Complete whose
    /// client was killed (the next run may already have finished via HeadObject).
    pub fn open_uploads_agreed(&self, limit: Duration) -> (Stats, BTreeSet<String>) {
        let start = Instant::now();
        loop {
            let st = self.stats();
            let open = self.open_upload_ids();
            if st.open_uploads == open.len() as u64 || start.elapsed() >= limit {
                return (st, open);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Ids of the multipart uploads open on the server (from its documented on-disk layout).
    pub fn open_upload_ids(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let Ok(rd) = std::fs::read_dir(self.data_dir.join(".ossup-uploads")) else {
            return out;
        };
        for e in rd.flatten() {
            if e.path().join("upload").is_file() {
                if let Some(n) = e.file_name().to_str() {
                    out.insert(n.to_string());
                }
            }
        }
        out
    }

    /// The journal files (`*.ossup`) in the checkpoint directory.
    pub fn journals(&self) -> Vec<PathBuf> {
        files_with_ext(&self.ckpt_dir, "ossup")
    }

    /// The one journal, if any (panics if there are several).
    pub fn journal(&self) -> Option<PathBuf> {
        let mut j = self.journals();
        assert!(j.len() <= 1, "more than one journal: {j:?}");
        j.pop()
    }

    /// The common `ossup upload` command line for `file` → `key` (quiet, bounded retries).
    pub fn upload_cmd(
        &self,
        file: &Path,
        key: &str,
        endpoint: SocketAddr,
        extra: &[&str],
    ) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ossup"));
        c.arg("upload")
            .arg(file)
            .arg(format!("oss://{BUCKET}/{key}"))
            .arg("--endpoint")
            .arg(format!("http://{endpoint}"))
            .arg("--region")
            .arg(REGION)
            .arg("--checkpoint-dir")
            .arg(&self.ckpt_dir)
            .args(extra);
        for v in [
            "OSS_SESSION_TOKEN",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "XDG_STATE_HOME",
        ] {
            c.env_remove(v);
        }
        c.env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        c
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Files in `dir` whose extension is `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == ext))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// What a journal's bytes say, read without modifying the file.
#[derive(Debug, Default, Clone)]
pub struct JournalView {
    /// The header could be read (else the client will set the file aside and start over).
    pub readable: bool,
    /// Upload ids the journal knows (started, or pending abort and not yet aborted).
    pub known_ids: BTreeSet<String>,
    /// The upload id of the last `Started` record.
    pub current: Option<String>,
    /// Parts recorded done for the current upload.
    pub parts_done: BTreeSet<u32>,
    /// A `Completing` record exists for the current upload.
    pub completing: bool,
    /// The last clock offset recorded.
    pub clock_offset: Option<i64>,
    /// The bytes are exactly header plus intact records (no torn tail).
    pub clean: bool,
}

/// Replays the journal at `path` (a missing file gives the default view).
pub fn view_journal(path: &Path) -> JournalView {
    let Ok(bytes) = std::fs::read(path) else {
        return JournalView::default();
    };
    view_journal_bytes(&bytes)
}

/// Replays journal bytes.
pub fn view_journal_bytes(bytes: &[u8]) -> JournalView {
    let mut v = JournalView::default();
    let Ok(r) = checkpoint::replay(bytes) else {
        return v;
    };
    v.readable = true;
    v.clean = r.valid_len == bytes.len();
    let mut aborted = BTreeSet::new();
    for rec in &r.records {
        match rec {
            Record::Started { upload_id } => {
                v.known_ids.insert(upload_id.clone());
                v.current = Some(upload_id.clone());
                v.parts_done.clear();
                v.completing = false;
            }
            Record::PartDone { n, .. } => {
                v.parts_done.insert(*n);
            }
            Record::Completing => v.completing = true,
            Record::ClockOffset { secs } => v.clock_offset = Some(*secs),
            Record::AbortPending { upload_id } => {
                v.known_ids.insert(upload_id.clone());
            }
            Record::Aborted { upload_id } => {
                aborted.insert(upload_id.clone());
            }
            Record::Initiating => {}
        }
    }
    for a in aborted {
        v.known_ids.remove(&a);
    }
    v
}

/// A running `ossup` child; killed (SIGKILL) and reaped on drop if still running.
pub struct Proc {
    child: Option<Child>,
    /// When it was spawned.
    pub started: Instant,
    /// Where its stderr goes.
    pub stderr_path: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stderr into `stderr_path` (truncated).
    pub fn spawn(mut cmd: Command, stderr_path: &Path) -> Proc {
        let err = File::create(stderr_path).expect("create stderr file");
        cmd.stderr(Stdio::from(err));
        let started = Instant::now();
        let child = cmd.spawn().expect("spawn ossup");
        Proc {
            child: Some(child),
            started,
            stderr_path: stderr_path.to_path_buf(),
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// The exit status if it has ended (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(s)) = c.try_wait() {
                    self.status = Some(s);
                }
            }
        }
        self.status
    }

    /// SIGKILLs it (if still running) and reaps it.
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(s) = self.try_wait() {
            return s;
        }
        let c = self.child.as_mut().expect("child");
        let _ = c.kill();
        let s = c.wait().expect("wait for killed ossup");
        self.status = Some(s);
        s
    }

    /// Sends `signal` (a name such as `TERM`) with the system `kill` utility.
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "could not send SIG{signal} to {}", self.pid());
    }

    /// Waits for the exit, at most `limit`; on timeout kills it and panics with its stderr.
    pub fn wait(&mut self, limit: Duration, what: &str) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return s;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "{what}: ossup did not finish within {limit:?}; stderr:\n{}",
                    self.stderr_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The whole stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// The last 4000 characters of stderr.
    pub fn stderr_tail(&self) -> String {
        let s = self.stderr();
        let cut = s.len().saturating_sub(4000);
        let cut = (cut..=s.len())
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(s.len());
        s[cut..].to_string()
    }

    /// Panics if stderr mentions a panic.
    pub fn assert_no_panic(&self, what: &str) {
        let e = self.stderr();
        assert!(!e.contains("panicked"), "{what}: ossup panicked:\n{e}");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if let Some(c) = self.child.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// True if `s` is "killed by SIGKILL".
pub fn killed(s: &ExitStatus) -> bool {
    s.signal() == Some(9)
}

/// Describes an exit status for messages.
pub fn describe(s: &ExitStatus) -> String {
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => format!("{s:?}"),
    }
}

/// Polls `cond` every millisecond until it holds or `limit` passes; returns whether it held.
pub fn poll_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

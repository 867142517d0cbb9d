//! End-to-end tests of `ossup watch` (the real binary) against an in-process `ossup::serve`
//! server on 127.0.0.1: complete files are uploaded and removed, growing files wait for the
//! settle rule, `--done-dir`, crash safety through the done-log, per-file failures, files
//! locked by another process, fatal errors and a second watcher.
#![cfg(feature = "serve")]

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use ossup::proto::sign::{uri_encode, Credentials};

use ossup::serve::{Options, Server, Stats};

const BUCKET: &str = "bkt";
const AK: &str = "watch-test-id";
const SK: &str = "watch-test-secret";
/// No single `ossup watch` run in these tests may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// A spool directory, a checkpoint directory and a server with one bucket, all under one
/// temporary directory that is removed on drop.
struct Env {
    root: PathBuf,
    spool: PathBuf,
    ckpt: PathBuf,
    store: PathBuf,
    server: Option<Server>,
}

impl Env {
    fn new(tag: &str) -> Env {
        let root =
            std::env::temp_dir().join(format!("ossup-watch-it-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let spool = root.join("spool");
        let ckpt = root.join("ckpt");
        let store = root.join("store");
        fs::create_dir_all(&spool).unwrap();
        let mut o = Options::new(&store);
        o.buckets = vec![BUCKET.to_string()];
        o.credentials = Some(Credentials {
            access_key_id: AK.into(),
            access_key_secret: SK.into(),
            security_token: None,
        });
        let server = Server::start(o).unwrap();
        Env {
            root,
            spool,
            ckpt,
            store,
            server: Some(server),
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.server().addr())
    }

    fn stats(&self) -> Stats {
        self.server().stats()
    }

    /// `ossup watch SPOOL oss://bkt/in/ --endpoint .. --checkpoint-dir ..` plus `extra`.
    fn command(&self, extra: &[&str]) -> Command {
        self.command_with(
            &self.spool,
            &format!("oss://{BUCKET}/in/"),
            &self.ckpt,
            extra,
        )
    }

    /// `ossup watch DIR DEST --endpoint .. --checkpoint-dir CKPT` plus `extra`.
    fn command_with(&self, dir: &Path, dest: &str, ckpt: &Path, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ossup"));
        c.arg("watch")
            .arg(dir)
            .arg(dest)
            .args(["--endpoint", &self.endpoint(), "--region", "cn-hangzhou"])
            .arg("--checkpoint-dir")
            .arg(ckpt)
            .args(extra)
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", SK)
            .env_remove("OSS_SESSION_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        c
    }

    fn spawn(&self, extra: &[&str]) -> Running {
        Running::new(self.command(extra).spawn().unwrap())
    }

    /// Runs a watch to its end (bounded) and returns its exit code and stderr.
    fn run(&self, extra: &[&str]) -> (i32, String) {
        self.spawn(extra).wait(RUN_LIMIT)
    }

    fn object(&self, key: &str) -> Option<Vec<u8>> {
        fs::read(self.store.join(BUCKET).join(uri_encode(key, false))).ok()
    }

    fn put(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.spool.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, data).unwrap();
        p
    }

    /// Writes a file whose modification time is `age` in the past, as if it had been renamed
    /// into the spool after being written elsewhere.
    fn put_old(&self, rel: &str, data: &[u8], age: Duration) -> PathBuf {
        let p = self.put(rel, data);
        let f = File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
        p
    }

    /// The watch's done-log (there is one per directory and destination).
    fn done_log(&self) -> Option<PathBuf> {
        let mut logs: Vec<PathBuf> = fs::read_dir(&self.ckpt)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "done"))
            .collect();
        assert!(logs.len() <= 1, "{logs:?}");
        logs.pop()
    }

    fn journals(&self) -> Vec<PathBuf> {
        match fs::read_dir(&self.ckpt) {
            Ok(rd) => rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "ossup"))
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A child process whose stderr is collected by a thread; killed on drop.
struct Running {
    child: Child,
    stderr: Option<JoinHandle<String>>,
    buf: Arc<std::sync::Mutex<String>>,
}

impl Running {
    fn new(mut child: Child) -> Running {
        let mut err = child.stderr.take().unwrap();
        let buf = Arc::new(std::sync::Mutex::new(String::new()));
        let b = buf.clone();
        let stderr = std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                match err.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => b
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
            b.lock().unwrap().clone()
        });
        Running {
            child,
            stderr: Some(stderr),
            buf,
        }
    }

    /// Stderr so far.
    fn stderr_now(&self) -> String {
        self.buf.lock().unwrap().clone()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Waits (at most `limit`, else kills it and panics) and returns exit code and stderr.
    fn wait(mut self, limit: Duration) -> (i32, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "ossup did not exit within {limit:?}; stderr:\n{}",
                    self.stderr_now()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let err = self.stderr.take().unwrap().join().unwrap();
        (status.code().unwrap_or(-1), err)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `f` every 20 ms until it holds or `limit` passes.
fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    f()
}

/// Deterministic test bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The done-log line for the file at `path` known as `rel`, unsigned (as a forger without the
/// key would write it, and as ossup wrote it before lines were authenticated).
fn unsigned_line(rel: &str, path: &Path) -> String {
    let m = fs::metadata(path).unwrap();
    let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    format!("{rel}\t{}\t{mtime_ns}\t{}", m.len(), m.ino())
}

/// Signs a done-log line body as ossup does: HMAC-SHA256 with the checkpoint dir's
/// `watch.key` over a domain tag, the done-log's file name and the body; 16 bytes in hex.
fn sign_line(ckpt: &Path, log: &Path, body: &str) -> String {
    use hmac::{Hmac, Mac};
    let key = fs::read(ckpt.join("watch.key")).expect("watch.key");
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    m.update(b"ossup done-log v1\0");
    m.update(log.file_name().unwrap().as_encoded_bytes());
    m.update(b"\0");
    m.update(body.as_bytes());
    let tag = m.finalize().into_bytes();
    format!("{body}\t{}\n", ossup::proto::sign::hex(&tag[..16]))
}

const HOUR: Duration = Duration::from_secs(3600);
const FAST: [&str; 5] = ["--once", "--settle", "1", "--poll", "0.1"];

#[test]
fn complete_files_are_uploaded_oldest_first_and_removed() {
    let env = Env::new("complete");
    // Renamed-in files (old mtimes), in a known age order, plus one just written.
    let a = data(10_000, 1);
    let b = data(300 * 1024, 2);
    let c = data(2 * 1024 * 1024 + 12_345, 3); // multipart with 512 KiB parts
    env.put_old("sub/deeper/c.bin", &c, 3 * HOUR);
    env.put_old("a.txt", &a, 2 * HOUR);
    env.put_old("sub/b.bin", &b, HOUR);
    env.put_old("empty.dat", b"", HOUR / 2);
    let fresh = data(5000, 4);
    env.put("fresh.log", &fresh);
    // Never uploaded: dot-files, dot-directories, *.tmp and *.part.
    for skip in [".hidden", "x.tmp", "y.part", ".dot/z.bin", "sub/w.part"] {
        env.put_old(skip, b"not for upload", HOUR);
    }
    let extra = [&FAST[..], &["--part-size", "512KiB", "--threshold", "1MiB"]].concat();
    let t0 = Instant::now();
    let (code, err) = env.run(&extra);
    assert_eq!(code, 0, "{err}");
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );

    for (key, want) in [
        ("in/a.txt", &a),
        ("in/sub/b.bin", &b),
        ("in/sub/deeper/c.bin", &c),
        ("in/empty.dat", &Vec::new()),
        ("in/fresh.log", &fresh),
    ] {
        assert_eq!(env.object(key).as_ref(), Some(want), "{key}");
    }
    for gone in [
        "a.txt",
        "sub/b.bin",
        "sub/deeper/c.bin",
        "empty.dat",
        "fresh.log",
    ] {
        assert!(!env.spool.join(gone).exists(), "{gone} was not removed");
    }
    for skip in [".hidden", "x.tmp", "y.part", ".dot/z.bin", "sub/w.part"] {
        assert!(env.spool.join(skip).exists(), "{skip} was touched");
        assert!(
            env.object(&format!("in/{skip}")).is_none(),
            "{skip} was uploaded"
        );
    }
    let s = env.stats();
    assert_eq!((s.puts, s.initiated, s.completed), (4, 1, 1), "{s:?}");
    assert!(env.journals().is_empty());

    // Oldest first: the order of the "uploading" log lines follows the modification times;
    // the fresh file waited for the settle time and came last.
    let order: Vec<&str> = err
        .lines()
        .filter_map(|l| l.strip_prefix("ossup: info: uploading "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "sub/deeper/c.bin",
            "a.txt",
            "sub/b.bin",
            "empty.dat",
            "fresh.log"
        ],
        "{err}"
    );

    // The done-log still lists the removed files until the next start prunes it.
    let log = env.done_log().expect("done-log");
    assert!(fs::read_to_string(&log).unwrap().contains("sub/b.bin\t"));
    let (code, err) = env.run(&FAST);
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read_to_string(&log).unwrap(), "", "not pruned");
    assert_eq!(env.stats().puts, 4);
}

#[test]
fn a_growing_file_waits_until_it_stops_changing() {
    let env = Env::new("growing");
    let first = data(4096, 10);
    let growing = env.put("growing.csv", &first);
    let old = data(7000, 11);
    env.put_old("ready.csv", &old, HOUR);

    // Append 4 KiB every 100 ms for 3 s while the watch runs.
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let path = growing.clone();
    let writer = std::thread::spawn(move || {
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        let mut all = data(4096, 10);
        for i in 0..30u64 {
            if st.load(Ordering::Relaxed) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            let chunk = data(4096, 100 + i);
            f.write_all(&chunk).unwrap();
            all.extend_from_slice(&chunk);
        }
        all
    });
    let child = env.spawn(&["--once", "--settle", "2", "--poll", "0.1"]);
    // The complete file goes at once; the growing one is not touched while it grows.
    assert!(wait_until(Duration::from_secs(20), || env
        .object("in/ready.csv")
        .is_some()));
    let all = writer.join().unwrap();
    let writer_done = Instant::now();
    assert!(
        env.object("in/growing.csv").is_none(),
        "uploaded while still growing"
    );
    assert!(growing.exists());
    let (code, err) = child.wait(RUN_LIMIT);
    stop.store(true, Ordering::Relaxed);
    assert_eq!(code, 0, "{err}");
    // It was uploaded at least one settle period after the last write, with its final content.
    assert!(
        writer_done.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        writer_done.elapsed()
    );
    assert_eq!(env.object("in/growing.csv"), Some(all));
    assert_eq!(env.object("in/ready.csv"), Some(old));
    // One PUT each: nothing was uploaded early and then again.
    assert_eq!(env.stats().puts, 2);
    assert!(!growing.exists());
}

#[test]
fn done_dir_moves_files_instead_of_deleting_them() {
    let env = Env::new("donedir");
    let a = data(1234, 20);
    let b = data(600 * 1024, 21);
    env.put_old("a.bin", &a, HOUR);
    env.put_old("x/y/b.bin", &b, HOUR);
    // The done-dir lies inside the spool: what is moved there must not be uploaded again.
    let done = env.spool.join("sent");
    let extra = [&FAST[..], &["--done-dir", done.to_str().unwrap()]].concat();
    let (code, err) = env.run(&extra);
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(done.join("a.bin")).unwrap(), a);
    assert_eq!(fs::read(done.join("x/y/b.bin")).unwrap(), b);
    assert!(!env.spool.join("a.bin").exists() && !env.spool.join("x/y/b.bin").exists());
    assert_eq!(env.object("in/a.bin"), Some(a));
    assert_eq!(env.object("in/x/y/b.bin"), Some(b));
    assert_eq!(env.stats().puts, 2);
    let (code, err) = env.run(&extra);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        env.stats().puts,
        2,
        "files in the done-dir were uploaded again"
    );
    assert!(env.object("in/sent/a.bin").is_none());
}

#[test]
fn a_recorded_file_is_removed_after_a_restart_without_uploading_it_again() {
    let env = Env::new("restart");
    // A first run on an empty spool creates the (empty) done-log.
    let (code, err) = env.run(&FAST);
    assert_eq!(code, 0, "{err}");
    let log = env.done_log().expect("done-log created at start");
    assert_eq!(fs::read_to_string(&log).unwrap(), "");

    // Simulate a crash after the done-log line became durable but before the delete: the
    // files are there, their lines are in the log.
    let small = env.put_old("rec.bin", &data(5000, 30), HOUR);
    let big = env.put_old("sub/big.bin", &data(1_500_000, 31), HOUR);
    let changed = env.put_old("changed.bin", &data(800, 32), HOUR);
    let new = data(900, 33);
    env.put_old("new.bin", &new, HOUR);
    let ck = &env.ckpt;
    let mut lines = sign_line(ck, &log, &unsigned_line("rec.bin", &small))
        + &sign_line(ck, &log, &unsigned_line("sub/big.bin", &big));
    // A line for a file that is gone, and one whose file was replaced since (other length).
    lines.push_str(&sign_line(ck, &log, "gone.bin\t5\t1\t2"));
    let stale = unsigned_line("changed.bin", &changed).replacen("\t800\t", "\t801\t", 1);
    lines.push_str(&sign_line(ck, &log, &stale));
    // And a torn last line, as a crash mid-append leaves.
    lines.push_str("torn.bin\t12");
    fs::write(&log, lines).unwrap();

    let before = env.stats();
    let extra = [&FAST[..], &["--part-size", "512KiB", "--threshold", "1MiB"]].concat();
    let (code, err) = env.run(&extra);
    assert_eq!(code, 0, "{err}");
    let after = env.stats();
    // Only the two files without a matching record were uploaded.
    assert_eq!(after.puts - before.puts, 2, "{after:?}");
    assert_eq!(
        after.initiated, before.initiated,
        "the recorded multipart file was uploaded again"
    );
    assert!(env.object("in/rec.bin").is_none() && env.object("in/sub/big.bin").is_none());
    assert!(
        !small.exists() && !big.exists(),
        "recorded files were not removed"
    );
    assert_eq!(env.object("in/new.bin"), Some(new));
    assert_eq!(env.object("in/changed.bin"), Some(data(800, 32)));
    assert!(!changed.exists());
    // The log was rewritten on start (stale and torn lines dropped) and appended to after.
    let text = fs::read_to_string(&log).unwrap();
    assert!(
        !text.contains("gone.bin") && !text.contains("torn.bin") && !text.contains("\t801\t"),
        "{text}"
    );
    assert!(
        text.ends_with('\n') && text.contains("new.bin\t") && text.contains("changed.bin\t"),
        "{text}"
    );
    // The next start prunes everything (all files are gone).
    let (code, err) = env.run(&FAST);
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read_to_string(&log).unwrap(), "");
}

#[test]
fn a_killed_watch_resumes_the_upload_on_restart() {
    let env = Env::new("killed");
    let big = data(6 * 1024 * 1024, 35);
    let p = env.put_old("big.bin", &big, HOUR);
    let parts = ["--part-size", "1MiB", "--threshold", "1MiB"];
    // Slowly (~2 MiB/s), so that it can be killed mid-upload.
    let slow = [
        &["--settle", "1", "--poll", "0.1", "--limit-rate", "2MiB/s"][..],
        &parts,
    ]
    .concat();
    let mut child = env.spawn(&slow);
    assert!(
        wait_until(Duration::from_secs(30), || env.stats().parts_stored >= 2),
        "{}",
        child.stderr_now()
    );
    child.child.kill().unwrap(); // SIGKILL
    child.child.wait().unwrap();
    assert!(p.exists());
    assert!(env.object("in/big.bin").is_none());
    let stored = env.stats().parts_stored;
    let (code, err) = env.run(&[&FAST[..], &parts].concat());
    assert_eq!(code, 0, "{err}");
    let s = env.stats();
    // The same multipart upload was resumed: nothing initiated again, at most the parts that
    // were in flight at the kill sent twice.
    assert_eq!((s.initiated, s.completed), (1, 1), "{s:?}");
    assert!(
        s.parts_stored - stored <= 6 - 2 + 1,
        "{s:?} (before {stored})"
    );
    let line = err
        .lines()
        .find(|l| l.contains("uploaded big.bin"))
        .expect(&err);
    assert!(!line.contains(" 0 resumed"), "{line}");
    assert_eq!(env.object("in/big.bin"), Some(big));
    assert!(!p.exists());
    assert!(env.journals().is_empty());
}

#[test]
fn a_failing_file_does_not_stop_the_others() {
    let env = Env::new("failing");
    // A socket is not a regular file: the library refuses it (exit code 66 per file).
    let sock = env.spool.join("bad.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let a = data(3000, 40);
    let b = data(4000, 41);
    env.put_old("a.bin", &a, HOUR);
    env.put_old("z/b.bin", &b, HOUR);
    let (code, err) = env.run(&FAST);
    assert_eq!(code, 75, "{err}");
    assert_eq!(env.object("in/a.bin"), Some(a));
    assert_eq!(env.object("in/z/b.bin"), Some(b));
    assert!(sock.exists());
    let errors: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("ossup: error: "))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("bad.sock"), "{err}");
}

#[test]
fn the_loop_keeps_going_after_a_failure_and_picks_up_renamed_files() {
    let env = Env::new("keepgoing");
    let sock = env.spool.join("bad.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let a = data(3000, 50);
    env.put_old("a.bin", &a, HOUR);
    let mut child = env.spawn(&["--settle", "1", "--poll", "0.1"]);
    assert!(
        wait_until(Duration::from_secs(20), || env.object("in/a.bin").is_some()),
        "{}",
        child.stderr_now()
    );
    // A file written as *.part is ignored until it is renamed; then it is uploaded once it has
    // been unchanged for the settle time (its mtime is fresh).
    let b = data(5000, 51);
    let part = env.put("later/b.bin.part", &b);
    std::thread::sleep(Duration::from_millis(400));
    assert!(env.object("in/later/b.bin.part").is_none());
    fs::rename(&part, env.spool.join("later/b.bin")).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || env
            .object("in/later/b.bin")
            .is_some()),
        "{}",
        child.stderr_now()
    );
    assert_eq!(env.object("in/later/b.bin"), Some(b));
    assert!(wait_until(Duration::from_secs(5), || !env
        .spool
        .join("later/b.bin")
        .exists()));
    assert!(child.running(), "watch stopped: {}", child.stderr_now());
    let err = child.stderr_now();
    assert!(
        err.contains("bad.sock") && err.contains("trying again in 30s"),
        "{err}"
    );
}

#[test]
fn a_file_locked_by_another_process_is_skipped_and_done_later() {
    use ossup::io::journal::{journal_path, Lock};
    let env = Env::new("locked");
    let locked = data(6000, 60);
    let free = data(7000, 61);
    let lp = env.put_old("locked.bin", &locked, 2 * HOUR);
    env.put_old("free.bin", &free, HOUR);
    // Hold the library's lock for locked.bin as a concurrent `ossup upload` would.
    fs::create_dir_all(&env.ckpt).unwrap();
    let url = ossup::Endpoint::parse(&env.endpoint()).unwrap().url();
    let jp = journal_path(&env.ckpt, &lp, &url, BUCKET, "in/locked.bin");
    let lock = Lock::acquire(&jp, false).unwrap();
    let child = env.spawn(&["--once", "--settle", "1", "--poll", "0.2"]);
    // The older file is locked, so the newer one goes first.
    assert!(wait_until(Duration::from_secs(20), || env
        .object("in/free.bin")
        .is_some()));
    std::thread::sleep(Duration::from_millis(500));
    assert!(env.object("in/locked.bin").is_none() && lp.exists());
    drop(lock);
    let (code, err) = child.wait(RUN_LIMIT);
    assert_eq!(code, 0, "{err}");
    assert_eq!(env.object("in/locked.bin"), Some(locked));
    assert_eq!(env.object("in/free.bin"), Some(free));
    assert!(!lp.exists());
    assert!(
        err.contains(&format!("PID {}", std::process::id())),
        "{err}"
    );
    assert_eq!(env.stats().puts, 2);
}

#[test]
fn a_file_locked_for_too_long_fails_the_once_run() {
    use ossup::io::journal::{journal_path, Lock};
    let env = Env::new("lockedlong");
    let lp = env.put_old("locked.bin", &data(100, 70), HOUR);
    fs::create_dir_all(&env.ckpt).unwrap();
    let url = ossup::Endpoint::parse(&env.endpoint()).unwrap().url();
    let _lock = Lock::acquire(
        &journal_path(&env.ckpt, &lp, &url, BUCKET, "in/locked.bin"),
        false,
    )
    .unwrap();
    // --once waits for it at most settle + max(10 s, 2 × poll).
    let t0 = Instant::now();
    let (code, err) = env.run(&["--once", "--settle", "0", "--poll", "0.2"]);
    assert_eq!(code, 75, "{err}");
    assert!(t0.elapsed() >= Duration::from_secs(9), "{:?}", t0.elapsed());
    assert!(lp.exists());
    assert_eq!(env.stats().puts, 0);
}

#[test]
fn fatal_errors_stop_the_watch_with_their_exit_code() {
    let env = Env::new("fatal");
    env.put_old("a.bin", &data(100, 80), HOUR);
    // Credentials rejected: 77, even without --once.
    let mut c = env.command(&["--poll", "0.1", "--settle", "0"]);
    c.env("OSS_ACCESS_KEY_SECRET", "wrong");
    let (code, err) = Running::new(c.spawn().unwrap()).wait(RUN_LIMIT);
    assert_eq!(code, 77, "{err}");
    assert!(
        err.lines().last().unwrap().starts_with("ossup: error: "),
        "{err}"
    );
    // No such bucket: a configuration error, 78.
    let mut c = env.command_with(
        &env.spool,
        "oss://nobucket/in/",
        &env.ckpt,
        &["--poll", "0.1"],
    );
    let (code, err) = Running::new(c.spawn().unwrap()).wait(RUN_LIMIT);
    assert_eq!(code, 78, "{err}");
    // Checkpoint directory unusable (below a regular file, so even root cannot create it): 73.
    let blocker = env.root.join("file");
    fs::write(&blocker, b"x").unwrap();
    let mut c = env.command_with(
        &env.spool,
        "oss://bkt/in/",
        &blocker.join("ckpt"),
        &["--once"],
    );
    let (code, err) = Running::new(c.spawn().unwrap()).wait(RUN_LIMIT);
    assert_eq!(code, 73, "{err}");
    // Nothing was uploaded or removed.
    assert!(env.spool.join("a.bin").exists());
    assert_eq!(env.stats().puts, 0);
    // Usage errors: 64; a missing directory: 66.
    let (code, err) = env.run(&["--once", "--settle", "soon"]);
    assert_eq!(code, 64, "{err}");
    let (code, err) = env.run(&["--once", "--done-dir", env.spool.to_str().unwrap()]);
    assert_eq!(code, 64, "{err}");
    let missing = env.root.join("no-such-spool");
    let mut c = env.command_with(&missing, "oss://bkt/in/", &env.ckpt, &["--once"]);
    let (code, err) = Running::new(c.spawn().unwrap()).wait(RUN_LIMIT);
    assert_eq!(code, 66, "{err}");
}

#[test]
fn a_second_watch_on_the_same_directory_exits_75() {
    let env = Env::new("second");
    let mut first = env.spawn(&["--poll", "0.2"]);
    assert!(wait_until(Duration::from_secs(20), || first
        .stderr_now()
        .contains("watching ")));
    let (code, err) = env.run(&["--once"]);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains(&format!("PID {}", first.child.id())), "{err}");
    assert!(first.running());
}

/// Starts a watch with the test pause hook in `pause` (see `watch/retire.rs`), waits until it
/// has verified an upload and is about to retire the file, runs `act`, and lets it go on.
fn run_paused(env: &Env, extra: &[&str], act: impl FnOnce()) -> (i32, String) {
    let pause = env.root.join("pause");
    fs::create_dir_all(&pause).unwrap();
    let mut c = env.command(extra);
    c.env("OSSUP_TEST_PAUSE_DIR", &pause);
    let mut run = Running::new(c.spawn().unwrap());
    let paused = wait_until(RUN_LIMIT, || {
        pause.join("paused").exists() || !run.running()
    });
    assert!(
        paused && pause.join("paused").exists(),
        "never paused: {}",
        run.stderr_now()
    );
    act();
    fs::write(pause.join("resume"), b"").unwrap();
    run.wait(RUN_LIMIT)
}

/// Issue 10 item 1: a new version renamed into the spool under the same name after the old
/// one was verified (inside the done-log `fdatasync` window) must never be deleted unuploaded.
#[test]
fn watch_never_deletes_a_replaced_file() {
    let env = Env::new("replaced");
    let old = data(5000, 21);
    env.put_old("s.txt", &old, HOUR);
    let new = data(7777, 22);
    let (code, err) = run_paused(&env, &FAST, || {
        let staged = env.root.join("new.txt");
        fs::write(&staged, &new).unwrap();
        fs::rename(&staged, env.spool.join("s.txt")).unwrap();
    });
    assert_eq!(code, 0, "{err}");
    // The new bytes were uploaded (after settling) and only then removed.
    assert!(
        env.object("in/s.txt") == Some(new),
        "object is not the new version: {err}"
    );
    assert!(!env.spool.join("s.txt").exists(), "{err}");
    assert!(err.contains("was replaced by another version"), "{err}");
}

/// Issue 10 item 1 with `--done-dir`: the unuploaded version is not archived in place of the
/// uploaded one; it is uploaded first, and only then archived.
#[test]
fn watch_never_archives_a_replaced_file() {
    let env = Env::new("replaced-dd");
    let done = env.root.join("done");
    env.put_old("d/s.txt", &data(5000, 31), HOUR);
    let new = data(6000, 32);
    let extra = [&FAST[..], &["--done-dir", done.to_str().unwrap()]].concat();
    let (code, err) = run_paused(&env, &extra, || {
        let staged = env.root.join("new.txt");
        fs::write(&staged, &new).unwrap();
        fs::rename(&staged, env.spool.join("d/s.txt")).unwrap();
    });
    assert_eq!(code, 0, "{err}");
    assert!(
        env.object("in/d/s.txt") == Some(new.clone()),
        "object is not the new version: {err}"
    );
    assert!(fs::read(done.join("d/s.txt")).ok() == Some(new), "{err}");
    assert!(!env.spool.join("d/s.txt").exists(), "{err}");
    assert!(!done.join("d/s.txt.~1~").exists(), "{err}");
}

/// Issue 10: `--done-dir` silently replaced an older archived file of the same path.
#[test]
fn done_dir_keeps_both_versions_of_a_path() {
    let env = Env::new("dd-both");
    let done = env.root.join("done");
    let extra = [&FAST[..], &["--done-dir", done.to_str().unwrap()]].concat();
    let v1 = data(100, 41);
    env.put_old("a.txt", &v1, HOUR);
    let (code, err) = env.run(&extra);
    assert_eq!(code, 0, "{err}");
    let v2 = data(200, 42);
    env.put_old("a.txt", &v2, HOUR);
    let (code, err) = env.run(&extra);
    assert_eq!(code, 0, "{err}");
    let v3 = data(300, 43);
    env.put_old("a.txt", &v3, HOUR);
    let (code, err) = env.run(&extra);
    assert_eq!(code, 0, "{err}");
    assert_eq!(fs::read(done.join("a.txt")).ok(), Some(v1));
    assert_eq!(fs::read(done.join("a.txt.~1~")).ok(), Some(v2));
    assert_eq!(fs::read(done.join("a.txt.~2~")).ok(), Some(v3));
    assert_eq!(env.object("in/a.txt"), Some(data(300, 43)));
}

/// Issue 10 item 8: two watchers on one spool with different destinations both ran, deleting
/// files under each other. The spool is owned by one watcher; the second exits 75 naming it.
#[test]
fn a_second_watch_on_the_same_spool_with_another_destination_exits_75() {
    let env = Env::new("second-dest");
    let mut first = env.spawn(&["--poll", "0.2"]);
    assert!(wait_until(Duration::from_secs(20), || first
        .stderr_now()
        .contains("watching ")));
    env.put_old("x.bin", b"payload", HOUR);
    let mut c = env.command_with(
        &env.spool,
        &format!("oss://{BUCKET}/other/"),
        &env.root.join("ckpt2"),
        &["--once", "--settle", "0"],
    );
    let (code, err) = Running::new(c.spawn().unwrap()).wait(RUN_LIMIT);
    assert_eq!(code, 75, "{err}");
    assert!(err.contains(&format!("PID {}", first.child.id())), "{err}");
    assert!(env.object("other/x.bin").is_none(), "{err}");
    assert!(first.running());
}

/// Issue 11 item 17: a forged done-log made `watch` delete spool files that were never
/// uploaded. Lines without this ossup's MAC are ignored: the files are uploaded first.
#[test]
fn a_forged_done_log_never_deletes_unuploaded_files() {
    let env = Env::new("forged");
    let (code, err) = env.run(&FAST);
    assert_eq!(code, 0, "{err}");
    let log = env.done_log().expect("done-log created at start");
    let mut forged = String::new();
    let mut want = Vec::new();
    for (i, rel) in ["a.csv", "b.csv", "sub/c.csv"].iter().enumerate() {
        let body = data(1000 + i, 50 + i as u64);
        let p = env.put_old(rel, &body, HOUR);
        // Unsigned, and signed with a key that is not this checkpoint dir's.
        forged.push_str(&unsigned_line(rel, &p));
        forged.push('\n');
        let line = unsigned_line(rel, &p);
        forged.push_str(&format!("{line}\t{}\n", "00".repeat(16)));
        want.push((rel.to_string(), body));
    }
    fs::write(&log, forged).unwrap();
    let (code, err) = env.run(&FAST);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("fail the integrity check"), "{err}");
    for (rel, body) in want {
        assert!(
            env.object(&format!("in/{rel}")) == Some(body),
            "{rel} was deleted without being uploaded: {err}"
        );
    }
}

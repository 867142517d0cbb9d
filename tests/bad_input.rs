//! Bad input, hostile environments and broken servers: every row runs the real binary and
//! checks the exit code (sysexits), that stderr has exactly one `ossup: error:` line containing
//! the expected words, and that nothing panicked. Plus a security test: secrets and session
//! tokens never reach stdout, stderr or the checkpoint directory at any verbosity.
#![cfg(feature = "serve")]

mod support;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ossup::serve::{Options, Server};
use support::*;

/// Extra checks run after a row's command.
type After = Box<dyn FnOnce(&Output) + Send>;

/// One row of the table.
struct Case {
    name: &'static str,
    args: Vec<OsString>,
    /// The whole environment besides PATH/HOME/LANG (credentials are not implied).
    env: Vec<(&'static str, String)>,
    /// Accepted exit codes.
    codes: &'static [i32],
    /// Words the error line must contain (case-sensitive). Unused for exit 0.
    needles: Vec<String>,
    /// Longest the run may take.
    max: Duration,
    /// Extra checks after the run.
    after: Option<After>,
    /// Kept alive until the row has run (fake servers, mounts).
    _keep: Option<Box<dyn Send>>,
}

/// Shared state for building rows.
struct Ctx {
    tmp: TempDir,
    ep: String,
    srv_dir: PathBuf,
    ck: PathBuf,
    small: PathBuf,
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

fn creds() -> Vec<(&'static str, String)> {
    vec![
        ("OSS_ACCESS_KEY_ID", AK.to_string()),
        ("OSS_ACCESS_KEY_SECRET", SK.to_string()),
    ]
}

impl Ctx {
    /// `upload FILE oss://bkt/KEY --endpoint EP --region cn-hangzhou --checkpoint-dir CK EXTRA`.
    fn up(&self, file: &Path, key: &str, extra: &[&str]) -> Vec<OsString> {
        self.up_to(&self.ep, file, &format!("oss://{BUCKET}/{key}"), extra)
    }

    fn up_to(&self, ep: &str, file: &Path, dest: &str, extra: &[&str]) -> Vec<OsString> {
        let mut a = os(&["upload"]);
        a.push(file.into());
        a.push(dest.into());
        a.extend(os(&[
            "--endpoint",
            ep,
            "--region",
            REGION,
            "--checkpoint-dir",
        ]));
        a.push(self.ck.clone().into());
        a.extend(os(extra));
        a
    }

    fn case(
        &self,
        name: &'static str,
        args: Vec<OsString>,
        codes: &'static [i32],
        needles: &[&str],
    ) -> Case {
        Case {
            name,
            args,
            env: creds(),
            codes,
            needles: needles.iter().map(|s| s.to_string()).collect(),
            max: Duration::from_secs(15),
            after: None,
            _keep: None,
        }
    }

    /// The journal path ossup uses for `file` → `key` at this context's endpoint.
    fn journal_for(&self, file: &Path, key: &str) -> PathBuf {
        let url = ossup::Endpoint::parse(&self.ep).unwrap().url();
        let abs = std::path::absolute(file).unwrap();
        ossup::io::journal::journal_path(&self.ck, &abs, &url, BUCKET, key)
    }
}

/// A tmpfs mount, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn is_root() -> bool {
    // No libc dependency: the owner of a file we just created is our effective uid.
    use std::os::unix::fs::MetadataExt;
    let p = std::env::temp_dir().join(format!("ossup-it-uid-probe-{}", std::process::id()));
    std::fs::write(&p, b"").unwrap();
    let uid = std::fs::metadata(&p).unwrap().uid();
    let _ = std::fs::remove_file(&p);
    uid == 0
}

/// Answers every request with `reply`.
fn fake(reply: &'static [u8]) -> FakeServer {
    FakeServer::start(move |_| reply.to_vec())
}

fn rows(ctx: &Ctx) -> Vec<Case> {
    let mut v = Vec::new();
    let t = &ctx.tmp;
    let small = &ctx.small;

    // --- the local file
    v.push(ctx.case(
        "missing file",
        ctx.up(&t.join("does-not-exist"), "k/missing", &[]),
        &[66],
        &["does-not-exist", "No such file"],
    ));
    let dir = t.join("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    v.push(ctx.case(
        "directory",
        ctx.up(&dir, "k/dir", &[]),
        &[66],
        &["a-directory", "directory"],
    ));
    let fifo = t.join("a-fifo");
    if Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
    {
        v.push(ctx.case(
            "fifo",
            ctx.up(&fifo, "k/fifo", &[]),
            &[66],
            &["a-fifo", "not a regular file"],
        ));
    }
    if !is_root() {
        let locked = t.join("unreadable");
        std::fs::write(&locked, b"secret").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        v.push(ctx.case(
            "unreadable (mode 000)",
            ctx.up(&locked, "k/unreadable", &[]),
            &[66, 74],
            &["unreadable", "denied"],
        ));
    } else if Path::new("/sys/bus/pci/rescan").exists() {
        // Root reads mode-000 files, so use a write-only sysfs attribute: a regular file
        // (size 4096) that even root cannot open for reading (EACCES).
        v.push(ctx.case(
            "unreadable (write-only sysfs file)",
            ctx.up(Path::new("/sys/bus/pci/rescan"), "k/unreadable", &[]),
            &[66, 74],
            &["rescan", "denied"],
        ));
    } else {
        eprintln!("skipped row 'unreadable': running as root and no write-only sysfs file to use");
    }
    let empty = t.join("empty-file");
    std::fs::write(&empty, b"").unwrap();
    let mut c = ctx.case("empty file", ctx.up(&empty, "k/empty", &[]), &[0], &[]);
    let srv = ctx.srv_dir.clone();
    c.after = Some(Box::new(move |_| {
        let got = read_object(&srv, BUCKET, "k/empty").expect("the empty object exists");
        assert!(got.is_empty(), "empty object has {} bytes", got.len());
    }));
    v.push(c);

    // --- the destination
    v.push(ctx.case(
        "URL without scheme",
        ctx.up_to(&ctx.ep, small, "bkt/k", &[]),
        &[64],
        &["oss://BUCKET/KEY"],
    ));
    v.push(ctx.case(
        "http URL",
        ctx.up_to(&ctx.ep, small, "http://bkt/k", &[]),
        &[64],
        &["oss://BUCKET/KEY"],
    ));
    v.push(ctx.case(
        "URL without key",
        ctx.up_to(&ctx.ep, small, "oss://bkt", &[]),
        &[64],
        &["no object key"],
    ));
    // `oss://bkt/` is no longer an empty key: a destination ending in `/` is a prefix, here
    // the bucket's root (issue 14 item 5; `config::tests`, `tests/newcomer.rs`).
    v.push(ctx.case(
        "invalid bucket",
        ctx.up_to(&ctx.ep, small, "oss://My_Bucket/k", &[]),
        &[64],
        &["invalid bucket name", "My_Bucket"],
    ));
    v.push(ctx.case(
        "short bucket",
        ctx.up_to(&ctx.ep, small, "oss://ab/k", &[]),
        &[64],
        &["invalid bucket name"],
    ));
    let long = format!("oss://bkt/{}", "x".repeat(1024));
    v.push(ctx.case(
        "key over 1023 bytes",
        ctx.up_to(&ctx.ep, small, &long, &[]),
        &[64],
        &["1024 bytes", "1023"],
    ));
    v.push(ctx.case(
        "key with a control character",
        ctx.up_to(&ctx.ep, small, "oss://bkt/a\nb", &[]),
        &[64],
        &["control"],
    ));
    v.push(ctx.case(
        "key starting with /",
        ctx.up_to(&ctx.ep, small, "oss://bkt//k", &[]),
        &[64],
        &["must not start"],
    ));

    // --- options
    v.push(ctx.case(
        "part size below 100 KiB",
        ctx.up(small, "k/ps", &["--part-size", "99KiB"]),
        &[64],
        &["part size", "100 KiB"],
    ));
    v.push(ctx.case(
        "part size above 5 GiB",
        ctx.up(small, "k/ps", &["--part-size", "6GiB"]),
        &[64],
        &["part size", "5 GiB"],
    ));
    v.push(ctx.case(
        "part size not a size",
        ctx.up(small, "k/ps", &["--part-size", "lots"]),
        &[64],
        &["part size", "lots"],
    ));
    v.push(ctx.case(
        "jobs 0",
        ctx.up(small, "k/j", &["--jobs", "0"]),
        &[64],
        &["--jobs", "at least 1"],
    ));
    v.push(ctx.case(
        "jobs not a number",
        ctx.up(small, "k/j", &["--jobs", "many"]),
        &[64],
        &["--jobs", "many"],
    ));
    v.push(ctx.case(
        "unknown option",
        ctx.up(small, "k/u", &["--frobnicate"]),
        &[64],
        &["--frobnicate"],
    ));
    v.push(ctx.case(
        "missing option value",
        ctx.up(small, "k/u", &["--jobs"]),
        &[64],
        &["--jobs"],
    ));
    v.push(ctx.case(
        "unknown command",
        os(&["frobnicate"]),
        &[64],
        &["frobnicate"],
    ));
    v.push(ctx.case("no command", os(&[]), &[64], &["no command"]));
    v.push(ctx.case(
        "one argument",
        os(&["upload", "x"]),
        &[64],
        &["2 arguments"],
    ));
    v.push(ctx.case(
        "bad retry duration",
        ctx.up(small, "k/r", &["--retry-for", "1y"]),
        &[64],
        &["1y"],
    ));
    v.push(ctx.case(
        "bad rate",
        ctx.up(small, "k/r", &["--limit-rate", "fast"]),
        &[64],
        &["fast"],
    ));
    v.push(ctx.case(
        "bad signature scheme",
        ctx.up(small, "k/s", &["--signature", "v2"]),
        &[64],
        &["v2", "oss-v4"],
    ));
    v.push(ctx.case(
        "ftp endpoint",
        ctx.up_to("ftp://127.0.0.1:1", small, "oss://bkt/k", &[]),
        &[64],
        &["https://", "http://"],
    ));
    v.push(ctx.case(
        "endpoint with user info",
        ctx.up_to("http://user:pw@127.0.0.1:1", small, "oss://bkt/k", &[]),
        &[64],
        &["no path or user"],
    ));
    v.push(ctx.case(
        "bad region",
        ctx.up(small, "k/r", &["--region", "CN HZ"]),
        &[64],
        &["region", "CN HZ"],
    ));
    let mut c = ctx.case(
        "no region for oss-v4",
        os(&["upload"]),
        &[64],
        &["--region is required"],
    );
    c.args.push(small.into());
    c.args.extend(os(&["oss://bkt/k", "--endpoint", &ctx.ep]));
    v.push(c);
    v.push(ctx.case(
        "missing board",
        ctx.up(small, "k/b", &["--board", "/nonexistent/board.toml"]),
        &[78],
        &["board"],
    ));

    // --- credentials
    let mut c = ctx.case(
        "missing credentials",
        ctx.up(small, "k/c1", &[]),
        &[78],
        &["missing credentials", "OSS_ACCESS_KEY_ID"],
    );
    c.env.clear();
    v.push(c);
    let mut c = ctx.case(
        "empty secret",
        ctx.up(small, "k/c2", &[]),
        &[78],
        &["missing credentials"],
    );
    c.env = vec![
        ("OSS_ACCESS_KEY_ID", AK.into()),
        ("OSS_ACCESS_KEY_SECRET", String::new()),
    ];
    v.push(c);
    let mut c = ctx.case(
        "wrong secret",
        ctx.up(small, "k/c3", &[]),
        &[77],
        &[
            "SignatureDoesNotMatch",
            "HTTP 403",
            "request id ",
            "OSS_ACCESS_KEY_SECRET",
        ],
    );
    c.env = vec![
        ("OSS_ACCESS_KEY_ID", AK.into()),
        ("OSS_ACCESS_KEY_SECRET", "wrong".into()),
    ];
    v.push(c);
    let mut c = ctx.case(
        "unknown access key",
        ctx.up(small, "k/c4", &[]),
        &[77],
        &["InvalidAccessKeyId", "request id "],
    );
    c.env = vec![
        ("OSS_ACCESS_KEY_ID", "nobody".into()),
        ("OSS_ACCESS_KEY_SECRET", SK.into()),
    ];
    v.push(c);
    // The server signs for cn-hangzhou: it refuses a signature scoped to another region.
    v.push(ctx.case(
        "region the server rejects",
        ctx.up(small, "k/c5", &["--region", "cn-beijing"]),
        &[77],
        &["HTTP 403", "region", "request id "],
    ));
    // Multipart: refused at InitiateMultipartUpload, before any data is sent.
    let big = t.join("big-for-bad-creds");
    write_file(&big, 300 * 1024, 9);
    let mut c = ctx.case(
        "wrong secret, multipart",
        ctx.up(
            &big,
            "k/c-mp",
            &["--part-size", "100KiB", "--threshold", "100KiB"],
        ),
        &[77],
        &["InitiateMultipartUpload", "SignatureDoesNotMatch"],
    );
    c.env = vec![
        ("OSS_ACCESS_KEY_ID", AK.into()),
        ("OSS_ACCESS_KEY_SECRET", "wrong".into()),
    ];
    v.push(c);
    v.push(ctx.case(
        "no such bucket",
        ctx.up_to(&ctx.ep, small, "oss://no-such-bucket/k", &[]),
        &[78],
        &["NoSuchBucket"],
    ));

    // --- the network and the server
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }; // closed again: nothing listens there now
    let mut c = ctx.case(
        "unreachable endpoint",
        ctx.up_to(
            &format!("http://127.0.0.1:{closed}"),
            small,
            "oss://bkt/k",
            &["--retry-for", "1s"],
        ),
        &[75],
        &["cannot connect", "run again"],
    );
    c.max = Duration::from_secs(8);
    v.push(c);
    let garbage: &[(&'static str, &'static [u8], &[&str])] = &[
        (
            "server answering junk headers",
            b"HTTP/1.1 200 OK\r\n\x01\x02 junk \xff\xfe\r\n\r\n",
            &["malformed response"],
        ),
        (
            "server answering non-HTTP bytes",
            b"SSH-2.0-OpenSSH_9.6p1 Debian\r\nProtocol mismatch.\r\n",
            &["PutObject failed"],
        ),
        (
            "server answering a bad status line",
            b"HTTP/1.1 OK FINE\r\nContent-Length: 0\r\n\r\n",
            &["malformed response"],
        ),
        (
            "server closing without a reply",
            b"",
            &["connection reset or closed"],
        ),
        (
            "truncated success body",
            b"HTTP/1.1 200 OK\r\nETag: \"0123\"\r\nContent-Length: 1000\r\n\r\n<partial",
            &["PutObject"],
        ),
        (
            "truncated error body",
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 1000\r\n\r\n<Error><Code>Inter",
            &["PutObject"],
        ),
        (
            "huge Content-Length",
            b"HTTP/1.1 503 Slow Down\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            &["PutObject"],
        ),
        (
            "bogus chunked body",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n",
            &["PutObject"],
        ),
    ];
    for &(name, reply, needles) in garbage {
        let srv = fake(reply);
        let mut c = ctx.case(
            name,
            ctx.up_to(
                &srv.endpoint(),
                small,
                "oss://bkt/k",
                &["--retry-for", "1s", "--idle-timeout", "2s"],
            ),
            &[75],
            needles,
        );
        c.needles.push("run again".into());
        c.max = Duration::from_secs(10);
        c._keep = Some(Box::new(srv));
        v.push(c);
    }

    // --- the checkpoint directory
    let regular = t.join("regular-file");
    std::fs::write(&regular, b"x").unwrap();
    let mut c = ctx.case(
        "checkpoint dir under a regular file",
        os(&["upload"]),
        &[73],
        &["regular-file", "checkpoint"],
    );
    c.args.push(small.into());
    c.args.extend(os(&[
        "oss://bkt/k",
        "--endpoint",
        &ctx.ep,
        "--region",
        REGION,
        "--checkpoint-dir",
    ]));
    c.args.push(regular.join("x").into());
    v.push(c);
    let ro = t.join("read-only-ck");
    std::fs::create_dir_all(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    if !is_root() {
        let mut c = ctx.case(
            "read-only checkpoint dir",
            os(&["upload"]),
            &[73],
            &["read-only-ck"],
        );
        c.args.push(small.into());
        c.args.extend(os(&[
            "oss://bkt/k",
            "--endpoint",
            &ctx.ep,
            "--region",
            REGION,
            "--checkpoint-dir",
        ]));
        c.args.push(ro.clone().into());
        v.push(c);
    } // as root, a mode 0500 directory is writable: the regular-file row covers this case.
    v.push(full_disk_row(ctx));

    // Garbage in place of the journal: set aside as <name>.corrupt, the upload starts over.
    let cfile = t.join("corrupt-journal.bin");
    let cdata = write_file(&cfile, 250 * 1024, 31);
    let jpath = ctx.journal_for(&cfile, "k/corrupt");
    std::fs::create_dir_all(&ctx.ck).unwrap();
    let junk = content(3000, 77);
    std::fs::write(&jpath, &junk).unwrap();
    let mut c = ctx.case(
        "corrupt journal",
        ctx.up(
            &cfile,
            "k/corrupt",
            &["--part-size", "100KiB", "--threshold", "100KiB"],
        ),
        &[0],
        &[],
    );
    let srv = ctx.srv_dir.clone();
    c.after = Some(Box::new(move |out: &Output| {
        assert!(
            out.stderr.contains("corrupt"),
            "no warning about the corrupt checkpoint:\n{}",
            out.stderr
        );
        let aside = jpath.with_extension("corrupt");
        assert_eq!(
            std::fs::read(&aside).ok(),
            Some(junk),
            "the corrupt journal was not kept aside as {aside:?}"
        );
        assert!(!jpath.exists(), "journal left after success");
        assert!(read_object(&srv, BUCKET, "k/corrupt").unwrap() == cdata);
    }));
    v.push(c);

    // A journal from a newer format version (or with a damaged version byte: the same bytes)
    // must not stop a gateway (issue 10 item 11): kept unchanged as NAME.v<N>, where a newer
    // ossup can still find it, and the file starts over.
    let nfile = t.join("newer-journal.bin");
    let ndata = write_file(&nfile, 250 * 1024, 32);
    let jpath = ctx.journal_for(&nfile, "k/newer");
    let mut newer = b"OSSUPJ".to_vec();
    newer.push(ossup::proto::checkpoint::VERSION + 1);
    newer.extend_from_slice(&content(200, 5));
    std::fs::write(&jpath, &newer).unwrap();
    let mut c = ctx.case(
        "journal from a newer ossup",
        ctx.up(
            &nfile,
            "k/newer",
            &["--part-size", "100KiB", "--threshold", "100KiB"],
        ),
        &[0],
        &[],
    );
    let srv = ctx.srv_dir.clone();
    c.after = Some(Box::new(move |out: &Output| {
        assert!(
            out.stderr.contains("cannot read") && out.stderr.contains("starting over"),
            "no line about the set-aside journal:\n{}",
            out.stderr
        );
        let aside = std::path::PathBuf::from(format!(
            "{}.v{}",
            jpath.display(),
            ossup::proto::checkpoint::VERSION + 1
        ));
        assert_eq!(
            std::fs::read(&aside).ok(),
            Some(newer),
            "the newer journal was not kept unchanged as {aside:?}"
        );
        assert!(read_object(&srv, BUCKET, "k/newer").unwrap() == ndata);
    }));
    v.push(c);
    v
}

/// A checkpoint dir on a 64 KiB tmpfs with room for the lock file and one page of journal:
/// the journal append after about 100 of the 240 parts fails with ENOSPC (with one page more
/// it would still fail, after about 200). Exit 73; after freeing space,
/// the same upload resumes.
fn full_disk_row(ctx: &Ctx) -> Case {
    let file = ctx.tmp.join("full-disk.bin");
    write_file(&file, 24_000 * 1024, 41);
    let mnt = ctx.tmp.join("tiny-tmpfs");
    let args = {
        let mut a = os(&["upload"]);
        a.push(file.clone().into());
        a.extend(os(&[
            "oss://bkt/k/full",
            "--endpoint",
            &ctx.ep,
            "--region",
            REGION,
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "--checkpoint-dir",
        ]));
        a.push(mnt.join("ck").into());
        a
    };
    let Some(fs) = Tmpfs::mount(&mnt, "64k") else {
        eprintln!(
            "skipped row 'full disk': cannot mount a tmpfs here (not root, or no CAP_SYS_ADMIN)"
        );
        let mut c = ctx.case(
            "full disk (skipped: no tmpfs)",
            os(&["--version"]),
            &[0],
            &[],
        );
        c.env.clear();
        return c;
    };
    // Leave two pages: one for the lock file, one for the journal.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 64 * 1024 - 8192]).unwrap();
    let mut c = ctx.case(
        "full disk while writing the journal",
        args.clone(),
        &[73],
        &["checkpoint", "No space left"],
    );
    c.max = Duration::from_secs(30);
    let ck = mnt.join("ck");
    c.after = Some(Box::new(move |_| {
        let j = journals(&ck);
        assert_eq!(j.len(), 1, "the journal should be kept: {j:?}");
        std::fs::remove_file(&filler).unwrap();
        let out = Ossup::new().creds(AK, SK).args(&args).run();
        out.expect_code(0);
        let resumed = out.stderr.contains(" resumed,") && !out.stderr.contains(" 0 resumed,");
        assert!(
            resumed,
            "the run after freeing space did not resume:\n{}",
            out.stderr
        );
        assert!(journals(&ck).is_empty());
        drop(fs);
    }));
    c
}

#[test]
fn bad_input_table() {
    let tmp = TempDir::new("bad");
    let srv_dir = tmp.join("srv");
    let server = start_server(&srv_dir);
    let ctx = Ctx {
        ep: endpoint(server.addr()),
        srv_dir,
        ck: tmp.join("ck"),
        small: tmp.join("small.bin"),
        tmp,
    };
    write_file(&ctx.small, 2000, 1);
    let cases = rows(&ctx);
    let n = cases.len();
    // Rows are independent (own keys, own fake servers): run them in a few threads.
    let failures = std::sync::Mutex::new(Vec::new());
    let queue = std::sync::Mutex::new(cases.into_iter().collect::<Vec<_>>());
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| loop {
                let Some(case) = queue.lock().unwrap().pop() else {
                    break;
                };
                let name = case.name;
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(case)));
                if let Err(e) = r {
                    let msg = e
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    failures.lock().unwrap().push(format!("[{name}] {msg}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {n} rows failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    eprintln!("bad_input_table: {n} rows passed");
    server.stop();
}

fn run_case(c: Case) {
    let mut cmd = Ossup::new()
        .args(&c.args)
        .timeout(c.max + Duration::from_secs(30));
    for (k, v) in &c.env {
        cmd = cmd.env(k, v);
    }
    let t = Instant::now();
    let out = cmd.run();
    let took = t.elapsed();
    let dump = format!(
        "exit {}; stdout:\n{}\nstderr:\n{}",
        out.code, out.stdout, out.stderr
    );
    assert!(
        c.codes.contains(&out.code),
        "exit {} not in {:?}\n{dump}",
        out.code,
        c.codes
    );
    assert!(!out.stderr.contains("panicked"), "panic\n{dump}");
    if out.code == 0 {
        assert!(
            out.error_lines().is_empty(),
            "error line on success\n{dump}"
        );
    } else {
        let errors = out.error_lines();
        assert_eq!(errors.len(), 1, "expected one error line\n{dump}");
        let line = errors[0];
        for n in &c.needles {
            assert!(line.contains(n.as_str()), "error line lacks {n:?}: {line}");
        }
        // Runtime failures carry a hint after "; " (configuration and usage errors from the
        // command line may not: their message is the instruction).
        if [65, 66, 73, 74, 75, 77].contains(&out.code) {
            assert!(line.contains("; "), "error line has no hint: {line}");
        }
    }
    eprintln!(
        "[{}] exit {} in {took:.1?}: {}",
        c.name,
        out.code,
        out.error_lines().first().unwrap_or(&"(no error line)")
    );
    assert!(
        took <= c.max,
        "took {took:?}, more than {:?}\n{dump}",
        c.max
    );
    if let Some(after) = c.after {
        after(&out);
    }
}

// ---------------------------------------------------------------------------------------------

const SECRET: &str = "S3CR3T-should-never-appear";
const WRONG_SECRET: &str = "WR0NG-S3CR3T-should-never-appear";
const TOKEN: &str = "T0KEN-should-never-appear-either";

fn assert_no_secrets(what: &str, out: &Output) {
    for s in [SECRET, WRONG_SECRET, TOKEN] {
        assert!(
            !out.stdout.contains(s),
            "{what}: {s} in stdout:\n{}",
            out.stdout
        );
        assert!(
            !out.stderr.contains(s),
            "{what}: {s} in stderr:\n{}",
            out.stderr
        );
    }
}

fn secret_server(dir: &Path, skew: i64) -> Server {
    let mut o = Options::new(dir);
    o.credentials = Some(ossup::serve::Credentials {
        access_key_id: AK.into(),
        access_key_secret: SECRET.into(),
        security_token: None,
    });
    o.buckets = vec![BUCKET.into()];
    o.skew_secs = skew;
    Server::start(o).unwrap()
}

#[test]
fn secrets_never_leak() {
    let tmp = TempDir::new("secrets");
    let server = secret_server(&tmp.join("srv"), 0);
    let skewed = secret_server(&tmp.join("srv-skewed"), 3 * 3600);
    let ep = endpoint(server.addr());
    let ck = tmp.join("ck");
    let file = tmp.join("f.bin");
    write_file(&file, 2 * 1024 * 1024, 3);
    let small = tmp.join("small.bin");
    write_file(&small, 100, 4);
    let oss = |key: &str, f: &Path, endpoint: &str, secret: &str| {
        Ossup::new()
            .env("OSS_ACCESS_KEY_ID", AK)
            .env("OSS_ACCESS_KEY_SECRET", secret)
            .env("OSS_SESSION_TOKEN", TOKEN)
            .arg("upload")
            .arg(f)
            .arg(format!("oss://{BUCKET}/{key}"))
            .args([
                "--endpoint",
                endpoint,
                "--region",
                REGION,
                "--part-size",
                "256KiB",
                "--threshold",
                "256KiB",
            ])
            .arg("--checkpoint-dir")
            .arg(&ck)
            .args(["-v", "-v"])
    };

    // Success, multipart and single PUT, at the highest verbosity.
    let out = oss("sec/ok", &file, &ep, SECRET)
        .arg("--jobs")
        .arg("2")
        .run();
    out.expect_code(0);
    assert_no_secrets("success", &out);
    let out = oss("sec/small", &small, &ep, SECRET).run();
    out.expect_code(0);
    assert_no_secrets("single put", &out);

    // Wrong secret (single and multipart).
    for f in [&small, &file] {
        let out = oss("sec/wrong", f, &ep, WRONG_SECRET).run();
        out.expect_code(77);
        out.single_error_line();
        assert!(
            out.stderr.contains("ossup: debug: "),
            "-v -v printed no debug line:\n{}",
            out.stderr
        );
        assert_no_secrets("wrong secret", &out);
    }

    // A server whose clock is 3 hours ahead: the upload corrects its clock and succeeds; the
    // offset goes into the journal of an interrupted upload below.
    let sep = endpoint(skewed.addr());
    let out = oss("sec/skewed", &file, &sep, SECRET).run();
    out.expect_code(0);
    assert!(
        out.stderr.contains("clock"),
        "no clock correction logged:\n{}",
        out.stderr
    );
    assert_no_secrets("skewed server", &out);
    // ...and with a wrong secret: the clock is corrected, then the credentials are refused.
    let out = oss("sec/skewed-wrong", &small, &sep, WRONG_SECRET).run();
    out.expect_code(77);
    out.single_error_line();
    assert_no_secrets("skewed server, wrong secret", &out);

    // Unreachable endpoint at debug level.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = oss(
        "sec/unreachable",
        &small,
        &format!("http://127.0.0.1:{closed}"),
        SECRET,
    )
    .arg("--retry-for")
    .arg("1s")
    .run();
    out.expect_code(75);
    assert_no_secrets("unreachable", &out);

    // An interrupted upload leaves a journal (and a clock offset from the skewed server).
    let base = skewed.stats().parts_stored;
    let mut child = oss("sec/killed", &file, &sep, SECRET)
        .args(["--limit-rate", "512KiB/s"])
        .spawn();
    let got = wait_until(Duration::from_secs(20), || {
        skewed.stats().parts_stored >= base + 3
    });
    child.kill().unwrap();
    let killed = finish(child, Duration::from_secs(10), "killed upload");
    assert!(got, "the interrupted upload stored no parts");
    assert_no_secrets("killed upload", &killed);

    // s3-v4 with AWS_* variables, and `status` at debug level.
    let out = Ossup::new()
        .env("AWS_ACCESS_KEY_ID", AK)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_SESSION_TOKEN", TOKEN)
        .arg("upload")
        .arg(&file)
        .arg(format!("s3://{BUCKET}/sec/s3"))
        .args([
            "--endpoint",
            &ep,
            "--region",
            REGION,
            "--signature",
            "s3-v4",
            "--part-size",
            "256KiB",
            "--threshold",
            "256KiB",
            "-vv",
        ])
        .arg("--checkpoint-dir")
        .arg(&ck)
        .run();
    out.expect_code(0);
    assert_no_secrets("s3-v4", &out);
    let out = Ossup::new()
        .args(["status", "-v", "-v", "--checkpoint-dir"])
        .arg(&ck)
        .env("OSS_ACCESS_KEY_SECRET", SECRET)
        .run();
    out.expect_code(0);
    assert!(out.stdout.contains("sec/killed"), "{}", out.stdout);
    assert_no_secrets("status", &out);

    // Nothing in the checkpoint dir holds a secret; journals and locks are private.
    let meta = std::fs::metadata(&ck).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o700,
        "checkpoint dir mode"
    );
    let mut journals_seen = 0;
    for e in std::fs::read_dir(&ck).unwrap() {
        let p = e.unwrap().path();
        let bytes = std::fs::read(&p).unwrap();
        for s in [SECRET, WRONG_SECRET, TOKEN] {
            assert!(
                !bytes.windows(s.len()).any(|w| w == s.as_bytes()),
                "{s} in {}",
                p.display()
            );
        }
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        if p.extension().is_some_and(|x| x == "ossup") {
            journals_seen += 1;
        }
    }
    assert!(journals_seen >= 1, "no journal to inspect");

    // Abort the interrupted upload at debug level.
    let out = Ossup::new()
        .env("OSS_ACCESS_KEY_ID", AK)
        .env("OSS_ACCESS_KEY_SECRET", SECRET)
        .env("OSS_SESSION_TOKEN", TOKEN)
        .arg("abort")
        .arg(&file)
        .arg(format!("oss://{BUCKET}/sec/killed"))
        .args([
            "--endpoint",
            &sep,
            "--region",
            REGION,
            "-vv",
            "--checkpoint-dir",
        ])
        .arg(&ck)
        .run();
    out.expect_code(0);
    assert_no_secrets("abort", &out);
    assert_eq!(skewed.stats().aborted, 1);
    server.stop();
    skewed.stop();
}

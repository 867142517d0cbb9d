//! Local input that can never work must fail at once, with one clear line and the right exit
//! code (issue 11, items 12-15 and 20): header values with control characters, CA files that
//! are not regular files, object keys with dot segments, board lookup order, and the warning
//! for `http://` endpoints. Every run is bounded by time; servers are in-process on loopback.
#![cfg(feature = "serve")]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::*;

/// Longest a run that fails on local input may take (today's code retried for 24 hours).
const FAST: Duration = Duration::from_secs(5);

/// Runs `upload SMALL oss://bkt/k/local --endpoint EP ... EXTRA` with `env` (credentials
/// included by the caller) and returns its output and how long it took.
fn run(
    ep: &str,
    file: &Path,
    ck: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Output, Duration) {
    let mut cmd = Ossup::new()
        .arg("upload")
        .arg(file)
        .arg(format!("oss://{BUCKET}/k/local"))
        .args(["--endpoint", ep, "--region", REGION, "--checkpoint-dir"])
        .arg(ck)
        .args(extra)
        // Kill it well after FAST so a slow failure is reported with its stderr.
        .timeout(FAST + Duration::from_secs(10));
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let t = Instant::now();
    let out = cmd.run();
    (out, t.elapsed())
}

/// Asserts exit `code` within [`FAST`], one error line containing every needle and none of
/// the `secrets`.
fn expect_fast(what: &str, r: (Output, Duration), code: i32, needles: &[&str], secrets: &[&str]) {
    let (out, took) = r;
    assert_eq!(
        out.code, code,
        "[{what}] exit code; stderr:\n{}",
        out.stderr
    );
    let line = out.single_error_line();
    for n in needles {
        assert!(line.contains(n), "[{what}] error line lacks {n:?}: {line}");
    }
    for s in secrets {
        assert!(
            !out.stderr.contains(s) && !out.stdout.contains(s),
            "[{what}] a secret reached the output:\n{}",
            out.stderr
        );
    }
    assert!(took < FAST, "[{what}] took {took:?}");
    eprintln!("[{what}] exit {code} in {took:.1?}: {line}");
}

fn creds() -> Vec<(&'static str, &'static str)> {
    vec![("OSS_ACCESS_KEY_ID", AK), ("OSS_ACCESS_KEY_SECRET", SK)]
}

/// Item 12: a control character in any header value, from a flag (64), the environment (78)
/// or a board file (78), fails before the first request instead of being retried for a day.
#[test]
fn control_characters_in_header_values_fail_fast() {
    let tmp = TempDir::new("hdr");
    let server = start_server(&tmp.join("srv"));
    let ep = endpoint(server.addr());
    let small = tmp.join("small.bin");
    write_file(&small, 1000, 3);
    let ck = tmp.join("ck");
    let c = creds();

    let flags: &[(&str, &[&str], &str)] = &[
        (
            "meta CRLF",
            &["--meta", "a=b\r\nx-oss-object-acl: public-read"],
            "--meta",
        ),
        ("meta LF", &["--meta", "site=north\n"], "--meta"),
        (
            "content-type CR",
            &["--content-type", "text/plain\r"],
            "--content-type",
        ),
        (
            "content-type NUL-like",
            &["--content-type", "text/\u{1}plain"],
            "--content-type",
        ),
        (
            "storage-class LF",
            &["--storage-class", "IA\nx"],
            "--storage-class",
        ),
        ("acl DEL", &["--acl", "private\u{7f}"], "--acl"),
        ("acl edge space", &["--acl", "private "], "--acl"),
    ];
    for (what, extra, needle) in flags {
        expect_fast(what, run(&ep, &small, &ck, extra, &c), 64, &[needle], &[]);
    }

    let bad_ep = format!("http://127.0.0.1\r\n{}", &ep["http://127.0.0.1".len()..]);
    expect_fast(
        "endpoint CRLF",
        run(&bad_ep, &small, &ck, &[], &c),
        64,
        &["--endpoint"],
        &[],
    );
    expect_fast(
        "endpoint TAB",
        run("http://exa\tmple.com", &small, &ck, &[], &c),
        64,
        &["--endpoint"],
        &[],
    );

    // The environment: named by variable, the value never printed.
    let secret_nl = format!("{SK}\n");
    type EnvRow<'a> = (&'a str, Vec<(&'a str, &'a str)>, &'a str);
    let envs: Vec<EnvRow> = vec![
        (
            "key id LF",
            vec![
                ("OSS_ACCESS_KEY_ID", "LTAI-x\n"),
                ("OSS_ACCESS_KEY_SECRET", SK),
            ],
            "OSS_ACCESS_KEY_ID",
        ),
        (
            "secret LF",
            vec![
                ("OSS_ACCESS_KEY_ID", AK),
                ("OSS_ACCESS_KEY_SECRET", &secret_nl),
            ],
            "OSS_ACCESS_KEY_SECRET",
        ),
        (
            "token CRLF",
            vec![
                ("OSS_ACCESS_KEY_ID", AK),
                ("OSS_ACCESS_KEY_SECRET", SK),
                ("OSS_SESSION_TOKEN", "tok-SECRET-VALUE\r\nX-Evil: 1"),
            ],
            "OSS_SESSION_TOKEN",
        ),
    ];
    for (what, env, needle) in &envs {
        expect_fast(
            what,
            run(&ep, &small, &ck, &[], env),
            78,
            &[needle],
            &[SK, "tok-SECRET-VALUE"],
        );
    }

    // A board file: 78, naming the board key.
    let board = tmp.join("bad-endpoint.toml");
    std::fs::write(&board, "endpoint = \"http://127.0.0.1\u{1}:9\"\n").unwrap();
    let b = board.to_str().unwrap().to_string();
    let (out, took) = {
        let cmd = Ossup::new()
            .creds(AK, SK)
            .arg("upload")
            .arg(&small)
            .arg(format!("oss://{BUCKET}/k/local"))
            .args(["--region", REGION, "--board", &b, "--checkpoint-dir"])
            .arg(&ck)
            .timeout(FAST + Duration::from_secs(10));
        let t = Instant::now();
        let o = cmd.run();
        (o, t.elapsed())
    };
    expect_fast(
        "board endpoint",
        (out, took),
        78,
        &["board", "endpoint"],
        &[],
    );

    // `watch` builds the same configuration: the same check applies.
    let spool = tmp.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let t = Instant::now();
    let out = Ossup::new()
        .creds(AK, SK)
        .arg("watch")
        .arg(&spool)
        .arg(format!("oss://{BUCKET}/w/"))
        .args([
            "--endpoint",
            &ep,
            "--region",
            REGION,
            "--once",
            "--meta",
            "a=b\nc",
        ])
        .arg("--checkpoint-dir")
        .arg(&ck)
        .timeout(FAST + Duration::from_secs(10))
        .run();
    expect_fast("watch meta", (out, t.elapsed()), 64, &["--meta"], &[]);

    // Nothing was sent for any of them.
    assert!(
        read_object(&tmp.join("srv"), BUCKET, "k/local").is_none(),
        "an object was stored"
    );
    // A clean value still works (the check is not too strict).
    let (out, _) = run(
        &ep,
        &small,
        &ck,
        &[
            "--meta",
            "site=north\tgate 3",
            "--content-type",
            "text/plain; charset=utf-8",
        ],
        &c,
    );
    out.expect_code(0);
    server.stop();
}

/// Runs `upload` with a board file at `board` and `extra` flags (credentials set).
fn run_board(board: &Path, small: &Path, ck: &Path, extra: &[&str]) -> (Output, Duration) {
    let cmd = Ossup::new()
        .creds(AK, SK)
        .arg("upload")
        .arg(small)
        .arg(format!("oss://{BUCKET}/k/local"))
        .args(["--region", REGION, "--board"])
        .arg(board)
        .arg("--checkpoint-dir")
        .arg(ck)
        .args(extra)
        .timeout(FAST + Duration::from_secs(10));
    let t = Instant::now();
    let o = cmd.run();
    (o, t.elapsed())
}

/// Makes a FIFO at `p` with mkfifo(1); false (and a message) where the tool is missing.
fn mkfifo(p: &Path) -> bool {
    match std::process::Command::new("mkfifo").arg(p).status() {
        Ok(s) if s.success() => true,
        other => {
            eprintln!("mkfifo unavailable ({other:?}): FIFO cases skipped");
            false
        }
    }
}

/// Item 13: `--ca-file` and the board file must be regular files of at most 1 MiB. Before,
/// `--ca-file /dev/zero` read until memory ran out and a FIFO blocked forever (no writer).
/// Both are configuration errors (78, as a missing or unparsable `--ca-file` always was, see
/// tests/tls.rs), one line naming the flag or the board file, the path and the reason.
#[test]
fn ca_file_and_board_file_must_be_small_regular_files() {
    let tmp = TempDir::new("cafile");
    let server = start_server(&tmp.join("srv"));
    // https: the CA file is read (the old code read it before connecting).
    let ep = format!("https://{}", server.addr());
    let small = tmp.join("small.bin");
    write_file(&small, 1000, 5);
    let ck = tmp.join("ck");
    let c = creds();
    let fifo = tmp.join("ca.fifo");
    let have_fifo = mkfifo(&fifo);
    let big = tmp.join("big.pem");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len((1 << 20) + 1).unwrap();
    drop(f);
    let dir = tmp.join("a-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let link = tmp.join("zero-link.pem");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();

    let mut cases: Vec<(&str, &Path, &str)> = vec![
        ("ca /dev/zero", Path::new("/dev/zero"), "character device"),
        ("ca link to /dev/zero", &link, "character device"),
        ("ca over 1 MiB", &big, "1 MiB"),
        ("ca directory", &dir, "directory"),
    ];
    if have_fifo {
        cases.push(("ca FIFO", &fifo, "FIFO"));
    }
    for (what, p, why) in &cases {
        let ps = p.to_str().unwrap();
        expect_fast(
            what,
            run(&ep, &small, &ck, &["--ca-file", ps], &c),
            78,
            &["--ca-file", ps, why],
            &[],
        );
    }
    // watch builds the same configuration.
    let spool = tmp.join("spool");
    std::fs::create_dir_all(&spool).unwrap();
    let t = Instant::now();
    let out = Ossup::new()
        .creds(AK, SK)
        .arg("watch")
        .arg(&spool)
        .arg(format!("oss://{BUCKET}/w/"))
        .args(["--endpoint", &ep, "--region", REGION, "--once"])
        .args(["--ca-file", "/dev/zero", "--checkpoint-dir"])
        .arg(&ck)
        .timeout(FAST + Duration::from_secs(10))
        .run();
    expect_fast(
        "watch ca",
        (out, t.elapsed()),
        78,
        &["--ca-file", "character device"],
        &[],
    );

    // The board file itself: 78, naming the board file and the reason.
    let big_board = tmp.join("big.toml");
    let mut text = String::from("region = \"cn-hangzhou\"\n");
    while text.len() <= 1 << 20 {
        text.push_str("# padding padding padding padding padding padding padding padding\n");
    }
    std::fs::write(&big_board, &text).unwrap();
    let http_ep = endpoint(server.addr());
    let mut boards: Vec<(&str, &Path, &str)> = vec![
        (
            "board /dev/zero",
            Path::new("/dev/zero"),
            "character device",
        ),
        ("board over 1 MiB", &big_board, "1 MiB"),
    ];
    let board_fifo = tmp.join("b.toml");
    if have_fifo && mkfifo(&board_fifo) {
        boards.push(("board FIFO", &board_fifo, "FIFO"));
    }
    for (what, p, why) in &boards {
        expect_fast(
            what,
            run_board(p, &small, &ck, &["--endpoint", &http_ep]),
            78,
            &["board", p.to_str().unwrap(), why],
            &[],
        );
    }
    // A small regular board file still works.
    let ok_board = tmp.join("ok.toml");
    std::fs::write(&ok_board, "region = \"cn-hangzhou\"\n").unwrap();
    run_board(&ok_board, &small, &ck, &["--endpoint", &http_ep])
        .0
        .expect_code(0);
    server.stop();
}

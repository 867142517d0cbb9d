//! Another local user must not be able to destroy or steal data through ossup's state or spool
//! directories (issue 11 items 16-19, and the local-user parts of issue 10).
//!
//! The attacker is played by a small Python program run as `nobody` (uid 65534) with
//! `setpriv` when the tests run as root; tests that need a second user print why they are
//! skipped otherwise. Everything runs against an in-process `ossup::serve` on 127.0.0.1.
#![cfg(feature = "serve")]

mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use support::*;

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) == 0
}

/// Prints why a second-user test does not run here; true if it must be skipped.
fn skip_without_second_user(test: &str) -> bool {
    if !is_root() {
        eprintln!("SKIPPED {test}: needs root to run the attacker as `nobody` with setpriv");
        return true;
    }
    if !Path::new("/usr/bin/setpriv").exists() || !Path::new("/usr/bin/python3").exists() {
        eprintln!("SKIPPED {test}: needs /usr/bin/setpriv and /usr/bin/python3");
        return true;
    }
    false
}

/// Runs the Python program `code` as `nobody` with `args`, from a world-readable directory
/// under `t`; panics (with its output) unless it exits 0.
fn as_nobody(t: &TempDir, code: &str, args: &[&Path]) {
    let dir = t.join("attacker");
    fs::create_dir_all(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let script = dir.join("plant.py");
    fs::write(&script, code).unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let out = Command::new("/usr/bin/setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
        ])
        .arg(&script)
        .args(args)
        .output()
        .expect("run setpriv");
    assert!(
        out.status.success(),
        "attacker program failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root-only file whose content must never change or leave the machine.
fn victim(t: &TempDir) -> (PathBuf, Vec<u8>) {
    let dir = t.join("secret");
    fs::create_dir_all(&dir).unwrap();
    let p = dir.join("victim");
    let data = b"root-only secret: do not overwrite or upload\n".to_vec();
    fs::write(&p, &data).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    (p, data)
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// The journal name ossup uses for `file` → `key` at `endpoint`.
fn journal_for(ckpt: &Path, endpoint: &str, file: &Path, key: &str) -> PathBuf {
    let authority = endpoint.trim_start_matches("http://");
    ossup::io::journal::journal_path(ckpt, file, &format!("http://{authority}"), BUCKET, key)
}

// ---------------------------------------------------------------------------------------------
// Item 16: the checkpoint directory

#[test]
fn checkpoint_dir_writable_by_others_is_refused_with_73() {
    let t = TempDir::new("nb-ckpt-mode");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let file = t.join("f.bin");
    write_file(&file, 1000, 1);
    for (m, word) in [(0o777, "others"), (0o1777, "others"), (0o770, "group")] {
        let ckpt = t.join(format!("ckpt-{m:o}"));
        fs::create_dir(&ckpt).unwrap();
        fs::set_permissions(&ckpt, fs::Permissions::from_mode(m)).unwrap();
        let out = upload(&ep, &file, "k", &ckpt).run();
        out.expect_code(73);
        let line = out.single_error_line();
        assert!(
            line.contains("writable by") && line.contains(word),
            "{line}"
        );
        assert!(journals(&ckpt).is_empty());
        assert_eq!(
            fs::read_dir(&ckpt).unwrap().count(),
            0,
            "ossup wrote into it"
        );
        assert!(read_object(&t.join("store"), BUCKET, "k").is_none());
    }
    // watch refuses it the same way, before anything is uploaded or deleted.
    let spool = t.join("spool");
    fs::create_dir(&spool).unwrap();
    write_file(&spool.join("a.bin"), 10, 2);
    let ckpt = t.join("ckpt-777");
    let out = Ossup::new()
        .creds(AK, SK)
        .arg("watch")
        .arg(&spool)
        .arg(format!("oss://{BUCKET}/in/"))
        .args([
            "--endpoint",
            &ep,
            "--region",
            REGION,
            "--once",
            "--settle",
            "0",
        ])
        .arg("--checkpoint-dir")
        .arg(&ckpt)
        .run();
    out.expect_code(73);
    assert!(out.single_error_line().contains("writable by others"));
    assert!(spool.join("a.bin").exists());
}

#[test]
fn checkpoint_dir_owned_by_another_user_is_refused_with_73() {
    if skip_without_second_user("checkpoint_dir_owned_by_another_user_is_refused_with_73") {
        return;
    }
    let t = TempDir::new("nb-ckpt-owner");
    let server = start_server(&t.join("store"));
    let file = t.join("f.bin");
    write_file(&file, 1000, 1);
    let ckpt = t.join("ckpt");
    fs::create_dir(&ckpt).unwrap();
    fs::set_permissions(&ckpt, fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&ckpt, Some(NOBODY), Some(NOBODY)).unwrap();
    let out = upload(&endpoint(server.addr()), &file, "k", &ckpt).run();
    out.expect_code(73);
    let line = out.single_error_line();
    assert!(line.contains("owned by uid 65534"), "{line}");
    assert_eq!(fs::read_dir(&ckpt).unwrap().count(), 0);
}

#[test]
fn new_checkpoint_dir_is_created_0700() {
    let t = TempDir::new("nb-ckpt-new");
    let server = start_server(&t.join("store"));
    let file = t.join("f.bin");
    let data = write_file(&file, 1000, 1);
    let ckpt = t.join("a/b/ckpt");
    upload(&endpoint(server.addr()), &file, "k", &ckpt)
        .run()
        .expect_code(0);
    assert_eq!(mode(&ckpt), 0o700);
    assert_eq!(read_object(&t.join("store"), BUCKET, "k").unwrap(), data);
}

/// A user who could once write the checkpoint directory (or planted names before it was made
/// private) left links where ossup creates its files: none of them may be written through.
#[test]
fn planted_links_in_checkpoint_dir_are_never_followed() {
    let t = TempDir::new("nb-ckpt-links");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let (victim, secret) = victim(&t);
    let ckpt = t.join("ckpt");
    fs::create_dir(&ckpt).unwrap();
    fs::set_permissions(&ckpt, fs::Permissions::from_mode(0o700)).unwrap();
    let file = t.join("f.bin");
    let data = write_file(&file, 3000, 7);
    let j = journal_for(&ckpt, &ep, &file, "k");
    let mut names: Vec<PathBuf> = vec![
        j.with_extension("lock"),
        PathBuf::from(format!("{}.tmp", j.display())),
    ];
    for n in &names {
        std::os::unix::fs::symlink(&victim, n).unwrap();
    }
    let out = upload(&ep, &file, "k", &ckpt).run();
    assert_eq!(fs::read(&victim).unwrap(), secret, "victim overwritten");
    assert_eq!(mode(&victim), 0o600);
    // The lock name is a link: ossup refuses it (73) rather than locking through it.
    out.expect_code(73);
    assert!(read_object(&t.join("store"), BUCKET, "k").is_none());
    // Without the lock link, the stale temp-file link is replaced, not written through.
    fs::remove_file(&names[0]).unwrap();
    upload(&ep, &file, "k", &ckpt).run().expect_code(0);
    assert_eq!(fs::read(&victim).unwrap(), secret, "victim overwritten");
    assert_eq!(read_object(&t.join("store"), BUCKET, "k").unwrap(), data);
    // A planted journal link is refused, never read or replaced through.
    names.clear();
    std::os::unix::fs::symlink(&victim, &j).unwrap();
    let out = upload(&ep, &file, "k", &ckpt).run();
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert_eq!(fs::read(&victim).unwrap(), secret, "victim overwritten");
}

/// The second user plants links in a shared (sticky, world-writable) checkpoint directory:
/// ossup refuses the directory, and the root-only victim is untouched.
#[test]
fn second_user_cannot_make_ossup_overwrite_files_via_checkpoint_dir() {
    if skip_without_second_user("second_user_cannot_make_ossup_overwrite_files_via_checkpoint_dir")
    {
        return;
    }
    let t = TempDir::new("nb-ckpt-nobody");
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let (victim, secret) = victim(&t);
    let ckpt = t.join("ckpt");
    fs::create_dir(&ckpt).unwrap();
    fs::set_permissions(&ckpt, fs::Permissions::from_mode(0o1777)).unwrap();
    let file = t.join("f.bin");
    write_file(&file, 3000, 7);
    let j = journal_for(&ckpt, &ep, &file, "k");
    as_nobody(
        &t,
        "import os, sys\nfor n in sys.argv[2:]:\n    os.symlink(sys.argv[1], n)\n",
        &[
            &victim,
            &j.with_extension("lock"),
            &j,
            Path::new(&format!("{}.tmp", j.display())),
        ],
    );
    let out = upload(&ep, &file, "k", &ckpt).run();
    out.expect_code(73);
    assert!(out.single_error_line().contains("writable by others"));
    assert_eq!(fs::read(&victim).unwrap(), secret, "victim overwritten");
    assert_eq!(mode(&victim), 0o600);
}

// ---------------------------------------------------------------------------------------------
// Item 18: symbolic links in the spool

/// `ossup watch SPOOL oss://bkt/in/ --once --settle 0` with a fresh checkpoint dir.
fn watch_once(t: &TempDir, ep: &str, spool: &Path, extra: &[&str]) -> Output {
    Ossup::new()
        .creds(AK, SK)
        .arg("watch")
        .arg(spool)
        .arg(format!("oss://{BUCKET}/in/"))
        .args([
            "--endpoint",
            ep,
            "--region",
            REGION,
            "--once",
            "--settle",
            "0",
        ])
        .args(["--poll", "0.1"])
        .arg("--checkpoint-dir")
        .arg(t.join("ckpt"))
        .args(extra)
        .run()
}

#[test]
fn spool_links_outside_the_spool_are_not_followed_without_follow_symlinks() {
    let t = TempDir::new("nb-link-out");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let (victim, secret) = victim(&t);
    let spool = t.join("spool");
    fs::create_dir(&spool).unwrap();
    std::os::unix::fs::symlink(&victim, spool.join("loot")).unwrap();
    fs::write(spool.join("inside.txt"), b"inside").unwrap();
    std::os::unix::fs::symlink(spool.join("inside.txt"), spool.join("alias")).unwrap();
    let out = watch_once(&t, &ep, &spool, &[]);
    assert!(
        out.stderr.contains("outside the watched directory"),
        "{}",
        out.stderr
    );
    assert!(
        read_object(&t.join("store"), BUCKET, "in/loot").is_none(),
        "{}",
        out.stderr
    );
    assert!(
        fs::symlink_metadata(spool.join("loot")).is_ok(),
        "link removed"
    );
    // A link to a file of the same owner inside the spool is still followed.
    assert_eq!(
        read_object(&t.join("store"), BUCKET, "in/alias").as_deref(),
        Some(&b"inside"[..])
    );
    // --follow-symlinks says the user wants links followed wherever they point.
    let out = watch_once(&t, &ep, &spool, &["--follow-symlinks"]);
    out.expect_code(0);
    assert_eq!(
        read_object(&t.join("store"), BUCKET, "in/loot"),
        Some(secret.clone())
    );
    assert_eq!(
        fs::read(&victim).unwrap(),
        secret,
        "the target must never be touched"
    );
}

/// The second user links a root-only file into a spool they may write: root's watch must not
/// upload it.
#[test]
fn second_user_cannot_make_watch_upload_a_root_only_file() {
    if skip_without_second_user("second_user_cannot_make_watch_upload_a_root_only_file") {
        return;
    }
    let t = TempDir::new("nb-link-nobody");
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let spool = t.join("spool");
    fs::create_dir(&spool).unwrap();
    fs::set_permissions(&spool, fs::Permissions::from_mode(0o1777)).unwrap();
    // A root-only file outside the spool, and one in a hidden (never uploaded) directory of it.
    let (outside, secret) = victim(&t);
    let inner_dir = spool.join(".root-only");
    fs::create_dir(&inner_dir).unwrap();
    let inside = inner_dir.join("shadow.txt");
    fs::write(&inside, &secret).unwrap();
    fs::set_permissions(&inside, fs::Permissions::from_mode(0o600)).unwrap();
    as_nobody(
        &t,
        "import os, sys\nos.symlink(sys.argv[1], sys.argv[3])\nos.symlink(sys.argv[2], sys.argv[4])\n",
        &[&outside, &inside, &spool.join("loot-out"), &spool.join("loot-in")],
    );
    let out = watch_once(&t, &ep, &spool, &[]);
    let store = t.join("store");
    assert!(
        read_object(&store, BUCKET, "in/loot-out").is_none(),
        "{}",
        out.stderr
    );
    assert!(
        read_object(&store, BUCKET, "in/loot-in").is_none(),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("owned by uid 65534 to a file owned by uid 0"),
        "{}",
        out.stderr
    );
    assert_eq!(fs::read(&outside).unwrap(), secret);
    assert_eq!(
        fs::read(&inside).unwrap(),
        b"root-only secret: do not overwrite or upload\n"
    );
}

// ---------------------------------------------------------------------------------------------
// Item 19: lock files do not pile up

/// The `.lock` files in `dir`.
fn lock_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "lock"))
        .collect();
    v.sort();
    v
}

/// Every finished upload removes its lock file: after 40 files through `watch` and 5 through
/// `upload`, the checkpoint directory holds only the watcher's own (one per spool) lock.
#[test]
fn finished_uploads_leave_no_lock_files() {
    let t = TempDir::new("nb-no-locks");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let spool = t.join("spool");
    fs::create_dir(&spool).unwrap();
    for i in 0..40 {
        write_file(&spool.join(format!("f{i}.bin")), 100 + i, i as u64);
    }
    watch_once(&t, &ep, &spool, &[]).expect_code(0);
    for i in 0..40 {
        assert!(read_object(&t.join("store"), BUCKET, &format!("in/f{i}.bin")).is_some());
    }
    let ckpt = t.join("ckpt");
    let locks = lock_files(&ckpt);
    assert_eq!(locks.len(), 1, "{locks:?}");
    let name = locks[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("watch-"), "{name}");
    for i in 0..5 {
        let file = t.join(format!("u{i}.bin"));
        write_file(&file, 3000, 50 + i);
        upload(&ep, &file, &format!("u/{i}"), &ckpt)
            .run()
            .expect_code(0);
    }
    assert_eq!(lock_files(&ckpt), locks);
    assert!(journals(&ckpt).is_empty());
}

/// Child half of `lock_removal_keeps_two_processes_from_both_holding`: run only when the parent
/// re-executes this test binary with `OSSUP_LOCK_CHILD` set.
#[test]
fn lock_child_process() {
    let Ok(spec) = std::env::var("OSSUP_LOCK_CHILD") else {
        return;
    };
    let (journal, log) = spec.split_once('\n').unwrap();
    let (journal, log) = (Path::new(journal), Path::new(log));
    let me = std::process::id();
    for round in 0..100 {
        let lock = ossup::io::journal::Lock::acquire(journal, true).unwrap();
        let mut f = fs::OpenOptions::new().append(true).open(log).unwrap();
        std::io::Write::write_all(&mut f, format!("+{me}\n").as_bytes()).unwrap();
        if round % 8 == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::io::Write::write_all(&mut f, format!("-{me}\n").as_bytes()).unwrap();
        drop(f);
        // Most rounds remove the file (as a finished upload does); some just release it.
        if round % 5 == 4 {
            drop(lock);
        } else {
            lock.remove();
        }
    }
}

/// Item 19, the race removal could open: four processes lock, work and remove the same lock
/// file in a loop; the shared log shows that no two were ever inside at once.
#[test]
fn lock_removal_keeps_two_processes_from_both_holding() {
    let t = TempDir::new("nb-lock-race");
    let journal = t.join("j.ossup");
    let log = t.join("log");
    fs::write(&log, b"").unwrap();
    let exe = std::env::current_exe().unwrap();
    let spec = format!("{}\n{}", journal.display(), log.display());
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args(["--exact", "lock_child_process", "--test-threads=1"])
                .env("OSSUP_LOCK_CHILD", &spec)
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    for mut c in children {
        loop {
            if let Some(st) = c.try_wait().unwrap() {
                assert!(st.success(), "child failed: {st}");
                break;
            }
            if std::time::Instant::now() > deadline {
                let _ = c.kill();
                panic!("child did not finish in 60 s");
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    let text = fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4 * 100 * 2);
    for pair in lines.chunks(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(
            a.starts_with('+') && b.starts_with('-') && a[1..] == b[1..],
            "two holders at once: {a} then {b}"
        );
    }
}

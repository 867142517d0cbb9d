//! Issue 10 "Keep the promise": the IO halves of its items, against `ossup serve` (in process)
//! or a scripted fake server on 127.0.0.1. The decisions themselves are unit-tested in
//! `src/proto/upload/tests.rs` and `src/proto/retry.rs`.
#![cfg(feature = "serve")]

mod support;

use std::time::Duration;

use ossup::{Config, Destination, Endpoint, Error};
use support::*;

const BUCKET: &str = "bkt";

fn config(ep: &str, ck: &std::path::Path) -> Config {
    let mut cfg = Config::new(
        Endpoint::parse(ep).unwrap(),
        REGION,
        credentials(),
        ck.to_path_buf(),
    );
    cfg.part_size = 256 << 10;
    cfg.multipart_threshold = 256 << 10;
    cfg.retry_for = Some(Duration::from_secs(2));
    cfg
}

/// Rewrites `path` in place with other bytes of the same length (the inode stays).
fn rewrite_in_place(path: &std::path::Path, len: usize) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(&content(len, 99)).unwrap();
    f.sync_all().unwrap();
}

/// Item 3: a file rewritten while its single PutObject is on the wire is a changed file
/// (exit 65), exactly like the multipart path; it never counts as uploaded.
#[test]
fn put_object_of_a_file_rewritten_during_the_send_exits_65() {
    let tmp = TempDir::new("promise-put-changed");
    let srv = start_server(&tmp.join("srv"));
    let file = tmp.join("f.bin");
    let len = 768 << 10;
    write_file(&file, len, 1);
    let mut cfg = config(&endpoint(srv.addr()), &tmp.join("ck"));
    cfg.multipart_threshold = 8 << 20; // one PutObject
    cfg.limit_rate = Some(1 << 20);
    let dest = Destination::parse(&format!("oss://{BUCKET}/put/changed")).unwrap();
    let mut rewritten = false;
    let r = ossup::upload_file_blocking(&cfg, &file, &dest, &mut |d, t| {
        if !rewritten && d > 0 && d < t {
            rewritten = true;
            // A later mtime, as any writer leaves.
            std::thread::sleep(Duration::from_millis(20));
            rewrite_in_place(&file, len);
        }
    });
    assert!(rewritten, "the file was not rewritten during the send");
    match r {
        Err(e @ Error::FileChanged { .. }) => assert_eq!(e.exit_code(), 65),
        other => panic!("expected FileChanged (65), got {other:?}"),
    }
}

/// Item 10: a file truncated during a multipart upload is a changed file (65), not an IO
/// error (74).
#[test]
fn a_file_truncated_during_upload_exits_65() {
    let tmp = TempDir::new("promise-truncated");
    let srv = start_server(&tmp.join("srv"));
    let file = tmp.join("f.bin");
    let len = 1 << 20;
    write_file(&file, len, 2);
    let mut cfg = config(&endpoint(srv.addr()), &tmp.join("ck"));
    cfg.limit_rate = Some(1 << 20);
    let dest = Destination::parse(&format!("oss://{BUCKET}/mp/truncated")).unwrap();
    let mut truncated = false;
    let r = ossup::upload_file_blocking(&cfg, &file, &dest, &mut |d, _| {
        if !truncated && d > 0 {
            truncated = true;
            let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
            f.set_len(100 << 10).unwrap();
        }
    });
    assert!(truncated);
    match r {
        Err(e @ Error::FileChanged { .. }) => assert_eq!(e.exit_code(), 65),
        other => panic!("expected FileChanged (65), got {other:?}"),
    }
}

/// Item 4: every Initiate answer is lost (503: the server may have created the upload), then
/// the retry budget ends the run. The journal with its Initiating doubt stays, so a later run
/// sweeps for the strays.
#[test]
fn lost_initiate_answers_then_giving_up_keep_the_journal() {
    let tmp = TempDir::new("promise-initiate-doubt");
    let fake = FakeServer::start(|_| {
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    });
    let file = tmp.join("f.bin");
    write_file(&file, 600 << 10, 3);
    let ck = tmp.join("ck");
    let mut cfg = config(&fake.endpoint(), &ck);
    cfg.retry_for = Some(Duration::from_millis(600));
    let dest = Destination::parse(&format!("oss://{BUCKET}/doubt/k")).unwrap();
    let r = ossup::upload_file_blocking(&cfg, &file, &dest, &mut |_, _| {});
    assert!(matches!(r, Err(Error::GaveUp { .. })), "{r:?}");
    assert!(
        fake.heads()
            .iter()
            .any(|h| h.starts_with("POST ") && h.contains("uploads")),
        "Initiate was tried"
    );
    let j = journals(&ck);
    assert_eq!(j.len(), 1, "the doubt must outlive the run: {j:?}");
    let (_, replay) = ossup::io::journal::Journal::open(&j[0]).unwrap().unwrap();
    let replay = replay.expect("readable");
    assert!(replay
        .records
        .iter()
        .any(|r| matches!(r, ossup::proto::checkpoint::Record::Initiating)));
}

/// Interrupts an upload of `file` once about 40% is on the wire (drops the future), leaving its
/// journal and an open upload on the server.
fn interrupt_upload(cfg: &Config, file: &std::path::Path, dest: &Destination, len: u64) {
    use std::cell::Cell;
    let stop = Cell::new(false);
    let mut progress = |d: u64, _t: u64| {
        if d >= len * 4 / 10 {
            stop.set(true);
        }
    };
    let upload = async { Some(ossup::upload_file(cfg, file, dest, &mut progress).await) };
    let stopper = async {
        for _ in 0..3000 {
            if stop.get() {
                break;
            }
            async_io::Timer::after(Duration::from_millis(5)).await;
        }
        None
    };
    let r = async_io::block_on(futures_lite::future::or(upload, stopper));
    assert!(
        r.is_none(),
        "the upload finished before it could be interrupted"
    );
}

/// Item 11: a flipped bit in a journal's version byte (it reads as "format 5") must not stop
/// the upload (exit 78 stopped watch for every file): the journal is kept aside under a name a
/// newer ossup could still read, the file starts over, and the upload succeeds.
#[test]
fn a_damaged_journal_version_is_set_aside_and_the_file_starts_over() {
    let tmp = TempDir::new("promise-damaged-version");
    let srv_dir = tmp.join("srv");
    let srv = start_server(&srv_dir);
    let file = tmp.join("f.bin");
    let len = 1536 << 10;
    let data = write_file(&file, len, 4);
    let ck = tmp.join("ck");
    let mut cfg = config(&endpoint(srv.addr()), &ck);
    cfg.limit_rate = Some(2 << 20);
    let dest = Destination::parse(&format!("oss://{BUCKET}/damaged/k")).unwrap();
    interrupt_upload(&cfg, &file, &dest, len as u64);
    let j = journals(&ck);
    assert_eq!(j.len(), 1, "{j:?}");
    let mut bytes = std::fs::read(&j[0]).unwrap();
    bytes[6] ^= 0x04; // one flipped bit: version 2 reads as 6
    std::fs::write(&j[0], &bytes).unwrap();

    cfg.limit_rate = None;
    let up = ossup::upload_file_blocking(&cfg, &file, &dest, &mut |_, _| {})
        .expect("a damaged journal is a per-file restart, not an error");
    assert_eq!(up.parts_resumed, 0);
    assert_eq!(read_object(&srv_dir, BUCKET, "damaged/k").unwrap(), data);
    let aside: Vec<_> = std::fs::read_dir(&ck)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".ossup.v"))
        .collect();
    assert_eq!(aside.len(), 1, "kept aside: {aside:?}");
    let want = format!(".ossup.v{}", bytes[6]);
    assert!(aside[0].ends_with(&want), "{aside:?}");
    assert_eq!(
        std::fs::read(ck.join(&aside[0])).unwrap(),
        bytes,
        "kept byte for byte"
    );
    assert!(
        journals(&ck).is_empty(),
        "the finished upload left no journal"
    );
}

/// "Also fix": `ossup status` reads journals without writing: a torn tail stays for the
/// lock holder to cut (status took no lock and truncated it).
#[test]
fn status_never_truncates_a_journal() {
    let tmp = TempDir::new("promise-status-ro");
    let srv = start_server(&tmp.join("srv"));
    let file = tmp.join("f.bin");
    let len = 1536 << 10;
    write_file(&file, len, 5);
    let ck = tmp.join("ck");
    let mut cfg = config(&endpoint(srv.addr()), &ck);
    cfg.limit_rate = Some(2 << 20);
    let dest = Destination::parse(&format!("oss://{BUCKET}/status/k")).unwrap();
    interrupt_upload(&cfg, &file, &dest, len as u64);
    let j = journals(&ck);
    assert_eq!(j.len(), 1, "{j:?}");
    let mut bytes = std::fs::read(&j[0]).unwrap();
    bytes.extend_from_slice(&[7, 0, 0]); // a torn frame
    std::fs::write(&j[0], &bytes).unwrap();
    let st = Ossup::new()
        .arg("status")
        .arg("--checkpoint-dir")
        .arg(&ck)
        .run();
    st.expect_code(0);
    assert!(st.stdout.contains("oss://bkt/status/k"), "{}", st.stdout);
    assert_eq!(
        std::fs::read(&j[0]).unwrap(),
        bytes,
        "status changed the journal"
    );
}

/// Item 7: `ossup abort FILE` through a symlinked directory after FILE was deleted still finds
/// the journal (one canonical spelling) and aborts the open upload.
#[test]
fn abort_through_a_symlinked_dir_after_the_file_was_deleted() {
    let tmp = TempDir::new("promise-abort-symlink");
    let srv = start_server(&tmp.join("srv"));
    let real = tmp.join("real");
    std::fs::create_dir_all(&real).unwrap();
    let link = tmp.join("link");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let file = link.join("f.bin");
    let len = 1536 << 10;
    write_file(&file, len, 6);
    let ck = tmp.join("ck");
    let mut cfg = config(&endpoint(srv.addr()), &ck);
    cfg.limit_rate = Some(2 << 20);
    let dest = Destination::parse(&format!("oss://{BUCKET}/abort/k")).unwrap();
    interrupt_upload(&cfg, &file, &dest, len as u64);
    assert_eq!(srv.stats().open_uploads, 1);
    std::fs::remove_file(&file).unwrap();
    let ids = async_io::block_on(ossup::io::driver::abort(&cfg, &file, &dest)).expect("abort");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(srv.stats().open_uploads, 0, "the upload is still open");
    assert!(journals(&ck).is_empty());
}

/// Item 7: abort also sweeps the doubt an Initiate with a lost answer left (no record names
/// that upload).
#[test]
fn abort_sweeps_uploads_a_lost_initiate_answer_left() {
    let tmp = TempDir::new("promise-abort-doubt");
    let srv = start_server(&tmp.join("srv"));
    let file = tmp.join("f.bin");
    write_file(&file, 600 << 10, 7);
    let ck = tmp.join("ck");
    let cfg = config(&endpoint(srv.addr()), &ck);
    let dest = Destination::parse(&format!("oss://{BUCKET}/abort/doubt")).unwrap();
    // The server holds an upload of the key; the journal only says an Initiate was sent.
    let jpath =
        ossup::io::journal::journal_path(&ck, &file, &cfg.endpoint.url(), BUCKET, "abort/doubt");
    std::fs::create_dir_all(&ck).unwrap();
    interrupt_upload_key(&cfg, &file, &dest);
    let j = journals(&ck);
    assert_eq!(j, vec![jpath.clone()]);
    // Forget its Started record: keep the header and write only an Initiating record.
    let (_, replay) = ossup::io::journal::Journal::open(&jpath).unwrap().unwrap();
    let identity = replay.unwrap().identity;
    let bytes = ossup::proto::checkpoint::encode_journal(
        &identity,
        &[ossup::proto::checkpoint::Record::Initiating],
    );
    std::fs::write(&jpath, bytes).unwrap();
    assert_eq!(srv.stats().open_uploads, 1);
    let ids = async_io::block_on(ossup::io::driver::abort(&cfg, &file, &dest)).expect("abort");
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(srv.stats().open_uploads, 0, "the stray is still open");
}

/// Starts an upload of `file` and drops it right after its upload id is journaled.
fn interrupt_upload_key(cfg: &Config, file: &std::path::Path, dest: &Destination) {
    let mut cfg = cfg.clone();
    cfg.limit_rate = Some(256 << 10);
    let len = std::fs::metadata(file).unwrap().len();
    interrupt_upload(&cfg, file, dest, len / 4);
}

/// Item 5: the per-destination pending-abort record outlives the upload that made it: `ossup
/// status` lists its upload ids, and the next upload of the destination aborts them (and
/// removes the record once none is left).
#[test]
fn pending_aborts_outlive_the_upload_are_listed_and_retried() {
    let tmp = TempDir::new("promise-pending-aborts");
    let srv = start_server(&tmp.join("srv"));
    let file = tmp.join("f.bin");
    let len = 1536 << 10;
    write_file(&file, len, 8);
    let ck = tmp.join("ck");
    let mut cfg = config(&endpoint(srv.addr()), &ck);
    cfg.limit_rate = Some(2 << 20);
    let dest = Destination::parse(&format!("oss://{BUCKET}/aborts/k")).unwrap();
    interrupt_upload(&cfg, &file, &dest, len as u64);
    assert_eq!(srv.stats().open_uploads, 1);
    // Its journal is gone (another file's success would delete it); only the record is left.
    let j = journals(&ck);
    let (_, replay) = ossup::io::journal::Journal::open(&j[0]).unwrap().unwrap();
    let id = replay
        .unwrap()
        .records
        .iter()
        .find_map(|r| match r {
            ossup::proto::checkpoint::Record::Started { upload_id } => Some(upload_id.clone()),
            _ => None,
        })
        .unwrap();
    std::fs::remove_file(&j[0]).unwrap();
    let apath = ossup::io::journal::aborts_path(&ck, &cfg.endpoint.url(), BUCKET, "aborts/k");
    ossup::io::journal::write_aborts(&apath, "oss://bkt/aborts/k", std::slice::from_ref(&id))
        .unwrap();
    let st = Ossup::new()
        .arg("status")
        .arg("--checkpoint-dir")
        .arg(&ck)
        .run();
    st.expect_code(0);
    assert!(
        st.stdout.contains(&id) && st.stdout.contains("oss://bkt/aborts/k"),
        "status does not list the pending abort:\n{}",
        st.stdout
    );
    // The next upload of the destination (another file) aborts it.
    let other = tmp.join("g.bin");
    write_file(&other, 300 << 10, 9);
    cfg.limit_rate = None;
    ossup::upload_file_blocking(&cfg, &other, &dest, &mut |_, _| {}).expect("upload");
    assert_eq!(
        srv.stats().open_uploads,
        0,
        "the carried abort was not retried"
    );
    assert!(!apath.exists(), "the record stays although nothing is left");
}

/// Item 6: two writers of one key (two checkpoint directories), both in doubt about strays
/// (their journals were damaged, so each sweeps the key). They used to abort each other's
/// uploads in a loop; now each aborts only uploads that can be its own, backs off when its
/// upload vanishes, and both finish (the last Complete wins).
#[test]
fn two_writers_of_one_key_both_finish() {
    let tmp = TempDir::new("promise-two-writers");
    let srv_dir = tmp.join("srv");
    let srv = start_server(&srv_dir);
    let ep = endpoint(srv.addr());
    let mut handles = Vec::new();
    let mut datas = Vec::new();
    for w in 0..2u64 {
        let file = tmp.join(format!("f{w}.bin"));
        datas.push(write_file(&file, 768 << 10, 20 + w));
        let ck = tmp.join(format!("ck{w}"));
        std::fs::create_dir_all(&ck).unwrap();
        let jpath = ossup::io::journal::journal_path(&ck, &file, &ep, BUCKET, "two/k");
        std::fs::write(&jpath, content(300, 30 + w)).unwrap();
        let ep = ep.clone();
        handles.push(std::thread::spawn(move || {
            let mut cfg = config(&ep, &ck);
            cfg.limit_rate = Some(2 << 20);
            cfg.retry_for = Some(Duration::from_secs(15));
            let dest = Destination::parse(&format!("oss://{BUCKET}/two/k")).unwrap();
            ossup::upload_file_blocking(&cfg, &file, &dest, &mut |_, _| {})
        }));
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    for h in handles {
        while !h.is_finished() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(h.is_finished(), "a writer did not finish in 30 s");
        let r = h.join().unwrap();
        assert!(r.is_ok(), "{r:?}");
    }
    let obj = read_object(&srv_dir, BUCKET, "two/k").unwrap();
    assert!(
        obj == datas[0] || obj == datas[1],
        "the object is one writer's file"
    );
    assert_eq!(srv.stats().open_uploads, 0);
}

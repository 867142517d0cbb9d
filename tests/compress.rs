//! `--compress` (issue "Compress logs before they cross the cellular link"): the real binary
//! against an in-process `ossup serve` on 127.0.0.1. Round trips (gunzip of the stored object
//! equals the original), SIGKILL during compression and during the upload of the staged file,
//! the original modified after staging, files that do not match left as they are, and
//! `ossup status` listing staged files.
#![cfg(all(feature = "serve", feature = "compress"))]

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ossup::io::compress::STAGING_DIR;
use ossup::proto::staging::GZIP_HEADER;
use support::*;

/// Realistic gateway log text: JSON lines with timestamps, levels and repeated fields.
fn log_text(lines: usize, seed: u64) -> Vec<u8> {
    let levels = ["info", "info", "info", "debug", "warn", "error"];
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    let mut out = String::with_capacity(lines * 120);
    for i in 0..lines {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!(
            "{{\"ts\":\"2026-12-04T03:{:02}:{:02}.{:03}Z\",\"level\":\"{}\",\"device\":\"gw-0042\",\"sensor\":\"temp-{}\",\"value\":{}.{},\"msg\":\"sample {}\"}}\n",
            (i / 60) % 60,
            i % 60,
            x % 1000,
            levels[(x % 6) as usize],
            x % 8,
            20 + x % 15,
            x % 10,
            i
        ));
    }
    out.into_bytes()
}

/// Decodes a gzip member as ossup writes it and checks the trailer.
fn gunzip(z: &[u8]) -> Vec<u8> {
    assert!(z.len() >= 18, "not a gzip member: {} bytes", z.len());
    assert_eq!(z[..10], GZIP_HEADER, "gzip header");
    let out = miniz_oxide::inflate::decompress_to_vec(&z[10..z.len() - 8]).expect("deflate");
    let t = &z[z.len() - 8..];
    assert_eq!(
        u32::from_le_bytes(t[..4].try_into().unwrap()),
        ossup::proto::checkpoint::crc32(&out),
        "gzip CRC-32"
    );
    assert_eq!(
        u32::from_le_bytes(t[4..].try_into().unwrap()),
        out.len() as u32
    );
    out
}

fn staging_files(ckpt: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(ckpt.join(STAGING_DIR))
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn watch(endpoint: &str, spool: &Path, ckpt: &Path) -> Ossup {
    Ossup::new()
        .creds(AK, SK)
        .arg("watch")
        .arg(spool)
        .arg(format!("oss://{BUCKET}/in/"))
        .args([
            "--endpoint",
            endpoint,
            "--region",
            REGION,
            "--checkpoint-dir",
        ])
        .arg(ckpt)
        .args(["--settle", "0", "--poll", "0.05", "--once", "-v"])
}

#[test]
fn watch_compresses_matching_files_and_leaves_others_alone() {
    let t = TempDir::new("compress-watch");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let spool = t.join("spool");
    fs::create_dir_all(spool.join("sub")).unwrap();
    let log = log_text(20_000, 1);
    fs::write(spool.join("sub/app.log"), &log).unwrap();
    let bin = write_file(&spool.join("clip.bin"), 100_000, 7);
    let ckpt = t.join("ckpt");
    let out = watch(&ep, &spool, &ckpt)
        .args(["--compress", "*.log"])
        .run();
    out.expect_code(0);
    let stored =
        read_object(&t.join("store"), BUCKET, "in/sub/app.log.gz").expect("app.log.gz stored");
    assert!(
        stored.len() * 5 < log.len(),
        "ratio: {} of {}",
        stored.len(),
        log.len()
    );
    assert_eq!(gunzip(&stored), log);
    let meta = read_sidecar(&t.join("store"), BUCKET, "in/sub/app.log.gz").unwrap();
    assert!(
        meta.contains("application%2Fgzip") || meta.contains("application/gzip"),
        "{meta}"
    );
    // The non-matching file is uploaded as it is, under its own name.
    assert_eq!(
        read_object(&t.join("store"), BUCKET, "in/clip.bin").unwrap(),
        bin
    );
    assert!(read_object(&t.join("store"), BUCKET, "in/sub/app.log").is_none());
    // Originals and staging files are gone after verification.
    assert!(!spool.join("sub/app.log").exists() && !spool.join("clip.bin").exists());
    assert_eq!(staging_files(&ckpt), Vec::<PathBuf>::new());
}

#[test]
fn upload_compress_and_content_encoding_mode() {
    let t = TempDir::new("compress-upload");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let f = t.join("sensor.log");
    let log = log_text(5_000, 2);
    fs::write(&f, &log).unwrap();
    let ckpt = t.join("ckpt");
    upload(&ep, &f, "logs/sensor.log", &ckpt)
        .arg("--compress")
        .run()
        .expect_code(0);
    assert_eq!(
        gunzip(&read_object(&t.join("store"), BUCKET, "logs/sensor.log.gz").unwrap()),
        log
    );
    assert!(f.exists(), "upload never deletes the original");
    assert_eq!(staging_files(&ckpt), Vec::<PathBuf>::new());
    // --content-encoding gzip: the key keeps its name; the object is still the gzip bytes.
    upload(&ep, &f, "logs/plain.log", &ckpt)
        .args([
            "--compress",
            "--content-encoding",
            "gzip",
            "--content-type",
            "text/plain",
        ])
        .run()
        .expect_code(0);
    assert_eq!(
        gunzip(&read_object(&t.join("store"), BUCKET, "logs/plain.log").unwrap()),
        log
    );
    // Without --compress, --content-encoding is refused at once.
    let out = upload(&ep, &f, "logs/x.log", &ckpt)
        .args(["--content-encoding", "gzip"])
        .run();
    out.expect_code(64);
    let out = upload(&ep, &f, "logs/x.log", &ckpt)
        .args(["--compress", "--content-encoding", "br"])
        .run();
    out.expect_code(64);
}

#[test]
fn sigkill_during_compression_leaves_a_part_that_is_redone() {
    let t = TempDir::new("compress-kill1");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let f = t.join("big.log");
    // Large enough that compression takes a while (tens of MB of log text).
    let log = log_text(400_000, 3);
    fs::write(&f, &log).unwrap();
    let ckpt = t.join("ckpt");
    let mut killed_mid = false;
    for _ in 0..5 {
        let mut child = upload(&ep, &f, "big.log", &ckpt).arg("--compress").spawn();
        let saw_part = wait_until(Duration::from_secs(20), || {
            staging_files(&ckpt)
                .iter()
                .any(|p| p.to_string_lossy().ends_with(".part"))
        });
        child.kill().unwrap();
        child.wait().unwrap();
        let left = staging_files(&ckpt);
        if saw_part && left.iter().any(|p| p.to_string_lossy().ends_with(".part")) {
            killed_mid = true;
            break;
        }
        let _ = fs::remove_dir_all(ckpt.join(STAGING_DIR));
    }
    assert!(killed_mid, "could not kill ossup while it compressed");
    let out = upload(&ep, &f, "big.log", &ckpt)
        .arg("--compress")
        .arg("-v")
        .run();
    out.expect_code(0);
    assert!(out.stderr.contains("compressed"), "{}", out.stderr);
    assert_eq!(
        gunzip(&read_object(&t.join("store"), BUCKET, "big.log.gz").unwrap()),
        log
    );
    assert_eq!(
        staging_files(&ckpt),
        Vec::<PathBuf>::new(),
        "the torn .part is gone"
    );
}

/// Starts an upload of the staged file slowly, kills it once its journal exists, and returns.
fn kill_during_staged_upload(ep: &str, f: &Path, key: &str, ckpt: &Path) {
    let mut child = upload(ep, f, key, ckpt)
        .args([
            "--compress",
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "--limit-rate",
            "200KiB/s",
        ])
        .spawn();
    let started = wait_until(Duration::from_secs(30), || !journals(ckpt).is_empty());
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(started, "the staged upload never started");
}

#[test]
fn sigkill_during_the_staged_upload_resumes_without_recompressing() {
    let t = TempDir::new("compress-kill2");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let f = t.join("cam.log");
    // Random bytes do not compress: the staged file is about as large as the original.
    let data = content(1_500_000, 9);
    fs::write(&f, &data).unwrap();
    let ckpt = t.join("ckpt");
    kill_during_staged_upload(&ep, &f, "cam.log", &ckpt);
    let staged = staging_files(&ckpt);
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(!staged[0].to_string_lossy().ends_with(".part"));
    // `ossup status` lists it.
    let st = Ossup::new()
        .arg("status")
        .arg("--checkpoint-dir")
        .arg(&ckpt)
        .run();
    st.expect_code(0);
    assert!(st.stdout.contains("staged"), "{}", st.stdout);
    let out = upload(&ep, &f, "cam.log", &ckpt)
        .args([
            "--compress",
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "-v",
        ])
        .run();
    out.expect_code(0);
    assert!(
        out.stderr.contains("compressed by an earlier run"),
        "{}",
        out.stderr
    );
    assert_eq!(
        gunzip(&read_object(&t.join("store"), BUCKET, "cam.log.gz").unwrap()),
        data
    );
    assert_eq!(staging_files(&ckpt), Vec::<PathBuf>::new());
}

#[test]
fn an_original_modified_after_staging_is_compressed_again() {
    let t = TempDir::new("compress-changed");
    let server = start_server(&t.join("store"));
    let ep = endpoint(server.addr());
    let f = t.join("cam.log");
    fs::write(&f, content(1_500_000, 10)).unwrap();
    let ckpt = t.join("ckpt");
    kill_during_staged_upload(&ep, &f, "cam.log", &ckpt);
    let old = staging_files(&ckpt);
    assert_eq!(old.len(), 1);
    // A new version (same length, so only the metadata tells).
    let new = content(1_500_000, 11);
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&f, &new).unwrap();
    let out = upload(&ep, &f, "cam.log", &ckpt)
        .args([
            "--compress",
            "--part-size",
            "100KiB",
            "--threshold",
            "100KiB",
            "-v",
        ])
        .run();
    out.expect_code(0);
    assert!(
        !out.stderr.contains("compressed by an earlier run"),
        "{}",
        out.stderr
    );
    assert_eq!(
        gunzip(&read_object(&t.join("store"), BUCKET, "cam.log.gz").unwrap()),
        new
    );
    assert_eq!(staging_files(&ckpt), Vec::<PathBuf>::new());
}

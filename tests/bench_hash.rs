//! Hash throughput (issue "Performance where a gateway pays"): CRC-64/XZ and MD5 in MiB/s.
//!
//! Every uploaded byte is checksummed with CRC-64 (and, in s3-v4 mode with Content-MD5, with MD5
//! too), and a verified resume re-reads the parts an earlier run sent, so these rates bound the
//! CPU cost per byte. Run with
//! `cargo test --release --test bench_hash -- --ignored --nocapture` (figures are printed, not
//! asserted: speed targets live in benchmarks). `tests/bench/budgets.sh` runs it, and
//! `tests/cross/qemu.sh` runs it under qemu-aarch64 for correctness (qemu timings mean nothing).
//!
//! Rows: `ossup::proto::crc64::Hasher` (carry-less multiply when the CPU has it), the
//! 16-bytes-at-a-time table fallback that boards without PMULL use, the slicing-by-8 table
//! ossup used before, and MD5 (`md-5`).

use std::time::Instant;

use md5::{Digest, Md5};

const POLY: u64 = 0xC96C_5795_D787_0F42;

/// The slicing-by-8 implementation ossup shipped before this round, for comparison.
fn slicing8(data: &[u8]) -> u64 {
    let mut t = [[0u64; 256]; 8];
    for (i, e) in t[0].iter_mut().enumerate() {
        let mut c = i as u64;
        for _ in 0..8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY } else { c >> 1 };
        }
        *e = c;
    }
    for s in 1..8 {
        for i in 0..256 {
            let prev = t[s - 1][i];
            t[s][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
        }
    }
    let mut c = !0u64;
    let mut chunks = data.chunks_exact(8);
    for ch in &mut chunks {
        let v = c ^ u64::from_le_bytes(ch.try_into().unwrap());
        c = (0..8).fold(0, |acc, k| acc ^ t[7 - k][((v >> (8 * k)) & 0xff) as usize]);
    }
    for &b in chunks.remainder() {
        c = t[0][((c ^ u64::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// MiB/s of `f` over `data`, best of a few rounds bounded to about a second in all.
fn rate(data: &[u8], mut f: impl FnMut(&[u8]) -> u64) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut out = 0;
    let start = Instant::now();
    for _ in 0..20 {
        let t = Instant::now();
        out = f(data);
        best = best.min(t.elapsed().as_secs_f64());
        if start.elapsed().as_secs_f64() > 1.0 {
            break;
        }
    }
    (data.len() as f64 / (1 << 20) as f64 / best, out)
}

#[test]
#[ignore = "benchmark: prints figures; run with --release -- --ignored --nocapture"]
fn hash_throughput() {
    let data: Vec<u8> = (0..64u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    let (fast, a) = rate(&data, |d| {
        let mut h = ossup::proto::crc64::Hasher::new();
        d.chunks(64 << 10).for_each(|c| h.write(c));
        h.sum()
    });
    let (table, b) = rate(&data, |d| {
        let mut h = crc64fast::Digest::new_table();
        d.chunks(64 << 10).for_each(|c| h.write(c));
        h.sum64()
    });
    let (old, c) = rate(&data, slicing8);
    let (md5, _) = rate(&data, |d| {
        let mut h = Md5::new();
        d.chunks(64 << 10).for_each(|c| h.update(c));
        u64::from_le_bytes(h.finalize()[..8].try_into().unwrap())
    });
    assert_eq!(a, b, "carry-less and table CRC-64 disagree");
    assert_eq!(a, c, "new and old CRC-64 disagree");
    println!("arch {}", std::env::consts::ARCH);
    println!("crc64 (runtime-selected)  {fast:>8.0} MiB/s");
    println!("crc64 (16-byte table)     {table:>8.0} MiB/s");
    println!("crc64 (old slicing-by-8)  {old:>8.0} MiB/s");
    println!("md5                       {md5:>8.0} MiB/s");
}

/// Issue 10 item 2: the cost of proving, before Complete, that every part an earlier run sent
/// still has its journaled CRC-64: re-read the file through `Source::crc64_range` part by part
/// (8 MiB parts, 64 KiB buffer, as the driver does; the file is in the page cache, so this is
/// the CPU and syscall cost, not flash speed).
#[test]
#[ignore = "benchmark: prints figures; run with --release -- --ignored --nocapture"]
fn resume_recheck_throughput() {
    let dir = std::env::temp_dir().join(format!("ossup-bench-recheck-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("f.bin");
    let len = 64u64 << 20;
    let data: Vec<u8> = (0..len as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&path, &data).unwrap();
    let src = ossup::io::source::Source::open(&path).unwrap();
    let part = 8u64 << 20;
    let mut buf = vec![0u8; 64 << 10];
    let (rate, crc) = rate(&data, |_| {
        let mut acc = 0u64;
        let mut off = 0;
        while off < len {
            let n = part.min(len - off);
            let c = src.crc64_range(off, n, &mut buf).unwrap();
            acc = ossup::proto::crc64::combine(acc, c, n);
            off += n;
        }
        acc
    });
    assert_eq!(
        crc,
        ossup::proto::crc64::update(0, &data),
        "recheck CRC-64 is wrong"
    );
    println!("arch {}", std::env::consts::ARCH);
    println!("resume recheck (re-read + crc64, page cache) {rate:>8.0} MiB/s");
    let _ = std::fs::remove_dir_all(&dir);
}

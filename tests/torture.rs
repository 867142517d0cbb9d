//! Torture tests: the real `ossup` binary against `ossup serve` (in-process, on 127.0.0.1),
//! killed with SIGKILL at random moments, with its journal damaged between runs, against a
//! server that injects faults, through a proxy that resets, stalls and throttles connections,
//! against a server whose clock is hours (or decades) off, and stopped with SIGTERM/SIGINT.
//! Every test asserts that the object ends up byte-identical, that nothing panics, and that
//! no upload the client could know about is left open; the kill loops also bound the bytes
//! sent again and print what they measured.
//!
//! The tests are `#[ignore]`d so that plain `cargo test` stays fast. Run them in release mode,
//! one at a time (they measure times, and in parallel they would compete for the CPU):
//!
//! ```text
//! cargo test --release --test torture -- --ignored --test-threads=1
//! ```
//!
//! `lost_initiate_answer_leaves_no_stale_upload` fails with the library as it is (an upload
//! whose Initiate answer is lost stays open on the server); see its doc comment.
//!
//! Each test is seeded (xorshift); set `OSSUP_TORTURE_SEED=N` to try other seeds.
//! Figures (kills, bytes re-sent, restart latencies, run times) are written to stderr with the
//! prefix `torture:` past the harness's output capture, so they show without `--nocapture`.
#![cfg(feature = "serve")]

#[path = "torture_support/harness.rs"]
mod harness;
#[path = "torture_support/proxy.rs"]
mod proxy;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use harness::{
    describe, killed, make_file, poll_until, report, view_journal, Proc, Rng, Site, MIB,
};
use ossup::proto::checkpoint::{self, Etag, Record};
use ossup::serve::{FaultKind, Faults};
use proxy::{Mode, Proxy};

/// Upper bound for the Complete request bodies the server also counts in `bytes_received`
/// (64 parts of about 90 bytes of XML each, per Complete sent).
const COMPLETE_XML_SLACK: u64 = 16 << 10;

/// How a kill loop is set up.
struct KillLoop {
    tag: &'static str,
    seed: u64,
    file_len: u64,
    part: u64,
    jobs: u32,
    /// Runs are killed until this many kills; then one more at Complete (if asked), then the
    /// upload runs to its end.
    max_kills: u64,
    /// Chance (percent) that a run is killed at a random moment 0..60 ms after spawning
    /// (startup, journal replay, ListParts or Initiate).
    early_pct: u64,
    /// Chance (percent) that a run is killed at a random moment within the time one round of
    /// parts takes after its first request (mostly in the middle of parts).
    mid_pct: u64,
    /// Kill once more right after the `Completing` record appears (lands around Complete).
    kill_at_complete: bool,
    /// What happens to the journal after each kill.
    damage: Damage,
    /// `--limit-rate` in bytes per second.
    rate: u64,
    time_limit: Duration,
}

/// What a kill loop does to the journal after each kill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Damage {
    /// Nothing.
    None,
    /// What a power cut can do to a journal whose records are fdatasync'd in order and whose
    /// creation is fsync'd before any upload starts: a torn or garbage tail after the last
    /// record, or no journal at all if no upload was started yet.
    PowerCut,
    /// Worse than any power cut (a flash card that lies about flushes, bit rot): truncation
    /// anywhere, bit flips anywhere, deletion of a journal without parts.
    Corruption,
}

/// Why a run was allowed to Initiate a new upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entitled {
    /// It was not: the journal named an upload the server has.
    No,
    /// No journal.
    NoJournal,
    /// The journal holds no Started record (killed before Initiate's answer was recorded).
    NotStarted,
    /// The journal cannot be read (the client sets it aside).
    Unreadable,
    /// The journal's upload is no longer on the server (completed, or gone).
    Gone,
}

fn entitlement(site: &Site) -> Entitled {
    let Some(j) = site.journal() else {
        return Entitled::NoJournal;
    };
    let v = view_journal(&j);
    if !v.readable {
        return Entitled::Unreadable;
    }
    match &v.current {
        None => Entitled::NotStarted,
        Some(id) if site.open_upload_ids().contains(id) => Entitled::No,
        Some(_) => Entitled::Gone,
    }
}

/// When a run of the kill loop gets its SIGKILL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// Not at all.
    Finish,
    /// This long after spawning.
    Early(Duration),
    /// This long after the server saw the run's first request.
    MidPart(Duration),
    /// This long after the run's first part was stored (the run made progress).
    Progress(Duration),
    /// 0..3 ms after the journal got its `Completing` record.
    AtComplete,
}

/// What a kill loop measured.
#[derive(Debug, Default)]
struct LoopResult {
    kills: u64,
    early_kills: u64,
    mid_kills: u64,
    progress_kills: u64,
    complete_kills: u64,
    runs: u64,
    bytes_received: u64,
    resent: u64,
    initiated: u64,
    completed: u64,
    /// Runs that had to Initiate again after an earlier run had (their journal named no
    /// usable upload).
    restarts_required: u64,
    /// Uploads open on the server that the journal did not name (at some point).
    orphans: BTreeSet<String>,
    /// Longest time from spawning a restarted process until the server saw its first request.
    max_first_request: Duration,
    /// Longest time from spawning a restarted process until `bytes_received` grew.
    max_first_byte: Duration,
    /// Restarts killed before their first new byte (no latency figure for those).
    unmeasured: u64,
    damages: Vec<&'static str>,
    /// Why each required restart was allowed.
    restart_reasons: Vec<Entitled>,
    elapsed: Duration,
}

/// Damages the journal at `path` the way a power cut can, and says how.
fn tear_journal(path: &Path, rng: &mut Rng) -> &'static str {
    let v = view_journal(path);
    let mut tail = Vec::new();
    let label = match rng.range(0, 4) {
        0 => return "none",
        1 if v.current.is_none() => {
            // Created, but the power went before anything was sent: the file may be gone.
            std::fs::remove_file(path).expect("delete journal");
            return "deleted (no upload started)";
        }
        1 | 2 => {
            // The append in progress when the power went: a prefix of a record frame.
            checkpoint::encode_record(
                &Record::PartDone {
                    n: rng.range(1, 64) as u32,
                    etag: Etag::from_text("\"0123456789ABCDEF0123456789ABCDEF\""),
                    crc64: rng.next_u64(),
                    len: MIB,
                },
                &mut tail,
            );
            let cut = rng.range(1, tail.len() as u64 - 1) as usize;
            tail.truncate(cut);
            "torn append"
        }
        3 if rng.chance(1, 2) => {
            tail = vec![0; rng.range(1, 512) as usize];
            "zero-filled tail"
        }
        _ => {
            tail = vec![0; rng.range(1, 64) as usize];
            rng.fill(&mut tail);
            "garbage tail"
        }
    };
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("open journal");
    std::io::Write::write_all(&mut f, &tail).expect("append to journal");
    label
}

/// Damages the journal at `path` worse than a power cut can, and says how.
fn corrupt_journal(path: &Path, rng: &mut Rng) -> &'static str {
    let Ok(mut bytes) = std::fs::read(path) else {
        return "none (no journal)";
    };
    let fresh = view_journal(path).parts_done.is_empty();
    let how = rng.range(0, 9);
    if fresh && how >= 7 {
        // A freshly created journal whose directory entry never reached the disk.
        std::fs::remove_file(path).expect("delete journal");
        return "deleted";
    }
    let label = match how {
        0 | 1 => return "none",
        2 | 3 => {
            let at = rng.range(0, bytes.len() as u64) as usize;
            bytes.truncate(at);
            "truncated"
        }
        4 | 5 | 7 => {
            for _ in 0..rng.range(1, 3) {
                if bytes.is_empty() {
                    break;
                }
                let i = rng.range(0, bytes.len() as u64 - 1) as usize;
                bytes[i] ^= 1 << rng.range(0, 7);
            }
            "bits flipped"
        }
        _ => {
            let at = rng.range(0, bytes.len() as u64) as usize;
            bytes.truncate(at);
            if !bytes.is_empty() {
                let i = rng.range(0, bytes.len() as u64 - 1) as usize;
                bytes[i] ^= 1 << rng.range(0, 7);
            }
            "truncated and flipped"
        }
    };
    std::fs::write(path, &bytes).expect("rewrite journal");
    label
}

/// Upload ids open on the server that the journal does not name: nobody can clean them up.
fn record_orphans(site: &Site, orphans: &mut BTreeSet<String>) {
    let known = site
        .journal()
        .map(|j| view_journal(&j).known_ids)
        .unwrap_or_default();
    for id in site.open_upload_ids() {
        if !known.contains(&id) {
            orphans.insert(id);
        }
    }
}

fn kill_loop(cfg: &KillLoop) -> LoopResult {
    let began = Instant::now();
    let mut site = Site::start(cfg.tag, Faults::default(), 0);
    let src = site.root.path.join("source.bin");
    let data = make_file(&src, cfg.file_len, cfg.seed);
    let key = format!("{}/object.bin", cfg.tag);
    let mut rng = Rng::new(cfg.seed ^ 0x5EED);
    let part = format!("{}", cfg.part);
    let jobs = cfg.jobs.to_string();
    let rate = cfg.rate.to_string();
    // How long one round of `jobs` parts takes at the rate limit.
    let round_ms = cfg.jobs as u64 * cfg.part * 1000 / cfg.rate;
    let args = [
        "--part-size",
        &part,
        "--threshold",
        &part,
        "--jobs",
        &jobs,
        "--limit-rate",
        &rate,
        "--idle-timeout",
        "5s",
        "--retry-for",
        "60s",
        "-q",
    ];
    let deadline = began + cfg.time_limit;
    let stderr_path = site.root.path.join("stderr.txt");
    let mut res = LoopResult::default();
    let mut complete_kill_pending = cfg.kill_at_complete;
    let mut finished = false;
    for run in 0..400u32 {
        assert!(
            Instant::now() < deadline,
            "{}: over the time limit after {run} runs",
            cfg.tag
        );
        let base = site.settle(Duration::from_millis(20), Duration::from_secs(2));
        // A run may Initiate only if the journal gives it no upload to go on with: none, an
        // unreadable one, no Started record, or an upload the server no longer has.
        let entitled = entitlement(&site);
        let mut p = Proc::spawn(
            site.upload_cmd(&src, &key, site.addr(), &args),
            &stderr_path,
        );
        res.runs += 1;
        let plan = if res.kills < cfg.max_kills {
            let r = rng.range(0, 99);
            if r < cfg.early_pct {
                Plan::Early(Duration::from_millis(rng.range(0, 60)))
            } else if r < cfg.early_pct + cfg.mid_pct {
                Plan::MidPart(Duration::from_millis(rng.range(0, round_ms * 3 / 4)))
            } else {
                Plan::Progress(Duration::from_millis(rng.range(0, 20)))
            }
        } else if complete_kill_pending {
            Plan::AtComplete
        } else {
            Plan::Finish
        };
        let mut first_req = None;
        let mut first_byte = None;
        let mut bytes_at_first_req = base.bytes_received;
        let mut kill_due: Option<Instant> = None;
        let status = loop {
            let s = site.stats();
            let el = p.started.elapsed();
            if first_req.is_none() && s.requests > base.requests {
                first_req = Some(el);
                bytes_at_first_req = s.bytes_received;
            }
            // Counted from the run's first request on: a killed run's last bytes may still be
            // accounted late (the server adds a request's bytes when it ends).
            if first_byte.is_none() && first_req.is_some() && s.bytes_received > bytes_at_first_req
            {
                first_byte = Some(el);
            }
            if let Some(st) = p.try_wait() {
                break st;
            }
            if kill_due.is_none() {
                let now = Instant::now();
                kill_due = match plan {
                    Plan::Finish => None,
                    Plan::Early(t) => Some(p.started + t),
                    Plan::MidPart(t) => first_req.map(|r| p.started + r + t),
                    Plan::Progress(t) => first_byte.map(|_| now + t),
                    Plan::AtComplete => site
                        .journal()
                        .is_some_and(|j| view_journal(&j).completing)
                        .then(|| now + Duration::from_millis(rng.range(0, 3))),
                };
            }
            if kill_due.is_some_and(|t| Instant::now() >= t) {
                break p.kill();
            }
            assert!(
                el < Duration::from_secs(120) && Instant::now() < deadline,
                "{}: run {run} did not finish or get killed in time; stderr:\n{}",
                cfg.tag,
                p.stderr_tail()
            );
            std::thread::sleep(Duration::from_millis(1));
        };
        p.assert_no_panic(cfg.tag);
        let after = site.settle(Duration::from_millis(20), Duration::from_secs(2));
        let initiated = after.initiated - base.initiated;
        assert!(
            initiated == 0 || (initiated == 1 && entitled != Entitled::No),
            "{}: run {run} initiated {initiated} upload(s) (its journal: {entitled:?}); \
             stderr:\n{}",
            cfg.tag,
            p.stderr_tail()
        );
        if initiated == 1 && base.initiated > 0 {
            res.restarts_required += 1;
            res.restart_reasons.push(entitled);
        }
        if run > 0 {
            match first_byte {
                Some(t) => {
                    res.max_first_byte = res.max_first_byte.max(t);
                    if let Some(r) = first_req {
                        res.max_first_request = res.max_first_request.max(r);
                    }
                }
                None => res.unmeasured += 1,
            }
        }
        if killed(&status) {
            res.kills += 1;
            match plan {
                Plan::Early(_) => res.early_kills += 1,
                Plan::MidPart(_) => res.mid_kills += 1,
                Plan::Progress(_) => res.progress_kills += 1,
                Plan::AtComplete => {
                    res.complete_kills += 1;
                    complete_kill_pending = false;
                }
                Plan::Finish => {}
            }
            record_orphans(&site, &mut res.orphans);
            if cfg.damage != Damage::None {
                if let Some(j) = site.journal() {
                    let how = if cfg.damage == Damage::PowerCut {
                        tear_journal(&j, &mut rng)
                    } else {
                        corrupt_journal(&j, &mut rng)
                    };
                    res.damages.push(how);
                    // Whatever the damaged journal no longer names is now beyond reach.
                    record_orphans(&site, &mut res.orphans);
                }
            }
            continue;
        }
        assert_eq!(
            status.code(),
            Some(0),
            "{}: run {run} ended with {} (only 0 or our SIGKILL are acceptable); stderr:\n{}",
            cfg.tag,
            describe(&status),
            p.stderr_tail()
        );
        finished = true;
        break;
    }
    assert!(finished, "{}: never finished", cfg.tag);
    let st = site.settle(Duration::from_millis(20), Duration::from_secs(2));
    site.assert_object(&key, &data);
    assert!(
        site.journals().is_empty(),
        "{}: journal left after success",
        cfg.tag
    );
    res.bytes_received = st.bytes_received;
    res.initiated = st.initiated;
    res.resent = st.bytes_received.saturating_sub(cfg.file_len);
    let (st, open) = site.open_uploads_agreed(Duration::from_secs(3));
    assert_eq!(
        st.open_uploads,
        open.len() as u64,
        "{}: stats and disk disagree on open uploads",
        cfg.tag
    );
    assert!(
        open.is_subset(&res.orphans),
        "{}: uploads left open that the journal knew about: {:?} (orphans {:?})",
        cfg.tag,
        open.difference(&res.orphans).collect::<Vec<_>>(),
        res.orphans
    );
    assert_eq!(
        st.initiated,
        1 + res.restarts_required,
        "{}: Initiate calls not accounted for by runs",
        cfg.tag
    );
    // A journal that lost its Completing record after the Complete went through makes the
    // next run upload again (only journal damage can do that; a cut-off tail cannot).
    assert!(
        st.completed >= 1 && st.completed <= 1 + res.restarts_required,
        "{}: {} completed uploads for {} restarts",
        cfg.tag,
        st.completed,
        res.restarts_required
    );
    if cfg.damage != Damage::Corruption {
        assert_eq!(st.completed, 1, "{}: completed uploads", cfg.tag);
        // Without corruption a run only starts over when no upload had been recorded yet, and
        // only such a restart (a kill between Initiate and its record) can orphan an upload.
        assert!(
            res.restart_reasons
                .iter()
                .all(|r| *r == Entitled::NotStarted),
            "{}: restarts for {:?}",
            cfg.tag,
            res.restart_reasons
        );
        assert!(
            res.orphans.len() as u64 <= res.restarts_required,
            "{}: {} orphans for {} restarts",
            cfg.tag,
            res.orphans.len(),
            res.restarts_required
        );
    }
    res.completed = st.completed;
    site.stop();
    res.elapsed = began.elapsed();
    res
}

fn print_loop(name: &str, cfg: &KillLoop, r: &LoopResult) {
    let per_kill = r.resent.checked_div(r.kills).unwrap_or(0);
    report!(
        "{name}: seed {}, {} MiB, {} KiB parts, jobs {}, {} B/s: {} kills ({} early, \
         {} mid-part, {} after \
         progress, {} at Complete), {} runs, {} bytes received \
         ({} re-sent, {} per kill = {:.2} parts), {} initiated ({} restarts required), \
         {} orphaned upload(s), longest restart to first request {} ms, to first new byte \
         {} ms ({} restarts killed before a byte), {:.1} s",
        cfg.seed,
        cfg.file_len / MIB,
        cfg.part / 1024,
        cfg.jobs,
        cfg.rate,
        r.kills,
        r.early_kills,
        r.mid_kills,
        r.progress_kills,
        r.complete_kills,
        r.runs,
        r.bytes_received,
        r.resent,
        per_kill,
        per_kill as f64 / cfg.part as f64,
        r.initiated,
        r.restarts_required,
        r.orphans.len(),
        r.max_first_request.as_millis(),
        r.max_first_byte.as_millis(),
        r.unmeasured,
        r.elapsed.as_secs_f64()
    );
    if !r.orphans.is_empty() {
        report!(
            "{name}: WARNING: {} upload(s) left open on the server that no journal names \
             (a kill or damage lost the upload id; ossup does not list uploads to find them)",
            r.orphans.len()
        );
    }
}

fn run_kill_loop(tag: &'static str, jobs: u32, mid_pct: u64, seed: u64) {
    let cfg = KillLoop {
        tag,
        seed: harness::seed(seed),
        file_len: 64 * MIB,
        part: MIB,
        jobs,
        max_kills: 40,
        early_pct: 15,
        mid_pct,
        kill_at_complete: true,
        damage: Damage::None,
        rate: 4 * MIB,
        time_limit: Duration::from_secs(150),
    };
    let r = kill_loop(&cfg);
    print_loop(tag, &cfg, &r);
    assert!(r.kills >= 30, "{tag}: only {} kills", r.kills);
    let bound =
        cfg.file_len + r.kills * cfg.jobs as u64 * cfg.part + (r.kills + 1) * COMPLETE_XML_SLACK;
    assert!(
        r.bytes_received <= bound,
        "{tag}: server received {} bytes, more than file + kills x jobs x part = {bound}",
        r.bytes_received
    );
}

/// Torture 1: SIGKILL at >= 30 seeded moments, one job.
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn kill_loop_jobs1() {
    run_kill_loop("kill-j1", 1, 35, 0x1111);
}

/// Torture 1: SIGKILL at >= 30 seeded moments, four jobs.
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn kill_loop_jobs4() {
    // Four parts complete together after a restart, so more kills land mid-part: without
    // them the upload would be done in fewer than 30 runs.
    run_kill_loop("kill-j4", 4, 50, 0x4444);
}

fn damage_counts(r: &LoopResult) -> Vec<(&'static str, usize)> {
    let mut counts: Vec<(&'static str, usize)> = Vec::new();
    for d in &r.damages {
        match counts.iter_mut().find(|(k, _)| k == d) {
            Some((_, n)) => *n += 1,
            None => counts.push((d, 1)),
        }
    }
    counts
}

/// Torture 2a, power cuts: after each SIGKILL the journal gets what a power cut can leave: a
/// torn append, a zero-filled or garbage tail, or (if no upload was started yet) no journal.
/// Every run resumes or starts cleanly, no upload id is lost, the object is always right.
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn power_cut_torn_journal() {
    let cfg = KillLoop {
        tag: "power",
        seed: harness::seed(0x9009),
        file_len: 24 * MIB,
        part: MIB,
        jobs: 2,
        max_kills: 20,
        early_pct: 30,
        mid_pct: 30,
        kill_at_complete: true,
        damage: Damage::PowerCut,
        rate: 4 * MIB,
        time_limit: Duration::from_secs(90),
    };
    let r = kill_loop(&cfg);
    print_loop("power", &cfg, &r);
    report!("power: journal damage applied: {:?}", damage_counts(&r));
    assert!(r.kills >= 15, "power: only {} kills", r.kills);
    assert!(
        r.damages.iter().any(|d| *d != "none"),
        "power: no damage was ever applied"
    );
    let bound =
        cfg.file_len + r.kills * cfg.jobs as u64 * cfg.part + (r.kills + 1) * COMPLETE_XML_SLACK;
    assert!(
        r.bytes_received <= bound,
        "power: server received {} bytes, more than file + kills x jobs x part = {bound}",
        r.bytes_received
    );
}

/// Torture 2b, corruption beyond a power cut: after each SIGKILL the journal is truncated
/// anywhere, bit-flipped anywhere or (when it holds no parts) deleted. Every run still resumes or
/// starts cleanly, nothing panics and the object is always right; an upload whose id the
/// journal lost is left open (counted and printed).
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn power_cut_corrupt_journal() {
    let cfg = KillLoop {
        tag: "corrupt",
        seed: harness::seed(0xC0C0),
        file_len: 24 * MIB,
        part: MIB,
        jobs: 2,
        max_kills: 20,
        early_pct: 30,
        mid_pct: 30,
        kill_at_complete: true,
        damage: Damage::Corruption,
        rate: 8 * MIB,
        time_limit: Duration::from_secs(90),
    };
    let r = kill_loop(&cfg);
    print_loop("corrupt", &cfg, &r);
    report!(
        "corrupt: journal damage applied: {:?}; restarts because the journal was {:?}; {} uploads \
         completed (more than 1: a damaged journal forgot a finished Complete)",
        damage_counts(&r),
        r.restart_reasons,
        r.completed
    );
    assert!(r.kills >= 15, "corrupt: only {} kills", r.kills);
    assert!(
        r.damages.iter().any(|d| *d != "none"),
        "corrupt: no damage was ever applied"
    );
    // Each Initiate may cost a whole re-upload (the old parts are out of reach); besides
    // that, only the parts in flight at each kill may be sent again.
    let bound = r.initiated * cfg.file_len
        + r.kills * cfg.jobs as u64 * cfg.part
        + (r.kills + 1) * COMPLETE_XML_SLACK;
    assert!(
        r.bytes_received <= bound,
        "corrupt: server received {} bytes, more than {bound}",
        r.bytes_received
    );
}

/// One upload against a server that injects faults.
fn faulty_server_run(tag: &'static str, jobs: u32, seed: u64) {
    let began = Instant::now();
    let faults = Faults {
        rate: 0.2,
        seed,
        kinds: FaultKind::ALL.to_vec(),
        stall_ms: 3000,
        reset_after_bytes: 64 * 1024,
    };
    let site = Site::start(tag, faults, 0);
    let src = site.root.path.join("source.bin");
    let data = make_file(&src, 16 * MIB, seed);
    let key = format!("{tag}.bin");
    let jobs_s = jobs.to_string();
    let args = [
        "--part-size",
        "256KiB",
        "--jobs",
        &jobs_s,
        "--idle-timeout",
        "2s",
        "--retry-for",
        "60s",
        "-q",
    ];
    let mut p = Proc::spawn(
        site.upload_cmd(&src, &key, site.addr(), &args),
        &site.root.path.join("stderr.txt"),
    );
    let status = p.wait(Duration::from_secs(90), tag);
    p.assert_no_panic(tag);
    assert_eq!(
        status.code(),
        Some(0),
        "{tag}: {}; stderr:\n{}",
        describe(&status),
        p.stderr_tail()
    );
    let st = site.settle(Duration::from_millis(20), Duration::from_secs(5));
    site.assert_object(&key, &data);
    assert!(
        st.faults_injected > 0,
        "{tag}: no fault was injected ({st:?})"
    );
    assert_eq!(st.open_uploads, 0, "{tag}: uploads left open");
    assert_eq!(st.initiated, 1, "{tag}: more than one upload initiated");
    assert!(
        site.journals().is_empty(),
        "{tag}: journal left after success"
    );
    report!(
        "{tag}: 16 MiB in 256 KiB parts, jobs {jobs}, fault rate 0.2, seed {seed}: {} faults \
         injected, {} requests, {} parts stored, \
         {} bytes received, done in {:.1} s",
        st.faults_injected,
        st.requests,
        st.parts_stored,
        st.bytes_received,
        began.elapsed().as_secs_f64()
    );
}

/// Torture 3: A server that answers 503, resets mid-body, stalls past the idle timeout, drops
/// answers and loses the answer to Complete.
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn faulty_server() {
    faulty_server_run("faults-j1", 1, harness::seed(0x3131));
    faulty_server_run("faults-j4", 4, harness::seed(0x3434));
}

/// Torture 4a: a network that resets connections and stalls them (longer than the idle
/// timeout).
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn faulty_network_resets_and_stalls() {
    let began = Instant::now();
    let seed = harness::seed(0x4A4A);
    let site = Site::start("net", Faults::default(), 0);
    let src = site.root.path.join("source.bin");
    let data = make_file(&src, 16 * MIB, seed);
    let mut rng = Rng::new(seed);
    // A budget of faults, spent on most new connections at a random point of their byte
    // stream (keep-alive means few connections, each carrying several parts).
    let (mut resets_left, mut stalls_left) = (8u64, 4u64);
    let mut proxy = Proxy::start(site.addr(), move |_| {
        let left = resets_left + stalls_left;
        if left == 0 || rng.chance(15, 100) {
            return Mode::Pass;
        }
        let at = rng.range(0, 3 * MIB);
        if rng.range(1, left) <= resets_left {
            resets_left -= 1;
            Mode::Reset(at)
        } else {
            stalls_left -= 1;
            Mode::Stall(at, 3000)
        }
    });
    let args = [
        "--part-size",
        "1MiB",
        "--jobs",
        "2",
        "--idle-timeout",
        "2s",
        "--retry-for",
        "60s",
        "-q",
    ];
    let mut p = Proc::spawn(
        site.upload_cmd(&src, "net.bin", proxy.addr(), &args),
        &site.root.path.join("stderr.txt"),
    );
    let status = p.wait(Duration::from_secs(120), "net");
    p.assert_no_panic("net");
    assert_eq!(
        status.code(),
        Some(0),
        "net: {}; stderr:\n{}",
        describe(&status),
        p.stderr_tail()
    );
    let st = site.settle(Duration::from_millis(20), Duration::from_secs(5));
    site.assert_object("net.bin", &data);
    let ps = proxy.stats();
    let (conns, resets, stalls) = (
        ps.connections.load(std::sync::atomic::Ordering::Relaxed),
        ps.resets.load(std::sync::atomic::Ordering::Relaxed),
        ps.stalls.load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(
        resets > 0 && stalls > 0,
        "net: the proxy did not both reset and stall ({resets}, {stalls})"
    );
    assert_eq!(st.open_uploads, 0, "net: uploads left open");
    proxy.stop();
    report!(
        "net: 16 MiB, jobs 2, idle timeout 2s, seed {seed}: {conns} connections, {resets} reset, \
         {stalls} stalled \
         3 s; {} bytes received; done in {:.1} s",
        st.bytes_received,
        began.elapsed().as_secs_f64()
    );
}

/// Torture 4b: a 20 KB/s link: an idle timeout (5 s) shorter than one part's transfer time
/// (100 KiB at 20 KB/s is 5.1 s) must not stop the upload: idle, not total, timeouts.
///
/// The kernel takes a whole part into the socket send buffer at once (up to `tcp_wmem` max,
/// 4 MiB), so the last write returns early and the answer comes only after the part drained
/// through the link. Before commit 10e56dc the wait for the answer was bounded by the idle
/// timeout alone and this test failed (exit 75, every part stored by the server and sent
/// again); now the wait allows `idle + min(body, 4 MiB) / 16 KiB/s`. Links slower than that
/// floor still fail the same way (8 KB/s with these parts: exit 75).
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn faulty_network_throttled() {
    let began = Instant::now();
    let site = Site::start("slow", Faults::default(), 0);
    let src = site.root.path.join("source.bin");
    let data = make_file(&src, 400 * 1024, harness::seed(0x4B4B));
    let mut proxy = Proxy::start(site.addr(), |_| Mode::Throttle(20_000));
    let args = [
        "--part-size",
        "100KiB",
        "--threshold",
        "100KiB",
        "--jobs",
        "1",
        "--idle-timeout",
        "5s",
        "--retry-for",
        "20s",
        "-q",
    ];
    let mut p = Proc::spawn(
        site.upload_cmd(&src, "slow.bin", proxy.addr(), &args),
        &site.root.path.join("stderr.txt"),
    );
    let status = p.wait(Duration::from_secs(90), "slow");
    p.assert_no_panic("slow");
    let st = site.settle(Duration::from_millis(20), Duration::from_secs(5));
    report!(
        "slow: 400 KiB at 20 KB/s, 100 KiB parts, idle timeout 5s: {}, {} requests, \
         {} parts stored, \
         {} bytes received, {:.1} s",
        describe(&status),
        st.requests,
        st.parts_stored,
        st.bytes_received,
        began.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "slow: {} ({} parts stored by the server, yet the client timed out waiting for their \
         answers: the idle timer runs while the part drains from the socket buffers); stderr:\n{}",
        describe(&status),
        st.parts_stored,
        p.stderr_tail()
    );
    site.assert_object("slow.bin", &data);
    assert_eq!(st.open_uploads, 0, "slow: uploads left open");
    // Each part went once, at link speed: no timeout fired although each took over 5 s.
    assert_eq!(st.parts_stored, 4, "slow: parts were sent again");
    assert!(
        began.elapsed() >= Duration::from_secs(19),
        "slow: the proxy did not throttle"
    );
    proxy.stop();
}

/// Torture 4c: what the library guarantees today on a throttled link: a part whose transfer
/// takes 2.5 times the idle timeout completes, as long as the socket buffers drain within the idle
/// timeout (4 MB/s through the proxy, 24 MiB parts of 6.3 s each, idle timeout 2.5 s).
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn throttled_link_idle_not_total() {
    let began = Instant::now();
    let site = Site::start("paced", Faults::default(), 0);
    let src = site.root.path.join("source.bin");
    let len = 48 * MIB;
    let data = make_file(&src, len, harness::seed(0x4C4C));
    let mut proxy = Proxy::start(site.addr(), |_| Mode::Throttle(4_000_000));
    let args = [
        "--part-size",
        "24MiB",
        "--threshold",
        "24MiB",
        "--jobs",
        "1",
        "--idle-timeout",
        "2500ms",
        "--retry-for",
        "30s",
        "-q",
    ];
    let mut p = Proc::spawn(
        site.upload_cmd(&src, "paced.bin", proxy.addr(), &args),
        &site.root.path.join("stderr.txt"),
    );
    let status = p.wait(Duration::from_secs(90), "paced");
    p.assert_no_panic("paced");
    let st = site.settle(Duration::from_millis(20), Duration::from_secs(5));
    let took = began.elapsed();
    report!(
        "paced: 48 MiB at 4 MB/s, 24 MiB parts, idle timeout 2.5s: {}, {} requests, \
         {} parts stored, \
         {} bytes received, {:.1} s",
        describe(&status),
        st.requests,
        st.parts_stored,
        st.bytes_received,
        took.as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "paced: {}; stderr:\n{}",
        describe(&status),
        p.stderr_tail()
    );
    site.assert_object("paced.bin", &data);
    // No part was sent twice: no timeout fired although each part took over 6 s.
    assert_eq!(st.parts_stored, 2, "paced: parts were sent again");
    assert!(
        st.bytes_received <= len + COMPLETE_XML_SLACK,
        "paced: bytes sent again"
    );
    assert!(
        took >= Duration::from_secs(12),
        "paced: the proxy did not throttle ({took:?})"
    );
    assert_eq!(st.open_uploads, 0, "paced: uploads left open");
    proxy.stop();
}

/// A lost answer to InitiateMultipartUpload (the server created the upload, the client never
/// heard): the client retries and must not leave the first upload behind.
///
/// Fails with the current library: the retried Initiate creates a second upload and the first
/// stays open on the server for good (ossup never lists uploads; nothing names the first id).
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn lost_initiate_answer_leaves_no_stale_upload() {
    let began = Instant::now();
    let site = Site::start("lost-init", Faults::default(), 0);
    let src = site.root.path.join("source.bin");
    let data = make_file(&src, 4 * MIB, harness::seed(0x1717));
    // The first connection carries the Initiate; its answer is swallowed.
    let mut proxy = Proxy::start(site.addr(), |i| {
        if i == 0 {
            Mode::Mute(3000)
        } else {
            Mode::Pass
        }
    });
    let args = [
        "--part-size",
        "1MiB",
        "--threshold",
        "1MiB",
        "--idle-timeout",
        "2s",
        "--retry-for",
        "30s",
        "-q",
    ];
    let mut p = Proc::spawn(
        site.upload_cmd(&src, "lost-init.bin", proxy.addr(), &args),
        &site.root.path.join("stderr.txt"),
    );
    let status = p.wait(Duration::from_secs(60), "lost-init");
    p.assert_no_panic("lost-init");
    let st = site.settle(Duration::from_millis(20), Duration::from_secs(5));
    proxy.stop();
    report!(
        "lost-init: answer to the first Initiate lost: {}, {} initiated, {} completed, {} left \
         open {:?}; {:.1} s",
        describe(&status),
        st.initiated,
        st.completed,
        st.open_uploads,
        site.open_upload_ids(),
        began.elapsed().as_secs_f64()
    );
    assert_eq!(
        status.code(),
        Some(0),
        "lost-init: {}; stderr:\n{}",
        describe(&status),
        p.stderr_tail()
    );
    site.assert_object("lost-init.bin", &data);
    assert!(
        st.initiated >= 2,
        "lost-init: the answer was not lost (test setup)"
    );
    assert_eq!(
        st.open_uploads, 0,
        "lost-init: the upload whose Initiate answer was lost is left open on the server"
    );
}

/// One skew case: first run learns the offset and is killed after some parts; the restarted
/// run must sign correctly from its first request.
fn skew_case(tag: &'static str, skew: i64, seed: u64) {
    let began = Instant::now();
    let site = Site::start(tag, Faults::default(), skew);
    let src = site.root.path.join("source.bin");
    let data = make_file(&src, 8 * MIB, seed);
    let key = format!("{tag}.bin");
    let mut rng = Rng::new(seed);
    let args = [
        "--part-size",
        "1MiB",
        "--jobs",
        "1",
        "--limit-rate",
        "4MiB/s",
        "--retry-for",
        "60s",
    ];
    let mut q_args = args.to_vec();
    q_args.push("-q");
    let err1 = site.root.path.join("stderr1.txt");
    let mut p = Proc::spawn(site.upload_cmd(&src, &key, site.addr(), &q_args), &err1);
    let ok = poll_until(Duration::from_secs(30), || {
        site.stats().parts_stored >= 3 || p.try_wait().is_some()
    });
    assert!(ok, "{tag}: no progress; stderr:\n{}", p.stderr_tail());
    std::thread::sleep(Duration::from_millis(rng.range(0, 150)));
    let s1 = p.kill();
    p.assert_no_panic(tag);
    assert!(
        killed(&s1),
        "{tag}: first run ended before the kill: {}",
        describe(&s1)
    );
    let e1 = p.stderr();
    assert!(
        e1.contains("clock corrected by"),
        "{tag}: first run did not correct its clock:\n{e1}"
    );
    let j = site.journal().expect("journal after kill");
    let v = view_journal(&j);
    let off = v
        .clock_offset
        .expect("clock offset recorded in the journal");
    assert!(
        (off - skew).abs() <= 2,
        "{tag}: recorded offset {off}, server skew {skew}"
    );
    let base = site.settle(Duration::from_millis(20), Duration::from_secs(2));

    let mut p2 = Proc::spawn(
        site.upload_cmd(&src, &key, site.addr(), &args),
        &site.root.path.join("stderr2.txt"),
    );
    let s2 = p2.wait(Duration::from_secs(60), tag);
    p2.assert_no_panic(tag);
    assert_eq!(
        s2.code(),
        Some(0),
        "{tag}: restart {}; stderr:\n{}",
        describe(&s2),
        p2.stderr_tail()
    );
    let after = site.settle(Duration::from_millis(20), Duration::from_secs(2));
    site.assert_object(&key, &data);
    let e2 = p2.stderr();
    assert!(
        e2.contains(&format!("using the clock offset of {off} s")),
        "{tag}: restart did not use the recorded offset:\n{e2}"
    );
    assert!(
        !e2.contains("clock corrected"),
        "{tag}: restart had to correct its clock again:\n{e2}"
    );
    // Every request of the restarted run did something: one ListParts, the parts it stored,
    // one Complete. A RequestTimeTooSkewed rejection would be one more request.
    let requests = after.requests - base.requests;
    let parts = after.parts_stored - base.parts_stored;
    let completes = after.completed - base.completed;
    assert_eq!(completes, 1, "{tag}: restart did not complete once");
    assert_eq!(
        requests,
        1 + parts + completes,
        "{tag}: restart made {requests} requests for 1 ListParts + {parts} parts + 1 Complete: \
         some were rejected"
    );
    assert_eq!(after.open_uploads, 0, "{tag}: uploads left open");
    report!(
        "{tag}: server clock {skew:+} s: offset {off} s recorded; restart made {requests} requests \
         (1 ListParts, {parts} parts, 1 Complete, 0 rejected); {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

/// Torture 5: server clock +2 h, -2 h, and 20 days ahead (a board clock restored from a
/// stale save). A client clock in 1970 cannot be faked here: the server would then name a
/// time decades ahead of this machine's clock, which ossup rightly refuses to believe (issue
/// 11 item 8); that case is unit-tested in `proto::upload` and `proto::time`.
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn clock_skew_with_restart() {
    skew_case("skew-plus2h", 7200, harness::seed(0x5151));
    skew_case("skew-minus2h", -7200, harness::seed(0x5252));
    skew_case("skew-plus20d", 20 * 86_400, harness::seed(0x5353));
}

/// Torture 6: SIGTERM and SIGINT stop the upload within 2 s; the journal is consistent and
/// the next run resumes.
#[test]
#[ignore = "torture: cargo test --release --test torture -- --ignored --test-threads=1"]
fn signals_stop_quickly_and_resume() {
    let began = Instant::now();
    let site = Site::start("signals", Faults::default(), 0);
    let src = site.root.path.join("source.bin");
    let len = 16 * MIB;
    let data = make_file(&src, len, harness::seed(0x6666));
    let args = [
        "--part-size",
        "1MiB",
        "--jobs",
        "2",
        "--limit-rate",
        "4MiB/s",
        "--retry-for",
        "60s",
        "-q",
    ];
    let mut done_before = 0u64;
    for (i, (sig, num)) in [("TERM", 15), ("INT", 2)].into_iter().enumerate() {
        let base = site.settle(Duration::from_millis(20), Duration::from_secs(2));
        let mut p = Proc::spawn(
            site.upload_cmd(&src, "sig.bin", site.addr(), &args),
            &site.root.path.join(format!("stderr{i}.txt")),
        );
        let ok = poll_until(Duration::from_secs(30), || {
            site.stats().parts_stored >= base.parts_stored + 3 || p.try_wait().is_some()
        });
        assert!(ok, "signals: no progress; stderr:\n{}", p.stderr_tail());
        let t = Instant::now();
        p.signal(sig);
        let s = p.wait(Duration::from_secs(10), "signals");
        let took = t.elapsed();
        p.assert_no_panic("signals");
        use std::os::unix::process::ExitStatusExt as _;
        assert!(
            s.signal() == Some(num) || matches!(s.code(), Some(75 | 130 | 143)),
            "signals: SIG{sig} gave {}; stderr:\n{}",
            describe(&s),
            p.stderr_tail()
        );
        assert!(
            took <= Duration::from_secs(2),
            "signals: SIG{sig} took {took:?} to stop ossup"
        );
        let j = site.journal().expect("journal after the signal");
        let v = view_journal(&j);
        assert!(
            v.readable && v.clean,
            "signals: journal after SIG{sig} is damaged: {v:?}"
        );
        assert!(v.current.is_some(), "signals: no upload recorded");
        assert!(
            v.parts_done.len() as u64 > done_before,
            "signals: no new part recorded before SIG{sig} ({v:?})"
        );
        done_before = v.parts_done.len() as u64;
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_ossup"))
            .arg("status")
            .arg("--checkpoint-dir")
            .arg(&site.ckpt_dir)
            .output()
            .expect("ossup status");
        let out = String::from_utf8_lossy(&status.stdout);
        assert!(
            out.contains(&format!("{done_before}/16 parts")) && out.contains("stopped"),
            "signals: ossup status disagrees with the journal ({done_before} parts):\n{out}"
        );
        report!(
            "signals: SIG{sig} stopped ossup in {} ms ({}); journal clean with \
             {done_before}/16 parts",
            took.as_millis(),
            describe(&s)
        );
    }
    let base = site.settle(Duration::from_millis(20), Duration::from_secs(2));
    let mut p = Proc::spawn(
        site.upload_cmd(&src, "sig.bin", site.addr(), &args),
        &site.root.path.join("stderr-final.txt"),
    );
    let s = p.wait(Duration::from_secs(60), "signals");
    p.assert_no_panic("signals");
    assert_eq!(
        s.code(),
        Some(0),
        "signals: final run {}; stderr:\n{}",
        describe(&s),
        p.stderr_tail()
    );
    let after = site.settle(Duration::from_millis(20), Duration::from_secs(2));
    site.assert_object("sig.bin", &data);
    let sent = after.bytes_received - base.bytes_received;
    let bound = (len - done_before * MIB) + 2 * MIB + COMPLETE_XML_SLACK;
    assert!(
        sent <= bound,
        "signals: resumed run sent {sent} bytes, more than {bound}"
    );
    assert_eq!(
        after.initiated, 1,
        "signals: the resumed runs initiated a new upload"
    );
    assert_eq!(after.open_uploads, 0, "signals: uploads left open");
    report!(
        "signals: final run sent {sent} bytes for {} missing parts; {:.1} s",
        16 - done_before,
        began.elapsed().as_secs_f64()
    );
}

//! The `ossup` command: parse, run on `async_io::block_on`, and turn every outcome into one
//! line a person can act on plus an exit code a supervisor can act on (sysexits).
//!
//! Owns: the CLI front end, logging setup and progress display. Must not: contain upload
//! logic (the library does that) or call `proto` beyond reading journals for `ossup status`.

mod args;
mod board;
mod compress;
mod progress;
mod watch;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use args::{BuildError, Cli};
use ossup::error::exit;

/// A minimal `log` backend: plain lines on stderr with the level (journald adds timestamps).
struct Logger {
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= self.level
            && (m.target().starts_with("ossup") || m.level() <= log::Level::Warn)
    }

    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            let level = match r.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warning",
                log::Level::Info => "info",
                log::Level::Debug => "debug",
                log::Level::Trace => "trace",
            };
            progress::clear_line();
            let _ = writeln!(std::io::stderr(), "ossup: {level}: {}", r.args());
        }
    }

    fn flush(&self) {}
}

fn init_log(quiet: bool, verbose: u8) {
    let level = match (quiet, verbose) {
        (true, _) => log::LevelFilter::Warn,
        (false, 0) => log::LevelFilter::Info,
        (false, 1) => log::LevelFilter::Debug,
        (false, _) => log::LevelFilter::Trace,
    };
    let logger: &'static Logger = Box::leak(Box::new(Logger { level }));
    if log::set_logger(logger).is_ok() {
        log::set_max_level(level);
    }
}

/// Prints the one-line error and returns its exit code.
fn fail(msg: &str, hint: &str, code: u8) -> ExitCode {
    progress::clear_line();
    if hint.is_empty() {
        eprintln!("ossup: error: {msg}");
    } else {
        eprintln!("ossup: error: {msg}; {hint}");
    }
    ExitCode::from(code)
}

fn build_fail(e: BuildError) -> ExitCode {
    match e {
        BuildError::Usage(m) => fail(&m, "see ossup --help", exit::USAGE),
        BuildError::Config(m) => {
            let hint = if m.starts_with("credentials file") {
                "fix the file, or the agent that writes it"
            } else if m.contains("credentials") {
                "export them in the environment (see ossup --help)"
            } else if m.contains("board") {
                "fix the board config, or pass the value as a flag"
            } else {
                "fix the configuration"
            };
            fail(&m, hint, exit::CONFIG)
        }
    }
}

fn main() -> ExitCode {
    let cli = match args::parse(std::env::args_os().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => return fail(&e, "see ossup --help", exit::USAGE),
    };
    match cli {
        Cli::Help => {
            print!("{}", args::USAGE);
            ExitCode::SUCCESS
        }
        Cli::Version => {
            println!("ossup {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cli::Upload {
            file,
            dest,
            common,
            compress,
        } => {
            init_log(common.quiet, common.verbose);
            let mut cfg = match args::build_config(&common) {
                Ok(c) => c,
                Err(e) => return build_fail(e),
            };
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let dest = match ossup::config::Destination::parse_for_file(&dest, &name) {
                Ok(d) => d,
                Err(e) => return build_fail(args::BuildError::Usage(e.0)),
            };
            let mode = compress::take_mode(&mut cfg);
            if common.content_encoding.is_some() && !compress {
                return fail(
                    "--content-encoding applies to compressed uploads only",
                    "add --compress, or drop --content-encoding",
                    exit::USAGE,
                );
            }
            let staging = cfg.checkpoint_dir.join(ossup::io::compress::STAGING_DIR);
            let (cfg, file_sent, dest, staged) = if compress {
                let rel = compress::upload_rel(&file);
                match compress::prepare(&staging, &rel, &file, dest, &cfg, mode) {
                    Ok((p, d, c)) => (c, p.clone(), d, Some((p, rel))),
                    Err(e) => {
                        return fail(
                            &format!("cannot compress {}: {e}", file.display()),
                            "check the file and the checkpoint dir",
                            e.exit_code(),
                        )
                    }
                }
            } else {
                (cfg, file.clone(), dest, None)
            };
            let mut bar = progress::Progress::new(common.quiet);
            let r =
                ossup::upload_file_blocking(&cfg, &file_sent, &dest, &mut |d, t| bar.update(d, t));
            bar.finish();
            if let (Ok(_), Some((_, rel))) = (&r, &staged) {
                // Verified on the server: the staging file has done its job.
                if let Err(e) = ossup::io::compress::remove(&staging, rel) {
                    log::warn!("cannot remove the staging file of {}: {e}", file.display());
                }
            }
            match r {
                Ok(u) => {
                    log::info!(
                        "uploaded {} to oss://{}/{} ({} parts, {} resumed, crc64 {})",
                        file.display(),
                        dest.bucket,
                        dest.key,
                        u.parts,
                        u.parts_resumed,
                        u.crc64
                    );
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string(), e.hint(), e.exit_code()),
            }
        }
        Cli::Abort {
            file,
            dest,
            common,
            forget,
        } => {
            init_log(common.quiet, common.verbose);
            let cfg = match args::build_config(&common) {
                Ok(c) => c,
                Err(e) => return build_fail(e),
            };
            let dest = match args::destination(&dest) {
                Ok(d) => d,
                Err(e) => return build_fail(e),
            };
            if forget {
                return match async_io::block_on(ossup::io::driver::forget(&cfg, &file, &dest)) {
                    Ok(f) => {
                        if !f.aborted.is_empty() {
                            log::info!(
                                "aborted {} upload(s): {}",
                                f.aborted.len(),
                                f.aborted.join(", ")
                            );
                        }
                        if !f.forgotten.is_empty() {
                            log::warn!(
                                "forgot {} upload(s) the server did not abort: {} (they may hold storage on the server until a lifecycle rule removes them)",
                                f.forgotten.len(),
                                f.forgotten.join(", ")
                            );
                        }
                        if f.aborted.is_empty() && f.forgotten.is_empty() {
                            log::info!(
                                "no unfinished upload of {} to {}",
                                file.display(),
                                dest.key
                            );
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => fail(&e.to_string(), e.hint(), e.exit_code()),
                };
            }
            match async_io::block_on(ossup::io::driver::abort(&cfg, &file, &dest)) {
                Ok(ids) if ids.is_empty() => {
                    log::info!("no unfinished upload of {} to {}", file.display(), dest.key);
                    ExitCode::SUCCESS
                }
                Ok(ids) => {
                    log::info!("aborted {} upload(s): {}", ids.len(), ids.join(", "));
                    ExitCode::SUCCESS
                }
                Err(e) => fail(&e.to_string(), e.hint(), e.exit_code()),
            }
        }
        Cli::Status {
            checkpoint_dir,
            verbose,
        } => {
            init_log(false, verbose);
            let dir = checkpoint_dir.unwrap_or_else(args::default_checkpoint_dir);
            status(&dir)
        }
        Cli::Watch {
            dir,
            dest,
            mut watch,
            common,
        } => {
            init_log(common.quiet, common.verbose);
            let board = match args::load_board(&common) {
                Ok(b) => b,
                Err(e) => return build_fail(e),
            };
            let cfg = match args::build_config_with(&common, &board) {
                Ok(c) => c,
                Err(e) => return build_fail(e),
            };
            if watch.compress.is_empty() {
                watch.compress = board.compress.clone();
            }
            watch::main(cfg, &dir, &dest, &watch, common.quiet)
        }
        Cli::Serve(s) => serve(s),
    }
}

/// `ossup status`: one line per journal in the checkpoint directory.
fn status(dir: &Path) -> ExitCode {
    use ossup::io::journal::{Journal, Lock};
    use ossup::proto::checkpoint::Record;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("no unfinished uploads ({} does not exist)", dir.display());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            return fail(
                &format!("cannot read {}: {e}", dir.display()),
                "check --checkpoint-dir",
                exit::CANTCREAT,
            )
        }
    };
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ossup"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        println!("no unfinished uploads in {}", dir.display());
    }
    for p in paths {
        let holder = Lock::is_held(&p);
        // Read-only: status never truncates a torn tail (the holder of the lock does that).
        match Journal::read(&p) {
            Ok(Some(Ok(r))) => {
                let id = &r.identity;
                let total = id.file_len.div_ceil(id.part_size.max(1));
                let mut done = std::collections::BTreeSet::new();
                let mut upload = None;
                let mut pending_aborts: Vec<String> = Vec::new();
                for rec in &r.records {
                    match rec {
                        Record::Started { upload_id } => {
                            upload = Some(upload_id.clone());
                            done.clear();
                        }
                        Record::PartDone { n, .. } => {
                            done.insert(*n);
                        }
                        Record::AbortPending { upload_id }
                            if !pending_aborts.contains(upload_id) =>
                        {
                            pending_aborts.push(upload_id.clone());
                        }
                        Record::Aborted { upload_id } => pending_aborts.retain(|u| u != upload_id),
                        _ => {}
                    }
                }
                let state = match holder {
                    Some(0) => "in progress".to_string(),
                    Some(pid) => format!("in progress (PID {pid})"),
                    None => "stopped".to_string(),
                };
                println!(
                    "{} -> oss://{}/{}  {}/{} parts  {}  upload {}{}",
                    id.path,
                    id.bucket,
                    id.key,
                    done.len(),
                    total,
                    state,
                    upload.as_deref().unwrap_or("(not started)"),
                    if !pending_aborts.is_empty() {
                        format!(
                            "  {} stale upload(s) to abort: {}",
                            pending_aborts.len(),
                            pending_aborts.join(" ")
                        )
                    } else {
                        String::new()
                    }
                );
            }
            Ok(Some(Err(e))) => println!("{}: unreadable checkpoint ({e:?})", p.display()),
            Ok(None) => {}
            Err(e) => println!("{}: {e}", p.display()),
        }
    }
    // Per-destination pending aborts: uploads the server refused to abort (issue 10 item 5).
    let mut records: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "aborts"))
                .collect()
        })
        .unwrap_or_default();
    records.sort();
    for p in records {
        match ossup::io::journal::read_aborts(&p) {
            Ok((dest, ids)) if !ids.is_empty() => println!(
                "{dest}  {} upload(s) still to abort (refused earlier; retried by the next upload): {}",
                ids.len(),
                ids.join(" ")
            ),
            Ok(_) => {}
            Err(e) => println!("{}: {e}", p.display()),
        }
    }
    // Files compressed for upload (`--compress`) and not yet verified on the server.
    let staging = dir.join(ossup::io::compress::STAGING_DIR);
    match ossup::io::compress::list(&staging) {
        Ok(files) => {
            for (name, len, complete) in files {
                println!(
                    "staged {} ({len} bytes{})",
                    staging.join(name).display(),
                    if complete {
                        ""
                    } else {
                        ", partial: redone on the next run"
                    }
                );
            }
        }
        Err(e) => println!("{}: {e}", staging.display()),
    }
    ExitCode::SUCCESS
}

#[cfg(feature = "serve")]
fn serve(s: args::ServeArgs) -> ExitCode {
    use ossup::serve::{FaultKind, Faults, Options};
    init_log(false, s.verbose);
    let usage = |m: String| fail(&m, "see ossup --help", exit::USAGE);
    let mut o = Options::new(&s.dir);
    if let Some(l) = &s.listen {
        match l.parse() {
            Ok(a) => o.listen = a,
            Err(_) => return usage(format!("--listen {l:?}: expected IP:PORT")),
        }
    }
    o.buckets = s.buckets.clone();
    if let Some(r) = &s.region {
        o.region = r.clone();
    }
    o.allow_anonymous = s.anonymous;
    o.keys_file = s.keys_file.clone();
    let id = std::env::var("OSS_ACCESS_KEY_ID")
        .ok()
        .filter(|v| !v.is_empty());
    let secret = std::env::var("OSS_ACCESS_KEY_SECRET")
        .ok()
        .filter(|v| !v.is_empty());
    o.credentials = match (id, secret) {
        (Some(access_key_id), Some(access_key_secret)) => Some(ossup::proto::sign::Credentials {
            access_key_id,
            access_key_secret,
            security_token: None,
        }),
        _ if s.anonymous || s.keys_file.is_some() => None,
        _ => {
            return fail(
                "serve needs OSS_ACCESS_KEY_ID and OSS_ACCESS_KEY_SECRET to check signatures",
                "set them, or pass --anonymous to accept unsigned requests",
                exit::CONFIG,
            )
        }
    };
    let num = |v: &Option<String>, name: &str| -> Result<Option<f64>, ExitCode> {
        match v {
            None => Ok(None),
            Some(t) => t
                .parse::<f64>()
                .map(Some)
                .map_err(|_| usage(format!("{name} {t:?}: not a number"))),
        }
    };
    let mut f = Faults::default();
    match num(&s.fault_rate, "--fault-rate") {
        Ok(Some(r)) if (0.0..=1.0).contains(&r) => f.rate = r,
        Ok(Some(r)) => return usage(format!("--fault-rate {r}: must be within 0..1")),
        Ok(None) => {}
        Err(c) => return c,
    }
    match num(&s.seed, "--seed") {
        Ok(Some(v)) => f.seed = v as u64,
        Ok(None) => {}
        Err(c) => return c,
    }
    match num(&s.stall_ms, "--stall-ms") {
        Ok(Some(v)) => f.stall_ms = v as u64,
        Ok(None) => {}
        Err(c) => return c,
    }
    match num(&s.reset_after, "--reset-after") {
        Ok(Some(v)) => f.reset_after_bytes = v as u64,
        Ok(None) => {}
        Err(c) => return c,
    }
    match num(&s.skew, "--skew") {
        Ok(Some(v)) => o.skew_secs = v as i64,
        Ok(None) => {}
        Err(c) => return c,
    }
    let kinds = s
        .faults
        .as_deref()
        .unwrap_or("503,reset,stall,drop,lose-complete");
    f.kinds.clear();
    for k in kinds.split(',').map(str::trim).filter(|k| !k.is_empty()) {
        f.kinds.push(match k {
            "503" => FaultKind::Status503,
            "reset" => FaultKind::ResetMidBody,
            "stall" => FaultKind::Stall,
            "drop" => FaultKind::DropResponse,
            "lose-complete" => FaultKind::LoseComplete,
            other => return usage(format!("--faults: unknown kind {other:?}")),
        });
    }
    o.faults = f;
    o.tls = match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        _ => return usage("--tls-cert and --tls-key go together".into()),
    };
    match ossup::serve::run(o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(
            &format!("serve: {e}"),
            "check the directory, --listen address and TLS files",
            exit::CONFIG,
        ),
    }
}

#[cfg(not(feature = "serve"))]
fn serve(_: args::ServeArgs) -> ExitCode {
    fail(
        "this build has no `serve` (built without the serve feature)",
        "",
        exit::USAGE,
    )
}

//! Command-line parsing: flags → [`Cli`], then (with a board config and the environment) →
//! [`ossup::Config`]. Owns the CLI contract (flag names, defaults). Must not: upload anything.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use lexopt::prelude::*;
use ossup::config::{parse_duration, parse_rate, parse_size};
use ossup::proto::request::check_header_value;
use ossup::proto::sign::{Credentials, Scheme};
use ossup::{Config, Destination, Endpoint};

use crate::board::{self, Board};

/// Usage text (also the `--help` output).
pub const USAGE: &str = "\
ossup: resumable, crash-safe uploads to Alibaba Cloud OSS and S3-compatible stores

usage:
  ossup upload <FILE> oss://<BUCKET>/<KEY> [options]
  ossup watch <DIR> oss://<BUCKET>/<PREFIX>/ [watch options] [options]

destinations: oss://B/KEY is that key; oss://B/DIR/ (ending in /) means into DIR/:
  upload puts FILE at DIR/<file name>; watch always treats PREFIX as a folder
  (oss://B/in and oss://B/in/ both give in/<relative path>)
  ossup status [--checkpoint-dir DIR]
  ossup abort <FILE> oss://<BUCKET>/<KEY> [--forget] [options]
  ossup serve <DIR> [--listen 127.0.0.1:PORT] [serve options]

upload options:
  --endpoint URL        default https://oss-<region>.aliyuncs.com; http:// allowed
  --region REGION       e.g. cn-hangzhou (required for oss-v4; s3-v4 defaults to us-east-1)
  --signature SCHEME    oss-v4 (default) | s3-v4
  --path-style          force path-style addressing (automatic for IP/localhost endpoints)
  --part-size SIZE      e.g. 512KiB, 8MiB (grown automatically to fit 10,000 parts; s3-v4
                        raises it to 5MiB = 5,242,880 bytes; 5MB means 5,000,000 here)
  --allow-small-parts   s3-v4: keep a part size under 5MiB (stores that permit it, e.g. moto)
  --threshold SIZE      files smaller than this use one PutObject (default 8MiB)
  --jobs N              parts in flight (default 1)
  --checkpoint-dir DIR  default $XDG_STATE_HOME/ossup, else ~/.local/state/ossup
  --ca-file PEM         also trust these CA certificates (verification is always on)
  --proxy URL           tunnel through this HTTP(S) proxy (default: HTTPS_PROXY etc.,
                        NO_PROXY honoured);  --no-proxy  connect directly
  --content-type T      Content-Type of the object
  --meta K=V            user metadata (repeatable)
  --storage-class C     storage class;  --acl ACL  object ACL
  --retry-for DURATION  keep retrying through failures this long (default 24h; 0 = forever)
  --limit-rate RATE     bandwidth cap over all jobs, e.g. 200KiB/s
  --buffer-size SIZE    streaming buffer per job (default 64KiB)
  --connect-timeout D   default 10s;  --idle-timeout D  default 30s
  --content-md5 / --no-content-md5   send Content-MD5 per part (default: on for s3-v4)
  --compress            gzip FILE into a staging file first and upload that as KEY.gz
  --content-encoding gzip   with --compress: keep KEY, store Content-Encoding: gzip instead
  --board NAME|PATH     load a board config (flags override it)
  --wait                wait for another ossup holding this upload instead of exiting 75
  -q, --quiet           no progress output;  -v, --verbose  more log lines (-vv: debug)

watch options (the upload options apply to every file):
  --settle SECS         a file is complete once unchanged this long (default 10)
  --poll SECS           scan the directory this often (default 5)
  --done-dir DIR        move uploaded files here instead of deleting them
  --once                process what is there, then exit (0 all done, 75 some failed)
  --compress GLOB       gzip matching files before upload (repeatable; `*.log` matches the
                        name, `logs/**/*.log` the relative path); key gets `.gz`
  --follow-symlinks     also upload links to files outside DIR or owned by another user

abort options:
  --forget              also drop local records of uploads the server cannot abort (a store
                        without AbortMultipartUpload): nothing is retried for them again

serve options:
  --listen ADDR         default 127.0.0.1:0: a free port, printed at start
  --bucket NAME         create this bucket (repeatable)
  --region REGION       signing region (default cn-hangzhou)
  --anonymous           also accept unsigned requests
  --fault-rate R        inject faults into this fraction of requests (0..1)
  --faults LIST         503,reset,stall,drop,lose-complete (default all)
  --seed N, --stall-ms MS, --reset-after BYTES, --skew SECS
  --tls-cert PEM --tls-key PEM   serve HTTPS
  --keys-file PATH      accept only the keys listed there (lines: ID SECRET TOKEN|- EXPIRATION|-),
                        re-read when it changes; expired: SecurityTokenExpired (S3 ExpiredToken)

credentials: --credentials-file PATH (board key credentials_file): JSON with AccessKeyId,
  AccessKeySecret (or SecretAccessKey), SecurityToken (or SessionToken), Expiration; re-read
  when it changes, a rejected token waits for a fresh one (never 77). Otherwise the first set
  in the environment: OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET, OSS_SESSION_TOKEN; then
  ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET, ALIBABA_CLOUD_SECURITY_TOKEN;
  s3-v4 first AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN (and AWS_REGION /
  AWS_DEFAULT_REGION, AWS_ENDPOINT_URL when no flag or board key gives them)
exit codes: 0 done, 64 usage, 65 file changed or data mismatch, 66 no such file,
  73 checkpoint dir not writable, 74 read error, 75 unavailable (run again to resume),
  77 credentials rejected, 78 configuration error
";

/// Options shared by upload, abort and watch.
#[derive(Debug, Default, Clone)]
pub struct Common {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub signature: Option<String>,
    pub path_style: bool,
    pub part_size: Option<String>,
    /// `--allow-small-parts`.
    pub allow_small_parts: bool,
    pub threshold: Option<String>,
    pub jobs: Option<String>,
    pub checkpoint_dir: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    /// `--proxy URL`.
    pub proxy: Option<String>,
    /// `--no-proxy`.
    pub no_proxy: bool,
    pub content_type: Option<String>,
    pub meta: Vec<(String, String)>,
    pub storage_class: Option<String>,
    pub acl: Option<String>,
    pub retry_for: Option<String>,
    pub limit_rate: Option<String>,
    pub buffer_size: Option<String>,
    pub connect_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub content_md5: Option<bool>,
    pub content_encoding: Option<String>,
    pub board: Option<String>,
    /// `--credentials-file PATH`.
    pub credentials_file: Option<PathBuf>,
    pub wait: bool,
    pub quiet: bool,
    pub verbose: u8,
}

/// Options of `ossup serve`.
#[derive(Debug, Default, Clone)]
pub struct ServeArgs {
    pub dir: PathBuf,
    pub listen: Option<String>,
    pub buckets: Vec<String>,
    pub region: Option<String>,
    pub anonymous: bool,
    pub fault_rate: Option<String>,
    pub faults: Option<String>,
    pub seed: Option<String>,
    pub stall_ms: Option<String>,
    pub reset_after: Option<String>,
    pub skew: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// `--keys-file PATH`: accept only the temporary keys listed there.
    pub keys_file: Option<PathBuf>,
    pub verbose: u8,
}

/// Options of `ossup watch` (their values are checked by the watch module).
#[derive(Debug, Default, Clone)]
pub struct WatchArgs {
    pub settle: Option<String>,
    pub poll: Option<String>,
    pub done_dir: Option<PathBuf>,
    pub once: bool,
    /// `--compress GLOB` (repeatable).
    pub compress: Vec<String>,
    /// `--follow-symlinks`: follow links whatever their target.
    pub follow_symlinks: bool,
}

/// A parsed command line.
#[derive(Debug)]
pub enum Cli {
    Upload {
        file: PathBuf,
        dest: String,
        common: Common,
        /// `--compress`.
        compress: bool,
    },
    Abort {
        file: PathBuf,
        dest: String,
        common: Common,
        forget: bool,
    },
    Watch {
        dir: PathBuf,
        dest: String,
        watch: WatchArgs,
        common: Common,
    },
    Status {
        checkpoint_dir: Option<PathBuf>,
        verbose: u8,
    },
    Serve(ServeArgs),
    Help,
    Version,
}

fn text(v: OsString, flag: &str) -> Result<String, String> {
    v.into_string()
        .map_err(|_| format!("{flag}: not valid UTF-8"))
}

/// Parses the arguments after the program name.
pub fn parse(args: Vec<OsString>) -> Result<Cli, String> {
    let mut p = lexopt::Parser::from_args(args);
    let sub = match p.next().map_err(|e| e.to_string())? {
        None => return Err("no command given".into()),
        Some(Long("help")) | Some(Short('h')) => return Ok(Cli::Help),
        Some(Long("version")) | Some(Short('V')) => return Ok(Cli::Version),
        Some(Value(v)) => text(v, "command")?,
        Some(Long(l)) => return Err(format!("invalid option '--{l}'")),
        Some(Short(c)) => return Err(format!("invalid option '-{c}'")),
    };
    match sub.as_str() {
        "upload" | "abort" | "watch" => {
            let mut c = Common::default();
            let mut positional: Vec<OsString> = Vec::new();
            let mut w = WatchArgs::default();
            let mut compress = false;
            let mut forget = false;
            while let Some(arg) = p.next().map_err(|e| e.to_string())? {
                let flag = match arg {
                    Value(v) => {
                        positional.push(v);
                        continue;
                    }
                    Long(l) => format!("--{l}"),
                    Short(s) => format!("-{s}"),
                };
                match flag.as_str() {
                    "--settle" if sub == "watch" => {
                        w.settle = Some(text(p.value().map_err(|e| e.to_string())?, "--settle")?)
                    }
                    "--poll" if sub == "watch" => {
                        w.poll = Some(text(p.value().map_err(|e| e.to_string())?, "--poll")?)
                    }
                    "--done-dir" if sub == "watch" => {
                        w.done_dir = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
                    }
                    "--once" if sub == "watch" => w.once = true,
                    "--compress" if sub == "watch" => {
                        let g = text(p.value().map_err(|e| e.to_string())?, "--compress")?;
                        check_glob(&g)?;
                        w.compress.push(g)
                    }
                    "--compress" if sub == "upload" => compress = true,
                    "--forget" if sub == "abort" => forget = true,
                    "--follow-symlinks" if sub == "watch" => w.follow_symlinks = true,
                    "--help" | "-h" => return Ok(Cli::Help),
                    _ => common_flag(&mut p, &mut c, &flag)?,
                }
            }
            let [first, dest] = <[OsString; 2]>::try_from(positional)
                .map_err(|v| format!("{sub} takes 2 arguments (got {})", v.len()))?;
            let dest = text(dest, "destination")?;
            let first = PathBuf::from(first);
            Ok(match sub.as_str() {
                "upload" => Cli::Upload {
                    file: first,
                    dest,
                    common: c,
                    compress,
                },
                "abort" => Cli::Abort {
                    file: first,
                    dest,
                    common: c,
                    forget,
                },
                _ => Cli::Watch {
                    dir: first,
                    dest,
                    watch: w,
                    common: c,
                },
            })
        }
        "status" => {
            let mut dir = None;
            let mut verbose = 0;
            while let Some(arg) = p.next().map_err(|e| e.to_string())? {
                match arg {
                    Long("checkpoint-dir") => {
                        dir = Some(PathBuf::from(p.value().map_err(|e| e.to_string())?))
                    }
                    Short('v') | Long("verbose") => verbose += 1,
                    Long("help") | Short('h') => return Ok(Cli::Help),
                    Long(l) => return Err(format!("invalid option '--{l}'")),
                    Short(c) => return Err(format!("invalid option '-{c}'")),
                    Value(v) => {
                        return Err(format!("unexpected argument {:?}", v.to_string_lossy()))
                    }
                }
            }
            Ok(Cli::Status {
                checkpoint_dir: dir,
                verbose,
            })
        }
        "serve" => {
            let mut s = ServeArgs::default();
            let mut dir = None;
            while let Some(arg) = p.next().map_err(|e| e.to_string())? {
                let flag = match arg {
                    Value(v) if dir.is_none() => {
                        dir = Some(PathBuf::from(v));
                        continue;
                    }
                    Value(v) => {
                        return Err(format!("unexpected argument {:?}", v.to_string_lossy()))
                    }
                    Long(l) => format!("--{l}"),
                    Short(s) => format!("-{s}"),
                };
                let mut val = || -> Result<String, String> {
                    text(p.value().map_err(|e| e.to_string())?, &flag)
                };
                match flag.as_str() {
                    "--listen" => s.listen = Some(val()?),
                    "--bucket" => s.buckets.push(val()?),
                    "--region" => s.region = Some(val()?),
                    "--anonymous" => s.anonymous = true,
                    "--fault-rate" => s.fault_rate = Some(val()?),
                    "--faults" => s.faults = Some(val()?),
                    "--seed" => s.seed = Some(val()?),
                    "--stall-ms" => s.stall_ms = Some(val()?),
                    "--reset-after" => s.reset_after = Some(val()?),
                    "--skew" => s.skew = Some(val()?),
                    "--tls-cert" => s.tls_cert = Some(val()?.into()),
                    "--tls-key" => s.tls_key = Some(val()?.into()),
                    "--keys-file" => s.keys_file = Some(val()?.into()),
                    "-v" | "--verbose" => s.verbose += 1,
                    "-h" | "--help" => return Ok(Cli::Help),
                    other => return Err(format!("invalid option '{other}'")),
                }
            }
            s.dir = dir.ok_or("serve takes a directory")?;
            Ok(Cli::Serve(s))
        }
        "help" => Ok(Cli::Help),
        other => Err(format!("unknown command {other:?}")),
    }
}

fn common_flag(p: &mut lexopt::Parser, c: &mut Common, flag: &str) -> Result<(), String> {
    let mut val =
        || -> Result<String, String> { text(p.value().map_err(|e| e.to_string())?, flag) };
    match flag {
        "--endpoint" => c.endpoint = Some(val()?),
        "--region" => c.region = Some(val()?),
        "--signature" => c.signature = Some(val()?),
        "--path-style" => c.path_style = true,
        "--part-size" => c.part_size = Some(val()?),
        "--allow-small-parts" => c.allow_small_parts = true,
        "--threshold" => c.threshold = Some(val()?),
        "--jobs" | "-j" => c.jobs = Some(val()?),
        "--checkpoint-dir" => c.checkpoint_dir = Some(val()?.into()),
        "--ca-file" => c.ca_file = Some(val()?.into()),
        "--proxy" => c.proxy = Some(val()?),
        "--no-proxy" => c.no_proxy = true,
        "--content-type" => c.content_type = Some(val()?),
        "--meta" => {
            let kv = val()?;
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("--meta {kv:?}: expected K=V"))?;
            if k.is_empty()
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return Err(format!(
                    "--meta {kv:?}: the key must be letters, digits, '-' or '_'"
                ));
            }
            c.meta.push((k.to_ascii_lowercase(), v.to_string()));
        }
        "--storage-class" => c.storage_class = Some(val()?),
        "--acl" => c.acl = Some(val()?),
        "--retry-for" => c.retry_for = Some(val()?),
        "--limit-rate" => c.limit_rate = Some(val()?),
        "--buffer-size" => c.buffer_size = Some(val()?),
        "--connect-timeout" => c.connect_timeout = Some(val()?),
        "--idle-timeout" => c.idle_timeout = Some(val()?),
        "--content-md5" => c.content_md5 = Some(true),
        "--no-content-md5" => c.content_md5 = Some(false),
        "--content-encoding" => {
            let v = val()?;
            if v != "gzip" {
                return Err(format!("--content-encoding {v:?}: only gzip is supported"));
            }
            c.content_encoding = Some(v);
        }
        "--board" => c.board = Some(val()?),
        "--credentials-file" => c.credentials_file = Some(val()?.into()),
        "--wait" => c.wait = true,
        "--quiet" | "-q" => c.quiet = true,
        "--verbose" | "-v" => c.verbose += 1,
        other => return Err(format!("invalid option '{other}'")),
    }
    Ok(())
}

/// Checks a `--compress` glob (from a flag or a board file).
pub fn check_glob(g: &str) -> Result<(), String> {
    if g.is_empty()
        || g.len() > ossup::proto::staging::MAX_GLOB_LEN
        || g.chars().any(char::is_control)
    {
        return Err(format!(
            "--compress {g:?}: expected a pattern such as '*.log' (at most {} characters)",
            ossup::proto::staging::MAX_GLOB_LEN
        ));
    }
    Ok(())
}

/// A problem building the configuration: usage (64) or configuration (78).
#[derive(Debug)]
pub enum BuildError {
    /// Bad flag value: exit 64.
    Usage(String),
    /// Unusable configuration (board, credentials, environment): exit 78.
    Config(String),
}

/// The default checkpoint directory: `$XDG_STATE_HOME/ossup`, else `~/.local/state/ossup`.
pub fn default_checkpoint_dir() -> PathBuf {
    match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x).join("ossup"),
        None => match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(h) => PathBuf::from(h).join(".local/state/ossup"),
            None => PathBuf::from("/var/lib/ossup"),
        },
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Builds the upload configuration from flags, the board config (flags win) and the
/// environment (credentials only).
pub fn build_config(c: &Common) -> Result<Config, BuildError> {
    // A credential that is not UTF-8 (a file saved in another encoding) is named as such,
    // not taken for a missing one (its value is never shown).
    // The s3-v4 sets are all the sets there are.
    for v in env_sets(Scheme::S3V4).into_iter().flatten() {
        if let Err(std::env::VarError::NotUnicode(_)) = std::env::var(v) {
            return Err(BuildError::Config(format!(
                "{v} is not valid UTF-8: set it to the plain text of the credential"
            )));
        }
    }
    build_config_with(c, &load_board(c)?)
}

/// The board config `--board` names (empty without one).
pub fn load_board(c: &Common) -> Result<Board, BuildError> {
    Ok(match &c.board {
        Some(b) => {
            let path = board::locate(b).map_err(BuildError::Config)?;
            board::load(&path).map_err(BuildError::Config)?
        }
        None => Board::default(),
    })
}

/// [`build_config`] with the board already loaded.
pub fn build_config_with(c: &Common, board: &Board) -> Result<Config, BuildError> {
    let usage = BuildError::Usage;
    // A value from a flag is a usage error when bad; from a board file, a config error.
    fn pick<T>(
        flag: &Option<String>,
        board: &Option<String>,
        parse: impl Fn(&str) -> Result<T, String>,
        what: &str,
    ) -> Result<Option<T>, BuildError> {
        if let Some(v) = flag {
            return parse(v)
                .map(Some)
                .map_err(|e| BuildError::Usage(format!("{what}: {e}")));
        }
        if let Some(v) = board {
            return parse(v)
                .map(Some)
                .map_err(|e| BuildError::Config(format!("board {what}: {e}")));
        }
        Ok(None)
    }
    let size = |s: &str| parse_size(s).map_err(|e| e.0);
    let dur = |s: &str| parse_duration(s).map_err(|e| e.0);

    let scheme = match c.signature.as_deref() {
        None | Some("oss-v4") => Scheme::OssV4,
        Some("s3-v4") => Scheme::S3V4,
        Some(other) => return Err(usage(format!("--signature {other:?}: use oss-v4 or s3-v4"))),
    };
    let aws_env = |names: &[&str]| match scheme {
        Scheme::S3V4 => names.iter().find_map(|n| env(n)),
        Scheme::OssV4 => None,
    };
    let region = c
        .region
        .clone()
        .or_else(|| board.region.clone())
        .or_else(|| aws_env(&["AWS_REGION", "AWS_DEFAULT_REGION"]));
    let region = match (region, scheme) {
        (Some(r), _) => r,
        (None, Scheme::S3V4) => "us-east-1".to_string(),
        (None, Scheme::OssV4) => {
            return Err(usage(
                "--region is required (e.g. --region cn-hangzhou)".into(),
            ))
        }
    };
    let endpoint_text = c
        .endpoint
        .clone()
        .or_else(|| board.endpoint.clone())
        .or_else(|| aws_env(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]))
        .unwrap_or_else(|| format!("https://oss-{region}.aliyuncs.com"));
    let endpoint =
        Endpoint::parse(&endpoint_text).map_err(|e| match (&c.endpoint, &board.endpoint) {
            (None, Some(_)) => BuildError::Config(format!("board key endpoint: {}", e.0)),
            _ => usage(format!("--endpoint: {}", e.0)),
        })?;

    let file = c
        .credentials_file
        .clone()
        .or_else(|| board.credentials_file.clone().map(PathBuf::from));
    let (credentials, provider) = match file {
        Some(path) => {
            let src = ossup::io::credentials::FileSource::open(path)
                .map_err(|e| BuildError::Config(e.0))?;
            let creds = src.current().credentials;
            let p: std::sync::Arc<dyn ossup::io::credentials::CredentialsProvider> =
                std::sync::Arc::new(src);
            (creds, Some(p))
        }
        None => (env_credentials(scheme)?, None),
    };
    // Object header flags: checked here so the error names the flag.
    let flag_value = |flag: String, v: &Option<String>| match v.as_deref().map(check_header_value) {
        Some(Err(p)) => Err(usage(format!("{flag}: the value {p}"))),
        _ => Ok(()),
    };
    flag_value("--content-type".into(), &c.content_type)?;
    for (k, v) in &c.meta {
        flag_value(format!("--meta {k}"), &Some(v.clone()))?;
    }
    flag_value("--storage-class".into(), &c.storage_class)?;
    flag_value("--acl".into(), &c.acl)?;

    let dir = c
        .checkpoint_dir
        .clone()
        .or_else(|| board.checkpoint_dir.clone().map(PathBuf::from))
        .unwrap_or_else(default_checkpoint_dir);
    let mut cfg = Config::new(endpoint, &region, credentials, dir);
    cfg.credentials_provider = provider;
    cfg.scheme = scheme;
    cfg.path_style = c.path_style;
    if let Some(v) = pick(&c.part_size, &board.part_size, size, "part size")? {
        cfg.part_size = v;
    }
    cfg.allow_small_parts = c.allow_small_parts;
    let part_size = ossup::proto::geometry::effective_part_size(
        cfg.part_size,
        scheme == Scheme::S3V4,
        cfg.allow_small_parts,
    );
    if part_size != cfg.part_size {
        log::info!(
            "s3-v4: part size raised from {} to 5 MiB, the smallest S3 accepts for all parts but the last (--allow-small-parts keeps it)",
            cfg.part_size
        );
        cfg.part_size = part_size;
    }
    if let Some(v) = pick(&c.threshold, &board.threshold, size, "threshold")? {
        cfg.multipart_threshold = v;
    }
    let jobs_text = c.jobs.clone().or_else(|| board.jobs.map(|j| j.to_string()));
    if let Some(j) = jobs_text {
        let n: u32 = j
            .parse()
            .map_err(|_| usage(format!("--jobs {j:?}: not a number")))?;
        if n == 0 {
            return Err(usage("--jobs must be at least 1".into()));
        }
        cfg.jobs = n;
    }
    if let Some(v) = pick(&c.buffer_size, &board.buffer_size, size, "buffer size")? {
        cfg.buffer_size = usize::try_from(v).map_err(|_| usage("buffer size too large".into()))?;
    }
    if let Some(v) = pick(
        &c.limit_rate,
        &board.limit_rate,
        |s| parse_rate(s).map_err(|e| e.0),
        "rate",
    )? {
        cfg.limit_rate = Some(v);
    }
    if let Some(v) = pick(
        &c.connect_timeout,
        &board.connect_timeout,
        dur,
        "connect timeout",
    )? {
        cfg.timeouts.connect = v;
    }
    if let Some(v) = pick(&c.idle_timeout, &board.idle_timeout, dur, "idle timeout")? {
        cfg.timeouts.idle = v;
    }
    if let Some(v) = pick(&c.retry_for, &board.retry_for, dur, "retry budget")? {
        cfg.retry_for = if v == Duration::ZERO { None } else { Some(v) };
    }
    if let Some(p) = &c.ca_file {
        // Checked here, before anything else and whatever the endpoint's scheme; the TLS
        // setup reads it again with the same limits. An unusable CA file is a configuration
        // error (78), as it has always been for a missing or unparsable one.
        ossup::io::fsafe::read_small_regular(p, ossup::io::fsafe::CONFIG_FILE_MAX)
            .map_err(|e| BuildError::Config(format!("--ca-file {}: {e}", p.display())))?;
    }
    cfg.ca_file = c.ca_file.clone();
    cfg.proxy = if c.no_proxy {
        ossup::proto::proxy::ProxySetting::Disabled
    } else if let Some(u) = &c.proxy {
        ossup::proto::proxy::ProxyUrl::parse(u).map_err(|e| usage(format!("--proxy: {e}")))?;
        ossup::proto::proxy::ProxySetting::Explicit(u.clone())
    } else if let Some(u) = &board.proxy {
        ossup::proto::proxy::ProxyUrl::parse(u)
            .map_err(|e| BuildError::Config(format!("board key proxy: {e}")))?;
        ossup::proto::proxy::ProxySetting::Explicit(u.clone())
    } else {
        ossup::proto::proxy::ProxySetting::FromEnv
    };
    cfg.content_md5 = c.content_md5;
    cfg.wait_for_lock = c.wait;
    cfg.object.content_type = c.content_type.clone();
    cfg.object.meta = c.meta.clone();
    cfg.object.storage_class = c.storage_class.clone();
    cfg.object.acl = c.acl.clone();
    // Only compressed uploads send it (see compress::take_mode).
    cfg.object.content_encoding = c.content_encoding.clone();
    cfg.validate().map_err(|e| {
        // Values that came from flags are usage errors; credentials and the rest are config.
        if e.0.contains("credentials") {
            BuildError::Config(e.0)
        } else {
            BuildError::Usage(e.0)
        }
    })?;
    Ok(cfg)
}

/// The environment's credential variables, in order of precedence: the first set whose key
/// id is set is used (s3-v4: `AWS_*` first, as AWS tools expect).
fn env_sets(scheme: Scheme) -> Vec<[&'static str; 3]> {
    const OSS: [&str; 3] = [
        "OSS_ACCESS_KEY_ID",
        "OSS_ACCESS_KEY_SECRET",
        "OSS_SESSION_TOKEN",
    ];
    const ALIBABA: [&str; 3] = [
        "ALIBABA_CLOUD_ACCESS_KEY_ID",
        "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
        "ALIBABA_CLOUD_SECURITY_TOKEN",
    ];
    const AWS: [&str; 3] = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ];
    match scheme {
        Scheme::OssV4 => vec![OSS, ALIBABA],
        Scheme::S3V4 => vec![AWS, OSS, ALIBABA],
    }
}

/// Static credentials from the environment (see [`env_sets`] for the order).
fn env_credentials(scheme: Scheme) -> Result<Credentials, BuildError> {
    let sets = env_sets(scheme);
    let [id_var, secret_var, token_var] = sets
        .iter()
        .copied()
        .find(|s| env(s[0]).is_some())
        .unwrap_or(sets[if scheme == Scheme::S3V4 { 1 } else { 0 }]);
    let (Some(id), Some(secret)) = (env(id_var), env(secret_var)) else {
        return Err(BuildError::Config(format!(
            "missing credentials: set {id_var} and {secret_var} (or use --credentials-file)"
        )));
    };
    let credentials = Credentials {
        access_key_id: id,
        access_key_secret: secret,
        security_token: env(token_var),
    };
    // Named by variable, the value never shown (it is a secret, or next to one).
    let env_problem = |var: &str, p: String| {
        BuildError::Config(format!(
            "credentials: {var} {p}; the value is not shown (a pasted newline?)"
        ))
    };
    if let Err(p) = check_header_value(&credentials.access_key_id) {
        return Err(env_problem(id_var, p.to_string()));
    }
    if credentials.access_key_secret.chars().any(char::is_control) {
        return Err(env_problem(
            secret_var,
            "contains a control character".to_string(),
        ));
    }
    if let Some(Err(p)) = credentials
        .security_token
        .as_deref()
        .map(check_header_value)
    {
        return Err(env_problem(token_var, p.to_string()));
    }
    Ok(credentials)
}

/// Parses the destination, as a usage error when it is malformed.
pub fn destination(dest: &str) -> Result<Destination, BuildError> {
    Destination::parse(dest).map_err(|e| BuildError::Usage(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<OsString> {
        s.iter().map(OsString::from).collect()
    }

    #[test]
    fn upload_flags() {
        let cli = parse(args(&[
            "upload",
            "f.bin",
            "oss://bkt/k",
            "--region",
            "cn-hangzhou",
            "--jobs",
            "4",
            "--meta",
            "A=b",
            "-q",
            "--part-size",
            "512KiB",
            "--path-style",
        ]))
        .unwrap();
        let Cli::Upload {
            file, dest, common, ..
        } = cli
        else {
            panic!()
        };
        assert_eq!(file, PathBuf::from("f.bin"));
        assert_eq!(dest, "oss://bkt/k");
        assert_eq!(common.jobs.as_deref(), Some("4"));
        assert_eq!(common.meta, vec![("a".to_string(), "b".to_string())]);
        assert!(common.quiet && common.path_style);
    }

    #[test]
    fn watch_flags() {
        let cli = parse(args(&[
            "watch",
            "spool",
            "oss://bkt/in/",
            "--settle",
            "2",
            "--poll",
            "0.5",
            "--done-dir",
            "sent",
            "--once",
            "--region",
            "cn-hangzhou",
        ]))
        .unwrap();
        let Cli::Watch {
            dir,
            dest,
            watch,
            common,
        } = cli
        else {
            panic!()
        };
        assert_eq!(
            (dir, dest.as_str()),
            (PathBuf::from("spool"), "oss://bkt/in/")
        );
        assert_eq!(
            (watch.settle.as_deref(), watch.poll.as_deref()),
            (Some("2"), Some("0.5"))
        );
        assert_eq!(watch.done_dir, Some(PathBuf::from("sent")));
        assert!(watch.once);
        assert_eq!(common.region.as_deref(), Some("cn-hangzhou"));
        // Watch-only flags are not upload flags.
        assert!(!watch.follow_symlinks);
        let Ok(Cli::Watch { watch, .. }) =
            parse(args(&["watch", "d", "oss://b/", "--follow-symlinks"]))
        else {
            panic!()
        };
        assert!(watch.follow_symlinks);
        for flag in ["--once", "--poll", "--settle", "--follow-symlinks"] {
            assert!(
                parse(args(&["upload", "f", "oss://b/k", flag, "1"])).is_err(),
                "{flag}"
            );
        }
    }

    #[test]
    fn usage_errors() {
        assert!(parse(args(&["upload", "f"])).is_err());
        assert!(parse(args(&["upload", "f", "oss://b/k", "--bogus"])).is_err());
        assert!(parse(args(&["frobnicate"])).is_err());
        assert!(parse(args(&["upload", "f", "oss://b/k", "--meta", "novalue"])).is_err());
        assert!(parse(args(&[])).is_err());
    }

    #[test]
    fn every_shipped_board_applies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("board-configs");
        let c = Common {
            region: Some("cn-hangzhou".into()),
            ..Common::default()
        };
        // Credentials come from the environment; give the check its own fake ones.
        let creds_set = env("OSS_ACCESS_KEY_ID").is_some();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let b = board::load(&p).unwrap();
                match build_config_with(&c, &b) {
                    Ok(cfg) => assert!(cfg.validate().is_ok()),
                    Err(BuildError::Config(m)) if !creds_set && m.contains("credentials") => {}
                    Err(e) => panic!("{}: {e:?}", p.display()),
                }
            }
        }
    }
}

//! # ossup
//!
//! Resumable, crash-safe uploads of local files to Alibaba Cloud OSS and S3-compatible stores,
//! small enough for ARM Linux gateways.
//!
//! **In scope:** single PUT below a threshold, multipart above it with parts streamed from disk
//! through one small reused buffer per job, OSS Signature V4 and AWS Signature V4, a checkpoint
//! journal that survives crashes and power cuts, reconciliation with ListParts after a restart,
//! CRC-64 end-to-end checks, retries through long outages, clock correction, a bandwidth cap.
//! **Out of scope:** downloads, STS credential refresh, proxies.
//!
//! **Crash-safety contract:** a part is recorded in the journal (and fsync'd) only after the
//! server acknowledged it, and Complete is sent only after every part record is durable; so
//! after a crash at any point, running the same upload again never loses or corrupts data and
//! re-sends at most the parts that were in flight.
//!
//! The decisions live in the sans-IO core [`proto`] (unversioned API); the async shell in
//! `io` only waits on sockets, files and timers. The library picks no executor.
//!
//! ```no_run
//! use ossup::{Config, Destination, Endpoint};
//! use ossup::proto::sign::Credentials;
//! let creds = Credentials {
//!     access_key_id: std::env::var("OSS_ACCESS_KEY_ID").unwrap(),
//!     access_key_secret: std::env::var("OSS_ACCESS_KEY_SECRET").unwrap(),
//!     security_token: None,
//! };
//! let endpoint = Endpoint::parse("https://oss-cn-hangzhou.aliyuncs.com").unwrap();
//! let cfg = Config::new(endpoint, "cn-hangzhou", creds, "/var/lib/ossup".into());
//! let dest = Destination::parse("oss://my-bucket/logs/today.log").unwrap();
//! let done = ossup::upload_file_blocking(&cfg, "today.log".as_ref(), &dest, &mut |done, total| {
//!     eprintln!("{done}/{total}");
//! });
//! println!("{:?}", done);
//! ```

pub mod config;
pub mod error;
pub mod io;
pub mod proto;
#[cfg(feature = "serve")]
pub mod serve;

use std::path::Path;

pub use config::{Config, ConfigError, Destination, Endpoint, Timeouts};
pub use error::Error;
pub use proto::upload::Uploaded;
pub use proto::Op;

/// Uploads `file` to `dest`, resuming from its checkpoint in `cfg.checkpoint_dir` if one
/// exists. `progress(done, total)` is called with monotonically growing byte counts, starting
/// at the amount already uploaded by earlier runs.
///
/// Cancel-safe: drop the future at any point and call again to resume. The future is not
/// `Send` (it runs its parts concurrently on the calling task); use any executor, or
/// [`upload_file_blocking`].
pub async fn upload_file(
    cfg: &Config,
    file: &Path,
    dest: &Destination,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Uploaded, Error> {
    io::driver::upload(cfg, file, dest, progress).await
}

/// [`upload_file`] on the current thread.
pub fn upload_file_blocking(
    cfg: &Config,
    file: &Path,
    dest: &Destination,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Uploaded, Error> {
    async_io::block_on(upload_file(cfg, file, dest, progress))
}

/// Compiles the Rust snippets in README.md.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

//! The async shell: everything in ossup that *does* IO.
//!
//! Owns: sockets and TLS ([`conn`]), sending one request and reading its response
//! ([`exchange`]), the local file ([`source`]), the checkpoint journal and its lock on disk
//! ([`journal`]), and the symlink-proof file primitives every state file uses ([`fsafe`]).
//! The driver (added by the crate root) turns the core's actions into calls of these modules
//! and feeds the outcomes back.
//!
//! Must not: decide anything a unit test would want to check. What to send, whether to retry,
//! how long to back off, how fast to send and what a journal means are all decided in
//! `crate::proto`; this module carries the decisions out, reads the clocks, and reports what
//! happened as a `proto::retry::Failure` or plain bytes.
//!
//! Design rules:
//! * **One buffer per job.** The caller owns one buffer (64 KiB by default); the request head is
//!   rendered into it, the body streams through it, and the response is read into it. Nothing
//!   is allocated per body chunk (rustls' per-record buffer aside).
//! * **Every wait is bounded.** Connect and TLS handshake race a connect timeout; each
//!   individual read and write races an *idle* timeout, so a slow but moving transfer never
//!   times out while a stalled one always does. Rate-limit sleeps are the only other waits and
//!   come from the core's token bucket.
//! * **Drop on error.** A connection that saw any failure is never reused.
//!
//! Blocking calls made on the async thread, and why they are acceptable:
//! * `pread` of the source file in buffer-sized chunks ([`source::Source::read_at`]): local
//!   flash, tmpfs or disk answers in microseconds, and measurements showed synchronous reads to
//!   be faster and cheaper than handing them to a thread pool.
//! * `write` + `fdatasync` of one small journal record per completed part, and the
//!   create/rename/directory-fsync of a journal: a few hundred bytes, a handful of times per
//!   upload. Durability *requires* waiting for them before going on.
//! * `stat`/`fstat` when checking whether the source changed, and opening files.
//! * [`journal::Lock::acquire`] with `wait == true` blocks the thread by design; async callers
//!   use [`journal::Lock::acquire_async`], which polls on a timer instead.
//!
//! Not blocking: name resolution runs on `smol`'s blocking thread pool (`getaddrinfo` can take
//! seconds), bounded by the connect timeout (but never less than 10 s).

#[cfg(feature = "compress")]
pub mod compress;
pub mod conn;
pub mod credentials;
pub mod driver;
pub mod exchange;
pub mod fsafe;
pub mod journal;
pub mod source;

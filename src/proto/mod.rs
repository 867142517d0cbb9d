//! The sans-IO core: everything in ossup that *decides*.
//!
//! Owns: request signing, request rendering, response and XML parsing, part geometry, the
//! checkpoint journal format, retry classification and the upload state machine.
//!
//! Must not: touch sockets, files, clocks or randomness, or contain `async` code. Bytes, times
//! and outcomes come in as arguments; bytes and [`upload::Action`]s go out. The shell in
//! `crate::io` carries the actions out. `tests/boundary.rs` enforces this by scanning the files
//! of this module for forbidden paths.
//!
//! This module is public so that tests, benchmarks and `ossup status` can drive the core
//! directly, but it is **unversioned**: its API may change in any release.

pub mod checkpoint;
pub mod crc64;
pub mod credentials;
pub mod geometry;
mod op;
pub mod proxy;
pub mod rate;
pub mod request;
pub mod response;
pub mod retry;
pub mod sign;
pub mod spool;
pub mod staging;
pub mod text;
pub mod time;
pub mod upload;
pub mod x509;
pub mod xml;

pub use op::Op;

//! placeholder
pub mod conn;
pub mod exchange;
pub mod journal;
pub mod source;

//! ossup: resumable, crash-safe uploads to Alibaba Cloud OSS and S3-compatible stores.
#![allow(missing_docs)]
pub mod proto;

//! `ossup watch`: spool-directory mode (being implemented).

use std::path::Path;
use std::process::ExitCode;

/// Runs the watch loop.
pub fn main(
    _cfg: ossup::Config,
    _dir: &Path,
    _dest: &str,
    _settle: Option<&str>,
    _done: Option<&Path>,
    _quiet: bool,
) -> ExitCode {
    eprintln!("ossup: error: watch is not available in this build yet");
    ExitCode::from(ossup::error::exit::USAGE)
}

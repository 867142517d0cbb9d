//! Board configs: flat `key = value` TOML files that tune ossup for one class of gateway.
//!
//! Owns: reading a board file (a strict TOML subset: comments, `key = "string"`,
//! `key = 123`, `key = true`, `key = ["a", "b"]` on one line; no tables) into [`Board`]. Unknown keys are an error, so a typo
//! never silently falls back to a default. Must not: apply the values (args.rs does, with
//! command-line flags taking precedence).

use std::path::{Path, PathBuf};

/// Settings a board file may set; every field is optional.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Board {
    /// Target triple the board runs (documentation; checked against nothing at run time).
    pub target: Option<String>,
    /// Part size, e.g. `"8MiB"`.
    pub part_size: Option<String>,
    /// Multipart threshold, e.g. `"8MiB"`.
    pub threshold: Option<String>,
    /// Parts in flight.
    pub jobs: Option<u32>,
    /// Streaming buffer per job, e.g. `"64KiB"`.
    pub buffer_size: Option<String>,
    /// Checkpoint directory (persistent flash).
    pub checkpoint_dir: Option<String>,
    /// Bandwidth cap, e.g. `"200KiB/s"`.
    pub limit_rate: Option<String>,
    /// Connect timeout, e.g. `"15s"`.
    pub connect_timeout: Option<String>,
    /// Idle timeout, e.g. `"60s"`.
    pub idle_timeout: Option<String>,
    /// Retry budget, e.g. `"24h"` (`"0"` = forever).
    pub retry_for: Option<String>,
    /// Region.
    pub region: Option<String>,
    /// Endpoint URL.
    pub endpoint: Option<String>,
    /// HTTP(S) proxy URL, e.g. `"http://user:pass@10.0.0.1:3128"` (overrides the environment).
    pub proxy: Option<String>,
    /// `--credentials-file`: a JSON credential document another process keeps fresh.
    pub credentials_file: Option<String>,
    /// `watch --compress` globs, e.g. `["*.log", "*.csv"]`.
    pub compress: Vec<String>,
}

/// Finds a board by name or path: a path to an existing file, else `<name>.toml` in
/// `$OSSUP_BOARD_DIR`, `./board-configs`, `/etc/ossup/boards`, or `board-configs` next to the
/// executable or one and two levels above it.
pub fn locate(name_or_path: &str) -> Result<PathBuf, String> {
    let p = Path::new(name_or_path);
    // Any existing non-directory: `load` refuses what is not a small regular file, saying why.
    if p.metadata().is_ok_and(|m| !m.is_dir()) {
        return Ok(p.to_path_buf());
    }
    if name_or_path.contains('/') || name_or_path.ends_with(".toml") {
        return Err(format!("board file {name_or_path} not found"));
    }
    let file = format!("{name_or_path}.toml");
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("OSSUP_BOARD_DIR") {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("board-configs"));
    dirs.push(PathBuf::from("/etc/ossup/boards"));
    if let Ok(exe) = std::env::current_exe() {
        for up in exe.ancestors().skip(1).take(4) {
            dirs.push(up.join("board-configs"));
        }
    }
    dirs.iter()
        .map(|d| d.join(&file))
        .find(|c| c.is_file())
        .ok_or_else(|| format!("board {name_or_path:?} not found (give a path, or put {file} in ./board-configs or $OSSUP_BOARD_DIR)"))
}

/// Reads and parses a board file.
pub fn load(path: &Path) -> Result<Board, String> {
    let bytes = ossup::io::fsafe::read_small_regular(path, ossup::io::fsafe::CONFIG_FILE_MAX)
        .map_err(|e| format!("cannot read board file {}: {e}", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("board file {}: not UTF-8 text", path.display()))?;
    parse(&text).map_err(|e| format!("board {}: {e}", path.display()))
}

/// Parses the text of a board file.
pub fn parse(text: &str) -> Result<Board, String> {
    let mut b = Board::default();
    for (i, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let lineno = i + 1;
        let Some((k, v)) = line.split_once('=') else {
            return Err(format!("line {lineno}: expected key = value"));
        };
        let (k, v) = (k.trim(), v.trim());
        let string = || -> Result<String, String> {
            let inner = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .ok_or_else(|| format!("line {lineno}: {k} takes a quoted string"))?;
            if inner.contains('"') || inner.contains('\\') {
                return Err(format!("line {lineno}: escapes are not supported in {k}"));
            }
            Ok(inner.to_string())
        };
        let slot = match k {
            "target" => &mut b.target,
            "part_size" => &mut b.part_size,
            "threshold" => &mut b.threshold,
            "buffer_size" => &mut b.buffer_size,
            "checkpoint_dir" => &mut b.checkpoint_dir,
            "limit_rate" => &mut b.limit_rate,
            "connect_timeout" => &mut b.connect_timeout,
            "idle_timeout" => &mut b.idle_timeout,
            "retry_for" => &mut b.retry_for,
            "region" => &mut b.region,
            "endpoint" => &mut b.endpoint,
            "proxy" => &mut b.proxy,
            "credentials_file" => &mut b.credentials_file,
            "compress" => {
                if !b.compress.is_empty() {
                    return Err(format!("line {lineno}: {k} is set twice"));
                }
                b.compress = string_list(v).map_err(|e| format!("line {lineno}: {k}: {e}"))?;
                for g in &b.compress {
                    crate::args::check_glob(g).map_err(|e| format!("line {lineno}: {e}"))?;
                }
                continue;
            }
            "jobs" => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| format!("line {lineno}: jobs takes a number"))?;
                if b.jobs.replace(n).is_some() {
                    return Err(format!("line {lineno}: jobs is set twice"));
                }
                continue;
            }
            other => return Err(format!("line {lineno}: unknown key {other:?}")),
        };
        if slot.replace(string()?).is_some() {
            return Err(format!("line {lineno}: {k} is set twice"));
        }
    }
    Ok(b)
}

/// Parses a one-line array of quoted strings without escapes: `["a", "b"]`.
fn string_list(v: &str) -> Result<Vec<String>, String> {
    let inner = v
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .ok_or("expected a list such as [\"*.log\", \"*.csv\"]")?;
    let mut out = Vec::new();
    for item in inner.split(',') {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let s = item
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .filter(|s| !s.contains('"') && !s.contains('\\'))
            .ok_or_else(|| format!("{item}: expected a quoted string without escapes"))?;
        out.push(s.to_string());
    }
    Ok(out)
}

/// Drops a `#` comment that is not inside a quoted string.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_comments() {
        let b = parse(
            "# c\ntarget = \"aarch64-unknown-linux-musl\" # why\njobs = 4\npart_size=\"8MiB\"\n\n",
        )
        .unwrap();
        assert_eq!(b.target.as_deref(), Some("aarch64-unknown-linux-musl"));
        assert_eq!(b.jobs, Some(4));
        assert_eq!(b.part_size.as_deref(), Some("8MiB"));
    }

    #[test]
    fn rejects_unknown_keys_and_bad_lines() {
        assert!(parse("part_szie = \"8MiB\"")
            .unwrap_err()
            .contains("unknown key"));
        assert!(parse("jobs = four").is_err());
        assert!(parse("part_size = 8").is_err());
        assert!(parse("[table]").is_err());
        assert!(parse("jobs = 1\njobs = 2").is_err());
        assert!(parse("region = \"a\\\"b\"").is_err());
    }

    #[test]
    fn compress_is_a_list_of_globs() {
        let b = parse("compress = [\"*.log\", \"logs/**/*.csv\"]  # logs\n").unwrap();
        assert_eq!(b.compress, vec!["*.log", "logs/**/*.csv"]);
        assert!(parse("compress = \"*.log\"").is_err());
        assert!(parse("compress = [*.log]").is_err());
        assert!(parse("compress = [\"a\"]\ncompress = [\"b\"]").is_err());
    }

    #[test]
    fn every_shipped_board_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("board-configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let b = load(&p).unwrap_or_else(|e| panic!("{e}"));
                assert!(b.target.is_some(), "{} names no target", p.display());
                assert!(
                    b.checkpoint_dir.is_some(),
                    "{} names no checkpoint_dir",
                    p.display()
                );
                n += 1;
            }
        }
        assert!(n >= 3, "expected at least 3 board configs, found {n}");
    }
}

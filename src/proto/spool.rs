//! Spool policy for `ossup watch`: what to send next, whether to send now, how much data budget
//! is left, what to evict, and what an object is called (issue 15).
//!
//! Owns: parsing of `--budget`, `--window`, `--utc-offset`, `--priority` globs and
//! `--key-template`; the durable budget-ledger record format and its replay; the TZif offset
//! lookup (bytes in, offset out); the choice of the next file, the window test, the budget gate
//! for a part and the eviction plan.
//!
//! Must not: read files, clocks or the network. Times are Unix seconds and local offsets are
//! seconds east of UTC, passed in by the watch shell; sizes are byte counts it measured.

/// A calendar period a budget counts over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A local calendar day.
    Day,
    /// A local calendar month.
    Month,
}

/// One `--budget SIZE/day|month`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Bytes allowed on the wire per period.
    pub limit: u64,
    /// The period.
    pub period: Period,
}

/// Parse a size such as `512`, `64K`, `10M`, `10MiB`, `2G`, `1GB` (binary multiples).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return None;
    }
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

/// Parse `SIZE/day` or `SIZE/month`.
pub fn parse_budget(s: &str) -> Option<Budget> {
    let (size, per) = s.rsplit_once('/')?;
    let period = match per.trim() {
        "day" => Period::Day,
        "month" => Period::Month,
        _ => return None,
    };
    Some(Budget {
        limit: parse_size(size)?,
        period,
    })
}

/// Parse `±HH:MM` (also `Z` / `UTC`) into seconds east of UTC.
pub fn parse_utc_offset(s: &str) -> Option<i32> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("z") || s.eq_ignore_ascii_case("utc") {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    let (h, m) = parse_hhmm(rest)?;
    if h > 14 {
        return None;
    }
    Some(sign * (h as i32 * 3600 + m as i32 * 60))
}

fn parse_hhmm(s: &str) -> Option<(u32, u32)> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || !b[..2].iter().chain(&b[3..]).all(u8::is_ascii_digit) {
        return None;
    }
    let h = (b[0] - b'0') as u32 * 10 + (b[1] - b'0') as u32;
    let m = (b[3] - b'0') as u32 * 10 + (b[4] - b'0') as u32;
    (h < 24 && m < 60).then_some((h, m))
}

/// One `--window HH:MM-HH:MM`, in minutes of the local day; `start > end` crosses midnight,
/// `start == end` is the whole day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First minute inside the window.
    pub start: u16,
    /// First minute after the window.
    pub end: u16,
}

/// Parse `HH:MM-HH:MM`.
pub fn parse_window(s: &str) -> Option<Window> {
    let (a, b) = s.trim().split_once('-')?;
    let (ah, am) = parse_hhmm(a)?;
    let (bh, bm) = parse_hhmm(b)?;
    Some(Window {
        start: (ah * 60 + am) as u16,
        end: (bh * 60 + bm) as u16,
    })
}

/// Minute of the local day (0..1440) at Unix time `now` with offset `offset` seconds east.
pub fn local_minute(now: i64, offset: i32) -> u16 {
    ((now + offset as i64).rem_euclid(86_400) / 60) as u16
}

/// Whether ordinary files may be sent at this local minute: true with no windows configured.
pub fn in_windows(windows: &[Window], minute: u16) -> bool {
    windows.is_empty()
        || windows.iter().any(|w| {
            if w.start == w.end {
                true
            } else if w.start < w.end {
                (w.start..w.end).contains(&minute)
            } else {
                minute >= w.start || minute < w.end
            }
        })
}

fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    (y, m, d)
}

/// The period number containing local time `now + offset`: days since 1970-01-01 for
/// [`Period::Day`], `year * 12 + month - 1` for [`Period::Month`].
pub fn period_id(period: Period, now: i64, offset: i32) -> i64 {
    let days = (now + offset as i64).div_euclid(86_400);
    match period {
        Period::Day => days,
        Period::Month => {
            let (y, m, _) = civil_from_days(days);
            y * 12 + m as i64 - 1
        }
    }
}

/// Size of one ledger record on disk.
pub const LEDGER_RECORD: usize = 16;

/// Encode one budget-ledger record: `bytes` put on the wire during local day `day`.
/// Layout: day i32 LE, bytes u64 LE, check u32 LE (a simple checksum so a torn record is
/// recognised and ignored on replay).
pub fn ledger_record(day: i64, bytes: u64) -> [u8; LEDGER_RECORD] {
    let mut r = [0u8; LEDGER_RECORD];
    r[..4].copy_from_slice(&(day as i32).to_le_bytes());
    r[4..12].copy_from_slice(&bytes.to_le_bytes());
    let c = check(&r[..12]);
    r[12..].copy_from_slice(&c.to_le_bytes());
    r
}

fn check(b: &[u8]) -> u32 {
    // FNV-1a: enough to tell a torn or zero-filled record from a whole one.
    let mut h: u32 = 0x811c_9dc5;
    for &x in b {
        h = (h ^ x as u32).wrapping_mul(0x0100_0193);
    }
    h ^ 0x5350_4f4c
}

/// Replay a ledger: the bytes counted in the current day and in the current month (local
/// time). Records that are torn (short or failing their check) are skipped, so a lost last
/// record under-counts by at most what it held (one part).
pub fn ledger_spent(ledger: &[u8], now: i64, offset: i32) -> (u64, u64) {
    let today = period_id(Period::Day, now, offset);
    let month = period_id(Period::Month, now, offset);
    let (mut d, mut m) = (0u64, 0u64);
    for r in ledger.chunks_exact(LEDGER_RECORD) {
        if check(&r[..12]).to_le_bytes() != r[12..] {
            continue;
        }
        let day = i32::from_le_bytes(r[..4].try_into().unwrap()) as i64;
        let bytes = u64::from_le_bytes(r[4..12].try_into().unwrap());
        if day == today {
            d = d.saturating_add(bytes);
        }
        let (y, mo, _) = civil_from_days(day);
        if y * 12 + mo as i64 - 1 == month {
            m = m.saturating_add(bytes);
        }
    }
    (d, m)
}

/// The budget left for a file of this class, given bytes spent this day and month: the minimum
/// over the configured budgets (`None` when there is no budget). Ordinary files may not use
/// the last `reserve` bytes of each budget.
pub fn budget_left(
    budgets: &[Budget],
    spent_day: u64,
    spent_month: u64,
    reserve: u64,
    priority: bool,
) -> Option<u64> {
    budgets
        .iter()
        .map(|b| {
            let spent = match b.period {
                Period::Day => spent_day,
                Period::Month => spent_month,
            };
            let limit = if priority {
                b.limit
            } else {
                b.limit.saturating_sub(reserve)
            };
            limit.saturating_sub(spent)
        })
        .min()
}

/// Whether a part whose wire cost is about `part_wire` bytes may start now. A part larger than
/// what is left is not started, so only parts already in flight can overshoot.
pub fn part_may_start(left: Option<u64>, part_wire: u64) -> bool {
    match left {
        None => true,
        Some(l) => l > 0 && part_wire <= l,
    }
}

/// Match a `--priority` glob against a relative path: `*` any run without `/`, `**` any run,
/// `?` one character other than `/`; everything else literally.
pub fn glob_match(glob: &str, path: &str) -> bool {
    fn go(g: &[u8], p: &[u8]) -> bool {
        match g.first() {
            None => p.is_empty(),
            Some(b'*') if g.get(1) == Some(&b'*') => {
                let rest = &g[2..];
                let rest = rest.strip_prefix(b"/").filter(|_| true).unwrap_or(rest);
                (0..=p.len()).any(|i| go(rest, &p[i..]) || go(&g[2..], &p[i..]))
            }
            Some(b'*') => {
                let mut i = 0;
                loop {
                    if go(&g[1..], &p[i..]) {
                        return true;
                    }
                    if i == p.len() || p[i] == b'/' {
                        return false;
                    }
                    i += 1;
                }
            }
            Some(b'?') => !p.is_empty() && p[0] != b'/' && go(&g[1..], &p[1..]),
            Some(&c) => p.first() == Some(&c) && go(&g[1..], &p[1..]),
        }
    }
    go(glob.as_bytes(), path.as_bytes())
}

/// Order of ordinary files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Oldest mtime first (the default).
    #[default]
    Oldest,
    /// Newest mtime first (`--order newest`).
    Newest,
}

/// A file waiting in the spool, as the shell measured it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    /// Whether a `--priority` glob matches it.
    pub priority: bool,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// Size in bytes.
    pub size: u64,
}

/// Which waiting file to send next: priority files first, newest first, at any time; then
/// ordinary files in `order`, only when `in_window`. Ties keep the input order.
pub fn pick_next(files: &[Waiting], in_window: bool, order: Order) -> Option<usize> {
    let best_pri = files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.priority)
        .min_by_key(|(i, f)| (std::cmp::Reverse(f.mtime), *i))
        .map(|(i, _)| i);
    if best_pri.is_some() || !in_window {
        return best_pri;
    }
    let ord = files.iter().enumerate().filter(|(_, f)| !f.priority);
    match order {
        Order::Oldest => ord.min_by_key(|(i, f)| (f.mtime, *i)).map(|(i, _)| i),
        Order::Newest => ord
            .min_by_key(|(i, f)| (std::cmp::Reverse(f.mtime), *i))
            .map(|(i, _)| i),
    }
}

/// Whether an ordinary upload in progress should stop at its next part boundary: when a
/// priority file is waiting.
pub fn should_preempt(current_priority: bool, files: &[Waiting]) -> bool {
    !current_priority && files.iter().any(|f| f.priority)
}

/// Which files to evict: ordinary files, oldest first, never `busy` (the file being uploaded),
/// until the spool is at most `max_spool` bytes and the file system has at least `min_free`
/// bytes free (`free` as measured now; evicting a file frees its size).
pub fn plan_eviction(
    files: &[Waiting],
    busy: Option<usize>,
    max_spool: Option<u64>,
    free: u64,
    min_free: Option<u64>,
) -> Vec<usize> {
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    let mut free = free;
    let over = |total: u64, free: u64| {
        max_spool.is_some_and(|m| total > m) || min_free.is_some_and(|m| free < m)
    };
    let mut cands: Vec<usize> = (0..files.len())
        .filter(|&i| !files[i].priority && Some(i) != busy)
        .collect();
    cands.sort_by_key(|&i| (files[i].mtime, i));
    let mut out = Vec::new();
    for i in cands {
        if !over(total, free) {
            break;
        }
        total -= files[i].size;
        free = free.saturating_add(files[i].size);
        out.push(i);
    }
    out
}

/// Whether a `--key-template` is well formed: only the known placeholders, braces balanced.
pub fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(i) = rest.find(['{', '}']) {
        if rest.as_bytes()[i] == b'}' {
            return Err(format!("stray '}}' in key template {t:?}"));
        }
        let after = &rest[i + 1..];
        let j = after
            .find('}')
            .ok_or_else(|| format!("unclosed '{{' in key template {t:?}"))?;
        let name = &after[..j];
        if !matches!(name, "path" | "name" | "host" | "Y" | "m" | "d" | "H") {
            return Err(format!(
                "unknown placeholder {{{name}}} in key template (known: {{path}} {{name}} {{host}} {{Y}} {{m}} {{d}} {{H}})"
            ));
        }
        rest = &after[j + 1..];
    }
    Ok(())
}

/// Render a key template for the file at relative path `rel` (with `/` separators), host name
/// `host` and modification time `mtime` (UTC). Unknown placeholders are kept as written; call
/// [`check_template`] at start-up to reject them.
pub fn render_key(template: &str, rel: &str, host: &str, mtime: i64) -> String {
    let (y, m, d) = civil_from_days(mtime.div_euclid(86_400));
    let h = mtime.rem_euclid(86_400) / 3600;
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let mut out = String::with_capacity(template.len() + rel.len());
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            out.push_str(&rest[i..]);
            return out;
        };
        match &after[..j] {
            "path" => out.push_str(rel),
            "name" => out.push_str(name),
            "host" => out.push_str(host),
            "Y" => out.push_str(&format!("{y:04}")),
            "m" => out.push_str(&format!("{m:02}")),
            "d" => out.push_str(&format!("{d:02}")),
            "H" => out.push_str(&format!("{h:02}")),
            other => {
                out.push('{');
                out.push_str(other);
                out.push('}');
            }
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    out
}

/// The object key of the eviction ledger for `host` on local day `day` (days since epoch).
pub fn eviction_ledger_key(prefix: &str, host: &str, day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{prefix}.ossup/evicted/{host}/{y:04}-{m:02}-{d:02}.log")
}

/// The UTC offset (seconds east) in force at Unix time `now` according to a TZif file
/// (RFC 8536, versions 1 to 4). Uses the 64-bit block when present; after the last transition
/// the last transition's type holds (the footer rule is not evaluated). `None` if malformed.
pub fn tzif_offset(data: &[u8], now: i64) -> Option<i32> {
    struct Hdr {
        isut: usize,
        isstd: usize,
        leap: usize,
        time: usize,
        typ: usize,
        chr: usize,
    }
    fn hdr(b: &[u8]) -> Option<(u8, Hdr)> {
        if b.len() < 44 || &b[..4] != b"TZif" {
            return None;
        }
        let n =
            |k: usize| u32::from_be_bytes(b[20 + 4 * k..24 + 4 * k].try_into().unwrap()) as usize;
        Some((
            b[4],
            Hdr {
                isut: n(0),
                isstd: n(1),
                leap: n(2),
                time: n(3),
                typ: n(4),
                chr: n(5),
            },
        ))
    }
    let (ver, h1) = hdr(data)?;
    let (body, h, tsz) = if ver >= b'2' {
        let v1 = h1
            .time
            .checked_mul(5)?
            .checked_add(h1.typ.checked_mul(6)?)?
            .checked_add(h1.chr)?
            .checked_add(h1.leap.checked_mul(8)?)?
            .checked_add(h1.isstd)?
            .checked_add(h1.isut)?;
        let rest = data.get(44usize.checked_add(v1)?..)?;
        let (_, h2) = hdr(rest)?;
        (&rest[44..], h2, 8usize)
    } else {
        (&data[44..], h1, 4usize)
    };
    if h.typ == 0 || h.typ > 256 {
        return None;
    }
    let _ = (h.isut, h.isstd, h.leap, h.chr);
    let times = body.get(..h.time.checked_mul(tsz)?)?;
    let idx = body.get(times.len()..times.len().checked_add(h.time)?)?;
    let types_at = times.len() + idx.len();
    let types = body.get(types_at..types_at.checked_add(h.typ * 6)?)?;
    let utoff = |t: usize| -> Option<i32> {
        let r = types.get(t * 6..t * 6 + 4)?;
        Some(i32::from_be_bytes(r.try_into().unwrap()))
    };
    let at = |i: usize| -> i64 {
        if tsz == 8 {
            i64::from_be_bytes(times[i * 8..i * 8 + 8].try_into().unwrap())
        } else {
            i32::from_be_bytes(times[i * 4..i * 4 + 4].try_into().unwrap()) as i64
        }
    };
    // Last transition at or before now.
    let n = h.time;
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if at(mid) <= now {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        // Before the first transition: the first standard-time type, else type 0.
        let first_std = (0..h.typ)
            .find(|&t| types.get(t * 6 + 4) == Some(&0))
            .unwrap_or(0);
        return utoff(first_std);
    }
    utoff(*idx.get(lo - 1)? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_crossing_midnight_covers_late_and_early_minutes() {
        let w = [parse_window("22:00-06:00").unwrap()];
        assert!(in_windows(&w, 23 * 60));
        assert!(in_windows(&w, 5 * 60 + 59));
        assert!(!in_windows(&w, 6 * 60));
        assert!(!in_windows(&w, 12 * 60));
    }

    #[test]
    fn priority_always_before_ordinary_and_nothing_ordinary_outside_a_window() {
        let f = [
            Waiting {
                priority: false,
                mtime: 1,
                size: 1,
            },
            Waiting {
                priority: true,
                mtime: 5,
                size: 1,
            },
            Waiting {
                priority: true,
                mtime: 9,
                size: 1,
            },
        ];
        assert_eq!(pick_next(&f, true, Order::Oldest), Some(2));
        assert_eq!(pick_next(&f[..1], false, Order::Oldest), None);
        assert_eq!(pick_next(&f[..1], true, Order::Oldest), Some(0));
    }

    #[test]
    fn ledger_torn_last_record_undercounts_by_that_record_only() {
        let now = 20_000 * 86_400 + 3600;
        let mut l = Vec::new();
        l.extend_from_slice(&ledger_record(20_000, 100));
        l.extend_from_slice(&ledger_record(20_000, 50));
        l.extend_from_slice(&ledger_record(19_999, 7));
        assert_eq!(ledger_spent(&l, now, 0).0, 150);
        let torn = &l[..LEDGER_RECORD * 2 - 3];
        assert_eq!(ledger_spent(torn, now, 0).0, 100);
    }

    #[test]
    fn eviction_never_takes_priority_or_the_busy_file() {
        let f = [
            Waiting {
                priority: true,
                mtime: 1,
                size: 10,
            },
            Waiting {
                priority: false,
                mtime: 2,
                size: 10,
            },
            Waiting {
                priority: false,
                mtime: 3,
                size: 10,
            },
        ];
        assert_eq!(plan_eviction(&f, Some(1), Some(5), 0, None), vec![2]);
    }

    #[test]
    fn template_renders_host_and_mtime_utc_date() {
        // 2026-12-04 10:00:00 UTC
        let t = 1_796_378_400;
        let k = render_key("{host}/{Y}/{m}/{d}/{H}/{path}", "cam/a.mp4", "gw1", t);
        assert_eq!(k, "gw1/2026/12/04/10/cam/a.mp4");
    }

    #[test]
    fn priority_reserve_is_kept_from_ordinary_files() {
        let b = [parse_budget("100/day").unwrap()];
        assert_eq!(budget_left(&b, 60, 0, 30, false), Some(10));
        assert_eq!(budget_left(&b, 60, 0, 30, true), Some(40));
    }
}

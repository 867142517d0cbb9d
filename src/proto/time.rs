//! Calendar arithmetic for signing and clock correction: Unix seconds to and from the date
//! formats OSS and S3 use, and whether a server's time is believable ([`plausible_server_time`]).
//! Owns: formatting, parsing and that judgement. Must not: read a clock.
//!
//! All conversions use the proleptic Gregorian calendar in UTC, with days counted from
//! 1970-01-01 by the civil-from-days / days-from-civil algorithms (400-year eras of 146 097
//! days). Parsers accept years 0000..=9999 only and return `None` for anything malformed,
//! including out-of-range fields (month 13, February 30, hour 24, second 60); they never panic.

const SECS_PER_DAY: i64 = 86_400;
const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

/// Days since 1970-01-01 of the civil date `y-m-d` (`m` in 1..=12, `d` in 1..=31).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    // Shift the year so that it starts in March: the leap day is then the last day of a year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400); // [0, 399]
    let mp = i64::from((m + 9) % 12); // March = 0 .. February = 11
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1; // [0, 365]
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy; // [0, 146096]
    era * 146_097 + doe - 719_468
}

/// The civil date `(year, month, day)` of `days` since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11]
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn is_leap(y: i64) -> bool {
    y % 4 == 0 && (y % 100 != 0 || y % 400 == 0)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        2 => 28,
        _ => 0,
    }
}

fn to_civil(unix: i64) -> Civil {
    let days = unix.div_euclid(SECS_PER_DAY);
    let secs = unix.rem_euclid(SECS_PER_DAY) as u32;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: secs / 3600,
        minute: secs / 60 % 60,
        second: secs % 60,
    }
}

/// Validates the fields and converts to Unix seconds.
fn from_civil(c: Civil) -> Option<i64> {
    if !(0..=9999).contains(&c.year)
        || !(1..=12).contains(&c.month)
        || c.day == 0
        || c.day > days_in_month(c.year, c.month)
        || c.hour > 23
        || c.minute > 59
        || c.second > 59
    {
        return None;
    }
    let days = days_from_civil(c.year, c.month, c.day);
    Some(
        days * SECS_PER_DAY
            + i64::from(c.hour) * 3600
            + i64::from(c.minute) * 60
            + i64::from(c.second),
    )
}

/// Parses exactly `n` ASCII digits at the start of `s`; returns the value and the rest.
fn digits(s: &[u8], n: usize) -> Option<(u32, &[u8])> {
    if s.len() < n {
        return None;
    }
    let (head, rest) = s.split_at(n);
    let mut v: u32 = 0;
    for &b in head {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(b - b'0');
    }
    Some((v, rest))
}

/// Consumes the literal byte `c` at the start of `s`.
fn lit(s: &[u8], c: u8) -> Option<&[u8]> {
    match s.split_first() {
        Some((&b, rest)) if b == c => Some(rest),
        _ => None,
    }
}

/// Parses `HH:MM:SS` (with `sep` = `:`) or `HHMMSS` (with `sep` = `None`).
fn hms(s: &[u8], sep: Option<u8>) -> Option<(u32, u32, u32, &[u8])> {
    let (h, s) = digits(s, 2)?;
    let s = match sep {
        Some(c) => lit(s, c)?,
        None => s,
    };
    let (mi, s) = digits(s, 2)?;
    let s = match sep {
        Some(c) => lit(s, c)?,
        None => s,
    };
    let (se, s) = digits(s, 2)?;
    Some((h, mi, se, s))
}

/// Formats Unix seconds (UTC) as ISO-8601 basic, `YYYYMMDDTHHMMSSZ` (the `x-oss-date` form).
pub fn iso8601_basic(unix: i64) -> String {
    let c = to_civil(unix);
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    )
}

/// Formats Unix seconds (UTC) as RFC 1123, `Wed, 25 Nov 2026 02:11:13 GMT` (the `Date` form).
pub fn rfc1123(unix: i64) -> String {
    let c = to_civil(unix);
    // 1970-01-01 was a Thursday (index 4 with Sunday = 0).
    let weekday = WEEKDAYS[(unix.div_euclid(SECS_PER_DAY) + 4).rem_euclid(7) as usize];
    let month = MONTHS[(c.month - 1) as usize];
    format!(
        "{weekday}, {:02} {month} {:04} {:02}:{:02}:{:02} GMT",
        c.day, c.year, c.hour, c.minute, c.second
    )
}

/// Parses an RFC 1123 date (`Date` header). `None` if malformed.
///
/// Only the IMF-fixdate form is accepted (`Sun, 06 Nov 1994 08:49:37 GMT`: a valid weekday
/// name, two-digit day, `GMT`), surrounding whitespace allowed. The weekday is checked for
/// being a weekday name, not for agreeing with the date.
pub fn parse_rfc1123(s: &str) -> Option<i64> {
    let s = s.trim().as_bytes();
    if s.len() != 29 {
        return None;
    }
    let (wd, s) = s.split_at(3);
    if !WEEKDAYS.iter().any(|w| w.as_bytes() == wd) {
        return None;
    }
    let s = lit(lit(s, b',')?, b' ')?;
    let (day, s) = digits(s, 2)?;
    let s = lit(s, b' ')?;
    let (mon, s) = s.split_at(3);
    let month = MONTHS.iter().position(|m| m.as_bytes() == mon)? as u32 + 1;
    let s = lit(s, b' ')?;
    let (year, s) = digits(s, 4)?;
    let s = lit(s, b' ')?;
    let (hour, minute, second, s) = hms(s, Some(b':'))?;
    if s != b" GMT" {
        return None;
    }
    from_civil(Civil {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// Parses ISO-8601 extended with optional fraction, `2022-09-04T08:11:37.000Z` (the error
/// body's `ServerTime`, ListParts `LastModified`). `None` if malformed.
///
/// The fraction (1 to 9 digits) is truncated: the result is whole seconds. The zone must be
/// `Z`.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let s = s.trim().as_bytes();
    let (year, s) = digits(s, 4)?;
    let s = lit(s, b'-')?;
    let (month, s) = digits(s, 2)?;
    let s = lit(s, b'-')?;
    let (day, s) = digits(s, 2)?;
    let s = lit(s, b'T')?;
    let (hour, minute, second, mut s) = hms(s, Some(b':'))?;
    if let Some(rest) = lit(s, b'.') {
        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        s = &rest[n..];
    }
    if s != b"Z" {
        return None;
    }
    from_civil(Civil {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// Parses ISO-8601 basic, `20231216T162057Z` (`x-oss-date`, `x-amz-date`). `None` if malformed.
pub fn parse_iso8601_basic(s: &str) -> Option<i64> {
    let s = s.as_bytes();
    if s.len() != 16 {
        return None;
    }
    let (year, s) = digits(s, 4)?;
    let (month, s) = digits(s, 2)?;
    let (day, s) = digits(s, 2)?;
    let s = lit(s, b'T')?;
    let (hour, minute, second, s) = hms(s, None)?;
    if s != b"Z" {
        return None;
    }
    from_civil(Civil {
        year: i64::from(year),
        month,
        day,
        hour,
        minute,
        second,
    })
}

/// The largest clock correction believed from a server when the local clock looks sane: a
/// `RequestTimeTooSkewed` naming a time further than this from both the local clock and the
/// correction already in use is not believed (a server answering "2099" must not make every
/// later signature wrong, nor be persisted in a journal).
pub const MAX_CLOCK_CORRECTION: i64 = 30 * SECS_PER_DAY;
/// When the local clock is before the release floor (a board without an RTC boots in 1970),
/// any server time from the floor to this many seconds after it is believed.
pub const MAX_AFTER_FLOOR: i64 = 25 * 365 * SECS_PER_DAY;

/// True if `server` (Unix seconds, from a skew answer) may be used to correct the clock.
///
/// `local` is the local clock when the answer came, `offset` the correction in use (from an
/// earlier answer or the journal), `floor` the earliest time a server may name (no release
/// of ossup ran before it). A local clock before `floor` is wrong for sure: then any time in
/// `floor..=floor + MAX_AFTER_FLOOR` is believed. Otherwise the server must be within
/// [`MAX_CLOCK_CORRECTION`] of the local clock or of the corrected clock.
pub fn plausible_server_time(server: i64, local: i64, offset: i64, floor: i64) -> bool {
    if server < floor {
        return false;
    }
    if local < floor {
        return server <= floor.saturating_add(MAX_AFTER_FLOOR);
    }
    let near = |t: i64| server.abs_diff(t) <= MAX_CLOCK_CORRECTION as u64;
    near(local) || near(local.saturating_add(offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range the parsers accept.
    const MIN_UNIX: i64 = -62_167_219_200;
    const MAX_UNIX: i64 = 253_402_300_799;

    #[test]
    fn known_dates_format() {
        assert_eq!(iso8601_basic(0), "19700101T000000Z");
        assert_eq!(rfc1123(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // From the OSS V4 vectors: datetime 20231216T162057Z <-> unix 1702743657.
        assert_eq!(iso8601_basic(1_702_743_657), "20231216T162057Z");
        assert_eq!(iso8601_basic(1_704_164_645), "20240102T030405Z");
        // AWS S3 examples: Fri, 24 May 2013 00:00:00 GMT.
        assert_eq!(rfc1123(1_369_353_600), "Fri, 24 May 2013 00:00:00 GMT");
        assert_eq!(iso8601_basic(1_369_353_600), "20130524T000000Z");
        // Leap days and century rules.
        assert_eq!(iso8601_basic(951_782_400), "20000229T000000Z");
        assert_eq!(rfc1123(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(iso8601_basic(4_107_542_400), "21000301T000000Z");
        assert_eq!(iso8601_basic(-1), "19691231T235959Z");
        assert_eq!(rfc1123(-1), "Wed, 31 Dec 1969 23:59:59 GMT");
        assert_eq!(rfc1123(1_795_572_673), "Wed, 25 Nov 2026 02:11:13 GMT");
        assert_eq!(iso8601_basic(MIN_UNIX), "00000101T000000Z");
        assert_eq!(iso8601_basic(MAX_UNIX), "99991231T235959Z");
    }

    #[test]
    fn known_dates_parse() {
        assert_eq!(parse_iso8601_basic("20231216T162057Z"), Some(1_702_743_657));
        assert_eq!(parse_iso8601_basic("19700101T000000Z"), Some(0));
        assert_eq!(parse_iso8601_basic("19691231T235959Z"), Some(-1));
        assert_eq!(
            parse_rfc1123("Fri, 24 May 2013 00:00:00 GMT"),
            Some(1_369_353_600)
        );
        assert_eq!(
            parse_rfc1123("Wed, 25 Nov 2026 02:11:13 GMT"),
            Some(1_795_572_673)
        );
        assert_eq!(
            parse_rfc1123("  Thu, 01 Jan 1970 00:00:00 GMT\r\n"),
            Some(0)
        );
        assert_eq!(
            parse_iso8601("2022-09-04T08:11:37.000Z"),
            Some(1_662_279_097)
        );
        assert_eq!(parse_iso8601("2022-09-04T08:11:37Z"), Some(1_662_279_097));
        assert_eq!(
            parse_iso8601("2022-09-04T08:11:37.999999999Z"),
            Some(1_662_279_097)
        );
        assert_eq!(parse_iso8601("2000-02-29T00:00:00.5Z"), Some(951_782_400));
        assert_eq!(parse_iso8601("0000-01-01T00:00:00Z"), Some(MIN_UNIX));
        assert_eq!(parse_iso8601("9999-12-31T23:59:59Z"), Some(MAX_UNIX));
    }

    #[test]
    fn malformed_is_none() {
        for s in [
            "",
            "2023",
            "20231216T162057",
            "20231216T162057z",
            "20231216 162057Z",
            "20231316T162057Z",
            "20230230T000000Z",
            "20230229T000000Z",
            "21000229T000000Z",
            "20231216T242057Z",
            "20231216T166057Z",
            "20231216T162060Z",
            "20231200T162057Z",
            "+0231216T162057Z",
            "2023121６T16205Z",
            "20231216T162057ZZ",
            "２0231216T16205Z",
        ] {
            assert_eq!(parse_iso8601_basic(s), None, "{s:?}");
        }
        for s in [
            "",
            "Fri, 24 May 2013 00:00:00 UTC",
            "Fri, 24 May 2013 00:00:00",
            "Fri, 24 Mai 2013 00:00:00 GMT",
            "Fry, 24 May 2013 00:00:00 GMT",
            "Fri,  4 May 2013 00:00:00 GMT",
            "Fri, 31 Apr 2013 00:00:00 GMT",
            "Fri, 24 May 2013 24:00:00 GMT",
            "Fri, 24 May 2013 00:00:60 GMT",
            "Fri 24 May 2013 00:00:00 GMT ",
            "Friday, 24-May-13 00:00:00 GMT",
            "Fri May 24 00:00:00 2013",
            "Fri, 24 May 2013 00:00:00 GMTX",
            "Fri, 24 May 2013 00:0é:00 GMT",
        ] {
            assert_eq!(parse_rfc1123(s), None, "{s:?}");
        }
        for s in [
            "",
            "2022-09-04",
            "2022-09-04T08:11:37",
            "2022-09-04T08:11:37.Z",
            "2022-09-04T08:11:37.0000000000Z",
            "2022-09-04T08:11:37+08:00",
            "2022-09-04 08:11:37Z",
            "2022-9-04T08:11:37Z",
            "2022-13-04T08:11:37Z",
            "2022-09-31T08:11:37Z",
            "2022-09-04T08:11:37.000ZZ",
            "20220904T081137Z",
        ] {
            assert_eq!(parse_iso8601(s), None, "{s:?}");
        }
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        for t in [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX] {
            let _ = iso8601_basic(t);
            let _ = rfc1123(t);
        }
    }

    #[test]
    fn civil_days_round_trip_every_day_of_four_centuries() {
        // 1600-03-01 .. 2400-03-01 covers every leap-year rule twice.
        let start = days_from_civil(1600, 3, 1);
        let end = days_from_civil(2400, 3, 1);
        let mut prev = civil_from_days(start - 1);
        for d in start..end {
            let (y, m, dd) = civil_from_days(d);
            assert_eq!(days_from_civil(y, m, dd), d);
            assert!(dd >= 1 && dd <= days_in_month(y, m));
            // Consecutive days: next day in the month, or day 1 of the next month.
            if dd == 1 {
                assert_eq!(prev.2, days_in_month(prev.0, prev.1));
            } else {
                assert_eq!((prev.0, prev.1, prev.2 + 1), (y, m, dd));
            }
            prev = (y, m, dd);
        }
    }

    proptest! {
        #[test]
        fn round_trips(t in MIN_UNIX..=MAX_UNIX) {
            prop_assert_eq!(parse_iso8601_basic(&iso8601_basic(t)), Some(t));
            prop_assert_eq!(parse_rfc1123(&rfc1123(t)), Some(t));
            let basic = iso8601_basic(t);
            let extended = format!(
                "{}-{}-{}T{}:{}:{}.123Z",
                &basic[0..4], &basic[4..6], &basic[6..8], &basic[9..11], &basic[11..13], &basic[13..15]
            );
            prop_assert_eq!(parse_iso8601(&extended), Some(t));
        }

        #[test]
        fn formats_have_fixed_shape(t in MIN_UNIX..=MAX_UNIX) {
            prop_assert_eq!(iso8601_basic(t).len(), 16);
            prop_assert_eq!(rfc1123(t).len(), 29);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,40}") {
            let _ = parse_iso8601_basic(&s);
            let _ = parse_rfc1123(&s);
            let _ = parse_iso8601(&s);
        }

        #[test]
        fn parsers_never_panic_on_near_misses(s in "[0-9TZ:. ,A-Za-z-]{10,32}") {
            let _ = parse_iso8601_basic(&s);
            let _ = parse_rfc1123(&s);
            let _ = parse_iso8601(&s);
        }
    }

    #[test]
    fn server_times_are_believed_only_within_a_plausible_window() {
        let floor = 1_767_225_600; // 2026-01-01
        let now = floor + 300 * SECS_PER_DAY;
        let y2099 = parse_iso8601("2099-01-01T00:00:00Z").unwrap();
        // A good clock: small and moderate corrections, not 2099, not before the floor.
        assert!(plausible_server_time(now + 900, now, 0, floor));
        assert!(plausible_server_time(
            now - 29 * SECS_PER_DAY,
            now,
            0,
            floor
        ));
        assert!(!plausible_server_time(
            now + 31 * SECS_PER_DAY,
            now,
            0,
            floor
        ));
        assert!(!plausible_server_time(y2099, now, 0, floor));
        assert!(!plausible_server_time(floor - 1, floor - 1 + 60, 0, floor));
        // Near the correction already in use is fine (a clock that was years off).
        let offset = 3 * 365 * SECS_PER_DAY;
        assert!(plausible_server_time(now + offset + 60, now, offset, floor));
        // A clock before the floor (1970 after boot): anything from the floor on, bounded.
        assert!(plausible_server_time(now, 86_400, 0, floor));
        assert!(plausible_server_time(floor, 0, 0, floor));
        assert!(!plausible_server_time(y2099, 0, 0, floor));
        assert!(!plausible_server_time(i64::MAX, now, 0, floor));
    }
}

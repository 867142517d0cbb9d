//! Calendar arithmetic for signing and clock correction: Unix seconds to and from the date
//! formats OSS and S3 use. Owns: formatting and parsing. Must not: read a clock.

/// Formats Unix seconds (UTC) as ISO-8601 basic, `YYYYMMDDTHHMMSSZ` (the `x-oss-date` form).
pub fn iso8601_basic(unix: i64) -> String {
    let _ = unix;
    todo!()
}

/// Formats Unix seconds (UTC) as RFC 1123, `Wed, 25 Nov 2026 02:11:13 GMT` (the `Date` form).
pub fn rfc1123(unix: i64) -> String {
    let _ = unix;
    todo!()
}

/// Parses an RFC 1123 date (`Date` header). `None` if malformed.
pub fn parse_rfc1123(s: &str) -> Option<i64> {
    let _ = s;
    todo!()
}

/// Parses ISO-8601 extended with optional fraction, `2022-09-04T08:11:37.000Z` (the error
/// body's `ServerTime`, ListParts `LastModified`). `None` if malformed.
pub fn parse_iso8601(s: &str) -> Option<i64> {
    let _ = s;
    todo!()
}

/// Parses ISO-8601 basic, `20231216T162057Z` (`x-oss-date`, `x-amz-date`). `None` if malformed.
pub fn parse_iso8601_basic(s: &str) -> Option<i64> {
    let _ = s;
    todo!()
}

//! Refreshable credentials, the pure part: the credential document, when to refresh, and which
//! server answers mean "these credentials are no good" (the wait while they are refreshed is
//! the upload's own retry backoff).
//!
//! Owns: parsing the JSON document that Alibaba STS, an Alibaba credentials URI and an AWS
//! `credential_process` print ([`parse_document`]), RFC 3339 expiry times ([`parse_rfc3339`]),
//! the refresh decision ([`refresh_at`], [`usable`]) and the rejection codes
//! ([`is_rejection`]). Must not: read files, run processes, open sockets or look at the clock
//! (times come in as arguments).
//!
//! **Secrets.** No error of this module carries a value from the document: errors name the
//! field and what is wrong with it, never its content.

use std::fmt;

use crate::proto::sign::Credentials;

/// Largest credential document accepted (an STS token is 1-3 KiB; the document is small).
pub const MAX_DOCUMENT: usize = 64 * 1024;
/// Longest access key id accepted.
pub const MAX_ID: usize = 256;
/// Longest access key secret accepted.
pub const MAX_SECRET: usize = 1024;
/// Longest security token accepted.
pub const MAX_TOKEN: usize = 16 * 1024;
/// Credentials that expire within this many seconds are not used when the source can give
/// fresh ones.
pub const MIN_VALIDITY_SECS: i64 = 60;
/// At most this long before `Expiration` a cached answer is refreshed (less for short
/// lifetimes: a fifth of the lifetime).
pub const REFRESH_BEFORE_SECS: i64 = 300;
/// Deepest JSON nesting accepted.
const MAX_DEPTH: usize = 8;

/// Credentials with their expiry, as a source gave them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Issued {
    /// The key pair and token (its `Debug` redacts the secret and the token).
    pub credentials: Credentials,
    /// Unix seconds of `Expiration`, if the document had one.
    pub expires: Option<i64>,
}

/// Why a credential document was refused. Never holds a value from the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DocError {
    /// Longer than [`MAX_DOCUMENT`].
    TooLarge,
    /// Empty input.
    Empty,
    /// Not JSON (byte offset of the problem).
    NotJson(usize),
    /// JSON, but not an object.
    NotObject,
    /// A required field is missing (its name).
    Missing(&'static str),
    /// A field has the wrong type, is empty, too long or holds characters that cannot go into
    /// a header (its name).
    BadField(&'static str),
    /// `Expiration` is not an RFC 3339 time.
    BadExpiration,
    /// The broker said something other than `"Code": "Success"` (the code, bounded).
    Code(String),
}

impl fmt::Display for DocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DocError::TooLarge => write!(f, "longer than {MAX_DOCUMENT} bytes"),
            DocError::Empty => f.write_str("empty"),
            DocError::NotJson(at) => write!(f, "not JSON (at byte {at})"),
            DocError::NotObject => f.write_str("not a JSON object"),
            DocError::Missing(n) => write!(f, "no {n}"),
            DocError::BadField(n) => write!(f, "{n} is not a usable string"),
            DocError::BadExpiration => f.write_str("Expiration is not an RFC 3339 time"),
            DocError::Code(c) => write!(f, "the answer's Code is {c:?}, not \"Success\""),
        }
    }
}

impl std::error::Error for DocError {}

/// A JSON value, as far as this module cares.
enum Value {
    Str(String),
    Obj(Vec<(String, Value)>),
    /// `null`.
    Null,
    /// Numbers, booleans, null, arrays: skipped (only `Version` is a number, and it is not
    /// needed).
    Other,
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && matches!(self.s[self.i], b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn err<T>(&self) -> Result<T, DocError> {
        Err(DocError::NotJson(self.i))
    }

    fn eat(&mut self, b: u8) -> Result<(), DocError> {
        self.ws();
        if self.s.get(self.i) == Some(&b) {
            self.i += 1;
            Ok(())
        } else {
            self.err()
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, DocError> {
        if depth > MAX_DEPTH {
            return self.err();
        }
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut fields = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Value::Obj(fields));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.eat(b':')?;
                    let v = self.value(depth + 1)?;
                    fields.push((k, v));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Value::Obj(fields));
                        }
                        _ => return self.err(),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Value::Other);
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Value::Other);
                        }
                        _ => return self.err(),
                    }
                }
            }
            Some(b'"') => self.string().map(Value::Str),
            Some(b't') => self.word(b"true"),
            Some(b'f') => self.word(b"false"),
            Some(b'n') => self.word(b"null").map(|_| Value::Null),
            Some(b'-' | b'0'..=b'9') => {
                let start = self.i;
                while self.i < self.s.len()
                    && matches!(
                        self.s[self.i],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.i += 1;
                }
                let t = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("x");
                if t.parse::<f64>().is_err() {
                    self.i = start;
                    return self.err();
                }
                Ok(Value::Other)
            }
            _ => self.err(),
        }
    }

    fn word(&mut self, w: &[u8]) -> Result<Value, DocError> {
        if self.s[self.i..].starts_with(w) {
            self.i += w.len();
            Ok(Value::Other)
        } else {
            self.err()
        }
    }

    fn hex4(&mut self) -> Result<u32, DocError> {
        let h = self
            .s
            .get(self.i..self.i + 4)
            .ok_or(DocError::NotJson(self.i))?;
        let t = std::str::from_utf8(h).map_err(|_| DocError::NotJson(self.i))?;
        let v = u32::from_str_radix(t, 16).map_err(|_| DocError::NotJson(self.i))?;
        self.i += 4;
        Ok(v)
    }

    fn string(&mut self) -> Result<String, DocError> {
        if self.s.get(self.i) != Some(&b'"') {
            return self.err();
        }
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&b) = self.s.get(self.i) else {
                return self.err();
            };
            self.i += 1;
            match b {
                b'"' => break,
                b'\\' => {
                    let Some(&e) = self.s.get(self.i) else {
                        return self.err();
                    };
                    self.i += 1;
                    let c = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            let hi = self.hex4()?;
                            let cp = if (0xD800..0xDC00).contains(&hi) {
                                if self.s.get(self.i..self.i + 2) != Some(b"\\u") {
                                    return self.err();
                                }
                                self.i += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return self.err();
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            match char::from_u32(cp) {
                                Some(c) => c,
                                None => return self.err(),
                            }
                        }
                        _ => return self.err(),
                    };
                    let mut tmp = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
                }
                0..=0x1F => return self.err(),
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| DocError::NotJson(self.i))
    }
}

/// Parses a credential document: a JSON object with `AccessKeyId`, `AccessKeySecret` (AWS:
/// `SecretAccessKey`), optionally `SecurityToken` (AWS: `SessionToken`) and `Expiration`
/// (RFC 3339). `Version` and other fields are ignored; a `Code` other than `"Success"` (an
/// Alibaba credentials URI's answer) is refused. An STS `AssumeRole` answer, whose fields sit
/// in a `Credentials` object, is accepted too.
pub fn parse_document(doc: &[u8]) -> Result<Issued, DocError> {
    if doc.len() > MAX_DOCUMENT {
        return Err(DocError::TooLarge);
    }
    let doc = doc.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(doc);
    if doc.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(DocError::Empty);
    }
    let mut p = Parser { s: doc, i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != doc.len() {
        return p.err();
    }
    let Value::Obj(mut top) = v else {
        return Err(DocError::NotObject);
    };
    if let Some(Value::Str(code)) = field(&top, &["Code"]) {
        if code != "Success" {
            let c: String = code.chars().take(64).collect();
            return Err(DocError::Code(c));
        }
    }
    if field(&top, &["AccessKeyId"]).is_none() {
        if let Some(i) = top.iter().position(|(k, _)| k == "Credentials") {
            if let (_, Value::Obj(inner)) = top.swap_remove(i) {
                top = inner;
            }
        }
    }
    let id = string_field(&top, &["AccessKeyId"], "AccessKeyId", MAX_ID)?
        .ok_or(DocError::Missing("AccessKeyId"))?;
    let secret = string_field(
        &top,
        &["AccessKeySecret", "SecretAccessKey"],
        "AccessKeySecret",
        MAX_SECRET,
    )?
    .ok_or(DocError::Missing("AccessKeySecret"))?;
    let token = string_field(
        &top,
        &["SecurityToken", "SessionToken"],
        "SecurityToken",
        MAX_TOKEN,
    )?;
    let expires = match field(&top, &["Expiration"]) {
        None | Some(Value::Null) => None,
        Some(Value::Str(s)) if s.is_empty() => None,
        Some(Value::Str(s)) => Some(parse_rfc3339(s).ok_or(DocError::BadExpiration)?),
        Some(_) => return Err(DocError::BadExpiration),
    };
    Ok(Issued {
        credentials: Credentials {
            access_key_id: id,
            access_key_secret: secret,
            security_token: token,
        },
        expires,
    })
}

fn field<'a>(obj: &'a [(String, Value)], names: &[&str]) -> Option<&'a Value> {
    names
        .iter()
        .find_map(|n| obj.iter().find(|(k, _)| k == n).map(|(_, v)| v))
}

/// A string field that must be non-empty visible ASCII (it goes into a header or an HMAC key)
/// of at most `max` bytes; `None` if absent or null.
fn string_field(
    obj: &[(String, Value)],
    names: &[&str],
    what: &'static str,
    max: usize,
) -> Result<Option<String>, DocError> {
    match field(obj, names) {
        None => Ok(None),
        // `null` means absent (`"SessionToken": null` for long-lived keys).
        Some(Value::Null) => Ok(None),
        Some(Value::Str(s))
            if !s.is_empty() && s.len() <= max && s.bytes().all(|b| (0x21..0x7F).contains(&b)) =>
        {
            Ok(Some(s.clone()))
        }
        // `"SecurityToken": ""` means none too.
        Some(Value::Str(s)) if s.is_empty() && what == "SecurityToken" => Ok(None),
        Some(_) => Err(DocError::BadField(what)),
    }
}

/// Parses an RFC 3339 time (`2026-12-04T10:00:00Z`, with an optional fraction, `z`/`t` in
/// lower case, or a `+08:00` style offset) into unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim().to_ascii_uppercase();
    if !s.is_ascii() {
        return None;
    }
    if let Some(base) = s.strip_suffix('Z') {
        return crate::proto::time::parse_iso8601(&format!("{base}Z"));
    }
    if s.len() < 6 {
        return None;
    }
    let (base, off) = s.split_at(s.len() - 6);
    let ob = off.as_bytes();
    let sign = match ob[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if ob[3] != b':' || !ob[1..3].iter().chain(&ob[4..6]).all(u8::is_ascii_digit) {
        return None;
    }
    let hh: i64 = off[1..3].parse().ok()?;
    let mm: i64 = off[4..6].parse().ok()?;
    if hh > 23 || mm > 59 {
        return None;
    }
    let t = crate::proto::time::parse_iso8601(&format!("{base}Z"))?;
    Some(t - sign * (hh * 3600 + mm * 60))
}

/// When cached credentials obtained at `obtained` and expiring at `expires` (unix seconds)
/// should be refreshed: [`REFRESH_BEFORE_SECS`] before `expires`, or a fifth of the lifetime
/// before it when that is less.
pub fn refresh_at(obtained: i64, expires: i64) -> i64 {
    let life = expires.saturating_sub(obtained).max(0);
    expires - REFRESH_BEFORE_SECS.min(life / 5)
}

/// Whether credentials expiring at `expires` may still sign at `now`: more than
/// [`MIN_VALIDITY_SECS`] left, or no expiry at all.
pub fn usable(now: i64, expires: Option<i64>) -> bool {
    expires.is_none_or(|e| e.saturating_sub(now) > MIN_VALIDITY_SECS)
}

/// Whether a cached answer (obtained at `obtained`, expiring at `expires`) should be fetched
/// anew at `now`.
pub fn needs_refresh(now: i64, obtained: i64, expires: Option<i64>) -> bool {
    match expires {
        None => false,
        Some(e) => now >= refresh_at(obtained, e) || !usable(now, Some(e)),
    }
}

/// Server error codes that say the credentials themselves are expired or unknown, which a
/// refreshable source can cure: OSS `SecurityTokenExpired`, `InvalidSecurityToken`,
/// `InvalidAccessKeyId`, and S3 `ExpiredToken`, `InvalidToken`. (`SignatureDoesNotMatch` and
/// `AccessDenied` are not: they mean a wrong secret or a missing permission.)
pub fn is_rejection(code: &str) -> bool {
    matches!(
        code,
        "SecurityTokenExpired"
            | "InvalidSecurityToken"
            | "InvalidAccessKeyId"
            | "ExpiredToken"
            | "InvalidToken"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alibaba_aws_and_sts_spellings() {
        let ali = br#"{"Code":"Success","AccessKeyId":"STS.abc","AccessKeySecret":"s3cr3t",
            "SecurityToken":"tok+/=","Expiration":"2026-12-04T10:00:00Z","LastUpdated":"x"}"#;
        let i = parse_document(ali).unwrap();
        assert_eq!(i.credentials.access_key_id, "STS.abc");
        assert_eq!(i.credentials.access_key_secret, "s3cr3t");
        assert_eq!(i.credentials.security_token.as_deref(), Some("tok+/="));
        assert_eq!(i.expires, parse_rfc3339("2026-12-04T10:00:00Z"));
        let aws = br#"{"Version": 1, "AccessKeyId": "AKIA", "SecretAccessKey": "sk",
            "SessionToken": "st", "Expiration": "2026-12-04T10:00:00.123+08:00"}"#;
        let i = parse_document(aws).unwrap();
        assert_eq!(i.credentials.access_key_secret, "sk");
        assert_eq!(i.credentials.security_token.as_deref(), Some("st"));
        assert_eq!(i.expires, parse_rfc3339("2026-12-04T02:00:00Z"));
        // Long-lived keys: no token, no expiry.
        let plain = br#"{"AccessKeyId":"a","AccessKeySecret":"b","SessionToken":null}"#;
        let i = parse_document(plain).unwrap();
        assert_eq!((i.credentials.security_token, i.expires), (None, None));
        let sts = br#"{"RequestId":"r","AssumedRoleUser":{"Arn":"a","Id":["x",1,true]},
            "Credentials":{"AccessKeyId":"STS.n","AccessKeySecret":"s","SecurityToken":"t",
            "Expiration":"2026-12-04T10:00:00Z"}}"#;
        assert_eq!(
            parse_document(sts).unwrap().credentials.access_key_id,
            "STS.n"
        );
        // Escapes decode.
        let esc = br#"{"AccessKeyId":"a\u0041\/","AccessKeySecret":"b"}"#;
        assert_eq!(
            parse_document(esc).unwrap().credentials.access_key_id,
            "aA/"
        );
    }

    #[test]
    fn bad_documents_name_the_problem_never_the_value() {
        let cases: &[(&[u8], DocError)] = &[
            (b"", DocError::Empty),
            (b"  \n", DocError::Empty),
            (b"[1,2]", DocError::NotObject),
            (b"\"x\"", DocError::NotObject),
            (
                br#"{"AccessKeySecret":"hunter2"}"#,
                DocError::Missing("AccessKeyId"),
            ),
            (
                br#"{"AccessKeyId":"a"}"#,
                DocError::Missing("AccessKeySecret"),
            ),
            (
                br#"{"AccessKeyId":"a b","AccessKeySecret":"hunter2"}"#,
                DocError::BadField("AccessKeyId"),
            ),
            (
                br#"{"AccessKeyId":"a","AccessKeySecret":"hunter2","SecurityToken":"x\ny"}"#,
                DocError::BadField("SecurityToken"),
            ),
            (
                br#"{"AccessKeyId":"a","AccessKeySecret":"hunter2","Expiration":"tomorrow"}"#,
                DocError::BadExpiration,
            ),
            (
                br#"{"Code":"Forbidden","AccessKeyId":"a","AccessKeySecret":"hunter2"}"#,
                DocError::Code("Forbidden".into()),
            ),
        ];
        for (doc, want) in cases {
            let got = parse_document(doc).unwrap_err();
            assert_eq!(&got, want, "{}", String::from_utf8_lossy(doc));
            assert!(!got.to_string().contains("hunter2"));
        }
        for garbage in [
            &b"{"[..],
            b"{\"AccessKeyId\":\"a\",}",
            b"{\"AccessKeyId\" \"a\"}",
            b"{\"a\":\"\\x\"}",
            b"{\"a\":\"\\ud800\"}",
            b"{\"a\":01x}",
            b"{\"a\":\"b\"} trailing",
            b"Traceback (most recent call last):",
            b"\xff\xfe{}",
        ] {
            assert!(
                matches!(parse_document(garbage), Err(DocError::NotJson(_))),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert!(parse_document(deep.as_bytes()).is_err());
        let big = vec![b' '; MAX_DOCUMENT + 1];
        assert_eq!(parse_document(&big), Err(DocError::TooLarge));
    }

    #[test]
    fn rfc3339() {
        let z = parse_rfc3339("2026-12-04T10:00:00Z").unwrap();
        assert_eq!(parse_rfc3339("2026-12-04t10:00:00.5z"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-04T18:00:00+08:00"), Some(z));
        assert_eq!(parse_rfc3339("2026-12-04T05:30:00-04:30"), Some(z));
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        for bad in [
            "2026-12-04",
            "2026-12-04T10:00:00",
            "2026-12-04T10:00:00+0800",
            "2026-12-04T10:00:00+24:00",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn refresh_five_minutes_or_a_fifth_before_expiry() {
        // 1 h token: 5 min before.
        assert_eq!(refresh_at(0, 3600), 3300);
        // 15 min token: a fifth is 3 min.
        assert_eq!(refresh_at(0, 900), 720);
        // 10 s token: 2 s before.
        assert_eq!(refresh_at(100, 110), 108);
        assert!(!needs_refresh(3299, 0, Some(3600)));
        assert!(needs_refresh(3300, 0, Some(3600)));
        assert!(!needs_refresh(1 << 40, 0, None));
        // Never sign with less than a minute left, whatever the lifetime.
        assert!(usable(0, Some(61)) && !usable(0, Some(60)) && usable(5, None));
        assert!(needs_refresh(10, 0, Some(65)));
    }

    #[test]
    fn rejection_codes() {
        for c in [
            "SecurityTokenExpired",
            "InvalidSecurityToken",
            "InvalidAccessKeyId",
            "ExpiredToken",
            "InvalidToken",
        ] {
            assert!(is_rejection(c), "{c}");
        }
        for c in ["SignatureDoesNotMatch", "AccessDenied", "NoSuchBucket", ""] {
            assert!(!is_rejection(c), "{c}");
        }
    }

    #[test]
    fn field_limits_and_optional_fields() {
        let doc = |id: &str, secret: &str, token: &str| {
            format!(
                r#"{{"AccessKeyId":"{id}","AccessKeySecret":"{secret}","SecurityToken":"{token}"}}"#
            )
        };
        // At the limits: accepted; one byte over: refused, naming the field.
        let ok = doc(
            &"i".repeat(MAX_ID),
            &"s".repeat(MAX_SECRET),
            &"t".repeat(MAX_TOKEN),
        );
        let i = parse_document(ok.as_bytes()).unwrap();
        assert_eq!(i.credentials.security_token.unwrap().len(), MAX_TOKEN);
        for (d, field) in [
            (doc(&"i".repeat(MAX_ID + 1), "s", "t"), "AccessKeyId"),
            (
                doc("i", &"s".repeat(MAX_SECRET + 1), "t"),
                "AccessKeySecret",
            ),
            (doc("i", "s", &"t".repeat(MAX_TOKEN + 1)), "SecurityToken"),
            (doc("", "s", "t"), "AccessKeyId"),
            (doc("i", "", "t"), "AccessKeySecret"),
            (doc("i", "s\\u00e9", "t"), "AccessKeySecret"),
            (doc("i", "s", "t\\u0000"), "SecurityToken"),
        ] {
            assert_eq!(parse_document(d.as_bytes()), Err(DocError::BadField(field)));
        }
        // Wrong types.
        for (d, want) in [
            (
                r#"{"AccessKeyId":1,"AccessKeySecret":"s"}"#,
                DocError::BadField("AccessKeyId"),
            ),
            (
                r#"{"AccessKeyId":"a","SecretAccessKey":true}"#,
                DocError::BadField("AccessKeySecret"),
            ),
            (
                r#"{"AccessKeyId":"a","AccessKeySecret":"s","SessionToken":7}"#,
                DocError::BadField("SecurityToken"),
            ),
            (
                r#"{"AccessKeyId":"a","AccessKeySecret":"s","Expiration":1700000000}"#,
                DocError::BadExpiration,
            ),
            (
                r#"{"AccessKeyId":null,"AccessKeySecret":"s"}"#,
                DocError::Missing("AccessKeyId"),
            ),
        ] {
            assert_eq!(parse_document(d.as_bytes()), Err(want), "{d}");
        }
        // Empty token and null or empty expiration mean none; a BOM and white space are fine.
        let d = b"\xEF\xBB\xBF \n{\"AccessKeyId\":\"a\",\"AccessKeySecret\":\"s\",\"SecurityToken\":\"\",\"Expiration\":null}\n";
        let i = parse_document(d).unwrap();
        assert_eq!((i.credentials.security_token, i.expires), (None, None));
        let d = br#"{"AccessKeyId":"a","AccessKeySecret":"s","Expiration":""}"#;
        assert_eq!(parse_document(d).unwrap().expires, None);
        // Alibaba's spelling wins over AWS's when both are present; Code Success with AWS
        // spellings is fine; a non-string Code is not a broker refusal.
        let d = br#"{"Code":"Success","AccessKeyId":"a","AccessKeySecret":"ali","SecretAccessKey":"aws"}"#;
        assert_eq!(
            parse_document(d).unwrap().credentials.access_key_secret,
            "ali"
        );
        let d = br#"{"Code":"Success","Version":1,"AccessKeyId":"a","SecretAccessKey":"aws"}"#;
        assert_eq!(
            parse_document(d).unwrap().credentials.access_key_secret,
            "aws"
        );
        // A long broker code is cut and shown escaped.
        let d = format!(
            r#"{{"Code":"{}\n","AccessKeyId":"a","AccessKeySecret":"s"}}"#,
            "E".repeat(500)
        );
        let e = parse_document(d.as_bytes()).unwrap_err();
        assert!(matches!(&e, DocError::Code(c) if c.len() == 64));
        assert!(!e.to_string().contains('\n') && e.to_string().len() < 120);
        // An STS answer without Credentials is missing the id.
        let d = br#"{"RequestId":"r","Credentials":"nope"}"#;
        assert_eq!(parse_document(d), Err(DocError::Missing("AccessKeyId")));
    }

    #[test]
    fn rfc3339_never_panics_on_odd_input() {
        for s in [
            "\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}\u{e9}",
            "x\u{e9}\u{e9}\u{e9}\u{e9}",
            "2026-12-04T10:00:00+08:0\u{e9}",
            "+08:00",
            "Z",
            "zzzzzz",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
        // Leap day and end of year with offsets crossing the date line.
        assert_eq!(
            parse_rfc3339("2028-03-01T01:00:00+02:00"),
            parse_rfc3339("2028-02-29T23:00:00Z")
        );
        assert_eq!(
            parse_rfc3339("2026-12-31T23:30:00-01:00"),
            parse_rfc3339("2027-01-01T00:30:00Z")
        );
        assert_eq!(parse_rfc3339("2027-02-29T00:00:00Z"), None);
    }

    #[test]
    fn expiry_math_edges() {
        // Already expired when obtained: refresh at once, never usable.
        assert_eq!(refresh_at(100, 50), 50);
        assert!(needs_refresh(100, 100, Some(50)));
        assert!(!usable(100, Some(50)));
        // Exactly at the minute boundary: not usable; one second more: usable.
        assert!(!usable(1000, Some(1060)) && usable(1000, Some(1061)));
        // 12 h token: 5 min before; refresh never lies after expiry or before obtained.
        assert_eq!(refresh_at(0, 43_200), 43_200 - 300);
        for (o, e) in [
            (0, 1),
            (0, 4),
            (0, 5),
            (10, 1000),
            (0, 1 << 40),
            (i64::MIN, i64::MAX),
        ] {
            let r = refresh_at(o, e);
            assert!(r <= e && (r >= o || e < o), "{o} {e} {r}");
        }
        // Fresh 15 min token: no refresh for 12 minutes, then refresh.
        assert!(!needs_refresh(719, 0, Some(900)) && needs_refresh(720, 0, Some(900)));
    }
}

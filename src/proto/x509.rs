//! The few facts of an X.509 certificate that ossup reads itself, for TLS errors that say what
//! is wrong and for pinning a self-signed server certificate: its validity dates and the common
//! names of its issuer and subject; and the decision whether a certificate date problem is
//! probably the board's clock.
//!
//! Owns: a bounded DER walk over `tbsCertificate` (version, serial, signature algorithm,
//! issuer, validity, subject), nothing deeper. Must not: verify anything (webpki does), read
//! files or clocks (the shell passes the time).

/// A DER element: (tag, contents, rest after it). `None` if malformed or truncated.
fn tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, mut b) = b.split_first()?;
    let len = if l0 < 0x80 {
        l0 as usize
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || b.len() < n {
            return None;
        }
        let mut len = 0usize;
        for &x in &b[..n] {
            len = (len << 8) | x as usize;
        }
        b = &b[n..];
        len
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// What ossup reads of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CertFacts {
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// The issuer's common name (empty if it has none), at most 128 bytes, escaped.
    pub issuer_cn: String,
    /// The subject's common name (empty if it has none), at most 128 bytes, escaped.
    pub subject_cn: String,
}

/// Reads [`CertFacts`] from a DER certificate. `None` if it is not one.
pub fn facts(der: &[u8]) -> Option<CertFacts> {
    let (0x30, cert, _) = tlv(der)? else {
        return None;
    };
    let (0x30, tbs, _) = tlv(cert)? else {
        return None;
    };
    let mut rest = tbs;
    let (tag, _, r) = tlv(rest)?;
    if tag == 0xa0 {
        rest = r; // [0] version
    }
    let (0x02, _, r) = tlv(rest)? else {
        return None; // serial
    };
    let (0x30, _, r) = tlv(r)? else {
        return None; // signature algorithm
    };
    let (0x30, issuer, r) = tlv(r)? else {
        return None;
    };
    let (0x30, validity, r) = tlv(r)? else {
        return None;
    };
    let (0x30, subject, _) = tlv(r)? else {
        return None;
    };
    let (t1, nb, v) = tlv(validity)?;
    let (t2, na, _) = tlv(v)?;
    Some(CertFacts {
        not_before: time(t1, nb)?,
        not_after: time(t2, na)?,
        issuer_cn: common_name(issuer).unwrap_or_default(),
        subject_cn: common_name(subject).unwrap_or_default(),
    })
}

/// UTCTime (`YYMMDDHHMMSSZ`, 0x17) or GeneralizedTime (`YYYYMMDDHHMMSSZ`, 0x18).
fn time(tag: u8, v: &[u8]) -> Option<i64> {
    let s = core::str::from_utf8(v).ok()?;
    let full = match (tag, s.len()) {
        (0x17, 13) => {
            let yy: u32 = s.get(..2)?.parse().ok()?;
            // RFC 5280 §4.1.2.5.1: 50..99 are 19xx, 00..49 are 20xx.
            let century = if yy >= 50 { "19" } else { "20" };
            format!("{century}{s}")
        }
        (0x18, 15) => s.to_string(),
        _ => return None,
    };
    // YYYYMMDDHHMMSSZ -> YYYYMMDDTHHMMSSZ
    let basic = format!("{}T{}", full.get(..8)?, full.get(8..)?);
    crate::proto::time::parse_iso8601_basic(&basic)
}

/// The first common name (OID 2.5.4.3) in a Name, escaped and bounded.
fn common_name(mut name: &[u8]) -> Option<String> {
    while !name.is_empty() {
        let (_, set, r) = tlv(name)?;
        name = r;
        let (0x30, atv, _) = tlv(set)? else {
            continue;
        };
        let (0x06, oid, r) = tlv(atv)? else {
            continue;
        };
        if oid != [0x55, 0x04, 0x03] {
            continue;
        }
        let (_, value, _) = tlv(r)?;
        let text = String::from_utf8_lossy(value);
        return Some(
            text.chars()
                .take(128)
                .flat_map(char::escape_debug)
                .collect(),
        );
    }
    None
}

/// How far the local clock may lag a certificate's `notBefore` before ossup says the clock,
/// not the certificate, is probably wrong: certificates are rarely used the day they are made,
/// and a board without an RTC boots in 1970 or at its image's build date.
pub const CLOCK_SUSPECT_SECS: i64 = 86_400;

/// Whether a certificate that is "not yet valid" at `now` more likely means a wrong local
/// clock: `now` is before `not_before` by more than [`CLOCK_SUSPECT_SECS`].
pub fn clock_probably_wrong(now: i64, not_before: i64) -> bool {
    not_before.saturating_sub(now) > CLOCK_SUSPECT_SECS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(params: rcgen::CertificateParams) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn reads_dates_and_names_of_a_generated_certificate() {
        let mut p = rcgen::CertificateParams::new(vec!["gw.example".to_string()]).unwrap();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "Plant CA \u{1b}[2J");
        p.not_before = rcgen::date_time_ymd(2031, 2, 3);
        p.not_after = rcgen::date_time_ymd(2051, 6, 7);
        let f = facts(&cert(p)).expect("facts");
        assert_eq!(f.not_before, 1_927_843_200, "2031-02-03T00:00:00Z");
        assert_eq!(f.not_after, 2_569_708_800, "2051-06-07 (GeneralizedTime)");
        assert_eq!(f.subject_cn, f.issuer_cn, "self-signed");
        assert!(f.subject_cn.starts_with("Plant CA "));
        assert!(
            !f.subject_cn.contains('\u{1b}'),
            "escaped: {}",
            f.subject_cn
        );
    }

    #[test]
    fn utc_time_centuries() {
        assert_eq!(time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(time(0x17, b"500101000000Z"), Some(-631_152_000));
        assert_eq!(time(0x18, b"20000101000000Z"), Some(946_684_800));
        assert_eq!(time(0x17, b"5001010000Z"), None);
        assert_eq!(time(0x04, b"500101000000Z"), None);
    }

    #[test]
    fn malformed_der_is_none_never_a_panic() {
        assert_eq!(facts(b""), None);
        assert_eq!(facts(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        let good = cert(rcgen::CertificateParams::new(vec!["a".to_string()]).unwrap());
        for cut in 0..good.len() {
            let _ = facts(&good[..cut]);
        }
        let mut flipped = good.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0xff;
            let _ = facts(&flipped);
            flipped[i] ^= 0xff;
        }
    }

    #[test]
    fn clock_suspicion() {
        let nb = 1_800_000_000;
        assert!(clock_probably_wrong(0, nb), "a board that booted in 1970");
        assert!(
            !clock_probably_wrong(nb - 3600, nb),
            "an hour early: the certificate is new"
        );
        assert!(clock_probably_wrong(nb - CLOCK_SUSPECT_SECS - 1, nb));
        assert!(!clock_probably_wrong(i64::MIN, i64::MIN));
    }
}

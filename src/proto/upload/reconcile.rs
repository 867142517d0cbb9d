//! Reconciliation: merge what the journal says with what ListParts says into a per-part plan.
//!
//! Owns: the pure rule that decides, for each part number, whether it is done, must be checked
//! against the local bytes, or must be sent again. Must not: page through ListParts itself
//! (the state machine emits one call per page) or read the file (the shell computes digests).

use std::collections::BTreeMap;

use crate::proto::checkpoint::Etag;
use crate::proto::geometry::Geometry;
use crate::proto::xml::ListedPart;

/// A part the journal recorded as acknowledged by the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalPart {
    /// ETag the server returned.
    pub etag: Etag,
    /// CRC-64 of the local bytes.
    pub crc64: u64,
    /// Length.
    pub len: u64,
}

/// What to do about one part after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Journal and server agree: never send again, provided the local bytes still have the
    /// journal's CRC-64 (see [`still_matches`]; the machine re-reads every such part before
    /// Complete, because length, mtime and inode can stay the same while the bytes change).
    Done(JournalPart),
    /// The server has a part of the right size that the journal does not vouch for: adopt it
    /// only if the local bytes match (CRC-64, or the ETag as an MD5 when no CRC is listed).
    Verify(ListedPart),
    /// Send (again).
    Send,
}

/// Compares ETags the way servers mean them: quotes and hex case do not matter.
pub fn etag_eq(a: &str, b: &str) -> bool {
    a.trim_matches('"')
        .eq_ignore_ascii_case(b.trim_matches('"'))
}

/// The plan for every part `1..=geometry.count()`, index `n - 1`.
///
/// A part is `Done` iff the server lists it with the expected size, the journal has it with
/// the same size and ETag, and the listed CRC-64 (when present) equals the journal's. Parts
/// the server lists beyond the file's part count are ignored (Complete does not name them).
pub fn reconcile(
    geometry: &Geometry,
    journal: &BTreeMap<u32, JournalPart>,
    listed: &[ListedPart],
) -> Vec<Plan> {
    let count = geometry.count();
    let mut server: BTreeMap<u32, &ListedPart> = BTreeMap::new();
    for p in listed {
        if p.n >= 1 && p.n <= count {
            server.insert(p.n, p);
        }
    }
    (1..=count)
        .map(|n| {
            let expected = geometry.part(n).1;
            match (journal.get(&n), server.get(&n)) {
                (Some(j), Some(s))
                    if s.size == expected
                        && j.len == expected
                        && etag_eq(&j.etag.to_text(), &s.etag)
                        && s.crc64.is_none_or(|c| c == j.crc64) =>
                {
                    Plan::Done(j.clone())
                }
                (_, Some(s)) if s.size == expected => Plan::Verify((*s).clone()),
                _ => Plan::Send,
            }
        })
        .collect()
}

/// True if the local digests of a part vouch for the listed part `s`: the listed CRC-64
/// equals ours, or (no CRC listed) the ETag is our MD5 in hex.
pub fn local_matches(s: &ListedPart, crc64: u64, md5: &[u8; 16]) -> bool {
    match s.crc64 {
        Some(c) => c == crc64,
        None => etag_eq(&s.etag, &crate::proto::sign::hex(md5)),
    }
}

/// True if a part an earlier run sent (journal `j`) may be kept: the CRC-64 of the bytes now
/// in the file equals the one recorded when it was sent. Otherwise it is sent again.
pub fn still_matches(j: &JournalPart, crc64_now: u64) -> bool {
    j.crc64 == crc64_now
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo() -> Geometry {
        Geometry {
            file_len: 250,
            part_size: 100,
        }
    }

    fn listed(n: u32, etag: &str, size: u64, crc64: Option<u64>) -> ListedPart {
        ListedPart {
            n,
            etag: etag.to_string(),
            size,
            crc64,
        }
    }

    fn jp(etag: &str, crc64: u64, len: u64) -> JournalPart {
        JournalPart {
            etag: Etag::Text(etag.to_string()),
            crc64,
            len,
        }
    }

    #[test]
    fn agreeing_parts_are_done_others_sent_or_verified() {
        let mut journal = BTreeMap::new();
        journal.insert(1, jp("\"A\"", 11, 100));
        journal.insert(2, jp("\"B\"", 22, 100));
        let server = vec![
            listed(1, "\"a\"", 100, Some(11)), // same ETag modulo case: done
            listed(3, "\"C\"", 50, None),      // server only, right size: verify
            listed(4, "\"D\"", 100, None),     // beyond the file: ignored
        ];
        let plan = reconcile(&geo(), &journal, &server);
        assert_eq!(plan.len(), 3);
        assert!(matches!(plan[0], Plan::Done(_)));
        assert_eq!(plan[1], Plan::Send, "journal has it, server lacks it");
        assert_eq!(plan[2], Plan::Verify(listed(3, "\"C\"", 50, None)));
    }

    #[test]
    fn disagreements_are_never_done() {
        let mut journal = BTreeMap::new();
        journal.insert(1, jp("\"A\"", 11, 100));
        journal.insert(2, jp("\"B\"", 22, 100));
        journal.insert(3, jp("\"C\"", 33, 50));
        let server = vec![
            listed(1, "\"X\"", 100, Some(11)), // other ETag: overwritten on the server
            listed(2, "\"B\"", 100, Some(99)), // other CRC
            listed(3, "\"C\"", 49, Some(33)),  // wrong size: resend, never adopt
        ];
        let plan = reconcile(&geo(), &journal, &server);
        assert!(matches!(plan[0], Plan::Verify(_)));
        assert!(matches!(plan[1], Plan::Verify(_)));
        assert_eq!(plan[2], Plan::Send);
    }

    #[test]
    fn local_digest_check() {
        let md5 = [0xabu8; 16];
        let hex = "ABABABABABABABABABABABABABABABAB";
        assert!(local_matches(
            &listed(1, &format!("\"{hex}\""), 1, None),
            0,
            &md5
        ));
        assert!(!local_matches(&listed(1, "\"00\"", 1, None), 0, &md5));
        assert!(local_matches(&listed(1, "\"zz\"", 1, Some(7)), 7, &md5));
        assert!(!local_matches(
            &listed(1, &format!("\"{hex}\""), 1, Some(7)),
            8,
            &md5
        ));
    }
}

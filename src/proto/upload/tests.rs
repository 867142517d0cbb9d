//! Scenario tests (one rule each) and a deterministic simulator that runs the machine against
//! an in-memory OSS with random faults, clock skew, reordered answers and crash points.

use std::collections::{BTreeMap, BTreeSet};

use md5::{Digest, Md5};

use super::*;
use crate::proto::checkpoint::{self, encode_record};
use crate::proto::xml::PartsPage;

const SERVER_NOW: i64 = 1_800_000_000;

fn md5_hex(data: &[u8]) -> String {
    Md5::digest(data)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

fn etag_of(data: &[u8]) -> String {
    format!("\"{}\"", md5_hex(data))
}

fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn params(file_len: u64, part_size: u64, jobs: u32) -> Params {
    let mut p = Params::new_for_test(file_len, part_size, true);
    p.max_in_flight = jobs;
    p.backoff = Backoff {
        base_ms: 10,
        cap_ms: 1000,
    };
    p
}

fn replay_of(p: &Params, records: &[Record]) -> Replay {
    Replay {
        identity: p.identity.clone(),
        records: records.to_vec(),
        valid_len: 0,
    }
}

fn failed(id: u64, status: u16, code: &str) -> Event {
    Event::Failed {
        id,
        failure: Failure::Status {
            status,
            code: Some(code.to_string()),
        },
        server_time: None,
        local_time: SERVER_NOW,
    }
}

/// Drives `up` until it asks for something other than persisting, which is acknowledged.
fn next_call(up: &mut Upload, now: u64, persisted: &mut Vec<Record>) -> Action {
    loop {
        match up.poll_action(now) {
            Action::Persist(r) => {
                persisted.push(r);
                up.handle(Event::Persisted, now);
            }
            Action::ResetJournal(rs) => {
                persisted.clear();
                persisted.extend(rs);
                up.handle(Event::Persisted, now);
            }
            a => return a,
        }
    }
}

fn expect_call(a: Action) -> (u64, Call) {
    match a {
        Action::Call { id, call } => (id, call),
        other => panic!("expected a call, got {other:?}"),
    }
}

#[test]
fn fresh_upload_order_of_actions() {
    let file = file_bytes(250, 1);
    let p = params(250, 100, 1);
    let mut up = Upload::new(p, None);
    assert_eq!(up.poll_action(0), Action::ResetJournal(vec![]));
    assert_eq!(
        up.poll_action(0),
        Action::Wait,
        "nothing before the journal is durable"
    );
    up.handle(Event::Persisted, 0);
    assert_eq!(
        up.poll_action(0),
        Action::Persist(Record::Initiating),
        "recorded before sent"
    );
    up.handle(Event::Persisted, 0);
    let (id, call) = expect_call(up.poll_action(0));
    assert_eq!(call, Call::Initiate);
    up.handle(
        Event::Initiated {
            id,
            upload_id: "U".into(),
        },
        0,
    );
    assert_eq!(
        up.poll_action(0),
        Action::Persist(Record::Started {
            upload_id: "U".into()
        })
    );
    // No part goes out before Started is durable.
    assert_eq!(up.poll_action(0), Action::Wait);
    up.handle(Event::Persisted, 0);
    for n in 1..=3u32 {
        let (id, call) = expect_call(up.poll_action(0));
        let Call::UploadPart {
            n: got,
            offset,
            len,
            ..
        } = call
        else {
            panic!("{call:?}")
        };
        assert_eq!(got, n);
        let data = &file[offset as usize..(offset + len) as usize];
        let crc = crc64::update(0, data);
        assert_eq!(
            up.poll_action(0),
            Action::Wait,
            "one part in flight with jobs=1"
        );
        up.handle(
            Event::PartSent {
                id,
                etag: etag_of(data),
                local_crc: crc,
                server_crc: Some(crc),
            },
            0,
        );
        let Action::Persist(Record::PartDone {
            n: pn, crc64: pc, ..
        }) = up.poll_action(0)
        else {
            panic!("the ack must be persisted before anything else")
        };
        assert_eq!((pn, pc), (n, crc));
        up.handle(Event::Persisted, 0);
    }
    assert_eq!(up.poll_action(0), Action::Persist(Record::Completing));
    up.handle(Event::Persisted, 0);
    let (id, call) = expect_call(up.poll_action(0));
    let Call::Complete { parts, .. } = call else {
        panic!()
    };
    assert_eq!(parts.iter().map(|p| p.0).collect::<Vec<_>>(), vec![1, 2, 3]);
    let crc = crc64::update(0, &file);
    up.handle(
        Event::Completed {
            id,
            etag: "\"X-3\"".into(),
            server_crc: Some(crc),
        },
        0,
    );
    let Action::Done(Ok(u)) = up.poll_action(0) else {
        panic!()
    };
    assert_eq!((u.crc64, u.parts, u.parts_resumed), (crc, 3, 0));
}

#[test]
fn jobs_bound_parts_in_flight() {
    let p = params(1000, 100, 4);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::Initiated {
            id,
            upload_id: "U".into(),
        },
        0,
    );
    let mut ids = Vec::new();
    loop {
        match next_call(&mut up, 0, &mut log) {
            Action::Call {
                id,
                call: Call::UploadPart { .. },
            } => ids.push(id),
            Action::Wait => break,
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(ids.len(), 4);
    assert_eq!(up.in_flight(), 4);
}

#[test]
fn restart_trusts_agreeing_parts_verifies_server_only_and_resends_journal_only() {
    let file = file_bytes(400, 2);
    let p = params(400, 100, 1);
    let part = |n: u32| &file[(n as usize - 1) * 100..n as usize * 100];
    let rec = |n: u32| Record::PartDone {
        n,
        etag: Etag::from_text(&etag_of(part(n))),
        crc64: crc64::update(0, part(n)),
        len: 100,
    };
    let records = vec![
        Record::Started {
            upload_id: "U".into(),
        },
        rec(1),
        rec(2),
    ];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let mut log = Vec::new();
    let (id, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert!(matches!(call, Call::ListParts { marker: 0, .. }));
    let listed = |n: u32, data: &[u8]| ListedPart {
        n,
        etag: etag_of(data),
        size: 100,
        crc64: Some(crc64::update(0, data)),
    };
    // Part 1: both agree. Part 2: journal only. Part 3: server only, matches the file.
    // Part 4: server only, other bytes.
    let page = PartsPage {
        parts: vec![
            listed(1, part(1)),
            listed(3, part(3)),
            listed(4, &[9u8; 100]),
        ],
        truncated: false,
        next_marker: None,
    };
    up.handle(Event::Listed { id, page }, 0);
    let mut digests = Vec::new();
    let mut rechecked = Vec::new();
    let mut sent = Vec::new();
    loop {
        match next_call(&mut up, 0, &mut log) {
            Action::Recheck { n } => {
                rechecked.push(n);
                up.handle(
                    Event::Rechecked {
                        n,
                        crc64: crc64::update(0, part(n)),
                    },
                    0,
                );
            }
            Action::Digest { n } => {
                digests.push(n);
                let d = part(n);
                let md5: [u8; 16] = Md5::digest(d).into();
                up.handle(
                    Event::Digest {
                        n,
                        crc64: crc64::update(0, d),
                        md5,
                    },
                    0,
                );
            }
            Action::Call {
                id,
                call: Call::UploadPart { n, .. },
            } => {
                sent.push(n);
                let d = part(n);
                let c = crc64::update(0, d);
                up.handle(
                    Event::PartSent {
                        id,
                        etag: etag_of(d),
                        local_crc: c,
                        server_crc: Some(c),
                    },
                    0,
                );
            }
            Action::Call {
                call: Call::Complete { parts, .. },
                ..
            } => {
                assert_eq!(parts.len(), 4);
                break;
            }
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(
        digests,
        vec![3, 4],
        "server-only parts are checked with CRC-64 and MD5"
    );
    assert_eq!(
        rechecked,
        vec![1],
        "agreeing parts are re-read (CRC-64 only)"
    );
    assert_eq!(
        sent,
        vec![2, 4],
        "journal-only and mismatching parts are sent again"
    );
    assert!(log.contains(&rec(3)), "an adopted part is journaled");
}

/// Issue 10 item 2: a part an earlier run sent whose local bytes changed while length, mtime
/// and inode did not (so the journal's identity still matches) must be sent again, never kept.
#[test]
fn resume_rechecks_sent_parts_and_resends_one_whose_bytes_changed() {
    let old = file_bytes(300, 5);
    let mut new = old.clone();
    new[150] ^= 0xff; // part 2 rewritten in place, same metadata
    let p = params(300, 100, 1);
    let part = |f: &[u8], n: u32| f[(n as usize - 1) * 100..n as usize * 100].to_vec();
    let rec = |n: u32| Record::PartDone {
        n,
        etag: Etag::from_text(&etag_of(&part(&old, n))),
        crc64: crc64::update(0, &part(&old, n)),
        len: 100,
    };
    let records = vec![
        Record::Started {
            upload_id: "U".into(),
        },
        rec(1),
        rec(2),
        rec(3),
    ];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    let page = PartsPage {
        parts: (1..=3)
            .map(|n| ListedPart {
                n,
                etag: etag_of(&part(&old, n)),
                size: 100,
                crc64: Some(crc64::update(0, &part(&old, n))),
            })
            .collect(),
        truncated: false,
        next_marker: None,
    };
    up.handle(Event::Listed { id, page }, 0);
    let mut rechecked = Vec::new();
    let mut sent = Vec::new();
    for _ in 0..20 {
        match next_call(&mut up, 0, &mut log) {
            Action::Recheck { n } => {
                rechecked.push(n);
                let crc = crc64::update(0, &part(&new, n));
                up.handle(Event::Rechecked { n, crc64: crc }, 0);
            }
            Action::Call {
                id,
                call: Call::UploadPart { n, .. },
            } => {
                sent.push(n);
                let c = crc64::update(0, &part(&new, n));
                let etag = etag_of(&part(&new, n));
                up.handle(
                    Event::PartSent {
                        id,
                        etag,
                        local_crc: c,
                        server_crc: Some(c),
                    },
                    0,
                );
            }
            Action::Call {
                id,
                call: Call::Complete { .. },
            } => {
                let c = crc64::update(0, &new);
                up.handle(
                    Event::Completed {
                        id,
                        etag: "\"M-3\"".into(),
                        server_crc: Some(c),
                    },
                    0,
                );
            }
            Action::Done(r) => {
                let u = r.expect("upload succeeds");
                assert_eq!(
                    u.crc64,
                    crc64::update(0, &new),
                    "the object is the new bytes"
                );
                assert_eq!(u.parts_resumed, 2);
                break;
            }
            a => panic!("{a:?}"),
        }
    }
    assert_eq!(
        rechecked,
        vec![1, 2, 3],
        "every part sent earlier is re-read"
    );
    assert_eq!(sent, vec![2], "only the changed part is sent again");
}

#[test]
fn list_parts_follows_every_page() {
    let p = params(300, 100, 1);
    let records = vec![Record::Started {
        upload_id: "U".into(),
    }];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    let lp = |n| ListedPart {
        n,
        etag: "\"E\"".into(),
        size: 100,
        crc64: None,
    };
    up.handle(
        Event::Listed {
            id,
            page: PartsPage {
                parts: vec![lp(1)],
                truncated: true,
                next_marker: Some(1),
            },
        },
        0,
    );
    let (id, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert!(
        matches!(call, Call::ListParts { marker: 1, .. }),
        "{call:?}"
    );
    up.handle(
        Event::Listed {
            id,
            page: PartsPage {
                parts: vec![lp(2)],
                truncated: false,
                next_marker: Some(2),
            },
        },
        0,
    );
    assert_eq!(next_call(&mut up, 0, &mut log), Action::Digest { n: 1 });
}

#[test]
fn no_such_upload_with_completing_checks_the_object() {
    let file = file_bytes(200, 3);
    let p = params(200, 100, 1);
    let rec = |n: u32| {
        let d = &file[(n as usize - 1) * 100..n as usize * 100];
        Record::PartDone {
            n,
            etag: Etag::from_text(&etag_of(d)),
            crc64: crc64::update(0, d),
            len: 100,
        }
    };
    let records = vec![
        Record::Started {
            upload_id: "U".into(),
        },
        rec(1),
        rec(2),
        Record::Completing,
    ];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(failed(id, 404, "NoSuchUpload"), 0);
    let (id, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert_eq!(call, Call::HeadObject);
    let found = HeadInfo {
        len: 200,
        crc64: Some(crc64::update(0, &file)),
        etag: Some("\"Z\"".into()),
    };
    up.handle(
        Event::Head {
            id,
            found: Some(found),
        },
        0,
    );
    // The object matches the journal; the local bytes must match too (issue 10 item 2).
    assert_eq!(up.poll_action(0), Action::DigestFile);
    up.handle(
        Event::FileDigest {
            crc64: crc64::update(0, &file),
        },
        0,
    );
    assert!(matches!(up.poll_action(0), Action::Done(Ok(_))));

    // The same, but the file changed under the same metadata since: a fresh upload.
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(failed(id, 404, "NoSuchUpload"), 0);
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    let found = HeadInfo {
        len: 200,
        crc64: Some(crc64::update(0, &file)),
        etag: None,
    };
    up.handle(
        Event::Head {
            id,
            found: Some(found),
        },
        0,
    );
    assert_eq!(up.poll_action(0), Action::DigestFile);
    up.handle(Event::FileDigest { crc64: 12345 }, 0);
    assert!(
        matches!(up.poll_action(0), Action::ResetJournal(_)),
        "a changed file is uploaded again"
    );

    // The same, but the object is not there: a fresh upload.
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(failed(id, 404, "NoSuchUpload"), 0);
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(Event::Head { id, found: None }, 0);
    assert!(matches!(up.poll_action(0), Action::ResetJournal(_)));
}

#[test]
fn no_such_upload_without_completing_starts_fresh() {
    let p = params(200, 100, 1);
    let records = vec![Record::Started {
        upload_id: "U".into(),
    }];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(failed(id, 404, "NoSuchUpload"), 0);
    // A vanished upload is no doubt about strays (issue 10 item 6: sweeping here aborted the
    // other writer that aborted ours): the fresh journal starts clean.
    assert_eq!(up.poll_action(0), Action::ResetJournal(vec![]));
    up.handle(Event::Persisted, 0);
    assert_eq!(up.poll_action(0), Action::Persist(Record::Initiating));
    up.handle(Event::Persisted, 0);
    // The new Initiate waits for a backoff (issue 10 item 6: another writer may abort ours).
    let Action::Sleep { until_ms } = up.poll_action(0) else {
        panic!("no backoff before the new Initiate")
    };
    assert!(until_ms > 0);
    let (id, call) = expect_call(up.poll_action(until_ms));
    assert_eq!(call, Call::Initiate);
    up.handle(
        Event::Initiated {
            id,
            upload_id: "V".into(),
        },
        until_ms,
    );
    let (_, call) = expect_call(next_call(&mut up, until_ms, &mut log));
    assert!(matches!(call, Call::UploadPart { .. }), "{call:?}");
}

#[test]
fn changed_identity_aborts_the_old_upload_and_starts_fresh() {
    let p = params(200, 100, 1);
    let mut old = p.clone();
    old.identity.mtime_ns += 1;
    let records = vec![
        Record::ClockOffset { secs: 5 },
        Record::Started {
            upload_id: "OLD".into(),
        },
    ];
    let mut up = Upload::new(p.clone(), Some(replay_of(&old, &records)));
    assert_eq!(
        up.poll_action(0),
        Action::ResetJournal(vec![
            Record::ClockOffset { secs: 5 },
            Record::AbortPending {
                upload_id: "OLD".into()
            }
        ])
    );
    up.handle(Event::Persisted, 0);
    let (id, call) = expect_call(up.poll_action(0));
    assert_eq!(
        call,
        Call::Abort {
            upload_id: "OLD".into()
        }
    );
    up.handle(Event::Aborted { id }, 0);
    assert_eq!(
        up.poll_action(0),
        Action::Persist(Record::Aborted {
            upload_id: "OLD".into()
        })
    );
    up.handle(Event::Persisted, 0);
    assert_eq!(up.poll_action(0), Action::Persist(Record::Initiating));
    up.handle(Event::Persisted, 0);
    assert_eq!(expect_call(up.poll_action(0)).1, Call::Initiate);
    assert_eq!(up.clock_offset(), 5, "the clock offset survives a reset");

    // A changed part size is an identity change too.
    let mut other = p.clone();
    other.identity.part_size = 200;
    let up = Upload::new(p.clone(), Some(replay_of(&other, &records)));
    assert!(up.pending_aborts.contains(&"OLD".to_string()));
}

#[test]
fn whole_object_crc_mismatch_is_reported() {
    let p = params(100, 100, 1);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::Initiated {
            id,
            upload_id: "U".into(),
        },
        0,
    );
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::PartSent {
            id,
            etag: "\"E\"".into(),
            local_crc: 7,
            server_crc: Some(7),
        },
        0,
    );
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::Completed {
            id,
            etag: "\"E\"".into(),
            server_crc: Some(8),
        },
        0,
    );
    assert_eq!(
        up.poll_action(0),
        Action::Done(Err(GiveUp::DataMismatch {
            op: Op::Complete,
            local: 7,
            server: 8
        }))
    );
}

#[test]
fn part_crc_mismatch_resends_the_part() {
    let p = params(100, 100, 1);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::Initiated {
            id,
            upload_id: "U".into(),
        },
        0,
    );
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::PartSent {
            id,
            etag: "\"E\"".into(),
            local_crc: 7,
            server_crc: Some(9),
        },
        0,
    );
    assert!(!log.iter().any(|r| matches!(r, Record::PartDone { .. })));
    let Action::Sleep { until_ms } = next_call(&mut up, 0, &mut log) else {
        panic!()
    };
    let (_, call) = expect_call(next_call(&mut up, until_ms, &mut log));
    assert!(matches!(call, Call::UploadPart { n: 1, .. }));
}

#[test]
fn clock_skew_is_corrected_once_and_persisted() {
    let p = params(100, 100, 1);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    let skew = |id, server| Event::Failed {
        id,
        failure: Failure::Status {
            status: 403,
            code: Some("RequestTimeTooSkewed".into()),
        },
        server_time: server,
        local_time: SERVER_NOW - 7200,
    };
    up.handle(skew(id, Some(SERVER_NOW)), 0);
    // Retried at once (no backoff), after the offset is durable.
    assert_eq!(
        up.poll_action(0),
        Action::Persist(Record::ClockOffset { secs: 7200 })
    );
    up.handle(Event::Persisted, 0);
    let (id, call) = expect_call(up.poll_action(0));
    assert_eq!(call, Call::Initiate);
    assert_eq!(up.clock_offset(), 7200);
    // A second skew error in a row is an ordinary failure: backoff, offset unchanged.
    up.handle(skew(id, Some(SERVER_NOW + 100_000)), 0);
    assert!(matches!(up.poll_action(0), Action::Sleep { .. }));
    assert_eq!(up.clock_offset(), 7200);

    // A server time from before the build date is not believed.
    let mut up = Upload::new(params(100, 100, 1), None);
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(skew(id, Some(86_400)), 0);
    assert_eq!(up.clock_offset(), 0);
}

/// Issue 11 item 8: a skew answer naming 2099 is not believed and never persisted; the
/// request is retried as an ordinary failure (backoff), signed with the local clock.
#[test]
fn a_skew_answer_from_2099_is_neither_believed_nor_persisted() {
    let y2099 = crate::proto::time::parse_iso8601("2099-01-01T00:00:00Z").unwrap();
    let mut up = Upload::new(params(100, 100, 1), None);
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::Failed {
            id,
            failure: Failure::Status {
                status: 403,
                code: Some("RequestTimeTooSkewed".into()),
            },
            server_time: Some(y2099),
            local_time: SERVER_NOW,
        },
        0,
    );
    assert!(matches!(up.poll_action(0), Action::Sleep { .. }));
    assert_eq!(up.clock_offset(), 0);
    assert!(!log.iter().any(|r| matches!(r, Record::ClockOffset { .. })));
    // With a board clock in 1970 the same answer is still too far; a 2027 one is believed.
    let mut up = Upload::new(params(100, 100, 1), None);
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(
        Event::Failed {
            id,
            failure: Failure::Status {
                status: 403,
                code: Some("RequestTimeTooSkewed".into()),
            },
            server_time: Some(SERVER_NOW),
            local_time: 1000,
        },
        0,
    );
    assert_eq!(up.clock_offset(), SERVER_NOW - 1000);
}

#[test]
fn retry_budget_gives_up_with_the_state_kept() {
    let mut p = params(100, 100, 1);
    p.retry_for_ms = Some(1000);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let mut now = 0;
    for _ in 0..1000 {
        match next_call(&mut up, now, &mut log) {
            Action::Call { id, .. } => up.handle(
                Event::Failed {
                    id,
                    failure: Failure::Reset,
                    server_time: None,
                    local_time: 0,
                },
                now,
            ),
            Action::Sleep { until_ms } => now = until_ms,
            Action::Done(r) => {
                assert!(
                    matches!(
                        r,
                        Err(GiveUp::RetryBudget {
                            op: Op::Initiate,
                            ..
                        })
                    ),
                    "{r:?}"
                );
                assert!(now >= 1000);
                return;
            }
            a => panic!("{a:?}"),
        }
    }
    panic!("never gave up");
}

/// Issue 11 item 10: the same well-formed but unusable answer, again and again, stops the run
/// after `MAX_UNUSABLE` attempts (a configuration problem), not after a day of retries; a
/// merely malformed answer is still retried for the whole budget.
#[test]
fn a_repeated_unusable_answer_stops_early() {
    for (failure, want_fatal) in [
        (Failure::Unusable("InitiateMultipartUploadResult"), true),
        (Failure::Malformed, false),
    ] {
        let mut p = params(100, 100, 1);
        p.retry_for_ms = Some(86_400_000);
        let mut up = Upload::new(p, None);
        let mut log = Vec::new();
        let mut now = 0;
        let mut calls = 0;
        let mut done = None;
        for _ in 0..200 {
            match next_call(&mut up, now, &mut log) {
                Action::Call { id, .. } => {
                    calls += 1;
                    up.handle(
                        Event::Failed {
                            id,
                            failure: failure.clone(),
                            server_time: None,
                            local_time: 0,
                        },
                        now,
                    )
                }
                Action::Sleep { until_ms } => now = until_ms,
                Action::Done(r) => {
                    done = Some(r);
                    break;
                }
                a => panic!("{a:?}"),
            }
        }
        if want_fatal {
            assert_eq!(calls, retry::MAX_UNUSABLE, "{failure:?}");
            assert!(
                matches!(
                    done,
                    Some(Err(GiveUp::Fatal {
                        op: Op::Initiate,
                        failure: Failure::Unusable(_)
                    }))
                ),
                "{done:?}"
            );
        } else {
            assert!(done.is_none(), "{failure:?} gave up after {calls} calls");
        }
    }
}

#[test]
fn fatal_errors_stop_at_once() {
    let mut up = Upload::new(params(100, 100, 1), None);
    let mut log = Vec::new();
    let (id, _) = expect_call(next_call(&mut up, 0, &mut log));
    up.handle(failed(id, 403, "InvalidAccessKeyId"), 0);
    assert!(matches!(
        up.poll_action(0),
        Action::Done(Err(GiveUp::Fatal {
            op: Op::Initiate,
            ..
        }))
    ));
}

#[test]
fn small_file_is_one_put_with_crc_check() {
    let mut p = params(10, 100, 1);
    p.multipart = false;
    let mut up = Upload::new(p, None);
    let (id, call) = expect_call(up.poll_action(0));
    assert_eq!(call, Call::PutObject { len: 10 });
    up.handle(
        Event::Put {
            id,
            etag: "\"E\"".into(),
            local_crc: 1,
            server_crc: Some(2),
        },
        0,
    );
    assert_eq!(
        up.poll_action(0),
        Action::Done(Err(GiveUp::DataMismatch {
            op: Op::PutObject,
            local: 1,
            server: 2
        }))
    );
    // An empty file is always a single PUT, even when multipart is asked for.
    let mut up = Upload::new(params(0, 100, 1), None);
    assert_eq!(expect_call(up.poll_action(0)).1, Call::PutObject { len: 0 });
}

// ---------------------------------------------------------------------------------------------
// The simulator.

#[derive(Default)]
struct SimServer {
    uploads: BTreeMap<String, BTreeMap<u32, Vec<u8>>>,
    object: Option<Vec<u8>>,
    next_upload: u32,
    initiated: u32,
    bytes_received: u64,
    list_crc: bool,
    /// Simulated monotonic time of the current step (the server's clock is SERVER_NOW + it).
    now_ms: u64,
    /// `Initiated` (server clock, seconds) of every upload.
    initiated_at: BTreeMap<String, i64>,
    /// Uploads of the same key by another writer, with their `Initiated`.
    others: BTreeMap<String, i64>,
    /// The upload id whose Complete stored the object.
    completed_id: Option<String>,
}

impl SimServer {
    fn now_s(&self) -> i64 {
        SERVER_NOW + (self.now_ms / 1000) as i64
    }

    fn parts_page(&self, upload_id: &str, marker: u32, max: u32) -> Option<PartsPage> {
        let parts = self.uploads.get(upload_id)?;
        let all: Vec<_> = parts.range(marker + 1..).collect();
        let page: Vec<ListedPart> = all
            .iter()
            .take(max as usize)
            .map(|(n, d)| ListedPart {
                n: **n,
                etag: etag_of(d),
                size: d.len() as u64,
                crc64: self.list_crc.then(|| crc64::update(0, d)),
            })
            .collect();
        Some(PartsPage {
            truncated: all.len() > page.len(),
            next_marker: page.last().map(|p| p.n),
            parts: page,
        })
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) < (p * 10_000.0) as u64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct SimConfig {
    seed: u64,
    file_len: usize,
    part_size: u64,
    jobs: u32,
    fault_rate: f64,
    crash_rate: f64,
    /// Device clock minus true time, in seconds.
    device_skew: i64,
    list_crc: bool,
    /// Number of ListParts pages a full listing takes.
    page: u32,
    /// Chance per crash that the file's bytes change while its metadata does not (a `touch
    /// -d` restore, FAT's mtime granularity, a camera rewriting a clip in place).
    rewrite_rate: f64,
    /// Chance per step that another writer of the same key initiates an upload (and, a
    /// tenth as often, aborts ours, as its own sweep would).
    other_writer_rate: f64,
}

struct SimResult {
    crashes: u32,
    /// Crashes while the journal named no upload id (Initiate may have to run again).
    crashes_before_started: u32,
    initiated: u32,
    bytes_received: u64,
    steps: u32,
}

/// Runs one whole upload through crashes and faults; panics on any broken invariant.
fn simulate(c: &SimConfig) -> SimResult {
    let mut rng = Rng(c.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut file = file_bytes(c.file_len, c.seed);
    let mut p = params(c.file_len as u64, c.part_size, c.jobs);
    p.seed = c.seed;
    // Tiny parts (below the OSS minimum) keep simulations fast; the rules do not depend on size.
    // At most 40 parts, listed in at most `c.page` pages (as 10,000 real parts take 10 pages).
    let part_size = c.part_size.max(c.file_len as u64 / 40 + 1);
    p.geometry = Geometry {
        file_len: c.file_len as u64,
        part_size,
    };
    p.identity.part_size = p.geometry.part_size;
    p.multipart = c.file_len > 0;
    let count = p.geometry.count();
    let page = count.div_ceil(c.page.max(1)).max(1);
    let mut server = SimServer {
        list_crc: c.list_crc,
        ..SimServer::default()
    };
    let mut journal: Vec<u8> = Vec::new();
    // Upload ids that were ever durable in a journal.
    let mut journaled_ids = BTreeSet::new();
    let mut crashes = 0;
    let mut crashes_before_started = 0;
    let mut steps = 0u32;
    let mut now: u64 = 0;
    for _life in 0..400 {
        let replay = if journal.is_empty() {
            None
        } else {
            checkpoint::replay(&journal).ok()
        };
        if let Some(r) = &replay {
            journal.truncate(r.valid_len);
        }
        let mut up = Upload::new(p.clone(), replay);
        // Server-acknowledged parts of the current upload id, per this process's view.
        let mut acked: BTreeSet<(String, u32)> = BTreeSet::new();
        let mut outstanding: Vec<(u64, Call)> = Vec::new();
        let mut crashed = false;
        for _ in 0..20_000 {
            steps += 1;
            server.now_ms = now;
            if c.other_writer_rate > 0.0 && rng.chance(c.other_writer_rate) {
                if rng.chance(0.1) {
                    // The other writer's sweep aborts whatever upload we have.
                    if let Some(id) = up.upload_id() {
                        server.uploads.remove(id);
                    }
                } else {
                    server.next_upload += 1;
                    let uid = format!("W{}", server.next_upload);
                    server.uploads.insert(uid.clone(), BTreeMap::new());
                    let t = server.now_s();
                    server.initiated_at.insert(uid.clone(), t);
                    server.others.insert(uid, t);
                }
            }
            if c.crash_rate > 0.0 && rng.chance(c.crash_rate) {
                // Power cut: whatever was being written is torn.
                if rng.chance(0.5) {
                    let mut junk = Vec::new();
                    encode_record(&Record::Completing, &mut junk);
                    let cut = rng.below(junk.len());
                    journal.extend_from_slice(&junk[..cut]);
                }
                crashes += 1;
                if !file.is_empty() && c.rewrite_rate > 0.0 && rng.chance(c.rewrite_rate) {
                    // Same length, mtime and inode (the identity does not change), other bytes.
                    let i = rng.below(file.len());
                    file[i] ^= 0x5a;
                }
                if up.upload_id().is_none() || !journaled_ids.contains(up.upload_id().unwrap_or(""))
                {
                    crashes_before_started += 1;
                }
                crashed = true;
                break;
            }
            // Answer an outstanding call now and then, in random order.
            if !outstanding.is_empty() && rng.chance(0.3) {
                let (id, call) = outstanding.swap_remove(rng.below(outstanding.len()));
                let ev = answer(
                    &mut server,
                    &file,
                    &mut rng,
                    c,
                    &up,
                    id,
                    call,
                    &mut acked,
                    page,
                );
                up.handle(ev, now);
                continue;
            }
            match up.poll_action(now) {
                Action::Call { id, call } => {
                    if let Call::Complete { parts, upload_id } = &call {
                        // Complete only after every part record and Completing are durable.
                        let r = checkpoint::replay(&journal).unwrap();
                        assert!(
                            r.records.contains(&Record::Completing),
                            "Completing before Complete"
                        );
                        let nums: Vec<u32> = parts.iter().map(|p| p.0).collect();
                        assert_eq!(
                            nums,
                            (1..=count).collect::<Vec<_>>(),
                            "Complete lists 1..=count"
                        );
                        for (n, _) in parts {
                            assert!(
                                r.records.iter().any(
                                    |rec| matches!(rec, Record::PartDone { n: m, .. } if m == n)
                                ),
                                "part {n} completed without a durable record"
                            );
                        }
                        assert!(journaled_ids.contains(upload_id));
                    }
                    // The shell has `jobs` slots; abandoned calls still hold theirs.
                    assert!(
                        outstanding.len() < c.jobs.max(1) as usize,
                        "seed {}: more calls than job slots",
                        c.seed
                    );
                    outstanding.push((id, call));
                }
                Action::Persist(rec) => {
                    if let Record::PartDone { n, .. } = &rec {
                        let id = up.upload_id().unwrap().to_string();
                        assert!(
                            acked.contains(&(id, *n)),
                            "part {n} persisted without a server ack"
                        );
                    }
                    if let Record::Started { upload_id } = &rec {
                        journaled_ids.insert(upload_id.clone());
                    }
                    encode_record(&rec, &mut journal);
                    up.handle(Event::Persisted, now);
                }
                Action::ResetJournal(records) => {
                    journal = checkpoint::encode_journal(&p.identity, &records);
                    up.handle(Event::Persisted, now);
                }
                Action::DigestFile => {
                    up.handle(
                        Event::FileDigest {
                            crc64: crc64::update(0, &file),
                        },
                        now,
                    );
                }
                Action::Recheck { n } => {
                    let (off, len) = p.geometry.part(n);
                    let d = &file[off as usize..(off + len) as usize];
                    up.handle(
                        Event::Rechecked {
                            n,
                            crc64: crc64::update(0, d),
                        },
                        now,
                    );
                }
                Action::Digest { n } => {
                    let (off, len) = p.geometry.part(n);
                    let d = &file[off as usize..(off + len) as usize];
                    let md5: [u8; 16] = Md5::digest(d).into();
                    up.handle(
                        Event::Digest {
                            n,
                            crc64: crc64::update(0, d),
                            md5,
                        },
                        now,
                    );
                }
                Action::Sleep { until_ms } => {
                    if outstanding.is_empty() {
                        now = now.max(until_ms);
                    } else {
                        let (id, call) = outstanding.swap_remove(rng.below(outstanding.len()));
                        let ev = answer(
                            &mut server,
                            &file,
                            &mut rng,
                            c,
                            &up,
                            id,
                            call,
                            &mut acked,
                            page,
                        );
                        up.handle(ev, now);
                    }
                }
                Action::Wait => {
                    assert!(
                        !outstanding.is_empty(),
                        "Wait with nothing outstanding: stuck"
                    );
                    let (id, call) = outstanding.swap_remove(rng.below(outstanding.len()));
                    let ev = answer(
                        &mut server,
                        &file,
                        &mut rng,
                        c,
                        &up,
                        id,
                        call,
                        &mut acked,
                        page,
                    );
                    up.handle(ev, now);
                }
                Action::Done(r) => {
                    let u = r.unwrap_or_else(|e| panic!("seed {}: gave up: {e:?}", c.seed));
                    assert_eq!(server.object.as_deref(), Some(&file[..]), "seed {}", c.seed);
                    assert_eq!(u.crc64, crc64::update(0, &file));
                    // Another writer's upload initiated after the one that made our object
                    // (beyond the margin) can never be ours: it must not have been aborted.
                    let ours_at = server
                        .completed_id
                        .as_ref()
                        .and_then(|id| server.initiated_at.get(id).copied());
                    for (w, at) in &server.others {
                        if ours_at.is_some_and(|o| *at > o) {
                            assert!(
                                server.uploads.contains_key(w),
                                "seed {}: aborted another writer's upload {w}",
                                c.seed
                            );
                        }
                    }
                    let others = server.others.clone();
                    server.uploads.retain(|id, _| !others.contains_key(id));
                    // Every upload this file ever started is completed or aborted, including
                    // ones whose Initiate answer was lost or that a crash kept out of the journal.
                    assert!(
                        server.uploads.is_empty(),
                        "seed {}: uploads left open: {:?} (journaled: {:?})",
                        c.seed,
                        server.uploads.keys().collect::<Vec<_>>(),
                        journaled_ids
                    );
                    return SimResult {
                        crashes,
                        crashes_before_started,
                        initiated: server.initiated,
                        bytes_received: server.bytes_received,
                        steps,
                    };
                }
            }
            now += 1;
        }
        assert!(crashed, "seed {}: no progress in 20,000 steps", c.seed);
    }
    panic!("seed {}: not done after 400 lives", c.seed);
}

/// The simulated server answers one call, with faults.
#[allow(clippy::too_many_arguments)]
fn answer(
    s: &mut SimServer,
    file: &[u8],
    rng: &mut Rng,
    c: &SimConfig,
    up: &Upload,
    id: u64,
    call: Call,
    acked: &mut BTreeSet<(String, u32)>,
    page: u32,
) -> Event {
    let local_time = SERVER_NOW + c.device_skew;
    let fail = |failure| Event::Failed {
        id,
        failure,
        server_time: None,
        local_time,
    };
    // The server checks the signing time first.
    if (local_time + up.clock_offset() - SERVER_NOW).abs() > 900 {
        return Event::Failed {
            id,
            failure: Failure::Status {
                status: 403,
                code: Some("RequestTimeTooSkewed".into()),
            },
            server_time: Some(SERVER_NOW),
            local_time,
        };
    }
    let fault = rng.chance(c.fault_rate);
    let lose_answer = fault && rng.chance(0.5);
    if fault && !lose_answer {
        // Fails before anything is stored.
        return match rng.below(3) {
            0 => fail(Failure::Reset),
            1 => fail(Failure::TimedOut),
            _ => fail(Failure::Status {
                status: 503,
                code: Some("ServiceUnavailable".into()),
            }),
        };
    }
    let no_such = |id| Event::Failed {
        id,
        failure: Failure::Status {
            status: 404,
            code: Some("NoSuchUpload".into()),
        },
        server_time: None,
        local_time,
    };
    let ev = match call {
        Call::PutObject { len } => {
            let d = file[..len as usize].to_vec();
            s.bytes_received += len;
            let crc = crc64::update(0, &d);
            let etag = etag_of(&d);
            s.object = Some(d);
            Event::Put {
                id,
                etag,
                local_crc: crc64::update(0, file),
                server_crc: Some(crc),
            }
        }
        Call::Initiate => {
            s.next_upload += 1;
            s.initiated += 1;
            let uid = format!("U{}", s.next_upload);
            s.uploads.insert(uid.clone(), BTreeMap::new());
            let t = s.now_s();
            s.initiated_at.insert(uid.clone(), t);
            Event::Initiated { id, upload_id: uid }
        }
        Call::UploadPart {
            upload_id,
            n,
            offset,
            len,
        } => match s.uploads.get_mut(&upload_id) {
            None => no_such(id),
            Some(parts) => {
                let d = file[offset as usize..(offset + len) as usize].to_vec();
                s.bytes_received += len;
                let crc = crc64::update(0, &d);
                let etag = etag_of(&d);
                parts.insert(n, d);
                acked.insert((upload_id, n));
                Event::PartSent {
                    id,
                    etag,
                    local_crc: crc,
                    server_crc: Some(crc),
                }
            }
        },
        Call::ListParts {
            upload_id, marker, ..
        } => match s.parts_page(&upload_id, marker, page) {
            None => no_such(id),
            Some(page) => {
                for p in &page.parts {
                    acked.insert((upload_id.clone(), p.n));
                }
                Event::Listed { id, page }
            }
        },
        Call::Complete { upload_id, parts } => match s.uploads.get(&upload_id) {
            None => no_such(id),
            Some(stored) => {
                let mut obj = Vec::new();
                for (n, etag) in &parts {
                    match stored.get(n) {
                        Some(d) if reconcile::etag_eq(&etag_of(d), etag) => {
                            obj.extend_from_slice(d)
                        }
                        _ => {
                            return Event::Failed {
                                id,
                                failure: Failure::Status {
                                    status: 400,
                                    code: Some("InvalidPart".into()),
                                },
                                server_time: None,
                                local_time,
                            }
                        }
                    }
                }
                s.uploads.remove(&upload_id);
                s.completed_id = Some(upload_id.clone());
                let crc = crc64::update(0, &obj);
                s.object = Some(obj);
                Event::Completed {
                    id,
                    etag: "\"M-1\"".into(),
                    server_crc: Some(crc),
                }
            }
        },
        Call::Abort { upload_id } => match s.uploads.remove(&upload_id) {
            None => no_such(id),
            Some(_) => Event::Aborted { id },
        },
        Call::HeadObject => Event::Head {
            id,
            found: s.object.as_ref().map(|o| HeadInfo {
                len: o.len() as u64,
                crc64: Some(crc64::update(0, o)),
                etag: None,
            }),
        },
        Call::ListUploads { .. } => Event::UploadsListed {
            id,
            page: crate::proto::xml::UploadsPage {
                uploads: s
                    .uploads
                    .keys()
                    .map(|u| crate::proto::xml::ListedUpload {
                        key: "k".into(),
                        upload_id: u.clone(),
                        initiated: s.initiated_at.get(u).copied(),
                    })
                    .collect(),
                truncated: false,
                next_key_marker: String::new(),
                next_upload_id_marker: String::new(),
            },
        },
    };
    if lose_answer {
        // Stored, but the answer never arrived.
        fail(Failure::Reset)
    } else {
        ev
    }
}

#[test]
fn simulated_clean_upload_sends_each_byte_once() {
    for jobs in [1, 4] {
        let r = simulate(&SimConfig {
            seed: 7,
            file_len: 1000,
            part_size: 100,
            jobs,
            fault_rate: 0.0,
            crash_rate: 0.0,
            device_skew: 0,
            list_crc: true,
            page: 1000,
            rewrite_rate: 0.0,
            other_writer_rate: 0.0,
        });
        assert_eq!(r.bytes_received, 1000);
        assert_eq!(r.initiated, 1);
    }
}

#[test]
fn simulated_skewed_device_clock_is_corrected() {
    for skew in [-7200, 7200] {
        let r = simulate(&SimConfig {
            seed: 3,
            file_len: 500,
            part_size: 100,
            jobs: 2,
            fault_rate: 0.0,
            crash_rate: 0.02,
            device_skew: skew,
            list_crc: true,
            page: 2,
            rewrite_rate: 0.0,
            other_writer_rate: 0.0,
        });
        assert!(r.steps > 0);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 300, ..Default::default() })]
    /// Random faults, reordered answers, crash points, torn journal tails and skewed clocks:
    /// the stored object always equals the file, and the invariants checked inside `simulate`
    /// hold at every step.
    #[test]
    fn simulated_uploads_always_end_with_the_file(
        seed in 1u64..u64::MAX,
        file_len in 0usize..1500,
        part_size in 1u64..400,
        jobs in 1u32..5,
        fault_rate in 0.0f64..0.3,
        crash_rate in 0.0f64..0.05,
        device_skew in proptest::sample::select(vec![0i64, 0, 7200, -7200]),
        list_crc in proptest::bool::ANY,
        page in 1u32..4,
        rewrite_rate in proptest::sample::select(vec![0.0f64, 0.0, 0.3]),
        other_writer_rate in proptest::sample::select(vec![0.0f64, 0.0, 0.01]),
    ) {
        let r = simulate(&SimConfig { seed, file_len, part_size, jobs, fault_rate, crash_rate, device_skew, list_crc, page, rewrite_rate, other_writer_rate });
        if fault_rate == 0.0 && r.crashes == 0 && device_skew == 0 {
            proptest::prop_assert_eq!(r.bytes_received, file_len as u64);
        }
    }
}

#[test]
fn resent_bytes_are_bounded_by_crashes_without_faults() {
    // Without faults, every crash costs at most the parts in flight at that moment.
    for seed in 1..40u64 {
        let c = SimConfig {
            seed,
            file_len: 2000,
            part_size: 100,
            jobs: 3,
            fault_rate: 0.0,
            crash_rate: 0.03,
            device_skew: 0,
            list_crc: seed % 2 == 0,
            page: 3,
            rewrite_rate: 0.0,
            other_writer_rate: 0.0,
        };
        let r = simulate(&c);
        assert!(
            r.bytes_received <= 2000 + r.crashes as u64 * 3 * 100,
            "seed {seed}: {} bytes for {} crashes",
            r.bytes_received,
            r.crashes
        );
        assert!(
            r.initiated <= 1 + r.crashes_before_started,
            "seed {seed}: one upload unless a crash hit before its id was durable"
        );
    }
}

#[test]
fn crashes_really_happen_in_simulations() {
    // Guards the simulator itself: a crash rate that never fires would make the proptest vacuous.
    let r = simulate(&SimConfig {
        seed: 99,
        file_len: 1200,
        part_size: 30,
        jobs: 2,
        fault_rate: 0.2,
        crash_rate: 0.04,
        device_skew: 7200,
        list_crc: false,
        page: 3,
        rewrite_rate: 0.0,
        other_writer_rate: 0.0,
    });
    assert!(r.crashes >= 3, "{} crashes", r.crashes);
    assert!(r.bytes_received >= 1200);
}

#[test]
fn after_waiting_for_a_lock_an_identical_object_is_not_uploaded_again() {
    let file = file_bytes(300, 5);
    let mut p = params(300, 100, 1);
    p.check_existing = true;
    let crc = crc64::update(0, &file);
    let mut up = Upload::new(p.clone(), None);
    let (id, call) = expect_call(up.poll_action(0));
    assert_eq!(call, Call::HeadObject, "probe before anything else");
    let found = HeadInfo {
        len: 300,
        crc64: Some(crc),
        etag: Some("\"E-3\"".into()),
    };
    up.handle(
        Event::Head {
            id,
            found: Some(found.clone()),
        },
        0,
    );
    assert_eq!(up.poll_action(0), Action::DigestFile);
    up.handle(Event::FileDigest { crc64: crc }, 0);
    let Action::Done(Ok(u)) = up.poll_action(0) else {
        panic!()
    };
    assert_eq!((u.crc64, u.parts_resumed), (crc, 3));

    // Another object (different CRC): upload normally, starting with a fresh journal.
    let mut up = Upload::new(p.clone(), None);
    let (id, _) = expect_call(up.poll_action(0));
    up.handle(
        Event::Head {
            id,
            found: Some(found.clone()),
        },
        0,
    );
    assert_eq!(up.poll_action(0), Action::DigestFile);
    up.handle(Event::FileDigest { crc64: crc ^ 1 }, 0);
    assert_eq!(up.poll_action(0), Action::ResetJournal(vec![]));

    // No object, or one without a CRC-64 (cannot be proven equal): upload.
    for found in [
        None,
        Some(HeadInfo {
            crc64: None,
            ..found
        }),
    ] {
        let mut up = Upload::new(p.clone(), None);
        let (id, _) = expect_call(up.poll_action(0));
        up.handle(Event::Head { id, found }, 0);
        assert_eq!(up.poll_action(0), Action::ResetJournal(vec![]));
    }
}

#[test]
fn a_lost_initiate_answer_leads_to_a_sweep_and_the_stray_is_aborted_before_success() {
    use crate::proto::xml::{ListedUpload, UploadsPage};
    let file = file_bytes(100, 9);
    let crc = crc64::update(0, &file);
    let mut up = Upload::new(params(100, 100, 1), None);
    let mut log = Vec::new();
    let (id, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert_eq!(call, Call::Initiate);
    // The server created upload S but the answer was lost.
    let lost = Event::Failed {
        id,
        failure: Failure::TimedOut,
        server_time: None,
        local_time: 0,
    };
    up.handle(lost, 0);
    let Action::Sleep { until_ms } = next_call(&mut up, 0, &mut log) else {
        panic!()
    };
    let doubts = log.iter().filter(|r| **r == Record::Initiating).count();
    assert_eq!(doubts, 2, "the doubt is durable before the retry");
    let (id, call) = expect_call(next_call(&mut up, until_ms, &mut log));
    assert_eq!(call, Call::Initiate);
    up.handle(
        Event::Initiated {
            id,
            upload_id: "U".into(),
        },
        until_ms,
    );
    let listed = |key: &str, upload_id: &str| ListedUpload {
        key: key.into(),
        upload_id: upload_id.into(),
        initiated: None,
    };
    let mut now = until_ms;
    let mut seen = Vec::new();
    let mut complete_answered = false;
    for _ in 0..20 {
        now += 1;
        match next_call(&mut up, now, &mut log) {
            Action::Call { id, call } => {
                seen.push(call.op());
                let ev = match call {
                    Call::ListUploads { .. } => Event::UploadsListed {
                        id,
                        page: UploadsPage {
                            uploads: vec![
                                listed("k", "S"),
                                listed("k", "U"),
                                listed("k/other", "X"),
                            ],
                            truncated: false,
                            next_key_marker: String::new(),
                            next_upload_id_marker: String::new(),
                        },
                    },
                    Call::UploadPart { .. } => Event::PartSent {
                        id,
                        etag: etag_of(&file),
                        local_crc: crc,
                        server_crc: Some(crc),
                    },
                    Call::Abort { upload_id } => {
                        assert_eq!(upload_id, "S", "only the stray of this very key is aborted");
                        assert!(log.contains(&Record::AbortPending {
                            upload_id: "S".into()
                        }));
                        Event::Aborted { id }
                    }
                    Call::Complete { .. } => {
                        complete_answered = true;
                        Event::Completed {
                            id,
                            etag: "\"M\"".into(),
                            server_crc: Some(crc),
                        }
                    }
                    other => panic!("{other:?}"),
                };
                up.handle(ev, now);
            }
            Action::Done(r) => {
                assert!(r.is_ok() && complete_answered);
                assert!(seen.contains(&Op::ListUploads) && seen.contains(&Op::Abort));
                assert!(log.contains(&Record::Aborted {
                    upload_id: "S".into()
                }));
                return;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("not done: {seen:?}");
}

#[test]
fn success_waits_for_the_strays_abort() {
    use crate::proto::xml::{ListedUpload, UploadsPage};
    let file = file_bytes(100, 9);
    let crc = crc64::update(0, &file);
    let p = params(100, 100, 2);
    // A restart after a crash between Initiate and its record: two Initiating, one Started.
    let records = vec![
        Record::Initiating,
        Record::Initiating,
        Record::Started {
            upload_id: "U".into(),
        },
    ];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let mut log = Vec::new();
    let mut calls = Vec::new();
    for _ in 0..2 {
        calls.push(expect_call(next_call(&mut up, 0, &mut log)));
    }
    let find = |f: fn(&Call) -> bool| calls.iter().find(|(_, c)| f(c)).map(|(i, _)| *i).unwrap();
    let list_id = find(|c| matches!(c, Call::ListParts { .. }));
    let sweep_id = find(|c| matches!(c, Call::ListUploads { .. }));
    let page = UploadsPage {
        uploads: vec![ListedUpload {
            key: "k".into(),
            upload_id: "S".into(),
            initiated: None,
        }],
        truncated: false,
        next_key_marker: String::new(),
        next_upload_id_marker: String::new(),
    };
    up.handle(Event::UploadsListed { id: sweep_id, page }, 0);
    let listed = ListedPart {
        n: 1,
        etag: etag_of(&file),
        size: 100,
        crc64: Some(crc),
    };
    let parts = PartsPage {
        parts: vec![listed],
        truncated: false,
        next_marker: None,
    };
    up.handle(
        Event::Listed {
            id: list_id,
            page: parts,
        },
        0,
    );
    let mut abort_id = None;
    let mut complete_id = None;
    for _ in 0..10 {
        match next_call(&mut up, 0, &mut log) {
            Action::Digest { n } => {
                let md5: [u8; 16] = Md5::digest(&file).into();
                up.handle(Event::Digest { n, crc64: crc, md5 }, 0);
            }
            Action::Call {
                id,
                call: Call::Abort { .. },
            } => abort_id = Some(id),
            Action::Call {
                id,
                call: Call::Complete { .. },
            } => complete_id = Some(id),
            Action::Wait => break,
            other => panic!("{other:?}"),
        }
    }
    let done = Event::Completed {
        id: complete_id.unwrap(),
        etag: "\"M\"".into(),
        server_crc: Some(crc),
    };
    up.handle(done, 1);
    // Before success the key is swept once more ("Also fix": an Initiate may complete on the
    // server after the first sweep); an empty listing finds nothing new.
    let (sweep2, call) = expect_call(next_call(&mut up, 1, &mut log));
    assert!(matches!(call, Call::ListUploads { .. }), "{call:?}");
    up.handle(
        Event::UploadsListed {
            id: sweep2,
            page: UploadsPage {
                uploads: vec![],
                truncated: false,
                next_key_marker: String::new(),
                next_upload_id_marker: String::new(),
            },
        },
        1,
    );
    assert_eq!(
        next_call(&mut up, 1, &mut log),
        Action::Wait,
        "done only once the stray is gone"
    );
    up.handle(
        Event::Aborted {
            id: abort_id.unwrap(),
        },
        2,
    );
    assert!(matches!(
        next_call(&mut up, 2, &mut log),
        Action::Done(Ok(_))
    ));
}

/// "Also fix": an Initiate whose answer was lost can complete on the server after the first
/// sweep; the sweep runs again just before success and aborts what it finds then.
#[test]
fn a_stray_that_appears_after_the_first_sweep_is_aborted_before_success() {
    let p = params(100, 100, 1);
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &[Record::Initiating])));
    let mut log = Vec::new();
    let empty = || UploadsPage {
        uploads: vec![],
        truncated: false,
        next_key_marker: String::new(),
        next_upload_id_marker: String::new(),
    };
    let late = || UploadsPage {
        uploads: vec![crate::proto::xml::ListedUpload {
            key: "k".into(),
            upload_id: "LATE".into(),
            initiated: None,
        }],
        truncated: false,
        next_key_marker: String::new(),
        next_upload_id_marker: String::new(),
    };
    let mut sweeps = 0;
    let mut aborted = Vec::new();
    for _ in 0..30 {
        match next_call(&mut up, 0, &mut log) {
            Action::Call { id, call } => match call {
                Call::Initiate => up.handle(
                    Event::Initiated {
                        id,
                        upload_id: "U".into(),
                    },
                    0,
                ),
                Call::ListUploads { .. } => {
                    sweeps += 1;
                    let page = if sweeps == 1 { empty() } else { late() };
                    up.handle(Event::UploadsListed { id, page }, 0);
                }
                Call::UploadPart { .. } => up.handle(
                    Event::PartSent {
                        id,
                        etag: "\"E\"".into(),
                        local_crc: 1,
                        server_crc: None,
                    },
                    0,
                ),
                Call::Complete { .. } => up.handle(
                    Event::Completed {
                        id,
                        etag: "\"M\"".into(),
                        server_crc: None,
                    },
                    0,
                ),
                Call::Abort { upload_id } => {
                    aborted.push(upload_id);
                    up.handle(Event::Aborted { id }, 0);
                }
                other => panic!("{other:?}"),
            },
            Action::Done(r) => {
                assert!(r.is_ok(), "{r:?}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(sweeps, 2);
    assert_eq!(aborted, vec!["LATE".to_string()]);
}

#[test]
fn a_restart_after_an_unrecorded_initiate_sweeps_for_strays() {
    let p = params(100, 100, 1);
    // The last run crashed after sending Initiate, before Started was recorded.
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &[Record::Initiating])));
    let mut log = Vec::new();
    let (id, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert_eq!(call, Call::Initiate);
    up.handle(
        Event::Initiated {
            id,
            upload_id: "U".into(),
        },
        0,
    );
    let (_, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert!(matches!(call, Call::ListUploads { .. }), "{call:?}");
    // A journal whose every Initiating led to a Started does not sweep.
    let records = vec![
        Record::Initiating,
        Record::Started {
            upload_id: "U".into(),
        },
    ];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let (_, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert!(matches!(call, Call::ListParts { .. }));
    assert_eq!(next_call(&mut up, 0, &mut log), Action::Wait);
}

#[test]
fn a_set_aside_journal_makes_the_fresh_upload_sweep_for_strays() {
    let mut p = params(100, 100, 1);
    p.sweep_strays = true;
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let (id, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert_eq!(call, Call::Initiate);
    up.handle(
        Event::Initiated {
            id,
            upload_id: "U".into(),
        },
        0,
    );
    let (_, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert!(matches!(call, Call::ListUploads { .. }), "{call:?}");
}

/// Issue 10 item 9: `--wait` on a board with a wrong clock. While probing there is no journal
/// yet, so the learned clock offset must not be persisted (the shell panicked on a Persist with
/// no journal); it goes into the fresh journal instead.
#[test]
fn wait_with_a_wrong_clock_never_persists_before_a_journal_exists() {
    let mut p = params(300, 100, 1);
    p.check_existing = true;
    let mut up = Upload::new(p, None);
    let (id, call) = expect_call(up.poll_action(0));
    assert_eq!(call, Call::HeadObject);
    up.handle(
        Event::Failed {
            id,
            failure: Failure::Status {
                status: 403,
                code: Some("RequestTimeTooSkewed".into()),
            },
            server_time: Some(SERVER_NOW),
            // A board without a real-time clock boots in 1970.
            local_time: 1000,
        },
        0,
    );
    let (id, call) = match up.poll_action(0) {
        Action::Call { id, call } => (id, call),
        other => panic!("expected the HEAD again, got {other:?}"),
    };
    assert_eq!(call, Call::HeadObject);
    assert_eq!(up.clock_offset(), SERVER_NOW - 1000);
    up.handle(Event::Head { id, found: None }, 0);
    match up.poll_action(0) {
        Action::ResetJournal(records) => assert!(
            records.contains(&Record::ClockOffset {
                secs: SERVER_NOW - 1000
            }),
            "{records:?}"
        ),
        other => panic!("expected a fresh journal, got {other:?}"),
    }
}

/// Issue 10 item 10: S3 answers a HEAD of a missing object with a bare 403 when the key may not
/// list the bucket. While probing (`--wait`) that means "not there": upload, do not stop with a
/// permission error (a real credential problem shows at Initiate with its code).
#[test]
fn wait_probe_treats_a_bare_head_403_as_not_found() {
    let mut p = params(300, 100, 1);
    p.check_existing = true;
    let mut up = Upload::new(p, None);
    let (id, _) = expect_call(up.poll_action(0));
    up.handle(
        Event::Failed {
            id,
            failure: Failure::Status {
                status: 403,
                code: None,
            },
            server_time: None,
            local_time: SERVER_NOW,
        },
        0,
    );
    assert!(
        matches!(up.poll_action(0), Action::ResetJournal(_)),
        "a fresh upload starts"
    );
}

/// Issue 10 item 4: Initiate answers lost, then the retry budget runs out. The journal holds
/// the doubt (Initiating records) and must be kept so that a later run sweeps for strays.
#[test]
fn lost_initiates_then_giving_up_keeps_the_doubt_for_a_later_sweep() {
    let mut p = params(300, 100, 1);
    p.retry_for_ms = Some(1_000);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let mut now = 0;
    for _ in 0..100 {
        match next_call(&mut up, now, &mut log) {
            Action::Call { id, call } => {
                assert_eq!(call, Call::Initiate);
                up.handle(
                    Event::Failed {
                        id,
                        failure: Failure::TimedOut,
                        server_time: None,
                        local_time: SERVER_NOW,
                    },
                    now,
                );
            }
            Action::Sleep { until_ms } => now = until_ms,
            Action::Done(r) => {
                assert!(matches!(r, Err(GiveUp::RetryBudget { .. })), "{r:?}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(up.upload_id().is_none());
    assert!(
        up.journal_worth_keeping(),
        "the Initiating doubt outlives the run"
    );
    // A refused Initiate (no doubt: nothing was created) leaves nothing worth keeping.
    let mut up = Upload::new(params(300, 100, 1), None);
    let (id, _) = expect_call(next_call(&mut up, 0, &mut Vec::new()));
    up.handle(failed(id, 403, "AccessDenied"), 0);
    assert!(matches!(up.poll_action(0), Action::Done(Err(_))));
    assert!(!up.journal_worth_keeping());
}

/// Issue 10 item 6: the sweep after a lost Initiate answer aborts our stray but not another
/// writer's upload of the same key, judged by the server's `Initiated` times.
#[test]
fn sweep_spares_another_writers_upload_of_the_same_key() {
    let p = params(300, 100, 1);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let (id, call) = expect_call(next_call(&mut up, 0, &mut log));
    assert_eq!(call, Call::Initiate);
    up.handle(
        Event::Failed {
            id,
            failure: Failure::TimedOut,
            server_time: None,
            local_time: SERVER_NOW,
        },
        0,
    );
    let mut now = 0;
    let id = loop {
        match next_call(&mut up, now, &mut log) {
            Action::Sleep { until_ms } => now = until_ms,
            Action::Call {
                id,
                call: Call::Initiate,
            } => break id,
            other => panic!("{other:?}"),
        }
    };
    up.handle(
        Event::Initiated {
            id,
            upload_id: "OURS".into(),
        },
        now,
    );
    let mut sweep = None;
    for _ in 0..10 {
        if let (id, Call::ListUploads { .. }) = expect_call(next_call(&mut up, now, &mut log)) {
            sweep = Some(id);
            break;
        }
    }
    let t = SERVER_NOW;
    let u = |id: &str, at: i64| crate::proto::xml::ListedUpload {
        key: "k".into(),
        upload_id: id.into(),
        initiated: Some(at),
    };
    let page = crate::proto::xml::UploadsPage {
        uploads: vec![
            u("OTHER-BEFORE", t - 3600),
            u("LOST", t - 1),
            u("OURS", t),
            u("OTHER-AFTER", t + 60),
        ],
        truncated: false,
        next_key_marker: String::new(),
        next_upload_id_marker: String::new(),
    };
    up.handle(
        Event::UploadsListed {
            id: sweep.expect("a sweep"),
            page,
        },
        now,
    );
    let mut aborted = Vec::new();
    for _ in 0..20 {
        match next_call(&mut up, now, &mut log) {
            Action::Call {
                call: Call::Abort { upload_id },
                ..
            } => aborted.push(upload_id),
            Action::Call { .. } | Action::Wait => {}
            Action::Sleep { .. } => break,
            other => panic!("{other:?}"),
        }
        if up.in_flight() >= 1 && !aborted.is_empty() {
            break;
        }
    }
    assert_eq!(
        aborted,
        vec!["LOST".to_string()],
        "only our stray is aborted"
    );
    assert!(log.contains(&Record::AbortPending {
        upload_id: "LOST".into()
    }));
    assert!(!log.iter().any(
        |r| matches!(r, Record::AbortPending { upload_id } if upload_id.starts_with("OTHER"))
    ));
}

/// Issue 10 item 6: another writer keeps aborting our upload (every UploadPart answers
/// NoSuchUpload). Initiates back off and the streak counts against the retry budget even
/// though every Initiate succeeds (it used to reset the clock: thousands of Initiates).
#[test]
fn vanishing_uploads_back_off_and_count_against_the_retry_budget() {
    let mut p = params(300, 100, 1);
    p.retry_for_ms = Some(60_000);
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    let mut now = 0u64;
    let mut initiates = Vec::new();
    let mut n = 0;
    let outcome = loop {
        n += 1;
        assert!(n < 10_000, "no end");
        match next_call(&mut up, now, &mut log) {
            Action::Call {
                id,
                call: Call::Initiate,
            } => {
                initiates.push(now);
                up.handle(
                    Event::Initiated {
                        id,
                        upload_id: format!("U{n}"),
                    },
                    now,
                );
            }
            Action::Call {
                id,
                call: Call::UploadPart { .. },
            } => up.handle(failed(id, 404, "NoSuchUpload"), now),
            Action::Call {
                id,
                call: Call::ListUploads { .. },
            } => up.handle(
                Event::UploadsListed {
                    id,
                    page: crate::proto::xml::UploadsPage {
                        uploads: vec![],
                        truncated: false,
                        next_key_marker: String::new(),
                        next_upload_id_marker: String::new(),
                    },
                },
                now,
            ),
            Action::Call { id, call } => panic!("unexpected {call:?} ({id})"),
            Action::Sleep { until_ms } => now = until_ms,
            Action::Wait => panic!("waits with nothing outstanding"),
            Action::Done(r) => break r,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        matches!(outcome, Err(GiveUp::RetryBudget { .. })),
        "{outcome:?}"
    );
    assert!((60_000..66_000).contains(&now), "gave up at {now} ms");
    assert!(
        initiates.len() < 200,
        "{} Initiates in 60 s: no backoff",
        initiates.len()
    );
    let gaps: Vec<u64> = initiates.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.iter().skip(5).all(|g| *g >= 100), "{gaps:?}");
}

/// Issue 10 item 5: an abort the server refuses (AccessDenied) does not block the upload, and
/// it is reported for the per-destination record that outlives the journal; ids carried in
/// from that record are aborted again by a later run.
#[test]
fn refused_aborts_outlive_the_upload_and_carried_ones_are_retried() {
    // A journal of another identity names upload OLD: it must be aborted, and is refused.
    let p = params(300, 100, 1);
    let mut other = p.clone();
    other.identity.file_len = 999;
    let records = vec![Record::Started {
        upload_id: "OLD".into(),
    }];
    let mut p2 = p.clone();
    p2.carried_aborts = vec!["CARRIED".into()];
    let mut up = Upload::new(p2, Some(replay_of(&other, &records)));
    let mut log = Vec::new();
    let mut aborts = Vec::new();
    for _ in 0..50 {
        match next_call(&mut up, 0, &mut log) {
            Action::Call {
                id,
                call: Call::Abort { upload_id },
            } => {
                aborts.push(upload_id.clone());
                if upload_id == "OLD" {
                    up.handle(failed(id, 403, "AccessDenied"), 0);
                } else {
                    up.handle(Event::Aborted { id }, 0);
                }
            }
            Action::Call {
                id,
                call: Call::Initiate,
            } => up.handle(
                Event::Initiated {
                    id,
                    upload_id: "NEW".into(),
                },
                0,
            ),
            Action::Call {
                id,
                call: Call::UploadPart { n, .. },
            } => up.handle(
                Event::PartSent {
                    id,
                    etag: format!("\"E{n}\""),
                    local_crc: n as u64,
                    server_crc: None,
                },
                0,
            ),
            Action::Call {
                id,
                call: Call::Complete { .. },
            } => up.handle(
                Event::Completed {
                    id,
                    etag: "\"M\"".into(),
                    server_crc: None,
                },
                0,
            ),
            Action::Done(r) => {
                assert!(r.is_ok(), "{r:?}");
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    aborts.sort();
    assert_eq!(aborts, vec!["CARRIED".to_string(), "OLD".to_string()]);
    assert_eq!(
        up.unfinished_aborts(),
        vec!["OLD".to_string()],
        "the refused abort outlives the upload; the carried one is done"
    );
}

/// Issue 10 "Done when": the simulator's random events "file bytes change, metadata does not"
/// (at crashes) and "another writer of the same key" (its uploads, and its sweep aborting
/// ours), on fixed seeds: the object always ends as the file's current bytes, no upload of
/// ours stays open, and another writer's later upload is never aborted (checked in
/// `simulate`). Before item 2's fix these seeds stored old and new bytes mixed.
#[test]
fn simulated_rewrites_in_place_and_other_writers_of_the_key() {
    for seed in 1..40u64 {
        simulate(&SimConfig {
            seed,
            file_len: 900,
            part_size: 50,
            jobs: 1 + (seed % 3) as u32,
            fault_rate: 0.1,
            crash_rate: 0.03,
            device_skew: 0,
            list_crc: seed % 2 == 0,
            page: 2,
            rewrite_rate: 0.5,
            other_writer_rate: 0.02,
        });
    }
}

#[test]
fn simulated_regression_other_writer_aborts_after_lost_initiate() {
    // Found by the proptest in CI: an upload stayed open on the server.
    let r = simulate(&SimConfig {
        seed: 9473531725873030228,
        file_len: 1,
        part_size: 1,
        jobs: 1,
        fault_rate: 0.16469303811352934,
        crash_rate: 0.02069685891822067,
        device_skew: 7200,
        list_crc: false,
        page: 1,
        rewrite_rate: 0.0,
        other_writer_rate: 0.01,
    });
    assert_eq!(r.bytes_received, 1);
}

#[test]
fn simulated_regression_sweep_that_missed_our_vanished_upload_keeps_the_doubt() {
    // Found by the proptest in CI: an Initiate's answer was lost (the server made U1), the
    // retry made U2, another writer aborted U2 before our sweep listed it, so the sweep had no
    // anchor and aborted nothing; the doubt about U1 was then dropped with U2's journal and U1
    // stayed open for ever.
    let r = simulate(&SimConfig {
        seed: 9473531725873030228,
        file_len: 1,
        part_size: 1,
        jobs: 1,
        fault_rate: 0.16469303811352934,
        crash_rate: 0.02069685891822067,
        device_skew: 7200,
        list_crc: false,
        page: 1,
        rewrite_rate: 0.0,
        other_writer_rate: 0.01,
    });
    assert_eq!(r.bytes_received, 1);
}

#[test]
fn list_parts_pages_full_of_duplicates_keep_one_entry_per_part() {
    let p = params(300, 100, 1);
    let records = vec![Record::Started {
        upload_id: "U".into(),
    }];
    let mut up = Upload::new(p.clone(), Some(replay_of(&p, &records)));
    let mut log = Vec::new();
    let page = |marker: u32, last: bool| PartsPage {
        // 1000 entries for parts 1..=3 and for numbers this file cannot have.
        parts: (0..1000u32)
            .map(|i| ListedPart {
                n: if i % 2 == 0 { i % 3 + 1 } else { 4 + i },
                etag: "\"E\"".into(),
                size: 100,
                crc64: None,
            })
            .collect(),
        truncated: !last,
        next_marker: Some(marker + 1),
    };
    let mut pages = 0;
    loop {
        match next_call(&mut up, 0, &mut log) {
            Action::Call {
                id,
                call: Call::ListParts { marker, .. },
            } => {
                pages += 1;
                assert!(pages <= 64, "bounded page count");
                up.handle(
                    Event::Listed {
                        id,
                        page: page(marker, pages == 20),
                    },
                    0,
                );
                assert!(up.listed.len() <= 3, "kept {}", up.listed.len());
            }
            Action::Digest { n } => {
                assert_eq!(n, 1);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(pages, 20);
}

#[test]
fn a_sweep_listing_thousands_of_strays_aborts_a_bounded_number() {
    use crate::proto::xml::{ListedUpload, UploadsPage};
    let file = file_bytes(100, 9);
    let crc = crc64::update(0, &file);
    let mut p = params(100, 100, 1);
    p.sweep_strays = true;
    let mut up = Upload::new(p, None);
    let mut log = Vec::new();
    // The server lists 5000 uploads of this key that no journal names.
    let mut strays: std::collections::BTreeSet<String> =
        (0..5000).map(|i| format!("S{i:05}")).collect();
    let mut aborts = 0u32;
    let mut now = 0;
    for _ in 0..20_000 {
        now += 1;
        match next_call(&mut up, now, &mut log) {
            Action::Call { id, call } => {
                let ev = match call {
                    Call::Initiate => Event::Initiated {
                        id,
                        upload_id: "U".into(),
                    },
                    Call::ListUploads { .. } => {
                        let mut uploads: Vec<ListedUpload> = strays
                            .iter()
                            .take(1000)
                            .map(|u| ListedUpload {
                                key: "k".into(),
                                upload_id: u.clone(),
                                initiated: None,
                            })
                            .collect();
                        uploads.push(ListedUpload {
                            key: "k".into(),
                            upload_id: "U".into(),
                            initiated: None,
                        });
                        Event::UploadsListed {
                            id,
                            page: UploadsPage {
                                uploads,
                                truncated: false,
                                next_key_marker: String::new(),
                                next_upload_id_marker: String::new(),
                            },
                        }
                    }
                    Call::UploadPart { .. } => Event::PartSent {
                        id,
                        etag: etag_of(&file),
                        local_crc: crc,
                        server_crc: Some(crc),
                    },
                    Call::Abort { upload_id } => {
                        aborts += 1;
                        assert!(strays.remove(&upload_id), "{upload_id}");
                        Event::Aborted { id }
                    }
                    Call::Complete { .. } => Event::Completed {
                        id,
                        etag: "\"M\"".into(),
                        server_crc: Some(crc),
                    },
                    other => panic!("{other:?}"),
                };
                up.handle(ev, now);
            }
            Action::Sleep { .. } => {}
            Action::Done(r) => {
                assert!(r.is_ok(), "{r:?}");
                assert!(aborts > 0);
                assert!(aborts <= MAX_SWEEP_ABORTS, "{aborts} aborts in one run");
                let pending = log
                    .iter()
                    .filter(|r| matches!(r, Record::AbortPending { .. }))
                    .count();
                assert!(pending <= MAX_SWEEP_ABORTS as usize, "{pending} records");
                return;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("not done after {aborts} aborts");
}

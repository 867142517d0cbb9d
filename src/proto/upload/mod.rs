//! The upload state machine: decides what happens next, and nothing else.
//!
//! Owns: the order of calls, when records are persisted, reconciliation after a restart,
//! retries and their budget, clock correction, and the end-to-end CRC-64 check.
//! Must not: do IO or render bytes. It emits [`Action`]s; the shell performs them and reports
//! back with [`Event`]s. Time comes in as monotonic milliseconds (`now_ms`) and wall-clock
//! Unix seconds inside events; jitter comes from a caller-seeded generator.
//!
//! ```text
//!            ┌──────── single PUT (small or empty file) ─────────┐
//!  new() ──► │ Put ──► Done                                      │
//!            └───────────────────────────────────────────────────┘
//!  new() ──► ResetJournal ─► Abort old uploads ─► Initiate ─► Started persisted ─┐
//!  new() ──► (journal has an upload id) ─► ListParts pages ─► Verify/Recheck ─────┤
//!                                                                                 ▼
//!            Uploading: ≤ max_in_flight UploadPart calls; each ack ─► Persist(PartDone)
//!                 │ all parts persisted
//!                 ▼
//!            Persist(Completing) ─► Complete ─► CRC-64 check ─► Done
//!                 │ NoSuchUpload                   │ InvalidPart
//!                 ▼                                ▼
//!            HeadObject: object matches? ─► Done   ListParts again
//!                 └── no ─► fresh upload (ResetJournal ─► Initiate)
//! ```
//!
//! Invariants (each is tested, and the simulator checks them under random faults and crashes):
//! a `PartDone` record is persisted only after the server acknowledged that part; `Complete`
//! is sent only after every part record was persisted and after a `Completing` record; the
//! Complete list is exactly parts `1..=count`; a part that journal and server agree on is
//! never sent again while the local bytes still have the journal's CRC-64 (re-read before
//! Complete); a part only the server has is adopted only if the local bytes match.
//!
//! A whole upload driven by hand, no sockets:
//! ```
//! use ossup::proto::upload::{Upload, Params, Action, Event};
//! use ossup::proto::request::Call;
//! let p = Params::new_for_test(10, 4, false); // 10 bytes, PutObject path
//! let mut up = Upload::new(p, None);
//! let Action::Call { id, call: Call::PutObject { len } } = up.poll_action(0) else { panic!() };
//! assert_eq!(len, 10);
//! let crc = ossup::proto::crc64::update(0, b"0123456789");
//! up.handle(Event::Put { id, etag: "\"E\"".into(), local_crc: crc, server_crc: Some(crc) }, 1);
//! assert!(matches!(up.poll_action(2), Action::Done(Ok(_))));
//! ```

pub mod reconcile;
pub mod sweep;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};

use crate::proto::checkpoint::{Etag, Identity, Record, Replay};
use crate::proto::crc64;
use crate::proto::geometry::Geometry;
use crate::proto::request::Call;
use crate::proto::retry::{self, Backoff, Failure, Verdict};
use crate::proto::time;
use crate::proto::xml::{ListedPart, PartsPage, UploadsPage};
use crate::proto::Op;

use reconcile::{JournalPart, Plan};

/// Largest ListParts page requested.
pub const LIST_PAGE: u32 = 1000;
/// Server times before this (2026-01-01T00:00:00Z) are not believed: a server answering with
/// a 1970 `Date` must not drag a good clock back.
pub const MIN_SANE_UNIX: i64 = 1_767_225_600;
/// How often Complete may be answered with InvalidPart before giving up.
const MAX_RELISTS: u32 = 3;
/// ListParts pages in one reconciliation (10,000 parts need 10 pages of 1000).
const MAX_PAGES: u32 = 64;

/// Everything the machine needs to know up front.
#[derive(Debug, Clone)]
pub struct Params {
    /// Identity of the file and destination (goes into the journal header).
    pub identity: Identity,
    /// Part geometry.
    pub geometry: Geometry,
    /// Multipart (with a journal) rather than one PutObject.
    pub multipart: bool,
    /// Parts in flight at once (at least 1).
    pub max_in_flight: u32,
    /// Retry backoff.
    pub backoff: Backoff,
    /// Give up after this long of continuous failure (`None`: never).
    pub retry_for_ms: Option<u64>,
    /// Seed for backoff jitter.
    pub seed: u64,
    /// Before a fresh upload, ask HeadObject whether the object already holds exactly this
    /// file (set when another process held this upload's lock a moment ago).
    pub check_existing: bool,
    /// Sweep ListMultipartUploads for strays of this key once the upload has started (set when
    /// the journal lost records, to damage or a torn tail: they may have named an upload).
    pub sweep_strays: bool,
    /// Uploads of this destination that earlier runs could not abort (the per-destination
    /// pending-abort record): aborted again alongside this upload.
    pub carried_aborts: Vec<String>,
}

impl Params {
    /// Small parameters for examples and tests: a file of `file_len` bytes in parts of
    /// `part_size`, with default backoff and no retry limit.
    pub fn new_for_test(file_len: u64, part_size: u64, multipart: bool) -> Params {
        Params {
            identity: Identity {
                path: "/data/f".into(),
                endpoint: "http://127.0.0.1:9000".into(),
                bucket: "b".into(),
                key: "k".into(),
                scheme: 0,
                file_len,
                mtime_ns: 1,
                inode: 1,
                part_size,
            },
            geometry: Geometry {
                file_len,
                part_size,
            },
            multipart,
            max_in_flight: 1,
            backoff: Backoff::default(),
            retry_for_ms: None,
            seed: 1,
            check_existing: false,
            sweep_strays: false,
            carried_aborts: Vec::new(),
        }
    }
}

/// What the object looks like on the server, from HeadObject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadInfo {
    /// Content-Length.
    pub len: u64,
    /// `x-oss-hash-crc64ecma`, when sent.
    pub crc64: Option<u64>,
    /// ETag, when sent.
    pub etag: Option<String>,
}

/// Something the shell must do. Perform it, then report the matching [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Sign, send and read one call; report its outcome with the same `id`.
    Call {
        /// Correlates the outcome event.
        id: u64,
        /// The call.
        call: Call,
    },
    /// Append the record to the journal and fsync it, then report [`Event::Persisted`].
    Persist(Record),
    /// Replace the journal atomically with a fresh one (current identity, these records),
    /// then report [`Event::Persisted`].
    ResetJournal(Vec<Record>),
    /// Compute the CRC-64 of the whole local file, then report [`Event::FileDigest`].
    DigestFile,
    /// Compute CRC-64 and MD5 of local part `n`, then report [`Event::Digest`].
    Digest {
        /// Part number.
        n: u32,
    },
    /// Re-read local part `n` (an earlier run sent it) and compute its CRC-64 only, then
    /// report [`Event::Rechecked`]. Local reads only: nothing is sent.
    Recheck {
        /// Part number.
        n: u32,
    },
    /// Nothing to start before `until_ms` unless an outstanding call finishes first.
    Sleep {
        /// Monotonic deadline in milliseconds.
        until_ms: u64,
    },
    /// Nothing to start until an outstanding call finishes.
    Wait,
    /// Finished: the upload is complete, or it cannot continue.
    Done(Result<Uploaded, GiveUp>),
}

/// What happened, as the shell reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Initiate succeeded.
    Initiated {
        /// Call id.
        id: u64,
        /// The new upload id.
        upload_id: String,
    },
    /// A ListParts page.
    Listed {
        /// Call id.
        id: u64,
        /// The page.
        page: PartsPage,
    },
    /// UploadPart succeeded.
    PartSent {
        /// Call id.
        id: u64,
        /// ETag the server returned.
        etag: String,
        /// CRC-64 of the bytes we sent.
        local_crc: u64,
        /// The server's `x-oss-hash-crc64ecma`, when sent.
        server_crc: Option<u64>,
    },
    /// PutObject succeeded.
    Put {
        /// Call id.
        id: u64,
        /// ETag.
        etag: String,
        /// CRC-64 of the bytes we sent.
        local_crc: u64,
        /// The server's CRC-64, when sent.
        server_crc: Option<u64>,
    },
    /// Complete succeeded.
    Completed {
        /// Call id.
        id: u64,
        /// The object's ETag.
        etag: String,
        /// The server's CRC-64 of the whole object, when sent.
        server_crc: Option<u64>,
    },
    /// A ListMultipartUploads page (uploads under the key's prefix).
    UploadsListed {
        /// Call id.
        id: u64,
        /// The page.
        page: UploadsPage,
    },
    /// Abort succeeded (or the upload was already gone).
    Aborted {
        /// Call id.
        id: u64,
    },
    /// HeadObject answered; `None` if the object does not exist (404).
    Head {
        /// Call id.
        id: u64,
        /// What the server has.
        found: Option<HeadInfo>,
    },
    /// A call failed.
    Failed {
        /// Call id.
        id: u64,
        /// What went wrong.
        failure: Failure,
        /// The server's time (Unix seconds) if the answer carried one (error `ServerTime`,
        /// else the `Date` header).
        server_time: Option<i64>,
        /// The local wall clock (Unix seconds, uncorrected) when the answer arrived.
        local_time: i64,
    },
    /// The last Persist or ResetJournal is durable.
    Persisted,
    /// CRC-64 of the whole local file.
    FileDigest {
        /// CRC-64.
        crc64: u64,
    },
    /// CRC-64 of local part `n`, answering [`Action::Recheck`].
    Rechecked {
        /// Part number.
        n: u32,
        /// CRC-64 of the bytes now in the file.
        crc64: u64,
    },
    /// Digests of local part `n`.
    Digest {
        /// Part number.
        n: u32,
        /// CRC-64.
        crc64: u64,
        /// MD5.
        md5: [u8; 16],
    },
}

/// A finished upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// The object's ETag.
    pub etag: String,
    /// CRC-64 of the whole object (computed locally, and checked against the server's when
    /// it sent one).
    pub crc64: u64,
    /// Parts in the object (0 for a single PUT).
    pub parts: u32,
    /// Parts that a previous run had already uploaded and that were not sent again.
    pub parts_resumed: u32,
}

/// Why an upload stopped without finishing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GiveUp {
    /// A failure that retrying cannot fix (credentials, permissions, configuration).
    Fatal {
        /// The failing operation.
        op: Op,
        /// The failure.
        failure: Failure,
    },
    /// Retryable failures went on for longer than the retry budget.
    RetryBudget {
        /// The failing operation.
        op: Op,
        /// The last failure.
        failure: Failure,
        /// Failed attempts in the current run of failures.
        attempts: u32,
    },
    /// The server's CRC-64 of the stored object differs from the local bytes.
    DataMismatch {
        /// The call whose answer carried the server's CRC-64 (PutObject or Complete).
        op: Op,
        /// Local CRC-64.
        local: u64,
        /// The server's CRC-64.
        server: u64,
    },
}

/// Where a part stands in this run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// To be sent.
    Todo,
    /// The server lists it but the journal does not vouch for it: waiting for local digests.
    Verify(ListedPart),
    /// Journal and server agree that an earlier run sent it: waiting for the CRC-64 of the
    /// local bytes, which must still equal the journal's (the file may have changed while its
    /// length, mtime and inode did not).
    Recheck(JournalPart),
    /// An UploadPart call is outstanding or scheduled.
    Sending,
    /// Acknowledged by the server; its record is queued or being persisted.
    Acked(JournalPart),
    /// Acknowledged and persisted.
    Done(JournalPart),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Replacing the journal (fresh upload), then aborting old uploads, then Initiate.
    Resetting,
    /// Aborting abandoned uploads before Initiate.
    Aborting,
    /// Initiate outstanding.
    Initiating,
    /// Paging through ListParts.
    Listing,
    /// Computing local digests of server-only parts.
    Verifying,
    /// Sending parts.
    Uploading,
    /// Completing record and Complete call.
    Completing,
    /// HeadObject after NoSuchUpload with a Completing record.
    Checking,
    /// Single PutObject.
    Putting,
    /// HeadObject before a fresh upload, to find an object another process just finished.
    Probing,
    /// Done was returned.
    Finished,
}

/// A call that is outstanding or scheduled.
#[derive(Debug, Clone)]
struct Pending {
    call: Call,
    /// Failed attempts so far.
    attempts: u32,
    /// The previous failure was a clock-skew error (a second one in a row is not believed).
    skewed: bool,
    /// When this attempt was handed to the shell (a stall that ends in a time-out counts
    /// against the retry budget from here).
    sent_ms: Option<u64>,
}

/// What to do once the outstanding persist is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AfterPersist {
    Nothing,
    /// A fresh journal exists.
    JournalReset,
    /// `Initiating` is durable: send Initiate.
    Initiate,
    /// `Started` is durable: start sending.
    Started,
    /// The `PartDone` record of part `n` is durable.
    PartDone(u32),
    /// `Completing` is durable: send Complete.
    Completing,
}

/// The upload state machine. See the module docs.
#[derive(Debug)]
pub struct Upload {
    p: Params,
    phase: Phase,
    upload_id: Option<String>,
    parts: Vec<Part>,
    /// Parts of the journal replay (by number), used by reconciliation.
    journal_parts: BTreeMap<u32, JournalPart>,
    completing_recorded: bool,
    clock_offset: i64,
    /// The server answered ListParts "not implemented": this run started over.
    listing_unsupported: bool,
    /// The last kind of well-formed but unusable answer, and how many of it this run had.
    unusable: Option<(Op, &'static str, u32)>,
    /// Upload ids to abort before (or instead of) going on.
    pending_aborts: Vec<String>,
    /// Records waiting to be persisted, in order, with their follow-ups.
    persist_queue: VecDeque<(Record, AfterPersist)>,
    /// A fresh journal to write before anything else.
    reset_journal: Option<Vec<Record>>,
    persist_outstanding: Option<AfterPersist>,
    /// Calls on the wire, by id.
    in_flight: BTreeMap<u64, Pending>,
    /// Calls still on the wire whose answers no longer matter (abandoned by a restart or a
    /// relisting). They occupy the shell's job slots until they end, so they count against
    /// `max_in_flight`; their answers are ignored.
    stale: std::collections::BTreeSet<u64>,
    /// Calls waiting for their backoff, with the time they may go.
    scheduled: Vec<(u64, Pending)>,
    next_id: u64,
    /// When the current run of failures began.
    failing_since: Option<u64>,
    /// Parts listed by ListParts so far, at most one per part number of this file (a later
    /// listing of a number replaces an earlier one), so hostile pages cannot grow it.
    listed: BTreeMap<u32, ListedPart>,
    pages: u32,
    relists: u32,
    /// Next part to consider sending (all before it are not `Todo`).
    cursor: u32,
    parts_resumed: u32,
    rng: u64,
    outcome: Option<Result<Uploaded, GiveUp>>,
    /// The server may hold an upload of this key that no journal names (an Initiate whose
    /// answer was lost): list and abort strays once our own upload id is durable.
    sweep_needed: bool,
    /// A ListMultipartUploads sweep is under way.
    sweeping: bool,
    /// Sweep pages fetched.
    sweep_pages: u32,
    /// A successful result held back until abandoned uploads are aborted.
    deferred: Option<Uploaded>,
    /// A failure held back until the upload it leaves open is aborted (`EntityTooSmall`).
    deferred_err: Option<GiveUp>,
    /// The object found while probing, waiting for the local file's CRC-64.
    probed: Option<HeadInfo>,
    /// A DigestFile action is due.
    digest_file: bool,
    /// The latest `now_ms` the machine was given (for records made in `on_persisted`).
    last_now_ms: u64,
    /// When this run's first Initiating (of the current doubt) was made durable.
    initiating_since_ms: Option<u64>,
    /// The doubt comes from an earlier run: any earlier upload of the key can be ours.
    window_unbounded: bool,
    /// How far back from our own upload a stray of ours can be (set when Initiate succeeds).
    window: sweep::Window,
    /// Uploads of our key listed by the sweep, judged once the sweep has seen every page.
    sweep_candidates: Vec<crate::proto::xml::ListedUpload>,
    /// Our own upload's `Initiated` (server clock), from the sweep's listing.
    sweep_anchor: Option<i64>,
    /// Since when our uploads keep disappearing (NoSuchUpload: another writer aborting them).
    gone_since: Option<u64>,
    /// How many times in a row.
    gone: u32,
    /// Initiate is not sent before this (backoff after a disappeared upload).
    initiate_at_ms: u64,
    /// Aborts the server refused (e.g. no `AbortMultipartUpload` permission): they outlive
    /// this upload in the per-destination pending-abort record.
    refused_aborts: Vec<String>,
    /// A sweep ran in this run (so the doubt was real): sweep once more before success.
    swept: bool,
    /// That last sweep has been started.
    final_sweep: bool,
    /// A sweep ended without finding our own upload listed while the server lists times (it
    /// vanished first), so it could judge nothing: the doubt it was for is still open.
    sweep_inconclusive: bool,
    /// Strays this run has scheduled for abort (capped at [`MAX_SWEEP_ABORTS`]).
    sweep_aborts: u32,
}

/// Most sweep candidates kept (uploads of exactly our key); more are not judged this sweep.
const MAX_SWEEP_CANDIDATES: usize = 1000;

/// Most strays one run aborts; the rest are found and aborted by the next runs, so a listing
/// full of strays costs a bounded number of requests and journal records per run.
pub const MAX_SWEEP_ABORTS: u32 = 256;

impl Upload {
    /// A machine for `p`, resuming from `replay` when it is the journal of this same upload.
    ///
    /// With a multipart upload and no replay (or a replay of another identity, whose upload is
    /// then aborted), the first action is a [`Action::ResetJournal`].
    pub fn new(mut p: Params, replay: Option<Replay>) -> Upload {
        // An empty file cannot be a multipart upload (Complete needs at least one part).
        if p.geometry.count() == 0 {
            p.multipart = false;
        }
        let count = p.geometry.count() as usize;
        let mut up = Upload {
            phase: Phase::Resetting,
            upload_id: None,
            parts: vec![Part::Todo; count],
            journal_parts: BTreeMap::new(),
            completing_recorded: false,
            clock_offset: 0,
            unusable: None,
            listing_unsupported: false,
            pending_aborts: Vec::new(),
            persist_queue: VecDeque::new(),
            reset_journal: None,
            persist_outstanding: None,
            in_flight: BTreeMap::new(),
            stale: std::collections::BTreeSet::new(),
            scheduled: Vec::new(),
            next_id: 1,
            failing_since: None,
            listed: BTreeMap::new(),
            pages: 0,
            relists: 0,
            cursor: 1,
            parts_resumed: 0,
            rng: p.seed | 1,
            outcome: None,
            probed: None,
            digest_file: false,
            sweep_needed: false,
            sweeping: false,
            sweep_pages: 0,
            deferred: None,
            deferred_err: None,
            last_now_ms: 0,
            initiating_since_ms: None,
            window_unbounded: false,
            window: sweep::Window::Unbounded,
            sweep_candidates: Vec::new(),
            sweep_anchor: None,
            gone_since: None,
            gone: 0,
            initiate_at_ms: 0,
            refused_aborts: Vec::new(),
            swept: false,
            final_sweep: false,
            sweep_inconclusive: false,
            sweep_aborts: 0,
            p,
        };
        let same = replay.as_ref().is_some_and(|r| r.identity == up.p.identity);
        let had_replay = replay.is_some();
        let mut old_upload = None;
        let mut initiating = 0u32;
        let mut started = 0u32;
        if let Some(r) = replay {
            let mut aborted = Vec::new();
            for rec in r.records {
                match rec {
                    Record::Initiating => initiating += 1,
                    Record::Started { upload_id } => {
                        // A new Started supersedes everything recorded for an older upload.
                        started += 1;
                        old_upload = Some(upload_id);
                        up.journal_parts.clear();
                        up.completing_recorded = false;
                    }
                    Record::PartDone {
                        n,
                        etag,
                        crc64,
                        len,
                    } => {
                        up.journal_parts.insert(n, JournalPart { etag, crc64, len });
                    }
                    Record::Completing => up.completing_recorded = true,
                    Record::ClockOffset { secs } => up.clock_offset = secs,
                    Record::AbortPending { upload_id } => up.pending_aborts.push(upload_id),
                    Record::Aborted { upload_id } => aborted.push(upload_id),
                }
            }
            up.pending_aborts.retain(|id| !aborted.contains(id));
        }
        for id in up.p.carried_aborts.clone() {
            if !up.pending_aborts.contains(&id) && old_upload.as_ref().is_none_or(|o| *o != id) {
                // Aborted with the journal's own pending aborts, on every path below.
                up.pending_aborts.push(id);
            }
        }
        if same && up.p.multipart {
            // Every Initiate is preceded by an Initiating record; one more than the uploads
            // we know of means an upload may exist that only the server knows.
            up.sweep_needed = initiating > started || up.p.sweep_strays;
            up.window_unbounded = up.sweep_needed;
            if let Some(id) = old_upload {
                up.upload_id = Some(id);
                up.start_listing();
                if up.sweep_needed {
                    up.start_sweep();
                }
                // Uploads abandoned earlier are aborted alongside (best effort; their
                // AbortPending records stay until an abort succeeds).
                for id in up.pending_aborts.clone() {
                    up.schedule(Call::Abort { upload_id: id }, 0);
                }
            } else {
                // The journal exists but Initiate never succeeded.
                up.after_aborts();
            }
        } else {
            // Another file, part size or destination (or a switch to a single PUT): whatever
            // upload the journal names is abandoned, so it is aborted.
            if let Some(id) = old_upload {
                if !up.pending_aborts.contains(&id) {
                    up.pending_aborts.push(id);
                }
            }
            up.journal_parts.clear();
            up.completing_recorded = false;
            up.sweep_needed = up.p.sweep_strays && up.p.multipart;
            up.window_unbounded = up.sweep_needed;
            if up.p.check_existing && !had_replay {
                // Another process held this upload a moment ago and left no journal: it has
                // probably finished. Look before sending anything.
                up.phase = Phase::Probing;
                up.schedule(Call::HeadObject, 0);
            } else {
                up.begin();
            }
        }
        up
    }

    /// Starts a fresh upload: a new journal then Initiate, or a single PUT.
    fn begin(&mut self) {
        if self.p.multipart {
            self.fresh_journal();
        } else {
            self.phase = Phase::Putting;
            // Single PUTs keep no journal, so abandoned uploads are aborted right away
            // (best effort) before the PUT.
            for id in self.pending_aborts.clone() {
                self.schedule(Call::Abort { upload_id: id }, 0);
            }
            let len = self.p.geometry.file_len;
            self.schedule(Call::PutObject { len }, 0);
        }
    }

    /// Seconds to add to the local clock when signing (learned from the server, or replayed).
    pub fn clock_offset(&self) -> i64 {
        self.clock_offset
    }

    /// The current upload id, if any.
    pub fn upload_id(&self) -> Option<&str> {
        self.upload_id.as_deref()
    }

    /// Bytes of parts acknowledged by the server (for progress).
    pub fn bytes_done(&self) -> u64 {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Acked(j) | Part::Done(j) => j.len,
                _ => 0,
            })
            .sum()
    }

    /// True while a restart is still working out which parts are done (ListParts and local
    /// digests); [`Upload::bytes_done`] is not meaningful for progress until this is false.
    pub fn is_reconciling(&self) -> bool {
        matches!(self.phase, Phase::Listing | Phase::Verifying)
    }

    /// True once the server answered ListParts "not implemented" (HTTP 405/501) and this run
    /// started the upload over instead of resuming it.
    pub fn listing_unsupported(&self) -> bool {
        self.listing_unsupported
    }

    /// True while some abandoned upload still has to be aborted.
    pub fn has_pending_aborts(&self) -> bool {
        !self.pending_aborts.is_empty()
    }

    /// Upload ids of this destination that still need an abort when the run ends: refused
    /// ones (kept for later runs in the per-destination record) and ones not yet tried.
    pub fn unfinished_aborts(&self) -> Vec<String> {
        let mut v = self.refused_aborts.clone();
        for id in &self.pending_aborts {
            if !v.contains(id) {
                v.push(id.clone());
            }
        }
        v
    }

    /// True if the journal holds something a later run needs, whatever ended this one: an
    /// upload id, an abort still to do, or the doubt that an Initiate whose answer was lost
    /// created an upload (a later run sweeps for it). The shell removes the journal of a
    /// failed run only when this is false.
    pub fn journal_worth_keeping(&self) -> bool {
        self.upload_id.is_some()
            || !self.pending_aborts.is_empty()
            || self.sweep_needed
            || self.sweeping
    }

    /// Total bytes of the upload.
    pub fn bytes_total(&self) -> u64 {
        self.p.geometry.file_len
    }

    /// Calls currently on the wire.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len() + self.stale.len()
    }

    fn fresh_journal(&mut self) {
        self.phase = Phase::Resetting;
        self.upload_id = None;
        let ids: Vec<u64> = self.in_flight.keys().copied().collect();
        self.stale.extend(ids);
        self.in_flight.clear();
        self.scheduled.clear();
        self.persist_queue.clear();
        self.parts = vec![Part::Todo; self.p.geometry.count() as usize];
        self.cursor = 1;
        self.journal_parts.clear();
        self.completing_recorded = false;
        if !(self.sweep_needed || self.sweeping) {
            self.initiating_since_ms = None;
        }
        let mut records = Vec::new();
        if self.clock_offset != 0 {
            records.push(Record::ClockOffset {
                secs: self.clock_offset,
            });
        }
        for id in &self.pending_aborts {
            records.push(Record::AbortPending {
                upload_id: id.clone(),
            });
        }
        if self.sweep_needed || self.sweeping {
            // Keep the doubt about a stray upload across the reset (see `Record::Initiating`).
            records.push(Record::Initiating);
            self.sweep_needed = true;
            self.sweeping = false;
        }
        self.reset_journal = Some(records);
    }

    fn start_listing(&mut self) {
        self.phase = Phase::Listing;
        self.listed.clear();
        self.pages = 0;
        self.drop_foreground();
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.schedule(
            Call::ListParts {
                upload_id,
                marker: 0,
                max_parts: LIST_PAGE,
            },
            0,
        );
    }

    fn after_aborts(&mut self) {
        if let Some(id) = self.pending_aborts.first().cloned() {
            self.phase = Phase::Aborting;
            self.schedule(Call::Abort { upload_id: id }, 0);
        } else {
            self.phase = Phase::Initiating;
            self.initiating_since_ms.get_or_insert(self.last_now_ms);
            self.persist_queue
                .push_back((Record::Initiating, AfterPersist::Initiate));
        }
    }

    fn start_sweep(&mut self) {
        self.sweep_needed = false;
        self.sweeping = true;
        self.swept = true;
        self.sweep_pages = 0;
        self.sweep_candidates.clear();
        // The anchor is kept: the last sweep runs after Complete, when our upload is no
        // longer listed.
        let call = Call::ListUploads {
            key_marker: String::new(),
            upload_id_marker: String::new(),
        };
        self.schedule(call, 0);
    }

    /// Finishes with `u` now, or once abandoned uploads are aborted and the sweep is done.
    fn succeed(&mut self, u: Uploaded) {
        if self.swept && !self.final_sweep && self.p.multipart {
            // An Initiate whose answer was lost can still be completing on the server after
            // the first sweep: look once more, just before reporting success.
            self.final_sweep = true;
            self.deferred = Some(u);
            if !self.sweeping {
                self.start_sweep();
            }
            return;
        }
        if self.pending_aborts.is_empty() && !self.sweeping {
            self.finish(Ok(u));
        } else {
            self.deferred = Some(u);
        }
    }

    /// Releases a deferred success once nothing is left to clean up.
    fn maybe_release(&mut self) {
        if self.pending_aborts.is_empty() && !self.sweeping {
            if let Some(u) = self.deferred.take() {
                self.finish(Ok(u));
            } else if let Some(g) = self.deferred_err.take() {
                self.finish(Err(g));
            }
        }
    }

    fn schedule(&mut self, call: Call, at_ms: u64) {
        self.scheduled.push((
            at_ms,
            Pending {
                call,
                attempts: 0,
                skewed: false,
                sent_ms: None,
            },
        ));
    }

    /// Cleanup calls (aborting abandoned uploads, sweeping for strays) that run beside the
    /// upload and survive its restarts and relistings.
    fn is_background(call: &Call) -> bool {
        matches!(call, Call::Abort { .. } | Call::ListUploads { .. })
    }

    /// Forgets outstanding and scheduled upload calls (their answers become stale), keeping
    /// the background cleanup calls.
    fn drop_foreground(&mut self) {
        let ids: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, p)| !Self::is_background(&p.call))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.in_flight.remove(&id);
            self.stale.insert(id);
        }
        self.scheduled.retain(|(_, p)| Self::is_background(&p.call));
    }

    /// True while an upload call (not a cleanup call) is outstanding or scheduled.
    fn foreground_busy(&self) -> bool {
        self.in_flight
            .values()
            .any(|p| !Self::is_background(&p.call))
            || self
                .scheduled
                .iter()
                .any(|(_, p)| !Self::is_background(&p.call))
    }

    fn finish(&mut self, r: Result<Uploaded, GiveUp>) {
        self.phase = Phase::Finished;
        self.in_flight.clear();
        self.scheduled.clear();
        self.outcome = Some(r);
    }

    fn next_jitter(&mut self) -> u64 {
        // xorshift64*: deterministic for a given seed, which keeps simulations repeatable.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// The next thing to do at monotonic time `now_ms`. Call it until it returns `Sleep`,
    /// `Wait` or `Done`; perform each action and report its event with [`Upload::handle`].
    pub fn poll_action(&mut self, now_ms: u64) -> Action {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        if let Some(o) = &self.outcome {
            return Action::Done(o.clone());
        }
        if self.persist_outstanding.is_some() {
            return Action::Wait;
        }
        if let Some(records) = self.reset_journal.take() {
            self.persist_outstanding = Some(AfterPersist::JournalReset);
            return Action::ResetJournal(records);
        }
        if let Some((rec, after)) = self.persist_queue.pop_front() {
            self.persist_outstanding = Some(after);
            return Action::Persist(rec);
        }
        if self.digest_file {
            self.digest_file = false;
            return Action::DigestFile;
        }
        if self.phase == Phase::Verifying {
            if let Some(n) = self.parts.iter().position(|p| matches!(p, Part::Verify(_))) {
                // Digests are computed one at a time; Verify parts turn into Done or Todo.
                return Action::Digest { n: n as u32 + 1 };
            }
            if let Some(n) = self
                .parts
                .iter()
                .position(|p| matches!(p, Part::Recheck(_)))
            {
                // So do Recheck parts: Done if the local bytes still match, else sent again.
                return Action::Recheck { n: n as u32 + 1 };
            }
            self.phase = Phase::Uploading;
            self.cursor = 1;
        }
        if self.phase == Phase::Uploading {
            self.fill_parts();
            // Complete waits for a running sweep: it must see our upload listed (its
            // `Initiated` anchors the window) before Complete takes it off the listing.
            if !self.foreground_busy()
                && !self.sweeping
                && self.parts.iter().all(|p| matches!(p, Part::Done(_)))
            {
                self.phase = Phase::Completing;
                if self.completing_recorded {
                    self.send_complete();
                } else {
                    self.persist_outstanding = Some(AfterPersist::Completing);
                    return Action::Persist(Record::Completing);
                }
            }
        }
        // Start the earliest scheduled call that is due and fits.
        let limit = self.p.max_in_flight.max(1) as usize;
        if self.in_flight.len() + self.stale.len() < limit {
            if let Some(i) = self
                .scheduled
                .iter()
                .enumerate()
                .filter(|(_, (at, _))| *at <= now_ms)
                .min_by_key(|(_, (at, _))| *at)
                .map(|(i, _)| i)
            {
                let (_, mut pending) = self.scheduled.swap_remove(i);
                pending.sent_ms = Some(now_ms);
                let id = self.next_id;
                self.next_id += 1;
                let call = pending.call.clone();
                self.in_flight.insert(id, pending);
                return Action::Call { id, call };
            }
        }
        if self.in_flight.len() + self.stale.len() < limit {
            if let Some(at) = self.scheduled.iter().map(|(at, _)| *at).min() {
                return Action::Sleep { until_ms: at };
            }
        }
        Action::Wait
    }

    /// Schedules UploadPart calls for `Todo` parts, keeping at most `max_in_flight` parts
    /// outstanding or scheduled.
    fn fill_parts(&mut self) {
        let limit = self.p.max_in_flight.max(1) as usize;
        let count = self.p.geometry.count();
        while self.in_flight.len() + self.stale.len() + self.scheduled.len() < limit
            && self.cursor <= count
        {
            let n = self.cursor;
            self.cursor += 1;
            if self.parts[n as usize - 1] == Part::Todo {
                self.parts[n as usize - 1] = Part::Sending;
                let (offset, len) = self.p.geometry.part(n);
                let upload_id = self.upload_id.clone().unwrap_or_default();
                self.schedule(
                    Call::UploadPart {
                        upload_id,
                        n,
                        offset,
                        len,
                    },
                    0,
                );
            }
        }
    }

    fn combined_crc(&self) -> u64 {
        self.parts.iter().fold(0, |acc, p| match p {
            Part::Done(j) | Part::Acked(j) => crc64::combine(acc, j.crc64, j.len),
            _ => acc,
        })
    }

    fn send_complete(&mut self) {
        let parts = self
            .parts
            .iter()
            .enumerate()
            .filter_map(|(i, p)| match p {
                Part::Done(j) => Some((i as u32 + 1, j.etag.to_text())),
                _ => None,
            })
            .collect();
        let upload_id = self.upload_id.clone().unwrap_or_default();
        self.schedule(Call::Complete { upload_id, parts }, 0);
    }

    /// Reports what happened, at monotonic time `now_ms`.
    pub fn handle(&mut self, event: Event, now_ms: u64) {
        self.last_now_ms = self.last_now_ms.max(now_ms);
        if self.outcome.is_some() {
            return;
        }
        match event {
            Event::Persisted => self.on_persisted(),
            Event::Digest { n, crc64, md5 } => self.on_digest(n, crc64, md5),
            Event::Rechecked { n, crc64 } => self.on_rechecked(n, crc64),
            Event::FileDigest { crc64 } => {
                let Some(h) = self.probed.take() else { return };
                if h.crc64 == Some(crc64) {
                    let etag = h.etag.unwrap_or_default();
                    let parts = self.p.geometry.count();
                    let u = Uploaded {
                        etag,
                        crc64,
                        parts,
                        parts_resumed: parts,
                    };
                    if self.phase == Phase::Checking {
                        // As before the local check: abandoned uploads and the sweep (both
                        // already scheduled on this path) come first.
                        self.succeed(u);
                    } else {
                        self.finish(Ok(u));
                    }
                } else {
                    self.begin();
                }
            }
            Event::Failed {
                id,
                failure,
                server_time,
                local_time,
            } => {
                if let Some(pending) = self.in_flight.remove(&id) {
                    self.on_failed(pending, failure, server_time, local_time, now_ms);
                } else {
                    self.stale.remove(&id);
                }
            }
            ev => {
                let id = match &ev {
                    Event::Initiated { id, .. }
                    | Event::Listed { id, .. }
                    | Event::PartSent { id, .. }
                    | Event::Put { id, .. }
                    | Event::Completed { id, .. }
                    | Event::Aborted { id }
                    | Event::UploadsListed { id, .. }
                    | Event::Head { id, .. } => *id,
                    Event::Persisted
                    | Event::Digest { .. }
                    | Event::Rechecked { .. }
                    | Event::FileDigest { .. }
                    | Event::Failed { .. } => return,
                };
                // Answers to calls from an abandoned generation (after a restart) are stale.
                let Some(pending) = self.in_flight.remove(&id) else {
                    self.stale.remove(&id);
                    return;
                };
                self.failing_since = None;
                self.on_success(pending, ev, now_ms);
            }
        }
    }

    fn on_persisted(&mut self) {
        let Some(after) = self.persist_outstanding.take() else {
            return;
        };
        match after {
            AfterPersist::Nothing => {}
            AfterPersist::JournalReset => self.after_aborts(),
            AfterPersist::Initiate => self.schedule(Call::Initiate, self.initiate_at_ms),
            AfterPersist::Started => {
                self.phase = Phase::Uploading;
                self.cursor = 1;
                if self.sweep_needed {
                    self.start_sweep();
                }
            }
            AfterPersist::PartDone(n) => {
                if let Some(Part::Acked(j)) = self.parts.get(n as usize - 1).cloned() {
                    self.parts[n as usize - 1] = Part::Done(j);
                }
            }
            AfterPersist::Completing => {
                self.completing_recorded = true;
                self.send_complete();
            }
        }
    }

    fn on_digest(&mut self, n: u32, crc64: u64, md5: [u8; 16]) {
        let Some(Part::Verify(s)) = self.parts.get(n as usize - 1).cloned() else {
            return;
        };
        if reconcile::local_matches(&s, crc64, &md5) {
            let j = JournalPart {
                etag: Etag::from_text(&s.etag),
                crc64,
                len: s.size,
            };
            self.parts_resumed += 1;
            self.adopt(n, j);
        } else {
            self.parts[n as usize - 1] = Part::Todo;
        }
    }

    fn on_rechecked(&mut self, n: u32, crc64: u64) {
        let Some(Part::Recheck(j)) = self.parts.get(n as usize - 1).cloned() else {
            return;
        };
        if reconcile::still_matches(&j, crc64) {
            self.parts_resumed += 1;
            self.parts[n as usize - 1] = Part::Done(j);
        } else {
            // The bytes changed under the same metadata: the server's copy is of other bytes.
            self.parts[n as usize - 1] = Part::Todo;
        }
    }

    /// Marks part `n` acknowledged and queues its record.
    fn adopt(&mut self, n: u32, j: JournalPart) {
        let rec = Record::PartDone {
            n,
            etag: j.etag.clone(),
            crc64: j.crc64,
            len: j.len,
        };
        self.parts[n as usize - 1] = Part::Acked(j);
        self.persist_queue
            .push_back((rec, AfterPersist::PartDone(n)));
    }

    fn on_success(&mut self, pending: Pending, ev: Event, now_ms: u64) {
        match (pending.call, ev) {
            (Call::Initiate, Event::Initiated { upload_id, .. }) => {
                self.window = if self.window_unbounded {
                    sweep::Window::Unbounded
                } else {
                    // Not before the first Initiate could go (a backoff after a vanished
                    // upload is not part of the window).
                    let first = self.initiating_since_ms.unwrap_or(now_ms);
                    let since = if self.sweep_inconclusive {
                        first
                    } else {
                        first.max(self.initiate_at_ms)
                    };
                    sweep::Window::Secs(now_ms.saturating_sub(since).div_ceil(1000))
                };
                self.upload_id = Some(upload_id.clone());
                self.sweep_anchor = None;
                self.persist_queue
                    .push_back((Record::Started { upload_id }, AfterPersist::Started));
            }
            (Call::Abort { upload_id }, Event::Aborted { .. }) => self.abort_done(upload_id),
            (Call::ListUploads { .. }, Event::UploadsListed { page, .. }) => {
                self.sweep_pages += 1;
                let ours = self.upload_id.clone();
                for u in page.uploads {
                    if u.key != self.p.identity.key {
                        continue;
                    }
                    if Some(&u.upload_id) == ours.as_ref() {
                        self.sweep_anchor = u.initiated;
                    } else if !self.pending_aborts.contains(&u.upload_id)
                        && self.sweep_candidates.len() < MAX_SWEEP_CANDIDATES
                    {
                        self.sweep_candidates.push(u);
                    }
                }
                let more = page.truncated
                    && !(page.next_key_marker.is_empty() && page.next_upload_id_marker.is_empty());
                if more && self.sweep_pages < MAX_PAGES {
                    let call = Call::ListUploads {
                        key_marker: page.next_key_marker,
                        upload_id_marker: page.next_upload_id_marker,
                    };
                    self.schedule(call, now_ms);
                } else {
                    self.sweeping = false;
                    self.judge_sweep(now_ms);
                    self.maybe_release();
                }
            }
            (Call::ListParts { marker, .. }, Event::Listed { page, .. }) => {
                self.pages += 1;
                let last = page.parts.iter().map(|p| p.n).max();
                let count = self.p.geometry.count();
                for part in page.parts {
                    if (1..=count).contains(&part.n) {
                        self.listed.insert(part.n, part);
                    }
                }
                let next = page.next_marker.or(last).filter(|m| *m > marker);
                match next {
                    Some(m) if page.truncated && self.pages < MAX_PAGES => {
                        let upload_id = self.upload_id.clone().unwrap_or_default();
                        self.schedule(
                            Call::ListParts {
                                upload_id,
                                marker: m,
                                max_parts: LIST_PAGE,
                            },
                            now_ms,
                        );
                    }
                    _ => self.reconcile(),
                }
            }
            (
                Call::UploadPart { n, len, .. },
                Event::PartSent {
                    etag,
                    local_crc,
                    server_crc,
                    ..
                },
            ) => {
                if server_crc.is_some_and(|c| c != local_crc) {
                    // The server stored other bytes than we sent: send the part again.
                    let p = Pending {
                        call: self.part_call(n),
                        attempts: pending.attempts,
                        skewed: false,
                        sent_ms: None,
                    };
                    self.retry_later(p, Failure::CrcMismatch, now_ms);
                    return;
                }
                self.adopt(
                    n,
                    JournalPart {
                        etag: Etag::from_text(&etag),
                        crc64: local_crc,
                        len,
                    },
                );
            }
            (
                Call::Complete { .. },
                Event::Completed {
                    etag, server_crc, ..
                },
            ) => {
                let local = self.combined_crc();
                match server_crc {
                    Some(server) if server != local => self.finish(Err(GiveUp::DataMismatch {
                        op: Op::Complete,
                        local,
                        server,
                    })),
                    _ => {
                        self.gone_since = None;
                        self.gone = 0;
                        let u = self.uploaded(etag, local);
                        self.succeed(u);
                    }
                }
            }
            (Call::HeadObject, Event::Head { found, .. }) if self.phase == Phase::Probing => {
                match found {
                    // Only a CRC-64 can prove the object is this file without downloading it.
                    Some(h) if h.len == self.p.geometry.file_len && h.crc64.is_some() => {
                        self.probed = Some(h);
                        self.digest_file = true;
                    }
                    _ => self.begin(),
                }
            }
            (Call::HeadObject, Event::Head { found, .. }) => {
                let local = self.combined_crc();
                if let Some(h) = found
                    .as_ref()
                    .filter(|h| h.len == self.p.geometry.file_len && h.crc64 == Some(local))
                {
                    // The object is what the journal's parts make up; the file may have
                    // changed since under the same metadata: prove it with the local bytes
                    // (a mismatch starts a fresh upload of the file as it is now).
                    self.probed = Some(h.clone());
                    self.digest_file = true;
                    return;
                }
                let ok = found.as_ref().is_some_and(|h| {
                    h.len == self.p.geometry.file_len
                        && (h.crc64 == Some(local)
                            || (h.crc64.is_none()
                                && h.etag
                                    .as_deref()
                                    .is_some_and(|e| self.multipart_etag_matches(e))))
                });
                if ok {
                    let etag = found.and_then(|h| h.etag).unwrap_or_default();
                    let u = self.uploaded(etag, local);
                    self.succeed(u);
                } else {
                    // The Complete never happened (or someone replaced the object): start over.
                    self.fresh_journal();
                }
            }
            (
                Call::PutObject { .. },
                Event::Put {
                    etag,
                    local_crc,
                    server_crc,
                    ..
                },
            ) => match server_crc {
                Some(server) if server != local_crc => self.finish(Err(GiveUp::DataMismatch {
                    op: Op::PutObject,
                    local: local_crc,
                    server,
                })),
                _ => self.succeed(Uploaded {
                    etag,
                    crc64: local_crc,
                    parts: 0,
                    parts_resumed: 0,
                }),
            },
            (call, _) => {
                // An answer that does not fit the call is a malformed response.
                let p = Pending {
                    call,
                    attempts: pending.attempts,
                    skewed: false,
                    sent_ms: None,
                };
                self.retry_later(p, Failure::Malformed, now_ms);
            }
        }
    }

    fn uploaded(&self, etag: String, crc64: u64) -> Uploaded {
        Uploaded {
            etag,
            crc64,
            parts: self.p.geometry.count(),
            parts_resumed: self.parts_resumed,
        }
    }

    /// S3's multipart ETag is the MD5 of the concatenated part MD5s, `-N`: lets HeadObject
    /// confirm a completed upload on stores that send no CRC-64.
    fn multipart_etag_matches(&self, etag: &str) -> bool {
        use md5::{Digest, Md5};
        let mut h = Md5::new();
        for p in &self.parts {
            match p {
                Part::Done(JournalPart {
                    etag: Etag::Md5 { bytes, .. },
                    ..
                }) => h.update(bytes),
                _ => return false,
            }
        }
        let hex = crate::proto::sign::hex(&h.finalize());
        reconcile::etag_eq(etag, &format!("{hex}-{}", self.parts.len()))
    }

    fn part_call(&self, n: u32) -> Call {
        let (offset, len) = self.p.geometry.part(n);
        let upload_id = self.upload_id.clone().unwrap_or_default();
        Call::UploadPart {
            upload_id,
            n,
            offset,
            len,
        }
    }

    fn reconcile(&mut self) {
        let listed: Vec<ListedPart> = std::mem::take(&mut self.listed).into_values().collect();
        let plan = reconcile::reconcile(&self.p.geometry, &self.journal_parts, &listed);
        self.listed.clear();
        for (i, step) in plan.into_iter().enumerate() {
            self.parts[i] = match step {
                Plan::Done(j) => Part::Recheck(j),
                Plan::Verify(s) => Part::Verify(s),
                Plan::Send => Part::Todo,
            };
        }
        // Counted as their local bytes are proven (Recheck and Verify).
        self.parts_resumed = 0;
        self.cursor = 1;
        self.phase = Phase::Verifying;
    }

    fn retry_later(&mut self, mut p: Pending, failure: Failure, now_ms: u64) {
        p.attempts += 1;
        if let Failure::Unusable(what) = failure {
            let op = p.call.op();
            let streak = match self.unusable {
                Some((o, w, n)) if o == op && w == what => n + 1,
                _ => 1,
            };
            self.unusable = Some((op, what, streak));
            if streak >= retry::MAX_UNUSABLE {
                // The same well-formed answer without what the protocol needs, again and
                // again: this server does not speak it as ossup does. Retrying for a day
                // cannot change that.
                self.finish(Err(GiveUp::Fatal { op, failure }));
                return;
            }
        }
        // A time-out ends a stall that began when the call went out: that time was failing too.
        let start = match (&failure, p.sent_ms) {
            (Failure::TimedOut, Some(sent)) => sent.min(now_ms),
            _ => now_ms,
        };
        let since = *self.failing_since.get_or_insert(start);
        if let Some(budget) = self.p.retry_for_ms {
            if now_ms.saturating_sub(since) >= budget {
                let op = p.call.op();
                self.finish(Err(GiveUp::RetryBudget {
                    op,
                    failure,
                    attempts: p.attempts,
                }));
                return;
            }
        }
        let jitter = self.next_jitter();
        let delay = self.p.backoff.delay_ms(p.attempts, jitter);
        self.scheduled.push((now_ms.saturating_add(delay), p));
    }

    fn on_failed(
        &mut self,
        mut pending: Pending,
        failure: Failure,
        server_time: Option<i64>,
        local_time: i64,
        now_ms: u64,
    ) {
        let op = pending.call.op();
        let was_skewed = std::mem::replace(&mut pending.skewed, false);
        // Refused: the server did not act (a credentials rejection or a request never sent
        // for want of credentials is one too).
        let refused = matches!(
            failure,
            Failure::Status {
                status: 400..=499,
                ..
            } | Failure::AwaitingCredentials { .. }
        );
        if matches!(pending.call, Call::Initiate) && !refused {
            // The server may have created the upload and lost the answer: note it durably
            // before trying again, so that this run or the next sweeps for the stray.
            self.persist_queue
                .push_back((Record::Initiating, AfterPersist::Nothing));
            self.sweep_needed = true;
        }
        if self.phase == Phase::Probing
            && matches!(pending.call, Call::HeadObject)
            && matches!(&failure, Failure::Status { status: 403, code } if code.as_deref().is_none_or(str::is_empty))
        {
            // A HEAD answer has no body, and S3 answers a missing object with a bare 403 when
            // the key may not list the bucket: here that means "not there". A real credentials
            // problem shows at the next call, with its code.
            self.begin();
            return;
        }
        match retry::classify(op, &failure) {
            Verdict::Retry => self.retry_later(pending, failure, now_ms),
            Verdict::FixClock => match server_time.filter(|t| {
                time::plausible_server_time(*t, local_time, self.clock_offset, MIN_SANE_UNIX)
            }) {
                Some(t) if !was_skewed => {
                    self.clock_offset = t - local_time;
                    // Multipart uploads have a journal by now (ResetJournal comes first)
                    // except while probing (`--wait`), where the fresh journal made after the
                    // probe carries the offset; a restarted process signs right at once.
                    if self.p.multipart && self.phase != Phase::Probing {
                        let rec = Record::ClockOffset {
                            secs: self.clock_offset,
                        };
                        self.persist_queue.push_back((rec, AfterPersist::Nothing));
                    }
                    pending.skewed = true;
                    self.scheduled.push((now_ms, pending));
                }
                _ => self.retry_later(pending, failure, now_ms),
            },
            Verdict::UploadGone => match pending.call {
                // Already gone: that is what we wanted.
                Call::Abort { upload_id } => self.abort_done(upload_id),
                _ if self.completing_recorded => {
                    // Complete may have succeeded with its answer lost: look at the object,
                    // judged by the parts the journal recorded.
                    for n in 1..=self.p.geometry.count() {
                        if let Some(j) = self.journal_parts.get(&n) {
                            if !matches!(self.parts[n as usize - 1], Part::Done(_)) {
                                self.parts[n as usize - 1] = Part::Done(j.clone());
                            }
                        }
                    }
                    self.drop_foreground();
                    self.phase = Phase::Checking;
                    self.schedule(Call::HeadObject, now_ms);
                }
                _ => {
                    // Our upload vanished: another writer of the key (another gateway, tool or
                    // checkpoint dir) may be aborting it. Back off before the next Initiate,
                    // and count the streak against the retry budget: every successful
                    // Initiate must not reset the clock, or two writers loop for ever.
                    let since = *self.gone_since.get_or_insert(now_ms);
                    self.gone += 1;
                    if let Some(budget) = self.p.retry_for_ms {
                        if now_ms.saturating_sub(since) >= budget {
                            self.finish(Err(GiveUp::RetryBudget {
                                op,
                                failure,
                                attempts: self.gone,
                            }));
                            return;
                        }
                    }
                    let jitter = self.next_jitter();
                    let delay = self
                        .p
                        .backoff
                        .delay_ms(self.gone, jitter)
                        .saturating_add(sweep::VANISHED_WAIT_MS)
                        // Wide jitter: two writers that vanished together start apart.
                        .saturating_add(self.next_jitter() % 3000);
                    self.initiate_at_ms = now_ms.saturating_add(delay);
                    // No new doubt: strays of ours come only from Initiates whose answers
                    // were lost, and those are recorded (Initiating) and swept as such. A
                    // sweep here would abort the very writer that aborted ours.
                    if self.sweep_inconclusive {
                        // Unless the sweep for an earlier doubt could not judge (ours had
                        // vanished before it listed): that doubt stays, with its window from
                        // the first Initiating on, and the next upload sweeps for it.
                        self.sweep_needed = true;
                    } else {
                        self.initiating_since_ms = None;
                        self.window_unbounded = false;
                    }
                    self.fresh_journal();
                }
            },
            Verdict::Relist => {
                self.relists += 1;
                if self.relists > MAX_RELISTS {
                    self.finish(Err(GiveUp::Fatal { op, failure }));
                } else {
                    self.completing_recorded = false;
                    self.journal_parts = self
                        .parts
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| match p {
                            Part::Done(j) => Some((i as u32 + 1, j.clone())),
                            _ => None,
                        })
                        .collect();
                    self.start_listing();
                }
            }
            Verdict::Fatal => match pending.call {
                Call::Abort { upload_id } => {
                    // An abort we cannot do (e.g. no permission) must not block the upload;
                    // its AbortPending record stays, and the shell keeps it in the
                    // per-destination record (which outlives this upload's journal).
                    self.pending_aborts.retain(|id| *id != upload_id);
                    if !self.refused_aborts.contains(&upload_id) {
                        self.refused_aborts.push(upload_id);
                    }
                    if self.phase == Phase::Aborting {
                        self.after_aborts();
                    }
                    self.maybe_release();
                }
                Call::ListParts { .. } if retry::is_unsupported(&failure) => {
                    // This server cannot list parts (s3rver): what earlier runs sent cannot be
                    // proven, so the upload starts over; the old upload is aborted (best
                    // effort: a server without ListParts may lack Abort too, and then the id
                    // is kept for `ossup status` and `ossup abort --forget`).
                    self.listing_unsupported = true;
                    if let Some(id) = self.upload_id.take() {
                        if !self.pending_aborts.contains(&id) {
                            self.pending_aborts.push(id);
                        }
                    }
                    self.begin();
                }
                Call::ListUploads { .. } => {
                    // No permission to list uploads: the sweep is best effort.
                    self.sweeping = false;
                    self.maybe_release();
                }
                Call::Complete { .. } if matches!(&failure, Failure::Status { code: Some(c), .. } if c == "EntityTooSmall") =>
                {
                    // The store wants bigger parts (S3's 5 MiB minimum): no retry can complete
                    // this upload, so it is aborted before the run ends with the error, and
                    // nothing is left open on the server.
                    self.drop_foreground();
                    if let Some(id) = self.upload_id.take() {
                        if !self.pending_aborts.contains(&id) {
                            let rec = Record::AbortPending {
                                upload_id: id.clone(),
                            };
                            self.persist_queue.push_back((rec, AfterPersist::Nothing));
                            self.pending_aborts.push(id.clone());
                            self.schedule(Call::Abort { upload_id: id }, now_ms);
                        }
                    }
                    self.deferred_err = Some(GiveUp::Fatal { op, failure });
                    self.maybe_release();
                }
                _ => self.finish(Err(GiveUp::Fatal { op, failure })),
            },
        }
    }

    /// Aborts the swept uploads that can be ours (see [`sweep::can_be_ours`]).
    fn judge_sweep(&mut self, now_ms: u64) {
        let anchor = self.sweep_anchor;
        self.sweep_inconclusive =
            anchor.is_none() && self.sweep_candidates.iter().any(|u| u.initiated.is_some());
        let mut known: std::collections::BTreeSet<String> =
            self.pending_aborts.iter().cloned().collect();
        for u in std::mem::take(&mut self.sweep_candidates) {
            if self.sweep_aborts >= MAX_SWEEP_ABORTS {
                break;
            }
            if !sweep::can_be_ours(u.initiated, anchor, self.window)
                || !known.insert(u.upload_id.clone())
            {
                continue;
            }
            self.sweep_aborts += 1;
            let rec = Record::AbortPending {
                upload_id: u.upload_id.clone(),
            };
            self.persist_queue.push_back((rec, AfterPersist::Nothing));
            self.pending_aborts.push(u.upload_id.clone());
            self.schedule(
                Call::Abort {
                    upload_id: u.upload_id,
                },
                now_ms,
            );
        }
    }

    fn abort_done(&mut self, upload_id: String) {
        self.pending_aborts.retain(|id| *id != upload_id);
        if self.p.multipart {
            self.persist_queue
                .push_back((Record::Aborted { upload_id }, AfterPersist::Nothing));
            if self.phase == Phase::Aborting {
                self.after_aborts();
            }
        }
        self.maybe_release();
    }
}

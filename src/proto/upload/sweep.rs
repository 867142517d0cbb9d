//! Which listed uploads of our key the stray sweep may abort.
//!
//! Owns: the pure rule deciding whether an upload listed by ListMultipartUploads can be one of
//! ours (created by an Initiate whose answer we lost). Must not: page, abort or read clocks
//! (the machine passes what it knows).
//!
//! Every time is in the **server's** clock: the anchor is the `Initiated` time the server
//! lists for our own upload, so a wrong local clock (boards without an RTC) does not matter.
//! An Initiate whose answer was lost was sent before the retry that created our upload, so a
//! stray of ours was initiated no later than ours (the same second counts) and no earlier
//! than our first Initiate of this run less [`MARGIN_SECS`] (the window's length is
//! measured on the monotonic clock). A lost Initiate the server processed after our retry
//! succeeded is not caught (rare: retries follow timeouts of many seconds); the price of
//! catching it would be two writers that start together aborting each other. Another writer of the
//! same key that initiated outside that window is left alone, so two writers both finish.

/// Slack in seconds on both ends of the window: whole-second `Initiated` times, a request the
/// server processed a moment after we gave up on it.
pub const MARGIN_SECS: i64 = 2;

/// The least wait, in milliseconds, before a new Initiate after our upload vanished (another
/// writer's sweep aborted it): the vanish came after that writer's upload existed, so waiting
/// this long puts our next upload outside its window, and its upload outside ours.
pub const VANISHED_WAIT_MS: u64 = (MARGIN_SECS as u64 + 1) * 1000;

/// How far back a stray of ours can be, relative to our own upload's `Initiated`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// The doubt arose in this run: our first Initiating was this many seconds (monotonic,
    /// rounded up) before our upload was created.
    Secs(u64),
    /// The doubt comes from an earlier run (a replayed journal or a set-aside one): any
    /// earlier upload of the key can be ours.
    Unbounded,
}

/// True if a listed upload initiated at `initiated` may be ours and so may be aborted.
/// `anchor` is our own upload's `Initiated`. A server that does not list `Initiated` gives
/// nothing to tell uploads apart: the upload counts as ours, as before this rule existed. If
/// the server lists times but not our upload (it vanished: another writer aborted it), nothing
/// is aborted; the fresh upload that follows sweeps again.
pub fn can_be_ours(initiated: Option<i64>, anchor: Option<i64>, window: Window) -> bool {
    let Some(t) = initiated else {
        return true;
    };
    let Some(a) = anchor else {
        return false;
    };
    if t > a {
        return false; // initiated after ours: another writer's
    }
    match window {
        Window::Unbounded => true,
        Window::Secs(w) => {
            let w = i64::try_from(w).unwrap_or(i64::MAX);
            t >= a.saturating_sub(w).saturating_sub(MARGIN_SECS)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 10 item 6: only uploads initiated inside our Initiating → Started window (with
    /// the margin) are aborted; another writer's upload of the same key is not.
    #[test]
    fn sweep_aborts_only_uploads_inside_our_initiate_window() {
        let a = 1_800_000_000;
        let w = Window::Secs(30);
        assert!(
            can_be_ours(Some(a - 10), Some(a), w),
            "a lost Initiate of ours"
        );
        assert!(can_be_ours(Some(a), Some(a), w), "the same second");
        assert!(!can_be_ours(Some(a + 1), Some(a), w), "a later writer");
        assert!(
            !can_be_ours(Some(a - 30 - MARGIN_SECS - 1), Some(a), w),
            "an earlier writer"
        );
        assert!(can_be_ours(Some(a - 30 - MARGIN_SECS), Some(a), w));
        assert!(can_be_ours(Some(a - 86_400), Some(a), Window::Unbounded));
        assert!(!can_be_ours(Some(a + 60), Some(a), Window::Unbounded));
        // Nothing to compare: as before.
        assert!(can_be_ours(None, Some(a), w));
        assert!(
            !can_be_ours(Some(a), None, w),
            "ours vanished: abort nothing"
        );
        // Extreme values never overflow.
        assert!(can_be_ours(
            Some(i64::MIN),
            Some(i64::MIN),
            Window::Secs(u64::MAX)
        ));
        assert!(!can_be_ours(
            Some(i64::MAX),
            Some(i64::MIN),
            Window::Secs(0)
        ));
    }
}

//! Fault injection for `ossup serve`: which request gets which fault.
//!
//! Owns: the seeded xorshift generator and the choice of a [`FaultKind`] for an eligible
//! request. Must not: carry a fault out (that is the request handler's job) or read a clock.

use std::sync::Mutex;

/// What can go wrong with a request when faults are enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// Answer `503 ServiceUnavailable` without doing anything (UploadPart, PutObject,
    /// Complete, ListParts, InitiateMultipartUpload).
    Status503,
    /// Read `reset_after_bytes` of the request body, then close the socket without answering;
    /// nothing is stored (UploadPart, PutObject, Complete).
    ResetMidBody,
    /// Perform the request, then sleep `stall_ms` before answering (UploadPart, PutObject,
    /// Complete).
    Stall,
    /// Store the part or object (or complete the upload), then close without answering
    /// (UploadPart, PutObject, Complete).
    DropResponse,
    /// Complete the upload, then close without answering (Complete only).
    LoseComplete,
}

impl FaultKind {
    /// Every kind, in declaration order.
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Status503,
        FaultKind::ResetMidBody,
        FaultKind::Stall,
        FaultKind::DropResponse,
        FaultKind::LoseComplete,
    ];

    /// The kind's name as `--fault` spells it: `503`, `reset`, `stall`, `drop`, `lose-complete`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Status503 => "503",
            FaultKind::ResetMidBody => "reset",
            FaultKind::Stall => "stall",
            FaultKind::DropResponse => "drop",
            FaultKind::LoseComplete => "lose-complete",
        }
    }

    /// Parses [`FaultKind::name`] (also accepts the variant names, case-insensitively).
    pub fn parse(s: &str) -> Option<FaultKind> {
        let s = s.trim().to_ascii_lowercase();
        FaultKind::ALL.into_iter().find(|k| {
            k.name() == s
                || format!("{k:?}").to_ascii_lowercase() == s
                || (s == "status503" && *k == FaultKind::Status503)
        })
    }

    /// Whether this kind applies to a request of class `op`.
    pub(crate) fn applies_to(self, op: Eligible) -> bool {
        match self {
            FaultKind::Status503 => true,
            FaultKind::ResetMidBody | FaultKind::Stall | FaultKind::DropResponse => {
                matches!(
                    op,
                    Eligible::UploadPart | Eligible::PutObject | Eligible::Complete
                )
            }
            FaultKind::LoseComplete => op == Eligible::Complete,
        }
    }
}

/// Fault injection settings. The default injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability (0..=1) that an eligible request gets a fault.
    pub rate: f64,
    /// Seed of the generator; the same seed gives the same sequence of decisions.
    pub seed: u64,
    /// The kinds to choose from (uniformly, among those that apply to the request).
    pub kinds: Vec<FaultKind>,
    /// How long [`FaultKind::Stall`] sleeps, in milliseconds.
    pub stall_ms: u64,
    /// How many body bytes [`FaultKind::ResetMidBody`] reads before closing.
    pub reset_after_bytes: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate: 0.0,
            seed: 1,
            kinds: Vec::new(),
            stall_ms: 30_000,
            reset_after_bytes: 64 * 1024,
        }
    }
}

/// The request classes that may get a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Eligible {
    /// UploadPart.
    UploadPart,
    /// PutObject.
    PutObject,
    /// CompleteMultipartUpload.
    Complete,
    /// ListParts (503 only).
    ListParts,
    /// InitiateMultipartUpload (503 only).
    Initiate,
}

/// A deterministic fault chooser shared by all connections of one server.
#[derive(Debug)]
pub(crate) struct Injector {
    cfg: Faults,
    state: Mutex<u64>,
}

impl Injector {
    /// A chooser for `cfg`.
    pub(crate) fn new(cfg: Faults) -> Injector {
        // Spread the seed so that small seeds (0, 1, 2) give unrelated sequences; never zero.
        let mut s = cfg.seed ^ 0x9E37_79B9_7F4A_7C15;
        s = splitmix(s);
        if s == 0 {
            s = 0x2545_F491_4F6C_DD1D;
        }
        Injector {
            cfg,
            state: Mutex::new(s),
        }
    }

    /// The settings.
    pub(crate) fn cfg(&self) -> &Faults {
        &self.cfg
    }

    fn next(&self) -> u64 {
        let mut g = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut x = *g;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *g = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Decides whether a request of class `op` gets a fault, and which.
    pub(crate) fn pick(&self, op: Eligible) -> Option<FaultKind> {
        if self.cfg.kinds.is_empty() || self.cfg.rate.is_nan() || self.cfg.rate <= 0.0 {
            return None;
        }
        let applicable: Vec<FaultKind> = self
            .cfg
            .kinds
            .iter()
            .copied()
            .filter(|k| k.applies_to(op))
            .collect();
        if applicable.is_empty() {
            return None;
        }
        let roll = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        if roll >= self.cfg.rate {
            return None;
        }
        let i = (self.next() % applicable.len() as u64) as usize;
        Some(applicable[i])
    }
}

/// SplitMix64 finaliser: a cheap, well-mixed hash of one `u64`.
pub(crate) fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inj(rate: f64, seed: u64, kinds: Vec<FaultKind>) -> Injector {
        Injector::new(Faults {
            rate,
            seed,
            kinds,
            ..Faults::default()
        })
    }

    #[test]
    fn same_seed_same_sequence_and_rate_is_respected() {
        let a = inj(0.3, 7, FaultKind::ALL.to_vec());
        let b = inj(0.3, 7, FaultKind::ALL.to_vec());
        let sa: Vec<_> = (0..2000).map(|_| a.pick(Eligible::Complete)).collect();
        let sb: Vec<_> = (0..2000).map(|_| b.pick(Eligible::Complete)).collect();
        assert_eq!(sa, sb);
        let hits = sa.iter().filter(|x| x.is_some()).count();
        assert!((450..750).contains(&hits), "hits {hits}");
        for k in FaultKind::ALL {
            assert!(sa.contains(&Some(k)), "{k:?} never chosen");
        }
        let c = inj(0.3, 8, FaultKind::ALL.to_vec());
        let sc: Vec<_> = (0..2000).map(|_| c.pick(Eligible::Complete)).collect();
        assert_ne!(sa, sc);
    }

    #[test]
    fn only_applicable_kinds() {
        let a = inj(1.0, 3, vec![FaultKind::LoseComplete, FaultKind::Stall]);
        for _ in 0..100 {
            assert_eq!(a.pick(Eligible::UploadPart), Some(FaultKind::Stall));
            assert_eq!(a.pick(Eligible::ListParts), None);
        }
        let z = inj(0.0, 3, FaultKind::ALL.to_vec());
        assert!((0..100).all(|_| z.pick(Eligible::PutObject).is_none()));
        let n = inj(f64::NAN, 3, FaultKind::ALL.to_vec());
        assert!(n.pick(Eligible::PutObject).is_none());
    }

    #[test]
    fn names_parse_back() {
        for k in FaultKind::ALL {
            assert_eq!(FaultKind::parse(k.name()), Some(k));
            assert_eq!(FaultKind::parse(&format!("{k:?}")), Some(k));
        }
        assert_eq!(FaultKind::parse("nope"), None);
    }
}

//! The upload state machine (placeholder).

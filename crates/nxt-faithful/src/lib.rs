//! `nxt-faithful`: is a rationale true to the execution it explains?
//!
//! NExT keeps a sampled rationale when its fix passes the tests; nothing in the paper checks
//! that the rationale reads the trace right. This crate does: [`extract_claims`] finds the
//! execution claims a rationale makes (variable values, return values, exceptions, loop counts,
//! branches and statements that never run, with the line or step they cite), and
//! [`check_rationale`] checks each against the recorded [`nxt_trace::Trace`]: supported,
//! contradicted, or unverifiable. The rationale's [`Verdict`] is `faithful` (no contradiction,
//! at least one supported claim), `unfaithful` (any contradiction) or `no_claim`.
//!
//! Values are parsed as Python literals and compared by Python equality ([`PyValue`]):
//! `[1,2]` equals `[1, 2]` and `3.0` equals `3`. Nothing here fails on odd input: prose in
//! another language, code only, a huge number or a value that is no literal gives no claim or
//! an unverifiable one.
//!
//! ```
//! use nxt_faithful::{check_rationale, Verdict};
//! # fn demo(trace: &nxt_trace::Trace) {
//! let report = check_rationale("The trace shows `total` is 7 after the loop.", trace);
//! if report.verdict == Verdict::Unfaithful {
//!     for c in &report.claims {
//!         println!("{}: {} ({})", c.text, c.verdict.as_str(), c.reason);
//!     }
//! }
//! # }
//! ```

#![warn(missing_docs)]

pub mod check;
pub mod extract;
pub mod value;

pub use check::{
    check_rationale, check_with, verdict_of, CheckedClaim, ClaimVerdict, Evidence,
    FaithfulnessReport, TraceIndex, Verdict,
};
pub use extract::{extract_claims, Cite, Claim, ClaimKind};
pub use value::PyValue;

/// Capture settings for the trace a rationale is checked against: the tracer's defaults with
/// larger step and time budgets, so that a prompt's budget-cut trace is checked against the
/// full run where the full run is affordable.
pub fn full_capture() -> nxt_trace::CaptureOptions {
    nxt_trace::CaptureOptions {
        max_events: 100_000,
        time_budget: std::time::Duration::from_secs(10),
        run_budget: std::time::Duration::from_secs(20),
        ..nxt_trace::CaptureOptions::default()
    }
}

//! Tier 2: one conformance suite, every backend. Small guest programs built
//! with iced-x86's `code_asm` run under KVM (when usable) and the DBT, from
//! a state the harness constructs; each outcome is checked against the
//! architecture and the backends' final `CpuState` and RAM must agree.
//!
//! Per case, each backend prints `ok`, `SKIPPED` (with the reason),
//! `NOT YET SUPPORTED` (the DBT cannot run guests at all yet) or `FAIL`.
//! Cases marked as known DBT failures report without failing unless
//! `HX86_CONFORMANCE_STRICT=1`; `HX86_CONFORMANCE_NO_KVM=1` skips KVM.

#[path = "conformance/alu.rs"]
mod alu;
#[path = "conformance/exceptions.rs"]
mod exceptions;
#[path = "conformance/harness.rs"]
mod harness;
#[path = "conformance/modes.rs"]
mod modes;
#[path = "conformance/paging.rs"]
mod paging;
#[path = "conformance/protect.rs"]
mod protect;
#[path = "conformance/rings.rs"]
mod rings;
#[path = "conformance/sse.rs"]
mod sse;
#[path = "conformance/strings.rs"]
mod strings;

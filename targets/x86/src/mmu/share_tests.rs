//! The cross-vCPU code-page protocol of [`super::share`], played out step
//! by step on two [`Mmu`]s (two vCPUs) over one guest RAM.

use std::sync::Arc;

use super::share::CodeShare;
use super::Mmu;
use crate::bus::TestBus;
use crate::CpuState;

const PAGE: u64 = 0x5000;

fn two_vcpus() -> (Arc<CodeShare>, Mmu, Mmu) {
    let share = CodeShare::new(1 << 20);
    let (mut a, mut b) = (Mmu::new(), Mmu::new());
    assert!(a.join_share(&share) && b.join_share(&share));
    (share, a, b)
}

/// vCPU A claims the page and reads its bytes; vCPU B patches them before
/// A has recorded which bytes its block used. A must still learn of the
/// store (this was lost when the claim came after the decode).
#[test]
fn a_store_racing_with_a_decode_is_reported_to_the_decoder() {
    let (_share, mut a, mut b) = two_vcpus();
    let mut bus = TestBus::new(1 << 20);
    let st = CpuState::reset();
    a.claim_code_page(PAGE);
    b.write(&st, &mut bus, PAGE + 0x10, &[0xb8, 1, 0, 0, 0], false)
        .unwrap();
    assert_eq!(bus.ram[PAGE as usize + 0x11], 1, "the store is made");
    assert!(a.remote_pending(), "the decoder is told");
    a.mark_code(PAGE + 0x10, 5);
    a.drain_remote();
    assert_eq!(a.dirty_code, vec![PAGE], "the stale block is dropped");
}

/// A store to bytes no block of A uses leaves A's code alone; a store to
/// the page before anyone holds code there is nobody's business.
#[test]
fn only_stores_over_decoded_bytes_drop_code() {
    let (share, mut a, mut b) = two_vcpus();
    let mut bus = TestBus::new(1 << 20);
    let st = CpuState::reset();
    b.write(&st, &mut bus, PAGE + 0x10, &[1], false).unwrap();
    assert!(!a.remote_pending());
    a.claim_code_page(PAGE);
    a.mark_code(PAGE + 0x100, 8);
    assert_ne!(share.mask(PAGE), 0);
    b.write(&st, &mut bus, PAGE + 0x10, &[2], false).unwrap();
    a.drain_remote();
    assert!(a.dirty_code.is_empty(), "bytes outside the block");
    b.write(&st, &mut bus, PAGE + 0x104, &[3], false).unwrap();
    a.drain_remote();
    assert_eq!(a.dirty_code, vec![PAGE]);
    assert_eq!(share.mask(PAGE), 0, "A no longer holds code there");
}

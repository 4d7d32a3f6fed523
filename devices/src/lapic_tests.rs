use super::*;

fn rd(a: &mut LocalApic, reg: u64, now: u64) -> u32 {
    let mut d = [0u8; 4];
    a.mmio_read(reg, &mut d, now);
    u32::from_le_bytes(d)
}

fn wr(a: &mut LocalApic, reg: u64, v: u32, now: u64) -> Option<u8> {
    a.mmio_write(reg, &v.to_le_bytes(), now)
}

fn enabled() -> LocalApic {
    let mut a = LocalApic::new(0);
    wr(&mut a, 0xf0, 0x1ff, 0);
    a
}

fn fixed(vector: u8, level: bool) -> ApicMessage {
    ApicMessage {
        vector,
        delivery_mode: delivery::FIXED,
        dest: 0,
        logical: false,
        level,
    }
}

#[test]
fn reset_state() {
    let mut a = LocalApic::new(3);
    assert_eq!(rd(&mut a, 0x20, 0), 3 << 24);
    assert_eq!(rd(&mut a, 0x30, 0), 0x50014);
    assert_eq!(rd(&mut a, 0xe0, 0), 0xffff_ffff);
    assert_eq!(rd(&mut a, 0xf0, 0), 0xff);
    assert_eq!(rd(&mut a, 0x320, 0), 0x10000);
    assert_eq!(rd(&mut a, 0x350, 0), 0x700);
    assert_eq!(rd(&mut a, 0x370, 0), 0x10000);
    assert!(a.accepts_pic_interrupts());
    assert_eq!(a.apic_base(), 0xfee0_0900);
    // Software-disabled: fixed interrupts are held, not delivered.
    a.accept_message(&ApicMessage {
        dest: 3,
        ..fixed(0x40, false)
    });
    assert_eq!(a.pending_vector(), None);
    wr(&mut a, 0xf0, 0x1ff, 0);
    assert_eq!(a.pending_vector(), Some(0x40));
}

#[test]
fn irr_isr_priority_and_eoi() {
    let mut a = enabled();
    a.accept_message(&fixed(0x31, false));
    a.accept_message(&fixed(0x52, false));
    assert_eq!(rd(&mut a, 0x200 + 0x10, 0), 1 << 0x11);
    assert_eq!(a.acknowledge(), Some(0x52));
    assert_eq!(rd(&mut a, 0x100 + 0x20, 0), 1 << 0x12);
    assert_eq!(a.ppr(), 0x50);
    // 0x31 is in a lower class than the in-service 0x52.
    assert_eq!(a.pending_vector(), None);
    a.accept_message(&fixed(0x61, false));
    assert_eq!(a.acknowledge(), Some(0x61));
    assert_eq!(wr(&mut a, 0xb0, 0, 0), None);
    assert_eq!(a.ppr(), 0x50);
    wr(&mut a, 0xb0, 0, 0);
    assert_eq!(a.pending_vector(), Some(0x31));
    // TPR blocks classes at or below it.
    wr(&mut a, 0x80, 0x30, 0);
    assert_eq!(rd(&mut a, 0xa0, 0), 0x30);
    assert_eq!(a.pending_vector(), None);
    wr(&mut a, 0x80, 0x2f, 0);
    assert_eq!(a.pending_vector(), Some(0x31));
}

#[test]
fn level_eoi_is_broadcast() {
    let mut a = enabled();
    a.accept_message(&fixed(0x40, true));
    assert_eq!(rd(&mut a, 0x180 + 0x20, 0), 1);
    assert_eq!(a.acknowledge(), Some(0x40));
    assert_eq!(wr(&mut a, 0xb0, 0, 0), Some(0x40));
    // TMR keeps the bit until the vector is accepted again, edge-triggered.
    assert_eq!(rd(&mut a, 0x180 + 0x20, 0), 1);
    assert_eq!(a.eoi(), None);
    a.accept_message(&fixed(0x40, false));
    assert_eq!(rd(&mut a, 0x180 + 0x20, 0), 0);
}

#[test]
fn destinations() {
    let mut a = enabled();
    assert!(a.matches_destination(0, false));
    assert!(!a.matches_destination(1, false));
    assert!(a.matches_destination(0xff, false));
    wr(&mut a, 0xd0, 0x0100_0000, 0);
    assert!(a.matches_destination(0x01, true));
    assert!(a.matches_destination(0x03, true));
    assert!(!a.matches_destination(0x02, true));
    wr(&mut a, 0xe0, 0x0fff_ffff, 0); // cluster model
    assert_eq!(rd(&mut a, 0xe0, 0), 0x0fff_ffff);
    wr(&mut a, 0xd0, 0x2100_0000, 0);
    assert!(a.matches_destination(0x21, true));
    assert!(!a.matches_destination(0x11, true));
    assert!(!a.accept_message(&ApicMessage {
        dest: 7,
        ..fixed(0x40, false)
    }));
    assert_eq!(a.pending_vector(), None);
}

#[test]
fn self_ipi_and_nmi() {
    let mut a = enabled();
    wr(&mut a, 0x300, 0x0004_0045, 0); // shorthand self, fixed
    assert_eq!(a.pending_vector(), Some(0x45));
    assert_eq!(rd(&mut a, 0x300, 0), 0x0004_0045);
    wr(&mut a, 0x310, 0x0000_0000, 0);
    wr(&mut a, 0x300, 0x0000_0046, 0); // physical dest 0 = us
    assert_eq!(a.acknowledge(), Some(0x46));
    // Same class as the in-service 0x46: held until its EOI.
    assert_eq!(a.pending_vector(), None);
    wr(&mut a, 0xb0, 0, 0);
    wr(&mut a, 0x300, 0x000c_0047, 0); // all excluding self
    assert_eq!(a.pending_vector(), Some(0x45));
    wr(&mut a, 0x300, 0x0004_0400, 0); // NMI to self
    assert!(a.take_nmi());
    assert!(!a.take_nmi());
    wr(&mut a, 0x310, 0x0500_0000, 0);
    assert_eq!(rd(&mut a, 0x310, 0), 0x0500_0000);
    wr(&mut a, 0x300, 0x0000_0048, 0); // dest 5: not us
    assert_eq!(a.acknowledge(), Some(0x45));
    assert_eq!(a.acknowledge(), None);
    // INIT/SIPI are not modelled but must be harmless.
    wr(&mut a, 0x300, 0x0004_4500, 0);
    wr(&mut a, 0x300, 0x0004_0608, 0);
}

#[test]
fn esr_latches_on_write() {
    let mut a = enabled();
    wr(&mut a, 0x370, 0xfe, 0); // error LVT, unmasked
    wr(&mut a, 0x300, 0x0004_0005, 0); // illegal vector to self
    assert_eq!(rd(&mut a, 0x280, 0), 0);
    wr(&mut a, 0x280, 0, 0);
    assert_eq!(rd(&mut a, 0x280, 0), 0x60);
    assert_eq!(a.pending_vector(), Some(0xfe));
    wr(&mut a, 0x280, 0, 0);
    assert_eq!(rd(&mut a, 0x280, 0), 0);
}

#[test]
fn svr_disable_masks_lvts() {
    let mut a = enabled();
    wr(&mut a, 0x320, 0x20, 0);
    assert_eq!(rd(&mut a, 0x320, 0), 0x20);
    wr(&mut a, 0xf0, 0xff, 0);
    assert_eq!(rd(&mut a, 0x320, 0), 0x10020);
    assert!(!a.accepts_pic_interrupts());
    // Cannot unmask while disabled.
    wr(&mut a, 0x350, 0x700, 0);
    assert_eq!(rd(&mut a, 0x350, 0), 0x10700);
    wr(&mut a, 0xf0, 0x1ff, 0);
    wr(&mut a, 0x350, 0x700, 0);
    assert!(a.accepts_pic_interrupts());
}

#[test]
fn hardware_disable_resets_and_passes_the_pic() {
    let mut a = enabled();
    wr(&mut a, 0x350, 0x10700, 0);
    assert!(!a.accepts_pic_interrupts());
    a.accept_message(&fixed(0x40, false));
    a.set_apic_base(0xfee0_0100);
    assert!(a.accepts_pic_interrupts());
    assert_eq!(a.pending_vector(), None);
    a.set_apic_base(0xfee0_0900);
    assert_eq!(rd(&mut a, 0xf0, 0), 0xff);
    assert_eq!(rd(&mut a, 0x200 + 0x20, 0), 0);
}

#[test]
fn timer_one_shot() {
    let mut a = enabled();
    wr(&mut a, 0x3e0, 0xb, 0); // divide by 1
    wr(&mut a, 0x320, 0x30, 0);
    assert_eq!(a.next_deadline_ns(), None);
    wr(&mut a, 0x380, 1000, 100);
    assert_eq!(rd(&mut a, 0x380, 100), 1000);
    assert_eq!(rd(&mut a, 0x390, 400), 700);
    assert_eq!(a.next_deadline_ns(), Some(1100));
    assert!(!a.poll(1099));
    assert!(a.poll(1100));
    assert_eq!(a.pending_vector(), Some(0x30));
    assert_eq!(rd(&mut a, 0x390, 5000), 0);
    assert_eq!(a.next_deadline_ns(), None);
    assert!(!a.poll(1_000_000));
    // Writing 0 stops it.
    wr(&mut a, 0x380, 50, 2000);
    wr(&mut a, 0x380, 0, 2010);
    assert_eq!(a.next_deadline_ns(), None);
}

#[test]
fn timer_periodic_with_divider() {
    let mut a = enabled().with_bus_hz(100_000_000); // 10 ns per tick
    wr(&mut a, 0x3e0, 0x1, 0); // divide by 4: 40 ns per count
    assert_eq!(a.timer.divisor(), 4);
    wr(&mut a, 0x320, 0x2_0031, 0); // periodic
    assert_eq!(a.timer_mode(), TimerMode::Periodic);
    wr(&mut a, 0x380, 25, 0); // 1 µs period
    assert_eq!(a.next_deadline_ns(), Some(1000));
    assert_eq!(rd(&mut a, 0x390, 400), 15);
    assert!(a.poll(1000));
    assert_eq!(a.next_deadline_ns(), Some(2000));
    assert_eq!(rd(&mut a, 0x390, 1040), 24);
    // Missed periods collapse.
    assert!(a.poll(5500));
    assert_eq!(a.next_deadline_ns(), Some(6000));
    assert_eq!(a.acknowledge(), Some(0x31));
    assert_eq!(a.pending_vector(), None);
    // Masked: fires nothing, reports no deadline, and loses the expirations.
    wr(&mut a, 0x320, 0x3_0031, 6100);
    assert_eq!(a.next_deadline_ns(), None);
    wr(&mut a, 0x320, 0x2_0031, 9100);
    assert!(!a.poll(9100));
    assert_eq!(a.next_deadline_ns(), Some(10_000));
}

#[test]
fn divide_config_encodings() {
    let mut a = enabled();
    for (dcr, div) in [
        (0u32, 2u64),
        (1, 4),
        (2, 8),
        (3, 16),
        (8, 32),
        (9, 64),
        (10, 128),
        (11, 1),
    ] {
        wr(&mut a, 0x3e0, dcr | 0xf0, 0);
        assert_eq!(rd(&mut a, 0x3e0, 0), dcr);
        assert_eq!(a.timer.divisor(), div);
    }
}

#[test]
fn timer_tsc_deadline() {
    let mut a = enabled().with_tsc_hz(2_000_000_000);
    // Outside TSC-deadline mode the MSR does nothing.
    a.set_tsc_deadline(1000, 0, 0);
    assert_eq!(a.tsc_deadline(), 0);
    wr(&mut a, 0x320, 0x4_00ec, 0);
    assert_eq!(a.timer_mode(), TimerMode::TscDeadline);
    // Initial count is ignored in this mode.
    wr(&mut a, 0x380, 5, 0);
    assert_eq!(rd(&mut a, 0x390, 0), 0);
    a.set_tsc_deadline(10_000, 4_000, 500);
    assert_eq!(a.tsc_deadline(), 10_000);
    assert_eq!(a.next_deadline_ns(), Some(3500));
    assert!(!a.poll(3499));
    assert!(a.poll(3500));
    assert_eq!(a.tsc_deadline(), 0);
    assert_eq!(a.acknowledge(), Some(0xec));
    // A deadline in the past fires at once; 0 disarms.
    a.set_tsc_deadline(1, 4_000, 4000);
    assert!(a.poll(4000));
    a.set_tsc_deadline(99_999, 0, 0);
    a.set_tsc_deadline(0, 0, 0);
    assert_eq!(a.next_deadline_ns(), None);
    // Leaving the mode disarms.
    a.set_tsc_deadline(99_999, 0, 0);
    wr(&mut a, 0x320, 0xec, 0);
    assert_eq!(a.tsc_deadline(), 0);
    assert_eq!(a.next_deadline_ns(), None);
}

#[test]
fn narrow_and_odd_accesses() {
    let mut a = enabled();
    wr(&mut a, 0x80, 0x12, 0);
    let mut b = [0u8; 1];
    a.mmio_read(0x80, &mut b, 0);
    assert_eq!(b, [0x12]);
    a.mmio_read(0x31, &mut b, 0);
    assert_eq!(b, [0x00]);
    a.mmio_read(0x32, &mut b, 0);
    assert_eq!(b, [0x05]);
    let mut big = [0xaau8; 8];
    a.mmio_read(0x30, &mut big, 0);
    assert_eq!(big, [0x14, 0, 5, 0, 0, 0, 0, 0]);
    // Narrow write merges.
    a.mmio_write(0xf0, &[0xfe], 0);
    assert_eq!(rd(&mut a, 0xf0, 0), 0x1fe);
    assert_eq!(a.mmio_write(0x81, &[1], 0), None);
    for off in (0..0x1010u64).step_by(4) {
        a.mmio_read(off, &mut big, u64::MAX);
        let _ = a.mmio_write(off, &[0xff; 8], u64::MAX);
        let _ = a.mmio_write(off, &[], 0);
    }
    a.mmio_read(u64::MAX, &mut big, 0);
    let _ = a.mmio_write(!0xf, &[1, 2, 3, 4], 0);
    let _ = a.poll(u64::MAX);
    let _ = a.next_deadline_ns();
}

#[test]
fn extreme_times_do_not_overflow() {
    let mut a = enabled().with_bus_hz(u64::MAX);
    wr(&mut a, 0x3e0, 0xb, 0);
    wr(&mut a, 0x320, 0x2_0030, 0);
    wr(&mut a, 0x380, 1, 0);
    assert!(a.poll(u64::MAX));
    let _ = a.next_deadline_ns();
    // Saturated arithmetic: it may fire again, but never panics.
    let _ = a.poll(u64::MAX);
    let _ = rd(&mut a, 0x390, u64::MAX);
}

fn x2apic(id: u8) -> LocalApic {
    let mut a = if id == 0 {
        LocalApic::new(0)
    } else {
        LocalApic::new_ap(id)
    };
    a.set_apic_base(a.apic_base() | APIC_BASE_EXTD);
    a.x2apic_msr_write(0x80f, 0x1ff, 0).unwrap();
    a
}

#[test]
fn x2apic_registers_are_msrs() {
    let mut a = LocalApic::new(0);
    // Not in x2APIC mode: every x2APIC MSR faults.
    assert_eq!(a.x2apic_msr_read(0x802, 0), Err(ApicMsrFault));
    let mut a2 = x2apic(0x13);
    assert!(a2.is_x2apic());
    assert_eq!(a2.x2apic_msr_read(0x802, 0), Ok(0x13));
    // Cluster 1, bit 3.
    assert_eq!(a2.x2apic_msr_read(0x80d, 0), Ok(0x1_0008));
    assert_eq!(a2.x2apic_msr_read(0x803, 0), Ok(u64::from(VERSION)));
    // Write-only, absent and read-only registers fault.
    for msr in [0x80b, 0x83f, 0x80e, 0x831, 0x809] {
        assert_eq!(a2.x2apic_msr_read(msr, 0), Err(ApicMsrFault), "{msr:#x}");
    }
    for msr in [0x802, 0x803, 0x80d, 0x80a, 0x810, 0x839] {
        assert_eq!(
            a2.x2apic_msr_write(msr, 0, 0),
            Err(ApicMsrFault),
            "{msr:#x}"
        );
    }
    // EOI and ESR take only 0; 32-bit registers no upper bits.
    assert_eq!(a2.x2apic_msr_write(0x80b, 1, 0), Err(ApicMsrFault));
    assert_eq!(a2.x2apic_msr_write(0x808, 1 << 32, 0), Err(ApicMsrFault));
    a2.x2apic_msr_write(0x808, 0x20, 0).unwrap();
    assert_eq!(a2.x2apic_msr_read(0x808, 0), Ok(0x20));
    // The xAPIC page is off.
    assert_eq!(rd(&mut a2, 0x30, 0), u32::MAX);
    // SELF IPI requests the vector; EOI of a level vector is reported.
    a2.x2apic_msr_write(0x83f, 0x45, 0).unwrap();
    assert_eq!(a2.acknowledge(), Some(0x45));
    assert_eq!(a2.x2apic_msr_write(0x80b, 0, 0), Ok(None));
    a2.deliver_local(delivery::FIXED, 0x50, true);
    assert_eq!(a2.acknowledge(), Some(0x50));
    assert_eq!(a2.x2apic_msr_write(0x80b, 0, 0), Ok(Some(0x50)));
    // ICR: one 64-bit write with a 32-bit destination; reserved bits fault.
    assert_eq!(a2.x2apic_msr_write(0x830, 1 << 12, 0), Err(ApicMsrFault));
    a2.x2apic_msr_write(0x830, (7u64 << 32) | 0x4060, 0)
        .unwrap();
    assert_eq!(a2.take_outbox(), vec![(7u64 << 32) | 0x4060]);
    assert_eq!(a2.x2apic_msr_read(0x830, 0), Ok((7u64 << 32) | 0x4060));
}

#[test]
fn x2apic_destinations() {
    let a = x2apic(0x13);
    assert!(a.matches(0x13, false, true));
    assert!(!a.matches(0x12, false, true));
    assert!(a.matches(u32::MAX, false, true));
    assert!(a.matches(0x1_0008, true, true));
    assert!(!a.matches(0x2_0008, true, true));
    assert!(!a.matches(0x1_0004, true, true));
    // xAPIC-format (IOAPIC/MSI) messages: 0xff broadcasts.
    assert!(a.matches_destination(0xff, false));
    assert!(a.matches_destination(0x13, false));
    let x = enabled();
    assert!(!x.matches(0x100, false, true));
    assert!(x.matches(u32::MAX, false, true));
}

#[test]
fn disabled_apic_page_reads_all_ones_and_ignores_writes() {
    let mut a = enabled();
    wr(&mut a, 0x80, 0x20, 0);
    a.set_apic_base(a.apic_base() & !APIC_BASE_ENABLE);
    assert_eq!(rd(&mut a, 0x30, 0), u32::MAX);
    wr(&mut a, 0x80, 0xff, 0);
    a.set_apic_base(a.apic_base() | APIC_BASE_ENABLE);
    assert_eq!(rd(&mut a, 0x80, 0), 0);
}

/// Between one-shot and periodic the count goes on where it is and the
/// initial count stays (kvm-unit-tests' apic "change mode" test); a
/// one-shot that ran out stays at zero in periodic mode.
#[test]
fn timer_mode_change_keeps_the_count() {
    let mut a = enabled();
    wr(&mut a, 0x3e0, 0xb, 0); // divide by 1: 1 ns per count
    wr(&mut a, 0x380, 1000, 0);
    wr(&mut a, 0x320, 0x2_0030, 0);
    assert_eq!(rd(&mut a, 0x380, 0), 1000, "TMICT kept");
    assert_eq!(rd(&mut a, 0x390, 300), 700);
    // Periodic: reloads at zero.
    assert!(a.poll(1000));
    assert_eq!(a.acknowledge(), Some(0x30));
    assert_eq!(rd(&mut a, 0x390, 1600), 400);
    // To one-shot at 400 left: counts down to zero, fires, stops.
    wr(&mut a, 0x320, 0x30, 1600);
    assert_eq!(rd(&mut a, 0x390, 1700), 300);
    assert_eq!(a.next_deadline_ns(), Some(2000));
    assert!(a.poll(2000));
    assert_eq!(rd(&mut a, 0x390, 2500), 0);
    // To periodic after it ran out: stays at zero until TMICT is written.
    wr(&mut a, 0x320, 0x2_0030, 2600);
    assert_eq!(rd(&mut a, 0x390, 2700), 0);
    assert_eq!(a.next_deadline_ns(), None);
    wr(&mut a, 0x380, 1000, 3000);
    assert_eq!(rd(&mut a, 0x390, 3100), 900);
    // One-shot to periodic mid-count, then through zero: reloaded.
    wr(&mut a, 0x320, 0x30, 3100);
    wr(&mut a, 0x320, 0x2_0030, 3500);
    assert_eq!(rd(&mut a, 0x390, 3600), 400);
    assert_eq!(rd(&mut a, 0x390, 4100), 900);
    // Into TSC-deadline mode and back disarms.
    wr(&mut a, 0x320, 0x4_0030, 4200);
    wr(&mut a, 0x320, 0x30, 4300);
    assert_eq!(rd(&mut a, 0x380, 4300), 0);
}

/// Software may change the xAPIC ID; the x2APIC ID and the ID after a
/// reset (global disable, enable) are the initial one.
#[test]
fn written_xapic_id_gives_way_to_the_initial_id() {
    let mut a = LocalApic::new_ap(3);
    wr(&mut a, 0xf0, 0x1ff, 0);
    wr(&mut a, 0x20, 7 << 24, 0);
    assert_eq!(rd(&mut a, 0x20, 0), 7 << 24);
    assert_eq!(a.id(), 7);
    // INIT keeps the ID software set.
    a.accept_message(&ApicMessage {
        delivery_mode: delivery::INIT,
        ..fixed(0, false)
    });
    let _ = a.take_startup();
    assert_eq!(a.id(), 7);
    a.set_apic_base(a.apic_base() | APIC_BASE_EXTD);
    assert_eq!(a.x2apic_msr_read(0x802, 0), Ok(3));
    a.set_apic_base(a.apic_base() & !(APIC_BASE_ENABLE | APIC_BASE_EXTD));
    a.set_apic_base(a.apic_base() | APIC_BASE_ENABLE);
    assert_eq!(rd(&mut a, 0x20, 0), 3 << 24);
    wr(&mut a, 0x20, 9 << 24, 0);
    a.set_apic_base(a.apic_base() & !APIC_BASE_ENABLE);
    a.set_apic_base(a.apic_base() | APIC_BASE_ENABLE);
    assert_eq!(a.id(), 3);
}

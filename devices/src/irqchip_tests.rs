use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::clock::ManualClock;

fn chip() -> (IrqChip, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_000_000));
    (IrqChip::new(clock.clone()), clock)
}

fn init_pic(c: &mut IrqChip) {
    for (port, v) in [
        (0x20u16, 0x11u8),
        (0x21, 0x20),
        (0x21, 0x04),
        (0x21, 0x01),
        (0xa0, 0x11),
        (0xa1, 0x28),
        (0xa1, 0x02),
        (0xa1, 0x01),
        (0x21, 0x00),
        (0xa1, 0x00),
    ] {
        c.pio_write(port, &[v]);
    }
}

fn lapic_w(c: &mut IrqChip, off: u64, v: u32) {
    c.lapic_write(off, &v.to_le_bytes());
}

fn ioapic_route(c: &mut IrqChip, pin: u32, lo: u32) {
    c.ioapic_write(0, &(0x11 + 2 * pin).to_le_bytes());
    c.ioapic_write(0x10, &0u32.to_le_bytes());
    c.ioapic_write(0, &(0x10 + 2 * pin).to_le_bytes());
    c.ioapic_write(0x10, &lo.to_le_bytes());
}

#[test]
fn pit_irq0_through_the_pic_and_lint0() {
    let (mut c, clock) = chip();
    init_pic(&mut c);
    assert_eq!(c.pending_interrupt(), None);
    assert_eq!(c.next_deadline_ns(), None);
    c.pio_write(0x43, &[0x34]);
    // A 2-byte access covers ports 0x40 and 0x41: write bytes one by one.
    c.pio_write(0x40, &[0xa9]);
    c.pio_write(0x40, &[0x04]); // 1193: ~1 ms
    let deadline = c.next_deadline_ns().unwrap();
    assert!(deadline > clock.now_ns());
    clock.set(deadline - 1);
    assert_eq!(c.pending_interrupt(), None);
    clock.set(deadline);
    assert_eq!(c.pending_interrupt(), Some(0x20));
    assert_eq!(c.acknowledge(), Some(0x20));
    assert_eq!(c.pending_interrupt(), None);
    c.pio_write(0x20, &[0x20]);
    // Next period.
    clock.set(c.next_deadline_ns().unwrap());
    assert_eq!(c.acknowledge(), Some(0x20));
}

#[test]
fn ioapic_routes_to_the_lapic_and_masks_the_pic_path() {
    let (mut c, _clock) = chip();
    init_pic(&mut c);
    lapic_w(&mut c, 0xf0, 0x1ff);
    lapic_w(&mut c, 0x350, 0x10700); // LINT0 masked: PIC cut off
    ioapic_route(&mut c, 4, 0x24);
    c.set_irq(4, true);
    assert_eq!(c.pending_interrupt(), Some(0x24));
    assert_eq!(c.acknowledge(), Some(0x24));
    c.set_irq(4, false);
    lapic_w(&mut c, 0xb0, 0);
    // The i8259 also saw IRQ4 but cannot reach the CPU.
    assert!(c.pic().has_interrupt());
    assert_eq!(c.pending_interrupt(), None);
}

#[test]
fn pit_lands_on_ioapic_pin2() {
    let (mut c, clock) = chip();
    lapic_w(&mut c, 0xf0, 0x1ff);
    lapic_w(&mut c, 0x350, 0x10700);
    ioapic_route(&mut c, 2, 0x30);
    c.pio_write(0x43, &[0x34]);
    c.pio_write(0x40, &[100]);
    c.pio_write(0x40, &[0]);
    clock.set(c.next_deadline_ns().unwrap());
    assert_eq!(c.acknowledge(), Some(0x30));
}

#[test]
fn level_gsi_redelivered_after_eoi_while_high() {
    let (mut c, _clock) = chip();
    lapic_w(&mut c, 0xf0, 0x1ff);
    // The uninitialized i8259 would also pass IRQ11 through LINT0.
    lapic_w(&mut c, 0x350, 0x10700);
    ioapic_route(&mut c, 11, 0x8051);
    c.set_irq(11, true);
    assert_eq!(c.acknowledge(), Some(0x51));
    lapic_w(&mut c, 0xb0, 0);
    assert_eq!(c.acknowledge(), Some(0x51));
    c.set_irq(11, false);
    lapic_w(&mut c, 0xb0, 0);
    assert_eq!(c.pending_interrupt(), None);
}

#[test]
fn lapic_first_then_pic() {
    let (mut c, _clock) = chip();
    init_pic(&mut c);
    lapic_w(&mut c, 0xf0, 0x1ff);
    ioapic_route(&mut c, 9, 0x61);
    c.set_irq(1, true);
    c.set_irq(9, true);
    assert_eq!(c.acknowledge(), Some(0x61));
    assert_eq!(c.acknowledge(), Some(0x21));
    // The PIC's IRQ9 goes through the cascade next.
    c.pio_write(0x20, &[0x20]);
    assert_eq!(c.acknowledge(), Some(0x29));
}

#[test]
fn deadlines_combine_pit_and_lapic_timer() {
    let (mut c, clock) = chip();
    lapic_w(&mut c, 0xf0, 0x1ff);
    lapic_w(&mut c, 0x3e0, 0xb);
    lapic_w(&mut c, 0x320, 0xef);
    lapic_w(&mut c, 0x380, 500);
    let t0 = clock.now_ns();
    assert_eq!(c.next_deadline_ns(), Some(t0 + 500));
    c.pio_write(0x43, &[0x34]);
    c.pio_write(0x40, &[0x01]);
    c.pio_write(0x40, &[0x00]); // 1 PIT tick ~ 838 ns
    assert_eq!(c.next_deadline_ns(), Some(t0 + 500));
    clock.set(t0 + 500);
    assert_eq!(c.acknowledge(), Some(0xef));
    assert_eq!(c.next_deadline_ns(), Some(t0 + 839));
}

#[test]
fn tsc_deadline_through_the_chip() {
    let clock = Arc::new(ManualClock::new(0));
    let mut c =
        IrqChip::new(clock.clone()).with_lapic(LocalApic::new(0).with_tsc_hz(1_000_000_000));
    lapic_w(&mut c, 0xf0, 0x1ff);
    lapic_w(&mut c, 0x320, 0x4_00ec);
    c.set_tsc_deadline(5000, 1000);
    assert_eq!(c.next_deadline_ns(), Some(4000));
    clock.set(4000);
    assert_eq!(c.pending_interrupt(), Some(0xec));
    assert_eq!(c.lapic().tsc_deadline(), 0);
}

#[test]
fn nmi_ipi() {
    let (mut c, _clock) = chip();
    lapic_w(&mut c, 0xf0, 0x1ff);
    lapic_w(&mut c, 0x300, 0x0004_0400);
    assert!(c.take_nmi());
    assert!(!c.take_nmi());
}

#[test]
fn buses_lines_and_notifier() {
    let (c, clock) = chip();
    let chip = c.into_shared();
    let wakes = Arc::new(AtomicUsize::new(0));
    let w = wakes.clone();
    lock_chip(&chip).set_notifier(Some(Arc::new(move || {
        w.fetch_add(1, Ordering::SeqCst);
    })));
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    attach_irqchip(&chip, &mut pio, &mut mmio).unwrap();
    // Linux PIC init through the bus.
    for (port, v) in [(0x20u64, 0x11u8), (0x21, 0x20), (0x21, 0x04), (0x21, 0x01)] {
        assert_eq!(pio.write(port, &[v]), None);
    }
    pio.write(0x21, &[0x10]);
    let mut d = [0u8; 1];
    assert!(pio.read(0x21, &mut d));
    assert_eq!(d, [0x10]);
    pio.write(0x4d1, &[0x08]);
    assert!(pio.read(0x4d1, &mut d));
    assert_eq!(d, [0x08]);
    // Port 0x61 and the PIT.
    pio.write(0x61, &[0x01]);
    pio.write(0x43, &[0xb0]);
    pio.write(0x42, &[0x10]);
    pio.write(0x42, &[0x00]);
    clock.advance(1_000_000);
    assert!(pio.read(0x61, &mut d));
    assert_eq!(d[0] & 0x21, 0x21);
    // MMIO: LAPIC version, IOAPIC version.
    let mut w4 = [0u8; 4];
    assert!(mmio.read(LAPIC_BASE + 0x30, &mut w4));
    assert_eq!(u32::from_le_bytes(w4), 0x50014);
    mmio.write(IOAPIC_BASE, &1u32.to_le_bytes());
    mmio.read(IOAPIC_BASE + 0x10, &mut w4);
    assert_eq!(u32::from_le_bytes(w4), 0x170020);
    // A device's line (IRQ4, masked at the PIC above).
    let line = GsiLine::new(chip.clone(), 4);
    line.set_level(true);
    assert!(wakes.load(Ordering::SeqCst) >= 1);
    assert_eq!(lock_chip(&chip).pending_interrupt(), None);
    pio.write(0x21, &[0x00]);
    assert_eq!(lock_chip(&chip).acknowledge(), Some(0x24));
    // Overlapping attach fails.
    assert!(attach_irqchip(&chip, &mut pio, &mut mmio).is_err());
}

#[test]
fn hostile_bus_accesses() {
    let (c, _clock) = chip();
    let chip = c.into_shared();
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    attach_irqchip(&chip, &mut pio, &mut mmio).unwrap();
    let mut d = [0u8; 8];
    for r in ChipRegion::ALL {
        let mut dev = IrqChipDevice::new(chip.clone(), r);
        for off in [0u64, 1, 3, r.len() - 1, r.len(), u64::MAX] {
            dev.read(off, &mut d);
            assert_eq!(dev.write(off, &[0xff; 8]), None);
            dev.write(off, &[]);
        }
    }
    let mut c = lock_chip(&chip);
    c.set_irq(u32::MAX, true);
    c.set_irq(23, true);
    c.pio_write(0xffff, &[1, 2, 3]);
    c.pio_read(0xffff, &mut d);
    let _ = c.acknowledge();
    let _ = c.next_deadline_ns();
}

#[test]
fn polling_the_irr_with_interrupts_off_sees_the_pit() {
    let (mut c, clock) = chip();
    init_pic(&mut c);
    c.pio_write(0x43, &[0x34]);
    c.pio_write(0x40, &[0xa9]);
    c.pio_write(0x40, &[0x04]);
    let deadline = c.next_deadline_ns().unwrap();
    // OCW3: read the IRR on the next read of port 0x20.
    c.pio_write(0x20, &[0x0a]);
    let mut irr = [0u8];
    c.pio_read(0x20, &mut irr);
    assert_eq!(irr[0] & 1, 0);
    clock.set(deadline);
    // No pending_interrupt()/poll() call in between: the read itself must
    // bring the PIT up to date (a CPU with IF=0 never asks).
    c.pio_read(0x20, &mut irr);
    assert_eq!(irr[0] & 1, 1, "IRQ0 must show in the IRR");
}

/// A chip with `n` CPUs whose APICs are software-enabled.
fn smp_chip(n: usize) -> IrqChip {
    let mut c = IrqChip::with_cpus(Arc::new(ManualClock::new(1_000_000)), n);
    for cpu in 0..n {
        c.lapic_write_on(cpu, 0xf0, &0x1ffu32.to_le_bytes());
    }
    c
}

fn ipi(c: &mut IrqChip, from: usize, dest: u8, lo: u32) {
    c.lapic_write_on(from, 0x310, &(u32::from(dest) << 24).to_le_bytes());
    c.lapic_write_on(from, 0x300, &lo.to_le_bytes());
}

#[test]
fn ipis_reach_their_destinations() {
    let mut c = smp_chip(4);
    // Fixed, physical destination 2.
    ipi(&mut c, 0, 2, 0x0000_0041);
    assert_eq!(c.pending_interrupt_on(2), Some(0x41));
    assert_eq!(c.pending_interrupt_on(1), None);
    assert_eq!(c.pending_interrupt_on(0), None);
    // All excluding self, from CPU 3.
    ipi(&mut c, 3, 0, 0x000c_0042);
    for cpu in 0..3 {
        assert_eq!(c.acknowledge_on(cpu), Some(0x42), "CPU {cpu}");
        c.lapic_write_on(cpu, 0xb0, &0u32.to_le_bytes()); // EOI
    }
    assert_eq!(c.pending_interrupt_on(3), None);
    // NMI to CPU 1 by physical destination.
    ipi(&mut c, 0, 1, 0x0000_0400);
    assert!(c.take_nmi_on(1));
    assert!(!c.take_nmi_on(0));
    // Logical flat destination: CPUs 1 and 3 in the bitmap.
    for cpu in 0..4 {
        c.lapic_write_on(cpu, 0xe0, &0xffff_ffffu32.to_le_bytes());
        c.lapic_write_on(cpu, 0xd0, &((1u32 << cpu) << 24).to_le_bytes());
    }
    ipi(&mut c, 0, 0b1010, 0x0000_0843);
    assert_eq!(c.acknowledge_on(1), Some(0x43));
    assert_eq!(c.acknowledge_on(3), Some(0x43));
    for cpu in [1, 3] {
        c.lapic_write_on(cpu, 0xb0, &0u32.to_le_bytes());
    }
    assert_eq!(c.pending_interrupt_on(2), Some(0x41));
    // Lowest priority to CPUs 1 and 2: exactly one takes it.
    ipi(&mut c, 0, 0b0110, 0x0000_0951);
    let takers = (0..4)
        .filter(|&cpu| c.lapic_of(cpu).pending_vector() == Some(0x51))
        .count();
    assert_eq!(takers, 1);
}

#[test]
fn init_then_startup_ipis_start_an_ap() {
    let mut c = smp_chip(2);
    assert!(!c.startup_pending(1));
    ipi(&mut c, 0, 1, 0x0000_4500); // INIT, assert
    ipi(&mut c, 0, 1, 0x0000_0500); // INIT de-assert: nothing
    ipi(&mut c, 0, 1, 0x0000_4608); // SIPI vector 8 before the AP looked
    assert!(c.startup_pending(1));
    assert!(!c.startup_pending(0));
    assert_eq!(c.take_startup(1), Some(crate::lapic::Startup::Init));
    // The start-up IPI sent after the INIT survives it.
    assert_eq!(c.take_startup(1), Some(crate::lapic::Startup::Sipi(8)));
    assert_eq!(c.take_startup(1), None);
    // An INIT voids a start-up IPI sent before it.
    ipi(&mut c, 0, 1, 0x0000_4609);
    ipi(&mut c, 0, 1, 0x0000_4500);
    assert_eq!(c.take_startup(1), Some(crate::lapic::Startup::Init));
    assert_eq!(c.take_startup(1), None);
}

#[test]
fn ioapic_messages_go_to_the_addressed_cpu() {
    let mut c = smp_chip(3);
    // Pin 17 (no i8259 input) -> vector 0x60, physical destination APIC
    // 2, edge.
    c.ioapic_write(0, &(0x11u32 + 34).to_le_bytes());
    c.ioapic_write(0x10, &(2u32 << 24).to_le_bytes());
    c.ioapic_write(0, &(0x10u32 + 34).to_le_bytes());
    c.ioapic_write(0x10, &0x60u32.to_le_bytes());
    c.set_irq(17, true);
    c.set_irq(17, false);
    assert_eq!(c.acknowledge_on(2), Some(0x60));
    assert_eq!(c.pending_interrupt_on(0), None);
    assert_eq!(c.pending_interrupt_on(1), None);
}

use super::*;

/// Linux's init sequence: edge, cascade, vectors 0x20/0x28, 8086 mode.
fn linux_pic() -> Pic {
    let mut p = Pic::new();
    p.write_port(0x21, 0xff);
    p.write_port(0xa1, 0xff);
    p.write_port(0x20, 0x11);
    p.write_port(0x21, 0x20);
    p.write_port(0x21, 0x04);
    p.write_port(0x21, 0x01);
    p.write_port(0xa0, 0x11);
    p.write_port(0xa1, 0x28);
    p.write_port(0xa1, 0x02);
    p.write_port(0xa1, 0x01);
    p.write_port(0x21, 0x00);
    p.write_port(0xa1, 0x00);
    p
}

#[test]
fn icw_sequence_sets_bases_and_clears_state() {
    let mut p = linux_pic();
    assert_eq!(p.read_port(0x21), 0);
    p.write_port(0x21, 0xfb);
    assert_eq!(p.read_port(0x21), 0xfb);
    assert_eq!(p.imr(0), 0xfb);
    p.set_irq(0, true);
    assert_eq!(p.peek_vector(), None);
    p.write_port(0x21, 0x00);
    assert_eq!(p.peek_vector(), Some(0x20));
    // ICW1 clears IMR/IRR and leaves the chip expecting ICW2.
    p.write_port(0x20, 0x11);
    assert_eq!(p.irr(0), 0);
    assert!(!p.has_interrupt());
    p.write_port(0x21, 0x30);
    p.write_port(0x21, 0x04);
    p.write_port(0x21, 0x01);
    p.set_irq(0, false);
    p.set_irq(0, true);
    assert_eq!(p.acknowledge(), Some(0x30));
}

#[test]
fn edge_irq_ack_eoi_cycle() {
    let mut p = linux_pic();
    p.set_irq(1, true);
    assert!(p.has_interrupt());
    assert_eq!(p.irr(0), 0x02);
    assert_eq!(p.acknowledge(), Some(0x21));
    assert_eq!(p.irr(0), 0);
    assert_eq!(p.isr(0), 0x02);
    assert!(!p.has_interrupt());
    // Still high: no new edge, even after EOI.
    p.set_irq(1, true);
    p.write_port(0x20, 0x20);
    assert_eq!(p.isr(0), 0);
    assert!(!p.has_interrupt());
    p.set_irq(1, false);
    p.set_irq(1, true);
    assert!(p.has_interrupt());
}

#[test]
fn priority_and_nesting() {
    let mut p = linux_pic();
    p.set_irq(3, true);
    assert_eq!(p.acknowledge(), Some(0x23));
    // Lower priority (IRQ4) waits, higher (IRQ1) nests.
    p.set_irq(4, true);
    assert!(!p.has_interrupt());
    p.set_irq(1, true);
    assert_eq!(p.acknowledge(), Some(0x21));
    assert_eq!(p.isr(0), 0x0a);
    // Non-specific EOI clears the highest priority in service (IRQ1).
    p.write_port(0x20, 0x20);
    assert_eq!(p.isr(0), 0x08);
    assert!(!p.has_interrupt());
    // Specific EOI for IRQ3.
    p.write_port(0x20, 0x63);
    assert_eq!(p.isr(0), 0);
    assert_eq!(p.acknowledge(), Some(0x24));
}

#[test]
fn cascade_through_irq2() {
    let mut p = linux_pic();
    p.set_irq(12, true);
    assert_eq!(p.irr(1), 0x10);
    assert_eq!(p.irr(0), 0x04);
    assert_eq!(p.peek_vector(), Some(0x2c));
    assert_eq!(p.acknowledge(), Some(0x2c));
    assert_eq!(p.isr(0), 0x04);
    assert_eq!(p.isr(1), 0x10);
    p.write_port(0xa0, 0x20);
    p.write_port(0x20, 0x20);
    assert_eq!((p.isr(0), p.isr(1)), (0, 0));
    // Masking the cascade input hides slave requests.
    p.write_port(0x21, 0x04);
    p.set_irq(12, false);
    p.set_irq(12, true);
    assert!(!p.has_interrupt());
    p.write_port(0x21, 0x00);
    assert_eq!(p.acknowledge(), Some(0x2c));
}

#[test]
fn level_triggered_via_elcr() {
    let mut p = linux_pic();
    p.write_port(0x4d1, 0xff);
    assert_eq!(p.read_port(0x4d1), 0xde);
    p.write_port(0x4d0, 0xff);
    assert_eq!(p.read_port(0x4d0), 0xf8);
    p.set_irq(11, true);
    assert_eq!(p.acknowledge(), Some(0x2b));
    // Level request stays in IRR while high; EOI makes it fire again.
    assert_eq!(p.irr(1), 0x08);
    p.write_port(0xa0, 0x20);
    p.write_port(0x20, 0x20);
    assert_eq!(p.acknowledge(), Some(0x2b));
    p.write_port(0xa0, 0x20);
    p.write_port(0x20, 0x20);
    // The EOI let the still-high line latch a new cascade edge on the
    // master; dropping the line now leaves a spurious IRQ15, as on hardware.
    p.set_irq(11, false);
    assert_eq!(p.irr(1), 0);
    assert_eq!(p.acknowledge(), Some(0x2f));
    assert!(!p.has_interrupt());
}

#[test]
fn ltim_makes_all_inputs_level() {
    let mut p = Pic::new();
    p.write_port(0x20, 0x19);
    p.write_port(0x21, 0x08);
    p.write_port(0x21, 0x01);
    p.set_irq(0, true);
    p.set_irq(0, false);
    assert!(!p.has_interrupt());
}

#[test]
fn auto_eoi_and_rotation() {
    let mut p = Pic::new();
    p.write_port(0x20, 0x13); // single, ICW4
    p.write_port(0x21, 0x40);
    p.write_port(0x21, 0x03); // AEOI
    p.set_irq(5, true);
    assert_eq!(p.acknowledge(), Some(0x45));
    assert_eq!(p.isr(0), 0);
    // Rotate in AEOI mode: IRQ5 becomes lowest priority.
    p.write_port(0x20, 0x80);
    p.set_irq(5, false);
    p.set_irq(5, true);
    assert_eq!(p.acknowledge(), Some(0x45));
    p.set_irq(5, false);
    p.set_irq(5, true);
    p.set_irq(7, true);
    assert_eq!(p.acknowledge(), Some(0x47));
    assert_eq!(p.acknowledge(), Some(0x45));
}

#[test]
fn set_priority_and_rotate_on_eoi() {
    let mut p = linux_pic();
    // Set priority: IRQ4 lowest, so IRQ5 highest.
    p.write_port(0x20, 0xc4);
    p.set_irq(1, true);
    p.set_irq(6, true);
    assert_eq!(p.acknowledge(), Some(0x26));
    // Rotate on non-specific EOI: IRQ6 becomes lowest, IRQ7 highest.
    p.write_port(0x20, 0xa0);
    assert_eq!(p.isr(0), 0);
    p.set_irq(6, false);
    p.set_irq(6, true);
    assert_eq!(p.acknowledge(), Some(0x21));
    // Rotate on specific EOI for IRQ1.
    p.write_port(0x20, 0xe1);
    assert_eq!(p.acknowledge(), Some(0x26));
}

#[test]
fn ocw3_register_select_and_poll() {
    let mut p = linux_pic();
    p.set_irq(3, true);
    assert_eq!(p.read_port(0x20), 0x08); // IRR by default
    p.write_port(0x20, 0x0b);
    assert_eq!(p.read_port(0x20), 0x00); // ISR
    p.write_port(0x20, 0x0c); // poll
    assert_eq!(p.read_port(0x20), 0x83);
    assert_eq!(p.read_port(0x20), 0x08); // poll is one-shot; ISR selected
    p.write_port(0x20, 0x0a);
    assert_eq!(p.read_port(0x20), 0x00);
    p.write_port(0x20, 0x0c);
    assert_eq!(p.read_port(0x21), 0x07); // nothing pending
}

#[test]
fn special_mask_mode() {
    let mut p = linux_pic();
    p.set_irq(1, true);
    assert_eq!(p.acknowledge(), Some(0x21));
    p.set_irq(5, true);
    assert!(!p.has_interrupt());
    // Mask IRQ1 and enable special mask: lower priorities get through.
    p.write_port(0x21, 0x02);
    p.write_port(0x20, 0x68);
    assert_eq!(p.acknowledge(), Some(0x25));
    p.write_port(0x20, 0x48);
    p.write_port(0x21, 0x00);
}

#[test]
fn special_fully_nested_lets_the_slave_nest() {
    let mut p = linux_pic();
    p.write_port(0x20, 0x11);
    p.write_port(0x21, 0x20);
    p.write_port(0x21, 0x04);
    p.write_port(0x21, 0x11); // SFNM
    p.set_irq(12, true);
    assert_eq!(p.acknowledge(), Some(0x2c));
    p.set_irq(9, true);
    assert_eq!(p.acknowledge(), Some(0x29));
}

#[test]
fn spurious_irq7_and_irq15() {
    let mut p = linux_pic();
    assert_eq!(p.acknowledge(), None);
    assert_eq!(p.inta(), 0x27);
    assert_eq!(p.isr(0), 0);
    // Latch the cascade edge, then make the slave's request vanish.
    p.write_port(0x4d1, 0x08);
    p.set_irq(11, true);
    p.set_irq(11, false);
    assert!(p.has_interrupt());
    assert_eq!(p.acknowledge(), Some(0x2f));
    assert_eq!(p.isr(1), 0);
}

#[test]
fn hostile_ports_and_irqs() {
    let mut p = linux_pic();
    p.set_irq(16, true);
    p.set_irq(u32::MAX, true);
    assert!(!p.has_interrupt());
    assert_eq!(p.read_port(0x22), 0xff);
    p.write_port(0xffff, 0x11);
    assert_eq!(p.irr(5), 0);
    assert_eq!(p.imr(5), 0xff);
    for v in 0..=255u8 {
        p.write_port(0x20, v);
        p.write_port(0xa0, v);
        p.write_port(0x21, v);
        p.read_port(0x20);
        p.read_port(0xa1);
        p.set_irq(u32::from(v % 16), v & 1 != 0);
        let _ = p.acknowledge();
    }
}

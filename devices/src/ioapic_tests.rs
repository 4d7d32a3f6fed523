use super::*;

fn w32(io: &mut IoApic, off: u64, v: u32, out: &mut Vec<ApicMessage>) {
    io.mmio_write(off, &v.to_le_bytes(), &mut |m| {
        out.push(*m);
        true
    });
}

fn r32(io: &mut IoApic, off: u64) -> u32 {
    let mut d = [0u8; 4];
    io.mmio_read(off, &mut d);
    u32::from_le_bytes(d)
}

fn reg_read(io: &mut IoApic, reg: u32) -> u32 {
    let mut v = Vec::new();
    w32(io, 0, reg, &mut v);
    r32(io, 0x10)
}

fn program(io: &mut IoApic, pin: u32, lo: u32, hi: u32) -> Vec<ApicMessage> {
    let mut v = Vec::new();
    w32(io, 0, 0x11 + 2 * pin, &mut v);
    w32(io, 0x10, hi, &mut v);
    w32(io, 0, 0x10 + 2 * pin, &mut v);
    w32(io, 0x10, lo, &mut v);
    v
}

fn set(io: &mut IoApic, pin: u32, level: bool) -> Vec<ApicMessage> {
    let mut v = Vec::new();
    io.set_irq(pin, level, &mut |m| {
        v.push(*m);
        true
    });
    v
}

#[test]
fn id_version_arbitration() {
    let mut io = IoApic::new(2);
    assert_eq!(reg_read(&mut io, 0), 2 << 24);
    assert_eq!(reg_read(&mut io, 1), 0x0017_0020);
    assert_eq!(reg_read(&mut io, 2), 2 << 24);
    let mut v = Vec::new();
    w32(&mut io, 0, 0, &mut v);
    w32(&mut io, 0x10, 0x0f00_0000, &mut v);
    assert_eq!(reg_read(&mut io, 0), 0x0f00_0000);
    assert_eq!(r32(&mut io, 0), 0);
    assert_eq!(reg_read(&mut io, 0x10), 0x10000);
    assert_eq!(reg_read(&mut io, 0x40), 0);
}

#[test]
fn edge_entry_sends_on_rising_edge() {
    let mut io = IoApic::new(0);
    assert!(program(&mut io, 2, 0x30, 0x0100_0000).is_empty());
    assert_eq!(io.redirection(2), 0x0100_0000_0000_0030);
    let m = set(&mut io, 2, true);
    assert_eq!(
        m,
        vec![ApicMessage {
            vector: 0x30,
            delivery_mode: 0,
            dest: 1,
            logical: false,
            level: false
        }]
    );
    assert!(set(&mut io, 2, true).is_empty());
    assert!(set(&mut io, 2, false).is_empty());
    assert_eq!(set(&mut io, 2, true).len(), 1);
}

#[test]
fn masked_edge_is_ignored() {
    let mut io = IoApic::new(0);
    assert!(program(&mut io, 4, 0x1_0031, 0).is_empty());
    assert!(set(&mut io, 4, true).is_empty());
    set(&mut io, 4, false);
    assert!(program(&mut io, 4, 0x0031, 0).is_empty());
    // Raised while masked and still high at the unmask: ignored too.
    assert!(program(&mut io, 4, 0x1_0031, 0).is_empty());
    assert!(set(&mut io, 4, true).is_empty());
    assert!(program(&mut io, 4, 0x0031, 0).is_empty());
    // The next edge is delivered.
    set(&mut io, 4, false);
    let m = set(&mut io, 4, true);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].vector, 0x31);
}

#[test]
fn level_entry_remote_irr_and_eoi() {
    let mut io = IoApic::new(0);
    program(&mut io, 10, 0x8841, 0x0300_0000); // level, logical
    let m = set(&mut io, 10, true);
    assert_eq!(m.len(), 1);
    assert!(m[0].level && m[0].logical);
    assert_eq!(m[0].dest, 3);
    assert_ne!(io.redirection(10) & RTE_REMOTE_IRR, 0);
    // No more messages while remote IRR is set.
    assert!(set(&mut io, 10, true).is_empty());
    // EOI with the line still high: sent again.
    let mut v = Vec::new();
    io.eoi(0x41, &mut |msg| {
        v.push(*msg);
        true
    });
    assert_eq!(v.len(), 1);
    // Line drops, EOI via the EOI register: nothing more.
    set(&mut io, 10, false);
    let mut v = Vec::new();
    w32(&mut io, 0x40, 0x41, &mut v);
    assert!(v.is_empty());
    assert_eq!(io.redirection(10) & RTE_REMOTE_IRR, 0);
    // An EOI for another vector changes nothing.
    set(&mut io, 10, true);
    io.eoi(0x42, &mut |_| panic!("no message expected"));
    assert_ne!(io.redirection(10) & RTE_REMOTE_IRR, 0);
}

#[test]
fn unmasking_a_high_level_line_sends() {
    let mut io = IoApic::new(0);
    program(&mut io, 11, 0x1_8050, 0);
    assert!(set(&mut io, 11, true).is_empty());
    assert_eq!(program(&mut io, 11, 0x8050, 0).len(), 1);
}

#[test]
fn read_only_bits_and_switch_to_edge() {
    let mut io = IoApic::new(0);
    program(&mut io, 5, 0x8060, 0);
    set(&mut io, 5, true);
    // Guest cannot clear remote IRR by writing it, nor set delivery status.
    program(&mut io, 5, 0x8060 | 0x1000, 0x00ff_ffff);
    assert_eq!(io.redirection(5), 0x8060 | RTE_REMOTE_IRR);
    // Switching to edge clears remote IRR.
    program(&mut io, 5, 0x1_0060, 0);
    assert_eq!(io.redirection(5), 0x1_0060);
}

#[test]
fn not_accepted_level_message_is_retried_later() {
    let mut io = IoApic::new(0);
    program(&mut io, 3, 0x8070, 0x0500_0000);
    io.set_irq(3, true, &mut |_| false);
    assert_eq!(io.redirection(3) & RTE_REMOTE_IRR, 0);
    assert_eq!(set(&mut io, 3, true).len(), 1);
}

#[test]
fn narrow_accesses_and_hostile_input() {
    let mut io = IoApic::new(0);
    let mut v = Vec::new();
    io.mmio_write(0, &[0x12], &mut |_| true);
    let mut b = [0u8; 1];
    io.mmio_read(0, &mut b);
    assert_eq!(b, [0x12]);
    // Byte write to IOWIN at offset 0x11 merges into bits 8-15.
    io.mmio_write(0x11, &[0x05], &mut |_| true);
    assert_eq!(reg_read(&mut io, 0x12), 0x0001_0500);
    for pin in [24u32, 1000, u32::MAX] {
        assert!(set(&mut io, pin, true).is_empty());
    }
    for off in (0..0x50u64).chain([0xfff, u64::MAX]) {
        let mut d = [0u8; 8];
        io.mmio_read(off, &mut d);
        for sel in [0u8, 1, 2, 0x3f, 0x40, 0xff] {
            io.mmio_write(0, &[sel], &mut |_| true);
            io.mmio_write(off, &[0xff; 8], &mut |m| {
                v.push(*m);
                true
            });
            io.mmio_write(off, &[], &mut |_| true);
        }
    }
    assert_eq!(io.redirection(99), 0);
}

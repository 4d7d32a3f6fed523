use super::*;
use crate::testutil::RecordingIrq;

fn kbc() -> (I8042, Arc<RecordingIrq>, Arc<RecordingIrq>) {
    let k = Arc::new(RecordingIrq::default());
    let a = Arc::new(RecordingIrq::default());
    (I8042::new(k.clone(), a.clone()), k, a)
}

fn status(c: &mut I8042) -> u8 {
    let mut d = [0u8];
    c.read(4, &mut d);
    d[0]
}

fn data(c: &mut I8042) -> u8 {
    let mut d = [0u8];
    c.read(0, &mut d);
    d[0]
}

fn cmd(c: &mut I8042, v: u8) -> Option<VmRequest> {
    c.write(4, &[v])
}

#[test]
fn status_and_command_byte() {
    let (mut c, kbd, _aux) = kbc();
    assert_eq!(status(&mut c), 0x14);
    assert_eq!(cmd(&mut c, 0x20), None);
    assert_eq!(status(&mut c) & 0x09, 0x09); // OBF, last write a command
    assert!(kbd.level());
    assert_eq!(data(&mut c), 0x47);
    assert!(!kbd.level());
    assert_eq!(status(&mut c) & 0x01, 0);
    cmd(&mut c, 0x60);
    c.write(0, &[0x20]);
    assert_eq!(c.command_byte(), 0x20);
    assert_eq!(status(&mut c), 0x10); // SYS follows the command byte
    cmd(&mut c, 0x20);
    assert_eq!(data(&mut c), 0x20);
}

#[test]
fn tests_and_port_enables() {
    let (mut c, _kbd, _aux) = kbc();
    cmd(&mut c, 0xaa);
    assert_eq!(data(&mut c), 0x55);
    cmd(&mut c, 0xab);
    assert_eq!(data(&mut c), 0x00);
    cmd(&mut c, 0xa9);
    assert_eq!(data(&mut c), 0x00);
    cmd(&mut c, 0xad);
    cmd(&mut c, 0xa7);
    assert_eq!(c.command_byte() & 0x30, 0x30);
    cmd(&mut c, 0xae);
    cmd(&mut c, 0xa8);
    assert_eq!(c.command_byte() & 0x30, 0x00);
    // Reading an empty buffer is harmless.
    assert_eq!(data(&mut c), 0x00);
}

#[test]
fn reset_requests() {
    let (mut c, _kbd, _aux) = kbc();
    assert_eq!(cmd(&mut c, 0xfe), Some(VmRequest::Reset));
    assert_eq!(cmd(&mut c, 0xff), None);
    assert_eq!(cmd(&mut c, 0xf0), Some(VmRequest::Reset));
    cmd(&mut c, 0xd1);
    assert_eq!(c.write(0, &[0x03]), None);
    cmd(&mut c, 0xd0);
    assert_eq!(data(&mut c), 0x03);
    cmd(&mut c, 0xd1);
    assert_eq!(c.write(0, &[0x02]), Some(VmRequest::Reset));
}

#[test]
fn output_buffer_writes_and_aux() {
    let (mut c, kbd, aux) = kbc();
    cmd(&mut c, 0xd2);
    c.write(0, &[0x1c]);
    assert_eq!(status(&mut c) & 0x21, 0x01);
    assert_eq!(data(&mut c), 0x1c);
    cmd(&mut c, 0xd3);
    c.write(0, &[0x5a]);
    assert_eq!(status(&mut c) & 0x21, 0x21);
    assert!(aux.level() && !kbd.level());
    assert_eq!(data(&mut c), 0x5a);
    assert!(!aux.level());
    // No mouse: 0xFE with the time-out bit.
    cmd(&mut c, 0xd4);
    c.write(0, &[0xf2]);
    assert_eq!(status(&mut c) & 0x61, 0x61);
    assert_eq!(data(&mut c), 0xfe);
    assert_eq!(status(&mut c) & 0x40, 0);
}

#[test]
fn keyboard_acknowledges_and_identifies() {
    let (mut c, kbd, _aux) = kbc();
    c.write(0, &[0xf2]);
    assert_eq!(data(&mut c), 0xfa);
    // Each byte makes its own IRQ1 edge.
    assert_eq!(kbd.levels(), vec![true, false, true]);
    assert_eq!(data(&mut c), 0xab);
    assert_eq!(data(&mut c), 0x83);
    c.write(0, &[0xed]);
    c.write(0, &[0x07]);
    assert_eq!((data(&mut c), data(&mut c)), (0xfa, 0xfa));
    c.write(0, &[0xf0]);
    c.write(0, &[0x00]);
    assert_eq!(
        (data(&mut c), data(&mut c), data(&mut c)),
        (0xfa, 0xfa, 0x02)
    );
    c.write(0, &[0xff]);
    assert_eq!((data(&mut c), data(&mut c)), (0xfa, 0xaa));
    c.write(0, &[0xee]);
    assert_eq!(data(&mut c), 0xee);
    c.write(0, &[0x12]);
    assert_eq!(data(&mut c), 0xfe);
}

#[test]
fn interrupts_follow_the_command_byte() {
    let (mut c, kbd, _aux) = kbc();
    cmd(&mut c, 0x60);
    c.write(0, &[0x44]); // kbd interrupt off
    cmd(&mut c, 0xaa);
    assert!(!kbd.level());
    cmd(&mut c, 0x60);
    c.write(0, &[0x45]);
    assert!(kbd.level());
}

#[test]
fn hostile_input() {
    let (mut c, _kbd, _aux) = kbc();
    for v in 0..=255u8 {
        if v & 0xf0 == 0xf0 && v & 1 == 0 {
            continue;
        }
        if v == 0xd1 {
            continue;
        }
        cmd(&mut c, v);
        c.write(0, &[v]);
    }
    for _ in 0..100 {
        c.write(0, &[0xf2]);
    }
    let mut d = [0u8; 8];
    c.read(0, &mut d);
    c.read(u64::MAX, &mut d);
    assert_eq!(c.write(u64::MAX, &[0xfe; 3]), None);
    assert_eq!(c.write(2, &[0xfe; 3]), Some(VmRequest::Reset));
}

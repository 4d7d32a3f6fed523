use super::*;
use crate::testutil::RecordingIrq;

fn kbc() -> (I8042, Arc<RecordingIrq>, Arc<RecordingIrq>) {
    let k = Arc::new(RecordingIrq::default());
    let a = Arc::new(RecordingIrq::default());
    (I8042::new(k.clone(), a.clone()), k, a)
}

fn status(c: &mut I8042) -> u8 {
    c.status()
}

fn data(c: &mut I8042) -> u8 {
    c.read_data()
}

fn cmd(c: &mut I8042, v: u8) -> Option<VmRequest> {
    c.write_command(v)
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
    c.write_data(0x20);
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
    assert_eq!(c.write_data(0x03), None);
    cmd(&mut c, 0xd0);
    assert_eq!(data(&mut c), 0x03);
    cmd(&mut c, 0xd1);
    assert_eq!(c.write_data(0x02), Some(VmRequest::Reset));
}

#[test]
fn output_buffer_writes_and_aux() {
    let (mut c, kbd, aux) = kbc();
    cmd(&mut c, 0xd2);
    c.write_data(0x1c);
    assert_eq!(status(&mut c) & 0x21, 0x01);
    assert_eq!(data(&mut c), 0x1c);
    cmd(&mut c, 0xd3);
    c.write_data(0x5a);
    assert_eq!(status(&mut c) & 0x21, 0x21);
    assert!(aux.level() && !kbd.level());
    assert_eq!(data(&mut c), 0x5a);
    assert!(!aux.level());
    // No mouse: 0xFE with the time-out bit.
    cmd(&mut c, 0xd4);
    c.write_data(0xf2);
    assert_eq!(status(&mut c) & 0x61, 0x61);
    assert_eq!(data(&mut c), 0xfe);
    assert_eq!(status(&mut c) & 0x40, 0);
}

#[test]
fn keyboard_acknowledges_and_identifies() {
    let (mut c, kbd, _aux) = kbc();
    c.write_data(0xf2);
    assert_eq!(data(&mut c), 0xfa);
    // Each byte makes its own IRQ1 edge.
    assert_eq!(kbd.levels(), vec![true, false, true]);
    assert_eq!(data(&mut c), 0xab);
    assert_eq!(data(&mut c), 0x83);
    c.write_data(0xed);
    c.write_data(0x07);
    assert_eq!((data(&mut c), data(&mut c)), (0xfa, 0xfa));
    c.write_data(0xf0);
    c.write_data(0x00);
    assert_eq!(
        (data(&mut c), data(&mut c), data(&mut c)),
        (0xfa, 0xfa, 0x02)
    );
    c.write_data(0xff);
    assert_eq!((data(&mut c), data(&mut c)), (0xfa, 0xaa));
    c.write_data(0xee);
    assert_eq!(data(&mut c), 0xee);
    c.write_data(0x12);
    assert_eq!(data(&mut c), 0xfe);
}

#[test]
fn interrupts_follow_the_command_byte() {
    let (mut c, kbd, _aux) = kbc();
    cmd(&mut c, 0x60);
    c.write_data(0x44); // kbd interrupt off
    cmd(&mut c, 0xaa);
    assert!(!kbd.level());
    cmd(&mut c, 0x60);
    c.write_data(0x45);
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
        c.write_data(v);
    }
    for _ in 0..100 {
        c.write_data(0xf2);
    }
}

#[test]
fn ports_on_a_bus() {
    let (c, kbd, _aux) = kbc();
    let kbc = Arc::new(Mutex::new(c));
    let mut pio = Bus::new();
    attach_i8042(&kbc, &mut pio).unwrap();
    // Port 0x61 stays free for the PIT's port B.
    pio.insert(Arc::new(Mutex::new(crate::PostCode::new())), 0x61, 1)
        .unwrap();
    let mut d = [0u8; 1];
    pio.read(0x64, &mut d);
    assert_eq!(d, [0x14]);
    assert_eq!(pio.write(0x64, &[0xaa]), None);
    pio.read(0x64, &mut d);
    assert_eq!(d[0] & 0x09, 0x09);
    assert!(kbd.level());
    pio.read(0x60, &mut d);
    assert_eq!(d, [0x55]);
    assert_eq!(pio.write(0x64, &[0xfe]), Some(VmRequest::Reset));
    // Odd sizes and offsets.
    let mut port = I8042Port::new(kbc.clone(), I8042PortKind::Data);
    let mut big = [0u8; 4];
    port.read(0, &mut big);
    assert_eq!(&big[1..], &[0xff; 3]);
    port.read(u64::MAX, &mut big);
    assert_eq!(port.write(1, &[0xff]), None);
    assert_eq!(port.write(0, &[]), None);
    let mut cmd_port = I8042Port::new(kbc, I8042PortKind::Command);
    assert_eq!(cmd_port.write(0, &[0xfe, 0x00]), Some(VmRequest::Reset));
}

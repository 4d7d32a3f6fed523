use super::*;
use crate::clock::ManualClock;
use crate::testutil::RecordingIrq;

/// 2023-11-14 22:13:20 UTC, a Tuesday.
const T: i64 = 1_700_000_000;

fn rtc() -> (Rtc, Arc<ManualClock>, Arc<RecordingIrq>) {
    let clock = Arc::new(ManualClock::new(0));
    let irq = Arc::new(RecordingIrq::default());
    let r = Rtc::with_unix_time(clock.clone(), irq.clone(), T);
    (r, clock, irq)
}

fn rd(r: &mut Rtc, reg: u8) -> u8 {
    r.write(0, &[reg]);
    let mut d = [0u8];
    r.read(1, &mut d);
    d[0]
}

fn wr(r: &mut Rtc, reg: u8, v: u8) {
    r.write(0, &[reg]);
    r.write(1, &[v]);
}

#[test]
fn reads_time_in_bcd_24h() {
    let (mut r, clock, _irq) = rtc();
    let regs: Vec<u8> = [0u8, 2, 4, 6, 7, 8, 9, 0x32]
        .iter()
        .map(|&i| rd(&mut r, i))
        .collect();
    assert_eq!(regs, [0x20, 0x13, 0x22, 0x03, 0x14, 0x11, 0x23, 0x20]);
    clock.advance(2_500_000_000);
    assert_eq!(rd(&mut r, 0), 0x22);
    assert_eq!(rd(&mut r, REG_D as u8), 0x80);
    assert_eq!(rd(&mut r, REG_B as u8), 0x02);
    assert_eq!(rd(&mut r, REG_A as u8), 0x26);
}

#[test]
fn binary_and_12_hour_modes() {
    let (mut r, _clock, _irq) = rtc();
    wr(&mut r, 0x0b, 0x04); // binary, 12-hour
    assert_eq!(rd(&mut r, 0), 20);
    assert_eq!(rd(&mut r, 4), 0x80 | 10);
    assert_eq!(rd(&mut r, 9), 23);
    wr(&mut r, 0x0b, 0x00); // BCD, 12-hour
    assert_eq!(rd(&mut r, 4), 0x90);
    wr(&mut r, 0x0b, 0x06); // binary, 24-hour
    assert_eq!(rd(&mut r, 4), 22);
}

#[test]
fn uip_is_set_244us_before_each_update() {
    let (mut r, clock, _irq) = rtc();
    assert_eq!(rd(&mut r, 0x0a) & 0x80, 0);
    clock.set(1_000_000_000 - 244_001);
    assert_eq!(rd(&mut r, 0x0a) & 0x80, 0);
    clock.set(1_000_000_000 - 244_000);
    assert_eq!(rd(&mut r, 0x0a) & 0x80, 0x80);
    assert_eq!(rd(&mut r, 0), 0x20);
    clock.set(1_000_000_000);
    assert_eq!(rd(&mut r, 0x0a) & 0x80, 0);
    assert_eq!(rd(&mut r, 0), 0x21);
    // The guest cannot write UIP.
    wr(&mut r, 0x0a, 0xa6);
    assert_eq!(rd(&mut r, 0x0a), 0x26);
}

#[test]
fn set_bit_freezes_while_the_guest_writes_the_time() {
    let (mut r, clock, _irq) = rtc();
    wr(&mut r, 0x0b, 0x82 | 0x10);
    assert_eq!(rd(&mut r, 0x0b), 0x82, "SET clears UIE");
    wr(&mut r, 0x00, 0x45);
    wr(&mut r, 0x02, 0x30);
    wr(&mut r, 0x04, 0x08);
    wr(&mut r, 0x07, 0x29);
    wr(&mut r, 0x08, 0x02);
    wr(&mut r, 0x09, 0x24);
    clock.advance(5_000_000_000);
    assert_eq!(rd(&mut r, 0), 0x45);
    // Fields are registers: Feb 29 is accepted before the year is written.
    assert_eq!(rd(&mut r, 7), 0x29);
    assert_eq!(rd(&mut r, 0x0a) & 0x80, 0);
    wr(&mut r, 0x0b, 0x02);
    clock.advance(1_000_000_000);
    let got: Vec<u8> = [0u8, 2, 4, 6, 7, 8, 9, 0x32]
        .iter()
        .map(|&i| rd(&mut r, i))
        .collect();
    // 2024-02-29 08:30:46, a Thursday.
    assert_eq!(got, [0x46, 0x30, 0x08, 0x05, 0x29, 0x02, 0x24, 0x20]);
}

#[test]
fn writing_without_set_keeps_running() {
    let (mut r, clock, _irq) = rtc();
    clock.set(400_000_000);
    wr(&mut r, 0x02, 0x59);
    wr(&mut r, 0x32, 0x21);
    assert_eq!(rd(&mut r, 2), 0x59);
    assert_eq!(rd(&mut r, 0x32), 0x21);
    assert_eq!(rd(&mut r, 9), 0x23);
    clock.set(1_000_000_000);
    assert_eq!(rd(&mut r, 0), 0x21);
    // Day of week cannot be written; garbage is clamped, not a panic.
    let dow = rd(&mut r, 6);
    wr(&mut r, 0x06, dow % 7 + 1);
    assert_eq!(rd(&mut r, 6), dow);
    wr(&mut r, 0x08, 0xff);
    assert_eq!(rd(&mut r, 8), 0x12);
}

#[test]
fn update_interrupt_and_register_c() {
    let (mut r, clock, irq) = rtc();
    assert_eq!(r.next_deadline_ns(), None);
    wr(&mut r, 0x0b, 0x12); // UIE
    assert_eq!(r.next_deadline_ns(), Some(1_000_000_000));
    clock.set(999_999_999);
    r.poll();
    assert!(!irq.level());
    clock.set(1_000_000_000);
    r.poll();
    assert!(irq.level());
    assert_eq!(r.next_deadline_ns(), None);
    // The periodic flag (default rate 1024 Hz) is set too, without PIE.
    assert_eq!(rd(&mut r, 0x0c), 0xd0);
    assert!(!irq.level());
    assert_eq!(rd(&mut r, 0x0c), 0x00);
    // Flags are set even when the interrupt is disabled, but no IRQF.
    wr(&mut r, 0x0b, 0x02);
    clock.set(2_000_000_000);
    assert_eq!(rd(&mut r, 0x0c), 0x50);
    assert!(!irq.level());
    // Register C/D are read-only.
    wr(&mut r, 0x0c, 0xff);
    wr(&mut r, 0x0d, 0x00);
    assert_eq!(rd(&mut r, 0x0d), 0x80);
}

#[test]
fn periodic_interrupt() {
    let (mut r, clock, irq) = rtc();
    wr(&mut r, 0x0a, 0x26); // 1024 Hz
    wr(&mut r, 0x0b, 0x42);
    assert_eq!(r.next_deadline_ns(), Some(976_562));
    clock.set(976_562);
    r.poll();
    assert!(irq.level());
    assert_eq!(rd(&mut r, 0x0c), 0xc0);
    wr(&mut r, 0x0a, 0x20); // rate 0: off
    clock.set(10_000_000);
    assert_eq!(rd(&mut r, 0x0c), 0x00);
    assert_eq!(r.next_deadline_ns(), None);
}

#[test]
fn alarm_interrupt_with_dont_care() {
    let (mut r, clock, irq) = rtc();
    wr(&mut r, 0x01, 0x22);
    wr(&mut r, 0x03, 0xc0);
    wr(&mut r, 0x05, 0xff);
    assert_eq!(rd(&mut r, 0x01), 0x22);
    wr(&mut r, 0x0a, 0x20); // no periodic flag
    wr(&mut r, 0x0b, 0x22); // AIE
    clock.set(1_000_000_000);
    r.poll();
    assert!(!irq.level());
    assert_eq!(rd(&mut r, 0x0c), 0x10);
    clock.set(2_000_000_000);
    r.poll();
    assert!(irq.level());
    assert_eq!(rd(&mut r, 0x0c), 0xb0);
}

#[test]
fn index_port_and_nmi_bit() {
    let (mut r, _clock, _irq) = rtc();
    r.write(0, &[0x8f]);
    assert!(r.nmi_disabled());
    let mut d = [0u8; 1];
    r.read(0, &mut d);
    assert_eq!(d, [0xff]);
    r.write(1, &[0x5a]);
    assert_eq!(r.byte(0x0f), 0x5a);
    r.write(0, &[0x0f]);
    assert!(!r.nmi_disabled());
    r.read(1, &mut d);
    assert_eq!(d, [0x5a]);
}

#[test]
fn memory_size_bytes() {
    let (mut r, _clock, _irq) = rtc();
    r.set_memory_size(128 << 20, 0);
    let b = |r: &Rtc, i| r.byte(i);
    assert_eq!((b(&r, 0x15), b(&r, 0x16)), (0x80, 0x02));
    assert_eq!((b(&r, 0x17), b(&r, 0x18)), (0xff, 0xff));
    assert_eq!((b(&r, 0x30), b(&r, 0x31)), (0xff, 0xff));
    assert_eq!((b(&r, 0x34), b(&r, 0x35)), (0x00, 0x07));
    assert_eq!((b(&r, 0x5b), b(&r, 0x5c), b(&r, 0x5d)), (0, 0, 0));
    r.set_memory_size(3 << 30, 5 << 30);
    assert_eq!((b(&r, 0x34), b(&r, 0x35)), (0x00, 0xbf));
    assert_eq!((b(&r, 0x5b), b(&r, 0x5c), b(&r, 0x5d)), (0x00, 0x40, 0x01));
    r.set_memory_size(32 << 20, 0);
    assert_eq!((b(&r, 0x17), b(&r, 0x18)), (0x00, 0x7c));
    // The guest reads them through the ports.
    assert_eq!(rd(&mut r, 0x15), 0x80);
}

#[test]
fn set_byte_limits() {
    let (mut r, _clock, _irq) = rtc();
    r.set_byte(0x00, 0x99);
    r.set_byte(0x0b, 0x99);
    r.set_byte(0x80, 0x99);
    r.set_byte(0xff, 0x99);
    r.set_byte(0x14, 0x06);
    assert_eq!(r.byte(0x0b), 0x02);
    assert_eq!(r.byte(0x14), 0x06);
    assert_eq!(r.byte(0xff), 0);
}

#[test]
fn host_time_is_plausible_and_hostile_input() {
    let clock = Arc::new(ManualClock::new(0));
    let mut r = Rtc::new(clock.clone(), Arc::new(crate::NoIrq));
    assert!(rd(&mut r, 0x32) >= 0x20);
    for reg in 0..=255u8 {
        for v in [0u8, 0x7f, 0x80, 0xff] {
            wr(&mut r, reg, v);
            rd(&mut r, reg);
        }
        clock.advance(123_456_789);
        r.poll();
        let _ = r.next_deadline_ns();
    }
    let mut d = [0u8; 8];
    r.read(u64::MAX, &mut d);
    r.read(0, &mut d);
    r.write(u64::MAX, &[1, 2]);
    r.write(0, &[0x10, 0x20, 0x30]);
    r.read(0, &mut []);
}

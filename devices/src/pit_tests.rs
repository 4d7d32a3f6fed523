use super::*;

/// ns of `ticks` PIT clocks, rounded up.
fn ns(ticks: u64) -> u64 {
    mul_div_ceil(ticks, NS_PER_SEC, PIT_HZ)
}

fn program(p: &mut Pit, ch: u16, control: u8, count: u16, now: u64) {
    p.write_port(0x43, control, now);
    let [lo, hi] = count.to_le_bytes();
    p.write_port(0x40 + ch, lo, now);
    p.write_port(0x40 + ch, hi, now);
}

fn read16(p: &mut Pit, ch: u16, now: u64) -> u16 {
    let lo = p.read_port(0x40 + ch, now);
    let hi = p.read_port(0x40 + ch, now);
    u16::from_le_bytes([lo, hi])
}

#[test]
fn mode2_rate_generator_drives_irq0() {
    let mut p = Pit::new();
    let t0 = 1_000;
    assert_eq!(p.next_deadline_ns(), None);
    // Linux: channel 0, lobyte/hibyte, mode 2, LATCH for HZ=1000.
    program(&mut p, 0, 0x34, 1193, t0);
    let period = ns(1193);
    assert_eq!(p.next_deadline_ns(), Some(t0 + period));
    assert!(!p.poll(t0 + period - 1));
    assert!(p.poll(t0 + period));
    assert!(!p.poll(t0 + period));
    assert_eq!(p.next_deadline_ns(), Some(t0 + ns(2 * 1193)));
    // Missed periods collapse into one edge.
    assert!(p.poll(t0 + ns(10 * 1193)));
    assert!(!p.poll(t0 + ns(10 * 1193) + 5));
    assert_eq!(p.next_deadline_ns(), Some(t0 + ns(11 * 1193)));
    // OUT is low during the last clock of each period only.
    assert!(p.out(0, t0));
    assert!(!p.out(0, t0 + ns(1192)));
    assert!(p.out(0, t0 + ns(1193)));
    // Counter runs from N down to 1.
    assert_eq!(read16(&mut p, 0, t0), 1193);
    assert_eq!(read16(&mut p, 0, t0 + ns(1192)), 1);
}

#[test]
fn mode0_on_channel2_with_port61_gate() {
    let mut p = Pit::new();
    let t0 = 50_000;
    // Linux pit_calibrate_tsc: gate on, speaker off, mode 0, count.
    let v = p.read_port(0x61, t0);
    p.write_port(0x61, (v & !0x02) | 0x01, t0);
    program(&mut p, 2, 0xb0, 11932, t0);
    assert_eq!(p.read_port(0x61, t0) & 0x20, 0);
    assert_eq!(p.read_port(0x61, t0 + ns(11931)) & 0x20, 0);
    assert_eq!(p.read_port(0x61, t0 + ns(11932)) & 0x20, 0x20);
    assert_eq!(p.read_port(0x61, t0) & 0x03, 0x01);
    // Channel 2 never raises IRQ0.
    assert!(!p.poll(t0 + ns(20_000)));
    // After terminal count the counter wraps and keeps counting down.
    assert_eq!(read16(&mut p, 2, t0 + ns(11933)), 0xffff);
}

#[test]
fn mode0_gate_low_pauses_counting() {
    let mut p = Pit::new();
    program(&mut p, 2, 0xb0, 1000, 0);
    // Gate is low: nothing counts.
    assert_eq!(read16(&mut p, 2, ns(500)), 1000);
    p.write_port(0x61, 0x01, ns(500));
    assert_eq!(read16(&mut p, 2, ns(600)), 900);
    p.write_port(0x61, 0x00, ns(600));
    assert_eq!(read16(&mut p, 2, ns(5000)), 900);
    p.write_port(0x61, 0x01, ns(5000));
    assert_eq!(p.read_port(0x61, ns(5899)) & 0x20, 0);
    assert_eq!(p.read_port(0x61, ns(5901)) & 0x20, 0x20);
}

#[test]
fn mode0_irq0_one_shot_and_deadline() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x30, 100, 0);
    assert!(!p.out(0, 0));
    assert_eq!(p.next_deadline_ns(), Some(ns(100)));
    assert!(p.poll(ns(100)));
    assert!(!p.poll(ns(1_000_000)));
    assert_eq!(p.next_deadline_ns(), None);
    assert!(p.out(0, ns(200)));
    // Writing the first byte of a new count stops the counter.
    p.write_port(0x40, 50, ns(300));
    assert!(!p.out(0, ns(300)));
    assert_eq!(p.next_deadline_ns(), None);
    p.write_port(0x40, 0, ns(300));
    assert_eq!(p.next_deadline_ns(), Some(ns(300) + ns(50)));
}

#[test]
fn mode3_square_wave() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x36, 100, 0);
    assert!(p.out(0, 0));
    assert!(p.out(0, ns(49)));
    assert!(!p.out(0, ns(50)));
    assert!(!p.out(0, ns(99)));
    assert!(p.out(0, ns(100)));
    assert_eq!(p.next_deadline_ns(), Some(ns(100)));
    assert!(p.poll(ns(100)));
    // Counter decrements by two, twice per period.
    assert_eq!(read16(&mut p, 0, 0), 100);
    assert_eq!(read16(&mut p, 0, ns(10)), 80);
    assert_eq!(read16(&mut p, 0, ns(60)), 80);
    // Odd count: high one clock longer than low.
    program(&mut p, 1, 0x76, 5, 0);
    let outs: Vec<bool> = (0..5).map(|t| p.out(1, ns(t))).collect();
    assert_eq!(outs, [true, true, true, false, false]);
}

#[test]
fn latch_command_freezes_the_value() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x34, 1000, 0);
    p.write_port(0x43, 0x00, ns(100));
    // A second latch before the read is ignored.
    p.write_port(0x43, 0x00, ns(200));
    assert_eq!(read16(&mut p, 0, ns(500)), 900);
    // Latch consumed: reads are live again.
    assert_eq!(read16(&mut p, 0, ns(500)), 500);
}

#[test]
fn lobyte_only_and_hibyte_only_access() {
    let mut p = Pit::new();
    p.write_port(0x43, 0x14, 0); // ch0, LSB only, mode 2
    p.write_port(0x40, 200, 0);
    assert_eq!(p.read_port(0x40, ns(50)), 150);
    assert_eq!(p.read_port(0x40, ns(50)), 150);
    p.write_port(0x43, 0x24, 0); // ch0, MSB only, mode 2
    p.write_port(0x40, 0x02, 0);
    assert_eq!(p.next_deadline_ns(), Some(ns(0x200)));
    assert_eq!(p.read_port(0x40, ns(0x100)), 0x01);
}

#[test]
fn readback_status_and_count() {
    let mut p = Pit::new();
    p.write_port(0x43, 0xb0, 0); // ch2, lo/hi, mode 0
                                 // Status before the count: OUT low, null count set.
    p.write_port(0x43, 0xe8, 0); // read-back status of ch2
    assert_eq!(p.read_port(0x42, 0), 0x70);
    p.write_port(0x42, 0x10, 0);
    p.write_port(0x42, 0x00, 0);
    p.write_port(0x61, 0x01, 0);
    // Status and count together: status first.
    p.write_port(0x43, 0xc8, ns(0x10));
    assert_eq!(p.read_port(0x42, ns(0x20)), 0xb0);
    assert_eq!(read16(&mut p, 2, ns(0x20)), 0);
    // Count only, several channels.
    program(&mut p, 0, 0x34, 300, 0);
    p.write_port(0x43, 0xd2 | 0x08, ns(100));
    assert_eq!(read16(&mut p, 0, ns(250)), 200);
}

#[test]
fn bcd_counting() {
    let mut p = Pit::new();
    p.write_port(0x43, 0x35, 0); // ch0, lo/hi, mode 2, BCD
    p.write_port(0x40, 0x00, 0);
    p.write_port(0x40, 0x10, 0); // 1000 decimal
    assert_eq!(p.next_deadline_ns(), Some(ns(1000)));
    assert_eq!(read16(&mut p, 0, ns(1)), 0x0999);
    assert_eq!(bin_to_bcd(1234), 0x1234);
    assert_eq!(bcd_to_bin(0x9999), 9999);
    assert_eq!(bcd_to_bin(0xffff), 9999);
}

#[test]
fn port61_refresh_toggles_and_speaker_bits() {
    let mut p = Pit::new();
    p.write_port(0x61, 0xff, 0);
    let a = p.read_port(0x61, 0);
    let b = p.read_port(0x61, REFRESH_NS);
    assert_eq!(a & 0x0f, 0x0f);
    assert_ne!(a & 0x10, b & 0x10);
    assert_eq!(a & 0xc0, 0);
}

#[test]
fn count_zero_means_65536_and_mode_aliases() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x3c, 0, 0); // mode 6 == mode 2
    assert_eq!(p.next_deadline_ns(), Some(ns(65536)));
    assert_eq!(read16(&mut p, 0, 0), 0);
    assert_eq!(read16(&mut p, 0, ns(1)), 0xffff);
}

#[test]
fn mode1_and_5_wait_for_the_gate() {
    let mut p = Pit::new();
    program(&mut p, 2, 0xb2, 10, 0); // mode 1
    assert!(p.out(2, ns(100)));
    p.write_port(0x61, 1, ns(100));
    assert!(!p.out(2, ns(105)));
    assert!(p.out(2, ns(110)));
    program(&mut p, 2, 0xba, 10, ns(200)); // mode 5
    p.write_port(0x61, 0, ns(200));
    p.write_port(0x61, 1, ns(200));
    assert!(p.out(2, ns(200) + ns(9)));
    assert!(!p.out(2, ns(200) + ns(10)));
    assert!(p.out(2, ns(200) + ns(11)));
}

#[test]
fn hostile_accesses() {
    let mut p = Pit::new();
    for v in 0..=255u8 {
        for port in [0x40u16, 0x41, 0x42, 0x43, 0x61, 0x44, 0xffff] {
            p.write_port(port, v, u64::from(v) * 1000);
            p.read_port(port, u64::MAX);
        }
        p.poll(u64::MAX);
        p.next_deadline_ns();
    }
    p.set_gate(7, true, 0);
    assert!(!p.out(9, 0));
    assert_eq!(p.read_port(0x43, 0), 0xff);
}

#[test]
fn extreme_times_do_not_overflow() {
    let mut p = Pit::new();
    program(&mut p, 0, 0x34, 1, 0);
    assert!(p.poll(u64::MAX));
    let _ = p.next_deadline_ns();
    assert!(!p.poll(u64::MAX));
    let _ = read16(&mut p, 0, u64::MAX);
}

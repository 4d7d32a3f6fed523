use super::*;

fn set_addr(p: &mut PciConfigIo, bus: u32, dev: u32, func: u32, reg: u32) {
    let a = 0x8000_0000 | bus << 16 | dev << 11 | func << 8 | reg;
    p.write(0, &a.to_le_bytes());
}

fn read(p: &mut PciConfigIo, off: u64, len: usize) -> u64 {
    let mut d = vec![0u8; len];
    p.read(off, &mut d);
    le_value(&d)
}

#[test]
fn host_bridge_identity() {
    let mut p = PciConfigIo::new();
    set_addr(&mut p, 0, 0, 0, 0);
    assert_eq!(read(&mut p, 0, 4), 0x8000_0000);
    assert_eq!(read(&mut p, 4, 4), 0x1237_8086);
    assert_eq!(read(&mut p, 4, 2), 0x8086);
    assert_eq!(read(&mut p, 6, 2), 0x1237);
    assert_eq!(read(&mut p, 5, 1), 0x80);
    set_addr(&mut p, 0, 0, 0, 8);
    assert_eq!(read(&mut p, 4, 4), 0x0600_0002);
    assert_eq!(read(&mut p, 7, 1), 0x06);
    set_addr(&mut p, 0, 0, 0, 0x0c);
    assert_eq!(read(&mut p, 6, 1), 0x00); // header type 0
}

#[test]
fn absent_functions_and_disabled_address() {
    let mut p = PciConfigIo::new();
    for (b, d, f) in [(0, 1, 0), (0, 0, 1), (1, 0, 0), (255, 31, 7)] {
        set_addr(&mut p, b, d, f, 0);
        assert_eq!(read(&mut p, 4, 4), 0xffff_ffff);
        assert_eq!(read(&mut p, 4, 2), 0xffff);
        p.write(4, &[0; 4]);
    }
    p.write(0, &0x0000_0000u32.to_le_bytes());
    assert_eq!(read(&mut p, 4, 4), 0xffff_ffff);
    // Reserved address bits read as zero.
    p.write(0, &0xffff_ffffu32.to_le_bytes());
    assert_eq!(read(&mut p, 0, 4), 0x80ff_fffc);
}

#[test]
fn writes_respect_masks() {
    let mut p = PciConfigIo::new();
    set_addr(&mut p, 0, 0, 0, 0);
    p.write(4, &0xffff_ffffu32.to_le_bytes());
    assert_eq!(read(&mut p, 4, 4), 0x1237_8086);
    set_addr(&mut p, 0, 0, 0, 4);
    p.write(4, &[0x00, 0x00]);
    assert_eq!(read(&mut p, 4, 2), 0x0000);
    p.write(4, &[0xff]);
    assert_eq!(read(&mut p, 4, 2), 0x0047);
    // PAM registers are writable bytes.
    set_addr(&mut p, 0, 0, 0, 0x58);
    p.write(5, &[0x30]);
    assert_eq!(read(&mut p, 4, 4), 0x0000_3000);
}

#[test]
fn access_crossing_the_dword_is_clipped() {
    let mut p = PciConfigIo::new();
    set_addr(&mut p, 0, 0, 0, 0);
    let mut d = [0u8; 4];
    p.read(6, &mut d);
    assert_eq!(d, [0x37, 0x12, 0xff, 0xff]);
    p.write(7, &[1, 2, 3, 4]);
    let mut big = [0u8; 16];
    p.read(4, &mut big);
    assert_eq!(&big[..4], &[0x86, 0x80, 0x37, 0x12]);
}

#[test]
fn added_functions_and_errors() {
    let mut p = PciConfigIo::new();
    let f = PciConfigSpace::new(0x1af4, 0x1000, 0x02_00_00, 0);
    p.add_function(0, 3, 0, Box::new(f.clone())).unwrap();
    assert_eq!(
        p.add_function(0, 3, 0, Box::new(f.clone())),
        Err(PciError::InUse {
            bus: 0,
            dev: 3,
            func: 0
        })
    );
    assert!(matches!(
        p.add_function(0, 32, 0, Box::new(f.clone())),
        Err(PciError::InvalidAddress { .. })
    ));
    assert!(p.add_function(0, 0, 8, Box::new(f)).is_err());
    set_addr(&mut p, 0, 3, 0, 0);
    assert_eq!(read(&mut p, 4, 4), 0x1000_1af4);
    set_addr(&mut p, 0, 3, 0, 8);
    assert_eq!(read(&mut p, 4, 4), 0x0200_0000);
}

#[test]
fn narrow_cf8_accesses_and_reset_control() {
    let mut p = PciConfigIo::new();
    set_addr(&mut p, 0, 0, 0, 0);
    // Byte/word accesses to 0xCF8 are not the address register.
    p.write(0, &[0x00]);
    p.write(0, &[0x00, 0x00]);
    assert_eq!(read(&mut p, 0, 4), 0x8000_0000);
    assert_eq!(read(&mut p, 0, 1), 0xff);
    assert_eq!(p.write(1, &[0x02]), None);
    assert_eq!(read(&mut p, 1, 1), 0x02);
    assert_eq!(p.write(1, &[0x06]), Some(VmRequest::Reset));
    assert_eq!(p.write(2, &[0x06]), None);
    assert_eq!(p.write(u64::MAX, &[0x06]), None);
    let mut d = [0u8; 3];
    p.read(u64::MAX, &mut d);
    assert_eq!(d, [0xff; 3]);
}

#[test]
fn config_space_helper_bounds() {
    let mut s = PciConfigSpace::new(1, 2, 3, 4);
    s.set_u32(0xfe, 0xdead_beef);
    assert_eq!(s.u8_at(0xfe), 0xef);
    assert_eq!(s.u8_at(0xff), 0xbe);
    s.set_writable(0xff, &[0xff, 0xff]);
    s.config_write(0xfe, &[1, 2, 3, 4]);
    assert_eq!(s.u8_at(0xff), 2);
    assert_eq!(s.config_read(0xff), s.config_read(0xfc));
}

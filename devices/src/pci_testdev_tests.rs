use super::*;
use crate::bus::{le_value, Bus};
use crate::pci::{PciConfigIo, PciFunction};

struct Machine {
    pio: Bus,
    mmio: Bus,
    dev: Arc<Mutex<PciTestdev>>,
}

const MEM_BASE: u64 = 0xfebf_f000;
const IO_BASE: u64 = 0xc000;

fn machine() -> Machine {
    let (io, mem) = (PciBarSpace::new(), PciBarSpace::new());
    let (mut f, dev) = pci_testdev(2 << 3, io.clone(), mem.clone());
    f.assign(0, MEM_BASE);
    f.assign(1, IO_BASE);
    let mut cfg = PciConfigIo::new();
    cfg.add_function(0, 2, 0, Box::new(f)).unwrap();
    let mut pio = Bus::new();
    pio.insert(Arc::new(Mutex::new(cfg)), 0xcf8, 8).unwrap();
    pio.set_fallback(io);
    let mut mmio = Bus::new();
    mmio.set_fallback(mem);
    Machine { pio, mmio, dev }
}

impl Machine {
    fn bus(&self, io: bool) -> &Bus {
        if io {
            &self.pio
        } else {
            &self.mmio
        }
    }
    fn rd(&self, io: bool, off: u64, len: usize) -> u64 {
        let base = if io { IO_BASE } else { MEM_BASE };
        let mut d = vec![0u8; len];
        assert!(self.bus(io).read(base + off, &mut d));
        le_value(&d)
    }
    fn wr(&self, io: bool, off: u64, data: &[u8]) {
        let base = if io { IO_BASE } else { MEM_BASE };
        assert_eq!(self.bus(io).write(base + off, data), None);
    }
    fn config(&self, reg: u32) -> u32 {
        self.pio
            .write(0xcf8, &(0x8000_0000u32 | 2 << 11 | reg).to_le_bytes());
        let mut d = [0u8; 4];
        self.pio.read(0xcfc, &mut d);
        u32::from_le_bytes(d)
    }
    fn name(&self, io: bool) -> String {
        let mut s = String::new();
        for i in 0.. {
            match self.rd(io, NAME as u64 + i, 1) as u8 {
                0 => break,
                c => s.push(c as char),
            }
        }
        s
    }
}

#[test]
fn config_header_is_qemus() {
    let m = machine();
    assert_eq!(m.config(0x00), 0x0005_1b36);
    assert_eq!(m.config(0x08), 0xff00_0000);
    assert_eq!(m.config(0x10), MEM_BASE as u32);
    assert_eq!(m.config(0x14), IO_BASE as u32 | 1);
    assert_eq!(m.config(0x2c), 0x1100_1af4);
    assert_eq!(m.config(0x3c) >> 8 & 0xff, 0, "no interrupt pin");
    assert_eq!(m.config(0x04) & 3, 3, "I/O and memory decoding on");
}

/// kvm-unit-tests' `pci_testdev_one`: select, check the header, do 16
/// writes of `data` at `offset`, read the count back.
fn run_test(m: &Machine, io: bool, n: u8) -> Option<(String, u32)> {
    m.wr(io, 0, &[n]);
    if m.rd(io, COUNT as u64, 4) != 0 {
        return None;
    }
    let width = m.rd(io, 1, 1);
    if ![1, 2, 4].contains(&width) {
        return None;
    }
    let sig = m.rd(io, 8, 4);
    let off = m.rd(io, 4, 4);
    for _ in 0..16 {
        m.wr(io, off, &sig.to_le_bytes()[..width as usize]);
    }
    Some((m.name(io), m.rd(io, COUNT as u64, 4) as u32))
}

#[test]
fn the_six_tests_behave_as_under_qemu_tcg() {
    let m = machine();
    let mut seen = Vec::new();
    for io in [false, true] {
        for n in 0..4u8 {
            seen.push(run_test(&m, io, n));
        }
    }
    let t = |s: &str, c| Some((s.to_string(), c));
    assert_eq!(
        seen,
        vec![
            t("mmio-no-eventfd", 16),
            t("mmio-wildcard-eventfd", 0),
            t("mmio-datamatch-eventfd", 0),
            None,
            t("portio-no-eventfd", 16),
            t("portio-wildcard-eventfd", 0),
            t("portio-datamatch-eventfd", 0),
            None,
        ]
    );
    // The four eventfd tests' writes went to the eventfds.
    assert_eq!(m.dev.lock().unwrap().signalled(), 64);
}

#[test]
fn header_fields_and_data_matching() {
    let m = machine();
    // Nothing selected: reads are 0.
    assert_eq!(m.rd(false, 0, 4), 0);
    m.wr(true, 0, &[2]);
    assert_eq!(m.rd(true, 0, 1), 5, "test index within the six");
    assert_eq!(m.rd(true, 4, 4), 128 + 5, "offset");
    assert_eq!(m.rd(true, 8, 4), 0xfa, "data");
    // Wider writes are not the eventfd's (one byte): they reach the device
    // byte by byte, and only a matching byte at `offset` counts.
    m.wr(true, 133, &[0xfa, 0xfa]);
    m.wr(true, 133, &[0xfb, 0xfa]);
    m.wr(true, 132, &[0xfa, 0xfa]);
    assert_eq!(m.rd(true, COUNT as u64, 4), 2);
    // Selecting again clears the count; selecting 3+ deselects.
    m.wr(true, 0, &[2]);
    assert_eq!(m.rd(true, COUNT as u64, 4), 0);
    m.wr(true, 0, &[9]);
    assert_eq!(m.rd(true, 0, 4), 0);
    // The no-eventfd test has no eventfd but still matches its data.
    m.wr(false, 0, &[0]);
    m.wr(false, 2048, &[0x11]);
    m.wr(false, 2048, &[0xfa]);
    assert_eq!(m.rd(false, COUNT as u64, 4), 1);
    // Reads past the header are 0, and so are the pads.
    assert_eq!(m.rd(false, 2, 2), 0);
    assert_eq!(m.rd(false, 0x800, 4), 0);
}

#[test]
fn moving_the_bars_moves_the_registers() {
    let m = machine();
    // BAR 1 to 0xd000 through configuration space.
    m.pio
        .write(0xcf8, &(0x8000_0000u32 | 2 << 11 | 0x14).to_le_bytes());
    m.pio.write(0xcfc, &0xd000u32.to_le_bytes());
    let mut d = [0u8; 1];
    assert!(!m.pio.read(IO_BASE, &mut d));
    m.pio.write(0xd000, &[0]);
    assert!(m.pio.read(0xd000 + 1, &mut d));
    assert_eq!(d, [1], "width");
}

#[test]
fn hostile_accesses_do_not_panic() {
    let mut t = PciTestdev::new();
    let mut big = vec![0u8; 64];
    t.write(false, 0, &[0]);
    t.read(u64::MAX - 3, &mut big);
    t.read(0, &mut big);
    assert_eq!(&big[16..31], b"mmio-no-eventfd");
    t.write(true, u64::MAX, &[1, 2, 3]);
    t.write(false, 0, &[]);
    let mut f = pci_testdev(0, PciBarSpace::new(), PciBarSpace::new()).0;
    f.config_write(0xfe, &[1, 2, 3, 4]);
    let _ = f.config_read(0xff);
}

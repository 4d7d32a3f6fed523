//! Random guest accesses (any address, size, value) against every device on
//! the buses, with time jumping around: nothing may panic.

use std::sync::{Arc, Mutex};

use devices::{
    attach_i8042, attach_irqchip, attach_pc_testdev, attach_pc_testdev_byte_view, lock_chip,
    pci_testdev, Bus, DebugExit, Debugcon, GsiLine, IrqChip, IrqLine, ManualClock, PcTestdev,
    PciBarSpace, PciConfigIo, PostCode, PowerOffPort, Rtc, Serial, I8042, IOAPIC_BASE, LAPIC_BASE,
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_accesses_never_panic() {
    let clock = Arc::new(ManualClock::new(0));
    let chip = IrqChip::new(clock.clone()).into_shared();
    let line = |gsi| -> Arc<dyn IrqLine> { Arc::new(GsiLine::new(chip.clone(), gsi)) };
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    attach_irqchip(&chip, &mut pio, &mut mmio).unwrap();
    let serial = Arc::new(Mutex::new(Serial::new(line(4), Box::new(std::io::sink()))));
    pio.insert(serial.clone(), 0x3f8, 8).unwrap();
    let rtc = Arc::new(Mutex::new(Rtc::new(clock.clone(), line(8))));
    pio.insert(rtc.clone(), 0x70, 2).unwrap();
    let kbc = Arc::new(Mutex::new(I8042::new(line(1), line(12))));
    attach_i8042(&kbc, &mut pio).unwrap();
    // QEMU's test devices: pc-testdev, isa-debugcon at 0xe9, pci-testdev at
    // 00:02.0 with its BARs decoded (and movable by the random writes to
    // 0xcf8/0xcfc).
    let testdev = Arc::new(Mutex::new(PcTestdev::new((0..24).map(line).collect())));
    attach_pc_testdev(&testdev, &mut pio, &mut mmio).unwrap();
    let debugcon = Debugcon::new(Box::new(std::io::sink()), 0xe9);
    pio.insert(Arc::new(Mutex::new(debugcon)), 0xe9, 1).unwrap();
    attach_pc_testdev_byte_view(&testdev, &mut pio);
    let (bar_io, bar_mem) = (PciBarSpace::new(), PciBarSpace::new());
    pio.set_fallback(bar_io.clone());
    mmio.set_fallback(bar_mem.clone());
    let (mut testdev_fn, _) = pci_testdev(2 << 3, bar_io, bar_mem);
    testdev_fn.assign(0, 0xfebf_f000);
    testdev_fn.assign(1, 0xc000);
    let mut pci = PciConfigIo::new();
    pci.add_function(0, 2, 0, Box::new(testdev_fn)).unwrap();
    pio.insert(Arc::new(Mutex::new(pci)), 0xcf8, 8).unwrap();
    pio.insert(Arc::new(Mutex::new(DebugExit::new(2))), 0x501, 2)
        .unwrap();
    pio.insert(Arc::new(Mutex::new(PostCode::new())), 0x80, 1)
        .unwrap();
    pio.insert(Arc::new(Mutex::new(PowerOffPort::new())), 0x604, 2)
        .unwrap();

    let ports: [u64; 22] = [
        0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x40, 0x43, 0x61, 0x60, 0x64, 0x70, 0x71, 0x3f8, 0x3fd,
        0xcf8, 0xcfc, 0xe0, 0xe4, 0xe8, 0x2000, 0xc000, 0xc080,
    ];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut buf = [0u8; 8];
    for _ in 0..200_000 {
        let size = [1usize, 2, 4, 8, 0, 3][rng.below(6) as usize];
        let value = rng.next().to_le_bytes();
        let r = rng.below(100);
        let (bus, addr) = if r < 60 {
            let base = ports[rng.below(ports.len() as u64) as usize];
            (&pio, base + rng.below(4))
        } else if r < 75 {
            (&mmio, LAPIC_BASE + rng.below(0x1010))
        } else if r < 80 {
            (&mmio, IOAPIC_BASE + rng.below(0x50))
        } else if r < 85 {
            let base = [0xff00_0000u64, 0xfebf_f000][rng.below(2) as usize];
            (&mmio, base + rng.below(0x1_0010))
        } else {
            (&pio, rng.below(0x10000))
        };
        if rng.below(2) == 0 {
            bus.read(addr, &mut buf[..size]);
        } else {
            let _ = bus.write(addr, &value[..size]);
        }
        match rng.below(20) {
            0 => clock.advance(rng.below(50_000_000)),
            1 => {
                let _ = serial.lock().unwrap().enqueue_input(&value[..size]);
            }
            2 => {
                let mut c = lock_chip(&chip);
                let _ = c.pending_interrupt();
                let _ = c.acknowledge();
                let _ = c.next_deadline_ns();
                let _ = c.take_nmi();
                c.set_tsc_deadline(rng.next(), rng.next());
                c.set_irq(rng.below(40) as u32, rng.below(2) == 0);
            }
            3 => {
                let mut r = rtc.lock().unwrap();
                r.poll();
                let _ = r.next_deadline_ns();
            }
            4 => lock_chip(&chip).lapic_mut().set_apic_base(rng.next()),
            _ => {}
        }
    }
}

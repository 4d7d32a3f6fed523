//! The PC devices wired together on buses the way the machine does for the
//! DBT, driven through port and MMIO accesses like a booting Linux.

use std::io::Write;
use std::sync::{Arc, Mutex};

use devices::{
    attach_i8042, attach_irqchip, lock_chip, Bus, Clock, DebugExit, GsiLine, IrqChip, IrqLine,
    ManualClock, PciConfigIo, Rtc, Serial, SharedIrqChip, VmRequest, I8042, IOAPIC_BASE,
    LAPIC_BASE,
};

#[derive(Clone, Default)]
struct Out(Arc<Mutex<Vec<u8>>>);

impl Write for Out {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct Pc {
    clock: Arc<ManualClock>,
    chip: SharedIrqChip,
    pio: Bus,
    mmio: Bus,
    serial: Arc<Mutex<Serial>>,
    rtc: Arc<Mutex<Rtc>>,
    out: Out,
}

fn line(chip: &SharedIrqChip, gsi: u32) -> Arc<dyn IrqLine> {
    Arc::new(GsiLine::new(chip.clone(), gsi))
}

fn pc() -> Pc {
    let clock = Arc::new(ManualClock::new(1_000_000_000));
    let chip = IrqChip::new(clock.clone()).into_shared();
    let mut pio = Bus::new();
    let mut mmio = Bus::new();
    attach_irqchip(&chip, &mut pio, &mut mmio).unwrap();
    let out = Out::default();
    let serial = Arc::new(Mutex::new(Serial::new(
        line(&chip, 4),
        Box::new(out.clone()),
    )));
    pio.insert(serial.clone(), 0x3f8, 8).unwrap();
    let rtc = Arc::new(Mutex::new(Rtc::with_unix_time(
        clock.clone(),
        line(&chip, 8),
        1_700_000_000,
    )));
    rtc.lock().unwrap().set_memory_size(256 << 20, 0);
    pio.insert(rtc.clone(), 0x70, 2).unwrap();
    let kbc = Arc::new(Mutex::new(I8042::new(line(&chip, 1), line(&chip, 12))));
    attach_i8042(&kbc, &mut pio).unwrap();
    pio.insert(Arc::new(Mutex::new(PciConfigIo::new())), 0xcf8, 8)
        .unwrap();
    pio.insert(Arc::new(Mutex::new(DebugExit::new(1))), 0x501, 1)
        .unwrap();
    Pc {
        clock,
        chip,
        pio,
        mmio,
        serial,
        rtc,
        out,
    }
}

impl Pc {
    fn outb(&self, port: u64, v: u8) -> Option<VmRequest> {
        self.pio.write(port, &[v])
    }
    fn inb(&self, port: u64) -> u8 {
        let mut d = [0u8];
        self.pio.read(port, &mut d);
        d[0]
    }
    fn outl(&self, port: u64, v: u32) {
        self.pio.write(port, &v.to_le_bytes());
    }
    fn inl(&self, port: u64) -> u32 {
        let mut d = [0u8; 4];
        self.pio.read(port, &mut d);
        u32::from_le_bytes(d)
    }
    fn writel(&self, addr: u64, v: u32) {
        self.mmio.write(addr, &v.to_le_bytes());
    }
    fn readl(&self, addr: u64) -> u32 {
        let mut d = [0u8; 4];
        self.mmio.read(addr, &mut d);
        u32::from_le_bytes(d)
    }
    fn pending(&self) -> Option<u8> {
        lock_chip(&self.chip).pending_interrupt()
    }
    fn ack(&self) -> Option<u8> {
        lock_chip(&self.chip).acknowledge()
    }
    fn run_until_deadline(&self) {
        let d = lock_chip(&self.chip)
            .next_deadline_ns()
            .expect("a timer is armed");
        self.clock.set(d);
    }
    fn init_pic(&self) {
        for (p, v) in [
            (0x21, 0xff),
            (0xa1, 0xff),
            (0x20, 0x11),
            (0x21, 0x30),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x38),
            (0xa1, 0x02),
            (0xa1, 0x01),
        ] {
            self.outb(p, v);
        }
    }
    fn ioapic_route(&self, pin: u32, lo: u32) {
        self.writel(IOAPIC_BASE, 0x11 + 2 * pin);
        self.writel(IOAPIC_BASE + 0x10, 0);
        self.writel(IOAPIC_BASE, 0x10 + 2 * pin);
        self.writel(IOAPIC_BASE + 0x10, lo);
    }
}

#[test]
fn legacy_pic_mode_timer_and_serial() {
    let pc = pc();
    pc.init_pic();
    pc.outb(0x21, 0xee); // unmask IRQ0 and IRQ4
    pc.outb(0x43, 0x34);
    pc.outb(0x40, 0x9c);
    pc.outb(0x40, 0x2e); // 11932: HZ=100
    pc.run_until_deadline();
    assert_eq!(pc.ack(), Some(0x30));
    pc.outb(0x20, 0x20);
    // Serial: enable RX interrupts, type a key.
    pc.outb(0x3f9, 0x01);
    assert_eq!(pc.serial.lock().unwrap().enqueue_input(b"x"), 1);
    assert_eq!(pc.pending(), Some(0x34));
    assert_eq!(pc.ack(), Some(0x34));
    assert_eq!(pc.inb(0x3fa) & 0x0f, 0x04);
    assert_eq!(pc.inb(0x3f8), b'x');
    pc.outb(0x20, 0x20);
    assert_eq!(pc.pending(), None);
    // Output.
    for b in b"ok\n" {
        pc.outb(0x3f8, *b);
    }
    assert_eq!(*pc.out.0.lock().unwrap(), b"ok\n");
}

#[test]
fn apic_mode_timer_serial_and_eoi() {
    let pc = pc();
    pc.init_pic();
    // Linux masks the i8259 and switches to the APIC.
    pc.outb(0x21, 0xff);
    pc.outb(0xa1, 0xff);
    pc.writel(LAPIC_BASE + 0xf0, 0x1ff);
    pc.writel(LAPIC_BASE + 0x350, 0x10700);
    assert_eq!(pc.readl(LAPIC_BASE + 0x30) & 0xff, 0x14);
    pc.ioapic_route(2, 0x30);
    pc.ioapic_route(4, 0x34);
    pc.outb(0x43, 0x34);
    pc.outb(0x40, 0xa9);
    pc.outb(0x40, 0x04);
    pc.run_until_deadline();
    assert_eq!(pc.ack(), Some(0x30));
    pc.writel(LAPIC_BASE + 0xb0, 0);
    // Serial THRE interrupt through IOAPIC pin 4.
    pc.outb(0x3f9, 0x02);
    assert_eq!(pc.ack(), Some(0x34));
    assert_eq!(pc.inb(0x3fa) & 0x0f, 0x02);
    pc.writel(LAPIC_BASE + 0xb0, 0);
    assert_eq!(pc.pending(), None);
    // LAPIC timer, one-shot, wins the deadline race against the PIT.
    pc.writel(LAPIC_BASE + 0x3e0, 0xb);
    pc.writel(LAPIC_BASE + 0x320, 0xec);
    pc.writel(LAPIC_BASE + 0x380, 1000);
    let now = pc.clock.now_ns();
    assert_eq!(lock_chip(&pc.chip).next_deadline_ns(), Some(now + 1000));
    pc.run_until_deadline();
    assert_eq!(pc.ack(), Some(0xec));
}

#[test]
fn rtc_cmos_pci_kbc_and_exit() {
    let pc = pc();
    pc.outb(0x70, 0x09);
    assert_eq!(pc.inb(0x71), 0x23);
    pc.outb(0x70, 0x32);
    assert_eq!(pc.inb(0x71), 0x20);
    pc.outb(0x70, 0x34);
    assert_eq!(pc.inb(0x71), 0x00);
    pc.outb(0x70, 0x35);
    assert_eq!(pc.inb(0x71), 0x0f); // (256 - 16) MiB / 64 KiB = 0x0f00
                                    // RTC update interrupt reaches the PIC as IRQ8 (vector 0x38).
    pc.init_pic();
    pc.outb(0x21, 0xfb);
    pc.outb(0xa1, 0xfe);
    pc.outb(0x70, 0x0b);
    pc.outb(0x71, 0x12);
    let d = pc.rtc.lock().unwrap().next_deadline_ns().unwrap();
    pc.clock.set(d);
    pc.rtc.lock().unwrap().poll();
    assert_eq!(pc.ack(), Some(0x38));
    pc.outb(0x70, 0x0c);
    assert_eq!(pc.inb(0x71) & 0x90, 0x90);
    // PCI: only the host bridge on bus 0.
    let mut found = Vec::new();
    for dev in 0..32u32 {
        pc.outl(0xcf8, 0x8000_0000 | dev << 11);
        let id = pc.inl(0xcfc);
        if id != 0xffff_ffff {
            found.push((dev, id));
        }
    }
    assert_eq!(found, vec![(0, 0x1237_8086)]);
    // Keyboard controller.
    pc.outb(0x64, 0xaa);
    assert_eq!(pc.inb(0x60), 0x55);
    assert_eq!(pc.outb(0x64, 0xfe), Some(VmRequest::Reset));
    assert_eq!(pc.outb(0xcf9, 0x06), Some(VmRequest::Reset));
    // isa-debug-exit.
    assert_eq!(pc.outb(0x501, 0x10), Some(VmRequest::Exit(0x21)));
    // Nothing at an unused port.
    assert_eq!(pc.inb(0x2f8), 0xff);
}

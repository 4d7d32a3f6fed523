//! The machine's interrupt plumbing.
//!
//! Under KVM the in-kernel irqchip and PIT do the work and devices drive
//! lines with `Vm::set_irq_line`. Under the DBT the machine builds the
//! userspace complex from `devices` (i8259 pair, IOAPIC, local APIC, i8254)
//! and hands it to the VM through [`ChipController`].

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use accel::{InterruptController, Startup};
use devices::irqchip::{lock_chip, SharedIrqChip};

/// Wakes a halted vCPU when a line changes.
#[derive(Default)]
struct Waker {
    generation: Mutex<u64>,
    cond: Condvar,
}

impl Waker {
    fn notify(&self) {
        if let Ok(mut g) = self.generation.lock() {
            *g = g.wrapping_add(1);
        }
        self.cond.notify_all();
    }
}

/// [`InterruptController`] over the `devices` interrupt complex.
pub struct ChipController {
    chip: SharedIrqChip,
    waker: Arc<Waker>,
}

impl ChipController {
    pub fn new(chip: SharedIrqChip) -> Arc<Self> {
        let waker = Arc::new(Waker::default());
        let w = waker.clone();
        lock_chip(&chip).set_notifier(Some(Arc::new(move || w.notify())));
        Arc::new(ChipController { chip, waker })
    }
}

impl InterruptController for ChipController {
    fn set_irq_line(&self, gsi: u32, level: bool) {
        lock_chip(&self.chip).set_irq(gsi, level);
    }
    fn pending_interrupt(&self, cpu: u32) -> Option<u8> {
        lock_chip(&self.chip).pending_interrupt_on(cpu as usize)
    }
    fn acknowledge(&self, cpu: u32) -> Option<u8> {
        lock_chip(&self.chip).acknowledge_on(cpu as usize)
    }
    fn take_nmi(&self, cpu: u32) -> bool {
        lock_chip(&self.chip).take_nmi_on(cpu as usize)
    }
    fn nmi_pending(&self, cpu: u32) -> bool {
        lock_chip(&self.chip).nmi_pending_on(cpu as usize)
    }
    fn take_startup(&self, cpu: u32) -> Option<Startup> {
        lock_chip(&self.chip)
            .take_startup(cpu as usize)
            .map(|s| match s {
                devices::lapic::Startup::Init => Startup::Init,
                devices::lapic::Startup::Sipi(v) => Startup::Sipi(v),
            })
    }
    fn startup_pending(&self, cpu: u32) -> bool {
        lock_chip(&self.chip).startup_pending(cpu as usize)
    }
    fn lapic_read(&self, cpu: u32, offset: u64, data: &mut [u8]) {
        lock_chip(&self.chip).lapic_read_on(cpu as usize, offset, data);
    }
    fn lapic_write(&self, cpu: u32, offset: u64, data: &[u8]) {
        lock_chip(&self.chip).lapic_write_on(cpu as usize, offset, data);
    }
    fn now_ns(&self) -> u64 {
        lock_chip(&self.chip).now_ns()
    }
    fn deliver_msi(&self, addr: u64, data: u32) {
        lock_chip(&self.chip).deliver_msi(addr, data);
    }
    fn next_deadline_ns(&self, cpu: u32) -> Option<u64> {
        lock_chip(&self.chip).next_deadline_ns_on(cpu as usize)
    }
    fn tpr(&self, cpu: u32) -> u8 {
        lock_chip(&self.chip).lapic_of(cpu as usize).tpr()
    }
    fn set_tpr(&self, cpu: u32, tpr: u8) {
        let mut chip = lock_chip(&self.chip);
        chip.lapic_of(cpu as usize).set_tpr(tpr);
    }
    fn apic_msr_read(&self, cpu: u32, msr: u32) -> Option<Result<u64, x86::MsrFault>> {
        let r = lock_chip(&self.chip).msr_read_on(cpu as usize, msr)?;
        Some(r.map_err(|_| x86::MsrFault))
    }
    fn apic_msr_write(
        &self,
        cpu: u32,
        msr: u32,
        value: u64,
        tsc_now: u64,
    ) -> Option<Result<(), x86::MsrFault>> {
        let r = lock_chip(&self.chip).msr_write_on(cpu as usize, msr, value, tsc_now)?;
        Some(r.map_err(|_| x86::MsrFault))
    }
    fn wait(&self, deadline_ns: Option<u64>) {
        // Lock order is chip -> generation (the notifier runs under the chip
        // lock), so read the clock before taking the generation lock.
        let start = match self.waker.generation.lock() {
            Ok(g) => *g,
            Err(_) => return,
        };
        // Never sleep unboundedly: a missed wake-up costs at most 100 ms.
        let max = Duration::from_millis(100);
        let timeout = match deadline_ns {
            Some(d) => {
                let now = self.now_ns();
                if d <= now {
                    return;
                }
                Duration::from_nanos(d - now).min(max)
            }
            None => max,
        };
        let Ok(g) = self.waker.generation.lock() else {
            return;
        };
        let _ = self
            .waker
            .cond
            .wait_timeout_while(g, timeout, |g| *g == start);
    }
    fn wake(&self) {
        self.waker.notify();
    }
}

//! The interrupt side of the virtio-pci transport: the ISR, the MSI-X
//! vectors the driver chose per queue and for configuration changes, the
//! MSI-X table, and the INTx line. It sits behind its own small lock, apart
//! from the device model's: device workers signal from their own threads
//! while a vCPU may hold the device model's lock (a notify), and neither
//! waits for the other. Lock order: this lock, then the interrupt
//! controller's (inside `MsiSink`/`IrqLine`); nothing here calls back into
//! the device model.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::msix::{MsiSink, MsixTable, NO_VECTOR};
use super::VirtioInterrupt;
use crate::bus::IrqLine;

/// ISR bit 0: a queue interrupt.
pub const ISR_QUEUE: u8 = 1;
/// ISR bit 1: a configuration change.
pub const ISR_CONFIG: u8 = 2;

struct IrqState {
    msix: MsixTable,
    config_vector: u16,
    queue_vectors: Vec<u16>,
    isr: u8,
    intx_level: bool,
    intx_disabled: bool,
    bus_master: bool,
    generation: u8,
}

/// The transport's [`VirtioInterrupt`] (shared with device workers).
pub struct VirtioPciInterrupt {
    st: Mutex<IrqState>,
    needs_reset: AtomicBool,
    msi: Arc<dyn MsiSink>,
    intx: Arc<dyn IrqLine>,
    name: String,
}

impl VirtioPciInterrupt {
    /// `vectors` MSI-X vectors, `queues` queues; `name` for the logs.
    pub fn new(
        vectors: u16,
        queues: usize,
        msi: Arc<dyn MsiSink>,
        intx: Arc<dyn IrqLine>,
        name: String,
    ) -> Self {
        Self {
            st: Mutex::new(IrqState {
                msix: MsixTable::new(vectors),
                config_vector: NO_VECTOR,
                queue_vectors: vec![NO_VECTOR; queues],
                isr: 0,
                intx_level: false,
                intx_disabled: false,
                bus_master: false,
                generation: 0,
            }),
            needs_reset: AtomicBool::new(false),
            msi,
            intx,
            name,
        }
    }

    fn lock(&self) -> MutexGuard<'_, IrqState> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Where messages go: nowhere while bus mastering is off (they stay
    /// pending until the driver enables it).
    fn sink(&self, s: &IrqState) -> Option<&dyn MsiSink> {
        s.bus_master.then_some(&*self.msi)
    }

    /// Drive INTx from the ISR (asserted while it is non-zero, MSI-X is off
    /// and the command register allows INTx).
    fn update_intx(&self, s: &mut IrqState) {
        let level = s.isr != 0 && !s.msix.enabled() && !s.intx_disabled;
        if level != s.intx_level {
            s.intx_level = level;
            log::trace!(target: "virtio", "{}: INTx {}", self.name, if level { "asserted" } else { "deasserted" });
            self.intx.set_level(level);
        }
    }

    /// Queue `queue`'s (or with `None` the configuration's) interrupt.
    fn signal(&self, queue: Option<u16>) {
        let mut s = self.lock();
        let (v, isr) = match queue {
            Some(q) => (
                s.queue_vectors
                    .get(usize::from(q))
                    .copied()
                    .unwrap_or(NO_VECTOR),
                ISR_QUEUE,
            ),
            None => (s.config_vector, ISR_CONFIG),
        };
        s.isr |= isr;
        let what = Cause(queue);
        if !s.msix.enabled() {
            self.update_intx(&mut s);
        } else if v == NO_VECTOR {
            log::trace!(target: "virtio", "{}: {what}: no MSI-X vector", self.name);
        } else {
            let sink = self.sink(&s);
            match s.msix.notify(v, sink) {
                Some((a, d)) => {
                    log::trace!(target: "virtio", "{}: {what}: MSI-X vector {v} ({a:#x} <- {d:#x})", self.name)
                }
                None => {
                    log::trace!(target: "virtio", "{}: {what}: MSI-X vector {v} masked (pending)", self.name)
                }
            }
        }
    }

    /// Reads (and clears) the ISR, deasserting INTx.
    pub fn read_isr(&self) -> u8 {
        let mut s = self.lock();
        let v = s.isr;
        s.isr = 0;
        self.update_intx(&mut s);
        v
    }

    /// The configuration generation.
    pub fn generation(&self) -> u8 {
        self.lock().generation
    }

    /// DEVICE_NEEDS_RESET is set.
    pub fn needs_reset(&self) -> bool {
        self.needs_reset.load(Ordering::SeqCst)
    }

    /// The configuration-change vector the driver set.
    pub fn config_vector(&self) -> u16 {
        self.lock().config_vector
    }

    /// Queue `q`'s vector.
    pub fn queue_vector(&self, q: u16) -> u16 {
        self.lock()
            .queue_vectors
            .get(usize::from(q))
            .copied()
            .unwrap_or(NO_VECTOR)
    }

    /// Sets the configuration vector; a vector the table lacks reads back
    /// as NO_VECTOR (how the driver learns it failed).
    pub fn set_config_vector(&self, v: u16) {
        let mut s = self.lock();
        s.config_vector = if v < s.msix.len() { v } else { NO_VECTOR };
    }

    /// Sets queue `q`'s vector (as [`Self::set_config_vector`]).
    pub fn set_queue_vector(&self, q: u16, v: u16) {
        let mut s = self.lock();
        let v = if v < s.msix.len() { v } else { NO_VECTOR };
        if let Some(x) = s.queue_vectors.get_mut(usize::from(q)) {
            *x = v;
        }
    }

    /// Device reset: ISR and vectors cleared, INTx deasserted, NEEDS_RESET
    /// off. (The MSI-X table is PCI state and stays.)
    pub fn reset(&self) {
        let mut s = self.lock();
        s.isr = 0;
        s.config_vector = NO_VECTOR;
        s.queue_vectors.fill(NO_VECTOR);
        self.needs_reset.store(false, Ordering::SeqCst);
        self.update_intx(&mut s);
    }

    /// The PCI side changed: command register (bus master, INTx disable)
    /// and the MSI-X capability's enable and function mask.
    pub fn set_pci_state(&self, bus_master: bool, intx_disabled: bool, msix: bool, fmask: bool) {
        let mut s = self.lock();
        s.bus_master = bus_master;
        s.intx_disabled = intx_disabled;
        let sink = self.sink(&s);
        s.msix.set_control(msix, fmask, sink);
        self.update_intx(&mut s);
    }

    /// Table reads and writes (the MSI-X BAR).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        self.lock().msix.read_table(offset, data);
    }

    /// See [`Self::read_table`]; unmasking may send a pending message.
    pub fn write_table(&self, offset: u64, data: &[u8]) {
        let mut s = self.lock();
        let sink = self.sink(&s);
        s.msix.write_table(offset, data, sink);
    }

    /// Pending bit array reads.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        self.lock().msix.read_pba(offset, data);
    }

    /// Machine reset: a fresh table (all vectors masked, none pending).
    pub fn reset_msix(&self) {
        let mut s = self.lock();
        let n = s.msix.len();
        s.msix = MsixTable::new(n);
    }

    /// Number of MSI-X vectors.
    pub fn vectors(&self) -> u16 {
        self.lock().msix.len()
    }
}

/// What an interrupt is for, in the logs.
struct Cause(Option<u16>);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(q) => write!(f, "queue {q}"),
            None => f.write_str("config change"),
        }
    }
}

impl VirtioInterrupt for VirtioPciInterrupt {
    fn signal_used_queue(&self, index: u16) {
        self.signal(Some(index));
    }

    fn signal_config_change(&self) {
        {
            let mut s = self.lock();
            s.generation = s.generation.wrapping_add(1);
        }
        self.signal(None);
    }

    fn set_needs_reset(&self) {
        if !self.needs_reset.swap(true, Ordering::SeqCst) {
            log::debug!(target: "virtio", "{}: DEVICE_NEEDS_RESET", self.name);
        }
        self.signal_config_change();
    }
}

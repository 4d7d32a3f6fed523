//! The monitors: QMP ([`qmp`], JSON for programs) and HMP ([`hmp`], the
//! human monitor), on the chardevs the options name. See `docs/monitor.md`.
//!
//! [`Chardevs`] opens every chardev before the machine's devices are built
//! (COM1 writes into its chardev), then [`Chardevs::start`] attaches the
//! frontends (COM1's input, the monitors) and starts the input threads.

pub mod hmp;
pub mod json;
pub mod qmp;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use vm_memory::GuestMemoryMmap;
use x86::CpuState;

use crate::chardev::backend::{Chardev, ChardevWriter, Frontend, SerialFrontend};
use crate::chardev::{ChardevConfig, MonitorMode};
use crate::control::Control;

/// Monitor output queued but not yet written (QMP writer threads).
pub static PENDING: AtomicUsize = AtomicUsize::new(0);

/// Waits (at most [`qmp::FLUSH_TIMEOUT`]) for queued monitor output to
/// reach the clients, so the last events (SHUTDOWN) are seen before hx86
/// exits.
pub fn flush() {
    let start = Instant::now();
    while PENDING.load(Ordering::SeqCst) > 0 && start.elapsed() < qmp::FLUSH_TIMEOUT {
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How long a monitor waits for a vCPU thread to answer.
const VCPU_TIMEOUT: Duration = Duration::from_secs(10);

/// [`hmp::HmpTarget`] for the monitors: CPU state is read on the vCPU's own
/// thread through [`Control::on_vcpu`], memory directly.
#[derive(Clone)]
pub struct MonitorTarget {
    pub ctl: Arc<Control>,
    pub mem: GuestMemoryMmap,
    /// The monitor's current CPU.
    pub cpu: usize,
}

impl hmp::HmpTarget for MonitorTarget {
    fn cpu_state(&mut self) -> Result<CpuState, String> {
        self.ctl
            .on_vcpu(self.cpu, VCPU_TIMEOUT, |v| {
                v.state().map_err(|e| e.to_string())
            })
            .map_err(|e| e.to_string())?
    }
    fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }
    fn control(&self) -> &Arc<Control> {
        &self.ctl
    }
}

/// The opened chardevs.
pub struct Chardevs {
    cfg: ChardevConfig,
    devs: Vec<Arc<Chardev>>,
}

impl Chardevs {
    /// Opens every chardev (creates files, binds and connects sockets; a
    /// server with `wait=on` waits for its client here).
    pub fn open(cfg: &ChardevConfig) -> Result<Chardevs> {
        let devs = cfg
            .chardevs
            .iter()
            .map(Chardev::open)
            .collect::<Result<Vec<_>>>()?;
        Ok(Chardevs {
            cfg: cfg.clone(),
            devs,
        })
    }

    fn find(&self, id: &str) -> Option<&Arc<Chardev>> {
        self.devs.iter().find(|d| d.spec.id == id)
    }

    /// The chardev `id`, for a device frontend (attach before `start`).
    pub fn get(&self, id: &str) -> Option<Arc<Chardev>> {
        self.find(id).cloned()
    }

    /// Where COM1 writes.
    pub fn serial_writer(&self) -> Box<dyn std::io::Write + Send> {
        match self.cfg.serial.as_deref().and_then(|id| self.find(id)) {
            Some(d) => Box::new(ChardevWriter(d.output())),
            None => Box::new(std::io::sink()),
        }
    }

    /// Attaches COM1 and the monitors and starts the input threads.
    pub fn start(
        &self,
        ctl: &Arc<Control>,
        mem: &GuestMemoryMmap,
        serial: &Arc<Mutex<devices::Serial>>,
    ) -> Result<()> {
        if let Some(d) = self.cfg.serial.as_deref().and_then(|id| self.find(id)) {
            d.attach(Arc::new(SerialFrontend(serial.clone())));
        }
        for m in &self.cfg.monitors {
            let Some(d) = self.find(&m.chardev) else {
                continue;
            };
            let target = MonitorTarget {
                ctl: ctl.clone(),
                mem: mem.clone(),
                cpu: 0,
            };
            let f: Arc<dyn Frontend> = match m.mode {
                MonitorMode::Control => qmp::Qmp::new(ctl.clone(), target, d.output(), m.pretty),
                MonitorMode::Readline => hmp::Readline::new(target, d.output(), d.spec.mux),
            };
            d.attach(f);
        }
        for d in &self.devs {
            d.start(ctl)?;
        }
        Ok(())
    }
}

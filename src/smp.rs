//! Running a machine with several vCPUs: one host thread per vCPU, all
//! acting on their own exits; an event that ends or resets the machine
//! (power-off, isa-debug-exit, reset, triple fault, an error) stops every
//! vCPU thread, then the machine exits or resets and starts them again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use accel::{Kicker, Vcpu, VcpuExit};
use anyhow::{anyhow, Result};
use vm_memory::GuestMemoryMmap;

use crate::control::{Cause, Control, VcpuAction};
use crate::machine::MachineConfig;

/// What stopped the vCPUs.
#[derive(Debug)]
enum Event {
    Exit(i32),
    /// A machine reset, and who asked for it.
    Reset(Cause),
    Error(String),
}

struct Shared {
    stop: AtomicBool,
    event: Mutex<Option<Event>>,
    kickers: Vec<Arc<dyn Kicker>>,
}

impl Shared {
    /// The first event wins; every vCPU is stopped.
    fn finish(&self, ev: Event) {
        if let Ok(mut e) = self.event.lock() {
            e.get_or_insert(ev);
        }
        self.stop.store(true, Ordering::SeqCst);
        for k in &self.kickers {
            k.kick();
        }
    }
}

/// Runs `vcpus` (vCPU 0 holds the boot state, the others wait for INIT and
/// a start-up IPI) until the machine exits; returns the exit status.
pub fn run(
    cfg: &MachineConfig,
    ctl: &Control,
    mut vcpus: Vec<Box<dyn Vcpu>>,
    mem: &GuestMemoryMmap,
) -> Result<i32> {
    loop {
        let shared = Shared {
            stop: AtomicBool::new(false),
            event: Mutex::new(None),
            kickers: vcpus.iter().map(|v| v.kicker()).collect(),
        };
        let shared = &shared;
        vcpus = on_vcpu_threads(ctl, vcpus.into_iter().enumerate(), |i, v| {
            vcpu_thread(cfg, ctl, i, v, shared)
        })?;
        let ev = shared
            .event
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match ev {
            Some(Event::Exit(code)) => return Ok(code),
            Some(Event::Error(e)) => return Err(anyhow!(e)),
            Some(Event::Reset(cause)) => {
                reset_all(cfg, ctl, &mut vcpus, mem)?;
                ctl.reset_done(cause);
            }
            None => {}
        }
    }
}

/// Runs `work(i, item)` for every `(i, item)` on a host thread of its own
/// (`vcpuI`, which `ctl` reports as vCPU i's thread) and returns the
/// results in order once all have ended.
pub(crate) fn on_vcpu_threads<T: Send, R: Send>(
    ctl: &Control,
    items: impl IntoIterator<Item = (usize, T)>,
    work: impl Fn(usize, T) -> R + Sync,
) -> Result<Vec<R>> {
    let work = &work;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .into_iter()
            .map(|(i, item)| {
                std::thread::Builder::new()
                    .name(format!("vcpu{i}"))
                    .spawn_scoped(s, move || {
                        ctl.set_vcpu_thread(i);
                        work(i, item)
                    })
            })
            .collect::<std::io::Result<_>>()?;
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a vCPU thread panicked")))
            .collect()
    })
}

/// Machine reset: the boot image again for vCPU 0, INIT for the others.
/// Reset requests the monitor left for other vCPUs are taken by this one.
pub(crate) fn reset_all(
    cfg: &MachineConfig,
    ctl: &Control,
    vcpus: &mut [Box<dyn Vcpu>],
    mem: &GuestMemoryMmap,
) -> Result<()> {
    crate::machine::reset(cfg, ctl, vcpus[0].as_mut(), mem)?;
    for (i, v) in vcpus.iter_mut().enumerate() {
        if i > 0 {
            v.reset_ap()
                .map_err(|e| anyhow!("resetting vCPU {i}: {e}"))?;
        }
        while ctl.checkpoint_nowait(i, v.as_mut()) == VcpuAction::Reset {}
    }
    Ok(())
}

fn vcpu_thread(
    cfg: &MachineConfig,
    ctl: &Control,
    id: usize,
    mut vcpu: Box<dyn Vcpu>,
    shared: &Shared,
) -> Box<dyn Vcpu> {
    while !shared.stop.load(Ordering::SeqCst) {
        // The monitor's requests: pause (parks here), jobs, reset, quit.
        match ctl.checkpoint(id, vcpu.as_mut()) {
            VcpuAction::Run => {}
            VcpuAction::Reset => {
                shared.finish(Event::Reset(Cause::HostQmpSystemReset));
                break;
            }
            VcpuAction::Quit(code) => {
                let cause = ctl.quit_requested().map_or(Cause::HostQmpQuit, |q| q.1);
                ctl.shutdown(cause);
                shared.finish(Event::Exit(code));
                break;
            }
        }
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let exit = match vcpu.run() {
            Ok(e) => e,
            Err(e) => {
                shared.finish(Event::Error(format!("vCPU {id}: {e}")));
                break;
            }
        };
        match exit {
            VcpuExit::GuestExit(c) => {
                ctl.shutdown(Cause::GuestShutdown);
                shared.finish(Event::Exit(c));
            }
            VcpuExit::PowerOff => {
                ctl.shutdown(Cause::GuestShutdown);
                shared.finish(Event::Exit(0));
            }
            VcpuExit::Shutdown if cfg.no_reboot => {
                let s = vcpu.state().ok();
                eprintln!(
                    "hx86: guest triple fault on vCPU {id} at {:#x}; exiting because of -no-reboot",
                    s.map_or(0, |s| s.linear_pc())
                );
                ctl.shutdown(Cause::GuestPanic);
                shared.finish(Event::Exit(1));
            }
            VcpuExit::Reset if cfg.no_reboot => {
                eprintln!("hx86: the guest requested a reset; exiting because of -no-reboot");
                ctl.shutdown(Cause::GuestReset);
                shared.finish(Event::Exit(0));
            }
            VcpuExit::Shutdown => shared.finish(Event::Reset(Cause::GuestPanic)),
            VcpuExit::Reset => shared.finish(Event::Reset(Cause::GuestReset)),
            VcpuExit::Halt => {
                // Nothing can wake this vCPU (no interrupt controller of
                // ours): it stays halted until the machine stops.
                while !shared.stop.load(Ordering::SeqCst) {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
            VcpuExit::Debug(ev) => shared.finish(Event::Error(format!(
                "vCPU {id}: unexpected debug stop {ev:?} with no debugger attached"
            ))),
            VcpuExit::Interrupted => {}
        }
    }
    vcpu
}

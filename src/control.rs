//! Machine control: the one object the monitors (QMP, HMP), the console's
//! Ctrl-A escapes and the gdb stub use to stop, continue, reset, power
//! down and quit the machine, and from which they hear about it (events).
//!
//! The vCPU side is two calls, made by the thread that owns a vCPU:
//! [`Control::add_vcpu`] once, then [`Control::checkpoint`] before every
//! `Vcpu::run` (and so after every `VcpuExit::Interrupted`). A request
//! (pause, reset, quit, a job for the vCPU) kicks every vCPU out of `run`;
//! `checkpoint` then runs the jobs queued for that vCPU, parks the thread
//! while the machine is paused, and says what to do next. Jobs
//! ([`VcpuJob`]) are how a monitor reads CPU state: the closure runs on
//! the thread that owns the vCPU, paused or running.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use accel::{Kicker, Vcpu};

/// QEMU's run states (the ones this machine has), as `query-status`
/// spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    /// `-S`: built, not started yet.
    Prelaunch,
    Running,
    /// Stopped by a monitor (`stop`).
    Paused,
    /// Stopped by the debugger.
    Debug,
    /// The guest or the host ended the run; the process is exiting.
    Shutdown,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Debug => "debug",
            RunState::Shutdown => "shutdown",
        }
    }
}

/// Why the machine shut down or reset (QEMU's `ShutdownCause`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// The guest powered off (ACPI S5, isa-debug-exit, HLT for ever).
    GuestShutdown,
    /// The guest asked for a reset (port 0xCF9, the i8042, ...).
    GuestReset,
    /// A triple fault.
    GuestPanic,
    /// QMP `quit` or HMP `quit`.
    HostQmpQuit,
    /// QMP `system_reset` or HMP `system_reset`.
    HostQmpSystemReset,
    /// The console's Ctrl-A x.
    HostUi,
    /// An emulator error or the debugger ended the run.
    HostError,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::GuestShutdown => "guest-shutdown",
            Cause::GuestReset => "guest-reset",
            Cause::GuestPanic => "guest-panic",
            Cause::HostQmpQuit => "host-qmp-quit",
            Cause::HostQmpSystemReset => "host-qmp-system-reset",
            Cause::HostUi => "host-ui",
            Cause::HostError => "host-error",
        }
    }

    pub fn guest(self) -> bool {
        matches!(
            self,
            Cause::GuestShutdown | Cause::GuestReset | Cause::GuestPanic
        )
    }
}

/// What subscribers hear (QMP events of the same names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Stop,
    Resume,
    Reset(Cause),
    Shutdown(Cause),
    Powerdown,
}

/// Work for a vCPU, run on the thread that owns it.
pub type VcpuJob = Box<dyn FnOnce(&mut dyn Vcpu) + Send>;

/// What [`Control::checkpoint`] tells the vCPU thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuAction {
    /// Run the vCPU.
    Run,
    /// Reset the machine, then call `checkpoint` again.
    Reset,
    /// Stop running: hx86 exits with this status.
    Quit(i32),
}

/// A monitor request that cannot be done in the current state.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("Resetting the Virtual Machine is required")]
    ShutDown,
    #[error("CPU {0} does not exist")]
    NoCpu(usize),
    #[error("the vCPU thread did not answer (it has stopped)")]
    NoAnswer,
    #[error("this machine has no power button")]
    NoPowerButton,
}

struct VcpuSlot {
    kicker: Arc<dyn Kicker>,
    /// The host thread running it (`query-cpus-fast`'s thread-id).
    thread_id: i64,
    jobs: VecDeque<VcpuJob>,
    /// Set by `reset`, cleared by this vCPU's checkpoint.
    reset: bool,
}

struct State {
    run: RunState,
    vcpus: Vec<VcpuSlot>,
    quit: Option<(i32, Cause)>,
}

type Subscriber = Arc<dyn Fn(&Event) + Send + Sync>;

/// The machine's run state and the requests on it; shared by `Arc`.
pub struct Control {
    st: Mutex<State>,
    cv: Condvar,
    /// Fast path of `checkpoint`: false while running with nothing queued.
    attention: AtomicBool,
    subscribers: Mutex<Vec<Subscriber>>,
    power_button: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// What `info pci` prints (set by the machine).
    pci_info: OnceLock<Box<dyn Fn() -> String + Send + Sync>>,
    /// What resets the devices on a machine reset (set by the machine).
    device_reset: OnceLock<Box<dyn Fn() + Send + Sync>>,
    /// The accelerator's name (`query-kvm`, `info status`).
    accel: OnceLock<String>,
}

impl Control {
    /// A machine that starts running, or waits in `prelaunch` (`-S`).
    pub fn new(start_stopped: bool) -> Arc<Control> {
        let run = if start_stopped {
            RunState::Prelaunch
        } else {
            RunState::Running
        };
        Arc::new(Control {
            st: Mutex::new(State {
                run,
                vcpus: Vec::new(),
                quit: None,
            }),
            cv: Condvar::new(),
            attention: AtomicBool::new(start_stopped),
            subscribers: Mutex::new(Vec::new()),
            power_button: OnceLock::new(),
            pci_info: OnceLock::new(),
            device_reset: OnceLock::new(),
            accel: OnceLock::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.st.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn emit(&self, ev: Event) {
        let subs: Vec<Subscriber> = self
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for s in subs {
            s(&ev);
        }
    }

    /// Recomputes the fast-path flag (with the state locked).
    fn update_attention(&self, st: &State) {
        let busy = st.run != RunState::Running
            || st.quit.is_some()
            || st.vcpus.iter().any(|v| v.reset || !v.jobs.is_empty());
        self.attention.store(busy, Ordering::SeqCst);
    }

    fn kick_all(&self, st: &State) {
        for v in &st.vcpus {
            v.kicker.kick();
        }
    }

    /// Calls `f` for every event from now on. `f` runs on the thread that
    /// caused the event (a vCPU thread, a monitor): it must not block.
    pub fn subscribe(&self, f: impl Fn(&Event) + Send + Sync + 'static) {
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::new(f));
    }

    /// What presses the ACPI power button (set by the machine).
    pub fn set_power_button(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.power_button.set(Box::new(f));
    }

    /// What describes the PCI bus for `info pci` (set by the machine).
    pub fn set_pci_info(&self, f: impl Fn() -> String + Send + Sync + 'static) {
        let _ = self.pci_info.set(Box::new(f));
    }

    /// The PCI bus as `info pci` shows it.
    pub fn pci_info(&self) -> Option<String> {
        self.pci_info.get().map(|f| f())
    }

    /// What resets the devices on a machine reset (set by the machine).
    pub fn set_device_reset(&self, f: impl Fn() + Send + Sync + 'static) {
        let _ = self.device_reset.set(Box::new(f));
    }

    /// Resets the devices (before the boot image is loaded again, so no
    /// device writes into the new boot's memory).
    pub fn reset_devices(&self) {
        if let Some(f) = self.device_reset.get() {
            f();
        }
    }

    pub fn set_accel(&self, name: &str) {
        let _ = self.accel.set(name.to_string());
    }

    pub fn accel(&self) -> &str {
        self.accel.get().map(|s| s.as_str()).unwrap_or("none")
    }

    /// Registers a vCPU; call it from the thread that will run it. Returns
    /// its index (the `cpu-index` monitors use).
    /// The calling thread runs vCPU `i` from now on (`query-cpus-fast`
    /// reports it); vCPUs start on the thread that added them.
    pub fn set_vcpu_thread(&self, i: usize) {
        let tid = gettid();
        if let Some(v) = self.lock().vcpus.get_mut(i) {
            v.thread_id = tid;
        }
    }

    pub fn add_vcpu(&self, kicker: Arc<dyn Kicker>) -> usize {
        let tid = gettid();
        let mut st = self.lock();
        st.vcpus.push(VcpuSlot {
            kicker,
            thread_id: tid,
            jobs: VecDeque::new(),
            reset: false,
        });
        st.vcpus.len() - 1
    }

    pub fn state(&self) -> RunState {
        self.lock().run
    }

    /// `(cpu-index, host thread id)` of every vCPU.
    pub fn vcpus(&self) -> Vec<(usize, i64)> {
        self.lock()
            .vcpus
            .iter()
            .enumerate()
            .map(|(i, v)| (i, v.thread_id))
            .collect()
    }

    /// `stop`: pauses a running machine (kicking every vCPU out of `run`).
    /// Stopping a machine that is not running changes nothing.
    pub fn stop(&self) {
        self.stop_as(RunState::Paused);
    }

    /// Stops into `state` (`Paused`, or `Debug` for the debugger).
    pub fn stop_as(&self, state: RunState) {
        {
            let mut st = self.lock();
            if st.run != RunState::Running {
                return;
            }
            st.run = state;
            self.update_attention(&st);
            self.kick_all(&st);
        }
        self.emit(Event::Stop);
    }

    /// `cont`: runs a machine that is paused or waits in prelaunch.
    pub fn cont(&self) -> Result<(), ControlError> {
        {
            let mut st = self.lock();
            match st.run {
                RunState::Running => return Ok(()),
                RunState::Shutdown => return Err(ControlError::ShutDown),
                _ => {}
            }
            st.run = RunState::Running;
            self.update_attention(&st);
        }
        self.cv.notify_all();
        self.emit(Event::Resume);
        Ok(())
    }

    /// `system_reset`: every vCPU resets at its next checkpoint (a paused
    /// machine resets and stays paused, as QEMU's does).
    pub fn system_reset(&self) -> Result<(), ControlError> {
        {
            let mut st = self.lock();
            if st.run == RunState::Shutdown {
                return Err(ControlError::ShutDown);
            }
            for v in st.vcpus.iter_mut() {
                v.reset = true;
            }
            self.update_attention(&st);
            self.kick_all(&st);
        }
        self.cv.notify_all();
        Ok(())
    }

    /// Called by the vCPU loop after it reset the machine: the RESET event.
    pub fn reset_done(&self, cause: Cause) {
        self.emit(Event::Reset(cause));
    }

    /// `system_powerdown`: presses the ACPI power button.
    pub fn system_powerdown(&self) -> Result<(), ControlError> {
        if self.state() == RunState::Shutdown {
            return Err(ControlError::ShutDown);
        }
        let Some(press) = self.power_button.get() else {
            return Err(ControlError::NoPowerButton);
        };
        press();
        self.emit(Event::Powerdown);
        Ok(())
    }

    /// `quit`: the vCPU loops return `VcpuAction::Quit(code)`.
    pub fn quit(&self, code: i32, cause: Cause) {
        {
            let mut st = self.lock();
            if st.quit.is_none() {
                st.quit = Some((code, cause));
            }
            self.update_attention(&st);
            self.kick_all(&st);
        }
        self.cv.notify_all();
    }

    /// The quit request, if any: `(status, cause)`.
    pub fn quit_requested(&self) -> Option<(i32, Cause)> {
        self.lock().quit
    }

    /// The run is over (the vCPU loop returned): the SHUTDOWN event.
    /// Only the first call emits it.
    pub fn shutdown(&self, cause: Cause) {
        {
            let mut st = self.lock();
            if st.run == RunState::Shutdown {
                return;
            }
            st.run = RunState::Shutdown;
            self.update_attention(&st);
            for v in st.vcpus.iter_mut() {
                v.jobs.clear();
            }
        }
        self.cv.notify_all();
        self.emit(Event::Shutdown(cause));
    }

    /// Runs `job` on vCPU `idx`'s thread (at its next checkpoint) and
    /// returns what it returned. Waits at most `timeout`.
    pub fn on_vcpu<T: Send + 'static>(
        &self,
        idx: usize,
        timeout: Duration,
        job: impl FnOnce(&mut dyn Vcpu) -> T + Send + 'static,
    ) -> Result<T, ControlError> {
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let mut st = self.lock();
            if st.run == RunState::Shutdown {
                return Err(ControlError::NoAnswer);
            }
            let Some(v) = st.vcpus.get_mut(idx) else {
                return Err(ControlError::NoCpu(idx));
            };
            v.jobs.push_back(Box::new(move |vcpu: &mut dyn Vcpu| {
                let _ = tx.send(job(vcpu));
            }));
            let kicker = v.kicker.clone();
            // The flag first: a vCPU kicked out of `run` must see the job
            // at its checkpoint, or it runs on without it.
            self.update_attention(&st);
            kicker.kick();
        }
        self.cv.notify_all();
        rx.recv_timeout(timeout).map_err(|_| ControlError::NoAnswer)
    }

    /// The vCPU thread's side: call before every `Vcpu::run`. Runs the
    /// jobs queued for vCPU `idx`, parks while the machine is not running,
    /// and says what to do.
    pub fn checkpoint(&self, idx: usize, vcpu: &mut dyn Vcpu) -> VcpuAction {
        self.checkpoint_with(idx, vcpu, true)
    }

    /// [`Control::checkpoint`] without parking: a paused machine returns
    /// `Run` too (the gdb stub, which decides itself when the CPU runs,
    /// checks [`Control::state`] afterwards).
    pub fn checkpoint_nowait(&self, idx: usize, vcpu: &mut dyn Vcpu) -> VcpuAction {
        self.checkpoint_with(idx, vcpu, false)
    }

    fn checkpoint_with(&self, idx: usize, vcpu: &mut dyn Vcpu, park: bool) -> VcpuAction {
        if !self.attention.load(Ordering::SeqCst) {
            return VcpuAction::Run;
        }
        let mut st = self.lock();
        loop {
            let job = st.vcpus.get_mut(idx).and_then(|v| v.jobs.pop_front());
            if let Some(job) = job {
                drop(st);
                job(vcpu);
                st = self.lock();
                continue;
            }
            if let Some((code, _)) = st.quit {
                return VcpuAction::Quit(code);
            }
            if let Some(v) = st.vcpus.get_mut(idx) {
                if v.reset {
                    v.reset = false;
                    self.update_attention(&st);
                    return VcpuAction::Reset;
                }
            }
            if st.run == RunState::Running || !park {
                self.update_attention(&st);
                return VcpuAction::Run;
            }
            st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// The calling thread's host thread ID.
fn gettid() -> i64 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use accel::{GuestDebug, VcpuExit};
    use x86::CpuState;

    struct NoKick;
    impl Kicker for NoKick {
        fn kick(&self) {}
    }

    struct FakeVcpu(u64);
    impl Vcpu for FakeVcpu {
        fn state(&mut self) -> accel::Result<CpuState> {
            let mut s = CpuState::reset();
            s.rip = self.0;
            Ok(s)
        }
        fn set_state(&mut self, _: &CpuState) -> accel::Result<()> {
            Ok(())
        }
        fn run(&mut self) -> accel::Result<VcpuExit> {
            Ok(VcpuExit::Interrupted)
        }
        fn set_guest_debug(&mut self, _: &GuestDebug) -> accel::Result<()> {
            Ok(())
        }
        fn kicker(&self) -> Arc<dyn Kicker> {
            Arc::new(NoKick)
        }
    }

    #[test]
    fn stop_parks_and_cont_releases_with_events() {
        let c = Control::new(false);
        let events = Arc::new(Mutex::new(Vec::new()));
        let e2 = events.clone();
        c.subscribe(move |e| e2.lock().unwrap().push(*e));
        let idx = c.add_vcpu(Arc::new(NoKick));
        let mut v = FakeVcpu(0x1234);
        assert_eq!(c.checkpoint(idx, &mut v), VcpuAction::Run);
        c.stop();
        assert_eq!(c.state(), RunState::Paused);
        let c2 = c.clone();
        let t = std::thread::spawn(move || {
            let mut v = FakeVcpu(0x1234);
            c2.checkpoint(0, &mut v)
        });
        // A job runs on the parked thread.
        let rip = c
            .on_vcpu(0, Duration::from_secs(30), |v| v.state().unwrap().rip)
            .unwrap();
        assert_eq!(rip, 0x1234);
        c.cont().unwrap();
        assert_eq!(t.join().unwrap(), VcpuAction::Run);
        c.system_reset().unwrap();
        assert_eq!(c.checkpoint(0, &mut v), VcpuAction::Reset);
        c.quit(0, Cause::HostQmpQuit);
        assert_eq!(c.checkpoint(0, &mut v), VcpuAction::Quit(0));
        c.shutdown(Cause::HostQmpQuit);
        c.shutdown(Cause::GuestShutdown);
        assert!(c.cont().is_err());
        assert_eq!(
            *events.lock().unwrap(),
            [
                Event::Stop,
                Event::Resume,
                Event::Shutdown(Cause::HostQmpQuit)
            ]
        );
    }

    #[test]
    fn prelaunch_waits_for_cont() {
        let c = Control::new(true);
        assert_eq!(c.state(), RunState::Prelaunch);
        c.stop();
        assert_eq!(c.state(), RunState::Prelaunch);
        c.cont().unwrap();
        let mut v = FakeVcpu(0);
        assert_eq!(c.checkpoint(0, &mut v), VcpuAction::Run);
    }
}

//! Running the vCPUs for the debugger: all of them in parallel, one host
//! thread each (the calling thread when only one runs), until the first
//! one stops on something the debugger or the machine must act on; then
//! the others are kicked out of `run` too (all-stop). Before each run a
//! vCPU serves the machine control (`Control::checkpoint_nowait`: the
//! monitors' jobs); a reset or quit request, or a paused machine, ends
//! the run of every vCPU.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accel::{Kicker, Vcpu, VcpuExit};
use anyhow::{anyhow, Result};
use vm_memory::GuestMemoryMmap;

use super::conn::Inbox;
use super::target::{HxTarget, Resume, StopReason};
use crate::control::{Cause, Control, RunState, VcpuAction};
use crate::machine::{self, MachineConfig};

/// Kicks every vCPU of the machine.
pub struct KickAll(pub Vec<Arc<dyn Kicker>>);

impl Kicker for KickAll {
    fn kick(&self) {
        for k in &self.0 {
            k.kick();
        }
    }
}

impl KickAll {
    pub fn of(vcpus: &[Box<dyn Vcpu>]) -> Arc<dyn Kicker> {
        Arc::new(KickAll(vcpus.iter().map(|v| v.kicker()).collect()))
    }
}

/// A vCPU to run (its index) and whether it single-steps.
pub type Lane = (usize, bool);

/// How a [`race`] ended.
pub struct Finish {
    /// The vCPU that stopped first and why; `None` when no vCPU stopped
    /// (`poll`, a machine control request or a paused machine ended the
    /// run).
    pub first: Option<(usize, VcpuExit)>,
    /// What the other vCPUs ran into while they were being stopped.
    pub others: Vec<(usize, VcpuExit)>,
    /// The machine control asked for a reset (a vCPU took the request).
    pub reset: bool,
    /// The machine control asked hx86 to quit with this status.
    pub quit: Option<i32>,
}

/// What the vCPUs of one race share.
struct Race<'c> {
    stop: AtomicBool,
    first: Mutex<Option<usize>>,
    reset: AtomicBool,
    quit: Mutex<Option<i32>>,
    kick: KickAll,
    ctl: &'c Control,
}

impl Race<'_> {
    fn finish(&self, who: Option<usize>) {
        if let Some(i) = who {
            let mut f = self.first.lock().unwrap_or_else(|e| e.into_inner());
            f.get_or_insert(i);
        }
        self.stop.store(true, Ordering::SeqCst);
        self.kick.kick();
    }

    /// The machine control's side before a run: the vCPU's jobs, and
    /// whether the run must end (a reset or quit request, a paused
    /// machine).
    fn control(&self, i: usize, vcpu: &mut dyn Vcpu) -> bool {
        match self.ctl.checkpoint_nowait(i, vcpu) {
            VcpuAction::Reset => self.reset.store(true, Ordering::SeqCst),
            VcpuAction::Quit(code) => {
                let mut q = self.quit.lock().unwrap_or_else(|e| e.into_inner());
                q.get_or_insert(code);
            }
            VcpuAction::Run => {
                return self.ctl.state() != RunState::Running;
            }
        }
        true
    }
}

/// Runs one vCPU until it exits with something other than a kick; `None`
/// when the run was stopped (by another vCPU, `poll` or the machine
/// control). A vCPU that halts with nothing to wake it waits there unless
/// it is stepping.
fn lane(
    i: usize,
    vcpu: &mut dyn Vcpu,
    step: bool,
    race: &Race<'_>,
    poll: &(dyn Fn() -> bool + Sync),
    on_halt: &(dyn Fn(usize, &mut dyn Vcpu) + Sync),
) -> Option<accel::Result<VcpuExit>> {
    let mut halted = false;
    loop {
        if race.stop.load(Ordering::SeqCst) {
            return None;
        }
        if race.control(i, vcpu) || poll() {
            race.finish(None);
            return None;
        }
        if halted {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        match vcpu.run() {
            Ok(VcpuExit::Interrupted) => {}
            Ok(VcpuExit::Halt) if !step => {
                on_halt(i, vcpu);
                halted = true;
            }
            r => {
                race.finish(Some(i));
                return Some(r);
            }
        }
    }
}

/// Runs the vCPUs of `lanes` until the first one stops (see [`Finish`]).
pub fn race(
    ctl: &Control,
    vcpus: &mut [Box<dyn Vcpu>],
    lanes: &[Lane],
    poll: &(dyn Fn() -> bool + Sync),
    on_halt: &(dyn Fn(usize, &mut dyn Vcpu) + Sync),
) -> Result<Finish> {
    let race = Race {
        stop: AtomicBool::new(false),
        first: Mutex::new(None),
        reset: AtomicBool::new(false),
        quit: Mutex::new(None),
        kick: KickAll(
            lanes
                .iter()
                .filter_map(|&(i, _)| vcpus.get(i).map(|v| v.kicker()))
                .collect(),
        ),
        ctl,
    };
    let mut results: Vec<(usize, Option<accel::Result<VcpuExit>>)> = Vec::new();
    if let [(i, step)] = *lanes {
        let v = vcpus.get_mut(i).ok_or_else(|| anyhow!("no vCPU {i}"))?;
        results.push((i, lane(i, v.as_mut(), step, &race, poll, on_halt)));
    } else {
        let race = &race;
        let chosen = vcpus
            .iter_mut()
            .enumerate()
            .filter_map(|(i, v)| Some((i, (lanes.iter().find(|l| l.0 == i)?.1, v))));
        results = crate::smp::on_vcpu_threads(ctl, chosen, |i, (step, v)| {
            (i, lane(i, v.as_mut(), step, race, poll, on_halt))
        })?;
    }
    let first = *race.first.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Finish {
        first: None,
        others: Vec::new(),
        reset: race.reset.load(Ordering::SeqCst),
        quit: *race.quit.lock().unwrap_or_else(|e| e.into_inner()),
    };
    for (i, r) in results {
        let Some(r) = r else { continue };
        let exit = r.map_err(|e| anyhow!("vCPU {i}: {e}"))?;
        if first == Some(i) {
            out.first = Some((i, exit));
        } else {
            out.others.push((i, exit));
        }
    }
    Ok(out)
}

/// What serving the machine control's requests did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    Nothing,
    /// The machine was reset (every vCPU).
    Reset,
    /// hx86 quits with this status (SHUTDOWN was emitted).
    Quit(i32),
}

/// Acts on the machine control's requests a race ended on.
pub fn control_requests(
    cfg: &MachineConfig,
    ctl: &Control,
    vcpus: &mut [Box<dyn Vcpu>],
    mem: &GuestMemoryMmap,
    fin: &Finish,
) -> Result<Served> {
    if let Some(code) = fin.quit {
        quit(ctl);
        return Ok(Served::Quit(code));
    }
    if fin.reset {
        crate::smp::reset_all(cfg, ctl, vcpus, mem)?;
        ctl.reset_done(Cause::HostQmpSystemReset);
        return Ok(Served::Reset);
    }
    Ok(Served::Nothing)
}

/// The machine control's quit request is carried out: SHUTDOWN, with the
/// cause the request gave.
fn quit(ctl: &Control) {
    ctl.shutdown(ctl.quit_requested().map_or(Cause::HostQmpQuit, |q| q.1));
}

/// Serves the machine control while no vCPU runs: the jobs queued for
/// every vCPU, a reset, quit.
pub fn serve_stopped(
    cfg: &MachineConfig,
    ctl: &Control,
    vcpus: &mut [Box<dyn Vcpu>],
    mem: &GuestMemoryMmap,
) -> Result<Served> {
    let mut served = Served::Nothing;
    for i in 0..vcpus.len() {
        match ctl.checkpoint_nowait(i, vcpus[i].as_mut()) {
            VcpuAction::Quit(code) => {
                quit(ctl);
                return Ok(Served::Quit(code));
            }
            VcpuAction::Reset => {
                crate::smp::reset_all(cfg, ctl, vcpus, mem)?;
                ctl.reset_done(Cause::HostQmpSystemReset);
                served = Served::Reset;
            }
            VcpuAction::Run => {}
        }
    }
    Ok(served)
}

/// Acts on a machine event (power-off, reset, guest exit) that vCPU `i`
/// ran into: `Some(status)` when hx86 exits. A reset resets every vCPU.
pub fn machine_event(
    cfg: &MachineConfig,
    ctl: &Control,
    vcpus: &mut [Box<dyn Vcpu>],
    i: usize,
    mem: &GuestMemoryMmap,
    exit: VcpuExit,
) -> Result<Option<i32>> {
    if vcpus.len() > 1 && !cfg.no_reboot && matches!(exit, VcpuExit::Shutdown | VcpuExit::Reset) {
        log::debug!(target: "cpu_reset", "vCPU {i}: {exit:?}: resetting the machine");
        let cause = match exit {
            VcpuExit::Shutdown => Cause::GuestPanic,
            _ => Cause::GuestReset,
        };
        crate::smp::reset_all(cfg, ctl, vcpus, mem)?;
        ctl.reset_done(cause);
        return Ok(None);
    }
    machine::handle_exit(cfg, ctl, vcpus[i].as_mut(), mem, exit)
}

/// What happened while the guest ran.
pub enum RunEvent {
    Stop(StopReason),
    CtrlC,
    Exited(i32),
    Closed,
}

/// Runs the vCPUs as gdb's resume actions say (continue, step, or stay
/// stopped) until something gdb must hear about; the vCPU it is about
/// becomes the current one.
pub fn run_guest(t: &mut HxTarget<'_>, inbox: &Inbox) -> Result<RunEvent> {
    t.resumed = false;
    let default = t.default_action;
    let mut lanes: Vec<Lane> = t
        .cpus
        .iter_mut()
        .enumerate()
        .filter_map(|(i, c)| c.action.take().or(default).map(|a| (i, a == Resume::Step)))
        .collect();
    if lanes.is_empty() {
        lanes.push((t.cur, false));
    }
    // Unless a vCPU stops, reports (Ctrl-C) name the thread gdb had.
    let selected = t.cur;
    let r = run_selected(t, inbox, &lanes);
    if matches!(r, Ok(RunEvent::CtrlC)) {
        t.cur = selected;
    }
    r
}

fn run_selected(t: &mut HxTarget<'_>, inbox: &Inbox, lanes: &[Lane]) -> Result<RunEvent> {
    if let Some((i, exit)) = t.machine_pending.take() {
        if let Some(code) = machine_event(t.cfg, &t.ctl, t.vcpus, i, &t.mem, exit)? {
            return Ok(RunEvent::Exited(code));
        }
        t.forget_stops();
    }
    // A breakpoint hit kept from the last run is reported first.
    for &(i, step) in lanes {
        if step {
            t.cpus[i].pending = None;
        } else if let Some(ev) = t.take_pending(i) {
            t.cur = i;
            return Ok(RunEvent::Stop(t.stop_reason(ev, false)));
        }
    }
    // A guest INT3 a vCPU stopped on is handed to the guest with that
    // vCPU alone.
    if lanes.len() > 1 {
        for &(i, step) in lanes {
            t.cur = i;
            if t.on_foreign_int3() {
                match run_lanes(t, inbox, &[(i, true)])? {
                    RunEvent::Stop(StopReason::DoneStep) if !step => {}
                    ev => return Ok(ev),
                }
            }
        }
    }
    run_lanes(t, inbox, lanes)
}

fn run_lanes(t: &mut HxTarget<'_>, inbox: &Inbox, lanes: &[Lane]) -> Result<RunEvent> {
    let soft = t.soft_watching();
    t.watch_map_reset();
    let mut pre_step = vec![false; t.vcpus.len()];
    for &(i, step) in lanes {
        t.cur = i;
        pre_step[i] = t.prepare_run(step || soft).map_err(|e| anyhow!(e.0))?;
    }
    let step_of = |i: usize| lanes.iter().any(|&(j, s)| j == i && s);
    let several = t.vcpus.len() > 1;
    let halt_note = AtomicBool::new(false);
    let on_halt = |i: usize, _: &mut dyn Vcpu| {
        if !halt_note.swap(true, Ordering::SeqCst) {
            let who = match several {
                true => format!("vCPU {i}"),
                false => "the guest".into(),
            };
            eprintln!(
                "hx86: gdb: {who} halted with nothing to wake it; interrupt it from gdb (Ctrl-C)"
            );
        }
    };
    let poll = || {
        let st = inbox.lock();
        st.closed || st.bytes.contains(&0x03)
    };
    let ctl = t.ctl.clone();
    // The debugger's continue or step runs the machine (RESUME).
    let _ = ctl.cont();
    loop {
        {
            let mut st = inbox.lock();
            // Only the interrupt byte means something while the guest runs.
            let ctrl_c = st.bytes.contains(&0x03);
            st.bytes.clear();
            if ctrl_c {
                return Ok(RunEvent::CtrlC);
            }
            if st.closed {
                return Ok(RunEvent::Closed);
            }
            // A monitor's stop ends the run as the debugger's Ctrl-C
            // would.
            if ctl.state() != RunState::Running {
                return Ok(RunEvent::CtrlC);
            }
            st.running = true;
        }
        // Watched memory before the step, for watchpoints by stepping.
        let mut pres = Vec::new();
        for &(i, _) in lanes {
            if soft && !pre_step[i] {
                t.cur = i;
                pres.push((i, t.watch_pre()));
            }
        }
        let r = race(&ctl, t.vcpus, lanes, &poll, &on_halt);
        inbox.lock().running = false;
        t.invalidate();
        let r = r?;
        // A monitor's quit or system_reset; what the vCPUs ran into
        // before a reset is void.
        match control_requests(t.cfg, &ctl, t.vcpus, &t.mem, &r)? {
            Served::Quit(code) => return Ok(RunEvent::Exited(code)),
            Served::Reset => {
                t.forget_stops();
                continue;
            }
            Served::Nothing => {}
        }
        for (j, exit) in r.others {
            match exit {
                VcpuExit::Debug(_) if pre_step[j] => {
                    pre_step[j] = false;
                    t.cur = j;
                    t.prepare_run(step_of(j) || soft)
                        .map_err(|e| anyhow!(e.0))?;
                }
                VcpuExit::Debug(ev) => t.cpus[j].pending = Some(ev),
                VcpuExit::Interrupted | VcpuExit::Halt => {}
                other => {
                    t.machine_pending.get_or_insert((j, other));
                }
            }
        }
        // Nothing stopped: the debugger interrupted (see above).
        let Some((i, exit)) = r.first else { continue };
        t.cur = i;
        let want_step = step_of(i);
        match exit {
            VcpuExit::Interrupted => continue,
            VcpuExit::Debug(ev) => {
                if pre_step[i] {
                    // The guest's own INT3 was handed to it.
                    pre_step[i] = false;
                    if want_step {
                        return Ok(RunEvent::Stop(StopReason::DoneStep));
                    }
                    t.prepare_run(soft).map_err(|e| anyhow!(e.0))?;
                    continue;
                }
                if let Some((_, pre)) = pres.iter().find(|p| p.0 == i) {
                    // Watched bytes this step did not access changed: the
                    // hit is another vCPU's whose step accessed them (its
                    // exit may have been taken over by the kick).
                    let writer = pres
                        .iter()
                        .find(|(j, p)| *j != i && HxTarget::watch_touched(p));
                    if let (false, Some((j, pj))) = (HxTarget::watch_touched(pre), writer) {
                        t.cur = *j;
                        if let Some(r) = t.watch_post(pj) {
                            return Ok(RunEvent::Stop(r));
                        }
                        t.cur = i;
                    }
                    if let Some(r) = t.watch_post(pre) {
                        return Ok(RunEvent::Stop(r));
                    }
                    if ev == accel::DebugEvent::SingleStep && !want_step {
                        continue;
                    }
                }
                return Ok(RunEvent::Stop(t.stop_reason(ev, want_step)));
            }
            // A step over HLT ends there (other vCPUs wait in `race`).
            VcpuExit::Halt => return Ok(RunEvent::Stop(StopReason::DoneStep)),
            other => {
                if let Some(code) = machine_event(t.cfg, &ctl, t.vcpus, i, &t.mem, other)? {
                    return Ok(RunEvent::Exited(code));
                }
                t.forget_stops();
                // The machine was reset: a step ends at the reset vector.
                if let Some(&(j, _)) = lanes.iter().find(|l| l.1) {
                    t.cur = j;
                    return Ok(RunEvent::Stop(StopReason::DoneStep));
                }
            }
        }
    }
}

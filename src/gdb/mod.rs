//! The gdb remote stub (`-gdb DEV`, `-s`, `-S`).
//!
//! The vCPU thread runs the machine and, while a debugger is attached, the
//! gdbstub state machine: a reader thread queues the bytes the debugger
//! sends and kicks the vCPU out of `run` when they arrive while the guest
//! runs (that is how Ctrl-C stops it). A second thread accepts
//! connections, hands the first to the vCPU thread and refuses the others
//! while one is attached. See `docs/gdb.md` for the user's view.
//!
//! Files: [`conn`] (listening, the socket, packet framing), [`arch`] (the
//! register file for gdbstub), [`target`] (the gdbstub target: registers,
//! memory, breakpoints, execution), [`mem`] (physical memory, page walks),
//! [`monitor`] (`monitor` commands).

mod arch;
mod conn;
pub(crate) mod mem;
mod monitor;
mod probe;
mod target;
mod watch;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use accel::{Vcpu, VcpuExit};
use anyhow::{anyhow, Result};
use gdbstub::common::Signal;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, SingleThreadStopReason};
use vm_memory::GuestMemoryMmap;

use crate::control::{Cause, Control, RunState, VcpuAction};
use crate::machine::{self, MachineConfig};
use conn::{Conn, Inbox, Input, PacketFilter, Stream};
use target::{HxTarget, Request, Resume};

pub use conn::{parse_listen, ListenAddr};

/// The debugger options.
#[derive(Clone, Debug)]
pub struct GdbOptions {
    pub listen: ListenAddr,
    /// `-S`: do not run the guest before a debugger says so.
    pub start_stopped: bool,
}

/// How a debugging session ended.
enum End {
    /// The debugger detached or went away: the guest runs on.
    Detach,
    /// hx86 exits with this status.
    Exit(i32),
}

/// Kicks the vCPU and wakes it when it is parked by the machine control
/// (`-S`, or paused by a monitor), so a new debugger is noticed.
struct WakeKicker {
    vcpu: Arc<dyn accel::Kicker>,
    ctl: Arc<Control>,
}

impl accel::Kicker for WakeKicker {
    fn kick(&self) {
        self.vcpu.kick();
        self.ctl.poke();
    }
}

/// Runs the machine with the gdb server listening.
pub fn run(
    cfg: &MachineConfig,
    ctl: &Arc<Control>,
    opts: &GdbOptions,
    accel: &str,
    vcpu: &mut dyn Vcpu,
    mem: &GuestMemoryMmap,
) -> Result<i32> {
    let listener = conn::Listener::bind(&opts.listen)?;
    let where_ = listener.describe();
    eprintln!(
        "hx86: gdb: listening on {} ({})",
        match &opts.listen {
            ListenAddr::Tcp { .. } => format!("tcp:{where_}"),
            ListenAddr::Unix(_) => format!("unix:{where_}"),
        },
        if opts.start_stopped {
            "the CPU waits for the debugger or a monitor's cont"
        } else {
            "the CPU is running"
        }
    );
    let presence = Arc::new(conn::Presence::default());
    let (tx, rx) = mpsc::channel::<Stream>();
    let wake = Arc::new(WakeKicker {
        vcpu: vcpu.kicker(),
        ctl: ctl.clone(),
    });
    conn::spawn_acceptor(listener, tx, presence.clone(), wake);

    let mut next: Option<Stream> = None;
    loop {
        if let Some(stream) = next.take() {
            let end = session(cfg, ctl, accel, vcpu, mem, stream, presence.clone());
            presence.busy.store(false, Ordering::SeqCst);
            match end? {
                End::Exit(code) => return Ok(code),
                End::Detach => {
                    eprintln!("hx86: gdb: debugger detached; the guest runs on");
                    let _ = ctl.cont();
                }
            }
            continue;
        }
        // The machine control: a paused machine (-S, a monitor's stop)
        // parks here until it runs again or a debugger connects.
        if let Some(code) = machine::control_point(cfg, ctl, 0, vcpu, mem)? {
            return Ok(code);
        }
        if let Ok(s) = rx.try_recv() {
            next = Some(s);
            continue;
        }
        if ctl.state() != RunState::Running {
            continue;
        }
        let exit = vcpu.run().map_err(|e| anyhow!("vCPU 0: {e}"))?;
        match exit {
            VcpuExit::Interrupted => {
                if let Ok(s) = rx.try_recv() {
                    next = Some(s);
                }
            }
            VcpuExit::Halt => {
                let s = vcpu.state().map_err(|e| anyhow!("{e}"))?;
                eprintln!(
                    "hx86: the guest halted with nothing to wake it (rip={:#x}); waiting for a debugger",
                    s.rip
                );
                next = Some(
                    rx.recv()
                        .map_err(|_| anyhow!("gdb: the listener stopped"))?,
                );
            }
            // With no debugger attached nothing asked for debug stops; one
            // left over from a session that just ended is ignored.
            VcpuExit::Debug(ev) => log::debug!(target: "gdb", "debug stop {ev:?} ignored"),
            other => {
                if let Some(code) = machine::handle_exit(cfg, ctl, vcpu, mem, other)? {
                    return Ok(code);
                }
            }
        }
    }
}

/// One debugger connection, from attach to detach.
fn session(
    cfg: &MachineConfig,
    ctl: &Arc<Control>,
    accel: &str,
    vcpu: &mut dyn Vcpu,
    mem: &GuestMemoryMmap,
    stream: Stream,
    presence: Arc<conn::Presence>,
) -> Result<End> {
    let caps = probe::caps(accel);
    if !caps.data_watch {
        eprintln!(
            "hx86: gdb: {accel} cannot stop on data accesses here: watchpoints single-step the guest (slower)"
        );
    }
    if !caps.int3 {
        eprintln!(
            "hx86: gdb: {accel} cannot stop on INT3 here: breakpoints and watchpoints share the 4 debug registers"
        );
    }
    let stream = Arc::new(stream);
    let (inbox, reader) = conn::spawn_reader(stream.clone(), vcpu.kicker(), presence);
    let conn = Conn::new(stream);
    // The debugger holds the CPU: stopped for the monitors (a machine in
    // prelaunch stays there until the debugger's continue).
    ctl.stop_as(RunState::Debug);
    let mut target = HxTarget::new(vcpu, mem.clone(), cfg, ctl.clone(), caps);
    let end = drive(&mut target, &conn, &inbox);
    target.detach();
    conn.shutdown();
    let _ = reader.join();
    end
}

type Sm<'a> = GdbStubStateMachine<'a, HxTarget<'a>, Conn>;

fn new_stub<'a>(target: &mut HxTarget<'a>, conn: &Conn) -> Result<Sm<'a>> {
    let stub = GdbStub::<HxTarget<'a>, Conn>::builder(conn.clone())
        .packet_buffer_size(conn::MAX_PACKET + 64)
        .build()
        .map_err(|e| anyhow!("gdb: {e:?}"))?;
    stub.run_state_machine(target)
        .map_err(|e| anyhow!("gdb: starting the session: {e}"))
}

/// How often a stopped session looks at the machine control's requests.
const IDLE_POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// Waits for the next unit of input while the target is stopped; `None`
/// when the client went away or `idle` (run every [`IDLE_POLL`] without
/// input) returned true.
fn next_input(
    inbox: &Inbox,
    filter: &mut PacketFilter,
    idle: &mut dyn FnMut() -> bool,
) -> Option<Input> {
    let mut st = inbox.lock();
    loop {
        while let Some(b) = st.bytes.pop_front() {
            if let Some(i) = filter.push(b) {
                return Some(i);
            }
        }
        if st.closed {
            return None;
        }
        st = match inbox.cond.wait_timeout(st, IDLE_POLL) {
            Ok((g, _)) => g,
            Err(e) => e.into_inner().0,
        };
        if st.bytes.is_empty() && !st.closed {
            drop(st);
            if idle() {
                return None;
            }
            st = inbox.lock();
        }
    }
}

/// While the debugger holds the CPU stopped: the monitors' requests (jobs
/// such as `info registers`, a reset, quit). True when hx86 must quit
/// (`t.request` says with which status).
fn serve_control(t: &mut HxTarget<'_>) -> bool {
    let ctl = t.ctl.clone();
    match ctl.checkpoint_nowait(0, &mut *t.vcpu) {
        VcpuAction::Quit(code) => {
            ctl.shutdown(ctl.quit_requested().map_or(Cause::HostQmpQuit, |q| q.1));
            t.request = Some(Request::Quit(code));
            true
        }
        VcpuAction::Reset => {
            if let Err(e) = machine::reset(t.cfg, &mut *t.vcpu, &t.mem) {
                log::warn!(target: "gdb", "system_reset: {e:#}");
            }
            t.invalidate();
            ctl.reset_done(Cause::HostQmpSystemReset);
            false
        }
        VcpuAction::Run | VcpuAction::Poked => false,
    }
}

/// What happened while the guest ran.
enum RunEvent {
    Stop(SingleThreadStopReason<u64>),
    CtrlC,
    Exited(i32),
    Closed,
}

/// Runs the vCPU for a `continue` or `stepi` until something gdb must
/// hear about.
fn run_guest(t: &mut HxTarget<'_>, inbox: &Inbox) -> Result<RunEvent> {
    let want_step = t.resume == Some(Resume::Step);
    t.resume = None;
    let soft = t.soft_watching();
    t.watch_map_reset();
    let mut halted_note = false;
    let mut pre_step = t.prepare_run(want_step || soft).map_err(|e| anyhow!(e.0))?;
    // The debugger's continue or step runs the machine (RESUME).
    let _ = t.ctl.cont();
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
            st.running = true;
        }
        let pre = (soft && !pre_step).then(|| t.watch_pre());
        let exit = t.vcpu.run();
        inbox.lock().running = false;
        t.invalidate();
        let exit = exit.map_err(|e| anyhow!("vCPU 0: {e}"))?;
        match exit {
            VcpuExit::Interrupted => {
                // A monitor's request: quit, reset, a job; its stop ends
                // the run as the debugger's Ctrl-C would.
                match t.ctl.clone().checkpoint_nowait(0, &mut *t.vcpu) {
                    VcpuAction::Quit(code) => {
                        let cause = t.ctl.quit_requested().map_or(Cause::HostQmpQuit, |q| q.1);
                        t.ctl.shutdown(cause);
                        return Ok(RunEvent::Exited(code));
                    }
                    VcpuAction::Reset => {
                        machine::reset(t.cfg, &mut *t.vcpu, &t.mem)?;
                        t.invalidate();
                        t.ctl.reset_done(Cause::HostQmpSystemReset);
                    }
                    VcpuAction::Run | VcpuAction::Poked => {}
                }
                t.invalidate();
                if t.ctl.state() != RunState::Running {
                    return Ok(RunEvent::CtrlC);
                }
                continue;
            }
            VcpuExit::Debug(ev) => {
                if pre_step {
                    // The guest's own INT3 was handed to it.
                    pre_step = false;
                    if want_step {
                        return Ok(RunEvent::Stop(SingleThreadStopReason::DoneStep));
                    }
                    t.prepare_run(soft).map_err(|e| anyhow!(e.0))?;
                    continue;
                }
                if let Some(pre) = &pre {
                    if let Some(r) = t.watch_post(pre) {
                        return Ok(RunEvent::Stop(r));
                    }
                    if ev == accel::DebugEvent::SingleStep && !want_step {
                        continue;
                    }
                }
                return Ok(RunEvent::Stop(t.stop_reason(ev, want_step)));
            }
            // A step over HLT ends there.
            VcpuExit::Halt if want_step => {
                return Ok(RunEvent::Stop(SingleThreadStopReason::DoneStep))
            }
            VcpuExit::Halt => {
                if !halted_note {
                    eprintln!("hx86: gdb: the guest halted with nothing to wake it; interrupt it from gdb (Ctrl-C)");
                    halted_note = true;
                }
                let mut st = inbox.lock();
                while st.bytes.is_empty() && !st.closed {
                    st = inbox.cond.wait(st).unwrap_or_else(|e| e.into_inner());
                }
            }
            other => {
                let ctl = t.ctl.clone();
                if let Some(code) = machine::handle_exit(t.cfg, &ctl, &mut *t.vcpu, &t.mem, other)?
                {
                    return Ok(RunEvent::Exited(code));
                }
                t.invalidate();
                // The machine was reset: a step ends at the reset vector.
                if want_step {
                    return Ok(RunEvent::Stop(SingleThreadStopReason::DoneStep));
                }
            }
        }
    }
}

/// Feeds a complete unit of input to the stub.
fn feed<'a>(sm: Sm<'a>, t: &mut HxTarget<'a>, bytes: &[u8]) -> std::result::Result<Sm<'a>, String> {
    let mut sm = sm;
    for &b in bytes {
        sm = match sm {
            GdbStubStateMachine::Idle(i) => i.incoming_data(t, b).map_err(|e| format!("{e:?}"))?,
            GdbStubStateMachine::Running(i) => {
                i.incoming_data(t, b).map_err(|e| format!("{e:?}"))?
            }
            other => return Ok(other),
        };
    }
    Ok(sm)
}

/// The session loop: gdbstub's state machine, driven by the debugger's
/// bytes and the vCPU's exits.
fn drive<'a>(t: &mut HxTarget<'a>, conn: &Conn, inbox: &Inbox) -> Result<End> {
    let mut filter = PacketFilter::new();
    // The client's qSupported, replayed into a restarted stub.
    let mut features: Option<Vec<u8>> = None;
    let mut sm = new_stub(t, conn)?;
    loop {
        if let Some(Request::Quit(code)) = t.request {
            eprintln!("hx86: gdb: quit requested from the monitor");
            return Ok(End::Exit(code));
        }
        sm = match sm {
            GdbStubStateMachine::Idle(inner) => {
                let Some(input) = next_input(inbox, &mut filter, &mut || serve_control(t)) else {
                    if let Some(Request::Quit(code)) = t.request {
                        eprintln!("hx86: gdb: quit requested from a monitor");
                        return Ok(End::Exit(code));
                    }
                    eprintln!("hx86: gdb: the debugger went away");
                    return Ok(End::Detach);
                };
                let bytes = match input {
                    Input::Forward(b) => b,
                    Input::Nak => {
                        let _ = conn.send_raw(b"-");
                        sm = GdbStubStateMachine::Idle(inner);
                        continue;
                    }
                    Input::Retransmit => {
                        let _ = conn.retransmit();
                        sm = GdbStubStateMachine::Idle(inner);
                        continue;
                    }
                    Input::TooLong => {
                        let _ = conn.send_raw(b"+");
                        let _ = conn.send_packet(b"E01");
                        sm = GdbStubStateMachine::Idle(inner);
                        continue;
                    }
                };
                if bytes.starts_with(b"$qSupported") {
                    features = Some(bytes.clone());
                }
                let fed = feed(GdbStubStateMachine::Idle(inner), t, &bytes);
                if conn.clone().flush_pending().is_err() {
                    return Ok(End::Detach);
                }
                // gdbstub (without extended mode) leaves `vKill` unanswered,
                // and gdb waits for its OK before it lets go.
                if bytes.starts_with(b"$vKill")
                    && matches!(fed, Ok(GdbStubStateMachine::Disconnected(_)))
                {
                    let _ = conn.send_packet(b"OK");
                }
                match fed {
                    Ok(next) => next,
                    Err(e) => {
                        // gdbstub gave up on this packet (a malformed
                        // command): answer with an error and carry on with
                        // a fresh stub in the same (stopped) state.
                        log::warn!(target: "gdb", "packet {:?} refused: {e}", String::from_utf8_lossy(&bytes));
                        if conn.send_raw(b"+").is_err() || conn.send_packet(b"E01").is_err() {
                            return Ok(End::Detach);
                        }
                        let mut fresh = new_stub(t, conn)?;
                        if let Some(f) = &features {
                            conn.set_mute(true);
                            let r = feed(fresh, t, f);
                            conn.set_mute(false);
                            fresh = match r {
                                Ok(s) => s,
                                Err(_) => new_stub(t, conn)?,
                            };
                        }
                        fresh
                    }
                }
            }
            GdbStubStateMachine::Running(inner) => match run_guest(t, inbox)? {
                ev @ (RunEvent::Stop(_) | RunEvent::CtrlC) => {
                    t.ctl.stop_as(RunState::Debug);
                    match ev {
                        RunEvent::Stop(reason) => match inner.report_stop(t, reason) {
                            Ok(s) => s,
                            Err(_) => return Ok(End::Detach),
                        },
                        _ => match inner.incoming_data(t, 0x03) {
                            Ok(s) => s,
                            Err(_) => return Ok(End::Detach),
                        },
                    }
                }
                RunEvent::Exited(code) => {
                    let _ = inner.report_stop(t, SingleThreadStopReason::Exited(code as u8));
                    return Ok(End::Exit(code));
                }
                RunEvent::Closed => {
                    eprintln!("hx86: gdb: the debugger went away");
                    return Ok(End::Detach);
                }
            },
            GdbStubStateMachine::CtrlCInterrupt(inner) => {
                t.invalidate();
                match inner
                    .interrupt_handled(t, Some(SingleThreadStopReason::Signal(Signal::SIGINT)))
                {
                    Ok(s) => s,
                    Err(_) => return Ok(End::Detach),
                }
            }
            GdbStubStateMachine::Disconnected(inner) => {
                return Ok(match inner.get_reason() {
                    DisconnectReason::Disconnect => End::Detach,
                    DisconnectReason::Kill => {
                        eprintln!("hx86: gdb: killed by the debugger");
                        End::Exit(0)
                    }
                    DisconnectReason::TargetExited(c) => End::Exit(c as i32),
                    DisconnectReason::TargetTerminated(_) => End::Exit(1),
                });
            }
        };
    }
}

//! The gdb remote stub (`-gdb DEV`, `-s`, `-S`).
//!
//! The machine's thread runs the vCPUs ([`run`]: one host thread each
//! while they run, all stopped when one stops) and, while a debugger is
//! attached, the gdbstub state machine, with one gdb thread per vCPU: a
//! reader thread queues the bytes the debugger sends and kicks the vCPUs
//! out of `run` when they arrive while the guest runs (that is how Ctrl-C
//! stops it). A second thread accepts connections, hands the first to the
//! machine's thread and refuses the others while one is attached. See
//! `docs/gdb.md` for the user's view.
//!
//! Files: [`conn`] (listening, the socket, packet framing), [`arch`] (the
//! register file for gdbstub), [`target`] (the gdbstub target: memory,
//! breakpoints, execution), [`threads`] (registers, memory and resume
//! actions per gdb thread), [`run`] (running the vCPUs), [`mem`]
//! (physical memory, page walks), [`monitor`] (`monitor` commands).

mod arch;
mod conn;
pub(crate) mod mem;
mod monitor;
mod probe;
mod run;
mod target;
mod threads;
mod watch;

use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;

use accel::{Vcpu, VcpuExit};
use anyhow::{anyhow, Result};
use devices::dma::GuestRam;
use gdbstub::common::Signal;
use gdbstub::stub::state_machine::GdbStubStateMachine;
use gdbstub::stub::{DisconnectReason, GdbStub, MultiThreadStopReason};

use crate::control::{Control, RunState};
use crate::machine::MachineConfig;
use conn::{Conn, Inbox, Input, PacketFilter, Stream};
use run::{race, run_guest, KickAll, RunEvent, Served};
use target::{HxTarget, Request, StopReason};

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

/// Runs the machine with the gdb server listening.
pub fn run(
    cfg: &MachineConfig,
    ctl: &Arc<Control>,
    opts: &GdbOptions,
    accel: &str,
    vcpus: &mut [Box<dyn Vcpu>],
    ram: &GuestRam,
) -> Result<i32> {
    let mem = ram.memory();
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
    // A new debugger kicks every vCPU out of `run`; a paused machine
    // notices it within IDLE_POLL.
    conn::spawn_acceptor(listener, tx, presence.clone(), KickAll::of(vcpus));

    let several = vcpus.len() > 1;
    let mut next: Option<Stream> = None;
    loop {
        if let Some(stream) = next.take() {
            let end = session(cfg, ctl, accel, vcpus, ram, stream, presence.clone());
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
        // The machine control while no vCPU runs: the monitors' jobs, a
        // reset, quit.
        if let Served::Quit(code) = run::serve_stopped(cfg, ctl, vcpus, mem)? {
            return Ok(code);
        }
        // A paused machine (-S, a monitor's stop) waits here until it runs
        // again or a debugger connects.
        if ctl.state() != RunState::Running {
            if let Ok(s) = rx.recv_timeout(IDLE_POLL) {
                next = Some(s);
            }
            continue;
        }
        if let Ok(s) = rx.try_recv() {
            next = Some(s);
            continue;
        }
        // Without a debugger the vCPUs run until one connects.
        let lanes: Vec<run::Lane> = (0..vcpus.len()).map(|i| (i, false)).collect();
        let on_halt = |i: usize, v: &mut dyn Vcpu| {
            let rip = v.state().map_or(0, |s| s.rip);
            let who = match several {
                true => format!("vCPU {i}"),
                false => "the guest".into(),
            };
            eprintln!(
                "hx86: {who} halted with nothing to wake it (rip={rip:#x}); waiting for a debugger"
            );
        };
        let attach = || presence.busy.load(Ordering::SeqCst);
        let fin = race(ctl, vcpus, &lanes, &attach, &on_halt)?;
        if let Served::Quit(code) = run::control_requests(cfg, ctl, vcpus, mem, &fin)? {
            return Ok(code);
        }
        // A machine event another vCPU ran into meanwhile is not lost.
        let first = match fin.first {
            Some((_, VcpuExit::Debug(_))) | None => fin
                .others
                .into_iter()
                .find(|(_, e)| !matches!(e, VcpuExit::Debug(_)))
                .or(fin.first),
            first => first,
        };
        match first {
            None => {}
            // With no debugger attached nothing asked for debug stops; one
            // left over from a session that just ended is ignored.
            Some((_, VcpuExit::Debug(ev))) => {
                log::debug!(target: "gdb", "debug stop {ev:?} ignored")
            }
            Some((i, other)) => {
                if let Some(code) = run::machine_event(cfg, ctl, vcpus, i, mem, other)? {
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
    vcpus: &mut [Box<dyn Vcpu>],
    ram: &GuestRam,
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
    let (inbox, reader) = conn::spawn_reader(stream.clone(), KickAll::of(vcpus), presence);
    let conn = Conn::new(stream);
    // The debugger holds the CPU: stopped for the monitors (a machine in
    // prelaunch stays there until the debugger's continue).
    ctl.stop_as(RunState::Debug);
    let mut target = HxTarget::new(vcpus, ram.clone(), cfg, ctl.clone(), caps);
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
/// such as `info registers`, a reset, quit) for every vCPU. True when
/// hx86 must quit (`t.request` says with which status).
fn serve_control(t: &mut HxTarget<'_>) -> bool {
    let ctl = t.ctl.clone();
    match run::serve_stopped(t.cfg, &ctl, t.vcpus, &t.mem) {
        Ok(Served::Quit(code)) => {
            t.request = Some(Request::Quit(code));
            true
        }
        Ok(Served::Reset) => {
            // gdb's view of every vCPU is stale.
            t.forget_stops();
            false
        }
        Ok(Served::Nothing) => false,
        Err(e) => {
            log::warn!(target: "gdb", "system_reset: {e:#}");
            t.forget_stops();
            false
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
                        RunEvent::Stop(reason) => {
                            match inner.report_stop(t, with_thread(t, reason)) {
                                Ok(s) => s,
                                Err(_) => return Ok(End::Detach),
                            }
                        }
                        _ => match inner.incoming_data(t, 0x03) {
                            Ok(s) => s,
                            Err(_) => return Ok(End::Detach),
                        },
                    }
                }
                RunEvent::Exited(code) => {
                    let _ = inner.report_stop(t, MultiThreadStopReason::Exited(code as u8));
                    return Ok(End::Exit(code));
                }
                RunEvent::Closed => {
                    eprintln!("hx86: gdb: the debugger went away");
                    return Ok(End::Detach);
                }
            },
            GdbStubStateMachine::CtrlCInterrupt(inner) => {
                t.invalidate();
                let stop = MultiThreadStopReason::SignalWithThread {
                    tid: HxTarget::tid(t.cur),
                    signal: Signal::SIGINT,
                };
                match inner.interrupt_handled(t, Some(stop)) {
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

/// A stop as gdb is told: the end of a step names its vCPU's thread.
fn with_thread(t: &HxTarget<'_>, r: StopReason) -> StopReason {
    match r {
        StopReason::DoneStep => StopReason::SignalWithThread {
            tid: HxTarget::tid(t.cur),
            signal: Signal::SIGTRAP,
        },
        other => other,
    }
}

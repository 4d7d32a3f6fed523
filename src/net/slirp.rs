//! User-mode networking with libslirp, the library QEMU's `-netdev user`
//! uses (through the `libslirp` crate over the system's libslirp).
//!
//! Each user network runs one thread (`slirp-ID`) that owns the libslirp
//! instance and runs its poll loop: the sockets libslirp opens for the
//! guest's connections, its timers, and an eventfd the card's worker
//! writes when it hands over frames the guest sent. Frames libslirp sends
//! to the guest go to the card's [`FrameSink`]. The guest's connections
//! are ordinary sockets of the hx86 process, so the guest reaches exactly
//! what the host user can. `hostfwd` ports are bound before the machine
//! starts: a port in use is an error at start-up.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::ffi::CString;
use std::net::Ipv6Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::{anyhow, bail, Context as _, Result};
use devices::virtio::net::{FrameSink, NetBackend};
use libslirp::{Context, Handler, PollEvents};

use crate::config::net::{HostFwd, UserNet};

/// Frames from the guest waiting for the slirp thread; more are dropped
/// (TCP resends them).
const MAX_QUEUED: usize = 1024;

/// What the card and the slirp thread share.
struct Shared {
    to_slirp: Mutex<VecDeque<Vec<u8>>>,
    sink: Mutex<Option<FrameSink>>,
    wake: OwnedFd,
    stop: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to the eventfd we own;
        // a full counter (EAGAIN) already means "wake up".
        unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) };
    }

    fn drain_wake(&self) {
        let mut b = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer from the
        // non-blocking eventfd we own.
        unsafe { libc::read(self.wake.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
    }
}

/// A running user network: the card's [`NetBackend`].
pub struct SlirpNet {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl SlirpNet {
    /// Starts the user network `u` (binding its `hostfwd` ports).
    pub fn start(u: &UserNet) -> Result<Self> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            bail!(
                "netdev {}: eventfd: {}",
                u.id,
                std::io::Error::last_os_error()
            );
        }
        let shared = Arc::new(Shared {
            to_slirp: Mutex::new(VecDeque::new()),
            sink: Mutex::new(None),
            // SAFETY: `fd` is a new descriptor nothing else owns.
            wake: unsafe { OwnedFd::from_raw_fd(fd) },
            stop: AtomicBool::new(false),
        });
        let (ready_tx, ready_rx) = mpsc::channel();
        let (s, opts) = (shared.clone(), u.clone());
        let name = if u.id.is_empty() {
            "slirp".into()
        } else {
            format!("slirp-{}", u.id)
        };
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(s, opts, ready_tx))
            .context("starting the user network thread")?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Self {
                shared,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(anyhow!("netdev {}: the user network failed to start", u.id))
            }
        }
    }
}

impl NetBackend for SlirpNet {
    fn send(&mut self, frame: &[u8]) {
        let mut q = self
            .shared
            .to_slirp
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_QUEUED {
            log::debug!(target: "virtio", "slirp: frame from the guest dropped ({MAX_QUEUED} waiting)");
            return;
        }
        q.push_back(frame.to_vec());
        drop(q);
        self.shared.wake();
    }

    fn set_sink(&mut self, sink: Option<FrameSink>) {
        *self.shared.sink.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    }
}

impl Drop for SlirpNet {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A libslirp timer: when it fires (ms on [`State::now_ms`]'s clock) and
/// what it calls.
struct Timer {
    expire: Cell<Option<i64>>,
    func: RefCell<Option<Box<dyn FnMut()>>>,
}

/// The slirp thread's side of the callbacks.
struct State {
    shared: Arc<Shared>,
    start: Instant,
    timers: Vec<Rc<Timer>>,
}

impl State {
    fn now_ns(&self) -> i64 {
        i64::try_from(self.start.elapsed().as_nanos()).unwrap_or(i64::MAX)
    }
}

impl Handler for State {
    type Timer = Rc<Timer>;

    fn clock_get_ns(&mut self) -> i64 {
        self.now_ns()
    }

    fn send_packet(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let sink = self
            .shared
            .sink
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(sink) = sink {
            sink(buf.to_vec());
        }
        Ok(buf.len())
    }

    fn register_poll_fd(&mut self, _fd: i32) {}

    fn unregister_poll_fd(&mut self, _fd: i32) {}

    fn guest_error(&mut self, msg: &str) {
        log::debug!(target: "guest_errors", "slirp: {msg}");
    }

    fn notify(&mut self) {}

    fn timer_new(&mut self, func: Box<dyn FnMut()>) -> Box<Rc<Timer>> {
        let t = Rc::new(Timer {
            expire: Cell::new(None),
            func: RefCell::new(Some(func)),
        });
        self.timers.push(t.clone());
        Box::new(t)
    }

    fn timer_mod(&mut self, timer: &mut Box<Rc<Timer>>, expire_time: i64) {
        timer.expire.set(Some(expire_time));
    }

    fn timer_free(&mut self, timer: Box<Rc<Timer>>) {
        self.timers.retain(|t| !Rc::ptr_eq(t, &timer));
    }
}

fn cstring(what: &str, s: &Option<String>) -> Result<Option<CString>> {
    s.as_ref()
        .map(|s| CString::new(s.as_str()).with_context(|| format!("{what}: a NUL byte")))
        .transpose()
}

fn add_hostfwd(ctx: &Context<Rc<RefCell<State>>>, f: &HostFwd) -> Result<()> {
    // SAFETY: `ctx.inner.context` is the live libslirp instance this
    // thread owns; the addresses are passed by value.
    let r = unsafe {
        libslirp_sys::slirp_add_hostfwd(
            ctx.inner.context,
            i32::from(f.udp),
            f.host_addr.into(),
            i32::from(f.host_port),
            f.guest_addr.into(),
            i32::from(f.guest_port),
        )
    };
    if r < 0 {
        let err = std::io::Error::last_os_error();
        bail!(
            "hostfwd={}:{}:{}-{}:{}: cannot listen on {}:{} ({err})",
            if f.udp { "udp" } else { "tcp" },
            f.host_addr,
            f.host_port,
            f.guest_addr,
            f.guest_port,
            f.host_addr,
            f.host_port
        );
    }
    Ok(())
}

fn to_poll(e: PollEvents) -> libc::c_short {
    let mut p = 0;
    for (has, bit) in [
        (e.has_in(), libc::POLLIN),
        (e.has_out(), libc::POLLOUT),
        (e.has_pri(), libc::POLLPRI),
        (e.has_err(), libc::POLLERR),
        (e.has_hup(), libc::POLLHUP),
    ] {
        if has {
            p |= bit;
        }
    }
    p
}

fn from_poll(p: libc::c_short) -> PollEvents {
    let mut e = PollEvents::empty();
    for (bit, ev) in [
        (libc::POLLIN, PollEvents::poll_in()),
        (libc::POLLOUT, PollEvents::poll_out()),
        (libc::POLLPRI, PollEvents::poll_pri()),
        (libc::POLLERR | libc::POLLNVAL, PollEvents::poll_err()),
        (libc::POLLHUP, PollEvents::poll_hup()),
    ] {
        if p & bit != 0 {
            e |= ev;
        }
    }
    e
}

/// Creates the libslirp instance with `u`'s addresses and forwards.
fn create(state: Rc<RefCell<State>>, u: &UserNet) -> Result<Context<Rc<RefCell<State>>>> {
    let what = format!("-netdev user,id={}", u.id);
    let hostname = cstring(&what, &u.hostname)?;
    let v6 = |last: u16| Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, last);
    let config = libslirp_sys::SlirpConfig {
        version: 2,
        restricted: i32::from(u.restrict),
        in_enabled: u.ipv4,
        vnetwork: u.net.into(),
        vnetmask: u.mask.into(),
        vhost: u.host.into(),
        in6_enabled: u.ipv6,
        vprefix_addr6: v6(0).into(),
        vprefix_len: 64,
        vhost6: v6(2).into(),
        vhostname: hostname.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
        tftp_server_name: std::ptr::null(),
        tftp_path: std::ptr::null(),
        bootfile: std::ptr::null(),
        vdhcp_start: u.dhcp_start.into(),
        vnameserver: u.dns.into(),
        vnameserver6: v6(3).into(),
        vdnssearch: std::ptr::null_mut(),
        vdomainname: std::ptr::null(),
        if_mtu: 0,
        if_mru: 0,
        disable_host_loopback: false,
        enable_emu: false,
        outbound_addr: std::ptr::null(),
        outbound_addr6: std::ptr::null(),
        disable_dns: false,
        disable_dhcp: false,
    };
    // libslirp copies the strings: `hostname` may go after this call.
    let ctx = Context::new_with_config(&config, state);
    for f in &u.hostfwd {
        add_hostfwd(&ctx, f).with_context(|| what.clone())?;
    }
    Ok(ctx)
}

/// The slirp thread: sets up, reports, then polls until stopped.
fn run(shared: Arc<Shared>, u: UserNet, ready: mpsc::Sender<Result<()>>) {
    let state = Rc::new(RefCell::new(State {
        shared: shared.clone(),
        start: Instant::now(),
        timers: Vec::new(),
    }));
    let ctx = match create(state.clone(), &u) {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let mut fds: Vec<libc::pollfd> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let frames: Vec<Vec<u8>> = shared
            .to_slirp
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for f in &frames {
            ctx.input(f);
        }
        fds.clear();
        fds.push(libc::pollfd {
            fd: shared.wake.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        });
        let mut timeout: u32 = 1000;
        ctx.pollfds_fill(&mut timeout, |fd, ev| {
            fds.push(libc::pollfd {
                fd,
                events: to_poll(ev),
                revents: 0,
            });
            (fds.len() - 1) as i32
        });
        let now_ms = state.borrow().now_ns() / 1_000_000;
        let next = state
            .borrow()
            .timers
            .iter()
            .filter_map(|t| t.expire.get())
            .min();
        if let Some(next) = next {
            timeout = timeout.min(u32::try_from((next - now_ms).max(0)).unwrap_or(u32::MAX));
        }
        let timeout = i32::try_from(timeout).unwrap_or(i32::MAX);
        // SAFETY: `fds` is a live, initialised array of `fds.len()` pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        ctx.pollfds_poll(r < 0, |idx| {
            usize::try_from(idx)
                .ok()
                .and_then(|i| fds.get(i))
                .map_or(PollEvents::empty(), |p| from_poll(p.revents))
        });
        if fds[0].revents != 0 {
            shared.drain_wake();
        }
        fire_timers(&state);
    }
}

/// Calls the timers that are due (without holding the state: a timer's
/// callback goes back into libslirp, which may call the handler).
fn fire_timers(state: &Rc<RefCell<State>>) {
    let now_ms = state.borrow().now_ns() / 1_000_000;
    let due: Vec<Rc<Timer>> = state
        .borrow()
        .timers
        .iter()
        .filter(|t| t.expire.get().is_some_and(|e| e <= now_ms))
        .cloned()
        .collect();
    for t in due {
        t.expire.set(None);
        let f = t.func.borrow_mut().take();
        if let Some(mut f) = f {
            f();
            *t.func.borrow_mut() = Some(f);
        }
    }
}

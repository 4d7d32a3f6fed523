//! Interrupting a vCPU thread that sits in `KVM_RUN`.
//!
//! A kick sets a pending flag and sends a real-time signal to the thread that
//! is inside [`crate::Vcpu::run`]; the signal makes `KVM_RUN` return `EINTR`.
//! A signal that lands between the flag check and the ioctl would be lost, so
//! the kicker repeats it (every 2 ms, for up to one second) until the vCPU
//! thread has seen the flag.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use crate::{Error, Kicker, Result};

/// The signal used for kicks (SIGRTMIN + 1; glibc reserves the first ones).
fn kick_signal() -> i32 {
    libc::SIGRTMIN() + 1
}

extern "C" fn noop_handler(_: i32, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

pub(super) fn install_signal_handler() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut res = Ok(());
    ONCE.call_once(|| {
        // SAFETY: an all-zero sigaction is a valid starting value; we then
        // set a handler that does nothing (async-signal-safe) and no
        // SA_RESTART, so an interrupted KVM_RUN returns EINTR.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = noop_handler as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(kick_signal(), &sa, std::ptr::null_mut()) != 0 {
                res = Err(Error::Unavailable(format!(
                    "cannot install the vCPU kick signal handler: {}",
                    std::io::Error::last_os_error()
                )));
            }
        }
    });
    res
}

/// Kicks a vCPU out of `KVM_RUN`.
pub struct KvmKicker {
    pending: AtomicBool,
    running: AtomicBool,
    thread: AtomicU64,
}

/// Marks the vCPU as inside `run` for as long as it lives.
pub(super) struct Running<'a>(&'a KvmKicker);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::SeqCst);
    }
}

impl KvmKicker {
    pub(super) fn new() -> Self {
        KvmKicker {
            pending: AtomicBool::new(false),
            running: AtomicBool::new(false),
            thread: AtomicU64::new(0),
        }
    }

    pub(super) fn enter(&self) -> Running<'_> {
        // SAFETY: pthread_self has no preconditions.
        let me = unsafe { libc::pthread_self() };
        self.thread.store(me as u64, Ordering::SeqCst);
        self.running.store(true, Ordering::SeqCst);
        Running(self)
    }

    pub(super) fn take_pending(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }
}

impl Kicker for KvmKicker {
    fn kick(&self) {
        self.pending.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.pending.load(Ordering::SeqCst)
            && self.running.load(Ordering::SeqCst)
            && Instant::now() < deadline
        {
            let t = self.thread.load(Ordering::SeqCst) as libc::pthread_t;
            // SAFETY: `t` is the thread currently inside `run` (running is
            // true), so it is alive; the signal has a no-op handler installed.
            unsafe {
                libc::pthread_kill(t, kick_signal());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

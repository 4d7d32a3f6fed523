//! Running generated code on the host: shared mappings at fixed addresses
//! and a forked child per sequence.

/// A shared anonymous mapping at a fixed address (visible to the children
/// the parent forks, so they can leave their results there).
pub struct Shared {
    ptr: *mut u8,
    len: usize,
}

impl Shared {
    /// Maps `len` bytes at `addr` (which must be free).
    pub fn map(addr: u64, len: usize, prot: i32) -> Shared {
        // SAFETY: a fresh anonymous shared mapping at a fixed address that
        // must not replace anything (MAP_FIXED_NOREPLACE); the result is
        // checked.
        let p = unsafe {
            libc::mmap(
                addr as *mut libc::c_void,
                len,
                prot,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_FIXED_NOREPLACE,
                -1,
                0,
            )
        };
        assert!(
            p as u64 == addr,
            "mmap at {addr:#x}: {}",
            std::io::Error::last_os_error()
        );
        Shared {
            ptr: p as *mut u8,
            len,
        }
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `ptr` is a live mapping of `len` bytes owned by `self`;
        // the only other user is a child process, never running while the
        // parent holds this borrow (`run` waits for it).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

/// Runs the code at `entry` in a forked child (with a 2 s limit): `Ok(())`
/// when it exited with status 0, `Err(signal name)` otherwise. The code
/// must end the child itself (exit_group).
pub fn run(entry: u64) -> Result<(), String> {
    // SAFETY: fork in a single-threaded process (the xtest binary or a
    // test that calls it through a subprocess); the child only calls
    // async-signal-safe functions (alarm) and then jumps to the code
    // page, which ends with exit_group.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        // SAFETY: child: default actions for the signals the code may
        // raise (Rust's runtime handles SIGSEGV/SIGBUS for stack overflows:
        // its handler returns, which resumes after a trap such as INTO's
        // #OF), a 2 s limit, then the generated code at `entry` (mapped
        // executable by the caller), which loads its own registers and
        // exits through exit_group.
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::signal(libc::SIGBUS, libc::SIG_DFL);
            libc::alarm(2);
            let f: extern "C" fn() = std::mem::transmute(entry as usize);
            f();
            libc::_exit(99);
        }
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(r, pid);
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        Ok(())
    } else if libc::WIFSIGNALED(status) {
        Err(match libc::WTERMSIG(status) {
            libc::SIGSEGV => "SIGSEGV".into(),
            libc::SIGFPE => "SIGFPE".into(),
            libc::SIGILL => "SIGILL".into(),
            libc::SIGBUS => "SIGBUS".into(),
            libc::SIGTRAP => "SIGTRAP".into(),
            libc::SIGALRM => "timeout".into(),
            s => format!("signal {s}"),
        })
    } else {
        Err(format!("exit status {:#x}", status))
    }
}

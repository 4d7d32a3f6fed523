//! Open chardevs: the bytes between a backend (stdio, a file, a socket)
//! and its frontends (COM1, a monitor).
//!
//! A chardev has one current peer at a time: stdio, the file, the
//! connected socket. A server socket accepts one client at a time (the
//! next waits in the backlog) and tells its frontends when a client comes
//! ([`Frontend::open`]: a QMP monitor sends its greeting) and goes. A mux
//! chardev (`mon:stdio`, `mux=on`) has several frontends: all of them
//! write, input goes to the one with the focus, and Ctrl-A c moves it.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::{Backend, ChardevSpec, SockAddr, SocketOpts};
use crate::console::{self, Escapes, Key};
use crate::control::{Cause, Control};

/// Something that receives a chardev's input.
pub trait Frontend: Send + Sync {
    /// A peer is there (a client connected, or stdio at start).
    fn open(&self) {}
    /// Bytes from the peer.
    fn input(&self, data: &[u8]);
    /// The peer went away.
    fn close(&self) {}
    /// This frontend got the input focus of a mux chardev.
    fn focus(&self) {}
}

/// A client that stops reading for this long is dropped, so it cannot
/// block hx86 for good.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// A connected socket.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn try_clone(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Stream::Tcp(s) => Stream::Tcp(s.try_clone()?),
            Stream::Unix(s) => Stream::Unix(s.try_clone()?),
        })
    }
    fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
    fn prepare(&self) {
        let _ = match self {
            Stream::Tcp(s) => s
                .set_write_timeout(Some(WRITE_TIMEOUT))
                .and_then(|_| s.set_nodelay(true)),
            Stream::Unix(s) => s.set_write_timeout(Some(WRITE_TIMEOUT)),
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    fn accept(&self) -> std::io::Result<Stream> {
        Ok(match self {
            Listener::Tcp(l) => Stream::Tcp(l.accept()?.0),
            Listener::Unix(l, _) => Stream::Unix(l.accept()?.0),
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, Some(p)) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn bind(opt: &str, addr: &SockAddr) -> Result<Listener> {
    match addr {
        SockAddr::Tcp { host, port } => {
            let host = if host.is_empty() { "0.0.0.0" } else { host };
            let addrs: Vec<_> = (host, *port)
                .to_socket_addrs()
                .with_context(|| format!("{opt}: cannot resolve '{host}'"))?
                .collect();
            let l = TcpListener::bind(&addrs[..])
                .with_context(|| format!("{opt}: cannot listen on {host}:{port}"))?;
            Ok(Listener::Tcp(l))
        }
        SockAddr::Unix(path) => {
            use std::os::unix::fs::FileTypeExt;
            // A stale socket from an earlier run is replaced; anything else
            // at that path is left alone (bind fails).
            if let Ok(m) = std::fs::symlink_metadata(path) {
                if m.file_type().is_socket() {
                    let _ = std::fs::remove_file(path);
                }
            }
            let l = UnixListener::bind(path)
                .with_context(|| format!("{opt}: cannot listen on {}", path.display()))?;
            Ok(Listener::Unix(l, Some(path.clone())))
        }
        SockAddr::Fd(fd) => match fd_socket(opt, *fd)? {
            FdSocket::Listening(l) => Ok(l),
            FdSocket::Connected(_) => {
                bail!("{opt}: fd={fd} is a connected socket, not a listening one")
            }
        },
    }
}

fn connect(opt: &str, addr: &SockAddr) -> Result<Stream> {
    match addr {
        SockAddr::Tcp { host, port } => {
            let host = if host.is_empty() { "127.0.0.1" } else { host };
            let s = TcpStream::connect((host, *port))
                .with_context(|| format!("{opt}: cannot connect to {host}:{port}"))?;
            Ok(Stream::Tcp(s))
        }
        SockAddr::Unix(path) => {
            let s = UnixStream::connect(path)
                .with_context(|| format!("{opt}: cannot connect to {}", path.display()))?;
            Ok(Stream::Unix(s))
        }
        SockAddr::Fd(fd) => match fd_socket(opt, *fd)? {
            FdSocket::Connected(s) => Ok(s),
            FdSocket::Listening(_) => bail!("{opt}: fd={fd} is a listening socket: add server=on"),
        },
    }
}

enum FdSocket {
    Listening(Listener),
    Connected(Stream),
}

/// Takes over a socket the parent passed as file descriptor `fd`.
fn fd_socket(opt: &str, fd: i32) -> Result<FdSocket> {
    let mut domain: libc::c_int = 0;
    let mut listening: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into the int we pass;
    // an fd that is not a socket makes it fail with ENOTSOCK/EBADF.
    let ok = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_DOMAIN,
            (&mut domain as *mut libc::c_int).cast(),
            &mut len,
        ) == 0
            && libc::getsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_ACCEPTCONN,
                (&mut listening as *mut libc::c_int).cast(),
                &mut len,
            ) == 0
    };
    if !ok {
        bail!(
            "{opt}: fd={fd} is not an open socket: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: the fd is an open socket handed to this process for the
    // chardev; nothing else in hx86 owns it, so taking ownership is sound.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(match (domain, listening != 0) {
        (libc::AF_UNIX, true) => FdSocket::Listening(Listener::Unix(owned.into(), None)),
        (libc::AF_UNIX, false) => FdSocket::Connected(Stream::Unix(owned.into())),
        (libc::AF_INET | libc::AF_INET6, true) => FdSocket::Listening(Listener::Tcp(owned.into())),
        (libc::AF_INET | libc::AF_INET6, false) => FdSocket::Connected(Stream::Tcp(owned.into())),
        (d, _) => bail!("{opt}: fd={fd}: unsupported socket domain {d}"),
    })
}

/// The write side of a chardev: whatever peer is current.
pub struct Output {
    /// The peer and its generation (counts peers, so output meant for one
    /// connection never reaches the next).
    peer: Mutex<(u64, Option<Box<dyn Write + Send>>)>,
}

impl Output {
    fn new() -> Output {
        Output {
            peer: Mutex::new((0, None)),
        }
    }

    fn set(&self, w: Option<Box<dyn Write + Send>>) {
        let mut p = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        p.0 += 1;
        p.1 = w;
    }

    /// The current peer's generation.
    pub fn generation(&self) -> u64 {
        self.peer.lock().unwrap_or_else(|e| e.into_inner()).0
    }

    /// Writes to the current peer; false when there is none or it failed
    /// (a failed peer is dropped).
    pub fn write(&self, data: &[u8]) -> bool {
        self.write_to(None, data)
    }

    /// Writes to the peer of generation `gen` only (`None`: any).
    pub fn write_to(&self, gen: Option<u64>, data: &[u8]) -> bool {
        let mut p = self.peer.lock().unwrap_or_else(|e| e.into_inner());
        if gen.is_some_and(|g| g != p.0) {
            return false;
        }
        let Some(w) = p.1.as_mut() else {
            return false;
        };
        if w.write_all(data).and_then(|_| w.flush()).is_err() {
            p.1 = None;
            return false;
        }
        true
    }
}

/// `Write` into a chardev (COM1's output).
pub struct ChardevWriter(pub Arc<Output>);

impl Write for ChardevWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // No peer: the bytes are dropped, as on a disconnected line.
        self.0.write(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An opened chardev.
pub struct Chardev {
    pub spec: ChardevSpec,
    out: Arc<Output>,
    fronts: Mutex<Vec<Arc<dyn Frontend>>>,
    focus: AtomicUsize,
    /// A server's listener, or a client's connection, until `start`.
    pending: Mutex<Option<Pending>>,
}

enum Pending {
    Server(Listener, Option<Stream>),
    Client(Stream),
}

impl Chardev {
    /// Opens the backend: creates the file, binds or connects the socket
    /// (a server with `wait=on` waits for its first client here).
    pub fn open(spec: &ChardevSpec) -> Result<Arc<Chardev>> {
        let opt = format!("chardev '{}'", spec.id);
        let out = Arc::new(Output::new());
        let mut pending = None;
        match &spec.backend {
            Backend::Null => out.set(Some(Box::new(std::io::sink()))),
            Backend::Stdio => out.set(Some(Box::new(std::io::stdout()))),
            Backend::File(p) => {
                let f = std::fs::File::create(p)
                    .with_context(|| format!("{opt}: cannot create {}", p.display()))?;
                out.set(Some(Box::new(f)));
            }
            Backend::Socket(SocketOpts { addr, server, wait }) => {
                if *server {
                    let l = bind(&opt, addr)?;
                    let first = if *wait {
                        eprintln!(
                            "hx86: chardev '{}': waiting for a connection on {}",
                            spec.id,
                            describe(addr)
                        );
                        Some(l.accept().with_context(|| format!("{opt}: accept"))?)
                    } else {
                        None
                    };
                    pending = Some(Pending::Server(l, first));
                } else {
                    pending = Some(Pending::Client(connect(&opt, addr)?));
                }
            }
        }
        Ok(Arc::new(Chardev {
            spec: spec.clone(),
            out,
            fronts: Mutex::new(Vec::new()),
            focus: AtomicUsize::new(0),
            pending: Mutex::new(pending),
        }))
    }

    pub fn output(&self) -> Arc<Output> {
        self.out.clone()
    }

    /// Adds a frontend (before [`Chardev::start`]).
    pub fn attach(&self, f: Arc<dyn Frontend>) {
        self.fronts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(f);
    }

    fn frontends(&self) -> Vec<Arc<dyn Frontend>> {
        self.fronts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn focused(&self) -> Option<Arc<dyn Frontend>> {
        let f = self.frontends();
        let i = self.focus.load(Ordering::SeqCst);
        f.get(i).or(f.first()).cloned()
    }

    fn open_all(&self) {
        for f in self.frontends() {
            f.open();
        }
    }

    fn close_all(&self) {
        for f in self.frontends() {
            f.close();
        }
    }

    /// Starts moving input to the frontends (threads for stdin and
    /// sockets).
    pub fn start(self: &Arc<Self>, ctl: &Arc<Control>) -> Result<()> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        match (&self.spec.backend, pending) {
            (Backend::Stdio, _) => {
                self.open_all();
                let tty = console::enter_raw_mode();
                let me = self.clone();
                let ctl = ctl.clone();
                spawn(&self.spec.id, move || me.stdin_loop(tty, &ctl))?;
            }
            (_, Some(Pending::Server(l, first))) => {
                let me = self.clone();
                spawn(&self.spec.id, move || me.server_loop(l, first))?;
            }
            (_, Some(Pending::Client(s))) => {
                let me = self.clone();
                spawn(&self.spec.id, move || me.serve(s))?;
            }
            _ => self.open_all(),
        }
        Ok(())
    }

    fn server_loop(&self, l: Listener, mut first: Option<Stream>) {
        loop {
            let s = match first.take() {
                Some(s) => s,
                None => match l.accept() {
                    Ok(s) => s,
                    Err(e) => {
                        log::warn!(target: "unimp", "chardev '{}': accept: {e}", self.spec.id);
                        std::thread::sleep(Duration::from_millis(100));
                        continue;
                    }
                },
            };
            self.serve(s);
        }
    }

    /// One connection, until the peer goes away.
    fn serve(&self, mut s: Stream) {
        s.prepare();
        let Ok(w) = s.try_clone() else {
            return;
        };
        self.out.set(Some(Box::new(w)));
        self.open_all();
        let mut buf = vec![0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => self.deliver(&buf[..n]),
            }
        }
        self.out.set(None);
        s.shutdown();
        self.close_all();
    }

    fn deliver(&self, data: &[u8]) {
        if let Some(f) = self.focused() {
            f.input(data);
        }
    }

    /// stdin: bytes as they are, or through QEMU's Ctrl-A escapes on a
    /// terminal and on a mux.
    fn stdin_loop(&self, tty: bool, ctl: &Control) {
        let mut stdin = std::io::stdin().lock();
        let mut buf = [0u8; 256];
        let mut esc = Escapes::default();
        let escapes = tty || self.spec.mux;
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    return;
                }
                Ok(n) => n,
            };
            if !escapes {
                self.deliver(&buf[..n]);
                continue;
            }
            let mut pass = Vec::with_capacity(n);
            for &b in &buf[..n] {
                match esc.feed(b) {
                    Key::Guest(v) => pass.extend_from_slice(&v),
                    Key::Quit => {
                        self.deliver(&pass);
                        pass.clear();
                        eprint!("\r\nhx86: terminated (C-a x)\r\n");
                        ctl.quit(0, Cause::HostUi);
                    }
                    Key::Help => eprint!("{}", console::escape_help(self.spec.mux)),
                    Key::SwitchFocus if self.spec.mux => {
                        self.deliver(&pass);
                        pass.clear();
                        let n = self.frontends().len().max(1);
                        let next = (self.focus.load(Ordering::SeqCst) + 1) % n;
                        self.focus.store(next, Ordering::SeqCst);
                        if let Some(f) = self.focused() {
                            f.focus();
                        }
                    }
                    Key::SwitchFocus | Key::None => {}
                }
            }
            self.deliver(&pass);
        }
    }
}

fn spawn(id: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("chardev {id}"))
        .spawn(f)
        .with_context(|| format!("chardev '{id}': cannot start its thread"))?;
    Ok(())
}

fn describe(addr: &SockAddr) -> String {
    match addr {
        SockAddr::Unix(p) => format!("unix:{}", p.display()),
        SockAddr::Tcp { host, port } => format!("tcp:{host}:{port}"),
        SockAddr::Fd(fd) => format!("fd {fd}"),
    }
}

/// COM1 as a chardev frontend: input goes to the UART's receive FIFO.
pub struct SerialFrontend(pub Arc<Mutex<devices::Serial>>);

impl Frontend for SerialFrontend {
    fn input(&self, data: &[u8]) {
        console::deliver(&self.0, data);
    }
}

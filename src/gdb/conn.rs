//! The debugger's connection: where hx86 listens (`-gdb DEV`), the socket
//! of one session, the thread that reads it, and a packet filter that
//! keeps malformed input away from gdbstub.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use accel::Kicker;
use anyhow::{bail, Context, Result};

/// Where the gdb server listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListenAddr {
    /// `tcp::PORT` (loopback) or `tcp:HOST:PORT`.
    Tcp { host: String, port: u16 },
    /// `unix:PATH`.
    Unix(PathBuf),
}

/// Parses a `-gdb` device as QEMU spells it: `tcp::PORT`, `tcp:HOST:PORT`,
/// `unix:PATH` (a bare `PORT` or `:PORT` means `tcp::PORT`). QEMU chardev
/// flags after a comma (`,server`, `,nowait`, `,wait=off`, `,ipv4`) are
/// accepted and ignored.
pub fn parse_listen(spec: &str) -> Result<ListenAddr> {
    let main = spec.split(',').next().unwrap_or("");
    for opt in spec.split(',').skip(1) {
        match opt {
            "server" | "server=on" | "nowait" | "wait=off" | "ipv4" | "ipv6" | "nodelay" => {}
            _ => bail!("-gdb {spec}: unsupported option '{opt}'"),
        }
    }
    if let Some(path) = main.strip_prefix("unix:") {
        if path.is_empty() {
            bail!("-gdb {spec}: unix: needs a socket path");
        }
        return Ok(ListenAddr::Unix(PathBuf::from(path)));
    }
    let rest = match main.strip_prefix("tcp:") {
        Some(r) => r,
        None if main.starts_with(':') || main.bytes().all(|b| b.is_ascii_digit()) => main,
        None => bail!("-gdb {spec}: expected tcp::PORT, tcp:HOST:PORT or unix:PATH"),
    };
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, p),
        None => ("", rest),
    };
    let port: u16 = port
        .parse()
        .with_context(|| format!("-gdb {spec}: expected tcp::PORT, tcp:HOST:PORT or unix:PATH"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.is_empty() { "127.0.0.1" } else { host };
    Ok(ListenAddr::Tcp {
        host: host.to_string(),
        port,
    })
}

/// A bound listening socket.
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    pub fn bind(addr: &ListenAddr) -> Result<Listener> {
        match addr {
            ListenAddr::Tcp { host, port } => {
                let addrs: Vec<_> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .with_context(|| format!("-gdb: cannot resolve '{host}'"))?
                    .collect();
                let l = TcpListener::bind(&addrs[..])
                    .with_context(|| format!("-gdb: cannot listen on {host}:{port}"))?;
                Ok(Listener::Tcp(l))
            }
            ListenAddr::Unix(path) => {
                use std::os::unix::fs::FileTypeExt;
                // A stale socket from an earlier run is replaced; anything
                // else at that path is left alone (bind fails).
                if let Ok(m) = std::fs::symlink_metadata(path) {
                    if m.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let l = UnixListener::bind(path)
                    .with_context(|| format!("-gdb: cannot listen on {}", path.display()))?;
                Ok(Listener::Unix(l, path.clone()))
            }
        }
    }

    /// Where gdb should connect, for the user (`target remote ...`).
    pub fn describe(&self) -> String {
        match self {
            Listener::Tcp(l) => match l.local_addr() {
                Ok(a) => a.to_string(),
                Err(_) => "?".to_string(),
            },
            Listener::Unix(_, p) => p.display().to_string(),
        }
    }

    fn accept(&self) -> std::io::Result<(Stream, String)> {
        match self {
            Listener::Tcp(l) => {
                let (s, a) = l.accept()?;
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), a.to_string()))
            }
            Listener::Unix(l, p) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), p.display().to_string()))
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// A connected socket.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Stream {
    fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Tcp(s) => (&*s).read(buf),
            Stream::Unix(s) => (&*s).read(buf),
        }
    }
    fn write_all(&self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Stream::Tcp(s) => (&*s).write_all(buf),
            Stream::Unix(s) => (&*s).write_all(buf),
        }
    }
    pub fn shutdown(&self) {
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
    fn set_write_timeout(&self, t: Duration) {
        let _ = match self {
            Stream::Tcp(s) => s.set_write_timeout(Some(t)),
            Stream::Unix(s) => s.set_write_timeout(Some(t)),
        };
    }
}

/// A client that stops reading its replies for this long is dropped, so a
/// stuck debugger never blocks the vCPU thread for good.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether a debugger is attached.
#[derive(Default)]
pub struct Presence {
    /// A session exists (set on accept, cleared when the session ended).
    pub busy: AtomicBool,
    /// Its client is still connected (cleared by the reader at EOF, so a
    /// client that reconnects at once is not refused while the old
    /// session winds down).
    pub alive: AtomicBool,
}

/// Accepts connections on a thread of its own: the first one goes to the
/// machine loop through `tx` (and kicks the vCPU so that it notices), the
/// ones that arrive while a debugger is attached are refused.
pub fn spawn_acceptor(
    listener: Listener,
    tx: Sender<Stream>,
    presence: Arc<Presence>,
    kicker: Arc<dyn Kicker>,
) {
    std::thread::Builder::new()
        .name("gdb-accept".into())
        .spawn(move || loop {
            let (stream, peer) = match listener.accept() {
                Ok(x) => x,
                Err(e) => {
                    log::debug!(target: "gdb", "accept: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if presence.busy.load(Ordering::SeqCst) && presence.alive.load(Ordering::SeqCst) {
                eprintln!(
                    "hx86: gdb: refusing a connection from {peer}: a debugger is already attached"
                );
                // A packet gdb shows as an error, then the door closes.
                let _ = stream.write_all(b"$E01#a6");
                stream.shutdown();
                continue;
            }
            presence.busy.store(true, Ordering::SeqCst);
            presence.alive.store(true, Ordering::SeqCst);
            eprintln!("hx86: gdb: debugger connected from {peer}");
            stream.set_write_timeout(WRITE_TIMEOUT);
            if tx.send(stream).is_err() {
                return;
            }
            kicker.kick();
        })
        .map(|_| ())
        .unwrap_or_else(|e| eprintln!("hx86: gdb: cannot start the accept thread: {e}"));
}

/// Bytes received from the debugger, filled by the reader thread.
#[derive(Default)]
pub struct InboxState {
    pub bytes: VecDeque<u8>,
    /// The client closed the connection (or reading failed).
    pub closed: bool,
    /// The vCPU is inside `run`: new bytes must kick it.
    pub running: bool,
}

pub struct Inbox {
    pub state: Mutex<InboxState>,
    pub cond: Condvar,
}

impl Inbox {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, InboxState> {
        // A poisoned lock only means another thread panicked while holding
        // it; the byte queue itself is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the thread that reads the session's socket into the inbox.
pub fn spawn_reader(
    stream: Arc<Stream>,
    kicker: Arc<dyn Kicker>,
    presence: Arc<Presence>,
) -> (Arc<Inbox>, std::thread::JoinHandle<()>) {
    let inbox = Arc::new(Inbox {
        state: Mutex::new(InboxState::default()),
        cond: Condvar::new(),
    });
    let ib = inbox.clone();
    let h = std::thread::Builder::new()
        .name("gdb-read".into())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(0) | Err(_) => 0,
                    Ok(n) => n,
                };
                let kick = {
                    let mut st = ib.lock();
                    if n == 0 {
                        st.closed = true;
                        presence.alive.store(false, Ordering::SeqCst);
                    } else {
                        st.bytes.extend(&buf[..n]);
                    }
                    st.running
                };
                ib.cond.notify_all();
                if kick {
                    kicker.kick();
                }
                if n == 0 {
                    return;
                }
            }
        })
        .expect("spawning a thread");
    (inbox, h)
}

/// The stub's side of the socket, for gdbstub: output is buffered and sent
/// on flush; the last packet sent is kept for a retransmission when the
/// client asks for one (`-`). Clones share the socket and the state.
#[derive(Clone)]
pub struct Conn {
    stream: Arc<Stream>,
    out: std::rc::Rc<std::cell::RefCell<Out>>,
}

#[derive(Default)]
struct Out {
    buf: Vec<u8>,
    last: Vec<u8>,
    /// Replies are swallowed (while replaying packets into a fresh stub).
    mute: bool,
}

impl Conn {
    pub fn new(stream: Arc<Stream>) -> Conn {
        Conn {
            stream,
            out: Default::default(),
        }
    }

    pub fn set_mute(&self, mute: bool) {
        let mut o = self.out.borrow_mut();
        o.mute = mute;
        o.buf.clear();
    }

    /// Sends raw bytes now (outside gdbstub).
    pub fn send_raw(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends `$body#xx`.
    pub fn send_packet(&self, body: &[u8]) -> std::io::Result<()> {
        let sum = body.iter().fold(0u8, |a, b| a.wrapping_add(*b));
        let mut p = Vec::with_capacity(body.len() + 4);
        p.push(b'$');
        p.extend_from_slice(body);
        p.extend_from_slice(format!("#{sum:02x}").as_bytes());
        self.out.borrow_mut().last = p.clone();
        self.stream.write_all(&p)
    }

    /// Sends the last packet again (the client NAKed it).
    pub fn retransmit(&self) -> std::io::Result<()> {
        let last = self.out.borrow().last.clone();
        if last.is_empty() {
            return Ok(());
        }
        self.stream.write_all(&last)
    }

    pub fn shutdown(&self) {
        self.stream.shutdown();
    }

    /// Sends what gdbstub wrote without flushing: it leaves the ack of a
    /// resume packet unflushed until the stop reply, and the reply to a
    /// kill request unterminated (that one gets its checksum here).
    pub fn flush_pending(&mut self) -> std::io::Result<()> {
        {
            let mut o = self.out.borrow_mut();
            if let Some(start) = o.buf.iter().rposition(|&b| b == b'$') {
                if !o.buf[start..].contains(&b'#') {
                    let sum = o.buf[start + 1..]
                        .iter()
                        .fold(0u8, |a, b| a.wrapping_add(*b));
                    o.buf.extend_from_slice(format!("#{sum:02x}").as_bytes());
                }
            }
        }
        gdbstub::conn::Connection::flush(self)
    }
}

impl gdbstub::conn::Connection for Conn {
    type Error = std::io::Error;

    fn write(&mut self, byte: u8) -> std::io::Result<()> {
        self.out.borrow_mut().buf.push(byte);
        Ok(())
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.out.borrow_mut().buf.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let mut o = self.out.borrow_mut();
        let data = std::mem::take(&mut o.buf);
        if o.mute || data.is_empty() {
            return Ok(());
        }
        // Keep the last packet (without a leading ack) for retransmission.
        if let Some(i) = data.iter().position(|&b| b == b'$') {
            o.last = data[i..].to_vec();
        }
        drop(o);
        self.stream.write_all(&data)
    }
}

/// Largest packet body accepted (gdbstub's packet buffer is a bit larger).
pub const MAX_PACKET: usize = 0x4000;

/// What the filter made of the input so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// A complete, well-formed unit for gdbstub: a `$...#xx` packet (with a
    /// valid checksum), `+`, or the interrupt byte 0x03.
    Forward(Vec<u8>),
    /// The client asked for the last reply again (`-`).
    Retransmit,
    /// A packet with a bad checksum: answer `-`.
    Nak,
    /// A packet too large for the buffer: answer with an error.
    TooLong,
}

#[derive(Debug, Default)]
enum FState {
    #[default]
    Out,
    Body,
    Csum1,
    Csum2(u8),
}

/// Splits the byte stream from the client into packets, checking framing
/// and checksums, so that only well-formed packets reach gdbstub.
#[derive(Debug, Default)]
pub struct PacketFilter {
    state: FState,
    body: Vec<u8>,
    overflow: bool,
}

fn hexval(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

impl PacketFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the filter is between packets.
    #[cfg(test)]
    pub fn idle(&self) -> bool {
        matches!(self.state, FState::Out)
    }

    /// Feeds one byte; returns a unit when one is complete.
    pub fn push(&mut self, b: u8) -> Option<Input> {
        match self.state {
            FState::Out => match b {
                b'$' => {
                    self.body.clear();
                    self.overflow = false;
                    self.state = FState::Body;
                    None
                }
                b'+' => Some(Input::Forward(vec![b'+'])),
                b'-' => Some(Input::Retransmit),
                0x03 => Some(Input::Forward(vec![0x03])),
                _ => None, // line noise between packets
            },
            FState::Body => {
                match b {
                    b'#' => self.state = FState::Csum1,
                    // A new start: the previous packet was cut short.
                    b'$' => {
                        self.body.clear();
                        self.overflow = false;
                    }
                    _ => {
                        if self.body.len() < MAX_PACKET {
                            self.body.push(b);
                        } else {
                            self.overflow = true;
                        }
                    }
                }
                None
            }
            FState::Csum1 => {
                self.state = FState::Csum2(b);
                None
            }
            FState::Csum2(c1) => {
                self.state = FState::Out;
                if self.overflow {
                    self.body.clear();
                    return Some(Input::TooLong);
                }
                let want = match (hexval(c1), hexval(b)) {
                    (Some(h), Some(l)) => (h << 4) | l,
                    _ => return Some(Input::Nak),
                };
                let sum = self.body.iter().fold(0u8, |a, x| a.wrapping_add(*x));
                if sum != want {
                    return Some(Input::Nak);
                }
                let mut p = Vec::with_capacity(self.body.len() + 4);
                p.push(b'$');
                p.extend_from_slice(&self.body);
                p.push(b'#');
                p.push(c1);
                p.push(b);
                Some(Input::Forward(p))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(f: &mut PacketFilter, s: &[u8]) -> Vec<Input> {
        s.iter().filter_map(|&b| f.push(b)).collect()
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("tcp::1234").unwrap(),
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 1234
            }
        );
        assert_eq!(
            parse_listen("tcp:0.0.0.0:99").unwrap(),
            ListenAddr::Tcp {
                host: "0.0.0.0".into(),
                port: 99
            }
        );
        assert_eq!(
            parse_listen("tcp:[::1]:5").unwrap(),
            ListenAddr::Tcp {
                host: "::1".into(),
                port: 5
            }
        );
        assert_eq!(
            parse_listen("unix:/tmp/x,server,nowait").unwrap(),
            ListenAddr::Unix("/tmp/x".into())
        );
        assert_eq!(
            parse_listen("4321").unwrap(),
            ListenAddr::Tcp {
                host: "127.0.0.1".into(),
                port: 4321
            }
        );
        for bad in ["tcp::", "tcp::99999", "unix:", "tcp::1,bogus", "udp::1"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn filter_passes_good_packets_and_flags_bad_ones() {
        let mut f = PacketFilter::new();
        assert_eq!(
            feed(&mut f, b"+$g#67"),
            vec![
                Input::Forward(b"+".to_vec()),
                Input::Forward(b"$g#67".to_vec())
            ]
        );
        assert_eq!(feed(&mut f, b"$g#00"), vec![Input::Nak]);
        assert_eq!(feed(&mut f, b"$g#zz"), vec![Input::Nak]);
        assert_eq!(feed(&mut f, b"junk-"), vec![Input::Retransmit]);
        assert_eq!(feed(&mut f, b"\x03"), vec![Input::Forward(vec![3])]);
        // A restart inside a packet drops the partial one.
        assert_eq!(
            feed(&mut f, b"$m0,$g#67"),
            vec![Input::Forward(b"$g#67".to_vec())]
        );
        let mut big = vec![b'$'];
        big.extend(std::iter::repeat_n(b'a', MAX_PACKET + 10));
        big.extend(b"#00");
        assert_eq!(feed(&mut f, &big), vec![Input::TooLong]);
        assert!(f.idle());
    }
}

//! The serial console's input side: stdin to COM1.
//!
//! When stdin is a terminal it is put in raw mode (restored on every exit
//! path through [`restore_terminal`]) and QEMU's escapes work: `Ctrl-A x`
//! quits, `Ctrl-A h` lists the escapes, `Ctrl-A Ctrl-A` sends a Ctrl-A.
//! When stdin is a pipe or /dev/null, its bytes go to the guest as they are
//! and end of input simply stops the reader.

use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use devices::Serial;

static SAVED_TERMIOS: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts the terminal on stdin in raw mode, remembering how it was.
fn enter_raw_mode() -> bool {
    // SAFETY: isatty/tcgetattr/tcsetattr only read/write the termios struct
    // we pass, which lives on our stack; fd 0 may be anything, errors are
    // reported by the return values.
    unsafe {
        if libc::isatty(0) != 1 {
            return false;
        }
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return false;
        }
        if let Ok(mut saved) = SAVED_TERMIOS.lock() {
            *saved = Some(t);
        }
        let mut raw = t;
        libc::cfmakeraw(&mut raw);
        // Keep output post-processing so guest "\n" still moves to column 0
        // the way the guest expects from a serial terminal (it sends \r\n).
        raw.c_oflag = t.c_oflag;
        libc::tcsetattr(0, libc::TCSANOW, &raw) == 0
    }
}

/// Restores the terminal if [`enter_raw_mode`] changed it. Safe to call
/// more than once and from any exit path.
pub fn restore_terminal() {
    if let Ok(mut saved) = SAVED_TERMIOS.lock() {
        if let Some(t) = saved.take() {
            // SAFETY: `t` is the termios read from fd 0 earlier.
            unsafe {
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

const CTRL_A: u8 = 0x01;

const ESCAPE_HELP: &str =
    "\r\nC-a h    print this help\r\nC-a x    exit emulator\r\nC-a C-a  sends C-a\r\n";

/// What the escape state machine made of one input byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    /// Send these bytes to the guest.
    Guest(Vec<u8>),
    Quit,
    Help,
    None,
}

/// QEMU's Ctrl-A escape handling.
#[derive(Default)]
pub struct Escapes {
    pending: bool,
}

impl Escapes {
    pub fn feed(&mut self, b: u8) -> Key {
        if self.pending {
            self.pending = false;
            match b {
                b'x' | b'X' => Key::Quit,
                b'h' | b'H' | b'?' => Key::Help,
                CTRL_A => Key::Guest(vec![CTRL_A]),
                _ => Key::None,
            }
        } else if b == CTRL_A {
            self.pending = true;
            Key::None
        } else {
            Key::Guest(vec![b])
        }
    }
}

fn deliver(serial: &Mutex<Serial>, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        let n = match serial.lock() {
            Ok(mut s) => s.enqueue_input(bytes),
            Err(_) => return,
        };
        bytes = &bytes[n..];
        if !bytes.is_empty() {
            // The guest has not drained its FIFO yet.
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Starts the stdin reader thread feeding `serial`.
pub fn start(serial: Arc<Mutex<Serial>>) {
    let tty = enter_raw_mode();
    std::thread::Builder::new()
        .name("console".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 256];
            let mut esc = Escapes::default();
            loop {
                let n = match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                if !tty {
                    deliver(&serial, &buf[..n]);
                    continue;
                }
                let mut out = Vec::with_capacity(n);
                for &b in &buf[..n] {
                    match esc.feed(b) {
                        Key::Guest(v) => out.extend_from_slice(&v),
                        Key::Quit => {
                            deliver(&serial, &out);
                            restore_terminal();
                            eprintln!("\r\nhx86: terminated (C-a x)");
                            std::process::exit(0);
                        }
                        Key::Help => eprint!("{ESCAPE_HELP}"),
                        Key::None => {}
                    }
                }
                deliver(&serial, &out);
            }
        })
        .ok();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctrl_a_escapes() {
        let mut e = Escapes::default();
        assert_eq!(e.feed(b'a'), Key::Guest(vec![b'a']));
        assert_eq!(e.feed(CTRL_A), Key::None);
        assert_eq!(e.feed(b'x'), Key::Quit);
        assert_eq!(e.feed(CTRL_A), Key::None);
        assert_eq!(e.feed(b'h'), Key::Help);
        assert_eq!(e.feed(CTRL_A), Key::None);
        assert_eq!(e.feed(CTRL_A), Key::Guest(vec![CTRL_A]));
        assert_eq!(e.feed(b'x'), Key::Guest(vec![b'x']));
    }
}

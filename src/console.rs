//! The terminal side of the stdio chardev (`crate::chardev::backend`).
//!
//! When stdin is a terminal it is put in raw mode (restored on every exit
//! path through [`restore_terminal`]) and QEMU's escapes work: `Ctrl-A x`
//! quits, `Ctrl-A h` lists the escapes, `Ctrl-A c` switches a mux
//! (`-serial mon:stdio`) between the serial port and the monitor,
//! `Ctrl-A Ctrl-A` sends a Ctrl-A. When stdin is a pipe or /dev/null, its
//! bytes go to the guest as they are (escapes only on a mux) and end of
//! input simply stops the reader.

use std::sync::Mutex;
use std::time::Duration;

use devices::Serial;

static SAVED_TERMIOS: Mutex<Option<libc::termios>> = Mutex::new(None);

/// Puts the terminal on stdin in raw mode, remembering how it was.
pub fn enter_raw_mode() -> bool {
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

/// The escapes, as `Ctrl-A h` lists them.
pub fn escape_help(mux: bool) -> &'static str {
    if mux {
        "\r\nC-a h    print this help\r\nC-a x    exit emulator\r\nC-a c    switch between console and monitor\r\nC-a C-a  sends C-a\r\n"
    } else {
        "\r\nC-a h    print this help\r\nC-a x    exit emulator\r\nC-a C-a  sends C-a\r\n"
    }
}

/// What the escape state machine made of one input byte.
#[derive(Debug, PartialEq, Eq)]
pub enum Key {
    /// Send these bytes to the guest.
    Guest(Vec<u8>),
    Quit,
    Help,
    /// Ctrl-A c: the next frontend of a mux gets the input.
    SwitchFocus,
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
                b'c' | b'C' => Key::SwitchFocus,
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

/// Puts `bytes` in COM1's receive FIFO, waiting while it is full.
pub fn deliver(serial: &Mutex<Serial>, mut bytes: &[u8]) {
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
        assert_eq!(e.feed(b'c'), Key::SwitchFocus);
        assert_eq!(e.feed(CTRL_A), Key::None);
        assert_eq!(e.feed(CTRL_A), Key::Guest(vec![CTRL_A]));
        assert_eq!(e.feed(b'x'), Key::Guest(vec![b'x']));
    }
}

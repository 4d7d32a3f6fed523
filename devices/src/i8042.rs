//! The i8042 keyboard controller at 0x60 (data) and 0x64 (status/command).
//!
//! There are no keystrokes (the console is the serial port), but the
//! controller answers what Linux and firmware ask: the command byte, self
//! and interface tests, port enable/disable, the output port (its bit 0 and
//! command 0xFE pulse the CPU reset line), output-buffer writes, and a
//! minimal AT keyboard that acknowledges commands so keyboard probing does
//! not wait for timeouts. No PS/2 mouse is attached: bytes sent to it (0xD4)
//! are answered with 0xFE and the time-out bit.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::bus::{Bus, BusDevice, BusError, IrqLine, VmRequest};

/// Data port.
pub const I8042_DATA_PORT: u16 = 0x60;
/// Status/command port.
pub const I8042_CMD_PORT: u16 = 0x64;

const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_A2: u8 = 0x08;
const STATUS_UNLOCKED: u8 = 0x10;
const STATUS_AUXB: u8 = 0x20;
const STATUS_TIMEOUT: u8 = 0x40;

const CMD_KBD_INT: u8 = 0x01;
const CMD_AUX_INT: u8 = 0x02;
const CMD_SYS: u8 = 0x04;
const CMD_KBD_DISABLE: u8 = 0x10;
const CMD_AUX_DISABLE: u8 = 0x20;

/// Bound on queued output, so a guest cannot grow it without limit.
const QUEUE_MAX: usize = 16;

/// The i8042 controller.
pub struct I8042 {
    kbd_irq: Arc<dyn IrqLine>,
    aux_irq: Arc<dyn IrqLine>,
    command_byte: u8,
    output_port: u8,
    /// Pending output bytes; `true` marks bytes from the aux port.
    out: VecDeque<(u8, bool)>,
    /// A controller command waiting for its data byte.
    pending: Option<u8>,
    /// A keyboard command waiting for its parameter.
    kbd_pending: Option<u8>,
    last_was_command: bool,
    timeout: bool,
    irq_levels: (bool, bool),
}

impl I8042 {
    /// A controller driving IRQ1 (`kbd_irq`) and IRQ12 (`aux_irq`).
    pub fn new(kbd_irq: Arc<dyn IrqLine>, aux_irq: Arc<dyn IrqLine>) -> Self {
        Self {
            kbd_irq,
            aux_irq,
            // Interrupts on, system flag, scancode translation.
            command_byte: CMD_KBD_INT | CMD_AUX_INT | CMD_SYS | 0x40,
            // Reset line deasserted, A20 enabled.
            output_port: 0x03,
            out: VecDeque::new(),
            pending: None,
            kbd_pending: None,
            last_was_command: false,
            timeout: false,
            irq_levels: (false, false),
        }
    }

    /// The command byte (controller configuration).
    pub fn command_byte(&self) -> u8 {
        self.command_byte
    }

    /// The status register.
    pub fn status(&self) -> u8 {
        let mut s = STATUS_UNLOCKED;
        if let Some(&(_, aux)) = self.out.front() {
            s |= STATUS_OBF;
            if aux {
                s |= STATUS_AUXB;
            }
        }
        if self.command_byte & CMD_SYS != 0 {
            s |= STATUS_SYS;
        }
        if self.last_was_command {
            s |= STATUS_A2;
        }
        if self.timeout {
            s |= STATUS_TIMEOUT;
        }
        s
    }

    fn push(&mut self, byte: u8, aux: bool) {
        if self.out.len() < QUEUE_MAX {
            self.out.push_back((byte, aux));
        } else {
            log::debug!(target: "guest_errors", "i8042: output queue full, {:#x} dropped", byte);
        }
        self.update_irq();
    }

    fn update_irq(&mut self) {
        let (kbd, aux) = match self.out.front() {
            Some(&(_, false)) => (self.command_byte & CMD_KBD_INT != 0, false),
            Some(&(_, true)) => (false, self.command_byte & CMD_AUX_INT != 0),
            None => (false, false),
        };
        if kbd != self.irq_levels.0 {
            self.kbd_irq.set_level(kbd);
        }
        if aux != self.irq_levels.1 {
            self.aux_irq.set_level(aux);
        }
        self.irq_levels = (kbd, aux);
    }

    /// Read the data port (0x60): the next output byte, 0 if none.
    pub fn read_data(&mut self) -> u8 {
        let byte = self.out.pop_front().map_or(0, |(b, _)| b);
        self.timeout = false;
        // Drop the lines so the next byte makes a new edge.
        if self.irq_levels.0 {
            self.kbd_irq.set_level(false);
        }
        if self.irq_levels.1 {
            self.aux_irq.set_level(false);
        }
        self.irq_levels = (false, false);
        self.update_irq();
        byte
    }

    /// Write the command port (0x64).
    pub fn write_command(&mut self, cmd: u8) -> Option<VmRequest> {
        self.last_was_command = true;
        self.pending = None;
        match cmd {
            0x20 => self.push(self.command_byte, false),
            0x21..=0x3f => self.push(0, false),
            0x60..=0x7f | 0xd1..=0xd4 => self.pending = Some(cmd),
            0xa7 => self.command_byte |= CMD_AUX_DISABLE,
            0xa8 => self.command_byte &= !CMD_AUX_DISABLE,
            0xa9 | 0xab => self.push(0x00, false),
            0xaa => self.push(0x55, false),
            0xad => self.command_byte |= CMD_KBD_DISABLE,
            0xae => self.command_byte &= !CMD_KBD_DISABLE,
            0xc0 => self.push(0x80, false),
            0xd0 => self.push(self.output_port, false),
            0xdd => self.output_port &= !0x02,
            0xdf => self.output_port |= 0x02,
            0xe0 => self.push(0x00, false),
            0xf0..=0xff => {
                // Pulse output port lines whose bit is 0; bit 0 is reset.
                if cmd & 1 == 0 {
                    log::debug!(target: "ioport", "i8042: reset pulse (command {:#x})", cmd);
                    return Some(VmRequest::Reset);
                }
            }
            _ => log::debug!(target: "unimp", "i8042: command {:#x} not supported", cmd),
        }
        None
    }

    /// Write the data port (0x60).
    pub fn write_data(&mut self, v: u8) -> Option<VmRequest> {
        self.last_was_command = false;
        match self.pending.take() {
            Some(0x60) => {
                self.command_byte = v;
                self.update_irq();
            }
            Some(0x61..=0x7f) => {}
            Some(0xd1) => {
                self.output_port = v;
                if v & 0x02 == 0 {
                    log::debug!(target: "unimp", "i8042: A20 gate cannot be disabled");
                }
                if v & 0x01 == 0 {
                    log::debug!(target: "ioport", "i8042: reset via output port");
                    return Some(VmRequest::Reset);
                }
            }
            Some(0xd2) => self.push(v, false),
            Some(0xd3) => self.push(v, true),
            Some(0xd4) => {
                log::debug!(target: "unimp", "i8042: no PS/2 mouse for byte {:#x}", v);
                self.timeout = true;
                self.push(0xfe, true);
            }
            _ => self.keyboard_byte(v),
        }
        None
    }

    /// A byte sent to the (emulated, keyless) AT keyboard.
    fn keyboard_byte(&mut self, v: u8) {
        if let Some(cmd) = self.kbd_pending.take() {
            self.push(0xfa, false);
            if cmd == 0xf0 && v == 0 {
                self.push(0x02, false); // current scancode set
            }
            return;
        }
        match v {
            0xff => {
                self.push(0xfa, false);
                self.push(0xaa, false);
            }
            0xf2 => {
                self.push(0xfa, false);
                self.push(0xab, false);
                self.push(0x83, false);
            }
            0xed | 0xf0 | 0xf3 => {
                self.kbd_pending = Some(v);
                self.push(0xfa, false);
            }
            0xee => self.push(0xee, false),
            0xf4..=0xfe => self.push(0xfa, false),
            _ => self.push(0xfe, false),
        }
    }
}

/// Which of the controller's two ports an [`I8042Port`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum I8042PortKind {
    /// 0x60: data.
    Data,
    /// 0x64: status (read) / command (write).
    Command,
}

/// One port of a shared [`I8042`] as a one-byte [`BusDevice`]. The two ports
/// are not contiguous (0x61 is port B), so each is inserted on its own; see
/// [`attach_i8042`].
pub struct I8042Port {
    kbc: Arc<Mutex<I8042>>,
    kind: I8042PortKind,
}

impl I8042Port {
    /// The `kind` port of `kbc`.
    pub fn new(kbc: Arc<Mutex<I8042>>, kind: I8042PortKind) -> Self {
        Self { kbc, kind }
    }
}

impl BusDevice for I8042Port {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut kbc = self.kbc.lock().unwrap_or_else(|e| e.into_inner());
        for (i, d) in data.iter_mut().enumerate() {
            *d = match (offset.checked_add(i as u64), self.kind) {
                (Some(0), I8042PortKind::Data) => kbc.read_data(),
                (Some(0), I8042PortKind::Command) => kbc.status(),
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        let mut kbc = self.kbc.lock().unwrap_or_else(|e| e.into_inner());
        match (offset, data.first(), self.kind) {
            (0, Some(&v), I8042PortKind::Data) => kbc.write_data(v),
            (0, Some(&v), I8042PortKind::Command) => kbc.write_command(v),
            _ => None,
        }
    }
}

/// Put `kbc`'s data and command ports at 0x60 and 0x64 on `pio`.
pub fn attach_i8042(kbc: &Arc<Mutex<I8042>>, pio: &mut Bus) -> Result<(), BusError> {
    for (port, kind) in [
        (I8042_DATA_PORT, I8042PortKind::Data),
        (I8042_CMD_PORT, I8042PortKind::Command),
    ] {
        let dev = Arc::new(Mutex::new(I8042Port::new(kbc.clone(), kind)));
        pio.insert(dev, u64::from(port), 1)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "i8042_tests.rs"]
mod tests;

//! virtio-console as QEMU's `virtio-serial-pci` with its `virtconsole` and
//! `virtserialport` ports (virtio 1.2, 5.3), multiport only in the way
//! QEMU does it: the device always offers `VIRTIO_CONSOLE_F_MULTIPORT`.
//!
//! Queues: port 0's receive and transmit queues (0, 1), the control
//! receive and transmit queues (2, 3), then a pair per further port
//! (`2n + 2`, `2n + 3` for port `n`). The control handshake, as Linux and
//! QEMU run it: the driver sends DEVICE_READY; the device announces every
//! port with DEVICE_ADD; the driver answers each with PORT_READY; the
//! device tells it which ports are consoles (CONSOLE_PORT: Linux hooks
//! them to `hvcN`), their names (PORT_NAME: `/sys/class/virtio-ports/
//! vportNpM/name`) and whether the host side is connected (PORT_OPEN);
//! the driver sends PORT_OPEN when a program opens the port (a console
//! port is open from the start). Without MULTIPORT only port 0 exists.
//!
//! Data: the guest's transmit buffers go to the port's output (a chardev)
//! on a writer thread per port, so a slow output never stalls a vCPU (the
//! buffer goes back to the guest once written: the guest waits, nothing
//! piles up in hx86). Host input ([`PortInput::input`], on the chardev's
//! thread) goes into a buffer of [`PORT_INPUT_CAP`] bytes per port and from
//! there into the receive buffers the guest posted, once the guest opened
//! the port; while the buffer is full the caller waits (backpressure: a
//! socket peer stops being read), as QEMU stops reading a chardev the guest
//! is not ready for.
//!
//! Everything the guest controls is checked: a control message of the
//! wrong size, an unknown port or event is logged ("guest_errors") and
//! dropped; a descriptor outside RAM ends that buffer; a broken ring
//! (available index too far ahead, a used-ring write outside RAM) marks
//! the device DEVICE_NEEDS_RESET and stops it.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use thiserror::Error;
use virtio_queue::{Queue, QueueT};

use super::{feature as transport, id, ActivateError, Activation, VirtioDevice, VirtioInterrupt};
use crate::dma::GuestRam;

/// Host input a port holds for the guest before the caller waits.
pub const PORT_INPUT_CAP: usize = 64 * 1024;
/// QEMU's `max_ports` default for virtio-serial.
pub const DEFAULT_MAX_PORTS: u32 = 31;
/// The most ports a device takes (QEMU's limit: 1024 queues).
pub const MAX_PORTS: u32 = 511;
/// Ring sizes (QEMU's).
const DATA_QUEUE_SIZE: u16 = 128;
const CTRL_QUEUE_SIZE: u16 = 32;
/// The control queues.
const CTRL_RX: u16 = 2;
const CTRL_TX: u16 = 3;
/// How much of a transmit buffer is read at a time.
const TX_CHUNK: usize = 64 * 1024;
/// A control message: le32 id, le16 event, le16 value.
const CTRL_LEN: usize = 8;
/// Control messages waiting for receive buffers, per port (beyond that
/// the guest is not reading its control queue and they are dropped).
const CTRL_PENDING_PER_PORT: usize = 8;

/// The device's feature bits (virtio 1.2, 5.3.3).
pub mod feature {
    pub const SIZE: u64 = 1 << 0;
    pub const MULTIPORT: u64 = 1 << 1;
    pub const EMERG_WRITE: u64 = 1 << 2;
}

/// Control events (virtio 1.2, 5.3.6.2).
pub mod event {
    pub const DEVICE_READY: u16 = 0;
    pub const DEVICE_ADD: u16 = 1;
    pub const DEVICE_REMOVE: u16 = 2;
    pub const PORT_READY: u16 = 3;
    pub const CONSOLE_PORT: u16 = 4;
    pub const RESIZE: u16 = 5;
    pub const PORT_OPEN: u16 = 6;
    pub const PORT_NAME: u16 = 7;
}

/// The receive queue of port `nr` (the transmit queue follows it).
pub fn rx_queue(nr: u32) -> u16 {
    if nr == 0 {
        0
    } else {
        (2 * nr + 2) as u16
    }
}

/// One port as configured (`-device virtconsole` / `virtserialport`).
pub struct PortConfig {
    /// Its number (`nr=`); `None`: chosen as QEMU does (the first console
    /// gets 0, everything else the lowest free number from 1).
    pub nr: Option<u32>,
    /// `name=`: what the guest sees in the port's `name` attribute.
    pub name: Option<String>,
    /// A console port (`virtconsole`: Linux's `hvcN`).
    pub console: bool,
    /// Where the guest's output goes.
    pub output: Box<dyn Write + Send>,
}

/// A configuration QEMU would refuse too.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ConsoleError {
    #[error("max_ports={0} is out of range (1 to {MAX_PORTS})")]
    MaxPorts(u32),
    #[error("port number {nr} is out of range (max_ports={max})")]
    PortRange { nr: u32, max: u32 },
    #[error("port number {0} is used twice")]
    Duplicate(u32),
    #[error("port number 0 is reserved for a virtconsole")]
    PortZero,
    #[error("no free port number (max_ports={0})")]
    Full(u32),
    #[error("port name '{0}' is used twice")]
    DuplicateName(String),
}

struct Port {
    nr: u32,
    name: Option<String>,
    console: bool,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    /// Host input not yet in a guest buffer (at most [`PORT_INPUT_CAP`]).
    input: VecDeque<u8>,
    host_connected: bool,
    /// The driver answered DEVICE_ADD.
    guest_ready: bool,
    /// The guest has the port open (input is delivered).
    guest_open: bool,
    /// The transmit queue was notified since the writer last looked.
    tx_kick: bool,
}

/// The running device, between DRIVER_OK and reset.
struct Active {
    mem: GuestRam,
    irq: Arc<dyn VirtioInterrupt>,
    queues: Vec<Option<Queue>>,
    multiport: bool,
    /// Control messages for the driver, waiting for control receive
    /// buffers.
    ctrl_pending: VecDeque<Vec<u8>>,
    ctrl_cap: usize,
    broken: bool,
}

/// A popped descriptor chain: its head and its buffers.
struct Chain {
    head: u16,
    bufs: Vec<Buf>,
}

#[derive(Clone, Copy)]
struct Buf {
    addr: u64,
    len: u32,
    writable: bool,
}

struct State {
    ports: Vec<Port>,
    active: Option<Active>,
    /// Bumped at every reset: a worker of an older generation stops.
    generation: u64,
}

struct Shared {
    state: Mutex<State>,
    /// Woken when a transmit queue is notified, input was consumed or the
    /// device reset.
    cond: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The virtio-serial device with its ports.
pub struct VirtioConsole {
    shared: Arc<Shared>,
    max_ports: u32,
}

/// Feeds host input into one port (the chardev's side).
#[derive(Clone)]
pub struct PortInput {
    shared: Arc<Shared>,
    port: usize,
}

/// QEMU's numbering: the first console without `nr=` takes 0, every other
/// port without one the lowest free number from 1; port 0 is a console's.
fn assign_numbers(ports: &[PortConfig], max: u32) -> Result<Vec<u32>, ConsoleError> {
    let mut used: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(ports.len());
    for p in ports {
        let nr = match p.nr {
            Some(nr) => {
                if nr >= max {
                    return Err(ConsoleError::PortRange { nr, max });
                }
                if nr == 0 && !p.console {
                    return Err(ConsoleError::PortZero);
                }
                nr
            }
            None if p.console && !used.contains(&0) && !ports.iter().any(|q| q.nr == Some(0)) => 0,
            None => (1..max)
                .find(|n| !used.contains(n) && !ports.iter().any(|q| q.nr == Some(*n)))
                .ok_or(ConsoleError::Full(max))?,
        };
        if used.contains(&nr) {
            return Err(ConsoleError::Duplicate(nr));
        }
        used.push(nr);
        out.push(nr);
    }
    Ok(out)
}

impl VirtioConsole {
    /// A device for `max_ports` ports (QEMU's `max_ports`) with `ports`.
    pub fn new(max_ports: u32, ports: Vec<PortConfig>) -> Result<Self, ConsoleError> {
        if max_ports == 0 || max_ports > MAX_PORTS {
            return Err(ConsoleError::MaxPorts(max_ports));
        }
        let nrs = assign_numbers(&ports, max_ports)?;
        let mut names: Vec<&str> = Vec::new();
        for n in ports.iter().filter_map(|p| p.name.as_deref()) {
            if names.contains(&n) {
                return Err(ConsoleError::DuplicateName(n.to_string()));
            }
            names.push(n);
        }
        let ports = ports
            .into_iter()
            .zip(nrs)
            .map(|(p, nr)| Port {
                nr,
                name: p.name,
                console: p.console,
                out: Arc::new(Mutex::new(p.output)),
                input: VecDeque::new(),
                host_connected: false,
                guest_ready: false,
                guest_open: false,
                tx_kick: false,
            })
            .collect();
        Ok(Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    ports,
                    active: None,
                    generation: 0,
                }),
                cond: Condvar::new(),
            }),
            max_ports,
        })
    }

    /// The port numbers, in the order the ports were given.
    pub fn port_numbers(&self) -> Vec<u32> {
        self.shared.lock().ports.iter().map(|p| p.nr).collect()
    }

    /// The input side of the `i`th port given to [`VirtioConsole::new`].
    pub fn port_input(&self, i: usize) -> Option<PortInput> {
        (i < self.shared.lock().ports.len()).then(|| PortInput {
            shared: self.shared.clone(),
            port: i,
        })
    }
}

impl Drop for VirtioConsole {
    fn drop(&mut self) {
        self.shared.lock().stop();
        self.shared.cond.notify_all();
    }
}

impl PortInput {
    /// Bytes from the host for the guest. Waits while the port's buffer is
    /// full (until the guest takes some).
    pub fn input(&self, mut data: &[u8]) {
        let mut st = self.shared.lock();
        loop {
            let port = &mut st.ports[self.port];
            let n = data.len().min(PORT_INPUT_CAP - port.input.len());
            port.input.extend(&data[..n]);
            data = &data[n..];
            st.fill_rx(self.port, &self.shared.cond);
            if data.is_empty() {
                return;
            }
            st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// The host side connected or went away (a socket's client): the
    /// guest hears it as PORT_OPEN.
    pub fn set_host_connected(&self, connected: bool) {
        let mut st = self.shared.lock();
        let port = &mut st.ports[self.port];
        if port.host_connected == connected {
            return;
        }
        port.host_connected = connected;
        let (nr, ready) = (port.nr, port.guest_ready);
        if let Some(a) = st.active.as_mut().filter(|a| a.multiport && ready) {
            a.send_ctrl(nr, event::PORT_OPEN, connected.into(), &[]);
        }
    }
}

impl VirtioDevice for VirtioConsole {
    fn device_type(&self) -> u32 {
        id::CONSOLE
    }

    fn queue_max_sizes(&self) -> Vec<u16> {
        (0..2 * (self.max_ports as usize + 1))
            .map(|q| match q as u16 {
                CTRL_RX | CTRL_TX => CTRL_QUEUE_SIZE,
                _ => DATA_QUEUE_SIZE,
            })
            .collect()
    }

    fn device_features(&self) -> u64 {
        feature::MULTIPORT
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // cols, rows (0: no size), max_nr_ports, emerg_wr.
        let mut cfg = [0u8; 12];
        cfg[4..8].copy_from_slice(&self.max_ports.to_le_bytes());
        super::read_config_bytes(&cfg, offset, data);
    }

    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        let multiport = act.features & feature::MULTIPORT != 0;
        let event_idx = act.features & transport::RING_EVENT_IDX != 0;
        let mut queues: Vec<Option<Queue>> = (0..2 * (self.max_ports + 1)).map(|_| None).collect();
        for (i, mut q) in act.queues {
            q.set_event_idx(event_idx);
            if let Some(slot) = queues.get_mut(usize::from(i)) {
                *slot = Some(q);
            }
        }
        let required: &[u16] = if multiport {
            &[CTRL_RX, CTRL_TX]
        } else {
            &[0, 1]
        };
        if let Some(&q) = required.iter().find(|&&q| queues[usize::from(q)].is_none()) {
            return Err(ActivateError::MissingQueue(q));
        }
        let mut st = self.shared.lock();
        st.stop();
        let generation = st.generation;
        let nports = st.ports.len();
        st.active = Some(Active {
            mem: act.mem,
            irq: act.interrupt,
            queues,
            multiport,
            ctrl_pending: VecDeque::new(),
            ctrl_cap: CTRL_PENDING_PER_PORT * (nports + 1),
            broken: false,
        });
        for i in 0..nports {
            let q = rx_queue(st.ports[i].nr) + 1;
            let has_tx = st
                .active
                .as_mut()
                .is_some_and(|a| a.queue(q).is_some() && (multiport || q == 1));
            if !has_tx {
                continue;
            }
            if !multiport {
                st.ports[i].guest_ready = true;
                st.ports[i].guest_open = true;
            }
            let shared = self.shared.clone();
            std::thread::Builder::new()
                .name(format!("virtio-serial port {}", st.ports[i].nr))
                .spawn(move || rings::writer(shared, i, generation))
                .map_err(|e| ActivateError::Backend(format!("cannot start a writer: {e}")))?;
        }
        for i in 0..nports {
            st.fill_rx(i, &self.shared.cond);
        }
        Ok(())
    }

    fn queue_notify(&mut self, index: u16) {
        let mut st = self.shared.lock();
        if st.active.is_none() {
            return;
        }
        match index {
            CTRL_RX => {
                if let Some(a) = st.active.as_mut() {
                    a.flush_ctrl();
                }
            }
            CTRL_TX => st.control_queue(&self.shared.cond),
            q => {
                let nr = if q < 2 { 0 } else { u32::from(q) / 2 - 1 };
                let Some(i) = st.port_by_nr(nr) else {
                    return;
                };
                if q % 2 == 0 {
                    st.fill_rx(i, &self.shared.cond);
                } else {
                    st.ports[i].tx_kick = true;
                    self.shared.cond.notify_all();
                }
            }
        }
    }

    fn reset(&mut self) {
        // A writer in the middle of an output write finds the new
        // generation before it touches the rings again.
        self.shared.lock().stop();
        self.shared.cond.notify_all();
    }

    fn name(&self) -> &'static str {
        "virtio-serial"
    }
}

#[path = "console_rings.rs"]
mod rings;

#[cfg(test)]
#[path = "console_tests.rs"]
mod tests;

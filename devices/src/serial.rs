//! 16550A UART (8 registers, e.g. COM1 at 0x3F8), on top of vm-superio.
//!
//! vm-superio models the registers and the 64-byte receive FIFO; this wrapper
//! adds a level-triggered interrupt line (asserted while the IIR shows a
//! pending interrupt), byte-wise dispatch of wider accesses and the
//! [`BusDevice`] glue. Output is written and flushed byte by byte, so a
//! console stays interactive.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use vm_superio::{serial::NoEvents, Trigger};

use crate::bus::{BusDevice, IrqLine, VmRequest};

/// Number of I/O ports a UART occupies.
pub const SERIAL_PORT_LEN: u64 = 8;

const IIR_OFFSET: u8 = 2;
const IIR_NONE_BIT: u8 = 1;

/// vm-superio [`Trigger`] that asserts an [`IrqLine`].
pub struct IrqTrigger {
    line: Arc<dyn IrqLine>,
    level: AtomicBool,
}

impl IrqTrigger {
    /// A trigger driving `line`, initially deasserted.
    pub fn new(line: Arc<dyn IrqLine>) -> Self {
        Self {
            line,
            level: AtomicBool::new(false),
        }
    }

    /// Drive the line to `level`, telling the line only about changes.
    pub fn set_level(&self, level: bool) {
        if self.level.swap(level, Ordering::AcqRel) != level {
            log::trace!(target: "int", "serial irq line -> {}", level);
            self.line.set_level(level);
        }
    }

    /// The level last driven.
    pub fn level(&self) -> bool {
        self.level.load(Ordering::Acquire)
    }
}

impl Trigger for IrqTrigger {
    type E = std::convert::Infallible;

    fn trigger(&self) -> Result<(), Self::E> {
        self.set_level(true);
        Ok(())
    }
}

type Inner = vm_superio::Serial<IrqTrigger, NoEvents, Box<dyn Write + Send>>;

/// A 16550A UART.
pub struct Serial {
    inner: Inner,
}

impl Serial {
    /// A UART raising `irq` and writing what the guest transmits to `out`.
    pub fn new(irq: Arc<dyn IrqLine>, out: Box<dyn Write + Send>) -> Self {
        Self {
            inner: vm_superio::Serial::new(IrqTrigger::new(irq), out),
        }
    }

    /// Queue bytes for the guest to receive (the console's stdin side).
    /// Returns how many were accepted; the rest did not fit in the FIFO and
    /// should be offered again later (see [`Serial::input_room`]).
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        let room = self.inner.fifo_capacity();
        if bytes.is_empty() || room == 0 {
            return 0;
        }
        let n = match self
            .inner
            .enqueue_raw_bytes(&bytes[..bytes.len().min(room)])
        {
            Ok(n) => n,
            Err(e) => {
                log::debug!(target: "guest_errors", "serial input dropped: {}", e);
                0
            }
        };
        self.update_irq();
        n
    }

    /// Free space in the receive FIFO, in bytes. In loopback mode the UART
    /// takes no external input, so this is then 0.
    pub fn input_room(&self) -> usize {
        if self.inner.state().modem_control & 0x10 != 0 {
            0
        } else {
            self.inner.fifo_capacity()
        }
    }

    /// Whether the interrupt line is asserted.
    pub fn irq_level(&self) -> bool {
        self.inner.interrupt_evt().level()
    }

    /// The output sink.
    pub fn writer_mut(&mut self) -> &mut (dyn Write + Send) {
        self.inner.writer_mut().as_mut()
    }

    /// Make the line follow the IIR: asserted while an interrupt is pending.
    fn update_irq(&mut self) {
        let pending = self.inner.state().interrupt_identification & IIR_NONE_BIT == 0;
        self.inner.interrupt_evt().set_level(pending);
    }

    fn read_reg(&mut self, offset: u64) -> u8 {
        match u8::try_from(offset) {
            Ok(off) if u64::from(off) < SERIAL_PORT_LEN => self.inner.read(off),
            _ => {
                log::debug!(target: "guest_errors", "serial: read beyond the UART at +{:#x}", offset);
                0xff
            }
        }
    }

    fn write_reg(&mut self, offset: u64, value: u8) {
        match u8::try_from(offset) {
            Ok(off) if u64::from(off) < SERIAL_PORT_LEN => {
                if let Err(e) = self.inner.write(off, value) {
                    log::warn!("serial: output error: {}", e);
                }
            }
            _ => {
                log::debug!(target: "guest_errors", "serial: write beyond the UART at +{:#x}", offset)
            }
        }
    }
}

impl BusDevice for Serial {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut iir_read = false;
        for (i, d) in data.iter_mut().enumerate() {
            let off = offset.saturating_add(i as u64);
            iir_read |= off == u64::from(IIR_OFFSET);
            *d = self.read_reg(off);
        }
        // Only RBR and IIR reads change the interrupt state.
        if iir_read || offset == 0 {
            self.update_irq();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        for (i, &v) in data.iter().enumerate() {
            self.write_reg(offset.saturating_add(i as u64), v);
        }
        self.update_irq();
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{RecordingIrq, SharedBuf};

    const THR: u64 = 0;
    const IER: u64 = 1;
    const IIR: u64 = 2;
    const LCR: u64 = 3;
    const MCR: u64 = 4;
    const LSR: u64 = 5;
    const SCR: u64 = 7;

    fn uart() -> (Serial, Arc<RecordingIrq>, SharedBuf) {
        let irq = Arc::new(RecordingIrq::default());
        let out = SharedBuf::default();
        let s = Serial::new(irq.clone(), Box::new(out.clone()));
        (s, irq, out)
    }

    fn rd(s: &mut Serial, off: u64) -> u8 {
        let mut d = [0u8];
        s.read(off, &mut d);
        d[0]
    }

    #[test]
    fn thr_goes_to_writer_and_lsr_shows_empty() {
        let (mut s, irq, out) = uart();
        assert_eq!(rd(&mut s, LSR) & 0x60, 0x60);
        for b in b"hi\n" {
            s.write(THR, &[*b]);
        }
        assert_eq!(out.contents(), b"hi\n");
        assert_eq!(rd(&mut s, LSR) & 0x60, 0x60);
        // No interrupt enabled: line never moved.
        assert!(irq.levels().is_empty());
    }

    #[test]
    fn dlab_selects_divisor_latch() {
        let (mut s, _irq, out) = uart();
        s.write(LCR, &[0x83]);
        s.write(0, &[0x01]);
        s.write(1, &[0x02]);
        assert_eq!(rd(&mut s, 0), 0x01);
        assert_eq!(rd(&mut s, 1), 0x02);
        s.write(LCR, &[0x03]);
        assert_eq!(rd(&mut s, IER), 0);
        assert!(out.contents().is_empty());
        s.write(SCR, &[0x5a]);
        assert_eq!(rd(&mut s, SCR), 0x5a);
    }

    #[test]
    fn thre_interrupt_follows_ier_and_iir() {
        let (mut s, irq, _out) = uart();
        assert_eq!(rd(&mut s, IIR) & 0x0f, 0x01);
        s.write(IER, &[0x02]);
        assert!(s.irq_level() && irq.level());
        assert_eq!(irq.levels(), vec![true]);
        assert_eq!(rd(&mut s, IIR), 0xc2);
        assert!(!s.irq_level());
        assert_eq!(irq.levels(), vec![true, false]);
        s.write(THR, b"x");
        assert!(s.irq_level());
        assert_eq!(rd(&mut s, IIR) & 0x0f, 0x02);
        assert!(!s.irq_level());
    }

    #[test]
    fn rx_data_raises_interrupt_when_enabled() {
        let (mut s, irq, _out) = uart();
        assert_eq!(s.enqueue_input(b"a"), 1);
        assert!(irq.levels().is_empty());
        assert_eq!(rd(&mut s, LSR) & 1, 1);
        assert_eq!(rd(&mut s, THR), b'a');
        assert_eq!(rd(&mut s, LSR) & 1, 0);

        s.write(IER, &[0x01]);
        assert!(!s.irq_level());
        assert_eq!(s.enqueue_input(b"bc"), 2);
        assert!(s.irq_level());
        assert_eq!(rd(&mut s, IIR) & 0x0f, 0x04);
        assert_eq!(rd(&mut s, THR), b'b');
        assert_eq!(rd(&mut s, THR), b'c');
        assert!(!s.irq_level());
        assert_eq!(rd(&mut s, LSR) & 1, 0);
    }

    #[test]
    fn fifo_room_and_overflow() {
        let (mut s, _irq, _out) = uart();
        let room = s.input_room();
        assert_eq!(room, 64);
        assert_eq!(s.enqueue_input(&[7u8; 100]), 64);
        assert_eq!(s.input_room(), 0);
        assert_eq!(s.enqueue_input(b"x"), 0);
        rd(&mut s, THR);
        assert_eq!(s.input_room(), 1);
        // Loopback mode takes no external input.
        s.write(MCR, &[0x10]);
        assert_eq!(s.input_room(), 0);
    }

    #[test]
    fn hostile_accesses_do_not_panic() {
        let (mut s, _irq, _out) = uart();
        let mut d = [0u8; 16];
        s.read(6, &mut d);
        assert_eq!(&d[2..], &[0xff; 14]);
        s.read(u64::MAX, &mut d);
        s.write(u64::MAX - 1, &[1, 2, 3, 4]);
        s.write(3, &[]);
        s.read(0, &mut []);
    }
}

//! QEMU's `isa-debug-exit`: a guest write of value `v` ends the emulator with
//! exit status `(v << 1) | 1`.

use crate::bus::{le_value, BusDevice, VmRequest};

/// The isa-debug-exit port (QEMU default: iobase 0x501, iosize 1).
#[derive(Clone, Copy, Debug)]
pub struct DebugExit {
    iosize: u64,
}

impl DebugExit {
    /// A port of `iosize` bytes (the length to insert it on the bus with).
    /// An `iosize` of 0 is treated as 1.
    pub fn new(iosize: u64) -> Self {
        Self {
            iosize: iosize.max(1),
        }
    }

    /// The number of ports the device covers.
    pub fn len(&self) -> u64 {
        self.iosize
    }

    /// Never true: the device always covers at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The exit status QEMU reports for a written value.
    pub fn exit_code(value: u64) -> i32 {
        // Truncation to the process status width is what QEMU's exit() does.
        ((value << 1) | 1) as i32
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        if offset >= self.iosize || data.is_empty() {
            log::debug!(target: "guest_errors", "debug-exit: write at +{:#x} of {} bytes ignored", offset, data.len());
            return None;
        }
        let value = le_value(&data[..data.len().min(4)]);
        log::debug!(target: "ioport", "debug-exit: guest wrote {:#x}", value);
        Some(VmRequest::Exit(Self::exit_code(value)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_value_math_per_size() {
        let mut d = DebugExit::new(4);
        assert_eq!(d.write(0, &[0]), Some(VmRequest::Exit(1)));
        assert_eq!(d.write(0, &[0x10]), Some(VmRequest::Exit(0x21)));
        assert_eq!(d.write(0, &[0xff]), Some(VmRequest::Exit(0x1ff)));
        assert_eq!(d.write(0, &[0x34, 0x12]), Some(VmRequest::Exit(0x2469)));
        assert_eq!(
            d.write(0, &[0x78, 0x56, 0x34, 0x12]),
            Some(VmRequest::Exit(0x2468_acf1))
        );
        assert_eq!(d.write(0, &[0xff; 4]), Some(VmRequest::Exit(-1)));
        // Wider than 4 bytes: only the first 4 count.
        assert_eq!(
            d.write(0, &[1, 0, 0, 0, 9, 9, 9, 9]),
            Some(VmRequest::Exit(3))
        );
    }

    #[test]
    fn reads_and_out_of_range() {
        let mut d = DebugExit::new(1);
        let mut b = [0u8; 2];
        d.read(0, &mut b);
        assert_eq!(b, [0xff, 0xff]);
        assert_eq!(d.write(1, &[1]), None);
        assert_eq!(d.write(0, &[]), None);
        assert_eq!(DebugExit::new(0).len(), 1);
    }
}

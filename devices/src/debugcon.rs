//! QEMU's `isa-debugcon` (Bochs' "port 0xE9 hack"): every byte the guest
//! writes to the port goes to the output; a read returns the `readback`
//! value (0xE9 by default, so a guest can detect the device).
//!
//! The port is one byte wide, as in QEMU: of a wider access only the first
//! byte is the device's (the rest belongs to the next port).

use std::io::Write;

use crate::bus::{BusDevice, VmRequest};

/// QEMU's default port and read-back value.
pub const DEBUGCON_PORT: u16 = 0xe9;

/// The debug console port.
pub struct Debugcon {
    out: Box<dyn Write + Send>,
    readback: u8,
}

impl Debugcon {
    /// A port writing to `out` and reading back `readback`.
    pub fn new(out: Box<dyn Write + Send>, readback: u8) -> Self {
        Self { out, readback }
    }
}

impl BusDevice for Debugcon {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        if offset == 0 {
            if let Some(d) = data.first_mut() {
                *d = self.readback;
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        let (0, Some(&b)) = (offset, data.first()) else {
            return None;
        };
        if let Err(e) = self.out.write_all(&[b]).and_then(|_| self.out.flush()) {
            log::debug!(target: "guest_errors", "isa-debugcon: output failed: {e}");
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::SharedBuf;

    #[test]
    fn writes_go_out_and_reads_come_back() {
        let buf = SharedBuf::default();
        let mut d = Debugcon::new(Box::new(buf.clone()), 0xe9);
        for b in b"hi\n" {
            assert_eq!(d.write(0, &[*b]), None);
        }
        // Only the first byte of a wider write is the port's.
        d.write(0, b"!?");
        d.write(1, b"x");
        d.write(0, &[]);
        assert_eq!(buf.contents(), b"hi\n!");
        let mut r = [0u8; 2];
        d.read(0, &mut r);
        assert_eq!(r, [0xe9, 0xff]);
        let mut d = Debugcon::new(Box::new(std::io::sink()), 0x42);
        let mut r = [0u8; 1];
        d.read(0, &mut r);
        assert_eq!(r, [0x42]);
        d.read(3, &mut r);
        assert_eq!(r, [0xff]);
    }
}

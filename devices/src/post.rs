//! Port 0x80, the POST diagnostic port. Writes are logged under "ioport";
//! Linux also uses it as an I/O delay, so it must be cheap.

use crate::bus::{BusDevice, VmRequest};

/// The POST code port.
#[derive(Clone, Copy, Debug, Default)]
pub struct PostCode {
    last: u8,
}

impl PostCode {
    /// A port that has seen no code yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last byte written.
    pub fn last(&self) -> u8 {
        self.last
    }
}

impl BusDevice for PostCode {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
        if let Some(&b) = data.first() {
            self.last = b;
            log::debug!(target: "ioport", "POST code {:#04x} (+{:#x}, {} bytes)", b, offset, data.len());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_recorded_and_ignored() {
        let mut p = PostCode::new();
        assert_eq!(p.write(0, &[0x42]), None);
        assert_eq!(p.last(), 0x42);
        assert_eq!(p.write(5, &[]), None);
        let mut d = [0u8; 3];
        p.read(0, &mut d);
        assert_eq!(d, [0xff; 3]);
    }
}

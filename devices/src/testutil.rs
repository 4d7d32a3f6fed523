//! Test doubles shared by the device tests.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::bus::IrqLine;

/// An interrupt line recording every level it is driven to.
#[derive(Default)]
pub struct RecordingIrq {
    levels: Mutex<Vec<bool>>,
}

impl RecordingIrq {
    pub fn levels(&self) -> Vec<bool> {
        self.levels.lock().unwrap().clone()
    }

    pub fn level(&self) -> bool {
        self.levels().last().copied().unwrap_or(false)
    }
}

impl IrqLine for RecordingIrq {
    fn set_level(&self, level: bool) {
        self.levels.lock().unwrap().push(level);
    }
}

/// A `Write` whose contents tests can inspect.
#[derive(Clone, Default)]
pub struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    pub fn contents(&self) -> Vec<u8> {
        self.0.lock().unwrap().clone()
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

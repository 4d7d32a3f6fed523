//! MSI-X (PCI 3.0, 6.8.2): the vector table and the pending bit array a
//! function exposes in a BAR, and the sink that turns a message into an
//! interrupt (the machine's `Vm::signal_msi`).
//!
//! Each table entry is 16 bytes: message address (low, high), message data
//! and vector control (bit 0: masked; entries start masked). A vector that
//! fires while masked (its own bit or the function mask in the capability's
//! message control) sets its pending bit instead; unmasking sends it.

/// Where MSI messages go: the machine delivers `data` written to `addr`.
pub trait MsiSink: Send + Sync {
    /// Deliver one message.
    fn send_msi(&self, addr: u64, data: u32);
}

/// "No vector" in virtio's MSI-X vector registers.
pub const NO_VECTOR: u16 = 0xffff;

/// Bytes per table entry.
pub const ENTRY_SIZE: usize = 16;
const CTRL: usize = 12;
const CTRL_MASKED: u8 = 1;

/// The table, the pending bits and the capability's enable and mask bits.
pub struct MsixTable {
    table: Vec<u8>,
    pending: Vec<bool>,
    enabled: bool,
    function_mask: bool,
}

impl MsixTable {
    /// A table of `n` vectors (1..=2048), all masked, MSI-X disabled.
    pub fn new(n: u16) -> Self {
        let n = usize::from(n.clamp(1, 2048));
        let mut table = vec![0u8; n * ENTRY_SIZE];
        for e in table.chunks_mut(ENTRY_SIZE) {
            e[CTRL] = CTRL_MASKED;
        }
        Self {
            table,
            pending: vec![false; n],
            enabled: false,
            function_mask: false,
        }
    }

    /// How many vectors.
    pub fn len(&self) -> u16 {
        self.pending.len() as u16
    }

    /// Never empty (at least one vector); for clippy's sake.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// MSI-X enabled in the capability.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Function mask of the capability.
    pub fn function_mask(&self) -> bool {
        self.function_mask
    }

    fn masked(&self, v: usize) -> bool {
        self.function_mask || self.table[v * ENTRY_SIZE + CTRL] & CTRL_MASKED != 0
    }

    fn message(&self, v: usize) -> (u64, u32) {
        let e = &self.table[v * ENTRY_SIZE..(v + 1) * ENTRY_SIZE];
        let dw = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        (u64::from(dw(0)) | u64::from(dw(4)) << 32, dw(8))
    }

    /// Is vector `v` pending?
    pub fn pending(&self, v: u16) -> bool {
        self.pending.get(usize::from(v)).copied().unwrap_or(false)
    }

    /// Vector `v` fires: its message is sent, or, while it is masked (or
    /// there is no `sink`: bus mastering is off), remembered in its pending
    /// bit. Returns the message sent.
    pub fn notify(&mut self, v: u16, sink: Option<&dyn MsiSink>) -> Option<(u64, u32)> {
        let v = usize::from(v);
        if v >= self.pending.len() {
            return None;
        }
        let Some(sink) = sink.filter(|_| !self.masked(v)) else {
            self.pending[v] = true;
            return None;
        };
        let (addr, data) = self.message(v);
        sink.send_msi(addr, data);
        Some((addr, data))
    }

    /// Sends the pending vectors no longer masked.
    fn flush_pending(&mut self, sink: Option<&dyn MsiSink>) {
        let Some(sink) = sink.filter(|_| self.enabled) else {
            return;
        };
        for v in 0..self.pending.len() {
            if self.pending[v] && !self.masked(v) {
                self.pending[v] = false;
                let (addr, data) = self.message(v);
                log::trace!(target: "virtio", "msix: pending vector {v} sent on unmask");
                sink.send_msi(addr, data);
            }
        }
    }

    /// The capability's message control bits changed.
    pub fn set_control(&mut self, enabled: bool, function_mask: bool, sink: Option<&dyn MsiSink>) {
        self.enabled = enabled;
        self.function_mask = function_mask;
        self.flush_pending(sink);
    }

    /// Reads the table at byte `offset` (bytes past it read as 0).
    pub fn read_table(&self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            *d = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| self.table.get(o))
                .copied()
                .unwrap_or(0);
        }
    }

    /// Writes the table at byte `offset`; an entry unmasked with its
    /// pending bit set sends its message.
    pub fn write_table(&mut self, offset: u64, data: &[u8], sink: Option<&dyn MsiSink>) {
        for (i, &v) in data.iter().enumerate() {
            let Some(o) = usize::try_from(offset).ok().and_then(|o| o.checked_add(i)) else {
                break;
            };
            let Some(b) = self.table.get_mut(o) else {
                break;
            };
            *b = match o % ENTRY_SIZE {
                CTRL => v & CTRL_MASKED,
                13..=15 => 0,
                _ => v,
            };
        }
        self.flush_pending(sink);
    }

    /// Reads the pending bit array at byte `offset`.
    pub fn read_pba(&self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            let byte = offset.saturating_add(i as u64);
            *d = (0..8u64)
                .filter(|b| {
                    byte.checked_mul(8)
                        .and_then(|x| usize::try_from(x + b).ok())
                        .and_then(|v| self.pending.get(v))
                        .copied()
                        .unwrap_or(false)
                })
                .fold(0u8, |acc, b| acc | 1 << b);
        }
    }

    /// Clears every pending bit (function reset).
    pub fn clear_pending(&mut self) {
        self.pending.fill(false);
    }
}

//! The `dbt` accelerator: runs [`x86::CpuState`] through hx86's own
//! interpreter (and, later, the JIT). Placeholder until the interpreter lands.

use std::sync::Arc;

use crate::{Accelerator, Error, GuestMemory, IoHandler, Result, Vm};

/// The binary-translation accelerator.
pub struct DbtAccel;

impl DbtAccel {
    pub fn new() -> Self {
        DbtAccel
    }
}

impl Default for DbtAccel {
    fn default() -> Self {
        Self::new()
    }
}

impl Accelerator for DbtAccel {
    fn name(&self) -> &'static str {
        "dbt"
    }
    fn create_vm(&self, _mem: GuestMemory, _io: Arc<dyn IoHandler>) -> Result<Box<dyn Vm>> {
        Err(Error::Unavailable(
            "the dbt accelerator cannot run guests yet".into(),
        ))
    }
}

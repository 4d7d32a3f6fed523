//! The `kvm` accelerator.
use std::sync::Arc;

use crate::{Accelerator, Error, GuestMemory, IoHandler, Result, Vm};

pub struct KvmAccel;

impl KvmAccel {
    pub fn probe() -> Result<Self> {
        Err(Error::Unavailable("not implemented".into()))
    }
}

impl Accelerator for KvmAccel {
    fn name(&self) -> &'static str {
        "kvm"
    }
    fn create_vm(&self, _mem: GuestMemory, _io: Arc<dyn IoHandler>) -> Result<Box<dyn Vm>> {
        Err(Error::Unavailable("not implemented".into()))
    }
}

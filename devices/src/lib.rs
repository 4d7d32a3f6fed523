//! Emulated devices of the hx86 PC machine and the buses they sit on.
//!
//! Log targets (the CLI's `-d` categories): "ioport" (unhandled and POST port
//! accesses), "guest_errors" (guest misuse of a device), "int" (interrupt
//! delivery) and "unimp" (features not modelled).

pub mod bus;
pub mod debug_exit;
pub mod post;
pub mod power;
pub mod serial;

#[cfg(test)]
mod testutil;

pub use bus::{Bus, BusDevice, BusError, IrqLine, NoIrq, VmRequest};
pub use debug_exit::DebugExit;
pub use post::PostCode;
pub use power::{PowerOffPort, SLP_EN};
pub use serial::{IrqTrigger, Serial, SERIAL_PORT_LEN};

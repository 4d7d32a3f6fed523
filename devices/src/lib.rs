//! Emulated devices of the hx86 PC machine and the buses they sit on.
//!
//! Log targets (the CLI's `-d` categories): "ioport" (unhandled and POST port
//! accesses), "guest_errors" (guest misuse of a device), "int" (interrupt
//! delivery) and "unimp" (features not modelled).
//!
//! Wiring for a backend without an in-kernel irqchip (the DBT): build an
//! [`IrqChip`] (i8259 pair, IOAPIC, local APIC, i8254) into a
//! [`SharedIrqChip`], put it on the buses with [`attach_irqchip`], and give
//! devices [`GsiLine`]s. The vCPU asks [`IrqChip::pending_interrupt`] /
//! [`IrqChip::acknowledge`] at instruction boundaries and sleeps until
//! [`IrqChip::next_deadline_ns`]. The [`Rtc`] raises IRQ8 through its own
//! line: poll it ([`Rtc::poll`], [`Rtc::next_deadline_ns`]) without holding
//! the chip's lock, since its line takes that lock. The i8042's two ports are
//! not contiguous: use [`attach_i8042`]; nor are `pc-testdev`'s: use
//! [`attach_pc_testdev`]. PCI functions with BARs ([`PciBarFunction`]) are
//! decoded through two [`PciBarSpace`]s set as the buses' fallbacks.

pub mod acpi_pm;
pub mod bus;
pub mod clock;
pub mod debug_exit;
pub mod debugcon;
pub mod dma;
pub mod fw_cfg;
pub mod i8042;
pub mod ioapic;
pub mod irqchip;
pub mod lapic;
mod lapic_timer;
pub mod pc_testdev;
pub mod pci;
pub mod pci_bars;
pub mod pci_testdev;
pub mod pic;
pub mod pit;
pub mod post;
pub mod power;
pub mod rtc;
mod rtc_time;
pub mod serial;
pub mod virtio;

#[cfg(test)]
mod testutil;

pub use acpi_pm::{Pm1Event, PmTimer, PM_TIMER_HZ};
pub use bus::{Bus, BusDevice, BusError, BusFallback, IrqLine, NoIrq, VmRequest};
pub use clock::{Clock, HostClock, ManualClock};
pub use debug_exit::DebugExit;
pub use debugcon::{Debugcon, DEBUGCON_PORT};
pub use fw_cfg::{DmaMemory, FwCfg, FwCfgBuilder, FwCfgError, FW_CFG_PORT, FW_CFG_PORT_LEN};
pub use i8042::{attach_i8042, I8042Port, I8042PortKind, I8042};
pub use ioapic::{IoApic, IOAPIC_BASE, IOAPIC_SIZE};
pub use irqchip::{
    attach_irqchip, lock_chip, ChipRegion, GsiLine, IrqChip, IrqChipDevice, IrqNotifier,
    SharedIrqChip,
};
pub use lapic::{ApicMessage, LocalApic, LAPIC_BASE, LAPIC_SIZE};
pub use lapic_timer::TimerMode;
pub use pc_testdev::{attach_pc_testdev, attach_pc_testdev_byte_view, PcTestdev};
pub use pci::{
    BarInfo, PciConfigIo, PciConfigSpace, PciError, PciFunction, PCI_CONFIG_LEN, PCI_CONFIG_PORT,
};
pub use pci_bars::{Bar, BarKind, PciBarFunction, PciBarSpace};
pub use pci_testdev::{pci_testdev, PciTestdev};
pub use pic::Pic;
pub use pit::{Pit, PIT_HZ};
pub use post::PostCode;
pub use power::{PowerOffPort, SLP_EN};
pub use rtc::{Rtc, RTC_PORT};
pub use serial::{IrqTrigger, Serial, SERIAL_PORT_LEN};

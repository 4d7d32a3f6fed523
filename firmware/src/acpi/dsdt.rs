//! The DSDT: hand-encoded AML for
//!
//! ```text
//! DefinitionBlock ("", "DSDT", 2, "HX86  ", "HX86DSDT", 1)
//! {
//!     Scope (\_SB)
//!     {
//!         Device (PCI0)                       // if pci_host_bridge
//!         {
//!             Name (_HID, EisaId ("PNP0A03"))
//!             Name (_UID, Zero)
//!             Name (_CRS, ResourceTemplate ()
//!             {
//!                 WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
//!                     0x0000, 0x0000, 0x00FF, 0x0000, 0x0100)
//!                 IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
//!                 WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
//!                     0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8)
//!                 WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
//!                     0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300)
//!                 DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed,
//!                     NonCacheable, ReadWrite,
//!                     0x00000000, 0xC0000000, 0xFEBFFFFF, 0x00000000, 0x3EC00000)
//!             })
//!             Name (_PRT, Package (0x80)      // slot s, pin p (0 = INTA):
//!             {                               // GSI PCI_INTX_GSIS[(s + p) & 3]
//!                 Package (0x04) { 0x0000FFFF, Zero, Zero, 0x0A },
//!                 ...
//!                 Package (0x04) { 0x001FFFFF, 0x03, Zero, 0x0B }
//!             })
//!             Device (FWCF)                   // if fw_cfg_port (here 0x510)
//!             {
//!                 Name (_HID, "QEMU0002")
//!                 Name (_STA, 0x0B)
//!                 Name (_CRS, ResourceTemplate ()
//!                 {
//!                     IO (Decode16, 0x0510, 0x0510, 0x01, 0x0C)
//!                 })
//!             }
//!         }
//!     }
//!     Name (\_S5, Package (0x04) { typ, typ, Zero, Zero })   // typ: s5_slp_typ
//! }
//! ```
//!
//! Without a PNP0A03 root bridge in the namespace, Linux (which uses ACPI
//! for PCI when ACPI is on) would not scan PCI bus 0 at all. The bridge
//! decodes all I/O ports but the config ports (the legacy devices sit
//! behind it, as on a PIIX PC) and the 32-bit MMIO hole up to the IOAPIC.
//! `_PRT` routes each slot's INTA-INTD straight to a GSI (no link devices):
//! QEMU's PIIX wiring, where pin p of slot s is PIRQ link (s + p) & 3, with
//! the links on IRQ 10, 10, 11, 11 as SeaBIOS sets them; Linux then uses
//! them level-triggered (the virtio devices' INTx fallback). `FWCF` sits
//! inside `PCI0` as on QEMU's i440FX machine (in `\_SB` when there is no
//! host bridge), so Linux's `qemu_fw_cfg` driver finds the device.

use super::aml::{self, res};
use super::tables::{sdt, DSDT_REVISION};
use super::AcpiConfig;
use crate::layout::{IOAPIC_BASE, MMIO_HOLE_START};
use crate::Error;

/// PCI configuration mechanism #1 ports.
pub const PCI_CONFIG_PORT: u16 = 0xCF8;
pub const PCI_CONFIG_PORTS: u8 = 8;

/// The PCI host bridge's 32-bit memory window: the MMIO hole up to the
/// IOAPIC.
pub const PCI_MMIO_START: u32 = MMIO_HOLE_START as u32;
pub const PCI_MMIO_END: u32 = IOAPIC_BASE as u32 - 1;

const _: () = assert!(MMIO_HOLE_START < IOAPIC_BASE && IOAPIC_BASE <= u32::MAX as u64);

/// `Device (FWCF)`: QEMU's fw_cfg at I/O `port` (12 ports), which Linux's
/// `qemu_fw_cfg` driver binds to by its `_HID`.
fn fwcf(port: u16) -> Result<Vec<u8>, Error> {
    let crs = res::template(&[res::io(port, port, 1, FW_CFG_PORTS)]);
    let body = [
        aml::name("_HID", &aml::string("QEMU0002")?)?,
        aml::name("_STA", &aml::integer(0x0B))?,
        aml::name("_CRS", &aml::buffer(&crs)?)?,
    ]
    .concat();
    aml::device("FWCF", &body)
}

/// The GSIs of PIIX's PIRQ links A-D as SeaBIOS programs them under QEMU.
pub const PCI_INTX_GSIS: [u8; 4] = [10, 10, 11, 11];

/// The GSI of interrupt pin `pin` (0 = INTA) of the device in `slot` on
/// bus 0: QEMU's `pci_slot_get_pirq` link, then [`PCI_INTX_GSIS`].
pub fn pci_intx_gsi(slot: u8, pin: u8) -> u8 {
    PCI_INTX_GSIS[usize::from(slot.wrapping_add(pin) & 3)]
}

/// `Name (_PRT, ...)`: every slot's four pins (see the module docs).
fn prt() -> Result<Vec<u8>, Error> {
    let mut entries = Vec::new();
    for slot in 0..32u8 {
        for pin in 0..4u8 {
            entries.push(aml::package(&[
                aml::integer(u64::from(slot) << 16 | 0xFFFF),
                aml::integer(pin.into()),
                aml::integer(0),
                aml::integer(pci_intx_gsi(slot, pin).into()),
            ])?);
        }
    }
    aml::name("_PRT", &aml::package(&entries)?)
}

/// The fw_cfg device's ports (selector, data, DMA address).
pub const FW_CFG_PORTS: u8 = 0x0C;

/// `\_SB.PCI0` (see the module docs), with `extra` devices inside.
fn pci0(extra: &[u8]) -> Result<Vec<u8>, Error> {
    let crs = res::template(&[
        res::word_bus_number(0, 0xFF),
        res::io(PCI_CONFIG_PORT, PCI_CONFIG_PORT, 1, PCI_CONFIG_PORTS),
        res::word_io(0, PCI_CONFIG_PORT - 1),
        res::word_io(PCI_CONFIG_PORT + u16::from(PCI_CONFIG_PORTS), 0xFFFF),
        res::dword_memory(PCI_MMIO_START, PCI_MMIO_END),
    ]);
    let body = [
        aml::name("_HID", &aml::integer(aml::eisa_id("PNP0A03")?.into()))?,
        aml::name("_UID", &aml::integer(0))?,
        aml::name("_CRS", &aml::buffer(&crs)?)?,
        prt()?,
        extra.to_vec(),
    ]
    .concat();
    aml::device("PCI0", &body)
}

/// The AML of `Name(\_S5, Package() {typ, typ, 0, 0})`.
pub fn s5(slp_typ: u8) -> Result<Vec<u8>, Error> {
    let t = aml::integer(slp_typ.into());
    aml::name(
        "\\_S5",
        &aml::package(&[t.clone(), t, aml::integer(0), aml::integer(0)])?,
    )
}

/// The DSDT's AML body (after the table header).
pub fn aml_body(cfg: &AcpiConfig) -> Result<Vec<u8>, Error> {
    let mut v = Vec::new();
    let fw_cfg = match cfg.fw_cfg_port {
        Some(p) => fwcf(p)?,
        None => Vec::new(),
    };
    if cfg.pci_host_bridge {
        v.extend(aml::scope("\\_SB", &pci0(&fw_cfg)?)?);
    } else if !fw_cfg.is_empty() {
        v.extend(aml::scope("\\_SB", &fw_cfg)?);
    }
    v.extend(s5(cfg.s5_slp_typ)?);
    Ok(v)
}

/// The complete DSDT.
pub fn dsdt(cfg: &AcpiConfig) -> Result<Vec<u8>, Error> {
    Ok(sdt(b"DSDT", DSDT_REVISION, &aml_body(cfg)?))
}

//! ACPI tables for the hx86 PC, written at boot for `-kernel` guests (no
//! BIOS runs to build them).
//!
//! # What is written
//!
//! * RSDP (revision 2) -> RSDT and XSDT -> FADT and MADT; FADT -> FACS and
//!   DSDT (FADT 6.0, not hardware-reduced, so the kernel keeps using the
//!   legacy PIC/PIT/RTC/i8042/COM ports).
//! * MADT: PCAT_COMPAT, one local APIC per vCPU, the IOAPIC, the interrupt
//!   source overrides (IRQ0 -> GSI 2; IRQ9, the SCI, level/active-high)
//!   and a local APIC NMI on LINT1.
//! * FADT: SCI on IRQ 9, SMI_CMD 0 (always in ACPI mode: nothing to
//!   enable), PM1a event block 0x600 (4 bytes), PM1a control block 0x604
//!   (2 bytes; a write with SLP_EN powers off), PM timer 0x608 (4 bytes,
//!   32-bit, 3.579545 MHz; optional), no GPE blocks, no reset register, no
//!   C2/C3, no fixed power/sleep buttons, IAPC_BOOT_ARCH "legacy devices,
//!   8042, no VGA", RTC century register at CMOS index 0x32.
//! * DSDT: `\_SB.PCI0` (PNP0A03 host bridge with its `_CRS`) and
//!   `\_S5` = {0, 0, 0, 0}, and QEMU's fw_cfg device `FWCF` (see [`dsdt`]). SLP_TYP 0 is soft-off on
//!   QEMU's PIIX4 PM as well, so the same tables power off there too.
//!
//! # Where
//!
//! * The tables in [`layout::ACPI_START`]..[`layout::ACPI_END`]
//!   (0x9E000..0x9FC00, e820 type 3 "ACPI data").
//! * The RSDP at [`layout::ACPI_RSDP_START`] (0x9FC10), in the first KiB of
//!   the EBDA (0x9FC00, e820 reserved) — where both the ACPICA scan
//!   (`acpi_find_root_pointer`) and the Linux decompressor's
//!   `bios_get_rsdp_addr` look after reading the EBDA segment from the BIOS
//!   data area at 0x40E. The EBDA starts with its size in KiB (1), as a
//!   BIOS leaves it; 0x413 (base memory in KiB) says 639.
//! * Linux is also handed the RSDP address directly in
//!   `boot_params.acpi_rsdp_addr` (see [`crate::linux::LinuxBootOptions`]),
//!   which it checks before any scan.

pub mod aml;
pub mod dsdt;
#[cfg(test)]
mod iasl_tests;
pub mod tables;
#[cfg(test)]
mod tests;

use vm_memory::GuestMemoryMmap;

use crate::layout::{
    self, ACPI_END, ACPI_RSDP_START, ACPI_START, BDA_BASE_MEMORY_KIB, BDA_EBDA_SEGMENT, EBDA_START,
    IOAPIC_BASE, LAPIC_BASE, LOW_RAM_END,
};
use crate::{boot, Error};

/// MPS INTI flags of an interrupt source override.
pub mod irq_flags {
    /// Polarity and trigger "conform to the bus" (ISA: edge, active high).
    pub const CONFORMING: u16 = 0;
    pub const ACTIVE_HIGH: u16 = 0b01;
    pub const ACTIVE_LOW: u16 = 0b11;
    pub const EDGE: u16 = 0b01 << 2;
    pub const LEVEL: u16 = 0b11 << 2;
}

/// An ISA interrupt source override: ISA IRQ `isa_irq` is GSI `gsi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqOverride {
    pub isa_irq: u8,
    pub gsi: u32,
    /// [`irq_flags`].
    pub flags: u16,
}

/// The machine facts the tables describe. [`Default`] is the hx86 PC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiConfig {
    /// vCPUs: local APIC IDs and ACPI processor UIDs 0..cpus.
    pub cpus: u8,
    pub lapic_base: u32,
    pub ioapic_id: u8,
    pub ioapic_base: u32,
    pub ioapic_gsi_base: u32,
    /// IOAPIC redirection entries.
    pub ioapic_pins: u8,
    /// Legacy i8259 PICs present (MADT PCAT_COMPAT).
    pub pcat_compat: bool,
    pub overrides: Vec<IrqOverride>,
    /// Local APIC input wired to NMI on every vCPU (LINT0 or LINT1).
    pub lapic_nmi_lint: Option<u8>,
    /// ISA IRQ of the SCI.
    pub sci_irq: u8,
    /// PM1a event block (status, enable: 2 x 16 bits).
    pub pm1a_evt_blk: u16,
    /// PM1a control block (16 bits; SLP_TYP bits 10-12, SLP_EN bit 13).
    pub pm1a_cnt_blk: u16,
    /// ACPI PM timer (32-bit counter at 3.579545 MHz), or none.
    pub pm_tmr_blk: Option<u16>,
    /// CMOS index of the RTC century register (0: none).
    pub rtc_century: u8,
    /// i8042 at 0x60/0x64 (IAPC_BOOT_ARCH 8042).
    pub i8042: bool,
    /// VGA present (else IAPC_BOOT_ARCH "VGA not present").
    pub vga: bool,
    /// CMOS RTC present (else IAPC_BOOT_ARCH "CMOS RTC not present").
    pub rtc: bool,
    /// SLP_TYPa/b of `\_S5` (soft off).
    pub s5_slp_typ: u8,
    /// Describe the PCI host bridge (`\_SB.PCI0`) in the DSDT.
    pub pci_host_bridge: bool,
    /// I/O base of QEMU's fw_cfg device, described as `FWCF` in the DSDT.
    pub fw_cfg_port: Option<u16>,
}

/// The hx86 PM I/O block (QEMU's PIIX4 PM layout at 0x600).
pub const PM1A_EVT_BLK: u16 = 0x600;
pub const PM1A_CNT_BLK: u16 = 0x604;
pub const PM_TMR_BLK: u16 = 0x608;
/// QEMU's fw_cfg I/O base (selector; data at +1, DMA at +4).
pub const FW_CFG_PORT: u16 = 0x510;
/// ACPI PM timer frequency.
pub const PM_TIMER_HZ: u32 = 3_579_545;

impl Default for AcpiConfig {
    fn default() -> Self {
        use irq_flags::*;
        AcpiConfig {
            cpus: 1,
            lapic_base: LAPIC_BASE as u32,
            ioapic_id: 1,
            ioapic_base: IOAPIC_BASE as u32,
            ioapic_gsi_base: 0,
            ioapic_pins: 24,
            pcat_compat: true,
            overrides: vec![
                IrqOverride {
                    isa_irq: 0,
                    gsi: 2,
                    flags: CONFORMING,
                },
                IrqOverride {
                    isa_irq: 9,
                    gsi: 9,
                    flags: ACTIVE_HIGH | LEVEL,
                },
            ],
            lapic_nmi_lint: Some(1),
            sci_irq: 9,
            pm1a_evt_blk: PM1A_EVT_BLK,
            pm1a_cnt_blk: PM1A_CNT_BLK,
            pm_tmr_blk: Some(PM_TMR_BLK),
            rtc_century: 0x32,
            i8042: true,
            vga: false,
            rtc: true,
            s5_slp_typ: 0,
            pci_host_bridge: true,
            fw_cfg_port: Some(FW_CFG_PORT),
        }
    }
}

fn invalid(msg: String) -> Error {
    Error::Acpi(msg)
}

impl AcpiConfig {
    /// Checks that the configuration describes a consistent machine.
    pub fn validate(&self) -> Result<(), Error> {
        if self.cpus == 0 || self.cpus == u8::MAX {
            return Err(invalid(format!("{} vCPUs: 1 to 254 fit", self.cpus)));
        }
        let gsi_end = u64::from(self.ioapic_gsi_base) + u64::from(self.ioapic_pins);
        let gsi_ok = |g: u32| (u64::from(self.ioapic_gsi_base)..gsi_end).contains(&u64::from(g));
        for (i, o) in self.overrides.iter().enumerate() {
            if o.isa_irq >= 16 {
                return Err(invalid(format!("override of ISA IRQ {}", o.isa_irq)));
            }
            if self.overrides[..i].iter().any(|p| p.isa_irq == o.isa_irq) {
                return Err(invalid(format!("ISA IRQ {} overridden twice", o.isa_irq)));
            }
            if !gsi_ok(o.gsi) {
                return Err(invalid(format!(
                    "ISA IRQ {} routed to GSI {}, outside the IOAPIC's {}..{gsi_end}",
                    o.isa_irq, o.gsi, self.ioapic_gsi_base
                )));
            }
            if o.flags & !0xF != 0 || o.flags & 0b11 == 0b10 || o.flags & 0b1100 == 0b1000 {
                return Err(invalid(format!(
                    "ISA IRQ {} override has invalid flags {:#x}",
                    o.isa_irq, o.flags
                )));
            }
        }
        if self.sci_irq == 0 || self.sci_irq >= 16 {
            return Err(invalid(format!("SCI on IRQ {}", self.sci_irq)));
        }
        if self.lapic_nmi_lint.is_some_and(|l| l > 1) {
            return Err(invalid("local APIC NMI on a LINT other than 0 or 1".into()));
        }
        if self.s5_slp_typ > 7 {
            return Err(invalid(format!(
                "SLP_TYP {} has more than 3 bits",
                self.s5_slp_typ
            )));
        }
        let mut blocks = vec![
            (self.pm1a_evt_blk, 4u16, "PM1a event block"),
            (self.pm1a_cnt_blk, 2, "PM1a control block"),
        ];
        if let Some(t) = self.pm_tmr_blk {
            blocks.push((t, 4, "PM timer block"));
        }
        for (i, &(port, len, what)) in blocks.iter().enumerate() {
            if port == 0 || port.checked_add(len).is_none() {
                return Err(invalid(format!("{what} at port {port:#x}")));
            }
            if let Some(&(_, _, other)) = blocks[..i]
                .iter()
                .find(|&&(p, l, _)| port < p + l && p < port + len)
            {
                return Err(invalid(format!("{what} at {port:#x} overlaps the {other}")));
            }
        }
        Ok(())
    }
}

/// Where the tables go: [tables_start, tables_end) and the RSDP address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AcpiPlacement {
    pub tables_start: u64,
    pub tables_end: u64,
    /// 16-byte aligned.
    pub rsdp: u64,
}

impl Default for AcpiPlacement {
    /// The hx86 layout (see the module docs).
    fn default() -> Self {
        AcpiPlacement {
            tables_start: ACPI_START,
            tables_end: ACPI_END,
            rsdp: ACPI_RSDP_START,
        }
    }
}

/// Built tables: each as (guest-physical address, bytes), RSDP first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcpiTables {
    pub rsdp_addr: u64,
    pub tables: Vec<(u64, Vec<u8>)>,
}

impl AcpiTables {
    /// The table with this signature ("RSD " for the RSDP), if built.
    pub fn find(&self, signature: &[u8; 4]) -> Option<(u64, &[u8])> {
        self.tables
            .iter()
            .find(|(_, t)| t.get(..4) == Some(&signature[..]))
            .map(|(a, t)| (*a, t.as_slice()))
    }
}

/// Builds the tables for `place` (see the module docs for the contents).
pub fn build_acpi_tables(cfg: &AcpiConfig, place: &AcpiPlacement) -> Result<AcpiTables, Error> {
    cfg.validate()?;
    if !place.rsdp.is_multiple_of(16) {
        return Err(invalid(format!(
            "RSDP address {:#x} is not 16-byte aligned",
            place.rsdp
        )));
    }
    let mut cursor = place.tables_start;
    let mut out = Vec::new();
    let mut put = |align: u64, bytes: Vec<u8>| -> Result<u32, Error> {
        let addr = cursor.next_multiple_of(align);
        let end = addr + bytes.len() as u64;
        if end > place.tables_end || end > u64::from(u32::MAX) {
            return Err(Error::AcpiTablesTooBig {
                start: place.tables_start,
                end: place.tables_end,
                need: end - place.tables_start,
            });
        }
        cursor = end;
        out.push((addr, bytes));
        Ok(addr as u32)
    };
    let facs = put(64, tables::facs().to_vec())?;
    let dsdt = put(16, dsdt::dsdt(cfg)?)?;
    let fadt = put(16, tables::fadt(cfg, facs, dsdt))?;
    let madt = put(16, tables::madt(cfg))?;
    let rsdt = put(16, tables::rsdt(&[fadt, madt]))?;
    let xsdt = put(16, tables::xsdt(&[fadt.into(), madt.into()]))?;
    out.insert(0, (place.rsdp, tables::rsdp(rsdt, xsdt.into()).to_vec()));
    Ok(AcpiTables {
        rsdp_addr: place.rsdp,
        tables: out,
    })
}

/// Writes the ACPI tables of `cfg` at their place in the hx86 layout, the
/// EBDA size (1 KiB) at its start, and the EBDA segment (0x40E) and base
/// memory size (0x413) into the BIOS data area. Returns the RSDP address,
/// for `boot_params.acpi_rsdp_addr`.
pub fn write_acpi_tables(mem: &GuestMemoryMmap, cfg: &AcpiConfig) -> Result<u64, Error> {
    let built = build_acpi_tables(cfg, &AcpiPlacement::default())?;
    boot::zero(mem, ACPI_START, LOW_RAM_END - ACPI_START)?;
    let ebda_kib = ((LOW_RAM_END - EBDA_START) >> 10) as u16;
    boot::write_bytes(mem, EBDA_START, &ebda_kib.to_le_bytes())?;
    let segment = (EBDA_START >> 4) as u16;
    boot::write_bytes(mem, BDA_EBDA_SEGMENT, &segment.to_le_bytes())?;
    let base_kib = (EBDA_START >> 10) as u16;
    boot::write_bytes(mem, BDA_BASE_MEMORY_KIB, &base_kib.to_le_bytes())?;
    for (addr, bytes) in &built.tables {
        boot::write_bytes(mem, *addr, bytes)?;
    }
    log::debug!(
        "ACPI tables at {:#x}..{:#x}, RSDP at {:#x}",
        layout::ACPI_START,
        layout::ACPI_END,
        built.rsdp_addr
    );
    Ok(built.rsdp_addr)
}

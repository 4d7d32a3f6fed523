//! Encoders for the fixed-layout ACPI tables (ACPI 6.5 chapter 5.2): RSDP,
//! RSDT, XSDT, FADT, FACS and MADT. Each returns the table's bytes with
//! its checksum set; addresses of other tables are parameters.

use super::AcpiConfig;

/// Length of the common table header.
pub const HEADER_LEN: usize = 36;
/// OEM ID of every table.
pub const OEM_ID: &[u8; 6] = b"HX86  ";
/// Creator ID of every table (the "ASL compiler" fields).
pub const CREATOR_ID: &[u8; 4] = b"HX86";

/// Revisions of the tables written.
pub const RSDP_REVISION: u8 = 2;
pub const RSDT_REVISION: u8 = 1;
pub const XSDT_REVISION: u8 = 1;
/// FADT 6.0: 276 bytes, with the X_ fields and the hypervisor vendor ID.
pub const FADT_REVISION: u8 = 6;
pub const FADT_MINOR_REVISION: u8 = 0;
pub const FADT_LEN: usize = 276;
pub const MADT_REVISION: u8 = 5;
/// DSDT revision 2: AML integers are 64-bit.
pub const DSDT_REVISION: u8 = 2;
pub const FACS_LEN: usize = 64;
pub const FACS_VERSION: u8 = 2;
pub const RSDP_LEN: usize = 36;

/// FADT field offsets.
pub mod fadt {
    pub const FIRMWARE_CTRL: usize = 36;
    pub const DSDT: usize = 40;
    pub const SCI_INT: usize = 46;
    pub const SMI_CMD: usize = 48;
    pub const PM1A_EVT_BLK: usize = 56;
    pub const PM1A_CNT_BLK: usize = 64;
    pub const PM_TMR_BLK: usize = 76;
    pub const GPE0_BLK: usize = 80;
    pub const PM1_EVT_LEN: usize = 88;
    pub const PM1_CNT_LEN: usize = 89;
    pub const PM_TMR_LEN: usize = 91;
    pub const P_LVL2_LAT: usize = 96;
    pub const P_LVL3_LAT: usize = 98;
    pub const CENTURY: usize = 108;
    pub const IAPC_BOOT_ARCH: usize = 109;
    pub const FLAGS: usize = 112;
    pub const MINOR_REVISION: usize = 131;
    pub const X_FIRMWARE_CTRL: usize = 132;
    pub const X_DSDT: usize = 140;
    pub const X_PM1A_EVT_BLK: usize = 148;
    pub const X_PM1A_CNT_BLK: usize = 172;
    pub const X_PM_TMR_BLK: usize = 208;

    /// Flags.
    pub const WBINVD: u32 = 1 << 0;
    pub const PROC_C1: u32 = 1 << 2;
    /// Set: no fixed-feature power button.
    pub const PWR_BUTTON: u32 = 1 << 4;
    pub const SLP_BUTTON: u32 = 1 << 5;
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;

    /// IAPC_BOOT_ARCH.
    pub const LEGACY_DEVICES: u16 = 1 << 0;
    pub const I8042: u16 = 1 << 1;
    pub const VGA_NOT_PRESENT: u16 = 1 << 2;
    pub const CMOS_RTC_NOT_PRESENT: u16 = 1 << 5;

    /// Latencies above 100 / 1000 us: C2 / C3 not supported.
    pub const NO_C2: u16 = 0x0FFF;
    pub const NO_C3: u16 = 0x0FFF;
}

/// MADT entry types.
pub mod madt {
    pub const LOCAL_APIC: u8 = 0;
    pub const IO_APIC: u8 = 1;
    pub const INTERRUPT_OVERRIDE: u8 = 2;
    pub const LOCAL_APIC_NMI: u8 = 4;
    /// MADT flags: dual 8259 PICs present.
    pub const PCAT_COMPAT: u32 = 1;
    /// Local APIC flags: enabled.
    pub const LAPIC_ENABLED: u32 = 1;
    /// Processor UID meaning "all processors" in a local APIC NMI entry.
    pub const ALL_PROCESSORS: u8 = 0xFF;
}

/// Generic Address Structure address space: system I/O.
pub const GAS_SYSTEM_IO: u8 = 1;
/// GAS access sizes.
pub const ACCESS_WORD: u8 = 2;
pub const ACCESS_DWORD: u8 = 3;

/// The byte that makes `bytes` sum to zero.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, &b| a.wrapping_add(b))
        .wrapping_neg()
}

fn put(buf: &mut [u8], off: usize, bytes: &[u8]) {
    buf[off..off + bytes.len()].copy_from_slice(bytes);
}

/// A system description table: the 36-byte header (OEM table ID "HX86" +
/// signature, OEM revision 1, creator "HX86" revision 1) and `body`.
pub fn sdt(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let len = HEADER_LEN + body.len();
    let mut t = vec![0u8; len];
    put(&mut t, 0, signature);
    put(&mut t, 4, &(len as u32).to_le_bytes());
    t[8] = revision;
    put(&mut t, 10, OEM_ID);
    put(&mut t, 16, CREATOR_ID);
    put(&mut t, 20, signature);
    put(&mut t, 24, &1u32.to_le_bytes());
    put(&mut t, 28, CREATOR_ID);
    put(&mut t, 32, &1u32.to_le_bytes());
    put(&mut t, HEADER_LEN, body);
    t[9] = checksum(&t);
    t
}

/// The RSDP (revision 2): checksum over the first 20 bytes, extended
/// checksum over all 36.
pub fn rsdp(rsdt: u32, xsdt: u64) -> [u8; RSDP_LEN] {
    let mut r = [0u8; RSDP_LEN];
    put(&mut r, 0, b"RSD PTR ");
    put(&mut r, 9, OEM_ID);
    r[15] = RSDP_REVISION;
    put(&mut r, 16, &rsdt.to_le_bytes());
    put(&mut r, 20, &(RSDP_LEN as u32).to_le_bytes());
    put(&mut r, 24, &xsdt.to_le_bytes());
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

pub fn rsdt(entries: &[u32]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"RSDT", RSDT_REVISION, &body)
}

pub fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    sdt(b"XSDT", XSDT_REVISION, &body)
}

/// The FACS: no hardware signature, no waking vector, no global lock.
pub fn facs() -> [u8; FACS_LEN] {
    let mut f = [0u8; FACS_LEN];
    put(&mut f, 0, b"FACS");
    put(&mut f, 4, &(FACS_LEN as u32).to_le_bytes());
    f[32] = FACS_VERSION;
    f
}

/// A Generic Address Structure for `bytes` bytes of system I/O at `port`
/// (all zero when `bytes` is 0: the register is absent).
fn gas_io(port: u16, bytes: u8, access: u8) -> [u8; 12] {
    let mut g = [0u8; 12];
    if bytes != 0 {
        g[0] = GAS_SYSTEM_IO;
        g[1] = bytes * 8;
        g[3] = access;
        put(&mut g, 4, &u64::from(port).to_le_bytes());
    }
    g
}

/// The FADT (revision 6.0). Not hardware-reduced: PM1a event/control
/// blocks and, if configured, the PM timer; SMI_CMD 0 (always in ACPI
/// mode); no GPE blocks, no reset register, no C2/C3; the 32-bit and X_
/// fields agree, except that the FACS is only in FIRMWARE_CTRL.
pub fn fadt(cfg: &AcpiConfig, facs: u32, dsdt: u32) -> Vec<u8> {
    use fadt::*;
    let mut b = [0u8; FADT_LEN];
    put(&mut b, FIRMWARE_CTRL, &facs.to_le_bytes());
    put(&mut b, DSDT, &dsdt.to_le_bytes());
    put(&mut b, SCI_INT, &u16::from(cfg.sci_irq).to_le_bytes());
    put(&mut b, SMI_CMD, &0u32.to_le_bytes());
    put(
        &mut b,
        PM1A_EVT_BLK,
        &u32::from(cfg.pm1a_evt_blk).to_le_bytes(),
    );
    put(
        &mut b,
        PM1A_CNT_BLK,
        &u32::from(cfg.pm1a_cnt_blk).to_le_bytes(),
    );
    let (tmr_port, tmr_len) = cfg.pm_tmr_blk.map_or((0, 0), |p| (p, 4));
    put(&mut b, PM_TMR_BLK, &u32::from(tmr_port).to_le_bytes());
    b[PM1_EVT_LEN] = 4;
    b[PM1_CNT_LEN] = 2;
    b[PM_TMR_LEN] = tmr_len;
    put(&mut b, P_LVL2_LAT, &NO_C2.to_le_bytes());
    put(&mut b, P_LVL3_LAT, &NO_C3.to_le_bytes());
    b[CENTURY] = cfg.rtc_century;
    let mut boot_arch = LEGACY_DEVICES;
    if cfg.i8042 {
        boot_arch |= I8042;
    }
    if !cfg.vga {
        boot_arch |= VGA_NOT_PRESENT;
    }
    if !cfg.rtc {
        boot_arch |= CMOS_RTC_NOT_PRESENT;
    }
    put(&mut b, IAPC_BOOT_ARCH, &boot_arch.to_le_bytes());
    // PWR_BUTTON clear: the power button is the fixed-feature one in PM1
    // (hx86's `system_powerdown` presses it), as on QEMU's PC; no sleep
    // button.
    let mut flags = WBINVD | PROC_C1 | SLP_BUTTON;
    if cfg.pm_tmr_blk.is_some() {
        flags |= TMR_VAL_EXT;
    }
    put(&mut b, FLAGS, &flags.to_le_bytes());
    b[MINOR_REVISION] = FADT_MINOR_REVISION;
    // X_FIRMWARE_CTRL stays 0: ACPI 6 makes it and FIRMWARE_CTRL mutually
    // exclusive (with both set, Linux installs the FACS twice).
    put(&mut b, X_DSDT, &u64::from(dsdt).to_le_bytes());
    put(
        &mut b,
        X_PM1A_EVT_BLK,
        &gas_io(cfg.pm1a_evt_blk, 4, ACCESS_WORD),
    );
    put(
        &mut b,
        X_PM1A_CNT_BLK,
        &gas_io(cfg.pm1a_cnt_blk, 2, ACCESS_WORD),
    );
    put(
        &mut b,
        X_PM_TMR_BLK,
        &gas_io(tmr_port, tmr_len, ACCESS_DWORD),
    );
    sdt(b"FACP", FADT_REVISION, &b[HEADER_LEN..])
}

/// The MADT: one enabled local APIC per vCPU (APIC ID = processor UID =
/// index), the IOAPIC, the interrupt source overrides and the local APIC
/// NMI input of all processors.
pub fn madt(cfg: &AcpiConfig) -> Vec<u8> {
    use madt::*;
    let mut b = Vec::new();
    b.extend(cfg.lapic_base.to_le_bytes());
    let flags = if cfg.pcat_compat { PCAT_COMPAT } else { 0 };
    b.extend(flags.to_le_bytes());
    for id in 0..cfg.cpus {
        b.extend([LOCAL_APIC, 8, id, id]);
        b.extend(LAPIC_ENABLED.to_le_bytes());
    }
    b.extend([IO_APIC, 12, cfg.ioapic_id, 0]);
    b.extend(cfg.ioapic_base.to_le_bytes());
    b.extend(cfg.ioapic_gsi_base.to_le_bytes());
    for o in &cfg.overrides {
        b.extend([INTERRUPT_OVERRIDE, 10, 0, o.isa_irq]);
        b.extend(o.gsi.to_le_bytes());
        b.extend(o.flags.to_le_bytes());
    }
    if let Some(lint) = cfg.lapic_nmi_lint {
        b.extend([LOCAL_APIC_NMI, 6, ALL_PROCESSORS, 0, 0, lint]);
    }
    sdt(b"APIC", MADT_REVISION, &b)
}

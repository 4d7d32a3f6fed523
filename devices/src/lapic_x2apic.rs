//! The x2APIC register interface (Intel SDM 10.12): in x2APIC mode the
//! registers are MSRs 0x800 + (xAPIC offset >> 4), 32 bits wide except ICR
//! (one 64-bit write sends the IPI). Accesses the SDM calls invalid (a
//! register x2APIC mode lacks, a read of a write-only one, a write of a
//! read-only one, reserved bits set, any access outside x2APIC mode) are
//! [`ApicMsrFault`]: the CPU turns that into #GP(0).

use thiserror::Error;

use super::{delivery, LocalApic};

/// An APIC MSR access the processor refuses with #GP(0).
#[derive(Debug, Error, Clone, Copy, PartialEq, Eq)]
#[error("invalid local APIC MSR access (#GP)")]
pub struct ApicMsrFault;

/// First and last MSR of the x2APIC range.
pub const X2APIC_MSR_FIRST: u32 = 0x800;
pub const X2APIC_MSR_LAST: u32 = 0x8ff;

/// ICR bits a write may set: vector, delivery mode, destination mode,
/// level, trigger mode, shorthand and the 32-bit destination.
const ICR_WRITABLE: u64 = 0xffff_ffff_000c_cfff;

impl LocalApic {
    /// The logical ID in x2APIC mode: cluster (ID bits 31:4) in bits
    /// 31:16, one bit of 16 (ID bits 3:0) below.
    pub fn x2apic_ldr(&self) -> u32 {
        let id = u32::from(self.id);
        ((id >> 4) << 16) | (1 << (id & 0xf))
    }

    fn x2apic_reg(msr: u32) -> Option<u64> {
        (X2APIC_MSR_FIRST..=X2APIC_MSR_LAST)
            .contains(&msr)
            .then(|| u64::from(msr - X2APIC_MSR_FIRST) << 4)
    }

    /// RDMSR of x2APIC register `msr` at time `now`.
    pub fn x2apic_msr_read(&mut self, msr: u32, now: u64) -> Result<u64, ApicMsrFault> {
        let reg = Self::x2apic_reg(msr).ok_or(ApicMsrFault)?;
        if !self.is_x2apic() {
            return Err(ApicMsrFault);
        }
        match reg {
            0x20 => Ok(u64::from(self.id)),
            0xd0 => Ok(u64::from(self.x2apic_ldr())),
            0x300 => Ok(self.icr & ICR_WRITABLE),
            0x30
            | 0x80
            | 0xa0
            | 0xf0
            | 0x100..=0x270
            | 0x280
            | 0x320..=0x370
            | 0x380
            | 0x390
            | 0x3e0 => Ok(u64::from(self.read_reg(reg, now))),
            // EOI and SELF IPI are write-only; DFR, ICR2, APR, RRD and the
            // reserved offsets do not exist in x2APIC mode.
            _ => Err(ApicMsrFault),
        }
    }

    /// WRMSR of x2APIC register `msr` at time `now`. `Ok(Some(v))`: the
    /// write was an EOI of level-triggered vector `v` (for the IOAPIC).
    /// IPIs sent go to the outbox as for the xAPIC ICR.
    pub fn x2apic_msr_write(
        &mut self,
        msr: u32,
        value: u64,
        now: u64,
    ) -> Result<Option<u8>, ApicMsrFault> {
        let reg = Self::x2apic_reg(msr).ok_or(ApicMsrFault)?;
        if !self.is_x2apic() {
            return Err(ApicMsrFault);
        }
        if reg == 0x300 {
            if value & !ICR_WRITABLE != 0 {
                return Err(ApicMsrFault);
            }
            self.icr = value;
            self.send_ipi();
            return Ok(None);
        }
        let v = u32::try_from(value).map_err(|_| ApicMsrFault)?;
        match reg {
            // EOI and ESR take only 0 in x2APIC mode.
            0xb0 | 0x280 if v != 0 => Err(ApicMsrFault),
            0x80 | 0xb0 | 0xf0 | 0x280 | 0x320..=0x370 | 0x380 | 0x3e0 => {
                Ok(self.write_reg(reg, v, now))
            }
            0x3f0 => {
                if v > 0xff {
                    return Err(ApicMsrFault);
                }
                // SELF IPI: a fixed, edge-triggered IPI to this APIC.
                if v < 16 {
                    self.error(super::ESR_SEND_ILLEGAL_VECTOR);
                }
                self.deliver_local(delivery::FIXED, v as u8, false);
                Ok(None)
            }
            _ => Err(ApicMsrFault),
        }
    }
}

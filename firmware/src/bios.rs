//! Booting a BIOS ROM (`-bios`).

use x86::CpuState;

/// The state a `-bios` ROM starts in: the architectural RESET state (real
/// mode, CS = F000 with base FFFF0000, IP = FFF0, so the first instruction
/// is fetched from 0xFFFF_FFF0, the last 16 bytes of the ROM).
pub fn reset_state() -> CpuState {
    CpuState::reset()
}

#[cfg(test)]
mod tests {
    #[test]
    fn starts_at_the_reset_vector() {
        let s = super::reset_state();
        assert_eq!(s.linear_pc(), 0xFFFF_FFF0);
        assert_eq!(s.mode(), x86::CpuMode::Real);
    }
}

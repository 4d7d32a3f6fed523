//! [`DbtBus`]: the [`x86::CpuBus`] of a DBT vCPU, over guest RAM
//! (vm-memory, every access bounds-checked), the ROM ranges, the machine's
//! [`IoHandler`] and the optional userspace [`InterruptController`].

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress, GuestMemory as _, GuestMemoryRegion, MemoryRegionAddress};
use x86::{BusAction, CpuBus, RamPtr};

use crate::{GuestMemory, InterruptController, IoAction, IoHandler};

pub(crate) struct DbtBus {
    /// The vCPU index (its local APIC ID).
    pub cpu: u32,
    pub mem: GuestMemory,
    pub io: Arc<dyn IoHandler>,
    pub ic: Option<Arc<dyn InterruptController>>,
    /// The RAM region of the last small read: (guest start, length, host
    /// address). Page walks read page-table entries one after another
    /// from the same region.
    pub last: (u64, u64, usize),
    /// Where this vCPU's local APIC registers are (IA32_APIC_BASE's page,
    /// followed by [`DbtBus::sync_lapic_page`]).
    lapic_page: u64,
}

impl DbtBus {
    pub fn new(
        mem: GuestMemory,
        io: Arc<dyn IoHandler>,
        ic: Option<Arc<dyn InterruptController>>,
    ) -> Self {
        DbtBus {
            cpu: 0,
            mem,
            io,
            ic,
            last: (0, 0, 0),
            lapic_page: LAPIC_PAGE,
        }
    }

    /// Follows the local APIC's base address (after an IA32_APIC_BASE
    /// write, a reset or a new state): its page may have moved.
    pub fn sync_lapic_page(&mut self) {
        if let Some(Ok(base)) = self
            .ic
            .as_ref()
            .and_then(|ic| ic.apic_msr_read(self.cpu, x86::consts::msr::APIC_BASE))
        {
            self.lapic_page = base & 0x000f_ffff_ffff_f000;
        }
    }

    /// A small read inside the cached RAM region (no region lookup).
    #[inline]
    fn read_cached(&mut self, paddr: u64, data: &mut [u8]) -> bool {
        let (start, len, host) = self.last;
        let off = paddr.wrapping_sub(start);
        if off < len && len - off >= data.len() as u64 {
            // SAFETY: `[host, host + len)` is the host mapping of a guest
            // RAM region that lives as long as `self.mem` (regions never
            // change after the VM is built), and the read stays inside it.
            // Guest memory may change concurrently (devices), so it is
            // copied byte-wise without forming a reference.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (host + off as usize) as *const u8,
                    data.as_mut_ptr(),
                    data.len(),
                )
            };
            return true;
        }
        false
    }
}

fn action(a: IoAction) -> BusAction {
    match a {
        IoAction::Continue => BusAction::Continue,
        IoAction::Exit(c) => BusAction::Exit(c),
        IoAction::Reset => BusAction::Reset,
        IoAction::PowerOff => BusAction::PowerOff,
    }
}

/// The local APIC page at reset: each vCPU sees its own APIC there.
const LAPIC_PAGE: u64 = 0xfee0_0000;

impl DbtBus {
    /// The offset in the local APIC page, when `paddr` is in it and the
    /// machine has a userspace interrupt controller.
    #[inline]
    fn lapic_offset(&self, paddr: u64) -> Option<u64> {
        let off = paddr.wrapping_sub(self.lapic_page);
        (off < 0x1000 && self.ic.is_some()).then_some(off)
    }
    fn in_rom(&self, a: u64) -> bool {
        self.mem.rom.iter().any(|&(s, l)| a >= s && a - s < l)
    }
    fn is_ram(&self, a: u64) -> bool {
        self.mem.mem.find_region(GuestAddress(a)).is_some()
    }
}

impl CpuBus for DbtBus {
    fn read_phys(&mut self, paddr: u64, data: &mut [u8]) {
        if self.read_cached(paddr, data) {
            return;
        }
        if data.len() <= 8 {
            if let Some(region) = self.mem.mem.find_region(GuestAddress(paddr)) {
                if let Ok(host) = region.get_host_address(MemoryRegionAddress(0)) {
                    self.last = (region.start_addr().0, region.len(), host as usize);
                    if self.read_cached(paddr, data) {
                        return;
                    }
                }
            }
        }
        if self.is_ram(paddr) {
            if self.mem.mem.read_slice(data, GuestAddress(paddr)).is_ok() {
                return;
            }
            // Straddles the end of a region: byte by byte.
            for (i, b) in data.iter_mut().enumerate() {
                let a = paddr.wrapping_add(i as u64);
                let mut one = [0u8; 1];
                if self.mem.mem.read_slice(&mut one, GuestAddress(a)).is_ok() {
                    *b = one[0];
                } else {
                    self.io.mmio_read(a, &mut one);
                    *b = one[0];
                }
            }
            return;
        }
        if let (Some(off), Some(ic)) = (self.lapic_offset(paddr), &self.ic) {
            ic.lapic_read(self.cpu, off, data);
            return;
        }
        self.io.mmio_read(paddr, data);
    }

    fn write_phys(&mut self, paddr: u64, data: &[u8]) -> BusAction {
        if self.is_ram(paddr) {
            if self.in_rom(paddr) {
                log::debug!(target: "guest_errors", "write of {} bytes to ROM at {paddr:#x} ignored", data.len());
                return BusAction::Continue;
            }
            if self.mem.mem.write_slice(data, GuestAddress(paddr)).is_ok() {
                return BusAction::Continue;
            }
            let mut act = BusAction::Continue;
            for (i, b) in data.iter().enumerate() {
                let a = paddr.wrapping_add(i as u64);
                if self.in_rom(a) {
                    continue;
                }
                if self.mem.mem.write_slice(&[*b], GuestAddress(a)).is_err() {
                    let r = action(self.io.mmio_write(a, &[*b]));
                    if r != BusAction::Continue {
                        act = r;
                    }
                }
            }
            return act;
        }
        if let (Some(off), Some(ic)) = (self.lapic_offset(paddr), &self.ic) {
            ic.lapic_write(self.cpu, off, data);
            return BusAction::Continue;
        }
        action(self.io.mmio_write(paddr, data))
    }

    fn ram_ptr(&mut self, paddr: u64) -> Option<RamPtr> {
        let region = self.mem.mem.find_region(GuestAddress(paddr))?;
        let off = paddr.checked_sub(region.start_addr().0)?;
        let len = region.len().checked_sub(off)?;
        let ptr = region.get_host_address(MemoryRegionAddress(off)).ok()?;
        // A page must not mix ROM and RAM for the TLB: ROM ranges are
        // 64 KiB-aligned in every machine we build.
        Some(RamPtr {
            ptr,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            writable: !self.in_rom(paddr),
        })
    }

    fn io_in(&mut self, port: u16, size: u8) -> u32 {
        let mut b = [0u8; 4];
        let n = (size as usize).clamp(1, 4);
        self.io.pio_read(port, &mut b[..n]);
        u32::from_le_bytes(b)
    }

    fn io_out(&mut self, port: u16, size: u8, value: u32) -> BusAction {
        let n = (size as usize).clamp(1, 4);
        action(self.io.pio_write(port, &value.to_le_bytes()[..n]))
    }

    fn pending_interrupt(&mut self) -> bool {
        self.ic
            .as_ref()
            .is_some_and(|ic| ic.pending_interrupt(self.cpu).is_some())
    }

    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        self.ic.as_ref().and_then(|ic| ic.acknowledge(self.cpu))
    }

    fn take_nmi(&mut self) -> bool {
        self.ic.as_ref().is_some_and(|ic| ic.take_nmi(self.cpu))
    }

    fn apic_tpr(&mut self) -> Option<u8> {
        Some(self.ic.as_ref()?.tpr(self.cpu))
    }

    fn set_apic_tpr(&mut self, tpr: u8) -> bool {
        match &self.ic {
            Some(ic) => {
                ic.set_tpr(self.cpu, tpr);
                true
            }
            None => false,
        }
    }

    fn apic_msr_read(&mut self, msr: u32) -> Option<Result<u64, x86::MsrFault>> {
        self.ic.as_ref()?.apic_msr_read(self.cpu, msr)
    }

    fn apic_msr_write(
        &mut self,
        msr: u32,
        value: u64,
        tsc: u64,
    ) -> Option<Result<(), x86::MsrFault>> {
        let r = self.ic.as_ref()?.apic_msr_write(self.cpu, msr, value, tsc);
        if msr == x86::consts::msr::APIC_BASE {
            self.sync_lapic_page();
        }
        r
    }

    fn startup_pending(&mut self) -> bool {
        self.ic
            .as_ref()
            .is_some_and(|ic| ic.startup_pending(self.cpu))
    }
}

//! [`CpuBus`]: what the interpreter (and later the JIT) needs from the machine:
//! physical memory, port I/O and an interrupt source.
//!
//! The backend (`accel/dbt`) implements it on top of guest RAM and the
//! machine's `IoHandler`; tests implement it on a plain byte vector.

/// What an I/O or MMIO write asks of the machine beyond its data
/// (mirrors `accel::IoAction`, which this crate cannot depend on).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BusAction {
    Continue,
    /// The guest asked to exit with this status (isa-debug-exit).
    Exit(i32),
    /// The guest asked for a machine reset.
    Reset,
    /// The guest powered the machine off.
    PowerOff,
}

/// A host pointer into guest RAM/ROM for a physical address.
#[derive(Clone, Copy, Debug)]
pub struct RamPtr {
    /// Host address of the byte at the physical address asked for.
    pub ptr: *mut u8,
    /// Bytes valid at `ptr` (at least up to the end of the 4 KiB page for
    /// the TLB to cache the page; shorter ranges are accessed byte-wise
    /// through [`CpuBus::read_phys`]).
    pub len: usize,
    /// False for ROM: reads may use `ptr`, writes go to [`CpuBus::write_phys`].
    pub writable: bool,
}

/// An MSR access the local APIC refuses: the CPU raises #GP(0).
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
#[error("invalid local APIC MSR access (#GP)")]
pub struct MsrFault;

/// Physical memory, port I/O and the interrupt source of one vCPU.
///
/// Physical addresses not backed by RAM/ROM are MMIO; `read_phys` and
/// `write_phys` dispatch them. Writes to ROM are ignored by the
/// implementation (and logged under `guest_errors`).
pub trait CpuBus {
    /// Reads `data.len()` bytes of physical memory (RAM, ROM or MMIO).
    fn read_phys(&mut self, paddr: u64, data: &mut [u8]);
    /// Writes physical memory; MMIO writes may ask for a machine action.
    fn write_phys(&mut self, paddr: u64, data: &[u8]) -> BusAction;
    /// A host pointer to RAM/ROM at `paddr`, if it is backed by memory the
    /// host can address directly. The pointer must stay valid (and the
    /// memory mapped) for as long as the bus lives: the TLB caches it.
    fn ram_ptr(&mut self, paddr: u64) -> Option<RamPtr>;
    /// Port input of `size` (1, 2 or 4) bytes, zero-extended.
    fn io_in(&mut self, port: u16, size: u8) -> u32;
    /// Port output of the low `size` bytes of `value`.
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> BusAction;
    /// An external interrupt (INTR) is pending. No controller yet: false.
    fn pending_interrupt(&mut self) -> bool {
        false
    }
    /// Acknowledges the pending interrupt and returns its vector.
    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        None
    }
    /// Takes a pending NMI.
    fn take_nmi(&mut self) -> bool {
        false
    }
    /// RDMSR of an MSR the local APIC owns (IA32_APIC_BASE,
    /// IA32_TSC_DEADLINE, x2APIC registers): None when there is no such
    /// APIC (the CPU then answers itself), `Some(Err(MsrFault))` for #GP.
    fn apic_msr_read(&mut self, _msr: u32) -> Option<Result<u64, MsrFault>> {
        None
    }
    /// WRMSR counterpart; `tsc` is the vCPU's TSC now.
    fn apic_msr_write(
        &mut self,
        _msr: u32,
        _value: u64,
        _tsc: u64,
    ) -> Option<Result<(), MsrFault>> {
        None
    }
    /// The local APIC's task priority, which CR8 reads as TPR[7:4]: None
    /// without an APIC (CR8 is then a plain register).
    fn apic_tpr(&mut self) -> Option<u8> {
        None
    }
    /// MOV to CR8: TPR becomes `tpr`. False without an APIC.
    fn set_apic_tpr(&mut self, _tpr: u8) -> bool {
        false
    }
    /// An INIT or start-up IPI waits for this processor (the CPU stops
    /// with [`crate::ExitReason::Startup`] for its owner to act on it).
    fn startup_pending(&mut self) -> bool {
        false
    }
}

/// A flat test bus: RAM from 0 of the given size, unmapped reads return
/// 0xff, port writes are recorded. Used by unit tests and benchmarks.
pub struct TestBus {
    pub ram: Vec<u8>,
    /// (port, size, value) of every OUT.
    pub out_log: Vec<(u16, u8, u32)>,
    /// Value returned for every IN.
    pub in_value: u32,
    /// Port whose write returns `BusAction::Exit(value)`.
    pub exit_port: Option<u16>,
    /// Read-only memory at `rom_base` (writes ignored).
    pub rom: Vec<u8>,
    pub rom_base: u64,
}

impl TestBus {
    pub fn new(size: usize) -> Self {
        TestBus {
            ram: vec![0; size],
            out_log: Vec::new(),
            in_value: 0xffff_ffff,
            exit_port: None,
            rom: Vec::new(),
            rom_base: 0,
        }
    }

    /// Maps `rom` read-only so that it ends at 4 GiB.
    pub fn with_rom(mut self, rom: Vec<u8>) -> Self {
        self.rom_base = (1u64 << 32) - rom.len() as u64;
        self.rom = rom;
        self
    }

    fn rom_index(&self, a: u64) -> Option<usize> {
        let off = a.checked_sub(self.rom_base)?;
        usize::try_from(off).ok().filter(|o| *o < self.rom.len())
    }
    /// Copies `bytes` to physical address `addr` (panics if out of range: test helper).
    pub fn load(&mut self, addr: u64, bytes: &[u8]) {
        let a = addr as usize;
        self.ram[a..a + bytes.len()].copy_from_slice(bytes);
    }
    /// Bytes output to a port, in order (e.g. a UART's THR).
    pub fn port_bytes(&self, port: u16) -> Vec<u8> {
        self.out_log
            .iter()
            .filter(|(p, _, _)| *p == port)
            .map(|(_, _, v)| *v as u8)
            .collect()
    }
}

impl CpuBus for TestBus {
    fn read_phys(&mut self, paddr: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let a = paddr.wrapping_add(i as u64);
            if let Some(r) = self.rom_index(a) {
                *b = self.rom[r];
                continue;
            }
            *b = usize::try_from(a)
                .ok()
                .and_then(|a| self.ram.get(a).copied())
                .unwrap_or(0xff);
        }
    }
    fn write_phys(&mut self, paddr: u64, data: &[u8]) -> BusAction {
        for (i, b) in data.iter().enumerate() {
            let a = paddr.wrapping_add(i as u64);
            if self.rom_index(a).is_some() {
                continue;
            }
            if let Some(slot) = usize::try_from(a).ok().and_then(|a| self.ram.get_mut(a)) {
                *slot = *b;
            }
        }
        BusAction::Continue
    }
    fn ram_ptr(&mut self, paddr: u64) -> Option<RamPtr> {
        if let Some(r) = self.rom_index(paddr) {
            let len = self.rom.len() - r;
            // SAFETY: `r < rom.len()`, so the offset stays inside the allocation.
            let ptr = unsafe { self.rom.as_mut_ptr().add(r) };
            return Some(RamPtr {
                ptr,
                len,
                writable: false,
            });
        }
        let a = usize::try_from(paddr).ok()?;
        if a >= self.ram.len() {
            return None;
        }
        let len = self.ram.len() - a;
        // SAFETY: `a < ram.len()`, so the offset stays inside the allocation.
        let ptr = unsafe { self.ram.as_mut_ptr().add(a) };
        Some(RamPtr {
            ptr,
            len,
            writable: true,
        })
    }
    fn io_in(&mut self, _port: u16, size: u8) -> u32 {
        match size {
            1 => self.in_value & 0xff,
            2 => self.in_value & 0xffff,
            _ => self.in_value,
        }
    }
    fn io_out(&mut self, port: u16, size: u8, value: u32) -> BusAction {
        self.out_log.push((port, size, value));
        if port == 0x604 && value & 0x2000 != 0 {
            return BusAction::PowerOff;
        }
        if self.exit_port == Some(port) {
            return BusAction::Exit(value as i32);
        }
        BusAction::Continue
    }
}

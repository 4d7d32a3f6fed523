//! PCI base address registers: a function whose BARs the guest can size,
//! move and enable ([`PciBarFunction`]), and the address decoders that send
//! port and memory accesses to whatever BAR covers them ([`PciBarSpace`],
//! a [`BusFallback`] of the machine's buses: fixed devices win).
//!
//! The machine plays the firmware's part: it gives each BAR an initial
//! address and enables decoding, as SeaBIOS does under QEMU, so a guest
//! booted with `-kernel` finds the device ready; the guest may then move it.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::bus::{BusDevice, BusFallback, VmRequest};
use crate::pci::{BarInfo, PciConfigSpace, PciFunction};

/// The address space a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// Port I/O (BAR bit 0 set).
    Io,
    /// 32-bit memory, not prefetchable.
    Mem32,
    /// 64-bit prefetchable memory (BAR bits 3:0 = 0xC), taking this BAR
    /// register and the next one (the high dword): what QEMU gives virtio's
    /// modern BAR.
    Mem64,
}

/// The highest guest-physical address a 64-bit BAR may decode at (52 bits,
/// the architectural physical address limit).
const MEM64_LIMIT: u64 = 1 << 52;

impl BarKind {
    /// The BAR register's low flag bits.
    fn flags(self) -> u32 {
        match self {
            BarKind::Io => 1,
            BarKind::Mem32 => 0,
            BarKind::Mem64 => 0xc,
        }
    }
}

/// One mapping: `[base, base + len)` of a space, owned by a BAR.
struct Mapping {
    owner: (u16, u8),
    base: u64,
    len: u64,
    dev: Arc<Mutex<dyn BusDevice>>,
}

/// The BARs currently decoded in one address space (ports or memory).
#[derive(Default)]
pub struct PciBarSpace {
    maps: Mutex<Vec<Mapping>>,
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl PciBarSpace {
    /// An empty space.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Map (or with `base == None` unmap) the BAR `owner` = (bdf, bar).
    fn set(&self, owner: (u16, u8), base: Option<u64>, len: u64, dev: &Arc<Mutex<dyn BusDevice>>) {
        let mut maps = lock(&self.maps);
        maps.retain(|m| m.owner != owner);
        if let Some(base) = base {
            maps.push(Mapping {
                owner,
                base,
                len,
                dev: dev.clone(),
            });
        }
    }

    /// The base of the BAR `owner`, if mapped.
    pub fn base_of(&self, bdf: u16, bar: u8) -> Option<u64> {
        lock(&self.maps)
            .iter()
            .find(|m| m.owner == (bdf, bar))
            .map(|m| m.base)
    }

    /// The device and offset covering `addr` (the first mapped BAR, as
    /// overlapping BARs are the guest's problem).
    fn find(&self, addr: u64) -> Option<(Arc<Mutex<dyn BusDevice>>, u64)> {
        lock(&self.maps)
            .iter()
            .find(|m| addr >= m.base && addr - m.base < m.len)
            .map(|m| (m.dev.clone(), addr - m.base))
    }
}

impl BusFallback for PciBarSpace {
    fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        let Some((dev, off)) = self.find(addr) else {
            return false;
        };
        lock(&*dev).read(off, data);
        true
    }

    fn write(&self, addr: u64, data: &[u8]) -> Option<Option<VmRequest>> {
        let (dev, off) = self.find(addr)?;
        let r = lock(&*dev).write(off, data);
        Some(r)
    }
}

/// A BAR of a [`PciBarFunction`]: its kind, size (a power of two) and the
/// device behind it (which sees offsets into the BAR).
pub struct Bar {
    /// Port or memory.
    pub kind: BarKind,
    /// Size in bytes: a power of two, at least 4 (I/O) or 16 (memory).
    pub size: u64,
    /// The registers behind the BAR.
    pub dev: Arc<Mutex<dyn BusDevice>>,
}

/// A type 0 function with up to six BARs decoded through `io` and `mem`.
pub struct PciBarFunction {
    space: PciConfigSpace,
    bdf: u16,
    bars: Vec<Option<Bar>>,
    io: Arc<PciBarSpace>,
    mem: Arc<PciBarSpace>,
}

const COMMAND: u8 = 0x04;
const BAR0: u8 = 0x10;
const CMD_IO: u16 = 1 << 0;
const CMD_MEM: u16 = 1 << 1;

impl PciBarFunction {
    /// `space` is the header (ids, class); `bars[i]` goes in BAR i. The
    /// function sits at `bdf` (bus << 8 | dev << 3 | fn), used to tell its
    /// BARs apart from others' in the decoders.
    pub fn new(
        mut space: PciConfigSpace,
        bdf: u16,
        bars: Vec<Option<Bar>>,
        io: Arc<PciBarSpace>,
        mem: Arc<PciBarSpace>,
    ) -> Self {
        assert!(bars.len() <= 6, "a type 0 header has six BARs");
        for (i, bar) in bars.iter().enumerate() {
            let Some(b) = bar else { continue };
            assert!(b.size.is_power_of_two(), "BAR size must be a power of two");
            let reg = BAR0 + 4 * i as u8;
            let min = if b.kind == BarKind::Io { 4 } else { 16 };
            let mask = !(b.size.max(min) - 1);
            space.set_u32(reg, b.kind.flags());
            space.set_writable(reg, &(mask as u32).to_le_bytes());
            if b.kind == BarKind::Mem64 {
                assert!(
                    matches!(bars.get(i + 1), Some(None)),
                    "a 64-bit BAR needs the next BAR register free"
                );
                space.set_writable(reg + 4, &((mask >> 32) as u32).to_le_bytes());
            }
        }
        let mut f = Self {
            space,
            bdf,
            bars,
            io,
            mem,
        };
        f.update_mappings();
        f
    }

    /// Set BAR `i`'s address and enable the decoding of its space, as the
    /// firmware would.
    pub fn assign(&mut self, i: usize, base: u64) {
        let Some(Some(bar)) = self.bars.get(i) else {
            return;
        };
        let enable = match bar.kind {
            BarKind::Io => CMD_IO,
            BarKind::Mem32 | BarKind::Mem64 => CMD_MEM,
        };
        let reg = BAR0 + 4 * i as u8;
        self.space.set_u32(reg, base as u32 | bar.kind.flags());
        if bar.kind == BarKind::Mem64 {
            self.space.set_u32(reg + 4, (base >> 32) as u32);
        }
        let cmd = self.space.u16_at(COMMAND) | enable;
        self.space.set_u16(COMMAND, cmd);
        self.update_mappings();
    }

    /// The configuration space (to set more registers before use).
    pub fn space_mut(&mut self) -> &mut PciConfigSpace {
        &mut self.space
    }

    /// The current address of BAR `i` (as the guest set it), if it has one.
    pub fn bar_address(&self, i: usize) -> Option<u64> {
        let b = self.bars.get(i)?.as_ref()?;
        let reg = self.space.u32_at(BAR0 + 4 * i as u8);
        Some(match b.kind {
            BarKind::Io => u64::from(reg & !3),
            BarKind::Mem32 => u64::from(reg & !0xf),
            BarKind::Mem64 => {
                u64::from(reg & !0xf) | u64::from(self.space.u32_at(BAR0 + 4 * i as u8 + 4)) << 32
            }
        })
    }

    /// The configuration space.
    pub fn space(&self) -> &PciConfigSpace {
        &self.space
    }

    /// Recompute which BARs decode where, as QEMU does: a BAR is mapped when
    /// its space is enabled in the command register and its address is not
    /// 0 and fits the space (ports below 64 KiB, 32-bit memory below 4 GiB,
    /// 64-bit memory below 2^52).
    fn update_mappings(&mut self) {
        let cmd = self.space.u16_at(COMMAND);
        for (i, bar) in self.bars.iter().enumerate() {
            let Some(b) = bar else { continue };
            let base = self.bar_address(i).unwrap_or(0);
            let (enabled, limit, space) = match b.kind {
                BarKind::Io => (cmd & CMD_IO != 0, 1u64 << 16, &self.io),
                BarKind::Mem32 => (cmd & CMD_MEM != 0, 1u64 << 32, &self.mem),
                BarKind::Mem64 => (cmd & CMD_MEM != 0, MEM64_LIMIT, &self.mem),
            };
            let fits = base.checked_add(b.size).is_some_and(|end| end <= limit);
            let ok = enabled && base != 0 && fits;
            space.set((self.bdf, i as u8), ok.then_some(base), b.size, &b.dev);
        }
    }
}

impl PciFunction for PciBarFunction {
    fn config_read(&mut self, reg: u8) -> u32 {
        self.space.config_read(reg)
    }

    fn bars(&self) -> Vec<BarInfo> {
        self.bars
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let b = b.as_ref()?;
                Some(BarInfo {
                    index: i as u8,
                    kind: b.kind,
                    address: self.bar_address(i)?,
                    size: b.size,
                })
            })
            .collect()
    }

    fn config_write(&mut self, offset: u8, data: &[u8]) {
        self.space.config_write(offset, data);
        let end = usize::from(offset) + data.len();
        let touches = |lo: usize, hi: usize| usize::from(offset) < hi && end > lo;
        if touches(0x04, 0x06) || touches(0x10, 0x28) {
            self.update_mappings();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{fill_le, Bus};

    /// Echoes the offset it is accessed at; records writes.
    #[derive(Default)]
    struct Regs {
        writes: Vec<(u64, Vec<u8>)>,
    }

    impl BusDevice for Regs {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            fill_le(data, offset);
        }
        fn write(&mut self, offset: u64, data: &[u8]) -> Option<VmRequest> {
            self.writes.push((offset, data.to_vec()));
            None
        }
    }

    fn setup() -> (PciBarFunction, Bus, Bus, Arc<Mutex<Regs>>) {
        let io = PciBarSpace::new();
        let mem = PciBarSpace::new();
        let regs = Arc::new(Mutex::new(Regs::default()));
        let f = PciBarFunction::new(
            PciConfigSpace::new(0x1b36, 0x0005, 0xff_00_00, 0),
            0x10,
            vec![
                Some(Bar {
                    kind: BarKind::Mem32,
                    size: 0x1000,
                    dev: regs.clone(),
                }),
                Some(Bar {
                    kind: BarKind::Io,
                    size: 0x100,
                    dev: regs.clone(),
                }),
            ],
            io.clone(),
            mem.clone(),
        );
        let (mut pio, mut mmio) = (Bus::new(), Bus::new());
        pio.set_fallback(io);
        mmio.set_fallback(mem);
        (f, pio, mmio, regs)
    }

    fn read(bus: &Bus, addr: u64) -> Option<u64> {
        let mut d = [0u8; 2];
        bus.read(addr, &mut d)
            .then(|| u64::from(u16::from_le_bytes(d)))
    }

    #[test]
    fn unassigned_bars_decode_nothing_and_size_probes_work() {
        let (mut f, pio, mmio, _) = setup();
        assert_eq!(f.config_read(0x10), 0);
        assert_eq!(f.config_read(0x14), 1);
        assert_eq!(read(&mmio, 0), None);
        // Sizing: write all ones, read the mask back.
        f.config_write(0x10, &[0xff; 4]);
        assert_eq!(f.config_read(0x10), 0xffff_f000);
        f.config_write(0x14, &[0xff; 4]);
        assert_eq!(f.config_read(0x14), 0xffff_ff01);
        // Decoding is still off in the command register.
        assert_eq!(read(&mmio, 0xffff_f000), None);
        assert_eq!(read(&pio, 0xff00), None);
    }

    #[test]
    fn assigned_bars_decode_and_follow_moves() {
        let (mut f, pio, mmio, regs) = setup();
        f.assign(0, 0xfebf_f000);
        f.assign(1, 0xc000);
        assert_eq!(f.config_read(0x04) & 3, 3);
        assert_eq!(f.config_read(0x10), 0xfebf_f000);
        assert_eq!(f.config_read(0x14), 0xc001);
        assert_eq!(read(&mmio, 0xfebf_f010), Some(0x10));
        assert_eq!(read(&pio, 0xc0fe), Some(0xfe));
        assert_eq!(read(&pio, 0xc100), None);
        assert_eq!(pio.write(0xc004, &[7]), None);
        assert_eq!(regs.lock().unwrap().writes, vec![(4, vec![7])]);
        // Move the memory BAR (low bits are read-only).
        f.config_write(0x10, &0xe000_0fffu32.to_le_bytes());
        assert_eq!(f.config_read(0x10), 0xe000_0000);
        assert_eq!(read(&mmio, 0xfebf_f010), None);
        assert_eq!(read(&mmio, 0xe000_0020), Some(0x20));
        // Disable I/O decoding: the port BAR goes away.
        f.config_write(0x04, &[CMD_MEM as u8, 0]);
        assert_eq!(read(&pio, 0xc000), None);
        assert_eq!(read(&mmio, 0xe000_0000), Some(0));
        // A port BAR past 64 KiB is not decoded.
        f.config_write(0x04, &[3, 0]);
        f.config_write(0x14, &[0xff; 4]);
        assert_eq!(read(&pio, 0xff00), None);
    }

    #[test]
    fn a_64_bit_bar_takes_two_registers_and_decodes_above_4g() {
        let mem = PciBarSpace::new();
        let regs = Arc::new(Mutex::new(Regs::default()));
        let mut f = PciBarFunction::new(
            PciConfigSpace::new(0x1af4, 0x1044, 0xff_00_00, 1),
            0x10,
            vec![
                None,
                None,
                Some(Bar {
                    kind: BarKind::Mem64,
                    size: 0x4000,
                    dev: regs,
                }),
                None,
            ],
            PciBarSpace::new(),
            mem.clone(),
        );
        let mut mmio = Bus::new();
        mmio.set_fallback(mem);
        assert_eq!(f.config_read(0x18), 0xc, "64-bit prefetchable");
        f.config_write(0x18, &[0xff; 4]);
        f.config_write(0x1c, &[0xff; 4]);
        assert_eq!(f.config_read(0x18), 0xffff_c00c);
        assert_eq!(f.config_read(0x1c), 0xffff_ffff);
        f.assign(2, 0xfebf_c000);
        assert_eq!(f.config_read(0x1c), 0);
        assert_eq!(read(&mmio, 0xfebf_c010), Some(0x10));
        // Moved above 4 GiB by the high dword.
        f.config_write(0x1c, &[1, 0, 0, 0]);
        assert_eq!(f.bar_address(2), Some(0x1_febf_c000));
        assert_eq!(read(&mmio, 0xfebf_c010), None);
        assert_eq!(read(&mmio, 0x1_febf_c020), Some(0x20));
        // All ones (sizing with decoding on) decodes nothing and overflows
        // nothing.
        f.config_write(0x18, &[0xff; 4]);
        f.config_write(0x1c, &[0xff; 4]);
        assert_eq!(read(&mmio, 0xffff_ffff_ffff_c000), None);
    }
}

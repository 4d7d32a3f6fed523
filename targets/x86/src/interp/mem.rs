//! Memory access through segments, and implicit system accesses, on top of
//! the shared [`crate::mmu`] path.

use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::XResult;
use crate::mmu::seg::{self, SegAccess};
use crate::SegReg;

macro_rules! seg_rw {
    ($read:ident, $write:ident, $mread:ident, $mwrite:ident, $t:ty) => {
        #[inline]
        pub fn $read(&mut self, bus: &mut dyn CpuBus, s: SegReg, off: u64) -> XResult<$t> {
            let lin = self.lin(s, off, std::mem::size_of::<$t>() as u64, SegAccess::Read)?;
            self.mmu.$mread(&self.state, bus, lin, self.user)
        }
        #[inline]
        pub fn $write(&mut self, bus: &mut dyn CpuBus, s: SegReg, off: u64, v: $t) -> XResult<()> {
            let lin = self.lin(s, off, std::mem::size_of::<$t>() as u64, SegAccess::Write)?;
            self.mmu.$mwrite(&self.state, bus, lin, v, self.user)
        }
    };
}

impl Cpu {
    /// Linear address of `size` bytes at `s:off` for `access`.
    #[inline(always)]
    pub fn lin(&self, s: SegReg, off: u64, size: u64, access: SegAccess) -> XResult<u64> {
        let lin = seg::linear(&self.state, self.long64, self.real, s, off, size, access)?;
        if self.ac && matches!(size, 2 | 4 | 8) && lin & (size - 1) != 0 {
            return Err(crate::exception::Exception::with_code(
                crate::exception::vector::AC,
                0,
            ));
        }
        Ok(lin)
    }

    seg_rw!(read_u8, write_u8, read_u8, write_u8, u8);
    seg_rw!(read_u16, write_u16, read_u16, write_u16, u16);
    seg_rw!(read_u32, write_u32, read_u32, write_u32, u32);
    seg_rw!(read_u64, write_u64, read_u64, write_u64, u64);
    seg_rw!(read_u128, write_u128, read_u128, write_u128, u128);

    /// Reads `size` (1, 2, 4, 8) bytes, zero-extended.
    #[inline]
    pub fn read_sized(
        &mut self,
        bus: &mut dyn CpuBus,
        s: SegReg,
        off: u64,
        size: u32,
    ) -> XResult<u64> {
        Ok(match size {
            1 => self.read_u8(bus, s, off)? as u64,
            2 => self.read_u16(bus, s, off)? as u64,
            4 => self.read_u32(bus, s, off)? as u64,
            _ => self.read_u64(bus, s, off)?,
        })
    }

    /// Writes the low `size` bytes of `v`.
    #[inline]
    pub fn write_sized(
        &mut self,
        bus: &mut dyn CpuBus,
        s: SegReg,
        off: u64,
        size: u32,
        v: u64,
    ) -> XResult<()> {
        match size {
            1 => self.write_u8(bus, s, off, v as u8),
            2 => self.write_u16(bus, s, off, v as u16),
            4 => self.write_u32(bus, s, off, v as u32),
            _ => self.write_u64(bus, s, off, v),
        }
    }

    /// Reads at a linear address with the current privilege.
    #[inline(always)]
    pub fn read_lin_sized(&mut self, bus: &mut dyn CpuBus, lin: u64, size: u32) -> XResult<u64> {
        let u = self.user;
        self.read_lin_sized_as(bus, lin, size, u)
    }

    #[inline(always)]
    pub fn write_lin_sized(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        size: u32,
        v: u64,
    ) -> XResult<()> {
        let u = self.user;
        self.write_lin_sized_as(bus, lin, size, v, u)
    }

    #[inline(always)]
    pub fn read_lin_sized_as(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        size: u32,
        user: bool,
    ) -> XResult<u64> {
        if self.lock != super::locked::LockState::Off {
            return self.locked_read(bus, lin, size, user);
        }
        let st = &self.state;
        Ok(match size {
            1 => self.mmu.read_u8(st, bus, lin, user)? as u64,
            2 => self.mmu.read_u16(st, bus, lin, user)? as u64,
            4 => self.mmu.read_u32(st, bus, lin, user)? as u64,
            _ => self.mmu.read_u64(st, bus, lin, user)?,
        })
    }

    #[inline(always)]
    pub fn write_lin_sized_as(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        size: u32,
        v: u64,
        user: bool,
    ) -> XResult<()> {
        if self.lock != super::locked::LockState::Off {
            return self.locked_write(bus, lin, size, v, user);
        }
        let st = &self.state;
        match size {
            1 => self.mmu.write_u8(st, bus, lin, v as u8, user),
            2 => self.mmu.write_u16(st, bus, lin, v as u16, user),
            4 => self.mmu.write_u32(st, bus, lin, v as u32, user),
            _ => self.mmu.write_u64(st, bus, lin, v, user),
        }
    }

    /// Runs `f` with the MMU's supervisor accesses marked implicit.
    #[inline]
    fn implicit<T>(&mut self, f: impl FnOnce(&mut Self) -> XResult<T>) -> XResult<T> {
        self.mmu.implicit = true;
        let r = f(self);
        self.mmu.implicit = false;
        r
    }

    /// Implicit supervisor-mode read (descriptor tables, TSS, IDT).
    pub fn sys_read_u64(&mut self, bus: &mut dyn CpuBus, lin: u64) -> XResult<u64> {
        self.implicit(|c| c.mmu.read_u64(&c.state, bus, lin, false))
    }
    pub fn sys_read_u32(&mut self, bus: &mut dyn CpuBus, lin: u64) -> XResult<u32> {
        self.implicit(|c| c.mmu.read_u32(&c.state, bus, lin, false))
    }
    pub fn sys_read_u16(&mut self, bus: &mut dyn CpuBus, lin: u64) -> XResult<u16> {
        self.implicit(|c| c.mmu.read_u16(&c.state, bus, lin, false))
    }
    pub fn sys_write_u8(&mut self, bus: &mut dyn CpuBus, lin: u64, v: u8) -> XResult<()> {
        self.implicit(|c| c.mmu.write_u8(&c.state, bus, lin, v, false))
    }
    pub fn sys_write_u16(&mut self, bus: &mut dyn CpuBus, lin: u64, v: u16) -> XResult<()> {
        self.implicit(|c| c.mmu.write_u16(&c.state, bus, lin, v, false))
    }
    pub fn sys_write_u32(&mut self, bus: &mut dyn CpuBus, lin: u64, v: u32) -> XResult<()> {
        self.implicit(|c| c.mmu.write_u32(&c.state, bus, lin, v, false))
    }

    /// Reads `buf.len()` bytes at `s:off`.
    pub fn read_bytes(
        &mut self,
        bus: &mut dyn CpuBus,
        s: SegReg,
        off: u64,
        buf: &mut [u8],
    ) -> XResult<()> {
        let lin = self.lin(s, off, buf.len() as u64, SegAccess::Read)?;
        self.mmu.read(&self.state, bus, lin, buf, self.user)
    }

    /// Writes `data` at `s:off`.
    pub fn write_bytes(
        &mut self,
        bus: &mut dyn CpuBus,
        s: SegReg,
        off: u64,
        data: &[u8],
    ) -> XResult<()> {
        let lin = self.lin(s, off, data.len() as u64, SegAccess::Write)?;
        self.mmu.write(&self.state, bus, lin, data, self.user)
    }
}

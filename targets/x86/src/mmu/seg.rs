//! Segmentation: logical (segment, offset) → linear address with the
//! limit, type and canonical checks of the current mode.

use crate::consts::seg_attr;
use crate::exception::{Exception, XResult};
use crate::{CpuState, SegReg};

/// Kind of a data access through a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegAccess {
    Read,
    Write,
    /// Address computation only (e.g. prefetch): limit checks but no type check.
    None,
}

/// Whether `addr` is canonical for 48-bit linear addresses.
#[inline(always)]
pub fn is_canonical(addr: u64) -> bool {
    ((addr as i64) << 16 >> 16) as u64 == addr
}

#[inline(always)]
fn seg_fault(seg: SegReg) -> Exception {
    if seg == SegReg::Ss {
        Exception::ss(0)
    } else {
        Exception::gp0()
    }
}

/// Computes the linear address of a `size`-byte access at `off` through
/// `seg`. `long64` is true in 64-bit mode; `real` in real and v8086 mode
/// (no type/presence checks, only limits).
#[inline(always)]
pub fn linear(
    st: &CpuState,
    long64: bool,
    real: bool,
    seg: SegReg,
    off: u64,
    size: u64,
    access: SegAccess,
) -> XResult<u64> {
    if long64 {
        let base = match seg {
            SegReg::Fs | SegReg::Gs => st.segs[seg as usize].base,
            _ => 0,
        };
        let lin = base.wrapping_add(off);
        if !is_canonical(lin) || !is_canonical(lin.wrapping_add(size.saturating_sub(1))) {
            return Err(seg_fault(seg));
        }
        return Ok(lin);
    }
    let s = &st.segs[seg as usize];
    let a = s.attr;
    if !real {
        if a & seg_attr::P == 0 {
            return Err(seg_fault(seg));
        }
        let code = a & seg_attr::CODE != 0;
        match access {
            SegAccess::Write if code || a & seg_attr::RW == 0 => return Err(seg_fault(seg)),
            SegAccess::Read if code && a & seg_attr::RW == 0 => return Err(seg_fault(seg)),
            _ => {}
        }
    }
    let last = off.wrapping_add(size.saturating_sub(1));
    let expand_down = a & (seg_attr::CODE | seg_attr::DC) == seg_attr::DC && !real;
    if expand_down {
        let upper: u64 = if a & seg_attr::DB != 0 {
            0xffff_ffff
        } else {
            0xffff
        };
        if off <= s.limit as u64 || last > upper || last < off {
            return Err(seg_fault(seg));
        }
    } else if last > s.limit as u64 || last < off {
        return Err(seg_fault(seg));
    }
    Ok(s.base.wrapping_add(off) & 0xffff_ffff)
}

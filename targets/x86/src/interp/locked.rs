//! LOCK-prefixed read-modify-write instructions (and XCHG with memory) as
//! host atomics on guest RAM, so that vCPUs running in parallel threads see
//! them as one indivisible access, as on x86.
//!
//! The instruction's ordinary semantic function runs once in "locked" mode:
//! its read of the memory operand is an atomic load through the TLB's host
//! pointer (recorded), its write a compare-and-swap against that value. A
//! failed CAS means another agent wrote in between: registers and flags are
//! put back and the instruction runs again on the new value. Because the
//! semantic functions are reused, every lockable instruction (ADD..XOR, ADC,
//! SBB, INC, DEC, NEG, NOT, BTS/BTR/BTC, XADD, XCHG, CMPXCHG, CMPXCHG8B and,
//! on x86-64 hosts, CMPXCHG16B) gets the same treatment and the same
//! faults (the write fault of a locked cycle comes from the translation for
//! write done by the read).
//!
//! Operands the host cannot access atomically (misaligned, crossing a page,
//! MMIO, ROM, pages holding translated code or watched by a debugger) run
//! under one machine-wide lock instead: atomic among locked instructions,
//! not against plain stores of other vCPUs (a split lock; rare in real
//! code, logged once).

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::Cpu;
use crate::bus::CpuBus;
use crate::exception::{Exception, XResult};
use crate::mmu::tlb::{ATTR_RAM_WRITE, PAGE_MASK, TAG_INVALID, TAG_SLOW};
use crate::mmu::Access;

/// The locked-mode state of a vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum LockState {
    /// Ordinary execution.
    #[default]
    Off,
    /// A locked instruction runs; its memory operand is not read yet.
    Armed,
    /// The operand was read atomically at host address `host`.
    Atomic {
        lin: u64,
        size: u32,
        host: usize,
        old: u64,
    },
    /// The operand is accessed under [`SPLIT_LOCK`].
    Split,
}

/// The machine-wide lock of split (non-atomic-capable) locked accesses.
static SPLIT_LOCK: AtomicBool = AtomicBool::new(false);

fn split_acquire() {
    while SPLIT_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

fn split_release() {
    SPLIT_LOCK.store(false, Ordering::Release);
}

/// The vector that marks "another agent changed the operand: run again"
/// (never delivered: it is not an architectural vector).
const RETRY: u8 = 0xff;

/// The instructions a LOCK prefix may precede (with a memory destination).
fn lockable(m: Mnemonic) -> bool {
    use Mnemonic as M;
    matches!(
        m,
        M::Add
            | M::Adc
            | M::And
            | M::Btc
            | M::Btr
            | M::Bts
            | M::Cmpxchg
            | M::Cmpxchg8b
            | M::Cmpxchg16b
            | M::Dec
            | M::Inc
            | M::Neg
            | M::Not
            | M::Or
            | M::Sbb
            | M::Sub
            | M::Xor
            | M::Xadd
            | M::Xchg
    )
}

/// How a decoded instruction relates to LOCK: `Some(true)` a locked
/// read-modify-write of memory (also XCHG with memory, locked without the
/// prefix), `Some(false)` a LOCK prefix where none is allowed (#UD),
/// `None` neither.
pub(crate) fn lock_kind(i: &Instruction) -> Option<bool> {
    let xchg_mem = i.mnemonic() == Mnemonic::Xchg
        && (i.op0_kind() == OpKind::Memory || i.op1_kind() == OpKind::Memory);
    if xchg_mem {
        return Some(true);
    }
    if !i.has_lock_prefix() {
        return None;
    }
    Some(lockable(i.mnemonic()) && i.op0_kind() == OpKind::Memory)
}

/// LOCK before an instruction that cannot be locked: #UD.
pub(crate) fn lock_ud(_: &mut Cpu, _: &mut dyn CpuBus, _: &Instruction) -> XResult<()> {
    Err(Exception::new(crate::exception::vector::UD))
}

/// The handler of locked instructions: the ordinary semantics, retried
/// until the compare-and-swap of the result succeeds.
pub(crate) fn locked(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    let gpr = cpu.state.gpr;
    let rflags = cpu.state.rflags;
    loop {
        cpu.lock = LockState::Armed;
        let r = super::exec::execute(cpu, bus, i);
        if std::mem::take(&mut cpu.lock) == LockState::Split {
            split_release();
        }
        match r {
            Err(e) if e.vector == RETRY => {
                cpu.state.gpr = gpr;
                cpu.state.rflags = rflags;
                std::hint::spin_loop();
            }
            r => return r,
        }
    }
}

/// Host pointer for an atomic access of `size` bytes at `lin`, if the
/// operand allows one; `Err` is the access's fault.
fn atomic_ptr(
    cpu: &mut Cpu,
    bus: &mut dyn CpuBus,
    lin: u64,
    size: u32,
    user: bool,
) -> XResult<Option<usize>> {
    let e = cpu
        .mmu
        .translate(&cpu.state, bus, lin, Access::Write, user)?;
    let aligned = lin & (u64::from(size) - 1) == 0;
    let fast =
        e.tag_write & (TAG_INVALID | TAG_SLOW) == 0 && e.tag_write & PAGE_MASK == lin & PAGE_MASK;
    if aligned && fast && e.attrs & ATTR_RAM_WRITE != 0 {
        return Ok(Some(e.addend.wrapping_add(lin) as usize));
    }
    // Fault now if the second page of a crossing operand is not writable.
    cpu.mmu
        .probe_write(&cpu.state, bus, lin, size as usize, user)?;
    Ok(None)
}

// SAFETY (for `load` and `cas`): `host` comes from a TLB entry whose write
// tag matched (a writable RAM page mapped for the life of the bus), the
// operand is naturally aligned and inside the page; guest RAM is shared
// with other vCPU threads, which is why it is only accessed through
// atomics here.

/// Atomic load of `size` bytes at `host` (see the SAFETY note above).
fn load(host: usize, size: u32) -> u64 {
    let o = Ordering::SeqCst;
    // SAFETY: see above.
    unsafe {
        match size {
            1 => AtomicU8::from_ptr(host as *mut u8).load(o).into(),
            2 => AtomicU16::from_ptr(host as *mut u16).load(o).into(),
            4 => AtomicU32::from_ptr(host as *mut u32).load(o).into(),
            _ => AtomicU64::from_ptr(host as *mut u64).load(o),
        }
    }
}

/// Compare-and-swap of `size` bytes at `host`: whether `old` was there and
/// `new` is now (see the SAFETY note above).
fn cas(host: usize, size: u32, old: u64, new: u64) -> bool {
    let o = Ordering::SeqCst;
    // SAFETY: see above.
    unsafe {
        match size {
            1 => AtomicU8::from_ptr(host as *mut u8)
                .compare_exchange(old as u8, new as u8, o, o)
                .is_ok(),
            2 => AtomicU16::from_ptr(host as *mut u16)
                .compare_exchange(old as u16, new as u16, o, o)
                .is_ok(),
            4 => AtomicU32::from_ptr(host as *mut u32)
                .compare_exchange(old as u32, new as u32, o, o)
                .is_ok(),
            _ => AtomicU64::from_ptr(host as *mut u64)
                .compare_exchange(old, new, o, o)
                .is_ok(),
        }
    }
}

impl Cpu {
    /// A read of the memory operand in locked mode.
    #[cold]
    pub(crate) fn locked_read(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        size: u32,
        user: bool,
    ) -> XResult<u64> {
        match self.lock {
            LockState::Armed => match atomic_ptr(self, bus, lin, size, user)? {
                Some(host) => {
                    let old = load(host, size);
                    self.lock = LockState::Atomic {
                        lin,
                        size,
                        host,
                        old,
                    };
                    Ok(old)
                }
                None => {
                    self.note_split_lock(lin, size);
                    split_acquire();
                    self.lock = LockState::Split;
                    self.plain_read(bus, lin, size, user)
                }
            },
            LockState::Atomic {
                lin: l,
                size: s,
                host,
                ..
            } if l == lin && s == size => Ok(load(host, size)),
            _ => self.plain_read(bus, lin, size, user),
        }
    }

    /// A write of the memory operand in locked mode: the compare-and-swap.
    #[cold]
    pub(crate) fn locked_write(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        size: u32,
        v: u64,
        user: bool,
    ) -> XResult<()> {
        match self.lock {
            LockState::Atomic {
                lin: l,
                size: s,
                host,
                old,
            } if l == lin && s == size => {
                if !cas(host, size, old, v) {
                    return Err(Exception::new(RETRY));
                }
                // Later writes of the same instruction (none today) are
                // plain stores.
                self.lock = LockState::Armed;
                Ok(())
            }
            LockState::Armed => {
                // Written without being read (XCHG reads first; kept for
                // safety): a plain store under the split lock.
                self.note_split_lock(lin, size);
                split_acquire();
                self.lock = LockState::Split;
                self.plain_write(bus, lin, size, v, user)
            }
            _ => self.plain_write(bus, lin, size, v, user),
        }
    }

    /// CMPXCHG16B's 16-byte compare-and-swap: `Ok(Ok(()))` swapped,
    /// `Ok(Err(current))` compared unequal, `Err` a fault. Without a host
    /// instruction for it the machine-wide lock is used.
    pub(crate) fn locked_cmpxchg16(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        expected: u128,
        new: u128,
    ) -> XResult<Result<(), u128>> {
        let user = self.user;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("cmpxchg16b") {
            if let Some(host) = atomic_ptr(self, bus, lin, 16, user)? {
                // SAFETY: as for `load`/`cas`: a writable RAM page, the
                // operand 16-byte aligned (checked by the caller) inside
                // it; the CPU has CMPXCHG16B (checked above).
                let cur = unsafe { cas16(host as *mut u128, expected, new) };
                return Ok(if cur == expected { Ok(()) } else { Err(cur) });
            }
        }
        self.note_split_lock(lin, 16);
        split_acquire();
        let r = (|| {
            let cur = self.mmu.read_u128(&self.state, bus, lin, user)?;
            if cur == expected {
                self.mmu.write_u128(&self.state, bus, lin, new, user)?;
                Ok(Ok(()))
            } else {
                self.mmu.probe_write(&self.state, bus, lin, 16, user)?;
                Ok(Err(cur))
            }
        })();
        split_release();
        r
    }

    /// An ordinary access of the operand (split lock, or a second access).
    fn plain_read(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        size: u32,
        user: bool,
    ) -> XResult<u64> {
        let mode = std::mem::take(&mut self.lock);
        let r = self.read_lin_sized_as(bus, lin, size, user);
        self.lock = mode;
        r
    }

    fn plain_write(
        &mut self,
        bus: &mut dyn CpuBus,
        lin: u64,
        size: u32,
        v: u64,
        user: bool,
    ) -> XResult<()> {
        let mode = std::mem::take(&mut self.lock);
        let r = self.write_lin_sized_as(bus, lin, size, v, user);
        self.lock = mode;
        r
    }

    fn note_split_lock(&mut self, lin: u64, size: u32) {
        if !self.split_lock_seen {
            self.split_lock_seen = true;
            log::debug!(target: "unimp",
                "locked access of {size} bytes at {lin:#x} is not host-atomic (misaligned, MMIO or a code page): serialized with other locked accesses only");
        }
    }
}

/// `lock cmpxchg16b` on host memory; returns the value found.
///
/// # Safety
/// `p` must be 16-byte aligned, valid for reads and writes, and the CPU
/// must support CMPXCHG16B.
#[cfg(target_arch = "x86_64")]
unsafe fn cas16(p: *mut u128, expected: u128, new: u128) -> u128 {
    let (mut lo, mut hi) = (expected as u64, (expected >> 64) as u64);
    // SAFETY: forwarded from the caller's contract. RBX is reserved by the
    // compiler, so the new low half is swapped into it around the
    // instruction and restored after.
    unsafe {
        std::arch::asm!(
            "xchg {nlo}, rbx",
            "lock cmpxchg16b [{p}]",
            "mov rbx, {nlo}",
            p = in(reg) p,
            nlo = inout(reg) new as u64 => _,
            inout("rax") lo,
            inout("rdx") hi,
            in("rcx") (new >> 64) as u64,
            options(nostack),
        );
    }
    (u128::from(hi) << 64) | u128::from(lo)
}

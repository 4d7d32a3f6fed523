//! The gdbstub thread operations: one gdb thread per vCPU (thread `n` is
//! vCPU `n - 1`), registers and memory as the selected vCPU sees them, and
//! per-thread resume actions (`vCont`).

use gdbstub::common::{Signal, Tid};
use gdbstub::target::ext::base::multithread::{
    MultiThreadBase, MultiThreadResume, MultiThreadResumeOps, MultiThreadSchedulerLocking,
    MultiThreadSchedulerLockingOps, MultiThreadSingleStep, MultiThreadSingleStepOps,
};
use gdbstub::target::ext::base::single_register_access::{
    SingleRegisterAccess, SingleRegisterAccessOps,
};
use gdbstub::target::ext::thread_extra_info::{ThreadExtraInfo, ThreadExtraInfoOps};
use gdbstub::target::{TargetError, TargetResult};

use super::arch::{Reg, Regs};
use super::mem;
use super::target::{HxTarget, Resume, TargetFail, EFAULT, EINVAL};

/// Selects thread `tid` for an access, or refuses one gdb made up.
fn select(t: &mut HxTarget<'_>, tid: Tid) -> Result<(), TargetError<TargetFail>> {
    if t.select(tid) {
        Ok(())
    } else {
        Err(TargetError::Errno(EINVAL))
    }
}

/// Changes the selected vCPU's state with `edit`, which may read guest
/// memory as that vCPU sees it.
fn edit_state(
    t: &mut HxTarget<'_>,
    edit: impl FnOnce(&mut x86::CpuState, &mut dyn FnMut(u64, &mut [u8]) -> bool) -> Result<(), String>,
) -> Result<(), TargetError<TargetFail>> {
    let mut st = t.state().map_err(TargetError::Fatal)?;
    let m = t.mem.clone();
    let snapshot = st;
    let mut reader = |a: u64, b: &mut [u8]| match mem::translate(&snapshot, &m, a) {
        Some(p) => mem::read_phys(&m, p, b),
        None => false,
    };
    if let Err(e) = edit(&mut st, &mut reader) {
        log::warn!(target: "gdb", "register write refused: {e}");
        return Err(TargetError::Errno(EINVAL));
    }
    t.set_state(&st).map_err(|e| {
        log::warn!(target: "gdb", "{}", e.0);
        TargetError::Errno(EINVAL)
    })
}

impl MultiThreadBase for HxTarget<'_> {
    fn read_registers(&mut self, regs: &mut Regs, tid: Tid) -> TargetResult<(), Self> {
        select(self, tid)?;
        let st = self.state().map_err(TargetError::Fatal)?;
        regs.bytes = x86::gdb::read_all(&st);
        Ok(())
    }

    fn write_registers(&mut self, regs: &Regs, tid: Tid) -> TargetResult<(), Self> {
        select(self, tid)?;
        edit_state(self, |st, rd| {
            x86::gdb::write_all(st, &regs.bytes, rd).map_err(|e| e.to_string())
        })
    }

    fn support_single_register_access(&mut self) -> Option<SingleRegisterAccessOps<'_, Tid, Self>> {
        Some(self)
    }

    fn read_addrs(&mut self, start: u64, data: &mut [u8], tid: Tid) -> TargetResult<usize, Self> {
        select(self, tid)?;
        match self.read_linear(start, data) {
            0 if !data.is_empty() => Err(TargetError::Errno(EFAULT)),
            n => Ok(n),
        }
    }

    fn write_addrs(&mut self, start: u64, data: &[u8], tid: Tid) -> TargetResult<(), Self> {
        select(self, tid)?;
        if self.write_linear(start, data) {
            Ok(())
        } else {
            Err(TargetError::Errno(EFAULT))
        }
    }

    fn list_active_threads(
        &mut self,
        thread_is_active: &mut dyn FnMut(Tid),
    ) -> Result<(), TargetFail> {
        for i in 0..self.vcpus.len() {
            // `info threads` asks for the extra information next.
            self.cpus[i].extra = self.describe(i);
            thread_is_active(Self::tid(i));
        }
        Ok(())
    }

    fn is_thread_alive(&mut self, tid: Tid) -> Result<bool, TargetFail> {
        Ok(tid.get() <= self.vcpus.len())
    }

    fn support_resume(&mut self) -> Option<MultiThreadResumeOps<'_, Self>> {
        Some(self)
    }

    fn support_thread_extra_info(&mut self) -> Option<ThreadExtraInfoOps<'_, Self>> {
        Some(self)
    }
}

impl ThreadExtraInfo for HxTarget<'_> {
    fn thread_extra_info(&self, tid: Tid, buf: &mut [u8]) -> Result<usize, TargetFail> {
        let i = tid.get() - 1;
        let fallback = format!("CPU#{i}");
        let text = match self.cpus.get(i) {
            Some(c) if !c.extra.is_empty() => c.extra.as_str(),
            _ => fallback.as_str(),
        };
        let n = text.len().min(buf.len());
        buf[..n].copy_from_slice(&text.as_bytes()[..n]);
        Ok(n)
    }
}

impl SingleRegisterAccess<Tid> for HxTarget<'_> {
    fn read_register(&mut self, tid: Tid, reg: Reg, buf: &mut [u8]) -> TargetResult<usize, Self> {
        select(self, tid)?;
        let st = self.state().map_err(TargetError::Fatal)?;
        let mut v = Vec::with_capacity(16);
        x86::gdb::read_reg(&st, reg.0, &mut v).map_err(|_| TargetError::Errno(EINVAL))?;
        let n = v.len().min(buf.len());
        buf[..n].copy_from_slice(&v[..n]);
        Ok(n)
    }

    fn write_register(&mut self, tid: Tid, reg: Reg, val: &[u8]) -> TargetResult<(), Self> {
        select(self, tid)?;
        edit_state(self, |st, rd| {
            x86::gdb::write_reg(st, reg.0, val, rd).map_err(|e| e.to_string())
        })
    }
}

// A guest has no signals to deliver: a signal gdb passes is dropped.
impl MultiThreadResume for HxTarget<'_> {
    fn resume(&mut self) -> Result<(), TargetFail> {
        self.resumed = true;
        Ok(())
    }

    fn clear_resume_actions(&mut self) -> Result<(), TargetFail> {
        for c in &mut self.cpus {
            c.action = None;
        }
        self.default_action = Some(Resume::Continue);
        Ok(())
    }

    fn set_resume_action_continue(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), TargetFail> {
        if let Some(c) = self.cpus.get_mut(tid.get() - 1) {
            c.action = Some(Resume::Continue);
        }
        Ok(())
    }

    fn support_single_step(&mut self) -> Option<MultiThreadSingleStepOps<'_, Self>> {
        Some(self)
    }

    fn support_scheduler_locking(&mut self) -> Option<MultiThreadSchedulerLockingOps<'_, Self>> {
        Some(self)
    }
}

impl MultiThreadSingleStep for HxTarget<'_> {
    fn set_resume_action_step(
        &mut self,
        tid: Tid,
        _signal: Option<Signal>,
    ) -> Result<(), TargetFail> {
        if let Some(c) = self.cpus.get_mut(tid.get() - 1) {
            c.action = Some(Resume::Step);
        }
        Ok(())
    }
}

impl MultiThreadSchedulerLocking for HxTarget<'_> {
    fn set_resume_action_scheduler_lock(&mut self) -> Result<(), TargetFail> {
        // vCPUs gdb names no action for stay stopped.
        self.default_action = None;
        Ok(())
    }
}

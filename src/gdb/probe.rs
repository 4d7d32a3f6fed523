//! What the accelerator's debug support really does on this host.
//!
//! KVM advertises `KVM_SET_GUEST_DEBUG`, but some KVM implementations
//! (notably paravirtual nested ones, without VT-x/AMD-V underneath) run the
//! guest without intercepting #BP or delivering data breakpoints. A tiny
//! probe VM finds out once per process, so that the stub uses what works:
//! debug registers for `break` while they are free, INT3 only when it
//! traps, and single-stepped watchpoints when data breakpoints do not fire.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use accel::{
    AccelKind, DebugEvent, GuestDebug, GuestMemory, HwBreak, IoAction, IoHandler, VcpuExit,
    WatchKind,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::{CpuState, SegReg, Segment};

/// The debug features that work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// INT3 stops the vCPU when `sw_breakpoints` is set.
    pub int3: bool,
    /// Data breakpoints (watchpoints in debug registers) stop the vCPU.
    pub data_watch: bool,
}

impl Caps {
    pub const ALL: Caps = Caps {
        int3: true,
        data_watch: true,
    };
}

/// The port the probe guest writes to finish.
const DONE_PORT: u16 = 0xf4;

struct ProbeIo;

impl IoHandler for ProbeIo {
    fn pio_read(&self, _port: u16, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn pio_write(&self, port: u16, data: &[u8]) -> IoAction {
        if port == DONE_PORT {
            IoAction::Exit(data.first().copied().unwrap_or(0) as i32)
        } else {
            IoAction::Continue
        }
    }
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) -> IoAction {
        IoAction::Continue
    }
}

/// The probe guest, real mode at 0x1000:
/// `mov [0x2000], al; out 0xf4, al` (the watchpoint test) and at 0x1010
/// `int3; out 0xf4, al` (the INT3 test); the IVT sends #BP to 0x1020:
/// `mov al, 0x55; out 0xf4, al`.
fn probe_memory() -> Option<GuestMemoryMmap> {
    let m = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 0x1_0000)]).ok()?;
    let put = |a: u64, b: &[u8]| m.write_slice(b, GuestAddress(a)).ok();
    put(0x1000, &[0xa2, 0x00, 0x20, 0xe6, DONE_PORT as u8, 0xf4])?;
    put(0x1010, &[0xcc, 0xe6, DONE_PORT as u8, 0xf4])?;
    put(0x1020, &[0xb0, 0x55, 0xe6, DONE_PORT as u8, 0xf4])?;
    // IVT vector 3 -> 0000:1020.
    put(3 * 4, &[0x20, 0x10, 0x00, 0x00])?;
    Some(m)
}

fn real_mode_at(ip: u64) -> CpuState {
    let mut s = CpuState::reset();
    *s.seg_mut(SegReg::Cs) = Segment::real_mode(0, true);
    s.rip = ip;
    s
}

/// Runs the probe under `kind`; `None` when it cannot run (no such
/// accelerator, or it cannot create a VM yet).
fn run_probe(kind: AccelKind) -> Option<Caps> {
    let (accel, _) = accel::select(kind).ok()?;
    let mem = probe_memory()?;
    let vm = accel
        .create_vm(
            GuestMemory {
                mem,
                rom: Vec::new(),
            },
            Arc::new(ProbeIo),
        )
        .ok()?;
    let mut vcpu = vm.create_vcpu(0).ok()?;
    // A guest that runs away is stopped by a kick after a while.
    let kicker = vcpu.kicker();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let watchdog = std::thread::spawn(move || {
        for _ in 0..200 {
            if d2.load(std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        kicker.kick();
    });
    let mut run = |start: u64, dbg: GuestDebug| -> Option<VcpuExit> {
        vcpu.set_state(&real_mode_at(start)).ok()?;
        vcpu.set_guest_debug(&dbg).ok()?;
        vcpu.run().ok()
    };
    let mut hw = [None; 4];
    hw[0] = Some(HwBreak::Watch {
        addr: 0x2000,
        len: 1,
        kind: WatchKind::Write,
    });
    let watch = run(
        0x1000,
        GuestDebug {
            enabled: true,
            hw,
            ..GuestDebug::default()
        },
    );
    let int3 = run(
        0x1010,
        GuestDebug {
            enabled: true,
            sw_breakpoints: true,
            ..GuestDebug::default()
        },
    );
    let _ = vcpu.set_guest_debug(&GuestDebug::default());
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = watchdog.join();
    let caps = Caps {
        data_watch: matches!(watch, Some(VcpuExit::Debug(DebugEvent::Watchpoint { .. }))),
        int3: matches!(int3, Some(VcpuExit::Debug(DebugEvent::SwBreakpoint))),
    };
    log::debug!(target: "gdb", "debug probe: watch {watch:?}, int3 {int3:?} -> {caps:?}");
    Some(caps)
}

/// The debug features of the accelerator `name` ("kvm", "dbt"), probed
/// once per process.
pub fn caps(name: &str) -> Caps {
    static KVM: OnceLock<Caps> = OnceLock::new();
    static DBT: OnceLock<Caps> = OnceLock::new();
    match name {
        "kvm" => *KVM.get_or_init(|| run_probe(AccelKind::Kvm).unwrap_or(Caps::ALL)),
        "dbt" => *DBT.get_or_init(|| run_probe(AccelKind::Dbt).unwrap_or(Caps::ALL)),
        _ => Caps::ALL,
    }
}

//! How fast this host's KVM runs guest code, for `-accel auto`.
//!
//! `/dev/kvm` is not always hardware speed: on a cloud VM without nested
//! VT-x it can be a nested or paravirtual KVM (PVM on these machines) that
//! runs guest kernel-mode code at 1 to 2 million instructions a second,
//! far below hx86's own DBT. So `auto` times a tiny probe guest under KVM
//! and picks the DBT when KVM is slower than [`THRESHOLD_MIPS`].
//!
//! The probe: a VM with 64 KiB of RAM and one vCPU runs the same
//! register-only loop twice at CPL 0, once in 32-bit protected mode with
//! paging off and once in 64-bit long mode with 4-level paging (4 KiB
//! pages): [`LOOP_INSNS`] instructions an iteration, [`LOOP_ITERATIONS`]
//! iterations, then `out` to [`PROBE_PORT`]. A run that has not finished
//! after [`RUN_BUDGET`] is kicked out of `KVM_RUN`; the rate is the
//! iterations done (from ECX) times [`LOOP_INSNS`] over the time spent in
//! `KVM_RUN`. A hardware KVM finishes each run in a few milliseconds
//! (thousands of MIPS); a slow one is stopped at the budget, so the probe
//! costs at most about 2 × [`RUN_BUDGET`] plus the VM's creation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use iced_x86::code_asm::*;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::{gpr, CpuState};

use super::KvmAccel;
use crate::{Accelerator, Error, GuestMemory, IoAction, IoHandler, Result, VcpuExit};

/// Below this guest speed (million instructions a second) `auto` prefers
/// the DBT. hx86's DBT runs integer guest code at roughly 50 to 100 MIPS
/// interpreted and several hundred with the JIT (scripts/bench-dbt.sh);
/// hardware KVM runs the probe at thousands. 100 MIPS sits between a
/// hardware KVM (> 1000) and a nested/paravirtual one (1 to 2 here) with a
/// factor of ten either side, and at about the interpreter's speed: below
/// it even the DBT's slowest tier beats KVM.
pub const THRESHOLD_MIPS: f64 = 100.0;
/// Iterations of the probe loop in one run.
pub const LOOP_ITERATIONS: u32 = 2_000_000;
/// Instructions in one iteration (3 ALU operations, `dec`, `jnz`).
pub const LOOP_INSNS: u64 = 5;
/// The longest one probe run may take before it is kicked.
pub const RUN_BUDGET: Duration = Duration::from_millis(25);
/// The port the probe writes when its loop is done.
pub const PROBE_PORT: u16 = 0xF4;

const MEM_SIZE: usize = 0x1_0000;
const CODE32: u64 = 0x1000;
const CODE64: u64 = 0x1800;
const PML4: u64 = 0x2000;
const PDPT: u64 = 0x3000;
const PD: u64 = 0x4000;
const PT: u64 = 0x5000;

/// What the probe measured.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GuestSpeed {
    /// 32-bit protected mode, paging off (million instructions a second).
    pub no_paging_mips: f64,
    /// 64-bit long mode, paging on.
    pub paging_mips: f64,
}

impl GuestSpeed {
    /// The rate `auto` decides on: the slower of the two modes (a guest
    /// such as a BIOS or a boot loader runs in both).
    pub fn mips(&self) -> f64 {
        if self.no_paging_mips.is_nan() || self.paging_mips.is_nan() {
            return f64::NAN;
        }
        self.no_paging_mips.min(self.paging_mips)
    }
}

/// `auto`'s choice for a measured KVM guest speed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoChoice {
    Kvm,
    Dbt,
}

/// The decision: KVM unless it runs guest code slower than
/// [`THRESHOLD_MIPS`] (a NaN rate counts as slow).
pub fn choose(speed: &GuestSpeed) -> AutoChoice {
    if speed.mips() >= THRESHOLD_MIPS {
        AutoChoice::Kvm
    } else {
        AutoChoice::Dbt
    }
}

/// Ends a run at the probe's port; ignores everything else.
struct ProbeIo;

impl IoHandler for ProbeIo {
    fn pio_read(&self, _port: u16, data: &mut [u8]) {
        data.fill(0xFF);
    }
    fn pio_write(&self, port: u16, _data: &[u8]) -> IoAction {
        if port == PROBE_PORT {
            IoAction::Exit(0)
        } else {
            IoAction::Continue
        }
    }
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xFF);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) -> IoAction {
        IoAction::Continue
    }
}

/// The probe loop at `bitness` (32 or 64): ECX counts down.
fn probe_code(bitness: u32, ip: u64) -> std::result::Result<Vec<u8>, IcedError> {
    let mut a = CodeAssembler::new(bitness)?;
    let mut top = a.create_label();
    a.mov(ecx, LOOP_ITERATIONS)?;
    a.xor(eax, eax)?;
    a.xor(edx, edx)?;
    a.set_label(&mut top)?;
    a.add(eax, ecx)?;
    a.xor(edx, eax)?;
    a.add(ebx, edx)?;
    a.dec(ecx)?;
    a.jnz(top)?;
    a.out(PROBE_PORT as u32, al)?;
    a.hlt()?;
    a.assemble(ip)
}

/// The probe's memory: both loops and identity page tables for the first
/// 64 KiB.
fn probe_memory() -> Result<GuestMemoryMmap> {
    let mem_err = |e: &dyn std::fmt::Display| Error::Memory(format!("probe guest: {e}"));
    let mem =
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).map_err(|e| mem_err(&e))?;
    let asm_err = |e: IcedError| Error::InvalidState(format!("probe guest: {e}"));
    let mut writes = vec![
        (CODE32, probe_code(32, CODE32).map_err(asm_err)?),
        (CODE64, probe_code(64, CODE64).map_err(asm_err)?),
        (PML4, (PDPT | 3).to_le_bytes().to_vec()),
        (PDPT, (PD | 3).to_le_bytes().to_vec()),
        (PD, (PT | 3).to_le_bytes().to_vec()),
    ];
    let pt: Vec<u8> = (0..(MEM_SIZE as u64 >> 12))
        .flat_map(|i| ((i << 12) | 3).to_le_bytes())
        .collect();
    writes.push((PT, pt));
    for (addr, bytes) in writes {
        mem.write_slice(&bytes, GuestAddress(addr))
            .map_err(|e| mem_err(&e))?;
    }
    Ok(mem)
}

/// A flat CPL-0 state: 32-bit protected mode without paging, or 64-bit
/// long mode on the probe's page tables. The segment caches are loaded
/// directly (the probe has no GDT; it loads no selector).
fn probe_state(long: bool) -> CpuState {
    let rip = if long { CODE64 } else { CODE32 };
    CpuState::flat(long, 0x08, 0x10, PML4, rip)
}

/// Times the probe guest under `kvm` (see the module documentation).
pub fn measure(kvm: &KvmAccel) -> Result<GuestSpeed> {
    let mem = GuestMemory {
        mem: probe_memory()?,
        rom: Vec::new(),
    };
    let vm = kvm.create_vm(mem, Arc::new(ProbeIo))?;
    let mut vcpu = vm.create_vcpu(0)?;
    let mut rates = [0.0; 2];
    for (rate, long) in rates.iter_mut().zip([false, true]) {
        vcpu.set_state(&probe_state(long))?;
        // A timer thread kicks the vCPU when the budget is spent; it stops
        // kicking once the run is over (`over`, or the channel closing).
        let kicker = vcpu.kicker();
        let over = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel::<()>();
        let timer = {
            let over = over.clone();
            std::thread::spawn(move || {
                if rx.recv_timeout(RUN_BUDGET).is_err() && !over.load(Ordering::SeqCst) {
                    kicker.kick();
                }
            })
        };
        let start = Instant::now();
        let finished = loop {
            match vcpu.run() {
                Ok(VcpuExit::GuestExit(_)) => break Ok(true),
                // A kick: the budget is spent (or a stale kick of the run
                // before: go on while there is time).
                Ok(VcpuExit::Interrupted) if start.elapsed() >= RUN_BUDGET => break Ok(false),
                Ok(VcpuExit::Interrupted) => continue,
                Ok(other) => {
                    break Err(Error::InvalidState(format!(
                        "the KVM speed probe stopped with {other:?}"
                    )))
                }
                Err(e) => break Err(e),
            }
        };
        let elapsed = start.elapsed();
        over.store(true, Ordering::SeqCst);
        drop(tx);
        let _ = timer.join();
        let done = if finished? {
            u64::from(LOOP_ITERATIONS)
        } else {
            let left = vcpu.state()?.gpr[gpr::RCX] & 0xFFFF_FFFF;
            u64::from(LOOP_ITERATIONS).saturating_sub(left)
        };
        *rate = (done * LOOP_INSNS) as f64 / elapsed.as_secs_f64().max(1e-9) / 1e6;
    }
    Ok(GuestSpeed {
        no_paging_mips: rates[0],
        paging_mips: rates[1],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn speed(no_paging_mips: f64, paging_mips: f64) -> GuestSpeed {
        GuestSpeed {
            no_paging_mips,
            paging_mips,
        }
    }

    #[test]
    fn slow_kvm_picks_the_dbt() {
        assert_eq!(choose(&speed(1.4, 1.6)), AutoChoice::Dbt);
        assert_eq!(choose(&speed(3000.0, 2.0)), AutoChoice::Dbt);
        assert_eq!(choose(&speed(2.0, 3000.0)), AutoChoice::Dbt);
        assert_eq!(choose(&speed(99.9, 5000.0)), AutoChoice::Dbt);
        assert_eq!(choose(&speed(0.0, 0.0)), AutoChoice::Dbt);
        assert_eq!(choose(&speed(f64::NAN, 3000.0)), AutoChoice::Dbt);
    }

    #[test]
    fn hardware_speed_kvm_is_kept() {
        assert_eq!(choose(&speed(2500.0, 2400.0)), AutoChoice::Kvm);
        assert_eq!(choose(&speed(100.0, 100.0)), AutoChoice::Kvm);
        assert_eq!(speed(300.0, 200.0).mips(), 200.0);
    }

    #[test]
    fn probe_guest_is_well_formed() {
        let mem = probe_memory().unwrap();
        let mut b = [0u8; 8];
        mem.read_slice(&mut b, GuestAddress(PML4)).unwrap();
        assert_eq!(u64::from_le_bytes(b), PDPT | 3);
        mem.read_slice(&mut b, GuestAddress(PT + 8 * 15)).unwrap();
        assert_eq!(u64::from_le_bytes(b), 0xF003);
        assert_eq!(probe_state(false).mode(), x86::CpuMode::Protected32);
        assert_eq!(probe_state(true).mode(), x86::CpuMode::Long64);
        for bits in [32, 64] {
            let code = probe_code(bits, 0).unwrap();
            let insns: Vec<_> = iced_x86::Decoder::new(bits, &code, 0).into_iter().collect();
            // mov, xor, xor; the loop; out, hlt.
            assert_eq!(insns.len() as u64, 3 + LOOP_INSNS + 2, "{bits}-bit");
        }
    }

    #[test]
    fn probe_is_quick_where_kvm_is_usable() {
        let Ok(kvm) = KvmAccel::probe() else {
            eprintln!("note: skipped: /dev/kvm is not usable here");
            return;
        };
        let t = Instant::now();
        let s = measure(&kvm).expect("the probe guest runs");
        let took = t.elapsed();
        eprintln!("KVM probe: {s:?} in {took:?}");
        assert!(s.no_paging_mips > 0.0 && s.paging_mips > 0.0, "{s:?}");
        assert!(took < Duration::from_millis(400), "{took:?}");
    }
}

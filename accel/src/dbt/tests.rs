//! The DBT accelerator end to end through the `Accelerator`/`Vm`/`Vcpu`
//! traits: the x86 test boot ROM (real → protected → long mode → sieve).

use std::sync::{Arc, Mutex};

use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::DbtAccel;
use crate::{Accelerator, GuestMemory, IoAction, IoHandler, VcpuExit};

#[derive(Default)]
struct Io {
    com1: Mutex<Vec<u8>>,
}

impl IoHandler for Io {
    fn pio_read(&self, port: u16, data: &mut [u8]) {
        data.fill(if port == 0x3fd { 0x60 } else { 0xff });
    }
    fn pio_write(&self, port: u16, data: &[u8]) -> IoAction {
        match port {
            0x3f8 => {
                self.com1.lock().unwrap().push(data[0]);
                IoAction::Continue
            }
            0x604 => IoAction::PowerOff,
            0xf4 => IoAction::Exit(data[0] as i32),
            _ => IoAction::Continue,
        }
    }
    fn mmio_read(&self, _addr: u64, data: &mut [u8]) {
        data.fill(0xff);
    }
    fn mmio_write(&self, _addr: u64, _data: &[u8]) -> IoAction {
        IoAction::Continue
    }
}

fn machine(rom: &[u8]) -> GuestMemory {
    let base = x86::testprog::ROM_BASE;
    let mem = GuestMemoryMmap::<()>::from_ranges(&[
        (GuestAddress(0), 4 << 20),
        (GuestAddress(base), rom.len()),
    ])
    .unwrap();
    mem.write_slice(rom, GuestAddress(base)).unwrap();
    GuestMemory {
        mem,
        rom: vec![(base, rom.len() as u64)],
    }
}

#[test]
fn boots_through_all_modes_and_powers_off() {
    let rom = x86::testprog::boot_rom(10_000, 1).unwrap();
    let io = Arc::new(Io::default());
    let vm = DbtAccel::new()
        .create_vm(machine(&rom), io.clone())
        .unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    assert_eq!(vcpu.run().unwrap(), VcpuExit::PowerOff);
    assert_eq!(
        String::from_utf8(io.com1.lock().unwrap().clone()).unwrap(),
        "1229\n"
    );
    let st = vcpu.state().unwrap();
    assert_eq!(st.mode(), x86::CpuMode::Long64);
}

#[test]
fn rom_writes_are_ignored_and_kick_interrupts() {
    let rom = x86::testprog::boot_rom(10_000, 1).unwrap();
    let io = Arc::new(Io::default());
    let vm = DbtAccel::new()
        .create_vm(machine(&rom), io.clone())
        .unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    vcpu.kicker().kick();
    assert_eq!(vcpu.run().unwrap(), VcpuExit::Interrupted);
    assert_eq!(vcpu.run().unwrap(), VcpuExit::PowerOff);
}

#[test]
fn hardware_exec_breakpoint_and_single_step() {
    use crate::{DebugEvent, GuestDebug, HwBreak};
    let rom = x86::testprog::boot_rom(100, 1).unwrap();
    let io = Arc::new(Io::default());
    let vm = DbtAccel::new()
        .create_vm(machine(&rom), io.clone())
        .unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    // Break at the start of the 64-bit code.
    let mut dbg = GuestDebug {
        enabled: true,
        ..Default::default()
    };
    dbg.hw[1] = Some(HwBreak::Exec { addr: 0xFFFF_2000 });
    vcpu.set_guest_debug(&dbg).unwrap();
    assert_eq!(
        vcpu.run().unwrap(),
        VcpuExit::Debug(DebugEvent::HwBreakpoint(1))
    );
    assert_eq!(vcpu.state().unwrap().rip, 0xFFFF_2000);
    dbg.hw[1] = None;
    dbg.single_step = true;
    vcpu.set_guest_debug(&dbg).unwrap();
    assert_eq!(vcpu.run().unwrap(), VcpuExit::Debug(DebugEvent::SingleStep));
    let rip = vcpu.state().unwrap().rip;
    assert!(rip > 0xFFFF_2000 && rip < 0xFFFF_2010, "{rip:#x}");
    vcpu.set_guest_debug(&GuestDebug::default()).unwrap();
    assert_eq!(vcpu.run().unwrap(), VcpuExit::PowerOff);
    assert_eq!(
        String::from_utf8(io.com1.lock().unwrap().clone()).unwrap(),
        "25\n"
    );
}

#[test]
fn watchpoints_stop_after_the_access_in_the_memory_path() {
    use crate::{DebugEvent, GuestDebug, HwBreak, WatchKind};
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
    // Real mode at 0000:1000.
    let code = [
        0xc6, 0x06, 0x10, 0x20, 0x01, // mov byte [0x2010], 1: same page, not watched
        0xc6, 0x06, 0x00, 0x20, 0x02, // mov byte [0x2000], 2: the write watchpoint
        0xa0, 0x00, 0x30, // mov al, [0x3000]: the read watchpoint
        0xa2, 0x00, 0x30, // mov [0x3000], al: a write, not watched for writes
        0xe6, 0xf4, // out 0xf4, al
    ];
    mem.write_slice(&code, GuestAddress(0x1000)).unwrap();
    let io = Arc::new(Io::default());
    let vm = DbtAccel::new()
        .create_vm(GuestMemory { mem, rom: vec![] }, io)
        .unwrap();
    let mut vcpu = vm.create_vcpu(0).unwrap();
    let mut st = x86::CpuState::reset();
    *st.seg_mut(x86::SegReg::Cs) = x86::Segment::real_mode(0, true);
    st.rip = 0x1000;
    vcpu.set_state(&st).unwrap();
    let mut dbg = GuestDebug {
        enabled: true,
        ..Default::default()
    };
    dbg.hw[2] = Some(HwBreak::Watch {
        addr: 0x2000,
        len: 1,
        kind: WatchKind::Write,
    });
    dbg.hw[3] = Some(HwBreak::Watch {
        addr: 0x3000,
        len: 2,
        kind: WatchKind::Read,
    });
    vcpu.set_guest_debug(&dbg).unwrap();
    assert_eq!(
        vcpu.run().unwrap(),
        VcpuExit::Debug(DebugEvent::Watchpoint {
            slot: 2,
            addr: 0x2000
        })
    );
    assert_eq!(vcpu.state().unwrap().rip, 0x100a);
    assert_eq!(
        vcpu.run().unwrap(),
        VcpuExit::Debug(DebugEvent::Watchpoint {
            slot: 3,
            addr: 0x3000
        })
    );
    assert_eq!(vcpu.state().unwrap().rip, 0x100d);
    assert_eq!(vcpu.run().unwrap(), VcpuExit::GuestExit(0));
    // Without watchpoints the same pages are fast again (nothing stops).
    vcpu.set_guest_debug(&GuestDebug::default()).unwrap();
    vcpu.set_state(&st).unwrap();
    assert_eq!(vcpu.run().unwrap(), VcpuExit::GuestExit(0));
}

//! QEMU's test devices through the binary, under every usable accelerator:
//! a 32-bit guest (built here with `code_asm`) writes to isa-debugcon and
//! reads its read-back value, uses pc-testdev's scratch register, MMIO
//! window and interrupt lines, finds pci-testdev on the PCI bus and runs
//! one of its tests through each BAR, then reports through isa-debug-exit:
//! 0x10 (status 0x21) when every check passed, else the number `n` of the
//! check that failed (status `2n + 1`).

mod common;

use common::*;
use iced_x86::code_asm::*;

/// The status of a guest whose checks all passed.
const PASSED: i32 = 0x21;

/// Where the failed check's number is (EBX) and where to go on failure.
struct Checks {
    fail: CodeLabel,
}

impl Checks {
    /// Start check `n`: its number goes to EBX for the failure path.
    fn start(&self, a: &mut CodeAssembler, n: u32) -> Result<(), IcedError> {
        a.mov(ebx, n)
    }
    /// End the check: the preceding `cmp` must have said equal.
    fn expect_equal(&self, a: &mut CodeAssembler) -> Result<(), IcedError> {
        a.jne(self.fail)
    }
}

fn out_dword(a: &mut CodeAssembler, port: u32, v: u32) -> Result<(), IcedError> {
    a.mov(dx, port)?;
    a.mov(eax, v)?;
    a.out(dx, eax)
}

/// PCI configuration dword `reg` of 00:02.0 into EAX.
fn pci_read(a: &mut CodeAssembler, reg: u32) -> Result<(), IcedError> {
    out_dword(a, 0xcf8, 0x8000_0000 | 2 << 11 | reg)?;
    a.mov(dx, 0xcfcu32)?;
    a.in_(eax, dx)
}

/// The guest. `debugcon`: its port and read-back value; `pc_testdev` and
/// `pci_testdev`: whether to check those.
fn guest(debugcon: (u32, u32), pc_testdev: bool, pci_testdev: bool) -> Vec<u8> {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut fail = a.create_label();
    let c = Checks { fail };
    let a = &mut a;
    let r: Result<(), IcedError> = (|| {
        // 1: isa-debugcon: print, then read the port back.
        c.start(a, 1)?;
        a.mov(dx, debugcon.0)?;
        for &b in b"debugcon ok\n" {
            a.mov(al, b as u32)?;
            a.out(dx, al)?;
        }
        a.in_(al, dx)?;
        a.cmp(al, debugcon.1)?;
        c.expect_equal(a)?;
        if pc_testdev {
            // 2: the scratch register as a dword.
            c.start(a, 2)?;
            out_dword(a, 0xe0, 0x1234_5678)?;
            a.xor(eax, eax)?;
            a.in_(eax, dx)?;
            a.cmp(eax, 0x1234_5678u32)?;
            c.expect_equal(a)?;
            // 3: a byte lane, read back through the 0xe8 view's 0xea.
            c.start(a, 3)?;
            a.mov(dx, 0xe2u32)?;
            a.mov(al, 0xabu32)?;
            a.out(dx, al)?;
            a.mov(dx, 0xeau32)?;
            a.in_(al, dx)?;
            a.cmp(al, 0xabu32)?;
            c.expect_equal(a)?;
            // 4: the MMIO window keeps what is written.
            c.start(a, 4)?;
            a.mov(dword_ptr(0xff00_0010u32), 0xdead_beefu32)?;
            a.mov(eax, dword_ptr(0xff00_0012u32))?;
            a.cmp(ax, 0xdeadu32)?;
            c.expect_equal(a)?;
            // 5: raising ISA line 5 shows in the master i8259's IRR.
            c.start(a, 5)?;
            a.mov(dx, 0x2005u32)?;
            a.mov(al, 1u32)?;
            a.out(dx, al)?;
            a.mov(al, 0x0au32)?; // OCW3: read IRR
            a.out(0x20u32, al)?;
            a.in_(al, 0x20u32)?;
            a.and(al, 0x20u32)?;
            a.cmp(al, 0x20u32)?;
            c.expect_equal(a)?;
            a.mov(dx, 0x2005u32)?;
            a.mov(al, 0u32)?;
            a.out(dx, al)?;
        }
        if pci_testdev {
            // 6: vendor 1b36, device 0005 at 00:02.0.
            c.start(a, 6)?;
            pci_read(a, 0)?;
            a.cmp(eax, 0x0005_1b36u32)?;
            c.expect_equal(a)?;
            // 7: the I/O BAR's no-eventfd test counts 16 matching writes.
            c.start(a, 7)?;
            pci_read(a, 0x14)?;
            a.and(eax, 0xfffc_u32)?;
            a.mov(esi, eax)?;
            a.mov(edx, esi)?;
            a.mov(al, 0u32)?;
            a.out(dx, al)?; // select test 0
            a.lea(edx, dword_ptr(esi + 4))?;
            a.in_(eax, dx)?; // offset
            a.lea(edx, dword_ptr(esi + eax))?;
            a.mov(ecx, 16u32)?;
            a.mov(al, 0xfau32)?;
            let mut again = a.create_label();
            a.set_label(&mut again)?;
            a.out(dx, al)?;
            a.dec(ecx)?;
            a.jnz(again)?;
            a.lea(edx, dword_ptr(esi + 12))?;
            a.in_(eax, dx)?;
            a.cmp(eax, 16u32)?;
            c.expect_equal(a)?;
            // 8: the memory BAR shows the selected test's name.
            c.start(a, 8)?;
            pci_read(a, 0x10)?;
            a.and(eax, 0xffff_fff0u32)?;
            a.mov(edi, eax)?;
            a.mov(byte_ptr(edi), 0u32)?;
            a.mov(eax, dword_ptr(edi + 16))?;
            a.cmp(eax, u32::from_le_bytes(*b"mmio"))?;
            c.expect_equal(a)?;
        }
        // All passed.
        a.mov(ebx, 0x10u32)?;
        a.set_label(&mut fail)?;
        a.mov(eax, ebx)?;
        a.out(0xf4u32, eax)?;
        a.hlt()
    })();
    r.unwrap();
    a.assemble(0x20_0000).unwrap()
}

#[test]
fn kvm_unit_tests_devices_behave_as_qemus() {
    let d = scratch("testdevs");
    let k = write(
        &d,
        "testdevs.elf",
        &elf(false, 0x20_0000, &guest((0x402, 0x55), true, true)),
    );
    for accel in accels() {
        // kvm-unit-tests' own device options, plus a debug console moved
        // away from pc-testdev's ports.
        let o = run(&[
            "--no-reboot",
            "-nodefaults",
            "-global",
            "kvm-pit.lost_tick_policy=discard",
            "-device",
            "pc-testdev",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x4",
            "-display",
            "none",
            "-serial",
            "stdio",
            "-device",
            "pci-testdev",
            "-device",
            "isa-debugcon,iobase=0x402,readback=0x55",
            "-accel",
            accel,
            "-kernel",
            &k,
        ]);
        assert_eq!(o.status, Some(PASSED), "-accel {accel}\n{}", o.dump());
        assert_eq!(o.stdout, "debugcon ok\n", "{}", o.dump());
        assert_eq!(o.stderr, "", "nothing on stderr, as QEMU\n{}", o.dump());
    }
}

#[test]
fn debugcon_option_writes_to_a_file_and_reads_back_0xe9() {
    let d = scratch("debugcon");
    let k = write(
        &d,
        "debugcon.elf",
        &elf(false, 0x20_0000, &guest((0xe9, 0xe9), false, false)),
    );
    let log = d.join("debugcon.txt");
    let dc = format!("file:{}", log.display());
    for accel in accels() {
        let o = run(&["-accel", accel, "-debugcon", &dc, "-kernel", &k]);
        assert_eq!(o.status, Some(PASSED), "-accel {accel}\n{}", o.dump());
        assert_eq!(std::fs::read_to_string(&log).unwrap(), "debugcon ok\n");
        assert_eq!(o.stdout, "");
    }
    // -device isa-debugcon,chardev=ID with a file -chardev.
    let log2 = d.join("chardev.txt");
    let cd = format!("file,id=dbg,path={}", log2.display());
    let o = run(&[
        "-accel",
        "dbt",
        "-chardev",
        &cd,
        "-device",
        "isa-debugcon,chardev=dbg",
        "-kernel",
        &k,
    ]);
    assert_eq!(o.status, Some(PASSED), "{}", o.dump());
    assert_eq!(std::fs::read_to_string(&log2).unwrap(), "debugcon ok\n");
    assert_eq!(o.stdout, "");
    // With pc-testdev too, the debug console keeps port 0xe9.
    let k = write(
        &d,
        "both.elf",
        &elf(false, 0x20_0000, &guest((0xe9, 0xe9), true, false)),
    );
    let o = run(&[
        "-accel",
        "dbt",
        "-device",
        "pc-testdev",
        "-debugcon",
        "stdio",
        "-kernel",
        &k,
    ]);
    assert_eq!(o.status, Some(PASSED), "{}", o.dump());
    assert_eq!(o.stdout, "debugcon ok\n");
}

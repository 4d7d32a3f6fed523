//! virtio devices through the binary without Linux: a 32-bit guest built
//! here drives virtio-rng over the virtio-pci transport with MSI-X, under
//! every usable accelerator (KVM: KVM_SIGNAL_MSI; DBT: the IrqChip), and
//! HMP's `info pci` lists the functions.

mod common;

use common::guest32::*;
use common::*;
use iced_x86::code_asm::*;

/// Guest-physical addresses the guest uses.
const DESC: u32 = 0x30_0000;
const AVAIL: u32 = 0x30_0080;
const USED: u32 = 0x30_0100;
const BUF: u32 = 0x31_0000;
const IDT: u32 = 0x32_0000;
const VECTOR: u32 = 0x40;
const LAPIC: u32 = 0xfee0_0000;

fn cf8(a: &mut CodeAssembler, reg: u32) -> R {
    a.mov(dx, 0xcf8u32)?;
    a.mov(eax, 0x8000_0000u32 | 2 << 11 | reg)?;
    a.out(dx, eax)
}

/// PCI configuration dword `reg` of 00:02.0 into EAX.
fn pci_read(a: &mut CodeAssembler, reg: u32) -> R {
    cf8(a, reg)?;
    a.mov(dx, 0xcfcu32)?;
    a.in_(eax, dx)
}

/// The guest: finds virtio-rng at 00:02.0, negotiates VERSION_1, sets up
/// queue 0 with MSI-X vector 0 (masked), offers one 16-byte buffer and
/// notifies; checks the used ring, the bytes, the pending bit; unmasks
/// the vector and sees it requested at the local APIC (IRR, with IF=0);
/// with `take_interrupt`, enables interrupts and waits for its handler.
fn guest(take_interrupt: bool) -> (Vec<u8>, Vec<String>) {
    let mut g = Gen::new();
    let flag = g.datum(&[0; 4]);
    // The interrupt handler, in the data area: flag = 1, EOI, IRET.
    let handler_code = |at: u64| {
        let mut h = CodeAssembler::new(32).unwrap();
        h.mov(dword_ptr(flag), 1u32).unwrap();
        h.mov(dword_ptr(LAPIC + 0xb0), 0u32).unwrap();
        h.iretd().unwrap();
        h.assemble(at).unwrap()
    };
    let len = handler_code(0).len();
    let handler = g.datum(&vec![0; len]);
    let off = (handler - (BASE + DATA_OFF) as u32) as usize;
    let code = handler_code(u64::from(handler));
    g.data[off..off + len].copy_from_slice(&code);
    let mut idtr = (VECTOR * 8 + 7).to_le_bytes()[..2].to_vec();
    idtr.extend(IDT.to_le_bytes());
    let idtr = g.datum(&idtr);

    (|| -> R {
        pci_read(&mut g.a, 0x00)?;
        g.a.cmp(eax, 0x1044_1af4u32)?;
        g.fail_ne("virtio-rng (1af4:1044) at 00:02.0")?;
        pci_read(&mut g.a, 0x20)?;
        g.a.and(eax, 0xffff_fff0u32)?;
        g.a.mov(ebp, eax)?;
        pci_read(&mut g.a, 0x14)?;
        g.a.and(eax, 0xffff_fff0u32)?;
        g.a.mov(edi, eax)?;
        pci_read(&mut g.a, 0x98)?;
        g.a.and(eax, 0xffu32)?;
        g.a.cmp(eax, 0x11u32)?;
        g.fail_ne("MSI-X capability at 0x98")?;
        // Memory decoding and bus mastering.
        cf8(&mut g.a, 0x04)?;
        g.a.mov(dx, 0xcfcu32)?;
        g.a.mov(eax, 6u32)?;
        g.a.out(dx, eax)?;

        // Reset, ACKNOWLEDGE | DRIVER, VERSION_1 (bit 32), FEATURES_OK.
        g.a.mov(byte_ptr(ebp + 0x14), 0u32)?;
        g.a.cmp(byte_ptr(ebp + 0x14), 0u32)?;
        g.fail_ne("status reads 0 after reset")?;
        g.a.mov(byte_ptr(ebp + 0x14), 3u32)?;
        g.a.mov(dword_ptr(ebp), 1u32)?;
        g.a.mov(eax, dword_ptr(ebp + 4))?;
        g.a.and(eax, 1u32)?;
        g.a.cmp(eax, 1u32)?;
        g.fail_ne("VERSION_1 offered")?;
        g.a.mov(dword_ptr(ebp + 8), 1u32)?;
        g.a.mov(dword_ptr(ebp + 0xc), 1u32)?;
        g.a.mov(byte_ptr(ebp + 0x14), 0xbu32)?;
        g.a.cmp(byte_ptr(ebp + 0x14), 0xbu32)?;
        g.fail_ne("FEATURES_OK kept")?;
        // Queue 0: 8 entries, vector 0, rings, enabled; no config vector.
        g.a.mov(word_ptr(ebp + 0x16), 0u32)?;
        g.a.cmp(word_ptr(ebp + 0x18), 256u32)?;
        g.fail_ne("queue 0 holds 256")?;
        g.a.mov(word_ptr(ebp + 0x18), 8u32)?;
        g.a.mov(word_ptr(ebp + 0x1a), 0u32)?;
        g.a.cmp(word_ptr(ebp + 0x1a), 0u32)?;
        g.fail_ne("MSI-X vector 0 accepted")?;
        g.a.mov(word_ptr(ebp + 0x10), 0xffffu32)?;
        for (off, v) in [(0x20, DESC), (0x28, AVAIL), (0x30, USED)] {
            g.a.mov(dword_ptr(ebp + off), v)?;
            g.a.mov(dword_ptr(ebp + off + 4), 0u32)?;
        }
        g.a.mov(word_ptr(ebp + 0x1c), 1u32)?;
        g.a.mov(byte_ptr(ebp + 0x14), 0xfu32)?;
        g.a.cmp(byte_ptr(ebp + 0x14), 0xfu32)?;
        g.fail_ne("DRIVER_OK without NEEDS_RESET")?;

        // MSI-X entry 0 to this CPU's vector 0x40, masked; MSI-X on.
        g.a.mov(dword_ptr(edi), LAPIC)?;
        g.a.mov(dword_ptr(edi + 4), 0u32)?;
        g.a.mov(dword_ptr(edi + 8), VECTOR)?;
        g.a.mov(dword_ptr(edi + 12), 1u32)?;
        cf8(&mut g.a, 0x98)?;
        g.a.mov(dx, 0xcfeu32)?;
        g.a.mov(ax, 0x8000u32)?;
        g.a.out(dx, ax)?;
        // The IDT's gate for the vector, the local APIC on, IF on.
        g.a.xor(eax, eax)?;
        g.a.mov(ax, cs)?;
        g.a.shl(eax, 16)?;
        g.a.or(eax, handler & 0xffff)?;
        g.a.mov(dword_ptr(IDT + VECTOR * 8), eax)?;
        g.a.mov(
            dword_ptr(IDT + VECTOR * 8 + 4),
            (handler & 0xffff_0000) | 0x8e00,
        )?;
        g.a.lidt(ptr(idtr))?;
        g.a.mov(dword_ptr(LAPIC + 0xf0), 0x1ffu32)?;

        // One device-writable 16-byte buffer, offered and notified.
        g.a.mov(dword_ptr(DESC), BUF)?;
        g.a.mov(dword_ptr(DESC + 4), 0u32)?;
        g.a.mov(dword_ptr(DESC + 8), 16u32)?;
        g.a.mov(dword_ptr(DESC + 12), 2u32)?;
        g.a.mov(word_ptr(AVAIL + 4), 0u32)?;
        g.a.mov(word_ptr(AVAIL + 2), 1u32)?;
        g.a.mov(word_ptr(ebp + 0x3000), 0u32)?;
        g.a.cmp(word_ptr(USED + 2), 1u32)?;
        g.fail_ne("used index 1")?;
        g.a.cmp(dword_ptr(USED + 8), 16u32)?;
        g.fail_ne("16 bytes used")?;
        g.a.mov(eax, dword_ptr(BUF))?;
        for i in 1..4 {
            g.a.or(eax, dword_ptr(BUF + 4 * i))?;
        }
        g.a.cmp(eax, 0u32)?;
        g.a.sete(al)?;
        g.a.cmp(al, 0u32)?;
        g.fail_ne("the buffer holds entropy")?;

        // Masked: no interrupt, the pending bit instead.
        g.a.mov(ecx, 100_000u32)?;
        let mut spin = g.a.create_label();
        g.a.set_label(&mut spin)?;
        g.a.pause()?;
        g.a.dec(ecx)?;
        g.a.jnz(spin)?;
        g.eq(dword_ptr(flag), 0, "a masked vector does not interrupt")?;
        g.eq(dword_ptr(edi + 0x800), 1, "vector 0 pending")?;
        // Unmasked: the pending message reaches the local APIC (IRR bit
        // 0x40 is bit 0 of IRR[2]); the CPU takes it once IF is set.
        g.a.mov(dword_ptr(edi + 12), 0u32)?;
        g.a.mov(eax, dword_ptr(LAPIC + 0x220))?;
        g.a.and(eax, 1u32)?;
        g.a.cmp(eax, 1u32)?;
        g.fail_ne("vector 0x40 requested at the local APIC")?;
        g.eq(dword_ptr(edi + 0x800), 0, "pending bit cleared")?;
        if !take_interrupt {
            return g.succeed("virtio ok\n");
        }
        g.a.sti()?;
        g.a.mov(ecx, 50_000_000u32)?;
        let mut wait = g.a.create_label();
        let mut got = g.a.create_label();
        g.a.set_label(&mut wait)?;
        g.a.cmp(dword_ptr(flag), 1u32)?;
        g.a.je(got)?;
        g.a.pause()?;
        g.a.dec(ecx)?;
        g.a.jnz(wait)?;
        g.a.set_label(&mut got)?;
        g.eq(dword_ptr(flag), 1, "the interrupt handler ran")?;
        g.a.cli()?;
        g.succeed("virtio ok\n")
    })()
    .unwrap();
    g.finish()
}

/// Under KVM the guest stops at the local APIC's IRR: the paravirtual KVM
/// (PVM) of this project's machines emulates this non-paged 32-bit guest
/// and fails ("emulation failure") when delivering an interrupt through
/// its IDT; the DBT takes the interrupt too.
#[test]
fn a_bare_metal_guest_gets_entropy_and_an_msix_interrupt_from_virtio_rng() {
    let d = scratch("virtio-rng");
    for accel in accels() {
        let (code, names) = guest(accel == "dbt");
        let len = CODE_OFF + code.len() as u64;
        let kernel = write(&d, "k.bin", &blob(&mb1_header(Some((len, 0))), &code));
        let o = run(&[
            "-accel",
            accel,
            "-device",
            "virtio-rng-pci",
            "-kernel",
            &kernel,
        ]);
        assert_eq!(
            o.status,
            Some(OK_STATUS),
            "-accel {accel}: {}\n{}",
            verdict(o.status, &names),
            o.dump()
        );
        assert_eq!(o.stdout, "virtio ok\n", "{}", o.dump());
    }
}

#[test]
fn info_pci_shows_the_virtio_functions() {
    let o = run_input(
        &[
            "-S",
            "-monitor",
            "stdio",
            "-serial",
            "none",
            "-device",
            "virtio-rng-pci",
            "-device",
            "virtio-rng-pci,addr=5.0",
        ],
        Some(b"info pci\nq\n"),
        std::time::Duration::from_secs(60),
    );
    assert_eq!(o.status, Some(0), "{}", o.dump());
    for want in [
        "  Bus  0, device   0, function 0:\n    Host bridge: PCI device 8086:1237\n",
        "  Bus  0, device   2, function 0:\n    Class 0255: PCI device 1af4:1044\n      PCI subsystem 1af4:1100\n      IRQ 11, pin A\n      BAR1: 32 bit memory at 0xfebfb000 [0xfebfbfff].\n      BAR4: 64 bit prefetchable memory at 0xfebfc000 [0xfebfffff].\n",
        "  Bus  0, device   5, function 0:\n    Class 0255: PCI device 1af4:1044\n      PCI subsystem 1af4:1100\n      IRQ 10, pin A\n",
    ] {
        let out = o.stdout.replace("\r\n", "\n");
        assert!(out.contains(want), "missing {want:?}\n{}", o.dump());
    }
}

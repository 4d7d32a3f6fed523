use super::*;
use crate::elf::testimg;
use crate::layout::{GIB, MIB};
use crate::memory::create_guest_memory;
use vm_memory::{Bytes, GuestAddress};
use x86::consts::rflags;
use x86::{CpuMode, SegReg};

/// A synthetic bzImage: `setup_sects` = 1 (so the kernel starts at 0x400),
/// protocol 2.15, LOADED_HIGH, relocatable with 2 MiB alignment.
fn bzimage(payload_len: usize, xloadflags: u16, pref: u64, init_size: u32) -> Vec<u8> {
    let mut f = vec![0u8; 0x400 + payload_len];
    f[0x1F1] = 1;
    f[0x1FE..0x200].copy_from_slice(&0xAA55u16.to_le_bytes());
    f[0x200] = 0xEB;
    f[0x201] = 0x6A; // header ends at 0x26C
    f[0x202..0x206].copy_from_slice(b"HdrS");
    f[0x206..0x208].copy_from_slice(&0x020Fu16.to_le_bytes());
    f[0x211] = LOADED_HIGH;
    f[0x214..0x218].copy_from_slice(&0x100000u32.to_le_bytes());
    f[0x22C..0x230].copy_from_slice(&0x7FFF_FFFFu32.to_le_bytes());
    f[0x230..0x234].copy_from_slice(&0x200000u32.to_le_bytes());
    f[0x234] = 1;
    f[0x236..0x238].copy_from_slice(&xloadflags.to_le_bytes());
    f[0x238..0x23C].copy_from_slice(&2047u32.to_le_bytes());
    f[0x258..0x260].copy_from_slice(&pref.to_le_bytes());
    f[0x260..0x264].copy_from_slice(&init_size.to_le_bytes());
    for (i, b) in f[0x400..].iter_mut().enumerate() {
        *b = i as u8;
    }
    f
}

fn mem(size: u64) -> GuestMemoryMmap {
    create_guest_memory(size, None).unwrap().0
}

fn zp_u32(m: &GuestMemoryMmap, off: u64) -> u32 {
    m.read_obj(GuestAddress(ZERO_PAGE_START + off)).unwrap()
}

#[test]
fn boots_64bit_bzimage_with_initrd() {
    let ram = 64 * MIB;
    let m = mem(ram);
    let k = bzimage(0x3000, setup::XLF_KERNEL_64, 0x1000000, 0x800000);
    let rd = vec![0x5Au8; 0x1234];
    let e820 = e820_map(ram);
    let s = load_linux(&m, &k, Some(&rd), "console=ttyS0", ram, &e820).unwrap();
    assert_eq!(s.mode(), CpuMode::Long64);
    assert_eq!(s.rip, 0x1000200);
    assert_eq!(s.gpr[gpr::RSI], 0x7000);
    assert_eq!(s.seg(SegReg::Cs).selector, 0x10);
    assert_eq!(s.seg(SegReg::Ds).selector, 0x18);
    assert_eq!(s.rflags & rflags::IF, 0);
    // Kernel bytes at the load address.
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x1000005)).unwrap(), 5);
    // Zero page.
    assert_eq!(&zp_u32(&m, 0x202).to_le_bytes(), b"HdrS");
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x7210)).unwrap(), 0xFF);
    assert_eq!(zp_u32(&m, 0x228), 0x20000);
    assert_eq!(zp_u32(&m, 0x214), 0x1000000);
    let rd_addr = zp_u32(&m, 0x218) as u64;
    assert_eq!(zp_u32(&m, 0x21C), 0x1234);
    assert_eq!(rd_addr, (ram - 0x1234) & !0xFFF);
    assert_eq!(
        m.read_obj::<u8>(GuestAddress(rd_addr + 0x1233)).unwrap(),
        0x5A
    );
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x71E8)).unwrap(), 4);
    let e1_addr: u64 = m.read_obj(GuestAddress(0x7000 + 0x2D0 + 20)).unwrap();
    assert_eq!(e1_addr, 0x9E000);
    let e1_kind: u32 = m.read_obj(GuestAddress(0x7000 + 0x2D0 + 20 + 16)).unwrap();
    assert_eq!(e1_kind, E820_ACPI);
    // No RSDP address unless given.
    assert_eq!(m.read_obj::<u64>(GuestAddress(0x7070)).unwrap(), 0);
    let mut cl = [0u8; 14];
    m.read_slice(&mut cl, GuestAddress(0x20000)).unwrap();
    assert_eq!(&cl, b"console=ttyS0\0");
}

#[test]
fn boots_32bit_bzimage_and_respects_initrd_addr_max() {
    let ram = 2 * GIB;
    let m = mem(ram);
    let mut k = bzimage(0x1000, 0, 0, 0);
    k[0x22C..0x230].copy_from_slice(&0x37FF_FFFFu32.to_le_bytes());
    let s = load_linux(&m, &k, Some(&[1; 10]), "", ram, &e820_map(ram)).unwrap();
    assert_eq!(s.mode(), CpuMode::Protected32);
    // pref_address 0: 1 MiB, aligned up to 2 MiB.
    assert_eq!(s.rip, 0x200000);
    assert_eq!(s.gpr[gpr::RSI], 0x7000);
    assert_eq!(s.gpr[gpr::RBX] | s.gpr[gpr::RBP] | s.gpr[gpr::RDI], 0);
    assert_eq!(zp_u32(&m, 0x218), 0x37FF_F000);
}

#[test]
fn boots_vmlinux() {
    let ram = 64 * MIB;
    let m = mem(ram);
    let img = testimg::build(true, 0x1000000, &[(0x1000000, &[0x90; 16], 0x10000)]);
    let s = load_linux(&m, &img, None, "quiet", ram, &e820_map(ram)).unwrap();
    assert_eq!(s.mode(), CpuMode::Long64);
    assert_eq!(s.rip, 0x1000000);
    assert_eq!(s.gpr[gpr::RSI], 0x7000);
    assert_eq!(&zp_u32(&m, 0x202).to_le_bytes(), b"HdrS");
    assert_eq!(zp_u32(&m, 0x218), 0);
}

#[test]
fn refusals() {
    let ram = 32 * MIB;
    let m = mem(ram);
    let e = e820_map(ram);
    // Kernel needs more than RAM.
    let k = bzimage(0x1000, 1, 0x1000000, 0x2000000);
    let err = load_linux(&m, &k, None, "", ram, &e).unwrap_err();
    assert!(matches!(err, Error::KernelTooBig { .. }), "{err}");
    // Initrd too big.
    let k = bzimage(0x1000, 1, 0x1000000, 0x400000);
    let rd = vec![0u8; 16 * MIB as usize];
    let err = load_linux(&m, &k, Some(&rd), "", ram, &e).unwrap_err();
    assert!(matches!(err, Error::InitrdTooBig { .. }), "{err}");
    // Command line longer than cmdline_size.
    let err = load_linux(&m, &k, None, &"x".repeat(2048), ram, &e).unwrap_err();
    assert!(
        matches!(err, Error::CmdlineTooLong { max: 2047, .. }),
        "{err}"
    );
    // Old protocol, no LOADED_HIGH, bad alignment, missing boot flag.
    let mut old = k.clone();
    old[0x206] = 0x04;
    assert!(load_linux(&m, &old, None, "", ram, &e)
        .unwrap_err()
        .to_string()
        .contains("older than 2.06"));
    let mut low = k.clone();
    low[0x211] = 0;
    assert!(load_linux(&m, &low, None, "", ram, &e).is_err());
    let mut align = k.clone();
    align[0x230..0x234].copy_from_slice(&0x30000u32.to_le_bytes());
    assert!(load_linux(&m, &align, None, "", ram, &e)
        .unwrap_err()
        .to_string()
        .contains("kernel_alignment"));
    let mut flag = k.clone();
    flag[0x1FE] = 0;
    assert!(load_linux(&m, &flag, None, "", ram, &e).is_err());
    // Not a kernel at all, 32-bit ELF, too many e820 entries.
    assert!(matches!(
        load_linux(&m, b"garbage", None, "", ram, &e),
        Err(Error::NotAKernel)
    ));
    let e32 = testimg::build(false, MIB, &[(MIB, b"x", 1)]);
    assert!(load_linux(&m, &e32, None, "", ram, &e).is_err());
    let many = vec![E820Entry::ram(0, 1); 129];
    assert!(matches!(
        load_linux(&m, &k, None, "", ram, &many),
        Err(Error::TooManyE820Entries { .. })
    ));
}

#[test]
fn truncated_bzimages_never_panic() {
    let ram = 32 * MIB;
    let m = mem(ram);
    let k = bzimage(0x200, 1, 0x1000000, 0x1000);
    for len in 0..k.len() {
        let _ = load_linux(&m, &k[..len], None, "", ram, &e820_map(ram));
    }
    // Only the full file (and those with some payload) load.
    assert!(load_linux(&m, &k[..0x400], None, "", ram, &e820_map(ram)).is_err());
    assert!(load_linux(&m, &k, None, "", ram, &e820_map(ram)).is_ok());
}

#[test]
fn load_linux_with_passes_the_acpi_rsdp() {
    let ram = 64 * MIB;
    let m = mem(ram);
    let rsdp = crate::acpi::write_acpi_tables(&m, &crate::AcpiConfig::default()).unwrap();
    let k = bzimage(0x1000, setup::XLF_KERNEL_64, 0x1000000, 0x400000);
    let opts = LinuxBootOptions {
        cmdline: "console=ttyS0",
        ram_size: ram,
        acpi_rsdp_addr: Some(rsdp),
        ..LinuxBootOptions::default()
    };
    let s = load_linux_with(&m, &k, &opts).unwrap();
    assert_eq!(s.rip, 0x1000200);
    assert_eq!(m.read_obj::<u64>(GuestAddress(0x7070)).unwrap(), 0x9FC10);
    // The default e820 map was used.
    assert_eq!(m.read_obj::<u8>(GuestAddress(0x71E8)).unwrap(), 4);
    // The boot structures written after the tables left them intact.
    let sig: [u8; 8] = m.read_obj(GuestAddress(rsdp)).unwrap();
    assert_eq!(&sig, b"RSD PTR ");
}

//! Loads a real Linux bzImage when one is available: the file named by
//! `HX86_LINUX_KERNEL`, else the first `/boot/vmlinuz-*`. Skips, saying so,
//! when there is none (Debian's `linux-image-amd64` provides one).

use firmware::{create_guest_memory, detect, e820_map, load_linux, KernelFormat};
use vm_memory::{Bytes, GuestAddress};
use x86::{gpr, CpuMode};

fn find_kernel() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("HX86_LINUX_KERNEL") {
        return Some(p.into());
    }
    let mut v: Vec<_> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().contains("vmlinuz-"))
        .collect();
    v.sort();
    v.pop()
}

#[test]
fn loads_a_real_bzimage() {
    let Some(path) = find_kernel() else {
        eprintln!("skipped: no kernel (set HX86_LINUX_KERNEL or install linux-image-amd64)");
        return;
    };
    let Ok(kernel) = std::fs::read(&path) else {
        eprintln!("skipped: cannot read {}", path.display());
        return;
    };
    let KernelFormat::BzImage { version } = detect(&kernel) else {
        panic!("{} is not detected as a bzImage", path.display());
    };
    assert!(version >= 0x020C, "protocol {version:#x}");
    let ram = 256 << 20;
    let (mem, _) = create_guest_memory(ram, None).unwrap();
    let initrd = vec![0xA5u8; 3 << 20];
    let s = load_linux(
        &mem,
        &kernel,
        Some(&initrd),
        "console=ttyS0 earlyprintk=serial",
        ram,
        &e820_map(ram),
    )
    .unwrap();
    assert_eq!(s.mode(), CpuMode::Long64);
    assert_eq!(s.gpr[gpr::RSI], 0x7000);
    let load = s.rip - 0x200;
    assert_eq!(load % 0x200000, 0);
    let setup_sects = match kernel[0x1F1] {
        0 => 4,
        n => n as usize,
    };
    let mut head = [0u8; 64];
    mem.read_slice(&mut head, GuestAddress(load)).unwrap();
    let off = (setup_sects + 1) * 512;
    assert_eq!(&head[..], &kernel[off..off + 64]);
    let rd: u32 = mem.read_obj(GuestAddress(0x7218)).unwrap();
    let init_size: u32 = mem.read_obj(GuestAddress(0x7260)).unwrap();
    assert!(rd as u64 >= load + init_size as u64);
    eprintln!(
        "{}: protocol {version:#x}, loaded at {load:#x}, init_size {init_size:#x}, initrd at {rd:#x}",
        path.display()
    );
}

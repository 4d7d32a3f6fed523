use super::*;
use crate::elf::testimg;
use crate::layout::{FOUR_GIB, MIB};
use crate::linux::e820_map;
use crate::memory::create_guest_memory;
use vm_memory::{Bytes, GuestAddress};
use x86::{CpuMode, SegReg};

const RAM: u64 = 64 * MIB;

fn mem() -> GuestMemoryMmap {
    create_guest_memory(RAM, None).unwrap().0
}

fn rd32(m: &GuestMemoryMmap, a: u64) -> u32 {
    m.read_obj(GuestAddress(a)).unwrap()
}
fn rd64(m: &GuestMemoryMmap, a: u64) -> u64 {
    m.read_obj(GuestAddress(a)).unwrap()
}
fn rdstr(m: &GuestMemoryMmap, a: u64) -> String {
    let mut v = Vec::new();
    for i in 0.. {
        let b: u8 = m.read_obj(GuestAddress(a + i)).unwrap();
        if b == 0 {
            break;
        }
        v.push(b);
    }
    String::from_utf8(v).unwrap()
}
fn rdbytes(m: &GuestMemoryMmap, a: u64, n: usize) -> Vec<u8> {
    let mut v = vec![0; n];
    m.read_slice(&mut v, GuestAddress(a)).unwrap();
    v
}

/// A Multiboot 1 header with `flags` and, if given, the address fields
/// (header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr).
fn mb1_header(flags: u32, addr: Option<[u32; 5]>) -> Vec<u8> {
    let flags = flags | if addr.is_some() { mb1::FLAG_ADDRESS } else { 0 };
    let mut v = Vec::new();
    for w in [
        mb1::HEADER_MAGIC,
        flags,
        0u32.wrapping_sub(mb1::HEADER_MAGIC).wrapping_sub(flags),
    ] {
        v.extend_from_slice(&w.to_le_bytes());
    }
    for w in addr
        .unwrap_or_default()
        .iter()
        .take(if addr.is_some() { 5 } else { 0 })
    {
        v.extend_from_slice(&w.to_le_bytes());
    }
    v
}

/// A header tag: type, flags, body (padded to 8 bytes).
fn tag(ty: u16, flags: u16, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&ty.to_le_bytes());
    v.extend_from_slice(&flags.to_le_bytes());
    v.extend_from_slice(&(8 + body.len() as u32).to_le_bytes());
    v.extend_from_slice(body);
    v.resize(v.len().next_multiple_of(8), 0);
    v
}

fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A Multiboot 2 header with these tags (the end tag is added).
fn mb2_header(tags: &[Vec<u8>]) -> Vec<u8> {
    let mut body: Vec<u8> = tags.concat();
    body.extend(tag(0, 0, &[]));
    let len = 16 + body.len() as u32;
    let mut v = words(&[
        mb2::HEADER_MAGIC,
        0,
        len,
        0u32.wrapping_sub(mb2::HEADER_MAGIC).wrapping_sub(len),
    ]);
    v.extend(body);
    v
}

/// An ELF whose first segment (at 1 MiB) starts with `header`, padded so
/// the header is 8-byte aligned in the file, followed by `code`.
fn elf_with_header(is64: bool, header: &[u8], code: &[u8]) -> (Vec<u8>, u64) {
    let data_off: usize = if is64 { 64 + 56 } else { 52 + 32 };
    let pad = data_off.next_multiple_of(8) - data_off;
    let mut data = vec![0u8; pad];
    data.extend_from_slice(header);
    let entry = MIB + data.len() as u64;
    data.extend_from_slice(code);
    (
        testimg::build(is64, entry, &[(MIB, &data, data.len() as u64 + 0x1000)]),
        entry,
    )
}

fn opts<'a>(e820: &'a [E820Entry], modules: &'a [Module<'a>]) -> MultibootOptions<'a> {
    MultibootOptions {
        cmdline: "/k.elf console=ttyS0",
        modules,
        ram_size: RAM,
        e820,
        rsdp: None,
    }
}

fn load(image: &[u8]) -> Result<MultibootBoot, Error> {
    let e820 = e820_map(RAM);
    load_multiboot(&mem(), image, &opts(&e820, &[]))
}

fn err(image: &[u8]) -> String {
    load(image).unwrap_err().to_string()
}

#[test]
fn module_lists_follow_qemu_syntax() {
    let v = parse_module_list("/a/m1 x y,/b/m2,c,,d e").unwrap();
    let p: Vec<(&str, &str)> = v
        .iter()
        .map(|m| (m.path.as_str(), m.cmdline.as_str()))
        .collect();
    assert_eq!(
        p,
        [("/a/m1", "/a/m1 x y"), ("/b/m2", "/b/m2"), ("c,d", "c,d e")]
    );
    for bad in ["", "a,", ",a", "a, b", " x"] {
        let e = parse_module_list(bad).unwrap_err().to_string();
        assert!(e.contains("has no file name"), "{bad:?}: {e}");
    }
}

#[test]
fn mb1_elf32_boot_information() {
    let m = mem();
    let e820 = e820_map(RAM);
    let (img, entry) = elf_with_header(false, &mb1_header(3, None), &[0xF4]);
    let mods = [
        Module {
            data: b"first module",
            cmdline: "/m/one a b",
        },
        Module {
            data: &[7u8; 5000],
            cmdline: "/m/two",
        },
    ];
    let b = load_multiboot(&m, &img, &opts(&e820, &mods)).unwrap();
    assert_eq!(b.version, Version::V1);
    let s = &b.state;
    assert_eq!(s.mode(), CpuMode::Protected32);
    assert_eq!(s.rip, entry);
    assert_eq!(s.gpr[gpr::RAX], 0x2BAD_B002);
    assert_eq!(s.gpr[gpr::RBX], b.info_addr);
    assert_eq!(s.seg(SegReg::Cs).limit, 0xFFFF_FFFF);
    assert_eq!(s.seg(SegReg::Ss).base, 0);
    assert_eq!(s.rflags, 2);
    assert_eq!(s.cr0 & 0x8000_0001, 1);
    let i = b.info_addr;
    assert_eq!(rd32(&m, i), 0x24D);
    assert_eq!(rd32(&m, i + 4), 0x9E000 >> 10);
    assert_eq!(rd32(&m, i + 8), (RAM - MIB) as u32 >> 10);
    assert_eq!(rdstr(&m, rd32(&m, i + 16).into()), "/k.elf console=ttyS0");
    assert_eq!(rd32(&m, i + 20), 2);
    let ma = u64::from(rd32(&m, i + 24));
    for (k, md) in mods.iter().enumerate() {
        let d = ma + 16 * k as u64;
        let (start, end) = (rd32(&m, d), rd32(&m, d + 4));
        assert_eq!(start % 0x1000, 0);
        assert!(u64::from(start) >= b.kernel.end);
        assert_eq!((end - start) as usize, md.data.len());
        assert_eq!(rdbytes(&m, start.into(), md.data.len()), md.data);
        assert_eq!(rdstr(&m, rd32(&m, d + 8).into()), md.cmdline);
    }
    let (len, addr) = (rd32(&m, i + 44), u64::from(rd32(&m, i + 48)));
    assert_eq!(len as usize, 24 * e820.len());
    for (k, e) in e820.iter().enumerate() {
        let a = addr + 24 * k as u64;
        assert_eq!(rd32(&m, a), 20);
        assert_eq!(rd64(&m, a + 4), e.addr);
        assert_eq!(rd64(&m, a + 12), e.size);
        assert_eq!(rd32(&m, a + 20), e.kind);
    }
    assert_eq!(rdstr(&m, rd32(&m, i + 64).into()), "hx86");
    assert_eq!(rd32(&m, i + 12), 0, "no boot device");
}

#[test]
fn mb1_aout_kludge_loads_text_and_zeroes_bss() {
    let m = mem();
    // Dirty the bss to see it zeroed.
    m.write_slice(&[0xEE; 0x100], GuestAddress(0x20_0000 + 0x1000))
        .unwrap();
    // The file: 0x20 bytes of junk, the header at 0x20, code after.
    // Load from file offset 0x10 at 0x200000: header_addr = 0x200010.
    let mut f = vec![0x55u8; 0x20];
    let h = mb1_header(
        0,
        Some([0x20_0010, 0x20_0000, 0x20_1000, 0x20_2000, 0x20_0040]),
    );
    f.extend_from_slice(&h);
    f.resize(0x1010, 0x90);
    let e820 = e820_map(RAM);
    let b = load_multiboot(&m, &f, &opts(&e820, &[])).unwrap();
    assert_eq!(b.state.rip, 0x20_0040);
    assert_eq!(b.kernel.start, 0x20_0000);
    assert_eq!(b.kernel.end, 0x20_2000);
    assert_eq!(rdbytes(&m, 0x20_0000, 0x10), [0x55; 0x10]);
    assert_eq!(rdbytes(&m, 0x20_0010, h.len()), h);
    assert_eq!(rdbytes(&m, 0x20_1000, 0x100), [0; 0x100]);
    // load_end_addr 0: the rest of the file.
    let mut g = h.clone();
    g[12..16].copy_from_slice(&0x20_0000u32.to_le_bytes());
    g[20..24].copy_from_slice(&0u32.to_le_bytes());
    let mut f2 = g.clone();
    f2.resize(0x800, 0x90);
    let b = load(&f2).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(b.kernel.end, 0x20_2000);
}

/// Low memory the Linux boot structures use is free for multiboot kernels
/// (kvm-unit-tests' realmode.flat loads at 0x8000).
#[test]
fn mb1_kernel_may_load_over_the_unused_boot_structures() {
    let mut f = mb1_header(0, Some([0x8000, 0x8000, 0, 0xB000, 0x8020]));
    f.resize(0x2800, 0x90);
    let b = load(&f).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((b.kernel.start, b.kernel.end), (0x8000, 0xB000));
    assert!(b.info_addr >= MIB);
}

#[test]
fn mb1_malformed_headers_name_the_field() {
    let kl = |a: [u32; 5]| {
        let mut f = mb1_header(0, Some(a));
        f.resize(0x1000, 0x90);
        err(&f)
    };
    let ok = [0x10_0000, 0x10_0000, 0x10_1000, 0x10_2000, 0x10_0020];
    let mut f = mb1_header(0, Some(ok));
    f.resize(0x1000, 0x90);
    assert!(load(&f).is_ok());
    let cases: Vec<([u32; 5], &str)> = vec![
        (
            [0x10_0000, 0x10_0010, 0x10_1000, 0, 0x10_0020],
            "header_addr 0x100000 is below load_addr",
        ),
        (
            [0x10_0010, 0x10_0000, 0x10_1000, 0, 0x10_0020],
            "more than the header's offset",
        ),
        (
            [0x10_0000, 0x10_0000, 0xF_0000, 0, 0x10_0020],
            "load_end_addr 0xf0000 is below load_addr",
        ),
        ([0x10_0000, 0x10_0000, 0x10_2000, 0, 0x10_0020], "truncated"),
        (
            [0x10_0000, 0x10_0000, 0x10_0800, 0x10_0400, 0x10_0020],
            "bss_end_addr 0x100400",
        ),
        (
            [0x10_0000, 0x10_0000, 0x10_0800, 0, 0x30_0000],
            "entry_addr 0x300000 is outside",
        ),
        (
            [0x400, 0x400, 0x800, 0, 0x400],
            "overlaps the BIOS data area and boot GDT",
        ),
        (
            [0x9_F000, 0x9_F000, 0xA_0000, 0, 0x9_F000],
            "not inside one RAM range",
        ),
        (
            [0xFFFF_F000, 0xFFFF_F000, 0, 0, 0xFFFF_F000],
            "not inside one RAM range",
        ),
        (
            [0x7F0_0000, 0x7F0_0000, 0, 0x8000_0000, 0x7F0_0000],
            "not inside one RAM range",
        ),
    ];
    for (a, want) in cases {
        let e = kl(a);
        assert!(e.contains(want), "{a:x?}: {e}");
        assert!(e.starts_with("invalid multiboot kernel: "), "{e}");
    }
    // Bad checksum.
    let mut f = mb1_header(0, Some(ok));
    f[8] ^= 1;
    f.resize(0x1000, 0);
    assert!(err(&f).contains("checksum"), "{}", err(&f));
    // Unknown required flags.
    let mut f = mb1_header(1 << 5, Some(ok));
    f.resize(0x1000, 0);
    assert!(err(&f).contains("bits 0x20"), "{}", err(&f));
    // Header beyond 8 KiB.
    let mut f = vec![0u8; 0x2000];
    f.extend(mb1_header(0, Some(ok)));
    f.resize(0x3000, 0);
    assert!(err(&f).contains("beyond the first 8 KiB"), "{}", err(&f));
    // Address fields crossing 8 KiB.
    let mut f = vec![0u8; 0x2000 - 16];
    f.extend(mb1_header(0, Some(ok)));
    f.resize(0x3000, 0);
    assert!(err(&f).contains("address fields end at"), "{}", err(&f));
    // No address fields and not an ELF.
    let mut f = mb1_header(0, None);
    f.resize(0x100, 0);
    assert!(err(&f).contains("must be an ELF executable"), "{}", err(&f));
    // Every truncation of a valid kludge image is an error, not a panic.
    let mut f = mb1_header(0, Some(ok));
    f.resize(0x1000, 0x90);
    for n in 0..f.len() {
        assert!(load(&f[..n]).is_err(), "length {n}");
    }
}

#[test]
fn mb1_elf_segments_checked() {
    let h = mb1_header(0, None);
    // Overlapping segments.
    let img = testimg::build(
        false,
        MIB,
        &[(MIB, &h, 0x2000), (MIB + 0x1000, b"\x90", 0x10)],
    );
    let e = err(&img);
    assert!(
        e.contains("ELF segment 1 at 0x101000..0x101010 overlaps ELF segment 0"),
        "{e}"
    );
    // Entry outside the image.
    let img = testimg::build(false, 0x50_0000, &[(MIB, &h, 0x100)]);
    assert!(
        err(&img).contains("entry point 0x500000 is outside"),
        "{}",
        err(&img)
    );
    // Segment past RAM.
    let img = testimg::build(false, MIB, &[(MIB, &h, RAM)]);
    assert!(
        err(&img).contains("not inside one RAM range"),
        "{}",
        err(&img)
    );
    // A bad ELF names the ELF problem.
    let mut img = testimg::build(false, MIB, &[(MIB, &h, 0x100)]);
    img[18] = 62;
    assert!(err(&img).contains("machine 62"), "{}", err(&img));
}

#[test]
fn elf64_multiboot_enters_in_32_bit_mode() {
    let (img, entry) = elf_with_header(true, &mb1_header(0, None), &[0xF4]);
    let b = load(&img).unwrap();
    assert!(b.kernel.elf64);
    assert_eq!(b.state.mode(), CpuMode::Protected32);
    assert_eq!(b.state.rip, entry);
    // An entry above 4 GiB cannot be reached.
    let h = mb1_header(0, None);
    let img = testimg::build(true, FOUR_GIB + 0x10, &[(MIB, &h, 0x100)]);
    let e = err(&img);
    assert!(e.contains("above 4 GiB"), "{e}");
}

#[test]
fn mb2_boot_information() {
    let m = mem();
    let e820 = e820_map(RAM);
    let req = tag(1, 0, &words(&[1, 2, 3, 4, 6, 14, 15]));
    let (img, entry) = elf_with_header(false, &mb2_header(&[req]), &[0xF4]);
    let rsdp: Vec<u8> = (0..36u8).collect();
    let mods = [Module {
        data: b"module data",
        cmdline: "/m/x arg",
    }];
    let o = MultibootOptions {
        rsdp: Some(&rsdp),
        ..opts(&e820, &mods)
    };
    let b = load_multiboot(&m, &img, &o).unwrap();
    assert_eq!(b.version, Version::V2);
    assert_eq!(b.state.gpr[gpr::RAX], 0x36D7_6289);
    assert_eq!(b.state.rip, entry);
    let i = b.info_addr;
    assert_eq!(i % 8, 0);
    let total = rd32(&m, i) as u64;
    let mut t = i + 8;
    let mut seen = Vec::new();
    while t < i + total {
        let (ty, size) = (rd32(&m, t), rd32(&m, t + 4) as u64);
        seen.push(ty);
        match ty {
            1 => assert_eq!(rdstr(&m, t + 8), "/k.elf console=ttyS0"),
            2 => assert_eq!(rdstr(&m, t + 8), "hx86"),
            3 => {
                let (s, e) = (rd32(&m, t + 8), rd32(&m, t + 12));
                assert_eq!(rdbytes(&m, s.into(), (e - s) as usize), b"module data");
                assert_eq!(rdstr(&m, t + 16), "/m/x arg");
            }
            4 => {
                assert_eq!(size, 16);
                assert_eq!(rd32(&m, t + 8), 0x9E000 >> 10);
                assert_eq!(rd32(&m, t + 12), (RAM - MIB) as u32 >> 10);
            }
            6 => {
                assert_eq!(rd32(&m, t + 8), 24);
                assert_eq!(size, 16 + 24 * e820.len() as u64);
                for (k, e) in e820.iter().enumerate() {
                    let a = t + 16 + 24 * k as u64;
                    assert_eq!((rd64(&m, a), rd64(&m, a + 8)), (e.addr, e.size));
                    assert_eq!(rd32(&m, a + 16), e.kind);
                }
            }
            14 => assert_eq!(rdbytes(&m, t + 8, 20), &rsdp[..20]),
            15 => assert_eq!(rdbytes(&m, t + 8, 36), rsdp),
            0 => assert_eq!(size, 8),
            other => panic!("unexpected tag {other}"),
        }
        t += size.next_multiple_of(8);
    }
    assert_eq!(t, i + total);
    assert_eq!(seen, [1, 2, 3, 4, 6, 14, 15, 0]);
}

#[test]
fn mb2_address_tags_and_malformed_headers() {
    // A raw image: header at 0, loaded at 2 MiB with an entry tag.
    let raw = |tags: &[Vec<u8>]| {
        let mut f = mb2_header(tags);
        f.resize(0x800, 0x90);
        f
    };
    let addr = tag(2, 0, &words(&[0x20_0000, 0x20_0000, 0, 0x20_2000]));
    let ent = tag(3, 0, &words(&[0x20_0100]));
    let b = load(&raw(&[addr.clone(), ent.clone()])).unwrap();
    assert_eq!(b.state.rip, 0x20_0100);
    assert_eq!((b.kernel.start, b.kernel.end), (0x20_0000, 0x20_2000));
    // load_addr -1: from the start of the file.
    let a1 = tag(2, 0, &words(&[0x20_0000, u32::MAX, 0, 0]));
    let b = load(&raw(&[a1, ent.clone()])).unwrap();
    assert_eq!(b.kernel.start, 0x20_0000);

    let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
        (vec![addr.clone()], "needs an entry address tag"),
        (vec![tag(1, 0, &words(&[1, 8]))], "types [8]"),
        (vec![tag(5, 0, &words(&[0, 0, 0]))], "framebuffer"),
        (vec![tag(4, 0, &words(&[1]))], "console description"),
        (vec![tag(77, 0, &[])], "unknown tag"),
        (
            vec![addr.clone(), tag(3, 0, &words(&[0x10_0000]))],
            "entry_addr 0x100000 is outside",
        ),
    ];
    for (tags, want) in cases {
        let e = err(&raw(&tags));
        assert!(e.contains(want), "{want}: {e}");
        assert!(e.starts_with("invalid Multiboot 2 kernel: "), "{e}");
    }
    // Optional tags the loader cannot honour are ignored.
    let opt = [
        addr.clone(),
        ent.clone(),
        tag(1, 1, &words(&[8])),
        tag(5, 1, &words(&[0, 0, 0])),
        tag(77, 1, &[]),
    ];
    assert!(load(&raw(&opt)).is_ok());
    // Header-level errors.
    let good = raw(&[addr.clone(), ent.clone()]);
    let mut f = good.clone();
    f[12] ^= 1;
    assert!(err(&f).contains("checksum"), "{}", err(&f));
    let mut f = good.clone();
    f[4] = 4; // MIPS, checksum fixed below
    let s = u32::from_le_bytes(f[12..16].try_into().unwrap()).wrapping_sub(4);
    f[12..16].copy_from_slice(&s.to_le_bytes());
    assert!(err(&f).contains("architecture 4"), "{}", err(&f));
    // header_length past the file.
    let h = mb2_header(&[addr.clone(), ent.clone()]);
    assert!(err(&h[..h.len() - 8]).contains("truncated"));
    // Beyond 32 KiB.
    let mut f = vec![0u8; 0x8000];
    f.extend(good.clone());
    assert!(err(&f).contains("beyond the first 32 KiB"), "{}", err(&f));
    // A tag whose size runs past the header.
    let mut f = good.clone();
    f[16 + 4] = 0xF0;
    assert!(err(&f).contains("runs past header_length"), "{}", err(&f));
    // Every truncation: an error, never a panic.
    for n in 0..good.len() {
        let _ = load(&good[..n]);
    }
}

#[test]
fn modules_that_do_not_fit_are_refused() {
    let e820 = e820_map(RAM);
    let (img, _) = elf_with_header(false, &mb1_header(0, None), &[0xF4]);
    let big = vec![0u8; RAM as usize];
    let mods = [Module {
        data: &big,
        cmdline: "big",
    }];
    let e = load_multiboot(&mem(), &img, &opts(&e820, &mods))
        .unwrap_err()
        .to_string();
    assert!(e.contains("RAM above the kernel ends at 0x4000000"), "{e}");
}

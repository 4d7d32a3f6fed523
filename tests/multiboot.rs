//! Multiboot kernels built here (iced-x86 `code_asm` inside a minimal
//! ELF32/ELF64 file or an a.out-kludge image) boot through `-kernel` with
//! modules from `-initrd` and a command line from `-append`. The guest
//! checks every field of its boot information itself (magic, flags, memory
//! sizes against `-m`, each memory map entry against the machine's e820
//! map, command lines, module contents, loader name, ACPI RSDP) and the
//! entry state the specifications require (protected mode without paging,
//! IF clear, A20 on, flat 4 GiB segments), then prints `multiboot ok` and
//! exits through isa-debug-exit with 0x20 (status 0x41); a failed check
//! exits with its number (status 2n + 1), named in the assertion message.

mod common;

use common::guest32::*;
use common::*;
use firmware::E820Entry;
use iced_x86::code_asm::*;

/// What the guest expects to find.
struct Expect {
    ram: u64,
    cmdline: String,
    /// (contents, command line) per module.
    modules: Vec<(Vec<u8>, String)>,
    e820: Vec<E820Entry>,
}

fn mem_lower_upper(x: &Expect) -> (u32, u32) {
    // The e820 RAM entry at 0, and all RAM from 1 MiB to the 3 GiB hole.
    let lower = x.e820.iter().find(|e| e.addr == 0 && e.kind == 1).unwrap();
    let upper = x.ram.min(0xC000_0000) - (1 << 20);
    ((lower.size >> 10) as u32, (upper >> 10) as u32)
}

/// The Multiboot 1 checking guest (EBX = the info structure).
fn mb1_guest(x: &Expect) -> (Vec<u8>, Vec<String>) {
    let mut g = Gen::new();
    (|| -> R {
        g.a.cmp(eax, 0x2BAD_B002u32)?;
        g.fail_ne("EAX = 0x2BADB002")?;
        g.machine_state()?;
        g.eq(
            dword_ptr(ebx),
            0x24D,
            "flags = MEMORY|CMDLINE|MODS|MMAP|LOADER_NAME",
        )?;
        let (lower, upper) = mem_lower_upper(x);
        g.eq(dword_ptr(ebx + 4), lower, "mem_lower")?;
        g.eq(dword_ptr(ebx + 8), upper, "mem_upper matches -m")?;
        g.a.mov(esi, dword_ptr(ebx + 16))?;
        g.str_eq(&x.cmdline, "cmdline")?;
        g.eq(dword_ptr(ebx + 20), x.modules.len() as u32, "mods_count")?;
        for (k, (data, cmd)) in x.modules.iter().enumerate() {
            let d = 16 * k as i32;
            g.a.mov(ebp, dword_ptr(ebx + 24))?;
            g.a.mov(esi, dword_ptr(ebp + d))?;
            g.a.test(esi, 0xFFF)?;
            g.fail_ne(format!("module {k} is 4 KiB aligned"))?;
            g.a.mov(eax, dword_ptr(ebp + d + 4))?;
            g.a.sub(eax, esi)?;
            g.a.cmp(eax, data.len() as u32)?;
            g.fail_ne(format!("module {k} length"))?;
            g.bytes_eq(data, format!("module {k} contents"))?;
            g.a.mov(esi, dword_ptr(ebp + d + 8))?;
            g.str_eq(cmd, format!("module {k} command line"))?;
            g.eq(dword_ptr(ebp + d + 12), 0, format!("module {k} reserved"))?;
        }
        g.eq(dword_ptr(ebx + 44), 24 * x.e820.len() as u32, "mmap_length")?;
        g.a.mov(ebp, dword_ptr(ebx + 48))?;
        for (k, e) in x.e820.iter().enumerate() {
            let o = 24 * k as i32;
            g.eq(dword_ptr(ebp + o), 20, format!("mmap {k} size"))?;
            g.eq(dword_ptr(ebp + o + 4), lo(e.addr), format!("mmap {k} base"))?;
            g.eq(
                dword_ptr(ebp + o + 8),
                hi(e.addr),
                format!("mmap {k} base high"),
            )?;
            g.eq(
                dword_ptr(ebp + o + 12),
                lo(e.size),
                format!("mmap {k} length"),
            )?;
            g.eq(
                dword_ptr(ebp + o + 16),
                hi(e.size),
                format!("mmap {k} length high"),
            )?;
            g.eq(dword_ptr(ebp + o + 20), e.kind, format!("mmap {k} type"))?;
        }
        g.a.mov(esi, dword_ptr(ebx + 64))?;
        g.str_eq("hx86", "boot_loader_name")?;
        g.succeed("multiboot ok\n")
    })()
    .unwrap();
    g.finish()
}

/// Sums `n` bytes at EDI into AL and fails unless the sum is 0.
fn checksum(g: &mut Gen, n: u32, name: &str) -> R {
    g.a.xor(eax, eax)?;
    g.a.mov(ecx, n)?;
    let mut lp = g.a.create_label();
    g.a.set_label(&mut lp)?;
    g.a.add(al, byte_ptr(edi))?;
    g.a.inc(edi)?;
    g.a.dec(ecx)?;
    g.a.jnz(lp)?;
    g.a.test(al, al)?;
    g.fail_ne(name)
}

/// The Multiboot 2 checking guest: walks the tag list, checks each tag,
/// and at the end tag checks total_size and that every expected tag (and
/// module) was seen.
fn mb2_guest(x: &Expect) -> (Vec<u8>, Vec<String>) {
    let mut g = Gen::new();
    (|| -> R {
        g.a.cmp(eax, 0x36D7_6289u32)?;
        g.fail_ne("EAX = 0x36D76289")?;
        g.machine_state()?;
        g.a.test(ebx, 7)?;
        g.fail_ne("info 8-byte aligned")?;
        let mods_seen = g.datum(&[0; 4]);
        g.a.xor(ebp, ebp)?; // bit t: tag type t seen
        g.a.lea(esi, ptr(ebx + 8))?;
        let mut lp = g.a.create_label();
        let mut next = g.a.create_label();
        let mut end = g.a.create_label();
        g.a.set_label(&mut lp)?;
        g.a.mov(eax, dword_ptr(esi))?;
        g.a.cmp(eax, 0)?;
        g.a.je(end)?;
        let mut handlers = Vec::new();
        for t in [1u32, 2, 3, 4, 6, 14, 15] {
            let l = g.a.create_label();
            g.a.cmp(eax, t)?;
            g.a.je(l)?;
            handlers.push((t, l));
        }
        let n = g.check("no unexpected tag types");
        g.a.mov(edx, n)?;
        g.a.jmp(g.fail)?;
        for (t, mut l) in handlers {
            g.a.set_label(&mut l)?;
            g.a.push(esi)?;
            match t {
                1 => {
                    g.a.add(esi, 8)?;
                    g.str_eq(&x.cmdline, "cmdline tag")?;
                }
                2 => {
                    g.a.add(esi, 8)?;
                    g.str_eq("hx86", "boot loader name tag")?;
                }
                3 => {
                    let mut done = g.a.create_label();
                    for (k, (data, cmd)) in x.modules.iter().enumerate() {
                        let mut skip = g.a.create_label();
                        g.a.cmp(dword_ptr(mods_seen), k as u32)?;
                        g.a.jne(skip)?;
                        g.a.mov(eax, dword_ptr(esi + 12))?;
                        g.a.sub(eax, dword_ptr(esi + 8))?;
                        g.a.cmp(eax, data.len() as u32)?;
                        g.fail_ne(format!("module {k} length"))?;
                        g.a.test(dword_ptr(esi + 8), 0xFFF)?;
                        g.fail_ne(format!("module {k} 4 KiB aligned"))?;
                        g.a.push(esi)?;
                        g.a.mov(esi, dword_ptr(esi + 8))?;
                        g.bytes_eq(data, format!("module {k} contents"))?;
                        g.a.pop(esi)?;
                        g.a.add(esi, 16)?;
                        g.str_eq(cmd, format!("module {k} command line"))?;
                        g.a.jmp(done)?;
                        g.a.set_label(&mut skip)?;
                    }
                    let n = g.check("no more module tags than modules");
                    g.a.mov(edx, n)?;
                    g.a.jmp(g.fail)?;
                    g.a.set_label(&mut done)?;
                    g.a.inc(dword_ptr(mods_seen))?;
                }
                4 => {
                    let (lower, upper) = mem_lower_upper(x);
                    g.eq(dword_ptr(esi + 4), 16, "basic meminfo size")?;
                    g.eq(dword_ptr(esi + 8), lower, "mem_lower")?;
                    g.eq(dword_ptr(esi + 12), upper, "mem_upper matches -m")?;
                }
                6 => {
                    let n = x.e820.len() as u32;
                    g.eq(dword_ptr(esi + 4), 16 + 24 * n, "mmap tag size")?;
                    g.eq(dword_ptr(esi + 8), 24, "mmap entry_size")?;
                    g.eq(dword_ptr(esi + 12), 0, "mmap entry_version")?;
                    for (k, e) in x.e820.iter().enumerate() {
                        let o = 16 + 24 * k as i32;
                        g.eq(dword_ptr(esi + o), lo(e.addr), format!("mmap {k} base"))?;
                        g.eq(
                            dword_ptr(esi + o + 4),
                            hi(e.addr),
                            format!("mmap {k} base high"),
                        )?;
                        g.eq(
                            dword_ptr(esi + o + 8),
                            lo(e.size),
                            format!("mmap {k} length"),
                        )?;
                        g.eq(
                            dword_ptr(esi + o + 12),
                            hi(e.size),
                            format!("mmap {k} length high"),
                        )?;
                        g.eq(dword_ptr(esi + o + 16), e.kind, format!("mmap {k} type"))?;
                        g.eq(dword_ptr(esi + o + 20), 0, format!("mmap {k} reserved"))?;
                    }
                }
                14 | 15 => {
                    let (size, len) = if t == 14 { (28, 20) } else { (44, 36) };
                    g.eq(dword_ptr(esi + 4), size, format!("ACPI tag {t} size"))?;
                    if t == 15 {
                        g.a.cmp(byte_ptr(esi + 8 + 15), 2)?;
                        g.fail_ne("ACPI new RSDP revision 2")?;
                    }
                    g.a.lea(edi, ptr(esi + 8))?;
                    checksum(&mut g, len, &format!("ACPI tag {t} RSDP checksum"))?;
                    g.a.add(esi, 8)?;
                    g.bytes_eq(b"RSD PTR ", format!("ACPI tag {t} RSDP signature"))?;
                }
                _ => unreachable!(),
            }
            g.a.pop(esi)?;
            g.a.bts(ebp, t as i32)?;
            g.a.jmp(next)?;
        }
        g.a.set_label(&mut next)?;
        g.a.mov(eax, dword_ptr(esi + 4))?;
        g.a.add(eax, 7)?;
        g.a.and(eax, !7u32 as i32)?;
        g.a.add(esi, eax)?;
        g.a.jmp(lp)?;
        g.a.set_label(&mut end)?;
        g.eq(dword_ptr(esi + 4), 8, "end tag size")?;
        g.a.lea(eax, ptr(esi + 8))?;
        g.a.sub(eax, ebx)?;
        g.a.cmp(eax, dword_ptr(ebx))?;
        g.fail_ne("total_size")?;
        let want: u32 = [1, 2, 4, 6, 14, 15].iter().map(|t| 1u32 << t).sum::<u32>()
            | if x.modules.is_empty() { 0 } else { 1 << 3 };
        g.a.cmp(ebp, want)?;
        g.fail_ne("every tag present")?;
        g.eq(
            dword_ptr(mods_seen),
            x.modules.len() as u32,
            "one module tag per module",
        )?;
        g.succeed("multiboot2 ok\n")
    })()
    .unwrap();
    g.finish()
}

/// A Multiboot 2 header asking for the information the guest checks.
fn mb2_header() -> Vec<u8> {
    let mut tags = Vec::new();
    // Information request: cmdline, name, modules, meminfo, mmap, ACPI.
    let req = words(&[1, 2, 3, 4, 6, 14, 15]);
    tags.extend(words(&[1, 8 + req.len() as u32])); // type 1, flags 0
    tags.extend(req);
    tags.resize(tags.len().next_multiple_of(8), 0);
    tags.extend(words(&[0, 8])); // end tag
    let len = 16 + tags.len() as u32;
    let mut h = words(&[
        0xE852_50D6,
        0,
        len,
        0u32.wrapping_sub(0xE852_50D6u32.wrapping_add(len)),
    ]);
    h.extend(tags);
    h
}

/// An ELF executable with `blob` at file offset 0x1000 loaded at [`BASE`]
/// (plus 0x1000 bytes of bss), entry at the code.
fn elf(is64: bool, blob: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 0x1000];
    f[..4].copy_from_slice(b"\x7fELF");
    f[4] = if is64 { 2 } else { 1 };
    f[5] = 1;
    f[6] = 1;
    f[16..18].copy_from_slice(&2u16.to_le_bytes());
    f[18..20].copy_from_slice(&(if is64 { 62u16 } else { 3 }).to_le_bytes());
    f[20..24].copy_from_slice(&1u32.to_le_bytes());
    let entry = BASE + CODE_OFF;
    let (len, mem) = (blob.len() as u64, blob.len() as u64 + 0x1000);
    if is64 {
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[52..54].copy_from_slice(&64u16.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        let p = 64;
        f[p..p + 4].copy_from_slice(&1u32.to_le_bytes());
        f[p + 4..p + 8].copy_from_slice(&7u32.to_le_bytes());
        for (i, v) in [0x1000, BASE, BASE, len, mem, 0x1000].iter().enumerate() {
            f[p + 8 + 8 * i..p + 16 + 8 * i].copy_from_slice(&v.to_le_bytes());
        }
    } else {
        f[24..28].copy_from_slice(&(entry as u32).to_le_bytes());
        f[28..32].copy_from_slice(&52u32.to_le_bytes());
        f[40..42].copy_from_slice(&52u16.to_le_bytes());
        f[42..44].copy_from_slice(&32u16.to_le_bytes());
        f[44..46].copy_from_slice(&1u16.to_le_bytes());
        let p = 52;
        for (i, v) in [1, 0x1000, BASE, BASE, len, mem, 7, 0x1000]
            .iter()
            .enumerate()
        {
            f[p + 4 * i..p + 4 + 4 * i].copy_from_slice(&(*v as u32).to_le_bytes());
        }
    }
    f.extend_from_slice(blob);
    f
}

/// Kernel image formats under test.
#[derive(Clone, Copy, Debug)]
enum Form {
    Elf32,
    Elf64,
    Kludge,
}

/// Builds the kernel with `guest` and `header`, writes it and two modules
/// (one with a `,,`-escaped comma in its arguments), boots it under every
/// usable accelerator and checks the guest's verdict.
fn boot(name: &str, form: Form, v2: bool, ram_mib: u64) {
    let d = scratch(name);
    let kpath = d.join("kernel.bin").to_str().unwrap().to_string();
    let m1: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    let m2 = b"second module\n".to_vec();
    let p1 = write(&d, "mod1.bin", &m1);
    let p2 = write(&d, "mod2.txt", &m2);
    let append = "console=ttyS0 quiet";
    let initrd = format!("{p1} arg1 a,,b,{p2}");
    let ram = ram_mib << 20;
    let x = Expect {
        ram,
        cmdline: format!("{kpath} {append}"),
        modules: vec![(m1, format!("{p1} arg1 a,b")), (m2, p2.clone())],
        e820: firmware::e820_map(ram),
    };
    let (code, names) = if v2 { mb2_guest(&x) } else { mb1_guest(&x) };
    let image = match form {
        Form::Kludge => {
            let len = CODE_OFF + code.len() as u64;
            assert!(!v2, "the Multiboot 2 images here are ELF files");
            blob(&mb1_header(Some((len, 0x1000))), &code)
        }
        Form::Elf32 | Form::Elf64 => {
            let header = if v2 { mb2_header() } else { mb1_header(None) };
            elf(matches!(form, Form::Elf64), &blob(&header, &code))
        }
    };
    std::fs::write(&kpath, image).unwrap();
    let mem = format!("{ram_mib}M");
    for accel in accels() {
        let o = run(&[
            "-accel",
            accel,
            "-m",
            &mem,
            "-kernel",
            &kpath,
            "-initrd",
            &initrd,
            "-append",
            append,
            "-no-reboot",
        ]);
        let what = verdict(o.status, &names);
        assert_eq!(
            o.status,
            Some(OK_STATUS),
            "{name} ({form:?}) under -accel {accel}: {what}\n{}",
            o.dump()
        );
        let want = if v2 {
            "multiboot2 ok\n"
        } else {
            "multiboot ok\n"
        };
        assert_eq!(o.stdout, want, "{}", o.dump());
    }
}

#[test]
fn multiboot1_elf32_checks_its_boot_information() {
    boot("mb1-elf32", Form::Elf32, false, 64);
}

#[test]
fn multiboot1_aout_kludge_checks_its_boot_information() {
    boot("mb1-kludge", Form::Kludge, false, 32);
}

/// QEMU refuses ELF64 multiboot kernels; hx86 loads the segments and enters
/// in 32-bit protected mode.
#[test]
fn multiboot1_elf64_boots() {
    boot("mb1-elf64", Form::Elf64, false, 64);
}

/// Multiboot 2 (QEMU has no loader for it), with more than 3 GiB of RAM so
/// the memory map has an entry above 4 GiB.
#[test]
fn multiboot2_elf32_checks_its_boot_information() {
    boot("mb2-elf32", Form::Elf32, true, 3200);
}

#[test]
fn multiboot2_elf64_boots() {
    boot("mb2-elf64", Form::Elf64, true, 128);
}

/// A malformed header is refused with the file and the field named.
#[test]
fn malformed_multiboot_headers_are_refused_clearly() {
    let d = scratch("mb-bad");
    let mut h = mb1_header(Some((0x100, 0)));
    h[8] ^= 1;
    let bad = write(&d, "badsum.bin", &blob(&h, &[0xF4; 0x80]));
    let o = run(&["-accel", "dbt", "-kernel", &bad]);
    assert_eq!(o.status, Some(1), "{}", o.dump());
    assert!(
        o.stderr.contains("badsum.bin") && o.stderr.contains("checksum"),
        "{}",
        o.dump()
    );
    let h = mb1_header(Some((0x10_0000, 0)));
    let trunc = write(&d, "trunc.bin", &blob(&h, &[0xF4; 0x80]));
    let o = run(&["-accel", "dbt", "-kernel", &trunc]);
    assert_eq!(o.status, Some(1), "{}", o.dump());
    assert!(
        o.stderr.contains("trunc.bin") && o.stderr.contains("load_end_addr"),
        "{}",
        o.dump()
    );
    let ok = write(
        &d,
        "ok.bin",
        &blob(&mb1_header(Some((0x100, 0))), &[0xF4; 0x80]),
    );
    let o = run(&[
        "-accel",
        "dbt",
        "-kernel",
        &ok,
        "-initrd",
        "/nonexistent/mod x",
    ]);
    assert_eq!(o.status, Some(1), "{}", o.dump());
    assert!(o.stderr.contains("/nonexistent/mod"), "{}", o.dump());
}

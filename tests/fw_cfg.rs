//! The fw_cfg device through the binary: a guest (a Multiboot 1 kernel
//! built with `code_asm`) reads the signature, ID, CPU counts and RAM size
//! through the selector and data ports, the file directory by DMA (compared
//! with the directory QEMU's format gives for these files, sorted by name),
//! `etc/e820` (the machine's e820 map) and two `-fw_cfg` files (one
//! `file=`, one `string=` with a `,,` escape) by both paths, the kernel
//! entry and `-append` items, DMA SKIP, a
//! refused DMA write and a DMA to an address that is not RAM, under every
//! usable accelerator.

mod common;

use common::guest32::*;
use common::*;
use iced_x86::code_asm::*;

const SEL: u16 = 0x510;
const APPEND: &str = "fw_cfg command line";
const DATA: u16 = 0x511;
const DMA_HI: u16 = 0x514;
const DMA_LO: u16 = 0x518;

const READ: u32 = 0x02;
const SKIP: u32 = 0x04;
const SELECT: u32 = 0x08;
const WRITE: u32 = 0x10;
const ERROR: u32 = 0x01;

/// Selects `key` through the selector port.
fn select(g: &mut Gen, key: u16) -> R {
    g.a.mov(ax, key as u32)?;
    g.a.mov(dx, SEL as u32)?;
    g.a.out(dx, ax)
}

/// Reads `n` bytes from the data port to `buf` and compares them with
/// `want` (the first `n` bytes).
fn port_read_eq(g: &mut Gen, buf: u32, want: &[u8], name: &str) -> R {
    g.a.mov(edi, buf)?;
    g.a.mov(ecx, want.len() as u32)?;
    g.a.mov(dx, DATA as u32)?;
    g.a.cld()?;
    g.a.rep().insb()?;
    g.a.mov(esi, buf)?;
    g.bytes_eq(want, name)
}

/// Runs one DMA transfer with the descriptor at `desc` and checks the
/// control word the device writes back.
fn dma(g: &mut Gen, desc: u32, control: u32, len: u32, addr: u32, status: u32, name: &str) -> R {
    g.a.mov(dword_ptr(desc), control.swap_bytes())?;
    g.a.mov(dword_ptr(desc + 4), len.swap_bytes())?;
    g.a.mov(dword_ptr(desc + 8), 0u32)?;
    g.a.mov(dword_ptr(desc + 12), addr.swap_bytes())?;
    g.a.xor(eax, eax)?;
    g.a.mov(dx, DMA_HI as u32)?;
    g.a.out(dx, eax)?;
    g.a.mov(eax, desc.swap_bytes())?;
    g.a.mov(dx, DMA_LO as u32)?;
    g.a.out(dx, eax)?;
    g.eq(
        dword_ptr(desc),
        status.swap_bytes(),
        format!("{name}: DMA status"),
    )
}

/// The file directory QEMU's format gives for `files` (sorted by name,
/// keys from 0x20).
fn directory(files: &[(&str, usize)]) -> Vec<u8> {
    let mut sorted = files.to_vec();
    sorted.sort();
    let mut d = (sorted.len() as u32).to_be_bytes().to_vec();
    for (i, (name, size)) in sorted.iter().enumerate() {
        d.extend((*size as u32).to_be_bytes());
        d.extend((0x20 + i as u16).to_be_bytes());
        d.extend([0, 0]);
        let mut n = [0u8; 56];
        n[..name.len()].copy_from_slice(name.as_bytes());
        d.extend(n);
    }
    d
}

#[test]
fn guest_reads_fw_cfg_by_ports_and_dma() {
    let d = scratch("fwcfg");
    let ram: u64 = 96 << 20;
    let file_data: Vec<u8> = (0..300u32).map(|i| (i * 13 + 1) as u8).collect();
    let file = write(&d, "blob.bin", &file_data);
    let string = b"hello, fw_cfg".to_vec();
    let e820: Vec<u8> = firmware::e820_map(ram)
        .iter()
        .flat_map(|e| e.to_bytes())
        .collect();
    let files = [
        ("bootorder", 0),
        ("etc/boot-fail-wait", 4),
        ("etc/e820", e820.len()),
        ("opt/hx86/file", file_data.len()),
        ("opt/hx86/test", string.len()),
    ];
    let dir = directory(&files);
    let key_of = |n: &str| {
        let mut s: Vec<&str> = files.iter().map(|f| f.0).collect();
        s.sort();
        0x20 + s.iter().position(|&x| x == n).unwrap() as u16
    };

    let mut g = Gen::new();
    let buf = g.datum(&[0; 0x800]);
    let desc = g.datum(&[0; 16]);
    (|| -> R {
        select(&mut g, 0)?;
        port_read_eq(&mut g, buf, b"QEMU", "signature")?;
        select(&mut g, 1)?;
        port_read_eq(&mut g, buf, &3u32.to_le_bytes(), "ID: traditional + DMA")?;
        select(&mut g, 5)?;
        port_read_eq(&mut g, buf, &1u16.to_le_bytes(), "NB_CPUS")?;
        select(&mut g, 0x0F)?;
        port_read_eq(&mut g, buf, &4u16.to_le_bytes(), "MAX_CPUS = -smp maxcpus")?;
        select(&mut g, 3)?;
        port_read_eq(&mut g, buf, &ram.to_le_bytes(), "RAM_SIZE = -m")?;
        // The -kernel items: entry point and command line (NUL included).
        select(&mut g, 0x10)?;
        port_read_eq(
            &mut g,
            buf,
            &((BASE + CODE_OFF) as u32).to_le_bytes(),
            "KERNEL_ENTRY",
        )?;
        let mut cmdline = APPEND.as_bytes().to_vec();
        cmdline.push(0);
        select(&mut g, 0x14)?;
        port_read_eq(
            &mut g,
            buf,
            &(cmdline.len() as u32).to_le_bytes(),
            "CMDLINE_SIZE",
        )?;
        select(&mut g, 0x15)?;
        port_read_eq(&mut g, buf, &cmdline, "CMDLINE_DATA = -append")?;
        // Past the end of an item the data port reads 0.
        select(&mut g, 5)?;
        port_read_eq(&mut g, buf, &[1, 0, 0, 0, 0], "reads past the end are 0")?;
        // The directory by DMA (select + read).
        dma(
            &mut g,
            desc,
            (0x19 << 16) | SELECT | READ,
            dir.len() as u32,
            buf,
            0,
            "directory",
        )?;
        g.a.mov(esi, buf)?;
        g.bytes_eq(&dir, "file directory, sorted by name")?;
        // etc/e820 by the data port.
        select(&mut g, key_of("etc/e820"))?;
        port_read_eq(&mut g, buf, &e820, "etc/e820 = the machine's e820 map")?;
        // Its second entry by DMA: select + skip one entry, then read one.
        let k = u32::from(key_of("etc/e820"));
        dma(&mut g, desc, (k << 16) | SELECT | SKIP, 20, 0, 0, "skip")?;
        dma(&mut g, desc, READ, 20, buf, 0, "read after skip")?;
        g.a.mov(esi, buf)?;
        g.bytes_eq(&e820[20..40], "etc/e820 entry 1 after SKIP")?;
        // The -fw_cfg files, one by each path.
        let k = u32::from(key_of("opt/hx86/file"));
        dma(
            &mut g,
            desc,
            (k << 16) | SELECT | READ,
            file_data.len() as u32,
            buf,
            0,
            "file=",
        )?;
        g.a.mov(esi, buf)?;
        g.bytes_eq(&file_data, "-fw_cfg file= contents")?;
        select(&mut g, key_of("opt/hx86/test"))?;
        port_read_eq(&mut g, buf, &string, "-fw_cfg string= contents")?;
        select(&mut g, key_of("etc/boot-fail-wait"))?;
        port_read_eq(&mut g, buf, &u32::MAX.to_le_bytes(), "etc/boot-fail-wait")?;
        // A DMA read past the end zero-fills.
        let k = u32::from(key_of("opt/hx86/test"));
        g.a.mov(dword_ptr(buf + 12), 0xFFFF_FFFFu32)?;
        g.a.mov(dword_ptr(buf + 16), 0xFFFF_FFFFu32)?;
        dma(
            &mut g,
            desc,
            (k << 16) | SELECT | READ,
            20,
            buf,
            0,
            "read past the end",
        )?;
        let mut want = string.clone();
        want.resize(20, 0);
        g.a.mov(esi, buf)?;
        g.bytes_eq(&want, "DMA read past the end zero-fills")?;
        // Writes are refused; a destination that is not RAM is an error.
        dma(
            &mut g,
            desc,
            (k << 16) | SELECT | WRITE,
            4,
            buf,
            ERROR,
            "write refused",
        )?;
        select(&mut g, key_of("opt/hx86/test"))?;
        port_read_eq(
            &mut g,
            buf,
            &string,
            "the item is unchanged after the write",
        )?;
        dma(
            &mut g,
            desc,
            (k << 16) | SELECT | READ,
            4,
            0xFFFF_0000,
            ERROR,
            "not RAM",
        )?;
        g.succeed("fw_cfg ok\n")
    })()
    .unwrap();
    let (code, names) = g.finish();
    let len = CODE_OFF + code.len() as u64;
    let kernel = write(&d, "k.bin", &blob(&mb1_header(Some((len, 0))), &code));
    for accel in accels() {
        let o = run(&[
            "-accel",
            accel,
            "-m",
            "96M",
            "-smp",
            "1,maxcpus=4",
            "-kernel",
            &kernel,
            "-append",
            APPEND,
            "-fw_cfg",
            &format!("name=opt/hx86/file,file={file}"),
            "-fw_cfg",
            "opt/hx86/test,string=hello,, fw_cfg",
        ]);
        assert_eq!(
            o.status,
            Some(OK_STATUS),
            "-accel {accel}: {}\n{}",
            verdict(o.status, &names),
            o.dump()
        );
        assert_eq!(o.stdout, "fw_cfg ok\n", "{}", o.dump());
    }
}

#[test]
fn fw_cfg_option_errors_and_warning() {
    let o = run(&["-accel", "dbt", "-fw_cfg", "name=opt/x"]);
    assert_eq!(o.status, Some(1), "{}", o.dump());
    assert!(
        o.stderr
            .contains("name, plus exactly one of file, string and gen_id, are needed"),
        "{}",
        o.dump()
    );
    let o = run(&["-accel", "dbt", "-fw_cfg", "name=opt/x,file=/nonexistent/f"]);
    assert_eq!(o.status, Some(1), "{}", o.dump());
    assert!(
        o.stderr.contains("can't load /nonexistent/f"),
        "{}",
        o.dump()
    );
    let o = run(&[
        "-accel",
        "dbt",
        "-fw_cfg",
        "opt/x,string=a",
        "-fw_cfg",
        "opt/x,string=b",
    ]);
    assert_eq!(o.status, Some(1), "{}", o.dump());
    assert!(o.stderr.contains("'opt/x' is already used"), "{}", o.dump());
    // A name outside opt/ works, with QEMU's warning.
    let o = run(&["-accel", "dbt", "-fw_cfg", "name=my/file,string=x"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(
        o.stderr
            .contains("externally provided fw_cfg item names should be prefixed with \"opt/\""),
        "{}",
        o.dump()
    );
}

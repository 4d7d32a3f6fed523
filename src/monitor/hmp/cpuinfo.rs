//! What the human monitor shows of the CPU and memory: QEMU's `info
//! registers`, `info mem`, `info tlb`, and `x`/`xp` (dump or disassemble
//! memory at a linear or physical address).

use std::fmt::Write as _;

use x86::consts::{cr0, efer, rflags, seg_attr};
use x86::{CpuState, SegReg, Segment};

use super::HmpTarget;

fn flags_str(f: u64) -> String {
    let bits = [
        (rflags::OF, 'O'),
        (rflags::DF, 'D'),
        (rflags::IF, 'I'),
        (rflags::TF, 'T'),
        (rflags::SF, 'S'),
        (rflags::ZF, 'Z'),
        (rflags::AF, 'A'),
        (rflags::PF, 'P'),
        (rflags::CF, 'C'),
    ];
    bits.iter()
        .map(|&(b, c)| if f & b != 0 { c } else { '-' })
        .collect()
}

fn seg_line(out: &mut String, name: &str, s: &Segment, long: bool) {
    let _ = write!(
        out,
        "{name:<3}={:04x} {:016x} {:08x} {:08x}",
        s.selector,
        s.base,
        s.limit,
        (s.attr as u32 & 0xf0ff) << 8
    );
    if s.attr & seg_attr::P == 0 {
        out.push('\n');
        return;
    }
    let dpl = s.dpl();
    if s.attr & seg_attr::S != 0 {
        if s.attr & seg_attr::CODE != 0 {
            let size = if long && s.long() {
                "CS64"
            } else if s.big() {
                "CS32"
            } else {
                "CS16"
            };
            let _ = write!(
                out,
                " DPL={dpl} {size} [{}{}{}]",
                if s.attr & seg_attr::DC != 0 { 'C' } else { '-' },
                if s.attr & seg_attr::RW != 0 { 'R' } else { '-' },
                if s.attr & seg_attr::ACCESSED != 0 {
                    'A'
                } else {
                    '-'
                }
            );
        } else {
            let size = if s.big() { "DS" } else { "DS16" };
            let _ = write!(
                out,
                " DPL={dpl} {size} [{}{}{}]",
                if s.attr & seg_attr::DC != 0 { 'E' } else { '-' },
                if s.attr & seg_attr::RW != 0 { 'W' } else { '-' },
                if s.attr & seg_attr::ACCESSED != 0 {
                    'A'
                } else {
                    '-'
                }
            );
        }
    } else {
        let ty = match s.attr & seg_attr::TYPE_MASK {
            seg_attr::SYS_LDT => "LDT",
            seg_attr::SYS_TSS16_AVAIL => "TSS16-avl",
            seg_attr::SYS_TSS16_BUSY => "TSS16-busy",
            seg_attr::SYS_TSS_AVAIL => {
                if long {
                    "TSS64-avl"
                } else {
                    "TSS32-avl"
                }
            }
            seg_attr::SYS_TSS_BUSY => {
                if long {
                    "TSS64-busy"
                } else {
                    "TSS32-busy"
                }
            }
            _ => "Reserved",
        };
        let _ = write!(out, " DPL={dpl} {ty}");
    }
    out.push('\n');
}

/// QEMU's `info registers` layout (64-bit form, always: the register file
/// gdb sees is 64-bit too).
pub fn info_registers(s: &CpuState) -> String {
    let mut o = String::new();
    let g = &s.gpr;
    use x86::gpr::*;
    let _ = writeln!(
        o,
        "RAX={:016x} RBX={:016x} RCX={:016x} RDX={:016x}",
        g[RAX], g[RBX], g[RCX], g[RDX]
    );
    let _ = writeln!(
        o,
        "RSI={:016x} RDI={:016x} RBP={:016x} RSP={:016x}",
        g[RSI], g[RDI], g[RBP], g[RSP]
    );
    let _ = writeln!(
        o,
        "R8 ={:016x} R9 ={:016x} R10={:016x} R11={:016x}",
        g[R8], g[R9], g[R10], g[R11]
    );
    let _ = writeln!(
        o,
        "R12={:016x} R13={:016x} R14={:016x} R15={:016x}",
        g[R12], g[R13], g[R14], g[R15]
    );
    let _ = writeln!(
        o,
        "RIP={:016x} RFL={:08x} [{}] CPL={} II={} A20=1 SMM=0 HLT={}",
        s.rip,
        s.rflags,
        flags_str(s.rflags),
        s.cpl(),
        s.interrupt_shadow as u8,
        s.halted as u8
    );
    let long = s.efer & efer::LMA != 0;
    for seg in SegReg::ALL {
        seg_line(&mut o, &seg.name().to_uppercase(), s.seg(seg), long);
    }
    seg_line(&mut o, "LDT", &s.ldtr, long);
    seg_line(&mut o, "TR", &s.tr, long);
    let _ = writeln!(o, "GDT=     {:016x} {:08x}", s.gdtr.base, s.gdtr.limit);
    let _ = writeln!(o, "IDT=     {:016x} {:08x}", s.idtr.base, s.idtr.limit);
    let _ = writeln!(
        o,
        "CR0={:08x} CR2={:016x} CR3={:016x} CR4={:08x}",
        s.cr0, s.cr2, s.cr3, s.cr4
    );
    let _ = writeln!(
        o,
        "DR0={:016x} DR1={:016x} DR2={:016x} DR3={:016x}",
        s.dr[0], s.dr[1], s.dr[2], s.dr[3]
    );
    let _ = writeln!(o, "DR6={:016x} DR7={:016x}", s.dr[6], s.dr[7]);
    let _ = writeln!(
        o,
        "CR8={:016x} EFER={:016x} XCR0={:016x}",
        s.cr8, s.efer, s.xcr0
    );
    let _ = writeln!(
        o,
        "FS_BASE={:016x} GS_BASE={:016x} KERNEL_GS_BASE={:016x}",
        s.seg(SegReg::Fs).base,
        s.seg(SegReg::Gs).base,
        s.msr.kernel_gs_base
    );
    let _ = writeln!(
        o,
        "STAR={:016x} LSTAR={:016x} CSTAR={:016x} FMASK={:016x}",
        s.msr.star, s.msr.lstar, s.msr.cstar, s.msr.fmask
    );
    let _ = writeln!(
        o,
        "SYSENTER_CS={:04x} SYSENTER_ESP={:016x} SYSENTER_EIP={:016x}",
        s.msr.sysenter_cs, s.msr.sysenter_esp, s.msr.sysenter_eip
    );
    let _ = writeln!(
        o,
        "APIC_BASE={:016x} PAT={:016x} TSC={:016x}",
        s.msr.apic_base, s.msr.pat, s.tsc
    );
    let _ = writeln!(
        o,
        "FCW={:04x} FSW={:04x} [ST={}] FTW={:02x} MXCSR={:08x}",
        s.fpu.fcw,
        s.fpu.fsw,
        (s.fpu.fsw >> 11) & 7,
        s.fpu.ftw,
        s.fpu.mxcsr
    );
    let _ = writeln!(
        o,
        "Mode: {}{}",
        s.mode().name(),
        match x86::mmu::walk::paging_mode(s) {
            x86::mmu::PagingMode::None => ", paging off",
            x86::mmu::PagingMode::Bits32 => ", 32-bit paging",
            x86::mmu::PagingMode::Pae => ", PAE paging",
            x86::mmu::PagingMode::Level4 => ", 4-level paging",
        }
    );
    if s.cr0 & cr0::PE == 0 {
        let _ = writeln!(
            o,
            "(real mode: gdb's $pc is the linear address CS.base+IP = {:#x})",
            x86::gdb::pc(s)
        );
    }
    o
}

/// QEMU's `info mem`: ranges of identical protection, merged.
pub fn info_mem(s: &CpuState, m: &vm_memory::GuestMemoryMmap) -> String {
    let Some(maps) = crate::gdb::mem::mappings(s, m) else {
        return "PG disabled".to_string();
    };
    let mut o = String::new();
    // Ends are exclusive and may be 2^64 (a mapping at the very top).
    let mut cur: Option<(u128, u128, String)> = None;
    let prot = |mp: &crate::gdb::mem::Mapping| {
        format!(
            "{}r{}{}",
            if mp.user() { 'u' } else { '-' },
            if mp.writable() { 'w' } else { '-' },
            if s.efer & efer::NXE != 0 && mp.nx() {
                "-"
            } else if s.efer & efer::NXE != 0 {
                "x"
            } else {
                ""
            }
        )
    };
    for mp in &maps {
        let p = prot(mp);
        let (lin, size) = (mp.lin as u128, mp.size as u128);
        match &mut cur {
            Some((_, end, cp)) if *end == lin && *cp == p => *end = lin + size,
            _ => {
                if let Some((a, b, cp)) = cur.take() {
                    let _ = writeln!(o, "{a:016x}-{b:016x} {:016x} {cp}", b - a);
                }
                cur = Some((lin, lin + size, p));
            }
        }
    }
    if let Some((a, b, cp)) = cur {
        let _ = writeln!(o, "{a:016x}-{b:016x} {:016x} {cp}", b - a);
    }
    if o.is_empty() {
        o.push_str("no mappings\n");
    }
    if maps.len() >= crate::gdb::mem::MAX_MAPPINGS {
        o.push_str("(listing truncated)\n");
    }
    o
}

/// QEMU's `info tlb`: one line per page mapping.
pub fn info_tlb(s: &CpuState, m: &vm_memory::GuestMemoryMmap) -> String {
    let Some(maps) = crate::gdb::mem::mappings(s, m) else {
        return "PG disabled".to_string();
    };
    let mut o = String::new();
    for mp in &maps {
        let _ = writeln!(o, "{:016x}: {:016x} {}", mp.lin, mp.phys, mp.letters());
    }
    if o.is_empty() {
        o.push_str("no mappings\n");
    }
    o
}

pub fn parse_num(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `x /FMT ADDR` (linear) and `xp /FMT ADDR` (physical), as in QEMU's
/// monitor.
pub fn examine(t: &mut dyn HmpTarget, args: &[&str], physical: bool) -> String {
    let name = if physical { "xp" } else { "x" };
    let (fmt, addr) = match args {
        [a] => ("", *a),
        [f, a] if f.starts_with('/') => (&f[1..], *a),
        _ => return format!("usage: {name} /FMT ADDR   (e.g. {name} /4xw 0x1000, {name} /3i $pc)"),
    };
    let st = match t.cpu_state() {
        Ok(s) => s,
        Err(e) => return format!("error: {e}"),
    };
    let addr = if addr == "$pc" || addr == "$rip" || addr == "$eip" {
        x86::gdb::pc(&st)
    } else {
        match parse_num(addr) {
            Some(a) => a,
            None => return format!("{name}: '{addr}' is not an address"),
        }
    };
    let digits: String = fmt.chars().take_while(|c| c.is_ascii_digit()).collect();
    let count: u64 = if digits.is_empty() {
        1
    } else {
        match digits.parse() {
            Ok(n) if n > 0 && n <= 4096 => n,
            _ => return format!("{name}: count must be 1..4096"),
        }
    };
    let mut format = 'x';
    let mut size = 4usize;
    for c in fmt[digits.len()..].chars() {
        match c {
            'x' | 'd' | 'u' | 'c' | 'o' | 'i' => format = c,
            'b' => size = 1,
            'h' => size = 2,
            'w' => size = 4,
            'g' => size = 8,
            _ => return format!("{name}: unknown format letter '{c}'"),
        }
    }
    let mut read = |a: u64, buf: &mut [u8]| -> usize {
        if physical {
            // Byte by byte up to the first hole.
            let mut n = 0;
            while n < buf.len()
                && crate::gdb::mem::read_phys(t.mem(), a.wrapping_add(n as u64), &mut buf[n..n + 1])
            {
                n += 1;
            }
            n
        } else {
            t.read_linear(&st, a, buf)
        }
    };
    if format == 'i' {
        return disassemble(&st, addr, count, &mut read);
    }
    if format == 'c' {
        size = 1;
    }
    let mut o = String::new();
    let per_line = (16 / size).max(1);
    for i in 0..count {
        let a = addr.wrapping_add(i * size as u64);
        if (i as usize).is_multiple_of(per_line) {
            if i != 0 {
                o.push('\n');
            }
            let _ = write!(o, "{a:016x}:");
        }
        let mut b = [0u8; 8];
        if read(a, &mut b[..size]) != size {
            let _ = write!(
                o,
                "\n{name}: cannot access {} memory at {a:#x}",
                if physical { "physical" } else { "linear" }
            );
            return o;
        }
        let v = u64::from_le_bytes(b);
        let _ = match format {
            'x' => write!(o, " 0x{v:0w$x}", w = size * 2),
            'd' => {
                let sv = (v << (64 - 8 * size)) as i64 >> (64 - 8 * size);
                write!(o, " {sv}")
            }
            'u' => write!(o, " {v}"),
            'o' => write!(o, " 0{v:o}"),
            _ => {
                let c = v as u8;
                if c.is_ascii_graphic() || c == b' ' {
                    write!(o, " '{}'", c as char)
                } else {
                    write!(o, " '\\x{c:02x}'")
                }
            }
        };
    }
    o
}

/// Decodes `count` instructions at `addr` in the CPU's current mode
/// (16-, 32- or 64-bit), Intel syntax. Outside 64-bit mode the
/// instruction pointer shown is the offset in CS (branch targets too).
fn disassemble(
    st: &CpuState,
    addr: u64,
    count: u64,
    read: &mut dyn FnMut(u64, &mut [u8]) -> usize,
) -> String {
    use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};
    let bitness = st.mode().bitness();
    let cs = st.seg(SegReg::Cs);
    let mut o = String::new();
    let _ = writeln!(o, "({} code)", st.mode().name());
    let mut fmt = IntelFormatter::new();
    let mut a = addr;
    for _ in 0..count.min(256) {
        let mut code = [0u8; 15];
        let n = read(a, &mut code);
        if n == 0 {
            let _ = writeln!(o, "{a:#018x}: cannot access memory");
            break;
        }
        let ip = if bitness == 64 {
            a
        } else {
            a.wrapping_sub(cs.base) & if bitness == 16 { 0xffff } else { 0xffff_ffff }
        };
        let mut dec = Decoder::with_ip(bitness, &code[..n], ip, DecoderOptions::NONE);
        let ins = dec.decode();
        let mut text = String::new();
        fmt.format(&ins, &mut text);
        let len = ins.len().max(1);
        let bytes: Vec<String> = code[..len.min(n)]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if bitness == 64 {
            let _ = writeln!(o, "{a:#018x}: {:<24} {text}", bytes.join(" "));
        } else {
            let _ = writeln!(
                o,
                "{a:#010x} ({:04x}:{ip:0w$x}): {:<24} {text}",
                cs.selector,
                bytes.join(" "),
                w = if bitness == 16 { 4 } else { 8 }
            );
        }
        a = a.wrapping_add(len as u64);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_registers_names_everything() {
        let s = CpuState::reset();
        let t = info_registers(&s);
        for want in [
            "RIP=000000000000fff0",
            "CS =f000 00000000ffff0000 0000ffff",
            "CR0=60000010",
            "EFER=",
            "GDT=",
            "IDT=",
            "DR7=",
            "real mode",
            "0xfffffff0",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
    }
}

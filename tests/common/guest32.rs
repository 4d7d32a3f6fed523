//! 32-bit guests that check things themselves, built with `code_asm`:
//! each check jumps to a common failure exit with its number, so the exit
//! status names the failed check; loaded as Multiboot 1 kernels (a.out
//! kludge) or wrapped in an ELF by the test.
#![allow(dead_code)]

use iced_x86::code_asm::*;

/// Where the test kernels load.
pub const BASE: u64 = 0x20_0000;
/// The code starts this far into the image (the header comes first).
pub const CODE_OFF: u64 = 0x80;
/// The guest's data (expected strings, variables) starts this far in.
pub const DATA_OFF: u64 = 0x4000;
pub const OK: u32 = 0x20;
pub const OK_STATUS: i32 = 0x41;

/// The guest program under construction: checks jump to `fail` with
/// their number in EDX.
pub struct Gen {
    pub a: CodeAssembler,
    pub fail: CodeLabel,
    pub names: Vec<String>,
    pub data: Vec<u8>,
}

pub type R = Result<(), IcedError>;

impl Gen {
    pub fn new() -> Gen {
        let mut a = CodeAssembler::new(32).unwrap();
        let fail = a.create_label();
        Gen {
            a,
            fail,
            names: Vec::new(),
            data: Vec::new(),
        }
    }

    /// Registers a check; returns its number (1-based).
    pub fn check(&mut self, name: impl Into<String>) -> u32 {
        self.names.push(name.into());
        self.names.len() as u32
    }

    /// Fails check `name` unless ZF is set.
    pub fn fail_ne(&mut self, name: impl Into<String>) -> R {
        let n = self.check(name);
        self.a.mov(edx, n)?;
        self.a.jne(self.fail)
    }

    pub fn eq(&mut self, m: AsmMemoryOperand, v: u32, name: impl Into<String>) -> R {
        self.a.cmp(m, v)?;
        self.fail_ne(name)
    }

    /// The address of `bytes`, put in the data area.
    pub fn datum(&mut self, bytes: &[u8]) -> u32 {
        let at = (BASE + DATA_OFF) as u32 + self.data.len() as u32;
        self.data.extend_from_slice(bytes);
        self.data.resize(self.data.len().next_multiple_of(4), 0);
        at
    }

    /// Compares `len` bytes at ESI with `bytes` (clobbers ESI, EDI, ECX).
    pub fn bytes_eq(&mut self, bytes: &[u8], name: impl Into<String>) -> R {
        let l = self.datum(bytes);
        self.a.mov(edi, l)?;
        self.a.mov(ecx, bytes.len() as u32)?;
        self.a.cld()?;
        self.a.repe().cmpsb()?;
        self.fail_ne(name)
    }

    /// Compares the NUL-terminated string at ESI with `s`.
    pub fn str_eq(&mut self, s: &str, name: impl Into<String>) -> R {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.bytes_eq(&b, name)
    }

    /// The entry state both specifications require.
    pub fn machine_state(&mut self) -> R {
        let a = &mut self.a;
        a.mov(eax, cr0)?;
        a.and(eax, 0x8000_0001u32)?;
        a.cmp(eax, 1)?;
        self.fail_ne("CR0: PE set, PG clear")?;
        self.a.pushfd()?;
        self.a.pop(eax)?;
        self.a.test(eax, 0x2_0200)?;
        self.fail_ne("EFLAGS: IF and VM clear")?;
        self.a.mov(dword_ptr(0x600), 0x1111_1111u32)?;
        self.a.mov(dword_ptr(0x10_0600), 0x2222_2222u32)?;
        self.eq(dword_ptr(0x600), 0x1111_1111, "A20 enabled")?;
        // Flat segments: each data segment writes and reads at base 0, and
        // every segment (CS too: readable code) reads its last dword at
        // 0xFFFFFFFC, which faults (no IDT: a triple fault) unless the limit
        // is 4 GiB. (Not LSL/LAR: this host's paravirtual KVM cannot run them
        // in emulated supervisor code.)
        let m = dword_ptr(0x600);
        for (i, (name, m)) in [
            ("ES", m.es()),
            ("FS", m.fs()),
            ("GS", m.gs()),
            ("SS", m.ss()),
        ]
        .into_iter()
        .enumerate()
        {
            let v = 0x3333_3333 + i as u32;
            self.a.mov(m, v)?;
            self.eq(dword_ptr(0x600), v, format!("{name} base 0"))?;
        }
        let top = dword_ptr(0xFFFF_FFFCu32);
        for m in [top.cs(), top.ds(), top.es(), top.fs(), top.gs(), top.ss()] {
            self.a.mov(eax, m)?;
        }
        Ok(())
    }

    /// Prints `msg` on COM1 and exits with [`OK`].
    pub fn succeed(&mut self, msg: &str) -> R {
        let l = self.datum(msg.as_bytes());
        let a = &mut self.a;
        a.mov(esi, l)?;
        a.mov(ecx, msg.len() as u32)?;
        a.mov(edx, 0x3f8u32)?;
        let mut lp = a.create_label();
        a.set_label(&mut lp)?;
        a.mov(al, byte_ptr(esi))?;
        a.out(dx, al)?;
        a.inc(esi)?;
        a.dec(ecx)?;
        a.jnz(lp)?;
        a.mov(eax, OK)?;
        a.out(0xf4, eax)?;
        a.hlt()
    }

    /// The failure exit; the code assembled at [`CODE_OFF`] with the data
    /// at [`DATA_OFF`] (everything after the header), and the check names.
    pub fn finish(mut self) -> (Vec<u8>, Vec<String>) {
        let a = &mut self.a;
        a.set_label(&mut self.fail).unwrap();
        a.mov(eax, edx).unwrap();
        a.out(0xf4, eax).unwrap();
        a.hlt().unwrap();
        let mut code = a.assemble(BASE + CODE_OFF).unwrap();
        assert!(
            code.len() as u64 <= DATA_OFF - CODE_OFF,
            "guest code too big"
        );
        code.resize((DATA_OFF - CODE_OFF) as usize, 0);
        code.extend(self.data);
        (code, self.names)
    }
}

/// Low and high halves.
pub fn lo(v: u64) -> u32 {
    v as u32
}
pub fn hi(v: u64) -> u32 {
    (v >> 32) as u32
}

pub fn words(w: &[u32]) -> Vec<u8> {
    w.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A Multiboot 1 header; with `kludge`, the address fields for an image
/// whose header is at the start of the file, loaded at [`BASE`] with
/// `bss` bytes of bss after `len` bytes of file.
pub fn mb1_header(kludge: Option<(u64, u64)>) -> Vec<u8> {
    let flags: u32 = 0x3 | if kludge.is_some() { 1 << 16 } else { 0 };
    let mut h = words(&[0x1BAD_B002, flags, 0u32.wrapping_sub(0x1BAD_B002 + flags)]);
    if let Some((len, bss)) = kludge {
        let base = BASE as u32;
        h.extend(words(&[
            base,
            base,
            base + len as u32,
            base + (len + bss) as u32,
            base + CODE_OFF as u32,
        ]));
    }
    h
}

/// The loaded image: `header` then the code at [`CODE_OFF`].
pub fn blob(header: &[u8], code: &[u8]) -> Vec<u8> {
    assert!(header.len() as u64 <= CODE_OFF);
    let mut b = header.to_vec();
    b.resize(CODE_OFF as usize, 0);
    b.extend_from_slice(code);
    b
}

/// What failed, from a guest's exit status and its check names.
pub fn verdict(status: Option<i32>, names: &[String]) -> String {
    match status {
        Some(s) if s != OK_STATUS && s & 1 == 1 => names
            .get((s as usize >> 1).wrapping_sub(1))
            .map_or("?".to_string(), |n| format!("guest check failed: {n}")),
        _ => String::new(),
    }
}

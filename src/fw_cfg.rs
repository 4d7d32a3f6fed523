//! The machine's fw_cfg contents (see `devices::fw_cfg` for the device):
//! what QEMU's PC shows that hx86 has, and `-fw_cfg` user files.
//!
//! Items: signature, ID (with DMA), UUID (zero), RAM_SIZE (u64), NOGRAPHIC
//! (u16), NB_CPUS and MAX_CPUS (u16, from `-smp`), IRQ0_OVERRIDE (1: IRQ0
//! reaches IOAPIC pin 2), and for `-kernel` boots the kernel, initrd and
//! command line items (see [`kernel_items`]). Files: `bootorder` (empty:
//! hx86 has no option ROMs or boot devices to list), `etc/boot-fail-wait`
//! (u32 -1, QEMU's default), `etc/e820` (the machine's e820 map, the one
//! Linux and multiboot kernels get, 20-byte entries) and every `-fw_cfg`.

use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use devices::dma::GuestRam;
use devices::fw_cfg::{key, DmaMemory, FwCfg, FwCfgBuilder};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::CpuState;

use crate::machine::{Boot, MachineConfig};

/// `-fw_cfg` files and the other options the device reflects.
#[derive(Clone, Debug, Default)]
pub struct FwCfgOptions {
    /// (name, contents) of each `-fw_cfg`.
    pub files: Vec<(String, Vec<u8>)>,
    /// `-nographic` (the NOGRAPHIC item).
    pub nographic: bool,
}

/// Parses `-fw_cfg [name=]NAME,file=PATH|string=STR` as QEMU 7.2 does
/// (`,,` is a literal comma): the name is 1 to 55 bytes, exactly one of
/// `file` and `string` is given (a string is stored without its NUL), and a
/// name outside `opt/` gets QEMU's warning on stderr.
pub fn parse_option(spec: &str) -> Result<(String, Vec<u8>)> {
    let mut parts = vec![String::new()];
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ',' if chars.peek() == Some(&',') => {
                chars.next();
                parts.last_mut().into_iter().for_each(|p| p.push(','));
            }
            ',' => parts.push(String::new()),
            c => parts.last_mut().into_iter().for_each(|p| p.push(c)),
        }
    }
    let (mut name, mut file, mut string) = (None, None, None);
    for (i, p) in parts.iter().enumerate() {
        match p.split_once('=') {
            None if i == 0 => name = Some(p.clone()),
            Some(("name", v)) => name = Some(v.to_string()),
            Some(("file", v)) => file = Some(v.to_string()),
            Some(("string", v)) => string = Some(v.to_string()),
            Some(("gen_id", _)) => {
                bail!("-fw_cfg {spec}: gen_id (the VM generation ID device) is not supported")
            }
            Some((k, _)) => bail!("-fw_cfg {spec}: Invalid parameter '{k}'"),
            None => bail!("-fw_cfg {spec}: Invalid parameter '{p}'"),
        }
    }
    let nonempty = |s: &Option<String>| s.as_deref().is_some_and(|s| !s.is_empty());
    if !nonempty(&name) || nonempty(&file) == nonempty(&string) {
        bail!("-fw_cfg {spec}: name, plus exactly one of file, string and gen_id, are needed");
    }
    let name = name.unwrap_or_default();
    if name.len() > devices::fw_cfg::MAX_FILE_PATH - 1 {
        bail!(
            "-fw_cfg {spec}: name too long (max. {} char)",
            devices::fw_cfg::MAX_FILE_PATH - 1
        );
    }
    if !name.starts_with("opt/") {
        eprintln!(
            "hx86: -fw_cfg {spec}: warning: externally provided fw_cfg item names should be \
             prefixed with \"opt/\""
        );
    }
    let data = match (string, file) {
        (Some(s), _) if !s.is_empty() => s.into_bytes(),
        (_, Some(f)) => {
            std::fs::read(&f).with_context(|| format!("-fw_cfg {spec}: can't load {f}"))?
        }
        _ => unreachable!("checked above"),
    };
    Ok((name, data))
}

fn u32_at(b: &[u8], off: usize) -> u64 {
    b.get(off..off + 4).map_or(0, |s| {
        u32::from_le_bytes(s.try_into().unwrap_or([0; 4])).into()
    })
}

/// The kernel, initrd and command line items of a `-kernel` boot, as QEMU's
/// x86 Linux loader fills them: KERNEL_SIZE/DATA (for a bzImage the
/// protected-mode part, SETUP_SIZE/DATA its setup sectors, SETUP_ADDR the
/// zero page), KERNEL_ADDR (bzImage: where it was loaded), KERNEL_ENTRY (the
/// entry point), INITRD_SIZE/DATA (and INITRD_ADDR for Linux),
/// CMDLINE_SIZE/DATA (NUL included) and CMDLINE_ADDR for Linux. For a
/// multiboot kernel the initrd items hold the `-initrd` string's first
/// module only when it is a plain path.
fn kernel_items(
    b: &mut FwCfgBuilder,
    cfg: &MachineConfig,
    mem: &GuestMemoryMmap,
    entry: &CpuState,
) -> Result<()> {
    let Boot::Kernel {
        path,
        initrd,
        cmdline,
    } = &cfg.boot
    else {
        return Ok(());
    };
    let image = std::fs::read(path).with_context(|| format!("-kernel {}", path.display()))?;
    let format = firmware::detect(&image);
    let linux = matches!(format, firmware::KernelFormat::BzImage { .. });
    let mut zp = [0u8; 0x1000];
    if linux {
        mem.read_slice(&mut zp, GuestAddress(firmware::layout::ZERO_PAGE_START))
            .context("fw_cfg: reading the zero page")?;
    }
    let kernel = if linux {
        let sects = match image.get(0x1F1).copied().unwrap_or(0) {
            0 => 4,
            n => n as usize,
        };
        let setup = ((sects + 1) * 512).min(image.len());
        b.item_u32(key::SETUP_ADDR, firmware::layout::ZERO_PAGE_START as u32)?;
        b.item_u32(key::SETUP_SIZE, setup as u32)?;
        b.item(key::SETUP_DATA, image[..setup].to_vec())?;
        b.item_u32(key::KERNEL_ADDR, u32_at(&zp, 0x214) as u32)?;
        image[setup..].to_vec()
    } else {
        image
    };
    b.item_u32(key::KERNEL_SIZE, kernel.len() as u32)?;
    b.item(key::KERNEL_DATA, kernel)?;
    b.item_u32(key::KERNEL_ENTRY, entry.rip as u32)?;
    if let Some(p) = initrd.as_ref().filter(|p| linux || p.exists()) {
        let rd = std::fs::read(p).with_context(|| format!("-initrd {}", p.display()))?;
        if linux {
            b.item_u32(key::INITRD_ADDR, u32_at(&zp, 0x218) as u32)?;
        }
        b.item_u32(key::INITRD_SIZE, rd.len() as u32)?;
        b.item(key::INITRD_DATA, rd)?;
    }
    let mut c = cmdline.as_bytes().to_vec();
    c.push(0);
    if linux {
        b.item_u32(key::CMDLINE_ADDR, u32_at(&zp, 0x228) as u32)?;
    }
    b.item_u32(key::CMDLINE_SIZE, c.len() as u32)?;
    b.item(key::CMDLINE_DATA, c)?;
    Ok(())
}

/// The fw_cfg device of the machine `cfg` describes, once its boot image
/// is in `ram` (entry state `entry`); DMA goes through `ram` (never to ROM).
pub fn device(cfg: &MachineConfig, ram: &GuestRam, entry: &CpuState) -> Result<Arc<Mutex<FwCfg>>> {
    let mem = ram.memory();
    let mut b = FwCfgBuilder::new();
    let cpus = u16::try_from(cfg.smp.cpus).context("fw_cfg: too many CPUs")?;
    let max_cpus = u16::try_from(cfg.smp.maxcpus).context("fw_cfg: too many CPUs")?;
    b.item_u64(key::RAM_SIZE, cfg.ram_size)?
        .item_u16(key::NOGRAPHIC, cfg.fw_cfg.nographic.into())?
        .item_u16(key::NB_CPUS, cpus)?
        .item_u16(key::MAX_CPUS, max_cpus)?
        .item_u32(key::IRQ0_OVERRIDE, 1)?;
    kernel_items(&mut b, cfg, mem, entry)?;
    let e820: Vec<u8> = firmware::e820_map(cfg.ram_size)
        .iter()
        .flat_map(|e| e.to_bytes())
        .collect();
    b.file("bootorder", Vec::new())?
        .file("etc/boot-fail-wait", u32::MAX.to_le_bytes().to_vec())?
        .file("etc/e820", e820)?;
    for (name, data) in &cfg.fw_cfg.files {
        b.file(name, data.clone())
            .with_context(|| format!("-fw_cfg name={name}"))?;
    }
    let dma: Arc<dyn DmaMemory> = Arc::new(ram.clone());
    Ok(Arc::new(Mutex::new(b.build(Some(dma)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fw_cfg_options_follow_qemu() {
        let (n, d) = parse_option("name=opt/x,string=a,,b").unwrap();
        assert_eq!((n.as_str(), d.as_slice()), ("opt/x", &b"a,b"[..]));
        let (n, d) = parse_option("opt/y,string=hello").unwrap();
        assert_eq!((n.as_str(), d.as_slice()), ("opt/y", &b"hello"[..]));
        let f = std::env::temp_dir().join(format!("hx86-fwcfg-{}", std::process::id()));
        std::fs::write(&f, b"\x00\x01file").unwrap();
        let (_, d) = parse_option(&format!("name=opt/f,file={}", f.display())).unwrap();
        assert_eq!(d, b"\x00\x01file");
        let _ = std::fs::remove_file(&f);
        for (bad, want) in [
            ("name=opt/x", "exactly one of"),
            ("name=opt/x,string=a,file=/etc/hostname", "exactly one of"),
            ("string=a", "exactly one of"),
            ("name=,string=a", "exactly one of"),
            (
                "name=opt/x,string=a,colour=red",
                "Invalid parameter 'colour'",
            ),
            ("name=opt/x,gen_id=abc", "gen_id"),
            (
                "name=opt/x,file=/nonexistent/f",
                "can't load /nonexistent/f",
            ),
        ] {
            let e = format!("{:#}", parse_option(bad).unwrap_err());
            assert!(e.contains(want), "{bad}: {e}");
        }
        let long = format!("name=opt/{},string=a", "x".repeat(52));
        let e = parse_option(&long).unwrap_err().to_string();
        assert!(e.contains("name too long (max. 55 char)"), "{e}");
    }
}

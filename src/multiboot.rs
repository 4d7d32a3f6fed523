//! `-kernel` of a multiboot image: reads the `-initrd` modules (QEMU's
//! `"file1 arg,file2"` list) and hands everything to
//! [`firmware::multiboot`], with the ACPI tables and the e820 map the
//! machine has.

use std::path::Path;

use anyhow::{Context, Result};
use firmware::multiboot::{self, Module, MultibootOptions};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use x86::CpuState;

/// Loads the multiboot kernel `image` (read from `path`) and returns its
/// entry state.
pub fn load(
    mem: &GuestMemoryMmap,
    ram_size: u64,
    path: &Path,
    image: &[u8],
    initrd: Option<&Path>,
    append: &str,
    rsdp_addr: u64,
) -> Result<CpuState> {
    let kernel = format!("-kernel {}", path.display());
    let specs = match initrd {
        Some(p) => {
            let s = p
                .to_str()
                .with_context(|| format!("-initrd {}: not valid UTF-8", p.display()))?;
            multiboot::parse_module_list(s).with_context(|| format!("-initrd {s}"))?
        }
        None => Vec::new(),
    };
    let mut data = Vec::new();
    for s in &specs {
        let d = std::fs::read(&s.path)
            .with_context(|| format!("-initrd: multiboot module {}: cannot read file", s.path))?;
        data.push(d);
    }
    let modules: Vec<Module> = specs
        .iter()
        .zip(&data)
        .map(|(s, d)| Module {
            data: d,
            cmdline: &s.cmdline,
        })
        .collect();
    let mut rsdp = [0u8; 36];
    mem.read_slice(&mut rsdp, GuestAddress(rsdp_addr))
        .context("reading back the ACPI RSDP")?;
    let e820 = firmware::e820_map(ram_size);
    // As QEMU and GRUB do: the kernel's path, then -append.
    let cmdline = format!("{} {append}", path.display());
    let header = multiboot::probe(image).with_context(|| kernel.clone())?;
    if let Some(multiboot::Header::V1(h)) = &header {
        for w in h.warnings() {
            eprintln!("hx86: warning: {kernel}: {w}");
        }
    }
    let boot = multiboot::load_multiboot(
        mem,
        image,
        &MultibootOptions {
            cmdline: &cmdline,
            modules: &modules,
            ram_size,
            e820: &e820,
            rsdp: Some(&rsdp),
        },
    )
    .with_context(|| kernel.clone())?;
    log::debug!(
        target: "cpu_reset",
        "multiboot {}: kernel {:#x}..{:#x}, entry {:#x}, info at {:#x}, modules {:x?}, e820 {:x?}",
        boot.version.number(),
        boot.kernel.start,
        boot.kernel.end,
        boot.kernel.entry,
        boot.info_addr,
        boot.modules,
        e820
    );
    Ok(boot.state)
}

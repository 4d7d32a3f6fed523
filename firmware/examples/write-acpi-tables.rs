//! Writes hx86's ACPI tables (the default [`firmware::AcpiConfig`]) to files:
//!
//! `cargo run -p firmware --example write-acpi-tables -- OUTDIR [BASE]`
//!
//! * `OUTDIR/<sig>.dat`, one per table (`iasl -d OUTDIR/dsdt.dat` disassembles);
//! * `OUTDIR/mp.bin`: the MP floating pointer and configuration table, to
//!   live at 0x9FC40 (`firmware::mptable::MP_FLOATING_START`);
//! * with BASE (hex), `OUTDIR/acpi.bin`: the tables built to live at BASE
//!   (RSDP at BASE + 0x1C00), as one image to load there, e.g. to try them
//!   under QEMU: `-device loader,file=acpi.bin,addr=BASE,force-raw=on`
//!   `-append "... acpi_rsdp=BASE+0x1C00 memmap=8K\$BASE nokaslr"`.

use firmware::acpi::{build_acpi_tables, AcpiPlacement};
use firmware::AcpiConfig;

fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let dir = args
        .next()
        .ok_or("usage: write-acpi-tables OUTDIR [BASE]")?;
    let base = args
        .next()
        .map(|b| u64::from_str_radix(b.trim_start_matches("0x"), 16))
        .transpose()
        .map_err(|e| format!("BASE: {e}"))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
    let place = match base {
        Some(b) => AcpiPlacement {
            tables_start: b,
            tables_end: b + 0x1C00,
            rsdp: b + 0x1C00,
        },
        None => AcpiPlacement::default(),
    };
    let t = build_acpi_tables(&AcpiConfig::default(), &place).map_err(|e| e.to_string())?;
    for (addr, bytes) in &t.tables {
        let sig = String::from_utf8_lossy(&bytes[..4]).trim().to_lowercase();
        let path = format!("{dir}/{sig}.dat");
        std::fs::write(&path, bytes).map_err(|e| format!("{path}: {e}"))?;
        println!("{addr:#010x} {:5} {path}", bytes.len());
    }
    let mp_config =
        firmware::mptable::config_table(&AcpiConfig::default()).map_err(|e| e.to_string())?;
    let mut mp =
        firmware::mptable::floating_pointer(firmware::mptable::MP_CONFIG_START as u32).to_vec();
    mp.extend(mp_config);
    let path = format!("{dir}/mp.bin");
    std::fs::write(&path, mp).map_err(|e| format!("{path}: {e}"))?;
    println!(
        "{:#010x} MP table {path}",
        firmware::mptable::MP_FLOATING_START
    );
    if let Some(b) = base {
        let mut image = vec![0u8; 0x1C00 + 36];
        for (addr, bytes) in &t.tables {
            let off = (addr - b) as usize;
            image[off..off + bytes.len()].copy_from_slice(bytes);
        }
        let path = format!("{dir}/acpi.bin");
        std::fs::write(&path, image).map_err(|e| format!("{path}: {e}"))?;
        println!("{b:#010x} image {path}, RSDP at {:#x}", t.rsdp_addr);
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("write-acpi-tables: {e}");
        std::process::exit(1);
    }
}

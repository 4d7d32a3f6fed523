//! Writes the compute benchmark ROM (`firmware::compute`) to a file:
//! `cargo run --release -p firmware --example write-compute-rom -- OUT.rom [SPEC]`
//! with SPEC `rounds=N,sieve=N,crc=N,sort=N` (any subset; the rest default)
//! or `small`; prints the line the guest must print and the RAM it needs.
//! Then `hx86 -bios OUT.rom`, or
//! `qemu-system-x86_64 -bios OUT.rom -nographic -device isa-debug-exit,iobase=0xf4,iosize=4`.

use std::io::Write;

use firmware::compute::{compute_rom, reference, result_line, ComputeConfig};

fn run() -> Result<(), String> {
    let mut args = std::env::args_os().skip(1);
    let path = args
        .next()
        .ok_or("usage: write-compute-rom OUT.rom [rounds=N,sieve=N,crc=N,sort=N | small]")?;
    let spec = args.next().map(|s| s.to_string_lossy().into_owned());
    let cfg = ComputeConfig::parse(spec.as_deref().unwrap_or("")).map_err(|e| e.to_string())?;
    let rom = compute_rom(&cfg).map_err(|e| e.to_string())?;
    let want = reference(&cfg).map_err(|e| e.to_string())?;
    std::fs::write(&path, rom)
        .map_err(|e| format!("cannot write {}: {e}", path.to_string_lossy()))?;
    // A closed stdout (`| head -1`) is no error.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", result_line(&cfg, &want));
    let _ = writeln!(out, "RAM needed: {} KiB", cfg.ram_needed().div_ceil(1024));
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("write-compute-rom: {e}");
        std::process::exit(1);
    }
}

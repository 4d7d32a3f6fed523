//! Writes the SMP test ROM (`firmware::smp`) for benchmarks and by-hand runs:
//! `cargo run --release -p firmware --example write-smp-rom -- OUT.rom CPUS [ITERATIONS]`
//! then `hx86 -smp CPUS -bios OUT.rom`.

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let run = || -> Result<(), String> {
        let out = args
            .get(1)
            .ok_or("usage: write-smp-rom OUT.rom CPUS [ITERATIONS]")?;
        let cpus: u32 = args
            .get(2)
            .and_then(|s| s.parse().ok())
            .ok_or("CPUS: a number of vCPUs (2..64)")?;
        let iterations: u32 = match args.get(3) {
            Some(s) => s
                .parse()
                .map_err(|_| format!("ITERATIONS: '{s}' is not a number"))?,
            None => 1_000_000,
        };
        let rom = firmware::smp::smp_rom(cpus, iterations).map_err(|e| e.to_string())?;
        std::fs::write(out, rom).map_err(|e| format!("{out}: {e}"))
    };
    if let Err(e) = run() {
        eprintln!("write-smp-rom: {e}");
        std::process::exit(1);
    }
}

//! Writes the built-in demo ROM to a file:
//! `cargo run -p firmware --example write-demo-rom -- demo.rom`, then e.g.
//! `qemu-system-x86_64 -bios demo.rom -nographic -device isa-debug-exit,iobase=0xf4,iosize=4`.

fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: write-demo-rom OUT.rom");
        std::process::exit(2);
    };
    if let Err(e) = std::fs::write(&path, firmware::demo::demo_rom()) {
        eprintln!("cannot write {}: {e}", path.to_string_lossy());
        std::process::exit(1);
    }
}

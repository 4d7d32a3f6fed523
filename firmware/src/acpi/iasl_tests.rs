//! Cross-checks with ACPICA's `iasl` (Debian: `acpica-tools`): every table
//! disassembles cleanly, and compiling the DSDT's ASL gives the same AML
//! as the hand encoder. Skipped, saying so, when `iasl` is not installed.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::tables::HEADER_LEN;
use super::*;

/// The DSDT of the default configuration, as ASL.
const DSDT_ASL: &str = r#"
DefinitionBlock ("", "DSDT", 2, "HX86  ", "HX86DSDT", 1)
{
    Scope (\_SB)
    {
        Device (PCI0)
        {
            Name (_HID, EisaId ("PNP0A03"))
            Name (_UID, Zero)
            Name (_CRS, ResourceTemplate ()
            {
                WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,
                    0x0000, 0x0000, 0x00FF, 0x0000, 0x0100)
                IO (Decode16, 0x0CF8, 0x0CF8, 0x01, 0x08)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0000, 0x0CF7, 0x0000, 0x0CF8)
                WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,
                    0x0000, 0x0D00, 0xFFFF, 0x0000, 0xF300)
                DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed,
                    NonCacheable, ReadWrite,
                    0x00000000, 0xC0000000, 0xFEBFFFFF, 0x00000000, 0x3EC00000)
            })
            Name (_PRT, Package (0x80)
            {
PRT_ENTRIES
            })
            Device (FWCF)
            {
                Name (_HID, "QEMU0002")
                Name (_STA, 0x0B)
                Name (_CRS, ResourceTemplate ()
                {
                    IO (Decode16, 0x0510, 0x0510, 0x01, 0x0C)
                })
            }
        }
    }
    Name (\_S5, Package (0x04) { Zero, Zero, Zero, Zero })
}
"#;

/// [`DSDT_ASL`] with its `_PRT` entries written out: pin p of slot s on
/// GSI 10, 10, 11, 11 by (s + p) & 3.
fn dsdt_asl() -> String {
    let mut prt = Vec::new();
    for slot in 0..32u32 {
        for pin in 0..4u32 {
            let gsi = [10, 10, 11, 11][((slot + pin) & 3) as usize];
            let pin = match pin {
                0 => "Zero".to_string(),
                1 => "One".to_string(),
                p => format!("{p:#04X}").replace("0X", "0x"),
            };
            prt.push(format!(
                "                Package (0x04) {{ 0x{:08X}, {pin}, Zero, 0x{gsi:02X} }}",
                slot << 16 | 0xFFFF
            ));
        }
    }
    DSDT_ASL.replace("PRT_ENTRIES", &prt.join(",\n"))
}

fn iasl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("iasl"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!("SKIPPED: iasl not found (apt-get install acpica-tools)");
    }
    found
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("hx86-acpi-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Scratch(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs iasl in `dir`; returns its combined output, failing on a non-zero
/// exit.
fn run(iasl: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(iasl)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "iasl {args:?} failed:\n{text}");
    text
}

#[test]
fn iasl_disassembles_every_table() {
    let Some(iasl) = iasl() else { return };
    let dir = Scratch::new("dis");
    let t = build_acpi_tables(&AcpiConfig::default(), &AcpiPlacement::default()).unwrap();
    // iasl cannot read a lone RSDP (it has no length field at 4).
    for (_, bytes) in t.tables.iter().filter(|(_, b)| &b[..4] != b"RSD ") {
        let sig = String::from_utf8_lossy(&bytes[..4]).to_lowercase();
        std::fs::write(dir.0.join(format!("{sig}.dat")), bytes).unwrap();
        run(&iasl, &dir.0, &["-d", &format!("{sig}.dat")]);
        let dsl = std::fs::read_to_string(dir.0.join(format!("{sig}.dsl"))).unwrap();
        assert!(!dsl.contains("Incorrect"), "{sig}:\n{dsl}");
        let expect: &[&str] = match sig.as_str() {
            "dsdt" => &[
                "Name (\\_S5, Package (0x04)",
                "EisaId (\"PNP0A03\")",
                "WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
                "0xFEBFFFFF,         // Range Maximum",
                "Device (FWCF)",
                "Name (_HID, \"QEMU0002\")",
                "IO (Decode16,",
            ],
            "facp" => &[
                "Table Length : 00000114",
                "SCI Interrupt : 0009",
                "PM1A Control Block Address : 00000604",
                "8042 Present on ports 60/64 (V2) : 1",
                "Hardware Reduced (V5) : 0",
            ],
            "apic" => &[
                "I/O Apic ID : 01",
                "Interrupt : 00000002",
                "Interrupt Input LINT : 01",
            ],
            "facs" => &["Length : 00000040"],
            "rsdt" | "xsdt" => &["ACPI Table Address   1 :"],
            other => panic!("unexpected table {other}"),
        };
        for e in expect {
            assert!(dsl.contains(e), "{sig}: no {e:?} in\n{dsl}");
        }
    }
}

#[test]
fn iasl_compiles_the_same_dsdt() {
    let Some(iasl) = iasl() else { return };
    let dir = Scratch::new("asl");
    std::fs::write(dir.0.join("dsdt.asl"), dsdt_asl()).unwrap();
    // -on: keep `\_S5` as written (no namepath optimisation).
    let log = run(&iasl, &dir.0, &["-on", "-p", "out", "dsdt.asl"]);
    assert!(log.contains("0 Errors, 0 Warnings"), "{log}");
    let compiled = std::fs::read(dir.0.join("out.aml")).unwrap();
    let ours = dsdt::dsdt(&AcpiConfig::default()).unwrap();
    assert_eq!(compiled.len(), ours.len());
    assert_eq!(compiled[HEADER_LEN..], ours[HEADER_LEN..]);
    assert_eq!(compiled[..9], ours[..9]);
}

//! `-device DRIVER[,PROP=VALUE...]`, `-device help`, `-debugcon` and
//! `-global DRIVER.PROP=VALUE`: the devices added to the fixed PC.

use std::collections::HashMap;

use anyhow::{bail, Context, Result};

use super::virtio_serial::{SerialPort, VirtioSerial};
use super::{parse_chardev, parse_num, warn};
use crate::machine::SerialOut;

/// A device `-device` (or `-debugcon`) adds to the machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeviceConfig {
    /// QEMU's isa-debug-exit: a write of `v` ends hx86 with `(v << 1) | 1`.
    DebugExit { iobase: u64, iosize: u64 },
    /// QEMU's isa-debugcon: bytes written to the port go to `out`; reads
    /// return `readback`. `chardev`: the `-chardev` ID it was given, which
    /// `config::build` turns into `out`.
    Debugcon {
        iobase: u64,
        readback: u8,
        out: SerialOut,
        chardev: Option<String>,
    },
    /// QEMU's pc-testdev (ports 0xe0-0xeb, 0x2000-0x2017, MMIO 0xff000000).
    PcTestdev,
    /// QEMU's pci-testdev at `slot.func` on bus 0 (`None`: the next free
    /// slot from 2, where QEMU's `pc -nodefaults` puts the first one).
    PciTestdev { addr: Option<(u8, u8)> },
    /// virtio-rng-pci (entropy from the host's getrandom), `addr` as for
    /// pci-testdev. (A virtio device: an entry in `DEVICES` with
    /// `VIRTIO_PCI_PROPS` among its properties, a variant here with its
    /// `addr`, its arm in `parse_device`, and in `extra_devices::attach` a
    /// call of `PciSlots::attach_virtio` with the device model.)
    VirtioRng { addr: Option<(u8, u8)> },
    /// virtio-serial-pci with the ports on its bus.
    VirtioSerial(Box<VirtioSerial>),
    /// A virtconsole/virtserialport, until `config::build` puts it on its
    /// bus ([`super::virtio_serial::assign_ports`]).
    VirtioSerialPort(SerialPort),
    /// virtio-net-pci: `netdev` names its `-netdev` (`None`: not
    /// connected), whose options `config::net::resolve` puts in `user`;
    /// `mac` is set there too when not given.
    VirtioNet {
        netdev: Option<String>,
        mac: Option<[u8; 6]>,
        addr: Option<(u8, u8)>,
        user: Option<Box<super::net::UserNet>>,
    },
    /// virtio-blk-pci: a disk (`drive.rs`; `config::build` gives it its
    /// `-drive`'s image).
    VirtioBlk(Box<super::drive::BlkDevice>),
}

struct PropInfo {
    name: &'static str,
    ty: &'static str,
    default: &'static str,
}

struct DeviceInfo {
    name: &'static str,
    bus: &'static str,
    /// QEMU's category heading in `-device help` ("Misc devices").
    category: Category,
    desc: Option<&'static str>,
    props: &'static [PropInfo],
}

/// QEMU's device categories, in the order `-device help` prints them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Category {
    Storage,
    Network,
    Input,
    Misc,
}

impl Category {
    fn heading(self) -> &'static str {
        match self {
            Category::Storage => "Storage devices",
            Category::Network => "Network devices",
            Category::Input => "Input devices",
            Category::Misc => "Misc devices",
        }
    }
}

/// The properties every virtio PCI device takes (`disable-legacy` and
/// `disable-modern` are checked for any `virtio-*-pci`).
const VIRTIO_PCI_PROPS: &[PropInfo] = &[
    prop("addr", "int32", "next free slot from 2"),
    prop(
        "disable-legacy",
        "OnOffAuto",
        "on (hx86's virtio is modern only)",
    ),
    prop("disable-modern", "bool", "false"),
];

const fn prop(name: &'static str, ty: &'static str, default: &'static str) -> PropInfo {
    PropInfo { name, ty, default }
}

/// The devices `-device` takes.
const DEVICES: &[DeviceInfo] = &[
    DeviceInfo {
        name: "virtio-blk-pci",
        bus: "PCI",
        category: Category::Storage,
        desc: None,
        props: &[
            prop("drive", "str", "none: the ID of a -drive if=none"),
            prop("serial", "str", "none (the disk ID the guest reads)"),
            prop("discard", "bool", "true"),
            prop("write-zeroes", "bool", "true"),
            prop("num-queues", "uint16", "1"),
            prop("bootindex", "int32", "ignored"),
            prop("addr", "int32", "next free slot from 2"),
            prop(
                "disable-legacy",
                "OnOffAuto",
                "on (hx86's virtio is modern only)",
            ),
            prop("disable-modern", "bool", "false"),
        ],
    },
    DeviceInfo {
        name: "isa-debug-exit",
        bus: "ISA",
        category: Category::Misc,
        desc: None,
        props: &[
            prop("iobase", "uint32", "1281"),
            prop("iosize", "uint32", "1"),
        ],
    },
    DeviceInfo {
        name: "isa-debugcon",
        bus: "ISA",
        category: Category::Misc,
        desc: None,
        props: &[
            prop("iobase", "uint32", "233"),
            prop("readback", "uint32", "233"),
            prop("chardev", "str", "none: stdout (QEMU requires one)"),
        ],
    },
    DeviceInfo {
        name: "pc-testdev",
        bus: "ISA",
        category: Category::Misc,
        desc: None,
        props: &[],
    },
    DeviceInfo {
        name: "pci-testdev",
        bus: "PCI",
        category: Category::Misc,
        desc: Some("PCI Test Device"),
        props: &[prop("addr", "int32", "next free slot from 2")],
    },
    DeviceInfo {
        name: "virtio-rng-pci",
        bus: "PCI",
        category: Category::Misc,
        desc: None,
        props: VIRTIO_PCI_PROPS,
    },
    DeviceInfo {
        name: "virtio-net-pci",
        bus: "PCI",
        category: Category::Network,
        desc: None,
        props: &[
            prop("netdev", "str", "none: not connected"),
            prop("mac", "str", "52:54:00:12:34:56, counting up per card"),
            prop("addr", "int32", "next free slot from 2"),
            prop(
                "disable-legacy",
                "OnOffAuto",
                "on (hx86's virtio is modern only)",
            ),
            prop("disable-modern", "bool", "false"),
        ],
    },
    DeviceInfo {
        name: "virtio-serial-pci",
        bus: "PCI",
        category: Category::Input,
        desc: None,
        props: &[
            prop("addr", "int32", "next free slot from 2"),
            prop(
                "disable-legacy",
                "OnOffAuto",
                "on (hx86's virtio is modern only)",
            ),
            prop("disable-modern", "bool", "false"),
            prop("max_ports", "uint32", "31"),
        ],
    },
    DeviceInfo {
        name: "virtconsole",
        bus: "virtio-serial-bus",
        category: Category::Input,
        desc: None,
        props: SERIAL_PORT_PROPS,
    },
    DeviceInfo {
        name: "virtserialport",
        bus: "virtio-serial-bus",
        category: Category::Input,
        desc: None,
        props: SERIAL_PORT_PROPS,
    },
];

/// virtconsole's and virtserialport's properties.
const SERIAL_PORT_PROPS: &[PropInfo] = &[
    prop("chardev", "str", "none: output dropped"),
    prop("name", "str", "none"),
    prop("nr", "uint32", "virtconsole 0, then the first free from 1"),
    prop("bus", "str", "the first virtio-serial-pci's (ID.0)"),
];

/// What `-device help` prints: QEMU's format, by category, names sorted.
pub fn device_help() -> String {
    let mut devs: Vec<&DeviceInfo> = DEVICES.iter().collect();
    devs.sort_by_key(|d| (d.category, d.name));
    let mut s = String::new();
    for (i, d) in devs.iter().enumerate() {
        if i == 0 || devs[i - 1].category != d.category {
            if i > 0 {
                s.push('\n');
            }
            s += &format!("{}:\n", d.category.heading());
        }
        s += &format!("name \"{}\", bus {}", d.name, d.bus);
        if let Some(desc) = d.desc {
            s += &format!(", desc \"{desc}\"");
        }
        s.push('\n');
    }
    s
}

/// What `-device DRIVER,help` prints.
fn props_help(d: &DeviceInfo) -> String {
    if d.props.is_empty() {
        return "There are no options for this device.\n".into();
    }
    let mut s = format!("{} options:\n", d.name);
    for p in d.props {
        let left = format!("{}=<{}>", p.name, p.ty);
        s += &format!("  {left:<22} - (default: {})\n", p.default);
    }
    s
}

/// `-device` asked for help: the text to print (then exit 0).
pub fn help_request(specs: &[String]) -> Result<Option<String>> {
    for spec in specs {
        if spec == "help" || spec == "?" {
            return Ok(Some(device_help()));
        }
        let mut it = spec.split(',');
        let driver = it.next().unwrap_or("");
        if it.any(|p| p == "help" || p == "?") {
            let d = info(driver)?;
            return Ok(Some(props_help(d)));
        }
    }
    Ok(None)
}

fn info(driver: &str) -> Result<&'static DeviceInfo> {
    match DEVICES.iter().find(|d| d.name == driver) {
        Some(d) => Ok(d),
        None if driver.is_empty() => bail!("-device: missing driver name"),
        None => bail!(
            "-device {driver}: unsupported device (hx86 has {}; -device help lists them)",
            DEVICES
                .iter()
                .map(|d| d.name)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `-global DRIVER.PROP=VALUE` settings: defaults for hx86's own devices'
/// properties, or accepted and ignored for what harnesses send (with a
/// warning unless it asks for what hx86 does anyway).
#[derive(Debug, Default)]
pub struct Globals {
    by_driver: HashMap<String, Vec<(String, String)>>,
}

/// Properties of devices hx86 lacks that harnesses set to what hx86's
/// machine already does (accepted silently).
const HARMLESS_GLOBALS: &[(&str, &str, &str)] = &[
    // The DBT's PIT drops ticks the guest missed (one IRQ0 edge per poll),
    // as discard asks; kvm-unit-tests sends it.
    ("kvm-pit.lost_tick_policy", "discard", ""),
    // libvirt: hx86 has no S3/S4.
    ("PIIX4_PM.disable_s3", "1", ""),
    ("PIIX4_PM.disable_s4", "1", ""),
    ("ICH9-LPC.disable_s3", "1", ""),
    ("ICH9-LPC.disable_s4", "1", ""),
];

impl Globals {
    /// Parse the `-global` options.
    pub fn parse(specs: &[String]) -> Result<Self> {
        let mut g = Self::default();
        for spec in specs {
            let bad = || format!("-global {spec}: expected DRIVER.PROP=VALUE");
            let (dp, value) = spec.split_once('=').with_context(bad)?;
            let (driver, prop) = dp.split_once('.').with_context(bad)?;
            if driver.is_empty() || prop.is_empty() {
                bail!(bad());
            }
            if let Some(d) = DEVICES.iter().find(|d| d.name == driver) {
                if !d.props.iter().any(|p| p.name == prop) || prop == "addr" {
                    bail!("-global {spec}: {driver} has no property '{prop}'");
                }
                g.by_driver
                    .entry(driver.to_string())
                    .or_default()
                    .push((prop.to_string(), value.to_string()));
            } else if !HARMLESS_GLOBALS
                .iter()
                .any(|(k, v, _)| *k == dp && *v == value)
            {
                warn(&format!(
                    "-global {spec}: ignored (hx86 has no such device property)"
                ));
            }
        }
        Ok(g)
    }

    fn for_driver(&self, driver: &str) -> impl Iterator<Item = (&str, &str)> {
        self.by_driver
            .get(driver)
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn num(what: &str, k: &str, v: &str, max: u64) -> Result<u64> {
    let n = parse_num(v).with_context(|| format!("{what}: {k}: '{v}' is not a number"))?;
    if n > max {
        bail!("{what}: {k}={v} is out of range (at most {max:#x})");
    }
    Ok(n)
}

/// QEMU's PCI `addr=SLOT[.FN]` (hex).
fn pci_addr(what: &str, v: &str) -> Result<(u8, u8)> {
    let (s, f) = v.split_once('.').unwrap_or((v, "0"));
    let hex = |x: &str| u8::from_str_radix(x.trim_start_matches("0x"), 16).ok();
    match (hex(s), hex(f)) {
        (Some(s), Some(f)) if s <= 31 && f <= 7 => Ok((s, f)),
        _ => bail!("{what}: addr={v}: expected SLOT[.FUNCTION] (hex, slot 0-1f, function 0-7)"),
    }
}

/// A virtio PCI device (`virtio-*-pci`): takes `disable-legacy=on` and
/// `disable-modern=off` (what hx86's transport is) besides its own.
fn is_virtio_pci(driver: &str) -> bool {
    driver.starts_with("virtio-") && driver.ends_with("-pci")
}

/// Parse one `-device` option (with the `-global` defaults applied first).
pub fn parse_device(spec: &str, globals: &Globals) -> Result<DeviceConfig> {
    let what = format!("-device {spec}");
    let mut it = spec.split(',');
    let driver = it.next().unwrap_or("");
    let dinfo = info(driver)?;
    let own: Vec<(&str, &str)> = super::props(&what, it)?;
    let mut dev = match driver {
        "isa-debug-exit" => DeviceConfig::DebugExit {
            iobase: 0x501,
            iosize: 1,
        },
        "isa-debugcon" => DeviceConfig::Debugcon {
            iobase: 0xe9,
            readback: 0xe9,
            out: SerialOut::Stdio,
            chardev: None,
        },
        "pc-testdev" => DeviceConfig::PcTestdev,
        "pci-testdev" => DeviceConfig::PciTestdev { addr: None },
        "virtio-rng-pci" => DeviceConfig::VirtioRng { addr: None },
        "virtio-blk-pci" => DeviceConfig::VirtioBlk(Box::default()),
        "virtio-serial-pci" => DeviceConfig::VirtioSerial(Box::default()),
        "virtconsole" | "virtserialport" => DeviceConfig::VirtioSerialPort(SerialPort {
            console: driver == "virtconsole",
            ..Default::default()
        }),
        "virtio-net-pci" => DeviceConfig::VirtioNet {
            netdev: None,
            mac: None,
            addr: None,
            user: None,
        },
        _ => bail!("-device {driver}: unsupported device"),
    };
    for (k, v) in globals.for_driver(driver).chain(own) {
        if let DeviceConfig::VirtioBlk(b) = &mut dev {
            if super::drive::blk_prop(&what, b, k, v)? {
                continue;
            }
        }
        match (&mut dev, k) {
            (DeviceConfig::VirtioSerial(s), "id") => s.id = Some(v.to_string()),
            (DeviceConfig::VirtioSerial(s), "max_ports") => {
                s.max_ports = num(&what, k, v, u64::from(u32::MAX))? as u32
            }
            (DeviceConfig::VirtioSerial(s), "addr") => s.addr = Some(pci_addr(&what, v)?),
            (DeviceConfig::VirtioSerialPort(p), "chardev") => p.chardev = Some(v.to_string()),
            (DeviceConfig::VirtioSerialPort(p), "name") => p.name = Some(v.to_string()),
            (DeviceConfig::VirtioSerialPort(p), "nr") => {
                p.nr = Some(num(&what, k, v, u64::from(u32::MAX))? as u32)
            }
            (DeviceConfig::VirtioSerialPort(p), "bus") => p.bus = Some(v.to_string()),
            // QEMU's generic properties.
            (_, "id") => {}
            (_, "bus") if dinfo.bus == "PCI" && v == "pci.0" => {}
            (_, "bus") if dinfo.bus == "PCI" => {
                bail!("{what}: bus '{v}' not found (hx86 has one PCI bus, pci.0)")
            }
            (_, "bus") if v == "isa.0" && dinfo.bus == "ISA" => {}
            (_, "bus") => bail!("{what}: bus '{v}' not found (ISA devices sit on isa.0)"),
            (DeviceConfig::DebugExit { iobase, .. }, "iobase")
            | (DeviceConfig::Debugcon { iobase, .. }, "iobase") => {
                *iobase = num(&what, k, v, 0xffff)?
            }
            (DeviceConfig::DebugExit { iosize, .. }, "iosize") => {
                *iosize = num(&what, k, v, 4)?;
                if !matches!(*iosize, 1 | 2 | 4) {
                    bail!("{what}: iosize={v} is out of range (use 1, 2 or 4)");
                }
            }
            (DeviceConfig::Debugcon { readback, .. }, "readback") => {
                // A one-byte port: the value's low byte is what reads see.
                *readback = num(&what, k, v, u64::from(u32::MAX))? as u8
            }
            (DeviceConfig::Debugcon { chardev, .. }, "chardev") => *chardev = Some(v.to_string()),
            (DeviceConfig::PciTestdev { addr } | DeviceConfig::VirtioRng { addr }, "addr")
            | (DeviceConfig::VirtioNet { addr, .. }, "addr") => *addr = Some(pci_addr(&what, v)?),
            (DeviceConfig::VirtioBlk(b), "addr") => b.addr = Some(pci_addr(&what, v)?),
            (DeviceConfig::VirtioNet { netdev, .. }, "netdev") => *netdev = Some(v.to_string()),
            (DeviceConfig::VirtioNet { mac, .. }, "mac") => {
                *mac = Some(super::net::parse_mac(&what, v)?)
            }
            (_, "disable-legacy") if is_virtio_pci(driver) => match v {
                "on" | "auto" | "true" => {}
                _ => bail!("{what}: disable-legacy={v}: hx86's virtio devices are modern only"),
            },
            (_, "disable-modern") if is_virtio_pci(driver) => match v {
                "off" | "false" => {}
                _ => bail!("{what}: disable-modern={v}: hx86's virtio devices are modern only"),
            },
            (_, "membar") if driver == "pci-testdev" => {
                bail!("{what}: membar= (a 64-bit prefetchable BAR 2) is not supported")
            }
            _ => bail!("{what}: {driver} has no property '{k}'"),
        }
    }
    Ok(dev)
}

/// `-debugcon DEV`: an isa-debugcon at 0xe9 (or `-global
/// isa-debugcon.iobase=`) writing to DEV.
pub fn parse_debugcon(spec: &str, globals: &Globals) -> Result<DeviceConfig> {
    let out = parse_chardev("-debugcon", spec)?;
    let mut dev = parse_device("isa-debugcon", globals)?;
    if let DeviceConfig::Debugcon { out: o, .. } = &mut dev {
        *o = out;
    }
    Ok(dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(spec: &str) -> Result<DeviceConfig> {
        parse_device(spec, &Globals::default())
    }

    #[test]
    fn devices_and_their_properties() {
        assert_eq!(
            dev("isa-debug-exit,iobase=0xf4,iosize=0x4").unwrap(),
            DeviceConfig::DebugExit {
                iobase: 0xf4,
                iosize: 4
            }
        );
        assert_eq!(
            dev("isa-debugcon,iobase=0x402,readback=0x1e9").unwrap(),
            DeviceConfig::Debugcon {
                iobase: 0x402,
                readback: 0xe9,
                out: SerialOut::Stdio,
                chardev: None
            }
        );
        assert_eq!(dev("pc-testdev,id=t").unwrap(), DeviceConfig::PcTestdev);
        assert_eq!(
            dev("pci-testdev,addr=0a.0,bus=pci.0").unwrap(),
            DeviceConfig::PciTestdev {
                addr: Some((10, 0))
            }
        );
        assert_eq!(
            dev("pci-testdev").unwrap(),
            DeviceConfig::PciTestdev { addr: None }
        );
        assert_eq!(
            dev("virtio-rng-pci,addr=3,id=rng0,disable-legacy=on").unwrap(),
            DeviceConfig::VirtioRng { addr: Some((3, 0)) }
        );
    }

    #[test]
    fn globals_set_defaults_and_device_options_win() {
        let g = Globals::parse(&[
            "isa-debugcon.iobase=0x402".to_string(),
            "kvm-pit.lost_tick_policy=discard".to_string(),
            "some-device.frob=1".to_string(),
        ])
        .unwrap();
        let d = parse_debugcon("file:/tmp/x", &g).unwrap();
        assert!(
            matches!(d, DeviceConfig::Debugcon { iobase: 0x402, .. }),
            "{d:?}"
        );
        assert!(matches!(
            parse_device("isa-debugcon,iobase=0x403", &g).unwrap(),
            DeviceConfig::Debugcon { iobase: 0x403, .. }
        ));
        for bad in ["nodot=1", "a.b", ".x=1", "isa-debugcon.frob=1"] {
            assert!(Globals::parse(&[bad.to_string()]).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_devices_fail_clearly() {
        for (spec, msg) in [
            ("e1000", "unsupported device"),
            ("", "missing driver name"),
            ("isa-debug-exit,iobase=zz", "not a number"),
            ("isa-debug-exit,iosize=3", "out of range"),
            ("isa-debug-exit,iobase=0x10000", "out of range"),
            ("isa-debug-exit,frob=1", "no property 'frob'"),
            ("isa-debug-exit,iobase", "expected PROP=VALUE"),
            ("pci-testdev,addr=20.0", "addr=20.0"),
            ("pci-testdev,bus=pcie.0", "bus 'pcie.0' not found"),
            ("pc-testdev,iobase=1", "no property 'iobase'"),
            ("virtio-rng-pci,disable-legacy=off", "modern only"),
            ("virtio-rng-pci,bus=pcie.0", "bus 'pcie.0' not found"),
            ("virtio-rng-pci,addr=1.8", "addr=1.8"),
        ] {
            let e = dev(spec).unwrap_err().to_string();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }

    #[test]
    fn help_lists_in_qemus_format() {
        let h = help_request(&["?".to_string()]).unwrap().unwrap();
        assert!(h.contains("name \"isa-debug-exit\", bus ISA\n"), "{h}");
        assert!(h.contains("name \"pci-testdev\", bus PCI, desc \"PCI Test Device\"\n"));
        // QEMU's order of categories: Input before Misc.
        let (input, misc) = (h.find("Input devices:\n"), h.find("\nMisc devices:\n"));
        assert!(input.is_some() && misc.is_some() && input < misc, "{h}");
        assert!(h.contains("Input devices:\nname \"virtconsole\", bus virtio-serial-bus\nname \"virtio-serial-pci\", bus PCI\nname \"virtserialport\", bus virtio-serial-bus\n"), "{h}");
        // Network devices come before Input and Misc ones.
        let net = h.find("Network devices:\nname \"virtio-net-pci\", bus PCI\n");
        assert!(net.is_some() && net < input, "{h}");
        assert!(h.contains("name \"virtio-rng-pci\", bus PCI\n"), "{h}");
        // Storage first, as in QEMU.
        assert!(
            h.starts_with("Storage devices:\nname \"virtio-blk-pci\", bus PCI\n\n"),
            "{h}"
        );
        let h = help_request(&["isa-debug-exit,help".to_string()])
            .unwrap()
            .unwrap();
        assert!(h.contains("iobase=<uint32>"), "{h}");
        assert!(help_request(&["pc-testdev".to_string()]).unwrap().is_none());
        assert!(help_request(&["bogus,help".to_string()]).is_err());
    }
}

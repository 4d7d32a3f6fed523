//! `-device virtio-serial-pci[,id=][,addr=][,max_ports=]` and its ports,
//! `-device virtconsole|virtserialport[,chardev=ID][,name=][,nr=][,bus=]`:
//! each port goes on a virtio-serial bus (`bus=ID.0`, or the first one, as
//! QEMU picks it) and its chardev is checked here; the device model is
//! `devices::virtio::console`.

use anyhow::{bail, Result};

use super::DeviceConfig;
use crate::chardev::ChardevConfig;

/// A virtio-serial-pci device with the ports put on its bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VirtioSerial {
    pub addr: Option<(u8, u8)>,
    /// `id=`: its bus is `ID.0`.
    pub id: Option<String>,
    pub max_ports: u32,
    pub ports: Vec<SerialPort>,
}

impl Default for VirtioSerial {
    fn default() -> Self {
        Self {
            addr: None,
            id: None,
            max_ports: devices::virtio::console::DEFAULT_MAX_PORTS,
            ports: Vec::new(),
        }
    }
}

/// A `virtconsole` (`console`) or `virtserialport`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SerialPort {
    pub console: bool,
    /// Its chardev (`None`: output dropped, no input, as QEMU).
    pub chardev: Option<String>,
    pub name: Option<String>,
    pub nr: Option<u32>,
    /// `bus=`: which virtio-serial bus (`None`: the first).
    pub bus: Option<String>,
}

impl SerialPort {
    pub fn driver(&self) -> &'static str {
        if self.console {
            "virtconsole"
        } else {
            "virtserialport"
        }
    }
}

/// Moves every port from `devs` onto its virtio-serial bus.
pub fn assign_ports(devs: &mut Vec<DeviceConfig>) -> Result<()> {
    let mut ports = Vec::new();
    devs.retain(|d| match d {
        DeviceConfig::VirtioSerialPort(p) => {
            ports.push(p.clone());
            false
        }
        _ => true,
    });
    for p in ports {
        let mut buses = devs.iter_mut().filter_map(|d| match d {
            DeviceConfig::VirtioSerial(s) => Some(s),
            _ => None,
        });
        let bus = match &p.bus {
            None => buses.next(),
            Some(b) => {
                buses.find(|s| s.id.as_deref().map(|id| format!("{id}.0")) == Some(b.clone()))
            }
        };
        match (bus, &p.bus) {
            (Some(s), _) => s.ports.push(p),
            (None, None) => bail!(
                "-device {}: No 'virtio-serial-bus' bus found (add -device virtio-serial-pci)",
                p.driver()
            ),
            (None, Some(b)) => bail!(
                "-device {},bus={b}: bus '{b}' not found (a virtio-serial-pci with id=ID has bus ID.0)",
                p.driver()
            ),
        }
    }
    Ok(())
}

/// Every port's chardev exists, and one that another user (COM1, a
/// monitor, an isa-debugcon, another port) also has is a mux.
pub fn check_chardevs(devs: &[DeviceConfig], c: &ChardevConfig) -> Result<()> {
    let mut seen: Vec<&str> = c
        .serial
        .iter()
        .map(String::as_str)
        .chain(c.monitors.iter().map(|m| m.chardev.as_str()))
        .chain(devs.iter().filter_map(|d| match d {
            DeviceConfig::Debugcon {
                chardev: Some(id), ..
            } => Some(id.as_str()),
            _ => None,
        }))
        .collect();
    for s in devs.iter().filter_map(|d| match d {
        DeviceConfig::VirtioSerial(s) => Some(s),
        _ => None,
    }) {
        for p in &s.ports {
            let Some(id) = p.chardev.as_deref() else {
                continue;
            };
            let what = format!("-device {},chardev={id}", p.driver());
            let Some(spec) = c.chardevs.iter().find(|d| d.id == id) else {
                bail!("{what}: chardev '{id}' not found (define it with -chardev ...,id={id})");
            };
            if seen.contains(&id) && !spec.mux {
                bail!("{what}: chardev '{id}' is used twice: add mux=on to share it");
            }
            seen.push(id);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(console: bool, chardev: &str, bus: Option<&str>) -> DeviceConfig {
        DeviceConfig::VirtioSerialPort(SerialPort {
            console,
            chardev: Some(chardev.into()),
            bus: bus.map(str::to_string),
            ..Default::default()
        })
    }

    fn bus(id: Option<&str>) -> DeviceConfig {
        DeviceConfig::VirtioSerial(Box::new(VirtioSerial {
            id: id.map(str::to_string),
            ..Default::default()
        }))
    }

    fn ports_of(d: &DeviceConfig) -> Vec<String> {
        match d {
            DeviceConfig::VirtioSerial(s) => {
                s.ports.iter().map(|p| p.chardev.clone().unwrap()).collect()
            }
            _ => panic!("{d:?}"),
        }
    }

    #[test]
    fn the_devices_and_their_properties() {
        let g = super::super::devices::Globals::default();
        let dev = |s: &str| super::super::devices::parse_device(s, &g);
        assert_eq!(
            dev("virtio-serial-pci,id=vs,addr=5,max_ports=4,bus=pci.0").unwrap(),
            DeviceConfig::VirtioSerial(Box::new(VirtioSerial {
                addr: Some((5, 0)),
                id: Some("vs".into()),
                max_ports: 4,
                ports: vec![],
            }))
        );
        assert_eq!(
            dev("virtconsole,chardev=c0,name=a.b,nr=3,bus=vs.0,id=p").unwrap(),
            DeviceConfig::VirtioSerialPort(SerialPort {
                console: true,
                chardev: Some("c0".into()),
                name: Some("a.b".into()),
                nr: Some(3),
                bus: Some("vs.0".into()),
            })
        );
        assert_eq!(
            dev("virtserialport").unwrap(),
            DeviceConfig::VirtioSerialPort(SerialPort::default())
        );
        for (spec, msg) in [
            ("virtio-serial-pci,max_ports=x", "not a number"),
            ("virtio-serial-pci,bus=pcie.0", "bus 'pcie.0' not found"),
            ("virtconsole,frob=1", "no property 'frob'"),
            ("virtserialport,nr=-1", "not a number"),
        ] {
            let e = dev(spec).unwrap_err().to_string();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }

    #[test]
    fn ports_go_to_the_first_bus_or_the_named_one() {
        let mut devs = vec![
            port(true, "a", None),
            bus(None),
            bus(Some("vs1")),
            port(false, "b", Some("vs1.0")),
            port(true, "c", None),
        ];
        assign_ports(&mut devs).unwrap();
        assert_eq!(devs.len(), 2);
        assert_eq!(ports_of(&devs[0]), ["a", "c"]);
        assert_eq!(ports_of(&devs[1]), ["b"]);
    }

    #[test]
    fn a_port_without_its_bus_is_an_error() {
        let e = assign_ports(&mut vec![port(true, "a", None)]).unwrap_err();
        assert!(
            e.to_string().contains("No 'virtio-serial-bus' bus found"),
            "{e}"
        );
        let e = assign_ports(&mut vec![bus(Some("x")), port(false, "a", Some("y.0"))]).unwrap_err();
        assert!(e.to_string().contains("bus 'y.0' not found"), "{e}");
    }

    #[test]
    fn chardevs_must_exist_and_be_shared_through_a_mux() {
        let chardevs = |specs: &[&str], serial: &str| {
            let specs: Vec<String> = specs.iter().map(|s| s.to_string()).collect();
            ChardevConfig::from_options(&crate::chardev::ChardevOptions {
                chardev: &specs,
                serial,
                ..Default::default()
            })
            .unwrap()
        };
        let mut devs = vec![bus(None), port(true, "c0", None)];
        assign_ports(&mut devs).unwrap();
        assert!(check_chardevs(&devs, &chardevs(&["null,id=c0"], "none")).is_ok());
        let e = check_chardevs(&devs, &chardevs(&[], "none")).unwrap_err();
        assert!(e.to_string().contains("chardev 'c0' not found"), "{e}");
        let e = check_chardevs(&devs, &chardevs(&["null,id=c0"], "chardev:c0")).unwrap_err();
        assert!(e.to_string().contains("add mux=on"), "{e}");
        assert!(check_chardevs(&devs, &chardevs(&["stdio,id=c0,mux=on"], "chardev:c0")).is_ok());
        let debugcon = DeviceConfig::Debugcon {
            iobase: 0xe9,
            readback: 0xe9,
            out: crate::machine::SerialOut::None,
            chardev: Some("c0".into()),
        };
        let with_debugcon = [devs.clone(), vec![debugcon]].concat();
        let e = check_chardevs(&with_debugcon, &chardevs(&["null,id=c0"], "none")).unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
        let mut two = vec![bus(None), port(true, "c0", None), port(false, "c0", None)];
        assign_ports(&mut two).unwrap();
        let e = check_chardevs(&two, &chardevs(&["null,id=c0"], "none")).unwrap_err();
        assert!(e.to_string().contains("used twice"), "{e}");
    }
}

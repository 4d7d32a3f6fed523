//! virtio-serial ports on chardevs: a `-device virtio-serial-pci` with its
//! `virtconsole`/`virtserialport`s built as a [`VirtioConsole`], each
//! port writing into its chardev and fed by the chardev's input.

use std::sync::Arc;

use anyhow::{anyhow, Result};
use devices::virtio::console::{PortConfig, PortInput, VirtioConsole};

use super::backend::{ChardevWriter, Frontend};
use crate::config::virtio_serial::VirtioSerial;
use crate::monitor::Chardevs;

/// A port as a chardev frontend: input goes to the guest (waiting while
/// the port's buffer is full), a peer connecting or leaving is the host
/// side opening or closing the port.
struct PortFrontend(PortInput);

impl Frontend for PortFrontend {
    fn open(&self) {
        self.0.set_host_connected(true);
    }
    fn input(&self, data: &[u8]) {
        self.0.input(data);
    }
    fn close(&self) {
        self.0.set_host_connected(false);
    }
}

/// The device for `cfg`, its ports attached to their chardevs (before the
/// chardevs start).
pub fn build(cfg: &VirtioSerial, chardevs: &Chardevs) -> Result<VirtioConsole> {
    let mut ports = Vec::new();
    let mut devs = Vec::new();
    for p in &cfg.ports {
        let dev = p.chardev.as_deref().map(|id| {
            chardevs
                .get(id)
                .ok_or_else(|| anyhow!("-device {}: chardev '{id}' not found", p.driver()))
        });
        let dev = dev.transpose()?;
        let output: Box<dyn std::io::Write + Send> = match &dev {
            Some(d) => Box::new(ChardevWriter(d.output())),
            None => Box::new(std::io::sink()),
        };
        ports.push(PortConfig {
            nr: p.nr,
            name: p.name.clone(),
            console: p.console,
            output,
        });
        devs.push(dev);
    }
    let con = VirtioConsole::new(cfg.max_ports, ports)
        .map_err(|e| anyhow!("-device virtio-serial-pci: {e}"))?;
    for (i, dev) in devs.into_iter().enumerate() {
        if let (Some(d), Some(input)) = (dev, con.port_input(i)) {
            d.attach(Arc::new(PortFrontend(input)));
        }
    }
    Ok(con)
}

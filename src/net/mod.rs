//! Network backends for the virtio-net cards: user-mode networking
//! (`-netdev user`, [`slirp`]) and the backend of a card connected to
//! nothing.

pub mod slirp;

use devices::virtio::net::{FrameSink, NetBackend};

/// A card without a netdev: what it sends is lost, nothing arrives.
pub struct Unconnected;

impl NetBackend for Unconnected {
    fn send(&mut self, _frame: &[u8]) {}
    fn set_sink(&mut self, _sink: Option<FrameSink>) {}
}

#[cfg(test)]
mod tests;

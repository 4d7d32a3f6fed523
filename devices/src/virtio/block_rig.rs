//! The virtio-blk tests' rig: guest RAM with hand-built rings (a
//! `GuestMemoryMmap`), a driver side that submits chains and waits for
//! the device, temporary image files.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_blk::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::block::{Block, BlockOptions, QUEUE_SIZE};
use super::block_image::{self, BlockBackend, ImageOptions};
use super::{feature, Activation, VirtioDevice, VirtioInterrupt};
use crate::dma::GuestRam;

pub(super) const RAM: u64 = 8 << 20;
pub(super) const ROM: (u64, u64) = (RAM - 0x10000, 0x10000);
pub(super) const DESC: u64 = 0x1000;
pub(super) const AVAIL: u64 = 0x2000;
pub(super) const USED: u64 = 0x3000;
pub(super) const INDIRECT: u64 = 0x5000;
pub(super) const HDR: u64 = 0x8000;
pub(super) const STATUS: u64 = 0x9000;
pub(super) const DATA: u64 = 0x10000;

pub(super) const F_NEXT: u16 = 1;
pub(super) const F_WRITE: u16 = 2;
pub(super) const F_INDIRECT: u16 = 4;

/// A temporary file, removed on drop.
pub(super) struct TempImage(pub PathBuf);

impl TempImage {
    pub fn new(bytes: &[u8]) -> Self {
        use std::sync::atomic::{AtomicU32, Ordering};
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "hx86-blk-test-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, bytes).unwrap();
        Self(p)
    }
    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(&self.0).unwrap()
    }
    pub fn opts(&self) -> ImageOptions {
        ImageOptions {
            path: self.0.clone(),
            format_raw: true,
            ..Default::default()
        }
    }
}

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A disk image whose sector `s` holds bytes `(s * 7 + i) as u8`.
pub(super) fn pattern(sectors: u64) -> Vec<u8> {
    (0..sectors * 512)
        .map(|i| ((i / 512) * 7 + i % 512) as u8)
        .collect()
}

#[derive(Default)]
pub(super) struct Irq {
    pub state: Mutex<(u32, bool)>,
    pub cv: Condvar,
}

impl VirtioInterrupt for Irq {
    fn signal_used_queue(&self, index: u16) {
        assert_eq!(index, 0);
        self.state.lock().unwrap().0 += 1;
        self.cv.notify_all();
    }
    fn signal_config_change(&self) {}
    fn set_needs_reset(&self) {
        self.state.lock().unwrap().1 = true;
        self.cv.notify_all();
    }
}

/// The device, guest RAM with its rings, and the driver's side.
pub(super) struct Rig {
    pub ram: GuestRam,
    pub dev: Block,
    pub irq: Arc<Irq>,
    pub avail: u16,
    pub _image: Option<TempImage>,
}

/// What the device did with a submitted chain.
#[derive(Debug, PartialEq)]
pub(super) enum Outcome {
    /// It came back on the used ring with this length.
    Used(u32),
    /// The device asked for a reset instead.
    NeedsReset,
}

impl Rig {
    pub(super) fn with_backend(
        backend: Arc<dyn BlockBackend>,
        opts: &BlockOptions,
        features: u64,
    ) -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), RAM as usize)]).unwrap();
        let ram = GuestRam::new(mem, &[ROM]);
        let mut rig = Self {
            ram,
            dev: Block::new(backend, opts),
            irq: Arc::new(Irq::default()),
            avail: 0,
            _image: None,
        };
        rig.activate(features);
        rig
    }

    pub(super) fn new(image: &[u8]) -> Self {
        let img = TempImage::new(image);
        let mut r = Self::open(&img.opts(), &BlockOptions::default());
        r._image = Some(img);
        r
    }

    pub(super) fn open(opts: &ImageOptions, bopts: &BlockOptions) -> Self {
        let image = block_image::open(opts).unwrap();
        let mut features = feature::VERSION_1 | feature::RING_INDIRECT_DESC;
        features |= Block::new(image.backend.clone(), bopts).device_features();
        Self::with_backend(image.backend, bopts, features)
    }

    pub(super) fn activate(&mut self, features: u64) {
        let mut q = Queue::new(QUEUE_SIZE).unwrap();
        q.set_size(QUEUE_SIZE);
        q.try_set_desc_table_address(GuestAddress(DESC)).unwrap();
        q.try_set_avail_ring_address(GuestAddress(AVAIL)).unwrap();
        q.try_set_used_ring_address(GuestAddress(USED)).unwrap();
        q.set_ready(true);
        // A fresh ring.
        self.ram.write(AVAIL, &[0; 4]).unwrap();
        self.ram.write(USED, &[0; 4]).unwrap();
        self.avail = 0;
        *self.irq.state.lock().unwrap() = (0, false);
        self.dev
            .activate(Activation {
                mem: self.ram.clone(),
                queues: vec![(0, q)],
                interrupt: self.irq.clone(),
                features,
            })
            .unwrap();
    }

    pub(super) fn desc_at(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.ram.write(table + u64::from(i) * 16, &d).unwrap();
    }

    /// Writes a chain at descriptors 0.. of `table`, each (addr, len,
    /// flags) linked to the next.
    pub(super) fn chain_at(&self, table: u64, descs: &[(u64, u32, u16)]) {
        for (i, &(a, l, f)) in descs.iter().enumerate() {
            let more = if i + 1 < descs.len() { F_NEXT } else { 0 };
            self.desc_at(table, i as u16, a, l, f | more, i as u16 + 1);
        }
    }

    pub(super) fn used_idx(&self) -> u16 {
        let mut b = [0u8; 2];
        self.ram.read(USED + 2, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// Makes `head` available, notifies, and waits for the device.
    pub(super) fn submit(&mut self, head: u16) -> Outcome {
        self.ram
            .write(
                AVAIL + 4 + 2 * u64::from(self.avail % QUEUE_SIZE),
                &head.to_le_bytes(),
            )
            .unwrap();
        self.avail = self.avail.wrapping_add(1);
        self.ram
            .write(AVAIL + 2, &self.avail.to_le_bytes())
            .unwrap();
        self.dev.queue_notify(0);
        self.wait(self.avail)
    }

    /// Waits until the used index is `want` or the device gave up (a hang
    /// guard, not a timing check).
    pub(super) fn wait(&self, want: u16) -> Outcome {
        let start = Instant::now();
        let mut st = self.irq.state.lock().unwrap();
        loop {
            if st.1 {
                return Outcome::NeedsReset;
            }
            if self.used_idx() == want {
                let slot = u64::from(want.wrapping_sub(1) % QUEUE_SIZE);
                let mut e = [0u8; 8];
                self.ram.read(USED + 4 + 8 * slot, &mut e).unwrap();
                return Outcome::Used(u32::from_le_bytes(e[4..8].try_into().unwrap()));
            }
            assert!(start.elapsed() < Duration::from_secs(120), "device hung");
            st = self
                .irq
                .cv
                .wait_timeout(st, Duration::from_millis(20))
                .unwrap()
                .0;
        }
    }

    pub(super) fn header(&self, ty: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.ram.write(HDR, &h).unwrap();
        self.ram.write(STATUS, &[0xff]).unwrap();
    }

    pub(super) fn status(&self) -> u8 {
        let mut s = [0u8];
        self.ram.read(STATUS, &mut s).unwrap();
        s[0]
    }

    pub(super) fn read_ram(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.ram.read(addr, &mut v).unwrap();
        v
    }

    /// A three-descriptor request: header, data (device-writable for
    /// reads, or `out` for writes; none when both are empty), status.
    /// Returns (status, used length, data read).
    pub(super) fn request(
        &mut self,
        ty: u32,
        sector: u64,
        out: &[u8],
        in_len: u32,
    ) -> (u8, u32, Vec<u8>) {
        self.header(ty, sector);
        let mut descs = vec![(HDR, 16, 0)];
        if !out.is_empty() {
            self.ram.write(DATA, out).unwrap();
            descs.push((DATA, out.len() as u32, 0));
        } else if in_len > 0 {
            self.ram.write(DATA, &vec![0xee; in_len as usize]).unwrap();
            descs.push((DATA, in_len, F_WRITE));
        }
        descs.push((STATUS, 1, F_WRITE));
        self.chain_at(DESC, &descs);
        let Outcome::Used(len) = self.submit(0) else {
            panic!("device needs reset");
        };
        (self.status(), len, self.read_ram(DATA, in_len as usize))
    }

    /// Waits for at least `n` interrupts (a hang guard).
    pub(super) fn wait_signals(&self, n: u32) {
        let start = Instant::now();
        let mut st = self.irq.state.lock().unwrap();
        while st.0 < n {
            assert!(start.elapsed() < Duration::from_secs(120), "no interrupt");
            st = self
                .irq
                .cv
                .wait_timeout(st, Duration::from_millis(20))
                .unwrap()
                .0;
        }
    }

    pub(super) fn signals(&self) -> u32 {
        self.irq.state.lock().unwrap().0
    }
}

pub(super) const OK: u8 = VIRTIO_BLK_S_OK as u8;
pub(super) const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
pub(super) const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

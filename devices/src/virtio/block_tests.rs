//! virtio-blk over hand-built rings in a `GuestMemoryMmap` and a temporary
//! image file: every request type, chained and indirect descriptors,
//! malformed chains (each gets a status or NEEDS_RESET, never a panic or
//! a hang), read-only images, the worker's lifecycle.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use virtio_bindings::virtio_blk::*;
use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use super::block::{Block, BlockOptions, CONFIG_LEN, QUEUE_SIZE};
use super::block_image::{self, BlockBackend, CacheMode, ImageOptions};
use super::{feature, Activation, VirtioDevice, VirtioInterrupt};
use crate::dma::GuestRam;

pub(super) const RAM: u64 = 8 << 20;
pub(super) const ROM: (u64, u64) = (RAM - 0x10000, 0x10000);
const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const INDIRECT: u64 = 0x5000;
const HDR: u64 = 0x8000;
const STATUS: u64 = 0x9000;
const DATA: u64 = 0x10000;

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

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
struct Irq {
    state: Mutex<(u32, bool)>,
    cv: Condvar,
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
struct Rig {
    ram: GuestRam,
    dev: Block,
    irq: Arc<Irq>,
    avail: u16,
    _image: Option<TempImage>,
}

/// What the device did with a submitted chain.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// It came back on the used ring with this length.
    Used(u32),
    /// The device asked for a reset instead.
    NeedsReset,
}

impl Rig {
    fn with_backend(backend: Arc<dyn BlockBackend>, opts: &BlockOptions, features: u64) -> Self {
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

    fn new(image: &[u8]) -> Self {
        let img = TempImage::new(image);
        let mut r = Self::open(&img.opts(), &BlockOptions::default());
        r._image = Some(img);
        r
    }

    fn open(opts: &ImageOptions, bopts: &BlockOptions) -> Self {
        let image = block_image::open(opts).unwrap();
        let mut features = feature::VERSION_1 | feature::RING_INDIRECT_DESC;
        features |= Block::new(image.backend.clone(), bopts).device_features();
        Self::with_backend(image.backend, bopts, features)
    }

    fn activate(&mut self, features: u64) {
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

    fn desc_at(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let mut d = [0u8; 16];
        d[0..8].copy_from_slice(&addr.to_le_bytes());
        d[8..12].copy_from_slice(&len.to_le_bytes());
        d[12..14].copy_from_slice(&flags.to_le_bytes());
        d[14..16].copy_from_slice(&next.to_le_bytes());
        self.ram.write(table + u64::from(i) * 16, &d).unwrap();
    }

    /// Writes a chain at descriptors 0.. of `table`, each (addr, len,
    /// flags) linked to the next.
    fn chain_at(&self, table: u64, descs: &[(u64, u32, u16)]) {
        for (i, &(a, l, f)) in descs.iter().enumerate() {
            let more = if i + 1 < descs.len() { F_NEXT } else { 0 };
            self.desc_at(table, i as u16, a, l, f | more, i as u16 + 1);
        }
    }

    fn used_idx(&self) -> u16 {
        let mut b = [0u8; 2];
        self.ram.read(USED + 2, &mut b).unwrap();
        u16::from_le_bytes(b)
    }

    /// Makes `head` available, notifies, and waits for the device.
    fn submit(&mut self, head: u16) -> Outcome {
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
    fn wait(&self, want: u16) -> Outcome {
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

    fn header(&self, ty: u32, sector: u64) {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&ty.to_le_bytes());
        h[8..16].copy_from_slice(&sector.to_le_bytes());
        self.ram.write(HDR, &h).unwrap();
        self.ram.write(STATUS, &[0xff]).unwrap();
    }

    fn status(&self) -> u8 {
        let mut s = [0u8];
        self.ram.read(STATUS, &mut s).unwrap();
        s[0]
    }

    fn read_ram(&self, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0; len];
        self.ram.read(addr, &mut v).unwrap();
        v
    }

    /// A three-descriptor request: header, data (device-writable for
    /// reads, or `out` for writes; none when both are empty), status.
    /// Returns (status, used length, data read).
    fn request(&mut self, ty: u32, sector: u64, out: &[u8], in_len: u32) -> (u8, u32, Vec<u8>) {
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
    fn wait_signals(&self, n: u32) {
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

    fn signals(&self) -> u32 {
        self.irq.state.lock().unwrap().0
    }
}

const OK: u8 = VIRTIO_BLK_S_OK as u8;
const IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

#[test]
fn config_space_and_features() {
    let img = TempImage::new(&pattern(64));
    let image = block_image::open(&img.opts()).unwrap();
    let dev = Block::new(image.backend, &BlockOptions::default());
    let f = dev.device_features();
    for b in [
        VIRTIO_BLK_F_SEG_MAX,
        VIRTIO_BLK_F_BLK_SIZE,
        VIRTIO_BLK_F_FLUSH,
        VIRTIO_BLK_F_DISCARD,
        VIRTIO_BLK_F_WRITE_ZEROES,
    ] {
        assert!(f & (1 << b) != 0, "feature {b}");
    }
    assert_eq!(f & (1 << VIRTIO_BLK_F_RO), 0);
    let mut c = [0u8; CONFIG_LEN + 4];
    dev.read_config(0, &mut c);
    assert_eq!(u64::from_le_bytes(c[0..8].try_into().unwrap()), 64);
    assert_eq!(u32::from_le_bytes(c[12..16].try_into().unwrap()), 254);
    assert_eq!(u32::from_le_bytes(c[20..24].try_into().unwrap()), 512);
    assert_eq!(&c[CONFIG_LEN..], &[0; 4]);
    let mut b = [0xffu8; 4];
    dev.read_config(u64::MAX, &mut b);
    assert_eq!(b, [0; 4]);
    assert_eq!(dev.device_type(), 2);
    assert_eq!(dev.queue_max_sizes(), [QUEUE_SIZE]);
}

#[test]
fn read_and_write_reach_the_file() {
    let mut r = Rig::new(&pattern(16));
    let (st, used, data) = r.request(VIRTIO_BLK_T_IN, 3, &[], 1024);
    assert_eq!((st, used), (OK, 1025));
    assert_eq!(data, &pattern(16)[3 * 512..5 * 512]);
    let new: Vec<u8> = (0..1024).map(|i| (i * 13) as u8).collect();
    let (st, used, _) = r.request(VIRTIO_BLK_T_OUT, 5, &new, 0);
    assert_eq!((st, used), (OK, 1));
    let file = r._image.as_ref().unwrap().bytes();
    assert_eq!(&file[5 * 512..7 * 512], &new[..]);
    assert_eq!(&file[..5 * 512], &pattern(16)[..5 * 512]);
    // And read back through the device.
    let (st, _, data) = r.request(VIRTIO_BLK_T_IN, 5, &[], 1024);
    assert_eq!((st, data), (OK, new));
    // The last sector is in range, one past it is not.
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 15, &[], 512).0, OK);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 16, &[], 512).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 15, &[], 1024).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 16, &[1; 512], 0).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, u64::MAX, &[], 512).0, IOERR);
    assert_eq!(
        r.request(VIRTIO_BLK_T_IN, u64::MAX / 512, &[], 512).0,
        IOERR
    );
    // Not whole sectors.
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 100).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, &[1; 100], 0).0, IOERR);
    assert_eq!(&r._image.as_ref().unwrap().bytes()[..512], &pattern(1)[..]);
    r.wait_signals(1);
}

#[test]
fn flush_get_id_and_unknown_types() {
    let img = TempImage::new(&pattern(8));
    let bopts = BlockOptions {
        serial: Some("hx86-disk-0123456789abcdef".into()),
        ..Default::default()
    };
    let mut r = Rig::open(&img.opts(), &bopts);
    assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, OK);
    let (st, used, id) = r.request(VIRTIO_BLK_T_GET_ID, 0, &[], 20);
    assert_eq!((st, used), (OK, 21));
    assert_eq!(&id, b"hx86-disk-0123456789");
    // A short serial is padded with NULs; a short buffer gets what fits.
    drop(r);
    let mut r = Rig::open(
        &img.opts(),
        &BlockOptions {
            serial: Some("vd0".into()),
            ..Default::default()
        },
    );
    let (_, _, id) = r.request(VIRTIO_BLK_T_GET_ID, 0, &[], 20);
    assert_eq!(&id, b"vd0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0");
    let (st, used, id) = r.request(VIRTIO_BLK_T_GET_ID, 0, &[], 2);
    assert_eq!((st, used, &id[..]), (OK, 3, &b"vd"[..]));
    for ty in [
        VIRTIO_BLK_T_SCSI_CMD,
        VIRTIO_BLK_T_SECURE_ERASE,
        0x7777,
        u32::MAX,
    ] {
        assert_eq!(r.request(ty, 0, &[], 512).0, UNSUPP, "type {ty:#x}");
    }
}

/// DISCARD / WRITE_ZEROES segments.
fn dwz(segs: &[(u64, u32, u32)]) -> Vec<u8> {
    segs.iter()
        .flat_map(|&(s, n, f)| {
            let mut v = s.to_le_bytes().to_vec();
            v.extend_from_slice(&n.to_le_bytes());
            v.extend_from_slice(&f.to_le_bytes());
            v
        })
        .collect()
}

#[test]
fn write_zeroes_and_discard() {
    let mut r = Rig::new(&pattern(64));
    let unmap = VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;
    let req = dwz(&[(2, 3, 0), (40, 8, unmap)]);
    assert_eq!(r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &req, 0).0, OK);
    let file = r._image.as_ref().unwrap().bytes();
    let p = pattern(64);
    assert!(file[2 * 512..5 * 512].iter().all(|&b| b == 0));
    assert!(file[40 * 512..48 * 512].iter().all(|&b| b == 0));
    assert_eq!(&file[..2 * 512], &p[..2 * 512]);
    assert_eq!(&file[5 * 512..40 * 512], &p[5 * 512..40 * 512]);
    assert_eq!(file.len(), p.len());
    let (_, _, data) = r.request(VIRTIO_BLK_T_IN, 40, &[], 4096);
    assert!(data.iter().all(|&b| b == 0));
    // Discard (QEMU's default discard=ignore keeps the data).
    assert_eq!(
        r.request(VIRTIO_BLK_T_DISCARD, 0, &dwz(&[(10, 4, 0)]), 0).0,
        OK
    );
    // Bad ones.
    for (ty, req, want) in [
        (VIRTIO_BLK_T_DISCARD, dwz(&[(10, 4, unmap)]), UNSUPP),
        (VIRTIO_BLK_T_WRITE_ZEROES, dwz(&[(10, 4, 2)]), UNSUPP),
        (VIRTIO_BLK_T_WRITE_ZEROES, dwz(&[(60, 5, 0)]), IOERR),
        (VIRTIO_BLK_T_WRITE_ZEROES, dwz(&[(u64::MAX, 1, 0)]), IOERR),
        (VIRTIO_BLK_T_DISCARD, dwz(&[(0, 1, 0); 17]), UNSUPP),
        (VIRTIO_BLK_T_DISCARD, vec![0; 8], IOERR),
    ] {
        assert_eq!(r.request(ty, 0, &req, 0).0, want, "{ty} {req:?}");
    }
    // Nothing happened for the refused ones.
    assert_eq!(
        &r._image.as_ref().unwrap().bytes()[60 * 512..],
        &p[60 * 512..]
    );
    // Not negotiated: UNSUPP.
    let img = TempImage::new(&pattern(8));
    let image = block_image::open(&img.opts()).unwrap();
    let mut r = Rig::with_backend(image.backend, &BlockOptions::default(), feature::VERSION_1);
    assert_eq!(
        r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &dwz(&[(0, 1, 0)]), 0)
            .0,
        UNSUPP
    );
    assert_eq!(img.bytes(), pattern(8));
}

#[test]
fn discard_unmap_punches_holes() {
    let img = TempImage::new(&pattern(64));
    let mut r = Rig::open(
        &ImageOptions {
            discard_unmap: true,
            ..img.opts()
        },
        &BlockOptions::default(),
    );
    assert_eq!(
        r.request(VIRTIO_BLK_T_DISCARD, 0, &dwz(&[(8, 16, 0)]), 0).0,
        OK
    );
    let file = img.bytes();
    // ext4/xfs/tmpfs punch holes (zeros); elsewhere a discard is a no-op.
    let z = file[8 * 512..24 * 512].iter().all(|&b| b == 0);
    let same = file[8 * 512..24 * 512] == pattern(64)[8 * 512..24 * 512];
    assert!(z || same);
    assert_eq!(&file[..8 * 512], &pattern(8)[..]);
}

#[test]
fn chained_descriptors_in_any_split() {
    let mut r = Rig::new(&pattern(32));
    // Header and data in one readable descriptor, data split oddly.
    r.header(VIRTIO_BLK_T_OUT, 4);
    let data: Vec<u8> = (0..1536).map(|i| (i % 251) as u8).collect();
    let mut hd = r.read_ram(HDR, 16);
    hd.extend_from_slice(&data[..100]);
    r.ram.write(DATA, &hd).unwrap();
    r.ram.write(DATA + 0x1000, &data[100..1000]).unwrap();
    r.ram.write(DATA + 0x3000, &data[1000..]).unwrap();
    r.chain_at(
        DESC,
        &[
            (DATA, 116, 0),
            (DATA + 0x1000, 900, 0),
            (DATA + 0x3000, 536, 0),
            (STATUS, 1, F_WRITE),
        ],
    );
    assert_eq!(r.submit(0), Outcome::Used(1));
    assert_eq!(r.status(), OK);
    assert_eq!(
        &r._image.as_ref().unwrap().bytes()[4 * 512..7 * 512],
        &data[..]
    );
    // Read it back into data pieces with the status byte at the end of
    // the last one.
    r.header(VIRTIO_BLK_T_IN, 4);
    r.chain_at(
        DESC,
        &[
            (HDR, 8, 0),
            (HDR + 8, 8, 0),
            (DATA + 0x10000, 1000, F_WRITE),
            (DATA + 0x20000, 537, F_WRITE),
        ],
    );
    assert_eq!(r.submit(0), Outcome::Used(1537));
    let mut back = r.read_ram(DATA + 0x10000, 1000);
    back.extend(r.read_ram(DATA + 0x20000, 536));
    assert_eq!(back, data);
    assert_eq!(r.read_ram(DATA + 0x20000 + 536, 1), [OK]);
}

#[test]
fn indirect_descriptors() {
    let mut r = Rig::new(&pattern(32));
    r.header(VIRTIO_BLK_T_IN, 2);
    r.chain_at(
        INDIRECT,
        &[
            (HDR, 16, 0),
            (DATA, 512, F_WRITE),
            (DATA + 0x1000, 512, F_WRITE),
            (STATUS, 1, F_WRITE),
        ],
    );
    r.desc_at(DESC, 7, INDIRECT, 4 * 16, F_INDIRECT, 0);
    assert_eq!(r.submit(7), Outcome::Used(1025));
    assert_eq!(r.status(), OK);
    assert_eq!(r.read_ram(DATA, 512), &pattern(32)[2 * 512..3 * 512]);
    assert_eq!(
        r.read_ram(DATA + 0x1000, 512),
        &pattern(32)[3 * 512..4 * 512]
    );
}

#[test]
fn large_requests_cross_the_bounce_buffer() {
    let sectors = 6 << 11; // 6 MiB
    let mut r = Rig::new(&pattern(sectors));
    let len = 3 << 20;
    let (st, used, data) = r.request(VIRTIO_BLK_T_IN, 100, &[], len);
    assert_eq!((st, used), (OK, len + 1));
    assert_eq!(data, &pattern(sectors)[100 * 512..100 * 512 + len as usize]);
    let new: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 7, &new, 0).0, OK);
    assert_eq!(
        &r._image.as_ref().unwrap().bytes()[7 * 512..7 * 512 + len as usize],
        &new[..]
    );
}

#[test]
fn read_only_images() {
    let img = TempImage::new(&pattern(8));
    let mut r = Rig::open(
        &ImageOptions {
            read_only: true,
            ..img.opts()
        },
        &BlockOptions::default(),
    );
    let f = r.dev.device_features();
    assert!(f & (1 << VIRTIO_BLK_F_RO) != 0);
    assert_eq!(
        f & (1 << VIRTIO_BLK_F_DISCARD | 1 << VIRTIO_BLK_F_WRITE_ZEROES),
        0
    );
    assert_eq!(
        r.request(VIRTIO_BLK_T_IN, 1, &[], 512).2,
        &pattern(8)[512..1024]
    );
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 1, &[9; 512], 0).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, OK);
    assert_eq!(
        r.request(VIRTIO_BLK_T_WRITE_ZEROES, 0, &dwz(&[(0, 1, 0)]), 0)
            .0,
        UNSUPP
    );
    assert_eq!(img.bytes(), pattern(8));
}

#[test]
fn cache_modes_read_and_write() {
    for cache in [
        CacheMode::None,
        CacheMode::Directsync,
        CacheMode::Writethrough,
        CacheMode::Unsafe,
    ] {
        let img = TempImage::new(&pattern(64));
        let mut r = Rig::open(
            &ImageOptions {
                cache,
                ..img.opts()
            },
            &BlockOptions::default(),
        );
        let new = vec![0x5a; 4096];
        assert_eq!(r.request(VIRTIO_BLK_T_OUT, 8, &new, 0).0, OK, "{cache:?}");
        assert_eq!(
            r.request(VIRTIO_BLK_T_OUT, 1, &new[..512], 0).0,
            OK,
            "{cache:?}"
        );
        assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, OK);
        assert_eq!(r.request(VIRTIO_BLK_T_IN, 8, &[], 4096).2, new, "{cache:?}");
        assert_eq!(
            r.request(VIRTIO_BLK_T_IN, 0, &[], 1024).2[512..],
            new[..512]
        );
        let file = img.bytes();
        assert_eq!(&file[8 * 512..16 * 512], &new[..], "{cache:?}");
    }
}

/// A backend that counts flushes (FLUSH must reach the image).
struct Counting(Arc<Mutex<u32>>);

impl BlockBackend for Counting {
    fn size(&self) -> u64 {
        1 << 20
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_at(&self, buf: &mut [u8], _off: u64) -> std::io::Result<()> {
        buf.fill(0);
        Ok(())
    }
    fn write_at(&self, _buf: &[u8], _off: u64) -> std::io::Result<()> {
        Err(std::io::Error::other("disk on fire"))
    }
    fn flush(&self) -> std::io::Result<()> {
        *self.0.lock().unwrap() += 1;
        Ok(())
    }
    fn discard(&self, _off: u64, _len: u64) -> std::io::Result<()> {
        Ok(())
    }
    fn write_zeroes(&self, _off: u64, _len: u64, _unmap: bool) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn flush_reaches_the_backend_and_host_errors_are_ioerr() {
    let n = Arc::new(Mutex::new(0));
    let mut r = Rig::with_backend(
        Arc::new(Counting(n.clone())),
        &BlockOptions::default(),
        feature::VERSION_1,
    );
    assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, OK);
    assert_eq!(r.request(VIRTIO_BLK_T_FLUSH, 0, &[], 0).0, OK);
    assert_eq!(*n.lock().unwrap(), 2);
    assert_eq!(r.request(VIRTIO_BLK_T_OUT, 0, &[1; 512], 0).0, IOERR);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, OK);
}

#[test]
fn event_idx_suppresses_interrupts() {
    let img = TempImage::new(&pattern(8));
    let image = block_image::open(&img.opts()).unwrap();
    let features = feature::VERSION_1 | feature::RING_EVENT_IDX;
    let mut r = Rig::with_backend(image.backend, &BlockOptions::default(), features);
    // used_event (after the available ring) = 0: interrupt for the first only.
    // (The device signals after it updates the used index, so each wait
    // is for the signal count; a wrong extra signal shows as a count
    // above the expected one at the next check.)
    let used_event = AVAIL + 4 + 2 * u64::from(QUEUE_SIZE);
    r.ram.write(used_event, &0u16.to_le_bytes()).unwrap();
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    r.wait_signals(1);
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    // used_event = 2: the driver wants to hear when entry 2 is used.
    r.ram.write(used_event, &2u16.to_le_bytes()).unwrap();
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    r.wait_signals(2);
    r.ram.write(used_event, &3u16.to_le_bytes()).unwrap();
    r.request(VIRTIO_BLK_T_IN, 0, &[], 512);
    r.wait_signals(3);
    assert_eq!(r.signals(), 3);
}

/// Submits a malformed chain set up by `setup` on a fresh device and
/// returns what the device did (plus the status byte).
fn malformed(setup: impl FnOnce(&mut Rig) -> u16) -> (Outcome, u8) {
    let mut r = Rig::new(&pattern(16));
    r.header(VIRTIO_BLK_T_IN, 0);
    let head = setup(&mut r);
    let out = r.submit(head);
    let st = r.status();
    // The device keeps working (or works again after a reset).
    if out == Outcome::NeedsReset {
        r.dev.queue_notify(0);
        r.dev.reset();
        r.activate(feature::VERSION_1);
    }
    assert_eq!(
        r.request(VIRTIO_BLK_T_IN, 1, &[], 512).2,
        &pattern(16)[512..1024]
    );
    (out, st)
}

#[test]
fn malformed_chains_get_an_error_or_needs_reset() {
    use Outcome::*;
    let nr = |o: (Outcome, u8)| o.0 == NeedsReset;
    // Header device-writable (no readable part).
    assert!(nr(malformed(|r| {
        r.chain_at(DESC, &[(HDR, 16, F_WRITE), (STATUS, 1, F_WRITE)]);
        0
    })));
    // Status device-readable (no writable part).
    assert!(nr(malformed(|r| {
        r.chain_at(DESC, &[(HDR, 16, 0), (DATA, 512, 0), (STATUS, 1, 0)]);
        0
    })));
    // Header too short.
    assert!(nr(malformed(|r| {
        r.chain_at(DESC, &[(HDR, 8, 0), (STATUS, 1, F_WRITE)]);
        0
    })));
    // Data outside guest RAM; a length that wraps the address space.
    for (addr, len) in [(RAM - 256, 512), (u64::MAX - 100, 512), (1 << 40, 4096)] {
        assert!(nr(malformed(|r| {
            r.chain_at(
                DESC,
                &[(HDR, 16, 0), (addr, len, F_WRITE), (STATUS, 1, F_WRITE)],
            );
            0
        })));
    }
    // Zero length.
    assert!(nr(malformed(|r| {
        r.chain_at(
            DESC,
            &[(HDR, 16, 0), (DATA, 0, F_WRITE), (STATUS, 1, F_WRITE)],
        );
        0
    })));
    // A loop: 0 -> 1 -> 0.
    assert!(nr(malformed(|r| {
        r.desc_at(DESC, 0, HDR, 16, F_NEXT, 1);
        r.desc_at(DESC, 1, STATUS, 1, F_NEXT | F_WRITE, 0);
        0
    })));
    // NEXT beyond the table; a head beyond the queue size.
    assert!(nr(malformed(|r| {
        r.desc_at(DESC, 0, HDR, 16, F_NEXT, QUEUE_SIZE + 5);
        0
    })));
    assert!(nr(malformed(|_| QUEUE_SIZE + 1)));
    // An indirect table of a length that is not whole descriptors, one
    // outside RAM, and one that nests another.
    for (addr, len) in [(INDIRECT, 20), (RAM + 0x1000, 64)] {
        assert!(nr(malformed(|r| {
            r.desc_at(DESC, 0, addr, len, F_INDIRECT, 0);
            0
        })));
    }
    assert!(nr(malformed(|r| {
        r.desc_at(INDIRECT, 0, HDR, 16, F_NEXT, 1);
        r.desc_at(INDIRECT, 1, INDIRECT, 32, F_INDIRECT, 0);
        r.desc_at(DESC, 0, INDIRECT, 32, F_INDIRECT, 0);
        0
    })));
    // Data into ROM: the request fails with IOERR, the device goes on.
    assert_eq!(
        malformed(|r| {
            r.chain_at(
                DESC,
                &[(HDR, 16, 0), (ROM.0, 512, F_WRITE), (STATUS, 1, F_WRITE)],
            );
            0
        }),
        (Used(1), IOERR)
    );
    // The status byte in ROM: nowhere to report.
    assert!(nr(malformed(|r| {
        r.chain_at(
            DESC,
            &[(HDR, 16, 0), (DATA, 512, F_WRITE), (ROM.0, 1, F_WRITE)],
        );
        0
    })));
}

#[test]
fn avail_index_beyond_the_queue_size_needs_reset() {
    let mut r = Rig::new(&pattern(4));
    r.ram
        .write(AVAIL + 2, &(QUEUE_SIZE + 3).to_le_bytes())
        .unwrap();
    r.dev.queue_notify(0);
    assert_eq!(r.wait(1), Outcome::NeedsReset);
    // Notifies after that are ignored; a reset brings it back.
    r.dev.queue_notify(0);
    r.dev.reset();
    r.activate(feature::VERSION_1);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, OK);
}

#[test]
fn reset_and_drop_stop_the_worker() {
    let mut r = Rig::new(&pattern(4));
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, OK);
    r.dev.reset();
    // A notify after reset does nothing (no worker): no used entry.
    r.ram.write(AVAIL + 4, &0u16.to_le_bytes()).unwrap();
    r.ram.write(AVAIL + 2, &2u16.to_le_bytes()).unwrap();
    r.dev.queue_notify(0);
    assert_eq!(r.used_idx(), 1);
    r.dev.reset();
    // Activated again (fresh rings), it serves again.
    r.activate(feature::VERSION_1);
    assert_eq!(r.request(VIRTIO_BLK_T_IN, 0, &[], 512).0, OK);
    drop(r);
}

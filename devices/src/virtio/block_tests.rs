//! virtio-blk over hand-built rings in a `GuestMemoryMmap` and a temporary
//! image file: every request type, chained and indirect descriptors,
//! read-only images, cache modes. (Malformed chains, EVENT_IDX and the
//! worker's lifecycle: `block_malformed_tests.rs`.)

use std::sync::{Arc, Mutex};

use virtio_bindings::virtio_blk::*;

use super::block::{Block, BlockOptions, CONFIG_LEN, QUEUE_SIZE};
use super::block_image::{self, BlockBackend, CacheMode, ImageOptions};
use super::block_rig::*;
use super::{feature, VirtioDevice};

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

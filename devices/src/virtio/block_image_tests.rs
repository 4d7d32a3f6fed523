//! Disk images: the format probe, QEMU-style locks, `-snapshot`'s overlay.

use super::block_image::{open, ImageError, ImageOptions};
use super::block_rig::{pattern, TempImage};

fn err(opts: &ImageOptions) -> String {
    open(opts).map(|_| ()).unwrap_err().to_string()
}

#[test]
fn formats_are_probed_and_qcow2_refused() {
    let mut q = b"QFI\xfb\0\0\0\x03".to_vec();
    q.resize(4096, 0);
    let img = TempImage::new(&q);
    let probe = ImageOptions {
        format_raw: false,
        ..img.opts()
    };
    let e = err(&probe);
    assert!(
        e.contains("qcow2") && e.contains("qemu-img convert -O raw"),
        "{e}"
    );
    assert!(matches!(open(&probe), Err(ImageError::Qcow2 { .. })));
    // format=raw given: the bytes as they are, with a warning.
    let i = open(&img.opts()).unwrap();
    assert!(
        i.warnings.iter().any(|w| w.contains("looks like a qcow2")),
        "{:?}",
        i.warnings
    );
    drop(i);
    let mut v = b"KDMV".to_vec();
    v.resize(1024, 0);
    let vmdk = TempImage::new(&v);
    assert!(err(&ImageOptions {
        format_raw: false,
        ..vmdk.opts()
    })
    .contains("vmdk image"));
    // A raw image probed: QEMU's warning.
    let raw = TempImage::new(&pattern(4));
    let i = open(&ImageOptions {
        format_raw: false,
        ..raw.opts()
    })
    .unwrap();
    assert!(
        i.warnings.iter().any(|w| w.contains("probing guessed raw")),
        "{:?}",
        i.warnings
    );
    assert_eq!(i.backend.size(), 2048);
    // Missing files and directories.
    let e = err(&ImageOptions {
        path: "/nonexistent/disk.img".into(),
        ..raw.opts()
    });
    assert!(e.contains("Could not open '/nonexistent/disk.img'"), "{e}");
    assert!(err(&ImageOptions {
        path: "/".into(),
        ..raw.opts()
    })
    .contains("Could not open"));
}

#[test]
fn odd_sizes_round_down_with_a_warning() {
    let img = TempImage::new(&[7; 1000]);
    let i = open(&img.opts()).unwrap();
    assert_eq!(i.backend.size(), 512);
    assert!(i
        .warnings
        .iter()
        .any(|w| w.contains("not a multiple of 512")));
}

#[test]
fn a_second_user_is_refused_as_qemu_does() {
    let img = TempImage::new(&pattern(4));
    let rw = img.opts();
    let ro = ImageOptions {
        read_only: true,
        ..img.opts()
    };
    let snap = ImageOptions {
        snapshot: true,
        ..img.opts()
    };
    {
        let _a = open(&rw).unwrap();
        let e = err(&rw);
        assert!(e.contains("Failed to get \"write\" lock"), "{e}");
        let e = err(&ro);
        assert!(e.contains("Failed to get shared \"write\" lock"), "{e}");
        assert!(err(&snap).contains("lock"));
    }
    {
        // Readers share; a writer is refused while they run.
        let _a = open(&ro).unwrap();
        let _b = open(&ro).unwrap();
        let _c = open(&snap).unwrap();
        assert!(err(&rw).contains("Failed to get \"write\" lock"));
    }
    // All closed: free again.
    drop(open(&rw).unwrap());
}

#[test]
fn snapshot_writes_go_to_the_overlay_only() {
    let img = TempImage::new(&pattern(32));
    let opts = ImageOptions {
        snapshot: true,
        ..img.opts()
    };
    let i = open(&opts).unwrap();
    let b = &i.backend;
    assert!(!b.read_only());
    b.write_at(&[0xaa; 1024], 3 * 512).unwrap();
    b.write_zeroes(10 * 512, 2048, true).unwrap();
    b.discard(20 * 512, 512).unwrap();
    b.flush().unwrap();
    let mut buf = vec![0; 16 * 512];
    b.read_at(&mut buf, 0).unwrap();
    let p = pattern(32);
    assert_eq!(&buf[..3 * 512], &p[..3 * 512]);
    assert!(buf[3 * 512..5 * 512].iter().all(|&x| x == 0xaa));
    assert_eq!(&buf[5 * 512..10 * 512], &p[5 * 512..10 * 512]);
    assert!(buf[10 * 512..14 * 512].iter().all(|&x| x == 0));
    assert_eq!(&buf[14 * 512..], &p[14 * 512..16 * 512]);
    drop(i);
    assert_eq!(img.bytes(), p, "the image changed under -snapshot");
    // snapshot + readonly: no writes at all.
    let i = open(&ImageOptions {
        read_only: true,
        ..opts
    })
    .unwrap();
    assert!(i.backend.read_only());
    assert!(i.backend.write_at(&[1; 512], 0).is_err());
}

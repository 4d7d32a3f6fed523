//! Disks: `-drive`, `-snapshot` and `-device virtio-blk-pci,drive=ID`.
//!
//! `-drive file=F[,format=raw][,if=virtio|none][,id=ID][,readonly=on]
//! [,cache=writeback|writethrough|none|directsync|unsafe][,snapshot=on]
//! [,discard=ignore|unmap][,media=disk][,aio=threads]`: an `if=virtio`
//! drive becomes a virtio-blk-pci device by itself; an `if=none` drive
//! waits for a `-device virtio-blk-pci,drive=ID[,serial=S][,addr=...]`.
//! Values follow QEMU's option syntax (`,,` is a comma inside a value).

use anyhow::{bail, Context, Result};
use devices::virtio::block::BlockOptions;
use devices::virtio::block_image::{CacheMode, ImageOptions};

use super::warn;
use super::DeviceConfig;

/// A parsed `-drive`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drive {
    pub id: String,
    pub image: ImageOptions,
    /// `if=virtio`: a virtio-blk-pci device of its own.
    pub virtio: bool,
    /// The option as given, for messages.
    pub spec: String,
}

/// A virtio-blk-pci device.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlkDevice {
    /// PCI `SLOT.FN` (`None`: the next free slot).
    pub addr: Option<(u8, u8)>,
    /// The `-drive` ID it uses.
    pub drive: Option<String>,
    /// The image (from the drive, filled in by [`resolve`]).
    pub image: ImageOptions,
    /// The `-drive` option, for messages.
    pub drive_spec: String,
    pub block: BlockOptions,
}

/// QEMU's booleans.
pub(super) fn on_off(what: &str, k: &str, v: &str) -> Result<bool> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => bail!("{what}: {k}={v}: expected on or off"),
    }
}

const DRIVE_KEYS: &str = "file, format, if, id, readonly, cache, snapshot, discard, media, aio";

/// Parses one `-drive`; `snapshot`: `-snapshot` was given; `seq`: how
/// many drives came before (for QEMU's default IDs).
pub fn parse_drive(spec: &str, snapshot: bool, seq: usize) -> Result<Drive> {
    let what = format!("-drive {spec}");
    let mut image = ImageOptions {
        snapshot,
        ..Default::default()
    };
    let (mut file, mut id, mut iface) = (None, None, None);
    // `,,` is a comma inside a value, as in QEMU.
    for (k, v) in crate::chardev::split_props(spec) {
        if k.is_empty() && v.is_none() {
            continue;
        }
        let Some(v) = v else {
            bail!("{what}: expected PROP=VALUE, got '{k}'");
        };
        let (k, v) = (k.as_str(), v.as_str());
        match k {
            "file" if !v.is_empty() => file = Some(v.to_string()),
            "file" => bail!("{what}: file= is empty"),
            "format" => match v {
                "raw" => image.format_raw = true,
                "qcow2" => bail!(
                    "{what}: format=qcow2 is not supported: hx86 reads raw images; convert with `qemu-img convert -O raw IMAGE.qcow2 IMAGE.raw`"
                ),
                _ => bail!("{what}: format={v} is not supported: hx86 reads raw images (`qemu-img convert -O raw` converts others)"),
            },
            "if" => iface = Some(v.to_string()),
            "id" if !v.is_empty() => id = Some(v.to_string()),
            "id" => bail!("{what}: id= is empty"),
            "readonly" | "read-only" => image.read_only = on_off(&what, k, v)?,
            "cache" => {
                image.cache = CacheMode::parse(v).with_context(|| {
                    format!("{what}: cache={v}: expected writeback, writethrough, none, directsync or unsafe")
                })?
            }
            // -snapshot applies to every drive; snapshot=on to this one.
            "snapshot" => image.snapshot |= on_off(&what, k, v)?,
            "discard" => {
                image.discard_unmap = match v {
                    "ignore" | "off" => false,
                    "unmap" | "on" => true,
                    _ => bail!("{what}: discard={v}: expected ignore or unmap"),
                }
            }
            "media" if v == "disk" => {}
            "media" => bail!("{what}: media={v}: hx86 has no CD-ROM drive (only media=disk)"),
            "aio" if v == "threads" => {}
            "aio" if matches!(v, "native" | "io_uring") => warn(&format!(
                "{what}: aio={v} ignored: hx86 does disk I/O on a thread per device"
            )),
            "aio" => bail!("{what}: aio={v}: expected threads, native or io_uring"),
            _ => bail!("{what}: unknown property '{k}' (hx86's -drive takes {DRIVE_KEYS})"),
        }
    }
    let Some(file) = file else {
        bail!("{what}: no file= (hx86 has no removable media: a drive needs an image)");
    };
    image.path = file.into();
    let virtio = match iface.as_deref() {
        Some("virtio") => true,
        Some("none") => false,
        None => {
            warn(&format!(
                "{what}: no if= given: hx86 has no IDE controller, the drive is a virtio disk (if=virtio; Linux calls it /dev/vda)"
            ));
            true
        }
        Some(i @ ("ide" | "scsi" | "floppy" | "pflash" | "mtd" | "sd" | "xen")) => bail!(
            "{what}: if={i} is not supported: hx86's disks are virtio (use if=virtio, or if=none with -device virtio-blk-pci,drive=ID)"
        ),
        Some(i) => bail!("{what}: if={i}: expected virtio or none"),
    };
    let id = id.unwrap_or_else(|| format!("{}{seq}", if virtio { "virtio" } else { "none" }));
    Ok(Drive {
        id,
        image,
        virtio,
        spec: spec.to_string(),
    })
}

/// A virtio-blk-pci property of its own (the transport's, `addr`,
/// `bus`..., are `devices.rs`'s); `Ok(false)`: not one of them.
pub fn blk_prop(what: &str, dev: &mut BlkDevice, k: &str, v: &str) -> Result<bool> {
    match k {
        "drive" => dev.drive = Some(v.to_string()),
        "serial" => dev.block.serial = Some(v.to_string()),
        "discard" => dev.block.discard = on_off(what, k, v)?,
        "write-zeroes" => dev.block.write_zeroes = on_off(what, k, v)?,
        "num-queues" if v == "1" => {}
        "num-queues" => bail!("{what}: num-queues={v}: hx86's virtio-blk has one queue"),
        "logical_block_size" | "physical_block_size" if v == "512" => {}
        "logical_block_size" | "physical_block_size" => {
            bail!("{what}: {k}={v}: hx86's virtio-blk has 512-byte blocks")
        }
        // No firmware boots from it: the order does not matter.
        "bootindex" => {}
        _ => return Ok(false),
    }
    Ok(true)
}

/// Gives each virtio-blk-pci device its drive's image, and adds a device
/// for each `if=virtio` drive. Each drive serves one device.
pub fn resolve(drives: &[Drive], devs: &mut Vec<DeviceConfig>) -> Result<()> {
    for (i, d) in drives.iter().enumerate() {
        if drives[..i].iter().any(|e| e.id == d.id) {
            bail!("-drive {}: Duplicate ID '{}' for drive", d.spec, d.id);
        }
    }
    let mut used = vec![false; drives.len()];
    for dev in devs.iter_mut() {
        let DeviceConfig::VirtioBlk(b) = dev else {
            continue;
        };
        let Some(id) = &b.drive else {
            bail!("-device virtio-blk-pci: drive property not set (give drive=ID of a -drive if=none,id=ID,file=...)");
        };
        let Some(i) = drives.iter().position(|d| &d.id == id) else {
            bail!("-device virtio-blk-pci,drive={id}: drive '{id}' not found (define it with -drive if=none,id={id},file=...)");
        };
        if drives[i].virtio {
            bail!("-device virtio-blk-pci,drive={id}: drive '{id}' is already in use: it has if=virtio (did you need if=none in the drive options?)");
        }
        if used[i] {
            bail!("-device virtio-blk-pci,drive={id}: drive '{id}' is already in use by another device");
        }
        used[i] = true;
        b.image = drives[i].image.clone();
        b.drive_spec = drives[i].spec.clone();
    }
    for d in drives.iter().filter(|d| d.virtio) {
        devs.push(DeviceConfig::VirtioBlk(Box::new(BlkDevice {
            drive: Some(d.id.clone()),
            image: d.image.clone(),
            drive_spec: d.spec.clone(),
            ..Default::default()
        })));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drive(spec: &str) -> Result<Drive> {
        parse_drive(spec, false, 0)
    }

    #[test]
    fn drives_in_qemus_syntax() {
        let d = drive("file=disk.img,format=raw,if=virtio").unwrap();
        assert!(d.virtio);
        assert_eq!(d.id, "virtio0");
        assert_eq!(d.image.path.to_str(), Some("disk.img"));
        assert!(d.image.format_raw && !d.image.read_only && !d.image.snapshot);
        assert_eq!(d.image.cache, CacheMode::Writeback);
        let d = drive("if=none,id=hd0,file=a,,b.img,readonly=on,cache=none,snapshot=on,discard=unmap,media=disk,aio=threads").unwrap();
        assert!(!d.virtio);
        assert_eq!(d.id, "hd0");
        assert_eq!(d.image.path.to_str(), Some("a,b.img"));
        assert!(d.image.read_only && d.image.snapshot && d.image.discard_unmap);
        assert!(!d.image.format_raw);
        assert_eq!(d.image.cache, CacheMode::None);
        assert!(
            parse_drive("file=x,if=virtio", true, 3)
                .unwrap()
                .image
                .snapshot
        );
        assert_eq!(parse_drive("file=x,if=none", true, 3).unwrap().id, "none3");
        // No if=: a virtio disk (with a warning).
        assert!(drive("file=x").unwrap().virtio);
    }

    #[test]
    fn bad_drives_fail_clearly() {
        for (spec, msg) in [
            ("file=x,if=ide", "if=ide is not supported"),
            ("file=x,if=scsi", "use if=virtio"),
            ("file=x,if=bogus", "expected virtio or none"),
            ("file=x,format=qcow2", "qemu-img convert -O raw"),
            ("file=x,format=vmdk", "format=vmdk is not supported"),
            ("if=virtio", "no file="),
            ("file=x,cache=fast", "cache=fast"),
            ("file=x,readonly=maybe", "expected on or off"),
            ("file=x,media=cdrom", "no CD-ROM"),
            ("file=x,werror=stop", "unknown property 'werror'"),
            ("file=x,junk", "expected PROP=VALUE"),
        ] {
            let e = drive(spec).unwrap_err().to_string();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }

    fn blk(drive: &str) -> DeviceConfig {
        DeviceConfig::VirtioBlk(Box::new(BlkDevice {
            drive: Some(drive.into()),
            ..Default::default()
        }))
    }

    #[test]
    fn devices_find_their_drives() {
        let drives = [
            drive("if=none,id=a,file=a.img").unwrap(),
            drive("if=virtio,file=b.img").unwrap(),
        ];
        let mut devs = vec![blk("a")];
        resolve(&drives, &mut devs).unwrap();
        assert_eq!(devs.len(), 2);
        let DeviceConfig::VirtioBlk(b) = &devs[1] else {
            panic!()
        };
        assert_eq!(b.image.path.to_str(), Some("b.img"));
        let DeviceConfig::VirtioBlk(a) = &devs[0] else {
            panic!()
        };
        assert_eq!(a.image.path.to_str(), Some("a.img"));
        for (devs, msg) in [
            (vec![blk("nope")], "drive 'nope' not found"),
            (vec![blk("a"), blk("a")], "already in use by another device"),
            (vec![blk("virtio0")], "did you need if=none"),
            (
                vec![DeviceConfig::VirtioBlk(Box::default())],
                "drive property not set",
            ),
        ] {
            let mut devs = devs;
            let e = resolve(&drives, &mut devs).unwrap_err().to_string();
            assert!(e.contains(msg), "{e}");
        }
        let dup = [drive("id=x,file=1").unwrap(), drive("id=x,file=2").unwrap()];
        assert!(resolve(&dup, &mut Vec::new())
            .unwrap_err()
            .to_string()
            .contains("Duplicate ID 'x'"));
    }

    #[test]
    fn device_properties() {
        let mut b = BlkDevice::default();
        let w = "-device virtio-blk-pci";
        assert!(blk_prop(w, &mut b, "drive", "d0").unwrap());
        assert!(blk_prop(w, &mut b, "serial", "SN1").unwrap());
        assert!(blk_prop(w, &mut b, "discard", "off").unwrap());
        assert!(blk_prop(w, &mut b, "bootindex", "1").unwrap());
        assert!(!blk_prop(w, &mut b, "frob", "1").unwrap());
        assert!(blk_prop(w, &mut b, "num-queues", "4").is_err());
        assert_eq!(b.drive.as_deref(), Some("d0"));
        assert_eq!(b.block.serial.as_deref(), Some("SN1"));
        assert!(!b.block.discard && b.block.write_zeroes);
    }
}

//! Debian's kernel under the DBT with its root file system on a virtio-blk
//! disk: an ext4 image built here with `mke2fs -d` from a busybox tree
//! (whose /sbin/init runs a shell on the console). The initramfs of
//! scripts/linux-guest.sh loads the virtio and ext4 modules
//! (`hx86.virtio`) and switches to the disk (`hx86.root=/dev/vda`).
//!
//! Boot 1 writes files, `sync`s and powers off; the host reads them back
//! out of the image with debugfs, byte for byte. Boot 2, under
//! `-snapshot`, reads them back in the guest, changes the disk, and the
//! image's bytes are the same afterwards.
//!
//! Skips (with a note) without Debian's package registry or mke2fs, unless
//! HX86_REQUIRE_LINUX=1 (set by .ci/run).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::linux::{boot_and_drive, guest, tail_of, BOOT_TIMEOUT, ONE_AT_A_TIME};

fn mke2fs() -> Option<PathBuf> {
    ["/sbin/mke2fs", "/usr/sbin/mke2fs"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The root file system's /sbin/init.
const INIT: &str = "#!/bin/sh\n\
export PATH=/bin:/sbin\n\
mount -t proc proc /proc\n\
mount -t devtmpfs devtmpfs /dev 2>/dev/null\n\
echo \"HX86-GUEST-READY root=$(grep ' / ' /proc/mounts | head -1)\"\n\
setsid sh -c 'exec sh </dev/ttyS0 >/dev/ttyS0 2>&1' || sh\n\
poweroff -f\n";

/// Builds `dir/root.img` (ext4, 32 MiB) from a busybox tree.
fn build_image(dir: &Path, busybox: &Path) -> PathBuf {
    let tree = dir.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    for d in ["bin", "sbin", "proc", "dev", "tmp", "etc"] {
        std::fs::create_dir_all(tree.join(d)).unwrap();
    }
    std::fs::copy(busybox, tree.join("bin/busybox")).unwrap();
    for app in [
        "sh", "cat", "echo", "mount", "umount", "md5sum", "sync", "poweroff", "seq", "rm", "ls",
        "grep", "head", "setsid", "dd", "stat",
    ] {
        std::os::unix::fs::symlink("busybox", tree.join("bin").join(app)).unwrap();
    }
    let init = tree.join("sbin/init");
    std::fs::write(&init, INIT).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
    let img = dir.join("root.img");
    let _ = std::fs::remove_file(&img);
    let out = Command::new(mke2fs().unwrap())
        .args([
            "-q",
            "-F",
            "-t",
            "ext4",
            "-L",
            "hx86root",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(&tree)
        .arg(&img)
        .arg("32M")
        .output()
        .expect("mke2fs");
    assert!(
        out.status.success(),
        "mke2fs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    img
}

/// Boots with root on `img` (`extra` options added), sends `commands`
/// to the root's shell; returns (exit status, console output).
fn boot(
    g: &common::linux::Guest,
    img: &Path,
    extra: &[&str],
    commands: &str,
) -> (Option<i32>, String) {
    let drive = format!("file={},format=raw,if=virtio", img.display());
    let mut args = vec!["-drive", &drive];
    args.extend_from_slice(extra);
    boot_and_drive(
        "dbt",
        g,
        &args,
        "hx86.virtio hx86.root=/dev/vda",
        commands,
        BOOT_TIMEOUT,
    )
}

/// What `seq 1 N` prints.
fn seq(n: u32) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

/// A file out of the ext4 image, read on the host by debugfs.
fn debugfs_cat(img: &Path, path: &str) -> Vec<u8> {
    let bin = ["/sbin/debugfs", "/usr/sbin/debugfs"]
        .iter()
        .find(|p| Path::new(p).exists())
        .expect("debugfs (e2fsprogs)");
    let out = Command::new(bin)
        .args(["-R", &format!("cat {path}")])
        .arg(img)
        .stderr(Stdio::null())
        .output()
        .expect("debugfs");
    out.stdout
}

#[test]
fn debian_linux_root_on_virtio_blk_keeps_its_writes_and_snapshot_leaves_the_image_alone() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let Some(g) = guest() else { return };
    if mke2fs().is_none() {
        let msg = "no mke2fs (e2fsprogs) to build the ext4 image";
        if std::env::var("HX86_REQUIRE_LINUX").as_deref() == Ok("1") {
            panic!("{msg}");
        }
        eprintln!("note: skipping the virtio-blk Linux test: {msg}");
        return;
    }
    let dir = common::scratch("linux-blk");
    let img = build_image(&dir, &g.dir.join("busybox"));
    let data = seq(30000);

    // Boot 1: write, sync, power off.
    let cmds = "seq 1 30000 > /data.txt\n\
        echo hello-from-vda > /hello\n\
        sync\n\
        echo \"SUM $(md5sum /data.txt)\"\n\
        poweroff -f\n";
    let (status, out) = boot(&g, &img, &[], cmds);
    let t = tail_of(&out);
    assert!(
        out.contains("HX86-GUEST-READY root=/dev/vda / ext4 rw"),
        "root is not the virtio disk\n{t}"
    );
    assert_eq!(status, Some(0), "poweroff -f should end hx86 with 0\n{t}");
    // The host sees the guest's bytes in the image.
    assert_eq!(
        String::from_utf8_lossy(&debugfs_cat(&img, "/data.txt")),
        data,
        "/data.txt in the image\n{t}"
    );
    assert_eq!(debugfs_cat(&img, "/hello"), b"hello-from-vda\n");
    let sum = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("SUM "))
        .map(|s| s.split_whitespace().next().unwrap_or("").to_string())
        .unwrap_or_default();
    assert_eq!(sum.len(), 32, "md5sum printed nothing\n{t}");

    // Boot 2 under -snapshot: the guest reads boot 1's files back, changes
    // the disk, syncs; the image stays as it was.
    let before = std::fs::read(&img).unwrap();
    let cmds = "cat /hello\n\
        echo \"SUM2 $(md5sum /data.txt)\"\n\
        rm /hello\n\
        seq 1 5000 > /snap.txt\n\
        sync\n\
        echo \"SNAP $(cat /snap.txt | md5sum) $(ls /hello 2>&1 | grep -c 'No such')\"\n\
        poweroff -f\n";
    let (status, out) = boot(&g, &img, &["-snapshot"], cmds);
    let t = tail_of(&out);
    assert_eq!(status, Some(0), "-snapshot boot\n{t}");
    assert!(
        out.lines().any(|l| l.trim() == "hello-from-vda"),
        "/hello lost\n{t}"
    );
    assert!(
        out.contains(&format!("SUM2 {sum}  /data.txt")),
        "/data.txt changed between boots\n{t}"
    );
    let snap_line = out
        .lines()
        .find(|l| l.trim_start().starts_with("SNAP "))
        .unwrap_or("");
    assert!(
        snap_line.trim().ends_with(" 1"),
        "the guest's own writes under -snapshot\n{t}"
    );
    let after = std::fs::read(&img).unwrap();
    assert!(before == after, "-snapshot changed the image");
    assert_eq!(debugfs_cat(&img, "/hello"), b"hello-from-vda\n");
}

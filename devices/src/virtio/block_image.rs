//! Disk images behind virtio-blk: the [`BlockBackend`] trait, raw image
//! files ([`RawFile`]: pread/pwrite, the cache modes, QEMU's advisory
//! locks), the format probe (qcow2 and other formats refused), and the
//! `-snapshot` overlay (`block_overlay.rs`).
//!
//! Every access a backend sees is in whole 512-byte sectors inside the
//! image: the device checks requests against [`BlockBackend::size`] first.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use thiserror::Error;

pub use super::block_overlay::Overlay;

/// The virtio-blk sector.
pub const SECTOR: u64 = 512;

/// What a disk image offers the device.
pub trait BlockBackend: Send + Sync {
    /// Its size in bytes (a multiple of [`SECTOR`]).
    fn size(&self) -> u64;
    /// Writes are refused.
    fn read_only(&self) -> bool;
    /// Fills `buf` from byte `off`.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes `buf` at byte `off`.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Makes what was written durable (as the cache mode says).
    fn flush(&self) -> io::Result<()>;
    /// The guest no longer needs `len` bytes at `off` (may do nothing).
    fn discard(&self, off: u64, len: u64) -> io::Result<()>;
    /// `len` bytes at `off` read as zeros afterwards; `unmap`: the space
    /// may be deallocated.
    fn write_zeroes(&self, off: u64, len: u64, unmap: bool) -> io::Result<()>;
}

/// QEMU's `cache=` modes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CacheMode {
    /// The host page cache, flush = fdatasync (QEMU's default).
    #[default]
    Writeback,
    /// The host page cache, every write followed by fdatasync.
    Writethrough,
    /// O_DIRECT (bypassing the host page cache), flush = fdatasync.
    None,
    /// O_DIRECT and fdatasync after every write.
    Directsync,
    /// The host page cache, flush does nothing.
    Unsafe,
}

impl CacheMode {
    /// Parses QEMU's spelling.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "writeback" => Self::Writeback,
            "writethrough" => Self::Writethrough,
            "none" | "off" => Self::None,
            "directsync" => Self::Directsync,
            "unsafe" => Self::Unsafe,
            _ => return None,
        })
    }
    fn direct(self) -> bool {
        matches!(self, Self::None | Self::Directsync)
    }
    fn sync_writes(self) -> bool {
        matches!(self, Self::Writethrough | Self::Directsync)
    }
}

/// How to open an image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImageOptions {
    pub path: PathBuf,
    /// `format=raw` given; `false`: probe (as QEMU: raw, with a warning).
    pub format_raw: bool,
    pub read_only: bool,
    pub cache: CacheMode,
    /// Writes go to a throw-away overlay; the image is opened read-only.
    pub snapshot: bool,
    /// `discard=unmap`: guest discards punch holes (QEMU's default,
    /// `ignore`, drops them).
    pub discard_unmap: bool,
}

/// Why an image cannot be used.
#[derive(Debug, Error)]
pub enum ImageError {
    #[error("Could not open '{path}': {source}")]
    Open { path: String, source: io::Error },
    #[error("'{path}' is a qcow2 image: hx86 reads raw images only; convert it with `qemu-img convert -O raw {path} {path}.raw` and use file={path}.raw,format=raw")]
    Qcow2 { path: String },
    #[error("'{path}' is a {format} image: hx86 reads raw images only; convert it with `qemu-img convert -O raw {path} {path}.raw`")]
    OtherFormat { path: String, format: &'static str },
    #[error("Failed to get {kind}\"write\" lock: is another process (hx86, QEMU) using the image '{path}'?")]
    Locked { path: String, kind: &'static str },
    #[error("'{path}': {what}: {source}")]
    Io {
        path: String,
        what: &'static str,
        source: io::Error,
    },
}

/// An opened image, with the warnings to show the user.
pub struct Image {
    pub backend: Arc<dyn BlockBackend>,
    pub warnings: Vec<String>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("size", &self.backend.size())
            .field("read_only", &self.backend.read_only())
            .field("warnings", &self.warnings)
            .finish()
    }
}

/// Image formats recognised by their magic (all refused but raw).
fn probe_format(head: &[u8]) -> Option<&'static str> {
    const MAGICS: &[(&[u8], &str)] = &[
        (b"QFI\xfb", "qcow2"),
        (b"KDMV", "vmdk"),
        (b"QED\0", "qed"),
        (b"vhdxfile", "vhdx"),
        (b"conectix", "vpc"),
    ];
    MAGICS
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|&(_, f)| f)
}

/// Opens an image as `opts` says.
pub fn open(opts: &ImageOptions) -> Result<Image, ImageError> {
    let path = opts.path.display().to_string();
    let io_err = |what, source| ImageError::Io {
        path: path.clone(),
        what,
        source,
    };
    let mut warnings = Vec::new();
    // -snapshot: the image itself is only read.
    let file_ro = opts.read_only || opts.snapshot;
    let file = OpenOptions::new()
        .read(true)
        .write(!file_ro)
        .open(&opts.path)
        .map_err(|source| ImageError::Open {
            path: path.clone(),
            source,
        })?;
    let meta = file.metadata().map_err(|e| io_err("stat", e))?;
    if meta.is_dir() {
        return Err(ImageError::Open {
            path,
            source: io::Error::from_raw_os_error(libc::EISDIR),
        });
    }
    let mut head = [0u8; 8];
    let n = read_head(&file, &mut head).map_err(|e| io_err("read", e))?;
    match (probe_format(&head[..n]), opts.format_raw) {
        (Some("qcow2"), false) => return Err(ImageError::Qcow2 { path }),
        (Some(format), false) => return Err(ImageError::OtherFormat { path, format }),
        (Some(format), true) => warnings.push(format!(
            "'{path}' looks like a {format} image but format=raw was given: the guest sees the {format} file's bytes"
        )),
        (None, true) => {}
        (None, false) => warnings.push(format!(
            "Image format was not specified for '{path}' and probing guessed raw: specify format=raw explicitly"
        )),
    }
    lock(&file, !file_ro, &path, &mut warnings)?;
    let len = block_size(&file, &meta).map_err(|e| io_err("size", e))?;
    if len % SECTOR != 0 {
        warnings.push(format!(
            "'{path}': size {len} is not a multiple of 512: the last {} bytes are not visible to the guest",
            len % SECTOR
        ));
    }
    let direct = if opts.cache.direct() {
        match open_direct(&opts.path, file_ro) {
            Ok(d) => Some(d),
            Err(e) => {
                warnings.push(format!(
                    "'{path}': cache=none needs O_DIRECT, which this file system refuses ({e}): using the host page cache"
                ));
                None
            }
        }
    } else {
        None
    };
    let raw = RawFile {
        file,
        direct,
        direct_failed: AtomicBool::new(false),
        size: len - len % SECTOR,
        read_only: opts.read_only,
        cache: opts.cache,
        discard_unmap: opts.discard_unmap,
    };
    let backend: Arc<dyn BlockBackend> = if opts.snapshot {
        Arc::new(
            Overlay::new(Box::new(raw), opts.read_only)
                .map_err(|e| io_err("snapshot overlay", e))?,
        )
    } else {
        Arc::new(raw)
    };
    Ok(Image { backend, warnings })
}

fn read_head(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The image's size: the file's, or a block device's.
fn block_size(file: &File, meta: &std::fs::Metadata) -> io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    if meta.file_type().is_file() {
        return Ok(meta.len());
    }
    let mut f = file;
    let end = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(0))?;
    Ok(end)
}

/// The O_DIRECT descriptor and the alignment it needs (512 or 4096 bytes:
/// the first that a read at offset 0 accepts).
fn open_direct(path: &Path, read_only: bool) -> io::Result<(File, usize)> {
    let f = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let mut buf = vec![0u8; 2 * 4096];
    let off = buf.as_ptr().align_offset(4096);
    let mut last = None;
    for align in [512usize, 4096] {
        match f.read_at(&mut buf[off..off + align], 0) {
            Ok(_) => return Ok((f, align)),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::from_raw_os_error(libc::EINVAL)))
}

/// QEMU's image locking (block/file-posix.c): open-file-description byte
/// locks at 100 + permission bit ("I use it") and 200 + permission bit
/// ("I do not let others have it"). A writer uses CONSISTENT_READ and
/// WRITE and shares everything but WRITE; a reader uses CONSISTENT_READ and
/// does not share WRITE either. So two writers, or a writer and a reader,
/// exclude each other (also between hx86 and QEMU); readers coexist.
const LOCK_PERM_BASE: i64 = 100;
const LOCK_SHARED_BASE: i64 = 200;
const PERM_CONSISTENT_READ: i64 = 0;
const PERM_WRITE: i64 = 1;

fn lock(
    file: &File,
    write: bool,
    path: &str,
    warnings: &mut Vec<String>,
) -> Result<(), ImageError> {
    let mut take = vec![
        LOCK_PERM_BASE + PERM_CONSISTENT_READ,
        LOCK_SHARED_BASE + PERM_WRITE,
    ];
    if write {
        take.push(LOCK_PERM_BASE + PERM_WRITE);
    }
    for byte in take {
        match ofd_lock(file, libc::F_OFD_SETLK, libc::F_RDLCK as i16, byte) {
            Ok(_) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EAGAIN)
                    || e.raw_os_error() == Some(libc::EACCES) =>
            {
                return Err(ImageError::Locked {
                    path: path.into(),
                    kind: if write { "" } else { "shared " },
                })
            }
            Err(e) => {
                warnings.push(format!(
                    "'{path}': cannot lock the image ({e}): another process may use it at the same time"
                ));
                return Ok(());
            }
        }
    }
    // Someone who does not share WRITE (any user) keeps us from writing;
    // someone writing keeps us from opening (we do not share WRITE).
    let mut check = vec![LOCK_PERM_BASE + PERM_WRITE];
    if write {
        check.push(LOCK_SHARED_BASE + PERM_WRITE);
    }
    for byte in check {
        let held =
            ofd_lock(file, libc::F_OFD_GETLK, libc::F_WRLCK as i16, byte).map_err(|source| {
                ImageError::Io {
                    path: path.into(),
                    what: "lock test",
                    source,
                }
            })?;
        if held {
            return Err(ImageError::Locked {
                path: path.into(),
                kind: if write { "" } else { "shared " },
            });
        }
    }
    Ok(())
}

/// One byte lock: F_OFD_SETLK (returns false) or F_OFD_GETLK (returns
/// whether another file description holds a conflicting lock).
fn ofd_lock(file: &File, cmd: i32, ty: i16, byte: i64) -> io::Result<bool> {
    // SAFETY: an all-zero `struct flock` is a valid value.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = ty;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = byte;
    fl.l_len = 1;
    // SAFETY: the descriptor is open for the call, and `fl` is a valid
    // `struct flock` the kernel reads (and for GETLK writes) in place.
    let r = unsafe { libc::fcntl(file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(cmd == libc::F_OFD_GETLK && fl.l_type != libc::F_UNLCK as i16)
}

/// `fallocate(2)` on `file`.
pub(crate) fn fallocate(file: &File, mode: i32, off: u64, len: u64) -> io::Result<()> {
    let (o, l) = (
        i64::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        i64::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    );
    // SAFETY: fallocate only acts on the open descriptor; no memory is passed.
    let r = unsafe { libc::fallocate(file.as_raw_fd(), mode, o, l) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `len` bytes at `off` of `file` read as zeros: a hole punched when
/// `unmap` allows, else a zeroed range, else written zeros.
pub(crate) fn zero_range(file: &File, off: u64, len: u64, unmap: bool) -> io::Result<()> {
    let keep = libc::FALLOC_FL_KEEP_SIZE;
    if unmap && fallocate(file, libc::FALLOC_FL_PUNCH_HOLE | keep, off, len).is_ok() {
        return Ok(());
    }
    if fallocate(file, libc::FALLOC_FL_ZERO_RANGE | keep, off, len).is_ok() {
        return Ok(());
    }
    const CHUNK: u64 = 1 << 20;
    let zeros = vec![0u8; CHUNK.min(len) as usize];
    let mut done = 0;
    while done < len {
        let n = CHUNK.min(len - done) as usize;
        file.write_all_at(&zeros[..n], off + done)?;
        done += n as u64;
    }
    Ok(())
}

/// A raw image file.
pub struct RawFile {
    /// Buffered descriptor (it holds the locks).
    file: File,
    /// cache=none: the O_DIRECT descriptor and its alignment.
    direct: Option<(File, usize)>,
    /// O_DIRECT failed at run time once (logged once, then buffered).
    direct_failed: AtomicBool,
    size: u64,
    read_only: bool,
    cache: CacheMode,
    discard_unmap: bool,
}

impl RawFile {
    /// The O_DIRECT descriptor when this access suits it.
    fn direct_for(&self, ptr: *const u8, len: usize, off: u64) -> Option<&File> {
        let (f, align) = self.direct.as_ref()?;
        let ok = (ptr as usize).is_multiple_of(*align)
            && len.is_multiple_of(*align)
            && off.is_multiple_of(*align as u64);
        (ok && !self.direct_failed.load(Ordering::Relaxed)).then_some(f)
    }

    fn direct_error(&self, e: &io::Error) -> bool {
        if e.raw_os_error() == Some(libc::EINVAL) {
            if !self.direct_failed.swap(true, Ordering::Relaxed) {
                log::warn!(target: "virtio", "virtio-blk: O_DIRECT access refused ({e}); using the host page cache");
            }
            return true;
        }
        false
    }
}

impl BlockBackend for RawFile {
    fn size(&self) -> u64 {
        self.size
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if let Some(f) = self.direct_for(buf.as_ptr(), buf.len(), off) {
            match f.read_exact_at(buf, off) {
                Err(e) if self.direct_error(&e) => {}
                r => return r,
            }
        }
        self.file.read_exact_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        let mut done = false;
        if let Some(f) = self.direct_for(buf.as_ptr(), buf.len(), off) {
            match f.write_all_at(buf, off) {
                Err(e) if self.direct_error(&e) => {}
                r => {
                    r?;
                    done = true;
                }
            }
        }
        if !done {
            self.file.write_all_at(buf, off)?;
        }
        if self.cache.sync_writes() {
            self.file.sync_data()?;
        }
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        if self.read_only || self.cache == CacheMode::Unsafe {
            return Ok(());
        }
        self.file.sync_data()
    }
    fn discard(&self, off: u64, len: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        if self.discard_unmap {
            let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
            // A file system without holes keeps the data: a discard is a hint.
            let _ = fallocate(&self.file, mode, off, len);
        }
        Ok(())
    }
    fn write_zeroes(&self, off: u64, len: u64, unmap: bool) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        zero_range(&self.file, off, len, unmap && self.discard_unmap)?;
        if self.cache.sync_writes() {
            self.file.sync_data()?;
        }
        Ok(())
    }
}

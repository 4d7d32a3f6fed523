//! `-snapshot`: the image is opened read-only and the guest's writes go to
//! a throw-away overlay, an unlinked sparse temporary file (in `$TMPDIR`,
//! else /tmp) of the image's size, with a bitmap of the sectors written
//! there. Reads take each sector from the overlay when written, else from
//! the image. The overlay disappears with the process.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use super::block_image::{zero_range, BlockBackend, SECTOR};

/// The image plus the overlay of what the guest wrote.
pub struct Overlay {
    base: Box<dyn BlockBackend>,
    file: File,
    /// One bit per sector: the sector lives in `file`.
    written: Mutex<Vec<u64>>,
    read_only: bool,
}

/// An unlinked temporary file.
fn temp_file() -> io::Result<File> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir();
    loop {
        let name = dir.join(format!(
            "hx86-snapshot-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        match OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&name)
        {
            Ok(f) => {
                std::fs::remove_file(&name)?;
                return Ok(f);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

impl Overlay {
    /// `read_only`: the guest may not write either (readonly=on too).
    pub fn new(base: Box<dyn BlockBackend>, read_only: bool) -> io::Result<Self> {
        let file = temp_file()?;
        file.set_len(base.size())?;
        let sectors = base.size() / SECTOR;
        Ok(Self {
            written: Mutex::new(vec![0; sectors.div_ceil(64) as usize]),
            base,
            file,
            read_only,
        })
    }

    /// Runs of sectors in `[first, first + count)`: (first, count, written).
    fn runs(&self, first: u64, count: u64) -> Vec<(u64, u64, bool)> {
        let map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        let bit = |s: u64| map[(s / 64) as usize] & (1 << (s % 64)) != 0;
        let mut runs: Vec<(u64, u64, bool)> = Vec::new();
        for s in first..first + count {
            let w = bit(s);
            match runs.last_mut() {
                Some((_, n, lw)) if *lw == w => *n += 1,
                _ => runs.push((s, 1, w)),
            }
        }
        runs
    }

    fn mark(&self, off: u64, len: u64) {
        let mut map = self.written.lock().unwrap_or_else(|e| e.into_inner());
        for s in off / SECTOR..(off + len).div_ceil(SECTOR) {
            map[(s / 64) as usize] |= 1 << (s % 64);
        }
    }

    fn check_write(&self) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        Ok(())
    }
}

impl BlockBackend for Overlay {
    fn size(&self) -> u64 {
        self.base.size()
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let count = (buf.len() as u64).div_ceil(SECTOR);
        for (first, n, written) in self.runs(off / SECTOR, count) {
            let start = (first * SECTOR - off) as usize;
            let end = (start + (n * SECTOR) as usize).min(buf.len());
            let part = &mut buf[start..end];
            if written {
                self.file.read_exact_at(part, first * SECTOR)?;
            } else {
                self.base.read_at(part, first * SECTOR)?;
            }
        }
        Ok(())
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.check_write()?;
        self.file.write_all_at(buf, off)?;
        self.mark(off, buf.len() as u64);
        Ok(())
    }
    fn flush(&self) -> io::Result<()> {
        // The overlay is thrown away: nothing to make durable.
        Ok(())
    }
    fn discard(&self, _off: u64, _len: u64) -> io::Result<()> {
        // A hint: the image must not change, and the overlay keeps what
        // it has.
        self.check_write()
    }
    fn write_zeroes(&self, off: u64, len: u64, _unmap: bool) -> io::Result<()> {
        self.check_write()?;
        zero_range(&self.file, off, len, true)?;
        self.mark(off, len);
        Ok(())
    }
}

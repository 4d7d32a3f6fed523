//! The virtio-blk request path (virtio 1.2, 5.2.6), run on the device's
//! worker thread: pop descriptor chains with `virtio_queue`, check them,
//! do the I/O on the [`BlockBackend`] through a bounce buffer (1 MiB at a
//! time, so a huge request never makes a huge allocation), write data and
//! the status byte through [`GuestRam`], put the chain on the used ring.
//!
//! A request is a device-readable part (16-byte header, then data for
//! OUT/DISCARD/WRITE_ZEROES) followed by a device-writable part (data for
//! IN/GET_ID, then the status byte), however the driver splits it into
//! descriptors. A request the device understands but refuses gets
//! IOERR/UNSUPP. A chain that cannot carry a status (no header, no
//! writable byte, a zero-length or out-of-RAM descriptor, a loop, a bad
//! index or indirect table) is what QEMU calls a virtio error: the device
//! stops and asks for a reset (DEVICE_NEEDS_RESET).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use virtio_bindings::virtio_blk::*;
use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{GuestMemory, GuestMemoryMmap};

use super::block_image::{BlockBackend, SECTOR};
use super::{add_used, enable_notification, notify_used, VirtioInterrupt};
use crate::dma::{DmaError, GuestRam};

/// Bytes moved per backend call.
pub(crate) const CHUNK: usize = 1 << 20;
/// DISCARD / WRITE_ZEROES limits (config space).
pub(crate) const MAX_DISCARD_SECTORS: u32 = 1 << 22;
pub(crate) const MAX_DISCARD_SEG: u32 = 16;
pub(crate) const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 22;
pub(crate) const MAX_WRITE_ZEROES_SEG: u32 = 16;

const HEADER: u64 = 16;
const S_OK: u8 = VIRTIO_BLK_S_OK as u8;
const S_IOERR: u8 = VIRTIO_BLK_S_IOERR as u8;
const S_UNSUPP: u8 = VIRTIO_BLK_S_UNSUPP as u8;

/// What the worker serves requests with.
pub(crate) struct Ctx {
    pub ram: GuestRam,
    pub backend: Arc<dyn BlockBackend>,
    /// GET_ID's answer.
    pub id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    /// DISCARD / WRITE_ZEROES were negotiated.
    pub discard: bool,
    pub write_zeroes: bool,
    /// The bounce buffer (CHUNK bytes from a 4096-aligned start).
    buf: Vec<u8>,
}

impl Ctx {
    pub fn new(ram: GuestRam, backend: Arc<dyn BlockBackend>, id: [u8; 20]) -> Self {
        Self {
            ram,
            backend,
            id,
            discard: false,
            write_zeroes: false,
            buf: vec![0; CHUNK + 4096],
        }
    }
    /// `n` bytes of the bounce buffer, 4096-aligned (O_DIRECT takes it).
    fn buf(&mut self, n: usize) -> &mut [u8] {
        let off = self.buf.as_ptr().align_offset(4096);
        &mut self.buf[off..off + n]
    }
}

/// A guest-memory piece of a request.
#[derive(Clone, Copy, Debug)]
struct Seg {
    addr: u64,
    len: u64,
}

fn total(segs: &[Seg]) -> u64 {
    segs.iter().map(|s| s.len).sum()
}

/// Copies `dst.len()` bytes from byte `skip` of the readable part.
fn gather(ram: &GuestRam, segs: &[Seg], mut skip: u64, dst: &mut [u8]) -> Result<(), DmaError> {
    let mut done = 0;
    for s in segs {
        if done == dst.len() {
            break;
        }
        if skip >= s.len {
            skip -= s.len;
            continue;
        }
        let n = ((s.len - skip) as usize).min(dst.len() - done);
        ram.read(s.addr + skip, &mut dst[done..done + n])?;
        done += n;
        skip = 0;
    }
    Ok(())
}

/// Copies `src` to byte `skip` of the writable part (through GuestRam).
fn scatter(ram: &GuestRam, segs: &[Seg], mut skip: u64, src: &[u8]) -> Result<(), DmaError> {
    let mut done = 0;
    for s in segs {
        if done == src.len() {
            break;
        }
        if skip >= s.len {
            skip -= s.len;
            continue;
        }
        let n = ((s.len - skip) as usize).min(src.len() - done);
        ram.write(s.addr + skip, &src[done..done + n])?;
        done += n;
        skip = 0;
    }
    Ok(())
}

/// The byte offset of `len` bytes at `sector`, if inside an image of `size`.
fn byte_range(sector: u64, len: u64, size: u64) -> Option<u64> {
    let off = sector.checked_mul(SECTOR)?;
    (off.checked_add(len)? <= size).then_some(off)
}

/// Splits a chain into its readable and writable parts; `Err`: the chain
/// itself is malformed.
fn collect(
    chain: DescriptorChain<&GuestMemoryMmap>,
    mem: &GuestMemoryMmap,
) -> Result<(Vec<Seg>, Vec<Seg>), String> {
    let head = chain.head_index();
    let (mut r, mut w) = (Vec::new(), Vec::new());
    let mut more = true;
    for d in chain {
        more = d.has_next();
        let seg = Seg {
            addr: d.addr().0,
            len: u64::from(d.len()),
        };
        if seg.len == 0 {
            return Err(format!("chain {head}: zero-length descriptor"));
        }
        if !mem.check_range(d.addr(), d.len() as usize) {
            return Err(format!(
                "chain {head}: descriptor {:#x}+{:#x} is outside guest RAM",
                seg.addr, seg.len
            ));
        }
        if d.is_write_only() { &mut w } else { &mut r }.push(seg);
    }
    if more {
        // The iterator stopped early: no descriptors at all (bad head
        // index, bad indirect table) or a NEXT it could not follow (a
        // loop, an index beyond the table, a nested indirect table).
        return Err(format!(
            "chain {head}: broken descriptor chain (loop, bad index or bad indirect table)"
        ));
    }
    Ok((r, w))
}

/// Serves one chain; returns the used length (bytes written to the guest).
pub(crate) fn handle(
    chain: DescriptorChain<&GuestMemoryMmap>,
    ctx: &mut Ctx,
) -> Result<u32, String> {
    let ram = ctx.ram.clone();
    let (r, w) = collect(chain, ram.memory())?;
    let (rlen, wlen) = (total(&r), total(&w));
    if rlen < HEADER || wlen < 1 {
        return Err(format!(
            "request without a readable header ({rlen} bytes) or a writable status byte ({wlen} bytes)"
        ));
    }
    let last = w[w.len() - 1];
    let status_addr = last.addr + last.len - 1;
    let mut hdr = [0u8; HEADER as usize];
    gather(&ram, &r, 0, &mut hdr).map_err(|e| e.to_string())?;
    let ty = u32::from_le_bytes(hdr[0..4].try_into().unwrap());
    let sector = u64::from_le_bytes(hdr[8..16].try_into().unwrap());
    let (status, data) = execute(ctx, ty, sector, &r, &w, rlen - HEADER, wlen - 1);
    log::trace!(target: "virtio", "virtio-blk: type {ty} sector {sector} -> status {status}");
    ram.write(status_addr, &[status])
        .map_err(|e| format!("status byte: {e}"))?;
    Ok(data.saturating_add(1))
}

/// Runs a request; returns (status, data bytes written to the guest).
fn execute(
    ctx: &mut Ctx,
    ty: u32,
    sector: u64,
    r: &[Seg],
    w: &[Seg],
    rdata: u64,
    wdata: u64,
) -> (u8, u32) {
    let size = ctx.backend.size();
    let io_err = |what: &str, e: &dyn std::fmt::Display| {
        log::warn!(target: "virtio", "virtio-blk: {what} at sector {sector}: {e}");
        (S_IOERR, 0)
    };
    match ty {
        VIRTIO_BLK_T_IN => {
            let Some(off) =
                byte_range(sector, wdata, size).filter(|_| wdata.is_multiple_of(SECTOR))
            else {
                return (S_IOERR, 0);
            };
            let mut pos = 0;
            while pos < wdata {
                let n = (wdata - pos).min(CHUNK as u64) as usize;
                let backend = ctx.backend.clone();
                let ram = ctx.ram.clone();
                let buf = ctx.buf(n);
                if let Err(e) = backend.read_at(buf, off + pos) {
                    return io_err("read", &e);
                }
                if let Err(e) = scatter(&ram, w, pos, buf) {
                    return io_err("read", &e);
                }
                pos += n as u64;
            }
            (S_OK, u32::try_from(wdata).unwrap_or(u32::MAX))
        }
        VIRTIO_BLK_T_OUT => {
            let Some(off) =
                byte_range(sector, rdata, size).filter(|_| rdata.is_multiple_of(SECTOR))
            else {
                return (S_IOERR, 0);
            };
            if ctx.backend.read_only() {
                return (S_IOERR, 0);
            }
            let mut pos = 0;
            while pos < rdata {
                let n = (rdata - pos).min(CHUNK as u64) as usize;
                let backend = ctx.backend.clone();
                let ram = ctx.ram.clone();
                let buf = ctx.buf(n);
                if let Err(e) = gather(&ram, r, HEADER + pos, buf) {
                    return io_err("write", &e);
                }
                if let Err(e) = backend.write_at(buf, off + pos) {
                    return io_err("write", &e);
                }
                pos += n as u64;
            }
            (S_OK, 0)
        }
        VIRTIO_BLK_T_FLUSH => match ctx.backend.flush() {
            Ok(()) => (S_OK, 0),
            Err(e) => io_err("flush", &e),
        },
        VIRTIO_BLK_T_GET_ID => {
            let n = (wdata as usize).min(ctx.id.len());
            match scatter(&ctx.ram, w, 0, &ctx.id[..n]) {
                Ok(()) => (S_OK, n as u32),
                Err(e) => io_err("get-id", &e),
            }
        }
        VIRTIO_BLK_T_DISCARD if ctx.discard => (ranges(ctx, r, rdata, false), 0),
        VIRTIO_BLK_T_WRITE_ZEROES if ctx.write_zeroes => (ranges(ctx, r, rdata, true), 0),
        _ => (S_UNSUPP, 0),
    }
}

/// DISCARD (`zeroes` false) or WRITE_ZEROES: a list of
/// `virtio_blk_discard_write_zeroes` segments.
fn ranges(ctx: &Ctx, r: &[Seg], len: u64, zeroes: bool) -> u8 {
    let (max_seg, max_sectors) = if zeroes {
        (MAX_WRITE_ZEROES_SEG, MAX_WRITE_ZEROES_SECTORS)
    } else {
        (MAX_DISCARD_SEG, MAX_DISCARD_SECTORS)
    };
    if len == 0 || !len.is_multiple_of(16) {
        return S_IOERR;
    }
    if len / 16 > u64::from(max_seg) {
        return S_UNSUPP;
    }
    if ctx.backend.read_only() {
        return S_IOERR;
    }
    let mut segs = Vec::new();
    for i in 0..len / 16 {
        let mut s = [0u8; 16];
        if gather(&ctx.ram, r, HEADER + i * 16, &mut s).is_err() {
            return S_IOERR;
        }
        let sector = u64::from_le_bytes(s[0..8].try_into().unwrap());
        let count = u32::from_le_bytes(s[8..12].try_into().unwrap());
        let flags = u32::from_le_bytes(s[12..16].try_into().unwrap());
        let allowed = if zeroes {
            VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
        } else {
            0
        };
        if flags & !allowed != 0 {
            return S_UNSUPP;
        }
        let bytes = u64::from(count) * SECTOR;
        let Some(off) = byte_range(sector, bytes, ctx.backend.size()) else {
            return S_IOERR;
        };
        if count > max_sectors {
            return S_IOERR;
        }
        segs.push((off, bytes, flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0));
    }
    for (off, bytes, unmap) in segs {
        let r = if zeroes {
            ctx.backend.write_zeroes(off, bytes, unmap)
        } else {
            ctx.backend.discard(off, bytes)
        };
        if let Err(e) = r {
            log::warn!(
                target: "virtio",
                "virtio-blk: {} at byte {off}: {e}",
                if zeroes { "write-zeroes" } else { "discard" }
            );
            return S_IOERR;
        }
    }
    S_OK
}

/// Serves what the driver made available on `queue` (index `index`)
/// until it is empty, signalling used buffers as EVENT_IDX says. `Err`:
/// the device must stop (the caller sets NEEDS_RESET).
pub(crate) fn process_queue(
    queue: &mut Queue,
    index: u16,
    ctx: &mut Ctx,
    irq: &dyn VirtioInterrupt,
    stop: &AtomicBool,
) -> Result<(), String> {
    let ram = ctx.ram.clone();
    let mem = ram.memory();
    let qerr = |e: virtio_queue::Error| format!("queue {index}: {e}");
    loop {
        queue.disable_notification(mem).map_err(qerr)?;
        // Without EVENT_IDX that wrote the used ring's flags.
        ram.written(queue.used_ring(), 2);
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let avail = queue.avail_idx(mem, Ordering::Acquire).map_err(qerr)?;
            let chain = queue.iter(mem).map_err(qerr)?.next();
            let Some(chain) = chain else {
                if avail.0 != queue.next_avail() {
                    return Err(format!("queue {index}: available ring entry unreadable"));
                }
                break;
            };
            let head = chain.head_index();
            let used = handle(chain, ctx)?;
            add_used(queue, &ram, head, used).map_err(qerr)?;
            notify_used(queue, &ram, irq, index);
        }
        if !enable_notification(queue, &ram).map_err(qerr)? {
            return Ok(());
        }
    }
}

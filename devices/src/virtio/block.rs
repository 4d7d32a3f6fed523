//! virtio-blk (virtio 1.2, 5.2): a disk over a [`BlockBackend`]
//! (`block_image.rs`: raw files, the `-snapshot` overlay).
//!
//! One request queue. Requests run on the device's worker thread
//! (`virtio-blk` in `ps -T`), woken by [`VirtioDevice::queue_notify`], so a
//! slow host file never stalls a vCPU; `block_request.rs` has the request
//! path. Reset and drop stop the worker (it finishes the request in
//! flight) and join it.
//!
//! Features: SEG_MAX, BLK_SIZE (512), FLUSH, RO for read-only images,
//! DISCARD and WRITE_ZEROES (unless read-only or turned off).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use virtio_bindings::virtio_blk::*;
use virtio_queue::{Queue, QueueT};

use super::block_image::{BlockBackend, SECTOR};
use super::block_request::{
    process_queue, Ctx, MAX_DISCARD_SECTORS, MAX_DISCARD_SEG, MAX_WRITE_ZEROES_SECTORS,
    MAX_WRITE_ZEROES_SEG,
};
use super::{feature, id, ActivateError, Activation, VirtioDevice, VirtioInterrupt};

/// The request queue's size.
pub const QUEUE_SIZE: u16 = 256;
/// The configuration space's length (up to `write_zeroes_may_unmap` and
/// its padding).
pub const CONFIG_LEN: usize = 60;

/// What the device offers besides its image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOptions {
    /// GET_ID's answer (at most 20 bytes are used).
    pub serial: Option<String>,
    /// Offer DISCARD / WRITE_ZEROES (QEMU's `discard`, `write-zeroes`).
    pub discard: bool,
    pub write_zeroes: bool,
}

impl Default for BlockOptions {
    fn default() -> Self {
        Self {
            serial: None,
            discard: true,
            write_zeroes: true,
        }
    }
}

fn bit(b: u32) -> u64 {
    1 << b
}

/// A virtio-blk device.
pub struct Block {
    backend: Arc<dyn BlockBackend>,
    id: [u8; VIRTIO_BLK_ID_BYTES as usize],
    features: u64,
    config: [u8; CONFIG_LEN],
    worker: Option<Worker>,
}

impl Block {
    pub fn new(backend: Arc<dyn BlockBackend>, opts: &BlockOptions) -> Self {
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES as usize];
        if let Some(s) = &opts.serial {
            let n = s.len().min(id.len());
            id[..n].copy_from_slice(&s.as_bytes()[..n]);
        }
        let ro = backend.read_only();
        let mut features =
            bit(VIRTIO_BLK_F_SEG_MAX) | bit(VIRTIO_BLK_F_BLK_SIZE) | bit(VIRTIO_BLK_F_FLUSH);
        if ro {
            features |= bit(VIRTIO_BLK_F_RO);
        }
        if opts.discard && !ro {
            features |= bit(VIRTIO_BLK_F_DISCARD);
        }
        if opts.write_zeroes && !ro {
            features |= bit(VIRTIO_BLK_F_WRITE_ZEROES);
        }
        // struct virtio_blk_config, little-endian.
        let mut c = [0u8; CONFIG_LEN];
        let mut put = |off: usize, v: &[u8]| c[off..off + v.len()].copy_from_slice(v);
        put(0, &(backend.size() / SECTOR).to_le_bytes()); // capacity
        put(12, &u32::from(QUEUE_SIZE - 2).to_le_bytes()); // seg_max
        put(20, &(SECTOR as u32).to_le_bytes()); // blk_size
        put(34, &1u16.to_le_bytes()); // num_queues
        put(36, &MAX_DISCARD_SECTORS.to_le_bytes());
        put(40, &MAX_DISCARD_SEG.to_le_bytes());
        put(44, &1u32.to_le_bytes()); // discard_sector_alignment
        put(48, &MAX_WRITE_ZEROES_SECTORS.to_le_bytes());
        put(52, &MAX_WRITE_ZEROES_SEG.to_le_bytes());
        put(56, &[1]); // write_zeroes_may_unmap
        Self {
            backend,
            id,
            features,
            config: c,
            worker: None,
        }
    }

    fn stop_worker(&mut self) {
        if let Some(w) = self.worker.take() {
            w.stop();
        }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        id::BLOCK
    }
    fn queue_max_sizes(&self) -> Vec<u16> {
        vec![QUEUE_SIZE]
    }
    fn device_features(&self) -> u64 {
        self.features
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        super::read_config_bytes(&self.config, offset, data);
    }
    fn activate(&mut self, act: Activation) -> Result<(), ActivateError> {
        self.stop_worker();
        let Activation {
            mem,
            queues,
            interrupt,
            features,
        } = act;
        let Some((index, mut queue)) = queues.into_iter().find(|(i, _)| *i == 0) else {
            return Err(ActivateError::MissingQueue(0));
        };
        queue.set_event_idx(features & feature::RING_EVENT_IDX != 0);
        let mut ctx = Ctx::new(mem, self.backend.clone(), self.id);
        ctx.discard = features & bit(VIRTIO_BLK_F_DISCARD) != 0;
        ctx.write_zeroes = features & bit(VIRTIO_BLK_F_WRITE_ZEROES) != 0;
        self.worker = Some(
            Worker::spawn(queue, index, ctx, interrupt)
                .map_err(|e| ActivateError::Backend(format!("virtio-blk worker: {e}")))?,
        );
        Ok(())
    }
    fn queue_notify(&mut self, index: u16) {
        if let Some(w) = &self.worker {
            if index == w.index {
                w.kick();
            }
        }
    }
    fn reset(&mut self) {
        self.stop_worker();
    }
    fn name(&self) -> &'static str {
        "virtio-blk"
    }
}

/// The wake-up state between the vCPU (notify) and the worker.
#[derive(Default)]
struct Signal {
    kicked: Mutex<bool>,
    cv: Condvar,
    stop: AtomicBool,
}

struct Worker {
    index: u16,
    signal: Arc<Signal>,
    thread: JoinHandle<()>,
}

impl Worker {
    fn spawn(
        mut queue: Queue,
        index: u16,
        mut ctx: Ctx,
        irq: Arc<dyn VirtioInterrupt>,
    ) -> std::io::Result<Self> {
        let signal = Arc::new(Signal::default());
        // Buffers made available before DRIVER_OK are served at once.
        *signal.kicked.lock().unwrap_or_else(|e| e.into_inner()) = true;
        let s = signal.clone();
        let thread = std::thread::Builder::new()
            .name("virtio-blk".into())
            .spawn(move || loop {
                {
                    let mut k = s.kicked.lock().unwrap_or_else(|e| e.into_inner());
                    while !*k && !s.stop.load(Ordering::Acquire) {
                        k = s.cv.wait(k).unwrap_or_else(|e| e.into_inner());
                    }
                    if s.stop.load(Ordering::Acquire) {
                        return;
                    }
                    *k = false;
                }
                if let Err(e) = process_queue(&mut queue, index, &mut ctx, &*irq, &s.stop) {
                    log::warn!(target: "virtio", "virtio-blk: {e}: the device needs a reset");
                    irq.set_needs_reset();
                    return;
                }
            })?;
        Ok(Self {
            index,
            signal,
            thread,
        })
    }

    /// Wakes the worker (never blocks on I/O: the lock is only held to
    /// set the flag).
    fn kick(&self) {
        *self.signal.kicked.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.signal.cv.notify_one();
    }

    /// Stops the worker after the request in flight and joins it.
    fn stop(self) {
        self.signal.stop.store(true, Ordering::Release);
        {
            let _k = self.signal.kicked.lock().unwrap_or_else(|e| e.into_inner());
            self.signal.cv.notify_one();
        }
        let _ = self.thread.join();
    }
}

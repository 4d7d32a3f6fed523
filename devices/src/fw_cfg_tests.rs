use std::sync::Mutex;

use super::*;

/// 64 KiB of "RAM" at 0; everything else is not memory.
struct Ram(Mutex<Vec<u8>>);

impl Ram {
    fn new() -> Arc<Ram> {
        Arc::new(Ram(Mutex::new(vec![0xAA; 0x1_0000])))
    }
    fn get(&self, addr: usize, len: usize) -> Vec<u8> {
        self.0.lock().unwrap()[addr..addr + len].to_vec()
    }
    fn put(&self, addr: usize, data: &[u8]) {
        self.0.lock().unwrap()[addr..addr + data.len()].copy_from_slice(data);
    }
}

impl DmaMemory for Ram {
    fn read(&self, addr: u64, buf: &mut [u8]) -> bool {
        let m = self.0.lock().unwrap();
        match addr.checked_add(buf.len() as u64) {
            Some(end) if end <= m.len() as u64 => {
                buf.copy_from_slice(&m[addr as usize..end as usize]);
                true
            }
            _ => false,
        }
    }
    fn write(&self, addr: u64, data: &[u8]) -> bool {
        let mut m = self.0.lock().unwrap();
        match addr.checked_add(data.len() as u64) {
            Some(end) if end <= m.len() as u64 => {
                m[addr as usize..end as usize].copy_from_slice(data);
                true
            }
            _ => false,
        }
    }
}

fn device(ram: &Arc<Ram>) -> FwCfg {
    let mut b = FwCfgBuilder::new();
    b.item_u16(key::NB_CPUS, 3).unwrap();
    b.item_u64(key::RAM_SIZE, 0x1234_5678_9ABC).unwrap();
    b.item_u32(key::IRQ0_OVERRIDE, 1).unwrap();
    b.file("opt/zz", b"last".to_vec()).unwrap();
    b.file("etc/e820", vec![1; 40]).unwrap();
    b.file("bootorder", b"\0".to_vec()).unwrap();
    b.build(Some(ram.clone() as Arc<dyn DmaMemory>))
}

fn select(d: &mut FwCfg, k: u16) {
    assert_eq!(d.write(0, &k.to_le_bytes()), None);
}

fn read(d: &mut FwCfg, n: usize) -> Vec<u8> {
    (0..n)
        .map(|_| {
            let mut b = [0xEE];
            d.read(1, &mut b);
            b[0]
        })
        .collect()
}

#[test]
fn selector_and_data_port() {
    let ram = Ram::new();
    let mut d = device(&ram);
    select(&mut d, key::SIGNATURE);
    assert_eq!(read(&mut d, 6), b"QEMU\0\0", "past the end reads 0");
    select(&mut d, key::ID);
    assert_eq!(read(&mut d, 4), [3, 0, 0, 0]);
    select(&mut d, key::NB_CPUS);
    assert_eq!(read(&mut d, 2), [3, 0]);
    // Reselecting restarts at offset 0; the write-channel bit is ignored.
    select(&mut d, key::NB_CPUS | key::WRITE_CHANNEL);
    assert_eq!(read(&mut d, 3), [3, 0, 0]);
    select(&mut d, key::RAM_SIZE);
    assert_eq!(read(&mut d, 8), 0x1234_5678_9ABCu64.to_le_bytes());
    select(&mut d, key::IRQ0_OVERRIDE);
    assert_eq!(read(&mut d, 4), [1, 0, 0, 0]);
    // An absent item and a selector beyond the slots read 0.
    select(&mut d, key::MACHINE_ID);
    assert_eq!(read(&mut d, 4), [0; 4]);
    select(&mut d, 0x3FFF);
    assert_eq!(read(&mut d, 4), [0; 4]);
    // Data writes and odd accesses are ignored, never a panic.
    assert_eq!(d.write(1, &[5]), None);
    assert_eq!(d.write(0, &[5]), None);
    assert_eq!(d.write(2, &[1, 2, 3, 4]), None);
    assert_eq!(d.write(100, &[]), None);
    let mut b = [0xEE; 2];
    d.read(0, &mut b);
    assert_eq!(b, [0, 0]);
}

#[test]
fn file_directory_is_sorted_by_name() {
    let ram = Ram::new();
    let mut d = device(&ram);
    select(&mut d, key::FILE_DIR);
    let dir = read(&mut d, 4 + 3 * 64);
    assert_eq!(&dir[..4], &3u32.to_be_bytes());
    let mut names = Vec::new();
    for i in 0..3 {
        let e = &dir[4 + 64 * i..4 + 64 * (i + 1)];
        let size = u32::from_be_bytes(e[..4].try_into().unwrap());
        let sel = u16::from_be_bytes([e[4], e[5]]);
        assert_eq!(sel, key::FILE_FIRST + i as u16);
        let name: String = e[8..]
            .iter()
            .take_while(|&&b| b != 0)
            .map(|&b| b as char)
            .collect();
        select(&mut d, sel);
        assert_eq!(read(&mut d, size as usize).len(), size as usize);
        names.push(name);
    }
    assert_eq!(names, ["bootorder", "etc/e820", "opt/zz"]);
    select(&mut d, key::FILE_FIRST + 2);
    assert_eq!(read(&mut d, 5), b"last\0");
}

#[test]
fn builder_refuses_bad_names_and_keys() {
    let mut b = FwCfgBuilder::new();
    assert!(b.file("opt/a", vec![]).is_ok());
    assert_eq!(
        b.file("opt/a", vec![]).unwrap_err(),
        FwCfgError::Duplicate("opt/a".into())
    );
    assert!(matches!(b.file("", vec![]), Err(FwCfgError::BadName(_))));
    assert!(matches!(
        b.file(&"x".repeat(56), vec![]),
        Err(FwCfgError::BadName(_))
    ));
    assert!(b.file(&"x".repeat(55), vec![]).is_ok());
    for k in [
        key::SIGNATURE,
        key::ID,
        key::FILE_DIR,
        key::FILE_FIRST,
        0x4003,
    ] {
        assert!(b.item(k, vec![1]).is_err(), "{k:#x}");
    }
}

/// Writes a FWCfgDmaAccess at `at` and starts it with two 32-bit writes.
fn dma(d: &mut FwCfg, ram: &Ram, at: u64, control: u32, len: u32, addr: u64) -> u32 {
    let mut desc = control.to_be_bytes().to_vec();
    desc.extend_from_slice(&len.to_be_bytes());
    desc.extend_from_slice(&addr.to_be_bytes());
    ram.put(at as usize, &desc);
    d.write(4, &((at >> 32) as u32).to_be_bytes());
    d.write(8, &(at as u32).to_be_bytes());
    u32::from_be_bytes(ram.get(at as usize, 4).try_into().unwrap())
}

#[test]
fn dma_read_skip_select_and_refused_write() {
    let ram = Ram::new();
    let mut d = device(&ram);
    let mut sig = [0u8; 8];
    d.read(4, &mut sig);
    assert_eq!(&sig, b"QEMU CFG");
    // SELECT | READ of the signature, 6 bytes: the tail is zero-filled.
    let c = dma(
        &mut d,
        &ram,
        0x100,
        (u32::from(key::SIGNATURE) << 16) | 0x0A,
        6,
        0x200,
    );
    assert_eq!(c, 0);
    assert_eq!(ram.get(0x200, 7), b"QEMU\0\0\xAA");
    // SELECT RAM_SIZE, SKIP 2, READ 2: bytes 2-3.
    let c = dma(
        &mut d,
        &ram,
        0x100,
        (u32::from(key::RAM_SIZE) << 16) | 0x0C,
        2,
        0,
    );
    assert_eq!(c, 0);
    let c = dma(&mut d, &ram, 0x100, dma_ctl::READ, 2, 0x300);
    assert_eq!(c, 0);
    assert_eq!(ram.get(0x300, 2), [0x78, 0x56]);
    // The data port continues where DMA left off.
    assert_eq!(read(&mut d, 1), [0x34]);
    // A 64-bit write of the address also starts a transfer.
    ram.put(
        0x400,
        &((u32::from(key::NB_CPUS) << 16) | 0x0A).to_be_bytes(),
    );
    ram.put(0x404, &2u32.to_be_bytes());
    ram.put(0x408, &0x500u64.to_be_bytes());
    d.write(4, &0x400u64.to_be_bytes());
    assert_eq!(ram.get(0x400, 4), [0; 4]);
    assert_eq!(ram.get(0x500, 2), [3, 0]);
    // WRITE is refused with the error bit.
    let c = dma(
        &mut d,
        &ram,
        0x100,
        (u32::from(key::NB_CPUS) << 16) | 0x18,
        2,
        0x600,
    );
    assert_eq!(c, dma_ctl::ERROR);
    select(&mut d, key::NB_CPUS);
    assert_eq!(read(&mut d, 2), [3, 0], "the item is unchanged");
    // No operation bit: nothing transferred, status 0.
    let c = dma(&mut d, &ram, 0x100, 0, 100, 0x700);
    assert_eq!(c, 0);
    assert_eq!(ram.get(0x700, 1), [0xAA]);
}

#[test]
fn bad_dma_addresses_set_the_error_bit() {
    let ram = Ram::new();
    let mut d = device(&ram);
    // Destinations outside RAM, or running off its end.
    for addr in [0xFFFF_FFF0, 0xFFF0] {
        let c = dma(
            &mut d,
            &ram,
            0x100,
            (u32::from(key::FILE_DIR) << 16) | 0x0A,
            64,
            addr,
        );
        assert_eq!(c, dma_ctl::ERROR, "{addr:#x}");
    }
    // Huge length past the item: zero fill until RAM ends, then error.
    let c = dma(&mut d, &ram, 0x100, dma_ctl::READ, u32::MAX, 0x8000);
    assert_eq!(c, dma_ctl::ERROR);
    // Address wrapping around 2^64.
    let c = dma(&mut d, &ram, 0x100, dma_ctl::READ, 16, u64::MAX - 4);
    assert_eq!(c, dma_ctl::ERROR);
    // A descriptor that is not in RAM: nothing to report to, no panic.
    d.write(4, &0xFFFF_FFFFu32.to_be_bytes());
    d.write(8, &0xFFFF_FFF8u32.to_be_bytes());
    // Descriptor straddling the end of RAM.
    d.write(4, &0u32.to_be_bytes());
    d.write(8, &0xFFF8u32.to_be_bytes());
    assert_eq!(ram.get(0xFFF8, 4), dma_ctl::ERROR.to_be_bytes());
}

#[test]
fn without_dma_memory_the_dma_register_is_inert() {
    let mut d = FwCfgBuilder::new().build(None);
    select(&mut d, key::ID);
    assert_eq!(read(&mut d, 4), [1, 0, 0, 0]);
    let mut b = [0xEE; 4];
    d.read(4, &mut b);
    assert_eq!(b, [0; 4]);
    d.write(4, &0u32.to_be_bytes());
    d.write(8, &0x100u32.to_be_bytes());
}

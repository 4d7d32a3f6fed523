use super::*;
use crate::bootrom::{standard_messages, GDTR_OFF, SEL_CODE32, SEL_CODE64};
use iced_x86::{Code, Decoder, DecoderOptions, FlowControl, Instruction, Mnemonic, Register};

fn decode(rom: &[u8], bitness: u32, off: usize, ip: u64, count: usize) -> Vec<Instruction> {
    let mut d = Decoder::with_ip(bitness, &rom[off..], ip, DecoderOptions::NONE);
    (0..count).map(|_| d.decode()).collect()
}

#[test]
fn rom_is_64k_with_reset_vector_jumping_into_the_rom() {
    let rom = demo_rom();
    assert_eq!(rom.len(), 0x10000);
    assert_eq!(rom, demo_rom(), "deterministic");
    let i = decode(&rom, 16, RESET_OFFSET, RESET_OFFSET as u64, 1)[0];
    assert_eq!(i.mnemonic(), Mnemonic::Jmp);
    assert_eq!(i.flow_control(), FlowControl::UnconditionalBranch);
    assert_eq!(i.near_branch_target(), CODE16_OFFSET as u64);
    assert!(i.len() <= 16);
}

#[test]
fn every_section_decodes_at_its_bitness() {
    let rom = demo_rom();
    let real = decode(&rom, 16, CODE16_OFFSET, CODE16_OFFSET as u64, 40);
    assert_eq!(real[0].mnemonic(), Mnemonic::Cli);
    let lgdt = real
        .iter()
        .find(|i| i.mnemonic() == Mnemonic::Lgdt)
        .unwrap();
    assert_eq!(lgdt.code(), Code::Lgdt_m1632);
    assert_eq!(lgdt.memory_segment(), Register::CS);
    assert_eq!(lgdt.memory_displacement64(), GDTR_OFF as u64);
    let far = real.iter().find(|i| i.code() == Code::Jmp_ptr1632).unwrap();
    assert_eq!(far.far_branch_selector(), SEL_CODE32);
    assert_eq!(far.far_branch32(), 0xFFFF_1000);

    let pm = decode(&rom, 32, CODE32_OFFSET, 0xFFFF_1000, 80);
    assert!(pm.iter().all(|i| !i.is_invalid()));
    let far = pm.iter().find(|i| i.code() == Code::Jmp_ptr1632).unwrap();
    assert_eq!(far.far_branch_selector(), SEL_CODE64);
    assert_eq!(far.far_branch32(), 0xFFFF_2000);
    assert!(pm.iter().any(|i| i.mnemonic() == Mnemonic::Wrmsr));

    let lm = decode(&rom, 64, CODE64_OFFSET, 0xFFFF_2000, 150);
    assert!(lm.iter().all(|i| !i.is_invalid()));
    assert!(lm.iter().any(|i| i.mnemonic() == Mnemonic::Hlt));
    assert!(lm.iter().any(|i| i.mnemonic() == Mnemonic::Div));
}

#[test]
fn gdt_and_messages_are_in_the_data_area() {
    let rom = demo_rom();
    let limit = u16::from_le_bytes([rom[GDTR_OFF], rom[GDTR_OFF + 1]]);
    let base = u32::from_le_bytes(rom[GDTR_OFF + 2..GDTR_OFF + 6].try_into().unwrap());
    assert_eq!(limit, 31);
    assert_eq!(base, 0xFFFF_0000);
    let d = u64::from_le_bytes(rom[8..16].try_into().unwrap());
    let seg = x86::Segment::from_descriptor(SEL_CODE32, d);
    assert!(seg.is_code() && seg.big() && seg.limit == 0xFFFF_FFFF);
    let d = u64::from_le_bytes(rom[24..32].try_into().unwrap());
    assert!(x86::Segment::from_descriptor(SEL_CODE64, d).long());
    let standard = standard_messages("demo");
    let all = standard
        .iter()
        .map(|(o, t)| (*o, t.as_str()))
        .chain(MESSAGES);
    for (off, text) in all {
        assert_eq!(&rom[off..off + text.len()], text.as_bytes());
        assert_eq!(rom[off + text.len()], 0);
    }
    assert_eq!(standard[0].1, "hx86 demo: real mode\n");
}

//! The guest's own debug registers: instruction and data breakpoints,
//! DR6 updates, RF, general detect, and MOV SS blocking of debug traps.

use iced_x86::code_asm::*;

use super::*;

/// #DB log: count at `COUNT`, then (pushed RIP, DR6) pairs at `LOG`.
const COUNT: u64 = 0x60f8;
const LOG: u64 = 0x6100;
/// A watched variable (holds a data selector for MOV SS).
const VALUE: u64 = 0x6800;
const DB_HANDLER: u64 = 0x30000;
const INT40_HANDLER: u64 = 0x30100;

/// Runs 64-bit code with a #DB handler that logs (RIP, DR6), clears TF
/// and sets RF in the frame it returns to; vector 0x40 just returns.
fn run(f: impl FnOnce(&mut CodeAssembler)) -> (M, Vec<(u64, u64)>) {
    let code = asm(64, CODE, f);
    let mut m = M::long64(&code);
    m.install_handlers64();
    let h = asm(64, DB_HANDLER, |a| {
        a.push(rax).unwrap();
        a.push(rbx).unwrap();
        a.mov(rbx, qword_ptr(COUNT)).unwrap();
        a.shl(rbx, 4).unwrap();
        a.mov(rax, qword_ptr(rsp + 16)).unwrap();
        a.mov(qword_ptr(rbx + LOG), rax).unwrap();
        a.mov(rax, dr6).unwrap();
        a.mov(qword_ptr(rbx + LOG + 8), rax).unwrap();
        a.and(qword_ptr(rsp + 32), !0x100).unwrap();
        a.or(qword_ptr(rsp + 32), 0x10000).unwrap();
        a.inc(qword_ptr(COUNT)).unwrap();
        a.pop(rbx).unwrap();
        a.pop(rax).unwrap();
        a.iretq().unwrap();
    });
    m.bus.load(DB_HANDLER, &h);
    m.idt64_gate(1, DB_HANDLER, 0);
    let h = asm(64, INT40_HANDLER, |a| {
        a.nop().unwrap();
        a.iretq().unwrap();
    });
    m.bus.load(INT40_HANDLER, &h);
    m.idt64_gate(0x40, INT40_HANDLER, 0);
    m.bus.load(VALUE, &u64::from(DS32).to_le_bytes());
    assert_eq!(m.run(), ExitReason::Halt);
    let n = m.read_u64(COUNT);
    assert!(n < 16, "{n} #DBs");
    let log = (0..n)
        .map(|k| (m.read_u64(LOG + 16 * k), m.read_u64(LOG + 16 * k + 8)))
        .collect();
    (m, log)
}

/// DR7 for a 4-byte data breakpoint in DR1 (`rw`: 1 write, 3 read/write).
fn dr7_data1(rw: u64) -> u64 {
    0x400 | (1 << 3) | (rw << 20) | (3 << 22)
}

fn set_dr(a: &mut CodeAssembler, dr: AsmRegisterDr, v: u64) {
    a.mov(rax, v).unwrap();
    a.mov(dr, rax).unwrap();
}

/// Clears DR6 and watches reads and writes of `VALUE` with DR1.
fn watch_value(a: &mut CodeAssembler) {
    set_dr(a, dr6, 0);
    set_dr(a, dr1, VALUE);
    set_dr(a, dr7, dr7_data1(3));
}

#[test]
fn instruction_breakpoint_faults_before_the_instruction_and_rf_resumes() {
    let (m, log) = run(|a| {
        let mut target = a.create_label();
        set_dr(a, dr6, 0);
        a.lea(rax, ptr(target)).unwrap();
        a.mov(dr2, rax).unwrap();
        set_dr(a, dr7, 0x400 | (1 << 5));
        a.set_label(&mut target).unwrap();
        a.inc(ecx).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log.len(), 1, "one #DB, then RF lets the instruction run");
    assert_eq!(
        log[0],
        (m.cpu.state.dr[2], 0xffff_0ff4),
        "at the INC, DR6.B2"
    );
    assert_eq!(m.gpr(1), 1, "the INC ran once");
    assert_eq!(m.read_u64(REC + 8), 0, "no other exception");
}

#[test]
fn data_breakpoint_traps_after_the_write_and_leaves_bs_alone() {
    let (m, log) = run(|a| {
        let mut after = a.create_label();
        set_dr(a, dr6, 0x4000 | 1);
        set_dr(a, dr1, VALUE);
        set_dr(a, dr7, dr7_data1(1));
        a.mov(rbx, qword_ptr(VALUE)).unwrap();
        a.mov(qword_ptr(VALUE + 2), rbx).unwrap();
        a.set_label(&mut after).unwrap();
        a.lea(rdx, ptr(after)).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log.len(), 1, "the read does not hit a write breakpoint");
    assert_eq!(
        log[0],
        (m.gpr(2), 0xffff_4ff2),
        "after the write, B1 (not B0), BS kept"
    );
}

#[test]
fn mov_ss_holds_the_single_step_trap_for_one_instruction() {
    let (m, log) = run(|a| {
        let mut after = a.create_label();
        a.mov(cx, ss).unwrap();
        a.pushfq().unwrap();
        a.or(qword_ptr(rsp), 0x100).unwrap();
        a.popfq().unwrap();
        a.mov(ss, cx).unwrap();
        a.nop().unwrap();
        a.set_label(&mut after).unwrap();
        a.lea(rdx, ptr(after)).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].0,
        m.gpr(2),
        "the trap comes after the NOP, not the MOV SS"
    );
    assert_eq!(log[0].1 & 0x4000, 0x4000, "DR6.BS");
}

#[test]
fn mov_ss_holds_a_data_breakpoint_until_after_the_next_instruction() {
    let (m, log) = run(|a| {
        let mut after = a.create_label();
        watch_value(a);
        a.mov(ss, word_ptr(VALUE)).unwrap();
        a.nop().unwrap();
        a.set_label(&mut after).unwrap();
        a.lea(rdx, ptr(after)).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log, [(m.gpr(2), 0xffff_0ff2)]);
}

#[test]
fn mov_ss_inhibits_the_next_instructions_instruction_breakpoint() {
    let (m, log) = run(|a| {
        let mut target = a.create_label();
        set_dr(a, dr6, 0);
        a.lea(rdx, ptr(target)).unwrap();
        a.mov(dr0, rdx).unwrap();
        set_dr(a, dr7, 0x400 | 1);
        a.xor(ebx, ebx).unwrap();
        a.mov(cx, ss).unwrap();
        a.mov(ss, cx).unwrap();
        a.set_label(&mut target).unwrap();
        a.inc(ebx).unwrap();
        // The same instruction without MOV SS before it breaks.
        a.cmp(ebx, 2).unwrap();
        a.jne(target).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log, [(m.gpr(2), 0xffff_0ff1)], "only the second INC breaks");
    assert_eq!(m.gpr(3), 2);
}

#[test]
fn held_data_breakpoint_meets_int_n_at_its_handler_and_joins_icebp() {
    // INT n after MOV SS: the held #DB is taken at the handler's entry.
    let (_, log) = run(|a| {
        watch_value(a);
        a.mov(ss, word_ptr(VALUE)).unwrap();
        a.int(0x40).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log, [(INT40_HANDLER, 0xffff_0ff2)]);
    // INT1 (ICEBP) after MOV SS: one #DB for both.
    let (m, log) = run(|a| {
        let mut after = a.create_label();
        watch_value(a);
        a.mov(ss, word_ptr(VALUE)).unwrap();
        a.int1().unwrap();
        a.set_label(&mut after).unwrap();
        a.lea(rdx, ptr(after)).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log, [(m.gpr(2), 0xffff_0ff2)]);
}

#[test]
fn general_detect_faults_on_a_debug_register_access_and_clears_gd() {
    let (m, log) = run(|a| {
        let mut at = a.create_label();
        set_dr(a, dr6, 0);
        set_dr(a, dr7, 0x400 | (1 << 13));
        a.lea(rdx, ptr(at)).unwrap();
        a.set_label(&mut at).unwrap();
        a.mov(rbx, dr7).unwrap();
        a.hlt().unwrap();
    });
    assert_eq!(log, [(m.gpr(2), 0xffff_2ff0)], "at the MOV, DR6.BD");
    assert_eq!(m.gpr(3), 0x400, "GD cleared when the #DB was raised");
}

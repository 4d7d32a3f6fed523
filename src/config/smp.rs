//! `-smp [cpus=]N[,sockets=S][,dies=D][,cores=C][,threads=T][,maxcpus=M]`,
//! computed and checked as QEMU 7.2 does for the `pc` machine (which prefers
//! cores over sockets when only some values are given).

use anyhow::{bail, Context, Result};

/// The machine's CPU topology.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmpTopology {
    /// CPUs present at boot.
    pub cpus: u32,
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
    /// CPUs possible (hot-pluggable ones included).
    pub maxcpus: u32,
}

impl Default for SmpTopology {
    fn default() -> Self {
        Self {
            cpus: 1,
            sockets: 1,
            dies: 1,
            cores: 1,
            threads: 1,
            maxcpus: 1,
        }
    }
}

/// The most CPUs QEMU's `pc` (i440FX) machine takes.
pub const PC_MAX_CPUS: u32 = 255;

impl SmpTopology {
    /// Parse and complete a `-smp` argument.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut v = [None::<u32>; 6]; // cpus sockets dies cores threads maxcpus
        const NAMES: [&str; 6] = ["cpus", "sockets", "dies", "cores", "threads", "maxcpus"];
        for (i, part) in spec.split(',').enumerate() {
            let (k, val) = match part.split_once('=') {
                Some(kv) => kv,
                None if i == 0 => ("cpus", part),
                None => bail!("-smp {spec}: expected PROP=VALUE, got '{part}'"),
            };
            if k == "clusters" {
                bail!("-smp {spec}: clusters not supported by this machine's CPU topology");
            }
            let slot = NAMES
                .iter()
                .position(|n| *n == k)
                .with_context(|| format!("-smp {spec}: unknown property '{k}' (use {NAMES:?})"))?;
            let n: u32 = val
                .parse()
                .with_context(|| format!("-smp {spec}: {k}='{val}' is not a number"))?;
            if n == 0 {
                bail!("-smp {spec}: Invalid CPU topology: CPU topology parameters must be greater than zero");
            }
            v[slot] = Some(n);
        }
        let [cpus, sockets, dies, cores, threads, maxcpus] = v.map(|x| x.unwrap_or(0));
        Self::complete(spec, cpus, sockets, dies.max(1), cores, threads, maxcpus)
    }

    /// Fill in what was not given (0) and check the result.
    fn complete(
        spec: &str,
        cpus: u32,
        mut sockets: u32,
        dies: u32,
        mut cores: u32,
        mut threads: u32,
        mut maxcpus: u32,
    ) -> Result<Self> {
        let or1 = |x: u32| if x > 0 { x } else { 1 };
        let div = |a: u32, b: u64| (u64::from(a) / b.max(1)) as u32;
        if cpus == 0 && maxcpus == 0 {
            sockets = or1(sockets);
            cores = or1(cores);
            threads = or1(threads);
        } else {
            if maxcpus == 0 {
                maxcpus = cpus;
            }
            if cores == 0 {
                sockets = or1(sockets);
                threads = or1(threads);
                cores = div(
                    maxcpus,
                    u64::from(sockets) * u64::from(dies) * u64::from(threads),
                );
            } else if sockets == 0 {
                threads = or1(threads);
                sockets = div(
                    maxcpus,
                    u64::from(dies) * u64::from(cores) * u64::from(threads),
                );
            }
            if threads == 0 {
                threads = div(
                    maxcpus,
                    u64::from(sockets) * u64::from(dies) * u64::from(cores),
                );
            }
        }
        let product = u64::from(sockets) * u64::from(dies) * u64::from(cores) * u64::from(threads);
        if maxcpus == 0 {
            maxcpus = u32::try_from(product).unwrap_or(u32::MAX);
        }
        let cpus = if cpus > 0 { cpus } else { maxcpus };
        if product != u64::from(maxcpus) {
            bail!(
                "-smp {spec}: Invalid CPU topology: product of the hierarchy must match maxcpus: \
                 sockets ({sockets}) * dies ({dies}) * cores ({cores}) * threads ({threads}) \
                 != maxcpus ({maxcpus})"
            );
        }
        if maxcpus < cpus {
            bail!(
                "-smp {spec}: Invalid CPU topology: maxcpus must be equal to or greater than smp: \
                 sockets ({sockets}) * dies ({dies}) * cores ({cores}) * threads ({threads}) \
                 == maxcpus ({maxcpus}) < smp_cpus ({cpus})"
            );
        }
        if maxcpus > PC_MAX_CPUS {
            bail!(
                "-smp {spec}: Invalid SMP CPUs {maxcpus}. The max CPUs supported by machine 'pc' is {PC_MAX_CPUS}"
            );
        }
        Ok(Self {
            cpus,
            sockets,
            dies,
            cores,
            threads,
            maxcpus,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(spec: &str) -> (u32, u32, u32, u32, u32, u32) {
        let s = SmpTopology::parse(spec).unwrap();
        (s.cpus, s.sockets, s.dies, s.cores, s.threads, s.maxcpus)
    }

    #[test]
    fn completes_as_qemu_7_2_does() {
        assert_eq!(t("1"), (1, 1, 1, 1, 1, 1));
        assert_eq!(t("4"), (4, 1, 1, 4, 1, 4));
        assert_eq!(t("cpus=4"), (4, 1, 1, 4, 1, 4));
        assert_eq!(t("4,sockets=2"), (4, 2, 1, 2, 1, 4));
        assert_eq!(t("4,cores=2"), (4, 2, 1, 2, 1, 4));
        assert_eq!(t("8,sockets=2,cores=2"), (8, 2, 1, 2, 2, 8));
        assert_eq!(t("2,maxcpus=8"), (2, 1, 1, 8, 1, 8));
        assert_eq!(t("sockets=2,cores=3,threads=2"), (12, 2, 1, 3, 2, 12));
        assert_eq!(t("4,dies=2"), (4, 1, 2, 2, 1, 4));
        assert_eq!(t("maxcpus=4"), (4, 1, 1, 4, 1, 4));
    }

    #[test]
    fn refuses_what_qemu_refuses() {
        for (spec, msg) in [
            ("0", "greater than zero"),
            ("2,cores=0", "greater than zero"),
            ("4,sockets=2,cores=3", "product of the hierarchy"),
            ("4,maxcpus=2", "maxcpus must be equal"),
            (
                "8,sockets=1,cores=2,threads=2,maxcpus=4",
                "maxcpus must be equal",
            ),
            ("300", "max CPUs supported by machine 'pc' is 255"),
            ("two", "not a number"),
            ("2,bogus=1", "unknown property 'bogus'"),
            ("2,clusters=1", "clusters not supported"),
            ("2,4", "expected PROP=VALUE"),
        ] {
            let e = SmpTopology::parse(spec).unwrap_err().to_string();
            assert!(e.contains(msg), "{spec}: {e}");
        }
    }
}

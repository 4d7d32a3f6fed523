//! CPU models: named sets of CPUID feature flags (`-cpu MODEL[,+feat,...]`).
//!
//! [`Feature`] lists every flag the DBT implements, with its QEMU name and
//! its CPUID location; a [`FeatureSet`] is a set of them, and CPUID
//! (`interp/cpuid.rs`) reports exactly the set of the vCPU's model. The
//! models:
//!
//! * `hx86` (the default): the generic x86-64 hx86 has always modelled
//!   (everything below except SMEP, SMAP, UMIP, PKU, PKS, x2APIC and the
//!   TSC-deadline timer);
//! * `qemu64`: QEMU's `qemu64` restricted to what hx86 implements (QEMU
//!   adds MTRR and SVM, which hx86 does not model);
//! * `max`: every feature hx86 implements;
//! * `host`: KVM only, what the host's KVM offers.
//!
//! [`CpuSpec::parse`] reads the `-cpu` argument; [`CpuSpec::for_dbt`]
//! resolves it to the feature set the DBT runs with (asking for a flag the
//! DBT lacks is an error naming it). The KVM backend resolves the same spec
//! against `KVM_GET_SUPPORTED_CPUID`.

use thiserror::Error;

/// A CPUID output register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// Name and CPUID location of a [`Feature`].
#[derive(Clone, Copy, Debug)]
pub struct FeatureInfo {
    /// QEMU's name for it.
    pub name: &'static str,
    pub leaf: u32,
    pub sub: u32,
    pub reg: Reg,
    pub bit: u8,
}

macro_rules! features {
    ($($v:ident = $name:literal, $leaf:literal, $sub:literal, $reg:ident, $bit:literal;)*) => {
        /// A CPUID feature flag the DBT implements.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum Feature {
            $($v),*
        }

        impl Feature {
            /// Every feature, in table order.
            pub const ALL: &'static [Feature] = &[$(Feature::$v),*];
            const INFO: &'static [FeatureInfo] = &[$(FeatureInfo {
                name: $name,
                leaf: $leaf,
                sub: $sub,
                reg: Reg::$reg,
                bit: $bit,
            }),*];
        }
    };
}

features! {
    Fpu = "fpu", 1, 0, Edx, 0;
    De = "de", 1, 0, Edx, 2;
    Pse = "pse", 1, 0, Edx, 3;
    Tsc = "tsc", 1, 0, Edx, 4;
    Msr = "msr", 1, 0, Edx, 5;
    Pae = "pae", 1, 0, Edx, 6;
    Mce = "mce", 1, 0, Edx, 7;
    Cx8 = "cx8", 1, 0, Edx, 8;
    Apic = "apic", 1, 0, Edx, 9;
    Sep = "sep", 1, 0, Edx, 11;
    Pge = "pge", 1, 0, Edx, 13;
    Mca = "mca", 1, 0, Edx, 14;
    Cmov = "cmov", 1, 0, Edx, 15;
    Pat = "pat", 1, 0, Edx, 16;
    Pse36 = "pse36", 1, 0, Edx, 17;
    Clflush = "clflush", 1, 0, Edx, 19;
    Mmx = "mmx", 1, 0, Edx, 23;
    Fxsr = "fxsr", 1, 0, Edx, 24;
    Sse = "sse", 1, 0, Edx, 25;
    Sse2 = "sse2", 1, 0, Edx, 26;
    Pni = "pni", 1, 0, Ecx, 0;
    Ssse3 = "ssse3", 1, 0, Ecx, 9;
    Cx16 = "cx16", 1, 0, Ecx, 13;
    Sse41 = "sse4.1", 1, 0, Ecx, 19;
    Sse42 = "sse4.2", 1, 0, Ecx, 20;
    X2apic = "x2apic", 1, 0, Ecx, 21;
    Movbe = "movbe", 1, 0, Ecx, 22;
    Popcnt = "popcnt", 1, 0, Ecx, 23;
    TscDeadline = "tsc-deadline", 1, 0, Ecx, 24;
    Xsave = "xsave", 1, 0, Ecx, 26;
    Hypervisor = "hypervisor", 1, 0, Ecx, 31;
    Bmi1 = "bmi1", 7, 0, Ebx, 3;
    Smep = "smep", 7, 0, Ebx, 7;
    Bmi2 = "bmi2", 7, 0, Ebx, 8;
    Smap = "smap", 7, 0, Ebx, 20;
    Umip = "umip", 7, 0, Ecx, 2;
    Pku = "pku", 7, 0, Ecx, 3;
    Pks = "pks", 7, 0, Ecx, 31;
    Xsaveopt = "xsaveopt", 0xd, 1, Eax, 0;
    Xsavec = "xsavec", 0xd, 1, Eax, 1;
    Syscall = "syscall", 0x8000_0001, 0, Edx, 11;
    Nx = "nx", 0x8000_0001, 0, Edx, 20;
    Pdpe1gb = "pdpe1gb", 0x8000_0001, 0, Edx, 26;
    Rdtscp = "rdtscp", 0x8000_0001, 0, Edx, 27;
    Lm = "lm", 0x8000_0001, 0, Edx, 29;
    LahfLm = "lahf-lm", 0x8000_0001, 0, Ecx, 0;
    Abm = "abm", 0x8000_0001, 0, Ecx, 5;
}

impl Feature {
    pub fn info(self) -> &'static FeatureInfo {
        &Self::INFO[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// The feature called `name` (QEMU's spellings: `_` and `-` alike,
    /// `sse4_1`/`sse4-1`, `sse3` for `pni`, `xd` for `nx`, `i64` for `lm`).
    pub fn from_name(name: &str) -> Option<Feature> {
        let n = normalize(name);
        let n = match n.as_str() {
            "sse3" => "pni",
            "sse4-1" => "sse4.1",
            "sse4-2" => "sse4.2",
            "xd" => "nx",
            "i64" => "lm",
            other => other,
        };
        Feature::ALL.iter().copied().find(|f| f.name() == n)
    }
}

fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// QEMU feature names hx86 knows but does not implement: asking for one
/// is refused with a message saying so (instead of "unknown").
const NOT_IMPLEMENTED: &[&str] = &[
    "vme",
    "mtrr",
    "ss",
    "ht",
    "tm",
    "pbe",
    "ds",
    "acpi",
    "dtes64",
    "monitor",
    "ds-cpl",
    "vmx",
    "smx",
    "est",
    "tm2",
    "cid",
    "fma",
    "xtpr",
    "pdcm",
    "pcid",
    "dca",
    "aes",
    "avx",
    "f16c",
    "rdrand",
    "pclmulqdq",
    "fsgsbase",
    "tsc-adjust",
    "sgx",
    "hle",
    "avx2",
    "erms",
    "invpcid",
    "rtm",
    "mpx",
    "avx512f",
    "avx512dq",
    "rdseed",
    "adx",
    "clflushopt",
    "clwb",
    "avx512cd",
    "sha-ni",
    "avx512bw",
    "avx512vl",
    "avx512vbmi",
    "la57",
    "rdpid",
    "waitpkg",
    "cet-ss",
    "cet-ibt",
    "lam",
    "xsaves",
    "xgetbv1",
    "svm",
    "sse4a",
    "3dnow",
    "3dnowext",
    "mmxext",
    "fxsr-opt",
    "lzcnt-ext",
    "perfctr-core",
    "arat",
    "invtsc",
    "gfni",
    "vaes",
    "vpclmulqdq",
    "movdiri",
    "movdir64b",
    "fsrm",
    "serialize",
    "amx-tile",
    "ibpb",
    "stibp",
    "spec-ctrl",
    "ssbd",
    "md-clear",
    "arch-capabilities",
    "tsx-ctrl",
    "fma4",
    "xop",
    "tbm",
    "avx-vnni",
    "avx512-bf16",
    "avx512-fp16",
    "wbnoinvd",
    "clzero",
    "xsaveerptr",
    "rdpru",
];

/// A set of [`Feature`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Hash)]
pub struct FeatureSet(u64);

impl FeatureSet {
    pub const EMPTY: FeatureSet = FeatureSet(0);

    pub fn of(fs: &[Feature]) -> FeatureSet {
        fs.iter().fold(FeatureSet::EMPTY, |s, &f| s.with(f))
    }

    /// Every feature hx86 implements (the `max` model).
    pub fn all() -> FeatureSet {
        FeatureSet::of(Feature::ALL)
    }

    #[inline]
    pub fn has(self, f: Feature) -> bool {
        self.0 & (1 << f as u8) != 0
    }

    pub fn with(self, f: Feature) -> FeatureSet {
        FeatureSet(self.0 | 1 << f as u8)
    }

    pub fn without(self, f: Feature) -> FeatureSet {
        FeatureSet(self.0 & !(1 << f as u8))
    }

    pub fn iter(self) -> impl Iterator<Item = Feature> {
        Feature::ALL.iter().copied().filter(move |&f| self.has(f))
    }

    /// The bits of CPUID `leaf`/`sub` register `reg` this set advertises.
    pub fn cpuid_bits(self, leaf: u32, sub: u32, reg: Reg) -> u32 {
        self.iter()
            .map(Feature::info)
            .filter(|i| i.leaf == leaf && i.sub == sub && i.reg == reg)
            .fold(0, |acc, i| acc | 1 << i.bit)
    }
}

/// The CPU vendor CPUID names (`-cpu ...,vendor=`). The DBT models
/// Intel's behaviour everywhere except where a guest can tell them apart
/// by design: with `AuthenticAMD`, SYSCALL also works outside 64-bit mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Vendor {
    #[default]
    Intel,
    Amd,
}

impl Vendor {
    /// The 12-byte vendor ID of CPUID leaf 0.
    pub fn id(self) -> &'static [u8; 12] {
        match self {
            Vendor::Intel => b"GenuineIntel",
            Vendor::Amd => b"AuthenticAMD",
        }
    }

    fn from_id(s: &str) -> Option<Vendor> {
        [Vendor::Intel, Vendor::Amd]
            .into_iter()
            .find(|v| v.id() == s.as_bytes())
    }
}

/// A named CPU model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    /// hx86's own generic x86-64 (the default).
    Hx86,
    Qemu64,
    Max,
    /// QEMU's first-generation AMD Opteron (kvm-unit-tests' syscall test).
    OpteronG1,
    /// KVM only: what the host's KVM offers.
    Host,
}

impl Model {
    pub const ALL: &'static [Model] = &[
        Model::Hx86,
        Model::Qemu64,
        Model::Max,
        Model::OpteronG1,
        Model::Host,
    ];

    /// The vendor the model has unless `vendor=` says otherwise.
    pub fn default_vendor(self) -> Vendor {
        match self {
            Model::OpteronG1 => Vendor::Amd,
            _ => Vendor::Intel,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Model::Hx86 => "hx86",
            Model::Qemu64 => "qemu64",
            Model::Max => "max",
            Model::OpteronG1 => "Opteron_G1",
            Model::Host => "host",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Model::Hx86 => "hx86 generic x86-64 (default)",
            Model::Qemu64 => "QEMU Virtual CPU version 2.5+ (the features hx86 implements)",
            Model::Max => "Enables all features supported by the accelerator in the current host",
            Model::OpteronG1 => "AMD Opteron 240 (Gen 1 Class Opteron)",
            Model::Host => "KVM processor with all supported host features",
        }
    }

    /// The features of the model on the DBT (`Host`: `None`, KVM only).
    pub fn dbt_features(self) -> Option<FeatureSet> {
        use Feature::*;
        match self {
            Model::Hx86 => Some(
                FeatureSet::all()
                    .without(Smep)
                    .without(Smap)
                    .without(Umip)
                    .without(Pku)
                    .without(Pks)
                    .without(X2apic)
                    .without(TscDeadline),
            ),
            Model::Qemu64 => Some(FeatureSet::of(&[
                Fpu, De, Pse, Tsc, Msr, Pae, Mce, Cx8, Apic, Sep, Pge, Mca, Cmov, Pat, Pse36,
                Clflush, Mmx, Fxsr, Sse, Sse2, Pni, Cx16, Hypervisor, Syscall, Nx, Lm, LahfLm,
            ])),
            Model::Max => Some(FeatureSet::all()),
            // QEMU's Opteron_G1 without MTRR, which hx86 does not model.
            Model::OpteronG1 => Some(FeatureSet::of(&[
                Fpu, De, Pse, Tsc, Msr, Pae, Mce, Cx8, Apic, Sep, Pge, Mca, Cmov, Pat, Pse36,
                Clflush, Mmx, Fxsr, Sse, Sse2, Pni, Syscall, Nx, Lm,
            ])),
            Model::Host => None,
        }
    }
}

/// A bad `-cpu` argument.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CpuModelError {
    #[error("unknown CPU model '{0}' (-cpu help lists them)")]
    UnknownModel(String),
    #[error("unknown CPU feature '{0}' (-cpu help lists them)")]
    UnknownFeature(String),
    #[error("CPU feature '{0}' is not implemented by hx86's DBT")]
    NotImplemented(String),
    #[error("CPU model 'host' requires KVM")]
    HostNeedsKvm,
    #[error("CPU feature '{0}' is not offered by this host's KVM")]
    NotOfferedByKvm(String),
    #[error("bad -cpu option '{0}': expected +FEATURE, -FEATURE or FEATURE=on|off")]
    BadOption(String),
    #[error("CPU vendor '{0}' is not modelled: hx86's CPUs are GenuineIntel or AuthenticAMD")]
    Vendor(String),
}

/// A parsed `-cpu` argument: a model and feature changes, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuSpec {
    pub model: Model,
    /// (feature, on) in command-line order; later ones win.
    pub changes: Vec<(Feature, bool)>,
    /// `vendor=`, if given.
    pub vendor: Option<Vendor>,
}

impl Default for CpuSpec {
    fn default() -> Self {
        CpuSpec {
            model: Model::Hx86,
            changes: Vec::new(),
            vendor: None,
        }
    }
}

/// Properties QEMU's `-cpu` takes that do not change the feature set
/// hx86 reports (`check`/`enforce`: hx86 always refuses what it cannot
/// give; the rest concern details hx86 does not model).
const IGNORED_PROPS: &[&str] = &["check", "enforce", "host-phys-bits", "migratable", "kvm"];

impl CpuSpec {
    /// The vendor CPUID reports: `vendor=`, else the model's.
    pub fn vendor(&self) -> Vendor {
        self.vendor.unwrap_or(self.model.default_vendor())
    }

    /// Parses `MODEL[,+feat|-feat|feat=on|off|feat]...`.
    pub fn parse(s: &str) -> Result<CpuSpec, CpuModelError> {
        let mut parts = s.split(',');
        let m = parts.next().unwrap_or("").trim();
        let model = Model::ALL
            .iter()
            .copied()
            .find(|x| x.name() == m)
            .ok_or_else(|| CpuModelError::UnknownModel(m.to_string()))?;
        let mut changes = Vec::new();
        let mut vendor = None;
        for p in parts.map(str::trim).filter(|p| !p.is_empty()) {
            let (name, on) = if let Some(n) = p.strip_prefix('+') {
                (n, true)
            } else if let Some(n) = p.strip_prefix('-') {
                (n, false)
            } else if let Some((n, v)) = p.split_once('=') {
                if normalize(n) == "vendor" {
                    vendor = Some(
                        Vendor::from_id(v).ok_or_else(|| CpuModelError::Vendor(v.to_string()))?,
                    );
                    continue;
                }
                let on = match v {
                    "on" | "true" | "yes" => true,
                    "off" | "false" | "no" => false,
                    _ if IGNORED_PROPS.contains(&normalize(n).as_str()) => continue,
                    _ => return Err(CpuModelError::BadOption(p.to_string())),
                };
                (n, on)
            } else {
                (p, true)
            };
            if IGNORED_PROPS.contains(&normalize(name).as_str()) {
                continue;
            }
            match feature(name) {
                Ok(f) => changes.push((f, on)),
                // Turning off what hx86 never has changes nothing.
                Err(CpuModelError::NotImplemented(_)) if !on => {}
                Err(e) => return Err(e),
            }
        }
        Ok(CpuSpec {
            model,
            changes,
            vendor,
        })
    }

    /// The feature set the DBT runs with.
    pub fn for_dbt(&self) -> Result<FeatureSet, CpuModelError> {
        let base = self
            .model
            .dbt_features()
            .ok_or(CpuModelError::HostNeedsKvm)?;
        Ok(self.apply(base))
    }

    /// `base` with the spec's changes applied.
    pub fn apply(&self, base: FeatureSet) -> FeatureSet {
        self.changes.iter().fold(
            base,
            |s, &(f, on)| if on { s.with(f) } else { s.without(f) },
        )
    }
}

/// One CPUID leaf/subleaf as a host lists it (KVM_GET_SUPPORTED_CPUID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuidEntry {
    pub leaf: u32,
    pub sub: u32,
    /// EAX, EBX, ECX, EDX.
    pub regs: [u32; 4],
}

impl CpuidEntry {
    fn reg(&mut self, r: Reg) -> &mut u32 {
        &mut self.regs[r as usize]
    }
}

/// The CPUID registers that hold feature flags: a named model keeps only
/// its own bits there.
const FEATURE_WORDS: &[(u32, u32, Reg)] = &[
    (1, 0, Reg::Ecx),
    (1, 0, Reg::Edx),
    (7, 0, Reg::Ebx),
    (7, 0, Reg::Ecx),
    (7, 0, Reg::Edx),
    (0xd, 1, Reg::Eax),
    (0x8000_0001, 0, Reg::Ecx),
    (0x8000_0001, 0, Reg::Edx),
];

/// Leaf 1 ECX OSXSAVE and leaf 7 ECX OSPKE mirror CR4: the host sets them.
fn dynamic_bits(leaf: u32, reg: Reg) -> u32 {
    match (leaf, reg) {
        (1, Reg::Ecx) => 1 << 27,
        (7, Reg::Ecx) => 1 << 4,
        _ => 0,
    }
}

impl CpuSpec {
    /// Turns the host's supported CPUID (`entries`, from KVM) into the
    /// spec's: `host`, `max` and the default `hx86` model keep everything
    /// the host offers; `qemu64` keeps only its own features (those the
    /// host lacks are dropped, as QEMU does without `enforce`). Features
    /// turned on explicitly must be offered by the host.
    pub fn apply_to_host(&self, entries: &mut [CpuidEntry]) -> Result<(), CpuModelError> {
        let has = |entries: &[CpuidEntry], f: Feature| {
            let i = f.info();
            entries.iter().any(|e| {
                e.leaf == i.leaf && e.sub == i.sub && e.regs[i.reg as usize] & (1 << i.bit) != 0
            })
        };
        for &(f, on) in &self.changes {
            if on && !has(entries, f) {
                return Err(CpuModelError::NotOfferedByKvm(f.name().to_string()));
            }
        }
        let keep = match self.model {
            Model::Host | Model::Max | Model::Hx86 => None,
            m => m.dbt_features(),
        };
        if self.vendor.is_some() || self.model.default_vendor() != Vendor::Intel {
            let id = self.vendor().id();
            let w = |o: usize| u32::from_le_bytes([id[o], id[o + 1], id[o + 2], id[o + 3]]);
            for e in entries.iter_mut().filter(|e| e.leaf == 0) {
                e.regs[1] = w(0);
                e.regs[3] = w(4);
                e.regs[2] = w(8);
            }
        }
        for e in entries.iter_mut() {
            for &(leaf, sub, reg) in FEATURE_WORDS {
                if e.leaf != leaf || e.sub != sub {
                    continue;
                }
                let mut mask = match keep {
                    Some(k) => k.cpuid_bits(leaf, sub, reg) | dynamic_bits(leaf, reg),
                    None => !0,
                };
                for &(f, on) in &self.changes {
                    let i = f.info();
                    if (i.leaf, i.sub, i.reg) == (leaf, sub, reg) {
                        if on {
                            mask |= 1 << i.bit;
                        } else {
                            mask &= !(1 << i.bit);
                        }
                    }
                }
                *e.reg(reg) &= mask;
            }
        }
        Ok(())
    }
}

/// The feature named `name`, or why there is none.
fn feature(name: &str) -> Result<Feature, CpuModelError> {
    if let Some(f) = Feature::from_name(name) {
        return Ok(f);
    }
    let n = normalize(name);
    if NOT_IMPLEMENTED.contains(&n.as_str()) || n.starts_with("avx512") {
        Err(CpuModelError::NotImplemented(name.to_string()))
    } else {
        Err(CpuModelError::UnknownFeature(name.to_string()))
    }
}

/// `-cpu help`: the models and the feature names, in QEMU's layout.
pub fn help_text() -> String {
    let mut s = String::from("Available CPUs:\n");
    for m in Model::ALL {
        s += &format!("  {:<16}  {}\n", m.name(), m.description());
    }
    s += "\nRecognized CPUID flags:\n";
    let names: Vec<&str> = Feature::ALL.iter().map(|f| f.name()).collect();
    for line in names.chunks(10) {
        s += &format!("  {}\n", line.join(" "));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        assert!(Feature::ALL.len() <= 64);
        for (i, f) in Feature::ALL.iter().enumerate() {
            assert_eq!(*f as usize, i);
            assert_eq!(Feature::from_name(f.name()), Some(*f));
            assert!(!NOT_IMPLEMENTED.contains(&f.name()), "{}", f.name());
        }
    }

    #[test]
    fn parses_models_and_changes() {
        let s = CpuSpec::parse("qemu64,+umip,-sse2,smep=on,smap=off,pku").unwrap();
        let f = s.for_dbt().unwrap();
        assert!(f.has(Feature::Umip) && f.has(Feature::Smep) && f.has(Feature::Pku));
        assert!(!f.has(Feature::Sse2) && !f.has(Feature::Smap));
        assert!(f.has(Feature::Sse) && !f.has(Feature::Ssse3));
        // Later changes win.
        let s = CpuSpec::parse("max,-umip,+umip").unwrap();
        assert!(s.for_dbt().unwrap().has(Feature::Umip));
        assert_eq!(
            CpuSpec::parse("max,sse4_1=off,lahf_lm=off")
                .unwrap()
                .changes,
            vec![(Feature::Sse41, false), (Feature::LahfLm, false)]
        );
        assert_eq!(CpuSpec::parse("max,enforce,check").unwrap().changes, vec![]);
        // What kvm-unit-tests passes: vendor=GenuineIntel, and turning off
        // features hx86 never has (pcid) or has (x2apic).
        assert_eq!(
            CpuSpec::parse("qemu64,-x2apic,vendor=GenuineIntel,pcid=off,migratable=no")
                .unwrap()
                .changes,
            vec![(Feature::X2apic, false)]
        );
        // Vendors: the Opteron model is AMD unless told otherwise.
        let s = CpuSpec::parse("Opteron_G1,vendor=AuthenticAMD").unwrap();
        assert_eq!((s.model, s.vendor()), (Model::OpteronG1, Vendor::Amd));
        assert_eq!(CpuSpec::parse("Opteron_G1").unwrap().vendor(), Vendor::Amd);
        assert_eq!(
            CpuSpec::parse("qemu64,vendor=AuthenticAMD")
                .unwrap()
                .vendor(),
            Vendor::Amd
        );
        assert_eq!(CpuSpec::parse("qemu64").unwrap().vendor(), Vendor::Intel);
        assert!(matches!(
            CpuSpec::parse("qemu64,vendor=CyrixInstead"),
            Err(CpuModelError::Vendor(_))
        ));
        let f = CpuSpec::parse("qemu64,+x2apic,+tsc-deadline")
            .unwrap()
            .for_dbt()
            .unwrap();
        assert!(f.has(Feature::X2apic) && f.has(Feature::TscDeadline));
        assert_eq!(
            CpuSpec::default().for_dbt().unwrap(),
            Model::Hx86.dbt_features().unwrap()
        );
    }

    #[test]
    fn refuses_what_it_cannot_give() {
        use CpuModelError::*;
        assert_eq!(
            CpuSpec::parse("pentium9"),
            Err(UnknownModel("pentium9".into()))
        );
        assert_eq!(
            CpuSpec::parse("max,+avx"),
            Err(NotImplemented("avx".into()))
        );
        assert_eq!(
            CpuSpec::parse("max,+avx512vnni"),
            Err(NotImplemented("avx512vnni".into()))
        );
        assert_eq!(
            CpuSpec::parse("max,+bogus"),
            Err(UnknownFeature("bogus".into()))
        );
        assert_eq!(
            CpuSpec::parse("max,umip=maybe"),
            Err(BadOption("umip=maybe".into()))
        );
        assert_eq!(CpuSpec::parse("host").unwrap().for_dbt(), Err(HostNeedsKvm));
    }

    #[test]
    fn host_cpuid_filtered_by_the_spec() {
        let host = || {
            vec![
                CpuidEntry {
                    leaf: 1,
                    sub: 0,
                    // ECX: SSE3 SSSE3 AVX(28) x2APIC(21); EDX: FPU SSE2.
                    regs: [
                        0x906ea,
                        0,
                        (1 << 0) | (1 << 9) | (1 << 28) | (1 << 21),
                        1 | (1 << 26),
                    ],
                },
                CpuidEntry {
                    leaf: 7,
                    sub: 0,
                    // EBX: SMEP SMAP AVX2(5); ECX: UMIP.
                    regs: [0, (1 << 7) | (1 << 20) | (1 << 5), 1 << 2, 0],
                },
            ]
        };
        let mut e = host();
        CpuSpec::parse("host,-smap")
            .unwrap()
            .apply_to_host(&mut e)
            .unwrap();
        assert_eq!(e[0], host()[0]);
        assert_eq!(e[1].regs[1], (1 << 7) | (1 << 5));
        let mut e = host();
        CpuSpec::parse("qemu64,+umip")
            .unwrap()
            .apply_to_host(&mut e)
            .unwrap();
        assert_eq!(e[0].regs[2], 1, "SSE3 only: SSSE3, AVX and x2APIC dropped");
        assert_eq!(e[0].regs[3], 1 | (1 << 26));
        assert_eq!(e[1].regs[1..3], [0, 1 << 2]);
        assert_eq!(
            CpuSpec::parse("max,+pku")
                .unwrap()
                .apply_to_host(&mut host()),
            Err(CpuModelError::NotOfferedByKvm("pku".into()))
        );
    }

    #[test]
    fn cpuid_bits_follow_the_set() {
        let f = FeatureSet::of(&[Feature::Smap, Feature::Smep, Feature::Umip]);
        assert_eq!(f.cpuid_bits(7, 0, Reg::Ebx), (1 << 20) | (1 << 7));
        assert_eq!(f.cpuid_bits(7, 0, Reg::Ecx), 1 << 2);
        assert_eq!(f.cpuid_bits(1, 0, Reg::Edx), 0);
        assert!(help_text().contains("qemu64") && help_text().contains("umip"));
    }
}

//! CPU exceptions as instruction semantics raise them.

/// Exception vectors.
pub mod vector {
    pub const DE: u8 = 0;
    pub const DB: u8 = 1;
    pub const NMI: u8 = 2;
    pub const BP: u8 = 3;
    pub const OF: u8 = 4;
    pub const BR: u8 = 5;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const DF: u8 = 8;
    pub const TS: u8 = 10;
    pub const NP: u8 = 11;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;
    pub const AC: u8 = 17;
    pub const MC: u8 = 18;
    pub const XM: u8 = 19;
}

/// #PF error-code bits.
pub mod pf_err {
    pub const P: u32 = 1 << 0;
    pub const W: u32 = 1 << 1;
    pub const U: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
    pub const ID: u32 = 1 << 4;
    /// A protection key (PKRU or IA32_PKRS) denied the access.
    pub const PK: u32 = 1 << 5;
}

/// An exception raised by an instruction (or by event delivery), to be
/// delivered to the guest. A faulting instruction leaves the architectural
/// state as it was before it (RIP at the instruction).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
#[error("exception {vector} ({}) error code {error_code:?}", vector_name(*vector))]
pub struct Exception {
    pub vector: u8,
    pub error_code: Option<u32>,
    /// Faulting linear address for #PF (loaded into CR2 on delivery).
    pub address: u64,
}

impl Exception {
    pub const fn new(vector: u8) -> Self {
        Exception {
            vector,
            error_code: None,
            address: 0,
        }
    }
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Exception {
            vector,
            error_code: Some(code),
            address: 0,
        }
    }
    pub const fn de() -> Self {
        Self::new(vector::DE)
    }
    pub const fn ud() -> Self {
        Self::new(vector::UD)
    }
    pub const fn nm() -> Self {
        Self::new(vector::NM)
    }
    pub const fn gp(code: u32) -> Self {
        Self::with_code(vector::GP, code)
    }
    pub const fn gp0() -> Self {
        Self::with_code(vector::GP, 0)
    }
    pub const fn ss(code: u32) -> Self {
        Self::with_code(vector::SS, code)
    }
    pub const fn np(code: u32) -> Self {
        Self::with_code(vector::NP, code)
    }
    pub const fn ts(code: u32) -> Self {
        Self::with_code(vector::TS, code)
    }
    pub const fn pf(address: u64, code: u32) -> Self {
        Exception {
            vector: vector::PF,
            error_code: Some(code),
            address,
        }
    }
    pub const fn mf() -> Self {
        Self::new(vector::MF)
    }
    pub const fn xm() -> Self {
        Self::new(vector::XM)
    }

    /// Contributory exceptions (SDM vol. 3, table 6-4).
    pub fn is_contributory(&self) -> bool {
        matches!(
            self.vector,
            vector::DE | vector::TS | vector::NP | vector::SS | vector::GP
        )
    }
}

/// Short name of an exception vector.
pub fn vector_name(v: u8) -> &'static str {
    const NAMES: [&str; 21] = [
        "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS",
        "#GP", "#PF", "res", "#MF", "#AC", "#MC", "#XM", "#VE",
    ];
    NAMES.get(v as usize).copied().unwrap_or("irq")
}

/// The result type of instruction semantics and memory accesses.
pub type XResult<T> = Result<T, Exception>;

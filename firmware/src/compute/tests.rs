use super::*;
use crate::bootrom::{standard_messages, CODE64_OFFSET, ROM_SIZE};
use iced_x86::{Decoder, DecoderOptions, Mnemonic};

/// A second implementation of the workload, sharing nothing with
/// [`reference`]: trial division, a bitwise CRC-32, an insertion sort.
fn independent(cfg: &ComputeConfig) -> Checksums {
    let is_prime = |n: u32| {
        n >= 2
            && (2..)
                .take_while(|d| d * d <= n)
                .all(|d| !n.is_multiple_of(d))
    };
    let primes = (0..cfg.sieve_limit).filter(|&n| is_prime(n)).count() as u32;
    let crc = |words: &[u32]| {
        let mut c = 0xFFFF_FFFFu32;
        for w in words {
            for b in w.to_le_bytes() {
                c ^= u32::from(b);
                for _ in 0..8 {
                    let lsb = c & 1;
                    c >>= 1;
                    if lsb == 1 {
                        c ^= 0xEDB8_8320;
                    }
                }
            }
        }
        !c
    };
    let mut state = 0x1234_5678u32;
    let (mut last_crc, mut last_sort) = (0, 0);
    for _ in 0..cfg.rounds {
        let mut x = state | 1;
        let mut buf = Vec::new();
        for _ in 0..cfg.crc_bytes / 4 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            buf.push(x);
        }
        last_crc = crc(&buf);
        let s = &mut buf[..cfg.sort_len as usize];
        for i in 1..s.len() {
            let mut j = i;
            while j > 0 && s[j - 1] > s[j] {
                s.swap(j - 1, j);
                j -= 1;
            }
        }
        last_sort = crc(s);
        state = state.rotate_left(5) ^ last_crc ^ last_sort ^ primes;
    }
    Checksums {
        primes,
        crc: last_crc,
        sort: last_sort,
        state,
    }
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32_bytes(&crc32_table(), *b"123456789"), 0xCBF4_3926);
    assert_eq!(crc32_bytes(&crc32_table(), []), 0);
}

#[test]
fn prime_counts_are_the_known_ones() {
    for (limit, count) in [
        (2, 0),
        (3, 1),
        (10, 4),
        (100_000, 9592),
        (1_000_000, 78_498),
    ] {
        assert_eq!(reference_primes(limit), count, "below {limit}");
    }
}

#[test]
fn reference_agrees_with_an_independent_implementation() {
    for cfg in [
        ComputeConfig::small(),
        ComputeConfig {
            rounds: 3,
            sieve_limit: 2,
            crc_bytes: 4,
            sort_len: 1,
        },
        ComputeConfig {
            rounds: 1,
            sieve_limit: 1000,
            crc_bytes: 4096,
            sort_len: 1024,
        },
    ] {
        assert_eq!(reference(&cfg).unwrap(), independent(&cfg), "{cfg:?}");
    }
    let c = reference(&ComputeConfig::small()).unwrap();
    assert_eq!(c.primes, 2262);
    assert_eq!(
        result_line(&ComputeConfig::small(), &c),
        format!(
            "hx86 compute: rounds=2 primes=2262 crc={:08x} sort={:08x} state={:08x}",
            c.crc, c.sort, c.state
        )
    );
}

#[test]
fn rom_is_deterministic_and_decodes() {
    let cfg = ComputeConfig::small();
    let rom = compute_rom(&cfg).unwrap();
    assert_eq!(rom.len(), ROM_SIZE);
    assert_eq!(rom, compute_rom(&cfg).unwrap());
    assert_ne!(rom, compute_rom(&ComputeConfig::default()).unwrap());
    for (off, text) in standard_messages("compute")
        .iter()
        .map(|(o, t)| (*o, t.as_str()))
        .chain(MESSAGES)
    {
        assert_eq!(&rom[off..off + text.len()], text.as_bytes());
        assert_eq!(rom[off + text.len()], 0);
    }
    let mut d = Decoder::with_ip(64, &rom[CODE64_OFFSET..], 0xFFFF_2000, DecoderOptions::NONE);
    let code: Vec<_> = (0..400).map(|_| d.decode()).collect();
    assert!(code.iter().all(|i| !i.is_invalid()));
    for m in [Mnemonic::Rol, Mnemonic::Movzx, Mnemonic::Hlt, Mnemonic::Div] {
        assert!(code.iter().any(|i| i.mnemonic() == m), "{m:?}");
    }
    // The guest compares its state with the reference's.
    let want = reference(&cfg).unwrap().state;
    assert!(code
        .iter()
        .any(|i| i.mnemonic() == Mnemonic::Cmp && i.immediate32() == want));
}

#[test]
fn bad_parameters_are_refused() {
    let d = ComputeConfig::default();
    for bad in [
        ComputeConfig { rounds: 0, ..d },
        ComputeConfig {
            rounds: MAX_ROUNDS + 1,
            ..d
        },
        ComputeConfig {
            sieve_limit: 1,
            ..d
        },
        ComputeConfig {
            sieve_limit: MAX_SIEVE_LIMIT + 1,
            ..d
        },
        ComputeConfig { crc_bytes: 6, ..d },
        ComputeConfig { crc_bytes: 0, ..d },
        ComputeConfig {
            crc_bytes: MAX_CRC_BYTES + 4,
            ..d
        },
        ComputeConfig { sort_len: 0, ..d },
        ComputeConfig {
            sort_len: d.crc_bytes / 4 + 1,
            ..d
        },
    ] {
        assert!(compute_rom(&bad).is_err(), "{bad:?}");
        assert!(reference(&bad).is_err(), "{bad:?}");
    }
    let max = ComputeConfig {
        rounds: 1,
        sieve_limit: MAX_SIEVE_LIMIT,
        crc_bytes: MAX_CRC_BYTES,
        sort_len: 1,
    };
    assert!(max.validate().is_ok());
    let huge = ComputeConfig {
        sieve_limit: u32::MAX,
        ..d
    };
    assert!(huge.validate().is_err());
    assert!(huge.ram_needed() > u64::from(u32::MAX));
    assert!(max.ram_needed() <= 32 << 20);
    assert!(ComputeConfig::default().ram_needed() < 3 << 20);
}

#[test]
fn parameters_parse() {
    assert_eq!(ComputeConfig::parse("").unwrap(), ComputeConfig::default());
    assert_eq!(
        ComputeConfig::parse("small").unwrap(),
        ComputeConfig::small()
    );
    let c = ComputeConfig::parse("rounds=3, sieve=5000,crc=64,sort=16").unwrap();
    assert_eq!(
        c,
        ComputeConfig {
            rounds: 3,
            sieve_limit: 5000,
            crc_bytes: 64,
            sort_len: 16
        }
    );
    for bad in ["rounds", "rounds=x", "speed=3", "crc=7", "rounds=-1"] {
        let e = ComputeConfig::parse(bad).unwrap_err().to_string();
        assert!(e.contains("compute ROM"), "{bad}: {e}");
    }
}

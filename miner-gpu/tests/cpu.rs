//! The CPU kernels against the engine's SHA-256d (the `sha2` crate).

mod common;

use common::*;
use miner_gpu::{CpuBackend, Kernel, SearchControl, Work};

/// Every kernel this CPU runs, which every comparison below covers. The SHA-NI kernel
/// exists only where the CPU has the SHA extensions: where it does not, say so on every
/// test that would have covered it (and fail if `BITPLACE_REQUIRE_SHANI` is set, for a
/// machine that is meant to have them), rather than pass without a word.
fn kernels() -> Vec<Kernel> {
    let available = Kernel::available();
    if !available.contains(&Kernel::ShaNi) {
        let msg = "SHA-NI kernel NOT tested: this CPU lacks the SHA extensions";
        assert!(
            std::env::var_os("BITPLACE_REQUIRE_SHANI").is_none(),
            "{msg}"
        );
        eprintln!("{msg}");
    }
    available
}

#[test]
fn every_kernel_matches_brute_force_on_random_headers() {
    let mut rng = Rng(1);
    for kernel in kernels() {
        for round in 0..6 {
            let header = rng.header();
            // Top word around 1/64 of the range: several winners per few thousand nonces,
            // and plenty of candidates that pass the early reject but fail the full check
            // only when the top words are equal (exercised with `top` below).
            let top = (u32::MAX / 64).wrapping_add(rng.next_u32() % 1000);
            let target = target_with_top(top);
            let start = rng.next_u32();
            let count = 2000 + round * 37; // not a multiple of the lane count
            let work = Work::new(header, target);
            let got: Vec<u32> = CpuBackend::with_kernel(kernel, 1)
                .search(&work, start, count as u64, &SearchControl::new())
                .iter()
                .map(|s| s.nonce)
                .collect();
            let want = brute_force(&header, &target, start, count);
            assert!(!want.is_empty());
            assert_eq!(got, want, "{kernel:?} round {round}");
        }
    }
}

#[test]
fn every_lane_position_reports_its_own_winner() {
    // For each kernel and each lane position, pick a target equal to that nonce's hash:
    // exactly that nonce (bar an astronomically unlikely tie) must be found, in that lane.
    let mut rng = Rng(2);
    let header = rng.header();
    for kernel in kernels() {
        let lanes = kernel.lanes();
        let start = 0xffff_fff0u32; // the wrap sits inside the first blocks
        for lane in 0..2 * lanes {
            let nonce = start.wrapping_add(lane);
            let work0 = Work::new(header, [0xff; 32]);
            let target = work0.hash(nonce).0;
            let work = Work::new(header, target);
            let found = CpuBackend::with_kernel(kernel, 1).search(
                &work,
                start,
                2 * lanes as u64,
                &SearchControl::new(),
            );
            let expect = brute_force(&header, &target, start, 2 * lanes);
            assert!(expect.contains(&nonce));
            assert_eq!(
                found.iter().map(|s| s.nonce).collect::<Vec<_>>(),
                expect,
                "{kernel:?} lane {lane}"
            );
            for s in &found {
                let mut h = header;
                h[76..].copy_from_slice(&s.nonce.to_le_bytes());
                assert_eq!(s.hash.0, consensus::hash::sha256d(&h));
            }
        }
    }
}

#[test]
fn all_hashes_match_engine_with_max_target() {
    // With the maximum target every nonce wins, so every lane's full hash is compared.
    let mut rng = Rng(3);
    for kernel in kernels() {
        let header = rng.header();
        let work = Work::new(header, [0xff; 32]);
        let start = u32::MAX - 40;
        let found =
            CpuBackend::with_kernel(kernel, 2).search(&work, start, 100, &SearchControl::new());
        assert_eq!(found.len(), 100, "{kernel:?}");
        for (i, s) in found.iter().enumerate() {
            assert_eq!(s.nonce, start.wrapping_add(i as u32));
            let mut h = header;
            h[76..].copy_from_slice(&s.nonce.to_le_bytes());
            assert_eq!(s.hash, consensus::hash::Hash256::sha256d(&h));
        }
    }
}

#[test]
fn bitcoin_genesis_is_found_by_search_on_every_kernel() {
    let genesis = bitcoin_genesis();
    let target = genesis.bits.to_target().unwrap().to_be_bytes();
    let work = Work::from_hex(&hex::encode(genesis.to_bytes()), &hex::encode(target)).unwrap();
    for kernel in kernels() {
        let start = GENESIS_NONCE - 50_000;
        let found =
            CpuBackend::with_kernel(kernel, 2).search(&work, start, 100_000, &SearchControl::new());
        assert_eq!(found.len(), 1, "{kernel:?}");
        assert_eq!(found[0].nonce, GENESIS_NONCE);
        assert_eq!(found[0].hash.to_string(), GENESIS_HASH);
    }
}

#[test]
fn cancel_stops_a_search() {
    let ctl = SearchControl::new();
    ctl.cancel();
    let work = Work::new([0; 80], [0; 32]);
    let found = CpuBackend::new(2).search(&work, 0, 1 << 32, &ctl);
    assert!(found.is_empty());
    assert_eq!(ctl.hashes(), 0);
}

#[test]
fn detect_picks_the_fastest_kernel() {
    let available = kernels();
    assert_eq!(available[0], Kernel::Portable);
    assert_eq!(Kernel::detect(), *available.last().unwrap());
    // Measured (BENCHMARKS.md): SHA-NI with 4 interleaved nonces beats AVX-512 where both
    // exist, AVX-512 beats AVX2.
    #[cfg(target_arch = "x86_64")]
    {
        let want = if std::arch::is_x86_feature_detected!("sha") {
            Kernel::ShaNi
        } else if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
        {
            Kernel::Avx512
        } else if std::arch::is_x86_feature_detected!("avx2") {
            Kernel::Avx2
        } else {
            Kernel::Portable
        };
        assert_eq!(Kernel::detect(), want);
    }
}

#[test]
fn calibration_picks_a_kernel_this_cpu_runs_and_the_backend_uses_it() {
    let available = kernels();
    let picked = Kernel::calibrate();
    assert!(
        available.contains(&picked),
        "{picked:?} not in {available:?}"
    );
    if available.len() > 1 {
        assert_ne!(
            picked,
            Kernel::Portable,
            "a vector kernel always beats one lane"
        );
    }
    let backend = CpuBackend::new(1);
    assert!(available.contains(&backend.kernel()));
    assert_eq!(
        CpuBackend::new(1).kernel(),
        backend.kernel(),
        "measured once"
    );
}

#[test]
fn the_sha_ni_kernel_is_offered_exactly_when_the_cpu_has_sha() {
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(
            Kernel::available().contains(&Kernel::ShaNi),
            std::arch::is_x86_feature_detected!("sha")
                && std::arch::is_x86_feature_detected!("sse4.1")
                && std::arch::is_x86_feature_detected!("ssse3")
        );
        // Four interleaved nonces per step (the lane-position test walks all of them).
        assert_eq!(Kernel::ShaNi.lanes(), 4);
    }
    #[cfg(not(target_arch = "x86_64"))]
    assert!(!Kernel::available().contains(&Kernel::ShaNi));
    assert_eq!(Kernel::ShaNi.name(), "shani");
}

#[test]
fn bad_hex_is_a_typed_error() {
    assert!(matches!(
        Work::from_hex("00", &"0".repeat(64)),
        Err(miner_gpu::MinerError::HeaderLength(2))
    ));
    assert!(matches!(
        Work::from_hex(&"0".repeat(160), "00"),
        Err(miner_gpu::MinerError::TargetLength(2))
    ));
    assert!(matches!(
        Work::from_hex(&"z".repeat(160), &"0".repeat(64)),
        Err(miner_gpu::MinerError::Hex("header"))
    ));
}

//! The WGSL kernel against the engine's SHA-256d, on whatever adapter wgpu finds (in CI:
//! Mesa's lavapipe). With CI=true a missing adapter is a failure, not a skip.

mod common;

use common::*;
use miner_gpu::gpu::{open_device, pick_adapter};
use miner_gpu::{GpuBackend, MinerError, SearchControl, Work};

/// Nonces per invocation used by most tests: small, so one dispatch has many invocations
/// and a test can put a winner at every position.
const NPI: u32 = 4;

fn gpu(npi: u32) -> Option<GpuBackend> {
    let adapter = match pick_adapter(None) {
        Ok(a) => a,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true but no GPU adapter: {e} (install mesa-vulkan-drivers)");
            }
            eprintln!("note: skipping GPU test, no adapter: {e}");
            return None;
        }
    };
    let (device, queue) = open_device(&adapter).expect("device");
    Some(GpuBackend::new(device, queue, &adapter.get_info().name, npi).expect("pipeline"))
}

fn nonces(found: &[miner_gpu::Solution]) -> Vec<u32> {
    found.iter().map(|s| s.nonce).collect()
}

#[test]
fn random_headers_and_targets_match_brute_force() {
    let Some(mut g) = gpu(NPI) else { return };
    let mut rng = Rng(10);
    for round in 0..4 {
        let header = rng.header();
        // ~1 in 256 nonces wins: dozens of winners per dispatch.
        let top = (u32::MAX / 256).wrapping_add(rng.next_u32() % 100_000);
        let target = target_with_top(top);
        let start = rng.next_u32();
        let count = 6000 + round * 131;
        g.set_batch(64 * NPI * 4);
        let found = g
            .search(
                &Work::new(header, target),
                start,
                count as u64,
                &SearchControl::new(),
            )
            .unwrap();
        let want = brute_force(&header, &target, start, count);
        assert!(want.len() > 5, "several winners at once");
        assert_eq!(nonces(&found), want, "round {round}");
    }
}

#[test]
fn every_nonce_position_in_a_dispatch_reports() {
    // With the maximum target every nonce wins: each invocation and each of its
    // NONCES_PER_INVOCATION slots must report exactly its own nonce, with the right hash.
    let Some(mut g) = gpu(NPI) else { return };
    let header = Rng(11).header();
    let work = Work::new(header, [0xff; 32]);
    let per_dispatch = 64 * NPI * 2;
    g.set_batch(per_dispatch);
    let start = 1_000_000;
    let count = per_dispatch * 2 + 77; // two full dispatches and a partial one
    let found = g
        .search(&work, start, count as u64, &SearchControl::new())
        .unwrap();
    assert_eq!(nonces(&found), (start..start + count).collect::<Vec<_>>());
    for s in &found {
        let mut h = header;
        h[76..].copy_from_slice(&s.nonce.to_le_bytes());
        assert_eq!(s.hash.0, consensus::hash::sha256d(&h));
    }
}

#[test]
fn search_wraps_past_two_to_the_32() {
    let Some(mut g) = gpu(NPI) else { return };
    let header = Rng(12).header();
    let target = target_with_top(u32::MAX / 16);
    let start = u32::MAX - 1500;
    g.set_batch(64 * NPI);
    let found = g
        .search(
            &Work::new(header, target),
            start,
            3000,
            &SearchControl::new(),
        )
        .unwrap();
    let want = brute_force(&header, &target, start, 3000);
    assert!(want.iter().any(|&n| n < 1500) && want.iter().any(|&n| n > start));
    assert_eq!(nonces(&found), want);
}

#[test]
fn more_winners_than_the_results_buffer_are_not_lost() {
    let Some(mut g) = gpu(NPI) else { return };
    let work = Work::new(Rng(13).header(), [0xff; 32]);
    g.set_batch(64 * NPI * 16); // 4096 winners in one dispatch > capacity
    let found = g.search(&work, 7, 5000, &SearchControl::new()).unwrap();
    assert_eq!(nonces(&found), (7..5007).collect::<Vec<_>>());
}

#[test]
fn bitcoin_genesis_is_solved_by_search() {
    let Some(mut g) = gpu(32) else { return };
    let genesis = bitcoin_genesis();
    let target = genesis.bits.to_target().unwrap().to_be_bytes();
    let work = Work::from_hex(&hex::encode(genesis.to_bytes()), &hex::encode(target)).unwrap();
    let found = g
        .search(
            &work,
            GENESIS_NONCE - 70_000,
            140_000,
            &SearchControl::new(),
        )
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].nonce, GENESIS_NONCE);
    assert_eq!(found[0].hash.to_string(), GENESIS_HASH);
}

#[test]
fn cancelled_search_stops() {
    let Some(mut g) = gpu(NPI) else { return };
    let ctl = SearchControl::new();
    ctl.cancel();
    let found = g
        .search(&Work::new([0; 80], [0; 32]), 0, 1 << 32, &ctl)
        .unwrap();
    assert!(found.is_empty());
    assert_eq!(ctl.hashes(), 0);
}

#[test]
fn unknown_adapter_name_is_a_clear_error() {
    match pick_adapter(Some("no-such-gpu-anywhere")) {
        Err(MinerError::NoAdapter(msg)) => assert!(msg.contains("no-such-gpu-anywhere"), "{msg}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("found an adapter that cannot exist"),
    }
}

//! The WGSL kernel against the engine's SHA-256d, on whatever adapter wgpu finds (in CI:
//! Mesa's lavapipe). With CI=true a missing adapter is a failure, not a skip.

mod common;

use common::*;
use miner_gpu::gpu::{open_device, pick_adapter, select_adapters, DispatchConfig};
use miner_gpu::{GpuBackend, MinerError, SearchControl, Work};

/// Nonces per invocation used by most tests: small, so one dispatch has many invocations
/// and a test can put a winner at every position.
const NPI: u32 = 4;

fn gpu(npi: u32) -> Option<GpuBackend> {
    gpu_with(DispatchConfig::new(npi, 64))
}

fn gpu_with(config: DispatchConfig) -> Option<GpuBackend> {
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
    Some(GpuBackend::new(device, queue, &adapter.get_info().name, config).expect("pipeline"))
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

#[test]
fn dispatches_past_the_x_limit_continue_in_y() {
    // With at most 3 workgroups per dimension, a dispatch of 10 workgroups runs as
    // 3 x 4 (two of them past the end): every nonce must still be reported exactly once.
    let Some(mut g) = gpu(NPI) else { return };
    g.set_max_groups_per_dimension(3);
    let per_group = 64 * NPI;
    g.set_batch(per_group * 9);
    assert_eq!(g.batch(), per_group * 9, "3 x 3 groups fit");
    let work = Work::new(Rng(14).header(), [0xff; 32]);
    let start = 40_000;
    let count = per_group * 9 + 5; // one dispatch of 9 groups, a tail of one group
    let found = g
        .search(&work, start, count as u64, &SearchControl::new())
        .unwrap();
    assert_eq!(nonces(&found), (start..start + count).collect::<Vec<_>>());
    // And with a random target, against brute force, over several y rows.
    g.set_batch(per_group * 7);
    let header = Rng(15).header();
    let target = target_with_top(u32::MAX / 64);
    let found = g
        .search(&Work::new(header, target), 9, 8000, &SearchControl::new())
        .unwrap();
    assert_eq!(nonces(&found), brute_force(&header, &target, 9, 8000));
}

#[test]
fn every_workgroup_size_and_nonce_count_finds_the_same_nonces() {
    let header = Rng(16).header();
    let target = target_with_top(u32::MAX / 128);
    let want = brute_force(&header, &target, 77, 5000);
    assert!(want.len() > 10);
    for config in [
        DispatchConfig::new(1, 256),
        DispatchConfig::new(8, 128),
        DispatchConfig::new(64, 32),
        DispatchConfig::new(3, 100),
    ] {
        let Some(mut g) = gpu_with(config) else {
            return;
        };
        assert_eq!(g.config(), config);
        g.set_batch(config.nonces_per_invocation * config.workgroup_size * 3);
        let found = g
            .search(&Work::new(header, target), 77, 5000, &SearchControl::new())
            .unwrap();
        assert_eq!(nonces(&found), want, "{config}");
    }
}

#[test]
fn a_kernel_that_does_not_compile_is_an_error_not_a_panic() {
    let adapter = match pick_adapter(None) {
        Ok(a) => a,
        Err(e) => {
            assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "{e}");
            return;
        }
    };
    let (device, queue) = open_device(&adapter).unwrap();
    let broken =
        miner_gpu::gpu::SHADER.replace("let w3 = bswap(nonce);", "let w3 = bswap(nonce, 1u);");
    match GpuBackend::with_shader(device, queue, "x", DispatchConfig::DEFAULT, &broken) {
        Err(MinerError::Shader(msg)) => assert!(msg.contains("bswap"), "{msg}"),
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("a broken kernel compiled"),
    }
    // A workgroup the device cannot run is refused with the limit named.
    let (device, queue) = open_device(&adapter).unwrap();
    let err = GpuBackend::new(device, queue, "x", DispatchConfig::new(8, 100_000))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("limit"), "{err}");
}

#[test]
fn calibration_measures_each_configuration_and_keeps_the_fastest() {
    let Some(mut g) = gpu(NPI) else { return };
    let configs = [DispatchConfig::new(2, 64), DispatchConfig::new(16, 64)];
    let table = g
        .calibrate(&configs, std::time::Duration::from_millis(150))
        .unwrap();
    assert_eq!(table.len(), 2);
    assert!(table.iter().all(|m| m.hashes_per_second > 0.0));
    let best = table
        .iter()
        .max_by(|a, b| a.hashes_per_second.total_cmp(&b.hashes_per_second))
        .unwrap();
    assert_eq!(g.config(), best.config);
    // The kept pipeline still finds the genesis nonce.
    let genesis = bitcoin_genesis();
    let target = genesis.bits.to_target().unwrap().to_be_bytes();
    let work = Work::from_hex(&hex::encode(genesis.to_bytes()), &hex::encode(target)).unwrap();
    let found = g
        .search(&work, GENESIS_NONCE - 5000, 10_000, &SearchControl::new())
        .unwrap();
    assert_eq!(nonces(&found), [GENESIS_NONCE]);
}

#[test]
fn adapters_are_selected_by_index_and_by_name() {
    let Some(g) = gpu(NPI) else { return };
    let name = g.adapter().to_string();
    let word = name.split_whitespace().next().unwrap().to_lowercase();
    let by_name = select_adapters(&[word.to_uppercase()]).unwrap();
    assert!(!by_name.is_empty());
    assert!(by_name
        .iter()
        .all(|a| a.get_info().name.to_lowercase().contains(&word)));
    // One device is driven through one API only (lavapipe is seen by Vulkan and GL).
    let apis: std::collections::HashSet<_> = by_name.iter().map(|a| a.get_info().backend).collect();
    assert_eq!(apis.len(), 1, "{apis:?}");
    let first = select_adapters(&["0".to_string()]).unwrap();
    assert_eq!(first.len(), 1);
    // The same adapter named twice is driven once.
    let twice = select_adapters(&["0".to_string(), "0".to_string()]).unwrap();
    assert_eq!(twice.len(), 1);
    match select_adapters(&["0".to_string(), "no-such-gpu".to_string()]) {
        Err(MinerError::NoAdapter(msg)) => {
            assert!(msg.contains("no-such-gpu") && msg.contains("0: "), "{msg}")
        }
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("matched a GPU that cannot exist"),
    }
}

//! The `bitplace-miner` binary as users and checks drive it.

use std::process::Command;

const GENESIS_HEADER: &str = "0100000000000000000000000000000000000000000000000000000000000000000000003ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a29ab5f49ffff001d00000000";
const GENESIS_TARGET: &str = "00000000ffff0000000000000000000000000000000000000000000000000000";

fn miner(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bitplace-miner"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("run bitplace-miner")
}

fn have_adapter() -> bool {
    let ok = miner_gpu::gpu::pick_adapter(None).is_ok();
    if !ok && std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but no GPU adapter (install mesa-vulkan-drivers)");
    }
    ok
}

#[test]
fn search_finds_bitcoin_genesis_on_each_backend() {
    let mut backends = vec!["cpu"];
    if have_adapter() {
        backends.push("gpu");
    } else {
        eprintln!("note: no GPU adapter, gpu backend not exercised");
    }
    for backend in backends {
        let out = miner(&[
            "search",
            "--header",
            GENESIS_HEADER,
            "--target",
            GENESIS_TARGET,
            "--start",
            "2083200000",
            "--count",
            "100000",
            "--backend",
            backend,
        ]);
        assert!(
            out.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "2083236893 000000000019d6689c085ae165831e934ff763ae46a2a6c172b3f1b60a8ce26f\n",
            "{backend}"
        );
    }
}

#[test]
fn bench_prints_one_json_line() {
    let out = miner(&[
        "bench",
        "--backend",
        "cpu",
        "--threads",
        "1",
        "--seconds",
        "0.3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["threads"], 1);
    assert!(v["adapter"].is_string());
    assert!(v["hashes_per_second"].as_f64().unwrap() > 0.0);
}

#[test]
fn bad_input_is_one_line_and_non_zero() {
    let out = miner(&[
        "search",
        "--header",
        "00",
        "--target",
        GENESIS_TARGET,
        "--backend",
        "cpu",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("160 hex digits"), "{err}");

    let out = miner(&[
        "bench",
        "--backend",
        "gpu",
        "--adapter",
        "no-such-gpu",
        "--seconds",
        "0.1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("no GPU adapter found"), "{err}");

    let out = miner(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr).unwrap().contains("--node"));
}

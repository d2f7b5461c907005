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

/// The binary exactly as a user's shell would start it: no XDG_RUNTIME_DIR set.
fn miner_bare(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bitplace-miner"))
        .args(args)
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("run bitplace-miner")
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn payout_address() -> String {
    consensus::Address([0x4d; 20]).to_string()
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
fn bench_prints_a_line_per_device_and_a_total() {
    let out = miner(&[
        "bench",
        "--backend",
        "cpu",
        "--threads",
        "1",
        "--seconds",
        "0.3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let v = &lines[0];
    assert_eq!(v["backend"], "cpu");
    assert_eq!(v["adapter"], "cpu");
    assert_eq!(v["threads"], 1);
    assert!(v["kernel"].is_string());
    let hps = v["hashes_per_second"].as_f64().unwrap();
    assert!(hps > 0.0);
    assert_eq!(lines[1]["total"], true);
    assert_eq!(lines[1]["devices"], 1);
    assert_eq!(lines[1]["hashes_per_second"].as_f64().unwrap(), hps);
}

#[test]
fn bench_all_drives_the_named_gpu_and_the_cpu_together() {
    if !have_adapter() {
        return;
    }
    let name = miner_gpu::gpu::pick_adapter(None).unwrap().get_info().name;
    let word = name.split_whitespace().next().unwrap().to_string();
    let out = miner(&[
        "bench",
        "--backend",
        "all",
        "--adapter",
        &word,
        "--threads",
        "1",
        "--seconds",
        "0.5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "gpu, cpu, total: {stdout}");
    assert_eq!(lines[0]["backend"], "gpu");
    assert!(
        lines[0]["adapter"].as_str().unwrap().contains(&word),
        "{stdout}"
    );
    assert!(lines[0]["dispatch"].is_string());
    assert_eq!(lines[1]["backend"], "cpu");
    let sum = lines[0]["hashes_per_second"].as_f64().unwrap()
        + lines[1]["hashes_per_second"].as_f64().unwrap();
    assert!(lines[0]["hashes_per_second"].as_f64().unwrap() > 0.0);
    assert!(lines[1]["hashes_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(lines[2]["total"], true);
    assert_eq!(lines[2]["devices"], 2);
    assert!((lines[2]["hashes_per_second"].as_f64().unwrap() - sum).abs() <= 2.0);
}

#[test]
fn bench_sweep_prints_a_row_per_configuration_and_marks_the_best() {
    if !have_adapter() {
        return;
    }
    let out = miner(&[
        "bench",
        "--backend",
        "gpu",
        "--sweep",
        "--dispatch",
        "4x64",
        "--seconds",
        "0.2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{stdout}");
    assert_eq!(rows[0]["nonces_per_invocation"], 4);
    assert_eq!(rows[0]["workgroup_size"], 64);
    assert_eq!(rows[0]["best"], true);
    assert!(rows[0]["hashes_per_second"].as_f64().unwrap() > 0.0);
    let out = miner(&["bench", "--backend", "cpu", "--sweep"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--backend gpu"), "{}", stderr(&out));
}

#[test]
fn no_xdg_runtime_dir_noise_on_stderr() {
    let out = miner_bare(&["adapters"]);
    let err = stderr(&out);
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
    if have_adapter() {
        assert!(out.status.success(), "{err}");
        let out = miner_bare(&[
            "search",
            "--header",
            GENESIS_HEADER,
            "--target",
            GENESIS_TARGET,
            "--start",
            "2083236000",
            "--count",
            "1000",
            "--backend",
            "gpu",
        ]);
        let err = stderr(&out);
        assert!(out.status.success(), "{err}");
        assert!(err.is_empty(), "nothing on stderr: {err}");
    }
}

#[test]
fn more_threads_than_cores_warns_and_still_runs() {
    let cores = std::thread::available_parallelism().unwrap().get();
    let threads = (cores + 1).to_string();
    let out = miner(&[
        "bench",
        "--backend",
        "cpu",
        "--threads",
        &threads,
        "--seconds",
        "0.2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.matches("warning").count(), 1, "{err}");
    assert!(err.contains(&format!("--threads {threads}")), "{err}");
    let out = miner(&[
        "bench",
        "--backend",
        "cpu",
        "--threads",
        "1",
        "--seconds",
        "0.2",
    ]);
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
}

/// Mistakes that retrying cannot fix: one line, non-zero, within seconds.
#[test]
fn permanent_mistakes_end_the_miner_with_one_line() {
    let addr = payout_address();
    let cases: [(&[&str], &str); 7] = [
        (
            &["--node", "ftp://127.0.0.1:1", "--address", &addr],
            "scheme `ftp`",
        ),
        (
            &["--node", "https://127.0.0.1:1", "--address", &addr],
            "no TLS",
        ),
        (
            &["--node", "127.0.0.1:99999", "--address", &addr],
            "not a URL",
        ),
        (&["--address", "bp1notanaddress"], "not a payout address"),
        (&["--pool", "stratum+tcp://127.0.0.1"], "--user"),
        (
            &["--pool", "stratum+tcp://127.0.0.1", "--user", "w"],
            "no port",
        ),
        (
            &["--pool", "stratum+ssl://127.0.0.1:3333", "--user", "w"],
            "no TLS",
        ),
    ];
    for (args, want) in cases {
        let t0 = std::time::Instant::now();
        let out = miner(args);
        assert!(
            t0.elapsed().as_secs() < 10,
            "{args:?} took {:?}",
            t0.elapsed()
        );
        assert!(!out.status.success(), "{args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
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

    // No arguments: the node defaults (to 127.0.0.1:8080), the payout address cannot.
    let out = miner(&[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("--address") && err.contains("http://127.0.0.1:8080"),
        "{err}"
    );
}

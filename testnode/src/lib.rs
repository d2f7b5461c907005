//! Starting the real `bitplace-node` from other crates' tests.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for the package under test, and a dev-dependency
//! on `bitplace-api` would give its library, not the `bitplace-node` binary users run
//! (artifact dependencies are unstable). So tests run the `bitplace-node` that the
//! workspace build puts next to their own binaries (`scripts/test.sh` runs
//! `cargo build --workspace --bins` first). A missing or stale node is a clear failure,
//! never a silent run of old code; `BITPLACE_NODE_BIN` overrides the lookup.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// The `bitplace-node` binary in the same directory as `sibling` (a binary of the
/// calling package, e.g. `env!("CARGO_BIN_EXE_bitplace-miner")`). Panics, saying how to
/// build it, when it is missing or older than any of its sources.
pub fn node_bin(sibling: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("BITPLACE_NODE_BIN") {
        return PathBuf::from(p);
    }
    let bin = sibling
        .with_file_name("bitplace-node")
        .with_extension(std::env::consts::EXE_EXTENSION);
    let how = "build it first with `cargo build -p bitplace-api --bin bitplace-node` \
               (same profile and CARGO_TARGET_DIR as this test; scripts/test.sh does it), \
               or point BITPLACE_NODE_BIN at one";
    let Ok(meta) = std::fs::metadata(&bin) else {
        panic!("bitplace-node not found at {}: {how}", bin.display());
    };
    let newer = newer_sources(&bin, meta.modified().expect("file times"));
    assert!(
        newer.is_empty(),
        "{} is older than its sources ({}): {how}",
        bin.display(),
        newer.join(", ")
    );
    bin
}

/// Sources newer than the binary, by Cargo's own dependency list (`<binary>.d`, written
/// next to every binary it links): exactly the files whose change makes Cargo rebuild it.
fn newer_sources(bin: &Path, built: SystemTime) -> Vec<String> {
    let Ok(dep_info) = std::fs::read_to_string(bin.with_extension("d")) else {
        return Vec::new();
    };
    let Some((_, deps)) = dep_info.split_once(": ") else {
        return Vec::new();
    };
    // Cargo escapes spaces in paths as "\ ".
    let deps = deps.replace("\\ ", "\0");
    deps.split_whitespace()
        .map(|d| d.replace('\0', " "))
        .filter(|d| {
            std::fs::metadata(d)
                .and_then(|m| m.modified())
                .is_ok_and(|t| t > built)
        })
        .collect()
}

/// A port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Kills the child when dropped (also while unwinding from a failed assertion).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `bitplace-node` on 127.0.0.1, its stderr in a log file; killed on drop.
pub struct NodeProcess {
    _child: ChildGuard,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    log: PathBuf,
}

impl NodeProcess {
    /// Starts `bin --data-dir <dir>/data --listen 127.0.0.1:<free port> <args...>` and
    /// waits (up to 30 s) until `/healthz` answers 200.
    pub fn start(bin: &Path, dir: &Path, args: &[&str]) -> NodeProcess {
        Self::start_with_env(bin, dir, args, &[])
    }

    /// Like [`NodeProcess::start`], with extra environment variables (e.g. `RUST_LOG`).
    pub fn start_with_env(
        bin: &Path,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> NodeProcess {
        let log = dir.join("node.log");
        let port = free_port();
        let child = Command::new(bin)
            .envs(env.iter().copied())
            .arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("create the node log"))
            .spawn()
            .expect("spawn bitplace-node");
        let node = NodeProcess {
            _child: ChildGuard(child),
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while healthz(port) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "node did not come up; its log:\n{}",
                node.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        node
    }

    /// What the node wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Status code of `GET /healthz`, or None while nothing answers.
fn healthz(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

//! Starting the real `bitplace-node` from other crates' tests: the one harness every
//! suite (api, miner, wallet, reliability, benches) starts its nodes through.
//!
//! Cargo sets `CARGO_BIN_EXE_<name>` only for the package under test, and a dev-dependency
//! on `bitplace-api` would give its library, not the `bitplace-node` binary users run
//! (artifact dependencies are unstable). So tests run the `bitplace-node` that the
//! workspace build puts next to their own binaries (`scripts/test.sh` runs
//! `cargo build --workspace --bins` first). A missing or stale node is a clear failure,
//! never a silent run of old code; `BITPLACE_NODE_BIN` overrides the lookup.
//!
//! A node is started on `--listen 127.0.0.1:0` (and `--stratum 127.0.0.1:0` when asked
//! for): the kernel picks free ports and the node says which in its ready line, so two
//! tests can never race for a port that was free a moment ago. A restart pins the ports
//! the first run was given, as a real operator's node keeps its address.

mod ready;

pub use ready::{read_from, ready_in, Bound};

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

/// How long a node may take from spawn to its ready line (a cold debug build replaying a
/// log on a loaded 2-core CI machine takes seconds, never this).
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `bitplace-node` binary in the same directory as `sibling` (a binary of the
/// calling package, e.g. `env!("CARGO_BIN_EXE_bitplace-miner")`). Panics, saying how to
/// build it, when it is missing or older than any of its sources.
pub fn node_bin(sibling: &Path) -> PathBuf {
    node_bin_in(sibling.parent().unwrap_or(Path::new(".")))
}

/// [`node_bin`] for the binary in `dir` (a target profile directory).
pub fn node_bin_in(dir: &Path) -> PathBuf {
    if let Some(p) = std::env::var_os("BITPLACE_NODE_BIN") {
        return PathBuf::from(p);
    }
    let bin = node_path_in(dir);
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

/// Where the `bitplace-node` binary of the profile directory `dir` is, or would be.
pub fn node_path_in(dir: &Path) -> PathBuf {
    dir.join("bitplace-node")
        .with_extension(std::env::consts::EXE_EXTENSION)
}

/// Whether `bin` exists and is newer than every source it was built from.
pub fn is_current(bin: &Path) -> bool {
    std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .is_ok_and(|built| newer_sources(bin, built).is_empty())
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

/// The chain flags that make every nonce search a few hashes: the easiest target the
/// consensus rules allow and no retargeting. Use with `--dev` (main refuses them).
pub fn fast_chain_args() -> [String; 4] {
    [
        "--difficulty".into(),
        format!("{:08x}", consensus::CompactTarget::EASIEST.0),
        "--retarget-interval".into(),
        "0".into(),
    ]
}

/// `--dev` plus [`fast_chain_args`]: the quick dev chain most tests run.
pub fn fast_dev_args() -> Vec<String> {
    let mut args = vec!["--dev".to_string()];
    args.extend(fast_chain_args());
    args
}

/// Why a node did not come up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error("cannot spawn {bin}: {source}")]
    Spawn { bin: String, source: std::io::Error },
    #[error("bitplace-node exited during startup ({status}); its log:\n{log}")]
    Exited {
        status: std::process::ExitStatus,
        log: String,
    },
    #[error("bitplace-node printed no ready line within {within:?}; its log:\n{log}")]
    Timeout { within: Duration, log: String },
}

/// What to run: the binary, its data directory and flags, where its stderr goes, and the
/// addresses to listen on (`127.0.0.1:0` until pinned).
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub bin: PathBuf,
    pub data_dir: PathBuf,
    /// stderr of every run is appended here.
    pub log: PathBuf,
    pub listen: SocketAddr,
    /// `Some` serves Stratum there (port 0: any free one).
    pub stratum: Option<SocketAddr>,
    pub args: Vec<OsString>,
    pub env: Vec<(OsString, OsString)>,
}

fn any_loopback_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

impl NodeSpec {
    pub fn new(bin: &Path, data_dir: &Path, log: &Path) -> NodeSpec {
        NodeSpec {
            bin: bin.to_path_buf(),
            data_dir: data_dir.to_path_buf(),
            log: log.to_path_buf(),
            listen: any_loopback_port(),
            stratum: None,
            args: Vec::new(),
            env: Vec::new(),
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> NodeSpec {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> NodeSpec {
        self.env
            .push((key.as_ref().to_os_string(), value.as_ref().to_os_string()));
        self
    }

    /// Also serve Stratum, on a port the kernel picks.
    pub fn with_stratum(mut self) -> NodeSpec {
        self.stratum = Some(any_loopback_port());
        self
    }

    /// Keeps the ports a previous run was given, for restarts over the same data.
    pub fn pin(&mut self, bound: &Bound) {
        self.listen = bound.api;
        if self.stratum.is_some() {
            self.stratum = bound.stratum;
        }
    }

    /// The full command line; stdio is left to the caller.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen")
            .arg(self.listen.to_string());
        if let Some(s) = self.stratum {
            cmd.arg("--stratum").arg(s.to_string());
        }
        cmd.args(&self.args);
        for (k, v) in &self.env {
            if k != "RUST_LOG" {
                cmd.env(k, v);
            }
        }
        if let Some(filter) = self.log_filter() {
            cmd.env("RUST_LOG", filter);
        }
        cmd
    }

    /// The caller's log filter (its `RUST_LOG`, else ours), with the ready line always
    /// let through: the harness reads the bound addresses from it.
    fn log_filter(&self) -> Option<OsString> {
        let asked = self
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "RUST_LOG")
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var_os("RUST_LOG"))?;
        let mut filter = asked;
        filter.push(format!(",{}=info", ready::TARGET));
        Some(filter)
    }

    /// Spawns the node, its stderr appended to the log, stdin and stdout closed.
    pub fn spawn(&self) -> Result<Child, StartError> {
        let spawn_error = |source| StartError::Spawn {
            bin: self.bin.display().to_string(),
            source,
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(spawn_error)?;
        self.command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(spawn_error)
    }

    /// Spawns the node and waits for its ready line.
    pub fn start(&self) -> Result<Started, StartError> {
        let offset = log_len(&self.log);
        let mut child = ChildGuard(self.spawn()?);
        match ready::wait(&mut child.0, &self.log, offset, START_TIMEOUT)? {
            ready::Outcome::Ready(bound) => Ok(Started { child, bound }),
            ready::Outcome::Exited(status) => Err(StartError::Exited {
                status,
                log: log_tail(&self.log),
            }),
        }
    }

    /// Spawns the node expecting it to refuse to start: `Ok(Err(status))` once it exits,
    /// `Ok(Ok(started))` if it came up instead.
    pub fn start_expecting_exit(
        &self,
        within: Duration,
    ) -> Result<Result<Started, std::process::ExitStatus>, StartError> {
        let offset = log_len(&self.log);
        let mut child = ChildGuard(self.spawn()?);
        Ok(
            match ready::wait(&mut child.0, &self.log, offset, within)? {
                ready::Outcome::Ready(bound) => Ok(Started { child, bound }),
                ready::Outcome::Exited(status) => Err(status),
            },
        )
    }
}

/// A node that printed its ready line.
pub struct Started {
    pub child: ChildGuard,
    pub bound: Bound,
}

/// The log's length now: where the next run's output will start.
pub fn log_len(log: &Path) -> u64 {
    std::fs::metadata(log).map(|m| m.len()).unwrap_or(0)
}

/// The last few KB of a log file (for failure messages).
pub fn log_tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let start = s.len().saturating_sub(4000);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    s[start..].to_string()
}

/// Kills the child when dropped (also while unwinding from a failed assertion).
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running `bitplace-node` on 127.0.0.1, its stderr in `<dir>/node.log`; killed on drop.
pub struct NodeProcess {
    _child: ChildGuard,
    /// `http://127.0.0.1:<port>`
    pub url: String,
    /// Where it listens (API, and Stratum when started with it).
    pub bound: Bound,
    log: PathBuf,
}

impl NodeProcess {
    /// Starts `bin --data-dir <dir>/data --listen 127.0.0.1:0 <args...>`; panics with the
    /// node's log if it does not come up.
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
        let mut spec = Self::spec(bin, dir).args(args);
        for (k, v) in env {
            spec = spec.env(k, v);
        }
        Self::launch(&spec)
    }

    /// The spec [`NodeProcess::start`] runs, for callers that add to it (Stratum, env).
    pub fn spec(bin: &Path, dir: &Path) -> NodeSpec {
        NodeSpec::new(bin, &dir.join("data"), &dir.join("node.log"))
    }

    /// Starts `spec`; panics with the node's log if it does not come up.
    pub fn launch(spec: &NodeSpec) -> NodeProcess {
        let started = spec.start().unwrap_or_else(|e| panic!("{e}"));
        NodeProcess {
            url: started.bound.url(),
            bound: started.bound,
            _child: started.child,
            log: spec.log.clone(),
        }
    }

    /// What the node wrote to stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

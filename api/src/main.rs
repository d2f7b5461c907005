//! `bitplace-node`: runs a Bitplace node (HTTP API, push events, web page) over an
//! embedded redb ledger; `rebuild` and `verify` maintain a data directory offline.

use anyhow::{bail, Context, Result};
use api::custody::Custody;
use api::peers::{BanConfig, PeerConfig, PeerFile, PeerService};
use api::{AppState, NodeConfig};
use clap::{Args, Parser, Subcommand, ValueEnum};
use engine::params::{ChainParams, Network};
use engine::pow::CompactTarget;
use engine::{Engine, EngineConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Name of the redb file inside the data directory.
const LEDGER_FILE: &str = "ledger.redb";

#[derive(Parser, Debug)]
#[command(
    name = "bitplace-node",
    version,
    about = "Bitplace proof-of-work ledger node"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Drop every projection, replay the event log, print the UTXO set hash.
    Rebuild(OfflineArgs),
    /// Check the log's hash chain and that projections equal a rebuild.
    Verify(OfflineArgs),
}

#[derive(Args, Debug)]
struct OfflineArgs {
    #[arg(long, default_value = "./bitplace-data")]
    data_dir: PathBuf,
    /// The data directory's network (default: detected).
    #[arg(long)]
    network: Option<NetworkArg>,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum NetworkArg {
    Main,
    Dev,
}

#[derive(Copy, Clone, Debug, ValueEnum, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Data directory (the redb ledger, the known peers and, in dev mode, dev wallets live
    /// inside).
    #[arg(long, default_value = "./bitplace-data")]
    data_dir: PathBuf,
    /// Address for the HTTP API and web page.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A peer's base URL (repeatable); added to the peers saved in the data directory.
    #[arg(long = "peer")]
    peers: Vec<String>,
    /// The chain to run: main, or dev (easy start, reward 10, maturity 1, per-block
    /// retarget, no dev routes unless --dev) [default: main; --dev sets dev].
    #[arg(long, value_enum)]
    network: Option<NetworkArg>,
    /// Dev network plus dev routes (custody wallets, mine in the request, reset). The
    /// chain parameters below then take their dev defaults.
    #[arg(long)]
    dev: bool,
    #[arg(long, value_parser = parse_bits, help = with_defaults(
        "Starting compact target as hex (difficulty of block 1)",
        |p| format!("{:08x}", p.initial_bits.0),
    ))]
    difficulty: Option<CompactTarget>,
    #[arg(long, help = with_defaults(
        "Seconds between blocks that retargeting aims for",
        |p| p.target_block_time.to_string(),
    ))]
    target_block_time: Option<u32>,
    #[arg(long, help = with_defaults(
        "Blocks between difficulty retargets: 0 = fixed difficulty, 1 = every block \
         (2^((interval - T) / 4T) per block), N = every N blocks by actual / expected time",
        |p| p.retarget_interval.to_string(),
    ))]
    retarget_interval: Option<u64>,
    #[arg(long, help = with_defaults("Block reward in units", |p| p.reward.to_string()))]
    reward: Option<u64>,
    #[arg(long, help = with_defaults(
        "Blocks between reward halvings (0 = never)",
        |p| p.halving_interval.to_string(),
    ))]
    halving_interval: Option<u64>,
    #[arg(long, help = with_defaults(
        "Most transactions per block (coinbase included)",
        |p| p.max_block_txs.to_string(),
    ))]
    max_block_txs: Option<usize>,
    #[arg(long, help = with_defaults(
        "Blocks before a coinbase output can be spent",
        |p| p.coinbase_maturity.to_string(),
    ))]
    coinbase_maturity: Option<u64>,
    #[arg(long, value_parser = engine::params::parse_chain_work, help = with_defaults(
        "Minimum chain work, in hex: while our best chain has less, side-chain blocks are \
         not stored and peers whose chain claims less are not synced from",
        |p| format!("{:x}", p.min_chain_work),
    ))]
    min_chain_work: Option<engine::params::U256>,
    /// Most megabytes (10^6 bytes) of stored blocks off the best chain within 144 blocks
    /// of work of the tip; a side block past it is refused (side_chain_full) unless it
    /// makes its branch the best chain.
    #[arg(long, default_value_t = engine::engine::DEFAULT_MAX_SIDE_CHAIN_BYTES / 1_000_000)]
    max_side_chain_mb: u64,
    /// MiB of the ledger file's page cache (redb's, in this process; pages past it are
    /// read again from the file, through the OS page cache). Lower it on a small host.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1 << 20))]
    db_cache_mb: u64,
    /// Rows of UTXO-set and index changes kept in memory past their blocks' commits
    /// before they are written to the ledger file in one sorted pass (the coin cache,
    /// ~100 bytes a row; 0: written with every block). The log is written first either
    /// way; a node killed with rows unwritten rebuilds its projections from the log at
    /// its next start.
    #[arg(long, default_value_t = engine::engine::DEFAULT_COIN_CACHE_ROWS)]
    coin_cache_rows: usize,
    /// Token for admin routes (peer registration) outside dev mode [default: none: admin
    /// routes refused; dev mode needs none].
    #[arg(long, env = "BITPLACE_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Serve Stratum V1 on this address [default: off].
    #[arg(long)]
    stratum: Option<SocketAddr>,
    /// Share difficulty a Stratum connection starts at (fractions work, e.g. 0.001);
    /// vardiff then moves it toward --stratum-share-seconds, never above the network's.
    #[arg(long, default_value_t = 1.0, value_parser = positive_f64)]
    stratum_difficulty: f64,
    /// Seconds between shares that vardiff aims for, per connection.
    #[arg(long, default_value_t = 10.0, value_parser = positive_f64)]
    stratum_share_seconds: f64,
    /// Most open Stratum connections (0 = no cap); more are refused with a Stratum error.
    #[arg(long, default_value_t = 10_000)]
    stratum_max_connections: usize,
    /// Most open Stratum connections per client IP (IPv6 by /64; 0 = no cap).
    #[arg(long, default_value_t = 1_000)]
    stratum_max_per_ip: usize,
    /// Seconds a Stratum connection may send nothing before it is closed.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    stratum_idle_timeout: u64,
    /// Seconds a Stratum connection has to authorize.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u64).range(1..))]
    stratum_auth_timeout: u64,
    /// Log line format on stderr: text (no colours unless stderr is a terminal) or json
    /// (one object per line, same fields). RUST_LOG overrides the level (default info).
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Serve this directory at / instead of the built-in page (history fallback to
    /// index.html) [default: the built-in page].
    #[arg(long)]
    web_root: Option<PathBuf>,
    /// Requests per second per client IP (also the burst size); over it: 429. 0 = no limit.
    /// Loopback clients are exempt unless --rate-limit-loopback.
    #[arg(long, default_value_t = api::state::DEFAULT_RATE_LIMIT)]
    rate_limit: u32,
    /// Apply --rate-limit to loopback clients too.
    #[arg(long)]
    rate_limit_loopback: bool,
    /// Seconds a client address (IPv6: its /64) is refused pushes to /v1/p2p/blocks and
    /// /v1/p2p/tx (403 banned) once its pushes broke a consensus rule or flooded orphan
    /// blocks; a known peer at that address is ignored as long. 0 = no push bans.
    #[arg(long, default_value_t = api::peers::BAN_SECS)]
    ban_secs: u64,
    /// Score and ban loopback clients' pushes too (by default they are exempt: behind a
    /// reverse proxy on the same host every client is loopback).
    #[arg(long)]
    ban_loopback: bool,
    /// Start a new chain in a data directory whose ledger is gone but whose other files
    /// (peers.json, dev wallets) remain; without it such a directory is refused.
    #[arg(long)]
    reinit: bool,
    /// Most HTTP connections open at once (lowered to stay below the open-file limit).
    #[arg(long, default_value_t = api::listen::DEFAULT_MAX_CONNECTIONS)]
    max_connections: usize,
    /// Most HTTP connections open at once from one client IP (IPv6: per /64), loopback
    /// included. 0 = no per-client cap.
    #[arg(long, default_value_t = api::listen::DEFAULT_MAX_PER_IP)]
    max_connections_per_ip: usize,
    /// Seconds a client has to send a whole request head (also how long an idle kept-alive
    /// connection stays open); a socket that sends nothing is closed after it.
    #[arg(long, default_value_t = api::listen::DEFAULT_HEADER_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    header_timeout: u64,
    /// Seconds a connection may stay with nothing read or written before it is closed.
    #[arg(long, default_value_t = api::listen::DEFAULT_IDLE_TIMEOUT.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    idle_timeout: u64,
    /// Most open event streams (GET /v1/events) at once; past it: 503 too_many_subscribers.
    #[arg(long, default_value_t = api::state::DEFAULT_MAX_SSE_CLIENTS)]
    max_sse_clients: usize,
}

fn positive_f64(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a positive number")),
    }
}

/// `what`, then the network defaults it falls back to: `[main: X; dev (--dev): Y]`.
fn with_defaults(what: &str, value: impl Fn(&ChainParams) -> String) -> String {
    format!(
        "{what} [main: {}; dev (--dev): {}]",
        value(&ChainParams::main()),
        value(&ChainParams::dev())
    )
}

fn parse_bits(s: &str) -> Result<CompactTarget, String> {
    let hex = s.trim().trim_start_matches("0x").trim_start_matches("0X");
    let v = u32::from_str_radix(hex, 16)
        .map_err(|e| format!("`{s}` is not a compact target in hex (like 1f00ffff): {e}"))?;
    let bits = CompactTarget(v);
    bits.to_target()
        .map_err(|e| format!("`{s}` is not a valid compact target: {e}"))?;
    Ok(bits)
}

fn main() {
    let cli = Cli::parse();
    let format = cli.run.log_format;
    init_logging(format);
    let result = match cli.command {
        Some(Command::Rebuild(a)) => rebuild(&a),
        Some(Command::Verify(a)) => verify(&a),
        None => run(cli.run),
    };
    if let Err(e) = result {
        // One line, the whole cause chain.
        eprintln!("bitplace-node: error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour codes only for a person at a terminal, never into files or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn params(a: &RunArgs) -> Result<ChainParams> {
    let network = match (a.dev, a.network) {
        (true, Some(NetworkArg::Main)) => bail!("--dev runs the dev network; drop --network main"),
        (true, _) | (false, Some(NetworkArg::Dev)) => Network::Dev,
        _ => Network::Main,
    };
    let mut p = ChainParams::for_network(network);
    if let Some(bits) = a.difficulty {
        p.initial_bits = bits;
        // An easier start than the limit would be refused by validation: widen the limit.
        let limit = p.pow_limit.to_target().context("pow limit")?;
        if bits.to_target().context("difficulty")? > limit {
            p.pow_limit = bits;
        }
    }
    if let Some(t) = a.target_block_time {
        if t == 0 {
            bail!("--target-block-time must be at least 1 second");
        }
        p.target_block_time = t;
    }
    if let Some(r) = a.retarget_interval {
        p.retarget_interval = r;
    }
    if let Some(r) = a.reward {
        p.reward = r;
    }
    if let Some(h) = a.halving_interval {
        p.halving_interval = h;
    }
    if let Some(m) = a.max_block_txs {
        if m < 1 {
            bail!("--max-block-txs must be at least 1 (the coinbase)");
        }
        p.max_block_txs = m;
    }
    if let Some(m) = a.coinbase_maturity {
        p.coinbase_maturity = m;
    }
    if let Some(w) = a.min_chain_work {
        p.min_chain_work = w;
    }
    Ok(p)
}

/// Files that only a node which ran here leaves behind.
const LEFT_BEHIND: &[&str] = &[api::peers::PEERS_FILE, api::custody::FILE_NAME];

fn open_engine(data_dir: &Path, config: EngineConfig, reinit: bool) -> Result<Engine> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path = data_dir.join(LEDGER_FILE);
    check_ledger_not_lost(data_dir, &path, reinit)?;
    Engine::open(&path, config)
        .with_context(|| format!("cannot open the ledger {}", path.display()))
}

/// A missing ledger next to a node's other files means it was deleted or lost (a wrong
/// mount, a half-restored backup): starting a new chain there silently would serve
/// height 0 to the wallets and peers that knew this node. Refused unless `--reinit`.
fn check_ledger_not_lost(data_dir: &Path, ledger: &Path, reinit: bool) -> Result<()> {
    if reinit || ledger.exists() {
        return Ok(());
    }
    if let Some(found) = LEFT_BEHIND.iter().find(|f| data_dir.join(f).exists()) {
        bail!(
            "{} has no {LEDGER_FILE} but has {found}: the ledger was deleted or is not \
             where it was; restore it, or pass --reinit to start a new chain here",
            data_dir.display()
        );
    }
    Ok(())
}

/// Opens an existing data directory for offline work, detecting its network.
fn open_offline(a: &OfflineArgs) -> Result<Engine> {
    let path = a.data_dir.join(LEDGER_FILE);
    if !path.exists() {
        bail!("no ledger at {}", path.display());
    }
    let candidates = match a.network {
        Some(NetworkArg::Main) => vec![Network::Main],
        Some(NetworkArg::Dev) => vec![Network::Dev],
        None => vec![Network::Main, Network::Dev],
    };
    let mut last = None;
    for n in candidates {
        match Engine::open(&path, EngineConfig::new(ChainParams::for_network(n))) {
            Ok(e) => return Ok(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one network tried"))
        .with_context(|| format!("cannot open the ledger {}", path.display()))
}

fn rebuild(a: &OfflineArgs) -> Result<()> {
    let path = a.data_dir.join(LEDGER_FILE);
    if path.exists() {
        if let Some(kept) = engine::repair_file(&path).context("rebuild failed")? {
            eprintln!(
                "the ledger file was damaged: rebuilt it from its log (damaged file kept as {})",
                kept.display()
            );
        }
    }
    let engine = open_offline(a)?;
    let r = engine.rebuild().context("rebuild failed")?;
    drop(engine);
    eprintln!(
        "rebuilt the projections from the log in {:.2} s (dropping the old {:.2} s, folding \
         the log {:.2} s, writing back {:.2} s, committing {:.2} s)",
        (r.dropping + r.folding + r.writing_back + r.committing).as_secs_f64(),
        r.dropping.as_secs_f64(),
        r.folding.as_secs_f64(),
        r.writing_back.as_secs_f64(),
        r.committing.as_secs_f64()
    );
    // The rebuild rewrote every projection row: hand the old pages back to the disk.
    let c = engine::compact_file(&path).context("compaction after the rebuild failed")?;
    eprintln!(
        "compacted the ledger file: {} → {} bytes",
        c.before, c.after
    );
    println!("{}", hex::encode(r.utxo_set_hash.0));
    Ok(())
}

fn verify(a: &OfflineArgs) -> Result<()> {
    let engine = open_offline(a)?;
    let report = engine.verify().context("verification failed")?;
    if !report.ok() {
        bail!(
            "{} log records; projections differ from a rebuild: {}",
            report.records,
            report.mismatched.join(", ")
        );
    }
    let st = engine.status().context("status")?;
    println!(
        "ok: {} log records, height {}, utxo set hash {}",
        report.records, st.height, st.utxo_set_hash
    );
    Ok(())
}

fn run(a: RunArgs) -> Result<()> {
    let params = params(&a)?;
    let dev = a.dev;
    if let Some(root) = &a.web_root {
        if !root.join("index.html").is_file() {
            bail!("--web-root {}: no index.html there", root.display());
        }
    }
    let mut config = EngineConfig::new(params);
    config.max_side_chain_bytes = a.max_side_chain_mb.saturating_mul(1_000_000);
    config.db_cache_bytes = usize::try_from(a.db_cache_mb << 20).context("--db-cache-mb")?;
    config.coin_cache_rows = a.coin_cache_rows;
    let engine = open_engine(&a.data_dir, config, a.reinit)?;
    let custody = if dev {
        Some(Custody::open(&a.data_dir)?)
    } else {
        None
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(a, engine, custody))
}

async fn serve(a: RunArgs, engine: Engine, custody: Option<Custody>) -> Result<()> {
    let dev = a.dev;
    // Before anything opens sockets: the connection cap is sized from this limit.
    let fd_limit = api::listen::raise_fd_limit();
    if dev && !a.listen.ip().is_loopback() {
        tracing::warn!(listen = %a.listen, "dev mode holds keys and mines on request: bind it to loopback only");
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let config = NodeConfig {
        dev,
        web_root: a.web_root.clone(),
        admin_token: a.admin_token.clone(),
        rate_limit: a.rate_limit,
        rate_limit_loopback: a.rate_limit_loopback,
        max_sse_clients: a.max_sse_clients,
        ..NodeConfig::default()
    };
    let state = AppState::with_shutdown(engine.clone(), config, custody, stop_rx.clone());
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let local = listener.local_addr().unwrap_or(a.listen);
    let peers = PeerService::new(
        engine.clone(),
        PeerConfig {
            initial_peers: a.peers.clone(),
            admin_token: a.admin_token.clone(),
            dev,
            self_url: Some(format!("http://{local}")),
            peers_file: Some(PeerFile::in_dir(&a.data_dir)),
            bans: BanConfig {
                ban_for: Duration::from_secs(a.ban_secs),
                loopback: a.ban_loopback,
            },
        },
    );
    let app = api::node_app(state.clone(), &peers);
    {
        let mut stop = stop_rx.clone();
        tokio::spawn(peers.run(async move {
            let _ = stop.wait_for(|v| *v).await;
        }));
    }
    let mut stratum_local = None;
    if let Some(addr) = a.stratum {
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for Stratum on {addr}"))?;
        stratum_local = Some(l.local_addr().unwrap_or(addr));
        let engine = engine.clone();
        let config = api::stratum::StratumConfig {
            start_difficulty: a.stratum_difficulty,
            share_seconds: a.stratum_share_seconds,
            max_connections: a.stratum_max_connections,
            max_per_ip: a.stratum_max_per_ip,
            idle_timeout: Duration::from_secs(a.stratum_idle_timeout),
            auth_timeout: Duration::from_secs(a.stratum_auth_timeout),
        };
        let accounting = state.stratum.clone();
        tokio::spawn(async move {
            if let Err(e) = api::stratum::serve_with(engine, l, config, accounting).await {
                tracing::error!(error = %e, "stratum server stopped");
            }
        });
    }
    let st = engine.status().context("status")?;
    // The bound addresses (`--listen 127.0.0.1:0` picks a free port): scripts and the test
    // harness read them from this line, under its own target so `RUST_LOG` can keep it.
    let stratum_shown = stratum_local.map_or_else(|| "off".to_string(), |s| s.to_string());
    tracing::info!(
        target: "bitplace_node::ready",
        listen = %local,
        stratum = %stratum_shown,
        network = %st.network,
        height = st.height,
        dev,
        "bitplace-node ready"
    );
    let limits = api::listen::ConnLimits {
        max_connections: api::listen::connection_cap(a.max_connections, fd_limit),
        max_per_ip: a.max_connections_per_ip,
        header_timeout: Duration::from_secs(a.header_timeout),
        idle_timeout: Duration::from_secs(a.idle_timeout),
    };
    if limits.max_connections < a.max_connections {
        tracing::warn!(
            requested = a.max_connections,
            allowed = limits.max_connections,
            fd_limit,
            "--max-connections lowered to stay below the open-file limit"
        );
    }
    let server = api::listen::serve(
        listener,
        app,
        state.limiter.clone(),
        limits,
        state.metrics.connections.clone(),
        async move {
            shutdown_signal().await;
            tracing::info!("shutting down");
            let _ = stop_tx.send(true);
        },
    );
    let mut stop = stop_rx;
    tokio::select! {
        () = server => {},
        // In-flight requests get a grace period after the signal, then we exit anyway.
        _ = async {
            let _ = stop.wait_for(|v| *v).await;
            tokio::time::sleep(Duration::from_secs(10)).await;
        } => tracing::warn!("requests still running after 10 s; exiting"),
    }
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

//! `bitplace-miner`: mine against a node or a Stratum pool on every device, benchmark,
//! search a header, list GPUs.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use miner_gpu::client::{self, MinerConfig};
use miner_gpu::gpu::{self, DispatchConfig};
use miner_gpu::report::{Report, Stats};
use miner_gpu::stratum::{self, PoolConfig};
use miner_gpu::{CpuBackend, GpuBackend, Kernel, SearchBackend, SearchControl, Work};
use std::io::Write;
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "bitplace-miner",
    version,
    about = "SHA-256d miner for Bitplace and Stratum V1 pools: every GPU (wgpu/WGSL) and the CPU (SHA-NI/AVX-512/AVX2)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    mine: MineArgs,
}

#[derive(clap::Args, Debug)]
struct MineArgs {
    /// Node base URL; without a scheme, http:// is assumed.
    #[arg(long, default_value = miner_gpu::endpoint::DEFAULT_NODE)]
    node: String,
    /// Address the block rewards pay (bp1...), when mining against a node.
    #[arg(long)]
    address: Option<String>,
    /// Mine through a Stratum V1 pool instead: stratum+tcp://HOST:PORT.
    #[arg(long, conflicts_with = "address")]
    pool: Option<String>,
    /// Pool worker name (for a Bitplace node's --stratum: the payout address[.rig]).
    #[arg(long, requires = "pool")]
    user: Option<String>,
    /// Pool password.
    #[arg(long, default_value = "x", requires = "pool")]
    password: String,
    /// Do not ask the pool for BIP 310 version rolling.
    #[arg(long, requires = "pool")]
    no_version_rolling: bool,
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    #[command(flatten)]
    device: DeviceArgs,
    /// Exit 0 after this many blocks (through a pool: accepted shares that met the
    /// block target).
    #[arg(long)]
    blocks: Option<u64>,
    /// Machine-readable JSON lines instead of the live status line.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug, Clone)]
struct DeviceArgs {
    /// CPU threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// GPU adapters: indices or name substrings from `bitplace-miner adapters`,
    /// comma-separated (a substring takes every adapter it matches).
    #[arg(long, value_delimiter = ',')]
    adapter: Vec<String>,
    /// CPU kernel (default: whichever of shani, avx512, avx2 this CPU runs fastest,
    /// measured at start in ~50 ms).
    #[arg(long, value_enum)]
    kernel: Option<KernelArg>,
    /// GPU dispatch as NONCESxWORKGROUP, e.g. 32x64 (default: measured at start on a
    /// hardware GPU, see `bench --sweep`).
    #[arg(long)]
    dispatch: Option<String>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendArg {
    /// Every hardware GPU, else the CPU.
    Auto,
    /// GPUs only: those --adapter names, else every hardware GPU, else a software one.
    Gpu,
    Cpu,
    /// Every hardware GPU (and software ones named by --adapter) and the CPU together.
    All,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum KernelArg {
    Portable,
    Avx2,
    Avx512,
    Shani,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Measure hashes per second: one JSON line per device, then a `"total": true` line.
    Bench {
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
        #[command(flatten)]
        device: DeviceArgs,
        /// How long to measure.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// GPU only: measure every NONCESxWORKGROUP combination on each adapter, one
        /// JSON line each, the fastest marked `"best": true`.
        #[arg(long)]
        sweep: bool,
    },
    /// Search nonces start..start+count of a raw 80-byte header (nonce field ignored).
    Search {
        /// The header, 160 hex digits.
        #[arg(long)]
        header: String,
        /// The target, 64 hex digits in display order.
        #[arg(long)]
        target: String,
        #[arg(long, default_value_t = 0)]
        start: u32,
        #[arg(long, default_value_t = 1 << 32)]
        count: u64,
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
        #[command(flatten)]
        device: DeviceArgs,
    },
    /// List the GPU adapters wgpu can use (index, name, API, type, driver).
    Adapters {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

fn cpu_backend(d: &DeviceArgs) -> Result<CpuBackend> {
    warn_oversubscribed(d.threads);
    let kernel = match d.kernel {
        None => return Ok(CpuBackend::new(d.threads)),
        Some(k) => {
            let k = match k {
                KernelArg::Portable => Kernel::Portable,
                KernelArg::Avx2 => Kernel::Avx2,
                KernelArg::Avx512 => Kernel::Avx512,
                KernelArg::Shani => Kernel::ShaNi,
            };
            if !Kernel::available().contains(&k) {
                bail!("this CPU cannot run the {} kernel", k.name());
            }
            k
        }
    };
    Ok(CpuBackend::with_kernel(kernel, d.threads))
}

/// More search threads than cores only makes them take turns (and slows everything
/// else on the machine): say so once, but do as asked.
fn warn_oversubscribed(threads: usize) {
    static WARNED: std::sync::Once = std::sync::Once::new();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if threads > cores {
        WARNED.call_once(|| {
            eprintln!(
                "bitplace-miner: warning: --threads {threads} is more than the {cores} cores here; \
                 the threads will take turns"
            )
        });
    }
}

/// The GPU adapters a backend choice drives: those `--adapter` names (software ones
/// included: naming one asks for it), else every hardware GPU.
fn chosen_adapters(d: &DeviceArgs) -> Result<Vec<wgpu::Adapter>> {
    if d.adapter.iter().any(|a| !a.trim().is_empty()) {
        Ok(gpu::select_adapters(&d.adapter)?)
    } else {
        Ok(gpu::hardware_adapters())
    }
}

/// Opens the GPUs in parallel (each may spend about a second measuring its dispatch).
fn open_gpus(adapters: &[wgpu::Adapter], d: &DeviceArgs) -> Result<Vec<Box<dyn SearchBackend>>> {
    let config = d
        .dispatch
        .as_deref()
        .map(DispatchConfig::parse)
        .transpose()?;
    std::thread::scope(|s| {
        let handles: Vec<_> = adapters
            .iter()
            .map(|a| s.spawn(move || GpuBackend::on_adapter(a, config)))
            .collect();
        handles
            .into_iter()
            .zip(adapters)
            .map(|(h, a)| {
                let g = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("opening {} panicked", a.get_info().name))?
                    .with_context(|| a.get_info().name)?;
                Ok(Box::new(g) as Box<dyn SearchBackend>)
            })
            .collect()
    })
}

/// Every device the backend choice names, one search thread each.
fn devices(kind: BackendArg, d: &DeviceArgs) -> Result<Vec<Box<dyn SearchBackend>>> {
    let cpu = || -> Result<Box<dyn SearchBackend>> { Ok(Box::new(cpu_backend(d)?)) };
    Ok(match kind {
        BackendArg::Cpu => vec![cpu()?],
        BackendArg::Gpu => {
            let mut adapters = chosen_adapters(d)?;
            if adapters.is_empty() {
                // No hardware GPU: the best adapter there is (a software one).
                adapters.push(gpu::pick_adapter(None)?);
            }
            open_gpus(&adapters, d)?
        }
        BackendArg::Auto => {
            let adapters = chosen_adapters(d)?;
            if adapters.is_empty() {
                // A software rasteriser (lavapipe) runs on the same cores as the CPU
                // backend and is slower than it: auto means real GPUs or the CPU kernel.
                eprintln!("bitplace-miner: no hardware GPU; using the CPU backend");
                vec![cpu()?]
            } else {
                open_gpus(&adapters, d)?
            }
        }
        BackendArg::All => {
            let mut all = open_gpus(&chosen_adapters(d)?, d)?;
            all.push(cpu()?);
            all
        }
    })
}

/// One device's benchmark result.
struct Measured {
    hashes: u64,
    seconds: f64,
}

/// Runs every device at once: a warm-up (pipelines, first dispatches, CPU clocks), then
/// all measure together for `seconds`.
fn measure_all(devs: &mut [Box<dyn SearchBackend>], seconds: f64) -> Result<Vec<Measured>> {
    let work = Work::new(gpu::bench_header(), [0u8; 32]);
    let barrier = Barrier::new(devs.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = devs
            .iter_mut()
            .map(|b| {
                let (work, barrier) = (&work, &barrier);
                s.spawn(move || -> Result<Measured> {
                    run_for(b.as_mut(), work, &SearchControl::new(), 0.3)?;
                    barrier.wait();
                    let ctl = SearchControl::new();
                    let t0 = Instant::now();
                    run_for(b.as_mut(), work, &ctl, seconds)?;
                    Ok(Measured {
                        hashes: ctl.hashes(),
                        seconds: t0.elapsed().as_secs_f64(),
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))?
            })
            .collect()
    })
}

/// Searches until `seconds` have passed, cancelling from a timer thread.
fn run_for(
    b: &mut dyn SearchBackend,
    work: &Work,
    ctl: &SearchControl,
    seconds: f64,
) -> Result<()> {
    let stop = SearchControl::new();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| {
            let until = Instant::now() + Duration::from_secs_f64(seconds);
            while Instant::now() < until && !stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            ctl.cancel();
        });
        let result = search_until_cancelled(b, work, ctl);
        stop.cancel();
        result
    })
}

fn search_until_cancelled(
    b: &mut dyn SearchBackend,
    work: &Work,
    ctl: &SearchControl,
) -> Result<()> {
    let mut start = 0u32;
    while !ctl.is_cancelled() {
        b.search_with(work, start, 1 << 32, ctl, &|_| {})?;
        start = start.wrapping_add(1 << 31);
    }
    Ok(())
}

fn bench(kind: BackendArg, d: &DeviceArgs, seconds: f64, sweep: bool) -> Result<()> {
    if sweep {
        return bench_sweep(kind, d, seconds);
    }
    let mut devs = devices(kind, d)?;
    let cpu0 = process_cpu_seconds();
    let results = measure_all(&mut devs, seconds)?;
    let cpu_seconds = process_cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let only_cpu = devs.len() == 1 && devs[0].kind() == "cpu";
    let mut out = std::io::stdout().lock();
    let mut total = 0.0;
    for (b, m) in devs.iter().zip(&results) {
        let info = miner_gpu::devices::DeviceInfo::of(b.as_ref());
        let hps = m.hashes as f64 / m.seconds.max(1e-9);
        total += hps;
        let mut line = serde_json::json!({
            "backend": info.backend,
            "adapter": info.adapter,
            "hashes_per_second": hps.round(),
            "hashes": m.hashes,
            "seconds": (m.seconds * 1000.0).round() / 1000.0,
        });
        if let Some(c) = b.as_any().downcast_ref::<CpuBackend>() {
            line["threads"] = c.threads().into();
            line["kernel"] = c.kernel().name().into();
            line["hashes_per_second_per_thread"] = (hps / c.threads() as f64).round().into();
            // On a shared machine wall-clock rates understate the kernel: also report
            // hashes per CPU-second this process got (Linux; only when the CPU is the
            // only device, since GPU drivers use CPU time too).
            if let (Some(cpu), true) = (cpu_seconds, only_cpu) {
                line["cpu_seconds"] = ((cpu * 100.0).round() / 100.0).into();
                if cpu > 0.0 {
                    line["hashes_per_cpu_second"] = (m.hashes as f64 / cpu).round().into();
                }
            }
        } else if let Some(g) = b.as_any().downcast_ref::<GpuBackend>() {
            line["threads"] = 1.into();
            line["dispatch"] = g.config().to_string().into();
        }
        writeln!(out, "{line}")?;
    }
    let total_line = serde_json::json!({
        "total": true,
        "devices": devs.len(),
        "hashes_per_second": total.round(),
        "hashes": results.iter().map(|m| m.hashes).sum::<u64>(),
        "seconds": seconds,
    });
    writeln!(out, "{total_line}")?;
    Ok(())
}

/// `bench --sweep`: every dispatch combination on every chosen GPU.
fn bench_sweep(kind: BackendArg, d: &DeviceArgs, seconds: f64) -> Result<()> {
    if kind == BackendArg::Cpu {
        bail!("--sweep measures GPU dispatch configurations: use --backend gpu");
    }
    let mut adapters = chosen_adapters(d)?;
    if adapters.is_empty() {
        adapters.push(gpu::pick_adapter(None)?);
    }
    let configs = match &d.dispatch {
        Some(s) => vec![DispatchConfig::parse(s)?],
        None => gpu::sweep_configs(),
    };
    // Each combination gets an equal part of --seconds (at least 0.2 s).
    let each = Duration::from_secs_f64((seconds / configs.len() as f64).max(0.2));
    let mut out = std::io::stdout().lock();
    for a in &adapters {
        let name = a.get_info().name;
        let mut g =
            GpuBackend::on_adapter(a, Some(DispatchConfig::DEFAULT)).context(name.clone())?;
        let table = g.calibrate(&configs, each)?;
        let best = g.config();
        for m in &table {
            let mut line = serde_json::to_value(m)?;
            line["adapter"] = name.clone().into();
            line["backend"] = "gpu".into();
            line["hashes_per_second"] = m.hashes_per_second.round().into();
            line["pipeline_ms"] = m.pipeline_ms.round().into();
            line["best"] = (m.config == best).into();
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// User + system CPU time of this process so far (Linux `/proc/self/stat`, 100 Hz ticks).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

fn search(
    header: &str,
    target: &str,
    start: u32,
    count: u64,
    kind: BackendArg,
    d: &DeviceArgs,
) -> Result<()> {
    if count > 1 << 32 {
        bail!("--count is at most 4294967296 (the whole nonce space)");
    }
    let work = Work::from_hex(header, target)?;
    let found = match kind {
        BackendArg::Cpu => cpu_backend(d)?.search(&work, start, count, &SearchControl::new()),
        _ => {
            let mut adapters = chosen_adapters(d)?;
            if adapters.is_empty() {
                adapters.push(gpu::pick_adapter(None)?);
            }
            let config = d
                .dispatch
                .as_deref()
                .map(DispatchConfig::parse)
                .transpose()?;
            GpuBackend::on_adapter(&adapters[0], config)?.search(
                &work,
                start,
                count,
                &SearchControl::new(),
            )?
        }
    };
    let mut out = std::io::stdout().lock();
    for s in found {
        writeln!(out, "{} {}", s.nonce, s.hash)?;
    }
    Ok(())
}

fn adapters(json: bool) -> Result<()> {
    let list = gpu::list_adapters();
    if list.is_empty() {
        bail!("no GPU adapter found (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)");
    }
    let mut out = std::io::stdout().lock();
    for a in list {
        if json {
            writeln!(out, "{}", serde_json::to_string(&a)?)?;
        } else {
            writeln!(
                out,
                "{}\t{}\t{}\t{}\t{}",
                a.index, a.name, a.backend, a.device_type, a.driver
            )?;
        }
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")
}

fn mine(args: MineArgs) -> Result<()> {
    let json = args.json;
    let stats = match &args.pool {
        Some(pool) => mine_pool(&args, pool)?,
        None => mine_node(&args)?,
    };
    if json {
        println!(
            "{}",
            serde_json::json!({"type": "done", "accepted": stats.accepted, "rejected": stats.rejected,
                "stale": stats.stale, "blocks": stats.blocks})
        );
    } else {
        eprintln!(
            "\ndone: {} accepted, {} rejected, {} stale, {} blocks",
            stats.accepted, stats.rejected, stats.stale, stats.blocks
        );
    }
    Ok(())
}

fn mine_node(args: &MineArgs) -> Result<Stats> {
    let Some(address) = args.address.clone() else {
        bail!(
            "mining needs --address ADDR (the payout address; --node URL defaults to {}) or --pool URL --user WORKER, or a subcommand: bench, search, adapters",
            miner_gpu::endpoint::DEFAULT_NODE
        );
    };
    // Checked before any device is opened: a typo must not cost a GPU start-up.
    let node = miner_gpu::endpoint::node_url(&args.node).context("--node")?;
    if let Err(e) = address.parse::<consensus::Address>() {
        bail!("--address {address}: not a payout address: {e}");
    }
    let devs = devices(args.backend, &args.device)?;
    let cfg = MinerConfig {
        node,
        address,
        blocks: args.blocks,
        status_every: Duration::from_secs(1),
    };
    let json = args.json;
    Ok(runtime()?.block_on(client::mine(cfg, devs, move |r| print_report(&r, json)))?)
}

fn mine_pool(args: &MineArgs, pool: &str) -> Result<Stats> {
    let Some(user) = args.user.clone() else {
        bail!("--pool needs --user WORKER (for a Bitplace node: the payout address)");
    };
    miner_gpu::endpoint::pool_addr(pool).context("--pool")?;
    let devs = devices(args.backend, &args.device)?;
    let cfg = PoolConfig {
        url: pool.to_string(),
        user,
        password: args.password.clone(),
        blocks: args.blocks,
        status_every: Duration::from_secs(1),
        version_rolling: !args.no_version_rolling,
    };
    let json = args.json;
    Ok(runtime()?.block_on(stratum::mine(cfg, devs, move |r| print_report(&r, json)))?)
}

fn rate(hps: f64) -> String {
    if hps >= 1e9 {
        format!("{:.2} GH/s", hps / 1e9)
    } else {
        format!("{:.2} MH/s", hps / 1e6)
    }
}

fn print_report(r: &Report, json: bool) {
    if json {
        if let Ok(s) = serde_json::to_string(r) {
            println!("{s}");
        }
        return;
    }
    match r {
        Report::Status {
            hashes_per_second,
            devices,
            stats,
            ..
        } => {
            let per_device: Vec<String> = devices
                .iter()
                .map(|d| format!("{} {}", d.adapter, rate(d.hashes_per_second)))
                .collect();
            let mut line = if devices.len() > 1 {
                format!("[{}] total {}", per_device.join(" | "), rate(*hashes_per_second))
            } else {
                format!("[{}]", per_device.join(""))
            };
            if stats.height > 0 {
                line.push_str(&format!(" | height {}", stats.height));
            }
            if let Some(d) = stats.difficulty {
                line.push_str(&format!(" | diff {d}"));
            }
            eprint!(
                "\r\x1b[2K{line} | accepted {} rejected {} stale {} blocks {}",
                stats.accepted, stats.rejected, stats.stale, stats.blocks
            );
        }
        Report::Subscribed {
            extranonce1,
            extranonce2_size,
            version_mask,
        } => eprint!(
            "\r\x1b[2Ksubscribed: extranonce1 {extranonce1}, extranonce2 {extranonce2_size} bytes, version rolling {}\n",
            version_mask.as_deref().unwrap_or("off")
        ),
        Report::Difficulty { difficulty } => {
            eprint!("\r\x1b[2Kshare difficulty {difficulty}\n")
        }
        Report::Job {
            job_id,
            height,
            reason,
        } => match height {
            Some(h) => eprint!("\r\x1b[2Knew job {job_id} at height {h} ({reason})\n"),
            None => eprint!("\r\x1b[2Knew job {job_id} ({reason})\n"),
        },
        Report::Submitted {
            nonce,
            hash,
            outcome,
            block,
            ..
        } => {
            let what = if *block { "block" } else { "share" };
            eprint!("\r\x1b[2K{what} nonce {nonce} hash {hash}: {outcome}\n")
        }
        Report::Disconnected { error, retry_in_ms } => {
            eprint!("\r\x1b[2Kdisconnected ({error}); retrying in {retry_in_ms} ms\n")
        }
        Report::DeviceFailed {
            device,
            adapter,
            error,
        } => eprint!("\r\x1b[2Kdevice {device} ({adapter}) stopped: {error}\n"),
    }
}

/// Mesa's Vulkan and GL drivers print "XDG_RUNTIME_DIR is invalid or not set" when it is
/// missing (typical under ssh, cron, containers, systemd services). The miner never
/// opens a display, so give the process a private one (0700 under the temp dir) before
/// wgpu loads a driver. Must run before any thread starts (it edits the environment).
fn quiet_mesa_runtime_dir() {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let usable = |p: &std::path::Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o077 == 0)
        };
        if std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| usable(std::path::Path::new(&d))) {
            return;
        }
        // /proc/self belongs to the process's user: a per-user directory name.
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let dir = std::env::temp_dir().join(format!("bitplace-miner-runtime-{uid}"));
        let made = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)));
        if made.is_ok() && usable(&dir) {
            std::env::set_var("XDG_RUNTIME_DIR", &dir);
        }
    }
}

fn main() {
    quiet_mesa_runtime_dir();
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench {
            backend,
            device,
            seconds,
            sweep,
        }) => bench(backend, &device, seconds, sweep),
        Some(Command::Search {
            header,
            target,
            start,
            count,
            backend,
            device,
        }) => search(&header, &target, start, count, backend, &device),
        Some(Command::Adapters { json }) => adapters(json),
        None => mine(cli.mine),
    };
    if let Err(e) = result {
        eprintln!("bitplace-miner: {e:#}");
        std::process::exit(1);
    }
}

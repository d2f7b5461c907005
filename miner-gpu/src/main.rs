//! `bitplace-miner`: mine against a node, benchmark a backend, search a header, list GPUs.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use miner_gpu::client::{self, MinerConfig, Report};
use miner_gpu::{gpu, CpuBackend, GpuBackend, Kernel, SearchBackend, SearchControl, Work};
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(
    name = "bitplace-miner",
    version,
    about = "SHA-256d miner for Bitplace: GPU (wgpu/WGSL) or CPU (AVX-512/AVX2)",
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
    /// Node base URL, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    node: Option<String>,
    /// Address the block rewards pay (bp1...).
    #[arg(long)]
    address: Option<String>,
    #[arg(long, value_enum, default_value_t = BackendArg::Auto)]
    backend: BackendArg,
    #[command(flatten)]
    device: DeviceArgs,
    /// Exit 0 after this many accepted blocks.
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
    /// GPU adapter: a substring of its name (see `bitplace-miner adapters`).
    #[arg(long)]
    adapter: Option<String>,
    /// CPU kernel (default: whichever of shani, avx512, avx2 this CPU runs fastest,
    /// measured at start in ~50 ms).
    #[arg(long, value_enum)]
    kernel: Option<KernelArg>,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum BackendArg {
    Auto,
    Gpu,
    Cpu,
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
    /// Measure hashes per second; prints one JSON line.
    Bench {
        #[arg(long, value_enum, default_value_t = BackendArg::Cpu)]
        backend: BackendArg,
        #[command(flatten)]
        device: DeviceArgs,
        /// How long to measure.
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
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
    /// List the GPU adapters wgpu can use.
    Adapters,
}

fn cpu_backend(d: &DeviceArgs) -> Result<CpuBackend> {
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

fn backend(kind: BackendArg, d: &DeviceArgs) -> Result<Box<dyn SearchBackend>> {
    Ok(match kind {
        BackendArg::Cpu => Box::new(cpu_backend(d)?),
        BackendArg::Gpu => Box::new(GpuBackend::open(d.adapter.as_deref())?),
        BackendArg::Auto => match gpu::pick_adapter(d.adapter.as_deref()) {
            // A software rasteriser (lavapipe) runs on the same cores as the CPU backend
            // and is slower than it: auto means a real GPU or the CPU kernel.
            Ok(a) if a.get_info().device_type == wgpu::DeviceType::Cpu && d.adapter.is_none() => {
                eprintln!(
                    "bitplace-miner: only a software adapter ({}); using the CPU backend",
                    a.get_info().name
                );
                Box::new(cpu_backend(d)?)
            }
            Ok(a) => Box::new(GpuBackend::on_adapter(&a)?),
            Err(e) => {
                eprintln!("bitplace-miner: {e}; using the CPU backend");
                Box::new(cpu_backend(d)?)
            }
        },
    })
}

fn bench(kind: BackendArg, d: &DeviceArgs, seconds: f64) -> Result<()> {
    let mut b = backend(kind, d)?;
    // A fixed pseudo-random header and an impossible target: nothing but hashing.
    let mut header = [0u8; 80];
    for (i, x) in header.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    let work = Work::new(header, [0u8; 32]);
    let ctl = SearchControl::new();
    // Warm up (pipeline creation, first dispatches, CPU clocks), then measure.
    let warm = SearchControl::new();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            warm.cancel();
        });
        b.search_with(&work, 0, 1 << 32, &warm, &|_| {})?;
        Ok(())
    })?;
    let t0 = Instant::now();
    let cpu0 = process_cpu_seconds();
    std::thread::scope(|s| -> Result<()> {
        s.spawn(|| {
            std::thread::sleep(Duration::from_secs_f64(seconds));
            ctl.cancel();
        });
        let mut start = 0u32;
        while !ctl.is_cancelled() {
            b.search_with(&work, start, 1 << 32, &ctl, &|_| {})?;
            start = start.wrapping_add(1 << 31);
        }
        Ok(())
    })?;
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds().zip(cpu0).map(|(b, a)| b - a);
    let hps = ctl.hashes() as f64 / elapsed;
    let (backend_name, adapter, threads, kernel) = match kind {
        BackendArg::Cpu => {
            let c = cpu_backend(d)?;
            (
                "cpu",
                "cpu".to_string(),
                c.threads(),
                Some(c.kernel().name()),
            )
        }
        _ => {
            let d = b.describe();
            let name = d.strip_prefix("gpu ").unwrap_or(&d).to_string();
            (b.kind(), name, 1, None)
        }
    };
    let mut line = serde_json::json!({
        "backend": backend_name,
        "adapter": adapter,
        "threads": threads,
        "hashes_per_second": hps.round(),
        "hashes": ctl.hashes(),
        "seconds": (elapsed * 1000.0).round() / 1000.0,
    });
    // On a shared machine wall-clock rates understate the kernel: also report hashes per
    // CPU-second this process actually got (Linux; CPU backend only).
    if let (Some(cpu), Some(_)) = (cpu_seconds, kernel) {
        line["cpu_seconds"] = ((cpu * 100.0).round() / 100.0).into();
        if cpu > 0.0 {
            line["hashes_per_cpu_second"] = (ctl.hashes() as f64 / cpu).round().into();
        }
    }
    if let Some(k) = kernel {
        line["kernel"] = k.into();
        line["hashes_per_second_per_thread"] = (hps / threads as f64).round().into();
    }
    println!("{line}");
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
        BackendArg::Gpu | BackendArg::Auto => GpuBackend::open(d.adapter.as_deref())?.search(
            &work,
            start,
            count,
            &SearchControl::new(),
        )?,
    };
    let mut out = std::io::stdout().lock();
    for s in found {
        writeln!(out, "{} {}", s.nonce, s.hash)?;
    }
    Ok(())
}

fn adapters() -> Result<()> {
    let list = gpu::list_adapters();
    if list.is_empty() {
        bail!("no GPU adapter found (install a Vulkan driver, e.g. Debian's mesa-vulkan-drivers)");
    }
    for a in list {
        println!("{}\t{}\t{}\t{}", a.name, a.backend, a.device_type, a.driver);
    }
    Ok(())
}

fn mine(args: MineArgs) -> Result<()> {
    let (Some(node), Some(address)) = (args.node.clone(), args.address.clone()) else {
        bail!("mining needs --node URL and --address ADDR (or use a subcommand: bench, search, adapters)");
    };
    let b = backend(args.backend, &args.device)?;
    let cfg = MinerConfig {
        node,
        address,
        blocks: args.blocks,
        status_every: Duration::from_secs(1),
    };
    let json = args.json;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let stats = rt.block_on(client::mine(cfg, b, move |r| print_report(&r, json)))?;
    if json {
        println!(
            "{}",
            serde_json::json!({"type": "done", "accepted": stats.accepted, "rejected": stats.rejected, "stale": stats.stale})
        );
    } else {
        eprintln!(
            "\ndone: {} accepted, {} rejected, {} stale",
            stats.accepted, stats.rejected, stats.stale
        );
    }
    Ok(())
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
            backend,
            hashes_per_second,
            stats,
        } => {
            eprint!(
                "\r\x1b[2K[{backend}] {:.2} MH/s | height {} | accepted {} rejected {} stale {}",
                hashes_per_second / 1e6,
                stats.height,
                stats.accepted,
                stats.rejected,
                stats.stale
            );
        }
        Report::Job {
            job_id,
            height,
            reason,
        } => eprint!("\r\x1b[2Knew job {job_id} at height {height} ({reason})\n"),
        Report::Submitted {
            nonce,
            hash,
            outcome,
            ..
        } => eprint!("\r\x1b[2Ksubmitted nonce {nonce} hash {hash}: {outcome}\n"),
        Report::Disconnected { error, retry_in_ms } => {
            eprint!("\r\x1b[2Knode unreachable ({error}); retrying in {retry_in_ms} ms\n")
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Bench {
            backend,
            device,
            seconds,
        }) => bench(backend, &device, seconds),
        Some(Command::Search {
            header,
            target,
            start,
            count,
            backend,
            device,
        }) => search(&header, &target, start, count, backend, &device),
        Some(Command::Adapters) => adapters(),
        None => mine(cli.mine),
    };
    if let Err(e) = result {
        eprintln!("bitplace-miner: {e:#}");
        std::process::exit(1);
    }
}

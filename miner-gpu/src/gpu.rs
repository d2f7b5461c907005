//! The GPU backend: `shaders/sha256d.wgsl` through wgpu on any adapter (Vulkan, Metal,
//! DX12, GL, or a software one such as Mesa's lavapipe).
//!
//! The host prepares each header once ([`Prepared`]: midstate and nonce-independent
//! parts), writes it with the dispatch's first nonce into a small storage buffer, and the
//! kernel appends every nonce that passes its early reject to a results buffer through an
//! atomic counter. Every reported nonce is re-verified on the CPU before it is returned.
//!
//! Two dispatch slots are used in turn (double buffering): while the GPU runs one, the
//! other's results are being read back and its next range queued, so the GPU does not
//! idle between dispatches. Dispatch size adapts so one dispatch takes ~[`TARGET_DISPATCH`];
//! with at most two in flight, new work (a cancel) is picked up within ~100 ms. A dispatch
//! wider than the 65,535 workgroups allowed in x continues in y, so the largest GPUs
//! (132 SMs and more) get dispatches big enough to fill them.
//!
//! How many nonces each invocation tries and how many invocations make a workgroup is
//! chosen per device ([`DispatchConfig`]): opening a hardware adapter measures a few
//! combinations (bounded, about a second) and keeps the fastest; `bench --sweep` prints
//! them all. Shader and pipeline errors come back as `Err` (error scopes), never as a
//! panic, and so do device errors raised later (an uncaptured-error handler).

use crate::{CpuBackend, MinerError, Prepared, SearchControl, Solution, Work};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The kernel, loaded from the repository's shaders/ directory at compile time.
pub const SHADER: &str = include_str!("../../shaders/sha256d.wgsl");

/// Most workgroups one dispatch may have per dimension (WebGPU's default limit).
const MAX_WORKGROUPS: u32 = 65_535;
/// Most nonces in one dispatch: keeps `invocation * NONCES_PER_INVOCATION` in the
/// shader below 2^32 including the padding of a partly used y row.
const MAX_BATCH: u32 = 1 << 31;
/// Words of the kernel's parameter buffer (`params` in the shader).
const PARAM_WORDS: usize = 28;
/// Winners one dispatch can report; with more, the range is re-searched on the CPU so
/// none is lost (only happens with absurdly easy targets).
const CAPACITY: u32 = 1024;
/// Wall time one dispatch should take.
pub const TARGET_DISPATCH: Duration = Duration::from_millis(50);

/// The shader's two tunables for one pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DispatchConfig {
    /// Consecutive nonces each invocation tries (`NONCES_PER_INVOCATION`).
    pub nonces_per_invocation: u32,
    /// Invocations per workgroup (`WORKGROUP_SIZE`).
    pub workgroup_size: u32,
}

impl DispatchConfig {
    pub const DEFAULT: DispatchConfig = DispatchConfig::new(32, 64);

    pub const fn new(nonces_per_invocation: u32, workgroup_size: u32) -> DispatchConfig {
        DispatchConfig {
            nonces_per_invocation,
            workgroup_size,
        }
    }

    /// Parses `NONCESxWORKGROUP`, e.g. `32x64` (`--dispatch`).
    pub fn parse(s: &str) -> Result<DispatchConfig, MinerError> {
        let bad = || {
            MinerError::Gpu(format!(
                "--dispatch {s:?}: expected NONCESxWORKGROUP, e.g. 32x64"
            ))
        };
        let (n, w) = s.trim().split_once(['x', 'X']).ok_or_else(bad)?;
        let n: u32 = n.parse().map_err(|_| bad())?;
        let w: u32 = w.parse().map_err(|_| bad())?;
        if !(1..=256).contains(&n) || !(1..=1024).contains(&w) {
            return Err(MinerError::Gpu(format!(
                "--dispatch {s:?}: nonces per invocation 1..=256, workgroup size 1..=1024"
            )));
        }
        Ok(DispatchConfig::new(n, w))
    }

    /// Nonces one workgroup covers.
    fn per_group(&self) -> u32 {
        self.nonces_per_invocation * self.workgroup_size
    }
}

impl std::fmt::Display for DispatchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.nonces_per_invocation, self.workgroup_size)
    }
}

/// What `bench --sweep` measures: every combination of these.
pub const SWEEP_NONCES: [u32; 4] = [8, 16, 32, 64];
pub const SWEEP_WORKGROUPS: [u32; 3] = [64, 128, 256];

/// The combinations measured when a hardware adapter is opened (a subset of the sweep:
/// each costs a pipeline build of the unrolled kernel plus a short measurement).
pub const CALIBRATION: [DispatchConfig; 4] = [
    DispatchConfig::new(32, 64),
    DispatchConfig::new(16, 128),
    DispatchConfig::new(32, 256),
    DispatchConfig::new(64, 128),
];

/// The whole sweep table.
pub fn sweep_configs() -> Vec<DispatchConfig> {
    SWEEP_NONCES
        .iter()
        .flat_map(|&n| {
            SWEEP_WORKGROUPS
                .iter()
                .map(move |&w| DispatchConfig::new(n, w))
        })
        .collect()
}

/// One measured combination.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Measured {
    #[serde(flatten)]
    pub config: DispatchConfig,
    pub hashes_per_second: f64,
    /// Time to build the pipeline (the driver compiling the unrolled kernel).
    pub pipeline_ms: f64,
}

/// A GPU adapter as listed by `bitplace-miner adapters`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdapterDesc {
    /// Position in the list (what `--adapter N` selects).
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl AdapterDesc {
    fn from_info(index: usize, info: &wgpu::AdapterInfo) -> AdapterDesc {
        AdapterDesc {
            index,
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: format!("{} {}", info.driver, info.driver_info)
                .trim()
                .to_string(),
        }
    }
}

fn instance() -> wgpu::Instance {
    wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle())
}

/// Every adapter wgpu can see (all backends), in a fixed order: the indices
/// `--adapter N` takes.
pub fn all_adapters() -> Vec<wgpu::Adapter> {
    pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()))
}

/// Every adapter wgpu can see, described.
pub fn list_adapters() -> Vec<AdapterDesc> {
    all_adapters()
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterDesc::from_info(i, &a.get_info()))
        .collect()
}

/// A software rasteriser (Mesa's lavapipe/llvmpipe, SwiftShader, WARP): it runs on the
/// same cores as the CPU backend, and slower.
pub fn is_software(a: &wgpu::Adapter) -> bool {
    a.get_info().device_type == wgpu::DeviceType::Cpu
}

/// Backend preference: one physical GPU shows up once per API that reaches it (Vulkan
/// and GL on Linux, DX12 and Vulkan on Windows); the first of these is the one used.
fn backend_rank(b: wgpu::Backend) -> u8 {
    match b {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal => 0,
        wgpu::Backend::Dx12 => 1,
        wgpu::Backend::Gl => 2,
        _ => 3,
    }
}

/// Keeps the adapters of the best-ranked backend among them, so each device is driven
/// once (driving the same GPU through two APIs would only make them take turns).
fn one_api(adapters: Vec<(usize, wgpu::Adapter)>) -> Vec<(usize, wgpu::Adapter)> {
    let Some(best) = adapters
        .iter()
        .map(|(_, a)| backend_rank(a.get_info().backend))
        .min()
    else {
        return adapters;
    };
    adapters
        .into_iter()
        .filter(|(_, a)| backend_rank(a.get_info().backend) == best)
        .collect()
}

/// Every hardware GPU (software adapters left out), each once.
pub fn hardware_adapters() -> Vec<wgpu::Adapter> {
    let hw = all_adapters()
        .into_iter()
        .enumerate()
        .filter(|(_, a)| !is_software(a))
        .collect();
    one_api(hw).into_iter().map(|(_, a)| a).collect()
}

/// The adapters `--adapter` names: each entry is an index from `bitplace-miner adapters`
/// or a case-insensitive substring of adapter names, which takes every adapter it
/// matches (software ones too: naming one is asking for it), each device once. An entry
/// that matches nothing is an error naming what there is.
pub fn select_adapters(filters: &[String]) -> Result<Vec<wgpu::Adapter>, MinerError> {
    let all: Vec<(usize, wgpu::Adapter)> = all_adapters().into_iter().enumerate().collect();
    let available = || {
        if all.is_empty() {
            "none".to_string()
        } else {
            all.iter()
                .map(|(i, a)| format!("{i}: {}", a.get_info().name))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let mut chosen: Vec<(usize, wgpu::Adapter)> = Vec::new();
    for f in filters.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
        let matched: Vec<(usize, wgpu::Adapter)> = match f.parse::<usize>() {
            Ok(i) => all.iter().filter(|(j, _)| *j == i).cloned().collect(),
            Err(_) => {
                let want = f.to_lowercase();
                let m = all
                    .iter()
                    .filter(|(_, a)| a.get_info().name.to_lowercase().contains(&want))
                    .cloned()
                    .collect();
                one_api(m)
            }
        };
        if matched.is_empty() {
            return Err(MinerError::NoAdapter(format!(
                " matching {f:?} (available: {})",
                available()
            )));
        }
        for (i, a) in matched {
            if !chosen.iter().any(|(j, _)| *j == i) {
                chosen.push((i, a));
            }
        }
    }
    Ok(chosen.into_iter().map(|(_, a)| a).collect())
}

/// Picks an adapter: the first whose name contains `filter` (case-insensitive), or, with
/// no filter, a high-performance one (a hardware GPU before a software rasteriser).
pub fn pick_adapter(filter: Option<&str>) -> Result<wgpu::Adapter, MinerError> {
    let inst = instance();
    if let Some(filter) = filter {
        let want = filter.to_lowercase();
        let adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
        let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
        return adapters
            .into_iter()
            .find(|a| a.get_info().name.to_lowercase().contains(&want))
            .ok_or_else(|| {
                MinerError::NoAdapter(format!(
                    " matching {filter:?} (available: {})",
                    if names.is_empty() {
                        "none".to_string()
                    } else {
                        names.join(", ")
                    }
                ))
            });
    }
    let mut adapters = pollster::block_on(inst.enumerate_adapters(wgpu::Backends::all()));
    if adapters.is_empty() {
        return pollster::block_on(inst.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            force_fallback_adapter: false,
            compatible_surface: None,
            ..Default::default()
        }))
        .map_err(|e| {
            MinerError::NoAdapter(format!(
                " ({e}); install a Vulkan driver (e.g. Debian's mesa-vulkan-drivers) or use --backend cpu"
            ))
        });
    }
    // Hardware first; among equals prefer Vulkan/Metal/DX12 over GL.
    let rank = |a: &wgpu::Adapter| {
        let info = a.get_info();
        let ty = match info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            wgpu::DeviceType::VirtualGpu => 2,
            wgpu::DeviceType::Other => 3,
            wgpu::DeviceType::Cpu => 4,
        };
        let backend = if info.backend == wgpu::Backend::Gl {
            1
        } else {
            0
        };
        (ty, backend)
    };
    adapters.sort_by_key(rank);
    Ok(adapters.remove(0))
}

/// Opens a device and queue on an adapter.
pub fn open_device(adapter: &wgpu::Adapter) -> Result<(wgpu::Device, wgpu::Queue), MinerError> {
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("bitplace-miner"),
        required_features: wgpu::Features::empty(),
        required_limits: wgpu::Limits::downlevel_defaults().using_resolution(adapter.limits()),
        ..Default::default()
    }))
    .map_err(|e| MinerError::Gpu(format!("request_device: {e}")))
}

/// The kernel's parameter buffer for one dispatch (layout: the comment above `params`
/// in shaders/sha256d.wgsl).
pub fn kernel_params(p: &Prepared, start: u32, count: u32, capacity: u32) -> [u32; PARAM_WORDS] {
    let mut w = [0u32; PARAM_WORDS];
    w[..8].copy_from_slice(&p.mid);
    w[8..].copy_from_slice(&[
        p.a4,
        p.b4,
        p.c4,
        p.d4,
        p.e4,
        p.f4,
        p.g4,
        p.h4,
        p.kw16,
        p.kw17,
        p.w16,
        p.w17,
        p.c18,
        p.c19,
        p.c31,
        p.c32,
        p.target_top,
        start,
        count,
        capacity,
    ]);
    w
}

/// Compiles the kernel for `cfg` on `device`; shader and pipeline errors come back as
/// `Err` with the compiler's message (an error scope), not as a panic.
pub fn build_pipeline(
    device: &wgpu::Device,
    layout: &wgpu::BindGroupLayout,
    cfg: DispatchConfig,
    source: &str,
) -> Result<wgpu::ComputePipeline, MinerError> {
    let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
    let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some("sha256d.wgsl"),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
        label: Some("sha256d"),
        bind_group_layouts: &[Some(layout)],
        immediate_size: 0,
    });
    let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("sha256d"),
        layout: Some(&pipeline_layout),
        module: &module,
        entry_point: Some("main"),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &[
                ("NONCES_PER_INVOCATION", cfg.nonces_per_invocation as f64),
                ("WORKGROUP_SIZE", cfg.workgroup_size as f64),
            ],
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    });
    let errors = [
        pollster::block_on(validation.pop()),
        pollster::block_on(internal.pop()),
    ];
    match errors.into_iter().flatten().next() {
        Some(e) => Err(MinerError::Shader(format!("{cfg}: {e}"))),
        None => Ok(pipeline),
    }
}

/// One dispatch's buffers: parameters in, results out, and a staging copy to read back.
struct Slot {
    params: wgpu::Buffer,
    results: wgpu::Buffer,
    staging: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

impl Slot {
    fn new(device: &wgpu::Device, layout: &wgpu::BindGroupLayout, i: usize) -> Slot {
        let params = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("params{i}")),
            size: (PARAM_WORDS * 4) as u64,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let results = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("results{i}")),
            size: RESULTS_BYTES,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let staging = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(&format!("staging{i}")),
            size: RESULTS_BYTES,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let bind_group = device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&format!("sha256d{i}")),
            layout,
            entries: &[
                wgpu::BindGroupEntry {
                    binding: 0,
                    resource: params.as_entire_binding(),
                },
                wgpu::BindGroupEntry {
                    binding: 1,
                    resource: results.as_entire_binding(),
                },
            ],
        });
        Slot {
            params,
            results,
            staging,
            bind_group,
        }
    }
}

/// Refuses a configuration the device's limits rule out (before the driver does, with
/// a message that says which limit).
fn check_config(device: &wgpu::Device, c: DispatchConfig) -> Result<(), MinerError> {
    let l = device.limits();
    if c.nonces_per_invocation == 0 || c.workgroup_size == 0 {
        return Err(MinerError::Gpu(format!("dispatch {c}: zero is not a size")));
    }
    if c.workgroup_size > l.max_compute_workgroup_size_x
        || c.workgroup_size > l.max_compute_invocations_per_workgroup
    {
        return Err(MinerError::Gpu(format!(
            "dispatch {c}: workgroup size over this device's limit of {}",
            l.max_compute_workgroup_size_x
                .min(l.max_compute_invocations_per_workgroup)
        )));
    }
    Ok(())
}

/// The fixed pseudo-random header benchmarks hash (with an impossible target).
pub fn bench_header() -> [u8; 80] {
    let mut header = [0u8; 80];
    for (i, x) in header.iter_mut().enumerate() {
        *x = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    header
}

/// How long calibration measures each combination on a hardware adapter: with
/// [`CALIBRATION`]'s four, about a second in all plus the pipeline builds.
pub const CALIBRATION_TIME: Duration = Duration::from_millis(200);

/// A dispatch in flight: which slot, its nonce range and when it was submitted.
struct InFlight {
    slot: usize,
    start: u32,
    count: u32,
    submission: wgpu::SubmissionIndex,
    submitted: Instant,
    mapped: mpsc::Receiver<Result<(), wgpu::BufferAsyncError>>,
}

const RESULTS_BYTES: u64 = 4 * (1 + CAPACITY as u64);

/// SHA-256d nonce search on a GPU.
pub struct GpuBackend {
    device: wgpu::Device,
    queue: wgpu::Queue,
    layout: wgpu::BindGroupLayout,
    pipeline: wgpu::ComputePipeline,
    slots: Vec<Slot>,
    adapter: String,
    config: DispatchConfig,
    /// Nonces per dispatch, adapted to [`TARGET_DISPATCH`].
    batch: u32,
    /// Most workgroups per dispatch dimension (the device's limit; tests lower it).
    max_groups: u32,
    /// The first error the device reported outside an error scope (a lost device, an
    /// out-of-memory), turned into `Err` by the next search.
    device_error: Arc<Mutex<Option<String>>>,
}

impl GpuBackend {
    /// Opens the adapter chosen by [`pick_adapter`].
    pub fn open(filter: Option<&str>) -> Result<GpuBackend, MinerError> {
        GpuBackend::on_adapter(&pick_adapter(filter)?, None)
    }

    /// Opens a device on a chosen adapter. With `config` `None` the dispatch is tuned:
    /// on a hardware adapter the [`CALIBRATION`] combinations are measured and the
    /// fastest kept; a software one gets [`DispatchConfig::DEFAULT`] (measuring there
    /// would cost seconds of pipeline builds on the very cores it runs on).
    pub fn on_adapter(
        adapter: &wgpu::Adapter,
        config: Option<DispatchConfig>,
    ) -> Result<GpuBackend, MinerError> {
        let (device, queue) = open_device(adapter)?;
        let name = adapter.get_info().name;
        match config {
            Some(c) => GpuBackend::new(device, queue, &name, c),
            None if is_software(adapter) => {
                GpuBackend::new(device, queue, &name, DispatchConfig::DEFAULT)
            }
            None => {
                let mut g = GpuBackend::new(device, queue, &name, DispatchConfig::DEFAULT)?;
                g.calibrate(&CALIBRATION, CALIBRATION_TIME)?;
                Ok(g)
            }
        }
    }

    /// On an existing device and queue (tests inject the software adapter this way).
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_name: &str,
        config: DispatchConfig,
    ) -> Result<GpuBackend, MinerError> {
        GpuBackend::with_shader(device, queue, adapter_name, config, SHADER)
    }

    /// Like [`GpuBackend::new`] with another kernel source (tests check that a broken
    /// one is an `Err`).
    pub fn with_shader(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_name: &str,
        config: DispatchConfig,
        source: &str,
    ) -> Result<GpuBackend, MinerError> {
        check_config(&device, config)?;
        let device_error = Arc::new(Mutex::new(None));
        {
            let slot = device_error.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut s = slot.lock().unwrap_or_else(|p| p.into_inner());
                s.get_or_insert_with(|| e.to_string());
            }));
        }
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("sha256d"),
            entries: &[storage_entry(0, true), storage_entry(1, false)],
        });
        let pipeline = build_pipeline(&device, &layout, config, source)?;
        let slots = (0..2).map(|i| Slot::new(&device, &layout, i)).collect();
        let max_groups = device.limits().max_compute_workgroups_per_dimension;
        Ok(GpuBackend {
            device,
            queue,
            layout,
            pipeline,
            slots,
            adapter: adapter_name.to_string(),
            config,
            batch: config.per_group() * 16,
            max_groups: max_groups.clamp(1, MAX_WORKGROUPS),
            device_error,
        })
    }

    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// The dispatch configuration in use.
    pub fn config(&self) -> DispatchConfig {
        self.config
    }

    /// Switches to another configuration (builds its pipeline).
    pub fn set_config(&mut self, config: DispatchConfig) -> Result<(), MinerError> {
        check_config(&self.device, config)?;
        self.pipeline = build_pipeline(&self.device, &self.layout, config, SHADER)?;
        self.config = config;
        self.batch = config.per_group() * 16;
        Ok(())
    }

    /// Measures each configuration for about `each` (after its pipeline build and a
    /// warm-up dispatch), returns the table, and keeps the fastest.
    pub fn calibrate(
        &mut self,
        configs: &[DispatchConfig],
        each: Duration,
    ) -> Result<Vec<Measured>, MinerError> {
        let mut table = Vec::with_capacity(configs.len());
        for &config in configs {
            let t0 = Instant::now();
            if let Err(e) = self.set_config(config) {
                // A combination this device cannot run (e.g. a workgroup over its limit)
                // is left out of the table, not fatal.
                tracing::debug!("{}: {config} skipped: {e}", self.adapter);
                continue;
            }
            let pipeline_ms = t0.elapsed().as_secs_f64() * 1e3;
            table.push(Measured {
                config,
                hashes_per_second: self.measure(each)?,
                pipeline_ms,
            });
        }
        let best = table
            .iter()
            .max_by(|a, b| a.hashes_per_second.total_cmp(&b.hashes_per_second))
            .map(|m| m.config)
            .ok_or_else(|| MinerError::Gpu("no dispatch configuration runs here".into()))?;
        if best != self.config {
            self.set_config(best)?;
        }
        Ok(table)
    }

    /// Hashes per second over about `time` of searching an impossible target (the
    /// batch adapts first, so the figure is at the size real searches use).
    pub fn measure(&mut self, time: Duration) -> Result<f64, MinerError> {
        let work = Work::new(bench_header(), [0u8; 32]);
        // Warm-up: first dispatches, batch growth.
        let warm = SearchControl::new();
        self.search_for(&work, &warm, time / 3)?;
        let ctl = SearchControl::new();
        let t0 = Instant::now();
        self.search_for(&work, &ctl, time)?;
        Ok(ctl.hashes() as f64 / t0.elapsed().as_secs_f64().max(1e-9))
    }

    /// Searches until `time` has passed (checked between dispatches).
    fn search_for(
        &mut self,
        work: &Work,
        ctl: &SearchControl,
        time: Duration,
    ) -> Result<(), MinerError> {
        let t0 = Instant::now();
        let mut start = 0u32;
        while t0.elapsed() < time {
            let n = self.batch;
            self.search_with(work, start, n as u64 * 2, ctl, &|_| {})?;
            start = start.wrapping_add(n.wrapping_mul(2));
        }
        Ok(())
    }

    /// Nonces per dispatch right now (adapts to the device's speed).
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// Fixes the nonces per dispatch (tests use small dispatches to place nonces at every
    /// position); later searches still adapt it.
    pub fn set_batch(&mut self, nonces: u32) {
        self.batch = nonces.clamp(1, self.max_batch());
    }

    /// Lowers the workgroups allowed per dispatch dimension, so that tests reach the
    /// y dimension with small dispatches.
    pub fn set_max_groups_per_dimension(&mut self, groups: u32) {
        self.max_groups = groups.clamp(1, MAX_WORKGROUPS);
        self.batch = self.batch.min(self.max_batch());
    }

    fn max_batch(&self) -> u32 {
        let groups = self.max_groups as u64 * self.max_groups as u64;
        (groups * self.config.per_group() as u64).min(MAX_BATCH as u64) as u32
    }

    /// Workgroups for `count` nonces as (x, y): x up to the dimension limit, then rows.
    fn grid(&self, count: u32) -> (u32, u32) {
        let groups = count.div_ceil(self.config.per_group()).max(1);
        let x = groups.min(self.max_groups);
        (x, groups.div_ceil(x))
    }

    fn submit(&self, slot: usize, prepared: &Prepared, start: u32, count: u32) -> InFlight {
        let s = &self.slots[slot];
        let params = kernel_params(prepared, start, count, CAPACITY);
        self.queue
            .write_buffer(&s.params, 0, bytemuck::cast_slice(&params));
        // Zero the winners counter (only the first word needs it).
        self.queue.write_buffer(&s.results, 0, &[0u8; 4]);
        let (gx, gy) = self.grid(count);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: Some("sha256d"),
                timestamp_writes: None,
            });
            pass.set_pipeline(&self.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        }
        encoder.copy_buffer_to_buffer(&s.results, 0, &s.staging, 0, RESULTS_BYTES);
        let submission = self.queue.submit([encoder.finish()]);
        let (tx, rx) = mpsc::channel();
        s.staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        InFlight {
            slot,
            start,
            count,
            submission,
            submitted: Instant::now(),
            mapped: rx,
        }
    }

    /// Waits for a dispatch and returns the nonces it reported (`None`: more winners than
    /// the results buffer holds).
    fn collect(&self, f: InFlight) -> Result<Option<Vec<u32>>, MinerError> {
        self.device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(f.submission),
                timeout: None,
            })
            .map_err(|e| MinerError::Gpu(format!("poll: {e}")))?;
        f.mapped
            .recv()
            .map_err(|_| MinerError::Gpu("map callback dropped".into()))?
            .map_err(|e| MinerError::Gpu(format!("map: {e}")))?;
        let staging = &self.slots[f.slot].staging;
        let out = {
            let view = staging
                .get_mapped_range(..)
                .map_err(|e| MinerError::Gpu(format!("mapped range: {e}")))?;
            let words: &[u32] = bytemuck::cast_slice(&view);
            let n = words[0];
            if n > CAPACITY {
                None
            } else {
                Some(words[1..1 + n as usize].to_vec())
            }
        };
        staging.unmap();
        Ok(out)
    }

    /// Searches `count` nonces from `start` (wrapping past 2^32; `count` ≤ 2^32) and
    /// returns every nonce whose hash meets the target, each re-verified on the CPU, in
    /// search order. Stops early (within about two dispatches) when `ctl` is cancelled.
    pub fn search(
        &mut self,
        work: &Work,
        start: u32,
        count: u64,
        ctl: &SearchControl,
    ) -> Result<Vec<Solution>, MinerError> {
        let found = std::sync::Mutex::new(Vec::new());
        self.search_with(work, start, count, ctl, &|s| {
            found.lock().unwrap_or_else(|e| e.into_inner()).push(s)
        })?;
        let mut found = found.into_inner().unwrap_or_else(|e| e.into_inner());
        found.sort_by_key(|s| s.nonce.wrapping_sub(start));
        found.dedup_by_key(|s| s.nonce);
        Ok(found)
    }

    /// Like [`GpuBackend::search`], but hands each verified solution to `on_found` as
    /// soon as its dispatch has been read back.
    pub fn search_with(
        &mut self,
        work: &Work,
        start: u32,
        count: u64,
        ctl: &SearchControl,
        on_found: &(dyn Fn(Solution) + Sync),
    ) -> Result<(), MinerError> {
        if let Some(e) = self
            .device_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(MinerError::Gpu(format!("{}: {e}", self.adapter)));
        }
        let count = count.min(1 << 32);
        let prepared = work.prepared();
        let mut offset = 0u64;
        let mut queue: std::collections::VecDeque<InFlight> = Default::default();
        let mut next_slot = 0;
        loop {
            // Keep two dispatches queued: one running, one waiting behind it.
            while queue.len() < 2 && offset < count && !ctl.is_cancelled() {
                let n = (self.batch as u64).min(count - offset) as u32;
                queue.push_back(self.submit(
                    next_slot,
                    &prepared,
                    start.wrapping_add(offset as u32),
                    n,
                ));
                next_slot ^= 1;
                offset += n as u64;
            }
            let Some(done) = queue.pop_front() else { break };
            let (range_start, range_count, submitted) = (done.start, done.count, done.submitted);
            let nonces = self.collect(done)?;
            ctl.add_hashes(range_count as u64);
            match nonces {
                Some(nonces) => {
                    // Never trust the device: every reported nonce is re-hashed on the CPU.
                    for solution in nonces.into_iter().filter_map(|n| work.check(n)) {
                        on_found(solution);
                    }
                }
                None => {
                    // Results buffer overflowed: redo this range on the CPU, losing nothing.
                    let cpu = CpuBackend::new(0);
                    let ctl = SearchControl::new();
                    cpu.search_with(work, range_start, range_count as u64, &ctl, on_found);
                }
            }
            self.adapt(range_count, submitted.elapsed(), queue.len());
        }
        Ok(())
    }

    /// Grows or shrinks the dispatch toward [`TARGET_DISPATCH`]. `elapsed` runs from
    /// submission to read-back, so with one more dispatch queued ahead it covers two.
    fn adapt(&mut self, count: u32, elapsed: Duration, queued_ahead: usize) {
        if count < self.batch {
            return; // a short tail says nothing about speed
        }
        let per_dispatch = elapsed / (1 + queued_ahead.min(1)) as u32;
        if per_dispatch < TARGET_DISPATCH / 2 {
            self.batch = self.batch.saturating_mul(2).min(self.max_batch());
        } else if per_dispatch > TARGET_DISPATCH * 2 {
            self.batch = (self.batch / 2).max(self.config.per_group());
        }
    }
}

fn storage_entry(binding: u32, read_only: bool) -> wgpu::BindGroupLayoutEntry {
    wgpu::BindGroupLayoutEntry {
        binding,
        visibility: wgpu::ShaderStages::COMPUTE,
        ty: wgpu::BindingType::Buffer {
            ty: wgpu::BufferBindingType::Storage { read_only },
            has_dynamic_offset: false,
            min_binding_size: None,
        },
        count: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words the browser miner writes must be these too (api/web/test/mining.test.mjs
    /// checks the page against the same file): the two hosts of one kernel agree.
    #[test]
    fn kernel_params_match_the_shared_vector() {
        let v: serde_json::Value =
            serde_json::from_str(include_str!("../../shaders/vectors/kernel_params.json"))
                .expect("vector");
        let bytes = |k: &str| hex::decode(v[k].as_str().expect(k)).expect(k);
        let header: [u8; 80] = bytes("header").try_into().expect("80 bytes");
        let target: [u8; 32] = bytes("target").try_into().expect("32 bytes");
        let word = |k: &str| v[k].as_u64().expect(k) as u32;
        let want: Vec<u32> = v["words"]
            .as_array()
            .expect("words")
            .iter()
            .map(|w| w.as_u64().expect("word") as u32)
            .collect();
        let p = Prepared::new(&header, &target);
        let got = kernel_params(&p, word("start"), word("count"), word("capacity"));
        assert_eq!(got.to_vec(), want);
    }
}

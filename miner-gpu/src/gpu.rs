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
//! with at most two in flight, new work (a cancel) is picked up within ~100 ms.

use crate::{CpuBackend, MinerError, SearchControl, Solution, Work};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The kernel, loaded from the repository's shaders/ directory at compile time.
pub const SHADER: &str = include_str!("../../shaders/sha256d.wgsl");

/// Invocations per workgroup (must match `@workgroup_size` in the shader).
const WORKGROUP: u32 = 64;
/// Most workgroups one dispatch may have in x (wgpu's default limit).
const MAX_WORKGROUPS: u32 = 65_535;
/// Winners one dispatch can report; with more, the range is re-searched on the CPU so
/// none is lost (only happens with absurdly easy targets).
const CAPACITY: u32 = 1024;
/// Wall time one dispatch should take.
pub const TARGET_DISPATCH: Duration = Duration::from_millis(50);

/// A GPU adapter as listed by `bitplace-miner adapters`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdapterDesc {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
}

impl AdapterDesc {
    fn from_info(info: &wgpu::AdapterInfo) -> AdapterDesc {
        AdapterDesc {
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

/// Every adapter wgpu can see (all backends).
pub fn list_adapters() -> Vec<AdapterDesc> {
    let adapters = pollster::block_on(instance().enumerate_adapters(wgpu::Backends::all()));
    adapters
        .iter()
        .map(|a| AdapterDesc::from_info(&a.get_info()))
        .collect()
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

/// One dispatch's buffers: parameters in, results out, and a staging copy to read back.
struct Slot {
    params: wgpu::Buffer,
    results: wgpu::Buffer,
    staging: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

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
    pipeline: wgpu::ComputePipeline,
    slots: Vec<Slot>,
    adapter: String,
    nonces_per_invocation: u32,
    /// Nonces per dispatch, adapted to [`TARGET_DISPATCH`].
    batch: u32,
}

impl GpuBackend {
    /// Opens the adapter chosen by [`pick_adapter`].
    pub fn open(filter: Option<&str>) -> Result<GpuBackend, MinerError> {
        GpuBackend::on_adapter(&pick_adapter(filter)?)
    }

    /// Opens a device on a chosen adapter.
    pub fn on_adapter(adapter: &wgpu::Adapter) -> Result<GpuBackend, MinerError> {
        let (device, queue) = open_device(adapter)?;
        GpuBackend::new(device, queue, &adapter.get_info().name, 32)
    }

    /// On an existing device and queue (tests inject the software adapter this way).
    /// `nonces_per_invocation` sets the shader's `NONCES_PER_INVOCATION`.
    pub fn new(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter_name: &str,
        nonces_per_invocation: u32,
    ) -> Result<GpuBackend, MinerError> {
        let nonces_per_invocation = nonces_per_invocation.max(1);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("sha256d.wgsl"),
            source: wgpu::ShaderSource::Wgsl(SHADER.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("sha256d"),
            entries: &[storage_entry(0, true), storage_entry(1, false)],
        });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("sha256d"),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let npi = nonces_per_invocation as f64;
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("sha256d"),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some("main"),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants: &[("NONCES_PER_INVOCATION", npi)],
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let slots = (0..2)
            .map(|i| {
                let params = device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("params{i}")),
                    size: 32 * 4,
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
                    layout: &layout,
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
            })
            .collect();
        Ok(GpuBackend {
            device,
            queue,
            pipeline,
            slots,
            adapter: adapter_name.to_string(),
            nonces_per_invocation,
            batch: WORKGROUP * nonces_per_invocation * 16,
        })
    }

    pub fn adapter(&self) -> &str {
        &self.adapter
    }

    /// Nonces per dispatch right now (adapts to the device's speed).
    pub fn batch(&self) -> u32 {
        self.batch
    }

    /// Fixes the nonces per dispatch (tests use small dispatches to place nonces at every
    /// position); it is still adapted by later searches unless `adaptive` is false.
    pub fn set_batch(&mut self, nonces: u32) {
        self.batch = nonces.clamp(1, self.max_batch());
    }

    fn max_batch(&self) -> u32 {
        (MAX_WORKGROUPS as u64 * WORKGROUP as u64 * self.nonces_per_invocation as u64)
            .min(u32::MAX as u64) as u32
    }

    fn submit(&self, slot: usize, prepared: &[u32; 28], start: u32, count: u32) -> InFlight {
        let s = &self.slots[slot];
        let mut params = [0u32; 32];
        params[..28].copy_from_slice(prepared);
        params[28] = start;
        params[29] = count;
        params[30] = CAPACITY;
        self.queue
            .write_buffer(&s.params, 0, bytemuck::cast_slice(&params));
        // Zero the winners counter (only the first word needs it).
        self.queue.write_buffer(&s.results, 0, &[0u8; 4]);
        let invocations = count.div_ceil(self.nonces_per_invocation);
        let groups = invocations.div_ceil(WORKGROUP);
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
            pass.dispatch_workgroups(groups, 1, 1);
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
        let count = count.min(1 << 32);
        let prepared = work.prepared().to_words();
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
            self.batch = (self.batch / 2).max(WORKGROUP * self.nonces_per_invocation);
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

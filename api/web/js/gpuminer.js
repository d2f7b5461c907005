// WebGPU nonce search with the native miner's own kernel, served by the node at
// /shaders/sha256d.wgsl (one source of truth). Buffers and parameters follow
// miner-gpu/src/gpu.rs exactly: binding 0 = params (read-only storage, 28 u32: the 25
// prepared words, first nonce, nonce count, result capacity, as kernel_params), binding
// 1 = results (atomic count + nonces), workgroups of 64 invocations (the kernel's default
// WORKGROUP_SIZE), NONCES_PER_INVOCATION nonces each, along x only.

export const SHADER_URL = "/shaders/sha256d.wgsl";
const WORKGROUP = 64;
const MAX_WORKGROUPS = 65535;
const CAPACITY = 1024;
export const PARAM_WORDS = 28;
const RESULTS_BYTES = 4 * (1 + CAPACITY);
export const NONCES_PER_INVOCATION = 32;

/** Why WebGPU cannot be used here (thrown by `openGpu`). */
export class NoWebGpu extends Error {}

/** The adapter's name as the browser describes it ("google / swiftshader" etc.). */
export function adapterName(info) {
  if (!info) return "unknown adapter";
  const parts = [info.vendor, info.architecture, info.device, info.description].filter((s) => s);
  return parts.length ? [...new Set(parts)].join(" / ") : "unknown adapter";
}

/** Dispatch shape for `count` nonces: workgroups along x (the kernel stops past `count`). */
export function workgroupsFor(count, noncesPerInvocation = NONCES_PER_INVOCATION) {
  return Math.ceil(Math.ceil(count / noncesPerInvocation) / WORKGROUP);
}

/** The largest dispatch in nonces (65,535 workgroups), capped to the u32 nonce space. */
export function maxBatch(noncesPerInvocation = NONCES_PER_INVOCATION) {
  return Math.min(MAX_WORKGROUPS * WORKGROUP * noncesPerInvocation, 0xffffffff);
}

/** The kernel's parameter words: `prepare`'s 25, then first nonce, count, capacity. */
export function kernelParams(prepared, start, count, capacity) {
  if (prepared.length !== PARAM_WORDS - 3) throw new Error(`prepared work is ${PARAM_WORDS - 3} words`);
  const params = new Uint32Array(PARAM_WORDS);
  params.set(prepared);
  params[25] = start >>> 0;
  params[26] = count >>> 0;
  params[27] = capacity >>> 0;
  return params;
}

/** Opens the GPU and compiles the kernel. Throws NoWebGpu with a reason a person can read. */
export async function openGpu(gpu = globalThis.navigator?.gpu) {
  if (!gpu) throw new NoWebGpu("This browser has no WebGPU (navigator.gpu is missing). Use a current Chrome, Edge or Safari, or Firefox with WebGPU enabled.");
  const adapter = await gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new NoWebGpu("WebGPU is present but found no GPU adapter (disabled or blocklisted).");
  const device = await adapter.requestDevice();
  const res = await fetch(SHADER_URL);
  if (!res.ok) throw new Error(`cannot load the kernel ${SHADER_URL}: HTTP ${res.status}`);
  const code = await res.text();
  const module = device.createShaderModule({ label: "sha256d.wgsl", code });
  const info = await module.getCompilationInfo();
  const errors = info.messages.filter((m) => m.type === "error");
  if (errors.length) throw new Error(`the kernel did not compile: ${errors.map((m) => `${m.lineNum}:${m.linePos} ${m.message}`).join("; ")}`);
  const pipeline = await device.createComputePipelineAsync({
    label: "sha256d",
    layout: "auto",
    compute: { module, entryPoint: "main", constants: { NONCES_PER_INVOCATION } },
  });
  return new GpuSearch(device, pipeline, adapterName(adapter.info));
}

/** One compiled kernel on one device: `search` runs one dispatch. */
export class GpuSearch {
  constructor(device, pipeline, adapter) {
    this.device = device;
    this.pipeline = pipeline;
    this.adapter = adapter;
    const B = globalThis.GPUBufferUsage;
    this.params = device.createBuffer({ label: "params", size: PARAM_WORDS * 4, usage: B.STORAGE | B.COPY_DST });
    this.results = device.createBuffer({ label: "results", size: RESULTS_BYTES, usage: B.STORAGE | B.COPY_SRC | B.COPY_DST });
    this.staging = device.createBuffer({ label: "staging", size: RESULTS_BYTES, usage: B.MAP_READ | B.COPY_DST });
    this.bindGroup = device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: [{ binding: 0, resource: { buffer: this.params } }, { binding: 1, resource: { buffer: this.results } }],
    });
  }

  /**
   * Tries nonces start..start+count-1 (wrapping past 2^32) of the prepared header.
   * Returns the candidate nonces the kernel reported (its early reject compares only the
   * hash's top word: every candidate must be re-checked in full).
   */
  async search(prepared, start, count) {
    const params = kernelParams(prepared, start, count, CAPACITY);
    const q = this.device.queue;
    q.writeBuffer(this.params, 0, params);
    q.writeBuffer(this.results, 0, new Uint32Array(1));
    const enc = this.device.createCommandEncoder();
    const pass = enc.beginComputePass({ label: "sha256d" });
    pass.setPipeline(this.pipeline);
    pass.setBindGroup(0, this.bindGroup);
    pass.dispatchWorkgroups(workgroupsFor(count));
    pass.end();
    enc.copyBufferToBuffer(this.results, 0, this.staging, 0, RESULTS_BYTES);
    q.submit([enc.finish()]);
    await this.staging.mapAsync(globalThis.GPUMapMode.READ);
    const out = new Uint32Array(this.staging.getMappedRange().slice(0));
    this.staging.unmap();
    const found = Math.min(out[0], CAPACITY);
    return Array.from(out.subarray(1, 1 + found));
  }

  destroy() {
    for (const b of [this.params, this.results, this.staging]) b.destroy();
    this.device.destroy();
  }
}

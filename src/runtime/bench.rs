//! `adamp-graph bench`: optimizer steps over a model's trainable tensors on
//! the device, against the unprojected baseline and a device copy.
use super::device::Gpu;
use super::optim::{DeviceOptimizer, OptimError, Tuning, Variant};
use crate::optim::{Algorithm, Config, Detect, Overrides, TensorSpec};
use serde::Serialize;
use std::time::Instant;

/// What `bench --format json` prints.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The adapter.
    pub device: String,
    /// Optimizer benchmarked.
    pub optimizer: Algorithm,
    /// Detection mode.
    pub detect: Detect,
    /// Tensors.
    pub tensors: usize,
    /// Elements.
    pub elements: usize,
    /// Median milliseconds per step after warm-up.
    pub ms_per_step: f64,
    /// The family's unprojected baseline (adam or sgd).
    pub baseline: Algorithm,
    /// Its median milliseconds per step.
    pub baseline_ms_per_step: f64,
    /// `ms_per_step / baseline_ms_per_step`.
    pub ratio: f64,
    /// Global-memory bytes one step moves (from the job table; see `optim.rs`).
    pub bytes_per_step: u64,
    /// `bytes_per_step` over the median step time, in GB/s.
    pub gbps: f64,
    /// Device buffer-to-buffer copy bandwidth measured in the same run (read + write), GB/s.
    pub copy_gbps: f64,
    /// A compute-shader copy (read one buffer, write another) in the same run,
    /// GB/s: the ceiling for kernels, which on a software adapter differs
    /// widely from the copy engine's.
    pub shader_copy_gbps: f64,
    /// The kernel variant that updated projected rows (`fused` or `rows`).
    pub variant: Variant,
}

/// Errors of a benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The optimizer failed on the device.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// The host memory for the synthetic tensors cannot be had.
    #[error("tensor '{tensor}': its {elements} synthetic values ({bytes} bytes) cannot be allocated on the host; bench a smaller model")]
    HostMemory {
        /// The tensor.
        tensor: String,
        /// Its elements.
        elements: usize,
        /// The bytes asked for.
        bytes: u128,
    },
}

/// Deterministic values in [-1, 1) (xorshift), for synthetic tensors.
pub fn synthetic(seed: u64, n: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(n);
    fill_synthetic(&mut out, seed, n);
    out
}

fn fill_synthetic(out: &mut Vec<f32>, seed: u64, n: usize) {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    out.extend((0..n).map(|_| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }));
}

/// Synthetic values for every tensor, scaled; an allocation that fails is an
/// error naming the tensor, not an abort (shapes come from the model file).
fn synthetic_tensors(specs: &[TensorSpec], seed_base: u64, scale: f32) -> Result<Vec<Vec<f32>>, BenchError> {
    let mut out = Vec::new();
    out.try_reserve_exact(specs.len()).map_err(|_| BenchError::HostMemory { tensor: "<all>".into(), elements: specs.len(), bytes: 0 })?;
    for (t, s) in specs.iter().enumerate() {
        let elements = s.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        let too_large = || BenchError::HostMemory {
            tensor: s.name.clone(),
            elements: elements.unwrap_or(usize::MAX),
            bytes: s.shape.iter().fold(4u128, |a, &d| a.saturating_mul(d as u128)),
        };
        let n = elements.ok_or_else(too_large)?;
        let mut v = Vec::new();
        v.try_reserve_exact(n).map_err(|_| too_large())?;
        fill_synthetic(&mut v, t as u64 + seed_base, n);
        if scale != 1.0 {
            v.iter_mut().for_each(|x| *x *= scale);
        }
        out.push(v);
    }
    Ok(out)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// An optimizer over the tensors with these values, stepped once (which also
/// proves the gradients finite).
fn prepared<'g>(gpu: &'g Gpu, algo: Algorithm, detect: Detect, specs: &[TensorSpec], variant: Variant, prefs: &[&[f32]], grefs: &[&[f32]]) -> Result<DeviceOptimizer<'g>, BenchError> {
    let momentum = (!algo.is_adam_family()).then_some(0.9);
    let config = Config::with(algo, &Overrides { momentum, weight_decay: Some(1e-4), ..Overrides::default() }).map_err(|e| OptimError::Hyper(e.to_string()))?;
    let mut opt = DeviceOptimizer::new(gpu, &config, detect, specs.to_vec(), prefs, Tuning { variant: Some(variant), ..Tuning::default() })?;
    opt.set_grads(grefs)?;
    opt.step()?;
    Ok(opt)
}

/// Milliseconds of one submitted and completed step.
fn timed_step(opt: &mut DeviceOptimizer) -> Result<f64, OptimError> {
    let t0 = Instant::now();
    opt.submit_step();
    opt.wait()?;
    Ok(t0.elapsed().as_secs_f64() * 1e3)
}

/// Median step times in ms of an optimizer and its baseline, their steps
/// interleaved (A B A B ...) so that a drifting machine speed hits both alike.
fn time_pair(a: &mut DeviceOptimizer, b: &mut DeviceOptimizer, warmup: usize, steps: usize) -> Result<(f64, f64), OptimError> {
    for _ in 0..warmup {
        timed_step(a)?;
        timed_step(b)?;
    }
    let (mut ta, mut tb) = (Vec::with_capacity(steps), Vec::with_capacity(steps));
    for _ in 0..steps {
        ta.push(timed_step(a)?);
        tb.push(timed_step(b)?);
    }
    Ok((median(ta), median(tb)))
}

/// Buffer-to-buffer copy bandwidth (read + write bytes per second, GB/s).
fn copy_bandwidth(gpu: &Gpu, bytes: u64) -> Result<f64, OptimError> {
    let size = bytes.clamp(1 << 20, gpu.limits.max_buffer_size.min(1 << 30)) & !3;
    let usage = wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
    let a = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("copy-src"), size, usage, mapped_at_creation: false });
    let b = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("copy-dst"), size, usage, mapped_at_creation: false });
    let mut times = Vec::new();
    for k in 0..7 {
        let t0 = Instant::now();
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(&a, 0, &b, 0, size);
        gpu.queue.submit([enc.finish()]);
        gpu.wait("copy").map_err(OptimError::Gpu)?;
        if k > 1 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(2.0 * size as f64 / median(times) / 1e9)
}

/// Workgroup size of the shader copy (`COPY_WG` in shaders/copy.wgsl).
const COPY_WG: u32 = 256;

/// Shader-copy bandwidth (read + write bytes per second, GB/s).
fn shader_copy_bandwidth(gpu: &Gpu, bytes: u64) -> Result<f64, OptimError> {
    let size = bytes.clamp(1 << 20, gpu.max_binding_bytes().min(1 << 30)) & !15;
    let usage = wgpu::BufferUsages::STORAGE;
    let dev = &gpu.device;
    let a = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("copy-src"), size, usage, mapped_at_creation: false });
    let b = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("copy-dst"), size, usage, mapped_at_creation: false });
    let source = format!("const COPY_WG: u32 = {COPY_WG}u;\n{}", include_str!("../../shaders/copy.wgsl"));
    let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("copy.wgsl"), source: wgpu::ShaderSource::Wgsl(source.into()) });
    let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some("copy"),
        layout: None,
        module: &module,
        entry_point: Some("copy"),
        compilation_options: Default::default(),
        cache: None,
    });
    let bind = dev.create_bind_group(&wgpu::BindGroupDescriptor {
        label: Some("copy"),
        layout: &pipeline.get_bind_group_layout(0),
        entries: &[
            wgpu::BindGroupEntry { binding: 0, resource: a.as_entire_binding() },
            wgpu::BindGroupEntry { binding: 1, resource: b.as_entire_binding() },
        ],
    });
    let groups = (size / 16).div_ceil(COPY_WG as u64) as u32;
    let x = groups.min(gpu.limits.max_compute_workgroups_per_dimension.max(1));
    let mut times = Vec::new();
    for k in 0..7 {
        let t0 = Instant::now();
        let mut enc = dev.create_command_encoder(&Default::default());
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("copy"), timestamp_writes: None });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind, &[]);
            pass.dispatch_workgroups(x, groups.div_ceil(x), 1);
        }
        gpu.queue.submit([enc.finish()]);
        gpu.wait("shader copy").map_err(OptimError::Gpu)?;
        if k > 1 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(2.0 * size as f64 / median(times) / 1e9)
}

/// Runs the benchmark (`variant`: the adapter's default when `None`); `steps`
/// timed steps (at least one: the CLI refuses 0).
pub fn run(gpu: &Gpu, specs: &[TensorSpec], algo: Algorithm, detect: Detect, variant: Option<Variant>, warmup: usize, steps: usize) -> Result<BenchReport, BenchError> {
    let steps = steps.max(1);
    let variant = variant.unwrap_or_else(|| Variant::for_adapter(&gpu.info));
    let baseline = algo.baseline();
    // One set of synthetic values for both optimizers, freed once uploaded.
    let (mut opt, mut base) = {
        let params = synthetic_tensors(specs, 1, 1.0)?;
        let grads = synthetic_tensors(specs, 10_007, 1e-2)?;
        let prefs: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
        let grefs: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
        (prepared(gpu, algo, detect, specs, variant, &prefs, &grefs)?, prepared(gpu, baseline, detect, specs, variant, &prefs, &grefs)?)
    };
    let bytes = opt.bytes_per_step();
    let (ms, base_ms) = time_pair(&mut opt, &mut base, warmup, steps)?;
    drop((opt, base)); // free their device memory before the copy ceilings allocate theirs
    let elements: usize = specs.iter().map(TensorSpec::numel).sum();
    let copy_gbps = copy_bandwidth(gpu, 4 * elements as u64)?;
    let shader_copy_gbps = shader_copy_bandwidth(gpu, 4 * elements as u64)?;
    Ok(BenchReport {
        device: gpu.describe(),
        optimizer: algo,
        detect,
        tensors: specs.len(),
        elements,
        ms_per_step: ms,
        baseline,
        baseline_ms_per_step: base_ms,
        ratio: if base_ms > 0.0 { ms / base_ms } else { 0.0 },
        bytes_per_step: bytes,
        gbps: if ms > 0.0 { bytes as f64 / (ms / 1e3) / 1e9 } else { 0.0 },
        copy_gbps,
        shader_copy_gbps,
        variant,
    })
}

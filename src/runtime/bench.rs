//! `adamp-graph bench`: optimizer steps over a model's trainable tensors on
//! the device, against the unprojected baseline and a device copy.
use super::device::Gpu;
use super::optim::{Algorithm, Detect, DeviceOptimizer, Hyper, OptimError, TensorSpec};
use crate::analysis::Analysis;
use crate::plan::{Plan, Projection};
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
}

/// Errors matching a plan file to a model.
#[derive(Debug, thiserror::Error)]
pub enum PlanMismatch {
    /// The model has a tensor the plan lacks.
    #[error("plan does not match the model: tensor '{0}' of the model is not in the plan")]
    Missing(String),
    /// The plan lists a tensor the model lacks.
    #[error("plan does not match the model: plan tensor '{0}' is not a trainable tensor of the model")]
    Extra(String),
    /// Same name, other shape.
    #[error("plan does not match the model: tensor '{name}' has shape {model:?} in the model, {plan:?} in the plan")]
    Shape {
        /// Tensor.
        name: String,
        /// Model shape.
        model: Vec<i64>,
        /// Plan shape.
        plan: Vec<i64>,
    },
}

/// The model's trainable tensors with the plan's projections, checked name by name.
pub fn specs_from_plan(analysis: &Analysis, plan: &Plan) -> Result<Vec<TensorSpec>, PlanMismatch> {
    let by_name: std::collections::HashMap<&str, &crate::plan::TensorPlan> = plan.tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let model_names: std::collections::HashSet<&str> = analysis.parameters.iter().map(|p| p.name.as_str()).collect();
    if let Some(extra) = plan.tensors.iter().find(|t| !model_names.contains(t.name.as_str())) {
        return Err(PlanMismatch::Extra(extra.name.clone()));
    }
    analysis
        .parameters
        .iter()
        .map(|p| {
            let t = by_name.get(p.name.as_str()).ok_or_else(|| PlanMismatch::Missing(p.name.clone()))?;
            if t.shape != p.shape {
                return Err(PlanMismatch::Shape { name: p.name.clone(), model: p.shape.clone(), plan: t.shape.clone() });
            }
            Ok(TensorSpec { name: p.name.clone(), shape: p.shape.iter().map(|&d| d.max(0) as usize).collect(), projection: t.projection.clone() })
        })
        .collect()
}

/// The model's trainable tensors with the static analysis' projections.
pub fn specs_from_analysis(analysis: &Analysis) -> Vec<TensorSpec> {
    analysis
        .parameters
        .iter()
        .map(|p| TensorSpec {
            name: p.name.clone(),
            shape: p.shape.iter().map(|&d| d.max(0) as usize).collect(),
            projection: Projection::from_class(&p.class),
        })
        .collect()
}

/// Deterministic values in [-1, 1) (xorshift), for synthetic tensors.
pub fn synthetic(seed: u64, n: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Median step time in ms of one optimizer over the tensors (synthetic values).
fn time_steps(gpu: &Gpu, algo: Algorithm, detect: Detect, specs: &[TensorSpec], warmup: usize, steps: usize) -> Result<(f64, u64), OptimError> {
    let params: Vec<Vec<f32>> = specs.iter().enumerate().map(|(t, s)| synthetic(t as u64 + 1, s.numel())).collect();
    let grads: Vec<Vec<f32>> = specs.iter().enumerate().map(|(t, s)| synthetic(t as u64 + 10_007, s.numel()).iter().map(|g| g * 1e-2).collect()).collect();
    let prefs: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
    let grefs: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
    let hyper = Hyper { momentum: if algo.is_adam_family() { 0.0 } else { 0.9 }, weight_decay: 1e-4, ..Hyper::defaults(algo) };
    let mut opt = DeviceOptimizer::new(gpu, algo, detect, hyper, specs.to_vec(), &prefs, None)?;
    opt.set_grads(&grefs)?;
    opt.step()?; // also proves the gradients finite
    for _ in 0..warmup {
        opt.submit_step();
    }
    opt.wait()?;
    let mut times = Vec::with_capacity(steps);
    for _ in 0..steps {
        let t0 = Instant::now();
        opt.submit_step();
        opt.wait()?;
        times.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok((median(times), opt.bytes_per_step()))
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
        gpu.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| OptimError::Gpu(super::GpuError::Readback { what: "copy".into(), detail: e.to_string() }))?;
        if k > 1 {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    Ok(2.0 * size as f64 / median(times) / 1e9)
}

/// Runs the benchmark.
pub fn run(gpu: &Gpu, specs: &[TensorSpec], algo: Algorithm, detect: Detect, warmup: usize, steps: usize) -> Result<BenchReport, OptimError> {
    let steps = steps.max(1);
    let (ms, bytes) = time_steps(gpu, algo, detect, specs, warmup, steps)?;
    let baseline = algo.baseline();
    let (base_ms, _) = time_steps(gpu, baseline, detect, specs, warmup, steps)?;
    let elements: usize = specs.iter().map(TensorSpec::numel).sum();
    let copy_gbps = copy_bandwidth(gpu, 4 * elements as u64)?;
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
    })
}

//! One training step on the device: the forward-and-backward program
//! ([`crate::exec`]) and the fused WGSL optimizer ([`crate::runtime`]) over
//! the same device, recorded into one command encoder and submitted once.
//! The only readback is the loss, the optimizer's status words (non-finite
//! gradients) and, when asked, the model's output for accuracy.
//!
//! Parameters and optimizer state live in the optimizer's pages, BatchNorm
//! running statistics in a buffer of their own; a program (one per batch
//! shape: the last partial batch of an epoch gets its own) copies them in,
//! and its gradients and updated statistics out, inside the same submission.
use crate::exec::device::{limits, PipelineCache};
use crate::exec::{ExecError, Executor};
use crate::ir::DType;
use crate::onnx::LoadedModel;
use crate::optim::TensorSpec;
use crate::rewrite::{self, GradientGraph, RewriteError};
use crate::runtime::{DeviceOptimizer, Gpu, GpuError, OptimError, Tuning};
use std::collections::HashMap;

/// Errors of training; each names the step, tensor or array.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Building the gradient graph.
    #[error(transparent)]
    Rewrite(#[from] RewriteError),
    /// The executor.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// The optimizer.
    #[error(transparent)]
    Optim(#[from] OptimError),
    /// The device.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// A data array that does not fit the model.
    #[error("data array '{array}': {detail}")]
    Data {
        /// The array.
        array: String,
        /// What is wrong.
        detail: String,
    },
    /// A non-finite loss or gradient: training stops.
    #[error("step {step}: {what} is not finite; training stopped (lower the learning rate, or check the data)")]
    NonFinite {
        /// The step (1-based).
        step: u64,
        /// The loss or the tensors.
        what: String,
    },
    /// Anything else about the model.
    #[error("{0}")]
    Model(String),
}

/// One array of a batch: its name (a model input, or `labels`), dims and elements.
#[derive(Debug, Clone)]
pub struct Array {
    /// The model input it feeds (or `labels`).
    pub name: String,
    /// Dims; the first counts samples.
    pub dims: Vec<usize>,
    /// Elements, row-major.
    pub data: ArrayData,
}

/// Elements of an [`Array`].
#[derive(Debug, Clone)]
pub enum ArrayData {
    /// float32
    F32(Vec<f32>),
    /// integers (class labels, token ids)
    I64(Vec<i64>),
}

impl ArrayData {
    /// Elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::I64(v) => v.len(),
        }
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What one step measured.
#[derive(Debug, Clone, Copy)]
pub struct StepOut {
    /// This batch's loss (before the update).
    pub loss: f32,
    /// Correctly classified samples (cross-entropy with `[N, C]` outputs).
    pub correct: Option<usize>,
    /// Samples in the batch.
    pub samples: usize,
}

/// Device bytes of a step.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Memory {
    /// The program's arena: its resident part plus the shared transient part.
    pub arena: u64,
    /// Inputs, outputs (gradients included) and constants of the program.
    pub resident: u64,
    /// The activations and temporaries, sharing storage by lifetime.
    pub transient: u64,
    /// What the transient tensors would take without sharing.
    pub unshared: u64,
    /// The optimizer's pages: parameters, gradients, state.
    pub optimizer: u64,
    /// BatchNorm statistics.
    pub buffers: u64,
    /// Device buffers the program's arena is split into (one unless it
    /// exceeds the adapter's largest buffer).
    pub arena_pages: usize,
}

impl Memory {
    /// Everything the step holds on the device.
    pub fn peak(&self) -> u64 {
        self.arena + self.optimizer + self.buffers
    }
}

/// A program for one batch shape, and its readback buffer.
struct Shaped<'g> {
    exec: Executor<'g>,
    readback: wgpu::Buffer,
    /// Bytes of the output read back for accuracy (0: none).
    output_bytes: u64,
    /// The metrics launches over this program's copy of the parameters.
    metric_binds: Vec<wgpu::BindGroup>,
    /// Arena offsets, looked up once: per parameter its copy and its
    /// gradient, per statistic its input and its `.new`, the loss, the output.
    at: Offsets,
}

/// Where a program keeps what a step copies in and out.
struct Offsets {
    params: Vec<u64>,
    grads: Vec<u64>,
    stats: Vec<u64>,
    stats_new: Vec<u64>,
    loss: u64,
    output: u64,
}

/// One op type's share of a profiled step ([`Trainer::profile`]).
#[derive(Debug, Clone, serde::Serialize)]
pub struct OpTime {
    /// The op type (`Conv`, `MatMul`, ...).
    pub op: String,
    /// Its launches in the step.
    pub launches: usize,
    /// Their time on the device, seconds.
    pub seconds: f64,
}

/// The paper's per-tensor measurements of one step (eq. 5).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TensorMetric {
    /// The tensor.
    #[serde(skip)]
    pub name: String,
    /// ||w_t||, before the step.
    pub norm: f64,
    /// ||w_hat_{t+1} - w_hat_t|| with w_hat = w / ||w||.
    pub effective_step: f64,
    /// Whether the runtime cosine test projected it this step (tensors under the test only).
    #[serde(skip)]
    pub projected: Option<bool>,
}

/// The device side of the metrics: which tensors, the updated values gathered
/// at aligned offsets, the sums, and one pipeline per tensor.
struct Metrics {
    /// Spec indices of the measured tensors (invariant by the plan, or under the runtime test).
    tensors: Vec<usize>,
    /// Whether each is under the runtime test.
    runtime: Vec<bool>,
    scratch: wgpu::Buffer,
    offsets: Vec<u64>,
    sums: wgpu::Buffer,
    pipelines: Vec<std::sync::Arc<wgpu::ComputePipeline>>,
}

const METRIC_WGSL: &str = include_str!("../../shaders/train/metrics.wgsl");

/// The trainer: device state and one program per batch shape.
pub struct Trainer<'g> {
    gpu: &'g Gpu,
    graph: GradientGraph,
    optimizer: DeviceOptimizer<'g>,
    /// BatchNorm running statistics: buffer, and per buffer (offset, elements).
    buffers: wgpu::Buffer,
    buffer_slots: Vec<(String, u64, usize)>,
    programs: HashMap<Vec<(String, Vec<usize>)>, Shaped<'g>>,
    cache: PipelineCache,
    seed: u64,
    steps: u64,
    accuracy: bool,
    /// The program of the latest step.
    last: Option<Vec<(String, Vec<usize>)>>,
    metrics: Metrics,
    /// State tensors per parameter (2 for the Adam family, 1 for SGD).
    state_count: usize,
    /// A smaller largest buffer than the adapter's, for the programs' arenas.
    max_buffer: Option<u64>,
}

/// Float32 elements of an initializer.
fn f32s(t: &crate::ir::Tensor, name: &str) -> Result<Vec<f32>, TrainError> {
    if t.dtype != DType::F32 || t.data.len() != 4 * t.elements() as usize {
        return Err(TrainError::Model(format!("initializer '{name}' is {}, not float32; the device trains float32 models", t.dtype.name())));
    }
    Ok(t.data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

impl<'g> Trainer<'g> {
    /// Builds the gradient graph of `model` and puts its parameters, optimizer
    /// state and BatchNorm statistics on the device. `seed` seeds Dropout.
    pub fn new(gpu: &'g Gpu, model: &LoadedModel, opts: &rewrite::Options, seed: u64) -> Result<Trainer<'g>, TrainError> {
        let graph = rewrite::gradient_graph(model, opts)?;
        let g = &graph.graph;
        let init = |name: &str| -> Result<Vec<f32>, TrainError> {
            let v = g.value_by_name(name).and_then(|v| g.initializer_of(v)).ok_or_else(|| TrainError::Model(format!("'{name}' has no initial value")))?;
            f32s(v, name)
        };
        let params: Vec<Vec<f32>> = graph.specs.iter().map(|s| init(&s.name)).collect::<Result<_, _>>()?;
        let refs: Vec<&[f32]> = params.iter().map(Vec::as_slice).collect();
        let optimizer = DeviceOptimizer::new(gpu, &opts.config, opts.detect, graph.specs.clone(), &refs, Tuning::default())?;
        let mut buffer_slots = Vec::new();
        let mut bytes = Vec::new();
        for b in &graph.buffers {
            let v = init(b)?;
            buffer_slots.push((b.clone(), bytes.len() as u64, v.len()));
            bytes.extend(v.iter().flat_map(|x| x.to_le_bytes()));
        }
        let buffers = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("batchnorm statistics"),
            size: (bytes.len() as u64).max(16).next_multiple_of(4),
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if !bytes.is_empty() {
            gpu.queue.write_buffer(&buffers, 0, &bytes);
        }
        let accuracy = opts.loss == rewrite::Loss::CrossEntropy;
        let mut cache = PipelineCache::default();
        let metrics = Metrics::new(gpu, &graph.specs, &optimizer, &mut cache)?;
        Ok(Trainer { gpu, graph, optimizer, buffers, buffer_slots, programs: HashMap::new(), cache, seed, steps: 0, accuracy, last: None, metrics, state_count: opts.config.algorithm().state_names().len(), max_buffer: None })
    }

    /// The trainable tensors with their projection labels.
    pub fn specs(&self) -> &[TensorSpec] {
        &self.graph.specs
    }

    /// The model inputs a batch must hold (besides `labels`).
    pub fn model_inputs(&self) -> &[String] {
        &self.graph.model_inputs
    }

    /// The gradient graph.
    pub fn gradient_graph(&self) -> &GradientGraph {
        &self.graph
    }

    /// Keeps intermediate values of the gradient graph readable after each
    /// step through [`Trainer::output`], as extra outputs (which the memory
    /// planner then never reuses): for inspection and for tests that compare
    /// the device's decisions (comparisons, MaxPool indices) with another
    /// runtime's. Call it before the first step.
    pub fn watch(&mut self, names: &[String]) -> Result<(), TrainError> {
        if !self.programs.is_empty() {
            return Err(TrainError::Model("values can be watched only before the first step".into()));
        }
        let g = &mut self.graph.graph;
        for name in names {
            let v = g.value_by_name(name).ok_or_else(|| TrainError::Model(format!("the gradient graph has no value '{name}' to watch")))?;
            g.add_output(v);
        }
        Ok(())
    }

    /// Plans every program's arena in buffers of at most `bytes` (below the
    /// adapter's own limit: to check the paged layout on any adapter). Call it
    /// before the first step.
    pub fn limit_buffers(&mut self, bytes: u64) -> Result<(), TrainError> {
        if !self.programs.is_empty() {
            return Err(TrainError::Model("buffers can be limited only before the first step".into()));
        }
        self.max_buffer = Some(bytes);
        Ok(())
    }

    /// The shape of an output (or watched value) of the latest step's program.
    pub fn output_dims(&self, name: &str) -> Option<Vec<usize>> {
        let shaped = self.last.as_ref().and_then(|k| self.programs.get(k))?;
        shaped.exec.program().slot(name).and_then(|s| s.info.as_ref()).map(|i| i.shape.clone())
    }

    /// Times the forward-and-backward pass on `batch` launch by launch
    /// ([`Executor::profile`]: one submission per launch, so the sum exceeds
    /// a real step's single submission by the per-launch overhead that the
    /// empty-submission baseline does not remove). The training state is
    /// unchanged: the optimizer does not run. Per op type, the launches and
    /// their seconds, slowest first.
    pub fn profile(&mut self, batch: &[Array]) -> Result<Vec<OpTime>, TrainError> {
        self.evaluate(batch)?;
        let shaped = self.last.as_ref().and_then(|k| self.programs.get_mut(k)).ok_or_else(|| TrainError::Model("internal: program missing".into()))?;
        let times = shaped.exec.profile()?;
        let program = shaped.exec.program();
        let mut by_op: HashMap<String, OpTime> = HashMap::new();
        for (step, t) in program.steps.iter().zip(times) {
            let op = program.graph.nodes[step.node].op_type.clone();
            let e = by_op.entry(op.clone()).or_insert(OpTime { op, launches: 0, seconds: 0.0 });
            e.launches += 1;
            e.seconds += t;
        }
        let mut out: Vec<OpTime> = by_op.into_values().collect();
        out.sort_by(|a, b| b.seconds.total_cmp(&a.seconds).then_with(|| a.op.cmp(&b.op)));
        Ok(out)
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Kernels compiled so far (all programs).
    pub fn pipelines(&self) -> usize {
        self.cache.len()
    }

    /// The program for a batch (built on first use), checked against the arrays.
    fn shaped(&mut self, batch: &[Array]) -> Result<Vec<(String, Vec<usize>)>, TrainError> {
        let mut key: Vec<(String, Vec<usize>)> = batch.iter().map(|a| (a.name.clone(), a.dims.clone())).collect();
        key.sort();
        if self.programs.contains_key(&key) {
            return Ok(key);
        }
        let g = &self.graph.graph;
        for a in batch {
            if g.value_by_name(&a.name).is_none_or(|v| !g.inputs.contains(&v)) {
                let names: Vec<&str> = self.graph.model_inputs.iter().map(String::as_str).chain(std::iter::once("labels")).collect();
                return Err(TrainError::Data { array: a.name.clone(), detail: format!("the model has no input of that name (its inputs: {})", names.join(", ")) });
            }
            if a.dims.iter().product::<usize>() != a.data.len() {
                return Err(TrainError::Data { array: a.name.clone(), detail: format!("{} elements for dims {:?}", a.data.len(), a.dims) });
            }
        }
        for need in self.graph.model_inputs.iter().map(String::as_str).chain(std::iter::once("labels")) {
            if !batch.iter().any(|a| a.name == need) {
                return Err(TrainError::Data { array: need.into(), detail: "missing: the data must hold one array per model input, plus 'labels'".into() });
            }
        }
        let shapes: HashMap<String, Vec<usize>> = batch.iter().map(|a| (a.name.clone(), a.dims.clone())).collect();
        let specialized = crate::exec::specialize(g, &shapes).map_err(|e| match e {
            ExecError::InputShape { name, detail } => TrainError::Data { array: name, detail },
            e => TrainError::Exec(e),
        })?;
        let mut l = limits(self.gpu);
        l.max_buffer = l.max_buffer.min(self.max_buffer.unwrap_or(u64::MAX));
        let program = crate::exec::plan(specialized, l)?;
        let output_bytes = if self.accuracy {
            program.slot(&self.graph.output).and_then(|s| s.info.as_ref()).filter(|i| i.shape.len() == 2).map(|i| 4 * i.numel() as u64).unwrap_or(0)
        } else {
            0
        };
        let exec = Executor::new(self.gpu, program, &mut self.cache, self.seed)?;
        let (_, status_bytes) = self.optimizer.status_buffer();
        let metric_binds = self.metrics.binds(self.gpu, &exec, &self.graph.specs, &mut self.cache)?;
        let readback = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("step readback"),
            size: 16 + status_bytes + output_bytes + 16 * self.metrics.tensors.len() as u64,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let off = |name: &str| exec.region(name).map(|r| r.0);
        let at = Offsets {
            params: self.graph.specs.iter().map(|s| off(&s.name)).collect::<Result<_, _>>()?,
            grads: self.graph.specs.iter().map(|s| off(&format!("{}.grad", s.name))).collect::<Result<_, _>>()?,
            stats: self.buffer_slots.iter().map(|b| off(&b.0)).collect::<Result<_, _>>()?,
            stats_new: self.buffer_slots.iter().map(|b| off(&format!("{}.new", b.0))).collect::<Result<_, _>>()?,
            loss: off("loss")?,
            output: if output_bytes > 0 { off(&self.graph.output)? } else { 0 },
        };
        self.programs.insert(key.clone(), Shaped { exec, readback, output_bytes, metric_binds, at });
        Ok(key)
    }

    /// The device memory of a step on this batch's shape.
    pub fn memory(&mut self, batch: &[Array]) -> Result<Memory, TrainError> {
        let key = self.shaped(batch)?;
        let p = self.programs[&key].exec.program();
        let params: u64 = self.graph.specs.iter().map(|s| 4 * s.numel() as u64).sum();
        let state = params * self.state_count as u64;
        Ok(Memory {
            arena: p.arena_bytes(),
            resident: p.resident_bytes,
            transient: p.transient_bytes,
            unshared: p.unshared_bytes,
            optimizer: 2 * params + state,
            buffers: self.buffer_slots.iter().map(|b| 4 * b.2 as u64).sum(),
            arena_pages: p.pages().len(),
        })
    }

    /// One training step on a batch at learning rate `lr`.
    pub fn step(&mut self, batch: &[Array], lr: f64) -> Result<StepOut, TrainError> {
        self.run(batch, Some(lr), false).map(|(o, _)| o)
    }

    /// One training step, with the per-tensor record of [`Trainer::measured`]
    /// tensors: whether the runtime test projected them, and (when `measure`)
    /// the paper's norm and effective step, computed on the device in the same
    /// submission (NaN when not measured).
    pub fn step_with(&mut self, batch: &[Array], lr: f64, measure: bool) -> Result<(StepOut, Vec<TensorMetric>), TrainError> {
        self.run(batch, Some(lr), measure)
    }

    /// The loss (and accuracy) on a batch without updating anything.
    pub fn evaluate(&mut self, batch: &[Array]) -> Result<StepOut, TrainError> {
        self.run(batch, None, false).map(|(o, _)| o)
    }

    /// Names of the tensors the metrics measure.
    pub fn measured(&self) -> Vec<&str> {
        self.metrics.tensors.iter().map(|&t| self.graph.specs[t].name.as_str()).collect()
    }

    fn run(&mut self, batch: &[Array], lr: Option<f64>, measure: bool) -> Result<(StepOut, Vec<TensorMetric>), TrainError> {
        let key = self.shaped(batch)?;
        self.last = Some(key.clone());
        let samples = batch.iter().find(|a| a.name == "labels").and_then(|a| a.dims.first().copied()).unwrap_or(0);
        let steps = self.steps;
        let Trainer { gpu, optimizer, programs, buffers, buffer_slots, metrics, .. } = self;
        let measure = measure && lr.is_some() && !metrics.tensors.is_empty();
        let shaped = programs.get_mut(&key).ok_or_else(|| TrainError::Model("internal: program missing".into()))?;
        for a in batch {
            match &a.data {
                ArrayData::F32(v) => shaped.exec.write_f32(&a.name, v),
                ArrayData::I64(v) => shaped.exec.write_i64(&a.name, v),
            }
            .map_err(|e| match e {
                ExecError::InputShape { name, detail } => TrainError::Data { array: name, detail },
                e => TrainError::Exec(e),
            })?;
        }
        let mut enc = gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("train step") });
        // Parameters and statistics into the program.
        for (t, &off) in shaped.at.params.iter().enumerate() {
            for (buf, at, lo, len) in optimizer.pieces(t, false) {
                if len > 0 {
                    let (dst, to) = shaped.exec.locate(off + 4 * lo as u64);
                    enc.copy_buffer_to_buffer(buf, at, dst, to, 4 * len as u64);
                }
            }
        }
        for ((_, at, n), &off) in buffer_slots.iter().zip(&shaped.at.stats) {
            if *n > 0 {
                let (dst, to) = shaped.exec.locate(off);
                enc.copy_buffer_to_buffer(buffers, *at, dst, to, 4 * *n as u64);
            }
        }
        // Dropout draws from (seed, node, step): the same stream whichever program runs the step.
        shaped.exec.set_step(steps as u32);
        shaped.exec.encode(&mut enc);
        if let Some(lr) = lr {
            for (t, &off) in shaped.at.grads.iter().enumerate() {
                for (buf, at, lo, len) in optimizer.pieces(t, true) {
                    if len > 0 {
                        let (src, from) = shaped.exec.locate(off + 4 * lo as u64);
                        enc.copy_buffer_to_buffer(src, from, buf, at, 4 * len as u64);
                    }
                }
            }
            for ((_, at, n), &off) in buffer_slots.iter().zip(&shaped.at.stats_new) {
                if *n > 0 {
                    let (src, from) = shaped.exec.locate(off);
                    enc.copy_buffer_to_buffer(src, from, buffers, *at, 4 * *n as u64);
                }
            }
            optimizer.set_lr(lr);
            optimizer.encode_step(&mut enc);
            if measure {
                metrics.encode(&mut enc, optimizer, &shaped.metric_binds);
            }
        }
        let (status, status_bytes) = optimizer.status_buffer();
        let (src, from) = shaped.exec.locate(shaped.at.loss);
        enc.copy_buffer_to_buffer(src, from, &shaped.readback, 0, 4);
        if lr.is_some() {
            enc.copy_buffer_to_buffer(status, 0, &shaped.readback, 16, status_bytes);
        }
        if shaped.output_bytes > 0 {
            let (src, from) = shaped.exec.locate(shaped.at.output);
            enc.copy_buffer_to_buffer(src, from, &shaped.readback, 16 + status_bytes, shaped.output_bytes);
        }
        let metrics_at = 16 + status_bytes + shaped.output_bytes;
        if measure {
            enc.copy_buffer_to_buffer(&metrics.sums, 0, &shaped.readback, metrics_at, 16 * metrics.tensors.len() as u64);
        }
        gpu.queue.submit([enc.finish()]);
        let bytes = gpu.map_read(&shaped.readback, "step readback")?;
        let word = |i: usize| u32::from_le_bytes([bytes[4 * i], bytes[4 * i + 1], bytes[4 * i + 2], bytes[4 * i + 3]]);
        let loss = f32::from_bits(word(0));
        let step_no = self.steps + 1;
        let mut measured = Vec::new();
        if lr.is_some() {
            let words: Vec<u32> = (0..(status_bytes / 4) as usize).map(|i| word(4 + i)).collect();
            let projected = self.optimizer.projected_in(&words);
            for (k, &t) in self.metrics.tensors.iter().enumerate() {
                let at = metrics_at as usize / 4 + 4 * k;
                let sum = |j: usize| if measure { f32::from_bits(word(at + j)) as f64 } else { 0.0 };
                let (aa, bb, dd, ds) = (sum(0), sum(1), sum(2), sum(3));
                let (na, nb) = (aa.sqrt(), bb.sqrt());
                // ||a/|a| - b/|b|||^2 = (|a-b|^2 - (|a|-|b|)^2) / (|a||b|), |a|-|b| = sum((a-b)(a+b)) / (|a|+|b|)
                let effective = if na > 0.0 && nb > 0.0 {
                    let dn = ds / (na + nb);
                    ((dd - dn * dn) / (na * nb)).max(0.0).sqrt()
                } else {
                    0.0
                };
                measured.push(TensorMetric {
                    name: self.graph.specs[t].name.clone(),
                    norm: na,
                    effective_step: effective,
                    projected: self.metrics.runtime[k].then(|| projected.get(t).copied().unwrap_or(false)),
                });
            }
        }
        if lr.is_some() {
            self.steps += 1;
            let words: Vec<u32> = (0..(status_bytes / 4) as usize).map(|i| word(4 + i)).collect();
            let bad = self.optimizer.nonfinite_in(&words);
            if !loss.is_finite() {
                return Err(TrainError::NonFinite { step: step_no, what: format!("the loss ({loss})") });
            }
            if !bad.is_empty() {
                return Err(TrainError::NonFinite { step: step_no, what: format!("the gradient of {}", bad.join(", ")) });
            }
        }
        let correct = if self.accuracy && bytes.len() > 16 {
            let shaped = &self.programs[&key];
            let out_start = 16 + status_bytes as usize;
            let logits: Vec<f32> = bytes[out_start..out_start + shaped.output_bytes as usize].chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
            let labels = batch.iter().find(|a| a.name == "labels");
            match labels.map(|a| &a.data) {
                Some(ArrayData::I64(l)) if !l.is_empty() && logits.len() % l.len() == 0 => {
                    let classes = logits.len() / l.len();
                    Some(
                        l.iter()
                            .enumerate()
                            .filter(|(i, &y)| {
                                let row = &logits[i * classes..(i + 1) * classes];
                                let best = row.iter().enumerate().fold(0, |b, (k, &x)| if x > row[b] { k } else { b });
                                best as i64 == y
                            })
                            .count(),
                    )
                }
                _ => None,
            }
        } else {
            None
        };
        Ok((StepOut { loss, correct, samples }, if measure { measured } else { measured.into_iter().map(|m| TensorMetric { norm: f64::NAN, effective_step: f64::NAN, ..m }).collect() }))
    }

    /// An output of the latest step's program (`<p>.grad`, `<b>.new`, `loss`,
    /// the model's output, a [`Trainer::watch`]ed value), as float32 (integers
    /// and bools converted).
    pub fn output(&self, name: &str) -> Result<Vec<f32>, TrainError> {
        Ok(self.last_exec()?.read_f32(name)?)
    }

    /// An integer or bool output (or watched value: MaxPool indices, a
    /// comparison's result) of the latest step's program, exactly.
    pub fn output_ints(&self, name: &str) -> Result<Vec<i64>, TrainError> {
        Ok(self.last_exec()?.read_ints(name)?)
    }

    /// The executor of the latest step's program.
    fn last_exec(&self) -> Result<&Executor<'g>, TrainError> {
        let shaped = self.last.as_ref().and_then(|k| self.programs.get(k)).ok_or_else(|| TrainError::Model("no step has run".into()))?;
        Ok(&shaped.exec)
    }

    /// The trained parameters, by name.
    pub fn params(&self) -> Result<HashMap<String, Vec<f32>>, TrainError> {
        let mut out = HashMap::new();
        for (t, s) in self.graph.specs.iter().enumerate() {
            out.insert(s.name.clone(), self.optimizer.param(t)?);
        }
        Ok(out)
    }

    /// The optimizer state per tensor (as [`DeviceOptimizer::state`]).
    pub fn state(&self) -> Result<Vec<Vec<Vec<f32>>>, TrainError> {
        (0..self.graph.specs.len()).map(|t| Ok(self.optimizer.state(t)?)).collect()
    }

    /// The BatchNorm running statistics, by name.
    pub fn buffers(&self) -> Result<HashMap<String, Vec<f32>>, TrainError> {
        let mut out = HashMap::new();
        for (name, at, n) in &self.buffer_slots {
            out.insert(name.clone(), self.gpu.read_f32(&self.buffers, *at, *n, name)?);
        }
        Ok(out)
    }

    /// Restores parameters, optimizer state, statistics and the step count (a checkpoint).
    pub fn restore(&mut self, params: &HashMap<String, Vec<f32>>, state: &[Vec<Vec<f32>>], buffers: &HashMap<String, Vec<f32>>, steps: u64) -> Result<(), TrainError> {
        for (t, s) in self.graph.specs.iter().enumerate() {
            let p = params.get(&s.name).ok_or_else(|| TrainError::Model(format!("the checkpoint lacks parameter '{}'", s.name)))?;
            self.optimizer.set_param(t, p)?;
            let st = state.get(t).ok_or_else(|| TrainError::Model(format!("the checkpoint lacks the state of '{}'", s.name)))?;
            self.optimizer.set_state(t, st, steps as u32)?;
        }
        for (name, at, n) in &self.buffer_slots {
            let v = buffers.get(name).ok_or_else(|| TrainError::Model(format!("the checkpoint lacks buffer '{name}'")))?;
            if v.len() != *n {
                return Err(TrainError::Model(format!("buffer '{name}' has {} values in the checkpoint, {n} in the model", v.len())));
            }
            let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            self.gpu.queue.write_buffer(&self.buffers, *at, &bytes);
        }
        self.steps = steps;
        Ok(())
    }

    /// The step counter of the random streams (Dropout).
    pub fn random_step(&self) -> u32 {
        self.steps as u32
    }
}

impl Metrics {
    fn new(gpu: &Gpu, specs: &[TensorSpec], optimizer: &DeviceOptimizer, cache: &mut PipelineCache) -> Result<Metrics, TrainError> {
        let modes = optimizer.modes();
        let mut tensors = Vec::new();
        let mut runtime = Vec::new();
        for (t, s) in specs.iter().enumerate() {
            let under_test = modes.get(t) == Some(&"runtime");
            if s.numel() > 0 && (s.projection != crate::plan::Projection::None || under_test) {
                tensors.push(t);
                runtime.push(under_test);
            }
        }
        let mut offsets = Vec::new();
        let mut size = 0u64;
        for &t in &tensors {
            offsets.push(size);
            size += (4 * specs[t].numel() as u64).next_multiple_of(crate::exec::plan::ALIGN);
        }
        let usage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST;
        let scratch = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("metrics values"), size: size.max(16), usage, mapped_at_creation: false });
        let sums = gpu.device.create_buffer(&wgpu::BufferDescriptor { label: Some("metrics sums"), size: (16 * tensors.len() as u64).max(16), usage, mapped_at_creation: false });
        let lanes = if gpu.info.device_type == wgpu::DeviceType::Cpu { 64 } else { 256 };
        let mut pipelines = Vec::new();
        for (k, &t) in tensors.iter().enumerate() {
            let wgsl = METRIC_WGSL.replace("{{LANES}}", &lanes.to_string()).replace("{{LEN}}", &specs[t].numel().to_string()).replace("{{SLOT}}", &k.to_string());
            pipelines.push(cache.pipeline(gpu, &wgsl, 3, "metrics").map_err(TrainError::Model)?);
        }
        Ok(Metrics { tensors, runtime, scratch, offsets, sums, pipelines })
    }

    /// The bind groups over one program's copy of the parameters (the values the step read).
    fn binds(&self, gpu: &Gpu, exec: &Executor, specs: &[TensorSpec], cache: &mut PipelineCache) -> Result<Vec<wgpu::BindGroup>, TrainError> {
        let (layout, _) = cache.layout(gpu, 3);
        let mut out = Vec::new();
        for (k, &t) in self.tensors.iter().enumerate() {
            let bytes = 4 * specs[t].numel() as u64;
            let (before, _) = exec.region(&specs[t].name)?;
            fn entry(binding: u32, buffer: &wgpu::Buffer, offset: u64, size: u64) -> wgpu::BindGroupEntry<'_> {
                wgpu::BindGroupEntry { binding, resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding { buffer, offset, size: wgpu::BufferSize::new(size) }) }
            }
            let (arena, before) = exec.locate(before);
            let entries = [entry(0, arena, before, bytes), entry(1, &self.scratch, self.offsets[k], bytes), entry(2, &self.sums, 0, 16 * self.tensors.len() as u64)];
            out.push(gpu.device.create_bind_group(&wgpu::BindGroupDescriptor { label: Some("metrics"), layout: &layout, entries: &entries }));
        }
        Ok(out)
    }

    /// Gathers the updated values and reduces them against the step's copy.
    fn encode(&self, enc: &mut wgpu::CommandEncoder, optimizer: &DeviceOptimizer, binds: &[wgpu::BindGroup]) {
        for (k, &t) in self.tensors.iter().enumerate() {
            for (buf, at, lo, len) in optimizer.pieces(t, false) {
                if len > 0 {
                    enc.copy_buffer_to_buffer(buf, at, &self.scratch, self.offsets[k] + 4 * lo as u64, 4 * len as u64);
                }
            }
        }
        let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("metrics"), timestamp_writes: None });
        for (p, b) in self.pipelines.iter().zip(binds) {
            pass.set_pipeline(p);
            pass.set_bind_group(0, b, &[]);
            pass.dispatch_workgroups(1, 1, 1);
        }
    }
}

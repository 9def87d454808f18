//! AdamP / SGDP (and Adam, AdamW, SGD) on the device: buffers that persist
//! across steps, a job table built once, three dispatches per step at most.
//!
//! Bytes per element per step (float32) moved to and from device memory:
//!
//! | path | reads | writes | total |
//! | --- | --- | --- | --- |
//! | Adam family, streaming or fused | g, p, m, v: 16 | p, m, v: 12 | 28 |
//! | SGD family, streaming or fused | g, p, buf: 12 | p, buf: 8 | 20 |
//! | Adam family, runtime test, rows ≤ FUSED_MAX | cosine 8 + 16 | 12 | 36 |
//! | SGD family, runtime test, rows ≤ FUSED_MAX | cosine 8 + 12 | 8 | 28 |
//! | Adam family, split (longer rows) | stats 16 + apply 16 | 12 | 44 |
//! | SGD family, split | stats 12 + apply 12 | 8 | 32 |
//!
//! Unprojected chunks stream. A fused job holds whole projected rows (up to
//! [`ROWS_PER_JOB`] rows of at most [`SHORT_ROW`] elements, or one row of at most
//! [`FUSED_MAX`]); every element is read once into registers and written once.
//! Split jobs read twice from memory because the projection needs the row's (or,
//! for the runtime test, the whole tensor's) dot products before any write.
use super::device::{Gpu, GpuError};
use crate::plan::Projection;

/// Threads per workgroup (must match `shaders/optim.wgsl`).
pub const WORKGROUP: usize = 256;
/// Threads per short row in projected fused jobs (`SEG` in the shader).
const SEGMENT: usize = 32;
/// Elements per thread a fused row keeps in registers (`K` in the shader).
const PER_THREAD: usize = 20;
/// Short rows one projected fused job holds; split jobs run this many per workgroup too.
const ROWS_PER_JOB: usize = WORKGROUP / SEGMENT;
/// Longest row packed with others (SEGMENT threads each).
const SHORT_ROW: usize = SEGMENT * PER_THREAD;
/// Longest row processed by fused jobs, and the chunk size of unprojected tensors.
pub const FUSED_MAX: usize = WORKGROUP * PER_THREAD;

const SHADER: &str = include_str!("../../shaders/optim.wgsl");

/// The update rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// AdamP (official adamp 0.3.0).
    Adamp,
    /// SGDP (official adamp 0.3.0).
    Sgdp,
    /// torch.optim.Adam.
    Adam,
    /// torch.optim.AdamW.
    Adamw,
    /// torch.optim.SGD.
    Sgd,
}

impl Algorithm {
    fn code(self) -> u32 {
        match self {
            Algorithm::Adamp => 0,
            Algorithm::Sgdp => 1,
            Algorithm::Adam => 2,
            Algorithm::Adamw => 3,
            Algorithm::Sgd => 4,
        }
    }

    /// True for the projecting optimizers.
    pub fn projects(self) -> bool {
        matches!(self, Algorithm::Adamp | Algorithm::Sgdp)
    }

    /// True for Adam, AdamW, AdamP (two state buffers).
    pub fn is_adam_family(self) -> bool {
        matches!(self, Algorithm::Adamp | Algorithm::Adam | Algorithm::Adamw)
    }

    /// The unprojected baseline of the same family.
    pub fn baseline(self) -> Algorithm {
        if self.is_adam_family() {
            Algorithm::Adam
        } else {
            Algorithm::Sgd
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Adamp => "adamp",
            Algorithm::Sgdp => "sgdp",
            Algorithm::Adam => "adam",
            Algorithm::Adamw => "adamw",
            Algorithm::Sgd => "sgd",
        }
    }
}

/// How projected tensors are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Detect {
    /// The reference cosine test on every tensor of 2 or more dims, every step.
    Runtime,
    /// The plan's projection (any axis); no cosine test (undecided tensors are not projected).
    Static,
    /// The plan where proven; the cosine test for undecided tensors.
    Auto,
}

/// Hyperparameters (defaults: the reference implementations).
#[derive(Debug, Clone, PartialEq)]
pub struct Hyper {
    /// Learning rate.
    pub lr: f64,
    /// Adam beta1.
    pub beta1: f64,
    /// Adam beta2.
    pub beta2: f64,
    /// Epsilon.
    pub eps: f64,
    /// Weight decay.
    pub weight_decay: f64,
    /// SGD momentum.
    pub momentum: f64,
    /// SGD dampening.
    pub dampening: f64,
    /// Nesterov.
    pub nesterov: bool,
    /// Cosine-test threshold.
    pub delta: f64,
    /// Weight-decay multiplier where projected.
    pub wd_ratio: f64,
}

impl Hyper {
    /// The reference defaults (adamp 0.3.0 for AdamP/SGDP, torch.optim otherwise).
    pub fn defaults(algo: Algorithm) -> Hyper {
        let base = Hyper {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            delta: 0.1,
            wd_ratio: 0.1,
        };
        match algo {
            Algorithm::Adamw => Hyper { weight_decay: 1e-2, ..base },
            Algorithm::Sgd | Algorithm::Sgdp => Hyper { lr: 0.1, ..base },
            _ => base,
        }
    }
}

/// One tensor the optimizer updates.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    /// Its name (errors name it).
    pub name: String,
    /// Its shape.
    pub shape: Vec<usize>,
    /// The plan's projection for it.
    pub projection: Projection,
}

impl TensorSpec {
    /// Elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// What the last step did to a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projected {
    /// Not projected.
    None,
    /// Projected per slice (the plan's axis, or axis 0 for the runtime test).
    Channel,
    /// Projected as a whole.
    Layer,
}

/// Errors from the device optimizer.
#[derive(Debug, thiserror::Error)]
pub enum OptimError {
    /// The device failed.
    #[error(transparent)]
    Gpu(#[from] GpuError),
    /// Gradients held NaN or infinity. Nothing non-finite was applied: the affected
    /// elements (unprojected tensors), rows (projected rows) or tensors (split jobs) were left unchanged.
    #[error("non-finite gradient in {}: those tensors were not updated", .0.join(", "))]
    NonFinite(Vec<String>),
    /// Host data does not match the tensors.
    #[error("tensor '{name}': {detail}")]
    Shape {
        /// The tensor.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// Hyperparameters out of range.
    #[error("invalid hyperparameter: {0}")]
    Hyper(String),
    /// A tensor or table too large for 32-bit indexing on the device.
    #[error("'{0}' is too large for the device kernels (2^32 elements at most)")]
    TooLarge(String),
}

/// Where a piece of a tensor lives.
#[derive(Debug, Clone, Copy)]
struct Segment {
    tensor_lo: usize,
    page: usize,
    page_off: usize,
    len: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Job {
    tensor: u32,
    row: u32,
    /// tensor-relative first element (contiguous) — the address is assigned with pages
    lo: usize,
    /// elements per row
    len: u32,
    /// whole rows held (fused jobs); 0 for split jobs
    rows: u32,
    strided: Option<(u32, u32, u32)>, // (inner, dim, local_row)
    page: usize,
    addr: u32,
}

struct Page {
    elements: usize,
    param: wgpu::Buffer,
    grad: wgpu::Buffer,
    state0: wgpu::Buffer,
    state1: wgpu::Buffer,
    uniform: wgpu::Buffer,
    bind: Option<wgpu::BindGroup>,
    /// fused jobs: one per workgroup
    job_base: u32,
    job_count: u32,
    /// split jobs: ROWS_PER_JOB per workgroup
    split_base: u32,
    split_count: u32,
}

/// The optimizer's device state for a set of tensors.
pub struct DeviceOptimizer<'g> {
    gpu: &'g Gpu,
    algo: Algorithm,
    hyper: Hyper,
    specs: Vec<TensorSpec>,
    kinds: Vec<u32>,
    segments: Vec<Vec<Segment>>,
    pages: Vec<Page>,
    status: wgpu::Buffer,
    /// Zeros the size of `status`, written at the start of every step.
    status_zeros: Vec<u8>,
    has_split: bool,
    has_runtime_fused: bool,
    total_jobs: u32,
    row_count: u32,
    stats_base: u32,
    tensor_stats_base: u32,
    apply: wgpu::ComputePipeline,
    apply_split: wgpu::ComputePipeline,
    cosine_stats: wgpu::ComputePipeline,
    layer_pd: wgpu::ComputePipeline,
    layer_total: wgpu::ComputePipeline,
    stats: wgpu::ComputePipeline,
    decide: wgpu::ComputePipeline,
    step: u32,
    max_groups: u32,
    bytes_per_step: u64,
}

pub(crate) const PROJ_NONE: u32 = 0;
pub(crate) const PROJ_CHANNEL: u32 = 1;
pub(crate) const PROJ_LAYER: u32 = 2;
pub(crate) const PROJ_RUNTIME: u32 = 3;

/// The projection the kernels (and the training-graph rewrite) apply, by
/// detection mode: a `PROJ_*` code and the row axis.
pub(crate) fn effective(algo: Algorithm, detect: Detect, spec: &TensorSpec) -> (u32, Option<usize>) {
    if !algo.projects() || spec.numel() == 0 {
        return (PROJ_NONE, None);
    }
    let runtime_ok = spec.shape.len() >= 2;
    match (detect, &spec.projection) {
        (Detect::Runtime, _) if runtime_ok => (PROJ_RUNTIME, Some(0)),
        (Detect::Runtime, _) => (PROJ_NONE, None),
        (_, Projection::Channel { axis }) => (PROJ_CHANNEL, Some(*axis)),
        (_, Projection::Layer) => (PROJ_LAYER, None),
        (_, Projection::None) => (PROJ_NONE, None),
        (Detect::Auto, Projection::Runtime) if runtime_ok => (PROJ_RUNTIME, Some(0)),
        _ => (PROJ_NONE, None),
    }
}

impl Job {
    fn fused(&self) -> bool {
        self.rows > 0
    }

    /// Elements the job covers.
    fn elements(&self) -> usize {
        self.len as usize * (self.rows.max(1) as usize)
    }
}

impl<'g> DeviceOptimizer<'g> {
    /// Puts the tensors (initial values `params`) and zeroed state on the device.
    /// `max_binding_bytes` lowers the per-buffer size (tests use it to force
    /// tensors across several bindings); the device's limit always applies.
    pub fn new(
        gpu: &'g Gpu,
        algo: Algorithm,
        detect: Detect,
        hyper: Hyper,
        specs: Vec<TensorSpec>,
        params: &[&[f32]],
        max_binding_bytes: Option<u64>,
    ) -> Result<Self, OptimError> {
        validate_hyper(algo, &hyper)?;
        if params.len() != specs.len() {
            return Err(OptimError::Shape { name: "<all>".into(), detail: format!("{} parameter arrays for {} tensors", params.len(), specs.len()) });
        }
        for (s, p) in specs.iter().zip(params) {
            if p.len() != s.numel() {
                return Err(OptimError::Shape { name: s.name.clone(), detail: format!("{} values for shape {:?}", p.len(), s.shape) });
            }
            if s.numel() >= u32::MAX as usize / 2 {
                return Err(OptimError::TooLarge(s.name.clone()));
            }
            match &s.projection {
                Projection::Channel { axis } if *axis >= s.shape.len() => {
                    return Err(OptimError::Shape { name: s.name.clone(), detail: format!("channel axis {axis} for shape {:?}", s.shape) })
                }
                _ => {}
            }
        }
        let page_elems = {
            let limit = gpu.max_binding_bytes().min(max_binding_bytes.unwrap_or(u64::MAX));
            ((limit / 4) as usize).clamp(FUSED_MAX, (u32::MAX / 2) as usize)
        };

        // Jobs and rows per tensor.
        let mut kinds = Vec::with_capacity(specs.len());
        let mut tensor_words: Vec<u32> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        let mut rows: Vec<Vec<usize>> = Vec::new(); // job indices per row
        for (t, s) in specs.iter().enumerate() {
            let (kind, axis) = effective(algo, detect, s);
            kinds.push(kind);
            let n = s.numel();
            let first_row = rows.len();
            let (row_count, row_len) = match (kind, axis) {
                (PROJ_CHANNEL | PROJ_RUNTIME, Some(a)) => (s.shape[a], n.checked_div(s.shape[a]).unwrap_or(0)),
                (PROJ_LAYER, _) => (usize::from(n > 0), n),
                _ => (n.div_ceil(FUSED_MAX), FUSED_MAX.min(n)),
            };
            // `rows` whole rows starting at `row` (fused), or a piece of one row (rows = 0).
            let add = |row: usize, lo: usize, len: usize, rows_held: usize, strided: Option<(u32, u32, u32)>, jobs: &mut Vec<Job>, rows: &mut Vec<Vec<usize>>| {
                for r in row..row + rows_held.max(1) {
                    while rows.len() <= first_row + r {
                        rows.push(Vec::new());
                    }
                    rows[first_row + r].push(jobs.len());
                }
                jobs.push(Job { tensor: t as u32, row: (first_row + row) as u32, lo, len: len as u32, rows: rows_held as u32, strided, page: 0, addr: 0 });
            };
            let fits_page = n <= page_elems;
            match (kind, axis) {
                (PROJ_NONE, _) => {
                    for c in 0..row_count {
                        let lo = c * FUSED_MAX;
                        add(c, lo, FUSED_MAX.min(n - lo), 1, None, &mut jobs, &mut rows);
                    }
                }
                (PROJ_LAYER, _) if n <= FUSED_MAX => add(0, 0, n, 1, None, &mut jobs, &mut rows),
                (PROJ_LAYER, _) => {
                    for lo in (0..n).step_by(FUSED_MAX) {
                        add(0, lo, FUSED_MAX.min(n - lo), 0, None, &mut jobs, &mut rows);
                    }
                }
                (_, Some(a)) => {
                    let dim = s.shape[a];
                    let inner: usize = s.shape[a + 1..].iter().product();
                    let outer: usize = s.shape[..a].iter().product();
                    let contiguous = outer == 1;
                    let fused = (kind == PROJ_CHANNEL || kind == PROJ_RUNTIME) && row_len <= FUSED_MAX && (contiguous || fits_page);
                    if fused {
                        // short rows share a workgroup; a long row gets one to itself
                        let per_job = if row_len <= SHORT_ROW { ROWS_PER_JOB } else { 1 };
                        for r0 in (0..dim).step_by(per_job) {
                            let held = per_job.min(dim - r0);
                            let strided = (!contiguous).then_some((inner as u32, dim as u32, r0 as u32));
                            add(r0, r0 * row_len, row_len, held, strided, &mut jobs, &mut rows);
                        }
                    } else {
                        for r in 0..dim {
                            // contiguous blocks of the row, split into pieces that fit
                            for o in 0..outer {
                                let base = (o * dim + r) * inner;
                                for off in (0..inner).step_by(FUSED_MAX) {
                                    add(r, base + off, FUSED_MAX.min(inner - off), 0, None, &mut jobs, &mut rows);
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
            while rows.len() < first_row + row_count {
                rows.push(Vec::new());
            }
            tensor_words.extend([kind, first_row as u32, row_count as u32, row_len as u32, n as u32, 0, 0, 0]);
        }

        // Pages: place each tensor's jobs in address order, cutting only between jobs.
        let mut segments: Vec<Vec<Segment>> = vec![Vec::new(); specs.len()];
        let mut page_sizes: Vec<usize> = vec![0];
        let mut by_tensor: Vec<Vec<usize>> = vec![Vec::new(); specs.len()];
        for (k, j) in jobs.iter().enumerate() {
            by_tensor[j.tensor as usize].push(k);
        }
        for (t, list) in by_tensor.iter_mut().enumerate() {
            let n = specs[t].numel();
            if n == 0 {
                continue;
            }
            let strided = list.iter().any(|&k| jobs[k].strided.is_some());
            let cur = page_sizes.len() - 1;
            if page_sizes[cur] + n > page_elems && page_sizes[cur] > 0 {
                page_sizes.push(0);
            }
            if strided {
                // the whole tensor in one page (guaranteed to fit: checked when building jobs)
                let p = page_sizes.len() - 1;
                let base = page_sizes[p];
                for &k in list.iter() {
                    jobs[k].page = p;
                    jobs[k].addr = base as u32;
                }
                segments[t].push(Segment { tensor_lo: 0, page: p, page_off: base, len: n });
                page_sizes[p] += n;
                continue;
            }
            list.sort_by_key(|&k| jobs[k].lo);
            for &k in list.iter() {
                let len = jobs[k].elements();
                let mut p = page_sizes.len() - 1;
                if page_sizes[p] + len > page_elems {
                    page_sizes.push(0);
                    p += 1;
                }
                let off = page_sizes[p];
                jobs[k].page = p;
                jobs[k].addr = off as u32;
                page_sizes[p] += len;
                match segments[t].last_mut() {
                    Some(s) if s.page == p && s.page_off + s.len == off && s.tensor_lo + s.len == jobs[k].lo => s.len += len,
                    _ => segments[t].push(Segment { tensor_lo: jobs[k].lo, page: p, page_off: off, len }),
                }
            }
        }

        // Job order: by page, fused before split, so each page dispatches two contiguous ranges.
        let mut order: Vec<usize> = (0..jobs.len()).collect();
        order.sort_by_key(|&k| (jobs[k].page, !jobs[k].fused(), k));
        let mut new_index = vec![0usize; jobs.len()];
        for (i, &k) in order.iter().enumerate() {
            new_index[k] = i;
        }
        let jobs_sorted: Vec<Job> = order.iter().map(|&k| jobs[k]).collect();
        let total_jobs = u32::try_from(jobs_sorted.len()).map_err(|_| OptimError::TooLarge("job table".into()))?;
        let mut meta: Vec<u32> = tensor_words;
        for j in &jobs_sorted {
            let (inner, dim, local) = j.strided.unwrap_or((0, 0, 0));
            meta.extend([j.tensor, j.row, j.addr, j.len, j.rows, inner, dim, local]);
        }
        let mut row_jobs: Vec<u32> = Vec::new();
        for r in &rows {
            meta.extend([row_jobs.len() as u32, r.len() as u32]);
            row_jobs.extend(r.iter().map(|&k| new_index[k] as u32));
        }
        meta.extend(row_jobs);
        let row_count = rows.len() as u32;
        let stats_base = 5 * total_jobs;
        let tensor_stats_base = stats_base + 4 * row_count;
        let scratch_len = (tensor_stats_base as usize + 2 * specs.len()).max(1);
        let has_split = jobs_sorted.iter().any(|j| !j.fused());
        let runtime_fused = |j: &Job| j.fused() && kinds[j.tensor as usize] == PROJ_RUNTIME;
        let has_runtime_fused = jobs_sorted.iter().any(runtime_fused);
        // Global-memory bytes per element (see the table at the top of this file).
        let (fused_bytes, split_bytes) = if algo.is_adam_family() { (28u64, 44u64) } else { (20, 32) };
        let bytes_per_step = jobs_sorted
            .iter()
            .map(|j| {
                let per = if runtime_fused(j) { fused_bytes + 8 } else if j.fused() { fused_bytes } else { split_bytes };
                j.elements() as u64 * per
            })
            .sum();

        let dev = &gpu.device;
        use wgpu::util::DeviceExt;
        let storage = wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
        let meta_buf = dev.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some("meta"),
            contents: &words_to_bytes(if meta.is_empty() { &[0] } else { &meta }),
            usage: storage,
        });
        let scratch = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("scratch"), size: 4 * scratch_len as u64, usage: storage, mapped_at_creation: false });
        let status = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("status"), size: 8 * specs.len().max(1) as u64, usage: storage, mapped_at_creation: false });

        let entry = |binding: u32, ty: wgpu::BufferBindingType| wgpu::BindGroupLayoutEntry {
            binding,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer { ty, has_dynamic_offset: false, min_binding_size: None },
            count: None,
        };
        let rw = wgpu::BufferBindingType::Storage { read_only: false };
        let ro = wgpu::BufferBindingType::Storage { read_only: true };
        let layout = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some("optim"),
            entries: &[
                entry(0, rw),
                entry(1, ro),
                entry(2, rw),
                entry(3, rw),
                entry(4, ro),
                entry(5, rw),
                entry(6, rw),
                entry(7, wgpu::BufferBindingType::Uniform),
            ],
        });
        let pipeline_layout = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some("optim"),
            bind_group_layouts: &[Some(&layout)],
            ..Default::default()
        });
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("optim.wgsl"), source: wgpu::ShaderSource::Wgsl(SHADER.into()) });
        let pipeline = |entry: &str| {
            dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: Default::default(),
                cache: None,
            })
        };
        let apply = pipeline("apply");
        let apply_split = pipeline("apply_split");
        let cosine_stats = pipeline("cosine_stats");
        let layer_pd = pipeline("layer_pd");
        let layer_total = pipeline("layer_total");
        let stats = pipeline("stats");
        let decide = pipeline("decide");

        let mut pages = Vec::new();
        let mut job_cursor = 0u32;
        let mut fused_per_page = vec![0u32; page_sizes.len()];
        let mut split_per_page = vec![0u32; page_sizes.len()];
        for j in &jobs_sorted {
            if j.fused() {
                fused_per_page[j.page] += 1;
            } else {
                split_per_page[j.page] += 1;
            }
        }
        for (p, &size) in page_sizes.iter().enumerate() {
            let (count, split_count) = (fused_per_page[p], split_per_page[p]);
            let bytes = 4 * size.max(1) as u64;
            let mk = |label: &str| dev.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: bytes, usage: storage, mapped_at_creation: false });
            let page = Page {
                elements: size,
                param: mk("param"),
                grad: mk("grad"),
                state0: mk("state0"),
                state1: mk("state1"),
                uniform: dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("params"),
                    size: 112,
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                bind: None,
                job_base: job_cursor,
                job_count: count,
                split_base: job_cursor + count,
                split_count,
            };
            job_cursor += count + split_count;
            pages.push(page);
        }
        let specs_len = specs.len().max(1);
        let mut me = DeviceOptimizer {
            gpu,
            algo,
            hyper,
            specs,
            kinds,
            segments,
            pages,
            status,
            status_zeros: vec![0u8; 8 * specs_len],
            has_split,
            has_runtime_fused,
            total_jobs,
            row_count,
            stats_base,
            tensor_stats_base,
            apply,
            apply_split,
            cosine_stats,
            layer_pd,
            layer_total,
            stats,
            decide,
            step: 0,
            max_groups: gpu.limits.max_compute_workgroups_per_dimension.max(1),
            bytes_per_step,
        };
        me.make_bind_groups(&layout, &meta_buf, &scratch);
        for (t, p) in params.iter().enumerate() {
            me.write_tensor(t, p, Role::Param);
        }
        Ok(me)
    }

    fn make_bind_groups(&mut self, layout: &wgpu::BindGroupLayout, meta: &wgpu::Buffer, scratch: &wgpu::Buffer) {
        for page in &mut self.pages {
            let entries = [
                wgpu::BindGroupEntry { binding: 0, resource: page.param.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 1, resource: page.grad.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 2, resource: page.state0.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 3, resource: page.state1.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 4, resource: meta.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 5, resource: scratch.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 6, resource: self.status.as_entire_binding() },
                wgpu::BindGroupEntry { binding: 7, resource: page.uniform.as_entire_binding() },
            ];
            page.bind = Some(self.gpu.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("page"),
                layout,
                entries: &entries,
            }));
        }
    }

    /// The tensors, in order.
    pub fn specs(&self) -> &[TensorSpec] {
        &self.specs
    }

    /// Number of storage-buffer pages the tensors were split across.
    pub fn pages(&self) -> usize {
        self.pages.len()
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.step
    }

    fn write_tensor(&self, t: usize, data: &[f32], role: Role) {
        for s in &self.segments[t] {
            let buf = self.pages[s.page].buffer(role);
            let bytes: Vec<u8> = data[s.tensor_lo..s.tensor_lo + s.len].iter().flat_map(|x| x.to_le_bytes()).collect();
            self.gpu.queue.write_buffer(buf, 4 * s.page_off as u64, &bytes);
        }
    }

    fn read_tensor(&self, t: usize, role: Role) -> Result<Vec<f32>, OptimError> {
        let mut out = vec![0f32; self.specs[t].numel()];
        for s in &self.segments[t] {
            let buf = self.pages[s.page].buffer(role);
            let v = self.gpu.read_f32(buf, 4 * s.page_off as u64, s.len, &self.specs[t].name)?;
            out[s.tensor_lo..s.tensor_lo + s.len].copy_from_slice(&v);
        }
        Ok(out)
    }

    /// Uploads this step's gradients (one slice per tensor, in order).
    pub fn set_grads(&mut self, grads: &[&[f32]]) -> Result<(), OptimError> {
        if grads.len() != self.specs.len() {
            return Err(OptimError::Shape { name: "<all>".into(), detail: format!("{} gradients for {} tensors", grads.len(), self.specs.len()) });
        }
        for (t, g) in grads.iter().enumerate() {
            if g.len() != self.specs[t].numel() {
                return Err(OptimError::Shape { name: self.specs[t].name.clone(), detail: format!("gradient of {} values for shape {:?}", g.len(), self.specs[t].shape) });
            }
            self.write_tensor(t, g, Role::Grad);
        }
        Ok(())
    }

    fn uniforms(&self, page: &Page) -> Vec<u8> {
        let h = &self.hyper;
        let t = self.step as i32;
        let bc1 = 1.0 - h.beta1.powi(t);
        let bc2 = 1.0 - h.beta2.powi(t);
        let step_size = if self.algo.is_adam_family() { h.lr / bc1 } else { h.lr };
        // Decoupled decay, in double precision as the references compute it.
        let (decay, decay_projected) = match self.algo {
            Algorithm::Adamp => (1.0 - h.lr * h.weight_decay, 1.0 - h.lr * h.weight_decay * h.wd_ratio),
            Algorithm::Adamw => (1.0 - h.lr * h.weight_decay, 1.0 - h.lr * h.weight_decay),
            Algorithm::Sgdp => (
                1.0 - h.lr * h.weight_decay / (1.0 - h.momentum),
                1.0 - h.lr * h.weight_decay * h.wd_ratio / (1.0 - h.momentum),
            ),
            Algorithm::Adam | Algorithm::Sgd => (1.0, 1.0),
        };
        let f = |x: f64| (x as f32).to_bits();
        let words = [
            self.algo.code(),
            self.step,
            u32::from(h.nesterov),
            page.job_base,
            page.job_count,
            self.specs.len() as u32,
            self.row_count,
            self.stats_base,
            f(h.lr),
            f(h.beta1),
            f(h.beta2),
            f(h.eps),
            f(h.weight_decay),
            f(h.momentum),
            f(h.dampening),
            f(h.delta),
            f(h.wd_ratio),
            f(step_size),
            f(bc2.sqrt()),
            self.tensor_stats_base,
            self.total_jobs,
            page.split_base,
            page.split_count,
            f(1.0 - h.beta1),
            f(1.0 - h.beta2),
            f(1.0 - h.dampening),
            f(decay),
            f(decay_projected),
        ];
        words_to_bytes(&words)
    }

    fn dispatch(&self, pass: &mut wgpu::ComputePass, groups: u32) {
        if groups == 0 {
            return;
        }
        let x = groups.min(self.max_groups);
        pass.dispatch_workgroups(x, groups.div_ceil(x), 1);
    }

    /// Submits one optimizer step for the gradients on the device, without
    /// waiting. [`DeviceOptimizer::step`] also checks for non-finite gradients.
    pub fn submit_step(&mut self) {
        self.step += 1;
        for page in &self.pages {
            self.gpu.queue.write_buffer(&page.uniform, 0, &self.uniforms(page));
        }
        self.gpu.queue.write_buffer(&self.status, 0, &self.status_zeros);
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        {
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("step"), timestamp_writes: None });
            let split_groups = |page: &Page| page.split_count.div_ceil(ROWS_PER_JOB as u32);
            let per_page = |pass: &mut wgpu::ComputePass, pipeline: &wgpu::ComputePipeline, groups: &dyn Fn(&Page) -> u32| {
                pass.set_pipeline(pipeline);
                for page in &self.pages {
                    pass.set_bind_group(0, page.bind.as_ref(), &[]);
                    self.dispatch(pass, groups(page));
                }
            };
            let per_tensor = |pass: &mut wgpu::ComputePass, pipeline: &wgpu::ComputePipeline| {
                if let Some(page) = self.pages.first() {
                    pass.set_pipeline(pipeline);
                    pass.set_bind_group(0, page.bind.as_ref(), &[]);
                    self.dispatch(pass, self.specs.len() as u32);
                }
            };
            if self.has_runtime_fused {
                per_page(&mut pass, &self.cosine_stats, &|p| p.job_count);
            }
            if self.has_split {
                per_page(&mut pass, &self.stats, &split_groups);
            }
            if self.has_split || self.has_runtime_fused {
                per_tensor(&mut pass, &self.decide);
            }
            if self.has_runtime_fused {
                per_page(&mut pass, &self.layer_pd, &|p| p.job_count);
                per_tensor(&mut pass, &self.layer_total);
            }
            if self.has_split {
                per_page(&mut pass, &self.apply_split, &split_groups);
            }
            pass.set_pipeline(&self.apply);
            for page in &self.pages {
                pass.set_bind_group(0, page.bind.as_ref(), &[]);
                self.dispatch(&mut pass, page.job_count);
            }
        }
        self.gpu.queue.submit([enc.finish()]);
    }

    /// One step; fails naming the tensors whose gradients were not finite (the
    /// affected elements, rows or tensors are left unchanged, see [`OptimError::NonFinite`]).
    pub fn step(&mut self) -> Result<(), OptimError> {
        self.submit_step();
        let bad = self.nonfinite()?;
        if bad.is_empty() {
            Ok(())
        } else {
            Err(OptimError::NonFinite(bad))
        }
    }

    fn status_words(&self) -> Result<Vec<u32>, OptimError> {
        let bytes = self.gpu.read_bytes(&self.status, 0, 8 * self.specs.len().max(1) as u64, "status")?;
        Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }

    fn nonfinite(&self) -> Result<Vec<String>, OptimError> {
        let w = self.status_words()?;
        Ok(self.specs.iter().enumerate().filter(|(t, _)| w[2 * t + 1] != 0).map(|(_, s)| s.name.clone()).collect())
    }

    /// Waits for the device to finish queued work.
    pub fn wait(&self) -> Result<(), OptimError> {
        self.gpu
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| OptimError::Gpu(GpuError::Readback { what: "queue".into(), detail: e.to_string() }))?;
        Ok(())
    }

    /// Reads a tensor's parameter values back.
    pub fn param(&self, t: usize) -> Result<Vec<f32>, OptimError> {
        self.read_tensor(t, Role::Param)
    }

    /// Reads a tensor's state: `exp_avg`/`exp_avg_sq` (Adam family) or the momentum buffer.
    pub fn state(&self, t: usize) -> Result<Vec<Vec<f32>>, OptimError> {
        let mut out = vec![self.read_tensor(t, Role::State0)?];
        if self.algo.is_adam_family() {
            out.push(self.read_tensor(t, Role::State1)?);
        }
        Ok(out)
    }

    /// What the last step projected, per tensor.
    pub fn projected(&self) -> Result<Vec<Projected>, OptimError> {
        let w = self.status_words()?;
        Ok((0..self.specs.len())
            .map(|t| match w[2 * t] {
                PROJ_CHANNEL => Projected::Channel,
                PROJ_LAYER => Projected::Layer,
                _ => Projected::None,
            })
            .collect())
    }

    /// The projection kind the kernels use per tensor (`none`, `channel`, `layer`, `runtime`).
    pub fn modes(&self) -> Vec<&'static str> {
        self.kinds.iter().map(|k| ["none", "channel", "layer", "runtime"][*k as usize]).collect()
    }

    /// Global-memory bytes one step reads and writes (parameters, gradients, state).
    pub fn bytes_per_step(&self) -> u64 {
        self.bytes_per_step
    }

    /// Elements over all tensors.
    pub fn elements(&self) -> usize {
        self.pages.iter().map(|p| p.elements).sum()
    }
}

impl Page {
    fn buffer(&self, role: Role) -> &wgpu::Buffer {
        match role {
            Role::Param => &self.param,
            Role::Grad => &self.grad,
            Role::State0 => &self.state0,
            Role::State1 => &self.state1,
        }
    }
}

#[derive(Clone, Copy)]
enum Role {
    Param,
    Grad,
    State0,
    State1,
}

fn words_to_bytes(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn validate_hyper(algo: Algorithm, h: &Hyper) -> Result<(), OptimError> {
    let bad = |what: &str, v: f64| Err(OptimError::Hyper(format!("{what} = {v}")));
    for (what, v) in [("lr", h.lr), ("eps", h.eps), ("weight_decay", h.weight_decay), ("delta", h.delta), ("wd_ratio", h.wd_ratio)] {
        if !v.is_finite() || v < 0.0 {
            return bad(what, v);
        }
    }
    if algo.is_adam_family() {
        for (what, v) in [("beta1", h.beta1), ("beta2", h.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return bad(what, v);
            }
        }
    } else {
        if !(0.0..1.0).contains(&h.momentum) {
            return bad("momentum", h.momentum);
        }
        if h.nesterov && (h.momentum <= 0.0 || h.dampening != 0.0) {
            return Err(OptimError::Hyper("nesterov needs momentum > 0 and zero dampening".into()));
        }
    }
    Ok(())
}

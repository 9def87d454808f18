//! AdamP / SGDP (and Adam, AdamW, SGD) on the device, the WGSL backend of
//! [`crate::optim`]: buffers that persist across steps, a job table built
//! once, a few dispatches per step for all tensors.
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
//! | Adam family, rows variant (CPU adapters) | g, p, m, v twice: 32 | p, m, v: 12 | 44 |
//! | SGD family, rows variant | g, p, buf twice: 24 | p, buf: 8 | 32 |
//!
//! On CPU adapters ([`Variant::Rows`]) projected rows take the row kernels: a
//! workgroup of [`ROW_LANES`] per row reads the row once for its sums and
//! finiteness, then again for the step, keeping nothing in between; the row
//! stays in the CPU cache, so the second read is mostly cache traffic.
//! Unprojected chunks take `stream_rows`. Both use vec4 accesses where the
//! data is contiguous and 4-aligned.
//!
//! Unprojected chunks stream. A fused job holds whole projected rows (up to
//! [`ROWS_PER_JOB`] rows of at most [`SHORT_ROW`] elements, or one row of at most
//! [`FUSED_MAX`]); every element is read once into registers and written once.
//! Split jobs read twice from memory because the projection needs the row's (or,
//! for the runtime test, the whole tensor's) dot products before any write.
use super::device::{Gpu, GpuError};
use super::wgsl::words;
use crate::optim::{Algorithm, Config, Detect, Label, Projected, TensorSpec};
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

/// The shader body; [`shader_source`] prepends the generated interface.
const SHADER_BODY: &str = include_str!("../../shaders/optim.wgsl");

/// Words per row of the row table: (start into the row-job list, job count).
const ROW_WORDS: u32 = 2;
/// Scratch words per job (pp, pd, pg, gg, non-finite).
const JOB_STATS: u32 = 5;
/// Scratch words per row (pp, pd, pg, gg).
const ROW_STATS: u32 = 4;
/// Scratch words per tensor (pp, pd over the whole tensor).
const TENSOR_STATS: u32 = 2;
/// Status words per tensor (decision, non-finite flag).
const STATUS_WORDS: u32 = 2;

words! {
    /// The uniform block of one page (WGSL `P: Params`).
    struct Params {
        step: u32,
        /// First fused job of this page.
        job_base: u32,
        /// Fused jobs of this page.
        job_count: u32,
        tensor_count: u32,
        row_count: u32,
        /// Scratch offset of the row stats.
        stats_base: u32,
        lr: f32,
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
        momentum: f32,
        dampening: f32,
        delta: f32,
        wd_ratio: f32,
        /// `lr / (1 - beta1^t)` (Adam family), else `lr`.
        step_size: f32,
        /// `sqrt(1 - beta2^t)`.
        bc2_sqrt: f32,
        /// Scratch offset of the tensor stats.
        tensor_stats_base: u32,
        /// Jobs of all pages (the row table follows the job table).
        total_jobs: u32,
        /// First split job of this page.
        split_base: u32,
        /// Split jobs of this page.
        split_count: u32,
        // Scalars the reference computes in double precision, rounded once:
        one_minus_beta1: f32,
        one_minus_beta2: f32,
        one_minus_dampening: f32,
        /// Parameter multiplier before the step, unprojected.
        decay: f32,
        /// The same with `wd_ratio` (AdamP, SGDP).
        decay_projected: f32,
        /// Table offset of this page's row entries.
        row_entry_base: u32,
        /// Row entries of this page.
        row_entry_count: u32,
    }
}

words! {
    /// A job's record in the job table (WGSL `Job`, read once per workgroup).
    struct JobRecord {
        tensor: u32,
        /// Global row index (of the first row, for multi-row fused jobs).
        row: u32,
        /// Page offset of the first element (strided fused rows: of the tensor).
        addr: u32,
        /// Elements per row.
        len: u32,
        /// Whole rows held (one pass); 0 for a split job (a piece of a row).
        fused: u32,
        /// Strided fused rows: contiguous block length (0: contiguous).
        inner: u32,
        /// Strided fused rows: size of the projection axis.
        dim: u32,
        /// Strided fused rows: index along the projection axis.
        local_row: u32,
    }
}

words! {
    /// A tensor's record in the tensor table (WGSL word offsets `T_*`).
    struct TensorRecord {
        /// Projection kind (`PROJ_*`).
        proj: u32,
        /// Index of its first row in the row table.
        first_row: u32,
        /// Rows.
        rows: u32,
        /// Elements per row (runtime: along axis 0).
        row_len: u32,
        /// Elements.
        numel: u32,
    }
}

words! {
    /// One projected row of a fused job, for the row kernels (CPU adapters).
    struct RowEntry {
        /// The fused job (global index).
        job: u32,
        /// Which of its rows.
        seg: u32,
    }
}

/// Invocations per workgroup (one row or chunk) of the row kernels: one SIMD
/// vector of a CPU adapter (8 lanes of 32 bits on llvmpipe's 256-bit build),
/// so its one barrier costs little.
const ROW_LANES: u32 = 8;

/// Which kernels update projected rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// A workgroup per job, rows held in registers and reduced in workgroup
    /// memory (GPUs).
    Fused,
    /// One SIMD vector of invocations per row, two vec4 sweeps over the row
    /// and nothing kept between them (CPU adapters, where a workgroup is one
    /// thread and registers spill).
    Rows,
}

impl Variant {
    /// The variant for an adapter: `rows` on CPU adapters, `fused` elsewhere.
    pub fn for_adapter(info: &wgpu::AdapterInfo) -> Variant {
        if info.device_type == wgpu::DeviceType::Cpu {
            Variant::Rows
        } else {
            Variant::Fused
        }
    }
}

/// Choices that tests and benchmarks make; the defaults suit the adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tuning {
    /// Lowers the per-buffer size (tests use it to force tensors across
    /// several bindings); the device's limit always applies.
    pub max_binding_bytes: Option<u64>,
    /// The kernel variant (default: [`Variant::for_adapter`]).
    pub variant: Option<Variant>,
}

/// Pipeline-overridable constants of the shader (WGSL `override`), one set per
/// optimizer: the algorithm's code and nesterov. Branches on them fold away
/// when a pipeline is built, which matters on CPU adapters, where both sides
/// of a branch run under a mask.
const OVERRIDES: [&str; 2] = ["ALGO", "NESTEROV"];

/// The values of [`OVERRIDES`] for a configuration, in that order.
fn override_values(config: &Config) -> [(&'static str, f64); 2] {
    let [algo, nesterov] = OVERRIDES;
    [(algo, f64::from(algo_code(config.algorithm()))), (nesterov, f64::from(u32::from(config.hyper().nesterov)))]
}

/// The whole shader: the interface generated from the Rust declarations above,
/// then `shaders/optim.wgsl`.
pub(crate) fn shader_source() -> String {
    use super::wgsl::{constants, offsets, overrides, struct_decl, table_record};
    let mut s = String::from("// ---- generated by src/runtime/optim.rs (shader_source) ----\n");
    s += &overrides(&OVERRIDES);
    s += &constants(&[
        ("WG", WORKGROUP as u32),
        ("SEG", SEGMENT as u32),
        ("K", PER_THREAD as u32),
        ("ADAMP", algo_code(Algorithm::Adamp)),
        ("SGDP", algo_code(Algorithm::Sgdp)),
        ("ADAM", algo_code(Algorithm::Adam)),
        ("ADAMW", algo_code(Algorithm::Adamw)),
        ("SGD", algo_code(Algorithm::Sgd)),
        ("PROJ_NONE", PROJ_NONE),
        ("PROJ_CHANNEL", PROJ_CHANNEL),
        ("PROJ_LAYER", PROJ_LAYER),
        ("PROJ_RUNTIME", PROJ_RUNTIME),
        ("TENSOR_WORDS", TensorRecord::FIELDS.len() as u32),
        ("ROW_WORDS", ROW_WORDS),
        ("JOB_STATS", JOB_STATS),
        ("ROW_STATS", ROW_STATS),
        ("TENSOR_STATS", TENSOR_STATS),
        ("STATUS_WORDS", STATUS_WORDS),
        ("ROW_LANES", ROW_LANES),
    ]);
    s += &offsets("T_", TensorRecord::FIELDS);
    s += &table_record("Job", JobRecord::FIELDS, "JOB_WORDS", "load_job_record", "tables");
    s += &table_record("RowEntry", RowEntry::FIELDS, "ROW_ENTRY_WORDS", "load_row_entry", "tables");
    s += &struct_decl("Params", Params::FIELDS);
    s += "// ---- end of generated interface ----\n\n";
    s + SHADER_BODY
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
    /// row entries (rows variant): table offset and count
    row_entry_base: u32,
    row_entry_count: u32,
}

/// The optimizer's device state for a set of tensors.
pub struct DeviceOptimizer<'g> {
    gpu: &'g Gpu,
    config: Config,
    specs: Vec<TensorSpec>,
    kinds: Vec<u32>,
    segments: Vec<Vec<Segment>>,
    pages: Vec<Page>,
    status: wgpu::Buffer,
    /// Zeros the size of `status`, written at the start of every step.
    status_zeros: Vec<u8>,
    has_split: bool,
    has_runtime_fused: bool,
    variant: Variant,
    total_jobs: u32,
    row_count: u32,
    stats_base: u32,
    tensor_stats_base: u32,
    apply: wgpu::ComputePipeline,
    apply_split: wgpu::ComputePipeline,
    cosine_stats: wgpu::ComputePipeline,
    layer_pd: wgpu::ComputePipeline,
    layer_total: wgpu::ComputePipeline,
    apply_rows: wgpu::ComputePipeline,
    stream_rows: wgpu::ComputePipeline,
    cosine_rows: wgpu::ComputePipeline,
    layer_pd_rows: wgpu::ComputePipeline,
    stats: wgpu::ComputePipeline,
    decide: wgpu::ComputePipeline,
    step: u32,
    max_groups: u32,
    bytes_per_step: u64,
}

// Projection codes of the tensor table and the status words (the shader's PROJ_*).
const PROJ_NONE: u32 = 0;
const PROJ_CHANNEL: u32 = 1;
const PROJ_LAYER: u32 = 2;
const PROJ_RUNTIME: u32 = 3;

/// A tensor's label as the kernels see it: a `PROJ_*` code and the row axis.
fn effective(algo: Algorithm, detect: Detect, spec: &TensorSpec) -> (u32, Option<usize>) {
    match Label::of(algo, detect, spec) {
        Label::None => (PROJ_NONE, None),
        Label::Channel { axis } => (PROJ_CHANNEL, Some(axis)),
        Label::Layer => (PROJ_LAYER, None),
        Label::Runtime => (PROJ_RUNTIME, Some(0)),
    }
}

/// The shader's code of an algorithm (`ADAMP`... in optim.wgsl).
fn algo_code(algo: Algorithm) -> u32 {
    match algo {
        Algorithm::Adamp => 0,
        Algorithm::Sgdp => 1,
        Algorithm::Adam => 2,
        Algorithm::Adamw => 3,
        Algorithm::Sgd => 4,
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
    pub fn new(
        gpu: &'g Gpu,
        config: &Config,
        detect: Detect,
        specs: Vec<TensorSpec>,
        params: &[&[f32]],
        tuning: Tuning,
    ) -> Result<Self, OptimError> {
        let max_binding_bytes = tuning.max_binding_bytes;
        let variant = tuning.variant.unwrap_or_else(|| Variant::for_adapter(&gpu.info));
        config.validate().map_err(|e| OptimError::Hyper(e.to_string()))?;
        let algo = config.algorithm();
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
            tensor_words.extend(TensorRecord { proj: kind, first_row: first_row as u32, rows: row_count as u32, row_len: row_len as u32, numel: n as u32 }.words());
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
            // Each tensor starts on a whole vec4, so that the row kernels' vec4
            // accesses cover its aligned rows and chunks (the gap is never touched).
            page_sizes[cur] = page_sizes[cur].next_multiple_of(4).min(page_elems);
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
            meta.extend(JobRecord { tensor: j.tensor, row: j.row, addr: j.addr, len: j.len, fused: j.rows, inner, dim, local_row: local }.words());
        }
        let mut row_jobs: Vec<u32> = Vec::new();
        for r in &rows {
            meta.extend([row_jobs.len() as u32, r.len() as u32]); // ROW_WORDS
            row_jobs.extend(r.iter().map(|&k| new_index[k] as u32));
        }
        meta.extend(row_jobs);
        // Row entries (rows variant): every projected row of a fused job, page by
        // page, rows of a tensor adjacent.
        let mut row_entries_per_page = vec![(0u32, 0u32); page_sizes.len()];
        if variant == Variant::Rows {
            for (k, j) in jobs_sorted.iter().enumerate() {
                if j.fused() && kinds[j.tensor as usize] != PROJ_NONE {
                    let base = meta.len() as u32;
                    let page = &mut row_entries_per_page[j.page];
                    if page.1 == 0 {
                        page.0 = base;
                    }
                    for seg in 0..j.rows {
                        meta.extend(RowEntry { job: k as u32, seg }.words());
                    }
                    page.1 += j.rows;
                }
            }
        }
        let row_count = rows.len() as u32;
        let stats_base = JOB_STATS * total_jobs;
        let tensor_stats_base = stats_base + ROW_STATS * row_count;
        let scratch_len = (tensor_stats_base as usize + TENSOR_STATS as usize * specs.len()).max(1);
        let has_split = jobs_sorted.iter().any(|j| !j.fused());
        let runtime_fused = |j: &Job| j.fused() && kinds[j.tensor as usize] == PROJ_RUNTIME;
        let has_runtime_fused = jobs_sorted.iter().any(runtime_fused);
        // Global-memory bytes per element (see the table at the top of this file).
        let (fused_bytes, split_bytes, rows_bytes) = if algo.is_adam_family() { (28u64, 44u64, 44u64) } else { (20, 32, 32) };
        let bytes_per_step = jobs_sorted
            .iter()
            .map(|j| {
                let row_kernels = variant == Variant::Rows && kinds[j.tensor as usize] != PROJ_NONE;
                let per = match (j.fused(), row_kernels) {
                    (false, _) => split_bytes,
                    (true, true) => rows_bytes,
                    (true, false) => fused_bytes,
                };
                let per = if runtime_fused(j) { per + 8 } else { per };
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
        let status = dev.create_buffer(&wgpu::BufferDescriptor { label: Some("status"), size: 4 * STATUS_WORDS as u64 * specs.len().max(1) as u64, usage: storage, mapped_at_creation: false });

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
        let module = dev.create_shader_module(wgpu::ShaderModuleDescriptor { label: Some("optim.wgsl"), source: wgpu::ShaderSource::Wgsl(shader_source().into()) });
        let constants = override_values(config);
        let pipeline = |entry: &str| {
            dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(entry),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(entry),
                compilation_options: wgpu::PipelineCompilationOptions { constants: &constants, ..Default::default() },
                cache: None,
            })
        };
        let apply = pipeline("apply");
        let apply_split = pipeline("apply_split");
        let cosine_stats = pipeline("cosine_stats");
        let layer_pd = pipeline("layer_pd");
        let apply_rows = pipeline("apply_rows");
        let stream_rows = pipeline("stream_rows");
        let cosine_rows = pipeline("cosine_rows");
        let layer_pd_rows = pipeline("layer_pd_rows");
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
            // whole vec4s: the row kernels also see these buffers as `array<vec4<f32>>`
            let bytes = (4 * size.max(1) as u64).next_multiple_of(16);
            let mk = |label: &str| dev.create_buffer(&wgpu::BufferDescriptor { label: Some(label), size: bytes, usage: storage, mapped_at_creation: false });
            let page = Page {
                param: mk("param"),
                grad: mk("grad"),
                state0: mk("state0"),
                state1: mk("state1"),
                uniform: dev.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("params"),
                    size: (4 * Params::FIELDS.len() as u64).next_multiple_of(16),
                    usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                bind: None,
                job_base: job_cursor,
                job_count: count,
                split_base: job_cursor + count,
                split_count,
                row_entry_base: row_entries_per_page[p].0,
                row_entry_count: row_entries_per_page[p].1,
            };
            job_cursor += count + split_count;
            pages.push(page);
        }
        let specs_len = specs.len().max(1);
        let mut me = DeviceOptimizer {
            gpu,
            config: config.clone(),
            specs,
            kinds,
            segments,
            pages,
            status,
            status_zeros: vec![0u8; 4 * STATUS_WORDS as usize * specs_len],
            has_split,
            has_runtime_fused,
            variant,
            total_jobs,
            row_count,
            stats_base,
            tensor_stats_base,
            apply,
            apply_split,
            cosine_stats,
            layer_pd,
            layer_total,
            apply_rows,
            stream_rows,
            cosine_rows,
            layer_pd_rows,
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
        let h = self.config.hyper();
        let k = self.config.step_scalars(self.step, h.lr);
        let (step_size, decay, decay_projected) = (k.step_size, k.decay, k.decay_projected);
        let bc2_sqrt = k.sqrt_bias_correction2;
        let f = |x: f64| x as f32;
        let words = Params {
            step: self.step,
            job_base: page.job_base,
            job_count: page.job_count,
            tensor_count: self.specs.len() as u32,
            row_count: self.row_count,
            stats_base: self.stats_base,
            lr: f(h.lr),
            beta1: f(h.beta1),
            beta2: f(h.beta2),
            eps: f(h.eps),
            weight_decay: f(h.weight_decay),
            momentum: f(h.momentum),
            dampening: f(h.dampening),
            delta: f(h.delta),
            wd_ratio: f(h.wd_ratio),
            step_size: f(step_size),
            bc2_sqrt: f(bc2_sqrt),
            tensor_stats_base: self.tensor_stats_base,
            total_jobs: self.total_jobs,
            split_base: page.split_base,
            split_count: page.split_count,
            one_minus_beta1: f(k.one_minus_beta1),
            one_minus_beta2: f(k.one_minus_beta2),
            one_minus_dampening: f(k.one_minus_dampening),
            decay: f(decay),
            decay_projected: f(decay_projected),
            row_entry_base: page.row_entry_base,
            row_entry_count: page.row_entry_count,
        }
        .words();
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
        let mut enc = self.gpu.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("step") });
        self.encode_step(&mut enc);
        self.gpu.queue.submit([enc.finish()]);
    }

    /// Records one optimizer step into `enc` (its uniforms and status reset are
    /// queued writes, which land before the encoder's submission runs).
    pub fn encode_step(&mut self, enc: &mut wgpu::CommandEncoder) {
        self.step += 1;
        for page in &self.pages {
            self.gpu.queue.write_buffer(&page.uniform, 0, &self.uniforms(page));
        }
        self.gpu.queue.write_buffer(&self.status, 0, &self.status_zeros);
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
            let rows = self.variant == Variant::Rows;
            let row_groups = |page: &Page| page.row_entry_count;
            if self.has_runtime_fused {
                if rows {
                    per_page(&mut pass, &self.cosine_rows, &row_groups);
                } else {
                    per_page(&mut pass, &self.cosine_stats, &|p| p.job_count);
                }
            }
            if self.has_split {
                per_page(&mut pass, &self.stats, &split_groups);
            }
            if self.has_split || self.has_runtime_fused {
                per_tensor(&mut pass, &self.decide);
            }
            if self.has_runtime_fused {
                if rows {
                    per_page(&mut pass, &self.layer_pd_rows, &row_groups);
                } else {
                    per_page(&mut pass, &self.layer_pd, &|p| p.job_count);
                }
                per_tensor(&mut pass, &self.layer_total);
            }
            if self.has_split {
                per_page(&mut pass, &self.apply_split, &split_groups);
            }
            if rows {
                per_page(&mut pass, &self.apply_rows, &row_groups);
                per_page(&mut pass, &self.stream_rows, &|p| p.job_count);
            } else {
                per_page(&mut pass, &self.apply, &|p| p.job_count);
            }
        }
    }

    /// Where tensor `t`'s parameter (`grad`: false) or gradient (`grad`: true)
    /// lives: `(buffer, byte offset, first element of the tensor, elements)` per piece.
    pub fn pieces(&self, t: usize, grad: bool) -> Vec<(&wgpu::Buffer, u64, usize, usize)> {
        let role = if grad { Role::Grad } else { Role::Param };
        self.segments.get(t).map(|segs| segs.iter().map(|s| (self.pages[s.page].buffer(role), 4 * s.page_off as u64, s.tensor_lo, s.len)).collect()).unwrap_or_default()
    }

    /// The status buffer (per tensor: words of flags; word 1 counts non-finite gradients).
    pub fn status_buffer(&self) -> (&wgpu::Buffer, u64) {
        (&self.status, 4 * STATUS_WORDS as u64 * self.specs.len().max(1) as u64)
    }

    /// The names of the tensors whose gradients were not finite, from status words read back.
    pub fn nonfinite_in(&self, words: &[u32]) -> Vec<String> {
        self.specs.iter().enumerate().filter(|(t, _)| words.get(STATUS_WORDS as usize * t + 1).is_some_and(|&w| w != 0)).map(|(_, s)| s.name.clone()).collect()
    }

    /// The learning rate of the next steps (a schedule feeds it every step).
    pub fn set_lr(&mut self, lr: f64) {
        self.config = self.config.with_lr(lr);
    }

    /// Per tensor, from status words read back: whether the step projected it.
    pub fn projected_in(&self, words: &[u32]) -> Vec<bool> {
        (0..self.specs.len()).map(|t| matches!(words.get(STATUS_WORDS as usize * t).copied(), Some(PROJ_CHANNEL | PROJ_LAYER))).collect()
    }

    /// Writes a tensor's parameter values (a resumed checkpoint).
    pub fn set_param(&mut self, t: usize, data: &[f32]) -> Result<(), OptimError> {
        let s = self.specs.get(t).ok_or_else(|| OptimError::Shape { name: format!("#{t}"), detail: "no such tensor".into() })?;
        if data.len() != s.numel() {
            return Err(OptimError::Shape { name: s.name.clone(), detail: format!("{} values for shape {:?}", data.len(), s.shape) });
        }
        self.write_tensor(t, data, Role::Param);
        Ok(())
    }

    /// Writes a tensor's state (`exp_avg`, `exp_avg_sq` or the momentum buffer) and the step count (a resumed checkpoint).
    pub fn set_state(&mut self, t: usize, state: &[Vec<f32>], step: u32) -> Result<(), OptimError> {
        let s = self.specs.get(t).ok_or_else(|| OptimError::Shape { name: format!("#{t}"), detail: "no such tensor".into() })?;
        let roles = [Role::State0, Role::State1];
        for (k, data) in state.iter().enumerate().take(2) {
            if data.len() != s.numel() {
                return Err(OptimError::Shape { name: s.name.clone(), detail: format!("state {k}: {} values for shape {:?}", data.len(), s.shape) });
            }
            self.write_tensor(t, data, roles[k]);
        }
        self.step = step;
        Ok(())
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
        Ok(self.specs.iter().enumerate().filter(|(t, _)| w[STATUS_WORDS as usize * t + 1] != 0).map(|(_, s)| s.name.clone()).collect())
    }

    /// Waits for the device to finish queued work.
    pub fn wait(&self) -> Result<(), OptimError> {
        self.gpu.wait("queue").map_err(OptimError::Gpu)
    }

    /// Reads a tensor's parameter values back.
    pub fn param(&self, t: usize) -> Result<Vec<f32>, OptimError> {
        self.read_tensor(t, Role::Param)
    }

    /// Reads a tensor's state: `exp_avg`/`exp_avg_sq` (Adam family) or the momentum buffer.
    pub fn state(&self, t: usize) -> Result<Vec<Vec<f32>>, OptimError> {
        let mut out = vec![self.read_tensor(t, Role::State0)?];
        if self.config.algorithm().is_adam_family() {
            out.push(self.read_tensor(t, Role::State1)?);
        }
        Ok(out)
    }

    /// What the last step projected, per tensor.
    pub fn projected(&self) -> Result<Vec<Projected>, OptimError> {
        let w = self.status_words()?;
        Ok((0..self.specs.len())
            .map(|t| match w[STATUS_WORDS as usize * t] {
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

    /// The kernel variant for projected rows.
    pub fn variant(&self) -> Variant {
        self.variant
    }

    /// Global-memory bytes one step reads and writes (parameters, gradients, state).
    pub fn bytes_per_step(&self) -> u64 {
        self.bytes_per_step
    }

    /// Elements over all tensors.
    pub fn elements(&self) -> usize {
        self.specs.iter().map(TensorSpec::numel).sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The shader body declares nothing the generated interface declares, so
    /// every shared constant, record and the uniform block have one source.
    #[test]
    fn the_interface_is_generated_once() {
        let generated = shader_source();
        let interface = &generated[..generated.len() - SHADER_BODY.len()];
        let body = super::super::wgsl::declared(SHADER_BODY);
        for name in super::super::wgsl::declared(interface) {
            assert!(!body.contains(&name), "shaders/optim.wgsl declares '{name}' itself; it is generated from Rust");
        }
        for name in ["ALGO", "NESTEROV", "WG", "SEG", "K", "PROJ_RUNTIME", "TENSOR_WORDS", "T_NUMEL", "JOB_WORDS", "Job", "load_job_record", "Params"] {
            assert!(super::super::wgsl::declared(interface).iter().any(|d| d == name), "{name} is not generated");
        }
        // The uniform block's words follow the WGSL struct's fields one for one.
        assert_eq!(Params::default().words().len(), Params::FIELDS.len());
        assert!(interface.contains("struct Params {\n    step: u32,\n"), "{interface}");
        // The pipeline constants are declared once, from the same list the pipelines are built with.
        for name in OVERRIDES {
            assert!(interface.contains(&format!("override {name}: u32;")), "{name}");
        }
    }
}

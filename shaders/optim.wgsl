// AdamP / SGDP and their baselines (Adam, AdamW, SGD) for many tensors per dispatch.
//
// Work is a table of jobs. A job is a run of elements of one tensor row:
//   - fused jobs hold whole projection rows (up to WG / SEG rows of <= SEG * K
//     elements, SEG threads each, or one row of <= WG * K elements): every element
//     is read once into registers, the rows' dot products are reduced in workgroup
//     memory, and param and state are written once; unprojected chunks stream;
//   - split jobs are contiguous pieces of long rows or of runtime-tested tensors:
//     `stats` reduces their dot products, `decide` combines them per row and per
//     tensor (and runs the reference cosine test), `apply` updates.
// Semantics follow the official adamp 0.3.0 package and torch.optim (see
// fixtures/golden/README.md): the update (not the gradient) is projected,
// p_n = p / (|p| + eps), decoupled decay before the step, wd_ratio where projected.

const WG: u32 = 256u;
// Projected fused jobs: rows of at most SEG * K elements are packed WG / SEG to
// a workgroup, SEG threads each; longer rows (at most WG * K) get a whole workgroup.
const SEG: u32 = 32u;
// Elements per thread a fused row keeps in registers.
const K: u32 = 20u;

// algorithms
const ADAMP: u32 = 0u;
const SGDP: u32 = 1u;
const ADAM: u32 = 2u;
const ADAMW: u32 = 3u;
const SGD: u32 = 4u;

// projection kinds (tensor table) and decisions (status)
const PROJ_NONE: u32 = 0u;
const PROJ_CHANNEL: u32 = 1u;
const PROJ_LAYER: u32 = 2u;
const PROJ_RUNTIME: u32 = 3u;

// tensor table: TENSOR_WORDS u32 per tensor
const TENSOR_WORDS: u32 = 8u;
const T_PROJ: u32 = 0u;       // projection kind
const T_FIRST_ROW: u32 = 1u;  // index of its first row in the row table
const T_ROWS: u32 = 2u;       // rows
const T_ROW_LEN: u32 = 3u;    // elements per row (runtime: along axis 0)
const T_NUMEL: u32 = 4u;      // elements

// job table: JOB_WORDS u32 per job, laid out as `struct Job` below
const JOB_WORDS: u32 = 8u;

// row table: ROW_WORDS u32 per row (start into the row-job list, job count),
// then the row-job list (job ids, grouped by row)
const ROW_WORDS: u32 = 2u;

struct Params {
    algo: u32,
    step: u32,
    nesterov: u32,
    job_base: u32,      // first fused job of this page
    job_count: u32,     // fused jobs of this page
    tensor_count: u32,
    row_count: u32,
    stats_base: u32,    // scratch offset of row stats
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    momentum: f32,
    dampening: f32,
    delta: f32,
    wd_ratio: f32,
    step_size: f32,     // lr / (1 - beta1^t) (Adam family)
    bc2_sqrt: f32,      // sqrt(1 - beta2^t)
    tensor_stats_base: u32,
    total_jobs: u32,    // jobs of all pages (the row table follows the job table)
    split_base: u32,    // first split job of this page
    split_count: u32,   // split jobs of this page
    // Scalars the reference computes in double precision on the host, then rounds once:
    one_minus_beta1: f32,
    one_minus_beta2: f32,
    one_minus_dampening: f32,
    decay: f32,            // parameter multiplier before the step, unprojected
    decay_projected: f32,  // the same with wd_ratio (AdamP, SGDP)
}

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> state0: array<f32>;
@group(0) @binding(3) var<storage, read_write> state1: array<f32>;
@group(0) @binding(4) var<storage, read> tables: array<u32>;
// job stats (5 per job: pp, pd, pg, gg, non-finite), then row stats (4 per row:
// pp, pd, pg, gg), then tensor stats (2 per tensor: pp, pd over the whole tensor)
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
// per tensor: decision (PROJ_*), non-finite flag
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(7) var<uniform> P: Params;

var<workgroup> red: array<vec4<f32>, WG>;
var<workgroup> red_bad: array<u32, WG>;

fn tensor_word(t: u32, w: u32) -> u32 {
    return tables[t * TENSOR_WORDS + w];
}

fn is_adam() -> bool {
    return P.algo == ADAMP || P.algo == ADAM || P.algo == ADAMW;
}

fn is_projecting() -> bool {
    return P.algo == ADAMP || P.algo == SGDP;
}

// A job's table entry, read once per workgroup.
struct Job {
    tensor: u32,
    row: u32,       // global row index (of the first row, for multi-row fused jobs)
    addr: u32,      // page offset of the first element (strided fused rows: of the tensor)
    len: u32,       // elements per row
    fused: u32,     // whole rows held (one pass); 0 for a split job (a piece of a row)
    inner: u32,     // strided fused rows: contiguous block length (0: contiguous)
    dim: u32,       // strided fused rows: size of the projection axis
    local_row: u32, // strided fused rows: index along the projection axis
}

fn load_job(j: u32) -> Job {
    let at = P.tensor_count * TENSOR_WORDS + j * JOB_WORDS;
    return Job(tables[at], tables[at + 1u], tables[at + 2u], tables[at + 3u], tables[at + 4u], tables[at + 5u], tables[at + 6u], tables[at + 7u]);
}

// Page offset of element t of a job (of row `r` within a multi-row fused job).
fn element_in_row(job: Job, r: u32, t: u32) -> u32 {
    if (job.inner == 0u) {
        return job.addr + r * job.len + t;
    }
    let block = t / job.inner;
    return job.addr + (block * job.dim + job.local_row + r) * job.inner + (t - block * job.inner);
}

fn element(job: Job, t: u32) -> u32 {
    return element_in_row(job, 0u, t);
}

struct Moments {
    m: f32,   // new first moment / momentum buffer
    v: f32,   // new second moment (Adam family)
    d: f32,   // update direction before projection
}

// The optimizer direction for one element, state not yet written.
fn moments(g_raw: f32, p: f32, m_old: f32, v_old: f32) -> Moments {
    var out: Moments;
    var g = g_raw;
    if (P.algo == ADAM || P.algo == SGD) {
        g = g + P.weight_decay * p; // L2 penalty folded into the gradient
    }
    if (is_adam()) {
        let m = P.beta1 * m_old + P.one_minus_beta1 * g;
        let v = P.beta2 * v_old + P.one_minus_beta2 * g * g;
        let denom = sqrt(v) / P.bc2_sqrt + P.eps;
        var num = m;
        if (P.algo == ADAMP && P.nesterov != 0u) {
            num = P.beta1 * m + P.one_minus_beta1 * g;
        }
        out.m = m;
        out.v = v;
        out.d = num / denom;
        return out;
    }
    var buf: f32;
    if (P.algo == SGD) {
        if (P.momentum == 0.0) {
            out.m = m_old;
            out.v = v_old;
            out.d = g;
            return out;
        }
        if (P.step == 1u) {
            buf = g;
        } else {
            buf = P.momentum * m_old + P.one_minus_dampening * g;
        }
    } else {
        buf = P.momentum * m_old + P.one_minus_dampening * g;
    }
    out.m = buf;
    out.v = v_old;
    if (P.nesterov != 0u) {
        out.d = g + P.momentum * buf;
    } else {
        out.d = buf;
    }
    return out;
}

// Writes param and state for one element; `d` is the (projected) direction.
fn update(i: u32, p: f32, mo: Moments, d: f32, projected: bool) {
    var decay = P.decay;
    if (projected) {
        decay = P.decay_projected;
    }
    var p_new = p;
    if (P.algo == ADAMP || P.algo == ADAMW) {
        p_new = p * decay - P.step_size * d;
    } else if (P.algo == ADAM) {
        p_new = p - P.step_size * d;
    } else if (P.algo == SGDP) {
        p_new = p * decay - P.lr * d;
    } else {
        p_new = p - P.lr * d;
    }
    param[i] = p_new;
    if (P.algo == SGDP && P.nesterov == 0u) {
        // Without nesterov the reference projects the stored buffer in place.
        state0[i] = d;
    } else {
        state0[i] = mo.m;
    }
    if (is_adam()) {
        state1[i] = mo.v;
    }
}

// The second moment, read only by the Adam family.
fn second(i: u32) -> f32 {
    if (is_adam()) {
        return state1[i];
    }
    return 0.0;
}

fn finite(x: f32) -> bool {
    // NaN fails x == x; infinities exceed the largest finite float.
    return x == x && abs(x) <= 3.402823e38;
}

fn job_id(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

// Sums red[] / red_bad[] over each run of `threads` lanes into its first lane.
// The trip count is uniform, so the barriers stay in uniform control flow.
fn reduce_rows(threads: u32, lane: u32, lid: u32) {
    var st = WG / 2u;
    loop {
        if (st == 0u) {
            break;
        }
        if (st < threads && lane < st) {
            red[lid] = red[lid] + red[lid + st];
            red_bad[lid] = red_bad[lid] | red_bad[lid + st];
        }
        workgroupBarrier();
        st = st / 2u;
    }
}

// Threads per row of a fused job: SEG for short rows, the whole workgroup otherwise.
fn row_threads(job: Job) -> u32 {
    if (job.len <= SEG * K) {
        return SEG;
    }
    return WG;
}

// Coefficient c such that the projected direction is d - c * p.
fn coefficient(pp: f32, pd: f32) -> f32 {
    let n = sqrt(pp) + P.eps;
    return pd / (n * n);
}

// ---------------------------------------------------------------- fused jobs

@compute @workgroup_size(256)
fn apply(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let local_job = job_id(wid, groups);
    if (local_job >= P.job_count) {
        return;
    }
    let job = load_job(P.job_base + local_job);
    let t = job.tensor;
    let proj = tensor_word(t, T_PROJ);
    let runtime = proj == PROJ_RUNTIME;
    let projected = is_projecting() && (proj == PROJ_CHANNEL || proj == PROJ_LAYER || runtime);
    if (!projected) {
        apply_stream(job, lid);
        return;
    }
    // Sweep 1: read each element once, keep parameter, state and direction in
    // registers, and reduce each row's dot products.
    let threads = row_threads(job);
    let seg = lid / threads;
    let lane = lid - seg * threads;
    let live = seg < job.fused;
    var pv: array<f32, K>;
    var mv: array<f32, K>;
    var vv: array<f32, K>;
    var dv: array<f32, K>;
    var acc = vec2<f32>(0.0);
    var bad = 0u;
    for (var k = 0u; k < K; k = k + 1u) {
        let e = lane + k * threads;
        if (live && e < job.len) {
            let i = element_in_row(job, seg, e);
            let g = grad[i];
            let p = param[i];
            let mo = moments(g, p, state0[i], second(i));
            pv[k] = p;
            mv[k] = mo.m;
            vv[k] = mo.v;
            dv[k] = mo.d;
            acc = acc + vec2<f32>(p * p, p * mo.d);
            if (!finite(g)) {
                bad = 1u;
            }
        }
    }
    red[lid] = vec4<f32>(acc, 0.0, 0.0);
    red_bad[lid] = bad;
    workgroupBarrier();
    reduce_rows(threads, lane, lid);
    if (!live) {
        return;
    }
    let first = seg * threads;
    var decision = proj;
    if (runtime) {
        // The cosine pass and `decide` chose the view (and saw any non-finite gradient).
        if (atomicLoad(&status[2u * t + 1u]) != 0u) {
            return;
        }
        decision = atomicLoad(&status[2u * t]);
    } else if (red_bad[first] != 0u) {
        // Leave this row untouched and report the tensor.
        if (lane == 0u) {
            atomicOr(&status[2u * t + 1u], 1u);
        }
        return;
    }
    var c = 0.0;
    if (decision == PROJ_CHANNEL) {
        c = coefficient(red[first].x, red[first].y);
    } else if (decision == PROJ_LAYER && runtime) {
        c = coefficient(scratch[P.tensor_stats_base + 2u * t], scratch[P.tensor_stats_base + 2u * t + 1u]);
    } else if (decision == PROJ_LAYER) {
        c = coefficient(red[first].x, red[first].y); // static layer: the job is the whole tensor
    }
    if (lid == 0u && !runtime) {
        atomicStore(&status[2u * t], proj);
    }
    // Sweep 2: write once, from registers.
    for (var k = 0u; k < K; k = k + 1u) {
        let e = lane + k * threads;
        if (e < job.len) {
            var mo: Moments;
            mo.m = mv[k];
            mo.v = vv[k];
            mo.d = dv[k];
            update(element_in_row(job, seg, e), pv[k], mo, dv[k] - c * pv[k], decision != PROJ_NONE);
        }
    }
}

// Runtime-tested fused rows, before `decide`: each row's p·g, g·g, p·p, reading
// only gradient and parameter (8 bytes per element).
@compute @workgroup_size(256)
fn cosine_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let local_job = job_id(wid, groups);
    if (local_job >= P.job_count) {
        return;
    }
    let job = load_job(P.job_base + local_job);
    let t = job.tensor;
    let enabled = tensor_word(t, T_PROJ) == PROJ_RUNTIME && is_projecting();
    let threads = row_threads(job);
    let seg = lid / threads;
    let lane = lid - seg * threads;
    let live = enabled && seg < job.fused;
    var acc = vec4<f32>(0.0);
    var bad = 0u;
    if (live) {
        for (var e = lane; e < job.len; e = e + threads) {
            let i = element_in_row(job, seg, e);
            let g = grad[i];
            let p = param[i];
            acc = acc + vec4<f32>(p * p, 0.0, p * g, g * g);
            if (!finite(g)) {
                bad = 1u;
            }
        }
    }
    red[lid] = acc;
    red_bad[lid] = bad;
    workgroupBarrier();
    reduce_rows(threads, lane, lid);
    if (live && lane == 0u) {
        let row = job.row + seg;
        scratch[P.stats_base + 4u * row] = red[lid].x;
        scratch[P.stats_base + 4u * row + 2u] = red[lid].z;
        scratch[P.stats_base + 4u * row + 3u] = red[lid].w;
        if (red_bad[lid] != 0u) {
            atomicOr(&status[2u * t + 1u], 1u);
        }
    }
}

// Runtime-tested fused rows the test sent to the layer view: each row's p·d.
@compute @workgroup_size(256)
fn layer_pd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let local_job = job_id(wid, groups);
    if (local_job >= P.job_count) {
        return;
    }
    let job = load_job(P.job_base + local_job);
    let t = job.tensor;
    let enabled = tensor_word(t, T_PROJ) == PROJ_RUNTIME && atomicLoad(&status[2u * t]) == PROJ_LAYER
        && atomicLoad(&status[2u * t + 1u]) == 0u;
    let threads = row_threads(job);
    let seg = lid / threads;
    let lane = lid - seg * threads;
    let live = enabled && seg < job.fused;
    var acc = vec4<f32>(0.0);
    if (live) {
        for (var e = lane; e < job.len; e = e + threads) {
            let i = element_in_row(job, seg, e);
            let p = param[i];
            let mo = moments(grad[i], p, state0[i], second(i));
            acc.y = acc.y + p * mo.d;
        }
    }
    red[lid] = acc;
    red_bad[lid] = 0u;
    workgroupBarrier();
    reduce_rows(threads, lane, lid);
    if (live && lane == 0u) {
        scratch[P.stats_base + 4u * (job.row + seg) + 1u] = red[lid].y;
    }
}

// Per tensor, after `layer_pd`: the layer view's p·d summed over rows.
@compute @workgroup_size(256)
fn layer_total(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = job_id(wid, groups);
    if (t >= P.tensor_count || lid != 0u) {
        return;
    }
    if (tensor_word(t, T_PROJ) != PROJ_RUNTIME || atomicLoad(&status[2u * t]) != PROJ_LAYER || !runtime_fused(t)) {
        return;
    }
    let first_row = tensor_word(t, T_FIRST_ROW);
    var pd = 0.0;
    for (var r = 0u; r < tensor_word(t, T_ROWS); r = r + 1u) {
        pd = pd + scratch[P.stats_base + 4u * (first_row + r) + 1u];
    }
    scratch[P.tensor_stats_base + 2u * t + 1u] = pd;
}

// An unprojected chunk: one streaming sweep. An element whose gradient is not
// finite is left unchanged (and the tensor reported); the others step.
fn apply_stream(job: Job, lid: u32) {
    var bad = false;
    for (var e = lid; e < job.len; e = e + WG) {
        let i = element(job, e);
        let g = grad[i];
        if (!finite(g)) {
            bad = true;
            continue;
        }
        let p = param[i];
        let mo = moments(g, p, state0[i], second(i));
        update(i, p, mo, mo.d, false);
    }
    if (bad) {
        atomicOr(&status[2u * job.tensor + 1u], 1u);
    }
}

// ---------------------------------------------------------------- split jobs

@compute @workgroup_size(256)
fn apply_split(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = split_job(wid, groups, lid);
    if (j == 0xffffffffu) {
        return;
    }
    let job = load_job(j);
    let t = job.tensor;
    if (atomicLoad(&status[2u * t + 1u]) != 0u) {
        return; // a non-finite gradient somewhere in this tensor
    }
    let decision = atomicLoad(&status[2u * t]);
    var c = 0.0;
    if (decision == PROJ_CHANNEL) {
        c = coefficient(scratch[P.stats_base + 4u * job.row], scratch[P.stats_base + 4u * job.row + 1u]);
    } else if (decision == PROJ_LAYER) {
        c = coefficient(scratch[P.tensor_stats_base + 2u * t], scratch[P.tensor_stats_base + 2u * t + 1u]);
    }
    let projected = decision != PROJ_NONE;
    for (var e = lid % SEG; e < job.len; e = e + SEG) {
        let i = element(job, e);
        let p = param[i];
        let mo = moments(grad[i], p, state0[i], second(i));
        update(i, p, mo, mo.d - c * p, projected);
    }
}

// Split jobs run WG / SEG per workgroup, SEG threads each.
fn split_job(wid: vec3<u32>, groups: vec3<u32>, lid: u32) -> u32 {
    let slot = job_id(wid, groups) * (WG / SEG) + lid / SEG;
    if (slot >= P.split_count) {
        return 0xffffffffu;
    }
    return P.split_base + slot;
}

// Segmented sum over the SEG lanes of each job into red[seg * SEG].
fn reduce_segments(lane: u32, lid: u32) {
    var st = SEG / 2u;
    loop {
        if (st == 0u) {
            break;
        }
        if (lane < st) {
            red[lid] = red[lid] + red[lid + st];
            red_bad[lid] = red_bad[lid] | red_bad[lid + st];
        }
        workgroupBarrier();
        st = st / 2u;
    }
}

@compute @workgroup_size(256)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = split_job(wid, groups, lid);
    let lane = lid % SEG;
    var acc = vec4<f32>(0.0);
    var bad = 0u;
    if (j != 0xffffffffu) {
        let job = load_job(j);
        for (var e = lane; e < job.len; e = e + SEG) {
            let i = element(job, e);
            let g = grad[i];
            let p = param[i];
            let mo = moments(g, p, state0[i], second(i));
            acc = acc + vec4<f32>(p * p, p * mo.d, p * g, g * g);
            if (!finite(g)) {
                bad = 1u;
            }
        }
    }
    red[lid] = acc;
    red_bad[lid] = bad;
    workgroupBarrier();
    reduce_segments(lane, lid);
    if (j != 0xffffffffu && lane == 0u) {
        let s = red[lid];
        scratch[5u * j] = s.x;
        scratch[5u * j + 1u] = s.y;
        scratch[5u * j + 2u] = s.z;
        scratch[5u * j + 3u] = s.w;
        scratch[5u * j + 4u] = f32(red_bad[lid]);
    }
}

// Cosine similarity as torch computes it: sum((x / max(|x|, eps)) * (y / max(|y|, eps))).
fn cosine(pg: f32, pp: f32, gg: f32) -> f32 {
    return pg / (max(sqrt(gg), P.eps) * max(sqrt(pp), P.eps));
}

var<workgroup> red_max: array<f32, WG>;

// True for a runtime-tested tensor whose rows are fused jobs.
fn runtime_fused(t: u32) -> bool {
    let rows_at = P.tensor_count * TENSOR_WORDS + P.total_jobs * JOB_WORDS;
    let row_jobs_at = rows_at + P.row_count * ROW_WORDS;
    if (tensor_word(t, T_PROJ) != PROJ_RUNTIME || tensor_word(t, T_ROWS) == 0u) {
        return false;
    }
    let first_job = tables[row_jobs_at + tables[rows_at + tensor_word(t, T_FIRST_ROW) * ROW_WORDS]];
    return load_job(first_job).fused != 0u;
}

// One workgroup per tensor: row and tensor sums from job sums; the cosine test.
@compute @workgroup_size(256)
fn decide(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = job_id(wid, groups);
    if (t >= P.tensor_count) {
        return;
    }
    let proj = tensor_word(t, T_PROJ);
    let first_row = tensor_word(t, T_FIRST_ROW);
    let rows = tensor_word(t, T_ROWS);
    let rows_at = P.tensor_count * TENSOR_WORDS + P.total_jobs * JOB_WORDS;
    let row_jobs_at = rows_at + P.row_count * ROW_WORDS;
    if (rows == 0u) {
        return;
    }
    // Tensors with split jobs, and runtime-tested fused ones, need this pass.
    let fused = runtime_fused(t);
    let first_job = tables[row_jobs_at + tables[rows_at + first_row * ROW_WORDS]];
    if (load_job(first_job).fused != 0u && !fused) {
        return;
    }
    var acc = vec4<f32>(0.0);
    var bad = 0u;
    var cmax = 0.0;
    for (var r = lid; r < rows; r = r + WG) {
        let row = first_row + r;
        var s = vec4<f32>(0.0);
        if (fused) {
            // p·p, p·g, g·g from cosine_stats (p·d is not needed for the test)
            s = vec4<f32>(scratch[P.stats_base + 4u * row], 0.0, scratch[P.stats_base + 4u * row + 2u], scratch[P.stats_base + 4u * row + 3u]);
        } else {
            let start = tables[rows_at + row * ROW_WORDS];
            let nj = tables[rows_at + row * ROW_WORDS + 1u];
            for (var k = 0u; k < nj; k = k + 1u) {
                let j = tables[row_jobs_at + start + k];
                s = s + vec4<f32>(scratch[5u * j], scratch[5u * j + 1u], scratch[5u * j + 2u], scratch[5u * j + 3u]);
                if (scratch[5u * j + 4u] != 0.0) {
                    bad = 1u;
                }
            }
            scratch[P.stats_base + 4u * row] = s.x;
            scratch[P.stats_base + 4u * row + 1u] = s.y;
        }
        acc = acc + s;
        cmax = max(cmax, abs(cosine(s.z, s.x, s.w)));
    }
    red[lid] = acc;
    red_bad[lid] = bad;
    red_max[lid] = cmax;
    workgroupBarrier();
    var st = WG / 2u;
    loop {
        if (st == 0u) {
            break;
        }
        if (lid < st) {
            red[lid] = red[lid] + red[lid + st];
            red_bad[lid] = red_bad[lid] | red_bad[lid + st];
            red_max[lid] = max(red_max[lid], red_max[lid + st]);
        }
        workgroupBarrier();
        st = st / 2u;
    }
    if (lid != 0u) {
        return;
    }
    let s = red[0];
    scratch[P.tensor_stats_base + 2u * t] = s.x;
    scratch[P.tensor_stats_base + 2u * t + 1u] = s.y;
    if (red_bad[0] != 0u) {
        atomicOr(&status[2u * t + 1u], 1u);
    }
    var decision = PROJ_NONE;
    if (is_projecting()) {
        if (proj == PROJ_CHANNEL || proj == PROJ_LAYER) {
            decision = proj;
        } else if (proj == PROJ_RUNTIME) {
            // The reference: channel view first, then the layer view.
            let row_len = f32(tensor_word(t, T_ROW_LEN));
            let numel = f32(tensor_word(t, T_NUMEL));
            if (red_max[0] < P.delta / sqrt(row_len)) {
                decision = PROJ_CHANNEL;
            } else if (abs(cosine(s.z, s.x, s.w)) < P.delta / sqrt(numel)) {
                decision = PROJ_LAYER;
            }
        }
    }
    atomicStore(&status[2u * t], decision);
}

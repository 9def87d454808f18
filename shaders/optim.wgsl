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

// Generated from Rust and prepended to this file (src/runtime/optim.rs,
// `shader_source`): the pipeline constants ALGO and NESTEROV (`override`s, set
// per optimizer, so every branch on the algorithm folds away when a pipeline
// is built); the sizes WG, SEG, K; the algorithm codes ADAMP, SGDP, ADAM,
// ADAMW, SGD; the projection codes PROJ_NONE, PROJ_CHANNEL, PROJ_LAYER,
// PROJ_RUNTIME; the tensor table's record size TENSOR_WORDS and word offsets
// T_*; the job record `struct Job` (JOB_WORDS words, `load_job_record`); the
// row table's ROW_WORDS; the scratch strides JOB_STATS, ROW_STATS,
// TENSOR_STATS and STATUS_WORDS; the row kernels' ROW_LANES and `struct
// RowEntry` (ROW_ENTRY_WORDS words, `load_row_entry`); and the uniform block
// `struct Params`.
//
// Row table: ROW_WORDS u32 per row (start into the row-job list, job count),
// then the row-job list (job ids, grouped by row).

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> state0: array<f32>;
@group(0) @binding(3) var<storage, read_write> state1: array<f32>;
@group(0) @binding(4) var<storage, read> tables: array<u32>;
// job stats (JOB_STATS per job: pp, pd, pg, gg, non-finite), then row stats
// (ROW_STATS per row: pp, pd, pg, gg), then tensor stats (TENSOR_STATS per
// tensor: pp, pd over the whole tensor)
@group(0) @binding(5) var<storage, read_write> scratch: array<f32>;
// per tensor (STATUS_WORDS): decision (PROJ_*), non-finite flag
@group(0) @binding(6) var<storage, read_write> status: array<atomic<u32>>;
@group(0) @binding(7) var<uniform> P: Params;

var<workgroup> red: array<vec4<f32>, WG>;
var<workgroup> red_bad: array<u32, WG>;

fn tensor_word(t: u32, w: u32) -> u32 {
    return tables[t * TENSOR_WORDS + w];
}

fn is_adam() -> bool {
    return ALGO == ADAMP || ALGO == ADAM || ALGO == ADAMW;
}

fn is_projecting() -> bool {
    return ALGO == ADAMP || ALGO == SGDP;
}

fn load_job(j: u32) -> Job {
    return load_job_record(P.tensor_count * TENSOR_WORDS + j * JOB_WORDS);
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
    if (ALGO == ADAM || ALGO == SGD) {
        g = g + P.weight_decay * p; // L2 penalty folded into the gradient
    }
    if (is_adam()) {
        let m = P.beta1 * m_old + P.one_minus_beta1 * g;
        let v = P.beta2 * v_old + P.one_minus_beta2 * g * g;
        let denom = sqrt(v) / P.bc2_sqrt + P.eps;
        var num = m;
        if (ALGO == ADAMP && NESTEROV != 0u) {
            num = P.beta1 * m + P.one_minus_beta1 * g;
        }
        out.m = m;
        out.v = v;
        out.d = num / denom;
        return out;
    }
    var buf: f32;
    if (ALGO == SGD) {
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
    if (NESTEROV != 0u) {
        out.d = g + P.momentum * buf;
    } else {
        out.d = buf;
    }
    return out;
}

// The parameter after the step; `d` is the (projected) direction.
fn stepped(p: f32, d: f32, projected: bool) -> f32 {
    var decay = P.decay;
    if (projected) {
        decay = P.decay_projected;
    }
    if (ALGO == ADAMP || ALGO == ADAMW) {
        return p * decay - P.step_size * d;
    } else if (ALGO == ADAM) {
        return p - P.step_size * d;
    } else if (ALGO == SGDP) {
        return p * decay - P.lr * d;
    }
    return p - P.lr * d;
}

// True where the stored first state is the final direction: without nesterov
// the SGDP reference projects its momentum buffer in place.
fn stores_direction() -> bool {
    return ALGO == SGDP && NESTEROV == 0u;
}

// Writes param and state for one element; `d` is the (projected) direction.
fn update(i: u32, p: f32, mo: Moments, d: f32, projected: bool) {
    param[i] = stepped(p, d, projected);
    if (stores_direction()) {
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
        if (atomicLoad(&status[STATUS_WORDS * t + 1u]) != 0u) {
            return;
        }
        decision = atomicLoad(&status[STATUS_WORDS * t]);
    } else if (red_bad[first] != 0u) {
        // Leave this row untouched and report the tensor.
        if (lane == 0u) {
            atomicOr(&status[STATUS_WORDS * t + 1u], 1u);
        }
        return;
    }
    var c = 0.0;
    if (decision == PROJ_CHANNEL) {
        c = coefficient(red[first].x, red[first].y);
    } else if (decision == PROJ_LAYER && runtime) {
        c = coefficient(scratch[P.tensor_stats_base + TENSOR_STATS * t], scratch[P.tensor_stats_base + TENSOR_STATS * t + 1u]);
    } else if (decision == PROJ_LAYER) {
        c = coefficient(red[first].x, red[first].y); // static layer: the job is the whole tensor
    }
    if (lid == 0u && !runtime) {
        atomicStore(&status[STATUS_WORDS * t], proj);
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
        scratch[P.stats_base + ROW_STATS * row] = red[lid].x;
        scratch[P.stats_base + ROW_STATS * row + 2u] = red[lid].z;
        scratch[P.stats_base + ROW_STATS * row + 3u] = red[lid].w;
        if (red_bad[lid] != 0u) {
            atomicOr(&status[STATUS_WORDS * t + 1u], 1u);
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
    let enabled = tensor_word(t, T_PROJ) == PROJ_RUNTIME && atomicLoad(&status[STATUS_WORDS * t]) == PROJ_LAYER
        && atomicLoad(&status[STATUS_WORDS * t + 1u]) == 0u;
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
        scratch[P.stats_base + ROW_STATS * (job.row + seg) + 1u] = red[lid].y;
    }
}

// Per tensor, after `layer_pd`: the layer view's p·d summed over rows.
@compute @workgroup_size(256)
fn layer_total(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = job_id(wid, groups);
    if (t >= P.tensor_count || lid != 0u) {
        return;
    }
    if (tensor_word(t, T_PROJ) != PROJ_RUNTIME || atomicLoad(&status[STATUS_WORDS * t]) != PROJ_LAYER || !runtime_fused(t)) {
        return;
    }
    let first_row = tensor_word(t, T_FIRST_ROW);
    var pd = 0.0;
    for (var r = 0u; r < tensor_word(t, T_ROWS); r = r + 1u) {
        pd = pd + scratch[P.stats_base + ROW_STATS * (first_row + r) + 1u];
    }
    scratch[P.tensor_stats_base + TENSOR_STATS * t + 1u] = pd;
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
        atomicOr(&status[STATUS_WORDS * job.tensor + 1u], 1u);
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
    if (atomicLoad(&status[STATUS_WORDS * t + 1u]) != 0u) {
        return; // a non-finite gradient somewhere in this tensor
    }
    let decision = atomicLoad(&status[STATUS_WORDS * t]);
    var c = 0.0;
    if (decision == PROJ_CHANNEL) {
        c = coefficient(scratch[P.stats_base + ROW_STATS * job.row], scratch[P.stats_base + ROW_STATS * job.row + 1u]);
    } else if (decision == PROJ_LAYER) {
        c = coefficient(scratch[P.tensor_stats_base + TENSOR_STATS * t], scratch[P.tensor_stats_base + TENSOR_STATS * t + 1u]);
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
        scratch[JOB_STATS * j] = s.x;
        scratch[JOB_STATS * j + 1u] = s.y;
        scratch[JOB_STATS * j + 2u] = s.z;
        scratch[JOB_STATS * j + 3u] = s.w;
        scratch[JOB_STATS * j + 4u] = f32(red_bad[lid]);
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
            s = vec4<f32>(scratch[P.stats_base + ROW_STATS * row], 0.0, scratch[P.stats_base + ROW_STATS * row + 2u], scratch[P.stats_base + ROW_STATS * row + 3u]);
        } else {
            let start = tables[rows_at + row * ROW_WORDS];
            let nj = tables[rows_at + row * ROW_WORDS + 1u];
            for (var k = 0u; k < nj; k = k + 1u) {
                let j = tables[row_jobs_at + start + k];
                s = s + vec4<f32>(scratch[JOB_STATS * j], scratch[JOB_STATS * j + 1u], scratch[JOB_STATS * j + 2u], scratch[JOB_STATS * j + 3u]);
                if (scratch[JOB_STATS * j + 4u] != 0.0) {
                    bad = 1u;
                }
            }
            scratch[P.stats_base + ROW_STATS * row] = s.x;
            scratch[P.stats_base + ROW_STATS * row + 1u] = s.y;
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
    scratch[P.tensor_stats_base + TENSOR_STATS * t] = s.x;
    scratch[P.tensor_stats_base + TENSOR_STATS * t + 1u] = s.y;
    if (red_bad[0] != 0u) {
        atomicOr(&status[STATUS_WORDS * t + 1u], 1u);
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
    atomicStore(&status[STATUS_WORDS * t], decision);
}

// ---------------------------------------------------------------- row kernels
//
// The variant for CPU adapters (lavapipe, llvmpipe, SwiftShader). There a
// workgroup runs on one thread with its invocations in SIMD lanes, every
// storage access is a loop over the lanes (one bounds-checked scalar access
// each, a vec4 sharing the loop), arrays in registers spill, and both sides of
// a branch run under a mask. So these kernels use vec4 accesses where a row is
// contiguous and 4-aligned (scalar ones otherwise, same math), ROW_LANES
// invocations (one SIMD vector) per row or chunk, one barrier per row, and
// recompute instead of storing: `apply_rows` reads a row twice (sums, then the
// step) and keeps nothing in between; the row is in the CPU cache the second
// time. `stream_rows` updates the unprojected chunks (and is the whole
// baseline step on these adapters).

@group(0) @binding(0) var<storage, read_write> param4: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read> grad4: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read_write> state0_4: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> state1_4: array<vec4<f32>>;

var<workgroup> lane_red: array<vec4<f32>, ROW_LANES>;

fn load_row_entry_at(k: u32) -> RowEntry {
    return load_row_entry(P.row_entry_base + k * ROW_ENTRY_WORDS);
}

// The sum of every lane's lane_red (after a barrier).
fn lanes_sum() -> vec4<f32> {
    var s = vec4<f32>(0.0);
    for (var l = 0u; l < ROW_LANES; l = l + 1u) {
        s = s + lane_red[l];
    }
    return s;
}

// Where a row (or chunk) lives: `quads` vec4s from `q0` when it is
// contiguous and 4-aligned, else `len` scalar elements found by element_in_row.
struct RowView {
    job: Job,
    seg: u32,
    q0: u32,
    quads: u32,
    scalars: u32,
}

fn row_view(job: Job, seg: u32) -> RowView {
    var rv: RowView;
    rv.job = job;
    rv.seg = seg;
    let start = job.addr + seg * job.len;
    if (job.inner == 0u && ((start | job.len) & 3u) == 0u) {
        rv.q0 = start / 4u;
        rv.quads = job.len / 4u;
    } else {
        rv.scalars = job.len;
    }
    return rv;
}

// Gradient, parameter and state of four elements (one element in .x on the
// scalar path, zeros elsewhere: they contribute nothing to any sum).
struct Quad {
    g: vec4<f32>,
    p: vec4<f32>,
    m: vec4<f32>,
    v: vec4<f32>,
}

fn second4(q: u32) -> vec4<f32> {
    if (is_adam()) {
        return state1_4[q];
    }
    return vec4<f32>(0.0);
}

fn second1(i: u32) -> f32 {
    if (is_adam()) {
        return state1_4[i >> 2u][i & 3u];
    }
    return 0.0;
}

fn load_quad(q: u32) -> Quad {
    return Quad(grad4[q], param4[q], state0_4[q], second4(q));
}

fn load_one(i: u32) -> Quad {
    let z = vec3<f32>(0.0);
    return Quad(vec4<f32>(grad4[i >> 2u][i & 3u], z), vec4<f32>(param4[i >> 2u][i & 3u], z), vec4<f32>(state0_4[i >> 2u][i & 3u], z), vec4<f32>(second1(i), z));
}

// Gradient and parameter only (the cosine test's pass).
fn load_gp_quad(q: u32) -> Quad {
    let z = vec4<f32>(0.0);
    return Quad(grad4[q], param4[q], z, z);
}

fn load_gp_one(i: u32) -> Quad {
    let z = vec3<f32>(0.0);
    return Quad(vec4<f32>(grad4[i >> 2u][i & 3u], z), vec4<f32>(param4[i >> 2u][i & 3u], z), vec4<f32>(0.0), vec4<f32>(0.0));
}

// New parameter and state of four elements.
struct Stepped4 {
    p: vec4<f32>,
    s0: vec4<f32>,
    s1: vec4<f32>,
}

fn store_quad(q: u32, st: Stepped4) {
    param4[q] = st.p;
    state0_4[q] = st.s0;
    if (is_adam()) {
        state1_4[q] = st.s1;
    }
}

fn store_one(i: u32, st: Stepped4) {
    param4[i >> 2u][i & 3u] = st.p.x;
    state0_4[i >> 2u][i & 3u] = st.s0.x;
    if (is_adam()) {
        state1_4[i >> 2u][i & 3u] = st.s1.x;
    }
}

struct Moments4 {
    m: vec4<f32>,
    v: vec4<f32>,
    d: vec4<f32>,
}

// `moments` on four elements.
fn moments4(x: Quad) -> Moments4 {
    var out: Moments4;
    var g = x.g;
    if (ALGO == ADAM || ALGO == SGD) {
        g = g + P.weight_decay * x.p;
    }
    if (is_adam()) {
        let m = P.beta1 * x.m + P.one_minus_beta1 * g;
        let v = P.beta2 * x.v + P.one_minus_beta2 * g * g;
        let denom = sqrt(v) / P.bc2_sqrt + P.eps;
        var num = m;
        if (ALGO == ADAMP && NESTEROV != 0u) {
            num = P.beta1 * m + P.one_minus_beta1 * g;
        }
        out.m = m;
        out.v = v;
        out.d = num / denom;
        return out;
    }
    var buf: vec4<f32>;
    if (ALGO == SGD) {
        if (P.momentum == 0.0) {
            out.m = x.m;
            out.v = x.v;
            out.d = g;
            return out;
        }
        if (P.step == 1u) {
            buf = g;
        } else {
            buf = P.momentum * x.m + P.one_minus_dampening * g;
        }
    } else {
        buf = P.momentum * x.m + P.one_minus_dampening * g;
    }
    out.m = buf;
    out.v = x.v;
    if (NESTEROV != 0u) {
        out.d = g + P.momentum * buf;
    } else {
        out.d = buf;
    }
    return out;
}

// `stepped` and `update` on four elements; `d` is the (projected) direction.
fn step4(x: Quad, mo: Moments4, d: vec4<f32>, projected: bool) -> Stepped4 {
    var decay = P.decay;
    if (projected) {
        decay = P.decay_projected;
    }
    var out: Stepped4;
    if (ALGO == ADAMP || ALGO == ADAMW) {
        out.p = x.p * decay - P.step_size * d;
    } else if (ALGO == ADAM) {
        out.p = x.p - P.step_size * d;
    } else if (ALGO == SGDP) {
        out.p = x.p * decay - P.lr * d;
    } else {
        out.p = x.p - P.lr * d;
    }
    if (stores_direction()) {
        out.s0 = d;
    } else {
        out.s0 = mo.m;
    }
    out.s1 = mo.v;
    return out;
}

fn finite4(x: vec4<f32>) -> vec4<bool> {
    return (x == x) & (abs(x) <= vec4<f32>(3.402823e38));
}

fn nonfinite4(x: vec4<f32>) -> f32 {
    return select(1.0, 0.0, all(finite4(x)));
}

// The unprojected step of a chunk, element by element: an element whose
// gradient is not finite keeps its value and state.
fn stream4(x: Quad) -> Stepped4 {
    let mo = moments4(x);
    let st = step4(x, mo, mo.d, false);
    let ok = finite4(x.g);
    return Stepped4(select(x.p, st.p, ok), select(x.m, st.s0, ok), select(x.v, st.s1, ok));
}

// Unprojected chunks (every fused job of an unprojected tensor): what
// `apply_stream` does, ROW_LANES invocations per chunk.
@compute @workgroup_size(ROW_LANES)
fn stream_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let local_job = job_id(wid, groups);
    if (local_job >= P.job_count) {
        return;
    }
    let job = load_job(P.job_base + local_job);
    let proj = tensor_word(job.tensor, T_PROJ);
    if (is_projecting() && proj != PROJ_NONE) {
        return; // `apply_rows` updates projected rows
    }
    let rv = row_view(job, 0u);
    var bad = 0.0;
    for (var k = lane; k < rv.quads; k = k + ROW_LANES) {
        let x = load_quad(rv.q0 + k);
        bad = max(bad, nonfinite4(x.g));
        store_quad(rv.q0 + k, stream4(x));
    }
    for (var e = lane; e < rv.scalars; e = e + ROW_LANES) {
        let i = element(job, e);
        let x = load_one(i);
        bad = max(bad, nonfinite4(x.g));
        store_one(i, stream4(x));
    }
    if (bad != 0.0) {
        atomicOr(&status[STATUS_WORDS * job.tensor + 1u], 1u);
    }
}

// Runtime-tested rows: p·p, p·g, g·g per row (what `cosine_stats` computes).
@compute @workgroup_size(ROW_LANES)
fn cosine_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let k = job_id(wid, groups);
    if (k >= P.row_entry_count) {
        return;
    }
    let entry = load_row_entry_at(k);
    let job = load_job(entry.job);
    let t = job.tensor;
    if (tensor_word(t, T_PROJ) != PROJ_RUNTIME || !is_projecting()) {
        return;
    }
    let rv = row_view(job, entry.seg);
    var acc = vec4<f32>(0.0);
    var bad = 0.0;
    for (var q = lane; q < rv.quads; q = q + ROW_LANES) {
        let x = load_gp_quad(rv.q0 + q);
        acc = acc + vec4<f32>(dot(x.p, x.p), 0.0, dot(x.p, x.g), dot(x.g, x.g));
        bad = max(bad, nonfinite4(x.g));
    }
    for (var e = lane; e < rv.scalars; e = e + ROW_LANES) {
        let x = load_gp_one(element_in_row(job, entry.seg, e));
        acc = acc + vec4<f32>(x.p.x * x.p.x, 0.0, x.p.x * x.g.x, x.g.x * x.g.x);
        bad = max(bad, nonfinite4(x.g));
    }
    acc.y = bad;
    lane_red[lane] = acc;
    workgroupBarrier();
    if (lane != 0u) {
        return;
    }
    let s = lanes_sum();
    let row = job.row + entry.seg;
    scratch[P.stats_base + ROW_STATS * row] = s.x;
    scratch[P.stats_base + ROW_STATS * row + 2u] = s.z;
    scratch[P.stats_base + ROW_STATS * row + 3u] = s.w;
    if (s.y != 0.0) {
        atomicOr(&status[STATUS_WORDS * t + 1u], 1u);
    }
}

// A row's p·p, p·d (and whether a gradient is not finite) in the lanes' .x, .y, .z.
fn row_sums(rv: RowView, lane: u32) -> vec4<f32> {
    var acc = vec4<f32>(0.0);
    for (var q = lane; q < rv.quads; q = q + ROW_LANES) {
        let x = load_quad(rv.q0 + q);
        acc = acc + vec4<f32>(dot(x.p, x.p), dot(x.p, moments4(x).d), nonfinite4(x.g), 0.0);
    }
    for (var e = lane; e < rv.scalars; e = e + ROW_LANES) {
        let x = load_one(element_in_row(rv.job, rv.seg, e));
        acc = acc + vec4<f32>(x.p.x * x.p.x, x.p.x * moments4(x).d.x, nonfinite4(x.g), 0.0);
    }
    return acc;
}

// Runtime-tested rows the test sent to the layer view: each row's p·d (what `layer_pd` computes).
@compute @workgroup_size(ROW_LANES)
fn layer_pd_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let k = job_id(wid, groups);
    if (k >= P.row_entry_count) {
        return;
    }
    let entry = load_row_entry_at(k);
    let job = load_job(entry.job);
    let t = job.tensor;
    if (tensor_word(t, T_PROJ) != PROJ_RUNTIME) {
        return;
    }
    let enabled = atomicLoad(&status[STATUS_WORDS * t]) == PROJ_LAYER && atomicLoad(&status[STATUS_WORDS * t + 1u]) == 0u;
    var acc = vec4<f32>(0.0);
    if (enabled) {
        acc = row_sums(row_view(job, entry.seg), lane);
    }
    lane_red[lane] = acc;
    workgroupBarrier();
    if (lane == 0u && enabled) {
        scratch[P.stats_base + ROW_STATS * (job.row + entry.seg) + 1u] = lanes_sum().y;
    }
}

// One projected row (what `apply` does for fused rows): sweep 1 reads the row
// for its p·p, p·d and finiteness, sweep 2 reads it again and writes the step.
@compute @workgroup_size(ROW_LANES)
fn apply_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>, @builtin(local_invocation_index) lane: u32) {
    let k = job_id(wid, groups);
    if (k >= P.row_entry_count) {
        return;
    }
    let entry = load_row_entry_at(k);
    let job = load_job(entry.job);
    let t = job.tensor;
    let proj = tensor_word(t, T_PROJ);
    let runtime = proj == PROJ_RUNTIME;
    let rv = row_view(job, entry.seg);
    var decision = proj;
    var skip = false;
    if (runtime) {
        // The cosine pass and `decide` chose the view (and saw any non-finite gradient).
        skip = atomicLoad(&status[STATUS_WORDS * t + 1u]) != 0u;
        decision = atomicLoad(&status[STATUS_WORDS * t]);
    }
    // Sweep 1, unless the runtime test already has what this row needs: static
    // labels need the row's sums and finiteness, a runtime channel row its sums.
    var acc = vec4<f32>(0.0);
    if (!skip && (!runtime || decision == PROJ_CHANNEL)) {
        acc = row_sums(rv, lane);
    }
    lane_red[lane] = acc;
    workgroupBarrier();
    let s = lanes_sum();
    // A static row with a non-finite gradient stays untouched (runtime rows were checked before).
    let row_bad = !runtime && s.z != 0.0;
    if (skip || row_bad) {
        if (row_bad && lane == 0u) {
            atomicOr(&status[STATUS_WORDS * t + 1u], 1u);
        }
        return;
    }
    var c = 0.0;
    if (decision == PROJ_LAYER && runtime) {
        c = coefficient(scratch[P.tensor_stats_base + TENSOR_STATS * t], scratch[P.tensor_stats_base + TENSOR_STATS * t + 1u]);
    } else if (decision != PROJ_NONE) {
        // A channel row, or a static layer tensor (its job is the whole tensor).
        c = coefficient(s.x, s.y);
    }
    if (!runtime && entry.seg == 0u && lane == 0u) {
        atomicStore(&status[STATUS_WORDS * t], proj);
    }
    // Sweep 2: moments again, project and step.
    let projected = decision != PROJ_NONE;
    for (var q = lane; q < rv.quads; q = q + ROW_LANES) {
        let x = load_quad(rv.q0 + q);
        let mo = moments4(x);
        store_quad(rv.q0 + q, step4(x, mo, mo.d - c * x.p, projected));
    }
    for (var e = lane; e < rv.scalars; e = e + ROW_LANES) {
        let i = element_in_row(job, entry.seg, e);
        let x = load_one(i);
        let mo = moments4(x);
        store_one(i, step4(x, mo, mo.d - c * x.p, projected));
    }
}

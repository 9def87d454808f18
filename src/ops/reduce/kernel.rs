//! The device side of the reductions: one engine for Reduce*, ArgMax/ArgMin
//! and the max pass of ReduceLogSumExp. An op describes its accumulator
//! ([`Combine`]: start value, per-element map, an associative and commutative
//! combine, the final value); the engine picks the launch shape from the
//! reduction's geometry.
//!
//! - **Serial** (one invocation per output, nested loops over the reduced
//!   dims, no division per element): when the output is the input's
//!   innermost dim (neighbouring invocations read neighbouring words: a
//!   bias gradient over `[B, S, H]`), or when few elements are reduced. A
//!   long reduction is split along its outermost reduced dim into chunks
//!   whose partial accumulators a second serial pass combines.
//! - **Workgroup** (one workgroup per output and chunk, a shared-memory tree):
//!   when the reduced elements are contiguous and many (the per-channel sums
//!   over `N*H*W` of a batch norm or a conv bias gradient, a layer norm's
//!   mean). More than one chunk per output: a second workgroup pass.
//!
//! Every thread's work is bounded: chunks grow only as the square root of
//! the reduced size.
use crate::exec::kernel::{self as kern, Bind, Elem, KernelCtx, Launch, Lowered};
use std::fmt::Write;

/// A reduction's accumulator, in WGSL.
pub(crate) struct Combine {
    /// The accumulator's WGSL type (`f32`, or a struct declared in `defs`).
    pub acc: String,
    /// Declarations the functions need (a struct).
    pub defs: String,
    /// The start value (an expression of type `acc`).
    pub init: String,
    /// One element as an accumulator, from `x` (the element), `r` (its index
    /// among the reduced elements, row-major over the reduced axes) and `k`
    /// (the output index).
    pub map: String,
    /// The body of `fn acc_comb(a: Acc, b: Acc) -> Acc`.
    pub comb: String,
    /// The output value from `a` (the accumulator) and `k`.
    pub fin: String,
    /// 32-bit words per accumulator in a scratch buffer, with the store and
    /// load bodies when the accumulator is not a scalar (`part`, `p`, `a`).
    pub words: usize,
    /// `fn acc_store(p: u32, a: Acc)` body (`None`: one scalar word).
    pub store: Option<String>,
    /// `fn acc_load(p: u32) -> Acc` body (`None`: one scalar word).
    pub load: Option<String>,
}

impl Combine {
    /// An accumulator of one scalar word.
    pub fn scalar(acc: Elem, init: String, map: &str, comb: &str, fin: &str) -> Combine {
        Combine {
            acc: acc.wgsl().to_string(),
            defs: String::new(),
            init,
            map: map.to_string(),
            comb: format!("return {comb};"),
            fin: fin.to_string(),
            words: 1,
            store: None,
            load: None,
        }
    }

    /// A float32 sum of `map` with Neumaier's compensation: the accumulator
    /// carries the rounding error of every addition, so a sum of 10^5 terms
    /// (a bias gradient, a BatchNorm statistic over N·H·W) keeps float32's
    /// precision instead of losing ~K·6e-8 of it. `fin` reads the sum as `{s}`.
    pub fn compensated(map: &str, fin: &str) -> Combine {
        Combine {
            acc: "vec2<f32>".into(),
            defs: String::new(),
            init: "vec2<f32>(0.0, 0.0)".into(),
            map: format!("vec2<f32>({map}, 0.0)"),
            comb: "let t = a.x + b.x;\n    let e = select((b.x - t) + a.x, (a.x - t) + b.x, abs(a.x) >= abs(b.x));\n    return vec2<f32>(t, a.y + b.y + e);".into(),
            fin: fin.replace("{s}", "(a.x + a.y)"),
            words: 2,
            store: Some("part[2u * p] = bitcast<u32>(a.x);\n    part[2u * p + 1u] = bitcast<u32>(a.y);".into()),
            load: Some("return vec2<f32>(bitcast<f32>(part[2u * p]), bitcast<f32>(part[2u * p + 1u]));".into()),
        }
    }

    /// The functions; `acc_store` and `acc_load` only with `part` bound.
    fn functions(&self, x: Elem, out: Elem, part: bool) -> String {
        let acc = &self.acc;
        let store = self.store.clone().unwrap_or_else(|| "part[p] = bitcast<u32>(a);".into());
        let load = self.load.clone().unwrap_or_else(|| format!("return bitcast<{acc}>(part[p]);"));
        let scratch = if part { format!("fn acc_store(p: u32, a: {acc}) {{ {store} }}\nfn acc_load(p: u32) -> {acc} {{ {load} }}\n") } else { String::new() };
        format!(
            "{defs}\n\
             fn acc_init() -> {acc} {{ return {init}; }}\n\
             fn acc_map(x: {xt}, r: u32, k: u32) -> {acc} {{ return {map}; }}\n\
             fn acc_comb(a: {acc}, b: {acc}) -> {acc} {{ {comb} }}\n\
             fn acc_fin(a: {acc}, k: u32) -> {ot} {{ return {fin}; }}\n{scratch}",
            defs = self.defs,
            init = self.init,
            xt = x.wgsl(),
            map = self.map,
            comb = self.comb,
            ot = out.wgsl(),
            fin = self.fin,
        )
    }
}

/// The WGSL helpers the combines share: NaN-propagating extrema (as numpy
/// and PyTorch; WGSL's `max` may drop a NaN) and a log defined at 0.
pub(crate) const HELPERS: &str = "
fn max_nan(a: f32, b: f32) -> f32 {
    if (is_nan_f(a)) { return a; }
    if (is_nan_f(b)) { return b; }
    return max(a, b);
}
fn min_nan(a: f32, b: f32) -> f32 {
    if (is_nan_f(a)) { return a; }
    if (is_nan_f(b)) { return b; }
    return min(a, b);
}
fn log_f(a: f32) -> f32 {
    // log is undefined at and below 0 in Vulkan's GLSL.std.450
    if (a == 0.0) { return bitcast<f32>(0xff800000u); }
    if (a < 0.0) { return bitcast<f32>(0x7fc00000u); }
    return log(a);
}
";

/// A reduction of a tensor over a set of axes, with its dims merged: size-1
/// dims dropped, neighbouring dims of the same kind (kept or reduced) fused.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Geometry {
    /// Outputs.
    pub outputs: usize,
    /// Reduced elements per output.
    pub reduced: usize,
    /// Kept dims, outer to inner: (size, stride in the input).
    pub kept_dims: Vec<(usize, usize)>,
    /// Reduced dims, outer to inner: (size, stride in the input).
    pub reduced_dims: Vec<(usize, usize)>,
    /// The input's innermost dim (of size above 1) is kept.
    pub inner_kept: bool,
}

impl Geometry {
    /// The geometry of reducing `shape` over `axes` (normalized, in range).
    pub fn new(shape: &[usize], axes: &[usize]) -> Geometry {
        let strides = kern::strides(shape);
        let mut kept_dims: Vec<(usize, usize)> = Vec::new();
        let mut reduced_dims: Vec<(usize, usize)> = Vec::new();
        // The kind of the last dim appended, to fuse runs.
        let mut last: Option<bool> = None;
        for (d, (&size, &stride)) in shape.iter().zip(&strides).enumerate() {
            if size == 1 {
                continue;
            }
            let red = axes.contains(&d);
            let list = if red { &mut reduced_dims } else { &mut kept_dims };
            match list.last_mut() {
                Some(prev) if last == Some(red) => {
                    // Fuse with the previous dim of this kind: it is contiguous with this one.
                    *prev = (prev.0 * size, stride);
                }
                _ => list.push((size, stride)),
            }
            last = Some(red);
        }
        let outputs = shape.iter().enumerate().filter(|(d, _)| !axes.contains(d)).map(|(_, &s)| s).product();
        let reduced = shape.iter().enumerate().filter(|(d, _)| axes.contains(d)).map(|(_, &s)| s).product();
        Geometry { outputs, reduced, kept_dims, reduced_dims, inner_kept: last == Some(false) }
    }
}

/// WGSL for the input offset of the flat index `var` over `dims` (outer to inner).
fn offset_expr(dims: &[(usize, usize)], var: &str) -> String {
    let mut terms = Vec::new();
    let mut inner = 1usize;
    for (j, &(size, stride)) in dims.iter().enumerate().rev() {
        let q = if inner == 1 { var.to_string() } else { format!("({var} / {inner}u)") };
        let coord = if j == 0 { q } else { format!("({q} % {size}u)") };
        terms.push(if stride == 1 { coord } else { format!("{coord} * {stride}u") });
        inner *= size;
    }
    if terms.is_empty() {
        "0u".into()
    } else {
        terms.join(" + ")
    }
}

/// Where a reduction writes: a binding and its element type.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Dst {
    /// The binding (an output or a scratch buffer).
    pub bind: Bind,
    /// Its element type.
    pub elem: Elem,
}

/// Extra read-only bindings the map or the final value use: (name, type, binding).
pub(crate) type Extra<'a> = &'a [(&'a str, Elem, Bind)];

/// Tuning per adapter kind.
struct Tune {
    /// Invocations of a workgroup reduction.
    wg: usize,
    /// Elements one invocation of a workgroup reduction takes per chunk.
    per_thread: usize,
    /// Elements one invocation of a serial reduction takes before splitting.
    serial_chunk: usize,
    /// A reduction of at most this many elements runs serially.
    serial_max: usize,
}

fn tune(cpu: bool) -> Tune {
    if cpu {
        // lavapipe runs a workgroup's invocations as SIMD lanes of one CPU
        // thread: long serial loops are cheap, and 64 lanes fill a core.
        Tune { wg: 64, per_thread: 256, serial_chunk: 4096, serial_max: 1024 }
    } else {
        Tune { wg: 256, per_thread: 16, serial_chunk: 256, serial_max: 32 }
    }
}

/// Appends to `low` the launches reducing input 0 (type `x`) with `geo` and
/// `comb` into `dst`. `what` labels the launches.
#[allow(clippy::too_many_arguments)]
pub(crate) fn lower(ctx: &KernelCtx, geo: &Geometry, x: Elem, comb: &Combine, dst: Dst, extra: Extra, low: &mut Lowered, what: &str) -> Result<(), String> {
    if geo.outputs == 0 {
        return Ok(());
    }
    if u32::try_from(geo.outputs.saturating_mul(geo.reduced.max(1))).is_err() {
        return Err(format!("the input has {} elements; the kernels index at most 2^32", geo.outputs.saturating_mul(geo.reduced)));
    }
    let t = tune(ctx.limits.cpu);
    if geo.inner_kept || geo.reduced <= t.serial_max {
        serial(ctx, geo, x, comb, dst, extra, low, what, &t)
    } else {
        workgroup(ctx, geo, x, comb, dst, extra, low, what, &t)
    }
}

/// The module text: bindings (`x` when read, extras, `part` when used, `out`
/// when written), helpers, the combine.
fn module(x: Elem, comb: &Combine, dst: Dst, extra: Extra, part: Option<usize>, read_x: bool, write_out: bool) -> (String, Vec<Bind>) {
    let mut decls: Vec<(&str, Elem)> = Vec::new();
    let mut binds = Vec::new();
    if read_x {
        decls.push(("x", x));
        binds.push(Bind::Input(0));
    }
    for (name, elem, b) in extra {
        decls.push((name, *elem));
        binds.push(*b);
    }
    if let Some(k) = part {
        decls.push(("part", Elem::Bool));
        binds.push(Bind::Scratch(k));
    }
    if write_out {
        decls.push(("out", dst.elem));
        binds.push(dst.bind);
    }
    let text = format!("{}{}{HELPERS}{}", kern::bindings(&decls), kern::PRELUDE, comb.functions(x, dst.elem, part.is_some()));
    (text, binds)
}

#[allow(clippy::too_many_arguments)]
fn serial(ctx: &KernelCtx, geo: &Geometry, x: Elem, comb: &Combine, dst: Dst, extra: Extra, low: &mut Lowered, what: &str, t: &Tune) -> Result<(), String> {
    let k_n = geo.outputs;
    // Split along the outermost reduced dim into `chunks` of `c0` of its indices.
    let chunk = t.serial_chunk.max((geo.reduced as f64).sqrt().ceil() as usize);
    let d0 = geo.reduced_dims.first().map_or(1, |&(d0, _)| d0);
    let want = geo.reduced.div_ceil(chunk).clamp(1, d0.max(1));
    let c0 = d0.div_ceil(want).max(1);
    let chunks = if geo.reduced == 0 { 1 } else { d0.div_ceil(c0) };
    let split = chunks > 1;

    // The nested loops over the reduced dims; `r` the reduced flat index.
    let mut body = String::new();
    let _ = writeln!(body, "    let k = i % {k_n}u;");
    let _ = writeln!(body, "    let s = i / {k_n}u;");
    let _ = writeln!(body, "    let base = {};", offset_expr(&geo.kept_dims, "k"));
    let _ = writeln!(body, "    var a = acc_init();");
    if geo.reduced == 1 && geo.reduced_dims.is_empty() {
        let _ = writeln!(body, "    a = acc_comb(a, acc_map(x[base], 0u, k));");
    } else if geo.reduced > 0 {
        let n = geo.reduced_dims.len();
        let mut off = vec!["base".to_string()];
        let mut flat = String::new();
        for (j, &(size, stride)) in geo.reduced_dims.iter().enumerate() {
            let indent = "    ".repeat(j + 1);
            if j == 0 {
                let _ = writeln!(body, "{indent}let lo = s * {c0}u;");
                let _ = writeln!(body, "{indent}let hi = min(lo + {c0}u, {size}u);");
                let _ = writeln!(body, "{indent}for (var i0 = lo; i0 < hi; i0 = i0 + 1u) {{");
            } else {
                let _ = writeln!(body, "{indent}for (var i{j} = 0u; i{j} < {size}u; i{j} = i{j} + 1u) {{");
            }
            off.push(if stride == 1 { format!("i{j}") } else { format!("i{j} * {stride}u") });
            flat = if j == 0 { "i0".into() } else { format!("({flat}) * {size}u + i{j}") };
        }
        let indent = "    ".repeat(n + 1);
        let _ = writeln!(body, "{indent}let r = {flat};");
        let _ = writeln!(body, "{indent}a = acc_comb(a, acc_map(x[{}], r, k));", off.join(" + "));
        for j in (0..n).rev() {
            let _ = writeln!(body, "{}}}", "    ".repeat(j + 1));
        }
    }
    let threads = k_n * chunks;
    let part = split.then(|| {
        low.scratch.push((Elem::I32, comb.words * threads));
        low.scratch.len() - 1
    });
    if split {
        let _ = writeln!(body, "    acc_store(s * {k_n}u + k, a);");
    } else {
        let _ = writeln!(body, "    out[k] = acc_fin(a, k);");
    }
    let (head, binds) = module(x, comb, dst, extra, part, true, !split);
    let wgsl = format!("{head}{}", kern::elementwise_main(threads, &body));
    low.launches.push(Launch { label: kern::label(ctx.node, what), wgsl, binds, groups: kern::groups_for(threads, &ctx.limits) });
    if split {
        let mut body = String::new();
        let _ = writeln!(body, "    let k = i;");
        let _ = writeln!(body, "    var a = acc_init();");
        let _ = writeln!(body, "    for (var s = 0u; s < {chunks}u; s = s + 1u) {{ a = acc_comb(a, acc_load(s * {k_n}u + k)); }}");
        let _ = writeln!(body, "    out[k] = acc_fin(a, k);");
        let (head, binds) = module(x, comb, dst, extra, part, false, true);
        let wgsl = format!("{head}{}", kern::elementwise_main(k_n, &body));
        low.launches.push(Launch { label: kern::label(ctx.node, &partials_label(what)), wgsl, binds, groups: kern::groups_for(k_n, &ctx.limits) });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn workgroup(ctx: &KernelCtx, geo: &Geometry, x: Elem, comb: &Combine, dst: Dst, extra: Extra, low: &mut Lowered, what: &str, t: &Tune) -> Result<(), String> {
    let k_n = geo.outputs;
    // A short reduction takes a smaller workgroup (about four elements per
    // invocation) rather than leaving most of a large one idle.
    let wg = if ctx.limits.cpu { t.wg } else { (geo.reduced / 4).next_power_of_two().clamp(32, t.wg) };
    // Chunks of `ch` reduced elements per workgroup; past `max_chunks`
    // chunks per output the chunk grows, so the second pass stays short.
    let max_chunks = wg * t.per_thread;
    let mut ch = wg * t.per_thread;
    if geo.reduced.div_ceil(ch) > max_chunks {
        ch = geo.reduced.div_ceil(max_chunks).next_multiple_of(wg);
    }
    let chunks = geo.reduced.div_ceil(ch).max(1);
    let split = chunks > 1;
    let groups = k_n * chunks;
    let part = split.then(|| {
        low.scratch.push((Elem::I32, comb.words * groups));
        low.scratch.len() - 1
    });
    let half = wg / 2;
    let tree = format!(
        "    sh[t] = a;\n    workgroupBarrier();\n    for (var h = {half}u; h > 0u; h = h >> 1u) {{\n        if (t < h) {{ sh[t] = acc_comb(sh[t], sh[t + h]); }}\n        workgroupBarrier();\n    }}\n"
    );
    let entry = |body: &str| {
        format!(
            "var<workgroup> sh: array<{acc}, {wg}>;\n\
             @compute @workgroup_size({wg})\n\
             fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(local_invocation_index) t: u32) {{\n\
             \x20   let w = wid.x + wid.y * nwg.x;\n{body}}}\n",
            acc = comb.acc
        )
    };
    let mut body = String::new();
    let _ = writeln!(body, "    if (w >= {groups}u) {{ return; }}");
    let _ = writeln!(body, "    let k = w / {chunks}u;");
    let _ = writeln!(body, "    let s = w % {chunks}u;");
    let _ = writeln!(body, "    let base = {};", offset_expr(&geo.kept_dims, "k"));
    let _ = writeln!(body, "    var a = acc_init();");
    let _ = writeln!(body, "    let hi = min(s * {ch}u + {ch}u, {}u);", geo.reduced);
    let _ = writeln!(body, "    for (var r = s * {ch}u + t; r < hi; r = r + {wg}u) {{");
    let _ = writeln!(body, "        a = acc_comb(a, acc_map(x[base + {}], r, k));", offset_expr(&geo.reduced_dims, "r"));
    let _ = writeln!(body, "    }}");
    body.push_str(&tree);
    if split {
        let _ = writeln!(body, "    if (t == 0u) {{ acc_store(w, sh[0]); }}");
    } else {
        let _ = writeln!(body, "    if (t == 0u) {{ out[k] = acc_fin(sh[0], k); }}");
    }
    let (head, binds) = module(x, comb, dst, extra, part, true, !split);
    let wgsl = format!("{head}{}", entry(&body));
    low.launches.push(Launch { label: kern::label(ctx.node, what), wgsl, binds, groups: fold(groups, &ctx.limits) });
    if split {
        let mut body = String::new();
        let _ = writeln!(body, "    if (w >= {k_n}u) {{ return; }}");
        let _ = writeln!(body, "    let k = w;");
        let _ = writeln!(body, "    var a = acc_init();");
        let _ = writeln!(body, "    for (var s = t; s < {chunks}u; s = s + {wg}u) {{ a = acc_comb(a, acc_load(k * {chunks}u + s)); }}");
        body.push_str(&tree);
        let _ = writeln!(body, "    if (t == 0u) {{ out[k] = acc_fin(sh[0], k); }}");
        let (head, binds) = module(x, comb, dst, extra, part, false, true);
        let wgsl = format!("{head}{}", entry(&body));
        low.launches.push(Launch { label: kern::label(ctx.node, &partials_label(what)), wgsl, binds, groups: fold(k_n, &ctx.limits) });
    }
    Ok(())
}

/// The label of a second pass.
fn partials_label(what: &str) -> String {
    if what.is_empty() {
        "partials".into()
    } else {
        format!("{what} partials")
    }
}

/// `n` workgroups, folded into y past the adapter's limit.
fn fold(n: usize, limits: &kern::Limits) -> [u32; 3] {
    let max = limits.max_workgroups.max(1) as usize;
    if n <= max {
        [n.max(1) as u32, 1, 1]
    } else {
        [max as u32, n.div_ceil(max) as u32, 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dims_merge_by_kind() {
        // NCHW over N, H, W: N reduced, C kept, H*W reduced and fused.
        let g = Geometry::new(&[8, 16, 5, 7], &[0, 2, 3]);
        assert_eq!((g.outputs, g.reduced), (16, 8 * 35));
        assert_eq!(g.kept_dims, vec![(16, 35)]);
        assert_eq!(g.reduced_dims, vec![(8, 16 * 35), (35, 1)]);
        assert!(!g.inner_kept);
        // [B, S, H] over B and S: the output is the innermost dim.
        let g = Geometry::new(&[2, 3, 4], &[0, 1]);
        assert_eq!(g.reduced_dims, vec![(6, 4)]);
        assert!(g.inner_kept);
        // Size-1 dims vanish; nothing reduced.
        let g = Geometry::new(&[1, 4, 1], &[0, 2]);
        assert_eq!((g.outputs, g.reduced, g.reduced_dims.len()), (4, 1, 0));
    }

    #[test]
    fn offsets_decompose_row_major() {
        assert_eq!(offset_expr(&[(8, 560), (35, 1)], "r"), "(r % 35u) + (r / 35u) * 560u");
        assert_eq!(offset_expr(&[], "k"), "0u");
    }

    /// Device reductions against a float64 reference, planned both for a CPU
    /// adapter and for a GPU (so that the workgroup trees, the chunked splits
    /// and the serial paths all run on the test adapter).
    #[cfg(feature = "gpu")]
    mod device {
        use crate::ir::{AttrValue, DType};
        use crate::ops::util::device_test::{executor, gpu, graph, node, tensor};
        use crate::ops::{OpDef, ARG_MAX, ARG_MIN, CUM_SUM, REDUCE_LOG_SUM_EXP, REDUCE_MAX, REDUCE_MEAN, REDUCE_SUM, REDUCE_SUM_SQUARE};

        fn data(n: usize, seed: u64) -> Vec<f32> {
            let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (0..n)
                .map(|_| {
                    s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect()
        }

        /// Reference: per output (row-major over the kept dims), the reduced elements in row-major order.
        fn groups(shape: &[usize], axes: &[usize], x: &[f32]) -> Vec<Vec<f64>> {
            let strides = crate::exec::kernel::strides(shape);
            let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
            let k_n: usize = kept.iter().map(|&d| shape[d]).product();
            let r_n: usize = axes.iter().map(|&d| shape[d]).product();
            let coords = |mut i: usize, dims: &[usize]| -> usize {
                let mut off = 0;
                for &d in dims.iter().rev() {
                    off += (i % shape[d]) * strides[d];
                    i /= shape[d];
                }
                off
            };
            (0..k_n).map(|k| (0..r_n).map(|r| f64::from(x[coords(k, &kept) + coords(r, axes)])).collect()).collect()
        }

        fn run(def: &'static OpDef, shape: &[usize], axes: &[usize], attrs: Vec<(&str, AttrValue)>, x: &[f32], cpu: bool) -> Vec<f32> {
            run_paths(def, shape, axes, attrs, x, cpu).0
        }

        /// The outputs, and the launch shapes used: `serial`, `serial+partials`, `tree`, `tree+partials`.
        fn run_paths(def: &'static OpDef, shape: &[usize], axes: &[usize], attrs: Vec<(&str, AttrValue)>, x: &[f32], cpu: bool) -> (Vec<f32>, String) {
            let gpu = gpu();
            let (inputs, constants) = if def == &ARG_MAX || def == &ARG_MIN || def == &CUM_SUM {
                (vec!["x"], Vec::new())
            } else {
                let a: Vec<f64> = axes.iter().map(|&a| a as f64).collect();
                (vec!["x", "axes"], vec![("axes", tensor(DType::I64, &[a.len()], &a))])
            };
            let mut constants = constants;
            let mut inputs = inputs;
            if def == &CUM_SUM {
                constants.push(("axis", tensor(DType::I64, &[], &[axes[0] as f64])));
                inputs.push("axis");
            }
            let g = graph(18, vec![node(def, &inputs, &["y"], attrs)], &[("x", DType::F32, shape)], constants, &["y"]);
            let mut exec = executor(&gpu, g, Some(cpu), 1);
            exec.write_f32("x", x).expect("write x");
            exec.run().expect("run");
            let steps = &exec.program().steps;
            let tree = steps.iter().any(|s| s.launch.wgsl.contains("var<workgroup>"));
            let partials = steps.iter().any(|s| s.launch.label.contains("partials"));
            let path = format!("{}{}", if tree { "tree" } else { "serial" }, if partials { "+partials" } else { "" });
            (exec.read_f32("y").expect("read y"), path)
        }

        fn close(got: &[f32], want: &[f64], scale: &[f64], what: &str) {
            assert_eq!(got.len(), want.len(), "{what}: element count");
            for (i, ((&g, &w), &s)) in got.iter().zip(want).zip(scale).enumerate() {
                let ok = f64::from(g) == w || (f64::from(g) - w).abs() <= 1e-5 * (1.0 + s) || (g.is_nan() && w.is_nan());
                assert!(ok, "{what}: output {i} is {g}, want {w}");
            }
        }

        /// Sums and means where the output is strided (batch-norm and bias
        /// gradients over N, H, W), where it is innermost (a bias gradient over
        /// B and S), and along one long contiguous axis.
        #[test]
        fn sums_match_the_reference_on_every_path() {
            let cases: &[(&[usize], &[usize])] = &[(&[32, 4, 30, 40], &[0, 2, 3]), (&[64, 300, 8], &[0, 1]), (&[4, 2000], &[1]), (&[3, 70000], &[1]), (&[5, 7, 3], &[1]), (&[2, 3, 4, 5], &[0, 2]), (&[6, 1, 5], &[1]), (&[64, 100], &[1])];
            let mut paths = std::collections::BTreeSet::new();
            for &(shape, axes) in cases {
                let x = data(shape.iter().product(), shape.len() as u64);
                let g = groups(shape, axes, &x);
                let sum: Vec<f64> = g.iter().map(|v| v.iter().sum()).collect();
                let abs: Vec<f64> = g.iter().map(|v| v.iter().map(|a| a.abs()).sum()).collect();
                let mean: Vec<f64> = g.iter().map(|v| v.iter().sum::<f64>() / v.len() as f64).collect();
                let sq: Vec<f64> = g.iter().map(|v| v.iter().map(|a| a * a).sum()).collect();
                let ones = vec![1.0; g.len()];
                for cpu in [true, false] {
                    let what = format!("{shape:?} over {axes:?}, cpu {cpu}");
                    let (got, path) = run_paths(&REDUCE_SUM, shape, axes, vec![("keepdims", AttrValue::Int(0))], &x, cpu);
                    paths.insert(path);
                    close(&got, &sum, &abs, &format!("ReduceSum {what}"));
                    close(&run(&REDUCE_MEAN, shape, axes, vec![], &x, cpu), &mean, &ones, &format!("ReduceMean {what}"));
                    close(&run(&REDUCE_SUM_SQUARE, shape, axes, vec![], &x, cpu), &sq, &sq, &format!("ReduceSumSquare {what}"));
                }
            }
            // Every launch shape ran (a retuning must keep the cases covering them).
            assert_eq!(paths.into_iter().collect::<Vec<_>>(), ["serial", "serial+partials", "tree", "tree+partials"]);
        }

        #[test]
        fn extrema_and_log_sum_exp_match_the_reference() {
            let shape = [3, 70000];
            let mut x = data(140000 + 70000, 7);
            x.truncate(210000);
            // A NaN in the middle row propagates; the last row holds an infinity.
            x[70000 + 12345] = f32::NAN;
            x[140000 + 5] = f32::INFINITY;
            let g = groups(&shape, &[1], &x);
            let max: Vec<f64> = g.iter().map(|v| if v.iter().any(|a| a.is_nan()) { f64::NAN } else { v.iter().cloned().fold(f64::NEG_INFINITY, f64::max) }).collect();
            let lse: Vec<f64> = g.iter().map(|v| v.iter().map(|a| a.exp()).sum::<f64>().ln()).collect();
            let ones = vec![1.0; 3];
            for cpu in [true, false] {
                close(&run(&REDUCE_MAX, &shape, &[1], vec![], &x, cpu), &max, &ones, &format!("ReduceMax cpu {cpu}"));
                close(&run(&REDUCE_LOG_SUM_EXP, &shape, &[1], vec![], &x, cpu), &lse, &ones, &format!("ReduceLogSumExp cpu {cpu}"));
            }
        }

        /// Ties everywhere (values in a few levels): the first index wins, or
        /// the last with select_last_index, across chunks and tree levels.
        #[test]
        fn arg_extrema_break_ties_by_index() {
            for (shape, axis) in [([3usize, 50000usize], 1usize), ([40000, 3], 0), ([7, 9], 1)] {
                let x: Vec<f32> = data(shape[0] * shape[1], 3).iter().map(|v| (v * 3.0).round()).collect();
                let g = groups(&shape, &[axis], &x);
                for (def, max) in [(&ARG_MAX, true), (&ARG_MIN, false)] {
                    for last in [0i64, 1] {
                        let want: Vec<f64> = g
                            .iter()
                            .map(|v| {
                                let best = v.iter().cloned().fold(if max { f64::NEG_INFINITY } else { f64::INFINITY }, |a, b| if max { a.max(b) } else { a.min(b) });
                                let mut hits = v.iter().enumerate().filter(|(_, &a)| a == best).map(|(i, _)| i as f64);
                                if last == 1 { hits.next_back().unwrap_or(-1.0) } else { hits.next().unwrap_or(-1.0) }
                            })
                            .collect();
                        for cpu in [true, false] {
                            let attrs = vec![("axis", AttrValue::Int(axis as i64)), ("keepdims", AttrValue::Int(0)), ("select_last_index", AttrValue::Int(last))];
                            let got = run(def, &shape, &[axis], attrs, &x, cpu);
                            close(&got, &want, &vec![0.0; want.len()], &format!("{} {shape:?} axis {axis} last {last} cpu {cpu}", def.name));
                        }
                    }
                }
            }
        }

        #[test]
        fn cumsum_runs_every_direction() {
            let shape = [3usize, 5, 4];
            let x = data(60, 11);
            for axis in 0..3 {
                for (exclusive, reverse) in [(0, 0), (1, 0), (0, 1), (1, 1)] {
                    let strides = crate::exec::kernel::strides(&shape);
                    let want: Vec<f64> = (0..60)
                        .map(|i| {
                            let c = (i / strides[axis]) % shape[axis];
                            let line = i - c * strides[axis];
                            (0..shape[axis])
                                .filter(|&t| if reverse == 1 { t > c || (exclusive == 0 && t == c) } else { t < c || (exclusive == 0 && t == c) })
                                .map(|t| f64::from(x[line + t * strides[axis]]))
                                .sum()
                        })
                        .collect();
                    let got = run(&CUM_SUM, &shape, &[axis], vec![("exclusive", AttrValue::Int(exclusive)), ("reverse", AttrValue::Int(reverse))], &x, true);
                    close(&got, &want, &vec![4.0; 60], &format!("CumSum axis {axis} exclusive {exclusive} reverse {reverse}"));
                }
            }
        }

        /// Empty dims, scalars and out-of-range axes give a result or a named
        /// error, never a panic.
        #[test]
        fn edge_shapes_run_or_refuse() {
            use crate::exec::device::{limits, Executor, PipelineCache};
            let gpu = gpu();
            let cases: Vec<(&'static OpDef, Vec<usize>, Vec<i64>, bool)> = vec![
                (&REDUCE_SUM, vec![2, 0, 3], vec![1], true),
                (&REDUCE_SUM, vec![2, 0, 3], vec![2], true),
                (&REDUCE_MAX, vec![], vec![], true),
                (&REDUCE_LOG_SUM_EXP, vec![0, 4], vec![0], true),
                (&REDUCE_SUM, vec![3, 4], vec![2], false),
                (&ARG_MAX, vec![0, 3], vec![0], false),
                (&ARG_MAX, vec![], vec![0], false),
                (&CUM_SUM, vec![0, 3], vec![1], true),
                (&CUM_SUM, vec![3], vec![1], false),
            ];
            for (def, shape, axes, ok) in cases {
                let a: Vec<f64> = axes.iter().map(|&a| a as f64).collect();
                let (inputs, constants, attrs) = if def == &ARG_MAX {
                    (vec!["x"], vec![], vec![("axis", AttrValue::Int(axes[0]))])
                } else if def == &CUM_SUM {
                    (vec!["x", "axis"], vec![("axis", tensor(DType::I64, &[], &a))], vec![])
                } else {
                    (vec!["x", "axes"], vec![("axes", tensor(DType::I64, &[a.len()], &a))], vec![])
                };
                let what = format!("{} {shape:?} axes {axes:?}", def.name);
                let parts = crate::ir::Parts {
                    name: "edge".into(),
                    symbols: Vec::new(),
                    initializers: constants.into_iter().map(|(n, t): (&str, crate::ir::Tensor)| (n.to_string(), t)).collect(),
                    inputs: vec![("x".into(), Some(crate::ir::TypeDecl { dtype: Some(DType::F32), shape: Some(shape.iter().map(|&d| crate::ir::Dim::Known(d as i64)).collect()) }))],
                    outputs: vec![("y".into(), None)],
                    value_info: Vec::new(),
                    nodes: vec![node(def, &inputs, &["y"], attrs)],
                };
                let how = crate::ir::Resolve { path: "edge.onnx".into(), opset: 18, producer: String::new(), body: false, keep_order: false, infer: true };
                let result = crate::ir::resolve(parts, &how).map_err(|e| e.to_string()).and_then(|g| crate::exec::plan(g, limits(&gpu)).map_err(|e| e.to_string())).and_then(|p| {
                    let mut exec = Executor::new(&gpu, p, &mut PipelineCache::default(), 1).map_err(|e| e.to_string())?;
                    exec.write_f32("x", &vec![1.0; shape.iter().product()]).map_err(|e| e.to_string())?;
                    exec.run().map_err(|e| e.to_string())?;
                    exec.read_f32("y").map_err(|e| e.to_string())
                });
                match (result, ok) {
                    (Ok(_), true) => {}
                    (Err(e), false) => assert!(!e.is_empty(), "{what}: an empty error"),
                    (r, _) => panic!("{what}: expected {}, got {r:?}", if ok { "a result" } else { "an error" }),
                }
            }
        }
    }
}

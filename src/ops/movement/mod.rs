//! The movement ops.
mod concat;
mod data_dependent;
mod depth_space;
mod gather;
mod one_hot;
mod pad;
mod resize;
mod reverse_sequence;
mod scatter;
mod slice;
mod split;
mod tile;
mod top_k;
mod trilu;

pub use concat::*;
pub use data_dependent::*;
pub use depth_space::*;
pub use gather::*;
pub use one_hot::*;
pub use pad::*;
pub use resize::*;
pub use reverse_sequence::*;
pub use scatter::*;
pub use slice::*;
pub use split::*;
pub use tile::*;
pub use top_k::*;
pub use trilu::*;

use super::OpDef;

/// The ops of this family.
pub(crate) static OPS: &[&OpDef] = &[
    &CONCAT,
    &SPLIT,
    &SLICE,
    &GATHER,
    &GATHER_ELEMENTS,
    &GATHER_ND,
    &SCATTER,
    &SCATTER_ELEMENTS,
    &SCATTER_ND,
    &TENSOR_SCATTER,
    &TILE,
    &PAD,
    &CENTER_CROP_PAD,
    &RESIZE,
    &UPSAMPLE,
    &DEPTH_TO_SPACE,
    &SPACE_TO_DEPTH,
    &TRILU,
    &TOP_K,
    &ONE_HOT,
    &REVERSE_SEQUENCE,
    &NON_ZERO,
    &UNIQUE,
    &COMPRESS,
];

/// Index-map kernels shared by the movement and shape ops: `out[i] = in[f(i)]`
/// with `f` generated from the static shapes as WGSL arithmetic.
pub(crate) mod map {
    use crate::exec::kernel::{self as kern, Bind, Elem, KernelCtx, Launch, Lowered};
    use std::fmt::Write;

    /// WGSL `let {p}{d}: u32` statements: the coordinates of the flat index
    /// `index` in the row-major `shape` (nothing for rank 0).
    pub(crate) fn coords(p: &str, index: &str, shape: &[usize]) -> String {
        let st = kern::strides(shape);
        let mut s = String::new();
        for d in 0..shape.len() {
            if d == 0 {
                let _ = writeln!(s, "    let {p}{d} = {index} / {}u;", st[d]);
            } else {
                let _ = writeln!(s, "    let {p}{d} = ({index} / {}u) % {}u;", st[d], shape[d]);
            }
        }
        s
    }

    /// A WGSL `u32` expression: the flat offset of coordinate expressions `c` (u32) in `shape`.
    pub(crate) fn flat(c: &[String], shape: &[usize]) -> String {
        let st = kern::strides(shape);
        let terms: Vec<String> = c.iter().zip(&st).zip(shape).filter(|((_, _), &d)| d != 1).map(|((c, s), _)| if *s == 1 { format!("({c})") } else { format!("({c}) * {s}u") }).collect();
        if terms.is_empty() {
            "0u".into()
        } else {
            terms.join(" + ")
        }
    }

    /// A WGSL `u32` expression: `base + sum(c{d} * mult[d])`, evaluated in
    /// i32 (a reversed slice has negative multipliers).
    pub(crate) fn affine(p: &str, base: i64, mult: &[i64]) -> String {
        let mut e = format!("{base}");
        for (d, &m) in mult.iter().enumerate() {
            if m != 0 {
                let _ = write!(e, " + i32({p}{d}) * {m}");
            }
        }
        format!("u32({e})")
    }

    /// One tensor a launch binds: its WGSL name, element type (as declared; an
    /// atomic output spells its own type) and slot.
    pub(crate) struct Arg {
        /// WGSL name.
        pub name: String,
        /// WGSL array element type.
        pub ty: String,
        /// The node slot.
        pub bind: Bind,
    }

    impl Arg {
        /// Input slot `k` as `name`.
        pub(crate) fn input(ctx: &KernelCtx, k: usize, name: &str) -> Result<Arg, String> {
            Ok(Arg { name: name.into(), ty: ctx.input(k)?.elem.wgsl().into(), bind: Bind::Input(k) })
        }

        /// Output slot `k` as `name`.
        pub(crate) fn output(ctx: &KernelCtx, k: usize, name: &str) -> Result<Arg, String> {
            Ok(Arg { name: name.into(), ty: ctx.output(k)?.elem.wgsl().into(), bind: Bind::Output(k) })
        }
    }

    /// A one-dimensional launch of `n` invocations: `body` runs with `i: u32` below `n`.
    pub(crate) fn launch(ctx: &KernelCtx, what: &str, args: &[Arg], n: usize, helpers: &str, body: &str) -> Result<Launch, String> {
        if n > u32::MAX as usize / 2 {
            return Err(format!("{n} elements; the kernels index with 32 bits"));
        }
        if args.len() > ctx.limits.max_bindings as usize {
            return Err(format!("{} buffers in one launch; the adapter binds {}", args.len(), ctx.limits.max_bindings));
        }
        let mut wgsl = String::new();
        for (b, a) in args.iter().enumerate() {
            let _ = writeln!(wgsl, "@group(0) @binding({b}) var<storage, read_write> {}: array<{}>;", a.name, a.ty);
        }
        wgsl.push_str(helpers);
        wgsl.push_str(&kern::elementwise_main(n, body));
        Ok(Launch { label: kern::label(ctx.node, what), wgsl, binds: args.iter().map(|a| a.bind).collect(), groups: kern::groups_for(n, &ctx.limits) })
    }

    /// Output 0 from input `src` by an index map: `offset` is WGSL statements
    /// over the output coordinates `c0..` that define `src: u32` (and `ok: bool`
    /// when `guarded`: where false the element is `fill`, a WGSL expression).
    pub(crate) fn gather(ctx: &KernelCtx, src: usize, offset: &str, guarded: Option<&str>, extra: &[Arg]) -> Result<Lowered, String> {
        let out = ctx.output(0)?;
        let n = out.numel();
        if n == 0 {
            return Ok(Lowered::default());
        }
        let mut args = vec![Arg::input(ctx, src, "x")?];
        args.extend(extra.iter().map(|a| Arg { name: a.name.clone(), ty: a.ty.clone(), bind: a.bind }));
        args.push(Arg::output(ctx, 0, "out")?);
        let mut body = coords("c", "i", &out.shape);
        body.push_str(offset);
        match guarded {
            None => body.push_str("\n    out[i] = x[src];"),
            Some(fill) => {
                let _ = write!(body, "\n    if (ok) {{ out[i] = x[src]; }} else {{ out[i] = {fill}; }}");
            }
        }
        Ok(Lowered::one(launch(ctx, "", &args, n, "", &body)?))
    }

    /// WGSL statements: `let {var}: i32` is the index `e` (i32) with a negative
    /// index counted from the end of a dim of `dim`, and `{var}_ok` whether it is in range.
    pub(crate) fn norm_index(var: &str, e: &str, dim: usize) -> String {
        format!("    let {var}_r = {e};\n    let {var} = select({var}_r, {var}_r + {dim}, {var}_r < 0);\n    let {var}_ok = {var} >= 0 && {var} < {dim};\n")
    }

    /// A normalised axis in `0..rank`.
    pub(crate) fn axis(a: i64, rank: usize, what: &str) -> Result<usize, String> {
        let r = rank as i64;
        let x = if a < 0 { a + r } else { a };
        if (0..r).contains(&x) {
            Ok(x as usize)
        } else {
            Err(format!("{what} {a} is out of range for rank {rank}"))
        }
    }

    /// The WGSL literal of a one-element attribute tensor in `elem` (0 when absent).
    pub(crate) fn scalar_literal(t: Option<&crate::ir::Tensor>, elem: Elem) -> Result<String, String> {
        match t {
            None => Ok(elem.literal(0.0)),
            Some(t) => t.as_scalar().map(|x| elem.literal(x)).ok_or_else(|| format!("the value attribute is a {} tensor of {} elements; one number was expected", t.dtype.name(), t.elements())),
        }
    }

    /// A copy of input `src` into output `out` (same element count), as one launch.
    pub(crate) fn copy(ctx: &KernelCtx, src: usize, out: usize) -> Result<Launch, String> {
        let n = ctx.output(out)?.numel();
        let args = [Arg::input(ctx, src, "x")?, Arg::output(ctx, out, "out")?];
        launch(ctx, "copy", &args, n, "", "    out[i] = x[i];")
    }
}

/// The index-map kernels against CPU references, on the adapter (lavapipe in
/// CI), for the patterns the gradient graphs use.
#[cfg(all(test, feature = "gpu"))]
mod tests {
    use crate::exec::device::{limits, Executor, PipelineCache};
    use crate::ir::{self, AttrValue, DType, Dim, Parts, Tensor, TypeDecl};
    use crate::ops::movement::slice_bounds;
    use crate::runtime::Gpu;
    use crate::ops::OpDef;

    /// One input: name, type, dims, values, and whether the host knows it (an initializer).
    struct In(&'static str, DType, Vec<usize>, Vec<f64>, bool);

    fn tensor(dtype: DType, dims: &[usize], vals: &[f64]) -> Tensor {
        let data: Vec<u8> = match dtype {
            DType::F32 => vals.iter().flat_map(|&x| (x as f32).to_le_bytes()).collect(),
            DType::I64 => vals.iter().flat_map(|&x| (x as i64).to_le_bytes()).collect(),
            _ => panic!("test tensors are float32 or int64"),
        };
        Tensor { dtype, dims: dims.iter().map(|&d| d as i64).collect(), data: data.into() }
    }

    /// Runs one node; returns output 0's shape and values.
    fn run(gpu: &Gpu, op: &'static OpDef, attrs: Vec<(&str, AttrValue)>, ins: &[In]) -> Result<(Vec<usize>, Vec<f32>), String> {
        let mut parts = Parts { name: "t".into(), symbols: vec![], initializers: vec![], inputs: vec![], outputs: vec![("y".into(), None)], value_info: vec![], nodes: vec![] };
        for In(name, dtype, dims, vals, host) in ins {
            if *host {
                parts.initializers.push((name.to_string(), tensor(*dtype, dims, vals)));
            } else {
                parts.inputs.push((name.to_string(), Some(TypeDecl { dtype: Some(*dtype), shape: Some(dims.iter().map(|&d| Dim::Known(d as i64)).collect()) })));
            }
        }
        parts.nodes.push(ir::NodeParts {
            name: "n".into(),
            op_type: op.name.into(),
            def: Some(op),
            inputs: ins.iter().map(|i| i.0.to_string()).collect(),
            outputs: vec!["y".into()],
            attrs: attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            ..Default::default()
        });
        let how = ir::Resolve { path: "t.onnx".into(), opset: 18, producer: String::new(), body: false, keep_order: true, infer: true };
        let g = ir::resolve(parts, &how).map_err(|e| e.to_string())?;
        let program = crate::exec::plan(g, limits(gpu)).map_err(|e| e.to_string())?;
        let mut cache = PipelineCache::default();
        let mut exec = Executor::new(gpu, program, &mut cache, 1).map_err(|e| e.to_string())?;
        for In(name, dtype, _, vals, host) in ins {
            if !*host {
                let r = match dtype {
                    DType::F32 => exec.write_f32(name, &vals.iter().map(|&x| x as f32).collect::<Vec<_>>()),
                    _ => exec.write_i64(name, &vals.iter().map(|&x| x as i64).collect::<Vec<_>>()),
                };
                r.map_err(|e| e.to_string())?;
            }
        }
        exec.run().map_err(|e| e.to_string())?;
        let shape = exec.program().slot("y").and_then(|s| s.info.as_ref()).map(|i| i.shape.clone()).unwrap_or_default();
        Ok((shape, exec.read_f32("y").map_err(|e| e.to_string())?))
    }

    /// A deterministic pseudo-random sequence in [0, 1).
    fn noise(n: usize, seed: u64) -> Vec<f64> {
        let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (s >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    fn close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (k, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!((a as f64 - b).abs() <= 1e-4 + 1e-4 * b.abs(), "{what}: element {k} is {a}, want {b}");
        }
    }

    fn gpu() -> Gpu {
        Gpu::open(None).expect("a wgpu adapter (scripts/test.sh installs lavapipe)")
    }

    fn s(x: &str) -> AttrValue {
        AttrValue::Str(x.into())
    }

    #[test]
    fn scatter_reductions_accumulate_duplicates() {
        let gpu = gpu();
        // the scatter_flat pattern: zeros, flat indices with many duplicates, axis 0
        let n = 37;
        let m = 500;
        let data: Vec<f64> = noise(n, 1).iter().map(|x| x + 0.5).collect();
        let idx: Vec<f64> = noise(m, 2).iter().map(|x| (x * (2 * n) as f64).floor() - n as f64).collect(); // negative ones too
        let upd: Vec<f64> = noise(m, 3).iter().map(|x| 0.5 + x).collect();
        for red in ["add", "mul", "max", "min", "none"] {
            let mut want = data.clone();
            for (&k, &u) in idx.iter().zip(&upd) {
                let k = if k < 0.0 { k + n as f64 } else { k } as usize;
                want[k] = match red {
                    "add" => want[k] + u,
                    "mul" => want[k] * u,
                    "max" => want[k].max(u),
                    "min" => want[k].min(u),
                    _ => u,
                };
            }
            let ins = [In("x", DType::F32, vec![n], data.clone(), false), In("i", DType::I64, vec![m], idx.clone(), false), In("u", DType::F32, vec![m], upd.clone(), false)];
            let (shape, got) = run(&gpu, &crate::ops::SCATTER_ELEMENTS, vec![("axis", AttrValue::Int(0)), ("reduction", s(red))], &ins).unwrap();
            assert_eq!(shape, vec![n]);
            if red == "none" {
                // duplicates: some update of the index lands; untouched elements keep the data
                for (k, &g) in got.iter().enumerate() {
                    let cands: Vec<f64> = idx.iter().zip(&upd).filter(|(&i, _)| (if i < 0.0 { i + n as f64 } else { i }) as usize == k).map(|(_, &u)| u).collect();
                    assert!(if cands.is_empty() { (g as f64 - data[k]).abs() < 1e-6 } else { cands.iter().any(|&u| (g as f64 - u).abs() < 1e-6) }, "none: element {k}");
                }
            } else {
                let tol: Vec<f64> = want.clone();
                if red == "mul" {
                    // products of ~14 factors in another order: relative error only
                    for (k, (&a, &b)) in got.iter().zip(&tol).enumerate() {
                        assert!((a as f64 - b).abs() <= 1e-4 * b.abs(), "mul: element {k} is {a}, want {b}");
                    }
                } else {
                    close(&got, &tol, red);
                }
            }
        }
        // integers: add and max on int64 data
        let idata: Vec<f64> = (0..n).map(|k| k as f64).collect();
        let iupd: Vec<f64> = (0..m).map(|k| (k % 7) as f64 - 3.0).collect();
        let mut want = idata.clone();
        for (&k, &u) in idx.iter().zip(&iupd) {
            let k = if k < 0.0 { k + n as f64 } else { k } as usize;
            want[k] += u;
        }
        let ins = [In("x", DType::I64, vec![n], idata, false), In("i", DType::I64, vec![m], idx.clone(), false), In("u", DType::I64, vec![m], iupd, false)];
        let (_, got) = run(&gpu, &crate::ops::SCATTER_ELEMENTS, vec![("reduction", s("add"))], &ins).unwrap();
        close(&got, &want, "int add");
    }

    #[test]
    fn scatter_nd_adds_embedding_rows() {
        // Gather's gradient: zeros [V, H], indices [B, T, 1] with repeats, updates [B, T, H]
        let gpu = gpu();
        let (v, h, b, t) = (11, 6, 3, 9);
        let idx: Vec<f64> = noise(b * t, 4).iter().map(|x| (x * v as f64).floor()).collect();
        let upd = noise(b * t * h, 5);
        let mut want = vec![0.0; v * h];
        for (r, &k) in idx.iter().enumerate() {
            for c in 0..h {
                want[k as usize * h + c] += upd[r * h + c];
            }
        }
        let ins = [In("x", DType::F32, vec![v, h], vec![0.0; v * h], false), In("i", DType::I64, vec![b, t, 1], idx, false), In("u", DType::F32, vec![b, t, h], upd, false)];
        let (shape, got) = run(&gpu, &crate::ops::SCATTER_ND, vec![("reduction", s("add"))], &ins).unwrap();
        assert_eq!(shape, vec![v, h]);
        close(&got, &want, "ScatterND add");
        // an out-of-range index writes nothing (and does not fault)
        let ins = [In("x", DType::F32, vec![4], vec![1.0; 4], false), In("i", DType::I64, vec![3, 1], vec![1.0, 9.0, -6.0], false), In("u", DType::F32, vec![3], vec![5.0, 6.0, 7.0], false)];
        let (_, got) = run(&gpu, &crate::ops::SCATTER_ND, vec![], &ins).unwrap();
        close(&got, &[1.0, 5.0, 1.0, 1.0], "out of range");
    }

    #[test]
    fn gather_counts_negative_indices_from_the_end() {
        let gpu = gpu();
        let (r, c) = (5, 4);
        let data = noise(r * c, 6);
        let idx = vec![0.0, -1.0, 3.0, -5.0, 2.0, 7.0];
        for axis in [0usize, 1] {
            let dim = [r, c][axis];
            let pick = |k: f64| -> Option<usize> {
                let k = if k < 0.0 { k + dim as f64 } else { k };
                (k >= 0.0 && k < dim as f64).then_some(k as usize)
            };
            // indices [2, 3]
            let mut want = Vec::new();
            let shape = if axis == 0 { vec![2, 3, c] } else { vec![r, 2, 3] };
            if axis == 0 {
                for &k in &idx {
                    for j in 0..c {
                        want.push(pick(k).map_or(0.0, |k| data[k * c + j]));
                    }
                }
            } else {
                for i in 0..r {
                    for &k in &idx {
                        want.push(pick(k).map_or(0.0, |k| data[i * c + k]));
                    }
                }
            }
            let ins = [In("x", DType::F32, vec![r, c], data.clone(), false), In("i", DType::I64, vec![2, 3], idx.clone(), false)];
            let (got_shape, got) = run(&gpu, &crate::ops::GATHER, vec![("axis", AttrValue::Int(axis as i64))], &ins).unwrap();
            assert_eq!(got_shape, shape);
            close(&got, &want, &format!("Gather axis {axis}"));
        }
    }

    #[test]
    fn pad_and_slice_of_index_maps() {
        // the Pad and Slice gradients move an int64 index map: every mode, negative steps
        let gpu = gpu();
        let (h, w) = (3, 4);
        let x: Vec<f64> = (0..h * w).map(|k| k as f64 + 1.0).collect();
        let pads = [1i64, 3, 2, 2]; // begins then ends
        let (oh, ow) = (h + 3, w + 5);
        for mode in ["constant", "reflect", "edge", "wrap"] {
            let map = |j: i64, n: i64| -> Option<i64> {
                match mode {
                    "constant" => (0..n).contains(&j).then_some(j),
                    "edge" => Some(j.clamp(0, n - 1)),
                    "wrap" => Some(j.rem_euclid(n)),
                    _ => {
                        let p = 2 * (n - 1);
                        let j = j.rem_euclid(p);
                        Some(if j >= n { p - j } else { j })
                    }
                }
            };
            let mut want = Vec::new();
            for i in 0..oh as i64 {
                for j in 0..ow as i64 {
                    want.push(match (map(i - pads[0], h as i64), map(j - pads[1], w as i64)) {
                        (Some(a), Some(b)) => x[(a * w as i64 + b) as usize],
                        _ => 0.0,
                    });
                }
            }
            let ins = [
                In("x", DType::I64, vec![h, w], x.clone(), false),
                In("p", DType::I64, vec![4], pads.iter().map(|&p| p as f64).collect(), true),
                In("v", DType::I64, vec![], vec![0.0], true),
            ];
            let (shape, got) = run(&gpu, &crate::ops::PAD, vec![("mode", s(mode))], &ins).unwrap();
            assert_eq!(shape, vec![oh, ow], "{mode}");
            close(&got, &want, mode);
        }
        // Slice: a reversed, strided axis and a clamped end
        let (d0, d1) = (7usize, 5usize);
        let x: Vec<f64> = (0..d0 * d1).map(|k| k as f64).collect();
        let (starts, ends, axes, steps) = ([-1i64, 1], [-100i64, 1000], [0i64, 1], [-2i64, 2]);
        let rows: Vec<i64> = {
            let (s0, e0) = slice_bounds(d0 as i64, starts[0], ends[0], steps[0]);
            let mut v = vec![];
            let mut i = s0;
            while i > e0 {
                v.push(i);
                i += steps[0];
            }
            v
        };
        let cols: Vec<i64> = (1..d1 as i64).step_by(2).collect();
        let want: Vec<f64> = rows.iter().flat_map(|&r| cols.iter().map(move |&c| (r * d1 as i64 + c) as f64)).collect();
        let f = |v: &[i64]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
        let ins = [
            In("x", DType::I64, vec![d0, d1], x, false),
            In("s", DType::I64, vec![2], f(&starts), true),
            In("e", DType::I64, vec![2], f(&ends), true),
            In("a", DType::I64, vec![2], f(&axes), true),
            In("t", DType::I64, vec![2], f(&steps), true),
        ];
        let (shape, got) = run(&gpu, &crate::ops::SLICE, vec![], &ins).unwrap();
        assert_eq!(shape, vec![rows.len(), cols.len()]);
        close(&got, &want, "slice");
    }

    #[test]
    fn concat_of_more_inputs_than_bindings() {
        // Concat's gradient is a Split and the zoo concatenates 64 tensors: one launch per part
        let gpu = gpu();
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"];
        let parts: Vec<Vec<f64>> = (0..names.len()).map(|k| noise(2 * (k % 3 + 1) * 3, k as u64 + 10)).collect();
        let ins: Vec<In> = names.iter().zip(&parts).enumerate().map(|(k, (n, v))| In(n, DType::F32, vec![2, k % 3 + 1, 3], v.clone(), false)).collect();
        let (shape, got) = run(&gpu, &crate::ops::CONCAT, vec![("axis", AttrValue::Int(-2))], &ins).unwrap();
        let total: usize = (0..names.len()).map(|k| k % 3 + 1).sum();
        assert_eq!(shape, vec![2, total, 3]);
        let mut want = Vec::new();
        for b in 0..2 {
            for (k, v) in parts.iter().enumerate() {
                let m = k % 3 + 1;
                want.extend_from_slice(&v[b * m * 3..(b + 1) * m * 3]);
            }
        }
        close(&got, &want, "concat");
    }

    #[test]
    fn trilu_reads_a_device_k() {
        // k computed on the device (not a constant): read from its buffer
        let gpu = gpu();
        let (r, c) = (4usize, 5usize);
        let x: Vec<f64> = (0..r * c).map(|k| k as f64 + 1.0).collect();
        for (upper, k) in [(1i64, -1i64), (0, 2), (1, 7), (0, -9)] {
            let want: Vec<f64> = (0..r * c).map(|e| {
                let d = (e % c) as i64 - (e / c) as i64;
                if (upper == 1 && d >= k) || (upper == 0 && d <= k) { x[e] } else { 0.0 }
            }).collect();
            let ins = [In("x", DType::F32, vec![r, c], x.clone(), false), In("k", DType::I64, vec![], vec![k as f64], false)];
            let (_, got) = run(&gpu, &crate::ops::TRILU, vec![("upper", AttrValue::Int(upper))], &ins).unwrap();
            close(&got, &want, &format!("upper {upper} k {k}"));
        }
    }
}

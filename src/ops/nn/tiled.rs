//! The tiled matrix product the nn kernels share (`shaders/exec/gemm.wgsl`):
//! MatMul, Gemm and the convolutions (as implicit GEMMs) differ only in how
//! they read A and B and where a result goes, which they give as WGSL
//! functions. Large K with few output tiles is split over workgroups
//! (split-K) and summed by a second launch, so the device stays busy and no
//! invocation runs an unbounded loop alone.
use crate::exec::kernel::{self as kern, Bind, Elem, Launch, Limits, Lowered};
use std::fmt::Write;

const TEMPLATE: &str = include_str!("../../../shaders/exec/gemm.wgsl");

/// Rows and columns of C one workgroup computes (the template's `TILE`).
const TILE: usize = 32;

/// A batched product `C[b] = A[b] · B[b]` described by its accessors.
pub(crate) struct TiledGemm {
    /// What the launches compute, for errors and profiles.
    pub label: String,
    /// Independent products.
    pub batch: usize,
    /// Rows of A and C.
    pub m: usize,
    /// Columns of B and C.
    pub n: usize,
    /// The contracted length.
    pub k: usize,
    /// The tensors, in binding order: WGSL name, element type, binding.
    pub binds: Vec<(String, Elem, Bind)>,
    /// Body of `fn load_a(b: u32, m: u32, k: u32) -> f32` (called with m < M, k < K).
    pub load_a: String,
    /// Body of `fn load_b(b: u32, k: u32, n: u32) -> f32` (k < K, n < N).
    pub load_b: String,
    /// Body of `fn epilogue(b: u32, m: u32, n: u32, v: f32)`: writes C's element.
    pub epilogue: String,
    /// Further WGSL functions the bodies call.
    pub helpers: String,
}

impl TiledGemm {
    /// The launches (one, or a split-K product and its sum), with their scratch.
    pub(crate) fn lower(mut self, limits: &Limits) -> Result<Lowered, String> {
        let tiles_n = self.n.div_ceil(TILE).max(1);
        let tiles_m = self.m.div_ceil(TILE).max(1);
        let max = limits.max_workgroups.max(1) as usize;
        if tiles_n > max || tiles_m > max {
            return Err(format!("a {}×{} product needs more than the adapter's {max} workgroups per dimension", self.m, self.n));
        }
        // Split K when the output tiles alone leave the device idle and K is long.
        let target = if limits.cpu { 16 } else { 256 };
        let groups = tiles_n * tiles_m * self.batch.max(1);
        let k_steps = self.k.div_ceil(TILE).max(1);
        let mut split = 1usize;
        if groups < target && k_steps >= 8 {
            split = target.div_ceil(groups).min(k_steps / 4).max(1);
        }
        // A bounded serial loop per invocation: at most 4096 K steps per part.
        split = split.max(k_steps.div_ceil(128));
        while self.batch.max(1) * split > max && split > 1 {
            split -= 1;
        }
        if self.batch.max(1) * split > max {
            return Err(format!("{} products need more than the adapter's {max} workgroups per dimension", self.batch));
        }
        let kchunk = k_steps.div_ceil(split) * TILE;
        let split = self.k.div_ceil(kchunk).max(1);
        let partial = split > 1;
        let mut lowered = Lowered::default();
        if partial {
            let elems = split.checked_mul(self.batch).and_then(|v| v.checked_mul(self.m)).and_then(|v| v.checked_mul(self.n)).ok_or("the split-K scratch overflows")?;
            lowered.scratch.push((Elem::F32, elems.max(1)));
            self.binds.push(("partial".into(), Elem::F32, Bind::Scratch(0)));
        }
        let decls: Vec<(&str, Elem)> = self.binds.iter().map(|(n, e, _)| (n.as_str(), *e)).collect();
        let bindings = kern::bindings(&decls);
        let binds: Vec<Bind> = self.binds.iter().map(|b| b.2).collect();
        let (m, n, batch) = (self.m, self.n, self.batch.max(1));
        let mut functions = String::new();
        let _ = writeln!(functions, "fn load_a(b: u32, m: u32, k: u32) -> f32 {{\n{}\n}}", self.load_a);
        let _ = writeln!(functions, "fn load_b(b: u32, k: u32, n: u32) -> f32 {{\n{}\n}}", self.load_b);
        let _ = writeln!(functions, "fn epilogue(b: u32, m: u32, n: u32, v: f32) {{\n{}\n}}", self.epilogue);
        if partial {
            let _ = writeln!(functions, "fn store(b: u32, part: u32, m: u32, n: u32, v: f32) {{\n    partial[((part * {batch}u + b) * {m}u + m) * {n}u + n] = v;\n}}");
        } else {
            let _ = writeln!(functions, "fn store(b: u32, part: u32, m: u32, n: u32, v: f32) {{\n    epilogue(b, m, n, v);\n}}");
        }
        functions.push_str(&self.helpers);
        let wgsl = TEMPLATE
            .replace("{{BINDINGS}}", &bindings)
            .replace("{{M}}", &m.to_string())
            .replace("{{N}}", &n.to_string())
            .replace("{{K}}", &self.k.to_string())
            .replace("{{KCHUNK}}", &kchunk.to_string())
            .replace("{{KSPLIT}}", &split.to_string())
            .replace("{{FUNCTIONS}}", &functions);
        lowered.launches.push(Launch { label: self.label.clone(), wgsl, binds: binds.clone(), groups: [tiles_n as u32, tiles_m as u32, (batch * split) as u32] });
        if partial {
            let total = batch * m * n;
            let body = format!(
                "    let b = i / {mn}u;\n    let m = (i / {n}u) % {m}u;\n    let n = i % {n}u;\n    var s = 0.0;\n    for (var p = 0u; p < {split}u; p++) {{ s += partial[p * {total}u + i]; }}\n    epilogue(b, m, n, s);",
                mn = m * n
            );
            let mut f = String::new();
            let _ = writeln!(f, "fn epilogue(b: u32, m: u32, n: u32, v: f32) {{\n{}\n}}", self.epilogue);
            f.push_str(&self.helpers);
            let wgsl = format!("{bindings}{f}{}", kern::elementwise_main(total, &body));
            lowered.launches.push(Launch { label: format!("{} (split-K sum)", self.label), wgsl, binds, groups: kern::groups_for(total, limits) });
        }
        Ok(lowered)
    }
}

/// Runs one node on the executor (lavapipe in CI) for the kernels' unit tests.
#[cfg(all(test, feature = "gpu"))]
pub(crate) mod testing {
    use crate::exec::device::{limits, Executor, PipelineCache};
    use crate::ir::{self, AttrValue, DType, Dim, NodeParts, Parts, TypeDecl};

    /// A float32 input of the node: its shape and values.
    pub(crate) type Input<'a> = (&'a [usize], &'a [f32]);

    /// The node `op` with `attrs` over float32 `inputs` (`None`: absent), on
    /// the executor; returns each output's values and shape.
    pub(crate) fn run_node(op: &str, attrs: Vec<(&str, AttrValue)>, inputs: &[Option<Input>], outputs: usize) -> Result<Vec<(Vec<f32>, Vec<usize>)>, String> {
        run_node_timed(op, attrs, inputs, outputs, 0).map(|r| r.0)
    }

    /// [`run_node`], then `reps` more runs; also returns the seconds per run of those.
    pub(crate) fn run_node_timed(op: &str, attrs: Vec<(&str, AttrValue)>, inputs: &[Option<Input>], outputs: usize, reps: usize) -> Result<(Vec<(Vec<f32>, Vec<usize>)>, f64), String> {
        let gpu = crate::runtime::Gpu::open(None).map_err(|e| e.to_string())?;
        let names: Vec<String> = (0..inputs.len()).map(|k| if inputs[k].is_some() { format!("in{k}") } else { String::new() }).collect();
        let outs: Vec<String> = (0..outputs).map(|k| format!("out{k}")).collect();
        let parts = Parts {
            name: "unit".into(),
            inputs: inputs
                .iter()
                .zip(&names)
                .filter_map(|(i, n)| i.map(|(s, _)| (n.clone(), Some(TypeDecl { dtype: Some(DType::F32), shape: Some(s.iter().map(|&d| Dim::Known(d as i64)).collect()) }))))
                .collect(),
            outputs: outs.iter().map(|n| (n.clone(), None)).collect(),
            nodes: vec![NodeParts { name: "node".into(), op_type: op.into(), inputs: names.clone(), outputs: outs.clone(), attrs: attrs.into_iter().map(|(a, v)| (a.to_string(), v)).collect(), ..Default::default() }],
            ..Default::default()
        };
        let how = ir::Resolve { path: "unit.onnx".into(), opset: 21, producer: String::new(), body: false, keep_order: true, infer: true };
        let g = ir::resolve(parts, &how).map_err(|e| e.to_string())?;
        let program = crate::exec::plan(g, limits(&gpu)).map_err(|e| e.to_string())?;
        let mut cache = PipelineCache::default();
        let mut exec = Executor::new(&gpu, program, &mut cache, 1).map_err(|e| e.to_string())?;
        for (i, n) in inputs.iter().zip(&names) {
            if let Some((_, v)) = i {
                exec.write_f32(n, v).map_err(|e| e.to_string())?;
            }
        }
        exec.run().map_err(|e| e.to_string())?;
        let start = std::time::Instant::now();
        for _ in 0..reps {
            exec.run().map_err(|e| e.to_string())?;
        }
        let per_run = start.elapsed().as_secs_f64() / reps.max(1) as f64;
        let results: Result<Vec<_>, String> = outs.iter()
            .map(|n| {
                let v = exec.read_f32(n).map_err(|e| e.to_string())?;
                let s = exec.program().slot(n).and_then(|s| s.info.as_ref()).map(|i| i.shape.clone()).unwrap_or_default();
                Ok((v, s))
            })
            .collect();
        Ok((results?, per_run))
    }

    /// Deterministic values in [-1, 1).
    pub(crate) fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// Asserts `got` matches `want` within a float32 summation tolerance.
    pub(crate) fn assert_close(got: &[f32], want: &[f64], what: &str) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!((g as f64 - w).abs() <= 1e-4 + 1e-4 * w.abs(), "{what}: element {i}: got {g}, want {w}");
        }
    }
}

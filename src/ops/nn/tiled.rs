//! The tiled matrix product the nn kernels share (`shaders/exec/gemm.wgsl`):
//! MatMul, Gemm and the convolutions (as implicit GEMMs) differ only in how
//! they read A and B and where a result goes, which they give as WGSL
//! functions. Large K with few output tiles is split over workgroups
//! (split-K) and summed by a second launch, so the device stays busy and no
//! invocation runs an unbounded loop alone.
#![allow(clippy::too_many_arguments)]
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
    /// A GPU gets the workgroup-tiled kernel; a CPU adapter (lavapipe), where
    /// every shared-memory access and barrier costs as much as a storage
    /// access, a register-blocked one: each invocation its own block of C,
    /// no workgroup memory.
    pub(crate) fn lower(mut self, limits: &Limits) -> Result<Lowered, String> {
        if self.m == 0 || self.n == 0 || self.batch == 0 {
            return Ok(Lowered::default());
        }
        let blocked = limits.cpu;
        let (rm, rn) = BLOCK;
        let tiles_n = self.n.div_ceil(TILE).max(1);
        let tiles_m = self.m.div_ceil(TILE).max(1);
        let max = limits.max_workgroups.max(1) as usize;
        if !blocked && (tiles_n > max || tiles_m > max) {
            return Err(format!("a {}×{} product needs more than the adapter's {max} workgroups per dimension", self.m, self.n));
        }
        let blocks = self.m.div_ceil(rm).max(1) * self.n.div_ceil(rn).max(1) * self.batch.max(1);
        // Split K when the output alone leaves the device idle and K is long.
        let (target, groups) = if blocked { (32, blocks.div_ceil(kern::WORKGROUP as usize)) } else { (256, tiles_n * tiles_m * self.batch.max(1)) };
        let k_steps = self.k.div_ceil(TILE).max(1);
        let mut split = 1usize;
        if groups < target && k_steps >= 8 {
            split = target.div_ceil(groups).min(k_steps / 4).max(1);
        }
        // A bounded serial loop per invocation: at most 4096 K steps per part.
        split = split.max(k_steps.div_ceil(128));
        while !blocked && self.batch.max(1) * split > max && split > 1 {
            split -= 1;
        }
        if !blocked && self.batch.max(1) * split > max {
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
        if blocked {
            let wgsl = format!("{bindings}{functions}{}", blocked_main(m, n, self.k, batch, split, kchunk, rm, rn));
            let threads = blocks * split;
            lowered.launches.push(Launch { label: self.label.clone(), wgsl, binds: binds.clone(), groups: kern::groups_for(threads, limits) });
        } else {
            lowered.launches.push(Launch { label: self.label.clone(), wgsl, binds: binds.clone(), groups: [tiles_n as u32, tiles_m as u32, (batch * split) as u32] });
        }
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

/// Rows and columns of C one invocation of the register-blocked kernel holds.
/// llvmpipe turns each lane's load into a scalar access, so the loads per
/// multiply-add (RM + RN per RM·RN) set the speed; the accumulators spill to
/// the stack, which costs whole-vector accesses only. Measured on lavapipe
/// (2 cores, 256³ MatMul and a 64-channel 56×56 3×3 Conv, noisy shared
/// machine): 4×4 0.3 / 0.45 GFLOP/s, 8×16 0.5–1.1 / 0.9–1.9, 8×32 0.9–1.4 /
/// 1.4–1.9, 16×32 1.5 / 1.2–1.35; the shared-memory tiles 0.4 / 0.8.
const BLOCK: (usize, usize) = (8, 32);

/// The register-blocked kernel: invocation i computes an `rm`×`rn` block of
/// C over one K part; blocks run along N fastest, then M, batch and part.
fn blocked_main(m: usize, n: usize, k: usize, batch: usize, split: usize, kchunk: usize, rm: usize, rn: usize) -> String {
    let (mb, nb) = (m.div_ceil(rm).max(1), n.div_ceil(rn).max(1));
    let total = mb * nb * batch * split;
    let mut body = format!(
        "    let nb = i % {nb}u;\n    let mb = (i / {nb}u) % {mb}u;\n    let b = (i / {mbnb}u) % {batch}u;\n    let part = i / {all}u;\n    let m0 = mb * {rm}u;\n    let n0 = nb * {rn}u;\n    let k_begin = part * {kchunk}u;\n    let k_end = min({k}u, k_begin + {kchunk}u);\n",
        mbnb = mb * nb,
        all = mb * nb * batch
    );
    // Rows and columns past the edge read a clamped (valid) element; their results are dropped.
    for r in 0..rm {
        body.push_str(&format!("    let ma{r} = min(m0 + {r}u, {}u);\n", m - 1));
    }
    for c in 0..rn {
        body.push_str(&format!("    let nb{c} = min(n0 + {c}u, {}u);\n", n - 1));
    }
    for r in 0..rm {
        for c in 0..rn {
            body.push_str(&format!("    var acc{r}_{c} = 0.0;\n"));
        }
    }
    body.push_str("    for (var kk = k_begin; kk < k_end; kk++) {\n");
    for r in 0..rm {
        body.push_str(&format!("        let a{r} = load_a(b, ma{r}, kk);\n"));
    }
    for c in 0..rn {
        body.push_str(&format!("        let b{c} = load_b(b, kk, nb{c});\n"));
    }
    for r in 0..rm {
        for c in 0..rn {
            body.push_str(&format!("        acc{r}_{c} = fma(a{r}, b{c}, acc{r}_{c});\n"));
        }
    }
    body.push_str("    }\n");
    for r in 0..rm {
        for c in 0..rn {
            body.push_str(&format!("    if (m0 + {r}u < {m}u && n0 + {c}u < {n}u) {{ store(b, part, m0 + {r}u, n0 + {c}u, acc{r}_{c}); }}\n"));
        }
    }
    kern::elementwise_main(total, &body)
}

/// Runs one node on the executor (lavapipe in CI) for the kernels' unit tests.
#[cfg(all(test, feature = "gpu"))]
pub(crate) mod testing {
    use crate::exec::device::{limits, Executor, PipelineCache};
    use crate::ir::{self, AttrValue, DType, Dim, NodeParts, Parts, TypeDecl};

    /// A float32 input of the node: its shape and values.
    pub(crate) type Input<'a> = (&'a [usize], &'a [f32]);

    /// Each output's values and shape.
    pub(crate) type Outputs = Vec<(Vec<f32>, Vec<usize>)>;

    /// The node `op` with `attrs` over float32 `inputs` (`None`: absent), on
    /// the executor; returns each output's values and shape.
    pub(crate) fn run_node(op: &str, attrs: Vec<(&str, AttrValue)>, inputs: &[Option<Input>], outputs: usize) -> Result<Outputs, String> {
        run_node_timed(op, attrs, inputs, outputs, 0, None).map(|r| r.0)
    }

    /// [`run_node`] with the kernels chosen as for a CPU adapter (`cpu`) or a GPU, whatever the adapter is.
    pub(crate) fn run_node_as(op: &str, attrs: Vec<(&str, AttrValue)>, inputs: &[Option<Input>], outputs: usize, cpu: bool) -> Result<Outputs, String> {
        run_node_timed(op, attrs, inputs, outputs, 0, Some(cpu)).map(|r| r.0)
    }

    /// [`run_node`], then `reps` more runs; also returns the seconds per run of those.
    pub(crate) fn run_node_timed(op: &str, attrs: Vec<(&str, AttrValue)>, inputs: &[Option<Input>], outputs: usize, reps: usize, cpu: Option<bool>) -> Result<(Outputs, f64), String> {
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
        let mut lim = limits(&gpu);
        if let Some(cpu) = cpu {
            lim.cpu = cpu;
        }
        let program = crate::exec::plan(g, lim).map_err(|e| e.to_string())?;
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

/// The zoo's step graphs (forward and backward): every node of the nn ops
/// with kernels lowers, and its WGSL validates on the device.
#[cfg(all(test, feature = "gpu"))]
mod zoo {
    use crate::exec::kernel::{Elem, KernelCtx, TensorInfo};
    use crate::ir::Dim;
    use crate::ops::{self, OpDef};
    use std::collections::HashMap;

    #[test]
    fn step_graph_kernels_lower_to_valid_wgsl() {
        let ours: [&OpDef; 10] = [&ops::MAT_MUL, &ops::GEMM, &ops::CONV, &ops::CONV_TRANSPOSE, &ops::MAX_POOL, &ops::AVERAGE_POOL, &ops::GLOBAL_AVERAGE_POOL, &ops::GLOBAL_MAX_POOL, &ops::SOFTMAX, &ops::LOG_SOFTMAX];
        // Conv stems, strided and depthwise convolutions, pools with Indices and
        // ceil_mode, ConvTranspose forward, Gemm with transposes, attention's Softmax.
        let models = ["resnet18.onnx.gz", "mobilenet_v2.onnx.gz", "timm_nfnet.onnx", "instancenorm_convt.onnx", "convnext_block.onnx", "bn1d_mlp.onnx", "hf_bert.onnx"];
        let gpu = crate::runtime::Gpu::open(None).unwrap();
        let limits = crate::exec::device::limits(&gpu);
        let mut texts: HashMap<String, String> = HashMap::new();
        let mut lowered = HashMap::<&str, usize>::new();
        for name in models {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/zoo").join(name);
            let model = crate::onnx::load_model(&path).unwrap();
            let opts = crate::rewrite::Options {
                loss: crate::rewrite::Loss::Mse,
                config: crate::optim::Config::defaults(crate::optim::Algorithm::Adamp),
                detect: crate::optim::Detect::Auto,
                plan: None,
                gradients: true,
            };
            let g = crate::rewrite::gradient_graph(&model, &opts).unwrap().graph;
            // Symbolic dims (the batch) are 2.
            let shapes: HashMap<String, Vec<usize>> = g
                .inputs
                .iter()
                .filter(|&&v| g.values[v].initializer.is_none())
                .filter_map(|&v| Some((g.values[v].name.clone(), g.values[v].shape.as_ref()?.iter().map(|d| if let Dim::Known(k) = d { *k as usize } else { 2 }).collect())))
                .collect();
            let sg = crate::exec::specialize(&g, &shapes).unwrap();
            for n in &sg.nodes {
                let Some(def) = n.def.filter(|d| ours.contains(d)) else { continue };
                let info = |v: Option<usize>| -> Option<TensorInfo> {
                    let val = &sg.values[v?];
                    let shape: Option<Vec<usize>> = val.shape.as_ref()?.iter().map(|d| d.known().map(|k| k as usize)).collect();
                    Some(TensorInfo { elem: Elem::of(val.dtype?)?, shape: shape? })
                };
                let ctx = KernelCtx {
                    node: n,
                    inputs: n.inputs.iter().map(|v| info(*v)).collect(),
                    outputs: n.outputs.iter().map(|v| info(*v)).collect(),
                    host: vec![None; n.inputs.len()],
                    limits,
                    stream: 0,
                    opset: sg.opset,
                };
                let kernel = def.kernel.unwrap();
                let l = kernel(&ctx).unwrap_or_else(|e| panic!("{name}: node {} ({}): {e}", n.name, n.op_type));
                *lowered.entry(def.name).or_default() += 1;
                for launch in l.launches {
                    texts.entry(launch.wgsl).or_insert_with(|| format!("{name}: {}", launch.label));
                }
            }
        }
        // The zoo has no GlobalMaxPool, and MSE no LogSoftmax.
        for def in ours.iter().filter(|d| !std::ptr::eq(**d, &ops::GLOBAL_MAX_POOL) && !std::ptr::eq(**d, &ops::LOG_SOFTMAX)) {
            assert!(lowered.get(def.name).is_some_and(|&c| c > 0), "no {} in the step graphs", def.name);
        }
        for (text, what) in &texts {
            let scope = gpu.device.push_error_scope(wgpu::ErrorFilter::Validation);
            let _module = gpu.device.create_shader_module(wgpu::ShaderModuleDescriptor { label: None, source: wgpu::ShaderSource::Wgsl(text.as_str().into()) });
            if let Some(e) = pollster::block_on(scope.pop()) {
                panic!("{what}: the WGSL does not validate: {e}");
            }
        }
    }
}

//! One training step of every zoo model on the wgpu adapter (lavapipe in CI)
//! against the same step in onnxruntime (the rewrite's ONNX step graph, which
//! the `rewrite_ort` tests check against PyTorch), from the same inputs
//! (tests/py/exec_check.py makes them; Dropout is made the identity in both,
//! since the two runtimes draw different masks).
//!
//! Kink decisions (comparison results, MaxPool indices) are the device's on
//! both sides; see [`decisions`].
//!
//! Tolerances (float32 on both sides, different summation orders):
//! - the loss within 1e-4 relative;
//! - each gradient within 5e-3 of its tensor's largest magnitude (floored at
//!   1e-4 of the model's largest gradient, so a gradient that is zero in exact
//!   math compares on the model's scale): one rounding per accumulated term of
//!   a K-term sum is ~K·6e-8, and K reaches 5·10^4 in these graphs ([`GRAD_TOL`]);
//! - each updated parameter within 1e-5·max|p| + 1e-6 plus what the gradient
//!   tolerance dg implies for one Adam step at step 1, lr·g/(|g| + eps):
//!   lr·min(2.01, 2·dg/|g|) (a gradient that is noise may flip its sign), plus
//!   what those allowances imply through AdamP's projection of the slice
//!   ([`projection_slack`]);
//! - BatchNorm statistics within 1e-4 relative of their tensor's largest.
use adamp_graph::optim::{Algorithm, Config, Detect, Label};
use adamp_graph::rewrite::{self, Loss, Options};
use adamp_graph::runtime::Gpu;
use adamp_graph::train::step::{Array, ArrayData, Trainer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_py(args: &[&str]) -> Result<Value, String> {
    crate::common::py::call("exec_check.py", args)
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).expect("output file").chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn inputs(dir: &Path) -> Vec<Array> {
    let entries: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(dir.join("inputs.json")).expect("inputs.json")).expect("json");
    entries
        .iter()
        .map(|e| {
            let bytes = std::fs::read(dir.join(e["file"].as_str().expect("file"))).expect("input file");
            let dims: Vec<usize> = e["dims"].as_array().expect("dims").iter().map(|d| d.as_u64().expect("dim") as usize).collect();
            let data = match e["dtype"].as_str().expect("dtype") {
                "float32" => ArrayData::F32(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()),
                "int64" => ArrayData::I64(bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()),
                "int32" => ArrayData::I64(bytes.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64).collect()),
                other => panic!("dtype {other}"),
            };
            Array { name: e["name"].as_str().expect("name").to_string(), dims, data }
        })
        .collect()
}

/// A gradient's tolerance, relative to its tensor's largest magnitude: a
/// float32 sum of K terms rounds to within K·6e-8 of its terms' scale, and the
/// step graphs here sum up to 5·10^4 terms (a bias gradient over N·H·W).
const GRAD_TOL: f64 = 5e-3;

fn max_abs(v: &[f32]) -> f64 {
    v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()))
}

/// The step's kink decisions: the results of float comparisons computed on
/// the device (the ReLU, Clip and ReLU6 gradients' masks) and MaxPool's
/// Indices. Where a compared value lies within rounding of the kink, two
/// float32 runtimes may decide differently, and each then differentiates a
/// different (correct) branch: one flipped element of a ReLU6 mask changes
/// every gradient upstream of it by ~1% (MobileNetV2 at 64x64 has one). So
/// onnxruntime is given ours (tests/py/exec_check.py checks that each one that
/// differs from its own is a near tie), and the rest is compared strictly.
/// Each with whether it is a bool (a comparison) or indices (MaxPool).
fn decisions(g: &adamp_graph::ir::Graph) -> Vec<(String, bool)> {
    use adamp_graph::ops;
    let comparisons = [&ops::GREATER, &ops::GREATER_OR_EQUAL, &ops::LESS, &ops::LESS_OR_EQUAL, &ops::EQUAL];
    // (the gradient graph leaves some dtypes to inference: unknown counts as float)
    let float = |v: Option<usize>| v.is_some_and(|v| matches!(g.values[v].dtype, None | Some(adamp_graph::ir::DType::F32)));
    let mut out = Vec::new();
    for n in &g.nodes {
        let picked = if comparisons.iter().any(|d| n.is(d)) && float(n.input(0)) {
            n.output(0).map(|v| (v, true))
        } else if n.is(&ops::MAX_POOL) {
            n.output(1).map(|v| (v, false))
        } else {
            None
        };
        if let Some((v, is_bool)) = picked.filter(|&(v, _)| !g.values[v].is_const) {
            out.push((g.values[v].name.clone(), is_bool));
        }
    }
    out
}

/// Writes the watched decisions for tests/py/exec_check.py (bools as bytes,
/// indices as int64) with decisions.json.
fn write_decisions(trainer: &Trainer, names: &[(String, bool)], dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let mut listing = Vec::new();
    for (k, (name, is_bool)) in names.iter().enumerate() {
        let is_bool = *is_bool;
        let values = trainer.output_ints(name).map_err(|e| e.to_string())?;
        let dims = trainer.output_dims(name).ok_or_else(|| format!("decision '{name}' has no shape"))?;
        let bytes: Vec<u8> = if is_bool { values.iter().map(|&x| u8::from(x != 0)).collect() } else { values.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let file = format!("d_{k}.bin");
        std::fs::write(dir.join(&file), bytes).map_err(|e| e.to_string())?;
        listing.push(serde_json::json!({"name": name, "dtype": if is_bool { "bool" } else { "int64" }, "dims": dims, "file": file}));
    }
    std::fs::write(dir.join("decisions.json"), serde_json::to_string(&listing).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// Per element, the projection's share of an update's tolerance in units of
/// lr: |p̂_i|·Σ_j du_j·|p̂_j| over element i's slice (along the label's axis,
/// the whole tensor for `layer`; both for the runtime test, which may pick
/// either), with p̂ the slice's unit direction.
fn projection_slack(spec: &adamp_graph::optim::TensorSpec, label: Label, p: &[f32], du: &[f64]) -> Vec<f64> {
    let per_slice = |axis: usize| -> Vec<f64> {
        let dims = &spec.shape;
        if axis >= dims.len() {
            return vec![0.0; p.len()];
        }
        let inner: usize = dims[axis + 1..].iter().product();
        let slice_of = |i: usize| (i / inner.max(1)) % dims[axis].max(1);
        let mut norm2 = vec![0.0f64; dims[axis].max(1)];
        for (i, &x) in p.iter().enumerate() {
            norm2[slice_of(i)] += (x as f64) * (x as f64);
        }
        let unit = |i: usize| (p[i] as f64).abs() / norm2[slice_of(i)].sqrt().max(1e-30);
        let mut sums = vec![0.0f64; norm2.len()];
        for i in 0..p.len() {
            sums[slice_of(i)] += du[i] * unit(i);
        }
        (0..p.len()).map(|i| unit(i) * sums[slice_of(i)]).collect()
    };
    let whole = || -> Vec<f64> {
        let norm = p.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt().max(1e-30);
        let sum: f64 = p.iter().zip(du).map(|(&x, &d)| d * (x as f64).abs() / norm).sum();
        p.iter().map(|&x| (x as f64).abs() / norm * sum).collect()
    };
    match label {
        Label::None => vec![0.0; p.len()],
        Label::Channel { axis } => per_slice(axis),
        Label::Layer => whole(),
        Label::Runtime => per_slice(0).into_iter().zip(whole()).map(|(a, b)| a.max(b)).collect(),
    }
}

/// One model: `Ok(summary)` or `Err(what disagrees)`.
fn check(gpu: &Gpu, model: &Path, work: &Path) -> Result<String, String> {
    let name = model.file_name().and_then(|n| n.to_str()).unwrap_or("model").replace(".onnx.gz", "").replace(".onnx", "");
    let dir = work.join(&name);
    // onnxruntime and the Python side read plain files: inflate through our loader.
    let loaded = adamp_graph::onnx::load_model(model).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let plain = dir.join("source.onnx");
    loaded.save(&plain).map_err(|e| e.to_string())?;
    // batch 4: at batch 2 a BatchNorm1d maps every feature to ±1, whatever its input, and the gradients before it vanish
    run_py(&["prepare", plain.to_str().unwrap_or_default(), dir.to_str().unwrap_or_default(), "4", "7"])?;
    let prepared = adamp_graph::onnx::load_model(&dir.join("model.onnx")).map_err(|e| e.to_string())?;
    let config = Config::defaults(Algorithm::Adamp);
    let lr = config.lr();
    let opts = Options { loss: Loss::Mse, config, detect: Detect::Auto, plan: None, gradients: true };
    let step = rewrite::rewrite(&prepared, &opts).map_err(|e| e.to_string())?;
    let step_path = dir.join("step.onnx");
    step.save(&step_path).map_err(|e| e.to_string())?;
    let mut trainer = Trainer::new(gpu, &prepared, &opts, 1).map_err(|e| e.to_string())?;
    let decisions = decisions(&trainer.gradient_graph().graph);
    trainer.watch(&decisions.iter().map(|d| d.0.clone()).collect::<Vec<_>>()).map_err(|e| e.to_string())?;
    let batch = inputs(&dir);
    let out = trainer.step(&batch, lr).map_err(|e| e.to_string())?;
    let decision_dir = dir.join("decisions");
    write_decisions(&trainer, &decisions, &decision_dir)?;
    let out_dir = dir.join("ort");
    let ran = run_py(&["run", step_path.to_str().unwrap_or_default(), dir.to_str().unwrap_or_default(), out_dir.to_str().unwrap_or_default(), decision_dir.to_str().unwrap_or_default()])?;
    let listing: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(out_dir.join("outputs.json")).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let reference: HashMap<String, Vec<f32>> =
        listing.iter().map(|e| (e["name"].as_str().unwrap_or_default().to_string(), read_f32(&out_dir.join(e["file"].as_str().unwrap_or_default())))).collect();
    if std::env::var("ADAMP_GRAPH_ZOO_DEBUG").is_ok() {
        eprintln!("{name}: {} decisions watched; onnxruntime: {ran}", decisions.len());
    }
    let mut problems = Vec::new();
    let not_ties: Vec<&str> = ran["not_ties"].as_array().map(|v| v.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
    if !not_ties.is_empty() {
        problems.push(format!("decisions that differ from onnxruntime's away from a tie: {}", not_ties.join("; ")));
    }
    let want_loss = reference["loss"][0] as f64;
    if ((out.loss as f64) - want_loss).abs() > 1e-4 * want_loss.abs().max(1e-6) {
        problems.push(format!("loss {} vs {want_loss}", out.loss));
    }
    let specs = trainer.specs().to_vec();
    let grads: Vec<(String, Vec<f32>)> = specs.iter().map(|s| Ok((s.name.clone(), trainer.output(&format!("{}.grad", s.name)).map_err(|e| e.to_string())?))).collect::<Result<_, String>>()?;
    let global = grads.iter().map(|(n, _)| max_abs(&reference[&format!("{n}.grad")])).fold(0.0, f64::max);
    if global.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
        return Err(format!("{name}: every reference gradient is zero: nothing is compared"));
    }
    let params = trainer.params().map_err(|e| e.to_string())?;
    let mut worst = 0.0f64;
    for (n, got) in &grads {
        let want = &reference[&format!("{n}.grad")];
        if std::env::var("ADAMP_GRAPH_ZOO_DEBUG").is_ok() {
            let diff = got.iter().zip(want).fold(0.0f64, |m, (&a, &b)| m.max(((a - b) as f64).abs()));
            eprintln!("{n}: max |ours| {:.3e}, max |ort| {:.3e}, max diff {diff:.3e}", max_abs(got), max_abs(want));
        }
        let scale = max_abs(want).max(1e-4 * global).max(1e-30);
        let err = got.iter().zip(want).fold(0.0f64, |m, (&a, &b)| m.max(((a - b) as f64).abs())) / scale;
        worst = worst.max(err);
        if err > GRAD_TOL || got.len() != want.len() {
            problems.push(format!("gradient of {n}: error {err:.2e} of its scale"));
        }
        let (p_got, p_want) = (&params[n], &reference[&format!("{n}.new")]);
        let p_scale = max_abs(p_want);
        // One Adam step at step 1 moves an element by lr·g/(|g| + eps): a
        // gradient error of dg moves it by up to lr·dg/|g| more, and never by
        // more than 2·lr (a sign flip of a gradient that is noise).
        let dg = GRAD_TOL * scale;
        let du: Vec<f64> = want.iter().map(|&g| (2.01f64).min(2.0 * dg / (g as f64).abs().max(1e-30))).collect();
        // AdamP's projection removes (p̂·u)p̂ per slice: an error du_j in u_j
        // moves element i of its slice by up to lr·|p̂_i|·Σ_j du_j·|p̂_j| more.
        let spec = specs.iter().find(|s| &s.name == n).ok_or_else(|| format!("no spec for {n}"))?;
        let coupled = projection_slack(spec, Label::of(opts.config.algorithm(), opts.detect, spec), p_want, &du);
        let bad = p_got.iter().zip(p_want).enumerate().filter(|&(i, (&a, &b))| {
            let d = ((a - b) as f64).abs();
            d > 1e-5 * p_scale + 1e-6 + lr * (du[i] + coupled[i])
        });
        let bad: Vec<_> = bad.collect();
        if std::env::var("ADAMP_GRAPH_ZOO_DEBUG").is_ok() {
            for (i, (a, b)) in bad.iter().take(4) {
                eprintln!("updated {n}[{i}]: ours {a} onnxruntime {b}, gradient {}, slack {} + {}", want[*i], du[*i], coupled[*i]);
            }
        }
        let count = bad.len();
        if count > 0 {
            problems.push(format!("updated {n}: {count} elements differ"));
        }
    }
    for (b, got) in trainer.buffers().map_err(|e| e.to_string())? {
        let want = &reference[&format!("{b}.new")];
        let scale = max_abs(want).max(1e-30);
        let err = got.iter().zip(want).fold(0.0f64, |m, (&a, &c)| m.max(((a - c) as f64).abs())) / scale;
        if err > 1e-4 {
            problems.push(format!("statistic {b}: error {err:.2e}"));
        }
    }
    if problems.is_empty() {
        Ok(format!(
            "{name}: loss {:.6}, {} tensors, largest gradient {global:.2e}, worst gradient error {worst:.1e} of its tensor's scale; {} of {} kink decisions differ from onnxruntime's own, each at a tie",
            out.loss,
            specs.len(),
            ran["flipped"],
            ran["decisions"]
        ))
    } else {
        Err(format!("{name}: {}", problems.join("; ")))
    }
}

/// The models CI runs: every normalization and op family of the step graphs
/// (BatchNorm 1-D/2-D, LayerNorm, GroupNorm, InstanceNorm, RMSNorm, weight
/// normalization, attention, grouped and transposed convolutions, residual
/// blocks), small enough for lavapipe in a debug build. `ADAMP_GRAPH_ZOO=all`
/// runs the whole zoo; any other value, the models whose file name holds it.
const CI_MODELS: &[&str] = &[
    "bn1d_mlp.onnx",
    "convnext_block.onnx",
    "cosine_embed.onnx",
    "densenet_block.onnx",
    "groupnorm_cnn.onnx",
    "helper_native_norms.onnx",
    "hf_bert_dynamo.onnx",
    "instancenorm_convt.onnx",
    "layernorm_mlp_op11.onnx",
    "llama_mlp.onnx",
    "post_ln_encoder.onnx",
    "resnext_block.onnx",
    "rmsnorm_mlp_dynamo.onnx",
    "weightnorm.onnx",
];

/// Beside the zoo, in every selection: no CI zoo model has a MaxPool, and
/// these small CNNs (Conv-BN-ReLU-MaxPool; MaxPool and AveragePool with
/// padding) put MaxPool's indices among the decisions compared.
const POOL_MODELS: &[&str] = &["fixtures/rewrite/train/cnn_bn.onnx", "fixtures/rewrite/ops/pooling.onnx"];

fn zoo() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/zoo"))
        .expect("zoo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".onnx") || p.to_string_lossy().ends_with(".onnx.gz"))
        .collect();
    v.sort();
    let selection = std::env::var("ADAMP_GRAPH_ZOO").ok();
    let only = selection.as_deref().filter(|&o| o != "all");
    let picked = |p: &PathBuf| only.is_none_or(|o| p.to_string_lossy().contains(o));
    if selection.is_none() {
        v.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| CI_MODELS.contains(&n)));
        assert_eq!(v.len(), CI_MODELS.len(), "a CI model is missing from fixtures/zoo");
    }
    v.retain(picked);
    v.extend(POOL_MODELS.iter().map(|p| root().join(p)).filter(picked));
    v
}

#[test]
fn zoo_steps_match_onnxruntime() {
    let gpu = Gpu::open(None).expect("a wgpu adapter (scripts/test.sh installs lavapipe)");
    let work = tempfile::tempdir().expect("tempdir");
    let models = zoo();
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    // two at a time: one model's Python side overlaps the other's device work
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(model) = models.get(i) else { break };
                let t0 = std::time::Instant::now();
                match check(&gpu, model, work.path()) {
                    Ok(s) => eprintln!("ok   {s} ({:.0} s)", t0.elapsed().as_secs_f64()),
                    Err(e) => {
                        let e = format!("{}: {e}", model.display());
                        eprintln!("FAIL {e}");
                        failures.lock().expect("lock").push(e);
                    }
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    assert!(failures.is_empty(), "{} zoo model(s) disagree with onnxruntime:\n{}", failures.len(), failures.join("\n"));
}

/// An arena larger than the adapter's largest buffer is split into pages, one
/// buffer each, no tensor across two: three training steps of the digits CNN
/// planned in 256 KiB buffers give bit for bit the losses and parameters of
/// the one-buffer run. A tensor larger than a page is an error naming it.
#[test]
fn paged_arena_trains_bit_identically() {
    let gpu = Gpu::open(None).expect("a wgpu adapter (scripts/test.sh installs lavapipe)");
    let model = adamp_graph::onnx::load_model(&root().join("fixtures/train/digits_cnn.onnx")).expect("the fixture loads");
    let config = Config::defaults(Algorithm::Adamp);
    let lr = config.lr();
    let opts = Options { loss: Loss::CrossEntropy, config, detect: Detect::Auto, plan: None, gradients: true };
    type Run = (usize, Vec<u32>, Vec<(String, Vec<u32>)>);
    let run = |limit: Option<u64>| -> Result<Run, String> {
        let mut t = Trainer::new(&gpu, &model, &opts, 3).map_err(|e| e.to_string())?;
        if let Some(bytes) = limit {
            t.limit_buffers(bytes).map_err(|e| e.to_string())?;
        }
        let data = adamp_graph::cli::train::dataset(&root().join("fixtures/data/digits_train.npz"), &t).map_err(|e| e.to_string())?;
        let batch = adamp_graph::train::run::gather(&data, &(0..32).collect::<Vec<_>>());
        let pages = t.memory(&batch).map_err(|e| e.to_string())?.arena_pages;
        let losses = (0..3).map(|_| t.step(&batch, lr).map(|o| o.loss.to_bits()).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
        let mut params: Vec<(String, Vec<u32>)> = t.params().map_err(|e| e.to_string())?.into_iter().map(|(k, v)| (k, v.iter().map(|x| x.to_bits()).collect())).collect();
        params.sort();
        Ok((pages, losses, params))
    };
    let (one, losses, params) = run(None).expect("the one-buffer run");
    let (many, paged_losses, paged_params) = run(Some(256 << 10)).expect("the paged run");
    assert_eq!(one, 1, "the digits step fits one buffer of the adapter");
    assert!(many >= 3, "the paged run spans {many} buffers");
    assert_eq!(losses, paged_losses, "losses differ between the one-buffer and the paged arena");
    assert!(params == paged_params, "parameters differ between the one-buffer and the paged arena");
    let err = run(Some(4 << 10)).expect_err("a tensor beyond a 4 KiB buffer");
    assert!(err.contains("tensor '") && err.contains("the adapter's buffers hold at most"), "{err}");
}

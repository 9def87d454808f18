//! One training step of every zoo model on the wgpu adapter (lavapipe in CI)
//! against the same step in onnxruntime (the rewrite's ONNX step graph, which
//! the `rewrite_ort` tests check against PyTorch), from the same inputs
//! (tests/py/exec_check.py makes them; Dropout is made the identity in both,
//! since the two runtimes draw different masks).
//!
//! Tolerances (float32 on both sides, different summation orders):
//! - the loss within 1e-4 relative;
//! - each gradient within 5e-3 of its tensor's largest magnitude (floored at
//!   1e-4 of the model's largest gradient, so a gradient that is zero in exact
//!   math compares on the model's scale): one rounding per accumulated term of
//!   a K-term sum is ~K·6e-8, and K reaches 5·10^4 in these graphs ([`GRAD_TOL`]);
//! - each updated parameter within 1e-5·max|p| + 1e-6 plus what the gradient
//!   tolerance dg implies for one Adam step at step 1, lr·g/(|g| + eps):
//!   lr·min(2.01, 2·dg/|g|) (a gradient that is noise may flip its sign);
//! - BatchNorm statistics within 1e-4 relative of their tensor's largest.
use adamp_graph::optim::{Algorithm, Config, Detect};
use adamp_graph::rewrite::{self, Loss, Options};
use adamp_graph::runtime::Gpu;
use adamp_graph::train::step::{Array, ArrayData, Trainer};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_py(args: &[&str]) -> Result<Value, String> {
    let python = std::env::var("ADAMP_GRAPH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = root().join("tests/py/exec_check.py");
    let out = Command::new(&python).arg(&script).args(args).output().map_err(|e| format!("cannot run {python} ({e}); set ADAMP_GRAPH_PYTHON (scripts/test.sh makes one)"))?;
    if !out.status.success() {
        return Err(format!("{python} {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("not JSON ({e})"))
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
    let out_dir = dir.join("ort");
    run_py(&["run", step_path.to_str().unwrap_or_default(), dir.to_str().unwrap_or_default(), out_dir.to_str().unwrap_or_default()])?;
    let listing: Vec<Value> = serde_json::from_str(&std::fs::read_to_string(out_dir.join("outputs.json")).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let reference: HashMap<String, Vec<f32>> =
        listing.iter().map(|e| (e["name"].as_str().unwrap_or_default().to_string(), read_f32(&out_dir.join(e["file"].as_str().unwrap_or_default())))).collect();

    let mut trainer = Trainer::new(gpu, &prepared, &opts, 1).map_err(|e| e.to_string())?;
    let batch = inputs(&dir);
    let out = trainer.step(&batch, lr).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
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
        let bad = p_got.iter().zip(p_want).zip(want).filter(|((&a, &b), &g)| {
            let d = ((a - b) as f64).abs();
            let move_tol = lr * (2.01f64).min(2.0 * dg / (g as f64).abs().max(1e-30));
            d > 1e-5 * p_scale + 1e-6 + move_tol
        });
        let count = bad.count();
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
        Ok(format!("{name}: loss {:.6}, {} tensors, largest gradient {global:.2e}, worst gradient error {worst:.1e} of its tensor's scale", out.loss, specs.len()))
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

fn zoo() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/zoo"))
        .expect("zoo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".onnx") || p.to_string_lossy().ends_with(".onnx.gz"))
        .collect();
    v.sort();
    match std::env::var("ADAMP_GRAPH_ZOO").ok().as_deref() {
        Some("all") => {}
        Some(only) => v.retain(|p| p.to_string_lossy().contains(only)),
        None => {
            v.retain(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| CI_MODELS.contains(&n)));
            assert_eq!(v.len(), CI_MODELS.len(), "a CI model is missing from fixtures/zoo");
        }
    }
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

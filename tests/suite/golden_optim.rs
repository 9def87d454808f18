//! Replays every optimizer trace in `fixtures/golden/optim/*.json` (official
//! adamp 0.3.0 and torch.optim, float32 CPU) through the WGSL kernels on
//! whatever adapter exists, with the reference's own detection (`runtime`).
//! A file dropped into that folder is picked up with no code change.
//!
//! Tolerance: |gpu - ref| <= 1e-5 * |ref| + 1e-6 * max|ref| per array. Scalars the
//! reference computes in double precision (1 - beta, 1 - dampening, the decay
//! factor, lr / bias correction) are computed the same way on the host, so what
//! remains is float32 rounding: lavapipe stays under 1e-6 (about 8 ulp). WGSL
//! allows 2.5 ulp for division and square root and lets compilers contract into
//! FMAs, and the traces run up to 8 steps that compound through the moments, so
//! other GPUs get up to 10x that margin. The absolute part covers entries that
//! cancel to near zero. `GOLDEN_DEBUG=1` prints every entry above 1e-5 relative.
use adamp_graph::plan::Projection;
use adamp_graph::optim::reference::Reference;
use adamp_graph::optim::{Algorithm, Config, Detect, Overrides, Projected, TensorSpec};
use adamp_graph::runtime::{DeviceOptimizer, Gpu, Tuning, Variant};
use serde_json::Value;

const RTOL: f32 = 1e-5;
const ATOL_OF_MAX: f32 = 1e-6;

pub(crate) fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

pub(crate) fn algorithm(name: &str) -> Algorithm {
    match name {
        "adamp" => Algorithm::Adamp,
        "sgdp" => Algorithm::Sgdp,
        "adam" => Algorithm::Adam,
        "adamw" => Algorithm::Adamw,
        "sgd" => Algorithm::Sgd,
        other => panic!("unknown optimizer '{other}'"),
    }
}

/// The case's resolved defaults as a configuration; options the backends do
/// not implement fail the test.
pub(crate) fn config(algo: Algorithm, d: &Value) -> Config {
    for unsupported in ["amsgrad", "maximize", "capturable", "differentiable"] {
        assert!(!d[unsupported].as_bool().unwrap_or(false), "option {unsupported} is not implemented");
    }
    let f = |k: &str| d[k].as_f64();
    let o = Overrides {
        lr: f("lr"),
        betas: d["betas"].as_array().map(|b| (b[0].as_f64().unwrap(), b[1].as_f64().unwrap())),
        eps: f("eps"),
        weight_decay: f("weight_decay"),
        momentum: f("momentum"),
        dampening: f("dampening"),
        nesterov: d["nesterov"].as_bool().unwrap_or(false),
        delta: f("delta"),
        wd_ratio: f("wd_ratio"),
    };
    Config::with(algo, &o).unwrap_or_else(|e| panic!("{}: {e}", algo.name()))
}

/// The trace's value of one of our state buffers (`Algorithm::state_names`):
/// torch.optim.SGD calls the momentum buffer `momentum_buffer`, adamp `momentum`.
pub(crate) fn reference_state<'a>(step: &'a Value, name: &str) -> Option<&'a Value> {
    let state = &step["state"];
    match name {
        "momentum" => state.get("momentum").or_else(|| state.get("momentum_buffer")),
        other => state.get(other),
    }
}

/// Every trace file, sorted.
pub(crate) fn traces() -> Vec<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/optim");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    assert!(files.len() >= 11, "golden traces missing from {}", dir.display());
    files
}

/// One step's results from a backend.
struct StepOut {
    param: Vec<f32>,
    state: Vec<Vec<f32>>,
    projected: Projected,
}

/// Replays every trace through a backend: `start(config, spec, initial)` makes
/// a stepper that takes a gradient and returns the step's results.
fn replay<'a>(backend: &str, start: &mut dyn FnMut(&Config, TensorSpec, &[f32]) -> Box<dyn FnMut(&[f32]) -> StepOut + 'a>) {
    for path in traces() {
        let case = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let algo = algorithm(d["optimizer"].as_str().unwrap());
        let config = config(algo, &d["defaults"]);
        let shape: Vec<usize> = d["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let initial = floats(&d["initial"]);
        let spec = TensorSpec { name: case.clone(), shape, projection: Projection::Runtime };
        let mut step_fn = start(&config, spec, &initial);
        let mut worst = 0f32;
        for (k, step) in d["steps"].as_array().unwrap().iter().enumerate() {
            let out = step_fn(&floats(&step["grad"]));
            worst = worst.max(close(&case, "param", k + 1, &out.param, &floats(&step["param"])));
            for (i, name) in algo.state_names().iter().enumerate() {
                let want = reference_state(step, name).unwrap_or_else(|| panic!("{case} step {}: no state '{name}' in the trace", k + 1));
                worst = worst.max(close(&case, name, k + 1, &out.state[i], &floats(want)));
            }
            let want = match step["projected"].as_str() {
                Some("channel") => Projected::Channel,
                Some("layer") => Projected::Layer,
                None => Projected::None,
                Some(other) => panic!("{case}: unknown projected view {other}"),
            };
            assert_eq!(out.projected, want, "{case} step {} ({backend}): projected view", k + 1);
        }
        eprintln!("{case} ({backend}): ok (worst relative error {worst:.2e})");
    }
}

pub(crate) fn close(case: &str, what: &str, step: usize, got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "{case} step {step} {what}: length");
    let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
    let mut worst = 0f32;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        let tol = RTOL * w.abs() + ATOL_OF_MAX * scale;
        assert!(err <= tol, "{case} step {step} {what}[{i}]: gpu {g} vs reference {w} (error {err:e} > {tol:e})");
        let r = err / (w.abs() + ATOL_OF_MAX * scale / RTOL).max(f32::MIN_POSITIVE);
        if std::env::var("GOLDEN_DEBUG").is_ok() && r > 1e-5 {
            eprintln!("  {case} step {step} {what}[{i}]: gpu {g:e} ref {w:e} scale {scale:e}");
        }
        worst = worst.max(r);
    }
    worst
}

#[test]
fn every_golden_trace_replays_on_the_gpu() {
    let gpu = Gpu::open(None).unwrap_or_else(|e| panic!("GPU tests need an adapter: {e}"));
    eprintln!("adapter: {}", gpu.describe());
    let gpu = &gpu;
    for (name, variant) in [("wgsl fused", Variant::Fused), ("wgsl rows", Variant::Rows)] {
        replay(name, &mut |config, spec, initial| {
            let tuning = Tuning { variant: Some(variant), ..Tuning::default() };
            let mut opt = DeviceOptimizer::new(gpu, config, Detect::Runtime, vec![spec], &[initial], tuning).unwrap();
            Box::new(move |grad| {
                opt.set_grads(&[grad]).unwrap();
                opt.step().unwrap();
                StepOut { param: opt.param(0).unwrap(), state: opt.state(0).unwrap(), projected: opt.projected().unwrap()[0] }
            })
        });
    }
}

#[test]
fn every_golden_trace_replays_through_the_float64_reference() {
    replay("reference", &mut |config, spec, initial| {
        let initial: Vec<f64> = initial.iter().map(|&x| x as f64).collect();
        let mut r = Reference::new(config, Detect::Runtime, vec![spec], &[&initial]).unwrap();
        let narrow = |v: &[f64]| v.iter().map(|&x| x as f32).collect::<Vec<f32>>();
        Box::new(move |grad| {
            let grad: Vec<f64> = grad.iter().map(|&x| x as f64).collect();
            let projected = r.step(&[&grad]).unwrap()[0];
            StepOut { param: narrow(r.param(0)), state: r.state(0).iter().map(|s| narrow(s)).collect(), projected }
        })
    });
}

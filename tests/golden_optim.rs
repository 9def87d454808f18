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
use adamp_graph::runtime::{Algorithm, Detect, DeviceOptimizer, Gpu, Hyper, Projected, TensorSpec};
use serde_json::Value;

const RTOL: f32 = 1e-5;
const ATOL_OF_MAX: f32 = 1e-6;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number") as f32).collect()
}

fn algorithm(name: &str) -> Algorithm {
    match name {
        "adamp" => Algorithm::Adamp,
        "sgdp" => Algorithm::Sgdp,
        "adam" => Algorithm::Adam,
        "adamw" => Algorithm::Adamw,
        "sgd" => Algorithm::Sgd,
        other => panic!("unknown optimizer '{other}'"),
    }
}

/// The case's resolved defaults; options the kernels do not implement fail the test.
fn hyper(algo: Algorithm, d: &Value) -> Hyper {
    for unsupported in ["amsgrad", "maximize", "capturable", "differentiable"] {
        assert!(!d[unsupported].as_bool().unwrap_or(false), "option {unsupported} is not implemented");
    }
    let mut h = Hyper::defaults(algo);
    let f = |k: &str, dflt: f64| d[k].as_f64().unwrap_or(dflt);
    h.lr = f("lr", h.lr);
    if let Some(b) = d["betas"].as_array() {
        h.beta1 = b[0].as_f64().unwrap();
        h.beta2 = b[1].as_f64().unwrap();
    }
    h.eps = f("eps", h.eps);
    h.weight_decay = f("weight_decay", h.weight_decay);
    h.momentum = f("momentum", h.momentum);
    h.dampening = f("dampening", h.dampening);
    h.delta = f("delta", h.delta);
    h.wd_ratio = f("wd_ratio", h.wd_ratio);
    h.nesterov = d["nesterov"].as_bool().unwrap_or(false);
    h
}

fn close(case: &str, what: &str, step: usize, got: &[f32], want: &[f32]) -> f32 {
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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/optim");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "json")).collect();
    files.sort();
    assert!(files.len() >= 11, "golden traces missing from {}", dir.display());
    for path in files {
        let case = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let algo = algorithm(d["optimizer"].as_str().unwrap());
        let h = hyper(algo, &d["defaults"]);
        let shape: Vec<usize> = d["shape"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        let initial = floats(&d["initial"]);
        let spec = TensorSpec { name: case.clone(), shape, projection: Projection::Runtime };
        let mut opt = DeviceOptimizer::new(&gpu, algo, Detect::Runtime, h, vec![spec], &[&initial], None).unwrap();
        let mut worst = 0f32;
        for (k, step) in d["steps"].as_array().unwrap().iter().enumerate() {
            let grad = floats(&step["grad"]);
            opt.set_grads(&[&grad]).unwrap();
            opt.step().unwrap();
            worst = worst.max(close(&case, "param", k + 1, &opt.param(0).unwrap(), &floats(&step["param"])));
            let state = opt.state(0).unwrap();
            let names: Vec<&str> = if algo.is_adam_family() { vec!["exp_avg", "exp_avg_sq"] } else { vec!["momentum_buffer", "momentum"] };
            let mut checked = 0;
            for (i, name) in names.iter().enumerate() {
                if let Some(want) = step["state"].get(*name) {
                    let got = &state[if algo.is_adam_family() { i } else { 0 }];
                    worst = worst.max(close(&case, name, k + 1, got, &floats(want)));
                    checked += 1;
                }
            }
            assert!(checked > 0, "{case}: no state checked at step {}", k + 1);
            let want = match step["projected"].as_str() {
                Some("channel") => Projected::Channel,
                Some("layer") => Projected::Layer,
                None => Projected::None,
                Some(other) => panic!("{case}: unknown projected view {other}"),
            };
            assert_eq!(opt.projected().unwrap()[0], want, "{case} step {}: projected view", k + 1);
        }
        eprintln!("{case}: ok (worst relative error {worst:.2e})");
    }
}

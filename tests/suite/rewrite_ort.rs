//! The training-step graph, executed by a peer runtime (onnxruntime, through
//! tests/py/rewrite_check.py) and checked against PyTorch.
//!
//! - `op_gradients`: every case in fixtures/rewrite/ops (any `*.json` dropped
//!   there is picked up): the step graph passes `onnx.checker` with full check,
//!   its loss and `<p>.grad` outputs match the PyTorch autograd values the
//!   generator recorded, and central finite differences of its loss.
//! - `training_matches_reference`: every case in fixtures/rewrite/train: K steps
//!   in onnxruntime, feeding `<name>.new` back, against K steps of the official
//!   adamp 0.3.0 / torch.optim: the losses and the parameters after each step.
//! - `zoo_models_train_in_onnxruntime`: every zoo model rewrites, passes the
//!   checker and trains two steps (batch 2, then 3 where it is symbolic) with
//!   every output finite.
//!
//! Python with numpy, onnx and onnxruntime is required: `$ADAMP_GRAPH_PYTHON`,
//! else `python3` (scripts/test.sh makes a venv with them). A missing module
//! fails the tests; they never skip.
//!
//! Tolerances (stated once here):
//! - PyTorch gradients: relative to the parameter's largest gradient (floored
//!   at 1e-3 of the case's largest, so a gradient that is zero in exact math,
//!   like a bias before BatchNorm, compares on the case's scale): 1e-6 for
//!   float64 cases (ONNX stores epsilons as float32 attributes, torch uses
//!   float64: a 1e-9 relative difference), 1e-4 for float32.
//! - Finite differences: float64, h = 1e-6·max(1, |x|): every sample within
//!   1e-6 of the case's gradient scale plus 1e-5 relative. float32,
//!   h = 1e-3·max(1, |x|): the loss rounds to ~1e-7, so a difference carries
//!   ~1e-4 of noise; 90% of the samples within 3e-4 + 2%, since a step of h
//!   can cross a ReLU or max-pool kink (the autograd comparison covers them).
//! - Training (float32): loss within 1e-5 relative per step; parameters within
//!   1e-6 + 1e-5·max|p| of the reference after each step.
use adamp_graph::rewrite::{self, Loss, Options};
use adamp_graph::optim::{Algorithm, Config, Detect, Overrides};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the checker script; panics with its error on failure.
fn run_py(args: &[&str]) -> Value {
    crate::common::py::run("rewrite_check.py", args)
}

/// The checker process reports a failing command as an error, with what
/// Python said, and goes on serving.
#[test]
fn checker_errors_name_the_command_and_the_process_survives() {
    let e = crate::common::py::call("rewrite_check.py", &["no-such-command"]).expect_err("an unknown command fails");
    assert!(e.contains("unknown command no-such-command") && e.contains("rewrite_check.py no-such-command"), "{e}");
    let e = crate::common::py::call("rewrite_check.py", &["check", "/nonexistent/step.onnx"]).expect_err("a missing file fails");
    assert!(e.contains("/nonexistent/step.onnx"), "{e}");
    let ok = crate::common::py::call("rewrite_check.py", &["check", root().join("fixtures/rewrite/train/cnn_bn.onnx").to_str().expect("utf8")]);
    assert!(ok.is_ok(), "the same process still serves: {ok:?}");
}

fn cases(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    v.sort();
    assert!(!v.is_empty(), "no cases in {dir}");
    v
}

fn loss_of(case: &Value) -> Loss {
    match case["loss"].as_str() {
        Some("cross-entropy") => Loss::CrossEntropy,
        Some("mse") => Loss::Mse,
        other => panic!("unknown loss {other:?}"),
    }
}

fn write_step(model: &Path, opts: &Options, dir: &Path, name: &str) -> PathBuf {
    let loaded = adamp_graph::onnx::load_model(model).expect("model loads");
    let step = rewrite::rewrite(&loaded, opts).unwrap_or_else(|e| panic!("{name}: rewrite failed: {e}"));
    let path = dir.join(format!("{name}.step.onnx"));
    step.save(&path).expect("save");
    path
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("number")
}

#[test]
fn op_gradients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut checked = 0;
    for case_path in cases("fixtures/rewrite/ops") {
        let case: Value = serde_json::from_slice(&std::fs::read(&case_path).expect("read")).expect("json");
        let name = case["name"].as_str().expect("name").to_string();
        let model = case_path.with_extension("onnx");
        let opts = Options {
            loss: loss_of(&case),
            config: Config::defaults(Algorithm::Adamp),
            detect: Detect::Auto,
            plan: None,
            gradients: true,
        };
        let step = write_step(&model, &opts, dir.path(), &name);
        let r = run_py(&["grads", case_path.to_str().expect("utf8"), step.to_str().expect("utf8")]);
        let f64_case = case["dtype"] == "float64";
        // Cases without a PyTorch reference (a seeded Dropout) rest on finite differences.
        if let Some(tl) = r["torch_loss"].as_f64() {
            let loss = f(&r["loss"]);
            if (loss - tl).abs() > 1e-5 * tl.abs().max(1.0) {
                failures.push(format!("{name}: loss {loss} vs torch {tl}"));
            }
        }
        let params = r["params"].as_object().expect("params");
        assert!(!params.is_empty(), "{name}: no gradients");
        let scale = params.values().map(|e| f(&e["max_abs_ref"])).fold(0.0, f64::max);
        let rtol = if f64_case { 1e-6 } else { 1e-4 };
        let (mut fd_total, mut fd_ok) = (0, 0);
        for (p, e) in params {
            if let Some(err) = e["max_abs_err"].as_f64() {
                let bound = rtol * f(&e["max_abs_ref"]).max(1e-3 * scale);
                if err > bound {
                    failures.push(format!("{name}: {p}: gradient off by {err:.3e} from PyTorch's (bound {bound:.3e})"));
                }
            }
            for pair in e["fd"].as_array().expect("fd") {
                let (a, b) = (f(&pair[0]), f(&pair[1]));
                fd_total += 1;
                let ok = if f64_case { (a - b).abs() <= 1e-6 * scale + 1e-5 * b.abs() } else { (a - b).abs() <= 3e-4 + 2e-2 * b.abs() };
                if ok {
                    fd_ok += 1;
                } else if f64_case {
                    failures.push(format!("{name}: {p}: gradient {a} vs finite difference {b}"));
                }
            }
        }
        if !f64_case && (fd_ok as f64) < 0.9 * fd_total as f64 {
            failures.push(format!("{name}: only {fd_ok}/{fd_total} finite differences agree"));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{} of the gradient checks failed:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 20, "only {checked} op cases");
}

fn config_of(case: &Value, algo: Algorithm) -> Config {
    let h = &case["hyperparameters"];
    let get = |k: &str| h.get(k).and_then(Value::as_f64);
    let o = Overrides {
        lr: Some(get("lr").expect("lr")),
        betas: h.get("betas").and_then(Value::as_array).map(|b| (f(&b[0]), f(&b[1]))),
        eps: get("eps"),
        weight_decay: get("weight_decay"),
        momentum: get("momentum"),
        dampening: get("dampening"),
        nesterov: h.get("nesterov").and_then(Value::as_bool).unwrap_or(false),
        delta: get("delta"),
        wd_ratio: get("wd_ratio"),
    };
    Config::with(algo, &o).unwrap_or_else(|e| panic!("{}: {e}", case["name"]))
}

#[test]
fn training_matches_reference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut failures = Vec::new();
    let mut detects = std::collections::BTreeSet::new();
    let mut algos = std::collections::BTreeSet::new();
    for case_path in cases("fixtures/rewrite/train") {
        let case: Value = serde_json::from_slice(&std::fs::read(&case_path).expect("read")).expect("json");
        let name = case["name"].as_str().expect("name").to_string();
        let algo = match case["optimizer"].as_str().expect("optimizer") {
            "adamp" => Algorithm::Adamp,
            "sgdp" => Algorithm::Sgdp,
            "adam" => Algorithm::Adam,
            "adamw" => Algorithm::Adamw,
            "sgd" => Algorithm::Sgd,
            o => panic!("{name}: unknown optimizer {o}"),
        };
        let detect = match case["detect"].as_str().expect("detect") {
            "runtime" => Detect::Runtime,
            "static" => Detect::Static,
            "auto" => Detect::Auto,
            d => panic!("{name}: unknown detect {d}"),
        };
        detects.insert(format!("{detect:?}"));
        algos.insert(algo.name());
        let opts = Options { loss: loss_of(&case), config: config_of(&case, algo), detect, plan: None, gradients: false };
        let model = case_path.with_file_name(case["model"].as_str().expect("model"));
        let step = write_step(&model, &opts, dir.path(), &name);
        let r = run_py(&["train", case_path.to_str().expect("utf8"), step.to_str().expect("utf8")]);
        let steps = r["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), case["steps"].as_array().expect("steps").len());
        for (t, s) in steps.iter().enumerate() {
            let (l, tl) = (f(&s["loss"]), f(&s["torch_loss"]));
            if (l - tl).abs() > 1e-5 * tl.abs().max(1.0) {
                failures.push(format!("{name} step {}: loss {l} vs {tl}", t + 1));
            }
            for (kind, map) in [("param", &s["params"]), ("buffer", &s["buffers"])] {
                for (p, e) in map.as_object().expect("map") {
                    let (err, max) = (f(&e[0]), f(&e[1]));
                    if err > 1e-6 + 1e-5 * max {
                        failures.push(format!("{name} step {}: {kind} {p} off by {err:.3e} (max |value| {max:.3})", t + 1));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(detects.len(), 3, "every detection mode is covered: {detects:?}");
    assert_eq!(algos.len(), 5, "every optimizer is covered: {algos:?}");
}

/// Every zoo model (fixtures/zoo: TorchScript, dynamo, onnxscript and
/// onnx.helper exports, opsets 11 to 23) rewrites, passes the full checker,
/// and trains two steps in onnxruntime with every output finite.
#[test]
fn zoo_models_train_in_onnxruntime() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut models: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/zoo"))
        .expect("zoo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".onnx") || p.to_string_lossy().ends_with(".onnx.gz"))
        .collect();
    models.sort();
    assert!(models.len() >= 30, "zoo has {} models", models.len());
    let failures = std::sync::Mutex::new(Vec::new());
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Some(path) = models.get(i) else { break };
                let name = path.file_name().expect("name").to_string_lossy().replace(".onnx.gz", "").replace(".onnx", "");
                // onnxruntime reads plain files: inflate through our own loader.
                let loaded = adamp_graph::onnx::load_model(path).expect("zoo model loads");
                let plain = dir.path().join(format!("{name}.onnx"));
                loaded.save(&plain).expect("save");
                let opts = Options {
                    loss: Loss::Mse,
                    config: Config::defaults(Algorithm::Adamp),
                    detect: Detect::Auto,
                    plan: None,
                    gradients: false,
                };
                let step = match rewrite::rewrite(&loaded, &opts) {
                    Ok(s) => s,
                    Err(e) => {
                        failures.lock().expect("lock").push(format!("{name}: {e}"));
                        continue;
                    }
                };
                let step_path = dir.path().join(format!("{name}.step.onnx"));
                step.save(&step_path).expect("save");
                let r = run_py(&["smoke", plain.to_str().expect("utf8"), step_path.to_str().expect("utf8")]);
                let losses: Vec<Option<f64>> = r["losses"].as_array().expect("losses").iter().map(Value::as_f64).collect();
                if !r["nonfinite"].as_array().expect("list").is_empty() || losses.len() != 2 || !losses.iter().all(|l| l.is_some_and(f64::is_finite)) {
                    failures.lock().expect("lock").push(format!("{name}: {r}"));
                }
            });
        }
    });
    let failures = failures.into_inner().expect("lock");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every op with a gradient rule appears in some fixture the tests above run,
/// so no rule goes unchecked.
#[test]
fn every_rule_is_exercised_by_a_fixture() {
    let mut seen = std::collections::BTreeSet::new();
    for dir in ["fixtures/rewrite/ops", "fixtures/rewrite/train"] {
        for e in std::fs::read_dir(root().join(dir)).expect("dir") {
            let p = e.expect("entry").path();
            if p.extension().is_some_and(|x| x == "onnx") {
                let g = adamp_graph::load_graph(&p).expect("fixture loads");
                seen.extend(g.nodes.iter().map(|n| n.op_type.clone()));
            }
        }
    }
    // The loss adds these to every graph.
    seen.extend(["LogSoftmax", "GatherElements", "ReduceMean", "Sub", "Mul"].map(String::from));
    let missing: Vec<&str> = rewrite::differentiable_ops().into_iter().filter(|o| !seen.contains(*o)).collect();
    assert!(missing.is_empty(), "ops with a rule but no fixture: {missing:?}");
}

/// An opset-11 model whose `If` (decided by shape arithmetic) holds an
/// opset-11 Squeeze: the inlined branch is upgraded too, and the step graph
/// passes the full checker.
#[test]
fn inlined_opset11_branch_is_upgraded() {
    use adamp_graph::onnx::{Attr, GraphBuilder, TensorData};
    let mut b = GraphBuilder::new("t", 11);
    b.input("x", &[-1, 4]);
    b.initializer("w", &[4, 1], TensorData::F32(vec![0.5, -0.25, 0.125, 1.0]));
    b.initializer("one", &[], TensorData::I64(vec![1]));
    b.node("MatMul", &["x", "w"], &["h"], &[]);
    b.node("Shape", &["h"], &["s"], &[]);
    b.node("Gather", &["s", "one"], &["d"], &[]);
    b.node("Equal", &["d", "one"], &["cond"], &[]);
    let branch = |name: &str, op: &str, attrs: &[(&str, Attr)]| {
        let mut g = GraphBuilder::new(name, 11);
        let out = format!("{name}_out");
        g.node(op, &["h"], &[&out], attrs);
        g.output(&out);
        Attr::Graph(Box::new(g))
    };
    let then_b = branch("then", "Squeeze", &[("axes", Attr::Ints(vec![1]))]);
    let else_b = branch("else", "Identity", &[]);
    b.node("If", &["cond"], &["y"], &[("then_branch", then_b), ("else_branch", else_b)]);
    b.output("y");
    let opts = Options {
        loss: Loss::Mse,
        config: Config::defaults(Algorithm::Sgd),
        detect: Detect::Auto,
        plan: None,
        gradients: true,
    };
    let step = rewrite::rewrite(&adamp_graph::onnx::load_model_bytes(b.to_bytes()).expect("decodes"), &opts).expect("rewrite");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("step.onnx");
    step.save(&path).expect("save");
    let r = run_py(&["check", path.to_str().expect("utf8")]);
    assert_eq!(r["ok"], true);
}

/// The ONNX backend of the optimizer (`rewrite::update_graph`) replays every
/// golden trace in onnxruntime: parameters and state per step, with the
/// golden tolerance (tests/suite/golden_optim.rs).
#[test]
fn every_golden_trace_replays_through_the_onnx_update() {
    use crate::golden_optim::{algorithm, close, config, floats, reference_state, traces};
    use adamp_graph::optim::TensorSpec;
    use adamp_graph::plan::Projection;
    let dir = tempfile::tempdir().expect("tempdir");
    for path in traces() {
        let case = path.file_name().expect("name").to_string_lossy().into_owned();
        let d: Value = serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        let algo = algorithm(d["optimizer"].as_str().expect("optimizer"));
        let shape: Vec<usize> = d["shape"].as_array().expect("shape").iter().map(|x| x.as_u64().expect("dim") as usize).collect();
        let spec = TensorSpec { name: "p".into(), shape, projection: Projection::Runtime };
        let update = adamp_graph::rewrite::update_graph(&[spec], &config(algo, &d["defaults"]), Detect::Runtime).expect("update graph");
        let file = dir.path().join(format!("{case}.onnx"));
        update.save(&file).expect("save");
        let r = run_py(&["optim", path.to_str().expect("utf8"), file.to_str().expect("utf8")]);
        let names: Vec<&str> = r["state"].as_array().expect("state").iter().map(|n| n.as_str().expect("name")).collect();
        for (k, (got, want)) in r["steps"].as_array().expect("steps").iter().zip(d["steps"].as_array().expect("steps")).enumerate() {
            close(&case, "param", k + 1, &floats(&got["param"]), &floats(&want["param"]));
            assert_eq!(names.len(), algo.state_names().len(), "{case}: state inputs {names:?}");
            for (i, n) in names.iter().enumerate() {
                let key = n.trim_start_matches("p.");
                let w = reference_state(want, key).unwrap_or_else(|| panic!("{case} step {}: no state '{key}' in the trace", k + 1));
                close(&case, key, k + 1, &floats(&got["state"][i]), &floats(w));
            }
        }
    }
}
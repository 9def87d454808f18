//! The training fixtures (fixtures/train/, made by scripts/gen_train.py) and
//! their data sets (fixtures/data/, scripts/gen_digits.py): what the analysis
//! proves about them, and that their step graphs train in onnxruntime
//! (tests/py/train_fixtures_check.py; `$ADAMP_GRAPH_PYTHON`, else `python3`,
//! with numpy, onnx and onnxruntime; a missing module fails, never skips).
use adamp_graph::analysis::ScaleClass;
use adamp_graph::optim::{Algorithm, Config, Detect, Overrides};
use adamp_graph::rewrite::{self, Loss, Options};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn class_of(model: &str, param: &str) -> ScaleClass {
    let analysis = adamp_graph::analyze_file(&root().join("fixtures/train").join(model)).expect("fixture analyses");
    analysis.param(param).unwrap_or_else(|| panic!("{model}: no parameter {param}")).class.clone()
}

/// Writes the fixture's step graph; returns it with its parameter names.
fn step_graph(model: &str, loss: Loss, algo: Algorithm, overrides: &Overrides, dir: &Path) -> (PathBuf, Vec<String>) {
    let loaded = adamp_graph::onnx::load_model(&root().join("fixtures/train").join(model)).expect("fixture loads");
    let opts = Options { loss, config: Config::with(algo, overrides).expect("config"), detect: Detect::Auto, plan: None, gradients: false };
    let step = rewrite::rewrite(&loaded, &opts).unwrap_or_else(|e| panic!("{model}: rewrite failed: {e}"));
    let path = dir.join(format!("{model}.{}.step.onnx", algo.name()));
    step.save(&path).expect("save");
    (path, step.params.clone())
}

/// `steps` steps in onnxruntime on batches taken in order.
fn train(step: &Path, data: &str, lr: f64, steps: usize, batch: usize, params: &[String]) -> Value {
    let step = step.to_string_lossy().into_owned();
    let data = root().join("fixtures/data").join(data).to_string_lossy().into_owned();
    let (lr, steps, batch) = (lr.to_string(), steps.to_string(), batch.to_string());
    let mut args = vec!["train", step.as_str(), data.as_str(), lr.as_str(), steps.as_str(), batch.as_str()];
    args.extend(params.iter().map(String::as_str));
    crate::common::py::run("train_fixtures_check.py", &args)
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().expect("number")).collect()
}

#[test]
fn digits_models_are_analysed_as_their_batchnorms_say() {
    for conv in ["conv1.weight", "conv2.weight", "conv3.weight"] {
        assert_eq!(class_of("digits_cnn.onnx", conv), ScaleClass::Channel { axis: 0 }, "{conv}");
    }
    assert_eq!(class_of("digits_cnn.onnx", "fc.weight"), ScaleClass::None);
    assert_eq!(class_of("digits_mlp.onnx", "fc1.weight"), ScaleClass::Channel { axis: 0 });
    assert_eq!(class_of("digits_mlp.onnx", "fc2.weight"), ScaleClass::None);
}

#[test]
fn the_rosenbrock_toy_is_provably_scale_invariant() {
    // w reaches the loss only through LpNormalization: one factor for the whole tensor.
    assert_eq!(class_of("rosenbrock.onnx", "w"), ScaleClass::Layer);
}

#[test]
fn digits_cnn_trains_in_onnxruntime_on_the_digits_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (step, params) = step_graph("digits_cnn.onnx", Loss::CrossEntropy, Algorithm::Adamp, &Overrides::default(), dir.path());
    let r = train(&step, "digits_train.npz", 0.01, 30, 64, &params);
    assert_eq!(r["data"]["x"]["shape"], serde_json::json!([1437, 1, 8, 8]));
    assert_eq!(r["data"]["x"]["dtype"], "float32");
    assert_eq!(r["data"]["labels"]["shape"], serde_json::json!([1437]));
    assert_eq!(r["data"]["labels"]["dtype"], "int64");
    assert!(r["data"]["x"]["min"].as_f64() == Some(0.0) && r["data"]["x"]["max"].as_f64() == Some(1.0), "x not in [0, 1]: {}", r["data"]["x"]);
    assert!(r["data"]["labels"]["min"].as_f64() == Some(0.0) && r["data"]["labels"]["max"].as_f64() == Some(9.0));
    let loss = numbers(&r["loss"]);
    // Ten classes: the untrained CNN is near ln 10; 30 AdamP steps at lr 0.01 bring it well below half of that.
    assert!((loss[0] - 10f64.ln()).abs() < 0.3, "first loss {}", loss[0]);
    let last5 = loss[25..].iter().sum::<f64>() / 5.0;
    assert!(last5 < 0.5 * loss[0], "losses {loss:?}");
}

#[test]
fn the_rosenbrock_toy_shows_the_papers_norm_growth() {
    let dir = tempfile::tempdir().expect("tempdir");
    let momentum = Overrides { momentum: Some(0.9), ..Overrides::default() };
    let run = |algo| {
        let (step, params) = step_graph("rosenbrock.onnx", Loss::Mse, algo, &momentum, dir.path());
        let r = train(&step, "rosenbrock.npz", 1e-4, 200, 64, &params);
        (numbers(&r["loss"]), numbers(&r["norms"]["w"]))
    };
    let (sgd_loss, sgd_norm) = run(Algorithm::Sgd);
    let (sgdp_loss, sgdp_norm) = run(Algorithm::Sgdp);
    // The first loss is f(w_0) = (1 + 2)^2 + 300 (2 - 4)^2 = 1209 (labels 0: MSE = f).
    assert!((sgd_loss[0] - 1209.0).abs() < 1e-3 * 1209.0, "f(w0) = {}", sgd_loss[0]);
    assert_eq!(sgd_loss[0], sgdp_loss[0]);
    // Momentum SGD inflates ‖w‖ (1 -> ~15); the projection keeps it small (~2.5) and gets further down the valley.
    let (sgd_w, sgdp_w) = (*sgd_norm.last().expect("steps"), *sgdp_norm.last().expect("steps"));
    assert!(sgd_w > 3.0 * sgdp_w, "final norms: sgd {sgd_w}, sgdp {sgdp_w}");
    let (sgd_f, sgdp_f) = (*sgd_loss.last().expect("steps"), *sgdp_loss.last().expect("steps"));
    assert!(sgdp_f < 0.5 * sgd_f, "final losses: sgd {sgd_f}, sgdp {sgdp_f}");
}

//! `adamp-graph bench` end to end: the JSON contract, the adapter override, and
//! plans that do not match the model.
use std::process::Command;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_adamp-graph"));
    c.env_remove("ADAMP_GRAPH_ADAPTER");
    c
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/zoo/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn bench_json_has_the_documented_keys() {
    for (opt, baseline) in [("adamp", "adam"), ("sgdp", "sgd")] {
        let out = bin()
            .args(["bench", &fixture("bn1d_mlp.onnx"), "--optimizer", opt, "--detect", "auto", "--steps", "2", "--warmup", "1", "--format", "json"])
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in ["device", "optimizer", "detect", "tensors", "elements", "ms_per_step", "baseline", "baseline_ms_per_step", "ratio", "bytes_per_step", "gbps", "copy_gbps", "shader_copy_gbps", "variant"] {
            assert!(keys.contains(&k), "missing key {k}: {keys:?}");
        }
        assert_eq!(v["optimizer"], opt);
        assert_eq!(v["baseline"], baseline);
        assert_eq!(v["tensors"], 10);
        assert_eq!(v["elements"], 563);
        let ratio = v["ratio"].as_f64().unwrap();
        let expect = v["ms_per_step"].as_f64().unwrap() / v["baseline_ms_per_step"].as_f64().unwrap();
        assert!((ratio - expect).abs() < 1e-9 * expect.max(1.0));
        assert!(v["copy_gbps"].as_f64().unwrap() > 0.0);
        assert!(v["shader_copy_gbps"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn adapter_override_that_matches_nothing_lists_what_exists() {
    let out = bin().args(["bench", &fixture("bn1d_mlp.onnx"), "--steps", "1"]).env("ADAMP_GRAPH_ADAPTER", "no-such-gpu-anywhere").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-gpu-anywhere") && err.contains("ADAMP_GRAPH_ADAPTER") && err.contains("found:"), "{err}");
    assert!(err.contains("backends tried"), "{err}");
}

#[test]
fn a_plan_for_another_model_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    let out = bin().args(["plan", &fixture("layernorm_mlp.onnx"), "-o", plan.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success());
    let out = bin().args(["bench", &fixture("bn1d_mlp.onnx"), "--plan", plan.to_str().unwrap(), "--steps", "1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plan does not match the model") && err.contains("'ln1.weight'"), "{err}");

    // Same names, another shape.
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    v["tensors"][0]["shape"] = serde_json::json!([3, 3]);
    std::fs::write(&plan, serde_json::to_string(&v).unwrap()).unwrap();
    let out = bin().args(["bench", &fixture("layernorm_mlp.onnx"), "--plan", plan.to_str().unwrap(), "--steps", "1"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has shape [16, 12] in the model, [3, 3] in the plan"), "{err}");

    // Not a plan at all, or another version.
    v["version"] = serde_json::json!(99);
    std::fs::write(&plan, serde_json::to_string(&v).unwrap()).unwrap();
    let out = bin().args(["bench", &fixture("layernorm_mlp.onnx"), "--plan", plan.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("version 99"));
}

#[test]
fn a_plan_file_drives_bench_when_it_matches() {
    let dir = tempfile::tempdir().unwrap();
    let plan = dir.path().join("plan.json");
    assert!(bin().args(["plan", &fixture("bn1d_mlp.onnx"), "-o", plan.to_str().unwrap()]).status().unwrap().success());
    let out = bin().args(["bench", &fixture("bn1d_mlp.onnx"), "--plan", plan.to_str().unwrap(), "--detect", "static", "--steps", "1", "--format", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

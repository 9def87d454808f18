//! The ONNX backend node tests run through the executor, on whatever adapter
//! exists (lavapipe in CI), for every test whose ops all have kernels.
//!
//! Inputs come from `test_data_set_0/input_k.pb`; integer inputs of at most
//! [`MAX_TRACKED_INTS`](crate::ir::MAX_TRACKED_INTS) elements are bound as
//! constants (shape arguments: Reshape's target, Slice's bounds), as the
//! step graphs have them. Each output must match `output_k.pb` within
//! `|got - want| <= ATOL + RTOL * |want|` (NaN matching NaN): the ONNX
//! backend's own relative tolerance (1e-3), with an absolute floor for float32
//! kernels whose summation order differs from the reference's.
//!
//! `fixtures/exec-node-tests.manifest` records every verdict; the test fails
//! when one that passed stops passing, or when verdicts change (rerun with
//! `ADAMP_GRAPH_BLESS=1` when every change is an improvement).
use super::device::{limits, Executor, PipelineCache};
use super::kernel::Elem;
use crate::ir::{from_model, DType, Tensor};
use crate::onnx::load_model_bytes;
use crate::runtime::Gpu;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const RTOL: f64 = 1e-3;
const ATOL: f64 = 1e-5;

fn manifest_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/exec-node-tests.manifest")
}

fn values(t: &Tensor) -> Option<Vec<f64>> {
    t.values().filter(|_| matches!(t.dtype, DType::F32 | DType::I64 | DType::I32 | DType::Bool))
}

/// The verdict for one node test folder.
fn verdict(gpu: &Gpu, cache: &mut PipelineCache, dir: &Path) -> String {
    let Ok(bytes) = std::fs::read(dir.join("model.onnx")) else { return "unsupported (no model.onnx)".into() };
    let Ok(model) = load_model_bytes(bytes) else { return "unsupported (model does not decode)".into() };
    let g = match from_model(&model) {
        Ok(g) => g,
        Err(_) => return "unsupported (the IR refuses the model)".into(),
    };
    // Constant is always folded on the host: it never needs a kernel.
    if let Some(n) = g.nodes.iter().find(|n| n.def.and_then(|d| d.kernel).is_none() && !n.is(&crate::ops::CONSTANT)) {
        return format!("no kernel ({})", n.op_type);
    }
    let data = dir.join("test_data_set_0");
    let mut shapes = HashMap::new();
    let mut constants = HashMap::new();
    let mut feeds = Vec::new();
    for (k, &v) in g.inputs.iter().enumerate() {
        let name = g.values[v].name.clone();
        let Ok((_, t)) = crate::onnx::read_tensor_file(&data.join(format!("input_{k}.pb"))) else {
            return format!("unsupported (input {k} has no tensor data)");
        };
        let Some(elem) = Elem::of(t.dtype) else { return format!("unsupported (input {k} is {})", t.dtype.name()) };
        if elem != Elem::F32 && t.elements() as usize <= crate::ir::MAX_TRACKED_INTS {
            constants.insert(name.clone(), t.clone());
        }
        shapes.insert(name.clone(), t.dims.iter().map(|&d| d as usize).collect::<Vec<_>>());
        feeds.push((name, t));
    }
    let mut expected = Vec::new();
    for (k, &o) in g.outputs.iter().enumerate() {
        let Ok((_, t)) = crate::onnx::read_tensor_file(&data.join(format!("output_{k}.pb"))) else {
            return format!("unsupported (output {k} has no tensor data)");
        };
        expected.push((g.values[o].name.clone(), t));
    }
    let specialized = match super::specialize_with(&g, &shapes, &constants) {
        Ok(s) => s,
        Err(e) => return format!("unsupported (specialisation: {})", first_line(&e.to_string())),
    };
    let program = match super::plan(specialized, limits(gpu)) {
        Ok(p) => p,
        Err(e) => return format!("unsupported ({})", first_line(&e.to_string())),
    };
    let mut exec = match Executor::new(gpu, program, cache, 1) {
        Ok(x) => x,
        Err(e) => return format!("error ({})", first_line(&e.to_string())),
    };
    for (name, t) in &feeds {
        if constants.contains_key(name) {
            continue;
        }
        let Some(vals) = values(t) else { return format!("unsupported (input '{name}' data)") };
        let r = match Elem::of(t.dtype) {
            Some(Elem::F32) => exec.write_f32(name, &vals.iter().map(|&x| x as f32).collect::<Vec<_>>()),
            _ => exec.write_i64(name, &vals.iter().map(|&x| x as i64).collect::<Vec<_>>()),
        };
        if let Err(e) = r {
            return format!("unsupported ({})", first_line(&e.to_string()));
        }
    }
    if let Err(e) = exec.run() {
        return format!("error ({})", first_line(&e.to_string()));
    }
    for (k, (name, want)) in expected.iter().enumerate() {
        let Some(want_v) = values(want) else { return format!("unsupported (output {k} is {})", want.dtype.name()) };
        let got = match exec.read_f32(name) {
            Ok(x) => x,
            Err(e) => return format!("error ({})", first_line(&e.to_string())),
        };
        let got_shape = exec.program().slot(name).and_then(|s| s.info.as_ref()).map(|i| i.shape.clone()).unwrap_or_default();
        let want_shape: Vec<usize> = want.dims.iter().map(|&d| d as usize).collect();
        if got_shape != want_shape {
            return format!("mismatch (output {k}: shape {got_shape:?}, recorded {want_shape:?})");
        }
        let mut worst = 0.0f64;
        for (&a, &b) in got.iter().zip(&want_v) {
            let a = a as f64;
            if a.is_nan() && b.is_nan() || a == b {
                continue;
            }
            let err = (a - b).abs() / (ATOL + RTOL * b.abs());
            worst = if err.is_nan() { f64::INFINITY } else { worst.max(err) };
        }
        if worst > 1.0 {
            return format!("mismatch (output {k}: error {worst:.1}x the tolerance)");
        }
    }
    "pass".into()
}

fn first_line(s: &str) -> String {
    if std::env::var("ADAMP_GRAPH_NODE_TESTS").is_ok() {
        return s.to_string();
    }
    s.lines().next().unwrap_or("").chars().take(160).collect()
}

fn manifest(gpu: &Gpu, dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let only = std::env::var("ADAMP_GRAPH_NODE_TESTS").ok();
    let mut cache = PipelineCache::default();
    let mut lines = Vec::new();
    let mut panics = Vec::new();
    for n in &names {
        if only.as_ref().is_some_and(|o| !n.contains(o.as_str())) {
            continue;
        }
        let v = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| verdict(gpu, &mut cache, &dir.join(n)))) {
            Ok(v) => v,
            Err(_) => {
                panics.push(n.clone());
                "panicked".into()
            }
        };
        lines.push(format!("{n} {v}"));
    }
    assert!(panics.is_empty(), "the executor panicked on {} node test(s): {}", panics.len(), panics.join(", "));
    let count = |p: &str| lines.iter().filter(|l| l.split_once(' ').is_some_and(|(_, v)| v.starts_with(p))).count();
    let (pass, nok) = (count("pass"), count("no kernel"));
    let ran = lines.len() - nok;
    let mut out = format!(
        "# ONNX backend node tests through the executor (src/exec/node_tests.rs); ADAMP_GRAPH_BLESS=1 rewrites this file\n\
         # {pass} of {ran} with kernels pass ({:.1}%); {nok} use an op without a kernel\n",
        100.0 * pass as f64 / ran.max(1) as f64
    );
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[test]
fn kernels_match_the_onnx_node_tests() {
    let gpu = Gpu::open(None).expect("a wgpu adapter (scripts/test.sh installs lavapipe)");
    let dir = crate::onnx::node_tests::node_tests_dir();
    let got = manifest(&gpu, &dir);
    if std::env::var("ADAMP_GRAPH_NODE_TESTS").is_ok() {
        eprintln!("{got}");
        return;
    }
    crate::onnx::node_tests::check_manifest(&manifest_path(), &got, "the executor's node-test verdicts");
}

//! Shape inference checked against the ONNX backend node tests (the peers' own
//! test suite, shipped with the `onnx` Python package or written from its case
//! definitions by `tests/py/onnx_node_tests.py`).
//!
//! For every node test the IR loads, each output's inferred rank and dims must
//! equal the recorded output's. The declared output shapes and value_info are
//! removed first, so nothing is read back from the file. Inputs of at most
//! [`MAX_TRACKED_INTS`](crate::ir::MAX_TRACKED_INTS) elements are given to
//! the IR as initializers, as exporters make shape arguments (Reshape's target,
//! Slice's bounds, Resize's sizes) constants.
//!
//! `fixtures/onnx-node-tests.manifest` records the verdict of every test:
//! `pass`, `data-dependent (OP)` or `unsupported (reason)`. The test fails when
//! the verdicts differ from the manifest, a regression or a stale manifest
//! alike; `ADAMP_GRAPH_BLESS=1` rewrites it. Python with onnx and numpy is
//! required (`$ADAMP_GRAPH_PYTHON`, else `python3`; scripts/test.sh makes one).
use crate::ir::{from_model, Dim};
use crate::onnx::{load_model_bytes, pb};
use prost::Message;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest_path() -> PathBuf {
    root().join("fixtures/onnx-node-tests.manifest")
}

/// The node tests' folder, written by the helper script when not shipped.
pub(crate) fn node_tests_dir() -> PathBuf {
    let python = std::env::var("ADAMP_GRAPH_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = root().join("tests/py/onnx_node_tests.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .arg(root().join("target/onnx-node-tests"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}); set ADAMP_GRAPH_PYTHON to a Python with onnx and numpy (scripts/test.sh makes one)"));
    assert!(out.status.success(), "{python} {}: {}", script.display(), String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn read_tensor(path: &Path) -> Option<pb::TensorProto> {
    pb::TensorProto::decode(std::fs::read(path).ok()?.as_slice()).ok()
}

fn render(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| match d {
            Dim::Known(k) => k.to_string(),
            Dim::Sym(_) | Dim::Unknown => "?".into(),
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The verdict for one node test folder.
fn verdict(dir: &Path) -> String {
    let Ok(bytes) = std::fs::read(dir.join("model.onnx")) else { return "unsupported (no model.onnx)".into() };
    let mut model = match load_model_bytes(bytes) {
        Ok(m) => m,
        Err(e) => return format!("unsupported (model does not decode: {e})"),
    };
    let data = dir.join("test_data_set_0");
    let Some(graph) = model.proto.graph.as_mut() else { return "unsupported (no graph)".into() };
    graph.value_info.clear();
    let mut expected: Vec<Option<(String, Vec<i64>)>> = Vec::new();
    for (k, out) in graph.output.iter_mut().enumerate() {
        let is_tensor = matches!(out.r#type.as_ref().and_then(|t| t.value.as_ref()), Some(pb::type_proto::Value::TensorType(_)));
        let recorded = if is_tensor { read_tensor(&data.join(format!("output_{k}.pb"))) } else { None };
        expected.push(recorded.map(|t| (out.name.clone(), t.dims)));
        if let Some(pb::type_proto::Value::TensorType(t)) = out.r#type.as_mut().and_then(|t| t.value.as_mut()) {
            t.shape = None;
        }
    }
    for (j, input) in graph.input.clone().iter().enumerate() {
        let Some(mut t) = read_tensor(&data.join(format!("input_{j}.pb"))) else { continue };
        let elements = t.dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d));
        if elements.is_some_and(|n| n <= crate::ir::MAX_TRACKED_INTS as i64) {
            t.name = input.name.clone();
            graph.initializer.push(t);
        }
    }
    let ops: Vec<(String, String)> = graph.node.iter().map(|n| (n.domain.clone(), n.op_type.clone())).collect();
    let g = match from_model(&model) {
        Ok(g) => g,
        Err(e) => return format!("unsupported (the IR refuses the model: {e})"),
    };
    let mut problems = Vec::new();
    for (k, want) in expected.iter().enumerate() {
        let Some((name, want)) = want else {
            problems.push(format!("output {k} is not a tensor"));
            continue;
        };
        let got = g.value_by_name(name).and_then(|v| g.values[v].shape.clone());
        let ok = got.as_ref().is_some_and(|s| s.len() == want.len() && s.iter().zip(want).all(|(d, w)| *d == Dim::Known(*w)));
        if !ok {
            let want: Vec<Dim> = want.iter().map(|&w| Dim::Known(w)).collect();
            problems.push(format!("output {k}: inferred {}, recorded {}", got.as_deref().map_or("?".into(), render), render(&want)));
        }
    }
    if problems.is_empty() {
        return "pass".into();
    }
    // Ops whose output shape depends on the values of their data input.
    if let Some((_, op)) = ops.iter().find(|(domain, op)| crate::ops::lookup(domain, op).is_some_and(|d| d.data_dependent)) {
        return format!("data-dependent ({op})");
    }
    // Name the first op whose inputs are all static but an output is not: the
    // rule to write or fix.
    let is_static = |v: usize| g.values[v].shape.as_ref().is_some_and(|s| s.iter().all(|d| matches!(d, Dim::Known(_))));
    let culprit = g.nodes.iter().find(|n| n.inputs.iter().flatten().all(|&v| is_static(v)) && n.outputs.iter().flatten().any(|&v| !is_static(v)));
    if let Some(n) = culprit {
        problems.push(format!("first op without static output shapes: {}", n.op_type));
    }
    format!("unsupported ({})", problems.join("; "))
}

/// The manifest's text for all tests in `dir`: a summary line, then one line per test.
fn manifest(dir: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // A panic is a bug, never a verdict: it fails the test (after all ran).
    let mut panics = Vec::new();
    let lines: Vec<String> = names
        .iter()
        .map(|n| match std::panic::catch_unwind(|| verdict(&dir.join(n))) {
            Ok(v) => format!("{n} {v}"),
            Err(_) => {
                panics.push(n.clone());
                format!("{n} panicked")
            }
        })
        .collect();
    assert!(panics.is_empty(), "shape inference panicked on {} node test(s): {}", panics.len(), panics.join(", "));
    let count = |p: &str| lines.iter().filter(|l| l.split_once(' ').is_some_and(|(_, v)| v.starts_with(p))).count();
    let (pass, dd) = (count("pass"), count("data-dependent"));
    let total = lines.len();
    let mut out = format!(
        "# ONNX backend node tests: shape inference (src/ir/node_tests.rs); ADAMP_GRAPH_BLESS=1 rewrites this file\n\
         # {pass} of {total} pass ({:.1}%), {dd} data-dependent, {} unsupported\n",
        100.0 * pass as f64 / total.max(1) as f64,
        total - pass - dd
    );
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

#[test]
fn shapes_match_the_onnx_node_tests() {
    let dir = node_tests_dir();
    let got = manifest(&dir);
    check_manifest(&manifest_path(), &got, "the ONNX node-test verdicts");
}

/// Compares a manifest of `name verdict` lines with the committed one at
/// `path` (or rewrites it under `ADAMP_GRAPH_BLESS=1`): a test that passed and
/// no longer passes is a regression; any other change asks for a bless.
pub(crate) fn check_manifest(path: &Path, got: &str, what: &str) {
    if std::env::var("ADAMP_GRAPH_BLESS").is_ok_and(|v| v == "1") {
        let tmp = path.with_extension("manifest.tmp");
        std::fs::write(&tmp, got).expect("write manifest");
        std::fs::rename(&tmp, path).expect("replace manifest");
        return;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    if got != want {
        let old: std::collections::HashMap<&str, &str> = want.lines().filter_map(|l| l.split_once(' ')).collect();
        let mut regressed = Vec::new();
        let mut changed = Vec::new();
        for l in got.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, v)) = l.split_once(' ') else { continue };
            match old.get(name) {
                Some(&"pass") if v != "pass" => regressed.push(format!("{name}: {v}")),
                Some(o) if *o == v => {}
                o => changed.push(format!("{name}: {} -> {v}", o.unwrap_or(&"(new)"))),
            }
        }
        panic!(
            "{what} differ from {}.\nregressed ({}):\n  {}\nchanged ({}, first 30):\n  {}\n\
             Fix the regressions; when every change is an improvement, rerun with ADAMP_GRAPH_BLESS=1.",
            path.display(),
            regressed.len(),
            regressed.join("\n  "),
            changed.len(),
            changed.iter().take(30).cloned().collect::<Vec<_>>().join("\n  ")
        );
    }
}

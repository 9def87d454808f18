//! The IR → protobuf writer: every zoo model loads, is written back from its
//! IR, and loads again to the same IR (nodes, attributes, subgraphs,
//! initializers, declarations, inferred shapes); the written models pass
//! `onnx.checker` with the full check. And protobuf stays inside `src/onnx/`.
use adamp_graph::ir::{self, AttrValue, Graph};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn zoo() -> Vec<PathBuf> {
    let mut models: Vec<PathBuf> = std::fs::read_dir(root().join("fixtures/zoo"))
        .expect("zoo")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().ends_with(".onnx") || p.to_string_lossy().ends_with(".onnx.gz"))
        .collect();
    models.sort();
    models
}

/// An attribute rendered for comparison (tensors by type, dims and bytes; subgraphs in full).
fn attr(v: &AttrValue) -> String {
    let tensor = |t: &ir::Tensor| format!("{:?}{:?}{:?}", t.dtype, t.dims, &t.data[..]);
    match v {
        AttrValue::Tensor(t) => tensor(t),
        AttrValue::Tensors(ts) => ts.iter().map(tensor).collect::<Vec<_>>().join(";"),
        AttrValue::Graph(g) => format!("graph{{{}}}", render(g).join("\n")),
        AttrValue::Graphs(gs) => gs.iter().map(|g| format!("graph{{{}}}", render(g).join("\n"))).collect::<Vec<_>>().join(";"),
        other => format!("{other:?}"),
    }
}

/// The IR as lines, in a canonical order where the IR keeps a map.
fn render(g: &Graph) -> Vec<String> {
    let name = |v: &Option<usize>| v.map_or(String::new(), |v| g.values[v].name.clone());
    let mut out = vec![format!("graph {} opset {}", g.name, g.opset)];
    for n in &g.nodes {
        let mut attrs: Vec<String> = n.attrs.iter().map(|(k, v)| format!("{k}={}", attr(v))).collect();
        attrs.sort();
        let implicit: Vec<&str> = n.implicit_inputs.iter().map(|&v| g.values[v].name.as_str()).collect();
        out.push(format!(
            "node {} {}:{} ({}) -> ({}) implicit {implicit:?} {}",
            n.name,
            n.domain,
            n.op_type,
            n.inputs.iter().map(name).collect::<Vec<_>>().join(", "),
            n.outputs.iter().map(name).collect::<Vec<_>>().join(", "),
            attrs.join(" ")
        ));
    }
    for i in &g.initializers {
        out.push(format!("initializer {} {:?} {:?} {} bytes {:?}", g.values[i.value].name, i.tensor.dtype, i.tensor.dims, i.tensor.data.len(), &i.tensor.data[..i.tensor.data.len().min(64)]));
        assert!(i.tensor.data == g.initializers[g.values[i.value].initializer.expect("initializer")].tensor.data);
    }
    let decl = |d: &Option<ir::TypeDecl>| d.as_ref().map(|d| format!("{:?} {}", d.dtype, g.dims_string(d.shape.as_deref())));
    for (v, d) in &g.input_decls {
        out.push(format!("input {} {:?}", g.values[*v].name, decl(d)));
    }
    for (v, d) in g.outputs.iter().zip(&g.output_decls) {
        out.push(format!("output {} {:?}", g.values[*v].name, decl(d)));
    }
    for (v, d) in &g.value_info {
        out.push(format!("value_info {} {:?}", g.values[*v].name, decl(&Some(d.clone()))));
    }
    for c in &g.captures {
        out.push(format!("capture {}", g.values[*c].name));
    }
    for v in &g.values {
        out.push(format!("value {} {:?} {} ints {:?} scalar {:?} const {}", v.name, v.dtype, g.dims_string(v.shape.as_deref()), v.ints, v.scalar, v.is_const));
    }
    for c in &g.shape_conflicts {
        out.push(format!("conflict {} {} {}", g.values[c.value].name, c.declared, c.inferred));
    }
    out
}

/// A model with subgraphs: an If whose branches read the outer graph, one
/// holding a nested If that reads both scopes.
fn with_subgraphs() -> Vec<u8> {
    use adamp_graph::onnx::{Attr, GraphBuilder, TensorData};
    let mut inner = GraphBuilder::new("inner", 17);
    inner.node("Add", &["t", "x"], &["u"], &[]);
    inner.output("u");
    let mut inner_else = GraphBuilder::new("inner_else", 17);
    inner_else.node("Neg", &["t"], &["v"], &[]);
    inner_else.output("v");
    let mut then = GraphBuilder::new("then", 17);
    then.initializer("two", &[], TensorData::F32(vec![2.0]));
    then.node("Mul", &["x", "two"], &["m"], &[]);
    then.node("Relu", &["m"], &["t"], &[]);
    then.node("If", &["c"], &["w"], &[("then_branch", Attr::Graph(Box::new(inner))), ("else_branch", Attr::Graph(Box::new(inner_else)))]);
    then.output("w");
    let mut other = GraphBuilder::new("else", 17);
    other.node("Sigmoid", &["x"], &["e"], &[]);
    other.output("e");
    let mut b = GraphBuilder::new("subgraphs", 17);
    b.input("x", &[2, 3]);
    b.initializer("zero", &[], TensorData::F32(vec![0.0]));
    b.node("ReduceSum", &["x"], &["s"], &[("keepdims", Attr::Int(0))]);
    b.node("Greater", &["s", "zero"], &["c"], &[]);
    b.node("If", &["c"], &["y"], &[("then_branch", Attr::Graph(Box::new(then))), ("else_branch", Attr::Graph(Box::new(other)))]);
    b.output("y");
    b.to_bytes()
}

/// load → IR → write → load → IR is the same IR, for every zoo model (and a
/// model with nested subgraphs), and the written models pass the full checker.
#[test]
fn zoo_models_round_trip_through_the_writer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let models = zoo();
    assert!(models.len() >= 30, "zoo has {} models", models.len());
    let mut cases: Vec<(String, adamp_graph::onnx::LoadedModel)> = models
        .iter()
        .map(|p| (p.file_name().expect("name").to_string_lossy().replace(".gz", ""), adamp_graph::onnx::load_model(p).expect("zoo model loads")))
        .collect();
    cases.push(("subgraphs.onnx".into(), adamp_graph::onnx::load_model_bytes(with_subgraphs()).expect("decodes")));
    let mut written = Vec::new();
    let mut subgraphs = 0;
    for (name, loaded) in &cases {
        let g = ir::from_model(loaded).expect("model builds");
        let out = adamp_graph::onnx::write_model(&g, &loaded.info()).expect("writes");
        let bytes = out.encode().expect("encodes");
        let again = ir::from_model(&adamp_graph::onnx::load_model_bytes(bytes.clone()).expect("written model decodes")).expect("written model builds");
        let (a, b) = (render(&g), render(&again));
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(x, y, "{name}: line {k} of the IR differs after writing");
        }
        assert_eq!(a.len(), b.len(), "{name}");
        subgraphs += g.nodes.iter().flat_map(|n| n.attrs.values()).map(|a| a.subgraphs().len()).sum::<usize>();
        // The checker wants graph outputs shaped; the builder leaves them open
        // (every value of the If model is [2, 3]).
        let mut g = g;
        if name == "subgraphs.onnx" {
            shape_outputs(&mut g);
        }
        let bytes = adamp_graph::onnx::write_model(&g, &loaded.info()).expect("writes").encode().expect("encodes");
        let file = dir.path().join(name);
        std::fs::write(&file, &bytes).expect("write");
        written.push(file);
    }
    assert!(subgraphs >= 2, "the If model's branches are written and read back");
    let args: Vec<&str> = std::iter::once("check").chain(written.iter().map(|p| p.to_str().expect("utf8"))).collect();
    if let Err(e) = crate::common::py::call("rewrite_check.py", &args) {
        panic!("onnx.checker refuses a written model: {e}");
    }
}

/// Declares every output of `g` and of its subgraphs float32 [2, 3].
fn shape_outputs(g: &mut Graph) {
    let d = ir::TypeDecl { dtype: Some(ir::DType::F32), shape: Some(vec![ir::Dim::Known(2), ir::Dim::Known(3)]) };
    g.output_decls.iter_mut().for_each(|o| *o = Some(d.clone()));
    for n in &mut g.nodes {
        for a in n.attrs.values_mut() {
            if let AttrValue::Graph(sub) = a {
                shape_outputs(sub);
            }
        }
    }
}

/// A subgraph's reads of the enclosing scopes are its captures, and the If
/// that holds it reads them as implicit inputs, through nesting.
#[test]
fn subgraphs_are_ir_graphs_with_their_outer_reads() {
    let g = ir::from_model(&adamp_graph::onnx::load_model_bytes(with_subgraphs()).expect("decodes")).expect("builds");
    let names = |g: &Graph, vs: &[usize]| -> Vec<String> {
        let mut v: Vec<String> = vs.iter().map(|&v| g.values[v].name.clone()).collect();
        v.sort();
        v
    };
    let outer_if = g.nodes.iter().find(|n| n.op_type == "If").expect("If");
    assert_eq!(names(&g, &outer_if.implicit_inputs), ["c", "x"]);
    let then = &outer_if.attrs["then_branch"].subgraphs()[0];
    assert_eq!(names(then, &then.captures), ["c", "x"]);
    assert_eq!(then.initializers.len(), 1);
    let inner_if = then.nodes.iter().find(|n| n.op_type == "If").expect("nested If");
    assert_eq!(names(then, &inner_if.implicit_inputs), ["t", "x"]);
    let inner = &inner_if.attrs["then_branch"].subgraphs()[0];
    assert_eq!(names(inner, &inner.captures), ["t", "x"]);
    // Shapes are inferred inside the branch too.
    let m = then.value_by_name("m").expect("m");
    assert_eq!(then.shape_string(m), "?", "x is captured, its shape is the outer graph's");
}

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The protobuf types and prost are named only under `src/onnx/`.
#[test]
fn protobuf_stays_inside_the_onnx_module() {
    let mut files = Vec::new();
    sources(&root().join("src"), &mut files);
    let onnx = root().join("src/onnx");
    let mut offenders = Vec::new();
    for f in files.iter().filter(|f| !f.starts_with(&onnx)) {
        let text = std::fs::read_to_string(f).expect("read");
        for (k, line) in text.lines().enumerate() {
            if line.contains("pb::") || line.contains("prost") {
                offenders.push(format!("{}:{}: {}", f.strip_prefix(root()).unwrap_or(f).display(), k + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 50, "the scan sees the sources ({} files)", files.len());
    assert!(offenders.is_empty(), "protobuf named outside src/onnx/:\n{}", offenders.join("\n"));
}

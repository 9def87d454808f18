//! The training-graph rewrite without a runtime: the I/O contract, pruning,
//! the plan, and bad input (unsupported ops, opsets, names, hostile sizes).
//! tests/rewrite_ort.rs executes the graphs.
use adamp_graph::onnx::{load_model_bytes, Attr, GraphBuilder, TensorData};
use adamp_graph::rewrite::{rewrite, Loss, Options, RewriteError, Rewritten};
use adamp_graph::optim::{Algorithm, Config, Detect};

fn opts(algo: Algorithm, loss: Loss) -> Options {
    Options { loss, config: Config::defaults(algo), detect: Detect::Auto, plan: None, gradients: false }
}

fn run(b: &GraphBuilder, o: &Options) -> Result<Rewritten, RewriteError> {
    rewrite(&load_model_bytes(b.to_bytes()).expect("model decodes"), o)
}

fn vals(n: usize, seed: u32) -> Vec<f32> {
    (0..n).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 1000) as f32 / 1000.0 - 0.5).collect()
}

fn init(b: &mut GraphBuilder, name: &str, dims: &[i64]) {
    let n = dims.iter().product::<i64>() as usize;
    b.initializer(name, dims, TensorData::F32(vals(n, name.len() as u32)));
}

/// Conv → BatchNorm (training) → Relu → GlobalAveragePool → Flatten → Gemm, plus
/// a parameter the loss never reads.
fn cnn() -> GraphBuilder {
    let mut b = GraphBuilder::new("cnn", 17);
    b.input("x", &[-1, 3, 6, 6]);
    init(&mut b, "conv.w", &[4, 3, 3, 3]);
    for s in ["bn.g", "bn.b", "bn.m", "bn.v"] {
        init(&mut b, s, &[4]);
    }
    init(&mut b, "fc.w", &[5, 4]);
    init(&mut b, "fc.b", &[5]);
    init(&mut b, "aux.w", &[5, 4]);
    b.node("Conv", &["x", "conv.w"], &["c"], &[("pads", Attr::Ints(vec![1, 1, 1, 1]))]);
    b.node("BatchNormalization", &["c", "bn.g", "bn.b", "bn.m", "bn.v"], &["n", "bn.rm", "bn.rv"], &[("training_mode", Attr::Int(1))]);
    b.node("Relu", &["n"], &["r"], &[]);
    b.node("GlobalAveragePool", &["r"], &["p"], &[]);
    b.node("Flatten", &["p"], &["f"], &[]);
    b.node("Gemm", &["f", "fc.w", "fc.b"], &["y"], &[("transB", Attr::Int(1))]);
    b.node("Gemm", &["f", "aux.w"], &["z"], &[("transB", Attr::Int(1))]);
    b.output("y");
    b.output("z");
    b
}

#[test]
fn io_contract() {
    let step = run(&cnn(), &opts(Algorithm::Adamp, Loss::CrossEntropy)).expect("rewrite");
    let inputs: Vec<String> = step.inputs().into_iter().map(|(n, _)| n).collect();
    let params = ["conv.w", "bn.g", "bn.b", "fc.w", "fc.b", "aux.w"];
    let mut expect: Vec<String> = ["x", "labels", "step", "lr"].iter().map(|s| s.to_string()).collect();
    expect.extend(params.iter().map(|s| s.to_string()));
    for p in params {
        expect.push(format!("{p}.exp_avg"));
        expect.push(format!("{p}.exp_avg_sq"));
    }
    expect.extend(["bn.m".to_string(), "bn.v".to_string()]);
    assert_eq!(inputs, expect);
    let mut outs = vec!["loss".to_string()];
    outs.extend(params.iter().map(|p| format!("{p}.new")));
    for p in params {
        outs.push(format!("{p}.exp_avg.new"));
        outs.push(format!("{p}.exp_avg_sq.new"));
    }
    outs.extend(["bn.m.new".to_string(), "bn.v.new".to_string()]);
    assert_eq!(step.outputs(), outs);
    // Every parameter, state and buffer input has a default; step has none.
    let inits = step.initializers();
    for name in expect.iter().skip(4).chain(std::iter::once(&"lr".to_string())) {
        assert!(inits.contains(name), "no initializer for {name}");
    }
    assert!(!inits.contains(&"step".to_string()));
    // The batch dim stays symbolic; labels are [N].
    let shapes: std::collections::HashMap<_, _> = step.inputs().into_iter().collect();
    assert_eq!(shapes["x"], vec![None, Some(3), Some(6), Some(6)]);
    assert_eq!(shapes["labels"], vec![None]);
    assert_eq!(shapes["step"], Vec::<Option<i64>>::new());
    assert_eq!(step.buffers, vec!["bn.m", "bn.v"]);
    assert!(step.opset() >= 17);
    // The model's other output and whatever only it needs are pruned; the
    // untouched parameter passes through.
    let ops = step.ops();
    assert_eq!(ops.iter().filter(|o| *o == "Gemm").count(), 1 + 2, "forward Gemm plus its two gradients: {ops:?}");
    assert!(!ops.contains(&"BatchNormalization".to_string()), "training BatchNorm is written out");
}

#[test]
fn sgd_family_state_and_mse_labels() {
    let step = run(&cnn(), &opts(Algorithm::Sgdp, Loss::Mse)).expect("rewrite");
    let inputs: std::collections::HashMap<_, _> = step.inputs().into_iter().collect();
    assert!(inputs.contains_key("conv.w.momentum"));
    assert!(!inputs.contains_key("conv.w.exp_avg"));
    assert_eq!(inputs["labels"], vec![None, Some(5)], "labels shaped like the output");
}

#[test]
fn gradients_flag_adds_grad_outputs() {
    let mut o = opts(Algorithm::Sgd, Loss::CrossEntropy);
    o.gradients = true;
    let step = run(&cnn(), &o).expect("rewrite");
    let outs = step.outputs();
    assert!(outs.contains(&"conv.w.grad".to_string()) && outs.contains(&"aux.w.grad".to_string()));
}

#[test]
fn the_plan_drives_static_projection() {
    let b = cnn();
    let a = adamp_graph::analyze_bytes(b.to_bytes()).expect("analysis");
    let plan = adamp_graph::plan::build(&a, &Config::defaults(Algorithm::Adamp)).expect("plan");
    let mut o = opts(Algorithm::Adamp, Loss::CrossEntropy);
    o.detect = Detect::Static;
    let direct = run(&b, &o).expect("rewrite").encode().expect("encode");
    o.plan = Some(plan.clone());
    let planned = run(&b, &o).expect("rewrite").encode().expect("encode");
    assert_eq!(direct, planned, "the model's own plan gives the same graph");
    // A plan for another model is refused by name.
    let mut other = plan;
    other.tensors[0].name = "nope".into();
    let err = run(&b, &Options { plan: Some(other), ..o }).expect_err("mismatch").to_string();
    assert!(err.contains("nope") || err.contains("conv.w"), "{err}");
    // Static projection adds no cosine test; runtime adds one per tensor.
    let stat = run(&b, &Options { detect: Detect::Static, ..opts(Algorithm::Adamp, Loss::CrossEntropy) }).expect("static");
    let rt = run(&b, &Options { detect: Detect::Runtime, ..opts(Algorithm::Adamp, Loss::CrossEntropy) }).expect("runtime");
    let less = |s: &Rewritten| s.ops().iter().filter(|o| *o == "Less").count();
    // conv.w and fc.w; aux.w gets no gradient, so no update and no test.
    assert_eq!(less(&rt) - less(&stat), 2 * 2, "channel and layer tests for the updated tensors of 2+ dims");
}

#[test]
fn unsupported_op_names_node_op_and_the_supported_list() {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    init(&mut b, "w", &[4, 4]);
    b.node("MatMul", &["x", "w"], &["h"], &[]);
    b.node("Atan", &["h"], &["y"], &[]);
    b.output("y");
    let err = run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect_err("Atan has no rule").to_string();
    assert!(err.contains("Atan_1") && err.contains("(Atan)"), "{err}");
    assert!(err.contains("Supported ops:") && err.contains("Conv") && err.contains("BatchNormalization"), "{err}");
    assert!(err.contains("<memory>"), "names the model: {err}");

    // A custom-domain op on the gradient path, too.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    init(&mut b, "w", &[4, 4]);
    b.node("MatMul", &["x", "w"], &["h"], &[]);
    b.node_in_domain("com.example", "Relu", &["h"], &["y"], &[]);
    b.output("y");
    let err = run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect_err("custom op").to_string();
    assert!(err.contains("no gradient rule"), "{err}");
}

#[test]
fn an_op_off_the_gradient_path_needs_no_rule() {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    init(&mut b, "w", &[4, 4]);
    b.node("Atan", &["x"], &["c"], &[]);
    b.node("MatMul", &["c", "w"], &["y"], &[]);
    b.output("y");
    run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect("Atan only touches the input");
}

/// `y = If(cond)`, each branch one node reading outer values.
fn if_node(b: &mut GraphBuilder, then_op: (&str, &[&str]), else_op: (&str, &[&str])) {
    let branch = |name: &str, (op, ins): (&str, &[&str])| {
        let mut g = GraphBuilder::new(name, 17);
        let out = format!("{name}_out");
        g.node(op, ins, &[&out], &[]);
        g.output(&out);
        Attr::Graph(Box::new(g))
    };
    b.node("If", &["cond"], &["y"], &[("then_branch", branch("then", then_op)), ("else_branch", branch("else", else_op))]);
}

#[test]
fn subgraph_reading_a_parameter_is_not_a_constant() {
    // An If whose condition is only known at run time, reading a weight in
    // its branches: the gradient must not silently be zero.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    b.input("flag", &[]);
    init(&mut b, "w", &[4, 4]);
    b.node("MatMul", &["x", "w"], &["h"], &[]);
    b.node("Cast", &["flag"], &["cond"], &[("to", Attr::Int(9))]);
    if_node(&mut b, ("Relu", &["h"]), ("Neg", &["h"]));
    b.output("y");
    let err = run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect_err("If has no rule").to_string();
    assert!(err.contains("(If)"), "{err}");
}

#[test]
fn if_with_a_shape_decided_condition_is_inlined() {
    // PyTorch's squeeze(dim) exports `If(dim == 1)`; with a static dim the branch is known.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    init(&mut b, "w", &[4, 1]);
    b.initializer("one", &[], TensorData::I64(vec![1]));
    b.initializer("ax", &[1], TensorData::I64(vec![1]));
    b.node("MatMul", &["x", "w"], &["h"], &[]);
    b.node("Shape", &["h"], &["s"], &[]);
    b.node("Gather", &["s", "one"], &["d"], &[]);
    b.node("Equal", &["d", "one"], &["cond"], &[]);
    if_node(&mut b, ("Squeeze", &["h", "ax"]), ("Identity", &["h"]));
    b.output("y");
    let step = run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect("rewrite");
    assert!(!step.ops().contains(&"If".to_string()));
    assert!(step.ops().contains(&"Squeeze".to_string()));
}

#[test]
fn old_opsets_and_bad_outputs_are_refused() {
    let mut b = cnn();
    b = {
        let mut c = GraphBuilder::new("old", 10);
        c.input("x", &[-1, 4]);
        init(&mut c, "w", &[4, 4]);
        c.node("MatMul", &["x", "w"], &["y"], &[]);
        c.output("y");
        let _ = &mut b;
        c
    };
    let err = run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect_err("opset 10").to_string();
    assert!(err.contains("opset 10") && err.contains("11 to 23"), "{err}");

    // Cross-entropy needs [N, C] logits.
    let mut c = GraphBuilder::new("t", 17);
    c.input("x", &[-1, 4, 2]);
    init(&mut c, "w", &[2, 3]);
    c.node("MatMul", &["x", "w"], &["y"], &[]);
    c.output("y");
    let err = run(&c, &opts(Algorithm::Adamp, Loss::CrossEntropy)).expect_err("rank 3").to_string();
    assert!(err.contains("[N, C]") && err.contains("'y'"), "{err}");
    run(&c, &opts(Algorithm::Adamp, Loss::Mse)).expect("MSE takes any shape");
}

#[test]
fn reserved_names_are_refused() {
    let mut b = GraphBuilder::new("t", 17);
    b.input("labels", &[-1, 4]);
    init(&mut b, "w", &[4, 4]);
    b.node("MatMul", &["labels", "w"], &["y"], &[]);
    b.output("y");
    let err = run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect_err("labels taken").to_string();
    assert!(err.contains("'labels'"), "{err}");

    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    init(&mut b, "w", &[4, 4]);
    init(&mut b, "w.exp_avg", &[4]);
    b.node("MatMul", &["x", "w"], &["h"], &[]);
    b.node("Add", &["h", "w.exp_avg"], &["y"], &[]);
    b.output("y");
    let err = run(&b, &opts(Algorithm::Adamp, Loss::Mse)).expect_err("state name taken").to_string();
    assert!(err.contains("'w.exp_avg'"), "{err}");
}

#[test]
fn hostile_sizes_are_errors_not_panics() {
    // Pads that overflow the output-padding arithmetic.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[1, 1, 8, 8]);
    init(&mut b, "w", &[1, 1, 3, 3]);
    let big = i64::MAX - 2;
    b.node("Conv", &["x", "w"], &["y"], &[("pads", Attr::Ints(vec![big, big, big, big]))]);
    b.output("y");
    let err = run(&b, &opts(Algorithm::Sgd, Loss::Mse));
    assert!(err.is_err(), "overflowing pads are refused");
    let msg = err.expect_err("checked").to_string();
    assert!(msg.contains("Conv"), "{msg}");

    // A huge average-pool kernel.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[1, 2, 8, 8]);
    init(&mut b, "w", &[2, 2, 1, 1]);
    b.node("Conv", &["x", "w"], &["c"], &[]);
    b.node("AveragePool", &["c"], &["y"], &[("kernel_shape", Attr::Ints(vec![1 << 31, 1 << 31]))]);
    b.output("y");
    let msg = run(&b, &opts(Algorithm::Sgd, Loss::Mse)).expect_err("kernel larger than the input").to_string();
    assert!(msg.contains("AveragePool"), "{msg}");
}

#[test]
fn dropout_in_training_mode_keeps_its_mask_for_the_gradient() {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 4]);
    init(&mut b, "w", &[4, 4]);
    b.initializer("ratio", &[], TensorData::F32(vec![0.25]));
    b.node("Constant", &[], &["train"], &[("value", Attr::Tensor(vec![], TensorData::I64(vec![1])))]);
    b.node("Cast", &["train"], &["tm"], &[("to", Attr::Int(9))]);
    b.node("MatMul", &["x", "w"], &["h"], &[]);
    b.node("Dropout", &["h", "ratio", "tm"], &["y"], &[]);
    b.output("y");
    let step = run(&b, &opts(Algorithm::Sgd, Loss::Mse)).expect("rewrite");
    let ops = step.ops();
    assert!(ops.contains(&"Dropout".to_string()));
    assert!(ops.iter().filter(|o| *o == "Cast").count() >= 2, "the mask is cast and multiplied in: {ops:?}");
}

#[test]
fn cli_writes_atomically_and_never_touches_the_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("m.onnx");
    std::fs::write(&model, cnn().to_bytes()).expect("write");
    let before = std::fs::read(&model).expect("read");
    let out = dir.path().join("step.onnx");
    let bin = env!("CARGO_BIN_EXE_adamp-graph");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().expect("runs");
    let o = run(&["rewrite", model.to_str().unwrap(), "--loss", "cross-entropy", "--optimizer", "sgdp", "--momentum", "0.9", "-o", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(std::fs::read(&model).expect("read"), before);
    let written = std::fs::read(&out).expect("output");
    assert!(load_model_bytes(written).is_ok());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().contains(".tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Refusals: the input as output, Adam flags for SGD, a missing model.
    let o = run(&["rewrite", model.to_str().unwrap(), "--loss", "mse", "-o", model.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("overwrite"));
    assert_eq!(std::fs::read(&model).expect("read"), before);
    let o = run(&["rewrite", model.to_str().unwrap(), "--loss", "mse", "--optimizer", "sgd", "--betas", "0.9,0.99", "-o", out.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("--betas"));
    let o = run(&["rewrite", "missing.onnx", "--loss", "mse", "-o", out.to_str().unwrap()]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("missing.onnx"));
}

/// Every supported op (and a few others), with 0 to 4 inputs, odd attributes
/// and unknown shapes: the rewrite answers Ok or an error, never a panic.
#[test]
fn malformed_nodes_never_panic() {
    let mut ops: Vec<&str> = adamp_graph::rewrite::differentiable_ops();
    ops.extend(["Atan", "If", "Loop", "Shape", "Sign", "Resize", "DepthToSpace", "SpaceToDepth", "Tile", "Einsum", "ReduceMax", "ReduceProd", "Mean", "ConstantOfShape", "Range", "Upsample", "MeanVarianceNormalization", "LpPool", "GlobalMaxPool"]);
    let attr_sets: Vec<Vec<(&str, Attr)>> = vec![
        vec![],
        vec![("axis", Attr::Int(7)), ("axes", Attr::Ints(vec![-9, 40])), ("perm", Attr::Ints(vec![5, 5]))],
        vec![("kernel_shape", Attr::Ints(vec![0, -1])), ("strides", Attr::Ints(vec![0])), ("pads", Attr::Ints(vec![-3])), ("group", Attr::Int(0))],
        vec![("num_groups", Attr::Int(0)), ("p", Attr::Int(3)), ("approximate", Attr::Str("x".into())), ("training_mode", Attr::Int(1))],
    ];
    let mut outcomes = (0, 0);
    for op in &ops {
        for arity in 0..=4 {
            for (k, attrs) in attr_sets.iter().enumerate() {
                let mut b = GraphBuilder::new("t", 17);
                b.input("x", &[-1, 4, 3, 3]);
                init(&mut b, "w", &[4, 4, 1, 1]);
                b.node("Conv", &["x", "w"], &["h"], &[]);
                let mut ins = vec!["h".to_string()];
                for j in 1..arity {
                    let p = format!("p{j}");
                    init(&mut b, &p, &[4]);
                    ins.push(p);
                }
                let ins: Vec<&str> = ins.iter().take(arity).map(String::as_str).collect();
                b.node(op, &ins, &["y"], attrs);
                b.output("y");
                for loss in [Loss::Mse, Loss::CrossEntropy] {
                    let bytes = b.to_bytes();
                    let r = std::panic::catch_unwind(|| {
                        let m = load_model_bytes(bytes).expect("decodes");
                        rewrite(&m, &opts(Algorithm::Adamp, loss)).map(|s| s.encode().map(|_| ()))
                    });
                    match r {
                        Ok(Ok(_)) => outcomes.0 += 1,
                        Ok(Err(_)) => outcomes.1 += 1,
                        Err(_) => panic!("{op} with {arity} inputs and attribute set {k} panicked"),
                    }
                }
            }
        }
    }
    assert!(outcomes.0 > 0 && outcomes.1 > 0, "{outcomes:?}");
}

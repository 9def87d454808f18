//! One small graph per analysis rule, built in code, including soundness traps
//! where a naive rule would claim an invariance that does not hold.
use adamp_graph::analysis::{Analysis, ScaleClass};
use adamp_graph::onnx::{Attr, GraphBuilder, TensorData};

fn analyze(b: &GraphBuilder) -> Analysis {
    adamp_graph::analyze_bytes(b.to_bytes()).expect("analysis runs")
}

/// `channel:0`, `layer`, `joint:a,b`, `dead`, `none`, `unknown`.
fn class(a: &Analysis, name: &str) -> String {
    let p = a.param(name).unwrap_or_else(|| panic!("no parameter {name}: {:?}", a.parameters.iter().map(|p| &p.name).collect::<Vec<_>>()));
    match &p.class {
        ScaleClass::Channel { axis } => format!("channel:{axis}"),
        ScaleClass::Joint { group } => format!("joint:{}", group.join(",")),
        c => c.name().to_string(),
    }
}

fn w(b: &mut GraphBuilder, name: &str, dims: &[i64]) {
    b.initializer(name, dims, TensorData::Zeros);
}

fn ints(v: &[i64]) -> Attr {
    Attr::Ints(v.to_vec())
}

/// Appends a training-mode BatchNormalization over `c` channels.
fn bn(b: &mut GraphBuilder, x: &str, y: &str, c: i64, prefix: &str) {
    for s in ["g", "b", "m", "v"] {
        w(b, &format!("{prefix}.{s}"), &[c]);
    }
    let ins = [x.to_string(), format!("{prefix}.g"), format!("{prefix}.b"), format!("{prefix}.m"), format!("{prefix}.v")];
    let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
    let (rm, rv) = (format!("{prefix}.rm"), format!("{prefix}.rv"));
    b.node("BatchNormalization", &ins, &[y, &rm, &rv], &[("training_mode", Attr::Int(1))]);
}

fn conv_input(opset: i64) -> GraphBuilder {
    let mut b = GraphBuilder::new("t", opset);
    b.input("x", &[-1, 3, 8, 8]);
    b
}

#[test]
fn conv_then_batchnorm_is_channel_wise_and_bias_dead() {
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 3, 3]);
    w(&mut b, "B", &[4]);
    b.node("Conv", &["x", "W", "B"], &["c"], &[("pads", ints(&[1, 1, 1, 1]))]);
    bn(&mut b, "c", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "channel:0");
    assert_eq!(class(&a, "B"), "dead");
    assert_eq!(class(&a, "bn.g"), "none");
    assert!(a.param("bn.m").is_none(), "running statistics are not trainable");
    let ev = &a.param("W").unwrap().evidence;
    assert_eq!(ev.normalizers.len(), 1);
    assert!(ev.path.len() >= 2, "{ev:?}");
}

#[test]
fn relu_between_conv_and_batchnorm_keeps_weight_but_not_bias() {
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    w(&mut b, "B", &[4]);
    b.node("Conv", &["x", "W", "B"], &["c"], &[]);
    b.node("Relu", &["c"], &["r"], &[]);
    bn(&mut b, "r", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    // Relu(s*x + b) != s*Relu(x + b'): only the joint scale of weight and bias holds.
    assert_eq!(class(&a, "W"), "joint:B,W");
    assert_eq!(class(&a, "B"), "joint:B,W");
}

#[test]
fn bias_through_padded_conv_is_not_dead() {
    // conv(x + b) with zero padding differs at the borders: not a per-channel shift.
    let mut b = conv_input(17);
    w(&mut b, "W1", &[4, 3, 1, 1]);
    w(&mut b, "B1", &[4]);
    w(&mut b, "W2", &[4, 4, 3, 3]);
    b.node("Conv", &["x", "W1", "B1"], &["c1"], &[]);
    b.node("Conv", &["c1", "W2"], &["c2"], &[("pads", ints(&[1, 1, 1, 1]))]);
    bn(&mut b, "c2", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    // Not dead; scaling W1 and B1 together is a pure scale that passes the padding.
    assert_eq!(class(&a, "B1"), "joint:B1,W1");
    assert_eq!(class(&a, "W1"), "joint:B1,W1");
    assert_eq!(class(&a, "W2"), "channel:0");
}

#[test]
fn bias_through_unpadded_1x1_conv_and_residual_add_is_dead() {
    let mut b = conv_input(17);
    w(&mut b, "W1", &[3, 3, 1, 1]);
    w(&mut b, "B1", &[3]);
    w(&mut b, "W2", &[3, 3, 1, 1]);
    b.node("Conv", &["x", "W1", "B1"], &["c1"], &[]);
    b.node("Add", &["c1", "x"], &["s"], &[]);
    b.node("Conv", &["s", "W2"], &["c2"], &[]);
    bn(&mut b, "c2", "y", 3, "bn");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "B1"), "dead");
    // W1 feeds a residual add with unscaled data: not invariant.
    assert_eq!(class(&a, "W1"), "none");
}

#[test]
fn conv_transpose_weight_is_channel_wise_along_axis_1() {
    let mut b = conv_input(17);
    w(&mut b, "W", &[3, 5, 4, 4]);
    b.node("ConvTranspose", &["x", "W"], &["c"], &[("strides", ints(&[2, 2])), ("pads", ints(&[1, 1, 1, 1]))]);
    b.node("InstanceNormalization", &["c", "s", "t"], &["y"], &[]);
    w(&mut b, "s", &[5]);
    w(&mut b, "t", &[5]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "channel:1");
}

#[test]
fn gemm_axis_follows_trans_b_and_matmul_weight_is_axis_1() {
    for (trans_b, dims, axis) in [(1, [6, 10], 0), (0, [10, 6], 1)] {
        let mut b = GraphBuilder::new("t", 17);
        b.input("x", &[-1, 10]);
        w(&mut b, "W", &dims);
        b.node("Gemm", &["x", "W"], &["h"], &[("transB", Attr::Int(trans_b))]);
        bn(&mut b, "h", "y", 6, "bn");
        b.output("y");
        assert_eq!(class(&analyze(&b), "W"), format!("channel:{axis}"));
    }
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 10]);
    w(&mut b, "W", &[10, 6]);
    b.node("MatMul", &["x", "W"], &["h"], &[]);
    bn(&mut b, "h", "y", 6, "bn");
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "channel:1");
}

#[test]
fn linear_weight_and_bias_before_layernorm_are_joint() {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 7, 10]);
    w(&mut b, "W", &[10, 6]);
    w(&mut b, "B", &[6]);
    w(&mut b, "g", &[6]);
    w(&mut b, "beta", &[6]);
    b.node("MatMul", &["x", "W"], &["h"], &[]);
    b.node("Add", &["h", "B"], &["hb"], &[]);
    b.node("LayerNormalization", &["hb", "g", "beta"], &["y"], &[("axis", Attr::Int(-1))]);
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "joint:B,W");
    assert_eq!(class(&a, "B"), "joint:B,W");
    // LayerNorm over the features removes one global scale, not one per feature.
    let mut b2 = GraphBuilder::new("t", 17);
    b2.input("x", &[-1, 10]);
    w(&mut b2, "W", &[10, 6]);
    b2.node("MatMul", &["x", "W"], &["h"], &[]);
    b2.node("LayerNormalization", &["h", "g", "beta"], &["y"], &[("axis", Attr::Int(-1))]);
    w(&mut b2, "g", &[6]);
    w(&mut b2, "beta", &[6]);
    b2.output("y");
    assert_eq!(class(&analyze(&b2), "W"), "layer");
}

#[test]
fn groupnorm_gives_layer_not_channel() {
    let mut b = conv_input(21);
    w(&mut b, "W", &[4, 3, 3, 3]);
    w(&mut b, "s", &[4]);
    w(&mut b, "t", &[4]);
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("GroupNormalization", &["c", "s", "t"], &["y"], &[("num_groups", Attr::Int(2))]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "layer");
}

#[test]
fn groupnorm_decomposed_through_instance_norm_gives_layer() {
    // torch's GroupNorm export: Reshape [N, G, -1] -> InstanceNormalization -> Reshape back.
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 3, 3]);
    b.initializer("shape_g", &[3], TensorData::I64(vec![0, 2, -1]));
    b.initializer("ones", &[2], TensorData::F32(vec![1.0; 2]));
    b.initializer("zeros", &[2], TensorData::F32(vec![0.0; 2]));
    b.node("Conv", &["x", "W"], &["c"], &[("pads", ints(&[1, 1, 1, 1]))]);
    b.node("Reshape", &["c", "shape_g"], &["r"], &[]);
    b.node("InstanceNormalization", &["r", "ones", "zeros"], &["n"], &[]);
    b.node("Shape", &["c"], &["cs"], &[]);
    b.node("Reshape", &["n", "cs"], &["y"], &[]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "layer");
}

#[test]
fn channel_shuffle_and_concat_keep_channel_axis_to_batchnorm() {
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    b.initializer("s1", &[5], TensorData::I64(vec![0, 2, 2, 8, 8]));
    b.initializer("s2", &[4], TensorData::I64(vec![0, 4, 8, 8]));
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("Reshape", &["c", "s1"], &["r1"], &[]);
    b.node("Transpose", &["r1"], &["t"], &[("perm", ints(&[0, 2, 1, 3, 4]))]);
    b.node("Reshape", &["t", "s2"], &["r2"], &[]);
    b.node("Concat", &["r2", "x"], &["cat"], &[("axis", Attr::Int(1))]);
    bn(&mut b, "cat", "y", 7, "bn");
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "channel:0");
}

#[test]
fn second_consumer_breaks_invariance() {
    // Squeeze-excite style: the pre-normalization value also feeds a Sigmoid gate.
    let mut b = conv_input(17);
    w(&mut b, "W", &[3, 3, 1, 1]);
    b.node("Conv", &["x", "W"], &["c"], &[]);
    bn(&mut b, "c", "n", 3, "bn");
    b.node("Sigmoid", &["c"], &["gate"], &[]);
    b.node("Mul", &["n", "gate"], &["y"], &[]);
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "none");
    assert!(a.param("W").unwrap().evidence.reason.as_deref().unwrap_or("").contains("Sigmoid"));
}

#[test]
fn weight_normalization_and_standardization_on_the_weight() {
    // g * v / ||v|| with the norm over all axes but 0: v is channel-wise along 0.
    let mut b = conv_input(18);
    w(&mut b, "v", &[4, 3, 3, 3]);
    w(&mut b, "g", &[4, 1, 1, 1]);
    b.initializer("axes", &[3], TensorData::I64(vec![1, 2, 3]));
    b.node("ReduceL2", &["v", "axes"], &["nv"], &[("keepdims", Attr::Int(1))]);
    b.node("Div", &["v", "nv"], &["vn"], &[]);
    b.node("Mul", &["g", "vn"], &["wn"], &[]);
    b.node("Conv", &["x", "wn"], &["y"], &[]);
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "v"), "channel:0");
    assert_eq!(class(&a, "g"), "none");

    // (w - mean) / sqrt(mean((w - mean)^2) + eps)
    let mut b = conv_input(18);
    w(&mut b, "w", &[4, 3, 3, 3]);
    b.initializer("axes", &[3], TensorData::I64(vec![1, 2, 3]));
    b.initializer("two", &[], TensorData::F32(vec![2.0]));
    b.initializer("eps", &[], TensorData::F32(vec![1e-5]));
    b.node("ReduceMean", &["w", "axes"], &["m"], &[]);
    b.node("Sub", &["w", "m"], &["d"], &[]);
    b.node("Pow", &["d", "two"], &["d2"], &[]);
    b.node("ReduceMean", &["d2", "axes"], &["var"], &[]);
    b.node("Add", &["var", "eps"], &["ve"], &[]);
    b.node("Sqrt", &["ve"], &["sd"], &[]);
    b.node("Div", &["d", "sd"], &["ws"], &[]);
    b.node("Conv", &["x", "ws"], &["y"], &[]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "w"), "channel:0");
}

#[test]
fn lp_normalization_and_decomposed_l2_normalize() {
    // normalize(W, dim=1) of a weight [out, in]: each row may be scaled.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 5]);
    w(&mut b, "W", &[4, 5]);
    b.node("LpNormalization", &["W"], &["Wn"], &[("axis", Attr::Int(1)), ("p", Attr::Int(2))]);
    b.node("Gemm", &["x", "Wn"], &["y"], &[("transB", Attr::Int(1))]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "channel:0");

    // F.normalize(x @ W, dim=1): ReduceL2 -> Clip(eps) -> Expand -> Div
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 5]);
    w(&mut b, "W", &[5, 4]);
    b.initializer("axes", &[1], TensorData::I64(vec![1]));
    b.initializer("eps", &[], TensorData::F32(vec![1e-12]));
    b.node("MatMul", &["x", "W"], &["h"], &[]);
    b.node("ReduceL2", &["h", "axes"], &["n"], &[("keepdims", Attr::Int(1))]);
    b.node("Clip", &["n", "eps"], &["nc"], &[]);
    b.node("Shape", &["h"], &["hs"], &[]);
    b.node("Expand", &["nc", "hs"], &["ne"], &[]);
    b.node("Div", &["h", "ne"], &["y"], &[]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "layer");
}

#[test]
fn decomposed_layer_norm_and_rms_norm() {
    for rms in [false, true] {
        let mut b = GraphBuilder::new("t", 13);
        b.input("x", &[-1, 8]);
        w(&mut b, "W", &[8, 6]);
        b.initializer("two", &[], TensorData::F32(vec![2.0]));
        b.initializer("eps", &[], TensorData::F32(vec![1e-6]));
        b.initializer("axes", &[1], TensorData::I64(vec![-1]));
        b.node("MatMul", &["x", "W"], &["h"], &[]);
        let centered = if rms {
            "h"
        } else {
            b.node("ReduceMean", &["h", "axes"], &["mu"], &[]);
            b.node("Sub", &["h", "mu"], &["hc"], &[]);
            "hc"
        };
        b.node("Pow", &[centered, "two"], &["sq"], &[]);
        b.node("ReduceMean", &["sq", "axes"], &["var"], &[]);
        b.node("Add", &["var", "eps"], &["ve"], &[]);
        b.node("Sqrt", &["ve"], &["sd"], &[]);
        b.node("Div", &[centered, "sd"], &["y"], &[]);
        b.output("y");
        assert_eq!(class(&analyze(&b), "W"), "layer", "rms={rms}");
    }
}

#[test]
fn adding_a_large_constant_before_a_root_is_not_an_epsilon() {
    let mut b = GraphBuilder::new("t", 13);
    b.input("x", &[-1, 8]);
    w(&mut b, "W", &[8, 6]);
    b.initializer("two", &[], TensorData::F32(vec![2.0]));
    b.initializer("one", &[], TensorData::F32(vec![1.0]));
    b.initializer("axes", &[1], TensorData::I64(vec![-1]));
    b.node("MatMul", &["x", "W"], &["h"], &[]);
    b.node("Pow", &["h", "two"], &["sq"], &[]);
    b.node("ReduceMean", &["sq", "axes"], &["var"], &[]);
    b.node("Add", &["var", "one"], &["ve"], &[]);
    b.node("Sqrt", &["ve"], &["sd"], &[]);
    b.node("Div", &["h", "sd"], &["y"], &[]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "none");
}

#[test]
fn homogeneous_ops_pass_and_nonlinear_ops_stop() {
    for (op, attrs, expect) in [
        ("Relu", vec![], "channel:0"),
        ("LeakyRelu", vec![("alpha", Attr::Float(0.1))], "channel:0"),
        ("MaxPool", vec![("kernel_shape", ints(&[2, 2]))], "channel:0"),
        ("AveragePool", vec![("kernel_shape", ints(&[2, 2]))], "channel:0"),
        ("Dropout", vec![], "channel:0"),
        ("Identity", vec![], "channel:0"),
        ("Sigmoid", vec![], "none"),
        ("Tanh", vec![], "none"),
        ("Elu", vec![], "none"),
        ("HardSwish", vec![], "none"),
    ] {
        let mut b = conv_input(17);
        w(&mut b, "W", &[4, 3, 1, 1]);
        b.node("Conv", &["x", "W"], &["c"], &[]);
        b.node(op, &["c"], &["a"], &attrs);
        bn(&mut b, "a", "y", 4, "bn");
        b.output("y");
        assert_eq!(class(&analyze(&b), "W"), expect, "through {op}");
    }
}

#[test]
fn resize_pad_and_constant_scaling_pass() {
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    b.initializer("pads", &[8], TensorData::I64(vec![0, 0, 1, 1, 0, 0, 1, 1]));
    b.initializer("k", &[4, 1, 1], TensorData::F32(vec![-2.0, 0.5, 3.0, 1.0]));
    b.initializer("scales", &[4], TensorData::F32(vec![1.0, 1.0, 2.0, 2.0]));
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("Pad", &["c", "pads"], &["p"], &[]);
    b.node("Mul", &["p", "k"], &["m"], &[]);
    b.node("Resize", &["m", "", "scales"], &["r"], &[("mode", Attr::Str("nearest".into()))]);
    bn(&mut b, "r", "y", 4, "bn");
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "channel:0");
}

#[test]
fn eval_mode_batchnorm_is_not_a_normalizer() {
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    for s in ["g", "b", "m", "v"] {
        w(&mut b, s, &[4]);
    }
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("BatchNormalization", &["c", "g", "b", "m", "v"], &["y"], &[]);
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "none");
    assert!(a.warnings.iter().any(|w| w.code == "eval-batchnorm"));
}

#[test]
fn eval_mode_batchnorm_turns_a_scale_into_a_shift() {
    // y = a x + b: scaling x gives S y + (1 - S) b, which Relu does not commute with.
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    w(&mut b, "W2", &[4, 4, 1, 1]);
    for s in ["g", "b", "m", "v"] {
        w(&mut b, s, &[4]);
    }
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("BatchNormalization", &["c", "g", "b", "m", "v"], &["e"], &[]);
    b.node("Relu", &["e"], &["r"], &[]);
    b.node("Conv", &["r", "W2"], &["c2"], &[]);
    bn(&mut b, "c2", "y", 4, "bn2");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "none");
    // Without the Relu, the trained BatchNorm removes the per-channel scale and shift.
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    for s in ["g", "b", "m", "v"] {
        w(&mut b, s, &[4]);
    }
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("BatchNormalization", &["c", "g", "b", "m", "v"], &["e"], &[]);
    bn(&mut b, "e", "y", 4, "bn2");
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "channel:0");
}

#[test]
fn unsupported_op_gives_unknown_not_an_error() {
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node_in_domain("com.example", "Mystery", &["c"], &["m"], &[]);
    bn(&mut b, "m", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "unknown");
    let w = a.warnings.iter().find(|w| w.code == "unsupported-ops").expect("warning");
    assert!(w.message.contains("com.example::Mystery"));
}

#[test]
fn reshape_with_unknown_dims_is_unknown_for_channels_only() {
    // A runtime-computed shape hides which axis the channels land on.
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    b.input("shape", &[4]);
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("Cast", &["shape"], &["si"], &[("to", Attr::Int(7))]);
    b.node("Reshape", &["c", "si"], &["r"], &[]);
    bn(&mut b, "r", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    // The global scale passes any reshape; the per-channel one cannot be tracked.
    assert_eq!(class(&a, "W"), "layer");
}

#[test]
fn per_sample_scale_is_not_removed_by_batchnorm() {
    // x * s(x) where s varies per sample: BatchNorm's batch statistics do not undo it.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 10]);
    w(&mut b, "W", &[10, 6]);
    b.initializer("axes", &[1], TensorData::I64(vec![1]));
    b.node("MatMul", &["x", "W"], &["h"], &[]);
    b.node("ReduceSum", &["h", "axes"], &["s"], &[]);
    b.node("Mul", &["h", "s"], &["hs"], &[]);
    bn(&mut b, "hs", "y", 6, "bn");
    b.output("y");
    let a = analyze(&b);
    // h scales by c, s by c, h*s by c^2 globally: still removed. Per-column scaling of
    // W makes s a mixture: not channel-wise.
    assert_eq!(class(&a, "W"), "layer");
}

#[test]
fn values_read_inside_subgraphs_make_a_parameter_unknown() {
    // An If whose branches read W (outer scope) and the conv output.
    let mut then_branch = GraphBuilder::new("then", 17);
    then_branch.node("Relu", &["c"], &["t_out"], &[]);
    then_branch.output("t_out");
    let mut else_branch = GraphBuilder::new("else", 17);
    else_branch.node("Neg", &["c"], &["e_out"], &[]);
    else_branch.output("e_out");
    let mut b = conv_input(17);
    b.input("cond", &[]);
    w(&mut b, "W", &[4, 3, 1, 1]);
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("If", &["cond"], &["i"], &[("then_branch", Attr::Graph(Box::new(then_branch))), ("else_branch", Attr::Graph(Box::new(else_branch)))]);
    bn(&mut b, "i", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "unknown");
    assert!(a.param("W").unwrap().evidence.reason.as_deref().unwrap_or("").contains("subgraph"));
}

#[test]
fn a_transpose_that_swaps_varying_axes_does_not_cancel() {
    // r = v / v^T with v = reshape(W, [2, 2]): scaling W per element scales v by a
    // 2-D pattern s, and v^T by s^T, so the ratio changes; one global factor cancels.
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[-1, 2, 2]);
    w(&mut b, "W", &[4]);
    b.initializer("shape", &[2], TensorData::I64(vec![2, 2]));
    b.node("Reshape", &["W", "shape"], &["v"], &[]);
    b.node("Transpose", &["v"], &["vt"], &[("perm", ints(&[1, 0]))]);
    b.node("Div", &["v", "vt"], &["r"], &[]);
    b.node("Mul", &["x", "r"], &["y"], &[]);
    b.output("y");
    assert_eq!(class(&analyze(&b), "W"), "layer");
}

/// Conv(x [N,3,8,8], W [4,3,1,1]) -> `tail` -> output; the class of W.
fn conv_then(tail: &dyn Fn(&mut GraphBuilder) -> String) -> String {
    let mut b = conv_input(18);
    w(&mut b, "W", &[4, 3, 1, 1]);
    b.node("Conv", &["x", "W"], &["c"], &[]);
    let out = tail(&mut b);
    b.output(&out);
    class(&analyze(&b), "W")
}

#[test]
fn layout_selection_and_misc_rules() {
    let i64s = |b: &mut GraphBuilder, name: &str, v: &[i64]| {
        b.initializer(name, &[v.len() as i64], TensorData::I64(v.to_vec()));
    };
    // Slice along space keeps the channel factor; BatchNorm removes it.
    let got = conv_then(&|b| {
        i64s(b, "st", &[0]);
        i64s(b, "en", &[4]);
        i64s(b, "ax", &[2]);
        b.node("Slice", &["c", "st", "en", "ax"], &["s"], &[]);
        bn(b, "s", "y", 4, "bn");
        "y".into()
    });
    assert_eq!(got, "channel:0", "Slice along space");
    // Split along channels, one half to the output: still per-channel through BN each.
    let got = conv_then(&|b| {
        i64s(b, "sp", &[2, 2]);
        b.node("Split", &["c", "sp"], &["s0", "s1"], &[("axis", Attr::Int(1))]);
        bn(b, "s0", "y0", 2, "bn0");
        bn(b, "s1", "y1", 2, "bn1");
        b.node("Concat", &["y0", "y1"], &["y"], &[("axis", Attr::Int(1))]);
        "y".into()
    });
    assert_eq!(got, "channel:0", "Split along channels");
    // Gather along space with constant indices keeps the channel factor.
    let got = conv_then(&|b| {
        i64s(b, "idx", &[0, 3, 5]);
        b.node("Gather", &["c", "idx"], &["g"], &[("axis", Attr::Int(3))]);
        bn(b, "g", "y", 4, "bn");
        "y".into()
    });
    assert_eq!(got, "channel:0", "Gather along space");
    // Tile along space; DepthToSpace mixes channels into space (per-channel breaks).
    let got = conv_then(&|b| {
        i64s(b, "rep", &[1, 1, 2, 2]);
        b.node("Tile", &["c", "rep"], &["t"], &[]);
        bn(b, "t", "y", 4, "bn");
        "y".into()
    });
    assert_eq!(got, "channel:0", "Tile along space keeps each channel's factor");
    let got = conv_then(&|b| {
        b.node("DepthToSpace", &["c"], &["d"], &[("blocksize", Attr::Int(2))]);
        bn(b, "d", "y", 1, "bn");
        "y".into()
    });
    assert_eq!(got, "layer", "DepthToSpace");
    // Flatten after global pooling, then BatchNorm1d over features.
    let got = conv_then(&|b| {
        b.node("GlobalAveragePool", &["c"], &["p"], &[]);
        b.node("Flatten", &["p"], &["f"], &[]);
        bn(b, "f", "y", 4, "bn");
        "y".into()
    });
    assert_eq!(got, "channel:0", "GlobalAveragePool + Flatten + BN1d");
    // MeanVarianceNormalization (default axes N, H, W) removes per-channel changes.
    let got = conv_then(&|b| {
        b.node("MeanVarianceNormalization", &["c"], &["y"], &[]);
        "y".into()
    });
    assert_eq!(got, "channel:0", "MeanVarianceNormalization");
    // ArgMax over space is unchanged by per-channel positive scales; over channels it is not.
    let got = conv_then(&|b| {
        i64s(b, "to3", &[0, 4, -1]);
        b.node("Reshape", &["c", "to3"], &["f"], &[]);
        b.node("ArgMax", &["f"], &["y"], &[("axis", Attr::Int(2))]);
        "y".into()
    });
    assert_eq!(got, "channel:0", "ArgMax over space");
    let got = conv_then(&|b| {
        b.node("ArgMax", &["c"], &["y"], &[("axis", Attr::Int(1))]);
        "y".into()
    });
    assert_eq!(got, "layer", "ArgMax over channels");
    // PRelu with a constant slope is homogeneous; a bounded Clip (Relu6) is not.
    let got = conv_then(&|b| {
        w(b, "slope", &[4, 1, 1]);
        b.node("PRelu", &["c", "slope"], &["r"], &[]);
        bn(b, "r", "y", 4, "bn");
        "y".into()
    });
    assert_eq!(got, "channel:0", "PRelu");
    let got = conv_then(&|b| {
        b.initializer("lo", &[], TensorData::F32(vec![0.0]));
        b.initializer("hi", &[], TensorData::F32(vec![6.0]));
        b.node("Clip", &["c", "lo", "hi"], &["r"], &[]);
        bn(b, "r", "y", 4, "bn");
        "y".into()
    });
    assert_eq!(got, "none", "Relu6 does not commute with scaling");
    // Max with a large constant is not a clamp by an epsilon.
    let got = conv_then(&|b| {
        b.initializer("one", &[], TensorData::F32(vec![1.0]));
        b.node("Max", &["c", "one"], &["r"], &[]);
        bn(b, "r", "y", 4, "bn");
        "y".into()
    });
    assert_eq!(got, "none", "Max(x, 1)");
    // Softmax over channels is not homogeneous.
    let got = conv_then(&|b| {
        b.node("Softmax", &["c"], &["y"], &[("axis", Attr::Int(1))]);
        "y".into()
    });
    assert_eq!(got, "none", "Softmax");
    // A reduction over channels mixes differently scaled channels.
    let got = conv_then(&|b| {
        i64s(b, "ax", &[1]);
        b.node("ReduceSum", &["c", "ax"], &["s"], &[]);
        b.node("LayerNormalization", &["s"], &["y"], &[("axis", Attr::Int(-1))]);
        "y".into()
    });
    assert_eq!(got, "layer", "ReduceSum over channels then LayerNorm");
}

/// Stochastic depth as torchvision exports it in training mode:
/// `x + block(x) * (RandomUniformLike(noise) < p) / p`, noise per sample.
fn stochastic_depth(b: &mut GraphBuilder, x: &str, y: &str, prefix: &str) {
    let t = |s: &str| format!("{prefix}.{s}");
    b.initializer(&t("shape"), &[4], TensorData::I64(vec![2, 1, 1, 1]));
    b.initializer(&t("p"), &[], TensorData::F32(vec![0.8]));
    b.node("ConstantOfShape", &[&t("shape")], &[&t("zeros")], &[("value", Attr::Tensor(vec![1], TensorData::F32(vec![0.0])))]);
    b.node("RandomUniformLike", &[&t("zeros")], &[&t("u")], &[]);
    b.node("Less", &[&t("u"), &t("p")], &[&t("keep")], &[]);
    b.node("Cast", &[&t("keep")], &[&t("kf")], &[("to", Attr::Int(1))]);
    b.node("Div", &[&t("kf"), &t("p")], &[&t("mask")], &[]);
    b.node("Mul", &[x, &t("mask")], &[y], &[]);
}

#[test]
fn stochastic_depth_keeps_shapes_and_invariance() {
    let mut b = GraphBuilder::new("t", 17);
    b.input("x", &[2, 4, 8, 8]);
    w(&mut b, "W1", &[4, 4, 3, 3]);
    w(&mut b, "W2", &[4, 4, 1, 1]);
    b.node("Conv", &["x", "W1"], &["c1"], &[("pads", ints(&[1, 1, 1, 1]))]);
    bn(&mut b, "c1", "n1", 4, "bn1");
    stochastic_depth(&mut b, "n1", "sd", "sd");
    b.node("Add", &["x", "sd"], &["res"], &[]);
    b.node("Conv", &["res", "W2"], &["c2"], &[]);
    bn(&mut b, "c2", "y", 4, "bn2");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W1"), "channel:0");
    assert_eq!(class(&a, "W2"), "channel:0", "{:?}", a.param("W2").unwrap().evidence);
    // gamma of the first norm: scaled by the random mask, then added to x: not invariant
    assert_eq!(class(&a, "bn1.g"), "none");
    assert!(a.warnings.iter().all(|w| w.code != "unsupported-ops"), "{:?}", a.warnings);
}

#[test]
fn random_mask_of_a_biased_value_is_not_a_shift() {
    // mask * (conv + B): the bias' contribution varies per element with the draw,
    // so BatchNorm does not remove it; only W and B scaled together pass.
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    w(&mut b, "B", &[4]);
    b.node("Conv", &["x", "W", "B"], &["c"], &[]);
    b.initializer("p", &[], TensorData::F32(vec![0.5]));
    b.node("RandomUniformLike", &["c"], &["u"], &[]);
    b.node("Less", &["u", "p"], &["keep"], &[]);
    b.node("Cast", &["keep"], &["m"], &[("to", Attr::Int(1))]);
    b.node("Mul", &["c", "m"], &["d"], &[]);
    bn(&mut b, "d", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "B"), "joint:B,W");
    assert_eq!(class(&a, "W"), "joint:B,W");
}

#[test]
fn bernoulli_of_a_changed_value_is_not_invariant() {
    // The draw compares against the changed probabilities: the mask changes.
    let mut b = conv_input(17);
    w(&mut b, "W", &[4, 3, 1, 1]);
    b.node("Conv", &["x", "W"], &["c"], &[]);
    b.node("Sigmoid", &["x"], &["unused"], &[]);
    b.node("Relu", &["c"], &["r"], &[]);
    b.node("Bernoulli", &["r"], &["m"], &[]);
    b.node("Mul", &["c", "m"], &["d"], &[]);
    bn(&mut b, "d", "y", 4, "bn");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W"), "none");
}

#[test]
fn an_op_without_rule_does_not_erase_shapes_after_it() {
    // A custom op hides its output's shape; the Conv after it has its weight's
    // rank by definition, so the weights after the custom op are still decided.
    let mut b = conv_input(17);
    w(&mut b, "W0", &[4, 3, 1, 1]);
    w(&mut b, "W1", &[4, 4, 3, 3]);
    w(&mut b, "W2", &[4, 4, 1, 1]);
    b.node("Conv", &["x", "W0"], &["c0"], &[]);
    b.node_in_domain("com.example", "Mystery", &["c0"], &["h"], &[]);
    b.node("Conv", &["h", "W1"], &["c1"], &[("pads", ints(&[1, 1, 1, 1]))]);
    bn(&mut b, "c1", "n1", 4, "bn1");
    b.node("Relu", &["n1"], &["r"], &[]);
    b.node("Add", &["r", "h"], &["s"], &[]);
    b.node("MaxPool", &["s"], &["p"], &[("kernel_shape", ints(&[2, 2]))]);
    b.node("Conv", &["p", "W2"], &["c2"], &[]);
    bn(&mut b, "c2", "y", 4, "bn2");
    b.output("y");
    let a = analyze(&b);
    assert_eq!(class(&a, "W0"), "unknown");
    assert_eq!(class(&a, "W1"), "channel:0", "{:?}", a.param("W1").unwrap().evidence);
    assert_eq!(class(&a, "W2"), "channel:0", "{:?}", a.param("W2").unwrap().evidence);
}

/// The folded-normalization warning needs the trace of a fold (every Conv
/// carries a bias, and there are several); a patch stem before MLPs, or an
/// MLP, never had a normalization to fold.
#[test]
fn folded_normalization_is_claimed_only_for_folded_looking_cnns() {
    let warned = |b: &GraphBuilder| analyze(b).warnings.iter().any(|w| w.code == "folded-normalization");
    let mut stem = conv_input(17);
    w(&mut stem, "W", &[4, 3, 4, 4]);
    w(&mut stem, "B", &[4]);
    stem.node("Conv", &["x", "W", "B"], &["c"], &[("strides", ints(&[4, 4]))]);
    stem.node("Flatten", &["c"], &["f"], &[]);
    w(&mut stem, "fc", &[16, 5]);
    stem.node("MatMul", &["f", "fc"], &["y"], &[]);
    stem.output("y");
    assert!(!warned(&stem), "one Conv stem and an MLP: nothing was folded");
    let mut cnn = conv_input(17);
    for (i, (x, y)) in [("x", "c1"), ("c1", "c2")].into_iter().enumerate() {
        let (wn, bn) = (format!("W{i}"), format!("B{i}"));
        w(&mut cnn, &wn, &[3, 3, 3, 3]);
        w(&mut cnn, &bn, &[3]);
        cnn.node("Conv", &[x, &wn, &bn], &[y], &[("pads", ints(&[1, 1, 1, 1]))]);
    }
    cnn.output("c2");
    assert!(warned(&cnn), "every Conv with a bias and no normalization: probably folded");
}

/// Split sizes that are negative or do not add up to the axis leave the
/// outputs' dims along it unknown, never negative (a negative dim once
/// surfaced as an error about the rewrite's own `labels` input).
#[test]
fn invalid_split_sizes_give_unknown_dims() {
    use adamp_graph::ir::Dim;
    for sizes in [vec![-1, 5], vec![1, 1]] {
        let mut b = GraphBuilder::new("t", 13);
        b.input("x", &[2, 4]);
        b.initializer("sizes", &[2], TensorData::I64(sizes.clone()));
        b.node("Split", &["x", "sizes"], &["a", "b"], &[("axis", Attr::Int(1))]);
        b.output("a");
        b.output("b");
        let model = adamp_graph::onnx::load_model_bytes(b.to_bytes()).expect("loads");
        let g = adamp_graph::ir::from_model(&model).expect("ir");
        for out in ["a", "b"] {
            let shape = g.values[g.value_by_name(out).expect("output")].shape.clone().expect("rank known");
            assert_eq!(shape, vec![Dim::Known(2), Dim::Unknown], "sizes {sizes:?}, output {out}");
        }
    }
}

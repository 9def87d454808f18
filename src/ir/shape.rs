//! Shape inference and constant propagation of small integer tensors.
//!
//! Only what the analysis needs: ranks and dims through the ops that carry
//! activations, and the values of shape arithmetic (`Shape` → `Gather` →
//! `Concat` → `Reshape`), symbolic dims included. Declared shapes
//! (value_info) fill what inference cannot know.
use super::{AttrValue, DType, Dim, Graph, Node, Value};

/// The ops [`infer`] has a shape rule for (until the op registry gives each op
/// one home, this list is kept next to the rules by hand).
pub const SHAPE_RULE_OPS: &[&str] = &[
    "Constant",
    "Identity",
    "Cast",
    "CastLike",
    "Relu",
    "LeakyRelu",
    "PRelu",
    "Sigmoid",
    "Tanh",
    "Elu",
    "Selu",
    "Celu",
    "HardSigmoid",
    "HardSwish",
    "Gelu",
    "Erf",
    "Exp",
    "Log",
    "Neg",
    "Abs",
    "Sqrt",
    "Reciprocal",
    "Softplus",
    "Softsign",
    "Clip",
    "Softmax",
    "LogSoftmax",
    "LayerNormalization",
    "InstanceNormalization",
    "GroupNormalization",
    "LpNormalization",
    "RMSNormalization",
    "Mish",
    "Floor",
    "Ceil",
    "Round",
    "Sign",
    "Sin",
    "Cos",
    "ThresholdedRelu",
    "Shrink",
    "Not",
    "IsNaN",
    "IsInf",
    "CumSum",
    "Trilu",
    "Tan",
    "Asin",
    "Acos",
    "Atan",
    "Sinh",
    "Cosh",
    "Asinh",
    "Acosh",
    "Atanh",
    "Hardmax",
    "CumProd",
    "Swish",
    "EyeLike",
    "ReverseSequence",
    "LRN",
    "MeanVarianceNormalization",
    "Binarizer",
    "Scatter",
    "BitwiseNot",
    "RotaryEmbedding",
    "TensorScatter",
    "RegexFullMatch",
    "RandomUniform",
    "RandomNormal",
    "RandomUniformLike",
    "RandomNormalLike",
    "Bernoulli",
    "Multinomial",
    "Dropout",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Div",
    "Pow",
    "Max",
    "Min",
    "Sum",
    "Mean",
    "Equal",
    "Less",
    "Greater",
    "LessOrEqual",
    "GreaterOrEqual",
    "And",
    "Or",
    "Xor",
    "Mod",
    "Where",
    "BitShift",
    "BitwiseAnd",
    "BitwiseOr",
    "BitwiseXor",
    "StringConcat",
    "Conv",
    "ConvTranspose",
    "ConvInteger",
    "DeformConv",
    "QLinearConv",
    "MaxPool",
    "AveragePool",
    "LpPool",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "Gemm",
    "MatMul",
    "Shape",
    "Size",
    "Reshape",
    "Flatten",
    "Transpose",
    "Squeeze",
    "Unsqueeze",
    "Concat",
    "Split",
    "Slice",
    "Gather",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceL2",
    "ReduceL1",
    "ReduceProd",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    "ReduceLogSum",
    "ArgMax",
    "ArgMin",
    "Expand",
    "Pad",
    "Resize",
    "Upsample",
    "ConstantOfShape",
    "DepthToSpace",
    "SpaceToDepth",
    "Range",
    "TopK",
    "OneHot",
    "GatherND",
    "GridSample",
    "AffineGrid",
    "RNN",
    "GRU",
    "LSTM",
    "HannWindow",
    "HammingWindow",
    "BlackmanWindow",
    "Det",
    "MatMulInteger",
    "QLinearMatMul",
    "QuantizeLinear",
    "DequantizeLinear",
    "DynamicQuantizeLinear",
    "RoiAlign",
    "NegativeLogLikelihoodLoss",
    "SoftmaxCrossEntropyLoss",
    "CenterCropPad",
    "Attention",
    "BitCast",
    "Col2Im",
    "DFT",
    "MaxUnpool",
    "GatherElements",
    "Einsum",
    "ScatterElements",
    "ScatterND",
    "Tile",
    "Adagrad",
    "Momentum",
    "Adam",
];

/// Largest integer tensor whose elements are tracked.
pub(crate) const MAX_TRACKED_INTS: usize = 64;

/// An exporter's declaration for a value: element type and shape (value_info).
pub(crate) type Declared = (Option<DType>, Option<Vec<Dim>>);

/// Rounds of forward inference; constraints from consumers are gathered between them.
const INFERENCE_ROUNDS: usize = 3;

/// True for ops that draw random numbers: never constant, whatever their inputs.
pub(crate) fn is_random(op: &str) -> bool {
    matches!(op, "RandomNormal" | "RandomUniform" | "RandomNormalLike" | "RandomUniformLike" | "Multinomial" | "Bernoulli" | "Dropout")
}

/// Fills shapes, `ints`, `scalar` and `is_const` for every value, in node order.
///
/// Forward rules come first; where they cannot fix a rank, the op definitions of
/// the consumers can (a Conv's input has its weight's rank), and a further
/// forward round carries that on. Declared shapes (`declared`, from value_info)
/// fill only what neither knows; a declaration that contradicts the inferred
/// shape is recorded in [`Graph::shape_conflicts`] and the inferred one is used.
pub(crate) fn infer(g: &mut Graph, declared: &[Option<Declared>]) {
    for init in &g.initializers {
        let v = &mut g.values[init.value];
        v.is_const = true;
        v.ints = init.tensor.as_ints().map(|xs| xs.into_iter().map(Dim::Known).collect());
        v.scalar = init.tensor.as_scalar();
    }
    for round in 0..INFERENCE_ROUNDS {
        let conflicts = forward(g, declared);
        let last = round + 1 == INFERENCE_ROUNDS;
        if last || !backward(g) {
            g.shape_conflicts = conflicts;
            break;
        }
    }
}

/// One forward pass over the nodes; returns the declarations that disagreed.
fn forward(g: &mut Graph, declared: &[Option<Declared>]) -> Vec<super::ShapeConflict> {
    let mut conflicts = Vec::new();
    for id in 0..g.nodes.len() {
        let node = &g.nodes[id];
        let is_const = node.inputs.iter().flatten().all(|&v| g.values[v].is_const)
            && node.implicit_inputs.is_empty()
            && !is_random(&node.op_type);
        let inferred = infer_node(g, node);
        for (k, out) in node.outputs.clone().iter().enumerate() {
            let Some(out) = *out else { continue };
            let (shape, ints, scalar, dtype) = inferred.get(k).cloned().unwrap_or_default();
            let (decl_dtype, decl_shape) = declared.get(out).cloned().flatten().unwrap_or_default();
            let known = refine(shape, g.values[out].shape.take());
            let (shape, conflict) = reconcile(known.clone(), decl_shape.clone());
            if conflict {
                conflicts.push(super::ShapeConflict {
                    value: out,
                    declared: g.dims_string(decl_shape.as_deref()),
                    inferred: g.dims_string(known.as_deref()),
                });
            }
            // A one-element value with an integral scalar is also shape ints: float
            // shape arithmetic (timm's pad_same) meets integer shapes in a Concat.
            let one_element = shape.as_ref().is_some_and(|s| s.iter().all(|d| *d == Dim::Known(1)));
            let ints = match (ints, scalar) {
                (None | Some(_), Some(x)) if one_element && x.fract() == 0.0 && x.abs() < 9.0e15 => Some(vec![Dim::Known(x as i64)]),
                (ints, _) => ints,
            };
            let v = &mut g.values[out];
            v.is_const = is_const;
            v.shape = shape;
            v.dtype = dtype.or(v.dtype).or(decl_dtype);
            v.ints = ints;
            v.scalar = scalar;
        }
    }
    conflicts
}

/// Combines two derivations of one shape: known dims from either, `first` on conflict.
fn refine(first: Option<Vec<Dim>>, second: Option<Vec<Dim>>) -> Option<Vec<Dim>> {
    match (first, second) {
        (Some(a), Some(b)) if a.len() == b.len() => Some(
            a.iter()
                .zip(&b)
                .map(|(x, y)| match (x, y) {
                    (Dim::Known(_), _) => *x,
                    (_, Dim::Known(_)) => *y,
                    (Dim::Sym(_), _) => *x,
                    _ => *y,
                })
                .collect(),
        ),
        (Some(a), _) => Some(a),
        (None, b) => b,
    }
}

/// Fills unknown dims (or an unknown rank) from a declaration that agrees;
/// true when it disagrees (another rank, or another known size), and then the
/// inferred shape stands.
fn reconcile(inferred: Option<Vec<Dim>>, declared: Option<Vec<Dim>>) -> (Option<Vec<Dim>>, bool) {
    match (inferred, declared) {
        (Some(i), Some(d)) => {
            let agrees = i.len() == d.len()
                && i.iter().zip(&d).all(|(a, b)| !matches!((a, b), (Dim::Known(x), Dim::Known(y)) if x != y));
            if agrees {
                (refine(Some(i), Some(d)), false)
            } else {
                (Some(i), true)
            }
        }
        (i, None) => (i, false),
        (None, d) => (d, false),
    }
}

/// Shapes the op definitions of the consumers imply for values whose shape is
/// not (fully) known; true when anything was learned.
fn backward(g: &mut Graph) -> bool {
    let mut learned = false;
    for id in (0..g.nodes.len()).rev() {
        let node = &g.nodes[id];
        if !node.is_default_domain() {
            continue;
        }
        for (slot, hint) in input_constraints(g, node) {
            let Some(v) = node.input(slot) else { continue };
            let value = &mut g.values[v];
            if value.initializer.is_some() {
                continue;
            }
            let before = value.shape.clone();
            // Only what is open: a symbolic dim (a graph input's batch) stays symbolic.
            let after = match &before {
                None => Some(hint),
                Some(b) if b.len() == hint.len() => Some(b.iter().zip(&hint).map(|(x, y)| if *x == Dim::Unknown { *y } else { *x }).collect()),
                Some(_) => before.clone(),
            };
            if after != before {
                value.shape = after;
                learned = true;
            }
        }
    }
    learned
}

/// What an op's definition says about the shapes of its inputs: `(slot, shape)`
/// with `Dim::Unknown` where it says nothing.
fn input_constraints(g: &Graph, n: &Node) -> Vec<(usize, Vec<Dim>)> {
    let op = n.op_type.as_str();
    let out0 = n.output(0).and_then(|v| g.values[v].shape.clone());
    let x = shape_of(g, n, 0);
    match op {
        // The data input has the weight's rank; its channels are the weight's
        // input channels times the groups (ConvTranspose: the weight's axis 0).
        "Conv" | "ConvInteger" | "ConvTranspose" => {
            let Some(w) = shape_of(g, n, 1) else { return Vec::new() };
            if w.len() < 2 {
                return Vec::new();
            }
            let mut hint = vec![Dim::Unknown; w.len()];
            hint[1] = if op == "ConvTranspose" { w[0] } else { arith(w[1], Dim::Known(n.attr_int("group", 1)), "Mul") };
            if let Some(o) = out0.as_ref().filter(|o| o.len() == w.len()) {
                hint[0] = o[0];
            }
            vec![(0, hint)]
        }
        "MaxPool" | "AveragePool" | "LpPool" => match n.attr_ints("kernel_shape") {
            Some(k) if !k.is_empty() && k.len() < 62 => {
                let mut hint = vec![Dim::Unknown; k.len() + 2];
                if let Some(o) = out0.as_ref().filter(|o| o.len() == hint.len()) {
                    hint[0] = o[0];
                    hint[1] = o[1];
                }
                vec![(0, hint)]
            }
            _ => Vec::new(),
        },
        // Scale and bias (and the statistics) are per channel: axis 1.
        "BatchNormalization" | "InstanceNormalization" => {
            let rank = x.as_ref().map(Vec::len).or(out0.as_ref().map(Vec::len));
            let channels = shape_of(g, n, 1).and_then(|s| s.first().copied());
            match (rank, channels) {
                (Some(r), Some(c)) if r >= 2 => {
                    let mut hint = out0.filter(|o| o.len() == r).unwrap_or_else(|| vec![Dim::Unknown; r]);
                    hint[1] = refine(Some(vec![hint[1]]), Some(vec![c])).map_or(Dim::Unknown, |d| d[0]);
                    vec![(0, hint)]
                }
                _ => Vec::new(),
            }
        }
        // a @ W with a 2-D W: a's last axis has W's rows.
        "MatMul" => match (x.as_ref().map(Vec::len), shape_of(g, n, 1)) {
            (Some(r), Some(w)) if r >= 1 && w.len() == 2 => {
                let mut hint = vec![Dim::Unknown; r];
                hint[r - 1] = w[0];
                vec![(0, hint)]
            }
            _ => Vec::new(),
        },
        // Elementwise ops of one data input: the input has the output's shape.
        _ if same_shape_op(op) => out0.map(|o| vec![(0, o)]).unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Ops whose output 0 has exactly the shape of input 0.
fn same_shape_op(op: &str) -> bool {
    matches!(
        op,
        "Relu" | "LeakyRelu" | "Sigmoid" | "Tanh" | "Elu" | "Selu" | "Celu" | "HardSigmoid" | "HardSwish" | "Gelu" | "Erf"
            | "Exp" | "Log" | "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Softplus" | "Softsign" | "Softmax" | "LogSoftmax"
            | "LayerNormalization" | "InstanceNormalization" | "GroupNormalization" | "LpNormalization" | "RMSNormalization"
            | "Mish" | "Identity" | "Dropout" | "BatchNormalization" | "Cast" | "CastLike" | "Clip"
            | "RandomUniformLike" | "RandomNormalLike" | "Bernoulli"
    )
}

type Out = (Option<Vec<Dim>>, Option<Vec<Dim>>, Option<f64>, Option<DType>);

/// The value of a one-element input: its scalar, or its one shape int.
fn scalar_in(g: &Graph, n: &Node, i: usize) -> Option<f64> {
    let v = val(g, n, i)?;
    v.scalar.or_else(|| match v.ints.as_deref() {
        Some([Dim::Known(x)]) => Some(*x as f64),
        _ => None,
    })
}

/// Clip of a known scalar, when its bounds are known (inputs from opset 11,
/// attributes before) or absent.
fn clip_scalar(g: &Graph, n: &Node) -> Option<f64> {
    let x = scalar_in(g, n, 0)?;
    let bound = |i: usize, attr: &str, default: f64| -> Option<f64> {
        match n.input(i) {
            Some(_) => scalar_in(g, n, i),
            None => Some(f64::from(n.attr_float(attr, default as f32))),
        }
    };
    let (lo, hi) = (bound(1, "min", f64::NEG_INFINITY)?, bound(2, "max", f64::INFINITY)?);
    Some(x.max(lo).min(hi))
}

fn shape_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<Dim>> {
    n.input(i).and_then(|v| g.values[v].shape.clone())
}

fn val<'g>(g: &'g Graph, n: &Node, i: usize) -> Option<&'g Value> {
    n.input(i).map(|v| &g.values[v])
}

fn ints_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<i64>> {
    val(g, n, i)?.ints.as_ref()?.iter().map(|d| d.known()).collect()
}

/// The elements of a small constant input as f64 (initializer, Constant node,
/// or tracked shape arithmetic).
fn floats_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<f64>> {
    let v = n.input(i)?;
    if let Some(t) = g.initializer_of(v) {
        return t.as_floats();
    }
    let value = &g.values[v];
    if let Some(AttrValue::Tensor(t)) = value.producer.and_then(|p| g.nodes[p].attrs.get("value")).filter(|_| value.producer.is_some_and(|p| g.nodes[p].op_type == "Constant")) {
        return t.as_floats();
    }
    if let Some(ints) = ints_of(g, n, i) {
        return Some(ints.into_iter().map(|x| x as f64).collect());
    }
    value.scalar.map(|x| vec![x])
}

/// Normalizes a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Option<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    (0..r).contains(&a).then_some(a as usize)
}

/// Numpy-style broadcast of shapes.
pub fn broadcast(shapes: &[Vec<Dim>]) -> Option<Vec<Dim>> {
    let rank = shapes.iter().map(Vec::len).max()?;
    let mut out = vec![Dim::Known(1); rank];
    for s in shapes {
        let off = rank - s.len();
        for (i, d) in s.iter().enumerate() {
            let o = &mut out[off + i];
            *o = match (*o, *d) {
                (Dim::Known(1), x) => x,
                (x, Dim::Known(1)) => x,
                // unequal known sizes make an invalid model; keep the first
                (Dim::Known(a), Dim::Known(_)) => Dim::Known(a),
                (Dim::Sym(a), Dim::Sym(b)) if a == b => Dim::Sym(a),
                (Dim::Known(a), _) | (_, Dim::Known(a)) => Dim::Known(a),
                _ => Dim::Unknown,
            };
        }
    }
    Some(out)
}

fn first_dtype(g: &Graph, n: &Node) -> Option<DType> {
    val(g, n, 0).and_then(|v| v.dtype)
}

fn same(g: &Graph, n: &Node) -> Vec<Out> {
    vec![(shape_of(g, n, 0), None, None, first_dtype(g, n))]
}

fn arith(a: Dim, b: Dim, op: &str) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => match op {
            "Add" => x.checked_add(y),
            "Sub" => x.checked_sub(y),
            "Mul" => x.checked_mul(y),
            "Div" if y != 0 => Some(x.div_euclid(y)),
            // integer Mod (fmod=0): the result takes the divisor's sign, as in Python
            "Mod" if y != 0 => x.checked_rem(y).map(|r| if r != 0 && (r < 0) != (y < 0) { r + y } else { r }),
            _ => None,
        }
        .map(Dim::Known)
        .unwrap_or(Dim::Unknown),
        (s @ Dim::Sym(_), Dim::Known(1)) if op == "Mul" || op == "Div" => s,
        (Dim::Known(1), s @ Dim::Sym(_)) if op == "Mul" => s,
        (s @ Dim::Sym(_), Dim::Known(0)) if op == "Add" || op == "Sub" => s,
        _ => Dim::Unknown,
    }
}

fn infer_node(g: &Graph, n: &Node) -> Vec<Out> {
    if n.domain == "ai.onnx.preview.training" && matches!(n.op_type.as_str(), "Adagrad" | "Momentum" | "Adam") {
        // inputs R, T, X[n], G[n], then the n-tensor states; outputs X_new[n], states_new:
        // each output has the shape of the tensor it updates
        let groups = if n.op_type == "Adam" { 3 } else { 2 };
        let count = n.outputs.len() / groups;
        return (0..n.outputs.len())
            .map(|j| {
                let i = if j < count { 2 + j } else { 2 + j + count };
                (shape_of(g, n, i), None, None, val(g, n, i).and_then(|v| v.dtype))
            })
            .collect();
    }
    if !n.is_default_domain() {
        return Vec::new();
    }
    let op = n.op_type.as_str();
    match op {
        "Constant" => {
            let t = match n.attrs.get("value") {
                Some(AttrValue::Tensor(t)) => Some(t.clone()),
                _ => None,
            };
            if let Some(t) = t {
                let ints = t.as_ints().map(|xs| xs.into_iter().map(Dim::Known).collect());
                return vec![(Some(t.dims.iter().map(|&d| Dim::Known(d)).collect()), ints, t.as_scalar(), Some(t.dtype))];
            }
            let scalar = match n.attrs.get("value_float") {
                Some(AttrValue::Float(f)) => Some(*f as f64),
                _ => match n.attrs.get("value_int") {
                    Some(AttrValue::Int(i)) => return vec![(Some(vec![]), Some(vec![Dim::Known(*i)]), Some(*i as f64), Some(DType::I64))],
                    _ => None,
                },
            };
            if let Some(AttrValue::Ints(v)) = n.attrs.get("value_ints") {
                return vec![(Some(vec![Dim::Known(v.len() as i64)]), Some(v.iter().map(|&x| Dim::Known(x)).collect()), None, Some(DType::I64))];
            }
            vec![(scalar.map(|_| vec![]), None, scalar, scalar.map(|_| DType::F32))]
        }
        "Identity" | "Cast" | "CastLike" => {
            let v = val(g, n, 0);
            let dtype = if op == "Cast" { Some(DType::from_onnx(n.attr_int("to", 1) as i32)) } else { v.and_then(|v| v.dtype) };
            let shape = shape_of(g, n, 0);
            let mut scalar = v.and_then(|v| v.scalar);
            // Float shape arithmetic cast to an integer type (timm's pad_same:
            // Cast(Ceil(Div(...)))) truncates toward zero; its ints follow below.
            match (op, dtype) {
                ("Cast", Some(DType::I64 | DType::I32)) => scalar = scalar.map(f64::trunc),
                ("Cast", Some(DType::Bool)) => scalar = scalar.map(|x| f64::from(u8::from(x != 0.0))),
                _ => {}
            }
            let ints = match (op, dtype, scalar) {
                ("Cast", Some(DType::I64 | DType::I32 | DType::Bool), Some(_)) => None,
                _ => v.and_then(|v| v.ints.clone()),
            };
            vec![(shape, ints, scalar, dtype)]
        }
        "Relu" | "LeakyRelu" | "PRelu" | "Sigmoid" | "Tanh" | "Elu" | "Selu" | "Celu" | "HardSigmoid" | "HardSwish"
        | "Gelu" | "Erf" | "Exp" | "Log" | "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Softplus" | "Softsign" | "Clip"
        | "Softmax" | "LogSoftmax" | "LayerNormalization" | "InstanceNormalization" | "GroupNormalization"
        | "LpNormalization" | "RMSNormalization" | "Mish" | "Floor" | "Ceil" | "Round" | "Sign" | "Sin" | "Cos"
        | "ThresholdedRelu" | "Shrink" | "Not" | "IsNaN" | "IsInf" | "CumSum" | "Trilu" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh"
        | "Cosh" | "Asinh" | "Acosh" | "Atanh" | "Hardmax" | "CumProd" | "Swish" | "EyeLike" | "ReverseSequence" | "LRN"
        | "MeanVarianceNormalization" | "Binarizer" | "Scatter" | "BitwiseNot" | "RotaryEmbedding" | "TensorScatter" | "RegexFullMatch" => {
            let mut out = same(g, n);
            if let (Some(x), "Neg" | "Abs") = (val(g, n, 0).and_then(|v| v.scalar), op) {
                out[0].2 = Some(if op == "Neg" { -x } else { x.abs() });
            }
            if let (Some(x), "Ceil" | "Floor" | "Round") = (scalar_in(g, n, 0), op) {
                out[0].2 = Some(match op {
                    "Ceil" => x.ceil(),
                    "Floor" => x.floor(),
                    _ => x.round_ties_even(),
                });
            }
            if matches!(op, "Ceil" | "Floor" | "Round") {
                // Integers are their own ceiling, floor and rounding.
                out[0].1 = val(g, n, 0).and_then(|v| v.ints.clone());
            }
            if op == "Clip" {
                out[0].2 = clip_scalar(g, n);
            }
            if matches!(op, "Neg" | "Abs") {
                out[0].1 = val(g, n, 0).and_then(|v| v.ints.clone()).map(|xs| {
                    xs.into_iter()
                        .map(|d| match d.known().and_then(|x| if op == "Neg" { x.checked_neg() } else { x.checked_abs() }) {
                            Some(x) => Dim::Known(x),
                            None => Dim::Unknown,
                        })
                        .collect()
                });
            }
            if op == "RegexFullMatch" {
                out[0].3 = Some(DType::Bool);
            }
            if op == "EyeLike" {
                out[0].3 = n.attrs.get("dtype").map(|_| DType::from_onnx(n.attr_int("dtype", 1) as i32)).or(out[0].3);
            }
            if matches!(op, "LayerNormalization" | "RMSNormalization") {
                // Mean and InvStdDev: the normalized axes reduced to 1.
                let stats = shape_of(g, n, 0).and_then(|s| {
                    let axis = norm_axis(n.attr_int("axis", -1), s.len())?;
                    Some(s.iter().enumerate().map(|(i, d)| if i >= axis { Dim::Known(1) } else { *d }).collect::<Vec<_>>())
                });
                let dtype = n.attrs.get("stash_type").map_or(Some(DType::F32), |_| Some(DType::from_onnx(n.attr_int("stash_type", 1) as i32)));
                out.push((stats.clone(), None, None, dtype));
                out.push((stats, None, None, dtype));
            }
            out
        }
        "RandomUniform" | "RandomNormal" => {
            let s = n.attr_ints("shape").filter(|s| s.iter().all(|&d| d >= 0)).map(|s| s.iter().map(|&d| Dim::Known(d)).collect());
            vec![(s, None, None, Some(DType::from_onnx(n.attr_int("dtype", 1) as i32)))]
        }
        "RandomUniformLike" | "RandomNormalLike" | "Bernoulli" => {
            let dtype = n.attrs.get("dtype").map(|_| DType::from_onnx(n.attr_int("dtype", 1) as i32)).or(first_dtype(g, n));
            vec![(shape_of(g, n, 0), None, None, dtype)]
        }
        "Multinomial" => {
            // [batch, classes] -> [batch, sample_size]
            let s = shape_of(g, n, 0).filter(|s| s.len() == 2).map(|s| vec![s[0], Dim::Known(n.attr_int("sample_size", 1))]);
            vec![(s, None, None, Some(DType::from_onnx(n.attr_int("dtype", 6) as i32)))]
        }
        "Dropout" => {
            let s = shape_of(g, n, 0);
            vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::Bool))]
        }
        "BatchNormalization" => {
            let c = shape_of(g, n, 1);
            // The scale's length is the channel dim (axis 1).
            let x = shape_of(g, n, 0).map(|mut x| {
                if let (Some(d), Some(&k)) = (x.get_mut(1), c.as_ref().and_then(|c| c.first())) {
                    *d = refine(Some(vec![*d]), Some(vec![k])).map_or(*d, |r| r[0]);
                }
                x
            });
            vec![(x, None, None, first_dtype(g, n)), (c.clone(), None, None, first_dtype(g, n)), (c, None, None, first_dtype(g, n))]
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Mod" | "Where" | "BitShift" | "BitwiseAnd" | "BitwiseOr"
        | "BitwiseXor" | "StringConcat" => {
            let shapes: Option<Vec<Vec<Dim>>> = n.inputs.iter().map(|i| i.and_then(|v| g.values[v].shape.clone())).collect();
            let shape = shapes.and_then(|s| broadcast(&s));
            let dtype = match op {
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" => Some(DType::Bool),
                "Where" => val(g, n, 1).and_then(|v| v.dtype),
                _ => first_dtype(g, n),
            };
            let mut ints = None;
            if matches!(op, "Max" | "Min") && n.inputs.len() == 2 {
                ints = elementwise_ints(g, n, 0, 1, |a, b| match (a, b) {
                    (Dim::Known(x), Dim::Known(y)) => Dim::Known(if op == "Max" { x.max(y) } else { x.min(y) }),
                    _ => Dim::Unknown,
                });
            }
            if op == "Equal" {
                ints = elementwise_ints(g, n, 0, 1, |a, b| match (a, b) {
                    (Dim::Known(x), Dim::Known(y)) => Dim::Known(i64::from(x == y)),
                    (Dim::Sym(x), Dim::Sym(y)) if x == y => Dim::Known(1),
                    _ => Dim::Unknown,
                });
            }
            if op == "Where" {
                // select(cond, x, y) on small integer tensors (shape arithmetic)
                if let (Some(c), Some(x), Some(y)) = (val(g, n, 0).and_then(|v| v.ints.clone()), val(g, n, 1).and_then(|v| v.ints.clone()), val(g, n, 2).and_then(|v| v.ints.clone())) {
                    let len = c.len().max(x.len()).max(y.len());
                    if [c.len(), x.len(), y.len()].iter().all(|&l| l == len || l == 1) {
                        let at = |v: &Vec<Dim>, i: usize| v[i.min(v.len() - 1)];
                        ints = Some((0..len).map(|i| match at(&c, i) {
                            Dim::Known(0) => at(&y, i),
                            Dim::Known(_) => at(&x, i),
                            _ => Dim::Unknown,
                        }).collect());
                    }
                }
            }
            // A float Div of integers is an integer only where it divides exactly.
            let float_div = op == "Div" && dtype.is_some_and(DType::is_float);
            if matches!(op, "Add" | "Sub" | "Mul" | "Div") || (op == "Mod" && n.attr_int("fmod", 0) == 0) {
                if let (Some(a), Some(b)) = (val(g, n, 0).and_then(|v| v.ints.clone()), val(g, n, 1).and_then(|v| v.ints.clone())) {
                    let len = a.len().max(b.len());
                    if (a.len() == len || a.len() == 1) && (b.len() == len || b.len() == 1) {
                        ints = Some((0..len).map(|i| match (a[i.min(a.len() - 1)], b[i.min(b.len() - 1)]) {
                            (Dim::Known(x), Dim::Known(y)) if float_div && (y == 0 || x % y != 0) => Dim::Unknown,
                            (x, y) if float_div && !matches!((x, y), (Dim::Known(_), Dim::Known(_))) => Dim::Unknown,
                            (x, y) => arith(x, y, op),
                        }).collect());
                    }
                }
            }
            // One-element shape ints count as scalars (Gather of a Shape, cast to float).
            let scalar = match (scalar_in(g, n, 0), scalar_in(g, n, 1)) {
                (Some(a), Some(b)) => match op {
                    "Add" => Some(a + b),
                    "Sub" => Some(a - b),
                    "Mul" => Some(a * b),
                    "Div" if dtype.is_some_and(DType::is_float) => Some(a / b),
                    // integer Div truncates toward zero
                    "Div" if b != 0.0 => Some((a / b).trunc()),
                    "Pow" => Some(a.powf(b)),
                    _ => None,
                },
                _ => None,
            };
            vec![(shape, ints, scalar, dtype)]
        }
        "Conv" | "ConvTranspose" | "ConvInteger" | "DeformConv" => conv_shape(g, n),
        "QLinearConv" => {
            // x, x_scale, x_zp, w, ...: the conv of inputs 0 and 3
            let mut inner = n.clone();
            inner.inputs = vec![n.input(0), n.input(3)];
            inner.op_type = "Conv".into();
            let mut out = conv_shape(g, &inner);
            out.truncate(1);
            if let Some(o) = out.first_mut() {
                o.3 = val(g, n, 7).and_then(|v| v.dtype);
            }
            out
        }
        "MaxPool" | "AveragePool" | "LpPool" => pool_shape(g, n),
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" => {
            let s = shape_of(g, n, 0).map(|s| s.iter().enumerate().map(|(i, d)| if i < 2 { *d } else { Dim::Known(1) }).collect());
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Gemm" => {
            let (a, b) = (shape_of(g, n, 0), shape_of(g, n, 1));
            let s = match (a, b) {
                (Some(a), Some(b)) if a.len() == 2 && b.len() == 2 => {
                    let m = if n.attr_int("transA", 0) != 0 { a[1] } else { a[0] };
                    let k = if n.attr_int("transB", 0) != 0 { b[0] } else { b[1] };
                    Some(vec![m, k])
                }
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "MatMul" => {
            let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
                (Some(a), Some(b)) => matmul_shape(&a, &b),
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Shape" => {
            let s = shape_of(g, n, 0);
            let ints = s.map(|s| {
                let r = s.len() as i64;
                let clamp = |x: i64| (if x < 0 { x + r } else { x }).clamp(0, r) as usize;
                let start = clamp(n.attr_int("start", 0));
                let end = clamp(n.attr_int("end", r));
                s[start..end.max(start)].to_vec()
            });
            let len = ints.as_ref().map(|i| i.len() as i64);
            vec![(Some(vec![len.map(Dim::Known).unwrap_or(Dim::Unknown)]), ints, None, Some(DType::I64))]
        }
        "Size" => {
            let size = shape_of(g, n, 0).map(|s| product(&s));
            let ints = size.filter(|d| *d != Dim::Unknown).map(|d| vec![d]);
            vec![(Some(vec![]), ints, size.and_then(Dim::known).map(|k| k as f64), Some(DType::I64))]
        }
        "Reshape" => {
            let target = val(g, n, 1).and_then(|v| v.ints.clone());
            let s = match (shape_of(g, n, 0), target) {
                (input, Some(t)) => reshape_shape(input.as_deref(), &t, n.attr_int("allowzero", 0) != 0),
                (_, None) => val(g, n, 1).and_then(|v| v.shape.as_ref()).and_then(|s| s.first()).and_then(|d| d.known()).map(|r| vec![Dim::Unknown; r.max(0) as usize]),
            };
            let ints = val(g, n, 0).and_then(|v| v.ints.clone());
            vec![(s, ints, None, first_dtype(g, n))]
        }
        "Flatten" => {
            let s = shape_of(g, n, 0).and_then(|s| {
                // axis in [-r, r]: a negative one counts from the rank, not rank + 1
                let a = n.attr_int("axis", 1);
                let axis = if a < 0 { norm_axis(a, s.len())? } else { norm_axis(a, s.len() + 1)? };
                Some(vec![product(&s[..axis]), product(&s[axis..])])
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Transpose" => {
            let s = shape_of(g, n, 0).and_then(|s| {
                let perm: Vec<i64> = n.attr_ints("perm").map(<[i64]>::to_vec).unwrap_or_else(|| (0..s.len() as i64).rev().collect());
                if perm.len() != s.len() {
                    return None;
                }
                perm.iter().map(|&p| s.get(usize::try_from(p).ok()?).copied()).collect()
            });
            let ints = transpose_ints(g, n);
            vec![(s, ints, None, first_dtype(g, n))]
        }
        "Squeeze" | "Unsqueeze" => {
            let axes = n.attr_ints("axes").map(<[i64]>::to_vec).or_else(|| ints_of(g, n, 1));
            let input = shape_of(g, n, 0);
            let s = if op == "Squeeze" { squeeze(input.as_deref(), axes.as_deref()) } else { unsqueeze(input.as_deref(), axes.as_deref()) };
            let ints = val(g, n, 0).and_then(|v| v.ints.clone());
            vec![(s, ints, val(g, n, 0).and_then(|v| v.scalar), first_dtype(g, n))]
        }
        "Concat" => {
            let shapes: Option<Vec<Vec<Dim>>> = n.inputs.iter().map(|i| i.and_then(|v| g.values[v].shape.clone())).collect();
            let s = shapes.and_then(|shapes| {
                let rank = shapes.first()?.len();
                let axis = norm_axis(n.attr_int("axis", 0), rank)?;
                let mut out = shapes[0].clone();
                out[axis] = shapes.iter().map(|s| s.get(axis).copied().unwrap_or(Dim::Unknown)).reduce(|a, b| arith(a, b, "Add"))?;
                Some(out)
            });
            let ints: Option<Vec<Dim>> = n
                .inputs
                .iter()
                .map(|i| i.and_then(|v| g.values[v].ints.clone()))
                .collect::<Option<Vec<_>>>()
                .map(|parts| parts.concat())
                .filter(|v| v.len() <= MAX_TRACKED_INTS);
            vec![(s, ints, None, first_dtype(g, n))]
        }
        "Split" => split_shapes(g, n),
        "Slice" => {
            let s = shape_of(g, n, 0);
            let starts = ints_of(g, n, 1).or_else(|| n.attr_ints("starts").map(<[i64]>::to_vec));
            let ends = ints_of(g, n, 2).or_else(|| n.attr_ints("ends").map(<[i64]>::to_vec));
            let axes = if n.inputs.len() > 3 { ints_of(g, n, 3) } else { n.attr_ints("axes").map(<[i64]>::to_vec) };
            let steps = if n.inputs.len() > 4 { ints_of(g, n, 4) } else { None };
            let mut ints = None;
            let out = s.map(|s| {
                let mut out = s.clone();
                match (&starts, &ends) {
                    (Some(st), Some(en)) if st.len() == en.len() => {
                        let axes: Vec<i64> = axes.clone().unwrap_or_else(|| (0..st.len() as i64).collect());
                        // The entries each axis keeps, for the values of small integer tensors.
                        let mut kept: Vec<Option<Vec<i64>>> = s.iter().map(|d| d.known().map(|d| (0..d.min(MAX_TRACKED_INTS as i64 + 1)).collect())).collect();
                        for (k, &a) in axes.iter().enumerate().take(st.len()) {
                            let Some(a) = norm_axis(a, s.len()) else { continue };
                            let step = steps.as_ref().and_then(|x| x.get(k).copied()).unwrap_or(1);
                            out[a] = match s[a] {
                                Dim::Known(d) => Dim::Known(slice_len(d, st[k], en[k], step)),
                                _ => Dim::Unknown,
                            };
                            kept[a] = match s[a] {
                                Dim::Known(d) if d <= MAX_TRACKED_INTS as i64 => slice_ints(&(0..d).map(Dim::Known).collect::<Vec<_>>(), d, st[k], en[k], step)
                                    .map(|xs| xs.iter().filter_map(|x| x.known()).collect()),
                                _ => None,
                            };
                        }
                        ints = val(g, n, 0).and_then(|v| v.ints.clone()).and_then(|xs| select_ints(&xs, &s, &kept));
                    }
                    _ => {
                        for d in out.iter_mut() {
                            *d = Dim::Unknown;
                        }
                    }
                }
                out
            });
            vec![(out, ints, None, first_dtype(g, n))]
        }
        "Gather" => {
            let data = shape_of(g, n, 0);
            let idx = shape_of(g, n, 1);
            let s = match (data, idx) {
                (Some(d), Some(i)) => norm_axis(n.attr_int("axis", 0), d.len()).map(|a| [&d[..a], &i[..], &d[a + 1..]].concat()),
                _ => None,
            };
            let ints = match (val(g, n, 0).and_then(|v| v.ints.clone()), ints_of(g, n, 1)) {
                (Some(xs), Some(idx)) if n.attr_int("axis", 0) == 0 => idx
                    .iter()
                    .map(|&i| {
                        let i = if i < 0 { i + xs.len() as i64 } else { i };
                        usize::try_from(i).ok().and_then(|i| xs.get(i).copied())
                    })
                    .collect(),
                _ => None,
            };
            vec![(s, ints, None, first_dtype(g, n))]
        }
        "ReduceMean" | "ReduceSum" | "ReduceMax" | "ReduceMin" | "ReduceL2" | "ReduceL1" | "ReduceProd"
        | "ReduceSumSquare" | "ReduceLogSumExp" | "ReduceLogSum" | "ArgMax" | "ArgMin" => {
            let s = shape_of(g, n, 0).and_then(|s| {
                let keep = n.attr_int("keepdims", 1) != 0;
                let axes = reduce_axes(g, n, s.len())?;
                let mut reduced = vec![false; s.len()];
                for &a in &axes {
                    if let Some(r) = reduced.get_mut(a) {
                        *r = true;
                    }
                }
                Some(
                    s.iter()
                        .enumerate()
                        .filter_map(|(i, d)| if reduced[i] { keep.then_some(Dim::Known(1)) } else { Some(*d) })
                        .collect(),
                )
            });
            let dtype = if op.starts_with("Arg") { Some(DType::I64) } else { first_dtype(g, n) };
            vec![(s, None, None, dtype)]
        }
        "Expand" => {
            // Values of the target shape, or at least its length (the output's rank).
            let target = val(g, n, 1).and_then(|v| {
                v.ints.clone().or_else(|| match v.shape.as_deref() {
                    Some([Dim::Known(k)]) if (0..=64).contains(k) => Some(vec![Dim::Unknown; *k as usize]),
                    _ => None,
                })
            });
            let s = match (shape_of(g, n, 0), target) {
                (Some(a), Some(b)) => broadcast(&[a, b]),
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Pad" => {
            let s = shape_of(g, n, 0).map(|s| {
                let r = s.len();
                let pads = ints_of(g, n, 1).or_else(|| n.attr_ints("pads").map(<[i64]>::to_vec));
                // opset 18: pads for the listed axes only
                let axes: Option<Vec<usize>> = match n.input(3) {
                    Some(_) => ints_of(g, n, 3).and_then(|a| a.iter().map(|&a| norm_axis(a, r)).collect()),
                    None => Some((0..r).collect()),
                };
                let mut out = s.clone();
                match (pads, axes) {
                    (Some(p), Some(axes)) if p.len() == 2 * axes.len() => {
                        for (k, &a) in axes.iter().enumerate() {
                            out[a] = match s[a] {
                                Dim::Known(x) => x.checked_add(p[k]).and_then(|v| v.checked_add(p[k + axes.len()])).filter(|&v| v >= 0).map_or(Dim::Unknown, Dim::Known),
                                other if p[k] == 0 && p[k + axes.len()] == 0 => other,
                                _ => Dim::Unknown,
                            };
                        }
                        out
                    }
                    _ => vec![Dim::Unknown; r],
                }
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Resize" | "Upsample" => vec![(resize_shape(g, n), None, None, first_dtype(g, n))],
        "ConstantOfShape" => {
            let s = val(g, n, 0).and_then(|v| v.ints.clone());
            let (ints, dtype) = match n.attrs.get("value") {
                Some(AttrValue::Tensor(t)) => (
                    t.as_ints().and_then(|x| x.first().copied()).and_then(|x| {
                        let dims = s.as_ref()?;
                        let len: i64 = dims.iter().map(|d| d.known()).product::<Option<i64>>()?;
                        (dims.len() == 1 && len as usize <= MAX_TRACKED_INTS).then(|| vec![Dim::Known(x); len as usize])
                    }),
                    Some(t.dtype),
                ),
                _ => (None, Some(DType::F32)),
            };
            vec![(s, ints, None, dtype)]
        }
        "DepthToSpace" | "SpaceToDepth" => {
            let b = n.attr_int("blocksize", 1).max(1);
            // b * b checked: a hostile block size gives an unknown channel dim
            let bb = b.checked_mul(b).map_or(Dim::Unknown, Dim::Known);
            let s = shape_of(g, n, 0).filter(|s| s.len() == 4).map(|s| {
                if op == "DepthToSpace" {
                    vec![s[0], arith(s[1], bb, "Div"), arith(s[2], Dim::Known(b), "Mul"), arith(s[3], Dim::Known(b), "Mul")]
                } else {
                    vec![s[0], arith(s[1], bb, "Mul"), arith(s[2], Dim::Known(b), "Div"), arith(s[3], Dim::Known(b), "Div")]
                }
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Range" => {
            // max(ceil((limit - start) / delta), 0) elements
            let at = |i| floats_of(g, n, i).filter(|v| v.len() == 1).map(|v| v[0]);
            let len = match (at(0), at(1), at(2)) {
                (Some(a), Some(b), Some(d)) if d != 0.0 => {
                    let k = ((b - a) / d).ceil().max(0.0);
                    (k.is_finite() && k < 1e15).then_some(k as i64)
                }
                _ => None,
            };
            // small integer ranges are shape arithmetic (reduction axes of a decomposed norm)
            let ints = match (ints_of(g, n, 0), ints_of(g, n, 1), ints_of(g, n, 2), len) {
                (Some(a), Some(_), Some(d), Some(k)) if a.len() == 1 && d.len() == 1 && k as usize <= MAX_TRACKED_INTS => {
                    (0..k).map(|i| i.checked_mul(d[0]).and_then(|x| x.checked_add(a[0])).map_or(Dim::Unknown, Dim::Known)).collect::<Vec<_>>().into()
                }
                _ => None,
            };
            vec![(Some(vec![len.map_or(Dim::Unknown, Dim::Known)]), ints, None, first_dtype(g, n))]
        }
        "TopK" => {
            let k = ints_of(g, n, 1).filter(|k| k.len() == 1).map(|k| k[0]).or(n.attrs.get("k").map(|_| n.attr_int("k", 0)));
            let s = shape_of(g, n, 0).and_then(|mut s| {
                let axis = norm_axis(n.attr_int("axis", -1), s.len())?;
                s[axis] = k.map_or(Dim::Unknown, Dim::Known);
                Some(s)
            });
            vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::I64))]
        }
        "OneHot" => {
            let depth = floats_of(g, n, 1).filter(|v| v.len() == 1).map(|v| v[0] as i64);
            let s = shape_of(g, n, 0).and_then(|mut s| {
                let axis = norm_axis(n.attr_int("axis", -1), s.len() + 1)?;
                s.insert(axis, depth.map_or(Dim::Unknown, Dim::Known));
                Some(s)
            });
            vec![(s, None, None, val(g, n, 2).and_then(|v| v.dtype))]
        }
        "GatherND" => {
            let b = usize::try_from(n.attr_int("batch_dims", 0)).unwrap_or(0);
            let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
                (Some(d), Some(i)) if !i.is_empty() => match i[i.len() - 1] {
                    Dim::Known(k) if k >= 0 && b + (k as usize) <= d.len() => Some([&i[..i.len() - 1], &d[b + k as usize..]].concat()),
                    _ => None,
                },
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "GridSample" => {
            // [N, C, D1..] sampled at grid [N, H1.., r] -> [N, C, H1..]
            let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
                (Some(x), Some(grid)) if x.len() >= 2 && grid.len() >= 2 => Some([&x[..2], &grid[1..grid.len() - 1]].concat()),
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "AffineGrid" => {
            // size [N, C, H, W] (or [N, C, D, H, W]) -> grid [N, H, W, 2] ([N, D, H, W, 3])
            let s = val(g, n, 1).and_then(|v| v.ints.clone()).filter(|z| z.len() >= 3).map(|z| {
                let mut out = vec![z[0]];
                out.extend_from_slice(&z[2..]);
                out.push(Dim::Known(z.len() as i64 - 2));
                out
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
        "RNN" | "GRU" | "LSTM" => recurrent_shapes(g, n),
        "HannWindow" | "HammingWindow" | "BlackmanWindow" => {
            let size = floats_of(g, n, 0).filter(|v| v.len() == 1).map(|v| v[0] as i64);
            vec![(Some(vec![size.map_or(Dim::Unknown, Dim::Known)]), None, None, Some(DType::from_onnx(n.attr_int("output_datatype", 1) as i32)))]
        }
        "Det" => vec![(shape_of(g, n, 0).filter(|s| s.len() >= 2).map(|s| s[..s.len() - 2].to_vec()), None, None, first_dtype(g, n))],
        "MatMulInteger" | "QLinearMatMul" => {
            let b = if op == "QLinearMatMul" { 3 } else { 1 };
            let s = match (shape_of(g, n, 0), shape_of(g, n, b)) {
                (Some(a), Some(b)) => matmul_shape(&a, &b),
                _ => None,
            };
            let dtype = if op == "MatMulInteger" { Some(DType::I32) } else { val(g, n, 7).and_then(|v| v.dtype) };
            vec![(s, None, None, dtype)]
        }
        "QuantizeLinear" | "DequantizeLinear" => {
            let dtype = if op == "DequantizeLinear" { val(g, n, 1).and_then(|v| v.dtype) } else { val(g, n, 2).and_then(|v| v.dtype) };
            vec![(shape_of(g, n, 0), None, None, dtype)]
        }
        "DynamicQuantizeLinear" => vec![
            (shape_of(g, n, 0), None, None, Some(DType::Other(2))),
            (Some(vec![]), None, None, Some(DType::F32)),
            (Some(vec![]), None, None, Some(DType::Other(2))),
        ],
        "RoiAlign" => {
            let s = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
                (Some(x), Some(r)) if x.len() == 4 && !r.is_empty() => {
                    Some(vec![r[0], x[1], Dim::Known(n.attr_int("output_height", 1)), Dim::Known(n.attr_int("output_width", 1))])
                }
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "NegativeLogLikelihoodLoss" | "SoftmaxCrossEntropyLoss" => {
            // reduction none: the target's shape; mean or sum: a scalar
            let loss = if n.attr_str("reduction").unwrap_or("mean") == "none" { shape_of(g, n, 1) } else { Some(vec![]) };
            vec![(loss, None, None, first_dtype(g, n)), (shape_of(g, n, 0), None, None, first_dtype(g, n))]
        }
        "CenterCropPad" => {
            let s = match (shape_of(g, n, 0), val(g, n, 1).and_then(|v| v.ints.clone())) {
                (Some(x), Some(z)) => {
                    let axes: Option<Vec<usize>> = match n.attr_ints("axes") {
                        Some(a) => a.iter().map(|&a| norm_axis(a, x.len())).collect(),
                        None => Some((0..x.len()).collect()),
                    };
                    axes.filter(|a| a.len() == z.len()).map(|axes| {
                        let mut out = x.clone();
                        for (a, d) in axes.iter().zip(&z) {
                            out[*a] = *d;
                        }
                        out
                    })
                }
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Attention" => attention_shapes(g, n),
        "BitCast" => {
            // same total bytes: a smaller element adds a trailing axis, a larger one drops it
            let to = n.attr_int("to", 0) as i32;
            let size = |code: i32| -> Option<i64> {
                Some(match code {
                    2 | 3 | 9 => 1,
                    4 | 5 | 10 | 16 => 2,
                    1 | 6 | 12 => 4,
                    7 | 11 | 13 => 8,
                    _ => return None,
                })
            };
            let from = first_dtype(g, n).map(DType::onnx_code);
            let s = match (shape_of(g, n, 0), from.and_then(size), size(to)) {
                (Some(x), Some(a), Some(b)) if a == b => Some(x),
                (Some(mut x), Some(a), Some(b)) if a > b => {
                    x.push(Dim::Known(a / b));
                    Some(x)
                }
                (Some(mut x), Some(a), Some(b)) if x.last() == Some(&Dim::Known(b / a)) => {
                    x.pop();
                    Some(x)
                }
                _ => None,
            };
            vec![(s, None, None, Some(DType::from_onnx(to)))]
        }
        "Col2Im" => {
            // [N, C * prod(block), L] -> [N, C, image...]
            let s = match (shape_of(g, n, 0), ints_of(g, n, 1), ints_of(g, n, 2)) {
                (Some(x), Some(image), Some(block)) if x.len() == 3 => {
                    let blocks = block.iter().try_fold(1i64, |a, &b| a.checked_mul(b)).filter(|&b| b > 0);
                    let c = blocks.map_or(Dim::Unknown, |b| arith(x[1], Dim::Known(b), "Div"));
                    Some([vec![x[0], c], image.into_iter().map(Dim::Known).collect()].concat())
                }
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        "DFT" => vec![(dft_shape(g, n), None, None, first_dtype(g, n))],
        "MaxUnpool" => {
            let s = shape_of(g, n, 0).filter(|x| x.len() >= 2).map(|x| {
                if let Some(z) = ints_of(g, n, 2).filter(|z| z.len() == x.len()) {
                    return z.into_iter().map(Dim::Known).collect();
                }
                let spatial = x.len() - 2;
                let kernel = n.attr_ints("kernel_shape").map(<[i64]>::to_vec).unwrap_or_default();
                let strides = n.attr_ints("strides").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]);
                let pads = n.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * spatial]);
                let mut out = x[..2].to_vec();
                for i in 0..spatial {
                    let d = match (x[2 + i], kernel.get(i), strides.get(i), pads.get(i), pads.get(i + spatial)) {
                        (Dim::Known(d), Some(&k), Some(&st), Some(&p0), Some(&p1)) => (d - 1)
                            .checked_mul(st)
                            .and_then(|v| v.checked_add(k))
                            .and_then(|v| v.checked_sub(p0))
                            .and_then(|v| v.checked_sub(p1))
                            .filter(|&v| v >= 0)
                            .map_or(Dim::Unknown, Dim::Known),
                        _ => Dim::Unknown,
                    };
                    out.push(d);
                }
                out
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
        "GatherElements" => vec![(shape_of(g, n, 1), None, None, first_dtype(g, n))],
        "Einsum" => vec![(einsum_shape(g, n), None, None, first_dtype(g, n))],
        "ScatterElements" | "ScatterND" => vec![(shape_of(g, n, 0), None, None, first_dtype(g, n))],
        "Tile" => {
            let s = match (shape_of(g, n, 0), ints_of(g, n, 1)) {
                (Some(s), Some(r)) if r.len() == s.len() => Some(s.iter().zip(&r).map(|(d, &k)| arith(*d, Dim::Known(k), "Mul")).collect()),
                (Some(s), _) => Some(vec![Dim::Unknown; s.len()]),
                _ => None,
            };
            vec![(s, None, None, first_dtype(g, n))]
        }
        _ => Vec::new(),
    }
}

/// The entries of a small integer tensor of `dims` (row-major `xs`) at the
/// cartesian product of `kept[axis]` indices.
fn select_ints(xs: &[Dim], dims: &[Dim], kept: &[Option<Vec<i64>>]) -> Option<Vec<Dim>> {
    let dims: Vec<i64> = dims.iter().map(|d| d.known()).collect::<Option<_>>()?;
    let total = dims.iter().try_fold(1i64, |a, &d| a.checked_mul(d))?;
    if total != xs.len() as i64 {
        return None;
    }
    let kept: Vec<&Vec<i64>> = kept.iter().map(Option::as_ref).collect::<Option<_>>()?;
    let mut out = vec![0i64];
    for (axis, idx) in kept.iter().enumerate() {
        if out.len().checked_mul(idx.len())? > MAX_TRACKED_INTS {
            return None;
        }
        let d = dims[axis];
        out = out.iter().flat_map(|&base| idx.iter().map(move |&i| base * d + i)).collect();
    }
    out.iter().map(|&i| xs.get(usize::try_from(i).ok()?).copied()).collect()
}

/// A Transpose of a small integer tensor (torch's pad amounts are reordered so).
fn transpose_ints(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let xs = val(g, n, 0)?.ints.clone()?;
    let dims: Vec<i64> = shape_of(g, n, 0)?.iter().map(|d| d.known()).collect::<Option<_>>()?;
    let r = dims.len();
    let perm: Vec<usize> = match n.attr_ints("perm") {
        Some(p) => p.iter().map(|&a| usize::try_from(a).ok().filter(|&a| a < r)).collect::<Option<_>>()?,
        None => (0..r).rev().collect(),
    };
    if perm.len() != r {
        return None;
    }
    let strides: Vec<i64> = (0..r).map(|i| dims[i + 1..].iter().product()).collect();
    // output position -> input flat index
    let mut out = vec![0i64];
    for &p in &perm {
        let (d, stride) = (dims[p], strides[p]);
        out = out.iter().flat_map(|&base| (0..d).map(move |i| base + i * stride)).collect();
        if out.len() > MAX_TRACKED_INTS {
            return None;
        }
    }
    out.iter().map(|&i| xs.get(usize::try_from(i).ok()?).copied()).collect()
}

/// Elementwise combination of two small integer tensors (with size-1 broadcasting).
fn elementwise_ints(g: &Graph, n: &Node, a: usize, b: usize, f: impl Fn(Dim, Dim) -> Dim) -> Option<Vec<Dim>> {
    let (x, y) = (val(g, n, a)?.ints.clone()?, val(g, n, b)?.ints.clone()?);
    let len = x.len().max(y.len());
    if x.is_empty() || y.is_empty() || !(x.len() == len || x.len() == 1) || !(y.len() == len || y.len() == 1) {
        return None;
    }
    Some((0..len).map(|i| f(x[i.min(x.len() - 1)], y[i.min(y.len() - 1)])).collect())
}

/// Product of dims (Unknown unless all known, or a single symbol).
pub fn product(dims: &[Dim]) -> Dim {
    let mut acc = Dim::Known(1);
    for d in dims {
        acc = arith(acc, *d, "Mul");
    }
    acc
}

fn slice_len(d: i64, start: i64, end: i64, step: i64) -> i64 {
    let (s, e) = slice_bounds(d, start, end, step);
    if step > 0 {
        ((e - s).max(0) + step - 1) / step
    } else if step < 0 {
        ((s - e).max(0) + (-step) - 1) / (-step)
    } else {
        0
    }
}

fn slice_bounds(d: i64, start: i64, end: i64, step: i64) -> (i64, i64) {
    let fix = |x: i64, lo: i64, hi: i64| {
        let x = if x < 0 { x.saturating_add(d) } else { x };
        x.clamp(lo, hi)
    };
    if step > 0 {
        (fix(start, 0, d), fix(end, 0, d))
    } else {
        (fix(start, -1, d - 1), fix(end, -1, d - 1))
    }
}

fn slice_ints(xs: &[Dim], len: i64, start: i64, end: i64, step: i64) -> Option<Vec<Dim>> {
    if step == 0 || xs.len() as i64 != len {
        return None;
    }
    let (s, e) = slice_bounds(len, start, end, step);
    let mut out = Vec::new();
    let mut i = s;
    while (step > 0 && i < e) || (step < 0 && i > e) {
        out.push(*xs.get(usize::try_from(i).ok()?)?);
        i += step;
    }
    Some(out)
}

/// The axes a Reduce* node reduces over, normalized (None: not known).
pub fn reduce_axes(g: &Graph, n: &Node, rank: usize) -> Option<Vec<usize>> {
    let axes = n.attr_ints("axes").map(<[i64]>::to_vec).or_else(|| {
        if n.op_type.starts_with("Arg") {
            Some(vec![n.attr_int("axis", 0)])
        } else if n.inputs.len() > 1 && n.input(1).is_some() {
            ints_of(g, n, 1)
        } else {
            Some(Vec::new())
        }
    });
    let axes = axes?;
    if axes.is_empty() {
        if n.attr_int("noop_with_empty_axes", 0) != 0 {
            return Some(Vec::new());
        }
        return Some((0..rank).collect());
    }
    axes.iter().map(|&a| norm_axis(a, rank)).collect()
}

fn squeeze(s: Option<&[Dim]>, axes: Option<&[i64]>) -> Option<Vec<Dim>> {
    let s = s?;
    match axes {
        Some(axes) => {
            let axes: Option<Vec<usize>> = axes.iter().map(|&a| norm_axis(a, s.len())).collect();
            let axes = axes?;
            Some(s.iter().enumerate().filter(|(i, _)| !axes.contains(i)).map(|(_, d)| *d).collect())
        }
        None => {
            if s.iter().any(|d| !matches!(d, Dim::Known(_))) {
                return None;
            }
            Some(s.iter().filter(|d| **d != Dim::Known(1)).copied().collect())
        }
    }
}

fn unsqueeze(s: Option<&[Dim]>, axes: Option<&[i64]>) -> Option<Vec<Dim>> {
    let (s, axes) = (s?, axes?);
    let rank = s.len() + axes.len();
    let axes: Option<Vec<usize>> = axes.iter().map(|&a| norm_axis(a, rank)).collect();
    let axes = axes?;
    let mut inserted = vec![false; rank];
    for &a in &axes {
        inserted[a] = true;
    }
    let mut it = s.iter();
    (0..rank).map(|i| if inserted[i] { Some(Dim::Known(1)) } else { it.next().copied() }).collect()
}

fn reshape_shape(input: Option<&[Dim]>, target: &[Dim], allowzero: bool) -> Option<Vec<Dim>> {
    let mut out: Vec<Dim> = target
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            Dim::Known(0) if !allowzero => input.and_then(|s| s.get(i).copied()).unwrap_or(Dim::Unknown),
            _ => *d,
        })
        .collect();
    if let Some(pos) = out.iter().position(|d| *d == Dim::Known(-1)) {
        out[pos] = Dim::Unknown;
        if let Some(input) = input {
            let total = product(input);
            let rest = product(&out.iter().enumerate().filter(|(i, _)| *i != pos).map(|(_, d)| *d).collect::<Vec<_>>());
            out[pos] = match (total, rest) {
                (Dim::Known(t), Dim::Known(r)) if r > 0 && t % r == 0 => Dim::Known(t / r),
                (t, Dim::Known(1)) => t,
                _ => infer_sym_quotient(input, &out, pos),
            };
        }
    }
    if out.iter().any(|d| matches!(d, Dim::Known(x) if *x < 0)) {
        return None;
    }
    Some(out)
}

/// `-1` against a symbolic input: cancel equal symbols, divide the known parts.
fn infer_sym_quotient(input: &[Dim], out: &[Dim], pos: usize) -> Dim {
    let mut syms: Vec<u32> = input.iter().filter_map(|d| if let Dim::Sym(s) = d { Some(*s) } else { None }).collect();
    let mut known: i64 = 1;
    for d in input {
        match d {
            Dim::Known(k) => known = known.saturating_mul(*k),
            Dim::Sym(_) => {}
            Dim::Unknown => return Dim::Unknown,
        }
    }
    let mut div: i64 = 1;
    for (i, d) in out.iter().enumerate() {
        if i == pos {
            continue;
        }
        match d {
            Dim::Known(k) => div = div.saturating_mul(*k),
            Dim::Sym(s) => match syms.iter().position(|x| x == s) {
                Some(p) => {
                    syms.remove(p);
                }
                None => return Dim::Unknown,
            },
            Dim::Unknown => return Dim::Unknown,
        }
    }
    if div == 0 || known % div != 0 {
        return Dim::Unknown;
    }
    match (syms.as_slice(), known / div) {
        ([], q) => Dim::Known(q),
        ([s], 1) => Dim::Sym(*s),
        _ => Dim::Unknown,
    }
}

/// Output dims of an Einsum: each output letter takes the dim it labels in the
/// inputs; `...` stands for the broadcast of the inputs' unlabelled leading dims.
fn einsum_shape(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let eq: String = n.attr_str("equation")?.chars().filter(|c| !c.is_whitespace()).collect();
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), Some(o.to_string())),
        None => (eq.clone(), None),
    };
    let mut dims: std::collections::HashMap<char, Dim> = std::collections::HashMap::new();
    let mut ellipsis: Vec<Vec<Dim>> = Vec::new();
    for (i, term) in lhs.split(',').enumerate() {
        let shape = shape_of(g, n, i)?;
        let letters: Vec<char> = term.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        let labelled: Vec<Dim> = if term.contains("...") {
            let (before, after) = term.split_once("...")?;
            let (nb, na) = (before.chars().count(), after.chars().count());
            if nb + na > shape.len() {
                return None;
            }
            ellipsis.push(shape[nb..shape.len() - na].to_vec());
            [&shape[..nb], &shape[shape.len() - na..]].concat()
        } else {
            shape
        };
        if labelled.len() != letters.len() {
            return None;
        }
        for (c, d) in letters.into_iter().zip(labelled) {
            let e = dims.entry(c).or_insert(d);
            if *e == Dim::Known(1) || matches!(*e, Dim::Unknown) {
                *e = d;
            }
        }
    }
    let batch = if ellipsis.is_empty() { Vec::new() } else { broadcast(&ellipsis)? };
    let out = out.unwrap_or_else(|| {
        let mut letters: Vec<char> = lhs.chars().filter(|c| c.is_ascii_alphabetic()).collect();
        letters.sort_unstable();
        let once: String = letters.iter().filter(|&&c| lhs.chars().filter(|&d| d == c).count() == 1).collect();
        if ellipsis.is_empty() { once } else { format!("...{once}") }
    });
    let mut result = Vec::new();
    let (before, after) = match out.split_once("...") {
        Some((b, a)) => (b.to_string(), Some(a.to_string())),
        None => (out.clone(), None),
    };
    for c in before.chars() {
        result.push(*dims.get(&c)?);
    }
    if let Some(after) = after {
        result.extend(batch);
        for c in after.chars() {
            result.push(*dims.get(&c)?);
        }
    }
    Some(result)
}

fn matmul_shape(a: &[Dim], b: &[Dim]) -> Option<Vec<Dim>> {
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let a2: Vec<Dim> = if a.len() == 1 { vec![Dim::Known(1), a[0]] } else { a.to_vec() };
    let b2: Vec<Dim> = if b.len() == 1 { vec![b[0], Dim::Known(1)] } else { b.to_vec() };
    let batch = broadcast(&[a2[..a2.len() - 2].to_vec(), b2[..b2.len() - 2].to_vec()])?;
    let mut out = batch;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Some(out)
}

fn conv_shape(g: &Graph, n: &Node) -> Vec<Out> {
    let (x, w) = (shape_of(g, n, 0), shape_of(g, n, 1));
    // The op's definition: input, weight and output all have the weight's rank.
    let x = x.or_else(|| w.as_ref().map(|w| vec![Dim::Unknown; w.len()]));
    let (Some(x), Some(w)) = (x, w) else {
        return vec![(shape_of(g, n, 0).map(|s| vec![Dim::Unknown; s.len()]), None, None, first_dtype(g, n))];
    };
    if x.len() < 2 || x.len() != w.len() {
        return vec![(Some(vec![Dim::Unknown; x.len()]), None, None, first_dtype(g, n))];
    }
    let spatial = x.len().saturating_sub(2);
    let transpose = n.op_type == "ConvTranspose";
    let group = n.attr_int("group", 1).max(1);
    let channels = if transpose { arith(w.get(1).copied().unwrap_or(Dim::Unknown), Dim::Known(group), "Mul") } else { w.first().copied().unwrap_or(Dim::Unknown) };
    let mut out = vec![x.first().copied().unwrap_or(Dim::Unknown), channels];
    let strides = n.attr_ints("strides").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]);
    let dil = n.attr_ints("dilations").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]);
    let pads = n.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * spatial]);
    let auto_pad = n.attr_str("auto_pad").unwrap_or("NOTSET");
    for i in 0..spatial {
        let d = match (x.get(2 + i).and_then(|d| d.known()), w.get(2 + i).and_then(|d| d.known())) {
            (Some(xi), Some(k)) if strides.len() == spatial && dil.len() == spatial && pads.len() == 2 * spatial && strides[i] > 0 => {
                // Checked: hostile attributes give an unknown dim, never an overflow.
                let (s, p0, p1) = (strides[i], pads[i], pads[i + spatial]);
                let ek = dil[i].checked_mul(k - 1).and_then(|v| v.checked_add(1));
                let size = ek.and_then(|ek| {
                    if transpose {
                        let op = n.attr_ints("output_padding").and_then(|p| p.get(i).copied()).unwrap_or(0);
                        if auto_pad == "NOTSET" {
                            s.checked_mul(xi - 1)?.checked_add(op)?.checked_add(ek)?.checked_sub(p0)?.checked_sub(p1)
                        } else {
                            xi.checked_mul(s)
                        }
                    } else if auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER" {
                        Some(xi.checked_add(s - 1)? / s)
                    } else if auto_pad == "VALID" {
                        Some(xi.checked_sub(ek)? / s + 1)
                    } else {
                        Some(xi.checked_add(p0)?.checked_add(p1)?.checked_sub(ek)? / s + 1)
                    }
                });
                size.filter(|&v| v >= 0).map_or(Dim::Unknown, Dim::Known)
            }
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    // An explicit output_shape fixes ConvTranspose's spatial dims (pads follow from it).
    if let Some(os) = n.attr_ints("output_shape").filter(|_| transpose) {
        let tail = if os.len() >= spatial { &os[os.len() - spatial..] } else { &[][..] };
        for (i, &d) in tail.iter().enumerate() {
            out[2 + i] = if d >= 0 { Dim::Known(d) } else { Dim::Unknown };
        }
    }
    vec![(Some(out), None, None, first_dtype(g, n))]
}

fn pool_shape(g: &Graph, n: &Node) -> Vec<Out> {
    let kernel = n.attr_ints("kernel_shape").map(<[i64]>::to_vec).unwrap_or_default();
    // The op's definition: the input has the kernel's rank plus batch and channel.
    let x = shape_of(g, n, 0).or_else(|| (!kernel.is_empty() && kernel.len() < 62).then(|| vec![Dim::Unknown; kernel.len() + 2]));
    let Some(x) = x else { return Vec::new() };
    if x.len() < 2 {
        // An invalid model (a pool needs batch and channel axes): no shape.
        return Vec::new();
    }
    let spatial = x.len() - 2;
    let strides = n.attr_ints("strides").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]);
    let dil = n.attr_ints("dilations").map(<[i64]>::to_vec).unwrap_or_else(|| vec![1; spatial]);
    let pads = n.attr_ints("pads").map(<[i64]>::to_vec).unwrap_or_else(|| vec![0; 2 * spatial]);
    let ceil = n.attr_int("ceil_mode", 0) != 0;
    let auto_pad = n.attr_str("auto_pad").unwrap_or("NOTSET");
    let mut out = vec![x[0], x.get(1).copied().unwrap_or(Dim::Unknown)];
    for i in 0..spatial {
        let d = match x.get(2 + i).and_then(|d| d.known()) {
            Some(xi) if kernel.len() == spatial && strides.len() == spatial && pads.len() == 2 * spatial && dil.len() == spatial && strides[i] > 0 => {
                let st = strides[i];
                let size = (|| {
                    if auto_pad.starts_with("SAME") {
                        return Some(xi.checked_add(st - 1)? / st);
                    }
                    let ek = dil[i].checked_mul(kernel[i] - 1)?.checked_add(1)?;
                    let num = xi.checked_add(pads[i])?.checked_add(pads[i + spatial])?.checked_sub(ek)?;
                    let mut o = if ceil { num.checked_add(st - 1)?.div_euclid(st) + 1 } else { num.div_euclid(st) + 1 };
                    if ceil && (o - 1).checked_mul(st)? >= xi.checked_add(pads[i])? {
                        o -= 1;
                    }
                    Some(o)
                })();
                size.filter(|&v| v >= 0).map_or(Dim::Unknown, Dim::Known)
            }
            _ => Dim::Unknown,
        };
        out.push(d);
    }
    let s = Some(out);
    vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::I64))]
}

fn split_shapes(g: &Graph, n: &Node) -> Vec<Out> {
    let Some(x) = shape_of(g, n, 0) else { return Vec::new() };
    let Some(axis) = norm_axis(n.attr_int("axis", 0), x.len()) else { return Vec::new() };
    let k = n.outputs.len();
    let sizes = ints_of(g, n, 1).or_else(|| n.attr_ints("split").map(<[i64]>::to_vec));
    let sizes: Vec<Dim> = match (sizes, x[axis]) {
        // Sizes that are negative, or do not add up to the axis, are invalid:
        // their outputs' dims along the axis stay unknown rather than wrong.
        (Some(s), d) if s.len() == k => {
            let valid = s.iter().all(|&v| v >= 0) && !matches!(d, Dim::Known(d) if s.iter().try_fold(0i64, |a, &v| a.checked_add(v)) != Some(d));
            if valid {
                s.into_iter().map(Dim::Known).collect()
            } else {
                vec![Dim::Unknown; k]
            }
        }
        (_, Dim::Known(d)) if k > 0 => {
            let num = n.attr_int("num_outputs", k as i64).max(1);
            let chunk = (d + num - 1) / num;
            (0..k as i64).map(|i| Dim::Known((d - i * chunk).clamp(0, chunk))).collect()
        }
        _ => vec![Dim::Unknown; k],
    };
    sizes
        .into_iter()
        .map(|d| {
            let mut s = x.clone();
            s[axis] = d;
            (Some(s), None, None, first_dtype(g, n))
        })
        .collect()
}

/// Resize and Upsample: from `sizes`, else from `scales` (floor(dim * scale)),
/// on all axes or on the `axes` attribute's.
fn resize_shape(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let s = shape_of(g, n, 0)?;
    // Upsample and Resize before opset 11: (X, scales); later Resize: (X, roi, scales, sizes)
    let (scales_slot, sizes_slot) = if n.op_type == "Upsample" || g.opset < 11 { (1, usize::MAX) } else { (2, 3) };
    let axes: Option<Vec<usize>> = match n.attr_ints("axes") {
        Some(a) => a.iter().map(|&a| norm_axis(a, s.len())).collect(),
        None => Some((0..s.len()).collect()),
    };
    let fallback = || s.iter().enumerate().map(|(i, d)| if i < 2 { *d } else { Dim::Unknown }).collect::<Vec<_>>();
    let Some(axes) = axes else { return Some(fallback()) };
    let policy = n.attr_str("keep_aspect_ratio_policy").unwrap_or("stretch");
    if let Some(z) = ints_of(g, n, sizes_slot).filter(|z| z.len() == axes.len() && !z.is_empty()) {
        if policy != "stretch" {
            // one scale for all axes: the smallest (not_larger) or largest (not_smaller) ratio
            let ratios: Option<Vec<f64>> = axes.iter().zip(&z).map(|(a, &t)| s[*a].known().filter(|&d| d > 0).map(|d| t as f64 / d as f64)).collect();
            let Some(ratios) = ratios else { return Some(fallback()) };
            let pick = if policy == "not_larger" { ratios.iter().copied().fold(f64::INFINITY, f64::min) } else { ratios.iter().copied().fold(0.0, f64::max) };
            let mut out = s.clone();
            for a in &axes {
                if let Dim::Known(d) = s[*a] {
                    let v = (pick * d as f64).round_ties_even();
                    out[*a] = if v.is_finite() && v < 1e15 { Dim::Known(v as i64) } else { Dim::Unknown };
                }
            }
            return Some(out);
        }
        let mut out = s.clone();
        for (a, d) in axes.iter().zip(z) {
            out[*a] = Dim::Known(d);
        }
        return Some(out);
    }
    let scales = floats_of(g, n, scales_slot).or_else(|| match n.attrs.get("scales") {
        Some(AttrValue::Floats(f)) => Some(f.iter().map(|&x| x as f64).collect()),
        _ => None,
    });
    match scales.filter(|z| z.len() == axes.len() && !z.is_empty()) {
        Some(z) => {
            let mut out = s.clone();
            for (a, k) in axes.iter().zip(z) {
                out[*a] = match s[*a] {
                    Dim::Known(d) if k.is_finite() && k >= 0.0 => {
                        let v = (d as f64 * k).floor();
                        if v < 1e15 { Dim::Known(v as i64) } else { Dim::Unknown }
                    }
                    other if k == 1.0 => other,
                    _ => Dim::Unknown,
                };
            }
            Some(out)
        }
        None => Some(fallback()),
    }
}

/// DFT: the signal axis becomes the DFT length (half plus one one-sided), the
/// last axis holds real and imaginary parts (1 for a one-sided inverse).
fn dft_shape(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let x = shape_of(g, n, 0).filter(|x| x.len() >= 2)?;
    let r = x.len();
    let axis = if g.opset >= 20 {
        match n.input(2) {
            Some(_) => floats_of(g, n, 2).filter(|v| v.len() == 1).map(|v| v[0] as i64)?,
            None => -2,
        }
    } else {
        n.attr_int("axis", 1)
    };
    // the last axis is the complex one: axes count among the others
    let axis = norm_axis(axis, r)?;
    if axis == r - 1 {
        return None;
    }
    let length = match n.input(1) {
        Some(_) => Some(floats_of(g, n, 1).filter(|v| v.len() == 1).map(|v| v[0] as i64)?),
        None => None,
    };
    let (inverse, onesided) = (n.attr_int("inverse", 0) != 0, n.attr_int("onesided", 0) != 0);
    let mut out = x.clone();
    let d = length.map(Dim::Known).unwrap_or(x[axis]);
    out[axis] = match (inverse, onesided) {
        (false, true) => arith(arith(d, Dim::Known(2), "Div"), Dim::Known(1), "Add"),
        (true, true) => length.map(Dim::Known).unwrap_or_else(|| arith(arith(x[axis], Dim::Known(1), "Sub"), Dim::Known(2), "Mul")),
        _ => d,
    };
    out[r - 1] = Dim::Known(if inverse && onesided { 1 } else { 2 });
    Some(out)
}

/// RNN, GRU, LSTM: Y [seq, dirs, batch, hidden], Y_h (and Y_c) [dirs, batch, hidden];
/// `layout = 1` puts the batch first.
fn recurrent_shapes(g: &Graph, n: &Node) -> Vec<Out> {
    let Some(x) = shape_of(g, n, 0).filter(|x| x.len() == 3) else { return Vec::new() };
    let dirs = if n.attr_str("direction") == Some("bidirectional") { 2 } else { 1 };
    let hidden = n.attrs.get("hidden_size").map(|_| Dim::Known(n.attr_int("hidden_size", 0))).unwrap_or_else(|| {
        shape_of(g, n, 2).and_then(|r| r.get(2).copied()).unwrap_or(Dim::Unknown)
    });
    let (seq, batch) = if n.attr_int("layout", 0) == 0 { (x[0], x[1]) } else { (x[1], x[0]) };
    let dirs = Dim::Known(dirs);
    let dtype = first_dtype(g, n);
    let (y, state) = if n.attr_int("layout", 0) == 0 {
        (vec![seq, dirs, batch, hidden], vec![dirs, batch, hidden])
    } else {
        (vec![batch, seq, dirs, hidden], vec![batch, dirs, hidden])
    };
    vec![(Some(y), None, None, dtype), (Some(state.clone()), None, None, dtype), (Some(state), None, None, dtype)]
}

/// Attention (opset 23): Y, present key, present value, and the QK product.
fn attention_shapes(g: &Graph, n: &Node) -> Vec<Out> {
    let (Some(q), Some(k), Some(v)) = (shape_of(g, n, 0), shape_of(g, n, 1), shape_of(g, n, 2)) else { return Vec::new() };
    let dtype = first_dtype(g, n);
    let heads = |attr: &str| n.attrs.get(attr).map(|_| n.attr_int(attr, 1));
    // 4-D [B, heads, seq, head_size]; 3-D [B, seq, heads * head_size]
    let as4 = |t: &[Dim], h: Option<i64>| -> Option<Vec<Dim>> {
        match t.len() {
            4 => Some(t.to_vec()),
            3 => {
                let h = h?;
                Some(vec![t[0], Dim::Known(h), t[1], arith(t[2], Dim::Known(h), "Div")])
            }
            _ => None,
        }
    };
    let (Some(q4), Some(k4), Some(v4)) = (as4(&q, heads("q_num_heads")), as4(&k, heads("kv_num_heads")), as4(&v, heads("kv_num_heads"))) else {
        return Vec::new();
    };
    // past key/value (inputs 4, 5) are concatenated before the current ones along the sequence
    let past = shape_of(g, n, 4).filter(|p| p.len() == 4).map(|p| p[2]);
    let total = match past {
        Some(p) => arith(p, k4[2], "Add"),
        None => k4[2],
    };
    let y = if q.len() == 4 {
        vec![q4[0], q4[1], q4[2], v4[3]]
    } else {
        vec![q4[0], q4[2], arith(q4[1], v4[3], "Mul")]
    };
    let present_k = vec![k4[0], k4[1], total, k4[3]];
    let present_v = vec![v4[0], v4[1], total, v4[3]];
    let qk = vec![q4[0], q4[1], q4[2], total];
    vec![(Some(y), None, None, dtype), (Some(present_k), None, None, dtype), (Some(present_v), None, None, dtype), (Some(qk), None, None, dtype)]
}

#[cfg(test)]
mod tests {
    use crate::ir::{from_model, Dim, Graph};
    use crate::onnx::{load_model_bytes, pb, Attr, GraphBuilder, TensorData};

    fn declare(name: &str, dims: &[i64]) -> pb::ValueInfoProto {
        use pb::tensor_shape_proto::{dimension::Value, Dimension};
        let dim = dims
            .iter()
            .map(|&d| Dimension { value: Some(if d < 0 { Value::DimParam("N".into()) } else { Value::DimValue(d) }), denotation: String::new() })
            .collect();
        let tensor = pb::type_proto::Tensor { elem_type: 1, shape: Some(pb::TensorShapeProto { dim }) };
        pb::ValueInfoProto { name: name.into(), r#type: Some(pb::TypeProto { value: Some(pb::type_proto::Value::TensorType(tensor)), ..Default::default() }), ..Default::default() }
    }

    /// x [N, 3, 8, 8] -> Conv (4 filters, 3x3, no padding) -> Mystery (custom) -> Relu -> y.
    fn graph(value_info: Vec<pb::ValueInfoProto>) -> Graph {
        let mut b = GraphBuilder::new("t", 17);
        b.input("x", &[-1, 3, 8, 8]);
        b.initializer("W", &[4, 3, 3, 3], TensorData::Zeros);
        b.node("Conv", &["x", "W"], &["c"], &[("strides", Attr::Ints(vec![1, 1]))]);
        b.node_in_domain("com.example", "Mystery", &["c"], &["h"], &[]);
        b.node("Relu", &["h"], &["y"], &[]);
        b.output("y");
        let mut model = load_model_bytes(b.to_bytes()).expect("decodes");
        model.proto.graph.as_mut().expect("graph").value_info = value_info;
        from_model(&model).expect("builds")
    }

    fn shape(g: &Graph, name: &str) -> Option<Vec<Dim>> {
        g.values[g.value_by_name(name).expect("value")].shape.clone()
    }

    #[test]
    fn value_info_fills_only_what_inference_leaves_open() {
        let g = graph(vec![declare("c", &[-1, 4, 6, 6]), declare("h", &[-1, 4, 5, 5])]);
        assert!(g.shape_conflicts.is_empty(), "{:?}", g.shape_conflicts);
        assert_eq!(shape(&g, "h").map(|s| s.len()), Some(4));
        assert_eq!(shape(&g, "y").expect("y")[2..], [Dim::Known(5), Dim::Known(5)]);
    }

    #[test]
    fn contradicting_value_info_is_a_conflict_and_inference_wins() {
        let g = graph(vec![declare("c", &[-1, 4, 7, 7]), declare("y", &[2, 2])]);
        let names: Vec<&str> = g.shape_conflicts.iter().map(|c| g.values[c.value].name.as_str()).collect();
        assert_eq!(names, ["c"], "{:?}", g.shape_conflicts);
        assert_eq!(shape(&g, "c").expect("c")[1..], [Dim::Known(4), Dim::Known(6), Dim::Known(6)]);
        assert_eq!(g.shape_conflicts[0].declared, "[N, 4, 7, 7]");
        // y's rank is unknown to inference (after a custom op): the declaration fills it.
        assert_eq!(shape(&g, "y"), Some(vec![Dim::Known(2), Dim::Known(2)]));
    }

    #[test]
    fn conv_input_takes_the_weight_rank_through_an_unknown_op() {
        let mut b = GraphBuilder::new("t", 17);
        b.input("x", &[-1, 3, 8, 8]);
        b.initializer("W", &[5, 3, 1, 1], TensorData::Zeros);
        b.node_in_domain("com.example", "Mystery", &["x"], &["h"], &[]);
        b.node("Sigmoid", &["h"], &["s"], &[]);
        b.node("Conv", &["s", "W"], &["y"], &[]);
        b.output("y");
        let g = from_model(&load_model_bytes(b.to_bytes()).expect("decodes")).expect("builds");
        // backwards through Sigmoid to the custom op's output
        assert_eq!(shape(&g, "h"), Some(vec![Dim::Unknown, Dim::Known(3), Dim::Unknown, Dim::Unknown]));
        assert_eq!(shape(&g, "y").expect("y")[1], Dim::Known(5));
    }

    #[test]
    fn hostile_ranks_do_not_panic() {
        for op in ["MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "Conv", "BatchNormalization", "Flatten", "Transpose"] {
            for rank in 0..3 {
                let mut b = GraphBuilder::new("t", 17);
                b.input("x", &vec![2; rank]);
                b.initializer("W", &vec![1; rank], TensorData::Zeros);
                b.node(op, &["x", "W", "W", "W", "W"], &["y"], &[("kernel_shape", Attr::Ints(vec![1; rank]))]);
                b.output("y");
                let g = from_model(&load_model_bytes(b.to_bytes()).expect("decodes")).expect("builds");
                let _ = crate::analysis::analyze(&g);
            }
        }
    }
}

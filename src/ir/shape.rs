//! Shape inference and constant propagation of small integer tensors.
//!
//! Only what the analysis needs: ranks and dims through the ops that carry
//! activations, and the values of shape arithmetic (`Shape` → `Gather` →
//! `Concat` → `Reshape`), symbolic dims included. Declared shapes
//! (value_info) fill what inference cannot know.
use super::{AttrValue, DType, Dim, Graph, Node, Value};

/// Largest integer tensor whose elements are tracked.
pub(crate) const MAX_TRACKED_INTS: usize = 64;

/// Fills shapes, `ints`, `scalar` and `is_const` for every value, in node order.
pub(crate) fn infer(g: &mut Graph) {
    for init in &g.initializers {
        let v = &mut g.values[init.value];
        v.is_const = true;
        v.ints = init.tensor.as_ints().map(|xs| xs.into_iter().map(Dim::Known).collect());
        v.scalar = init.tensor.as_scalar();
    }
    for id in 0..g.nodes.len() {
        let node = &g.nodes[id];
        let is_const = node.inputs.iter().flatten().all(|&v| g.values[v].is_const)
            && node.implicit_inputs.is_empty()
            && !matches!(node.op_type.as_str(), "RandomNormal" | "RandomUniform" | "RandomNormalLike" | "RandomUniformLike" | "Multinomial" | "Bernoulli" | "Dropout");
        let inferred = infer_node(g, node);
        for (k, out) in node.outputs.clone().iter().enumerate() {
            let Some(out) = *out else { continue };
            let (shape, ints, scalar, dtype) = inferred.get(k).cloned().unwrap_or_default();
            let v = &mut g.values[out];
            v.is_const = is_const || v.is_const;
            v.shape = merge(v.shape.take(), shape);
            if v.dtype.is_none() {
                v.dtype = dtype;
            }
            v.ints = ints;
            v.scalar = scalar;
        }
    }
}

/// Prefers known dims from either source; keeps the declared rank on conflict.
fn merge(declared: Option<Vec<Dim>>, inferred: Option<Vec<Dim>>) -> Option<Vec<Dim>> {
    match (declared, inferred) {
        (Some(d), Some(i)) if d.len() == i.len() => Some(
            d.iter()
                .zip(&i)
                .map(|(a, b)| match (a, b) {
                    (Dim::Known(_), _) => *a,
                    (_, Dim::Known(_)) => *b,
                    (Dim::Sym(_), _) => *a,
                    _ => *b,
                })
                .collect(),
        ),
        (Some(d), _) => Some(d),
        (None, i) => i,
    }
}

type Out = (Option<Vec<Dim>>, Option<Vec<Dim>>, Option<f64>, Option<DType>);

fn shape_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<Dim>> {
    n.input(i).and_then(|v| g.values[v].shape.clone())
}

fn val<'g>(g: &'g Graph, n: &Node, i: usize) -> Option<&'g Value> {
    n.input(i).map(|v| &g.values[v])
}

fn ints_of(g: &Graph, n: &Node, i: usize) -> Option<Vec<i64>> {
    val(g, n, i)?.ints.as_ref()?.iter().map(|d| d.known()).collect()
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
            vec![(shape_of(g, n, 0), v.and_then(|v| v.ints.clone()), v.and_then(|v| v.scalar), dtype)]
        }
        "Relu" | "LeakyRelu" | "PRelu" | "Sigmoid" | "Tanh" | "Elu" | "Selu" | "Celu" | "HardSigmoid" | "HardSwish"
        | "Gelu" | "Erf" | "Exp" | "Log" | "Neg" | "Abs" | "Sqrt" | "Reciprocal" | "Softplus" | "Softsign" | "Clip"
        | "Softmax" | "LogSoftmax" | "LayerNormalization" | "InstanceNormalization" | "GroupNormalization"
        | "LpNormalization" | "RMSNormalization" | "Mish" | "Floor" | "Ceil" | "Round" | "Sign" | "Sin" | "Cos"
        | "ThresholdedRelu" | "Shrink" | "Not" | "IsNaN" | "IsInf" | "CumSum" | "Trilu" | "Tan" | "Asin" | "Acos" | "Atan" | "Sinh"
        | "Cosh" | "Asinh" | "Acosh" | "Atanh" => {
            let mut out = same(g, n);
            if let (Some(x), "Neg" | "Abs") = (val(g, n, 0).and_then(|v| v.scalar), op) {
                out[0].2 = Some(if op == "Neg" { -x } else { x.abs() });
            }
            out
        }
        "Dropout" => {
            let s = shape_of(g, n, 0);
            vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::Bool))]
        }
        "BatchNormalization" => {
            let c = shape_of(g, n, 1);
            vec![(shape_of(g, n, 0), None, None, first_dtype(g, n)), (c.clone(), None, None, None), (c, None, None, None)]
        }
        "Add" | "Sub" | "Mul" | "Div" | "Pow" | "Max" | "Min" | "Sum" | "Mean" | "Equal" | "Less" | "Greater"
        | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" | "Mod" | "Where" | "BitShift" => {
            let shapes: Option<Vec<Vec<Dim>>> = n.inputs.iter().map(|i| i.and_then(|v| g.values[v].shape.clone())).collect();
            let shape = shapes.and_then(|s| broadcast(&s));
            let dtype = match op {
                "Equal" | "Less" | "Greater" | "LessOrEqual" | "GreaterOrEqual" | "And" | "Or" | "Xor" => Some(DType::Bool),
                "Where" => val(g, n, 1).and_then(|v| v.dtype),
                _ => first_dtype(g, n),
            };
            let mut ints = None;
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
            if matches!(op, "Add" | "Sub" | "Mul" | "Div") || (op == "Mod" && n.attr_int("fmod", 0) == 0) {
                if let (Some(a), Some(b)) = (val(g, n, 0).and_then(|v| v.ints.clone()), val(g, n, 1).and_then(|v| v.ints.clone())) {
                    let len = a.len().max(b.len());
                    if (a.len() == len || a.len() == 1) && (b.len() == len || b.len() == 1) {
                        ints = Some((0..len).map(|i| arith(a[i.min(a.len() - 1)], b[i.min(b.len() - 1)], op)).collect());
                    }
                }
            }
            let scalar = match (val(g, n, 0).and_then(|v| v.scalar), val(g, n, 1).and_then(|v| v.scalar)) {
                (Some(a), Some(b)) => match op {
                    "Add" => Some(a + b),
                    "Sub" => Some(a - b),
                    "Mul" => Some(a * b),
                    "Div" => Some(a / b),
                    "Pow" => Some(a.powf(b)),
                    _ => None,
                },
                _ => None,
            };
            vec![(shape, ints, scalar, dtype)]
        }
        "Conv" | "ConvTranspose" | "ConvInteger" => conv_shape(g, n),
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
        "Size" => vec![(Some(vec![]), None, None, Some(DType::I64))],
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
                let axis = norm_axis(n.attr_int("axis", 1), s.len() + 1)?;
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
            vec![(s, None, None, first_dtype(g, n))]
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
                        for (k, &a) in axes.iter().enumerate() {
                            let Some(a) = norm_axis(a, s.len()) else { continue };
                            let step = steps.as_ref().and_then(|x| x.get(k).copied()).unwrap_or(1);
                            out[a] = match s[a] {
                                Dim::Known(d) => Dim::Known(slice_len(d, st[k], en[k], step)),
                                _ => Dim::Unknown,
                            };
                            if s.len() == 1 && a == 0 {
                                if let Some(Dim::Known(len)) = s.first() {
                                    ints = val(g, n, 0).and_then(|v| v.ints.clone()).and_then(|xs| slice_ints(&xs, *len, st[k], en[k], step));
                                }
                            }
                        }
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
                Some(
                    s.iter()
                        .enumerate()
                        .filter_map(|(i, d)| if axes.contains(&i) { keep.then_some(Dim::Known(1)) } else { Some(*d) })
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
                let pads = ints_of(g, n, 1).or_else(|| n.attr_ints("pads").map(<[i64]>::to_vec));
                match pads {
                    Some(p) if p.len() == 2 * s.len() && n.inputs.len() <= 3 => s
                        .iter()
                        .enumerate()
                        .map(|(i, d)| match d {
                            Dim::Known(x) => Dim::Known(x + p[i] + p[i + s.len()]),
                            _ => Dim::Unknown,
                        })
                        .collect(),
                    _ => vec![Dim::Unknown; s.len()],
                }
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Resize" | "Upsample" => {
            let s = shape_of(g, n, 0).map(|s| {
                let sizes = if n.inputs.len() > 3 { ints_of(g, n, 3) } else { None };
                match sizes {
                    Some(z) if z.len() == s.len() => z.into_iter().map(Dim::Known).collect(),
                    _ => s.iter().enumerate().map(|(i, d)| if i < 2 { *d } else { Dim::Unknown }).collect(),
                }
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
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
            let s = shape_of(g, n, 0).filter(|s| s.len() == 4).map(|s| {
                if op == "DepthToSpace" {
                    vec![s[0], arith(s[1], Dim::Known(b * b), "Div"), arith(s[2], Dim::Known(b), "Mul"), arith(s[3], Dim::Known(b), "Mul")]
                } else {
                    vec![s[0], arith(s[1], Dim::Known(b * b), "Mul"), arith(s[2], Dim::Known(b), "Div"), arith(s[3], Dim::Known(b), "Div")]
                }
            });
            vec![(s, None, None, first_dtype(g, n))]
        }
        "Range" => vec![(Some(vec![Dim::Unknown]), None, None, first_dtype(g, n))],
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
    let axes = match axes {
        Some(a) if a.is_empty() && n.input(1).is_some() => return None,
        Some(a) => a,
        None => return None,
    };
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
    let mut it = s.iter();
    (0..rank).map(|i| if axes.contains(&i) { Some(Dim::Known(1)) } else { it.next().copied() }).collect()
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

/// Output dims of an Einsum without ellipsis: each output letter takes the
/// dim it labels in the inputs.
fn einsum_shape(g: &Graph, n: &Node) -> Option<Vec<Dim>> {
    let eq: String = n.attr_str("equation")?.chars().filter(|c| !c.is_whitespace()).collect();
    if eq.contains('.') {
        return None;
    }
    let (lhs, out) = match eq.split_once("->") {
        Some((l, o)) => (l.to_string(), o.to_string()),
        None => {
            let mut letters: Vec<char> = eq.chars().filter(|c| c.is_ascii_alphabetic()).collect();
            letters.sort_unstable();
            (eq.clone(), letters.iter().filter(|&&c| eq.chars().filter(|&d| d == c).count() == 1).collect())
        }
    };
    let mut dims: std::collections::HashMap<char, Dim> = std::collections::HashMap::new();
    for (i, term) in lhs.split(',').enumerate() {
        let shape = shape_of(g, n, i)?;
        if shape.len() != term.chars().count() {
            return None;
        }
        for (c, d) in term.chars().zip(shape) {
            let e = dims.entry(c).or_insert(d);
            if *e == Dim::Known(1) || matches!(*e, Dim::Unknown) {
                *e = d;
            }
        }
    }
    out.chars().map(|c| dims.get(&c).copied()).collect()
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
    let (Some(x), Some(w)) = (shape_of(g, n, 0), shape_of(g, n, 1)) else {
        return vec![(shape_of(g, n, 0).map(|s| vec![Dim::Unknown; s.len()]), None, None, first_dtype(g, n))];
    };
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
    vec![(Some(out), None, None, first_dtype(g, n))]
}

fn pool_shape(g: &Graph, n: &Node) -> Vec<Out> {
    let Some(x) = shape_of(g, n, 0) else { return Vec::new() };
    let spatial = x.len().saturating_sub(2);
    let kernel = n.attr_ints("kernel_shape").map(<[i64]>::to_vec).unwrap_or_default();
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
        (Some(s), _) if s.len() == k => s.into_iter().map(Dim::Known).collect(),
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

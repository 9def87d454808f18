//! The `If`, `Loop`, `Scan`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
/// The branch an If with a known condition takes.
pub(crate) fn if_branch(n: &Node, cond: bool) -> Option<&Graph> {
    if cond { THEN_BRANCH.get(n) } else { ELSE_BRANCH.get(n) }
}

const THEN_BRANCH: GraphAttr = GraphAttr::required("then_branch");
const ELSE_BRANCH: GraphAttr = GraphAttr::required("else_branch");
const BODY: GraphAttr = GraphAttr::required("body");
const NUM_SCAN_INPUTS: OptIntAttr = OptIntAttr::required("num_scan_inputs", AttrCheck::AtLeast(1));
/// Per scan input, the axis it is scanned along (absent: 0 each).
const SCAN_INPUT_AXES: IntsAttr = IntsAttr::new("scan_input_axes", AttrCheck::Any);
/// Per scan output, the axis it is stacked along (absent: 0 each).
const SCAN_OUTPUT_AXES: IntsAttr = IntsAttr::new("scan_output_axes", AttrCheck::Any);

/// The `If` op.
pub static IF: OpDef = OpDef {
    name: "If",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        THEN_BRANCH.spec,
        ELSE_BRANCH.spec,
    ],
    shape: Some(if_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Loop` op.
pub static LOOP: OpDef = OpDef {
    name: "Loop",
    module: module_path!(),
    inputs: Arity::range(2, Arity::VARIADIC),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        BODY.spec,
    ],
    shape: Some(loop_shape),
    data_dependent: true,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Scan` op.
pub static SCAN: OpDef = OpDef {
    name: "Scan",
    module: module_path!(),
    inputs: Arity::range(1, Arity::VARIADIC),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 8, until: None },
    attrs: &[
        BODY.spec,
        NUM_SCAN_INPUTS.spec,
        SCAN_INPUT_AXES.spec,
        SCAN_OUTPUT_AXES.spec,
    ],
    shape: Some(scan_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// What both of two derivations of one output agree on.
fn agree(a: &ShapeOut, b: &ShapeOut) -> ShapeOut {
    let shape = match (&a.0, &b.0) {
        (Some(x), Some(y)) if x.len() == y.len() => Some(x.iter().zip(y).map(|(p, q)| if p == q { *p } else { Dim::Unknown }).collect()),
        _ => None,
    };
    let ints = if a.1 == b.1 { a.1.clone() } else { None };
    let scalar = if a.2 == b.2 { a.2 } else { None };
    let dtype = if a.3 == b.3 { a.3 } else { None };
    (shape, ints, scalar, dtype)
}

/// If: the branch the condition picks when it is known, else what both branches agree on.
fn if_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let (Some(then), Some(other)) = (THEN_BRANCH.get(n), ELSE_BRANCH.get(n)) else { return Vec::new() };
    let cond = val(g, n, 0).and_then(|v| v.scalar.or_else(|| v.ints.as_ref().filter(|i| i.len() == 1).and_then(|i| i[0].known()).map(|x| x as f64)));
    match cond {
        Some(c) if c != 0.0 => crate::ir::infer_body(g, then, &[]),
        Some(_) => crate::ir::infer_body(g, other, &[]),
        None => {
            let (t, e) = (crate::ir::infer_body(g, then, &[]), crate::ir::infer_body(g, other, &[]));
            t.iter().zip(&e).map(|(a, b)| agree(a, b)).collect()
        }
    }
}

/// Removes dim `axis` (normalized against the rank) from a shape.
fn without(shape: &[Dim], axis: i64) -> Option<Vec<Dim>> {
    let a = norm_axis(axis, shape.len())?;
    Some([&shape[..a], &shape[a + 1..]].concat())
}

/// Scan: the body runs once per slice of the scan inputs; the states keep their
/// shapes and each scan output stacks the body's along its output axis. Opset 8
/// puts a batch dim before everything and takes `sequence_lens` first.
fn scan_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let Some(b) = BODY.get(n) else { return Vec::new() };
    let m = NUM_SCAN_INPUTS.get(n).unwrap_or(0);
    let batched = g.opset < 9;
    let first = usize::from(batched);
    let total = n.inputs.len().saturating_sub(first);
    let Some(states) = usize::try_from(m).ok().filter(|&m| m >= 1 && m <= total).map(|m| total - m) else { return Vec::new() };
    let input_axes = SCAN_INPUT_AXES.get(n).map(<[i64]>::to_vec).unwrap_or_default();
    let output_axes = SCAN_OUTPUT_AXES.get(n).map(<[i64]>::to_vec).unwrap_or_default();
    let mut seq = Dim::Unknown;
    let mut batch = Dim::Unknown;
    let mut body_inputs: Vec<ShapeOut> = Vec::with_capacity(total);
    for j in 0..total {
        let slot = first + j;
        let s = shape_of(g, n, slot);
        let dtype = val(g, n, slot).and_then(|v| v.dtype);
        let s = if batched {
            let s = s.filter(|s| !s.is_empty());
            if let Some(s) = &s {
                batch = if j == 0 { s[0] } else { batch };
            }
            s.map(|s| s[1..].to_vec())
        } else {
            s
        };
        let shape = if j < states {
            s
        } else {
            let axis = if batched { 0 } else { input_axes.get(j - states).copied().unwrap_or(0) };
            let sliced = s.as_ref().and_then(|s| without(s, axis));
            if j == states {
                seq = s.as_ref().and_then(|s| norm_axis(axis, s.len()).map(|a| s[a])).unwrap_or(Dim::Unknown);
            }
            sliced
        };
        body_inputs.push((shape, None, None, dtype));
    }
    let outs = crate::ir::infer_body(g, b, &body_inputs);
    outs.into_iter()
        .enumerate()
        .map(|(k, (shape, _, _, dtype))| {
            let shape = if k < states {
                shape
            } else {
                let axis = if batched { 0 } else { output_axes.get(k - states).copied().unwrap_or(0) };
                shape.and_then(|s| {
                    let a = norm_axis(axis, s.len() + 1)?;
                    Some([&s[..a], &[seq], &s[a..]].concat())
                })
            };
            let shape = if batched { shape.map(|s| [&[batch][..], &s].concat()) } else { shape };
            (shape, None, None, dtype)
        })
        .collect()
}

/// True when the body's condition output is its condition input (through
/// Identity nodes) or a constant true: the loop then stops only at its trip count.
fn keeps_condition(body: &Graph) -> bool {
    let (Some(&cond_in), Some(&cond_out)) = (body.inputs.get(1), body.outputs.first()) else { return false };
    let mut v = cond_out;
    for _ in 0..=body.nodes.len() {
        if v == cond_in {
            return true;
        }
        let value = &body.values[v];
        if value.is_const && value.scalar == Some(1.0) {
            return true;
        }
        match value.producer.map(|p| &body.nodes[p]) {
            Some(p) if p.is(&IDENTITY) => match p.input(0) {
                Some(i) => v = i,
                None => return false,
            },
            _ => return false,
        }
    }
    false
}

/// Loop: the carried values where the body keeps their shapes, and each scan
/// output stacks the body's along a new first axis, as long as the trip count
/// when the count is known and nothing can stop the loop early (the condition
/// is known true and the body passes it through); otherwise that length is unknown.
fn loop_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let Some(b) = BODY.get(n) else { return Vec::new() };
    let carried = n.inputs.len().saturating_sub(2);
    let trips = n.input(0).and_then(|_| scalar_in(g, n, 0)).filter(|m| *m >= 0.0 && m.fract() == 0.0 && *m < 9.0e15).map(|m| m as i64);
    let starts_true = match n.input(1) {
        None => true,
        Some(_) => scalar_in(g, n, 1).is_some_and(|c| c != 0.0),
    };
    let length = match trips {
        Some(m) if starts_true && keeps_condition(b) => Dim::Known(m),
        Some(0) => Dim::Known(0),
        _ => Dim::Unknown,
    };
    let mut inputs: Vec<ShapeOut> = vec![(Some(Vec::new()), None, None, Some(DType::I64)), (Some(Vec::new()), None, None, Some(DType::Bool))];
    let initial: Vec<ShapeOut> = (0..carried).map(|j| (shape_of(g, n, 2 + j), None, None, val(g, n, 2 + j).and_then(|v| v.dtype))).collect();
    inputs.extend(initial.iter().cloned());
    let outs = crate::ir::infer_body(g, b, &inputs);
    let mut result = Vec::with_capacity(outs.len().saturating_sub(1));
    for (k, out) in outs.iter().enumerate().skip(1) {
        if k <= carried {
            // a carried value may change shape between iterations: what both agree on
            let (shape, _, _, dtype) = agree(&initial[k - 1], &(out.0.clone(), None, None, out.3));
            result.push((shape, None, None, dtype.or(initial[k - 1].3)));
        } else {
            result.push((out.0.as_ref().map(|s| [&[length][..], s].concat()), None, None, out.3));
        }
    }
    result
}

//! The `LayerNormalization`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, -1);
const EPSILON: FloatAttr = FloatAttr::new("epsilon", 1e-5);
const STASH_TYPE: IntAttr = IntAttr::new("stash_type", AttrCheck::Any, 1);

/// The `LayerNormalization` op.
pub static LAYER_NORMALIZATION: OpDef = OpDef {
    name: "LayerNormalization",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 3),
    opsets: Opsets { since: 17, until: None },
    attrs: &[
        AXIS.spec,
        EPSILON.spec,
        STASH_TYPE.spec,
    ],
    shape: Some(norm_stats_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(layer_norm_rule),
    normalizer: true,
    statistics_outputs: true,
    gradient: Gradient::Lowered,
    lowering: Some(layer_norm_lower),
    ..OpDef::BASE
};

pub(crate) fn layer_norm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let outs = n.outputs.len().max(1);
    let Some(r) = c.rank(n.input(0)) else { return vec![unknown("LayerNormalization input rank unknown"); outs] };
    let Some(axis) = crate::ir::norm_axis(AXIS.get(n), r) else { return vec![variant("bad axis"); outs] };
    let kept = mask::below(axis);
    let mut flows = vec![Flow::Same; outs];
    flows[0] = match normalize_input(e[0].as_ref(), kept, Some(kept), LAYER_NORMALIZATION.name) {
        Ok(removed) => {
            let bias = n.input(2).map(|_| 2);
            affine_tail(c, n, e, 1, bias, r, &trailing_map(r), removed)
        }
        Err(f) => f,
    };
    // Mean / InvStdDev outputs are statistics, as in training-mode BatchNormalization.
    flows
}

/// LayerNormalization (axis, epsilon; Mean and InvStdDev outputs).
pub(crate) fn layer_norm_lower(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let axes = trailing_axes(g, n, AXIS.get(n))?;
    let x = name(g, n, 0).unwrap_or_default();
    let eps = EPSILON.get(n) as f64;
    let (xh, mean, var) = standardize(em, &x, &axes, eps);
    let scaled = match name(g, n, 1) {
        Some(s) => em.mul(&xh, &s),
        None => xh,
    };
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("ln_y"));
    match name(g, n, 2) {
        Some(b) => em.node(&ADD, &[&scaled, &b], &[y_out], vec![]),
        None => bind(em, &scaled, &y_out),
    }
    if let Some(m) = out_name(g, n, 1) {
        bind(em, &mean, &m);
    }
    if let Some(o) = out_name(g, n, 2) {
        let e = em.scalar(eps);
        let ve = em.add(&var, &e);
        let sd = em.op(&SQRT, &[&ve], vec![]);
        em.node(&RECIPROCAL, &[&sd], &[o], vec![]);
    }
    Ok(())
}

/// Y has the input's shape; Mean and InvStdDev the normalized axes reduced to 1.
pub(crate) fn norm_stats_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let mut out = same(g, n);
    let stats = shape_of(g, n, 0).and_then(|s| {
        let axis = norm_axis(AXIS.get(n), s.len())?;
        Some(s.iter().enumerate().map(|(i, d)| if i >= axis { Dim::Known(1) } else { *d }).collect::<Vec<_>>())
    });
    let dtype = STASH_TYPE.dtype(n);
    out.push((stats.clone(), None, None, dtype));
    out.push((stats, None, None, dtype));
    out
}

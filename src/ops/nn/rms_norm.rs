//! The `RMSNormalization`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, -1);
const EPSILON: FloatAttr = FloatAttr::new("epsilon", 1e-5);
const STASH_TYPE: IntAttr = IntAttr::new("stash_type", AttrCheck::Any, 1);

/// The `RMSNormalization` op.
pub static RMS_NORMALIZATION: OpDef = OpDef {
    name: "RMSNormalization",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 23, until: None },
    attrs: &[
        AXIS.spec,
        EPSILON.spec,
        STASH_TYPE.spec,
    ],
    shape: Some(norm_stats_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(rms_norm_rule),
    normalizer: true,
    statistics_outputs: true,
    gradient: Gradient::Lowered,
    reads: 2,
    lowering: Some(rms_norm_lower),
    ..OpDef::BASE
};

pub(crate) fn rms_norm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("RMSNormalization input rank unknown")) };
    let Some(axis) = crate::ir::norm_axis(AXIS.get(n), r) else { return one(variant("bad axis")) };
    match normalize_input(e[0].as_ref(), mask::below(axis), None, RMS_NORMALIZATION.name) {
        Ok(removed) => one(affine_tail(c, n, e, 1, None, r, &trailing_map(r), removed)),
        Err(f) => one(f),
    }
}

/// RMSNormalization (opset 23).
pub(crate) fn rms_norm_lower(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let axes = trailing_axes(g, n, AXIS.get(n))?;
    let x = name(g, n, 0).unwrap_or_default();
    let x2 = em.mul(&x, &x);
    let ms = em.reduce(&REDUCE_MEAN, &x2, Some(&axes), true);
    let e = em.scalar(EPSILON.get(n) as f64);
    let mse = em.add(&ms, &e);
    let rms = em.op(&SQRT, &[&mse], vec![]);
    let xh = em.div(&x, &rms);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("rms_y"));
    em.node(&MUL, &[&xh, &name(g, n, 1).unwrap_or_default()], &[y_out], vec![]);
    Ok(())
}

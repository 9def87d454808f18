//! The `InstanceNormalization`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const EPSILON: FloatAttr = FloatAttr::new("epsilon", 1e-5);

/// The `InstanceNormalization` op.
pub static INSTANCE_NORMALIZATION: OpDef = OpDef {
    name: "InstanceNormalization",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        EPSILON.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(channel_constraints),
    analysis: Analysis::Rule(instance_norm_rule),
    normalizer: true,
    gradient: Gradient::Lowered,
    reads: 3,
    lowering: Some(instance_norm_lower),
    ..OpDef::BASE
};

pub(crate) fn instance_norm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("InstanceNormalization input rank unknown")) };
    let allowed = mask::bit(0) | mask::bit(1);
    match normalize_input(e[0].as_ref(), allowed, Some(allowed), INSTANCE_NORMALIZATION.name) {
        Ok(removed) => one(affine_tail(c, n, e, 1, Some(2), r, &per_channel_map, removed)),
        Err(f) => one(f),
    }
}

/// InstanceNormalization.
pub(crate) fn instance_norm_lower(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    if r < 3 {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("input of rank {r}; 3 or more expected") });
    }
    let x = name(g, n, 0).unwrap_or_default();
    let axes: Vec<i64> = (2..r as i64).collect();
    let (xh, _, _) = standardize(em, &x, &axes, EPSILON.get(n) as f64);
    let sc = per_channel(em, &name(g, n, 1).unwrap_or_default(), r);
    let b = per_channel(em, &name(g, n, 2).unwrap_or_default(), r);
    let ys = em.mul(&xh, &sc);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("in_y"));
    em.node(&ADD, &[&ys, &b], &[y_out], vec![]);
    Ok(())
}

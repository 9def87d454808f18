//! The `GroupNormalization`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const EPSILON: FloatAttr = FloatAttr::new("epsilon", 1e-5);
const NUM_GROUPS: OptIntAttr = OptIntAttr::required("num_groups", AttrCheck::AtLeast(1));
const STASH_TYPE: IntAttr = IntAttr::new("stash_type", AttrCheck::Any, 1);

/// The `GroupNormalization` op.
pub static GROUP_NORMALIZATION: OpDef = OpDef {
    name: "GroupNormalization",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    attrs: &[
        EPSILON.spec,
        NUM_GROUPS.spec,
        STASH_TYPE.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(group_norm_rule),
    normalizer: true,
    gradient: Gradient::Lowered,
    reads: 3,
    lowering: Some(group_norm_lower),
    ..OpDef::BASE
};

pub(crate) fn group_norm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("GroupNormalization input rank unknown")) };
    // Statistics per (sample, group): only per-sample changes are provably removed.
    let removed = match normalize_input(e[0].as_ref(), mask::bit(0), Some(mask::bit(0)), GROUP_NORMALIZATION.name) {
        Ok(r) => r,
        Err(f) => return one(f),
    };
    if c.g.opset >= 21 {
        return one(affine_tail(c, n, e, 1, Some(2), r, &per_channel_map, removed));
    }
    // opset 18: scale and bias are per group; channel c uses group c / (C/G)
    let per_group = |_: &mut Ctx, m: Mask, _rank: usize| -> Option<(Mask, bool)> { Some((if m & 1 != 0 { mask::bit(1) } else { 0 }, false)) };
    one(affine_tail(c, n, e, 1, Some(2), r, &per_group, removed))
}

/// GroupNormalization: per-group scale and bias before opset 21, per channel from 21.
pub(crate) fn group_norm_lower(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    let groups = NUM_GROUPS.get(n).unwrap_or(0);
    if r < 2 || groups <= 0 {
        return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: "needs rank ≥ 2 and num_groups > 0".into() });
    }
    let x = name(g, n, 0).unwrap_or_default();
    let grouped_shape = em.ints(&[0, groups, -1]);
    let xg = em.reshape(&x, &grouped_shape);
    let (xh, _, _) = standardize(em, &xg, &[2], EPSILON.get(n) as f64);
    let (scale, bias) = (name(g, n, 1).unwrap_or_default(), name(g, n, 2).unwrap_or_default());
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("gn_y"));
    if g.opset >= 21 {
        let back = em.reshape_like(&xh, &x);
        let sc = per_channel(em, &scale, r);
        let b = per_channel(em, &bias, r);
        let ys = em.mul(&back, &sc);
        em.node(&ADD, &[&ys, &b], &[y_out], vec![]);
    } else {
        let gs = em.ints(&[1, groups, 1]);
        let sc = em.reshape(&scale, &gs);
        let b = em.reshape(&bias, &gs);
        let ys = em.mul(&xh, &sc);
        let yb = em.add(&ys, &b);
        let s = em.shape(&x);
        em.node(&RESHAPE, &[&yb, &s], &[y_out], vec![]);
    }
    Ok(())
}

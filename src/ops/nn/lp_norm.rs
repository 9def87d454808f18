//! The `LpNormalization`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const AXIS: IntAttr = IntAttr::new("axis", AttrCheck::Any, -1);
const P: IntAttr = IntAttr::new("p", AttrCheck::AtLeast(1), 2);

/// The `LpNormalization` op.
pub static LP_NORMALIZATION: OpDef = OpDef {
    name: "LpNormalization",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AXIS.spec,
        P.spec,
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(lp_norm_rule),
    normalizer: true,
    gradient: Gradient::Lowered,
    lowering: Some(lp_norm_lower),
    ..OpDef::BASE
};

pub(crate) fn lp_norm_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("LpNormalization input rank unknown")) };
    let Some(axis) = crate::ir::norm_axis(AXIS.get(n), r) else { return one(variant("bad axis")) };
    match normalize_input(e[0].as_ref(), mask::below(r) & !mask::bit(axis), None, LP_NORMALIZATION.name) {
        Ok(true) => one(Flow::Normalized),
        Ok(false) => one(Flow::Same),
        Err(f) => one(f),
    }
}

/// LpNormalization (p = 1 or 2).
pub(crate) fn lp_norm_lower(g: &Graph, n: &Node, em: &mut Emitter, _: &mut Vec<(String, String)>) -> Result<(), RewriteError> {
    let r = rank_of(g, n, 0)?;
    let axis = checked_axis(n, AXIS.get(n), r)?;
    let op = match P.get(n) {
        1 => &REDUCE_L1,
        2 => &REDUCE_L2,
        p => return Err(RewriteError::Node { node: n.name.clone(), op: n.op_type.clone(), detail: format!("p = {p}; 1 or 2 expected") }),
    };
    let x = name(g, n, 0).unwrap_or_default();
    let norm = em.reduce(op, &x, Some(&[axis as i64]), true);
    let y_out = out_name(g, n, 0).unwrap_or_else(|| em.fresh("lp_y"));
    em.node(&DIV, &[&x, &norm], &[y_out], vec![]);
    Ok(())
}

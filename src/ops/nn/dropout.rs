//! The `Dropout`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Dropout` op.
pub static DROPOUT: OpDef = OpDef {
    name: "Dropout",
    module: module_path!(),
    inputs: Arity::range(1, 3),
    outputs: Arity::range(1, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::float("ratio"),
        AttrSpec::int("seed", AttrCheck::Any),
    ],
    shape: Some(dropout_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(identity),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(dropout_grad),
    ..OpDef::BASE
};

pub(crate) fn dropout_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    if !crate::rewrite::lower::dropout_training(ad.g, n)? {
        return Ok(grads(n, vec![(0, dy)]));
    }
    let ratio = crate::rewrite::lower::dropout_ratio(ad.g, n)?;
    let mask = n.output(1).map(|v| ad.g.values[v].name.clone()).ok_or_else(|| Ad::err(n, "the mask output is missing"))?;
    let m = ad.em.cast(&mask, ad.em.float);
    let g = ad.em.mul(&dy, &m);
    Ok(grads(n, vec![(0, ad.em.mul_scalar(&g, 1.0 / (1.0 - ratio)))]))
}

pub(crate) fn dropout_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = shape_of(g, n, 0);
    vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::Bool))]
}

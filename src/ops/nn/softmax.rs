//! The `Softmax`, `LogSoftmax`, `Hardmax`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Softmax` op.
pub static SOFTMAX: OpDef = OpDef {
    name: "Softmax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(softmax_grad),
    ..OpDef::BASE
};

/// The `LogSoftmax` op.
pub static LOG_SOFTMAX: OpDef = OpDef {
    name: "LogSoftmax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
    ],
    shape: Some(same_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Rule(log_softmax_grad),
    ..OpDef::BASE
};

/// The `Hardmax` op.
pub static HARDMAX: OpDef = OpDef {
    name: "Hardmax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn softmax_axis(ad: &Ad, n: &Node) -> Result<i64, RewriteError> {
    let r = ad.rank(n, 0)?;
    let axis = crate::ir::norm_axis(n.attr_int("axis", -1), r).ok_or_else(|| Ad::err(n, "axis out of range"))?;
    Ok(axis as i64)
}

pub(crate) fn softmax_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let axis = softmax_axis(ad, n)?;
    let y = ad.out(n, 0);
    let gy = ad.em.mul(&dy, &y);
    let s = ad.em.reduce(&REDUCE_SUM, &gy, Some(&[axis]), true);
    let d = ad.em.sub(&dy, &s);
    Ok(grads(n, vec![(0, ad.em.mul(&y, &d))]))
}

pub(crate) fn log_softmax_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let axis = softmax_axis(ad, n)?;
    let y = ad.out(n, 0);
    let p = ad.em.op(&EXP, &[&y], vec![]);
    let s = ad.em.reduce(&REDUCE_SUM, &dy, Some(&[axis]), true);
    let ps = ad.em.mul(&p, &s);
    Ok(grads(n, vec![(0, ad.em.sub(&dy, &ps))]))
}

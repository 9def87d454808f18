//! The `CumSum`, `CumProd`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `CumSum` op.
pub static CUM_SUM: OpDef = OpDef {
    name: "CumSum",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    attrs: &[
        AttrSpec::flag("exclusive"),
        AttrSpec::flag("reverse"),
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a running sum mixes positions along its axis"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(cumsum_grad),
    ..OpDef::BASE
};

/// The `CumProd` op.
pub static CUM_PROD: OpDef = OpDef {
    name: "CumProd",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 26, until: None },
    attrs: &[
        AttrSpec::flag("exclusive"),
        AttrSpec::flag("reverse"),
    ],
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn cumsum_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    // The gradient accumulates the other way along the axis.
    let dy = dy0!(n, dy);
    let axis = ad.name(n, 1);
    let attrs = vec![a_int("exclusive", n.attr_int("exclusive", 0)), a_int("reverse", 1 - n.attr_int("reverse", 0).clamp(0, 1))];
    Ok(grads(n, vec![(0, ad.em.op(&CUM_SUM, &[&dy, &axis], attrs))]))
}

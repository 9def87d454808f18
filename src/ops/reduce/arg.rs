//! The `ArgMax`, `ArgMin`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `ArgMax` op.
pub static ARG_MAX: OpDef = OpDef {
    name: "ArgMax",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("select_last_index"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(arg_reduce_rule),
    gradient: Gradient::Zero("integer output"),
    ..OpDef::BASE
};

/// The `ArgMin` op.
pub static ARG_MIN: OpDef = OpDef {
    name: "ArgMin",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
        AttrSpec::flag("keepdims"),
        AttrSpec::flag("select_last_index"),
    ],
    shape: Some(reduce_shape),
    analysis: Analysis::Rule(arg_reduce_rule),
    gradient: Gradient::Zero("integer output"),
    ..OpDef::BASE
};

pub(crate) fn arg_reduce_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("rank unknown")) };
    let Some(a) = crate::ir::norm_axis(n.attr_int("axis", 0), r) else { return one(variant("bad axis")) };
    let ok = x.scale.as_ref().is_none_or(|s| s.mask & mask::bit(a) == 0) && x.shift.as_ref().is_none_or(|t| t.mask & mask::bit(a) == 0);
    one(if ok { Flow::Same } else { variant(format!("{} along a varying axis", n.op_type)) })
}

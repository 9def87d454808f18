//! The `OneHot`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `OneHot` op.
pub static ONE_HOT: OpDef = OpDef {
    name: "OneHot",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
    ],
    shape: Some(one_hot_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn one_hot_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let depth = floats_of(g, n, 1).filter(|v| v.len() == 1).map(|v| v[0] as i64);
    let s = shape_of(g, n, 0).and_then(|mut s| {
        let axis = norm_axis(n.attr_int("axis", -1), s.len() + 1)?;
        s.insert(axis, depth.map_or(Dim::Unknown, Dim::Known));
        Some(s)
    });
    vec![(s, None, None, val(g, n, 2).and_then(|v| v.dtype))]
}

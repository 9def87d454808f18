//! The `TopK`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `TopK` op.
pub static TOP_K: OpDef = OpDef {
    name: "TopK",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(2, 2),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("axis", AttrCheck::Any),
        AttrSpec::int("k", AttrCheck::AtLeast(0)),
        AttrSpec::flag("largest"),
        AttrSpec::flag("sorted"),
    ],
    shape: Some(top_k_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn top_k_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let k = ints_of(g, n, 1).filter(|k| k.len() == 1).map(|k| k[0]).or(n.attrs.get("k").map(|_| n.attr_int("k", 0)));
    let s = shape_of(g, n, 0).and_then(|mut s| {
        let axis = norm_axis(n.attr_int("axis", -1), s.len())?;
        s[axis] = k.map_or(Dim::Unknown, Dim::Known);
        Some(s)
    });
    vec![(s.clone(), None, None, first_dtype(g, n)), (s, None, None, Some(DType::I64))]
}

//! The `DepthToSpace`, `SpaceToDepth`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `DepthToSpace` op.
pub static DEPTH_TO_SPACE: OpDef = OpDef {
    name: "DepthToSpace",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("blocksize", AttrCheck::AtLeast(1)),
        AttrSpec::string("mode", AttrCheck::OneOf(&["DCR", "CRD"])),
    ],
    shape: Some(depth_space_shape),
    analysis: Analysis::Rule(depth_space_rule),
    gradient: Gradient::Rule(movement),
    ..OpDef::BASE
};

/// The `SpaceToDepth` op.
pub static SPACE_TO_DEPTH: OpDef = OpDef {
    name: "SpaceToDepth",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("blocksize", AttrCheck::AtLeast(1)),
    ],
    shape: Some(depth_space_shape),
    analysis: Analysis::Rule(depth_space_rule),
    gradient: Gradient::Rule(movement),
    ..OpDef::BASE
};

pub(crate) fn depth_space_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    let Some(x) = e.first().and_then(Option::as_ref) else { return one(Flow::Same) };
    let Some(r) = c.rank(n.input(0)) else { return one(unknown("rank unknown")) };
    let mixed = mask::below(r) & !mask::bit(0);
    one(remap_effect(c, x, &|m| Some((if m & mixed != 0 { (m & mask::bit(0)) | mixed } else { m }, m & mixed == 0))))
}

pub(crate) fn depth_space_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let b = n.attr_int("blocksize", 1).max(1);
    // b * b checked: a hostile block size gives an unknown channel dim
    let bb = b.checked_mul(b).map_or(Dim::Unknown, Dim::Known);
    let s = shape_of(g, n, 0).filter(|s| s.len() == 4).map(|s| {
        if n.is(&DEPTH_TO_SPACE) {
            vec![s[0], arith(s[1], bb, Arith::Div), arith(s[2], Dim::Known(b), Arith::Mul), arith(s[3], Dim::Known(b), Arith::Mul)]
        } else {
            vec![s[0], arith(s[1], bb, Arith::Mul), arith(s[2], Dim::Known(b), Arith::Div), arith(s[3], Dim::Known(b), Arith::Div)]
        }
    });
    vec![(s, None, None, first_dtype(g, n))]
}

//! The `Tile`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Tile` op.
pub static TILE: OpDef = OpDef {
    name: "Tile",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(tile_shape),
    analysis: Analysis::Rule(select),
    arg_slots: ArgSlots::From(1),
    gradient: Gradient::Rule(movement),
    ..OpDef::BASE
};

pub(crate) fn tile_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = match (shape_of(g, n, 0), ints_of(g, n, 1)) {
        (Some(s), Some(r)) if r.len() == s.len() => Some(s.iter().zip(&r).map(|(d, &k)| arith(*d, Dim::Known(k), Arith::Mul)).collect()),
        (Some(s), _) => Some(vec![Dim::Unknown; s.len()]),
        _ => None,
    };
    vec![(s, None, None, first_dtype(g, n))]
}

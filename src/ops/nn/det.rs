//! The `Det`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Det` op.
pub static DET: OpDef = OpDef {
    name: "Det",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    shape: Some(det_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn det_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(shape_of(g, n, 0).filter(|s| s.len() >= 2).map(|s| s[..s.len() - 2].to_vec()), None, None, first_dtype(g, n))]
}

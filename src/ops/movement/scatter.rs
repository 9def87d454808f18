//! The `Scatter`, `ScatterElements`, `ScatterND`, `TensorScatter`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Scatter` op.
pub static SCATTER: OpDef = OpDef {
    name: "Scatter",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 9, until: Some(10) },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `ScatterElements` op.
pub static SCATTER_ELEMENTS: OpDef = OpDef {
    name: "ScatterElements",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    shape: Some(scatter_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `ScatterND` op.
pub static SCATTER_ND: OpDef = OpDef {
    name: "ScatterND",
    module: module_path!(),
    inputs: Arity::range(3, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    shape: Some(scatter_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `TensorScatter` op.
pub static TENSOR_SCATTER: OpDef = OpDef {
    name: "TensorScatter",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 24, until: None },
    shape: Some(same_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn scatter_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![(shape_of(g, n, 0), None, None, first_dtype(g, n))]
}

//! The `Adagrad`, `Momentum`, `Adam`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Adagrad` op.
pub static ADAGRAD: OpDef = OpDef {
    name: "Adagrad",
    module: module_path!(),
    domain: "ai.onnx.preview.training",
    inputs: Arity::range(3, Arity::VARIADIC),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    shape: Some(training_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Momentum` op.
pub static MOMENTUM: OpDef = OpDef {
    name: "Momentum",
    module: module_path!(),
    domain: "ai.onnx.preview.training",
    inputs: Arity::range(3, Arity::VARIADIC),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    shape: Some(training_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Adam` op.
pub static ADAM: OpDef = OpDef {
    name: "Adam",
    module: module_path!(),
    domain: "ai.onnx.preview.training",
    inputs: Arity::range(3, Arity::VARIADIC),
    outputs: Arity::range(1, Arity::VARIADIC),
    opsets: Opsets { since: 1, until: None },
    shape: Some(training_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// Inputs R, T, X[n], G[n], then the n-tensor states; outputs X_new[n],
/// states_new: each output has the shape of the tensor it updates.
pub(crate) fn training_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let groups = if n.is(&ADAM) { 3 } else { 2 };
    let count = n.outputs.len() / groups;
    (0..n.outputs.len())
        .map(|j| {
            let i = if j < count { 2 + j } else { 2 + j + count };
            (shape_of(g, n, i), None, None, val(g, n, i).and_then(|v| v.dtype))
        })
        .collect()
}

//! The `NegativeLogLikelihoodLoss`, `SoftmaxCrossEntropyLoss`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const REDUCTION: StrAttr = StrAttr::new("reduction", AttrCheck::OneOf(&["none", "sum", "mean"]), "mean");
const IGNORE_INDEX: OptIntAttr = OptIntAttr::new("ignore_index", AttrCheck::Any);

/// The `NegativeLogLikelihoodLoss` op.
pub static NEGATIVE_LOG_LIKELIHOOD_LOSS: OpDef = OpDef {
    name: "NegativeLogLikelihoodLoss",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 12, until: None },
    attrs: &[
        REDUCTION.spec,
        IGNORE_INDEX.spec,
    ],
    shape: Some(loss_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `SoftmaxCrossEntropyLoss` op.
pub static SOFTMAX_CROSS_ENTROPY_LOSS: OpDef = OpDef {
    name: "SoftmaxCrossEntropyLoss",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 2),
    opsets: Opsets { since: 12, until: None },
    attrs: &[
        REDUCTION.spec,
        IGNORE_INDEX.spec,
    ],
    shape: Some(loss_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn loss_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // reduction none: the target's shape; mean or sum: a scalar
    let loss = if REDUCTION.get(n) == "none" { shape_of(g, n, 1) } else { Some(vec![]) };
    vec![(loss, None, None, first_dtype(g, n)), (shape_of(g, n, 0), None, None, first_dtype(g, n))]
}

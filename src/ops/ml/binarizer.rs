//! The `Binarizer` (domain `ai.onnx.ml`): definition and rules.
use crate::ops::util::prelude::*;

/// The `Binarizer` op (ai.onnx.ml): 1 above the threshold, else 0; same shape.
pub static BINARIZER: OpDef = OpDef {
    name: "Binarizer",
    domain: "ai.onnx.ml",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(same),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::Zero("a step function is piecewise constant"),
    ..OpDef::BASE
};

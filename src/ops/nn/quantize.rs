//! The `QuantizeLinear`, `DequantizeLinear`, `DynamicQuantizeLinear`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `QuantizeLinear` op.
pub static QUANTIZE_LINEAR: OpDef = OpDef {
    name: "QuantizeLinear",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    shape: Some(quantize_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `DequantizeLinear` op.
pub static DEQUANTIZE_LINEAR: OpDef = OpDef {
    name: "DequantizeLinear",
    module: module_path!(),
    inputs: Arity::range(2, 3),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    shape: Some(quantize_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `DynamicQuantizeLinear` op.
pub static DYNAMIC_QUANTIZE_LINEAR: OpDef = OpDef {
    name: "DynamicQuantizeLinear",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(3, 3),
    opsets: Opsets { since: 11, until: None },
    shape: Some(dynamic_quantize_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn quantize_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let dtype = if n.is(&DEQUANTIZE_LINEAR) { val(g, n, 1).and_then(|v| v.dtype) } else { val(g, n, 2).and_then(|v| v.dtype) };
    vec![(shape_of(g, n, 0), None, None, dtype)]
}

pub(crate) fn dynamic_quantize_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    vec![
    (shape_of(g, n, 0), None, None, Some(DType::Other(2))),
    (Some(vec![]), None, None, Some(DType::F32)),
    (Some(vec![]), None, None, Some(DType::Other(2))),
]
}

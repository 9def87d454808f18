//! The `LabelEncoder` (domain `ai.onnx.ml`): definition and rules.
use crate::ops::util::prelude::*;

/// The `LabelEncoder` op (ai.onnx.ml): maps each element through a table; same shape.
pub static LABEL_ENCODER: OpDef = OpDef {
    name: "LabelEncoder",
    domain: "ai.onnx.ml",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(label_encoder_shape),
    arg_slots: ArgSlots::All,
    analysis: Analysis::Unknown("a table lookup: a change reaching it is unknown"),
    gradient: Gradient::Zero("a table lookup is piecewise constant"),
    ..OpDef::BASE
};

/// The element type follows the values the table maps to.
fn label_encoder_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let dtype = if n.attrs.contains_key("values_int64s") {
        Some(DType::I64)
    } else if n.attrs.contains_key("values_floats") {
        Some(DType::F32)
    } else {
        match n.attrs.get("values_tensor") {
            Some(AttrValue::Tensor(t)) => Some(t.dtype),
            _ => None,
        }
    };
    vec![(shape_of(g, n, 0), None, None, dtype)]
}

//! The `LabelEncoder` (domain `ai.onnx.ml`): definition and rules.
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const VALUES_INT64S: IntsAttr = IntsAttr::new("values_int64s", AttrCheck::Any);
const VALUES_FLOATS: FloatsAttr = FloatsAttr::new("values_floats");
const VALUES_TENSOR: TensorAttr = TensorAttr::new("values_tensor");

/// The `LabelEncoder` op (ai.onnx.ml): maps each element through a table; same shape.
pub static LABEL_ENCODER: OpDef = OpDef {
    name: "LabelEncoder",
    domain: "ai.onnx.ml",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        VALUES_INT64S.spec,
        VALUES_FLOATS.spec,
        VALUES_TENSOR.spec,
    ],
    shape: Some(label_encoder_shape),
    arg_slots: ArgSlots::All,
    analysis: Analysis::Unknown("a table lookup: a change reaching it is unknown"),
    gradient: Gradient::Zero("a table lookup is piecewise constant"),
    ..OpDef::BASE
};

/// The element type follows the values the table maps to.
fn label_encoder_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let dtype = if VALUES_INT64S.is_set(n) {
        Some(DType::I64)
    } else if VALUES_FLOATS.is_set(n) {
        Some(DType::F32)
    } else {
        VALUES_TENSOR.get(n).map(|t| t.dtype)
    };
    vec![(shape_of(g, n, 0), None, None, dtype)]
}

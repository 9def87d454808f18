//! The `ArrayFeatureExtractor` (domain `ai.onnx.ml`): definition and rules.
use crate::ops::util::prelude::*;

/// The `ArrayFeatureExtractor` op (ai.onnx.ml): selects last-axis elements by index.
pub static ARRAY_FEATURE_EXTRACTOR: OpDef = OpDef {
    name: "ArrayFeatureExtractor",
    domain: "ai.onnx.ml",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(array_feature_extractor_shape),
    arg_slots: ArgSlots::Only(1),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The last axis becomes the index count; a rank-1 input gives `[1, count]`.
fn array_feature_extractor_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let count = shape_of(g, n, 1).map(|y| y.iter().try_fold(1i64, |a, d| d.known().and_then(|d| a.checked_mul(d))).map_or(Dim::Unknown, Dim::Known));
    let shape = match (shape_of(g, n, 0), count) {
        (Some(x), Some(c)) if x.len() == 1 => Some(vec![Dim::Known(1), c]),
        (Some(x), Some(c)) if !x.is_empty() => Some([&x[..x.len() - 1], &[c]].concat()),
        _ => None,
    };
    vec![(shape, None, None, first_dtype(g, n))]
}

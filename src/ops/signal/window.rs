//! The `HannWindow`, `HammingWindow`, `BlackmanWindow`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const OUTPUT_DATATYPE: IntAttr = IntAttr::new("output_datatype", AttrCheck::Any, 1);
const PERIODIC: IntAttr = IntAttr::flag("periodic", true);

/// The `HannWindow` op.
pub static HANN_WINDOW: OpDef = OpDef {
    name: "HannWindow",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 17, until: None },
    attrs: &[
        OUTPUT_DATATYPE.spec,
        PERIODIC.spec,
    ],
    shape: Some(window_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `HammingWindow` op.
pub static HAMMING_WINDOW: OpDef = OpDef {
    name: "HammingWindow",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 17, until: None },
    attrs: &[
        OUTPUT_DATATYPE.spec,
        PERIODIC.spec,
    ],
    shape: Some(window_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `BlackmanWindow` op.
pub static BLACKMAN_WINDOW: OpDef = OpDef {
    name: "BlackmanWindow",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 17, until: None },
    attrs: &[
        OUTPUT_DATATYPE.spec,
        PERIODIC.spec,
    ],
    shape: Some(window_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn window_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let size = floats_of(g, n, 0).filter(|v| v.len() == 1).map(|v| v[0] as i64);
    vec![(Some(vec![size.map_or(Dim::Unknown, Dim::Known)]), None, None, OUTPUT_DATATYPE.dtype(n))]
}

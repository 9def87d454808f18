//! The `Optional`, `OptionalHasElement`, `OptionalGetElement`: definitions and rules.
use crate::ops::util::prelude::*;

/// The `Optional` op (opset 15): wraps a tensor or sequence, or makes an empty optional.
pub static OPTIONAL: OpDef = OpDef {
    name: "Optional",
    module: module_path!(),
    inputs: Arity::range(0, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 15, until: None },
    analysis: Analysis::Unknown("an optional is not a tensor the analysis follows"),
    gradient: Gradient::None("an optional is not a tensor the rewrite differentiates"),
    ..OpDef::BASE
};

/// The `OptionalHasElement` op (opset 15): a bool scalar.
pub static OPTIONAL_HAS_ELEMENT: OpDef = OpDef {
    name: "OptionalHasElement",
    module: module_path!(),
    inputs: Arity::range(0, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 15, until: None },
    shape: Some(has_element_shape),
    shape_only: true,
    analysis: Analysis::Unknown("an optional is not a tensor the analysis follows"),
    gradient: Gradient::Zero("a bool output"),
    ..OpDef::BASE
};

/// The `OptionalGetElement` op (opset 15): the wrapped value; a tensor input is returned as is.
pub static OPTIONAL_GET_ELEMENT: OpDef = OpDef {
    name: "OptionalGetElement",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 15, until: None },
    shape: Some(same),
    analysis: Analysis::Unknown("an optional is not a tensor the analysis follows"),
    gradient: Gradient::None("an optional is not a tensor the rewrite differentiates"),
    ..OpDef::BASE
};

fn has_element_shape(_: &Graph, _: &Node) -> Vec<ShapeOut> {
    vec![(Some(Vec::new()), None, None, Some(DType::Bool))]
}

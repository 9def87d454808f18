//! The `StringConcat`, `RegexFullMatch`, `StringSplit`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `StringConcat` op.
pub static STRING_CONCAT: OpDef = OpDef {
    name: "StringConcat",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 20, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `RegexFullMatch` op.
pub static REGEX_FULL_MATCH: OpDef = OpDef {
    name: "RegexFullMatch",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 20, until: None },
    shape: Some(regex_full_match_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `StringSplit` op.
pub static STRING_SPLIT: OpDef = OpDef {
    name: "StringSplit",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(2, 2),
    opsets: Opsets { since: 20, until: None },
    data_dependent: true,
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

pub(crate) fn regex_full_match_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let mut out = same(g, n);
    out[0].3 = Some(DType::Bool);
    out
}

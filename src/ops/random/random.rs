//! The `RandomUniform`, `RandomNormal`, `RandomUniformLike`, `RandomNormalLike`, `Bernoulli`, `Multinomial`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `RandomUniform` op.
pub static RANDOM_UNIFORM: OpDef = OpDef {
    name: "RandomUniform",
    module: module_path!(),
    inputs: Arity::range(0, 0),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("dtype", AttrCheck::Any),
        AttrSpec::float("high"),
        AttrSpec::float("low"),
        AttrSpec::float("seed"),
        AttrSpec::ints("shape", AttrCheck::AtLeast(0)),
    ],
    shape: Some(random_shape),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `RandomNormal` op.
pub static RANDOM_NORMAL: OpDef = OpDef {
    name: "RandomNormal",
    module: module_path!(),
    inputs: Arity::range(0, 0),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("dtype", AttrCheck::Any),
        AttrSpec::float("mean"),
        AttrSpec::float("scale"),
        AttrSpec::float("seed"),
        AttrSpec::ints("shape", AttrCheck::AtLeast(0)),
    ],
    shape: Some(random_shape),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `RandomUniformLike` op.
pub static RANDOM_UNIFORM_LIKE: OpDef = OpDef {
    name: "RandomUniformLike",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("dtype", AttrCheck::Any),
        AttrSpec::float("high"),
        AttrSpec::float("low"),
        AttrSpec::float("seed"),
    ],
    shape: Some(random_like_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `RandomNormalLike` op.
pub static RANDOM_NORMAL_LIKE: OpDef = OpDef {
    name: "RandomNormalLike",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    attrs: &[
        AttrSpec::int("dtype", AttrCheck::Any),
        AttrSpec::float("mean"),
        AttrSpec::float("scale"),
        AttrSpec::float("seed"),
    ],
    shape: Some(random_like_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(random_draw_rule),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Bernoulli` op.
pub static BERNOULLI: OpDef = OpDef {
    name: "Bernoulli",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 15, until: None },
    attrs: &[
        AttrSpec::int("dtype", AttrCheck::Any),
        AttrSpec::float("seed"),
    ],
    shape: Some(random_like_shape),
    constraints: Some(same_shape_constraints),
    random: true,
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `Multinomial` op.
pub static MULTINOMIAL: OpDef = OpDef {
    name: "Multinomial",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 7, until: None },
    attrs: &[
        AttrSpec::int("dtype", AttrCheck::Any),
        AttrSpec::int("sample_size", AttrCheck::AtLeast(1)),
        AttrSpec::float("seed"),
    ],
    shape: Some(multinomial_shape),
    random: true,
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// RandomUniform(Like), RandomNormal(Like): the draw reads only the input's
/// shape and element type (and the attributes), which no rescaling or
/// perturbation of a parameter alters. For each fixed state of the generator the
/// output is therefore the same tensor before and after the change: unchanged.
/// (Bernoulli and Multinomial read their input's values: `nonlinear`.)
pub(crate) fn random_draw_rule(_: &mut Ctx, n: &Node, _: &[Option<Affine>]) -> Vec<Flow> {
    vec![Flow::Same; n.outputs.len().max(1)]
}

pub(crate) fn random_shape(_g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let s = n.attr_ints("shape").filter(|s| s.iter().all(|&d| d >= 0)).map(|s| s.iter().map(|&d| Dim::Known(d)).collect());
    vec![(s, None, None, Some(DType::from_onnx(n.attr_int("dtype", 1) as i32)))]
}

pub(crate) fn random_like_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let dtype = n.attrs.get("dtype").map(|_| DType::from_onnx(n.attr_int("dtype", 1) as i32)).or(first_dtype(g, n));
    vec![(shape_of(g, n, 0), None, None, dtype)]
}

pub(crate) fn multinomial_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    // [batch, classes] -> [batch, sample_size]
    let s = shape_of(g, n, 0).filter(|s| s.len() == 2).map(|s| vec![s[0], Dim::Known(n.attr_int("sample_size", 1))]);
    vec![(s, None, None, Some(DType::from_onnx(n.attr_int("dtype", 6) as i32)))]
}

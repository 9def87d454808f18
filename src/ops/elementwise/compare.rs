//! The `Equal`, `Less`, `Greater`, `LessOrEqual`, `GreaterOrEqual`, `And`, `Or`, `Xor`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Equal` op.
pub static EQUAL: OpDef = OpDef {
    name: "Equal",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(equal_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(equal_kernel),
    ..OpDef::BASE
};

/// The `Less` op.
pub static LESS: OpDef = OpDef {
    name: "Less",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(logical_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(less_kernel),
    ..OpDef::BASE
};

/// The `Greater` op.
pub static GREATER: OpDef = OpDef {
    name: "Greater",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(logical_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(greater_kernel),
    ..OpDef::BASE
};

/// The `LessOrEqual` op.
pub static LESS_OR_EQUAL: OpDef = OpDef {
    name: "LessOrEqual",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 12, until: None },
    shape: Some(logical_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(less_or_equal_kernel),
    ..OpDef::BASE
};

/// The `GreaterOrEqual` op.
pub static GREATER_OR_EQUAL: OpDef = OpDef {
    name: "GreaterOrEqual",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 12, until: None },
    shape: Some(logical_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(greater_or_equal_kernel),
    ..OpDef::BASE
};

/// The `And` op.
pub static AND: OpDef = OpDef {
    name: "And",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(logical_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(and_kernel),
    ..OpDef::BASE
};

/// The `Or` op.
pub static OR: OpDef = OpDef {
    name: "Or",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(logical_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::Zero("boolean output"),
    kernel: Some(or_kernel),
    ..OpDef::BASE
};

/// The `Xor` op.
pub static XOR: OpDef = OpDef {
    name: "Xor",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(logical_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(xor_kernel),
    ..OpDef::BASE
};

pub(crate) fn equal_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let ints = elementwise_ints(g, n, 0, 1, |a, b| match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => Dim::Known(i64::from(x == y)),
        (Dim::Sym(x), Dim::Sym(y)) if x == y => Dim::Known(1),
        _ => Dim::Unknown,
    });
    vec![(broadcast_inputs(g, n), ints, None, Some(DType::Bool))]
}

fn equal_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "select(0u, 1u, x0 == x1)")
}

fn less_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "select(0u, 1u, x0 < x1)")
}

fn greater_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "select(0u, 1u, x0 > x1)")
}

fn less_or_equal_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "select(0u, 1u, x0 <= x1)")
}

fn greater_or_equal_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "select(0u, 1u, x0 >= x1)")
}

fn and_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "x0 & x1")
}

fn or_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "x0 | x1")
}

fn xor_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "x0 ^ x1")
}

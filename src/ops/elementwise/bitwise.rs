//! The `Mod`, `BitShift`, `BitwiseAnd`, `BitwiseOr`, `BitwiseXor`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

// The attributes, with their ONNX defaults (checked when the IR is built).
const FMOD: IntAttr = IntAttr::flag("fmod", false);

/// The `Mod` op.
pub static MOD: OpDef = OpDef {
    name: "Mod",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 10, until: None },
    attrs: &[
        FMOD.spec,
    ],
    shape: Some(mod_shape),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    kernel: Some(mod_kernel),
    ..OpDef::BASE
};

/// The `BitShift` op.
pub static BIT_SHIFT: OpDef = OpDef {
    name: "BitShift",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 11, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `BitwiseAnd` op.
pub static BITWISE_AND: OpDef = OpDef {
    name: "BitwiseAnd",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `BitwiseOr` op.
pub static BITWISE_OR: OpDef = OpDef {
    name: "BitwiseOr",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// The `BitwiseXor` op.
pub static BITWISE_XOR: OpDef = OpDef {
    name: "BitwiseXor",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 18, until: None },
    shape: Some(binary_shape),
    analysis: Analysis::Unknown("not written: a change reaching it is unknown"),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// Integer Mod (fmod = 0) folds shape arithmetic.
pub(crate) fn mod_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let ints = if !FMOD.on(n) { arith_ints(g, n, Arith::Mod) } else { None };
    vec![(broadcast_inputs(g, n), ints, None, first_dtype(g, n))]
}

fn mod_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    if FMOD.on(ctx.node) {
        kern::typed(ctx, "fmod_f(x0, x1)", Some("x0 % x1"))
    } else {
        kern::typed(ctx, "mod_f(x0, x1)", Some("mod_i(x0, x1)"))
    }
}

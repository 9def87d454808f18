//! The `Identity`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Identity` op.
pub static IDENTITY: OpDef = OpDef {
    name: "Identity",
    module: module_path!(),
    inputs: Arity::range(1, 1),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(identity_shape),
    constraints: Some(same_shape_constraints),
    analysis: Analysis::Rule(identity),
    gradient: Gradient::Rule(identity_grad),
    kernel: Some(identity_kernel),
    ..OpDef::BASE
};

pub(crate) fn identity_grad(_: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    Ok(grads(n, vec![(0, dy)]))
}

pub(crate) fn identity_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let v = val(g, n, 0);
    let cast = n.is(&CAST);
    let dtype = if cast { CAST_TO.dtype(n) } else { v.and_then(|v| v.dtype) };
    let mut scalar = v.and_then(|v| v.scalar);
    // Float shape arithmetic cast to an integer type (timm's pad_same:
    // Cast(Ceil(Div(...)))) truncates toward zero; its ints follow from the scalar.
    let to_int = cast && matches!(dtype, Some(DType::I64 | DType::I32 | DType::Bool));
    match dtype {
        Some(DType::I64 | DType::I32) if cast => scalar = scalar.map(f64::trunc),
        Some(DType::Bool) if cast => scalar = scalar.map(|x| f64::from(u8::from(x != 0.0))),
        _ => {}
    }
    let ints = if to_int && scalar.is_some() { None } else { v.and_then(|v| v.ints.clone()) };
    vec![(shape_of(g, n, 0), ints, scalar, dtype)]
}

fn identity_kernel(_: &KernelCtx) -> Result<Lowered, String> {
    Ok(Lowered::alias(0))
}

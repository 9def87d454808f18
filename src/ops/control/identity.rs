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
    ..OpDef::BASE
};

pub(crate) fn identity_grad(_: &mut Ad, n: &Node, dy: &[Option<String>], _: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    Ok(grads(n, vec![(0, dy)]))
}

pub(crate) fn identity_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let v = val(g, n, 0);
    let dtype = if n.is(&CAST) { Some(DType::from_onnx(n.attr_int("to", 1) as i32)) } else { v.and_then(|v| v.dtype) };
    vec![(shape_of(g, n, 0), v.and_then(|v| v.ints.clone()), v.and_then(|v| v.scalar), dtype)]
}

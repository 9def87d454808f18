//! The `SwiGLU`: definition and rules.
use crate::ops::util::prelude::*;

/// The `SwiGLU` op (opset 28): `Swish_alpha(A) * B`, with A and B of one shape.
pub static SWIGLU: OpDef = OpDef {
    name: "SwiGLU",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 28, until: None },
    shape: Some(swiglu_shape),
    constraints: Some(swiglu_constraints),
    analysis: Analysis::Rule(nonlinear),
    gradient: Gradient::None("not written: an error on the gradient path"),
    ..OpDef::BASE
};

/// No broadcasting: the output has the inputs' shape, whichever tells more.
fn swiglu_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    let shape = match (shape_of(g, n, 0), shape_of(g, n, 1)) {
        (Some(a), Some(b)) if a.len() == b.len() => Some(a.iter().zip(&b).map(|(x, y)| if matches!(x, Dim::Known(_)) { *x } else { *y }).collect()),
        (a, b) => a.or(b),
    };
    vec![(shape, None, None, first_dtype(g, n))]
}

/// Both inputs have the output's shape.
fn swiglu_constraints(g: &Graph, n: &Node) -> Vec<(usize, Vec<Dim>)> {
    match n.output(0).and_then(|v| g.values[v].shape.clone()) {
        Some(out) => vec![(0, out.clone()), (1, out)],
        None => Vec::new(),
    }
}

//! The `Mul`: definitions and rules.
#![allow(clippy::too_many_arguments)]
use crate::ops::util::prelude::*;

/// The `Mul` op.
pub static MUL: OpDef = OpDef {
    name: "Mul",
    module: module_path!(),
    inputs: Arity::range(2, 2),
    outputs: Arity::range(1, 1),
    opsets: Opsets { since: 1, until: None },
    shape: Some(mul_shape),
    analysis: Analysis::Rule(mul_rule),
    gradient: Gradient::Rule(mul_grad),
    reads: 2,
    kernel: Some(mul_kernel),
    ..OpDef::BASE
};

pub(crate) fn mul_rule(c: &mut Ctx, n: &Node, e: &[Option<Affine>]) -> Vec<Flow> {
    one(mul_div(c, n, e, 1.0))
}

pub(crate) fn mul_grad(ad: &mut Ad, n: &Node, dy: &[Option<String>], need: &[bool]) -> Result<Vec<Option<String>>, RewriteError> {
    let dy = dy0!(n, dy);
    let mut out = Vec::new();
    for (i, other) in [(0, 1), (1, 0)] {
        if nd(need, i) {
            let o = ad.as_float(n, other);
            let g = ad.em.mul(&dy, &o);
            out.push((i, ad.unb(n, i, &g)?));
        }
    }
    Ok(grads(n, out))
}

pub(crate) fn mul_shape(g: &Graph, n: &Node) -> Vec<ShapeOut> {
    arith_shape(g, n, Arith::Mul, |a, b| a * b)
}

fn mul_kernel(ctx: &KernelCtx) -> Result<Lowered, String> {
    kern::elementwise(ctx, "x0 * x1")
}
